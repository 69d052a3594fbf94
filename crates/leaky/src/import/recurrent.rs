//! Recurrent models: [`SeqModel`] <-> PyTorch `state_dict` (see the module docs for the key
//! table).

use super::sequential::{write_state_dict, Payload};
use super::state::StateDict;
use super::{key_list, ImportError};
use crate::nn::seq::{Cell, SeqModel};
use crate::tensor::{Float, Tensor};
use ndarray::{concatenate, ArrayD, Axis, Ix2};
use std::collections::BTreeSet;
use std::path::Path;

/// The PyTorch module attribute names of a recurrent model's parts: keys are
/// `"<embed>.weight"`, `"<rnn>.weight_ih_l0"`, ..., `"<fc>.weight"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqKeys {
    /// The `nn.Embedding` (token inputs only). Default `"embed"`.
    pub embed: String,
    /// The `nn.RNN` or `nn.LSTM`. Default `"rnn"`.
    pub rnn: String,
    /// The `nn.Linear` head. Default `"fc"`.
    pub fc: String,
}

impl Default for SeqKeys {
    fn default() -> Self {
        SeqKeys { embed: "embed".into(), rnn: "rnn".into(), fc: "fc".into() }
    }
}

impl SeqKeys {
    /// Find the names in a file: the recurrent module is the one prefix with a
    /// `weight_ih_l0`; of the other prefixes with a `weight`, the one with a `bias` is the
    /// head and the one without (if any) the embedding. Errors, listing the keys, when that
    /// does not single out one of each.
    pub fn detect(sd: &StateDict) -> Result<SeqKeys, ImportError> {
        let fail = |why: &str| {
            ImportError::Model(format!(
                "{}: cannot tell the recurrent model's parts apart: {why} (keys in the file: {})",
                sd.origin(),
                key_list(sd.shapes())
            ))
        };
        let with = |suffix: &str| -> Vec<String> {
            sd.keys().filter_map(|k| k.strip_suffix(suffix).map(str::to_string)).collect()
        };
        let rnn = match with(".weight_ih_l0").as_slice() {
            [one] => one.clone(),
            [] => return Err(fail("no `<name>.weight_ih_l0` key (an nn.RNN or nn.LSTM)")),
            _ => return Err(fail("more than one `<name>.weight_ih_l0` key")),
        };
        let others: Vec<String> = with(".weight").into_iter().filter(|p| *p != rnn).collect();
        let heads: Vec<&String> = others.iter().filter(|p| sd.contains(&format!("{p}.bias"))).collect();
        let embeds: Vec<&String> = others.iter().filter(|p| !sd.contains(&format!("{p}.bias"))).collect();
        let fc = match heads.as_slice() {
            [one] => (*one).clone(),
            [] => return Err(fail("no linear head (`<name>.weight` with `<name>.bias`)")),
            _ => return Err(fail("more than one `<name>.weight` with a `<name>.bias`")),
        };
        let embed = match embeds.as_slice() {
            [one] => (*one).clone(),
            [] => SeqKeys::default().embed,
            _ => return Err(fail("more than one `<name>.weight` without a bias")),
        };
        Ok(SeqKeys { embed, rnn, fc })
    }
}

/// One leaky tensor of a recurrent model and how it is stored in PyTorch.
enum Map {
    /// `W_embed` (V, D) = `embed.weight` as is.
    Same(String),
    /// A 2-D leaky (A, G·H) = PyTorch (G·H, A) transposed, gate blocks reordered.
    Gates(String),
    /// `b` = `bias_ih_l0 + bias_hh_l0`, gate blocks reordered.
    Bias(String, String),
    /// `W_out` (H, C) = `fc.weight` (C, H) transposed.
    Transposed(String),
}

/// Leaky's gate block `k` is PyTorch's block `GATES[k]`: i, f, o, g <- i, f, g, o (the
/// permutation is its own inverse, so it serves both directions).
const LSTM_GATES: [usize; 4] = [0, 1, 3, 2];

/// Reorder the `gates` H-blocks of axis `axis` of `a` between PyTorch's and leaky's order.
fn reorder<F: Float>(a: &ArrayD<F>, axis: usize, cell: Cell) -> ArrayD<F> {
    if cell == Cell::Rnn {
        return a.clone();
    }
    let h = a.shape()[axis] / 4;
    let blocks: Vec<_> =
        LSTM_GATES.iter().map(|&g| a.slice_axis(Axis(axis), ndarray::Slice::from(g * h..(g + 1) * h))).collect();
    concatenate(Axis(axis), &blocks).expect("blocks of one array")
}

