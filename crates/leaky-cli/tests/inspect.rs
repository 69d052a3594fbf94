//! `leaky inspect` on checkpoints saved by PyTorch (crates/leaky/tests/fixtures/torch, made by
//! scripts/fixtures/make_torch_models.py): the dead-unit counts against PyTorch's brute-force
//! count, a healthy CNN, `--before`, batch norm running statistics against the data (checked
//! against a direct computation here, with the statistics edited in the test), RNN and LSTM
//! on their own sequences (losses against PyTorch's), `.npz` data, and the bad-input cases.

mod common;
use common::*;

const FIX: &str = "crates/leaky/tests/fixtures/torch";

fn arch(dir: &std::path::Path, name: &str, toml: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, toml).unwrap();
    p.to_str().unwrap().to_string()
}

const MLP: &str = "[model]\nhidden = [32, 32]\nactivation = \"relu\"\n";
const CNN: &str = "[[model.layers]]\ntype = \"conv\"\nfilters = 4\nsize = 3\npad = 1\n[[model.layers]]\ntype = \"batchnorm\"\n[[model.layers]]\ntype = \"relu\"\n[[model.layers]]\ntype = \"maxpool\"\n[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"affine\"\n";

#[test]
fn dead_units_of_a_pytorch_mlp_match_the_brute_force_count() {
    let dir = scratch("inspect-dead");
    let a = arch(&dir, "mlp.toml", MLP);
    let json = dir.join("f.json");
    let w = format!("{FIX}/mlp_dead.safetensors");
    let (x, y) = (format!("{FIX}/mlp_dead.x.npy"), format!("{FIX}/mlp_dead.y.npy"));
    let o = leaky(&["inspect", &a, "--weights", &w, "--data", &x, "--labels", &y, "--json", json.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "dead units are errors: {}", stderr(&o));
    let doc = read_json(&json);
    assert_eq!(doc["metrics"]["examples"], 200);
    assert!(doc["run"]["inspect"]["weights"].as_str().unwrap().ends_with("mlp_dead.safetensors"));
    // PyTorch's count, one example at a time (the fixture's "dead_units": layer -> count).
    let fixture = read_json(&root().join(FIX).join("mlp_dead.json"));
    for (layer, count) in fixture["dead_units"].as_object().unwrap() {
        let f = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "dead_relu" && f["where"].as_str().unwrap().starts_with(&format!("layer {layer} ")))
            .unwrap_or_else(|| panic!("no dead_relu in layer {layer}: {doc}"));
        assert_eq!(&f["evidence"]["dead_units"], count, "{f}");
        assert_eq!(f["evidence"]["units"], 32);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_healthy_pytorch_cnn_with_batch_norm_has_no_error() {
    let dir = scratch("inspect-cnn");
    let a = arch(&dir, "cnn.toml", CNN);
    let json = dir.join("f.json");
    let w = format!("{FIX}/cnn.safetensors");
    let (x, y) = (format!("{FIX}/cnn.x.npy"), format!("{FIX}/cnn.y.npy"));
    let o = leaky(&["inspect", &a, "--weights", &w, "--data", &x, "--labels", &y, "--json", json.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = read_json(&json);
    let n = doc["metrics"]["examples"].as_u64().unwrap();
    assert!(n > 0 && doc["metrics"]["loss"].as_f64().unwrap().is_finite(), "{doc}");
    assert!(doc["metrics"]["accuracy"].as_f64().is_some(), "{doc}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn before_the_same_checkpoint_nothing_moved_and_nothing_died() {
    let dir = scratch("inspect-before");
    let a = arch(&dir, "mlp.toml", MLP);
    let json = dir.join("f.json");
    let w = format!("{FIX}/mlp_dead.safetensors");
    let (x, y) = (format!("{FIX}/mlp_dead.x.npy"), format!("{FIX}/mlp_dead.y.npy"));
    let o = leaky(&[
        "inspect",
        &a,
        "--weights",
        &w,
        "--before",
        &w,
        "--data",
        &x,
        "--labels",
        &y,
        "--json",
        json.to_str().unwrap(),
        "--fail-on",
        "never",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = read_json(&json);
    let ratios = doc["metrics"]["update_ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 3, "one per weight matrix: {doc}");
    assert!(ratios.iter().all(|r| r[1] == 0.0), "{doc}");
    assert!(!doc["findings"].as_array().unwrap().iter().any(|f| f["evidence"].get("died_since_before").is_some()));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_checkpoints_and_data_exit_2_naming_the_problem() {
    let dir = scratch("inspect-bad");
    let cnn = arch(&dir, "cnn.toml", CNN);
    let mlp = arch(&dir, "mlp.toml", MLP);
    let (x, y) = (format!("{FIX}/cnn.x.npy"), format!("{FIX}/cnn.y.npy"));
    // Another model's weights: the key and both shapes.
    let w = format!("{FIX}/mlp.safetensors");
    expect_bad_input(
        &["inspect", &cnn, "--weights", &w, "--data", &x, "--labels", &y],
        &["0.weight", "(24, 12)", "(4, 1, 3, 3)"],
    );
    // Data of the wrong width for the model.
    let w = format!("{FIX}/mlp_dead.safetensors");
    expect_bad_input(&["inspect", &mlp, "--weights", &w, "--data", &x, "--labels", &y], &["0.weight"]);
    // Not a safetensors file; a missing file.
    expect_bad_input(&["inspect", &mlp, "--weights", &x, "--data", &x, "--labels", &y], &["cnn.x.npy"]);
    expect_bad_input(&["inspect", &mlp, "--weights", "/nonexistent/w.safetensors"], &["/nonexistent/w.safetensors"]);
    // A truncated file.
    let bytes = std::fs::read(root().join(FIX).join("mlp_dead.safetensors")).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    expect_bad_input(&["inspect", &mlp, "--weights", cut.to_str().unwrap()], &["cut.safetensors"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn train_saves_a_pytorch_state_dict_that_inspect_reads_back() {
    let dir = scratch("inspect-save-pytorch");
    let a = arch(&dir, "spiral.toml", "[data]\ndataset = \"spiral\"\n[model]\nhidden = [8]\n[train]\nepochs = 2\n");
    let w = dir.join("w.safetensors");
    let o = leaky(&["train", &a, "--quiet", "--save", w.to_str().unwrap(), "--save-format", "pytorch"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // PyTorch's names and layouts: Linear weights (out, in), an nn.Sequential's indices.
    let sd = leaky::import::StateDict::open(&w).unwrap();
    let keys: Vec<&str> = sd.keys().collect();
    assert_eq!(keys, ["0.bias", "0.weight", "2.bias", "2.weight"]);
    assert_eq!(sd.shape("0.weight"), Some(&[8usize, 2][..]));
    assert_eq!(sd.shape("2.weight"), Some(&[3usize, 8][..]));
    let o = leaky(&["inspect", &a, "--weights", w.to_str().unwrap(), "--fail-on", "never"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}

/// A copy of the fixture `name`'s state_dict in `dir` with `edit(key, values)` applied to
/// every f32 tensor (the others copied as they are).
fn edited(dir: &std::path::Path, name: &str, edit: impl Fn(&str, &mut Vec<f32>)) -> String {
    let bytes = std::fs::read(root().join(FIX).join(format!("{name}.safetensors"))).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let mut data = v.data().to_vec();
            if v.dtype() == safetensors::Dtype::F32 {
                let mut vals: Vec<f32> =
                    data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                edit(&k, &mut vals);
                data = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
            }
            (k.to_string(), v.dtype(), v.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, d, s, b)| (k.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let path = dir.join(format!("{name}-edited.safetensors"));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

/// The findings of `leaky inspect ARCH --weights W --data X --labels Y --json F --fail-on never`.
fn inspect_json(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let json = dir.join("f.json");
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", json.to_str().unwrap(), "--fail-on", "never"]);
    let o = leaky(&all);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    read_json(&json)
}

fn findings_with<'a>(doc: &'a serde_json::Value, code: &str) -> Vec<&'a serde_json::Value> {
    doc["findings"].as_array().unwrap().iter().filter(|f| f["code"] == code).collect()
}

/// Per channel, the mean and (biased) variance of the fixture CNN's conv output over its 16
/// examples, computed here from the weights and inputs by a direct 3x3 convolution (pad 1) in
/// f64: the input of its batch norm layer.
fn cnn_conv_moments() -> Vec<(f64, f64)> {
    use ndarray_npy::ReadNpyExt;
    let sd = leaky::import::StateDict::open(&root().join(FIX).join("cnn.safetensors")).unwrap();
    let (w, b) = (sd.get_f64("0.weight").unwrap(), sd.get_f64("0.bias").unwrap());
    let file = std::fs::File::open(root().join(FIX).join("cnn.x.npy")).unwrap();
    let x = ndarray::ArrayD::<f32>::read_npy(file).unwrap();
    let n = x.shape()[0];
    (0..4)
        .map(|f| {
            let mut vals = Vec::new();
            for i in 0..n {
                for r in 0..8i64 {
                    for c in 0..8i64 {
                        let mut s = b[[f]];
                        for dr in 0..3i64 {
                            for dc in 0..3i64 {
                                let (rr, cc) = (r + dr - 1, c + dc - 1);
                                if (0..8).contains(&rr) && (0..8).contains(&cc) {
                                    s += w[[f, 0, dr as usize, dc as usize]]
                                        * x[[i, 0, rr as usize, cc as usize]] as f64;
                                }
                            }
                        }
                        vals.push(s);
                    }
                }
            }
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            (m, vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / vals.len() as f64)
        })
        .collect()
}

#[test]
fn batch_norm_running_statistics_far_from_the_data_are_found() {
    let dir = scratch("inspect-bn");
    let cnn = arch(&dir, "cnn.toml", CNN);
    let (x, y) = (format!("{FIX}/cnn.x.npy"), format!("{FIX}/cnn.y.npy"));
    let moments = cnn_conv_moments();
    let sd = leaky::import::StateDict::open(&root().join(FIX).join("cnn.safetensors")).unwrap();
    let (rm, rv) = (sd.get_f64("1.running_mean").unwrap(), sd.get_f64("1.running_var").unwrap());
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1e-3);

    // The honest fixture: 8 SGD steps, so its running statistics still hold 0.9^8 = 43% of
    // their initial values: the running variance is about twice the data's on two channels.
    // A warning, explained by the lag.
    let w = format!("{FIX}/cnn.safetensors");
    let doc = inspect_json(&dir, &[&cnn, "--weights", &w, "--data", &x, "--labels", &y]);
    let bn = findings_with(&doc, "batchnorm_stats");
    assert_eq!(bn.len(), 1, "{doc}");
    let f = bn[0];
    assert_eq!((f["severity"].as_str(), f["layer"].as_u64()), (Some("warning"), Some(1)), "{f}");
    assert_eq!(f["evidence"]["batches_tracked"], 8);
    assert_eq!(f["evidence"]["few_batches_explain"], true);
    let j = f["evidence"]["worst_feature"].as_u64().unwrap() as usize;
    let (m, v) = moments[j];
    let ev = |k: &str| f["evidence"][k].as_f64().unwrap();
    assert!(close(ev("data_mean"), m) && close(ev("data_var"), v), "{f} vs brute force ({m}, {v})");
    assert!(close(ev("var_ratio"), (v + 1e-5) / (rv[[j]] + 1e-5)), "{f}");
    // Which channels are off, by the brute-force moments and the documented thresholds.
    let off = (0..4)
        .filter(|&c| {
            let (m, v) = moments[c];
            let z = (m - rm[[c]]) / (v + 1e-5).sqrt();
            let r = (v + 1e-5) / (rv[[c]] + 1e-5);
            z.abs() >= 0.5 || !(0.5 < r && r < 2.0)
        })
        .count();
    assert_eq!(f["evidence"]["off_features"], off as u64, "{f}");

    // The running mean moved by 2: every channel far off, an error, and the dead channels
    // after it follow from it.
    let moved = edited(&dir, "cnn", |k, v| {
        if k == "1.running_mean" {
            v.iter_mut().for_each(|x| *x += 2.0)
        }
    });
    let doc = inspect_json(&dir, &[&cnn, "--weights", &moved, "--data", &x, "--labels", &y]);
    let f = findings_with(&doc, "batchnorm_stats")[0].clone();
    assert_eq!(f["severity"], "error", "{f}");
    assert_eq!((f["evidence"]["off_features"].as_u64(), f["evidence"]["far_features"].as_u64()), (Some(4), Some(4)));
    assert_eq!(f["evidence"]["few_batches_explain"], false, "the lag of 8 batches does not explain a shift of 2");
    let j = f["evidence"]["worst_feature"].as_u64().unwrap() as usize;
    let (m, v) = moments[j];
    let z = (m - (rm[[j]] + 2.0)) / (v + 1e-5).sqrt();
    assert!((f["evidence"]["mean_shift_std"].as_f64().unwrap() - z).abs() < 1e-4, "{f} vs {z}");
    assert!(f["fix"].as_array().unwrap().iter().all(|x| x["set"] == serde_json::json!({})));
    let dead = findings_with(&doc, "dead_relu");
    assert_eq!(dead.len(), 1, "{doc}");
    assert_eq!(dead[0]["caused_by"], f["id"], "{doc}");

    // Never updated: PyTorch's initial values (mean 0, variance 1).
    let fresh = edited(&dir, "cnn", |k, v| match k {
        "1.running_mean" => v.iter_mut().for_each(|x| *x = 0.0),
        "1.running_var" => v.iter_mut().for_each(|x| *x = 1.0),
        _ => {}
    });
    let doc = inspect_json(&dir, &[&cnn, "--weights", &fresh, "--data", &x, "--labels", &y]);
    let f = findings_with(&doc, "batchnorm_stats")[0].clone();
    assert_eq!(f["evidence"]["running_stats_at_init"], true, "{f}");
    assert!(f["fix"][0]["text"].as_str().unwrap().contains("model.train()"), "{f}");

    // A BatchNorm1d trained 10 steps on inputs of scale 3 (mlp_norm, f64): silent.
    let mlp = arch(&dir, "mlp_norm.toml", MLP_NORM);
    let (x, y) = (format!("{FIX}/mlp_norm.x.npy"), format!("{FIX}/mlp_norm.y.npy"));
    let w = format!("{FIX}/mlp_norm.safetensors");
    let doc = inspect_json(&dir, &[&mlp, "--weights", &w, "--data", &x, "--labels", &y]);
    assert!(findings_with(&doc, "batchnorm_stats").is_empty(), "{doc}");
    std::fs::remove_dir_all(&dir).ok();
}

const MLP_NORM: &str = "[[model.layers]]\ntype = \"affine\"\nunits = 16\n[[model.layers]]\ntype = \"batchnorm\"\n[[model.layers]]\ntype = \"relu\"\n[[model.layers]]\ntype = \"affine\"\nunits = 16\n[[model.layers]]\ntype = \"layernorm\"\n[[model.layers]]\ntype = \"tanh\"\n[[model.layers]]\ntype = \"affine\"\n";
const RNN: &str = "[model]\nkind = \"rnn\"\nhidden = [8]\n[train]\nloss = \"softmax\"\n";
const LSTM: &str = "[model]\nkind = \"lstm\"\nhidden = [6]\n[train]\nloss = \"mse\"\n";

#[test]
fn recurrent_models_are_inspected_on_their_own_sequences() {
    let dir = scratch("inspect-seq");
    let rnn = arch(&dir, "rnn.toml", RNN);
    let lstm = arch(&dir, "lstm.toml", LSTM);
    // Loss over the batch against PyTorch's (the fixture's "eval" loss: the summed per-step
    // cross-entropy divided by N for the RNN, the MSE of the last step for the LSTM).
    for (name, a, classify) in [("rnn", &rnn, true), ("lstm", &lstm, false), ("lstm_saturated", &lstm, false)] {
        let (x, y) = seq_npy(&dir, name);
        let w = format!("{FIX}/{name}.safetensors");
        let doc =
            inspect_json(&dir, &[a, "--weights", &w, "--data", x.to_str().unwrap(), "--labels", y.to_str().unwrap()]);
        let want = read_json(&root().join(FIX).join(format!("{name}.json")))["eval"]["loss"].as_f64().unwrap();
        let got = doc["metrics"]["loss"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-5 * want, "{name}: loss {got}, PyTorch {want}");
        assert_eq!(doc["metrics"]["accuracy"].is_number(), classify, "{name}: {doc}");
        let n = if name == "rnn" { 6 } else { 8 };
        assert_eq!(doc["metrics"]["examples"], n);
        if name == "lstm_saturated" {
            assert!(!findings_with(&doc, "saturation").is_empty(), "{doc}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Write `values` (f32 or i64) of `shape` as .npy at `dir/name`.
fn npy<T: ndarray_npy::WritableElement + Clone>(
    dir: &std::path::Path,
    name: &str,
    shape: &[usize],
    values: Vec<T>,
) -> String {
    use ndarray_npy::WriteNpyExt;
    let p = dir.join(name);
    let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), values).unwrap();
    a.write_npy(std::io::BufWriter::new(std::fs::File::create(&p).unwrap())).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn sequence_data_that_does_not_fit_exits_2_naming_the_file_and_both_shapes() {
    let dir = scratch("inspect-seq-bad");
    let rnn = arch(&dir, "rnn.toml", RNN);
    let lstm = arch(&dir, "lstm.toml", LSTM);
    let (rx, ry) = seq_npy(&dir, "rnn");
    let (lx, ly) = seq_npy(&dir, "lstm");
    let (rx, ry, lx, ly) = (rx.to_str().unwrap(), ry.to_str().unwrap(), lx.to_str().unwrap(), ly.to_str().unwrap());
    let rw = format!("{FIX}/rnn.safetensors");
    let lw = format!("{FIX}/lstm.safetensors");
    let run = |a: &str, w: &str, x: &str, y: &str, needles: &[&str]| {
        expect_bad_input(&["inspect", a, "--weights", w, "--data", x, "--labels", y], needles)
    };
    // LSTM: rank, width, targets.
    let flat = npy(&dir, "flat.npy", &[8, 18], vec![0f32; 144]);
    run(&lstm, &lw, &flat, ly, &["flat.npy", "(8, 18)", "(N, T, D)", "lstm.weight_ih_l0 (24, 3)"]);
    let wide = npy(&dir, "wide.npy", &[8, 6, 5], vec![0f32; 240]);
    run(&lstm, &lw, &wide, ly, &["wide.npy", "(8, 6, 5)", "D = 3", "lstm.weight_ih_l0 (24, 3)"]);
    let per_step = npy(&dir, "per_step.npy", &[8, 6], vec![0f32; 48]);
    run(&lstm, &lw, lx, &per_step, &["per_step.npy", "(8, 6)", "expected shape (8,)", "(8, 6, 3)"]);
    let short = npy(&dir, "short.npy", &[7], vec![0f32; 7]);
    run(&lstm, &lw, lx, &short, &["short.npy", "(7,)", "(8,)"]);
    // RNN: token ids, their range, per-step classes of the same length.
    let floats = npy(&dir, "floats.npy", &[6, 7], vec![0f32; 42]);
    run(&rnn, &rw, &floats, ry, &["floats.npy", "(6, 7)", "floats", "integer ids", "embed.weight (7, 5)"]);
    let big = npy(&dir, "big.npy", &[6, 7], (0..42).map(|k| if k == 40 { 7i64 } else { 1 }).collect());
    run(&rnn, &rw, &big, ry, &["big.npy", "token id 7", "sequence 5, step 5", "0..7"]);
    let long = npy(&dir, "long.npy", &[6, 8], vec![0i64; 48]);
    run(&rnn, &rw, rx, &long, &["long.npy", "(6, 8)", "(6, 7)"]);
    let class = npy(&dir, "class.npy", &[6, 7], (0..42).map(|k| if k == 3 { 9i64 } else { 0 }).collect());
    run(&rnn, &rw, rx, &class, &["class.npy", "class 9", "sequence 0, step 3", "fc.weight (7, 8)"]);
    // A single .npy without --labels.
    expect_bad_input(&["inspect", &lstm, "--weights", &lw, "--data", lx], &["needs --labels"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_npz_holding_x_and_y_is_data_without_labels() {
    let dir = scratch("inspect-npz");
    // crates/leaky/tests/data/npy/xy.npz: x (4, 2, 3) f32, y (4,) int64; a Linear(6, 5).
    let views_data = [vec![0u8; 5 * 6 * 4], vec![0u8; 5 * 4]];
    let views = vec![
        (
            "0.weight".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![5, 6], &views_data[0]).unwrap(),
        ),
        (
            "0.bias".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![5], &views_data[1]).unwrap(),
        ),
    ];
    let w = dir.join("linear.safetensors");
    std::fs::write(&w, safetensors::serialize(views, None).unwrap()).unwrap();
    let a = arch(&dir, "linear.toml", "[[model.layers]]\ntype = \"affine\"\n");
    let doc =
        inspect_json(&dir, &[&a, "--weights", w.to_str().unwrap(), "--data", "crates/leaky/tests/data/npy/xy.npz"]);
    assert_eq!(doc["metrics"]["examples"], 4);
    // Zero weights: every class scores 0, so the loss is ln 5.
    assert!((doc["metrics"]["loss"].as_f64().unwrap() - 5f64.ln()).abs() < 1e-6, "{doc}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn units_that_died_since_before_are_found_per_layer() {
    let dir = scratch("inspect-died");
    let a = arch(&dir, "mlp.toml", MLP);
    // The earlier checkpoint: mlp_dead with the 20 units of layer 0 that its -8 biases kill
    // alive (bias 0.1).
    let before = edited(&dir, "mlp_dead", |k, v| {
        if k == "0.bias" {
            v[..20].iter_mut().for_each(|b| *b = 0.1)
        }
    });
    let w = format!("{FIX}/mlp_dead.safetensors");
    let (x, y) = (format!("{FIX}/mlp_dead.x.npy"), format!("{FIX}/mlp_dead.y.npy"));
    let doc = inspect_json(&dir, &[&a, "--weights", &w, "--before", &before, "--data", &x, "--labels", &y]);
    let died: Vec<_> = findings_with(&doc, "dead_relu")
        .into_iter()
        .filter(|f| f["evidence"].get("died_since_before").is_some())
        .collect();
    let first = died.iter().find(|f| f["layer"] == 1).unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(first["evidence"]["died_since_before"], 20, "{first}");
    assert_eq!(first["evidence"]["died_units"], serde_json::json!((0..20).collect::<Vec<_>>()));
    // Ids are unique and run F1, F2, ... in listing order.
    let ids: Vec<&str> = doc["findings"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    let want: Vec<String> = (1..=ids.len()).map(|k| format!("F{k}")).collect();
    assert_eq!(ids, want);
    std::fs::remove_dir_all(&dir).ok();
}
