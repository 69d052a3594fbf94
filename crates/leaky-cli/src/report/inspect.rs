//! `leaky inspect ... --report DIR`: the report of one inspection, built from the
//! [`Inspection`] (its findings and what the doctor recorded on the checkpoint) and rendered
//! by the same page and finding code as `leaky doctor --report`.
//!
//! The checkpoint has no history, so nothing here is drawn over training steps: the tables
//! and charts are per layer (dead units over every example, saturation and the gradient
//! reaching each layer over the probe batches, batch norm statistics per feature), per time
//! step for a recurrent layer, and, with `--before`, per weight tensor.

use super::html::number;
use super::{Chart, ChartKind, Report, Section, Series, Table};
use leaky::doctor::stats::{BatchNormStats, LayerStats, SIGMOID_SATURATION_MARGIN, TANH_SATURATION_LEVEL};
use leaky::doctor::{Code, Finding, Severity};
use leaky::experiment::inspect::{Inspection, PROBE_BATCHES};
use std::collections::BTreeMap;

/// What one `leaky inspect` run knows at the end.
pub struct InspectRun<'a> {
    /// The architecture file as given.
    pub file: &'a str,
    /// The checkpoint as given.
    pub weights: &'a str,
    /// `--before`, as given.
    pub before: Option<String>,
    /// Where the data came from, in words.
    pub data: String,
    /// The result.
    pub found: &'a Inspection,
}

/// The report of one inspection: the checkpoint and data, the findings, the layers, the charts.
pub fn report(run: &InspectRun) -> Report {
    let f = run.found;
    let count = |s: Severity| f.findings.iter().filter(|x| x.severity == s).count();
    let intro = vec![
        format!(
            "leaky inspect loaded the checkpoint {} into the model of {} and diagnosed it over every one of its {} examples: {} error(s), {} warning(s) and {} info finding(s).",
            run.weights,
            run.file,
            f.examples,
            count(Severity::Error),
            count(Severity::Warning),
            count(Severity::Info)
        ),
        {
            let probes = PROBE_BATCHES.min(f.examples.div_ceil(leaky::experiment::inspect::BATCH)).max(1);
            format!(
                "Loss, accuracy, dead units and batch norm statistics come from eval-mode passes over every example; saturation and the gradients from train-mode forward and backward passes on {} spread over the data (the probe batches, of up to {} examples). The checkpoint has no training history, so every chart is per layer (or per time step), not over training steps.",
                if probes == 1 { "one batch".to_string() } else { format!("{probes} batches") },
                leaky::experiment::inspect::BATCH
            )
        },
    ];
    let mut sections = vec![summary_section(run), findings_section(&f.findings)];
    sections.extend(layers_section(f));
    sections.extend(batchnorm_section(&f.doctor.stats.batchnorm));
    sections.extend(recurrent_section(f));
    sections.extend(before_section(f));
    // The file name alone: a long path does not fit a heading (the table gives it in full).
    let name = std::path::Path::new(run.weights).file_name().map(|n| n.to_string_lossy().into_owned());
    Report { title: format!("leaky inspect: {}", name.as_deref().unwrap_or(run.weights)), intro, sections }
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", 100.0 * x)
    } else {
        "n/a".into()
    }
}

fn summary_section(run: &InspectRun) -> Section {
    let f = run.found;
    let mut rows = vec![
        vec!["architecture".to_string(), run.file.to_string()],
        vec!["checkpoint".into(), format!("{} ({} tensors, {} parameters)", run.weights, f.tensors, f.params)],
    ];
    if let Some(b) = &run.before {
        rows.push(vec!["earlier checkpoint (--before)".into(), b.clone()]);
    }
    rows.push(vec!["data".into(), run.data.clone()]);
    rows.push(vec!["inputs".into(), f.input.clone()]);
    rows.push(vec!["examples".into(), f.examples.to_string()]);
    rows.push(vec!["loss (mean over every example, eval mode)".into(), number(f.loss)]);
    if let Some(a) = f.accuracy {
        rows.push(vec!["accuracy".into(), pct(a)]);
    }
    Section {
        title: "Checkpoint and data".into(),
        tables: vec![Table { caption: String::new(), header: vec!["measure".into(), "value".into()], rows }],
        ..Default::default()
    }
}

