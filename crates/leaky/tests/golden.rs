//! Golden tests: leaky's layers, losses and update rules against fixtures computed by an
//! independent numpy implementation (`scripts/fixtures/make_fixtures.py`, run by hand; the
//! JSON is committed and embedded with `include_str!`, so CI needs no Python).
//!
//! Every comparison uses CS231n's `rel_error` (element-wise `|a - b| / max(1e-8, |a| + |b|)`,
//! maximised) and prints one line, visible with `--nocapture`:
//! `OK   conv s2p1 forward_fast f64          rel_error 3.1e-12`.
//!
//! * f64: everything (forward values, gradients, optimiser state) must agree to
//!   [`F64_TOL`] = 1e-9. The fixtures are exact f64 reprs of the same linspace inputs, so the
//!   only differences left are summation order and the like (~1e-15 relative per element).
//! * f32: forward values (layer outputs, loss values, updated weights) are run again with
//!   f32 inputs cast from the fixture and must agree to [`F32_TOL`] = 1e-4.

use leaky::gradcheck::rel_error;
use leaky::layers::conv::ConvCache;
use leaky::layers::pool::PoolCache;
use leaky::optim::{update, Rule, Slots, UpdateConfig};
use leaky::tensor::cast;
use leaky::{Float, Tensor};
use ndarray::{Array, Array1, Array2, Array3, Array4, ArrayD, Dimension, IxDyn};
use serde_json::Value;

/// Tolerance for f64 runs (all quantities).
const F64_TOL: f64 = 1e-9;
/// Tolerance for f32 runs (forward values only): f32 has a 6e-8 unit roundoff, and inputs
/// are rounded to f32 before the computation.
const F32_TOL: f64 = 1e-4;

// ---------------------------------------------------------------------------------------
// fixture helpers
// ---------------------------------------------------------------------------------------

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is valid JSON")
}

/// `{"shape": [...], "data": [...]}` as an f64 array of any rank.
fn arr(v: &Value) -> ArrayD<f64> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .expect("fixture array has a shape")
        .iter()
        .map(|d| d.as_u64().expect("shape entries are integers") as usize)
        .collect();
    let data: Vec<f64> = v["data"]
        .as_array()
        .expect("fixture array has data")
        .iter()
        .map(|x| x.as_f64().expect("data entries are numbers"))
        .collect();
    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("data matches shape")
}

/// A fixture array with a fixed rank, cast to `F`.
fn arr_as<F: Float, D: Dimension>(v: &Value) -> Array<F, D> {
    cast(&arr(v).into_dimensionality::<D>().expect("fixture array has the expected rank"))
}

fn num(v: &Value) -> f64 {
    v.as_f64().expect("fixture value is a number")
}

/// The tolerance of a forward value for `F`.
fn tol<F: Float>() -> f64 {
    if F::NAME == "f64" {
        F64_TOL
    } else {
        F32_TOL
    }
}

/// Compare `got` (any float type) with the fixture array `want`, print, and assert.
fn check<F: Float, D: Dimension>(what: &str, got: &Array<F, D>, want: &Value, tol: f64) {
    let want = arr(want);
    let got: ArrayD<f64> = cast(got).into_dyn();
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    report(what, rel_error(&got, &want), tol);
}

fn check_scalar<F: Float>(what: &str, got: F, want: &Value, tol: f64) {
    let got = Array1::from_elem(1, got.to_f64c());
    let want = Array1::from_elem(1, num(want));
    report(what, rel_error(&got, &want), tol);
}

fn report(what: &str, e: f64, tol: f64) {
    let status = if e < tol { "OK  " } else { "FAIL" };
    println!("{status} {what:<46} rel_error {e:.1e}");
    assert!(e < tol, "{what}: rel_error {e:.3e} is not below {tol:.0e}");
}

// ---------------------------------------------------------------------------------------
// 1. affine
// ---------------------------------------------------------------------------------------

const AFFINE: &str = include_str!("fixtures/affine.json");

