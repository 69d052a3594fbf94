//! One [`Chart`] to one inline SVG (plotters, SVG backend only).
//!
//! plotters lays text out with a crude width estimate and emits `<text>` elements that the
//! browser sets in its own sans-serif font, so nothing here reads a font file. The tick
//! positions are chosen here (not by plotters) so that log axes get whole decades labelled
//! `1e-6` and linear axes get 1-2-5 steps whose labels all have the same number of decimals.

use super::{Chart, ChartKind, HistSeries, Series};
use anyhow::anyhow;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;

/// Width of every chart in SVG user units (the page scales it with `viewBox`).
pub const WIDTH: u32 = 720;
/// Height of every chart in SVG user units.
pub const HEIGHT: u32 = 360;

/// Series colours (Tableau 10): distinct hues that stay apart on a white page.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (0x4e, 0x79, 0xa7),
    (0xf2, 0x8e, 0x2b),
    (0xe1, 0x57, 0x59),
    (0x59, 0xa1, 0x4f),
    (0xb0, 0x7a, 0xa1),
    (0x76, 0xb7, 0xb2),
    (0x9c, 0x75, 0x5f),
    (0xed, 0xc9, 0x48),
    (0xff, 0x9d, 0xa7),
    (0xba, 0xb0, 0xac),
];

/// Reference lines (see [`Series::reference`]) are drawn dashed in this grey.
const REFERENCE_GREY: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// A series whose name starts with this is a reference line, drawn dashed and grey.
pub const REFERENCE_PREFIX: &str = "reference: ";

/// A rendered chart: the SVG (none when nothing could be drawn), its legend, and notes
/// on what was left out.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    /// The `<svg>` element, scaled to its container; `None` when no point was drawable.
    pub svg: Option<String>,
    /// Legend entries: name and CSS colour (`#rrggbb`), or `dashed` for a reference line.
    pub legend: Vec<(String, String)>,
    /// Sentences for the caption, e.g. how many points a log axis skipped.
    pub notes: Vec<String>,
}

