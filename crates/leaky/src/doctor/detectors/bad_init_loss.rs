//! `bad_init_loss`: the loss at step 0 is far from what the initialisation predicts
//! ([`InitLoss`]: ln C for softmax, C - 1 for the SVM hinge, when the initial scores are
//! near zero).
//!
//! Source: CS231n, "Neural Networks Part 3: Learning and Evaluation", *Look for correct loss
//! at chance performance*; Karpathy, "A Recipe for Training Neural Networks" (2019),
//! *verify loss @ init*.

use crate::doctor::finding::{Code, Finding, Fix, Severity};
use crate::doctor::stats::InitLoss;

/// A step-0 loss at least this much above the prediction, relative to it (here: at least
/// twice ln C), is a warning. He-initialised nets start with scores of standard deviation
/// ~1, which adds about half a nat to ln C (~20% for 10 classes), so a healthy default run
/// stays well below; our cut-off.
pub const BAD_INIT_LOSS_HIGH_REL: f64 = 1.0;

/// A step-0 loss at least this much *below* the prediction, relative to it, is worth an
/// `info`: an untrained net should be at chance, so a much lower loss suggests the labels
/// leak into the inputs, the loss is mis-scaled, or the weights were not fresh.
pub const BAD_INIT_LOSS_LOW_REL: f64 = 0.5;

/// The finding for a step-0 loss far from its prediction, if it is.
pub fn detect(init: Option<&InitLoss>) -> Option<Finding> {
    let i = init?;
    if !i.loss.is_finite() || i.expected.is_nan() || i.expected <= 0.0 {
        return None; // a non-finite loss is `non_finite`'s; C = 1 predicts nothing
    }
    let rel = i.relative_deviation();
    let (severity, why, fixes): (Severity, String, Vec<Fix>) = if rel >= BAD_INIT_LOSS_HIGH_REL {
        (
            Severity::Warning,
            format!(
                "With small initial scores the {} loss starts near {} for {} classes, but it is {}: the \
                 initial scores are large and confidently wrong, so the first steps spend their gradient (p - y \
                 for softmax) undoing the initialisation instead of learning.",
                i.loss_kind,
                super::sig3(i.expected),
                i.classes,
                super::sig3(i.loss)
            ),
            vec![
                Fix::text("use Xavier init").set("model.init", "xavier"),
                Fix::text("standardise inputs").set("data.normalize", true),
                Fix::text("use a smaller initial scale").set("model.init", "normal").set("model.init_std", 0.01),
            ],
        )
    } else if rel <= -BAD_INIT_LOSS_LOW_REL {
        (
            Severity::Info,
            format!(
                "An untrained net should predict at chance, a {} loss near {} for {} classes, but it is \
                 {}: check that the labels do not leak into the inputs and that the weights are freshly \
                 initialised.",
                i.loss_kind,
                super::sig3(i.expected),
                i.classes,
                super::sig3(i.loss)
            ),
            vec![Fix::text("check the data and labels (data.dataset)"), Fix::text("check the loss (train.loss)")],
        )
    } else {
        return None;
    };
    Some(
        Finding::new(Code::BadInitLoss, severity, "loss", Some(0), why)
            .with("loss", i.loss)
            .with("expected", i.expected)
            .with("classes", i.classes)
            .with("loss_kind", i.loss_kind.as_str())
            .with("relative_deviation", rel)
            .fixes(fixes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borderline_high_and_low() {
        let ln10 = 10f64.ln();
        let k = 1e-9;
        assert!(detect(None).is_none());
        assert!(detect(Some(&InitLoss::softmax(ln10, 10))).is_none());
        assert!(detect(Some(&InitLoss::softmax(ln10 * (1.0 + BAD_INIT_LOSS_HIGH_REL) - k, 10))).is_none());
        let f = detect(Some(&InitLoss::softmax(ln10 * (1.0 + BAD_INIT_LOSS_HIGH_REL) + k, 10))).unwrap();
        assert_eq!((f.code, f.severity, f.step), (Code::BadInitLoss, Severity::Warning, Some(0)));
        assert!((f.number("expected").unwrap() - ln10).abs() < 1e-15);
        assert_eq!(f.number("classes"), Some(10.0));
        assert_eq!(f.fix[0].set["model.init"], "xavier");
        assert!(detect(Some(&InitLoss::softmax(ln10 * (1.0 - BAD_INIT_LOSS_LOW_REL) + k, 10))).is_none());
        let low = detect(Some(&InitLoss::softmax(ln10 * (1.0 - BAD_INIT_LOSS_LOW_REL) - k, 10))).unwrap();
        assert_eq!(low.severity, Severity::Info);
    }

    #[test]
    fn svm_and_degenerate_cases() {
        // SVM: C - 1 = 9 for 10 classes.
        assert!(detect(Some(&InitLoss::svm(9.5, 10))).is_none());
        assert_eq!(detect(Some(&InitLoss::svm(18.5, 10))).unwrap().number("expected"), Some(9.0));
        assert!(detect(Some(&InitLoss::softmax(f64::NAN, 10))).is_none());
        assert!(detect(Some(&InitLoss::softmax(5.0, 1))).is_none());
    }
}
