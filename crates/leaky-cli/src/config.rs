//! The experiment file (`leaky train FILE.toml`, `leaky doctor FILE.toml`).
//!
//! Every key has a default; an unknown key, a wrong type or an impossible value is an
//! error that names the file and the key. The format is fixed by DESIGN.md.

use anyhow::{bail, Context, Result};
use leaky::losses::Loss;
use leaky::nn::Activation;
use leaky::optim::Rule;
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
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig { dataset: "digits".into(), normalize: true, val_fraction: 0.2, seq_len: 20 }
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

/// TD losses of the DQN (`huber | clipped_delta | mse | grad_clip`; see `leaky::rl::dqn`).
pub use leaky::rl::dqn::TdLoss;

/// `[rl]`: reinforcement-learning runs (`model.kind = "dqn"`). The first six keys are
/// DESIGN.md's; the rest are leaky extensions. Every key but `env` is the
/// `leaky::rl::dqn::DqnConfig` field of the same name, and its default is that field's value
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

/// DESIGN.md's default `rl.td_loss`.
pub const DEFAULT_TD_LOSS: TdLoss = TdLoss::Huber;

/// DESIGN.md's default `rl.episodes`.
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
        let d = leaky::rl::dqn::DqnConfig::new(DEFAULT_TD_LOSS, DEFAULT_EPISODES, 0);
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
    pub fn apply(&self, cfg: &mut leaky::rl::dqn::DqnConfig) {
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

/// Read, parse and validate an experiment file.
pub fn load(path: &Path) -> Result<Experiment> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is not a valid experiment", path.display()))
}

/// Parse and validate experiment text.
pub fn parse(text: &str) -> Result<Experiment> {
    let exp: Experiment = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    exp.validate()?;
    Ok(exp)
}

fn positive(key: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("`{key}` = {v}: must be a positive number");
    }
    Ok(())
}

