//! Data sets: the bundled UCI digits, synthetic tasks, and loaders for CSV, `.npy` and
//! IDX files. Every loader returns a [`Dataset`] or a [`DataError`] that names the file
//! and the problem; none panics on bad input.
//!
//! | spec                | what                                                        | `feature_shape`   |
//! |---------------------|-------------------------------------------------------------|-------------------|
//! | `digits`            | bundled UCI digits, 1797 examples, 10 classes, values 0..16 | `[8, 8]`          |
//! | `spiral`            | CS231n spiral, 100 points x 3 classes, 2-D                  | `[2]`             |
//! | `spiral:P,K`        | the same with P points per class and K classes              | `[2]`             |
//! | `csv:PATH`          | [`load_csv`]: numeric CSV, label in the last column         | `[D]`             |
//! | `npy:X.npy,Y.npy`   | [`load_npy`]: X (N, ...) float/int, Y (N,) int              | X's trailing axes |
//! | `npz:FILE.npz`      | [`load_npz`]: arrays `x`, `y` (or `arr_0`, `arr_1`) as npy  | X's trailing axes |
//! | `idx:IMAGES,LABELS` | [`load_idx`]: MNIST IDX files, optionally gzipped           | `[rows, cols]`    |
//!
//! Sequence tasks for the recurrent models (`adding`, `copy`, `chars`, `text:PATH`) load with
//! [`load_seq`] into a [`seq::SeqDataset`]; see the [`seq`] module.
//!
//! Every file is read with bounds (see [`crate::limits`]): only regular files, at most
//! [`MAX_DATA_FILE_BYTES`] on disk, at most [`MAX_DECOMPRESSED_BYTES`] inflated (with the
//! header's magic checked on the first inflated bytes), and at most
//! [`crate::limits::MAX_DATASET_VALUES`] values.
//!
//! Loaders keep the raw scale of the values (digits 0..16, IDX pixels 0..255); scaling is
//! the [`Standardizer`]'s job, so the unnormalised case stays reproducible.

use crate::limits::{MAX_DATA_FILE_BYTES, MAX_DECOMPRESSED_BYTES};
use crate::tensor::permutation;
use ndarray::{Array1, Array2, Axis};
use std::io::Read;
use std::path::Path;

mod csv;
mod digits;
mod idx;
mod npy;
pub mod seq;
mod spiral;

pub use csv::load_csv;
pub use digits::digits;
pub use idx::load_idx;
pub use npy::{load_npy, load_npz, read_npy_array, read_npz_arrays, ArrayValues, NpyData};
pub use seq::load_seq;
pub use spiral::spiral;

/// Labels must be below this. A label in the millions is almost always the wrong column
/// read as the label, and `classes = max label + 1` would then size every one-hot
/// matrix and output layer downstream in the millions.
pub const MAX_CLASSES: usize = 100_000;

/// The specs [`load`] understands, for error messages.
const VALID_SPECS: &str =
    "digits, spiral, spiral:POINTS,CLASSES, csv:PATH, npy:X.npy,Y.npy, npz:FILE.npz, idx:IMAGES,LABELS";

/// Load the data set named by `spec` (the experiment file's `data.dataset`); see the
/// module docs for the table of specs. `seed` only matters for synthetic data (`spiral`).
/// Paths are taken relative to the current directory; `npy:` and `idx:` paths are
/// separated by the first comma, so the first path cannot contain one.
///
/// Sequence tasks (`adding`, `copy`, `chars`, `text:PATH`) are loaded by [`load_seq`]; here
/// they give a [`DataError::Spec`] saying to use a sequence model.
pub fn load(spec: &str, seed: u64) -> Result<Dataset, DataError> {
    load_from(spec, seed, &Sources::REAL)
}

/// A loader of `csv:`, `npy:`, `npz:` or `idx:` data (the kind) from its one or two paths.
pub(crate) type FileLoader = dyn Fn(&str, &[&Path]) -> Result<Dataset, DataError>;

/// Where [`load`] gets the data a spec names once the spec is parsed: the bundled digits,
/// the spiral generator and the file loaders, or (in the experiment fuzz target) small
/// stand-ins that read no file.
pub(crate) struct Sources<'a> {
    /// `digits`.
    pub digits: &'a dyn Fn() -> Dataset,
    /// `spiral:POINTS,CLASSES` with the seed.
    pub spiral: &'a dyn Fn(usize, usize, u64) -> Dataset,
    /// `csv:`, `npy:`, `npz:` or `idx:` (the kind) with its one or two paths.
    pub files: &'a FileLoader,
}

