//! `leaky`: train networks from TOML experiments and check every gradient by hand.
//!
//! Exit status: 0 success, 1 the run itself failed (e.g. the loss diverged, a gradient
//! check failed), 2 bad input (a file, a key, a value).

mod demo;
mod demo_cmd;
mod doctor_cmd;
mod eval_cmd;
mod gradcheck_cmd;
mod graph_cmd;
mod inspect_cmd;
mod present;
mod report;
mod train_cmd;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

/// Backprop is a leaky abstraction: leaky trains small networks with hand-written forward
/// and backward passes, checks every gradient, and shows where learning breaks.
#[derive(Parser)]
#[command(name = "leaky", version, propagate_version = true)]
#[command(
    after_help = "Examples:\n  leaky demo all\n  leaky train examples/digits.toml\n  leaky train examples/digits.toml --save digits.safetensors\n  leaky train examples/digits.toml --resume digits.safetensors --save digits.safetensors\n  leaky eval examples/digits.toml --checkpoint digits.safetensors\n  leaky gradcheck\n  leaky doctor examples/sick/sigmoid-saturated.toml --json findings.json --report report\n  leaky graph batchnorm --out bn.svg\n  leaky inspect arch.toml --weights model.safetensors --data x.npy --labels y.npy\n\nExit status: 0 ok; 1 the run failed (diverged, a gradient check failed) or leaky doctor found something at --fail-on; 2 bad input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the network an experiment file describes, with a progress bar per epoch.
    Train(train_cmd::TrainArgs),
    /// Loss and accuracy of a checkpoint (from `leaky train --save`) on the validation split
    /// of the experiment it was trained with.
    Eval(eval_cmd::EvalArgs),
    /// Check every layer's and loss's backward pass against numerical gradients (f64).
    Gradcheck(gradcheck_cmd::GradcheckArgs),
    /// Train with probes on and diagnose how backprop leaks: saturation, dead ReLUs,
    /// vanishing/exploding gradients, zero gradients, NaNs, bad init, update ratios, inputs.
    Doctor(doctor_cmd::DoctorArgs),
    /// Reproduce each way backprop leaks, broken and fixed side by side, with the doctor's
    /// diagnosis, a table, and an HTML report (leaky-report/index.html).
    Demo(demo_cmd::DemoArgs),
    /// Diagnose a model trained elsewhere (a PyTorch state_dict in safetensors) at its
    /// checkpoint, over every example of its data: dead units, saturation, gradient flow.
    Inspect(inspect_cmd::InspectArgs),
    /// Draw a computation on the reverse-mode tape (values black, gradients red) as SVG or
    /// DOT: the staged batch norm, or a small scalar expression.
    Graph(graph_cmd::GraphArgs),
}

/// How a command failed: bad input (exit 2) or a failed run (exit 1).
#[derive(Debug)]
pub enum Failure {
    /// The user's input is wrong: a file, a key, a value.
    BadInput(anyhow::Error),
    /// The input was fine but the run failed.
    Run(anyhow::Error),
    /// The run completed and the doctor found something at or above `--fail-on`.
    Findings(String),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::BadInput(e)
    }
}

/// `leaky gradcheck | head` closes stdout early; `println!` then panics with "failed printing
/// to stdout: Broken pipe". Exit quietly instead, as `cat` or `grep` do (without `unsafe`
/// SIGPIPE handling). Any other failure to print (`leaky gradcheck > /dev/full`: "No space
/// left on device") is an output that cannot be written: say so on stderr, if stderr still
/// works, and exit 2 instead of panicking with exit 101.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141); // 128 + SIGPIPE, what a shell reports for a killed writer
        }
        if msg.contains("failed printing to stdout") || msg.contains("failed printing to stderr") {
            // The cause is after the colon, e.g. "No space left on device (os error 28)".
            let cause = msg.split_once(": ").map_or(msg, |(_, c)| c);
            let stream = if msg.contains("stdout") { "standard output" } else { "standard error" };
            let _ = writeln!(std::io::stderr(), "error: cannot write to {stream}: {cause}");
            leaky::io::remove_pending_temp_files();
            std::process::exit(2);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    // Temporary files of atomic writes are removed on Ctrl-C and SIGTERM; should the
    // handler not install, outputs are still atomic, only an interrupted write's
    // `.NAME.tmp-*` file could stay.
    let _ = leaky::io::install_cleanup_handler();
    // Training steps reuse freed buffers instead of page-faulting fresh ones.
    leaky::parallel::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => train_cmd::run(a),
        Command::Eval(a) => eval_cmd::run(a),
        Command::Gradcheck(a) => gradcheck_cmd::run(a),
        Command::Doctor(a) => doctor_cmd::run(a),
        Command::Demo(a) => demo_cmd::run(a),
        Command::Graph(a) => graph_cmd::run(a),
        Command::Inspect(a) => inspect_cmd::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `writeln!` rather than `eprintln!`: with stderr on a full device the message is
        // lost, but the exit status still tells.
        Err(Failure::BadInput(e)) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Findings(msg)) => {
            let _ = writeln!(std::io::stderr(), "leaky: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Run(e)) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Paths printed in messages.
pub fn show(p: &std::path::Path) -> String {
    p.display().to_string()
}
