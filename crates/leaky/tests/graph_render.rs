//! The drawings of the tape: structure of the SVG and DOT text of the staged batch norm.

use leaky::graph::batchnorm::BnProblem;
use leaky::graph::{expr, net, Op, Tape};

/// The (x, y, width, height) of every `<rect>` of a record, asserting none overlap.
fn assert_records_apart(t: &Tape, svg: &str) {
    let rects: Vec<[f64; 4]> = svg
        .split("<g class=\"node record\"")
        .skip(1)
        .map(|r| {
            let r = &r[r.find("<rect x=\"").unwrap() + "<rect x=\"".len()..];
            let num = |key: &str| -> f64 {
                let at = r.find(key).unwrap() + key.len();
                r[at..].split('"').next().unwrap().parse().unwrap()
            };
            let x: f64 = r.split('"').next().unwrap().parse().unwrap();
            [x, num("y=\""), num("width=\""), num("height=\"")]
        })
        .collect();
    assert_eq!(rects.len(), t.len());
    for (i, a) in rects.iter().enumerate() {
        for b in &rects[i + 1..] {
            let apart = a[0] + a[2] <= b[0] || b[0] + b[2] <= a[0] || a[1] + a[3] <= b[1] || b[1] + b[3] <= a[1];
            assert!(apart, "records overlap: {a:?} {b:?}");
        }
    }
}

#[test]
fn expression_and_network_graphs_have_no_overlapping_records() {
    let programs = [
        "x = -4; z = 2*x + 2 + x; q = relu(z) + z*x; h = relu(z*z); y = h + q + q*x",
        "a = -4; b = 2; c = a + b; d = a*b + b^3; c = c + (c + 1); c = c + (1 + c + (-a)); d = d + (d*2 + relu(b + a)); d = d + (3*d + relu(b - a)); e = c - d; f = e^2; g = f/2; g = g + 10/f",
    ];
    for src in programs {
        let p = expr::parse(src).unwrap();
        assert_records_apart(&p.tape, &p.tape.to_svg());
    }
    let (t, _) = net::NetProblem::random(0).tape();
    assert_records_apart(&t, &t.to_svg());
}

#[test]
fn batchnorm_svg_has_one_record_per_node_and_one_ellipse_per_op_without_overlaps() {
    let (t, _) = BnProblem::random(4, 3, 0).tape();
    let svg = t.to_svg();
    if let Ok(path) = std::env::var("LEAKY_GRAPH_SVG_OUT") {
        std::fs::write(path, &svg).unwrap();
    }
    let ops = t.nodes().filter(|(_, n)| !matches!(n.op, Op::Leaf)).count();
    assert_eq!(svg.matches("class=\"node record\"").count(), t.len());
    assert_eq!(svg.matches("class=\"node op\"").count(), ops);
    // Edges: one per op input plus one per op result.
    let edges: usize = t.nodes().map(|(_, n)| if matches!(n.op, Op::Leaf) { 0 } else { n.op.inputs().len() + 1 }).sum();
    assert_eq!(svg.matches("marker-end=\"url(#arrow)\"").count(), edges);
    assert_records_apart(&t, &svg);
}

#[test]
fn batchnorm_dot_has_red_gradients_and_black_edges() {
    let (t, _) = BnProblem::random(4, 3, 0).tape();
    let dot = t.to_dot();
    assert!(dot.starts_with("digraph tape {") && dot.trim_end().ends_with('}'));
    assert_eq!(dot.matches("<FONT COLOR=\"red\">grad").count(), t.len());
    assert!(dot.contains("edge [color=black"));
    assert!(dot.contains("label=\"x - mu\"") && dot.contains("label=\"mean(x, axis=0)\""));
}
