//! NumPy's `.npy` files (versions 1.0, 2.0 and 3.0) and `.npz` archives of them, read with
//! the `ndarray-npy` crate (header dict and element decoding, both byte orders, C and
//! Fortran order) and the `zip` crate, behind checks that keep every error naming the file
//! and every allocation bounded.
//!
//! Layout of a `.npy` file: the magic `\x93NUMPY`, a major and a minor version byte, the
//! header length (u16 little-endian in 1.0, u32 in 2.0/3.0), then a Python dict literal
//! such as `{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2, 3), }` padded with
//! spaces and ended by a newline, then the raw elements.
//!
//! What is checked here rather than left to the crate, and why: the preamble and the
//! header length against the file's size (the crate allocates the declared header length
//! before reading it), the nesting depth of the header (its parser recurses), and the data
//! size the shape declares against the bytes that follow and against
//! [`MAX_DATASET_VALUES`] (the crate allocates the declared shape before reading the data).

use super::{classes_of, format_err, read_file, shape_str, DataError, Dataset, Head, MAX_CLASSES};
use crate::limits::{MAX_DATASET_VALUES, MAX_DECOMPRESSED_BYTES};
use ndarray::{Array2, ArrayD};
use ndarray_npy::npy::header::{Header, ParseHeaderError, ReadHeaderError};
use ndarray_npy::{ReadNpyExt, ReadableElement};
use std::path::Path;

/// Load features from `x_path` and labels from `y_path`, both written by `np.save`.
///
/// - X: shape (N, D1, D2, ...) with at least 2 axes, dtype `f4`, `f8`, `i1`..`i8` or
///   `u1`..`u8` in either byte order, C or Fortran order; it is converted to f32 and
///   flattened to `x`: (N, D1*D2*...) in C order, and `feature_shape` records `[D1, D2, ...]`.
/// - Y: shape (N,) (or (N, 1)), an integer dtype, values in `0..100000`;
///   `classes = max label + 1`.
///
/// The name is `npy:X,Y`. Errors name the file and the problem, with byte offsets for
/// header and data problems: wrong magic (with a hint for `.npz` archives), unsupported
/// version or dtype (structured, float16, complex, strings, objects), a malformed header,
/// truncated or over-long data, a shape over [`MAX_DATASET_VALUES`], NaN/Inf or
/// f32-overflowing features, float or negative labels, and N differing between X and Y.
pub fn load_npy(x_path: &Path, y_path: &Path) -> Result<Dataset, DataError> {
    let xb = read_file(x_path)?;
    let yb = read_file(y_path)?;
    npy_from_bytes(&xb, x_path, &yb, y_path)
}

/// [`load_npy`] on the two files' bytes (the paths name them in messages).
pub(crate) fn npy_from_bytes(xb: &[u8], x_path: &Path, yb: &[u8], y_path: &Path) -> Result<Dataset, DataError> {
    let xa = parse_npy(xb, x_path)?;
    let x_shape = check_x(&xa, x_path)?;
    let ya = parse_npy(yb, y_path)?;
    let x_name = x_path.display().to_string();
    dataset(&xa, x_path, &x_name, &ya, y_path, x_shape, format!("npy:{},{}", x_path.display(), y_path.display()))
}

/// Load features and labels from one `.npz` archive (`np.savez` or `np.savez_compressed`):
/// the arrays named `x` and `y` (`np.savez(f, x=X, y=Y)`), or else `arr_0` and `arr_1`
/// (`np.savez(f, X, Y)`). Each array is read as [`load_npy`] reads a file, with the same
/// rules and errors (which name `FILE.npz:x.npy`); each is inflated to at most
/// [`MAX_DECOMPRESSED_BYTES`], its `.npy` header checked after the first bytes. The name is
/// `npz:FILE`.
pub fn load_npz(path: &Path) -> Result<Dataset, DataError> {
    npz_from_bytes(&read_file(path)?, path)
}

/// The `.npy` bytes of an archive's `x` and `y` arrays, each with the label that names it
/// in messages (`FILE.npz:x.npy`).
struct NpzPair {
    x: Vec<u8>,
    x_label: std::path::PathBuf,
    y: Vec<u8>,
    y_label: std::path::PathBuf,
}

/// The arrays named `x` and `y` (else `arr_0` and `arr_1`) of an `.npz` archive's bytes,
/// each inflated to at most [`MAX_DECOMPRESSED_BYTES`].
fn npz_pair(bytes: &[u8], path: &Path) -> Result<NpzPair, DataError> {
    if !bytes.starts_with(b"PK") {
        let hint = if bytes.starts_with(MAGIC) { " (this is a single .npy file: use npy:X.npy,Y.npy)" } else { "" };
        return Err(format_err(
            path,
            format!("not a zip archive (.npz): bad magic {}{hint}", escape(&bytes[..bytes.len().min(4)])),
        ));
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format_err(path, format!("not a readable .npz (zip) archive: {e}")))?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let has = |n: &str| names.iter().any(|m| m == n);
    let (xn, yn) = if has("x.npy") && has("y.npy") {
        ("x.npy", "y.npy")
    } else if has("arr_0.npy") && has("arr_1.npy") {
        ("arr_0.npy", "arr_1.npy")
    } else {
        let mut shown: Vec<&str> = names.iter().map(String::as_str).take(10).collect();
        if names.len() > 10 {
            shown.push("...");
        }
        return Err(format_err(
            path,
            format!(
                "the archive needs arrays `x` and `y` (np.savez(f, x=X, y=Y)) or `arr_0` and `arr_1`; it has [{}]",
                shown.join(", ")
            ),
        ));
    };
    let mut read = |name: &str| -> Result<Vec<u8>, DataError> {
        let label = Path::new(&format!("{}:{name}", path.display())).to_path_buf();
        let entry = zip.by_name(name).map_err(|e| format_err(&label, format!("cannot open the array: {e}")))?;
        super::read_checked(&label, entry, &|h| npy_head(h, &label), MAX_DECOMPRESSED_BYTES, "compressed array", None)
    };
    let xb = read(xn)?;
    let yb = read(yn)?;
    let (xl, yl) = (
        Path::new(&format!("{}:{xn}", path.display())).to_path_buf(),
        Path::new(&format!("{}:{yn}", path.display())).to_path_buf(),
    );
    Ok(NpzPair { x: xb, x_label: xl, y: yb, y_label: yl })
}

