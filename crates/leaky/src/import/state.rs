//! [`StateDict`]: the tensors of one safetensors file, by key.

use super::{shape_str, ImportError};
use crate::tensor::Float;
use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

/// The tensors of a safetensors file (a PyTorch `state_dict` saved with
/// `safetensors.torch.save_file`), held in memory and converted on request.
pub struct StateDict {
    origin: String,
    bytes: Vec<u8>,
    /// Where the tensor data starts in `bytes` (after the 8-byte length and the header).
    data_start: usize,
    tensors: BTreeMap<String, TensorInfo>,
}

/// A tensor with NaN or infinite values (see [`StateDict::non_finite`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonFinite {
    /// The key.
    pub key: String,
    /// How many values are NaN.
    pub nan: usize,
    /// How many values are +Inf or -Inf.
    pub inf: usize,
    /// How many values the tensor has.
    pub len: usize,
}

impl StateDict {
    /// Read and check the safetensors file at `path`: its header must parse and describe
    /// exactly the bytes that follow it. Tensors are converted only when asked for.
    pub fn open(path: &Path) -> Result<StateDict, ImportError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ImportError::Io { path: origin.clone(), source })?;
        Self::from_bytes(bytes, &origin)
    }

    /// [`StateDict::open`] on bytes already in memory; `origin` names them in errors.
    pub fn from_bytes(bytes: Vec<u8>, origin: &str) -> Result<StateDict, ImportError> {
        let fail = |detail: String| ImportError::Format { path: origin.to_string(), detail };
        if bytes.len() < 8 {
            return Err(fail(format!("the file has {} bytes, fewer than the 8-byte header length", bytes.len())));
        }
        let (n, metadata): (usize, Metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| {
            let header = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
            fail(describe(&e, header, bytes.len()))
        })?;
        let tensors: BTreeMap<String, TensorInfo> =
            metadata.tensors().into_iter().map(|(k, info)| (k, info.clone())).collect();
        Ok(StateDict { origin: origin.to_string(), bytes, data_start: 8 + n, tensors })
    }

    /// Remove `prefix` from the start of every key that has it, e.g. `"module."` from a
    /// model saved while wrapped in `DistributedDataParallel` (or `"_orig_mod."` after
    /// `torch.compile`). Returns how many keys were renamed. Errors, changing nothing, when a
    /// renamed key would collide with another key.
    pub fn strip_prefix(&mut self, prefix: &str) -> Result<usize, ImportError> {
        let mut out = BTreeMap::new();
        let mut renamed = 0;
        for (k, info) in &self.tensors {
            let new = match k.strip_prefix(prefix) {
                Some(rest) if !rest.is_empty() => {
                    renamed += 1;
                    rest.to_string()
                }
                _ => k.clone(),
            };
            if out.insert(new.clone(), info.clone()).is_some() {
                return Err(ImportError::Model(format!(
                    "{}: removing `{prefix}` from the keys gives `{new}` twice",
                    self.origin
                )));
            }
        }
        self.tensors = out;
        Ok(renamed)
    }

    /// Where the tensors came from (the path given to [`StateDict::open`]).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Every key, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the file holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Whether `key` is in the file.
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// The shape of `key` as stored (PyTorch's layout), or `None` if there is no such key.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(|i| i.shape.as_slice())
    }

    /// The element type of `key` as the file names it (`"F32"`, `"BF16"`, `"I64"`, ...).
    pub fn dtype(&self, key: &str) -> Option<String> {
        self.tensors.get(key).map(|i| i.dtype.to_string())
    }

    /// Every key with its shape, sorted by key.
    pub fn shapes(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.tensors.iter().map(|(k, i)| (k.as_str(), i.shape.as_slice()))
    }

    /// The tensor `key` converted to `F` (f32, f64, f16 and bf16 are read, the 16-bit types
    /// widened exactly; f64 -> f32 rounds), in the stored shape and layout. Errors: no such
    /// key, or a dtype that is not floating point.
    pub fn get<F: Float>(&self, key: &str) -> Result<ArrayD<F>, ImportError> {
        let info = self
            .tensors
            .get(key)
            .ok_or_else(|| ImportError::NoKey { path: self.origin.clone(), key: key.to_string() })?;
        let data = &self.bytes[self.data_start + info.data_offsets.0..self.data_start + info.data_offsets.1];
        let values: Vec<F> = match info.dtype {
            Dtype::F32 => data.chunks_exact(4).map(|c| F::from_f64c(f32::from_le_bytes(le(c)) as f64)).collect(),
            Dtype::F64 => data.chunks_exact(8).map(|c| F::from_f64c(f64::from_le_bytes(le(c)))).collect(),
            Dtype::F16 => {
                data.chunks_exact(2).map(|c| F::from_f64c(half::f16::from_le_bytes(le(c)).to_f64())).collect()
            }
            Dtype::BF16 => {
                data.chunks_exact(2).map(|c| F::from_f64c(half::bf16::from_le_bytes(le(c)).to_f64())).collect()
            }
            other => {
                return Err(ImportError::Dtype {
                    path: self.origin.clone(),
                    key: key.to_string(),
                    dtype: other.to_string(),
                })
            }
        };
        ArrayD::from_shape_vec(IxDyn(&info.shape), values).map_err(|e| ImportError::Format {
            path: self.origin.clone(),
            detail: format!("key `{key}`: {} values do not fill shape {}: {e}", data.len(), shape_str(&info.shape)),
        })
    }

    /// A one-element integer tensor (such as a batch norm's `num_batches_tracked`, int64 of
    /// shape ()) as a count; `None` when there is no such key, or it is not one non-negative
    /// integer (i64, i32, i16, i8 or u8).
    pub fn count(&self, key: &str) -> Option<u64> {
        let info = self.tensors.get(key)?;
        if info.shape.iter().product::<usize>() != 1 {
            return None;
        }
        let data = &self.bytes[self.data_start + info.data_offsets.0..self.data_start + info.data_offsets.1];
        let v: i64 = match info.dtype {
            Dtype::I64 => i64::from_le_bytes(le(data.get(..8)?)),
            Dtype::I32 => i32::from_le_bytes(le(data.get(..4)?)) as i64,
            Dtype::I16 => i16::from_le_bytes(le(data.get(..2)?)) as i64,
            Dtype::I8 => *data.first()? as i8 as i64,
            Dtype::U8 => *data.first()? as i64,
            _ => return None,
        };
        u64::try_from(v).ok()
    }

    /// [`StateDict::get`] in f64.
    pub fn get_f64(&self, key: &str) -> Result<ArrayD<f64>, ImportError> {
        self.get::<f64>(key)
    }

    /// The floating-point tensors holding NaN or infinite values, sorted by key (integer
    /// tensors such as `num_batches_tracked` are skipped). An f32 value too large for the
    /// model's f32 is not reported here; only what is stored.
    pub fn non_finite(&self) -> Vec<NonFinite> {
        let mut out = Vec::new();
        for key in self.tensors.keys() {
            let Ok(t) = self.get::<f64>(key) else { continue };
            let nan = t.iter().filter(|v| v.is_nan()).count();
            let inf = t.iter().filter(|v| v.is_infinite()).count();
            if nan + inf > 0 {
                out.push(NonFinite { key: key.clone(), nan, inf, len: t.len() });
            }
        }
        out
    }
}