fn affine_case<F: Float>() {
    use leaky::layers::affine;
    let fx = parse(AFFINE);
    let x: Tensor<F> = arr_as(&fx["x"]);
    let w: Array2<F> = arr_as(&fx["w"]);
    let b: Array1<F> = arr_as(&fx["b"]);
    let (out, cache) = affine::forward(x, &w, &b);
    check(&format!("affine forward {}", F::NAME), &out, &fx["out"], tol::<F>());
    if F::NAME == "f64" {
        let dout: Array2<F> = arr_as(&fx["dout"]);
        let (dx, dw, db) = affine::backward(&dout, &cache, &w);
        check("affine backward dx f64", &dx, &fx["dx"], F64_TOL);
        check("affine backward dw f64", &dw, &fx["dw"], F64_TOL);
        check("affine backward db f64", &db, &fx["db"], F64_TOL);
    }
}

#[test]
fn golden_affine() {
    affine_case::<f64>();
    affine_case::<f32>();
}

// ---------------------------------------------------------------------------------------
// 5. losses
// ---------------------------------------------------------------------------------------

const LOSSES: &str = include_str!("fixtures/losses.json");

fn losses_case<F: Float>() {
    use leaky::losses::{clipped_mse_loss, huber_loss, mse_loss, softmax_loss, svm_loss};
    let fx = parse(LOSSES);
    let t = F::NAME;
    let f64_only = t == "f64";

    let scores: Array2<F> = arr_as(&fx["scores"]);
    let y: Vec<usize> =
        fx["y"].as_array().expect("labels").iter().map(|v| v.as_u64().expect("label") as usize).collect();
    for (name, (loss, grad)) in [("softmax", softmax_loss(&scores, &y)), ("svm", svm_loss(&scores, &y))] {
        check_scalar(&format!("{name} loss {t}"), loss, &fx[name]["loss"], tol::<F>());
        if f64_only {
            check(&format!("{name} dscores {t}"), &grad, &fx[name]["grad"], F64_TOL);
        }
    }

    let pred: ArrayD<F> = arr_as(&fx["pred"]);
    let target: ArrayD<F> = arr_as(&fx["target"]);
    let mut cases = vec![
        ("mse".to_string(), mse_loss(&pred, &target), &fx["mse"]),
        ("clipped_mse".to_string(), clipped_mse_loss(&pred, &target), &fx["clipped_mse"]),
    ];
    for h in fx["huber"].as_array().expect("huber cases") {
        let delta = num(&h["delta"]);
        cases.push((format!("huber({delta:?})"), huber_loss(&pred, &target, F::from_f64c(delta)), h));
    }
    for (name, (loss, grad), want) in cases {
        check_scalar(&format!("{name} loss {t}"), loss, &want["loss"], tol::<F>());
        if f64_only {
            check(&format!("{name} dpred {t}"), &grad, &want["grad"], F64_TOL);
        }
    }
}

#[test]
fn golden_losses() {
    losses_case::<f64>();
    losses_case::<f32>();
}

/// The clipped-MSE gradient is exactly zero where |pred - target| > 1 (the DQN bug), and
/// the fixture has such elements: checked exactly, not just within a tolerance.
#[test]
fn golden_clipped_mse_zero_gradient_is_exact() {
    let fx = parse(LOSSES);
    let pred = arr(&fx["pred"]);
    let target = arr(&fx["target"]);
    let (_, grad) = leaky::losses::clipped_mse_loss(&pred, &target);
    let mut zeros = 0;
    for ((g, p), t) in grad.iter().zip(pred.iter()).zip(target.iter()) {
        if (p - t).abs() > 1.0 {
            assert_eq!(*g, 0.0, "clipped_mse gradient where |d| > 1");
            zeros += 1;
        } else {
            assert_ne!(*g, 0.0, "clipped_mse gradient where |d| <= 1");
        }
    }
    assert!(zeros > 0, "fixture has elements with |d| > 1");
}

// ---------------------------------------------------------------------------------------
// 6. update rules
// ---------------------------------------------------------------------------------------

const OPTIM: &str = include_str!("fixtures/optim.json");

const RULES: [(&str, Rule); 4] =
    [("sgd", Rule::Sgd), ("momentum", Rule::Momentum), ("rmsprop", Rule::Rmsprop), ("adam", Rule::Adam)];

