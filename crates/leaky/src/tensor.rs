//! Tensors: `ndarray` aliases, the one place that calls the GEMM crate, weight
//! initialisation and the seeded random number generator.
//!
//! Every layer in `leaky` is generic over [`Float`], implemented for `f32` (fast
//! training) and `f64` (gradient checking).
//!
//! # Why `matrixmultiply`
//! Matrix multiplication goes through [`matrixmultiply`] (`sgemm`/`dgemm`). It takes
//! arbitrary row and column strides, so `x.t()` and other transposed views multiply
//! without a copy, it is the crate `ndarray` itself builds on (one GEMM in the binary,
//! not two), and it is pure Rust that picks its kernel at run time: AVX-512 (its default
//! `avx512` feature, compiled with rustc 1.89 or newer), AVX2 + FMA, AVX, or SSE2.
//! `benches/gemm.rs` compares it with the `gemm` crate (0.19 with its AVX-512 `x86-v4`
//! feature) on the products `leaky` computes; on an AVX-512 Xeon, one thread each, the
//! median time ratio matrixmultiply/gemm per shape was 0.62..1.63 (geometric mean 1.09,
//! above 1 favours gemm): gemm ahead on untransposed operands, matrixmultiply on the
//! `dout W^T`-shaped products of every backward pass (see BENCHMARKS.md). Not enough to add
//! 28 crates and raise the minimum Rust version for AVX-512.
//!
//! Threads: [`Float::gemm`] cuts large products into blocks of C's rows or columns computed
//! on the crate's one thread pool ([`crate::parallel`]); `matrixmultiply`'s own thread pool
//! is not used.
//!
//! The one exception is [`PackedRhs`]: a right-hand operand packed once and multiplied many
//! times (the recurrent products of `layers::rnn`), which `matrixmultiply` cannot do.

use ndarray::{Array, Array1, Array2, ArrayView2, ArrayViewMut2, Axis, CowArray, Dimension, Ix2, IxDyn, ShapeBuilder};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// A dynamically-shaped array, the currency of the [`crate::nn::Layer`] trait.
pub type Tensor<F> = Array<F, IxDyn>;

/// The seeded random number generator used everywhere (ChaCha8: fast, portable,
/// identical streams on every platform for the same seed).
pub type Rng64 = rand_chacha::ChaCha8Rng;

/// Create the project RNG from a seed.
pub fn rng(seed: u64) -> Rng64 {
    Rng64::seed_from_u64(seed)
}

/// Everything that determines an [`Rng64`]'s next draws: its key, stream and word
/// position. Written as text by [`RngState::encode`] (`KEYHEX:STREAM:POS`) for
/// checkpoints that resume a run exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngState {
    /// The 256-bit ChaCha key.
    pub seed: [u8; 32],
    /// The stream number.
    pub stream: u64,
    /// The position in the stream, in 32-bit words.
    pub word_pos: u128,
}

impl RngState {
    /// The state of `r`.
    pub fn of(r: &Rng64) -> Self {
        RngState { seed: r.get_seed(), stream: r.get_stream(), word_pos: r.get_word_pos() }
    }

    /// A generator in this state: its draws are those `r` of [`RngState::of`] would make next.
    pub fn generator(&self) -> Rng64 {
        let mut r = Rng64::from_seed(self.seed);
        r.set_stream(self.stream);
        r.set_word_pos(self.word_pos);
        r
    }

    /// `KEYHEX:STREAM:POS` (64 hex digits, then two decimal numbers).
    pub fn encode(&self) -> String {
        let hex: String = self.seed.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}:{}:{}", self.stream, self.word_pos)
    }

    /// Parse [`RngState::encode`]'s text; `None` when it is not of that form.
    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.split(':');
        let (hex, stream, pos) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(RngState { seed, stream: stream.parse().ok()?, word_pos: pos.parse().ok()? })
    }
}

/// The floating-point element type of every layer: `f32` or `f64`.
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::NumAssign
    + ndarray::ScalarOperand
    + ndarray::LinalgScalar
    + std::iter::Sum
    + std::fmt::Debug
    + std::fmt::Display
    + std::fmt::LowerExp
    + Default
    + Send
    + Sync
    + 'static
{
    /// Short type name, `"f32"` or `"f64"`.
    const NAME: &'static str;

    /// Convert from `f64` (constants, hyper-parameters).
    fn from_f64c(v: f64) -> Self;

    /// Convert to `f64` (statistics, reporting).
    fn to_f64c(self) -> f64;

    /// `C <- alpha * A B + beta * C` for arbitrary strides. `a` is (M, K), `b` is (K, N),
    /// `c` is (M, N).
    ///
    /// Above [`crate::parallel::GEMM_SPLIT_FLOPS`] (and with more than one thread) the rows
    /// of C, or its columns when N > M, are cut into blocks (multiples of 16) computed in
    /// parallel on the crate's thread pool, one [`Float::gemm_one_thread`] call each. Every
    /// element of C is computed by the same operations either way, so the result does not
    /// depend on the number of threads.
    fn gemm(alpha: Self, a: ArrayView2<Self>, b: ArrayView2<Self>, beta: Self, c: ArrayViewMut2<Self>) {
        let (m, k) = a.dim();
        let (k2, n) = b.dim();
        assert_eq!(k, k2, "matmul: inner dimensions differ ({m}x{k} times {k2}x{n})");
        assert_eq!(c.dim(), (m, n), "matmul: output is {:?}, expected ({m}, {n})", c.dim());
        let flops = 2usize.saturating_mul(m).saturating_mul(k).saturating_mul(n);
        // Blocks of at least 32 rows or columns, so each call keeps the kernel's tiles full.
        let (by_rows, len) = if m >= n { (true, m) } else { (false, n) };
        let pieces = crate::parallel::pieces(flops, crate::parallel::GEMM_SPLIT_FLOPS).min(len / 32).max(1);
        gemm_pieces(alpha, a, b, beta, c, pieces, by_rows);
    }

    /// `C <- alpha * A B + beta * C` as one `matrixmultiply` call on the calling thread
    /// (`sgemm` / `dgemm`: AVX-512, AVX2 + FMA, AVX or SSE2 kernels chosen at run time).
    /// Shapes as [`Float::gemm`], which checks them.
    fn gemm_one_thread(alpha: Self, a: ArrayView2<Self>, b: ArrayView2<Self>, beta: Self, c: ArrayViewMut2<Self>);

    /// `tanh` of every element of `xs`, in place: the one tanh kernel of the crate (the
    /// activation layer, the RNN and the LSTM call it). `f64` calls `f64::tanh` (exact to
    /// the last bit, for gradient checks); `f32` uses [`tanh_f32_fast`], a rational
    /// approximation the compiler vectorises, within 5e-7 of `tanh`.
    fn tanh_in_place(xs: &mut [Self]);

    /// [`Float::tanh_in_place`] of one value.
    fn tanh_value(x: Self) -> Self;

    /// The logistic function `1 / (1 + exp(-x))` of one value, in the stable form
    /// `e = exp(-|x|)`, `1 / (1 + e)` for x >= 0 and `e / (1 + e)` below (`exp` never
    /// overflows; NaN stays NaN). `f64` uses `f64::exp`; `f32` uses [`sigmoid_f32_fast`]
    /// (the same form with a vectorisable `exp`, within a few ulps).
    fn sigmoid(x: Self) -> Self;

    /// [`Float::sigmoid`] of every element of `xs`, in place: the one sigmoid kernel of the
    /// crate (the activation layer and the LSTM gates call it).
    fn sigmoid_in_place(xs: &mut [Self]);
}

/// `exp(x)` in f32 for `x <= 0`, without a library call so that loops over slices vectorise
/// (Cephes' `expf`): `x = n ln 2 + r` with |r| <= ln(2)/2, a degree-7 polynomial for `e^r`,
/// then `2^n` put into the exponent bits. `x` is clamped to [-87.3, 0], so results below
/// 2^-126 (the smallest normal f32, 1.2e-38) come out as about 1.2e-38 instead of a
/// subnormal or 0. NaN stays NaN. Measured against `f64::exp` in the tests below: relative
/// error below 3e-7 (about 2 ulps) over [-87, 0].
#[inline]
pub fn exp_neg_f32_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that `n * LN2_HI` is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to the nearest integer, which lands in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.336_55, 0.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // The integer n in [-126, 0] from the low bits of `shifted`, as the exponent of 2^n.
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let two_n = f32::from_bits(n_int.wrapping_add(127) << 23);
    er * two_n
}

