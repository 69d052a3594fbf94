//! Treatment: what to change ([`plan`]) and whether the change helped ([`compare`]). Pure
//! functions; retraining is the caller's (same seed, same budget).
//!
//! * [`plan`] applies the first fix with a non-empty `set` of every **root cause** among the
//!   error and warning findings, together (one run has one value per key: where two roots
//!   set the same key, the one listed first keeps it). Consequences are not treated: their
//!   advice is to fix their cause.
//! * [`compare`] gives a verdict from the **metrics**, never from the findings alone: a
//!   treatment that made the run worse says `worse` even if every finding went away.
//!
//! # The verdict rule
//!
//! The metrics are read in this order: `best_val_loss` (lower is better), `best_val_acc`
//! (higher is better), `final_train_loss` (lower is better). A metric *moved* when
//!
//! * it was finite before and is missing or non-finite after (worse), or the other way round
//!   (better);
//! * a loss changed by more than [`LOSS_TOLERANCE`] of its old value (relative);
//! * an accuracy changed by more than [`ACC_TOLERANCE`] (absolute).
//!
//! The first metric in that order that moved decides (`better` or `worse`); when none moved,
//! the verdict is `unchanged`. Validation loss comes first because it is what every
//! experiment has (recurrent regressions have no accuracy) and what a diverging or saturated
//! run ruins first; accuracy then separates runs whose loss did not move.

use super::finding::{Code, Finding, Severity};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A loss moved when it changed by more than this share of its old value: 2%, above the
/// run-to-run noise of the same seed on another thread count (our choice; a treatment that
/// moves the loss by less did nothing worth a verdict).
pub const LOSS_TOLERANCE: f64 = 0.02;

/// Settings that change the loss function: a treatment that sets one is judged on accuracy
/// only (losses of two different functions do not compare).
pub const LOSS_KEYS: [&str; 2] = ["train.loss", "rl.td_loss"];

/// An accuracy moved when it changed by more than this (absolute): one point in a hundred.
pub const ACC_TOLERANCE: f64 = 0.01;

/// The numbers a verdict is made from. `None` (JSON `null`) when the run has no such number
/// or it is NaN/infinite (a diverged run).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Validation loss at the best epoch.
    pub best_val_loss: Option<f64>,
    /// Best validation accuracy.
    pub best_val_acc: Option<f64>,
    /// Mean training loss of the last completed epoch (`None` when the run diverged).
    pub final_train_loss: Option<f64>,
}

impl Metrics {
    /// Metrics from raw numbers: NaN and infinities become `None`.
    pub fn new(best_val_loss: f64, best_val_acc: f64, final_train_loss: f64) -> Self {
        let keep = |x: f64| x.is_finite().then_some(x);
        Metrics {
            best_val_loss: keep(best_val_loss),
            best_val_acc: keep(best_val_acc),
            final_train_loss: keep(final_train_loss),
        }
    }

    /// The metrics of a trainer's report: `final_train_loss` is the last completed epoch's
    /// training loss, `None` when the run diverged (stopped on a non-finite loss).
    pub fn from_report(r: &crate::train::TrainReport) -> Self {
        let last = if r.diverged_at_step.is_some() {
            f64::NAN
        } else {
            r.history.last().map(|e| e.train_loss).unwrap_or(f64::NAN)
        };
        Metrics::new(r.best_val_loss, r.best_val_acc, last)
    }
}

/// The outcome of a treatment, judged from the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The first metric that moved got better.
    Better,
    /// The first metric that moved got worse.
    Worse,
    /// No metric moved beyond its tolerance.
    Unchanged,
}

impl Verdict {
    /// `"better"`, `"worse"` or `"unchanged"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Unchanged => "unchanged",
        }
    }
}

/// A treatment and its outcome, as in the `--json` contract:
/// `{"applied": {...}, "before": {...}, "after": {...}, "verdict": "better", "resolved": [...],
/// "remaining": [...], "new": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Treatment {
    /// The settings applied ([`plan`] of the original findings).
    pub applied: BTreeMap<String, Value>,
    /// The original run's metrics.
    pub before: Metrics,
    /// The treated run's metrics.
    pub after: Metrics,
    /// From the metrics ([`Verdict`]; rule in the module docs).
    pub verdict: Verdict,
    /// Codes of error/warning findings before that are gone after.
    pub resolved: Vec<Code>,
    /// Codes of error/warning findings before that are still there after.
    pub remaining: Vec<Code>,
    /// Codes of error/warning findings after that were not there before.
    pub new: Vec<Code>,
}