fn transpose<F: Float>(a: ArrayD<F>) -> ArrayD<F> {
    a.into_dimensionality::<Ix2>().expect("2-D").t().as_standard_layout().into_owned().into_dyn()
}

/// Each parameter of `model` (by its leaky name) with its PyTorch mapping.
fn maps<F: Float>(model: &SeqModel<F>, keys: &SeqKeys) -> Vec<(&'static str, Map)> {
    let (r, f) = (&keys.rnn, &keys.fc);
    let mut v = Vec::new();
    if model.spec.vocab.is_some() {
        v.push(("W_embed", Map::Same(format!("{}.weight", keys.embed))));
    }
    v.push(("Wx", Map::Gates(format!("{r}.weight_ih_l0"))));
    v.push(("Wh", Map::Gates(format!("{r}.weight_hh_l0"))));
    v.push(("b", Map::Bias(format!("{r}.bias_ih_l0"), format!("{r}.bias_hh_l0"))));
    v.push(("W_out", Map::Transposed(format!("{f}.weight"))));
    v.push(("b_out", Map::Same(format!("{f}.bias"))));
    v
}

/// The PyTorch shape of a leaky shape under a mapping.
fn torch_shape(map: &Map, leaky: &[usize]) -> Vec<usize> {
    match map {
        Map::Same(_) | Map::Bias(..) => leaky.to_vec(),
        Map::Gates(_) | Map::Transposed(_) => leaky.iter().rev().copied().collect(),
    }
}

fn who<F: Float>(model: &SeqModel<F>, leaky: &str) -> String {
    let part = match leaky {
        "W_embed" => "the embedding",
        "Wx" | "Wh" | "b" => model.spec.cell.name(),
        _ => "the linear head",
    };
    format!("{part} (leaky `{leaky}`)")
}

