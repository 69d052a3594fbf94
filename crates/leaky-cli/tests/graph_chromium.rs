//! The batch norm graph's SVG in a real browser: headless Chromium lays it out, a script in
//! the page checks every node has a non-empty box inside the drawing, that no two nodes
//! overlap and that every label fits its box, then a screenshot is taken and inspected.
//!
//! Chromium is looked for as `$LEAKY_CHROMIUM`, then `chromium`, `chromium-browser`,
//! `google-chrome`, `google-chrome-stable` on the PATH. Without it the test prints a skip
//! notice, unless `LEAKY_REQUIRE_CHROMIUM=1` (CI), where it fails.

mod common;

use common::{leaky, require_chromium, scratch, stderr};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Run `cmd` to completion within `limit`, killing it (and failing) if it hangs.
fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("chromium starts");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait on chromium").is_some() {
            return child.wait_with_output().expect("chromium output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn chromium(bin: &Path, profile: &Path, args: &[String]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args);
    run_with_timeout(cmd, Duration::from_secs(120))
}

const CHECK_SCRIPT: &str = r#"
<script>
const svg = document.querySelector('svg');
const box = svg.getBoundingClientRect();
const nodes = [...document.querySelectorAll('g.node')];
const bad = [];
const shapes = [];
for (const g of nodes) {
  const shape = g.querySelector('rect, ellipse');
  const r = shape.getBoundingClientRect();
  const id = g.getAttribute('data-node') + (g.classList.contains('op') ? ' op' : ' record');
  if (!(r.width > 0 && r.height > 0)) bad.push('empty ' + id);
  if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
    bad.push('outside ' + id);
  for (const t of g.querySelectorAll('text')) {
    const tr = t.getBoundingClientRect();
    if (!(tr.width > 0) || tr.left < r.left - 1 || tr.right > r.right + 1 || tr.top < r.top - 1 || tr.bottom > r.bottom + 1)
      bad.push('label overflows ' + id + ': ' + t.textContent);
  }
  shapes.push([id, r]);
}
for (let i = 0; i < shapes.length; i++)
  for (let j = i + 1; j < shapes.length; j++) {
    const a = shapes[i][1], b = shapes[j][1];
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom)
      bad.push('overlap ' + shapes[i][0] + ' / ' + shapes[j][0]);
  }
const out = document.createElement('pre');
out.id = 'leaky-check';
out.textContent = bad.length ? 'LEAKY-BAD ' + bad.join(' | ') : 'LEAKY-OK ' + nodes.length + ' nodes, ' + Math.round(box.width) + 'px wide';
document.body.appendChild(out);
</script>
"#;

#[test]
fn batchnorm_svg_renders_in_chromium_with_every_node_visible() {
    let Some(bin) = require_chromium("batchnorm_svg_renders_in_chromium_with_every_node_visible") else { return };
    let dir = scratch("graph-chromium");
    let svg_path = dir.join("bn.svg");
    let o = leaky(&["graph", "batchnorm", "--out", svg_path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let expected = svg.matches("<g class=\"node ").count();
    // Records: x, gamma, beta, eps and the 10 results; ops: mean, sub, pow, mean, add, sqrt, pow, mul, mul, add.
    assert_eq!(expected, 14 + 10, "14 records (values) and 10 ops in the staged batch norm");

    // The page shows the SVG 1200 px wide, as a reader's browser would.
    let page = dir.join("bn.html");
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><style>body{{margin:0}} svg{{width:1200px;height:auto;display:block}}</style></head><body>{svg}{CHECK_SCRIPT}</body></html>"
    );
    std::fs::write(&page, html).unwrap();
    let url = format!("file://{}", page.display());
    let profile = dir.join("profile");
    let o = chromium(&bin, &profile, &["--dump-dom".into(), url.clone()]);
    let dom = String::from_utf8_lossy(&o.stdout);
    // The script's own source is in the DOM too; the result is the text of its <pre>.
    let marker =
        dom.split("<pre id=\"leaky-check\">").nth(1).and_then(|t| t.split("</pre>").next()).unwrap_or_else(|| {
            panic!("no check marker in the DOM (status {:?}): {}", o.status, String::from_utf8_lossy(&o.stderr))
        });
    assert!(marker.contains(&format!("LEAKY-OK {expected} nodes")), "{marker}");

    // A screenshot of the page: a real PNG, 1200 px wide, with far more than a blank page in it.
    let (vw, vh) = {
        let vb = svg.split("viewBox=\"").nth(1).unwrap().split('"').next().unwrap();
        let v: Vec<f64> = vb.split_whitespace().map(|s| s.parse().unwrap()).collect();
        (v[2], v[3])
    };
    let height = (1200.0 * vh / vw).ceil() as u32 + 60;
    let png = dir.join("bn.png");
    let o = chromium(
        &bin,
        &profile,
        &[format!("--screenshot={}", png.display()), format!("--window-size=1200,{height}"), url],
    );
    assert!(png.exists(), "no screenshot: {}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    assert_eq!(width, 1200);
    // A blank 1200 x ~1400 page compresses to a few kilobytes; the drawing to over 100 KB.
    assert!(bytes.len() > 50_000, "screenshot is only {} bytes", bytes.len());
    if let Ok(keep) = std::env::var("LEAKY_GRAPH_PNG_OUT") {
        std::fs::copy(&png, keep).unwrap();
    }
    eprintln!("chromium: {marker}; screenshot {} bytes", bytes.len());
}