/// The colour of series `i`.
pub fn colour(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

thread_local! {
    /// Series names in the order the current report first drew them: a name keeps its
    /// colour in every figure of one report ("broken" is the same colour everywhere).
    static NAMES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Start a new report: forget the name-to-colour assignments of the previous one.
pub fn reset_colours() {
    NAMES.with(|n| n.borrow_mut().clear());
}

/// The colour of the series called `name` in the current report (`i`, its position in
/// its chart, for an unnamed series).
pub fn colour_of(name: &str, i: usize) -> RGBColor {
    if name.is_empty() {
        return colour(i);
    }
    // Series drawn as one line because they were identical ("huber = grad_clip") keep the
    // colour of the first name.
    let name = name.split(" = ").next().unwrap_or(name);
    NAMES.with(|n| {
        let mut n = n.borrow_mut();
        let k = n.iter().position(|x| x == name).unwrap_or_else(|| {
            n.push(name.to_string());
            n.len() - 1
        });
        colour(k)
    })
}

fn css(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// An axis in drawing space (log10 of the value on a log axis).
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Labelled tick positions, inside `[lo, hi]`.
    pub ticks: Vec<f64>,
    /// Tick spacing (decades on a log axis).
    pub step: f64,
    /// Whether positions are log10 of the values.
    pub log: bool,
}

/// The 1-2-5 step nearest to `raw` from above.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    let k = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    k * p
}

impl Axis {
    /// A linear axis covering `[min, max]` with about 5 ticks on 1-2-5 steps. Data that
    /// are all >= 0 start at 0 when they reach down to half their maximum or stay within
    /// [0, 1] (shares: a share of 0.5 should not look like nothing); a single value gets a
    /// range around it.
    pub fn linear(min: f64, max: f64) -> Axis {
        let zero = min >= 0.0 && (min <= 0.5 * max || max <= 1.0);
        Axis::span(if zero { 0.0 } else { min }, max)
    }

    /// A linear axis covering `[min, max]` (no pull towards 0), about 5 ticks.
    pub fn span(min: f64, max: f64) -> Axis {
        let (mut min, mut max) = (min, max);
        if max - min <= f64::EPSILON * max.abs().max(1.0) {
            let d = if min == 0.0 { 1.0 } else { 0.5 * min.abs() };
            if min >= 0.0 && min - d < 0.0 {
                (min, max) = (0.0, max + d);
            } else {
                (min, max) = (min - d, max + d);
            }
        }
        Axis::with_step(min, max, nice_step((max - min) / 5.0))
    }

    /// [`Axis::linear`] with ticks on whole numbers only (steps, time steps, counts).
    pub fn integer(min: f64, max: f64) -> Axis {
        let a = Axis::span(min, max);
        if a.step >= 1.0 {
            return a;
        }
        let (lo, hi) = if max - min < 1.0 {
            ((min - 1.0).floor().max(if min >= 0.0 { 0.0 } else { f64::MIN }), (max + 1.0).ceil())
        } else {
            (min, max)
        };
        Axis::with_step(lo, hi, 1.0)
    }

    fn with_step(min: f64, max: f64, step: f64) -> Axis {
        let (t0, t1) = ((min / step).floor(), (max / step).ceil());
        let ticks: Vec<f64> = (0..=(t1 - t0) as i64).map(|k| (t0 + k as f64) * step).collect();
        let (lo, hi) = (t0 * step, t1 * step);
        // A little room so that a line on the top or bottom tick is not cut by the frame.
        let pad = 0.02 * (hi - lo);
        Axis { lo: lo - pad, hi: hi + pad, ticks, step, log: false }
    }

    /// The same ticks on exactly `[min, max]` (an x axis that ends where the data end);
    /// ticks outside are dropped.
    pub fn tight(self, min: f64, max: f64) -> Axis {
        if min.partial_cmp(&max) != Some(std::cmp::Ordering::Less) {
            return self;
        }
        let eps = 1e-9 * (max - min);
        let ticks = self.ticks.into_iter().filter(|t| *t >= min - eps && *t <= max + eps).collect();
        Axis { lo: min, hi: max, ticks, ..self }
    }

    /// A log axis (positions are log10) covering `[min, max]`, both > 0, on whole decades;
    /// at most about 8 labelled decades (every k-th decade beyond that), and ticks at 2 and
    /// 5 times each decade when the axis spans only one or two decades. A little room is
    /// left above and below so that a line on the first or last decade is not on the frame.
    pub fn log10(min: f64, max: f64) -> Axis {
        let (mut a, mut b) = (min.log10().floor(), max.log10().ceil());
        if b <= a {
            (a, b) = (a - 1.0, a + 1.0);
        }
        let step = ((b - a) / 8.0).ceil().max(1.0);
        a = (a / step).floor() * step;
        b = (b / step).ceil() * step;
        let mut ticks: Vec<f64> = (0..=((b - a) / step) as i64).map(|k| a + k as f64 * step).collect();
        if b - a <= 2.0 {
            let decades = ticks.clone();
            for d in &decades[..decades.len() - 1] {
                ticks.extend([d + 2f64.log10(), d + 5f64.log10()]);
            }
            ticks.sort_by(f64::total_cmp);
        }
        let pad = 0.03 * (b - a);
        Axis { lo: a - pad, hi: b + pad, ticks, step, log: true }
    }

    /// The drawing position of value `v` (log10 on a log axis).
    pub fn pos(&self, v: f64) -> f64 {
        if self.log {
            v.log10()
        } else {
            v
        }
    }

    /// Whether a log axis writes its labels in scientific notation: when any decade on it
    /// is outside 0.01..100, all of them are, so one axis never mixes "0.01" and "1e-3".
    fn scientific(&self) -> bool {
        self.log && self.ticks.iter().any(|&t| !(-2.0 - 1e-9..=2.0 + 1e-9).contains(&t))
    }

    /// The label of the tick at position `p`.
    pub fn label(&self, p: f64) -> String {
        if self.log && (p - p.round()).abs() < 1e-9 {
            let k = p.round() as i32;
            if self.scientific() {
                format!("1e{k}")
            } else {
                log_label(k)
            }
        } else if self.log {
            // 2 or 5 times a decade.
            let v = 10f64.powf(p);
            if (0.01..100.0).contains(&v) && !self.scientific() {
                format!("{}", (v * 1e3).round() / 1e3)
            } else {
                format!("{v:.0e}")
            }
        } else {
            linear_label(p, self.step)
        }
    }

    fn coord(&self) -> Ticked {
        Ticked { lo: self.lo, hi: self.hi, ticks: self.ticks.clone() }
    }
}

/// A linear plotters coordinate whose grid lines and labels sit exactly at our ticks.
pub struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let share = (value - self.lo) / (self.hi - self.lo);
        limit.0 + (share * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Bold points only: no light grid in between.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// The label of 10^k: `1`, `10`, `100`, `0.1`, `0.01`, else `1e{k}`.
pub fn log_label(k: i32) -> String {
    match k {
        -2 => "0.01".into(),
        -1 => "0.1".into(),
        0 => "1".into(),
        1 => "10".into(),
        2 => "100".into(),
        _ => format!("1e{k}"),
    }
}

/// The label of a linear tick at `v` on an axis with tick spacing `step`: as many decimals
/// as the step needs (so all labels of an axis match), scientific beyond 1e5 or below 1e-3.
pub fn linear_label(v: f64, step: f64) -> String {
    let v = if v.abs() < 1e-9 * step { 0.0 } else { v };
    if v == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&step) {
        let s = format!("{v:.1e}");
        return s.replace(".0e", "e");
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

fn font(size: f64) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&RGBColor(0x22, 0x22, 0x22))
}

/// The title's font size: 21, smaller for a title too long to fit the width at 21 (about
/// 0.6 em a character in bold sans-serif, after plotters' 1/1.24 scaling).
fn title_size(title: &str) -> f64 {
    let chars = title.chars().count().max(1) as f64;
    (WIDTH as f64 * 0.92 * 1.24 / (0.6 * chars)).clamp(12.0, 21.0)
}

/// Replace plotters' fixed `width`/`height` with a scalable element (the `viewBox` stays).
fn scalable(svg: &str, title: &str) -> String {
    let from = format!("<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" ");
    let to = format!(
        "<svg class=\"plot\" role=\"img\" aria-label=\"{}\" preserveAspectRatio=\"xMidYMid meet\" ",
        super::html::escape(title)
    );
    svg.replacen(&from, &to, 1).trim().to_string()
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type Ctx<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<Ticked, Ticked>>;

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e:?}")
}

/// Frame, title, grid, ticks and axis labels; returns the chart to draw into.
fn frame<'a>(
    root: &Area<'a>,
    chart: &Chart,
    x: &Axis,
    y: &Axis,
    x_label: &dyn Fn(&f64) -> String,
    x_font: f64,
) -> anyhow::Result<Ctx<'a>> {
    root.fill(&WHITE).map_err(err)?;
    let y_chars = y.ticks.iter().map(|&t| y.label(t).len()).max().unwrap_or(1);
    let mut ctx = ChartBuilder::on(root)
        .caption(
            &chart.title,
            ("sans-serif", title_size(&chart.title), FontStyle::Bold).into_font().color(&RGBColor(0x22, 0x22, 0x22)),
        )
        .margin_top(8)
        .margin_left(8)
        .margin_right(22)
        .margin_bottom(6)
        .x_label_area_size(50)
        // Room for the rotated axis label plus the widest tick label (about 0.6 em a character).
        .y_label_area_size(34 + (y_chars as f64 * 7.5) as u32)
        .build_cartesian_2d(x.coord(), y.coord())
        .map_err(err)?;
    let y_fmt = |v: &f64| y.label(*v);
    let mut mesh = ctx.configure_mesh();
    mesh.x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_label_formatter(x_label)
        .y_label_formatter(&y_fmt)
        .x_label_style(font(x_font))
        .y_label_style(font(15.0))
        .axis_desc_style(font(16.5))
        .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4))
        .light_line_style(TRANSPARENT)
        .axis_style(RGBColor(0x66, 0x66, 0x66));
    if matches!(chart.kind, ChartKind::Bars { .. }) {
        mesh.disable_x_mesh();
    }
    mesh.draw().map_err(err)?;
    Ok(ctx)
}