fn findings_section(findings: &[Finding]) -> Section {
    let text = if findings.is_empty() {
        vec!["No findings: every measurement is within its healthy range.".into()]
    } else {
        vec!["Root causes first, worst first; a consequence follows its cause, indented, and its advice is to fix the cause. Each finding names where it was seen, the numbers that prove it, why the backward pass (or eval mode) leaks there, and ranked fixes. The fixes are advice for the run that trained the model, not experiment settings.".into()]
    };
    Section {
        title: "Findings".into(),
        text,
        findings: findings.iter().map(|f| (String::new(), f.clone())).collect(),
        ..Default::default()
    }
}

/// Per layer index, its records over the probe batches.
fn by_layer(layers: &[LayerStats]) -> BTreeMap<usize, Vec<&LayerStats>> {
    let mut m: BTreeMap<usize, Vec<&LayerStats>> = BTreeMap::new();
    for l in layers {
        m.entry(l.index).or_default().push(l);
    }
    m
}

/// The median of the finite values, if any.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) })
}

/// The ids of the findings about layer `i`.
fn ids_at(findings: &[Finding], i: usize) -> String {
    findings.iter().filter(|f| f.layer == Some(i)).map(|f| f.id.clone()).collect::<Vec<_>>().join(", ")
}

/// A table from columns, leaving out the columns with nothing in them (but the first).
fn columns(caption: &str, cols: Vec<(&str, Vec<String>)>) -> Table {
    let keep: Vec<&(&str, Vec<String>)> = cols
        .iter()
        .enumerate()
        .filter(|(k, (_, v))| *k == 0 || v.iter().any(|c| !c.is_empty()))
        .map(|(_, c)| c)
        .collect();
    let n = keep.first().map(|c| c.1.len()).unwrap_or(0);
    Table {
        caption: caption.into(),
        header: keep.iter().map(|c| c.0.to_string()).collect(),
        rows: (0..n).map(|r| keep.iter().map(|c| c.1[r].clone()).collect()).collect(),
    }
}

