//! Batch normalisation (Ioffe & Szegedy, 2015), with CS231n's conventions.
//!
//! For `x` of shape (N, D), each feature j is normalised with statistics of its column:
//!
//! ```text
//! mu_j    = 1/N sum_i x_ij
//! var_j   = 1/N sum_i (x_ij - mu_j)^2          (biased: divided by N, not N - 1)
//! xhat_ij = (x_ij - mu_j) / sqrt(var_j + eps)
//! out_ij  = gamma_j * xhat_ij + beta_j
//! ```
//!
//! * [`Mode::Train`] uses the batch's `mu` and `var`, and updates the running averages
//!   `running = momentum * running + (1 - momentum) * batch` (the batch's biased variance,
//!   as CS231n).
//! * [`Mode::Eval`] uses `running_mean` and `running_var` instead; nothing is updated.
//!
//! Two backward passes give the same result:
//!
//! * [`backward`] walks the staged computational graph node by node (mean, centre,
//!   square, variance, sqrt, invert, normalise, scale, shift), one local gradient each;
//! * [`backward_alt`] is the simplified closed form. Because `mu` and `var` depend on every
//!   row, the gradient of one row mixes in the whole column:
//!
//! ```text
//! dx = (gamma / (N sqrt(var + eps))) * (N dout - sum_i dout - xhat * sum_i (dout * xhat))
//! dgamma = sum_i dout * xhat        dbeta = sum_i dout
//! ```
//!
//! In eval mode the statistics are constants, and both reduce to
//! `dx = dout * gamma / sqrt(running_var + eps)`.
//!
//! Small batches leak: with N = 1 in train mode the variance is 0, so `xhat = 0`,
//! `out = beta` and `dx = 0` (allowed, as in CS231n, but useless); with N = 2,
//! `xhat = ±(1 - O(eps / var))` whatever the inputs, so `dx` is of order `eps` and the
//! layer passes almost no gradient to `x`.
//!
//! Spatial batch norm ([`spatial_forward`], [`spatial_backward`]) normalises each channel
//! of an (N, C, H, W) input over its N*H*W values: the input is transposed to
//! (N, H, W, C), viewed as (N*H*W, C), and handed to the 2-D functions above.
//!
//! Unlike the other layers, `backward` takes `gamma` from the cache rather than as an
//! argument (CS231n's `batchnorm_backward(dout, cache)` signature).

use crate::nn::{Layer, Mode, Param};
use crate::tensor::{Float, Tensor};
use ndarray::{Array1, Array2, Array4, Axis, Ix1, Ix2, Ix4, IxDyn, Zip};

/// Hyper-parameters and running statistics of a batch norm (CS231n's `bn_param`).
#[derive(Clone, Debug)]
pub struct BnParam<F> {
    /// Added to the variance before the square root (default 1e-5).
    pub eps: f64,
    /// Weight of the old running value in each update (default 0.9).
    pub momentum: f64,
    /// Running average of the batch means, (D,).
    pub running_mean: Array1<F>,
    /// Running average of the batch (biased) variances, (D,).
    pub running_var: Array1<F>,
}

impl<F: Float> BnParam<F> {
    /// Defaults for D features: eps 1e-5, momentum 0.9, `running_mean` = 0 and
    /// `running_var` = 0.
    ///
    /// The running variance starts at **zero**, as in CS231n (PyTorch starts it at one).
    /// An eval-mode forward before any train-mode step therefore divides by
    /// `sqrt(eps)` ~ 3.2e-3; after k train steps the running values carry a bias factor
    /// `1 - momentum^k` towards zero (no bias correction, as CS231n).
    pub fn new(d: usize) -> Self {
        BnParam { eps: 1e-5, momentum: 0.9, running_mean: Array1::zeros(d), running_var: Array1::zeros(d) }
    }
}

/// What [`backward`] and [`backward_alt`] need from [`forward`]: the intermediate values
/// of the staged graph.
#[derive(Clone, Debug)]
pub struct BnCache<F> {
    /// The mode of the forward pass (eval mode: the statistics were constants).
    pub mode: Mode,
    /// Centred input `x - mu`, (N, D).
    pub xmu: Array2<F>,
    /// The variance used (batch or running), (D,).
    pub var: Array1<F>,
    /// `sqrt(var + eps)`, (D,).
    pub sqrtvar: Array1<F>,
    /// `1 / sqrt(var + eps)`, (D,).
    pub ivar: Array1<F>,
    /// Normalised input `xmu * ivar`, (N, D).
    pub xhat: Array2<F>,
    /// The scale used in the forward pass, (D,).
    pub gamma: Array1<F>,
}

