//! Layer normalisation (Ba, Kiros & Hinton, 2016), as CS231n's `layernorm_forward`.
//!
//! Batch norm transposed: each *row* (one example) of `x` (N, D) is normalised over its
//! own D features, so the statistics never mix examples and train and eval behave the
//! same (no running statistics, no mode):
//!
//! ```text
//! mu_i    = 1/D sum_j x_ij
//! var_i   = 1/D sum_j (x_ij - mu_i)^2          (biased: divided by D)
//! xhat_ij = (x_ij - mu_i) / sqrt(var_i + eps)
//! out_ij  = gamma_j * xhat_ij + beta_j         (gamma, beta per feature, as batch norm)
//! ```
//!
//! Backward, with `istd_i = 1 / sqrt(var_i + eps)` and `dxhat = dout * gamma`: the batch
//! norm closed form with the sums taken along each row instead of down each column,
//!
//! ```text
//! dx_ij  = (istd_i / D) * (D dxhat_ij - sum_k dxhat_ik - xhat_ij sum_k dxhat_ik xhat_ik)
//! dgamma = sum_i dout_i * xhat_i               dbeta = sum_i dout_i
//! ```
//!
//! A batch of one example is fine; D = 1 gives `xhat = 0` and `dx = 0`.
//! As in [`crate::layers::batchnorm`], `backward` takes `gamma` from the cache.

use crate::nn::{Layer, Mode, Param};
use crate::tensor::{Float, Tensor};
use ndarray::{Array1, Array2, Axis, Ix1, Ix2, IxDyn, Zip};

/// What [`backward`] needs from [`forward`].
#[derive(Clone, Debug)]
pub struct LnCache<F> {
    /// Normalised input, (N, D).
    pub xhat: Array2<F>,
    /// `1 / sqrt(var_i + eps)` per row, (N,).
    pub istd: Array1<F>,
    /// The scale used in the forward pass, (D,).
    pub gamma: Array1<F>,
}

/// Layer norm forward.
///
/// * `x`: (N, D), D >= 1
/// * `gamma`, `beta`: (D,) scale and shift
/// * `eps`: added to each row's variance before the square root
///
/// Returns `out`: (N, D) and the cache.
pub fn forward<F: Float>(x: &Array2<F>, gamma: &Array1<F>, beta: &Array1<F>, eps: f64) -> (Array2<F>, LnCache<F>) {
    let (n, d) = x.dim();
    assert!(d > 0, "layernorm: needs at least one feature");
    assert_eq!(gamma.len(), d, "layernorm: input has {d} features but gamma has {}", gamma.len());
    assert_eq!(beta.len(), d, "layernorm: input has {d} features but beta has {}", beta.len());
    let eps = F::from_f64c(eps);
    let mu = x.mean_axis(Axis(1)).expect("d > 0").insert_axis(Axis(1));
    let xmu = x - &mu;
    let var = xmu.mapv(|v| v * v).mean_axis(Axis(1)).expect("d > 0");
    let istd = var.mapv(|v| F::one() / (v + eps).sqrt());
    let xhat = &xmu * &istd.view().insert_axis(Axis(1));
    let out = &xhat * gamma + beta;
    debug_assert_eq!(out.dim(), (n, d));
    (out, LnCache { xhat, istd, gamma: gamma.clone() })
}

