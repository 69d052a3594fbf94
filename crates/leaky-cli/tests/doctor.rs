//! Every experiment in examples/sick/ must name the root cause its `# expect:` line names
//! (code, and place where it gives one) first; no experiment in examples/healthy/ may yield
//! an error or a warning. Each is a real, short training run with the probes on.

mod common;

use common::{doctor_treat_json, expect_bad_input, leaky, leaky_cmd, root, scratch};
use std::path::{Path, PathBuf};

fn doctor_json(file: &Path, json: &Path) -> (Option<i32>, serde_json::Value, String) {
    let o = leaky(&["doctor", file.to_str().unwrap(), "--json", json.to_str().unwrap(), "--quiet"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let doc = std::fs::read_to_string(json).map(|t| serde_json::from_str(&t).unwrap()).unwrap_or_default();
    (o.status.code(), doc, err)
}

fn experiments(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("examples").join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_sick_experiment_yields_its_expected_finding() {
    let sick = experiments("sick");
    assert!(sick.len() >= 12, "{} sick experiments", sick.len());
    let dir = scratch("sick");
    let mut codes = std::collections::BTreeSet::new();
    for file in sick {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text.lines().find_map(|l| l.strip_prefix("# expect: ")).expect("an # expect: line").trim();
        let (code, place) = match expect.split_once(" in ") {
            Some((c, p)) => (c.trim(), Some(p.trim())),
            None => (expect, None),
        };
        let json = dir.join("f.json");
        let (status, doc, err) = doctor_json(&file, &json);
        let findings = doc["findings"].as_array().cloned().unwrap_or_default();
        // The first finding listed is the expected one, a root cause (no caused_by), and an
        // error or a warning.
        let hit = findings.first().is_some_and(|f| {
            f["code"] == code
                && place.is_none_or(|p| f["where"].as_str() == Some(p))
                && (f["severity"] == "error" || f["severity"] == "warning")
                && f["caused_by"].is_null()
        });
        let summary: Vec<String> = findings
            .iter()
            .map(|f| {
                format!("{} {} {} in {} (cause {})", f["id"], f["severity"], f["code"], f["where"], f["caused_by"])
            })
            .collect();
        assert!(hit, "{}: expected {expect} first; got {summary:?}; stderr {err}", file.display());
        // Ids in listing order; every consequence listed after its cause.
        for (k, f) in findings.iter().enumerate() {
            assert_eq!(f["id"], format!("F{}", k + 1), "{}", file.display());
            if let Some(c) = f["caused_by"].as_str() {
                let at = findings.iter().position(|g| g["id"] == c).expect("the cause is listed");
                assert!(at < k, "{}: {} listed before its cause {c}", file.display(), f["id"]);
            }
        }
        let worst_error = findings.iter().any(|f| f["severity"] == "error");
        assert_eq!(
            status,
            Some(if worst_error { 1 } else { 0 }),
            "{}: exit status with --fail-on error",
            file.display()
        );
        codes.insert(code.to_string());
    }
    println!("codes covered: {codes:?}");
    assert!(codes.len() >= 8, "{codes:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn no_healthy_experiment_yields_an_error_or_warning() {
    let healthy = experiments("healthy");
    assert!(healthy.len() >= 6);
    let dir = scratch("healthy");
    for file in healthy {
        let json = dir.join("h.json");
        let (status, doc, err) = doctor_json(&file, &json);
        assert_eq!(status, Some(0), "{}: {err}", file.display());
        assert_eq!(doc["version"], 2);
        for key in ["run", "findings", "metrics"] {
            assert!(doc.get(key).is_some(), "{key} missing");
        }
        let bad: Vec<_> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == "error" || f["severity"] == "warning")
            .collect();
        assert!(bad.is_empty(), "{}: {bad:?}", file.display());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn treat_applies_the_root_fix_and_judges_by_the_metrics() {
    let doc = doctor_treat_json("examples/sick/sigmoid-saturated.toml");
    let t = &doc["treatment"];
    // The root cause (saturation in layer 1) has Xavier init as its first settable fix.
    assert_eq!(t["applied"]["model.init"], "xavier", "{t}");
    assert!(t["resolved"].as_array().unwrap().iter().any(|c| c == "saturation"), "{t}");
    // The verdict follows the metrics, whatever happened to the findings: recompute the
    // rule (the first metric that moved by more than its tolerance decides; losses 2%
    // relative, accuracy 1 point) from the before/after numbers in the JSON.
    let (b, a) = (&t["before"], &t["after"]);
    let moved = |key: &str, tol: f64, relative: bool| -> Option<bool> {
        let (x, y) = (b[key].as_f64()?, a[key].as_f64()?);
        let tol = if relative { tol * x.abs() } else { tol };
        if (y - x).abs() <= tol {
            None
        } else {
            Some(if key == "best_val_acc" { y > x } else { y < x })
        }
    };
    let expected = moved("best_val_loss", 0.02, true)
        .or_else(|| moved("best_val_acc", 0.01, false))
        .or_else(|| moved("final_train_loss", 0.02, true))
        .map(|better| if better { "better" } else { "worse" })
        .unwrap_or("unchanged");
    assert_eq!(t["verdict"], expected, "{t}");
}

#[test]
fn doctor_prints_a_header_unless_quiet_and_names_the_file_on_bad_data() {
    let dir = scratch("header");
    let exp = dir.join("tiny.toml");
    std::fs::write(&exp, "[data]\ndataset = \"spiral\"\n[model]\nhidden = [8]\n[train]\nepochs = 1\n").unwrap();
    let run = |extra: &[&str]| {
        leaky_cmd().args(["doctor", exp.to_str().unwrap(), "--fail-on", "never"]).args(extra).output().unwrap()
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    // The same header as `leaky train`: data, the numbered model listing (the layer numbering
    // of every finding), the training settings.
    assert_eq!(
        lines[0],
        format!("{}: spiral (240 train / 60 val examples of shape (2,), 3 classes)", exp.display()),
        "{out}"
    );
    assert_eq!(&lines[1..5], ["model (51 parameters):", " 0  affine 2->8", " 1  relu", " 2  affine 8->3"], "{out}");
    assert!(lines[6].starts_with("epoch   1/1  loss "), "{out}");
    let o = run(&["--quiet"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("spiral (") && !out.contains("epoch "), "{out}");
    assert!(out.contains("Diagnosis"), "{out}");
    std::fs::write(&exp, "[data]\ndataset = \"csv:/nonexistent/x.csv\"\n").unwrap();
    expect_bad_input(&["doctor", exp.to_str().unwrap()], &[&format!("{}: ", exp.display()), "/nonexistent/x.csv"]);
    std::fs::remove_dir_all(&dir).ok();
}
