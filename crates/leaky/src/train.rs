//! The minibatch trainer: epochs of shuffled minibatches, validation accuracy after each
//! epoch, the best parameters kept, observer hooks, and atomic safetensors checkpoints.
//!
//! One step is: forward (probed) -> loss + L2 (0.5 * reg * sum W^2 over decayed params) ->
//! backward (probed) -> optional global-norm clipping -> [`Observer::on_step`] (gradients
//! and pre-update weights visible) -> update. The run is deterministic for a seed: the
//! shuffle order comes from `seed`, and layers own their own seeded generators.

use crate::data::seq::SeqDataset;
use crate::data::Dataset;
use crate::losses::Loss;
use crate::nn::seq::{seq_batch, SeqModel};
use crate::nn::{Mode, NoProbe, Param, Probe, Sequential};
use crate::optim::{clip_global_norm, decayed_lr, global_norm, update, Slots, UpdateConfig};
use crate::tensor::{permutation, Float, RngState, Tensor};
use ndarray::{Array2, Axis, Ix2, IxDyn};
use std::collections::HashMap;
use std::path::Path;

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per minibatch (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Update rule and learning rate.
    pub update: UpdateConfig,
    /// L2 strength `reg` in `0.5 * reg * sum(W^2)` (CS231n convention).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value; 0 = off.
    pub clip_grad_norm: f64,
    /// Multiply the learning rate by this after every epoch (1 = constant).
    pub lr_decay: f64,
    /// The loss.
    pub loss: Loss,
    /// Seed of the shuffle order.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 64,
            update: UpdateConfig::new(crate::optim::Rule::Adam, 1e-3),
            weight_decay: 0.0,
            clip_grad_norm: 0.0,
            lr_decay: 1.0,
            loss: Loss::Softmax,
            seed: 0,
        }
    }
}

/// What the trainer tells observers after each backward pass (before the update).
#[derive(Clone, Debug)]
pub struct StepInfo {
    /// Epoch, from 0.
    pub epoch: usize,
    /// Global step, from 0.
    pub step: usize,
    /// Data loss of this minibatch (without the L2 term).
    pub loss: f64,
    /// Learning rate used for this update.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Examples in this minibatch.
    pub batch_size: usize,
}

/// What the trainer reports after each epoch.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochInfo {
    /// Epoch, from 0.
    pub epoch: usize,
    /// Mean minibatch data loss over the epoch.
    pub train_loss: f64,
    /// Accuracy on the training set, measured in eval mode at the end of the epoch.
    pub train_acc: f64,
    /// Accuracy on the validation set (NaN when there is none).
    pub val_acc: f64,
    /// Mean data loss on the validation set (NaN when there is none).
    pub val_loss: f64,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Wall-clock seconds of the epoch's training steps.
    pub seconds: f64,
}

/// Hooks into training. Every method has a do-nothing default.
pub trait Observer<F: Float> {
    /// Before the first step.
    fn on_start(&mut self, _model: &Sequential<F>, _train: &Dataset) {}
    /// A probe to receive every layer's output and input gradient during `step`, or
    /// `None` to run the step unprobed (the cheap default).
    fn probe(&mut self, _step: usize) -> Option<&mut dyn Probe<F>> {
        None
    }
    /// After the backward pass of a step, before the update: `model`'s params hold this
    /// step's gradients and the pre-update values.
    fn on_step(&mut self, _info: &StepInfo, _model: &Sequential<F>) {}
    /// After an epoch's evaluation.
    fn on_epoch(&mut self, _info: &EpochInfo, _model: &Sequential<F>) {}
    /// Return true to stop training after the current step.
    fn should_stop(&self) -> bool {
        false
    }
}

/// An observer that does nothing.
pub struct NoObserver;
impl<F: Float> Observer<F> for NoObserver {}

/// The outcome of [`fit`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainReport {
    /// One entry per completed epoch.
    pub history: Vec<EpochInfo>,
    /// Best validation accuracy seen (training accuracy when there is no validation set).
    pub best_val_acc: f64,
    /// Epoch of the best accuracy (sequence models: of the lowest validation loss); the
    /// model holds that epoch's parameters on return.
    pub best_epoch: usize,
    /// Validation loss at the best epoch.
    pub best_val_loss: f64,
    /// Steps taken.
    pub steps: usize,
    /// Set when the loss became NaN or infinite: the step at which it happened.
    pub diverged_at_step: Option<usize>,
    /// Total seconds spent in training steps.
    pub seconds: f64,
}

/// The part of a step shared by every trainer, after the backward pass: add the L2
/// gradient `reg * W` (d/dW of `0.5 * reg * sum(W^2)`) to decayed parameters, then clip
/// the global gradient norm when `cfg.clip_grad_norm > 0`. Returns the norm before clipping.
fn regularise_and_clip<F: Float>(mut params: Vec<&mut Param<F>>, cfg: &TrainConfig) -> f64 {
    if cfg.weight_decay > 0.0 {
        let reg = F::from_f64c(cfg.weight_decay);
        for p in params.iter_mut().filter(|p| p.decay) {
            p.grad.zip_mut_with(&p.value, |g, &w| *g += reg * w);
        }
    }
    let mut grads: Vec<&mut Tensor<F>> = params.iter_mut().map(|p| &mut p.grad).collect();
    if cfg.clip_grad_norm > 0.0 {
        clip_global_norm(&mut grads, cfg.clip_grad_norm)
    } else {
        global_norm(grads.iter().map(|g| &**g))
    }
}

/// Apply the update rule to every parameter with its own optimiser slots.
fn update_all<F: Float>(params: Vec<&mut Param<F>>, slots: &mut [Slots<F>], ucfg: &UpdateConfig) {
    for (p, s) in params.into_iter().zip(slots.iter_mut()) {
        update(&mut p.value, &p.grad, s, ucfg);
    }
}

/// Take a minibatch of `data` at `idx` as a tensor of the model's float type, shaped
/// (B, feature_shape...).
pub fn batch<F: Float>(data: &Dataset, idx: &[usize]) -> (Tensor<F>, Vec<usize>) {
    let mut shape = vec![idx.len()];
    shape.extend_from_slice(&data.feature_shape);
    let d = data.dim();
    let mut flat = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        flat.extend(data.x.row(i).iter().map(|&v| F::from_f64c(v as f64)));
    }
    let x = if shape.iter().skip(1).product::<usize>() == d {
        Tensor::from_shape_vec(IxDyn(&shape), flat)
    } else {
        Tensor::from_shape_vec(IxDyn(&[idx.len(), d]), flat)
    };
    (x.expect("batch shape matches data"), idx.iter().map(|&i| data.y[i]).collect())
}

fn scores_2d<F: Float>(t: Tensor<F>) -> Array2<F> {
    t.into_dimensionality::<Ix2>().expect("the model's output must be (N, C) scores")
}

/// Accuracy and mean loss of `model` on `data` in eval mode, in batches of 512.
pub fn evaluate<F: Float>(model: &mut Sequential<F>, data: &Dataset, loss: Loss) -> (f64, f64) {
    if data.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut correct = 0usize;
    let mut total_loss = 0.0;
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(512) {
        let (x, y) = batch::<F>(data, chunk);
        let scores = scores_2d(model.forward(x, Mode::Eval));
        let (l, _) = loss.classify(&scores, &y);
        total_loss += l.to_f64c() * chunk.len() as f64;
        for (row, &yi) in scores.outer_iter().zip(&y) {
            if argmax(row.iter().copied()) == yi {
                correct += 1;
            }
        }
    }
    (correct as f64 / data.len() as f64, total_loss / data.len() as f64)
}

