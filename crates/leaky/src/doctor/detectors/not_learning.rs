//! `not_learning`: after a fair share of the run, the classifier is still where a network
//! that learned nothing sits: its accuracy at chance (1/C) or its loss at the value of a
//! uniform prediction (ln C for softmax, C - 1 for the SVM hinge: [`InitLoss::expected`]).
//! Read from the per-epoch records ([`EpochStats`]).
//!
//! AUTOTRAINER (Zhang et al., ICSE 2021) judges "slow convergence" by whether the accuracy
//! has moved after a share of the training budget; we use the same structure with the one
//! reference level every classifier has, chance:
//!
//! * judged once at least [`NOT_LEARNING_MIN_SHARE`] of the planned epochs are done (all
//!   recorded epochs when the plan is not known), on the **best** epoch so far, so a run that
//!   learned and then got worse is not called "not learning";
//! * accuracy (validation, else training) at most chance + [`NOT_LEARNING_ACC_SHARE`] of the
//!   way from chance to 1, or
//! * loss (validation, else training; softmax and SVM only) at least
//!   [`NOT_LEARNING_LOSS_SHARE`] of the uniform-prediction loss.
//!
//! Regression (MSE on real targets) has no chance level the doctor knows: not judged. A DQN
//! is not judged either (its loss is not a classifier's).

use super::{lr_fix, sig3};
use crate::doctor::finding::{Code, Finding, Fix, Severity};
use crate::doctor::stats::{EpochStats, InitLoss, RunInfo};

/// Judged after this share of the planned epochs (rounded up, at least one epoch). Our
/// choice: a third of the budget is where a learning curve that is going to move has moved
/// (digits and spiral nets leave chance within the first epoch).
pub const NOT_LEARNING_MIN_SHARE: f64 = 0.3;

/// Accuracy counts as chance when it is at most `chance + this * (1 - chance)`: 19% for 10
/// classes, 55% for 2 (our cut-off: a tenth of the way to perfect).
pub const NOT_LEARNING_ACC_SHARE: f64 = 0.1;

/// Loss counts as "nothing learned" when it is at least this share of the uniform-prediction
/// loss (ln C for softmax): it came down by less than 10% (our cut-off).
pub const NOT_LEARNING_LOSS_SHARE: f64 = 0.9;

