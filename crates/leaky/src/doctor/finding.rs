//! Findings: what the doctor says, in the JSON contract of `docs/findings.md` (version 2).
//!
//! One [`Finding`] serialises as
//!
//! ```json
//! {"id": "F1", "code": "saturation", "severity": "warning", "where": "layer 1 (sigmoid)",
//!  "layer": 1, "step": 0,
//!  "evidence": {"activation": "sigmoid", "saturated_fraction": 0.93, ...},
//!  "why": "...",
//!  "fix": [{"text": "use Xavier init", "set": {"model.init": "xavier"}}, ...],
//!  "caused_by": null}
//! ```
//!
//! and a whole run (`--json FILE`) as a [`Report`]:
//! `{"version": 2, "run": {...}, "findings": [...], "metrics": {...}, "treatment": {...}}`
//! (`treatment` only when a treatment was run).
//!
//! The [`Code`] strings are stable once released: tools match on them.
//!
//! Fixes are ranked (the first is the one to try first). Each [`Fix`] carries its text and
//! `set`, the experiment keys and values that apply it (empty when the fix is not a
//! setting); a treatment applies `set` and never parses the text.
//!
//! `id` (`"F1"`, `"F2"`, ... in the order the findings are listed) and `caused_by` (the id
//! of the finding that explains this one, `null` for a root cause) are filled by
//! [`crate::doctor::diagnose`] after the cause analysis ([`crate::doctor::causes`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The evidence of a finding: named numbers (and a few strings or lists, e.g. `axis` or
/// unit indices) that prove it. Keys are sorted, so the JSON is deterministic.
pub type Evidence = serde_json::Map<String, Value>;

/// The stable finding codes, serialised in snake_case exactly as listed in `docs/`.
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
    /// The loss rose far above where it started, or became non-finite.
    DivergingLoss,
    /// After a fair share of the run, the loss or accuracy is still at chance.
    NotLearning,
    /// A batch norm layer's running statistics are far from the mean and variance of its
    /// input over the data (eval mode normalises with the wrong numbers).
    BatchnormStats,
}

impl Code {
    /// Every code, in the order of the table in `docs/`.
    pub const ALL: [Code; 12] = [
        Code::Saturation,
        Code::VanishingGradient,
        Code::ExplodingGradient,
        Code::DeadRelu,
        Code::ZeroGradient,
        Code::NonFinite,
        Code::BadInitLoss,
        Code::UpdateRatio,
        Code::UnnormalizedInput,
        Code::DivergingLoss,
        Code::NotLearning,
        Code::BatchnormStats,
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
            Code::DivergingLoss => "diverging_loss",
            Code::NotLearning => "not_learning",
            Code::BatchnormStats => "batchnorm_stats",
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

/// One suggested remedy: what to do, in words, and the experiment settings that do it.
///
/// `set` maps dotted experiment keys (`"train.lr"`, `"model.init"`, `"model.activation"`,
/// `"data.normalize"`, `"train.clip_grad_norm"`, `"model.whh_radius"`, `"rl.td_loss"`,
/// `"model.kind"`, ...) to their values; it is empty when the fix is not a setting (e.g.
/// "check the labels"). Serialised as `{"text": "...", "set": {"key": value}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// The remedy in words, e.g. `"use Xavier init"`.
    pub text: String,
    /// The settings that apply it (sorted by key); empty when it is not a setting.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
}

impl Fix {
    /// A fix that is not a setting (empty `set`).
    pub fn text(text: impl Into<String>) -> Self {
        Fix { text: text.into(), set: BTreeMap::new() }
    }

    /// Add one setting (builder style): `Fix::text("use Xavier init").set("model.init", "xavier")`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.set.insert(key.to_string(), value.into());
        self
    }

    /// The settings as `key = value`, comma-separated (`model.init = "xavier", train.lr = 0.05`);
    /// empty for a fix that is not a setting.
    pub fn settings_line(&self) -> String {
        self.set.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
    }
}

impl From<&str> for Fix {
    fn from(text: &str) -> Self {
        Fix::text(text)
    }
}

impl From<String> for Fix {
    fn from(text: String) -> Self {
        Fix::text(text)
    }
}

impl fmt::Display for Fix {
    /// The text, then the settings in parentheses when there are any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.set.is_empty() {
            f.write_str(&self.text)
        } else {
            write!(f, "{} ({})", self.text, self.settings_line())
        }
    }
}

