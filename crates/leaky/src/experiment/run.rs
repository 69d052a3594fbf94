//! The one pipeline: experiment -> data + model -> train (doctor optional) -> [`Run`].
//! `leaky train`, `leaky doctor`, `--treat`, the demos and DQN runs all go through
//! [`run`]; the caller sees training as it happens through [`Events`].

use super::config::Experiment;
use super::pipeline::{prepare, train_config, Data, Model};
use super::Result;
use crate::doctor::stats::DeadUnitPass;
use crate::doctor::{Doctor, DoctorConfig, Finding};
use crate::losses::Loss;
use crate::nn::seq::SeqModel;
use crate::nn::{Probe, Sequential};
use crate::rl::dqn::{DqnObserver, DqnRun, TdLoss, UpdateInfo};
use crate::train::{fit_from, fit_seq, EpochInfo, Observer, SeqObserver, StepInfo, TrainReport, TrainState};
use std::collections::HashSet;
use std::path::Path;

/// What a caller sees while an experiment trains. Every method has a do-nothing default;
/// [`NoEvents`] ignores everything.
pub trait Events {
    /// After each training step (feed-forward and recurrent models).
    fn on_step(&mut self, _info: &StepInfo) {}
    /// After each epoch's evaluation. `bptt_norms` holds |dL/dh_t| of the epoch's last step
    /// for recurrent models (empty otherwise).
    fn on_epoch(&mut self, _info: &EpochInfo, _bptt_norms: &[f64]) {}
    /// DQN: after each episode, with the zero-gradient samples and all samples of the
    /// updates since the previous episode.
    fn on_episode(&mut self, _episode: &Episode) {}
    /// A finding seen for the first time while training (with the doctor on): once per
    /// code and place, after the epoch (or DQN episode) in which it appeared.
    fn on_finding(&mut self, _finding: &Finding) {}
}

/// A borrowed handler handles events as the handler itself (so a [`JsonLog`](super::JsonLog)
/// can wrap a printer the caller keeps).
impl<E: Events + ?Sized> Events for &mut E {
    fn on_step(&mut self, info: &StepInfo) {
        (**self).on_step(info)
    }
    fn on_epoch(&mut self, info: &EpochInfo, bptt_norms: &[f64]) {
        (**self).on_epoch(info, bptt_norms)
    }
    fn on_episode(&mut self, episode: &Episode) {
        (**self).on_episode(episode)
    }
    fn on_finding(&mut self, finding: &Finding) {
        (**self).on_finding(finding)
    }
}

/// Ignores every event.
pub struct NoEvents;
impl Events for NoEvents {}

/// One DQN episode, as [`Events::on_episode`] reports it.
#[derive(Clone, Debug)]
pub struct Episode {
    /// Episode index, from 0.
    pub index: usize,
    /// Episodes in the run.
    pub episodes: usize,
    /// Its return (+1 per step, unscaled).
    pub ret: f64,
    /// Environment steps so far.
    pub env_steps: usize,
    /// Samples whose TD gradient was exactly zero in the updates since the last episode.
    pub zeroed: usize,
    /// Samples in those updates.
    pub samples: usize,
}

/// How [`run`] trains.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Attach the doctor with this configuration; `None` trains without it.
    pub doctor: Option<DoctorConfig>,
    /// Feed-forward models with the doctor: also count dead units over a full pass of the
    /// training set before training ([`Run::dead_at_init`]).
    pub dead_at_init: bool,
}

impl RunOptions {
    /// Train with the doctor at its default sampling.
    pub fn doctor() -> Self {
        RunOptions { doctor: Some(DoctorConfig::default()), dead_at_init: false }
    }

    /// Train without the doctor.
    pub fn train() -> Self {
        RunOptions { doctor: None, dead_at_init: false }
    }
}

/// The trained model.
// One value per run: the size difference between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum Trained {
    /// A feed-forward stack and its layer names (the model holds its best epoch's
    /// parameters).
    Feed {
        /// The layers.
        net: Sequential<f32>,
        /// One entry per layer: its `name`, if given.
        names: Vec<Option<String>>,
    },
    /// A recurrent model.
    Seq(SeqModel<f32>),
    /// The DQN's online Q-network after the last episode.
    Dqn(Sequential<f32>),
}

