//! Affine (fully connected) layer: `out = x.reshape(N, D) @ w + b`.
//!
//! As in CS231n, `x` of shape (N, d_1, ..., d_k) is flattened to (N, D) with
//! D = d_1 * ... * d_k, so an affine layer can follow a convolution directly.

use crate::nn::{Layer, Mode, Param};
use crate::tensor::{init_weight, matmul, matmul_acc, Float, Init, Tensor};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Ix2, IxDyn};

/// What [`backward`] needs from [`forward`].
#[derive(Clone, Debug)]
pub struct AffineCache<F> {
    /// The input, flattened to (N, D).
    pub x: Array2<F>,
    /// The original input shape (N, d_1, ..., d_k), restored for `dx`.
    pub x_shape: Vec<usize>,
}

/// Flatten (N, d_1, ..., d_k) to (N, D) without copying when `x` is contiguous.
pub fn flatten<F: Float>(x: Tensor<F>) -> Array2<F> {
    let n = x.shape().first().copied().unwrap_or(1);
    let d = x.len().checked_div(n).unwrap_or(0);
    let x = if x.is_standard_layout() { x } else { x.as_standard_layout().into_owned() };
    x.into_shape_with_order((n, d)).expect("contiguous reshape")
}

/// Affine forward.
///
/// * `x`: (N, d_1, ..., d_k), flattened to (N, D)
/// * `w`: (D, M)
/// * `b`: (M,)
///
/// Returns `out`: (N, M) and the cache.
pub fn forward<F: Float>(x: Tensor<F>, w: &Array2<F>, b: &Array1<F>) -> (Array2<F>, AffineCache<F>) {
    forward_view(x, w.view(), b.view())
}

/// [`forward`] on borrowed parameter views (no copy of `w`), for [`Affine`].
fn forward_view<F: Float>(x: Tensor<F>, w: ArrayView2<F>, b: ArrayView1<F>) -> (Array2<F>, AffineCache<F>) {
    let x_shape = x.shape().to_vec();
    let x = flatten(x);
    assert_eq!(x.ncols(), w.nrows(), "affine: input has {} features, weight expects {}", x.ncols(), w.nrows());
    // Every row starts as b; the GEMM then adds x w (beta = 1): one pass for the bias.
    let mut out = Array2::from_shape_vec((x.nrows(), w.ncols()), repeat_rows(b, x.nrows())).expect("N * M values");
    matmul_acc(x.view(), w, out.view_mut());
    (out, AffineCache { x, x_shape })
}

/// `rows` copies of `b` back to back (the bias rows an output starts from), by slice copies.
pub(crate) fn repeat_rows<F: Float>(b: ArrayView1<F>, rows: usize) -> Vec<F> {
    let b = b.as_standard_layout();
    let b = b.as_slice().expect("standard layout");
    let mut v = Vec::with_capacity(rows * b.len());
    for _ in 0..rows {
        v.extend_from_slice(b);
    }
    v
}

/// Affine backward.
///
/// * `dout`: (N, M) upstream gradient
/// * `w`: (D, M), the weight used in the forward pass
///
/// Returns `(dx, dw, db)` with shapes (N, d_1, ..., d_k), (D, M), (M,).
pub fn backward<F: Float>(
    dout: &Array2<F>,
    cache: &AffineCache<F>,
    w: &Array2<F>,
) -> (Tensor<F>, Array2<F>, Array1<F>) {
    let (dw, db) = backward_params(dout.view(), cache);
    (backward_input(dout.view(), cache, w.view()), dw, db)
}

/// The parameter half of [`backward`]: `dw = x^T dout` (D, M), `db = sum_N dout` (M,).
fn backward_params<F: Float>(dout: ArrayView2<F>, cache: &AffineCache<F>) -> (Array2<F>, Array1<F>) {
    (matmul(cache.x.t(), dout), dout.sum_axis(Axis(0)))
}

/// The input half of [`backward`]: `dx = dout w^T`, reshaped to (N, d_1, ..., d_k).
fn backward_input<F: Float>(dout: ArrayView2<F>, cache: &AffineCache<F>, w: ArrayView2<F>) -> Tensor<F> {
    matmul(dout, w.t()).into_shape_with_order(IxDyn(&cache.x_shape)).expect("same size")
}

/// View a 2-D result as a [`Tensor`].
pub fn to_tensor<F: Float>(a: Array2<F>) -> Tensor<F> {
    a.into_dyn()
}

/// Convert a tensor known to be 2-D.
pub fn as_2d<F: Float>(t: Tensor<F>) -> Array2<F> {
    t.into_dimensionality::<Ix2>().expect("expected a 2-D array")
}

/// The affine layer as a [`Layer`]: parameters `W` (D, M) and `b` (M,).
pub struct Affine<F: Float> {
    w: Param<F>,
    b: Param<F>,
    cache: Option<AffineCache<F>>,
}

