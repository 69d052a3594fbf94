//! `leaky demo sigmoid`: saturated sigmoids pass no gradient, and deep sigmoid stacks
//! starve their lower layers.
//!
//! The backward pass of a sigmoid multiplies the upstream gradient by its local gradient
//! z(1-z), which is at most 0.25 (at z = 1/2) and ~0 when z is near 0 or 1. Raw 0..16 pixels
//! into weights of std 1 put pre-activations in the tens: every unit saturates and the loss
//! stays flat. Xavier init on standardised inputs keeps z near 1/2. Even then each sigmoid
//! layer divides the gradient by about 4, so in a deep stack the first layers barely move.

use super::*;
use leaky::doctor::detectors::{depth_samples, update_ratio, DepthSample};
use leaky::doctor::Code;

/// The deep variants' names in the charts: the variant (as in the table and the findings)
/// with what it is, the same in every figure (one colour per variant).
const DEEP_NAME: &str = "deep (8 sigmoid, Xavier)";
const DEEP_RELU_NAME: &str = "deep-relu (8 ReLU, He)";

/// Broken: raw pixels (0..16) into sigmoid units with N(0, 1) weights.
pub const BROKEN: &str = include_str!("../../../../examples/demo/sigmoid-broken.toml");

/// Fixed: standardised inputs and Xavier init (std sqrt(2 / (fan_in + fan_out))).
pub const FIXED: &str = include_str!("../../../../examples/demo/sigmoid-fixed.toml");

/// Deep: eight sigmoid layers, Xavier init, standardised inputs.
pub const DEEP: &str = include_str!("../../../../examples/demo/sigmoid-deep.toml");

/// The same depth with ReLU and He init: the local gradient is 1 where a unit fires.
pub const DEEP_RELU: &str = include_str!("../../../../examples/demo/sigmoid-deep-relu.toml");

/// The step the table reads a statistic at: the step of `run`'s finding `code` (the sample
/// the doctor reports as evidence), else step 0.
fn evidence_step(run: &MlpRun, code: Code) -> usize {
    run.findings.iter().find(|f| f.code == code).and_then(|f| f.step).unwrap_or(0)
}

/// The doctor's gradient-through-depth sample at `step` ([`depth_samples`], what
/// `vanishing_gradient` judges): per-layer gradient RMS, lowest layer first.
fn depth_at(run: &MlpRun, step: usize) -> Option<DepthSample> {
    depth_samples(&run.doctor.stats.layers).into_iter().find(|s| s.step == step)
}

/// Layer `index`'s saturated fraction and mean local gradient at `step`, the numbers the
/// `saturation` finding reports for its sample.
fn saturation_at(run: &MlpRun, index: usize, step: usize) -> (f64, f64) {
    let rec = run.doctor.stats.layers.iter().find(|s| s.index == index && s.step == step);
    let sat = rec.and_then(|s| s.saturated_fraction).unwrap_or(f64::NAN);
    let local = rec.and_then(|s| s.mean_local_grad).unwrap_or(f64::NAN);
    (sat, local)
}

/// The first affine layer's median update ratio over the sampled steps, as `update_ratio`
/// judges it.
fn first_layer_update_ratio(run: &MlpRun) -> f64 {
    update_ratio::median_ratio(&run.doctor.stats.params, 0, "W").unwrap_or(f64::NAN)
}

