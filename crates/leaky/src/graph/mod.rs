//! A small reverse-mode tape whose computational graph can be drawn: forward values in
//! black, gradients in red.
//!
//! Every value is a node of a [`Tape`], a flat arena in insertion order (no reference
//! counting): a node holds its [`Op`], the ids of its inputs, its forward value and, after
//! [`Tape::backward`], its gradient. Ops are methods that compute the forward value at once
//! and record how they were made; each op's local chain rule sits in one place,
//! [`Tape::backward_with`], as in micrograd's `_backward` closures.
//!
//! * Values are `f64` arrays of any shape ([`Value`]); a scalar is a 0-d array.
//! * Elementwise binary ops broadcast as numpy does (shapes aligned on their trailing axes,
//!   size-1 axes stretched). Their adjoint sums the gradient over the broadcast axes, so a
//!   (D,) `gamma` scaling an (N, D) input receives the column sums.
//! * Inputs are always recorded before the node that uses them, so insertion order is a
//!   topological order and `backward` walks the arena from the output down to node 0.
//!   Gradients accumulate (`+=`): a node used by several ops gets the sum of their
//!   gradients (`u = x*x; y = u + u*x` gives `dy/dx = 33` at `x = 3`).
//! * Shape errors are programming errors and panic with a message naming the op and both
//!   shapes, as the layers do. Text typed by a user goes through [`expr::parse`], which
//!   returns errors instead.
//!
//! ```
//! use leaky::graph::Tape;
//!
//! let mut t = Tape::new();
//! let x = t.input_scalar("x", 3.0);
//! let u = t.mul(x, x);          // u = x^2
//! let ux = t.mul(u, x);
//! let y = t.add(u, ux);         // y = x^2 + x^3, u is shared
//! t.backward(y);
//! assert_eq!(t.item(y), Some(36.0));
//! assert_eq!(t.grad_item(x), Some(33.0)); // 2x + 3x^2
//! let svg = t.to_svg();         // or t.to_dot() for Graphviz
//! assert!(svg.starts_with("<svg"));
//! ```
//!
//! [`batchnorm`] builds the staged batch norm of CS231n on a tape and checks it three ways
//! (tape, hand-written layer, numerical gradient); [`net`] does the same for an
//! affine-relu-affine-softmax network.

pub mod batchnorm;
pub mod expr;
pub mod net;
mod render;

use crate::layers::activation;
use crate::tensor::matmul;
use ndarray::{Array, ArrayD, Axis, Dimension, Ix2, IxDyn, Zip};

pub use render::summary;

/// The value (and gradient) of a node: an `f64` array of any shape; a scalar is 0-d.
pub type Value = ArrayD<f64>;

/// The index of a node in its [`Tape`] (valid only for the tape that made it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(usize);

impl NodeId {
    /// The position of the node in the tape's arena (insertion order).
    pub fn index(self) -> usize {
        self.0
    }
}

/// How a node was made: the op and its inputs.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// An input or constant: no inputs, the gradient stops here.
    Leaf,
    /// `a + b`, broadcasting.
    Add(NodeId, NodeId),
    /// `a - b`, broadcasting.
    Sub(NodeId, NodeId),
    /// `a * b` elementwise, broadcasting.
    Mul(NodeId, NodeId),
    /// `a / b` elementwise, broadcasting.
    Div(NodeId, NodeId),
    /// `a @ b`: a (M, K), b (K, N) -> (M, N).
    MatMul(NodeId, NodeId),
    /// Sum over one axis (removed) or over everything (`None`, a scalar).
    Sum(NodeId, Option<usize>),
    /// Mean over one axis (removed) or over everything (`None`, a scalar).
    Mean(NodeId, Option<usize>),
    /// Maximum over one axis (removed) or over everything (`None`). The gradient goes to
    /// the first maximal element of each reduced lane; the others get zero.
    Max(NodeId, Option<usize>),
    /// The same elements in a new shape (row-major order); the new shape is the node's.
    Reshape(NodeId),
    /// `x ^ p` for a constant exponent `p`.
    Pow(NodeId, f64),
    /// `sqrt(x)`.
    Sqrt(NodeId),
    /// `exp(x)`.
    Exp(NodeId),
    /// Natural logarithm.
    Log(NodeId),
    /// `tanh(x)`.
    Tanh(NodeId),
    /// `1 / (1 + exp(-x))`.
    Sigmoid(NodeId),
    /// `max(0, x)`; the gradient is 1 where `x > 0`, else 0.
    Relu(NodeId),
    /// `min(max(x, lo), hi)`; the gradient is zero strictly outside `[lo, hi]`
    /// (TensorFlow's `clip_by_value`).
    Clip(NodeId, f64, f64),
}

