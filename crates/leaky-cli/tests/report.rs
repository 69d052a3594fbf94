//! `leaky doctor --report DIR` writes one self-contained page whose charts render in a real
//! browser: headless Chromium loads `index.html`, the page's inline check measures every
//! `<svg>` (non-empty bounding box, enough elements, a caption) and writes the result into
//! `<body data-charts-ok="k/n">`, which `--dump-dom` hands back; a full-page screenshot must
//! be far larger than the screenshot of a blank page.
//!
//! Without Chromium the browser half is skipped with a notice, unless
//! `LEAKY_REQUIRE_CHROMIUM=1` (set by `.ci/run`, which installs it), where it fails.

mod common;

use common::{leaky, require_chromium, scratch_path as scratch};
use std::path::Path;
use std::process::Command;

fn headless(chrome: &Path, extra: &[&str], page: &Path) -> std::process::Output {
    let url = format!("file://{}", page.display());
    // A profile of its own per run, so that parallel tests do not share a profile lock; no
    // /dev/shm use, which is small in containers.
    let profile = page.with_file_name("chromium-profile");
    Command::new(chrome)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap()
}

/// The value of `data-NAME="..."` on `<body>` in a dumped DOM.
fn body_data(dom: &str, name: &str) -> Option<String> {
    let start = dom.find("<body")?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let key = format!("data-{name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(tag[at..at + tag[at..].find('"')?].to_string())
}

/// Run `leaky doctor FILE --report DIR`, check the page statically, then in Chromium;
/// returns the page's text and the number of figures.
fn doctor_report_renders(file: &str, name: &str, min_figures: usize) -> (String, usize) {
    let dir = scratch(name);
    let o = leaky(&["doctor", file, "--report", dir.to_str().unwrap(), "--quiet", "--fail-on", "never"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("index.html"), "the path of the report is printed");
    let page = dir.join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let figures = html.matches("<figure class=\"chart\"").count();
    assert!(figures >= min_figures, "{figures} figures, expected at least {min_figures}");
    assert_eq!(html.matches("<figcaption>").count(), figures, "every figure has a caption");
    // Self-contained: no file, font, style or script from elsewhere. The only URL is the SVG
    // namespace.
    for bad in ["<img", "<link", "<iframe", " src=", "@import", "url(", "@font-face"] {
        assert!(!html.contains(bad), "{bad} in the page");
    }
    let urls = html.matches("http://").count() + html.matches("https://").count();
    assert_eq!(
        urls,
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "a URL other than the SVG namespace"
    );

    let Some(chrome) = require_chromium(name) else { return (html, figures) };
    let out = headless(&chrome, &["--dump-dom", "--virtual-time-budget=2000"], &page);
    let dom = String::from_utf8_lossy(&out.stdout);
    let ok = body_data(&dom, "charts-ok")
        .unwrap_or_else(|| panic!("the in-page check did not run: {}", &dom[..dom.len().min(400)]));
    assert_eq!(ok, format!("{figures}/{figures}"), "charts that failed: {:?}", body_data(&dom, "charts-bad"));
    assert_eq!(body_data(&dom, "charts-empty").as_deref(), Some("0"));
    assert_eq!(body_data(&dom, "external").as_deref(), Some("0"));

    // A full-page screenshot of the report against one of a blank page of the same size: a
    // page whose SVGs did not paint compresses to almost nothing.
    let shot = dir.join("screenshot.png");
    let arg = format!("--screenshot={}", shot.display());
    headless(&chrome, &[arg.as_str(), "--window-size=1280,4000"], &page);
    let blank_page = dir.join("blank.html");
    std::fs::write(&blank_page, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank = dir.join("blank.png");
    let arg = format!("--screenshot={}", blank.display());
    headless(&chrome, &[arg.as_str(), "--window-size=1280,4000"], &blank_page);
    let (size, blank_size) = (std::fs::metadata(&shot).unwrap().len(), std::fs::metadata(&blank).unwrap().len());
    assert!(size > 5 * blank_size && size > 100_000, "screenshot {size} bytes, blank page {blank_size} bytes");
    (html, figures)
}

#[test]
fn sigmoid_report_renders_in_a_browser() {
    let (html, _) = doctor_report_renders("examples/sick/sigmoid-saturated.toml", "sigmoid", 6);
    // The page carries the run, the findings and the charts the doctor's records allow.
    for part in [
        "leaky doctor: examples/sick/sigmoid-saturated.toml",
        "<code>saturation</code> in layer 1 (sigmoid)",
        "Training loss",
        "Activations of layer 1 (sigmoid)",
        "Saturated share of sigmoid/tanh outputs",
        "Gradient reaching each layer",
        "Update-to-weight ratio per weight matrix",
    ] {
        assert!(html.contains(part), "missing {part}");
    }
}

#[test]
fn rnn_report_draws_the_gradient_through_time() {
    let (html, _) = doctor_report_renders("examples/sick/rnn-vanishing.toml", "rnn", 3);
    assert!(html.contains("Gradient through time, layer 0 (rnn)"));
}

#[test]
fn a_report_dir_that_cannot_be_created_is_bad_input() {
    let file = scratch("in-the-way");
    std::fs::write(&file, "not a directory").unwrap();
    let o = leaky(&["doctor", "examples/sick/sigmoid-saturated.toml", "--report", file.to_str().unwrap(), "--quiet"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--report") && err.contains("not a directory"), "{err}");
    // Refused before training: nothing was printed about a diagnosis.
    assert!(!String::from_utf8_lossy(&o.stdout).contains("Diagnosis"));
    let _ = std::fs::remove_file(&file);
}
