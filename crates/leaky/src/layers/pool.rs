//! Max pooling: a naive forward/backward pair and a fast pair that remembers where each
//! maximum came from.
//!
//! Dimension letters: N = batch, C = channels, H/W = input height/width, PH/PW = pool
//! height/width, H'/W' = output height/width.
//!
//! # The math (CS231n's `max_pool_forward_naive`)
//!
//! ```text
//! out[n, c, oh, ow] = max_{i < PH, j < PW} x[n, c, oh*s + i, ow*s + j]
//! H' = 1 + (H - PH) / s        W' = 1 + (W - PW) / s      (integer division)
//! ```
//!
//! When the stride does not divide `H - PH`, the last rows (or columns) are in no window, as
//! in CS231n's naive version and PyTorch's default; their gradient is zero.
//!
//! # Why the gradient goes to the argmax only
//!
//! Locally, a max is the identity on its largest input and constant in the others: nudging
//! a non-maximal input does not change the output at all. So `dx` is `dout` at the argmax of
//! each window and 0 elsewhere; a pixel that is the maximum of several overlapping windows
//! (stride < pool size) collects each of their gradients. Ties are broken as numpy's
//! `argmax`: the first maximum in row-major window order gets the whole gradient (the max
//! is not differentiable there; any convex split would be a valid subgradient).
//!
//! # Naive vs fast
//!
//! [`forward_naive`] / [`backward_naive`] loop over windows with 4-D indexing, and backward
//! searches each window for its maximum again. [`forward_fast`] sweeps each window row over
//! contiguous memory and records the flat index of every maximum, so [`backward_fast`] is a
//! single scatter-add of `dout` into those indices. Both apply the same tie rule, so they
//! agree exactly. Either backward accepts the cache of either forward.

use crate::nn::{Layer, Mode};
use crate::parallel;
use crate::tensor::{Float, Tensor};
use ndarray::{Array4, ArrayView4, Ix4};
use rayon::prelude::*;

/// Window size and stride of a max pool (CS231n's `pool_param`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoolParam {
    /// Window height PH.
    pub height: usize,
    /// Window width PW.
    pub width: usize,
    /// Step between neighbouring windows, in pixels, along H and W (at least 1).
    pub stride: usize,
}

impl PoolParam {
    /// Output size (H', W') for an input of size (H, W), or a message naming the sizes when
    /// the window is empty, larger than the input, or the stride is 0.
    pub fn output_size(self, (h, w): (usize, usize)) -> Result<(usize, usize), String> {
        let PoolParam { height: ph, width: pw, stride: s } = self;
        if s == 0 {
            return Err("maxpool: stride must be at least 1".to_string());
        }
        if ph == 0 || pw == 0 || ph > h || pw > w {
            return Err(format!("maxpool: window {ph}x{pw} does not fit input {h}x{w}"));
        }
        Ok((1 + (h - ph) / s, 1 + (w - pw) / s))
    }
}

/// What the backward passes need from a forward pass (either one).
#[derive(Clone, Debug)]
pub struct PoolCache<F> {
    /// The input (N, C, H, W).
    pub x: Array4<F>,
    /// Window and stride used.
    pub pool: PoolParam,
    /// For every output (N, C, H', W'), the flat index `h * W + w` of its maximum within
    /// its (H, W) plane, kept by [`forward_fast`]; `None` after [`forward_naive`]
    /// ([`backward_fast`] then recomputes it).
    pub argmax: Option<Array4<usize>>,
}

fn output_hw(x: (usize, usize, usize, usize), pool: PoolParam) -> (usize, usize) {
    pool.output_size((x.2, x.3)).unwrap_or_else(|e| panic!("{e} (input (N, C, H, W) = {x:?}, {pool:?})"))
}

