//! `leaky demo`: each way backprop leaks, reproduced broken and fixed, side by side.

pub mod batchnorm;
pub mod dqn;
pub mod relu;
pub mod rnn;
pub mod sigmoid;

use crate::report::{Chart, ChartKind, Section, Series, Table};
use leaky::doctor::finding::{Code, Finding, Severity};
use leaky::doctor::stats::{DeadUnitPass, LayerStats};
use leaky::doctor::{Doctor, DoctorConfig};
use leaky::experiment::{self, Experiment, RunOptions};
use leaky::train::TrainReport;
use serde_json::{json, Map, Value};
use std::path::Path;

/// Options every demo takes.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// A smaller DQN budget (150 episodes, at most 2 seeds) for a first look or a test; the
    /// other demos run in full either way (about a second each).
    pub quick: bool,
    /// The base seed (multi-seed demos use seed, seed+1, ...).
    pub seed: u64,
    /// How many seeds multi-seed demos (dqn) run.
    pub seeds: usize,
    /// No progress bars or per-step printing (the final table still prints unless `--json -`).
    pub quiet: bool,
    /// DQN: multiply every reward by this (larger rewards push every TD error past the clip).
    pub reward_scale: f64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions { quick: false, seed: 0, seeds: 3, quiet: false, reward_scale: 1.0 }
    }
}

/// One trained variant of a demo (e.g. "broken: sigmoid, N(0, 1) init, raw inputs").
#[derive(Clone, Debug)]
pub struct Variant {
    /// Short name, e.g. `"broken"`, `"fixed"`, `"huber"`.
    pub name: String,
    /// Whether this is the broken variant (the doctor must find the demo's code here).
    pub broken: bool,
    /// One line saying what it is.
    pub description: String,
    /// The doctor's findings on this variant.
    pub findings: Vec<Finding>,
    /// Named metrics (final loss, accuracy, dead fraction, mean return, ...). A broken
    /// variant names the finding code it must produce under `"expected_code"`.
    pub metrics: serde_json::Map<String, serde_json::Value>,
}

/// What a demo returns: the variants, the terminal table and a report section.
#[derive(Clone, Debug)]
pub struct DemoOutcome {
    /// The demo's name (`"sigmoid"`, `"relu"`, `"rnn"`, `"dqn"`, `"batchnorm"`).
    pub name: String,
    /// The finding code this demo is about (e.g. `"saturation"`).
    pub code: String,
    /// The variants, broken first.
    pub variants: Vec<Variant>,
    /// The terminal table: header then rows (variant, key metric, finding, outcome).
    pub table: crate::report::Table,
    /// The report section (text, tables, findings, charts).
    pub section: Section,
}

/// One MLP variant trained from an experiment (TOML text), with the doctor attached.
pub struct MlpRun {
    /// The experiment as trained (after `--quick` and `--seed`).
    pub exp: Experiment,
    /// The doctor, with everything it recorded.
    pub doctor: Doctor,
    /// The trainer's report.
    pub report: TrainReport,
    /// The doctor's findings, sorted by severity.
    pub findings: Vec<Finding>,
    /// The full-pass dead-unit count before training (one entry per ReLU layer).
    pub dead_at_init: Vec<DeadUnitPass>,
}

/// Parse `toml` (the experiment, as a file would hold it), apply the demo's seed and train it
/// with the doctor watching ([`examine`], as `leaky doctor` does), counting dead units before
/// and after. `--quick` does not shorten these runs: they take about a second, and cut to two
/// epochs they reversed the lessons (the fixed sigmoid net behind the broken one).
pub fn run_mlp(toml: &str, opts: &DemoOptions) -> anyhow::Result<MlpRun> {
    let mut exp = experiment::parse(toml)?;
    exp.seed = opts.seed;
    let ropts = RunOptions { doctor: Some(DoctorConfig::default()), dead_at_init: true };
    let run = experiment::run(&exp, Path::new("."), ropts, &mut experiment::NoEvents)?;
    let report = run.report.expect("a supervised run has a report");
    let doctor = run.doctor.expect("the doctor was on");
    Ok(MlpRun { exp, doctor, report, findings: run.findings, dead_at_init: run.dead_at_init })
}

