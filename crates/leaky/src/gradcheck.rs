//! Numerical gradient checking, the CS231n way, in f64.
//!
//! * Centred differences `(f(x + h) - f(x - h)) / 2h` with `h = 1e-5` ([`H`]).
//! * `rel_error(a, b) = max_i |a_i - b_i| / max(1e-8, |a_i| + |b_i|)` ([`rel_error`]).
//! * Verdict bands ([`Verdict`]): `> 1e-2` wrong, `1e-4..1e-2` suspicious, `1e-7..1e-4`
//!   acceptable only across kinks, `<= 1e-7` good.
//! * Kink detection: for every element the one-sided slopes `(f(x+h) - f(x)) / h` and
//!   `(f(x) - f(x-h)) / h` are compared. On a smooth function they differ by about
//!   `h * |f''|` (1e-5 scale); when `x +- h` straddles a ReLU, max or clip kink they differ by
//!   a finite jump in slope. Such an element is reported as a kink and left out of the
//!   error, instead of being called a failure.
//!
//! For an array-valued function `f(x) -> y` the checked scalar is `sum(f(x) * dout)` for a
//! fixed upstream gradient `dout`, so the analytic gradient to compare is exactly the
//! layer's `backward(dout)`.

use ndarray::{Array, Dimension};
use rand::Rng;
use serde::Serialize;

/// The finite-difference step used by all checks.
pub const H: f64 = 1e-5;

/// `rel_error` at or below this is a correct gradient.
pub const GOOD: f64 = 1e-7;
/// Between [`GOOD`] and this, the gradient is fine only if the objective has kinks.
pub const KINKY: f64 = 1e-4;
/// Between [`KINKY`] and this, suspicious; above it, wrong.
pub const WRONG: f64 = 1e-2;

/// One-sided slopes that differ by more than this fraction of their size (plus an
/// absolute floor for near-zero slopes) mark a kink. A smooth f64 objective with O(1)
/// curvature gives a relative difference near `h = 1e-5`; a ReLU kink gives O(1).
pub const KINK_TOLERANCE: f64 = 1e-3;
const KINK_FLOOR: f64 = 1e-6;

/// What a relative error means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// `<= 1e-7`: the gradient is right.
    Good,
    /// `1e-7 .. 1e-4`: right only for objectives with kinks (ReLU, max, clip).
    Acceptable,
    /// `1e-4 .. 1e-2`: probably a bug.
    Suspicious,
    /// `> 1e-2`: the gradient is wrong.
    Wrong,
}

impl Verdict {
    /// The band a relative error falls in.
    pub fn of(rel_error: f64) -> Verdict {
        if rel_error.is_nan() || rel_error > WRONG {
            Verdict::Wrong
        } else if rel_error > KINKY {
            Verdict::Suspicious
        } else if rel_error > GOOD {
            Verdict::Acceptable
        } else {
            Verdict::Good
        }
    }

    /// Lower-case label, as printed in tables.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Good => "good",
            Verdict::Acceptable => "acceptable",
            Verdict::Suspicious => "suspicious",
            Verdict::Wrong => "wrong",
        }
    }
}

/// `max_i |a_i - b_i| / max(1e-8, |a_i| + |b_i|)`, CS231n's relative error.
/// `a` and `b` must have the same number of elements.
pub fn rel_error<D: Dimension>(a: &Array<f64, D>, b: &Array<f64, D>) -> f64 {
    assert_eq!(a.len(), b.len(), "rel_error: sizes differ");
    // NaN anywhere makes the error NaN (f64::max would silently drop it).
    a.iter().zip(b.iter()).map(|(&x, &y)| elem_rel_error(x, y)).fold(0.0, |m, e| {
        if e.is_nan() || m.is_nan() {
            f64::NAN
        } else {
            m.max(e)
        }
    })
}

/// The relative error of one pair of numbers (see [`rel_error`]).
pub fn elem_rel_error(a: f64, b: f64) -> f64 {
    (a - b).abs() / (a.abs() + b.abs()).max(1e-8)
}

/// A numerical gradient and the elements whose finite difference crossed a kink.
#[derive(Clone, Debug)]
pub struct NumericalGradient<D: Dimension> {
    /// Centred-difference gradient, same shape as the input.
    pub grad: Array<f64, D>,
    /// Flat (row-major) indices of the elements whose difference straddled a kink.
    pub kinks: Vec<usize>,
}

/// First test: do the one-sided slopes `right = (f+ - f0)/h` and `left = (f0 - f-)/h`
/// disagree? Both arguments are the *changes* `f+ - f0` and `f0 - f-`.
fn slopes_disagree(up: f64, down: f64, h: f64) -> bool {
    let (right, left) = (up / h, down / h);
    (right - left).abs() > KINK_TOLERANCE * (right.abs() + left.abs()) + KINK_FLOOR
}

