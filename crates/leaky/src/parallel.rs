//! Threads: one pool for the whole crate, rayon's global pool.
//!
//! # The one knob
//! The pool has `RAYON_NUM_THREADS` threads (rayon reads the variable when the pool first
//! starts; unset or 0: one per logical CPU). `RAYON_NUM_THREADS=1` runs everything on the
//! calling thread, exactly as a single-threaded build would. There is no other thread
//! setting: the matrix products split their output over the same pool (see
//! [`crate::tensor::Float::gemm`]); `matrixmultiply`'s own thread pool is not used.
//!
//! # What runs in parallel (what PyTorch parallelises on the CPU)
//! * matrix products above [`GEMM_SPLIT_FLOPS`]: the rows (or columns) of C in blocks, one
//!   single-threaded `matrixmultiply` call per block; the recurrent products of
//!   [`crate::tensor::PackedRhs`] by column panels;
//! * convolution: forward and backward in pieces of a fixed number of images (per image
//!   im2col and the products; backward also col2im, the pieces' weight and bias gradients
//!   added in piece order) ([`crate::layers::conv`]); max pooling forward and backward per
//!   (image, channel) plane ([`crate::layers::pool`]);
//! * elementwise passes over large tensors: the activation layers' forward and backward,
//!   the optimiser update ([`crate::optim::update`]);
//! * the LSTM's per-step cell, forward and backward, across the batch
//!   ([`crate::layers::lstm`]).
//!
//! Each of these runs in parallel only when it is worth it: work below a threshold
//! ([`GEMM_SPLIT_FLOPS`], [`ELEMENTWISE_SPLIT`]) stays on the calling thread (a task costs a
//! few microseconds to hand over), and with one thread nothing is handed to the pool.
//!
//! # Determinism
//! Results do not depend on the number of threads: every parallel pass writes disjoint
//! parts of its output, each computed by the same operations in the same order as the
//! sequential code, and every reduction over parallel parts (the convolution's weight and
//! bias gradients, summed over the batch; the per-step gradient norms of the recurrent
//! layers) adds partial results in a fixed order over pieces whose boundaries depend only
//! on the sizes, never on the thread count. The same seed gives the same bits with 1 or 64
//! threads (tested).

use crate::tensor::Float;
use ndarray::{Array, Dimension};
use rayon::prelude::*;

/// Flops (2 m k n) per piece below which a matrix product is not cut further (about 10 us
/// of work on one core, several times the cost of handing a task to another thread).
pub const GEMM_SPLIT_FLOPS: usize = 1_000_000;

/// Elementwise passes over fewer elements than this stay on the calling thread.
pub const ELEMENTWISE_SPLIT: usize = 1 << 16;

/// The number of threads of the pool (`RAYON_NUM_THREADS`, default one per logical CPU).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Whether `work` (in the caller's unit, compared with `min_work`) is worth handing to the
/// pool: more than one thread, and at least `min_work`.
#[inline]
pub(crate) fn split(work: usize, min_work: usize) -> bool {
    work >= min_work && threads() > 1
}

/// Into how many pieces to cut `work` so that each piece has at least `min_work` and there
/// are at most `threads()` pieces (1: do not split).
pub(crate) fn pieces(work: usize, min_work: usize) -> usize {
    if work < min_work.saturating_mul(2) {
        return 1;
    }
    threads().min(work / min_work.max(1)).max(1)
}

/// Run `f` as a task of the pool when there is more than one thread and the caller is not
/// already one of the pool's threads (else just call it).
///
/// For work that hands many small pieces to the pool in a row (the LSTM's per-step cell,
/// 2 x T times per pass): from inside the pool, `rayon::join` runs one half itself and the
/// other where an idle thread takes it, or itself too; from outside, every call would wake a
/// pool thread and put the caller to sleep until it is done.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if threads() > 1 && rayon::current_thread_index().is_none() {
        rayon::scope(|_| f())
    } else {
        f()
    }
}