/// Predicted classes for every row of `data`, in eval mode.
pub fn predict<F: Float>(model: &mut Sequential<F>, data: &Dataset) -> Vec<usize> {
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::with_capacity(data.len());
    for chunk in idx.chunks(512) {
        let (x, _) = batch::<F>(data, chunk);
        let scores = scores_2d(model.forward(x, Mode::Eval));
        out.extend(scores.outer_iter().map(|r| argmax(r.iter().copied())));
    }
    out
}

fn argmax<F: Float>(it: impl Iterator<Item = F>) -> usize {
    let mut best = (0, F::neg_infinity());
    for (i, v) in it.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// What [`fit`] and [`fit_seq`] do differently: the model's step, its evaluation, what
/// "best" means and how its parameters are kept. [`train_epochs`] is the rest.
trait Learner<F: Float> {
    /// `best_val_acc` before any epoch.
    const NO_BEST_ACC: f64;
    /// `best_val_loss` before any epoch.
    const NO_BEST_LOSS: f64;
    /// Before the first step.
    fn on_start(&mut self);
    /// Forward and backward on the training examples `idx` (global step `step`), leaving
    /// the gradients in the parameters; returns the data loss.
    fn forward_backward(&mut self, idx: &[usize], step: usize) -> f64;
    /// Every trainable parameter, in one fixed order.
    fn params_mut(&mut self) -> Vec<&mut Param<F>>;
    /// After the backward pass and clipping, before the update.
    fn on_step(&mut self, info: &StepInfo);
    /// Whether the observer asks to stop.
    fn should_stop(&self) -> bool;
    /// `(train_acc, val_acc, val_loss)` at the end of an epoch.
    fn evaluate(&mut self) -> (f64, f64, f64);
    /// Record `info` in `report` (best accuracy and loss) when it beats the best so far.
    fn improves(&self, info: &EpochInfo, report: &mut TrainReport) -> bool;
    /// A copy of what to restore at the end (the best epoch's tensors).
    fn snapshot(&self) -> Vec<Tensor<F>>;
    /// Put a [`Learner::snapshot`] back.
    fn restore(&mut self, best: Vec<Tensor<F>>);
    /// After an epoch's evaluation.
    fn on_epoch(&mut self, info: &EpochInfo);
    /// Every layer's random-generator state (empty when the model draws nothing).
    fn rng_states(&self) -> Vec<Option<RngState>> {
        Vec::new()
    }
    /// Put [`Learner::rng_states`] back.
    fn set_rng_states(&mut self, _states: &[Option<RngState>]) {}
}

/// Where a training run stands after its last epoch: everything needed to continue it as if
/// it had never stopped ([`fit_from`]). Tensor lists are in the order of
/// [`Sequential::named_tensors`] (parameters and buffers); `slots` in the order of
/// [`Sequential::params`].
#[derive(Clone, Debug)]
pub struct TrainState<F: Float> {
    /// Epochs completed.
    pub epochs_done: usize,
    /// One entry per completed epoch.
    pub history: Vec<EpochInfo>,
    /// Best validation accuracy so far (see [`TrainReport::best_val_acc`]).
    pub best_val_acc: f64,
    /// Validation loss at the best epoch so far.
    pub best_val_loss: f64,
    /// Epoch of the best so far, from 0.
    pub best_epoch: usize,
    /// Steps taken.
    pub steps: usize,
    /// Seconds spent in training steps.
    pub seconds: f64,
    /// The best epoch's tensors (`None` before any epoch improved).
    pub best: Option<Vec<Tensor<F>>>,
    /// The last epoch's tensors: the model as training left it, before the best epoch's
    /// parameters were put back.
    pub last: Vec<Tensor<F>>,
    /// Every parameter's optimiser state (moments and Adam's step counter).
    pub slots: Vec<Slots<F>>,
    /// The shuffle generator's state (the generator starts as `rng(cfg.seed)`).
    pub shuffle: RngState,
    /// Every layer's own generator state (dropout), one entry per layer.
    pub layer_rngs: Vec<Option<RngState>>,
}

/// The trainer's loop, shared by [`fit`] and [`fit_seq`]: epochs of shuffled minibatches of
/// the `train_len` training examples; each step forward/backward, L2 and clipping, the
/// observer, a stop at the first non-finite loss or gradient norm, the update; after each
/// epoch the evaluation and the best parameters so far, which the learner holds on return.
/// With `resume`, training continues from that state at epoch `resume.epochs_done`.
fn train_epochs<F: Float, L: Learner<F>>(
    learner: &mut L,
    train_len: usize,
    cfg: &TrainConfig,
    resume: Option<TrainState<F>>,
) -> (TrainReport, TrainState<F>) {
    assert!(cfg.batch_size > 0, "batch_size must be positive");
    let mut slots: Vec<Slots<F>> = learner.params_mut().iter().map(|p| Slots::zeros_like(&p.value)).collect();
    let mut rng = crate::tensor::rng(cfg.seed);
    let mut report = TrainReport {
        history: Vec::new(),
        best_val_acc: L::NO_BEST_ACC,
        best_epoch: 0,
        best_val_loss: L::NO_BEST_LOSS,
        steps: 0,
        diverged_at_step: None,
        seconds: 0.0,
    };
    let mut best: Option<Vec<Tensor<F>>> = None;
    let mut first_epoch = 0;
    if let Some(state) = resume {
        assert_eq!(state.slots.len(), slots.len(), "resume state of another model");
        slots = state.slots;
        rng = state.shuffle.generator();
        learner.restore(state.last);
        learner.set_rng_states(&state.layer_rngs);
        report.history = state.history;
        report.best_val_acc = state.best_val_acc;
        report.best_val_loss = state.best_val_loss;
        report.best_epoch = state.best_epoch;
        report.steps = state.steps;
        report.seconds = state.seconds;
        best = state.best;
        first_epoch = state.epochs_done;
    }
    learner.on_start();
    'epochs: for epoch in first_epoch..cfg.epochs {
        let lr = decayed_lr(cfg.update.lr, cfg.lr_decay, epoch);
        let ucfg = UpdateConfig { lr, ..cfg.update };
        let order = permutation(train_len, &mut rng);
        let start = std::time::Instant::now();
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for idx in order.chunks(cfg.batch_size) {
            let step = report.steps;
            let loss = learner.forward_backward(idx, step);
            let grad_norm = regularise_and_clip(learner.params_mut(), cfg);
            learner.on_step(&StepInfo { epoch, step, loss, lr, grad_norm, batch_size: idx.len() });
            report.steps += 1;
            if !loss.is_finite() || !grad_norm.is_finite() {
                report.diverged_at_step = Some(step);
                report.seconds += start.elapsed().as_secs_f64();
                break 'epochs;
            }
            update_all(learner.params_mut(), &mut slots, &ucfg);
            loss_sum += loss;
            batches += 1;
            if learner.should_stop() {
                break;
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        report.seconds += seconds;
        let (train_acc, val_acc, val_loss) = learner.evaluate();
        let info = EpochInfo {
            epoch,
            train_loss: loss_sum / batches.max(1) as f64,
            train_acc,
            val_acc,
            val_loss,
            lr,
            seconds,
        };
        if learner.improves(&info, &mut report) {
            report.best_epoch = epoch;
            best = Some(learner.snapshot());
        }
        learner.on_epoch(&info);
        report.history.push(info);
        if learner.should_stop() {
            break;
        }
    }
    let state = TrainState {
        epochs_done: report.history.len(),
        history: report.history.clone(),
        best_val_acc: report.best_val_acc,
        best_val_loss: report.best_val_loss,
        best_epoch: report.best_epoch,
        steps: report.steps,
        seconds: report.seconds,
        best: best.clone(),
        last: learner.snapshot(),
        slots,
        shuffle: RngState::of(&rng),
        layer_rngs: learner.rng_states(),
    };
    if let Some(best) = best {
        learner.restore(best);
    }
    (report, state)
}

/// A [`Sequential`] classifier as [`fit`] trains it.
struct Classifier<'a, F: Float> {
    model: &'a mut Sequential<F>,
    train: &'a Dataset,
    val: &'a Dataset,
    loss: Loss,
    observer: &'a mut dyn Observer<F>,
}

impl<F: Float> Learner<F> for Classifier<'_, F> {
    const NO_BEST_ACC: f64 = f64::NEG_INFINITY;
    const NO_BEST_LOSS: f64 = f64::NAN;

    fn on_start(&mut self) {
        self.observer.on_start(self.model, self.train);
    }

    fn forward_backward(&mut self, idx: &[usize], step: usize) -> f64 {
        let (x, y) = batch::<F>(self.train, idx);
        let mut no_probe = NoProbe;
        let probe: &mut dyn Probe<F> = match self.observer.probe(step) {
            Some(p) => p,
            None => &mut no_probe,
        };
        let scores = scores_2d(self.model.forward_probed(x, Mode::Train, probe));
        let (loss, dscores) = self.loss.classify(&scores, &y);
        let dscores = dscores.into_dyn();
        probe.after_loss(loss.to_f64c(), &dscores);
        self.model.backward_params_probed(dscores, probe);
        loss.to_f64c()
    }

    fn params_mut(&mut self) -> Vec<&mut Param<F>> {
        self.model.params_mut()
    }

    fn on_step(&mut self, info: &StepInfo) {
        self.observer.on_step(info, self.model);
    }

    fn should_stop(&self) -> bool {
        self.observer.should_stop()
    }

    fn evaluate(&mut self) -> (f64, f64, f64) {
        let (train_acc, _) = evaluate(self.model, self.train, self.loss);
        let (val_acc, val_loss) = evaluate(self.model, self.val, self.loss);
        (train_acc, val_acc, val_loss)
    }

    /// Best = highest validation accuracy (training accuracy when there is no validation set).
    fn improves(&self, info: &EpochInfo, report: &mut TrainReport) -> bool {
        let score = if self.val.is_empty() { info.train_acc } else { info.val_acc };
        let better = score > report.best_val_acc;
        if better {
            report.best_val_acc = score;
            report.best_val_loss = info.val_loss;
        }
        better
    }

    /// Every named tensor: parameters and buffers (batch-norm running statistics).
    fn snapshot(&self) -> Vec<Tensor<F>> {
        self.model.named_tensors().into_iter().map(|(_, t)| t.clone()).collect()
    }

    fn restore(&mut self, best: Vec<Tensor<F>>) {
        let mut it = best.into_iter();
        self.model.load_named(|_| it.next()).expect("same model, same tensors");
    }

    fn on_epoch(&mut self, info: &EpochInfo) {
        self.observer.on_epoch(info, self.model);
    }

    fn rng_states(&self) -> Vec<Option<RngState>> {
        self.model.rng_states()
    }

    fn set_rng_states(&mut self, states: &[Option<RngState>]) {
        self.model.set_rng_states(states);
    }
}

