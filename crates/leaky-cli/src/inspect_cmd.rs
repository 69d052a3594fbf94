//! `leaky inspect ARCH.toml --weights W.safetensors`: presentation of
//! `leaky::experiment::inspect`, the doctor on a checkpoint trained elsewhere (PyTorch).

use crate::present::{check_fail_on, check_output_path, in_file, print_diagnosis, write_text, FailOn, Style};
use crate::{show, Failure};
use anyhow::anyhow;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use leaky::doctor::Report;
use leaky::experiment::inspect::{inspect, DataFiles, InspectOptions};
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
    /// Inputs as .npy, as the model takes them (no standardisation is applied): (N, C, H, W)
    /// images or (N, D) rows; for RNN/LSTM token ids (N, T) or sequences (N, T, D). With
    /// --labels; or one .npz holding arrays x and y, without --labels.
    #[arg(long, value_name = "X.npy|D.npz")]
    pub data: Option<PathBuf>,
    /// Targets as .npy: integer class labels (N,); for RNN/LSTM a class per step (N, T)
    /// (train.loss = "softmax") or one number per sequence (N,) ("mse"). Needs --data.
    #[arg(long, value_name = "Y.npy", requires = "data")]
    pub labels: Option<PathBuf>,
    /// Write the findings as JSON (version 2 of the findings contract, "run": {"inspect": ...}).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write an HTML report (the checkpoint and data, loss and accuracy, the findings, a
    /// per-layer table and charts) to DIR/index.html.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
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
    let data = match (args.data.as_deref(), args.labels.as_deref()) {
        (Some(x), Some(y)) => Some(DataFiles::Npy { x, y }),
        (Some(p), None) => {
            if is_npy(p) {
                return Err(Failure::BadInput(anyhow!(
                    "--data {}: a single .npy array needs --labels Y.npy (or pass one .npz holding x and y)",
                    show(p)
                )));
            }
            Some(DataFiles::Npz(p))
        }
        (None, _) => None,
    };
    if let Some(dir) = &args.report {
        crate::report::prepare_dir(dir)?;
    }
    let base = args.file.parent().unwrap_or(Path::new(""));
    let opts = InspectOptions { weights: &args.weights, before: args.before.as_deref(), data };
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
        for u in &found.update_ratios {
            println!("  {:<32} {:.2e}", u.label, u.ratio);
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
            let pairs: Vec<(&str, f64)> = found.update_ratios.iter().map(|u| (u.label.as_str(), u.ratio)).collect();
            metrics["update_ratios"] = serde_json::json!(pairs);
        }
        let doc = Report::new(run, found.findings.clone(), metrics);
        write_text(path, &doc.to_json_string()).map_err(|e| match e {
            Failure::Run(e) => Failure::Run(anyhow!("{e}")),
            other => other,
        })?;
    }
    if let Some(dir) = &args.report {
        let data = match (&args.data, &args.labels) {
            (Some(x), Some(y)) => format!("--data {} --labels {}", show(x), show(y)),
            (Some(x), None) => format!("--data {}", show(x)),
            _ => format!("the experiment's [data] (data.dataset = {:?}), every example", exp.data.dataset),
        };
        let run = crate::report::inspect::InspectRun {
            file: &show(&args.file),
            weights: &show(&args.weights),
            before: args.before.as_ref().map(|p| show(p)),
            data,
            found: &found,
        };
        let path = crate::report::write_report(dir, &crate::report::inspect::report(&run)).map_err(Failure::Run)?;
        println!("report: {}", show(&path));
    }
    check_fail_on(args.fail_on, &found.findings)
}

/// Whether the file at `p` starts like a `.npy` array; false when it is not a regular file or
/// cannot be read (the loader then names the problem; a FIFO is never opened).
fn is_npy(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 6];
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
        && std::fs::File::open(p).and_then(|mut f| f.read_exact(&mut head)).is_ok()
        && &head == b"\x93NUMPY"
}