/// The finding, if the run is not learning. `init` gives the uniform-prediction loss (and C
/// when `run.classes` is 0).
pub fn detect(epochs: &[EpochStats], init: Option<&InitLoss>, run: &RunInfo) -> Option<Finding> {
    if run.rl || epochs.is_empty() {
        return None;
    }
    let classes = if run.classes > 0 { run.classes } else { init.map(|i| i.classes).unwrap_or(0) };
    if classes < 2 {
        return None;
    }
    let need = run.epochs.map(|p| ((p as f64 * NOT_LEARNING_MIN_SHARE).ceil() as usize).max(1)).unwrap_or(1);
    if epochs.len() < need {
        return None;
    }
    let pick = |val: f64, train: f64| if val.is_finite() { val } else { train };
    let accs: Vec<f64> = epochs.iter().map(|e| pick(e.val_acc, e.train_acc)).filter(|a| a.is_finite()).collect();
    let losses: Vec<f64> = epochs.iter().map(|e| pick(e.val_loss, e.train_loss)).collect();
    let chance = 1.0 / classes as f64;
    let acc_threshold = chance + NOT_LEARNING_ACC_SHARE * (1.0 - chance);
    let best_acc = accs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let acc_flag = !accs.is_empty() && best_acc <= acc_threshold;
    let uniform = init.filter(|i| matches!(i.loss_kind.as_str(), "softmax" | "svm")).map(|i| i.expected);
    let loss_threshold = uniform.map(|u| NOT_LEARNING_LOSS_SHARE * u);
    // A non-finite loss is divergence's finding, not this one's; the best finite loss decides.
    let best_loss = losses.iter().copied().filter(|l| l.is_finite()).fold(f64::INFINITY, f64::min);
    let loss_flag = loss_threshold.is_some_and(|t| best_loss.is_finite() && best_loss >= t);
    if !acc_flag && !loss_flag {
        return None;
    }
    let what = match (acc_flag, loss_flag) {
        (true, true) => "accuracy and loss",
        (true, false) => "accuracy",
        _ => "loss",
    };
    let mut said = Vec::new();
    if acc_flag {
        said.push(format!("its best accuracy is {:.1}% where guessing gives {:.1}%", 100.0 * best_acc, 100.0 * chance));
    }
    if let (true, Some(u)) = (loss_flag, uniform) {
        said.push(format!("its best loss is {} where a uniform prediction gives {}", sig3(best_loss), sig3(u)));
    }
    let why = format!(
        "After {} of {} epochs {}: the updates have not moved the output away from a uniform guess, so the \
         gradient reaching the weights is carrying no usable signal (blocked, vanishing, or steps too small) \
         or the labels do not depend on the inputs.",
        epochs.len(),
        run.epochs.map(|p| p.to_string()).unwrap_or_else(|| epochs.len().to_string()),
        said.join(" and ")
    );
    let nan = |x: f64| if x.is_finite() { x } else { f64::NAN };
    let mut f = Finding::new(Code::NotLearning, Severity::Error, "run", None, why)
        .with("judged_on", what)
        .with("best_acc", nan(best_acc))
        .with("chance_acc", chance)
        .with("acc_threshold", acc_threshold)
        .with("best_loss", nan(best_loss))
        .with("epochs", epochs.len())
        .with("classes", classes);
    if let (Some(u), Some(t)) = (uniform, loss_threshold) {
        f = f.with("uniform_loss", u).with("loss_threshold", t);
    }
    if let Some(p) = run.epochs {
        f = f.with("planned_epochs", p);
    }
    Some(f.fixes([
        lr_fix("raise the learning rate", run, 10.0),
        Fix::text("use Adam").set("train.optimizer", "adam"),
        Fix::text("check that the labels belong to the inputs (data.dataset)"),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: usize, val_loss: f64, val_acc: f64) -> EpochStats {
        EpochStats { epoch, train_loss: val_loss, train_acc: val_acc, val_loss, val_acc }
    }

    fn run(epochs: Option<usize>) -> RunInfo {
        let mut r = RunInfo { classes: 10, epochs, ..Default::default() };
        r.settings.insert("train.lr".into(), 0.01.into());
        r
    }

    #[test]
    fn borderline_accuracy() {
        let t = 0.1 + NOT_LEARNING_ACC_SHARE * 0.9;
        let f = detect(&[epoch(1, 1.0, t)], None, &run(None)).unwrap();
        assert_eq!((f.code, f.severity, f.step), (Code::NotLearning, Severity::Error, None));
        assert_eq!(f.text("judged_on"), Some("accuracy"));
        assert_eq!(f.number("chance_acc"), Some(0.1));
        assert!(detect(&[epoch(1, 1.0, t + 1e-9)], None, &run(None)).is_none());
        // The best epoch decides: a run that learned once is learning.
        assert!(detect(&[epoch(1, 1.0, 0.9), epoch(2, 1.0, 0.1)], None, &run(None)).is_none());
        // Raising the rate: ten times, within bounds.
        assert_eq!(f.fix[0].set["train.lr"], 0.1);
    }

    #[test]
    fn borderline_loss_softmax() {
        let init = InitLoss::softmax(2.3, 10);
        let u = init.expected;
        let f = detect(&[epoch(1, NOT_LEARNING_LOSS_SHARE * u, 0.5)], Some(&init), &run(None)).unwrap();
        assert_eq!(f.text("judged_on"), Some("loss"));
        assert!((f.number("uniform_loss").unwrap() - u).abs() < 1e-12);
        assert!(detect(&[epoch(1, NOT_LEARNING_LOSS_SHARE * u * (1.0 - 1e-9), 0.5)], Some(&init), &run(None)).is_none());
        // MSE has no uniform-prediction loss the doctor knows: only accuracy counts.
        let mse = InitLoss { loss_kind: "mse".into(), ..init };
        assert!(detect(&[epoch(1, 5.0, 0.5)], Some(&mse), &run(None)).is_none());
    }

    #[test]
    fn waits_for_a_fair_share_of_the_run() {
        let stuck: Vec<EpochStats> = (1..=3).map(|e| epoch(e, 2.3, 0.1)).collect();
        // 10 planned epochs: judged from epoch 3 on.
        assert!(detect(&stuck[..2], None, &run(Some(10))).is_none());
        assert!(detect(&stuck, None, &run(Some(10))).is_some());
        // 2 planned epochs: from epoch 1.
        assert!(detect(&stuck[..1], None, &run(Some(2))).is_some());
        // Not a classifier, or reinforcement learning: never.
        let reg = RunInfo { classes: 0, ..run(None) };
        assert!(detect(&stuck, None, &reg).is_none());
        let rl = RunInfo { rl: true, ..run(None) };
        assert!(detect(&stuck, None, &rl).is_none());
    }
}
