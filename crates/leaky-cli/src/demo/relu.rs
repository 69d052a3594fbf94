//! `leaky demo relu`: ReLU units killed by a too-large learning rate or a negative bias.
//!
//! A ReLU's backward pass lets the gradient through only where its input was positive. One
//! huge update can push a unit's weights so that its pre-activation is negative for every
//! example; from then on its gradient is exactly zero on every example and it never recovers.
//! The doctor counts dead units over a full pass of the training set (not one batch).

use super::*;
use leaky::doctor::Code;

/// Broken: plain SGD with a learning rate 4x too large.
pub const BROKEN_LR: &str = include_str!("../../../../examples/demo/relu-broken.toml");

/// Fixed: a sane learning rate with He init and zero biases.
pub const FIXED: &str = include_str!("../../../../examples/demo/relu-fixed.toml");

/// Leaky ReLU at the broken learning rate: the negative side keeps a slope of 0.01.
pub const LEAKY: &str = include_str!("../../../../examples/demo/relu-leaky.toml");

fn dead_metrics(run: &MlpRun) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("dead_fraction_at_init".into(), json!(dead_fraction(&run.dead_at_init)));
    m.insert("dead_fraction_after".into(), json!(dead_fraction(&run.doctor.stats.dead_units)));
    let per_layer: Vec<Value> = run
        .doctor
        .stats
        .dead_units
        .iter()
        .map(|p| {
            json!({"layer": p.layer, "kind": p.kind, "units": p.fire_counts.len(),
                   "dead": p.fire_counts.iter().filter(|&&c| c == 0).count()})
        })
        .collect();
    m.insert("dead_per_layer_after".into(), Value::Array(per_layer));
    m
}

/// "layer 1: 0 -> 0 of 100, layer 3: 0 -> 77 of 100": the counts of the doctor's full passes
/// (the numbers a `dead_relu` finding reports as `dead_units` and `units`), before and after.
fn per_layer_dead(before: &[DeadUnitPass], after: &[DeadUnitPass]) -> String {
    let dead = |p: &DeadUnitPass| p.fire_counts.iter().filter(|&&c| c == 0).count();
    after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.layer == a.layer).map_or("?".to_string(), |b| dead(b).to_string());
            format!("layer {}: {b} -> {} of {}", a.layer, dead(a), a.fire_counts.len())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Run the demo.
pub fn run(opts: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let say = |s: &str| {
        if !opts.quiet {
            println!("  training {s}");
        }
    };
    let specs: [(&str, bool, &str, &str); 3] = [
        ("broken", true, "ReLU, He init, SGD lr 2", BROKEN_LR),
        ("fixed", false, "ReLU, He init, SGD lr 0.5", FIXED),
        ("leaky", false, "leaky ReLU (slope 0.01), He init, SGD lr 2", LEAKY),
    ];
    let mut runs = Vec::new();
    for (name, broken, desc, toml) in specs {
        say(&format!("{name}: {desc}"));
        runs.push((name, broken, desc, run_mlp(toml, opts)?));
    }
    let mut variants = Vec::new();
    let mut rows = Vec::new();
    for (name, broken, desc, run) in &runs {
        let mut m = dead_metrics(run);
        if *broken {
            m.insert("expected_code".into(), json!("dead_relu"));
        }
        let dead = if *name == "leaky" {
            "n/a (never 0)".to_string()
        } else {
            per_layer_dead(&run.dead_at_init, &run.doctor.stats.dead_units)
        };
        rows.push(vec![
            format!("{name}: {desc}"),
            dead,
            pct(run.report.best_val_acc),
            if *broken { finding_label(&run.findings, Code::DeadRelu) } else { worst_label(&run.findings) },
        ]);
        variants.push(variant(name, *broken, desc, run, m));
    }
    let tbl = table("", &["variant", "dead units per ReLU layer (init -> end)", "best val acc", "doctor"], rows);

    let loss: Vec<Series> = runs.iter().map(|(n, _, _, r)| loss_series(n, &r.doctor.losses)).collect();
    let zero: Vec<Series> = runs
        .iter()
        .filter(|(n, ..)| *n != "leaky")
        .map(|(n, _, _, r)| layer_series(&r.doctor, 1, n, |s| s.zero_fraction))
        .collect();
    let dead_bars = {
        let labels: Vec<String> = runs.iter().filter(|(n, ..)| *n != "leaky").map(|(n, ..)| n.to_string()).collect();
        let pick = |f: &dyn Fn(&MlpRun) -> f64| {
            runs.iter()
                .filter(|(n, ..)| *n != "leaky")
                .enumerate()
                .map(|(i, (_, _, _, r))| (i as f64, f(r)))
                .collect::<Vec<_>>()
        };
        Chart {
            shows: vec![Code::DeadRelu],
            layer: None,
            title: "Dead ReLU units over a full pass of the training set".into(),
            x_label: "variant".into(),
            y_label: "fraction of units dead".into(),
            caption: "A unit is dead when it outputs 0 for every training example. Every unit fires on some example at init. The large learning rate kills units during training; the sane one kills none.".into(),
            kind: ChartKind::Bars {
                labels,
                groups: vec![
                    Series { name: "at init".into(), points: pick(&|r| dead_fraction(&r.dead_at_init)) },
                    Series { name: "after training".into(), points: pick(&|r| dead_fraction(&r.doctor.stats.dead_units)) },
                ],
                log_y: false,
            },
        }
    };
    let charts = vec![
        dead_bars,
        lines(
            "Layer 1: share of ReLU outputs that are exactly 0",
            "step",
            "fraction zero (sampled batch)",
            "On a batch, about half of healthy ReLU outputs are zero. A share near 1 means almost no gradient passes layer 1.",
            zero,
            false,
        )
        .about_layer(1).showing(&[Code::DeadRelu]),
        lines(
            "Training loss",
            "step",
            "softmax loss",
            "Dead units are lost capacity: they never fire again, whatever the loss says.",
            loss,
            false,
        ).showing(&[Code::DivergingLoss, Code::NonFinite, Code::NotLearning, Code::BadInitLoss]),
    ];
    let section = Section {
        title: "ReLU: dead units".into(),
        text: vec![
            "A ReLU passes gradient only where its input was positive. A too-large update can push a unit's weights so that it is negative on every example; its gradient is then exactly 0 on every example and it never fires again.".into(),
        ],
        tables: vec![tbl.clone()],
        findings: report_findings(&variants),
        charts,
    };
    Ok(DemoOutcome { name: "relu".into(), code: "dead_relu".into(), variants, table: tbl, section })
}
