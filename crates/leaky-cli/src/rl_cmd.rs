//! `model.kind = "dqn"`: `leaky train` and `leaky doctor` for the DQN on CartPole-v1
//! (`leaky::rl`). The `[rl]` section says what to run; `model.hidden`, `activation`,
//! `init` describe the Q-network (4 inputs, 2 outputs); `train.optimizer`, `lr`,
//! `batch_size` and `clip_grad_norm` apply. `[data]`, `train.loss`, `train.epochs` and
//! `train.lr_decay` do not (the episodes are `rl.episodes`).

use crate::config::{Experiment, ModelKind};
use crate::doctor_cmd::{apply_settings, fix_settings, print_diagnosis, print_finding, DoctorArgs, Style};
use crate::train_cmd::TrainArgs;
use crate::{show, Failure};
use anyhow::{anyhow, bail};
use leaky::doctor::stats::FlatOpStats;
use leaky::doctor::{Doctor, DoctorConfig, Finding, Report, Severity};
use leaky::losses::Loss;
use leaky::nn::{MlpSpec, Probe, Sequential};
use leaky::rl::dqn::{train, DqnConfig, DqnObserver, DqnRun, TdLoss, UpdateInfo, TD_CLIP_WHERE};
use std::collections::HashSet;
use std::io::IsTerminal;

/// The library's DQN configuration for an experiment with `model.kind = "dqn"`.
pub fn dqn_config(exp: &Experiment) -> anyhow::Result<DqnConfig> {
    if exp.model.kind != ModelKind::Dqn {
        bail!("model.kind = {:?}: not a DQN experiment", exp.model.kind);
    }
    if exp.train.weight_decay != 0.0 {
        bail!("`train.weight_decay` = {}: not supported for model.kind = \"dqn\"; use 0", exp.train.weight_decay);
    }
    let mut cfg = DqnConfig::new(exp.rl.td_loss, exp.rl.episodes, exp.seed);
    exp.rl.apply(&mut cfg);
    cfg.net = MlpSpec {
        input_dim: leaky::rl::cartpole::STATE_DIM,
        hidden: exp.model.hidden.clone(),
        output_dim: leaky::rl::cartpole::ACTIONS,
        activation: exp.model.activation,
        init: exp.init(),
        bias_init: exp.model.bias_init,
        batchnorm: false,
        dropout_keep: None,
    };
    cfg.update = leaky::optim::UpdateConfig::new(exp.train.optimizer, exp.train.lr);
    cfg.batch_size = exp.train.batch_size;
    cfg.clip_grad_norm = exp.train.clip_grad_norm;
    Ok(cfg)
}

/// The classifier loss whose name stands for the TD loss in the doctor's records.
fn doctor_loss(td: TdLoss) -> Loss {
    match td {
        TdLoss::Mse => Loss::Mse,
        TdLoss::ClippedDelta => Loss::ClippedMse,
        TdLoss::Huber | TdLoss::GradClip => Loss::Huber,
    }
}

/// Prints one line every `every` episodes; with a doctor, the findings as they appear.
struct Live {
    doctor: Option<Doctor>,
    style: Style,
    quiet: bool,
    every: usize,
    episodes: usize,
    printed: HashSet<(String, String)>,
    returns: Vec<f64>,
    zeroed: usize,
    samples: usize,
    start: std::time::Instant,
}

impl Live {
    fn new(doctor: Option<Doctor>, quiet: bool, episodes: usize) -> Self {
        Live {
            doctor,
            style: Style { on: std::io::stdout().is_terminal() },
            quiet,
            every: (episodes / 20).max(1),
            episodes,
            printed: HashSet::new(),
            returns: Vec::new(),
            zeroed: 0,
            samples: 0,
            start: std::time::Instant::now(),
        }
    }
}

impl DqnObserver<f32> for Live {
    fn probe(&mut self, update: usize) -> Option<&mut dyn Probe<f32>> {
        match &mut self.doctor {
            Some(d) => DqnObserver::<f32>::probe(d, update),
            None => None,
        }
    }

