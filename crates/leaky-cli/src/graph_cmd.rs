//! `leaky graph`: draw a computation on the reverse-mode tape, forward values in black and
//! gradients in red.
//!
//! * `leaky graph batchnorm --out bn.svg`: the staged batch norm of a random (4, 3) batch,
//!   and the three-way gradient check (tape, hand-written layer, numerical).
//! * `leaky graph expr "x = -4; y = relu(2*x + 1) * x" --out e.svg`: a small scalar
//!   program (syntax in `leaky::graph::expr`), its value and every input's gradient.
//!
//! `--out` writes SVG or Graphviz DOT, chosen by the extension (`.svg`, `.dot`, `.gv`).

use crate::present::sci;
use crate::{show, Failure};
use anyhow::anyhow;
use clap::{Args, Subcommand};
use leaky::graph::batchnorm::{agreement_on, Agreement, BnProblem};
use leaky::graph::net::{self, NetAgreement};
use leaky::graph::{expr, Tape};
use std::path::{Path, PathBuf};

/// The bar every agreement must meet (the project's "good" gradient-check band).
pub const TOLERANCE: f64 = 1e-7;

/// Arguments of `leaky graph`.
#[derive(Args)]
pub struct GraphArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// The staged batch norm (mean, centre, square, variance, sqrt, invert, normalise, scale,
    /// shift) of a random (4, 3) batch; checks tape, layer and numerical gradients agree.
    Batchnorm {
        /// Write the graph here: .svg, or .dot / .gv for Graphviz.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Seed of the random batch, gamma, beta and upstream gradient.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// A small scalar program, e.g. "x = -4; z = 2*x + 2 + x; y = relu(z) + z*x": prints
    /// its value and d(last)/d(input) for every input (NAME = NUMBER).
    Expr {
        /// Statements separated by ';' or new lines; operators + - * / ^ (constant
        /// exponent); functions relu tanh sigmoid exp log sqrt clip(x, lo, hi).
        program: String,
        /// Write the graph here: .svg, or .dot / .gv for Graphviz.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// What `leaky demo batchnorm` needs: the drawn graph and how well the gradients agree.
/// Each error is the largest rel_error over the gradients of `x`, `gamma` and `beta`.
#[derive(Clone, Debug)]
pub struct BatchnormDemo {
    /// Where the SVG (or DOT) of the staged batch norm was written (empty: not written).
    pub svg: PathBuf,
    /// Number of nodes of the staged graph.
    pub nodes: usize,
    /// Tape vs `layers::batchnorm::backward` (the layer's staged backward).
    pub tape_vs_layer: f64,
    /// Tape vs `layers::batchnorm::backward_alt` (the closed form).
    pub tape_vs_layer_alt: f64,
    /// Tape vs centred finite differences of the layer's forward (h = 1e-5).
    pub tape_vs_numeric: f64,
    /// The layer's backward vs the same finite differences.
    pub layer_vs_numeric: f64,
    /// The forward outputs, tape vs layer.
    pub forward: f64,
    /// Affine-relu-affine-softmax on the tape vs the layers and numerical gradients.
    pub net: NetAgreement,
}

impl BatchnormDemo {
    /// Whether every comparison, batch norm and network, is within [`TOLERANCE`].
    pub fn passed(&self) -> bool {
        self.rows().iter().all(|&(_, e)| e <= TOLERANCE)
    }

    /// The comparisons as `(label, max rel_error)` rows, in the order they are printed.
    pub fn rows(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("batchnorm: tape vs layer backward", self.tape_vs_layer),
            ("batchnorm: tape vs layer backward_alt", self.tape_vs_layer_alt),
            ("batchnorm: tape vs numerical", self.tape_vs_numeric),
            ("batchnorm: layer backward vs numerical", self.layer_vs_numeric),
            ("batchnorm: forward, tape vs layer", self.forward),
            ("affine-relu-affine-softmax: tape vs layers", self.net.tape_vs_layers),
            ("affine-relu-affine-softmax: tape vs numerical", self.net.tape_vs_numeric),
            ("affine-relu-affine-softmax: layers vs numerical", self.net.layers_vs_numeric),
        ]
    }
}

/// Draw the staged batch norm of seed 0's (4, 3) batch to `out_svg` and run the three-way
/// agreement checks (batch norm, and the affine-relu-affine-softmax net). An error means
/// the file could not be written; disagreeing gradients show in the numbers (see
/// [`BatchnormDemo::passed`]).
pub fn batchnorm_demo(out_svg: &Path) -> anyhow::Result<BatchnormDemo> {
    batchnorm_check(0, Some(out_svg))
}

const TITLE: &str = "batch norm, staged: x (4, 3) -> out; backward seeded with a random dout (4, 3)";

fn batchnorm_check(seed: u64, out: Option<&Path>) -> anyhow::Result<BatchnormDemo> {
    let p = BnProblem::random(4, 3, seed);
    let (tape, _) = p.tape();
    if let Some(path) = out {
        write_graph(&tape, path, TITLE)?;
    }
    let a: Agreement = agreement_on(&p);
    Ok(BatchnormDemo {
        svg: out.map(Path::to_path_buf).unwrap_or_default(),
        nodes: tape.len(),
        tape_vs_layer: a.tape_vs_layer,
        tape_vs_layer_alt: a.tape_vs_layer_alt,
        tape_vs_numeric: a.tape_vs_numeric,
        layer_vs_numeric: a.layer_vs_numeric,
        forward: a.forward,
        net: net::agreement(seed),
    })
}

fn write_graph(tape: &Tape, path: &Path, title: &str) -> anyhow::Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let text = match ext.as_str() {
        "svg" => tape.to_svg_titled(title),
        "dot" | "gv" => tape.to_dot(),
        _ => return Err(anyhow!("--out {}: unknown format, use a .svg, .dot or .gv file", show(path))),
    };
    leaky::train::write_atomic(path, text.as_bytes()).map_err(|e| anyhow!("cannot write {}: {e}", show(path)))
}

