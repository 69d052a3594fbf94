//! `leaky train --save/--resume` and `leaky eval --checkpoint`: a run of 10 epochs equals 5
//! saved and 5 resumed, bit for bit; `leaky eval` gives the saved best epoch's validation
//! accuracy; checkpoints that do not fit are refused with exit 2, naming the problem.

mod common;
use common::{expect_bad_input, leaky, read_json, scratch, stderr};
use std::collections::BTreeMap;
use std::path::Path;

/// An MLP with dropout (its masks come from the layer's own generator) and batch norm
/// (running statistics are buffers), trained with Adam (moments and a step counter) and a
/// decaying learning rate: everything resuming must carry.
const EXPERIMENT: &str = r#"seed = 4
[data]
dataset = "spiral"
val_fraction = 0.25
[model]
init = "he"
[[model.layers]]
type = "affine"
units = 32
[[model.layers]]
type = "relu"
[[model.layers]]
type = "dropout"
p = 0.7
[[model.layers]]
type = "affine"
units = 32
[[model.layers]]
type = "batchnorm"
[[model.layers]]
type = "relu"
[[model.layers]]
type = "affine"
[train]
optimizer = "adam"
lr = 1e-2
batch_size = 16
epochs = 10
lr_decay = 0.95
"#;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Tensors by name: (shape, bytes).
type Tensors = BTreeMap<String, (Vec<usize>, Vec<u8>)>;

/// Every tensor of a safetensors file.
fn tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec()))).collect()
}

/// A run's history without the wall-clock seconds.
fn history(doc: &serde_json::Value) -> Vec<serde_json::Value> {
    doc["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.as_object_mut().unwrap().remove("seconds");
            e
        })
        .collect()
}

