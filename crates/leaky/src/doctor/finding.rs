//! Findings: what the doctor says, in the JSON contract of DESIGN.md ("Findings").
//!
//! One [`Finding`] serialises as
//!
//! ```json
//! {"code": "saturation", "severity": "warning", "where": "layer 1 (sigmoid)", "step": 0,
//!  "evidence": {"activation": "sigmoid", "saturated_fraction": 0.93, ...},
//!  "why": "...", "fix": ["...", "..."]}
//! ```
//!
//! and a whole run (`--json FILE`) as a [`Report`]:
//! `{"version": 1, "run": {...}, "findings": [...], "metrics": {...}}`.
//!
//! The [`Code`] strings are stable once released: tools match on them.
//!
//! Fix suggestions are ranked (the first is the one to try first, and the one `--treat`
//! applies). When a fix maps onto a key of the experiment file, the key is named in
//! parentheses at the end, e.g. `"use Xavier init (model.init = \"xavier\")"`, with a value
//! when the doctor can propose one.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The evidence of a finding: named numbers (and a few strings or lists, e.g. `axis` or
/// unit indices) that prove it. Keys are sorted, so the JSON is deterministic.
pub type Evidence = serde_json::Map<String, Value>;

/// The nine stable finding codes of DESIGN.md, serialised in snake_case exactly as listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// Sigmoid/tanh units sit where the local gradient is ~0.
    Saturation,
    /// The gradient shrinks through depth or back through time.
    VanishingGradient,
    /// The gradient grows through depth or back through time.
    ExplodingGradient,
    /// ReLU units that output 0 for every example of a full pass.
    DeadRelu,
    /// An op with flat regions blocks the gradient for a large share of elements while the
    /// loss is not zero (the clip_by_value bug).
    ZeroGradient,
    /// The first op, layer and pass at which NaN or Inf appeared.
    NonFinite,
    /// The loss at step 0 is far from what the initialisation predicts.
    BadInitLoss,
    /// lr*|dW|/|W| is far from ~1e-3.
    UpdateRatio,
    /// Input features are far from zero-mean unit-scale.
    UnnormalizedInput,
}

impl Code {
    /// Every code, in the order of DESIGN.md's table.
    pub const ALL: [Code; 9] = [
        Code::Saturation,
        Code::VanishingGradient,
        Code::ExplodingGradient,
        Code::DeadRelu,
        Code::ZeroGradient,
        Code::NonFinite,
        Code::BadInitLoss,
        Code::UpdateRatio,
        Code::UnnormalizedInput,
    ];

    /// The stable string, as in the JSON (`"vanishing_gradient"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Saturation => "saturation",
            Code::VanishingGradient => "vanishing_gradient",
            Code::ExplodingGradient => "exploding_gradient",
            Code::DeadRelu => "dead_relu",
            Code::ZeroGradient => "zero_gradient",
            Code::NonFinite => "non_finite",
            Code::BadInitLoss => "bad_init_loss",
            Code::UpdateRatio => "update_ratio",
            Code::UnnormalizedInput => "unnormalized_input",
        }
    }

    /// The code for a stable string, if it is one.
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a finding is. A healthy run has no `Error` or `Warning`.
///
/// The derived order puts the most severe first (`Error < Warning < Info`), so sorting
/// ascending lists errors first; use [`Severity::is_at_least`] for `--fail-on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Training is broken (or about to be).
    Error,
    /// Training works worse than it should.
    Warning,
    /// Worth knowing; not a pathology by itself.
    Info,
}

impl Severity {
    /// `"error"`, `"warning"` or `"info"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    /// The severity for `"error"`, `"warning"` or `"info"`.
    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Error, Severity::Warning, Severity::Info].into_iter().find(|v| v.as_str() == s)
    }

    /// Whether `self` is as severe as `threshold` or more (`Error` is at least `Warning`).
    pub fn is_at_least(self, threshold: Severity) -> bool {
        self <= threshold
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One diagnosis: which pathology, where, when, the numbers that prove it, the
/// backward-pass reason, and ranked fixes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The stable code.
    pub code: Code,
    /// How bad it is.
    pub severity: Severity,
    /// The layer or op, e.g. `"layer 2 (sigmoid)"`; serialised as `"where"`.
    #[serde(rename = "where")]
    pub where_: String,
    /// The training step it refers to (first seen); `None` (JSON `null`) for findings about
    /// the data or the run as a whole.
    pub step: Option<usize>,
    /// The numbers that prove it (and a few strings/lists such as `axis` or unit indices).
    pub evidence: Evidence,
    /// Why it happens, in terms of the backward pass, in one or two sentences.
    pub why: String,
    /// Ranked suggestions, best first.
    pub fix: Vec<String>,
}

impl Finding {
    /// A finding with empty evidence and no fixes; add them with [`Finding::with`] and
    /// [`Finding::fixes`].
    pub fn new(
        code: Code,
        severity: Severity,
        where_: impl Into<String>,
        step: Option<usize>,
        why: impl Into<String>,
    ) -> Self {
        Finding {
            code,
            severity,
            where_: where_.into(),
            step,
            evidence: Evidence::new(),
            why: why.into(),
            fix: Vec::new(),
        }
    }

