//! From an [`Experiment`] to data and a model: the first arrow of
//! experiment -> data + model -> trainer. Shapes are checked here, before any training.

use super::config::{Experiment, LayerConfig, LayerType, ModelKind};
use super::{Error, Result};
use crate::data::seq::{SeqDataset, SeqTarget};
use crate::data::{Dataset, Standardizer};
use crate::layers::activation::Nonlinearity;
use crate::layers::affine::Affine;
use crate::layers::batchnorm::{BatchNorm, SpatialBatchNorm};
use crate::layers::conv::{Conv2d, ConvParam};
use crate::layers::dropout::Dropout;
use crate::layers::flatten::Flatten;
use crate::layers::layernorm::LayerNorm;
use crate::layers::pool::{MaxPool, PoolParam};
use crate::losses::Loss;
use crate::nn::seq::{Cell, SeqModel, SeqSpec};
use crate::nn::{Activation, Sequential};
use crate::rl::dqn::DqnConfig;
use crate::tensor::Float;
use crate::train::TrainConfig;
use std::path::Path;

/// The most parameters a model may have (400 MB of f32 weights): a larger model is almost
/// always a typo, and would otherwise abort on allocation.
pub const MAX_PARAMS: usize = 100_000_000;

/// The most values one example may have at any layer's output (64 MB of f32 per example):
/// bounds the activation memory of a layer stack before anything is allocated.
pub const MAX_ACTIVATIONS_PER_EXAMPLE: usize = 16_000_000;

/// The data an experiment trains on.
// One value per run: the size difference between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum Data {
    /// Examples with a class label each (feed-forward models).
    Rows {
        /// Training split (standardised when `data.normalize`).
        train: Dataset,
        /// Validation split (standardised with the training statistics).
        val: Dataset,
    },
    /// Sequences (recurrent models).
    Seq {
        /// Training split.
        train: SeqDataset,
        /// Validation split.
        val: SeqDataset,
    },
    /// An environment (the DQN collects its own data).
    Env,
}

impl Data {
    /// Training examples (sequences); 0 for an environment.
    pub fn train_len(&self) -> usize {
        match self {
            Data::Rows { train, .. } => train.len(),
            Data::Seq { train, .. } => train.len(),
            Data::Env => 0,
        }
    }

    /// Validation examples (sequences); 0 for an environment or `data.val_fraction = 0`.
    pub fn val_len(&self) -> usize {
        match self {
            Data::Rows { val, .. } => val.len(),
            Data::Seq { val, .. } => val.len(),
            Data::Env => 0,
        }
    }

    /// A one-line description, e.g. `"1438 train / 359 val examples of shape (1, 8, 8), 10 classes"`.
    pub fn describe(&self) -> String {
        match self {
            Data::Rows { train, val } => format!(
                "{} train / {} val examples of shape {}, {} classes",
                train.len(),
                val.len(),
                shape_str(&train.feature_shape),
                train.classes
            ),
            Data::Seq { train, val } => {
                format!("{} train / {} val sequences of {} steps", train.len(), val.len(), train.seq_len())
            }
            Data::Env => "an environment".to_string(),
        }
    }
}

/// The model an experiment trains.
// One value per run: the size difference between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum Model {
    /// A feed-forward layer stack; `names[i]` is layer i's `name` (checkpoint prefix).
    Feed {
        /// The layers.
        net: Sequential<f32>,
        /// One entry per layer: its `name`, if given.
        names: Vec<Option<String>>,
    },
    /// A recurrent model.
    Seq(SeqModel<f32>),
    /// A DQN: the Q-network is built by the DQN trainer from this configuration.
    Dqn(Box<DqnConfig>),
}

impl Model {
    /// Trainable scalars (the DQN's Q-network included).
    pub fn num_params(&self) -> usize {
        match self {
            Model::Feed { net, .. } => net.num_params(),
            Model::Seq(m) => m.num_params(),
            Model::Dqn(cfg) => cfg.net.build::<f32>(cfg.seed).num_params(),
        }
    }

