//! The gradient-check suite behind `leaky gradcheck`: every layer and every loss, checked
//! in f64 on random inputs (with a batch of one among the shapes), one report per input.
//!
//! Inputs are drawn away from kinks where that is the layer's nature (ReLU, max-pool,
//! clip): the checker still reports any element whose difference crossed a kink, and
//! leaves it out of the error instead of calling it a failure.

use crate::gradcheck::{check_array, check_scalar, CheckReport};
use crate::layers::{activation, affine, clip, gather};
use crate::losses;
use crate::tensor::{randn, rng, Rng64, Tensor};
use ndarray::{Array1, Array2, IxDyn};
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
