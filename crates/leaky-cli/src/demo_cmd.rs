//! `leaky demo NAME`: run a failure mode broken and fixed, let the doctor diagnose it, print a
//! table, and write the HTML report (and `--json`).

use crate::demo::{self, DemoOptions, DemoOutcome};
use crate::report::{self, Report};
use crate::{show, Failure};
use anyhow::anyhow;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

/// Which demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Saturated sigmoids (too-large init, raw inputs) and a deep sigmoid stack.
    Sigmoid,
    /// ReLU units killed by a too-large learning rate or a negative bias.
    Relu,
    /// A vanilla RNN's gradient exploding/vanishing through time; clipping; LSTM.
    Rnn,
    /// A DQN on CartPole with four TD losses: clip_by_value's zero gradient vs Huber.
    Dqn,
    /// Batch norm's computational graph (values black, gradients red), checked three ways.
    Batchnorm,
    /// Every demo in sequence (the README's "run the main job").
    All,
}

/// Arguments of `leaky demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Which demo to run.
    #[arg(value_enum)]
    pub which: Which,
    /// A smaller DQN (150 episodes, at most 2 seeds); the other demos run in full anyway.
    #[arg(long)]
    pub quick: bool,
    /// Base seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// dqn: how many seeds each TD loss is trained with (seed, seed+1, ...).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub seeds: usize,
    /// dqn: multiply every reward by this; with larger rewards every TD error starts beyond
    /// the clip and the clipped_delta agent gets no gradient at all.
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub reward_scale: f64,
    /// Write the HTML report (index.html with inline SVG charts) into this directory.
    #[arg(long, value_name = "DIR", default_value = "leaky-report")]
    pub report: PathBuf,
    /// Do not write the HTML report.
    #[arg(long, conflicts_with = "report")]
    pub no_report: bool,
    /// Write findings and broken-vs-fixed metrics as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Print only the final tables.
    #[arg(long, short)]
    pub quiet: bool,
}

fn run_one(which: Which, opts: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    match which {
        Which::Sigmoid => demo::sigmoid::run(opts),
        Which::Relu => demo::relu::run(opts),
        Which::Rnn => demo::rnn::run(opts),
        Which::Dqn => demo::dqn::run(opts),
        Which::Batchnorm => demo::batchnorm::run(opts),
        Which::All => unreachable!("`all` is expanded by the caller"),
    }
}

fn title(which: Which) -> &'static str {
    match which {
        Which::Sigmoid => "sigmoid: saturation and depth",
        Which::Relu => "relu: dead units",
        Which::Rnn => "rnn: exploding and vanishing through time",
        Which::Dqn => "dqn: clipped TD error vs Huber on CartPole",
        Which::Batchnorm => "batchnorm: the computational graph",
        Which::All => "all",
    }
}

/// The demo's findings with the variant (and demo) each belongs to, as JSON.
fn findings_json(out: &DemoOutcome) -> Vec<Value> {
    let mut all = Vec::new();
    for v in &out.variants {
        for f in &v.findings {
            let mut j = f.to_json();
            if let Some(o) = j.as_object_mut() {
                o.insert("demo".into(), json!(out.name));
                o.insert("variant".into(), json!(v.name));
            }
            all.push(j);
        }
    }
    all
}

fn metrics_json(out: &DemoOutcome) -> Value {
    let variants: serde_json::Map<String, Value> = out
        .variants
        .iter()
        .map(|v| {
            let worst = v.findings.iter().map(|f| f.severity).max().map(|s| s.as_str());
            let mut m = v.metrics.clone();
            m.insert("broken".into(), json!(v.broken));
            m.insert("description".into(), json!(v.description));
            m.insert("worst_severity".into(), json!(worst));
            (v.name.clone(), Value::Object(m))
        })
        .collect();
    json!({"code": out.code, "variants": variants, "table": {"header": out.table.header, "rows": out.table.rows}})
}

/// Run `leaky demo`.
pub fn run(args: DemoArgs) -> Result<(), Failure> {
    if let Some(p) = &args.json {
        crate::present::check_output_path("--json", p)?;
    }
    if args.seeds == 0 {
        return Err(Failure::BadInput(anyhow!("--seeds 0: must be at least 1")));
    }
    if !(args.reward_scale.is_finite() && args.reward_scale > 0.0) {
        return Err(Failure::BadInput(anyhow!("--reward-scale {}: must be a positive number", args.reward_scale)));
    }
    if !args.no_report {
        report::prepare_dir(&args.report)?;
    }
    let opts = DemoOptions {
        quick: args.quick,
        seed: args.seed,
        seeds: args.seeds,
        quiet: args.quiet,
        reward_scale: args.reward_scale,
    };
    let list: Vec<Which> = if args.which == Which::All {
        vec![Which::Sigmoid, Which::Relu, Which::Rnn, Which::Dqn, Which::Batchnorm]
    } else {
        vec![args.which]
    };
    let bar = if list.len() > 1 && !args.quiet {
        let b = ProgressBar::new(list.len() as u64);
        b.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} demos  {elapsed_precise}  {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        b.set_prefix("leaky demo all");
        Some(b)
    } else {
        None
    };
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for which in list {
        if let Some(b) = &bar {
            b.set_message(title(which));
        }
        let t0 = Instant::now();
        // A hidden bar (stdout piped) drops its println: print directly then.
        let print = |s: String| match &bar {
            Some(b) if !b.is_hidden() => b.println(s),
            _ => println!("{s}"),
        };
        print(format!("== demo {} ==", title(which)));
        let sub = DemoOptions { quiet: opts.quiet || bar.is_some(), ..opts.clone() };
        let out = run_one(which, &sub).map_err(|e| Failure::Run(anyhow!("demo {}: {e:#}", title(which))))?;
        if let Some(b) = &bar {
            b.suspend(|| {
                demo::print_table(&out.table);
                println!("  ({:.1} s)\n", t0.elapsed().as_secs_f64());
            });
            b.inc(1);
        } else {
            demo::print_table(&out.table);
            println!("  ({:.1} s)\n", t0.elapsed().as_secs_f64());
        }
        outcomes.push(out);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &args.json {
        let findings: Vec<Value> = outcomes.iter().flat_map(findings_json).collect();
        let metrics: serde_json::Map<String, Value> =
            outcomes.iter().map(|o| (o.name.clone(), metrics_json(o))).collect();
        let doc = json!({
            "version": 1,
            "run": {"demo": outcomes.iter().map(|o| o.name.clone()).collect::<Vec<_>>(), "quick": args.quick, "seed": args.seed, "seconds": seconds},
            "findings": findings,
            "metrics": metrics,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| Failure::Run(e.into()))?;
        leaky::train::write_atomic(path, text.as_bytes())
            .map_err(|e| Failure::Run(anyhow!("cannot write {}: {e}", show(path))))?;
    }
    if !args.no_report {
        let report = Report {
            title: "leaky demo: how backprop leaks".into(),
            intro: vec![format!(
                "Each section trains a broken network and its fix with the doctor watching. Seed {}, {} mode, {:.1} s in all.",
                args.seed,
                if args.quick { "quick" } else { "full" },
                seconds
            )],
            sections: outcomes.iter().map(|o| o.section.clone()).collect(),
        };
        let path = report::write_report(&args.report, &report).map_err(Failure::Run)?;
        println!("report: {}", show(&path));
    }
    Ok(())
}