    /// The model listing: one line per layer, `"{index}  {layer}"` (the layer numbering
    /// every finding uses), or a one-line description for recurrent models and DQNs.
    pub fn listing(&self) -> String {
        match self {
            Model::Feed { net, .. } => net.summary(),
            Model::Seq(m) => m.describe(),
            Model::Dqn(cfg) => {
                let hidden: Vec<String> = cfg.net.hidden.iter().map(|h| h.to_string()).collect();
                format!("Q-network 4-{}-2 ({})", hidden.join("-"), cfg.net.activation.name())
            }
        }
    }
}

/// Resolve the relative file paths of a data set spec (`csv:PATH`, `npy:X,Y`,
/// `idx:IMAGES,LABELS`, `text:PATH`) against `base`, the experiment file's directory, so an
/// experiment runs the same from any working directory (as Cargo resolves paths in
/// Cargo.toml). Bundled names pass through unchanged.
pub fn resolve_dataset(spec: &str, base: &Path) -> String {
    let Some((kind, rest)) = spec.split_once(':') else { return spec.to_string() };
    if !matches!(kind, "csv" | "npy" | "npz" | "idx" | "text") {
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

/// `s` cut to `max` characters for an error message, with its length when it is cut (a
/// 10 MB value must not become 10 MB of error).
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}... ({} characters)", &s[..at], s.chars().count()),
        None => s.to_string(),
    }
}

/// `(1, 8, 8)`.
pub fn shape_str(shape: &[usize]) -> String {
    let items: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if items.len() == 1 {
        format!("({},)", items[0])
    } else {
        format!("({})", items.join(", "))
    }
}

/// Load the data set, validate it, split it, shape it and standardise it as the experiment
/// says. Relative data paths are taken relative to `base` (the experiment file's directory).
/// Images keep their shape: an example of shape (H, W) becomes (1, H, W); `data.shape`
/// reshapes each example.
pub fn prepare_rows(exp: &Experiment, base: &Path) -> Result<(Dataset, Dataset)> {
    let spec = resolve_dataset(&exp.data.dataset, base);
    let data = crate::data::load(&spec, exp.seed).map_err(|e| data_error(exp, e))?;
    shape_rows(exp, data)
}

/// A loader's error as the experiment's: `data.dataset = "...": ...`, both cut short.
pub(crate) fn data_error(exp: &Experiment, e: crate::data::DataError) -> Error {
    Error::BadInput(format!("data.dataset = {:?}: {}", cut(&exp.data.dataset, 100), cut(&e.to_string(), 1000)))
}

