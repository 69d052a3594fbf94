//! Inverted dropout (placeholder: being written).
use crate::nn::{Layer, Mode};
use crate::tensor::{Float, Tensor};

/// Inverted dropout with keep probability `p`.
pub struct Dropout<F: Float> {
    _p: f64,
    _seed: u64,
    _m: std::marker::PhantomData<F>,
}

impl<F: Float> Dropout<F> {
    /// Keep each unit with probability `p` (CS231n convention), masks seeded by `seed`.
    pub fn new(p: f64, seed: u64) -> Self {
        Dropout { _p: p, _seed: seed, _m: std::marker::PhantomData }
    }
}

impl<F: Float> Layer<F> for Dropout<F> {
    fn kind(&self) -> &'static str {
        "dropout"
    }
    fn forward(&mut self, _x: Tensor<F>, _mode: Mode) -> Tensor<F> {
        unimplemented!("dropout")
    }
    fn backward(&mut self, _dout: Tensor<F>) -> Tensor<F> {
        unimplemented!("dropout")
    }
}
