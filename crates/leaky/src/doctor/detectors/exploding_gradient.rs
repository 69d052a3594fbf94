//! `exploding_gradient`: the gradient grows through depth (`axis: "depth"`) or back through
//! time (`axis: "time"`, with Wh's spectral radius and the per-step growth). Same
//! measurements as [`super::vanishing_gradient`], read in the other direction.

use super::{
    depth_samples, layer_where, persistent, radius_phrase, sig3, time_samples, with_depth_evidence, with_time_evidence,
};
use crate::doctor::finding::{Code, Finding, Fix, Severity};
use crate::doctor::stats::{BpttStats, GlobalNormSample, LayerStats, RunInfo};

/// Depth: reported when the lowest layer's input-gradient RMS is at least this multiple of
/// the highest layer's: three orders of magnitude (the mirror image of
/// [`super::vanishing_gradient::DEPTH_VANISHING_RATIO`]; our cut-off). A step size that
/// suits the top layers is then a thousand times too large for the bottom ones.
pub const DEPTH_EXPLODING_RATIO: f64 = 1e3;

/// Depth: at least this multiple (six orders of magnitude) is an error.
pub const DEPTH_EXPLODING_ERROR_RATIO: f64 = 1e6;

/// Time: reported when `||dL/dh_0|| / ||dL/dh_{T-1}||` is at least this. Pascanu, Mikolov &
/// Bengio 2013 (Section 2.1): a spectral radius of Wh above 1 is necessary for the gradient to
/// explode, growing exponentially in T; three decades is our cut-off, as for depth.
pub const TIME_EXPLODING_RATIO: f64 = 1e3;

/// Time: at least this multiple (six decades) is an error; a few more such steps overflow f32.
pub const TIME_EXPLODING_ERROR_RATIO: f64 = 1e6;

/// The clipping fix.
fn fix_clip() -> Fix {
    Fix::text("clip the gradient norm").set("train.clip_grad_norm", 5.0)
}

fn is_clip(f: &Fix) -> bool {
    f.set.contains_key("train.clip_grad_norm")
}

/// Findings for a gradient that explodes through depth (at most one) and back through time
/// (one per recurrent layer). `norms` (the global norm before and after clipping, per
/// sampled step) tells whether clipping is already on: then the finding says so, with how
/// often it cut, and does not suggest it again. `small_steps`: every weight's median update
/// ratio is at most the healthy 1e-3, so the explosion is the initialisation's scale and a
/// lower learning rate, which would only slow the weights further, is not suggested.
pub fn detect(
    layers: &[LayerStats],
    bptt: &[BpttStats],
    norms: &[GlobalNormSample],
    small_steps: bool,
    run: &RunInfo,
) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(detect_depth(layers, small_steps, run));
    out.extend(detect_time(bptt));
    let clipped: Vec<&GlobalNormSample> = norms.iter().filter(|s| s.clipped()).collect();
    let Some(worst) = clipped.iter().max_by(|a, b| (a.before / a.after).total_cmp(&(b.before / b.after))) else {
        return out;
    };
    let said = format!(
        " Clipping is already on: it cut the gradient's norm on {} of {} sampled steps (at most from {} to {}); \
         it bounds the size of each update, not this growth.",
        clipped.len(),
        norms.len(),
        sig3(worst.before),
        sig3(worst.after)
    );
    out = out
        .into_iter()
        .map(|mut f| {
            f.why.push_str(&said);
            f.fix.retain(|x| !is_clip(x));
            f.with("clipped_samples", clipped.len())
                .with("clip_norm_before_max", worst.before)
                .with("clip_norm_after", worst.after)
        })
        .collect();
    out
}

