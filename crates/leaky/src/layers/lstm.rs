//! The LSTM with CS231n's `rnn_layers.py` semantics (gate order i, f, o, g; `c0 = 0` over a
//! sequence).
//!
//! Dimension letters: N = batch, T = time steps, D = input features, H = hidden size.
//!
//! ```text
//! a = x Wx + prev_h Wh + b                                               (N, 4H)
//! i, f, o, g = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o), tanh(a_g)
//! next_c = f * prev_c + i * g ;  next_h = o * tanh(next_c)
//! ```
//!
//! The affine map and its backward pass are shared with the vanilla RNN
//! ([`crate::layers::rnn`], whose module docs also describe the backward-through-time
//! instrument [`lstm_backward_with_norms`] returns).

use crate::layers::activation::{sigmoid_backprop, tanh_backprop};
use crate::layers::rnn::{
    affine_into, check_shapes, input_projection, sequence_weight_grads, SequenceGrads, StepInputGrads, WeightGrads,
};
use crate::tensor::{matmul, Float, PackedRhs};
use ndarray::{s, Array1, Array2, Array3, Zip};
use rayon::prelude::*;

/// `(dx, dprev_h, dprev_c, dwx, dwh, db)` of one LSTM step: (N, D), (N, H), (N, H), (D, 4H),
/// (H, 4H), (4H,).
pub type LstmStepGrads<F> = (Array2<F>, Array2<F>, Array2<F>, Array2<F>, Array2<F>, Array1<F>);

/// One LSTM cell on one row: the kernel that [`lstm_step_forward`] and [`lstm_forward`]
/// both run. `a` (4H) holds the pre-activations `[a_i, a_f, a_o, a_g]` and is overwritten
/// with the activated gates (sigmoid on i, f, o and tanh on g: the activation layers' slice
/// kernels [`Float::sigmoid_in_place`] and [`Float::tanh_in_place`]); then
/// `c = f * prev_c + i * g` (`prev_c = None` is the zero cell `c0`), `tanh_c = tanh(c)` and
/// `h = o * tanh_c`. `prev_c`, `c`, `tanh_c`, `h`: (H,).
fn lstm_cell_row<F: Float>(a: &mut [F], prev_c: Option<&[F]>, c: &mut [F], tanh_c: &mut [F], h: &mut [F]) {
    let hh = c.len();
    let (sig, g) = a[..4 * hh].split_at_mut(3 * hh);
    F::sigmoid_in_place(sig);
    F::tanh_in_place(g);
    let (i, rest) = a[..4 * hh].split_at(hh);
    let (f, rest) = rest.split_at(hh);
    let (o, g) = rest.split_at(hh);
    let (tanh_c, h) = (&mut tanh_c[..hh], &mut h[..hh]);
    match prev_c {
        None => {
            for k in 0..hh {
                c[k] = i[k] * g[k];
            }
        }
        Some(prev_c) => {
            let prev_c = &prev_c[..hh];
            for k in 0..hh {
                c[k] = f[k] * prev_c[k] + i[k] * g[k];
            }
        }
    }
    tanh_c.copy_from_slice(c);
    F::tanh_in_place(tanh_c);
    for k in 0..hh {
        h[k] = o[k] * tanh_c[k];
    }
}

/// One LSTM cell backward on one row, the kernel that [`lstm_step_backward`] and
/// [`lstm_backward_with_norms`] both run: given the total gradients into `next_h` and
/// `next_c`, write `da` (4H, the gradient of the pre-activations) and `dprev_c` (H):
///
/// ```text
/// dc      = dnext_c + dnext_h * o * (1 - tanh_c^2)      (next_h = o tanh(c) also depends on c)
/// do      = dnext_h * tanh_c
/// di = dc * g ;  df = dc * prev_c ;  dg = dc * i ;  dprev_c = dc * f
/// da_i = di i (1 - i) ;  da_f = df f (1 - f) ;  da_o = do o (1 - o) ;  da_g = dg (1 - g^2)
/// ```
///
/// The local gradients are the activation layers' ([`sigmoid_backprop`], [`tanh_backprop`]).
/// `dnext_h`, `dnext_c`, `prev_c`, `tanh_c`, `dprev_c`: (H,); `gates`, `da`: (4H,) in the
/// order i, f, o, g.
fn lstm_cell_backward_row<F: Float>(
    dnext_h: &[F],
    dnext_c: &[F],
    gates: &[F],
    prev_c: &[F],
    tanh_c: &[F],
    da: &mut [F],
    dprev_c: &mut [F],
) {
    let h = dnext_h.len();
    let (dnext_c, prev_c, tanh_c, dprev_c) = (&dnext_c[..h], &prev_c[..h], &tanh_c[..h], &mut dprev_c[..h]);
    let (i, rest) = gates[..4 * h].split_at(h);
    let (f, rest) = rest.split_at(h);
    let (o, g) = rest.split_at(h);
    let (da_i, rest) = da[..4 * h].split_at_mut(h);
    let (da_f, rest) = rest.split_at_mut(h);
    let (da_o, da_g) = rest.split_at_mut(h);
    for k in 0..h {
        let (tc, ok) = (tanh_c[k], o[k]);
        let dc = dnext_c[k] + tanh_backprop(dnext_h[k] * ok, tc);
        da_o[k] = sigmoid_backprop(dnext_h[k] * tc, ok);
        da_i[k] = sigmoid_backprop(dc * g[k], i[k]);
        da_f[k] = sigmoid_backprop(dc * prev_c[k], f[k]);
        da_g[k] = tanh_backprop(dc * i[k], g[k]);
        dprev_c[k] = dc * f[k];
    }
}

