//! The multilayer perceptron builder: affine -> \[batchnorm\] -> activation, repeated, then
//! a final affine producing class scores.

use crate::layers::activation::Nonlinearity;
use crate::layers::affine::Affine;
use crate::nn::Sequential;
use crate::tensor::{Float, Init};
use serde::{Deserialize, Serialize};

/// An elementwise nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x)
    Relu,
    /// max(0.01 x, x)
    LeakyRelu,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// tanh(x)
    Tanh,
}

impl Activation {
    /// The name used in TOML files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }
}

/// What an MLP looks like.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpSpec {
    /// Input features D.
    pub input_dim: usize,
    /// Hidden layer widths, one entry per hidden layer.
    pub hidden: Vec<usize>,
    /// Output size (number of classes C).
    pub output_dim: usize,
    /// Hidden nonlinearity.
    pub activation: Activation,
    /// Weight initialisation.
    pub init: Init,
    /// Initial value of every bias.
    pub bias_init: f64,
    /// Insert batch normalisation between each hidden affine and its activation.
    pub batchnorm: bool,
    /// Inverted dropout keep probability after each activation (None = no dropout).
    pub dropout_keep: Option<f64>,
}

impl MlpSpec {
    /// Build the network with weights drawn from a generator seeded by `seed`.
    pub fn build<F: Float>(&self, seed: u64) -> Sequential<F> {
        let mut rng = crate::tensor::rng(seed);
        let mut net = Sequential::new();
        let mut d = self.input_dim;
        for (i, &h) in self.hidden.iter().enumerate() {
            net = net.push(Affine::<F>::new(d, h, self.init, self.bias_init, &mut rng));
            if self.batchnorm {
                net = net.push(crate::layers::batchnorm::BatchNorm::<F>::new(h));
            }
            net = net.push(Nonlinearity::<F>::new(self.activation));
            if let Some(p) = self.dropout_keep {
                net = net.push(crate::layers::dropout::Dropout::<F>::new(p, seed.wrapping_add(1000 + i as u64)));
            }
            d = h;
        }
        net.push(Affine::<F>::new(d, self.output_dim, self.init, self.bias_init, &mut rng))
    }
}
