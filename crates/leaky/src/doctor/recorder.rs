//! The recording half of the doctor: a [`Doctor`] plugs into the trainer as an
//! [`Observer`] (MLPs) or a [`SeqObserver`] (recurrent models) and fills
//! [`RecordedStats`]; [`Doctor::diagnose`] then runs the pure detectors.
//!
//! What it costs: on sampled steps (every `sample_every`-th, and the first) each layer's
//! output is streamed once through an [`ActivationAccumulator`] and each input gradient's
//! squared norm is summed; parameters are snapshotted to measure the real update at the
//! next step. On every other step the probe only scans the loss for NaN/Inf. No tensor is
//! copied on the hot path except the sampled parameter snapshots.

use super::stats::{
    ActivationAccumulator, BatchNormStats, BpttStats, DeadUnitPass, EpochStats, FeatureMoments, FlatOp, FlatOpStats,
    GateStats, GlobalNormSample, InitLoss, InputAccumulator, LayerStats, NonFinite, ParamStats, Pass, RecordedStats,
    ACTIVATION_SAMPLE_VALUES,
};
use super::Finding;
use crate::data::Dataset;
use crate::losses::Loss;
use crate::nn::seq::SeqModel;
use crate::nn::{Layer, Mode, Probe, Sequential};
use crate::optim::global_norm;
use crate::tensor::{Float, Tensor};
use crate::train::{EpochInfo, Observer, SeqObserver, StepInfo, TrainConfig};
use ndarray::ArrayView2;

/// The recurrent doctor decomposes Wh (spectral radius and largest singular value) on the
/// first sampled step and then on every this-many-th sample (every 100 steps at the default
/// sampling). Our choice: the decomposition of a 128x128 Wh costs about one RNN training
/// step (four for an LSTM's gate blocks), and the spectrum moves slowly at the learning
/// rates that train; the per-time-step gradient norms, which the time-axis detectors judge,
/// are still recorded on every sample.
pub const SPECTRUM_EVERY_SAMPLES: usize = 10;

/// How often the doctor looks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DoctorConfig {
    /// Record layer and parameter statistics every this many steps (and at step 0).
    pub sample_every: usize,
}

impl Default for DoctorConfig {
    /// Every 10th step: the default whose overhead BENCHMARKS.md measures.
    fn default() -> Self {
        DoctorConfig { sample_every: 10 }
    }
}

/// Watches training and records what the detectors need.
pub struct Doctor {
    /// The sampling policy.
    pub config: DoctorConfig,
    /// Everything recorded so far.
    pub stats: RecordedStats,
    loss: Loss,
    classes: usize,
    step: usize,
    sampling: bool,
    layer_stats: Vec<Option<LayerStats>>,
    /// The step of the last parameter snapshot, if one is pending.
    snapshot_step: Option<usize>,
    /// Parameter values at `snapshot_step` (a `Vec<Vec<F>>` for the model's float type
    /// `F`, one buffer per parameter, reused between sampled steps: no allocation once the
    /// sizes are known).
    snapshot: Option<Box<dyn std::any::Any>>,
    /// Loss of every step, for reports.
    pub losses: Vec<f64>,
    /// Layers the last forward pass went through (set by `after_forward`).
    forward_layers: usize,
    init_loss_scale: f64,
}

impl Doctor {
    /// A doctor for a classifier trained with `loss` over `classes` classes (for the
    /// initial-loss and not-learning checks; 0 when not a classifier). The learning rate is
    /// read from the first step; [`Doctor::for_training`] also knows the optimiser, the
    /// clipping and the planned epochs, and [`RunInfo::settings`](super::RunInfo) in
    /// `stats.run` can be completed with the experiment's other current values.
    pub fn new(config: DoctorConfig, loss: Loss, classes: usize) -> Self {
        let mut stats = RecordedStats::default();
        stats.run.loss = Some(loss.name().to_string());
        stats.run.classes = classes;
        stats.run.settings.insert("train.loss".into(), loss.name().into());
        Doctor {
            config,
            stats,
            loss,
            classes,
            step: 0,
            sampling: false,
            layer_stats: Vec::new(),
            snapshot_step: None,
            snapshot: None,
            losses: Vec::new(),
            forward_layers: 0,
            init_loss_scale: 1.0,
        }
    }