    fn on_update(&mut self, info: &UpdateInfo, model: &Sequential<f32>) {
        self.zeroed += info.zeroed;
        self.samples += info.batch_size;
        if let Some(d) = &mut self.doctor {
            DqnObserver::<f32>::on_update(d, info, model);
        }
    }

    fn on_finish(&mut self, model: &mut Sequential<f32>, replay: &leaky::rl::replay::ReplayBuffer) {
        if let Some(d) = &mut self.doctor {
            DqnObserver::<f32>::on_finish(d, model, replay);
        }
    }

    fn on_episode(&mut self, episode: usize, ret: f64, env_steps: usize) {
        self.returns.push(ret);
        if self.quiet || ((episode + 1) % self.every != 0 && episode + 1 != self.episodes) {
            return;
        }
        let tail = &self.returns[self.returns.len().saturating_sub(self.every)..];
        let share = if self.samples > 0 { self.zeroed as f64 / self.samples as f64 } else { 0.0 };
        println!(
            "episode {:>4}/{}  return {:>3}  mean of last {} {:>6.1}  zero-gradient samples {:>5.1}%  env steps {:>6}  ({:.1}s)",
            episode + 1,
            self.episodes,
            ret,
            tail.len(),
            tail.iter().sum::<f64>() / tail.len() as f64,
            100.0 * share,
            env_steps,
            self.start.elapsed().as_secs_f64()
        );
        (self.zeroed, self.samples) = (0, 0);
        if let Some(d) = &self.doctor {
            for f in annotate(d.diagnose(), d) {
                if self.printed.insert((f.code.as_str().to_string(), f.where_.clone())) {
                    print_finding(&self.style, &f);
                }
            }
        }
    }
}

/// `(step, value)` pairs pooled into at most `points` windows of consecutive records, in
/// step order: the mean step and the pooled value of each window.
fn pooled(records: &[&FlatOpStats], points: usize, value: impl Fn(&[&FlatOpStats]) -> f64) -> Vec<[f64; 2]> {
    if records.is_empty() {
        return Vec::new();
    }
    let w = records.len().div_ceil(points.max(1));
    records.chunks(w).map(|c| [c.iter().map(|r| r.step as f64).sum::<f64>() / c.len() as f64, value(c)]).collect()
}

/// Add the time course of the TD clip to a `zero_gradient` finding's evidence: the share
/// of zero-gradient samples and the loss over updates (at most 20 pooled points each).
pub fn annotate(mut findings: Vec<Finding>, doctor: &Doctor) -> Vec<Finding> {
    let mut records: Vec<&FlatOpStats> = doctor.stats.flat_ops.iter().filter(|o| o.where_ == TD_CLIP_WHERE).collect();
    records.sort_by_key(|r| r.step);
    let shares = pooled(&records, 20, |c| {
        c.iter().map(|r| r.zeroed).sum::<u64>() as f64 / c.iter().map(|r| r.total).sum::<u64>().max(1) as f64
    });
    let losses = pooled(&records, 20, |c| c.iter().map(|r| r.loss).sum::<f64>() / c.len() as f64);
    for f in findings.iter_mut() {
        if f.code == leaky::doctor::Code::ZeroGradient && f.where_ == TD_CLIP_WHERE {
            *f = f
                .clone()
                .with("td_loss", "clipped_delta")
                .with("zeroed_share_over_updates", serde_json::json!(shares))
                .with("loss_over_updates", serde_json::json!(losses));
        }
    }
    findings
}

fn summary_metrics(run: &DqnRun) -> serde_json::Value {
    serde_json::json!({
        "returns": run.returns,
        "mean_return_last_50": run.mean_last(50),
        "mean_return_all": run.mean_last(usize::MAX),
        "episodes": run.returns.len(),
        "updates": run.updates,
        "env_steps": run.env_steps,
        "seconds": run.seconds,
        "zeroed_share": run.zeroed_share_total(),
        "diverged_at_update": run.diverged_at,
    })
}

