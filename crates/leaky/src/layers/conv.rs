//! 2-D convolution: a naive forward/backward pair and a fast im2col + GEMM pair with the
//! same signatures and the same results.
//!
//! Dimension letters: N = batch, C = input channels, H/W = input height/width,
//! F = filters (output channels), HH/WW = filter height/width, H'/W' = output height/width,
//! K = C * HH * WW (one receptive field, flattened), P = H' * W' (output positions per image).
//!
//! # The math (CS231n's `conv_forward_naive`)
//!
//! With `xp` the input zero-padded by `pad` on both sides of H and W, and `s` the stride:
//!
//! ```text
//! out[n, f, oh, ow] = b[f] + sum_{c, i, j} w[f, c, i, j] * xp[n, c, oh*s + i, ow*s + j]
//! H' = 1 + (H + 2 pad - HH) / s        W' = 1 + (W + 2 pad - WW) / s
//! ```
//!
//! Every output is an affine function of one window, so backward is the affine layer's
//! backward summed over windows:
//!
//! ```text
//! db[f]                          = sum_{n, oh, ow} dout[n, f, oh, ow]
//! dw[f, c, i, j]                 = sum_{n, oh, ow} dout[n, f, oh, ow] * xp[n, c, oh*s + i, ow*s + j]
//! dxp[n, c, oh*s + i, ow*s + j] += sum_f           dout[n, f, oh, ow] * w[f, c, i, j]
//! ```
//!
//! A pixel covered by several windows (stride < filter size) collects a gradient from each;
//! `dx` is `dxp` without its padding border.
//!
//! # Naive vs im2col
//!
//! [`forward_naive`] / [`backward_naive`] transcribe the sums above loop by loop: the
//! reference. [`forward_fast`] / [`backward_fast`] use *im2col*: the window of output
//! position `p = (oh, ow)` of image `n` is copied into column `p` of a (K, P) matrix
//! `cols[n]`, after which the whole convolution is one GEMM per image, which runs near the
//! machine's peak:
//!
//! ```text
//! out[n] (F, P) = W (F, K) @ cols[n] (K, P) + b          W = w reshaped to (F, K)
//! dW     (F, K) = sum_n dout[n] (F, P) @ cols[n]^T (P, K)
//! dcols[n] (K, P) = W^T (K, F) @ dout[n] (F, P)          dx[n] = col2im(dcols[n])
//! ```
//!
//! *col2im* is the adjoint of im2col: where im2col copied a pixel into several columns
//! (overlapping windows), col2im adds all of those columns' gradients back into that pixel.
//! The price is memory: `cols[n]` holds about HH * WW / s^2 copies of the image, so the fast
//! pair builds it one image at a time into a buffer that stays in cache (backward builds it
//! again rather than keeping the whole batch's matrices, which would go to main memory and
//! back), and runs the three products with kernels that read `cols[n]` and `dout[n]` where
//! they are ([`crate::tensor::gemm_rows`], [`crate::tensor::AbtSums`]). The padding is
//! never materialised: entries of `cols` that fall in it stay zero, and their gradients
//! (which belong to the padding) are dropped by col2im.
//!
//! Either backward accepts the cache of either forward.

use crate::nn::{Layer, Mode, Param};
use crate::parallel;
use crate::tensor::{gemm_rows, randn, AbtSums, Float, Init, Tensor};
use ndarray::{s, Array1, Array4, ArrayView1, ArrayView4, Ix4};
use rayon::prelude::*;

/// Stride and zero padding of a convolution (CS231n's `conv_param`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvParam {
    /// Step between neighbouring windows, in pixels, along H and W (at least 1).
    pub stride: usize,
    /// Zeros added on each side of H and of W.
    pub pad: usize,
}

impl ConvParam {
    /// Output size (H', W') for an input of size (H, W) and a filter of size (HH, WW),
    /// or a message naming the sizes when the filter does not fit or the stride does not
    /// divide `H + 2 pad - HH` (or `W + 2 pad - WW`).
    pub fn output_size(self, (h, w): (usize, usize), (hh, ww): (usize, usize)) -> Result<(usize, usize), String> {
        let fit = |len: usize, k: usize, what: &str| -> Result<usize, String> {
            let (s, pad) = (self.stride, self.pad);
            if s == 0 {
                return Err("conv: stride must be at least 1".to_string());
            }
            if k == 0 || len + 2 * pad < k {
                return Err(format!("conv: filter {what} {k} does not fit input {what} {len} with pad {pad}"));
            }
            if (len + 2 * pad - k) % s != 0 {
                return Err(format!(
                    "conv: stride {s} does not divide input {what} {len} + 2*pad {pad} - filter {what} {k}"
                ));
            }
            Ok(1 + (len + 2 * pad - k) / s)
        };
        Ok((fit(h, hh, "height")?, fit(w, ww, "width")?))
    }
}

/// What the backward passes need from a forward pass (either one).
#[derive(Clone, Debug)]
pub struct ConvCache<F> {
    /// The input (N, C, H, W), unpadded.
    pub x: Array4<F>,
    /// Stride and padding used.
    pub conv: ConvParam,
}

/// Check every shape and return (H', W'), panicking with a message that names them.
fn output_hw<F: Float>(
    x: (usize, usize, usize, usize),
    w: ArrayView4<F>,
    b_len: usize,
    conv: ConvParam,
) -> (usize, usize) {
    let (n, c, h, wd) = x;
    let (f, wc, hh, ww) = w.dim();
    assert_eq!(c, wc, "conv: input (N, C, H, W) = {:?} has {c} channels but weight {:?} expects {wc}", x, w.dim());
    assert_eq!(b_len, f, "conv: weight {:?} has {f} filters but bias has {b_len}", w.dim());
    conv.output_size((h, wd), (hh, ww))
        .unwrap_or_else(|e| panic!("{e} (input {:?}, weight {:?}, {conv:?})", (n, c, h, wd), w.dim()))
}

