//! `leaky doctor FILE.toml --report DIR`: one experiment's report, built from what the doctor
//! recorded (read through the public fields of [`leaky::doctor::Doctor`] and
//! [`RecordedStats`] only). Only charts for which data exists are drawn.

use super::{Chart, ChartKind, HistSeries, Report, Section, Series, Table};
use leaky::doctor::stats::{LayerStats, RecordedStats, SIGMOID_SATURATION_MARGIN, TANH_SATURATION_LEVEL};
use leaky::doctor::{Code, Finding, Severity};
use leaky::experiment::{Experiment, ModelKind};
use leaky::train::TrainReport;
use std::collections::BTreeMap;

/// Everything one `leaky doctor` run knows at the end.
pub struct DoctorRun<'a> {
    /// The experiment file as given on the command line.
    pub file: &'a str,
    /// The experiment it describes.
    pub experiment: &'a Experiment,
    /// `--sample-every`.
    pub sample_every: usize,
    /// The final diagnosis.
    pub findings: &'a [Finding],
    /// The recorded statistics.
    pub stats: &'a RecordedStats,
    /// The loss of every step.
    pub losses: &'a [f64],
    /// The trainer's outcome.
    pub train: &'a TrainReport,
}

/// The report of one doctor run: the run, the findings, then the charts.
pub fn report(run: &DoctorRun) -> Report {
    let count = |s: Severity| run.findings.iter().filter(|f| f.severity == s).count();
    let mut intro = vec![format!(
        "leaky doctor trained the experiment {} with probes on and diagnosed {} error(s), {} warning(s) and {} info finding(s).",
        run.file,
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    )];
    intro.push(format!(
        "Layer and parameter statistics were sampled every {} steps (and at step 0); the loss is recorded at every step. Each chart's caption says what to look for.",
        run.sample_every
    ));
    let mut sections = vec![run_section(run), findings_section(run.findings)];
    sections.extend(loss_section(run));
    sections.extend(activation_section(run.stats));
    sections.extend(gradient_section(run.stats));
    sections.extend(update_section(run.stats));
    Report { title: format!("leaky doctor: {}", run.file), intro, sections }
}

fn run_section(run: &DoctorRun) -> Section {
    let exp = run.experiment;
    let mut rows = Vec::new();
    if let Ok(toml::Value::Table(root)) = toml::Value::try_from(exp) {
        for (name, value) in &root {
            if name == "rl" && exp.model.kind != ModelKind::Dqn {
                continue;
            }
            let text = match value {
                toml::Value::Table(t) => t.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", "),
                other => other.to_string(),
            };
            rows.push(vec![name.clone(), text]);
        }
    }
    let settings = Table {
        caption: "Experiment (every key, defaults filled in)".into(),
        header: vec!["section".into(), "settings".into()],
        rows,
    };
    let t = run.train;
    let pct = |x: f64| if x.is_finite() { format!("{:.2}%", 100.0 * x) } else { "n/a".into() };
    let mut outcome = vec![
        vec!["training steps".into(), t.steps.to_string()],
        vec!["epochs completed".into(), t.history.len().to_string()],
        vec!["best validation accuracy".into(), pct(t.best_val_acc)],
        vec!["validation loss at the best epoch".into(), super::html::number(t.best_val_loss)],
        vec!["training time (s)".into(), format!("{:.2}", t.seconds)],
    ];
    if let Some(s) = t.diverged_at_step {
        outcome.push(vec!["loss became non-finite at step".into(), s.to_string()]);
    }
    let outcome = Table { caption: "Outcome".into(), header: vec!["measure".into(), "value".into()], rows: outcome };
    Section {
        title: "Run".into(),
        text: vec![format!(
            "Data set {}, model {} with hidden sizes {:?}, {} activation, {} init; {} loss, {} optimiser at learning rate {}.",
            exp.data.dataset,
            toml_word(&exp.model.kind),
            exp.model.hidden,
            toml_word(&exp.model.activation),
            toml_word(&exp.model.init),
            toml_word(&exp.train.loss),
            toml_word(&exp.train.optimizer),
            exp.train.lr
        )],
        tables: vec![settings, outcome],
        ..Default::default()
    }
}