    /// A doctor for a run trained with `cfg` over `classes` classes (0 when not a
    /// classifier): records the loss, learning rate, optimiser, clipping and planned epochs
    /// in `stats.run`.
    pub fn for_training(config: DoctorConfig, cfg: &TrainConfig, classes: usize) -> Self {
        let mut d = Doctor::new(config, cfg.loss, classes);
        let run = &mut d.stats.run;
        run.epochs = Some(cfg.epochs);
        run.settings.insert("train.lr".into(), cfg.update.lr.into());
        run.settings.insert("train.optimizer".into(), cfg.update.rule.name().into());
        run.settings.insert("train.clip_grad_norm".into(), cfg.clip_grad_norm.into());
        d
    }

    /// Scale the expected initial loss: a temporal softmax sums ln C over the counted
    /// steps of a sequence, so its expectation is `steps * ln C` (pass the mean number of
    /// counted steps per sequence).
    pub fn set_init_loss_scale(&mut self, steps: f64) {
        self.init_loss_scale = steps;
    }

    fn sampled(&self, step: usize) -> bool {
        step % self.config.sample_every.max(1) == 0
    }

    /// Whether `on_step` must read the parameters: on sampled steps, and on the step after
    /// one (to measure the update the optimiser applied). Other steps only record the loss.
    fn wants_params(&self, step: usize) -> bool {
        self.sampled(step) || self.snapshot_step.is_some_and(|s| s + 1 == step)
    }

    /// Record the input features' scale (before training): (N, D) rows of `data`.
    pub fn observe_input(&mut self, data: &Dataset) {
        let mut acc = InputAccumulator::new(data.dim());
        for row in data.x.outer_iter() {
            acc.push_row(row.iter().map(|&v| v as f64));
        }
        self.stats.input = Some(acc.finish());
    }

    /// A full pass over `data` in eval mode counting, for every ReLU layer, on how many
    /// examples each unit fired; a unit that never fired is dead.
    pub fn dead_unit_pass<F: Float>(&mut self, model: &mut Sequential<F>, data: &Dataset) {
        let mut pass = DeadPassProbe { step: self.step, passes: Vec::new() };
        let idx: Vec<usize> = (0..data.len()).collect();
        for chunk in idx.chunks(512) {
            let (x, _) = crate::train::batch::<F>(data, chunk);
            model.forward_probed(x, Mode::Eval, &mut pass);
        }
        self.stats.dead_units.extend(pass.passes);
    }

    /// [`Doctor::dead_unit_pass`] over the rows of `inputs`, (N, D) with D the model's input
    /// width, in batches of 512: for models whose examples are not a [`Dataset`], e.g. the
    /// DQN's Q-network over the states of its replay buffer.
    pub fn dead_unit_pass_inputs<F: Float>(&mut self, model: &mut Sequential<F>, inputs: ArrayView2<f64>) {
        let mut pass = DeadPassProbe { step: self.step, passes: Vec::new() };
        let n = inputs.nrows();
        for start in (0..n).step_by(512) {
            let rows = inputs.slice(ndarray::s![start..(start + 512).min(n), ..]);
            let x = rows.mapv(F::from_f64c).into_dyn();
            model.forward_probed(x, Mode::Eval, &mut pass);
        }
        self.stats.dead_units.extend(pass.passes);
    }

