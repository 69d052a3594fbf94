//! The doctor's overhead: the same training run with `NoObserver` (A) and with `Doctor` at
//! the default sampling (B), interleaved A B B A ...; prints the median of the pairwise time
//! ratios B/A for wall time and for the calling thread's CPU time (the robust figure with
//! `RAYON_NUM_THREADS=1` on a shared machine).
//!
//! Workloads (arguments; all three by default):
//! * `mlp`: the MLP digits run of `examples/digits.toml` (64-256-256-10 ReLU, He init, Adam
//!   lr 1e-3, lr_decay 0.95, batch 64, 20 epochs = 460 steps and 20 evaluations).
//! * `rnn`, `lstm`: `fit_seq` on random dense sequences of issue 7's size (input 64, hidden
//!   128, T = 50, batch 32, regression on the final state, SGD), 640 training and 64
//!   validation sequences, 3 epochs = 60 steps per trial.
//!
//! Run: `cargo bench -p leaky --bench doctor_overhead [-- mlp rnn lstm]`. `LEAKY_EPOCHS=N`
//! sets the epochs per trial, `LEAKY_SAMPLE_EVERY=N` the sampling, `LEAKY_PAIRS=N` the
//! number of pairs (default 21). `LEAKY_SIDE=with|without` runs one side only, `LEAKY_PAIRS`
//! times (for `perf stat -e instructions`). Without `--bench` (as `cargo test --all-targets` runs it)
//! one short pair per workload.

use leaky::data::seq::{SeqDataset, SeqInput, SeqTarget};
use leaky::data::{digits, Standardizer};
use leaky::doctor::{Doctor, DoctorConfig};
use leaky::losses::Loss;
use leaky::nn::seq::{Cell, SeqModel, SeqOutput, SeqSpec};
use leaky::nn::{Activation, MlpSpec};
use leaky::optim::{Rule, UpdateConfig};
use leaky::tensor::{randn, rng, Init};
use leaky::train::{fit, fit_seq, NoObserver, TrainConfig};
use std::time::Instant;

