//! The spectral-radius instrument for recurrent weights.
//!
//! Back through time a vanilla RNN multiplies its gradient by `diag(1 - h^2) Wh^T` once per
//! step, so over many steps the gradient shrinks or grows roughly like `rho(Wh)^t`, where
//! the spectral radius `rho(W) = max |lambda_i(W)|` is the largest eigenvalue modulus.
//! `Wh` is not symmetric, so its eigenvalues come in complex conjugate pairs: they are
//! read off the real Schur form computed by `nalgebra` (a maintained, pure-Rust linear
//! algebra crate; only these instruments use it, matrix products still go through
//! [`crate::tensor::matmul`]).
//!
//! The largest singular value `sigma_max(W) = ||W||_2 >= rho(W)` bounds the growth of a
//! single step; `rho` governs the long run (Gelfand: `||W^k||^(1/k) -> rho(W)`). A nilpotent
//! matrix has `rho = 0` whatever its norm.

use crate::tensor::Float;
use nalgebra::DMatrix;
use ndarray::Array2;

/// Iteration cap of the Schur decomposition (total QR sweeps), far above what a
/// well-behaved matrix needs (a few per eigenvalue).
const MAX_SCHUR_ITERATIONS: usize = 100_000;

/// `w / m` for nalgebra, with `m = max |w_ij|`, or `None` when an entry is NaN or infinite
/// (the decompositions would not converge, or converge to garbage). Both instruments are
/// homogeneous (`rho(c W) = c rho(W)`), and scaling to entries in [-1, 1] keeps the QR
/// sweeps away from overflow (`whh_radius = 1e300`) and from subnormal numbers, which keep
/// them from meeting their convergence test (`whh_radius = 1e-45` in f32). `m = 0` is the
/// zero matrix.
fn to_nalgebra(w: &Array2<f64>) -> Option<(DMatrix<f64>, f64)> {
    if !w.iter().all(|v| v.is_finite()) {
        return None;
    }
    let m = w.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let k = if m > 0.0 { m } else { 1.0 };
    Some((DMatrix::from_fn(w.nrows(), w.ncols(), |i, j| w[[i, j]] / k), m))
}

/// `m * x`, NaN when that is not finite.
fn unscale(x: f64, m: f64) -> f64 {
    let v = x * m;
    if v.is_finite() {
        v
    } else {
        f64::NAN
    }
}

/// The spectral radius `max_i |lambda_i|` of a square matrix, complex eigenvalues included.
/// `w`: (H, H). An empty matrix has radius 0.
///
/// NaN when the radius cannot be measured: `w` has a NaN or infinite entry (a diverged
/// network), or the Schur iteration does not converge. A caller reporting the radius
/// should treat NaN as "not measured", never as a number.
///
/// # Panics
/// If `w` is not square (a programming error, not an input).
pub fn spectral_radius(w: &Array2<f64>) -> f64 {
    let (r, c) = w.dim();
    assert_eq!(r, c, "spectral_radius: the matrix is {r}x{c}, not square");
    if r == 0 {
        return 0.0;
    }
    let Some((a, m)) = to_nalgebra(w) else { return f64::NAN };
    if m == 0.0 {
        return 0.0;
    }
    match nalgebra::linalg::Schur::try_new(a, f64::EPSILON, MAX_SCHUR_ITERATIONS) {
        Some(schur) => unscale(schur.complex_eigenvalues().iter().map(|z| z.norm()).fold(0.0, f64::max), m),
        None => f64::NAN,
    }
}

/// The largest singular value `||W||_2` of any matrix `w` (R, C). An empty matrix gives 0.
///
/// NaN when it cannot be measured: `w` has a NaN or infinite entry, or the SVD does not
/// converge (as for [`spectral_radius`]).
pub fn largest_singular_value(w: &Array2<f64>) -> f64 {
    if w.is_empty() {
        return 0.0;
    }
    let Some((a, m)) = to_nalgebra(w) else { return f64::NAN };
    if m == 0.0 {
        return 0.0;
    }
    match nalgebra::linalg::SVD::try_new(a, false, false, f64::EPSILON, MAX_SCHUR_ITERATIONS) {
        Some(svd) => unscale(svd.singular_values.iter().copied().fold(0.0, f64::max), m),
        None => f64::NAN,
    }
}

