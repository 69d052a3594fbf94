//! Composition: the [`Layer`] trait, [`Sequential`], and model builders.
//!
//! A [`Layer`] owns its parameters and the cache of its last forward pass; `forward` then
//! `backward` is one step, and `backward` **overwrites** each parameter's `grad`. Every
//! layer family implements the trait at the bottom of its file in [`crate::layers`], on
//! top of its free `forward`/`backward` functions.

pub mod mlp;
pub mod seq;
pub mod spectral;

use crate::tensor::{Float, RngState, Tensor};

pub use mlp::{Activation, MlpSpec};

/// Training or evaluation behaviour (batch norm statistics, dropout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Use batch statistics, drop units.
    Train,
    /// Use running statistics, keep every unit.
    Eval,
}

/// A trainable array and its gradient (same shape).
#[derive(Clone, Debug)]
pub struct Param<F> {
    /// Short name within its layer: `"W"`, `"b"`, `"gamma"`, `"beta"`, `"Wx"`, ...
    pub name: &'static str,
    /// The values.
    pub value: Tensor<F>,
    /// dLoss/dvalue from the last backward pass.
    pub grad: Tensor<F>,
    /// Whether L2 weight decay applies (weights yes; biases and norm scales no).
    pub decay: bool,
}

impl<F: Float> Param<F> {
    /// A parameter with a zero gradient of the same shape.
    pub fn new(name: &'static str, value: Tensor<F>, decay: bool) -> Self {
        let grad = Tensor::zeros(value.raw_dim());
        Param { name, value, grad, decay }
    }
}

/// A layer with an explicit forward and backward pass.
pub trait Layer<F: Float>: Send + Sync {
    /// The layer family, e.g. `"affine"`, `"relu"`, `"batchnorm"`.
    fn kind(&self) -> &'static str;

    /// A one-line description with sizes, e.g. `"affine 64->100"`.
    fn describe(&self) -> String {
        self.kind().to_string()
    }

    /// Whether the layer maps finite values to finite values in both passes, whatever its
    /// state: finite input gives a finite output, and a finite `dout` a finite `dx`. True for
    /// the elementwise nonlinearities (relu, leaky relu, sigmoid, tanh), whose outputs and
    /// local gradients are bounded by their inputs (|relu(x)| <= |x|, sigmoid and tanh in
    /// [-1, 1], local gradients in [0, 1]); false by default. The doctor's always-on NaN/Inf
    /// scan skips such a layer when its input was scanned: a non-finite value in its output
    /// must have been in its input already.
    fn preserves_finite(&self) -> bool {
        false
    }

    /// Compute the output and keep what `backward` needs. Input/output shapes are the
    /// layer family's (see its module docs).
    fn forward(&mut self, x: Tensor<F>, mode: Mode) -> Tensor<F>;

    /// Given dLoss/dout (shape of the last output), set every parameter's `grad` and
    /// return dLoss/dx (shape of the last input). Panics if called before `forward`.
    fn backward(&mut self, dout: Tensor<F>) -> Tensor<F>;

    /// [`Layer::backward`] for a caller that does not need dLoss/dx (the first layer of a
    /// network whose input is data): sets every parameter's `grad` as `backward` does. A
    /// layer may skip the input gradient here (the affine layer skips its `dout W^T`
    /// product); the default computes and drops it.
    fn backward_params(&mut self, dout: Tensor<F>) {
        drop(self.backward(dout));
    }

    /// Trainable parameters, in a fixed order.
    fn params(&self) -> Vec<&Param<F>> {
        Vec::new()
    }

    /// Trainable parameters, mutable, in the same order as [`Layer::params`].
    fn params_mut(&mut self) -> Vec<&mut Param<F>> {
        Vec::new()
    }

    /// Non-trainable state saved in checkpoints (e.g. batch norm running statistics).
    fn buffers(&self) -> Vec<(&'static str, &Tensor<F>)> {
        Vec::new()
    }