/// The smaller step of the second kink test, as a fraction of h.
const KINK_STEP_RATIO: f64 = 0.1;

/// Second test, run only when the first fires: on a smooth function the slope gap
/// `right - left` is about `h f''`, so a step of `h/10` gives a tenth of the gap; across a
/// kink it does not (a kink within h/10 keeps most of the gap, one farther away drops out
/// of the small step entirely). `gap_h` and `gap_small` are the gaps at steps h and h/10.
fn gap_is_not_curvature(gap_h: f64, gap_small: f64) -> bool {
    let expected = gap_h * KINK_STEP_RATIO;
    (gap_small - expected).abs() > 0.5 * expected.abs()
}

/// Numerical gradient of a scalar function `f` at `x` (centred differences, step `h`).
/// `x`: any shape; the result has the same shape.
pub fn numerical_gradient<D: Dimension>(
    mut f: impl FnMut(&Array<f64, D>) -> f64,
    x: &Array<f64, D>,
    h: f64,
) -> NumericalGradient<D> {
    let mut xs = x.as_standard_layout().into_owned();
    let f0 = f(&xs);
    let mut grad = Array::zeros(xs.raw_dim());
    let mut kinks = Vec::new();
    let n = xs.len();
    for i in 0..n {
        let old = flat(&xs, i);
        set_flat(&mut xs, i, old + h);
        let fp = f(&xs);
        set_flat(&mut xs, i, old - h);
        let fm = f(&xs);
        set_flat(&mut xs, i, old);
        set_flat(&mut grad, i, (fp - fm) / (2.0 * h));
        if slopes_disagree(fp - f0, f0 - fm, h) {
            set_flat(&mut xs, i, old + h * KINK_STEP_RATIO);
            let fp2 = f(&xs);
            set_flat(&mut xs, i, old - h * KINK_STEP_RATIO);
            let fm2 = f(&xs);
            set_flat(&mut xs, i, old);
            if gap_is_not_curvature((fp - 2.0 * f0 + fm) / h, (fp2 - 2.0 * f0 + fm2) / (h * KINK_STEP_RATIO)) {
                kinks.push(i);
            }
        }
    }
    NumericalGradient { grad, kinks }
}

/// Numerical gradient of `sum(f(x) * dout)` with respect to `x`, for an array-valued
/// `f`. `dout` has the shape of `f(x)`; the result has the shape of `x`.
///
/// As CS231n's `eval_numerical_gradient_array`, the outputs are differenced element by
/// element before weighting and summing (`sum((f(x+h) - f(x-h)) * dout) / 2h`): rounding
/// then scales with each output element instead of with the whole sum, which keeps small
/// gradient entries measurable.
pub fn numerical_gradient_array<D: Dimension, E: Dimension>(
    mut f: impl FnMut(&Array<f64, D>) -> Array<f64, E>,
    x: &Array<f64, D>,
    dout: &Array<f64, E>,
    h: f64,
) -> NumericalGradient<D> {
    let mut xs = x.as_standard_layout().into_owned();
    let y0 = f(&xs);
    assert_eq!(y0.shape(), dout.shape(), "numerical_gradient_array: dout shape differs from f(x)");
    let mut grad = Array::zeros(xs.raw_dim());
    let mut kinks = Vec::new();
    let weighted = |a: &Array<f64, E>, b: &Array<f64, E>| -> f64 {
        a.iter().zip(b.iter()).zip(dout.iter()).map(|((p, q), d)| (p - q) * d).sum()
    };
    for i in 0..xs.len() {
        let old = flat(&xs, i);
        set_flat(&mut xs, i, old + h);
        let yp = f(&xs);
        set_flat(&mut xs, i, old - h);
        let ym = f(&xs);
        set_flat(&mut xs, i, old);
        set_flat(&mut grad, i, weighted(&yp, &ym) / (2.0 * h));
        let (up, down) = (weighted(&yp, &y0), weighted(&y0, &ym));
        if slopes_disagree(up, down, h) {
            set_flat(&mut xs, i, old + h * KINK_STEP_RATIO);
            let yp2 = f(&xs);
            set_flat(&mut xs, i, old - h * KINK_STEP_RATIO);
            let ym2 = f(&xs);
            set_flat(&mut xs, i, old);
            let gap_half = (weighted(&yp2, &y0) - weighted(&y0, &ym2)) / (h * KINK_STEP_RATIO);
            if gap_is_not_curvature((up - down) / h, gap_half) {
                kinks.push(i);
            }
        }
    }
    NumericalGradient { grad, kinks }
}

