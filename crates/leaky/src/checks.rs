//! The gradient-check suite behind `leaky gradcheck`: every layer and every loss, checked
//! in f64 on random inputs (with a batch of one among the shapes), one report per input.
//!
//! Inputs are drawn away from kinks where that is the layer's nature (ReLU, max-pool,
//! clip): the checker still reports any element whose difference crossed a kink, and
//! leaves it out of the error instead of calling it a failure.

use crate::gradcheck::{check_array, check_scalar, CheckReport};
use crate::layers::conv::ConvParam;
use crate::layers::pool::PoolParam;
use crate::layers::{activation, affine, batchnorm, clip, conv, dropout, gather, layernorm, pool, rnn};
use crate::losses;
use crate::nn::{Activation, MlpSpec, Mode, Sequential};
use crate::tensor::Init;
use crate::tensor::{randn, rng, Rng64, Tensor};
use ndarray::{Array1, Array2, Array3, Array4, IxDyn};
use serde::Serialize;

/// One checked input of one layer or loss.
#[derive(Clone, Debug, Serialize)]
pub struct LayerCheck {
    /// Layer or loss, e.g. `"affine"`, `"softmax_loss"`.
    pub layer: String,
    /// Which input's gradient, e.g. `"dx"`, `"dw"`.
    pub input: String,
    /// Shape of that input.
    pub shape: Vec<usize>,
    /// The comparison.
    pub report: CheckReport,
}

struct Suite {
    out: Vec<LayerCheck>,
    rng: Rng64,
}

impl Suite {
    fn add<D: ndarray::Dimension>(
        &mut self,
        layer: &str,
        input: &str,
        x: &ndarray::Array<f64, D>,
        report: CheckReport,
    ) {
        self.out.push(LayerCheck { layer: layer.into(), input: input.into(), shape: x.shape().to_vec(), report });
    }

    fn randn(&mut self, shape: &[usize], std: f64) -> Tensor<f64> {
        randn(IxDyn(shape), std, &mut self.rng)
    }
}

/// Run every check with inputs drawn from `seed`. Each layer is checked on two shapes,
/// the first with a batch of one.
pub fn run_all(seed: u64) -> Vec<LayerCheck> {
    let mut s = Suite { out: Vec::new(), rng: rng(seed) };
    for n in [1usize, 4] {
        affine_checks(&mut s, n);
        activation_checks(&mut s, n);
        clip_checks(&mut s, n);
        gather_checks(&mut s, n);
        loss_checks(&mut s, n);
        dropout_checks(&mut s, n);
        layernorm_checks(&mut s, n);
        conv_checks(&mut s, n);
        pool_checks(&mut s, n);
    }
    // Batch norm needs N >= 3: with N = 1 the batch variance is 0 and with N = 2 every
    // normalised value is +-1, so almost no gradient flows (see batchnorm.rs).
    for n in [3usize, 6] {
        batchnorm_checks(&mut s, n);
    }
    model_checks(&mut s, Activation::Tanh, true);
    model_checks(&mut s, Activation::Relu, false);
    // The recurrent layers draw after all of the above, so the inputs above stay the same.
    for n in [1usize, 3] {
        rnn_checks(&mut s, n);
        lstm_checks(&mut s, n);
        embedding_checks(&mut s, n);
        temporal_affine_checks(&mut s, n);
        temporal_softmax_loss_checks(&mut s, n);
    }
    s.out
}

fn affine_checks(s: &mut Suite, n: usize) {
    let x = s.randn(&[n, 2, 3], 1.0);
    let w: Array2<f64> = randn((6, 5), 1.0, &mut s.rng);
    let b: Array1<f64> = randn(5, 1.0, &mut s.rng);
    let dout: Array2<f64> = randn((n, 5), 1.0, &mut s.rng);
    let (_, cache) = affine::forward(x.clone(), &w, &b);
    let (dx, dw, db) = affine::backward(&dout, &cache, &w);
    let r = check_array("affine dx", |x| affine::forward(x.clone(), &w, &b).0, &x, &dout, &dx);
    s.add("affine", "dx", &x, r);
    let r = check_array("affine dw", |w| affine::forward(x.clone(), w, &b).0, &w, &dout, &dw);
    s.add("affine", "dw", &w, r);
    let r = check_array("affine db", |b| affine::forward(x.clone(), &w, b).0, &b, &dout, &db);
    s.add("affine", "db", &b, r);
}