/// (i, j) of the first maximum of window (oh, ow) of plane (n, c), in row-major order.
fn window_argmax<F: Float>(x: &Array4<F>, n: usize, c: usize, oh: usize, ow: usize, pool: PoolParam) -> (usize, usize) {
    let (h0, w0) = (oh * pool.stride, ow * pool.stride);
    let mut best = (0, 0);
    for i in 0..pool.height {
        for j in 0..pool.width {
            if x[[n, c, h0 + i, w0 + j]] > x[[n, c, h0 + best.0, w0 + best.1]] {
                best = (i, j);
            }
        }
    }
    best
}

/// Max pool forward, one window at a time.
///
/// * `x`: (N, C, H, W)
/// * `pool`: window (PH, PW) and stride
///
/// Returns `out`: (N, C, H', W') with H' = 1 + (H - PH) / stride, W' = 1 + (W - PW) / stride,
/// and the cache.
///
/// # Panics
/// When the stride is 0 or the window is empty or larger than the input (see
/// [`PoolParam::output_size`]); the message names the shapes.
pub fn forward_naive<F: Float>(x: &Array4<F>, pool: PoolParam) -> (Array4<F>, PoolCache<F>) {
    let (ho, wo) = output_hw(x.dim(), pool);
    let (n, c, _, _) = x.dim();
    let s = pool.stride;
    let out = Array4::from_shape_fn((n, c, ho, wo), |(ni, ci, oh, ow)| {
        let (i, j) = window_argmax(x, ni, ci, oh, ow, pool);
        x[[ni, ci, oh * s + i, ow * s + j]]
    });
    (out, PoolCache { x: x.clone(), pool, argmax: None })
}

/// Max pool backward: each window's `dout` goes to its first maximum.
///
/// * `dout`: (N, C, H', W') upstream gradient
/// * `cache`: from [`forward_naive`] or [`forward_fast`]
///
/// Returns `dx`: (N, C, H, W).
///
/// # Panics
/// When `dout` is not (N, C, H', W').
pub fn backward_naive<F: Float>(dout: &Array4<F>, cache: &PoolCache<F>) -> Array4<F> {
    let (x, pool) = (&cache.x, cache.pool);
    let (ho, wo) = output_hw(x.dim(), pool);
    let (n, c, _, _) = x.dim();
    assert_eq!(dout.dim(), (n, c, ho, wo), "maxpool: dout has shape {:?}, expected (N, C, H', W')", dout.dim());
    let s = pool.stride;
    let mut dx = Array4::zeros(x.raw_dim());
    for ni in 0..n {
        for ci in 0..c {
            for oh in 0..ho {
                for ow in 0..wo {
                    let (i, j) = window_argmax(x, ni, ci, oh, ow, pool);
                    dx[[ni, ci, oh * s + i, ow * s + j]] += dout[[ni, ci, oh, ow]];
                }
            }
        }
    }
    dx
}

/// Max and argmax of every window of the contiguous input, plane by plane: (N, C, H', W')
/// each. The (image, channel) planes are independent: they run in parallel on the thread
/// pool when there are enough values.
fn max_and_argmax<F: Float>(x: &Array4<F>, pool: PoolParam) -> (Array4<F>, Array4<usize>) {
    let (ho, wo) = output_hw(x.dim(), pool);
    let (n, c, h, w) = x.dim();
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let mut out = Array4::zeros((n, c, ho, wo));
    let mut argmax = Array4::zeros((n, c, ho, wo));
    if h * w == 0 || ho * wo == 0 {
        return (out, argmax);
    }
    let out_s = out.as_slice_mut().expect("standard layout");
    let arg_s = argmax.as_slice_mut().expect("standard layout");
    let per_plane =
        |((plane, out_p), arg_p): ((&[F], &mut [F]), &mut [usize])| pool_plane(plane, w, out_p, arg_p, wo, pool);
    if parallel::split(xs.len(), parallel::ELEMENTWISE_SPLIT) {
        xs.par_chunks_exact(h * w)
            .zip(out_s.par_chunks_exact_mut(ho * wo))
            .zip(arg_s.par_chunks_exact_mut(ho * wo))
            .for_each(per_plane);
    } else {
        xs.chunks_exact(h * w)
            .zip(out_s.chunks_exact_mut(ho * wo))
            .zip(arg_s.chunks_exact_mut(ho * wo))
            .for_each(per_plane);
    }
    (out, argmax)
}