fn flat<D: Dimension>(a: &Array<f64, D>, i: usize) -> f64 {
    a.as_slice().expect("standard layout")[i]
}

fn set_flat<D: Dimension>(a: &mut Array<f64, D>, i: usize, v: f64) {
    a.as_slice_mut().expect("standard layout")[i] = v;
}

/// The outcome of comparing an analytic gradient with a numerical one.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// What was checked, e.g. `"affine dw"`.
    pub name: String,
    /// Number of elements compared (kinks excluded).
    pub checked: usize,
    /// Number of elements whose finite difference crossed a kink (not compared).
    pub kinks: usize,
    /// Worst relative error over the compared elements.
    pub max_rel_error: f64,
    /// Flat index of the worst element.
    pub worst_index: usize,
    /// The band of `max_rel_error`.
    pub verdict: Verdict,
}

impl CheckReport {
    /// True when the verdict is [`Verdict::Good`].
    pub fn is_good(&self) -> bool {
        self.verdict == Verdict::Good
    }
}

/// Compare an analytic gradient with a numerical one, skipping kink elements.
/// Both arrays have the shape of the checked input.
pub fn compare<D: Dimension>(name: &str, analytic: &Array<f64, D>, numeric: &NumericalGradient<D>) -> CheckReport {
    assert_eq!(analytic.shape(), numeric.grad.shape(), "compare({name}): shapes differ");
    let a = analytic.as_standard_layout();
    let a = a.as_slice().expect("standard layout");
    let n = numeric.grad.as_slice().expect("standard layout");
    let mut worst = 0.0;
    let mut worst_index = 0;
    let mut ki = numeric.kinks.iter().peekable();
    let mut checked = 0;
    for i in 0..a.len() {
        if ki.peek() == Some(&&i) {
            ki.next();
            continue;
        }
        checked += 1;
        let e = elem_rel_error(a[i], n[i]);
        if e > worst || e.is_nan() {
            worst = e;
            worst_index = i;
        }
    }
    // Every element straddling a kink means nothing was verified: not a pass.
    let verdict = if checked == 0 && !a.is_empty() { Verdict::Suspicious } else { Verdict::of(worst) };
    CheckReport {
        name: name.to_string(),
        checked,
        kinks: numeric.kinks.len(),
        max_rel_error: worst,
        worst_index,
        verdict,
    }
}

/// Check an analytic input gradient of an array-valued function in one call:
/// numerical gradient of `sum(f(x) * dout)` at `x`, compared with `analytic`.
/// `analytic` has the shape of `x`; `dout` the shape of `f(x)`.
pub fn check_array<D: Dimension, E: Dimension>(
    name: &str,
    f: impl FnMut(&Array<f64, D>) -> Array<f64, E>,
    x: &Array<f64, D>,
    dout: &Array<f64, E>,
    analytic: &Array<f64, D>,
) -> CheckReport {
    compare(name, analytic, &numerical_gradient_array(f, x, dout, H))
}

/// Check an analytic gradient of a scalar function (a loss) in one call.
/// `analytic` has the shape of `x`.
pub fn check_scalar<D: Dimension>(
    name: &str,
    f: impl FnMut(&Array<f64, D>) -> f64,
    x: &Array<f64, D>,
    analytic: &Array<f64, D>,
) -> CheckReport {
    compare(name, analytic, &numerical_gradient(f, x, H))
}

/// One spot check of [`sparse_check`].
#[derive(Clone, Debug, Serialize)]
pub struct SpotCheck {
    /// Flat index checked.
    pub index: usize,
    /// Numerical gradient at that element.
    pub numeric: f64,
    /// Analytic gradient at that element.
    pub analytic: f64,
    /// Their relative error.
    pub rel_error: f64,
    /// Whether the centred difference crossed a kink.
    pub kink: bool,
}

