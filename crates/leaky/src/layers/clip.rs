//! Ops with flat regions, kept for what they do to the gradient.
//!
//! * `clip` (TensorFlow's `clip_by_value`): `out = min(max(x, lo), hi)`; its gradient is
//!   **zero strictly outside [lo, hi]**. Clipping a TD error this way silently gives zero
//!   gradient wherever the error is large: the DQN bug.
//! * `grad_clip`: the identity forward, and the *gradient* clipped to [lo, hi] backward:
//!   what the DQN authors meant. Applied to the per-sample error term it equals the Huber
//!   loss gradient.
//!
//! `x`, `out`, `dout`, `dx`: any shape, all the same.

use crate::tensor::{Float, Tensor};
use ndarray::Zip;

/// Cache of [`clip_forward`]: the input and the bounds.
#[derive(Clone, Debug)]
pub struct ClipCache<F> {
    /// The input, any shape.
    pub x: Tensor<F>,
    /// Lower bound.
    pub lo: F,
    /// Upper bound.
    pub hi: F,
}

/// Clip forward: `out = min(max(x, lo), hi)`. Requires `lo <= hi`.
pub fn clip_forward<F: Float>(x: Tensor<F>, lo: F, hi: F) -> (Tensor<F>, ClipCache<F>) {
    assert!(lo <= hi, "clip: lo must not exceed hi");
    // Comparisons keep NaN as NaN; `max`/`min` would turn it into a bound.
    let out = x.mapv(|v| {
        if v < lo {
            lo
        } else if v > hi {
            hi
        } else {
            v
        }
    });
    (out, ClipCache { x, lo, hi })
}

/// Clip backward: `dx = dout` where `lo <= x <= hi`, exactly 0 strictly outside.
pub fn clip_backward<F: Float>(dout: &Tensor<F>, cache: &ClipCache<F>) -> Tensor<F> {
    let mut dx = dout.clone();
    Zip::from(&mut dx).and(&cache.x).for_each(|d, &x| {
        if x < cache.lo || x > cache.hi {
            *d = F::zero()
        }
    });
    dx
}

/// The share of elements of a clip input whose gradient the clip zeroed (|x| outside the
/// bounds); what the doctor's `zero_gradient` finding reports.
pub fn clip_zeroed_fraction<F: Float>(cache: &ClipCache<F>) -> f64 {
    if cache.x.is_empty() {
        return 0.0;
    }
    cache.x.iter().filter(|&&x| x < cache.lo || x > cache.hi).count() as f64 / cache.x.len() as f64
}

/// Gradient-clip forward: the identity. `x`: any shape.
pub fn grad_clip_forward<F: Float>(x: Tensor<F>) -> Tensor<F> {
    x
}

/// Gradient-clip backward: `dx = min(max(dout, lo), hi)`.
pub fn grad_clip_backward<F: Float>(dout: &Tensor<F>, lo: F, hi: F) -> Tensor<F> {
    assert!(lo <= hi, "grad_clip: lo must not exceed hi");
    dout.mapv(|d| {
        if d < lo {
            lo
        } else if d > hi {
            hi
        } else {
            d
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_array;
    use crate::layers::testutil::assert_good;
    use crate::tensor::{randn, rng};
    use ndarray::IxDyn;

    #[test]
    fn clip_gradient_check() {
        let mut r = rng(5);
        for shape in [vec![1, 3], vec![4, 7]] {
            let x: Tensor<f64> = randn(IxDyn(&shape), 2.0, &mut r);
            let dout: Tensor<f64> = randn(IxDyn(&shape), 1.0, &mut r);
            let (_, c) = clip_forward(x.clone(), -1.0, 1.0);
            let dx = clip_backward(&dout, &c);
            assert_good(&check_array("clip dx", |x| clip_forward(x.clone(), -1.0, 1.0).0, &x, &dout, &dx));
        }
    }

    #[test]
    fn clip_zero_strictly_outside_and_passes_on_the_bounds() {
        let x = Tensor::from_shape_vec(IxDyn(&[5]), vec![-2.0, -1.0, 0.5, 1.0, 3.0]).unwrap();
        let dout = Tensor::from_elem(IxDyn(&[5]), 1.0);
        let (out, c) = clip_forward(x, -1.0, 1.0);
        assert_eq!(out.as_slice().unwrap(), &[-1.0, -1.0, 0.5, 1.0, 1.0]);
        assert_eq!(clip_backward(&dout, &c).as_slice().unwrap(), &[0.0, 1.0, 1.0, 1.0, 0.0]);
        assert_eq!(clip_zeroed_fraction(&c), 0.4);
    }

    #[test]
    fn nan_stays_nan() {
        let x = Tensor::from_shape_vec(IxDyn(&[2]), vec![f64::NAN, 3.0]).unwrap();
        let (out, _) = clip_forward(x.clone(), -1.0, 1.0);
        assert!(out[0].is_nan());
        assert_eq!(out[1], 1.0);
        assert!(grad_clip_backward(&x, -1.0, 1.0)[0].is_nan());
    }

    #[test]
    fn grad_clip_of_the_error_term_equals_the_huber_gradient() {
        // Per-sample loss 0.5 d^2 has error term d; clipping that term backward gives
        // clip(d, -1, 1), which is n times the gradient of mean Huber(d).
        let d: Tensor<f64> = randn(IxDyn(&[50]), 2.0, &mut rng(9));
        let clipped = grad_clip_backward(&d, -1.0, 1.0);
        let d1 = d.clone().into_dimensionality::<ndarray::Ix1>().unwrap();
        let (_, huber) = crate::losses::huber_loss(&d1, &ndarray::Array1::zeros(50), 1.0);
        for (a, b) in clipped.iter().zip(huber.iter()) {
            assert!((a - 50.0 * b).abs() < 1e-12, "{a} vs {}", 50.0 * b);
        }
        assert!(d.iter().any(|v| v.abs() > 1.0), "some errors must lie beyond the clip");
    }

    #[test]
    fn grad_clip_is_identity_forward_and_clips_backward() {
        let x = Tensor::from_shape_vec(IxDyn(&[3]), vec![-5.0f64, 0.2, 7.0]).unwrap();
        assert_eq!(grad_clip_forward(x.clone()), x);
        let dout = Tensor::from_shape_vec(IxDyn(&[3]), vec![-3.0f64, 0.5, 2.0]).unwrap();
        assert_eq!(grad_clip_backward(&dout, -1.0, 1.0).as_slice().unwrap(), &[-1.0, 0.5, 1.0]);
    }
}