/// Max and argmax of every window of one (H, W) plane (rows `w` long) into `out_p`,
/// `arg_p` (H', W') (rows `wo` long).
///
/// The common windows (2 x 2 and 3 x 3, stride 2 or equal to the window) get their own
/// copies of [`pool_plane_with`] in which the window and stride are constants, so the window
/// loops are unrolled; the same operations in the same order as the general copy.
#[inline]
fn pool_plane<F: Float>(plane: &[F], w: usize, out_p: &mut [F], arg_p: &mut [usize], wo: usize, pool: PoolParam) {
    let PoolParam { height: ph, width: pw, stride: s } = pool;
    match (ph, pw, s) {
        (2, 2, 2) => pool_plane_with(plane, w, out_p, arg_p, wo, 2, 2, 2),
        (3, 3, 2) => pool_plane_with(plane, w, out_p, arg_p, wo, 3, 3, 2),
        (3, 3, 3) => pool_plane_with(plane, w, out_p, arg_p, wo, 3, 3, 3),
        _ => pool_plane_with(plane, w, out_p, arg_p, wo, ph, pw, s),
    }
}

/// [`pool_plane`] for a window (ph, pw) and stride s (constants where inlined with them).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pool_plane_with<F: Float>(
    plane: &[F],
    w: usize,
    out_p: &mut [F],
    arg_p: &mut [usize],
    wo: usize,
    ph: usize,
    pw: usize,
    s: usize,
) {
    for ((oh, out_r), arg_r) in out_p.chunks_exact_mut(wo).enumerate().zip(arg_p.chunks_exact_mut(wo)) {
        // Rows of the windows outer and positions inner, so every pass reads one input
        // row left to right; within each window (i, j) still run in row-major order, and
        // the strict `>` keeps the first maximum. The updates are selects, not branches
        // (which values win is data-dependent and mispredicts).
        for i in 0..ph {
            let row = (oh * s + i) * w;
            for ow in 0..wo {
                let start = row + ow * s;
                let (mut best, mut at) = if i == 0 { (plane[start], start) } else { (out_r[ow], arg_r[ow]) };
                for (j, &v) in plane[start..start + pw].iter().enumerate() {
                    let better = v > best;
                    best = if better { v } else { best };
                    at = if better { start + j } else { at };
                }
                out_r[ow] = best;
                arg_r[ow] = at;
            }
        }
    }
}

/// [`forward_fast`] on an owned input (kept in the cache without a copy), for [`MaxPool`].
fn forward_fast_owned<F: Float>(x: Array4<F>, pool: PoolParam) -> (Array4<F>, PoolCache<F>) {
    let (out, argmax) = max_and_argmax(&x, pool);
    (out, PoolCache { x, pool, argmax: Some(argmax) })
}

/// Max pool forward over contiguous rows, recording each maximum's position. Same contract
/// as [`forward_naive`]:
///
/// * `x`: (N, C, H, W)
/// * `pool`: window (PH, PW) and stride
///
/// Returns `out`: (N, C, H', W') and the cache, which also keeps the argmax of every window
/// (N, C, H', W') for [`backward_fast`].
///
/// # Panics
/// As [`forward_naive`].
pub fn forward_fast<F: Float>(x: &Array4<F>, pool: PoolParam) -> (Array4<F>, PoolCache<F>) {
    forward_fast_owned(x.clone(), pool)
}