    /// Mutable access to the same buffers, in the same order (for loading checkpoints).
    fn buffers_mut(&mut self) -> Vec<(&'static str, &mut Tensor<F>)> {
        Vec::new()
    }

    /// While `on`, every train-mode forward draws the same random numbers (dropout: the same
    /// mask) as the first one after the call, so the layer is a deterministic function the
    /// gradient checker can difference; `false` returns to fresh draws. Default: nothing to
    /// replay.
    fn replay_randomness(&mut self, _on: bool) {}

    /// The state of the layer's own random generator, for checkpoints that resume
    /// training exactly; `None` for a layer that draws nothing (the default).
    fn rng_state(&self) -> Option<RngState> {
        None
    }

    /// Put the layer's random generator in `state` (a value of [`Layer::rng_state`]): its
    /// next draws are those it made from that state. Default: nothing to set.
    fn set_rng_state(&mut self, _state: &RngState) {}

    /// The activation function's name if this is an elementwise nonlinearity
    /// (`"relu"`, `"sigmoid"`, ...), for the doctor's probes.
    fn activation(&self) -> Option<&'static str> {
        None
    }
}

/// Receives every layer's output and input gradient as they are computed. The doctor's
/// probes implement this; the default methods do nothing.
pub trait Probe<F: Float> {
    /// Called after layer `index` computed `out` in the forward pass.
    fn after_forward(&mut self, _index: usize, _layer: &dyn Layer<F>, _out: &Tensor<F>) {}
    /// Called once per step after the loss: its value and its gradient `dscores` with
    /// respect to the model's output (the output's shape, e.g. (N, C)), before the backward
    /// pass. Trainers that compute a loss call it; the default does nothing.
    fn after_loss(&mut self, _loss: f64, _dscores: &Tensor<F>) {}
    /// Called after layer `index` computed `dx` (dLoss/d its input) in the backward pass.
    fn after_backward(&mut self, _index: usize, _layer: &dyn Layer<F>, _dx: &Tensor<F>) {}
    /// Whether [`Sequential::backward_params_probed`] must compute the first layer's input
    /// gradient and report it through `after_backward(0, ..)` in this step. When false,
    /// layer 0 runs [`Layer::backward_params`] and `after_backward` is not called for it.
    fn wants_input_grad(&self) -> bool {
        true
    }
}

/// A probe that records nothing.
pub struct NoProbe;
impl<F: Float> Probe<F> for NoProbe {
    fn wants_input_grad(&self) -> bool {
        false
    }
}

/// Layers applied in order.
#[derive(Default)]
pub struct Sequential<F: Float> {
    /// The layers, first to last.
    pub layers: Vec<Box<dyn Layer<F>>>,
}