/// [`load_npz`] on the archive's bytes (`path` names it in messages).
pub(crate) fn npz_from_bytes(bytes: &[u8], path: &Path) -> Result<Dataset, DataError> {
    let NpzPair { x: xb, x_label: xl, y: yb, y_label: yl } = npz_pair(bytes, path)?;
    let xa = parse_npy(&xb, &xl)?;
    let x_shape = check_x(&xa, &xl)?;
    let ya = parse_npy(&yb, &yl)?;
    let x_name = xl.display().to_string();
    dataset(&xa, &xl, &x_name, &ya, &yl, x_shape, format!("npz:{}", path.display()))
}

/// The elements of one array read by [`read_npy_array`], in C order.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayValues {
    /// A float array (`f4`, `f8`) as f32, every value finite.
    Float(Vec<f32>),
    /// An integer array (`i1`..`i8`, `u1`..`u8`).
    Int(Vec<i64>),
}

/// One array of any shape from a `.npy` file (or an `.npz` member), for callers that give
/// the axes their own meaning (sequences (N, T, D), per-step targets (N, T)).
#[derive(Clone, Debug, PartialEq)]
pub struct NpyData {
    /// The file (`X.npy`, or `FILE.npz:x.npy` for an archive member), for messages.
    pub origin: String,
    /// The shape as stored.
    pub shape: Vec<usize>,
    /// The elements.
    pub values: ArrayValues,
}

impl NpyData {
    /// The elements as f64, whatever their type.
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.values {
            ArrayValues::Float(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayValues::Int(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Whether the elements are integers.
    pub fn is_int(&self) -> bool {
        matches!(self.values, ArrayValues::Int(_))
    }

    /// The shape written as numpy prints it: `(8, 6, 3)`, `(8,)`.
    pub fn shape_str(&self) -> String {
        shape_str(&self.shape)
    }

    /// Any shape written as numpy prints it.
    pub fn shape_of(shape: &[usize]) -> String {
        shape_str(shape)
    }
}

/// Read one array written by `np.save`, with the checks of [`load_npy`] (header, size,
/// dtype, [`MAX_DATASET_VALUES`]); floats must be finite and fit f32, integers fit i64. Errors
/// name the file.
pub fn read_npy_array(path: &Path) -> Result<NpyData, DataError> {
    let bytes = read_file(path)?;
    array_from_bytes(&bytes, path)
}

/// The arrays `x` and `y` (else `arr_0` and `arr_1`) of an `.npz` archive, each read as
/// [`read_npy_array`] reads a file; errors name `FILE.npz:x.npy`.
pub fn read_npz_arrays(path: &Path) -> Result<(NpyData, NpyData), DataError> {
    let bytes = read_file(path)?;
    let pair = npz_pair(&bytes, path)?;
    Ok((array_from_bytes(&pair.x, &pair.x_label)?, array_from_bytes(&pair.y, &pair.y_label)?))
}

fn array_from_bytes(bytes: &[u8], path: &Path) -> Result<NpyData, DataError> {
    let a = parse_npy(bytes, path)?;
    if a.shape.is_empty() {
        return Err(format_err(path, "a scalar (shape ()): expected an array with at least one axis"));
    }
    let values = match a.dtype {
        Dtype::F4 | Dtype::F8 => ArrayValues::Float(features(&a, path)?),
        _ => {
            let wide: Vec<i128> = match a.dtype {
                Dtype::I(1) => decode(&a, path, |v: i8| v as i128)?,
                Dtype::I(2) => decode(&a, path, |v: i16| v as i128)?,
                Dtype::I(4) => decode(&a, path, |v: i32| v as i128)?,
                Dtype::I(_) => decode(&a, path, |v: i64| v as i128)?,
                Dtype::U(1) => decode(&a, path, |v: u8| v as i128)?,
                Dtype::U(2) => decode(&a, path, |v: u16| v as i128)?,
                Dtype::U(4) => decode(&a, path, |v: u32| v as i128)?,
                _ => decode(&a, path, |v: u64| v as i128)?,
            };
            let mut out = Vec::with_capacity(wide.len());
            for (k, v) in wide.into_iter().enumerate() {
                let v = i64::try_from(v)
                    .map_err(|_| format_err(path, format!("element {k} ({}) is {v}: too large", offset_of(&a, k))))?;
                out.push(v);
            }
            ArrayValues::Int(out)
        }
    };
    Ok(NpyData { origin: path.display().to_string(), shape: a.shape.clone(), values })
}

/// X's shape checks: at least 2 axes, N > 0, D > 0. Returns (N, D, feature shape).
fn check_x(xa: &NpyArray, x_path: &Path) -> Result<(usize, usize, Vec<usize>), DataError> {
    if xa.shape.len() < 2 {
        return Err(format_err(
            x_path,
            format!("X must have shape (N, D, ...) with at least 2 axes, found {}", shape_str(&xa.shape)),
        ));
    }
    let n = xa.shape[0];
    let feature_shape = xa.shape[1..].to_vec();
    let d: usize = feature_shape.iter().product();
    if n == 0 {
        return Err(format_err(x_path, format!("X has no examples (shape {})", shape_str(&xa.shape))));
    }
    if d == 0 {
        return Err(format_err(x_path, format!("X's examples have no features (shape {})", shape_str(&xa.shape))));
    }
    Ok((n, d, feature_shape))
}

fn dataset(
    xa: &NpyArray,
    x_path: &Path,
    x_name: &str,
    ya: &NpyArray,
    y_path: &Path,
    (n, d, feature_shape): (usize, usize, Vec<usize>),
    name: String,
) -> Result<Dataset, DataError> {
    let y_ok = matches!(ya.shape.as_slice(), [_] | [_, 1]);
    if !y_ok {
        return Err(format_err(y_path, format!("Y must have shape (N,), found {}", shape_str(&ya.shape))));
    }
    let y = labels(ya, y_path)?;
    if y.len() != n {
        return Err(format_err(
            y_path,
            format!("{} labels but {x_name} has {n} examples (shape {})", y.len(), shape_str(&xa.shape)),
        ));
    }
    let x = features(xa, x_path)?;
    let x = Array2::from_shape_vec((n, d), x).map_err(|e| format_err(x_path, format!("internal shape error: {e}")))?;
    let ds = Dataset { name, x, classes: classes_of(&y), y, feature_shape };
    ds.validate()?;
    Ok(ds)
}

/// Element types the reader understands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dtype {
    F4,
    F8,
    /// Signed integer of this many bytes (1, 2, 4, 8).
    I(usize),
    /// Unsigned integer of this many bytes (1, 2, 4, 8).
    U(usize),
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F4 => 4,
            Dtype::F8 => 8,
            Dtype::I(n) | Dtype::U(n) => n,
        }
    }
}