/// Train `model` on `train`, evaluating on `val` after each epoch, and leave the model
/// with the parameters of the best epoch.
pub fn fit<F: Float>(
    model: &mut Sequential<F>,
    train: &Dataset,
    val: &Dataset,
    cfg: &TrainConfig,
    observer: &mut dyn Observer<F>,
) -> TrainReport {
    fit_from(model, train, val, cfg, observer, None).0
}

/// [`fit`] that can continue a run: with `resume` (a [`TrainState`] of the same model and
/// configuration, e.g. from [`load_resumable`]) training goes on at epoch
/// `resume.epochs_done` up to `cfg.epochs` (the total) with the saved optimiser state,
/// shuffle order and dropout masks, so that `n` epochs in one go and `k` epochs then
/// `n - k` resumed give the same parameters and history. Also returns the state at the
/// end, for [`save_resumable`]. Panics when `resume` does not fit the model (checked by
/// [`load_resumable`]).
pub fn fit_from<F: Float>(
    model: &mut Sequential<F>,
    train: &Dataset,
    val: &Dataset,
    cfg: &TrainConfig,
    observer: &mut dyn Observer<F>,
    resume: Option<TrainState<F>>,
) -> (TrainReport, TrainState<F>) {
    let mut learner = Classifier { model, train, val, loss: cfg.loss, observer };
    train_epochs(&mut learner, train.len(), cfg, resume)
}

/// Hooks into sequence-model training ([`fit_seq`]); do-nothing defaults.
pub trait SeqObserver<F: Float> {
    /// After the backward pass of a step, before the update (gradients and the per-step
    /// norms `model.bptt_norms()` are those of this step).
    fn on_step(&mut self, _info: &StepInfo, _model: &SeqModel<F>) {}
    /// After an epoch's evaluation.
    fn on_epoch(&mut self, _info: &EpochInfo, _model: &SeqModel<F>) {}
}

impl<F: Float> SeqObserver<F> for NoObserver {}

/// Mean loss and per-step accuracy (NaN for `Final` targets) of `model` on `data`, in
/// batches of 256.
pub fn evaluate_seq<F: Float>(model: &SeqModel<F>, data: &SeqDataset) -> (f64, f64) {
    if data.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let (mut loss, mut correct, mut counted) = (0.0, 0, 0);
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(256) {
        let e = model.evaluate(&seq_batch::<F>(data, chunk));
        loss += e.loss * chunk.len() as f64;
        correct += e.correct;
        counted += e.counted;
    }
    let acc = if counted == 0 { f64::NAN } else { correct as f64 / counted as f64 };
    (loss / data.len() as f64, acc)
}

/// A [`SeqModel`] as [`fit_seq`] trains it.
struct Recurrent<'a, F: Float> {
    model: &'a mut SeqModel<F>,
    train: &'a SeqDataset,
    val: &'a SeqDataset,
    observer: &'a mut dyn SeqObserver<F>,
}

