//! The gradient-check suite behind `leaky gradcheck`: every layer and every loss, checked
//! in f64 on random inputs (with a batch of one among the shapes), one report per input.
//!
//! Inputs are drawn away from kinks where that is the layer's nature (ReLU, max-pool,
//! clip): the checker still reports any element whose difference crossed a kink, and
//! leaves it out of the error instead of calling it a failure.

use crate::gradcheck::{check_array, check_scalar, CheckReport};
use crate::layers::{activation, affine, clip, gather, rnn};
use crate::losses;
use crate::tensor::{randn, rng, Rng64, Tensor};
use ndarray::{Array1, Array2, Array3, IxDyn};
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
    }
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
    let x = s.randn(&[n, 7], 2.0);
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
    fn every_check_in_the_suite_is_good() {
        let all = super::run_all(0);
        assert!(all.len() > 20);
        for c in &all {
            assert!(c.report.is_good(), "{} {}: {:?}", c.layer, c.input, c.report);
        }
        assert!(all.iter().any(|c| c.shape[0] == 1), "a batch of one is among the shapes");
    }
}
