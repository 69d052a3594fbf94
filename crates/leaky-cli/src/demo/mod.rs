//! `leaky demo`: each way backprop leaks, reproduced broken and fixed, side by side.

#![allow(dead_code)] // The demos land one by one; this is their shared shape.

pub mod dqn;

use crate::report::Section;
use leaky::doctor::finding::Finding;

/// Options every demo takes.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// A small, fast variant for tests (seconds, not minutes).
    pub quick: bool,
    /// The base seed (multi-seed demos use seed, seed+1, ...).
    pub seed: u64,
    /// How many seeds multi-seed demos (dqn) run.
    pub seeds: usize,
    /// No progress bars or per-step printing (the final table still prints unless `--json -`).
    pub quiet: bool,
    /// DQN: multiply every reward by this (larger rewards push every TD error past the clip).
    pub reward_scale: f64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions { quick: false, seed: 0, seeds: 3, quiet: false, reward_scale: 1.0 }
    }
}

/// One trained variant of a demo (e.g. "broken: sigmoid, N(0, 1) init, raw inputs").
#[derive(Clone, Debug)]
pub struct Variant {
    /// Short name, e.g. `"broken"`, `"fixed"`, `"huber"`.
    pub name: String,
    /// Whether this is the broken variant (the doctor must find the demo's code here).
    pub broken: bool,
    /// One line saying what it is.
    pub description: String,
    /// The doctor's findings on this variant.
    pub findings: Vec<Finding>,
    /// Named metrics (final loss, accuracy, dead fraction, mean return, ...).
    pub metrics: serde_json::Map<String, serde_json::Value>,
}

/// What a demo returns: the variants, the terminal table and a report section.
#[derive(Clone, Debug)]
pub struct DemoOutcome {
    /// The demo's name (`"sigmoid"`, `"relu"`, `"rnn"`, `"dqn"`, `"batchnorm"`).
    pub name: String,
    /// The finding code this demo is about (e.g. `"saturation"`).
    pub code: String,
    /// The variants, broken first.
    pub variants: Vec<Variant>,
    /// The terminal table: header then rows (variant, key metric, finding, outcome).
    pub table: crate::report::Table,
    /// The report section (text, tables, findings, charts).
    pub section: Section,
}