    /// A full pass over `data` in eval mode measuring, for every batch norm layer
    /// (`batchnorm`, `spatial_batchnorm`), the per-feature mean and variance of its input
    /// over every example, next to its running statistics ([`BatchNormStats`], for the
    /// `batchnorm_stats` detector). Eval mode, because that is how the model is used: a
    /// layer above a mis-normalising one sees the inputs it will see in use. Nothing is
    /// recorded (and no pass made) for a model without batch norm. `eps` is the layers'
    /// (1e-5 in leaky and PyTorch).
    pub fn batchnorm_pass<F: Float>(&mut self, model: &mut Sequential<F>, data: &Dataset, eps: f64) {
        let targets: Vec<(usize, usize)> = model
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l.kind(), "batchnorm" | "spatial_batchnorm"))
            .map(|(i, l)| (i, l.params().first().map(|p| p.value.len()).unwrap_or(0)))
            .collect();
        if targets.is_empty() {
            return;
        }
        let mut probe = BnPassProbe { moments: targets.iter().map(|&(i, d)| (i, FeatureMoments::new(d))).collect() };
        let idx: Vec<usize> = (0..data.len()).collect();
        for chunk in idx.chunks(512) {
            let (x, _) = crate::train::batch::<F>(data, chunk);
            // A batch norm first in the stack normalises the data itself.
            if let Some((_, m)) = probe.moments.iter_mut().find(|(i, _)| *i == 0) {
                m.push(&x);
            }
            model.forward_probed(x, Mode::Eval, &mut probe);
        }
        for (layer, m) in probe.moments {
            let l = &model.layers[layer];
            let buffer = |name: &str| -> Vec<f64> {
                l.buffers()
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, t)| t.iter().map(|v| v.to_f64c()).collect())
                    .unwrap_or_default()
            };
            self.stats.batchnorm.push(BatchNormStats {
                layer,
                kind: l.kind().to_string(),
                examples: m.examples(),
                values_per_feature: m.count(),
                data_mean: m.mean().to_vec(),
                data_var: m.var(),
                running_mean: buffer("running_mean"),
                running_var: buffer("running_var"),
                eps,
                batches_tracked: None,
            });
        }
    }

    /// Record one completed epoch (the trainer's `EpochInfo`, epochs counted from 1 in the
    /// record).
    pub fn record_epoch(&mut self, info: &EpochInfo) {
        self.stats.epochs.push(EpochStats {
            epoch: info.epoch + 1,
            train_loss: info.train_loss,
            train_acc: info.train_acc,
            val_loss: info.val_loss,
            val_acc: info.val_acc,
        });
    }

    /// Run every detector on what was recorded.
    pub fn diagnose(&self) -> Vec<Finding> {
        super::diagnose(&self.stats)
    }

    fn record_params<'a, F: Float + 'a>(
        &mut self,
        info: &StepInfo,
        params: impl Iterator<Item = (usize, &'a str, &'a crate::nn::Param<F>)>,
    ) {
        let params: Vec<_> = params.collect();
        // The real update of the last sampled step (weights now minus weights then; the
        // difference is taken in F, where it is exact for an update much smaller than the
        // weight, then squared and summed in f64).
        let snapshot = self.snapshot.as_ref().and_then(|b| b.downcast_ref::<Vec<Vec<F>>>());
        let updates: Option<Vec<f64>> = match (self.snapshot_step, snapshot) {
            (Some(s), Some(old)) if s + 1 == info.step && old.len() == params.len() => Some(
                params
                    .iter()
                    .zip(old)
                    .map(|((_, _, p), o)| with_slice(&p.value, |v| sum_sq_diff(v, o).sqrt()))
                    .collect(),
            ),
            _ => None,
        };
        if let Some(u) = updates {
            let n = self.stats.params.len();
            let start = n.saturating_sub(u.len());
            for (ps, upd) in self.stats.params[start..].iter_mut().zip(u) {
                ps.update_norm = Some(upd);
            }
            self.snapshot_step = None;
        }
        if !self.sampled(info.step) {
            return;
        }
        let mut after_sq = 0.0;
        for (layer, kind, p) in &params {
            let norm = |t: &Tensor<F>| global_norm(std::iter::once(t));
            let grad_norm = norm(&p.grad);
            after_sq += grad_norm * grad_norm;
            self.stats.params.push(ParamStats {
                layer: *layer,
                layer_kind: kind.to_string(),
                name: p.name.to_string(),
                step: info.step,
                is_weight: p.decay,
                weight_norm: norm(&p.value),
                grad_norm,
                lr: info.lr,
                update_norm: None,
            });
        }
        self.stats.global_norms.push(GlobalNormSample {
            step: info.step,
            before: info.grad_norm,
            after: after_sq.sqrt(),
        });
        // The snapshot keeps the model's own float type (a copy, no conversion); it is
        // replaced if a model of another type is watched by the same doctor.
        let boxed = self.snapshot.get_or_insert_with(|| Box::new(Vec::<Vec<F>>::new()));
        if !boxed.is::<Vec<Vec<F>>>() {
            *boxed = Box::new(Vec::<Vec<F>>::new());
        }
        let snap = boxed.downcast_mut::<Vec<Vec<F>>>().expect("the snapshot was just typed");
        snap.resize_with(params.len(), Vec::new);
        for (buf, (_, _, p)) in snap.iter_mut().zip(&params) {
            buf.clear();
            with_slice(&p.value, |v| buf.extend_from_slice(v));
        }
        self.snapshot_step = Some(info.step);
    }

    fn record_loss(&mut self, info: &StepInfo) {
        self.losses.push(info.loss);
        if self.stats.losses.len() <= info.step {
            self.stats.losses.resize(info.step, f64::NAN);
            self.stats.losses.push(info.loss);
        } else {
            self.stats.losses[info.step] = info.loss;
        }
        if info.step == 0 && info.lr.is_finite() {
            self.stats.run.settings.entry("train.lr".into()).or_insert_with(|| info.lr.into());
        }
        if info.step == 0 {
            self.stats.init_loss = match self.loss {
                Loss::Softmax => {
                    let mut il = InitLoss::softmax(info.loss, self.classes);
                    il.expected *= self.init_loss_scale;
                    Some(il)
                }
                Loss::Svm => Some(InitLoss::svm(info.loss, self.classes)),
                _ => None,
            };
        }
        if !info.loss.is_finite() {
            self.stats.record_non_finite(NonFinite {
                step: info.step,
                pass: Pass::Forward,
                layer_index: None,
                layer_kind: "loss".into(),
                op: self.loss.name().into(),
                nan_count: u64::from(info.loss.is_nan()),
                inf_count: u64::from(info.loss.is_infinite()),
            });
        }
    }
}

