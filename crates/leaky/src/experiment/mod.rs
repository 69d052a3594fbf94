//! Experiments: the TOML contract and the one pipeline that runs it.
//!
//! An experiment file describes the data, the model (an MLP shorthand, any feed-forward
//! layer stack with `[[model.layers]]`, an RNN/LSTM, or a DQN), the training and the
//! reinforcement-learning settings; `docs/experiment.md` in the repository documents every
//! key. [`run`] takes it from there:
//!
//! ```text
//! Experiment --prepare--> Data + Model --train (doctor optional)--> Run {report, findings, model}
//! ```
//!
//! `leaky train`, `leaky doctor` (and `--treat`), the demos and the DQN runs all go through
//! [`run`], so a Rust user gets exactly the findings the CLI prints:
//!
//! ```
//! use leaky::experiment::{load, run, NoEvents, RunOptions};
//!
//! let exp = load("../../examples/sick/sigmoid-saturated.toml".as_ref())?;
//! let result = run(&exp, "../../examples/sick".as_ref(), RunOptions::doctor(), &mut NoEvents)?;
//! assert_eq!(result.findings[0].code.as_str(), "saturation");
//! # Ok::<(), leaky::experiment::Error>(())
//! ```

/// `return Err(Error::BadInput(format!(...)))`.
macro_rules! bad {
    ($($t:tt)*) => {
        return Err($crate::experiment::Error::BadInput(format!($($t)*)))
    };
}

/// The validation code's name for [`bad!`].
macro_rules! bail {
    ($($t:tt)*) => {
        bad!($($t)*)
    };
}

pub mod checkpoint;
pub mod config;
pub mod gradcheck;
pub mod inspect;
pub mod log;
pub mod pipeline;
pub mod run;

pub use checkpoint::{evaluate_checkpoint, load_resume, Evaluation};
pub use config::{load, parse, Experiment, InitName, LayerConfig, LayerType, ModelKind};
pub use log::JsonLog;
pub use pipeline::{prepare, train_config, Data, Model};
pub use run::{
    run, run_prepared, run_prepared_from, treat, treatment_metrics, Episode, Events, NoEvents, Run, RunOptions, Trained,
};

/// Why an experiment could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is wrong: a file, a key, a value, a shape (the CLI exits 2). The message
    /// names the key or the layer.
    #[error("{0}")]
    BadInput(String),
    /// The input was fine but the run failed (the CLI exits 1).
    #[error("{0}")]
    Run(String),
}

/// The result of experiment functions.
pub type Result<T> = std::result::Result<T, Error>;
