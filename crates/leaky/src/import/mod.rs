//! PyTorch checkpoints in and out: read a `state_dict` saved with
//! `safetensors.torch.save_file` into leaky's layers, and write one that PyTorch's
//! `load_state_dict` accepts.
//!
//! ```python
//! from safetensors.torch import save_file
//! save_file(model.state_dict(), "model.safetensors")
//! ```
//!
//! * [`StateDict`] reads the file (f32, f64; f16 and bf16 widened) and hands out tensors by
//!   key, converted to leaky's float type.
//! * [`load_sequential`] fills a [`Sequential`](crate::nn::Sequential) from it;
//!   [`export_sequential`] and [`save_pytorch`] go the other way.
//! * [`load_seq_model`] fills a recurrent [`SeqModel`](crate::nn::seq::SeqModel) (an optional
//!   embedding, a tanh RNN or an LSTM, a linear head); [`export_seq_model`] and
//!   [`save_pytorch_seq`] go the other way.
//!
//! # Key naming (feed-forward stacks)
//!
//! Layer `i` of the `Sequential` takes the keys `"<prefix>.<param>"`, where the prefix is the
//! layer's name when it has one (`names[i] = Some("fc")` -> `"fc.weight"`) and its index `i`
//! otherwise. For an `nn.Sequential` the index is the module's position, so a leaky stack
//! written one layer per PyTorch module needs no names. PyTorch's `nn.Flatten` is a module
//! (it takes an index) but leaky's affine layer flattens its own input: a leaky stack
//! without a flatten layer names the layers after it by their PyTorch index.
//!
//! | leaky layer (`kind()`) | leaky tensor | PyTorch key | layout |
//! |---|---|---|---|
//! | `affine` (`nn.Linear`) | `W` (D, M) | `weight` (M, D) | transposed |
//! | | `b` (M,) | `bias` (M,) | as is |
//! | `conv` (`nn.Conv2d`) | `W` (F, C, HH, WW) | `weight` (F, C, HH, WW) | as is |
//! | | `b` (F,) | `bias` (F,) | as is |
//! | `batchnorm` (`nn.BatchNorm1d`), `spatial_batchnorm` (`nn.BatchNorm2d`) | `gamma` (D,) | `weight` (D,) | as is |
//! | | `beta` (D,) | `bias` (D,) | as is |
//! | | `running_mean`, `running_var` (D,) | `running_mean`, `running_var` (D,) | as is |
//! | | | `num_batches_tracked` () | ignored on import; 0 (int64) on export |
//! | `layernorm` (`nn.LayerNorm`) | `gamma`, `beta` (D,) | `weight`, `bias` (D,) | as is |
//! | parameterless (`relu`, `maxpool`, `dropout`, ...) | | none | |
//!
//! PyTorch's running variance is the unbiased one and leaky's is the biased one; in eval mode
//! both divide by the stored value, so it is copied as is.
//!
//! A name may contain dots: layers inside `self.features = nn.Sequential(...)` are named
//! `features.0`, `features.1`, ... A model saved while wrapped in `DistributedDataParallel`
//! prefixes every key with `module.`; [`StateDict::strip_prefix`] removes it.
//!
//! # Key naming (recurrent models)
//!
//! The module attribute names come from [`SeqKeys`] (default `embed`, `rnn`, `fc`, as in
//! `self.embed = nn.Embedding(..)`, `self.rnn = nn.RNN(.., batch_first=True)`,
//! `self.fc = nn.Linear(..)`); [`SeqKeys::detect`] finds them in a file. H = hidden size,
//! D = input width, V = vocabulary, C = head outputs (classes per step, or 1).
//!
//! | leaky tensor | PyTorch key | layout |
//! |---|---|---|
//! | `W_embed` (V, D) | `embed.weight` (V, D) | as is |
//! | `Wx` (D, G·H) | `rnn.weight_ih_l0` (G·H, D) | transposed; LSTM gate blocks reordered |
//! | `Wh` (H, G·H) | `rnn.weight_hh_l0` (G·H, H) | transposed; LSTM gate blocks reordered |
//! | `b` (G·H,) | `rnn.bias_ih_l0` + `rnn.bias_hh_l0` (G·H,) | summed; on export `bias_ih` = b, `bias_hh` = 0 |
//! | `W_out` (H, C) | `fc.weight` (C, H) | transposed |
//! | `b_out` (C,) | `fc.bias` (C,) | as is |
//!
//! G = 1 for the tanh RNN and 4 for the LSTM, whose gate blocks PyTorch orders i, f, g, o and
//! leaky (as CS231n) i, f, o, g: the last two H-blocks are swapped both ways. Both start from
//! h0 = 0 (and c0 = 0); inputs are batch-first (N, T, D). One layer, one direction: keys of
//! a second layer (`weight_ih_l1`) or direction (`_reverse`) are extra keys.
//!
//! # Errors
//!
//! Every key must be used exactly once: a missing key, a key no layer takes, and a tensor of
//! another shape are errors ([`ImportError`]) naming the key, the layer and both shapes, and
//! leave the model unchanged. So is a tensor that is not floating point where a weight is
//! due. Non-finite values are *not* an error (a diverged checkpoint is worth diagnosing);
//! [`StateDict::non_finite`] lists them.
//!
//! # Reading, not mapping
//!
//! [`StateDict::open`] reads the whole file into memory rather than memory-mapping it. A
//! mapping is only sound while no other process truncates or rewrites the file, which this
//! program cannot guarantee (a training job may be writing the next checkpoint over it), and
//! every tensor is converted into leaky's own arrays anyway, so a mapping would save one copy
//! of the file at most (a 10-million-parameter f32 model is 40 MB).

