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
    # Each chart: its <svg>, then (in the page, outside the SVG) its legend <ul>.
    labelled = {}
    for m in re.finditer(r"(<svg\b.*?</svg>)\s*(<ul class=\"legend\">.*?</ul>)?", page, flags=re.S):
        s, legend = m.group(1), m.group(2) or ""
        label = re.search(r'aria-label="([^"]*)"', s[:500])
        if label:
            keys = re.findall(r'background:(#[0-9a-fA-F]{6})"></span>([^<]*)</li>', legend)
            labelled.setdefault(html.unescape(label.group(1)), (s, [(c, html.unescape(n)) for c, n in keys]))
    OUT.mkdir(parents=True, exist_ok=True)
    for name, title in PICK.items():
        hits = [s for t, s in labelled.items() if t.startswith(title)]
        if not hits:
            sys.exit(f"no chart titled {title!r} in {src}; titles: {sorted(labelled)}")
        svg, keys = hits[0]
        vb = re.search(r'viewBox="0 0 (\d+) (\d+)"', svg)
        w, h = (int(vb.group(1)), int(vb.group(2))) if vb else (720, 360)
        extra = 34 if keys else 0
        # The legend, drawn as in the page (a colour key and a name per series), under the plot.
        items, x = [], 70
        for colour, series in keys:
            items.append(f'<rect x="{x}" y="{h + 12}" width="22" height="4" fill="{colour}"/>'
                         f'<text x="{x + 28}" y="{h + 19}" font-family="sans-serif" font-size="14">{html.escape(series)}</text>')
            x += 40 + 8 * len(series)
        legend = f'<rect x="0" y="{h}" width="{w}" height="{extra}" fill="white"/>' + "".join(items) if keys else ""
        svg = re.sub(r'viewBox="0 0 \d+ \d+"', f'viewBox="0 0 {w} {h + extra}"', svg, count=1)
        svg = re.sub(r'^<svg\b', f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + extra}"', svg, count=1)
        svg = svg[: svg.rindex("</svg>")] + legend + "</svg>"
        svg = svg.replace('xmlns="http://www.w3.org/2000/svg" xmlns="http://www.w3.org/2000/svg"',
                          'xmlns="http://www.w3.org/2000/svg"')
        (OUT / name).write_text(svg + "\n")
        print(f"{OUT / name}: {title}")


if __name__ == "__main__":
    main()