impl<F: Float> Learner<F> for Recurrent<'_, F> {
    const NO_BEST_ACC: f64 = f64::NAN;
    const NO_BEST_LOSS: f64 = f64::INFINITY;

    fn on_start(&mut self) {}

    fn forward_backward(&mut self, idx: &[usize], _step: usize) -> f64 {
        self.model.forward_backward(&seq_batch::<F>(self.train, idx)).loss
    }

    fn params_mut(&mut self) -> Vec<&mut Param<F>> {
        self.model.params_mut()
    }

    fn on_step(&mut self, info: &StepInfo) {
        self.observer.on_step(info, self.model);
    }

    fn should_stop(&self) -> bool {
        false
    }

    fn evaluate(&mut self) -> (f64, f64, f64) {
        // Training accuracy on at most 500 sequences keeps evaluation cheap.
        let probe: Vec<usize> = (0..self.train.len().min(500)).collect();
        let (_, train_acc) = evaluate_seq(self.model, &self.train.subset(&probe));
        let (val_loss, val_acc) = evaluate_seq(self.model, self.val);
        (train_acc, val_acc, val_loss)
    }

    /// Best = lowest validation loss (training loss when there is no validation set).
    fn improves(&self, info: &EpochInfo, report: &mut TrainReport) -> bool {
        let score = if self.val.is_empty() { info.train_loss } else { info.val_loss };
        let better = score < report.best_val_loss;
        if better {
            report.best_val_loss = score;
            report.best_val_acc = info.val_acc;
        }
        better
    }

    fn snapshot(&self) -> Vec<Tensor<F>> {
        self.model.params().iter().map(|p| p.value.clone()).collect()
    }

    fn restore(&mut self, best: Vec<Tensor<F>>) {
        for (p, v) in self.model.params_mut().into_iter().zip(best) {
            p.value = v;
        }
    }

    fn on_epoch(&mut self, info: &EpochInfo) {
        self.observer.on_epoch(info, self.model);
    }
}

/// Train a recurrent [`SeqModel`] on `train`, evaluating on `val` after each epoch, and
/// leave it with the parameters of the epoch with the lowest validation loss. The step is
/// the same as [`fit`]'s: forward, loss, backward through time, L2, optional global-norm
/// clipping (the remedy for exploding gradients), observer, update.
pub fn fit_seq<F: Float>(
    model: &mut SeqModel<F>,
    train: &SeqDataset,
    val: &SeqDataset,
    cfg: &TrainConfig,
    observer: &mut dyn SeqObserver<F>,
) -> TrainReport {
    let mut learner = Recurrent { model, train, val, observer };
    train_epochs(&mut learner, train.len(), cfg, None).0
}

/// Classification accuracy of predictions against labels.
pub fn accuracy(pred: &[usize], y: &[usize]) -> f64 {
    if y.is_empty() {
        return f64::NAN;
    }
    pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64
}

/// Write `bytes` to `path` atomically; see [`crate::io::write_atomic`] (re-exported here
/// so existing call sites keep compiling).
pub use crate::io::write_atomic;

/// The metadata key of a checkpoint's checksum: `crc32:XXXXXXXX` (8 lowercase hex digits),
/// the CRC-32 of [`checksum`]'s input. Files without it (older checkpoints) load unchecked.
pub const CHECKSUM_KEY: &str = "leaky.checksum";

/// The metadata key of the resume state (JSON, see docs/checkpoints.md).
pub const RESUME_KEY: &str = "leaky.resume";

/// The prefix of the last epoch's tensors and the optimiser slots in a resumable checkpoint:
/// `resume.last.<name>`, `resume.m.<name>`, `resume.v.<name>`.
pub const RESUME_PREFIX: &str = "resume.";

/// The most training steps a resume state may record: 2^53, the integers JSON numbers hold
/// exactly in most readers (years of steps), far from where the step counters overflow.
pub const MAX_RESUME_STEPS: u64 = 1 << 53;

/// The checksum of a checkpoint's contents: CRC-32 over every tensor in name order (its name,
/// dtype, shape and little-endian bytes) and every metadata entry but the checksum itself,
/// in key order; formatted `crc32:XXXXXXXX`.
fn checksum<'a>(
    tensors: impl IntoIterator<Item = (&'a str, String, &'a [usize], &'a [u8])>,
    metadata: &HashMap<String, String>,
) -> String {
    let mut tensors: Vec<_> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = crc32fast::Hasher::new();
    for (name, dtype, shape, data) in tensors {
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(dtype.as_bytes());
        h.update(&[0]);
        for d in shape {
            h.update(&(*d as u64).to_le_bytes());
        }
        h.update(data);
    }
    let mut meta: Vec<_> = metadata.iter().filter(|(k, _)| k.as_str() != CHECKSUM_KEY).collect();
    meta.sort();
    for (k, v) in meta {
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(v.as_bytes());
        h.update(&[0]);
    }
    format!("crc32:{:08x}", h.finalize())
}

/// Save every parameter and buffer of `model` to a safetensors file at `path` (f32 or
/// f64, matching `F`), atomically. `metadata` goes into the file's `__metadata__`.
pub fn save_checkpoint<F: Float>(
    model: &Sequential<F>,
    path: &Path,
    metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    save_named(&model.named_tensors(), path, metadata)
}

/// Save named tensors to a safetensors file at `path` (f32 or f64, matching `F`),
/// atomically; used for any model ([`save_checkpoint`] for a `Sequential`). A checksum of
/// the contents goes into the metadata under [`CHECKSUM_KEY`].
pub fn save_named<F: Float>(
    tensors: &[(String, &Tensor<F>)],
    path: &Path,
    mut metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    use safetensors::tensor::TensorView;
    let dtype = if F::NAME == "f32" { safetensors::Dtype::F32 } else { safetensors::Dtype::F64 };
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let b: Vec<u8> = if F::NAME == "f32" {
                t.iter().flat_map(|v| (v.to_f64c() as f32).to_le_bytes()).collect()
            } else {
                t.iter().flat_map(|v| v.to_f64c().to_le_bytes()).collect()
            };
            (name.clone(), b, t.shape().to_vec())
        })
        .collect();
    let sum =
        checksum(bytes.iter().map(|(n, b, s)| (n.as_str(), dtype.to_string(), s.as_slice(), b.as_slice())), &metadata);
    metadata.insert(CHECKSUM_KEY.to_string(), sum);
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, b, s)| (n.clone(), TensorView::new(dtype, s.clone(), b).expect("sizes are consistent")))
        .collect();
    let data = safetensors::serialize(views, Some(metadata))
        .map_err(|e| CheckpointError::Format { path: path.display().to_string(), detail: e.to_string() })?;
    write_atomic(path, &data).map_err(|e| CheckpointError::Io { path: path.display().to_string(), source: e })
}

/// Save a checkpoint that [`load_resumable`] can continue training from: `model`'s tensors
/// (the best epoch's, as [`fit_from`] leaves them) under their usual names, so that
/// [`load_checkpoint`] reads it as any checkpoint, and under [`RESUME_PREFIX`] the last
/// epoch's tensors (`resume.last.<name>`) and every parameter's optimiser moments
/// (`resume.m.<name>`, `resume.v.<name>`); the rest of `state` (epochs done, best so far,
/// history, Adam's step counters, generator positions) as JSON under [`RESUME_KEY`].
pub fn save_resumable<F: Float>(
    model: &Sequential<F>,
    state: &TrainState<F>,
    path: &Path,
    mut metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let named = model.named_tensors();
    let pnames = model.param_names();
    assert_eq!(state.last.len(), named.len(), "resume state of another model");
    assert_eq!(state.slots.len(), pnames.len(), "resume state of another model");
    let mut tensors: Vec<(String, &Tensor<F>)> = named.iter().map(|(n, t)| (n.clone(), *t)).collect();
    for ((n, _), t) in named.iter().zip(&state.last) {
        tensors.push((format!("{RESUME_PREFIX}last.{n}"), t));
    }
    for (n, s) in pnames.iter().zip(&state.slots) {
        tensors.push((format!("{RESUME_PREFIX}m.{n}"), &s.m));
        tensors.push((format!("{RESUME_PREFIX}v.{n}"), &s.v));
    }
    metadata.insert(RESUME_KEY.to_string(), resume_json(state).to_string());
    save_named(&tensors, path, metadata)
}