/// `x` (N, C, H, W) with `pad` zeros on both sides of H and W: (N, C, H + 2 pad, W + 2 pad).
fn zero_pad<F: Float>(x: &Array4<F>, pad: usize) -> Array4<F> {
    let (n, c, h, w) = x.dim();
    let mut xp = Array4::zeros((n, c, h + 2 * pad, w + 2 * pad));
    xp.slice_mut(s![.., .., pad..pad + h, pad..pad + w]).assign(x);
    xp
}

/// Convolution forward, the six loops of the definition.
///
/// * `x`: (N, C, H, W)
/// * `w`: (F, C, HH, WW)
/// * `b`: (F,)
/// * `conv`: stride and zero padding
///
/// Returns `out`: (N, F, H', W') with H' = 1 + (H + 2 pad - HH) / stride,
/// W' = 1 + (W + 2 pad - WW) / stride, and the cache.
///
/// # Panics
/// When the channels of `x` and `w` or the filters of `w` and `b` differ, when the stride is
/// 0, or when the stride does not divide `H + 2 pad - HH` or `W + 2 pad - WW` (see
/// [`ConvParam::output_size`]); the message names the shapes.
pub fn forward_naive<F: Float>(
    x: &Array4<F>,
    w: &Array4<F>,
    b: &Array1<F>,
    conv: ConvParam,
) -> (Array4<F>, ConvCache<F>) {
    let (ho, wo) = output_hw(x.dim(), w.view(), b.len(), conv);
    let (n, c, _, _) = x.dim();
    let (f, _, hh, ww) = w.dim();
    let s = conv.stride;
    let xp = zero_pad(x, conv.pad);
    let mut out = Array4::zeros((n, f, ho, wo));
    for ni in 0..n {
        for fi in 0..f {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut acc = b[fi];
                    for ci in 0..c {
                        for i in 0..hh {
                            for j in 0..ww {
                                acc += w[[fi, ci, i, j]] * xp[[ni, ci, oh * s + i, ow * s + j]];
                            }
                        }
                    }
                    out[[ni, fi, oh, ow]] = acc;
                }
            }
        }
    }
    (out, ConvCache { x: x.clone(), conv })
}

/// Convolution backward, the loops of the definition.
///
/// * `dout`: (N, F, H', W') upstream gradient
/// * `cache`: from [`forward_naive`] or [`forward_fast`]
/// * `w`: (F, C, HH, WW), the weight used in the forward pass
///
/// Returns `(dx, dw, db)` with shapes (N, C, H, W), (F, C, HH, WW), (F,).
///
/// # Panics
/// When the shapes are inconsistent (see [`forward_naive`]) or `dout` is not (N, F, H', W').
pub fn backward_naive<F: Float>(
    dout: &Array4<F>,
    cache: &ConvCache<F>,
    w: &Array4<F>,
) -> (Array4<F>, Array4<F>, Array1<F>) {
    let x = &cache.x;
    let (ho, wo) = output_hw(x.dim(), w.view(), w.dim().0, cache.conv);
    let (n, c, h, wd) = x.dim();
    let (f, _, hh, ww) = w.dim();
    assert_eq!(dout.dim(), (n, f, ho, wo), "conv: dout has shape {:?}, expected (N, F, H', W')", dout.dim());
    let (s, pad) = (cache.conv.stride, cache.conv.pad);
    let xp = zero_pad(x, pad);
    let mut dxp = Array4::zeros(xp.raw_dim());
    let mut dw = Array4::zeros(w.raw_dim());
    let mut db = Array1::zeros(f);
    for ni in 0..n {
        for fi in 0..f {
            for oh in 0..ho {
                for ow in 0..wo {
                    let d = dout[[ni, fi, oh, ow]];
                    db[fi] += d;
                    for ci in 0..c {
                        for i in 0..hh {
                            for j in 0..ww {
                                dw[[fi, ci, i, j]] += d * xp[[ni, ci, oh * s + i, ow * s + j]];
                                dxp[[ni, ci, oh * s + i, ow * s + j]] += d * w[[fi, ci, i, j]];
                            }
                        }
                    }
                }
            }
        }
    }
    let dx = dxp.slice(s![.., .., pad..pad + h, pad..pad + wd]).to_owned();
    (dx, dw, db)
}

/// The sizes im2col and col2im need, gathered once.
#[derive(Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    hh: usize,
    ww: usize,
    ho: usize,
    wo: usize,
    stride: usize,
    pad: usize,
}

impl Geometry {
    /// Output indices `o` in `lo..hi` are exactly those whose input index `o * stride + offset`
    /// lies in `0..len`; the others read the zero padding.
    fn valid(&self, out_len: usize, len: usize, offset: isize) -> (usize, usize) {
        let s = self.stride as isize;
        let lo = if offset >= 0 { 0 } else { (-offset + s - 1) / s };
        let room = len as isize - offset;
        let hi = if room <= 0 { 0 } else { ((room + s - 1) / s).min(out_len as isize) };
        (lo.min(hi) as usize, hi as usize)
    }