/// Check `num_checks` random elements only (CS231n's `grad_check_sparse`): cheap for
/// large inputs. `x` and `analytic` have the same shape.
pub fn sparse_check<D: Dimension>(
    mut f: impl FnMut(&Array<f64, D>) -> f64,
    x: &Array<f64, D>,
    analytic: &Array<f64, D>,
    num_checks: usize,
    h: f64,
    rng: &mut impl Rng,
) -> Vec<SpotCheck> {
    let mut xs = x.as_standard_layout().into_owned();
    let a = analytic.as_standard_layout();
    let a = a.as_slice().expect("standard layout");
    let f0 = f(&xs);
    (0..num_checks)
        .map(|_| {
            let i = rng.random_range(0..xs.len());
            let old = flat(&xs, i);
            set_flat(&mut xs, i, old + h);
            let fp = f(&xs);
            set_flat(&mut xs, i, old - h);
            let fm = f(&xs);
            set_flat(&mut xs, i, old);
            let numeric = (fp - fm) / (2.0 * h);
            let kink = slopes_disagree(fp - f0, f0 - fm, h) && {
                set_flat(&mut xs, i, old + h * KINK_STEP_RATIO);
                let fp2 = f(&xs);
                set_flat(&mut xs, i, old - h * KINK_STEP_RATIO);
                let fm2 = f(&xs);
                set_flat(&mut xs, i, old);
                gap_is_not_curvature((fp - 2.0 * f0 + fm) / h, (fp2 - 2.0 * f0 + fm2) / (h * KINK_STEP_RATIO))
            };
            SpotCheck { index: i, numeric, analytic: a[i], rel_error: elem_rel_error(numeric, a[i]), kink }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array1};

    #[test]
    fn gradient_of_a_cubic() {
        let x = array![1.0, -2.0, 0.5];
        let g = numerical_gradient(|x: &Array1<f64>| x.mapv(|v| v * v * v).sum(), &x, H);
        let exact = x.mapv(|v| 3.0 * v * v);
        let r = compare("cubic", &exact, &g);
        assert!(r.max_rel_error < 1e-8, "{r:?}");
        assert!(g.kinks.is_empty());
    }

    #[test]
    fn relu_kink_is_detected_not_failed() {
        // x = 0.3e-5 lies within h of the kink at 0: the centred difference sees half of
        // the slope; the detector must call it a kink.
        let x = array![0.3e-5, 1.0, -1.0];
        let g = numerical_gradient(|x: &Array1<f64>| x.mapv(|v| v.max(0.0)).sum(), &x, H);
        assert_eq!(g.kinks, vec![0]);
        let analytic = array![1.0, 1.0, 0.0];
        let r = compare("relu", &analytic, &g);
        assert!(r.is_good(), "{r:?}");
        assert_eq!(r.kinks, 1);
        assert_eq!(r.checked, 2);
    }

    #[test]
    fn curvature_is_not_a_kink() {
        // x^2 at 0 has slope gap 2h between the one-sided slopes: smooth, not a kink.
        let x = array![0.0, 1e-7];
        let g = numerical_gradient(|x: &Array1<f64>| x.mapv(|v| 1e3 * v * v).sum(), &x, H);
        assert!(g.kinks.is_empty(), "{:?}", g.kinks);
    }

    #[test]
    fn wrong_gradient_is_wrong() {
        let x = array![1.0, 2.0];
        let g = numerical_gradient(|x: &Array1<f64>| x.mapv(|v| v * v).sum(), &x, H);
        let r = compare("square", &array![2.0, 3.0], &g);
        assert_eq!(r.verdict, Verdict::Wrong);
        assert_eq!(r.worst_index, 1);
    }

    #[test]
    fn bands() {
        assert_eq!(Verdict::of(1e-9), Verdict::Good);
        assert_eq!(Verdict::of(1e-7), Verdict::Good);
        assert_eq!(Verdict::of(1e-6), Verdict::Acceptable);
        assert_eq!(Verdict::of(1e-3), Verdict::Suspicious);
        assert_eq!(Verdict::of(0.5), Verdict::Wrong);
        assert_eq!(Verdict::of(f64::NAN), Verdict::Wrong);
        assert_eq!(elem_rel_error(0.0, 0.0), 0.0);
        assert!(rel_error(&array![1.0, f64::NAN], &array![1.0, 1.0]).is_nan());
        assert!(rel_error(&array![f64::NAN, 1.0], &array![1.0, 1.0]).is_nan());
    }

    #[test]
    fn array_gradient_and_sparse() {
        let x = array![[1.0, 2.0], [3.0, -1.0]];
        let dout = array![0.5, -2.0];
        // f(x) = x @ [1, 2]  -> grad_x sum(f * dout) = dout[:, None] * [1, 2]
        let f = |x: &ndarray::Array2<f64>| x.dot(&array![1.0, 2.0]);
        let g = numerical_gradient_array(f, &x, &dout, H);
        let exact = array![[0.5, 1.0], [-2.0, -4.0]];
        assert!(compare("dot", &exact, &g).is_good());
        let spots = sparse_check(|x| f(x).dot(&dout), &x, &exact, 5, H, &mut crate::tensor::rng(0));
        assert!(spots.iter().all(|s| s.rel_error < 1e-8 && !s.kink));
    }
}
