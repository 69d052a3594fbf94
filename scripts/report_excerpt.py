#!/usr/bin/env python3
"""Make docs/doctor-report.png: an excerpt of a real `leaky doctor --report` page (its title,
the first finding, and the figures that finding links to), screenshotted in headless Chromium.
Cuts between the pieces are dashed lines.

    cargo build --release -p leaky-cli
    .venv/bin/python scripts/report_excerpt.py            # needs chromium and Pillow

The page is generated afresh from examples/sick/sigmoid-saturated.toml; the pieces are cut out
of its HTML as written (same style sheet), nothing is drawn by this script.
"""
import os
import re
import subprocess
import sys
import tempfile

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEAKY = os.path.join(ROOT, "target", "release", "leaky")
EXAMPLE = "examples/sick/sigmoid-saturated.toml"
OUT = os.path.join(ROOT, "docs", "doctor-report.png")
WIDTH = 1000


def element(html, start):
    """The element that begins at index `start`, through its matching close tag."""
    tag = re.match(r"<(\w+)", html[start:]).group(1)
    depth, i = 0, start
    for m in re.finditer(rf"<(/?){tag}\b[^>]*>", html[start:]):
        depth += -1 if m.group(1) else 1
        if depth == 0:
            return html[start:start + m.end()]
    sys.exit(f"unclosed <{tag}>")


def main():
    with tempfile.TemporaryDirectory() as d:
        rep = os.path.join(d, "rep")
        subprocess.run([LEAKY, "doctor", EXAMPLE, "--report", rep, "--quiet", "--fail-on", "never"], cwd=ROOT,
                       check=True, capture_output=True)
        html = open(os.path.join(rep, "index.html")).read()
        style = re.search(r"<style>.*?</style>", html, re.S).group(0)
        head = html[html.index("<h1>"):html.index("<nav")]
        article = element(html, html.index("<article"))
        figures = [element(html, html.index(f'<figure class="chart" id="{fid}"'))
                   for fid in re.findall(r'href="#(fig-\d+)"', article)]
        cut = '<div style="border-top: 2px dashed #d0d7de; margin: 1rem -1.5rem;"></div>'
        page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{style}</head><body><main>{head}{cut}"
                f"<h2>2. Findings</h2>{article}{cut}{cut.join(figures)}</main></body></html>")
        excerpt = os.path.join(d, "excerpt.html")
        open(excerpt, "w").write(page)
        shot = os.path.join(d, "shot.png")
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={shot}", f"--window-size={WIDTH},6000", "file://" + excerpt],
                       check=True, capture_output=True, timeout=120)
        im = Image.open(shot).convert("RGB")
        grey = im.convert("L")
        w, h = grey.size
        last = max(y for y in range(0, h, 4) if min(grey.getpixel((x, y)) for x in range(0, w, 8)) < 250)
        im.crop((0, 0, w, min(h, last + 24))).save(OUT, optimize=True)
        print(f"wrote {OUT} ({len(figures)} figures, {os.path.getsize(OUT) // 1024} KB)")


if __name__ == "__main__":
    main()
