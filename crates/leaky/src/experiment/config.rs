//! The experiment file (`leaky train FILE.toml`, `leaky doctor FILE.toml`): the serde types.
//!
//! Every key has a default; an unknown key, a wrong type or an impossible value is an
//! error that names the file and the key. The format is documented for users in
//! `docs/experiment.md`.

use super::{Error, Result};
use crate::losses::Loss;
use crate::nn::Activation;
use crate::optim::Rule;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A whole experiment.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Experiment {
    /// Seed of every random choice (init, shuffling, split, dropout).
    pub seed: u64,
    /// `[data]`
    pub data: DataConfig,
    /// `[model]`
    pub model: ModelConfig,
    /// `[train]`
    pub train: TrainSection,
    /// `[rl]`
    pub rl: RlConfig,
}

/// `[data]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `digits | spiral | adding | memory | copy | chars | csv:PATH | npy:X,Y | idx:IMAGES,LABELS | text:PATH`
    pub dataset: String,
    /// Standardise features with the training split's mean and std.
    pub normalize: bool,
    /// Share of examples held out for validation, in [0, 1).
    pub val_fraction: f64,
    /// Sequence length (sequence tasks only).
    pub seq_len: usize,
    /// Reshape each example to this shape, e.g. `[1, 8, 8]` (C, H, W) for rows of a CSV or
    /// NPY file that hold images; empty = the data set's own shape.
    pub shape: Vec<usize>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig { dataset: "digits".into(), normalize: true, val_fraction: 0.2, seq_len: 20, shape: Vec::new() }
    }
}

/// Network families.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Multilayer perceptron.
    Mlp,
    /// Vanilla (tanh) recurrent network.
    Rnn,
    /// Long short-term memory network.
    Lstm,
    /// Deep Q-network (reinforcement learning).
    Dqn,
}

/// Weight init schemes as written in TOML.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitName {
    /// N(0, init_std^2)
    Normal,
    /// Xavier/Glorot
    Xavier,
    /// He/Kaiming
    He,
}

/// `[model]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `mlp | rnn | lstm | dqn`
    pub kind: ModelKind,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// `relu | leaky_relu | sigmoid | tanh`
    pub activation: Activation,
    /// `normal | xavier | he`
    pub init: InitName,
    /// Standard deviation when `init = "normal"`.
    pub init_std: f64,
    /// Initial bias value.
    pub bias_init: f64,
    /// Batch norm after each hidden affine layer.
    pub batchnorm: bool,
    /// Spectral radius to scale Whh to at init (rnn/lstm; 0 = the init's own scale).
    pub whh_radius: f64,
    /// `[[model.layers]]`: any feed-forward stack (replaces `hidden`/`activation`/`batchnorm`
    /// when present).
    pub layers: Vec<LayerConfig>,
}

/// Layer types of `[[model.layers]]`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    /// Convolution: `filters`, `size`, `stride` (1), `pad` (0).
    Conv,
    /// Max pooling: `size` (2), `stride` (= size).
    Maxpool,
    /// Batch normalisation: spatial (per channel) after a conv, per feature after an affine.
    Batchnorm,
    /// Layer normalisation over the features of each example.
    Layernorm,
    /// Inverted dropout with keep probability `p`.
    Dropout,
    /// max(0, x)
    Relu,
    /// max(0.01 x, x)
    LeakyRelu,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// tanh(x)
    Tanh,
    /// (N, d1, d2, ...) -> (N, d1 * d2 * ...)
    Flatten,
    /// Fully connected: `units` (the last affine may omit it: it gets the number of classes).
    Affine,
}

impl LayerType {
    /// The name as written in TOML.
    pub fn name(self) -> &'static str {
        match self {
            LayerType::Conv => "conv",
            LayerType::Maxpool => "maxpool",
            LayerType::Batchnorm => "batchnorm",
            LayerType::Layernorm => "layernorm",
            LayerType::Dropout => "dropout",
            LayerType::Relu => "relu",
            LayerType::LeakyRelu => "leaky_relu",
            LayerType::Sigmoid => "sigmoid",
            LayerType::Tanh => "tanh",
            LayerType::Flatten => "flatten",
            LayerType::Affine => "affine",
        }
    }

    /// The optional keys this type takes besides `type` and `name`.
    fn keys(self) -> &'static [&'static str] {
        match self {
            LayerType::Conv => &["filters", "size", "stride", "pad", "init", "init_std", "bias_init"],
            LayerType::Maxpool => &["size", "stride"],
            LayerType::Dropout => &["p"],
            LayerType::Affine => &["units", "init", "init_std", "bias_init"],
            _ => &[],
        }
    }
}