/// The logistic function in f32, the stable form of [`Float::sigmoid`] with
/// [`exp_neg_f32_fast`]: `e = exp(-|x|)`, then `1 / (1 + e)` for x >= 0 and `e / (1 + e)`
/// below. No branches that block vectorisation (the two cases are a select). Measured
/// against the f64 sigmoid in the tests below: relative error below 5e-7 over [-80, 80].
#[inline]
pub fn sigmoid_f32_fast(x: f32) -> f32 {
    let e = exp_neg_f32_fast(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 {
        s
    } else {
        e * s
    }
}

/// [`Float::sigmoid`] in f64: the stable form with `f64::exp`.
#[inline]
fn sigmoid_f64(x: f64) -> f64 {
    let e = (-x.abs()).exp();
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 {
        s
    } else {
        e * s
    }
}

/// `tanh(x)` in f32 as Eigen computes it (`generic_fast_tanh_float`): the input clamped to
/// [-7.905, 7.905] (beyond which tanh rounds to +-1 in f32), then an odd degree-13 over even
/// degree-6 rational polynomial. No branches, so loops over slices vectorise; NaN stays NaN.
/// Measured against `f64::tanh` in the tests below: max absolute difference 4.3e-7 over
/// [-10, 10] (a few f32 ulps near +-1).
#[inline]
pub fn tanh_f32_fast(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    // `clamp` returns NaN for NaN, so NaN propagates through the polynomial.
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = x2 * -2.760_768_5e-16 + 2.000_188e-13;
    p = x2 * p - 8.604_672e-11;
    p = x2 * p + 5.122_297e-8;
    p = x2 * p + 1.485_722_4e-5;
    p = x2 * p + 6.372_619_3e-4;
    p = x2 * p + 4.893_524_6e-3;
    p *= x;
    let mut q = x2 * 1.198_258_4e-6 + 1.185_347e-4;
    q = x2 * q + 2.268_434_6e-3;
    q = x2 * q + 4.893_525e-3;
    p / q
}

fn tanh_slice_std(xs: &mut [f64]) {
    for v in xs {
        *v = v.tanh();
    }
}

fn sigmoid_slice_f64(xs: &mut [f64]) {
    for v in xs {
        *v = sigmoid_f64(*v);
    }
}

#[inline(always)]
fn sigmoid_slice_fast(xs: &mut [f32]) {
    for v in xs {
        *v = sigmoid_f32_fast(*v);
    }
}

#[inline(always)]
fn tanh_slice_fast(xs: &mut [f32]) {
    for v in xs {
        *v = tanh_f32_fast(*v);
    }
}

/// The widest vector instructions of this CPU that the crate's own kernels (the f32 tanh and
/// sigmoid slices, [`PackedRhs`]) are built for, detected at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    /// AVX-512F (with AVX2 and FMA): 16 f32 per vector. Only when the crate was compiled by
    /// rustc 1.89 or newer (earlier compilers cannot build AVX-512 code).
    Avx512,
    /// AVX2 and FMA: 8 f32 per vector.
    Avx2Fma,
    /// The target's baseline (SSE2 on x86-64).
    Baseline,
}

/// The [`Simd`] level of this CPU (and build).
pub fn simd() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2_fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        #[cfg(leaky_avx512)]
        if avx2_fma && is_x86_feature_detected!("avx512f") {
            return Simd::Avx512;
        }
        if avx2_fma {
            return Simd::Avx2Fma;
        }
    }
    Simd::Baseline
}

/// `$name(xs)`: the slice loop `$baseline(xs)`, in the build for the CPU's
/// [`simd`] level (the same operations in each, no fused multiply-adds in the kernels, so the
/// same bits; tested).
macro_rules! dispatch_slice_kernel {
    ($name:ident, $baseline:ident) => {
        fn $name(xs: &mut [f32]) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2(xs: &mut [f32]) {
                    $baseline(xs)
                }
                #[cfg(leaky_avx512)]
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512(xs: &mut [f32]) {
                    $baseline(xs)
                }
                match simd() {
                    // SAFETY: `avx512` is safe Rust compiled with the `avx512f`, `avx2` and
                    // `fma` target features; `simd()` returns `Avx512` only after run-time
                    // checks found all three on this CPU.
                    #[cfg(leaky_avx512)]
                    Simd::Avx512 => return unsafe { avx512(xs) },
                    // SAFETY: as above, for `avx2` and `fma`, which `simd()` checked.
                    Simd::Avx2Fma => return unsafe { avx2(xs) },
                    _ => {}
                }
            }
            $baseline(xs)
        }
    };
}

dispatch_slice_kernel!(tanh_slice_fast_dispatch, tanh_slice_fast);
dispatch_slice_kernel!(sigmoid_slice_fast_dispatch, sigmoid_slice_fast);

macro_rules! impl_float {
    ($t:ty, $name:literal, $gemm:path, $tanh:path, $tanh1:path, $sigmoid:path, $sigmoid1:path) => {
        impl Float for $t {
            const NAME: &'static str = $name;

            #[inline]
            fn tanh_in_place(xs: &mut [Self]) {
                $tanh(xs)
            }

            #[inline]
            fn tanh_value(x: Self) -> Self {
                $tanh1(x)
            }

            #[inline]
            fn sigmoid(x: Self) -> Self {
                $sigmoid1(x)
            }

            #[inline]
            fn sigmoid_in_place(xs: &mut [Self]) {
                $sigmoid(xs)
            }

            #[inline]
            fn from_f64c(v: f64) -> Self {
                v as $t
            }

            #[inline]
            fn to_f64c(self) -> f64 {
                self as f64
            }

            fn gemm_one_thread(
                alpha: Self,
                a: ArrayView2<Self>,
                b: ArrayView2<Self>,
                beta: Self,
                mut c: ArrayViewMut2<Self>,
            ) {
                let (m, k) = a.dim();
                let (k2, n) = b.dim();
                assert_eq!(k, k2, "matmul: inner dimensions differ ({m}x{k} times {k2}x{n})");
                assert_eq!(c.dim(), (m, n), "matmul: output is {:?}, expected ({m}, {n})", c.dim());
                if m == 0 || n == 0 {
                    return;
                }
                let (rsa, csa) = (a.strides()[0], a.strides()[1]);
                let (rsb, csb) = (b.strides()[0], b.strides()[1]);
                let (rsc, csc) = (c.strides()[0], c.strides()[1]);
                // SAFETY: the three pointers come from live ndarray views whose shapes were
                // checked above ((m,k), (k,n), (m,n)); ndarray guarantees that every index
                // (i, j) within a view's shape, offset by the view's own strides, stays inside
                // its allocation, which is exactly the access pattern of `gemm`. `c` is a
                // unique mutable view, so it cannot alias `a` or `b`. With k == 0 gemm only
                // scales C by beta.
                unsafe {
                    $gemm(
                        /* m = */ m,
                        /* k = */ k,
                        /* n = */ n,
                        alpha,
                        a.as_ptr(),
                        rsa,
                        csa,
                        b.as_ptr(),
                        rsb,
                        csb,
                        beta,
                        c.as_mut_ptr(),
                        rsc,
                        csc,
                    );
                }
            }
        }
    };
}

impl_float!(
    f32,
    "f32",
    matrixmultiply::sgemm,
    tanh_slice_fast_dispatch,
    tanh_f32_fast,
    sigmoid_slice_fast_dispatch,
    sigmoid_f32_fast
);
impl_float!(f64, "f64", matrixmultiply::dgemm, tanh_slice_std, f64::tanh, sigmoid_slice_f64, sigmoid_f64);

/// [`Float::gemm`] cut into `pieces` blocks of C's rows (`by_rows`) or columns, halved
/// recursively with `rayon::join` (no allocation); block boundaries are multiples of 16.
fn gemm_pieces<F: Float>(
    alpha: F,
    a: ArrayView2<F>,
    b: ArrayView2<F>,
    beta: F,
    c: ArrayViewMut2<F>,
    pieces: usize,
    by_rows: bool,
) {
    let len = if by_rows { c.nrows() } else { c.ncols() };
    let left = pieces / 2;
    let mid = (len * left / pieces.max(1)) / 16 * 16;
    if pieces <= 1 || mid == 0 || mid >= len {
        F::gemm_one_thread(alpha, a, b, beta, c);
        return;
    }
    let axis = if by_rows { Axis(0) } else { Axis(1) };
    let (c1, c2) = c.split_at(axis, mid);
    if by_rows {
        let (a1, a2) = a.split_at(Axis(0), mid);
        rayon::join(
            || gemm_pieces(alpha, a1, b, beta, c1, left, by_rows),
            || gemm_pieces(alpha, a2, b, beta, c2, pieces - left, by_rows),
        );
    } else {
        let (b1, b2) = b.split_at(Axis(1), mid);
        rayon::join(
            || gemm_pieces(alpha, a, b1, beta, c1, left, by_rows),
            || gemm_pieces(alpha, a, b2, beta, c2, pieces - left, by_rows),
        );
    }
}