/// A `.npy` file whose header has been checked against its size.
struct NpyArray<'a> {
    dtype: Dtype,
    /// The `descr` string as written, for messages.
    descr: String,
    shape: Vec<usize>,
    fortran: bool,
    /// The whole file (ndarray-npy reads the header again).
    bytes: &'a [u8],
    /// File offset of the data, for messages.
    data_offset: usize,
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Headers longer than this are refused. NumPy itself refuses to read headers over 10 000
/// bytes unless told to; real ones are a few hundred.
const MAX_HEADER_BYTES: usize = 65_536;

/// Nesting limit of the header's Python literal: real headers nest at most 3 deep
/// (structured dtypes), and the crate's parser recurses, so `((((...` must stop early.
const MAX_DEPTH: usize = 32;

/// The preamble: (header start, header length), or `Head::Need`-style "need more".
fn preamble(bytes: &[u8], path: &Path) -> Result<Result<(usize, usize), usize>, DataError> {
    let head = &bytes[..bytes.len().min(MAGIC.len())];
    if head != &MAGIC[..head.len()] || bytes.is_empty() {
        let hint =
            if bytes.starts_with(b"PK") { " (this is a zip archive, probably an .npz: use npz:FILE.npz)" } else { "" };
        return Err(format_err(
            path,
            format!("byte 0: bad magic {}, expected \\x93NUMPY: not a .npy file{hint}", escape(head)),
        ));
    }
    if bytes.len() < 10 {
        return Ok(Err(10));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_start, header_len) = match (major, minor) {
        (1, 0) => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        (2, 0) | (3, 0) => {
            if bytes.len() < 12 {
                return Ok(Err(12));
            }
            (12, u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize)
        }
        _ => {
            return Err(format_err(
                path,
                format!("byte 6: unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)"),
            ))
        }
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(format_err(
            path,
            format!("byte 8: the header declares {header_len} bytes, more than the {MAX_HEADER_BYTES} a .npy header may have"),
        ));
    }
    Ok(Ok((header_start, header_len)))
}

/// A [`Head`] check for `.npy` content inflated from an `.npz` archive.
fn npy_head(b: &[u8], path: &Path) -> Result<Head, DataError> {
    let (start, len) = match preamble(b, path)? {
        Err(need) => return Ok(Head::Need(need)),
        Ok(p) => p,
    };
    if b.len() < start + len {
        return Ok(Head::Need(start + len));
    }
    let a = parse_header(b, path, start, len)?;
    Ok(Head::Total((a.data_offset + a.shape.iter().product::<usize>() * a.dtype.size()) as u64))
}

fn parse_npy<'a>(bytes: &'a [u8], path: &Path) -> Result<NpyArray<'a>, DataError> {
    let (header_start, header_len) = match preamble(bytes, path)? {
        Ok(p) => p,
        Err(need) => {
            let what = if need == 10 {
                "10-byte .npy preamble".to_string()
            } else {
                format!("12-byte .npy {}.0 preamble", bytes[6])
            };
            return Err(format_err(path, format!("truncated: {} bytes, too short for the {what}", bytes.len())));
        }
    };
    let data_offset = header_start + header_len;
    if data_offset > bytes.len() {
        return Err(format_err(
            path,
            format!(
                "truncated: the header declares {header_len} bytes from offset {header_start}, but the file has only {} bytes",
                bytes.len()
            ),
        ));
    }
    let a = parse_header(bytes, path, header_start, header_len)?;
    let need = a.shape.iter().product::<usize>() * a.dtype.size(); // bounded by parse_header
    let have = bytes.len() - data_offset;
    if have != need {
        let what = if have < need { "truncated" } else { "too long" };
        return Err(format_err(
            path,
            format!(
                "{what}: shape {} of '{}' needs {need} data bytes from offset {data_offset}, but {have} follow the header",
                shape_str(&a.shape),
                a.descr
            ),
        ));
    }
    Ok(a)
}

