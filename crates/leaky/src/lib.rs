//! # leaky — backprop made visible
//!
//! Layers whose forward and backward passes are written out by hand, a gradient checker,
//! optimisers, a trainer with observer hooks, and data loaders. See the repository README
//! for a tour; every layer states the shapes it takes in its docs.

#![warn(missing_docs)]

pub mod checks;
pub mod data;
pub mod gradcheck;
pub mod layers;
pub mod losses;
pub mod nn;
pub mod optim;
pub mod tensor;
pub mod train;

pub use tensor::{Float, Tensor};
