//! `leaky graph`: real runs of the binary, real files, real exit codes.

mod common;

use common::{expect_bad_input, leaky, scratch, text};
use std::path::Path;

/// The number after `prefix` on the line that starts with it.
fn number_after(out: &str, prefix: &str) -> f64 {
    let line = out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no '{prefix}' in:\n{out}"));
    line[prefix.len()..].trim().parse().unwrap_or_else(|_| panic!("not a number: {line}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn expr_reproduces_micrograds_published_values_and_draws_them() {
    let dir = scratch("expr");
    let svg = dir.join("g.svg");
    let program = "a = -4; b = 2; c = a + b; d = a*b + b^3; c = c + (c + 1); c = c + (1 + c + (-a)); \
                   d = d + (d*2 + relu(b + a)); d = d + (3*d + relu(b - a)); e = c - d; f = e^2; g = f/2; g = g + 10/f";
    let o = leaky(&["graph", "expr", program, "--out", svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    // micrograd test_engine.py::test_more_ops (values from PyTorch in f64).
    assert!(close(number_after(&out, "g' = "), 24.70408163265306), "{out}");
    assert!(close(number_after(&out, "dg'/da = "), 138.83381924198252), "{out}");
    assert!(close(number_after(&out, "dg'/db = "), 645.5772594752186), "{out}");
    let doc = std::fs::read_to_string(&svg).unwrap();
    assert!(doc.starts_with("<svg") && doc.contains("grad 138.8338"), "the svg shows dg/da");

    let dot = dir.join("y.dot");
    let o = leaky(&[
        "graph",
        "expr",
        "x = -4; z = 2*x + 2 + x; q = relu(z) + z*x; h = relu(z*z); y = h + q + q*x",
        "--out",
        dot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(number_after(&out, "y = "), -20.0);
    assert_eq!(number_after(&out, "dy/dx = "), 46.0);
    assert!(std::fs::read_to_string(&dot).unwrap().starts_with("digraph"));
}

#[test]
fn bad_programs_and_paths_exit_2_naming_the_place() {
    expect_bad_input(&["graph", "expr", "x = 1; y = x + z"], &["line 1, column 16", "unknown name 'z'"]);
    expect_bad_input(&["graph", "expr", "x = 1; y = x ^ x"], &["exponent must be a number"]);
    expect_bad_input(&["graph", "batchnorm", "--out", "graph.png"], &["--out graph.png: unknown format"]);
}

#[test]
fn batchnorm_writes_the_graph_and_reports_good_agreement() {
    let dir = scratch("bn");
    let svg = dir.join("bn.svg");
    let o = leaky(&["graph", "batchnorm", "--out", svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let out = text(&o.stdout);
    let rows: Vec<&str> =
        out.lines().filter(|l| l.trim_start().starts_with("batchnorm:") || l.contains("softmax:")).collect();
    assert_eq!(rows.len(), 8, "{out}");
    for row in rows {
        let e: f64 = row.split_whitespace().rev().nth(1).unwrap().parse().unwrap();
        assert!(e <= 1e-7 && row.ends_with("good"), "{row}");
    }
    let doc = std::fs::read_to_string(&svg).unwrap();
    for stage in ["mu", "xmu", "sq", "var", "sqrtvar", "ivar", "xhat", "gx", "out", "gamma", "beta", "eps"] {
        assert!(doc.contains(&format!(">{stage}</text>")), "stage {stage} missing");
    }
    assert!(Path::new(&svg).exists());
}

#[test]
fn a_non_finite_result_is_a_failed_run_not_a_silent_nan() {
    let o = common::leaky(&["graph", "expr", "y = sqrt(-1)"]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    let err = common::stderr(&o);
    assert!(err.contains("not finite") && err.contains("sqrt"), "{err}");
    let o = common::leaky(&["graph", "expr", "x = 4; y = sqrt(x)"]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
}
