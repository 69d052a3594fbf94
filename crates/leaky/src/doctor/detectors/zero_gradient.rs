//! `zero_gradient`: an op with flat regions (clip, step) sets the gradient of a large share
//! of elements or samples to exactly zero while the loss is not zero: the clip_by_value bug
//! of DQN implementations that clip the TD error instead of its gradient, and the same clip
//! inside a classifier's `clipped_mse` loss (the recorder counts the loss's output gradients
//! that are exactly zero, `where = "loss (clipped_mse)"`).
//!
//! The share is pooled over the sampled steps whose loss is not ~0 ([`FlatOpStats`]: zeroed
//! and total counts are summed). Ops that zero gradients by design (relu, max-pool,
//! [`crate::doctor::stats::FlatOp::zeroes_by_design`]) are not judged here; dead ReLUs are
//! found per unit over a full pass by [`super::dead_relu`].

use super::group_by;
use crate::doctor::finding::{Code, Finding, Fix, Severity};
use crate::doctor::stats::{FlatOp, FlatOpStats};
use std::collections::BTreeMap;

/// A pooled zeroed share at least this large is a warning: a quarter of the error terms
/// invisible to the optimiser (our cut-off; a clip that bites now and then on outliers
/// stays below it).
pub const ZERO_GRADIENT_WARN_SHARE: f64 = 0.25;

/// A pooled zeroed share above this is an error: most of the elements get no gradient, and
/// they are exactly the ones with the largest errors, which dominate the loss.
pub const ZERO_GRADIENT_ERROR_SHARE: f64 = 0.5;

/// Steps whose loss is at most this are left out: a zero gradient at a zero loss is
/// convergence, not a bug.
pub const ZERO_GRADIENT_MIN_LOSS: f64 = 1e-6;

/// `(step, value)` pairs pooled into at most `points` windows of consecutive records (in
/// step order): the mean step and the pooled value of each window.
fn pooled(records: &[&FlatOpStats], points: usize, value: impl Fn(&[&FlatOpStats]) -> f64) -> Vec<[f64; 2]> {
    if records.is_empty() {
        return Vec::new();
    }
    let w = records.len().div_ceil(points.max(1));
    records.chunks(w).map(|c| [c.iter().map(|r| r.step as f64).sum::<f64>() / c.len() as f64, value(c)]).collect()
}

/// The samples [`detect`] judges, per op `(where, op)` in step order: ops that are not flat by
/// design, at steps whose loss is finite and above [`ZERO_GRADIENT_MIN_LOSS`].
fn judged(ops: &[FlatOpStats]) -> BTreeMap<(String, &'static str), Vec<&FlatOpStats>> {
    let relevant =
        ops.iter().filter(|o| !o.op.zeroes_by_design() && o.loss.is_finite() && o.loss > ZERO_GRADIENT_MIN_LOSS);
    group_by(relevant, |o| (o.where_.clone(), o.op.as_str()), |o| o.step)
}

/// The blocked share [`detect`] judges (and reports as `zeroed_share`) for each op, by
/// `where`: zeroed elements / all elements over the sampled steps. For tables that show it
/// for runs with and without a finding.
pub fn blocked_shares(ops: &[FlatOpStats]) -> Vec<(String, f64)> {
    judged(ops)
        .into_iter()
        .filter_map(|((where_, _), samples)| {
            let total: u64 = samples.iter().map(|o| o.total).sum();
            (total > 0).then(|| (where_, samples.iter().map(|o| o.zeroed).sum::<u64>() as f64 / total as f64))
        })
        .collect()
}