/// Batch norm forward.
///
/// * `x`: (N, D)
/// * `gamma`, `beta`: (D,) scale and shift
/// * `param`: eps, momentum and running statistics (each (D,)); updated in train mode
/// * `mode`: batch statistics ([`Mode::Train`]) or running statistics ([`Mode::Eval`])
///
/// Returns `out`: (N, D) and the cache. Panics on an empty batch in train mode or on
/// mismatched sizes.
pub fn forward<F: Float>(
    x: &Array2<F>,
    gamma: &Array1<F>,
    beta: &Array1<F>,
    param: &mut BnParam<F>,
    mode: Mode,
) -> (Array2<F>, BnCache<F>) {
    let (n, d) = x.dim();
    for (name, len) in [
        ("gamma", gamma.len()),
        ("beta", beta.len()),
        ("running_mean", param.running_mean.len()),
        ("running_var", param.running_var.len()),
    ] {
        assert_eq!(len, d, "batchnorm: input has {d} features but {name} has {len}");
    }
    let (mu, var) = match mode {
        Mode::Train => {
            assert!(n > 0, "batchnorm: train mode needs a non-empty batch");
            let mu = x.mean_axis(Axis(0)).expect("non-empty batch");
            let var = (x - &mu).mapv(|v| v * v).mean_axis(Axis(0)).expect("non-empty batch");
            let m = F::from_f64c(param.momentum);
            let one_m = F::one() - m;
            Zip::from(&mut param.running_mean).and(&mu).for_each(|r, &b| *r = m * *r + one_m * b);
            Zip::from(&mut param.running_var).and(&var).for_each(|r, &b| *r = m * *r + one_m * b);
            (mu, var)
        }
        Mode::Eval => (param.running_mean.clone(), param.running_var.clone()),
    };
    let eps = F::from_f64c(param.eps);
    let xmu = x - &mu;
    let sqrtvar = var.mapv(|v| (v + eps).sqrt());
    let ivar = sqrtvar.mapv(|s| F::one() / s);
    let xhat = &xmu * &ivar;
    let out = &xhat * gamma + beta;
    (out, BnCache { mode, xmu, var, sqrtvar, ivar, xhat, gamma: gamma.clone() })
}

/// Batch norm backward, node by node through the staged graph of [`forward`].
///
/// * `dout`: (N, D) upstream gradient
///
/// Returns `(dx, dgamma, dbeta)` with shapes (N, D), (D,), (D,).
pub fn backward<F: Float>(dout: &Array2<F>, cache: &BnCache<F>) -> (Array2<F>, Array1<F>, Array1<F>) {
    let (n, d) = cache.xhat.dim();
    assert_eq!(dout.dim(), (n, d), "batchnorm: dout is {:?}, the output was ({n}, {d})", dout.dim());
    let nf = F::from_usize(n).expect("batch size fits the float type");
    let two = F::from_f64c(2.0);
    let half = F::from_f64c(0.5);

    // 9. shift: out = gx + beta. Both addends get dout; beta was broadcast over the
    //    rows, so its gradient sums them.
    let dbeta = dout.sum_axis(Axis(0));
    let dgx = dout;

    // 8. scale: gx = gamma * xhat. d/dgamma = xhat (summed over the rows, gamma was
    //    broadcast); d/dxhat = gamma.
    let dgamma = (dgx * &cache.xhat).sum_axis(Axis(0));
    let dxhat = dgx * &cache.gamma;

    // 7. normalise: xhat = xmu * ivar. d/dxmu = ivar (first of the two paths into xmu);
    //    d/divar = xmu, summed over the rows.
    let dxmu1 = &dxhat * &cache.ivar;
    if cache.mode == Mode::Eval {
        // mu and var were the running statistics, constants: the graph ends here and
        // xmu = x - running_mean passes its gradient straight to x.
        return (dxmu1, dgamma, dbeta);
    }
    let divar = (&dxhat * &cache.xmu).sum_axis(Axis(0));

    // 6. invert: ivar = 1 / sqrtvar. d/dsqrtvar = -1 / sqrtvar^2.
    let dsqrtvar = Zip::from(&divar).and(&cache.sqrtvar).map_collect(|&g, &s| -g / (s * s));

    // 5. sqrt: sqrtvar = sqrt(var + eps). d/dvar = 0.5 / sqrt(var + eps).
    let dvar = Zip::from(&dsqrtvar).and(&cache.sqrtvar).map_collect(|&g, &s| half * g / s);

    // 4. variance: var = 1/N sum_i sq_i. Each row of sq gets dvar / N.
    let dsq = Array2::from_shape_fn((n, d), |(_, j)| dvar[j] / nf);

    // 3. square: sq = xmu^2. d/dxmu = 2 xmu (second path into xmu).
    let dxmu2 = Zip::from(&dsq).and(&cache.xmu).map_collect(|&g, &c| two * c * g);

    // 2. centre: xmu = x - mu. Sum the two paths into xmu; x gets that gradient directly
    //    (first path into x), mu gets minus its sum over the rows.
    let dx1 = dxmu1 + dxmu2;
    let dmu = -dx1.sum_axis(Axis(0));

    // 1. mean: mu = 1/N sum_i x_i. Each row of x gets dmu / N (second path into x).
    let dx = dx1 + &(dmu / nf);
    (dx, dgamma, dbeta)
}

