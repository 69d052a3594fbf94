//! # leaky — backprop made visible
//!
//! Layers whose forward and backward passes are written out by hand, a gradient checker,
//! optimisers, a trainer with observer hooks, and data loaders. See the repository README
//! for a tour; every layer states the shapes it takes in its docs.
//!
//! ```
//! use leaky::gradcheck::check_array;
//! use leaky::layers::affine;
//! use leaky::tensor::{randn, rng};
//! use ndarray::{Array1, Array2, IxDyn};
//!
//! let mut r = rng(0);
//! let x = randn::<f64, _>(IxDyn(&[4, 3, 2]), 1.0, &mut r); // (N, d1, d2), flattened to (N, 6)
//! let w: Array2<f64> = randn((6, 5), 1.0, &mut r);          // (D, M)
//! let b: Array1<f64> = Array1::zeros(5);                    // (M,)
//! let (out, cache) = affine::forward(x.clone(), &w, &b);    // out: (N, M)
//! let dout: Array2<f64> = randn((4, 5), 1.0, &mut r);
//! let (dx, _dw, _db) = affine::backward(&dout, &cache, &w);
//! let report = check_array("affine dx", |x| affine::forward(x.clone(), &w, &b).0, &x, &dout, &dx);
//! assert!(report.max_rel_error <= 1e-7);
//! assert_eq!(out.dim(), (4, 5));
//! ```

#![warn(missing_docs)]

pub mod checks;
pub mod data;
pub mod doctor;
pub mod experiment;
pub mod gradcheck;
pub mod graph;
pub mod import;
pub mod io;
pub mod layers;
pub mod limits;
pub mod losses;
pub mod nn;
pub mod optim;
pub mod parallel;
pub mod rl;
pub mod tensor;
pub mod train;

pub use tensor::{Float, Tensor};