/// Render `chart` to an inline SVG.
pub fn render(chart: &Chart) -> anyhow::Result<Rendered> {
    match &chart.kind {
        ChartKind::Lines { series, log_y } => lines(chart, series, *log_y),
        ChartKind::Histograms { edges, series } => histograms(chart, edges, series),
        ChartKind::Bars { labels, groups, log_y } => bars(chart, labels, groups, *log_y),
        ChartKind::Svg { svg } => Ok(Rendered {
            svg: Some(embedded(svg)),
            legend: Vec::new(),
            notes: vec!["Drawn at its full size: scroll sideways when it is wider than the page.".into()],
        }),
    }
}

/// A ready-made `<svg>` (a computation graph), kept at its own size, text as drawn, in a box
/// that scrolls sideways when it is wider than the page (scaled down to the page it became
/// hard to read).
fn embedded(svg: &str) -> String {
    let svg = svg.trim();
    let Some(end) = svg.find('>') else { return svg.to_string() };
    format!("<div class=\"wide\">{} class=\"drawing\"{}</div>", &svg[..end], &svg[end..])
}

/// Polylines of drawable points.
pub type Runs = Vec<Vec<(f64, f64)>>;

/// Points of `s` that can be drawn: finite, and > 0 on a log axis; runs of drawable points
/// become separate polylines so that a skipped point breaks the line instead of bridging it.
pub fn drawable_runs(s: &Series, log_y: bool) -> (Runs, usize) {
    let mut runs: Runs = vec![Vec::new()];
    let mut skipped = 0;
    for &(x, y) in &s.points {
        if x.is_finite() && y.is_finite() && (!log_y || y > 0.0) {
            runs.last_mut().expect("non-empty").push((x, y));
        } else {
            skipped += 1;
            if !runs.last().expect("non-empty").is_empty() {
                runs.push(Vec::new());
            }
        }
    }
    runs.retain(|r| !r.is_empty());
    (runs, skipped)
}

