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
//! not two), it is pure Rust with runtime AVX/FMA dispatch, and on the sizes `leaky`
//! trains (M = batch 32..256, K and N = 64..1024) the `gemm` crate (0.19, single-threaded)
//! was no faster in `benches/gemm.rs` (see BENCHMARKS.md): on the f32 MLP forward and
//! transposed-operand backward products the median time ratio matrixmultiply/gemm was
//! 0.81..1.08 over four runs (geometric mean over all shapes 0.94..0.99; above 1 would favour
//! gemm) on a 2-core AVX2+FMA AMD EPYC, while `gemm` adds 28 crates to the dependency tree
//! and about two minutes of clean build time.

use ndarray::{Array, Array1, Array2, ArrayView2, ArrayViewMut2, Dimension, IxDyn, ShapeBuilder};
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
    fn gemm(alpha: Self, a: ArrayView2<Self>, b: ArrayView2<Self>, beta: Self, c: ArrayViewMut2<Self>);

    /// `tanh` of every element of `xs`, in place. `f64` calls `f64::tanh` (exact to the
    /// last bit, for gradient checks); `f32` uses [`tanh_f32_fast`], a rational
    /// approximation the compiler vectorises, within 5e-7 of `tanh`.
    fn tanh_in_place(xs: &mut [Self]);
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

fn tanh_slice_fast(xs: &mut [f32]) {
    for v in xs {
        *v = tanh_f32_fast(*v);
    }
}

macro_rules! impl_float {
    ($t:ty, $name:literal, $gemm:path, $tanh:path) => {
        impl Float for $t {
            const NAME: &'static str = $name;

            #[inline]
            fn tanh_in_place(xs: &mut [Self]) {
                $tanh(xs)
            }

            #[inline]
            fn from_f64c(v: f64) -> Self {
                v as $t
            }

            #[inline]
            fn to_f64c(self) -> f64 {
                self as f64
            }

            fn gemm(alpha: Self, a: ArrayView2<Self>, b: ArrayView2<Self>, beta: Self, mut c: ArrayViewMut2<Self>) {
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

impl_float!(f32, "f32", matrixmultiply::sgemm, tanh_slice_fast);
impl_float!(f64, "f64", matrixmultiply::dgemm, tanh_slice_std);

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
        let mut ys = [0.5f64];
        f64::tanh_in_place(&mut ys);
        assert_eq!(ys[0], 0.5f64.tanh());
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
