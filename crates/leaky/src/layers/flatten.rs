//! Flatten: (N, d1, d2, ...) -> (N, d1 * d2 * ...), row-major (as PyTorch's `nn.Flatten`
//! and numpy's `reshape(N, -1)`). The backward pass reshapes `dout` back to the input shape.
//!
//! An affine layer already flattens its input (CS231n convention), so a `flatten` layer is
//! only needed to mirror a PyTorch `nn.Sequential` module by module.

use crate::nn::{Layer, Mode};
use crate::tensor::{Float, Tensor};
use ndarray::IxDyn;

/// The input shape, all `backward` needs.
#[derive(Clone, Debug)]
pub struct FlattenCache {
    /// Shape of the input, (N, d1, d2, ...).
    pub shape: Vec<usize>,
}

/// x (N, d1, ...) -> out (N, d1 * ...). Copies only when `x` is not in standard layout.
pub fn forward<F: Float>(x: Tensor<F>) -> (Tensor<F>, FlattenCache) {
    let shape = x.shape().to_vec();
    let n = shape.first().copied().unwrap_or(1);
    let rest: usize = shape.iter().skip(1).product();
    let x = if x.is_standard_layout() { x } else { x.as_standard_layout().into_owned() };
    let out = x.into_shape_with_order(IxDyn(&[n, rest])).expect("standard layout, same element count");
    (out, FlattenCache { shape })
}

/// dout (N, d1 * ...) -> dx (N, d1, ...), the shape in `cache`.
pub fn backward<F: Float>(dout: Tensor<F>, cache: &FlattenCache) -> Tensor<F> {
    let dout = if dout.is_standard_layout() { dout } else { dout.as_standard_layout().into_owned() };
    dout.into_shape_with_order(IxDyn(&cache.shape)).expect("dout has the flattened input's element count")
}

/// The flatten layer: no parameters.
#[derive(Default)]
pub struct Flatten {
    cache: Option<FlattenCache>,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Flatten { cache: None }
    }
}

impl<F: Float> Layer<F> for Flatten {
    fn kind(&self) -> &'static str {
        "flatten"
    }

    fn preserves_finite(&self) -> bool {
        true
    }

    fn forward(&mut self, x: Tensor<F>, _mode: Mode) -> Tensor<F> {
        let (out, cache) = forward(x);
        self.cache = Some(cache);
        out
    }

    fn backward(&mut self, dout: Tensor<F>) -> Tensor<F> {
        let cache = self.cache.as_ref().expect("flatten: backward called before forward");
        assert_eq!(
            dout.len(),
            cache.shape.iter().product::<usize>(),
            "flatten: dout {:?} does not match the input {:?}",
            dout.shape(),
            cache.shape
        );
        backward(dout, cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_array;
    use crate::layers::testutil::assert_good;
    use crate::tensor::{randn, rng};
    use ndarray::Array4;

    #[test]
    fn flattens_row_major_and_back() {
        let x = Array4::from_shape_fn((2, 3, 2, 2), |(n, c, h, w)| (n * 100 + c * 10 + h * 2 + w) as f64).into_dyn();
        let (out, cache) = forward(x.clone());
        assert_eq!(out.shape(), &[2, 12]);
        // Row-major: example 1, channel 2, row 1, col 0 is element 2*4 + 1*2 + 0 = 10.
        assert_eq!(out[[1, 10]], 100.0 + 20.0 + 2.0);
        let back = backward(out, &cache);
        assert_eq!(back, x);
    }

    #[test]
    fn gradient_check() {
        let x: Tensor<f64> = randn((2, 3, 4, 5), 1.0, &mut rng(0)).into_dyn();
        let dout: Tensor<f64> = randn((2, 60), 1.0, &mut rng(1)).into_dyn();
        let (_, cache) = forward(x.clone());
        let dx = backward(dout.clone(), &cache);
        let r = check_array("flatten dx", |x| forward(x.clone()).0, &x, &dout, &dx);
        assert_good(&r);
    }

    #[test]
    fn non_standard_layout_input() {
        let x: Tensor<f64> = randn((3, 4), 1.0, &mut rng(2)).into_dyn();
        let t = x.clone().reversed_axes(); // (4, 3), column-major
        let (out, _) = forward(t.clone());
        assert_eq!(out.shape(), &[4, 3]);
        assert_eq!(out, t.as_standard_layout().into_owned());
    }
}
