//! Training-step benchmarks of `leaky` in f32, the workloads of `scripts/bench/reference.py`
//! (PyTorch and numpy) with the same sizes and the same timing method:
//!
//! | workload | what one step is |
//! |---|---|
//! | `mlp` | MLP 784-512-256-10, ReLU, softmax loss, backward, SGD; batch 128 |
//! | `mlp_doctor` | `mlp` with the doctor watching (default sampling, every 10th step) |
//! | `rnn` | tanh RNN, input 64, hidden 128, T = 50, batch 32: forward, BPTT from a fixed dh, SGD |
//! | `lstm` | the same with an LSTM |
//! | `seq_rnn`, `seq_rnn_doctor` | a whole `SeqModel` step (RNN + regression head, as `fit_seq`) without / with the doctor |
//! | `conv` | conv 3x3 1->8, ReLU, conv 3x3 8->16, ReLU, 2x2 max pool, affine 3136->10, softmax, SGD; 28x28, batch 64 |
//! | `gemm128` .. `gemm1024` | one square f32 product C = A B |
//! | `recur_gemm`, `recur_packed` | the 100 recurrent products of one LSTM step (50 x `h Wh`, (32, 128) x (128, 512), and 50 x `da Wh^T`, (32, 512) x (512, 128)) by `Float::gemm` (matrixmultiply) and by `PackedRhs` (Wh and Wh^T packed once per step) |
//!
//! Method (both sides): a trial runs `WARMUP` untimed steps, then `REPS` timed steps and
//! reports the median wall time of a step and the mean on-CPU time of the thread per step;
//! the figure of a workload is the median over trials.
//!
//! Run:
//! * `cargo bench -p leaky --bench steps` prints a table of every workload (`-- mlp rnn`
//!   selects some). Threads: `RAYON_NUM_THREADS=1` or `2` (leaky's one thread pool, see
//!   `leaky::parallel`; default = logical CPUs).
//! * `cargo bench -p leaky --bench steps -- --serve` reads workload names on stdin and answers
//!   each with one trial's median wall and mean CPU milliseconds: `scripts/bench/compare.py` drives it, A B A B
//!   with the reference.
//! * Run without `--bench` (as `cargo test --all-targets` does) it runs one step of each
//!   workload and checks that training the MLP lowers its loss.

use leaky::data::seq::SeqTarget;
use leaky::doctor::{Doctor, DoctorConfig};
use leaky::layers::activation::Nonlinearity;
use leaky::layers::affine::Affine;
use leaky::layers::conv::{Conv2d, ConvParam};
use leaky::layers::pool::{MaxPool, PoolParam};
use leaky::layers::rnn;
use leaky::losses::Loss;
use leaky::nn::seq::{Cell, SeqBatch, SeqBatchInput, SeqModel, SeqOutput, SeqSpec};
use leaky::nn::{Activation, MlpSpec, Mode, NoProbe, Probe, Sequential};
use leaky::optim::{global_norm, update, Rule, Slots, UpdateConfig};
use leaky::tensor::{randn, rng, Float, Init, PackedRhs, Tensor};
use leaky::train::{NoObserver, Observer, SeqObserver, StepInfo};
use ndarray::{s, Array1, Array2, Array3, IxDyn};
use std::io::BufRead;
use std::time::Instant;

/// Untimed steps at the start of each trial.
const WARMUP: usize = 3;
/// Timed steps per trial.
const REPS: usize = 10;
/// Trials per workload in the table mode.
const TRIALS: usize = 7;

type Step = Box<dyn FnMut() -> f64>;

/// An SGD update of every parameter of `model` with `lr` (slots unused by SGD).
fn sgd_all(params: Vec<&mut leaky::nn::Param<f32>>, slots: &mut [Slots<f32>], cfg: &UpdateConfig) {
    for (p, s) in params.into_iter().zip(slots.iter_mut()) {
        update(&mut p.value, &p.grad, s, cfg);
    }
}

/// One classifier step as `leaky::train::fit` runs it: probed forward, loss, probed
/// backward, global gradient norm, observer, update.
fn classifier_step(
    model: &mut Sequential<f32>,
    slots: &mut [Slots<f32>],
    x: &Tensor<f32>,
    y: &[usize],
    observer: &mut dyn Observer<f32>,
    step: usize,
) -> f64 {
    let cfg = UpdateConfig::new(Rule::Sgd, 1e-2);
    let mut no_probe = NoProbe;
    let loss = {
        let probe: &mut dyn Probe<f32> = match observer.probe(step) {
            Some(p) => p,
            None => &mut no_probe,
        };
        let scores = model.forward_probed(x.clone(), Mode::Train, probe);
        let scores = scores.into_dimensionality().expect("(N, C) scores");
        let (loss, dscores) = Loss::Softmax.classify(&scores, y);
        model.backward_params_probed(dscores.into_dyn(), probe);
        loss as f64
    };
    let grad_norm = global_norm(model.params().into_iter().map(|(_, p)| &p.grad));
    let info = StepInfo { epoch: 0, step, loss, lr: cfg.lr, grad_norm, batch_size: y.len() };
    observer.on_step(&info, model);
    sgd_all(model.params_mut(), slots, &cfg);
    loss
}

