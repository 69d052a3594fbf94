//! Feed-forward stacks: [`Sequential`] <-> PyTorch `state_dict` (see the module docs for
//! the key table).

use super::state::StateDict;
use super::{key_list, ImportError};
use crate::nn::{Layer, Sequential};
use crate::tensor::{Float, Tensor};
use ndarray::{ArrayD, Ix2};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// How a leaky tensor is stored in PyTorch.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// The same array.
    Same,
    /// A 2-D array transposed ((D, M) in leaky, (M, D) in PyTorch).
    Transposed,
}

/// The PyTorch name and layout of leaky tensor `name` of a layer of kind `kind`, or `None`
/// when this module does not know it.
fn torch_name(kind: &str, name: &str) -> Option<(&'static str, Layout)> {
    use Layout::*;
    Some(match (kind, name) {
        ("affine", "W") => ("weight", Transposed),
        ("affine", "b") | ("conv", "b") => ("bias", Same),
        ("conv", "W") => ("weight", Same),
        ("batchnorm" | "spatial_batchnorm" | "layernorm", "gamma") => ("weight", Same),
        ("batchnorm" | "spatial_batchnorm" | "layernorm", "beta") => ("bias", Same),
        ("batchnorm" | "spatial_batchnorm", "running_mean") => ("running_mean", Same),
        ("batchnorm" | "spatial_batchnorm", "running_var") => ("running_var", Same),
        _ => return None,
    })
}

fn is_batchnorm(kind: &str) -> bool {
    matches!(kind, "batchnorm" | "spatial_batchnorm")
}

/// One tensor of the model: where it lives in leaky and in the file.
struct Slot {
    /// `"layer 3 (affine)"`, for messages.
    who: String,
    key: String,
    layout: Layout,
    /// A buffer (running statistics), not a parameter.
    buffer: bool,
    /// The leaky shape.
    shape: Vec<usize>,
}

impl Slot {
    fn torch_shape(&self) -> Vec<usize> {
        match self.layout {
            Layout::Same => self.shape.clone(),
            Layout::Transposed => self.shape.iter().rev().copied().collect(),
        }
    }
}

/// The prefix of every layer: its name, or its index. Errors on a `names` of the wrong
/// length and on two layers with parameters sharing a prefix.
fn prefixes<F: Float>(model: &Sequential<F>, names: &[Option<String>]) -> Result<Vec<String>, ImportError> {
    let n = model.layers.len();
    if !names.is_empty() && names.len() != n {
        return Err(ImportError::Model(format!(
            "{} layer names given for a model of {n} layers (give one per layer, or none)",
            names.len()
        )));
    }
    let out: Vec<String> = (0..n).map(|i| names.get(i).cloned().flatten().unwrap_or_else(|| i.to_string())).collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in out.iter().enumerate() {
        if model.layers[i].params().is_empty() && model.layers[i].buffers().is_empty() {
            continue;
        }
        if p.is_empty() || p.starts_with('.') || p.ends_with('.') {
            return Err(ImportError::Model(format!(
                "layer {i}: name `{p}` cannot be a key prefix (empty, or starting or ending with `.`)"
            )));
        }
        if let Some(j) = seen.insert(p, i) {
            return Err(ImportError::Model(format!("layers {j} and {i} both take the key prefix `{p}`")));
        }
    }
    Ok(out)
}

/// Every parameter and buffer of `model` with its PyTorch key, in layer order (parameters
/// then buffers). Errors on a layer whose tensors this module cannot name.
fn slots<F: Float>(model: &Sequential<F>, names: &[Option<String>]) -> Result<Vec<Slot>, ImportError> {
    let prefixes = prefixes(model, names)?;
    let mut out = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        let kind = layer.kind();
        let who = format!("layer {i} ({kind})");
        let tensors = layer
            .params()
            .into_iter()
            .map(|p| (p.name, p.value.shape().to_vec(), false))
            .chain(layer.buffers().into_iter().map(|(n, t)| (n, t.shape().to_vec(), true)));
        for (name, shape, buffer) in tensors {
            let (torch, layout) = torch_name(kind, name)
                .ok_or_else(|| ImportError::Model(format!("{who}: no PyTorch key is known for its tensor `{name}`")))?;
            out.push(Slot { who: who.clone(), key: format!("{}.{torch}", prefixes[i]), layout, buffer, shape });
        }
    }
    Ok(out)
}