/// How a config enum is written in TOML (`"sigmoid"`, `"sgd"`).
fn toml_word<T: serde::Serialize>(v: &T) -> String {
    match toml::Value::try_from(v) {
        Ok(toml::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

fn findings_section(findings: &[Finding]) -> Section {
    let text = if findings.is_empty() {
        vec!["No findings: every probe stayed within its healthy range.".into()]
    } else {
        vec!["Worst first. Each finding names where and when it was seen, the numbers that prove it, why the backward pass leaks there, and ranked fixes (leaky doctor --treat tries the first one).".into()]
    };
    Section {
        title: "Findings".into(),
        text,
        findings: findings.iter().map(|f| (String::new(), f.clone())).collect(),
        ..Default::default()
    }
}

fn loss_section(run: &DoctorRun) -> Option<Section> {
    if run.losses.is_empty() {
        return None;
    }
    let pts: Vec<(f64, f64)> = run.losses.iter().enumerate().map(|(i, &l)| (i as f64, l)).collect();
    let mut series = vec![Series::new("loss per step", pts)];
    let n = run.losses.len();
    if n >= 100 {
        let w = (n / 40).clamp(5, 100);
        series.push(Series::new(format!("moving average over {w} steps"), moving_average(run.losses, w)));
    }
    let mut caption = "The training loss of every step. A healthy run falls quickly and then flattens; a loss stuck at its first value means the gradient does not reach the weights; a gap means it became NaN or infinite.".to_string();
    // The validation loss at the end of each epoch, on the same step axis: a training loss
    // that keeps falling while this one rises is overfitting.
    let history = &run.train.history;
    if !history.is_empty() && history.iter().any(|h| h.val_loss.is_finite()) {
        let per_epoch = run.train.steps as f64 / history.len() as f64;
        let val: Vec<(f64, f64)> =
            history.iter().enumerate().map(|(e, h)| ((e + 1) as f64 * per_epoch - 1.0, h.val_loss)).collect();
        series.push(Series::new("validation loss (end of each epoch)", val));
        caption.push_str(" The validation loss is measured at the end of each epoch.");
    }
    if let Some(init) = &run.stats.init_loss {
        let last = (n - 1) as f64;
        series.push(Series::reference(
            &format!("expected at init ({})", super::html::number(init.expected)),
            init.expected,
            0.0,
            last,
        ));
        caption.push_str(" The dashed line is the loss a small-weight initialisation predicts at step 0 (ln C for softmax, C - 1 for SVM).");
    }
    Some(Section {
        title: "Loss".into(),
        charts: vec![Chart {
            shows: vec![Code::DivergingLoss, Code::NotLearning, Code::BadInitLoss, Code::NonFinite],
            layer: None,
            title: "Training loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            caption,
            kind: ChartKind::Lines { series, log_y: false },
        }],
        ..Default::default()
    })
}

/// Trailing moving average over `w` points: one point per step from the `w`-th on.
pub fn moving_average(v: &[f64], w: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut sum = 0.0;
    let mut bad = 0usize;
    for i in 0..v.len() {
        if v[i].is_finite() {
            sum += v[i]
        } else {
            bad += 1
        }
        if i >= w {
            if v[i - w].is_finite() {
                sum -= v[i - w]
            } else {
                bad -= 1
            }
        }
        if i + 1 >= w {
            out.push((i as f64, if bad == 0 { sum / w as f64 } else { f64::NAN }));
        }
    }
    out
}

/// Per layer index, its records in step order.
fn by_layer(stats: &RecordedStats) -> BTreeMap<usize, Vec<&LayerStats>> {
    let mut m: BTreeMap<usize, Vec<&LayerStats>> = BTreeMap::new();
    for l in &stats.layers {
        m.entry(l.index).or_default().push(l);
    }
    for v in m.values_mut() {
        v.sort_by_key(|l| l.step);
    }
    m
}

fn layer_name(l: &LayerStats) -> String {
    format!("layer {} ({})", l.index, l.kind)
}

fn histogram_chart(records: &[&LayerStats]) -> Option<Chart> {
    let (first, last) = (*records.first()?, *records.last()?);
    let h = &last.histogram;
    let bins = h.counts.len();
    let edges: Vec<f64> = (0..=bins).map(|k| h.lo + (h.hi - h.lo) * k as f64 / bins as f64).collect();
    let mut series = Vec::new();
    let mut outside = Vec::new();
    for l in if first.step == last.step { vec![last] } else { vec![first, last] } {
        let g = &l.histogram;
        if g.counts.len() != bins || g.lo != h.lo || g.hi != h.hi {
            continue;
        }
        let total = g.total().max(1) as f64;
        series.push(HistSeries {
            name: format!("step {}", l.step),
            counts: g.counts.iter().map(|&c| c as f64 / total).collect(),
        });
        let out = (g.below + g.above + g.nan) as f64 / total;
        if out > 0.0 {
            outside.push(format!("{:.1}% at step {}", 100.0 * out, l.step));
        }
    }
    let what = match last.kind.as_str() {
        "sigmoid" => "Mass piled at 0 and 1 means saturated units: there the local gradient z(1-z) is about 0 (its maximum is 0.25 at z = 0.5), so almost no gradient passes back through this layer.",
        "tanh" => "Mass piled at -1 and 1 means saturated units: there the local gradient 1 - t^2 is about 0, so almost no gradient passes back through this layer.",
        "relu" => "The first bar holds the outputs that are exactly 0, where the ReLU passes no gradient back, together with small positive ones (the exact share of zeros is charted below); nearly all outputs there means most units are off, and a unit that is 0 for every input is dead.",
        _ => "A spread that collapses to a spike or drifts off the axis between the first and last sampled step deserves a look.",
    };
    let when = if first.step == last.step {
        format!("at step {} (the only sampled step)", last.step)
    } else {
        "at the first and last sampled step".to_string()
    };
    let mut caption = format!("Outputs of {} {when}, as a share of all outputs of the batch. {what}", layer_name(last));
    if !outside.is_empty() {
        caption.push_str(&format!(" Outside [{}, {}] and not drawn: {}.", h.lo, h.hi, outside.join(", ")));
    }
    Some(Chart {
        shows: vec![Code::Saturation, Code::DeadRelu],
        layer: Some(last.index),
        title: format!("Activations of {}", layer_name(last)),
        x_label: "output value".into(),
        y_label: "share of outputs".into(),
        caption,
        kind: ChartKind::Histograms { edges, series },
    })
}

fn activation_section(stats: &RecordedStats) -> Option<Section> {
    let layers = by_layer(stats);
    let mut charts = Vec::new();
    for recs in layers.values() {
        if leaky::doctor::stats::max_local_grad(&recs[0].kind).is_some() {
            charts.extend(histogram_chart(recs));
        }
    }
    let over_steps = |pick: fn(&LayerStats) -> Option<f64>| -> Vec<Series> {
        layers
            .values()
            .filter(|recs| pick(recs[0]).is_some())
            .map(|recs| {
                Series::new(
                    layer_name(recs[0]),
                    recs.iter().filter_map(|l| pick(l).map(|v| (l.step as f64, v))).collect(),
                )
            })
            .collect()
    };
    // Shares are drawn against the whole [0, 1] range: a dashed line marks 1.
    let (x0, x1) = stats
        .layers
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), l| (a.min(l.step as f64), b.max(l.step as f64)));
    let with_all = |mut v: Vec<Series>, name: &str| {
        v.push(Series::reference(name, 1.0, x0, x1.max(x0 + 1.0)));
        v
    };
    let saturated = over_steps(|l| l.saturated_fraction);
    if !saturated.is_empty() {
        charts.push(Chart {
            shows: vec![Code::Saturation],
            layer: None,
            title: "Saturated share of sigmoid/tanh outputs".into(),
            x_label: "step".into(),
            y_label: "share saturated".into(),
            caption: format!(
                "Share of each sigmoid or tanh layer's outputs in the flat region (sigmoid below {m} or above {}, tanh beyond ±{TANH_SATURATION_LEVEL}) at every sampled step. A layer near 1 passes back almost no gradient; a share that does not fall with training means it will not recover.",
                1.0 - SIGMOID_SATURATION_MARGIN,
                m = SIGMOID_SATURATION_MARGIN
            ),
            kind: ChartKind::Lines { series: with_all(saturated, "1: every output saturated"), log_y: false },
        });
    }
    let zeros = over_steps(|l| l.zero_fraction);
    if !zeros.is_empty() {
        charts.push(Chart {
            shows: vec![Code::DeadRelu],
            layer: None,
            title: "Share of ReLU outputs that are exactly 0".into(),
            x_label: "step".into(),
            y_label: "share of zeros".into(),
            caption: "Share of each ReLU layer's outputs that are exactly 0 (no gradient flows back through them) at every sampled step. Around 0.5 is normal; a layer climbing towards 1 is dying.".into(),
            kind: ChartKind::Lines { series: with_all(zeros, "1: every output 0"), log_y: false },
        });
    }
    let mut tables = Vec::new();
    if !stats.dead_units.is_empty() {
        let rows = stats
            .dead_units
            .iter()
            .map(|p| {
                vec![
                    format!("layer {} ({})", p.layer, p.kind),
                    p.step.to_string(),
                    p.examples.to_string(),
                    format!("{} of {}", p.dead_units().len(), p.fire_counts.len()),
                    format!("{:.1}%", 100.0 * p.dead_fraction()),
                ]
            })
            .collect();
        tables.push(Table {
            caption: "Dead units: ReLU units that output 0 for every training example in a full pass".into(),
            header: ["layer", "after step", "examples", "dead units", "dead share"].map(String::from).to_vec(),
            rows,
        });
    }
    (!charts.is_empty() || !tables.is_empty()).then(|| Section {
        title: "Activations".into(),
        text: vec![
            "What each activation layer outputs, and how much of it sits where the local gradient is zero.".into()
        ],
        tables,
        charts,
        ..Default::default()
    })
}

/// A short layer label for crowded bar charts.
fn short_kind(kind: &str) -> &str {
    match kind {
        "affine" => "aff",
        "sigmoid" => "sig",
        "batchnorm" => "bn",
        "dropout" => "drop",
        "leaky_relu" => "lrelu",
        other => other,
    }
}

fn gradient_section(stats: &RecordedStats) -> Option<Section> {
    let mut charts = Vec::new();
    let layers = by_layer(stats);
    let with_grad: Vec<&Vec<&LayerStats>> =
        layers.values().filter(|recs| recs.iter().any(|l| l.grad_in_norm.is_some())).collect();
    let steps: Vec<usize> = {
        let mut s: Vec<usize> = stats.layers.iter().filter(|l| l.grad_in_norm.is_some()).map(|l| l.step).collect();
        s.sort_unstable();
        s.dedup();
        match (s.first(), s.last()) {
            (Some(&a), Some(&b)) if a != b => vec![a, b],
            (Some(&a), _) => vec![a],
            _ => vec![],
        }
    };
    if !with_grad.is_empty() && !steps.is_empty() {
        let crowded = with_grad.len() > 7;
        let labels: Vec<String> = with_grad
            .iter()
            .map(|recs| {
                if crowded {
                    format!("{} {}", recs[0].index, short_kind(&recs[0].kind))
                } else {
                    format!("{} {}", recs[0].index, recs[0].kind)
                }
            })
            .collect();
        let groups: Vec<Series> = steps
            .iter()
            .map(|&s| {
                let pts = with_grad
                    .iter()
                    .enumerate()
                    .map(|(i, recs)| {
                        let v = recs.iter().find(|l| l.step == s).and_then(|l| l.grad_in_norm).unwrap_or(f64::NAN);
                        (i as f64, v)
                    })
                    .collect();
                Series::new(format!("step {s}"), pts)
            })
            .collect();
        charts.push(Chart {
            shows: vec![Code::VanishingGradient, Code::ExplodingGradient],
            layer: None,
            title: "Gradient reaching each layer".into(),
            x_label: "layer (index and kind)".into(),
            y_label: "||dL/dx|| into the layer".into(),
            caption: "Norm of the gradient with respect to each layer's input, at the first and last sampled step (log scale). The backward pass runs from the last layer to the first: a gradient that drops by orders of magnitude towards layer 0 is vanishing, one that grows is exploding.".into(),
            kind: ChartKind::Bars { labels, groups, log_y: true },
        });
    }
    let mut rec: BTreeMap<usize, Vec<&leaky::doctor::stats::BpttStats>> = BTreeMap::new();
    for b in &stats.bptt {
        rec.entry(b.layer).or_default().push(b);
    }
    for (layer, mut v) in rec {
        v.sort_by_key(|b| b.step);
        let (first, last) = (v[0], v[v.len() - 1]);
        let picks = if first.step == last.step { vec![last] } else { vec![first, last] };
        let series = picks
            .iter()
            .map(|b| {
                Series::new(
                    format!("step {}", b.step),
                    b.norms_per_t.iter().enumerate().map(|(t, &n)| (t as f64, n)).collect(),
                )
            })
            .collect();
        let mut caption = format!(
            "||dL/dh_t||, the gradient reaching the hidden state at each time step t of layer {layer} ({}), at the first and last sampled step (log scale). Going back in time the gradient is multiplied by the recurrent Jacobian at every step, so a line falling steadily towards t = 0 is vanishing and a rising one is exploding.",
            last.kind
        );
        if let Some(r) = last.whh_spectral_radius {
            caption.push_str(&format!(" Whh's spectral radius at step {}: {}.", last.step, super::html::number(r)));
        }
        if let Some(g) = last.growth_per_step() {
            caption.push_str(&format!(" Growth per step back in time: {}.", super::html::number(g)));
        }
        charts.push(Chart {
            shows: vec![Code::VanishingGradient, Code::ExplodingGradient],
            layer: Some(layer),
            title: format!("Gradient through time, layer {layer} ({})", last.kind),
            x_label: "time step t".into(),
            y_label: "||dL/dh_t||".into(),
            caption,
            kind: ChartKind::Lines { series, log_y: true },
        });
    }
    if !stats.flat_ops.is_empty() {
        let mut ops: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        for f in &stats.flat_ops {
            ops.entry(f.where_.as_str()).or_default().push((f.step as f64, f.share()));
        }
        let (x0, x1) = stats
            .flat_ops
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), f| (a.min(f.step as f64), b.max(f.step as f64)));
        let mut series: Vec<Series> = ops
            .into_iter()
            .map(|(w, mut pts)| {
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series::new(w, pts)
            })
            .collect();
        series.push(Series::reference("1: all of the gradient zeroed", 1.0, x0, x1.max(x0 + 1.0)));
        charts.push(Chart {
            shows: vec![Code::ZeroGradient],
            layer: None,
            title: "Zero-gradient share of ops with flat regions".into(),
            x_label: "step".into(),
            y_label: "share of gradient zeroed".into(),
            caption: "Share of elements (or samples) whose gradient an op with flat regions set to exactly 0, at each sampled step. ReLU and max-pool zero a share by design; a clip (clip_by_value) that zeroes most of the gradient while the loss is not 0 is the clipped-TD-error bug, fixed by the Huber loss.".into(),
            kind: ChartKind::Lines { series, log_y: false },
        });
    }
    (!charts.is_empty()).then(|| Section {
        title: "Gradients".into(),
        text: vec!["How much gradient the backward pass delivers to each layer (and, for recurrent layers, to each time step).".into()],
        charts,
        ..Default::default()
    })
}

