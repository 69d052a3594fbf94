//! `batchnorm_stats`: a batch norm layer's running statistics are far from the mean and
//! variance of its input over the data ([`BatchNormStats`], one pass over every example in
//! eval mode).
//!
//! In eval mode batch norm computes `gamma * (x - running_mean) / sqrt(running_var + eps) +
//! beta`: the running statistics stand in for the batch's. When they fit the data, feature
//! j's normalised value has mean 0 and variance 1, as in training. When they do not, it has
//! mean `z * s` and standard deviation `s`, where `z = (mean - running_mean) / sqrt(var + eps)`
//! is the mean shift in units of the data's standard deviation and `s = sqrt(r)` with
//! `r = (var + eps) / (running_var + eps)` the variance ratio ([`BatchNormStats::mean_shift`],
//! [`BatchNormStats::var_ratio`]): every activation after the layer moves, on every example.
//!
//! # Thresholds (our choice; the reasoning)
//!
//! Training already normalises each batch with its own, noisy, statistics, so a network
//! trained with batch norm tolerates some mismatch: a batch of B examples has a mean whose
//! standard error is `1/sqrt(B)` of the feature's standard deviation (0.18 at B = 32) and a
//! variance whose relative standard error is `sqrt(2/(B-1))` (0.25 at B = 32). A feature is
//! *off* when its mismatch is about three such standard errors at B = 32 or more:
//! `|z| >=` [`BN_OFF_MEAN_SHIFT`] (0.5) or `r` outside (1/[`BN_OFF_VAR_RATIO`],
//! [`BN_OFF_VAR_RATIO`]) = (1/2, 2) (ln 2 = 0.69, 2.8 standard errors of the log-variance).
//! A feature is *far* when the mismatch changes what the next layer does, whatever the batch
//! size: `|z| >=` [`BN_FAR_MEAN_SHIFT`] (2: a unit centred at 0 before a ReLU then fires on
//! 98% or 2% of the examples instead of half) or `r` outside (1/[`BN_FAR_VAR_RATIO`],
//! [`BN_FAR_VAR_RATIO`]) = (1/10, 10) (activations scaled by more than 3x).
//!
//! Which cause the why and the fixes put first: running statistics exactly at PyTorch's
//! initial values (every mean 0, every variance 1) were never updated; with fewer than
//! [`BN_FEW_BATCHES`] batches tracked (PyTorch's `num_batches_tracked`), the running values
//! after k updates at the default momentum 0.1 are `(1 - a)` of the data's plus `a` of the
//! initial ones, `a = 0.9^k`, and when that lagged value is within the off thresholds of
//! every off feature's running value, the lag is the cause (`few_batches_explain`);
//! otherwise the data or its preprocessing comes first.
//!
//! Severity, per layer: `error` when at least [`BN_SHARE`] of its features are far,
//! `warning` when at least that share are off, `info` when fewer are off but some are. A
//! layer is judged only with at least [`BN_MIN_VALUES`] values per feature.

use super::{layer_where, sig3};
use crate::doctor::finding::{Code, Finding, Fix, Severity};
use crate::doctor::stats::BatchNormStats;

/// A feature whose mean shift `|z|` is at least this many of the data's standard deviations
/// is off (about three standard errors of a batch mean at batch size 32: see the module docs).
pub const BN_OFF_MEAN_SHIFT: f64 = 0.5;

/// A feature whose variance ratio is at least this, or at most its inverse, is off (ln 2 is
/// about three standard errors of a batch's log-variance at batch size 32).
pub const BN_OFF_VAR_RATIO: f64 = 2.0;

/// A feature whose mean shift is at least this many standard deviations is far: a unit centred
/// at 0 before a ReLU then fires on 98% or 2% of the examples instead of half.
pub const BN_FAR_MEAN_SHIFT: f64 = 2.0;

/// A feature whose variance ratio is at least this, or at most its inverse, is far: eval mode
/// scales its normalised activations by more than sqrt(10) = 3.2 (or less than 1/3.2).
pub const BN_FAR_VAR_RATIO: f64 = 10.0;

/// The share of a layer's features that must be off (warning) or far (error); below it, off
/// features are reported as info (one odd feature of many changes little).
pub const BN_SHARE: f64 = 0.1;

/// Fewer values per feature than this and the data's own mean is uncertain by more than
/// 1/sqrt(30) = 0.18 of its standard deviation, a third of [`BN_OFF_MEAN_SHIFT`]: the layer
/// is not judged.
pub const BN_MIN_VALUES: u64 = 30;