fn non_negative(key: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("`{key}` = {v}: must be zero or positive");
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
            bail!("`data.val_fraction` = {}: must be in [0, 1)", d.val_fraction);
        }
        if d.seq_len == 0 {
            bail!("`data.seq_len` = 0: must be at least 1");
        }
        let m = &self.model;
        if m.hidden.is_empty() && m.kind != ModelKind::Mlp {
            bail!("`model.hidden` is empty: {:?} models need one entry, the hidden size", m.kind);
        }
        if let Some(i) = m.hidden.iter().position(|&h| h == 0) {
            bail!("`model.hidden[{i}]` = 0: every layer needs at least one unit");
        }
        if m.init == InitName::Normal {
            positive("model.init_std", m.init_std)?;
        }
        if !m.bias_init.is_finite() {
            bail!("`model.bias_init` = {}: must be a finite number", m.bias_init);
        }
        non_negative("model.whh_radius", m.whh_radius)?;
        let t = &self.train;
        positive("train.lr", t.lr)?;
        if t.batch_size == 0 {
            bail!("`train.batch_size` = 0: must be at least 1");
        }
        if t.epochs == 0 {
            bail!("`train.epochs` = 0: must be at least 1");
        }
        non_negative("train.weight_decay", t.weight_decay)?;
        non_negative("train.clip_grad_norm", t.clip_grad_norm)?;
        positive("train.lr_decay", t.lr_decay)?;
        let r = &self.rl;
        if r.env != "cartpole" {
            bail!("`rl.env` = {:?}: the only environment is \"cartpole\"", r.env);
        }
        if r.episodes == 0 {
            bail!("`rl.episodes` = 0: must be at least 1");
        }
        if !(r.gamma.is_finite() && (0.0..=1.0).contains(&r.gamma)) {
            bail!("`rl.gamma` = {}: must be in [0, 1]", r.gamma);
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
                bail!("`{key}` = {v}: must be in [0, 1]");
            }
        }
        if self.model.kind == ModelKind::Dqn && self.model.batchnorm {
            bail!("`model.batchnorm` = true: not supported for the DQN's Q-network");
        }
        Ok(())
    }

    /// The weight init scheme as the library's type.
    pub fn init(&self) -> leaky::tensor::Init {
        match self.model.init {
            InitName::Normal => leaky::tensor::Init::Normal { std: self.model.init_std },
            InitName::Xavier => leaky::tensor::Init::Xavier,
            InitName::He => leaky::tensor::Init::He,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), Experiment::default());
    }

    #[test]
    fn design_example_parses() {
        let text = include_str!("../../../examples/digits.toml");
        parse(text).unwrap();
    }

    #[test]
    fn rl_defaults_are_design_md_and_the_library_defaults() {
        let r = parse("").unwrap().rl;
        // DESIGN.md's [rl] section.
        assert_eq!(r.env, "cartpole");
        assert_eq!(r.td_loss, TdLoss::Huber);
        assert_eq!((r.episodes, r.gamma, r.reward_scale, r.target_update), (300, 0.99, 1.0, 500));
        // Unchanged by the file, the library's config stays the library's default.
        let mut cfg = leaky::rl::dqn::DqnConfig::new(TdLoss::Huber, 300, 0);
        let before = cfg.clone();
        r.apply(&mut cfg);
        assert_eq!(cfg, before);
    }

    #[test]
    fn every_rl_key_reaches_the_dqn_config() {
        let text = "[rl]\ntd_loss = \"grad_clip\"\nepisodes = 19\ngamma = 0.5\nreward_scale = 2.0\ntarget_update = 7\nbuffer_size = 11\nlearning_starts = 13\ntrain_every = 3\neps_start = 0.9\neps_end = 0.25\neps_decay_steps = 17\n";
        let r = parse(text).unwrap().rl;
        let mut c = leaky::rl::dqn::DqnConfig::new(TdLoss::Huber, 300, 0);
        r.apply(&mut c);
        assert_eq!(c.td_loss, TdLoss::GradClip);
        assert_eq!((c.episodes, c.target_update, c.buffer_size, c.learning_starts), (19, 7, 11, 13));
        assert_eq!((c.train_every, c.eps_decay_steps), (3, 17));
        assert_eq!((c.gamma, c.reward_scale, c.eps_start, c.eps_end), (0.5, 2.0, 0.9, 0.25));
    }

    #[test]
    fn errors_name_the_key() {
        let e = format!("{:#}", parse("[train]\nlrr = 0.1\n").unwrap_err());
        assert!(e.contains("lrr"), "{e}");
        let e = format!("{:#}", parse("[train]\nlr = \"fast\"\n").unwrap_err());
        assert!(e.contains("lr"), "{e}");
        let e = format!("{:#}", parse("[train]\nlr = -1.0\n").unwrap_err());
        assert!(e.contains("train.lr"), "{e}");
        let e = format!("{:#}", parse("[model]\nactivation = \"swish\"\n").unwrap_err());
        assert!(e.contains("swish") || e.contains("activation"), "{e}");
        let e = format!("{:#}", parse("[data]\nval_fraction = 1.5\n").unwrap_err());
        assert!(e.contains("data.val_fraction"), "{e}");
        let e = format!("{:#}", parse("[model]\nhidden = [10, 0]\n").unwrap_err());
        assert!(e.contains("model.hidden[1]"), "{e}");
        let e = format!("{:#}", parse("seed = 1\n[bogus]\n").unwrap_err());
        assert!(e.contains("bogus"), "{e}");
        let e = format!("{:#}", parse("[rl]\ntd_los = \"huber\"\n").unwrap_err());
        assert!(e.contains("td_los"), "{e}");
        let e = format!("{:#}", parse("[rl]\ntd_loss = \"l1\"\n").unwrap_err());
        assert!(e.contains("l1") && e.contains("clipped_delta"), "{e}");
        let e = format!("{:#}", parse("[rl]\nreward_scale = 0.0\n").unwrap_err());
        assert!(e.contains("rl.reward_scale"), "{e}");
        let e = format!("{:#}", parse("[rl]\neps_end = 2.0\n").unwrap_err());
        assert!(e.contains("rl.eps_end"), "{e}");
        let e = format!("{:#}", parse("[rl]\nenv = \"pong\"\n").unwrap_err());
        assert!(e.contains("rl.env"), "{e}");
    }
}