impl<F: Float> Sequential<F> {
    /// An empty stack.
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }

    /// Append a layer (builder style).
    pub fn push(mut self, layer: impl Layer<F> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Forward through every layer. `x`: the first layer's input shape.
    pub fn forward(&mut self, x: Tensor<F>, mode: Mode) -> Tensor<F> {
        self.forward_probed(x, mode, &mut NoProbe)
    }

    /// Forward, reporting each layer's output to `probe`.
    pub fn forward_probed(&mut self, mut x: Tensor<F>, mode: Mode, probe: &mut dyn Probe<F>) -> Tensor<F> {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            x = layer.forward(x, mode);
            probe.after_forward(i, layer.as_ref(), &x);
        }
        x
    }

    /// Backward through every layer in reverse; returns dLoss/d(input).
    pub fn backward(&mut self, dout: Tensor<F>) -> Tensor<F> {
        self.backward_probed(dout, &mut NoProbe)
    }

    /// Backward, reporting each layer's input gradient to `probe`.
    pub fn backward_probed(&mut self, mut dout: Tensor<F>, probe: &mut dyn Probe<F>) -> Tensor<F> {
        for (i, layer) in self.layers.iter_mut().enumerate().rev() {
            dout = layer.backward(dout);
            probe.after_backward(i, layer.as_ref(), &dout);
        }
        dout
    }

    /// Backward through every layer in reverse for training: sets every parameter's `grad`
    /// like [`Sequential::backward_probed`] but returns nothing, and computes the first
    /// layer's input gradient (dLoss/d(data), which no update uses) only when
    /// `probe.wants_input_grad()`.
    pub fn backward_params_probed(&mut self, mut dout: Tensor<F>, probe: &mut dyn Probe<F>) {
        for (i, layer) in self.layers.iter_mut().enumerate().rev() {
            if i == 0 && !probe.wants_input_grad() {
                layer.backward_params(dout);
                return;
            }
            dout = layer.backward(dout);
            probe.after_backward(i, layer.as_ref(), &dout);
        }
    }

    /// All parameters, layer by layer, with their layer index.
    pub fn params(&self) -> Vec<(usize, &Param<F>)> {
        self.layers.iter().enumerate().flat_map(|(i, l)| l.params().into_iter().map(move |p| (i, p))).collect()
    }

    /// All parameters, mutable, in the order of [`Sequential::params`].
    pub fn params_mut(&mut self) -> Vec<&mut Param<F>> {
        self.layers.iter_mut().flat_map(|l| l.params_mut()).collect()
    }

    /// The checkpoint name of every parameter (as in [`Sequential::named_tensors`]), in the
    /// order of [`Sequential::params`].
    pub fn param_names(&self) -> Vec<String> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.params().into_iter().map(move |p| format!("{i}.{}.{}", l.kind(), p.name)))
            .collect()
    }

    /// Every layer's random-generator state ([`Layer::rng_state`]), one entry per layer.
    pub fn rng_states(&self) -> Vec<Option<RngState>> {
        self.layers.iter().map(|l| l.rng_state()).collect()
    }

    /// Set the random-generator states of [`Sequential::rng_states`] (one entry per
    /// layer; `None` entries and layers beyond `states` are left as they are).
    pub fn set_rng_states(&mut self, states: &[Option<RngState>]) {
        for (l, st) in self.layers.iter_mut().zip(states) {
            if let Some(st) = st {
                l.set_rng_state(st);
            }
        }
    }

    /// Number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.params().iter().map(|(_, p)| p.value.len()).sum()
    }

    /// Named tensors for a checkpoint: `"{index}.{kind}.{name}"` for params and buffers.
    pub fn named_tensors(&self) -> Vec<(String, &Tensor<F>)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for p in l.params() {
                out.push((format!("{i}.{}.{}", l.kind(), p.name), &p.value));
            }
            for (name, b) in l.buffers() {
                out.push((format!("{i}.{}.{}", l.kind(), name), b));
            }
        }
        out
    }

    /// Overwrite every parameter and buffer from `lookup(name)` (names as in
    /// [`Sequential::named_tensors`]). Fails, naming the tensor, when one is missing or has
    /// another shape; nothing is changed in that case.
    pub fn load_named(&mut self, mut lookup: impl FnMut(&str) -> Option<Tensor<F>>) -> Result<(), String> {
        let mut staged: Vec<Tensor<F>> = Vec::new();
        for (name, t) in self.named_tensors() {
            let v = lookup(&name).ok_or_else(|| format!("tensor `{name}` is missing"))?;
            if v.shape() != t.shape() {
                return Err(format!("tensor `{name}` has shape {:?}, the model expects {:?}", v.shape(), t.shape()));
            }
            staged.push(v);
        }
        let mut staged = staged.into_iter();
        for l in self.layers.iter_mut() {
            for p in l.params_mut() {
                p.value = staged.next().expect("counted above");
            }
            for (_, b) in l.buffers_mut() {
                *b = staged.next().expect("counted above");
            }
        }
        Ok(())
    }

    /// One line per layer, e.g. for `leaky train` summaries.
    pub fn summary(&self) -> String {
        self.layers.iter().enumerate().map(|(i, l)| format!("{i:>2}  {}", l.describe())).collect::<Vec<_>>().join("\n")
    }
}