fn skipped_note(skipped: usize, total: usize, log_y: bool) -> Option<String> {
    (skipped > 0).then(|| {
        let what = if log_y { "zero, negative or non-finite" } else { "non-finite" };
        let axis = if log_y { " (log scale)" } else { "" };
        format!("{skipped} of {total} points are {what} and not drawn{axis}.")
    })
}

fn no_data(kind: &str, log_y: bool) -> String {
    if log_y {
        format!("Nothing to draw: no {kind} is positive and finite, so the log-scale chart is left out.")
    } else {
        format!("Nothing to draw: no {kind} is finite, so the chart is left out.")
    }
}

fn legend_entry(name: &str, i: usize) -> (String, String) {
    match name.strip_prefix(REFERENCE_PREFIX) {
        Some(n) => (n.to_string(), "dashed".to_string()),
        None => (name.to_string(), css(colour_of(name, i))),
    }
}

/// Whether a linear chart of these series should be drawn on a log axis instead: every
/// finite value is positive and they span more than 3 decades (a loss that exploded to 1e23
/// would flatten every other curve at 0).
fn needs_log(series: &[Series]) -> Option<f64> {
    let ys: Vec<f64> = series
        .iter()
        .filter(|s| !s.name.starts_with(REFERENCE_PREFIX))
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .collect();
    let (lo, hi) = ys.iter().fold((f64::INFINITY, 0f64), |(a, b), &y| (a.min(y), b.max(y)));
    let decades = (hi / lo).log10();
    (!ys.is_empty() && lo > 0.0 && decades > 3.0).then_some(decades)
}

/// Where a series diverged: its last finite point, when a non-finite value follows it and
/// the series never comes back (a gap followed by finite values is not a divergence).
fn divergence(s: &Series, log_y: bool) -> Option<(f64, f64)> {
    let bad = s.points.iter().position(|p| !p.1.is_finite())?;
    if s.points[bad..].iter().any(|p| p.1.is_finite()) {
        return None;
    }
    s.points[..bad].iter().rev().find(|p| p.0.is_finite() && p.1.is_finite() && (!log_y || p.1 > 0.0)).copied()
}

