//! Word embedding with CS231n's `rnn_layers.py` semantics: a lookup of one row per word id,
//! and its backward pass, a scatter-add.
//!
//! Dimension letters: N = batch, T = time steps, V = vocabulary size, D = embedding size.

use crate::tensor::Float;
use ndarray::{s, Array2, Array3};

/// What [`embedding_backward`] needs from [`embedding_forward`].
#[derive(Clone, Debug)]
pub struct EmbeddingCache {
    /// The word ids, (N, T).
    pub x: Array2<usize>,
    /// The vocabulary size V.
    pub vocab: usize,
}

/// Word embedding (CS231n `word_embedding_forward`): `out[n, t, :] = w[x[n, t], :]`.
///
/// * `x`: (N, T) word ids, each `< V`
/// * `w`: (V, D) one row per word
///
/// Returns `out`: (N, T, D) and the cache.
///
/// # Panics
/// If an id is `>= V`; the message names the id and its position (n, t).
pub fn embedding_forward<F: Float>(x: &Array2<usize>, w: &Array2<F>) -> (Array3<F>, EmbeddingCache) {
    let (n, t_len) = x.dim();
    let (v, d) = w.dim();
    let mut out = Array3::zeros((n, t_len, d));
    for ((i, t), &id) in x.indexed_iter() {
        assert!(
            id < v,
            "embedding_forward: id {id} at position (n = {i}, t = {t}) is out of range for a vocabulary of {v}"
        );
        out.slice_mut(s![i, t, ..]).assign(&w.row(id));
    }
    (out, EmbeddingCache { x: x.clone(), vocab: v })
}

/// Word embedding backward: `dw[v] = sum of dout[n, t, :] over every (n, t) with x[n, t] = v`
/// (a scatter-add: a repeated id accumulates). The ids themselves get no gradient.
///
/// * `dout`: (N, T, D)
///
/// Returns `dw`: (V, D).
pub fn embedding_backward<F: Float>(dout: &Array3<F>, cache: &EmbeddingCache) -> Array2<F> {
    let (n, t_len, d) = dout.dim();
    assert_eq!(
        (n, t_len),
        cache.x.dim(),
        "embedding_backward: dout is {:?}, the ids are {:?}",
        dout.dim(),
        cache.x.dim()
    );
    let mut dw = Array2::zeros((cache.vocab, d));
    for ((i, t), &id) in cache.x.indexed_iter() {
        let mut row = dw.row_mut(id);
        row += &dout.slice(s![i, t, ..]);
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_array, rel_error};
    use crate::layers::rnn::tests::assert_smooth;
    use crate::tensor::{randn, rng};
    use ndarray::{array, Array};

    #[test]
    fn embedding_forward_picks_rows() {
        let w = array![[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]];
        let x = array![[2usize, 0, 2], [1, 1, 0]];
        let (out, _) = embedding_forward(&x, &w);
        let want =
            Array::from_shape_vec((2, 3, 2), vec![4.0, 5.0, 0.0, 1.0, 4.0, 5.0, 2.0, 3.0, 2.0, 3.0, 0.0, 1.0]).unwrap();
        assert_eq!(out, want);
    }

    #[test]
    fn embedding_gradients_accumulate_repeated_ids() {
        let mut r = rng(10);
        for (x, v) in [(array![[3usize, 1, 3, 3, 0]], 5usize), (array![[0usize, 4, 2, 4, 1, 0], [4, 4, 3, 0, 2, 2]], 6)]
        {
            let (n, t) = x.dim();
            let w: Array2<f64> = randn((v, 3), 1.0, &mut r);
            let dout: Array3<f64> = randn((n, t, 3), 1.0, &mut r);
            let (_, cache) = embedding_forward(&x, &w);
            let dw = embedding_backward(&dout, &cache);
            assert_smooth(&check_array("embedding dw", |w| embedding_forward(&x, w).0, &w, &dout, &dw));
            // Id 3 of the first case appears three times: its row is the sum of three rows.
            if n == 1 {
                let want = &dout.slice(s![0, 0, ..]) + &dout.slice(s![0, 2, ..]) + dout.slice(s![0, 3, ..]);
                assert!(rel_error(&dw.row(3).to_owned(), &want) < 1e-15);
                assert!(dw.row(2).iter().all(|&g| g == 0.0), "unused id 2 gets no gradient");
            }
        }
    }

    #[test]
    #[should_panic(expected = "id 7 at position (n = 1, t = 0) is out of range for a vocabulary of 5")]
    fn embedding_rejects_an_out_of_range_id() {
        let w: Array2<f64> = Array2::zeros((5, 2));
        embedding_forward(&array![[0usize, 1], [7, 2]], &w);
    }
}
