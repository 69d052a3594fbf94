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

fn to_nalgebra(who: &str, w: &Array2<f64>) -> DMatrix<f64> {
    assert!(w.iter().all(|v| v.is_finite()), "{who}: the matrix has a NaN or infinite entry");
    DMatrix::from_fn(w.nrows(), w.ncols(), |i, j| w[[i, j]])
}

/// The spectral radius `max_i |lambda_i|` of a square matrix, complex eigenvalues included.
/// `w`: (H, H). An empty matrix has radius 0.
///
/// # Panics
/// If `w` is not square, has a NaN or infinite entry, or the Schur iteration does not
/// converge.
pub fn spectral_radius(w: &Array2<f64>) -> f64 {
    let (r, c) = w.dim();
    assert_eq!(r, c, "spectral_radius: the matrix is {r}x{c}, not square");
    if r == 0 {
        return 0.0;
    }
    let m = to_nalgebra("spectral_radius", w);
    let schur = nalgebra::linalg::Schur::try_new(m, f64::EPSILON, MAX_SCHUR_ITERATIONS)
        .unwrap_or_else(|| panic!("spectral_radius: the Schur iteration did not converge for a {r}x{r} matrix"));
    schur.complex_eigenvalues().iter().map(|z| z.norm()).fold(0.0, f64::max)
}

/// The largest singular value `||W||_2` of any matrix `w` (R, C). An empty matrix gives 0.
///
/// # Panics
/// If `w` has a NaN or infinite entry, or the SVD iteration does not converge.
pub fn largest_singular_value(w: &Array2<f64>) -> f64 {
    if w.is_empty() {
        return 0.0;
    }
    let m = to_nalgebra("largest_singular_value", w);
    let svd = nalgebra::linalg::SVD::try_new(m, false, false, f64::EPSILON, MAX_SCHUR_ITERATIONS)
        .unwrap_or_else(|| panic!("largest_singular_value: the SVD did not converge for a {:?} matrix", w.dim()));
    svd.singular_values.iter().copied().fold(0.0, f64::max)
}

/// Scale `w` (H, H) in place so that its spectral radius becomes `r` (the
/// `whh_radius` initialisation). Returns the radius it had before.
///
/// # Panics
/// If `r` is negative or not finite, if `w` has radius 0 (a nilpotent or zero matrix cannot
/// be scaled to a positive radius) while `r > 0`, or for the reasons of [`spectral_radius`].
pub fn scale_to_spectral_radius<F: Float>(w: &mut Array2<F>, r: f64) -> f64 {
    assert!(r.is_finite() && r >= 0.0, "scale_to_spectral_radius: target radius {r} is not a finite value >= 0");
    let rho = spectral_radius(&w.mapv(|v| v.to_f64c()));
    if r == 0.0 {
        w.fill(F::zero());
        return rho;
    }
    assert!(rho > 0.0, "scale_to_spectral_radius: the matrix has spectral radius 0 and cannot be scaled to {r}");
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
    #[should_panic(expected = "spectral radius 0")]
    fn scaling_a_nilpotent_matrix_panics() {
        let mut w = array![[0.0, 1.0], [0.0, 0.0]];
        scale_to_spectral_radius(&mut w, 1.0);
    }
}