fn layers_section(f: &Inspection) -> Option<Section> {
    let stats = &f.doctor.stats;
    if f.layers.is_empty() || !stats.bptt.is_empty() {
        return None; // recurrent models: see recurrent_section
    }
    let recs = by_layer(&stats.layers);
    let dead: BTreeMap<usize, _> = stats.dead_units.iter().map(|p| (p.layer, p)).collect();
    let dead0: BTreeMap<usize, _> = f.dead_before.iter().map(|p| (p.layer, p)).collect();
    let bn: BTreeMap<usize, &BatchNormStats> = stats.batchnorm.iter().map(|b| (b.layer, b)).collect();
    let n = f.layers.len();
    let grad = |i: usize| recs.get(&i).and_then(|r| median(r.iter().filter_map(|l| l.grad_in_rms()).collect()));
    let col = |name: &'static str, cell: &dyn Fn(usize) -> String| (name, (0..n).map(cell).collect::<Vec<_>>());
    let cols = vec![
        col("layer", &|i| format!("{i} {}", f.layers[i])),
        col("dead over every example", &|i| {
            dead.get(&i)
                .map(|p| {
                    let what = if p.per_channel { "channels" } else { "units" };
                    format!("{} of {} {what} ({})", p.dead_units().len(), p.fire_counts.len(), pct(p.dead_fraction()))
                })
                .unwrap_or_default()
        }),
        col("saturated (median over probes)", &|i| {
            recs.get(&i)
                .and_then(|r| median(r.iter().filter_map(|l| l.saturated_fraction).collect()))
                .map(pct)
                .unwrap_or_default()
        }),
        col("gradient into the layer, RMS", &|i| grad(i).map(number).unwrap_or_default()),
        col("batch norm vs data", &|i| bn.get(&i).map(|b| bn_cell(b)).unwrap_or_default()),
        col("update |W - W0| / |W|", &|i| {
            f.update_ratios.iter().filter(|u| u.layer == i).map(|u| number(u.ratio)).collect::<Vec<_>>().join(", ")
        }),
        col("dead at --before; died since", &|i| match (dead0.get(&i), dead.get(&i)) {
            (Some(then), Some(now)) => {
                let died = now.fire_counts.iter().zip(&then.fire_counts).filter(|(&a, &b)| a == 0 && b > 0).count();
                format!("{} of {}; {died} died since", then.dead_units().len(), then.fire_counts.len())
            }
            _ => String::new(),
        }),
        col("findings", &|i| ids_at(&f.findings, i)),
    ];
    let mut text = vec![format!(
        "One row per layer of the model listing. Dead units (conv: channels) output 0 on every one of the {} examples (eval mode). Saturated: the share of a sigmoid's outputs below {m} or above {} (tanh: beyond ±{TANH_SATURATION_LEVEL}), where the local gradient is about 0. Gradient into the layer: the RMS of dL/dx with respect to the layer's input, the median over the probe batches; the backward pass runs from the last layer to the first, so a column that falls by orders of magnitude towards layer 0 is a vanishing gradient and one that grows is exploding.",
        f.examples,
        1.0 - SIGMOID_SATURATION_MARGIN,
        m = SIGMOID_SATURATION_MARGIN
    )];
    if !stats.batchnorm.is_empty() {
        text.push("Batch norm vs data: how many features (conv: channels) have running statistics off the data's (mean shift of at least 0.5 of the data's standard deviation, or a variance ratio outside (1/2, 2)), and the worst one.".into());
    }
    let table = columns("Layers", cols);
    let mut charts = Vec::new();
    let with_grad: Vec<usize> = (0..n).filter(|&i| grad(i).is_some()).collect();
    if with_grad.len() >= 2 {
        let crowded = with_grad.len() > 7;
        let labels = with_grad
            .iter()
            .map(|&i| {
                let kind = recs[&i][0].kind.as_str();
                format!("{i} {}", if crowded { short_kind(kind) } else { kind })
            })
            .collect();
        let pts = with_grad.iter().enumerate().map(|(k, &i)| (k as f64, grad(i).unwrap_or(f64::NAN))).collect();
        charts.push(Chart {
            shows: vec![Code::VanishingGradient, Code::ExplodingGradient],
            layer: None,
            title: "Gradient reaching each layer".into(),
            x_label: "layer (index and kind)".into(),
            y_label: "RMS of dL/dx into the layer".into(),
            caption: "The RMS of the gradient with respect to each layer's input, the median over the probe batches (log scale). Read it from right to left, the way the backward pass runs: a gradient that drops by orders of magnitude towards layer 0 is vanishing, one that grows is exploding; roughly level is healthy.".into(),
            kind: ChartKind::Bars { labels, groups: vec![Series::new("median over the probe batches", pts)], log_y: true },
        });
    }
    let relu: Vec<usize> = (0..n).filter(|i| dead.contains_key(i)).collect();
    let any_dead = stats.dead_units.iter().chain(&f.dead_before).any(|p| p.dead_fraction() > 0.0);
    if !relu.is_empty() && any_dead {
        let labels = relu.iter().map(|i| format!("{i} relu")).collect();
        let mut groups = Vec::new();
        if !dead0.is_empty() {
            let pts = relu
                .iter()
                .enumerate()
                .map(|(k, i)| (k as f64, dead0.get(i).map(|p| p.dead_fraction()).unwrap_or(f64::NAN)))
                .collect();
            groups.push(Series::new("at --before", pts));
        }
        let pts = relu.iter().enumerate().map(|(k, i)| (k as f64, dead[i].dead_fraction())).collect();
        groups.push(Series::new("at the checkpoint", pts));
        charts.push(Chart {
            shows: vec![Code::DeadRelu],
            layer: None,
            title: "Dead share of each ReLU layer".into(),
            x_label: "layer".into(),
            y_label: "share of units dead".into(),
            caption: format!(
                "The share of each ReLU layer's units (conv: channels) that output 0 on every one of the {} examples. A dead unit passes no gradient back on any example, so training cannot revive it; a few percent is common, 20% or more is a finding.",
                f.examples
            ),
            kind: ChartKind::Bars { labels, groups, log_y: false },
        });
    }
    Some(Section { title: "Layers".into(), text, tables: vec![table], charts, ..Default::default() })
}