fn activation_checks(s: &mut Suite, n: usize) {
    let x = s.randn(&[n, 7], 1.0);
    let dout = s.randn(&[n, 7], 1.0);
    let (_, c) = activation::relu_forward(x.clone());
    let r = check_array(
        "relu dx",
        |x| activation::relu_forward(x.clone()).0,
        &x,
        &dout,
        &activation::relu_backward(&dout, &c),
    );
    s.add("relu", "dx", &x, r);
    let (_, c) = activation::leaky_relu_forward(x.clone(), 0.01);
    let dx = activation::leaky_relu_backward(&dout, &c, 0.01);
    let r = check_array("leaky_relu dx", |x| activation::leaky_relu_forward(x.clone(), 0.01).0, &x, &dout, &dx);
    s.add("leaky_relu", "dx", &x, r);
    let (_, c) = activation::sigmoid_forward(x.clone());
    let dx = activation::sigmoid_backward(&dout, &c);
    let r = check_array("sigmoid dx", |x| activation::sigmoid_forward(x.clone()).0, &x, &dout, &dx);
    s.add("sigmoid", "dx", &x, r);
    let (_, c) = activation::tanh_forward(x.clone());
    let dx = activation::tanh_backward(&dout, &c);
    let r = check_array("tanh dx", |x| activation::tanh_forward(x.clone()).0, &x, &dout, &dx);
    s.add("tanh", "dx", &x, r);
}

fn clip_checks(s: &mut Suite, n: usize) {
    let x = s.randn(&[n, 6], 1.5);
    let dout = s.randn(&[n, 6], 1.0);
    let (_, c) = clip::clip_forward(x.clone(), -1.0, 1.0);
    let dx = clip::clip_backward(&dout, &c);
    let r = check_array("clip dx", |x| clip::clip_forward(x.clone(), -1.0, 1.0).0, &x, &dout, &dx);
    s.add("clip", "dx", &x, r);
}

fn gather_checks(s: &mut Suite, n: usize) {
    let q: Array2<f64> = randn((n, 3), 1.0, &mut s.rng);
    let idx: Vec<usize> = (0..n).map(|i| (2 * i + 1) % 3).collect();
    let dout: Array1<f64> = randn(n, 1.0, &mut s.rng);
    let (_, c) = gather::forward(&q, &idx);
    let r = check_array("gather dq", |q| gather::forward(q, &idx).0, &q, &dout, &gather::backward(&dout, &c));
    s.add("gather", "dq", &q, r);
}

fn loss_checks(s: &mut Suite, n: usize) {
    let scores: Array2<f64> = randn((n, 5), 1.0, &mut s.rng);
    let y: Vec<usize> = (0..n).map(|i| (3 * i + 2) % 5).collect();
    let (_, g) = losses::softmax_loss(&scores, &y);
    let r = check_scalar("softmax_loss", |x| losses::softmax_loss(x, &y).0, &scores, &g);
    s.add("softmax_loss", "dscores", &scores, r);
    let (_, g) = losses::svm_loss(&scores, &y);
    let r = check_scalar("svm_loss", |x| losses::svm_loss(x, &y).0, &scores, &g);
    s.add("svm_loss", "dscores", &scores, r);
    let pred: Array2<f64> = randn((n, 3), 1.5, &mut s.rng);
    let target: Array2<f64> = randn((n, 3), 1.0, &mut s.rng);
    let (_, g) = losses::mse_loss(&pred, &target);
    let r = check_scalar("mse_loss", |p| losses::mse_loss(p, &target).0, &pred, &g);
    s.add("mse_loss", "dpred", &pred, r);
    let (_, g) = losses::huber_loss(&pred, &target, 1.0);
    let r = check_scalar("huber_loss", |p| losses::huber_loss(p, &target, 1.0).0, &pred, &g);
    s.add("huber_loss", "dpred", &pred, r);
    let (_, g) = losses::clipped_mse_loss(&pred, &target);
    let r = check_scalar("clipped_mse_loss", |p| losses::clipped_mse_loss(p, &target).0, &pred, &g);
    s.add("clipped_mse_loss", "dpred", &pred, r);
}