/// What one experiment run gives: the trainer's report (or the DQN's), the doctor and its
/// findings, and the trained model.
pub struct Run {
    /// The experiment as run.
    pub experiment: Experiment,
    /// The trainer's report (feed-forward and recurrent models).
    pub report: Option<TrainReport>,
    /// The DQN's run (episodes, returns, updates).
    pub dqn: Option<DqnRun>,
    /// The doctor, with everything it recorded, when it was on.
    pub doctor: Option<Doctor>,
    /// The doctor's findings (root causes first); empty without the doctor.
    pub findings: Vec<Finding>,
    /// The dead-unit pass before training, when [`RunOptions::dead_at_init`] asked for it.
    pub dead_at_init: Vec<DeadUnitPass>,
    /// The trained model.
    pub model: Trained,
    /// Training examples (sequences); 0 for a DQN.
    pub train_len: usize,
    /// Validation examples (sequences); 0 for a DQN or without a validation split.
    pub val_len: usize,
    /// Recurrent models: the validation loss before training (on up to 256 sequences).
    pub initial_val_loss: Option<f64>,
    /// Recurrent models: Whh's spectral radius at init.
    pub whh_radius_init: Option<f64>,
    /// Feed-forward models: where training stands after the last epoch, for a checkpoint
    /// that can be resumed ([`Run::save`]).
    pub state: Option<TrainState<f32>>,
}

impl Run {
    /// Summary numbers of the run, as `--json` writes them under `"metrics"`. Epochs count
    /// from 1.
    pub fn metrics(&self) -> serde_json::Value {
        use serde_json::json;
        if let Some(r) = &self.dqn {
            return json!({
                "returns": r.returns,
                "mean_return_last_50": r.mean_last(50),
                "mean_return_all": r.mean_last(usize::MAX),
                "episodes": r.returns.len(),
                "updates": r.updates,
                "env_steps": r.env_steps,
                "seconds": r.seconds,
                "zeroed_share": r.zeroed_share_total(),
                "diverged_at_update": r.diverged_at,
            });
        }
        let r = self.report.as_ref().expect("a supervised run has a report");
        let mut m = json!({
            "best_val_acc": r.best_val_acc,
            "best_val_loss": r.best_val_loss,
            "best_epoch": r.best_epoch + 1,
            "final_train_loss": r.history.last().map(|h| h.train_loss),
            "steps": r.steps,
            "seconds": r.seconds,
            "diverged_at_step": r.diverged_at_step,
        });
        if self.val_len == 0 {
            // No validation split (`data.val_fraction = 0`): the trainer picked the best epoch
            // by training accuracy; say so rather than call it a validation metric.
            m["best_train_acc"] = m["best_val_acc"].take();
            m["best_val_acc"] = serde_json::Value::Null;
            m["best_val_loss"] = serde_json::Value::Null;
            m["no_validation_split"] = json!(true);
        }
        if let Some(l) = self.initial_val_loss {
            m["initial_val_loss"] = json!(l);
        }
        if let Some(w) = self.whh_radius_init {
            m["whh_spectral_radius_init"] = json!(w);
        }
        if let Trained::Seq(model) = &self.model {
            m["bptt_norms_last_step"] = json!(model.bptt_norms());
        }
        m
    }
}

/// The doctor plus the caller's events: forwards every hook, and reports each new finding
/// once per code and place after each epoch or episode.
struct Watcher<'a> {
    doctor: Option<Doctor>,
    events: &'a mut dyn Events,
    seen: HashSet<(String, String)>,
    zeroed: usize,
    samples: usize,
    episodes: usize,
}

impl Watcher<'_> {
    fn new_findings(&mut self) {
        let Some(d) = &self.doctor else { return };
        let findings = d.diagnose();
        for f in findings {
            if self.seen.insert((f.code.as_str().to_string(), f.where_.clone())) {
                self.events.on_finding(&f);
            }
        }
    }
}

impl Observer<f32> for Watcher<'_> {
    fn on_start(&mut self, model: &Sequential<f32>, train: &crate::data::Dataset) {
        if let Some(d) = &mut self.doctor {
            Observer::<f32>::on_start(d, model, train);
        }
    }
    fn probe(&mut self, step: usize) -> Option<&mut dyn Probe<f32>> {
        match &mut self.doctor {
            Some(d) => Observer::<f32>::probe(d, step),
            None => None,
        }
    }
    fn on_step(&mut self, info: &StepInfo, model: &Sequential<f32>) {
        if let Some(d) = &mut self.doctor {
            Observer::<f32>::on_step(d, info, model);
        }
        self.events.on_step(info);
    }
    fn on_epoch(&mut self, info: &EpochInfo, model: &Sequential<f32>) {
        if let Some(d) = &mut self.doctor {
            Observer::<f32>::on_epoch(d, info, model);
        }
        self.events.on_epoch(info, &[]);
        self.new_findings();
    }
}

