//! The tape against independent references: micrograd's published test values, hand-worked
//! gradients, and centred finite differences for every op (f64, h = 1e-5, rel_error <= 1e-7).

use leaky::gradcheck::{numerical_gradient, rel_error};
use leaky::graph::{expr, NodeId, Tape, Value};
use leaky::tensor::{randn, rng};
use ndarray::{arr1, arr2, ArrayD, IxDyn};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

/// micrograd `test/test_engine.py::test_sanity_check`, values from its PyTorch reference.
#[test]
fn micrograd_sanity_check_on_the_tape() {
    let mut t = Tape::new();
    let x = t.input_scalar("x", -4.0);
    let two = t.scalar(2.0);
    let z = t.mul(two, x);
    let z = t.add(z, two);
    let z = t.add(z, x);
    let rz = t.relu(z);
    let zx = t.mul(z, x);
    let q = t.add(rz, zx);
    let zz = t.mul(z, z);
    let h = t.relu(zz);
    let hq = t.add(h, q);
    let qx = t.mul(q, x);
    let y = t.add(hq, qx);
    t.backward(y);
    assert_eq!(t.item(y), Some(-20.0));
    assert_eq!(t.grad_item(x), Some(46.0));
}

/// micrograd `test_more_ops`, built through the tape API.
#[test]
fn micrograd_more_ops_on_the_tape() {
    let mut t = Tape::new();
    let a = t.input_scalar("a", -4.0);
    let b = t.input_scalar("b", 2.0);
    let k = |t: &mut Tape, v: f64| t.scalar(v);
    let c = t.add(a, b);
    let ab = t.mul(a, b);
    let b3 = t.pow(b, 3.0);
    let d = t.add(ab, b3);
    // c += c + 1
    let one = k(&mut t, 1.0);
    let c1 = t.add(c, one);
    let c = t.add(c, c1);
    // c += 1 + c + (-a)
    let one = k(&mut t, 1.0);
    let m1 = k(&mut t, -1.0);
    let s = t.add(one, c);
    let na = t.mul(a, m1);
    let s = t.add(s, na);
    let c = t.add(c, s);
    // d += d * 2 + (b + a).relu()
    let two = k(&mut t, 2.0);
    let d2 = t.mul(d, two);
    let ba = t.add(b, a);
    let r = t.relu(ba);
    let s = t.add(d2, r);
    let d = t.add(d, s);
    // d += 3 * d + (b - a).relu()
    let three = k(&mut t, 3.0);
    let d3 = t.mul(three, d);
    let bma = t.sub(b, a);
    let r = t.relu(bma);
    let s = t.add(d3, r);
    let d = t.add(d, s);
    let e = t.sub(c, d);
    let f = t.pow(e, 2.0);
    let two = k(&mut t, 2.0);
    let g = t.div(f, two);
    let ten = k(&mut t, 10.0);
    let tf = t.div(ten, f);
    let g = t.add(g, tf);
    t.backward(g);
    let (gv, da, db) = (t.item(g).unwrap(), t.grad_item(a).unwrap(), t.grad_item(b).unwrap());
    assert!(close(gv, 24.70408163265306), "g = {gv}");
    assert!(close(da, 138.83381924198252), "dg/da = {da}");
    assert!(close(db, 645.5772594752186), "dg/db = {db}");
}

#[test]
fn micrograd_expressions_through_the_parser() {
    let p = expr::parse("x = -4; z = 2*x + 2 + x; q = relu(z) + z*x; h = relu(z*z); y = h + q + q*x").unwrap();
    assert_eq!(p.tape.item(p.output), Some(-20.0));
    assert_eq!(p.tape.grad_item(p.inputs[0].1), Some(46.0));

    let src = "a = -4; b = 2; c = a + b; d = a*b + b^3; c = c + (c + 1); c = c + (1 + c + (-a));
               d = d + (d*2 + relu(b + a)); d = d + (3*d + relu(b - a)); e = c - d; f = e^2; g = f/2; g = g + 10/f";
    let p = expr::parse(src).unwrap();
    let names: Vec<&str> = p.inputs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(close(p.tape.item(p.output).unwrap(), 24.70408163265306));
    assert!(close(p.tape.grad_item(p.inputs[0].1).unwrap(), 138.83381924198252));
    assert!(close(p.tape.grad_item(p.inputs[1].1).unwrap(), 645.5772594752186));
}