/// A short layer label for crowded bar charts.
fn short_kind(kind: &str) -> &str {
    match kind {
        "affine" => "aff",
        "sigmoid" => "sig",
        "batchnorm" => "bn",
        "spatial_batchnorm" => "sbn",
        "dropout" => "drop",
        "leaky_relu" => "lrelu",
        other => other,
    }
}

/// The features of `b` that are off, and the worst one (by the detector's measures).
fn bn_summary(b: &BatchNormStats) -> (usize, usize) {
    use leaky::doctor::detectors::batchnorm_stats::{BN_OFF_MEAN_SHIFT, BN_OFF_VAR_RATIO};
    let bad = |j: usize| {
        let (z, r) = (b.mean_shift(j), b.var_ratio(j));
        if z.is_nan() || r.is_nan() {
            f64::INFINITY
        } else {
            (z.abs() / BN_OFF_MEAN_SHIFT).max(r.ln().abs() / BN_OFF_VAR_RATIO.ln())
        }
    };
    let off = (0..b.features()).filter(|&j| bad(j) >= 1.0).count();
    let worst = (0..b.features()).max_by(|&i, &j| bad(i).total_cmp(&bad(j))).unwrap_or(0);
    (off, worst)
}

fn bn_cell(b: &BatchNormStats) -> String {
    if b.features() == 0 {
        return String::new();
    }
    let (off, worst) = bn_summary(b);
    let what = if b.kind == "spatial_batchnorm" { "channel" } else { "feature" };
    format!(
        "{off} of {} off; worst {what} {worst}: shift {} std, variance ratio {}",
        b.features(),
        number(b.mean_shift(worst)),
        number(b.var_ratio(worst))
    )
}

/// One dashed reference series at `y0` and at `y1` from x = 0 to `x1` (one legend entry: the
/// two lines are runs of one series, broken by a non-finite point).
fn pair(name: &str, y0: f64, y1: f64, x1: f64) -> Series {
    let mut s = Series::reference(name, y0, 0.0, x1);
    s.points.extend([(f64::NAN, f64::NAN), (0.0, y1), (x1, y1)]);
    s
}