/// `a @ b`. `a`: (M, K), `b`: (K, N) -> (M, N). Transposed views (`x.t()`) are fine.
pub fn matmul<F: Float>(a: ArrayView2<F>, b: ArrayView2<F>) -> Array2<F> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    F::gemm(F::one(), a, b, F::zero(), c.view_mut());
    c
}

/// `c += a @ b`. `a`: (M, K), `b`: (K, N), `c`: (M, N).
pub fn matmul_acc<F: Float>(a: ArrayView2<F>, b: ArrayView2<F>, c: ArrayViewMut2<F>) {
    F::gemm(F::one(), a, b, F::one(), c);
}

/// Convert a whole array between float types (e.g. an f64 fixture into f32).
pub fn cast<A: Float, B: Float, D: Dimension>(a: &Array<A, D>) -> Array<B, D> {
    a.mapv(|v| B::from_f64c(v.to_f64c()))
}

/// Weight initialisation scheme.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// N(0, std^2) with a fixed std (CS231n's `weight_scale`).
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// Xavier/Glorot normal: std = sqrt(2 / (fan_in + fan_out)).
    Xavier,
    /// He/Kaiming normal: std = sqrt(2 / fan_in), for ReLU layers.
    He,
}

impl Init {
    /// The standard deviation this scheme uses for a weight of the given fans.
    pub fn std(self, fan_in: usize, fan_out: usize) -> f64 {
        match self {
            Init::Normal { std } => std,
            Init::Xavier => (2.0 / (fan_in + fan_out) as f64).sqrt(),
            Init::He => (2.0 / fan_in as f64).sqrt(),
        }
    }
}

/// An array of i.i.d. N(0, std^2) samples with the given shape.
pub fn randn<F: Float, Sh: ShapeBuilder>(shape: Sh, std: f64, rng: &mut impl Rng) -> Array<F, Sh::Dim> {
    Array::from_shape_simple_fn(shape, || {
        let z: f64 = StandardNormal.sample(rng);
        F::from_f64c(z * std)
    })
}

/// An array of i.i.d. U(lo, hi) samples with the given shape.
pub fn uniform<F: Float, Sh: ShapeBuilder>(shape: Sh, lo: f64, hi: f64, rng: &mut impl Rng) -> Array<F, Sh::Dim> {
    Array::from_shape_simple_fn(shape, || F::from_f64c(rng.random_range(lo..hi)))
}

/// A weight matrix of shape (fan_in, fan_out) drawn with `init`.
pub fn init_weight<F: Float>(fan_in: usize, fan_out: usize, init: Init, rng: &mut impl Rng) -> Array2<F> {
    randn((fan_in, fan_out), init.std(fan_in, fan_out), rng)
}

/// Evenly spaced values over [lo, hi], like `np.linspace(lo, hi, n)`; used by fixtures.
pub fn linspace<F: Float>(lo: f64, hi: f64, n: usize) -> Array1<F> {
    if n == 1 {
        return Array1::from_elem(1, F::from_f64c(lo));
    }
    let step = (hi - lo) / (n - 1) as f64;
    Array1::from_shape_fn(n, |i| F::from_f64c(lo + step * i as f64))
}

/// A random permutation of 0..n (Fisher-Yates, seeded by `rng`).
pub fn permutation(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        idx.swap(i, j);
    }
    idx
}

// ---------------------------------------------------------------------------------------
// a right-hand operand packed once for many products (the recurrent products of RNN/LSTM)
// ---------------------------------------------------------------------------------------

/// Rows of the register tile of [`PackedRhs::mul_into`] (the last M % 6 rows use a 2- or
/// 4-row tile).
const PACK_MR: usize = 6;

/// The tile height used for the last `rem` (1..6) rows.
fn tail_mr(rem: usize) -> usize {
    match rem {
        0 => 0,
        1 | 2 => 2,
        3 | 4 => 4,
        _ => PACK_MR,
    }
}

/// Columns of the register tile for element type `F`: two vectors per row (with AVX-512,
/// 32 f32 or 16 f64; else two 256-bit vectors, 16 f32 or 8 f64), so a 6-row tile keeps twelve
/// vector accumulators in registers (enough independent FMA chains to cover the FMA
/// latency), plus two for B and one broadcast of A.
fn pack_nr<F>(simd: Simd) -> usize {
    let bytes = if simd == Simd::Avx512 { 128 } else { 64 };
    bytes / std::mem::size_of::<F>()
}

/// A right-hand matrix B (K, N) arranged once for many products `C = A B + beta C` with
/// different left operands A (M, K).
///
/// Why it exists: a recurrent layer multiplies its hidden state by the same `Wh` at every
/// time step (50 products per pass in the benchmarks), and `matrixmultiply` re-packs B into
/// its panel layout on every call, which was 20% of an LSTM training step. Here B is laid out
/// once per training step as column panels of `NR` columns (zero-padded to a whole panel),
/// each panel K rows of `NR` contiguous values, and [`PackedRhs::mul_into`] runs a small
/// register-tiled kernel (6 rows x `NR` columns, K accumulated in registers) over it. The
/// kernel is plain Rust that LLVM vectorises; on x86-64 the same code is compiled for
/// AVX-512, for AVX2 + FMA and for the baseline target, and [`simd`] picks the build (and the
/// panel width) at run time.
#[derive(Clone, Debug)]
pub struct PackedRhs<F> {
    k: usize,
    n: usize,
    nr: usize,
    /// The kernel build the panels are laid out for.
    simd: Simd,
    /// `ceil(N / NR)` panels of (K, NR), row-major inside a panel.
    panels: Vec<F>,
    /// K zeros: the rows of A past M in the last, partly filled, tile.
    zero_row: Vec<F>,
}

impl<F: Float> PackedRhs<F> {
    /// Pack `b`: (K, N), any strides (`w.t()` packs the transpose).
    pub fn new(b: ArrayView2<F>) -> Self {
        Self::for_simd(b, simd())
    }

    /// [`PackedRhs::new`] for the kernel build `simd` (which this CPU must support).
    fn for_simd(b: ArrayView2<F>, simd: Simd) -> Self {
        let mut p = PackedRhs { k: 0, n: 0, nr: pack_nr::<F>(simd), simd, panels: Vec::new(), zero_row: Vec::new() };
        p.pack(b);
        p
    }

    /// Re-pack `b`: (K, N) into the existing buffers (no allocation when the shape is unchanged).
    pub fn pack(&mut self, b: ArrayView2<F>) {
        let (k, n) = b.dim();
        let nr = self.nr;
        self.k = k;
        self.n = n;
        self.panels.clear();
        self.panels.resize(n.div_ceil(nr) * k * nr, F::zero());
        self.zero_row.clear();
        self.zero_row.resize(k, F::zero());
        if k == 0 || n == 0 {
            return;
        }
        for (p, panel) in self.panels.chunks_exact_mut(k * nr).enumerate() {
            let j0 = p * nr;
            let width = nr.min(n - j0);
            for (kk, row) in panel.chunks_exact_mut(nr).enumerate() {
                for (j, v) in row[..width].iter_mut().enumerate() {
                    *v = b[[kk, j0 + j]];
                }
            }
        }
    }

    /// The packed matrix's shape (K, N).
    pub fn dim(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// `c = a B + beta c`. `a`: (M, K), `c`: (M, N), any strides (rows that are not
    /// contiguous in memory go through a copy). With `beta == 0` the old `c` is not read
    /// (NaN there does not propagate), as in BLAS.
    ///
    /// Above [`crate::parallel::GEMM_SPLIT_FLOPS`] the column panels are shared out over the
    /// crate's thread pool (each column of C is computed by the same operations either way).
    ///
    /// Panics if the shapes do not fit.
    pub fn mul_into(&mut self, a: ArrayView2<F>, beta: F, mut c: ArrayViewMut2<F>) {
        let m = a.nrows();
        let (k, n) = (self.k, self.n);
        assert_eq!(a.ncols(), k, "PackedRhs::mul_into: A is {:?}, the packed B is ({k}, {n})", a.dim());
        assert_eq!(c.dim(), (m, n), "PackedRhs::mul_into: C is {:?}, expected ({m}, {n})", c.dim());
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if beta == F::zero() {
                c.fill(F::zero());
            } else {
                c.mapv_inplace(|v| v * beta);
            }
            return;
        }
        // Rows of A and C are read and written as slices; other layouts go through a copy.
        let rows_contiguous = |cols: usize, col_stride: isize| cols <= 1 || col_stride == 1;
        let a: CowArray<F, Ix2> = if rows_contiguous(a.ncols(), a.strides()[1]) {
            a.into()
        } else {
            a.as_standard_layout().into_owned().into()
        };
        if rows_contiguous(c.ncols(), c.strides()[1]) {
            self.mul_rows(a.view(), c, beta);
        } else {
            let mut tmp = Array2::zeros((m, n));
            self.mul_rows(a.view(), tmp.view_mut(), F::zero());
            if beta == F::zero() {
                c.assign(&tmp);
            } else {
                c.zip_mut_with(&tmp, |c, &t| *c = t + beta * *c);
            }
        }
    }