impl Op {
    /// The ids this op reads, in argument order.
    pub fn inputs(&self) -> Vec<NodeId> {
        use Op::*;
        match *self {
            Leaf => vec![],
            Add(a, b) | Sub(a, b) | Mul(a, b) | Div(a, b) | MatMul(a, b) => vec![a, b],
            Sum(x, _)
            | Mean(x, _)
            | Max(x, _)
            | Reshape(x)
            | Pow(x, _)
            | Sqrt(x)
            | Exp(x)
            | Log(x)
            | Tanh(x)
            | Sigmoid(x)
            | Relu(x)
            | Clip(x, _, _) => vec![x],
        }
    }

    /// The op's name: `"add"`, `"matmul"`, `"relu"`, ... (`"leaf"` for inputs).
    pub fn name(&self) -> &'static str {
        use Op::*;
        match self {
            Leaf => "leaf",
            Add(..) => "add",
            Sub(..) => "sub",
            Mul(..) => "mul",
            Div(..) => "div",
            MatMul(..) => "matmul",
            Sum(..) => "sum",
            Mean(..) => "mean",
            Max(..) => "max",
            Reshape(..) => "reshape",
            Pow(..) => "pow",
            Sqrt(..) => "sqrt",
            Exp(..) => "exp",
            Log(..) => "log",
            Tanh(..) => "tanh",
            Sigmoid(..) => "sigmoid",
            Relu(..) => "relu",
            Clip(..) => "clip",
        }
    }
}

/// One node of the arena.
#[derive(Clone, Debug)]
pub struct Node {
    /// How it was made.
    pub op: Op,
    /// A label for drawings and messages (`None`: drawn as its op or its value).
    pub name: Option<String>,
    value: Value,
    grad: Option<Value>,
}

impl Node {
    /// The forward value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The gradient of the last backward pass (`None` before it, or when the node does not
    /// feed the output).
    pub fn grad(&self) -> Option<&Value> {
        self.grad.as_ref()
    }
}

/// The arena of nodes, in insertion (= topological) order.
#[derive(Clone, Debug, Default)]
pub struct Tape {
    nodes: Vec<Node>,
}