/// One entry of `[[model.layers]]`. Which keys a type takes: [`LayerType`].
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LayerConfig {
    /// The layer type.
    #[serde(rename = "type")]
    pub kind: LayerType,
    /// The name its parameters carry in checkpoints (default: the layer's index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// conv: number of filters F.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<usize>,
    /// conv: filter side; maxpool: window side (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// conv: stride (default 1); maxpool: stride (default = size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    /// conv: zero padding on each side (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad: Option<usize>,
    /// affine: output units (the last affine may omit it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<usize>,
    /// dropout: keep probability, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// conv/affine: this layer's init (default `model.init`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitName>,
    /// conv/affine: this layer's std for `init = "normal"` (default `model.init_std`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_std: Option<f64>,
    /// conv/affine: this layer's initial bias (default `model.bias_init`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias_init: Option<f64>,
}

impl LayerConfig {
    /// A layer of this type with every optional key unset.
    pub fn of(kind: LayerType) -> Self {
        LayerConfig {
            kind,
            name: None,
            filters: None,
            size: None,
            stride: None,
            pad: None,
            units: None,
            p: None,
            init: None,
            init_std: None,
            bias_init: None,
        }
    }

    /// The optional keys that are set, by name.
    fn set_keys(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let pairs: [(&'static str, bool); 9] = [
            ("filters", self.filters.is_some()),
            ("size", self.size.is_some()),
            ("stride", self.stride.is_some()),
            ("pad", self.pad.is_some()),
            ("units", self.units.is_some()),
            ("p", self.p.is_some()),
            ("init", self.init.is_some()),
            ("init_std", self.init_std.is_some()),
            ("bias_init", self.bias_init.is_some()),
        ];
        for (k, set) in pairs {
            if set {
                out.push(k);
            }
        }
        out
    }

    /// Check the keys of entry `i` against its type; errors name `model.layers[i].KEY`.
    fn validate(&self, i: usize, last_affine: bool) -> Result<()> {
        let t = self.kind.name();
        for k in self.set_keys() {
            if !self.kind.keys().contains(&k) {
                let takes = self.kind.keys();
                let takes =
                    if takes.is_empty() { "no keys but `type` and `name`".to_string() } else { takes.join(", ") };
                bail!("`model.layers[{i}].{k}`: a {t} layer does not take `{k}` (it takes {takes})");
            }
        }
        if let Some(name) = &self.name {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                bail!(
                    "`model.layers[{i}].name` = {name:?}: use letters, digits, `_` and `.` (as a PyTorch module path)"
                );
            }
        }
        let positive = |key: &str, v: Option<usize>, max: usize| -> Result<()> {
            match v {
                Some(0) => bail!("`model.layers[{i}].{key}` = 0: must be at least 1"),
                Some(x) if x > max => bail!("`model.layers[{i}].{key}` = {x}: at most {max}"),
                _ => Ok(()),
            }
        };
        match self.kind {
            LayerType::Conv => {
                if self.filters.is_none() {
                    bail!("`model.layers[{i}]`: a conv layer needs `filters` (and `size`)");
                }
                if self.size.is_none() {
                    bail!("`model.layers[{i}]`: a conv layer needs `size` (the filter side, e.g. 3)");
                }
                positive("filters", self.filters, 4096)?;
                positive("size", self.size, 64)?;
                positive("stride", self.stride, 64)?;
                if let Some(p) = self.pad {
                    if p > 64 {
                        bail!("`model.layers[{i}].pad` = {p}: at most 64");
                    }
                }
            }
            LayerType::Maxpool => {
                positive("size", self.size, 64)?;
                positive("stride", self.stride, 64)?;
            }
            LayerType::Dropout => {
                let p = self.p.unwrap_or(0.5);
                if !(p.is_finite() && p > 0.0 && p <= 1.0) {
                    bail!("`model.layers[{i}].p` = {p}: the keep probability must be in (0, 1]");
                }
            }
            LayerType::Affine => {
                positive("units", self.units, 1 << 20)?;
                if self.units.is_none() && !last_affine {
                    bail!("`model.layers[{i}]`: an affine layer needs `units` (only the last affine may omit it)");
                }
            }
            _ => {}
        }
        if let Some(s) = self.init_std {
            if !(s.is_finite() && s > 0.0 && s < 1e6) {
                bail!("`model.layers[{i}].init_std` = {s}: must be a positive number below 1e6");
            }
        }
        if let Some(b) = self.bias_init {
            if !(b.is_finite() && b.abs() < 1e6) {
                bail!("`model.layers[{i}].bias_init` = {b}: must be a finite number of magnitude below 1e6");
            }
        }
        Ok(())
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: ModelKind::Mlp,
            hidden: vec![100, 100],
            activation: Activation::Relu,
            init: InitName::He,
            init_std: 0.01,
            bias_init: 0.0,
            batchnorm: false,
            whh_radius: 0.0,
            layers: Vec::new(),
        }
    }
}

