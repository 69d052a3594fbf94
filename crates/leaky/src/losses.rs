//! Losses and their gradients, each `-> (loss, dloss/dinput)`.
//!
//! | loss | value | gradient w.r.t. the prediction |
//! |---|---|---|
//! | softmax | mean_i -log softmax(s_i)\[y_i\] | (softmax(s) - onehot(y)) / N |
//! | svm | mean_i sum_{j != y_i} max(0, s_ij - s_iy_i + 1) | +1/N per active margin, -count/N at y_i |
//! | mse | mean (p - t)^2 | 2 (p - t) / n |
//! | huber | mean h(d), h = d^2/2 for \|d\| <= delta else delta (\|d\| - delta/2) | clip(d, -delta, delta) / n |
//! | clipped_mse | mean clip(d, -1, 1)^2 | 2 clip(d) 1[\|d\| <= 1] / n: **zero wherever \|d\| > 1** |
//!
//! `d = p - t`, `n` = number of elements. Softmax and SVM follow CS231n
//! (`softmax_loss`, `svm_loss`): scores (N, C), integer labels, averaged over N. MSE and
//! Huber follow PyTorch's `MSELoss` / `HuberLoss` with mean reduction. `clipped_mse` is the
//! DQN bug kept on purpose: squaring `clip_by_value(delta, -1, 1)` makes the gradient of
//! every sample with a large TD error exactly zero, where the Huber loss (whose gradient is
//! the clipped error) was meant.

use crate::tensor::Float;
use ndarray::{Array, Array2, Dimension, Zip};

/// Softmax cross-entropy.
///
/// * `scores`: (N, C) unnormalised class scores
/// * `y`: length N, each `< C`
///
/// Returns the mean loss and `dscores`: (N, C).
pub fn softmax_loss<F: Float>(scores: &Array2<F>, y: &[usize]) -> (F, Array2<F>) {
    let (n, c) = scores.dim();
    assert_eq!(y.len(), n, "softmax_loss: {} labels for {} rows", y.len(), n);
    let nf = F::from_usize(n.max(1)).unwrap();
    let mut probs = scores.clone();
    let mut loss = F::zero();
    for (i, mut row) in probs.outer_iter_mut().enumerate() {
        assert!(y[i] < c, "softmax_loss: label {} out of range for {} classes (row {i})", y[i], c);
        // Shifting by the row max keeps exp from overflowing and leaves softmax unchanged.
        let max = row.fold(F::neg_infinity(), |m, &v| m.max(v));
        let mut sum = F::zero();
        row.mapv_inplace(|v| {
            let e = (v - max).exp();
            sum += e;
            e
        });
        let log_sum = sum.ln();
        loss -= scores[[i, y[i]]] - max - log_sum;
        row.mapv_inplace(|e| e / sum);
    }
    for (i, &yi) in y.iter().enumerate() {
        probs[[i, yi]] -= F::one();
    }
    probs.mapv_inplace(|v| v / nf);
    (loss / nf, probs)
}

/// Multiclass SVM (hinge) loss with margin 1.
///
/// * `scores`: (N, C)
/// * `y`: length N, each `< C`
///
/// Returns the mean loss and `dscores`: (N, C).
pub fn svm_loss<F: Float>(scores: &Array2<F>, y: &[usize]) -> (F, Array2<F>) {
    let (n, c) = scores.dim();
    assert_eq!(y.len(), n, "svm_loss: {} labels for {} rows", y.len(), n);
    let nf = F::from_usize(n.max(1)).unwrap();
    let mut dscores = Array2::zeros((n, c));
    let mut loss = F::zero();
    for i in 0..n {
        assert!(y[i] < c, "svm_loss: label {} out of range for {} classes (row {i})", y[i], c);
        let correct = scores[[i, y[i]]];
        let mut active = F::zero();
        for j in 0..c {
            if j == y[i] {
                continue;
            }
            let margin = scores[[i, j]] - correct + F::one();
            if margin > F::zero() {
                loss += margin;
                dscores[[i, j]] = F::one() / nf;
                active += F::one();
            }
        }
        dscores[[i, y[i]]] = -active / nf;
    }
    (loss / nf, dscores)
}

fn count<F: Float, D: Dimension>(a: &Array<F, D>) -> F {
    F::from_usize(a.len().max(1)).unwrap()
}

fn check_shapes<F, D: Dimension>(what: &str, pred: &Array<F, D>, target: &Array<F, D>) {
    assert_eq!(
        pred.shape(),
        target.shape(),
        "{what}: prediction {:?} and target {:?} differ",
        pred.shape(),
        target.shape()
    );
}

