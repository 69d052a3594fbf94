//! `diverging_loss`: the training loss rose far above where it started, or became NaN or
//! infinite. Read from the loss of every step ([`crate::doctor::stats::RecordedStats::losses`]).
//!
//! The rule has the two parts of the loss checks of AUTOTRAINER (Zhang et al., "AUTOTRAINER:
//! An Automatic DNN Training Problem Detection and Repair System", ICSE 2021), which flags a
//! NaN loss at once and judges a worsening loss over a window of recent values:
//!
//! * a non-finite loss is divergence at the step it appears;
//! * a finite rise counts when the running median of the last [`DIVERGING_WINDOW`] losses
//!   reaches [`DIVERGING_LOSS_FACTOR`] times the initial loss (step 0's, where the run
//!   started: a run can diverge within its first few steps). A median of five needs three of
//!   five steps that high, so a single bad minibatch is not divergence.
//!
//! The finding's `step` is where the divergence began: the step of the lowest loss before
//! the rise (the turn), or the first non-finite step when the loss jumped straight there.
//! It is an error unless the loss came back below the threshold by the end of the run
//! (a warning: the run survived an instability).
//!
//! Not judged for reinforcement learning (`RunInfo::rl`): a DQN's TD loss grows as its Q
//! values grow, which is learning, not divergence; a non-finite TD loss still counts.

use super::{lr_fix, sig3};
use crate::doctor::finding::{Code, Finding, Fix, Severity};
use crate::doctor::stats::{InputStats, RunInfo};

/// The running median of the loss at this multiple of the initial loss is divergence. A
/// healthy run's loss falls, and minibatch noise moves it by tens of percent, not ten-fold;
/// a loss ten times its starting value means the updates are making the model worse (our
/// cut-off).
pub const DIVERGING_LOSS_FACTOR: f64 = 10.0;

/// Steps in the running median.
pub const DIVERGING_WINDOW: usize = 5;

/// The loss's geometric growth per step at the onset of the divergence: from the turn
/// `began` to the first step whose loss passes `threshold` (the steepness the learning rate
/// met, before any plateau of a wrecked model).
fn growth_per_step(finite: &[f64], began: usize, threshold: f64) -> Option<f64> {
    let over = (began..finite.len()).find(|&t| finite[t] >= threshold)?;
    let (lo, hi) = (*finite.get(began)?, finite[over]);
    (over > began && lo > 0.0 && hi > lo).then(|| (hi / lo).powf(1.0 / (over - began) as f64))
}

