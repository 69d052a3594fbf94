//! Recorded statistics: what the probes measure during training, and what the detectors
//! read. Everything here is plain data (`Serialize`, `Deserialize`), so a run's statistics
//! can be dumped, plotted in the HTML report, or written by hand in a test.
//!
//! The types are built to be filled **cheaply and incrementally** on the hot path: the
//! accumulators ([`ActivationAccumulator`], [`Histogram`], [`DeadUnitPass`],
//! [`InputAccumulator`]) take one value (or one tensor) at a time, keep O(bins + units)
//! state, never copy a tensor, and turn into the summary record at the end of a step or
//! pass. Sums are kept in `f64` whatever the model's float type.
//!
//! | record | filled from | per |
//! |---|---|---|
//! | [`LayerStats`] | `Probe::after_forward` (output) + `Probe::after_backward` (dL/dx) | layer, sampled step |
//! | [`ParamStats`] | `Observer::on_step` (gradients and pre-update weights) | parameter, sampled step |
//! | [`DeadUnitPass`] | a forward pass over the whole training set in eval mode | ReLU layer, pass |
//! | [`BpttStats`] | the recurrent layers' `backward_with_norms` + [`crate::nn::spectral`] | recurrent layer, sampled step |
//! | [`FlatOpStats`] | the backward of an op with flat regions (clip, step, relu, max-pool) | op, sampled step |
//! | [`GlobalNormSample`] | `Observer::on_step` (`StepInfo::grad_norm` and the clipped gradients) | sampled step |
//! | [`NonFinite`] | the first NaN/Inf a probe sees, forward or backward | run (first only) |
//! | [`InitLoss`] | the loss of step 0 | run |
//! | [`InputStats`] | the training features, before training | run |
//! | [`GateStats`] | the activated gates of a recurrent layer (tanh cell; LSTM i, f, o, g, tanh c) | gate, sampled step |
//! | [`BatchNormStats`] | a forward pass over a whole data set in eval mode ([`FeatureMoments`] of each batch norm's input) | batch norm layer, pass |
//! | `losses` | `Observer::on_step` | step |
//! | [`EpochStats`] | `Observer::on_epoch` | epoch |
//! | [`RunInfo`] | the training configuration (loss, classes, lr, optimiser, planned epochs, ...) | run |

use crate::layers::activation::{sigmoid_backprop, tanh_backprop};
use crate::tensor::{Float, Tensor};
use serde::{Deserialize, Serialize};

/// Sigmoid outputs `z < SIGMOID_SATURATION_MARGIN` or `z > 1 - SIGMOID_SATURATION_MARGIN`
/// count as saturated. There the local gradient z(1-z) is below 0.0099, under 4% of its
/// maximum 0.25. (Our choice of cut-off; the phenomenon is Glorot & Bengio 2010, "Understanding
/// the difficulty of training deep feedforward neural networks", Fig. 2: sigmoid units pinned
/// at 0 or 1.)
pub const SIGMOID_SATURATION_MARGIN: f64 = 0.01;

/// Tanh outputs `|t| > TANH_SATURATION_LEVEL` count as saturated: the local gradient 1 - t^2
/// is then below 0.0199, under 2% of its maximum 1 (same source and reasoning as
/// [`SIGMOID_SATURATION_MARGIN`]).
pub const TANH_SATURATION_LEVEL: f64 = 0.99;

/// Number of equal-width bins of an activation [`Histogram`].
pub const HISTOGRAM_BINS: usize = 20;

/// On a sampled step the doctor summarises about this many output values per layer (whole
/// examples, evenly spread over the batch: [`ActivationAccumulator::push_rows`]), not the
/// whole output. Streaming every value through the histogram was the largest part of the
/// doctor's overhead on small networks (BENCHMARKS.md); 2048 values estimate a fraction
/// with a standard error of at most 1.1% (sqrt(0.25 / 2048)) if the values were
/// independent, and rows of one example are whole, so per-example structure is kept.
pub const ACTIVATION_SAMPLE_VALUES: usize = 2048;

/// The largest local gradient of an activation: 0.25 for sigmoid (z(1-z) at z = 1/2), 1 for
/// tanh (1 - t^2 at t = 0), 1 for relu and leaky relu; `None` for other layer kinds.
pub fn max_local_grad(kind: &str) -> Option<f64> {
    match kind {
        "sigmoid" => Some(0.25),
        "tanh" | "relu" | "leaky_relu" => Some(1.0),
        _ => None,
    }
}

/// A fixed-bin histogram of values in `[lo, hi)`; values outside go to `below`/`above`,
/// NaN to `nan` (the last bin includes `hi`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Lower edge of the first bin.
    pub lo: f64,
    /// Upper edge of the last bin.
    pub hi: f64,
    /// Counts per bin, `counts.len()` equal-width bins.
    pub counts: Vec<u64>,
    /// Values below `lo` (including -inf).
    pub below: u64,
    /// Values above `hi` (including +inf).
    pub above: u64,
    /// NaN values.
    pub nan: u64,
}

impl Histogram {
    /// An empty histogram of `bins` equal bins over `[lo, hi]`. Panics unless `lo < hi` and
    /// `bins > 0`.
    pub fn new(lo: f64, hi: f64, bins: usize) -> Self {
        assert!(lo < hi && bins > 0, "histogram: need lo < hi and at least one bin");
        Histogram { lo, hi, counts: vec![0; bins], below: 0, above: 0, nan: 0 }
    }

    /// The fixed range for a layer kind's outputs: sigmoid [0, 1], tanh [-1, 1], relu
    /// [0, 5], anything else [-5, 5]; [`HISTOGRAM_BINS`] bins.
    pub fn for_kind(kind: &str) -> Self {
        let (lo, hi) = match kind {
            "sigmoid" => (0.0, 1.0),
            "tanh" => (-1.0, 1.0),
            "relu" => (0.0, 5.0),
            _ => (-5.0, 5.0),
        };
        Histogram::new(lo, hi, HISTOGRAM_BINS)
    }

    /// Count one value.
    #[inline]
    pub fn push(&mut self, v: f64) {
        if v.is_nan() {
            self.nan += 1;
        } else if v < self.lo {
            self.below += 1;
        } else if v > self.hi {
            self.above += 1;
        } else {
            let n = self.counts.len();
            let i = ((v - self.lo) * self.bins_per_unit()) as usize;
            self.counts[i.min(n - 1)] += 1;
        }
    }

    /// Bins per unit of value, `bins / (hi - lo)`: a value's bin is `(v - lo) * this`
    /// (one multiplication per value instead of a division).
    #[inline]
    fn bins_per_unit(&self) -> f64 {
        self.counts.len() as f64 / (self.hi - self.lo)
    }

    /// All values counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.below + self.above + self.nan
    }
}

