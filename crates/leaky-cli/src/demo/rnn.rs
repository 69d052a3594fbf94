//! `leaky demo rnn`: a vanilla RNN's gradient explodes or vanishes back through time with
//! the spectral radius of Whh; clipping tames the explosion, an LSTM carries the signal.
//!
//! Back through one step, dL/dh_{t-1} = Whh^T (dL/dh_t * (1 - h_t^2)): the same matrix every
//! step, so the norm changes by roughly the same factor each step, set by Whh's largest
//! eigenvalue (times tanh's local gradient <= 1). Radius 0.5 halves it per step (after 50 steps
//! nothing is left); radius 3 can triple it (until tanh saturates).

use super::*;

/// Sequence length.
pub const T: usize = 50;

/// Vanishing: Whh at spectral radius 0.5.
pub const VANISHING: &str = include_str!("../../../../examples/demo/rnn-vanishing.toml");
/// Exploding: Whh at spectral radius 3.
pub const EXPLODING: &str = include_str!("../../../../examples/demo/rnn-exploding.toml");
/// The exploding RNN with the global gradient norm clipped to 1.
pub const CLIPPED: &str = include_str!("../../../../examples/demo/rnn-clipped.toml");
/// An LSTM on the same task.
pub const LSTM: &str = include_str!("../../../../examples/demo/rnn-lstm.toml");

struct SeqRun {
    doctor: Doctor,
    report: TrainReport,
    findings: Vec<Finding>,
    radius: f64,
    step0_norms: Vec<f64>,
}

/// Train the recurrent experiment `toml` with the doctor watching (in full, `--quick` or not:
/// one epoch was too short for the LSTM to show it learns).
fn train_seq(toml: &str, opts: &DemoOptions) -> anyhow::Result<SeqRun> {
    let mut exp = experiment::parse(toml)?;
    exp.seed = opts.seed;
    let run = experiment::run(&exp, Path::new("."), RunOptions::doctor(), &mut experiment::NoEvents)?;
    let radius = run.whh_radius_init.unwrap_or(f64::NAN);
    let (doctor, report, findings) =
        (run.doctor.expect("the doctor was on"), run.report.expect("a supervised run has a report"), run.findings);
    let step0_norms = doctor.stats.bptt.first().map(|b| b.norms_per_t.clone()).unwrap_or_default();
    Ok(SeqRun { doctor, report, findings, radius, step0_norms })
}

/// `|dL/dh_0| / |dL/dh_{T-1}|` at step 0 and the per-step factor.
fn ratio_and_factor(norms: &[f64]) -> (f64, f64) {
    match (norms.first(), norms.last()) {
        (Some(&a), Some(&b)) if b > 0.0 && norms.len() > 1 => (a / b, (a / b).powf(1.0 / (norms.len() - 1) as f64)),
        _ => (f64::NAN, f64::NAN),
    }
}