fn update_section(stats: &RecordedStats) -> Option<Section> {
    let mut by_param: BTreeMap<(usize, &str), Vec<(f64, f64)>> = BTreeMap::new();
    for p in stats.params.iter().filter(|p| p.is_weight) {
        by_param.entry((p.layer, p.name.as_str())).or_default().push((p.step as f64, p.update_ratio()));
    }
    if by_param.is_empty() {
        return None;
    }
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut series: Vec<Series> = by_param
        .into_iter()
        .map(|((layer, name), mut pts)| {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            for &(x, _) in &pts {
                (x0, x1) = (x0.min(x), x1.max(x));
            }
            let kind = stats.params.iter().find(|p| p.layer == layer).map(|p| p.layer_kind.as_str()).unwrap_or("");
            Series::new(format!("layer {layer} ({kind}) {name}"), pts)
        })
        .collect();
    series.push(Series::reference("1e-3, the usual healthy ratio", 1e-3, x0, x1));
    Some(Section {
        title: "Updates".into(),
        text: vec!["How far each optimiser step moves the weights, relative to their size.".into()],
        charts: vec![Chart {
            shows: vec![Code::UpdateRatio],
            layer: None,
            title: "Update-to-weight ratio per weight matrix".into(),
            x_label: "step".into(),
            y_label: "|update| / |W|".into(),
            caption: "The size of each step's update relative to the weights it changes (the measured update, or lr·|dW| for plain SGD), for every weight matrix at every sampled step (log scale). Around 1e-3 (dashed) is healthy; far above, each step overwrites the weights (units die or the loss diverges); far below, the layer barely learns.".into(),
            kind: ChartKind::Lines { series, log_y: true },
        }],
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_is_trailing_and_breaks_at_non_finite() {
        let v = [1.0, 2.0, 3.0, f64::NAN, 5.0, 6.0, 7.0];
        let m = moving_average(&v, 2);
        assert_eq!(m[0], (1.0, 1.5));
        assert_eq!(m[1], (2.0, 2.5));
        assert!(m[2].1.is_nan() && m[3].1.is_nan());
        assert_eq!(m[4], (5.0, 5.5));
        assert_eq!(m.len(), 6);
    }
}