fn describe(exp: &Experiment, cfg: &DqnConfig) -> String {
    let hidden: Vec<String> = cfg.net.hidden.iter().map(|h| h.to_string()).collect();
    format!(
        "dqn on {}: Q-network 4-{}-2 ({}), td_loss {}, gamma {}, reward_scale {}, target_update {}, {} lr {}, batch {}, {} episodes",
        exp.rl.env,
        hidden.join("-"),
        cfg.net.activation.name(),
        cfg.td_loss.name(),
        cfg.gamma,
        cfg.reward_scale,
        cfg.target_update,
        cfg.update.rule.name(),
        cfg.update.lr,
        cfg.batch_size,
        cfg.episodes
    )
}

/// `leaky train` for `model.kind = "dqn"`.
pub fn run_train(args: &TrainArgs, exp: &Experiment) -> Result<(), Failure> {
    let cfg = dqn_config(exp).map_err(|e| anyhow!("{}: {e:#}", show(&args.file)))?;
    if !args.quiet {
        println!("{}: {}", show(&args.file), describe(exp, &cfg));
    }
    let mut live = Live::new(None, args.quiet, cfg.episodes);
    let (model, run) = train::<f32>(&cfg, &mut live);
    println!(
        "done: mean return {:.1} over the last {} episodes (CartPole-v1 caps it at 500); {} updates, {} env steps in {:.2}s",
        run.mean_last(50),
        run.returns.len().min(50),
        run.updates,
        run.env_steps,
        run.seconds
    );
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "version": 1,
            "run": {"file": show(&args.file), "experiment": exp},
            "metrics": summary_metrics(&run),
        });
        let text = serde_json::to_string_pretty(&doc).expect("serialisable");
        leaky::train::write_atomic(path, text.as_bytes())
            .map_err(|e| Failure::Run(anyhow!("cannot write {}: {e}", show(path))))?;
    }
    if let Some(u) = run.diverged_at {
        return Err(Failure::Run(anyhow!(
            "the TD loss became NaN or infinite at update {u}; lower train.lr or set train.clip_grad_norm"
        )));
    }
    if let Some(path) = &args.save {
        let meta = std::collections::HashMap::from([
            ("experiment".to_string(), show(&args.file)),
            ("model".to_string(), model.summary()),
            ("mean_return_last_50".to_string(), format!("{:.3}", run.mean_last(50))),
        ]);
        leaky::train::save_checkpoint(&model, path, meta).map_err(|e| Failure::Run(anyhow!("{e}")))?;
        println!("saved {}", show(path));
    }
    Ok(())
}

/// Train with the doctor attached; returns it (with the run's findings annotated) and the run.
fn examine(exp: &Experiment, sample_every: usize, quiet: bool) -> anyhow::Result<(Vec<Finding>, Doctor, DqnRun)> {
    let cfg = dqn_config(exp)?;
    let mut doctor = Doctor::new(DoctorConfig { sample_every }, doctor_loss(cfg.td_loss), leaky::rl::cartpole::ACTIONS);
    doctor.stats.run.rl = true;
    doctor.stats.run.settings.extend(crate::doctor_cmd::current_settings(exp));
    let mut live = Live::new(Some(doctor), quiet, cfg.episodes);
    let (_, run) = train::<f32>(&cfg, &mut live);
    let doctor = live.doctor.take().expect("set above");
    let findings = annotate(doctor.diagnose(), &doctor);
    Ok((findings, doctor, run))
}

fn outcome(run: &DqnRun) -> serde_json::Value {
    serde_json::json!({"mean_return_last_50": run.mean_last(50), "zeroed_share": run.zeroed_share_total()})
}