    /// Calls `visit(k, oh, ow_lo..ow_hi, first)` for every row of output positions whose
    /// window element `k = (c, i, j)` lies inside the image, where `first` is the flat
    /// (C, H, W) index of the pixel seen by `ow_lo`; the next ones follow every `stride`.
    fn for_each_segment(&self, mut visit: impl FnMut(usize, usize, std::ops::Range<usize>, usize)) {
        let pad = self.pad as isize;
        for c in 0..self.c {
            for i in 0..self.hh {
                let (oh_lo, oh_hi) = self.valid(self.ho, self.h, i as isize - pad);
                for j in 0..self.ww {
                    let (ow_lo, ow_hi) = self.valid(self.wo, self.w, j as isize - pad);
                    if ow_lo == ow_hi {
                        continue;
                    }
                    let k = (c * self.hh + i) * self.ww + j;
                    let col = (ow_lo * self.stride + j) - self.pad;
                    for oh in oh_lo..oh_hi {
                        let row = (oh * self.stride + i) - self.pad;
                        visit(k, oh, ow_lo..ow_hi, (c * self.h + row) * self.w + col);
                    }
                }
            }
        }
    }

    /// im2col of one image: `x` (C, H, W) into `cols` (K, P), which must be zero on entry
    /// or hold an earlier image's im2col of this geometry (the padding entries are left as
    /// they are or set to zero).
    fn im2col<F: Float>(&self, x: &[F], cols: &mut [F]) {
        if self.stride == 1 && self.wo == self.w && self.pad < self.w {
            self.im2col_same(x, cols);
        } else {
            self.im2col_segments(x, cols);
        }
    }

    /// [`Geometry::im2col`] one row segment at a time (any stride and padding).
    fn im2col_segments<F: Float>(&self, x: &[F], cols: &mut [F]) {
        let (p, wo, s) = (self.ho * self.wo, self.wo, self.stride);
        self.for_each_segment(|k, oh, ows, first| {
            let dst = &mut cols[k * p + oh * wo..][ows.clone()];
            if s == 1 {
                dst.copy_from_slice(&x[first..first + ows.len()]);
            } else {
                for (d, &v) in dst.iter_mut().zip(x[first..].iter().step_by(s)) {
                    *d = v;
                }
            }
        });
    }

    /// [`Geometry::im2col`] for stride 1 and W' = W ("same" width: 2 pad = WW - 1), where
    /// output row `oh` of window element (c, i, j) is input row `oh + i - pad` shifted by
    /// `j - pad` columns: the rows of the valid range of `oh` are one run of the input plane,
    /// copied at once (instead of one short copy per output row), after which the columns
    /// that the shift carried over from the neighbouring row are set to zero (they are
    /// padding). Writes the same values as the general path.
    fn im2col_same<F: Float>(&self, x: &[F], cols: &mut [F]) {
        let (h, w, p) = (self.h, self.w, self.ho * self.wo);
        let pad = self.pad as isize;
        for c in 0..self.c {
            let plane = &x[c * h * w..][..h * w];
            for i in 0..self.hh {
                let (oh_lo, oh_hi) = self.valid(self.ho, h, i as isize - pad);
                for j in 0..self.ww {
                    let k = (c * self.hh + i) * self.ww + j;
                    let shift = j as isize - pad;
                    let dst = &mut cols[k * p + oh_lo * w..k * p + oh_hi * w];
                    // dst[t] = plane[start + t] where that lies in the plane, else zero.
                    let start = ((oh_lo + i) as isize - pad) * w as isize + shift;
                    let lo = (-start).clamp(0, dst.len() as isize) as usize;
                    let hi = ((plane.len() as isize - start).clamp(lo as isize, dst.len() as isize)) as usize;
                    dst[..lo].fill(F::zero());
                    let from = (start + lo as isize) as usize;
                    dst[lo..hi].copy_from_slice(&plane[from..from + (hi - lo)]);
                    dst[hi..].fill(F::zero());
                    // The columns shifted in from the neighbouring input row are padding.
                    let (z0, z1) = if shift < 0 { (0, (-shift) as usize) } else { (w - shift as usize, w) };
                    for col in z0..z1 {
                        for v in dst.iter_mut().skip(col).step_by(w) {
                            *v = F::zero();
                        }
                    }
                }
            }
        }
    }

    /// col2im of one image, the adjoint of [`Geometry::im2col`]: `dx` (C, H, W) += the
    /// entries of `dcols` (K, P) at the pixels they were copied from.
    fn col2im<F: Float>(&self, dcols: &[F], dx: &mut [F]) {
        let (p, wo, s) = (self.ho * self.wo, self.wo, self.stride);
        self.for_each_segment(|k, oh, ows, first| {
            let src = &dcols[k * p + oh * wo..][ows.clone()];
            if s == 1 {
                for (d, &v) in dx[first..first + ows.len()].iter_mut().zip(src) {
                    *d += v;
                }
            } else {
                for (d, &v) in dx[first..].iter_mut().step_by(s).zip(src) {
                    *d += v;
                }
            }
        });
    }
}

/// Check every shape (see [`output_hw`]) and gather the sizes of the fast path.
fn geometry<F: Float>(x: (usize, usize, usize, usize), w: ArrayView4<F>, b_len: usize, conv: ConvParam) -> Geometry {
    let (ho, wo) = output_hw(x, w, b_len, conv);
    let (_, c, h, wd) = x;
    let (_, _, hh, ww) = w.dim();
    Geometry { c, h, w: wd, hh, ww, ho, wo, stride: conv.stride, pad: conv.pad }
}

/// Images per piece of the fast backward pass: the batch is cut into pieces of this many
/// images (the last one shorter), whatever the number of threads; each piece runs on one
/// thread with its own im2col buffer, and the pieces' weight and bias gradients are added
/// in order. So the pieces, and the results, depend only on the batch size. (The forward
/// pass, where images do not interact, uses pieces of at most this many.)
const IMAGES_PER_PIECE: usize = 8;