/// One diagnosis: which pathology, where, when, the numbers that prove it, the
/// backward-pass reason, ranked fixes, and which other finding explains it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `"F1"`, `"F2"`, ... in listing order; assigned by [`crate::doctor::diagnose`] (empty
    /// before).
    #[serde(default)]
    pub id: String,
    /// The stable code.
    pub code: Code,
    /// How bad it is.
    pub severity: Severity,
    /// The layer or op, e.g. `"layer 2 (sigmoid)"`; serialised as `"where"`.
    #[serde(rename = "where")]
    pub where_: String,
    /// The index of the layer that `where` names (the model listing's index), `None` when
    /// `where` is not a layer (the input, the loss, the TD error, the run).
    #[serde(default)]
    pub layer: Option<usize>,
    /// The training step it refers to (first seen, from 0); `None` (JSON `null`) for
    /// findings about the data or the run as a whole.
    pub step: Option<usize>,
    /// The numbers that prove it (and a few strings/lists such as `axis` or unit indices).
    pub evidence: Evidence,
    /// Why it happens, in terms of the backward pass, in one or two sentences.
    pub why: String,
    /// Ranked suggestions, best first.
    pub fix: Vec<Fix>,
    /// The id of the finding that explains this one; `None` (JSON `null`) for a root cause.
    #[serde(default)]
    pub caused_by: Option<String>,
}

impl Finding {
    /// A finding with empty evidence, no fixes, no layer, no id and no cause; add them with
    /// [`Finding::with`], [`Finding::fixes`] and [`Finding::at_layer`].
    pub fn new(
        code: Code,
        severity: Severity,
        where_: impl Into<String>,
        step: Option<usize>,
        why: impl Into<String>,
    ) -> Self {
        Finding {
            id: String::new(),
            code,
            severity,
            where_: where_.into(),
            layer: None,
            step,
            evidence: Evidence::new(),
            why: why.into(),
            fix: Vec::new(),
            caused_by: None,
        }
    }

    /// Set the layer index (builder style).
    pub fn at_layer(mut self, layer: usize) -> Self {
        self.layer = Some(layer);
        self
    }

    /// Add one evidence entry (builder style). Non-finite numbers serialise as `null`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.evidence.insert(key.to_string(), value.into());
        self
    }

    /// Set the ranked fixes (builder style); plain strings become fixes without settings.
    pub fn fixes<S: Into<Fix>>(mut self, fixes: impl IntoIterator<Item = S>) -> Self {
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

    /// Whether this is a root cause (no other finding explains it).
    pub fn is_root(&self) -> bool {
        self.caused_by.is_none()
    }

    /// The finding as a JSON value (the contract's object).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a finding always serialises")
    }
}

/// The version of the `--json` schema written by this crate.
pub const REPORT_VERSION: u32 = 2;

/// The `--json FILE` document: `{"version": 2, "run": {...}, "findings": [...], "metrics": {...}}`,
/// plus `"treatment": {...}` when a treatment was run.
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
    /// The treatment and its outcome, when one was run (absent from the JSON otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub treatment: Option<crate::doctor::treatment::Treatment>,
}

impl Report {
    /// A report of the current schema version.
    pub fn new(run: Value, findings: Vec<Finding>, metrics: Value) -> Self {
        Report { version: REPORT_VERSION, run, findings, metrics, treatment: None }
    }

    /// Attach a treatment's outcome (builder style).
    pub fn with_treatment(mut self, treatment: crate::doctor::treatment::Treatment) -> Self {
        self.treatment = Some(treatment);
        self
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
            "diverging_loss",
            "not_learning",
            "batchnorm_stats",
        ];
        assert_eq!(Code::ALL.len(), expected.len());
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
            .at_layer(2)
            .fixes([Fix::text("use Xavier init").set("model.init", "xavier"), Fix::text("use relu")]);
        let v = f.to_json();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        let mut expected =
            vec!["id", "code", "severity", "where", "layer", "step", "evidence", "why", "fix", "caused_by"];
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
        assert_eq!(v["layer"], json!(2));
        assert_eq!(v["caused_by"], Value::Null);
        assert_eq!(v["fix"][0], json!({"text": "use Xavier init", "set": {"model.init": "xavier"}}));
        assert_eq!(v["fix"][1], json!({"text": "use relu", "set": {}}));
        assert_eq!(f.fix[0].to_string(), "use Xavier init (model.init = \"xavier\")");
        assert_eq!(f.fix[1].to_string(), "use relu");
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
        assert_eq!(v["version"], json!(2));
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