impl SeqObserver<f32> for Watcher<'_> {
    fn on_step(&mut self, info: &StepInfo, model: &SeqModel<f32>) {
        if let Some(d) = &mut self.doctor {
            SeqObserver::<f32>::on_step(d, info, model);
        }
        self.events.on_step(info);
    }
    fn on_epoch(&mut self, info: &EpochInfo, model: &SeqModel<f32>) {
        if let Some(d) = &mut self.doctor {
            SeqObserver::<f32>::on_epoch(d, info, model);
        }
        self.events.on_epoch(info, model.bptt_norms());
        self.new_findings();
    }
}

impl DqnObserver<f32> for Watcher<'_> {
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
    fn on_finish(&mut self, model: &mut Sequential<f32>, replay: &crate::rl::replay::ReplayBuffer) {
        if let Some(d) = &mut self.doctor {
            DqnObserver::<f32>::on_finish(d, model, replay);
        }
    }

    fn on_episode(&mut self, episode: usize, ret: f64, env_steps: usize) {
        let e = Episode {
            index: episode,
            episodes: self.episodes,
            ret,
            env_steps,
            zeroed: self.zeroed,
            samples: self.samples,
        };
        (self.zeroed, self.samples) = (0, 0);
        self.events.on_episode(&e);
        let every = (self.episodes / 20).max(1);
        if (episode + 1) % every == 0 || episode + 1 == self.episodes {
            self.new_findings();
        }
    }
}

/// The doctor for a supervised run of `exp`: it knows the training settings (its advice is
/// relative to the current learning rate and never suggests what is already set).
fn doctor_for(exp: &Experiment, config: DoctorConfig, classes: usize) -> Doctor {
    let mut d = Doctor::for_training(config, &train_config(exp), classes);
    d.stats.run.settings.extend(exp.settings());
    d
}

/// The classifier loss whose name stands for the TD loss in the doctor's records.
fn doctor_loss(td: TdLoss) -> Loss {
    match td {
        TdLoss::Mse => Loss::Mse,
        TdLoss::ClippedDelta => Loss::ClippedMse,
        TdLoss::Huber | TdLoss::GradClip => Loss::Huber,
    }
}

/// Run an experiment: load its data (relative paths against `base`, the experiment file's
/// directory), build its model, train it (with the doctor when `opts.doctor` is set;
/// feed-forward models then get a full-pass dead-unit count after training) and return
/// the [`Run`]. Errors are [`super::Error::BadInput`]: everything is checked before
/// training starts.
///
/// ```
/// use leaky::experiment::{parse, run, NoEvents, RunOptions};
///
/// let exp = parse("[data]\ndataset = \"spiral\"\n[model]\nhidden = [20]\n[train]\nepochs = 2\n")?;
/// let result = run(&exp, std::path::Path::new("."), RunOptions::doctor(), &mut NoEvents)?;
/// println!("{} findings, best val acc {:.2}", result.findings.len(), result.metrics()["best_val_acc"]);
/// # Ok::<(), leaky::experiment::Error>(())
/// ```
pub fn run(exp: &Experiment, base: &Path, opts: RunOptions, events: &mut dyn Events) -> Result<Run> {
    let (data, model) = prepare(exp, base)?;
    Ok(run_prepared(exp, data, model, opts, events))
}

/// [`run`] on data and a model already prepared (e.g. to print them first).
pub fn run_prepared(exp: &Experiment, data: Data, model: Model, opts: RunOptions, events: &mut dyn Events) -> Run {
    run_prepared_from(exp, data, model, opts, None, events)
}

