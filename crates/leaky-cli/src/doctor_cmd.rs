//! `leaky doctor FILE.toml`: train with the probes on, print each finding as it appears
//! and a final diagnosis; `--json` writes the findings contract of DESIGN.md.

use crate::experiment::{build_model, build_seq_model, prepare_data, prepare_seq, train_config};
use crate::report::html::number;
use crate::{config, show, Failure};
use anyhow::anyhow;
use clap::{Args, ValueEnum};
use leaky::doctor::stats::DeadUnitPass;
use leaky::doctor::{Doctor, DoctorConfig, Finding, Fix, Report, Severity};
use leaky::nn::seq::SeqModel;
use leaky::nn::Sequential;
use leaky::train::{fit, fit_seq, EpochInfo, Observer, SeqObserver, StepInfo, TrainReport};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// The lowest severity that makes `leaky doctor` exit 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Exit 1 when any error is found (default).
    Error,
    /// Exit 1 on a warning or an error.
    Warning,
    /// Exit 1 on any finding.
    Info,
    /// Always exit 0 when the run completes.
    Never,
}

/// Arguments of `leaky doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// The experiment file (TOML; see examples/sick/ and examples/healthy/).
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

/// The `key = value` settings of a fix (its `set`, as TOML values); `None` when the fix
/// is not a setting.
pub fn fix_settings(fix: &Fix) -> Option<Vec<(String, toml::Value)>> {
    let out: Vec<(String, toml::Value)> =
        fix.set.iter().filter_map(|(k, v)| toml::Value::try_from(v).ok().map(|t| (k.clone(), t))).collect();
    (!out.is_empty() && out.len() == fix.set.len()).then_some(out)
}