/// Slot `key` ("m" or "v") from the fixture, or zeros shaped like `w`.
fn slot<F: Float>(case: &Value, key: &str, w: &Tensor<F>) -> Tensor<F> {
    if case.get(key).is_some() {
        arr_as(&case[key])
    } else {
        Tensor::zeros(w.raw_dim())
    }
}

fn optim_case<F: Float>() {
    let fx = parse(OPTIM);
    let t = F::NAME;
    // One step from the CS231n notebook states.
    for (name, rule) in RULES {
        let case = &fx["single"][name];
        let cfg = UpdateConfig::new(rule, num(&case["lr"]));
        let mut w: Tensor<F> = arr_as(&case["w"]);
        let dw: Tensor<F> = arr_as(&case["dw"]);
        let mut slots = Slots { m: slot(case, "m", &w), v: slot(case, "v", &w), t: case["t"].as_u64().unwrap_or(0) };
        update(&mut w, &dw, &mut slots, &cfg);
        check(&format!("{name} cs231n step w {t}"), &w, &case["next_w"], tol::<F>());
        if t == "f64" {
            if case.get("next_m").is_some() {
                check(&format!("{name} cs231n step m {t}"), &slots.m, &case["next_m"], F64_TOL);
            }
            if case.get("next_v").is_some() {
                check(&format!("{name} cs231n step v {t}"), &slots.v, &case["next_v"], F64_TOL);
            }
        }
        if let Some(next_t) = case.get("next_t") {
            assert_eq!(slots.t, next_t.as_u64().expect("t"), "{name}: t after the step");
        }
    }
    // Three steps from zero state.
    for (name, rule) in RULES {
        let seq = &fx["sequence"][name];
        let cfg = UpdateConfig::new(rule, num(&seq["lr"]));
        let mut w: Tensor<F> = arr_as(&seq["w0"]);
        let mut slots = Slots::zeros_like(&w);
        for (k, step) in seq["steps"].as_array().expect("steps").iter().enumerate() {
            let dw: Tensor<F> = arr_as(&step["dw"]);
            update(&mut w, &dw, &mut slots, &cfg);
            check(&format!("{name} zero-state step {} w {t}", k + 1), &w, &step["w"], tol::<F>());
            if t == "f64" {
                if step.get("m").is_some() {
                    check(&format!("{name} zero-state step {} m {t}", k + 1), &slots.m, &step["m"], F64_TOL);
                }
                if step.get("v").is_some() {
                    check(&format!("{name} zero-state step {} v {t}", k + 1), &slots.v, &step["v"], F64_TOL);
                }
            }
            if let Some(st) = step.get("t") {
                assert_eq!(slots.t, st.as_u64().expect("t"), "{name}: t after step {}", k + 1);
            }
        }
    }
}

#[test]
fn golden_optim() {
    optim_case::<f64>();
    optim_case::<f32>();
}

// ---------------------------------------------------------------------------------------
// 2. convolution (naive and fast)
// ---------------------------------------------------------------------------------------

const CONV: &str = include_str!("fixtures/conv.json");

fn conv_case<F: Float>() {
    use leaky::layers::conv::{backward_fast, backward_naive, forward_fast, forward_naive, ConvParam};
    let fx = parse(CONV);
    let t = F::NAME;
    for (key, case) in fx["cases"].as_object().expect("conv cases") {
        let conv = ConvParam {
            stride: case["stride"].as_u64().expect("stride") as usize,
            pad: case["pad"].as_u64().expect("pad") as usize,
        };
        let x: Array4<F> = arr_as(&case["x"]);
        let w: Array4<F> = arr_as(&case["w"]);
        let b: Array1<F> = arr_as(&case["b"]);
        let dout: Array4<F> = arr_as(&case["dout"]);
        type Fwd<F> = fn(&Array4<F>, &Array4<F>, &Array1<F>, ConvParam) -> (Array4<F>, ConvCache<F>);
        type Bwd<F> = fn(&Array4<F>, &ConvCache<F>, &Array4<F>) -> (Array4<F>, Array4<F>, Array1<F>);
        let impls: [(&str, Fwd<F>, Bwd<F>); 2] =
            [("naive", forward_naive::<F>, backward_naive::<F>), ("fast", forward_fast::<F>, backward_fast::<F>)];
        for (which, fwd, bwd) in impls {
            let (out, cache) = fwd(&x, &w, &b, conv);
            check(&format!("conv {key} forward_{which} {t}"), &out, &case["out"], tol::<F>());
            if t == "f64" {
                let (dx, dw, db) = bwd(&dout, &cache, &w);
                check(&format!("conv {key} backward_{which} dx {t}"), &dx, &case["dx"], F64_TOL);
                check(&format!("conv {key} backward_{which} dw {t}"), &dw, &case["dw"], F64_TOL);
                check(&format!("conv {key} backward_{which} db {t}"), &db, &case["db"], F64_TOL);
            }
        }
    }
}

