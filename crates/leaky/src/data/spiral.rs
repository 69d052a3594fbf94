//! CS231n's spiral data: K interleaved arms in the plane, not linearly separable.

use super::Dataset;
use crate::tensor::{linspace, randn, rng};
use ndarray::Array2;

/// The spiral data set of the CS231n notes ("Putting it together: minimal neural network
/// case study"): for class j, `r = linspace(0, 1, P)`,
/// `t = linspace(4j, 4(j+1), P) + noise * randn(P)` and each point is `r * [sin t, cos t]`.
/// CS231n uses P = 100, K = 3, noise = 0.2.
///
/// Returns `x`: (P*K, 2), `y`: P*K labels in class order (P zeros, then P ones, ...; use
/// [`Dataset::split`] to shuffle), `classes = K`, `feature_shape = [2]`, name `"spiral"`.
/// The same `seed` gives the same points. `noise` must be finite (a NaN would make
/// [`Dataset::validate`] fail); P or K of 0 gives an empty data set.
pub fn spiral(points_per_class: usize, classes: usize, noise: f64, seed: u64) -> Dataset {
    let p = points_per_class;
    let mut r = rng(seed);
    let mut x = Array2::<f32>::zeros((p * classes, 2));
    let mut y = Vec::with_capacity(p * classes);
    if p > 0 {
        let radius = linspace::<f64>(0.0, 1.0, p);
        for j in 0..classes {
            let lo = 4.0 * j as f64;
            let t = linspace::<f64>(lo, lo + 4.0, p) + randn::<f64, _>(p, noise, &mut r);
            for i in 0..p {
                x[[j * p + i, 0]] = (radius[i] * t[i].sin()) as f32;
                x[[j * p + i, 1]] = (radius[i] * t[i].cos()) as f32;
                y.push(j);
            }
        }
    }
    Dataset { name: "spiral".into(), x, y, classes, feature_shape: vec![2] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiral_shapes_labels_and_radius() {
        let ds = spiral(100, 3, 0.2, 0);
        ds.validate().unwrap();
        assert_eq!((ds.len(), ds.dim(), ds.classes), (300, 2, 3));
        assert_eq!(ds.feature_shape, vec![2]);
        assert_eq!(ds.y[..100], [0; 100]);
        assert_eq!(ds.y[200..], [2; 100]);
        // |x| = r exactly, whatever the angle noise: linspace(0, 1) within each class.
        for j in 0..3 {
            for i in 0..100 {
                let row = ds.x.row(j * 100 + i);
                let norm = (row[0] * row[0] + row[1] * row[1]).sqrt();
                assert!((norm - i as f32 / 99.0).abs() < 1e-5, "class {j} point {i}: |x| = {norm}");
            }
        }
    }

    #[test]
    fn spiral_without_noise_follows_the_formula() {
        let ds = spiral(5, 2, 0.0, 7);
        // Class 1, last point: r = 1, t = 8.
        let last = ds.x.row(9);
        assert!((last[0] - 8f32.sin()).abs() < 1e-6 && (last[1] - 8f32.cos()).abs() < 1e-6);
        // Class 0, second point: r = 0.25, t = 1.
        let p = ds.x.row(1);
        assert!((p[0] - 0.25 * 1f32.sin()).abs() < 1e-6 && (p[1] - 0.25 * 1f32.cos()).abs() < 1e-6);
    }

    #[test]
    fn spiral_is_seeded() {
        assert_eq!(spiral(50, 4, 0.2, 3).x, spiral(50, 4, 0.2, 3).x);
        assert_ne!(spiral(50, 4, 0.2, 3).x, spiral(50, 4, 0.2, 4).x);
        assert!(spiral(0, 3, 0.2, 0).is_empty());
        assert!(spiral(10, 0, 0.2, 0).is_empty());
    }
}
