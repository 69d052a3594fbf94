//! Data sets: the bundled UCI digits, synthetic tasks, and loaders for CSV, `.npy` and
//! IDX files. Every loader returns a [`Dataset`] or a [`DataError`] that names the file
//! and the problem; none panics on bad input.

use crate::tensor::permutation;
use ndarray::{Array1, Array2, Axis};

/// A classification data set held in memory as f32 features.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Where it came from, e.g. `"digits"` or `"csv:train.csv"`.
    pub name: String,
    /// Features, (N, D): one flattened example per row.
    pub x: Array2<f32>,
    /// Labels, length N, each `< classes`.
    pub y: Vec<usize>,
    /// Number of classes C.
    pub classes: usize,
    /// The shape of one example before flattening (e.g. `[8, 8]` for digits); its
    /// product is D.
    pub feature_shape: Vec<usize>,
}

/// Why a data set could not be loaded. Every variant names its source.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was read but its contents are wrong; `detail` says where (line, offset).
    #[error("{path}: {detail}")]
    Format {
        /// The file (or data set name).
        path: String,
        /// What is wrong and where.
        detail: String,
    },
    /// The data set specification itself is wrong (unknown name, missing path).
    #[error("{0}")]
    Spec(String),
}

impl Dataset {
    /// Number of examples N.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Number of features D.
    pub fn dim(&self) -> usize {
        self.x.ncols()
    }

    /// The examples at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        Dataset {
            name: self.name.clone(),
            x: self.x.select(Axis(0), idx),
            y: idx.iter().map(|&i| self.y[i]).collect(),
            classes: self.classes,
            feature_shape: self.feature_shape.clone(),
        }
    }

    /// Shuffle with `seed` and split into (train, validation); the validation part gets
    /// `round(val_fraction * N)` examples. `val_fraction` is in [0, 1).
    pub fn split(&self, val_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let n = self.len();
        let perm = permutation(n, &mut crate::tensor::rng(seed));
        let n_val = ((val_fraction * n as f64).round() as usize).min(n);
        let (val, train) = perm.split_at(n_val);
        (self.subset(train), self.subset(val))
    }

    /// Check that every value is finite and every label is in range; the error names the
    /// first bad row and column.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.x.nrows() != self.y.len() {
            return Err(DataError::Format {
                path: self.name.clone(),
                detail: format!("{} feature rows but {} labels", self.x.nrows(), self.y.len()),
            });
        }
        for (i, row) in self.x.outer_iter().enumerate() {
            if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                return Err(DataError::Format {
                    path: self.name.clone(),
                    detail: format!("example {i}, feature {j} is {} (NaN/Inf are not allowed)", row[j]),
                });
            }
        }
        if let Some(i) = self.y.iter().position(|&c| c >= self.classes) {
            return Err(DataError::Format {
                path: self.name.clone(),
                detail: format!("example {i} has label {} but there are {} classes", self.y[i], self.classes),
            });
        }
        Ok(())
    }
}

/// Per-feature standardisation `(x - mean) / std`, fitted on training data and applied
/// to any split. Features with std below 1e-8 are only centred.
#[derive(Clone, Debug)]
pub struct Standardizer {
    /// Per-feature mean, (D,).
    pub mean: Array1<f32>,
    /// Per-feature standard deviation (1 where it was ~0), (D,).
    pub std: Array1<f32>,
}

impl Standardizer {
    /// Fit on `x`: (N, D).
    pub fn fit(x: &Array2<f32>) -> Self {
        let mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(x.ncols()));
        let std = x.std_axis(Axis(0), 0.0).mapv(|s| if s < 1e-8 { 1.0 } else { s });
        Standardizer { mean, std }
    }

    /// Apply in place to `x`: (N, D).
    pub fn apply(&self, x: &mut Array2<f32>) {
        for mut row in x.outer_iter_mut() {
            row -= &self.mean;
            row /= &self.std;
        }
    }
}