/// `acc += add` over one row; returns `sum(acc^2)` of the result, summed in eight lanes of
/// `F` and widened to f64 at the end.
fn add_and_square<F: Float>(acc: &mut [F], add: &[F]) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [F::zero(); LANES];
    let whole = acc.len() / LANES * LANES;
    let (body, tail) = acc.split_at_mut(whole);
    for (a, d) in body.chunks_exact_mut(LANES).zip(add.chunks_exact(LANES)) {
        let a: &mut [F; LANES] = a.try_into().expect("LANES values");
        let d: &[F; LANES] = d.try_into().expect("LANES values");
        for l in 0..LANES {
            a[l] += d[l];
            lanes[l] += a[l] * a[l];
        }
    }
    let mut rest = 0.0f64;
    for (a, &d) in tail.iter_mut().zip(&add[whole..]) {
        *a += d;
        rest += a.to_f64c() * a.to_f64c();
    }
    lanes.iter().map(|v| v.to_f64c()).sum::<f64>() + rest
}

/// What [`lstm_step_backward`] needs from [`lstm_step_forward`].
#[derive(Clone, Debug)]
pub struct LstmStepCache<F> {
    /// The input, (N, D).
    pub x: Array2<F>,
    /// The previous hidden state, (N, H).
    pub prev_h: Array2<F>,
    /// The previous cell state, (N, H).
    pub prev_c: Array2<F>,
    /// The activated gates `[i, f, o, g]` side by side, (N, 4H).
    pub gates: Array2<F>,
    /// `tanh(next_c)`, (N, H).
    pub tanh_c: Array2<F>,
}

/// One LSTM step (CS231n `lstm_step_forward`), gate order i, f, o, g.
///
/// * `x`: (N, D), `prev_h`: (N, H), `prev_c`: (N, H), `wx`: (D, 4H), `wh`: (H, 4H), `b`: (4H,)
///
/// Returns `(next_h, next_c, cache)`: (N, H), (N, H). Panics on mismatched shapes.
pub fn lstm_step_forward<F: Float>(
    x: &Array2<F>,
    prev_h: &Array2<F>,
    prev_c: &Array2<F>,
    wx: &Array2<F>,
    wh: &Array2<F>,
    b: &Array1<F>,
) -> (Array2<F>, Array2<F>, LstmStepCache<F>) {
    check_shapes("lstm_step_forward", x.dim(), prev_h.dim(), wx, wh, b, 4);
    assert_eq!(prev_c.dim(), prev_h.dim(), "lstm_step_forward: prev_c does not match prev_h");
    let mut gates = Array2::zeros((x.nrows(), wx.ncols()));
    affine_into(x.view(), prev_h.view(), wx, wh, b, gates.view_mut());
    let mut next_c = Array2::zeros(prev_c.raw_dim());
    let mut tanh_c = Array2::zeros(prev_c.raw_dim());
    let mut next_h = Array2::zeros(prev_c.raw_dim());
    let prev_c_std = prev_c.as_standard_layout();
    let rows = Zip::from(gates.rows_mut())
        .and(prev_c_std.rows())
        .and(next_c.rows_mut())
        .and(tanh_c.rows_mut())
        .and(next_h.rows_mut());
    rows.for_each(|mut a, pc, mut c, mut tc, mut h| {
        lstm_cell_row(
            a.as_slice_mut().expect("standard layout"),
            Some(pc.to_slice().expect("standard layout")),
            c.as_slice_mut().expect("standard layout"),
            tc.as_slice_mut().expect("standard layout"),
            h.as_slice_mut().expect("standard layout"),
        )
    });
    let cache = LstmStepCache { x: x.clone(), prev_h: prev_h.clone(), prev_c: prev_c.clone(), gates, tanh_c };
    (next_h, next_c, cache)
}

