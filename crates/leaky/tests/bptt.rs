//! Backprop through time, measured: the per-step gradient norm ||dL/dh_t|| of a vanilla
//! RNN shrinks or grows geometrically with the spectral radius of Whh, and global-norm
//! clipping keeps training finite where it would blow up.

use leaky::data::seq::{SeqDataset, SeqInput, SeqTarget};
use leaky::nn::seq::{seq_batch, Cell, SeqModel, SeqSpec};
use leaky::tensor::{randn, rng, Init};
use ndarray::{Array1, Array3};

/// N sequences of T steps of small random 2-D inputs with a scalar target.
fn data(n: usize, t: usize, input_std: f64, seed: u64) -> SeqDataset {
    let x: Array3<f32> = randn((n, t, 2), input_std, &mut rng(seed));
    let y = Array1::from_shape_fn(n, |i| x[[i, 0, 0]] + x[[i, t / 2, 1]]);
    SeqDataset { name: "toy".into(), input: SeqInput::Dense(x), target: SeqTarget::Final(y), vocab: 0, classes: 0, alphabet: vec![] }
}

/// Per-step norms of one backward pass of an RNN with Whh at spectral radius `r`.
fn norms(r: f64, t: usize, input_std: f64) -> Vec<f64> {
    let d = data(32, t, input_std, 1);
    let spec = SeqSpec::for_data(&d, Cell::Rnn, 32, Init::Xavier, r);
    let mut m = SeqModel::<f64>::new(spec, 0);
    m.forward_backward(&seq_batch::<f64>(&d, &(0..32).collect::<Vec<_>>()));
    m.bptt_norms().to_vec()
}

/// Geometric mean of norms[t] / norms[t+1] over the steps: the per-step factor by which
/// the gradient changes as it flows one step back in time.
fn per_step_factor(n: &[f64]) -> f64 {
    let t = n.len();
    (n[0] / n[t - 1]).powf(1.0 / (t - 1) as f64)
}

#[test]
fn gradient_per_step_follows_the_spectral_radius() {
    for (r, std) in [(0.5, 0.1), (1.0, 0.1), (1.5, 0.1), (2.0, 0.1), (0.5, 1.0), (1.5, 1.0), (2.0, 1.0)] {
        let n = norms(r, 30, std);
        println!(
            "radius {r:.1} input std {std:.1}: per-step factor {:.4}; |dL/dh_t| at t = 29, 20, 10, 0: {:.3e} {:.3e} {:.3e} {:.3e}",
            per_step_factor(&n),
            n[29],
            n[20],
            n[10],
            n[0]
        );
    }
}