/// Activation and gradient statistics of one layer at one sampled step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    /// Position of the layer in the model (`Sequential::layers`).
    pub index: usize,
    /// The layer's kind, e.g. `"affine"`, `"sigmoid"`, `"relu"` (`Layer::kind`).
    pub kind: String,
    /// The training step.
    pub step: usize,
    /// Number of output elements summarised (sampled rows x features; at most about
    /// [`ACTIVATION_SAMPLE_VALUES`] rounded up to whole rows).
    pub count: u64,
    /// Mean of the layer's outputs.
    pub act_mean: f64,
    /// Standard deviation of the layer's outputs (population).
    pub act_std: f64,
    /// Histogram of the outputs ([`Histogram::for_kind`]).
    pub histogram: Histogram,
    /// sigmoid/tanh: share of outputs in the saturated region ([`SIGMOID_SATURATION_MARGIN`],
    /// [`TANH_SATURATION_LEVEL`]); `None` for other kinds.
    pub saturated_fraction: Option<f64>,
    /// relu: share of outputs exactly 0; `None` for other kinds.
    pub zero_fraction: Option<f64>,
    /// sigmoid/tanh/relu: mean local gradient over the outputs (z(1-z), 1-t^2, 1\[out>0\]);
    /// compare with [`max_local_grad`].
    pub mean_local_grad: Option<f64>,
    /// ||dL/dx||: Frobenius norm over the batch of the gradient with respect to the layer's
    /// **input**, when the backward pass was probed.
    pub grad_in_norm: Option<f64>,
    /// Number of elements of that input gradient (0 when not recorded), so that layers of
    /// different widths compare by RMS (see [`LayerStats::grad_in_rms`]).
    pub grad_in_count: u64,
}

impl LayerStats {
    /// Root mean square of the input gradient, `grad_in_norm / sqrt(grad_in_count)`.
    pub fn grad_in_rms(&self) -> Option<f64> {
        match self.grad_in_norm {
            Some(n) if self.grad_in_count > 0 => Some(n / (self.grad_in_count as f64).sqrt()),
            _ => None,
        }
    }

    /// Set the input-gradient norm from a sum of squares over `count` elements.
    pub fn set_grad_in(&mut self, sum_sq: f64, count: u64) {
        self.grad_in_norm = Some(sum_sq.sqrt());
        self.grad_in_count = count;
    }

    /// Record the input gradient `dx` of this layer (one pass over it, no copy).
    pub fn record_grad_in<F: Float>(&mut self, dx: &Tensor<F>) {
        // optim::global_norm sums squares in eight f64 lanes (vectorised).
        let norm = crate::optim::global_norm(std::iter::once(dx));
        self.set_grad_in(norm * norm, dx.len() as u64);
    }
}

/// Builds a [`LayerStats`] one output value at a time: O(bins) state, no copies.
///
/// The variance uses sums shifted by the first value, which avoids the cancellation of the
/// naive sum-of-squares formula when the mean is large compared with the spread.
#[derive(Clone, Debug)]
pub struct ActivationAccumulator {
    kind: String,
    count: u64,
    shift: Option<f64>,
    sum: f64,
    sum_sq: f64,
    saturated: u64,
    zeros: u64,
    local_grad_sum: f64,
    histogram: Histogram,
}

impl ActivationAccumulator {
    /// An empty accumulator for a layer of kind `kind` (`Layer::kind`).
    pub fn new(kind: &str) -> Self {
        ActivationAccumulator {
            kind: kind.to_string(),
            count: 0,
            shift: None,
            sum: 0.0,
            sum_sq: 0.0,
            saturated: 0,
            zeros: 0,
            local_grad_sum: 0.0,
            histogram: Histogram::for_kind(kind),
        }
    }

    /// Count one output value.
    #[inline]
    pub fn push(&mut self, v: f64) {
        self.count += 1;
        self.histogram.push(v);
        let shift = *self.shift.get_or_insert(v);
        let d = v - shift;
        self.sum += d;
        self.sum_sq += d * d;
        match self.kind.as_str() {
            "sigmoid" => {
                if !(SIGMOID_SATURATION_MARGIN..=1.0 - SIGMOID_SATURATION_MARGIN).contains(&v) {
                    self.saturated += 1;
                }
                self.local_grad_sum += sigmoid_backprop(1.0, v);
            }
            "tanh" => {
                if v.abs() > TANH_SATURATION_LEVEL {
                    self.saturated += 1;
                }
                self.local_grad_sum += tanh_backprop(1.0, v);
            }
            "relu" => {
                if v == 0.0 {
                    self.zeros += 1;
                } else if v > 0.0 {
                    self.local_grad_sum += 1.0;
                }
            }
            _ => {}
        }
    }

    /// Count every element of a layer output. The same arithmetic as [`Self::push`] per
    /// element, but the kind is matched once per tensor instead of once per element, so
    /// the loop is one tight pass (this is most of the doctor's cost on sampled steps).
    pub fn push_tensor<F: Float>(&mut self, out: &Tensor<F>) {
        with_slice(out, |s| self.push_elements(s));
    }

    /// Count the rows of a layer output `out`, shaped (N, ...), that an evenly strided
    /// sample picks: rows 0, s, 2s, ... with the stride s chosen so that at least
    /// `max_values` elements are counted when the tensor has that many (every row when
    /// `max_values >= out.len()`). A row is one example, so the sample is `ceil(max_values
    /// / row length)` whole examples spread over the batch. Returns the number of rows
    /// counted.
    ///
    /// This is what the doctor uses on sampled steps ([`ACTIVATION_SAMPLE_VALUES`]): the
    /// fractions it reports (saturated, zero) are means over elements, whose standard error
    /// over two thousand values is about 1%, far below the gaps between the sick and
    /// healthy examples.
    pub fn push_rows<F: Float>(&mut self, out: &Tensor<F>, max_values: usize) -> usize {
        let rows = out.shape().first().copied().unwrap_or(1).max(1);
        let row_len = out.len() / rows;
        if row_len == 0 {
            return 0;
        }
        let want = max_values.div_ceil(row_len).clamp(1, rows);
        if want == rows {
            self.push_tensor(out);
            return rows;
        }
        let stride = rows / want;
        // Rows need the logical (row-major) order; a standard-layout tensor is borrowed.
        let standard = out.as_standard_layout();
        let s = standard.as_slice().expect("standard layout");
        for r in (0..rows).step_by(stride).take(want) {
            self.push_elements(&s[r * row_len..(r + 1) * row_len]);
        }
        want
    }

    /// [`Self::push_tensor`] on a slice of elements.
    fn push_elements<F: Float>(&mut self, s: &[F]) {
        match self.kind.as_str() {
            "sigmoid" => self.push_slice(s, |v| {
                let sat = !(SIGMOID_SATURATION_MARGIN..=1.0 - SIGMOID_SATURATION_MARGIN).contains(&v);
                (u64::from(sat), 0, sigmoid_backprop(1.0, v))
            }),
            "tanh" => self.push_slice(s, |v| (u64::from(v.abs() > TANH_SATURATION_LEVEL), 0, tanh_backprop(1.0, v))),
            "relu" => self.push_slice(s, |v| {
                if v == 0.0 {
                    (0, 1, 0.0)
                } else if v > 0.0 {
                    (0, 0, 1.0)
                } else {
                    (0, 0, 0.0)
                }
            }),
            _ => self.push_slice(s, |_| (0, 0, 0.0)),
        }
    }