/// sum((a - b)^2) over two slices of equal length, the difference taken in `F` and the
/// squares summed in f64 over eight independent partial sums (so the loop vectorises).
fn sum_sq_diff<F: Float>(a: &[F], b: &[F]) -> f64 {
    assert_eq!(a.len(), b.len(), "snapshot and parameter differ in size");
    let mut lanes = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| (x - y).to_f64c().powi(2)).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            let d = (x[k] - y[k]).to_f64c();
            lanes[k] += d * d;
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// Call `f` on the elements of `t` in memory order (a copy only for a non-contiguous view).
fn with_slice<F: Float, R>(t: &Tensor<F>, f: impl FnOnce(&[F]) -> R) -> R {
    match t.as_slice_memory_order() {
        Some(s) => f(s),
        None => f(t.as_standard_layout().as_slice().expect("standard layout")),
    }
}

impl Doctor {
    /// Record the first NaN/Inf: which layer, op and pass produced `t`.
    fn scan_finite<F: Float>(&mut self, pass: Pass, index: usize, layer: &dyn Layer<F>, t: &Tensor<F>) {
        if self.stats.non_finite.is_some() {
            return;
        }
        if let Some((nan, inf)) = NonFinite::count(t) {
            self.stats.record_non_finite(NonFinite {
                step: self.step,
                pass,
                layer_index: Some(index),
                layer_kind: layer.kind().into(),
                op: layer.describe(),
                nan_count: nan,
                inf_count: inf,
            });
        }
    }
}

struct DeadPassProbe {
    step: usize,
    passes: Vec<DeadUnitPass>,
}

impl<F: Float> Probe<F> for DeadPassProbe {
    fn after_forward(&mut self, index: usize, layer: &dyn Layer<F>, out: &Tensor<F>) {
        if layer.kind() != "relu" {
            return;
        }
        let channels = out.ndim() == 4;
        let units =
            if channels { out.shape()[1] } else { out.len() / out.shape().first().copied().unwrap_or(1).max(1) };
        let pass = match self.passes.iter_mut().position(|p| p.layer == index) {
            Some(i) => &mut self.passes[i],
            None => {
                self.passes.push(DeadUnitPass::new(index, "relu", self.step, units));
                self.passes.last_mut().expect("just pushed")
            }
        };
        if channels {
            pass.observe_channels(out);
        } else {
            pass.observe(out);
        }
    }
}

/// Feeds each batch norm layer's input (the output of the layer below it) to its moments.
struct BnPassProbe {
    /// (batch norm layer index, moments of its input).
    moments: Vec<(usize, FeatureMoments)>,
}

impl<F: Float> Probe<F> for BnPassProbe {
    fn after_forward(&mut self, index: usize, _layer: &dyn Layer<F>, out: &Tensor<F>) {
        if let Some((_, m)) = self.moments.iter_mut().find(|(i, _)| *i == index + 1) {
            m.push(out);
        }
    }
}

impl<F: Float> Probe<F> for Doctor {
    /// Only sampled steps record layer 0's input gradient; on the others the trainer may
    /// skip computing it (dLoss/d(data) feeds no update, so a NaN that first appeared there
    /// could not reach the parameters).
    fn wants_input_grad(&self) -> bool {
        self.sampling
    }