/// The settings a treatment applies: for every root cause among the error and warning
/// findings (in listing order), its first fix with a non-empty `set`, merged; a key already
/// set by an earlier root keeps that value.
pub fn plan(findings: &[Finding]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for f in findings.iter().filter(|f| f.is_root() && f.severity.is_at_least(Severity::Warning)) {
        if let Some(fix) = f.fix.iter().find(|x| !x.set.is_empty()) {
            for (k, v) in &fix.set {
                out.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    out
}

/// Which way one metric moved: `Some(true)` better, `Some(false)` worse, `None` not moved.
fn moved(before: Option<f64>, after: Option<f64>, higher_is_better: bool, relative: bool) -> Option<bool> {
    match (before, after) {
        (Some(_), None) => Some(false),
        (None, Some(_)) => Some(true),
        (None, None) => None,
        (Some(b), Some(a)) => {
            let tol = if relative { LOSS_TOLERANCE * b.abs() } else { ACC_TOLERANCE };
            if (a - b).abs() <= tol {
                None
            } else {
                Some((a > b) == higher_is_better)
            }
        }
    }
}

/// The verdict of `after` against `before` (rule in the module docs).
pub fn verdict(before: &Metrics, after: &Metrics) -> Verdict {
    verdict_with(before, after, true)
}

/// [`verdict`], with the losses left out when `losses_comparable` is false (the treatment
/// changed the loss function, so the two runs' losses are on different scales).
pub fn verdict_with(before: &Metrics, after: &Metrics, losses_comparable: bool) -> Verdict {
    let loss = |b, a| if losses_comparable { moved(b, a, false, true) } else { None };
    let order = [
        loss(before.best_val_loss, after.best_val_loss),
        moved(before.best_val_acc, after.best_val_acc, true, false),
        loss(before.final_train_loss, after.final_train_loss),
    ];
    match order.into_iter().flatten().next() {
        Some(true) => Verdict::Better,
        Some(false) => Verdict::Worse,
        None => Verdict::Unchanged,
    }
}

/// The error/warning codes of `findings`, sorted, once each.
fn problem_codes(findings: &[Finding]) -> Vec<Code> {
    let mut v: Vec<Code> =
        findings.iter().filter(|f| f.severity.is_at_least(Severity::Warning)).map(|f| f.code).collect();
    v.sort();
    v.dedup();
    v
}

/// Judge a treatment: `applied` is [`plan`]`(before_findings)`; the verdict comes from the
/// metrics; resolved / remaining / new compare the error and warning codes.
pub fn compare(
    before_metrics: &Metrics,
    after_metrics: &Metrics,
    before_findings: &[Finding],
    after_findings: &[Finding],
) -> Treatment {
    let (b, a) = (problem_codes(before_findings), problem_codes(after_findings));
    let applied = plan(before_findings);
    let comparable = !LOSS_KEYS.iter().any(|k| applied.contains_key(*k));
    Treatment {
        verdict: verdict_with(before_metrics, after_metrics, comparable),
        applied,
        before: before_metrics.clone(),
        after: after_metrics.clone(),
        resolved: b.iter().copied().filter(|c| !a.contains(c)).collect(),
        remaining: b.iter().copied().filter(|c| a.contains(c)).collect(),
        new: a.iter().copied().filter(|c| !b.contains(c)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::Fix;
    use serde_json::json;

    fn finding(id: &str, code: Code, severity: Severity, caused_by: Option<&str>, fixes: Vec<Fix>) -> Finding {
        let mut f = Finding::new(code, severity, "layer 1 (sigmoid)", Some(0), "w").fixes(fixes);
        f.id = id.into();
        f.caused_by = caused_by.map(str::to_string);
        f
    }

    fn before() -> Vec<Finding> {
        vec![
            finding(
                "F1",
                Code::Saturation,
                Severity::Error,
                None,
                vec![
                    Fix::text("use Xavier init").set("model.init", "xavier"),
                    Fix::text("use relu").set("model.activation", "relu"),
                ],
            ),
            finding(
                "F2",
                Code::VanishingGradient,
                Severity::Warning,
                Some("F1"),
                vec![Fix::text("fix the cause first"), Fix::text("use He init").set("model.init", "he")],
            ),
            finding(
                "F3",
                Code::UnnormalizedInput,
                Severity::Warning,
                None,
                vec![Fix::text("check the data"), Fix::text("standardise inputs").set("data.normalize", true)],
            ),
            finding("F4", Code::DeadRelu, Severity::Info, None, vec![Fix::text("lower lr").set("train.lr", 0.01)]),
            finding(
                "F5",
                Code::UpdateRatio,
                Severity::Warning,
                None,
                vec![Fix::text("use He init").set("model.init", "he").set("train.lr", 0.05)],
            ),
        ]
    }

    #[test]
    fn plan_takes_each_roots_first_setting() {
        let p = plan(&before());
        // F1's first fix; not F2 (a consequence); F3's first fix *with a setting*; not F4
        // (info); F5's lr, but model.init stays F1's.
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"model.init": "xavier", "data.normalize": true, "train.lr": 0.05})
        );
        assert!(plan(&[]).is_empty());
    }

    /// The case of the issue: Xavier made every finding go away but the validation loss went
    /// from 1.27 to 1.82. The verdict is worse.
    #[test]
    fn worse_metrics_say_worse_even_when_findings_went_away() {
        let b = Metrics::new(1.27, 0.61, 1.4);
        let a = Metrics::new(1.82, 0.70, 0.9);
        let t = compare(&b, &a, &before(), &[]);
        assert_eq!(t.verdict, Verdict::Worse);
        assert_eq!(t.resolved, [Code::Saturation, Code::VanishingGradient, Code::UpdateRatio, Code::UnnormalizedInput]);
        assert!(t.remaining.is_empty() && t.new.is_empty());
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["verdict"], "worse");
        assert_eq!(v["before"]["best_val_loss"], 1.27);
        assert_eq!(v["resolved"][0], "saturation");
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["after", "applied", "before", "new", "remaining", "resolved", "verdict"]);
    }

    #[test]
    fn verdict_order_and_tolerances() {
        let b = Metrics::new(1.0, 0.5, 1.0);
        // Within 2% and one point: unchanged.
        assert_eq!(verdict(&b, &Metrics::new(1.0199, 0.509, 0.981)), Verdict::Unchanged);
        // The loss decides first: better loss, worse accuracy -> better.
        assert_eq!(verdict(&b, &Metrics::new(0.9, 0.3, 1.0)), Verdict::Better);
        // Loss unchanged: accuracy decides.
        assert_eq!(verdict(&b, &Metrics::new(1.01, 0.45, 0.5)), Verdict::Worse);
        assert_eq!(verdict(&b, &Metrics::new(1.01, 0.52, 2.0)), Verdict::Better);
        // Only the training loss moved.
        assert_eq!(verdict(&b, &Metrics::new(1.0, 0.5, 1.5)), Verdict::Worse);
        // A treated run that diverged (NaN loss) is worse; a diverged original made finite is better.
        assert_eq!(verdict(&b, &Metrics::new(f64::NAN, 0.5, f64::NAN)), Verdict::Worse);
        let diverged = Metrics::new(f64::NAN, 0.1, f64::NAN);
        assert_eq!(verdict(&diverged, &b), Verdict::Better);
        assert_eq!(serde_json::to_value(&diverged).unwrap()["best_val_loss"], serde_json::Value::Null);
    }

    /// A treatment that replaces clipped_mse by softmax is judged on accuracy: the losses
    /// are on different scales (measured on raw digits: 0.92 -> 1.15, accuracy 13% -> 69%).
    #[test]
    fn a_new_loss_function_is_judged_on_accuracy() {
        let clip = finding(
            "F1",
            Code::ZeroGradient,
            Severity::Error,
            None,
            vec![Fix::text("use softmax").set("train.loss", "softmax")],
        );
        let t =
            compare(&Metrics::new(0.92, 0.13, 0.92), &Metrics::new(1.15, 0.69, 1.15), std::slice::from_ref(&clip), &[]);
        assert_eq!(t.verdict, Verdict::Better);
        let t = compare(&Metrics::new(0.92, 0.13, 0.92), &Metrics::new(0.5, 0.13, 0.5), &[clip], &[]);
        assert_eq!(t.verdict, Verdict::Unchanged);
    }

    #[test]
    fn new_and_remaining_codes() {
        let after = vec![
            finding("F1", Code::Saturation, Severity::Warning, None, vec![]),
            finding("F2", Code::NonFinite, Severity::Error, None, vec![]),
            finding("F3", Code::DeadRelu, Severity::Info, None, vec![]),
        ];
        let t = compare(&Metrics::default(), &Metrics::default(), &before(), &after);
        assert_eq!(t.verdict, Verdict::Unchanged);
        assert_eq!(t.remaining, [Code::Saturation]);
        assert_eq!(t.new, [Code::NonFinite]);
        assert_eq!(t.resolved, [Code::VanishingGradient, Code::UpdateRatio, Code::UnnormalizedInput]);
    }
}
