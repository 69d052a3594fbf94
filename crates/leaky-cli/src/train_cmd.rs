//! `leaky train FILE.toml`

use crate::experiment::{build_model, build_seq_model, prepare_data, prepare_seq, train_config};
use crate::{config, show, Failure};
use anyhow::anyhow;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use leaky::nn::seq::SeqModel;
use leaky::nn::Sequential;
use leaky::train::{fit, fit_seq, EpochInfo, Observer, SeqObserver, StepInfo, TrainConfig, TrainReport};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Arguments of `leaky train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The experiment file (TOML; see examples/digits.toml).
    pub file: PathBuf,
    /// Save the best parameters to this safetensors file (written atomically).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Write the run's history (per-epoch loss and accuracy) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Print only the final summary.
    #[arg(long, short)]
    pub quiet: bool,
}

struct Progress {
    bar: Option<ProgressBar>,
    epochs: usize,
    steps_per_epoch: u64,
    quiet: bool,
    loss_sum: f64,
    steps: usize,
}

impl Progress {
    /// Progress over `cfg.epochs` epochs of `train_len` examples in batches of
    /// `cfg.batch_size`; prints nothing when `quiet`.
    fn new(cfg: &TrainConfig, train_len: usize, quiet: bool) -> Self {
        Progress {
            bar: None,
            epochs: cfg.epochs,
            steps_per_epoch: train_len.div_ceil(cfg.batch_size) as u64,
            quiet,
            loss_sum: 0.0,
            steps: 0,
        }
    }

    fn new_bar(&self, epoch: usize) -> Option<ProgressBar> {
        if self.quiet {
            return None;
        }
        let bar = ProgressBar::new(self.steps_per_epoch);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix:>7} [{bar:30}] {pos:>4}/{len:4} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, self.epochs));
        Some(bar)
    }
}

impl Progress {
    fn step(&mut self, info: &StepInfo) {
        if self.bar.is_none() && !self.quiet {
            self.bar = self.new_bar(info.epoch);
        }
        self.loss_sum += info.loss;
        self.steps += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("loss {:.4}", self.loss_sum / self.steps as f64));
        }
    }

    fn end_epoch(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.loss_sum = 0.0;
        self.steps = 0;
    }
}

impl Observer<f32> for Progress {
    fn on_step(&mut self, info: &StepInfo, _model: &Sequential<f32>) {
        self.step(info);
    }

    fn on_epoch(&mut self, info: &EpochInfo, _model: &Sequential<f32>) {
        self.end_epoch();
        if !self.quiet {
            println!(
                "epoch {:>3}/{}  loss {:.4}  train acc {:>6.2}%  val acc {:>6.2}%  ({:.2}s)",
                info.epoch + 1,
                self.epochs,
                info.train_loss,
                100.0 * info.train_acc,
                100.0 * info.val_acc,
                info.seconds
            );
        }
    }
}

/// Fail before training, not after, when an output file cannot be written there.
pub fn check_output_path(flag: &str, path: &std::path::Path) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        anyhow::bail!("{flag} {}: directory {} does not exist", show(path), show(dir));
    }
    if path.is_dir() {
        anyhow::bail!("{flag} {}: is a directory", show(path));
    }
    Ok(())
}

impl SeqObserver<f32> for Progress {
    fn on_step(&mut self, info: &StepInfo, _model: &SeqModel<f32>) {
        self.step(info);
    }

    fn on_epoch(&mut self, info: &EpochInfo, model: &SeqModel<f32>) {
        self.end_epoch();
        if !self.quiet {
            let acc =
                if info.val_acc.is_nan() { String::new() } else { format!("  val acc {:>6.2}%", 100.0 * info.val_acc) };
            let n = model.bptt_norms();
            let grad = match (n.first(), n.last()) {
                (Some(first), Some(last)) if *last > 0.0 => format!("  |dL/dh_0|/|dL/dh_T| {:.1e}", first / last),
                _ => String::new(),
            };
            println!(
                "epoch {:>3}/{}  loss {:.4}  val loss {:.4}{acc}{grad}  ({:.2}s)",
                info.epoch + 1,
                self.epochs,
                info.train_loss,
                info.val_loss,
                info.seconds
            );
        }
    }
}

/// Write `doc` as pretty JSON to `path` atomically.
fn write_json(path: &std::path::Path, doc: &serde_json::Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(doc).expect("serialisable");
    leaky::train::write_atomic(path, text.as_bytes())
        .map_err(|e| Failure::Run(anyhow!("cannot write {}: {e}", show(path))))
}

/// The run header both trainers print: the data line (`data` says what the split holds), the
/// model (`model`, after "model (N parameters):"), `extra` lines, then the training settings;
/// `clip` adds `clip_grad_norm` to those (the recurrent trainer's remedy for explosion).
fn print_header(
    file: &Path,
    exp: &config::Experiment,
    data: &str,
    model: &str,
    extra: &[String],
    cfg: &TrainConfig,
    clip: bool,
) {
    println!("{}: {} ({data})", show(file), exp.data.dataset);
    println!("{model}");
    for line in extra {
        println!("{line}");
    }
    let clip = if clip { format!(", clip_grad_norm {}", cfg.clip_grad_norm) } else { String::new() };
    println!(
        "training: {} epochs, batch {}, {} lr {}, loss {}{clip}",
        cfg.epochs,
        cfg.batch_size,
        cfg.update.rule.name(),
        cfg.update.lr,
        cfg.loss.name()
    );
}

/// The run's JSON document (`{"version", "run", "metrics", "history"}`), written atomically.
fn write_run_json(
    path: &Path,
    args: &TrainArgs,
    exp: &config::Experiment,
    metrics: serde_json::Value,
    report: &TrainReport,
) -> Result<(), Failure> {
    let doc = serde_json::json!({
        "version": 1,
        "run": {"file": show(&args.file), "experiment": exp},
        "metrics": metrics,
        "history": report.history,
    });
    write_json(path, &doc)
}

/// A run whose loss became NaN or infinite fails (exit 1) with the step and the remedies.
fn check_diverged(report: &TrainReport) -> Result<(), Failure> {
    match report.diverged_at_step {
        Some(step) => Err(Failure::Run(anyhow!(
            "the loss became NaN or infinite at step {step}; lower train.lr or set train.clip_grad_norm"
        ))),
        None => Ok(()),
    }
}

/// `leaky train` for `model.kind = "rnn" | "lstm"`.
fn run_seq(args: &TrainArgs, exp: &config::Experiment) -> Result<(), Failure> {
    let base = args.file.parent().unwrap_or(std::path::Path::new(""));
    let data = prepare_seq(exp, base).map_err(|e| anyhow!("{}: {e:#}", show(&args.file)))?;
    let mut model = build_seq_model(exp, &data).map_err(|e| anyhow!("{}: {e:#}", show(&args.file)))?;
    let cfg = train_config(exp);
    let (radius, sigma) = model.whh_spectrum();
    if !args.quiet {
        print_header(
            &args.file,
            exp,
            &format!("{} train / {} val sequences of {} steps", data.train.len(), data.val.len(), data.train.seq_len()),
            &format!("model ({} parameters): {}", model.num_params(), model.describe()),
            &[format!("Whh at init: spectral radius {radius:.3}, largest singular value {sigma:.3}")],
            &cfg,
            true,
        );
    }
    let mut progress = Progress::new(&cfg, data.train.len(), args.quiet);
    let first_loss = {
        let idx: Vec<usize> = (0..data.val.len().min(256)).collect();
        leaky::train::evaluate_seq(&model, &data.val.subset(&idx)).0
    };
    let report = fit_seq(&mut model, &data.train, &data.val, &cfg, &mut progress);
    progress.end_epoch();
    let norms = model.bptt_norms().to_vec();
    println!(
        "done: val loss {:.4} at init -> {:.4} (best, epoch {} of {}); {} steps in {:.2}s",
        first_loss,
        report.best_val_loss,
        report.best_epoch + 1,
        report.history.len(),
        report.steps,
        report.seconds
    );
    if !norms.is_empty() {
        let t = norms.len();
        let pick: Vec<String> =
            [0, t / 4, t / 2, 3 * t / 4, t - 1].iter().map(|&i| format!("t={i}: {:.2e}", norms[i])).collect();
        println!("|dL/dh_t| in the last step (first to last time step): {}", pick.join(", "));
    }
    if let Some(path) = &args.json {
        let metrics = serde_json::json!({"initial_val_loss": first_loss, "best_val_loss": report.best_val_loss,
                        "best_val_acc": report.best_val_acc, "best_epoch": report.best_epoch,
                        "steps": report.steps, "seconds": report.seconds,
                        "diverged_at_step": report.diverged_at_step,
                        "whh_spectral_radius_init": radius, "bptt_norms_last_step": norms});
        write_run_json(path, args, exp, metrics, &report)?;
    }
    check_diverged(&report)?;
    if let Some(path) = &args.save {
        let tensors: Vec<(String, &leaky::Tensor<f32>)> =
            model.params().into_iter().map(|p| (format!("{}.{}", model.spec.cell.name(), p.name), &p.value)).collect();
        let meta = HashMap::from([
            ("experiment".to_string(), show(&args.file)),
            ("model".to_string(), model.describe()),
            ("best_val_loss".to_string(), format!("{:.6}", report.best_val_loss)),
        ]);
        leaky::train::save_named(&tensors, path, meta).map_err(|e| Failure::Run(anyhow!("{e}")))?;
        println!("saved {}", show(path));
    }
    Ok(())
}

/// Run `leaky train`.
pub fn run(args: TrainArgs) -> Result<(), Failure> {
    let exp = config::load(&args.file)?;
    if let Some(p) = &args.save {
        check_output_path("--save", p)?;
    }
    if let Some(p) = &args.json {
        check_output_path("--json", p)?;
    }
    if matches!(exp.model.kind, config::ModelKind::Rnn | config::ModelKind::Lstm) {
        return run_seq(&args, &exp);
    }
    if exp.model.kind == config::ModelKind::Dqn {
        return crate::rl_cmd::run_train(&args, &exp);
    }
    let base = args.file.parent().unwrap_or(std::path::Path::new(""));
    let data = prepare_data(&exp, base).map_err(|e| anyhow!("{}: {e:#}", show(&args.file)))?;
    let mut model = build_model(&exp, &data).map_err(|e| anyhow!("{}: {e:#}", show(&args.file)))?;
    let cfg = train_config(&exp);
    if !args.quiet {
        print_header(
            &args.file,
            &exp,
            &format!(
                "{} train / {} val examples, {} features, {} classes",
                data.train.len(),
                data.val.len(),
                data.train.dim(),
                data.train.classes
            ),
            &format!("model ({} parameters):\n{}", model.num_params(), model.summary()),
            &[],
            &cfg,
            false,
        );
    }
    let mut progress = Progress::new(&cfg, data.train.len(), args.quiet);
    let report = fit(&mut model, &data.train, &data.val, &cfg, &mut progress);
    progress.end_epoch();
    let best = &report.history.get(report.best_epoch);
    println!(
        "done: best val acc {:.2}% at epoch {} of {}; {} steps in {:.2}s",
        100.0 * report.best_val_acc.max(0.0),
        report.best_epoch + 1,
        report.history.len(),
        report.steps,
        report.seconds
    );
    if let Some(path) = &args.json {
        let metrics = serde_json::json!({"best_val_acc": report.best_val_acc, "best_epoch": report.best_epoch,
                        "steps": report.steps, "seconds": report.seconds,
                        "diverged_at_step": report.diverged_at_step});
        write_run_json(path, &args, &exp, metrics, &report)?;
    }
    check_diverged(&report)?;
    if let Some(path) = &args.save {
        let meta = HashMap::from([
            ("experiment".to_string(), show(&args.file)),
            ("best_val_acc".to_string(), format!("{:.6}", report.best_val_acc)),
            ("model".to_string(), model.summary()),
        ]);
        leaky::train::save_checkpoint(&model, path, meta).map_err(|e| Failure::Run(anyhow!("{e}")))?;
        println!("saved {} (best epoch {})", show(path), best.map(|b| b.epoch + 1).unwrap_or(0));
    }
    Ok(())
}