/// A float that survives JSON exactly, NaN and infinities included: Rust's shortest
/// round-trip text (`"0.1"`, `"NaN"`, `"inf"`).
fn fstr(v: f64) -> serde_json::Value {
    serde_json::Value::String(format!("{v:?}"))
}

fn resume_json<F: Float>(s: &TrainState<F>) -> serde_json::Value {
    use serde_json::json;
    let layer_rngs: serde_json::Map<String, serde_json::Value> =
        s.layer_rngs.iter().enumerate().filter_map(|(i, p)| p.map(|p| (i.to_string(), json!(p.encode())))).collect();
    let history: Vec<serde_json::Value> = s
        .history
        .iter()
        .map(|h| {
            json!([
                h.epoch,
                fstr(h.train_loss),
                fstr(h.train_acc),
                fstr(h.val_acc),
                fstr(h.val_loss),
                fstr(h.lr),
                fstr(h.seconds)
            ])
        })
        .collect();
    json!({
        "format": 1,
        "epochs_done": s.epochs_done,
        "steps": s.steps,
        "seconds": fstr(s.seconds),
        "best_val_acc": fstr(s.best_val_acc),
        "best_val_loss": fstr(s.best_val_loss),
        "best_epoch": s.best_epoch,
        "has_best": s.best.is_some(),
        "adam_t": s.slots.iter().map(|sl| sl.t).collect::<Vec<_>>(),
        "shuffle_rng": s.shuffle.encode(),
        "layer_rngs": layer_rngs,
        "history": history,
    })
}

/// Read a checkpoint's bytes (regular files of at most
/// [`crate::limits::MAX_DATA_FILE_BYTES`]).
fn read_checkpoint_file(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    let p = path.display().to_string();
    crate::data::read_file(path).map_err(|e| match e {
        crate::data::DataError::Io { source, .. } => CheckpointError::Io { path: p.clone(), source },
        other => {
            CheckpointError::Format { path: p.clone(), detail: other.to_string().replacen(&format!("{p}: "), "", 1) }
        }
    })
}