fn lines(chart: &Chart, series: &[Series], log_y: bool) -> anyhow::Result<Rendered> {
    let mut out = Rendered::default();
    let log_y = log_y
        || match needs_log(series) {
            Some(d) => {
                out.notes.push(format!("Log scale: the values span {d:.0} decades."));
                true
            }
            None => false,
        };
    let prepared: Vec<(Runs, usize)> = series.iter().map(|s| drawable_runs(s, log_y)).collect();
    let data = |s: &&Series| !s.name.starts_with(REFERENCE_PREFIX);
    let total: usize = series.iter().filter(data).map(|s| s.points.len()).sum();
    let skipped: usize = series.iter().zip(&prepared).filter(|(s, _)| data(s)).map(|(_, p)| p.1).sum();
    let all = prepared.iter().flat_map(|p| p.0.iter().flatten());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        out.notes.push(no_data("point", log_y));
        return Ok(out);
    }
    out.notes.extend(skipped_note(skipped, total, log_y));
    let whole = prepared.iter().flat_map(|p| p.0.iter().flatten()).all(|&(x, _)| x.fract() == 0.0);
    let x = if whole { Axis::integer(x0, x1) } else { Axis::span(x0, x1) };
    let x = if x0 < x1 { x.tight(x0, x1) } else { x };
    let y = if log_y { Axis::log10(y0, y1) } else { Axis::linear(y0, y1) };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let x_fmt = |v: &f64| x.label(*v);
        let mut ctx = frame(&root, chart, &x, &y, &x_fmt, 15.0)?;
        let mut colour_index = 0;
        let mut diverged: Vec<String> = Vec::new();
        for (s, (runs, _)) in series.iter().zip(&prepared) {
            let reference = s.name.starts_with(REFERENCE_PREFIX);
            let c = if reference { REFERENCE_GREY } else { colour_of(&s.name, colour_index) };
            if !s.name.is_empty() {
                out.legend.push(legend_entry(&s.name, colour_index));
            }
            if !reference {
                colour_index += 1;
            }
            if let Some((dx, dy)) = divergence(s, log_y).filter(|_| !reference) {
                let at = (dx, y.pos(dy));
                ctx.draw_series(std::iter::once(Cross::new(at, 7, c.stroke_width(3)))).map_err(err)?;
                // The label to the right of the mark, where the diverged line has ended.
                let style = font(14.0).pos(Pos::new(HPos::Left, VPos::Center)).color(&c);
                let right = (dx + 0.015 * (x.hi - x.lo), at.1);
                ctx.draw_series(std::iter::once(Text::new("diverged", right, style))).map_err(err)?;
                diverged.push(s.name.clone());
            }
            for run in runs {
                let pts: Vec<(f64, f64)> = run.iter().map(|&(px, py)| (px, y.pos(py))).collect();
                if reference {
                    ctx.draw_series(DashedLineSeries::new(pts, 8, 6, c.stroke_width(2))).map_err(err)?;
                } else if pts.len() == 1 {
                    ctx.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(err)?;
                } else {
                    ctx.draw_series(LineSeries::new(pts, c.stroke_width(2))).map_err(err)?;
                }
            }
        }
        root.present().map_err(err)?;
        if !diverged.is_empty() {
            out.notes.push(format!(
                "× marks the last finite value of {} before it became NaN or infinite (the run diverged).",
                diverged.join(", ")
            ));
        }
    }
    out.svg = Some(scalable(&svg, &chart.title));
    Ok(out)
}

