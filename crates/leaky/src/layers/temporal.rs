//! The per-time-step output layers of CS231n's `rnn_layers.py`: the temporal affine layer
//! (one affine map applied at every step) and the masked temporal softmax loss.
//!
//! Dimension letters: N = batch, T = time steps, D = input features, M = output features,
//! V = vocabulary size (classes).

use crate::tensor::{matmul, matmul_acc, Float};
use ndarray::{s, Array1, Array2, Array3, Axis, CowArray, Ix2, Zip};

// ---------------------------------------------------------------------------------------
// temporal affine
// ---------------------------------------------------------------------------------------

/// What [`temporal_affine_backward`] needs from [`temporal_affine_forward`].
#[derive(Clone, Debug)]
pub struct TemporalAffineCache<F> {
    /// The input, (N, T, D).
    pub x: Array3<F>,
}

/// View (A, B, C) as (A*B, C), copying only if `a` is not in standard layout.
fn rows<F: Float>(a: &Array3<F>) -> CowArray<'_, F, Ix2> {
    let (p, q, r) = a.dim();
    match a.view().into_shape_with_order((p * q, r)) {
        Ok(v) => v.into(),
        Err(_) => a.as_standard_layout().into_owned().into_shape_with_order((p * q, r)).expect("contiguous").into(),
    }
}

/// The same affine map at every time step (CS231n `temporal_affine_forward`):
/// `out[n, t, :] = x[n, t, :] w + b`.
///
/// * `x`: (N, T, D), `w`: (D, M), `b`: (M,)
///
/// Returns `out`: (N, T, M) and the cache. Panics on mismatched shapes.
pub fn temporal_affine_forward<F: Float>(
    x: &Array3<F>,
    w: &Array2<F>,
    b: &Array1<F>,
) -> (Array3<F>, TemporalAffineCache<F>) {
    let (n, t_len, d) = x.dim();
    assert_eq!(w.nrows(), d, "temporal_affine_forward: input has {d} features, weight expects {}", w.nrows());
    assert_eq!(
        b.len(),
        w.ncols(),
        "temporal_affine_forward: weight has {} columns but bias has {}",
        w.ncols(),
        b.len()
    );
    let mut out = Array2::from_shape_fn((n * t_len, w.ncols()), |(_, j)| b[j]);
    matmul_acc(rows(x).view(), w.view(), out.view_mut());
    let out = out.into_shape_with_order((n, t_len, w.ncols())).expect("contiguous reshape");
    (out, TemporalAffineCache { x: x.clone() })
}

/// Temporal affine backward.
///
/// * `dout`: (N, T, M); `w`: (D, M) as in the forward pass
///
/// Returns `(dx, dw, db)`: (N, T, D), (D, M), (M,).
pub fn temporal_affine_backward<F: Float>(
    dout: &Array3<F>,
    cache: &TemporalAffineCache<F>,
    w: &Array2<F>,
) -> (Array3<F>, Array2<F>, Array1<F>) {
    let (n, t_len, d) = cache.x.dim();
    assert_eq!(dout.dim(), (n, t_len, w.ncols()), "temporal_affine_backward: dout is {:?}", dout.dim());
    let dout2 = rows(dout);
    let dx = matmul(dout2.view(), w.t()).into_shape_with_order((n, t_len, d)).expect("contiguous reshape");
    let dw = matmul(rows(&cache.x).t(), dout2.view());
    let db = dout2.sum_axis(Axis(0));
    (dx, dw, db)
}

// ---------------------------------------------------------------------------------------
// temporal softmax loss
// ---------------------------------------------------------------------------------------