/// Parse the header dict with ndarray-npy; `bytes` holds at least the whole header.
fn parse_header<'a>(
    bytes: &'a [u8],
    path: &Path,
    header_start: usize,
    header_len: usize,
) -> Result<NpyArray<'a>, DataError> {
    let data_offset = header_start + header_len;
    let header = &bytes[header_start..data_offset];
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    for (i, &c) in header.iter().enumerate() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(c),
            (None, b'(' | b'[' | b'{') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format_err(
                        path,
                        format!("header parse error at byte offset {}: nested too deeply", header_start + i),
                    ));
                }
            }
            (None, b')' | b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let parsed = Header::from_reader(&mut &bytes[..data_offset]).map_err(|e| {
        let detail = match e {
            ReadHeaderError::Io(e) => format!("truncated header: {e}"),
            ReadHeaderError::Parse(p) => match p {
                ParseHeaderError::DictParse(e) => pest_message(&e.to_string(), header, header_start),
                ParseHeaderError::MetaNotDict(v) => format!("the header must be a Python dict `{{...}}`, found {v}"),
                ParseHeaderError::MissingKey(k) => {
                    // ndarray-npy 0.10 misspells this one.
                    let k = if k == "shaper" { "shape".to_string() } else { k };
                    format!("header has no '{k}' key: {}", escape(header.trim_ascii()))
                }
                ParseHeaderError::UnknownKey(k) => {
                    format!("header has an unknown key {k} (expected 'descr', 'fortran_order', 'shape')")
                }
                ParseHeaderError::IllegalValue { key, value } if key == "fortran_order" => {
                    format!("header: 'fortran_order' must be True or False, found {value}")
                }
                ParseHeaderError::IllegalValue { key, value } if key == "shape" => {
                    format!("header: 'shape' must be a tuple of non-negative integers, found {value}")
                }
                ParseHeaderError::MissingNewline => {
                    "header does not end with a newline (not written by numpy?)".to_string()
                }
                other => format!("header: {other}"),
            },
        };
        format_err(path, detail)
    })?;
    let descr = match &parsed.type_descriptor {
        py_literal::Value::String(s) => s.clone(),
        other => {
            return Err(format_err(
                path,
                format!("unsupported dtype {other}: structured and record dtypes are not supported{SUPPORTED}"),
            ))
        }
    };
    let dtype =
        parse_descr(&descr).ok_or_else(|| format_err(path, format!("unsupported dtype '{descr}'{SUPPORTED}")))?;
    let shape = parsed.shape;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|c| c.checked_mul(dtype.size()).is_some())
        .ok_or_else(|| format_err(path, format!("shape {} is too large", shape_str(&shape))))?;
    if count > MAX_DATASET_VALUES {
        return Err(format_err(
            path,
            format!(
                "shape {} holds {count} values, more than the limit of {MAX_DATASET_VALUES} (MAX_DATASET_VALUES)",
                shape_str(&shape)
            ),
        ));
    }
    Ok(NpyArray { dtype, descr, shape, fortran: parsed.layout.is_fortran(), bytes, data_offset })
}

/// py_literal's (pest's) multi-line syntax error as one line: the file offset of the
/// column it points at, what it expected, and the header text near there.
fn pest_message(e: &str, header: &[u8], header_start: usize) -> String {
    // "syntax error:  --> 1:56\n  |\n1 | ...\n  |   ^---\n  |\n  = expected ..."
    let col = e
        .split("--> ")
        .nth(1)
        .and_then(|r| r.split(|c: char| c.is_whitespace()).next())
        .and_then(|lc| lc.split_once(':'))
        .and_then(|(l, c)| Some((l.parse::<usize>().ok()?, c.parse::<usize>().ok()?)));
    let expected = e.lines().find_map(|l| l.trim().strip_prefix("= ")).unwrap_or("a Python literal");
    match col {
        Some((1, c)) if c >= 1 => {
            let pos = (c - 1).min(header.len());
            let near = &header[pos..header.len().min(pos + 20)];
            format!(
                "header parse error at byte offset {}: {expected} (near {})",
                header_start + pos,
                escape(near.trim_ascii_end())
            )
        }
        _ => format!("header parse error: {expected} (header: {})", escape(header.trim_ascii())),
    }
}

const SUPPORTED: &str = " (supported: f4, f8, i1, i2, i4, i8, u1, u2, u4, u8, little- or big-endian)";

fn parse_descr(descr: &str) -> Option<Dtype> {
    let mut chars = descr.chars();
    let order = chars.next()?;
    let kind = chars.next()?;
    let size: usize = chars.as_str().parse().ok()?;
    let dtype = match (kind, size) {
        ('f', 4) => Dtype::F4,
        ('f', 8) => Dtype::F8,
        ('i', 1 | 2 | 4 | 8) => Dtype::I(size),
        ('u', 1 | 2 | 4 | 8) => Dtype::U(size),
        _ => return None,
    };
    // ndarray-npy reads '<' and '>' for multi-byte types and '|' for single bytes.
    match order {
        '<' | '>' if size > 1 => Some(dtype),
        '|' if size == 1 => Some(dtype),
        _ => None,
    }
}

/// All elements in C (logical) order, decoded by ndarray-npy and mapped by `f`.
fn decode<T: ReadableElement + Copy, V>(a: &NpyArray, path: &Path, f: impl Fn(T) -> V) -> Result<Vec<V>, DataError> {
    let arr = ArrayD::<T>::read_npy(a.bytes).map_err(|e| format_err(path, format!("cannot decode the data: {e}")))?;
    Ok(arr.iter().map(|&v| f(v)).collect())
}