/// [`backward_fast`] on a borrowed `dout`, for [`MaxPool`].
fn backward_fast_view<F: Float>(dout: ArrayView4<F>, cache: &PoolCache<F>) -> Array4<F> {
    let x = &cache.x;
    let (n, c, h, w) = x.dim();
    let (ho, wo) = output_hw(x.dim(), cache.pool);
    assert_eq!(dout.dim(), (n, c, ho, wo), "maxpool: dout has shape {:?}, expected (N, C, H', W')", dout.dim());
    let recomputed;
    let argmax = match &cache.argmax {
        Some(a) => a,
        None => {
            recomputed = max_and_argmax(x, cache.pool).1;
            &recomputed
        }
    };
    let dout = dout.as_standard_layout();
    let mut dx = Array4::zeros(x.raw_dim());
    if h * w == 0 || ho * wo == 0 {
        return dx;
    }
    let dx_s = dx.as_slice_mut().expect("standard layout");
    let d_s = dout.as_slice().expect("standard layout");
    let a_s = argmax.as_slice().expect("standard layout");
    // One (H, W) plane per task: the scatter-add never leaves its plane.
    let per_plane = |((dx_p, d_p), a_p): ((&mut [F], &[F]), &[usize])| {
        for (&d, &at) in d_p.iter().zip(a_p) {
            dx_p[at] += d;
        }
    };
    if parallel::split(dx_s.len(), parallel::ELEMENTWISE_SPLIT) {
        dx_s.par_chunks_exact_mut(h * w)
            .zip(d_s.par_chunks_exact(ho * wo))
            .zip(a_s.par_chunks_exact(ho * wo))
            .for_each(per_plane);
    } else {
        dx_s.chunks_exact_mut(h * w).zip(d_s.chunks_exact(ho * wo)).zip(a_s.chunks_exact(ho * wo)).for_each(per_plane);
    }
    dx
}

/// Max pool backward as one scatter-add into the recorded argmax positions. Same contract
/// as [`backward_naive`]:
///
/// * `dout`: (N, C, H', W') upstream gradient
/// * `cache`: from [`forward_fast`] (or [`forward_naive`]: the argmax is recomputed)
///
/// Returns `dx`: (N, C, H, W).
///
/// # Panics
/// As [`backward_naive`].
pub fn backward_fast<F: Float>(dout: &Array4<F>, cache: &PoolCache<F>) -> Array4<F> {
    backward_fast_view(dout.view(), cache)
}

/// A max pool layer ([`forward_fast`] / [`backward_fast`]) without parameters:
/// input (N, C, H, W), output (N, C, H', W').
pub struct MaxPool<F: Float> {
    pool: PoolParam,
    cache: Option<PoolCache<F>>,
}

impl<F: Float> MaxPool<F> {
    /// A max pool with the given window and stride.
    ///
    /// # Panics
    /// When the stride or a window side is 0.
    pub fn new(pool: PoolParam) -> Self {
        assert!(
            pool.stride >= 1 && pool.height >= 1 && pool.width >= 1,
            "maxpool: empty window or zero stride {pool:?}"
        );
        MaxPool { pool, cache: None }
    }
}

