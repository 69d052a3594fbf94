//! Batch normalisation (placeholder: being written).
use crate::nn::{Layer, Mode};
use crate::tensor::{Float, Tensor};

/// Batch norm layer over (N, D) inputs.
pub struct BatchNorm<F: Float> {
    _d: usize,
    _p: std::marker::PhantomData<F>,
}

impl<F: Float> BatchNorm<F> {
    /// A batch norm over `d` features (gamma = 1, beta = 0, momentum 0.9, eps 1e-5).
    pub fn new(d: usize) -> Self {
        BatchNorm { _d: d, _p: std::marker::PhantomData }
    }
}

impl<F: Float> Layer<F> for BatchNorm<F> {
    fn kind(&self) -> &'static str {
        "batchnorm"
    }
    fn forward(&mut self, _x: Tensor<F>, _mode: Mode) -> Tensor<F> {
        unimplemented!("batchnorm")
    }
    fn backward(&mut self, _dout: Tensor<F>) -> Tensor<F> {
        unimplemented!("batchnorm")
    }
}