/// Layer norm backward.
///
/// * `dout`: (N, D) upstream gradient
///
/// Returns `(dx, dgamma, dbeta)` with shapes (N, D), (D,), (D,).
pub fn backward<F: Float>(dout: &Array2<F>, cache: &LnCache<F>) -> (Array2<F>, Array1<F>, Array1<F>) {
    let (n, d) = cache.xhat.dim();
    assert_eq!(dout.dim(), (n, d), "layernorm: dout is {:?}, the output was ({n}, {d})", dout.dim());
    let df = F::from_usize(d).expect("feature count fits the float type");
    // out = gamma * xhat + beta: gamma and beta were broadcast over the rows.
    let dbeta = dout.sum_axis(Axis(0));
    let dgamma = (dout * &cache.xhat).sum_axis(Axis(0));
    let dxhat = dout * &cache.gamma;
    // Through the row's own mean and variance: the row sums of dxhat and dxhat * xhat.
    let s1 = dxhat.sum_axis(Axis(1));
    let s2 = (&dxhat * &cache.xhat).sum_axis(Axis(1));
    let mut dx = dxhat;
    Zip::from(dx.rows_mut()).and(cache.xhat.rows()).and(&cache.istd).and(&s1).and(&s2).for_each(
        |mut dx, xhat, &istd, &s1, &s2| {
            let k = istd / df;
            Zip::from(&mut dx).and(&xhat).for_each(|g, &xh| *g = k * (df * *g - s1 - xh * s2));
        },
    );
    (dx, dgamma, dbeta)
}

/// Layer norm as a [`Layer`] over (N, D) inputs: parameters `gamma` (D,) = 1 and
/// `beta` (D,) = 0 (no weight decay), eps 1e-5. The mode is ignored.
pub struct LayerNorm<F: Float> {
    gamma: Param<F>,
    beta: Param<F>,
    eps: f64,
    cache: Option<LnCache<F>>,
}

impl<F: Float> LayerNorm<F> {
    /// A layer norm over `d` features (gamma = 1, beta = 0, eps 1e-5).
    pub fn new(d: usize) -> Self {
        LayerNorm {
            gamma: Param::new("gamma", Tensor::from_elem(IxDyn(&[d]), F::one()), false),
            beta: Param::new("beta", Tensor::zeros(IxDyn(&[d])), false),
            eps: 1e-5,
            cache: None,
        }
    }
}