    fn after_forward(&mut self, index: usize, layer: &dyn Layer<F>, out: &Tensor<F>) {
        // The last call of the forward pass leaves the number of layers here.
        self.forward_layers = index + 1;
        // A layer that keeps finite values finite gets its input from a scanned layer (the
        // one below, or by induction the first non-preserving one below it): nothing new to
        // find in its output. Layer 0's input is the data, which the probe does not see.
        if !(layer.preserves_finite() && index > 0) {
            self.scan_finite(Pass::Forward, index, layer, out);
        }
        if !self.sampling {
            return;
        }
        if self.layer_stats.len() <= index {
            self.layer_stats.resize(index + 1, None);
        }
        let mut acc = ActivationAccumulator::new(layer.kind());
        acc.push_rows(out, ACTIVATION_SAMPLE_VALUES);
        self.layer_stats[index] = Some(acc.finish(index, self.step));
    }

    /// A loss with flat regions (`clipped_mse`: its gradient is exactly 0 wherever the clip
    /// is active) is a flat op: on sampled steps the share of output gradients that are
    /// exactly 0 is recorded for the `zero_gradient` detector. Losses whose gradient is 0
    /// only where their loss is 0 (softmax never; svm, mse, huber at a perfect fit) are not.
    fn after_loss(&mut self, loss: f64, dscores: &Tensor<F>) {
        if !self.sampling || self.loss != Loss::ClippedMse {
            return;
        }
        let zeroed = with_slice(dscores, |s| s.iter().filter(|v| **v == F::zero()).count()) as u64;
        self.stats.flat_ops.push(FlatOpStats {
            op: FlatOp::Clip,
            where_: format!("loss ({})", self.loss.name()),
            rl: false,
            step: self.step,
            zeroed,
            total: dscores.len() as u64,
            loss,
        });
    }

    fn after_backward(&mut self, index: usize, layer: &dyn Layer<F>, dx: &Tensor<F>) {
        // Backward: `dout` of layer i is the scanned `dx` of layer i + 1, except for the last
        // layer, whose `dout` comes from the loss.
        if !(layer.preserves_finite() && index + 1 < self.forward_layers) {
            self.scan_finite(Pass::Backward, index, layer, dx);
        }
        if !self.sampling {
            return;
        }
        if let Some(Some(ls)) = self.layer_stats.get_mut(index) {
            ls.record_grad_in(dx);
        }
        if index == 0 {
            // The backward pass ends at layer 0: this step's layer records are complete.
            self.stats.layers.extend(self.layer_stats.drain(..).flatten());
        }
    }
}

impl<F: Float> Observer<F> for Doctor {
    fn on_start(&mut self, _model: &Sequential<F>, train: &Dataset) {
        self.observe_input(train);
    }

    fn probe(&mut self, step: usize) -> Option<&mut dyn Probe<F>> {
        self.step = step;
        self.sampling = self.sampled(step);
        Some(self)
    }

    fn on_step(&mut self, info: &StepInfo, model: &Sequential<F>) {
        self.record_loss(info);
        if !self.wants_params(info.step) {
            return;
        }
        let kinds: Vec<&'static str> = model.layers.iter().map(|l| l.kind()).collect();
        self.record_params(info, model.params().into_iter().map(|(i, p)| (i, kinds[i], p)));
    }

    fn on_epoch(&mut self, info: &EpochInfo, _model: &Sequential<F>) {
        self.record_epoch(info);
    }
}

/// The model-listing index of a sequence model's recurrent layer: 1 after an embedding,
/// else 0 (the listing is embedding, recurrent layer, head).
pub fn seq_layer_index<F: Float>(model: &SeqModel<F>) -> usize {
    usize::from(model.spec.vocab.is_some())
}