/// numpy's broadcasting rule: align trailing axes, a size-1 axis stretches.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        // Axis i counted from the left of the result, i.e. n - 1 - i from the right.
        let from_right = n - 1 - i;
        let da = if from_right < a.len() { a[a.len() - 1 - from_right] } else { 1 };
        let db = if from_right < b.len() { b[b.len() - 1 - from_right] } else { 1 };
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// The adjoint of broadcasting `shape` up to `g`'s shape: sum `g` over the leading axes
/// broadcasting added and over the axes where `shape` has size 1.
pub fn unbroadcast(g: &Value, shape: &[usize]) -> Value {
    let mut r = g.clone();
    while r.ndim() > shape.len() {
        r = r.sum_axis(Axis(0));
    }
    for (i, &s) in shape.iter().enumerate() {
        if s == 1 && r.shape()[i] != 1 {
            r = r.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    r
}

/// Stretch `v` to `shape` (numpy broadcasting) as an owned array.
fn stretch(v: &Value, shape: &[usize]) -> Value {
    v.broadcast(IxDyn(shape)).expect("shapes checked by the caller").to_owned()
}

fn as_matrix(v: &Value) -> ndarray::ArrayView2<'_, f64> {
    v.view().into_dimensionality::<Ix2>().expect("shapes checked by the caller")
}

impl Tape {
    /// An empty tape.
    pub fn new() -> Self {
        Tape::default()
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tape has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node `id`.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    /// All nodes with their ids, in insertion order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes.iter().enumerate().map(|(i, n)| (NodeId(i), n))
    }

    fn push(&mut self, op: Op, value: Value) -> NodeId {
        self.nodes.push(Node { op, name: None, value, grad: None });
        NodeId(self.nodes.len() - 1)
    }

    /// A named input of any shape (an `Array1`, an `Array2`, ...). Gradients flow into it.
    pub fn input<D: Dimension>(&mut self, name: &str, value: Array<f64, D>) -> NodeId {
        let id = self.push(Op::Leaf, value.into_dyn());
        self.nodes[id.0].name = Some(name.to_string());
        id
    }

    /// A named scalar input (a 0-d array).
    pub fn input_scalar(&mut self, name: &str, v: f64) -> NodeId {
        self.input(name, ndarray::arr0(v))
    }

    /// An unnamed scalar constant (drawn as its value). It is a leaf like any other, so it
    /// receives a gradient too.
    pub fn scalar(&mut self, v: f64) -> NodeId {
        self.push(Op::Leaf, ndarray::arr0(v).into_dyn())
    }

    /// Give node `id` a name for drawings; returns `id`.
    pub fn set_name(&mut self, id: NodeId, name: &str) -> NodeId {
        self.nodes[id.0].name = Some(name.to_string());
        id
    }

    /// The forward value of `id`.
    pub fn value(&self, id: NodeId) -> &Value {
        &self.nodes[id.0].value
    }

    /// The gradient of the last backward pass with respect to `id` (`None` before any, or
    /// when `id` does not feed the output). Same shape as the value.
    pub fn grad(&self, id: NodeId) -> Option<&Value> {
        self.nodes[id.0].grad.as_ref()
    }

    /// The value of a one-element node as a number (`None` for larger ones).
    pub fn item(&self, id: NodeId) -> Option<f64> {
        let v = self.value(id);
        (v.len() == 1).then(|| v.iter().copied().next().unwrap_or(f64::NAN))
    }

    /// The gradient of a one-element node as a number (`None` for larger ones or without a
    /// gradient).
    pub fn grad_item(&self, id: NodeId) -> Option<f64> {
        let g = self.grad(id)?;
        (g.len() == 1).then(|| g.iter().copied().next().unwrap_or(f64::NAN))
    }

    fn shape(&self, id: NodeId) -> &[usize] {
        self.nodes[id.0].value.shape()
    }

    fn binary(&mut self, a: NodeId, b: NodeId, op: Op, f: impl Fn(f64, f64) -> f64) -> NodeId {
        let shape = broadcast_shape(self.shape(a), self.shape(b)).unwrap_or_else(|| {
            panic!("graph {}: shapes {:?} and {:?} do not broadcast", op.name(), self.shape(a), self.shape(b))
        });
        let av = self.value(a).broadcast(IxDyn(&shape)).expect("broadcast shape");
        let bv = self.value(b).broadcast(IxDyn(&shape)).expect("broadcast shape");
        let v = Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y));
        self.push(op, v)
    }

    fn unary(&mut self, x: NodeId, op: Op, f: impl Fn(f64) -> f64) -> NodeId {
        let v = self.value(x).mapv(f);
        self.push(op, v)
    }

    fn check_axis(&self, x: NodeId, axis: Option<usize>, op: &str) {
        if let Some(k) = axis {
            let nd = self.shape(x).len();
            assert!(k < nd, "graph {op}: axis {k} out of range for shape {:?}", self.shape(x));
        }
    }

    /// `a + b` with broadcasting.
    pub fn add(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.binary(a, b, Op::Add(a, b), |x, y| x + y)
    }

    /// `a - b` with broadcasting.
    pub fn sub(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.binary(a, b, Op::Sub(a, b), |x, y| x - y)
    }

    /// `a * b` elementwise with broadcasting.
    pub fn mul(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.binary(a, b, Op::Mul(a, b), |x, y| x * y)
    }

    /// `a / b` elementwise with broadcasting.
    pub fn div(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.binary(a, b, Op::Div(a, b), |x, y| x / y)
    }

    /// `a @ b`: a (M, K), b (K, N) -> (M, N).
    pub fn matmul(&mut self, a: NodeId, b: NodeId) -> NodeId {
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        assert!(
            sa.len() == 2 && sb.len() == 2 && sa[1] == sb[0],
            "graph matmul: needs (M, K) @ (K, N), got {sa:?} @ {sb:?}"
        );
        let v = matmul(as_matrix(self.value(a)), as_matrix(self.value(b))).into_dyn();
        self.push(Op::MatMul(a, b), v)
    }

    /// Sum over `axis` (removed from the shape), or over everything when `None` (a scalar).
    pub fn sum(&mut self, x: NodeId, axis: Option<usize>) -> NodeId {
        self.check_axis(x, axis, "sum");
        let xv = self.value(x);
        let v = match axis {
            Some(k) => xv.sum_axis(Axis(k)),
            None => ndarray::arr0(xv.sum()).into_dyn(),
        };
        self.push(Op::Sum(x, axis), v)
    }

    /// Mean over `axis` (removed), or over everything when `None`. The axis must not be empty.
    pub fn mean(&mut self, x: NodeId, axis: Option<usize>) -> NodeId {
        self.check_axis(x, axis, "mean");
        let xv = self.value(x);
        let count = reduced_count(xv.shape(), axis);
        assert!(count > 0, "graph mean: empty axis in shape {:?}", xv.shape());
        let v = match axis {
            Some(k) => xv.sum_axis(Axis(k)) / count as f64,
            None => ndarray::arr0(xv.sum() / count as f64).into_dyn(),
        };
        self.push(Op::Mean(x, axis), v)
    }

    /// Maximum over `axis` (removed), or over everything when `None`. The axis must not be
    /// empty.
    pub fn max(&mut self, x: NodeId, axis: Option<usize>) -> NodeId {
        self.check_axis(x, axis, "max");
        let xv = self.value(x);
        assert!(reduced_count(xv.shape(), axis) > 0, "graph max: empty axis in shape {:?}", xv.shape());
        let fold =
            |l: ndarray::ArrayViewD<f64>| l.fold(f64::NEG_INFINITY, |m, &v| if v > m || v.is_nan() { v } else { m });
        let v = match axis {
            Some(k) => xv.map_axis(Axis(k), |l| fold(l.into_dyn())),
            None => ndarray::arr0(fold(xv.view())).into_dyn(),
        };
        self.push(Op::Max(x, axis), v)
    }

    /// The elements of `x` in row-major order, viewed as `shape` (same number of elements),
    /// e.g. (N,) -> (N, 1) so that a per-row statistic broadcasts over columns.
    pub fn reshape(&mut self, x: NodeId, shape: &[usize]) -> NodeId {
        let xv = self.value(x);
        assert_eq!(
            xv.len(),
            shape.iter().product::<usize>(),
            "graph reshape: {:?} has {} elements, {shape:?} needs {}",
            xv.shape(),
            xv.len(),
            shape.iter().product::<usize>()
        );
        let v = xv.as_standard_layout().into_owned().into_shape_with_order(IxDyn(shape)).expect("sizes checked");
        self.push(Op::Reshape(x), v)
    }

    /// `x ^ p` for a constant `p`.
    pub fn pow(&mut self, x: NodeId, p: f64) -> NodeId {
        self.unary(x, Op::Pow(x, p), |v| v.powf(p))
    }

    /// `sqrt(x)`.
    pub fn sqrt(&mut self, x: NodeId) -> NodeId {
        self.unary(x, Op::Sqrt(x), f64::sqrt)
    }

    /// `exp(x)`.
    pub fn exp(&mut self, x: NodeId) -> NodeId {
        self.unary(x, Op::Exp(x), f64::exp)
    }

    /// Natural logarithm.
    pub fn log(&mut self, x: NodeId) -> NodeId {
        self.unary(x, Op::Log(x), f64::ln)
    }

    /// `tanh(x)`.
    pub fn tanh(&mut self, x: NodeId) -> NodeId {
        self.unary(x, Op::Tanh(x), activation::tanh)
    }

    /// `1 / (1 + exp(-x))`.
    pub fn sigmoid(&mut self, x: NodeId) -> NodeId {
        self.unary(x, Op::Sigmoid(x), activation::sigmoid)
    }

    /// `max(0, x)`.
    pub fn relu(&mut self, x: NodeId) -> NodeId {
        self.unary(x, Op::Relu(x), activation::relu)
    }

    /// `min(max(x, lo), hi)`; panics unless `lo <= hi`.
    pub fn clip(&mut self, x: NodeId, lo: f64, hi: f64) -> NodeId {
        assert!(lo <= hi, "graph clip: lo {lo} > hi {hi}");
        self.unary(x, Op::Clip(x, lo, hi), |v| v.max(lo).min(hi))
    }

    /// Which nodes `output` depends on (itself included), indexed by node position.
    pub fn ancestors(&self, output: NodeId) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        live[output.0] = true;
        for i in (0..=output.0).rev() {
            if live[i] {
                for p in self.nodes[i].op.inputs() {
                    live[p.0] = true;
                }
            }
        }
        live
    }

    /// Backward pass seeded with ones: the gradient of `sum(output)` with respect to every
    /// node that feeds `output`. For a scalar output this is `d output / d node`.
    pub fn backward(&mut self, output: NodeId) {
        let seed = Value::ones(self.value(output).raw_dim());
        self.backward_with(output, seed);
    }

    /// Backward pass from an upstream gradient `seed` of the output's shape (`dout` in the
    /// layers' terms): afterwards `grad(n)` is `d sum(output * seed) / d n` for every node
    /// `n` feeding `output`; other nodes have no gradient. Earlier gradients are cleared.
    pub fn backward_with(&mut self, output: NodeId, seed: Value) {
        assert_eq!(
            seed.shape(),
            self.shape(output),
            "graph backward: seed has shape {:?}, output has {:?}",
            seed.shape(),
            self.shape(output)
        );
        let live = self.ancestors(output);
        for n in &mut self.nodes {
            n.grad = None;
        }
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if live[i] {
                n.grad = Some(Value::zeros(n.value.raw_dim()));
            }
        }
        self.nodes[output.0].grad = Some(seed);
        // Insertion order is topological (inputs come first), so walking it backwards
        // finishes every node's gradient before that node passes it on.
        for i in (0..=output.0).rev() {
            if !live[i] || matches!(self.nodes[i].op, Op::Leaf) {
                continue;
            }
            let contributions = self.local_backward(NodeId(i));
            for (p, g) in contributions {
                let slot = self.nodes[p.0].grad.as_mut().expect("inputs of live nodes are live");
                *slot += &g;
            }
        }
    }

    /// The chain rule of one op: the gradient each input receives from node `id`, given the
    /// gradient `g` of `id` and the cached forward values.
    fn local_backward(&self, id: NodeId) -> Vec<(NodeId, Value)> {
        let node = &self.nodes[id.0];
        let g = node.grad.as_ref().expect("live node has a gradient");
        let out = &node.value;
        let val = |n: NodeId| &self.nodes[n.0].value;
        match node.op {
            Op::Leaf => vec![],
            Op::Add(a, b) => vec![(a, unbroadcast(g, val(a).shape())), (b, unbroadcast(g, val(b).shape()))],
            Op::Sub(a, b) => vec![(a, unbroadcast(g, val(a).shape())), (b, unbroadcast(&-g, val(b).shape()))],
            Op::Mul(a, b) => {
                // d(ab)/da = b, d(ab)/db = a, each stretched to the output's shape.
                let (av, bv) = (stretch(val(a), g.shape()), stretch(val(b), g.shape()));
                vec![(a, unbroadcast(&(g * &bv), val(a).shape())), (b, unbroadcast(&(g * &av), val(b).shape()))]
            }
            Op::Div(a, b) => {
                // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2.
                let (av, bv) = (stretch(val(a), g.shape()), stretch(val(b), g.shape()));
                let ga = g / &bv;
                let gb = Zip::from(g).and(&av).and(&bv).map_collect(|&g, &a, &b| -g * a / (b * b));
                vec![(a, unbroadcast(&ga, val(a).shape())), (b, unbroadcast(&gb, val(b).shape()))]
            }
            Op::MatMul(a, b) => {
                // out = a @ b: da = g @ b^T, db = a^T @ g.
                let gm = as_matrix(g);
                let da = matmul(gm, as_matrix(val(b)).t()).into_dyn();
                let db = matmul(as_matrix(val(a)).t(), gm).into_dyn();
                vec![(a, da), (b, db)]
            }
            Op::Sum(x, axis) => vec![(x, spread(g, val(x).shape(), axis, 1.0))],
            Op::Mean(x, axis) => {
                let count = reduced_count(val(x).shape(), axis) as f64;
                vec![(x, spread(g, val(x).shape(), axis, 1.0 / count))]
            }
            Op::Max(x, axis) => vec![(x, max_backward(g, val(x), out, axis))],
            Op::Reshape(x) => {
                let gx = g.as_standard_layout().into_owned().into_shape_with_order(val(x).raw_dim());
                vec![(x, gx.expect("same number of elements"))]
            }
            // d x^p / dx = p x^(p-1).
            Op::Pow(x, p) => vec![(x, Zip::from(g).and(val(x)).map_collect(|&g, &v| g * p * v.powf(p - 1.0)))],
            // d sqrt(x) / dx = 1 / (2 sqrt(x)): reuses the output.
            Op::Sqrt(x) => vec![(x, Zip::from(g).and(out).map_collect(|&g, &s| 0.5 * g / s))],
            // d exp(x) / dx = exp(x): the output again.
            Op::Exp(x) => vec![(x, g * out)],
            Op::Log(x) => vec![(x, g / val(x))],
            // d tanh / dx = 1 - tanh^2; d sigmoid / dx = s (1 - s); d relu / dx = 1[x > 0]: the
            // activation layers' own local gradients.
            Op::Tanh(x) => vec![(x, Zip::from(g).and(out).map_collect(|&g, &t| activation::tanh_backprop(g, t)))],
            Op::Sigmoid(x) => vec![(x, Zip::from(g).and(out).map_collect(|&g, &s| activation::sigmoid_backprop(g, s)))],
            Op::Relu(x) => vec![(x, Zip::from(g).and(val(x)).map_collect(|&g, &v| activation::relu_backprop(g, v)))],
            Op::Clip(x, lo, hi) => {
                vec![(x, Zip::from(g).and(val(x)).map_collect(|&g, &v| if (lo..=hi).contains(&v) { g } else { 0.0 }))]
            }
        }
    }
}

