//! `leaky gradcheck [FILE.toml]`: without a file, every layer and loss of the library on
//! random inputs; with a file, that experiment's model (`leaky::experiment::gradcheck`).

use crate::present::sci;
use crate::{show, Failure};
use anyhow::anyhow;
use clap::Args;
use leaky::checks::run_all;
use leaky::gradcheck::{Verdict, GOOD};
use std::path::PathBuf;

/// Arguments of `leaky gradcheck`.
#[derive(Args)]
pub struct GradcheckArgs {
    /// An experiment file: check its model (an f64 copy, a few of its training examples,
    /// every parameter), layer by layer and whole. Without a file: every layer and loss.
    pub file: Option<PathBuf>,
    /// With a file: how many training examples the check runs on (at least 3 with batch norm).
    #[arg(long, default_value_t = leaky::experiment::gradcheck::DEFAULT_EXAMPLES, value_name = "N")]
    pub examples: usize,
    /// Seed of the random inputs (without a file).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the table as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Run `leaky gradcheck`: without a file, exit 0 when every check is good (<= 1e-7), 1
/// otherwise; with a file, exit 1 when any check is wrong (> 1e-2).
pub fn run(args: GradcheckArgs) -> Result<(), Failure> {
    // Refuse `--json missing/x.json` before the checks run, not after.
    if let Some(path) = &args.json {
        leaky::io::check_output_path(path, "--json").map_err(|e| Failure::BadInput(anyhow!(e)))?;
    }
    if args.examples == 0 {
        return Err(Failure::BadInput(anyhow!("--examples 0: must be at least 1")));
    }
    let checks = match &args.file {
        Some(file) => {
            let exp = leaky::experiment::load(file)?;
            let base = file.parent().unwrap_or(std::path::Path::new(""));
            let checks = leaky::experiment::gradcheck::gradcheck(&exp, base, args.examples)
                .map_err(crate::present::in_file(file))?;
            println!("{}: the experiment's model in f64 on {} training example(s)", show(file), args.examples);
            checks
        }
        None => run_all(args.seed),
    };
    println!(
        "Numerical gradient check (f64, centred differences, h = 1e-5); rel_error = max |a-b| / max(1e-8, |a|+|b|)"
    );
    let wl = checks.iter().map(|c| c.layer.len()).max().unwrap_or(5).max(5);
    let wi = checks.iter().map(|c| c.input.len()).max().unwrap_or(5).max(5);
    let ws = checks.iter().map(|c| format!("{:?}", c.shape).len()).max().unwrap_or(5).max(5);
    println!("{:<wl$} {:<wi$} {:<ws$} {:>11} {:>6}  verdict", "layer", "input", "shape", "rel_error", "kinks");
    let mut worst = Verdict::Good;
    for c in &checks {
        let shape = format!("{:?}", c.shape);
        println!(
            "{:<wl$} {:<wi$} {:<ws$} {:>11} {:>6}  {}",
            c.layer,
            c.input,
            shape,
            sci(c.report.max_rel_error),
            c.report.kinks,
            c.report.verdict.label()
        );
        worst = worst.max(c.report.verdict);
    }
    let bad = checks.iter().filter(|c| !c.report.is_good()).count();
    let max = checks.iter().map(|c| c.report.max_rel_error).fold(0.0, f64::max);
    let kinks: usize = checks.iter().map(|c| c.report.kinks).sum();
    println!(
        "{} checks, worst rel_error {}, {} kink element(s) reported separately; {} above {:.0e}",
        checks.len(),
        sci(max),
        kinks,
        bad,
        GOOD
    );
    if let Some(path) = &args.json {
        let file = args.file.as_ref().map(|f| show(f));
        let doc = serde_json::json!({"version": 1, "seed": args.seed, "file": file, "checks": checks});
        leaky::train::write_atomic(path, serde_json::to_string_pretty(&doc).expect("serialisable").as_bytes())
            .map_err(|e| Failure::Run(anyhow!("cannot write {}: {e}", show(path))))?;
    }
    if args.file.is_some() {
        // A real model on real data has gradient entries near the rounding floor of the
        // finite difference (|dW| ~ 1e-10 where a unit is rarely active), whose relative
        // error is noise; only a wrong band (> 1e-2) means a wrong backward pass.
        let wrong = checks.iter().filter(|c| c.report.verdict == Verdict::Wrong).count();
        if worst > Verdict::Good {
            println!("acceptable/suspicious rows: entries with tiny gradients or ReLU/max kinks; only `wrong` (> 1e-2) fails");
        }
        if wrong > 0 {
            return Err(Failure::Run(anyhow!("{wrong} gradient check(s) wrong (rel_error > 1e-2)")));
        }
    } else if worst != Verdict::Good {
        return Err(Failure::Run(anyhow!("{bad} gradient check(s) failed")));
    }
    Ok(())
}
