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
//!
//! # One kernel per op
//! Each op has exactly one forward kernel and one local-gradient function, and every place
//! in the crate that applies the op calls them: the free functions below, the
//! [`Nonlinearity`] layer (which works in place on the arrays it owns), the RNN and LSTM
//! cells ([`crate::layers::rnn`], [`crate::layers::lstm`]) and the scalar graph
//! ([`crate::graph`]). So the numerical gradient checks of the free functions and of the
//! models check the code that training runs.
//!
//! * forward: [`relu`], [`leaky_relu`], [`sigmoid`] / [`Float::sigmoid_in_place`] and
//!   [`Float::tanh_in_place`] (per value or over a slice; in f64 both are exact to the last
//!   bit, in f32 they are vectorisable approximations within a few ulps, see
//!   [`crate::tensor::sigmoid_f32_fast`] and [`crate::tensor::tanh_f32_fast`]);
//! * backward: [`relu_backprop`], [`leaky_relu_backprop`], [`sigmoid_backprop`],
//!   [`tanh_backprop`]: `dout` times the local gradient, for one value.

use crate::nn::{Activation, Layer, Mode};
use crate::parallel;
use crate::tensor::{Float, Tensor};

/// The negative-side slope of [`Activation::LeakyRelu`] (PyTorch's default, 0.01).
pub const LEAKY_RELU_SLOPE: f64 = 0.01;

// ---------------------------------------------------------------------------------------
// the kernels: one forward and one local gradient per op
// ---------------------------------------------------------------------------------------

/// `max(0, x)`; NaN stays NaN (as in numpy and PyTorch) instead of being hidden as 0.
#[inline]
pub fn relu<F: Float>(x: F) -> F {
    if x.is_nan() || x > F::zero() {
        x
    } else {
        F::zero()
    }
}

/// `dout * 1[x > 0]` for the ReLU input `x` (the gradient at exactly 0 is taken as 0; a
/// NaN input passes `dout` on).
#[inline]
pub fn relu_backprop<F: Float>(dout: F, x: F) -> F {
    if x <= F::zero() {
        F::zero()
    } else {
        dout
    }
}

/// `x` for x > 0, `alpha * x` otherwise.
#[inline]
pub fn leaky_relu<F: Float>(x: F, alpha: F) -> F {
    if x > F::zero() {
        x
    } else {
        alpha * x
    }
}

/// `dout * (1 if x > 0 else alpha)` for the leaky ReLU input `x`.
#[inline]
pub fn leaky_relu_backprop<F: Float>(dout: F, x: F, alpha: F) -> F {
    if x <= F::zero() {
        dout * alpha
    } else {
        dout
    }
}

/// The logistic function `1 / (1 + exp(-x))` of one value, in its numerically stable form
/// (`e = exp(-|x|)`, then `1 / (1 + e)` or `e / (1 + e)`, so `exp` never overflows). This is
/// the crate's one sigmoid: [`Float::sigmoid`], the same function as the slice kernel
/// [`Float::sigmoid_in_place`] that the layers run.
#[inline]
pub fn sigmoid<F: Float>(x: F) -> F {
    F::sigmoid(x)
}

/// `dout * z (1 - z)` for the sigmoid output `z`; the local gradient is at most 0.25.
#[inline]
pub fn sigmoid_backprop<F: Float>(dout: F, z: F) -> F {
    dout * (z * (F::one() - z))
}

/// `tanh` of one value: the same function as the slice kernel [`Float::tanh_in_place`].
#[inline]
pub fn tanh<F: Float>(x: F) -> F {
    F::tanh_value(x)
}

/// `dout * (1 - t^2)` for the tanh output `t`.
#[inline]
pub fn tanh_backprop<F: Float>(dout: F, t: F) -> F {
    dout * (F::one() - t * t)
}

/// Apply a slice kernel to every element of `x` in place (in memory order; arrays that are
/// not contiguous go element by element through `one`). Large tensors are cut into chunks
/// processed in parallel on the thread pool.
fn map_in_place<F: Float>(x: &mut Tensor<F>, slice: impl Fn(&mut [F]) + Sync + Send, one: impl Fn(F) -> F) {
    match x.as_slice_memory_order_mut() {
        Some(xs) => parallel::for_each_chunk(xs, slice),
        None => x.mapv_inplace(one),
    }
}

