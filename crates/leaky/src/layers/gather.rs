//! Gather: pick one entry per row, `out[i] = q[i, idx[i]]` (NumPy's `Q[np.arange(N), a]`),
//! and its scatter backward. This is how a DQN reads Q(s, a) for the actions it took.

use crate::tensor::Float;
use ndarray::{Array1, Array2};

/// Cache of [`forward`]: the indices and the input shape.
#[derive(Clone, Debug)]
pub struct GatherCache {
    /// The picked column of each row, length N.
    pub idx: Vec<usize>,
    /// (N, A): rows and columns of the input.
    pub shape: (usize, usize),
}

/// Gather forward.
///
/// * `q`: (N, A)
/// * `idx`: length N, each < A
///
/// Returns `out`: (N,) with `out[i] = q[i, idx[i]]`.
pub fn forward<F: Float>(q: &Array2<F>, idx: &[usize]) -> (Array1<F>, GatherCache) {
    let (n, a) = q.dim();
    assert_eq!(idx.len(), n, "gather: {} indices for {} rows", idx.len(), n);
    let out = Array1::from_shape_fn(n, |i| {
        assert!(idx[i] < a, "gather: index {} out of range for {} columns (row {i})", idx[i], a);
        q[[i, idx[i]]]
    });
    (out, GatherCache { idx: idx.to_vec(), shape: (n, a) })
}

/// Gather backward (scatter): `dq[i, idx[i]] = dout[i]`, zero elsewhere.
///
/// * `dout`: (N,)
///
/// Returns `dq`: (N, A).
pub fn backward<F: Float>(dout: &Array1<F>, cache: &GatherCache) -> Array2<F> {
    let mut dq = Array2::zeros(cache.shape);
    for (i, &j) in cache.idx.iter().enumerate() {
        dq[[i, j]] += dout[i];
    }
    dq
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_array;
    use crate::layers::testutil::assert_good;
    use crate::tensor::{randn, rng};
    use ndarray::array;

    #[test]
    fn picks_and_scatters() {
        let q = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let (out, c) = forward(&q, &[1, 0, 1]);
        assert_eq!(out, array![2.0, 3.0, 6.0]);
        assert_eq!(backward(&array![10.0, 20.0, 30.0], &c), array![[0.0, 10.0], [20.0, 0.0], [0.0, 30.0]]);
    }

    #[test]
    fn gradient_check() {
        let mut r = rng(3);
        for (n, a) in [(1usize, 2usize), (6, 4)] {
            let q: Array2<f64> = randn((n, a), 1.0, &mut r);
            let idx: Vec<usize> = (0..n).map(|i| (i * 7 + 1) % a).collect();
            let dout: Array1<f64> = randn(n, 1.0, &mut r);
            let (_, c) = forward(&q, &idx);
            assert_good(&check_array("gather dq", |q| forward(q, &idx).0, &q, &dout, &backward(&dout, &c)));
        }
    }
}