    /// The body of [`Self::push`] over a slice, with the kind-specific part `per_kind(v)` =
    /// (saturated?, zero?, local gradient) inlined; sums are kept in locals.
    #[inline]
    fn push_slice<F: Float>(&mut self, s: &[F], per_kind: impl Fn(f64) -> (u64, u64, f64)) {
        let Some(first) = s.first() else { return };
        let shift = *self.shift.get_or_insert(first.to_f64c());
        let (mut sum, mut sum_sq, mut saturated, mut zeros, mut local) = (0.0, 0.0, 0, 0, 0.0);
        let h = &mut self.histogram;
        let (lo, hi, bins, scale) = (h.lo, h.hi, h.counts.len(), h.bins_per_unit());
        for v in s {
            let v = v.to_f64c();
            if v.is_nan() {
                h.nan += 1;
            } else if v < lo {
                h.below += 1;
            } else if v > hi {
                h.above += 1;
            } else {
                let i = ((v - lo) * scale) as usize;
                h.counts[i.min(bins - 1)] += 1;
            }
            let d = v - shift;
            sum += d;
            sum_sq += d * d;
            let (sat, zero, lg) = per_kind(v);
            saturated += sat;
            zeros += zero;
            local += lg;
        }
        self.count += s.len() as u64;
        self.sum += sum;
        self.sum_sq += sum_sq;
        self.saturated += saturated;
        self.zeros += zeros;
        self.local_grad_sum += local;
    }

    /// The summary for layer `index` at `step` (no input gradient yet: see
    /// [`LayerStats::record_grad_in`]).
    pub fn finish(self, index: usize, step: usize) -> LayerStats {
        let n = self.count.max(1) as f64;
        let mean_d = self.sum / n;
        let var = (self.sum_sq / n - mean_d * mean_d).max(0.0);
        let frac = |k: u64| k as f64 / n;
        let (saturated_fraction, zero_fraction) = match self.kind.as_str() {
            "sigmoid" | "tanh" => (Some(frac(self.saturated)), None),
            "relu" => (None, Some(frac(self.zeros))),
            _ => (None, None),
        };
        let mean_local_grad = match self.kind.as_str() {
            "sigmoid" | "tanh" | "relu" => Some(self.local_grad_sum / n),
            _ => None,
        };
        LayerStats {
            index,
            kind: self.kind,
            step,
            count: self.count,
            act_mean: self.shift.unwrap_or(0.0) + mean_d,
            act_std: var.sqrt(),
            histogram: self.histogram,
            saturated_fraction,
            zero_fraction,
            mean_local_grad,
            grad_in_norm: None,
            grad_in_count: 0,
        }
    }
}

/// One trainable parameter at one sampled step, read in `Observer::on_step` (gradients of
/// this step, weights before the update).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamStats {
    /// Index of the layer that owns it.
    pub layer: usize,
    /// That layer's kind.
    pub layer_kind: String,
    /// The parameter's name within the layer (`"W"`, `"b"`, `"Wh"`, ...).
    pub name: String,
    /// The training step.
    pub step: usize,
    /// Whether it is a weight matrix (`Param::decay`): only weights are judged by the
    /// update-ratio detector; biases and norm scales start at 0 or 1 and have no scale of
    /// their own to compare with.
    pub is_weight: bool,
    /// ||W|| (Frobenius) before the update.
    pub weight_norm: f64,
    /// ||dW|| (Frobenius) of this step's gradient.
    pub grad_norm: f64,
    /// Learning rate of this step.
    pub lr: f64,
    /// ||W_after - W_before|| when the recorder measured the update the optimiser actually
    /// applied. With momentum, RMSProp or Adam the step is not lr*dW (Adam's is about lr per
    /// element whatever the gradient's size), so a recorder that can should fill this.
    pub update_norm: Option<f64>,
}

impl ParamStats {
    /// The update-to-weight ratio `|update| / |W|`: `update_norm` when measured, else
    /// `lr * |dW|` (exact for plain SGD). Infinite when `|W| = 0`.
    pub fn update_ratio(&self) -> f64 {
        self.update_norm.unwrap_or(self.lr * self.grad_norm) / self.weight_norm
    }
}

/// "Ever fired" counts of a ReLU layer's units over a full pass of the training set: a unit
/// is dead when its count is 0 after every example has been seen.
///
/// A unit is one column of the layer's output flattened to (N, units), a hidden unit of an
/// MLP; for a convolutional feature map (N, C, H, W) it is a channel, which fires on an
/// example when any of its positions is > 0 ([`DeadUnitPass::observe_channels`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadUnitPass {
    /// Index of the layer.
    pub layer: usize,
    /// Its kind (`"relu"`; other kinds are ignored by the detector).
    pub kind: String,
    /// The training step after which the pass was made.
    pub step: usize,
    /// Examples seen in the pass.
    pub examples: u64,
    /// For each unit, on how many examples its output was > 0.
    pub fire_counts: Vec<u64>,
    /// Whether the units are the channels of a (N, C, H, W) feature map.
    #[serde(default)]
    pub per_channel: bool,
}

impl DeadUnitPass {
    /// An empty pass over a layer of `units` units.
    pub fn new(layer: usize, kind: &str, step: usize, units: usize) -> Self {
        DeadUnitPass {
            layer,
            kind: kind.to_string(),
            step,
            examples: 0,
            fire_counts: vec![0; units],
            per_channel: false,
        }
    }

    /// Count one batch of the layer's output, shaped (N, ...) with `units` elements per
    /// example. Panics on another size.
    pub fn observe<F: Float>(&mut self, out: &Tensor<F>) {
        let n = out.shape().first().copied().unwrap_or(0);
        let units = self.fire_counts.len();
        assert_eq!(
            out.len(),
            n * units,
            "dead-unit pass: the output has {} elements, expected {n} x {units}",
            out.len()
        );
        let out = out.as_standard_layout();
        for (i, v) in out.as_slice().expect("standard layout").iter().enumerate() {
            if *v > F::zero() {
                self.fire_counts[i % units] += 1;
            }
        }
        self.examples += n as u64;
    }

    /// Count one batch of a feature map (N, C, H, W) per channel: channel c fires on an
    /// example when any of its H x W outputs is > 0. Panics unless C is the pass's units.
    pub fn observe_channels<F: Float>(&mut self, out: &Tensor<F>) {
        let shape = out.shape();
        assert_eq!(shape.len(), 4, "dead-unit pass per channel: expected (N, C, H, W), got {shape:?}");
        let (n, c) = (shape[0], shape[1]);
        assert_eq!(c, self.fire_counts.len(), "dead-unit pass: {c} channels, expected {}", self.fire_counts.len());
        self.per_channel = true;
        let plane = shape[2] * shape[3];
        let out = out.as_standard_layout();
        let v = out.as_slice().expect("standard layout");
        for i in 0..n {
            for ch in 0..c {
                let start = (i * c + ch) * plane;
                if v[start..start + plane].iter().any(|x| *x > F::zero()) {
                    self.fire_counts[ch] += 1;
                }
            }
        }
        self.examples += n as u64;
    }

    /// Indices of the units that never fired.
    pub fn dead_units(&self) -> Vec<usize> {
        self.fire_counts.iter().enumerate().filter(|(_, &c)| c == 0).map(|(i, _)| i).collect()
    }

    /// Share of the units that never fired (0 for a layer without units).
    pub fn dead_fraction(&self) -> f64 {
        if self.fire_counts.is_empty() {
            0.0
        } else {
            self.dead_units().len() as f64 / self.fire_counts.len() as f64
        }
    }
}