/// The file offset of the element at C-order index `k` (for messages).
fn offset_of(a: &NpyArray, k: usize) -> String {
    if a.fortran {
        // Fortran order: the memory index is the reversed-axes index.
        let mut rem = k;
        let mut idx = vec![0; a.shape.len()];
        for (ax, &d) in a.shape.iter().enumerate().rev() {
            idx[ax] = rem % d.max(1);
            rem /= d.max(1);
        }
        let mut mem = 0;
        let mut stride = 1;
        for (ax, &d) in a.shape.iter().enumerate() {
            mem += idx[ax] * stride;
            stride *= d;
        }
        format!("byte offset {}", a.data_offset + mem * a.dtype.size())
    } else {
        format!("byte offset {}", a.data_offset + k * a.dtype.size())
    }
}

/// Features as f32, every one finite.
fn features(a: &NpyArray, path: &Path) -> Result<Vec<f32>, DataError> {
    match a.dtype {
        Dtype::F4 => to_f32(a, path, |v: f32| v as f64),
        Dtype::F8 => to_f32(a, path, |v: f64| v),
        Dtype::I(1) => to_f32(a, path, |v: i8| v as f64),
        Dtype::I(2) => to_f32(a, path, |v: i16| v as f64),
        Dtype::I(4) => to_f32(a, path, |v: i32| v as f64),
        Dtype::I(_) => to_f32(a, path, |v: i64| v as f64),
        Dtype::U(1) => to_f32(a, path, |v: u8| v as f64),
        Dtype::U(2) => to_f32(a, path, |v: u16| v as f64),
        Dtype::U(4) => to_f32(a, path, |v: u32| v as f64),
        Dtype::U(_) => to_f32(a, path, |v: u64| v as f64),
    }
}

/// Decode with ndarray-npy and convert to f32 in C order, refusing NaN, Inf and values
/// that overflow f32 (naming the example, the feature and the byte offset).
fn to_f32<T: ReadableElement + Copy>(
    a: &NpyArray,
    path: &Path,
    wide: impl Fn(T) -> f64,
) -> Result<Vec<f32>, DataError> {
    let arr = ArrayD::<T>::read_npy(a.bytes).map_err(|e| format_err(path, format!("cannot decode the data: {e}")))?;
    let d = arr.len() / a.shape[0].max(1);
    let mut out = Vec::with_capacity(arr.len());
    for (k, &t) in arr.iter().enumerate() {
        let v = wide(t);
        let f = v as f32;
        if !f.is_finite() {
            let why = if v.is_finite() { "overflows f32" } else { "is not finite (NaN and Inf are not allowed)" };
            return Err(format_err(
                path,
                format!(
                    "example {}, feature {} (element {k}, {}) is {v}: {why}",
                    k / d.max(1),
                    k % d.max(1),
                    offset_of(a, k)
                ),
            ));
        }
        out.push(f);
    }
    Ok(out)
}

fn labels(a: &NpyArray, path: &Path) -> Result<Vec<usize>, DataError> {
    let vals: Vec<i128> = match a.dtype {
        Dtype::F4 | Dtype::F8 => {
            return Err(format_err(
                path,
                format!("labels must have an integer dtype, found '{}' (convert with y.astype(np.int64))", a.descr),
            ))
        }
        Dtype::I(1) => decode(a, path, |v: i8| v as i128)?,
        Dtype::I(2) => decode(a, path, |v: i16| v as i128)?,
        Dtype::I(4) => decode(a, path, |v: i32| v as i128)?,
        Dtype::I(_) => decode(a, path, |v: i64| v as i128)?,
        Dtype::U(1) => decode(a, path, |v: u8| v as i128)?,
        Dtype::U(2) => decode(a, path, |v: u16| v as i128)?,
        Dtype::U(4) => decode(a, path, |v: u32| v as i128)?,
        Dtype::U(_) => decode(a, path, |v: u64| v as i128)?,
    };
    let mut out = Vec::with_capacity(vals.len());
    for (k, &v) in vals.iter().enumerate() {
        if v < 0 || v >= MAX_CLASSES as i128 {
            let why = if v < 0 { "negative" } else { "too large" };
            return Err(format_err(
                path,
                format!(
                    "label {k} ({}) is {v}: {why}; labels are class indices 0..C-1 (C at most {MAX_CLASSES})",
                    offset_of(a, k)
                ),
            ));
        }
        out.push(v as usize);
    }
    Ok(out)
}

