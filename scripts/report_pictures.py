#!/usr/bin/env python3
"""Copy charts out of a `leaky demo` report into docs/stories/ for the README.

Usage (from the repository root, after `leaky demo all`, which writes leaky-report/):

    python3 scripts/report_pictures.py [leaky-report/index.html]

Standard library only. Each chart is picked by its aria-label (the chart's title) and written
as a standalone SVG with a white background, so the README shows exactly what the report drew.
"""
import html
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "stories"

# file name -> start of the chart title in the report
PICK = {
    "sigmoid-histogram.svg": "Layer 1 sigmoid outputs",
    "sigmoid-depth.svg": "Gradient reaching each layer at step 0",
    "relu-dead.svg": "Dead ReLU units over a full pass",
    "rnn-per-step.svg": "|dL/dh_t| back through time at step 0",
    "dqn-returns.svg": "Return per episode",
    "dqn-zero-share.svg": "Samples with exactly zero gradient",
    "dqn-reward-scale.svg": "Zero-gradient share by reward scale",
}


def main():
    src = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "leaky-report" / "index.html"
    page = src.read_text()
    svgs = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
    labelled = {}
    for s in svgs:
        m = re.search(r'aria-label="([^"]*)"', s[:500])
        if m:
            labelled.setdefault(html.unescape(m.group(1)), s)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, title in PICK.items():
        hits = [s for t, s in labelled.items() if t.startswith(title)]
        if not hits:
            sys.exit(f"no chart titled {title!r} in {src}; titles: {sorted(labelled)}")
        svg = hits[0]
        vb = re.search(r'viewBox="0 0 (\d+) (\d+)"', svg)
        w, h = (vb.group(1), vb.group(2)) if vb else ("720", "360")
        svg = re.sub(r'^<svg\b', f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}"', svg, count=1)
        svg = svg.replace('xmlns="http://www.w3.org/2000/svg" xmlns="http://www.w3.org/2000/svg"',
                          'xmlns="http://www.w3.org/2000/svg"')
        (OUT / name).write_text(svg + "\n")
        print(f"{OUT / name}: {title}")


if __name__ == "__main__":
    main()