    /// `c = a B + beta c` with the rows of `a` (M, K) and of `c` (M, N) contiguous.
    fn mul_rows(&self, a: ArrayView2<F>, c: ArrayViewMut2<F>, beta: F) {
        let (m, k, n, nr) = (a.nrows(), self.k, self.n, self.nr);
        let flops = 2usize.saturating_mul(m).saturating_mul(k).saturating_mul(n);
        let pieces = crate::parallel::pieces(flops, crate::parallel::GEMM_SPLIT_FLOPS).min(n.div_ceil(nr));
        let job = PackedJob { a, zero_row: &self.zero_row, k, beta, simd: self.simd };
        packed_pieces(&job, &self.panels, nr, c, pieces);
    }
}

/// The left operand and scalars of one packed product.
struct PackedJob<'a, F> {
    /// A (M, K), rows contiguous.
    a: ArrayView2<'a, F>,
    /// K zeros: the rows of A past M in the last, partly filled, tile.
    zero_row: &'a [F],
    k: usize,
    beta: F,
    /// The kernel build to run (the one the panels were packed for).
    simd: Simd,
}

/// The product over the column panels `panels` (each (K, NR)) into `c`, whose columns are
/// those panels' columns; cut into `pieces` runs of whole panels computed in parallel
/// (halved recursively with `rayon::join`, no allocation).
fn packed_pieces<F: Float>(job: &PackedJob<F>, panels: &[F], nr: usize, c: ArrayViewMut2<F>, pieces: usize) {
    let count = panels.len() / (job.k * nr);
    if pieces <= 1 || count <= 1 {
        match nr {
            32 => run_packed::<F, 32>(job, panels, c),
            16 => run_packed::<F, 16>(job, panels, c),
            _ => run_packed::<F, 8>(job, panels, c),
        }
        return;
    }
    let left_panels = count * (pieces / 2) / pieces;
    let left_panels = left_panels.clamp(1, count - 1);
    let (p1, p2) = panels.split_at(left_panels * job.k * nr);
    let (c1, c2) = c.split_at(Axis(1), left_panels * nr);
    rayon::join(|| packed_pieces(job, p1, nr, c1, pieces / 2), || packed_pieces(job, p2, nr, c2, pieces - pieces / 2));
}

/// Dispatch: the build of the kernel for `job.simd` (AVX-512, AVX2 + FMA, or baseline).
fn run_packed<F: Float, const NR: usize>(job: &PackedJob<F>, panels: &[F], c: ArrayViewMut2<F>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<F: Float, const NR: usize>(job: &PackedJob<F>, panels: &[F], c: ArrayViewMut2<F>) {
            packed_kernel::<F, NR, true>(job, panels, c);
        }
        #[cfg(leaky_avx512)]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512<F: Float, const NR: usize>(job: &PackedJob<F>, panels: &[F], c: ArrayViewMut2<F>) {
            packed_kernel::<F, NR, true>(job, panels, c);
        }
        match job.simd {
            // SAFETY: `avx512` is safe Rust compiled with the `avx512f`, `avx2` and `fma`
            // target features; `job.simd` is `Avx512` only when `simd()` found all three on
            // this CPU at run time.
            #[cfg(leaky_avx512)]
            Simd::Avx512 => return unsafe { avx512::<F, NR>(job, panels, c) },
            // SAFETY: as above, for `avx2` and `fma`, which `simd()` checked.
            Simd::Avx2Fma => return unsafe { avx2::<F, NR>(job, panels, c) },
            _ => {}
        }
    }
    packed_kernel::<F, NR, false>(job, panels, c);
}

/// For each panel of B, for each block of rows of A: one register tile
/// `acc[r][j] = sum_k A[r, k] B[k, j]`, written to C (whose column 0 is the first panel's
/// column 0). Panel-outer so that one (K, NR) panel stays in L1 while every row block
/// streams past it. `FUSE` selects `mul_add` (one FMA instruction when compiled with `fma`;
/// a slow library call without it).
#[inline(always)]
fn packed_kernel<F: Float, const NR: usize, const FUSE: bool>(
    job: &PackedJob<F>,
    panels: &[F],
    mut c: ArrayViewMut2<F>,
) {
    let (k, n, m) = (job.k, c.ncols(), c.nrows());
    let row = |i: usize| -> &[F] {
        if i < m {
            &job.a.row(i).to_slice().expect("rows with unit stride")[..k]
        } else {
            &job.zero_row[..k]
        }
    };
    for (p, panel) in panels.chunks_exact(k * NR).enumerate() {
        let cols = (p * NR, NR.min(n - p * NR));
        let mut r0 = 0;
        while r0 + PACK_MR <= m {
            let a: [&[F]; PACK_MR] = std::array::from_fn(|r| row(r0 + r));
            write_tile(&register_tile::<F, PACK_MR, NR, FUSE>(&a, panel), &mut c, r0, cols, job.beta);
            r0 += PACK_MR;
        }
        match tail_mr(m - r0) {
            0 => {}
            2 => {
                write_tile(&register_tile::<F, 2, NR, FUSE>(&[row(r0), row(r0 + 1)], panel), &mut c, r0, cols, job.beta)
            }
            4 => {
                let a: [&[F]; 4] = std::array::from_fn(|r| row(r0 + r));
                write_tile(&register_tile::<F, 4, NR, FUSE>(&a, panel), &mut c, r0, cols, job.beta);
            }
            _ => {
                let a: [&[F]; PACK_MR] = std::array::from_fn(|r| row(r0 + r));
                write_tile(&register_tile::<F, PACK_MR, NR, FUSE>(&a, panel), &mut c, r0, cols, job.beta);
            }
        }
    }
}

/// `c[r0 + r][j0 + j] = acc[r][j] + beta c[..]` for the rows that exist and `j < width`.
#[inline(always)]
fn write_tile<F: Float, const MR: usize, const NR: usize>(
    acc: &[[F; NR]; MR],
    c: &mut ArrayViewMut2<F>,
    r0: usize,
    (j0, width): (usize, usize),
    beta: F,
) {
    let rows = MR.min(c.nrows() - r0);
    for (r, acc_row) in acc.iter().enumerate().take(rows) {
        let mut c_row = c.row_mut(r0 + r);
        let out = &mut c_row.as_slice_mut().expect("rows with unit stride")[j0..j0 + width];
        if beta == F::zero() {
            out.copy_from_slice(&acc_row[..width]);
        } else {
            for (o, &v) in out.iter_mut().zip(&acc_row[..width]) {
                *o = v + beta * *o;
            }
        }
    }
}

/// `a`: MR rows of A (K values each), `panel`: (K, NR) packed columns of B; returns the
/// (MR, NR) product. Fixed-size arrays and independent accumulators so that LLVM keeps the
/// tile in vector registers.
#[inline(always)]
fn register_tile<F: Float, const MR: usize, const NR: usize, const FUSE: bool>(
    a: &[&[F]; MR],
    panel: &[F],
) -> [[F; NR]; MR] {
    let k = panel.len() / NR;
    let a: [&[F]; MR] = std::array::from_fn(|r| &a[r][..k]);
    let mut acc = [[F::zero(); NR]; MR];
    for (kk, bk) in panel.chunks_exact(NR).enumerate() {
        let bk: &[F; NR] = bk.try_into().expect("NR values");
        for (acc_row, a_row) in acc.iter_mut().zip(&a) {
            let av = a_row[kk];
            for (s, &bv) in acc_row.iter_mut().zip(bk) {
                *s = if FUSE { av.mul_add(bv, *s) } else { av * bv + *s };
            }
        }
    }
    acc
}

// ---------------------------------------------------------------------------------------
// small products read in place, without packing (the convolution's per-image products)
// ---------------------------------------------------------------------------------------