#[test]
fn a_shared_node_receives_the_sum_of_its_consumers_gradients() {
    // u = x*x; y = u + u*x = x^2 + x^3 at x = 3: dy/dx = 2x + 3x^2 = 33, dy/du = 1 + x = 4.
    let mut t = Tape::new();
    let x = t.input_scalar("x", 3.0);
    let u = t.mul(x, x);
    let ux = t.mul(u, x);
    let y = t.add(u, ux);
    t.backward(y);
    assert_eq!(t.item(y), Some(36.0));
    assert_eq!(t.grad_item(u), Some(4.0));
    assert_eq!(t.grad_item(x), Some(33.0));
    // A second backward starts from zero instead of adding to the first.
    t.backward(y);
    assert_eq!(t.grad_item(x), Some(33.0));
}

#[test]
fn nodes_that_do_not_feed_the_output_get_no_gradient() {
    let mut t = Tape::new();
    let x = t.input_scalar("x", 1.0);
    let unused = t.input_scalar("w", 5.0);
    let other = t.exp(unused);
    let y = t.tanh(x);
    t.backward(y);
    assert!(t.grad(unused).is_none() && t.grad(other).is_none());
    assert!(close(t.grad_item(x).unwrap(), 1.0 - 1f64.tanh().powi(2)));
}

#[test]
fn broadcasting_adjoints_sum_over_the_stretched_axes() {
    // y = sum(x * b + s), x (2, 2), b (2,), s a scalar; worked by hand:
    // dy/dx = b on every row, dy/db = column sums of x, dy/ds = number of elements.
    let mut t = Tape::new();
    let x = t.input("x", arr2(&[[1.0, 2.0], [3.0, 4.0]]));
    let b = t.input("b", arr1(&[10.0, 20.0]));
    let s = t.input_scalar("s", 0.5);
    let xb = t.mul(x, b);
    let z = t.add(xb, s);
    let y = t.sum(z, None);
    t.backward(y);
    assert_eq!(t.item(y), Some(10.0 + 40.0 + 30.0 + 80.0 + 2.0));
    assert_eq!(t.grad(x).unwrap(), &arr2(&[[10.0, 20.0], [10.0, 20.0]]).into_dyn());
    assert_eq!(t.grad(b).unwrap(), &arr1(&[4.0, 6.0]).into_dyn());
    assert_eq!(t.grad_item(s), Some(4.0));

    // (3, 1) - (1, 4) -> (3, 4): each input gets the sum over the axis it was stretched on.
    let mut t = Tape::new();
    let a = t.input("a", arr2(&[[1.0], [2.0], [3.0]]));
    let c = t.input("c", arr2(&[[1.0, 2.0, 3.0, 4.0]]));
    let d = t.sub(a, c);
    assert_eq!(t.value(d).shape(), &[3, 4]);
    t.backward(d);
    assert_eq!(t.grad(a).unwrap(), &arr2(&[[4.0], [4.0], [4.0]]).into_dyn());
    assert_eq!(t.grad(c).unwrap(), &arr2(&[[-3.0, -3.0, -3.0, -3.0]]).into_dyn());
}

#[test]
fn clip_passes_the_gradient_on_its_bounds_and_blocks_it_strictly_outside() {
    let mut t = Tape::new();
    let x = t.input("x", arr1(&[-2.0, -1.0, 0.3, 1.0, 2.0]));
    let y = t.clip(x, -1.0, 1.0);
    t.backward(y);
    assert_eq!(t.value(y), &arr1(&[-1.0, -1.0, 0.3, 1.0, 1.0]).into_dyn());
    assert_eq!(t.grad(x).unwrap(), &arr1(&[0.0, 1.0, 1.0, 1.0, 0.0]).into_dyn());
    // relu at exactly 0 passes nothing (micrograd's `out.data > 0`).
    let z = t.input("z", arr1(&[0.0, 1.0]));
    let r = t.relu(z);
    t.backward(r);
    assert_eq!(t.grad(z).unwrap(), &arr1(&[0.0, 1.0]).into_dyn());
}

