//! `update_ratio`: the update-to-weight ratio `|update| / |W|` of a weight matrix is far from
//! ~1e-3 ([`ParamStats::update_ratio`]: the measured update when the recorder has it, else
//! `lr * |dW|`).
//!
//! Each weight is judged on the **median** of its ratio over the sampled steps (so a ratio
//! beyond a threshold at least half the time), on a log scale: `decades = log10(ratio /
//! 1e-3)`. Biases and normalisation scales are not judged (they start at 0 or 1 and have no
//! scale of their own).

use super::lr_fix;
use super::{group_by, layer_where};
use crate::doctor::finding::{Code, Finding, Fix, Severity};
use crate::doctor::stats::{GlobalNormSample, ParamStats, RunInfo};
use std::collections::BTreeMap;

/// The healthy update-to-weight ratio. CS231n, "Neural Networks Part 3: Learning and
/// Evaluation", *Ratio of weights:updates*: "a rough heuristic is that this ratio should be
/// somewhere around 1e-3".
pub const UPDATE_RATIO_TARGET: f64 = 1e-3;

/// More than this many decades **above** the target (ratio > ~3.2e-2) is a warning: each
/// step moves a weight by several percent of itself (our cut-off around the CS231n heuristic).
pub const UPDATE_RATIO_HIGH_DECADES: f64 = 1.5;

/// More than this many decades above the target (ratio > ~0.32) is an error: a third of the
/// weight per step overshoots, and pushes ReLU units negative on every example (dead units,
/// Karpathy's "Yes you should understand backprop").
pub const UPDATE_RATIO_ERROR_DECADES: f64 = 2.5;

/// More than this many decades **below** the target (ratio < 1e-5) is a warning: the weights
/// barely move, training stalls. Wider than the upper band because a slow weight is the
/// milder failure, and because plain SGD's ratio legitimately falls as the gradient shrinks
/// late in a converging run.
pub const UPDATE_RATIO_LOW_DECADES: f64 = 2.0;

/// A too-large ratio gets a learning rate that brings it to this: one decade above the
/// target, half a decade inside the band of [`UPDATE_RATIO_HIGH_DECADES`] (our choice,
/// measured on examples/sick/huge-lr-updates.toml: cutting its rate to reach 1e-3 made the
/// validation loss six times worse in the same budget).
pub const UPDATE_RATIO_LOWER_TO: f64 = 1e-2;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The samples [`detect`] judges, per weight `(layer, name)` in step order: weights with a
/// non-zero norm and a finite ratio.
fn weight_samples(params: &[ParamStats]) -> BTreeMap<(usize, String), Vec<&ParamStats>> {
    let relevant = params.iter().filter(|p| p.is_weight && p.weight_norm > 0.0 && p.update_ratio().is_finite());
    group_by(relevant, |p| (p.layer, p.name.clone()), |p| p.step)
}

/// The median update ratio of weight `name` of layer `layer` over the sampled steps: the
/// number [`detect`] judges (and reports as `ratio`), for tables that show it for runs with
/// and without a finding. `None` when that weight was never sampled.
pub fn median_ratio(params: &[ParamStats], layer: usize, name: &str) -> Option<f64> {
    let samples = weight_samples(params).remove(&(layer, name.to_string()))?;
    Some(median(samples.iter().map(|p| p.update_ratio()).collect()))
}

/// What overshooting steps do to this run's units, for the "too large" explanation: a
/// recurrent model's units are its cell's tanh (and an LSTM's gates), whatever
/// `model.activation` says (that key is for feed-forward layers).
fn overshoot_consequence(run: &RunInfo) -> &'static str {
    let setting = |k: &str| run.settings.get(k).and_then(|v| v.as_str());
    if matches!(setting("model.kind"), Some("rnn" | "lstm")) {
        return ", and can drive the recurrent cell's tanh units into their flat tails, where almost no gradient \
                passes back through time.";
    }
    match setting("model.activation") {
        Some(a) if a.contains("relu") => {
            ", and can push ReLU units negative for every example, where their gradient is 0 forever."
        }
        Some("sigmoid" | "tanh") => {
            ", and can drive sigmoid/tanh units into their flat tails, where almost no gradient passes."
        }
        _ => ": the loss jumps around its minimum instead of settling into it.",
    }
}