/// Ask the C allocator to keep freed memory for reuse (glibc on Linux; elsewhere nothing):
/// blocks of up to 32 MiB come from the heap instead of their own `mmap`, and the heap is
/// not shrunk below 256 MiB of free space.
///
/// For a process that trains: every step allocates and frees the same multi-megabyte arrays
/// (an LSTM step about 15 MB). By default glibc serves blocks above a threshold that it
/// adapts as the program runs with fresh `mmap`s, so depending on what ran before a step
/// may page-fault all of its arrays in again: the same LSTM step measured 8.3 ms or 11.4 ms
/// (9% of its time in page faults) in one process or another. The `leaky` binary and the
/// benchmarks call this once at start; the library itself never does (the allocator is the
/// program's choice). Returns whether the allocator took both settings.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes allocator parameters; it has no memory-safety
        // preconditions, takes plain integers and is safe to call at any time from any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Elements per task of the elementwise helpers below.
const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// `f(chunk)` over consecutive chunks of `data`, in parallel above [`ELEMENTWISE_SPLIT`]
/// elements (for kernels where each element depends on itself only).
pub(crate) fn for_each_chunk<T: Send>(data: &mut [T], f: impl Fn(&mut [T]) + Sync + Send) {
    if split(data.len(), ELEMENTWISE_SPLIT) {
        data.par_chunks_mut(ELEMENTWISE_CHUNK).for_each(f);
    } else {
        f(data);
    }
}

/// `f(out_chunk, in_chunk)` over matching consecutive chunks of `out` and `input` (same
/// length), in parallel above [`ELEMENTWISE_SPLIT`] elements.
pub(crate) fn zip_chunks<T: Send, U: Sync>(out: &mut [T], input: &[U], f: impl Fn(&mut [T], &[U]) + Sync + Send) {
    assert_eq!(out.len(), input.len(), "zip_chunks: lengths differ");
    if split(out.len(), ELEMENTWISE_SPLIT) {
        out.par_chunks_mut(ELEMENTWISE_CHUNK).zip(input.par_chunks(ELEMENTWISE_CHUNK)).for_each(|(o, i)| f(o, i));
    } else {
        f(out, input);
    }
}

/// `x.mapv(f)`, written in parallel above [`ELEMENTWISE_SPLIT`] elements when `x` is in
/// standard layout (the output is, too; no zero fill before the values are written).
pub(crate) fn map<F: Float, D: Dimension>(x: &Array<F, D>, f: impl Fn(F) -> F + Sync + Send) -> Array<F, D> {
    match x.as_slice() {
        Some(xs) if split(xs.len(), ELEMENTWISE_SPLIT) => {
            let mut out = Vec::with_capacity(xs.len());
            xs.par_iter().map(|&v| f(v)).collect_into_vec(&mut out);
            Array::from_shape_vec(x.raw_dim(), out).expect("as many values as the input")
        }
        _ => x.mapv(f),
    }
}

