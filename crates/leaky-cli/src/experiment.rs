//! From an [`Experiment`] to data and a model: the first arrow of
//! config -> data + model -> trainer.

use crate::config::{Experiment, ModelKind};
use anyhow::{bail, Result};
use leaky::data::{Dataset, Standardizer};
use leaky::nn::{MlpSpec, Sequential};
use leaky::train::TrainConfig;
use std::path::Path;

/// Training and validation splits, ready to train on.
pub struct Prepared {
    /// Training split (standardised when `data.normalize`).
    pub train: Dataset,
    /// Validation split (standardised with the training statistics).
    pub val: Dataset,
}

/// Resolve the relative file paths of a data set spec (`csv:PATH`, `npy:X,Y`,
/// `idx:IMAGES,LABELS`, `text:PATH`) against `base`, the experiment file's directory, so an
/// experiment runs the same from any working directory (as Cargo resolves paths in
/// Cargo.toml). Bundled names pass through unchanged.
pub fn resolve_dataset(spec: &str, base: &Path) -> String {
    let Some((kind, rest)) = spec.split_once(':') else { return spec.to_string() };
    if !matches!(kind, "csv" | "npy" | "idx" | "text") {
        return spec.to_string();
    }
    let resolve = |p: &str| {
        let path = Path::new(p);
        if path.is_absolute() || p.is_empty() {
            p.to_string()
        } else {
            base.join(path).display().to_string()
        }
    };
    let parts: Vec<String> = match kind {
        "npy" | "idx" => match rest.split_once(',') {
            Some((a, b)) => vec![resolve(a), resolve(b)],
            None => vec![resolve(rest)],
        },
        _ => vec![resolve(rest)],
    };
    format!("{kind}:{}", parts.join(","))
}

/// Load the data set, validate it, split it and standardise it as the experiment says.
/// Relative data paths are taken relative to `base` (the experiment file's directory).
pub fn prepare_data(exp: &Experiment, base: &Path) -> Result<Prepared> {
    let spec = resolve_dataset(&exp.data.dataset, base);
    let data = leaky::data::load(&spec, exp.seed)
        .map_err(|e| anyhow::anyhow!("data.dataset = {:?}: {e}", exp.data.dataset))?;
    if data.len() < 2 {
        bail!("data.dataset = {:?}: {} example(s); need at least 2", exp.data.dataset, data.len());
    }
    let (mut train, mut val) = data.split(exp.data.val_fraction, exp.seed);
    if train.is_empty() {
        bail!(
            "data.val_fraction = {}: leaves no training examples out of {}; use a smaller fraction",
            exp.data.val_fraction,
            data.len()
        );
    }
    if exp.data.normalize {
        let s = Standardizer::fit(&train.x);
        s.apply(&mut train.x);
        s.apply(&mut val.x);
    }
    Ok(Prepared { train, val })
}

/// The MLP the experiment describes, for data with `input_dim` features and `classes`
/// classes.
pub fn mlp_spec(exp: &Experiment, input_dim: usize, classes: usize) -> MlpSpec {
    MlpSpec {
        input_dim,
        hidden: exp.model.hidden.clone(),
        output_dim: classes,
        activation: exp.model.activation,
        init: exp.init(),
        bias_init: exp.model.bias_init,
        batchnorm: exp.model.batchnorm,
        dropout_keep: None,
    }
}

/// The most parameters a model may have (400 MB of f32 weights): a larger `model.hidden`
/// is almost always a typo, and would otherwise abort on allocation.
pub const MAX_PARAMS: usize = 100_000_000;

/// Count an MLP's parameters, naming the `model.hidden` entry that makes it too large.
fn check_mlp_size(spec: &MlpSpec) -> Result<()> {
    let mut total: usize = 0;
    let mut d = spec.input_dim;
    let widths = spec.hidden.iter().copied().chain(std::iter::once(spec.output_dim));
    for (i, h) in widths.enumerate() {
        let layer = d.checked_mul(h).and_then(|w| w.checked_add(h));
        total = match layer.and_then(|l| total.checked_add(l)) {
            Some(t) if t <= MAX_PARAMS => t,
            _ if i < spec.hidden.len() => {
                bail!("model.hidden[{i}] = {h}: the model would exceed {MAX_PARAMS} parameters")
            }
            _ => bail!("the output layer ({d} x {h}) would exceed {MAX_PARAMS} parameters"),
        };
        d = h;
    }
    Ok(())
}

