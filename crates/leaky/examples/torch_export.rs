//! Write leaky models as PyTorch state_dicts, for `scripts/fixtures/make_torch_models.py
//! --check-export DIR` to load into the same PyTorch architectures with
//! `load_state_dict(strict=True)` and compare outputs.
//!
//! ```sh
//! cargo run --release -p leaky --example torch_export -- /tmp/leaky-export
//! .venv/bin/python scripts/fixtures/make_torch_models.py --check-export /tmp/leaky-export
//! ```
//!
//! For each model it writes `<name>.safetensors` (leaky's export) and `<name>.json` (a batch
//! `x` and leaky's eval-mode outputs `out` on it). Weights are leaky's own initialisation;
//! the batch norms first run a few train-mode passes so that their running statistics are
//! not the initial ones.

use leaky::data::seq::SeqTarget;
use leaky::import::{save_pytorch, save_pytorch_seq, SeqKeys};
use leaky::layers::activation::Nonlinearity;
use leaky::layers::affine::Affine;
use leaky::layers::batchnorm::{BatchNorm, SpatialBatchNorm};
use leaky::layers::conv::{Conv2d, ConvParam};
use leaky::layers::layernorm::LayerNorm;
use leaky::layers::pool::{MaxPool, PoolParam};
use leaky::layers::rnn;
use leaky::nn::seq::{Cell, SeqBatch, SeqBatchInput, SeqModel, SeqOutput, SeqSpec};
use leaky::nn::{Activation, Mode, Sequential};
use leaky::tensor::{randn, rng, Init};
use ndarray::{s, Array1, Array2, Array3, ArrayD, Ix1, Ix2, IxDyn};
use serde_json::json;
use std::path::Path;

fn arr(a: &ArrayD<f32>) -> serde_json::Value {
    json!({"shape": a.shape(), "data": a.iter().map(|&v| v as f64).collect::<Vec<_>>()})
}

fn write(dir: &Path, name: &str, x: &ArrayD<f32>, out: &ArrayD<f32>) {
    let text = json!({"x": arr(x), "out": arr(out)}).to_string();
    std::fs::write(dir.join(format!("{name}.json")), text).expect("write the outputs");
}

fn feed_forward(dir: &Path, name: &str, mut m: Sequential<f32>, names: &[Option<String>], x_shape: &[usize]) {
    let mut r = rng(7);
    for _ in 0..3 {
        let xb: ArrayD<f32> = randn(IxDyn(x_shape), 1.5, &mut r) + 0.5;
        m.forward(xb, Mode::Train);
    }
    let x: ArrayD<f32> = randn(IxDyn(x_shape), 1.5, &mut r) + 0.5;
    let out = m.forward(x.clone(), Mode::Eval);
    save_pytorch(&dir.join(format!("{name}.safetensors")), &m, names).expect("save");
    write(dir, name, &x, &out);
    println!("{name}: {} layers, output {:?}", m.layers.len(), out.shape());
}

/// The model's outputs through leaky's layer functions on its parameters: per-step scores
/// (N, T, C) or the last step's prediction (N,).
fn seq_outputs(m: &SeqModel<f32>, input: &SeqBatchInput<f32>) -> ArrayD<f32> {
    let p = |n: &str| m.params().into_iter().find(|p| p.name == n).expect("parameter").value.clone();
    let p2 = |n: &str| p(n).into_dimensionality::<Ix2>().expect("2-D");
    let p1 = |n: &str| p(n).into_dimensionality::<Ix1>().expect("1-D");
    let x: Array3<f32> = match input {
        SeqBatchInput::Tokens(ids) => rnn::embedding_forward(ids, &p2("W_embed")).0,
        SeqBatchInput::Dense(x) => x.clone(),
    };
    let h0 = Array2::zeros((x.dim().0, m.spec.hidden));
    let h = match m.spec.cell {
        Cell::Rnn => rnn::forward(&x, &h0, &p2("Wx"), &p2("Wh"), &p1("b")).0,
        Cell::Lstm => rnn::lstm_forward(&x, &h0, &p2("Wx"), &p2("Wh"), &p1("b")).0,
    };
    match m.spec.output {
        SeqOutput::PerStep { .. } => rnn::temporal_affine_forward(&h, &p2("W_out"), &p1("b_out")).0.into_dyn(),
        SeqOutput::Final => {
            let last = h.slice(s![.., h.dim().1 - 1, ..]).to_owned();
            let pred: Array1<f32> = last.dot(&p2("W_out")).column(0).to_owned() + p1("b_out")[0];
            pred.into_dyn()
        }
    }
}

