//! Sequence data sets: the adding problem, the copy task and a character-level corpus.
//!
//! Dimension letters: N examples, T time steps, D input features, V vocabulary size.
//!
//! | spec        | generator    | input                      | target                       | trivial baseline         |
//! |-------------|--------------|----------------------------|------------------------------|--------------------------|
//! | `adding`    | [`adding`]   | dense (N, T, 2)            | `Final` (N,), MSE            | MSE 1/6 ≈ 0.1667         |
//! | `copy`      | [`copy_task`]| tokens (N, T), V = A + 2   | tokens (N, T), last K masked | K ln A per sequence      |
//! | `chars`     | [`chars`]    | tokens (N, T), V = alphabet| tokens (N, T), all masked    | T ln V (uniform guess)   |
//! | `text:PATH` | [`chars`]    | as `chars`                 | as `chars`                   | as `chars`               |
//!
//! [`load_seq`] builds them from the experiment file's `data.dataset` and `data.seq_len`
//! with [`SEQ_EXAMPLES`] sequences each. Every generator is seeded: the same arguments give
//! the same data on every platform (ChaCha8, see [`crate::tensor::rng`]).
//!
//! The bundled corpus ([`corpus`]) is Lewis Carroll's *Alice's Adventures in Wonderland*
//! (1865, public domain); `CORPUS_LICENSE.md` next to this file gives its source and checksum.

