//! `leaky train FILE.toml`: presentation of `leaky::experiment::run` without the doctor.

use crate::present::{check_output_path, in_file, open_log, print_header, with_log, write_json, Live};
use crate::{show, Failure};
use anyhow::anyhow;
use clap::Args;
use leaky::experiment::{self, Model, RunOptions, Trained};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Arguments of `leaky train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The experiment file (TOML; see examples/digits.toml and docs/experiment.md).
    pub file: PathBuf,
    /// Save the best parameters to this safetensors file (written atomically); for
    /// feed-forward models with the state `--resume` needs (docs/checkpoints.md).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// The format of --save: `leaky` (resumable, docs/checkpoints.md) or `pytorch` (a
    /// state_dict that PyTorch's load_state_dict accepts for the same architecture: keys
    /// "<index or name>.weight", Linear weights (out, in); docs/inspect.md).
    #[arg(long, value_enum, default_value_t = SaveFormat::Leaky, requires = "save")]
    pub save_format: SaveFormat,
    /// Continue the run saved in this checkpoint (by `leaky train --save`) up to
    /// train.epochs, the total: same result as one uninterrupted run. Feed-forward models.
    #[arg(long, value_name = "CKPT")]
    pub resume: Option<PathBuf>,
    /// Write the run's history (per-epoch loss and accuracy) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Stream one JSON line per step, epoch, DQN episode and new finding to this file while
    /// training (JSON Lines; fields in docs/experiment.md), e.g. to plot a run as it goes.
    #[arg(long, value_name = "FILE.jsonl")]
    pub log: Option<PathBuf>,
    /// Print only the final summary.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What `--save` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SaveFormat {
    /// leaky's checkpoint (best parameters plus the resume state).
    Leaky,
    /// A PyTorch state_dict (safetensors) of the best parameters.
    Pytorch,
}

/// Run `leaky train`.
pub fn run(args: TrainArgs) -> Result<(), Failure> {
    let exp = experiment::load(&args.file)?;
    if let Some(p) = &args.save {
        check_output_path("--save", p)?;
    }
    if let Some(p) = &args.log {
        check_output_path("--log", p)?;
    }
    if let Some(p) = &args.json {
        check_output_path("--json", p)?;
    }
    let base = args.file.parent().unwrap_or(Path::new(""));
    let (data, mut model) = experiment::prepare(&exp, base).map_err(in_file(&args.file))?;
    let resume = match &args.resume {
        Some(ckpt) => Some(experiment::load_resume(&exp, &mut model, ckpt)?),
        None => None,
    };
    if !args.quiet {
        print_header(&args.file, &exp, &data, &model);
    }
    if let (Some(ckpt), Some(state)) = (&args.resume, &resume) {
        println!(
            "resuming {} after epoch {} of {} (best val acc so far {:.2}% at epoch {})",
            show(ckpt),
            state.epochs_done,
            exp.train.epochs,
            100.0 * state.best_val_acc.max(0.0),
            state.best_epoch + 1
        );
    }
    let mut live =
        Live::new(args.quiet, true, exp.train.epochs, data.train_len().div_ceil(exp.train.batch_size) as u64);
    live.train_acc = matches!(model, Model::Feed { .. });
    let log = match &args.log {
        Some(p) => Some((p.as_path(), open_log(p)?)),
        None => None,
    };
    let (result, log_failure) = with_log(log, &mut live, |events| {
        experiment::run_prepared_from(&exp, data, model, RunOptions::train(), resume, events)
    });
    live.finish();
    let metrics = result.metrics();
    if let Some(r) = &result.dqn {
        println!(
            "done: mean return {:.1} over the last {} episodes (CartPole-v1 caps it at 500); {} updates, {} env steps in {:.2}s",
            r.mean_last(50),
            r.returns.len().min(50),
            r.updates,
            r.env_steps,
            r.seconds
        );
    }
    if let (Some(r), Trained::Seq(model)) = (&result.report, &result.model) {
        println!(
            "done: val loss {:.4} at init -> {:.4} (best, epoch {} of {}); {} steps in {:.2}s",
            result.initial_val_loss.unwrap_or(f64::NAN),
            r.best_val_loss,
            r.best_epoch + 1,
            r.history.len(),
            r.steps,
            r.seconds
        );
        let norms = model.bptt_norms();
        if !norms.is_empty() {
            let t = norms.len();
            let pick: Vec<String> =
                [0, t / 4, t / 2, 3 * t / 4, t - 1].iter().map(|&i| format!("t={i}: {:.2e}", norms[i])).collect();
            println!("|dL/dh_t| in the last step (first to last time step): {}", pick.join(", "));
        }
    }
    if let (Some(r), Trained::Feed { .. }) = (&result.report, &result.model) {
        let which = if result.val_len == 0 { "train acc (no validation split)" } else { "val acc" };
        println!(
            "done: best {which} {:.2}% at epoch {} of {}; {} steps in {:.2}s",
            100.0 * r.best_val_acc.max(0.0),
            r.best_epoch + 1,
            r.history.len(),
            r.steps,
            r.seconds
        );
    }
    if let Some(path) = &args.json {
        let mut doc = serde_json::json!({
            "version": 1,
            "run": {"file": show(&args.file), "experiment": exp},
            "metrics": metrics,
        });
        if let Some(r) = &result.report {
            doc["history"] = serde_json::json!(r.history);
        }
        write_json(path, &doc)?;
    }
    if let Some(f) = log_failure {
        return Err(f);
    }
    if let Some(step) = result.report.as_ref().and_then(|r| r.diverged_at_step) {
        return Err(Failure::Run(anyhow!(
            "the loss became NaN or infinite at step {step}; lower train.lr or set train.clip_grad_norm"
        )));
    }
    if let Some(u) = result.dqn.as_ref().and_then(|r| r.diverged_at) {
        return Err(Failure::Run(anyhow!(
            "the TD loss became NaN or infinite at update {u}; lower train.lr or set train.clip_grad_norm"
        )));
    }
    if let (Some(path), SaveFormat::Pytorch) = (&args.save, args.save_format) {
        let saved = match &result.model {
            Trained::Feed { net, names } => leaky::import::save_pytorch(path, net, names),
            Trained::Seq(model) => leaky::import::save_pytorch_seq(path, model, &leaky::import::SeqKeys::default()),
            Trained::Dqn(net) => leaky::import::save_pytorch(path, net, &[]),
        };
        saved.map_err(|e| Failure::Run(anyhow!("{e}")))?;
        println!("saved {} (PyTorch state_dict)", show(path));
        return Ok(());
    }
    if let Some(path) = &args.save {
        let meta = HashMap::from([("experiment".to_string(), show(&args.file))]);
        let saved = result.save(path, meta).map(|_| match (&result.model, &result.report) {
            (Trained::Feed { .. }, Some(r)) => format!(" (best epoch {})", r.best_epoch + 1),
            _ => String::new(),
        });
        let note = saved.map_err(|e| Failure::Run(anyhow!("{e}")))?;
        println!("saved {}{note}", show(path));
    }
    Ok(())
}