#[test]
fn golden_conv() {
    conv_case::<f64>();
    conv_case::<f32>();
}

// ---------------------------------------------------------------------------------------
// 3. max pooling (naive and fast)
// ---------------------------------------------------------------------------------------

const POOL: &str = include_str!("fixtures/pool.json");

fn pool_case<F: Float>() {
    use leaky::layers::pool::{backward_fast, backward_naive, forward_fast, forward_naive, PoolParam};
    let fx = parse(POOL);
    let t = F::NAME;
    for (key, case) in fx["cases"].as_object().expect("pool cases") {
        let pool = PoolParam {
            height: case["height"].as_u64().expect("height") as usize,
            width: case["width"].as_u64().expect("width") as usize,
            stride: case["stride"].as_u64().expect("stride") as usize,
        };
        let x: Array4<F> = arr_as(&case["x"]);
        let dout: Array4<F> = arr_as(&case["dout"]);
        type Fwd<F> = fn(&Array4<F>, PoolParam) -> (Array4<F>, PoolCache<F>);
        type Bwd<F> = fn(&Array4<F>, &PoolCache<F>) -> Array4<F>;
        let impls: [(&str, Fwd<F>, Bwd<F>); 2] =
            [("naive", forward_naive::<F>, backward_naive::<F>), ("fast", forward_fast::<F>, backward_fast::<F>)];
        for (which, fwd, bwd) in impls {
            let (out, cache) = fwd(&x, pool);
            check(&format!("pool {key} forward_{which} {t}"), &out, &case["out"], tol::<F>());
            if t == "f64" {
                let dx = bwd(&dout, &cache);
                check(&format!("pool {key} backward_{which} dx {t}"), &dx, &case["dx"], F64_TOL);
            }
        }
    }
}

#[test]
fn golden_pool() {
    pool_case::<f64>();
    pool_case::<f32>();
}

// ---------------------------------------------------------------------------------------
// 4. batch norm and layer norm
// ---------------------------------------------------------------------------------------

const BATCHNORM: &str = include_str!("fixtures/batchnorm.json");
const LAYERNORM: &str = include_str!("fixtures/layernorm.json");

