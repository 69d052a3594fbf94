//! A small reader for NumPy's `.npy` format (versions 1.0, 2.0 and 3.0), enough for the
//! arrays `np.save` writes for features and labels.
//!
//! Layout: the magic `\x93NUMPY`, a major and a minor version byte, the header length
//! (u16 little-endian in 1.0, u32 in 2.0/3.0), then a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2, 3), }` padded with spaces
//! and a newline, then the raw elements.

use super::{classes_of, format_err, read_file, shape_str, DataError, Dataset, MAX_CLASSES};
use ndarray::Array2;
use std::path::Path;

/// Load features from `x_path` and labels from `y_path`, both written by `np.save`.
///
/// - X: shape (N, D1, D2, ...) with at least 2 axes, dtype little-endian `f4`, `f8`,
///   `i1`..`i8` or `u1`..`u8`; it is converted to f32 and flattened to `x`: (N, D1*D2*...),
///   and `feature_shape` records `[D1, D2, ...]`.
/// - Y: shape (N,) (or (N, 1)), an integer dtype, values in `0..100000`;
///   `classes = max label + 1`.
/// - Both in C (row-major) order: a `fortran_order: True` file is refused unless its
///   layout is the same in both orders (at most one axis longer than 1).
///
/// The name is `npy:X,Y`. Errors name the file and the problem, with byte offsets for
/// header and data problems: wrong magic (including `.npz` archives), unsupported
/// version or dtype (big-endian, structured, float16, complex, ...), a malformed header,
/// truncated or over-long data, NaN/Inf or f32-overflowing features, float or negative
/// labels, and N differing between X and Y.
pub fn load_npy(x_path: &Path, y_path: &Path) -> Result<Dataset, DataError> {
    let xb = read_file(x_path)?;
    let xa = parse_npy(&xb, x_path)?;
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
    let x = features(&xa, x_path)?;

    let yb = read_file(y_path)?;
    let ya = parse_npy(&yb, y_path)?;
    let y_ok = matches!(ya.shape.as_slice(), [_] | [_, 1]);
    if !y_ok {
        return Err(format_err(y_path, format!("Y must have shape (N,), found {}", shape_str(&ya.shape))));
    }
    let y = labels(&ya, y_path)?;
    if y.len() != n {
        return Err(format_err(
            y_path,
            format!("{} labels but {} has {n} examples (shape {})", y.len(), x_path.display(), shape_str(&xa.shape)),
        ));
    }

    let x = Array2::from_shape_vec((n, d), x).map_err(|e| format_err(x_path, format!("internal shape error: {e}")))?;
    let ds = Dataset {
        name: format!("npy:{},{}", x_path.display(), y_path.display()),
        x,
        classes: classes_of(&y),
        y,
        feature_shape,
    };
    ds.validate()?;
    Ok(ds)
}

/// Element types the reader understands (all little-endian).
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

/// A parsed `.npy` file: its dtype, shape and the raw element bytes.
struct NpyArray<'a> {
    dtype: Dtype,
    /// The `descr` string as written, for messages.
    descr: String,
    shape: Vec<usize>,
    data: &'a [u8],
    /// File offset of `data`, for messages.
    data_offset: usize,
}

const MAGIC: &[u8] = b"\x93NUMPY";