impl Sources<'static> {
    /// The real data.
    pub const REAL: Sources<'static> = Sources {
        digits: &digits,
        spiral: &|p, k, seed| spiral(p, k, 0.2, seed),
        files: &|kind, paths| match (kind, paths) {
            ("csv", [p]) => load_csv(p),
            ("npy", [x, y]) => load_npy(x, y),
            ("npz", [p]) => load_npz(p),
            ("idx", [x, y]) => load_idx(x, y),
            _ => Err(DataError::Spec(format!("`{kind}:` with {} path(s)", paths.len()))),
        },
    };
}

/// [`load`] with the data taken from `src`.
pub(crate) fn load_from(spec: &str, seed: u64, src: &Sources) -> Result<Dataset, DataError> {
    let spec = spec.trim();
    let (kind, arg) = match spec.split_once(':') {
        Some((k, a)) => (k, Some(a)),
        None => (spec, None),
    };
    let ds = match (kind, arg) {
        ("digits", None) => (src.digits)(),
        ("spiral", None) => (src.spiral)(100, 3, seed),
        ("spiral", Some(a)) => {
            let (p, k) = parse_spiral_args(a)?;
            (src.spiral)(p, k, seed)
        }
        ("csv", Some(a)) => (src.files)("csv", &[Path::new(non_empty(a, "csv", "csv:train.csv")?)])?,
        ("npy", Some(a)) => {
            let (x, y) = two_paths(a, "npy", "npy:X.npy,Y.npy")?;
            (src.files)("npy", &[Path::new(x), Path::new(y)])?
        }
        ("npz", Some(a)) => (src.files)("npz", &[Path::new(non_empty(a, "npz", "npz:train.npz")?)])?,
        ("idx", Some(a)) => {
            let (x, y) = two_paths(a, "idx", "idx:train-images-idx3-ubyte.gz,train-labels-idx1-ubyte.gz")?;
            (src.files)("idx", &[Path::new(x), Path::new(y)])?
        }
        ("adding" | "copy" | "chars" | "text", _) => {
            return Err(DataError::Spec(format!("`{kind}` is a sequence task: use model.kind = \"rnn\" or \"lstm\"")));
        }
        ("csv" | "npy" | "npz" | "idx", None) => {
            return Err(DataError::Spec(format!(
                "data set `{spec}` needs paths after `{kind}:` (valid: {VALID_SPECS})"
            )));
        }
        _ => {
            return Err(DataError::Spec(format!(
                "unknown data set `{spec}`; valid: {VALID_SPECS} (and for model.kind = \"rnn\" or \"lstm\": \
                 adding, memory, copy, chars, text:PATH)"
            )))
        }
    };
    ds.validate()?;
    Ok(ds)
}

fn parse_spiral_args(a: &str) -> Result<(usize, usize), DataError> {
    let bad = || {
        DataError::Spec(format!(
            "`spiral:{a}`: expected `spiral:POINTS,CLASSES` with positive integers, e.g. `spiral:100,3`"
        ))
    };
    let (p, k) = a.split_once(',').ok_or_else(bad)?;
    let p: usize = p.trim().parse().map_err(|_| bad())?;
    let k: usize = k.trim().parse().map_err(|_| bad())?;
    // A cap well above any demo keeps a typo such as `spiral:1000000,1000` from
    // allocating gigabytes.
    let total = p.saturating_mul(k);
    if p == 0 || k == 0 || total > 10_000_000 || k > MAX_CLASSES {
        return Err(bad());
    }
    Ok((p, k))
}

fn non_empty<'a>(a: &'a str, kind: &str, example: &str) -> Result<&'a str, DataError> {
    let a = a.trim();
    if a.is_empty() {
        return Err(DataError::Spec(format!("`{kind}:` needs a path, e.g. `{example}`")));
    }
    Ok(a)
}

fn two_paths<'a>(a: &'a str, kind: &str, example: &str) -> Result<(&'a str, &'a str), DataError> {
    match a.split_once(',') {
        Some((x, y)) if !x.trim().is_empty() && !y.trim().is_empty() => Ok((x.trim(), y.trim())),
        _ => Err(DataError::Spec(format!("`{kind}:{a}` needs two comma-separated paths, e.g. `{example}`"))),
    }
}