/// How many elements one reduction over `axis` (or everything) combines.
fn reduced_count(shape: &[usize], axis: Option<usize>) -> usize {
    match axis {
        Some(k) => shape[k],
        None => shape.iter().product(),
    }
}

/// The adjoint of a sum over `axis`: every reduced element gets `scale * g` of its lane.
fn spread(g: &Value, shape: &[usize], axis: Option<usize>, scale: f64) -> Value {
    let g = match axis {
        Some(k) => g.clone().insert_axis(Axis(k)),
        None => g.clone(),
    };
    stretch(&g, shape) * scale
}

/// The adjoint of a max: each lane's gradient goes to its first maximal element.
fn max_backward(g: &Value, x: &Value, out: &Value, axis: Option<usize>) -> Value {
    let mut gx = Value::zeros(x.raw_dim());
    let first_max = |lane: ndarray::ArrayViewD<f64>, m: f64| lane.iter().position(|&v| v == m || v.is_nan());
    match axis {
        None => {
            let m = out.iter().copied().next().unwrap_or(f64::NAN);
            if let Some(i) = first_max(x.view(), m) {
                let gi = g.iter().copied().next().unwrap_or(0.0);
                if let Some(slot) = gx.iter_mut().nth(i) {
                    *slot = gi;
                }
            }
        }
        Some(k) => {
            Zip::from(gx.lanes_mut(Axis(k))).and(x.lanes(Axis(k))).and(out).and(g).for_each(|mut gl, xl, &m, &gv| {
                if let Some(i) = first_max(xl.into_dyn(), m) {
                    gl[i] = gv;
                }
            });
        }
    }
    gx
}