use super::{format_err, gunzip_if_gzip, no_head, read_file, DataError};
use crate::limits::{MAX_TEXT_CHARS, MAX_TEXT_VOCAB};
use crate::tensor::{rng, uniform};
use ndarray::{Array1, Array2, Array3, Axis};
use rand::Rng;
use std::io::Read;
use std::path::Path;

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

    /// The text spelled by token ids `ids` through [`SeqDataset::alphabet`] (character tasks);
    /// ids outside the alphabet come out as U+FFFD.
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter().map(|&i| self.alphabet.get(i).copied().unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
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

/// Sequences per data set built by [`load_seq`].
pub const SEQ_EXAMPLES: usize = 2000;

/// The longest `seq_len` [`load_seq`] accepts; it keeps a typo from allocating gigabytes
/// (`adding` at this length is 2000 x 10000 x 2 f32 = 160 MB).
pub const MAX_SEQ_LEN: usize = 10_000;

/// Symbols the `copy` spec draws from (A), so V = A + 2 with the blank and the delimiter.
pub const COPY_ALPHABET: usize = 8;

/// The longest run the copy task asks to remember.
pub const COPY_MAX_K: usize = 10;

/// The trivial baseline of the adding problem: always predicting the mean, 1.0, gives
/// MSE = Var(U1 + U2) = 2/12 = 1/6 ≈ 0.1667 (with [`crate::losses::mse_loss`]'s
/// `mean((pred - target)^2)`). A model has learnt something only well below this.
pub const ADDING_BASELINE_MSE: f64 = 1.0 / 6.0;

/// The specs [`load_seq`] understands, for error messages.
const VALID_SEQ_SPECS: &str = "adding, memory, copy, chars, text:PATH";

/// The adding problem (Hochreiter & Schmidhuber 1997, in the form of Le, Jaitly & Hinton
/// 2015): N sequences of length T.
///
/// Input: dense, (N, T, 2). Channel 0 holds i.i.d. U(0, 1) values; channel 1 is a marker,
/// 1.0 at exactly two steps and 0.0 elsewhere: one step drawn uniformly from the first half
/// `0..T/2`, the other from the second half `T/2..T` (T/2 rounded down). Target: `Final`,
/// (N,), the sum of the two marked values (in [0, 2), mean 1). `vocab = classes = 0`, name
/// `"adding"`.
///
/// Baseline: predicting 1.0 for every sequence gives MSE 1/6 ≈ 0.1667
/// ([`ADDING_BASELINE_MSE`]); a network that ignores the markers cannot beat it, and one
/// that sees only one marker reaches 1/12 ≈ 0.083.
///
/// # Panics
/// When `t < 2` (two markers need two steps); [`load_seq`] checks this first and returns an
/// error instead.
pub fn adding(n: usize, t: usize, seed: u64) -> SeqDataset {
    assert!(t >= 2, "adding: the sequence length must be at least 2 (got {t})");
    let mut r = rng(seed);
    let values: Array2<f32> = uniform((n, t), 0.0, 1.0, &mut r);
    let mut x = Array3::<f32>::zeros((n, t, 2));
    let mut y = Array1::<f32>::zeros(n);
    let half = t / 2;
    for i in 0..n {
        let a = r.random_range(0..half);
        let b = r.random_range(half..t);
        for s in 0..t {
            x[[i, s, 0]] = values[[i, s]];
        }
        x[[i, a, 1]] = 1.0;
        x[[i, b, 1]] = 1.0;
        y[i] = values[[i, a]] + values[[i, b]];
    }
    SeqDataset {
        name: "adding".into(),
        input: SeqInput::Dense(x),
        target: SeqTarget::Final(y),
        vocab: 0,
        classes: 0,
        alphabet: Vec::new(),
    }
}

/// The memory task: N sequences of T steps of i.i.d. N(0, 0.5^2) inputs, dense (N, T, 2);
/// target `Final`, (N,): `x[0, 0] + x[T/2, 1]` (T/2 rounded down), so the net must carry the
/// first step's input across all T steps. Name `"memory"`.
///
/// Unlike [`adding`], the inputs are zero-mean: a tanh RNN's state does not drift into
/// saturation from the inputs alone, so the gradient through time shows Whh's own growth or
/// decay (the rnn demo and `examples/sick/rnn-exploding.toml` use it). Baseline: predicting
/// 0 gives MSE Var(y) = 2 * 0.25 = 0.5 ([`MEMORY_BASELINE_MSE`]).
///
/// # Panics
/// When `t < 1`.
pub fn memory(n: usize, t: usize, seed: u64) -> SeqDataset {
    assert!(t >= 1, "memory: the sequence length must be at least 1");
    let x: Array3<f32> = crate::tensor::randn((n, t, 2), 0.5, &mut rng(seed));
    let y = Array1::from_shape_fn(n, |i| x[[i, 0, 0]] + x[[i, t / 2, 1]]);
    SeqDataset {
        name: "memory".into(),
        input: SeqInput::Dense(x),
        target: SeqTarget::Final(y),
        vocab: 0,
        classes: 0,
        alphabet: Vec::new(),
    }
}

/// MSE of predicting 0 on [`memory`]: the variance of the target, 2 * 0.5^2.
pub const MEMORY_BASELINE_MSE: f64 = 0.5;

/// How many symbols the copy task of length `t` asks to remember: K = min(10, t / 3).
pub fn copy_k(t: usize) -> usize {
    COPY_MAX_K.min(t / 3)
}

/// The trivial baseline of [`copy_task`]: a model that outputs the uniform distribution over
/// the A symbols at each of the K answer steps scores ln A per step, and as the temporal
/// softmax loss sums over steps and divides by N, K ln A per sequence (12.48 for T = 20,
/// A = 8; 20.79 for T >= 30).
pub fn copy_baseline_loss(t: usize, alphabet: usize) -> f64 {
    copy_k(t) as f64 * (alphabet as f64).ln()
}

/// The copy task (as in Arjovsky, Shah & Bengio 2016, with the answer at the end of a fixed
/// length T): remember K = [`copy_k`]`(t)` = min(10, T/3) symbols across a gap of blanks and
/// write them out after a delimiter.
///
/// Token ids: 0 is the blank, 1..=A (A = `alphabet`) are the symbols, A + 1 the delimiter;
/// `vocab = classes = A + 2`. Each of the N input rows (N, T) is
///
/// ```text
/// step:   0 .. K-1 | K .. T-K-2 | T-K-1     | T-K .. T-1
/// input:  s1 .. sK | 0 .. 0     | A+1       | 0 .. 0
/// target: 0 ..                              | s1 .. sK
/// mask:   false ..                          | true ..
/// ```
///
/// with the symbols s drawn uniformly from 1..=A. Target: `Tokens`, (N, T): the K symbols on
/// the last K steps, 0 elsewhere; `mask`, (N, T), true only on the last K steps. Name
/// `"copy"`.
///
/// Baseline: guessing uniformly over the A symbols costs ln A per answer step, K ln A per
/// sequence under the temporal softmax loss (which divides by N, not by the K N masked
/// steps); see [`copy_baseline_loss`].
///
/// # Panics
/// When `t < 3` (K would be 0) or `alphabet < 1`; [`load_seq`] checks first.
pub fn copy_task(n: usize, t: usize, alphabet: usize, seed: u64) -> SeqDataset {
    assert!(t >= 3, "copy_task: the sequence length must be at least 3 (got {t})");
    assert!(alphabet >= 1, "copy_task: the alphabet needs at least one symbol");
    let k = copy_k(t);
    let mut r = rng(seed);
    let mut x = Array2::<usize>::zeros((n, t));
    let mut y = Array2::<usize>::zeros((n, t));
    let mut mask = Array2::from_elem((n, t), false);
    for i in 0..n {
        for j in 0..k {
            let s = r.random_range(1..=alphabet);
            x[[i, j]] = s;
            y[[i, t - k + j]] = s;
            mask[[i, t - k + j]] = true;
        }
        x[[i, t - k - 1]] = alphabet + 1;
    }
    SeqDataset {
        name: "copy".into(),
        input: SeqInput::Tokens(x),
        target: SeqTarget::Tokens { y, mask },
        vocab: alphabet + 2,
        classes: alphabet + 2,
        alphabet: Vec::new(),
    }
}

/// The bundled corpus, gzip-compressed (`CORPUS_LICENSE.md` has its source and checksums).
static CORPUS_GZ: &[u8] = include_bytes!("alice.txt.gz");

/// The bundled character corpus: Lewis Carroll, *Alice's Adventures in Wonderland* (1865,
/// public domain), the Project Gutenberg "Millennium Fulcrum Edition 2.9" text as found in
/// the Canterbury compression corpus (`alice29.txt`), with LF line endings. 148,480 ASCII
/// characters, 72 distinct.
pub fn corpus() -> String {
    let mut out = String::with_capacity(150_000);
    // Compiled in and checked by the tests below, so a failure is a build defect.
    flate2::read::GzDecoder::new(CORPUS_GZ).read_to_string(&mut out).expect("bundled alice.txt.gz is valid UTF-8 gzip");
    out
}

/// Character-level language modelling on `text`: N windows of T + 1 characters at offsets
/// drawn uniformly (with replacement) from the text.
///
/// The alphabet is the sorted set of distinct characters of `text` (token id = index into
/// [`SeqDataset::alphabet`]; `vocab = classes = ` its size V). Input: `Tokens`, (N, T), the
/// first T characters of each window; target: `Tokens`, (N, T), the next character at each
/// step (so `y[i, s] == x[i, s + 1]`), mask all true. Name `"chars"`.
///
/// Baselines, per sequence under the temporal softmax loss (sum over the T steps, divided
/// by N): a uniform guess costs T ln V; predicting each character's overall frequency
/// (the unigram entropy) costs less. For the bundled corpus V = 72, ln V = 4.28 nats and the
/// unigram entropy is 3.13 nats (4.51 bits) per character, so at T = 20 the two baselines
/// are 85.5 and 62.6; only a loss below T x 3.13 shows the model using context.
///
/// # Panics
/// When `text` has fewer than `t + 1` characters or `t == 0`; [`load_seq`] checks first.
pub fn chars(text: &str, n: usize, t: usize, seed: u64) -> SeqDataset {
    assert!(t >= 1, "chars: the sequence length must be at least 1");
    let mut alphabet: Vec<char> = text.chars().collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    let ids: Vec<usize> = text.chars().map(|c| alphabet.binary_search(&c).expect("char is in the alphabet")).collect();
    assert!(ids.len() > t, "chars: the text has {} characters, fewer than seq_len + 1 = {}", ids.len(), t + 1);
    let mut r = rng(seed);
    let mut x = Array2::<usize>::zeros((n, t));
    let mut y = Array2::<usize>::zeros((n, t));
    for i in 0..n {
        let off = r.random_range(0..=ids.len() - t - 1);
        for s in 0..t {
            x[[i, s]] = ids[off + s];
            y[[i, s]] = ids[off + s + 1];
        }
    }
    let v = alphabet.len();
    SeqDataset {
        name: "chars".into(),
        input: SeqInput::Tokens(x),
        target: SeqTarget::Tokens { y, mask: Array2::from_elem((n, t), true) },
        vocab: v,
        classes: v,
        alphabet,
    }
}

/// Read `path` as UTF-8 text for [`chars`] (gzip-compressed files are unpacked first; CRLF
/// line ends become LF). Errors name the file: it cannot be read ([`DataError::Io`]), it
/// is not UTF-8 (the byte offset of the first bad byte), it has fewer than `t + 1`
/// characters, more than [`MAX_TEXT_CHARS`] characters, or more than [`MAX_TEXT_VOCAB`]
/// distinct characters (each distinct character is a token of the model's vocabulary).
pub fn load_text(path: &Path, t: usize) -> Result<String, DataError> {
    text_from_bytes(read_file(path)?, path, t)
}

/// [`load_text`] on the file's bytes (`path` names it in messages).
pub(crate) fn text_from_bytes(bytes: Vec<u8>, path: &Path, t: usize) -> Result<String, DataError> {
    let bytes = gunzip_if_gzip(path, bytes, &no_head)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        format_err(path, format!("not UTF-8 text: invalid byte 0x{:02x} at byte offset {at}", e.as_bytes()[at]))
    })?;
    let text = if text.contains("\r\n") { text.replace("\r\n", "\n") } else { text };
    let len = text.chars().count();
    if len > MAX_TEXT_CHARS {
        return Err(format_err(
            path,
            format!("has {len} characters, more than the limit of {MAX_TEXT_CHARS} for a text corpus (MAX_TEXT_CHARS)"),
        ));
    }
    let mut seen = vec![false; char::MAX as usize + 1];
    let mut vocab = 0usize;
    for c in text.chars() {
        let k = c as usize;
        if !seen[k] {
            seen[k] = true;
            vocab += 1;
        }
    }
    if vocab > MAX_TEXT_VOCAB {
        return Err(format_err(
            path,
            format!(
                "has {vocab} distinct characters, more than the limit of {MAX_TEXT_VOCAB} (MAX_TEXT_VOCAB): each one is a token of the model's vocabulary; is this a text file?"
            ),
        ));
    }
    if len <= t {
        return Err(format_err(
            path,
            format!(
                "has {len} characters; a window needs seq_len + 1 = {} (lower data.seq_len or use more text)",
                t + 1
            ),
        ));
    }
    Ok(text)
}