/// A whole model through the `Layer` trait: an MLP (affine -> [batchnorm] -> activation,
/// twice, then affine) with softmax loss and L2 `0.5 * reg * sum(W^2)`, every parameter's
/// gradient against the numerical gradient of the total loss.
fn model_checks(s: &mut Suite, activation: Activation, batchnorm: bool) {
    let spec = MlpSpec {
        input_dim: 5,
        hidden: vec![6, 4],
        output_dim: 3,
        activation,
        init: Init::Xavier,
        bias_init: 0.1,
        batchnorm,
        dropout_keep: None,
    };
    let mut net: Sequential<f64> = spec.build(7);
    let x = s.randn(&[5, 5], 1.0);
    let y = [0usize, 2, 1, 1, 0];
    let reg = 0.1;
    let model = format!("mlp({}{})", activation.name(), if batchnorm { ", batchnorm" } else { "" });
    let loss_of = |net: &mut Sequential<f64>| -> f64 {
        let scores = affine::as_2d(net.forward(x.clone(), Mode::Train));
        let l2: f64 =
            net.params().iter().filter(|(_, p)| p.decay).map(|(_, p)| p.value.iter().map(|v| v * v).sum::<f64>()).sum();
        losses::softmax_loss(&scores, &y).0 + 0.5 * reg * l2
    };
    let scores = affine::as_2d(net.forward(x.clone(), Mode::Train));
    net.backward(losses::softmax_loss(&scores, &y).1.into_dyn());
    let analytic: Vec<(String, Tensor<f64>, Tensor<f64>)> = net
        .params()
        .iter()
        .map(|(i, p)| {
            let g = if p.decay { &p.grad + &(&p.value * reg) } else { p.grad.clone() };
            (format!("{i}.{}", p.name), p.value.clone(), g)
        })
        .collect();
    for (k, (name, value, grad)) in analytic.iter().enumerate() {
        // A bias right before batch norm has exactly zero gradient (batch norm subtracts
        // the batch mean); comparing rounding noise with rounding noise says nothing.
        let layer: usize = name.split('.').next().and_then(|i| i.parse().ok()).unwrap_or(0);
        if name.ends_with(".b") && net.layers.get(layer + 1).is_some_and(|l| l.kind() == "batchnorm") {
            continue;
        }
        let r = check_scalar(
            &format!("{model} d{name}"),
            |v| {
                net.params_mut()[k].value = v.clone();
                loss_of(&mut net)
            },
            value,
            grad,
        );
        net.params_mut()[k].value = value.clone();
        s.add(&model, &format!("d{name}"), value, r);
    }
}

/// A non-zero scale in [0.5, 1.5] with a random sign, so normalisation layers pass
/// gradients of a measurable size.
fn scale(s: &mut Suite, d: usize) -> Array1<f64> {
    let u: Array1<f64> = crate::tensor::uniform(d, 0.5, 1.5, &mut s.rng);
    let sign: Array1<f64> = crate::tensor::uniform(d, -1.0, 1.0, &mut s.rng);
    u * sign.mapv(f64::signum)
}

fn dropout_checks(s: &mut Suite, n: usize) {
    let x = s.randn(&[n, 8], 1.0);
    let dout = s.randn(&[n, 8], 1.0);
    let seed = 17;
    let fwd = |x: &Tensor<f64>| dropout::forward(x, 0.6, Mode::Train, &mut rng(seed)).0;
    let (_, c) = dropout::forward(&x, 0.6, Mode::Train, &mut rng(seed));
    let r = check_array("dropout dx", fwd, &x, &dout, &dropout::backward(&dout, &c));
    s.add("dropout", "dx", &x, r);
}

fn layernorm_checks(s: &mut Suite, n: usize) {
    let x: Array2<f64> = randn((n, 6), 2.0, &mut s.rng);
    let gamma = scale(s, 6);
    let beta: Array1<f64> = randn(6, 1.0, &mut s.rng);
    let dout: Array2<f64> = randn((n, 6), 1.0, &mut s.rng);
    let (_, c) = layernorm::forward(&x, &gamma, &beta, 1e-5);
    let (dx, dg, db) = layernorm::backward(&dout, &c);
    let r = check_array("layernorm dx", |x| layernorm::forward(x, &gamma, &beta, 1e-5).0, &x, &dout, &dx);
    s.add("layernorm", "dx", &x, r);
    let r = check_array("layernorm dgamma", |g| layernorm::forward(&x, g, &beta, 1e-5).0, &gamma, &dout, &dg);
    s.add("layernorm", "dgamma", &gamma, r);
    let r = check_array("layernorm dbeta", |b| layernorm::forward(&x, &gamma, b, 1e-5).0, &beta, &dout, &db);
    s.add("layernorm", "dbeta", &beta, r);
}