/// `t` from PyTorch's layout to leaky's.
fn from_torch<F: Float>(t: ArrayD<F>, layout: Layout) -> Tensor<F> {
    match layout {
        Layout::Same => t,
        Layout::Transposed => {
            let t = t.into_dimensionality::<Ix2>().expect("shape checked to be 2-D");
            t.t().as_standard_layout().into_owned().into_dyn()
        }
    }
}

/// `t` from leaky's layout to PyTorch's, in f64.
fn to_torch<F: Float>(t: &Tensor<F>, layout: Layout) -> ArrayD<f64> {
    let t = t.mapv(|v| v.to_f64c());
    match layout {
        Layout::Same => t,
        Layout::Transposed => t.t().as_standard_layout().into_owned(),
    }
}

/// Fill every parameter and buffer of `model` from the PyTorch `state_dict` in `sd`.
///
/// `names[i]` is layer `i`'s key prefix when `Some` (`"fc"` -> `"fc.weight"`), its index
/// otherwise; `names` is empty (every layer by index) or has one entry per layer. Layouts are
/// converted as in the module docs' table (a Linear's `weight` (M, D) becomes `W` (D, M)).
///
/// Errors, leaving `model` unchanged: a key the model needs is missing, has another shape, or
/// is not floating point; the file has keys no layer takes (`num_batches_tracked` of a batch
/// norm excepted); a layer with parameters of an unknown kind; names that do not fit.
pub fn load_sequential<F: Float>(
    model: &mut Sequential<F>,
    names: &[Option<String>],
    sd: &StateDict,
) -> Result<(), ImportError> {
    let slots = slots(model, names)?;
    let path = sd.origin().to_string();
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut staged: Vec<Tensor<F>> = Vec::with_capacity(slots.len());
    for s in &slots {
        let expected = s.torch_shape();
        let Some(found) = sd.shape(&s.key) else {
            return Err(ImportError::Missing {
                path,
                key: s.key.clone(),
                layer: s.who.clone(),
                expected,
                available: key_list(sd.shapes()),
            });
        };
        if found != expected.as_slice() {
            return Err(ImportError::Shape {
                path,
                key: s.key.clone(),
                layer: s.who.clone(),
                expected,
                found: found.to_vec(),
            });
        }
        staged.push(from_torch(sd.get::<F>(&s.key)?, s.layout));
        used.insert(s.key.clone());
    }
    // A batch norm's `num_batches_tracked` counts PyTorch's updates; leaky has no use for it.
    let prefixes = prefixes(model, names)?;
    for (i, layer) in model.layers.iter().enumerate() {
        if is_batchnorm(layer.kind()) {
            used.insert(format!("{}.num_batches_tracked", prefixes[i]));
        }
    }
    let extra: Vec<(String, Vec<usize>)> =
        sd.shapes().filter(|(k, _)| !used.contains(*k)).map(|(k, s)| (k.to_string(), s.to_vec())).collect();
    if !extra.is_empty() {
        let shapes: Vec<Vec<usize>> = slots.iter().map(Slot::torch_shape).collect();
        let expected = key_list(slots.iter().zip(&shapes).map(|(s, sh)| (s.key.as_str(), sh.as_slice())));
        return Err(ImportError::Extra { path, keys: extra, expected });
    }
    let mut staged = staged.into_iter();
    for layer in model.layers.iter_mut() {
        for p in layer.params_mut() {
            p.value = staged.next().expect("one staged tensor per slot");
            p.grad = Tensor::zeros(p.value.raw_dim());
        }
        for (_, b) in layer.buffers_mut() {
            *b = staged.next().expect("one staged tensor per slot");
        }
    }
    Ok(())
}