/// Back-propagation-through-time statistics of one recurrent layer at one sampled step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BpttStats {
    /// Index of the layer.
    pub layer: usize,
    /// Its kind (`"rnn"`, `"lstm"`).
    pub kind: String,
    /// The training step.
    pub step: usize,
    /// `norms_per_t[t] = ||dL/dh_t||`, the total gradient into each hidden state
    /// (`layers::rnn::backward_with_norms`), t = 0..T.
    pub norms_per_t: Vec<f64>,
    /// Spectral radius of the recurrent matrix Wh ([`crate::nn::spectral::spectral_radius`]),
    /// as measured at `whh_spectrum_step`.
    pub whh_spectral_radius: Option<f64>,
    /// Largest singular value of Wh ([`crate::nn::spectral::largest_singular_value`]), as
    /// measured at `whh_spectrum_step`.
    pub whh_largest_singular: Option<f64>,
    /// The training step at which the two numbers above were measured: this sample's step
    /// or an earlier one (the recorder decomposes Wh only every few samples; see
    /// `doctor::recorder::SPECTRUM_EVERY_SAMPLES`). `None` when they were not measured.
    #[serde(default)]
    pub whh_spectrum_step: Option<usize>,
}

impl BpttStats {
    /// `||dL/dh_0|| / ||dL/dh_{T-1}||`: how much of the last step's gradient reaches the
    /// first step. `None` for fewer than two steps, a zero last norm, or non-finite norms.
    pub fn ratio(&self) -> Option<f64> {
        let (first, last) = (*self.norms_per_t.first()?, *self.norms_per_t.last()?);
        let ok = self.norms_per_t.len() >= 2 && first.is_finite() && last.is_finite() && last > 0.0;
        ok.then(|| first / last)
    }

    /// Per-step growth factor going back in time: the geometric mean of
    /// `norms[t] / norms[t+1]`, which telescopes to `ratio^(1/(T-1))`.
    pub fn growth_per_step(&self) -> Option<f64> {
        let r = self.ratio()?;
        Some(r.powf(1.0 / (self.norms_per_t.len() - 1) as f64))
    }
}

/// An op whose gradient is exactly zero on whole regions of its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlatOp {
    /// `clip` (clip_by_value): zero gradient strictly outside [lo, hi].
    Clip,
    /// A step/threshold function: zero gradient everywhere it is defined.
    Step,
    /// ReLU: zero gradient where x <= 0 (about half the inputs in a healthy layer).
    Relu,
    /// Max-pooling: the gradient reaches one input per window by construction.
    #[serde(rename = "maxpool")]
    MaxPool,
}

impl FlatOp {
    /// `"clip"`, `"step"`, `"relu"`, `"maxpool"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlatOp::Clip => "clip",
            FlatOp::Step => "step",
            FlatOp::Relu => "relu",
            FlatOp::MaxPool => "maxpool",
        }
    }

    /// Whether zeroing a large share of the gradient is what the op is built to do (relu:
    /// half its inputs are negative in a healthy layer; max-pool: all but one input per
    /// window). The zero-gradient detector ignores those; dead ReLUs are diagnosed per unit
    /// over a full pass by the dead-ReLU detector instead.
    pub fn zeroes_by_design(self) -> bool {
        matches!(self, FlatOp::Relu | FlatOp::MaxPool)
    }
}

/// The global gradient norm of one sampled step, before and after the trainer's
/// global-norm clipping (`train.clip_grad_norm`); equal when clipping is off or did not cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlobalNormSample {
    /// The training step.
    pub step: usize,
    /// ||g|| over every parameter before clipping (what the trainer reports in `StepInfo`).
    pub before: f64,
    /// ||g|| of the gradients the update will use.
    pub after: f64,
}

impl GlobalNormSample {
    /// Whether clipping cut the norm on this step (by more than rounding: 1e-6 relative).
    pub fn clipped(&self) -> bool {
        self.before.is_finite() && self.after < self.before * (1.0 - 1e-6)
    }
}

/// How much of the gradient one flat op blocked at one sampled step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlatOpStats {
    /// Which op.
    pub op: FlatOp,
    /// Where it is, e.g. `"layer 3 (clip)"` or `"td error (clip)"`; serialised as `"where"`.
    #[serde(rename = "where")]
    pub where_: String,
    /// Whether the op clips a DQN's TD error (the fixes then name the `[rl]` keys).
    pub rl: bool,
    /// The training step.
    pub step: usize,
    /// Elements (or samples) whose gradient the op set to exactly zero.
    pub zeroed: u64,
    /// Elements (or samples) the op saw.
    pub total: u64,
    /// The data loss of the step (the gradient is legitimately ~0 only when this is ~0).
    pub loss: f64,
}

impl FlatOpStats {
    /// `zeroed / total` (0 when nothing was seen).
    pub fn share(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.zeroed as f64 / self.total as f64
        }
    }
}

/// Forward or backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    /// The forward pass (outputs, loss).
    Forward,
    /// The backward pass (gradients).
    Backward,
}

impl Pass {
    /// `"forward"` or `"backward"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Pass::Forward => "forward",
            Pass::Backward => "backward",
        }
    }
}

/// The first NaN or Inf seen: which step, which pass, which layer and op.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NonFinite {
    /// The training step.
    pub step: usize,
    /// Forward or backward.
    pub pass: Pass,
    /// Index of the layer, `None` for the loss or the optimiser update.
    pub layer_index: Option<usize>,
    /// The layer's kind, or `"loss"` / `"update"`.
    pub layer_kind: String,
    /// The op within the layer, e.g. `"exp"` or `"matmul"` when known, else the layer kind.
    pub op: String,
    /// NaN elements in that tensor.
    pub nan_count: u64,
    /// Infinite elements in that tensor.
    pub inf_count: u64,
}

impl NonFinite {
    /// Order of occurrence: earlier step first, forward before backward, and within the
    /// forward pass lower layers first, within the backward pass higher layers first.
    pub fn occurs_before(&self, other: &NonFinite) -> bool {
        let key = |n: &NonFinite| {
            let layer = n.layer_index.map(|i| i as i64).unwrap_or(i64::MAX);
            let within = if n.pass == Pass::Forward { layer } else { -layer };
            (n.step, n.pass, within)
        };
        key(self) < key(other)
    }

    /// NaN and Inf counts of a tensor, `None` when every element is finite.
    pub fn count<F: Float>(t: &Tensor<F>) -> Option<(u64, u64)> {
        with_slice(t, |s| {
            // v * 0 is 0 for every finite v and NaN for NaN or +-Inf: one vectorisable pass
            // answers "all finite?", and only a tensor that is not is counted in detail.
            // Eight independent lanes so the adds vectorise (one chain would serialise).
            let mut lanes = [F::zero(); 8];
            let chunks = s.chunks_exact(8);
            let rest = chunks.remainder().iter().fold(F::zero(), |a, &v| a + v * F::zero());
            for c in chunks {
                for k in 0..8 {
                    lanes[k] += c[k] * F::zero();
                }
            }
            if lanes.iter().fold(rest, |a, &l| a + l) == F::zero() {
                return None;
            }
            let nan = s.iter().filter(|v| v.is_nan()).count() as u64;
            let inf = s.iter().filter(|v| v.is_infinite()).count() as u64;
            (nan + inf > 0).then_some((nan, inf))
        })
    }
}

/// The loss at step 0 and what the initialisation predicts for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitLoss {
    /// The loss function (`"softmax"`, `"svm"`, ...).
    pub loss_kind: String,
    /// The measured data loss of step 0.
    pub loss: f64,
    /// What small initial scores predict.
    pub expected: f64,
    /// Number of classes C.
    pub classes: usize,
}