/// Bytes as a quoted string: printable ASCII as is, anything else as `\xNN`; at most 200
/// bytes shown.
fn escape(b: &[u8]) -> String {
    let body: String = b
        .iter()
        .take(200)
        .map(|&c| if (0x20..0x7f).contains(&c) { (c as char).to_string() } else { format!("\\x{c:02x}") })
        .collect();
    let more = if b.len() > 200 { "..." } else { "" };
    format!("`{body}{more}`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/npy").join(name)
    }

    /// A .npy file as `np.save` lays it out: header padded with spaces to a multiple of
    /// 64 bytes and ended by a newline.
    fn npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let pre = if version == 1 { 10 } else { 12 };
        let mut h = header.to_string();
        while (pre + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY".to_vec();
        out.extend([version, 0]);
        if version == 1 {
            out.extend((h.len() as u16).to_le_bytes());
        } else {
            out.extend((h.len() as u32).to_le_bytes());
        }
        out.extend(h.as_bytes());
        out.extend(data);
        out
    }

    fn hdr(descr: &str, fortran: bool, shape: &str) -> String {
        let f = if fortran { "True" } else { "False" };
        format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {shape}, }}")
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn i64s(v: &[i64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Load a hand-made (X, Y) pair and return the error message, checking that it names
    /// the file it is about.
    fn err_of(x: &[u8], y: &[u8], bad: &str) -> String {
        let dir = TempDir::new("npy-err");
        let (xp, yp) = (dir.write("x.npy", x), dir.write("y.npy", y));
        let e = load_npy(&xp, &yp).unwrap_err().to_string();
        assert!(e.contains(bad), "error does not name {bad}: {e}");
        e
    }

    fn good_y() -> Vec<u8> {
        npy(1, &hdr("<i8", false, "(2,)"), &i64s(&[0, 1]))
    }

    fn good_x() -> Vec<u8> {
        npy(1, &hdr("<f4", false, "(2, 3)"), &f32s(&[1., 2., 3., 4., 5., 6.]))
    }

    #[test]
    fn numpy_written_fixtures_round_trip() {
        // x = arange(24).reshape(4, 2, 3) / 4 as float32, y = [0, 2, 1, 2] as int64.
        let ds = load_npy(&fixture("x_f4_3d.npy"), &fixture("y_i8.npy")).unwrap();
        assert_eq!((ds.len(), ds.dim(), ds.classes), (4, 6, 3));
        assert_eq!(ds.feature_shape, vec![2, 3]);
        assert_eq!(ds.y, vec![0, 2, 1, 2]);
        assert_eq!(ds.x.row(1).to_vec(), (6..12).map(|v| v as f32 / 4.0).collect::<Vec<_>>());

        // Format 2.0, float64, 2-D.
        let ds2 = load_npy(&fixture("x_f8_v2.npy"), &fixture("y_u1.npy")).unwrap();
        assert_eq!(ds2.feature_shape, vec![6]);
        assert_eq!(ds2.x, ds.x);
        assert_eq!(ds2.y, ds.y);

        let ds3 = load_npy(&fixture("x_u1.npy"), &fixture("y_i8.npy")).unwrap();
        assert_eq!(ds3.x.row(3).to_vec(), vec![6.0, 7.0]);
    }

    #[test]
    fn fortran_order_and_big_endian_fixtures_read_as_numpy_does() {
        // The same values as x_f4_3d.reshape(4, 6), written column-major and big-endian.
        let want = load_npy(&fixture("x_f4_3d.npy"), &fixture("y_i8.npy")).unwrap().x;
        for name in ["x_fortran.npy", "x_be.npy"] {
            let ds = load_npy(&fixture(name), &fixture("y_i8.npy")).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(ds.x, want, "{name}");
        }
    }

    /// Single arrays of any shape, as sequence data reads them: the same values as the
    /// data-set loaders give, integers kept as integers (negative ones too), errors naming the
    /// file (or the archive member).
    #[test]
    fn single_arrays_and_archive_members() {
        let want = load_npy(&fixture("x_f4_3d.npy"), &fixture("y_i8.npy")).unwrap();
        let x = read_npy_array(&fixture("x_f4_3d.npy")).unwrap();
        assert_eq!(x.shape, [4, 2, 3]);
        assert_eq!(x.values, ArrayValues::Float(want.x.iter().copied().collect()));
        assert!(!x.is_int() && x.shape_str() == "(4, 2, 3)" && x.origin.ends_with("x_f4_3d.npy"));
        let y = read_npy_array(&fixture("y_i8.npy")).unwrap();
        assert_eq!(y.values, ArrayValues::Int(want.y.iter().map(|&v| v as i64).collect()));
        assert_eq!(y.to_f64(), want.y.iter().map(|&v| v as f64).collect::<Vec<_>>());
        // Labels may not be negative; an array read here may.
        assert!(load_npy(&fixture("x_f4_3d.npy"), &fixture("y_neg.npy")).is_err());
        let neg = read_npy_array(&fixture("y_neg.npy")).unwrap();
        assert!(matches!(&neg.values, ArrayValues::Int(v) if v.iter().any(|&i| i < 0)), "{neg:?}");
        let (ax, ay) = read_npz_arrays(&fixture("xy.npz")).unwrap();
        assert_eq!((ax.shape.clone(), ax.values.clone()), (x.shape.clone(), x.values.clone()));
        assert_eq!(ay.values, y.values);
        assert!(ax.origin.ends_with("xy.npz:x.npy") && ay.origin.ends_with("xy.npz:y.npy"), "{}", ax.origin);
        let (bx, _) = read_npz_arrays(&fixture("arr.npz")).unwrap();
        assert_eq!(bx.shape, [4, 6]);
        let e = read_npz_arrays(&fixture("other_names.npz")).unwrap_err().to_string();
        assert!(e.contains("other_names.npz") && e.contains("needs arrays `x` and `y`"), "{e}");
        let e = read_npy_array(&fixture("xy.npz")).unwrap_err().to_string();
        assert!(e.contains("xy.npz") && e.contains("bad magic"), "{e}");
        let dir = TempDir::new("npy-array");
        let p = dir.write("nan.npy", &npy(1, &hdr("<f4", false, "(2,)"), &f32s(&[1.0, f32::NAN])));
        let e = read_npy_array(&p).unwrap_err().to_string();
        assert!(e.contains("nan.npy") && e.contains("not finite"), "{e}");
    }

    #[test]
    fn npz_archives() {
        let want = load_npy(&fixture("x_f4_3d.npy"), &fixture("y_i8.npy")).unwrap();
        // np.savez_compressed(f, x=x, y=y): deflated, named arrays, 3-D x.
        let ds = load_npz(&fixture("xy.npz")).unwrap();
        assert_eq!(
            (ds.x.clone(), ds.y.clone(), ds.feature_shape.clone()),
            (want.x.clone(), want.y.clone(), vec![2, 3])
        );
        assert!(ds.name.starts_with("npz:") && ds.name.ends_with("xy.npz"));
        // np.savez(f, X, Y): stored, arr_0 and arr_1.
        let ds = load_npz(&fixture("arr.npz")).unwrap();
        assert_eq!((ds.x.clone(), ds.y.clone(), ds.feature_shape.clone()), (want.x.clone(), want.y.clone(), vec![6]));
        let e = load_npz(&fixture("other_names.npz")).unwrap_err().to_string();
        assert!(
            e.contains("other_names.npz") && e.contains("needs arrays `x` and `y`") && e.contains("features.npy"),
            "{e}"
        );
        let e = load_npz(&fixture("x_f4_3d.npy")).unwrap_err().to_string();
        assert!(e.contains("not a zip archive") && e.contains("single .npy"), "{e}");
        // The dispatcher knows the spec.
        let ds = crate::data::load(&format!("npz:{}", fixture("xy.npz").display()), 0).unwrap();
        assert_eq!(ds.len(), 4);
        // A corrupted archive is an error naming it, never a panic.
        let bytes = std::fs::read(fixture("xy.npz")).unwrap();
        let dir = TempDir::new("npz-bad");
        for cut in [10, bytes.len() / 2, bytes.len() - 1] {
            let p = dir.write("cut.npz", &bytes[..cut]);
            let e = load_npz(&p).unwrap_err().to_string();
            assert!(e.contains("cut.npz"), "{e}");
        }
    }

    #[test]
    fn numpy_written_bad_fixtures() {
        let e = load_npy(&fixture("x_f4_3d.npy"), &fixture("y_f8.npy")).unwrap_err().to_string();
        assert!(e.contains("y_f8.npy") && e.contains("labels must have an integer dtype, found '<f8'"), "{e}");
        let e = load_npy(&fixture("x_f4_3d.npy"), &fixture("y_neg.npy")).unwrap_err().to_string();
        assert!(e.contains("y_neg.npy") && e.contains("label 1 (byte offset 130) is -1: negative"), "{e}");
    }

    #[test]
    fn hand_made_round_trip_all_dtypes() {
        let dir = TempDir::new("npy-ok");
        let y = dir.write("y.npy", &npy(3, &hdr("<i2", false, "(2, 1)"), &[1, 0, 0, 0]));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("<f8", [-1.5f64, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("|i1", vec![0xff, 2]),
            ("<i2", [-1i16, 2].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("<i4", [-1i32, 2].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("<i8", i64s(&[-1, 2])),
            ("|u1", vec![1, 2]),
            ("<u2", [1u16, 2].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("<u4", [1u32, 2].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("<u8", [1u64, 2].iter().flat_map(|v| v.to_le_bytes()).collect()),
        ];
        for (descr, data) in cases {
            let x = dir.write("x.npy", &npy(2, &hdr(descr, false, "(2, 1)"), &data));
            let ds = load_npy(&x, &y).unwrap_or_else(|e| panic!("{descr}: {e}"));
            assert_eq!(ds.y, vec![1, 0], "{descr}");
            assert_eq!(ds.x[[1, 0]], 2.0, "{descr}");
            assert!(ds.x[[0, 0]] == -1.5 || ds.x[[0, 0]] == -1.0 || ds.x[[0, 0]] == 1.0, "{descr}");
        }
        // Double quotes, another key order and no trailing comma are valid too. (Python 2's
        // `2L` integers are not: the header parser, py_literal, reads Python 3 literals.)
        let x = dir.write(
            "x2.npy",
            &npy(1, "{\"shape\": (2, 3), \"fortran_order\": False, \"descr\": \"<f4\"}", &f32s(&[0.; 6])),
        );
        assert_eq!(load_npy(&x, &dir.write("y2.npy", &good_y())).unwrap().dim(), 3);
        // Fortran order is harmless when only one axis is longer than 1.
        let x = dir.write("x3.npy", &npy(1, &hdr("<f4", true, "(2, 1)"), &f32s(&[0., 1.])));
        assert_eq!(load_npy(&x, &dir.path().join("y2.npy")).unwrap().x[[1, 0]], 1.0);
    }

    #[test]
    fn wrong_magic_and_npz() {
        let e = err_of(b"hello world, not numpy", &good_y(), "x.npy");
        assert!(e.contains("byte 0: bad magic `hello `"), "{e}");
        let e = err_of(b"PK\x03\x04rest", &good_y(), "x.npy");
        assert!(e.contains("npz"), "{e}");
        let e = err_of(&good_x(), b"", "y.npy");
        assert!(e.contains("bad magic"), "{e}");
    }

    #[test]
    fn unsupported_version_and_dtypes() {
        let mut x = good_x();
        x[6] = 4;
        let e = err_of(&x, &good_y(), "x.npy");
        assert!(e.contains("unsupported .npy format version 4.0"), "{e}");
        for descr in ["<f2", "<c8", "|b1", "<U3", "|O", "=i4"] {
            let x = npy(1, &hdr(descr, false, "(2, 1)"), &[0; 16]);
            let e = err_of(&x, &good_y(), "x.npy");
            assert!(e.contains(&format!("unsupported dtype '{descr}'")), "{e}");
        }
        let x = npy(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", &[0; 8]);
        let e = err_of(&x, &good_y(), "x.npy");
        assert!(e.contains("structured"), "{e}");
    }

    #[test]
    fn truncated_files() {
        let x = good_x();
        let e = err_of(&x[..8], &good_y(), "x.npy");
        assert!(e.contains("truncated: 8 bytes"), "{e}");
        let e = err_of(&x[..40], &good_y(), "x.npy");
        assert!(e.contains("truncated: the header declares 118 bytes from offset 10"), "{e}");
        let e = err_of(&x[..x.len() - 1], &good_y(), "x.npy");
        assert!(
            e.contains("truncated: shape (2, 3) of '<f4' needs 24 data bytes from offset 128, but 23 follow"),
            "{e}"
        );
        let mut long = x.clone();
        long.push(0);
        let e = err_of(&long, &good_y(), "x.npy");
        assert!(e.contains("too long"), "{e}");
        let v2 = npy(2, &hdr("<f4", false, "(2, 3)"), &[]);
        let e = err_of(&v2[..11], &good_y(), "x.npy");
        assert!(e.contains("too short for the 12-byte .npy 2.0 preamble"), "{e}");
    }

    #[test]
    fn header_parse_errors() {
        let cases = [
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}", "header parse error at byte offset 65"),
            ("{'descr': '<f4, 'fortran_order': False}", "header parse error at byte offset"),
            ("{'descr': '<f4', 'shape': (2, 3), }", "no 'fortran_order' key"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", "non-negative integers"),
            ("{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3), }", "'fortran_order' must be True or False"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } extra", "header parse error at byte offset 70"),
            ("['descr']", "must be a Python dict"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': ((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))), }", "nested too deeply"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1, }", "unknown key 'x'"),
            ("{'descr': '<f4', 'fortran_order': Fals, 'shape': (2, 3), }", "header parse error at byte offset 44"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 99999999999), }", "non-negative integers"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (9999999999, 9999999999), }", "too large"),
        ];
        for (h, want) in cases {
            let e = err_of(&npy(1, h, &[]), &good_y(), "x.npy");
            assert!(e.contains(want), "{h}: {e}");
        }
        let e = err_of(&npy(1, "{'descr': '<f4' 7}", &[]), &good_y(), "x.npy");
        // py_literal points at the closing quote before the stray `7` (10-byte preamble + 14).
        assert!(e.contains("header parse error at byte offset 24: expected") && e.contains("(near `' 7}`)"), "{e}");
    }

    #[test]
    fn shape_and_count_problems() {
        let e = err_of(&npy(1, &hdr("<f4", false, "(2,)"), &f32s(&[1., 2.])), &good_y(), "x.npy");
        assert!(e.contains("at least 2 axes, found (2,)"), "{e}");
        let e = err_of(&npy(1, &hdr("<f4", false, "(0, 3)"), &[]), &good_y(), "x.npy");
        assert!(e.contains("no examples"), "{e}");
        let e = err_of(&npy(1, &hdr("<f4", false, "(2, 0)"), &[]), &good_y(), "x.npy");
        assert!(e.contains("no features"), "{e}");
        let y3 = npy(1, &hdr("<i8", false, "(3,)"), &i64s(&[0, 1, 1]));
        let e = err_of(&good_x(), &y3, "y.npy");
        assert!(e.contains("3 labels but") && e.contains("x.npy has 2 examples (shape (2, 3))"), "{e}");
        let y2d = npy(1, &hdr("<i8", false, "(1, 2)"), &i64s(&[0, 1]));
        let e = err_of(&good_x(), &y2d, "y.npy");
        assert!(e.contains("Y must have shape (N,), found (1, 2)"), "{e}");
        let big = npy(1, &hdr("<i8", false, "(2,)"), &i64s(&[0, 1 << 40]));
        let e = err_of(&good_x(), &big, "y.npy");
        assert!(e.contains("label 1 (byte offset 136) is 1099511627776: too large"), "{e}");
    }

    #[test]
    fn nan_and_overflow_features() {
        let x = npy(1, &hdr("<f4", false, "(2, 3)"), &f32s(&[1., 2., 3., 4., f32::NAN, 6.]));
        let e = err_of(&x, &good_y(), "x.npy");
        assert!(e.contains("example 1, feature 1 (element 4, byte offset 144) is NaN"), "{e}");
        let x = npy(
            1,
            &hdr("<f8", false, "(2, 1)"),
            &[1e300f64, 0.].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
        );
        let e = err_of(&x, &good_y(), "x.npy");
        assert!(e.contains("overflows f32"), "{e}");
    }

    #[test]
    fn missing_files() {
        let dir = TempDir::new("npy-missing");
        let y = dir.write("y.npy", &good_y());
        let e = load_npy(&dir.path().join("nope.npy"), &y).unwrap_err();
        assert!(matches!(e, DataError::Io { .. }) && e.to_string().contains("nope.npy"), "{e}");
        let x = dir.write("x.npy", &good_x());
        let e = load_npy(&x, &dir.path().join("nolabels.npy")).unwrap_err();
        assert!(e.to_string().contains("nolabels.npy"), "{e}");
    }

    #[test]
    fn never_panics_on_corrupted_bytes() {
        // Every prefix and many single-byte corruptions of a valid file give Ok or Err.
        let dir = TempDir::new("npy-fuzz");
        let y = dir.write("y.npy", &good_y());
        let x = good_x();
        let mut r = crate::tensor::rng(9);
        for cut in 0..x.len() {
            let _ = load_npy(&dir.write("x.npy", &x[..cut]), &y);
        }
        for _ in 0..300 {
            let mut bad = x.clone();
            let k = rand::Rng::random_range(&mut r, 0..bad.len());
            bad[k] = rand::Rng::random(&mut r);
            let _ = load_npy(&dir.write("x.npy", &bad), &y);
        }
    }
}