/// `sum(xs)` in 16 interleaved partial sums (`xs[v], xs[v + 16], ...` in order, then the 16
/// partial sums in order): the same bits every time, and vectorisable (a plain running sum
/// waits on each addition in turn).
fn sum_in_lanes<F: Float>(xs: &[F]) -> F {
    let mut acc = [F::zero(); 16];
    let mut chunks = xs.chunks_exact(16);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += v;
    }
    acc.iter().fold(F::zero(), |s, &v| s + v)
}

/// [`forward_fast`] on an owned input (kept in the cache without a copy) and borrowed
/// parameters, for [`Conv2d`].
///
/// Per image: im2col into a (K, P) buffer that stays in cache, then
/// `out[n] (F, P) = W (F, K) @ cols (K, P) + b` ([`gemm_rows`], which reads `cols` in place).
/// Pieces of up to [`IMAGES_PER_PIECE`] images run in parallel on the thread pool when the
/// batch is large enough; each image's output is computed by the same operations either way.
/// The im2col matrix is not kept: backward rebuilds it image by image, which costs less
/// than writing the whole batch's matrix (K * P values per image, about HH * WW times the
/// input) to memory and reading it back.
fn forward_fast_owned<F: Float>(
    x: Array4<F>,
    w: ArrayView4<F>,
    b: ArrayView1<F>,
    conv: ConvParam,
) -> (Array4<F>, ConvCache<F>) {
    let g = geometry(x.dim(), w, b.len(), conv);
    let (n, f, k, p) = (x.dim().0, w.dim().0, g.c * g.hh * g.ww, g.ho * g.wo);
    let w = w.as_standard_layout();
    let w_s = w.as_slice().expect("standard layout");
    let mut out = Array4::zeros((n, f, g.ho, g.wo));
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    let image = g.c * g.h * g.w;
    let b = b.to_vec();
    // The images `first..` whose outputs are `out_piece`.
    let per_piece = |first: usize, out_piece: &mut [F]| {
        // Zeroed once: im2col never writes the padding entries, so they stay zero.
        let mut cols = vec![F::zero(); k * p];
        for (j, out_n) in out_piece.chunks_exact_mut(f * p).enumerate() {
            let i = first + j;
            for (row, &bf) in out_n.chunks_exact_mut(p).zip(&b) {
                row.fill(bf);
            }
            // (An image of no pixels, H = 0 or W = 0 with padding, has only padding
            // entries: the output is the bias.)
            if k > 0 && image > 0 {
                g.im2col(&xs[i * image..][..image], &mut cols);
                gemm_rows(w_s, &cols, p, (f, k, p), out_n, true);
            }
        }
    };
    if f * p > 0 && n > 0 {
        let out_s = out.as_slice_mut().expect("standard layout");
        let work = n * (2 * f * k * p + k * p);
        if n > 1 && parallel::split(work, parallel::GEMM_SPLIT_FLOPS) {
            // Each image's output depends on that image only, so any cut gives the same
            // bits; small batches are cut finer so that every thread gets images.
            let images = IMAGES_PER_PIECE.min(n.div_ceil(parallel::threads()));
            out_s.par_chunks_mut(images * f * p).enumerate().for_each(|(piece, o)| per_piece(images * piece, o));
        } else {
            per_piece(0, out_s);
        }
    }
    (out, ConvCache { x, conv })
}

/// Convolution forward with im2col + GEMM. Same contract as [`forward_naive`]:
///
/// * `x`: (N, C, H, W)
/// * `w`: (F, C, HH, WW)
/// * `b`: (F,)
/// * `conv`: stride and zero padding
///
/// Returns `out`: (N, F, H', W') and the cache.
///
/// # Panics
/// As [`forward_naive`].
pub fn forward_fast<F: Float>(
    x: &Array4<F>,
    w: &Array4<F>,
    b: &Array1<F>,
    conv: ConvParam,
) -> (Array4<F>, ConvCache<F>) {
    forward_fast_owned(x.clone(), w.view(), b.view(), conv)
}