fn ok(args: &[&str]) -> String {
    let o = leaky(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn ten_epochs_equal_five_saved_and_five_resumed_and_eval_gives_the_best_accuracy() {
    let d = scratch("ckpt-resume");
    let e10 = d.join("e10.toml");
    let e5 = d.join("e5.toml");
    std::fs::write(&e10, EXPERIMENT).unwrap();
    std::fs::write(&e5, EXPERIMENT.replace("epochs = 10", "epochs = 5")).unwrap();
    let (full, half, resumed) = (d.join("full.st"), d.join("half.st"), d.join("resumed.st"));
    let (full_json, half_json, resumed_json) = (d.join("full.json"), d.join("half.json"), d.join("resumed.json"));

    ok(&["train", s(&e10), "-q", "--save", s(&full), "--json", s(&full_json)]);
    ok(&["train", s(&e5), "-q", "--save", s(&half), "--json", s(&half_json)]);
    let out = ok(&["train", s(&e10), "--resume", s(&half), "--save", s(&resumed), "--json", s(&resumed_json)]);
    assert!(out.contains("resuming") && out.contains("after epoch 5 of 10"), "{out}");
    assert!(out.contains("epoch   6/10") && !out.contains("epoch   5/10"), "{out}");

    // Same tensors bit for bit: the best epoch's parameters and buffers, the last epoch's,
    // the optimiser's moments.
    let (a, b) = (tensors(&full), tensors(&resumed));
    assert!(a.contains_key("0.affine.W") && a.contains_key("resume.m.0.affine.W"), "{:?}", a.keys());
    assert!(a.contains_key("resume.last.4.batchnorm.running_mean"), "{:?}", a.keys());
    assert_eq!(a, b);
    // Same history and metrics (but the seconds).
    let (fj, rj) = (read_json(&full_json), read_json(&resumed_json));
    assert_eq!(history(&fj).len(), 10);
    assert_eq!(history(&fj), history(&rj));
    for k in ["best_val_acc", "best_val_loss", "best_epoch", "final_train_loss", "steps"] {
        assert_eq!(fj["metrics"][k], rj["metrics"][k], "{k}");
    }

    // leaky eval: the checkpoint's (best epoch's) validation accuracy. The 5-epoch run's best
    // epoch is not its last here, so the last epoch's parameters would give another number.
    let hj = read_json(&half_json);
    let best = hj["metrics"]["best_epoch"].as_u64().unwrap() as usize;
    let accs: Vec<f64> = hj["history"].as_array().unwrap().iter().map(|e| e["val_acc"].as_f64().unwrap()).collect();
    assert!(best < accs.len(), "the best epoch must not be the last for this check to mean something: {accs:?}");
    assert_ne!(accs[best - 1], *accs.last().unwrap(), "{accs:?}");
    for (exp, ckpt, run) in [(&e5, &half, &hj), (&e10, &full, &fj)] {
        let ev = d.join("eval.json");
        let out = ok(&["eval", s(exp), "--checkpoint", s(ckpt), "--json", s(&ev)]);
        assert!(out.contains("validation split, 75 examples"), "{out}");
        let doc = read_json(&ev);
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["metrics"]["accuracy"], run["metrics"]["best_val_acc"]);
        assert_eq!(doc["metrics"]["examples"], 75);
        let loss = doc["metrics"]["loss"].as_f64().unwrap();
        let best_loss = run["metrics"]["best_val_loss"].as_f64().unwrap();
        assert!((loss - best_loss).abs() < 1e-12, "{loss} vs {best_loss}");
        assert_eq!(doc["run"]["checkpoint"], s(ckpt));
    }

    // A checkpoint written without resume state or checksum (an older leaky, another tool):
    // eval reads it; resuming is refused.
    let plain = d.join("plain.st");
    let named: Tensors = tensors(&half).into_iter().filter(|(n, _)| !n.starts_with("resume.")).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = named
        .iter()
        .map(|(n, (shape, b))| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b).unwrap())
        })
        .collect();
    std::fs::write(&plain, safetensors::serialize(views, None).unwrap()).unwrap();
    let ev = d.join("plain.json");
    ok(&["eval", s(&e5), "--checkpoint", s(&plain), "--json", s(&ev)]);
    assert_eq!(read_json(&ev)["metrics"]["accuracy"], hj["metrics"]["best_val_acc"]);
    expect_bad_input(&["train", s(&e10), "--resume", s(&plain)], &["plain.st", "no resume state"]);

    // Refusals, before any training.
    expect_bad_input(
        &["train", s(&e5), "--resume", s(&half)],
        &["half.st", "5 epoch(s) done", "train.epochs = 5 is the total"],
    );
    expect_bad_input(&["train", s(&e10), "--resume", s(&full)], &["10 epoch(s) done", "train.epochs = 10"]);
    let other_lr = d.join("lr.toml");
    std::fs::write(&other_lr, EXPERIMENT.replace("lr = 1e-2", "lr = 2e-2")).unwrap();
    expect_bad_input(&["train", s(&other_lr), "--resume", s(&half)], &["half.st", "train.lr", "0.01", "0.02"]);
    let narrow = d.join("narrow.toml");
    std::fs::write(&narrow, EXPERIMENT.replace("units = 32", "units = 16")).unwrap();
    expect_bad_input(&["train", s(&narrow), "--resume", s(&half)], &["`0.affine.W`", "[2, 32]", "[2, 16]"]);
    expect_bad_input(&["eval", s(&narrow), "--checkpoint", s(&half)], &["`0.affine.W`", "[2, 32]", "[2, 16]"]);
    // One flipped bit in the last tensor's data: finite, the right shape, but not what was saved.
    let mut bytes = std::fs::read(&half).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x01;
    let corrupt = d.join("corrupt.st");
    std::fs::write(&corrupt, &bytes).unwrap();
    expect_bad_input(&["train", s(&e10), "--resume", s(&corrupt)], &["corrupt.st", "checksum mismatch"]);
    expect_bad_input(&["eval", s(&e10), "--checkpoint", s(&corrupt)], &["corrupt.st", "checksum mismatch"]);
    expect_bad_input(
        &["train", "examples/adding-lstm.toml", "--resume", s(&half)],
        &["only feed-forward models", "lstm"],
    );
    expect_bad_input(&["eval", s(&e10), "--checkpoint", s(&d.join("missing.st"))], &["missing.st"]);
    std::fs::remove_dir_all(&d).ok();
}