/// The dead fraction over all units of all ReLU layers of one full pass.
pub fn dead_fraction(passes: &[DeadUnitPass]) -> f64 {
    let units: usize = passes.iter().map(|p| p.fire_counts.len()).sum();
    let dead: usize = passes.iter().map(|p| p.fire_counts.iter().filter(|&&c| c == 0).count()).sum();
    if units == 0 {
        0.0
    } else {
        dead as f64 / units as f64
    }
}

/// The strongest finding of `code` (errors before warnings before info), if any.
pub fn finding_of(findings: &[Finding], code: Code) -> Option<&Finding> {
    [Severity::Error, Severity::Warning, Severity::Info]
        .iter()
        .find_map(|&s| findings.iter().find(|f| f.code == code && f.severity == s))
}

/// `"warning: saturation in layer 1 (sigmoid)"`, or `"none"`.
pub fn finding_label(findings: &[Finding], code: Code) -> String {
    match finding_of(findings, code) {
        Some(f) => format!("{}: {} in {}", f.severity.as_str(), f.code.as_str(), f.where_),
        None => "none".to_string(),
    }
}

/// Worst finding of any code at warning level or above, for the table's last column.
pub fn worst_label(findings: &[Finding]) -> String {
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| f.severity.is_at_least(Severity::Warning))
        .map(|f| format!("{} {}", f.severity.as_str(), f.code.as_str()))
        .collect();
    if bad.is_empty() {
        "healthy (no warning or error)".to_string()
    } else {
        let mut uniq: Vec<String> = Vec::new();
        for b in bad {
            if !uniq.contains(&b) {
                uniq.push(b);
            }
        }
        uniq.join(", ")
    }
}

/// The loss of every training step as a chart series (NaN/Inf steps are dropped).
pub fn loss_series(name: &str, losses: &[f64]) -> Series {
    Series {
        name: name.to_string(),
        // Non-finite losses stay in: the chart skips them, says how many, and marks where a
        // run diverged.
        points: losses.iter().enumerate().map(|(i, &l)| (i as f64, l)).collect(),
    }
}

/// The last sampled activation histogram of layer `index`, as counts and edges.
pub fn last_histogram(doctor: &Doctor, index: usize) -> Option<(Vec<f64>, Vec<f64>)> {
    let s = doctor.stats.layers.iter().rev().find(|s| s.index == index)?;
    let h = &s.histogram;
    let bins = h.counts.len();
    let edges = (0..=bins).map(|i| h.lo + (h.hi - h.lo) * i as f64 / bins as f64).collect();
    let total = h.total().max(1) as f64;
    Some((edges, h.counts.iter().map(|&c| c as f64 / total).collect()))
}

/// One layer statistic over the sampled steps, e.g. the saturated fraction.
pub fn layer_series(doctor: &Doctor, index: usize, name: &str, f: impl Fn(&LayerStats) -> Option<f64>) -> Series {
    Series {
        name: name.to_string(),
        points: doctor
            .stats
            .layers
            .iter()
            .filter(|s| s.index == index)
            .filter_map(|s| f(s).map(|v| (s.step as f64, v)))
            .collect(),
    }
}

/// Format a number for a table: 4 significant digits, scientific when tiny or huge.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        format!("{x}")
    } else if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) {
        format!("{x:.2e}")
    } else {
        format!("{x:.4}")
    }
}

/// A percentage with one decimal.
pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", 100.0 * x)
    } else {
        "n/a".to_string()
    }
}

/// A `Variant` from a finished MLP run.
pub fn variant(name: &str, broken: bool, description: &str, run: &MlpRun, metrics: Map<String, Value>) -> Variant {
    let mut m = metrics;
    m.insert("best_val_acc".into(), json!(run.report.best_val_acc));
    m.insert("best_val_loss".into(), json!(run.report.best_val_loss));
    m.insert("steps".into(), json!(run.report.steps));
    m.insert("seconds".into(), json!(run.report.seconds));
    m.insert("diverged_at_step".into(), json!(run.report.diverged_at_step));
    m.insert("experiment".into(), json!(run.exp));
    Variant {
        name: name.to_string(),
        broken,
        description: description.to_string(),
        findings: run.findings.clone(),
        metrics: m,
    }
}

