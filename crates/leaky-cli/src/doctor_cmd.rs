//! `leaky doctor FILE.toml`: presentation of `leaky::experiment::run` with the doctor on:
//! each finding as it appears, the final diagnosis, `--treat`, `--json` and `--report`.

use crate::present::{
    check_fail_on, check_output_path, in_file, open_log, print_diagnosis, print_header, with_log, write_text, FailOn,
    Live, Style,
};
use crate::{show, Failure};
use anyhow::anyhow;
use clap::Args;
use leaky::doctor::{DoctorConfig, Report};
use leaky::experiment::{self, Experiment, Run, RunOptions};
use std::path::{Path, PathBuf};

/// Arguments of `leaky doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// The experiment file (TOML; see examples/sick/, examples/healthy/ and docs/experiment.md).
    pub file: PathBuf,
    /// Write the findings as JSON ({"version", "run", "findings", "metrics"}) to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Stream one JSON line per step, epoch, DQN episode and new finding to this file while
    /// training (JSON Lines; fields in docs/experiment.md).
    #[arg(long, value_name = "FILE.jsonl")]
    pub log: Option<PathBuf>,
    /// Exit 1 when a finding of this severity or worse appears.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
    /// Record statistics every N steps (and at step 0).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub sample_every: usize,
    /// Print only the final diagnosis.
    #[arg(long, short)]
    pub quiet: bool,
    /// Apply the root causes' fixes together (the first fix that is a setting of each root
    /// error or warning), train again with the same seed and budget, and compare: the
    /// verdict (better / worse / unchanged) comes from the metrics, not from the findings.
    #[arg(long)]
    pub treat: bool,
    /// With --treat: write the treated experiment (every key) to this TOML file.
    #[arg(long, value_name = "FILE.toml", requires = "treat")]
    pub write_treated: Option<PathBuf>,
    /// Write an HTML report with charts (loss, activations, gradients, updates) to
    /// DIR/index.html.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}%", 100.0 * x)
    } else {
        "n/a".to_string()
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
            let last = |r: &leaky::train::TrainReport| r.history.last().map(|h| h.train_loss).unwrap_or(f64::NAN);
            format!(
                "best val loss {:.4} -> {:.4}, best val acc {} -> {}, final train loss {:.4} -> {:.4}",
                a.best_val_loss,
                b.best_val_loss,
                pct(a.best_val_acc),
                pct(b.best_val_acc),
                last(a),
                last(b)
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
    // A regression run has no accuracy, and a diverged one may have neither: "n/a", as the
    // treatment line says.
    let acc = if r.best_val_acc.is_finite() { format!("{:.2}%", 100.0 * r.best_val_acc) } else { "n/a".into() };
    let loss = if r.best_val_loss.is_finite() { format!("{:.4}", r.best_val_loss) } else { "n/a".into() };
    format!("{} steps on {} training examples; best val acc {acc}, best val loss {loss}", r.steps, run.train_len)
}

/// Run `leaky doctor`.
pub fn run(args: DoctorArgs) -> Result<(), Failure> {
    let exp = experiment::load(&args.file)?;
    if let Some(p) = &args.json {
        check_output_path("--json", p)?;
    }
    if let Some(p) = &args.log {
        check_output_path("--log", p)?;
    }
    if let Some(p) = &args.write_treated {
        check_output_path("--write-treated", p)?;
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
    let log = match &args.log {
        Some(p) => Some((p.as_path(), open_log(p)?)),
        None => None,
    };
    let (run, log_failure) =
        with_log(log, &mut live, |events| experiment::run_prepared(&exp, data, model, opts, events));

    let findings = run.findings.clone();
    println!("{}; {}", print_diagnosis(&style, &findings), outcome_line(&run));
    let treatment = if args.treat { treat(&args, &exp, base, &run, &style)? } else { None };
    if let Some(path) = &args.json {
        let mut metrics = run.metrics();
        let doctor = run.doctor.as_ref().expect("the doctor was on");
        if let Some(r) = &run.report {
            metrics["history"] = serde_json::json!(r.history);
            metrics["loss_per_step"] = serde_json::json!(doctor.losses);
        } else {
            metrics["loss_per_update"] = serde_json::json!(doctor.losses);
        }
        let run_doc =
            serde_json::json!({"file": show(&args.file), "experiment": exp, "sample_every": args.sample_every});
        let mut doc = Report::new(run_doc, findings.clone(), metrics);
        if let Some(t) = treatment {
            doc = doc.with_treatment(t);
        }
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
    if let Some(f) = log_failure {
        return Err(f);
    }
    check_fail_on(args.fail_on, &findings)
}

/// `--treat`: the root causes' fixes applied together, one retraining, the verdict.
fn treat(
    args: &DoctorArgs,
    exp: &Experiment,
    base: &Path,
    run: &Run,
    style: &Style,
) -> Result<Option<leaky::doctor::treatment::Treatment>, Failure> {
    println!();
    println!("{}", style.paint("1", "Treatment: the root causes' fixes together, same seed and budget"));
    let opts = RunOptions { doctor: Some(DoctorConfig { sample_every: args.sample_every }), dead_at_init: false };
    let Some((treated, after, t)) = experiment::treat(exp, base, run, opts).map_err(in_file(&args.file))? else {
        println!("nothing to apply: no root cause has a fix that is a setting");
        return Ok(None);
    };
    let applied: Vec<String> = t.applied.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    println!("applied: {}", applied.join(", "));
    let verdict = match t.verdict {
        leaky::doctor::treatment::Verdict::Better => style.paint("32", "better"),
        leaky::doctor::treatment::Verdict::Worse => style.paint("31", "worse"),
        leaky::doctor::treatment::Verdict::Unchanged => "unchanged".to_string(),
    };
    println!("{}: {}", verdict, compare_line(run, &after));
    let codes = |c: &[leaky::doctor::Code]| {
        if c.is_empty() {
            "none".to_string()
        } else {
            c.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
        }
    };
    println!("resolved: {}; remaining: {}; new: {}", codes(&t.resolved), codes(&t.remaining), codes(&t.new));
    if let Some(path) = &args.write_treated {
        write_text(path, &treated.to_toml_string())?;
        println!("treated experiment: {}", show(path));
    }
    Ok(Some(t))
}