/// `dout[i] = backprop(dout[i], cached[i])` for every element (`dout` and `cached` of the
/// same shape); in parallel on large tensors.
fn backprop_in_place<F: Float>(dout: &mut Tensor<F>, cached: &Tensor<F>, backprop: impl Fn(F, F) -> F + Sync + Send) {
    assert_eq!(
        dout.shape(),
        cached.shape(),
        "activation: dout {:?} does not match the forward {:?}",
        dout.shape(),
        cached.shape()
    );
    parallel::zip_in_place(dout, cached, backprop);
}

// ---------------------------------------------------------------------------------------
// forward/backward pairs
// ---------------------------------------------------------------------------------------

/// Cache of [`relu_forward`] / [`leaky_relu_forward`]: the input `x`.
#[derive(Clone, Debug)]
pub struct ReluCache<F> {
    /// The input, any shape.
    pub x: Tensor<F>,
}

/// ReLU forward: `out = max(0, x)` ([`relu`]). `x`: any shape.
pub fn relu_forward<F: Float>(x: Tensor<F>) -> (Tensor<F>, ReluCache<F>) {
    let out = parallel::map(&x, relu);
    (out, ReluCache { x })
}

/// ReLU backward in place: `dout *= 1[x > 0]` ([`relu_backprop`]). `dout`: the forward's shape.
pub fn relu_backward_in_place<F: Float>(dout: &mut Tensor<F>, cache: &ReluCache<F>) {
    backprop_in_place(dout, &cache.x, relu_backprop);
}

/// ReLU backward: `dx = dout * 1[x > 0]` (the gradient at exactly 0 is taken as 0).
pub fn relu_backward<F: Float>(dout: &Tensor<F>, cache: &ReluCache<F>) -> Tensor<F> {
    let mut dx = dout.clone();
    relu_backward_in_place(&mut dx, cache);
    dx
}

/// Leaky ReLU forward: `out = x` for x > 0, `alpha * x` otherwise ([`leaky_relu`]). `x`: any shape.
pub fn leaky_relu_forward<F: Float>(x: Tensor<F>, alpha: F) -> (Tensor<F>, ReluCache<F>) {
    let out = parallel::map(&x, |v| leaky_relu(v, alpha));
    (out, ReluCache { x })
}

/// Leaky ReLU backward in place ([`leaky_relu_backprop`]). `dout`: the forward's shape.
pub fn leaky_relu_backward_in_place<F: Float>(dout: &mut Tensor<F>, cache: &ReluCache<F>, alpha: F) {
    backprop_in_place(dout, &cache.x, |d, x| leaky_relu_backprop(d, x, alpha));
}

/// Leaky ReLU backward: `dx = dout * (1 if x > 0 else alpha)`.
pub fn leaky_relu_backward<F: Float>(dout: &Tensor<F>, cache: &ReluCache<F>, alpha: F) -> Tensor<F> {
    let mut dx = dout.clone();
    leaky_relu_backward_in_place(&mut dx, cache, alpha);
    dx
}

/// Cache of [`sigmoid_forward`] and [`tanh_forward`]: the output, from which the local
/// gradient follows (z(1-z), 1-t^2).
#[derive(Clone, Debug)]
pub struct OutputCache<F> {
    /// The forward output, any shape.
    pub out: Tensor<F>,
}

/// Sigmoid forward: `z = 1 / (1 + exp(-x))` ([`Float::sigmoid_in_place`]). `x`: any shape.
pub fn sigmoid_forward<F: Float>(mut x: Tensor<F>) -> (Tensor<F>, OutputCache<F>) {
    map_in_place(&mut x, F::sigmoid_in_place, F::sigmoid);
    (x.clone(), OutputCache { out: x })
}

/// Sigmoid backward in place ([`sigmoid_backprop`]). `dout`: the forward's shape.
pub fn sigmoid_backward_in_place<F: Float>(dout: &mut Tensor<F>, cache: &OutputCache<F>) {
    backprop_in_place(dout, &cache.out, sigmoid_backprop);
}