/// Running statistics that have seen fewer batches than this (PyTorch's
/// `num_batches_tracked`) still hold 0.9^k of their initial values at PyTorch's default
/// momentum 0.1 (more than 0.5% at k < 50): the why and the fixes put that cause first.
pub const BN_FEW_BATCHES: u64 = 50;

fn is_off(z: f64, r: f64) -> bool {
    !(z.abs() < BN_OFF_MEAN_SHIFT && r < BN_OFF_VAR_RATIO && r > 1.0 / BN_OFF_VAR_RATIO)
}

fn is_far(z: f64, r: f64) -> bool {
    !(z.abs() < BN_FAR_MEAN_SHIFT && r < BN_FAR_VAR_RATIO && r > 1.0 / BN_FAR_VAR_RATIO)
}

/// How far a feature is, in multiples of the off thresholds (the larger of the two).
fn badness(z: f64, r: f64) -> f64 {
    if z.is_nan() || r.is_nan() {
        return f64::INFINITY;
    }
    (z.abs() / BN_OFF_MEAN_SHIFT).max(r.ln().abs() / BN_OFF_VAR_RATIO.ln())
}

/// One finding per batch norm layer with off features (see the module docs).
pub fn detect(layers: &[BatchNormStats]) -> Vec<Finding> {
    let mut out = Vec::new();
    for b in layers {
        let d = b.features();
        if d == 0 || b.values_per_feature < BN_MIN_VALUES {
            continue;
        }
        let zr: Vec<(f64, f64)> = (0..d).map(|j| (b.mean_shift(j), b.var_ratio(j))).collect();
        let off = zr.iter().filter(|(z, r)| is_off(*z, *r)).count();
        if off == 0 {
            continue;
        }
        let far = zr.iter().filter(|(z, r)| is_far(*z, *r)).count();
        let share = |k: usize| k as f64 / d as f64;
        let severity = if share(far) >= BN_SHARE {
            Severity::Error
        } else if share(off) >= BN_SHARE {
            Severity::Warning
        } else {
            Severity::Info
        };
        let worst = (0..d)
            .max_by(|&i, &j| badness(zr[i].0, zr[i].1).total_cmp(&badness(zr[j].0, zr[j].1)))
            .expect("at least one feature");
        let (z, r) = zr[worst];
        let what = if b.kind == "spatial_batchnorm" { "channels" } else { "features" };
        let at_init = b.running_mean.iter().all(|&m| m == 0.0) && b.running_var.iter().all(|&v| v == 1.0);
        let few = b.batches_tracked.filter(|&k| k < BN_FEW_BATCHES);
        // Whether the lag of a few batches accounts for every off feature: after k updates at
        // momentum 0.1 from (0, 1), the running values are (1 - a) of the data's plus a of
        // the initial ones, a = 0.9^k.
        let lag_explains = few.map(|k| {
            let a = 0.9f64.powi(k as i32);
            (0..d).filter(|&j| is_off(zr[j].0, zr[j].1)).all(|j| {
                let (m, v) = (b.data_mean[j], b.data_var[j]);
                let z = ((1.0 - a) * m - b.running_mean[j]) / (v + b.eps).sqrt();
                let r = ((1.0 - a) * v + a + b.eps) / (b.running_var[j] + b.eps);
                !is_off(z, r)
            })
        });
        let mut why = format!(
            "In eval mode batch norm normalises with its running statistics, not the batch's: {off} of {d} {what} are \
             off (worst, {} {worst}: the data's mean is {} of its standard deviations from running_mean and its \
             variance {}x running_var), so every activation after this layer is shifted and rescaled on every example \
             and the layers above see inputs they were not trained on.",
            &what[..what.len() - 1],
            sig3(z),
            sig3(r),
        );
        let generic = " Typical causes: the data is preprocessed differently from the training data (normalisation, scaling, channel order), the running averages did not settle (too few batches, small batches, a large momentum), or the weights changed after the statistics were last updated.";
        if at_init {
            why.push_str(" The running statistics are exactly PyTorch's initial values (mean 0, variance 1): they were never updated (the model was never in train mode during training, or track_running_stats was off).");
        } else if let Some(k) = few {
            let lag = format!(
                "only {k} batches updated the running statistics (num_batches_tracked), so at PyTorch's default momentum 0.1 they still hold 0.9^{k} = {} of their initial values (mean 0, variance 1)",
                sig3(0.9f64.powi(k as i32))
            );
            if lag_explains == Some(true) {
                why.push_str(&format!(
                    " The cause: {lag}; that lag accounts for every off {}.",
                    &what[..what.len() - 1]
                ));
            } else {
                why.push_str(generic);
                why.push_str(&format!(" Also, {lag}, but that lag does not account for this mismatch."));
            }
        } else {
            why.push_str(generic);
        }
        let recompute = Fix::text(
            "recompute the running statistics on the training data: model.train(), forward a few hundred batches under torch.no_grad() (momentum=None gives an exact average), then model.eval() and save",
        );
        let same_data = Fix::text(
            "evaluate on data preprocessed exactly as the training data (the same normalisation, scaling and channel order)",
        );
        let train_mode = Fix::text(
            "call model.train() before the training steps (running statistics are only updated in train mode) and keep track_running_stats=True",
        );
        let fixes = if at_init {
            vec![train_mode, recompute, same_data]
        } else if lag_explains == Some(true) {
            vec![recompute, same_data, train_mode]
        } else {
            vec![same_data, recompute, train_mode]
        };
        let mut f = Finding::new(Code::BatchnormStats, severity, layer_where(b.layer, &b.kind), None, why)
            .at_layer(b.layer)
            .with("off_features", off)
            .with("far_features", far)
            .with("features", d)
            .with("worst_feature", worst)
            .with("mean_shift_std", z)
            .with("var_ratio", r)
            .with("data_mean", b.data_mean[worst])
            .with("running_mean", b.running_mean[worst])
            .with("data_var", b.data_var[worst])
            .with("running_var", b.running_var[worst])
            .with("max_abs_mean_shift_std", zr.iter().map(|(z, _)| z.abs()).fold(0.0, f64::max))
            .with("counted_per", if b.kind == "spatial_batchnorm" { "channel" } else { "feature" })
            .with("values_per_feature", b.values_per_feature)
            .with("examples", b.examples)
            .with("running_stats_at_init", at_init);
        if let Some(k) = b.batches_tracked {
            f = f.with("batches_tracked", k);
        }
        if let Some(l) = lag_explains {
            f = f.with("few_batches_explain", l);
        }
        out.push(f.fixes(fixes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer of `d` features whose data has mean 1 and variance 4, with running
    /// statistics moved by `shift` data standard deviations and scaled by 1/`ratio` on the
    /// first `bad` features.
    fn layer(d: usize, bad: usize, shift: f64, ratio: f64) -> BatchNormStats {
        let (mean, var) = (1.0, 4.0);
        BatchNormStats {
            layer: 1,
            kind: "batchnorm".into(),
            examples: 1000,
            values_per_feature: 1000,
            data_mean: vec![mean; d],
            data_var: vec![var; d],
            running_mean: (0..d).map(|j| if j < bad { mean - shift * 2.0 } else { mean }).collect(),
            running_var: (0..d).map(|j| if j < bad { var / ratio } else { var }).collect(),
            eps: 0.0,
            batches_tracked: Some(5000),
        }
    }

    fn one(b: BatchNormStats) -> Option<Finding> {
        let mut f = detect(&[b]);
        assert!(f.len() <= 1);
        f.pop()
    }

    #[test]
    fn fitting_statistics_are_silent() {
        assert!(one(layer(20, 0, 0.0, 1.0)).is_none());
        // Just inside every off threshold, on every feature.
        assert!(one(layer(20, 20, 0.499, 1.0)).is_none());
        assert!(one(layer(20, 20, -0.499, 1.99)).is_none());
        assert!(one(layer(20, 20, 0.0, 0.501)).is_none());
    }

    #[test]
    fn thresholds_on_each_side() {
        // 1 of 20 features off (5%): info; 2 of 20 (10%): warning.
        assert_eq!(one(layer(20, 1, 0.5, 1.0)).unwrap().severity, Severity::Info);
        assert_eq!(one(layer(20, 2, -0.5, 1.0)).unwrap().severity, Severity::Warning);
        assert_eq!(one(layer(20, 2, 0.0, 2.0)).unwrap().severity, Severity::Warning);
        assert_eq!(one(layer(20, 2, 0.0, 0.5)).unwrap().severity, Severity::Warning);
        // Far on 10% of the features: error; far on 5% (one feature) with 10% off is a warning.
        assert_eq!(one(layer(20, 2, 2.0, 1.0)).unwrap().severity, Severity::Error);
        assert_eq!(one(layer(20, 2, 0.0, 10.0)).unwrap().severity, Severity::Error);
        assert_eq!(one(layer(20, 2, 0.0, 0.1)).unwrap().severity, Severity::Error);
        assert_eq!(one(layer(20, 2, 1.99, 9.9)).unwrap().severity, Severity::Warning);
        let mut b = layer(20, 2, 0.6, 1.0);
        b.running_mean[0] = 1.0 - 3.0 * 2.0;
        assert_eq!(one(b).unwrap().severity, Severity::Warning);
    }

    #[test]
    fn evidence_names_the_worst_feature() {
        let mut b = layer(8, 3, 0.7, 1.0);
        b.kind = "spatial_batchnorm".into();
        b.running_var[2] = 4.0 / 50.0; // feature 2: variance ratio 50, the worst
        let f = one(b).unwrap();
        assert_eq!(f.code, Code::BatchnormStats);
        assert_eq!(f.where_, "layer 1 (spatial_batchnorm)");
        assert_eq!((f.layer, f.step), (Some(1), None));
        assert_eq!(f.number("off_features"), Some(3.0));
        assert_eq!(f.number("far_features"), Some(1.0));
        assert_eq!(f.number("features"), Some(8.0));
        assert_eq!(f.number("worst_feature"), Some(2.0));
        assert!((f.number("var_ratio").unwrap() - 50.0).abs() < 1e-9);
        assert!((f.number("mean_shift_std").unwrap() - 0.7).abs() < 1e-12);
        assert_eq!(f.text("counted_per"), Some("channel"));
        assert_eq!(f.severity, Severity::Error, "1 of 8 far is 12.5%");
        assert!(f.why.contains("3 of 8 channels are off") && f.why.contains("channel 2"), "{}", f.why);
        // The key number comes first in the evidence.
        assert_eq!(f.evidence.keys().next().map(String::as_str), Some("off_features"));
        assert!(f.fix.iter().all(|x| x.set.is_empty()), "advice for the training run, not a setting");
        assert!(f.fix[0].text.contains("preprocessed"));
    }

    #[test]
    fn the_cause_comes_first_when_the_checkpoint_shows_it() {
        // Never updated: PyTorch's initial values.
        let mut b = layer(4, 0, 0.0, 1.0);
        b.running_mean = vec![0.0; 4];
        b.running_var = vec![1.0; 4];
        let f = one(b).unwrap();
        assert_eq!(f.evidence["running_stats_at_init"], true);
        assert!(f.why.contains("never updated") && f.fix[0].text.contains("model.train()"), "{f:?}");
        // 8 batches: 0.9^8 = 0.43 of the initial values remain. Running statistics that are
        // that lag (mean 0.57 m, variance 0.57 v + 0.43) are explained by it...
        let a = 0.9f64.powi(8);
        let (m, v) = (0.3, 0.25);
        let lagged = |rm: f64, rv: f64| BatchNormStats {
            layer: 2,
            kind: "batchnorm".into(),
            examples: 100,
            values_per_feature: 100,
            data_mean: vec![m; 3],
            data_var: vec![v; 3],
            running_mean: vec![rm; 3],
            running_var: vec![rv; 3],
            eps: 1e-5,
            batches_tracked: Some(8),
        };
        let f = one(lagged((1.0 - a) * m, (1.0 - a) * v + a)).unwrap();
        assert!(f.number("var_ratio").unwrap() < 0.5, "off by the variance: {f:?}");
        assert!(f.why.contains("0.9^8 = 0.430") && f.why.contains("accounts for"), "{}", f.why);
        assert_eq!(f.evidence["few_batches_explain"], true);
        assert!(f.fix[0].text.starts_with("recompute"));
        assert_eq!(f.number("batches_tracked"), Some(8.0));
        // ... a running mean 3 std away is not: the usual causes come first.
        let f = one(lagged((1.0 - a) * m + 1.5, (1.0 - a) * v + a)).unwrap();
        assert_eq!(f.evidence["few_batches_explain"], false);
        assert!(f.why.contains("does not account"), "{}", f.why);
        assert!(f.fix[0].text.contains("preprocessed"));
    }

    #[test]
    fn too_few_values_are_not_judged_and_nan_is_worst() {
        let mut b = layer(4, 4, 5.0, 1.0);
        b.values_per_feature = BN_MIN_VALUES - 1;
        assert!(one(b).is_none());
        let mut b = layer(4, 1, 0.6, 1.0);
        b.running_var[3] = f64::NAN;
        let f = one(b).unwrap();
        assert_eq!(f.number("worst_feature"), Some(3.0));
        assert_eq!(f.severity, Severity::Error, "a NaN running variance is far");
    }
}