fn batchnorm_case<F: Float>() {
    use leaky::layers::batchnorm::{backward, backward_alt, forward, BnParam};
    use leaky::nn::Mode;
    let fx = parse(BATCHNORM);
    let t = F::NAME;
    let x: Array2<F> = arr_as(&fx["x"]);
    let gamma: Array1<F> = arr_as(&fx["gamma"]);
    let beta: Array1<F> = arr_as(&fx["beta"]);
    let d = gamma.len();

    let mut param = BnParam::<F>::new(d);
    assert_eq!(param.eps, num(&fx["eps"]), "BnParam::new eps");
    assert_eq!(param.momentum, num(&fx["momentum"]), "BnParam::new momentum");
    assert!(param.running_mean.iter().chain(param.running_var.iter()).all(|v| *v == F::zero()), "zero init");

    let (out, cache) = forward(&x, &gamma, &beta, &mut param, Mode::Train);
    check(&format!("batchnorm train forward {t}"), &out, &fx["out"], tol::<F>());
    if t == "f64" {
        let dout: Array2<F> = arr_as(&fx["dout"]);
        let (dx, dgamma, dbeta) = backward(&dout, &cache);
        check("batchnorm backward dx f64", &dx, &fx["dx"], F64_TOL);
        check("batchnorm backward dgamma f64", &dgamma, &fx["dgamma"], F64_TOL);
        check("batchnorm backward dbeta f64", &dbeta, &fx["dbeta"], F64_TOL);
        let (dx2, dgamma2, dbeta2) = backward_alt(&dout, &cache);
        check("batchnorm backward_alt dx f64", &dx2, &fx["dx"], F64_TOL);
        check("batchnorm backward_alt dgamma f64", &dgamma2, &fx["dgamma"], F64_TOL);
        check("batchnorm backward_alt dbeta f64", &dbeta2, &fx["dbeta"], F64_TOL);
        let (dx, dx2): (Array2<f64>, Array2<f64>) = (cast(&dx), cast(&dx2));
        report("batchnorm backward vs backward_alt dx f64", rel_error(&dx, &dx2), F64_TOL);
    }

    // Three training calls from zero running statistics, then evaluation.
    let mut param = BnParam::<F>::new(d);
    for (k, step) in fx["train_steps"].as_array().expect("train steps").iter().enumerate() {
        let xk: Array2<F> = arr_as(&step["x"]);
        let (out, _) = forward(&xk, &gamma, &beta, &mut param, Mode::Train);
        let k = k + 1;
        check(&format!("batchnorm train call {k} forward {t}"), &out, &step["out"], tol::<F>());
        check(
            &format!("batchnorm train call {k} running_mean {t}"),
            &param.running_mean,
            &step["running_mean"],
            tol::<F>(),
        );
        check(
            &format!("batchnorm train call {k} running_var {t}"),
            &param.running_var,
            &step["running_var"],
            tol::<F>(),
        );
    }
    let x_eval: Array2<F> = arr_as(&fx["x_eval"]);
    let (out, _) = forward(&x_eval, &gamma, &beta, &mut param, Mode::Eval);
    check(&format!("batchnorm eval forward {t}"), &out, &fx["out_eval"], tol::<F>());
}

#[test]
fn golden_batchnorm() {
    batchnorm_case::<f64>();
    batchnorm_case::<f32>();
}

fn layernorm_case<F: Float>() {
    use leaky::layers::layernorm::{backward, forward};
    let fx = parse(LAYERNORM);
    let t = F::NAME;
    let x: Array2<F> = arr_as(&fx["x"]);
    let gamma: Array1<F> = arr_as(&fx["gamma"]);
    let beta: Array1<F> = arr_as(&fx["beta"]);
    let (out, cache) = forward(&x, &gamma, &beta, num(&fx["eps"]));
    check(&format!("layernorm forward {t}"), &out, &fx["out"], tol::<F>());
    if t == "f64" {
        let dout: Array2<F> = arr_as(&fx["dout"]);
        let (dx, dgamma, dbeta) = backward(&dout, &cache);
        check("layernorm backward dx f64", &dx, &fx["dx"], F64_TOL);
        check("layernorm backward dgamma f64", &dgamma, &fx["dgamma"], F64_TOL);
        check("layernorm backward dbeta f64", &dbeta, &fx["dbeta"], F64_TOL);
    }
}

#[test]
fn golden_layernorm() {
    layernorm_case::<f64>();
    layernorm_case::<f32>();
}

// ---------------------------------------------------------------------------------------
// 7. recurrent layers and the spectral radius
// ---------------------------------------------------------------------------------------

const RNN: &str = include_str!("fixtures/rnn.json");

/// `{"shape": [N, T], "data": [...]}` of non-negative integers (ids, labels, a 0/1 mask).
fn int_arr(v: &Value) -> Array2<usize> {
    arr(v).into_dimensionality().expect("a 2-D integer array").mapv(|x| x as usize)
}

