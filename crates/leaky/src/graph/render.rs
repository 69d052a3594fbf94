//! Drawing a [`Tape`]: Graphviz DOT text, and SVG laid out here (no Graphviz needed).
//!
//! Both show the same picture. Every tape node is a record `name | value | grad`; every op
//! is a separate ellipse between its inputs and its result; forward edges are black with
//! arrowheads; values are black and gradients red. A tensor is summarised by its shape and
//! a few statistics (mean, std, min, max) instead of all its elements.
//!
//! The SVG layout is a small layered (Sugiyama-style) one, top to bottom: each op sits one
//! layer below its lowest input and its result one layer below the op; inputs sit just
//! above their first use; edges that skip layers pass through invisible waypoints; the order
//! within a layer comes from barycentre sweeps and the horizontal positions from relaxing
//! every node towards the mean of its neighbours without overlaps.

use super::{NodeId, Op, Tape, Value};
use std::fmt::Write as _;

/// A short, fixed-width rendering of a number: 4 decimals in [1e-3, 1e5), else scientific.
pub(crate) fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0.0000".to_string()
    } else if !v.is_finite() || (1e-3..1e5).contains(&a) {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

/// A few lines describing an array: a scalar (or one element) as `prefix value`, a
/// larger array as `mean .. std ..` and `min .. max ..` (population std).
pub fn summary(v: &Value, prefix: &str) -> Vec<String> {
    if v.len() == 1 {
        let x = v.iter().copied().next().unwrap_or(f64::NAN);
        return vec![format!("{prefix} {}", fmt_num(x))];
    }
    if v.is_empty() {
        return vec![format!("{prefix} (empty)")];
    }
    let n = v.len() as f64;
    let mean = v.sum() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    vec![
        format!("{prefix} mean {} std {}", fmt_num(mean), fmt_num(var.sqrt())),
        format!("{} min {} max {}", " ".repeat(prefix.len()), fmt_num(min), fmt_num(max)),
    ]
}

/// The text of one record: name column, value column, gradient column.
struct Record {
    name: Vec<String>,
    value: Vec<String>,
    grad: Vec<String>,
}

impl Tape {
    /// The label of a node in drawings and op formulas: its name, a constant's value, or
    /// `t<index>` for an unnamed intermediate.
    pub fn display_name(&self, id: NodeId) -> String {
        let n = self.node(id);
        match (&n.name, &n.op) {
            (Some(s), _) => s.clone(),
            (None, Op::Leaf) if n.value().len() == 1 => trim_num(n.value().iter().copied().next().unwrap_or(0.0)),
            _ => format!("t{}", id.index()),
        }
    }

    /// The formula of the op that made `id`, in its inputs' names: `"x - mu"`,
    /// `"mean(sq, axis=0)"`, `"relu(z)"`. Empty for a leaf.
    pub fn op_label(&self, id: NodeId) -> String {
        let d = |n: NodeId| self.display_name(n);
        let ax = |a: Option<usize>| a.map(|k| format!(", axis={k}")).unwrap_or_default();
        match self.node(id).op {
            Op::Leaf => String::new(),
            Op::Add(a, b) => format!("{} + {}", d(a), d(b)),
            Op::Sub(a, b) => format!("{} - {}", d(a), d(b)),
            Op::Mul(a, b) => format!("{} * {}", d(a), d(b)),
            Op::Div(a, b) => format!("{} / {}", d(a), d(b)),
            Op::MatMul(a, b) => format!("{} @ {}", d(a), d(b)),
            Op::Sum(x, a) => format!("sum({}{})", d(x), ax(a)),
            Op::Mean(x, a) => format!("mean({}{})", d(x), ax(a)),
            Op::Max(x, a) => format!("max({}{})", d(x), ax(a)),
            Op::Pow(x, p) => format!("{} ^ {}", d(x), trim_num(p)),
            Op::Reshape(x) => format!("reshape({}, {})", d(x), shape_str(self.value(id).shape())),
            Op::Clip(x, lo, hi) => format!("clip({}, {}, {})", d(x), trim_num(lo), trim_num(hi)),
            ref op => format!("{}({})", op.name(), d(op.inputs()[0])),
        }
    }

    fn record(&self, id: NodeId) -> Record {
        let n = self.node(id);
        let mut name = vec![self.display_name(id)];
        if n.value().len() != 1 {
            name.push(shape_str(n.value().shape()));
        }
        let grad = match n.grad() {
            Some(g) => summary(g, "grad"),
            None => vec!["grad -".to_string()],
        };
        Record { name, value: summary(n.value(), "data"), grad }
    }

    /// Graphviz DOT text of the whole tape (render with `dot -Tsvg`). Records are HTML-like
    /// tables `name | value | grad` with the gradient in red; ops are ellipses.
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph tape {\n  rankdir=TB;\n  node [fontname=\"monospace\", fontsize=11];\n");
        s.push_str("  edge [color=black, arrowsize=0.7];\n");
        for (id, node) in self.nodes() {
            let r = self.record(id);
            let cell = |lines: &[String], color: &str| {
                let body: Vec<String> = lines.iter().map(|l| html_escape(l)).collect();
                format!("<TD><FONT COLOR=\"{color}\">{}</FONT></TD>", body.join("<BR/>"))
            };
            let _ = writeln!(
                s,
                "  v{} [shape=plaintext, label=<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"4\"><TR>{}{}{}</TR></TABLE>>];",
                id.index(),
                cell(&r.name, "black"),
                cell(&r.value, "black"),
                cell(&r.grad, "red")
            );
            if !matches!(node.op, Op::Leaf) {
                let _ = writeln!(
                    s,
                    "  op{} [shape=ellipse, style=filled, fillcolor=\"#eef3fb\", label=\"{}\"];",
                    id.index(),
                    self.op_label(id).replace('\\', "\\\\").replace('"', "\\\"")
                );
                for p in node.op.inputs() {
                    let _ = writeln!(s, "  v{} -> op{};", p.index(), id.index());
                }
                let _ = writeln!(s, "  op{} -> v{};", id.index(), id.index());
            }
        }
        s.push_str("}\n");
        s
    }

    /// A self-contained SVG of the whole tape (generic `monospace` font, a `viewBox`, no
    /// external resources). Each record is a `<g class="node record">` holding a `<rect>`,
    /// each op a `<g class="node op">` holding an `<ellipse>`; edges are `<path>`s with
    /// arrowheads.
    pub fn to_svg(&self) -> String {
        self.to_svg_titled("computational graph")
    }

    /// [`Tape::to_svg`] with a title line above the legend.
    pub fn to_svg_titled(&self, title: &str) -> String {
        let layout = Layout::of(self);
        layout.svg(self, title)
    }
}

/// Shortest exact rendering of a constant (`2`, `-0.5`, `1e-5`).
fn trim_num(v: f64) -> String {
    let s = format!("{v}");
    if s.len() > 10 {
        format!("{v:e}")
    } else {
        s
    }
}

fn shape_str(shape: &[usize]) -> String {
    format!("{shape:?}").replace('[', "(").replace(']', ")")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

// Geometry, in SVG user units (pixels at 1:1).
const FONT: f64 = 12.0;
const CHAR_W: f64 = 7.4; // a generic monospace glyph is about 0.6 em wide
const LINE_H: f64 = 15.0;
const PAD: f64 = 6.0;
const H_GAP: f64 = 28.0;
const V_GAP: f64 = 34.0;
const MARGIN: f64 = 20.0;
const HEADER: f64 = 52.0;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Record(usize),
    Op(usize),
    Waypoint,
}

struct Item {
    kind: Kind,
    layer: usize,
    w: f64,
    h: f64,
    x: f64, // centre
    y: f64, // centre
    /// Column widths of a record (name, value, grad).
    cols: [f64; 3],
}

struct Layout {
    items: Vec<Item>,
    /// Each edge as the chain of items it passes through (source, waypoints..., target).
    edges: Vec<Vec<usize>>,
    width: f64,
    height: f64,
}

fn text_w(lines: &[String]) -> f64 {
    lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64 * CHAR_W + 2.0 * PAD
}

impl Layout {
    fn of(tape: &Tape) -> Layout {
        let n = tape.len();
        // Layers: longest path from the inputs, ops and results on alternate layers.
        let mut rec_layer = vec![0usize; n];
        let mut op_layer = vec![0usize; n];
        for (id, node) in tape.nodes() {
            let i = id.index();
            if !matches!(node.op, Op::Leaf) {
                op_layer[i] = node.op.inputs().iter().map(|p| rec_layer[p.index()]).max().unwrap_or(0) + 1;
                rec_layer[i] = op_layer[i] + 1;
            }
        }
        // Inputs sit just above their first consumer instead of all at the top.
        let mut first_use = vec![usize::MAX; n];
        for (id, node) in tape.nodes() {
            for p in node.op.inputs() {
                first_use[p.index()] = first_use[p.index()].min(op_layer[id.index()]);
            }
        }
        for (id, node) in tape.nodes() {
            let i = id.index();
            if matches!(node.op, Op::Leaf) && first_use[i] != usize::MAX {
                rec_layer[i] = first_use[i] - 1;
            }
        }

        let mut items = Vec::new();
        let mut rec_item = vec![0usize; n];
        let mut op_item = vec![usize::MAX; n];
        for (id, node) in tape.nodes() {
            let i = id.index();
            let r = tape.record(id);
            let cols = [text_w(&r.name), text_w(&r.value), text_w(&r.grad)];
            let lines = r.name.len().max(r.value.len()).max(r.grad.len()) as f64;
            rec_item[i] = items.len();
            items.push(Item {
                kind: Kind::Record(i),
                layer: rec_layer[i],
                w: cols.iter().sum(),
                h: lines * LINE_H + 2.0 * PAD,
                x: 0.0,
                y: 0.0,
                cols,
            });
            if !matches!(node.op, Op::Leaf) {
                let label = tape.op_label(id);
                op_item[i] = items.len();
                items.push(Item {
                    kind: Kind::Op(i),
                    layer: op_layer[i],
                    w: label.chars().count() as f64 * CHAR_W + 28.0,
                    h: 26.0,
                    x: 0.0,
                    y: 0.0,
                    cols: [0.0; 3],
                });
            }
        }
        // Edges, with a waypoint on every layer they cross.
        let mut edges = Vec::new();
        let mut add_edge = |items: &mut Vec<Item>, from: usize, to: usize| {
            let mut chain = vec![from];
            for layer in items[from].layer + 1..items[to].layer {
                chain.push(items.len());
                items.push(Item { kind: Kind::Waypoint, layer, w: 2.0, h: 0.0, x: 0.0, y: 0.0, cols: [0.0; 3] });
            }
            chain.push(to);
            edges.push(chain);
        };
        for (id, node) in tape.nodes() {
            let i = id.index();
            if op_item[i] != usize::MAX {
                for p in node.op.inputs() {
                    add_edge(&mut items, rec_item[p.index()], op_item[i]);
                }
                add_edge(&mut items, op_item[i], rec_item[i]);
            }
        }
        let mut layout = Layout { items, edges, width: 0.0, height: 0.0 };
        layout.place();
        layout
    }

    fn place(&mut self) {
        let layers = self.items.iter().map(|it| it.layer).max().map_or(0, |m| m + 1);
        let mut up: Vec<Vec<usize>> = vec![Vec::new(); self.items.len()];
        let mut down: Vec<Vec<usize>> = vec![Vec::new(); self.items.len()];
        for chain in &self.edges {
            for w in chain.windows(2) {
                down[w[0]].push(w[1]);
                up[w[1]].push(w[0]);
            }
        }
        let mut order: Vec<Vec<usize>> = vec![Vec::new(); layers];
        for (i, it) in self.items.iter().enumerate() {
            order[it.layer].push(i);
        }
        // Order within layers: barycentre sweeps (down, then up), 6 rounds.
        let mut pos = vec![0.0f64; self.items.len()];
        let set_pos = |order: &Vec<Vec<usize>>, pos: &mut Vec<f64>| {
            for layer in order {
                for (k, &i) in layer.iter().enumerate() {
                    pos[i] = k as f64;
                }
            }
        };
        set_pos(&order, &mut pos);
        for round in 0..12 {
            let downward = round % 2 == 0;
            let range: Vec<usize> =
                if downward { (1..layers).collect() } else { (0..layers.saturating_sub(1)).rev().collect() };
            for l in range {
                let nb = if downward { &up } else { &down };
                let mut keyed: Vec<(f64, usize)> = order[l]
                    .iter()
                    .map(|&i| {
                        let ns = &nb[i];
                        let key = if ns.is_empty() {
                            pos[i]
                        } else {
                            ns.iter().map(|&j| pos[j]).sum::<f64>() / ns.len() as f64
                        };
                        (key, i)
                    })
                    .collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
                order[l] = keyed.into_iter().map(|(_, i)| i).collect();
                for (k, &i) in order[l].iter().enumerate() {
                    pos[i] = k as f64;
                }
            }
        }
        // Horizontal positions: pack, then relax towards the neighbours' mean x.
        for layer in &order {
            let mut cursor = 0.0;
            for &i in layer {
                self.items[i].x = cursor + self.items[i].w / 2.0;
                cursor += self.items[i].w + H_GAP;
            }
        }
        // Sweeps down (each node towards the mean of its inputs) and up (towards the mean of
        // its consumers); waypoints keep long edges straight and real nodes step aside.
        for round in 0..24 {
            let downward = round % 2 == 0;
            let range: Vec<usize> =
                if downward { (1..layers).collect() } else { (0..layers.saturating_sub(1)).rev().collect() };
            for l in range {
                let nb = if downward { &up } else { &down };
                for &i in &order[l] {
                    let ns = &nb[i];
                    if !ns.is_empty() {
                        self.items[i].x = ns.iter().map(|&j| self.items[j].x).sum::<f64>() / ns.len() as f64;
                    }
                }
                self.separate(&order[l]);
            }
        }
        // Vertical positions: one band per layer, as tall as its tallest item.
        let mut y = MARGIN + HEADER;
        for layer in &order {
            let h = layer.iter().map(|&i| self.items[i].h).fold(0.0, f64::max).max(4.0);
            for &i in layer {
                self.items[i].y = y + h / 2.0;
            }
            y += h + V_GAP;
        }
        let min_x = self.items.iter().map(|it| it.x - it.w / 2.0).fold(f64::INFINITY, f64::min);
        let max_x = self.items.iter().map(|it| it.x + it.w / 2.0).fold(f64::NEG_INFINITY, f64::max);
        let (min_x, max_x) = if min_x.is_finite() { (min_x, max_x) } else { (0.0, 0.0) };
        for it in &mut self.items {
            it.x += MARGIN - min_x;
        }
        self.width = (max_x - min_x + 2.0 * MARGIN).max(480.0);
        self.height = y - V_GAP + MARGIN;
    }

    /// Push the items of one layer apart (keeping their order) until none overlap; between a
    /// waypoint and a real node only the real node moves.
    fn separate(&mut self, layer: &[usize]) {
        for _ in 0..200 {
            let mut moved = false;
            for w in layer.windows(2) {
                let (a, b) = (w[0], w[1]);
                let need = (self.items[a].w + self.items[b].w) / 2.0 + H_GAP;
                let gap = self.items[b].x - self.items[a].x;
                if gap < need - 1e-6 {
                    let push = need - gap;
                    let (wa, wb) = (self.items[a].kind == Kind::Waypoint, self.items[b].kind == Kind::Waypoint);
                    let share_a = match (wa, wb) {
                        (true, false) => 0.0,
                        (false, true) => 1.0,
                        _ => 0.5,
                    };
                    self.items[a].x -= push * share_a;
                    self.items[b].x += push * (1.0 - share_a);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        // A real node squeezed between two waypoints cannot fit by moving alone: a last
        // left-to-right pass moves whatever it must, so nothing overlaps.
        for k in 1..layer.len() {
            let (a, b) = (layer[k - 1], layer[k]);
            let min_x = self.items[a].x + (self.items[a].w + self.items[b].w) / 2.0 + H_GAP;
            if self.items[b].x < min_x {
                self.items[b].x = min_x;
            }
        }
    }

    fn svg(&self, tape: &Tape, title: &str) -> String {
        let (w, h) = (self.width.ceil(), self.height.ceil());
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"monospace\" font-size=\"{FONT}\">"
        );
        s.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"black\"/></marker></defs>\n");
        let _ = writeln!(s, "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>");
        let _ = writeln!(
            s,
            "<text x=\"{MARGIN}\" y=\"{}\" font-size=\"15\" font-weight=\"bold\">{}</text>",
            MARGIN + 12.0,
            html_escape(title)
        );
        let _ = writeln!(
            s,
            "<text x=\"{MARGIN}\" y=\"{}\">record: name | <tspan fill=\"black\">forward value (data)</tspan> | <tspan fill=\"red\">gradient of the output (grad)</tspan>; ellipse: op; tensors as shape and statistics</text>",
            MARGIN + 32.0
        );
        s.push_str("<g class=\"edges\" fill=\"none\" stroke=\"black\" stroke-width=\"1.1\">\n");
        for chain in &self.edges {
            let pts: Vec<(f64, f64)> = chain
                .iter()
                .enumerate()
                .map(|(k, &i)| {
                    let it = &self.items[i];
                    if k == 0 {
                        (it.x, it.y + it.h / 2.0)
                    } else if k == chain.len() - 1 {
                        (it.x, it.y - it.h / 2.0)
                    } else {
                        (it.x, it.y)
                    }
                })
                .collect();
            let mut d = format!("M{:.1},{:.1}", pts[0].0, pts[0].1);
            for p in pts.windows(2) {
                let dy = (p[1].1 - p[0].1) / 2.0;
                let _ = write!(
                    d,
                    " C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                    p[0].0,
                    p[0].1 + dy,
                    p[1].0,
                    p[1].1 - dy,
                    p[1].0,
                    p[1].1
                );
            }
            let _ = writeln!(s, "<path d=\"{d}\" marker-end=\"url(#arrow)\"/>");
        }
        s.push_str("</g>\n");
        for it in &self.items {
            let (x0, y0) = (it.x - it.w / 2.0, it.y - it.h / 2.0);
            match it.kind {
                Kind::Waypoint => {}
                Kind::Op(i) => {
                    let id = NodeId(i);
                    let _ = writeln!(
                        s,
                        "<g class=\"node op\" data-node=\"{i}\"><ellipse cx=\"{:.1}\" cy=\"{:.1}\" rx=\"{:.1}\" ry=\"{:.1}\" fill=\"#eef3fb\" stroke=\"#3b5b92\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#1d2f52\">{}</text></g>",
                        it.x,
                        it.y,
                        it.w / 2.0,
                        it.h / 2.0,
                        it.x,
                        it.y + FONT * 0.35,
                        html_escape(&tape.op_label(id))
                    );
                }
                Kind::Record(i) => {
                    let r = tape.record(NodeId(i));
                    let leaf = matches!(tape.node(NodeId(i)).op, Op::Leaf);
                    let fill = if leaf { "#fffbe6" } else { "white" };
                    let _ = write!(
                        s,
                        "<g class=\"node record\" data-node=\"{i}\"><rect x=\"{x0:.1}\" y=\"{y0:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\" stroke=\"black\"/>",
                        it.w, it.h
                    );
                    let mut cx = x0;
                    for (c, (lines, color)) in
                        [(&r.name, "black"), (&r.value, "black"), (&r.grad, "red")].into_iter().enumerate()
                    {
                        if c > 0 {
                            let _ = write!(
                                s,
                                "<line x1=\"{cx:.1}\" y1=\"{y0:.1}\" x2=\"{cx:.1}\" y2=\"{:.1}\" stroke=\"black\"/>",
                                y0 + it.h
                            );
                        }
                        let weight = if c == 0 { " font-weight=\"bold\"" } else { "" };
                        for (k, line) in lines.iter().enumerate() {
                            let ty = y0 + PAD + LINE_H * (k as f64) + FONT * 0.95;
                            let _ = write!(
                                s,
                                "<text x=\"{:.1}\" y=\"{ty:.1}\" fill=\"{color}\"{weight} xml:space=\"preserve\">{}</text>",
                                cx + PAD,
                                html_escape(line)
                            );
                        }
                        cx += it.cols[c];
                    }
                    s.push_str("</g>\n");
                }
            }
        }
        s.push_str("</svg>\n");
        s
    }
}
