//! Checkpoints of experiment runs: saving a run ([`Run::save`]), resuming a feed-forward
//! run from its checkpoint ([`load_resume`], then [`super::run_prepared_from`]) and
//! evaluating a checkpoint on the experiment's validation split ([`evaluate_checkpoint`]).
//! The file format is described in docs/checkpoints.md.

use super::config::Experiment;
use super::pipeline::{prepare, Data, Model};
use super::run::{Run, Trained};
use super::{Error, Result};
use crate::train::{load_checkpoint, load_resumable, save_named, save_resumable, CheckpointError, TrainState};
use std::collections::HashMap;
use std::path::Path;

/// The metadata key under which a resumable checkpoint records what its run depends on
/// besides the model: the experiment's seed, `[data]` and `[train]` without `epochs`.
pub const EXPERIMENT_KEY: &str = "leaky.experiment";

/// What must not change between a run and its resumption: the seed, `[data]` and `[train]`
/// (but `train.epochs`, the total, which resuming may raise).
fn fingerprint(exp: &Experiment) -> serde_json::Value {
    let mut train = serde_json::to_value(&exp.train).unwrap_or_default();
    if let Some(t) = train.as_object_mut() {
        t.remove("epochs");
    }
    serde_json::json!({
        "seed": exp.seed,
        "data": serde_json::to_value(&exp.data).unwrap_or_default(),
        "train": train,
    })
}

/// The keys (`train.lr`, `seed`, ...) whose values differ between two fingerprints.
fn differences(saved: &serde_json::Value, now: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match (saved.as_object(), now.as_object()) {
        (Some(a), Some(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                let null = serde_json::Value::Null;
                differences(a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null), &key, out);
            }
        }
        _ if saved != now => out.push(format!("{prefix}: checkpoint {saved}, experiment {now}")),
        _ => {}
    }
}

impl Run {
    /// Save the trained model to a safetensors file at `path`, atomically, with `metadata`
    /// (plus the model's summary and its best score). Feed-forward runs write a resumable
    /// checkpoint ([`crate::train::save_resumable`]: the best epoch's tensors under their
    /// usual names, the resume state under `resume.`); recurrent models their parameters as
    /// `<cell>.<name>`; a DQN its Q-network.
    pub fn save(&self, path: &Path, mut metadata: HashMap<String, String>) -> std::result::Result<(), CheckpointError> {
        match &self.model {
            Trained::Feed { net, .. } => {
                let r = self.report.as_ref().expect("feed-forward runs have a report");
                metadata.insert("best_val_acc".into(), format!("{:.6}", r.best_val_acc));
                metadata.insert("model".into(), net.summary());
                metadata.insert(EXPERIMENT_KEY.into(), fingerprint(&self.experiment).to_string());
                let state = self.state.as_ref().expect("feed-forward runs have a training state");
                save_resumable(net, state, path, metadata)
            }
            Trained::Seq(model) => {
                let r = self.report.as_ref().expect("recurrent runs have a report");
                let tensors: Vec<(String, &crate::Tensor<f32>)> = model
                    .params()
                    .into_iter()
                    .map(|p| (format!("{}.{}", model.spec.cell.name(), p.name), &p.value))
                    .collect();
                metadata.insert("model".into(), model.describe());
                metadata.insert("best_val_loss".into(), format!("{:.6}", r.best_val_loss));
                save_named(&tensors, path, metadata)
            }
            Trained::Dqn(net) => {
                let r = self.dqn.as_ref().expect("DQN runs have a DQN report");
                metadata.insert("model".into(), net.summary());
                metadata.insert("mean_return_last_50".into(), format!("{:.3}", r.mean_last(50)));
                crate::train::save_checkpoint(net, path, metadata)
            }
        }
    }
}