fn batchnorm_checks(s: &mut Suite, n: usize) {
    let x: Array2<f64> = randn((n, 4), 2.0, &mut s.rng) + 3.0;
    let gamma = scale(s, 4);
    let beta: Array1<f64> = randn(4, 1.0, &mut s.rng);
    let dout: Array2<f64> = randn((n, 4), 1.0, &mut s.rng);
    let fwd = |x: &Array2<f64>, g: &Array1<f64>, b: &Array1<f64>| {
        batchnorm::forward(x, g, b, &mut batchnorm::BnParam::new(4), Mode::Train).0
    };
    let (_, c) = batchnorm::forward(&x, &gamma, &beta, &mut batchnorm::BnParam::new(4), Mode::Train);
    for (name, (dx, dg, db)) in
        [("batchnorm", batchnorm::backward(&dout, &c)), ("batchnorm_alt", batchnorm::backward_alt(&dout, &c))]
    {
        let r = check_array(&format!("{name} dx"), |x| fwd(x, &gamma, &beta), &x, &dout, &dx);
        s.add(name, "dx", &x, r);
        let r = check_array(&format!("{name} dgamma"), |g| fwd(&x, g, &beta), &gamma, &dout, &dg);
        s.add(name, "dgamma", &gamma, r);
        let r = check_array(&format!("{name} dbeta"), |b| fwd(&x, &gamma, b), &beta, &dout, &db);
        s.add(name, "dbeta", &beta, r);
    }
    let x4: Array4<f64> = randn((n, 2, 2, 3), 1.0, &mut s.rng) + 1.0;
    let gamma = scale(s, 2);
    let beta: Array1<f64> = randn(2, 1.0, &mut s.rng);
    let dout: Array4<f64> = randn((n, 2, 2, 3), 1.0, &mut s.rng);
    let sfwd = |x: &Array4<f64>, g: &Array1<f64>, b: &Array1<f64>| {
        batchnorm::spatial_forward(x, g, b, &mut batchnorm::BnParam::new(2), Mode::Train).0
    };
    let (_, c) = batchnorm::spatial_forward(&x4, &gamma, &beta, &mut batchnorm::BnParam::new(2), Mode::Train);
    let (dx, dg, db) = batchnorm::spatial_backward(&dout, &c);
    let r = check_array("spatial_batchnorm dx", |x| sfwd(x, &gamma, &beta), &x4, &dout, &dx);
    s.add("spatial_batchnorm", "dx", &x4, r);
    let r = check_array("spatial_batchnorm dgamma", |g| sfwd(&x4, g, &beta), &gamma, &dout, &dg);
    s.add("spatial_batchnorm", "dgamma", &gamma, r);
    let r = check_array("spatial_batchnorm dbeta", |b| sfwd(&x4, &gamma, b), &beta, &dout, &db);
    s.add("spatial_batchnorm", "dbeta", &beta, r);
}

fn conv_checks(s: &mut Suite, n: usize) {
    let cp = ConvParam { stride: 2, pad: 1 };
    let x: Array4<f64> = randn((n, 2, 5, 5), 1.0, &mut s.rng);
    let w: Array4<f64> = randn((3, 2, 3, 3), 1.0, &mut s.rng);
    let b: Array1<f64> = randn(3, 1.0, &mut s.rng);
    let dout: Array4<f64> = randn((n, 3, 3, 3), 1.0, &mut s.rng);
    for (name, fast) in [("conv_naive", false), ("conv_im2col", true)] {
        let fwd = |x: &Array4<f64>, w: &Array4<f64>, b: &Array1<f64>| {
            if fast {
                conv::forward_fast(x, w, b, cp).0
            } else {
                conv::forward_naive(x, w, b, cp).0
            }
        };
        let (dx, dw, db) = if fast {
            conv::backward_fast(&dout, &conv::forward_fast(&x, &w, &b, cp).1, &w)
        } else {
            conv::backward_naive(&dout, &conv::forward_naive(&x, &w, &b, cp).1, &w)
        };
        let r = check_array(&format!("{name} dx"), |x| fwd(x, &w, &b), &x, &dout, &dx);
        s.add(name, "dx", &x, r);
        let r = check_array(&format!("{name} dw"), |w| fwd(&x, w, &b), &w, &dout, &dw);
        s.add(name, "dw", &w, r);
        let r = check_array(&format!("{name} db"), |b| fwd(&x, &w, b), &b, &dout, &db);
        s.add(name, "db", &b, r);
    }
}

