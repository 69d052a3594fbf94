//! `unnormalized_input`: input features far from zero-mean unit-scale ([`InputStats`]).
//!
//! Source: LeCun, Bottou, Orr & Müller, "Efficient BackProp" (1998), Section 4.3 *Normalizing
//! the inputs*: inputs should average to ~0 over the training set and have similar, ~unit
//! variances; CS231n "Neural Networks Part 2", *Data Preprocessing*.

use crate::doctor::finding::{Code, Finding, Fix, Severity};
use crate::doctor::stats::InputStats;

/// The mean over features of |feature mean| above this is an offset problem: the typical
/// feature sits more than one unit away from 0 (digits pixels 0..16 average ~5; pixels
/// scaled to [0, 1] stay below). LeCun et al. 1998: with all-positive inputs every weight of
/// a unit gets an update of the same sign, so the weights can only zig-zag towards the optimum.
pub const INPUT_MEAN_ABS_MAX: f64 = 1.0;

/// The mean std of the non-constant features more than this many decades away from 1
/// (outside [0.1, 10]) is a scale problem: large inputs push sigmoid/tanh units into
/// saturation from step 0 and make the first layer's gradient x^T dout large; tiny ones
/// make it vanish. One decade is our cut-off.
pub const INPUT_STD_DECADES: f64 = 1.0;

/// The finding for badly scaled or offset inputs, if they are.
pub fn detect(input: Option<&InputStats>) -> Option<Finding> {
    let s = input?;
    if s.features == 0 || s.examples == 0 {
        return None;
    }
    let offset = s.feature_mean_abs_mean > INPUT_MEAN_ABS_MAX;
    let live = s.features > s.constant_features;
    let std_decades = if live { s.feature_std_mean.log10() } else { 0.0 };
    let scale = live && std_decades.abs() > INPUT_STD_DECADES;
    if !offset && !scale {
        return None;
    }
    let mut problems = Vec::new();
    if offset {
        problems.push(format!("the features average {} away from 0", super::sig3(s.feature_mean_abs_mean)));
    }
    if scale {
        problems.push(format!("their typical std is {} instead of ~1", super::sig3(s.feature_std_mean)));
    }
    let why = format!(
        "{}. The first layer's weight gradient is dW = x^T dout, so offset inputs give all of a unit's weights \
         updates of the same sign (zig-zagging, LeCun et al. 1998) and large inputs saturate sigmoid/tanh units \
         from the first step.",
        capitalise(&problems.join(" and "))
    );
    Some(
        Finding::new(Code::UnnormalizedInput, Severity::Warning, "input", None, why)
            .with("feature_mean_abs_mean", s.feature_mean_abs_mean)
            .with("feature_mean_abs_max", s.feature_mean_abs_max)
            .with("feature_std_mean", s.feature_std_mean)
            .with("feature_std_min", s.feature_std_min)
            .with("feature_std_max", s.feature_std_max)
            .with("std_decades_from_1", std_decades)
            .with("constant_features", s.constant_features)
            .with("features", s.features)
            .with("examples", s.examples)
            .with("offset", offset)
            .with("scale", scale)
            .fixes([Fix::text("standardise inputs").set("data.normalize", true)]),
    )
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(mean_abs: f64, std: f64) -> InputStats {
        InputStats {
            features: 64,
            examples: 1000,
            feature_mean_abs_max: mean_abs * 2.0,
            feature_mean_abs_mean: mean_abs,
            feature_std_min: std / 2.0,
            feature_std_max: std * 2.0,
            feature_std_mean: std,
            constant_features: 3,
        }
    }

    #[test]
    fn borderline_offset() {
        let e = 1e-9;
        assert!(detect(None).is_none());
        assert!(detect(Some(&stats(0.0, 1.0))).is_none());
        assert!(detect(Some(&stats(INPUT_MEAN_ABS_MAX, 1.0))).is_none());
        let f = detect(Some(&stats(INPUT_MEAN_ABS_MAX + e, 1.0))).unwrap();
        assert_eq!((f.code, f.severity, f.step), (Code::UnnormalizedInput, Severity::Warning, None));
        assert_eq!(f.where_, "input");
        assert_eq!(f.evidence["offset"], true);
        assert_eq!(f.evidence["scale"], false);
        assert_eq!(f.fix, [Fix::text("standardise inputs").set("data.normalize", true)]);
        assert!(f.why.starts_with("The features average"));
    }

    #[test]
    fn borderline_scale_both_sides() {
        let k = 1.0 + 1e-9;
        let hi = 10f64.powf(INPUT_STD_DECADES);
        assert!(detect(Some(&stats(0.0, hi / k))).is_none());
        assert_eq!(detect(Some(&stats(0.0, hi * k))).unwrap().evidence["scale"], true);
        assert!(detect(Some(&stats(0.0, k / hi))).is_none());
        assert!(detect(Some(&stats(0.0, 1.0 / hi / k))).is_some());
        // Raw digits-like pixels: both problems.
        let f = detect(Some(&stats(4.9, 30.0))).unwrap();
        assert!(f.why.contains("average") && f.why.contains("std"));
        // All features constant: the std says nothing.
        let mut c = stats(0.0, 0.0);
        c.constant_features = 64;
        assert!(detect(Some(&c)).is_none());
    }
}
