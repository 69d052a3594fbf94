//! One detector per finding code, each a **pure function** of recorded statistics
//! ([`crate::doctor::stats`]) returning findings. No detector trains, samples, reads a
//! clock or keeps state, so each is unit-tested on hand-made statistics (including values
//! just on each side of every threshold) and behaves the same on statistics loaded from a
//! file.
//!
//! Every threshold is a named `pub const` in its detector's file, with a comment that says
//! where the number comes from (a paper or course note, or, where none fixes it, the
//! reasoning behind our choice).
//!
//! Conventions shared by the detectors:
//! * A condition measured at sampled steps must **persist**: it is reported when it holds in
//!   at least [`PERSISTENCE_FRACTION`] of a layer's samples (one odd minibatch is not a
//!   pathology). The finding's `step` is the first sampled step at which it held, and the
//!   evidence numbers are those of that step, with `samples` and `flagged_samples` counts.
//! * `where` names a layer as `"layer {index} ({kind})"` ([`layer_where`]) and the finding's
//!   `layer` is that index.
//! * Fixes are structured ([`Fix`]): the words and the experiment keys that apply them. A
//!   learning rate is always suggested relative to the current one and within
//!   [`LR_MIN_FACTOR`, `LR_MAX_FACTOR`] of it ([`suggest_lr`]); when the current one is not
//!   known, the fix names the key without a value.
//! * A threshold names the first unhealthy value: a value exactly at it is reported, unless
//!   the constant's doc says "above" (then only larger values are).

pub mod bad_init_loss;
pub mod batchnorm_stats;
pub mod dead_relu;
pub mod diverging_loss;
pub mod exploding_gradient;
pub mod non_finite;
pub mod not_learning;
pub mod saturation;
pub mod unnormalized_input;
pub mod update_ratio;
pub mod vanishing_gradient;
pub mod zero_gradient;

use crate::doctor::finding::{Finding, Fix};
use crate::doctor::stats::{BpttStats, LayerStats, RunInfo};
use std::collections::BTreeMap;

/// A suggested learning rate is never below this fraction of the current one: a hundred
/// times smaller is already a different run, and a detector that wants more is reading a
/// symptom of something else (our bound; the treatment retrains with one suggestion).
pub const LR_MIN_FACTOR: f64 = 0.01;

/// A suggested learning rate is never above this multiple of the current one (our bound: a
/// ten-fold raise is as far as one step of a learning-rate search goes; CS231n suggests
/// searching on a log scale, one decade at a time).
pub const LR_MAX_FACTOR: f64 = 10.0;

/// `x` rounded to one significant digit (`0.0437 -> 0.04`, `512 -> 500`).
pub fn round_sig1(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    // Through the decimal form, so the result is the f64 nearest to the printed digit
    // (0.3, not 0.30000000000000004).
    format!("{x:.0e}").parse().expect("a formatted float parses")
}

/// The current learning rate times `factor`, rounded to one significant digit and kept
/// within [`LR_MIN_FACTOR`, `LR_MAX_FACTOR`] of the current one; `None` when the current
/// one is not known.
pub fn suggest_lr(run: &RunInfo, factor: f64) -> Option<f64> {
    let lr = run.lr()?;
    let (lo, hi) = (lr * LR_MIN_FACTOR, lr * LR_MAX_FACTOR);
    let f = if factor.is_finite() && factor > 0.0 { factor } else { 1.0 };
    Some(round_sig1(lr * f).clamp(lo, hi))
}

/// A learning-rate fix: `text` with `train.lr` set to [`suggest_lr`]`(run, factor)` when the
/// current rate is known, else the text naming the key.
pub fn lr_fix(text: &str, run: &RunInfo, factor: f64) -> Fix {
    match suggest_lr(run, factor) {
        Some(v) => Fix::text(text).set("train.lr", v),
        None => Fix::text(format!("{text} (train.lr)")),
    }
}

/// A condition seen at sampled steps is reported when it holds in at least this share of
/// the samples (a majority-or-tie rule: our choice, so that a single unusual minibatch is
/// not reported, while a run sampled once is judged on that one sample).
pub const PERSISTENCE_FRACTION: f64 = 0.5;

/// `"layer {index} ({kind})"`, the `where` of a layer.
pub fn layer_where(index: usize, kind: &str) -> String {
    format!("layer {index} ({kind})")
}

/// Among `samples` (in step order), the flagged ones, when they are at least
/// [`PERSISTENCE_FRACTION`] of all: `(first flagged, number flagged)`.
pub(crate) fn persistent<'a, T>(samples: &[&'a T], flagged: impl Fn(&T) -> bool) -> Option<(&'a T, usize)> {
    let hits: Vec<&T> = samples.iter().copied().filter(|s| flagged(s)).collect();
    let first = *hits.first()?;
    (hits.len() as f64 >= PERSISTENCE_FRACTION * samples.len() as f64).then_some((first, hits.len()))
}