impl<F: Float> SeqObserver<F> for Doctor {
    fn on_step(&mut self, info: &StepInfo, model: &SeqModel<F>) {
        self.step = info.step;
        self.record_loss(info);
        if !self.wants_params(info.step) {
            return;
        }
        let kind = model.spec.cell.name();
        let rec = seq_layer_index(model);
        // Parameters by the listing: the embedding, the recurrent layer, the head.
        let place = |name: &str| match name {
            "W_embed" => (0, "embedding"),
            "W_out" | "b_out" => (rec + 1, "affine"),
            _ => (rec, kind),
        };
        self.record_params(
            info,
            model.params().into_iter().map(|p| {
                let (layer, k) = place(p.name);
                (layer, k, p)
            }),
        );
        if self.sampled(info.step) {
            for g in model.gate_saturation() {
                self.stats.gates.push(GateStats {
                    layer: rec,
                    cell: kind.into(),
                    gate: g.gate.into(),
                    activation: g.activation.into(),
                    step: info.step,
                    count: g.count.count,
                    saturated_fraction: g.count.fraction(),
                    mean_local_grad: g.count.mean_local_grad(),
                });
            }
            // Wh's Schur form and SVD cost more than a training step (a 128x128 RNN: about
            // one step; an LSTM: four blocks): measured on the first sample and then every
            // SPECTRUM_EVERY_SAMPLES-th, each sample carrying the latest measurement and
            // its step.
            let k = self.stats.bptt.len();
            let spectrum = match self.stats.bptt.last() {
                Some(last) if k % SPECTRUM_EVERY_SAMPLES != 0 => {
                    (last.whh_spectral_radius, last.whh_largest_singular, last.whh_spectrum_step)
                }
                _ => {
                    let (radius, sigma) = model.whh_spectrum();
                    (Some(radius), Some(sigma), Some(info.step))
                }
            };
            self.stats.bptt.push(BpttStats {
                layer: rec,
                kind: kind.into(),
                step: info.step,
                norms_per_t: model.bptt_norms().to_vec(),
                whh_spectral_radius: spectrum.0,
                whh_largest_singular: spectrum.1,
                whh_spectrum_step: spectrum.2,
            });
        }
    }

