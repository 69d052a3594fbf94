//! `non_finite`: the first op, layer and pass (forward/backward) at which NaN or Inf
//! appeared ([`NonFinite`], kept first-only by
//! [`crate::doctor::stats::RecordedStats::record_non_finite`]). Always an error.

use super::layer_where;
use crate::doctor::finding::{Code, Finding, Fix, Severity};
use crate::doctor::stats::{GlobalNormSample, NonFinite, Pass, RunInfo};

/// The finding for the first non-finite value, if there was one. `norms` (the global
/// gradient norm before and after clipping, per sampled step) tells whether clipping is on:
/// then the finding says clipping did not prevent it and does not suggest clipping.
pub fn detect(first: Option<&NonFinite>, norms: &[GlobalNormSample], run: &RunInfo) -> Option<Finding> {
    let nf = first?;
    let where_ = match nf.layer_index {
        Some(i) => layer_where(i, &nf.layer_kind),
        None => nf.layer_kind.clone(),
    };
    let what = match (nf.nan_count > 0, nf.inf_count > 0) {
        (true, true) => "NaN and Inf",
        (true, false) => "NaN",
        _ => "Inf",
    };
    let why = match nf.pass {
        Pass::Forward => format!(
            "{} produced {what} in the forward pass at step {}; the loss and every gradient computed from it are \
             then non-finite too, and the update writes NaN into every weight it touches.",
            nf.op, nf.step
        ),
        Pass::Backward => format!(
            "The gradient became {what} at {} in the backward pass at step {}: products of large weights and \
             gradients overflowed (an exploding gradient) or an inf-inf / 0*inf arose, and the update writes NaN \
             into every weight it reaches.",
            nf.op, nf.step
        ),
    };
    let clipped = norms.iter().filter(|s| s.clipped()).count();
    let mut why = why;
    let mut fixes = vec![
        super::lr_fix("lower the learning rate", run, 0.1),
        Fix::text("clip the gradient norm").set("train.clip_grad_norm", 5.0),
        Fix::text("standardise inputs").set("data.normalize", true),
    ];
    if clipped > 0 || run.clipping() {
        why.push_str(&format!(
            " Gradient clipping was on (it cut the norm on {clipped} of {} sampled steps) and did not prevent it.",
            norms.len()
        ));
        fixes.retain(|f| !f.set.contains_key("train.clip_grad_norm"));
    }
    let mut f = Finding::new(Code::NonFinite, Severity::Error, where_, Some(nf.step), why);
    f.layer = nf.layer_index;
    Some(
        f.with("pass", nf.pass.as_str())
            .with("op", nf.op.as_str())
            .with("layer_kind", nf.layer_kind.as_str())
            .with("layer_index", nf.layer_index.map(|i| i as f64).unwrap_or(f64::NAN))
            .with("nan_count", nf.nan_count)
            .with("inf_count", nf.inf_count)
            .fixes(fixes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_first_non_finite() {
        assert!(detect(None, &[], &RunInfo::default()).is_none());
        let nf = NonFinite {
            step: 12,
            pass: Pass::Backward,
            layer_index: Some(2),
            layer_kind: "affine".into(),
            op: "matmul".into(),
            nan_count: 0,
            inf_count: 3,
        };
        let f = detect(Some(&nf), &[], &RunInfo::default()).unwrap();
        assert_eq!((f.code, f.severity, f.step), (Code::NonFinite, Severity::Error, Some(12)));
        assert_eq!(f.where_, "layer 2 (affine)");
        assert_eq!(f.text("pass"), Some("backward"));
        assert_eq!(f.text("op"), Some("matmul"));
        assert_eq!(f.number("layer_index"), Some(2.0));
        assert_eq!(f.layer, Some(2));
        assert!(f.why.contains("Inf") && f.why.contains("backward"));
        let loss = NonFinite {
            pass: Pass::Forward,
            layer_index: None,
            layer_kind: "loss".into(),
            op: "softmax".into(),
            nan_count: 1,
            ..nf
        };
        let f = detect(Some(&loss), &[], &RunInfo::default()).unwrap();
        assert_eq!(f.where_, "loss");
        assert_eq!(f.evidence["layer_index"], serde_json::Value::Null);
        assert!(f.why.contains("NaN") && f.why.contains("forward"));
    }

    /// With clipping on, the finding says it did not prevent the NaN and drops the clip fix.
    #[test]
    fn clipping_on_is_said() {
        let nf = NonFinite {
            step: 3,
            pass: Pass::Forward,
            layer_index: Some(0),
            layer_kind: "affine".into(),
            op: "affine 4->2".into(),
            nan_count: 1,
            inf_count: 0,
        };
        let plain = detect(Some(&nf), &[], &RunInfo::default()).unwrap();
        assert!(plain.fix.iter().any(|f| f.set.contains_key("train.clip_grad_norm")));
        let cut = GlobalNormSample { step: 0, before: 50.0, after: 1.0 };
        let f = detect(Some(&nf), &[cut], &RunInfo::default()).unwrap();
        assert!(!f.fix.iter().any(|f| f.set.contains_key("train.clip_grad_norm")), "{:?}", f.fix);
        assert!(f.why.contains("on 1 of 1 sampled steps) and did not prevent it"), "{}", f.why);
    }
}
