//! Update rules, exactly as in CS231n's `optim.py`, behind one interface:
//! [`update`]`(w, dw, slots, config)` changes `w` in place and keeps per-parameter state in
//! [`Slots`].
//!
//! | rule | update |
//! |---|---|
//! | sgd | w -= lr dw |
//! | momentum | v = mu v - lr dw; w += v |
//! | rmsprop | c = rho c + (1 - rho) dw^2; w -= lr dw / (sqrt(c) + eps) |
//! | adam | t += 1; m = b1 m + (1-b1) dw; v = b2 v + (1-b2) dw^2; w -= lr m_hat / (sqrt(v_hat) + eps) |
//!
//! RMSProp adds eps after the square root; Adam increments t *before* the bias
//! corrections `m_hat = m / (1 - b1^t)`, `v_hat = v / (1 - b2^t)`.

use crate::tensor::{Float, Tensor};
use ndarray::Zip;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// Vanilla stochastic gradient descent.
    Sgd,
    /// SGD with momentum.
    Momentum,
    /// RMSProp.
    Rmsprop,
    /// Adam.
    Adam,
}

impl Rule {
    /// The name used in TOML files.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Sgd => "sgd",
            Rule::Momentum => "momentum",
            Rule::Rmsprop => "rmsprop",
            Rule::Adam => "adam",
        }
    }
}

/// Hyper-parameters of an update rule (CS231n's defaults via [`UpdateConfig::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// The rule.
    pub rule: Rule,
    /// Learning rate.
    pub lr: f64,
    /// Momentum coefficient mu (momentum), default 0.9.
    pub momentum: f64,
    /// RMSProp decay rate rho, default 0.99.
    pub decay_rate: f64,
    /// Adam beta1, default 0.9.
    pub beta1: f64,
    /// Adam beta2, default 0.999.
    pub beta2: f64,
    /// Epsilon (RMSProp and Adam), default 1e-8.
    pub eps: f64,
}