/// Load the checkpoint at `path` (written by [`Run::save`] for this experiment) into
/// `model` and return the state to continue training from with
/// [`super::run_prepared_from`]. Refused ([`Error::BadInput`], nothing trained): a model
/// other than feed-forward; a file that cannot be read, is corrupted (checksum mismatch) or
/// holds no resume state; a tensor missing, of another shape (both shapes named) or not
/// finite; a checkpoint of a run with another seed, `[data]` or `[train]` (the keys named);
/// a checkpoint already at or past `train.epochs`, the total.
///
/// ```
/// use leaky::experiment::{load_resume, parse, prepare, run, run_prepared_from, NoEvents, RunOptions};
/// use std::path::Path;
///
/// let file = "seed = 1\n[data]\ndataset = \"spiral\"\n[model]\nhidden = [16]\n[train]\nepochs = 4\n";
/// let ckpt = std::env::temp_dir().join(format!("leaky-doc-resume-{}.safetensors", std::process::id()));
/// // Two epochs, saved ...
/// let two = parse(&file.replace("epochs = 4", "epochs = 2"))?;
/// run(&two, Path::new("."), RunOptions::train(), &mut NoEvents)?.save(&ckpt, Default::default()).unwrap();
/// // ... and resumed up to four: the same run as four epochs in one go.
/// let four = parse(file)?;
/// let (data, mut model) = prepare(&four, Path::new("."))?;
/// let state = load_resume(&four, &mut model, &ckpt)?;
/// let resumed = run_prepared_from(&four, data, model, RunOptions::train(), Some(state), &mut NoEvents);
/// let whole = run(&four, Path::new("."), RunOptions::train(), &mut NoEvents)?;
/// assert_eq!(resumed.metrics()["final_train_loss"], whole.metrics()["final_train_loss"]);
/// assert_eq!(resumed.report.unwrap().history.len(), 4);
/// # std::fs::remove_file(&ckpt).ok();
/// # Ok::<(), leaky::experiment::Error>(())
/// ```
pub fn load_resume(exp: &Experiment, model: &mut Model, path: &Path) -> Result<TrainState<f32>> {
    let p = path.display();
    let Model::Feed { net, .. } = model else {
        bad!(
            "--resume: only feed-forward models (model.kind = \"mlp\") can be resumed; this experiment's model is {}",
            format!("{:?}", exp.model.kind).to_lowercase()
        );
    };
    let meta = read_metadata(path)?;
    if let Some(saved) = meta.get(EXPERIMENT_KEY) {
        let saved: serde_json::Value = serde_json::from_str(saved)
            .map_err(|e| Error::BadInput(format!("{p}: {EXPERIMENT_KEY} is not JSON: {e}")))?;
        let mut diff = Vec::new();
        differences(&saved, &fingerprint(exp), "", &mut diff);
        if !diff.is_empty() {
            bad!(
                "{p}: the checkpoint's run had other settings than this experiment ({}); resuming would not continue that run",
                diff.join("; ")
            );
        }
    }
    let Some(resume) = meta.get(crate::train::RESUME_KEY) else {
        bad!("{p}: no resume state in this checkpoint (it holds parameters only: written by `leaky train --save` of an older leaky, or by another tool)");
    };
    let done = serde_json::from_str::<serde_json::Value>(resume).ok().and_then(|v| v["epochs_done"].as_u64());
    if let Some(done) = done.filter(|&d| d >= exp.train.epochs as u64) {
        bad!(
            "{p}: the checkpoint has {done} epoch(s) done and train.epochs = {} is the total; nothing left to train (raise train.epochs to train more)",
            exp.train.epochs
        );
    }
    // Nothing in `net` changes unless every tensor and the whole state fit.
    let state = load_resumable(net, path).map_err(|e| Error::BadInput(e.to_string()))?;
    let state = state.expect("the resume key was checked above");
    Ok(state)
}

/// The `__metadata__` of a safetensors file (empty when it has none); errors name the file.
fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = crate::data::read_file(path).map_err(|e| Error::BadInput(e.to_string()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::BadInput(format!("{}: not a safetensors checkpoint: {e}", path.display())))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// Loss and accuracy of a checkpoint on an experiment's data ([`evaluate_checkpoint`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    /// Mean data loss (the experiment's `train.loss`).
    pub loss: f64,
    /// Share of examples classified correctly.
    pub accuracy: f64,
    /// Examples evaluated.
    pub examples: usize,
    /// `"validation"`, or `"training"` when the experiment has no validation split (as the
    /// trainer's best accuracy then is the training accuracy).
    pub split: &'static str,
}

/// Evaluate the checkpoint at `path` (its best parameters, as [`Run::save`] wrote them, or
/// any checkpoint with the model's tensor names) on the validation split of `exp`'s data
/// (relative paths against `base`), in eval mode: the split, preprocessing and model are
/// those `leaky train` used, so the accuracy equals the run's `best_val_acc`. Refused
/// ([`Error::BadInput`]): a model other than feed-forward, a checkpoint that does not fit
/// the model (a tensor missing, of another shape, not finite) or is corrupted.
pub fn evaluate_checkpoint(exp: &Experiment, base: &Path, path: &Path) -> Result<Evaluation> {
    let (data, model) = prepare(exp, base)?;
    let (Data::Rows { train, val }, Model::Feed { mut net, .. }) = (data, model) else {
        bad!(
            "evaluating a checkpoint needs a feed-forward model (model.kind = \"mlp\"); this experiment's model is {}",
            format!("{:?}", exp.model.kind).to_lowercase()
        );
    };
    load_checkpoint(&mut net, path).map_err(|e| Error::BadInput(e.to_string()))?;
    let (set, split) = if val.is_empty() { (&train, "training") } else { (&val, "validation") };
    let (accuracy, loss) = crate::train::evaluate(&mut net, set, exp.train.loss);
    Ok(Evaluation { loss, accuracy, examples: set.len(), split })
}