#[test]
fn max_sends_the_gradient_to_the_first_maximum_of_each_lane() {
    let mut t = Tape::new();
    let x = t.input("x", arr2(&[[1.0, 5.0, 5.0], [7.0, 0.0, -1.0]]));
    let m = t.max(x, Some(1));
    assert_eq!(t.value(m), &arr1(&[5.0, 7.0]).into_dyn());
    t.backward_with(m, arr1(&[2.0, 3.0]).into_dyn());
    assert_eq!(t.grad(x).unwrap(), &arr2(&[[0.0, 2.0, 0.0], [3.0, 0.0, 0.0]]).into_dyn());
}

/// Build `op` on a fresh tape from `inputs`, and return the output node.
type Build = dyn Fn(&mut Tape, &[NodeId]) -> NodeId;

/// Check every input's tape gradient of `sum(op(inputs) * seed)` against centred
/// differences; no difference may cross a kink (the inputs are chosen away from them).
fn check_op(name: &str, inputs: &[Value], build: &Build) {
    let run = |xs: &[Value]| {
        let mut t = Tape::new();
        let ids: Vec<NodeId> = xs.iter().enumerate().map(|(k, x)| t.input(&format!("in{k}"), x.clone())).collect();
        let out = build(&mut t, &ids);
        (t, ids, out)
    };
    let (mut t, ids, out) = run(inputs);
    let seed = randn::<f64, _>(IxDyn(t.value(out).shape()), 1.0, &mut rng(99));
    t.backward_with(out, seed.clone());
    for k in 0..inputs.len() {
        let f = |xk: &ArrayD<f64>| {
            let mut xs = inputs.to_vec();
            xs[k] = xk.clone();
            let (t, _, out) = run(&xs);
            (t.value(out) * &seed).sum()
        };
        let num = numerical_gradient(f, &inputs[k], 1e-5);
        assert!(num.kinks.is_empty(), "{name} input {k}: difference crossed a kink at {:?}", num.kinks);
        let e = rel_error(t.grad(ids[k]).unwrap(), &num.grad);
        assert!(e <= 1e-7, "{name} input {k}: rel_error {e:.2e}");
    }
}

fn rand(shape: &[usize], seed: u64) -> Value {
    randn(IxDyn(shape), 1.0, &mut rng(seed))
}

/// Random values with |v| in [0.5, 1.5], away from 0 (relu, division) and from each other.
fn away_from_zero(shape: &[usize], seed: u64) -> Value {
    rand(shape, seed).mapv(|v| v.signum() * (0.5 + v.abs().min(1.0)))
}