fn parse_npy<'a>(bytes: &'a [u8], path: &Path) -> Result<NpyArray<'a>, DataError> {
    let head = &bytes[..bytes.len().min(MAGIC.len())];
    if head != &MAGIC[..head.len()] || bytes.is_empty() {
        let hint = if bytes.starts_with(b"PK") {
            " (this is a zip archive, probably an .npz: save each array with np.save instead)"
        } else {
            ""
        };
        return Err(format_err(
            path,
            format!("byte 0: bad magic {}, expected \\x93NUMPY: not a .npy file{hint}", escape(head)),
        ));
    }
    if bytes.len() < 10 {
        return Err(format_err(
            path,
            format!("truncated: {} bytes, too short for the 10-byte .npy preamble", bytes.len()),
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_start, header_len) = match (major, minor) {
        (1, 0) => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        (2, 0) | (3, 0) => {
            if bytes.len() < 12 {
                return Err(format_err(
                    path,
                    format!("truncated: {} bytes, too short for the 12-byte .npy {major}.0 preamble", bytes.len()),
                ));
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
    let header = &bytes[header_start..data_offset];
    let fields = HeaderParser { s: header, pos: 0, base: header_start, path }.dict()?;

    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| format_err(path, format!("header has no '{key}' key: {}", escape(header.trim_ascii()))))
    };
    let descr = match get("descr")? {
        Value::Str(s) => s.clone(),
        other => {
            return Err(format_err(
                path,
                format!("unsupported dtype {other}: structured and record dtypes are not supported{SUPPORTED}"),
            ))
        }
    };
    let fortran = match get("fortran_order")? {
        Value::Bool(b) => *b,
        other => return Err(format_err(path, format!("header: 'fortran_order' must be True or False, found {other}"))),
    };
    let shape_value = get("shape")?;
    let shape = match shape_value {
        Value::Seq(items) => items
            .iter()
            .map(|v| match v {
                Value::Int(i) => usize::try_from(*i).ok(),
                _ => None,
            })
            .collect::<Option<Vec<usize>>>(),
        _ => None,
    }
    .ok_or_else(|| {
        format_err(path, format!("header: 'shape' must be a tuple of non-negative integers, found {shape_value}"))
    })?;
    let dtype = parse_descr(&descr).ok_or_else(|| {
        let why =
            if descr.starts_with('>') { " (big-endian; convert with a.astype(a.dtype.newbyteorder('<')))" } else { "" };
        format_err(path, format!("unsupported dtype '{descr}'{why}{SUPPORTED}"))
    })?;
    // In Fortran order the bytes are the transpose of what the shape says in C order;
    // reading them as C order would scramble features across examples without any error.
    if fortran && shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(format_err(
            path,
            format!(
                "fortran_order is True (column-major data, shape {}); only C order is supported: save np.ascontiguousarray(a)",
                shape_str(&shape)
            ),
        ));
    }
    let need = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format_err(path, format!("shape {} is too large", shape_str(&shape))))?;
    let have = bytes.len() - data_offset;
    if have != need {
        let what = if have < need { "truncated" } else { "too long" };
        return Err(format_err(
            path,
            format!(
                "{what}: shape {} of '{descr}' needs {need} data bytes from offset {data_offset}, but {have} follow the header",
                shape_str(&shape)
            ),
        ));
    }
    Ok(NpyArray { dtype, descr, shape, data: &bytes[data_offset..], data_offset })
}

const SUPPORTED: &str = " (supported: little-endian f4, f8, i1, i2, i4, i8, u1, u2, u4, u8)";

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
    // Byte order means nothing for single bytes; numpy writes '|' there.
    match order {
        '<' => Some(dtype),
        '|' | '>' | '=' if size == 1 => Some(dtype),
        _ => None,
    }
}

/// Element `k` as f64 (floats) or i128 (integers).
enum Elem {
    F(f64),
    I(i128),
}

fn elem(a: &NpyArray, k: usize) -> Elem {
    let n = a.dtype.size();
    let b = &a.data[k * n..(k + 1) * n];
    let mut buf = [0u8; 8];
    buf[..n].copy_from_slice(b);
    match a.dtype {
        Dtype::F4 => Elem::F(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        Dtype::F8 => Elem::F(f64::from_le_bytes(buf)),
        Dtype::U(_) => Elem::I(u64::from_le_bytes(buf) as i128),
        Dtype::I(n) => {
            // Sign-extend from n bytes.
            let shift = 64 - 8 * n as u32;
            Elem::I(((i64::from_le_bytes(buf) << shift) >> shift) as i128)
        }
    }
}

fn features(a: &NpyArray, path: &Path) -> Result<Vec<f32>, DataError> {
    let count = a.data.len() / a.dtype.size();
    let d = count / a.shape[0];
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let v = match elem(a, k) {
            Elem::F(v) => v,
            Elem::I(i) => i as f64,
        };
        let f = v as f32;
        if !f.is_finite() {
            let why = if v.is_finite() { "overflows f32" } else { "is not finite (NaN and Inf are not allowed)" };
            return Err(format_err(
                path,
                format!(
                    "example {}, feature {} (element {k}, byte offset {}) is {v}: {why}",
                    k / d,
                    k % d,
                    a.data_offset + k * a.dtype.size()
                ),
            ));
        }
        out.push(f);
    }
    Ok(out)
}