/// [`backward_fast`] on borrowed arrays, for [`Conv2d`]; `dx` only when `want_dx`.
///
/// One pass over the images, in pieces of [`IMAGES_PER_PIECE`] images (in parallel on the
/// thread pool when the batch is large enough), per image:
/// * `db[f] += sum_P dout[n, f]` ([`sum_in_lanes`]);
/// * im2col of `x[n]` into a (K, P) buffer, and `dW += dout[n] (F, P) cols^T (P, K)`
///   ([`AbtSums`]: both operands read along P in place);
/// * when `want_dx`: `dcols (K, P) = W^T (K, F) dout[n] (F, P)` ([`gemm_rows`]) and
///   `dx[n] = col2im(dcols)`.
///
/// The pieces' dW and db are then added in piece order. The pieces depend only on N, so
/// every value is computed by the same operations whatever the number of threads.
fn backward_fast_view<F: Float>(
    dout: ArrayView4<F>,
    cache: &ConvCache<F>,
    w: ArrayView4<F>,
    want_dx: bool,
) -> (Option<Array4<F>>, Array4<F>, Array1<F>) {
    let x = &cache.x;
    let g = geometry(x.dim(), w, w.dim().0, cache.conv);
    let (n, f, k, p) = (x.dim().0, w.dim().0, g.c * g.hh * g.ww, g.ho * g.wo);
    assert_eq!(dout.dim(), (n, f, g.ho, g.wo), "conv: dout has shape {:?}, expected (N, F, H', W')", dout.dim());
    let image = g.c * g.h * g.w;
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    // W^T (K, F), row-major: the left operand of the input gradient's product.
    let w_std = w.as_standard_layout();
    let wt =
        w_std.view().into_shape_with_order((f, k)).expect("contiguous reshape").t().as_standard_layout().into_owned();
    let wt_s = wt.as_slice().expect("standard layout");
    let dout = dout.as_standard_layout();
    let dout_s = dout.as_slice().expect("standard layout");

    let mut dw = Array4::zeros(w.raw_dim());
    let mut db = Array1::zeros(f);
    let mut dx = if want_dx { Some(Array4::zeros(x.raw_dim())) } else { None };
    if n == 0 || f * p == 0 {
        return (dx, dw, db);
    }
    // The weight and bias gradients of the images of piece `piece`; their input gradients
    // into `dx_piece` ((images, C, H, W), when wanted).
    let per_piece = |piece: usize, dx_piece: Option<&mut [F]>| -> (Vec<F>, Vec<F>) {
        let first = piece * IMAGES_PER_PIECE;
        let images = IMAGES_PER_PIECE.min(n - first);
        let mut sums = AbtSums::new(f, k);
        let mut db_piece = vec![F::zero(); f];
        // Zeroed once: im2col never writes the padding entries, so they stay zero.
        let mut cols = vec![F::zero(); k * p];
        let mut dcols = vec![F::zero(); if dx_piece.is_some() { k * p } else { 0 }];
        let mut dx_piece = dx_piece;
        for j in 0..images {
            let i = first + j;
            let dout_n = &dout_s[i * f * p..][..f * p];
            for (dbf, row) in db_piece.iter_mut().zip(dout_n.chunks_exact(p)) {
                *dbf += sum_in_lanes(row);
            }
            if k == 0 {
                continue;
            }
            if image > 0 {
                g.im2col(&xs[i * image..][..image], &mut cols);
            }
            sums.add(dout_n, &cols, p);
            if let Some(dx_piece) = dx_piece.as_deref_mut() {
                gemm_rows(wt_s, dout_n, p, (k, f, p), &mut dcols, false);
                g.col2im(&dcols, &mut dx_piece[j * image..][..image]);
            }
        }
        let mut dw_piece = vec![F::zero(); f * k];
        sums.finish(&mut dw_piece);
        (dw_piece, db_piece)
    };
    let pieces = n.div_ceil(IMAGES_PER_PIECE);
    let work = 2 * n * f * k * p * if want_dx { 2 } else { 1 };
    let parallel = pieces > 1 && parallel::split(work, parallel::GEMM_SPLIT_FLOPS);
    let dx_s = dx.as_mut().map(|dx| dx.as_slice_mut().expect("standard layout")).filter(|_| image > 0);
    let results: Vec<(Vec<F>, Vec<F>)> = match (dx_s, parallel) {
        (Some(dx_s), true) => dx_s
            .par_chunks_mut(IMAGES_PER_PIECE * image)
            .enumerate()
            .map(|(piece, d)| per_piece(piece, Some(d)))
            .collect(),
        (Some(dx_s), false) => {
            dx_s.chunks_mut(IMAGES_PER_PIECE * image).enumerate().map(|(piece, d)| per_piece(piece, Some(d))).collect()
        }
        (None, true) => (0..pieces).into_par_iter().map(|piece| per_piece(piece, None)).collect(),
        (None, false) => (0..pieces).map(|piece| per_piece(piece, None)).collect(),
    };
    let dw_s = dw.as_slice_mut().expect("standard layout");
    for (dw_piece, db_piece) in &results {
        for (d, &v) in dw_s.iter_mut().zip(dw_piece) {
            *d += v;
        }
        for (d, &v) in db.iter_mut().zip(db_piece) {
            *d += v;
        }
    }
    (dx, dw, db)
}

/// Convolution backward with GEMM + col2im. Same contract as [`backward_naive`]:
///
/// * `dout`: (N, F, H', W') upstream gradient
/// * `cache`: from [`forward_fast`] or [`forward_naive`]
/// * `w`: (F, C, HH, WW), the weight used in the forward pass
///
/// Returns `(dx, dw, db)` with shapes (N, C, H, W), (F, C, HH, WW), (F,).
///
/// # Panics
/// As [`backward_naive`].
pub fn backward_fast<F: Float>(
    dout: &Array4<F>,
    cache: &ConvCache<F>,
    w: &Array4<F>,
) -> (Array4<F>, Array4<F>, Array1<F>) {
    let (dx, dw, db) = backward_fast_view(dout.view(), cache, w.view(), true);
    (dx.expect("dx was asked for"), dw, db)
}

/// A convolution layer ([`forward_fast`] / [`backward_fast`]): parameters `W` (F, C, HH, WW)
/// and `b` (F,); input (N, C, H, W), output (N, F, H', W').
pub struct Conv2d<F: Float> {
    w: Param<F>,
    b: Param<F>,
    conv: ConvParam,
    cache: Option<ConvCache<F>>,
}

impl<F: Float> Conv2d<F> {
    /// A layer of `f` filters of size (`c`, `hh`, `ww`): `W` drawn with `init`
    /// (fan_in = C * HH * WW, fan_out = F * HH * WW), `b` zero.
    pub fn new(
        c: usize,
        f: usize,
        hh: usize,
        ww: usize,
        conv: ConvParam,
        init: Init,
        rng: &mut impl rand::Rng,
    ) -> Self {
        let std = init.std(c * hh * ww, f * hh * ww);
        Self::from_params(randn((f, c, hh, ww), std, rng), Array1::zeros(f), conv)
    }

