//! Batch norm staged on a tape, and the three-way check of its gradients.
//!
//! [`staged`] records CS231n's computational graph of a training-mode batch norm, one node
//! per stage: mean, centre, square, variance, sqrt (of `var + eps`), invert, normalise,
//! scale, shift. [`agreement`] runs the same random batch through the tape, the
//! hand-written layer ([`crate::layers::batchnorm::backward`] and `backward_alt`) and
//! centred finite differences, and reports how far apart their gradients are.

use super::{NodeId, Tape};
use crate::gradcheck::{numerical_gradient, rel_error};
use crate::layers::batchnorm::{self, BnParam};
use crate::nn::Mode;
use crate::tensor::{randn, rng};
use ndarray::{Array1, Array2};

/// The ids of every stage of [`staged`].
#[derive(Clone, Copy, Debug)]
pub struct BnNodes {
    /// Input `x`: (N, D).
    pub x: NodeId,
    /// Scale `gamma`: (D,).
    pub gamma: NodeId,
    /// Shift `beta`: (D,).
    pub beta: NodeId,
    /// The constant `eps`, a scalar.
    pub eps: NodeId,
    /// 1. mean: `mu = mean(x, axis=0)`, (D,).
    pub mu: NodeId,
    /// 2. centre: `xmu = x - mu`, (N, D).
    pub xmu: NodeId,
    /// 3. square: `sq = xmu^2`, (N, D).
    pub sq: NodeId,
    /// 4. variance: `var = mean(sq, axis=0)`, (D,).
    pub var: NodeId,
    /// `var + eps`, (D,).
    pub var_eps: NodeId,
    /// 5. sqrt: `sqrtvar = sqrt(var + eps)`, (D,).
    pub sqrtvar: NodeId,
    /// 6. invert: `ivar = sqrtvar^-1`, (D,).
    pub ivar: NodeId,
    /// 7. normalise: `xhat = xmu * ivar`, (N, D).
    pub xhat: NodeId,
    /// 8. scale: `gx = gamma * xhat`, (N, D).
    pub gx: NodeId,
    /// 9. shift: `out = gx + beta`, (N, D).
    pub out: NodeId,
}

/// Record a training-mode batch norm of `x` on `tape`, stage by stage (no running
/// statistics: those do not take part in the gradient).
///
/// * `x`: node of shape (N, D); `gamma`, `beta`: nodes of shape (D,)
/// * `eps`: added to the variance before the square root (a scalar constant node)
///
/// Returns the ids of every stage; `out` is (N, D).
pub fn staged(tape: &mut Tape, x: NodeId, gamma: NodeId, beta: NodeId, eps: f64) -> BnNodes {
    let mu = tape.mean(x, Some(0));
    let xmu = tape.sub(x, mu);
    let sq = tape.pow(xmu, 2.0);
    let var = tape.mean(sq, Some(0));
    let eps_id = tape.scalar(eps);
    let eps_id = tape.set_name(eps_id, "eps");
    let var_eps = tape.add(var, eps_id);
    let sqrtvar = tape.sqrt(var_eps);
    let ivar = tape.pow(sqrtvar, -1.0);
    let xhat = tape.mul(xmu, ivar);
    let gx = tape.mul(gamma, xhat);
    let out = tape.add(gx, beta);
    for (id, name) in [
        (mu, "mu"),
        (xmu, "xmu"),
        (sq, "sq"),
        (var, "var"),
        (var_eps, "var+eps"),
        (sqrtvar, "sqrtvar"),
        (ivar, "ivar"),
        (xhat, "xhat"),
        (gx, "gx"),
        (out, "out"),
    ] {
        tape.set_name(id, name);
    }
    BnNodes { x, gamma, beta, eps: eps_id, mu, xmu, sq, var, var_eps, sqrtvar, ivar, xhat, gx, out }
}

/// A random batch for the checks: `x` (N, D) with a non-zero mean, `gamma`, `beta` (D,)
/// and an upstream gradient `dout` (N, D).
#[derive(Clone, Debug)]
pub struct BnProblem {
    /// Input, (N, D).
    pub x: Array2<f64>,
    /// Scale, (D,).
    pub gamma: Array1<f64>,
    /// Shift, (D,).
    pub beta: Array1<f64>,
    /// Upstream gradient, (N, D).
    pub dout: Array2<f64>,
    /// Variance epsilon.
    pub eps: f64,
}

impl BnProblem {
    /// Draw a problem of `n` rows and `d` features from `seed`: `x ~ 3 + 2 N(0, 1)`,
    /// `gamma ~ 1 + 0.5 N(0, 1)`, `beta, dout ~ N(0, 1)`, `eps = 1e-5`.
    pub fn random(n: usize, d: usize, seed: u64) -> BnProblem {
        let mut r = rng(seed);
        let x = randn::<f64, _>((n, d), 2.0, &mut r) + 3.0;
        let gamma = randn::<f64, _>(d, 0.5, &mut r) + 1.0;
        let beta = randn(d, 1.0, &mut r);
        let dout = randn((n, d), 1.0, &mut r);
        BnProblem { x, gamma, beta, dout, eps: 1e-5 }
    }

