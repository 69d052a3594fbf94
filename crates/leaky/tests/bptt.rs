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
    SeqDataset {
        name: "toy".into(),
        input: SeqInput::Dense(x),
        target: SeqTarget::Final(y),
        vocab: 0,
        classes: 0,
        alphabet: vec![],
    }
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
    // Measured (seed 0, H = 32, T = 30, Xavier Wx, inputs N(0, 0.1^2) / N(0, 1)):
    // radius 0.5 -> per-step factor 0.488 / 0.441; 1.5 -> 1.112 / 1.027; 2.0 -> 1.274 / 1.136.
    for std in [0.1, 1.0] {
        let n = norms(0.5, 30, std);
        let f = per_step_factor(&n);
        println!("radius 0.5, input std {std}: per-step factor {f:.4}, |dL/dh_0| / |dL/dh_29| = {:.2e}", n[0] / n[29]);
        assert!(f < 0.55, "radius 0.5 must shrink the gradient every step back, factor {f}");
        // Geometric: every 10 steps back the norm falls by at least 0.55^10 ~ 2.5e-3.
        assert!(n[9] < 3e-3 * n[19] && n[19] < 3e-3 * n[29], "{n:?}");
        let n = norms(2.0, 30, std);
        let f = per_step_factor(&n);
        println!("radius 2.0, input std {std}: per-step factor {f:.4}, |dL/dh_0| / |dL/dh_29| = {:.2e}", n[0] / n[29]);
        assert!(f > 1.1, "radius 2.0 must grow the gradient back through time, factor {f}");
        assert!(n[0] > 10.0 * n[29]);
    }
    let f = per_step_factor(&norms(1.5, 30, 0.1));
    println!("radius 1.5, input std 0.1: per-step factor {f:.4}");
    assert!(f > 1.05, "radius 1.5 grows the gradient too, factor {f}");
}

/// Train an RNN whose Whh starts at spectral radius 3 with a learning rate that is too
/// large: without clipping the run diverges; clipping the global norm to 1 keeps it finite.
#[test]
fn clipping_keeps_an_exploding_rnn_finite() {
    use leaky::optim::{Rule, UpdateConfig};
    use leaky::train::{fit_seq, NoObserver, TrainConfig};
    let d = leaky::data::seq::adding(512, 50, 1);
    let (tr, va) = d.split(0.25, 0);
    let run = |clip: f64| {
        let spec = SeqSpec::for_data(&tr, Cell::Rnn, 32, Init::Xavier, 3.0);
        let mut m = SeqModel::<f32>::new(spec, 0);
        let cfg = TrainConfig {
            epochs: 3,
            batch_size: 32,
            update: UpdateConfig::new(Rule::Sgd, 0.5),
            clip_grad_norm: clip,
            ..Default::default()
        };
        let r = fit_seq(&mut m, &tr, &va, &cfg, &mut NoObserver);
        let max_norm = r.history.iter().map(|h| h.train_loss).fold(0.0, f64::max);
        (r, max_norm)
    };
    let (wild, wild_loss) = run(0.0);
    let (tame, tame_loss) = run(1.0);
    println!("no clipping: diverged at {:?}, worst epoch loss {wild_loss:.3e}", wild.diverged_at_step);
    println!(
        "clip 1.0: diverged at {:?}, worst epoch loss {tame_loss:.3e}, val mse {:.4}",
        tame.diverged_at_step, tame.best_val_loss
    );
    assert!(wild.diverged_at_step.is_some() || wild_loss > 10.0, "the unclipped run should blow up");
    assert!(tame.diverged_at_step.is_none() && tame_loss.is_finite() && tame_loss < 10.0);
}

/// The adding problem with T = 50 (baseline: predicting the mean gives MSE 1/6): an LSTM
/// learns it, a vanilla RNN of the same size does not get off the baseline.
#[test]
fn lstm_learns_adding_at_t50_where_a_vanilla_rnn_does_not() {
    use leaky::optim::{Rule, UpdateConfig};
    use leaky::train::{fit_seq, NoObserver, TrainConfig};
    let d = leaky::data::seq::adding(3000, 50, 0);
    let (tr, va) = d.split(0.2, 0);
    let train = |cell: Cell, lr: f64| {
        let spec = SeqSpec::for_data(&tr, cell, 32, Init::Xavier, 0.0);
        let mut m = SeqModel::<f32>::new(spec, 0);
        let cfg = TrainConfig {
            epochs: 12,
            batch_size: 64,
            update: UpdateConfig::new(Rule::Adam, lr),
            clip_grad_norm: 1.0,
            ..Default::default()
        };
        fit_seq(&mut m, &tr, &va, &cfg, &mut NoObserver).best_val_loss
    };
    let lstm = train(Cell::Lstm, 1e-2);
    let rnn = train(Cell::Rnn, 1e-2);
    println!("adding T=50, 12 epochs: LSTM val mse {lstm:.4}, RNN val mse {rnn:.4}, baseline {:.4}", 1.0 / 6.0);
    assert!(lstm < 0.05, "LSTM should learn the adding problem: val mse {lstm}");
    assert!(rnn > 0.12, "the vanilla RNN was expected to stay near the 1/6 baseline: {rnn}");
}
