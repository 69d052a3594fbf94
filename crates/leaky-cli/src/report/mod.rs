//! The HTML report: a self-contained `index.html` with inline SVG charts (plotters, SVG-only
//! features), written by `leaky demo` and `leaky doctor --report DIR`.
//!
//! The report is data first: commands build a [`Report`] (sections of text, tables, findings
//! and [`Chart`]s) and [`write_report`] renders it. Every chart has a title, axis labels and a
//! caption that says what to see.

pub mod chart;
pub mod doctor;
pub mod html;

use anyhow::Context;
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
///
/// In [`ChartKind::Lines`], a series whose name starts with [`chart::REFERENCE_PREFIX`]
/// (`"reference: "`) is a reference line: drawn dashed in grey, named without the prefix in
/// the legend (see [`Series::reference`]).
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A named series from `(x, y)` points.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series { name: name.into(), points }
    }

    /// A horizontal reference line at `y` from `x0` to `x1` (e.g. the 1e-3 update ratio),
    /// drawn dashed and grey; `name` is its legend entry.
    pub fn reference(name: &str, y: f64, x0: f64, x1: f64) -> Self {
        Series { name: format!("{}{name}", chart::REFERENCE_PREFIX), points: vec![(x0, y), (x1, y)] }
    }
}

/// A named histogram: counts per bin.
#[derive(Clone, Debug)]
pub struct HistSeries {
    /// Legend name.
    pub name: String,
    /// One count per bin.
    pub counts: Vec<f64>,
}

/// Create `dir` (and its parents) if needed and check that a file can be written in it, so
/// that a command can refuse a bad `--report DIR` before it trains.
pub fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!("--report {}: exists and is not a directory", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("--report {}: cannot create the directory", dir.display()))?;
    let probe = dir.join(format!(".leaky-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("--report {}: cannot write in the directory", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Render `report` to `dir/index.html` (creating `dir`), atomically; returns the file's path.
pub fn write_report(dir: &Path, report: &Report) -> anyhow::Result<PathBuf> {
    let page = html::page(report)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the report directory {}", dir.display()))?;
    let path = dir.join("index.html");
    leaky::train::write_atomic(&path, page.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("leaky-report-unit-{}-{name}", std::process::id()))
    }

    #[test]
    fn writes_index_html_creating_the_directory() {
        let dir = scratch("new").join("nested");
        let r = Report { title: "t".into(), ..Default::default() };
        let path = write_report(&dir, &r).unwrap();
        assert_eq!(path, dir.join("index.html"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("<!DOCTYPE html>") && text.contains("<h1>t</h1>"));
        // Nothing but the page is left behind (no temporary file).
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(scratch("new"));
    }

    #[test]
    fn a_file_in_the_way_is_a_clear_error() {
        let file = scratch("file");
        std::fs::write(&file, b"x").unwrap();
        let e = prepare_dir(&file).unwrap_err().to_string();
        assert!(e.contains("is not a directory"), "{e}");
        let e = format!("{:#}", write_report(&file.join("sub"), &Report::default()).unwrap_err());
        assert!(e.contains("cannot create the report directory"), "{e}");
        let _ = std::fs::remove_file(&file);
    }
}