/// Run the demo.
pub fn run(opts: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let say = |s: &str| {
        if !opts.quiet {
            println!("  training {s}");
        }
    };
    say("broken: raw inputs, N(0, 1) init");
    let broken = run_mlp(BROKEN, opts)?;
    say("fixed: standardised inputs, Xavier init");
    let fixed = run_mlp(FIXED, opts)?;
    say("deep: 8 sigmoid layers, Xavier init");
    let deep = run_mlp(DEEP, opts)?;
    say("deep, fixed: 8 ReLU layers, He init");
    let deep_relu = run_mlp(DEEP_RELU, opts)?;

    // Every number in the table is the statistic the doctor judges, read at the step its
    // finding reports (or step 0 where there is none), and at the same step for the pair's
    // healthy run, so the table and the findings agree to the digit.
    let sat_step = evidence_step(&broken, Code::Saturation);
    let (sat_b, local_b) = saturation_at(&broken, 1, sat_step);
    let (sat_f, local_f) = saturation_at(&fixed, 1, sat_step);
    let depth_step = evidence_step(&deep, Code::VanishingGradient);
    let (deep_depth, relu_depth) = (depth_at(&deep, depth_step), depth_at(&deep_relu, depth_step));
    let factor = |d: &Option<DepthSample>| d.as_ref().map_or(f64::NAN, DepthSample::per_layer_factor);
    let rms = |d: &Option<DepthSample>| d.as_ref().map(|d| d.layers.clone()).unwrap_or_default();
    let (deep_factor, relu_factor) = (factor(&deep_depth), factor(&relu_depth));
    let (deep_rms, relu_rms) = (rms(&deep_depth), rms(&relu_depth));
    let mut variants = Vec::new();
    let (upd_b, upd_f) = (first_layer_update_ratio(&broken), first_layer_update_ratio(&fixed));
    let sat_metrics = |sat: f64, local: f64, upd: f64| {
        let mut m = Map::new();
        m.insert("layer1_step".into(), json!(sat_step));
        m.insert("layer0_median_update_ratio".into(), json!(upd));
        m.insert("layer1_saturated_fraction".into(), json!(sat));
        m.insert("layer1_mean_local_grad".into(), json!(local));
        m
    };
    let mut m = sat_metrics(sat_b, local_b, upd_b);
    m.insert("expected_code".into(), json!("saturation"));
    variants.push(variant("broken", true, "raw 0..16 inputs, N(0, 1) init", &broken, m));
    variants.push(variant(
        "fixed",
        false,
        "standardised inputs, Xavier init",
        &fixed,
        sat_metrics(sat_f, local_f, upd_f),
    ));
    let depth_metrics = |layers: &[(usize, String, f64)], factor: f64, broken: bool| {
        let mut m = Map::new();
        m.insert("depth_step".into(), json!(depth_step));
        m.insert("depth_layer_indices".into(), json!(layers.iter().map(|l| l.0).collect::<Vec<_>>()));
        m.insert("depth_grad_rms_by_layer".into(), json!(layers.iter().map(|l| l.2).collect::<Vec<_>>()));
        m.insert("gradient_factor_per_layer".into(), json!(factor));
        if broken {
            m.insert("expected_code".into(), json!("vanishing_gradient"));
        }
        m
    };
    variants.push(variant(
        "deep",
        true,
        "8 sigmoid layers, Xavier init",
        &deep,
        depth_metrics(&deep_rms, deep_factor, true),
    ));
    variants.push(variant(
        "deep-relu",
        false,
        "8 ReLU layers, He init",
        &deep_relu,
        depth_metrics(&relu_rms, relu_factor, false),
    ));

    // One table row: the saturation columns (layer-1 saturated fraction, mean z(1-z),
    // layer-0 update ratio) for the shallow pair, the shrink column for the deep pair; the
    // doctor column names the demo's finding (`about`) on a broken variant, the worst
    // finding on a fixed one.
    let row = |label: &str, run: &MlpRun, sat: Option<(f64, f64, f64)>, shrink: Option<f64>, about: Option<Code>| {
        let mut r = vec![label.to_string(), pct(run.report.best_val_acc), num(run.report.best_val_loss)];
        match sat {
            Some((sat, local, upd)) => r.extend([pct(sat), num(local), num(upd)]),
            None => r.extend([String::new(), String::new(), String::new()]),
        }
        r.push(shrink.map(|s| format!("{s:.2}")).unwrap_or_default());
        r.push(match about {
            Some(code) => finding_label(&run.findings, code),
            None => worst_label(&run.findings),
        });
        r
    };
    let sat_head = format!("layer-1 saturated (step {sat_step})");
    let local_head = format!("mean z(1-z) (step {sat_step}, max 0.25)");
    let factor_head = format!("grad factor per layer (step {depth_step})");
    let tbl = table(
        "",
        &[
            "variant",
            "best val acc",
            "best val loss",
            &sat_head,
            &local_head,
            "layer-0 update ratio (median)",
            &factor_head,
            "doctor",
        ],
        vec![
            row(
                "broken: raw inputs, N(0,1) init",
                &broken,
                Some((sat_b, local_b, upd_b)),
                None,
                Some(Code::Saturation),
            ),
            row("fixed: standardised, Xavier", &fixed, Some((sat_f, local_f, upd_f)), None, None),
            row("deep: 8 sigmoid layers", &deep, None, Some(deep_factor), Some(Code::VanishingGradient)),
            row("deep, fixed: 8 ReLU, He", &deep_relu, None, Some(relu_factor), None),
        ],
    );

    let mut charts = vec![lines(
        "Training loss: saturated vs healthy sigmoids",
        "step",
        "softmax loss",
        &format!(
            "The broken net starts at {:.1} instead of ln 10 = 2.30 (huge, confidently wrong scores) and falls as the output layer learns to read the saturated units; its layer 1 stays {} saturated (figure below). Best val loss: broken {:.3}, fixed {:.3}.",
            broken.doctor.losses.first().copied().unwrap_or(f64::NAN),
            pct(sat_b),
            broken.report.best_val_loss,
            fixed.report.best_val_loss
        ),
        vec![loss_series("broken", &broken.doctor.losses), loss_series("fixed", &fixed.doctor.losses)],
        false,
    ).showing(&[Code::DivergingLoss, Code::NonFinite, Code::NotLearning, Code::BadInitLoss])];
    if let (Some((edges, hb)), Some((_, hf))) = (last_histogram(&broken.doctor, 1), last_histogram(&fixed.doctor, 1)) {
        charts.push(Chart {
            shows: vec![Code::Saturation],
            layer: Some(1),
            title: "Layer 1 sigmoid outputs (last sampled step)".into(),
            x_label: "activation z".into(),
            y_label: "fraction of activations".into(),
            caption: "Broken: the mass sits at 0 and 1, where z(1-z) is ~0. Fixed: spread around 1/2, where the local gradient is near its maximum 0.25.".into(),
            kind: ChartKind::Histograms {
                edges,
                series: vec![
                    crate::report::HistSeries { name: "broken".into(), counts: hb },
                    crate::report::HistSeries { name: "fixed".into(), counts: hf },
                ],
            },
        });
    }
    charts.push(lines(
        "Layer 1 saturated fraction over training",
        "step",
        "fraction saturated",
        "Share of layer-1 sigmoid outputs below 0.01 or above 0.99 (the doctor's saturation band, where z(1-z) < 0.0099), at each sampled step.",
        vec![
            layer_series(&broken.doctor, 1, "broken", |s| s.saturated_fraction),
            layer_series(&fixed.doctor, 1, "fixed", |s| s.saturated_fraction),
        ],
        false,
    )
    .showing(&[Code::Saturation])
    .about_layer(1));
    let labels: Vec<String> = deep_rms.iter().map(|(i, kind, _)| format!("{i} {}", short(kind))).collect();
    let bars = |name: &str, layers: &[(usize, String, f64)]| Series {
        name: name.into(),
        points: layers.iter().enumerate().map(|(k, l)| (k as f64, l.2)).collect(),
    };
    charts.push(Chart {
        shows: vec![Code::VanishingGradient, Code::ExplodingGradient],
        layer: None,
        title: format!("Gradient reaching each layer at step {depth_step} (deep nets)"),
        x_label: "layer (input side first)".into(),
        y_label: "RMS of dL/dx into the layer".into(),
        caption: format!(
            "Each affine layer multiplies the gradient by W^T and each sigmoid by z(1-z) <= 0.25: averaged over the {} layers it is multiplied by {:.2} per layer on its way to the input (the doctor's per_layer_factor). With ReLU and He init the factor is {:.2}.",
            deep_rms.len(),
            deep_factor,
            relu_factor
        ),
        kind: ChartKind::Bars {
            labels,
            groups: vec![bars(DEEP_NAME, &deep_rms), bars(DEEP_RELU_NAME, &relu_rms)],
            log_y: true,
        },
    });
    charts.push(
        lines(
            "Training loss: deep sigmoid vs deep ReLU",
            "step",
            "softmax loss",
            "The deep sigmoid stack learns slowly: its first layers get a tiny share of the gradient.",
            vec![loss_series(DEEP_NAME, &deep.doctor.losses), loss_series(DEEP_RELU_NAME, &deep_relu.doctor.losses)],
            false,
        )
        .showing(&[Code::DivergingLoss, Code::NonFinite, Code::NotLearning, Code::BadInitLoss]),
    );
    let section = Section {
        title: "Sigmoid: saturation and depth".into(),
        text: vec![
            "A sigmoid's backward pass multiplies the upstream gradient by z(1-z): at most 0.25, and ~0 when z is near 0 or 1. Raw pixels (0..16) into N(0, 1) weights put pre-activations in the tens, so every unit saturates and almost no gradient flows.".into(),
            "Even with a good init, each sigmoid layer divides the gradient by about 4, so a deep stack starves its first layers. The table reads each statistic as the doctor does, at the step its finding reports.".into(),
        ],
        tables: vec![tbl.clone()],
        findings: report_findings(&variants),
        charts,
    };
    Ok(DemoOutcome { name: "sigmoid".into(), code: "saturation".into(), variants, table: tbl, section })
}

/// A short name for a layer kind in a chart label.
fn short(kind: &str) -> &str {
    match kind {
        "affine" => "aff",
        "sigmoid" => "sig",
        "softmax" => "smax",
        k => k,
    }
}
