//! `leaky eval FILE.toml --checkpoint CKPT`: presentation of
//! `leaky::experiment::evaluate_checkpoint`.

use crate::present::{check_output_path, in_file, write_json};
use crate::{show, Failure};
use clap::Args;
use leaky::experiment;
use std::path::{Path, PathBuf};

/// Arguments of `leaky eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The experiment file the checkpoint was trained with (its data, split and model).
    pub file: PathBuf,
    /// The checkpoint to evaluate (safetensors, e.g. from `leaky train --save`).
    #[arg(long, value_name = "CKPT")]
    pub checkpoint: PathBuf,
    /// Write the loss and accuracy as JSON to this file (written atomically).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Run `leaky eval`.
pub fn run(args: EvalArgs) -> Result<(), Failure> {
    let exp = experiment::load(&args.file)?;
    if let Some(p) = &args.json {
        check_output_path("--json", p)?;
    }
    let base = args.file.parent().unwrap_or(Path::new(""));
    let e = experiment::evaluate_checkpoint(&exp, base, &args.checkpoint).map_err(in_file(&args.file))?;
    println!(
        "{}: {} split, {} examples: loss {:.4}, accuracy {:.2}%",
        show(&args.checkpoint),
        e.split,
        e.examples,
        e.loss,
        100.0 * e.accuracy
    );
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "version": 1,
            "run": {"file": show(&args.file), "checkpoint": show(&args.checkpoint), "split": e.split, "experiment": exp},
            "metrics": {"loss": e.loss, "accuracy": e.accuracy, "examples": e.examples},
        });
        write_json(path, &doc)?;
    }
    Ok(())
}