fn rnn_case<F: Float>() {
    use leaky::layers::rnn::{backward_with_norms, forward, step_backward, step_forward};
    let fx = parse(RNN);
    let t = F::NAME;
    let st = &fx["rnn_step"];
    let (x, prev_h): (Array2<F>, Array2<F>) = (arr_as(&st["x"]), arr_as(&st["prev_h"]));
    let (wx, wh, b): (Array2<F>, Array2<F>, Array1<F>) = (arr_as(&st["wx"]), arr_as(&st["wh"]), arr_as(&st["b"]));
    let (next_h, cache) = step_forward(&x, &prev_h, &wx, &wh, &b);
    check(&format!("rnn step_forward {t}"), &next_h, &st["next_h"], tol::<F>());
    if t == "f64" {
        let (dx, dprev_h, dwx, dwh, db) = step_backward(&arr_as(&st["dnext_h"]), &cache, &wx, &wh);
        check("rnn step_backward dx f64", &dx, &st["dx"], F64_TOL);
        check("rnn step_backward dprev_h f64", &dprev_h, &st["dprev_h"], F64_TOL);
        check("rnn step_backward dwx f64", &dwx, &st["dwx"], F64_TOL);
        check("rnn step_backward dwh f64", &dwh, &st["dwh"], F64_TOL);
        check("rnn step_backward db f64", &db, &st["db"], F64_TOL);
    }
    for (key, case) in fx["rnn"]["cases"].as_object().expect("rnn cases") {
        let x: Array3<F> = arr_as(&case["x"]);
        let h0: Array2<F> = arr_as(&case["h0"]);
        let (wx, wh, b): (Array2<F>, Array2<F>, Array1<F>) =
            (arr_as(&case["wx"]), arr_as(&case["wh"]), arr_as(&case["b"]));
        let (h, cache) = forward(&x, &h0, &wx, &wh, &b);
        check(&format!("rnn {key} forward {t}"), &h, &case["h"], tol::<F>());
        if t == "f64" {
            let ((dx, dh0, dwx, dwh, db), norms) = backward_with_norms(&arr_as(&case["dh"]), &cache, &wx, &wh);
            check(&format!("rnn {key} backward dx f64"), &dx, &case["dx"], F64_TOL);
            check(&format!("rnn {key} backward dh0 f64"), &dh0, &case["dh0"], F64_TOL);
            check(&format!("rnn {key} backward dwx f64"), &dwx, &case["dwx"], F64_TOL);
            check(&format!("rnn {key} backward dwh f64"), &dwh, &case["dwh"], F64_TOL);
            check(&format!("rnn {key} backward db f64"), &db, &case["db"], F64_TOL);
            check(&format!("rnn {key} backward norms f64"), &Array1::from(norms), &case["norms"], F64_TOL);
        }
    }
}

#[test]
fn golden_rnn() {
    rnn_case::<f64>();
    rnn_case::<f32>();
}

fn lstm_case<F: Float>() {
    use leaky::layers::rnn::{lstm_backward_with_norms, lstm_forward, lstm_step_backward, lstm_step_forward};
    let fx = parse(RNN);
    let t = F::NAME;
    let st = &fx["lstm_step"];
    let (x, prev_h, prev_c): (Array2<F>, Array2<F>, Array2<F>) =
        (arr_as(&st["x"]), arr_as(&st["prev_h"]), arr_as(&st["prev_c"]));
    let (wx, wh, b): (Array2<F>, Array2<F>, Array1<F>) = (arr_as(&st["wx"]), arr_as(&st["wh"]), arr_as(&st["b"]));
    let (next_h, next_c, cache) = lstm_step_forward(&x, &prev_h, &prev_c, &wx, &wh, &b);
    check(&format!("lstm step_forward next_h {t}"), &next_h, &st["next_h"], tol::<F>());
    check(&format!("lstm step_forward next_c {t}"), &next_c, &st["next_c"], tol::<F>());
    if t == "f64" {
        let (dnh, dnc): (Array2<F>, Array2<F>) = (arr_as(&st["dnext_h"]), arr_as(&st["dnext_c"]));
        let (dx, dprev_h, dprev_c, dwx, dwh, db) = lstm_step_backward(&dnh, &dnc, &cache, &wx, &wh);
        check("lstm step_backward dx f64", &dx, &st["dx"], F64_TOL);
        check("lstm step_backward dprev_h f64", &dprev_h, &st["dprev_h"], F64_TOL);
        check("lstm step_backward dprev_c f64", &dprev_c, &st["dprev_c"], F64_TOL);
        check("lstm step_backward dwx f64", &dwx, &st["dwx"], F64_TOL);
        check("lstm step_backward dwh f64", &dwh, &st["dwh"], F64_TOL);
        check("lstm step_backward db f64", &db, &st["db"], F64_TOL);
    }
    for (key, case) in fx["lstm"]["cases"].as_object().expect("lstm cases") {
        let x: Array3<F> = arr_as(&case["x"]);
        let h0: Array2<F> = arr_as(&case["h0"]);
        let (wx, wh, b): (Array2<F>, Array2<F>, Array1<F>) =
            (arr_as(&case["wx"]), arr_as(&case["wh"]), arr_as(&case["b"]));
        let (h, cache) = lstm_forward(&x, &h0, &wx, &wh, &b);
        check(&format!("lstm {key} forward {t}"), &h, &case["h"], tol::<F>());
        if t == "f64" {
            let ((dx, dh0, dwx, dwh, db), norms) = lstm_backward_with_norms(&arr_as(&case["dh"]), &cache, &wx, &wh);
            check(&format!("lstm {key} backward dx f64"), &dx, &case["dx"], F64_TOL);
            check(&format!("lstm {key} backward dh0 f64"), &dh0, &case["dh0"], F64_TOL);
            check(&format!("lstm {key} backward dwx f64"), &dwx, &case["dwx"], F64_TOL);
            check(&format!("lstm {key} backward dwh f64"), &dwh, &case["dwh"], F64_TOL);
            check(&format!("lstm {key} backward db f64"), &db, &case["db"], F64_TOL);
            check(&format!("lstm {key} backward norms f64"), &Array1::from(norms), &case["norms"], F64_TOL);
        }
    }
}