fn labels(a: &NpyArray, path: &Path) -> Result<Vec<usize>, DataError> {
    if matches!(a.dtype, Dtype::F4 | Dtype::F8) {
        return Err(format_err(
            path,
            format!("labels must have an integer dtype, found '{}' (convert with y.astype(np.int64))", a.descr),
        ));
    }
    let count = a.data.len() / a.dtype.size();
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let Elem::I(v) = elem(a, k) else { unreachable!("integer dtype checked above") };
        if v < 0 || v >= MAX_CLASSES as i128 {
            let why = if v < 0 { "negative" } else { "too large" };
            return Err(format_err(
                path,
                format!(
                    "label {k} (byte offset {}) is {v}: {why}; labels are class indices 0..C-1 (C at most {MAX_CLASSES})",
                    a.data_offset + k * a.dtype.size()
                ),
            ));
        }
        out.push(v as usize);
    }
    Ok(out)
}

/// A Python literal from the header.
enum Value {
    Str(String),
    Bool(bool),
    None,
    Int(i128),
    /// A tuple or a list.
    Seq(Vec<Value>),
    Dict(Vec<(String, Value)>),
}

/// Python syntax, so messages quote the header as it was written.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Str(s) => write!(f, "'{s}'"),
            Value::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            Value::None => f.write_str("None"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Seq(items) => {
                let inner: Vec<String> = items.iter().map(|v| v.to_string()).collect();
                write!(f, "({})", inner.join(", "))
            }
            Value::Dict(items) => {
                let inner: Vec<String> = items.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
                write!(f, "{{{}}}", inner.join(", "))
            }
        }
    }
}

/// Recursive-descent parser for the Python literals `np.save` writes in headers: dicts,
/// tuples, lists, quoted strings, integers (with Python 2's `L` suffix), `True`, `False`
/// and `None`.
struct HeaderParser<'a> {
    s: &'a [u8],
    pos: usize,
    /// File offset of `s[0]`, so messages give file offsets.
    base: usize,
    path: &'a Path,
}

/// Nesting limit: real headers nest at most 3 deep (structured dtypes), and an adversarial
/// `((((...` must not overflow the stack.
const MAX_DEPTH: usize = 32;