fn env(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn main() {
    // As the `leaky` binary does: freed buffers are reused, not page-faulted in again.
    leaky::parallel::keep_freed_memory();
    let quick = !std::env::args().any(|a| a == "--bench");
    let picked: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let every = env("LEAKY_SAMPLE_EVERY", DoctorConfig::default().sample_every);
    let pairs = if quick { 1 } else { env("LEAKY_PAIRS", 21) };
    for name in ["mlp", "rnn", "lstm"] {
        if !picked.is_empty() && !picked.iter().any(|p| p == name) {
            continue;
        }
        let mut run: Box<dyn FnMut(bool)> = match name {
            "mlp" => mlp(if quick { 1 } else { env("LEAKY_EPOCHS", 20) }, every),
            "rnn" => seq(Cell::Rnn, if quick { 1 } else { env("LEAKY_EPOCHS", 3) }, every),
            _ => seq(Cell::Lstm, if quick { 1 } else { env("LEAKY_EPOCHS", 3) }, every),
        };
        match std::env::var("LEAKY_SIDE").as_deref() {
            // One side only, `pairs` times: for `perf stat` (instruction counts do not depend
            // on the machine's load the way times do).
            Ok("with") => (0..pairs).for_each(|_| run(true)),
            Ok("without") => (0..pairs).for_each(|_| run(false)),
            _ => compare(name, pairs, every, &mut run),
        }
    }
}

/// Time `run(false)` (no doctor) against `run(true)` in `pairs` interleaved pairs after one
/// warm-up pair, alternating which side goes first; print the medians.
fn compare(name: &str, pairs: usize, every: usize, run: &mut dyn FnMut(bool)) {
    let mut timed = |doctor: bool| {
        let (t, c) = (Instant::now(), thread_cpu_ns());
        run(doctor);
        (t.elapsed().as_secs_f64(), (thread_cpu_ns() - c) as f64 * 1e-9)
    };
    let (mut ratios, mut cpu_ratios, mut ta, mut tb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs + 1 {
        let ((a, ca), (b, cb)) = if i % 2 == 0 {
            let a = timed(false);
            (a, timed(true))
        } else {
            let b = timed(true);
            (timed(false), b)
        };
        if i > 0 {
            ratios.push(b / a);
            cpu_ratios.push(cb / ca.max(1e-12));
            ta.push(a);
            tb.push(b);
        }
    }
    let (lo, hi) = spread(&ratios);
    println!(
        "{name}: sampling every {every} steps, {} pairs: median wall time without doctor {:.3}s, with {:.3}s; \
         median pairwise ratio {:.3} (min {lo:.3}, max {hi:.3})",
        ratios.len(),
        median(&ta),
        median(&tb),
        median(&ratios),
    );
    let (lo, hi) = spread(&cpu_ratios);
    println!(
        "{name}: thread CPU time ratio {:.3} (min {lo:.3}, max {hi:.3}) (all the work only with RAYON_NUM_THREADS=1)",
        median(&cpu_ratios)
    );
}

/// The digits MLP run of examples/digits.toml, with or without the doctor.
fn mlp(epochs: usize, every: usize) -> Box<dyn FnMut(bool)> {
    let data = digits();
    let (mut train, mut val) = data.split(0.2, 0);
    let s = Standardizer::fit(&train.x);
    s.apply(&mut train.x);
    s.apply(&mut val.x);
    let spec = MlpSpec {
        input_dim: 64,
        hidden: vec![256, 256],
        output_dim: 10,
        activation: Activation::Relu,
        init: Init::He,
        bias_init: 0.0,
        batchnorm: false,
        dropout_keep: None,
    };
    let cfg = TrainConfig {
        epochs,
        batch_size: 64,
        update: UpdateConfig::new(Rule::Adam, 1e-3),
        lr_decay: 0.95,
        ..Default::default()
    };
    Box::new(move |doctor| {
        let mut m = spec.build::<f32>(0);
        if doctor {
            let mut doc = Doctor::new(DoctorConfig { sample_every: every }, Loss::Softmax, 10);
            fit(&mut m, &train, &val, &cfg, &mut doc);
        } else {
            fit(&mut m, &train, &val, &cfg, &mut NoObserver);
        }
    })
}

/// `fit_seq` of a recurrent regression model on random sequences, with or without the doctor.
fn seq(cell: Cell, epochs: usize, every: usize) -> Box<dyn FnMut(bool)> {
    let (t, d, h) = (50, 64, 128);
    let mut r = rng(3);
    let mut data = |n: usize| SeqDataset {
        name: "random".into(),
        input: SeqInput::Dense(randn((n, t, d), 1.0, &mut r)),
        target: SeqTarget::Final(randn(n, 1.0, &mut r)),
        vocab: 0,
        classes: 0,
        alphabet: Vec::new(),
    };
    let (train, val) = (data(640), data(64));
    let spec = SeqSpec {
        cell,
        vocab: None,
        input_dim: d,
        hidden: h,
        output: SeqOutput::Final,
        init: Init::Xavier,
        whh_radius: 0.0,
    };
    let cfg = TrainConfig {
        epochs,
        batch_size: 32,
        update: UpdateConfig::new(Rule::Sgd, 1e-3),
        loss: Loss::Mse,
        ..Default::default()
    };
    Box::new(move |doctor| {
        let mut m = SeqModel::<f32>::new(spec.clone(), 0);
        if doctor {
            let mut doc = Doctor::new(DoctorConfig { sample_every: every }, Loss::Mse, 0);
            fit_seq(&mut m, &train, &val, &cfg, &mut doc);
        } else {
            fit_seq(&mut m, &train, &val, &cfg, &mut NoObserver);
        }
    })
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|x, y| x.partial_cmp(y).unwrap());
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> (f64, f64) {
    (v.iter().cloned().fold(f64::INFINITY, f64::min), v.iter().cloned().fold(0.0, f64::max))
}

/// On-CPU time of the calling thread in ns (`/proc/thread-self/schedstat`, first field),
/// or 0 where that file does not exist.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}