fn batchnorm_section(bns: &[BatchNormStats]) -> Option<Section> {
    if bns.is_empty() {
        return None;
    }
    let mut charts = Vec::new();
    for b in bns {
        let d = b.features();
        if d == 0 {
            continue;
        }
        let what = if b.kind == "spatial_batchnorm" { "channel" } else { "feature" };
        let x1 = (d.max(2) - 1) as f64;
        let shift =
            Series::new("data mean − running_mean, in data std", (0..d).map(|j| (j as f64, b.mean_shift(j))).collect());
        charts.push(Chart {
            shows: vec![Code::BatchnormStats],
            layer: Some(b.layer),
            title: format!("Layer {} ({}): mean shift per {what}", b.layer, b.kind),
            x_label: what.to_string(),
            y_label: "(mean − running_mean) / std".into(),
            caption: format!(
                "For each {what}, how far the data's mean of the layer's input (over all {} examples, eval mode) lies from the running mean eval mode subtracts, in units of the data's standard deviation. Near 0 is healthy; the dashed lines at ±0.5 mark where a {what} counts as off (±2: far).",
                b.examples
            ),
            kind: ChartKind::Lines { series: vec![shift, pair("±0.5: off", 0.5, -0.5, x1)], log_y: false },
        });
        let ratio = Series::new("data variance / running_var", (0..d).map(|j| (j as f64, b.var_ratio(j))).collect());
        charts.push(Chart {
            shows: vec![Code::BatchnormStats],
            layer: Some(b.layer),
            title: format!("Layer {} ({}): variance ratio per {what}", b.layer, b.kind),
            x_label: what.to_string(),
            y_label: "variance / running_var".into(),
            caption: format!(
                "For each {what}, the data's variance of the layer's input over the running variance eval mode divides by (log scale). 1 is healthy; eval mode scales the {what}'s normalised activations by the square root of this ratio. The dashed lines at 2 and 1/2 mark where a {what} counts as off (10 and 1/10: far)."
            ),
            kind: ChartKind::Lines { series: vec![ratio, pair("2 and 1/2: off", 2.0, 0.5, x1)], log_y: true },
        });
    }
    let at = |v: &[f64], j: usize| number(v.get(j).copied().unwrap_or(f64::NAN));
    let rows = bns
        .iter()
        .map(|b| {
            let (off, worst) = bn_summary(b);
            vec![
                format!("{} ({})", b.layer, b.kind),
                format!("{off} of {}", b.features()),
                worst.to_string(),
                format!("{} / {}", at(&b.data_mean, worst), at(&b.running_mean, worst)),
                format!("{} / {}", at(&b.data_var, worst), at(&b.running_var, worst)),
                b.batches_tracked.map(|k| k.to_string()).unwrap_or_else(|| "not in the file".into()),
            ]
        })
        .collect();
    Some(Section {
        title: "Batch norm: running statistics against the data".into(),
        text: vec![format!(
            "In eval mode a batch norm layer normalises with the running mean and variance it stored during training. They should match the mean and variance of the layer's input over the data; where they do not, every activation after the layer is shifted or rescaled. The data's statistics are measured on the layer's actual input in eval mode, over every example ({} values per feature; a conv channel pools its positions). A feature is off when its mean shift is at least 0.5 of the data's standard deviation or its variance ratio is outside (1/2, 2); batches tracked is PyTorch's num_batches_tracked, how many batches updated the running statistics.",
            bns.iter().map(|b| b.values_per_feature.to_string()).collect::<Vec<_>>().join(", ")
        )],
        tables: vec![Table {
            caption: "Per batch norm layer, the worst feature (conv: channel)".into(),
            header: ["layer", "off", "worst", "mean: data / running", "variance: data / running", "batches tracked"]
                .map(String::from)
                .to_vec(),
            rows,
        }],
        charts,
        ..Default::default()
    })
}

