//! `leaky::import` against PyTorch: models built and run by
//! `scripts/fixtures/make_torch_models.py` (state_dicts, a batch, PyTorch's outputs, loss and
//! parameter gradients, computed in f64 from the saved weights; committed under
//! `tests/fixtures/torch/`, so no Python is needed here).
//!
//! Each check is one line (visible with `--nocapture`), with the normwise relative error
//! `max |leaky - torch| / max |torch|` over the tensor: an f32 run must be within
//! [`F32_TOL`], an f64 run within [`F64_TOL`].

use leaky::data::seq::SeqTarget;
use leaky::doctor::stats::DeadUnitPass;
use leaky::import::{
    export_seq_model_grads, export_sequential, export_sequential_grads, load_seq_model, load_sequential, save_pytorch,
    save_pytorch_seq, ImportError, SeqKeys, StateDict,
};
use leaky::layers::activation::Nonlinearity;
use leaky::layers::affine::Affine;
use leaky::layers::batchnorm::{BatchNorm, SpatialBatchNorm};
use leaky::layers::conv::{Conv2d, ConvParam};
use leaky::layers::layernorm::LayerNorm;
use leaky::layers::pool::{MaxPool, PoolParam};
use leaky::layers::rnn;
use leaky::losses::softmax_loss;
use leaky::nn::seq::{Cell, SeqBatch, SeqBatchInput, SeqModel, SeqOutput, SeqSpec};
use leaky::nn::{Activation, Layer, Mode, Probe, Sequential};
use leaky::tensor::{rng, Init};
use leaky::{Float, Tensor};
use ndarray::{s, Array1, Array2, Array3, ArrayD, Ix2, Ix3, IxDyn};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// f32 runs: leaky computes in f32 (unit roundoff 6e-8) against an f64 reference.
const F32_TOL: f64 = 1e-5;
/// f64 runs: the same computation in another summation order.
const F64_TOL: f64 = 1e-10;

// ---------------------------------------------------------------------------------------
// fixtures
// ---------------------------------------------------------------------------------------

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch")
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(format!("{name}.json"))).expect("fixture JSON");
    serde_json::from_str(&text).expect("valid JSON")
}

fn weights(name: &str) -> StateDict {
    StateDict::open(&dir().join(format!("{name}.safetensors"))).expect("fixture state_dict opens")
}