/// Batch norm backward in closed form:
/// `dx = (gamma * ivar / N) * (N dout - sum_i dout - xhat * sum_i (dout * xhat))` in train
/// mode, `dx = dout * gamma * ivar` in eval mode. Same arguments and results as
/// [`backward`]: `dout` (N, D) -> `(dx, dgamma, dbeta)` of shapes (N, D), (D,), (D,).
pub fn backward_alt<F: Float>(dout: &Array2<F>, cache: &BnCache<F>) -> (Array2<F>, Array1<F>, Array1<F>) {
    let (n, d) = cache.xhat.dim();
    assert_eq!(dout.dim(), (n, d), "batchnorm: dout is {:?}, the output was ({n}, {d})", dout.dim());
    // The two column sums of the formula are exactly dbeta and dgamma.
    let dbeta = dout.sum_axis(Axis(0));
    let dgamma = (dout * &cache.xhat).sum_axis(Axis(0));
    let scale = &cache.gamma * &cache.ivar;
    let dx = match cache.mode {
        Mode::Eval => dout * &scale,
        Mode::Train => {
            let nf = F::from_usize(n).expect("batch size fits the float type");
            (dout * nf - &dbeta - &cache.xhat * &dgamma) * &(scale / nf)
        }
    };
    (dx, dgamma, dbeta)
}

/// What [`spatial_backward`] needs from [`spatial_forward`].
#[derive(Clone, Debug)]
pub struct SpatialBnCache<F> {
    /// The 2-D cache over the (N*H*W, C) view.
    pub bn: BnCache<F>,
    /// The input shape (N, C, H, W).
    pub shape: (usize, usize, usize, usize),
}

/// (N, C, H, W) -> (N*H*W, C): one row per pixel, one column per channel.
fn to_rows<F: Float>(x: &Array4<F>) -> Array2<F> {
    let (n, c, h, w) = x.dim();
    let t = x.view().permuted_axes([0, 2, 3, 1]).as_standard_layout().into_owned();
    t.into_shape_with_order((n * h * w, c)).expect("contiguous reshape")
}

/// (N*H*W, C) -> (N, C, H, W), the inverse of [`to_rows`].
fn from_rows<F: Float>(y: Array2<F>, (n, c, h, w): (usize, usize, usize, usize)) -> Array4<F> {
    let y = if y.is_standard_layout() { y } else { y.as_standard_layout().into_owned() };
    let t = y.into_shape_with_order((n, h, w, c)).expect("contiguous reshape");
    t.permuted_axes([0, 3, 1, 2]).as_standard_layout().into_owned()
}

/// Spatial batch norm forward: each channel normalised over its N*H*W values.
///
/// * `x`: (N, C, H, W)
/// * `gamma`, `beta`: (C,)
/// * `param`: running statistics of shape (C,), updated in train mode
///
/// Returns `out`: (N, C, H, W) and the cache.
pub fn spatial_forward<F: Float>(
    x: &Array4<F>,
    gamma: &Array1<F>,
    beta: &Array1<F>,
    param: &mut BnParam<F>,
    mode: Mode,
) -> (Array4<F>, SpatialBnCache<F>) {
    let shape = x.dim();
    let (out, bn) = forward(&to_rows(x), gamma, beta, param, mode);
    (from_rows(out, shape), SpatialBnCache { bn, shape })
}

/// Spatial batch norm backward (through [`backward_alt`] on the (N*H*W, C) view).
///
/// * `dout`: (N, C, H, W)
///
/// Returns `(dx, dgamma, dbeta)` with shapes (N, C, H, W), (C,), (C,).
pub fn spatial_backward<F: Float>(dout: &Array4<F>, cache: &SpatialBnCache<F>) -> (Array4<F>, Array1<F>, Array1<F>) {
    assert_eq!(
        dout.dim(),
        cache.shape,
        "spatial batchnorm: dout is {:?}, the output was {:?}",
        dout.dim(),
        cache.shape
    );
    let (dx, dgamma, dbeta) = backward_alt(&to_rows(dout), &cache.bn);
    (from_rows(dx, cache.shape), dgamma, dbeta)
}

/// Parameters and running statistics shared by [`BatchNorm`] and [`SpatialBatchNorm`].
struct BnState<F: Float> {
    gamma: Param<F>,
    beta: Param<F>,
    eps: f64,
    momentum: f64,
    running_mean: Tensor<F>,
    running_var: Tensor<F>,
}

impl<F: Float> BnState<F> {
    fn new(d: usize) -> Self {
        let p = BnParam::<F>::new(d);
        BnState {
            gamma: Param::new("gamma", Tensor::from_elem(IxDyn(&[d]), F::one()), false),
            beta: Param::new("beta", Tensor::zeros(IxDyn(&[d])), false),
            eps: p.eps,
            momentum: p.momentum,
            running_mean: p.running_mean.into_dyn(),
            running_var: p.running_var.into_dyn(),
        }
    }