fn recurrent_section(f: &Inspection) -> Option<Section> {
    let stats = &f.doctor.stats;
    let first = stats.bptt.first()?;
    let (layer, kind) = (first.layer, first.kind.clone());
    let ratios: Vec<f64> = stats.bptt.iter().filter_map(|b| b.ratio()).collect();
    let growth: Vec<f64> = stats.bptt.iter().filter_map(|b| b.growth_per_step()).collect();
    let radius = stats.bptt.iter().rev().find_map(|b| b.whh_spectral_radius);
    let sigma = stats.bptt.iter().rev().find_map(|b| b.whh_largest_singular);
    let t_len = first.norms_per_t.len();
    let mut rows = vec![
        vec!["time steps T".to_string(), t_len.to_string()],
        vec![
            "||dL/dh_0|| / ||dL/dh_T-1|| (median over the probe batches)".into(),
            median(ratios).map(number).unwrap_or_else(|| "n/a".into()),
        ],
        vec![
            "growth per step back in time (median)".into(),
            median(growth).map(number).unwrap_or_else(|| "n/a".into()),
        ],
    ];
    if let Some(r) = radius {
        rows.push(vec!["spectral radius of Whh (LSTM: the largest of its gate blocks)".into(), number(r)]);
    }
    if let Some(s) = sigma {
        rows.push(vec!["largest singular value of Whh".into(), number(s)]);
    }
    let ids = ids_at(&f.findings, layer);
    rows.push(vec!["findings about this layer".into(), if ids.is_empty() { "none".into() } else { ids }]);
    let mut gates: BTreeMap<&str, Vec<&leaky::doctor::stats::GateStats>> = BTreeMap::new();
    for g in &stats.gates {
        gates.entry(g.gate.as_str()).or_default().push(g);
    }
    let order = ["h", "i", "f", "o", "g", "c"];
    let mut gate_rows: Vec<Vec<String>> = gates
        .iter()
        .map(|(gate, v)| {
            vec![
                gate.to_string(),
                v[0].activation.clone(),
                median(v.iter().map(|g| g.saturated_fraction).collect()).map(pct).unwrap_or_default(),
                median(v.iter().map(|g| g.mean_local_grad).collect()).map(number).unwrap_or_default(),
            ]
        })
        .collect();
    gate_rows.sort_by_key(|r| order.iter().position(|g| *g == r[0]).unwrap_or(order.len()));
    let mut tables = vec![Table {
        caption: format!("Layer {layer} ({kind}): the gradient through time"),
        header: vec!["measure".into(), "value".into()],
        rows,
    }];
    if !gate_rows.is_empty() {
        tables.push(Table {
            caption: format!(
                "Layer {layer} ({kind}): saturation of the recurrent activations (median over the probe batches)"
            ),
            header: vec!["activation".into(), "function".into(), "saturated".into(), "mean local gradient".into()],
            rows: gate_rows,
        });
    }
    let listing = Table {
        caption: "Layers".into(),
        header: vec!["layer".into(), "what".into(), "findings".into()],
        rows: f
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| vec![i.to_string(), l.clone(), ids_at(&f.findings, i)])
            .collect(),
    };
    tables.insert(0, listing);
    // The norms per time step: the median over the probe batches at each t.
    let per_t: Vec<(f64, f64)> = (0..t_len)
        .map(|t| {
            (
                t as f64,
                median(stats.bptt.iter().filter_map(|b| b.norms_per_t.get(t).copied()).collect()).unwrap_or(f64::NAN),
            )
        })
        .collect();
    let mut caption = format!(
        "||dL/dh_t||, the gradient reaching the hidden state at each time step t of layer {layer} ({kind}), the median over the probe batches (log scale). Going back in time (right to left) the gradient is multiplied by the recurrent Jacobian at every step, so a line that falls steadily towards t = 0 is vanishing and one that rises is exploding."
    );
    if let Some(r) = radius {
        caption.push_str(&format!(" Whh's spectral radius: {}.", number(r)));
    }
    let charts = vec![Chart {
        shows: vec![Code::VanishingGradient, Code::ExplodingGradient],
        layer: Some(layer),
        title: format!("Gradient through time, layer {layer} ({kind})"),
        x_label: "time step t".into(),
        y_label: "||dL/dh_t||".into(),
        caption,
        kind: ChartKind::Lines { series: vec![Series::new("median over the probe batches", per_t)], log_y: true },
    }];
    Some(Section {
        title: "Layers and the gradient through time".into(),
        text: vec!["The recurrent model's layers, how the gradient travels back through time in its recurrent layer, and how saturated its activations are. Saturated: a sigmoid below 0.01 or above 0.99 (the forget gate: only below 0.01, shut), a tanh beyond ±0.99.".into()],
        tables,
        charts,
        ..Default::default()
    })
}

fn before_section(f: &Inspection) -> Option<Section> {
    if f.update_ratios.is_empty() {
        return None;
    }
    let labels: Vec<String> =
        f.update_ratios.iter().map(|u| u.label.trim_start_matches("layer ").to_string()).collect();
    let pts = f.update_ratios.iter().enumerate().map(|(k, u)| (k as f64, u.ratio)).collect();
    Some(Section {
        title: "Since the earlier checkpoint".into(),
        text: vec!["How far each weight tensor moved between the --before checkpoint and this one, relative to its size: |W - W0| / |W| (Frobenius norms). It sums every update in between, so it has no fixed healthy value; compare the layers: one that barely moved while the others did is not learning, one that moved far more has taken large steps. The layer table above gives the dead units at both checkpoints.".into()],
        charts: vec![Chart {
            shows: vec![Code::UpdateRatio],
            layer: None,
            title: "Relative change of each weight tensor since --before".into(),
            x_label: "layer and tensor".into(),
            y_label: "|W - W0| / |W|".into(),
            caption: "|W - W0| / |W| for every weight tensor (log scale).".into(),
            kind: ChartKind::Bars { labels, groups: vec![Series::new("|W - W0| / |W|", pts)], log_y: true },
        }],
        ..Default::default()
    })
}