/// Every parameter and buffer of `model` as PyTorch's `state_dict` would hold it: `(key,
/// array)` in layer order, in PyTorch's layouts, in f64 (`names` as in [`load_sequential`]).
/// A batch norm's integer `num_batches_tracked` is not included ([`save_pytorch`] writes it).
pub fn export_sequential<F: Float>(
    model: &Sequential<F>,
    names: &[Option<String>],
) -> Result<Vec<(String, ArrayD<f64>)>, ImportError> {
    export(model, names, false)
}

/// The gradient of every parameter of `model` from its last backward pass, keyed and laid
/// out as [`export_sequential`] (what `p.grad` holds in PyTorch for the same weights and
/// loss). Buffers have no gradient and are left out.
pub fn export_sequential_grads<F: Float>(
    model: &Sequential<F>,
    names: &[Option<String>],
) -> Result<Vec<(String, ArrayD<f64>)>, ImportError> {
    export(model, names, true)
}

fn export<F: Float>(
    model: &Sequential<F>,
    names: &[Option<String>],
    grads: bool,
) -> Result<Vec<(String, ArrayD<f64>)>, ImportError> {
    let slots = slots(model, names)?;
    let mut values: Vec<&Tensor<F>> = Vec::new();
    for layer in &model.layers {
        let layer: &dyn Layer<F> = layer.as_ref();
        for p in layer.params() {
            values.push(if grads { &p.grad } else { &p.value });
        }
        if !grads {
            values.extend(layer.buffers().into_iter().map(|(_, b)| b));
        }
    }
    let slots = slots.into_iter().filter(|s| !grads || !s.buffer);
    Ok(slots.zip(values).map(|(s, v)| (s.key, to_torch(v, s.layout))).collect())
}

/// Write `model` as a PyTorch `state_dict` in f32 to `path`, atomically
/// ([`crate::train::write_atomic`]); `names` as in [`load_sequential`]. Every batch norm also
/// gets `num_batches_tracked` = 0 (int64, shape ()), which `load_state_dict(strict=True)`
/// expects. Load it in Python with `model.load_state_dict(safetensors.torch.load_file(path))`.
pub fn save_pytorch<F: Float>(path: &Path, model: &Sequential<F>, names: &[Option<String>]) -> Result<(), ImportError> {
    let mut tensors: Vec<(String, Payload)> =
        export_sequential(model, names)?.into_iter().map(|(k, t)| (k, Payload::F32(t))).collect();
    let prefixes = prefixes(model, names)?;
    for (i, layer) in model.layers.iter().enumerate() {
        if is_batchnorm(layer.kind()) {
            tensors.push((format!("{}.num_batches_tracked", prefixes[i]), Payload::I64Scalar(0)));
        }
    }
    write_state_dict(path, tensors)
}

/// A tensor to write: f32 values from an f64 array, or one int64 scalar.
pub(super) enum Payload {
    F32(ArrayD<f64>),
    I64Scalar(i64),
}

/// Serialise `tensors` as safetensors and write them to `path` atomically.
pub(super) fn write_state_dict(path: &Path, tensors: Vec<(String, Payload)>) -> Result<(), ImportError> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let p = path.display().to_string();
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, t)| match t {
            Payload::F32(a) => {
                let shape = a.shape().to_vec();
                let b = a.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
                (k, Dtype::F32, shape, b)
            }
            Payload::I64Scalar(v) => (k, Dtype::I64, vec![], v.to_le_bytes().to_vec()),
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(k, d, s, b)| (k.clone(), TensorView::new(*d, s.clone(), b).expect("sizes are consistent")))
        .collect();
    let data = safetensors::serialize(views, None)
        .map_err(|e| ImportError::Format { path: p.clone(), detail: e.to_string() })?;
    crate::train::write_atomic(path, &data).map_err(|source| ImportError::Io { path: p, source })
}