fn histograms(chart: &Chart, edges: &[f64], series: &[HistSeries]) -> anyhow::Result<Rendered> {
    let mut out = Rendered::default();
    let bins = edges.len().saturating_sub(1);
    let edges_ok = bins > 0 && edges.iter().all(|e| e.is_finite()) && edges.windows(2).all(|w| w[0] < w[1]);
    if !edges_ok {
        out.notes.push("Nothing to draw: the bin edges are not increasing finite values.".into());
        return Ok(out);
    }
    let mut max = 0f64;
    for s in series {
        if s.counts.len() != bins {
            out.notes.push(format!(
                "Series {} has {} counts for {bins} bins and is not drawn.",
                s.name,
                s.counts.len()
            ));
            continue;
        }
        max = s.counts.iter().copied().filter(|c| c.is_finite()).fold(max, f64::max);
    }
    if series.iter().all(|s| s.counts.len() != bins) {
        out.notes.push(no_data("series", false));
        return Ok(out);
    }
    let x = Axis::span(edges[0], edges[bins]).tight(edges[0], edges[bins]);
    let y = Axis::linear(0.0, max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let x_fmt = |v: &f64| x.label(*v);
        let mut ctx = frame(&root, chart, &x, &y, &x_fmt, 15.0)?;
        for (i, s) in series.iter().enumerate() {
            out.legend.push(legend_entry(&s.name, i));
            if s.counts.len() != bins {
                continue;
            }
            let c = colour_of(&s.name, i);
            let count = |k: usize| if s.counts[k].is_finite() { s.counts[k].max(0.0) } else { 0.0 };
            // The first series is filled lightly; the others are outlines only (two
            // translucent fills of different colours mix into a third, brown one where they
            // overlap). Each gets its outline as a step line in the full colour.
            if i == 0 {
                ctx.draw_series(
                    (0..bins)
                        .map(|k| Rectangle::new([(edges[k], 0.0), (edges[k + 1], count(k))], c.mix(0.18).filled())),
                )
                .map_err(err)?;
            }
            let mut step = vec![(edges[0], 0.0)];
            for k in 0..bins {
                step.push((edges[k], count(k)));
                step.push((edges[k + 1], count(k)));
            }
            step.push((edges[bins], 0.0));
            ctx.draw_series(LineSeries::new(step, c.stroke_width(2))).map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    out.svg = Some(scalable(&svg, &chart.title));
    Ok(out)
}

fn bars(chart: &Chart, labels: &[String], groups: &[Series], log_y: bool) -> anyhow::Result<Rendered> {
    let mut out = Rendered::default();
    let n = labels.len();
    let value = |g: &Series, i: usize| g.points.get(i).map(|p| p.1).filter(|v| v.is_finite() && (!log_y || *v > 0.0));
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut skipped = 0;
    for g in groups {
        for i in 0..n {
            match value(g, i) {
                Some(v) => (y0, y1) = (y0.min(v), y1.max(v)),
                None => skipped += 1,
            }
        }
    }
    if y0 > y1 {
        out.notes.push(no_data("bar value", log_y));
        return Ok(out);
    }
    out.notes.extend(skipped_note(skipped, n * groups.len(), log_y).map(|s| s.replace("points", "bars")));
    let y = if log_y { Axis::log10(y0, y1) } else { Axis::linear(y0.min(0.0), y1.max(0.0)) };
    let x = Axis { lo: -0.5, hi: n as f64 - 0.5, ticks: (0..n).map(|i| i as f64).collect(), step: 1.0, log: false };
    // Shrink the category labels until the longest fits its slot (about 0.6 em a character).
    let slot = (WIDTH as f64 - 120.0) / n.max(1) as f64;
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1).max(1) as f64;
    let x_font = (slot / (0.62 * longest)).clamp(10.0, 15.0);
    let fits = (slot / (0.62 * x_font)).floor().max(3.0) as usize;
    let shown: Vec<String> = labels
        .iter()
        .map(|l| {
            if l.chars().count() > fits {
                format!("{}…", l.chars().take(fits - 1).collect::<String>())
            } else {
                l.clone()
            }
        })
        .collect();
    if shown != labels {
        out.notes.push(
            "Long bar labels are shortened to fit: each starts with the layer's index in the model listing.".into(),
        );
    }
    let base = if log_y { y.lo } else { 0.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let x_fmt = |v: &f64| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                shown[i as usize].clone()
            } else {
                String::new()
            }
        };
        let mut ctx = frame(&root, chart, &x, &y, &x_fmt, x_font)?;
        let width = 0.8 / groups.len().max(1) as f64;
        for (j, g) in groups.iter().enumerate() {
            out.legend.push(legend_entry(&g.name, j));
            let c = colour_of(&g.name, j);
            let rects = (0..n).filter_map(|i| {
                let v = value(g, i)?;
                let left = i as f64 - 0.4 + j as f64 * width;
                Some(Rectangle::new([(left, base), (left + width * 0.92, y.pos(v))], c.filled()))
            });
            ctx.draw_series(rects).map_err(err)?;
            // A bar that cannot be drawn (0 on a log axis, NaN) is named at the base instead
            // of leaving a silent gap.
            let missing = (0..n).filter(|&i| value(g, i).is_none()).map(|i| {
                let raw = g.points.get(i).map(|p| p.1);
                let text = match raw {
                    Some(0.0) => "0".to_string(),
                    Some(v) if v.is_finite() => "<0".to_string(),
                    _ => "n/a".to_string(),
                };
                let centre = i as f64 - 0.4 + (j as f64 + 0.46) * width;
                let style = font(15.0).pos(Pos::new(HPos::Center, VPos::Bottom)).color(&c);
                Text::new(text, (centre, y.lo + 0.01 * (y.hi - y.lo)), style)
            });
            ctx.draw_series(missing).map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    out.svg = Some(scalable(&svg, &chart.title));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(kind: ChartKind) -> Chart {
        Chart {
            title: "T <&>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            caption: "c".into(),
            kind,
            shows: Vec::new(),
            layer: None,
        }
    }

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series { name: name.into(), points: points.to_vec() }
    }

    #[test]
    fn linear_ticks_are_nice_and_cover_the_data() {
        let a = Axis::linear(0.13, 0.87);
        assert_eq!(a.step, 0.2);
        assert!(a.lo <= 0.0 && a.hi >= 0.87);
        assert_eq!(a.ticks.iter().map(|&t| a.label(t)).collect::<Vec<_>>(), ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        // Negative data keep their own lower end.
        let b = Axis::linear(-3.0, 7.0);
        assert_eq!(b.ticks.first(), Some(&-4.0));
        assert_eq!(b.ticks.last(), Some(&8.0));
        // A constant series still gets a non-empty range.
        let c = Axis::linear(2.0, 2.0);
        assert!(c.lo < 2.0 && c.hi > 2.0);
        // Steps are whole numbers, even for a single one.
        let d = Axis::integer(0.0, 0.0);
        assert_eq!(d.ticks, [0.0, 1.0]);
        let e = Axis::integer(3.0, 6.0);
        assert_eq!(e.ticks, [3.0, 4.0, 5.0, 6.0]);
        assert_eq!(Axis::integer(0.0, 600.0).step, 200.0);
        assert_eq!(linear_label(2.5e-5, 1e-5), "2.5e-5");
        assert_eq!(linear_label(30000.0, 10000.0), "30000");
        assert_eq!(linear_label(3e6, 1e6), "3e6");
    }

    #[test]
    fn log_ticks_are_whole_decades() {
        let a = Axis::log10(3e-7, 0.5);
        assert!(a.lo < -7.0 && a.lo > -7.5 && a.hi > 0.0 && a.hi < 0.5, "{a:?}");
        let labels: Vec<String> = a.ticks.iter().map(|&t| a.label(t)).collect();
        // One notation per axis: this one reaches below 0.01, so every decade is scientific.
        assert_eq!(labels, ["1e-7", "1e-6", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1", "1e0"]);
        let e = Axis::log10(0.02, 50.0);
        let labels: Vec<String> = e.ticks.iter().map(|&t| e.label(t)).collect();
        assert_eq!(labels, ["0.01", "0.1", "1", "10", "100"]);
        // 40 decades: every 5th is labelled.
        let b = Axis::log10(1e-30, 1e10);
        assert_eq!(b.step, 5.0);
        assert_eq!(b.ticks.len(), 9);
        // Within one decade: the decade around it, with 2 and 5 labelled.
        let c = Axis::log10(2.0, 3.0);
        let labels: Vec<String> = c.ticks.iter().map(|&t| c.label(t)).collect();
        assert_eq!(labels, ["1", "2", "5", "10"]);
        let d = Axis::log10(1.5e-4, 9e-4);
        let labels: Vec<String> = d.ticks.iter().map(|&t| d.label(t)).collect();
        assert_eq!(labels, ["1e-4", "2e-4", "5e-4", "1e-3"]);
    }

    #[test]
    fn a_series_spanning_decades_gets_a_log_axis_and_a_divergence_mark() {
        // The RNN story: one run explodes to 3e23 then NaN, the others stay near 0.4.
        let exploding = series("exploding", &[(0.0, 2.4), (1.0, 1e10), (2.0, 3e23), (3.0, f64::NAN)]);
        let calm = series("lstm", &[(0.0, 0.5), (1.0, 0.45), (2.0, 0.4), (3.0, 0.4)]);
        let r =
            render(&chart(ChartKind::Lines { series: vec![exploding.clone(), calm.clone()], log_y: false })).unwrap();
        let notes = r.notes.join(" ");
        assert!(notes.contains("Log scale: the values span 24 decades"), "{notes}");
        assert!(notes.contains("× marks the last finite value of exploding"), "{notes}");
        assert!(r.svg.unwrap().contains("diverged"));
        assert_eq!(divergence(&exploding, true), Some((2.0, 3e23)));
        assert_eq!(divergence(&calm, true), None);
        // Within 3 decades, or with a value <= 0, the axis stays linear.
        assert!(needs_log(&[calm]).is_none());
        assert!(needs_log(&[series("s", &[(0.0, 0.0), (1.0, 1e6)])]).is_none());
    }

    #[test]
    fn a_name_keeps_its_colour_across_charts() {
        reset_colours();
        let first = colour_of("broken", 0);
        let fixed = colour_of("fixed", 1);
        assert_ne!(first, fixed);
        // Another chart lists them in the other order: the colours follow the names.
        assert_eq!(colour_of("fixed", 0), fixed);
        assert_eq!(colour_of("broken", 1), first);
        // Identical runs drawn as one line keep the first name's colour.
        assert_eq!(colour_of("fixed = other", 0), fixed);
        reset_colours();
        assert_eq!(colour_of("fixed", 0), colour(0));
    }

    #[test]
    fn log_axis_skips_non_positive_and_non_finite_points() {
        let s = series("s", &[(0.0, 1.0), (1.0, 0.0), (2.0, -1.0), (3.0, f64::NAN), (4.0, 10.0), (5.0, 100.0)]);
        let (runs, skipped) = drawable_runs(&s, true);
        assert_eq!(skipped, 3);
        assert_eq!(runs, vec![vec![(0.0, 1.0)], vec![(4.0, 10.0), (5.0, 100.0)]]);
        let (runs, skipped) = drawable_runs(&s, false);
        assert_eq!(skipped, 1);
        assert_eq!(runs.len(), 2);
        let r = render(&chart(ChartKind::Lines { series: vec![s], log_y: true })).unwrap();
        assert!(r.svg.is_some());
        assert_eq!(r.notes, ["3 of 6 points are zero, negative or non-finite and not drawn (log scale)."]);
    }

    #[test]
    fn all_points_skipped_says_so_instead_of_an_empty_chart() {
        let s = series("s", &[(0.0, 0.0), (1.0, -2.0)]);
        let r = render(&chart(ChartKind::Lines { series: vec![s.clone()], log_y: true })).unwrap();
        assert!(r.svg.is_none());
        assert!(r.notes[0].starts_with("Nothing to draw"), "{:?}", r.notes);
        let r = render(&chart(ChartKind::Bars { labels: vec!["a".into(), "b".into()], groups: vec![s], log_y: true }))
            .unwrap();
        assert!(r.svg.is_none());
        let r = render(&chart(ChartKind::Lines { series: vec![], log_y: false })).unwrap();
        assert!(r.svg.is_none());
    }

    /// Every chart kind gives a scalable SVG with the title (escaped), both axis labels,
    /// tick labels, and one drawn shape per series element.
    #[test]
    fn every_kind_renders_a_non_empty_svg() {
        let kinds = vec![
            ChartKind::Lines {
                series: vec![
                    series("loss", &[(0.0, 2.3), (1.0, 1.2), (2.0, 0.7)]),
                    series(&format!("{REFERENCE_PREFIX}ln 10"), &[(0.0, 2.3), (2.0, 2.3)]),
                ],
                log_y: false,
            },
            ChartKind::Lines { series: vec![series("ratio", &[(0.0, 1e-5), (10.0, 1e-3), (20.0, 1e-1)])], log_y: true },
            ChartKind::Histograms {
                edges: vec![0.0, 0.25, 0.5, 0.75, 1.0],
                series: vec![
                    HistSeries { name: "first".into(), counts: vec![1.0, 5.0, 5.0, 1.0] },
                    HistSeries { name: "last".into(), counts: vec![6.0, 0.0, 0.0, 6.0] },
                ],
            },
            ChartKind::Bars {
                labels: vec!["layer 0".into(), "layer 1".into(), "layer 2".into()],
                groups: vec![
                    series("step 0", &[(0.0, 1e-6), (1.0, 1e-3), (2.0, 1.0)]),
                    series("step 90", &[(0.0, 1e-7), (1.0, 1e-4), (2.0, 0.5)]),
                ],
                log_y: true,
            },
            ChartKind::Bars {
                labels: vec!["a".into(), "b".into()],
                groups: vec![series("g", &[(0.0, -1.0), (1.0, 2.0)])],
                log_y: false,
            },
        ];
        for kind in kinds {
            let r = render(&chart(kind.clone())).unwrap();
            let svg = r.svg.unwrap_or_else(|| panic!("no svg for {kind:?}: {:?}", r.notes));
            assert!(svg.starts_with("<svg class=\"plot\""), "{}", &svg[..80]);
            assert!(svg.contains("viewBox=\"0 0 720 360\""));
            assert!(!svg.contains("<svg width="), "fixed width left in");
            assert!(svg.contains("T &lt;&amp;&gt;"), "title not escaped");
            assert!(svg.contains("\nx\n</text>") && svg.contains("\ny\n</text>"), "axis labels");
            assert!(svg.matches("<text").count() >= 6, "title, labels and ticks");
            assert!(svg.matches("<polyline").count() + svg.matches("<rect").count() >= 3);
            assert!(svg.ends_with("</svg>"));
        }
    }

    #[test]
    fn long_titles_shrink_to_fit() {
        assert_eq!(title_size("Training loss"), 21.0);
        let long = "x".repeat(100);
        let size = title_size(&long);
        // Drawn at size/1.24 px, about 0.6 em a character: inside the chart's width.
        assert!(size < 21.0 && 100.0 * 0.6 * size / 1.24 < WIDTH as f64, "{size}");
    }

    #[test]
    fn reference_series_are_dashed_in_the_legend() {
        let r = render(&chart(ChartKind::Lines {
            series: vec![
                series("a", &[(0.0, 1.0), (1.0, 2.0)]),
                series("reference: 1e-3", &[(0.0, 1e-3), (1.0, 1e-3)]),
            ],
            log_y: true,
        }))
        .unwrap();
        assert_eq!(r.legend, [("a".to_string(), "#4e79a7".to_string()), ("1e-3".to_string(), "dashed".to_string())]);
    }
}