/// One LSTM step backward (CS231n `lstm_step_backward`).
///
/// * `dnext_h`, `dnext_c`: (N, H) upstream gradients; `wx`: (D, 4H), `wh`: (H, 4H)
///
/// Returns `(dx, dprev_h, dprev_c, dwx, dwh, db)`: (N, D), (N, H), (N, H), (D, 4H), (H, 4H), (4H,).
pub fn lstm_step_backward<F: Float>(
    dnext_h: &Array2<F>,
    dnext_c: &Array2<F>,
    cache: &LstmStepCache<F>,
    wx: &Array2<F>,
    wh: &Array2<F>,
) -> LstmStepGrads<F> {
    assert_eq!(dnext_h.dim(), cache.prev_c.dim(), "lstm_step_backward: dnext_h does not match the hidden state");
    assert_eq!(dnext_c.dim(), cache.prev_c.dim(), "lstm_step_backward: dnext_c does not match the cell state");
    let mut da = Array2::zeros(cache.gates.raw_dim());
    let mut dprev_c = Array2::zeros(cache.prev_c.raw_dim());
    let (dnh, dnc) = (dnext_h.as_standard_layout(), dnext_c.as_standard_layout());
    let (gates, prev_c, tanh_c) =
        (cache.gates.as_standard_layout(), cache.prev_c.as_standard_layout(), cache.tanh_c.as_standard_layout());
    fn slice<'a, F>(r: ndarray::ArrayView1<'a, F>) -> &'a [F] {
        r.to_slice().expect("standard layout")
    }
    for (n, (mut da_n, mut dpc_n)) in da.rows_mut().into_iter().zip(dprev_c.rows_mut()).enumerate() {
        lstm_cell_backward_row(
            slice(dnh.row(n)),
            slice(dnc.row(n)),
            slice(gates.row(n)),
            slice(prev_c.row(n)),
            slice(tanh_c.row(n)),
            da_n.as_slice_mut().expect("standard layout"),
            dpc_n.as_slice_mut().expect("standard layout"),
        );
    }
    let dx = matmul(da.view(), wx.t());
    let dprev_h = matmul(da.view(), wh.t());
    let mut g = WeightGrads::zeros(wx, wh);
    g.accumulate(da.view(), cache.x.view(), cache.prev_h.view());
    (dx, dprev_h, dprev_c, g.dwx, g.dwh, g.db)
}

/// What [`lstm_backward`] needs from [`lstm_forward`].
#[derive(Clone, Debug)]
pub struct LstmCache<F> {
    /// The inputs, (N, T, D).
    pub x: Array3<F>,
    /// The initial hidden state, (N, H).
    pub h0: Array2<F>,
    /// Every hidden state, (N, T, H) (the forward output).
    pub h: Array3<F>,
    /// Every cell state, (N, T, H).
    pub c: Array3<F>,
    /// `tanh` of every cell state, (N, T, H).
    pub tanh_c: Array3<F>,
    /// The activated gates `[i, f, o, g]` of every step, (N, T, 4H).
    pub gates: Array3<F>,
}

/// An LSTM over a whole sequence (CS231n `lstm_forward`), with `c0 = 0`.
///
/// * `x`: (N, T, D), `h0`: (N, H), `wx`: (D, 4H), `wh`: (H, 4H), `b`: (4H,)
///
/// Returns the hidden states `h`: (N, T, H) and the cache. Panics on mismatched shapes.
pub fn lstm_forward<F: Float>(
    x: &Array3<F>,
    h0: &Array2<F>,
    wx: &Array2<F>,
    wh: &Array2<F>,
    b: &Array1<F>,
) -> (Array3<F>, LstmCache<F>) {
    // Per step, the cell is shared out over the batch: run the whole pass in the pool.
    crate::parallel::in_pool(|| lstm_forward_in_pool(x, h0, wx, wh, b))
}

fn lstm_forward_in_pool<F: Float>(
    x: &Array3<F>,
    h0: &Array2<F>,
    wx: &Array2<F>,
    wh: &Array2<F>,
    b: &Array1<F>,
) -> (Array3<F>, LstmCache<F>) {
    let (n, t_len, d) = x.dim();
    check_shapes("lstm_forward", (n, d), h0.dim(), wx, wh, b, 4);
    let hh = wh.nrows();
    let mut h = Array3::zeros((n, t_len, hh));
    let mut c = Array3::zeros((n, t_len, hh));
    let mut tanh_c = Array3::zeros((n, t_len, hh));
    // The input part of every step at once (see `input_projection`); the loop adds
    // h_{t-1} Wh and runs the cell.
    let mut gates = input_projection(x, wx, b);
    let mut wh_packed = PackedRhs::new(wh.view());
    for t in 0..t_len {
        if t == 0 {
            wh_packed.mul_into(h0.view(), F::one(), gates.slice_mut(s![.., 0, ..]));
        } else {
            let prev = h.slice(s![.., t - 1, ..]);
            wh_packed.mul_into(prev, F::one(), gates.slice_mut(s![.., t, ..]));
        }
        lstm_cell_rows(&mut gates, &mut c, &mut tanh_c, &mut h, t);
    }
    (h.clone(), LstmCache { x: x.clone(), h0: h0.clone(), h, c, tanh_c, gates })
}

