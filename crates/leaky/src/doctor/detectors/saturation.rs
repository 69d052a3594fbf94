//! `saturation`: sigmoid/tanh units sit where their local gradient is ~0.
//!
//! Reads [`LayerStats::saturated_fraction`] of sigmoid and tanh layers (the saturated region
//! is defined in [`crate::doctor::stats`]: sigmoid z < 0.01 or z > 0.99, tanh |t| > 0.99).

use super::{group_by, layer_where, persistent};
use crate::doctor::finding::{Code, Finding, Severity};
use crate::doctor::stats::{max_local_grad, LayerStats};

/// A layer is reported when at least this share of its outputs is saturated (in at least
/// half its samples). Half the units passing under 4% (sigmoid) or 2% (tanh) of the best-case
/// gradient: our cut-off for "most of the layer"; Glorot & Bengio 2010 (Fig. 2) show the top
/// sigmoid layer of a standard-initialised net driven to 0 for nearly all units.
pub const SATURATED_FRACTION_WARN: f64 = 0.5;

/// At least this share saturated is an error: nine units in ten pass almost no gradient, so
/// the layers below hardly train (the too-large-init case of Karpathy's "Yes you should
/// understand backprop", where z is "almost binary").
pub const SATURATED_FRACTION_ERROR: f64 = 0.9;

/// Findings for every sigmoid/tanh layer that is persistently saturated.
pub fn detect(layers: &[LayerStats]) -> Vec<Finding> {
    let relevant =
        layers.iter().filter(|l| matches!(l.kind.as_str(), "sigmoid" | "tanh") && l.saturated_fraction.is_some());
    let mut out = Vec::new();
    for (index, samples) in group_by(relevant, |l| l.index, |l| l.step) {
        let frac = |l: &LayerStats| l.saturated_fraction.unwrap_or(0.0);
        let Some((first, flagged)) = persistent(&samples, |l| frac(l) >= SATURATED_FRACTION_WARN) else {
            continue;
        };
        let severity = if persistent(&samples, |l| frac(l) >= SATURATED_FRACTION_ERROR).is_some() {
            Severity::Error
        } else {
            Severity::Warning
        };
        let kind = first.kind.as_str();
        let max = max_local_grad(kind).expect("sigmoid and tanh have a maximum local gradient");
        let (local, region) =
            if kind == "sigmoid" { ("z(1-z)", "z < 0.01 or z > 0.99") } else { ("1-t^2", "|t| > 0.99") };
        let f = frac(first);
        let why = format!(
            "{kind}'s local gradient {local} is at most {max} and nearly 0 in its flat tails ({region}); \
             {:.0}% of this layer's outputs sit there, so almost no gradient passes through it to the layers below.",
            100.0 * f
        );
        let mut finding = Finding::new(Code::Saturation, severity, layer_where(index, kind), Some(first.step), why)
            .with("activation", kind)
            .with("saturated_fraction", f)
            .with("max_local_grad", max)
            .with("act_mean", first.act_mean)
            .with("act_std", first.act_std)
            .with("samples", samples.len())
            .with("flagged_samples", flagged)
            .with("threshold", SATURATED_FRACTION_WARN);
        if let Some(g) = first.mean_local_grad {
            finding = finding.with("mean_local_grad", g).with("local_grad_ratio", g / max);
        }
        out.push(finding.fixes([
            "use Xavier init (model.init = \"xavier\")",
            "standardise inputs (data.normalize = true)",
            "use relu (model.activation = \"relu\")",
            "add batch norm (model.batchnorm = true)",
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::detectors::testutil::layer;

    fn sat(index: usize, kind: &str, step: usize, f: f64) -> LayerStats {
        let mut l = layer(index, kind, step);
        l.saturated_fraction = Some(f);
        l.mean_local_grad = Some(if kind == "sigmoid" { 0.25 * (1.0 - f) } else { 1.0 - f });
        l
    }

    #[test]
    fn borderline_warning() {
        let eps = 1e-9;
        assert!(detect(&[sat(1, "sigmoid", 0, SATURATED_FRACTION_WARN - eps)]).is_empty());
        let f = detect(&[sat(1, "sigmoid", 0, SATURATED_FRACTION_WARN + eps)]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, Code::Saturation);
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].where_, "layer 1 (sigmoid)");
        assert_eq!(f[0].text("activation"), Some("sigmoid"));
        assert_eq!(f[0].number("max_local_grad"), Some(0.25));
        assert!(f[0].number("mean_local_grad").unwrap() < 0.25);
        assert!(f[0].fix[0].contains("xavier"));
    }

    #[test]
    fn borderline_error_tanh() {
        let eps = 1e-9;
        let w = detect(&[sat(3, "tanh", 5, SATURATED_FRACTION_ERROR - eps)]);
        assert_eq!(w[0].severity, Severity::Warning);
        let e = detect(&[sat(3, "tanh", 5, SATURATED_FRACTION_ERROR + eps)]);
        assert_eq!(e[0].severity, Severity::Error);
        assert_eq!(e[0].where_, "layer 3 (tanh)");
        assert_eq!(e[0].step, Some(5));
        assert_eq!(e[0].number("max_local_grad"), Some(1.0));
    }

    #[test]
    fn must_persist_and_ignores_other_kinds() {
        // Saturated at 1 of 3 samples: not reported; at 2 of 3: reported from the first.
        let once = [sat(1, "sigmoid", 0, 0.1), sat(1, "sigmoid", 10, 0.95), sat(1, "sigmoid", 20, 0.1)];
        assert!(detect(&once).is_empty());
        let twice = [sat(1, "sigmoid", 20, 0.95), sat(1, "sigmoid", 0, 0.1), sat(1, "sigmoid", 10, 0.95)];
        let f = detect(&twice);
        assert_eq!(f[0].step, Some(10));
        assert_eq!(f[0].number("flagged_samples"), Some(2.0));
        let mut relu = layer(1, "relu", 0);
        relu.saturated_fraction = Some(1.0);
        assert!(detect(&[relu]).is_empty());
    }
}