/// `c = a b`, or `c += a b` when `accumulate`, for row-major operands read where they are:
///
/// * `a`: (M, K), rows of K values, contiguous (`a.len() >= M * K`)
/// * `b`: (K, N), row `kk` at `b[kk * ldb..][..N]` (`ldb >= N`)
/// * `c`: (M, N), rows of N values, contiguous (`c.len() >= M * N`)
///
/// Why it exists: in a convolution M (filters) is small, K = C * HH * WW is small and N (the
/// output positions of one image) is long, so `matrixmultiply`, which copies both operands
/// into its panel layout on every call, spent as long packing as multiplying. Here the rows
/// of B are already contiguous runs of NR columns, which is all the register tile needs: a
/// tile of MR rows x NR columns keeps its K-long sums in vector registers, reading A's MR
/// rows (a few hundred bytes, in L1) and NR columns of each row of B. Only the last, partial
/// NR columns are copied (zero-padded). Runs on the calling thread (callers parallelise over
/// images); the kernel is built for AVX-512, AVX2 + FMA and the baseline like
/// [`PackedRhs`], picked by [`simd`]. Each element is the sum over `kk` in order (with fused
/// multiply-adds where the build has them), plus the old `c` last when `accumulate`.
///
/// Panics if a slice is too short for its shape.
pub fn gemm_rows<F: Float>(a: &[F], b: &[F], ldb: usize, dims: (usize, usize, usize), c: &mut [F], accumulate: bool) {
    gemm_rows_for(simd(), a, b, ldb, dims, c, accumulate);
}

/// [`gemm_rows`] with the kernel build `simd` (which this CPU must support).
fn gemm_rows_for<F: Float>(
    simd: Simd,
    a: &[F],
    b: &[F],
    ldb: usize,
    (m, k, n): (usize, usize, usize),
    c: &mut [F],
    accumulate: bool,
) {
    assert!(a.len() >= m * k, "gemm_rows: A has {} values, expected ({m}, {k})", a.len());
    assert!(c.len() >= m * n, "gemm_rows: C has {} values, expected ({m}, {n})", c.len());
    assert!(ldb >= n, "gemm_rows: row stride of B {ldb} is less than N = {n}");
    assert!(
        k == 0 || b.len() >= (k - 1) * ldb + n,
        "gemm_rows: B has {} values, expected ({k}, {n}) with row stride {ldb}",
        b.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(F::zero());
        }
        return;
    }
    let job = RowsJob { a: &a[..m * k], b, ldb, m, k, n, accumulate };
    match pack_nr::<F>(simd) {
        32 => run_rows::<F, 32>(simd, &job, &mut c[..m * n]),
        16 => run_rows::<F, 16>(simd, &job, &mut c[..m * n]),
        _ => run_rows::<F, 8>(simd, &job, &mut c[..m * n]),
    }
}

/// The operands of one [`gemm_rows`] product (shapes checked).
struct RowsJob<'a, F> {
    a: &'a [F],
    b: &'a [F],
    ldb: usize,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
}

/// Dispatch: the build of [`rows_kernel`] for `simd`; tiles of 8 rows with AVX-512 (16 of
/// its 32 vector registers hold the sums), 6 otherwise (12 of 16).
fn run_rows<F: Float, const NR: usize>(simd: Simd, job: &RowsJob<F>, c: &mut [F]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<F: Float, const NR: usize>(job: &RowsJob<F>, c: &mut [F]) {
            rows_kernel::<F, NR, PACK_MR, true>(job, c);
        }
        #[cfg(leaky_avx512)]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512<F: Float, const NR: usize>(job: &RowsJob<F>, c: &mut [F]) {
            rows_kernel::<F, NR, 8, true>(job, c);
        }
        match simd {
            // SAFETY: `avx512` is safe Rust compiled with the `avx512f`, `avx2` and `fma`
            // target features; `simd` is `Avx512` only when `simd()` found all three on this
            // CPU at run time (callers pass `simd()` or, in tests, a level it allows).
            #[cfg(leaky_avx512)]
            Simd::Avx512 => return unsafe { avx512::<F, NR>(job, c) },
            // SAFETY: as above, for `avx2` and `fma`, which `simd()` checked.
            Simd::Avx2Fma => return unsafe { avx2::<F, NR>(job, c) },
            _ => {}
        }
    }
    rows_kernel::<F, NR, PACK_MR, false>(job, c);
}

/// Columns outer in strips of NR: each (K, NR) strip of B is copied into a contiguous,
/// zero-padded buffer (in L1), then rows inner in tiles of MR ([`register_tile`], the
/// kernel of [`PackedRhs`]). (Reading the strip in place, rows `ldb` apart, LLVM re-loaded
/// B from memory in every multiply-add instead of keeping it in registers: half the speed.)
#[inline(always)]
fn rows_kernel<F: Float, const NR: usize, const MR: usize, const FUSE: bool>(job: &RowsJob<F>, c: &mut [F]) {
    let RowsJob { a, b, ldb, m, k, n, accumulate } = *job;
    let row = |i: usize| -> &[F] { &a[i.min(m - 1) * k..][..k] };
    let mut panel = vec![F::zero(); k * NR];
    let mut j0 = 0;
    while j0 < n {
        let width = NR.min(n - j0);
        copy_strip::<F, NR>(&mut panel, b, ldb, j0, width);
        let mut r0 = 0;
        while r0 < m {
            let rows = MR.min(m - r0);
            let put = |acc: &[[F; NR]], c: &mut [F]| {
                for (r, acc_row) in acc.iter().enumerate().take(rows) {
                    let out = &mut c[(r0 + r) * n + j0..][..width];
                    if accumulate {
                        for (o, &v) in out.iter_mut().zip(&acc_row[..width]) {
                            *o = v + *o;
                        }
                    } else {
                        out.copy_from_slice(&acc_row[..width]);
                    }
                }
            };
            // Rows past M in the last tile repeat row M - 1 and are not written. (One tile
            // size: with smaller tiles for the last rows in the same function, LLVM left
            // some of the tiles unvectorised, a different one in each build.)
            put(&register_tile::<F, MR, NR, FUSE>(&std::array::from_fn(|r| row(r0 + r)), &panel), c);
            r0 += rows;
        }
        j0 += NR;
    }
}

/// `panel` (K, NR) = columns `j0..j0 + width` of `b` (rows `ldb` apart), zero-padded to NR.
/// Full strips are copied as arrays of a fixed size (moves, not a `memcpy` call per row,
/// which cost as much as the products). Not inlined into the kernel builds: inlined, this
/// copy changed how LLVM compiled the register tile (B re-loaded from memory).
#[inline(never)]
fn copy_strip<F: Float, const NR: usize>(panel: &mut [F], b: &[F], ldb: usize, j0: usize, width: usize) {
    for (kk, t) in panel.chunks_exact_mut(NR).enumerate() {
        let src = &b[kk * ldb + j0..][..width];
        if width == NR {
            let t: &mut [F; NR] = t.try_into().expect("NR values");
            *t = *<&[F; NR]>::try_from(src).expect("NR values");
        } else {
            t[..width].copy_from_slice(src);
            t[width..].fill(F::zero());
        }
    }
}

/// Partial sums of `C = sum_b A_b B_b^T` over a batch of pairs of long-rowed matrices, kept
/// as vectors of V lanes per element of C until [`AbtSums::finish`] adds the lanes (the
/// convolution's weight gradient `dW (F, K) = sum_n dout[n] (F, P) cols[n] (K, P)^T`).
///
/// Why it exists: both operands' rows are contiguous along the summed axis (P, a few
/// hundred values) while C is tiny (F x K); `matrixmultiply` would pack both operands in
/// full for a product whose output fits in a few registers. Here a tile of MR rows of A x NR
/// rows of B keeps MR * NR vector accumulators in registers and reads each row once, V
/// values at a time.
///
/// Lane `v` of element (i, j) adds, pair after pair in the order they were added, the pair's
/// sum of `A[i, p] B[j, p]` over `p = v, v + V, ...` in order; [`AbtSums::finish`] adds the
/// lanes in order. So the result depends only on the shapes, the inputs and the kernel build,
/// never on threads.
#[derive(Clone, Debug)]
pub struct AbtSums<F> {
    m: usize,
    n: usize,
    simd: Simd,
    /// (M rounded up to MR, N rounded up to NR, V) lanes.
    lanes: Vec<F>,
}

/// (MR, NR, V in bytes) of the [`AbtSums`] tile for a kernel build: AVX-512 has 32 vector
/// registers (4 x 3 accumulators of one 64-byte vector, plus 7 operand vectors), AVX2 16
/// (3 x 3 of 32 bytes, plus 6).
fn abt_shape(simd: Simd) -> (usize, usize, usize) {
    if simd == Simd::Avx512 {
        (4, 3, 64)
    } else {
        (3, 3, 32)
    }
}

impl<F: Float> AbtSums<F> {
    /// Zero sums for C of shape (M, N).
    pub fn new(m: usize, n: usize) -> Self {
        Self::for_simd(m, n, simd())
    }

    /// [`AbtSums::new`] for the kernel build `simd` (which this CPU must support).
    fn for_simd(m: usize, n: usize, simd: Simd) -> Self {
        let (mr, nr, vb) = abt_shape(simd);
        let v = vb / std::mem::size_of::<F>();
        AbtSums { m, n, simd, lanes: vec![F::zero(); m.div_ceil(mr) * mr * n.div_ceil(nr) * nr * v] }
    }