fn classifier(mut model: Sequential<f32>, x: Tensor<f32>, y: Vec<usize>, doctor: bool) -> Step {
    let mut slots: Vec<Slots<f32>> = model.params().iter().map(|(_, p)| Slots::zeros_like(&p.value)).collect();
    let mut doc = Doctor::new(DoctorConfig::default(), Loss::Softmax, 10);
    let mut step = 0;
    Box::new(move || {
        let obs: &mut dyn Observer<f32> = if doctor { &mut doc } else { &mut NoObserver };
        let l = classifier_step(&mut model, &mut slots, &x, &y, obs, step);
        step += 1;
        l
    })
}

fn labels(n: usize, classes: usize) -> Vec<usize> {
    (0..n).map(|i| (i * 7 + 3) % classes).collect()
}

fn mlp(doctor: bool) -> Step {
    let spec = MlpSpec {
        input_dim: 784,
        hidden: vec![512, 256],
        output_dim: 10,
        activation: Activation::Relu,
        init: Init::He,
        bias_init: 0.0,
        batchnorm: false,
        dropout_keep: None,
    };
    let x: Tensor<f32> = randn(IxDyn(&[128, 784]), 1.0, &mut rng(1));
    classifier(spec.build::<f32>(0), x, labels(128, 10), doctor)
}

fn conv() -> Step {
    let mut r = rng(0);
    let same = ConvParam { stride: 1, pad: 1 };
    let model = Sequential::new()
        .push(Conv2d::<f32>::new(1, 8, 3, 3, same, Init::He, &mut r))
        .push(Nonlinearity::<f32>::new(Activation::Relu))
        .push(Conv2d::<f32>::new(8, 16, 3, 3, same, Init::He, &mut r))
        .push(Nonlinearity::<f32>::new(Activation::Relu))
        .push(MaxPool::<f32>::new(PoolParam { height: 2, width: 2, stride: 2 }))
        .push(Affine::<f32>::new(16 * 14 * 14, 10, Init::He, 0.0, &mut r));
    let x: Tensor<f32> = randn(IxDyn(&[64, 1, 28, 28]), 1.0, &mut rng(1));
    classifier(model, x, labels(64, 10), false)
}

/// RNN / LSTM layer step: forward over (N, T, D), backward from a fixed dh (N, T, H), SGD.
fn recurrent(cell: Cell) -> Step {
    let (n, t, d, h) = (32, 50, 64, 128);
    let g = if cell == Cell::Rnn { 1 } else { 4 };
    let mut r = rng(0);
    let x: Array3<f32> = randn((n, t, d), 1.0, &mut r);
    let dh: Array3<f32> = randn((n, t, h), 1.0, &mut r);
    let h0: Array2<f32> = Array2::zeros((n, h));
    let mut wx: Array2<f32> = randn((d, g * h), (1.0 / d as f64).sqrt(), &mut r);
    let mut wh: Array2<f32> = randn((h, g * h), (1.0 / h as f64).sqrt(), &mut r);
    let mut b: Array1<f32> = Array1::zeros(g * h);
    let lr = 1e-3f32;
    Box::new(move || {
        let (out, (dx, _dh0, dwx, dwh, db)) = match cell {
            Cell::Rnn => {
                let (out, cache) = rnn::forward(&x, &h0, &wx, &wh, &b);
                (out, rnn::backward_with_norms(&dh, &cache, &wx, &wh).0)
            }
            Cell::Lstm => {
                let (out, cache) = rnn::lstm_forward(&x, &h0, &wx, &wh, &b);
                (out, rnn::lstm_backward_with_norms(&dh, &cache, &wx, &wh).0)
            }
        };
        wx.scaled_add(-lr, &dwx);
        wh.scaled_add(-lr, &dwh);
        b.scaled_add(-lr, &db);
        (out[[0, 0, 0]] + dx[[0, 0, 0]]) as f64
    })
}