    fn features(&self) -> usize {
        self.gamma.value.len()
    }

    fn vec(t: &Tensor<F>) -> Array1<F> {
        t.view().into_dimensionality::<Ix1>().expect("1-D parameter").to_owned()
    }

    /// Run `f` with gamma, beta and a [`BnParam`] holding the running statistics (moved
    /// out and back, no copy).
    fn with_param<R>(&mut self, f: impl FnOnce(&Array1<F>, &Array1<F>, &mut BnParam<F>) -> R) -> R {
        let take = |t: &mut Tensor<F>| {
            std::mem::replace(t, Tensor::zeros(IxDyn(&[0]))).into_dimensionality::<Ix1>().expect("1-D buffer")
        };
        let mut param = BnParam {
            eps: self.eps,
            momentum: self.momentum,
            running_mean: take(&mut self.running_mean),
            running_var: take(&mut self.running_var),
        };
        let r = f(&Self::vec(&self.gamma.value), &Self::vec(&self.beta.value), &mut param);
        self.running_mean = param.running_mean.into_dyn();
        self.running_var = param.running_var.into_dyn();
        r
    }

    fn set_grads(&mut self, dgamma: Array1<F>, dbeta: Array1<F>) {
        self.gamma.grad = dgamma.into_dyn();
        self.beta.grad = dbeta.into_dyn();
    }

    fn buffers(&self) -> Vec<(&'static str, &Tensor<F>)> {
        vec![("running_mean", &self.running_mean), ("running_var", &self.running_var)]
    }

    fn buffers_mut(&mut self) -> Vec<(&'static str, &mut Tensor<F>)> {
        vec![("running_mean", &mut self.running_mean), ("running_var", &mut self.running_var)]
    }
}

/// Batch norm as a [`Layer`] over (N, D) inputs: parameters `gamma` (D,) = 1 and
/// `beta` (D,) = 0 (no weight decay), buffers `running_mean` and `running_var` (D,),
/// eps 1e-5, momentum 0.9 (see [`BnParam::new`]).
pub struct BatchNorm<F: Float> {
    state: BnState<F>,
    cache: Option<BnCache<F>>,
}

impl<F: Float> BatchNorm<F> {
    /// A batch norm over `d` features (gamma = 1, beta = 0, momentum 0.9, eps 1e-5).
    pub fn new(d: usize) -> Self {
        BatchNorm { state: BnState::new(d), cache: None }
    }
}

impl<F: Float> Layer<F> for BatchNorm<F> {
    fn kind(&self) -> &'static str {
        "batchnorm"
    }

    fn describe(&self) -> String {
        format!("batchnorm {}", self.state.features())
    }

    fn forward(&mut self, x: Tensor<F>, mode: Mode) -> Tensor<F> {
        let shape = x.shape().to_vec();
        let x = x
            .into_dimensionality::<Ix2>()
            .unwrap_or_else(|_| panic!("batchnorm: expected a 2-D input (N, D), got shape {shape:?}"));
        let (out, cache) = self.state.with_param(|g, b, p| forward(&x, g, b, p, mode));
        self.cache = Some(cache);
        out.into_dyn()
    }

    fn backward(&mut self, dout: Tensor<F>) -> Tensor<F> {
        let cache = self.cache.as_ref().expect("batchnorm: backward called before forward");
        let dout = dout.into_dimensionality::<Ix2>().expect("batchnorm: dout must be 2-D (N, D)");
        let (dx, dgamma, dbeta) = backward_alt(&dout, cache);
        self.state.set_grads(dgamma, dbeta);
        dx.into_dyn()
    }

    fn params(&self) -> Vec<&Param<F>> {
        vec![&self.state.gamma, &self.state.beta]
    }

    fn params_mut(&mut self) -> Vec<&mut Param<F>> {
        vec![&mut self.state.gamma, &mut self.state.beta]
    }

    fn buffers(&self) -> Vec<(&'static str, &Tensor<F>)> {
        self.state.buffers()
    }

    fn buffers_mut(&mut self) -> Vec<(&'static str, &mut Tensor<F>)> {
        self.state.buffers_mut()
    }
}

/// Spatial batch norm as a [`Layer`] over (N, C, H, W) inputs: per-channel `gamma` (C,)
/// = 1 and `beta` (C,) = 0, buffers `running_mean` and `running_var` (C,), defaults as
/// [`BnParam::new`].
pub struct SpatialBatchNorm<F: Float> {
    state: BnState<F>,
    cache: Option<SpatialBnCache<F>>,
}

impl<F: Float> SpatialBatchNorm<F> {
    /// A spatial batch norm over `c` channels (gamma = 1, beta = 0, momentum 0.9, eps 1e-5).
    pub fn new(c: usize) -> Self {
        SpatialBatchNorm { state: BnState::new(c), cache: None }
    }
}