/// Fill every parameter of the recurrent `model` from the PyTorch `state_dict` in `sd`, with
/// the module names in `keys` (see the module docs' table: weights transposed, the two
/// biases summed, LSTM gate blocks reordered from i, f, g, o to i, f, o, g). The PyTorch
/// model must be one layer, one direction, `batch_first=True`, tanh for `nn.RNN`; leaky's
/// cell ([`crate::nn::seq::SeqSpec::cell`]) says whether the file is read as an RNN or an LSTM.
///
/// Errors, leaving `model` unchanged: a missing key (the message lists the file's keys: try
/// [`SeqKeys::detect`] when the names differ), a key of another shape or not floating point,
/// keys the model does not use.
pub fn load_seq_model<F: Float>(model: &mut SeqModel<F>, keys: &SeqKeys, sd: &StateDict) -> Result<(), ImportError> {
    let path = sd.origin().to_string();
    let cell = model.spec.cell;
    let shapes: Vec<(&'static str, Vec<usize>)> =
        model.params().iter().map(|p| (p.name, p.value.shape().to_vec())).collect();
    let mut used = BTreeSet::new();
    let mut staged: Vec<(&'static str, Tensor<F>)> = Vec::new();
    let mut fetch = |key: &str, leaky: &'static str, expected: Vec<usize>| -> Result<ArrayD<F>, ImportError> {
        let Some(found) = sd.shape(key) else {
            return Err(ImportError::Missing {
                path: path.clone(),
                key: key.to_string(),
                layer: who(model, leaky),
                expected,
                available: key_list(sd.shapes()),
            });
        };
        if found != expected.as_slice() {
            return Err(ImportError::Shape {
                path: path.clone(),
                key: key.to_string(),
                layer: who(model, leaky),
                expected,
                found: found.to_vec(),
            });
        }
        used.insert(key.to_string());
        sd.get::<F>(key)
    };
    for (leaky, map) in maps(model, keys) {
        let shape = &shapes.iter().find(|(n, _)| *n == leaky).expect("every mapped name is a parameter").1;
        let expected = torch_shape(&map, shape);
        let value = match &map {
            Map::Same(k) => fetch(k, leaky, expected)?,
            Map::Transposed(k) => transpose(fetch(k, leaky, expected)?),
            Map::Gates(k) => transpose(reorder(&fetch(k, leaky, expected)?, 0, cell)),
            Map::Bias(ih, hh) => {
                let a = fetch(ih, leaky, expected.clone())?;
                let b = fetch(hh, leaky, expected)?;
                reorder(&(a + b), 0, cell)
            }
        };
        staged.push((leaky, value));
    }
    let extra: Vec<(String, Vec<usize>)> =
        sd.shapes().filter(|(k, _)| !used.contains(*k)).map(|(k, s)| (k.to_string(), s.to_vec())).collect();
    if !extra.is_empty() {
        let want: Vec<(String, Vec<usize>)> = maps(model, keys)
            .iter()
            .flat_map(|(leaky, map)| {
                let shape = torch_shape(map, &shapes.iter().find(|(n, _)| n == leaky).expect("mapped").1);
                match map {
                    Map::Same(k) | Map::Gates(k) | Map::Transposed(k) => vec![(k.clone(), shape)],
                    Map::Bias(a, b) => vec![(a.clone(), shape.clone()), (b.clone(), shape)],
                }
            })
            .collect();
        let expected = key_list(want.iter().map(|(k, s)| (k.as_str(), s.as_slice())));
        return Err(ImportError::Extra { path, keys: extra, expected });
    }
    let mut staged: std::collections::HashMap<&str, Tensor<F>> = staged.into_iter().collect();
    for p in model.params_mut() {
        p.value = staged.remove(p.name).expect("staged every parameter");
        p.grad = Tensor::zeros(p.value.raw_dim());
    }
    Ok(())
}

/// Every parameter of the recurrent `model` as PyTorch's `state_dict` would hold it, keyed
/// with `keys`, in PyTorch's layouts and gate order, in f64. The bias goes to `bias_ih_l0`
/// and `bias_hh_l0` is zero (their sum is leaky's `b`).
pub fn export_seq_model<F: Float>(model: &SeqModel<F>, keys: &SeqKeys) -> Vec<(String, ArrayD<f64>)> {
    export(model, keys, false)
}

/// The gradient of every parameter of `model` from its last
/// [`SeqModel::forward_backward`], keyed and laid out as [`export_seq_model`]: what `p.grad`
/// holds in PyTorch for the same weights and loss (`bias_ih_l0` and `bias_hh_l0` both get
/// leaky's `db`, since each enters the sum once).
pub fn export_seq_model_grads<F: Float>(model: &SeqModel<F>, keys: &SeqKeys) -> Vec<(String, ArrayD<f64>)> {
    export(model, keys, true)
}

fn export<F: Float>(model: &SeqModel<F>, keys: &SeqKeys, grads: bool) -> Vec<(String, ArrayD<f64>)> {
    let cell = model.spec.cell;
    let mut out = Vec::new();
    for (leaky, map) in maps(model, keys) {
        let p = model.params().into_iter().find(|p| p.name == leaky).expect("every mapped name is a parameter");
        let t = if grads { &p.grad } else { &p.value }.mapv(|v| v.to_f64c());
        match map {
            Map::Same(k) => out.push((k, t)),
            Map::Transposed(k) => out.push((k, transpose(t))),
            Map::Gates(k) => out.push((k, reorder(&transpose(t), 0, cell))),
            Map::Bias(ih, hh) => {
                let b = reorder(&t, 0, cell);
                let other = if grads { b.clone() } else { ArrayD::zeros(b.raw_dim()) };
                out.push((ih, b));
                out.push((hh, other));
            }
        }
    }
    out
}

/// Write the recurrent `model` as a PyTorch `state_dict` in f32 to `path`, atomically, with
/// the module names in `keys` ([`export_seq_model`]).
pub fn save_pytorch_seq<F: Float>(path: &Path, model: &SeqModel<F>, keys: &SeqKeys) -> Result<(), ImportError> {
    write_state_dict(path, export_seq_model(model, keys).into_iter().map(|(k, t)| (k, Payload::F32(t))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};

    #[test]
    fn lstm_gate_blocks_swap_g_and_o_both_ways() {
        // Rows 0..8 of a (4H, 1) PyTorch weight with H = 2: blocks i, f, g, o.
        let torch = Array2::from_shape_fn((8, 1), |(r, _)| r as f64).into_dyn();
        let leaky = reorder(&torch, 0, Cell::Lstm);
        assert_eq!(leaky.iter().copied().collect::<Vec<_>>(), [0., 1., 2., 3., 6., 7., 4., 5.]);
        assert_eq!(reorder(&leaky, 0, Cell::Lstm), torch);
        let b = Array1::from_iter((0..4).map(|v| v as f64)).into_dyn();
        assert_eq!(reorder(&b, 0, Cell::Rnn), b);
    }
}