/// `[train]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// `softmax | svm | mse | huber | clipped_mse`
    pub loss: Loss,
    /// `sgd | momentum | rmsprop | adam`
    pub optimizer: Rule,
    /// Learning rate.
    pub lr: f64,
    /// Minibatch size.
    pub batch_size: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// L2 strength (0.5 * reg * sum W^2).
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 = off).
    pub clip_grad_norm: f64,
    /// Learning-rate multiplier per epoch (1 = constant).
    pub lr_decay: f64,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            loss: Loss::Softmax,
            optimizer: Rule::Adam,
            lr: 1e-3,
            batch_size: 64,
            epochs: 10,
            weight_decay: 0.0,
            clip_grad_norm: 0.0,
            lr_decay: 1.0,
        }
    }
}

/// TD losses of the DQN (`huber | clipped_delta | mse | grad_clip`; see `crate::rl::dqn`).
pub use crate::rl::dqn::TdLoss;

/// `[rl]`: reinforcement-learning runs (`model.kind = "dqn"`). The first six keys are
/// documented ones; the rest are leaky extensions. Every key but `env` is the
/// `crate::rl::dqn::DqnConfig` field of the same name, and its default is that field's value
/// in `DqnConfig::new` (the one place the defaults are written); `td_loss` and `episodes`,
/// which `DqnConfig::new` takes as arguments, default to [`DEFAULT_TD_LOSS`] and
/// [`DEFAULT_EPISODES`].
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RlConfig {
    /// Environment (only `cartpole`).
    pub env: String,
    /// TD loss.
    pub td_loss: TdLoss,
    /// Episodes to train.
    pub episodes: usize,
    /// Discount factor.
    pub gamma: f64,
    /// Multiply every reward by this.
    pub reward_scale: f64,
    /// Environment steps between target-network copies.
    pub target_update: usize,
    /// Extension: replay capacity in transitions.
    pub buffer_size: usize,
    /// Extension: environment steps of pure exploration before the first update.
    pub learning_starts: usize,
    /// Extension: one update every this many environment steps.
    pub train_every: usize,
    /// Extension: epsilon at the first step.
    pub eps_start: f64,
    /// Extension: epsilon at the end of the linear schedule.
    pub eps_end: f64,
    /// Extension: environment steps of the linear epsilon schedule.
    pub eps_decay_steps: usize,
}

/// The documented default `rl.td_loss`.
pub const DEFAULT_TD_LOSS: TdLoss = TdLoss::Huber;

/// The documented default `rl.episodes`.
pub const DEFAULT_EPISODES: usize = 300;

/// Calls `$then!(field, ...)` with the `[rl]` keys that are `DqnConfig` fields of the same
/// name and type (all but `env`): the one list both directions of the mapping use.
macro_rules! rl_dqn_fields {
    ($then:ident) => {
        $then!(
            td_loss,
            episodes,
            gamma,
            reward_scale,
            target_update,
            buffer_size,
            learning_starts,
            train_every,
            eps_start,
            eps_end,
            eps_decay_steps
        )
    };
}

