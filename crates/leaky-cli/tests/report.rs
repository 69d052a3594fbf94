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
    page_renders(&dir, name, min_figures)
}

/// `leaky inspect ARCH --weights W --data X --labels Y --report REPORT EXTRA...`.
fn inspect_report(arch: &Path, w: &Path, x: &Path, y: &Path, report: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["inspect", arch.to_str().unwrap(), "--weights", w.to_str().unwrap()];
    args.extend(["--data", x.to_str().unwrap(), "--labels", y.to_str().unwrap()]);
    args.extend(["--report", report.to_str().unwrap()]);
    args.extend(extra);
    leaky(&args)
}

/// Check `dir/index.html` statically, then in Chromium; returns the page's text and the
/// number of figures.
fn page_renders(dir: &Path, name: &str, min_figures: usize) -> (String, usize) {
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
    // Every in-page link (contents, findings' "Seen in") reaches an element of the page.
    for target in html.split("href=\"#").skip(1).map(|t| &t[..t.find('"').unwrap()]) {
        assert!(html.contains(&format!("id=\"{target}\"")), "a link to #{target}, which is not in the page");
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
    // The saturation finding links to the charts that show it, by figure number.
    let article = html.split("<article").find(|a| a.contains("<code>saturation</code>")).unwrap();
    let article = &article[..article.find("</article>").unwrap()];
    let figure_of = |title: &str| {
        let at = html.find(&format!("</a>: {title}</li>")).unwrap_or_else(|| panic!("{title} not in the contents"));
        let head = &html[..at];
        head[head.rfind("#fig-").unwrap() + 1..].split('"').next().unwrap().to_string()
    };
    for title in ["Activations of layer 1 (sigmoid)", "Saturated share of sigmoid/tanh outputs"] {
        let id = figure_of(title);
        assert!(article.contains(&format!("href=\"#{id}\"")), "the saturation finding does not link to {title} ({id})");
    }
    // Not to the loss, nor to another layer's histogram (layer 3 saturates too, later: its
    // own finding links there).
    for title in ["Training loss", "Activations of layer 3 (sigmoid)"] {
        assert!(!article.contains(&format!("href=\"#{}\"", figure_of(title))), "links to {title}");
    }
}

#[test]
fn rnn_report_draws_the_gradient_through_time() {
    let (html, _) = doctor_report_renders("examples/sick/rnn-vanishing.toml", "rnn", 3);
    assert!(html.contains("Gradient through time, layer 0 (rnn)"));
}

/// `leaky inspect --report` on PyTorch checkpoints (crates/leaky/tests/fixtures/torch): a CNN
/// whose batch norm running mean was moved by 2 (in the test, so no Python is needed) and an
/// LSTM on its own sequences.
#[test]
fn inspect_reports_render_in_a_browser() {
    let fix = common::root().join("crates/leaky/tests/fixtures/torch");
    let dir = scratch("inspect-cnn");
    std::fs::create_dir_all(&dir).unwrap();
    let arch = dir.join("cnn.toml");
    std::fs::write(
        &arch,
        "[[model.layers]]\ntype = \"conv\"\nfilters = 4\nsize = 3\npad = 1\n[[model.layers]]\ntype = \"batchnorm\"\n[[model.layers]]\ntype = \"relu\"\n[[model.layers]]\ntype = \"maxpool\"\n[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"affine\"\n",
    )
    .unwrap();
    let bytes = std::fs::read(fix.join("cnn.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    for t in tensors.iter_mut().filter(|t| t.0 == "1.running_mean") {
        t.3 =
            t.3.chunks_exact(4).flat_map(|c| (f32::from_le_bytes(c.try_into().unwrap()) + 2.0).to_le_bytes()).collect();
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, d, s, b)| (k.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let weights = dir.join("moved.safetensors");
    std::fs::write(&weights, safetensors::serialize(views, None).unwrap()).unwrap();
    let report = dir.join("report");
    let (x, y) = (fix.join("cnn.x.npy"), fix.join("cnn.y.npy"));
    let o = inspect_report(&arch, &weights, &x, &y, &report, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let (html, _) = page_renders(&report, "inspect-cnn", 4);
    for part in [
        "leaky inspect: moved.safetensors",
        "<code>batchnorm_stats</code> in layer 1 (spatial_batchnorm)",
        // The dead channels follow from it, indented under it.
        "<article class=\"finding error consequence\" style=\"margin-left: 2.0rem\"><div class=\"head\">F2 <span class=\"sev error\">error</span><code>dead_relu</code> in layer 2 (relu) (follows from F1)",
        "Gradient reaching each layer",
        "Dead share of each ReLU layer",
        "Layer 1 (spatial_batchnorm): mean shift per channel",
        "Layer 1 (spatial_batchnorm): variance ratio per channel",
        "4 of 4 channels (100.0%)",
    ] {
        assert!(html.contains(part), "missing {part}");
    }
    // No temporary file is left behind (the write probe, the atomic write's temporary).
    let hidden: Vec<_> = std::fs::read_dir(&report)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");

    // An LSTM: the gradient through time and the gate table.
    let dir = scratch("inspect-lstm");
    std::fs::create_dir_all(&dir).unwrap();
    let arch = dir.join("lstm.toml");
    std::fs::write(&arch, "[model]\nkind = \"lstm\"\nhidden = [6]\n[train]\nloss = \"mse\"\n").unwrap();
    let (x, y) = common::seq_npy(&dir, "lstm_saturated");
    let report = dir.join("report");
    let w = fix.join("lstm_saturated.safetensors");
    let o = inspect_report(&arch, &w, &x, &y, &report, &["--fail-on", "never"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let (html, _) = page_renders(&report, "inspect-lstm", 1);
    for part in
        ["Gradient through time, layer 0 (lstm)", "saturation of the recurrent activations", "<code>saturation</code>"]
    {
        assert!(html.contains(part), "missing {part}");
    }
}

#[test]
fn an_inspect_report_dir_in_the_way_is_refused_before_any_work() {
    let file = scratch("inspect-in-the-way");
    std::fs::write(&file, "not a directory").unwrap();
    let fix = common::root().join("crates/leaky/tests/fixtures/torch");
    let w = fix.join("mlp_dead.safetensors");
    let o = leaky(&[
        "inspect",
        "examples/digits.toml",
        "--weights",
        w.to_str().unwrap(),
        "--report",
        file.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--report") && err.contains("not a directory"), "{err}");
    // Refused before the checkpoint was read (its keys do not fit examples/digits.toml).
    assert!(!err.contains("0.weight"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a directory");
    let _ = std::fs::remove_file(&file);
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