/// [`run_prepared`] continuing from `resume`, a state of a feed-forward run of the same
/// experiment ([`super::checkpoint::load_resume`] checks it): epochs
/// `resume.epochs_done + 1 ..= train.epochs` are trained, and the run's history, best epoch
/// and model are those an uninterrupted run would have had. `resume` is ignored for
/// recurrent and DQN models (whose checkpoints `load_resume` refuses).
pub fn run_prepared_from(
    exp: &Experiment,
    data: Data,
    model: Model,
    opts: RunOptions,
    resume: Option<TrainState<f32>>,
    events: &mut dyn Events,
) -> Run {
    let cfg = train_config(exp);
    let train_len = data.train_len();
    let val_len = data.val_len();
    let mut out = Run {
        experiment: exp.clone(),
        report: None,
        dqn: None,
        doctor: None,
        findings: Vec::new(),
        dead_at_init: Vec::new(),
        model: Trained::Dqn(Sequential::new()),
        train_len,
        val_len,
        initial_val_loss: None,
        whh_radius_init: None,
        state: None,
    };
    match (data, model) {
        (Data::Rows { train, val }, Model::Feed { mut net, names }) => {
            let doctor = opts.doctor.map(|d| doctor_for(exp, d, train.classes));
            let mut w = Watcher { doctor, events, seen: HashSet::new(), zeroed: 0, samples: 0, episodes: 0 };
            if let (Some(dcfg), true) = (opts.doctor, opts.dead_at_init) {
                let mut before = Doctor::new(dcfg, cfg.loss, train.classes);
                before.dead_unit_pass(&mut net, &train);
                out.dead_at_init = before.stats.dead_units;
            }
            let (report, state) = fit_from(&mut net, &train, &val, &cfg, &mut w, resume);
            out.state = Some(state);
            if let Some(d) = &mut w.doctor {
                d.dead_unit_pass(&mut net, &train);
            }
            out.findings = w.doctor.as_ref().map(|d| d.diagnose()).unwrap_or_default();
            out.doctor = w.doctor;
            out.report = Some(report);
            out.model = Trained::Feed { net, names };
        }
        (Data::Seq { train, val }, Model::Seq(mut model)) => {
            let mut doctor = opts.doctor.map(|d| doctor_for(exp, d, train.classes));
            if let (Some(d), crate::data::seq::SeqTarget::Tokens { mask, .. }) = (&mut doctor, &train.target) {
                let steps = mask.iter().filter(|&&m| m).count() as f64 / mask.nrows().max(1) as f64;
                d.set_init_loss_scale(steps);
            }
            out.whh_radius_init = Some(model.whh_spectrum().0);
            out.initial_val_loss = {
                let idx: Vec<usize> = (0..val.len().min(256)).collect();
                (!idx.is_empty()).then(|| crate::train::evaluate_seq(&model, &val.subset(&idx)).0)
            };
            let mut w = Watcher { doctor, events, seen: HashSet::new(), zeroed: 0, samples: 0, episodes: 0 };
            let report = fit_seq(&mut model, &train, &val, &cfg, &mut w);
            out.findings = w.doctor.as_ref().map(|d| d.diagnose()).unwrap_or_default();
            out.doctor = w.doctor;
            out.report = Some(report);
            out.model = Trained::Seq(model);
        }
        (Data::Env, Model::Dqn(dcfg)) => {
            let doctor = opts.doctor.map(|d| Doctor::new(d, doctor_loss(dcfg.td_loss), crate::rl::cartpole::ACTIONS));
            let mut w =
                Watcher { doctor, events, seen: HashSet::new(), zeroed: 0, samples: 0, episodes: dcfg.episodes };
            let (net, run) = crate::rl::dqn::train::<f32>(&dcfg, &mut w);
            out.findings = w.doctor.as_ref().map(|d| d.diagnose()).unwrap_or_default();
            out.doctor = w.doctor;
            out.dqn = Some(run);
            out.model = Trained::Dqn(net);
        }
        _ => unreachable!("prepare pairs each kind of data with its kind of model"),
    }
    out
}

/// The numbers a treatment is judged on. Supervised runs: the trainer's report. DQN runs:
/// `best_val_acc` is the mean return over the last 50 episodes divided by 500 (CartPole-v1's
/// cap), so one accuracy point is 5 return; they have no loss to compare.
pub fn treatment_metrics(run: &Run) -> crate::doctor::treatment::Metrics {
    match (&run.report, &run.dqn) {
        (Some(r), _) => crate::doctor::treatment::Metrics::from_report(r),
        (None, Some(d)) => crate::doctor::treatment::Metrics::new(f64::NAN, d.mean_last(50) / 500.0, f64::NAN),
        (None, None) => crate::doctor::treatment::Metrics::default(),
    }
}

/// `leaky doctor --treat`: apply the root causes' fixes together
/// ([`crate::doctor::treatment::plan`]), retrain with the same seed and budget, and compare.
/// Returns `None` when no root cause has a fix that is a setting; otherwise the treated
/// experiment, its run and the [`crate::doctor::treatment::Treatment`] (verdict from the
/// metrics).
pub fn treat(
    exp: &Experiment,
    base: &Path,
    before: &Run,
    opts: RunOptions,
) -> Result<Option<(Experiment, Run, crate::doctor::treatment::Treatment)>> {
    let plan = crate::doctor::treatment::plan(&before.findings);
    if plan.is_empty() {
        return Ok(None);
    }
    let mut settings = Vec::new();
    for (k, v) in &plan {
        let t = toml::Value::try_from(v)
            .map_err(|e| super::Error::Run(format!("fix `{k}` = {v}: not a TOML value ({e})")))?;
        settings.push((k.clone(), t));
    }
    let treated = exp.with_settings(&settings)?;
    let after = run(&treated, base, opts, &mut NoEvents)?;
    let t = crate::doctor::treatment::compare(
        &treatment_metrics(before),
        &treatment_metrics(&after),
        &before.findings,
        &after.findings,
    );
    Ok(Some((treated, after, t)))
}