fn pool_checks(s: &mut Suite, n: usize) {
    let pp = PoolParam { height: 2, width: 2, stride: 2 };
    // A shuffled grid of distinct values 0.1 apart: no near-ties, so no element's finite
    // difference can change which input is the max.
    let len = n * 2 * 4 * 4;
    let perm = crate::tensor::permutation(len, &mut s.rng);
    let x = Array4::from_shape_vec((n, 2, 4, 4), perm.iter().map(|&i| 0.1 * i as f64).collect()).unwrap();
    let dout: Array4<f64> = randn((n, 2, 2, 2), 1.0, &mut s.rng);
    let (_, c) = pool::forward_naive(&x, pp);
    let r =
        check_array("maxpool_naive dx", |x| pool::forward_naive(x, pp).0, &x, &dout, &pool::backward_naive(&dout, &c));
    s.add("maxpool_naive", "dx", &x, r);
    let (_, c) = pool::forward_fast(&x, pp);
    let r = check_array("maxpool_fast dx", |x| pool::forward_fast(x, pp).0, &x, &dout, &pool::backward_fast(&dout, &c));
    s.add("maxpool_fast", "dx", &x, r);
}

// Recurrent layers: sequences of T = 5 steps. Weights are drawn with std 0.3 (0.2 for the
// 4H-wide LSTM weights) so pre-activations stay O(1), away from the flat tails of tanh and
// sigmoid, and gradient elements are O(1e-2..1).

/// The forward pass of a recurrent layer: `(x, h0, wx, wh, b) -> (h, cache)`.
type SeqForward<C> = fn(&Array3<f64>, &Array2<f64>, &Array2<f64>, &Array2<f64>, &Array1<f64>) -> (Array3<f64>, C);
/// The backward pass of a recurrent layer: `(dh, cache, wx, wh) -> (dx, dh0, dwx, dwh, db)`.
type SeqBackward<C> = fn(&Array3<f64>, &C, &Array2<f64>, &Array2<f64>) -> rnn::SequenceGrads<f64>;

/// The five gradients of a recurrent layer with `gates` blocks of H columns in its weights.
fn sequence_checks<C>(s: &mut Suite, layer: &str, n: usize, gates: usize, fwd: SeqForward<C>, bwd: SeqBackward<C>) {
    // H = 3 for the LSTM: its weight gradients have 4H^2 + 4HD elements, each a sum over
    // N*T terms, and the more elements, the likelier one cancels by chance to a size the
    // centred difference cannot resolve to 1e-7 (some seeds other than 0 still do).
    let (t, d, h) = (5usize, 3usize, if gates == 1 { 4usize } else { 3 });
    let w_std = if gates == 1 { 0.3 } else { 0.2 };
    let x: Array3<f64> = randn((n, t, d), 1.0, &mut s.rng);
    let h0: Array2<f64> = randn((n, h), 1.0, &mut s.rng);
    let wx: Array2<f64> = randn((d, gates * h), w_std, &mut s.rng);
    let wh: Array2<f64> = randn((h, gates * h), w_std, &mut s.rng);
    let b: Array1<f64> = randn(gates * h, 0.5, &mut s.rng);
    let dh: Array3<f64> = randn((n, t, h), 1.0, &mut s.rng);
    let (_, cache) = fwd(&x, &h0, &wx, &wh, &b);
    let (dx, dh0, dwx, dwh, db) = bwd(&dh, &cache, &wx, &wh);
    let r = check_array(&format!("{layer} dx"), |v| fwd(v, &h0, &wx, &wh, &b).0, &x, &dh, &dx);
    s.add(layer, "dx", &x, r);
    let r = check_array(&format!("{layer} dh0"), |v| fwd(&x, v, &wx, &wh, &b).0, &h0, &dh, &dh0);
    s.add(layer, "dh0", &h0, r);
    let r = check_array(&format!("{layer} dwx"), |v| fwd(&x, &h0, v, &wh, &b).0, &wx, &dh, &dwx);
    s.add(layer, "dwx", &wx, r);
    let r = check_array(&format!("{layer} dwh"), |v| fwd(&x, &h0, &wx, v, &b).0, &wh, &dh, &dwh);
    s.add(layer, "dwh", &wh, r);
    let r = check_array(&format!("{layer} db"), |v| fwd(&x, &h0, &wx, &wh, v).0, &b, &dh, &db);
    s.add(layer, "db", &b, r);
}