    /// A layer with the given weight (F, C, HH, WW) and bias (F,).
    pub fn from_params(w: Array4<F>, b: Array1<F>, conv: ConvParam) -> Self {
        assert_eq!(w.dim().0, b.len(), "conv: weight {:?} has {} filters but bias has {}", w.dim(), w.dim().0, b.len());
        assert!(conv.stride >= 1, "conv: stride must be at least 1");
        Conv2d { w: Param::new("W", w.into_dyn(), true), b: Param::new("b", b.into_dyn(), false), conv, cache: None }
    }

    /// The weight as a 4-D view (F, C, HH, WW).
    pub fn weight(&self) -> ArrayView4<'_, F> {
        self.w.value.view().into_dimensionality().expect("4-D weight")
    }

    /// The bias as a 1-D view (F,).
    pub fn bias(&self) -> ArrayView1<'_, F> {
        self.b.value.view().into_dimensionality().expect("1-D bias")
    }

    /// The backward pass of [`Layer::backward`]: sets the parameter gradients and returns dx
    /// when `want_dx`.
    fn backward_maybe_dx(&mut self, dout: Tensor<F>, want_dx: bool) -> Option<Array4<F>> {
        let cache = self.cache.as_ref().expect("conv: backward called before forward");
        assert_eq!(dout.ndim(), 4, "conv: expected a 4-D dout (N, F, H', W'), got shape {:?}", dout.shape());
        let dout = dout.view().into_dimensionality::<Ix4>().expect("checked 4-D");
        let w = self.w.value.view().into_dimensionality::<Ix4>().expect("4-D weight");
        let (dx, dw, db) = backward_fast_view(dout, cache, w, want_dx);
        self.w.grad = dw.into_dyn();
        self.b.grad = db.into_dyn();
        dx
    }
}