/// Run the demo.
pub fn run(opts: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let say = |s: &str| {
        if !opts.quiet {
            println!("  training {s}");
        }
    };
    let specs: [(&str, bool, &str, &str); 4] = [
        ("vanishing", true, "tanh RNN, Whh radius 0.5", VANISHING),
        ("exploding", true, "tanh RNN, Whh radius 3", EXPLODING),
        ("clipped", false, "tanh RNN, Whh radius 3, clip_grad_norm 1", CLIPPED),
        ("lstm", false, "LSTM, Xavier init", LSTM),
    ];
    let mut runs = Vec::new();
    for (name, broken, desc, toml) in specs {
        say(&format!("{name}: {desc}"));
        runs.push((name, broken, desc, train_seq(toml, opts)?));
    }
    if !opts.quiet {
        println!();
        println!("  |dL/dh_t| at step 0 (the gradient reaching each time step from the loss at t = {}):", T - 1);
        let mut t = 0;
        println!("  {:>4}  {:>12}  {:>12}  {:>12}", "t", "radius 0.5", "radius 3", "LSTM");
        while t < T {
            let get = |i: usize| runs[i].3.step0_norms.get(t).copied().unwrap_or(f64::NAN);
            println!("  {:>4}  {:>12.3e}  {:>12.3e}  {:>12.3e}", t, get(0), get(1), get(3));
            t += if t + 5 >= T && t != T - 1 { T - 1 - t } else { 5 };
        }
        println!();
    }
    let mut variants = Vec::new();
    let mut rows = Vec::new();
    for (name, broken, desc, run) in &runs {
        let (ratio, factor) = ratio_and_factor(&run.step0_norms);
        let code = if *name == "vanishing" { Code::VanishingGradient } else { Code::ExplodingGradient };
        let final_val = run.report.history.last().map(|e| e.val_loss).unwrap_or(f64::NAN);
        rows.push(vec![
            format!("{name}: {desc}"),
            if *name == "lstm" { "n/a".into() } else { format!("{:.2}", run.radius) },
            num(factor),
            num(ratio),
            num(run.report.best_val_loss),
            match run.report.diverged_at_step {
                Some(s) => format!("diverged at step {s}"),
                None => num(final_val),
            },
            if *broken { finding_label(&run.findings, code) } else { worst_label(&run.findings) },
        ]);
        let mut m = Map::new();
        m.insert("whh_spectral_radius".into(), json!(run.radius));
        // Clipping bounds the step, not the growth through time: the doctor still finds it.
        if *broken || *name == "clipped" {
            m.insert("expected_code".into(), json!(code.as_str()));
        }
        m.insert("step0_grad_norm_per_t".into(), json!(run.step0_norms));
        m.insert("step0_ratio_first_over_last".into(), json!(ratio));
        m.insert("step0_per_step_factor".into(), json!(factor));
        m.insert("best_val_mse".into(), json!(run.report.best_val_loss));
        m.insert("final_val_mse".into(), json!(final_val));
        m.insert("diverged_at_step".into(), json!(run.report.diverged_at_step));
        m.insert("steps".into(), json!(run.report.steps));
        m.insert("seconds".into(), json!(run.report.seconds));
        variants.push(Variant {
            name: name.to_string(),
            broken: *broken,
            description: desc.to_string(),
            findings: run.findings.clone(),
            metrics: m,
        });
    }
    let tbl = table(
        "",
        &[
            "variant",
            "Whh radius",
            "per-step factor",
            "|dL/dh_0|/|dL/dh_49|",
            "best val MSE",
            "final val MSE",
            "doctor",
        ],
        rows,
    );
    let per_t: Vec<Series> = runs
        .iter()
        .filter(|(n, ..)| *n != "clipped")
        .map(|(n, _, _, r)| Series {
            name: n.to_string(),
            points: r.step0_norms.iter().enumerate().map(|(t, &v)| (t as f64, v)).collect(),
        })
        .collect();
    let mut ratio_over_time = Vec::new();
    for (n, _, _, r) in &runs {
        ratio_over_time.push(Series {
            name: n.to_string(),
            points: r.doctor.stats.bptt.iter().filter_map(|b| b.ratio().map(|x| (b.step as f64, x))).collect(),
        });
    }
    let charts = vec![
        lines(
            "|dL/dh_t| back through time at step 0",
            "time step t",
            "|dL/dh_t| (log scale)",
            "The loss sits at the last step. Going back, radius 0.5 shrinks the gradient by a constant factor per step (a straight line down on a log scale); radius 3 grows it (less than 3x per step: tanh's local gradient 1 - h^2 is below 1). The LSTM's cell path keeps it nearly flat.",
            per_t,
            true,
        ).showing(&[Code::VanishingGradient, Code::ExplodingGradient]),
        lines(
            "How much gradient reaches the first step, over training",
            "step",
            "|dL/dh_0| / |dL/dh_T| (log scale)",
            "Sampled every 10 steps. Clipping rescales the whole gradient, so it does not change this ratio; it bounds the step size instead.",
            ratio_over_time,
            true,
        ).showing(&[Code::VanishingGradient, Code::ExplodingGradient]),
        lines(
            "Training loss (MSE)",
            "step",
            "MSE",
            "Non-finite losses are not drawn: a line that stops is a run that diverged.",
            runs.iter().map(|(n, _, _, r)| loss_series(n, &r.doctor.losses)).collect(),
            true,
        ).showing(&[Code::DivergingLoss, Code::NonFinite, Code::NotLearning, Code::BadInitLoss]),
    ];
    let section = Section {
        title: "RNN: vanishing and exploding through time".into(),
        text: vec![
            format!("A vanilla RNN multiplies its gradient by Whh^T (and tanh's local gradient) at every step back in time. The task needs the input of step 0 at step {}: the target is x[0,0] + x[{},1].", T - 1, T / 2),
        ],
        tables: vec![tbl.clone()],
        findings: report_findings(&variants),
        charts,
    };
    Ok(DemoOutcome { name: "rnn".into(), code: "vanishing_gradient".into(), variants, table: tbl, section })
}
