//! End-to-end tests of the `leaky` binary: real runs, real files, real exit codes.

mod common;

use common::{expect_bad_input, leaky, read_json, scratch, stderr};

#[test]
fn train_digits_reaches_97_percent_and_saves_a_checkpoint() {
    let dir = scratch("digits");
    let json = dir.join("run.json");
    let ckpt = dir.join("digits.safetensors");
    let o =
        leaky(&["train", "examples/digits.toml", "--json", json.to_str().unwrap(), "--save", ckpt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = read_json(&json);
    let acc = doc["metrics"]["best_val_acc"].as_f64().unwrap();
    assert!(acc >= 0.97, "best validation accuracy {acc}");
    let history = doc["history"].as_array().unwrap();
    let first = history.first().unwrap()["train_loss"].as_f64().unwrap();
    let last = history.last().unwrap()["train_loss"].as_f64().unwrap();
    assert!(last < first / 5.0, "loss went from {first} to {last}");
    assert!(std::fs::metadata(&ckpt).unwrap().len() > 1000);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn recurrent_examples_train_and_the_loss_goes_down() {
    let dir = scratch("seq");
    for (file, max_ratio) in [("examples/adding-lstm.toml", 0.05), ("examples/chars-rnn.toml", 0.6)] {
        let json = dir.join("run.json");
        let o = leaky(&["train", file, "--json", json.to_str().unwrap()]);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("|dL/dh_t|"), "{out}");
        let doc = read_json(&json);
        let first = doc["metrics"]["initial_val_loss"].as_f64().unwrap();
        let best = doc["metrics"]["best_val_loss"].as_f64().unwrap();
        assert!(best < max_ratio * first, "{file}: val loss {first} -> {best}");
        let t = if file.contains("chars") { 25 } else { 50 };
        assert_eq!(doc["metrics"]["bptt_norms_last_step"].as_array().unwrap().len(), t);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_recurrent_experiments_exit_2() {
    let dir = scratch("seqbad");
    let cases: &[(&str, &str, &[&str])] = &[
        ("two.toml", "[data]\ndataset = \"adding\"\n[model]\nkind = \"lstm\"\nhidden = [8, 8]\n[train]\nloss = \"mse\"\n", &["model.hidden"]),
        ("loss.toml", "[data]\ndataset = \"adding\"\n[model]\nkind = \"rnn\"\nhidden = [8]\n", &["train.loss", "mse"]),
        ("short.toml", "[data]\ndataset = \"adding\"\nseq_len = 1\n[model]\nkind = \"rnn\"\nhidden = [8]\n[train]\nloss = \"mse\"\n", &["adding"]),
        ("mlpseq.toml", "[data]\ndataset = \"adding\"\n", &["sequence"]),
        ("dqn.toml", "[model]\nkind = \"dqn\"\n[rl]\ntd_loss = \"l1\"\n", &["dqn.toml", "l1"]),
        ("notext.toml", "[data]\ndataset = \"text:/nonexistent/book.txt\"\n[model]\nkind = \"rnn\"\nhidden = [8]\n", &["/nonexistent/book.txt"]),
    ];
    for (name, text, needles) in cases {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        expect_bad_input(&["train", p.to_str().unwrap()], needles);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_experiment_files_exit_2_and_name_the_problem() {
    let dir = scratch("toml");
    let cases: &[(&str, &str, &[&str])] = &[
        ("unknown_key.toml", "[train]\nlearning_rate = 0.1\n", &["unknown_key.toml", "learning_rate"]),
        ("wrong_type.toml", "[train]\nepochs = \"ten\"\n", &["wrong_type.toml", "epochs"]),
        ("bad_value.toml", "[train]\nlr = 0.0\n", &["bad_value.toml", "train.lr"]),
        ("bad_enum.toml", "[model]\nactivation = \"swish\"\n", &["bad_enum.toml", "swish"]),
        ("not_toml.toml", "seed = = 3\n[[[\n", &["not_toml.toml"]),
        ("bad_data.toml", "[data]\ndataset = \"mnist\"\n", &["bad_data.toml", "mnist"]),
        ("missing_csv.toml", "[data]\ndataset = \"csv:/nonexistent/x.csv\"\n", &["/nonexistent/x.csv"]),
    ];
    for (name, text, needles) in cases {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        expect_bad_input(&["train", p.to_str().unwrap()], needles);
    }
    expect_bad_input(&["train", "/nonexistent/experiment.toml"], &["/nonexistent/experiment.toml"]);
    let ok = dir.join("ok.toml");
    std::fs::write(&ok, "[train]\nepochs = 1\n").unwrap();
    expect_bad_input(
        &["train", ok.to_str().unwrap(), "--save", "/nonexistent/dir/m.safetensors"],
        &["--save", "/nonexistent/dir"],
    );
    let huge = dir.join("huge.toml");
    std::fs::write(&huge, "[model]\nhidden = [100, 10000000000]\n").unwrap();
    expect_bad_input(&["train", huge.to_str().unwrap()], &["model.hidden[1]"]);
    let all_val = dir.join("all_val.toml");
    std::fs::write(&all_val, "[data]\nval_fraction = 0.9999\n").unwrap();
    expect_bad_input(&["train", all_val.to_str().unwrap()], &["data.val_fraction"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_experiment_file_that_sets_nothing_is_refused_by_every_command() {
    let dir = scratch("emptyexp");
    let empty = dir.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let comments = dir.join("comments.toml");
    std::fs::write(&comments, "# nothing here yet\n\n").unwrap();
    let (e, c) = (empty.to_str().unwrap(), comments.to_str().unwrap());
    let ckpt = "/nonexistent/m.safetensors";
    for args in [
        vec!["train", e],
        vec!["doctor", c],
        vec!["gradcheck", e],
        vec!["inspect", c, "--weights", ckpt],
        vec!["eval", e, "--checkpoint", ckpt],
        // The test harness gives the child a closed (null) stdin: `leaky train /dev/stdin < /dev/null`.
        vec!["train", "/dev/stdin"],
    ] {
        let file = args[1];
        expect_bad_input(&args, &[&format!("{file} is empty"), "docs/experiment.md"]);
    }
    // A section header alone is a deliberate "all defaults": not refused (gradcheck is quick).
    let section = dir.join("section.toml");
    std::fs::write(&section, "[model]\n").unwrap();
    let o = leaky(&["gradcheck", section.to_str().unwrap(), "--examples", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_data_files_exit_2_and_name_the_file() {
    let dir = scratch("data");
    let csv = dir.join("ragged.csv");
    std::fs::write(&csv, "1,2,3,0\n4,5,1\n").unwrap();
    let nan = dir.join("nan.csv");
    std::fs::write(&nan, "1,2,0\nnan,5,1\n").unwrap();
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, b"this is not an array file at all").unwrap();
    let empty = dir.join("empty.csv");
    std::fs::write(&empty, b"").unwrap();
    let j = junk.display();
    let specs = [
        (format!("csv:{}", csv.display()), "ragged.csv"),
        (format!("csv:{}", nan.display()), "nan.csv"),
        (format!("csv:{}", empty.display()), "empty.csv"),
        (format!("npy:{j},{j}"), "junk.bin"),
        (format!("idx:{j},{j}"), "junk.bin"),
    ];
    for (spec, needle) in specs {
        let exp = dir.join("e.toml");
        std::fs::write(&exp, format!("[data]\ndataset = \"{spec}\"\n")).unwrap();
        expect_bad_input(&["train", exp.to_str().unwrap()], &[needle]);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn csv_paths_are_relative_to_the_experiment_file() {
    let dir = scratch("relpath");
    let mut rows = String::new();
    for i in 0..60 {
        let c = i % 3;
        rows.push_str(&format!("{},{},{}\n", c as f64 * 3.0 + (i as f64 * 0.37).sin(), (i as f64 * 0.91).cos(), c));
    }
    std::fs::write(dir.join("points.csv"), rows).unwrap();
    let exp = dir.join("e.toml");
    std::fs::write(&exp, "[data]\ndataset = \"csv:points.csv\"\n[model]\nhidden = [8]\n[train]\nepochs = 2\n").unwrap();
    let o = leaky(&["train", exp.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gradcheck_passes_and_writes_json() {
    let dir = scratch("gradcheck");
    let json = dir.join("g.json");
    let o = leaky(&["gradcheck", "--json", json.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for layer in ["affine", "relu", "sigmoid", "tanh", "softmax_loss", "huber_loss", "clipped_mse_loss", "gather"] {
        assert!(out.contains(layer), "{layer} missing from the table:\n{out}");
    }
    let doc = read_json(&json);
    let checks = doc["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["report"]["max_rel_error"].as_f64().unwrap() <= 1e-7));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_reads_well() {
    let o = leaky(&["--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    for s in ["train", "gradcheck", "Exit status"] {
        assert!(out.contains(s), "{out}");
    }
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    // `leaky gradcheck | head -1` style: the reader goes away before the first line.
    let mut child = common::leaky_cmd()
        .arg("gradcheck")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}

#[test]
fn train_prints_the_run_header_of_each_trainer() {
    let dir = scratch("header");
    // `leaky train` on an experiment written to `name`: its path and its standard output.
    let train = |name: &str, toml: &str| {
        let file = dir.join(name);
        std::fs::write(&file, toml).unwrap();
        let o = leaky(&["train", file.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        (file, String::from_utf8_lossy(&o.stdout).into_owned())
    };
    // MLP: the split, features and classes; the parameter count (2*8+8 + 8*3+3 = 51); the
    // training settings, without clip_grad_norm.
    let (mlp, out) = train(
        "mlp.toml",
        "[data]\ndataset = \"spiral\"\nval_fraction = 0.5\n[model]\nhidden = [8]\n[train]\nepochs = 1\nbatch_size = 32\noptimizer = \"sgd\"\nlr = 0.5\nclip_grad_norm = 2.0\n",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("{}: spiral (150 train / 150 val examples of shape (2,), 3 classes)", mlp.display()));
    assert_eq!(lines[1], "model (51 parameters):");
    let training: Vec<&&str> = lines.iter().filter(|l| l.starts_with("training:")).collect();
    assert_eq!(training, [&"training: 1 epochs, batch 32, sgd lr 0.5, loss softmax"], "{out}");
    // Recurrent: sequences and their length, the model on one line, Whh at init, and the
    // training settings with clip_grad_norm.
    let (rnn, out) = train(
        "rnn.toml",
        "[data]\ndataset = \"adding\"\nseq_len = 10\n[model]\nkind = \"rnn\"\nhidden = [4]\n[train]\nloss = \"mse\"\nepochs = 1\nbatch_size = 16\noptimizer = \"sgd\"\nlr = 0.01\nclip_grad_norm = 1.0\n",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with(&format!("{}: adding (", rnn.display())), "{out}");
    assert!(lines[0].ends_with(" val sequences of 10 steps)"), "{out}");
    assert!(lines[1].starts_with("model (") && lines[1].contains("parameters): "), "{out}");
    assert!(lines[2].starts_with("Whh at init: spectral radius "), "{out}");
    assert_eq!(lines[3], "training: 1 epochs, batch 16, sgd lr 0.01, loss mse, clip_grad_norm 1", "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn without_a_validation_split_no_metric_is_called_validation() {
    let dir = scratch("noval");
    let exp = dir.join("noval.toml");
    std::fs::write(
        &exp,
        "[data]\ndataset = \"spiral\"\nval_fraction = 0.0\n[model]\nhidden = [8]\n[train]\nepochs = 2\n",
    )
    .unwrap();
    let json = dir.join("run.json");
    let o = leaky(&["train", exp.to_str().unwrap(), "--quiet", "--json", json.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("best train acc (no validation split)"), "{out}");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let m = &doc["metrics"];
    assert!(m["best_val_acc"].is_null() && m["best_val_loss"].is_null(), "{m}");
    assert!(m["best_train_acc"].as_f64().is_some_and(|a| a > 0.0), "{m}");
    assert_eq!(m["no_validation_split"], true);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn log_streams_one_json_line_per_event() {
    let dir = scratch("log");
    let log = dir.join("run.jsonl");
    let json = dir.join("run.json");
    let o = leaky(&[
        "doctor",
        "examples/sick/relu-dead-bias.toml",
        "--quiet",
        "--log",
        log.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let doc = read_json(&json);
    let of = |e: &str| lines.iter().filter(|v| v["event"] == e).collect::<Vec<_>>();
    let history = doc["metrics"]["history"].as_array().unwrap();
    assert_eq!(of("epoch").len(), history.len());
    assert_eq!(of("step").len() as u64, doc["metrics"]["steps"].as_u64().unwrap());
    // Epochs from 1, as the terminal counts; the values are the history's.
    assert_eq!(of("epoch")[0]["epoch"], 1);
    assert_eq!(of("epoch").last().unwrap()["val_acc"], history.last().unwrap()["val_acc"]);
    // Each finding seen while training appears once, and is one the final diagnosis has.
    let codes: Vec<&str> = doc["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap()).collect();
    assert!(!of("finding").is_empty());
    for f in of("finding") {
        assert!(codes.contains(&f["finding"]["code"].as_str().unwrap()), "{f}");
    }
    // A log that cannot be written is a failed run (exit 1) that says so; a missing
    // directory is bad input before any work.
    if std::path::Path::new("/dev/full").exists() {
        let o = leaky(&["train", "examples/digits.toml", "--quiet", "--log", "/dev/full"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("--log /dev/full"), "{}", stderr(&o));
    }
    let missing = dir.join("missing/run.jsonl");
    expect_bad_input(&["train", "examples/digits.toml", "--log", missing.to_str().unwrap()], &["--log"]);
    std::fs::remove_dir_all(&dir).ok();
}