impl<F: Float> Layer<F> for Conv2d<F> {
    fn kind(&self) -> &'static str {
        "conv"
    }

    fn describe(&self) -> String {
        let (f, c, hh, ww) = self.weight().dim();
        format!("conv {hh}x{ww} {c}->{f} stride {} pad {}", self.conv.stride, self.conv.pad)
    }

    fn forward(&mut self, x: Tensor<F>, _mode: Mode) -> Tensor<F> {
        assert_eq!(x.ndim(), 4, "conv: expected a 4-D input (N, C, H, W), got shape {:?}", x.shape());
        let x = x.into_dimensionality::<Ix4>().expect("checked 4-D");
        self.cache = None;
        let (out, cache) = forward_fast_owned(x, self.weight(), self.bias(), self.conv);
        self.cache = Some(cache);
        out.into_dyn()
    }

    fn backward(&mut self, dout: Tensor<F>) -> Tensor<F> {
        self.backward_maybe_dx(dout, true).expect("dx was asked for").into_dyn()
    }

    /// As `backward`, without the input gradient (its product and col2im are skipped).
    fn backward_params(&mut self, dout: Tensor<F>) {
        self.backward_maybe_dx(dout, false);
    }

    fn params(&self) -> Vec<&Param<F>> {
        vec![&self.w, &self.b]
    }

    fn params_mut(&mut self) -> Vec<&mut Param<F>> {
        vec![&mut self.w, &mut self.b]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_array, rel_error};
    use crate::layers::testutil::assert_good;
    use crate::tensor::{cast, linspace, rng};

    /// (N, C, H, W, F, HH, WW, stride, pad).
    type Shape = (usize, usize, usize, usize, usize, usize, usize, usize, usize);

    /// A batch of one, non-square inputs and filters, stride 1 and 2, pad 0 and 1.
    const SHAPES: [Shape; 6] = [
        (1, 2, 5, 5, 3, 3, 3, 1, 1),
        (2, 3, 7, 5, 2, 3, 3, 2, 0),
        (2, 2, 5, 7, 3, 3, 3, 2, 1),
        (1, 3, 4, 6, 2, 3, 1, 1, 0),
        (3, 1, 6, 6, 2, 2, 2, 2, 1),
        (2, 2, 6, 5, 4, 2, 3, 1, 1),
    ];

    type Case = (Array4<f64>, Array4<f64>, Array1<f64>, ConvParam, Array4<f64>);

    fn random_case(shape: Shape, seed: u64) -> Case {
        let (n, c, h, w, f, hh, ww, stride, pad) = shape;
        let conv = ConvParam { stride, pad };
        let mut r = rng(seed);
        let (ho, wo) = conv.output_size((h, w), (hh, ww)).unwrap();
        (
            randn((n, c, h, w), 1.0, &mut r),
            randn((f, c, hh, ww), 1.0, &mut r),
            randn(f, 1.0, &mut r),
            conv,
            randn((n, f, ho, wo), 1.0, &mut r),
        )
    }

    fn max_abs_diff<D: ndarray::Dimension>(a: &ndarray::Array<f64, D>, b: &ndarray::Array<f64, D>) -> f64 {
        assert_eq!(a.shape(), b.shape());
        a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }

    type Forward = fn(&Array4<f64>, &Array4<f64>, &Array1<f64>, ConvParam) -> (Array4<f64>, ConvCache<f64>);
    type Backward = fn(&Array4<f64>, &ConvCache<f64>, &Array4<f64>) -> (Array4<f64>, Array4<f64>, Array1<f64>);

    fn check_gradients(name: &str, forward: Forward, backward: Backward) {
        for (seed, &shape) in SHAPES.iter().enumerate() {
            let (x, w, b, conv, dout) = random_case(shape, seed as u64);
            let (_, cache) = forward(&x, &w, &b, conv);
            let (dx, dw, db) = backward(&dout, &cache, &w);
            println!("{name} shape {shape:?}");
            assert_good(&check_array(&format!("{name} dx"), |x| forward(x, &w, &b, conv).0, &x, &dout, &dx));
            assert_good(&check_array(&format!("{name} dw"), |w| forward(&x, w, &b, conv).0, &w, &dout, &dw));
            assert_good(&check_array(&format!("{name} db"), |b| forward(&x, &w, b, conv).0, &b, &dout, &db));
        }
    }

    #[test]
    fn naive_gradients_on_random_shapes() {
        check_gradients("conv naive", forward_naive, backward_naive);
    }

    #[test]
    fn fast_gradients_on_random_shapes() {
        check_gradients("conv fast", forward_fast, backward_fast);
    }

    #[test]
    fn naive_and_fast_agree() {
        for (seed, &shape) in SHAPES.iter().enumerate() {
            let (x, w, b, conv, dout) = random_case(shape, 100 + seed as u64);
            let (out_n, cache_n) = forward_naive(&x, &w, &b, conv);
            let (out_f, cache_f) = forward_fast(&x, &w, &b, conv);
            let (dx_n, dw_n, db_n) = backward_naive(&dout, &cache_n, &w);
            let (dx_f, dw_f, db_f) = backward_fast(&dout, &cache_f, &w);
            // Each backward also accepts the other forward's cache.
            let (dx_nf, _, _) = backward_naive(&dout, &cache_f, &w);
            let (dx_fn, dw_fn, _) = backward_fast(&dout, &cache_n, &w);
            let diffs = [
                max_abs_diff(&out_n, &out_f),
                max_abs_diff(&dx_n, &dx_f),
                max_abs_diff(&dw_n, &dw_f),
                max_abs_diff(&db_n, &db_f),
                max_abs_diff(&dx_n, &dx_nf),
                max_abs_diff(&dx_n, &dx_fn),
                max_abs_diff(&dw_n, &dw_fn),
            ];
            let worst = diffs.iter().copied().fold(0.0, f64::max);
            println!("conv naive vs fast {shape:?}: max abs diff {worst:.3e}");
            assert!(worst < 1e-10, "{shape:?}: {diffs:?}");
        }
    }

    /// A batch of several pieces (19 images: 8 + 8 + 3), with and without dx, on 1 and 3
    /// threads: the fast pair agrees with the naive one, and the thread count changes no bit.
    #[test]
    fn fast_matches_naive_over_several_pieces_and_threads() {
        use crate::parallel::tests::with_threads;
        for (seed, shape) in [(19, 3, 9, 8, 5, 3, 3, 1, 1), (17, 2, 11, 9, 4, 3, 3, 2, 1)].into_iter().enumerate() {
            let (x, w, b, conv, dout) = random_case(shape, 200 + seed as u64);
            let (out_n, cache_n) = forward_naive(&x, &w, &b, conv);
            let (dx_n, dw_n, db_n) = backward_naive(&dout, &cache_n, &w);
            let run = || {
                let (out, cache) = forward_fast(&x, &w, &b, conv);
                let (dx, dw, db) = backward_fast(&dout, &cache, &w);
                let (no_dx, dw2, db2) = backward_fast_view(dout.view(), &cache, w.view(), false);
                assert!(no_dx.is_none());
                assert!(dw2 == dw && db2 == db, "the parameter gradients do not depend on want_dx");
                (out, dx, dw, db)
            };
            let one = with_threads(1, run);
            let diffs = [
                max_abs_diff(&one.0, &out_n),
                max_abs_diff(&one.1, &dx_n),
                max_abs_diff(&one.2, &dw_n),
                max_abs_diff(&one.3, &db_n),
            ];
            println!("conv {shape:?} over pieces: {diffs:?}");
            assert!(diffs.iter().all(|&d| d < 1e-10), "{shape:?}: {diffs:?}");
            let three = with_threads(3, run);
            assert!(one == three, "{shape:?}: results differ on 3 threads");
        }
    }

    /// The "same width" im2col against the row-segment one, on a buffer reused for several
    /// images (as the fast passes reuse it).
    #[test]
    fn same_width_im2col_matches_the_segment_path() {
        let mut r = rng(41);
        for (c, h, w, hh, ww, pad) in
            [(2, 5, 5, 3, 3, 1), (3, 4, 6, 3, 1, 0), (2, 6, 5, 2, 3, 1), (1, 3, 2, 5, 5, 2), (2, 7, 9, 5, 5, 2)]
        {
            let conv = ConvParam { stride: 1, pad };
            let (ho, wo) = conv.output_size((h, w), (hh, ww)).unwrap();
            assert_eq!(wo, w);
            let g = Geometry { c, h, w, hh, ww, ho, wo, stride: 1, pad };
            let (k, p) = (c * hh * ww, ho * wo);
            let mut fast = vec![0.0; k * p];
            for _ in 0..3 {
                let x: Vec<f64> = randn(c * h * w, 1.0, &mut r).to_vec();
                let mut want = vec![0.0; k * p];
                g.im2col_segments(&x, &mut want);
                g.im2col(&x, &mut fast);
                assert_eq!(fast, want, "{:?}", (c, h, w, hh, ww, pad));
            }
        }
    }

    #[test]
    fn cs231n_conv_forward_value() {
        // CS231n's test of conv_forward_naive.
        let x = linspace::<f64>(-0.1, 0.5, 2 * 3 * 4 * 4).into_shape_with_order((2, 3, 4, 4)).unwrap();
        let w = linspace::<f64>(-0.2, 0.3, 3 * 3 * 4 * 4).into_shape_with_order((3, 3, 4, 4)).unwrap();
        let b = linspace::<f64>(-0.1, 0.2, 3);
        let conv = ConvParam { stride: 2, pad: 1 };
        #[rustfmt::skip]
        let correct = Array4::from_shape_vec((2, 3, 2, 2), vec![
            -0.08759809, -0.10987781, -0.18387192, -0.2109216,
            0.21027089, 0.21661097, 0.22847626, 0.23004637,
            0.50813986, 0.54309974, 0.64082444, 0.67101435,
            -0.98053589, -1.03143541, -1.19128892, -1.24695841,
            0.69108355, 0.66880383, 0.59480972, 0.56776003,
            2.36270298, 2.36904306, 2.38090835, 2.38247847,
        ]).unwrap();
        for (name, out) in [("naive", forward_naive(&x, &w, &b, conv).0), ("fast", forward_fast(&x, &w, &b, conv).0)] {
            let e = rel_error(&out, &correct);
            println!("cs231n conv_forward {name}: rel_error {e:.3e}");
            assert!(e < 1e-7, "{name}: rel_error {e}");
        }
    }

    #[test]
    fn f32_matches_f64() {
        let (x, w, b, conv, _) = random_case((4, 3, 9, 8, 5, 3, 3, 1, 1), 11);
        let (out64, _) = forward_fast(&x, &w, &b, conv);
        let (out32, _) = forward_fast::<f32>(&cast(&x), &cast(&w), &cast(&b), conv);
        // Relative to the output's scale: single elements near zero lose all relative
        // precision to cancellation in f32, which is not an error of the layer.
        let scale = out64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let e = max_abs_diff(&cast(&out32), &out64) / scale;
        println!("conv fast f32 vs f64: max abs diff / max |out| {e:.3e}");
        assert!(e < 1e-4, "{e}");
    }

    #[test]
    fn shape_errors_name_the_sizes() {
        let conv = ConvParam { stride: 2, pad: 0 };
        let e = conv.output_size((6, 6), (3, 3)).unwrap_err();
        assert!(e.contains("stride 2") && e.contains("height 6"), "{e}");
        assert_eq!(conv.output_size((7, 5), (3, 3)), Ok((3, 2)));
        assert!(ConvParam { stride: 1, pad: 0 }.output_size((2, 2), (3, 3)).is_err());
        assert!(ConvParam { stride: 0, pad: 0 }.output_size((3, 3), (3, 3)).is_err());
    }

    #[test]
    #[should_panic(expected = "input (1, 1, 6, 6), weight (1, 1, 3, 3)")]
    fn a_stride_that_does_not_divide_panics_naming_the_shapes() {
        let x: Array4<f64> = Array4::zeros((1, 1, 6, 6));
        let w: Array4<f64> = Array4::zeros((1, 1, 3, 3));
        forward_fast(&x, &w, &Array1::zeros(1), ConvParam { stride: 2, pad: 0 });
    }

    #[test]
    fn layer_matches_free_functions_and_describes_itself() {
        let mut r = rng(5);
        let conv = ConvParam { stride: 1, pad: 1 };
        let mut layer = Conv2d::<f64>::new(3, 4, 3, 3, conv, Init::He, &mut r);
        assert_eq!(layer.describe(), "conv 3x3 3->4 stride 1 pad 1");
        let b: Array1<f64> = randn(4, 1.0, &mut r);
        layer.b.value = b.clone().into_dyn();
        let x: Array4<f64> = randn((2, 3, 5, 6), 1.0, &mut r);
        let dout: Array4<f64> = randn((2, 4, 5, 6), 1.0, &mut r);
        let w = layer.weight().to_owned();
        let out = layer.forward(x.clone().into_dyn(), Mode::Train);
        let dx = layer.backward(dout.clone().into_dyn());
        let (out_ref, cache) = forward_naive(&x, &w, &b, conv);
        let (dx_ref, dw_ref, db_ref) = backward_naive(&dout, &cache, &w);
        assert!(max_abs_diff(&out, &out_ref.into_dyn()) < 1e-10);
        assert!(max_abs_diff(&dx, &dx_ref.into_dyn()) < 1e-10);
        assert!(max_abs_diff(&layer.params()[0].grad, &dw_ref.into_dyn()) < 1e-10);
        assert!(max_abs_diff(&layer.params()[1].grad, &db_ref.into_dyn()) < 1e-10);
        let names: Vec<_> = layer.params().iter().map(|p| (p.name, p.decay)).collect();
        assert_eq!(names, vec![("W", true), ("b", false)]);
        // A second pass of the same shape (the layer replaces its cache), then the
        // parameter-only backward.
        let x2: Array4<f64> = randn((2, 3, 5, 6), 1.0, &mut r);
        let out2 = layer.forward(x2.clone().into_dyn(), Mode::Train);
        layer.backward_params(dout.clone().into_dyn());
        let (out2_ref, cache2) = forward_naive(&x2, &w, &b, conv);
        let (_, dw2_ref, db2_ref) = backward_naive(&dout, &cache2, &w);
        assert!(max_abs_diff(&out2, &out2_ref.into_dyn()) < 1e-10);
        assert!(max_abs_diff(&layer.params()[0].grad, &dw2_ref.into_dyn()) < 1e-10);
        assert!(max_abs_diff(&layer.params()[1].grad, &db2_ref.into_dyn()) < 1e-10);
        // A different batch size.
        let x3: Array4<f64> = randn((3, 3, 5, 6), 1.0, &mut r);
        let out3 = layer.forward(x3.clone().into_dyn(), Mode::Train);
        assert!(max_abs_diff(&out3, &forward_naive(&x3, &w, &b, conv).0.into_dyn()) < 1e-10);
    }
}