/// Sigmoid backward: `dx = dout * z * (1 - z)`; the local gradient is at most 0.25.
pub fn sigmoid_backward<F: Float>(dout: &Tensor<F>, cache: &OutputCache<F>) -> Tensor<F> {
    let mut dx = dout.clone();
    sigmoid_backward_in_place(&mut dx, cache);
    dx
}

/// Tanh forward ([`Float::tanh_in_place`]). `x`: any shape.
pub fn tanh_forward<F: Float>(mut x: Tensor<F>) -> (Tensor<F>, OutputCache<F>) {
    map_in_place(&mut x, F::tanh_in_place, tanh);
    (x.clone(), OutputCache { out: x })
}

/// Tanh backward in place ([`tanh_backprop`]). `dout`: the forward's shape.
pub fn tanh_backward_in_place<F: Float>(dout: &mut Tensor<F>, cache: &OutputCache<F>) {
    backprop_in_place(dout, &cache.out, tanh_backprop);
}

/// Tanh backward: `dx = dout * (1 - t^2)`.
pub fn tanh_backward<F: Float>(dout: &Tensor<F>, cache: &OutputCache<F>) -> Tensor<F> {
    let mut dx = dout.clone();
    tanh_backward_in_place(&mut dx, cache);
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
        // The free functions' kernels, applied in place to the owned `dout`.
        let missing = "activation: backward called before forward";
        match self.kind {
            Activation::Relu => relu_backward_in_place(&mut dout, self.relu_cache.as_ref().expect(missing)),
            Activation::LeakyRelu => leaky_relu_backward_in_place(
                &mut dout,
                self.relu_cache.as_ref().expect(missing),
                F::from_f64c(LEAKY_RELU_SLOPE),
            ),
            Activation::Sigmoid => sigmoid_backward_in_place(&mut dout, self.out_cache.as_ref().expect(missing)),
            Activation::Tanh => tanh_backward_in_place(&mut dout, self.out_cache.as_ref().expect(missing)),
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

    const KINDS: [Activation; 4] = [Activation::Relu, Activation::LeakyRelu, Activation::Sigmoid, Activation::Tanh];

    /// The layer as training runs it (forward, then backward in place on the owned `dout`),
    /// gradient-checked in f64 through the `Layer` trait, for every kind.
    #[test]
    fn the_layer_passes_its_gradient_check() {
        let mut r = rng(5);
        for shape in [vec![1, 6], vec![4, 3, 2]] {
            let x: Tensor<f64> = randn(IxDyn(&shape), 2.0, &mut r);
            let dout: Tensor<f64> = randn(IxDyn(&shape), 1.0, &mut r);
            for kind in KINDS {
                let mut layer = Nonlinearity::<f64>::new(kind);
                layer.forward(x.clone(), Mode::Train);
                let dx = layer.backward(dout.clone());
                let fwd = |x: &Tensor<f64>| Nonlinearity::<f64>::new(kind).forward(x.clone(), Mode::Train);
                assert_good(&check_array(&format!("{} layer dx", kind.name()), fwd, &x, &dout, &dx));
            }
        }
    }

    /// Every kind inside a model, as training runs it (`Sequential` forward, then backward in
    /// place layer by layer): the input gradient and every parameter gradient against
    /// numerical ones in f64.
    #[test]
    fn every_activation_in_a_model_passes_its_gradient_check() {
        use crate::layers::affine::Affine;
        use crate::nn::Sequential;
        use crate::tensor::Init;
        let mut r = rng(8);
        let init = Init::Normal { std: 0.8 };
        let net = Sequential::<f64>::new()
            .push(Affine::new(5, 6, init, 0.1, &mut r))
            .push(Nonlinearity::new(Activation::Sigmoid))
            .push(Affine::new(6, 5, init, 0.1, &mut r))
            .push(Nonlinearity::new(Activation::LeakyRelu))
            .push(Affine::new(5, 4, init, 0.1, &mut r))
            .push(Nonlinearity::new(Activation::Tanh))
            .push(Affine::new(4, 3, init, 0.1, &mut r))
            .push(Nonlinearity::new(Activation::Relu));
        let x: Tensor<f64> = randn(IxDyn(&[4, 5]), 1.0, &mut r);
        let dout: Tensor<f64> = randn(IxDyn(&[4, 3]), 1.0, &mut r);
        let mut net = net;
        // Both sides of the leaky ReLU (and of the final ReLU) are exercised.
        let mut a = x.clone();
        for (i, layer) in net.layers.iter_mut().enumerate() {
            if i == 3 || i == 7 {
                assert!(a.iter().any(|&v| v < -1e-3) && a.iter().any(|&v| v > 1e-3), "layer {i} input {a:?}");
            }
            a = layer.forward(a, Mode::Train);
        }
        let net = std::cell::RefCell::new(net);
        net.borrow_mut().forward(x.clone(), Mode::Train);
        let dx = net.borrow_mut().backward(dout.clone());
        let run = |x: &Tensor<f64>| net.borrow_mut().forward(x.clone(), Mode::Train);
        assert_good(&check_array("model dx", run, &x, &dout, &dx));
        let params: Vec<(String, Tensor<f64>, Tensor<f64>)> = net
            .borrow()
            .params()
            .iter()
            .map(|(i, p)| (format!("model d{i}.{}", p.name), p.value.clone(), p.grad.clone()))
            .collect();
        assert_eq!(params.len(), 8);
        for (k, (name, value, grad)) in params.iter().enumerate() {
            let run = |v: &Tensor<f64>| {
                let mut net = net.borrow_mut();
                net.params_mut()[k].value = v.clone();
                net.forward(x.clone(), Mode::Train)
            };
            assert_good(&check_array(name, run, value, &dout, grad));
            net.borrow_mut().params_mut()[k].value = value.clone();
        }
    }

    /// The layer and the free functions give the same bits in f32 and f64 (one kernel), also
    /// for an input that is not contiguous in memory (the element-by-element path).
    #[test]
    fn the_layer_and_the_free_functions_agree_bit_for_bit() {
        fn check<F: Float>() {
            let mut r = rng(6);
            let mut wide: Tensor<F> = randn(IxDyn(&[3, 8]), 3.0, &mut r);
            let dout: Tensor<F> = randn(IxDyn(&[3, 4]), 1.0, &mut r);
            let contiguous = wide.slice(ndarray::s![.., ..;2]).to_owned().into_dyn();
            wide.slice_collapse(ndarray::s![.., ..;2]);
            assert!(wide.as_slice_memory_order().is_none());
            for x in [contiguous, wide] {
                let alpha = F::from_f64c(LEAKY_RELU_SLOPE);
                let free: Vec<(Tensor<F>, Tensor<F>)> = vec![
                    {
                        let (o, c) = relu_forward(x.clone());
                        (o, relu_backward(&dout, &c))
                    },
                    {
                        let (o, c) = leaky_relu_forward(x.clone(), alpha);
                        (o, leaky_relu_backward(&dout, &c, alpha))
                    },
                    {
                        let (o, c) = sigmoid_forward(x.clone());
                        (o, sigmoid_backward(&dout, &c))
                    },
                    {
                        let (o, c) = tanh_forward(x.clone());
                        (o, tanh_backward(&dout, &c))
                    },
                ];
                for (kind, (want_out, want_dx)) in KINDS.into_iter().zip(free) {
                    let mut layer = Nonlinearity::<F>::new(kind);
                    let out = layer.forward(x.clone(), Mode::Train);
                    let dx = layer.backward(dout.clone());
                    assert_eq!(out, want_out, "{} {} forward", F::NAME, kind.name());
                    assert_eq!(dx, want_dx, "{} {} backward", F::NAME, kind.name());
                    // and the per-value kernels
                    let one = x.mapv(|v| match kind {
                        Activation::Relu => relu(v),
                        Activation::LeakyRelu => leaky_relu(v, alpha),
                        Activation::Sigmoid => sigmoid(v),
                        Activation::Tanh => tanh(v),
                    });
                    assert_eq!(out, one, "{} {} per value", F::NAME, kind.name());
                }
            }
        }
        check::<f32>();
        check::<f64>();
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