impl HeaderParser<'_> {
    fn err(&self, what: &str) -> DataError {
        let near = self.s[self.pos.min(self.s.len())..self.s.len().min(self.pos + 20)].trim_ascii_end();
        format_err(
            self.path,
            format!("header parse error at byte offset {}: {what} (near {})", self.base + self.pos, escape(near)),
        )
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\t' | b'\n' | b'\r' | 0) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), DataError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected `{}`", c as char)))
        }
    }

    /// The top-level dict, which must be all the header holds.
    fn dict(mut self) -> Result<Vec<(String, Value)>, DataError> {
        if self.peek() != Some(b'{') {
            return Err(self.err("the header must be a Python dict `{...}`"));
        }
        let Value::Dict(d) = self.value(0)? else { unreachable!("starts with `{{`") };
        if self.peek().is_some() {
            return Err(self.err("unexpected text after the header dict"));
        }
        Ok(d)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DataError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Value::Dict(items));
                    }
                    let key = match self.value(depth + 1)? {
                        Value::Str(k) => k,
                        _ => return Err(self.err("dict keys must be strings")),
                    };
                    self.expect(b':')?;
                    let v = self.value(depth + 1)?;
                    items.push((key, v));
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {}
                        _ => return Err(self.err("expected `,` or `}` in dict")),
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        return Ok(Value::Seq(items));
                    }
                    items.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(c) if c == close => {}
                        _ => return Err(self.err(&format!("expected `,` or `{}`", close as char))),
                    }
                }
            }
            Some(q @ (b'\'' | b'"')) => {
                let start = self.pos + 1;
                let len =
                    self.s[start..].iter().position(|&c| c == q).ok_or_else(|| self.err("unterminated string"))?;
                let text =
                    std::str::from_utf8(&self.s[start..start + len]).map_err(|_| self.err("string is not UTF-8"))?;
                self.pos = start + len + 1;
                Ok(Value::Str(text.to_string()))
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
                let v: i128 = text.parse().map_err(|_| {
                    self.pos = start;
                    self.err("bad integer")
                })?;
                if matches!(self.s.get(self.pos), Some(b'L' | b'l')) {
                    self.pos += 1;
                }
                Ok(Value::Int(v))
            }
            Some(_) => {
                for (word, v) in [("True", Value::Bool(true)), ("False", Value::Bool(false)), ("None", Value::None)] {
                    if self.s[self.pos..].starts_with(word.as_bytes()) {
                        self.pos += word.len();
                        return Ok(v);
                    }
                }
                Err(self.err("expected a Python literal"))
            }
            None => Err(self.err("unexpected end of header")),
        }
    }
}

/// Bytes as a quoted string: printable ASCII as is, anything else as `\xNN`.
fn escape(b: &[u8]) -> String {
    let body: String = b
        .iter()
        .map(|&c| if (0x20..0x7f).contains(&c) { (c as char).to_string() } else { format!("\\x{c:02x}") })
        .collect();
    format!("`{body}`")
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
    fn numpy_written_bad_fixtures() {
        let e = load_npy(&fixture("x_fortran.npy"), &fixture("y_i8.npy")).unwrap_err().to_string();
        assert!(e.contains("x_fortran.npy") && e.contains("fortran_order is True"), "{e}");
        let e = load_npy(&fixture("x_be.npy"), &fixture("y_i8.npy")).unwrap_err().to_string();
        assert!(e.contains("x_be.npy") && e.contains("unsupported dtype '>f4' (big-endian"), "{e}");
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
        // Python 2 headers wrote `2L`; double quotes and no trailing comma are valid too.
        let x = dir.write(
            "x2.npy",
            &npy(1, "{\"shape\": (2L, 3L), \"fortran_order\": False, \"descr\": \"<f4\"}", &f32s(&[0.; 6])),
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
        for descr in ["<f2", "<c8", "|b1", "<U3", "|O", ">i4"] {
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
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}", "expected `,` or `)`"),
            ("{'descr': '<f4, 'fortran_order': False}", "expected `,` or `}`"),
            ("{'descr': '<f4', 'shape': (2, 3), }", "no 'fortran_order' key"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", "non-negative integers"),
            ("{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3), }", "'fortran_order' must be True or False"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } extra", "unexpected text after"),
            ("['descr']", "must be a Python dict"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': ((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))), }", "nested too deeply"),
            ("{'descr': '<f4', 'fortran_order': Fals, 'shape': (2, 3), }", "expected a Python literal"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 99999999999), }", "non-negative integers"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (9999999999, 9999999999), }", "too large"),
        ];
        for (h, want) in cases {
            let e = err_of(&npy(1, h, &[]), &good_y(), "x.npy");
            assert!(e.contains(want), "{h}: {e}");
        }
        let e = err_of(&npy(1, "{'descr': '<f4' 'x'}", &[]), &good_y(), "x.npy");
        assert!(e.contains("header parse error at byte offset 26: expected `,` or `}` in dict (near `'x'}`)"), "{e}");
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
