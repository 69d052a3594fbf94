//! `leaky inspect`: diagnose a model trained elsewhere (a PyTorch `state_dict` saved as
//! safetensors) at its checkpoint, over every example of its data.
//!
//! The experiment file gives the architecture (`[model]`) and, unless the caller passes
//! its own arrays, the data (`[data]`, with every example: no validation split). The weights
//! are loaded with [`crate::import`]; then, in batches:
//!
//! * an eval-mode pass over every example: loss and accuracy;
//! * a train-mode forward and backward pass on up to [`PROBE_BATCHES`] batches spread over
//!   the data, with the doctor's probes on: saturation per layer, gradient flow through
//!   depth (and, for RNN/LSTM, through time with Whh's spectral radius), zero gradients,
//!   NaN/Inf;
//! * a full eval-mode pass counting, for every ReLU unit (conv: channel), the examples it
//!   fires on: `dead_relu` over every example;
//! * for a model with batch norm, a full eval-mode pass measuring each batch norm layer's
//!   input mean and variance per feature (conv: channel) against its running statistics:
//!   `batchnorm_stats`;
//! * non-finite weights, one `non_finite` finding per tensor;
//! * with a second checkpoint (`before`), the per-layer update/weight ratio
//!   |W_after - W_before| / |W_after| and the ReLU units that died between the two.
//!
//! Recurrent models (RNN, LSTM) read token ids (N, T) when the checkpoint has an embedding
//! and dense sequences (N, T, D) otherwise; their targets follow `train.loss`: a class per
//! step (N, T) for `softmax`, one number per sequence (N,) for `mse`.
//!
//! Codes that describe a training run (`bad_init_loss`, `update_ratio` from a learning
//! rate, `diverging_loss`, `not_learning`) are not reported: a checkpoint has no history.
//! Fixes are advice for the run that trained the model (PyTorch), so they carry no
//! experiment-file settings (`set` is empty), and findings carry no step.

use super::config::{Experiment, ModelKind};
use super::pipeline::{build_feed, build_seq_model, prepare_rows, prepare_seq, Model};
use super::{Error, Result};
use crate::data::seq::{SeqDataset, SeqInput, SeqTarget};
use crate::data::{ArrayValues, Dataset, NpyData};
use crate::doctor::stats::DeadUnitPass;
use crate::doctor::{Code, Doctor, DoctorConfig, Finding, Severity};
use crate::import::{load_seq_model, load_sequential, SeqKeys, StateDict};
use crate::layers::affine;
use crate::losses::Loss;
use crate::nn::seq::{seq_batch, SeqModel, SeqOutput, SeqSpec};
use crate::nn::{Mode, Sequential};
use crate::train::{batch, Observer, SeqObserver, StepInfo};
use ndarray::{Array1, Array2, Array3};
use std::path::Path;

/// Train-mode probe batches (forward and backward with the doctor's probes).
pub const PROBE_BATCHES: usize = 8;

/// Examples per batch.
pub const BATCH: usize = 256;

/// The batch norm eps leaky and PyTorch use (1e-5): the variance floor of the
/// `batchnorm_stats` comparison (a state_dict does not store eps).
pub const BN_EPS: f64 = 1e-5;

/// Data files given instead of the experiment's `[data]`.
#[derive(Clone, Copy, Debug)]
pub enum DataFiles<'a> {
    /// Inputs and targets as two `.npy` files.
    Npy {
        /// The inputs.
        x: &'a Path,
        /// The labels or targets.
        y: &'a Path,
    },
    /// One `.npz` archive holding arrays `x` and `y` (or `arr_0` and `arr_1`).
    Npz(&'a Path),
}

impl DataFiles<'_> {
    /// The inputs' file, for messages.
    pub fn inputs(&self) -> &Path {
        match self {
            DataFiles::Npy { x, .. } => x,
            DataFiles::Npz(p) => p,
        }
    }
}

/// What [`inspect`] takes besides the experiment.
#[derive(Clone, Copy, Debug)]
pub struct InspectOptions<'a> {
    /// The checkpoint to diagnose.
    pub weights: &'a Path,
    /// An earlier checkpoint of the same model (update ratios, units that died since).
    pub before: Option<&'a Path>,
    /// The data instead of the experiment's `[data]`: for feed-forward models inputs
    /// (N, C, H, W) or (N, D) with integer labels (N,); for recurrent models token ids (N, T)
    /// or sequences (N, T, D), with a class per step (N, T) (`train.loss = "softmax"`) or
    /// one number per sequence (N,) (`"mse"`).
    pub data: Option<DataFiles<'a>>,
}