/// `{"shape", "data"}` as an f64 array.
fn arr(v: &Value) -> ArrayD<f64> {
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data: Vec<f64> = v["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap()
}

fn labels(v: &Value) -> Vec<usize> {
    arr(v).iter().map(|&y| y as usize).collect()
}

/// Normwise relative error, printed and checked.
fn check(label: &str, got: &ArrayD<f64>, want: &ArrayD<f64>, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{label}: shape");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff = got.iter().zip(want).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    let err = if scale > 0.0 { diff / scale } else { diff };
    println!("{}  {label:<44} rel {err:.2e}", if err <= tol { "OK  " } else { "FAIL" });
    assert!(err <= tol, "{label}: relative error {err:.3e} > {tol:.0e}");
}

fn check_num(label: &str, got: f64, want: f64, tol: f64) {
    check(label, &ArrayD::from_elem(IxDyn(&[]), got), &ArrayD::from_elem(IxDyn(&[]), want), tol);
}

/// The gradients PyTorch reported (by state_dict key) against leaky's, exported to
/// PyTorch's layout: the same set of keys, every one within `tol`.
///
/// A gradient that is zero by construction -- the bias of a layer followed by a train-mode
/// batch norm, which subtracts the batch mean -- holds only round-off in both programs
/// (PyTorch's are ~1e-17 in f64); there the check is that leaky's, too, is below `tol` times
/// the largest gradient of the model.
fn check_grads(label: &str, got: Vec<(String, ArrayD<f64>)>, want: &Value, tol: f64) {
    let want: BTreeMap<&str, ArrayD<f64>> =
        want.as_object().unwrap().iter().map(|(k, v)| (k.as_str(), arr(v))).collect();
    let got: BTreeMap<String, ArrayD<f64>> = got.into_iter().collect();
    assert_eq!(got.keys().map(String::as_str).collect::<Vec<_>>(), want.keys().copied().collect::<Vec<_>>(), "{label}");
    let amax = |a: &ArrayD<f64>| a.iter().fold(0f64, |m, v| m.max(v.abs()));
    let largest = want.values().map(amax).fold(0f64, f64::max);
    for (k, g) in &got {
        let w = &want[k.as_str()];
        if amax(w) < tol * largest {
            let err = amax(g) / largest;
            println!(
                "{}  {:<44} zero by construction: max {:.1e} (torch {:.1e})",
                if err <= tol { "OK  " } else { "FAIL" },
                format!("{label} d{k}"),
                amax(g),
                amax(w)
            );
            assert!(err <= tol, "{label} d{k}: {:.3e} where zero is due", amax(g));
            continue;
        }
        check(&format!("{label} d{k}"), g, w, tol);
    }
}

// ---------------------------------------------------------------------------------------
// feed-forward models
// ---------------------------------------------------------------------------------------

fn act<F: Float>(a: Activation) -> Nonlinearity<F> {
    Nonlinearity::new(a)
}

fn affine<F: Float>(d: usize, m: usize) -> Affine<F> {
    Affine::new(d, m, Init::Xavier, 0.0, &mut rng(0))
}

/// Linear(12,24), ReLU, Linear(24,24), Tanh, Linear(24,4).
fn mlp<F: Float>() -> Sequential<F> {
    Sequential::new()
        .push(affine(12, 24))
        .push(act(Activation::Relu))
        .push(affine(24, 24))
        .push(act(Activation::Tanh))
        .push(affine(24, 4))
}

/// Linear, BatchNorm1d, ReLU, Linear, LayerNorm, Tanh, Linear.
fn mlp_norm<F: Float>() -> Sequential<F> {
    Sequential::new()
        .push(affine(12, 16))
        .push(BatchNorm::new(16))
        .push(act(Activation::Relu))
        .push(affine(16, 16))
        .push(LayerNorm::new(16))
        .push(act(Activation::Tanh))
        .push(affine(16, 4))
}

/// Conv2d(1,4,3,pad 1), BatchNorm2d, ReLU, MaxPool2d(2), [Flatten], Linear(64,5): leaky's
/// affine flattens its input, so the stack has no flatten layer and the Linear, module 5 in
/// PyTorch, is named.
fn cnn<F: Float>() -> (Sequential<F>, Vec<Option<String>>) {
    let m = Sequential::new()
        .push(Conv2d::new(1, 4, 3, 3, ConvParam { stride: 1, pad: 1 }, Init::He, &mut rng(0)))
        .push(SpatialBatchNorm::new(4))
        .push(act(Activation::Relu))
        .push(MaxPool::new(PoolParam { height: 2, width: 2, stride: 2 }))
        .push(affine(64, 5));
    (m, vec![None, None, None, None, Some("5".to_string())])
}

/// Forward, softmax loss and backward of `model` on the fixture's batch, against PyTorch's
/// outputs, loss and gradients in `mode` (`"eval"` or `"train"`).
fn check_classifier<F: Float>(
    label: &str,
    model: &mut Sequential<F>,
    names: &[Option<String>],
    fx: &Value,
    mode: &str,
    tol: f64,
) {
    let x: Tensor<F> = arr(&fx["x"]).mapv(F::from_f64c);
    let y = labels(&fx["y"]);
    let m = if mode == "train" { Mode::Train } else { Mode::Eval };
    let out = model.forward(x, m);
    check(&format!("{label} {mode} output"), &out.mapv(|v| v.to_f64c()), &arr(&fx[mode]["out"]), tol);
    let (loss, dscores) = softmax_loss(&out.into_dimensionality::<Ix2>().unwrap(), &y);
    check_num(&format!("{label} {mode} loss"), loss.to_f64c(), fx[mode]["loss"].as_f64().unwrap(), tol);
    model.backward(dscores.into_dyn());
    check_grads(&format!("{label} {mode}"), export_sequential_grads(model, names).unwrap(), &fx[mode]["grads"], tol);
}

#[test]
fn mlp_f32_matches_pytorch() {
    let fx = fixture("mlp");
    let mut m = mlp::<f32>();
    load_sequential(&mut m, &[], &weights("mlp")).unwrap();
    check_classifier("mlp f32", &mut m, &[], &fx, "eval", F32_TOL);
}

#[test]
fn affine_weight_is_the_transposed_linear_weight() {
    // The layout conversion checked directly, not through the export.
    let sd = weights("mlp");
    let mut m = mlp::<f64>();
    load_sequential(&mut m, &[], &sd).unwrap();
    let torch = sd.get_f64("2.weight").unwrap(); // (out, in) = (24, 24)
    let leaky = &m.layers[2].params()[0].value; // W (in, out)
    assert_eq!(leaky, &torch.t().to_owned());
    assert_eq!(m.layers[4].params()[0].value.shape(), &[24, 4]);
    assert_eq!(m.layers[4].params()[1].value, sd.get_f64("4.bias").unwrap());
}

#[test]
fn mlp_bf16_is_widened_exactly() {
    let fx = fixture("mlp_bf16");
    let sd = weights("mlp_bf16");
    assert_eq!(sd.dtype("0.weight").as_deref(), Some("BF16"));
    // The reference used the widened bf16 values, so an f64 run agrees to f64 precision.
    let mut m = mlp::<f64>();
    load_sequential(&mut m, &[], &sd).unwrap();
    check_classifier("mlp bf16->f64", &mut m, &[], &fx, "eval", F64_TOL);
    let mut m = mlp::<f32>();
    load_sequential(&mut m, &[], &sd).unwrap();
    check_classifier("mlp bf16->f32", &mut m, &[], &fx, "eval", F32_TOL);
}

#[test]
fn mlp_with_batchnorm_and_layernorm_f64_matches_pytorch_in_eval_and_train_mode() {
    let fx = fixture("mlp_norm");
    let sd = weights("mlp_norm");
    assert_eq!(sd.dtype("1.running_var").as_deref(), Some("F64"));
    assert_eq!(sd.dtype("1.num_batches_tracked").as_deref(), Some("I64"));
    for mode in ["eval", "train"] {
        let mut m = mlp_norm::<f64>();
        load_sequential(&mut m, &[], &sd).unwrap();
        check_classifier("mlp_norm f64", &mut m, &[], &fx, mode, F64_TOL);
    }
    let mut m = mlp_norm::<f32>();
    load_sequential(&mut m, &[], &sd).unwrap();
    check_classifier("mlp_norm f32", &mut m, &[], &fx, "eval", F32_TOL);
}

#[test]
fn cnn_with_conv_batchnorm2d_and_maxpool_matches_pytorch() {
    let fx = fixture("cnn");
    for mode in ["eval", "train"] {
        let (mut m, names) = cnn::<f32>();
        load_sequential(&mut m, &names, &weights("cnn")).unwrap();
        check_classifier("cnn f32", &mut m, &names, &fx, mode, F32_TOL);
    }
    // Without the name, the Linear's keys are `5.*` where leaky looks for `4.*`.
    let (mut m, _) = cnn::<f32>();
    let e = load_sequential(&mut m, &[], &weights("cnn")).unwrap_err().to_string();
    assert!(e.contains("key `4.weight` is missing") && e.contains("layer 4 (affine)") && e.contains("(5, 64)"), "{e}");
}

/// Counts, per ReLU layer, the units that are > 0 on no example.
struct DeadProbe(BTreeMap<usize, DeadUnitPass>);

impl<F: Float> Probe<F> for DeadProbe {
    fn after_forward(&mut self, index: usize, layer: &dyn Layer<F>, out: &Tensor<F>) {
        if layer.activation() == Some("relu") {
            let units = out.len() / out.shape()[0];
            self.0.entry(index).or_insert_with(|| DeadUnitPass::new(index, "relu", 0, units)).observe(out);
        }
    }
}

#[test]
fn dead_units_of_the_broken_mlp_match_a_brute_force_count() {
    let fx = fixture("mlp_dead");
    let names: Vec<Option<String>> = Vec::new();
    let mut m = Sequential::<f32>::new()
        .push(affine(12, 32))
        .push(act(Activation::Relu))
        .push(affine(32, 32))
        .push(act(Activation::Relu))
        .push(affine(32, 4));
    load_sequential(&mut m, &names, &weights("mlp_dead")).unwrap();
    check_classifier("mlp_dead f32", &mut m, &names, &fx, "eval", F32_TOL);
    // Over the fixture's 200 examples in batches of 64, 64, 64, 8.
    let x = arr(&fx["x"]).mapv(|v| v as f32);
    let mut probe = DeadProbe(BTreeMap::new());
    for start in (0..x.shape()[0]).step_by(64) {
        let end = (start + 64).min(x.shape()[0]);
        m.forward_probed(x.slice(s![start..end, ..]).to_owned().into_dyn(), Mode::Eval, &mut probe);
    }
    for (layer, pass) in &probe.0 {
        let want = fx["dead_units"][layer.to_string()].as_u64().unwrap() as usize;
        println!(
            "mlp_dead layer {layer}: {} dead of {} (PyTorch brute force: {want})",
            pass.dead_units().len(),
            pass.fire_counts.len()
        );
        assert_eq!(pass.examples, 200);
        assert_eq!(pass.dead_units().len(), want, "layer {layer}");
    }
    assert_eq!(probe.0.len(), 2);
}

#[test]
fn npy_batches_hold_the_fixture_inputs() {
    // The .npy files next to the fixtures are the same batch (for `leaky inspect --data`).
    for name in ["mlp", "mlp_norm", "mlp_dead", "cnn"] {
        let fx = fixture(name);
        let ds =
            leaky::data::load_npy(&dir().join(format!("{name}.x.npy")), &dir().join(format!("{name}.y.npy"))).unwrap();
        let x = arr(&fx["x"]);
        assert_eq!(ds.feature_shape, x.shape()[1..].to_vec(), "{name}");
        // As f32: serde_json (without its `float_roundtrip` feature) may parse a decimal
        // one f64 ulp away, which the rounding to f32 removes.
        assert!(ds.x.iter().zip(x.iter()).all(|(a, b)| *a == *b as f32), "{name}");
        assert_eq!(ds.y, labels(&fx["y"]), "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// recurrent models
// ---------------------------------------------------------------------------------------

/// Embedding(7,5), RNN(5,8), Linear(8,7) per step.
fn token_rnn() -> SeqModel<f32> {
    let spec = SeqSpec {
        cell: Cell::Rnn,
        vocab: Some(7),
        input_dim: 5,
        hidden: 8,
        output: SeqOutput::PerStep { classes: 7 },
        init: Init::Xavier,
        whh_radius: 0.0,
    };
    SeqModel::new(spec, 0)
}

/// LSTM(3,6), Linear(6,1) on the last step.
fn dense_lstm() -> SeqModel<f32> {
    let spec = SeqSpec {
        cell: Cell::Lstm,
        vocab: None,
        input_dim: 3,
        hidden: 6,
        output: SeqOutput::Final,
        init: Init::Xavier,
        whh_radius: 0.0,
    };
    SeqModel::new(spec, 0)
}

fn lstm_keys() -> SeqKeys {
    SeqKeys { rnn: "lstm".into(), ..SeqKeys::default() }
}

fn seq_batch(fx: &Value, cell: Cell) -> SeqBatch<f32> {
    let x = arr(&fx["x"]);
    match cell {
        Cell::Rnn => {
            let ids = x.mapv(|v| v as usize).into_dimensionality::<Ix2>().unwrap();
            let y = arr(&fx["y"]).mapv(|v| v as usize).into_dimensionality::<Ix2>().unwrap();
            let mask = Array2::from_elem(y.raw_dim(), true);
            SeqBatch { input: SeqBatchInput::Tokens(ids), target: SeqTarget::Tokens { y, mask } }
        }
        Cell::Lstm => {
            let x = x.mapv(|v| v as f32).into_dimensionality::<Ix3>().unwrap();
            let y = arr(&fx["y"]).mapv(|v| v as f32).into_dimensionality::<ndarray::Ix1>().unwrap();
            SeqBatch { input: SeqBatchInput::Dense(x), target: SeqTarget::Final(y) }
        }
    }
}

fn param(m: &SeqModel<f32>, name: &str) -> ArrayD<f32> {
    m.params().into_iter().find(|p| p.name == name).unwrap().value.clone()
}

/// The model's outputs from its imported parameters, through leaky's own layer functions:
/// per-step scores (N, T, C), or the last step's prediction (N,).
fn seq_outputs(m: &SeqModel<f32>, batch: &SeqBatch<f32>) -> ArrayD<f64> {
    let p2 = |n: &str| param(m, n).into_dimensionality::<Ix2>().unwrap();
    let p1 = |n: &str| param(m, n).into_dimensionality::<ndarray::Ix1>().unwrap();
    let x: Array3<f32> = match &batch.input {
        SeqBatchInput::Tokens(ids) => rnn::embedding_forward(ids, &p2("W_embed")).0,
        SeqBatchInput::Dense(x) => x.clone(),
    };
    let h0 = Array2::zeros((x.dim().0, m.spec.hidden));
    let h = match m.spec.cell {
        Cell::Rnn => rnn::forward(&x, &h0, &p2("Wx"), &p2("Wh"), &p1("b")).0,
        Cell::Lstm => rnn::lstm_forward(&x, &h0, &p2("Wx"), &p2("Wh"), &p1("b")).0,
    };
    let out = match m.spec.output {
        SeqOutput::PerStep { .. } => rnn::temporal_affine_forward(&h, &p2("W_out"), &p1("b_out")).0.into_dyn(),
        SeqOutput::Final => {
            let last = h.slice(s![.., h.dim().1 - 1, ..]).to_owned();
            let pred: Array1<f32> = last.dot(&p2("W_out")).column(0).to_owned() + p1("b_out")[0];
            pred.into_dyn()
        }
    };
    out.mapv(|v| v as f64)
}

fn check_seq(name: &str, mut m: SeqModel<f32>, keys: &SeqKeys) -> SeqModel<f32> {
    let fx = fixture(name);
    load_seq_model(&mut m, keys, &weights(name)).unwrap();
    let batch = seq_batch(&fx, m.spec.cell);
    check(&format!("{name} output"), &seq_outputs(&m, &batch), &arr(&fx["eval"]["out"]), F32_TOL);
    let eval = m.forward_backward(&batch);
    check_num(&format!("{name} loss"), eval.loss, fx["eval"]["loss"].as_f64().unwrap(), F32_TOL);
    check_grads(name, export_seq_model_grads(&m, keys), &fx["eval"]["grads"], F32_TOL);
    let norms: Vec<f64> = fx["step_grad_norms"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    check(
        &format!("{name} ||dL/dh_t||, t = 0..{}", norms.len()),
        &Array1::from(m.bptt_norms().to_vec()).into_dyn(),
        &Array1::from(norms).into_dyn(),
        F32_TOL,
    );
    m
}

#[test]
fn token_rnn_with_embedding_matches_pytorch() {
    check_seq("rnn", token_rnn(), &SeqKeys::default());
}

#[test]
fn exploding_rnn_matches_pytorch_and_its_spectral_radius() {
    let fx = fixture("rnn_exploding");
    let m = check_seq("rnn_exploding", token_rnn(), &SeqKeys::default());
    let rho = fx["whh_spectral_radius"].as_f64().unwrap();
    check_num("rnn_exploding spectral radius of Whh", m.whh_spectrum().0, rho, F32_TOL);
    assert!(rho > 1.5);
    let n = m.bptt_norms();
    assert!(n[0] > 10.0 * n[n.len() - 1], "the gradient grows going back in time: {n:?}");
}

#[test]
fn lstm_matches_pytorch_healthy_and_saturated() {
    check_seq("lstm", dense_lstm(), &lstm_keys());
    check_seq("lstm_saturated", dense_lstm(), &lstm_keys());
    assert!(fixture("lstm_saturated")["saturated_gate_share"].as_f64().unwrap() > 0.4);
}

#[test]
fn seq_keys_are_detected_from_the_file() {
    assert_eq!(SeqKeys::detect(&weights("lstm")).unwrap(), lstm_keys());
    assert_eq!(SeqKeys::detect(&weights("rnn")).unwrap(), SeqKeys::default());
    let e = SeqKeys::detect(&weights("mlp")).unwrap_err().to_string();
    assert!(e.contains("weight_ih_l0") && e.contains("`0.weight` (24, 12)"), "{e}");
}

// ---------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("leaky-import-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A safetensors file holding `sd`'s tensors (f32) with `edit` applied to the list.
fn rewrite(
    sd: &StateDict,
    name: &str,
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) -> StateDict {
    let mut t: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = sd
        .keys()
        .map(|k| {
            let (dtype, bytes) = match sd.get_f64(k) {
                Ok(a) => (safetensors::Dtype::F32, a.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect()),
                Err(_) => (safetensors::Dtype::I64, 0i64.to_le_bytes().to_vec()),
            };
            (k.to_string(), dtype, sd.shape(k).unwrap().to_vec(), bytes)
        })
        .collect();
    edit(&mut t);
    let views: Vec<(String, safetensors::tensor::TensorView)> = t
        .iter()
        .map(|(k, d, s, b)| (k.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let path = tmp(name);
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    StateDict::open(&path).unwrap()
}

/// Load `sd` into a fresh [`mlp_norm`], expect an error, and check the model is unchanged.
fn mlp_norm_error(sd: &StateDict) -> String {
    let mut m = mlp_norm::<f64>();
    let before = export_sequential(&m, &[]).unwrap();
    let e = load_sequential(&mut m, &[], sd).unwrap_err();
    assert_eq!(export_sequential(&m, &[]).unwrap(), before, "a failed load changed the model");
    println!("error: {e}");
    e.to_string()
}

#[test]
fn missing_extra_misshapen_and_non_float_keys_are_errors_naming_key_and_shapes() {
    let sd = weights("mlp_norm");
    // A misspelt key: missing under its right name, the message lists what is there.
    let bad =
        rewrite(&sd, "badkey.safetensors", |t| t.iter_mut().find(|e| e.0 == "0.weight").unwrap().0 = "0.wieght".into());
    let e = mlp_norm_error(&bad);
    assert!(e.contains("key `0.weight` is missing") && e.contains("layer 0 (affine)") && e.contains("(16, 12)"), "{e}");
    assert!(e.contains("`0.wieght` (16, 12)"), "{e}");
    // A key no layer takes.
    let extra = rewrite(&sd, "extra.safetensors", |t| {
        t.push(("7.weight".into(), safetensors::Dtype::F32, vec![2], vec![0; 8]))
    });
    let e = mlp_norm_error(&extra);
    assert!(e.contains("a key the model does not use: `7.weight` (2,)") && e.contains("`6.bias` (4,)"), "{e}");
    // A transposed weight: both shapes named.
    let shape = rewrite(&sd, "shape.safetensors", |t| {
        // (16, 16) cut to (16, 8).
        let w = t.iter_mut().find(|e| e.0 == "3.weight").unwrap();
        w.2 = vec![16, 8];
        w.3.truncate(16 * 8 * 4);
    });
    let e = mlp_norm_error(&shape);
    assert!(e.contains("key `3.weight` has shape (16, 8), but layer 3 (affine) expects (16, 16)"), "{e}");
    // An integer tensor where a weight is due.
    let dtype = rewrite(&sd, "dtype.safetensors", |t| {
        let b = t.iter_mut().find(|e| e.0 == "1.running_mean").unwrap();
        b.1 = safetensors::Dtype::I32;
        b.3.truncate(16 * 4);
    });
    let e = mlp_norm_error(&dtype);
    assert!(e.contains("key `1.running_mean` has dtype I32"), "{e}");
    // Without a batch norm's num_batches_tracked the file still loads (PyTorch's own count).
    let no_count = rewrite(&sd, "nocount.safetensors", |t| t.retain(|e| !e.0.ends_with("num_batches_tracked")));
    load_sequential(&mut mlp_norm::<f64>(), &[], &no_count).unwrap();
}

#[test]
fn truncated_and_foreign_files_are_errors_naming_the_file() {
    let bytes = std::fs::read(dir().join("mlp.safetensors")).unwrap();
    let cut = tmp("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let e = StateDict::open(&cut).err().unwrap().to_string();
    println!("error: {e}");
    assert!(e.contains("cut.safetensors: not a readable safetensors file") && e.contains("truncated"), "{e}");
    let e = StateDict::open(&dir().join("mlp.x.npy")).err().unwrap().to_string();
    println!("error: {e}");
    assert!(e.contains("mlp.x.npy: not a readable safetensors file"), "{e}");
    let e = StateDict::open(&dir().join("nope.safetensors")).err().unwrap();
    assert!(matches!(e, ImportError::Io { .. }) && e.to_string().contains("nope.safetensors"), "{e}");
}

#[test]
fn recurrent_errors_name_the_key_and_list_the_file() {
    // Default names on a file whose LSTM is called `lstm`.
    let mut m = dense_lstm();
    let e = load_seq_model(&mut m, &SeqKeys::default(), &weights("lstm")).unwrap_err().to_string();
    println!("error: {e}");
    assert!(e.contains("key `rnn.weight_ih_l0` is missing") && e.contains("`lstm.weight_ih_l0` (24, 3)"), "{e}");
    // An LSTM file read as a tanh RNN: 4H rows where H are due.
    let spec = SeqSpec { cell: Cell::Rnn, ..dense_lstm().spec };
    let mut m = SeqModel::<f32>::new(spec, 0);
    let e = load_seq_model(&mut m, &lstm_keys(), &weights("lstm")).unwrap_err().to_string();
    println!("error: {e}");
    assert!(e.contains("key `lstm.weight_ih_l0` has shape (24, 3), but rnn (leaky `Wx`) expects (6, 3)"), "{e}");
    // A second layer's keys are extra.
    let two = rewrite(&weights("lstm"), "lstm2.safetensors", |t| {
        let l0 = t.iter().find(|e| e.0 == "lstm.weight_hh_l0").unwrap().clone();
        t.push(("lstm.weight_hh_l1".into(), l0.1, l0.2, l0.3));
    });
    let e = load_seq_model(&mut dense_lstm(), &lstm_keys(), &two).unwrap_err().to_string();
    assert!(e.contains("`lstm.weight_hh_l1` (24, 6)"), "{e}");
}

#[test]
fn names_that_do_not_fit_are_errors() {
    let sd = weights("mlp");
    let e = load_sequential(&mut mlp::<f32>(), &[None, None], &sd).unwrap_err().to_string();
    assert!(e.contains("2 layer names given for a model of 5 layers"), "{e}");
    let names = vec![Some("a".into()), None, Some("a".into()), None, None];
    let e = load_sequential(&mut mlp::<f32>(), &names, &sd).unwrap_err().to_string();
    assert!(e.contains("layers 0 and 2 both take the key prefix `a`"), "{e}");
}

#[test]
fn nested_module_names_and_a_ddp_prefix() {
    // `module.features.0.weight`, ...: a model saved inside DistributedDataParallel whose
    // layers sit in `self.features = nn.Sequential(...)`.
    let sd = weights("mlp");
    let nested =
        rewrite(&sd, "nested.safetensors", |t| t.iter_mut().for_each(|e| e.0 = format!("module.features.{}", e.0)));
    let mut sd2 = StateDict::open(&tmp("nested.safetensors")).unwrap();
    assert_eq!(sd2.strip_prefix("module.").unwrap(), 6);
    let names: Vec<Option<String>> = (0..5).map(|i| Some(format!("features.{i}"))).collect();
    let mut m = mlp::<f64>();
    load_sequential(&mut m, &names, &sd2).unwrap();
    let mut plain = mlp::<f64>();
    load_sequential(&mut plain, &[], &sd).unwrap();
    assert_eq!(export_sequential(&m, &[]).unwrap(), export_sequential(&plain, &[]).unwrap());
    // Without stripping, the message shows the prefix.
    let e = load_sequential(&mut mlp::<f64>(), &names, &nested).unwrap_err().to_string();
    assert!(e.contains("`features.0.weight` is missing") && e.contains("`module.features.0.weight` (24, 12)"), "{e}");
}

#[test]
fn non_finite_weights_are_listed_not_refused() {
    let sd = rewrite(&weights("mlp"), "nan.safetensors", |t| {
        let b = t.iter_mut().find(|e| e.0 == "2.bias").unwrap();
        b.3[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let mut m = mlp::<f32>();
    load_sequential(&mut m, &[], &sd).unwrap();
    let bad = sd.non_finite();
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].key.as_str(), bad[0].nan, bad[0].inf, bad[0].len), ("2.bias", 1, 0, 24));
}

// ---------------------------------------------------------------------------------------
// export
// ---------------------------------------------------------------------------------------

#[test]
fn save_pytorch_writes_the_state_dict_it_was_loaded_from() {
    let sd = weights("mlp_norm");
    let mut m = mlp_norm::<f64>();
    load_sequential(&mut m, &[], &sd).unwrap();
    let path = tmp("mlp_norm_out.safetensors");
    save_pytorch(&path, &m, &[]).unwrap();
    let back = StateDict::open(&path).unwrap();
    assert_eq!(back.keys().collect::<Vec<_>>(), sd.keys().collect::<Vec<_>>());
    for k in sd.keys() {
        assert_eq!(back.shape(k), sd.shape(k), "{k}");
        if k.ends_with("num_batches_tracked") {
            assert_eq!(back.dtype(k).as_deref(), Some("I64"));
            continue;
        }
        assert_eq!(back.dtype(k).as_deref(), Some("F32"));
        let want = sd.get_f64(k).unwrap().mapv(|v| v as f32 as f64);
        assert_eq!(back.get_f64(k).unwrap(), want, "{k}");
    }
    // The CNN (a named layer) and the LSTM (gate order, split bias) round-trip too.
    let (mut c, names) = cnn::<f32>();
    load_sequential(&mut c, &names, &weights("cnn")).unwrap();
    save_pytorch(&tmp("cnn_out.safetensors"), &c, &names).unwrap();
    let (mut c2, _) = cnn::<f32>();
    load_sequential(&mut c2, &names, &StateDict::open(&tmp("cnn_out.safetensors")).unwrap()).unwrap();
    assert_eq!(export_sequential(&c2, &names).unwrap(), export_sequential(&c, &names).unwrap());

    let fx = fixture("lstm");
    let mut l = dense_lstm();
    load_seq_model(&mut l, &lstm_keys(), &weights("lstm")).unwrap();
    save_pytorch_seq(&tmp("lstm_out.safetensors"), &l, &lstm_keys()).unwrap();
    let back = StateDict::open(&tmp("lstm_out.safetensors")).unwrap();
    assert_eq!(back.keys().collect::<Vec<_>>(), weights("lstm").keys().collect::<Vec<_>>());
    let mut l2 = dense_lstm();
    load_seq_model(&mut l2, &lstm_keys(), &back).unwrap();
    let batch = seq_batch(&fx, Cell::Lstm);
    assert_eq!(seq_outputs(&l2, &batch), seq_outputs(&l, &batch));
    // A weight written over an existing directory is an error naming the path, not a panic.
    let e = save_pytorch(&std::env::temp_dir(), &m, &[]).unwrap_err().to_string();
    assert!(e.contains(&std::env::temp_dir().display().to_string()), "{e}");
}