/// Scale `w` (H, H) in place so that its spectral radius becomes `r` (the
/// `whh_radius` initialisation). Returns the radius it had before.
///
/// `w` is left unchanged when it cannot be scaled: `r` is negative or not finite, `w`'s
/// radius is 0 (a nilpotent or zero matrix has no direction to scale) while `r > 0`, or its
/// radius is NaN (see [`spectral_radius`]). The return value (0 or NaN, or a valid radius
/// with an invalid `r`) lets the caller tell; configuration validation should refuse such
/// an `r` before it gets here. The scaled entries can overflow `F` for an absurd `r`.
///
/// # Panics
/// If `w` is not square.
pub fn scale_to_spectral_radius<F: Float>(w: &mut Array2<F>, r: f64) -> f64 {
    let rho = spectral_radius(&w.mapv(|v| v.to_f64c()));
    if !(r.is_finite() && r >= 0.0) {
        return rho;
    }
    if r == 0.0 {
        w.fill(F::zero());
        return rho;
    }
    if rho.is_nan() || rho <= 0.0 {
        return rho;
    }
    let k = F::from_f64c(r / rho);
    w.mapv_inplace(|v| v * k);
    rho
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{matmul, randn, rng};
    use ndarray::array;

    #[test]
    fn rotation_by_30_degrees_scaled_by_r_has_radius_r() {
        // Eigenvalues r e^{+-i pi/6}: a complex pair, no real eigenvalue at all.
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        for r in [0.5, 1.0, 1.7] {
            let w = array![[c, -s], [s, c]] * r;
            let rho = spectral_radius(&w);
            let sigma = largest_singular_value(&w);
            println!("rotation(30deg) * {r}: spectral radius {rho:.17}, largest singular value {sigma:.17}");
            assert!((rho - r).abs() < 1e-14 * r, "radius {rho}, expected {r}");
            // A scaled rotation is normal: its norm equals its radius.
            assert!((sigma - r).abs() < 1e-14 * r, "sigma {sigma}, expected {r}");
        }
    }

    #[test]
    fn nilpotent_matrix_has_radius_zero_but_not_norm_zero() {
        let w = array![[0.0, 2.0, -1.0, 3.0], [0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0]];
        let rho = spectral_radius(&w);
        let sigma = largest_singular_value(&w);
        println!("nilpotent 4x4: spectral radius {rho:e}, largest singular value {sigma}");
        assert!(rho < 1e-12, "radius {rho}");
        assert!(sigma > 4.0, "sigma {sigma}");
    }

    #[test]
    fn diagonal_matrix() {
        let w = Array2::from_diag(&array![0.5, -1.5, 1.2, 0.0]);
        let rho = spectral_radius(&w);
        println!("diag(0.5, -1.5, 1.2, 0): spectral radius {rho}");
        assert!((rho - 1.5).abs() < 1e-15);
        assert!((largest_singular_value(&w) - 1.5).abs() < 1e-15);
    }

    #[test]
    fn singular_value_of_a_literal() {
        // W^T W = [[25, 20], [20, 25]] has eigenvalues 45 and 5.
        let w = array![[3.0, 0.0], [4.0, 5.0]];
        assert!((largest_singular_value(&w) - 45f64.sqrt()).abs() < 1e-14);
        // Eigenvalues 3 and 5 (triangular).
        assert!((spectral_radius(&w) - 5.0).abs() < 1e-14);
        // Non-square.
        assert!((largest_singular_value(&array![[3.0, 4.0]]) - 5.0).abs() < 1e-14);
    }

    /// Gelfand's formula, an independent check of the eigenvalues: `||W^k||_F^(1/k) -> rho`.
    #[test]
    fn random_matrices_agree_with_gelfand() {
        let mut r = rng(11);
        for n in [3usize, 5, 8] {
            let w: Array2<f64> = randn((n, n), 1.0, &mut r);
            let rho = spectral_radius(&w);
            assert!(rho <= largest_singular_value(&w) * (1.0 + 1e-12));
            // Normalise by rho each step so the power neither overflows nor underflows.
            let wn = &w / rho;
            let mut p = Array2::eye(n);
            let k = 400;
            for _ in 0..k {
                p = matmul(p.view(), wn.view());
            }
            let frob = p.iter().map(|v| v * v).sum::<f64>().sqrt();
            // ||(W/rho)^k||^(1/k) -> 1; the constant and polynomial factors fade as 1/k.
            let g = frob.powf(1.0 / k as f64);
            println!("random {n}x{n}: spectral radius {rho:.12}, Gelfand estimate {:.12}", g * rho);
            assert!((g - 1.0).abs() < 0.02, "n = {n}: Gelfand ratio {g}");
        }
    }

    #[test]
    fn scaling_sets_the_radius() {
        let mut w: Array2<f64> = randn((6, 6), 1.0, &mut rng(3));
        let before = scale_to_spectral_radius(&mut w, 0.9);
        assert!(before > 0.0);
        assert!((spectral_radius(&w) - 0.9).abs() < 1e-12);
        let mut w32: Array2<f32> = randn((6, 6), 1.0, &mut rng(3));
        scale_to_spectral_radius(&mut w32, 1.1);
        assert!((spectral_radius(&w32.mapv(f64::from)) - 1.1).abs() < 1e-5);
    }

    #[test]
    fn scaling_a_nilpotent_matrix_leaves_it_unchanged() {
        let mut w = array![[0.0, 1.0], [0.0, 0.0]];
        assert_eq!(scale_to_spectral_radius(&mut w, 1.0), 0.0);
        assert_eq!(w, array![[0.0, 1.0], [0.0, 0.0]]);
        // An invalid target leaves it unchanged too, and returns the radius it has.
        let mut w = array![[2.0, 0.0], [0.0, 1.0]];
        assert_eq!(scale_to_spectral_radius(&mut w, f64::NAN), 2.0);
        assert_eq!(scale_to_spectral_radius(&mut w, -1.0), 2.0);
        assert_eq!(w, array![[2.0, 0.0], [0.0, 1.0]]);
    }

    /// Non-finite or denormal matrices (a diverged RNN, `whh_radius = 1e39` in f32,
    /// `whh_radius = 1e-45`) give NaN or a number, never a panic.
    #[test]
    fn non_finite_and_tiny_matrices_do_not_panic() {
        let w: Array2<f64> = randn((8, 8), 1.0, &mut rng(1));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut m = w.clone();
            m[[3, 4]] = bad;
            assert!(spectral_radius(&m).is_nan());
            assert!(largest_singular_value(&m).is_nan());
            let mut m32 = m.mapv(|v| v as f32);
            assert!(scale_to_spectral_radius(&mut m32, 1.0).is_nan());
        }
        // Huge and subnormal entries are measured (the instruments are homogeneous).
        let rho = spectral_radius(&w);
        let huge = &w * 1e300;
        assert!((spectral_radius(&huge) / (rho * 1e300) - 1.0).abs() < 1e-9);
        let tiny = w.mapv(|v| v * 1e-310);
        let r = spectral_radius(&tiny);
        assert!((r / (rho * 1e-310) - 1.0).abs() < 1e-3, "{r}"); // subnormals keep ~4 digits
        assert_eq!(spectral_radius(&Array2::zeros((3, 3))), 0.0);
        assert_eq!(largest_singular_value(&Array2::zeros((3, 2))), 0.0);
        let mut w32: Array2<f32> = randn((16, 16), 1.0, &mut rng(2));
        scale_to_spectral_radius(&mut w32, 1e-45);
        let r = spectral_radius(&w32.mapv(f64::from));
        assert!(r.is_finite(), "{r}");
        let mut w32: Array2<f32> = randn((16, 16), 1.0, &mut rng(2));
        scale_to_spectral_radius(&mut w32, 1e39);
        assert!(spectral_radius(&w32.mapv(f64::from)).is_nan());
    }
}