impl<F: Float> Layer<F> for LayerNorm<F> {
    fn kind(&self) -> &'static str {
        "layernorm"
    }

    fn describe(&self) -> String {
        format!("layernorm {}", self.gamma.value.len())
    }

    fn forward(&mut self, x: Tensor<F>, _mode: Mode) -> Tensor<F> {
        let shape = x.shape().to_vec();
        let x = x
            .into_dimensionality::<Ix2>()
            .unwrap_or_else(|_| panic!("layernorm: expected a 2-D input (N, D), got shape {shape:?}"));
        let vec = |t: &Tensor<F>| t.view().into_dimensionality::<Ix1>().expect("1-D parameter").to_owned();
        let (out, cache) = forward(&x, &vec(&self.gamma.value), &vec(&self.beta.value), self.eps);
        self.cache = Some(cache);
        out.into_dyn()
    }

    fn backward(&mut self, dout: Tensor<F>) -> Tensor<F> {
        let cache = self.cache.as_ref().expect("layernorm: backward called before forward");
        let dout = dout.into_dimensionality::<Ix2>().expect("layernorm: dout must be 2-D (N, D)");
        let (dx, dgamma, dbeta) = backward(&dout, cache);
        self.gamma.grad = dgamma.into_dyn();
        self.beta.grad = dbeta.into_dyn();
        dx.into_dyn()
    }

    fn params(&self) -> Vec<&Param<F>> {
        vec![&self.gamma, &self.beta]
    }

    fn params_mut(&mut self) -> Vec<&mut Param<F>> {
        vec![&mut self.gamma, &mut self.beta]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_array, rel_error};
    use crate::layers::testutil::assert_good;
    use crate::tensor::{cast, randn, rng};
    use rand::Rng;

    /// x ~ 2 randn + 6, |gamma| in [0.5, 1.5] with a random sign (a gamma near zero
    /// makes dx near zero, where the relative error only measures round-off), beta and
    /// dout ~ randn.
    fn inputs(n: usize, d: usize, seed: u64) -> (Array2<f64>, Array1<f64>, Array1<f64>, Array2<f64>) {
        let mut r = rng(seed);
        let x = randn::<f64, _>((n, d), 2.0, &mut r) + 6.0;
        let gamma =
            Array1::from_shape_fn(d, |_| if r.random::<bool>() { 1.0 } else { -1.0 } * r.random_range(0.5..1.5));
        let beta = randn(d, 1.0, &mut r);
        let dout = randn((n, d), 1.0, &mut r);
        (x, gamma, beta, dout)
    }

    #[test]
    fn gradients_on_random_shapes_including_batch_of_one() {
        // D >= 3: with D = 2 each row normalises to ±1 whatever x is and dx is O(eps),
        // below what centred differences resolve (batch norm's N = 2 case, transposed).
        for (i, &(n, d)) in [(1usize, 5usize), (1, 3), (3, 4), (4, 7)].iter().enumerate() {
            let (x, g, b, dout) = inputs(n, d, 40 + i as u64);
            let f = |x: &Array2<f64>, g: &Array1<f64>, b: &Array1<f64>| forward(x, g, b, 1e-5).0;
            let (_, cache) = forward(&x, &g, &b, 1e-5);
            let (dx, dg, db) = backward(&dout, &cache);
            assert_good(&check_array(&format!("ln {n}x{d} dx"), |x| f(x, &g, &b), &x, &dout, &dx));
            assert_good(&check_array(&format!("ln {n}x{d} dgamma"), |g| f(&x, g, &b), &g, &dout, &dg));
            assert_good(&check_array(&format!("ln {n}x{d} dbeta"), |b| f(&x, &g, b), &b, &dout, &db));
        }
    }

    #[test]
    fn each_row_is_normalised() {
        let (x, _, _, _) = inputs(4, 50, 1);
        let (out, _) = forward(&x, &Array1::ones(50), &Array1::zeros(50), 1e-5);
        let mean = out.mean_axis(Axis(1)).unwrap();
        let std = out.std_axis(Axis(1), 0.0);
        println!("ln rows: means {mean:.2e}, stds {std:.8}");
        assert!(mean.iter().all(|m| m.abs() < 1e-10));
        assert!(std.iter().all(|s| (s - 1.0).abs() < 1e-5));
        // one example's output does not depend on the others (unlike batch norm)
        let (one, _) = forward(&x.slice(ndarray::s![2..3, ..]).to_owned(), &Array1::ones(50), &Array1::zeros(50), 1e-5);
        assert!(rel_error(&one.row(0).to_owned(), &out.row(2).to_owned()) < 1e-12);
    }

    #[test]
    fn f32_agrees_with_f64() {
        let (x, g, b, _) = inputs(5, 8, 2);
        let (o64, _) = forward(&x, &g, &b, 1e-5);
        let (o32, _) = forward(&cast::<f64, f32, _>(&x), &cast(&g), &cast(&b), 1e-5);
        let err = o64.iter().zip(o32.iter()).map(|(a, &b)| (a - b as f64).abs()).fold(0.0, f64::max);
        println!("ln f32 vs f64: forward max abs diff {err:.2e}");
        assert!(err < 1e-5);
    }

    #[test]
    fn layer_matches_free_functions() {
        let (x, _, _, dout) = inputs(3, 6, 3);
        let mut layer = LayerNorm::<f64>::new(6);
        assert_eq!(layer.describe(), "layernorm 6");
        let (want, cache) = forward(&x, &Array1::ones(6), &Array1::zeros(6), 1e-5);
        let out = layer.forward(x.into_dyn(), Mode::Train);
        assert!(rel_error(&out, &want.into_dyn()) < 1e-14);
        let (dx_want, dg, db) = backward(&dout, &cache);
        let dx = layer.backward(dout.into_dyn());
        assert!(rel_error(&dx, &dx_want.into_dyn()) < 1e-14);
        let p = layer.params();
        assert_eq!((p[0].name, p[0].decay, p[1].name, p[1].decay), ("gamma", false, "beta", false));
        assert!(rel_error(&p[0].grad, &dg.into_dyn()) < 1e-14);
        assert!(rel_error(&p[1].grad, &db.into_dyn()) < 1e-14);
    }
}
