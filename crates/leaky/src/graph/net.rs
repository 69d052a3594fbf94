//! An affine-relu-affine-softmax network on the tape, checked against the hand-written
//! layers ([`crate::layers::affine`], [`crate::layers::activation`],
//! [`crate::losses::softmax_loss`]) and numerical gradients.

use super::{NodeId, Tape, Value};
use crate::gradcheck::{numerical_gradient, rel_error};
use crate::layers::{activation, affine};
use crate::losses::softmax_loss;
use crate::tensor::{randn, rng};
use ndarray::{Array1, Array2};

/// The ids of the network's nodes on a tape.
#[derive(Clone, Copy, Debug)]
pub struct NetNodes {
    /// Input `x`: (N, D).
    pub x: NodeId,
    /// First weight `w1`: (D, H).
    pub w1: NodeId,
    /// First bias `b1`: (H,).
    pub b1: NodeId,
    /// Second weight `w2`: (H, C).
    pub w2: NodeId,
    /// Second bias `b2`: (C,).
    pub b2: NodeId,
    /// Hidden activations `relu(x @ w1 + b1)`: (N, H).
    pub hidden: NodeId,
    /// Class scores `hidden @ w2 + b2`: (N, C).
    pub scores: NodeId,
    /// Mean softmax cross-entropy, a scalar.
    pub loss: NodeId,
}

/// Record the mean softmax cross-entropy of `scores` on `tape`, from the tape's own ops.
///
/// * `scores`: node of shape (N, C)
/// * `y`: length N, each `< C`
///
/// `loss = mean_i (log sum_j exp(s_ij - m_i) - (s_iy_i - m_i))` with `m_i = max_j s_ij`
/// (the shift that keeps `exp` finite; its gradient cancels). Returns the scalar loss node.
/// Panics if a label is out of range.
pub fn softmax_cross_entropy(tape: &mut Tape, scores: NodeId, y: &[usize]) -> NodeId {
    let shape = tape.value(scores).shape().to_vec();
    assert!(shape.len() == 2 && shape[0] == y.len(), "softmax_cross_entropy: scores {shape:?} for {} labels", y.len());
    let (n, c) = (shape[0], shape[1]);
    let mut onehot = Array2::<f64>::zeros((n, c));
    for (i, &yi) in y.iter().enumerate() {
        assert!(yi < c, "softmax_cross_entropy: label {yi} out of range for {c} classes (row {i})");
        onehot[[i, yi]] = 1.0;
    }
    let m = tape.max(scores, Some(1));
    let m = tape.reshape(m, &[n, 1]);
    let shifted = tape.sub(scores, m);
    let e = tape.exp(shifted);
    let se = tape.sum(e, Some(1));
    let lse = tape.log(se);
    let onehot = tape.input("onehot(y)", onehot);
    let picked = tape.mul(shifted, onehot);
    let picked = tape.sum(picked, Some(1));
    let per_row = tape.sub(lse, picked);
    let loss = tape.mean(per_row, None);
    tape.set_name(loss, "loss")
}

/// A small classification problem with the network's parameters.
#[derive(Clone, Debug)]
pub struct NetProblem {
    /// Inputs, (N, D).
    pub x: Array2<f64>,
    /// Labels, length N.
    pub y: Vec<usize>,
    /// (D, H).
    pub w1: Array2<f64>,
    /// (H,).
    pub b1: Array1<f64>,
    /// (H, C).
    pub w2: Array2<f64>,
    /// (C,).
    pub b2: Array1<f64>,
}

impl NetProblem {
    /// N = 6 examples, D = 4 features, H = 5 hidden units, C = 3 classes, all drawn from
    /// `seed`: x ~ N(0, 1), w1 ~ N(0, 0.7^2), b1, b2 ~ N(0, 0.5^2), w2 ~ N(0, 0.4^2), so that
    /// relu units are both on and off and the softmax is not saturated (a saturated softmax
    /// has gradients of ~1e-8, where the finite differences' rounding noise dominates
    /// the relative error).
    pub fn random(seed: u64) -> NetProblem {
        let (n, d, h, c) = (6, 4, 5, 3);
        let mut r = rng(seed);
        NetProblem {
            x: randn((n, d), 1.0, &mut r),
            y: (0..n).map(|i| i % c).collect(),
            w1: randn((d, h), 0.7, &mut r),
            b1: randn(h, 0.5, &mut r),
            w2: randn((h, c), 0.4, &mut r),
            b2: randn(c, 0.5, &mut r),
        }
    }

    /// Build the network on a fresh tape and run backward from the loss.
    pub fn tape(&self) -> (Tape, NetNodes) {
        let mut t = Tape::new();
        let x = t.input("x", self.x.clone());
        let w1 = t.input("w1", self.w1.clone());
        let b1 = t.input("b1", self.b1.clone());
        let w2 = t.input("w2", self.w2.clone());
        let b2 = t.input("b2", self.b2.clone());
        let a1 = t.matmul(x, w1);
        let a1 = t.add(a1, b1);
        let hidden = t.relu(a1);
        let hidden = t.set_name(hidden, "hidden");
        let s = t.matmul(hidden, w2);
        let scores = t.add(s, b2);
        let scores = t.set_name(scores, "scores");
        let loss = softmax_cross_entropy(&mut t, scores, &self.y);
        t.backward(loss);
        (t, NetNodes { x, w1, b1, w2, b2, hidden, scores, loss })
    }