fn rnn_checks(s: &mut Suite, n: usize) {
    sequence_checks(s, "rnn", n, 1, rnn::forward::<f64>, rnn::backward::<f64>);
}

fn lstm_checks(s: &mut Suite, n: usize) {
    sequence_checks(s, "lstm", n, 4, rnn::lstm_forward::<f64>, rnn::lstm_backward::<f64>);
}

fn embedding_checks(s: &mut Suite, n: usize) {
    // Ids repeat (within and across rows) so the scatter-add is exercised.
    let (t, v, d) = (5usize, 4usize, 3usize);
    let ids = Array2::from_shape_fn((n, t), |(i, j)| (2 * i + 3 * j) % v);
    let w: Array2<f64> = randn((v, d), 1.0, &mut s.rng);
    let dout: Array3<f64> = randn((n, t, d), 1.0, &mut s.rng);
    let (_, c) = rnn::embedding_forward(&ids, &w);
    let dw = rnn::embedding_backward(&dout, &c);
    let r = check_array("embedding dw", |w| rnn::embedding_forward(&ids, w).0, &w, &dout, &dw);
    s.add("embedding", "dw", &w, r);
}

fn temporal_affine_checks(s: &mut Suite, n: usize) {
    let x: Array3<f64> = randn((n, 5, 3), 1.0, &mut s.rng);
    let w: Array2<f64> = randn((3, 4), 1.0, &mut s.rng);
    let b: Array1<f64> = randn(4, 1.0, &mut s.rng);
    let dout: Array3<f64> = randn((n, 5, 4), 1.0, &mut s.rng);
    let (_, c) = rnn::temporal_affine_forward(&x, &w, &b);
    let (dx, dw, db) = rnn::temporal_affine_backward(&dout, &c, &w);
    let r = check_array("temporal_affine dx", |x| rnn::temporal_affine_forward(x, &w, &b).0, &x, &dout, &dx);
    s.add("temporal_affine", "dx", &x, r);
    let r = check_array("temporal_affine dw", |w| rnn::temporal_affine_forward(&x, w, &b).0, &w, &dout, &dw);
    s.add("temporal_affine", "dw", &w, r);
    let r = check_array("temporal_affine db", |b| rnn::temporal_affine_forward(&x, &w, b).0, &b, &dout, &db);
    s.add("temporal_affine", "db", &b, r);
}

fn temporal_softmax_loss_checks(s: &mut Suite, n: usize) {
    // Some mask entries are false: those steps add nothing to the loss.
    let (t, v) = (5usize, 4usize);
    let x: Array3<f64> = randn((n, t, v), 1.0, &mut s.rng);
    let y = Array2::from_shape_fn((n, t), |(i, j)| (3 * i + j + 1) % v);
    let mask = Array2::from_shape_fn((n, t), |(i, j)| (i + j) % 3 != 2);
    let (_, dx) = rnn::temporal_softmax_loss(&x, &y, &mask);
    let r = check_scalar("temporal_softmax_loss", |x| rnn::temporal_softmax_loss(x, &y, &mask).0, &x, &dx);
    s.add("temporal_softmax_loss", "dx", &x, r);
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_check_in_the_suite_is_good_for_several_seeds() {
        for seed in 0..8 {
            let all = super::run_all(seed);
            assert!(all.len() > 40);
            for c in &all {
                assert!(c.report.is_good(), "seed {seed}: {} {}: {:?}", c.layer, c.input, c.report);
                // Only ops with kinks may exclude elements; a smooth op never may.
                let kinky = ["relu", "clip", "maxpool", "svm", "clipped_mse"].iter().any(|k| c.layer.contains(k));
                assert!(
                    kinky || c.report.kinks == 0,
                    "seed {seed}: {} {} reported kinks: {:?}",
                    c.layer,
                    c.input,
                    c.report
                );
            }
            assert!(all.iter().any(|c| c.shape[0] == 1), "a batch of one is among the shapes");
        }
    }
}