impl InitLoss {
    /// Softmax cross-entropy: near-zero scores give a uniform softmax, loss `ln C` (CS231n,
    /// "Neural Networks Part 3": 2.302 for CIFAR-10).
    pub fn softmax(loss: f64, classes: usize) -> Self {
        InitLoss { loss_kind: "softmax".into(), loss, expected: (classes as f64).ln(), classes }
    }

    /// Multiclass SVM hinge with margin 1: near-zero scores violate every margin by 1, loss
    /// `C - 1` (CS231n, same notes: 9 for CIFAR-10).
    pub fn svm(loss: f64, classes: usize) -> Self {
        InitLoss { loss_kind: "svm".into(), loss, expected: classes as f64 - 1.0, classes }
    }

    /// `(loss - expected) / expected`: positive when the loss is higher than predicted.
    pub fn relative_deviation(&self) -> f64 {
        (self.loss - self.expected) / self.expected
    }
}

/// Per-feature summary of the training inputs (before any model sees them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputStats {
    /// Number of features D.
    pub features: usize,
    /// Number of examples N.
    pub examples: u64,
    /// max over features of |mean_j|.
    pub feature_mean_abs_max: f64,
    /// mean over features of |mean_j|.
    pub feature_mean_abs_mean: f64,
    /// Smallest std over the non-constant features (0 when all are constant).
    pub feature_std_min: f64,
    /// Largest std over the features.
    pub feature_std_max: f64,
    /// Mean std over the non-constant features (0 when all are constant).
    pub feature_std_mean: f64,
    /// Features whose std is below [`CONSTANT_FEATURE_STD`] (e.g. always-blank pixels):
    /// they carry no information and are left out of the std summaries.
    pub constant_features: usize,
}

/// A feature whose standard deviation is below this is constant (rounding noise of a
/// constant column is far below it).
pub const CONSTANT_FEATURE_STD: f64 = 1e-12;

/// Builds [`InputStats`] one example at a time (Welford's per-feature mean and variance).
#[derive(Clone, Debug)]
pub struct InputAccumulator {
    n: u64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl InputAccumulator {
    /// An empty accumulator for `features` features.
    pub fn new(features: usize) -> Self {
        InputAccumulator { n: 0, mean: vec![0.0; features], m2: vec![0.0; features] }
    }

    /// Count one example. Panics when its length is not the number of features.
    pub fn push_row(&mut self, row: impl IntoIterator<Item = f64>) {
        self.n += 1;
        let n = self.n as f64;
        let mut k = 0;
        for (j, v) in row.into_iter().enumerate() {
            assert!(j < self.mean.len(), "input stats: row longer than {} features", self.mean.len());
            let d = v - self.mean[j];
            self.mean[j] += d / n;
            self.m2[j] += d * (v - self.mean[j]);
            k = j + 1;
        }
        assert_eq!(k, self.mean.len(), "input stats: row has {k} features, expected {}", self.mean.len());
    }

    /// The summary.
    pub fn finish(&self) -> InputStats {
        let d = self.mean.len();
        let n = self.n.max(1) as f64;
        let stds: Vec<f64> = self.m2.iter().map(|m| (m / n).max(0.0).sqrt()).collect();
        let live: Vec<f64> = stds.iter().copied().filter(|&s| s >= CONSTANT_FEATURE_STD).collect();
        let abs_means = self.mean.iter().map(|m| m.abs());
        InputStats {
            features: d,
            examples: self.n,
            feature_mean_abs_max: abs_means.clone().fold(0.0, f64::max),
            feature_mean_abs_mean: if d == 0 { 0.0 } else { abs_means.sum::<f64>() / d as f64 },
            feature_std_min: if live.is_empty() { 0.0 } else { live.iter().copied().fold(f64::INFINITY, f64::min) },
            feature_std_max: stds.iter().copied().fold(0.0, f64::max),
            feature_std_mean: if live.is_empty() { 0.0 } else { live.iter().sum::<f64>() / live.len() as f64 },
            constant_features: d - live.len(),
        }
    }
}

/// One batch norm layer's running statistics next to the per-feature mean and variance of
/// its input over every example of a data set, measured in eval mode (the inputs the layer
/// gets when the model is used): [`crate::doctor::Doctor::batchnorm_pass`].
///
/// A feature is a column of an (N, D) input (`batchnorm`) or a channel of an (N, C, H, W)
/// one (`spatial_batchnorm`, its N x H x W values together). Every vector has one entry per
/// feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormStats {
    /// Index of the batch norm layer.
    pub layer: usize,
    /// Its kind (`"batchnorm"` or `"spatial_batchnorm"`).
    pub kind: String,
    /// Examples in the pass.
    pub examples: u64,
    /// Values per feature in the pass: N, or N x H x W per channel.
    pub values_per_feature: u64,
    /// The data's per-feature mean of the layer's input.
    pub data_mean: Vec<f64>,
    /// The data's per-feature (biased) variance of the layer's input.
    pub data_var: Vec<f64>,
    /// The layer's `running_mean`.
    pub running_mean: Vec<f64>,
    /// The layer's `running_var`.
    pub running_var: Vec<f64>,
    /// The layer's eps (added to the variance before the square root).
    pub eps: f64,
    /// How many batches updated the running statistics, when the checkpoint says
    /// (PyTorch's `num_batches_tracked`).
    #[serde(default)]
    pub batches_tracked: Option<u64>,
}

impl BatchNormStats {
    /// Number of features.
    pub fn features(&self) -> usize {
        self.data_mean.len()
    }

    /// Feature `j`'s mean shift in units of the data's standard deviation:
    /// `(data_mean - running_mean) / sqrt(data_var + eps)`.
    pub fn mean_shift(&self, j: usize) -> f64 {
        (self.data_mean[j] - self.running_mean[j]) / (self.data_var[j] + self.eps).sqrt()
    }

    /// Feature `j`'s variance ratio `(data_var + eps) / (running_var + eps)`: 1 when the
    /// running variance fits the data, the square of the factor by which eval mode rescales
    /// the normalised activations.
    pub fn var_ratio(&self, j: usize) -> f64 {
        (self.data_var[j] + self.eps) / (self.running_var[j] + self.eps)
    }
}