fn out_format_ok(path: &Option<PathBuf>) -> Result<(), Failure> {
    if let Some(p) = path {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        if !matches!(ext.as_str(), "svg" | "dot" | "gv") {
            return Err(Failure::BadInput(anyhow!("--out {}: unknown format, use a .svg, .dot or .gv file", show(p))));
        }
        // A missing directory or an unwritable one is refused before the graph is built.
        leaky::io::check_output_path(p, "--out").map_err(|e| Failure::BadInput(anyhow!(e)))?;
    }
    Ok(())
}

/// Run `leaky graph`: exit 0 on success, 1 when an agreement check fails or the file cannot
/// be written, 2 for a bad program or output path.
pub fn run(args: GraphArgs) -> Result<(), Failure> {
    match args.what {
        What::Batchnorm { out, seed } => {
            out_format_ok(&out)?;
            let demo = batchnorm_check(seed, out.as_deref()).map_err(Failure::Run)?;
            println!(
                "batch norm staged on the tape: x (4, 3), gamma and beta (3,), eps 1e-5, seed {seed}: {} nodes",
                demo.nodes
            );
            println!("backward from a random upstream gradient dout (4, 3); the net: N 6, D 4, H 5, C 3");
            println!("max rel_error over dx, dgamma, dbeta (net: dx, dw1, db1, dw2, db2); good <= {TOLERANCE:.0e}");
            for (label, e) in demo.rows() {
                let verdict = if e <= TOLERANCE { "good" } else { "FAILED" };
                println!("  {label:<48} {:>9}  {verdict}", sci(e));
            }
            if out.is_some() {
                println!("wrote {}", show(&demo.svg));
            } else {
                println!("(nothing drawn: add --out bn.svg to draw the graph, or --out bn.dot for Graphviz)");
            }
            if !demo.passed() {
                return Err(Failure::Run(anyhow!(
                    "the tape's gradients disagree with the layers or the numerical gradients"
                )));
            }
            Ok(())
        }
        What::Expr { program, out } => {
            out_format_ok(&out)?;
            let p = expr::parse(&program).map_err(|e| Failure::BadInput(anyhow!("expression: {e}")))?;
            let name = p.tape.display_name(p.output);
            let value = p.tape.item(p.output).unwrap_or(f64::NAN);
            println!("{name} = {value}");
            for (input, id) in &p.inputs {
                match p.tape.grad_item(*id) {
                    Some(g) => println!("d{name}/d{input} = {g}"),
                    None => println!("d{name}/d{input} = 0 ({input} does not reach {name})"),
                }
            }
            if let Some(path) = &out {
                write_graph(&p.tape, path, &program).map_err(Failure::Run)?;
                println!("wrote {}", show(path));
            }
            let grads_finite = p.inputs.iter().all(|(_, id)| p.tape.grad_item(*id).is_none_or(f64::is_finite));
            if !value.is_finite() || !grads_finite {
                return Err(Failure::Run(anyhow!(
                    "{name} = {value}: the value or a gradient is not finite (a function outside its domain, e.g. sqrt or log of a negative number, or a division by 0){}",
                    if out.is_some() { "; the graph shows the node where it starts" } else { "; draw it with --out to see where" }
                )));
            }
            Ok(())
        }
    }
}