/// Group records by a key, each group sorted by step (stable for equal steps).
pub(crate) fn group_by<'a, T: 'a, K: Ord>(
    items: impl IntoIterator<Item = &'a T>,
    key: impl Fn(&T) -> K,
    step: impl Fn(&T) -> usize,
) -> BTreeMap<K, Vec<&'a T>> {
    let mut groups: BTreeMap<K, Vec<&'a T>> = BTreeMap::new();
    for it in items {
        groups.entry(key(it)).or_default().push(it);
    }
    for g in groups.values_mut() {
        g.sort_by_key(|t| step(t));
    }
    groups
}

/// The gradient through depth at one sampled step: the RMS of the input gradient of the
/// lowest probed layer divided by that of the highest.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthSample {
    /// The training step.
    pub step: usize,
    /// `(index, kind, rms)` of every layer with a finite input-gradient RMS, by index.
    pub layers: Vec<(usize, String, f64)>,
    /// RMS at the lowest layer / RMS at the highest layer.
    pub ratio: f64,
}

impl DepthSample {
    /// The lowest layer (where the gradient arrives last).
    pub fn bottom(&self) -> &(usize, String, f64) {
        self.layers.first().expect("a depth sample has at least two layers")
    }
    /// The highest layer (where the backward pass starts).
    pub fn top(&self) -> &(usize, String, f64) {
        self.layers.last().expect("a depth sample has at least two layers")
    }
    /// `ratio^(1 / (top index - bottom index))`: the average factor per layer.
    pub fn per_layer_factor(&self) -> f64 {
        let span = (self.top().0 - self.bottom().0).max(1);
        self.ratio.powf(1.0 / span as f64)
    }
}

/// One [`DepthSample`] per sampled step that has at least two layers with a recorded,
/// finite input gradient and a non-zero gradient at the top (a zero top gradient means a
/// zero loss gradient, which says nothing about depth). In step order.
pub fn depth_samples(layers: &[LayerStats]) -> Vec<DepthSample> {
    let by_step = group_by(layers, |l| l.step, |l| l.index);
    let mut out = Vec::new();
    for (step, ls) in by_step {
        let mut v: Vec<(usize, String, f64)> = ls
            .iter()
            .filter_map(|l| l.grad_in_rms().filter(|r| r.is_finite()).map(|r| (l.index, l.kind.clone(), r)))
            .collect();
        v.sort_by_key(|t| t.0);
        v.dedup_by_key(|t| t.0);
        if v.len() < 2 || v.last().unwrap().2 <= 0.0 {
            continue;
        }
        let ratio = v[0].2 / v.last().unwrap().2;
        out.push(DepthSample { step, layers: v, ratio });
    }
    out
}

/// Recurrent records grouped by layer, each in step order, keeping only samples with a
/// defined ratio ([`BpttStats::ratio`]).
pub(crate) fn time_samples(bptt: &[BpttStats]) -> BTreeMap<usize, Vec<&BpttStats>> {
    let mut g = group_by(bptt, |b| b.layer, |b| b.step);
    for v in g.values_mut() {
        v.retain(|b| b.ratio().is_some());
    }
    g.retain(|_, v| !v.is_empty());
    g
}