    /// Add `a (M, L) b (N, L)^T`: `a` and `b` row-major with rows of L values (each slice at
    /// least M * L and N * L long).
    ///
    /// Panics if a slice is too short.
    pub fn add(&mut self, a: &[F], b: &[F], l: usize) {
        let (m, n) = (self.m, self.n);
        assert!(a.len() >= m * l, "AbtSums::add: A has {} values, expected ({m}, {l})", a.len());
        assert!(b.len() >= n * l, "AbtSums::add: B has {} values, expected ({n}, {l})", b.len());
        if m == 0 || n == 0 || l == 0 {
            return;
        }
        let job = AbtJob { a: &a[..m * l], b: &b[..n * l], m, n, l };
        let elems = |bytes: usize| bytes / std::mem::size_of::<F>();
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<F: Float, const V: usize>(job: &AbtJob<F>, lanes: &mut [F]) {
                abt_kernel::<F, 3, 3, V, true>(job, lanes);
            }
            #[cfg(leaky_avx512)]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512<F: Float, const V: usize>(job: &AbtJob<F>, lanes: &mut [F]) {
                abt_kernel::<F, 4, 3, V, true>(job, lanes);
            }
            match (self.simd, elems(abt_shape(self.simd).2)) {
                // SAFETY: `avx512` is safe Rust compiled with the `avx512f`, `avx2` and `fma`
                // target features; `self.simd` is `Avx512` only when `simd()` found all three
                // on this CPU at run time (or a test chose a level `simd()` allows).
                #[cfg(leaky_avx512)]
                (Simd::Avx512, 16) => return unsafe { avx512::<F, 16>(&job, &mut self.lanes) },
                // SAFETY: as above.
                #[cfg(leaky_avx512)]
                (Simd::Avx512, _) => return unsafe { avx512::<F, 8>(&job, &mut self.lanes) },
                // SAFETY: as above, for `avx2` and `fma`, which `simd()` checked.
                (Simd::Avx2Fma, 8) => return unsafe { avx2::<F, 8>(&job, &mut self.lanes) },
                // SAFETY: as above.
                (Simd::Avx2Fma, _) => return unsafe { avx2::<F, 4>(&job, &mut self.lanes) },
                _ => {}
            }
        }
        match elems(abt_shape(self.simd).2) {
            8 => abt_kernel::<F, 3, 3, 8, false>(&job, &mut self.lanes),
            _ => abt_kernel::<F, 3, 3, 4, false>(&job, &mut self.lanes),
        }
    }

    /// `c (M, N) = the sums` (`c` row-major, at least M * N long), lanes added in order.
    pub fn finish(&self, c: &mut [F]) {
        let (_, nr, vb) = abt_shape(self.simd);
        let v = vb / std::mem::size_of::<F>();
        let np = self.n.div_ceil(nr) * nr;
        for i in 0..self.m {
            for j in 0..self.n {
                let lanes = &self.lanes[(i * np + j) * v..][..v];
                c[i * self.n + j] = lanes.iter().fold(F::zero(), |s, &x| s + x);
            }
        }
    }
}

/// The operands of one [`AbtSums::add`] (shapes checked).
struct AbtJob<'a, F> {
    a: &'a [F],
    b: &'a [F],
    m: usize,
    n: usize,
    l: usize,
}

/// For each (MR, NR) tile of C: the pair's lane sums over full vectors of V ([`abt_tile`]),
/// then lane `v < L % V` also takes the value at `p = L - L % V + v` (the last, partial
/// vector), and the lanes are added to the running lanes. Rows past M (columns past N) repeat the last row of A (of B);
/// their lanes are never read.
#[inline(always)]
fn abt_kernel<F: Float, const MR: usize, const NR: usize, const V: usize, const FUSE: bool>(
    job: &AbtJob<F>,
    lanes: &mut [F],
) {
    let AbtJob { a, b, m, n, l } = *job;
    let np = n.div_ceil(NR) * NR;
    let full = l / V * V;
    for i0 in (0..m).step_by(MR) {
        let ra: [&[F]; MR] = std::array::from_fn(|r| &a[(i0 + r).min(m - 1) * l..][..l]);
        for j0 in (0..n).step_by(NR) {
            let rb: [&[F]; NR] = std::array::from_fn(|c| &b[(j0 + c).min(n - 1) * l..][..l]);
            let acc = abt_tile::<F, MR, NR, V, FUSE>(&ra, &rb, full);
            for (r, acc_r) in acc.iter().enumerate() {
                for (c, acc_rc) in acc_r.iter().enumerate() {
                    let mut acc_rc = *acc_rc;
                    for (v, s) in acc_rc.iter_mut().enumerate().take(l - full) {
                        *s = if FUSE {
                            ra[r][full + v].mul_add(rb[c][full + v], *s)
                        } else {
                            ra[r][full + v] * rb[c][full + v] + *s
                        };
                    }
                    let dst: &mut [F; V] =
                        (&mut lanes[((i0 + r) * np + j0 + c) * V..][..V]).try_into().expect("V values");
                    for v in 0..V {
                        dst[v] += acc_rc[v];
                    }
                }
            }
        }
    }
}