/// A whole `SeqModel` step as `fit_seq` runs it (RNN, dense inputs, regression head).
fn seq_rnn(doctor: bool) -> Step {
    let (n, t, d, h) = (32, 50, 64, 128);
    let spec = SeqSpec {
        cell: Cell::Rnn,
        vocab: None,
        input_dim: d,
        hidden: h,
        output: SeqOutput::Final,
        init: Init::Xavier,
        whh_radius: 0.0,
    };
    let mut model = SeqModel::<f32>::new(spec, 0);
    let mut r = rng(1);
    let batch = SeqBatch {
        input: SeqBatchInput::Dense(randn((n, t, d), 1.0, &mut r)),
        target: SeqTarget::Final(randn(n, 1.0, &mut r)),
    };
    let mut slots: Vec<Slots<f32>> = model.params().iter().map(|p| Slots::zeros_like(&p.value)).collect();
    let cfg = UpdateConfig::new(Rule::Sgd, 1e-3);
    let mut doc = Doctor::new(DoctorConfig::default(), Loss::Mse, 0);
    let mut step = 0;
    Box::new(move || {
        let loss = model.forward_backward(&batch).loss;
        let grad_norm = global_norm(model.params().into_iter().map(|p| &p.grad));
        let info = StepInfo { epoch: 0, step, loss, lr: cfg.lr, grad_norm, batch_size: n };
        let obs: &mut dyn SeqObserver<f32> = if doctor { &mut doc } else { &mut NoObserver };
        obs.on_step(&info, &model);
        sgd_all(model.params_mut(), &mut slots, &cfg);
        step += 1;
        loss
    })
}

/// The recurrent products of one LSTM step (N = 32, H = 128, G = 4H, T = 50), by
/// matrixmultiply or by `PackedRhs`.
fn recurrent_products(packed: bool) -> Step {
    let (n, t, h, g) = (32, 50, 128, 512);
    let mut r = rng(0);
    let wh: Array2<f32> = randn((h, g), (1.0 / h as f64).sqrt(), &mut r);
    let hs: Array3<f32> = randn((n, t, h), 1.0, &mut r);
    let das: Array3<f32> = randn((n, t, g), 1.0, &mut r);
    let mut gates: Array3<f32> = Array3::zeros((n, t, g));
    let mut dh: Array2<f32> = Array2::zeros((n, h));
    Box::new(move || {
        let mut acc = 0.0f32;
        if packed {
            let (mut fwd, mut bwd) = (PackedRhs::new(wh.view()), PackedRhs::new(wh.t()));
            for s in 0..t {
                fwd.mul_into(hs.slice(s![.., s, ..]), 1.0, gates.slice_mut(s![.., s, ..]));
                bwd.mul_into(das.slice(s![.., s, ..]), 0.0, dh.view_mut());
                acc += dh[[0, 0]];
            }
        } else {
            for s in 0..t {
                f32::gemm(1.0, hs.slice(s![.., s, ..]), wh.view(), 1.0, gates.slice_mut(s![.., s, ..]));
                f32::gemm(1.0, das.slice(s![.., s, ..]), wh.t(), 0.0, dh.view_mut());
                acc += dh[[0, 0]];
            }
        }
        (acc + gates[[0, 0, 0]]) as f64
    })
}

fn gemm(n: usize) -> Step {
    let mut r = rng(0);
    let a: Array2<f32> = randn((n, n), 1.0, &mut r);
    let b: Array2<f32> = randn((n, n), 1.0, &mut r);
    let mut c: Array2<f32> = Array2::zeros((n, n));
    Box::new(move || {
        f32::gemm(1.0, a.view(), b.view(), 0.0, c.view_mut());
        c[[0, 0]] as f64
    })
}

/// Every workload: name, constructor, and the flops of one step when meaningful.
const WORKLOADS: &[&str] = &[
    "mlp",
    "mlp_doctor",
    "rnn",
    "lstm",
    "seq_rnn",
    "seq_rnn_doctor",
    "conv",
    "gemm128",
    "gemm256",
    "gemm512",
    "gemm1024",
    "recur_gemm",
    "recur_packed",
];

fn make(name: &str) -> Option<Step> {
    Some(match name {
        "mlp" => mlp(false),
        "mlp_doctor" => mlp(true),
        "rnn" => recurrent(Cell::Rnn),
        "lstm" => recurrent(Cell::Lstm),
        "seq_rnn" => seq_rnn(false),
        "seq_rnn_doctor" => seq_rnn(true),
        "conv" => conv(),
        "gemm128" => gemm(128),
        "gemm256" => gemm(256),
        "gemm512" => gemm(512),
        "gemm1024" => gemm(1024),
        "recur_gemm" => recurrent_products(false),
        "recur_packed" => recurrent_products(true),
        _ => return None,
    })
}