/// How much to lower the learning rate for a loss that grew by `g` per step. Near a minimum
/// the loss is about quadratic; plain gradient descent multiplies the distance to the
/// minimum along a direction of curvature lambda by |1 - lr lambda| per step, and the loss by
/// its square, so a loss growing by g per step means lr lambda ~ 1 + sqrt(g), and the step is
/// stable again (lr lambda < 2) after dividing lr by about (1 + sqrt(g)) / 2. At least ten-fold
/// (the divergence may have started on a flatter stretch), and never more than the bound of
/// `suggest_lr` (a hundred-fold).
pub fn lr_factor(g: Option<f64>) -> f64 {
    match g {
        Some(g) if g.is_finite() && g > 1.0 => (2.0 / (1.0 + g.sqrt())).min(0.1),
        _ => 0.1,
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The finding for a diverging loss, if the loss of every step, `losses`, shows one.
/// `input` (the training inputs' scale) adds "standardise inputs" to the fixes when the
/// inputs are far from unit scale; `run` gives the current learning rate and whether
/// clipping is on.
pub fn detect(losses: &[f64], input: Option<&InputStats>, run: &RunInfo) -> Option<Finding> {
    let first_bad = losses.iter().position(|l| !l.is_finite());
    let finite = &losses[..first_bad.unwrap_or(losses.len())];
    let initial = finite.first().copied().unwrap_or(f64::NAN);
    let threshold = DIVERGING_LOSS_FACTOR * initial;
    // The first step whose running median reaches the threshold.
    // `initial > 0` is false for NaN too: nothing to compare with.
    let exceeded = if run.rl || initial.is_nan() || initial <= 0.0 {
        None
    } else {
        (0..finite.len()).find(|&t| median(&finite[(t + 1).saturating_sub(DIVERGING_WINDOW)..=t]) >= threshold)
    };
    if exceeded.is_none() && first_bad.is_none() {
        return None;
    }
    let lowest = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let began = match exceeded {
        Some(t) => (0..=t).min_by(|&a, &b| finite[a].total_cmp(&finite[b])).unwrap_or(0),
        None => first_bad.expect("one of the two is set"),
    };
    let last = losses.last().copied().unwrap_or(f64::NAN);
    let tail = &losses[losses.len().saturating_sub(DIVERGING_WINDOW)..];
    let recovered = first_bad.is_none() && median(tail) < threshold;
    let severity = if recovered { Severity::Warning } else { Severity::Error };
    let mut why = match (exceeded, first_bad) {
        (Some(t), _) => format!(
            "The loss rose from {} at the start to {} (its running median passed {}x the start at step {t}): \
             the updates made the model worse, each overshooting the minimum along the steep directions so \
             that the next gradient is larger still; the learning rate is too large for this curvature (or \
             the inputs or weights are badly scaled).",
            sig3(initial),
            sig3(highest),
            DIVERGING_LOSS_FACTOR
        ),
        (None, Some(s)) => format!(
            "The loss became {} at step {s} (it started at {}): from there every gradient and update is \
             non-finite and training cannot continue.",
            if losses[s].is_nan() { "NaN" } else { "infinite" },
            sig3(initial)
        ),
        (None, None) => unreachable!("returned above"),
    };
    if let (Some(_), Some(s)) = (exceeded, first_bad) {
        why.push_str(&format!(" It became non-finite at step {s}."));
    }
    if recovered {
        why.push_str(" It came back down by the end of the run, but the run lost the steps in between.");
    }
    let growth = growth_per_step(finite, began, threshold);
    let mut fixes = vec![lr_fix("lower the learning rate", run, lr_factor(growth))];
    let unscaled = input.is_some_and(|i| super::unnormalized_input::detect(Some(i)).is_some());
    if unscaled {
        fixes.push(Fix::text("standardise inputs").set("data.normalize", true));
    }
    if !run.clipping() {
        fixes.push(Fix::text("clip the gradient norm").set("train.clip_grad_norm", 5.0));
    }
    let nan = |x: f64| if x.is_finite() { x } else { f64::NAN };
    Some(
        Finding::new(Code::DivergingLoss, severity, "loss", Some(began), why)
            .with("began_step", began)
            .with("initial_loss", nan(initial))
            .with("lowest_loss", nan(lowest))
            .with("highest_loss", nan(highest))
            .with("rise", nan(highest / initial))
            .with("growth_per_step", growth.unwrap_or(f64::NAN))
            .with("exceeded_step", exceeded.map(|t| t as f64).unwrap_or(f64::NAN))
            .with("non_finite_step", first_bad.map(|t| t as f64).unwrap_or(f64::NAN))
            .with("final_loss", nan(last))
            .with("recovered", recovered)
            .with("steps", losses.len())
            .with("threshold_factor", DIVERGING_LOSS_FACTOR)
            .fixes(fixes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lr: f64) -> RunInfo {
        let mut r = RunInfo::default();
        r.settings.insert("train.lr".into(), lr.into());
        r
    }

    /// 2.3 falling to 1.0, then rising geometrically by `g` per step from step 20.
    fn curve(g: f64, steps: usize) -> Vec<f64> {
        (0..steps).map(|t| if t < 20 { 2.3 - 1.3 * t as f64 / 19.0 } else { 1.0 * g.powi(t as i32 - 19) }).collect()
    }

    #[test]
    fn a_healthy_falling_loss_is_not_divergence() {
        let falling: Vec<f64> = (0..200).map(|t| 2.3 * (-(t as f64) / 50.0).exp() + 0.05).collect();
        assert!(detect(&falling, None, &run(0.1)).is_none());
        assert!(detect(&[], None, &run(0.1)).is_none());
        // Noise with single spikes of 30x: the running median ignores them.
        let spiky: Vec<f64> = (0..100).map(|t| if t % 7 == 3 { 70.0 } else { 2.0 }).collect();
        assert!(detect(&spiky, None, &run(0.1)).is_none());
    }

    #[test]
    fn borderline_factor() {
        // A flat loss of 2.0 that steps to just below / at 10x for the rest of the run.
        let at = |v: f64| (0..40).map(|t| if t < 10 { 2.0 } else { v }).collect::<Vec<_>>();
        assert!(detect(&at(2.0 * DIVERGING_LOSS_FACTOR * (1.0 - 1e-9)), None, &run(0.1)).is_none());
        let f = detect(&at(2.0 * DIVERGING_LOSS_FACTOR), None, &run(0.1)).unwrap();
        assert_eq!((f.code, f.severity), (Code::DivergingLoss, Severity::Error));
        assert_eq!(f.number("exceeded_step"), Some(12.0), "the median of 5 passes at the third high step");
        assert_eq!(f.number("initial_loss"), Some(2.0));
    }

    #[test]
    fn a_rise_to_1e30_is_named_with_its_turn_and_numbers() {
        let losses = curve(10.0, 60); // 1.0 at step 19, then 10, 100, ... up to 1e40 > f32 but finite in f64
        let f = detect(&losses, None, &run(10.0)).unwrap();
        assert_eq!(f.step, Some(19), "the turn: the lowest loss before the rise");
        assert_eq!(f.number("began_step"), Some(19.0));
        assert!((f.number("lowest_loss").unwrap() - 1.0).abs() < 1e-12);
        assert!(f.number("highest_loss").unwrap() > 1e30);
        assert_eq!(f.number("initial_loss"), Some(2.3), "step 0's loss");
        assert_eq!(f.where_, "loss");
        assert_eq!(f.layer, None);
        // The loss grew ten-fold per step at the onset: lr * lambda ~ 1 + sqrt(10), lower by
        // ~2.1 -> at least ten-fold.
        assert!((f.number("growth_per_step").unwrap() - 10.0).abs() < 1e-6);
        assert_eq!(f.fix[0].set["train.lr"], 1.0);
        assert!(f.fix.iter().any(|x| x.set.contains_key("train.clip_grad_norm")));
        // A loss growing 1e6-fold per step: lower by (1 + 1000) / 2, capped at a hundred-fold.
        let fast: Vec<f64> = (0..10).map(|t| 2.0 * 1e6f64.powi(t)).collect();
        let f = detect(&fast, None, &run(10.0)).unwrap();
        assert_eq!(f.fix[0].set["train.lr"], 0.1);
        assert_eq!(lr_factor(Some(1e6)), 2.0 / 1001.0);
        assert_eq!(lr_factor(Some(4.0)), 0.1);
        assert_eq!(lr_factor(None), 0.1);
    }

    #[test]
    fn non_finite_and_recovery() {
        // Straight to NaN at step 5.
        let mut l = vec![2.1, 2.2, 2.3, 2.0, 1.9, f64::NAN];
        let f = detect(&l, None, &run(0.1)).unwrap();
        assert_eq!((f.step, f.severity), (Some(5), Severity::Error));
        assert_eq!(f.number("non_finite_step"), Some(5.0));
        assert_eq!(f.evidence["exceeded_step"], serde_json::Value::Null);
        assert!(f.why.contains("NaN at step 5"), "{}", f.why);
        // Rise first, then infinite: the turn is the step, both steps in the evidence.
        l = curve(10.0, 30);
        l.push(f64::INFINITY);
        let f = detect(&l, None, &run(0.1)).unwrap();
        assert_eq!(f.step, Some(19));
        assert_eq!(f.number("non_finite_step"), Some(30.0));
        // Up 20x for a while, then back down: a warning.
        let bump: Vec<f64> = (0..60).map(|t| if (20..30).contains(&t) { 40.0 } else { 2.0 }).collect();
        let f = detect(&bump, None, &run(0.1)).unwrap();
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.evidence["recovered"], true);
    }

    #[test]
    fn reinforcement_learning_only_counts_non_finite() {
        let mut r = run(1e-3);
        r.rl = true;
        let growing: Vec<f64> = (0..100).map(|t| 0.5 + t as f64).collect();
        assert!(detect(&growing, None, &r).is_none());
        assert!(detect(&[0.5, f64::NAN], None, &r).is_some());
    }

    #[test]
    fn clipping_on_and_raw_inputs_change_the_fixes() {
        let mut r = run(10.0);
        r.settings.insert("train.clip_grad_norm".into(), 1.0.into());
        let raw = InputStats {
            features: 64,
            examples: 100,
            feature_mean_abs_max: 10.0,
            feature_mean_abs_mean: 5.0,
            feature_std_min: 1.0,
            feature_std_max: 6.0,
            feature_std_mean: 4.0,
            constant_features: 0,
        };
        let f = detect(&curve(10.0, 40), Some(&raw), &r).unwrap();
        assert!(!f.fix.iter().any(|x| x.set.contains_key("train.clip_grad_norm")));
        assert_eq!(f.fix[1].set["data.normalize"], true);
    }
}