/// `(variant, finding)` pairs for the report, errors and warnings only.
pub fn report_findings(variants: &[Variant]) -> Vec<(String, Finding)> {
    variants
        .iter()
        .flat_map(|v| {
            v.findings
                .iter()
                .filter(|f| f.severity.is_at_least(Severity::Warning))
                .map(move |f| (v.name.clone(), f.clone()))
        })
        .collect()
}

/// Print a table with aligned columns.
pub fn print_table(t: &Table) {
    if !t.caption.is_empty() {
        println!("{}", t.caption);
    }
    println!("{}", terminal_table(t, terminal_width()));
}

/// The width tables must fit: `COLUMNS` when set, else the terminal's when stdout is one;
/// `None` (no limit) when the output goes to a file or a pipe.
pub fn terminal_width() -> Option<u16> {
    if let Some(c) = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<u16>().ok()) {
        return Some(c.max(40));
    }
    let term = console::Term::stdout();
    term.is_term().then(|| term.size_checked().map(|(_, cols)| cols)).flatten()
}

/// `t` laid out as text: columns padded to a common width with two spaces between them and
/// a dashed line under the header; within `width`, the widest cells wrap (comfy-table's
/// dynamic arrangement) instead of running off the screen.
pub fn terminal_table(t: &Table, width: Option<u16>) -> String {
    use comfy_table::{ContentArrangement, Table as Layout};
    let mut layout = Layout::new();
    // Only the header separator is drawn (the 4th character of the preset), as dashes.
    layout.load_preset("     -              ");
    layout.set_header(t.header.clone());
    for row in &t.rows {
        layout.add_row(row.clone());
    }
    if let Some(w) = width {
        layout.set_content_arrangement(ContentArrangement::Dynamic);
        // One column less: every line gets a leading space.
        layout.set_width(w.saturating_sub(1));
    }
    layout.lines().map(|l| format!(" {}", l.trim_end())).collect::<Vec<_>>().join("\n")
}

/// A table from string slices.
pub fn table(caption: &str, header: &[&str], rows: Vec<Vec<String>>) -> Table {
    Table { caption: caption.to_string(), header: header.iter().map(|s| s.to_string()).collect(), rows }
}

/// A line chart.
pub fn lines(title: &str, x: &str, y: &str, caption: &str, series: Vec<Series>, log_y: bool) -> Chart {
    Chart {
        shows: Vec::new(),
        layer: None,
        title: title.into(),
        x_label: x.into(),
        y_label: y.into(),
        caption: caption.into(),
        kind: ChartKind::Lines { series, log_y },
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    fn wide() -> Table {
        table(
            "",
            &["variant", "dead units per ReLU layer (init -> end)", "doctor"],
            vec![vec![
                "broken: ReLU, He init, SGD lr 2".into(),
                "layer 1: 0 -> 0 of 100, layer 3: 0 -> 77 of 100".into(),
                "error update_ratio, error diverging_loss, error non_finite".into(),
            ]],
        )
    }

    #[test]
    fn a_table_fits_the_width_it_is_given_and_keeps_every_word() {
        let text = terminal_table(&wide(), Some(60));
        assert!(text.lines().all(|l| l.chars().count() <= 60), "{text}");
        let words: Vec<&str> = text.split_whitespace().collect();
        for cell in wide().rows[0].iter().chain(&wide().header) {
            for w in cell.split_whitespace() {
                assert!(words.contains(&w), "{w} lost:\n{text}");
            }
        }
        // Without a width (a file or a pipe) each row stays on one line.
        let one = terminal_table(&wide(), None);
        assert_eq!(one.lines().count(), 3, "{one}");
        assert!(one.lines().nth(1).unwrap().trim_start().starts_with("---"), "{one}");
    }
}
