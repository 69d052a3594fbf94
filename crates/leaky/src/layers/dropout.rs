//! Inverted dropout (Srivastava et al., 2014), CS231n's convention: `p` is the **keep**
//! probability.
//!
//! Train mode draws one uniform `U` per element and keeps the element when `U < p`,
//! scaling survivors by `1/p` so the expected output equals the input:
//!
//! ```text
//! mask = (U < p) / p          out = x * mask          dx = dout * mask
//! ```
//!
//! Eval mode is the identity (`out = x`, `dx = dout`); thanks to the `1/p` at train time
//! nothing has to be rescaled at test time. `x`, `out`, `dout`, `dx` and the mask share
//! one shape, any shape; `0 < p <= 1` (`p = 1` keeps everything).

use crate::nn::{Layer, Mode};
use crate::tensor::{Float, Rng64, RngState, Tensor};

/// What [`backward`] needs from [`forward`].
#[derive(Clone, Debug)]
pub struct DropoutCache<F> {
    /// The scaled mask (entries 0 or 1/p), same shape as the input; `None` in eval mode
    /// (identity).
    pub mask: Option<Tensor<F>>,
}

fn check_keep(p: f64) {
    assert!(p > 0.0 && p <= 1.0, "dropout: the keep probability p must be in (0, 1], got {p}");
}

/// Inverted dropout forward.
///
/// * `x`: any shape
/// * `p`: keep probability, `0 < p <= 1`
/// * `mode`: [`Mode::Train`] draws a mask from `rng` (one `f64` uniform per element, in
///   row-major order); [`Mode::Eval`] returns `x` unchanged and draws nothing
///
/// Returns `out` (shape of `x`) and the cache.
pub fn forward<F: Float>(x: &Tensor<F>, p: f64, mode: Mode, rng: &mut impl rand::Rng) -> (Tensor<F>, DropoutCache<F>) {
    check_keep(p);
    match mode {
        Mode::Eval => (x.clone(), DropoutCache { mask: None }),
        Mode::Train => {
            let keep = F::from_f64c(1.0 / p);
            let mask =
                Tensor::from_shape_simple_fn(x.raw_dim(), || if rng.random::<f64>() < p { keep } else { F::zero() });
            (x * &mask, DropoutCache { mask: Some(mask) })
        }
    }
}

/// Inverted dropout backward: `dx = dout * mask` (train), `dx = dout` (eval).
/// `dout`: the shape of the forward input; returns `dx` of the same shape.
pub fn backward<F: Float>(dout: &Tensor<F>, cache: &DropoutCache<F>) -> Tensor<F> {
    match &cache.mask {
        None => dout.clone(),
        Some(mask) => {
            assert_eq!(dout.shape(), mask.shape(), "dropout: dout shape differs from the input's");
            dout * mask
        }
    }
}

/// Inverted dropout as a [`Layer`] (no parameters), with its own seeded generator: the
/// k-th train-mode forward of two layers built with the same seed draws the same mask.
pub struct Dropout<F: Float> {
    p: f64,
    rng: Rng64,
    replay: Option<Rng64>,
    cache: Option<DropoutCache<F>>,
}

impl<F: Float> Dropout<F> {
    /// Keep each unit with probability `p` (CS231n convention), masks seeded by `seed`.
    /// Panics unless `0 < p <= 1`.
    pub fn new(p: f64, seed: u64) -> Self {
        check_keep(p);
        Dropout { p, rng: crate::tensor::rng(seed), replay: None, cache: None }
    }

    /// The keep probability.
    pub fn keep(&self) -> f64 {
        self.p
    }
}

impl<F: Float> Layer<F> for Dropout<F> {
    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn describe(&self) -> String {
        format!("dropout keep {}", self.p)
    }

    fn replay_randomness(&mut self, on: bool) {
        self.replay = on.then(|| self.rng.clone());
    }

    fn rng_state(&self) -> Option<RngState> {
        Some(RngState::of(&self.rng))
    }

    fn set_rng_state(&mut self, state: &RngState) {
        self.rng = state.generator();
    }

    fn forward(&mut self, x: Tensor<F>, mode: Mode) -> Tensor<F> {
        if let Some(r) = &self.replay {
            self.rng = r.clone();
        }
        let (out, cache) = forward(&x, self.p, mode, &mut self.rng);
        self.cache = Some(cache);
        out
    }