impl<F: Float> Affine<F> {
    /// A layer mapping D inputs to M outputs, `W` drawn with `init`, `b` filled with `bias`.
    pub fn new(d: usize, m: usize, init: Init, bias: f64, rng: &mut impl rand::Rng) -> Self {
        let w: Array2<F> = init_weight(d, m, init, rng);
        Self::from_params(w, Array1::from_elem(m, F::from_f64c(bias)))
    }

    /// A layer with the given weight (D, M) and bias (M,).
    pub fn from_params(w: Array2<F>, b: Array1<F>) -> Self {
        assert_eq!(w.ncols(), b.len(), "affine: weight has {} columns but bias has {}", w.ncols(), b.len());
        Affine { w: Param::new("W", w.into_dyn(), true), b: Param::new("b", b.into_dyn(), false), cache: None }
    }

    /// The weight as a 2-D view (D, M).
    pub fn weight(&self) -> ndarray::ArrayView2<'_, F> {
        self.w.value.view().into_dimensionality().expect("2-D weight")
    }
}

impl<F: Float> Layer<F> for Affine<F> {
    fn kind(&self) -> &'static str {
        "affine"
    }

    fn describe(&self) -> String {
        format!("affine {}->{}", self.w.value.shape()[0], self.w.value.shape()[1])
    }

    fn forward(&mut self, x: Tensor<F>, _mode: Mode) -> Tensor<F> {
        let b = self.b.value.view().into_dimensionality::<ndarray::Ix1>().expect("1-D bias");
        let (out, cache) = forward_view(x, self.weight(), b);
        self.cache = Some(cache);
        out.into_dyn()
    }

    fn backward(&mut self, dout: Tensor<F>) -> Tensor<F> {
        let dout = as_2d(dout);
        let cache = self.cache.as_ref().expect("affine: backward called before forward");
        let dx = backward_input(dout.view(), cache, self.weight());
        self.backward_params(dout.into_dyn());
        dx
    }

    fn backward_params(&mut self, dout: Tensor<F>) {
        let cache = self.cache.as_ref().expect("affine: backward called before forward");
        let dout = as_2d(dout);
        // Write into last step's gradient buffers when their shapes fit (no allocation).
        let reuse = self.w.grad.shape() == self.w.value.shape() && self.b.grad.shape() == self.b.value.shape();
        match (reuse, self.w.grad.view_mut().into_dimensionality::<Ix2>()) {
            (true, Ok(dw)) => {
                F::gemm(F::one(), cache.x.t(), dout.view(), F::zero(), dw);
                let mut db = self.b.grad.view_mut().into_dimensionality::<ndarray::Ix1>().expect("1-D bias");
                db.fill(F::zero());
                for row in dout.rows() {
                    db += &row;
                }
            }
            _ => {
                let (dw, db) = backward_params(dout.view(), cache);
                self.w.grad = dw.into_dyn();
                self.b.grad = db.into_dyn();
            }
        }
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
    use crate::gradcheck::check_array;
    use crate::layers::testutil::assert_good;
    use crate::tensor::{randn, rng};
    use ndarray::Array;

    #[test]
    fn gradients_on_random_shapes_including_batch_of_one() {
        let mut r = rng(7);
        for &(n, dims, m) in &[(1usize, &[5usize][..], 3usize), (4, &[2, 3], 6), (3, &[2, 2, 2], 1)] {
            let mut shape = vec![n];
            shape.extend_from_slice(dims);
            let x: Tensor<f64> = randn(IxDyn(&shape), 1.0, &mut r);
            let d: usize = dims.iter().product();
            let w: Array2<f64> = randn((d, m), 1.0, &mut r);
            let b: Array1<f64> = randn(m, 1.0, &mut r);
            let dout: Array2<f64> = randn((n, m), 1.0, &mut r);
            let (_, cache) = forward(x.clone(), &w, &b);
            let (dx, dw, db) = backward(&dout, &cache, &w);
            assert_eq!(dx.shape(), &shape[..]);
            assert_good(&check_array("affine dx", |x| forward(x.clone(), &w, &b).0, &x, &dout, &dx));
            assert_good(&check_array("affine dw", |w| forward(x.clone(), w, &b).0, &w, &dout, &dw));
            assert_good(&check_array("affine db", |b| forward(x.clone(), &w, b).0, &b, &dout, &db));
        }
    }

    #[test]
    fn cs231n_affine_forward_value() {
        // CS231n's test_affine_forward: linspace inputs, known output.
        let (n, d, m) = (2usize, 120usize, 3usize);
        let x = crate::tensor::linspace::<f64>(-0.1, 0.5, n * d).into_shape_with_order(IxDyn(&[2, 4, 5, 6])).unwrap();
        let w = crate::tensor::linspace::<f64>(-0.2, 0.3, d * m).into_shape_with_order((d, m)).unwrap();
        let b = crate::tensor::linspace::<f64>(-0.3, 0.1, m);
        let (out, _) = forward(x, &w, &b);
        let expected =
            Array::from_shape_vec((2, 3), vec![1.49834967, 1.70660132, 1.91485297, 3.25553199, 3.5141327, 3.77273342])
                .unwrap();
        assert!(crate::gradcheck::rel_error(&out, &expected) < 1e-8);
    }
}