/// Mean squared error `mean((pred - target)^2)`. `pred`, `target`: same shape.
/// Returns the loss and `dpred` (shape of `pred`).
pub fn mse_loss<F: Float, D: Dimension>(pred: &Array<F, D>, target: &Array<F, D>) -> (F, Array<F, D>) {
    check_shapes("mse_loss", pred, target);
    let n = count(pred);
    let two = F::from_f64c(2.0);
    let mut grad = pred - target;
    let loss = grad.iter().map(|&d| d * d).sum::<F>() / n;
    grad.mapv_inplace(|d| two * d / n);
    (loss, grad)
}

/// Huber loss with threshold `delta` (PyTorch's `HuberLoss(delta)`, mean reduction):
/// quadratic for |d| <= delta, linear beyond. Its gradient is the clipped error
/// `clip(d, -delta, delta) / n`: large errors still push, with bounded force.
/// `pred`, `target`: same shape. Returns the loss and `dpred`.
pub fn huber_loss<F: Float, D: Dimension>(pred: &Array<F, D>, target: &Array<F, D>, delta: F) -> (F, Array<F, D>) {
    check_shapes("huber_loss", pred, target);
    let n = count(pred);
    let half = F::from_f64c(0.5);
    let mut grad = pred - target;
    let mut loss = F::zero();
    grad.mapv_inplace(|d| {
        if d.abs() <= delta {
            loss += half * d * d;
            d / n
        } else {
            loss += delta * (d.abs() - half * delta);
            d.signum() * delta / n
        }
    });
    (loss / n, grad)
}

/// The DQN bug, kept on purpose: `mean(clip(pred - target, -1, 1)^2)`. The clip is
/// TensorFlow's `clip_by_value`, whose gradient is zero strictly outside [-1, 1], so every
/// element with |d| > 1 contributes **exactly zero** gradient. `pred`, `target`: same
/// shape. Returns the loss and `dpred`.
pub fn clipped_mse_loss<F: Float, D: Dimension>(pred: &Array<F, D>, target: &Array<F, D>) -> (F, Array<F, D>) {
    check_shapes("clipped_mse_loss", pred, target);
    let n = count(pred);
    let two = F::from_f64c(2.0);
    let mut grad = pred - target;
    let mut loss = F::zero();
    grad.mapv_inplace(|d| {
        // Comparisons (not max/min) so a NaN error stays NaN in the loss and gradient.
        let c = if d < -F::one() {
            -F::one()
        } else if d > F::one() {
            F::one()
        } else {
            d
        };
        loss += c * c;
        if d.abs() > F::one() {
            F::zero()
        } else {
            two * c / n
        }
    });
    (loss / n, grad)
}

/// The share of elements of `pred - target` whose `clipped_mse` gradient is exactly zero
/// (|d| > 1): the quantity behind the doctor's `zero_gradient` finding.
pub fn clipped_share<F: Float, D: Dimension>(pred: &Array<F, D>, target: &Array<F, D>) -> f64 {
    check_shapes("clipped_share", pred, target);
    if pred.is_empty() {
        return 0.0;
    }
    let mut k = 0usize;
    Zip::from(pred).and(target).for_each(|&p, &t| {
        if (p - t).abs() > F::one() {
            k += 1
        }
    });
    k as f64 / pred.len() as f64
}

/// The losses a classifier can be trained with, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// [`softmax_loss`]
    Softmax,
    /// [`svm_loss`]
    Svm,
    /// [`mse_loss`] against one-hot targets
    Mse,
    /// [`huber_loss`] (delta 1) against one-hot targets
    Huber,
    /// [`clipped_mse_loss`] against one-hot targets
    ClippedMse,
}

