//! `leaky gradcheck`

use crate::{show, Failure};
use anyhow::anyhow;
use clap::Args;
use leaky::checks::run_all;
use leaky::gradcheck::{Verdict, GOOD};
use std::path::PathBuf;

/// Arguments of `leaky gradcheck`.
#[derive(Args)]
pub struct GradcheckArgs {
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the table as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Run `leaky gradcheck`: exit 0 when every check is good (<= 1e-7), 1 otherwise.
pub fn run(args: GradcheckArgs) -> Result<(), Failure> {
    // Refuse `--json missing/x.json` before the checks run, not after.
    if let Some(path) = &args.json {
        leaky::io::check_output_path(path, "--json").map_err(|e| Failure::BadInput(anyhow!(e)))?;
    }
    let checks = run_all(args.seed);
    println!(
        "Numerical gradient check (f64, centred differences, h = 1e-5); rel_error = max |a-b| / max(1e-8, |a|+|b|)"
    );
    println!("{:<18} {:<9} {:<14} {:>11} {:>6}  verdict", "layer", "input", "shape", "rel_error", "kinks");
    let mut worst = Verdict::Good;
    for c in &checks {
        let shape = format!("{:?}", c.shape);
        println!(
            "{:<18} {:<9} {:<14} {:>11.2e} {:>6}  {}",
            c.layer,
            c.input,
            shape,
            c.report.max_rel_error,
            c.report.kinks,
            c.report.verdict.label()
        );
        worst = worst.max(c.report.verdict);
    }
    let bad = checks.iter().filter(|c| !c.report.is_good()).count();
    let max = checks.iter().map(|c| c.report.max_rel_error).fold(0.0, f64::max);
    let kinks: usize = checks.iter().map(|c| c.report.kinks).sum();
    println!(
        "{} checks, worst rel_error {:.2e}, {} kink element(s) reported separately; {} above {:.0e}",
        checks.len(),
        max,
        kinks,
        bad,
        GOOD
    );
    if let Some(path) = &args.json {
        let doc = serde_json::json!({"version": 1, "seed": args.seed, "checks": checks});
        leaky::train::write_atomic(path, serde_json::to_string_pretty(&doc).expect("serialisable").as_bytes())
            .map_err(|e| Failure::Run(anyhow!("cannot write {}: {e}", show(path))))?;
    }
    if worst != Verdict::Good {
        return Err(Failure::Run(anyhow!("{bad} gradient check(s) failed")));
    }
    Ok(())
}