/// Activations among the layers of a depth sample that explain a vanishing gradient.
pub(crate) fn squashing_kinds(s: &DepthSample) -> Vec<&str> {
    let mut k: Vec<&str> = s.layers.iter().map(|l| l.1.as_str()).filter(|k| matches!(*k, "sigmoid" | "tanh")).collect();
    k.sort();
    k.dedup();
    k
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::doctor::stats::{BpttStats, Histogram, LayerStats};

    /// A layer record with only what a detector reads set.
    pub fn layer(index: usize, kind: &str, step: usize) -> LayerStats {
        LayerStats {
            index,
            kind: kind.into(),
            step,
            count: 100,
            act_mean: 0.0,
            act_std: 1.0,
            histogram: Histogram::for_kind(kind),
            saturated_fraction: None,
            zero_fraction: None,
            mean_local_grad: None,
            grad_in_norm: None,
            grad_in_count: 0,
        }
    }

    /// A layer record with an input-gradient RMS of `rms` (over 100 elements).
    pub fn grad_layer(index: usize, kind: &str, step: usize, rms: f64) -> LayerStats {
        let mut l = layer(index, kind, step);
        l.set_grad_in(rms * rms * 100.0, 100);
        l
    }

    /// A recurrent record with norms falling (or growing) geometrically by `g` per step back.
    pub fn bptt(step: usize, t_len: usize, g: f64, rho: f64) -> BpttStats {
        BpttStats {
            layer: 1,
            kind: "rnn".into(),
            step,
            norms_per_t: (0..t_len).map(|t| g.powi((t_len - 1 - t) as i32)).collect(),
            whh_spectral_radius: Some(rho),
            whh_largest_singular: Some(rho * 1.2),
            whh_spectrum_step: Some(step),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn persistence_is_majority_or_tie() {
        let v = [1, 5, 6, 2];
        let refs: Vec<&i32> = v.iter().collect();
        assert_eq!(persistent(&refs, |&x| x > 4), Some((&5, 2)));
        assert_eq!(persistent(&refs, |&x| x > 5), None);
        assert_eq!(persistent(&refs, |&x| x > 9), None);
    }

    #[test]
    fn three_significant_digits() {
        assert_eq!(sig3(2.5), "2.50");
        assert_eq!(sig3(0.0123456), "0.0123");
        assert_eq!(sig3(123.456), "123");
        assert_eq!(sig3(1234.5), "1234");
        assert_eq!(sig3(1.5e-7), "1.50e-7");
        assert_eq!(sig3(0.0), "0");
    }

    #[test]
    fn learning_rates_stay_within_bounds() {
        assert_eq!(round_sig1(0.0437), 0.04);
        assert_eq!(round_sig1(512.0), 500.0);
        assert_eq!(round_sig1(-0.26), -0.3);
        let mut run = RunInfo::default();
        assert_eq!(suggest_lr(&run, 10.0), None);
        assert_eq!(lr_fix("raise it", &run, 10.0).set.len(), 0);
        run.settings.insert("train.lr".into(), 0.5.into());
        assert_eq!(suggest_lr(&run, 0.1), Some(0.05));
        assert_eq!(suggest_lr(&run, 1000.0), Some(5.0), "at most lr * 10");
        assert_eq!(suggest_lr(&run, 1e-6), Some(0.005), "at least lr / 100");
        assert_eq!(lr_fix("lower it", &run, 0.1).set["train.lr"], 0.05);
    }

    #[test]
    fn depth_samples_use_rms_bottom_over_top() {
        let ls = vec![
            grad_layer(0, "affine", 3, 1e-4),
            grad_layer(2, "affine", 3, 1e-2),
            grad_layer(4, "affine", 3, 1.0),
            layer(1, "sigmoid", 3), // no gradient recorded: ignored
            grad_layer(0, "affine", 7, 0.5),
            grad_layer(4, "affine", 7, 0.0), // zero top gradient: sample skipped
        ];
        let s = depth_samples(&ls);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].step, 3);
        assert!((s[0].ratio - 1e-4).abs() < 1e-16);
        assert!((s[0].per_layer_factor() - 0.1).abs() < 1e-12);
        assert_eq!(s[0].bottom().0, 0);
        assert_eq!(s[0].top().0, 4);
    }
}

/// Evidence of a gradient measured through depth (shared by the vanishing and exploding
/// detectors).
pub(crate) fn with_depth_evidence(
    f: Finding,
    s: &DepthSample,
    samples: usize,
    flagged: usize,
    threshold: f64,
) -> Finding {
    f.with("axis", "depth")
        .with("ratio", s.ratio)
        .with("decades", s.ratio.log10())
        .with("per_layer_factor", s.per_layer_factor())
        .with("bottom_layer", s.bottom().0)
        .with("top_layer", s.top().0)
        .with("bottom_grad_rms", s.bottom().2)
        .with("top_grad_rms", s.top().2)
        .with("layer_indices", s.layers.iter().map(|l| l.0).collect::<Vec<_>>())
        .with("grad_rms_by_layer", s.layers.iter().map(|l| l.2).collect::<Vec<_>>())
        .with("samples", samples)
        .with("flagged_samples", flagged)
        .with("threshold", threshold)
}

/// Evidence of a gradient measured back through time (shared by the vanishing and
/// exploding detectors). `b` must have a ratio ([`time_samples`] ensures it).
pub(crate) fn with_time_evidence(f: Finding, b: &BpttStats, samples: usize, flagged: usize, threshold: f64) -> Finding {
    let ratio = b.ratio().expect("time samples have a ratio");
    let mut f = f
        .with("axis", "time")
        .with("ratio", ratio)
        .with("decades", ratio.log10())
        .with("growth_per_step", b.growth_per_step().expect("time samples have a ratio"))
        .with("time_steps", b.norms_per_t.len())
        .with("norm_first", b.norms_per_t[0])
        .with("norm_last", *b.norms_per_t.last().expect("time samples have norms"))
        .with("norms_per_t", b.norms_per_t.clone())
        .with("samples", samples)
        .with("flagged_samples", flagged)
        .with("threshold", threshold);
    if let Some(r) = b.whh_spectral_radius {
        f = f.with("whh_spectral_radius", r);
    }
    if let Some(s) = b.whh_largest_singular {
        f = f.with("whh_largest_singular", s);
    }
    if let Some(s) = b.whh_spectrum_step {
        f = f.with("whh_spectrum_step", s);
    }
    f
}

/// `" (spectral radius of Wh: 1.23)"` when known, else `""`.
pub(crate) fn radius_phrase(b: &BpttStats) -> String {
    b.whh_spectral_radius.map(|r| format!(" (spectral radius of Wh: {r:.2})")).unwrap_or_default()
}

/// `x` with three significant digits: plain for 1e-3 <= |x| < 1e4, else in e-notation.
pub(crate) fn sig3(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() || a == 0.0 {
        format!("{x}")
    } else if (1e-3..1e4).contains(&a) {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.2e}")
    }
}
