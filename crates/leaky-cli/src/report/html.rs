//! The page: a [`Report`] to one self-contained HTML document (inline CSS, inline SVG, one
//! small inline script that checks the charts; no file, font, script or style from
//! anywhere else).

use super::chart::{self, Rendered};
use super::{Chart, Report, Section, Table};
use leaky::doctor::finding::{Code, Finding};
use serde_json::Value;
use std::fmt::Write;

/// Escape text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A number as evidence reads, in the terminal (`leaky doctor`) and in the report:
/// scientific (4 significant digits) when tiny or huge, 4 decimals when fractional, else as is.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e4) {
        format!("{x:.3e}")
    } else if x.fract() != 0.0 {
        format!("{x:.4}")
    } else {
        format!("{x}")
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map(number).unwrap_or_else(|| n.to_string()),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().take(12).map(value_text).collect();
            let more = if a.len() > 12 { format!(", … ({} in all)", a.len()) } else { String::new() };
            format!("[{}{more}]", items.join(", "))
        }
        Value::Null => "none".into(),
        other => other.to_string(),
    }
}

/// The minimum number of SVG elements a drawn chart has (frame, axes, ticks, labels, data);
/// the in-page check flags a chart with fewer.
pub const MIN_SVG_ELEMENTS: usize = 20;