#[test]
fn every_op_backward_matches_numerical_gradients() {
    let pos = |shape: &[usize], seed| rand(shape, seed).mapv(|v| 0.5 + v.abs());
    let cases: Vec<(&str, Vec<Value>, Box<Build>)> = vec![
        ("add (3,4)+(4,)", vec![rand(&[3, 4], 1), rand(&[4], 2)], Box::new(|t, i| t.add(i[0], i[1]))),
        ("add (2,3,4)+()", vec![rand(&[2, 3, 4], 1), rand(&[], 2)], Box::new(|t, i| t.add(i[0], i[1]))),
        ("sub (3,1)-(1,4)", vec![rand(&[3, 1], 3), rand(&[1, 4], 4)], Box::new(|t, i| t.sub(i[0], i[1]))),
        ("mul (2,3,4)*(3,1)", vec![rand(&[2, 3, 4], 5), rand(&[3, 1], 6)], Box::new(|t, i| t.mul(i[0], i[1]))),
        ("mul shared x*x", vec![rand(&[3, 2], 7)], Box::new(|t, i| t.mul(i[0], i[0]))),
        ("div (3,4)/(4,)", vec![rand(&[3, 4], 8), away_from_zero(&[4], 9)], Box::new(|t, i| t.div(i[0], i[1]))),
        ("div ()/(2,3)", vec![rand(&[], 10), away_from_zero(&[2, 3], 11)], Box::new(|t, i| t.div(i[0], i[1]))),
        ("matmul (3,4)@(4,2)", vec![rand(&[3, 4], 12), rand(&[4, 2], 13)], Box::new(|t, i| t.matmul(i[0], i[1]))),
        ("sum axis 0", vec![rand(&[3, 4], 14)], Box::new(|t, i| t.sum(i[0], Some(0)))),
        ("sum axis 1 of (2,3,4)", vec![rand(&[2, 3, 4], 15)], Box::new(|t, i| t.sum(i[0], Some(1)))),
        ("sum all", vec![rand(&[3, 4], 16)], Box::new(|t, i| t.sum(i[0], None))),
        ("mean axis 1", vec![rand(&[3, 4], 17)], Box::new(|t, i| t.mean(i[0], Some(1)))),
        ("mean all", vec![rand(&[2, 5], 18)], Box::new(|t, i| t.mean(i[0], None))),
        ("max axis 1", vec![rand(&[4, 5], 19)], Box::new(|t, i| t.max(i[0], Some(1)))),
        ("max axis 0 of (3,2,2)", vec![rand(&[3, 2, 2], 20)], Box::new(|t, i| t.max(i[0], Some(0)))),
        ("max all", vec![rand(&[3, 3], 21)], Box::new(|t, i| t.max(i[0], None))),
        ("reshape (6,)->(2,3)", vec![rand(&[6], 22)], Box::new(|t, i| t.reshape(i[0], &[2, 3]))),
        ("pow 3", vec![rand(&[3, 4], 23)], Box::new(|t, i| t.pow(i[0], 3.0))),
        ("pow -1.5", vec![pos(&[3, 4], 24)], Box::new(|t, i| t.pow(i[0], -1.5))),
        ("sqrt", vec![pos(&[3, 4], 25)], Box::new(|t, i| t.sqrt(i[0]))),
        ("exp", vec![rand(&[3, 4], 26)], Box::new(|t, i| t.exp(i[0]))),
        ("log", vec![pos(&[3, 4], 27)], Box::new(|t, i| t.log(i[0]))),
        ("tanh", vec![rand(&[3, 4], 28)], Box::new(|t, i| t.tanh(i[0]))),
        ("sigmoid", vec![rand(&[3, 4], 29)], Box::new(|t, i| t.sigmoid(i[0]))),
        ("relu", vec![away_from_zero(&[3, 4], 30)], Box::new(|t, i| t.relu(i[0]))),
        ("clip [-1, 1]", vec![rand(&[4, 5], 31).mapv(|v| 2.0 * v)], Box::new(|t, i| t.clip(i[0], -1.0, 1.0))),
        (
            "composite tanh(x @ w + b) summed per row",
            vec![rand(&[3, 4], 32), rand(&[4, 2], 33), rand(&[2], 34)],
            Box::new(|t, i| {
                let a = t.matmul(i[0], i[1]);
                let a = t.add(a, i[2]);
                let h = t.tanh(a);
                t.sum(h, Some(1))
            }),
        ),
    ];
    for (name, inputs, build) in &cases {
        check_op(name, inputs, build.as_ref());
    }
}

#[test]
fn clip_test_inputs_really_straddle_the_bounds() {
    // The clip case above only tests the zero-gradient branch if some inputs are outside.
    let x = rand(&[4, 5], 31).mapv(|v| 2.0 * v);
    let outside = x.iter().filter(|v| v.abs() > 1.0).count();
    assert!(outside > 0 && outside < x.len(), "{outside} of {} outside", x.len());
}

#[test]
fn dot_and_svg_show_every_node() {
    // y = relu(3x + 2) * x at x = 3: y = 33, dy/dx = (3x + 2) + 3x = 20.
    let p = expr::parse("x = 3; z = 2*x + 2 + x; y = relu(z) * x").unwrap();
    let dot = p.tape.to_dot();
    assert!(dot.starts_with("digraph"));
    let svg = p.tape.to_svg();
    // One record per node, one ellipse per op.
    let ops = p.tape.nodes().filter(|(_, n)| !matches!(n.op, leaky::graph::Op::Leaf)).count();
    assert_eq!(svg.matches("class=\"node record\"").count(), p.tape.len());
    assert_eq!(svg.matches("<ellipse").count(), ops);
    assert_eq!(dot.matches("shape=ellipse").count(), ops);
    assert!(svg.contains("viewBox") && svg.contains("marker-end") && svg.contains("fill=\"red\""));
    assert!(svg.contains("data 33.0000") && svg.contains("grad 20.0000"), "values and gradients are drawn");
    assert!(dot.contains("grad 20.0000"));
    assert!(!svg.contains("href") && !svg.contains("@import") && !svg.contains("<image"), "no external references");
}