/// Softmax cross-entropy at every time step, counting only the steps where `mask` is true
/// (CS231n `temporal_softmax_loss`):
///
/// ```text
/// loss = -1/N sum_{n, t: mask[n, t]} log softmax(x[n, t, :])[y[n, t]]
/// dx[n, t, :] = mask[n, t] (softmax(x[n, t, :]) - onehot(y[n, t])) / N
/// ```
///
/// It divides by the batch size N, **not** by the number of unmasked tokens, as CS231n.
///
/// * `x`: (N, T, V) scores, `y`: (N, T) targets, `mask`: (N, T)
///
/// Returns the loss and `dx`: (N, T, V).
///
/// # Panics
/// If the shapes differ, or a target `y[n, t] >= V` (masked-out targets included, as in
/// CS231n, where they index the scores too).
pub fn temporal_softmax_loss<F: Float>(x: &Array3<F>, y: &Array2<usize>, mask: &Array2<bool>) -> (F, Array3<F>) {
    let (n, t_len, v) = x.dim();
    assert_eq!(y.dim(), (n, t_len), "temporal_softmax_loss: y is {:?}, the scores are {:?}", y.dim(), x.dim());
    assert_eq!(mask.dim(), (n, t_len), "temporal_softmax_loss: mask is {:?}, the scores are {:?}", mask.dim(), x.dim());
    let nf = F::from_usize(n.max(1)).expect("batch size fits the float type");
    let mut dx = Array3::zeros((n, t_len, v));
    let mut loss = F::zero();
    for ((i, t), &yt) in y.indexed_iter() {
        assert!(
            yt < v,
            "temporal_softmax_loss: target {yt} at position (n = {i}, t = {t}) is out of range for {v} classes"
        );
        if !mask[[i, t]] {
            continue;
        }
        let scores = x.slice(s![i, t, ..]);
        // Shifting by the max keeps exp from overflowing and leaves softmax unchanged.
        let max = scores.fold(F::neg_infinity(), |m, &s| m.max(s));
        let mut row = dx.slice_mut(s![i, t, ..]);
        Zip::from(&mut row).and(&scores).for_each(|p, &s| *p = (s - max).exp());
        let sum = row.sum();
        loss -= scores[yt] - max - sum.ln();
        row.mapv_inplace(|e| e / sum / nf);
        row[yt] -= F::one() / nf;
    }
    (loss / nf, dx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_array, check_scalar, rel_error};
    use crate::layers::rnn::tests::assert_smooth;
    use crate::tensor::{randn, rng};
    use ndarray::array;

    #[test]
    fn temporal_affine_gradients() {
        let mut r = rng(11);
        for &(n, t, d, m) in &[(1usize, 5usize, 3usize, 4usize), (3, 6, 4, 2)] {
            let x: Array3<f64> = randn((n, t, d), 1.0, &mut r);
            let w: Array2<f64> = randn((d, m), 1.0, &mut r);
            let b: Array1<f64> = randn(m, 1.0, &mut r);
            let dout: Array3<f64> = randn((n, t, m), 1.0, &mut r);
            let (out, cache) = temporal_affine_forward(&x, &w, &b);
            let (dx, dw, db) = temporal_affine_backward(&dout, &cache, &w);
            let want = matmul(x.slice(s![n - 1, 2..3, ..]), w.view()).row(0).to_owned() + &b;
            assert!(rel_error(&out.slice(s![n - 1, 2, ..]).to_owned(), &want) < 1e-14);
            assert_smooth(&check_array("temporal_affine dx", |x| temporal_affine_forward(x, &w, &b).0, &x, &dout, &dx));
            assert_smooth(&check_array("temporal_affine dw", |w| temporal_affine_forward(&x, w, &b).0, &w, &dout, &dw));
            assert_smooth(&check_array("temporal_affine db", |b| temporal_affine_forward(&x, &w, b).0, &b, &dout, &db));
        }
    }

    #[test]
    fn temporal_affine_takes_a_non_contiguous_input() {
        let mut r = rng(15);
        let xt: Array3<f64> = randn((4, 2, 3), 1.0, &mut r);
        let x = xt.permuted_axes([1, 0, 2]);
        assert!(!x.is_standard_layout());
        let w: Array2<f64> = randn((3, 2), 1.0, &mut r);
        let b: Array1<f64> = randn(2, 1.0, &mut r);
        let (out, cache) = temporal_affine_forward(&x, &w, &b);
        let (want, _) = temporal_affine_forward(&x.as_standard_layout().into_owned(), &w, &b);
        assert_eq!(out, want);
        let (dx, _, _) = temporal_affine_backward(&out, &cache, &w);
        assert_eq!(dx.dim(), (2, 4, 3));
    }

    #[test]
    fn temporal_softmax_loss_gradients_with_a_mask() {
        let mut r = rng(12);
        for &(n, t, v) in &[(1usize, 5usize, 4usize), (3, 6, 5)] {
            let x: Array3<f64> = randn((n, t, v), 1.0, &mut r);
            let y = Array2::from_shape_fn((n, t), |(i, j)| (3 * i + 2 * j + 1) % v);
            let mask = Array2::from_shape_fn((n, t), |(i, j)| (i + j) % 3 != 1);
            assert!(mask.iter().any(|&m| !m));
            let (_, dx) = temporal_softmax_loss(&x, &y, &mask);
            assert_smooth(&check_scalar(
                "temporal_softmax_loss dx",
                |x| temporal_softmax_loss(x, &y, &mask).0,
                &x,
                &dx,
            ));
            // Masked-out steps get exactly no gradient.
            for ((i, j), &m) in mask.indexed_iter() {
                assert_eq!(dx.slice(s![i, j, ..]).iter().all(|&g| g == 0.0), !m);
            }
        }
    }

    /// CS231n's sanity checks: uniform scores give ln V per counted token, divided by N.
    #[test]
    fn temporal_softmax_loss_divides_by_n_not_by_the_token_count() {
        let (n, t, v) = (4usize, 5usize, 10usize);
        let x = Array3::<f64>::zeros((n, t, v));
        let y = Array2::from_shape_fn((n, t), |(i, j)| (i + j) % v);
        let all = Array2::from_elem((n, t), true);
        let (loss, _) = temporal_softmax_loss(&x, &y, &all);
        assert!((loss - t as f64 * (v as f64).ln()).abs() < 1e-12, "{loss}");
        let mask = Array2::from_shape_fn((n, t), |(i, j)| i == 0 && j < 3);
        let (loss, _) = temporal_softmax_loss(&x, &y, &mask);
        assert!((loss - 3.0 * (v as f64).ln() / n as f64).abs() < 1e-12, "{loss}");
    }

    #[test]
    #[should_panic(expected = "target 4 at position (n = 0, t = 1) is out of range for 4 classes")]
    fn temporal_softmax_loss_rejects_an_out_of_range_target() {
        let x = Array3::<f64>::zeros((1, 2, 4));
        temporal_softmax_loss(&x, &array![[0usize, 4]], &array![[true, false]]);
    }
}