#[test]
fn golden_lstm() {
    lstm_case::<f64>();
    lstm_case::<f32>();
}

fn word_level_case<F: Float>() {
    use leaky::layers::rnn::{
        embedding_backward, embedding_forward, temporal_affine_backward, temporal_affine_forward, temporal_softmax_loss,
    };
    let fx = parse(RNN);
    let t = F::NAME;

    let e = &fx["embedding"];
    let ids = int_arr(&e["x"]);
    let (out, cache) = embedding_forward(&ids, &arr_as::<F, _>(&e["w"]));
    check(&format!("embedding forward {t}"), &out, &e["out"], tol::<F>());
    if t == "f64" {
        let dw = embedding_backward(&arr_as::<F, _>(&e["dout"]), &cache);
        check("embedding backward dw f64", &dw, &e["dw"], F64_TOL);
    }

    let a = &fx["temporal_affine"];
    let w: Array2<F> = arr_as(&a["w"]);
    let (out, cache) = temporal_affine_forward(&arr_as(&a["x"]), &w, &arr_as(&a["b"]));
    check(&format!("temporal_affine forward {t}"), &out, &a["out"], tol::<F>());
    if t == "f64" {
        let (dx, dw, db) = temporal_affine_backward(&arr_as(&a["dout"]), &cache, &w);
        check("temporal_affine backward dx f64", &dx, &a["dx"], F64_TOL);
        check("temporal_affine backward dw f64", &dw, &a["dw"], F64_TOL);
        check("temporal_affine backward db f64", &db, &a["db"], F64_TOL);
    }

    let l = &fx["temporal_softmax_loss"];
    let mask = int_arr(&l["mask"]).mapv(|m| m == 1);
    assert!(mask.iter().any(|m| !m), "the fixture masks some steps out");
    let (loss, dx) = temporal_softmax_loss(&arr_as::<F, _>(&l["x"]), &int_arr(&l["y"]), &mask);
    check_scalar(&format!("temporal_softmax_loss loss {t}"), loss, &l["loss"], tol::<F>());
    if t == "f64" {
        check("temporal_softmax_loss dx f64", &dx, &l["dx"], F64_TOL);
    }
}

#[test]
fn golden_word_level_layers() {
    word_level_case::<f64>();
    word_level_case::<f32>();
}

#[test]
fn golden_spectral_radius() {
    use leaky::nn::spectral::{largest_singular_value, spectral_radius};
    let fx = parse(RNN);
    let s = &fx["spectral"];
    let w: Array2<f64> = arr_as(&s["w"]);
    let rho = spectral_radius(&w);
    let sigma = largest_singular_value(&w);
    println!("spectral radius {rho:.17} (numpy {:.17}), largest singular value {sigma:.17}", num(&s["radius"]));
    check_scalar("spectral radius of randn(5, 5) f64", rho, &s["radius"], F64_TOL);
    check_scalar("largest singular value of randn(5, 5) f64", sigma, &s["largest_singular_value"], F64_TOL);
}