impl Default for RlConfig {
    fn default() -> Self {
        let d = crate::rl::dqn::DqnConfig::new(DEFAULT_TD_LOSS, DEFAULT_EPISODES, 0);
        macro_rules! from_dqn {
            ($($field:ident),*) => {
                RlConfig { env: "cartpole".into(), $($field: d.$field),* }
            };
        }
        rl_dqn_fields!(from_dqn)
    }
}

impl RlConfig {
    /// Set `cfg`'s fields from these keys (every key but `env`, which has one value).
    pub fn apply(&self, cfg: &mut crate::rl::dqn::DqnConfig) {
        macro_rules! to_dqn {
            ($($field:ident),*) => {
                {
                    $(cfg.$field = self.$field;)*
                }
            };
        }
        rl_dqn_fields!(to_dqn)
    }
}

/// Read, parse and validate an experiment file. Errors are [`Error::BadInput`] and name the
/// file, then the key.
///
/// A file that sets nothing — empty, or only whitespace and comments — is refused: it is far
/// more often a mistake (`leaky train /dev/stdin` with stdin closed, a file truncated by an
/// editor, the wrong path to a fresh file) than a request for the default experiment, and
/// running ten epochs of the defaults in its place would hide the mistake. A file holding
/// only a section header (`[model]`) runs the defaults.
pub fn load(path: &Path) -> Result<Experiment> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::BadInput(format!("cannot read {}: {e}", path.display())))?;
    if sets_nothing(&text) {
        bad!(
            "{} is empty: it holds no section and no key (only whitespace or comments); an experiment file \
             needs at least one section, e.g. `[data]` with `dataset = \"digits\"` (see docs/experiment.md)",
            path.display()
        );
    }
    parse(&text).map_err(|e| Error::BadInput(format!("{} is not a valid experiment: {e}", path.display())))
}

/// Whether `text` is valid TOML with no table and no key at all (empty, whitespace,
/// comments). Invalid TOML is not "nothing": the parser names what is wrong with it.
fn sets_nothing(text: &str) -> bool {
    text.parse::<toml::Table>().is_ok_and(|t| t.is_empty())
}

/// Parse and validate experiment text.
pub fn parse(text: &str) -> Result<Experiment> {
    // `[[train]]` (a list of tables) where `[train]` is meant would reach serde as a sequence
    // and fail with a misleading "unknown variant"; name the section instead.
    if let Ok(table) = text.parse::<toml::Table>() {
        for section in ["data", "model", "train", "rl"] {
            if matches!(table.get(section), Some(toml::Value::Array(_))) {
                bail!("`[[{section}]]`: write `[{section}]`, one table (only `[[model.layers]]` is a list)");
            }
        }
    }
    let exp: Experiment = toml::from_str(text).map_err(|e| Error::BadInput(e.to_string().trim_end().to_string()))?;
    exp.validate()?;
    Ok(exp)
}

/// A value for an error message: `1e300` rather than 301 digits, `0.001` as itself.
fn num(v: f64) -> String {
    if v.is_finite() && v != 0.0 && !(1e-4..1e15).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

fn positive(key: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("`{key}` = {}: must be a positive number", num(v));
    }
    Ok(())
}

/// The largest `model.init_std` and |`model.bias_init`| accepted: weights of that size already
/// saturate every sigmoid; larger ones overflow f32 in the first forward pass.
pub const MAX_INIT: f64 = 1e3;

/// The largest `model.whh_radius` accepted: far past any useful recurrent matrix (3 already
/// explodes), and far from f32's overflow.
pub const MAX_WHH_RADIUS: f64 = 1e3;

/// The largest `train.lr` accepted (the sick example `nan-lr.toml` uses 1e4 on purpose).
pub const MAX_LR: f64 = 1e6;

/// The largest `train.weight_decay` accepted.
pub const MAX_WEIGHT_DECAY: f64 = 1e3;

fn at_most(key: &str, v: f64, max: f64) -> Result<()> {
    if !(v.is_finite() && v <= max) {
        bail!("`{key}` = {}: must be a finite number at most {max}", num(v));
    }
    Ok(())
}

fn non_negative(key: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("`{key}` = {}: must be zero or positive", num(v));
    }
    Ok(())
}