/// A [`DataError::Format`] for `path`.
pub(crate) fn format_err(path: &Path, detail: impl Into<String>) -> DataError {
    DataError::Format { path: path.display().to_string(), detail: detail.into() }
}

/// The whole file, or a [`DataError::Io`] naming it. Only regular files are read (a device
/// such as `/dev/zero`, a FIFO or a socket is refused before it is opened, so nothing
/// blocks or reads without end), and at most [`MAX_DATA_FILE_BYTES`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    read_file_limited(path, MAX_DATA_FILE_BYTES)
}

pub(crate) fn read_file_limited(path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let io_err = |source| DataError::Io { path: path.display().to_string(), source };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        return Err(format_err(path, "is a directory, expected a data file"));
    }
    if !meta.is_file() {
        return Err(format_err(
            path,
            "is not a regular file (a device, FIFO or socket); data must be read from a regular file",
        ));
    }
    let too_big = |size: u64| {
        format_err(
            path,
            format!(
                "the file has {size} bytes, more than the limit of {limit} bytes for a data file (MAX_DATA_FILE_BYTES)"
            ),
        )
    };
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    let f = std::fs::File::open(path).map_err(io_err)?;
    let mut out = Vec::with_capacity(meta.len() as usize);
    f.take(limit + 1).read_to_end(&mut out).map_err(io_err)?;
    if out.len() as u64 > limit {
        return Err(too_big(out.len() as u64));
    }
    Ok(out)
}

/// What a loader says about the first decompressed bytes of a gzipped file, so that a file
/// of the wrong kind is refused before it is inflated.
pub(crate) enum Head {
    /// Too few bytes to tell yet: inflate at least this many in total, then ask again.
    Need(usize),
    /// The header is fine and says the whole decompressed content is exactly this many
    /// bytes (inflation stops one byte past it, so an over-long file is still detected).
    Total(u64),
    /// The header is fine but does not tell the total size.
    Unknown,
}

/// Decompress `bytes` when they start with the gzip magic; otherwise return them as they
/// are. Sniffing the bytes rather than the extension accepts both `x.gz` files that were
/// already unpacked by a browser and gzipped files without the suffix.
///
/// Bounded: `head` sees the first decompressed bytes and refuses a wrong magic (or asks for
/// more, up to a few kilobytes) before the rest is inflated, and inflation never goes past
/// [`MAX_DECOMPRESSED_BYTES`] (or the size the header declared, plus one byte).
pub(crate) fn gunzip_if_gzip(
    path: &Path,
    bytes: Vec<u8>,
    head: &dyn Fn(&[u8]) -> Result<Head, DataError>,
) -> Result<Vec<u8>, DataError> {
    gunzip_limited(path, bytes, head, MAX_DECOMPRESSED_BYTES)
}

pub(crate) fn gunzip_limited(
    path: &Path,
    bytes: Vec<u8>,
    head: &dyn Fn(&[u8]) -> Result<Head, DataError>,
    limit: u64,
) -> Result<Vec<u8>, DataError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let dec = flate2::read::MultiGzDecoder::new(&bytes[..]);
    read_checked(path, dec, head, limit, "gzip data", Some(bytes.len()))
}

/// Read a decompressing `reader` to its end, but: first only the header (as `head` asks,
/// up to 64 KiB), refusing a wrong one before anything else is inflated; then at most the
/// size the header declares plus one byte, and never more than `limit` bytes.
/// `kind` (e.g. `gzip data`) and `compressed` (the compressed size) only go into messages.
pub(crate) fn read_checked(
    path: &Path,
    mut dec: impl Read,
    head: &dyn Fn(&[u8]) -> Result<Head, DataError>,
    limit: u64,
    kind: &str,
    compressed: Option<usize>,
) -> Result<Vec<u8>, DataError> {
    let packed = compressed.map_or(String::new(), |n| format!(" ({n} compressed bytes)"));
    let corrupt = |e: std::io::Error| format_err(path, format!("{kind} is corrupt or truncated{packed}: {e}"));
    let mut out = Vec::new();
    let mut want = 16usize;
    let total = loop {
        let have = out.len();
        (&mut dec).take((want - have) as u64).read_to_end(&mut out).map_err(corrupt)?;
        let eof = out.len() < want;
        match head(&out)? {
            Head::Total(t) => break Some(t),
            Head::Unknown => break None,
            // Truncated inside the header: the parser names the problem on what there is.
            Head::Need(_) if eof => break None,
            Head::Need(n) if n > out.len() && n <= 1 << 16 => want = n,
            Head::Need(_) => break None,
        }
    };
    let stop = match total {
        Some(t) if t > limit => {
            return Err(format_err(
                path,
                format!(
                    "its header declares {t} bytes of decompressed data, more than the limit of {limit} bytes (MAX_DECOMPRESSED_BYTES)"
                ),
            ))
        }
        Some(t) => t,
        None => limit,
    };
    let have = out.len() as u64;
    if have <= stop {
        (&mut dec).take(stop + 1 - have).read_to_end(&mut out).map_err(corrupt)?;
    }
    if total.is_none() && out.len() as u64 > limit {
        return Err(format_err(
            path,
            format!("decompresses to more than {limit} bytes (the limit for decompressed data, MAX_DECOMPRESSED_BYTES){packed}"),
        ));
    }
    Ok(out)
}

