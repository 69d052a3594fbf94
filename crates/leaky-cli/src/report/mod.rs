//! The HTML report: a self-contained `index.html` with inline SVG charts (plotters, SVG-only
//! features), written by `leaky demo` and `leaky doctor --report DIR`.
//!
//! The report is data first: commands build a [`Report`] (sections of text, tables, findings
//! and [`Chart`]s) and [`write_report`] renders it. Every chart has a title, axis labels and a
//! caption that says what to see.

#![allow(dead_code)] // The renderer lands with the report; demos build these types.

use leaky::doctor::finding::Finding;
use std::path::{Path, PathBuf};

/// A whole report: one page.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The page title (also the `<h1>`).
    pub title: String,
    /// Paragraphs under the title (plain text; escaped when rendered).
    pub intro: Vec<String>,
    /// The sections, in order.
    pub sections: Vec<Section>,
}

/// One section: a demo, or one experiment of `leaky doctor`.
#[derive(Clone, Debug, Default)]
pub struct Section {
    /// The `<h2>`.
    pub title: String,
    /// Paragraphs (plain text).
    pub text: Vec<String>,
    /// Tables (e.g. broken vs fixed), in order.
    pub tables: Vec<Table>,
    /// Findings to list, each with the variant it belongs to (e.g. `"broken"`), or `""`.
    pub findings: Vec<(String, Finding)>,
    /// Charts, in order.
    pub charts: Vec<Chart>,
}

/// A table of strings.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Optional caption above the table.
    pub caption: String,
    /// Column headers.
    pub header: Vec<String>,
    /// Rows; each as long as `header`.
    pub rows: Vec<Vec<String>>,
}

/// One chart.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Title drawn above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// What the reader should see (rendered under the chart).
    pub caption: String,
    /// What to draw.
    pub kind: ChartKind,
}

/// What a chart draws.
#[derive(Clone, Debug)]
pub enum ChartKind {
    /// Line series over a shared x axis; `log_y` draws the y axis on a log10 scale
    /// (non-positive and non-finite points are skipped there).
    Lines {
        /// The series (one colour each, with a legend).
        series: Vec<Series>,
        /// Log-scale y axis.
        log_y: bool,
    },
    /// Histograms over shared bin edges, drawn as outlined/translucent bars or steps.
    Histograms {
        /// Bin edges, `bins + 1` increasing values shared by every series.
        edges: Vec<f64>,
        /// One count vector (length `bins`) per series.
        series: Vec<HistSeries>,
    },
    /// One bar per label (e.g. per-layer gradient norms); `log_y` as above.
    Bars {
        /// Bar labels along x.
        labels: Vec<String>,
        /// One value per label, per group (grouped bars, one colour per group).
        groups: Vec<Series>,
        /// Log-scale y axis.
        log_y: bool,
    },
}

/// A named series of (x, y) points. For [`ChartKind::Bars`] only `y` is used, one per label.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

/// A named histogram: counts per bin.
#[derive(Clone, Debug)]
pub struct HistSeries {
    /// Legend name.
    pub name: String,
    /// One count per bin.
    pub counts: Vec<f64>,
}

/// Render `report` to `dir/index.html` (creating `dir`), atomically; returns the file's path.
pub fn write_report(dir: &Path, report: &Report) -> anyhow::Result<PathBuf> {
    let _ = report;
    anyhow::bail!("the HTML report is not built yet (would write {})", dir.display())
}