impl Experiment {
    /// Check every value that the types alone do not rule out; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let d = &self.data;
        if d.dataset.trim().is_empty() {
            bail!("`data.dataset` is empty: use digits, spiral, adding, copy, chars, csv:PATH, npy:X.npy,Y.npy, idx:IMAGES,LABELS or text:PATH");
        }
        if !(d.val_fraction.is_finite() && (0.0..1.0).contains(&d.val_fraction)) {
            bail!("`data.val_fraction` = {}: must be in [0, 1)", num(d.val_fraction));
        }
        if d.seq_len == 0 {
            bail!("`data.seq_len` = 0: must be at least 1");
        }
        let m = &self.model;
        if m.hidden.is_empty() && m.kind != ModelKind::Mlp {
            bail!("`model.hidden` is empty: {:?} models need one entry, the hidden size", m.kind);
        }
        if m.hidden.len() > crate::limits::MAX_HIDDEN_LAYERS {
            bail!("`model.hidden`: {} layers; at most {}", m.hidden.len(), crate::limits::MAX_HIDDEN_LAYERS);
        }
        if let Some(i) = m.hidden.iter().position(|&h| h == 0) {
            bail!("`model.hidden[{i}]` = 0: every layer needs at least one unit");
        }
        if m.init == InitName::Normal || m.layers.iter().any(|l| l.init == Some(InitName::Normal)) {
            positive("model.init_std", m.init_std)?;
        }
        // Values far outside what any initialisation uses overflow f32 in the first forward
        // pass; they are input errors, not training failures.
        at_most("model.init_std", m.init_std, MAX_INIT)?;
        if !(m.bias_init.is_finite() && m.bias_init.abs() <= MAX_INIT) {
            bail!("`model.bias_init` = {}: must be a finite number of magnitude at most {MAX_INIT}", num(m.bias_init));
        }
        non_negative("model.whh_radius", m.whh_radius)?;
        // A radius past f32's range makes Whh infinite and the first loss NaN, which would be
        // reported as a training failure ("lower train.lr") instead of the value at fault.
        at_most("model.whh_radius", m.whh_radius, MAX_WHH_RADIUS)?;
        if !m.layers.is_empty() {
            if m.kind != ModelKind::Mlp {
                bail!("`model.layers`: a layer list describes a feed-forward stack; it cannot be used with model.kind = {:?}", format!("{:?}", m.kind).to_lowercase());
            }
            let last_affine = m.layers.iter().rposition(|l| l.kind == LayerType::Affine);
            for (i, l) in m.layers.iter().enumerate() {
                l.validate(i, Some(i) == last_affine)?;
            }
            if last_affine.is_none() {
                bail!(
                    "`model.layers`: the stack has no affine layer; end it with `type = \"affine\"` (the class scores)"
                );
            }
            let mut names = std::collections::HashSet::new();
            for (i, l) in m.layers.iter().enumerate() {
                if let Some(n) = &l.name {
                    if !names.insert(n.as_str()) {
                        bail!("`model.layers[{i}].name` = {n:?}: another layer already has this name");
                    }
                }
            }
            if m.layers.len() > 1000 {
                bail!("`model.layers`: {} layers; at most 1000", m.layers.len());
            }
        }
        if let Some((i, &x)) = d.shape.iter().enumerate().find(|(_, &x)| x == 0) {
            bail!("`data.shape[{i}]` = {x}: every axis needs at least one element");
        }
        if d.shape.len() > 3 {
            bail!("`data.shape` = {:?}: give (D), (H, W) or (C, H, W)", d.shape);
        }
        let t = &self.train;
        positive("train.lr", t.lr)?;
        if t.batch_size == 0 {
            bail!("`train.batch_size` = 0: must be at least 1");
        }
        if t.epochs == 0 {
            bail!("`train.epochs` = 0: must be at least 1");
        }
        if t.epochs > crate::limits::MAX_EPOCHS {
            bail!(
                "`train.epochs` = {}: at most {} (resume a longer run in parts)",
                t.epochs,
                crate::limits::MAX_EPOCHS
            );
        }
        at_most("train.lr", t.lr, MAX_LR)?;
        non_negative("train.weight_decay", t.weight_decay)?;
        at_most("train.weight_decay", t.weight_decay, MAX_WEIGHT_DECAY)?;
        non_negative("train.clip_grad_norm", t.clip_grad_norm)?;
        positive("train.lr_decay", t.lr_decay)?;
        at_most("train.lr_decay", t.lr_decay, 10.0)?;
        let r = &self.rl;
        if r.env != "cartpole" {
            bail!("`rl.env` = {:?}: the only environment is \"cartpole\"", r.env);
        }
        if r.episodes == 0 {
            bail!("`rl.episodes` = 0: must be at least 1");
        }
        if r.episodes > crate::limits::MAX_EPOCHS {
            bail!("`rl.episodes` = {}: at most {}", r.episodes, crate::limits::MAX_EPOCHS);
        }
        if !(r.gamma.is_finite() && (0.0..=1.0).contains(&r.gamma)) {
            bail!("`rl.gamma` = {}: must be in [0, 1]", num(r.gamma));
        }
        positive("rl.reward_scale", r.reward_scale)?;
        if r.target_update == 0 {
            bail!("`rl.target_update` = 0: must be at least 1");
        }
        if r.buffer_size == 0 {
            bail!("`rl.buffer_size` = 0: must be at least 1");
        }
        if r.train_every == 0 {
            bail!("`rl.train_every` = 0: must be at least 1");
        }
        for (key, v) in [("rl.eps_start", r.eps_start), ("rl.eps_end", r.eps_end)] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                bail!("`{key}` = {}: must be in [0, 1]", num(v));
            }
        }
        if self.model.kind == ModelKind::Dqn && self.model.batchnorm {
            bail!("`model.batchnorm` = true: not supported for the DQN's Q-network");
        }
        Ok(())
    }

    /// A copy with `settings` applied (dotted keys such as `"train.lr"`), validated like a
    /// file; errors name the key.
    pub fn with_settings(&self, settings: &[(String, toml::Value)]) -> Result<Experiment> {
        let bad_key = |key: &str| Error::BadInput(format!("`{key}`: not a key of the experiment file"));
        let mut root =
            toml::Value::try_from(self).map_err(|e| Error::Run(format!("cannot serialise the experiment: {e}")))?;
        for (key, value) in settings {
            let mut node = &mut root;
            let parts: Vec<&str> = key.split('.').collect();
            for p in &parts[..parts.len() - 1] {
                node = node
                    .as_table_mut()
                    .ok_or_else(|| bad_key(key))?
                    .entry(p.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            }
            node.as_table_mut().ok_or_else(|| bad_key(key))?.insert(parts[parts.len() - 1].to_string(), value.clone());
        }
        let out: Experiment =
            root.try_into().map_err(|e: toml::de::Error| Error::BadInput(e.to_string().trim_end().to_string()))?;
        out.validate()?;
        Ok(out)
    }

    /// Every scalar setting as a dotted key (`"train.lr"`, `"model.init"`, ...), for the
    /// doctor's advice: it does not suggest what is already set, and suggests a learning
    /// rate relative to the current one.
    pub fn settings(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
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
        if let Ok(v) = toml::Value::try_from(self) {
            walk("", &v, &mut out);
        }
        out
    }

    /// The experiment as TOML text (every key written, defaults included), which
    /// [`parse`] reads back to the same experiment.
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("an experiment always serialises")
    }

    /// The weight init scheme as the library's type.
    pub fn init(&self) -> crate::tensor::Init {
        match self.model.init {
            InitName::Normal => crate::tensor::Init::Normal { std: self.model.init_std },
            InitName::Xavier => crate::tensor::Init::Xavier,
            InitName::He => crate::tensor::Init::He,
        }
    }

    /// The init scheme of one `[[model.layers]]` entry: its own `init`/`init_std`, else
    /// `model.init`/`model.init_std`.
    pub fn layer_init(&self, l: &LayerConfig) -> crate::tensor::Init {
        let std = l.init_std.unwrap_or(self.model.init_std);
        match l.init.unwrap_or(self.model.init) {
            InitName::Normal => crate::tensor::Init::Normal { std },
            InitName::Xavier => crate::tensor::Init::Xavier,
            InitName::He => crate::tensor::Init::He,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_is_all_defaults_but_an_empty_file_is_refused() {
        // The string API: no keys means every default (the demos and tests build on it).
        assert_eq!(parse("").unwrap(), Experiment::default());
        let dir = crate::data::testutil::TempDir::new("empty-exp");
        for (name, text) in [
            ("empty.toml", ""),
            ("blank.toml", " \n\t\r\n\n"),
            ("comments.toml", "# just a comment\n\n   # another one\r\n"),
        ] {
            let p = dir.write(name, text.as_bytes());
            let e = load(&p).unwrap_err();
            assert!(matches!(e, Error::BadInput(_)), "{name}: {e:?}");
            let e = e.to_string();
            assert!(e.starts_with(&format!("{} is empty: ", p.display())) && e.contains("docs/experiment.md"), "{e}");
        }
        // One section header, even with nothing in it, is a deliberate file: the defaults.
        let p = dir.write("section.toml", b"# all defaults\n[model]\n");
        assert_eq!(load(&p).unwrap(), Experiment::default());
        // Broken TOML is reported as broken, not as empty.
        let p = dir.write("broken.toml", b"# a comment\n[[[\n");
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("is not a valid experiment") && !e.contains("is empty"), "{e}");
    }

    #[test]
    fn huge_and_tiny_values_are_shown_short() {
        let e = parse("[model]\ninit = \"normal\"\ninit_std = 1e300\n").unwrap_err().to_string();
        assert_eq!(e, "`model.init_std` = 1e300: must be a finite number at most 1000");
        let e = parse("[train]\nweight_decay = -2.5e-300\n").unwrap_err().to_string();
        assert_eq!(e, "`train.weight_decay` = -2.5e-300: must be zero or positive");
        let e = parse("[model]\nbias_init = -1e39\n").unwrap_err().to_string();
        assert!(e.starts_with("`model.bias_init` = -1e39: "), "{e}");
        let e = parse("[train]\nlr = -0.5\n").unwrap_err().to_string();
        assert!(e.starts_with("`train.lr` = -0.5: "), "{e}");
        let e = parse("[model]\nkind = \"rnn\"\nhidden = [8]\nwhh_radius = 1e39\n").unwrap_err().to_string();
        assert_eq!(e, "`model.whh_radius` = 1e39: must be a finite number at most 1000");
        assert_eq!(parse("[model]\nwhh_radius = 1000.0\n").unwrap().model.whh_radius, 1000.0);
        assert_eq!(
            (num(0.0), num(f64::INFINITY), num(f64::NAN), num(123.25)),
            ("0".into(), "inf".into(), "NaN".into(), "123.25".into())
        );
    }

    #[test]
    fn settings_apply_and_round_trip() {
        let exp = parse("[model]\nhidden = [5]\n[[model.layers]]\ntype = \"conv\"\nfilters = 2\nsize = 3\n[[model.layers]]\ntype = \"affine\"\n").unwrap();
        let e2 = exp
            .with_settings(&[
                ("train.lr".into(), toml::Value::Float(0.5)),
                ("model.init".into(), toml::Value::String("xavier".into())),
            ])
            .unwrap();
        assert_eq!(e2.train.lr, 0.5);
        assert_eq!(e2.model.init, InitName::Xavier);
        assert_eq!(e2.model.layers, exp.model.layers);
        assert_eq!(parse(&e2.to_toml_string()).unwrap(), e2);
        let e = exp.with_settings(&[("train.lrr".into(), toml::Value::Float(0.5))]).unwrap_err().to_string();
        assert!(e.contains("lrr"), "{e}");
        let e = exp.with_settings(&[("train.lr".into(), toml::Value::Float(-1.0))]).unwrap_err().to_string();
        assert!(e.contains("train.lr"), "{e}");
    }

    #[test]
    fn design_example_parses() {
        let text = include_str!("../../../../examples/digits.toml");
        parse(text).unwrap();
    }

    #[test]
    fn rl_defaults_are_design_md_and_the_library_defaults() {
        let r = parse("").unwrap().rl;
        // The documented [rl] section.
        assert_eq!(r.env, "cartpole");
        assert_eq!(r.td_loss, TdLoss::Huber);
        assert_eq!((r.episodes, r.gamma, r.reward_scale, r.target_update), (300, 0.99, 1.0, 500));
        // Unchanged by the file, the library's config stays the library's default.
        let mut cfg = crate::rl::dqn::DqnConfig::new(TdLoss::Huber, 300, 0);
        let before = cfg.clone();
        r.apply(&mut cfg);
        assert_eq!(cfg, before);
    }

    #[test]
    fn every_rl_key_reaches_the_dqn_config() {
        let text = "[rl]\ntd_loss = \"grad_clip\"\nepisodes = 19\ngamma = 0.5\nreward_scale = 2.0\ntarget_update = 7\nbuffer_size = 11\nlearning_starts = 13\ntrain_every = 3\neps_start = 0.9\neps_end = 0.25\neps_decay_steps = 17\n";
        let r = parse(text).unwrap().rl;
        let mut c = crate::rl::dqn::DqnConfig::new(TdLoss::Huber, 300, 0);
        r.apply(&mut c);
        assert_eq!(c.td_loss, TdLoss::GradClip);
        assert_eq!((c.episodes, c.target_update, c.buffer_size, c.learning_starts), (19, 7, 11, 13));
        assert_eq!((c.train_every, c.eps_decay_steps), (3, 17));
        assert_eq!((c.gamma, c.reward_scale, c.eps_start, c.eps_end), (0.5, 2.0, 0.9, 0.25));
    }

    #[test]
    fn errors_name_the_key() {
        let e = format!("{}", parse("[train]\nlrr = 0.1\n").unwrap_err());
        assert!(e.contains("lrr"), "{e}");
        let e = format!("{}", parse("[train]\nlr = \"fast\"\n").unwrap_err());
        assert!(e.contains("lr"), "{e}");
        let e = format!("{}", parse("[train]\nlr = -1.0\n").unwrap_err());
        assert!(e.contains("train.lr"), "{e}");
        let e = format!("{}", parse("[model]\nactivation = \"swish\"\n").unwrap_err());
        assert!(e.contains("swish") || e.contains("activation"), "{e}");
        let e = format!("{}", parse("[data]\nval_fraction = 1.5\n").unwrap_err());
        assert!(e.contains("data.val_fraction"), "{e}");
        let e = parse("[train]\nepochs = 1000000000000000000\n").unwrap_err().to_string();
        assert!(e.contains("train.epochs") && e.contains("at most 1000000"), "{e}");
        assert!(parse("[train]\nepochs = 1000000\n").is_ok());
        let e = parse("[rl]\nepisodes = 1000001\n").unwrap_err().to_string();
        assert!(e.contains("rl.episodes"), "{e}");
        let many = format!("[model]\nhidden = [{}]\n", vec!["4"; 1001].join(","));
        let e = parse(&many).unwrap_err().to_string();
        assert!(e.contains("model.hidden") && e.contains("1001 layers"), "{e}");
        let e = format!("{}", parse("[model]\nhidden = [10, 0]\n").unwrap_err());
        assert!(e.contains("model.hidden[1]"), "{e}");
        let e = format!("{}", parse("seed = 1\n[bogus]\n").unwrap_err());
        assert!(e.contains("bogus"), "{e}");
        let e = format!("{}", parse("[rl]\ntd_los = \"huber\"\n").unwrap_err());
        assert!(e.contains("td_los"), "{e}");
        let e = format!("{}", parse("[rl]\ntd_loss = \"l1\"\n").unwrap_err());
        assert!(e.contains("l1") && e.contains("clipped_delta"), "{e}");
        let e = format!("{}", parse("[rl]\nreward_scale = 0.0\n").unwrap_err());
        assert!(e.contains("rl.reward_scale"), "{e}");
        let e = format!("{}", parse("[rl]\neps_end = 2.0\n").unwrap_err());
        assert!(e.contains("rl.eps_end"), "{e}");
        let e = format!("{}", parse("[rl]\nenv = \"pong\"\n").unwrap_err());
        assert!(e.contains("rl.env"), "{e}");
        let e = format!("{}", parse("[[train]]\nlr = 0.1\n").unwrap_err());
        assert!(e.contains("[[train]]") && e.contains("[train]"), "{e}");
        // Absurd magnitudes are input errors naming the key, not training failures.
        for (text, key) in [
            ("[model]\nbias_init = 1e39\n", "model.bias_init"),
            ("[model]\ninit = \"normal\"\ninit_std = 1e300\n", "model.init_std"),
            ("[model]\ninit = \"xavier\"\ninit_std = nan\n", "model.init_std"),
            ("[train]\nweight_decay = 1e308\n", "train.weight_decay"),
            ("[train]\nlr = 1e300\n", "train.lr"),
        ] {
            let e = format!("{}", parse(text).unwrap_err());
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