/// The experiment's current settings as dotted keys (`"train.lr"`, `"model.init"`, ...):
/// every scalar of the experiment, for the doctor's advice (it does not suggest what is
/// already set, and suggests a learning rate relative to the current one).
pub fn current_settings(exp: &config::Experiment) -> std::collections::BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut std::collections::BTreeMap<String, serde_json::Value>) {
        match v {
            toml::Value::Table(t) => {
                for (k, x) in t {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, x, out);
                }
            }
            toml::Value::Array(_) => {}
            other => {
                if let Ok(j) = serde_json::to_value(other) {
                    out.insert(prefix.to_string(), j);
                }
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    if let Ok(v) = toml::Value::try_from(exp) {
        walk("", &v, &mut out);
    }
    out
}

/// A copy of `exp` with `settings` applied (dotted keys), validated like a file.
pub fn apply_settings(
    exp: &config::Experiment,
    settings: &[(String, toml::Value)],
) -> anyhow::Result<config::Experiment> {
    let mut root = toml::Value::try_from(exp)?;
    for (key, value) in settings {
        let mut node = &mut root;
        let parts: Vec<&str> = key.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            node = node
                .as_table_mut()
                .ok_or_else(|| anyhow!("{key}: not a table"))?
                .entry(p.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        }
        node.as_table_mut()
            .ok_or_else(|| anyhow!("{key}: not a table"))?
            .insert(parts[parts.len() - 1].to_string(), value.clone());
    }
    let out: config::Experiment = root.try_into()?;
    out.validate()?;
    Ok(out)
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

fn outcome(r: &leaky::train::TrainReport) -> serde_json::Value {
    serde_json::json!({"best_val_acc": r.best_val_acc, "best_val_loss": r.best_val_loss})
}

/// Colours for a terminal; plain text when piped.
#[derive(Clone, Copy)]
pub(crate) struct Style {
    pub(crate) on: bool,
}

impl Style {
    pub(crate) fn paint(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn severity(&self, s: Severity) -> String {
        let label = format!("{:<7}", s.as_str());
        match s {
            Severity::Error => self.paint("1;31", &label),
            Severity::Warning => self.paint("1;33", &label),
            Severity::Info => self.paint("36", &label),
        }
    }
}

/// Print the "Diagnosis" heading and every finding, consequences indented under their
/// cause; returns the counts line's start, `"E error(s), W warning(s), I info"`, for the
/// caller to finish with its run's outcome.
pub(crate) fn print_diagnosis(style: &Style, findings: &[Finding]) -> String {
    println!();
    println!("{}", style.paint("1", "Diagnosis"));
    if findings.is_empty() {
        println!("no findings: every probe is within its healthy range");
    }
    let depth = |f: &Finding| {
        let mut d = 0;
        let mut at = f.caused_by.as_deref();
        while let Some(id) = at {
            d += 1;
            at = findings.iter().find(|g| g.id == id).and_then(|g| g.caused_by.as_deref());
            if d > findings.len() {
                break;
            }
        }
        d
    };
    for f in findings {
        print_finding_at(style, f, depth(f));
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    format!(
        "{} error(s), {} warning(s), {} info",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    )
}

/// Print one finding at the left margin (see [`print_finding_at`]).
pub(crate) fn print_finding(style: &Style, f: &Finding) {
    print_finding_at(style, f, 0);
}

/// Print one finding, indented by `depth` levels (a consequence under its cause): headline
/// (with its id and, for a consequence, the id of its cause), evidence, why, ranked fixes
/// with their settings. Evidence numbers read as in the HTML report ([`number`]).
pub(crate) fn print_finding_at(style: &Style, f: &Finding, depth: usize) {
    let pad = "    ".repeat(depth);
    let step = f.step.map(|s| format!(" at step {s}")).unwrap_or_default();
    let id = if f.id.is_empty() { String::new() } else { format!("{} ", f.id) };
    let cause = f.caused_by.as_deref().map(|c| format!(" (follows from {c})")).unwrap_or_default();
    println!(
        "{pad}{id}{} {} in {}{step}{cause}",
        style.severity(f.severity),
        style.paint("1", f.code.as_str()),
        f.where_
    );
    let ev: Vec<String> = f
        .evidence
        .iter()
        .map(|(k, v)| match (v.as_f64(), v.as_array()) {
            (Some(x), _) => format!("{k}={}", number(x)),
            // Long lists (per-time-step norms, unit indices) are summarised; --json has them all.
            (None, Some(a)) if a.len() > 8 => {
                let item = |j: &serde_json::Value| j.as_f64().map(number).unwrap_or_else(|| j.to_string());
                format!(
                    "{k}=[{}, {}, {}, ..., {}] ({} values)",
                    item(&a[0]),
                    item(&a[1]),
                    item(&a[2]),
                    item(&a[a.len() - 1]),
                    a.len()
                )
            }
            _ => format!("{k}={v}"),
        })
        .collect();
    println!("{pad}        evidence: {}", ev.join(", "));
    println!("{pad}        why: {}", f.why);
    for (i, fix) in f.fix.iter().enumerate() {
        if fix.set.is_empty() {
            println!("{pad}        fix {}: {}", i + 1, fix.text);
        } else {
            println!("{pad}        fix {}: {} ({})", i + 1, fix.text, fix.settings_line());
        }
    }
}

/// The doctor plus the live printing of new findings after each epoch.
struct Live {
    doctor: Doctor,
    style: Style,
    quiet: bool,
    printed: HashSet<(String, String)>,
    epochs: usize,
}

impl Live {
    fn epoch(&mut self, info: &EpochInfo) {
        if self.quiet {
            return;
        }
        let acc =
            if info.val_acc.is_nan() { String::new() } else { format!("  val acc {:>6.2}%", 100.0 * info.val_acc) };
        println!(
            "epoch {:>3}/{}  loss {:.4}  val loss {:.4}{acc}",
            info.epoch + 1,
            self.epochs,
            info.train_loss,
            info.val_loss
        );
        for f in self.doctor.diagnose() {
            if self.printed.insert((f.code.as_str().to_string(), f.where_.clone())) {
                print_finding(&self.style, &f);
            }
        }
    }
}

impl Observer<f32> for Live {
    fn on_start(&mut self, model: &Sequential<f32>, train: &leaky::data::Dataset) {
        Observer::<f32>::on_start(&mut self.doctor, model, train);
    }
    fn probe(&mut self, step: usize) -> Option<&mut dyn leaky::nn::Probe<f32>> {
        Observer::<f32>::probe(&mut self.doctor, step)
    }
    fn on_step(&mut self, info: &StepInfo, model: &Sequential<f32>) {
        Observer::<f32>::on_step(&mut self.doctor, info, model);
    }
    fn on_epoch(&mut self, info: &EpochInfo, model: &Sequential<f32>) {
        Observer::<f32>::on_epoch(&mut self.doctor, info, model);
        self.epoch(info);
    }
}

impl SeqObserver<f32> for Live {
    fn on_step(&mut self, info: &StepInfo, model: &SeqModel<f32>) {
        SeqObserver::<f32>::on_step(&mut self.doctor, info, model);
    }
    fn on_epoch(&mut self, info: &EpochInfo, model: &SeqModel<f32>) {
        SeqObserver::<f32>::on_epoch(&mut self.doctor, info, model);
        self.epoch(info);
    }
}

/// How [`examine`] watches a run.
pub(crate) struct Watch<'a> {
    /// Record statistics every this many steps (and at step 0).
    pub(crate) sample_every: usize,
    /// Print a header naming this experiment file, then each epoch and each new finding as
    /// it appears, in this style; `None` trains silently.
    pub(crate) live: Option<(&'a Path, Style)>,
    /// MLPs: also count dead units over a full pass of the training set before training
    /// ([`Examined::dead_at_init`]).
    pub(crate) dead_at_init: bool,
}

/// A run trained by [`examine`].
pub(crate) struct Examined {
    /// The doctor, with everything it recorded (MLPs: and the dead-unit pass after training).
    pub(crate) doctor: Doctor,
    /// The trainer's report.
    pub(crate) report: TrainReport,
    /// Training examples (sequences for recurrent models).
    pub(crate) train_len: usize,
    /// The dead-unit pass before training, when [`Watch::dead_at_init`] asked for it (one
    /// entry per ReLU layer); empty otherwise.
    pub(crate) dead_at_init: Vec<DeadUnitPass>,
}

/// Train an experiment with the doctor watching: prepare the data (relative paths against
/// `base`), build the model, fit it (MLPs: then count dead units over a full pass). The one
/// path behind `leaky doctor`, `--treat` and the MLP demos. Errors are those of the data and
/// the model, unprefixed.
pub(crate) fn examine(exp: &config::Experiment, base: &Path, watch: &Watch) -> anyhow::Result<Examined> {
    let cfg = train_config(exp);
    let dcfg = DoctorConfig { sample_every: watch.sample_every };
    let settings = current_settings(exp);
    let live = |classes: usize| Live {
        doctor: {
            let mut d = Doctor::for_training(dcfg, &cfg, classes);
            d.stats.run.settings.extend(settings.clone());
            d
        },
        style: watch.live.map(|(_, style)| style).unwrap_or(Style { on: false }),
        quiet: watch.live.is_none(),
        printed: HashSet::new(),
        epochs: cfg.epochs,
    };
    let header = |model: String| {
        if let Some((file, _)) = watch.live {
            println!("{}: {} | {model}", show(file), exp.data.dataset);
        }
    };
    let seq = matches!(exp.model.kind, config::ModelKind::Rnn | config::ModelKind::Lstm);
    Ok(if seq {
        let data = prepare_seq(exp, base)?;
        let mut model = build_seq_model(exp, &data)?;
        header(model.describe());
        let mut live = live(data.train.classes);
        if let leaky::data::seq::SeqTarget::Tokens { mask, .. } = &data.train.target {
            let steps = mask.iter().filter(|&&m| m).count() as f64 / mask.nrows().max(1) as f64;
            live.doctor.set_init_loss_scale(steps);
        }
        let report = fit_seq(&mut model, &data.train, &data.val, &cfg, &mut live);
        Examined { doctor: live.doctor, report, train_len: data.train.len(), dead_at_init: Vec::new() }
    } else {
        let data = prepare_data(exp, base)?;
        let mut model = build_model(exp, &data)?;
        header(model.layers.iter().map(|l| l.describe()).collect::<Vec<_>>().join(" -> "));
        let mut live = live(data.train.classes);
        let mut dead_at_init = Vec::new();
        if watch.dead_at_init {
            let mut before = Doctor::new(dcfg, cfg.loss, data.train.classes);
            before.dead_unit_pass(&mut model, &data.train);
            dead_at_init = before.stats.dead_units;
        }
        let report = fit(&mut model, &data.train, &data.val, &cfg, &mut live);
        live.doctor.dead_unit_pass(&mut model, &data.train);
        Examined { doctor: live.doctor, report, train_len: data.train.len(), dead_at_init }
    })
}

/// Run `leaky doctor`.
pub fn run(args: DoctorArgs) -> Result<(), Failure> {
    let exp = config::load(&args.file)?;
    if let Some(p) = &args.json {
        crate::train_cmd::check_output_path("--json", p)?;
    }
    if args.report.is_some() && exp.model.kind == config::ModelKind::Dqn {
        return Err(Failure::BadInput(anyhow!(
            "--report: not available for model.kind = \"dqn\" yet (`leaky demo dqn` draws the DQN charts); use --json"
        )));
    }
    if let Some(dir) = &args.report {
        crate::report::prepare_dir(dir)?;
    }
    if args.sample_every == 0 {
        return Err(Failure::BadInput(anyhow!("--sample-every 0: must be at least 1")));
    }
    if exp.model.kind == config::ModelKind::Dqn {
        return crate::rl_cmd::run_doctor(&args, &exp);
    }
    let base = args.file.parent().unwrap_or(std::path::Path::new(""));
    let style = Style { on: std::io::stdout().is_terminal() };
    let watch = Watch {
        sample_every: args.sample_every,
        live: (!args.quiet).then_some((&args.file, style)),
        dead_at_init: false,
    };
    let Examined { doctor, report, train_len: dataset_len, .. } =
        examine(&exp, base, &watch).map_err(|e| anyhow!("{}: {e:#}", show(&args.file)))?;
    let findings = doctor.diagnose();
    println!(
        "{}; {} steps on {} training examples; best val acc {:.2}%, best val loss {:.4}",
        print_diagnosis(&style, &findings),
        report.steps,
        dataset_len,
        100.0 * if report.best_val_acc.is_finite() { report.best_val_acc } else { f64::NAN },
        report.best_val_loss
    );
    let mut treatments = Vec::new();
    if args.treat {
        println!();
        println!("{}", style.paint("1", "Treatment: each finding's first fix, same budget"));
        let mut tried: HashSet<String> = HashSet::new();
        for f in findings.iter().filter(|f| f.severity.is_at_least(Severity::Warning)) {
            let Some(fix) = f.fix.first() else { continue };
            if !tried.insert(fix.to_string()) {
                continue;
            }
            let treated = fix_settings(fix).map(|s| apply_settings(&exp, &s));
            let fix = fix.to_string();
            let mut t = Treatment {
                finding: label(f),
                fix: fix.clone(),
                applied: false,
                gone: false,
                findings_after: Vec::new(),
                before: outcome(&report),
                after: serde_json::Value::Null,
            };
            match treated {
                Some(Ok(exp2)) => {
                    let quiet = Watch { sample_every: args.sample_every, live: None, dead_at_init: false };
                    let Examined { doctor: doctor2, report: report2, .. } = examine(&exp2, base, &quiet)
                        .map_err(|e| Failure::Run(anyhow!("treating with `{fix}`: {}: {e:#}", show(&args.file))))?;
                    let after = doctor2.diagnose();
                    t.applied = true;
                    // Gone means no warning or error of the same code anywhere (a fix that only
                    // moves the problem to another layer has not removed it).
                    t.gone = !after.iter().any(|g| g.code == f.code && g.severity.is_at_least(Severity::Warning));
                    t.findings_after =
                        after.iter().filter(|g| g.severity.is_at_least(Severity::Warning)).map(label).collect();
                    t.after = outcome(&report2);
                    println!(
                        "{:<44} {:<52} {}  val acc {} -> {}, val loss {:.4} -> {:.4}",
                        t.finding,
                        fix,
                        if t.gone { style.paint("32", "gone     ") } else { style.paint("31", "persists ") },
                        pct(report.best_val_acc),
                        pct(report2.best_val_acc),
                        report.best_val_loss,
                        report2.best_val_loss
                    );
                    if !t.findings_after.is_empty() {
                        println!("{:<44} still found: {}", "", t.findings_after.join("; "));
                    }
                }
                Some(Err(e)) => println!("{:<44} {fix}: cannot apply ({e:#})", t.finding),
                None => println!("{:<44} {fix}: names no value to apply automatically", t.finding),
            }
            treatments.push(t);
        }
    }
    if let Some(path) = &args.json {
        let metrics = serde_json::json!({
            "treatments": treatments,
            "best_val_acc": report.best_val_acc, "best_val_loss": report.best_val_loss,
            "best_epoch": report.best_epoch, "steps": report.steps, "seconds": report.seconds,
            "diverged_at_step": report.diverged_at_step, "history": report.history,
            "loss_per_step": doctor.losses,
        });
        let run = serde_json::json!({"file": show(&args.file), "experiment": exp, "sample_every": args.sample_every});
        let doc = Report::new(run, findings.clone(), metrics);
        leaky::train::write_atomic(path, doc.to_json_string().as_bytes())
            .map_err(|e| Failure::Run(anyhow!("cannot write {}: {e}", show(path))))?;
    }
    if let Some(dir) = &args.report {
        let run = crate::report::doctor::DoctorRun {
            file: &show(&args.file),
            experiment: &exp,
            sample_every: args.sample_every,
            findings: &findings,
            stats: &doctor.stats,
            losses: &doctor.losses,
            train: &report,
        };
        let path = crate::report::write_report(dir, &crate::report::doctor::report(&run)).map_err(Failure::Run)?;
        println!("report: {}", show(&path));
    }
    check_fail_on(args.fail_on, &findings)
}

/// Exit 1 (`Failure::Findings`) when a finding reaches `fail_on`; shared by the MLP,
/// recurrent and DQN paths of `leaky doctor`.
pub(crate) fn check_fail_on(fail_on: FailOn, findings: &[Finding]) -> Result<(), Failure> {
    let threshold = match fail_on {
        FailOn::Error => Some(Severity::Error),
        FailOn::Warning => Some(Severity::Warning),
        FailOn::Info => Some(Severity::Info),
        FailOn::Never => None,
    };
    if let Some(t) = threshold {
        if findings.iter().any(|f| f.severity.is_at_least(t)) {
            return Err(Failure::Findings(format!("a finding reached --fail-on {}", t.as_str())));
        }
    }
    Ok(())
}