/// A [`Head`] check for files without a header to check (CSV, text).
pub(crate) fn no_head(_: &[u8]) -> Result<Head, DataError> {
    Ok(Head::Unknown)
}

/// `max label + 1`, or 0 for no labels.
pub(crate) fn classes_of(y: &[usize]) -> usize {
    y.iter().max().map_or(0, |&m| m + 1)
}

/// A shape as Python writes it, e.g. `(4, 2, 3)` or `(4,)`, for messages.
pub(crate) fn shape_str(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

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
    ///
    /// Also checks that `x` has one row per label and that `feature_shape` multiplies out
    /// to D.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.x.nrows() != self.y.len() {
            return Err(DataError::Format {
                path: self.name.clone(),
                detail: format!("{} feature rows but {} labels", self.x.nrows(), self.y.len()),
            });
        }
        if self.feature_shape.iter().product::<usize>() != self.x.ncols() {
            return Err(DataError::Format {
                path: self.name.clone(),
                detail: format!(
                    "feature shape {:?} has {} elements but examples have {} features",
                    self.feature_shape,
                    self.feature_shape.iter().product::<usize>(),
                    self.x.ncols()
                ),
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
/// to any split. Features with std below 1e-8 are only centred, and fitting on zero rows
/// gives the identity (mean 0, std 1).
///
/// Fitted and applied in f64: features are f32, but the variance of a feature whose values
/// reach ~1e19 (any value above ~1.8e19 squared) overflows f32, which would turn its std
/// into infinity and, before this was f64, silently leave the feature unscaled.
#[derive(Clone, Debug)]
pub struct Standardizer {
    /// Per-feature mean, (D,).
    pub mean: Array1<f64>,
    /// Per-feature standard deviation (1 where it was ~0), (D,).
    pub std: Array1<f64>,
}

impl Standardizer {
    /// Fit on `x`: (N, D).
    pub fn fit(x: &Array2<f32>) -> Self {
        let d = x.ncols();
        let n = x.nrows();
        if n == 0 {
            return Standardizer { mean: Array1::zeros(d), std: Array1::ones(d) };
        }
        // Two passes in f64: the mean, then the mean squared deviation (no cancellation).
        let mut mean = Array1::<f64>::zeros(d);
        for row in x.outer_iter() {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.mapv_inplace(|m| m / n as f64);
        let mut var = Array1::<f64>::zeros(d);
        for row in x.outer_iter() {
            for ((s, &v), &m) in var.iter_mut().zip(row).zip(&mean) {
                let dv = v as f64 - m;
                *s += dv * dv;
            }
        }
        // A NaN or infinite std (NaN input) would silently poison every feature it is
        // applied to, so it falls back to 1 like a constant feature.
        let std = var.mapv(|s| (s / n as f64).sqrt()).mapv(|s| if s.is_finite() && s >= 1e-8 { s } else { 1.0 });
        Standardizer { mean, std }
    }

    /// Apply in place to `x`: (N, D), computing in f64 and storing the result as f32.
    pub fn apply(&self, x: &mut Array2<f32>) {
        for mut row in x.outer_iter_mut() {
            for ((v, &m), &s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = ((*v as f64 - m) / s) as f32;
            }
        }
    }
}

/// The loaders on bytes in memory, for the fuzz targets in `fuzz/` and the corpus-replay
/// test (`tests/fuzz_corpus.rs`): the same code as the `load_*` functions after the file is
/// read. Not part of the stable API.
#[doc(hidden)]
pub mod fuzz {
    use super::{DataError, Dataset};
    use std::path::Path;

    /// Labels 0, 2, 1, 2 as `np.save` writes an int64 (4,) array.
    const Y4: &[u8] = include_bytes!("../../tests/data/npy/y_i8.npy");
    /// A (4, 2, 3) float32 array as `np.save` writes it.
    const X4: &[u8] = include_bytes!("../../tests/data/npy/x_f4_3d.npy");
    /// Three 1x2 IDX images and three IDX labels.
    const IDX_IMAGES: &[u8] = &[0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6];
    const IDX_LABELS: &[u8] = &[0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2];

    /// `.npy` features (`data[0]` even) or labels (odd) from `data[1..]`, the other file valid.
    pub fn npy(data: &[u8]) -> Result<Dataset, DataError> {
        let Some((&sel, rest)) = data.split_first() else {
            return super::npy::npy_from_bytes(&[], Path::new("x.npy"), Y4, Path::new("y.npy"));
        };
        if sel % 2 == 0 {
            super::npy::npy_from_bytes(rest, Path::new("x.npy"), Y4, Path::new("y.npy"))
        } else {
            super::npy::npy_from_bytes(X4, Path::new("x.npy"), rest, Path::new("y.npy"))
        }
    }

    /// An `.npz` archive.
    pub fn npz(data: &[u8]) -> Result<Dataset, DataError> {
        super::npy::npz_from_bytes(data, Path::new("d.npz"))
    }

    /// A CSV file (gzipped or not).
    pub fn csv(data: &[u8]) -> Result<Dataset, DataError> {
        super::csv::csv_from_bytes(data.to_vec(), Path::new("d.csv"))
    }

    /// IDX images (`data[0]` even) or labels (odd) from `data[1..]`, the other file valid.
    pub fn idx(data: &[u8]) -> Result<Dataset, DataError> {
        let (sel, rest) = data.split_first().map_or((0, &[][..]), |(s, r)| (*s, r));
        let (i, l) = if sel % 2 == 0 { (rest, IDX_LABELS) } else { (IDX_IMAGES, rest) };
        super::idx::idx_from_bytes(i.to_vec(), Path::new("images.idx"), l.to_vec(), Path::new("labels.idx"))
    }

    /// A safetensors checkpoint loaded into a 4-3-2 ReLU MLP (tensors `0.W`, `0.b`, ...).
    pub fn checkpoint(data: &[u8]) -> Result<(), crate::train::CheckpointError> {
        let mut m = crate::nn::MlpSpec {
            input_dim: 4,
            hidden: vec![3],
            output_dim: 2,
            activation: crate::nn::Activation::Relu,
            init: crate::tensor::Init::He,
            bias_init: 0.0,
            batchnorm: false,
            dropout_keep: None,
        }
        .build::<f32>(0);
        crate::train::load_checkpoint_bytes(&mut m, data, Path::new("model.safetensors"))
    }

    /// A text corpus for `text:PATH`, windows of 8 characters, 2000 of them (as `load_seq`).
    pub fn text(data: &[u8]) -> Result<super::seq::SeqDataset, DataError> {
        let text = super::seq::text_from_bytes(data.to_vec(), Path::new("t.txt"), 8)?;
        Ok(super::seq::chars(&text, super::seq::SEQ_EXAMPLES, 8, 0))
    }

    /// The 4-8-3 MLP with batch norm and dropout that [`resumable`] loads into: a model with
    /// parameters, running statistics (tensors that are not parameters) and a layer
    /// generator (dropout), so every part of the resume state has something to fit.
    pub fn resumable_model() -> crate::nn::Sequential<f32> {
        crate::nn::MlpSpec {
            input_dim: 4,
            hidden: vec![8],
            output_dim: 3,
            activation: crate::nn::Activation::Relu,
            init: crate::tensor::Init::He,
            bias_init: 0.0,
            batchnorm: true,
            dropout_keep: Some(0.8),
        }
        .build::<f32>(0)
    }

    /// The data [`resumable`] continues training on: 12 examples of 4 features, 3 classes.
    pub fn resumable_data() -> Dataset {
        let mut ds = super::spiral(4, 3, 0.2, 0);
        ds.x = ndarray::concatenate![ndarray::Axis(1), ds.x, ds.x];
        ds.feature_shape = vec![4];
        ds
    }

    /// A checkpoint for `leaky train --resume`, loaded with
    /// [`crate::train::load_resumable_bytes`] into [`resumable_model`]; when it holds a
    /// resume state, training continues from it for one more epoch on [`resumable_data`]
    /// (as `--resume` does after its own checks: the state must be short of `train.epochs`,
    /// here 1000). Returns the epochs done in the end (0 without a resume state).
    pub fn resumable(data: &[u8]) -> Result<usize, crate::train::CheckpointError> {
        let mut model = resumable_model();
        let Some(state) = crate::train::load_resumable_bytes(&mut model, data, Path::new("resume.safetensors"))? else {
            return Ok(0);
        };
        if state.epochs_done >= 1000 {
            return Ok(state.epochs_done);
        }
        let ds = resumable_data();
        let (train, val) = ds.split(0.25, 0);
        let cfg = crate::train::TrainConfig { epochs: state.epochs_done + 1, batch_size: 4, ..Default::default() };
        let (_, state) =
            crate::train::fit_from(&mut model, &train, &val, &cfg, &mut crate::train::NoObserver, Some(state));
        Ok(state.epochs_done)
    }

    /// An experiment file: parsed and validated as `leaky::experiment::load` does, then
    /// prepared as far as training would start, on stand-in data that reads no file.
    ///
    /// - The parsed experiment must serialise and parse back to itself (the JSON output,
    ///   `--treat` and checkpoints rely on it): a difference panics.
    /// - Data: the spec is parsed by the real dispatch (`load`, `load_seq`), but the data
    ///   behind it is small: `digits` is its first 100 examples, `spiral:P,K` has at most
    ///   about 2000 points, files (`csv:`, `npy:`, `npz:`, `idx:`, `text:`) are never
    ///   opened — a 12-example stand-in of a fixed shape, or a short text, takes their place
    ///   — and sequence tasks have 16 sequences.
    /// - Model: the layer list and every shape and size check (`check_shapes`), the
    ///   recurrent checks, the DQN configuration with its resource checks; the network is
    ///   built (weights allocated and drawn) only when it is small (at most 20000
    ///   parameters, recurrent hidden size at most 32), and a recurrent model's Whh spectrum is
    ///   measured as a run does at its start.
    ///
    /// Returns a short description of what was prepared.
    pub fn experiment(data: &[u8]) -> Result<String, crate::experiment::Error> {
        use crate::experiment::{config::ModelKind, parse, pipeline, Experiment};
        let text = String::from_utf8_lossy(data);
        let exp: Experiment = parse(&text)?;
        let again = parse(&exp.to_toml_string());
        assert!(matches!(&again, Ok(e) if *e == exp), "round trip: {again:?}\nfrom {exp:?}");
        let _ = exp.settings();
        let _ = pipeline::train_config(&exp);
        let spec = pipeline::resolve_dataset(&exp.data.dataset, Path::new("base"));
        match exp.model.kind {
            ModelKind::Mlp => {
                let ds = super::load_from(&spec, exp.seed, &STAND_INS).map_err(|e| pipeline::data_error(&exp, e))?;
                let (train, _val) = pipeline::shape_rows(&exp, ds)?;
                let params = pipeline::check_feed(&exp, &train.feature_shape, train.classes)?;
                if params <= 20_000 {
                    let model = pipeline::build_feed(&exp, &train.feature_shape, train.classes)?;
                    return Ok(model.listing());
                }
                Ok(format!("{params} parameters"))
            }
            ModelKind::Rnn | ModelKind::Lstm => {
                let src = super::seq::SeqSources { examples: 16, corpus: &corpus, text_file: &text_file };
                let ds = super::seq::load_seq_from(&spec, exp.data.seq_len, exp.seed, &src)
                    .map_err(|e| pipeline::data_error(&exp, e))?;
                let (train, _val) = pipeline::split_seq(&exp, ds)?;
                let spec = pipeline::seq_spec(&exp, &train)?;
                if spec.hidden <= 32 {
                    let model = crate::nn::seq::SeqModel::<f32>::new(spec, exp.seed);
                    let _ = model.whh_spectrum();
                    return Ok(model.describe());
                }
                Ok(format!("{spec:?}"))
            }
            ModelKind::Dqn => Ok(format!("{:?}", pipeline::dqn_config(&exp)?)),
        }
    }

    /// The stand-in data of [`experiment`].
    const STAND_INS: super::Sources<'static> =
        super::Sources { digits: &digits_head, spiral: &small_spiral, files: &stand_in_file };

    fn digits_head() -> Dataset {
        static DIGITS: std::sync::OnceLock<Dataset> = std::sync::OnceLock::new();
        let d = DIGITS.get_or_init(|| {
            let all = super::digits();
            let head = all.subset(&(0..100).collect::<Vec<_>>());
            Dataset { classes: all.classes, ..head }
        });
        d.clone()
    }

    /// The spiral with at most about 2000 points (at least one per class).
    fn small_spiral(points: usize, classes: usize, seed: u64) -> Dataset {
        super::spiral(points.min(2000 / classes.max(1)).max(1), classes, 0.2, seed)
    }

    /// 12 examples of a fixed shape per file kind, labels 0, 1, 2, ...: never a file read.
    fn stand_in_file(kind: &str, paths: &[&Path]) -> Result<Dataset, DataError> {
        let (shape, classes): (&[usize], usize) = match kind {
            "csv" => (&[5], 3),
            "idx" => (&[6, 6], 10),
            _ => (&[3, 4, 4], 4),
        };
        let d: usize = shape.iter().product();
        let n = 12;
        let x = ndarray::Array2::from_shape_fn((n, d), |(i, j)| ((i * 7 + j * 3) % 11) as f32);
        let y: Vec<usize> = (0..n).map(|i| i % classes).collect();
        let name = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",");
        Ok(Dataset { x, y, classes, feature_shape: shape.to_vec(), name })
    }

    fn corpus() -> String {
        static CORPUS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        CORPUS.get_or_init(super::seq::corpus).clone()
    }

    /// A `text:` file's stand-in: a short text, with the checks `load_text` makes.
    fn text_file(path: &Path, t: usize) -> Result<String, DataError> {
        let text = "the quick brown fox jumps over the lazy dog. ".repeat(8);
        super::seq::text_from_bytes(text.into_bytes(), path, t)
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop. The name joins the
    /// tag, the process id and a counter, so parallel tests and test runs never collide.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("leaky-test-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }

        /// Write `bytes` to `name` inside the directory and return its path.
        pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::TempDir;
    use super::*;
    use ndarray::array;

    fn spec_err(spec: &str) -> String {
        match load(spec, 0) {
            Err(DataError::Spec(m)) => m,
            other => panic!("{spec}: expected a Spec error, got {other:?}"),
        }
    }

    #[test]
    fn load_dispatches_every_spec() {
        assert_eq!(load("digits", 0).unwrap().len(), 1797);
        let s = load(" spiral ", 5).unwrap();
        assert_eq!((s.len(), s.classes), (300, 3));
        assert_eq!(s.x, spiral(100, 3, 0.2, 5).x);
        let s = load("spiral:20,4", 5).unwrap();
        assert_eq!((s.len(), s.classes), (80, 4));

        let dir = TempDir::new("load");
        let csv = dir.write("d.csv", b"1,2,0\n3,4,1\n");
        assert_eq!(load(&format!("csv:{}", csv.display()), 0).unwrap().len(), 2);
        let img = dir.write("img.idx", &[0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 9, 8]);
        let lab = dir.write("lab.idx", &[0, 0, 8, 1, 0, 0, 0, 1, 4]);
        let ds = load(&format!("idx:{}, {}", img.display(), lab.display()), 0).unwrap();
        assert_eq!((ds.feature_shape.clone(), ds.y.clone()), (vec![1, 2], vec![4]));
        let fix = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/npy");
        let ds =
            load(&format!("npy:{},{}", fix.join("x_f4_3d.npy").display(), fix.join("y_i8.npy").display()), 0).unwrap();
        assert_eq!(ds.feature_shape, vec![2, 3]);
    }

    #[test]
    fn load_spec_errors() {
        let e = spec_err("mnist");
        assert!(
            e.contains("unknown data set `mnist`") && e.contains("digits") && e.contains("idx:IMAGES,LABELS"),
            "{e}"
        );
        for task in ["adding", "copy", "chars", "text:corpus.txt", "text"] {
            let kind = task.split(':').next().unwrap();
            assert_eq!(spec_err(task), format!("`{kind}` is a sequence task: use model.kind = \"rnn\" or \"lstm\""));
        }
        assert!(spec_err("csv:").contains("needs a path"));
        assert!(spec_err("csv").contains("needs paths"));
        assert!(spec_err("npy:x.npy").contains("two comma-separated paths"));
        assert!(spec_err("idx:a,").contains("two comma-separated paths"));
        assert!(spec_err("spiral:10").contains("spiral:POINTS,CLASSES"));
        assert!(spec_err("spiral:0,3").contains("positive integers"));
        assert!(spec_err("spiral:100000,100000").contains("spiral:POINTS,CLASSES"));
        // File errors pass through with the file named.
        let e = load("csv:/definitely/not/here.csv", 0).unwrap_err();
        assert!(matches!(e, DataError::Io { .. }) && e.to_string().contains("/definitely/not/here.csv"), "{e}");
    }

    #[test]
    fn split_sizes_and_determinism() {
        let ds = digits();
        let (tr, va) = ds.split(0.2, 1);
        assert_eq!((tr.len(), va.len()), (1438, 359)); // round(359.4) = 359
        assert_eq!(tr.dim(), 64);
        assert_eq!(tr.feature_shape, vec![8, 8]);
        assert_eq!(tr.classes, 10);
        let (tr2, va2) = ds.split(0.2, 1);
        assert_eq!((tr.y.clone(), va.y.clone()), (tr2.y, va2.y));
        assert_eq!(tr.x, tr2.x);
        let (tr3, _) = ds.split(0.2, 2);
        assert_ne!(tr.y, tr3.y);
        // Together the parts are the whole set: every example appears exactly once.
        let mut sums: Vec<i64> = tr.x.rows().into_iter().chain(va.x.rows()).map(|r| r.sum() as i64).collect();
        let mut want: Vec<i64> = ds.x.rows().into_iter().map(|r| r.sum() as i64).collect();
        sums.sort();
        want.sort();
        assert_eq!(sums, want);
        assert_eq!(ds.split(0.0, 0).1.len(), 0);
        assert_eq!(ds.split(0.5, 0).1.len(), 899); // round(898.5) rounds half away from zero
    }

    #[test]
    fn standardizer_centres_and_scales() {
        let ds = digits();
        let (mut tr, _) = ds.split(0.2, 0);
        let st = Standardizer::fit(&tr.x);
        st.apply(&mut tr.x);
        for (j, col) in tr.x.columns().into_iter().enumerate() {
            let m = col.mean().unwrap();
            let s = col.std(0.0);
            assert!(m.abs() < 1e-4, "feature {j}: mean {m}");
            // Digits has always-zero pixels (e.g. corners): those are only centred.
            assert!((s - 1.0).abs() < 1e-3 || s == 0.0, "feature {j}: std {s}");
        }
        let constant = tr.x.columns().into_iter().filter(|c| c.std(0.0) == 0.0).count();
        assert!(constant > 0 && constant < 64);

        let x = array![[1.0f32, 5.0], [3.0, 5.0]];
        let st = Standardizer::fit(&x);
        assert_eq!(st.mean.to_vec(), vec![2.0, 5.0]);
        assert_eq!(st.std.to_vec(), vec![1.0, 1.0]);
        let mut y = x.clone();
        st.apply(&mut y);
        assert_eq!(y, array![[-1.0, 0.0], [1.0, 0.0]]);
        // A feature with std ~3e19: its variance overflows f32 but not f64, so it is scaled.
        let x = array![[3e19f32, 1.0], [-3e19, 2.0]];
        let st = Standardizer::fit(&x);
        assert!((st.std[0] / 3e19 - 1.0).abs() < 1e-6, "{}", st.std[0]);
        let mut y = x.clone();
        st.apply(&mut y);
        assert_eq!(y, array![[1.0, -1.0], [-1.0, 1.0]]);
        // No rows: the identity rather than NaN.
        let st = Standardizer::fit(&Array2::zeros((0, 3)));
        assert_eq!((st.mean.to_vec(), st.std.to_vec()), (vec![0.0; 3], vec![1.0; 3]));
    }

    #[test]
    fn validate_names_the_problem() {
        let mut ds = spiral(3, 2, 0.1, 0);
        ds.validate().unwrap();
        ds.x[[4, 1]] = f32::NAN;
        let e = ds.validate().unwrap_err().to_string();
        assert!(e.contains("spiral: example 4, feature 1 is NaN"), "{e}");
        let mut ds = spiral(3, 2, 0.1, 0);
        ds.y[2] = 2;
        assert!(ds.validate().unwrap_err().to_string().contains("example 2 has label 2 but there are 2 classes"));
        let mut ds = spiral(3, 2, 0.1, 0);
        ds.feature_shape = vec![3];
        assert!(ds
            .validate()
            .unwrap_err()
            .to_string()
            .contains("feature shape [3] has 3 elements but examples have 2"));
    }
}
