//! `leaky inspect ARCH.toml --weights W.safetensors`: presentation of
//! `leaky::experiment::inspect`, the doctor on a checkpoint trained elsewhere (PyTorch).

use crate::present::{check_fail_on, check_output_path, in_file, print_diagnosis, write_text, FailOn, Style};
use crate::{show, Failure};
use anyhow::anyhow;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use leaky::doctor::Report;
use leaky::experiment::inspect::{inspect, InspectOptions};
use std::path::{Path, PathBuf};

/// Arguments of `leaky inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// The architecture: an experiment file whose [model] describes the network (shorthand or
    /// [[model.layers]]) and whose [data] is the data unless --data/--labels are given.
    pub file: PathBuf,
    /// The checkpoint: a PyTorch state_dict saved with safetensors.torch.save_file (keys
    /// "<index>.weight" of an nn.Sequential, or a layer's `name`; f32, f64, f16, bf16).
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// An earlier checkpoint of the same model: per-layer update/weight ratios and the ReLU
    /// units that died between the two.
    #[arg(long, value_name = "W0.safetensors")]
    pub before: Option<PathBuf>,
    /// Inputs as .npy: (N, C, H, W) images or (N, D) rows, as the model takes them (no
    /// standardisation is applied). Needs --labels.
    #[arg(long, value_name = "X.npy", requires = "labels")]
    pub data: Option<PathBuf>,
    /// Integer class labels (N,) as .npy. Needs --data.
    #[arg(long, value_name = "Y.npy", requires = "data")]
    pub labels: Option<PathBuf>,
    /// Write the findings as JSON (version 2 of the findings contract, "run": {"inspect": ...}).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Exit 1 when a finding of this severity or worse appears.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
}

/// Run `leaky inspect`.
pub fn run(args: InspectArgs) -> Result<(), Failure> {
    let exp = leaky::experiment::load(&args.file)?;
    if let Some(p) = &args.json {
        check_output_path("--json", p)?;
    }
    let base = args.file.parent().unwrap_or(Path::new(""));
    let opts = InspectOptions {
        weights: &args.weights,
        before: args.before.as_deref(),
        data: args.data.as_deref().zip(args.labels.as_deref()),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("inspecting [{bar:30}] {pos}/{len} batches")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let found = inspect(&exp, base, opts, &mut progress).map_err(in_file(&args.file))?;
    bar.finish_and_clear();
    println!(
        "{}: {} tensors, {} parameters from {}; {} examples",
        show(&args.file),
        found.tensors,
        found.params,
        show(&args.weights),
        found.examples
    );
    let acc = found.accuracy.map(|a| format!(", accuracy {:.2}%", 100.0 * a)).unwrap_or_default();
    println!("loss {:.4}{acc} over every example", found.loss);
    if !found.update_ratios.is_empty() {
        println!("update/weight ratio |W - W0| / |W| since {}:", show(args.before.as_deref().unwrap_or(Path::new(""))));
        for (name, r) in &found.update_ratios {
            println!("  {name:<32} {r:.2e}");
        }
    }
    let style = Style::for_stdout();
    println!("{}", print_diagnosis(&style, &found.findings));
    if let Some(path) = &args.json {
        let run = serde_json::json!({"inspect": {
            "file": show(&args.file), "weights": show(&args.weights),
            "before": args.before.as_ref().map(|p| show(p)),
            "data": args.data.as_ref().map(|p| show(p)), "labels": args.labels.as_ref().map(|p| show(p)),
            "experiment": exp,
        }});
        let mut metrics = serde_json::json!({"loss": found.loss, "examples": found.examples});
        if let Some(a) = found.accuracy {
            metrics["accuracy"] = serde_json::json!(a);
        }
        if !found.update_ratios.is_empty() {
            metrics["update_ratios"] = serde_json::json!(found.update_ratios);
        }
        let doc = Report::new(run, found.findings.clone(), metrics);
        write_text(path, &doc.to_json_string()).map_err(|e| match e {
            Failure::Run(e) => Failure::Run(anyhow!("{e}")),
            other => other,
        })?;
    }
    check_fail_on(args.fail_on, &found.findings)
}