    fn on_epoch(&mut self, info: &EpochInfo, _model: &SeqModel<F>) {
        self.record_epoch(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Activation, MlpSpec};
    use crate::tensor::Init;
    use ndarray::Array2;

    /// A ReLU MLP 4 -> hidden -> 2 with He init and every bias at `bias_init`.
    fn relu_mlp(hidden: Vec<usize>, bias_init: f64) -> MlpSpec {
        MlpSpec {
            input_dim: 4,
            hidden,
            output_dim: 2,
            activation: Activation::Relu,
            init: Init::He,
            bias_init,
            batchnorm: false,
            dropout_keep: None,
        }
    }

    fn blobs() -> Dataset {
        let x = Array2::from_shape_fn((200, 4), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0 + (i % 2) as f32);
        Dataset { name: "t".into(), x, y: (0..200).map(|i| i % 2).collect(), classes: 2, feature_shape: vec![4] }
    }

    /// The always-on scan skips layers that keep finite values finite, but still finds the
    /// first NaN/Inf where it arises: in the forward pass at the affine layer whose weights
    /// overflow (not at the ReLU after it), and in the backward pass at the last layer even
    /// when that layer is an activation (its `dout` comes from the loss, not a scanned layer).
    #[test]
    fn first_non_finite_is_found_where_it_arises() {
        use crate::layers::activation::Nonlinearity;
        use crate::layers::affine::Affine;
        let data = blobs();
        let (x, _) = crate::train::batch::<f32>(&data, &[0, 1, 2, 3]);
        let spec = relu_mlp(vec![8, 8], 0.1);
        // Layers: 0 affine, 1 relu, 2 affine, 3 relu, 4 affine. Layer 2's weights overflow f32.
        let mut model = spec.build::<f32>(0);
        model.layers[2].params_mut()[0].value.fill(1e38);
        let mut doc = Doctor::new(DoctorConfig::default(), Loss::Softmax, 2);
        let probe = Observer::<f32>::probe(&mut doc, 5).expect("the doctor probes");
        model.forward_probed(x.clone(), Mode::Train, probe);
        let nf = doc.stats.non_finite.clone().expect("an overflow");
        assert_eq!((nf.layer_index, nf.pass, nf.step), (Some(2), Pass::Forward, 5));
        assert_eq!(nf.layer_kind, "affine");

        // affine -> sigmoid (last): a NaN gradient from the loss is reported at the sigmoid.
        let mut r = crate::tensor::rng(0);
        let mut net = Sequential::<f32>::new();
        net.layers.push(Box::new(Affine::new(4, 3, Init::Xavier, 0.0, &mut r)));
        net.layers.push(Box::new(Nonlinearity::new(Activation::Sigmoid)));
        let mut doc = Doctor::new(DoctorConfig::default(), Loss::Softmax, 2);
        let probe = Observer::<f32>::probe(&mut doc, 0).expect("the doctor probes");
        let out = net.forward_probed(x, Mode::Train, probe);
        let probe = Observer::<f32>::probe(&mut doc, 0).expect("the doctor probes");
        net.backward_probed(out.mapv(|_| f32::NAN), probe);
        let nf = doc.stats.non_finite.clone().expect("a NaN gradient");
        assert_eq!((nf.layer_index, nf.pass), (Some(1), Pass::Backward));
        assert_eq!(nf.layer_kind, "sigmoid");
    }

    /// Wh is decomposed on samples 0, 10, 20, ... only; the samples between carry the
    /// latest measurement and say when it was made. A large learning rate makes Wh move, so
    /// the measurements differ.
    #[test]
    fn spectrum_is_measured_every_few_samples_and_carried_between() {
        use crate::nn::seq::{Cell, SeqSpec};
        use crate::optim::{Rule, UpdateConfig};
        use crate::train::{fit_seq, TrainConfig};
        let d = crate::data::seq::adding(200, 10, 1);
        let (tr, va) = d.split(0.2, 0);
        let spec = SeqSpec::for_data(&tr, Cell::Rnn, 8, Init::Xavier, 0.0);
        let mut m = SeqModel::<f64>::new(spec, 0);
        // 160 examples / batch 8 = 20 steps per epoch, 2 epochs, every step sampled.
        let cfg =
            TrainConfig { epochs: 2, batch_size: 8, update: UpdateConfig::new(Rule::Sgd, 0.5), ..Default::default() };
        let mut doc = Doctor::new(DoctorConfig { sample_every: 1 }, Loss::Mse, 0);
        fit_seq(&mut m, &tr, &va, &cfg, &mut doc);
        let b = &doc.stats.bptt;
        assert_eq!(b.len(), 40);
        for (k, s) in b.iter().enumerate() {
            let measured_at = k - k % SPECTRUM_EVERY_SAMPLES;
            assert_eq!(s.whh_spectrum_step, Some(b[measured_at].step), "sample {k}");
            assert_eq!(s.whh_spectral_radius, b[measured_at].whh_spectral_radius);
            assert_eq!(s.whh_largest_singular, b[measured_at].whh_largest_singular);
            assert!(s.whh_spectral_radius.unwrap() > 0.0 && s.whh_largest_singular.unwrap() > 0.0);
        }
        assert_ne!(b[0].whh_largest_singular, b[30].whh_largest_singular, "Wh should have moved");
        // The last measurement is Wh as it was at its step: after training it has moved on.
        let (_, sigma_now) = m.whh_spectrum();
        assert_ne!(Some(sigma_now), b[30].whh_largest_singular);
    }

    /// An LSTM whose weights are drawn with std 8 has its gates pinned at 0 or 1: the
    /// recorder measures every gate on sampled steps and the doctor reports saturated gates;
    /// the same LSTM with Xavier init has no saturated gate.
    #[test]
    fn lstm_gates_are_measured_and_saturated_ones_found() {
        use crate::nn::seq::{Cell, SeqSpec};
        use crate::optim::{Rule, UpdateConfig};
        use crate::train::{fit_seq, TrainConfig};
        let d = crate::data::seq::adding(120, 12, 2);
        let (tr, va) = d.split(0.2, 0);
        let cfg = TrainConfig {
            epochs: 1,
            batch_size: 16,
            update: UpdateConfig::new(Rule::Adam, 1e-3),
            ..Default::default()
        };
        let run = |init: Init| {
            let mut m = SeqModel::<f32>::new(SeqSpec::for_data(&tr, Cell::Lstm, 16, init, 0.0), 0);
            let mut doc = Doctor::for_training(DoctorConfig { sample_every: 2 }, &cfg, 0);
            fit_seq(&mut m, &tr, &va, &cfg, &mut doc);
            doc
        };
        let sick = run(Init::Normal { std: 8.0 });
        let gates: std::collections::BTreeSet<&str> = sick.stats.gates.iter().map(|g| g.gate.as_str()).collect();
        assert_eq!(gates.into_iter().collect::<Vec<_>>(), ["c", "f", "g", "i", "o"]);
        assert_eq!(sick.stats.gates.len(), 5 * 3, "6 steps sampled every 2nd: 3 samples of 5 gates");
        let f = sick.diagnose();
        let sat: Vec<&str> =
            f.iter().filter(|f| f.code == super::super::Code::Saturation).map(|f| f.where_.as_str()).collect();
        assert!(sat.contains(&"layer 0 (lstm) gate g"), "{f:#?}");
        assert!(sat.contains(&"layer 0 (lstm) gate i"), "{f:#?}");
        let healthy = run(Init::Xavier);
        assert!(healthy.stats.gates.iter().all(|g| g.saturated_fraction < 0.5), "{:?}", healthy.stats.gates);
        assert_eq!(healthy.stats.epochs.len(), 1);
        assert_eq!(healthy.stats.epochs[0].epoch, 1, "epochs count from 1");
        assert_eq!(healthy.stats.losses.len(), 6);
    }

    /// A classifier trained with `clipped_mse` on raw digits-like inputs: most output
    /// gradients are exactly zero (the clip is active), and the loss probe records it.
    #[test]
    fn clipped_mse_classifier_records_its_zero_gradients() {
        let data = blobs();
        let x = data.x.mapv(|v| v * 40.0);
        let data = Dataset { x, ..data };
        let mut model = relu_mlp(vec![16], 0.0).build::<f32>(0);
        let cfg = crate::train::TrainConfig {
            epochs: 2,
            batch_size: 50,
            loss: Loss::ClippedMse,
            update: crate::optim::UpdateConfig::new(crate::optim::Rule::Sgd, 1e-3),
            ..Default::default()
        };
        let mut doc = Doctor::for_training(DoctorConfig { sample_every: 1 }, &cfg, 2);
        crate::train::fit(&mut model, &data, &data, &cfg, &mut doc);
        assert_eq!(doc.stats.flat_ops.len(), 8, "every step of 2 epochs x 4 batches");
        assert!(doc.stats.flat_ops.iter().all(|o| o.where_ == "loss (clipped_mse)" && o.total == 100));
        let f = doc.diagnose();
        assert_eq!(f[0].code, super::super::Code::ZeroGradient, "{f:#?}");
        assert_eq!(f[0].fix[0].set["train.loss"], "softmax");
        // Softmax never records a flat op.
        let mut doc = Doctor::for_training(DoctorConfig { sample_every: 1 }, &TrainConfig::default(), 2);
        crate::train::fit(&mut model, &data, &data, &crate::train::TrainConfig { epochs: 1, ..cfg }, &mut doc);
        assert!(doc.stats.flat_ops.is_empty());
    }

    /// The DQN's Q-network gets a dead-unit pass over its replay states when training ends.
    #[test]
    fn dqn_dead_units_are_counted_over_replay_states() {
        use crate::rl::dqn::{train, DqnConfig, TdLoss};
        let mut cfg = DqnConfig::new(TdLoss::Huber, 3, 0);
        cfg.learning_starts = 20;
        cfg.net.hidden = vec![8];
        cfg.net.bias_init = -5.0; // every unit starts dead
        let mut doc = Doctor::new(DoctorConfig::default(), Loss::Huber, 2);
        let (_, run) = train::<f32>(&cfg, &mut doc);
        assert!(run.env_steps > 0);
        let pass = doc.stats.dead_units.iter().find(|p| p.layer == 1).expect("a pass over the ReLU layer");
        assert_eq!(pass.examples as usize, run.env_steps.min(cfg.buffer_size));
        let f = doc.diagnose();
        let dead = f.iter().find(|f| f.code == super::super::Code::DeadRelu).expect("dead units found");
        assert_eq!(dead.severity, super::super::Severity::Error);
        assert!(doc.stats.run.rl);
    }

    #[test]
    fn dead_unit_count_equals_a_brute_force_count() {
        let data = blobs();
        let spec = relu_mlp(vec![16, 8], -0.8);
        let mut model = spec.build::<f64>(1);
        let mut doc = Doctor::new(DoctorConfig::default(), Loss::Softmax, 2);
        doc.dead_unit_pass(&mut model, &data);
        // Brute force: run every example alone and record which units of each ReLU fired.
        let relus: Vec<usize> =
            model.layers.iter().enumerate().filter(|(_, l)| l.kind() == "relu").map(|(i, _)| i).collect();
        for (k, &li) in relus.iter().enumerate() {
            let units = spec.hidden[k];
            let mut fired = vec![false; units];
            for i in 0..data.len() {
                let (x, _) = crate::train::batch::<f64>(&data, &[i]);
                let mut h = x;
                for l in model.layers.iter_mut().take(li + 1) {
                    h = l.forward(h, Mode::Eval);
                }
                for (u, v) in h.iter().enumerate() {
                    fired[u] |= *v > 0.0;
                }
            }
            let dead: Vec<usize> = (0..units).filter(|&u| !fired[u]).collect();
            let pass = doc.stats.dead_units.iter().find(|p| p.layer == li).unwrap();
            assert_eq!(pass.dead_units(), dead, "layer {li}");
            assert_eq!(pass.examples, 200);
        }
        assert!(
            doc.stats.dead_units.iter().any(|p| !p.dead_units().is_empty()),
            "the -0.8 bias should kill some units"
        );
    }
}