/// The update/weight ratio of one weight tensor between the `before` checkpoint and this one.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateRatio {
    /// The layer's index in the model listing.
    pub layer: usize,
    /// `"layer 2 (affine) W"`.
    pub label: String,
    /// |W - W0| / |W| (Frobenius norms).
    pub ratio: f64,
}

/// What [`inspect`] found.
pub struct Inspection {
    /// The findings (most severe first).
    pub findings: Vec<Finding>,
    /// Mean loss over every example (eval mode).
    pub loss: f64,
    /// Accuracy over every example (classification; per step for token sequences).
    pub accuracy: Option<f64>,
    /// Examples (sequences) diagnosed.
    pub examples: usize,
    /// Trainable scalars loaded.
    pub params: usize,
    /// Tensors read from the checkpoint.
    pub tensors: usize,
    /// With `before`: |W - W0| / |W| of every weight tensor.
    pub update_ratios: Vec<UpdateRatio>,
    /// With `before`: the dead-unit pass of every ReLU layer at the earlier checkpoint.
    pub dead_before: Vec<DeadUnitPass>,
    /// The model listing: one line per layer (`"affine 784->256"`), as `leaky train` prints it.
    pub layers: Vec<String>,
    /// What the inputs are, e.g. `"images (1, 8, 8)"`, `"token ids (vocabulary 7), T = 7"`.
    pub input: String,
    /// The doctor, with everything it recorded.
    pub doctor: Doctor,
}

fn open(path: &Path) -> Result<StateDict> {
    let mut sd = StateDict::open(path).map_err(|e| Error::BadInput(e.to_string()))?;
    // DistributedDataParallel saves every key as `module.<key>`.
    if sd.keys().next().is_some() && sd.keys().all(|k| k.starts_with("module.")) {
        sd.strip_prefix("module.").map_err(|e| Error::BadInput(e.to_string()))?;
    }
    Ok(sd)
}

/// The number of classes the checkpoint's last affine layer outputs, if it can be read.
fn classes_of(exp: &Experiment, sd: &StateDict) -> Option<usize> {
    let layers = super::pipeline::layer_list(exp);
    let i = layers.iter().rposition(|l| l.kind == super::LayerType::Affine)?;
    let prefix = layers[i].name.clone().unwrap_or_else(|| i.to_string());
    sd.shape(&format!("{prefix}.weight")).and_then(|s| s.first().copied())
}

fn non_finite_findings(sd: &StateDict, findings: &mut Vec<Finding>) {
    for nf in sd.non_finite() {
        findings.push(
            Finding::new(
                Code::NonFinite,
                Severity::Error,
                format!("tensor {}", nf.key),
                None,
                "a NaN or Inf weight makes every activation it touches NaN in the forward pass, and every gradient NaN in the backward pass: the checkpoint was saved after training diverged",
            )
            .with("tensor", nf.key.clone())
            .with("nan", nf.nan)
            .with("inf", nf.inf)
            .with("elements", nf.len)
            .fixes(["resume from an earlier checkpoint and lower the learning rate or clip the gradient norm"]),
        );
    }
}

/// Give the findings added after the doctor's diagnosis (non-finite weights, units that died
/// since `before`) the next ids, after the doctor's own (F1, F2, ... in listing order).
fn number_new(findings: &mut [Finding]) {
    let first = findings.iter().filter(|f| !f.id.is_empty()).count() + 1;
    for (k, f) in (first..).zip(findings.iter_mut().filter(|f| f.id.is_empty())) {
        f.id = format!("F{k}");
    }
}

/// Advice for the training run behind a checkpoint: the same texts without experiment-file
/// settings, no step, and dead units that are a root cause blamed on large updates first
/// (units that die during training were most often pushed there by too-large steps).
fn for_checkpoint(findings: &mut [Finding]) {
    for f in findings.iter_mut() {
        f.step = None;
        for fix in f.fix.iter_mut() {
            fix.set.clear();
        }
        if f.code == Code::DeadRelu && f.is_root() && !f.fix.iter().any(|x| x.text.contains("learning rate")) {
            f.fix.insert(
                0,
                crate::doctor::Fix::text(
                    "lower the learning rate of the run that trained it, or clip the gradient norm",
                ),
            );
        }
    }
}