/// Findings, one per op (by `where`) with a large blocked share.
pub fn detect(ops: &[FlatOpStats]) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((where_, op), samples) in judged(ops) {
        let zeroed: u64 = samples.iter().map(|o| o.zeroed).sum();
        let total: u64 = samples.iter().map(|o| o.total).sum();
        if total == 0 {
            continue;
        }
        let share = zeroed as f64 / total as f64;
        if share < ZERO_GRADIENT_WARN_SHARE {
            continue;
        }
        let severity = if share > ZERO_GRADIENT_ERROR_SHARE { Severity::Error } else { Severity::Warning };
        let first = samples.iter().find(|o| o.share() >= ZERO_GRADIENT_WARN_SHARE).unwrap_or(&samples[0]);
        let mean_loss = samples.iter().map(|o| o.loss).sum::<f64>() / samples.len() as f64;
        let rl = samples.iter().any(|o| o.rl);
        let kind = samples[0].op;
        let why = match kind {
            FlatOp::Clip => format!(
                "clip's gradient is exactly 0 outside [lo, hi]: {:.0}% of the elements were clipped and send no \
                 gradient back although the loss is {}, so the largest errors, which matter most, are \
                 the ones the optimiser never sees.",
                100.0 * share,
                super::sig3(mean_loss)
            ),
            _ => format!(
                "{op}'s gradient is exactly 0 on its flat regions: {:.0}% of the elements send no gradient back \
                 although the loss is {}.",
                100.0 * share,
                super::sig3(mean_loss)
            ),
        };
        let fixes: Vec<Fix> = match (kind, rl) {
            (FlatOp::Clip, true) => vec![
                Fix::text("use the Huber loss, whose gradient is the clipped error").set("rl.td_loss", "huber"),
                Fix::text("clip the gradient instead of the value").set("rl.td_loss", "grad_clip"),
                Fix::text("scale rewards down").set("rl.reward_scale", 0.1),
            ],
            (FlatOp::Clip, false) => vec![
                Fix::text("use the softmax cross-entropy, whose gradient is never exactly 0")
                    .set("train.loss", "softmax"),
                Fix::text("use the Huber loss, whose gradient is the clipped error").set("train.loss", "huber"),
            ],
            _ => vec![Fix::text("replace the flat op by a smooth surrogate (e.g. a sigmoid for a step)")],
        };
        let mut f = Finding::new(Code::ZeroGradient, severity, where_, Some(first.step), why);
        if rl {
            // The DQN's clipped TD error: the time course over updates, at most 20 pooled
            // points (mean step, pooled share / mean loss), shows whether the clip ever lets go.
            let mut by_step: Vec<&FlatOpStats> = samples.to_vec();
            by_step.sort_by_key(|o| o.step);
            let shares = pooled(&by_step, 20, |c| {
                c.iter().map(|r| r.zeroed).sum::<u64>() as f64 / c.iter().map(|r| r.total).sum::<u64>().max(1) as f64
            });
            let losses = pooled(&by_step, 20, |c| c.iter().map(|r| r.loss).sum::<f64>() / c.len() as f64);
            f = f
                .with("td_loss", "clipped_delta")
                .with("zeroed_share_over_updates", serde_json::json!(shares))
                .with("loss_over_updates", serde_json::json!(losses));
        }
        out.push(
            f.with("op", op)
                .with("zeroed_share", share)
                .with("zeroed", zeroed)
                .with("total", total)
                .with("mean_loss", mean_loss)
                .with("max_step_share", samples.iter().map(|o| o.share()).fold(0.0, f64::max))
                .with("samples", samples.len())
                .with("threshold", ZERO_GRADIENT_WARN_SHARE)
                .fixes(fixes),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(step: usize, zeroed: u64, total: u64, loss: f64) -> FlatOpStats {
        FlatOpStats { op: FlatOp::Clip, where_: "td error (clip)".into(), rl: true, step, zeroed, total, loss }
    }

    #[test]
    fn borderline_shares() {
        // 10000 elements: 2499 zeroed is healthy, 2500 a warning, 5000 a warning, 5001 an error.
        assert!(detect(&[clip(0, 2499, 10_000, 3.0)]).is_empty());
        assert_eq!(detect(&[clip(0, 2500, 10_000, 3.0)])[0].severity, Severity::Warning);
        assert_eq!(detect(&[clip(0, 5000, 10_000, 3.0)])[0].severity, Severity::Warning);
        let f = detect(&[clip(7, 5001, 10_000, 3.0)]);
        assert_eq!(f[0].severity, Severity::Error);
        assert_eq!(f[0].code, Code::ZeroGradient);
        assert_eq!(f[0].where_, "td error (clip)");
        assert_eq!(f[0].step, Some(7));
        assert_eq!(f[0].text("op"), Some("clip"));
        assert_eq!(f[0].number("zeroed_share"), Some(0.5001));
        assert_eq!(f[0].fix[0].set["rl.td_loss"], "huber");
        assert_eq!(f[0].layer, None);
    }

    #[test]
    fn zero_loss_is_not_a_bug_and_shares_pool() {
        assert!(detect(&[clip(0, 900, 1000, ZERO_GRADIENT_MIN_LOSS)]).is_empty());
        assert_eq!(detect(&[clip(0, 900, 1000, ZERO_GRADIENT_MIN_LOSS * 1.01)]).len(), 1);
        // 900 of 1000 at step 0, 0 of 3000 later: pooled 22.5% (healthy); first step found otherwise.
        assert!(detect(&[clip(0, 900, 1000, 1.0), clip(10, 0, 3000, 1.0)]).is_empty());
        let f = detect(&[clip(0, 0, 1000, 1.0), clip(10, 900, 1000, 1.0)]);
        assert_eq!((f[0].step, f[0].severity), (Some(10), Severity::Warning));
        assert_eq!(f[0].number("samples"), Some(2.0));
    }

    #[test]
    fn ops_that_zero_by_design_are_skipped() {
        let mut relu = clip(0, 990, 1000, 2.0);
        relu.op = FlatOp::Relu;
        let mut pool = clip(0, 750, 1000, 2.0);
        pool.op = FlatOp::MaxPool;
        assert!(detect(&[relu, pool]).is_empty());
        let mut sup = clip(0, 990, 1000, 2.0);
        sup.rl = false;
        assert_eq!(detect(&[sup])[0].fix[0].set["train.loss"], "softmax");
    }
}