/// `out[i] = f(out[i], other[i])` for every element of two arrays of the same shape; in
/// parallel above [`ELEMENTWISE_SPLIT`] elements when both are in standard layout.
pub(crate) fn zip_in_place<F: Float, D: Dimension>(
    out: &mut Array<F, D>,
    other: &Array<F, D>,
    f: impl Fn(F, F) -> F + Sync + Send,
) {
    assert_eq!(out.shape(), other.shape(), "zip_in_place: shapes differ");
    if out.is_standard_layout() && other.is_standard_layout() && split(out.len(), ELEMENTWISE_SPLIT) {
        let (o, i) = (out.as_slice_mut().expect("standard layout"), other.as_slice().expect("standard layout"));
        zip_chunks(o, i, |o, i| {
            for (o, &i) in o.iter_mut().zip(i) {
                *o = f(*o, i);
            }
        });
    } else {
        ndarray::Zip::from(out).and(other).for_each(|o, &i| *o = f(*o, i));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// Run `f` on a private pool of `n` threads (so `threads()` inside it is `n`).
    pub fn with_threads<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new().num_threads(n).build().expect("a thread pool").install(f)
    }

    /// A training step of a CNN (conv, ReLU, conv, sigmoid, max pool, affine, softmax, Adam)
    /// and an LSTM forward/backward, at sizes where every parallel pass splits: the same bits
    /// on 1, 2 and 3 threads.
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        use crate::layers::activation::Nonlinearity;
        use crate::layers::affine::Affine;
        use crate::layers::conv::{Conv2d, ConvParam};
        use crate::layers::lstm::{lstm_backward_with_norms, lstm_forward};
        use crate::layers::pool::{MaxPool, PoolParam};
        use crate::losses::softmax_loss;
        use crate::nn::{Activation, Mode, Sequential};
        use crate::optim::{update, Rule, Slots, UpdateConfig};
        use crate::tensor::{randn, rng, Init, Tensor};
        use ndarray::{Array2, Array3, IxDyn};

        type Outcome = (Vec<Tensor<f32>>, Array3<f32>, Vec<f64>, Array2<f32>);
        let run = || -> Outcome {
            let mut r = rng(3);
            let same = ConvParam { stride: 1, pad: 1 };
            let mut net = Sequential::<f32>::new()
                .push(Conv2d::<f32>::new(1, 8, 3, 3, same, Init::He, &mut r))
                .push(Nonlinearity::<f32>::new(Activation::Relu))
                .push(Conv2d::<f32>::new(8, 8, 3, 3, same, Init::He, &mut r))
                .push(Nonlinearity::<f32>::new(Activation::Sigmoid))
                .push(MaxPool::<f32>::new(PoolParam { height: 2, width: 2, stride: 2 }))
                .push(Affine::<f32>::new(8 * 12 * 12, 10, Init::He, 0.0, &mut r));
            let x: Tensor<f32> = randn(IxDyn(&[20, 1, 24, 24]), 1.0, &mut r);
            let y: Vec<usize> = (0..20).map(|i| i % 10).collect();
            let mut slots: Vec<Slots<f32>> = net.params().iter().map(|(_, p)| Slots::zeros_like(&p.value)).collect();
            let cfg = UpdateConfig::new(Rule::Adam, 1e-3);
            for _ in 0..2 {
                let scores = net.forward(x.clone(), Mode::Train).into_dimensionality().unwrap();
                let (_, dscores) = softmax_loss(&scores, &y);
                net.backward(dscores.into_dyn());
                for (p, s) in net.params_mut().into_iter().zip(slots.iter_mut()) {
                    update(&mut p.value, &p.grad, s, &cfg);
                }
            }
            let params: Vec<Tensor<f32>> =
                net.params().iter().flat_map(|(_, p)| [p.value.clone(), p.grad.clone()]).collect();
            let (n, t, d, h) = (32, 3, 5, 64);
            let xs: Array3<f32> = randn((n, t, d), 1.0, &mut r);
            let h0: Array2<f32> = randn((n, h), 1.0, &mut r);
            let wx: Array2<f32> = randn((d, 4 * h), 0.3, &mut r);
            let wh: Array2<f32> = randn((h, 4 * h), 0.1, &mut r);
            let b = ndarray::Array1::zeros(4 * h);
            let dh: Array3<f32> = randn((n, t, h), 1.0, &mut r);
            let (hs, cache) = lstm_forward(&xs, &h0, &wx, &wh, &b);
            let ((_, _, _, dwh, _), norms) = lstm_backward_with_norms(&dh, &cache, &wx, &wh);
            // A large parameter through every update rule (chunked in parallel).
            let mut w: Tensor<f32> = randn(IxDyn(&[300, 300]), 1.0, &mut r);
            let g: Tensor<f32> = randn(IxDyn(&[300, 300]), 1.0, &mut r);
            for rule in [Rule::Sgd, Rule::Momentum, Rule::Rmsprop, Rule::Adam] {
                let mut s = Slots::zeros_like(&w);
                update(&mut w, &g, &mut s, &UpdateConfig::new(rule, 1e-2));
                update(&mut w, &g, &mut s, &UpdateConfig::new(rule, 1e-2));
            }
            let mut params: Vec<Tensor<f32>> = params;
            params.push(w);
            (params, hs, norms, dwh)
        };
        let one = with_threads(1, run);
        for threads in [2, 3] {
            let many = with_threads(threads, run);
            assert!(one.0 == many.0, "CNN parameters and gradients differ on {threads} threads");
            assert!(one.1 == many.1 && one.2 == many.2 && one.3 == many.3, "LSTM differs on {threads} threads");
        }
    }

    #[test]
    fn pieces_respect_the_minimum_and_the_thread_count() {
        with_threads(4, || {
            assert_eq!(super::threads(), 4);
            assert_eq!(super::pieces(10, 100), 1);
            assert_eq!(super::pieces(250, 100), 2);
            assert_eq!(super::pieces(10_000, 100), 4);
            assert!(!super::split(50, 100));
            assert!(super::split(150, 100));
        });
        with_threads(1, || {
            assert_eq!(super::pieces(10_000, 100), 1);
            assert!(!super::split(10_000, 100));
        });
    }
}