    /// Add one evidence entry (builder style). Non-finite numbers serialise as `null`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.evidence.insert(key.to_string(), value.into());
        self
    }

    /// Set the ranked fixes (builder style).
    pub fn fixes<S: Into<String>>(mut self, fixes: impl IntoIterator<Item = S>) -> Self {
        self.fix = fixes.into_iter().map(Into::into).collect();
        self
    }

    /// A number from the evidence, if present and numeric.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.evidence.get(key).and_then(Value::as_f64)
    }

    /// A string from the evidence, if present and a string.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.evidence.get(key).and_then(Value::as_str)
    }

    /// The finding as a JSON value (the contract's object).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a finding always serialises")
    }
}

/// The version of the `--json` schema written by this crate.
pub const REPORT_VERSION: u32 = 1;

/// The `--json FILE` document: `{"version": 1, "run": {...}, "findings": [...], "metrics": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Schema version, [`REPORT_VERSION`].
    pub version: u32,
    /// What was run (experiment, seed, ...), as the caller describes it.
    pub run: Value,
    /// The findings, most severe first.
    pub findings: Vec<Finding>,
    /// Summary numbers of the run (loss, accuracy, ...), as the caller describes them.
    pub metrics: Value,
}

impl Report {
    /// A report of the current schema version.
    pub fn new(run: Value, findings: Vec<Finding>, metrics: Value) -> Self {
        Report { version: REPORT_VERSION, run, findings, metrics }
    }

    /// The most severe finding's severity, `None` when there are no findings.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).min()
    }

    /// Pretty-printed JSON.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_serialise_exactly_as_design_lists_them() {
        let expected = [
            "saturation",
            "vanishing_gradient",
            "exploding_gradient",
            "dead_relu",
            "zero_gradient",
            "non_finite",
            "bad_init_loss",
            "update_ratio",
            "unnormalized_input",
        ];
        for (c, s) in Code::ALL.iter().zip(expected) {
            assert_eq!(serde_json::to_value(c).unwrap(), json!(s));
            assert_eq!(c.as_str(), s);
            assert_eq!(Code::parse(s), Some(*c));
            assert_eq!(serde_json::from_value::<Code>(json!(s)).unwrap(), *c);
        }
        for (s, v) in [(Severity::Error, "error"), (Severity::Warning, "warning"), (Severity::Info, "info")] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(v));
            assert_eq!(Severity::parse(v), Some(s));
        }
    }

    #[test]
    fn finding_has_exactly_the_contract_keys() {
        let f = Finding::new(Code::Saturation, Severity::Warning, "layer 2 (sigmoid)", Some(0), "why")
            .with("activation", "sigmoid")
            .with("saturated_fraction", 0.9)
            .with("units", vec![1usize, 3])
            .with("nan_is_null", f64::NAN)
            .fixes(["use Xavier init (model.init = \"xavier\")", "use relu"]);
        let v = f.to_json();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        let mut expected = vec!["code", "severity", "where", "step", "evidence", "why", "fix"];
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(v["code"], json!("saturation"));
        assert_eq!(v["severity"], json!("warning"));
        assert_eq!(v["where"], json!("layer 2 (sigmoid)"));
        assert_eq!(v["step"], json!(0));
        assert_eq!(v["evidence"]["activation"], json!("sigmoid"));
        assert_eq!(v["evidence"]["saturated_fraction"], json!(0.9));
        assert_eq!(v["evidence"]["units"], json!([1, 3]));
        assert_eq!(v["evidence"]["nan_is_null"], Value::Null);
        assert_eq!(v["fix"][0], json!("use Xavier init (model.init = \"xavier\")"));
        // A missing step is an explicit null, not an absent key.
        let g = Finding::new(Code::UnnormalizedInput, Severity::Info, "input", None, "w");
        assert_eq!(g.to_json()["step"], Value::Null);
        // Round trip.
        let back: Finding = serde_json::from_value(v).unwrap();
        assert_eq!(back.code, Code::Saturation);
        assert_eq!(back.where_, "layer 2 (sigmoid)");
    }

    #[test]
    fn report_has_the_contract_shape() {
        let f = Finding::new(Code::NonFinite, Severity::Error, "layer 0 (affine)", Some(3), "w");
        let r = Report::new(json!({"experiment": "x.toml"}), vec![f], json!({"final_loss": 1.0}));
        let v: Value = serde_json::from_str(&r.to_json_string()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["findings", "metrics", "run", "version"]);
        assert_eq!(v["version"], json!(1));
        assert_eq!(v["findings"][0]["code"], json!("non_finite"));
        assert_eq!(r.worst(), Some(Severity::Error));
    }

    #[test]
    fn severity_order() {
        assert!(Severity::Error.is_at_least(Severity::Warning));
        assert!(Severity::Warning.is_at_least(Severity::Warning));
        assert!(!Severity::Info.is_at_least(Severity::Warning));
        assert!(!Severity::Warning.is_at_least(Severity::Error));
    }
}