impl<F: Float> Layer<F> for MaxPool<F> {
    fn kind(&self) -> &'static str {
        "maxpool"
    }

    fn describe(&self) -> String {
        format!("maxpool {}x{} stride {}", self.pool.height, self.pool.width, self.pool.stride)
    }

    fn forward(&mut self, x: Tensor<F>, _mode: Mode) -> Tensor<F> {
        assert_eq!(x.ndim(), 4, "maxpool: expected a 4-D input (N, C, H, W), got shape {:?}", x.shape());
        let x = x.into_dimensionality::<Ix4>().expect("checked 4-D");
        let (out, cache) = forward_fast_owned(x, self.pool);
        self.cache = Some(cache);
        out.into_dyn()
    }

    fn backward(&mut self, dout: Tensor<F>) -> Tensor<F> {
        let cache = self.cache.as_ref().expect("maxpool: backward called before forward");
        assert_eq!(dout.ndim(), 4, "maxpool: expected a 4-D dout (N, C, H', W'), got shape {:?}", dout.shape());
        let dout = dout.view().into_dimensionality::<Ix4>().expect("checked 4-D");
        backward_fast_view(dout, cache).into_dyn()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_array, rel_error};
    use crate::layers::testutil::assert_good;
    use crate::tensor::{cast, linspace, permutation, randn, rng};

    /// (N, C, H, W, PH, PW, stride): tiling, overlapping (stride < window), non-square,
    /// a stride that leaves a last row out, and a batch of one.
    const SHAPES: [(usize, usize, usize, usize, usize, usize, usize); 6] = [
        (1, 2, 4, 4, 2, 2, 2),
        (2, 3, 7, 7, 3, 3, 2),
        (2, 2, 6, 9, 2, 3, 1),
        (3, 1, 5, 8, 2, 2, 2),
        (1, 3, 6, 4, 3, 2, 1),
        (2, 2, 9, 6, 3, 3, 3),
    ];

    /// Distinct values at least 1 / (N C H W) apart, in random positions: no two inputs are
    /// within the finite-difference step of a tie, so no difference crosses a kink.
    fn distinct_input(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f64> {
        let len = shape.0 * shape.1 * shape.2 * shape.3;
        let perm = permutation(len, &mut rng(seed));
        Array4::from_shape_vec(shape, perm.iter().map(|&p| p as f64 / len as f64 - 0.5).collect()).unwrap()
    }

    fn case(
        shape: (usize, usize, usize, usize, usize, usize, usize),
        seed: u64,
    ) -> (Array4<f64>, PoolParam, Array4<f64>) {
        let (n, c, h, w, height, width, stride) = shape;
        let pool = PoolParam { height, width, stride };
        let (ho, wo) = pool.output_size((h, w)).unwrap();
        (distinct_input((n, c, h, w), seed), pool, randn((n, c, ho, wo), 1.0, &mut rng(seed + 1000)))
    }

    fn max_abs_diff(a: &Array4<f64>, b: &Array4<f64>) -> f64 {
        assert_eq!(a.shape(), b.shape());
        a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }

    #[test]
    fn gradients_on_random_shapes() {
        for (seed, &shape) in SHAPES.iter().enumerate() {
            let (x, pool, dout) = case(shape, seed as u64);
            println!("maxpool shape {shape:?}");
            let (_, cache) = forward_naive(&x, pool);
            let dx = backward_naive(&dout, &cache);
            let r = check_array("maxpool naive dx", |x| forward_naive(x, pool).0, &x, &dout, &dx);
            assert_eq!(r.kinks, 0);
            assert_good(&r);
            let (_, cache) = forward_fast(&x, pool);
            let dx = backward_fast(&dout, &cache);
            let r = check_array("maxpool fast dx", |x| forward_fast(x, pool).0, &x, &dout, &dx);
            assert_eq!(r.kinks, 0);
            assert_good(&r);
        }
    }

    #[test]
    fn naive_and_fast_agree() {
        for (seed, &shape) in SHAPES.iter().enumerate() {
            let (n, c, h, w, ..) = shape;
            let (_, pool, dout) = case(shape, 50 + seed as u64);
            let x: Array4<f64> = randn((n, c, h, w), 1.0, &mut rng(seed as u64));
            let (out_n, cache_n) = forward_naive(&x, pool);
            let (out_f, cache_f) = forward_fast(&x, pool);
            let diffs = [
                max_abs_diff(&out_n, &out_f),
                max_abs_diff(&backward_naive(&dout, &cache_n), &backward_fast(&dout, &cache_f)),
                max_abs_diff(&backward_naive(&dout, &cache_f), &backward_fast(&dout, &cache_n)),
            ];
            let worst = diffs.iter().copied().fold(0.0, f64::max);
            println!("maxpool naive vs fast {shape:?}: max abs diff {worst:.3e}");
            assert!(worst < 1e-10, "{shape:?}: {diffs:?}");
        }
    }

    #[test]
    fn ties_route_to_the_first_max_in_row_major_order() {
        // Every window of the 4x4 plane is constant: numpy's argmax picks its top-left.
        let x = Array4::from_shape_fn((1, 1, 4, 4), |(_, _, h, w)| ((h / 2) * 2 + w / 2) as f64);
        let dout = Array4::from_elem((1, 1, 2, 2), 1.0);
        let pool = PoolParam { height: 2, width: 2, stride: 2 };
        let expected = Array4::from_shape_fn((1, 1, 4, 4), |(_, _, h, w)| f64::from(h % 2 == 0 && w % 2 == 0));
        assert_eq!(backward_naive(&dout, &forward_naive(&x, pool).1), expected);
        assert_eq!(backward_fast(&dout, &forward_fast(&x, pool).1), expected);
        // A tie between a later row's first element and an earlier row's last one: the
        // earlier row wins.
        let x = ndarray::Array::from_shape_vec((1, 1, 2, 2), vec![0.0, 5.0, 5.0, 1.0]).unwrap();
        let dout = Array4::from_elem((1, 1, 1, 1), 1.0);
        let expected = ndarray::Array::from_shape_vec((1, 1, 2, 2), vec![0.0, 1.0, 0.0, 0.0]).unwrap();
        assert_eq!(backward_naive(&dout, &forward_naive(&x, pool).1), expected);
        assert_eq!(backward_fast(&dout, &forward_fast(&x, pool).1), expected);
    }

    #[test]
    fn cs231n_max_pool_forward_value() {
        // CS231n's test of max_pool_forward_naive.
        let x = linspace::<f64>(-0.3, 0.4, 2 * 3 * 4 * 4).into_shape_with_order((2, 3, 4, 4)).unwrap();
        let pool = PoolParam { height: 2, width: 2, stride: 2 };
        #[rustfmt::skip]
        let correct = Array4::from_shape_vec((2, 3, 2, 2), vec![
            -0.26315789, -0.24842105, -0.20421053, -0.18947368,
            -0.14526316, -0.13052632, -0.08631579, -0.07157895,
            -0.02736842, -0.01263158, 0.03157895, 0.04631579,
            0.09052632, 0.10526316, 0.14947368, 0.16421053,
            0.20842105, 0.22315789, 0.26736842, 0.28210526,
            0.32631579, 0.34105263, 0.38526316, 0.4,
        ]).unwrap();
        for (name, out) in [("naive", forward_naive(&x, pool).0), ("fast", forward_fast(&x, pool).0)] {
            let e = rel_error(&out, &correct);
            println!("cs231n max_pool_forward {name}: rel_error {e:.3e}");
            assert!(e < 1e-7, "{name}: rel_error {e}");
        }
    }

    #[test]
    fn f32_matches_f64() {
        let x: Array4<f64> = randn((3, 4, 8, 6), 1.0, &mut rng(9));
        let pool = PoolParam { height: 2, width: 2, stride: 2 };
        let out64 = forward_fast(&x, pool).0;
        let out32 = forward_fast::<f32>(&cast(&x), pool).0;
        let e = rel_error(&cast(&out32), &out64);
        println!("maxpool fast f32 vs f64: rel_error {e:.3e}");
        assert!(e < 1e-4, "{e}");
    }

    #[test]
    fn layer_matches_free_functions_and_describes_itself() {
        let pool = PoolParam { height: 2, width: 2, stride: 2 };
        let mut layer = MaxPool::<f64>::new(pool);
        assert_eq!(layer.describe(), "maxpool 2x2 stride 2");
        assert!(layer.params().is_empty());
        let x = distinct_input((2, 3, 6, 4), 3);
        let dout: Array4<f64> = randn((2, 3, 3, 2), 1.0, &mut rng(4));
        let out = layer.forward(x.clone().into_dyn(), Mode::Train);
        let dx = layer.backward(dout.clone().into_dyn());
        let (out_ref, cache) = forward_naive(&x, pool);
        assert_eq!(out, out_ref.into_dyn());
        assert_eq!(dx, backward_naive(&dout, &cache).into_dyn());
    }

    #[test]
    fn shape_errors_name_the_shapes() {
        let pool = PoolParam { height: 3, width: 3, stride: 2 };
        assert_eq!(pool.output_size((8, 7)), Ok((3, 3)));
        let e = pool.output_size((2, 7)).unwrap_err();
        assert!(e.contains("3x3") && e.contains("2x7"), "{e}");
        assert!(PoolParam { stride: 0, ..pool }.output_size((8, 8)).is_err());
    }
}