fn le<const N: usize>(c: &[u8]) -> [u8; N] {
    c.try_into().expect("chunks_exact gives N bytes")
}

/// The safetensors crate's error in words a user can act on.
fn describe(e: &safetensors::SafeTensorError, header: u64, len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => format!("the file has {len} bytes, too few for a header"),
        E::HeaderTooLarge => format!("the first 8 bytes give a header of {header} bytes, over safetensors' limit of 100 MB: this is not a safetensors file"),
        E::InvalidHeaderLength => format!("the first 8 bytes give a header of {header} bytes but the file has only {len} bytes (truncated, or not a safetensors file)"),
        E::InvalidHeader(_) | E::InvalidHeaderStart | E::InvalidHeaderDeserialization(_) => {
            format!("the {header}-byte header is not a safetensors JSON header ({e})")
        }
        E::MetadataIncompleteBuffer => format!(
            "the header describes tensor data of another length than the {} bytes that follow it (truncated or padded file)",
            len.saturating_sub(8 + header as usize)
        ),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn file(entries: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, TensorView)> = entries
            .iter()
            .map(|(k, d, s, b)| (k.to_string(), TensorView::new(*d, s.clone(), b).expect("consistent")))
            .collect();
        safetensors::serialize(views, None).expect("serialise")
    }

    #[test]
    fn reads_every_float_dtype_and_widens_16_bit_ones_exactly() {
        let vals = [1.5f64, -0.333251953125, 65504.0, 1e-3];
        let f16: Vec<u8> = vals.iter().flat_map(|&v| half::f16::from_f64(v).to_le_bytes()).collect();
        let bf16: Vec<u8> = vals.iter().flat_map(|&v| half::bf16::from_f64(v).to_le_bytes()).collect();
        let f32b: Vec<u8> = vals.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
        let f64b: Vec<u8> = vals.iter().flat_map(|&v| v.to_le_bytes()).collect();
        let bytes = file(&[
            ("h", Dtype::F16, vec![2, 2], f16),
            ("b", Dtype::BF16, vec![4], bf16),
            ("s", Dtype::F32, vec![4, 1], f32b),
            ("d", Dtype::F64, vec![1, 4], f64b),
            ("i", Dtype::I32, vec![1], 7i32.to_le_bytes().to_vec()),
        ]);
        let sd = StateDict::from_bytes(bytes, "mem").unwrap();
        assert_eq!(sd.keys().collect::<Vec<_>>(), ["b", "d", "h", "i", "s"]);
        assert_eq!(sd.shape("h"), Some(&[2usize, 2][..]));
        assert_eq!(sd.dtype("b").as_deref(), Some("BF16"));
        let h = sd.get_f64("h").unwrap();
        for (got, &v) in h.iter().zip(&vals) {
            assert_eq!(*got, half::f16::from_f64(v).to_f64());
        }
        let b = sd.get::<f32>("b").unwrap();
        for (got, &v) in b.iter().zip(&vals) {
            assert_eq!(*got as f64, half::bf16::from_f64(v).to_f64());
        }
        assert_eq!(sd.get_f64("d").unwrap().as_slice().unwrap(), &vals);
        assert_eq!(sd.get_f64("s").unwrap().shape(), &[4, 1]);
        let e = sd.get_f64("i").unwrap_err().to_string();
        assert!(e.contains("`i`") && e.contains("I32"), "{e}");
        let e = sd.get_f64("nope").unwrap_err().to_string();
        assert!(e.contains("`nope`"), "{e}");
    }

    #[test]
    fn strips_a_ddp_prefix() {
        let bytes = file(&[
            ("module.0.weight", Dtype::F32, vec![1], 1f32.to_le_bytes().to_vec()),
            ("module.0.bias", Dtype::F32, vec![1], 2f32.to_le_bytes().to_vec()),
        ]);
        let mut sd = StateDict::from_bytes(bytes, "mem").unwrap();
        assert_eq!(sd.strip_prefix("module.").unwrap(), 2);
        assert_eq!(sd.keys().collect::<Vec<_>>(), ["0.bias", "0.weight"]);
        assert_eq!(sd.get_f64("0.bias").unwrap()[[0]], 2.0);
        let bytes = file(&[
            ("module.w", Dtype::F32, vec![1], 1f32.to_le_bytes().to_vec()),
            ("w", Dtype::F32, vec![1], 2f32.to_le_bytes().to_vec()),
        ]);
        let mut sd = StateDict::from_bytes(bytes, "mem").unwrap();
        let e = sd.strip_prefix("module.").unwrap_err().to_string();
        assert!(e.contains("gives `w` twice"), "{e}");
        assert!(sd.contains("module.w"));
    }

    #[test]
    fn lists_non_finite_tensors() {
        let vals = [f32::NAN, 1.0, f32::INFINITY, f32::NEG_INFINITY];
        let bytes = file(&[
            ("bad", Dtype::F32, vec![4], vals.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("good", Dtype::F32, vec![1], 2f32.to_le_bytes().to_vec()),
            ("n", Dtype::I64, vec![], 0i64.to_le_bytes().to_vec()),
        ]);
        let sd = StateDict::from_bytes(bytes, "mem").unwrap();
        assert_eq!(sd.non_finite(), vec![NonFinite { key: "bad".into(), nan: 1, inf: 2, len: 4 }]);
    }

    #[test]
    fn malformed_files_are_errors_that_say_why() {
        let good = file(&[("w", Dtype::F32, vec![3], vec![0; 12])]);
        for (bytes, needle) in [
            (vec![1u8, 2, 3], "fewer than the 8-byte"),
            (good[..good.len() - 4].to_vec(), "truncated"),
            (good[..20].to_vec(), "truncated"),
            (b"PK\x03\x04 this is a zip archive, not a safetensors file".to_vec(), "not a safetensors"),
            ([&16u64.to_le_bytes()[..], b"{\"w\": [1, 2, 3]}"].concat(), "header"),
        ] {
            let e = StateDict::from_bytes(bytes, "x.safetensors").err().expect("an error").to_string();
            assert!(e.starts_with("x.safetensors: not a readable safetensors file") && e.contains(needle), "{e}");
        }
    }
}
