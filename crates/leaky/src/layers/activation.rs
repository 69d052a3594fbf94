//! Elementwise nonlinearities: ReLU, leaky ReLU, sigmoid, tanh.
//!
//! Each local derivative sits right below its forward:
//!
//! | op | forward | local gradient | where the gradient dies |
//! |---|---|---|---|
//! | relu | max(0, x) | 1\[x > 0\] | every x <= 0 (a unit that is never positive is dead) |
//! | leaky_relu | x if x > 0 else a*x | 1 or a | nowhere |
//! | sigmoid | z = 1/(1+e^-x) | z(1-z) <= 0.25 | \|x\| large: z(1-z) ~ 0 (saturation) |
//! | tanh | t = tanh(x) | 1 - t^2 <= 1 | \|x\| large |
//!
//! All take and return any shape: `x`, `out`, `dout` and `dx` share one shape.

use crate::nn::{Activation, Layer, Mode};
use crate::tensor::{Float, Tensor};

/// The negative-side slope of [`Activation::LeakyRelu`] (PyTorch's default, 0.01).
pub const LEAKY_RELU_SLOPE: f64 = 0.01;
use ndarray::Zip;

/// Cache of [`relu_forward`] / [`leaky_relu_forward`]: the input `x`.
#[derive(Clone, Debug)]
pub struct ReluCache<F> {
    /// The input, any shape.
    pub x: Tensor<F>,
}

/// ReLU forward: `out = max(0, x)`. `x`: any shape.
pub fn relu_forward<F: Float>(x: Tensor<F>) -> (Tensor<F>, ReluCache<F>) {
    // NaN stays NaN (as in numpy and PyTorch) instead of being hidden as 0.
    let out = x.mapv(|v| if v.is_nan() || v > F::zero() { v } else { F::zero() });
    (out, ReluCache { x })
}

/// ReLU backward: `dx = dout * 1[x > 0]` (the gradient at exactly 0 is taken as 0).
pub fn relu_backward<F: Float>(dout: &Tensor<F>, cache: &ReluCache<F>) -> Tensor<F> {
    let mut dx = dout.clone();
    Zip::from(&mut dx).and(&cache.x).for_each(|d, &x| {
        if x <= F::zero() {
            *d = F::zero()
        }
    });
    dx
}

/// Leaky ReLU forward: `out = x` for x > 0, `alpha * x` otherwise. `x`: any shape.
pub fn leaky_relu_forward<F: Float>(x: Tensor<F>, alpha: F) -> (Tensor<F>, ReluCache<F>) {
    let out = x.mapv(|v| if v > F::zero() { v } else { alpha * v });
    (out, ReluCache { x })
}

/// Leaky ReLU backward: `dx = dout * (1 if x > 0 else alpha)`.
pub fn leaky_relu_backward<F: Float>(dout: &Tensor<F>, cache: &ReluCache<F>, alpha: F) -> Tensor<F> {
    let mut dx = dout.clone();
    Zip::from(&mut dx).and(&cache.x).for_each(|d, &x| {
        if x <= F::zero() {
            *d *= alpha
        }
    });
    dx
}

/// Cache of [`sigmoid_forward`] and [`tanh_forward`]: the output, from which the local
/// gradient follows (z(1-z), 1-t^2).
#[derive(Clone, Debug)]
pub struct OutputCache<F> {
    /// The forward output, any shape.
    pub out: Tensor<F>,
}