/// [`lstm_cell_row`] of step `t` for every sequence n of the standard-layout arrays
/// `gates` (N, T, 4H) and `c`, `tanh_c`, `h` (N, T, H) (`prev_c` = `c[n, t-1]`, or the zero
/// cell at t = 0).
fn lstm_cell_rows<F: Float>(
    gates: &mut Array3<F>,
    c: &mut Array3<F>,
    tanh_c: &mut Array3<F>,
    h: &mut Array3<F>,
    t: usize,
) {
    let (n, t_len, hh) = c.dim();
    let gates = gates.as_slice_mut().expect("standard layout");
    let c = c.as_slice_mut().expect("standard layout");
    let tanh_c = tanh_c.as_slice_mut().expect("standard layout");
    let h = h.as_slice_mut().expect("standard layout");
    if hh == 0 || t_len == 0 {
        return;
    }
    let rows_per_task = rows_per_task(n, hh);
    if rows_per_task < n {
        gates
            .par_chunks_mut(t_len * 4 * hh)
            .zip(c.par_chunks_mut(t_len * hh))
            .zip(tanh_c.par_chunks_mut(t_len * hh))
            .zip(h.par_chunks_mut(t_len * hh))
            .with_min_len(rows_per_task)
            .for_each(|(((g, c), tc), h)| cell_of_sequence(t, hh, g, c, tc, h));
    } else {
        let sequences = gates
            .chunks_exact_mut(t_len * 4 * hh)
            .zip(c.chunks_exact_mut(t_len * hh))
            .zip(tanh_c.chunks_exact_mut(t_len * hh))
            .zip(h.chunks_exact_mut(t_len * hh));
        for (((g, c), tc), h) in sequences {
            cell_of_sequence(t, hh, g, c, tc, h);
        }
    }
}

/// One row of the per-step backward pass: the row index, its `da` (T * 4H, the whole
/// sequence), `dnext_h` and `dprev_c` (H each) and its squared norm.
type BackwardRow<'a, F> = (usize, (((&'a mut [F], &'a mut [F]), &'a mut [F]), &'a mut f64));

/// Gate values (4H per row) per task below which the per-step cell is not shared out.
const CELL_SPLIT: usize = 4096;

/// How many rows (sequences) of the batch one task of the per-step cell takes: all N (run on
/// the calling thread) unless there are several threads and at least two tasks' worth of
/// [`CELL_SPLIT`] gate values.
fn rows_per_task(n: usize, hh: usize) -> usize {
    let pieces = crate::parallel::pieces(n * 4 * hh, CELL_SPLIT);
    n.div_ceil(pieces.max(1)).max(1)
}

/// [`lstm_cell_row`] at step `t` of one sequence: `g` (T, 4H) and `c`, `tc`, `h` (T, H), flat.
fn cell_of_sequence<F: Float>(t: usize, hh: usize, g: &mut [F], c: &mut [F], tc: &mut [F], h: &mut [F]) {
    let (before, now) = c.split_at_mut(t * hh);
    let prev_c = if t == 0 { None } else { Some(&before[(t - 1) * hh..]) };
    lstm_cell_row(
        &mut g[t * 4 * hh..][..4 * hh],
        prev_c,
        &mut now[..hh],
        &mut tc[t * hh..][..hh],
        &mut h[t * hh..][..hh],
    );
}

/// An LSTM backward over a whole sequence (CS231n `lstm_backward`).
///
/// * `dh`: (N, T, H) upstream gradient of every hidden state; `wx`: (D, 4H), `wh`: (H, 4H)
///
/// Returns `(dx, dh0, dwx, dwh, db)`: (N, T, D), (N, H), (D, 4H), (H, 4H), (4H,).
pub fn lstm_backward<F: Float>(
    dh: &Array3<F>,
    cache: &LstmCache<F>,
    wx: &Array2<F>,
    wh: &Array2<F>,
) -> SequenceGrads<F> {
    lstm_backward_with_norms(dh, cache, wx, wh).0
}

/// [`lstm_backward`], and `norms[t] = ||dL/dh_t||` for t = 0..T: the Frobenius norm over the
/// (N, H) batch of the total gradient into the hidden state `h_t`, `dh[:, t, :] + da_{t+1} Wh^T`
/// (the cell-state gradient is not included; see the module docs).
pub fn lstm_backward_with_norms<F: Float>(
    dh: &Array3<F>,
    cache: &LstmCache<F>,
    wx: &Array2<F>,
    wh: &Array2<F>,
) -> (SequenceGrads<F>, Vec<f64>) {
    crate::parallel::in_pool(|| lstm_backward_in_pool(dh, cache, wx, wh))
}

