//! `leaky inspect` on checkpoints saved by PyTorch (crates/leaky/tests/fixtures/torch, made by
//! scripts/fixtures/make_torch_models.py): the dead-unit counts against PyTorch's brute-force
//! count, a healthy CNN, `--before`, and the bad-input cases.

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