/// Per-feature mean and variance of a layer's input, accumulated batch by batch in f64: each
/// batch's own mean and sum of squared deviations, merged with the pairwise update of Chan,
/// Golub & LeVeque (1979), which stays exact where a running sum of squares would cancel.
/// Features are the columns of an (N, D) batch or the channels of an (N, C, H, W) one.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMoments {
    examples: u64,
    count: u64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl FeatureMoments {
    /// Nothing seen yet, for `features` features.
    pub fn new(features: usize) -> Self {
        FeatureMoments { examples: 0, count: 0, mean: vec![0.0; features], m2: vec![0.0; features] }
    }

    /// Count one batch: (N, D) with D the number of features, or (N, C, H, W) with C the
    /// number of features. Panics on another shape.
    pub fn push<F: Float>(&mut self, x: &Tensor<F>) {
        let shape = x.shape().to_vec();
        let d = self.mean.len();
        let (n, plane) = match shape.as_slice() {
            [n, c] if *c == d => (*n, 1),
            [n, c, h, w] if *c == d => (*n, h * w),
            _ => panic!("feature moments: expected (N, {d}) or (N, {d}, H, W), got {shape:?}"),
        };
        let per = (n * plane) as u64;
        if per == 0 {
            return;
        }
        let x = x.as_standard_layout();
        let v = x.as_slice().expect("standard layout");
        // Example i's feature j is the run of `plane` values from (i * d + j) * plane.
        let runs = |j: usize| (0..n).flat_map(move |i| v[(i * d + j) * plane..(i * d + j + 1) * plane].iter());
        let bmean: Vec<f64> = (0..d).map(|j| runs(j).map(|e| e.to_f64c()).sum::<f64>() / per as f64).collect();
        let bm2: Vec<f64> = (0..d)
            .map(|j| {
                runs(j)
                    .map(|e| {
                        let dev = e.to_f64c() - bmean[j];
                        dev * dev
                    })
                    .sum()
            })
            .collect();
        let (na, nb) = (self.count as f64, per as f64);
        let total = na + nb;
        for j in 0..d {
            let delta = bmean[j] - self.mean[j];
            self.mean[j] += delta * nb / total;
            self.m2[j] += bm2[j] + delta * delta * na * nb / total;
        }
        self.count += per;
        self.examples += n as u64;
    }

    /// Examples seen.
    pub fn examples(&self) -> u64 {
        self.examples
    }

    /// Values seen per feature.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Per-feature means.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Per-feature biased variances (0 before any value).
    pub fn var(&self) -> Vec<f64> {
        let n = self.count.max(1) as f64;
        self.m2.iter().map(|m| (m / n).max(0.0)).collect()
    }
}

/// What the doctor knows about how the run was configured: the detectors that suggest a
/// setting need the current one (a learning rate is suggested relative to the one in use,
/// and a fix that sets what is already set is dropped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The loss (`Loss::name`: `"softmax"`, `"mse"`, `"clipped_mse"`, ...), when known.
    #[serde(default)]
    pub loss: Option<String>,
    /// Number of classes C of a classifier (0 when not a classifier or unknown).
    #[serde(default)]
    pub classes: usize,
    /// Planned number of epochs, when known (lets `not_learning` wait for a fair share of
    /// the run while training is still going).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// The experiment's current values of the keys that fixes set, as dotted keys
    /// (`"train.lr"`, `"train.optimizer"`, `"train.clip_grad_norm"`, `"model.init"`,
    /// `"model.activation"`, `"data.normalize"`, ...). Whatever is known; may be empty.
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, serde_json::Value>,
    /// Whether this is reinforcement learning (a DQN): its TD loss is not a fixed objective
    /// and grows while the agent learns, so loss-curve detectors judge only NaN/Inf.
    #[serde(default)]
    pub rl: bool,
}

impl RunInfo {
    /// The base learning rate (`settings["train.lr"]`), when known and positive.
    pub fn lr(&self) -> Option<f64> {
        self.settings.get("train.lr").and_then(serde_json::Value::as_f64).filter(|v| v.is_finite() && *v > 0.0)
    }

    /// The optimiser's name (`settings["train.optimizer"]`), when known.
    pub fn optimizer(&self) -> Option<&str> {
        self.settings.get("train.optimizer").and_then(serde_json::Value::as_str)
    }

    /// Whether global-norm clipping is configured (`settings["train.clip_grad_norm"] > 0`).
    pub fn clipping(&self) -> bool {
        self.settings.get("train.clip_grad_norm").and_then(serde_json::Value::as_f64).is_some_and(|c| c > 0.0)
    }
}

/// One epoch's summary as the trainer reports it. `epoch` counts from 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Mean minibatch training loss of the epoch.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    /// Training accuracy at the end of the epoch (NaN when not a classifier).
    #[serde(deserialize_with = "nan_if_null")]
    pub train_acc: f64,
    /// Validation loss (NaN without a validation set).
    #[serde(deserialize_with = "nan_if_null")]
    pub val_loss: f64,
    /// Validation accuracy (NaN without a validation set or when not a classifier).
    #[serde(deserialize_with = "nan_if_null")]
    pub val_acc: f64,
}

/// Saturation of one gate (or the cell output) of a recurrent layer at one sampled step,
/// summarised over an evenly spread sample of its activated values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateStats {
    /// Index of the recurrent layer.
    pub layer: usize,
    /// `"rnn"` or `"lstm"`.
    pub cell: String,
    /// `"h"` (the RNN's tanh output), or the LSTM's `"i"`, `"f"`, `"o"` (sigmoid), `"g"`
    /// (tanh) and `"c"` (tanh of the cell state).
    pub gate: String,
    /// `"sigmoid"` or `"tanh"`.
    pub activation: String,
    /// The training step.
    pub step: usize,
    /// Values summarised.
    pub count: u64,
    /// Share of them in the saturated region ([`SIGMOID_SATURATION_MARGIN`],
    /// [`TANH_SATURATION_LEVEL`]).
    pub saturated_fraction: f64,
    /// Mean local gradient z(1-z) or 1-t^2 over them.
    pub mean_local_grad: f64,
}

/// Counts of one gate's saturation, filled one value at a time (the recurrent model keeps
/// these per gate and the doctor turns them into [`GateStats`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SaturationCount {
    /// Values seen.
    pub count: u64,
    /// Of those, in the saturated region.
    pub saturated: u64,
    /// Sum of the local gradients.
    pub local_grad_sum: f64,
}

impl SaturationCount {
    /// Count one activated value `v` of a `sigmoid` (`sigmoid = true`) or tanh unit.
    #[inline]
    pub fn push(&mut self, v: f64, sigmoid: bool) {
        self.count += 1;
        let (sat, lg) = if sigmoid {
            (!(SIGMOID_SATURATION_MARGIN..=1.0 - SIGMOID_SATURATION_MARGIN).contains(&v), sigmoid_backprop(1.0, v))
        } else {
            (v.abs() > TANH_SATURATION_LEVEL, tanh_backprop(1.0, v))
        };
        self.saturated += u64::from(sat);
        self.local_grad_sum += lg;
    }

    /// `saturated / count` (0 when empty).
    pub fn fraction(&self) -> f64 {
        self.saturated as f64 / self.count.max(1) as f64
    }

    /// Mean local gradient (0 when empty).
    pub fn mean_local_grad(&self) -> f64 {
        self.local_grad_sum / self.count.max(1) as f64
    }
}