/// Load the sequence data set named by `spec` (the experiment file's `data.dataset`) with
/// sequences of `seq_len` steps (`data.seq_len`), [`SEQ_EXAMPLES`] = 2000 sequences each:
///
/// | spec        | what                                                                     |
/// |-------------|--------------------------------------------------------------------------|
/// | `adding`    | [`adding`]`(2000, seq_len, seed)`; needs `seq_len >= 2`                  |
/// | `memory`    | [`memory`]`(2000, seq_len, seed)`                                        |
/// | `copy`      | [`copy_task`]`(2000, seq_len, 8, seed)`; needs `seq_len >= 3`            |
/// | `chars`     | [`chars`] on the bundled [`corpus`], 2000 windows                        |
/// | `text:PATH` | [`chars`] on the UTF-8 file PATH ([`load_text`]), name `text:PATH`       |
///
/// `seq_len` must be in 1..=[`MAX_SEQ_LEN`]. Unknown specs give a [`DataError::Spec`]
/// listing the sequence data sets; the classification data sets of [`super::load`]
/// (`digits`, `spiral`, `csv:`, `npy:`, `idx:`) give one saying they are not sequence data.
pub fn load_seq(spec: &str, seq_len: usize, seed: u64) -> Result<SeqDataset, DataError> {
    load_seq_from(spec, seq_len, seed, &SeqSources::REAL)
}