impl Loss {
    /// The name used in TOML files.
    pub fn name(self) -> &'static str {
        match self {
            Loss::Softmax => "softmax",
            Loss::Svm => "svm",
            Loss::Mse => "mse",
            Loss::Huber => "huber",
            Loss::ClippedMse => "clipped_mse",
        }
    }

    /// Loss and gradient of class scores (N, C) against labels (length N). Regression
    /// losses compare the scores with one-hot targets.
    pub fn classify<F: Float>(self, scores: &Array2<F>, y: &[usize]) -> (F, Array2<F>) {
        match self {
            Loss::Softmax => softmax_loss(scores, y),
            Loss::Svm => svm_loss(scores, y),
            Loss::Mse | Loss::Huber | Loss::ClippedMse => {
                let mut t = Array2::zeros(scores.raw_dim());
                for (i, &c) in y.iter().enumerate() {
                    t[[i, c]] = F::one();
                }
                match self {
                    Loss::Mse => mse_loss(scores, &t),
                    Loss::Huber => huber_loss(scores, &t, F::one()),
                    _ => clipped_mse_loss(scores, &t),
                }
            }
        }
    }

    /// The loss a classifier with C classes and uniform predictions should start near
    /// (softmax: ln C; SVM: C - 1), if the loss has one; used by `bad_init_loss`.
    pub fn expected_initial(self, classes: usize) -> Option<f64> {
        match self {
            Loss::Softmax => Some((classes as f64).ln()),
            Loss::Svm => Some(classes as f64 - 1.0),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_scalar;
    use crate::layers::testutil::assert_good;
    use crate::tensor::{randn, rng};
    use ndarray::{Array1, Array2};

    fn labels(n: usize, c: usize) -> Vec<usize> {
        (0..n).map(|i| (i * 3 + 1) % c).collect()
    }

    #[test]
    fn classification_losses_gradient_check() {
        let mut r = rng(21);
        for (n, c) in [(1usize, 3usize), (5, 4), (8, 10)] {
            let s: Array2<f64> = randn((n, c), 1.0, &mut r);
            let y = labels(n, c);
            let (_, ds) = softmax_loss(&s, &y);
            assert_good(&check_scalar("softmax dscores", |s| softmax_loss(s, &y).0, &s, &ds));
            let (_, ds) = svm_loss(&s, &y);
            assert_good(&check_scalar("svm dscores", |s| svm_loss(s, &y).0, &s, &ds));
        }
    }

    #[test]
    fn regression_losses_gradient_check() {
        let mut r = rng(22);
        for shape in [(1usize, 1usize), (4, 3), (16, 2)] {
            let p: Array2<f64> = randn(shape, 1.5, &mut r);
            let t: Array2<f64> = randn(shape, 1.0, &mut r);
            let (_, g) = mse_loss(&p, &t);
            assert_good(&check_scalar("mse dpred", |p| mse_loss(p, &t).0, &p, &g));
            let (_, g) = huber_loss(&p, &t, 1.0);
            assert_good(&check_scalar("huber dpred", |p| huber_loss(p, &t, 1.0).0, &p, &g));
            let (_, g) = clipped_mse_loss(&p, &t);
            assert_good(&check_scalar("clipped_mse dpred", |p| clipped_mse_loss(p, &t).0, &p, &g));
        }
    }

    #[test]
    fn softmax_at_uniform_scores_is_ln_c() {
        let (loss, _) = softmax_loss(&Array2::<f64>::zeros((7, 10)), &labels(7, 10));
        assert!((loss - 10f64.ln()).abs() < 1e-12);
        let (loss, _) = svm_loss(&Array2::<f64>::zeros((7, 10)), &labels(7, 10));
        assert!((loss - 9.0).abs() < 1e-12);
    }

    #[test]
    fn softmax_is_stable_for_huge_scores() {
        let s = ndarray::array![[1000.0f32, 0.0], [0.0, -1000.0]];
        let (loss, ds) = softmax_loss(&s, &[0, 1]);
        assert!(loss.is_finite() && ds.iter().all(|v| v.is_finite()));
        assert!((loss - 500.0).abs() < 1e-3);
    }

    #[test]
    fn clipped_mse_gradient_vanishes_beyond_the_clip_and_huber_does_not() {
        // d = -2..2 step 0.25: gradient of sum(clip(d)^2) is 2d inside [-1, 1], 0 outside.
        let d: Array1<f64> = Array1::from_shape_fn(17, |i| -2.0 + 0.25 * i as f64);
        let zero = Array1::zeros(17);
        let (_, g) = clipped_mse_loss(&d, &zero);
        let (_, h) = huber_loss(&d, &zero, 1.0);
        for i in 0..17 {
            let (di, gi) = (d[i], g[i] * 17.0);
            if di.abs() > 1.0 {
                assert_eq!(gi, 0.0, "d = {di}");
                assert_eq!(h[i] * 17.0, di.signum(), "huber keeps pushing at d = {di}");
            } else {
                assert!((gi - 2.0 * di).abs() < 1e-12, "d = {di}");
                assert!((h[i] * 17.0 - di).abs() < 1e-12);
            }
        }
        assert!((clipped_share(&d, &zero) - 8.0 / 17.0).abs() < 1e-12);
    }
}
