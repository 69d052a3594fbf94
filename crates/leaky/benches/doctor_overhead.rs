//! The doctor's overhead on the MLP digits run (examples/digits.toml's network: 64-256-256-10
//! ReLU, Adam, batch 64): training with `NoObserver` (A) and with `Doctor` at the default
//! sampling (B), interleaved A B A B ... over short trials; prints the median of the pairwise
//! time ratios B/A. Run: `cargo bench -p leaky --bench doctor_overhead`.

use leaky::data::{digits, Standardizer};
use leaky::doctor::{Doctor, DoctorConfig};
use leaky::losses::Loss;
use leaky::nn::{Activation, MlpSpec};
use leaky::optim::{Rule, UpdateConfig};
use leaky::tensor::Init;
use leaky::train::{fit, NoObserver, TrainConfig};
use std::time::Instant;

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
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
    let cfg =
        TrainConfig { epochs: 3, batch_size: 64, update: UpdateConfig::new(Rule::Adam, 1e-3), ..Default::default() };
    let pairs = if quick { 1 } else { 21 };
    let mut ratios = Vec::new();
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for i in 0..pairs + 1 {
        let mut m = spec.build::<f32>(0);
        let t = Instant::now();
        fit(&mut m, &train, &val, &cfg, &mut NoObserver);
        let a = t.elapsed().as_secs_f64();
        let mut m = spec.build::<f32>(0);
        let every: usize = std::env::var("LEAKY_SAMPLE_EVERY").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
        let mut doc = Doctor::new(DoctorConfig { sample_every: every }, Loss::Softmax, 10);
        let t = Instant::now();
        fit(&mut m, &train, &val, &cfg, &mut doc);
        let b = t.elapsed().as_secs_f64();
        if i > 0 {
            // pair 0 is warm-up
            ratios.push(b / a);
            ta.push(a);
            tb.push(b);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.partial_cmp(y).unwrap());
        v[v.len() / 2]
    };
    println!("doctor overhead, MLP 64-256-256-10 on digits, 3 epochs (69 steps + 3 evaluations) per trial");
    println!(
        "pairs {}: median time without doctor {:.3}s, with doctor {:.3}s; median pairwise ratio {:.3} (min {:.3}, max {:.3})",
        ratios.len(),
        med(&mut ta),
        med(&mut tb),
        med(&mut ratios.clone()),
        ratios.iter().cloned().fold(f64::INFINITY, f64::min),
        ratios.iter().cloned().fold(0.0, f64::max)
    );
}
