//! Layers as explicit forward/backward pairs, the CS231n way.
//!
//! Every layer family is one file with free functions:
//!
//! * `forward(inputs...) -> (out, Cache)`: the output and a typed cache of exactly what
//!   the backward pass needs;
//! * `backward(dout, &cache, params...) -> grads`: one gradient per input, in input order.
//!   Parameters (weights) are passed to `backward` again rather than copied into the cache.
//!
//! Dimension letters used in the shape docs: N = batch, D = input features, M = output
//! features, C = channels, H/W = height/width, HH/WW = filter height/width, F = filters,
//! T = time steps.
//!
//! All functions are generic over [`crate::tensor::Float`] (`f32` and `f64`). The
//! [`crate::nn::Layer`] trait wraps them for composition; tests at the bottom of each file
//! check every gradient numerically in f64.

pub mod activation;
pub mod affine;
pub mod batchnorm;
pub mod clip;
pub mod conv;
pub mod dropout;
pub mod embedding;
pub mod flatten;
pub mod gather;
pub mod layernorm;
pub mod lstm;
pub mod pool;
pub mod rnn;
pub mod temporal;

#[cfg(test)]
pub(crate) mod testutil {
    use crate::gradcheck::CheckReport;

    /// Assert a gradient check is good (<= 1e-7) and print it for the test log.
    pub fn assert_good(r: &CheckReport) {
        println!("{:<28} rel_error {:.3e} ({} checked, {} kinks)", r.name, r.max_rel_error, r.checked, r.kinks);
        assert!(r.is_good(), "gradient check failed: {r:?}");
    }
}