/// Deserialise a number that may have been written as `null` (serde_json writes NaN and
/// infinities as `null`) back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// [`nan_if_null`] for a list.
fn nan_if_null_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// Everything recorded during one run: the detectors' only input.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordedStats {
    /// Per layer, per sampled step.
    pub layers: Vec<LayerStats>,
    /// Per parameter, per sampled step.
    pub params: Vec<ParamStats>,
    /// Full passes counting ReLU firing (usually one at the end of training).
    pub dead_units: Vec<DeadUnitPass>,
    /// Per recurrent layer, per sampled step.
    pub bptt: Vec<BpttStats>,
    /// Per flat op, per sampled step.
    pub flat_ops: Vec<FlatOpStats>,
    /// The global gradient norm before and after clipping, per sampled step.
    #[serde(default)]
    pub global_norms: Vec<GlobalNormSample>,
    /// The first NaN/Inf, if any (see [`RecordedStats::record_non_finite`]).
    pub non_finite: Option<NonFinite>,
    /// The loss of step 0.
    pub init_loss: Option<InitLoss>,
    /// The training inputs.
    pub input: Option<InputStats>,
    /// How the run was configured (loss, classes, learning rate, optimiser, ...).
    #[serde(default)]
    pub run: RunInfo,
    /// The data loss of every step (`losses[s]` is step s's; NaN or infinite once the run
    /// diverged).
    #[serde(default, deserialize_with = "nan_if_null_vec")]
    pub losses: Vec<f64>,
    /// One record per completed epoch.
    #[serde(default)]
    pub epochs: Vec<EpochStats>,
    /// Per recurrent gate, per sampled step.
    #[serde(default)]
    pub gates: Vec<GateStats>,
    /// Per batch norm layer: its running statistics against its input over a data set
    /// (filled by `leaky inspect`; a training run does not record them).
    #[serde(default)]
    pub batchnorm: Vec<BatchNormStats>,
}

impl RecordedStats {
    /// Keep `nf` if it occurred before the one already recorded (or none is).
    pub fn record_non_finite(&mut self, nf: NonFinite) {
        if self.non_finite.as_ref().is_none_or(|old| nf.occurs_before(old)) {
            self.non_finite = Some(nf);
        }
    }
}