/// `leaky doctor` for `model.kind = "dqn"`: the same output and contract as for the other
/// models; the evidence of `zero_gradient` adds the share over updates.
pub fn run_doctor(args: &DoctorArgs, exp: &Experiment) -> Result<(), Failure> {
    let cfg = dqn_config(exp).map_err(|e| anyhow!("{}: {e:#}", show(&args.file)))?;
    if !args.quiet {
        println!("{}: {}", show(&args.file), describe(exp, &cfg));
    }
    let style = Style { on: std::io::stdout().is_terminal() };
    let (findings, doctor, run) = examine(exp, args.sample_every, args.quiet).map_err(Failure::BadInput)?;
    println!(
        "{}; {} updates over {} episodes; mean return {:.1} over the last {} episodes; zero-gradient samples {:.1}%",
        print_diagnosis(&style, &findings),
        run.updates,
        run.returns.len(),
        run.mean_last(50),
        run.returns.len().min(50),
        100.0 * run.zeroed_share_total()
    );
    let mut treatments = Vec::new();
    if args.treat {
        println!();
        println!("{}", style.paint("1", "Treatment: each finding's first fix, same budget"));
        let mut tried: HashSet<String> = HashSet::new();
        for f in findings.iter().filter(|f| f.severity.is_at_least(Severity::Warning)) {
            let Some(fix) = f.fix.first() else { continue };
            if !tried.insert(fix.to_string()) {
                continue;
            }
            let settings = fix_settings(fix);
            let fix = fix.to_string();
            let label = format!("{} in {}", f.code.as_str(), f.where_);
            let mut t = serde_json::json!({
                "finding": label, "fix": fix, "applied": false, "gone": false,
                "findings_after": [], "before": outcome(&run), "after": null,
            });
            match settings.map(|s| apply_settings(exp, &s)) {
                Some(Ok(exp2)) => {
                    let (after, _, run2) = examine(&exp2, args.sample_every, true)
                        .map_err(|e| Failure::Run(anyhow!("treating with `{fix}`: {e:#}")))?;
                    let gone = !after.iter().any(|g| g.code == f.code && g.severity.is_at_least(Severity::Warning));
                    let still: Vec<String> = after
                        .iter()
                        .filter(|g| g.severity.is_at_least(Severity::Warning))
                        .map(|g| format!("{} in {}", g.code.as_str(), g.where_))
                        .collect();
                    println!(
                        "{label:<44} {fix:<52} {}  mean return (last 50) {:.1} -> {:.1}, zero-gradient samples {:.1}% -> {:.1}%",
                        if gone { style.paint("32", "gone     ") } else { style.paint("31", "persists ") },
                        run.mean_last(50),
                        run2.mean_last(50),
                        100.0 * run.zeroed_share_total(),
                        100.0 * run2.zeroed_share_total()
                    );
                    if !still.is_empty() {
                        println!("{:<44} still found: {}", "", still.join("; "));
                    }
                    t["applied"] = true.into();
                    t["gone"] = gone.into();
                    t["findings_after"] = serde_json::json!(still);
                    t["after"] = outcome(&run2);
                }
                Some(Err(e)) => println!("{label:<44} {fix}: cannot apply ({e:#})"),
                None => println!("{label:<44} {fix}: names no value to apply automatically"),
            }
            treatments.push(t);
        }
    }
    if let Some(path) = &args.json {
        let mut metrics = summary_metrics(&run);
        metrics["treatments"] = serde_json::json!(treatments);
        metrics["loss_per_update"] = serde_json::json!(doctor.losses);
        let run_doc =
            serde_json::json!({"file": show(&args.file), "experiment": exp, "sample_every": args.sample_every});
        let doc = Report::new(run_doc, findings.clone(), metrics);
        leaky::train::write_atomic(path, doc.to_json_string().as_bytes())
            .map_err(|e| Failure::Run(anyhow!("cannot write {}: {e}", show(path))))?;
    }
    crate::doctor_cmd::check_fail_on(args.fail_on, &findings)
}