/// Build the model the experiment describes.
pub fn build_model(exp: &Experiment, data: &Prepared) -> Result<Sequential<f32>> {
    match exp.model.kind {
        ModelKind::Mlp => {
            let spec = mlp_spec(exp, data.train.dim(), data.train.classes);
            check_mlp_size(&spec)?;
            Ok(spec.build(exp.seed))
        }
        ModelKind::Rnn | ModelKind::Lstm => unreachable!("recurrent models are built by build_seq_model"),
        other => bail!(
            "model.kind = {:?}: not available in this version of leaky (\"mlp\", \"rnn\" and \"lstm\" train so far)",
            format!("{other:?}").to_lowercase()
        ),
    }
}

/// Training and validation splits of a sequence task.
pub struct PreparedSeq {
    /// Training split.
    pub train: leaky::data::seq::SeqDataset,
    /// Validation split.
    pub val: leaky::data::seq::SeqDataset,
}

/// Load and split the sequence task for `model.kind = "rnn" | "lstm"`.
pub fn prepare_seq(exp: &Experiment, base: &Path) -> Result<PreparedSeq> {
    let spec = resolve_dataset(&exp.data.dataset, base);
    let data = leaky::data::seq::load_seq(&spec, exp.data.seq_len, exp.seed)
        .map_err(|e| anyhow::anyhow!("data.dataset = {:?}: {e}", exp.data.dataset))?;
    let (train, val) = data.split(exp.data.val_fraction, exp.seed);
    if train.is_empty() {
        bail!("data.val_fraction = {}: leaves no training sequences out of {}", exp.data.val_fraction, data.len());
    }
    Ok(PreparedSeq { train, val })
}

/// Build the recurrent model, checking that `model.hidden` and `train.loss` fit the task.
pub fn build_seq_model(exp: &Experiment, data: &PreparedSeq) -> Result<leaky::nn::seq::SeqModel<f32>> {
    use leaky::data::seq::SeqTarget;
    use leaky::losses::Loss;
    use leaky::nn::seq::{Cell, SeqModel, SeqSpec};
    let cell = if exp.model.kind == ModelKind::Lstm { Cell::Lstm } else { Cell::Rnn };
    if exp.model.hidden.len() != 1 {
        bail!("model.hidden = {:?}: a {} takes one entry, the hidden size (e.g. [64])", exp.model.hidden, cell.name());
    }
    let (needed, what) = match data.train.target {
        SeqTarget::Tokens { .. } => (Loss::Softmax, "a class per step"),
        SeqTarget::Final(_) => (Loss::Mse, "one number per sequence"),
    };
    if exp.train.loss != needed {
        bail!(
            "train.loss = {:?}: {} predicts {what}; use train.loss = {:?}",
            exp.train.loss.name(),
            exp.data.dataset,
            needed.name()
        );
    }
    if exp.model.batchnorm {
        bail!("model.batchnorm = true: not available for recurrent models");
    }
    let hidden = exp.model.hidden[0];
    if hidden > 4096 {
        bail!("model.hidden[0] = {hidden}: at most 4096 for recurrent models");
    }
    let spec = SeqSpec::for_data(&data.train, cell, hidden, exp.init(), exp.model.whh_radius);
    Ok(SeqModel::new(spec, exp.seed))
}

/// The trainer's settings from `[train]`.
pub fn train_config(exp: &Experiment) -> TrainConfig {
    let t = &exp.train;
    TrainConfig {
        epochs: t.epochs,
        batch_size: t.batch_size,
        update: leaky::optim::UpdateConfig::new(t.optimizer, t.lr),
        weight_decay: t.weight_decay,
        clip_grad_norm: t.clip_grad_norm,
        lr_decay: t.lr_decay,
        loss: t.loss,
        seed: exp.seed,
    }
}