fn recurrent(dir: &Path, name: &str, m: SeqModel<f32>, keys: &SeqKeys, input: SeqBatchInput<f32>) {
    let out = seq_outputs(&m, &input);
    let x = match &input {
        SeqBatchInput::Tokens(ids) => ids.mapv(|v| v as f32).into_dyn(),
        SeqBatchInput::Dense(x) => x.clone().into_dyn(),
    };
    // A forward-backward pass runs as well, to show the model takes this batch.
    let target = match m.spec.output {
        SeqOutput::PerStep { .. } => {
            let ids = x.mapv(|v| v as usize).into_dimensionality::<Ix2>().expect("(N, T)");
            SeqTarget::Tokens { mask: Array2::from_elem(ids.raw_dim(), true), y: ids }
        }
        SeqOutput::Final => SeqTarget::Final(Array1::zeros(x.shape()[0])),
    };
    let mut m = m;
    let loss = m.forward_backward(&SeqBatch { input, target }).loss;
    save_pytorch_seq(&dir.join(format!("{name}.safetensors")), &m, keys).expect("save");
    write(dir, name, &x, &out);
    println!("{name}: {}, output {:?}, loss {loss:.4}", m.describe(), out.shape());
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: torch_export DIR");
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("create the output folder");
    let mut r = rng(3);
    let relu = || Nonlinearity::<f32>::new(Activation::Relu);

    let mlp = Sequential::new()
        .push(Affine::new(10, 16, Init::He, 0.1, &mut r))
        .push(BatchNorm::new(16))
        .push(relu())
        .push(Affine::new(16, 16, Init::Xavier, 0.0, &mut r))
        .push(LayerNorm::new(16))
        .push(Nonlinearity::new(Activation::Tanh))
        .push(Affine::new(16, 3, Init::Xavier, 0.0, &mut r));
    feed_forward(dir, "mlp_bn", mlp, &[], &[8, 10]);

    // PyTorch: Conv2d, BatchNorm2d, ReLU, MaxPool2d, Flatten, Linear; leaky's affine
    // flattens itself, so its Linear is named by PyTorch's index.
    let cnn = Sequential::new()
        .push(Conv2d::new(1, 4, 3, 3, ConvParam { stride: 1, pad: 1 }, Init::He, &mut r))
        .push(SpatialBatchNorm::new(4))
        .push(relu())
        .push(MaxPool::new(PoolParam { height: 2, width: 2, stride: 2 }))
        .push(Affine::new(64, 5, Init::Xavier, 0.0, &mut r));
    feed_forward(dir, "cnn", cnn, &[None, None, None, None, Some("5".into())], &[6, 1, 8, 8]);

    let rnn_spec = SeqSpec {
        cell: Cell::Rnn,
        vocab: Some(7),
        input_dim: 5,
        hidden: 8,
        output: SeqOutput::PerStep { classes: 7 },
        init: Init::Xavier,
        whh_radius: 0.0,
    };
    let ids = Array2::from_shape_fn((4, 6), |(i, t)| (i * 3 + t * 5) % 7);
    recurrent(dir, "rnn", SeqModel::new(rnn_spec, 1), &SeqKeys::default(), SeqBatchInput::Tokens(ids));

    let lstm_spec = SeqSpec {
        cell: Cell::Lstm,
        vocab: None,
        input_dim: 3,
        hidden: 6,
        output: SeqOutput::Final,
        init: Init::Xavier,
        whh_radius: 0.0,
    };
    let x: Array3<f32> = randn((4, 5, 3), 1.0, &mut r);
    let keys = SeqKeys { rnn: "lstm".into(), ..SeqKeys::default() };
    recurrent(dir, "lstm", SeqModel::new(lstm_spec, 2), &keys, SeqBatchInput::Dense(x));
}