mod recurrent;
mod sequential;
mod state;

pub use recurrent::{export_seq_model, export_seq_model_grads, load_seq_model, save_pytorch_seq, SeqKeys};
pub use sequential::{export_sequential, export_sequential_grads, load_sequential, save_pytorch};
pub use state::{NonFinite, StateDict};

/// Why a state_dict could not be read, mapped onto a model, or written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a readable safetensors file (not one at all, truncated, a malformed
    /// header).
    #[error("{path}: not a readable safetensors file: {detail}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A key the model needs is not in the file.
    #[error(
        "{path}: key `{key}` is missing: {layer} expects it with shape {} (keys in the file: {available})",
        shape_str(expected)
    )]
    Missing {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// The layer that needs it, e.g. `"layer 3 (affine)"`.
        layer: String,
        /// The shape the model expects, in PyTorch's layout.
        expected: Vec<usize>,
        /// The keys that are in the file (shortened when long).
        available: String,
    },
    /// Keys that no layer takes.
    #[error("{path}: {} the model does not use: {} (the model takes: {expected})", if keys.len() == 1 { "a key" } else { "keys" }, keys.iter().map(|(k, s)| format!("`{k}` {}", shape_str(s))).collect::<Vec<_>>().join(", "))]
    Extra {
        /// The file.
        path: String,
        /// Each unused key with its shape.
        keys: Vec<(String, Vec<usize>)>,
        /// The keys the model takes (shortened when long).
        expected: String,
    },
    /// A tensor of another shape than the model's.
    #[error("{path}: key `{key}` has shape {}, but {layer} expects {}", shape_str(found), shape_str(expected))]
    Shape {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// The layer that takes it.
        layer: String,
        /// The shape the model expects, in PyTorch's layout.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor whose element type leaky cannot read as floating point.
    #[error("{path}: key `{key}` has dtype {dtype}; expected a floating-point tensor (F32, F64, F16 or BF16)")]
    Dtype {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// The dtype in the file, e.g. `"I32"`.
        dtype: String,
    },
    /// A key asked for that the file does not hold (from [`StateDict::get`]).
    #[error("{path}: no key `{key}` in the file")]
    NoKey {
        /// The file.
        path: String,
        /// The key.
        key: String,
    },
    /// The model itself cannot be mapped: a layer with parameters of a kind this module
    /// does not know, names that do not fit the layers, two layers with one prefix.
    #[error("{0}")]
    Model(String),
}

/// `(24, 12)`; `()` for a scalar.
pub(crate) fn shape_str(s: &[usize]) -> String {
    match s {
        [d] => format!("({d},)"),
        _ => format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// Keys with shapes, for an error message: at most 12, then how many more.
pub(crate) fn key_list<'a>(keys: impl Iterator<Item = (&'a str, &'a [usize])>) -> String {
    let all: Vec<String> = keys.map(|(k, s)| format!("`{k}` {}", shape_str(s))).collect();
    if all.is_empty() {
        return "none".to_string();
    }
    if all.len() <= 12 {
        return all.join(", ");
    }
    format!("{}, ... ({} more)", all[..12].join(", "), all.len() - 12)
}