/// The depth axis only (`small_steps` as in [`detect`]).
pub fn detect_depth(layers: &[LayerStats], small_steps: bool, run: &RunInfo) -> Option<Finding> {
    let samples = depth_samples(layers);
    let refs: Vec<_> = samples.iter().collect();
    let (s, flagged) = persistent(&refs, |s| s.ratio >= DEPTH_EXPLODING_RATIO)?;
    let severity = if persistent(&refs, |s| s.ratio >= DEPTH_EXPLODING_ERROR_RATIO).is_some() {
        Severity::Error
    } else {
        Severity::Warning
    };
    let (bottom, top) = (s.bottom(), s.top());
    let why = format!(
        "The backward pass multiplies the gradient at every layer by W^T and the activation's local gradient; \
         with weights this large it grew by ~{:.2} per layer, so layer {} receives {:.1e} times the gradient (RMS) \
         at layer {} and one learning rate cannot suit both.",
        s.per_layer_factor(),
        bottom.0,
        s.ratio,
        top.0
    );
    let f = Finding::new(Code::ExplodingGradient, severity, layer_where(bottom.0, &bottom.1), Some(s.step), why)
        .at_layer(bottom.0);
    let mut fixes = vec![
        Fix::text("use He init").set("model.init", "he"),
        Fix::text("add batch norm").set("model.batchnorm", true),
        fix_clip(),
    ];
    if !small_steps {
        fixes.push(super::lr_fix("lower the learning rate", run, 0.1));
    }
    Some(with_depth_evidence(f, s, samples.len(), flagged, DEPTH_EXPLODING_RATIO).fixes(fixes))
}

/// The time axis only: one finding per recurrent layer.
pub fn detect_time(bptt: &[BpttStats]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (layer, samples) in time_samples(bptt) {
        let ratio = |b: &BpttStats| b.ratio().expect("time samples have a ratio");
        // One sample at the error ratio is enough: a growth of 1e6 through time is a property
        // of Wh, not an odd minibatch, and it often kills the run before a second sample.
        let single = samples.iter().copied().find(|b| ratio(b) >= TIME_EXPLODING_ERROR_RATIO).map(|b| {
            let flagged = samples.iter().filter(|s| ratio(s) >= TIME_EXPLODING_RATIO).count();
            (b, flagged)
        });
        let Some((b, flagged)) = persistent(&samples, |b| ratio(b) >= TIME_EXPLODING_RATIO).or(single) else {
            continue;
        };
        let severity = if single.is_some() { Severity::Error } else { Severity::Warning };
        let g = b.growth_per_step().expect("time samples have a ratio");
        let t = b.norms_per_t.len();
        let why = format!(
            "Back through time every step multiplies the gradient by {} Wh^T{}; it grew by ~{g:.2} per step, so h_0 \
             receives {:.1e} times the gradient at h_{} and one update can throw the weights far away (Pascanu et al. 2013).",
            if b.kind == "lstm" { "the gates and" } else { "diag(1-h^2)" },
            radius_phrase(b),
            ratio(b),
            t - 1
        );
        let f = Finding::new(Code::ExplodingGradient, severity, layer_where(layer, &b.kind), Some(b.step), why)
            .at_layer(layer);
        out.push(with_time_evidence(f, b, samples.len(), flagged, TIME_EXPLODING_RATIO).fixes([
            fix_clip(),
            Fix::text("initialise Wh at spectral radius below 1").set("model.whh_radius", 0.9),
            Fix::text("use an LSTM").set("model.kind", "lstm"),
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::detectors::testutil::{bptt, grad_layer};

    fn net(step: usize, ratio: f64) -> Vec<LayerStats> {
        vec![grad_layer(0, "affine", step, ratio), grad_layer(1, "relu", step, 2.0), grad_layer(2, "affine", step, 1.0)]
    }

    #[test]
    fn depth_borderline() {
        let k = 1.0 + 1e-6;
        assert!(detect(&net(0, DEPTH_EXPLODING_RATIO / k), &[], &[], false, &RunInfo::default()).is_empty());
        let f = detect(&net(0, DEPTH_EXPLODING_RATIO * k), &[], &[], false, &RunInfo::default());
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].code, f[0].severity), (Code::ExplodingGradient, Severity::Warning));
        assert_eq!(f[0].where_, "layer 0 (affine)");
        assert_eq!(f[0].text("axis"), Some("depth"));
        assert_eq!(
            detect(&net(0, DEPTH_EXPLODING_ERROR_RATIO / k), &[], &[], false, &RunInfo::default())[0].severity,
            Severity::Warning
        );
        assert_eq!(
            detect(&net(0, DEPTH_EXPLODING_ERROR_RATIO * k), &[], &[], false, &RunInfo::default())[0].severity,
            Severity::Error
        );
        // A vanishing gradient is not exploding.
        assert!(detect(&net(0, 1e-9), &[], &[], false, &RunInfo::default()).is_empty());
    }

    #[test]
    fn time_borderline() {
        let g_at = |r: f64| r.powf(1.0 / 9.0); // 10 steps
        let k = 1.0 + 1e-6;
        assert!(detect(&[], &[bptt(0, 10, g_at(TIME_EXPLODING_RATIO / k), 1.3)], &[], false, &RunInfo::default())
            .is_empty());
        let f = detect(&[], &[bptt(2, 10, g_at(TIME_EXPLODING_RATIO * k), 1.3)], &[], false, &RunInfo::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].where_, "layer 1 (rnn)");
        assert_eq!(f[0].text("axis"), Some("time"));
        assert_eq!(f[0].number("whh_spectral_radius"), Some(1.3));
        assert!(f[0].number("growth_per_step").unwrap() > 1.0);
        assert_eq!(f[0].number("time_steps"), Some(10.0));
        assert!(is_clip(&f[0].fix[0]));
        assert_eq!(
            detect(&[], &[bptt(0, 10, g_at(TIME_EXPLODING_ERROR_RATIO / k), 1.3)], &[], false, &RunInfo::default())[0]
                .severity,
            Severity::Warning
        );
        assert_eq!(
            detect(&[], &[bptt(0, 10, g_at(TIME_EXPLODING_ERROR_RATIO * k), 1.3)], &[], false, &RunInfo::default())[0]
                .severity,
            Severity::Error
        );
    }

    #[test]
    fn one_sample_at_the_error_ratio_is_enough() {
        let g_at = |r: f64| r.powf(1.0 / 9.0);
        let k = 1.0 + 1e-6;
        // Step 0 explodes, two later samples do not (the run saturated or diverged after).
        let calm = |step| bptt(step, 10, 1.0, 3.0);
        let f = detect(
            &[],
            &[bptt(0, 10, g_at(TIME_EXPLODING_ERROR_RATIO * k), 3.0), calm(10), calm(20)],
            &[],
            false,
            &RunInfo::default(),
        );
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].severity, f[0].step), (Severity::Error, Some(0)));
        // Just below the error ratio, one sample out of three is not persistent: nothing.
        assert!(detect(
            &[],
            &[bptt(0, 10, g_at(TIME_EXPLODING_ERROR_RATIO / k), 3.0), calm(10), calm(20)],
            &[],
            false,
            &RunInfo::default()
        )
        .is_empty());
    }
}

