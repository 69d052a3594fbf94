//! `leaky demo batchnorm`: the post's opening picture. Batch norm staged step by step on the
//! reverse-mode tape (`leaky::graph`), drawn with forward values in black and gradients in
//! red, and checked three ways: the tape's gradients, the hand-written layer backward (both
//! variants) and numerical gradients must agree to 1e-7 in f64.

use super::*;
use crate::graph_cmd::{batchnorm_demo, TOLERANCE};

/// Run the demo: draw the graph, run the agreement checks, fail when one disagrees.
pub fn run(opts: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let path = std::env::temp_dir().join(format!("leaky-demo-batchnorm-{}.svg", std::process::id()));
    let demo = batchnorm_demo(&path)?;
    let svg = std::fs::read_to_string(&path);
    std::fs::remove_file(&path).ok();
    let svg = svg?;
    if !opts.quiet {
        println!("  staged batch norm: {} nodes on the tape", demo.nodes);
    }
    let rows: Vec<Vec<String>> = demo
        .rows()
        .into_iter()
        .map(|(what, e)| {
            vec![what.to_string(), crate::present::sci(e), if e <= TOLERANCE { "good" } else { "FAILED" }.into()]
        })
        .collect();
    let tbl = table("", &["comparison (f64)", "max rel_error", "<= 1e-7"], rows);
    let mut metrics = Map::new();
    for (what, e) in demo.rows() {
        metrics.insert(what.to_string(), json!(e));
    }
    metrics.insert("nodes".into(), json!(demo.nodes));
    metrics.insert("passed".into(), json!(demo.passed()));
    let variants = vec![Variant {
        name: "tape".into(),
        broken: false,
        description: "batch norm staged on the tape vs the hand-written layer vs numerical gradients".into(),
        findings: Vec::new(),
        metrics,
    }];
    let section = Section {
        title: "Batch norm: the computational graph".into(),
        text: vec![
            "Batch norm written as nine small ops (mean, centre, square, variance, sqrt, invert, normalise, scale, shift) and differentiated by the tape. Every record shows name | forward value (black) | gradient (red); tensors are summarised by shape and statistics.".into(),
            "Read the backward pass off the picture: xhat = xmu * ivar sends xmu the gradient dxhat * ivar and ivar the gradient dxhat * xmu. Both factors are forward values, so the forward pass must keep them: that is the layer's cache. x reaches the output along two paths (through mu, and directly into x - mu) and xmu along two (the square, and the product with ivar), so their gradients are sums over consumers.".into(),
        ],
        tables: vec![tbl.clone()],
        findings: Vec::new(),
        charts: vec![Chart {
            shows: Vec::new(),
            layer: None,
            title: "Staged batch norm on the tape".into(),
            x_label: String::new(),
            y_label: String::new(),
            caption: "Forward values in black, gradients in red (backward seeded with a random dout). Drawn by leaky's own layered layout, no Graphviz.".into(),
            kind: ChartKind::Svg { svg },
        }],
    };
    if !demo.passed() {
        print_table(&tbl);
        anyhow::bail!("the tape, the layer and the numerical gradients disagree beyond {TOLERANCE:e}");
    }
    Ok(DemoOutcome { name: "batchnorm".into(), code: String::new(), variants, table: tbl, section })
}