impl<F: Float> Layer<F> for SpatialBatchNorm<F> {
    fn kind(&self) -> &'static str {
        "spatial_batchnorm"
    }

    fn describe(&self) -> String {
        format!("spatial_batchnorm {}", self.state.features())
    }

    fn forward(&mut self, x: Tensor<F>, mode: Mode) -> Tensor<F> {
        let shape = x.shape().to_vec();
        let x = x
            .into_dimensionality::<Ix4>()
            .unwrap_or_else(|_| panic!("spatial batchnorm: expected a 4-D input (N, C, H, W), got shape {shape:?}"));
        let (out, cache) = self.state.with_param(|g, b, p| spatial_forward(&x, g, b, p, mode));
        self.cache = Some(cache);
        out.into_dyn()
    }

    fn backward(&mut self, dout: Tensor<F>) -> Tensor<F> {
        let cache = self.cache.as_ref().expect("spatial batchnorm: backward called before forward");
        let dout = dout.into_dimensionality::<Ix4>().expect("spatial batchnorm: dout must be 4-D (N, C, H, W)");
        let (dx, dgamma, dbeta) = spatial_backward(&dout, cache);
        self.state.set_grads(dgamma, dbeta);
        dx.into_dyn()
    }

    fn params(&self) -> Vec<&Param<F>> {
        vec![&self.state.gamma, &self.state.beta]
    }

    fn params_mut(&mut self) -> Vec<&mut Param<F>> {
        vec![&mut self.state.gamma, &mut self.state.beta]
    }

    fn buffers(&self) -> Vec<(&'static str, &Tensor<F>)> {
        self.state.buffers()
    }

    fn buffers_mut(&mut self) -> Vec<(&'static str, &mut Tensor<F>)> {
        self.state.buffers_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_array, rel_error};
    use crate::layers::testutil::assert_good;
    use crate::tensor::{cast, randn, rng, uniform, Rng64};
    use rand::Rng;

    /// A random scale with |gamma| in [0.5, 1.5] and a random sign. A gamma near zero
    /// makes the true dx near zero, where the element-wise relative error only measures
    /// finite-difference round-off.
    fn scale(d: usize, r: &mut Rng64) -> Array1<f64> {
        Array1::from_shape_fn(d, |_| if r.random::<bool>() { 1.0 } else { -1.0 } * r.random_range(0.5..1.5))
    }

    /// x ~ 2 randn + 6 (offset and spread both matter), gamma from [`scale`], beta and
    /// dout ~ randn.
    fn inputs(n: usize, d: usize, seed: u64) -> (Array2<f64>, Array1<f64>, Array1<f64>, Array2<f64>) {
        let mut r = rng(seed);
        let x = randn::<f64, _>((n, d), 2.0, &mut r) + 6.0;
        let gamma = scale(d, &mut r);
        let beta = randn(d, 1.0, &mut r);
        let dout = randn((n, d), 1.0, &mut r);
        (x, gamma, beta, dout)
    }

    /// Gradient-check both backwards for every input and check they agree.
    fn check_all(
        tag: &str,
        x: &Array2<f64>,
        g: &Array1<f64>,
        b: &Array1<f64>,
        p: &BnParam<f64>,
        mode: Mode,
        dout: &Array2<f64>,
    ) {
        let f = |x: &Array2<f64>, g: &Array1<f64>, b: &Array1<f64>| forward(x, g, b, &mut p.clone(), mode).0;
        let (_, cache) = forward(x, g, b, &mut p.clone(), mode);
        let staged = backward(dout, &cache);
        let alt = backward_alt(dout, &cache);
        for (name, (dx, dg, db)) in [("staged", &staged), ("alt", &alt)] {
            assert_good(&check_array(&format!("bn {tag} {name} dx"), |x| f(x, g, b), x, dout, dx));
            assert_good(&check_array(&format!("bn {tag} {name} dgamma"), |g| f(x, g, b), g, dout, dg));
            assert_good(&check_array(&format!("bn {tag} {name} dbeta"), |b| f(x, g, b), b, dout, db));
        }
        let e = [rel_error(&staged.0, &alt.0), rel_error(&staged.1, &alt.1), rel_error(&staged.2, &alt.2)];
        println!("bn {tag} staged vs alt: rel_error dx {:.3e} dgamma {:.3e} dbeta {:.3e}", e[0], e[1], e[2]);
        assert!(e.iter().all(|&e| e < 1e-10), "staged and closed-form backward differ: {e:?}");
    }

    #[test]
    fn train_mode_gradients_both_backwards() {
        // N >= 3: N = 1 has zero variance and N = 2 a vanishing dx (see the module docs).
        for (i, &(n, d)) in [(3usize, 3usize), (4, 5), (10, 2), (7, 6)].iter().enumerate() {
            let (x, g, b, dout) = inputs(n, d, 100 + i as u64);
            check_all(&format!("train {n}x{d}"), &x, &g, &b, &BnParam::new(d), Mode::Train, &dout);
        }
    }

    #[test]
    fn eval_mode_gradients_both_backwards() {
        let mut r = rng(9);
        for (i, &(n, d)) in [(1usize, 4usize), (3, 5), (6, 2)].iter().enumerate() {
            let (x, g, b, dout) = inputs(n, d, 200 + i as u64);
            let mut p = BnParam::new(d);
            p.running_mean = randn::<f64, _>(d, 1.0, &mut r) + 6.0;
            p.running_var = uniform(d, 1.0, 8.0, &mut r);
            check_all(&format!("eval {n}x{d}"), &x, &g, &b, &p, Mode::Eval, &dout);
            // eval mode uses the running statistics and does not update them
            let before = p.clone();
            let (out, cache) = forward(&x, &g, &b, &mut p, Mode::Eval);
            assert_eq!(p.running_mean, before.running_mean);
            assert_eq!(p.running_var, before.running_var);
            let want = (&x - &p.running_mean) / &p.running_var.mapv(|v| (v + p.eps).sqrt()) * &g + &b;
            assert!(rel_error(&out, &want) < 1e-12);
            assert_eq!(cache.mode, Mode::Eval);
        }
    }

    #[test]
    fn train_output_is_normalised_then_scaled_and_shifted() {
        let (n, d) = (200, 3);
        let mut r = rng(3);
        let x = randn::<f64, _>((n, d), 5.0, &mut r) + 12.0;
        let (out, _) = forward(&x, &Array1::ones(d), &Array1::zeros(d), &mut BnParam::new(d), Mode::Train);
        let mean = out.mean_axis(Axis(0)).unwrap();
        let std = out.std_axis(Axis(0), 0.0);
        println!("bn train gamma=1 beta=0: means {mean:.2e}, stds {std:.8}");
        assert!(mean.iter().all(|m| m.abs() < 1e-10), "{mean}");
        assert!(std.iter().all(|s| (s - 1.0).abs() < 1e-5), "{std}");

        let gamma = Array1::from_vec(vec![1.0, 2.0, 3.0]);
        let beta = Array1::from_vec(vec![11.0, 12.0, 13.0]);
        let (out, _) = forward(&x, &gamma, &beta, &mut BnParam::new(d), Mode::Train);
        let mean = out.mean_axis(Axis(0)).unwrap();
        let std = out.std_axis(Axis(0), 0.0);
        println!("bn train gamma=[1,2,3] beta=[11,12,13]: means {mean:.8}, stds {std:.8}");
        assert!((&mean - &beta).iter().all(|e| e.abs() < 1e-10), "{mean}");
        assert!((&std - &gamma).iter().all(|e| e.abs() < 1e-4), "{std}");
    }

    #[test]
    fn running_average_update_is_exact() {
        let (x, g, b, _) = inputs(5, 4, 1);
        let mut p = BnParam::new(4);
        assert!(p.running_var.iter().all(|&v| v == 0.0), "CS231n starts running_var at zero");
        forward(&x, &g, &b, &mut p, Mode::Train);
        let mu = x.mean_axis(Axis(0)).unwrap();
        let var = x.var_axis(Axis(0), 0.0);
        assert!(rel_error(&p.running_mean, &(&mu * 0.1)) < 1e-12);
        assert!(rel_error(&p.running_var, &(&var * 0.1)) < 1e-12);
        forward(&x, &g, &b, &mut p, Mode::Train);
        assert!(rel_error(&p.running_mean, &(&mu * 0.19)) < 1e-12);
        assert!(rel_error(&p.running_var, &(&var * 0.19)) < 1e-12);
    }

    #[test]
    fn running_stats_converge_and_eval_matches_train_statistics() {
        // CS231n's check: after many train-mode steps on data from one distribution, the
        // running statistics match it, and eval-mode outputs have mean ~beta, std ~gamma.
        let (n, d) = (500, 3);
        let (mean, std) = (Array1::from_vec(vec![12.0, -3.0, 0.5]), Array1::from_vec(vec![5.0, 0.5, 2.0]));
        let gamma = Array1::from_vec(vec![1.0, 2.0, 0.5]);
        let beta = Array1::from_vec(vec![0.0, -1.0, 3.0]);
        let mut r = rng(4);
        let mut p = BnParam::new(d);
        for _ in 0..200 {
            let x = randn::<f64, _>((n, d), 1.0, &mut r) * &std + &mean;
            forward(&x, &gamma, &beta, &mut p, Mode::Train);
        }
        let var = std.mapv(|s| s * s);
        println!("bn running_mean {:.4} (true {mean}), running_var {:.4} (true {var})", p.running_mean, p.running_var);
        for j in 0..d {
            assert!((p.running_mean[j] - mean[j]).abs() < 0.05 * std[j], "running_mean {}", p.running_mean);
            assert!((p.running_var[j] / var[j] - 1.0).abs() < 0.05, "running_var {}", p.running_var);
        }
        let x = randn::<f64, _>((n, d), 1.0, &mut r) * &std + &mean;
        let (out, _) = forward(&x, &gamma, &beta, &mut p, Mode::Eval);
        let (m, s) = (out.mean_axis(Axis(0)).unwrap(), out.std_axis(Axis(0), 0.0));
        println!("bn eval after training: means {m:.4} (beta {beta}), stds {s:.4} (gamma {gamma})");
        for j in 0..d {
            assert!((m[j] - beta[j]).abs() < 0.15 * gamma[j], "means {m}");
            assert!((s[j] / gamma[j] - 1.0).abs() < 0.1, "stds {s}");
        }
    }

    #[test]
    fn tiny_batches_pass_almost_no_gradient() {
        // N = 1: zero variance, out = beta, dx = 0.
        let (x, g, b, dout) = inputs(1, 4, 5);
        let (out, cache) = forward(&x, &g, &b, &mut BnParam::new(4), Mode::Train);
        assert!(rel_error(&out.row(0).to_owned(), &b) < 1e-12);
        let (dx, _, _) = backward(&dout, &cache);
        assert!(dx.iter().all(|v| v.abs() < 1e-12));
        // N = 2: xhat = ±a / sqrt(a^2 + eps) with a = (x_1 - x_2) / 2, i.e. ±1 up to
        // eps / 2a^2 whatever x is, and dx is O(eps / |a|^3).
        let x = Array2::from_shape_vec((2, 4), vec![1.0, 5.0, -3.0, 10.0, 4.0, 2.0, 7.0, 0.0]).unwrap();
        let (_, g, b, dout) = inputs(2, 4, 6);
        let (_, cache) = forward(&x, &g, &b, &mut BnParam::new(4), Mode::Train);
        assert!(cache.xhat.iter().all(|v| (v.abs() - 1.0).abs() < 1e-5));
        let (dx, _, _) = backward(&dout, &cache);
        let (dx_alt, _, _) = backward_alt(&dout, &cache);
        let max = dx.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        println!("bn N=2: max |dx| {max:.2e}");
        assert!(max < 1e-5);
        assert!((&dx - &dx_alt).iter().all(|v| v.abs() < 1e-12));
    }

    #[test]
    fn f32_agrees_with_f64() {
        let (x, g, b, dout) = inputs(8, 5, 6);
        let (o64, c64) = forward(&x, &g, &b, &mut BnParam::new(5), Mode::Train);
        let (o32, c32) = forward(&cast::<f64, f32, _>(&x), &cast(&g), &cast(&b), &mut BnParam::new(5), Mode::Train);
        let err = o64.iter().zip(o32.iter()).map(|(a, &b)| (a - b as f64).abs()).fold(0.0, f64::max);
        let (dx64, _, _) = backward_alt(&dout, &c64);
        let (dx32, _, _) = backward_alt(&cast(&dout), &c32);
        let derr = dx64.iter().zip(dx32.iter()).map(|(a, &b)| (a - b as f64).abs()).fold(0.0, f64::max);
        println!("bn f32 vs f64: forward max abs diff {err:.2e}, dx {derr:.2e}");
        assert!(err < 1e-5 && derr < 1e-5);
    }

    type Spatial = (Array4<f64>, Array1<f64>, Array1<f64>, Array4<f64>);

    fn spatial_inputs(shape: (usize, usize, usize, usize), seed: u64) -> Spatial {
        let mut r = rng(seed);
        let x = randn::<f64, _>(shape, 2.0, &mut r) + 6.0;
        let gamma = scale(shape.1, &mut r);
        let beta = randn(shape.1, 1.0, &mut r);
        let dout = randn(shape, 1.0, &mut r);
        (x, gamma, beta, dout)
    }

    #[test]
    fn spatial_gradients() {
        let mut r = rng(10);
        for (i, &shape) in [(2usize, 3usize, 4usize, 5usize), (1, 2, 3, 3)].iter().enumerate() {
            let (x, g, b, dout) = spatial_inputs(shape, 300 + i as u64);
            let mut eval = BnParam::new(shape.1);
            eval.running_mean = randn::<f64, _>(shape.1, 1.0, &mut r) + 6.0;
            eval.running_var = uniform(shape.1, 1.0, 8.0, &mut r);
            for (mode, p) in [(Mode::Train, BnParam::new(shape.1)), (Mode::Eval, eval)] {
                let tag = format!("spatial {mode:?} {shape:?}");
                let f = |x: &Array4<f64>, g: &Array1<f64>, b: &Array1<f64>| {
                    spatial_forward(x, g, b, &mut p.clone(), mode).0
                };
                let (_, cache) = spatial_forward(&x, &g, &b, &mut p.clone(), mode);
                let (dx, dg, db) = spatial_backward(&dout, &cache);
                assert_eq!(dx.dim(), shape);
                assert_good(&check_array(&format!("bn {tag} dx"), |x| f(x, &g, &b), &x, &dout, &dx));
                assert_good(&check_array(&format!("bn {tag} dgamma"), |g| f(&x, g, &b), &g, &dout, &dg));
                assert_good(&check_array(&format!("bn {tag} dbeta"), |b| f(&x, &g, b), &b, &dout, &db));
            }
        }
    }

    #[test]
    fn spatial_normalises_each_channel_over_batch_and_pixels() {
        let shape = (4, 3, 5, 6);
        let (x, _, _, _) = spatial_inputs(shape, 11);
        let gamma = Array1::from_vec(vec![1.0, 3.0, 0.5]);
        let beta = Array1::from_vec(vec![0.0, 2.0, -4.0]);
        let mut p = BnParam::new(3);
        let (out, _) = spatial_forward(&x, &gamma, &beta, &mut p, Mode::Train);
        for c in 0..3 {
            let xc = x.index_axis(Axis(1), c);
            let (m, v) = (xc.mean().unwrap(), xc.var(0.0));
            let oc = out.index_axis(Axis(1), c);
            let want = xc.mapv(|t| gamma[c] * (t - m) / (v + 1e-5).sqrt() + beta[c]);
            assert!(rel_error(&oc.to_owned(), &want) < 1e-12, "channel {c}");
            assert!((oc.mean().unwrap() - beta[c]).abs() < 1e-10);
            assert!((oc.std(0.0) - gamma[c]).abs() < 1e-4);
            assert!((p.running_mean[c] - 0.1 * m).abs() < 1e-12);
            assert!((p.running_var[c] - 0.1 * v).abs() < 1e-12);
        }
    }

    #[test]
    fn layers_match_free_functions_and_expose_buffers() {
        let (x, _, _, dout) = inputs(6, 4, 12);
        let mut layer = BatchNorm::<f64>::new(4);
        assert_eq!(layer.describe(), "batchnorm 4");
        let names: Vec<_> = layer.params().iter().map(|p| (p.name, p.decay)).collect();
        assert_eq!(names, vec![("gamma", false), ("beta", false)]);
        let bufs: Vec<_> = layer.buffers().iter().map(|(n, _)| *n).collect();
        assert_eq!(bufs, vec!["running_mean", "running_var"]);

        let (g, b) = (Array1::ones(4), Array1::zeros(4));
        let mut p = BnParam::new(4);
        let (want, cache) = forward(&x, &g, &b, &mut p, Mode::Train);
        let out = layer.forward(x.clone().into_dyn(), Mode::Train);
        assert!(rel_error(&out, &want.into_dyn()) < 1e-14);
        let (dx_want, dg, db) = backward(&dout, &cache);
        let dx = layer.backward(dout.clone().into_dyn());
        assert!(rel_error(&dx, &dx_want.into_dyn()) < 1e-10);
        assert!(rel_error(&layer.params()[0].grad, &dg.into_dyn()) < 1e-10);
        assert!(rel_error(&layer.params()[1].grad, &db.into_dyn()) < 1e-10);
        assert_eq!(layer.buffers()[0].1, &p.running_mean.clone().into_dyn());
        assert_eq!(layer.buffers()[1].1, &p.running_var.clone().into_dyn());
        // eval mode uses (and keeps) the running statistics
        let out = layer.forward(x.clone().into_dyn(), Mode::Eval);
        let (want, _) = forward(&x, &g, &b, &mut p, Mode::Eval);
        assert!(rel_error(&out, &want.into_dyn()) < 1e-14);
        assert_eq!(layer.buffers()[0].1, &p.running_mean.into_dyn());

        let shape = (2, 3, 2, 2);
        let (x4, _, _, dout4) = spatial_inputs(shape, 13);
        let mut layer = SpatialBatchNorm::<f64>::new(3);
        assert_eq!(layer.describe(), "spatial_batchnorm 3");
        let mut p = BnParam::new(3);
        let (want, cache) = spatial_forward(&x4, &Array1::ones(3), &Array1::zeros(3), &mut p, Mode::Train);
        let out = layer.forward(x4.into_dyn(), Mode::Train);
        assert!(rel_error(&out, &want.into_dyn()) < 1e-14);
        let (dx_want, _, db) = spatial_backward(&dout4, &cache);
        let dx = layer.backward(dout4.into_dyn());
        assert!(rel_error(&dx, &dx_want.into_dyn()) < 1e-14);
        assert!(rel_error(&layer.params()[1].grad, &db.into_dyn()) < 1e-14);
        assert_eq!(layer.buffers()[1].1, &p.running_var.into_dyn());
    }

    #[test]
    #[should_panic(expected = "expected a 2-D input")]
    fn layer_rejects_wrong_rank() {
        BatchNorm::<f64>::new(3).forward(Tensor::zeros(IxDyn(&[2, 3, 1])), Mode::Train);
    }
}