/// Numerically stable logistic function of one value.
#[inline]
pub fn sigmoid<F: Float>(x: F) -> F {
    if x >= F::zero() {
        F::one() / (F::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (F::one() + e)
    }
}

/// Sigmoid forward: `z = 1 / (1 + exp(-x))`. `x`: any shape.
pub fn sigmoid_forward<F: Float>(x: Tensor<F>) -> (Tensor<F>, OutputCache<F>) {
    let out = x.mapv(sigmoid);
    (out.clone(), OutputCache { out })
}

/// Sigmoid backward: `dx = dout * z * (1 - z)`; the local gradient is at most 0.25.
pub fn sigmoid_backward<F: Float>(dout: &Tensor<F>, cache: &OutputCache<F>) -> Tensor<F> {
    let mut dx = dout.clone();
    Zip::from(&mut dx).and(&cache.out).for_each(|d, &z| *d *= z * (F::one() - z));
    dx
}

/// Tanh forward. `x`: any shape.
pub fn tanh_forward<F: Float>(x: Tensor<F>) -> (Tensor<F>, OutputCache<F>) {
    let out = x.mapv(|v| v.tanh());
    (out.clone(), OutputCache { out })
}

/// Tanh backward: `dx = dout * (1 - t^2)`.
pub fn tanh_backward<F: Float>(dout: &Tensor<F>, cache: &OutputCache<F>) -> Tensor<F> {
    let mut dx = dout.clone();
    Zip::from(&mut dx).and(&cache.out).for_each(|d, &t| *d *= F::one() - t * t);
    dx
}

/// An elementwise nonlinearity as a [`Layer`] (no parameters).
pub struct Nonlinearity<F: Float> {
    kind: Activation,
    relu_cache: Option<ReluCache<F>>,
    out_cache: Option<OutputCache<F>>,
}

impl<F: Float> Nonlinearity<F> {
    /// A layer applying `kind` elementwise.
    pub fn new(kind: Activation) -> Self {
        Nonlinearity { kind, relu_cache: None, out_cache: None }
    }
}

impl<F: Float> Layer<F> for Nonlinearity<F> {
    fn kind(&self) -> &'static str {
        self.kind.name()
    }

    fn activation(&self) -> Option<&'static str> {
        Some(self.kind.name())
    }

    fn preserves_finite(&self) -> bool {
        true
    }

    fn forward(&mut self, x: Tensor<F>, _mode: Mode) -> Tensor<F> {
        let (out, rc, oc) = match self.kind {
            Activation::Relu => {
                let (o, c) = relu_forward(x);
                (o, Some(c), None)
            }
            Activation::LeakyRelu => {
                let (o, c) = leaky_relu_forward(x, F::from_f64c(LEAKY_RELU_SLOPE));
                (o, Some(c), None)
            }
            Activation::Sigmoid => {
                let (o, c) = sigmoid_forward(x);
                (o, None, Some(c))
            }
            Activation::Tanh => {
                let (o, c) = tanh_forward(x);
                (o, None, Some(c))
            }
        };
        self.relu_cache = rc;
        self.out_cache = oc;
        out
    }

    fn backward(&mut self, mut dout: Tensor<F>) -> Tensor<F> {
        // The same local gradients as the free functions above, applied in place to the
        // owned `dout` (no new array per step).
        let missing = "activation: backward called before forward";
        let one = F::one();
        match self.kind {
            Activation::Relu => {
                let x = &self.relu_cache.as_ref().expect(missing).x;
                Zip::from(&mut dout).and(x).for_each(|d, &x| {
                    if x <= F::zero() {
                        *d = F::zero()
                    }
                });
            }
            Activation::LeakyRelu => {
                let alpha = F::from_f64c(LEAKY_RELU_SLOPE);
                let x = &self.relu_cache.as_ref().expect(missing).x;
                Zip::from(&mut dout).and(x).for_each(|d, &x| {
                    if x <= F::zero() {
                        *d *= alpha
                    }
                });
            }
            Activation::Sigmoid => {
                let z = &self.out_cache.as_ref().expect(missing).out;
                Zip::from(&mut dout).and(z).for_each(|d, &z| *d *= z * (one - z));
            }
            Activation::Tanh => {
                let t = &self.out_cache.as_ref().expect(missing).out;
                Zip::from(&mut dout).and(t).for_each(|d, &t| *d *= one - t * t);
            }
        }
        dout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_array;
    use crate::layers::testutil::assert_good;
    use crate::tensor::{randn, rng};
    use ndarray::IxDyn;

    #[test]
    fn gradients_on_random_shapes() {
        let mut r = rng(11);
        for shape in [vec![1, 4], vec![3, 5], vec![2, 3, 4, 2]] {
            let x: Tensor<f64> = randn(IxDyn(&shape), 2.0, &mut r);
            let dout: Tensor<f64> = randn(IxDyn(&shape), 1.0, &mut r);
            let (_, c) = relu_forward(x.clone());
            assert_good(&check_array("relu dx", |x| relu_forward(x.clone()).0, &x, &dout, &relu_backward(&dout, &c)));
            let (_, c) = leaky_relu_forward(x.clone(), 0.01);
            let dx = leaky_relu_backward(&dout, &c, 0.01);
            assert_good(&check_array("leaky_relu dx", |x| leaky_relu_forward(x.clone(), 0.01).0, &x, &dout, &dx));
            let (_, c) = sigmoid_forward(x.clone());
            assert_good(&check_array(
                "sigmoid dx",
                |x| sigmoid_forward(x.clone()).0,
                &x,
                &dout,
                &sigmoid_backward(&dout, &c),
            ));
            let (_, c) = tanh_forward(x.clone());
            assert_good(&check_array("tanh dx", |x| tanh_forward(x.clone()).0, &x, &dout, &tanh_backward(&dout, &c)));
        }
    }

    #[test]
    fn relu_kink_is_reported_separately() {
        let x = Tensor::from_shape_vec(IxDyn(&[1, 3]), vec![2e-6, 1.0, -1.0]).unwrap();
        let dout = Tensor::from_elem(IxDyn(&[1, 3]), 1.0);
        let (_, c) = relu_forward(x.clone());
        let r = check_array("relu at kink", |x| relu_forward(x.clone()).0, &x, &dout, &relu_backward(&dout, &c));
        assert_eq!(r.kinks, 1);
        assert!(r.is_good());
    }

    #[test]
    fn nan_stays_nan() {
        let x = Tensor::from_shape_vec(IxDyn(&[2]), vec![f64::NAN, 1.0]).unwrap();
        assert!(relu_forward(x.clone()).0[0].is_nan());
        assert!(leaky_relu_forward(x.clone(), 0.01).0[0].is_nan());
        assert!(sigmoid_forward(x.clone()).0[0].is_nan());
        assert!(tanh_forward(x).0[0].is_nan());
    }

    #[test]
    fn sigmoid_is_stable_and_saturates() {
        assert_eq!(sigmoid(1000.0f64), 1.0);
        assert_eq!(sigmoid(-1000.0f64), 0.0);
        assert!((sigmoid(0.0f32) - 0.5).abs() < 1e-7);
        // local gradient at x = 10 is ~4.5e-5, 5500x below its maximum 0.25
        let z = sigmoid(10.0f64);
        assert!(z * (1.0 - z) < 5e-5);
    }

    #[test]
    fn f32_agrees_with_f64() {
        let x64: Tensor<f64> = randn(IxDyn(&[4, 6]), 3.0, &mut rng(2));
        let x32: Tensor<f32> = crate::tensor::cast(&x64);
        for (a, b) in sigmoid_forward(x64.clone()).0.iter().zip(sigmoid_forward(x32.clone()).0.iter()) {
            assert!((a - *b as f64).abs() < 1e-6);
        }
        for (a, b) in tanh_forward(x64).0.iter().zip(tanh_forward(x32).0.iter()) {
            assert!((a - *b as f64).abs() < 1e-6);
        }
    }
}
