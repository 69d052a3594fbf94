//! Sequence data sets: the adding problem, the copy task and a character-level corpus.
//!
//! Dimension letters: N examples, T time steps, D input features, V vocabulary size.

use ndarray::{Array1, Array2, Array3, Axis};

/// What a sequence model reads at each time step.
#[derive(Clone, Debug)]
pub enum SeqInput {
    /// Integer token ids, (N, T), each `< vocab`; fed through a word embedding.
    Tokens(Array2<usize>),
    /// Dense features, (N, T, D).
    Dense(Array3<f32>),
}

/// What a sequence model must predict.
#[derive(Clone, Debug)]
pub enum SeqTarget {
    /// A class per time step, (N, T), each `< classes`; only steps whose `mask` is true
    /// count (temporal softmax loss, divided by N).
    Tokens {
        /// Targets, (N, T).
        y: Array2<usize>,
        /// Which steps count, (N, T).
        mask: Array2<bool>,
    },
    /// One real number per sequence, read from the last hidden state (MSE), (N,).
    Final(Array1<f32>),
}

/// A sequence data set held in memory.
#[derive(Clone, Debug)]
pub struct SeqDataset {
    /// Where it came from, e.g. `"adding"`.
    pub name: String,
    /// Inputs.
    pub input: SeqInput,
    /// Targets.
    pub target: SeqTarget,
    /// Vocabulary size for token inputs (0 for dense inputs).
    pub vocab: usize,
    /// Output classes per step for token targets (0 for `Final`).
    pub classes: usize,
    /// Characters of the vocabulary, index = token id (character tasks only).
    pub alphabet: Vec<char>,
}

impl SeqDataset {
    /// Number of sequences N.
    pub fn len(&self) -> usize {
        match &self.input {
            SeqInput::Tokens(x) => x.nrows(),
            SeqInput::Dense(x) => x.len_of(Axis(0)),
        }
    }

    /// True when there are no sequences.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequence length T.
    pub fn seq_len(&self) -> usize {
        match &self.input {
            SeqInput::Tokens(x) => x.ncols(),
            SeqInput::Dense(x) => x.len_of(Axis(1)),
        }
    }

    /// Input features per step: D for dense inputs, the vocabulary size for tokens.
    pub fn input_dim(&self) -> usize {
        match &self.input {
            SeqInput::Tokens(_) => self.vocab,
            SeqInput::Dense(x) => x.len_of(Axis(2)),
        }
    }

    /// The sequences at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> SeqDataset {
        let input = match &self.input {
            SeqInput::Tokens(x) => SeqInput::Tokens(x.select(Axis(0), idx)),
            SeqInput::Dense(x) => SeqInput::Dense(x.select(Axis(0), idx)),
        };
        let target = match &self.target {
            SeqTarget::Tokens { y, mask } => {
                SeqTarget::Tokens { y: y.select(Axis(0), idx), mask: mask.select(Axis(0), idx) }
            }
            SeqTarget::Final(y) => SeqTarget::Final(y.select(Axis(0), idx)),
        };
        SeqDataset { input, target, ..self.clone_meta() }
    }

    fn clone_meta(&self) -> SeqDataset {
        SeqDataset {
            name: self.name.clone(),
            input: SeqInput::Tokens(Array2::zeros((0, 0))),
            target: SeqTarget::Final(Array1::zeros(0)),
            vocab: self.vocab,
            classes: self.classes,
            alphabet: self.alphabet.clone(),
        }
    }

    /// Shuffle with `seed` and split into (train, validation), as [`super::Dataset::split`].
    pub fn split(&self, val_fraction: f64, seed: u64) -> (SeqDataset, SeqDataset) {
        let n = self.len();
        let perm = crate::tensor::permutation(n, &mut crate::tensor::rng(seed));
        let n_val = ((val_fraction * n as f64).round() as usize).min(n);
        let (val, train) = perm.split_at(n_val);
        (self.subset(train), self.subset(val))
    }
}