/// Where [`load_seq`] gets its data once the spec is parsed: the real generators with
/// [`SEQ_EXAMPLES`] sequences, the bundled corpus and `text:` files, or (in the experiment
/// fuzz target) fewer sequences and a stand-in that reads no file.
pub(crate) struct SeqSources<'a> {
    /// Sequences per data set.
    pub examples: usize,
    /// The text of `chars`.
    pub corpus: &'a dyn Fn() -> String,
    /// The text of `text:PATH`, read with [`load_text`]'s checks for windows of `seq_len`.
    pub text_file: &'a dyn Fn(&Path, usize) -> Result<String, DataError>,
}

impl SeqSources<'static> {
    /// The real data.
    pub const REAL: SeqSources<'static> = SeqSources { examples: SEQ_EXAMPLES, corpus: &corpus, text_file: &load_text };
}

/// [`load_seq`] with the data taken from `src`.
pub(crate) fn load_seq_from(spec: &str, seq_len: usize, seed: u64, src: &SeqSources) -> Result<SeqDataset, DataError> {
    let spec = spec.trim();
    let (kind, arg) = match spec.split_once(':') {
        Some((k, a)) => (k, Some(a)),
        None => (spec, None),
    };
    let known = matches!((kind, arg), ("adding" | "memory" | "copy" | "chars", None) | ("text", _));
    if matches!(kind, "digits" | "spiral" | "csv" | "npy" | "npz" | "idx") {
        return Err(DataError::Spec(format!(
            "`{spec}` is not sequence data: use it with model.kind = \"mlp\" (sequence data sets: {VALID_SEQ_SPECS})"
        )));
    }
    if !known {
        return Err(DataError::Spec(format!("unknown sequence data set `{spec}`; valid: {VALID_SEQ_SPECS}")));
    }
    if seq_len == 0 || seq_len > MAX_SEQ_LEN {
        return Err(DataError::Spec(format!("data.seq_len = {seq_len} for `{spec}`: must be in 1..={MAX_SEQ_LEN}")));
    }
    let n = src.examples;
    match (kind, arg) {
        ("adding", _) => {
            if seq_len < 2 {
                return Err(DataError::Spec(format!(
                    "`adding` needs data.seq_len >= 2 (one marker in each half), got {seq_len}"
                )));
            }
            Ok(adding(n, seq_len, seed))
        }
        ("memory", _) => Ok(memory(n, seq_len, seed)),
        ("copy", _) => {
            if seq_len < 3 {
                return Err(DataError::Spec(format!(
                    "`copy` needs data.seq_len >= 3 (symbols, delimiter, answer), got {seq_len}"
                )));
            }
            Ok(copy_task(n, seq_len, COPY_ALPHABET, seed))
        }
        ("chars", _) => {
            let text = (src.corpus)();
            let len = text.chars().count();
            if len <= seq_len {
                return Err(DataError::Spec(format!(
                    "`chars`: the bundled corpus has {len} characters, fewer than data.seq_len + 1 = {}",
                    seq_len + 1
                )));
            }
            Ok(chars(&text, n, seq_len, seed))
        }
        (_, arg) => {
            let path = arg.map(str::trim).unwrap_or("");
            if path.is_empty() {
                return Err(DataError::Spec("`text:` needs a path, e.g. `text:corpus.txt`".into()));
            }
            let text = (src.text_file)(Path::new(path), seq_len)?;
            let mut ds = chars(&text, n, seq_len, seed);
            ds.name = format!("text:{path}");
            Ok(ds)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::TempDir;
    use super::*;

    fn dense(ds: &SeqDataset) -> &Array3<f32> {
        match &ds.input {
            SeqInput::Dense(x) => x,
            SeqInput::Tokens(_) => panic!("{}: expected dense input", ds.name),
        }
    }

    fn tokens(ds: &SeqDataset) -> &Array2<usize> {
        match &ds.input {
            SeqInput::Tokens(x) => x,
            SeqInput::Dense(_) => panic!("{}: expected token input", ds.name),
        }
    }

    fn final_y(ds: &SeqDataset) -> &Array1<f32> {
        match &ds.target {
            SeqTarget::Final(y) => y,
            SeqTarget::Tokens { .. } => panic!("{}: expected a Final target", ds.name),
        }
    }

    fn token_y(ds: &SeqDataset) -> (&Array2<usize>, &Array2<bool>) {
        match &ds.target {
            SeqTarget::Tokens { y, mask } => (y, mask),
            SeqTarget::Final(_) => panic!("{}: expected token targets", ds.name),
        }
    }

    fn spec_err(spec: &str, seq_len: usize) -> String {
        match load_seq(spec, seq_len, 0) {
            Err(DataError::Spec(m)) => m,
            other => panic!("{spec}: expected a Spec error, got {other:?}"),
        }
    }

    /// Bitwise CRC-32 (IEEE, as gzip), enough to pin the corpus without another dependency.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0xedb8_8320 } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn adding_shapes_markers_and_targets() {
        for t in [2, 3, 7, 20] {
            let ds = adding(50, t, 3);
            assert_eq!((ds.name.as_str(), ds.len(), ds.seq_len(), ds.input_dim()), ("adding", 50, t, 2));
            assert_eq!((ds.vocab, ds.classes), (0, 0));
            let x = dense(&ds);
            let y = final_y(&ds);
            assert_eq!((x.dim(), y.len()), ((50, t, 2), 50));
            for i in 0..50 {
                let marks: Vec<usize> = (0..t).filter(|&s| x[[i, s, 1]] != 0.0).collect();
                assert_eq!(marks.len(), 2, "t = {t}, sequence {i}: markers at {marks:?}");
                assert!(marks.iter().all(|&s| x[[i, s, 1]] == 1.0));
                assert!(marks[0] < t / 2 && marks[1] >= t / 2, "t = {t}: markers at {marks:?}");
                assert_eq!(y[i], x[[i, marks[0], 0]] + x[[i, marks[1], 0]]);
                assert!((0..t).all(|s| (0.0..1.0).contains(&x[[i, s, 0]])));
            }
        }
    }

    #[test]
    fn adding_is_deterministic_per_seed() {
        let (a, b, c) = (adding(20, 10, 7), adding(20, 10, 7), adding(20, 10, 8));
        assert_eq!(dense(&a), dense(&b));
        assert_eq!(final_y(&a), final_y(&b));
        assert_ne!(dense(&a), dense(&c));
    }

    #[test]
    fn adding_baseline_is_one_sixth() {
        let ds = adding(20_000, 20, 0);
        let y = final_y(&ds);
        let mse = y.iter().map(|&v| (v as f64 - 1.0).powi(2)).sum::<f64>() / y.len() as f64;
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
        println!("adding baseline: mean target {mean:.4}, MSE of predicting 1.0 = {mse:.4}");
        assert!((mse - ADDING_BASELINE_MSE).abs() < 0.01, "{mse}");
        assert!((mean - 1.0).abs() < 0.02, "{mean}");
        // Markers land uniformly in each half: over 20000 sequences every step is hit.
        let x = dense(&ds);
        let hits: Vec<usize> = (0..20).map(|s| x.index_axis(Axis(1), s).column(1).sum() as usize).collect();
        assert_eq!(hits.iter().sum::<usize>(), 40_000);
        assert!(hits.iter().all(|&h| (1600..2400).contains(&h)), "{hits:?}");
    }

    #[test]
    fn copy_task_layout() {
        for (t, k) in [(3, 1), (20, 6), (30, 10), (50, 10)] {
            assert_eq!(copy_k(t), k);
            let ds = copy_task(40, t, 8, 5);
            assert_eq!((ds.name.as_str(), ds.len(), ds.seq_len(), ds.vocab, ds.classes), ("copy", 40, t, 10, 10));
            let x = tokens(&ds);
            let (y, mask) = token_y(&ds);
            assert_eq!((x.dim(), y.dim(), mask.dim()), ((40, t), (40, t), (40, t)));
            for i in 0..40 {
                let row = x.row(i);
                assert!(row.iter().take(k).all(|&s| (1..=8).contains(&s)));
                assert_eq!(row[t - k - 1], 9, "delimiter");
                assert!(row.iter().enumerate().all(|(s, &v)| s < k || s == t - k - 1 || v == 0));
                for s in 0..t {
                    let answer = s >= t - k;
                    assert_eq!(mask[[i, s]], answer);
                    assert_eq!(y[[i, s]], if answer { x[[i, s - (t - k)]] } else { 0 });
                }
            }
        }
        assert_eq!(tokens(&copy_task(10, 20, 8, 1)), tokens(&copy_task(10, 20, 8, 1)));
        assert_ne!(tokens(&copy_task(10, 20, 8, 1)), tokens(&copy_task(10, 20, 8, 2)));
        // Every symbol is used: 2000 x 6 draws over 8 symbols.
        let ds = copy_task(2000, 20, 8, 0);
        let mut counts = [0usize; 10];
        tokens(&ds).slice(ndarray::s![.., ..6]).iter().for_each(|&s| counts[s] += 1);
        assert!(counts[1..=8].iter().all(|&c| (1300..1700).contains(&c)), "{counts:?}");
        assert!((copy_baseline_loss(20, 8) - 6.0 * 8f64.ln()).abs() < 1e-12);
        assert!((copy_baseline_loss(100, 8) - 20.794_415).abs() < 1e-5);
    }

    #[test]
    fn chars_windows_shift_by_one_and_round_trip() {
        let text = "hello, world\nthe quick brown fox";
        let ds = chars(text, 30, 8, 4);
        assert_eq!((ds.name.as_str(), ds.len(), ds.seq_len()), ("chars", 30, 8));
        let mut want: Vec<char> = text.chars().collect();
        want.sort();
        want.dedup();
        assert_eq!(ds.alphabet, want);
        assert_eq!((ds.vocab, ds.classes, ds.input_dim()), (want.len(), want.len(), want.len()));
        let x = tokens(&ds);
        let (y, mask) = token_y(&ds);
        assert!(mask.iter().all(|&m| m));
        for i in 0..30 {
            for s in 0..7 {
                assert_eq!(y[[i, s]], x[[i, s + 1]]);
            }
            let mut window = ds.decode(&x.row(i).to_vec());
            window.push(ds.alphabet[y[[i, 7]]]);
            assert!(text.contains(&window), "{window:?}");
        }
        // The whole text round-trips through the alphabet when one window covers it.
        let n = text.chars().count();
        let ds = chars(text, 1, n - 1, 0);
        let mut back = ds.decode(&tokens(&ds).row(0).to_vec());
        back.push(ds.alphabet[token_y(&ds).0[[0, n - 2]]]);
        assert_eq!(back, text);
        assert_eq!(ds.decode(&[0, 999]), format!("{}\u{fffd}", ds.alphabet[0]));
        assert_eq!(tokens(&chars(text, 5, 4, 9)), tokens(&chars(text, 5, 4, 9)));
    }

    #[test]
    fn corpus_is_the_documented_file() {
        // Pins the file recorded in CORPUS_LICENSE.md: compressed size, and the gzip trailer's
        // CRC-32 and length of the text, which the decoded text must match too.
        let n = CORPUS_GZ.len();
        assert_eq!(n, 53_415);
        let crc = u32::from_le_bytes(CORPUS_GZ[n - 8..n - 4].try_into().unwrap());
        let len = u32::from_le_bytes(CORPUS_GZ[n - 4..].try_into().unwrap());
        assert_eq!((crc, len), (0xb0dd_466a, 148_480));
        let text = corpus();
        assert_eq!((text.len(), crc32(text.as_bytes())), (148_480, 0xb0dd_466a));
        assert!(text.is_ascii() && !text.contains('\r'));
        assert!(text.contains("ALICE'S ADVENTURES IN WONDERLAND") && text.trim_end().ends_with("THE END"));
        assert!(!text.to_lowercase().contains("gutenberg"));
        let ds = chars(&text, 100, 20, 0);
        assert_eq!(ds.vocab, 72);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926); // the CRC-32 check value
    }

    #[test]
    fn text_file_errors_name_the_file() {
        let dir = TempDir::new("seqtext");
        let missing = dir.path().join("nope.txt");
        let e = load_seq(&format!("text:{}", missing.display()), 10, 0).unwrap_err();
        assert!(matches!(e, DataError::Io { .. }) && e.to_string().contains("nope.txt"), "{e}");

        let bad = dir.write("bad.txt", b"abc\xff\xfedef more text here");
        let e = load_seq(&format!("text:{}", bad.display()), 4, 0).unwrap_err().to_string();
        assert!(e.contains("bad.txt") && e.contains("not UTF-8") && e.contains("byte offset 3"), "{e}");

        let short = dir.write("short.txt", "héllo".as_bytes());
        let e = load_seq(&format!("text:{}", short.display()), 5, 0).unwrap_err().to_string();
        assert!(e.contains("short.txt") && e.contains("has 5 characters") && e.contains("seq_len + 1 = 6"), "{e}");

        // Exactly T + 1 characters is enough; CRLF becomes LF; names keep the path.
        let ok = dir.write("ok.txt", "héllo\r\nab".as_bytes());
        let ds = load_seq(&format!(" text: {} ", ok.display()), 7, 0).unwrap();
        assert_eq!((ds.len(), ds.seq_len()), (SEQ_EXAMPLES, 7));
        assert_eq!(ds.name, format!("text:{}", ok.display()));
        assert_eq!(ds.alphabet, vec!['\n', 'a', 'b', 'h', 'l', 'o', 'é']);
        assert_eq!(ds.decode(&tokens(&ds).row(0).to_vec()), "héllo\na");
    }

    #[test]
    fn text_vocabulary_is_bounded() {
        let dir = TempDir::new("seqvocab");
        // MAX_TEXT_VOCAB + 1 distinct characters (CJK block and up, all valid chars).
        let text: String = (0..=MAX_TEXT_VOCAB as u32).map(|i| char::from_u32(0x4e00 + i).unwrap()).collect();
        let p = dir.write("wide.txt", text.as_bytes());
        let e = load_seq(&format!("text:{}", p.display()), 10, 0).unwrap_err().to_string();
        assert!(
            e.contains("wide.txt") && e.contains("has 10001 distinct characters, more than the limit of 10000"),
            "{e}"
        );
        let ok: String = text.chars().take(MAX_TEXT_VOCAB).collect();
        let p = dir.write("ok.txt", ok.as_bytes());
        assert_eq!(load_seq(&format!("text:{}", p.display()), 10, 0).unwrap().vocab, MAX_TEXT_VOCAB);
    }

    #[test]
    fn memory_target_is_the_first_and_middle_inputs() {
        let ds = memory(50, 10, 3);
        let SeqInput::Dense(x) = &ds.input else { panic!("dense") };
        let SeqTarget::Final(y) = &ds.target else { panic!("final") };
        for i in 0..50 {
            assert_eq!(y[i], x[[i, 0, 0]] + x[[i, 5, 1]]);
        }
        // Zero-mean N(0, 0.5^2) inputs: the sample mean of 1000 values is within 4 standard errors.
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 4.0 * 0.5 / (x.len() as f64).sqrt(), "{mean}");
    }

    #[test]
    fn load_seq_dispatches_and_checks() {
        let ds = load_seq("adding", 20, 1).unwrap();
        assert_eq!((ds.name.as_str(), ds.len(), ds.seq_len()), ("adding", 2000, 20));
        assert_eq!(dense(&ds), dense(&adding(2000, 20, 1)));
        let ds = load_seq("memory", 20, 1).unwrap();
        assert_eq!((ds.name.as_str(), ds.len(), ds.seq_len()), ("memory", 2000, 20));
        assert_eq!(dense(&ds), dense(&memory(2000, 20, 1)));
        let ds = load_seq(" copy ", 20, 1).unwrap();
        assert_eq!((ds.len(), ds.vocab), (2000, COPY_ALPHABET + 2));
        let ds = load_seq("chars", 20, 1).unwrap();
        assert_eq!((ds.name.as_str(), ds.len(), ds.seq_len(), ds.vocab), ("chars", 2000, 20, 72));

        let e = spec_err("mnist", 20);
        assert!(
            e.contains("unknown sequence data set `mnist`") && e.contains("adding, memory, copy, chars, text:PATH"),
            "{e}"
        );
        assert!(spec_err("adding:5", 20).contains("unknown sequence data set"));
        // Every feed-forward data set is named as such, .npz included.
        for spec in ["digits", "spiral:100,3", "csv:a.csv", "npy:x.npy,y.npy", "npz:d.npz", "idx:a,b"] {
            assert!(spec_err(spec, 20).contains("is not sequence data"), "{spec}: {}", spec_err(spec, 20));
        }
        for spec in ["digits", "spiral", "spiral:10,2", "csv:a.csv", "npy:x.npy,y.npy", "idx:a,b"] {
            let e = spec_err(spec, 20);
            assert!(e.contains("is not sequence data") && e.contains("mlp") && e.contains("text:PATH"), "{spec}: {e}");
        }
        assert!(spec_err("adding", 1).contains("seq_len >= 2"));
        assert!(spec_err("copy", 2).contains("seq_len >= 3"));
        assert!(spec_err("chars", 0).contains("must be in 1..=10000"));
        assert!(spec_err("adding", MAX_SEQ_LEN + 1).contains("must be in 1..=10000"));
        assert!(spec_err("chars", 200_000).contains("must be in"));
        assert!(spec_err("text:", 5).contains("needs a path"));
        assert!(spec_err("text", 5).contains("needs a path"));
        assert_eq!(load_seq("adding", 2, 0).unwrap().seq_len(), 2);
        assert_eq!(load_seq("copy", 3, 0).unwrap().seq_len(), 3);
    }

    #[test]
    fn split_keeps_metadata() {
        let ds = chars(&corpus(), 100, 12, 2);
        let (tr, va) = ds.split(0.2, 0);
        assert_eq!((tr.len(), va.len(), tr.seq_len()), (80, 20, 12));
        assert_eq!((tr.alphabet.clone(), tr.vocab, va.name.clone()), (ds.alphabet.clone(), 72, "chars".to_string()));
        let (y, mask) = token_y(&tr);
        assert_eq!((y.dim(), mask.dim()), ((80, 12), (80, 12)));
        let (tr, va) = adding(10, 4, 0).split(0.3, 0);
        assert_eq!((final_y(&tr).len(), dense(&va).dim()), (7, (3, 4, 2)));
    }
}