    fn backward(&mut self, dout: Tensor<F>) -> Tensor<F> {
        let cache = self.cache.as_ref().expect("dropout: backward called before forward");
        backward(&dout, cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_array;
    use crate::layers::testutil::assert_good;
    use crate::tensor::{cast, randn, rng};
    use ndarray::IxDyn;

    #[test]
    fn output_mean_matches_input_and_drop_fraction_is_one_minus_p() {
        // CS231n's check: x ~ randn(500, 500) + 10.
        let x: Tensor<f64> = randn(IxDyn(&[500, 500]), 1.0, &mut rng(0)) + 10.0;
        let mut r = rng(1);
        let mean_in = x.mean().unwrap();
        for p in [0.25, 0.4, 0.7] {
            let (out, _) = forward(&x, p, Mode::Train, &mut r);
            let mean_out = out.mean().unwrap();
            let zeroed = out.iter().filter(|&&v| v == 0.0).count() as f64 / out.len() as f64;
            println!(
                "dropout p={p}: mean in {mean_in:.4}, mean out {mean_out:.4}, zeroed {zeroed:.4} (1-p {})",
                1.0 - p
            );
            assert!((mean_out / mean_in - 1.0).abs() < 0.01, "p={p}: mean {mean_out} vs {mean_in}");
            assert!((zeroed - (1.0 - p)).abs() < 0.01, "p={p}: zeroed {zeroed}");
            let (eval, c) = forward(&x, p, Mode::Eval, &mut r);
            assert_eq!(eval, x);
            assert_eq!(backward(&x, &c), x);
        }
    }

    #[test]
    fn keep_everything_is_identity() {
        let x: Tensor<f64> = randn(IxDyn(&[7, 9]), 1.0, &mut rng(2));
        assert_eq!(forward(&x, 1.0, Mode::Train, &mut rng(3)).0, x);
    }

    #[test]
    fn gradients_with_a_fixed_mask() {
        let mut r = rng(4);
        for (i, shape) in [vec![1, 6], vec![4, 5], vec![2, 3, 4]].into_iter().enumerate() {
            let x: Tensor<f64> = randn(IxDyn(&shape), 1.0, &mut r);
            let dout: Tensor<f64> = randn(IxDyn(&shape), 1.0, &mut r);
            let seed = 50 + i as u64;
            let (_, c) = forward(&x, 0.6, Mode::Train, &mut rng(seed));
            let dx = backward(&dout, &c);
            let f = |x: &Tensor<f64>| forward(x, 0.6, Mode::Train, &mut rng(seed)).0;
            assert_good(&check_array(&format!("dropout {shape:?} dx"), f, &x, &dout, &dx));
            let (_, c) = forward(&x, 0.6, Mode::Eval, &mut r);
            let dx = backward(&dout, &c);
            let f = |x: &Tensor<f64>| forward(x, 0.6, Mode::Eval, &mut rng(0)).0;
            assert_good(&check_array(&format!("dropout eval {shape:?} dx"), f, &x, &dout, &dx));
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        let x: Tensor<f64> = randn(IxDyn(&[6, 10]), 3.0, &mut rng(5));
        let (o64, _) = forward(&x, 0.3, Mode::Train, &mut rng(6));
        let (o32, _) = forward(&cast::<f64, f32, _>(&x), 0.3, Mode::Train, &mut rng(6));
        let err = o64.iter().zip(o32.iter()).map(|(a, &b)| (a - b as f64).abs()).fold(0.0, f64::max);
        println!("dropout f32 vs f64: forward max abs diff {err:.2e}");
        assert!(err < 1e-5);
    }

    #[test]
    fn layer_is_seeded_and_draws_a_new_mask_each_step() {
        let x: Tensor<f64> = randn(IxDyn(&[8, 16]), 1.0, &mut rng(7));
        let dout: Tensor<f64> = randn(IxDyn(&[8, 16]), 1.0, &mut rng(8));
        let mut a = Dropout::<f64>::new(0.5, 42);
        let mut b = Dropout::<f64>::new(0.5, 42);
        assert_eq!(a.describe(), "dropout keep 0.5");
        let mut free_rng = rng(42);
        let (want, c) = forward(&x, 0.5, Mode::Train, &mut free_rng);
        let first = a.forward(x.clone(), Mode::Train);
        assert_eq!(first, want);
        assert_eq!(b.forward(x.clone(), Mode::Train), first);
        assert_eq!(a.backward(dout.clone()), backward(&dout, &c));
        let second = a.forward(x.clone(), Mode::Train);
        assert_ne!(second, first, "the mask must change from step to step");
        assert_eq!(a.forward(x.clone(), Mode::Eval), x);
        assert_eq!(a.backward(dout.clone()), dout);
    }

    #[test]
    #[should_panic(expected = "keep probability p must be in (0, 1]")]
    fn rejects_zero_keep_probability() {
        Dropout::<f32>::new(0.0, 0);
    }

    #[test]
    #[should_panic(expected = "keep probability p must be in (0, 1]")]
    fn rejects_keep_probability_above_one() {
        Dropout::<f32>::new(1.5, 0);
    }
}