fn lstm_backward_in_pool<F: Float>(
    dh: &Array3<F>,
    cache: &LstmCache<F>,
    wx: &Array2<F>,
    wh: &Array2<F>,
) -> (SequenceGrads<F>, Vec<f64>) {
    let (n, t_len, h) = cache.h.dim();
    assert_eq!(dh.dim(), (n, t_len, h), "lstm backward: dh is {:?}, the output was {:?}", dh.dim(), cache.h.dim());
    let mut norms = vec![0.0; t_len];
    let c0 = vec![F::zero(); h];
    // As in the RNN backward: the loop carries dL/dh and dL/dc back through time, computes
    // dx[:, t] and db, and keeps every step's `da` for dWx and dWh, one GEMM afterwards.
    let mut da = Array3::zeros((n, t_len, 4 * h));
    // Total dL/dh_t and dL/dc_t; what step t sends back to h_{t-1} and c_{t-1}.
    let mut dnext_h = Array2::zeros((n, h));
    let mut dnext_c = Array2::zeros((n, h));
    let mut dprev_h = Array2::zeros((n, h));
    let mut dprev_c = Array2::zeros((n, h));
    let mut wh_t_packed = PackedRhs::new(wh.t());
    let mut inputs = StepInputGrads::new(wx, n, t_len);
    let (dh_std, gates_std) = (dh.as_standard_layout(), cache.gates.as_standard_layout());
    let (c_std, tanh_c_std) = (cache.c.as_standard_layout(), cache.tanh_c.as_standard_layout());
    let dh_all = dh_std.as_slice().expect("standard layout");
    let gates_all = gates_std.as_slice().expect("standard layout");
    let (c_all, tanh_c_all) =
        (c_std.as_slice().expect("standard layout"), tanh_c_std.as_slice().expect("standard layout"));
    // Each row's squared norm of dL/dh_t, summed in row order afterwards (so the norm does
    // not depend on how the rows were shared out over threads).
    let mut row_sq = vec![0.0f64; n];
    let rows_per_task = rows_per_task(n, h);
    for t in (0..t_len).rev() {
        // Per row, one pass: dL/dh_t += dh[:, t] with its squared norm, then the cell backward.
        let dnc_all = dnext_c.as_slice().expect("standard layout");
        let per_row = |(row, (((da_row, dnh), dpc), sq)): BackwardRow<'_, F>| {
            let at = (row * t_len + t) * h;
            let at4 = at * 4;
            *sq = add_and_square(dnh, &dh_all[at..at + h]);
            let prev_c = if t == 0 { &c0[..] } else { &c_all[at - h..at] };
            lstm_cell_backward_row(
                dnh,
                &dnc_all[row * h..(row + 1) * h],
                &gates_all[at4..at4 + 4 * h],
                prev_c,
                &tanh_c_all[at..at + h],
                &mut da_row[t * 4 * h..(t + 1) * 4 * h],
                dpc,
            );
        };
        let (da_all, dnh_all) =
            (da.as_slice_mut().expect("standard layout"), dnext_h.as_slice_mut().expect("standard layout"));
        let dpc_all = dprev_c.as_slice_mut().expect("standard layout");
        if rows_per_task < n {
            da_all
                .par_chunks_mut(t_len * 4 * h)
                .zip(dnh_all.par_chunks_mut(h))
                .zip(dpc_all.par_chunks_mut(h))
                .zip(row_sq.par_iter_mut())
                .with_min_len(rows_per_task)
                .enumerate()
                .for_each(per_row);
        } else {
            da_all
                .chunks_mut(t_len * 4 * h)
                .zip(dnh_all.chunks_mut(h))
                .zip(dpc_all.chunks_mut(h))
                .zip(row_sq.iter_mut())
                .enumerate()
                .for_each(per_row);
        }
        norms[t] = row_sq.iter().sum::<f64>().sqrt();
        wh_t_packed.mul_into(da.slice(s![.., t, ..]), F::zero(), dprev_h.view_mut());
        inputs.step(da.slice(s![.., t, ..]), t);
        std::mem::swap(&mut dnext_h, &mut dprev_h);
        std::mem::swap(&mut dnext_c, &mut dprev_c);
    }
    let (dwx, dwh) = sequence_weight_grads(&da, &cache.x, cache.h0.view(), &cache.h);
    let StepInputGrads { dx, db, .. } = inputs;
    ((dx, dnext_h, dwx, dwh, db), norms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_scalar, rel_error};
    use crate::layers::rnn::tests::{assert_smooth, check_norms, check_sequence, Seq, SHAPES, W_STD_LSTM};
    use crate::tensor::{randn, rng};
    use ndarray::{ArrayView2, ArrayViewMut2};

    // --- the readable CS231n-style cell, kept as the oracle of the row kernels -----------

    fn textbook_sigmoid(v: f64) -> f64 {
        1.0 / (1.0 + (-v).exp())
    }

    /// The four (N, H) blocks i, f, o, g of an (N, 4H) array.
    fn gate_views(a: ArrayView2<'_, f64>, h: usize) -> [ArrayView2<'_, f64>; 4] {
        [
            a.slice_move(s![.., ..h]),
            a.slice_move(s![.., h..2 * h]),
            a.slice_move(s![.., 2 * h..3 * h]),
            a.slice_move(s![.., 3 * h..]),
        ]
    }

    /// The forward cell as CS231n writes it, whole arrays at a time: gates in place in `a`
    /// (N, 4H), then `c = f * prev_c + i * g`, `tanh_c = tanh(c)`, `next_h = o * tanh_c`.
    fn reference_cell(
        mut a: ArrayViewMut2<f64>,
        prev_c: ArrayView2<f64>,
        mut c: ArrayViewMut2<f64>,
        mut tanh_c: ArrayViewMut2<f64>,
        mut next_h: ArrayViewMut2<f64>,
    ) {
        let h = prev_c.ncols();
        a.slice_mut(s![.., ..3 * h]).mapv_inplace(textbook_sigmoid);
        a.slice_mut(s![.., 3 * h..]).mapv_inplace(f64::tanh);
        let [i, f, o, g] = gate_views(a.view(), h);
        Zip::from(&mut c).and(&prev_c).and(&i).and(&f).and(&g).for_each(|c, &pc, &i, &f, &g| *c = f * pc + i * g);
        Zip::from(&mut tanh_c).and(&c).for_each(|tc, &c| *tc = c.tanh());
        Zip::from(&mut next_h).and(&o).and(&tanh_c).for_each(|nh, &o, &tc| *nh = o * tc);
    }

    /// The backward cell as CS231n writes it (the formulas of `lstm_cell_backward_row`).
    fn reference_cell_backward(
        dnext_h: ArrayView2<f64>,
        dnext_c: ArrayView2<f64>,
        gates: ArrayView2<f64>,
        prev_c: ArrayView2<f64>,
        tanh_c: ArrayView2<f64>,
        mut da: ArrayViewMut2<f64>,
        mut dprev_c: ArrayViewMut2<f64>,
    ) {
        let h = prev_c.ncols();
        let [i, f, o, g] = gate_views(gates, h);
        let (mut da_i, mut da_f, mut da_o, mut da_g) =
            da.multi_slice_mut((s![.., ..h], s![.., h..2 * h], s![.., 2 * h..3 * h], s![.., 3 * h..]));
        // dprev_c first holds the total dc, then is scaled by f.
        Zip::from(&mut dprev_c).and(&dnext_c).and(&dnext_h).and(&o).and(&tanh_c).for_each(|dc, &dnc, &dnh, &o, &tc| {
            *dc = dnc + dnh * o * (1.0 - tc * tc);
        });
        Zip::from(&mut da_o)
            .and(&dnext_h)
            .and(&tanh_c)
            .and(&o)
            .for_each(|d, &dnh, &tc, &o| *d = dnh * tc * o * (1.0 - o));
        Zip::from(&mut da_i).and(&dprev_c).and(&g).and(&i).for_each(|d, &dc, &g, &i| *d = dc * g * i * (1.0 - i));
        Zip::from(&mut da_f)
            .and(&dprev_c)
            .and(&prev_c)
            .and(&f)
            .for_each(|d, &dc, &pc, &f| *d = dc * pc * f * (1.0 - f));
        Zip::from(&mut da_g).and(&dprev_c).and(&i).and(&g).for_each(|d, &dc, &i, &g| *d = dc * i * (1.0 - g * g));
        Zip::from(&mut dprev_c).and(&f).for_each(|dc, &f| *dc *= f);
    }

    fn close(a: &Array2<f64>, b: &Array2<f64>, what: &str) {
        let e = rel_error(a, b);
        assert!(e < 1e-13, "{what}: rel_error {e:e}");
    }

    /// The row kernels that training runs against the readable reference, in f64, on
    /// pre-activations wide enough to reach the saturated tails (|a| up to ~12).
    #[test]
    fn row_kernels_match_the_reference_cell() {
        let mut r = rng(30);
        for &(n, h) in &[(1usize, 1usize), (3, 5), (4, 17)] {
            let a: Array2<f64> = randn((n, 4 * h), 4.0, &mut r);
            let prev_c: Array2<f64> = randn((n, h), 1.0, &mut r);
            let (dnh, dnc): (Array2<f64>, Array2<f64>) = (randn((n, h), 1.0, &mut r), randn((n, h), 1.0, &mut r));
            let zeros = || Array2::<f64>::zeros((n, h));
            let (mut want_g, mut want_c, mut want_tc, mut want_h) = (a.clone(), zeros(), zeros(), zeros());
            reference_cell(want_g.view_mut(), prev_c.view(), want_c.view_mut(), want_tc.view_mut(), want_h.view_mut());
            let (mut got_g, mut got_c, mut got_tc, mut got_h) = (a.clone(), zeros(), zeros(), zeros());
            for k in 0..n {
                lstm_cell_row(
                    got_g.row_mut(k).into_slice().unwrap(),
                    Some(prev_c.row(k).to_slice().unwrap()),
                    got_c.row_mut(k).into_slice().unwrap(),
                    got_tc.row_mut(k).into_slice().unwrap(),
                    got_h.row_mut(k).into_slice().unwrap(),
                );
            }
            close(&got_g, &want_g, "gates");
            close(&got_c, &want_c, "c");
            close(&got_tc, &want_tc, "tanh_c");
            close(&got_h, &want_h, "h");
            // The zero cell (`None`) is `prev_c = 0`.
            let mut zc = (a.clone(), zeros(), zeros(), zeros());
            reference_cell(zc.0.view_mut(), zeros().view(), zc.1.view_mut(), zc.2.view_mut(), zc.3.view_mut());
            let mut row = (a.row(0).to_vec(), vec![0.0; h], vec![0.0; h], vec![0.0; h]);
            lstm_cell_row(&mut row.0, None, &mut row.1, &mut row.2, &mut row.3);
            close(&Array2::from_shape_vec((1, h), row.3).unwrap(), &zc.3.slice(s![..1, ..]).to_owned(), "h from c0");
            // Backward.
            let (mut want_da, mut want_dpc) = (Array2::zeros((n, 4 * h)), zeros());
            reference_cell_backward(
                dnh.view(),
                dnc.view(),
                want_g.view(),
                prev_c.view(),
                want_tc.view(),
                want_da.view_mut(),
                want_dpc.view_mut(),
            );
            let (mut got_da, mut got_dpc) = (Array2::zeros((n, 4 * h)), zeros());
            for k in 0..n {
                lstm_cell_backward_row(
                    dnh.row(k).to_slice().unwrap(),
                    dnc.row(k).to_slice().unwrap(),
                    got_g.row(k).to_slice().unwrap(),
                    prev_c.row(k).to_slice().unwrap(),
                    got_tc.row(k).to_slice().unwrap(),
                    got_da.row_mut(k).into_slice().unwrap(),
                    got_dpc.row_mut(k).into_slice().unwrap(),
                );
            }
            close(&got_da, &want_da, "da");
            close(&got_dpc, &want_dpc, "dprev_c");
        }
    }

    /// In f32 the kernels run the fast sigmoid and tanh: within f32 rounding of the f64
    /// reference.
    #[test]
    fn f32_row_kernels_are_close_to_the_f64_reference() {
        let (n, h) = (3usize, 9usize);
        let mut r = rng(31);
        let a: Array2<f64> = randn((n, 4 * h), 3.0, &mut r);
        let prev_c: Array2<f64> = randn((n, h), 1.0, &mut r);
        let (mut g, mut c, mut tc, mut hh) =
            (a.clone(), Array2::zeros((n, h)), Array2::zeros((n, h)), Array2::zeros((n, h)));
        reference_cell(g.view_mut(), prev_c.view(), c.view_mut(), tc.view_mut(), hh.view_mut());
        for k in 0..n {
            let mut a32: Vec<f32> = a.row(k).iter().map(|&v| v as f32).collect();
            let pc32: Vec<f32> = prev_c.row(k).iter().map(|&v| v as f32).collect();
            let (mut c32, mut tc32, mut h32) = (vec![0f32; h], vec![0f32; h], vec![0f32; h]);
            lstm_cell_row(&mut a32, Some(&pc32), &mut c32, &mut tc32, &mut h32);
            for (got, want) in a32.iter().zip(g.row(k)).chain(h32.iter().zip(hh.row(k))) {
                assert!((*got as f64 - want).abs() < 2e-6, "{got} vs {want}");
            }
        }
    }

    #[test]
    fn lstm_step_gradients() {
        let mut r = rng(6);
        for &(n, d, h) in &[(1usize, 3usize, 4usize), (4, 5, 3)] {
            let x: Array2<f64> = randn((n, d), 1.0, &mut r);
            let ph: Array2<f64> = randn((n, h), 1.0, &mut r);
            let pc: Array2<f64> = randn((n, h), 1.0, &mut r);
            let wx: Array2<f64> = randn((d, 4 * h), W_STD_LSTM, &mut r);
            let wh: Array2<f64> = randn((h, 4 * h), W_STD_LSTM, &mut r);
            let b: Array1<f64> = randn(4 * h, 0.5, &mut r);
            let dnh: Array2<f64> = randn((n, h), 1.0, &mut r);
            let dnc: Array2<f64> = randn((n, h), 1.0, &mut r);
            let (_, _, cache) = lstm_step_forward(&x, &ph, &pc, &wx, &wh, &b);
            let (dx, dph, dpc, dwx, dwh, db) = lstm_step_backward(&dnh, &dnc, &cache, &wx, &wh);
            // The checked scalar: sum(next_h * dnext_h) + sum(next_c * dnext_c).
            let loss = |x: &Array2<f64>,
                        ph: &Array2<f64>,
                        pc: &Array2<f64>,
                        wx: &Array2<f64>,
                        wh: &Array2<f64>,
                        b: &Array1<f64>| {
                let (nh, nc, _) = lstm_step_forward(x, ph, pc, wx, wh, b);
                (&nh * &dnh).sum() + (&nc * &dnc).sum()
            };
            assert_smooth(&check_scalar("lstm step dx", |v| loss(v, &ph, &pc, &wx, &wh, &b), &x, &dx));
            assert_smooth(&check_scalar("lstm step dprev_h", |v| loss(&x, v, &pc, &wx, &wh, &b), &ph, &dph));
            assert_smooth(&check_scalar("lstm step dprev_c", |v| loss(&x, &ph, v, &wx, &wh, &b), &pc, &dpc));
            assert_smooth(&check_scalar("lstm step dwx", |v| loss(&x, &ph, &pc, v, &wh, &b), &wx, &dwx));
            assert_smooth(&check_scalar("lstm step dwh", |v| loss(&x, &ph, &pc, &wx, v, &b), &wh, &dwh));
            assert_smooth(&check_scalar("lstm step db", |v| loss(&x, &ph, &pc, &wx, &wh, v), &b, &db));
        }
    }

    #[test]
    fn lstm_sequence_gradients() {
        let mut r = rng(21);
        for shape in SHAPES {
            let s = Seq::random(shape, 4, W_STD_LSTM, &mut r);
            let (_, cache) = lstm_forward(&s.x, &s.h0, &s.wx, &s.wh, &s.b);
            let g = lstm_backward(&s.dh, &cache, &s.wx, &s.wh);
            check_sequence(&format!("lstm {shape:?}"), &|x, h0, wx, wh, b| lstm_forward(x, h0, wx, wh, b).0, &s, &g);
        }
    }

    /// Steps t0.. of an LSTM started from (h, c), by the step function. (N, T - t0, H).
    fn lstm_steps(s: &Seq, t0: usize, h: &Array2<f64>, c: &Array2<f64>) -> Array3<f64> {
        let (n, t_len, _) = s.x.dim();
        let mut out = Array3::zeros((n, t_len - t0, h.ncols()));
        let (mut h, mut c) = (h.clone(), c.clone());
        for t in t0..t_len {
            let (nh, nc, _) = lstm_step_forward(&s.x.slice(s![.., t, ..]).to_owned(), &h, &c, &s.wx, &s.wh, &s.b);
            out.slice_mut(s![.., t - t0, ..]).assign(&nh);
            (h, c) = (nh, nc);
        }
        out
    }

    #[test]
    fn lstm_sequence_is_the_step_loop_from_zero_cell() {
        let s = Seq::random((3, 6, 4, 5), 4, W_STD_LSTM, &mut rng(8));
        let (h, cache) = lstm_forward(&s.x, &s.h0, &s.wx, &s.wh, &s.b);
        let steps = lstm_steps(&s, 0, &s.h0, &Array2::zeros(s.h0.raw_dim()));
        assert!(rel_error(&h, &steps) < 1e-14);
        assert_eq!(cache.gates.shape(), &[3, 6, 20]);
    }

    #[test]
    fn lstm_backward_norms_are_the_total_gradient_into_each_hidden_state() {
        let mut r = rng(9);
        for shape in [(1, 6, 3, 4), (3, 7, 4, 5)] {
            let s = Seq::random(shape, 4, W_STD_LSTM, &mut r);
            let (h, cache) = lstm_forward(&s.x, &s.h0, &s.wx, &s.wh, &s.b);
            let (g, norms) = lstm_backward_with_norms(&s.dh, &cache, &s.wx, &s.wh);
            assert_eq!(g.1, lstm_backward(&s.dh, &cache, &s.wx, &s.wh).1);
            // The cell state c_t is held fixed: only the path through h_t is perturbed.
            let suffix =
                |t: usize, ht: &Array2<f64>| lstm_steps(&s, t + 1, ht, &cache.c.slice(s![.., t, ..]).to_owned());
            check_norms(&format!("lstm {shape:?}"), &norms, &s.dh, &h, &suffix);
        }
    }

    #[test]
    fn f32_matches_f64() {
        let s = Seq::random((2, 5, 3, 4), 4, W_STD_LSTM, &mut rng(13));
        let c = |a: &Array2<f64>| a.mapv(|v| v as f32);
        let (h64, _) = lstm_forward(&s.x, &s.h0, &s.wx, &s.wh, &s.b);
        let (h32, _) = lstm_forward(&s.x.mapv(|v| v as f32), &c(&s.h0), &c(&s.wx), &c(&s.wh), &s.b.mapv(|v| v as f32));
        assert!(rel_error(&h64, &h32.mapv(f64::from)) < 1e-4);
    }
}
