//! `leaky doctor FILE.toml`: presentation of `leaky::experiment::run` with the doctor on:
//! each finding as it appears, the final diagnosis, `--treat`, `--json` and `--report`.

use crate::present::{
    check_fail_on, check_output_path, in_file, print_diagnosis, print_header, write_text, FailOn, Live, Style,
};
use crate::{show, Failure};
use anyhow::anyhow;
use clap::Args;
use leaky::doctor::{DoctorConfig, Finding, Report, Severity};
use leaky::experiment::{self, Experiment, Run, RunOptions};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Arguments of `leaky doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// The experiment file (TOML; see examples/sick/, examples/healthy/ and docs/experiment.md).
    pub file: PathBuf,
    /// Write the findings as JSON ({"version", "run", "findings", "metrics"}) to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Exit 1 when a finding of this severity or worse appears.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
    /// Record statistics every N steps (and at step 0).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub sample_every: usize,
    /// Print only the final diagnosis.
    #[arg(long, short)]
    pub quiet: bool,
    /// For each error or warning, apply its first fix to a copy of the experiment, train
    /// again for the same budget, and report whether the finding went away.
    #[arg(long)]
    pub treat: bool,
    /// Write an HTML report with charts (loss, activations, gradients, updates) to
    /// DIR/index.html.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

/// The `key = value` settings named in a fix's trailing parentheses, e.g.
/// `use Xavier init (model.init = "xavier")`; `None` when the fix names no value.
pub fn fix_settings(fix: &str) -> Option<Vec<(String, toml::Value)>> {
    let open = fix.rfind('(')?;
    let close = fix.rfind(')')?;
    let inner = fix.get(open + 1..close)?;
    let mut out = Vec::new();
    for part in inner.split(", ") {
        let (k, v) = part.split_once(" = ")?;
        let table: toml::Table = toml::from_str(&format!("v = {v}")).ok()?;
        out.push((k.trim().to_string(), table.get("v")?.clone()));
    }
    (!out.is_empty()).then_some(out)
}

/// One `--treat` trial.
#[derive(serde::Serialize)]
struct Treatment {
    finding: String,
    fix: String,
    applied: bool,
    gone: bool,
    findings_after: Vec<String>,
    before: serde_json::Value,
    after: serde_json::Value,
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}%", 100.0 * x)
    } else {
        "n/a".to_string()
    }
}

fn label(f: &Finding) -> String {
    format!("{} in {}", f.code.as_str(), f.where_)
}

/// The numbers a treatment compares.
fn outcome(run: &Run) -> serde_json::Value {
    match &run.dqn {
        Some(r) => serde_json::json!({"mean_return_last_50": r.mean_last(50), "zeroed_share": r.zeroed_share_total()}),
        None => {
            let r = run.report.as_ref().expect("a supervised run has a report");
            serde_json::json!({"best_val_acc": r.best_val_acc, "best_val_loss": r.best_val_loss})
        }
    }
}

/// `"val acc 61.00% -> 93.00%, val loss 1.2700 -> 0.4200"` (DQN: returns and zero shares).
fn compare_line(before: &Run, after: &Run) -> String {
    match (&before.dqn, &after.dqn) {
        (Some(a), Some(b)) => format!(
            "mean return (last 50) {:.1} -> {:.1}, zero-gradient samples {:.1}% -> {:.1}%",
            a.mean_last(50),
            b.mean_last(50),
            100.0 * a.zeroed_share_total(),
            100.0 * b.zeroed_share_total()
        ),
        _ => {
            let (a, b) = (before.report.as_ref().expect("report"), after.report.as_ref().expect("report"));
            format!(
                "val acc {} -> {}, val loss {:.4} -> {:.4}",
                pct(a.best_val_acc),
                pct(b.best_val_acc),
                a.best_val_loss,
                b.best_val_loss
            )
        }
    }
}

/// The summary after the diagnosis counts.
fn outcome_line(run: &Run) -> String {
    if let Some(r) = &run.dqn {
        return format!(
            "{} updates over {} episodes; mean return {:.1} over the last {} episodes; zero-gradient samples {:.1}%",
            r.updates,
            r.returns.len(),
            r.mean_last(50),
            r.returns.len().min(50),
            100.0 * r.zeroed_share_total()
        );
    }
    let r = run.report.as_ref().expect("a supervised run has a report");
    format!(
        "{} steps on {} training examples; best val acc {:.2}%, best val loss {:.4}",
        r.steps,
        run.train_len,
        100.0 * if r.best_val_acc.is_finite() { r.best_val_acc } else { f64::NAN },
        r.best_val_loss
    )
}

/// Run `leaky doctor`.
pub fn run(args: DoctorArgs) -> Result<(), Failure> {
    let exp = experiment::load(&args.file)?;
    if let Some(p) = &args.json {
        check_output_path("--json", p)?;
    }
    if args.report.is_some() && exp.model.kind == experiment::ModelKind::Dqn {
        return Err(Failure::BadInput(anyhow!(
            "--report: not available for model.kind = \"dqn\" yet (`leaky demo dqn` draws the DQN charts); use --json"
        )));
    }
    if args.sample_every == 0 {
        return Err(Failure::BadInput(anyhow!("--sample-every 0: must be at least 1")));
    }
    let base = args.file.parent().unwrap_or(Path::new(""));
    let (data, model) = experiment::prepare(&exp, base).map_err(in_file(&args.file))?;
    if let Some(dir) = &args.report {
        crate::report::prepare_dir(dir)?;
    }
    if !args.quiet {
        print_header(&args.file, &exp, &data, &model);
    }
    let style = Style::for_stdout();
    let opts = RunOptions { doctor: Some(DoctorConfig { sample_every: args.sample_every }), dead_at_init: false };
    let mut live = Live::new(args.quiet, false, exp.train.epochs, 0);
    let run = experiment::run_prepared(&exp, data, model, opts, &mut live);
    let findings = run.findings.clone();
    println!("{}; {}", print_diagnosis(&style, &findings), outcome_line(&run));
    let treatments = if args.treat { treat(&args, &exp, base, &run, &style)? } else { Vec::new() };
    if let Some(path) = &args.json {
        let mut metrics = run.metrics();
        metrics["treatments"] = serde_json::json!(treatments);
        let doctor = run.doctor.as_ref().expect("the doctor was on");
        if let Some(r) = &run.report {
            metrics["history"] = serde_json::json!(r.history);
            metrics["loss_per_step"] = serde_json::json!(doctor.losses);
        } else {
            metrics["loss_per_update"] = serde_json::json!(doctor.losses);
        }
        let run_doc =
            serde_json::json!({"file": show(&args.file), "experiment": exp, "sample_every": args.sample_every});
        let doc = Report::new(run_doc, findings.clone(), metrics);
        write_text(path, &doc.to_json_string())?;
    }
    if let Some(dir) = &args.report {
        let doctor = run.doctor.as_ref().expect("the doctor was on");
        let r = crate::report::doctor::DoctorRun {
            file: &show(&args.file),
            experiment: &exp,
            sample_every: args.sample_every,
            findings: &findings,
            stats: &doctor.stats,
            losses: &doctor.losses,
            train: run.report.as_ref().expect("--report is refused for DQN runs"),
        };
        let path = crate::report::write_report(dir, &crate::report::doctor::report(&r)).map_err(Failure::Run)?;
        println!("report: {}", show(&path));
    }
    check_fail_on(args.fail_on, &findings)
}

/// `--treat`: each error's or warning's first fix, applied to a copy of the experiment and
/// trained again for the same budget.
fn treat(
    args: &DoctorArgs,
    exp: &Experiment,
    base: &Path,
    run: &Run,
    style: &Style,
) -> Result<Vec<Treatment>, Failure> {
    println!();
    println!("{}", style.paint("1", "Treatment: each finding's first fix, same budget"));
    let mut treatments = Vec::new();
    let mut tried: HashSet<String> = HashSet::new();
    for f in run.findings.iter().filter(|f| f.severity.is_at_least(Severity::Warning)) {
        let Some(fix) = f.fix.first() else { continue };
        if !tried.insert(fix.clone()) {
            continue;
        }
        let mut t = Treatment {
            finding: label(f),
            fix: fix.clone(),
            applied: false,
            gone: false,
            findings_after: Vec::new(),
            before: outcome(run),
            after: serde_json::Value::Null,
        };
        match fix_settings(fix).map(|s| exp.with_settings(&s)) {
            Some(Ok(exp2)) => {
                let opts =
                    RunOptions { doctor: Some(DoctorConfig { sample_every: args.sample_every }), dead_at_init: false };
                let run2 = experiment::run(&exp2, base, opts, &mut experiment::NoEvents)
                    .map_err(|e| Failure::Run(anyhow!("treating with `{fix}`: {}: {e}", show(&args.file))))?;
                let after = &run2.findings;
                t.applied = true;
                // Gone means no warning or error of the same code anywhere (a fix that only
                // moves the problem to another layer has not removed it).
                t.gone = !after.iter().any(|g| g.code == f.code && g.severity.is_at_least(Severity::Warning));
                t.findings_after =
                    after.iter().filter(|g| g.severity.is_at_least(Severity::Warning)).map(label).collect();
                t.after = outcome(&run2);
                println!(
                    "{:<44} {:<52} {}  {}",
                    t.finding,
                    fix,
                    if t.gone { style.paint("32", "gone     ") } else { style.paint("31", "persists ") },
                    compare_line(run, &run2)
                );
                if !t.findings_after.is_empty() {
                    println!("{:<44} still found: {}", "", t.findings_after.join("; "));
                }
            }
            Some(Err(e)) => println!("{:<44} {fix}: cannot apply ({e})", t.finding),
            None => println!("{:<44} {fix}: names no value to apply automatically", t.finding),
        }
        treatments.push(t);
    }
    Ok(treatments)
}