impl UpdateConfig {
    /// `rule` with learning rate `lr` and CS231n's default hyper-parameters.
    pub fn new(rule: Rule, lr: f64) -> Self {
        UpdateConfig { rule, lr, momentum: 0.9, decay_rate: 0.99, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// Per-parameter optimiser state, shaped like the parameter.
#[derive(Clone, Debug)]
pub struct Slots<F> {
    /// Momentum's velocity, or Adam's first moment `m`.
    pub m: Tensor<F>,
    /// RMSProp's cache, or Adam's second moment `v`.
    pub v: Tensor<F>,
    /// Adam's step counter.
    pub t: u64,
}

impl<F: Float> Slots<F> {
    /// Zero state for a parameter shaped like `w`.
    pub fn zeros_like(w: &Tensor<F>) -> Self {
        Slots { m: Tensor::zeros(w.raw_dim()), v: Tensor::zeros(w.raw_dim()), t: 0 }
    }
}

/// Apply one update of `cfg.rule` to `w` in place. `w`, `dw` and the slots share a shape.
///
/// Elementwise: each parameter's new value depends on its own gradient and slots only, so
/// large parameters are updated in chunks in parallel on the thread pool (the same
/// operations per element, whatever the number of threads).
pub fn update<F: Float>(w: &mut Tensor<F>, dw: &Tensor<F>, slots: &mut Slots<F>, cfg: &UpdateConfig) {
    assert_eq!(w.shape(), dw.shape(), "update: parameter {:?} and gradient {:?} differ", w.shape(), dw.shape());
    let lr = F::from_f64c(cfg.lr);
    let one = F::one();
    match cfg.rule {
        Rule::Sgd => each2(w, dw, |w, g| *w -= lr * g),
        Rule::Momentum => {
            let mu = F::from_f64c(cfg.momentum);
            each3(w, dw, &mut slots.m, |w, g, v| {
                *v = mu * *v - lr * g;
                *w += *v;
            });
        }
        Rule::Rmsprop => {
            let (rho, eps) = (F::from_f64c(cfg.decay_rate), F::from_f64c(cfg.eps));
            each3(w, dw, &mut slots.v, |w, g, c| {
                *c = rho * *c + (one - rho) * g * g;
                *w -= lr * g / (c.sqrt() + eps);
            });
        }
        Rule::Adam => {
            slots.t = slots.t.saturating_add(1);
            let (b1, b2, eps) = (F::from_f64c(cfg.beta1), F::from_f64c(cfg.beta2), F::from_f64c(cfg.eps));
            // Past 2^31 - 1 steps beta^t is 0 in f64 anyway; `as i32` would wrap to a negative
            // power instead.
            let t = i32::try_from(slots.t).unwrap_or(i32::MAX);
            let c1 = one - F::from_f64c(cfg.beta1.powi(t));
            let c2 = one - F::from_f64c(cfg.beta2.powi(t));
            let Slots { m, v, .. } = slots;
            each4(w, dw, m, v, |w, g, m, v| {
                *m = b1 * *m + (one - b1) * g;
                *v = b2 * *v + (one - b2) * g * g;
                *w -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
            });
        }
    }
}

/// Elements per task of the parallel update.
const UPDATE_CHUNK: usize = 1 << 14;

/// Whether the update of these arrays (same shape) is cut into parallel chunks: all in
/// standard layout and large enough.
fn parallel_update<F: Float>(arrays: &[&Tensor<F>]) -> bool {
    arrays.iter().all(|a| a.is_standard_layout() && a.shape() == arrays[0].shape())
        && crate::parallel::split(arrays[0].len(), crate::parallel::ELEMENTWISE_SPLIT)
}

/// `f(w, g)` for every element.
fn each2<F: Float>(w: &mut Tensor<F>, g: &Tensor<F>, f: impl Fn(&mut F, F) + Sync + Send) {
    if parallel_update(&[w, g]) {
        let (ws, gs) = (w.as_slice_mut().expect("standard layout"), g.as_slice().expect("standard layout"));
        ws.par_chunks_mut(UPDATE_CHUNK).zip(gs.par_chunks(UPDATE_CHUNK)).for_each(|(w, g)| {
            w.iter_mut().zip(g).for_each(|(w, &g)| f(w, g));
        });
    } else {
        Zip::from(w).and(g).for_each(|w, &g| f(w, g));
    }
}

/// `f(w, g, s)` for every element.
fn each3<F: Float>(w: &mut Tensor<F>, g: &Tensor<F>, s: &mut Tensor<F>, f: impl Fn(&mut F, F, &mut F) + Sync + Send) {
    if parallel_update(&[w, g, s]) {
        let (ws, gs) = (w.as_slice_mut().expect("standard layout"), g.as_slice().expect("standard layout"));
        let ss = s.as_slice_mut().expect("standard layout");
        ws.par_chunks_mut(UPDATE_CHUNK).zip(gs.par_chunks(UPDATE_CHUNK)).zip(ss.par_chunks_mut(UPDATE_CHUNK)).for_each(
            |((w, g), s)| {
                w.iter_mut().zip(g).zip(s.iter_mut()).for_each(|((w, &g), s)| f(w, g, s));
            },
        );
    } else {
        Zip::from(w).and(g).and(s).for_each(|w, &g, s| f(w, g, s));
    }
}

/// `f(w, g, m, v)` for every element.
fn each4<F: Float>(
    w: &mut Tensor<F>,
    g: &Tensor<F>,
    m: &mut Tensor<F>,
    v: &mut Tensor<F>,
    f: impl Fn(&mut F, F, &mut F, &mut F) + Sync + Send,
) {
    if parallel_update(&[w, g, m, v]) {
        let (ws, gs) = (w.as_slice_mut().expect("standard layout"), g.as_slice().expect("standard layout"));
        let (ms, vs) = (m.as_slice_mut().expect("standard layout"), v.as_slice_mut().expect("standard layout"));
        ws.par_chunks_mut(UPDATE_CHUNK)
            .zip(gs.par_chunks(UPDATE_CHUNK))
            .zip(ms.par_chunks_mut(UPDATE_CHUNK))
            .zip(vs.par_chunks_mut(UPDATE_CHUNK))
            .for_each(|(((w, g), m), v)| {
                w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()).for_each(|(((w, &g), m), v)| f(w, g, m, v));
            });
    } else {
        Zip::from(w).and(g).and(m).and(v).for_each(|w, &g, m, v| f(w, g, m, v));
    }
}

/// The global L2 norm of a set of gradients: sqrt(sum over all elements of g^2).
pub fn global_norm<'a, F: Float + 'a>(grads: impl IntoIterator<Item = &'a Tensor<F>>) -> f64 {
    grads
        .into_iter()
        .map(|g| match g.as_slice_memory_order() {
            Some(s) => sum_squares(s),
            None => g.iter().map(|&v| v.to_f64c() * v.to_f64c()).sum::<f64>(),
        })
        .sum::<f64>()
        .sqrt()
}

/// sum(v^2) in f64 over eight independent partial sums, so the loop vectorises (one
/// running sum would be a serial chain of dependent adds).
fn sum_squares<F: Float>(s: &[F]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = s.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|v| v.to_f64c() * v.to_f64c()).sum();
    for c in chunks {
        for k in 0..8 {
            lanes[k] += c[k].to_f64c() * c[k].to_f64c();
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// Scale all gradients down so their global norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`). Returns the norm before clipping.
pub fn clip_global_norm<'a, F: Float + 'a>(grads: &mut [&'a mut Tensor<F>], max_norm: f64) -> f64 {
    let norm = global_norm(grads.iter().map(|g| &**g));
    if norm > max_norm && norm > 0.0 {
        let s = F::from_f64c(max_norm / (norm + 1e-6));
        for g in grads.iter_mut() {
            g.mapv_inplace(|v| v * s);
        }
    }
    norm
}

/// Learning-rate schedule: `lr_epoch = lr * decay^epoch` (CS231n's `lr_decay`).
pub fn decayed_lr(lr: f64, decay: f64, epoch: usize) -> f64 {
    lr * decay.powi(epoch as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::rel_error;
    use crate::tensor::linspace;
    use ndarray::IxDyn;

    fn lin(lo: f64, hi: f64) -> Tensor<f64> {
        linspace::<f64>(lo, hi, 20).into_shape_with_order(IxDyn(&[4, 5])).unwrap()
    }

    fn from(v: &[f64]) -> Tensor<f64> {
        Tensor::from_shape_vec(IxDyn(&[4, 5]), v.to_vec()).unwrap()
    }

    // Expected values: CS231n assignment 2, FullyConnectedNets.ipynb (sgd_momentum, rmsprop, adam
    // checks); every rule is also checked against the numpy fixtures in tests/golden.rs.
    #[test]
    fn cs231n_momentum_reference() {
        let mut w = lin(-0.4, 0.6);
        let dw = lin(-0.6, 0.4);
        let mut s = Slots::zeros_like(&w);
        s.m = lin(0.6, 0.9);
        update(&mut w, &dw, &mut s, &UpdateConfig::new(Rule::Momentum, 1e-3));
        let expected_w = from(&[
            0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789, 0.47454737, 0.54133684, 0.60812632, 0.67491579,
            0.74170526, 0.80849474, 0.87528421, 0.94207368, 1.00886316, 1.07565263, 1.14244211, 1.20923158, 1.27602105,
            1.34281053, 1.4096,
        ]);
        let expected_v = from(&[
            0.5406, 0.55475789, 0.56891579, 0.58307368, 0.59723158, 0.61138947, 0.62554737, 0.63970526, 0.65386316,
            0.66802105, 0.68217895, 0.69633684, 0.71049474, 0.72465263, 0.73881053, 0.75296842, 0.76712632, 0.78128421,
            0.79544211, 0.8096,
        ]);
        assert!(rel_error(&w, &expected_w) < 1e-8);
        assert!(rel_error(&s.m, &expected_v) < 1e-8);
    }

    #[test]
    fn cs231n_rmsprop_reference() {
        let mut w = lin(-0.4, 0.6);
        let dw = lin(-0.6, 0.4);
        let mut s = Slots::zeros_like(&w);
        s.v = lin(0.6, 0.9);
        update(&mut w, &dw, &mut s, &UpdateConfig::new(Rule::Rmsprop, 1e-2));
        let expected_w = from(&[
            -0.39223849,
            -0.34037513,
            -0.28849239,
            -0.23659121,
            -0.18467247,
            -0.132737,
            -0.08078555,
            -0.02881884,
            0.02316247,
            0.07515774,
            0.12716641,
            0.17918792,
            0.23122175,
            0.28326742,
            0.33532447,
            0.38739248,
            0.43947102,
            0.49155973,
            0.54365823,
            0.59576619,
        ]);
        let expected_cache = from(&[
            0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321, 0.67329252, 0.68859723, 0.70395734, 0.71937285,
            0.73484377, 0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936, 0.82883269, 0.84469141, 0.86060554,
            0.87657507, 0.8926,
        ]);
        assert!(rel_error(&w, &expected_w) < 1e-7);
        assert!(rel_error(&s.v, &expected_cache) < 1e-8);
    }

    #[test]
    fn cs231n_adam_reference() {
        let mut w = lin(-0.4, 0.6);
        let dw = lin(-0.6, 0.4);
        let mut s = Slots::zeros_like(&w);
        s.m = lin(0.6, 0.9);
        s.v = lin(0.7, 0.5);
        s.t = 5;
        update(&mut w, &dw, &mut s, &UpdateConfig::new(Rule::Adam, 1e-2));
        let expected_v = from(&[
            0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853, 0.64683452, 0.63628604, 0.6257431, 0.61520571,
            0.60467385, 0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767, 0.54159906, 0.53110598, 0.52061845,
            0.51013645, 0.49966,
        ]);
        let expected_m = from(&[
            0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474, 0.57736842, 0.59684211, 0.61631579, 0.63578947,
            0.65526316, 0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158, 0.77210526, 0.79157895, 0.81105263,
            0.83052632, 0.85,
        ]);
        assert_eq!(s.t, 6);
        // next_w is checked against the numpy fixture in tests/golden.rs.
        assert!(rel_error(&s.v, &expected_v) < 1e-7);
        assert!(rel_error(&s.m, &expected_m) < 1e-7);
    }

    #[test]
    fn sgd_and_clipping() {
        let mut w = lin(0.0, 1.0);
        let dw = lin(1.0, 1.0);
        update(&mut w, &dw, &mut Slots::zeros_like(&dw), &UpdateConfig::new(Rule::Sgd, 0.5));
        assert!((w[[0, 0]] + 0.5).abs() < 1e-12);
        let mut a = Tensor::from_elem(IxDyn(&[3]), 3.0f64);
        let mut b = Tensor::from_elem(IxDyn(&[1]), 4.0f64);
        // norm = sqrt(27 + 16) ~ 6.557
        let before = clip_global_norm(&mut [&mut a, &mut b], 1.0);
        assert!((before - 43f64.sqrt()).abs() < 1e-12);
        assert!((global_norm([&a, &b]) - 1.0).abs() < 1e-6);
        assert_eq!(decayed_lr(1.0, 0.5, 2), 0.25);
    }
}