/// Parse a safetensors file and verify its checksum when it has one.
fn open_checkpoint<'a>(
    bytes: &'a [u8],
    p: &str,
) -> Result<(safetensors::SafeTensors<'a>, HashMap<String, String>), CheckpointError> {
    let fmt = |detail: String| CheckpointError::Format { path: p.to_string(), detail };
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| fmt(e.to_string()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| fmt(e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if let Some(want) = meta.get(CHECKSUM_KEY) {
        let tensors = st.tensors();
        let got =
            checksum(tensors.iter().map(|(n, v)| (n.as_str(), v.dtype().to_string(), v.shape(), v.data())), &meta);
        if &got != want {
            return Err(fmt(format!(
                "checksum mismatch: the file says {want}, its contents give {got} (the file is corrupted or was edited)"
            )));
        }
    }
    Ok((st, meta))
}

/// Tensor `name` of `st` as `F`, checked: present, F32 or F64, of shape `shape`, finite.
fn read_tensor<F: Float>(st: &safetensors::SafeTensors, name: &str, shape: &[usize]) -> Result<Tensor<F>, String> {
    let view = st.tensor(name).map_err(|_| format!("tensor `{name}` is missing"))?;
    if view.shape() != shape {
        return Err(format!("tensor `{name}` has shape {:?}, the model expects {:?}", view.shape(), shape));
    }
    let vals: Vec<f64> = match view.dtype() {
        safetensors::Dtype::F32 => {
            view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
        }
        safetensors::Dtype::F64 => view
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        other => return Err(format!("tensor `{name}` has dtype {other:?}; expected F32 or F64")),
    };
    if let Some(k) = vals.iter().position(|v| !v.is_finite()) {
        return Err(format!("tensor `{name}` element {k} is {} (NaN/Inf weights: a diverged run?)", vals[k]));
    }
    Tensor::from_shape_vec(IxDyn(shape), vals.into_iter().map(F::from_f64c).collect())
        .map_err(|e| format!("tensor `{name}`: {e}"))
}

/// Load a checkpoint written by [`save_checkpoint`] into a model of the same architecture.
/// Nothing in the model changes when the file does not fit: a wrong shape, a missing
/// tensor, a dtype other than F32/F64, a NaN or infinite value (a checkpoint of a
/// diverged run would otherwise load without a word), or a checksum that does not match
/// the contents. Only regular files of at most [`crate::limits::MAX_DATA_FILE_BYTES`] are
/// read.
pub fn load_checkpoint<F: Float>(model: &mut Sequential<F>, path: &Path) -> Result<(), CheckpointError> {
    let bytes = read_checkpoint_file(path)?;
    load_checkpoint_bytes(model, &bytes, path)
}

/// [`load_checkpoint`] on the file's bytes (`path` names it in messages); also the entry
/// point of the checkpoint fuzz target.
#[doc(hidden)]
pub fn load_checkpoint_bytes<F: Float>(
    model: &mut Sequential<F>,
    bytes: &[u8],
    path: &Path,
) -> Result<(), CheckpointError> {
    let p = path.display().to_string();
    let (st, _) = open_checkpoint(bytes, &p)?;
    load_model_tensors(model, &st, &p)
}

/// Check every tensor `model` needs in `st`, then load them all (or nothing).
fn load_model_tensors<F: Float>(
    model: &mut Sequential<F>,
    st: &safetensors::SafeTensors,
    p: &str,
) -> Result<(), CheckpointError> {
    let staged = stage_model_tensors(model, st, p)?;
    commit(model, staged, p)
}

/// Every tensor `model` needs, read from `st` and checked (present, shape, finite).
fn stage_model_tensors<F: Float>(
    model: &Sequential<F>,
    st: &safetensors::SafeTensors,
    p: &str,
) -> Result<Vec<Tensor<F>>, CheckpointError> {
    let fmt = |detail: String| CheckpointError::Format { path: p.to_string(), detail };
    model.named_tensors().into_iter().map(|(name, t)| read_tensor::<F>(st, &name, t.shape()).map_err(fmt)).collect()
}

/// Put tensors of [`stage_model_tensors`] into `model`.
fn commit<F: Float>(model: &mut Sequential<F>, staged: Vec<Tensor<F>>, p: &str) -> Result<(), CheckpointError> {
    let mut it = staged.into_iter();
    model.load_named(|_| it.next()).map_err(|detail| CheckpointError::Format { path: p.to_string(), detail })
}

/// Load a checkpoint into `model` as [`load_checkpoint`] does (the best epoch's tensors) and,
/// when the file was written by [`save_resumable`], return the state to continue training
/// from with [`fit_from`]; `Ok(None)` for a checkpoint without resume state. Every resume
/// tensor is checked like the model's (present, shape, finite) and the JSON state for
/// consistency; nothing in the model changes on an error.
pub fn load_resumable<F: Float>(
    model: &mut Sequential<F>,
    path: &Path,
) -> Result<Option<TrainState<F>>, CheckpointError> {
    let bytes = read_checkpoint_file(path)?;
    load_resumable_bytes(model, &bytes, path)
}

/// [`load_resumable`] on the file's bytes (`path` names it in messages); also the entry
/// point of the resumable-checkpoint fuzz target.
#[doc(hidden)]
pub fn load_resumable_bytes<F: Float>(
    model: &mut Sequential<F>,
    bytes: &[u8],
    path: &Path,
) -> Result<Option<TrainState<F>>, CheckpointError> {
    let p = path.display().to_string();
    let (st, meta) = open_checkpoint(bytes, &p)?;
    let fmt = |detail: String| CheckpointError::Format { path: p.clone(), detail };
    let staged = stage_model_tensors(model, &st, &p)?;
    let state = match meta.get(RESUME_KEY) {
        None => None,
        Some(json) => Some(parse_resume(model, &st, json).map_err(fmt)?),
    };
    commit(model, staged, &p)?;
    Ok(state.map(|mut s| {
        if s.best.is_some() {
            s.best = Some(model.named_tensors().into_iter().map(|(_, t)| t.clone()).collect());
        }
        s
    }))
}

/// The [`TrainState`] of a checkpoint (without `best`, which the caller fills in from the
/// model once loaded): the resume tensors checked against `model`, the JSON under
/// [`RESUME_KEY`] parsed.
fn parse_resume<F: Float>(
    model: &Sequential<F>,
    st: &safetensors::SafeTensors,
    json: &str,
) -> Result<TrainState<F>, String> {
    let bad = |what: &str| format!("{RESUME_KEY}: {what}");
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&format!("not JSON: {e}")))?;
    if v["format"] != 1 {
        return Err(bad(&format!("format {} is not 1 (written by another version of leaky?)", v["format"])));
    }
    let uint = |key: &str| -> Result<usize, String> {
        v[key].as_u64().map(|x| x as usize).ok_or_else(|| bad(&format!("`{key}` is not a non-negative integer")))
    };
    let float = |x: &serde_json::Value, key: &str| -> Result<f64, String> {
        x.as_str().and_then(|s| s.parse::<f64>().ok()).ok_or_else(|| bad(&format!("`{key}` is not a number")))
    };
    let gen = |x: &serde_json::Value, key: &str| -> Result<RngState, String> {
        x.as_str()
            .and_then(RngState::decode)
            .ok_or_else(|| bad(&format!("`{key}` is not a generator state (KEYHEX:STREAM:POS)")))
    };
    let epochs_done = uint("epochs_done")?;
    let named = model.named_tensors();
    let pnames = model.param_names();
    let params = model.params();
    let mut last = Vec::with_capacity(named.len());
    for (n, t) in &named {
        last.push(read_tensor::<F>(st, &format!("{RESUME_PREFIX}last.{n}"), t.shape())?);
    }
    let adam_t = v["adam_t"].as_array().ok_or_else(|| bad("`adam_t` is not a list"))?;
    if adam_t.len() != pnames.len() {
        return Err(bad(&format!("`adam_t` has {} entries, the model has {} parameters", adam_t.len(), pnames.len())));
    }
    // Steps are counted in a usize and Adam's step counters in a u64 as training goes on;
    // counts near their end could only come from an edited file.
    let steps = uint("steps")?;
    if steps as u64 > MAX_RESUME_STEPS {
        return Err(bad(&format!("`steps` = {steps}: more than {MAX_RESUME_STEPS} (MAX_RESUME_STEPS)")));
    }
    let mut slots = Vec::with_capacity(pnames.len());
    for ((n, (_, p)), t) in pnames.iter().zip(&params).zip(adam_t) {
        let shape = p.value.shape();
        let m = read_tensor::<F>(st, &format!("{RESUME_PREFIX}m.{n}"), shape)?;
        let vv = read_tensor::<F>(st, &format!("{RESUME_PREFIX}v.{n}"), shape)?;
        let t = t.as_u64().ok_or_else(|| bad("`adam_t` holds a value that is not a non-negative integer"))?;
        if t > steps as u64 {
            // One Adam step per training step at most (none after a non-finite loss).
            return Err(bad(&format!("`adam_t` holds {t}, more than the {steps} steps taken")));
        }
        slots.push(Slots { m, v: vv, t });
    }
    let mut layer_rngs = model.rng_states();
    let saved = v["layer_rngs"].as_object().ok_or_else(|| bad("`layer_rngs` is not an object"))?;
    for (i, slot) in layer_rngs.iter_mut().enumerate() {
        if slot.is_some() {
            let x =
                saved.get(&i.to_string()).ok_or_else(|| bad(&format!("`layer_rngs` has no entry for layer {i}")))?;
            *slot = Some(gen(x, "layer_rngs")?);
        }
    }
    let rows = v["history"].as_array().ok_or_else(|| bad("`history` is not a list"))?;
    if rows.len() != epochs_done {
        return Err(bad(&format!("`history` has {} epochs, `epochs_done` says {epochs_done}", rows.len())));
    }
    let best_epoch = uint("best_epoch")?;
    if best_epoch >= epochs_done.max(1) {
        return Err(bad(&format!("`best_epoch` {best_epoch} is not one of the {epochs_done} epochs done")));
    }
    let mut history = Vec::with_capacity(rows.len());
    for r in rows {
        let r = r.as_array().filter(|r| r.len() == 7).ok_or_else(|| bad("a `history` row is not 7 values"))?;
        history.push(EpochInfo {
            epoch: r[0].as_u64().ok_or_else(|| bad("a `history` epoch is not an integer"))? as usize,
            train_loss: float(&r[1], "history")?,
            train_acc: float(&r[2], "history")?,
            val_acc: float(&r[3], "history")?,
            val_loss: float(&r[4], "history")?,
            lr: float(&r[5], "history")?,
            seconds: float(&r[6], "history")?,
        });
    }
    Ok(TrainState {
        epochs_done,
        history,
        best_val_acc: float(&v["best_val_acc"], "best_val_acc")?,
        best_val_loss: float(&v["best_val_loss"], "best_val_loss")?,
        best_epoch,
        steps,
        seconds: float(&v["seconds"], "seconds")?,
        best: v["has_best"].as_bool().unwrap_or(false).then(Vec::new),
        last,
        slots,
        shuffle: gen(&v["shuffle_rng"], "shuffle_rng")?,
        layer_rngs,
    })
}

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid checkpoint for this model.
    #[error("{path}: {detail}")]
    Format {
        /// The file.
        path: String,
        /// What does not fit.
        detail: String,
    },
}