#[cfg(test)]
mod clip_tests {
    use super::*;
    use crate::doctor::detectors::testutil::bptt;

    fn norm(step: usize, before: f64, after: f64) -> GlobalNormSample {
        GlobalNormSample { step, before, after }
    }

    /// With clipping on (it cut the norm on a sampled step), the finding says so, carries how
    /// often and by how much, and stops suggesting clipping; without a cut it is unchanged.
    #[test]
    fn clipping_already_on_is_said_and_not_suggested_again() {
        let exploding = [bptt(0, 10, 1e7f64.powf(1.0 / 9.0), 3.0)];
        let plain = detect(&[], &exploding, &[norm(0, 0.5, 0.5), norm(10, 0.9, 0.9)], false, &RunInfo::default());
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].fix[0], fix_clip());
        assert_eq!(plain[0].number("clipped_samples"), None);
        let clipped = detect(
            &[],
            &exploding,
            &[norm(0, 40.0, 1.0), norm(10, 0.9, 0.9), norm(20, 3.0, 1.0)],
            false,
            &RunInfo::default(),
        );
        assert_eq!(clipped.len(), 1);
        assert!(!clipped[0].fix.iter().any(is_clip), "{:?}", clipped[0].fix);
        assert!(!clipped[0].fix.is_empty());
        assert!(clipped[0].why.contains("on 2 of 3 sampled steps"), "{}", clipped[0].why);
        assert!(clipped[0].why.contains("from 40.0 to 1.00"), "{}", clipped[0].why);
        assert_eq!(clipped[0].number("clipped_samples"), Some(2.0));
        assert_eq!(clipped[0].number("clip_norm_before_max"), Some(40.0));
        // A cut within rounding is not clipping.
        assert!(!norm(0, 1.0, 1.0 - 1e-9).clipped());
        assert!(norm(0, 1.0, 0.99).clipped());
        assert!(!norm(0, f64::NAN, 1.0).clipped());
    }
}