/// The doctor's findings that apply to a checkpoint (no history-based codes), as advice for
/// the training run, plus one `non_finite` finding per non-finite tensor of `sd`.
fn checkpoint_findings(doctor: &Doctor, sd: &StateDict) -> Vec<Finding> {
    // Left out before the causes are linked and the ids given, so that the ids run F1, F2,
    // ... without gaps and no consequence points at a finding that is not listed.
    let detected: Vec<Finding> = crate::doctor::detect_all(&doctor.stats)
        .into_iter()
        .filter(|f| !matches!(f.code.as_str(), "bad_init_loss" | "update_ratio" | "diverging_loss" | "not_learning"))
        .collect();
    let mut findings = crate::doctor::causes::analyse(detected, &doctor.stats.run);
    for_checkpoint(&mut findings);
    non_finite_findings(sd, &mut findings);
    findings
}

/// Diagnose the checkpoint `opts.weights` of the model `exp` describes. `progress(done,
/// total)` is called after each batch of the passes. Errors ([`Error::BadInput`]) name the
/// file, the key and the shapes.
pub fn inspect(
    exp: &Experiment,
    base: &Path,
    opts: InspectOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Inspection> {
    let sd = open(opts.weights)?;
    match exp.model.kind {
        ModelKind::Mlp => inspect_feed(exp, base, opts, sd, progress),
        ModelKind::Rnn | ModelKind::Lstm => {
            if opts.before.is_some() {
                bad!("--before: available for feed-forward models in this version");
            }
            inspect_seq(exp, base, opts.data, sd, progress)
        }
        ModelKind::Dqn => bad!("model.kind = \"dqn\": inspect diagnoses feed-forward and recurrent models"),
    }
}

fn load_data(exp: &Experiment, base: &Path, data: Option<DataFiles>) -> Result<Dataset> {
    match data {
        Some(files) => {
            let loaded = match files {
                DataFiles::Npy { x, y } => {
                    crate::data::load_npy(x, y).map_err(|e| Error::BadInput(format!("--data/--labels: {e}")))
                }
                DataFiles::Npz(p) => crate::data::load_npz(p).map_err(|e| Error::BadInput(format!("--data: {e}"))),
            };
            let mut d = loaded?;
            if !exp.data.shape.is_empty() {
                if exp.data.shape.iter().product::<usize>() != d.dim() {
                    bad!(
                        "data.shape = {:?} does not fit --data {} (examples of {} values)",
                        exp.data.shape,
                        files.inputs().display(),
                        d.dim()
                    );
                }
                d.feature_shape = exp.data.shape.clone();
            }
            if d.feature_shape.len() == 2 {
                d.feature_shape.insert(0, 1);
            }
            Ok(d)
        }
        None => {
            let mut all = exp.clone();
            all.data.val_fraction = 0.0;
            Ok(prepare_rows(&all, base)?.0)
        }
    }
}

fn load_feed(exp: &Experiment, data: &Dataset, sd: &StateDict) -> Result<(Sequential<f32>, Vec<Option<String>>)> {
    let classes = classes_of(exp, sd).unwrap_or(data.classes).max(data.classes);
    let Model::Feed { mut net, names } = build_feed(exp, &data.feature_shape, classes)? else {
        unreachable!("an mlp experiment builds a feed-forward model")
    };
    load_sequential(&mut net, &names, sd).map_err(|e| Error::BadInput(e.to_string()))?;
    Ok((net, names))
}

fn inspect_feed(
    exp: &Experiment,
    base: &Path,
    opts: InspectOptions,
    sd: StateDict,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Inspection> {
    let data = load_data(exp, base, opts.data)?;
    let (mut net, names) = load_feed(exp, &data, &sd)?;
    let mut before = match opts.before {
        Some(p) => Some(load_feed(exp, &data, &open(p)?)?),
        None => None,
    };
    let loss_fn = exp.train.loss;
    let classes = classes_of(exp, &sd).unwrap_or(data.classes).max(data.classes);
    let mut doctor = Doctor::new(DoctorConfig { sample_every: 1 }, loss_fn, classes);
    doctor.observe_input(&data);
    let idx: Vec<usize> = (0..data.len()).collect();
    let chunks: Vec<&[usize]> = idx.chunks(BATCH).collect();
    let probes = chunks.len().min(PROBE_BATCHES);
    let batchnorm = net.layers.iter().any(|l| matches!(l.kind(), "batchnorm" | "spatial_batchnorm"));
    // Progress in batches: the eval pass, the dead-unit pass, the batch norm pass (if any),
    // then each probe batch.
    let total = (2 + usize::from(batchnorm)) * chunks.len() + probes;
    // Eval pass: loss and accuracy over every example (the trainer's own evaluation).
    let (accuracy, loss) = crate::train::evaluate(&mut net, &data, loss_fn);
    let mut done = chunks.len();
    progress(done, total);
    // Dead units over every example (eval mode), now and at `before`.
    let mut dead_before = Vec::new();
    if let Some((b_net, _)) = &mut before {
        let mut d0 = Doctor::new(DoctorConfig { sample_every: 1 }, loss_fn, classes);
        d0.dead_unit_pass(b_net, &data);
        dead_before = d0.stats.dead_units;
    }
    doctor.dead_unit_pass(&mut net, &data);
    done += chunks.len();
    progress(done, total);
    // Batch norm running statistics against the data (eval mode, every example).
    if batchnorm {
        doctor.batchnorm_pass(&mut net, &data, BN_EPS);
        for b in doctor.stats.batchnorm.iter_mut() {
            let prefix = names.get(b.layer).cloned().flatten().unwrap_or_else(|| b.layer.to_string());
            b.batches_tracked = sd.count(&format!("{prefix}.num_batches_tracked"));
        }
        done += chunks.len();
        progress(done, total);
    }
    // Probe passes: train-mode forward and backward on batches spread over the data. Batch
    // norm's running statistics are restored afterwards (its train-mode forward moves them).
    let saved: Vec<crate::Tensor<f32>> =
        net.layers.iter().flat_map(|l| l.buffers().into_iter().map(|(_, b)| b.clone())).collect();
    for k in 0..probes {
        let chunk = chunks[k * chunks.len() / probes];
        let (x, y) = batch::<f32>(&data, chunk);
        let probe = Observer::<f32>::probe(&mut doctor, k).expect("the doctor always probes");
        let scores = affine::as_2d(net.forward_probed(x, Mode::Train, probe));
        let (l, dscores) = loss_fn.classify(&scores, &y);
        let probe = Observer::<f32>::probe(&mut doctor, k).expect("the doctor always probes");
        net.backward_probed(dscores.into_dyn(), probe);
        let grad_norm = crate::optim::global_norm(net.params().iter().map(|(_, p)| &p.grad));
        let info = StepInfo { epoch: 0, step: k, loss: l as f64, lr: exp.train.lr, grad_norm, batch_size: chunk.len() };
        Observer::<f32>::on_step(&mut doctor, &info, &net);
        done += 1;
        progress(done, total);
    }
    let mut saved = saved.into_iter();
    for l in net.layers.iter_mut() {
        for (_, b) in l.buffers_mut() {
            *b = saved.next().expect("one saved buffer per buffer");
        }
    }
    let mut update_ratios = Vec::new();
    if let Some((b_net, _)) = &before {
        for ((i, p), (_, p0)) in net.params().iter().zip(b_net.params().iter()) {
            if p.decay {
                let diff = (&p.value - &p0.value).mapv(|v| (v as f64) * (v as f64)).sum().sqrt();
                let norm = p.value.mapv(|v| (v as f64) * (v as f64)).sum().sqrt();
                update_ratios.push(UpdateRatio {
                    layer: *i,
                    label: format!("layer {i} ({}) {}", net.layers[*i].kind(), p.name),
                    ratio: diff / norm.max(1e-12),
                });
            }
        }
    }
    let mut findings = checkpoint_findings(&doctor, &sd);
    for (now, then) in doctor.stats.dead_units.iter().zip(dead_before.iter()) {
        let died: Vec<usize> = now
            .fire_counts
            .iter()
            .zip(&then.fire_counts)
            .enumerate()
            .filter(|(_, (&a, &b))| a == 0 && b > 0)
            .map(|(u, _)| u)
            .collect();
        if !died.is_empty() {
            let units = now.fire_counts.len();
            let layer = now.layer;
            findings.push(
                Finding::new(
                    Code::DeadRelu,
                    if died.len() * 10 >= units { Severity::Warning } else { Severity::Info },
                    format!("layer {layer} ({})", net.layers[layer].kind()),
                    None,
                    "these units fired on some examples at the earlier checkpoint and on none now: an update pushed their pre-activation below zero for every input, and a ReLU passes no gradient back where it outputs 0, so nothing can bring them back",
                )
                .at_layer(layer)
                .with("died_since_before", died.len())
                .with("units", units)
                .with("died_units", serde_json::json!(died))
                .fixes(["lower the learning rate of the run between the two checkpoints", "use leaky_relu"]),
            );
        }
    }
    number_new(&mut findings);
    let params = net.num_params();
    let shape = &data.feature_shape;
    let input = match shape.len() {
        3 => format!("images {}", NpyData::shape_of(shape)),
        _ => format!("rows of {} features", data.dim()),
    };
    Ok(Inspection {
        findings,
        loss,
        accuracy: Some(accuracy),
        examples: data.len(),
        params,
        tensors: sd.len(),
        update_ratios,
        dead_before,
        layers: net.layers.iter().map(|l| l.describe()).collect(),
        input,
        doctor,
    })
}

fn inspect_seq(
    exp: &Experiment,
    base: &Path,
    files: Option<DataFiles>,
    sd: StateDict,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Inspection> {
    let keys = SeqKeys::detect(&sd).map_err(|e| Error::BadInput(e.to_string()))?;
    let data = match files {
        Some(files) => seq_data_from_files(exp, files, &sd, &keys)?,
        None => {
            let mut all = exp.clone();
            all.data.val_fraction = 0.0;
            prepare_seq(&all, base)?.0
        }
    };
    let mut model = build_seq_model(exp, &data)?;
    // The embedding width is the checkpoint's (leaky's own default is 32).
    if let (Some(_), Some(&[_, e])) = (model.spec.vocab, sd.shape(&format!("{}.weight", keys.embed))) {
        model = SeqModel::new(SeqSpec { input_dim: e, ..model.spec.clone() }, exp.seed);
    }
    load_seq_model(&mut model, &keys, &sd).map_err(|e| Error::BadInput(e.to_string()))?;
    let mut doctor = Doctor::new(DoctorConfig { sample_every: 1 }, exp.train.loss, data.classes);
    let idx: Vec<usize> = (0..data.len()).collect();
    let chunks: Vec<&[usize]> = idx.chunks(BATCH).collect();
    let probes = chunks.len().min(PROBE_BATCHES);
    let total = chunks.len() + probes;
    let (mut loss_sum, mut correct, mut counted) = (0.0, 0usize, 0usize);
    for (k, chunk) in chunks.iter().enumerate() {
        let e = model.evaluate(&seq_batch::<f32>(&data, chunk));
        loss_sum += e.loss * chunk.len() as f64;
        correct += e.correct;
        counted += e.counted;
        progress(k + 1, total);
    }
    for k in 0..probes {
        let chunk = chunks[k * chunks.len() / probes];
        let e = model.forward_backward(&seq_batch::<f32>(&data, chunk));
        let grad_norm = crate::optim::global_norm(model.params().iter().map(|p| &p.grad));
        let info = StepInfo { epoch: 0, step: k, loss: e.loss, lr: exp.train.lr, grad_norm, batch_size: chunk.len() };
        SeqObserver::<f32>::on_step(&mut doctor, &info, &model);
        progress(chunks.len() + k + 1, total);
    }
    let mut findings = checkpoint_findings(&doctor, &sd);
    number_new(&mut findings);
    let spec = &model.spec;
    let mut layers = Vec::new();
    if let Some(v) = spec.vocab {
        layers.push(format!("embedding {v}->{}", spec.input_dim));
    }
    layers.push(format!("{} {}->{}", spec.cell.name(), spec.input_dim, spec.hidden));
    layers.push(match spec.output {
        SeqOutput::PerStep { classes } => format!("temporal affine {}->{classes}, temporal softmax", spec.hidden),
        SeqOutput::Final => format!("affine on h_T {}->1, mse", spec.hidden),
    });
    let input = match spec.vocab {
        Some(v) => format!("token ids (vocabulary {v}), T = {}", data.seq_len()),
        None => format!("sequences of {} features, T = {}", spec.input_dim, data.seq_len()),
    };
    Ok(Inspection {
        findings,
        loss: loss_sum / data.len().max(1) as f64,
        accuracy: (counted > 0).then(|| correct as f64 / counted as f64),
        examples: data.len(),
        params: model.num_params(),
        tensors: sd.len(),
        update_ratios: Vec::new(),
        dead_before: Vec::new(),
        layers,
        input,
        doctor,
    })
}

/// The recurrent model's inputs and targets from `--data` (and `--labels`), checked against
/// what the checkpoint and `train.loss` take: token ids (N, T) below the embedding's V when
/// the checkpoint has an embedding, else sequences (N, T, D) with D the recurrent layer's
/// input width; a class per step (N, T) below the head's C for `softmax`, one number per
/// sequence (N,) for `mse`. Errors name the file and both shapes.
fn seq_data_from_files(exp: &Experiment, files: DataFiles, sd: &StateDict, keys: &SeqKeys) -> Result<SeqDataset> {
    let (x, y) = match files {
        DataFiles::Npy { x, y } => (
            crate::data::read_npy_array(x).map_err(|e| Error::BadInput(format!("--data: {e}")))?,
            crate::data::read_npy_array(y).map_err(|e| Error::BadInput(format!("--labels: {e}")))?,
        ),
        DataFiles::Npz(p) => crate::data::read_npz_arrays(p).map_err(|e| Error::BadInput(format!("--data: {e}")))?,
    };
    let cell = if exp.model.kind == ModelKind::Lstm { "LSTM" } else { "RNN" };
    let ih_key = format!("{}.weight_ih_l0", keys.rnn);
    let embed_key = format!("{}.weight", keys.embed);
    let fc_key = format!("{}.weight", keys.fc);
    let shown = |k: &str| sd.shape(k).map(NpyData::shape_of).unwrap_or_else(|| "missing".into());
    let vocab = sd.shape(&embed_key).and_then(|s| s.first().copied());
    let (n, t) = match (vocab, x.shape.as_slice()) {
        (Some(_), &[n, t]) if x.is_int() => (n, t),
        (Some(v), _) => bad!(
            "--data {}: shape {} ({}), but the checkpoint's {cell} reads token ids through an embedding ({embed_key} {}): expected integer ids of shape (N, T), each below {v}",
            x.origin,
            x.shape_str(),
            if x.is_int() { "integers" } else { "floats" },
            shown(&embed_key)
        ),
        (None, &[n, t, d]) => {
            let want = sd.shape(&ih_key).and_then(|s| s.get(1).copied());
            if want.is_some_and(|w| w != d) {
                bad!(
                    "--data {}: shape {} has D = {d} features per step, but the checkpoint's {cell} takes D = {} ({ih_key} {}): expected (N, T, {})",
                    x.origin,
                    x.shape_str(),
                    want.unwrap_or(0),
                    shown(&ih_key),
                    want.unwrap_or(0)
                );
            }
            (n, t)
        }
        (None, _) => bad!(
            "--data {}: shape {}, but the checkpoint's {cell} takes sequences of shape (N, T, D){}",
            x.origin,
            x.shape_str(),
            sd.shape(&ih_key).and_then(|s| s.get(1)).map(|d| format!(" with D = {d} ({ih_key} {})", shown(&ih_key))).unwrap_or_default()
        ),
    };
    if n == 0 || t == 0 {
        bad!("--data {}: shape {} holds no sequence step", x.origin, x.shape_str());
    }
    let input = match &x.values {
        ArrayValues::Int(ids) => {
            let v = vocab.unwrap_or(0);
            if let Some((k, &id)) = ids.iter().enumerate().find(|(_, &id)| id < 0 || id as u64 >= v as u64) {
                bad!(
                    "--data {}: token id {id} at sequence {}, step {}: ids must be in 0..{v} (the vocabulary of {embed_key} {})",
                    x.origin,
                    k / t,
                    k % t,
                    shown(&embed_key)
                );
            }
            SeqInput::Tokens(
                Array2::from_shape_vec((n, t), ids.iter().map(|&i| i as usize).collect()).expect("N x T ids"),
            )
        }
        ArrayValues::Float(v) => {
            let d = x.shape[2];
            SeqInput::Dense(Array3::from_shape_vec((n, t, d), v.clone()).expect("N x T x D values"))
        }
    };
    let classes_ck = sd.shape(&fc_key).and_then(|s| s.first().copied());
    let (target, classes) = match exp.train.loss {
        Loss::Softmax => {
            let ok = y.is_int() && y.shape == [n, t];
            if !ok {
                bad!(
                    "--labels {}: shape {} ({}), but train.loss = \"softmax\" predicts a class per step of --data {} {}: expected integer classes of shape ({n}, {t})",
                    y.origin,
                    y.shape_str(),
                    if y.is_int() { "integers" } else { "floats" },
                    x.origin,
                    x.shape_str()
                );
            }
            let ArrayValues::Int(ys) = &y.values else { unreachable!("checked: integers") };
            let c = classes_ck.unwrap_or(0);
            if let Some((k, &l)) = ys.iter().enumerate().find(|(_, &l)| l < 0 || l as u64 >= c as u64) {
                bad!(
                    "--labels {}: class {l} at sequence {}, step {}: classes must be in 0..{c} (the outputs of {fc_key} {})",
                    y.origin,
                    k / t,
                    k % t,
                    shown(&fc_key)
                );
            }
            let ys = Array2::from_shape_vec((n, t), ys.iter().map(|&l| l as usize).collect()).expect("N x T classes");
            (SeqTarget::Tokens { y: ys, mask: Array2::from_elem((n, t), true) }, c)
        }
        Loss::Mse => {
            if !(y.shape == [n] || y.shape == [n, 1]) {
                bad!(
                    "--labels {}: shape {}, but train.loss = \"mse\" predicts one number per sequence of --data {} {}: expected shape ({n},)",
                    y.origin,
                    y.shape_str(),
                    x.origin,
                    x.shape_str()
                );
            }
            (SeqTarget::Final(Array1::from_vec(y.to_f64().into_iter().map(|v| v as f32).collect())), 0)
        }
        other => bad!(
            "train.loss = {:?}: a recurrent model is inspected with \"softmax\" (a class per step) or \"mse\" (one number per sequence)",
            other.name()
        ),
    };
    Ok(SeqDataset {
        name: format!("npy:{}", x.origin),
        input,
        target,
        vocab: vocab.unwrap_or(0),
        classes,
        alphabet: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::stats::InitLoss;

    /// Codes about a training run are left out before the ids are given: the ids run F1, F2,
    /// ... in listing order, without the gap the left-out finding would leave.
    #[test]
    fn ids_have_no_gaps_where_history_codes_are_left_out() {
        let mut d = Doctor::new(DoctorConfig { sample_every: 1 }, Loss::Softmax, 10);
        // bad_init_loss, a warning at step 0, listed first by the doctor: left out.
        d.stats.init_loss = Some(InitLoss::softmax(9.0, 10));
        // dead_relu, a warning (3 of 10 units) after step 5; and unnormalized_input.
        let mut dead = DeadUnitPass::new(1, "relu", 5, 10);
        dead.examples = 100;
        dead.fire_counts = vec![0, 0, 0, 5, 5, 5, 5, 5, 5, 5];
        d.stats.dead_units = vec![dead];
        let doctor: Vec<(String, Code)> = d.diagnose().into_iter().map(|f| (f.id, f.code)).collect();
        assert_eq!(doctor, [("F1".to_string(), Code::BadInitLoss), ("F2".to_string(), Code::DeadRelu)]);
        let bytes = safetensors::serialize(Vec::<(String, safetensors::tensor::TensorView)>::new(), None).unwrap();
        let sd = StateDict::from_bytes(bytes, "empty").unwrap();
        let f = checkpoint_findings(&d, &sd);
        let got: Vec<(&str, Code)> = f.iter().map(|f| (f.id.as_str(), f.code)).collect();
        assert_eq!(got, [("F1", Code::DeadRelu)]);
    }
}