/// The largest median update-to-weight ratio over the weights sampled in `params`; `None`
/// when no weight was sampled.
pub fn largest_median_ratio(params: &[ParamStats]) -> Option<f64> {
    weight_samples(params)
        .into_values()
        .map(|samples| median(samples.iter().map(|p| p.update_ratio()).collect()))
        .filter(|r| r.is_finite())
        .reduce(f64::max)
}

/// Findings, one per weight whose median ratio is out of the band.
///
/// `norms` (the global gradient norm before and after clipping, per sampled step) tells
/// whether clipping is on: a too-small ratio under clipping that cut on most sampled steps
/// says so (the clip shrinks every parameter's step, and the exploding part of the gradient
/// takes the whole budget), and a too-large one does not suggest clipping again.
pub fn detect(params: &[ParamStats], norms: &[GlobalNormSample], run: &RunInfo) -> Vec<Finding> {
    let clipped: Vec<&GlobalNormSample> = norms.iter().filter(|s| s.clipped()).collect();
    let clipping_on = !clipped.is_empty();
    let mostly_clipped = 2 * clipped.len() > norms.len();
    let max_cut = clipped.iter().map(|s| s.before / s.after).fold(1.0, f64::max);
    let mut out = Vec::new();
    for ((layer, name), samples) in weight_samples(params) {
        let decades = |p: &ParamStats| (p.update_ratio() / UPDATE_RATIO_TARGET).log10();
        let ratio = median(samples.iter().map(|p| p.update_ratio()).collect());
        // A zero update gives -inf decades: below any band.
        let d = (ratio / UPDATE_RATIO_TARGET).log10();
        let high = d > UPDATE_RATIO_HIGH_DECADES;
        let low = d < -UPDATE_RATIO_LOW_DECADES;
        if !high && !low {
            continue;
        }
        let first = samples
            .iter()
            .find(
                |p| if high { decades(p) > UPDATE_RATIO_HIGH_DECADES } else { decades(p) < -UPDATE_RATIO_LOW_DECADES },
            )
            .unwrap_or(&samples[0]);
        let severity = if d > UPDATE_RATIO_ERROR_DECADES { Severity::Error } else { Severity::Warning };
        let lr = first.lr;
        // The factor on the learning rate that would bring the median ratio to the target
        // (lr scales the update): 1e-3 from below; from above, UPDATE_RATIO_LOWER_TO, the
        // smallest cut that lands well inside the healthy band (a run that learns with large
        // steps loses the most from a cut to 1e-3 within the same budget). The suggestion stays
        // within the bounds of `suggest_lr`.
        let aim = if high { UPDATE_RATIO_LOWER_TO } else { UPDATE_RATIO_TARGET };
        let factor = if ratio > 0.0 { aim / ratio } else { 10.0 };
        let mut run = run.clone();
        if run.lr().is_none() && lr.is_finite() && lr > 0.0 {
            run.settings.insert("train.lr".into(), lr.into());
        }
        let lower = || lr_fix("lower the learning rate", &run, factor);
        let raise = || lr_fix("raise the learning rate", &run, factor);
        let clip = || Fix::text("clip the gradient norm").set("train.clip_grad_norm", 5.0);
        let where_ = format!("{} {}", layer_where(layer, &first.layer_kind), name);
        let (why, fixes) = if high {
            (
                format!(
                    "Each step moves {name} by {ratio:.1e} of its own size (about 1e-3 is healthy): steps this large \
                     overshoot{}",
                    overshoot_consequence(&run)
                ),
                if clipping_on || run.clipping() { vec![lower()] } else { vec![lower(), clip()] },
            )
        } else if first.grad_norm == 0.0 {
            // No learning rate moves a weight whose gradient is exactly 0: the cause is upstream.
            (
                format!(
                    "{name} does not move: its gradient is exactly 0, so no learning rate can change it. Something \
                     upstream blocks the gradient: a clip whose gradient is 0 outside its range, or units that never fire."
                ),
                vec![Fix::text("find what blocks the gradient (see the zero_gradient and dead_relu findings)")],
            )
        } else if mostly_clipped {
            // The global clip scales every parameter's gradient by the same factor: a part of
            // the network whose gradient explodes leaves the others almost nothing.
            (
                format!(
                    "Each step moves {name} by only {ratio:.1e} of its own size (about 1e-3 is healthy): gradient \
                     clipping cut the global norm on {} of {} sampled steps (by up to {}x), and the cut shrinks {name}'s \
                     step with every other parameter's, so the part of the gradient that is huge takes the whole budget.",
                    clipped.len(),
                    norms.len(),
                    super::sig3(max_cut)
                ),
                // No learning-rate raise: with the clip cutting every step, a larger rate
                // would scale the part of the gradient that explodes as well.
                vec![Fix::text("fix what makes the gradient huge (see the exploding_gradient finding)")],
            )
        } else {
            (
                format!(
                    "Each step moves {name} by only {ratio:.1e} of its own size (about 1e-3 is healthy): the gradient \
                     reaches the weights but the steps are too small to change them, so training stalls."
                ),
                vec![raise(), Fix::text("use Adam").set("train.optimizer", "adam")],
            )
        };
        let starved_by_clip = !high && first.grad_norm != 0.0 && mostly_clipped;
        let finding = Finding::new(Code::UpdateRatio, severity, where_, Some(first.step), why)
            .at_layer(layer)
            .with("ratio", ratio)
            .with("decades_from_target", d)
            .with("target", UPDATE_RATIO_TARGET)
            .with("direction", if high { "too_large" } else { "too_small" })
            .with("lr", lr)
            .with("weight_norm", first.weight_norm)
            .with("grad_norm", first.grad_norm)
            .with("update_measured", first.update_norm.is_some())
            .with("samples", samples.len())
            .fixes(fixes);
        // Only a ratio made small by the clip says so (`clipped`: the link to the explosion).
        out.push(if starved_by_clip { finding.with("clipped", true) } else { finding });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overshoot_explanation_names_the_units_the_model_has() {
        let with = |kv: &[(&str, &str)]| {
            let mut r = RunInfo::default();
            for (k, v) in kv {
                r.settings.insert(k.to_string(), (*v).into());
            }
            overshoot_consequence(&r)
        };
        assert!(with(&[("model.kind", "mlp"), ("model.activation", "relu")]).contains("ReLU"));
        assert!(with(&[("model.kind", "mlp"), ("model.activation", "leaky_relu")]).contains("ReLU"));
        assert!(with(&[("model.kind", "mlp"), ("model.activation", "sigmoid")]).contains("flat tails"));
        // An RNN's default `model.activation` (relu) is not what its cell uses.
        assert!(with(&[("model.kind", "rnn"), ("model.activation", "relu")]).contains("recurrent cell's tanh"));
        assert!(with(&[]).contains("jumps around"));
    }

    /// A weight whose ratio is `r` (lr 1e-2, |W| = 10, |dW| = r * 1000).
    fn w(step: usize, r: f64) -> ParamStats {
        ParamStats {
            layer: 0,
            layer_kind: "affine".into(),
            name: "W".into(),
            step,
            is_weight: true,
            weight_norm: 10.0,
            grad_norm: r * 1000.0,
            lr: 1e-2,
            update_norm: None,
        }
    }

    fn at(decades: f64) -> f64 {
        UPDATE_RATIO_TARGET * 10f64.powf(decades)
    }

    #[test]
    fn an_exactly_zero_gradient_does_not_ask_for_a_larger_learning_rate() {
        let f = detect(&[w(0, 0.0)], &[], &RunInfo::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].text("direction"), Some("too_small"));
        assert!(f[0].why.contains("exactly 0"), "{}", f[0].why);
        assert!(!f[0].fix[0].set.contains_key("train.lr"), "{:?}", f[0].fix);
    }

    #[test]
    fn borderline_bands() {
        let e = 1e-6;
        assert!(detect(&[w(0, 1e-3)], &[], &RunInfo::default()).is_empty());
        assert!(detect(&[w(0, at(UPDATE_RATIO_HIGH_DECADES - e))], &[], &RunInfo::default()).is_empty());
        let f = detect(&[w(3, at(UPDATE_RATIO_HIGH_DECADES + e))], &[], &RunInfo::default());
        assert_eq!((f[0].code, f[0].severity, f[0].step), (Code::UpdateRatio, Severity::Warning, Some(3)));
        assert_eq!(f[0].where_, "layer 0 (affine) W");
        assert_eq!(f[0].text("direction"), Some("too_large"));
        assert!(f[0].fix[0].text.starts_with("lower the learning rate"));
        assert_eq!(f[0].layer, Some(0));
        assert_eq!(
            detect(&[w(0, at(UPDATE_RATIO_ERROR_DECADES - e))], &[], &RunInfo::default())[0].severity,
            Severity::Warning
        );
        assert_eq!(
            detect(&[w(0, at(UPDATE_RATIO_ERROR_DECADES + e))], &[], &RunInfo::default())[0].severity,
            Severity::Error
        );
        assert!(detect(&[w(0, at(-UPDATE_RATIO_LOW_DECADES + e))], &[], &RunInfo::default()).is_empty());
        let s = detect(&[w(0, at(-UPDATE_RATIO_LOW_DECADES - e))], &[], &RunInfo::default());
        assert_eq!((s[0].severity, s[0].text("direction")), (Severity::Warning, Some("too_small")));
        // lr 1e-2 at ratio 1e-5.00...: the suggestion that brings it to 1e-3 is 1 (100x), but
        // a suggestion stays within 10x of the current rate.
        assert_eq!(s[0].fix[0].text, "raise the learning rate");
        assert_eq!(s[0].fix[0].set["train.lr"], 0.1);
        // A weight far too fast at lr 1e-2: lowered towards a ratio of 1e-2, but at most 100x.
        let f = detect(&[w(0, 100.0)], &[], &RunInfo::default());
        assert_eq!(f[0].fix[0].set["train.lr"], 1e-4);
    }

    #[test]
    fn median_measured_update_and_biases() {
        // Two of three samples far too large: the median is.
        assert_eq!(detect(&[w(0, 1e-3), w(1, 0.1), w(2, 0.1)], &[], &RunInfo::default()).len(), 1);
        assert!(detect(&[w(0, 1e-3), w(1, 1e-3), w(2, 0.1)], &[], &RunInfo::default()).is_empty());
        // A measured update overrides lr*|dW| (Adam: small gradient, normal step).
        let mut adam = w(0, 1e-8);
        adam.update_norm = Some(1e-2);
        assert!(detect(&[adam.clone()], &[], &RunInfo::default()).is_empty());
        assert_eq!(adam.update_ratio(), 1e-3);
        let mut b = w(0, 1.0);
        b.is_weight = false;
        let mut zero = w(0, 1.0);
        zero.weight_norm = 0.0;
        assert!(detect(&[b, zero], &[], &RunInfo::default()).is_empty());
    }

    /// Under clipping that cut on most sampled steps, a too-small ratio names the clip as the
    /// cause and points at the exploding gradient first; a too-large one stops suggesting
    /// clipping once it is on.
    #[test]
    fn clipping_changes_the_story() {
        let cut = |step| GlobalNormSample { step, before: 400.0, after: 1.0 };
        let calm = |step| GlobalNormSample { step, before: 0.5, after: 0.5 };
        let slow = [w(0, 1e-7), w(1, 1e-7), w(2, 1e-7)];
        let plain = detect(&slow, &[calm(0), calm(1), cut(2)], &RunInfo::default());
        assert!(plain[0].fix[0].text.starts_with("raise the learning rate"), "{:?}", plain[0].fix);
        let clipped = detect(&slow, &[cut(0), cut(1), calm(2)], &RunInfo::default());
        assert!(clipped[0].fix[0].text.contains("exploding_gradient"), "{:?}", clipped[0].fix);
        assert!(clipped[0].why.contains("on 2 of 3 sampled steps (by up to 400x)"), "{}", clipped[0].why);
        let fast = [w(0, 0.1), w(1, 0.1)];
        let clips = |f: &Finding| f.fix.iter().any(|x| x.set.contains_key("train.clip_grad_norm"));
        assert!(clips(&detect(&fast, &[], &RunInfo::default())[0]));
        assert!(!clips(&detect(&fast, &[cut(0)], &RunInfo::default())[0]));
    }
}