/// Mean of `x` over the batch axis for an (N, D) array (helper for observers).
pub fn batch_mean<F: Float>(x: &Array2<F>) -> ndarray::Array1<F> {
    x.mean_axis(Axis(0)).unwrap_or_else(|| ndarray::Array1::zeros(x.ncols()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Activation, MlpSpec};
    use crate::optim::Rule;
    use crate::tensor::Init;

    fn blobs(n: usize, seed: u64) -> Dataset {
        // Three well-separated Gaussian blobs in 2-D.
        let mut r = crate::tensor::rng(seed);
        let centers = [(-3.0, 0.0), (3.0, 0.0), (0.0, 3.0)];
        let noise: Array2<f32> = crate::tensor::randn((n, 2), 0.5, &mut r);
        let y: Vec<usize> = (0..n).map(|i| i % 3).collect();
        let x = Array2::from_shape_fn((n, 2), |(i, j)| {
            let c = centers[y[i]];
            (if j == 0 { c.0 } else { c.1 }) as f32 + noise[[i, j]]
        });
        Dataset { name: "blobs".into(), x, y, classes: 3, feature_shape: vec![2] }
    }

    fn spec() -> MlpSpec {
        MlpSpec {
            input_dim: 2,
            hidden: vec![16],
            output_dim: 3,
            activation: Activation::Relu,
            init: Init::He,
            bias_init: 0.0,
            batchnorm: false,
            dropout_keep: None,
        }
    }

    #[test]
    fn learns_blobs_and_is_deterministic() {
        let data = blobs(300, 1);
        let (tr, va) = data.split(0.2, 0);
        let cfg = TrainConfig {
            epochs: 5,
            batch_size: 32,
            update: UpdateConfig::new(Rule::Adam, 1e-2),
            ..Default::default()
        };
        let mut m1 = spec().build::<f32>(0);
        let r1 = fit(&mut m1, &tr, &va, &cfg, &mut NoObserver);
        assert!(r1.best_val_acc > 0.95, "{:?}", r1.history);
        let mut m2 = spec().build::<f32>(0);
        let r2 = fit(&mut m2, &tr, &va, &cfg, &mut NoObserver);
        let l1: Vec<f64> = r1.history.iter().map(|h| h.train_loss).collect();
        let l2: Vec<f64> = r2.history.iter().map(|h| h.train_loss).collect();
        assert_eq!(l1, l2);
    }

    #[test]
    fn keeps_the_best_epoch_parameters() {
        /// Snapshots every epoch's parameters and validation accuracy.
        struct Snapshots(Vec<(f64, Vec<Tensor<f64>>)>);
        impl Observer<f64> for Snapshots {
            fn on_epoch(&mut self, info: &EpochInfo, model: &Sequential<f64>) {
                self.0.push((info.val_acc, model.named_tensors().into_iter().map(|(_, t)| t.clone()).collect()));
            }
        }
        // A learning rate large enough that validation accuracy goes up and down, so that the
        // best epoch is not the last one (checked below: otherwise this test proves nothing).
        let data = crate::data::spiral(60, 3, 0.3, 0);
        let (tr, va) = data.split(0.3, 0);
        let cfg =
            TrainConfig { epochs: 12, batch_size: 16, update: UpdateConfig::new(Rule::Sgd, 1.0), ..Default::default() };
        let mut m = spec().build::<f64>(3);
        let mut snaps = Snapshots(Vec::new());
        let r = fit(&mut m, &tr, &va, &cfg, &mut snaps);
        let accs: Vec<f64> = snaps.0.iter().map(|s| s.0).collect();
        assert!(r.best_epoch + 1 < accs.len(), "the best epoch must not be the last here: {accs:?}");
        assert!(accs[r.best_epoch] > *accs.last().unwrap(), "{accs:?}");
        let kept: Vec<Tensor<f64>> = m.named_tensors().into_iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(kept, snaps.0[r.best_epoch].1, "the model must hold the best epoch's parameters");
        let (acc, _) = evaluate(&mut m, &va, Loss::Softmax);
        assert_eq!(acc, r.best_val_acc);
    }

    #[test]
    fn fit_seq_keeps_the_lowest_validation_loss_parameters() {
        use crate::nn::seq::{Cell, SeqSpec};
        /// Snapshots every epoch's parameters and validation loss.
        struct Snapshots(Vec<(f64, Vec<Tensor<f64>>)>);
        impl SeqObserver<f64> for Snapshots {
            fn on_epoch(&mut self, info: &EpochInfo, model: &SeqModel<f64>) {
                self.0.push((info.val_loss, model.params().iter().map(|p| p.value.clone()).collect()));
            }
        }
        // SGD at a learning rate large enough that the validation loss goes up and down, so
        // that the best epoch is not the last one (checked below).
        let data = crate::data::seq::adding(200, 8, 0);
        let (tr, va) = data.split(0.3, 0);
        let cfg = TrainConfig {
            epochs: 10,
            batch_size: 8,
            update: UpdateConfig::new(Rule::Sgd, 0.8),
            clip_grad_norm: 5.0,
            loss: Loss::Mse,
            ..Default::default()
        };
        let mut m = SeqModel::<f64>::new(SeqSpec::for_data(&tr, Cell::Rnn, 8, Init::Xavier, 0.0), 0);
        let mut snaps = Snapshots(Vec::new());
        let r = fit_seq(&mut m, &tr, &va, &cfg, &mut snaps);
        let losses: Vec<f64> = snaps.0.iter().map(|s| s.0).collect();
        assert!(r.best_epoch + 1 < losses.len(), "the best epoch must not be the last here: {losses:?}");
        let lowest = losses.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(losses[r.best_epoch], lowest, "{losses:?}");
        assert_eq!(r.best_val_loss, lowest);
        let kept: Vec<Tensor<f64>> = m.params().iter().map(|p| p.value.clone()).collect();
        assert_eq!(kept, snaps.0[r.best_epoch].1, "the model must hold the best epoch's parameters");
    }

    #[test]
    fn should_stop_ends_training_after_the_current_step() {
        /// Asks to stop once it has seen `after` steps.
        struct StopAfter {
            after: usize,
            steps: usize,
            epochs: usize,
        }
        impl Observer<f32> for StopAfter {
            fn on_step(&mut self, _info: &StepInfo, _model: &Sequential<f32>) {
                self.steps += 1;
            }
            fn on_epoch(&mut self, _info: &EpochInfo, _model: &Sequential<f32>) {
                self.epochs += 1;
            }
            fn should_stop(&self) -> bool {
                self.steps >= self.after
            }
        }
        // 90 examples in batches of 30: 3 steps an epoch; stopping after step 5 ends epoch 2
        // early and runs no third epoch.
        let data = blobs(90, 3);
        let cfg = TrainConfig { epochs: 4, batch_size: 30, ..Default::default() };
        let mut m = spec().build::<f32>(0);
        let mut obs = StopAfter { after: 5, steps: 0, epochs: 0 };
        let r = fit(&mut m, &data, &data.subset(&[]), &cfg, &mut obs);
        assert_eq!((r.steps, obs.steps, obs.epochs, r.history.len()), (5, 5, 2, 2));
    }

    #[test]
    fn divergence_is_reported_not_hidden() {
        let data = blobs(90, 3);
        let cfg =
            TrainConfig { epochs: 3, batch_size: 30, update: UpdateConfig::new(Rule::Sgd, 1e30), ..Default::default() };
        let mut m = spec().build::<f32>(0);
        let r = fit(&mut m, &data, &data.subset(&[]), &cfg, &mut NoObserver);
        assert!(r.diverged_at_step.is_some(), "{r:?}");
    }

    #[test]
    fn checkpoint_round_trip_and_bad_files() {
        let dir = std::env::temp_dir().join(format!("leaky-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.safetensors");
        let m = spec().build::<f32>(5);
        save_checkpoint(&m, &path, HashMap::from([("note".to_string(), "test".to_string())])).unwrap();
        let mut m2 = spec().build::<f32>(6);
        load_checkpoint(&mut m2, &path).unwrap();
        for ((_, a), (_, b)) in m.named_tensors().iter().zip(m2.named_tensors().iter()) {
            assert_eq!(a, b);
        }
        let mut wider = MlpSpec { hidden: vec![8], ..spec() }.build::<f32>(0);
        let e = load_checkpoint(&mut wider, &path).unwrap_err().to_string();
        assert!(e.contains("shape") && e.contains("m.safetensors"), "{e}");
        // NaN weights are refused, and the model is left as it was.
        let mut bad = spec().build::<f32>(5);
        bad.params_mut()[0].value[[0, 0]] = f32::NAN;
        save_checkpoint(&bad, &dir.join("nan.safetensors"), HashMap::new()).unwrap();
        let before: Vec<_> = m2.named_tensors().iter().map(|(_, t)| (*t).clone()).collect();
        let e = load_checkpoint(&mut m2, &dir.join("nan.safetensors")).unwrap_err().to_string();
        assert!(e.contains("nan.safetensors") && e.contains("`0.affine.W` element 0 is NaN"), "{e}");
        let after: Vec<_> = m2.named_tensors().iter().map(|(_, t)| (*t).clone()).collect();
        assert_eq!(before, after);
        std::fs::write(dir.join("junk.safetensors"), b"not a checkpoint").unwrap();
        let e = load_checkpoint(&mut m2, &dir.join("junk.safetensors")).unwrap_err().to_string();
        assert!(e.contains("junk.safetensors"), "{e}");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }
    /// Everything of an epoch but its wall-clock seconds.
    fn no_time(h: &[EpochInfo]) -> Vec<[f64; 6]> {
        h.iter().map(|e| [e.epoch as f64, e.train_loss, e.train_acc, e.val_acc, e.val_loss, e.lr]).collect()
    }

    fn bits(t: &[(String, &Tensor<f32>)]) -> Vec<(String, Vec<u32>)> {
        t.iter().map(|(n, t)| (n.clone(), t.iter().map(|v| v.to_bits()).collect())).collect()
    }

    #[test]
    fn ten_epochs_equal_five_saved_and_five_resumed() {
        let dir = std::env::temp_dir().join(format!("leaky-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = blobs(240, 7);
        let (tr, va) = data.split(0.25, 0);
        // Dropout draws masks from the layer's own generator, Adam keeps moments and a step
        // counter, lr decays by epoch, the shuffle order comes from the seed: all must resume.
        let spec = MlpSpec { hidden: vec![16, 16], dropout_keep: Some(0.7), ..spec() };
        for rule in [Rule::Adam, Rule::Momentum] {
            let cfg = TrainConfig {
                epochs: 10,
                batch_size: 16,
                update: UpdateConfig::new(rule, 2e-2),
                lr_decay: 0.9,
                weight_decay: 1e-3,
                seed: 3,
                ..Default::default()
            };
            let mut whole = spec.build::<f32>(11);
            let (r10, s10) = fit_from(&mut whole, &tr, &va, &cfg, &mut NoObserver, None);

            let mut first = spec.build::<f32>(11);
            let (r5, s5) = fit_from(&mut first, &tr, &va, &TrainConfig { epochs: 5, ..cfg }, &mut NoObserver, None);
            assert_eq!(r5.history.len(), 5);
            let path = dir.join(format!("{}.safetensors", rule.name()));
            save_resumable(&first, &s5, &path, HashMap::new()).unwrap();
            // A fresh model of the same spec but another init seed: everything must come from the file.
            let mut resumed = spec.build::<f32>(99);
            let state = load_resumable(&mut resumed, &path).unwrap().expect("a resumable checkpoint");
            assert_eq!(bits(&resumed.named_tensors()), bits(&first.named_tensors()), "the best epoch's tensors");
            assert_eq!(state.epochs_done, 5);
            let (r, s) = fit_from(&mut resumed, &tr, &va, &cfg, &mut NoObserver, Some(state));

            assert_eq!(bits(&resumed.named_tensors()), bits(&whole.named_tensors()), "{rule:?}: best parameters");
            let last = |s: &TrainState<f32>| {
                s.last.iter().map(|t| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>()).collect::<Vec<_>>()
            };
            assert_eq!(last(&s), last(&s10), "{rule:?}: last epoch's parameters");
            assert_eq!(no_time(&r.history), no_time(&r10.history), "{rule:?}: history");
            assert_eq!(
                (r.best_val_acc, r.best_epoch, r.steps, r.best_val_loss.to_bits()),
                (r10.best_val_acc, r10.best_epoch, r10.steps, r10.best_val_loss.to_bits())
            );
            assert_eq!(
                s.slots.iter().map(|x| x.t).collect::<Vec<_>>(),
                s10.slots.iter().map(|x| x.t).collect::<Vec<_>>()
            );
            assert_eq!((s.shuffle, &s.layer_rngs), (s10.shuffle, &s10.layer_rngs));
            assert!(s.layer_rngs.iter().any(|p| p.is_some()), "the model must have dropout");
            // Without the saved generator positions the run would differ: the test can fail.
            let mut forgetful = spec.build::<f32>(99);
            let mut state = load_resumable(&mut forgetful, &path).unwrap().unwrap();
            state.layer_rngs = spec.build::<f32>(11).rng_states();
            let (_, f) = fit_from(&mut forgetful, &tr, &va, &cfg, &mut NoObserver, Some(state));
            assert_ne!(last(&f), last(&s10), "{rule:?}: restarting dropout's generator must change the run");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn checksum_catches_corruption_and_old_files_still_load() {
        let dir = std::env::temp_dir().join(format!("leaky-crc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.safetensors");
        let m = spec().build::<f32>(5);
        save_checkpoint(&m, &path, HashMap::new()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert!(meta.metadata().as_ref().unwrap()[CHECKSUM_KEY].starts_with("crc32:"));
        // Flip one bit of the last weight: still finite, still the right shape.
        let n = bytes.len();
        bytes[n - 2] ^= 0x01;
        let bad = dir.join("flipped.safetensors");
        std::fs::write(&bad, &bytes).unwrap();
        let mut m2 = spec().build::<f32>(6);
        let e = load_checkpoint(&mut m2, &bad).unwrap_err().to_string();
        assert!(e.contains("flipped.safetensors") && e.contains("checksum mismatch"), "{e}");
        // A file without a checksum (written before checksums existed) loads.
        use safetensors::tensor::TensorView;
        let named = m.named_tensors();
        let raw: Vec<(String, Vec<u8>, Vec<usize>)> = named
            .iter()
            .map(|(n, t)| (n.clone(), t.iter().flat_map(|v| v.to_le_bytes()).collect(), t.shape().to_vec()))
            .collect();
        let views: Vec<(String, TensorView)> = raw
            .iter()
            .map(|(n, b, s)| (n.clone(), TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap()))
            .collect();
        let old = dir.join("old.safetensors");
        std::fs::write(&old, safetensors::serialize(views, None).unwrap()).unwrap();
        load_checkpoint(&mut m2, &old).unwrap();
        assert_eq!(bits(&m2.named_tensors()), bits(&m.named_tensors()));
        // A plain checkpoint has no resume state.
        assert!(load_resumable(&mut m2, &path).unwrap().is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}