const CSS: &str = r#"
:root { --ink: #1f2328; --muted: #57606a; --line: #d0d7de; --soft: #f6f8fa;
  --error: #b42318; --warning: #b54708; --info: #175cd3; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 920px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 1.9rem; margin: 0 0 .4rem; line-height: 1.2; }
h2 { font-size: 1.4rem; margin: 2.2rem 0 .6rem; padding-bottom: .25rem; border-bottom: 1px solid var(--line); }
p { margin: .5rem 0; }
a { color: #0969da; }
code { font: .92em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
nav.toc { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: .6rem 1rem; margin: 1rem 0; }
nav.toc h2 { font-size: 1rem; margin: 0 0 .3rem; border: 0; padding: 0; }
nav.toc ol { margin: 0; padding-left: 1.4rem; }
nav.toc ul { margin: 0 0 .2rem; padding-left: 1.1rem; font-size: .9rem; color: var(--muted); }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; min-width: 50%; }
caption { text-align: left; font-weight: 600; padding-bottom: .3rem; }
th, td { border: 1px solid var(--line); padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: var(--soft); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.finding { border: 1px solid var(--line); border-left: 6px solid var(--muted); border-radius: 6px; padding: .6rem .9rem; margin: .8rem 0; }
.finding.error { border-left-color: var(--error); }
.finding.warning { border-left-color: var(--warning); }
.finding.info { border-left-color: var(--info); }
.finding .head { font-weight: 600; }
.finding.consequence { border-left-style: dashed; background: var(--soft); }
p.shown { margin: .3rem 0 0; font-size: .93rem; }
p.repeat { margin: -.4rem 0 .8rem 1rem; color: var(--muted); font-size: .93rem; }
.sev { display: inline-block; min-width: 4.6em; text-align: center; color: #fff; border-radius: 4px; padding: 0 .4em; margin-right: .4em; font-size: .85rem; text-transform: uppercase; letter-spacing: .03em; }
.sev.error { background: var(--error); } .sev.warning { background: var(--warning); } .sev.info { background: var(--info); }
.variant { font-weight: normal; color: var(--muted); border: 1px solid var(--line); border-radius: 4px; padding: 0 .35em; margin-left: .4em; font-size: .85rem; }
dl.evidence { display: flex; flex-wrap: wrap; gap: .2rem .5rem; margin: .45rem 0; font-size: .88rem; }
dl.evidence div { background: var(--soft); border: 1px solid var(--line); border-radius: 4px; padding: 0 .4em; }
dl.evidence dt, dl.evidence dd { display: inline; margin: 0; }
dl.evidence dt { color: var(--muted); } dl.evidence dt::after { content: " = "; }
dl.evidence dd { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.finding ol { margin: .2rem 0 0; padding-left: 1.4rem; }
.label { color: var(--muted); font-weight: 600; }
figure.chart { margin: 1.4rem 0; border: 1px solid var(--line); border-radius: 6px; padding: .6rem .6rem .4rem; }
svg.plot { display: block; width: 100%; height: auto; }
div.wide { overflow-x: auto; }
svg.drawing { display: block; max-width: none; }
ul.legend { list-style: none; display: flex; flex-wrap: wrap; gap: .2rem 1.1rem; margin: .3rem 0 0; padding: 0 .4rem; font-size: .9rem; }
ul.legend .key { display: inline-block; width: 1.6em; height: .3em; vertical-align: middle; margin-right: .4em; border-radius: 2px; }
ul.legend .key.dashed { background: repeating-linear-gradient(90deg, #555 0 6px, transparent 6px 10px); }
figcaption { margin: .5rem .4rem 0; font-size: .93rem; color: var(--ink); }
figcaption .note { color: var(--muted); }
p.nodata { margin: 1rem .4rem; padding: 1rem; background: var(--soft); border: 1px dashed var(--line); color: var(--muted); }
footer { margin-top: 2.5rem; color: var(--muted); font-size: .85rem; }
"#;

/// Checks every chart once the page has laid out and writes the result into `<body>`'s
/// data attributes (read by the Chromium test): `chartsOk` = drawn charts with a caption,
/// a non-empty bounding box and at least `MIN` elements, over all figures; `chartsEmpty` =
/// figures that say they had nothing to draw; `chartsBad` = ids of the failures;
/// `external` = elements that load anything from outside the page.
const CHECK_SCRIPT: &str = r#"
(function () {
  var figs = document.querySelectorAll("figure.chart"), ok = 0, empty = 0, bad = [];
  for (var i = 0; i < figs.length; i++) {
    var f = figs[i], cap = f.querySelector("figcaption"), svg = f.querySelector("svg");
    var captioned = cap !== null && cap.textContent.trim().length > 0;
    if (!svg) {
      if (captioned && f.querySelector("p.nodata")) { empty++; } else { bad.push(f.id); }
      continue;
    }
    var box = svg.getBBox(), n = svg.querySelectorAll("*").length;
    var texts = svg.querySelectorAll("text").length;
    if (captioned && box.width > 0 && box.height > 0 && n >= MIN && texts >= 3) { ok++; } else { bad.push(f.id); }
  }
  var ext = document.querySelectorAll("img, link, script[src], iframe, object, embed, use, image").length;
  var b = document.body.dataset;
  b.chartsOk = ok + "/" + figs.length; b.chartsEmpty = String(empty); b.chartsBad = bad.join(" "); b.external = String(ext);
})();
"#;

/// A figure of the page: its number and its chart.
struct FigureRef<'a> {
    number: usize,
    chart: &'a Chart,
}

/// One finding; `depth` > 0 marks a consequence, indented under its cause; `figures` are
/// the figures its findings may link to (those that show its code get a link).
fn finding(out: &mut String, variant: &str, f: &Finding, depth: usize, figures: &[FigureRef], variants: &[&str]) {
    let sev = f.severity.as_str();
    let nested = if depth > 0 {
        format!(" consequence\" style=\"margin-left: {:.1}rem", 2.0 * depth.min(4) as f64)
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "<article class=\"finding {sev}{nested}\"><div class=\"head\">{}<span class=\"sev {sev}\">{sev}</span><code>{}</code> in {}",
        if f.id.is_empty() { String::new() } else { format!("{} ", escape(&f.id)) },
        escape(f.code.as_str()),
        escape(&f.where_)
    );
    if let Some(s) = f.step {
        let _ = write!(out, " at step {s}");
    }
    if let Some(c) = &f.caused_by {
        let _ = write!(out, " (follows from {})", escape(c));
    }
    if !variant.is_empty() {
        let _ = write!(out, "<span class=\"variant\">{}</span>", escape(variant));
    }
    out.push_str("</div>\n");
    if !f.evidence.is_empty() {
        out.push_str("<dl class=\"evidence\">");
        for (k, v) in &f.evidence {
            let _ = write!(out, "<div><dt>{}</dt><dd>{}</dd></div>", escape(k), escape(&value_text(v)));
        }
        out.push_str("</dl>\n");
    }
    if !f.why.is_empty() {
        let _ = writeln!(out, "<p><span class=\"label\">Why:</span> {}</p>", escape(&f.why));
    }
    if !f.fix.is_empty() {
        out.push_str("<div><span class=\"label\">Fixes, best first:</span><ol>");
        for fix in &f.fix {
            let _ = write!(out, "<li>{}</li>", escape(&fix.to_string()));
        }
        out.push_str("</ol></div>\n");
    }
    let shown: Vec<String> = figures
        .iter()
        .filter(|g| g.chart.shows_finding(f))
        // A chart that draws some of the section's variants (by its series names) shows this
        // finding only when it draws this finding's variant.
        .filter(|g| {
            variant.is_empty() || !variants.iter().any(|v| g.chart.draws_variant(v)) || g.chart.draws_variant(variant)
        })
        .map(|g| format!("<a href=\"#fig-{n}\">Figure {n}</a> ({})", escape(&g.chart.title), n = g.number))
        .collect();
    if !shown.is_empty() {
        let _ = writeln!(out, "<p class=\"shown\"><span class=\"label\">Seen in:</span> {}</p>", shown.join(", "));
    }
    out.push_str("</article>\n");
}

fn is_numeric(cell: &str) -> bool {
    let t = cell.trim().trim_end_matches('%').trim();
    !t.is_empty() && t.parse::<f64>().is_ok()
}

fn table(out: &mut String, t: &Table) {
    out.push_str("<table>");
    if !t.caption.is_empty() {
        let _ = write!(out, "<caption>{}</caption>", escape(&t.caption));
    }
    if !t.header.is_empty() {
        out.push_str("<thead><tr>");
        for h in &t.header {
            let _ = write!(out, "<th>{}</th>", escape(h));
        }
        out.push_str("</tr></thead>");
    }
    out.push_str("<tbody>\n");
    // Right-align a column only when every cell in it is a number.
    let width = t.rows.iter().map(Vec::len).max().unwrap_or(0);
    let numeric: Vec<bool> =
        (0..width).map(|j| t.rows.iter().all(|r| r.get(j).is_none_or(|c| is_numeric(c)))).collect();
    for row in &t.rows {
        out.push_str("<tr>");
        for (j, c) in row.iter().enumerate() {
            let class = if numeric[j] { " class=\"num\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", escape(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

fn figure(out: &mut String, number: usize, c: &Chart) -> anyhow::Result<()> {
    let Rendered { svg, legend, notes } = chart::render(c)?;
    // Without a chart the notes are said in its place, not again in the caption.
    let drawn = svg.is_some();
    let _ = writeln!(out, "<figure class=\"chart\" id=\"fig-{number}\">");
    match svg {
        Some(svg) => {
            out.push_str(&svg);
            out.push('\n');
        }
        None => {
            let _ = write!(out, "<p class=\"nodata\"><b>{}</b><br>{}</p>", escape(&c.title), escape(&notes.join(" ")));
        }
    }
    if !legend.is_empty() {
        out.push_str("<ul class=\"legend\">");
        for (name, colour) in &legend {
            let key = if colour == "dashed" {
                "<span class=\"key dashed\"></span>".to_string()
            } else {
                format!("<span class=\"key\" style=\"background:{colour}\"></span>")
            };
            let _ = write!(out, "<li>{key}{}</li>", escape(name));
        }
        out.push_str("</ul>\n");
    }
    let _ = write!(out, "<figcaption><b>Figure {number}.</b> {}", escape(&c.caption));
    if drawn && !notes.is_empty() {
        let _ = write!(out, " <span class=\"note\">{}</span>", escape(&notes.join(" ")));
    }
    out.push_str("</figcaption></figure>\n");
    Ok(())
}

/// The cause-tree depth of each finding, computed among the findings of its own variant
/// (every variant's ids start at F1).
fn finding_depths(findings: &[(String, Finding)]) -> Vec<usize> {
    let mut groups: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (i, (variant, _)) in findings.iter().enumerate() {
        groups.entry(variant.as_str()).or_default().push(i);
    }
    let mut out = vec![0; findings.len()];
    for members in groups.values() {
        let list: Vec<Finding> = members.iter().map(|&i| findings[i].1.clone()).collect();
        for (&i, d) in members.iter().zip(leaky::doctor::causes::depths(&list)) {
            out[i] = d;
        }
    }
    out
}

/// Whether a finding is printed, with the indices of the repeats folded into it, or folded
/// into an earlier one.
enum Repeat {
    Shown(Vec<usize>),
    Folded,
}

/// Fold repeated finding trees: a root cause, with the consequences listed under it, whose
/// variant, code, severity and place, and whose consequences' codes, severities and places,
/// match an earlier root's (the same diagnosis from each seed of a multi-seed demo) is listed
/// under the first one instead of in full. A tree is a root and the consequences (depth > 0)
/// that follow it in the listing, which puts each root's consequences right after it.
fn repeat_groups(findings: &[(String, Finding)], depths: &[usize]) -> Vec<Repeat> {
    let n = findings.len();
    let tree_end = |i: usize| (i + 1..n).find(|&k| depths[k] == 0 || findings[k].0 != findings[i].0).unwrap_or(n);
    let signature = |i: usize| -> Vec<(&str, Code, &str, &str)> {
        (i..tree_end(i))
            .map(|k| {
                let (v, f) = &findings[k];
                (v.as_str(), f.code, f.severity.as_str(), f.where_.as_str())
            })
            .collect()
    };
    let mut out: Vec<Repeat> = (0..n).map(|_| Repeat::Shown(Vec::new())).collect();
    for i in 0..n {
        if depths[i] != 0 || matches!(out[i], Repeat::Folded) {
            continue;
        }
        let mine = signature(i);
        let repeats: Vec<usize> = (i + 1..n)
            .filter(|&k| depths[k] == 0 && !matches!(out[k], Repeat::Folded) && signature(k) == mine)
            .collect();
        for &k in &repeats {
            for slot in &mut out[k..tree_end(k)] {
                *slot = Repeat::Folded;
            }
        }
        out[i] = Repeat::Shown(repeats);
    }
    out
}

/// How a folded repeat is named: its seed and reward scale when the demo tagged them, and
/// its step.
fn run_label(f: &Finding) -> String {
    let mut parts = Vec::new();
    for key in ["seed", "reward_scale"] {
        if let Some(v) = f.evidence.get(key) {
            parts.push(format!("{key} {}", value_text(v)));
        }
    }
    if let Some(step) = f.step {
        parts.push(format!("step {step}"));
    }
    if parts.is_empty() {
        "(no run label)".to_string()
    } else {
        parts.join(", ")
    }
}

fn section(
    out: &mut String,
    index: usize,
    s: &Section,
    first_figure: usize,
    figures: &[FigureRef],
) -> anyhow::Result<()> {
    let _ = writeln!(out, "<section id=\"sec-{index}\"><h2>{index}. {}</h2>", escape(&s.title));
    for p in &s.text {
        let _ = writeln!(out, "<p>{}</p>", escape(p));
    }
    for t in &s.tables {
        table(out, t);
    }
    let mut variants: Vec<&str> = s.findings.iter().map(|(v, _)| v.as_str()).filter(|v| !v.is_empty()).collect();
    variants.dedup();
    let depths = finding_depths(&s.findings);
    let groups = repeat_groups(&s.findings, &depths);
    for (i, ((variant, f), &depth)) in s.findings.iter().zip(&depths).enumerate() {
        match &groups[i] {
            Repeat::Shown(others) => {
                finding(out, variant, f, depth, figures, &variants);
                if !others.is_empty() {
                    let runs: Vec<String> = others.iter().map(|&k| run_label(&s.findings[k].1)).collect();
                    // The consequences listed under this root (its tree), for the note.
                    let tree =
                        (i + 1..s.findings.len()).take_while(|&k| depths[k] > 0 && s.findings[k].0 == *variant).count();
                    let with = match tree {
                        0 => String::new(),
                        1 => " and the consequence under it".to_string(),
                        t => format!(" and the {t} consequences under it"),
                    };
                    let _ = writeln!(
                        out,
                        "<p class=\"repeat\">The same finding ({} {} in {}){with} also came from {} more run(s) of {}: {}.</p>",
                        escape(f.severity.as_str()),
                        escape(f.code.as_str()),
                        escape(&f.where_),
                        others.len(),
                        if variant.is_empty() { "this run".to_string() } else { escape(variant) },
                        escape(&runs.join("; "))
                    );
                }
            }
            Repeat::Folded => {}
        }
    }
    for (k, c) in s.charts.iter().enumerate() {
        figure(out, first_figure + k, c)?;
    }
    out.push_str("</section>\n");
    Ok(())
}

/// The figures the findings of section `i` link to: its own charts when it has any (a demo:
/// findings and charts together); else the charts of the sections after it, up to the next
/// section with findings of its own (a doctor or inspect report: one "Findings" section,
/// then sections of charts). `first_figure[k]` is the number of section k's first figure.
fn link_scope<'a>(r: &'a Report, i: usize, first_figure: &[usize]) -> Vec<FigureRef<'a>> {
    let sections = if r.sections[i].charts.is_empty() {
        let end = (i + 1..r.sections.len()).find(|&k| !r.sections[k].findings.is_empty()).unwrap_or(r.sections.len());
        i + 1..end
    } else {
        i..i + 1
    };
    sections
        .flat_map(|k| {
            r.sections[k]
                .charts
                .iter()
                .enumerate()
                .map(move |(j, c)| FigureRef { number: first_figure[k] + j, chart: c })
        })
        .collect()
}

/// The whole page.
pub fn page(r: &Report) -> anyhow::Result<String> {
    super::chart::reset_colours();
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n",
        escape(&r.title),
        escape(&r.title)
    );
    for p in &r.intro {
        let _ = writeln!(out, "<p>{}</p>", escape(p));
    }
    if !r.sections.is_empty() {
        out.push_str("<nav class=\"toc\"><h2>Contents</h2><ol>\n");
        let mut fig = 1;
        for (i, s) in r.sections.iter().enumerate() {
            let _ = write!(out, "<li><a href=\"#sec-{}\">{}</a>", i + 1, escape(&s.title));
            if !s.charts.is_empty() {
                out.push_str("<ul>");
                for c in &s.charts {
                    let _ = write!(out, "<li><a href=\"#fig-{fig}\">Figure {fig}</a>: {}</li>", escape(&c.title));
                    fig += 1;
                }
                out.push_str("</ul>");
            }
            out.push_str("</li>\n");
        }
        out.push_str("</ol></nav>\n");
    }
    let mut first_figure = Vec::with_capacity(r.sections.len());
    let mut fig = 1;
    for s in &r.sections {
        first_figure.push(fig);
        fig += s.charts.len();
    }
    for (i, s) in r.sections.iter().enumerate() {
        let figures = link_scope(r, i, &first_figure);
        section(&mut out, i + 1, s, first_figure[i], &figures)?;
    }
    let _ = write!(
        out,
        "<footer>Written by leaky {}. One self-contained file: the charts are inline SVG, nothing is loaded from elsewhere.</footer>\n</main>\n<script>{}</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        CHECK_SCRIPT.replace("MIN", &MIN_SVG_ELEMENTS.to_string())
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ChartKind, Series};
    use leaky::doctor::finding::{Code, Severity};

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(escape("<b>\"x\" & 'y'</b>"), "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;");
        assert_eq!(escape("plain ü"), "plain ü");
    }

    #[test]
    fn numbers_read_like_the_terminal() {
        assert_eq!(number(2.5e-7), "2.500e-7");
        assert_eq!(number(0.25), "0.2500");
        assert_eq!(number(12.0), "12");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "inf");
        assert_eq!(number(-23456.0), "-2.346e4");
        assert_eq!(number(1e-3), "0.0010");
        assert_eq!(number(9999.0), "9999");
        assert_eq!(number(0.0), "0");
    }

    fn evil_report() -> Report {
        let f = Finding::new(Code::Saturation, Severity::Error, "layer <1> (sigmoid)", Some(3), "why & <how>")
            .with("saturated_fraction", 0.98)
            .with("note", "<script>")
            .fixes(["use <tanh>"]);
        Report {
            title: "T <script>alert(1)</script>".into(),
            intro: vec!["a & b".into()],
            sections: vec![Section {
                title: "S \"q\"".into(),
                text: vec!["<i>not italic</i>".into()],
                tables: vec![Table {
                    caption: "c<".into(),
                    header: vec!["h>".into(), "n".into()],
                    rows: vec![vec!["1.5%".into(), "1".into()], vec!["x&".into(), "2e-3".into()]],
                }],
                findings: vec![("broken <v>".into(), f)],
                charts: vec![Chart {
                    shows: Vec::new(),
                    layer: None,
                    title: "chart <t>".into(),
                    x_label: "x".into(),
                    y_label: "y".into(),
                    caption: "see <this>".into(),
                    kind: ChartKind::Lines {
                        series: vec![Series { name: "s<".into(), points: vec![(0.0, 1.0), (1.0, 2.0)] }],
                        log_y: false,
                    },
                }],
            }],
        }
    }

    /// The links of each finding in `page`, in order: the figure numbers its "Seen in" names.
    fn links_per_finding(page: &str) -> Vec<Vec<usize>> {
        page.split("<article class=\"finding")
            .skip(1)
            .map(|a| {
                let a = &a[..a.find("</article>").unwrap()];
                a.split("href=\"#fig-").skip(1).map(|t| t[..t.find('"').unwrap()].parse().unwrap()).collect()
            })
            .collect()
    }

    #[test]
    fn findings_link_to_the_figures_that_show_their_code() {
        let chart = |title: &str, shows: &[Code]| Chart {
            shows: shows.to_vec(),
            layer: None,
            title: title.into(),
            x_label: "x".into(),
            y_label: "y".into(),
            caption: "c".into(),
            kind: ChartKind::Lines { series: vec![Series::new("s", vec![(0.0, 1.0), (1.0, 2.0)])], log_y: false },
        };
        let finding = |code: Code| {
            ("".to_string(), Finding::new(code, Severity::Warning, "layer 1 (relu)", None, "w").at_layer(1))
        };
        // A doctor-shaped report: findings first, charts in the sections after it, then a
        // second findings section whose charts are its own.
        let r = Report {
            title: "t".into(),
            intro: vec![],
            sections: vec![
                Section {
                    title: "Findings".into(),
                    findings: vec![finding(Code::DeadRelu), finding(Code::UpdateRatio), finding(Code::NonFinite)],
                    ..Default::default()
                },
                Section { title: "Loss".into(), charts: vec![chart("loss", &[Code::NonFinite])], ..Default::default() },
                Section {
                    title: "Activations".into(),
                    // "dead 3" is about layer 3: the layer-1 finding does not link to it.
                    charts: vec![
                        chart("dead", &[Code::DeadRelu]),
                        chart("other", &[]),
                        Chart { layer: Some(3), ..chart("dead 3", &[Code::DeadRelu]) },
                        Chart { layer: Some(1), ..chart("dead 1", &[Code::DeadRelu]) },
                    ],
                    ..Default::default()
                },
                Section {
                    title: "A demo".into(),
                    findings: vec![finding(Code::DeadRelu)],
                    charts: vec![chart("demo dead", &[Code::DeadRelu, Code::Saturation])],
                    ..Default::default()
                },
                Section {
                    title: "Later".into(),
                    charts: vec![chart("late dead", &[Code::DeadRelu])],
                    ..Default::default()
                },
            ],
        };
        let page = page(&r).unwrap();
        // Figures: 1 loss, 2 dead, 3 other, 4 dead 3, 5 dead 1, 6 demo dead, 7 late dead. The
        // first section's findings reach figures 1-5 (up to the next section with findings);
        // the demo's finding reaches only its own figure 6, not the later figure 7.
        assert_eq!(links_per_finding(&page), vec![vec![2, 5], vec![], vec![1], vec![6]]);
        assert!(page.contains("<a href=\"#fig-2\">Figure 2</a> (dead)"));
        // Every link target exists.
        for n in 1..=7 {
            assert!(page.contains(&format!("id=\"fig-{n}\"")));
        }
    }

    #[test]
    fn a_demo_finding_links_only_to_charts_that_draw_its_variant() {
        let chart = |names: &[&str]| Chart {
            shows: vec![Code::DeadRelu],
            layer: None,
            title: names.join("+"),
            x_label: "x".into(),
            y_label: "y".into(),
            caption: "c".into(),
            kind: ChartKind::Lines {
                series: names.iter().map(|n| Series::new(*n, vec![(0.0, 1.0), (1.0, 2.0)])).collect(),
                log_y: false,
            },
        };
        let finding =
            |v: &str| (v.to_string(), Finding::new(Code::DeadRelu, Severity::Warning, "layer 1 (relu)", None, "w"));
        let r = Report {
            title: "t".into(),
            intro: vec![],
            sections: vec![Section {
                title: "demo".into(),
                findings: vec![finding("a"), finding("b"), finding("e reward x10"), finding("c")],
                // 1: variant a; 2: b (by name with a description); 3: no variant (generic);
                // 4: c merged with another identical run; 5: e, the base of "e reward x10".
                charts: vec![
                    chart(&["a", "fixed"]),
                    chart(&["b (8 layers)"]),
                    chart(&["step 0"]),
                    chart(&["c = d"]),
                    chart(&["e"]),
                ],
                ..Default::default()
            }],
        };
        let page = page(&r).unwrap();
        assert_eq!(links_per_finding(&page), vec![vec![1, 3], vec![2, 3], vec![3, 5], vec![3, 4]]);
    }

    #[test]
    fn consequences_nest_under_their_cause_within_a_variant() {
        let f = |id: &str, cause: Option<&str>| {
            let mut f = Finding::new(Code::DeadRelu, Severity::Warning, "layer 1 (relu)", Some(1), "w");
            f.id = id.into();
            f.caused_by = cause.map(str::to_string);
            f
        };
        let mut r = evil_report();
        // Two variants both number from F1: "b"'s F2 follows from its own F1, and "a"'s F1
        // is a root even though "b" has an F1 with a cause chain.
        r.sections[0].findings = vec![
            ("a".into(), f("F1", None)),
            ("b".into(), f("F1", None)),
            ("b".into(), f("F2", Some("F1"))),
            ("b".into(), f("F3", Some("F2"))),
        ];
        let html = page(&r).unwrap();
        let heads: Vec<&str> = html.match_indices("<article class=\"finding").map(|(i, _)| &html[i..i + 90]).collect();
        assert_eq!(heads.len(), 4);
        assert!(!heads[0].contains("consequence") && !heads[1].contains("consequence"), "{heads:?}");
        assert!(heads[2].contains("consequence\" style=\"margin-left: 2.0rem"), "{heads:?}");
        assert!(heads[3].contains("margin-left: 4.0rem"), "{heads:?}");
    }

    #[test]
    fn repeated_findings_of_a_variant_are_folded_into_the_first() {
        let f = |id: &str, seed: u64, cause: Option<&str>| {
            let mut f =
                Finding::new(Code::ZeroGradient, Severity::Warning, "td error (clip)", Some(0), "w").with("seed", seed);
            f.id = id.into();
            f.caused_by = cause.map(str::to_string);
            f
        };
        let mut r = evil_report();
        r.sections[0].findings = vec![
            ("clipped_delta".into(), f("F1", 0, None)),
            ("clipped_delta".into(), f("F1", 1, None)),
            ("clipped_delta".into(), f("F1", 2, None)),
            // Another variant is not folded into the first.
            ("huber".into(), f("F1", 0, None)),
        ];
        let html = page(&r).unwrap();
        assert_eq!(html.matches("<article class=\"finding").count(), 2, "{html}");
        assert!(
            html.contains("also came from 2 more run(s) of clipped_delta: seed 1, step 0; seed 2, step 0."),
            "{html}"
        );
        // A finding with a consequence stays in full (its consequence points at it).
        r.sections[0].findings =
            vec![("v".into(), f("F1", 0, None)), ("v".into(), f("F2", 1, None)), ("v".into(), f("F3", 1, Some("F2")))];
        let html = page(&r).unwrap();
        assert_eq!(html.matches("<article class=\"finding").count(), 3, "{html}");
        // The same tree (a root and its consequence) from two seeds is shown once; a third
        // seed whose root has no consequence is a different diagnosis and stays.
        r.sections[0].findings = vec![
            ("v".into(), f("F1", 0, None)),
            ("v".into(), f("F2", 0, Some("F1"))),
            ("v".into(), f("F1", 1, None)),
            ("v".into(), f("F2", 1, Some("F1"))),
            ("v".into(), f("F1", 2, None)),
        ];
        let html = page(&r).unwrap();
        assert_eq!(html.matches("<article class=\"finding").count(), 3, "{html}");
        assert!(
            html.contains("and the consequence under it also came from 1 more run(s) of v: seed 1, step 0."),
            "{html}"
        );
    }

    #[test]
    fn page_escapes_every_text_and_loads_nothing() {
        let html = page(&evil_report()).unwrap();
        for raw in ["<script>alert", "<i>not", "<1>", "<how>", "<tanh>", "<v>", "<t>", "<this>", "\"q\"", "c<", "s<<"] {
            assert!(!html.contains(raw), "unescaped {raw}");
        }
        assert!(html.contains("T &lt;script&gt;alert(1)&lt;/script&gt;"));
        // Exactly one script (the inline check), no external references.
        assert_eq!(html.matches("<script").count(), 1);
        for ext in ["<img", "<link", "src=", "href=\"http", "@import", "url("] {
            assert!(!html.contains(ext), "external reference {ext}");
        }
        assert!(html.contains("<figure class=\"chart\" id=\"fig-1\">"));
        assert!(html.contains("<figcaption><b>Figure 1.</b> see &lt;this&gt;"));
        assert!(html.contains("<a href=\"#fig-1\">"));
        // Only an all-numeric column is right-aligned.
        assert!(html.contains("<tr><td>1.5%</td><td class=\"num\">1</td></tr>"), "{html}");
        assert!(html.contains("class=\"finding error\""));
        assert!(html.contains("<dt>saturated_fraction</dt><dd>0.9800</dd>"));
    }
}