    /// The loss and the gradients `[dx, dw1, db1, dw2, db2]` from the layers' forward and
    /// backward functions.
    pub fn layers(&self) -> (f64, [Value; 5]) {
        let (a1, c1) = affine::forward(self.x.clone().into_dyn(), &self.w1, &self.b1);
        let (h, cr) = activation::relu_forward(a1.into_dyn());
        let (s, c2) = affine::forward(h, &self.w2, &self.b2);
        let (loss, ds) = softmax_loss(&s, &self.y);
        let (dh, dw2, db2) = affine::backward(&ds, &c2, &self.w2);
        let da1 = affine::as_2d(activation::relu_backward(&dh, &cr));
        let (dx, dw1, db1) = affine::backward(&da1, &c1, &self.w1);
        (loss, [dx, dw1.into_dyn(), db1.into_dyn(), dw2.into_dyn(), db2.into_dyn()])
    }

    fn loss_with(&self, edit: impl FnOnce(&mut NetProblem)) -> f64 {
        let mut p = self.clone();
        edit(&mut p);
        p.layers().0
    }
}

/// How far apart the network's gradients are, three ways: each field is the largest
/// [`rel_error`] over `dx, dw1, db1, dw2, db2` (`loss` compares the two forward losses).
#[derive(Clone, Copy, Debug)]
pub struct NetAgreement {
    /// Tape vs the hand-written layers.
    pub tape_vs_layers: f64,
    /// Tape vs centred finite differences (h = 1e-5) of the layers' forward loss.
    pub tape_vs_numeric: f64,
    /// Layers vs the same finite differences.
    pub layers_vs_numeric: f64,
    /// Relative error between the two losses.
    pub loss: f64,
    /// How many finite differences crossed a ReLU kink (0 makes the numeric comparison exact
    /// to the bands).
    pub kinks: usize,
}

/// The three-way check on [`NetProblem::random`]`(seed)`.
pub fn agreement(seed: u64) -> NetAgreement {
    let p = NetProblem::random(seed);
    let (t, ids) = p.tape();
    let tape: Vec<Value> = [ids.x, ids.w1, ids.b1, ids.w2, ids.b2]
        .iter()
        .map(|&id| t.grad(id).expect("parameter feeds the loss").clone())
        .collect();
    let (loss, layers) = p.layers();
    let h = 1e-5;
    let n = [
        numerical_gradient(|v| p.loss_with(|q| q.x = v.clone()), &p.x, h),
        numerical_gradient(|v| p.loss_with(|q| q.w1 = v.clone()), &p.w1, h),
    ];
    let nb1 = numerical_gradient(|v| p.loss_with(|q| q.b1 = v.clone()), &p.b1, h);
    let nw2 = numerical_gradient(|v| p.loss_with(|q| q.w2 = v.clone()), &p.w2, h);
    let nb2 = numerical_gradient(|v| p.loss_with(|q| q.b2 = v.clone()), &p.b2, h);
    let kinks = n.iter().map(|g| g.kinks.len()).sum::<usize>() + nb1.kinks.len() + nw2.kinks.len() + nb2.kinks.len();
    let [nx, nw1] = n;
    let numeric =
        [nx.grad.into_dyn(), nw1.grad.into_dyn(), nb1.grad.into_dyn(), nw2.grad.into_dyn(), nb2.grad.into_dyn()];
    let worst = |a: &[Value], b: &[Value]| a.iter().zip(b).map(|(u, v)| rel_error(u, v)).fold(0.0, f64::max);
    let tape_loss = t.item(ids.loss).unwrap_or(f64::NAN);
    NetAgreement {
        tape_vs_layers: worst(&tape, &layers),
        tape_vs_numeric: worst(&tape, &numeric),
        layers_vs_numeric: worst(&layers, &numeric),
        loss: crate::gradcheck::elem_rel_error(tape_loss, loss),
        kinks,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tape_net_matches_layers_and_numeric() {
        for seed in 0..5 {
            let a = super::agreement(seed);
            assert_eq!(a.kinks, 0, "seed {seed}");
            assert!(a.tape_vs_layers <= 1e-7 && a.tape_vs_numeric <= 1e-7 && a.loss <= 1e-12, "seed {seed}: {a:?}");
            // The relu must matter: some hidden units on, some off.
            let (t, ids) = super::NetProblem::random(seed).tape();
            let h = t.value(ids.hidden);
            assert!(h.iter().any(|&v| v == 0.0) && h.iter().any(|&v| v > 0.0), "seed {seed}");
        }
    }
}