    /// Build the staged graph of this problem on a fresh tape and run its backward pass
    /// from `dout`.
    pub fn tape(&self) -> (Tape, BnNodes) {
        let mut t = Tape::new();
        let x = t.input("x", self.x.clone());
        let gamma = t.input("gamma", self.gamma.clone());
        let beta = t.input("beta", self.beta.clone());
        let nodes = staged(&mut t, x, gamma, beta, self.eps);
        t.backward_with(nodes.out, self.dout.clone().into_dyn());
        (t, nodes)
    }

    /// `sum(batchnorm(x, gamma, beta) * dout)` through the layer's forward pass: the
    /// scalar whose gradient every method computes.
    fn objective(&self, x: &Array2<f64>, gamma: &Array1<f64>, beta: &Array1<f64>) -> f64 {
        let mut p = BnParam::new(x.ncols());
        p.eps = self.eps;
        let (out, _) = batchnorm::forward(x, gamma, beta, &mut p, Mode::Train);
        (out * &self.dout).sum()
    }
}

/// How far apart the gradients of batch norm are, computed three ways. Each field is the
/// largest [`rel_error`] over `dx`, `dgamma` and `dbeta`.
#[derive(Clone, Copy, Debug)]
pub struct Agreement {
    /// Tape vs [`batchnorm::backward`] (the layer's staged backward).
    pub tape_vs_layer: f64,
    /// Tape vs [`batchnorm::backward_alt`] (the closed form).
    pub tape_vs_layer_alt: f64,
    /// Tape vs centred finite differences (h = 1e-5) of the layer's forward.
    pub tape_vs_numeric: f64,
    /// The layer's `backward` vs the same finite differences.
    pub layer_vs_numeric: f64,
    /// The tape's forward `out` vs the layer's forward output.
    pub forward: f64,
}

impl Agreement {
    /// The largest of the three gradient comparisons involving the tape.
    pub fn worst(&self) -> f64 {
        self.tape_vs_layer.max(self.tape_vs_layer_alt).max(self.tape_vs_numeric)
    }

    /// Whether every comparison (forward included) is at most `tol` (the project's bar is 1e-7).
    pub fn within(&self, tol: f64) -> bool {
        [self.tape_vs_layer, self.tape_vs_layer_alt, self.tape_vs_numeric, self.layer_vs_numeric, self.forward]
            .iter()
            .all(|&e| e <= tol)
    }
}

/// The three-way check on [`BnProblem::random`]`(4, 3, seed)`.
pub fn agreement(seed: u64) -> Agreement {
    agreement_on(&BnProblem::random(4, 3, seed))
}

/// The three-way check on a given problem.
pub fn agreement_on(p: &BnProblem) -> Agreement {
    let (t, ids) = p.tape();
    let grad = |id: NodeId| t.grad(id).expect("input feeds the output").clone();
    let tape = [grad(ids.x), grad(ids.gamma), grad(ids.beta)];

    let mut param = BnParam::new(p.x.ncols());
    param.eps = p.eps;
    let (out, cache) = batchnorm::forward(&p.x, &p.gamma, &p.beta, &mut param, Mode::Train);
    let (dx, dg, db) = batchnorm::backward(&p.dout, &cache);
    let layer = [dx.into_dyn(), dg.into_dyn(), db.into_dyn()];
    let (dx, dg, db) = batchnorm::backward_alt(&p.dout, &cache);
    let alt = [dx.into_dyn(), dg.into_dyn(), db.into_dyn()];

    let h = 1e-5;
    let nx = numerical_gradient(|x| p.objective(x, &p.gamma, &p.beta), &p.x, h).grad;
    let ng = numerical_gradient(|g| p.objective(&p.x, g, &p.beta), &p.gamma, h).grad;
    let nb = numerical_gradient(|b| p.objective(&p.x, &p.gamma, b), &p.beta, h).grad;
    let numeric = [nx.into_dyn(), ng.into_dyn(), nb.into_dyn()];

    let worst = |a: &[super::Value; 3], b: &[super::Value; 3]| {
        a.iter().zip(b.iter()).map(|(u, v)| rel_error(u, v)).fold(0.0, f64::max)
    };
    Agreement {
        tape_vs_layer: worst(&tape, &layer),
        tape_vs_layer_alt: worst(&tape, &alt),
        tape_vs_numeric: worst(&tape, &numeric),
        layer_vs_numeric: worst(&layer, &numeric),
        forward: rel_error(t.value(ids.out), &out.into_dyn()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_graph_has_every_stage_with_the_layer_shapes() {
        let p = BnProblem::random(5, 2, 1);
        let (t, ids) = p.tape();
        for (id, shape) in [(ids.mu, vec![2]), (ids.xmu, vec![5, 2]), (ids.var, vec![2]), (ids.out, vec![5, 2])] {
            assert_eq!(t.value(id).shape(), &shape[..], "{}", t.display_name(id));
        }
        // Every column of xhat has mean 0 and (biased) variance var / (var + eps) ~ 1.
        let xhat = t.value(ids.xhat);
        for col in xhat.columns() {
            assert!(col.mean().unwrap().abs() < 1e-12);
            let v = col.mapv(|v| v * v).mean().unwrap();
            assert!((v - 1.0).abs() < 1e-5, "variance {v}");
        }
    }

    #[test]
    fn tape_layer_and_numeric_gradients_agree() {
        for seed in 0..3 {
            let a = agreement(seed);
            assert!(a.within(1e-7), "seed {seed}: {a:?}");
        }
    }
}