/// Floating-point operations of one step of the GEMM workloads (2 n^3) and of the MLP
/// (forward `2 N sum(d_in d_out)`, backward twice that: dW and dx of every layer).
fn flops(name: &str) -> Option<f64> {
    let mlp = 2.0 * 128.0 * (784.0 * 512.0 + 512.0 * 256.0 + 256.0 * 10.0);
    match name {
        "mlp" | "mlp_doctor" => Some(3.0 * mlp),
        "recur_gemm" | "recur_packed" => Some(2.0 * 2.0 * 50.0 * 32.0 * 128.0 * 512.0),
        _ => name.strip_prefix("gemm").and_then(|n| n.parse::<f64>().ok()).map(|n| 2.0 * n * n * n),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite times"));
    v[v.len() / 2]
}

/// On-CPU time of the calling thread in ns (`CLOCK_THREAD_CPUTIME_ID`; nanosecond
/// resolution, where `/proc/thread-self/schedstat` can be quantised to the scheduler tick).
/// With one thread all of leaky's work runs on the calling thread (`leaky::parallel`).
#[cfg(unix)]
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` writes one `timespec` through the pointer, which points to a
    // live, writable local of that type; CLOCK_THREAD_CPUTIME_ID is a valid clock id.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(not(unix))]
fn thread_cpu_ns() -> u64 {
    0
}

/// One trial: `WARMUP` untimed steps, then `REPS` timed steps. Returns the median wall
/// time of a step and the mean on-CPU time of the calling thread per step, in ms. With one
/// thread the CPU time is the robust measure on a shared machine (time spent waiting for
/// the core is not counted); with more threads only wall time counts all the work.
fn trial(step: &mut Step) -> (f64, f64) {
    let mut sink = 0.0;
    for _ in 0..WARMUP {
        sink += step();
    }
    let cpu0 = thread_cpu_ns();
    let mut times: Vec<f64> = (0..REPS)
        .map(|_| {
            let t = Instant::now();
            sink += step();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cpu = (thread_cpu_ns() - cpu0) as f64 / 1e6 / REPS as f64;
    std::hint::black_box(sink);
    (median(&mut times), cpu)
}

fn serve() {
    let mut steps: Vec<(String, Step)> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let name = line.expect("stdin").trim().to_string();
        if name.is_empty() {
            continue;
        }
        if !steps.iter().any(|(n, _)| *n == name) {
            match make(&name) {
                Some(s) => steps.push((name.clone(), s)),
                None => {
                    println!("error unknown workload {name}");
                    continue;
                }
            }
        }
        let step = &mut steps.iter_mut().find(|(n, _)| *n == name).expect("just made").1;
        let (wall, cpu) = trial(step);
        println!("{wall:.6} {cpu:.6}");
    }
}

fn main() {
    // As the `leaky` binary does: freed buffers are reused, not page-faulted in again.
    leaky::parallel::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--serve") {
        return serve();
    }
    if !args.iter().any(|a| a == "--bench") {
        // Smoke run (cargo test --all-targets): one step of each, and the MLP must learn.
        for name in WORKLOADS {
            let mut s = make(name).expect("listed");
            let first = s();
            assert!(first.is_finite(), "{name}: non-finite step result");
            if *name == "mlp" {
                let later = (0..20).map(|_| s()).last().expect("20 steps");
                assert!(later < first, "mlp: loss did not fall ({first} -> {later})");
            }
        }
        println!("steps: smoke run ok");
        return;
    }
    let chosen: Vec<&str> = args.iter().filter(|a| !a.starts_with("--")).map(|s| s.as_str()).collect();
    let threads = leaky::parallel::threads();
    println!("leaky f32 training steps, {threads} threads (RAYON_NUM_THREADS): median over {TRIALS} trials of the median of {REPS} steps after {WARMUP} warm-up steps");
    println!("{:<16} {:>10} {:>10}", "workload", "ms/step", "GFLOP/s");
    for name in WORKLOADS.iter().filter(|n| chosen.is_empty() || chosen.contains(n)) {
        let mut s = make(name).expect("listed");
        let mut t: Vec<f64> = (0..TRIALS).map(|_| trial(&mut s).0).collect();
        let ms = median(&mut t);
        let gf = flops(name).map(|f| format!("{:.1}", f / ms / 1e6)).unwrap_or_default();
        println!("{name:<16} {ms:>10.3} {gf:>10}");
    }
}