/// `acc[r][c][v] = sum_t A_r[t V + v] B_c[t V + v]` over the first `full` values (a multiple
/// of V), t in order. Written with indices over pre-cut slices: the iterator form of the
/// same loops was not vectorised by LLVM.
#[inline(always)]
fn abt_tile<F: Float, const MR: usize, const NR: usize, const V: usize, const FUSE: bool>(
    ra: &[&[F]; MR],
    rb: &[&[F]; NR],
    full: usize,
) -> [[[F; V]; NR]; MR] {
    let mut acc = [[[F::zero(); V]; NR]; MR];
    let ra: [&[F]; MR] = std::array::from_fn(|r| &ra[r][..full]);
    let rb: [&[F]; NR] = std::array::from_fn(|c| &rb[c][..full]);
    for t in 0..full / V {
        for r in 0..MR {
            let xa: &[F; V] = ra[r][t * V..t * V + V].try_into().expect("V values");
            for c in 0..NR {
                let xb: &[F; V] = rb[c][t * V..t * V + V].try_into().expect("V values");
                for v in 0..V {
                    let s = acc[r][c][v];
                    acc[r][c][v] = if FUSE { xa[v].mul_add(xb[v], s) } else { xa[v] * xb[v] + s };
                }
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn naive<F: Float>(a: ArrayView2<F>, b: ArrayView2<F>) -> Array2<F> {
        let mut c = Array2::zeros((a.nrows(), b.ncols()));
        for i in 0..a.nrows() {
            for j in 0..b.ncols() {
                let mut s = F::zero();
                for k in 0..a.ncols() {
                    s += a[[i, k]] * b[[k, j]];
                }
                c[[i, j]] = s;
            }
        }
        c
    }

    #[test]
    fn matmul_matches_naive_with_transposes() {
        let mut r = rng(1);
        let a: Array2<f64> = randn((7, 5), 1.0, &mut r);
        let b: Array2<f64> = randn((5, 3), 1.0, &mut r);
        let c = matmul(a.view(), b.view());
        let d = naive(a.view(), b.view());
        assert!((&c - &d).iter().all(|v| v.abs() < 1e-12));
        let at = a.t().to_owned();
        let c2 = matmul(at.t(), b.view());
        assert!((&c2 - &d).iter().all(|v| v.abs() < 1e-12));
        let e = matmul(b.t(), a.t());
        assert!((&e - &d.t()).iter().all(|v| v.abs() < 1e-12));
    }

    /// The product split over 2, 3 or 4 threads gives the bits of one call on one thread
    /// (rows or columns of C in blocks; transposed operands; beta 0 and not).
    #[test]
    fn gemm_split_over_threads_gives_the_same_bits() {
        fn check<F: Float>() {
            let mut r = rng(9);
            for &(m, k, n) in &[(300usize, 200usize, 100usize), (64, 500, 700), (33, 1000, 45)] {
                let a: Array2<F> = randn((k, m), 1.0, &mut r);
                let b: Array2<F> = randn((k, n), 1.0, &mut r);
                let c0: Array2<F> = randn((m, n), 1.0, &mut r);
                for beta in [F::zero(), F::from_f64c(0.7)] {
                    let mut want = c0.clone();
                    F::gemm_one_thread(F::from_f64c(0.5), a.t(), b.view(), beta, want.view_mut());
                    for threads in [2, 3, 4] {
                        let mut got = c0.clone();
                        crate::parallel::tests::with_threads(threads, || {
                            F::gemm(F::from_f64c(0.5), a.t(), b.view(), beta, got.view_mut())
                        });
                        assert_eq!(got, want, "{} ({m}, {k}, {n}) on {threads} threads", F::NAME);
                    }
                }
            }
        }
        check::<f32>();
        check::<f64>();
    }

    #[test]
    fn matmul_small_literal() {
        let a = array![[1.0f32, 2.0], [3.0, 4.0]];
        let b = array![[5.0f32, 6.0], [7.0, 8.0]];
        assert_eq!(matmul(a.view(), b.view()), array![[19.0, 22.0], [43.0, 50.0]]);
        let mut c = array![[1.0f32, 1.0], [1.0, 1.0]];
        matmul_acc(a.view(), b.view(), c.view_mut());
        assert_eq!(c, array![[20.0, 23.0], [44.0, 51.0]]);
    }

    #[test]
    fn init_std_matches_scheme() {
        let mut r = rng(0);
        let w: Array2<f64> = init_weight(400, 100, Init::He, &mut r);
        let std = (w.mapv(|v| v * v).mean().unwrap()).sqrt();
        assert!((std - (2.0f64 / 400.0).sqrt()).abs() < 0.003, "std {std}");
        assert_eq!(Init::Xavier.std(100, 300), (2.0f64 / 400.0).sqrt());
    }

    #[test]
    fn fast_tanh_is_within_5e7_of_tanh_and_keeps_nan() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 5e-5;
            worst = worst.max((tanh_f32_fast(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(worst < 5e-7, "max |fast - tanh| = {worst:e}");
        assert_eq!(tanh_f32_fast(100.0), tanh_f32_fast(7.905_311));
        assert!((tanh_f32_fast(f32::INFINITY) - 1.0).abs() < 1e-6);
        assert!((tanh_f32_fast(f32::NEG_INFINITY) + 1.0).abs() < 1e-6);
        assert!(tanh_f32_fast(f32::NAN).is_nan());
        let mut xs = [0.5f32, -3.0, f32::NAN];
        f32::tanh_in_place(&mut xs);
        assert!((xs[0] as f64 - 0.5f64.tanh()).abs() < 2e-7 && xs[2].is_nan());
        // The AVX2 build (where this CPU has it) and the baseline build agree to the last bit:
        // the same operations in the same order, no fused multiply-adds in `tanh_f32_fast`.
        let grid: Vec<f32> = (-1000..1000).map(|i| i as f32 * 0.0123).collect();
        let (mut fast, mut base) = (grid.clone(), grid);
        f32::tanh_in_place(&mut fast);
        tanh_slice_fast(&mut base);
        assert_eq!(fast, base);
        let mut ys = [0.5f64];
        f64::tanh_in_place(&mut ys);
        assert_eq!(ys[0], 0.5f64.tanh());
    }

    #[test]
    fn fast_exp_and_sigmoid_are_within_a_few_ulps_and_keep_nan() {
        let mut worst_exp = 0.0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let want = (x as f64).exp();
            worst_exp = worst_exp.max(((exp_neg_f32_fast(x) as f64) - want).abs() / want);
        }
        assert!(worst_exp < 3e-7, "max relative |fast exp - exp| = {worst_exp:e}");
        assert_eq!(exp_neg_f32_fast(0.0), 1.0);
        assert!(exp_neg_f32_fast(-1000.0) > 0.0 && exp_neg_f32_fast(-1000.0) < 1.2e-38);
        assert!(exp_neg_f32_fast(f32::NAN).is_nan());
        let mut worst = 0.0f64;
        for i in -800_000..=800_000 {
            let x = i as f32 * 1e-4;
            let want = sigmoid_f64(x as f64);
            worst = worst.max(((sigmoid_f32_fast(x) as f64) - want).abs() / want);
        }
        assert!(worst < 5e-7, "max relative |fast sigmoid - sigmoid| = {worst:e}");
        // Stable: no overflow to NaN at the ends, exact 0.5 at 0, NaN kept.
        assert_eq!(sigmoid_f32_fast(1000.0), 1.0);
        assert!(sigmoid_f32_fast(-1000.0) < 1.2e-38);
        assert_eq!(sigmoid_f32_fast(0.0), 0.5);
        assert!(sigmoid_f32_fast(f32::NAN).is_nan());
        assert_eq!(sigmoid_f64(1000.0), 1.0);
        assert_eq!(sigmoid_f64(-1000.0), 0.0);
        assert!(sigmoid_f64(f64::NAN).is_nan());
        // The f64 form against the textbook one where the latter is accurate.
        for x in [-30.0f64, -3.0, -0.5, 0.0, 0.5, 3.0, 30.0] {
            let textbook = 1.0 / (1.0 + (-x).exp());
            assert!((sigmoid_f64(x) - textbook).abs() <= 3e-16 * textbook, "{x}: {} vs {textbook}", sigmoid_f64(x));
        }
        // The slice kernels are the scalar functions; the AVX2 build agrees with the baseline.
        let grid: Vec<f32> = (-2000..2000).map(|i| i as f32 * 0.0123).collect();
        let (mut fast, mut base) = (grid.clone(), grid.clone());
        f32::sigmoid_in_place(&mut fast);
        sigmoid_slice_fast(&mut base);
        assert_eq!(fast, base);
        assert!(fast.iter().zip(&grid).all(|(&z, &x)| z == f32::sigmoid(x)));
        let mut ys = [-2.5f64, 0.25];
        f64::sigmoid_in_place(&mut ys);
        assert_eq!(ys, [sigmoid_f64(-2.5), sigmoid_f64(0.25)]);
        assert_eq!(f32::tanh_value(0.3), tanh_f32_fast(0.3));
        assert_eq!(f64::tanh_value(0.3), 0.3f64.tanh());
    }

    /// `PackedRhs::mul_into` against `Float::gemm` (matrixmultiply) with beta 0 and 1, on
    /// shapes that are not multiples of the 4 x NR tile, with a transposed B, a strided A and
    /// a C whose rows are not contiguous.
    fn check_packed<F: Float>(tol: f64) {
        let mut r = rng(7);
        for &(m, k, n) in
            &[(1usize, 1usize, 1usize), (3, 5, 7), (5, 17, 9), (32, 128, 128), (7, 33, 41), (10, 2, 17), (12, 3, 8)]
        {
            let a: Array2<F> = randn((m, k), 1.0, &mut r);
            let b: Array2<F> = randn((k, n), 1.0, &mut r);
            let c0: Array2<F> = randn((m, n), 1.0, &mut r);
            let mut want = c0.clone();
            F::gemm(F::one(), a.view(), b.view(), F::one(), want.view_mut());
            let scale = want.iter().fold(1.0f64, |s, v| s.max(v.to_f64c().abs()));
            let close = |got: &Array2<F>, want: &Array2<F>, what: &str| {
                let worst = got.iter().zip(want).fold(0.0f64, |w, (g, e)| w.max((g.to_f64c() - e.to_f64c()).abs()));
                assert!(worst <= tol * scale, "{} {what} ({m}, {k}, {n}): max diff {worst:e}", F::NAME);
            };
            let mut packed = PackedRhs::new(b.view());
            assert_eq!(packed.dim(), (k, n));
            let mut got = c0.clone();
            packed.mul_into(a.view(), F::one(), got.view_mut());
            close(&got, &want, "beta 1");
            // beta 0 ignores C, even NaN.
            let mut got = Array2::from_elem((m, n), F::nan());
            packed.mul_into(a.view(), F::zero(), got.view_mut());
            close(&got, &matmul(a.view(), b.view()), "beta 0");
            // B given as a transposed view, A as a transposed (column-major) copy.
            let bt = b.t().to_owned();
            let at = a.t().to_owned();
            let mut packed_t = PackedRhs::new(bt.t());
            let mut got = c0.clone();
            packed_t.mul_into(at.t(), F::one(), got.view_mut());
            close(&got, &want, "transposed operands");
            // C with non-contiguous rows (a transposed view).
            let mut ct = c0.t().to_owned();
            packed.mul_into(a.view(), F::one(), ct.view_mut().reversed_axes());
            close(&ct.t().to_owned(), &want, "column-major C");
            // The baseline (non-AVX) build of the kernel, which this machine would not pick.
            let mut got = c0.clone();
            let job = PackedJob { a: a.view(), zero_row: &packed.zero_row, k, beta: F::one(), simd: packed.simd };
            match packed.nr {
                32 => packed_kernel::<F, 32, false>(&job, &packed.panels, got.view_mut()),
                16 => packed_kernel::<F, 16, false>(&job, &packed.panels, got.view_mut()),
                _ => packed_kernel::<F, 8, false>(&job, &packed.panels, got.view_mut()),
            }
            close(&got, &want, "baseline kernel");
            // Shared out over threads: the same bits.
            let mut serial = c0.clone();
            packed.mul_into(a.view(), F::one(), serial.view_mut());
            for threads in [2, 3] {
                let mut par = c0.clone();
                let job = PackedJob { a: a.view(), zero_row: &packed.zero_row, k, beta: F::one(), simd: packed.simd };
                crate::parallel::tests::with_threads(threads, || {
                    packed_pieces(&job, &packed.panels, packed.nr, par.view_mut(), threads)
                });
                assert_eq!(par, serial, "{} ({m}, {k}, {n}) on {threads} threads", F::NAME);
            }
        }
        // Re-packing a new B into the same buffers, and the empty inner dimension.
        let b: Array2<F> = randn((6, 10), 1.0, &mut r);
        let a: Array2<F> = randn((3, 6), 1.0, &mut r);
        let mut packed = PackedRhs::new(Array2::<F>::zeros((4, 4)).view());
        packed.pack(b.view());
        let mut got = Array2::zeros((3, 10));
        packed.mul_into(a.view(), F::zero(), got.view_mut());
        let want = matmul(a.view(), b.view());
        assert!(got.iter().zip(&want).all(|(g, w)| (g.to_f64c() - w.to_f64c()).abs() <= tol * 10.0));
        let mut empty = PackedRhs::new(Array2::<F>::zeros((0, 3)).view());
        let mut c = Array2::from_elem((2, 3), F::nan());
        empty.mul_into(Array2::<F>::zeros((2, 0)).view(), F::zero(), c.view_mut());
        assert!(c.iter().all(|&v| v == F::zero()));
    }

    /// Every kernel build this CPU can run (AVX-512, AVX2 + FMA, baseline), each with its own
    /// panel width, against `Float::gemm`.
    fn check_every_build<F: Float>(tol: f64) {
        let mut levels = vec![Simd::Baseline];
        if simd() != Simd::Baseline {
            levels.push(Simd::Avx2Fma);
        }
        if simd() == Simd::Avx512 {
            levels.push(Simd::Avx512);
        }
        println!("{}: kernel builds checked: {levels:?}", F::NAME);
        let mut r = rng(17);
        for &(m, k, n) in &[(1usize, 3usize, 5usize), (7, 33, 41), (32, 128, 100), (13, 9, 70)] {
            let a: Array2<F> = randn((m, k), 1.0, &mut r);
            let b: Array2<F> = randn((k, n), 1.0, &mut r);
            let want = matmul(a.view(), b.view());
            let scale = want.iter().fold(1.0f64, |s, v| s.max(v.to_f64c().abs()));
            for &level in &levels {
                let mut packed = PackedRhs::for_simd(b.view(), level);
                assert_eq!(packed.nr * std::mem::size_of::<F>(), if level == Simd::Avx512 { 128 } else { 64 });
                let mut got = Array2::from_elem((m, n), F::nan());
                packed.mul_into(a.view(), F::zero(), got.view_mut());
                let worst = got.iter().zip(&want).fold(0.0f64, |w, (g, e)| w.max((g.to_f64c() - e.to_f64c()).abs()));
                assert!(worst <= tol * scale, "{} {level:?} ({m}, {k}, {n}): {worst:e}", F::NAME);
            }
        }
    }

    /// The kernel builds this CPU can run: baseline, and AVX2 + FMA and AVX-512 when present.
    fn builds() -> Vec<Simd> {
        let mut levels = vec![Simd::Baseline];
        if simd() != Simd::Baseline {
            levels.push(Simd::Avx2Fma);
        }
        if simd() == Simd::Avx512 {
            levels.push(Simd::Avx512);
        }
        levels
    }

    /// `gemm_rows` (every build, both modes, B with a row stride wider than N) against the
    /// triple loop, on shapes with partial tiles of rows and columns.
    fn check_gemm_rows<F: Float>(tol: f64) {
        let mut r = rng(23);
        for &(m, k, n) in &[(1usize, 1usize, 1usize), (8, 9, 784), (16, 72, 100), (7, 5, 33), (72, 16, 50), (13, 3, 31)]
        {
            let a: Array2<F> = randn((m, k), 1.0, &mut r);
            let ldb = n + 3;
            let b_wide: Array2<F> = randn((k, ldb), 1.0, &mut r);
            let b = b_wide.slice(ndarray::s![.., ..n]);
            let c0: Array2<F> = randn((m, n), 1.0, &mut r);
            let prod = naive(a.view(), b);
            let scale = prod.iter().fold(1.0f64, |s, v| s.max(v.to_f64c().abs()));
            for &level in &builds() {
                let mut got = vec![F::nan(); m * n];
                gemm_rows_for(
                    level,
                    a.as_slice().unwrap(),
                    b_wide.as_slice().unwrap(),
                    ldb,
                    (m, k, n),
                    &mut got,
                    false,
                );
                let worst = got.iter().zip(&prod).fold(0.0f64, |w, (g, e)| w.max((g.to_f64c() - e.to_f64c()).abs()));
                assert!(worst <= tol * scale, "{} {level:?} ({m}, {k}, {n}) overwrite: {worst:e}", F::NAME);
                let mut got = c0.as_slice().unwrap().to_vec();
                gemm_rows_for(level, a.as_slice().unwrap(), b_wide.as_slice().unwrap(), ldb, (m, k, n), &mut got, true);
                let want = &prod + &c0;
                let worst = got.iter().zip(&want).fold(0.0f64, |w, (g, e)| w.max((g.to_f64c() - e.to_f64c()).abs()));
                assert!(worst <= tol * scale, "{} {level:?} ({m}, {k}, {n}) accumulate: {worst:e}", F::NAME);
            }
        }
        // K = 0: C is zeroed, or left alone when accumulating.
        let mut c = vec![F::nan(); 6];
        gemm_rows::<F>(&[], &[], 3, (2, 0, 3), &mut c, false);
        assert!(c.iter().all(|&v| v == F::zero()));
    }

    #[test]
    fn gemm_rows_every_build_matches_the_triple_loop() {
        check_gemm_rows::<f32>(1e-5);
        check_gemm_rows::<f64>(1e-13);
    }

    /// `AbtSums` (every build) over several pairs against the triple loop, on shapes with
    /// partial tiles and row lengths that are not multiples of the vector width.
    fn check_abt<F: Float>(tol: f64) {
        let mut r = rng(29);
        for &(m, n, l) in &[(1usize, 1usize, 1usize), (8, 9, 784), (16, 72, 100), (5, 7, 37), (3, 2, 5)] {
            let pairs: Vec<(Array2<F>, Array2<F>)> =
                (0..3).map(|_| (randn((m, l), 1.0, &mut r), randn((n, l), 1.0, &mut r))).collect();
            let mut want = Array2::<F>::zeros((m, n));
            for (a, b) in &pairs {
                want = want + naive(a.view(), b.t());
            }
            let scale = want.iter().fold(1.0f64, |s, v| s.max(v.to_f64c().abs()));
            for &level in &builds() {
                let mut sums = AbtSums::for_simd(m, n, level);
                for (a, b) in &pairs {
                    sums.add(a.as_slice().unwrap(), b.as_slice().unwrap(), l);
                }
                let mut got = vec![F::nan(); m * n];
                sums.finish(&mut got);
                let worst = got.iter().zip(&want).fold(0.0f64, |w, (g, e)| w.max((g.to_f64c() - e.to_f64c()).abs()));
                assert!(worst <= tol * scale, "{} {level:?} ({m}, {n}, {l}): {worst:e}", F::NAME);
            }
        }
    }

    #[test]
    fn abt_sums_every_build_match_the_triple_loop() {
        check_abt::<f32>(1e-5);
        check_abt::<f64>(1e-13);
    }

    #[test]
    fn packed_rhs_every_kernel_build_matches_gemm() {
        check_every_build::<f32>(1e-5);
        check_every_build::<f64>(1e-13);
    }

    #[test]
    fn packed_rhs_matches_gemm_f64() {
        check_packed::<f64>(1e-13);
    }

    #[test]
    fn packed_rhs_matches_gemm_f32() {
        check_packed::<f32>(1e-5);
    }

    #[test]
    #[should_panic(expected = "PackedRhs::mul_into: A is (2, 5), the packed B is (4, 3)")]
    fn packed_rhs_rejects_a_mismatched_inner_dimension() {
        let mut packed = PackedRhs::new(Array2::<f64>::zeros((4, 3)).view());
        packed.mul_into(Array2::zeros((2, 5)).view(), 0.0, Array2::zeros((2, 3)).view_mut());
    }

    #[test]
    fn rng_is_reproducible() {
        let a: Array2<f32> = randn((3, 3), 1.0, &mut rng(42));
        let b: Array2<f32> = randn((3, 3), 1.0, &mut rng(42));
        assert_eq!(a, b);
        let mut p = permutation(10, &mut rng(3));
        p.sort();
        assert_eq!(p, (0..10).collect::<Vec<_>>());
    }
}