/// Run `f` on the elements of `t` as one contiguous slice (in memory order), copying only
/// when `t` is not contiguous: iterating an `IxDyn` array element by element computes a
/// dynamic index per element and costs far more than the statistics themselves.
fn with_slice<F: Float, R>(t: &Tensor<F>, f: impl FnOnce(&[F]) -> R) -> R {
    match t.as_slice_memory_order() {
        Some(s) => f(s),
        None => f(t.as_standard_layout().as_slice().expect("standard layout")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn channels_fire_when_any_position_fires_brute_force() {
        use crate::tensor::{randn, rng};
        // (N, C, H, W) with channel 1 always <= 0 and channel 2 positive at one position of
        // one example only.
        let mut x: crate::Tensor<f64> = randn(ndarray::IxDyn(&[5, 3, 4, 4]), 1.0, &mut rng(3));
        for n in 0..5 {
            for h in 0..4 {
                for w in 0..4 {
                    x[[n, 1, h, w]] = -x[[n, 1, h, w]].abs();
                    x[[n, 2, h, w]] = -1.0;
                }
            }
        }
        x[[3, 2, 1, 2]] = 0.5;
        let mut p = DeadUnitPass::new(0, "relu", 0, 3);
        p.observe_channels(&x.slice(ndarray::s![0..2, .., .., ..]).to_owned().into_dyn());
        p.observe_channels(&x.slice(ndarray::s![2..5, .., .., ..]).to_owned().into_dyn());
        // Brute force: per channel, the examples with any value > 0.
        let brute: Vec<u64> = (0..3)
            .map(|c| (0..5).filter(|&n| x.slice(ndarray::s![n, c, .., ..]).iter().any(|&v| v > 0.0)).count() as u64)
            .collect();
        assert_eq!(p.fire_counts, brute);
        assert_eq!(p.dead_units(), vec![1]);
        assert_eq!(p.fire_counts[2], 1);
        assert!(p.per_channel && p.examples == 5);
    }

    use super::*;
    use ndarray::{array, IxDyn};

    #[test]
    fn feature_moments_merge_batches_exactly() {
        use crate::tensor::{randn, rng};
        // (N, C, H, W) with channel means far from 0 (where a sum of squares would cancel),
        // pushed in three uneven batches; then (N, D) rows.
        let mut x: crate::Tensor<f64> = randn(IxDyn(&[7, 3, 2, 5]), 1.0, &mut rng(4));
        for (k, v) in x.iter_mut().enumerate() {
            *v = *v * (1.0 + (k / 10 % 3) as f64) + 1e4 * ((k / 10 % 3) as f64);
        }
        let mut m = FeatureMoments::new(3);
        for (a, b) in [(0, 2), (2, 3), (3, 7)] {
            m.push(&x.slice(ndarray::s![a..b, .., .., ..]).to_owned().into_dyn());
        }
        assert_eq!((m.examples(), m.count()), (7, 70));
        for c in 0..3 {
            let vals: Vec<f64> = x.slice(ndarray::s![.., c, .., ..]).iter().copied().collect();
            let mean = vals.iter().sum::<f64>() / 70.0;
            let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 70.0;
            assert!((m.mean()[c] - mean).abs() < 1e-9 * mean.abs().max(1.0), "{c}");
            assert!((m.var()[c] - var).abs() < 1e-9 * var, "{c}: {} vs {var}", m.var()[c]);
        }
        let rows = array![[1.0f32, 10.0], [3.0, 10.0], [5.0, 10.0]].into_dyn();
        let mut m = FeatureMoments::new(2);
        m.push(&rows);
        assert_eq!(m.mean(), &[3.0, 10.0]);
        assert_eq!(m.var(), vec![8.0 / 3.0, 0.0]);
    }

    #[test]
    fn activation_accumulator_sigmoid() {
        let mut a = ActivationAccumulator::new("sigmoid");
        for v in [0.005, 0.5, 0.995, 0.01, 0.99] {
            a.push(v);
        }
        let s = a.finish(1, 7);
        assert_eq!((s.index, s.step, s.count), (1, 7, 5));
        // 0.01 and 0.99 are on the boundary: not saturated.
        assert_eq!(s.saturated_fraction, Some(0.4));
        let lg = [0.005, 0.5, 0.995, 0.01, 0.99].iter().map(|z| z * (1.0 - z)).sum::<f64>() / 5.0;
        assert!((s.mean_local_grad.unwrap() - lg).abs() < 1e-15);
        assert!((s.act_mean - 0.5).abs() < 1e-12);
        assert_eq!(s.histogram.total(), 5);
        assert_eq!(s.histogram.counts[0], 2);
        assert_eq!(s.histogram.counts[HISTOGRAM_BINS - 1], 2);
        assert!(s.zero_fraction.is_none());
    }

    #[test]
    fn activation_accumulator_relu_and_std() {
        let mut a = ActivationAccumulator::new("relu");
        let x: Tensor<f32> = Tensor::from_shape_vec(IxDyn(&[2, 2]), vec![0.0, 2.0, 0.0, 4.0]).unwrap();
        a.push_tensor(&x);
        let mut s = a.finish(0, 0);
        assert_eq!(s.zero_fraction, Some(0.5));
        assert_eq!(s.mean_local_grad, Some(0.5));
        assert!((s.act_mean - 1.5).abs() < 1e-12);
        // population std of [0, 2, 0, 4]: sqrt(11/4)
        assert!((s.act_std - (11.0f64 / 4.0).sqrt()).abs() < 1e-12);
        s.record_grad_in(&x);
        assert_eq!(s.grad_in_norm, Some(20f64.sqrt()));
        assert_eq!(s.grad_in_rms(), Some(5f64.sqrt()));
        // Large offset, small spread: the shifted sums keep the std.
        let mut b = ActivationAccumulator::new("affine");
        for v in [1e9 + 1.0, 1e9 - 1.0, 1e9 + 1.0, 1e9 - 1.0] {
            b.push(v);
        }
        assert!((b.finish(0, 0).act_std - 1.0).abs() < 1e-9);
    }

    /// Bin edges of the relu histogram [0, 5] in 20 bins of 0.25: a value on an edge goes to
    /// the bin above it, `hi` itself to the last bin, values outside and NaN to their counters.
    #[test]
    fn histogram_bins_and_edges() {
        let mut h = Histogram::for_kind("relu");
        for v in [0.0, 0.2499, 0.25, 1.0, 4.99, 5.0, 5.01, -0.1, f64::NAN, f64::INFINITY] {
            h.push(v);
        }
        assert_eq!(h.counts[0], 2, "0 and 0.2499");
        assert_eq!(h.counts[1], 1, "0.25 starts bin 1");
        assert_eq!(h.counts[4], 1, "1.0 starts bin 4");
        assert_eq!(h.counts[19], 2, "4.99 and hi = 5");
        assert_eq!((h.below, h.above, h.nan), (1, 2, 1));
        assert_eq!(h.total(), 10);
        // The tensor path bins the same way.
        let mut a = ActivationAccumulator::new("relu");
        let x: Tensor<f64> = Tensor::from_shape_vec(IxDyn(&[1, 6]), vec![0.0, 0.2499, 0.25, 1.0, 4.99, 5.0]).unwrap();
        a.push_tensor(&x);
        let s = a.finish(0, 0);
        assert_eq!(&s.histogram.counts[..], &h.counts[..]);
    }

    #[test]
    fn push_rows_takes_whole_evenly_spread_rows() {
        // 8 rows of 3; row r holds r in every element, so the mean says which rows were read.
        let x: Tensor<f64> = Tensor::from_shape_fn(IxDyn(&[8, 3]), |d| d[0] as f64);
        // 6 values -> 2 rows at stride 4: rows 0 and 4.
        let mut a = ActivationAccumulator::new("relu");
        assert_eq!(a.push_rows(&x, 6), 2);
        let s = a.finish(0, 0);
        assert_eq!(s.count, 6);
        assert!((s.act_mean - 2.0).abs() < 1e-12);
        assert_eq!(s.zero_fraction, Some(0.5), "row 0 is all zeros, row 4 all fours");
        // 7 values round up to 3 whole rows at stride 2: rows 0, 2, 4.
        let mut a = ActivationAccumulator::new("affine");
        assert_eq!(a.push_rows(&x, 7), 3);
        let s = a.finish(0, 0);
        assert_eq!(s.count, 9);
        assert!((s.act_mean - 2.0).abs() < 1e-12);
        // Enough room for everything: the same as push_tensor.
        let mut a = ActivationAccumulator::new("affine");
        assert_eq!(a.push_rows(&x, 24), 8);
        let mut b = ActivationAccumulator::new("affine");
        b.push_tensor(&x);
        assert_eq!(a.finish(0, 0), b.finish(0, 0));
        // A transposed (column-major) view is read in logical row order.
        let t: Tensor<f64> = Tensor::from_shape_fn(IxDyn(&[3, 8]), |d| d[1] as f64);
        let f = t.t().to_owned();
        assert!(!f.is_standard_layout(), "the test needs a column-major tensor");
        let mut a = ActivationAccumulator::new("affine");
        a.push_rows(&f, 6);
        assert!((a.finish(0, 0).act_mean - 2.0).abs() < 1e-12);
    }

    #[test]
    fn tanh_saturation_boundary() {
        let mut a = ActivationAccumulator::new("tanh");
        for v in [0.99, -0.99, 0.995, -0.999, 0.0] {
            a.push(v);
        }
        assert_eq!(a.finish(0, 0).saturated_fraction, Some(0.4));
    }

    #[test]
    fn dead_unit_pass_counts_columns() {
        let mut p = DeadUnitPass::new(1, "relu", 10, 3);
        let b1: Tensor<f64> = array![[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]].into_dyn();
        let b2: Tensor<f64> = array![[0.0, 0.0, 0.5]].into_dyn();
        p.observe(&b1);
        p.observe(&b2);
        assert_eq!(p.examples, 3);
        assert_eq!(p.fire_counts, vec![0, 2, 1]);
        assert_eq!(p.dead_units(), vec![0]);
        assert!((p.dead_fraction() - 1.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn bptt_growth_telescopes() {
        let b = BpttStats {
            layer: 0,
            kind: "rnn".into(),
            step: 0,
            norms_per_t: vec![1.0, 2.0, 4.0, 8.0],
            whh_spectral_radius: None,
            whh_largest_singular: None,
            whh_spectrum_step: None,
        };
        assert_eq!(b.ratio(), Some(0.125));
        assert!((b.growth_per_step().unwrap() - 0.5).abs() < 1e-15);
        let short = BpttStats { norms_per_t: vec![1.0], ..b };
        assert_eq!(short.ratio(), None);
    }

    #[test]
    fn input_accumulator() {
        let mut a = InputAccumulator::new(3);
        for row in [[1.0, 10.0, 5.0], [3.0, 10.0, 5.0], [5.0, 10.0, 5.0]] {
            a.push_row(row);
        }
        let s = a.finish();
        assert_eq!((s.features, s.examples, s.constant_features), (3, 3, 2));
        assert!((s.feature_mean_abs_max - 10.0).abs() < 1e-12);
        assert!((s.feature_mean_abs_mean - 6.0).abs() < 1e-12);
        let std0 = (8.0f64 / 3.0).sqrt();
        assert!((s.feature_std_min - std0).abs() < 1e-12);
        assert!((s.feature_std_max - std0).abs() < 1e-12);
        assert!((s.feature_std_mean - std0).abs() < 1e-12);
    }

    #[test]
    fn first_non_finite_wins() {
        let nf = |step, pass, layer: Option<usize>| NonFinite {
            step,
            pass,
            layer_index: layer,
            layer_kind: "affine".into(),
            op: "matmul".into(),
            nan_count: 1,
            inf_count: 0,
        };
        let mut r = RecordedStats::default();
        r.record_non_finite(nf(5, Pass::Backward, Some(3)));
        r.record_non_finite(nf(5, Pass::Backward, Some(1))); // later in the backward pass
        assert_eq!(r.non_finite.as_ref().unwrap().layer_index, Some(3));
        r.record_non_finite(nf(5, Pass::Forward, Some(4)));
        assert_eq!(r.non_finite.as_ref().unwrap().pass, Pass::Forward);
        r.record_non_finite(nf(5, Pass::Forward, Some(2)));
        assert_eq!(r.non_finite.as_ref().unwrap().layer_index, Some(2));
        r.record_non_finite(nf(4, Pass::Backward, None));
        assert_eq!(r.non_finite.as_ref().unwrap().step, 4);
        let t: Tensor<f32> = array![1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY].into_dyn();
        assert_eq!(NonFinite::count(&t), Some((1, 2)));
    }

    #[test]
    fn stats_serialise() {
        let mut r = RecordedStats::default();
        r.flat_ops.push(FlatOpStats {
            op: FlatOp::MaxPool,
            where_: "layer 2 (maxpool)".into(),
            rl: false,
            step: 0,
            zeroed: 3,
            total: 4,
            loss: 1.0,
        });
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["flat_ops"][0]["op"], "maxpool");
        assert_eq!(v["flat_ops"][0]["where"], "layer 2 (maxpool)");
        let back: RecordedStats = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
