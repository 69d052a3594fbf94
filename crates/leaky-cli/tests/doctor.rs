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
fn treat_applies_the_first_fix_and_reports_honestly() {
    let doc = doctor_treat_json("examples/sick/sigmoid-saturated.toml");
    let t = doc["metrics"]["treatments"].as_array().unwrap();
    let sat = t.iter().find(|t| t["finding"] == "saturation in layer 1 (sigmoid)").expect("saturation was treated");
    assert_eq!(sat["fix"], "use Xavier init (model.init = \"xavier\")");
    assert_eq!(sat["applied"], true);
    // Xavier init alone fixes the saturation of layer 1 (measured: saturated share 0.94 -> healthy).
    assert_eq!(sat["gone"], true, "{sat}");
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
    assert_eq!(lines[0], format!("{}: spiral | affine 2->8 -> relu -> affine 8->3", exp.display()), "{out}");
    assert!(lines[1].starts_with("epoch   1/1  loss "), "{out}");
    let o = run(&["--quiet"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("spiral |") && !out.contains("epoch "), "{out}");
    assert!(out.contains("Diagnosis"), "{out}");
    std::fs::write(&exp, "[data]\ndataset = \"csv:/nonexistent/x.csv\"\n").unwrap();
    expect_bad_input(&["doctor", exp.to_str().unwrap()], &[&format!("{}: ", exp.display()), "/nonexistent/x.csv"]);
    std::fs::remove_dir_all(&dir).ok();
}