/// The part of [`prepare_rows`] after loading `data`: at least 2 examples, `data.shape`,
/// images as (1, H, W), the split, the standardisation.
pub(crate) fn shape_rows(exp: &Experiment, mut data: Dataset) -> Result<(Dataset, Dataset)> {
    if data.len() < 2 {
        bad!("data.dataset = {:?}: {} example(s); need at least 2", exp.data.dataset, data.len());
    }
    if !exp.data.shape.is_empty() {
        let want: usize = exp.data.shape.iter().product();
        if want != data.dim() {
            bad!(
                "data.shape = {:?}: {} values per example, but {} has {} (shape {})",
                exp.data.shape,
                want,
                exp.data.dataset,
                data.dim(),
                shape_str(&data.feature_shape)
            );
        }
        data.feature_shape = exp.data.shape.clone();
    }
    if data.feature_shape.len() == 2 {
        data.feature_shape.insert(0, 1);
    }
    let (mut train, mut val) = data.split(exp.data.val_fraction, exp.seed);
    if train.is_empty() {
        bad!(
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
    Ok((train, val))
}

/// The `[[model.layers]]` list an experiment describes: its own list, or the expansion of
/// the `kind = "mlp"` shorthand (affine, [batchnorm], activation per `hidden` entry, then
/// the class-score affine).
pub fn layer_list(exp: &Experiment) -> Vec<LayerConfig> {
    if !exp.model.layers.is_empty() {
        return exp.model.layers.clone();
    }
    let act = match exp.model.activation {
        Activation::Relu => LayerType::Relu,
        Activation::LeakyRelu => LayerType::LeakyRelu,
        Activation::Sigmoid => LayerType::Sigmoid,
        Activation::Tanh => LayerType::Tanh,
    };
    let mut out = Vec::new();
    for &h in &exp.model.hidden {
        out.push(LayerConfig { units: Some(h), ..LayerConfig::of(LayerType::Affine) });
        if exp.model.batchnorm {
            out.push(LayerConfig::of(LayerType::Batchnorm));
        }
        out.push(LayerConfig::of(act));
    }
    out.push(LayerConfig::of(LayerType::Affine));
    out
}

/// One layer's description for error messages: `"layer 3 (conv 3x3, 16 filters)"`.
fn layer_label(i: usize, l: &LayerConfig) -> String {
    let detail = match l.kind {
        LayerType::Conv => {
            let s = l.size.unwrap_or(0);
            format!(
                " {s}x{s}, {} filters, stride {}, pad {}",
                l.filters.unwrap_or(0),
                l.stride.unwrap_or(1),
                l.pad.unwrap_or(0)
            )
        }
        LayerType::Maxpool => {
            let s = l.size.unwrap_or(2);
            format!(" {s}x{s}, stride {}", l.stride.unwrap_or(s))
        }
        LayerType::Affine => l.units.map(|u| format!(" -> {u}")).unwrap_or_default(),
        _ => String::new(),
    };
    format!("layer {i} ({}{detail})", l.kind.name())
}

/// Build the layer stack `layers` for examples of shape `input` (without the batch axis)
/// and `classes` outputs, drawing weights from one generator seeded by `seed` in layer
/// order. Every shape is checked before anything is allocated: a layer that cannot take its
/// input is [`Error::BadInput`] naming the layer's index and both shapes.
pub fn build_stack<F: Float>(
    exp: &Experiment,
    layers: &[LayerConfig],
    input: &[usize],
    classes: usize,
    seed: u64,
) -> Result<(Sequential<F>, Vec<Option<String>>)> {
    let shapes = check_shapes(layers, input, classes)?;
    let mut rng = crate::tensor::rng(seed);
    let mut net = Sequential::new();
    let mut names = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        let x = &shapes[i];
        let out = &shapes[i + 1];
        let bias = l.bias_init.unwrap_or(exp.model.bias_init);
        let init = exp.layer_init(l);
        match l.kind {
            LayerType::Conv => {
                let s = l.size.expect("validated");
                let conv = ConvParam { stride: l.stride.unwrap_or(1), pad: l.pad.unwrap_or(0) };
                let layer = Conv2d::<F>::new(x[0], out[0], s, s, conv, init, &mut rng);
                let layer = if bias != 0.0 {
                    let b = ndarray::Array1::from_elem(out[0], F::from_f64c(bias));
                    Conv2d::from_params(layer.weight().to_owned(), b, conv)
                } else {
                    layer
                };
                net = net.push(layer);
            }
            LayerType::Maxpool => {
                let s = l.size.unwrap_or(2);
                net = net.push(MaxPool::<F>::new(PoolParam { height: s, width: s, stride: l.stride.unwrap_or(s) }));
            }
            LayerType::Batchnorm => {
                if x.len() == 3 {
                    net = net.push(SpatialBatchNorm::<F>::new(x[0]));
                } else {
                    net = net.push(BatchNorm::<F>::new(x[0]));
                }
            }
            LayerType::Layernorm => net = net.push(LayerNorm::<F>::new(x[0])),
            LayerType::Dropout => {
                net = net.push(Dropout::<F>::new(l.p.unwrap_or(0.5), seed.wrapping_add(1000 + i as u64)));
            }
            LayerType::Relu => net = net.push(Nonlinearity::<F>::new(Activation::Relu)),
            LayerType::LeakyRelu => net = net.push(Nonlinearity::<F>::new(Activation::LeakyRelu)),
            LayerType::Sigmoid => net = net.push(Nonlinearity::<F>::new(Activation::Sigmoid)),
            LayerType::Tanh => net = net.push(Nonlinearity::<F>::new(Activation::Tanh)),
            LayerType::Flatten => net = net.push(Flatten::new()),
            LayerType::Affine => {
                let d: usize = x.iter().product();
                net = net.push(Affine::<F>::new(d, out[0], init, bias, &mut rng));
            }
        }
        names.push(l.name.clone());
    }
    Ok((net, names))
}

/// The output shape (without the batch axis) after each layer: `out[0]` is `input`,
/// `out[i + 1]` layer i's output. Errors name the layer and both shapes; parameter count
/// and per-example activation size are bounded ([`MAX_PARAMS`], [`MAX_ACTIVATIONS_PER_EXAMPLE`]).
pub fn check_shapes(layers: &[LayerConfig], input: &[usize], classes: usize) -> Result<Vec<Vec<usize>>> {
    check_shapes_counted(layers, input, classes).map(|(shapes, _)| shapes)
}

/// [`check_shapes`] and the number of parameters of the stack.
fn check_shapes_counted(layers: &[LayerConfig], input: &[usize], classes: usize) -> Result<(Vec<Vec<usize>>, usize)> {
    let mut shapes = vec![input.to_vec()];
    let mut params: usize = 0;
    let last_affine = layers.iter().rposition(|l| l.kind == LayerType::Affine);
    for (i, l) in layers.iter().enumerate() {
        let x = shapes[i].clone();
        let label = layer_label(i, l);
        let cannot = |why: String| -> Error {
            Error::BadInput(format!("{label} cannot take an input of shape {}: {why}", shape_str(&x)))
        };
        let (out, p): (Vec<usize>, Option<usize>) = match l.kind {
            LayerType::Conv => {
                if x.len() != 3 {
                    return Err(cannot(
                        "a conv layer takes images (C, H, W); set data.shape = [C, H, W] for rows that hold images"
                            .into(),
                    ));
                }
                let s = l.size.expect("validated");
                let f = l.filters.expect("validated");
                let conv = ConvParam { stride: l.stride.unwrap_or(1), pad: l.pad.unwrap_or(0) };
                let (ho, wo) = conv
                    .output_size((x[1], x[2]), (s, s))
                    .map_err(|e| cannot(format!("its filters have shape ({f}, {}, {s}, {s}) and {e}", x[0])))?;
                (vec![f, ho, wo], x[0].checked_mul(s * s).and_then(|v| v.checked_mul(f)).and_then(|v| v.checked_add(f)))
            }
            LayerType::Maxpool => {
                if x.len() != 3 {
                    return Err(cannot("a maxpool layer takes images (C, H, W)".into()));
                }
                let s = l.size.unwrap_or(2);
                let pool = PoolParam { height: s, width: s, stride: l.stride.unwrap_or(s) };
                let (ho, wo) = pool.output_size((x[1], x[2])).map_err(|e| cannot(format!("a {s}x{s} window: {e}")))?;
                (vec![x[0], ho, wo], Some(0))
            }
            LayerType::Batchnorm => {
                if x.len() != 3 && x.len() != 1 {
                    return Err(cannot(
                        "batch norm takes features (D) or images (C, H, W); add a flatten before it".into(),
                    ));
                }
                (x.clone(), Some(2 * x[0]))
            }
            LayerType::Layernorm => {
                if x.len() != 1 {
                    return Err(cannot("layer norm takes features (D); add a flatten before it".into()));
                }
                (x.clone(), Some(2 * x[0]))
            }
            LayerType::Flatten => (vec![x.iter().product()], Some(0)),
            LayerType::Affine => {
                let d: usize = x.iter().product();
                let units = match l.units {
                    Some(u) => u,
                    None if Some(i) == last_affine => classes,
                    None => return Err(Error::BadInput(format!("{label}: needs `units`"))),
                };
                if Some(i) == last_affine && units != classes {
                    bad!(
                        "{label}: the last affine gives the class scores, so it must have {classes} units (the data has {classes} classes), not {units}; omit `units` to get it"
                    );
                }
                (vec![units], d.checked_mul(units).and_then(|v| v.checked_add(units)))
            }
            _ => (x.clone(), Some(0)),
        };
        params = match p.and_then(|p| params.checked_add(p)) {
            Some(t) if t <= MAX_PARAMS => t,
            _ => bad!("{label}: the model would exceed {MAX_PARAMS} parameters"),
        };
        let size = out.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        if !matches!(size, Some(s) if s <= MAX_ACTIVATIONS_PER_EXAMPLE) {
            bad!(
                "{label}: its output of shape {} has more than {MAX_ACTIVATIONS_PER_EXAMPLE} values per example",
                shape_str(&out)
            );
        }
        shapes.push(out);
    }
    if let Some(Some(last)) = last_affine.map(|i| layers.get(i + 1..)) {
        if let Some(l) = last.iter().find(|l| !matches!(l.kind, LayerType::Dropout | LayerType::Flatten)) {
            let i = layers.len() - last.len() + last.iter().position(|m| std::ptr::eq(m, l)).unwrap_or(0);
            bad!(
                "{}: comes after the last affine (the class scores); the loss takes the scores directly, so end the stack with the affine",
                layer_label(i, l)
            );
        }
    }
    Ok((shapes, params))
}

/// Check, without building it, the feed-forward model [`build_feed`] would build for data
/// of `input` shape and `classes` classes (the same errors); its number of parameters.
pub(crate) fn check_feed(exp: &Experiment, input: &[usize], classes: usize) -> Result<usize> {
    let layers = layer_list(exp);
    check_shapes_counted(&layers, input, classes).map(|(_, params)| params).map_err(|e| shorthand_key(exp, &layers, e))
}

/// The feed-forward model for data of `input` shape and `classes` classes.
pub fn build_feed(exp: &Experiment, input: &[usize], classes: usize) -> Result<Model> {
    let layers = layer_list(exp);
    let (net, names) =
        build_stack(exp, &layers, input, classes, exp.seed).map_err(|e| shorthand_key(exp, &layers, e))?;
    Ok(Model::Feed { net, names })
}

/// For the `kind = "mlp"` shorthand, name the `model.hidden` entry behind a layer error
/// (`layer 2 (affine -> 1000000)` is `model.hidden[1]`).
fn shorthand_key(exp: &Experiment, layers: &[LayerConfig], e: Error) -> Error {
    let Error::BadInput(msg) = e else { return e };
    if !exp.model.layers.is_empty() {
        return Error::BadInput(msg);
    }
    let index = msg.strip_prefix("layer ").and_then(|r| r.split(' ').next()).and_then(|i| i.parse::<usize>().ok());
    let hidden_entry = index.and_then(|i| {
        (layers.get(i)?.kind == LayerType::Affine)
            .then(|| layers[..i].iter().filter(|l| l.kind == LayerType::Affine).count())
    });
    match hidden_entry {
        Some(k) if k < exp.model.hidden.len() => {
            Error::BadInput(format!("model.hidden[{k}] = {}: {msg}", exp.model.hidden[k]))
        }
        _ => Error::BadInput(msg),
    }
}

/// Load and split the sequence task for `model.kind = "rnn" | "lstm"`.
pub fn prepare_seq(exp: &Experiment, base: &Path) -> Result<(SeqDataset, SeqDataset)> {
    let spec = resolve_dataset(&exp.data.dataset, base);
    let data = crate::data::seq::load_seq(&spec, exp.data.seq_len, exp.seed).map_err(|e| data_error(exp, e))?;
    split_seq(exp, data)
}

/// The part of [`prepare_seq`] after loading `data`: the split.
pub(crate) fn split_seq(exp: &Experiment, data: SeqDataset) -> Result<(SeqDataset, SeqDataset)> {
    let (train, val) = data.split(exp.data.val_fraction, exp.seed);
    if train.is_empty() {
        bad!("data.val_fraction = {}: leaves no training sequences out of {}", exp.data.val_fraction, data.len());
    }
    Ok((train, val))
}

/// Build the recurrent model, checking that `model.hidden` and `train.loss` fit the task.
pub fn build_seq_model(exp: &Experiment, train: &SeqDataset) -> Result<SeqModel<f32>> {
    Ok(SeqModel::new(seq_spec(exp, train)?, exp.seed))
}

/// The checks of [`build_seq_model`], and the model's description.
pub(crate) fn seq_spec(exp: &Experiment, train: &SeqDataset) -> Result<SeqSpec> {
    let cell = if exp.model.kind == ModelKind::Lstm { Cell::Lstm } else { Cell::Rnn };
    if exp.model.hidden.len() != 1 {
        bad!("model.hidden = {:?}: a {} takes one entry, the hidden size (e.g. [64])", exp.model.hidden, cell.name());
    }
    let (needed, what) = match train.target {
        SeqTarget::Tokens { .. } => (Loss::Softmax, "a class per step"),
        SeqTarget::Final(_) => (Loss::Mse, "one number per sequence"),
    };
    if exp.train.loss != needed {
        bad!(
            "train.loss = {:?}: {} predicts {what}; use train.loss = {:?}",
            exp.train.loss.name(),
            exp.data.dataset,
            needed.name()
        );
    }
    if exp.model.batchnorm {
        bad!("model.batchnorm = true: not available for recurrent models");
    }
    let hidden = exp.model.hidden[0];
    if hidden > 4096 {
        bad!("model.hidden[0] = {hidden}: at most 4096 for recurrent models");
    }
    Ok(SeqSpec::for_data(train, cell, hidden, exp.init(), exp.model.whh_radius))
}

/// The library's DQN configuration for an experiment with `model.kind = "dqn"`:
/// `[rl]` says what to run; `model.hidden`, `activation`, `init` describe the Q-network
/// (4 inputs, 2 outputs); `train.optimizer`, `lr`, `batch_size` and `clip_grad_norm` apply.
pub fn dqn_config(exp: &Experiment) -> Result<DqnConfig> {
    if exp.model.kind != ModelKind::Dqn {
        bad!("model.kind = {:?}: not a DQN experiment", exp.model.kind);
    }
    if exp.train.weight_decay != 0.0 {
        bad!("`train.weight_decay` = {}: not supported for model.kind = \"dqn\"; use 0", exp.train.weight_decay);
    }
    let mut cfg = DqnConfig::new(exp.rl.td_loss, exp.rl.episodes, exp.seed);
    exp.rl.apply(&mut cfg);
    cfg.net = crate::nn::MlpSpec {
        input_dim: crate::rl::cartpole::STATE_DIM,
        hidden: exp.model.hidden.clone(),
        output_dim: crate::rl::cartpole::ACTIONS,
        activation: exp.model.activation,
        init: exp.init(),
        bias_init: exp.model.bias_init,
        batchnorm: false,
        dropout_keep: None,
    };
    // The Q-network goes through the same shape and size checks as any stack, and an error
    // names the `model.hidden` entry behind it.
    let layers = crate::experiment::pipeline::layer_list(&Experiment {
        model: super::config::ModelConfig { batchnorm: false, ..exp.model.clone() },
        ..exp.clone()
    });
    check_shapes(&layers, &[crate::rl::cartpole::STATE_DIM], crate::rl::cartpole::ACTIONS)
        .map_err(|e| shorthand_key(exp, &layers, e))?;
    cfg.update = crate::optim::UpdateConfig::new(exp.train.optimizer, exp.train.lr);
    cfg.batch_size = exp.train.batch_size;
    cfg.clip_grad_norm = exp.train.clip_grad_norm;
    crate::limits::check_dqn_resources(&cfg).map_err(|e| Error::BadInput(e.to_string()))?;
    Ok(cfg)
}

/// The trainer's settings from `[train]`.
pub fn train_config(exp: &Experiment) -> TrainConfig {
    let t = &exp.train;
    TrainConfig {
        epochs: t.epochs,
        batch_size: t.batch_size,
        update: crate::optim::UpdateConfig::new(t.optimizer, t.lr),
        weight_decay: t.weight_decay,
        clip_grad_norm: t.clip_grad_norm,
        lr_decay: t.lr_decay,
        loss: t.loss,
        seed: exp.seed,
    }
}

/// Load the data and build the model of `exp` (relative data paths against `base`).
pub fn prepare(exp: &Experiment, base: &Path) -> Result<(Data, Model)> {
    match exp.model.kind {
        ModelKind::Mlp => {
            let (train, val) = prepare_rows(exp, base)?;
            let model = build_feed(exp, &train.feature_shape, train.classes)?;
            Ok((Data::Rows { train, val }, model))
        }
        ModelKind::Rnn | ModelKind::Lstm => {
            let (train, val) = prepare_seq(exp, base)?;
            let model = build_seq_model(exp, &train)?;
            Ok((Data::Seq { train, val }, Model::Seq(model)))
        }
        ModelKind::Dqn => Ok((Data::Env, Model::Dqn(Box::new(dqn_config(exp)?)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::parse;

    fn err(text: &str, input: &[usize]) -> String {
        let exp = parse(text).unwrap();
        match build_stack::<f32>(&exp, &layer_list(&exp), input, 10, 0) {
            Ok(_) => panic!("expected an error for {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn mlp_shorthand_builds_the_same_weights_as_mlp_spec() {
        let exp = parse("seed = 3\n[model]\nhidden = [20, 7]\nactivation = \"tanh\"\nbatchnorm = true\ninit = \"xavier\"\nbias_init = 0.1\n").unwrap();
        let (net, names) = build_stack::<f32>(&exp, &layer_list(&exp), &[1, 8, 8], 10, 3).unwrap();
        let spec = crate::nn::MlpSpec {
            input_dim: 64,
            hidden: vec![20, 7],
            output_dim: 10,
            activation: Activation::Tanh,
            init: crate::tensor::Init::Xavier,
            bias_init: 0.1,
            batchnorm: true,
            dropout_keep: None,
        };
        let old: Sequential<f32> = spec.build(3);
        assert_eq!(net.summary(), old.summary());
        assert_eq!(names, vec![None; 7]);
        for ((_, a), (_, b)) in net.params().iter().zip(old.params().iter()) {
            assert_eq!(a.value, b.value);
        }
    }

    #[test]
    fn cnn_stack_shapes() {
        let text = "[[model.layers]]\ntype = \"conv\"\nfilters = 8\nsize = 3\npad = 1\n[[model.layers]]\ntype = \"batchnorm\"\n[[model.layers]]\ntype = \"relu\"\n[[model.layers]]\ntype = \"maxpool\"\n[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"dropout\"\np = 0.9\n[[model.layers]]\ntype = \"affine\"\nname = \"fc\"\n";
        let exp = parse(text).unwrap();
        let shapes = check_shapes(&layer_list(&exp), &[1, 8, 8], 10).unwrap();
        assert_eq!(
            shapes,
            vec![
                vec![1, 8, 8],
                vec![8, 8, 8],
                vec![8, 8, 8],
                vec![8, 8, 8],
                vec![8, 4, 4],
                vec![128],
                vec![128],
                vec![10]
            ]
        );
        let (net, names) = build_stack::<f32>(&exp, &layer_list(&exp), &[1, 8, 8], 10, 0).unwrap();
        assert_eq!(net.layers[1].kind(), "spatial_batchnorm");
        assert_eq!(names[6].as_deref(), Some("fc"));
        // 8*1*3*3 + 8 (conv) + 16 (bn) + 128*10 + 10 (affine).
        assert_eq!(net.num_params(), 80 + 16 + 1290);
    }

    #[test]
    fn a_layer_that_cannot_take_its_input_names_index_and_shapes() {
        let e = err("[[model.layers]]\ntype = \"maxpool\"\n[[model.layers]]\ntype = \"maxpool\"\n[[model.layers]]\ntype = \"maxpool\"\n[[model.layers]]\ntype = \"maxpool\"\n[[model.layers]]\ntype = \"affine\"\n", &[1, 8, 8]);
        assert!(e.contains("layer 3 (maxpool 2x2, stride 2)") && e.contains("(1, 1, 1)"), "{e}");
        let e = err(
            "[[model.layers]]\ntype = \"conv\"\nfilters = 4\nsize = 3\n[[model.layers]]\ntype = \"affine\"\n",
            &[64],
        );
        assert!(e.contains("layer 0 (conv") && e.contains("(64,)") && e.contains("(C, H, W)"), "{e}");
        let e = err(
            "[[model.layers]]\ntype = \"conv\"\nfilters = 4\nsize = 3\n[[model.layers]]\ntype = \"affine\"\n",
            &[1, 1, 1],
        );
        assert!(e.contains("layer 0 (conv 3x3") && e.contains("(1, 1, 1)") && e.contains("(4, 1, 3, 3)"), "{e}");
        let e = err("[[model.layers]]\ntype = \"affine\"\nunits = 7\n", &[64]);
        assert!(e.contains("layer 0 (affine -> 7)") && e.contains("10 units"), "{e}");
        let e = err("[[model.layers]]\ntype = \"layernorm\"\n[[model.layers]]\ntype = \"affine\"\n", &[1, 8, 8]);
        assert!(e.contains("layer 0 (layernorm)") && e.contains("flatten"), "{e}");
        let e = err("[[model.layers]]\ntype = \"affine\"\n[[model.layers]]\ntype = \"relu\"\n", &[64]);
        assert!(e.contains("layer 1 (relu)") && e.contains("after the last affine"), "{e}");
        let e = err("[[model.layers]]\ntype = \"affine\"\nunits = 100000\n[[model.layers]]\ntype = \"affine\"\nunits = 100000\n[[model.layers]]\ntype = \"affine\"\n", &[64]);
        assert!(e.contains("layer 1 (affine -> 100000)") && e.contains("parameters"), "{e}");
    }

    #[test]
    fn layer_keys_are_checked_per_type() {
        let e = parse("[[model.layers]]\ntype = \"relu\"\nunits = 3\n[[model.layers]]\ntype = \"affine\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.layers[0].units") && e.contains("relu"), "{e}");
        let e = parse("[[model.layers]]\ntype = \"conv\"\nsize = 3\n[[model.layers]]\ntype = \"affine\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.layers[0]") && e.contains("filters"), "{e}");
        let e =
            parse("[[model.layers]]\ntype = \"affine\"\nunits = 5\n[[model.layers]]\ntype = \"affine\"\nunitz = 3\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("unitz"), "{e}");
        let e = parse("[[model.layers]]\ntype = \"dropout\"\np = 0.0\n[[model.layers]]\ntype = \"affine\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.layers[0].p"), "{e}");
        let e = parse("[[model.layers]]\ntype = \"relu\"\n").unwrap_err().to_string();
        assert!(e.contains("no affine"), "{e}");
        let e = parse("[[model.layers]]\ntype = \"pool\"\n").unwrap_err().to_string();
        assert!(e.contains("pool") && e.contains("maxpool"), "{e}");
        let e = parse("[model]\nkind = \"rnn\"\nhidden = [8]\n[[model.layers]]\ntype = \"affine\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.layers") && e.contains("rnn"), "{e}");
        let e = parse("[[model.layers]]\ntype = \"affine\"\nname = \"fc\"\nunits = 3\n[[model.layers]]\ntype = \"affine\"\nname = \"fc\"\n").unwrap_err().to_string();
        assert!(e.contains("model.layers[1].name"), "{e}");
    }

    #[test]
    fn a_huge_dataset_string_is_not_echoed_whole() {
        let exp = parse(&format!("[data]\ndataset = \"{}\"\n", "a".repeat(1_000_000))).unwrap();
        let e = prepare_rows(&exp, Path::new(".")).err().unwrap().to_string();
        assert!(e.len() < 2500 && e.contains("1000000 characters"), "{} characters", e.len());
    }

    #[test]
    fn data_shape_reshapes_and_is_checked() {
        let exp = parse("[data]\nshape = [4, 4, 4]\n").unwrap();
        let (train, _) = prepare_rows(&exp, Path::new(".")).unwrap();
        assert_eq!(train.feature_shape, vec![4, 4, 4]);
        let exp = parse("[data]\nshape = [3, 8, 8]\n").unwrap();
        let e = prepare_rows(&exp, Path::new(".")).err().unwrap().to_string();
        assert!(e.contains("data.shape") && e.contains("192") && e.contains("64"), "{e}");
        let exp = parse("").unwrap();
        let (train, _) = prepare_rows(&exp, Path::new(".")).unwrap();
        assert_eq!(train.feature_shape, vec![1, 8, 8], "digits are images (1, 8, 8)");
    }
}
