//! `leaky gradcheck FILE.toml`: the experiment's own model, built in f64 with the same
//! layers and initialisation, checked against centred finite differences on a few of its
//! training examples — every layer alone (input gradient and each parameter, against a
//! random upstream gradient) and the whole model (every parameter, through the
//! experiment's loss and weight decay).
//!
//! Dropout layers replay one mask during the check ([`crate::nn::Layer::replay_randomness`]),
//! so the function differenced is deterministic. Parameters with more than
//! [`MAX_CHECKED_ELEMENTS`] elements are checked on that many evenly spaced elements.

use super::config::{Experiment, ModelKind};
use super::pipeline::{build_stack, layer_list, prepare_rows, prepare_seq};
use super::{Error, Result};
use crate::checks::LayerCheck;
use crate::gradcheck::{check_array, check_scalar, CheckReport};
use crate::layers::affine;
use crate::nn::seq::{seq_batch, SeqModel, SeqSpec};
use crate::nn::{Mode, Sequential};
use crate::tensor::{randn, rng, Tensor};
use ndarray::{Array1, IxDyn};
use std::path::Path;

/// Parameters larger than this are checked on this many evenly spaced elements.
pub const MAX_CHECKED_ELEMENTS: usize = 600;

/// The default number of training examples the check runs on (batch norm needs at least 3).
pub const DEFAULT_EXAMPLES: usize = 4;

/// Evenly spaced flat indices into `len` elements, at most [`MAX_CHECKED_ELEMENTS`].
fn chosen(len: usize) -> Vec<usize> {
    if len <= MAX_CHECKED_ELEMENTS {
        (0..len).collect()
    } else {
        (0..MAX_CHECKED_ELEMENTS).map(|k| k * len / MAX_CHECKED_ELEMENTS).collect()
    }
}

/// Check `analytic` (the gradient of `f` at `value`) on the chosen elements of `value`.
fn check_elements(
    name: &str,
    value: &Tensor<f64>,
    analytic: &Tensor<f64>,
    mut f: impl FnMut(&Tensor<f64>) -> f64,
) -> CheckReport {
    let idx = chosen(value.len());
    let flat_v: Vec<f64> = value.iter().copied().collect();
    let flat_a: Vec<f64> = analytic.iter().copied().collect();
    let x: Array1<f64> = idx.iter().map(|&i| flat_v[i]).collect();
    let a: Array1<f64> = idx.iter().map(|&i| flat_a[i]).collect();
    let shape = value.raw_dim();
    check_scalar(
        name,
        |sub| {
            let mut full = flat_v.clone();
            for (k, &i) in idx.iter().enumerate() {
                full[i] = sub[k];
            }
            f(&Tensor::from_shape_vec(shape.clone(), full).expect("same element count"))
        },
        &x,
        &a,
    )
}

/// Run the check of an experiment's model on `examples` training examples (relative data
/// paths against `base`). Feed-forward stacks get a check per layer and per parameter of the
/// whole model; RNN/LSTM models a check per parameter of the whole model. DQN experiments
/// are [`Error::BadInput`] (the plain `leaky gradcheck` checks the TD losses).
pub fn gradcheck(exp: &Experiment, base: &Path, examples: usize) -> Result<Vec<LayerCheck>> {
    match exp.model.kind {
        ModelKind::Mlp => check_feed(exp, base, examples),
        ModelKind::Rnn | ModelKind::Lstm => check_seq(exp, base, examples),
        ModelKind::Dqn => Err(Error::BadInput(
            "model.kind = \"dqn\": gradcheck of a file checks feed-forward and recurrent models; `leaky gradcheck` without a file checks the TD losses".into(),
        )),
    }
}

fn check_feed(exp: &Experiment, base: &Path, examples: usize) -> Result<Vec<LayerCheck>> {
    let (train, _) = prepare_rows(exp, base)?;
    let layers = layer_list(exp);
    let has_bn = layers.iter().any(|l| l.kind == super::LayerType::Batchnorm);
    let n = examples.max(if has_bn { 3 } else { 1 }).min(train.len());
    let (mut net, _) = build_stack::<f64>(exp, &layers, &train.feature_shape, train.classes, exp.seed)?;
    for l in net.layers.iter_mut() {
        l.replay_randomness(true);
    }
    let idx: Vec<usize> = (0..n).collect();
    let (x, y) = crate::train::batch::<f64>(&train, &idx);
    let mut out = Vec::new();
    let mut r = rng(exp.seed.wrapping_add(99));

    // Layer by layer: each layer alone on the input it gets in the model.
    let mut xi = x.clone();
    for (i, layer) in net.layers.iter_mut().enumerate() {
        let label = format!("{i} {}", layer.kind());
        let y0 = layer.forward(xi.clone(), Mode::Train);
        let dout: Tensor<f64> = randn(IxDyn(y0.shape()), 1.0, &mut r);
        let dx = layer.backward(dout.clone());
        let grads: Vec<(String, Tensor<f64>, Tensor<f64>)> =
            layer.params().iter().map(|p| (p.name.to_string(), p.value.clone(), p.grad.clone())).collect();
        let rep = check_array(&format!("layer {label} dx"), |x| layer.forward(x.clone(), Mode::Train), &xi, &dout, &dx);
        out.push(LayerCheck {
            layer: format!("layer {label}"),
            input: "dx".into(),
            shape: xi.shape().to_vec(),
            report: rep,
        });
        for (k, (name, value, grad)) in grads.iter().enumerate() {
            let rep = check_elements(&format!("layer {label} d{name}"), value, grad, |v| {
                layer.params_mut()[k].value = v.clone();
                (layer.forward(xi.clone(), Mode::Train) * &dout).sum()
            });
            layer.params_mut()[k].value = value.clone();
            out.push(LayerCheck {
                layer: format!("layer {label}"),
                input: format!("d{name}"),
                shape: value.shape().to_vec(),
                report: rep,
            });
        }
        xi = layer.forward(xi, Mode::Train);
    }

    // The whole model: every parameter through the loss and the L2 term.
    let reg = exp.train.weight_decay;
    let loss = exp.train.loss;
    let loss_of = |net: &mut Sequential<f64>| -> f64 {
        let scores = affine::as_2d(net.forward(x.clone(), Mode::Train));
        let l2: f64 =
            net.params().iter().filter(|(_, p)| p.decay).map(|(_, p)| p.value.iter().map(|v| v * v).sum::<f64>()).sum();
        loss.classify(&scores, &y).0 + 0.5 * reg * l2
    };
    let scores = affine::as_2d(net.forward(x.clone(), Mode::Train));
    net.backward(loss.classify(&scores, &y).1.into_dyn());
    let analytic: Vec<(usize, String, Tensor<f64>, Tensor<f64>)> = net
        .params()
        .iter()
        .map(|(i, p)| {
            let g = if p.decay { &p.grad + &(&p.value * reg) } else { p.grad.clone() };
            (*i, p.name.to_string(), p.value.clone(), g)
        })
        .collect();
    for (k, (i, name, value, grad)) in analytic.iter().enumerate() {
        // A bias right before batch norm has exactly zero gradient (batch norm subtracts the
        // batch mean); comparing rounding noise with rounding noise says nothing.
        if name == "b" && net.layers.get(i + 1).is_some_and(|l| l.kind().ends_with("batchnorm")) {
            continue;
        }
        let rep = check_elements(&format!("model d{i}.{name}"), value, grad, |v| {
            net.params_mut()[k].value = v.clone();
            loss_of(&mut net)
        });
        net.params_mut()[k].value = value.clone();
        out.push(LayerCheck {
            layer: "whole model".into(),
            input: format!("d{i}.{name}"),
            shape: value.shape().to_vec(),
            report: rep,
        });
    }
    Ok(out)
}

fn check_seq(exp: &Experiment, base: &Path, examples: usize) -> Result<Vec<LayerCheck>> {
    let (train, _) = prepare_seq(exp, base)?;
    let f32_model = super::pipeline::build_seq_model(exp, &train)?;
    let spec: SeqSpec = f32_model.spec.clone();
    let mut model = SeqModel::<f64>::new(spec, exp.seed);
    let n = examples.max(1).min(train.len());
    let idx: Vec<usize> = (0..n).collect();
    let batch = seq_batch::<f64>(&train, &idx);
    model.forward_backward(&batch);
    let analytic: Vec<(String, Tensor<f64>, Tensor<f64>)> =
        model.params().iter().map(|p| (p.name.to_string(), p.value.clone(), p.grad.clone())).collect();
    let mut out = Vec::new();
    for (k, (name, value, grad)) in analytic.iter().enumerate() {
        let rep = check_elements(&format!("model d{name}"), value, grad, |v| {
            model.params_mut()[k].value = v.clone();
            model.evaluate(&batch).loss
        });
        model.params_mut()[k].value = value.clone();
        out.push(LayerCheck {
            layer: "whole model".into(),
            input: format!("d{name}"),
            shape: value.shape().to_vec(),
            report: rep,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::parse;

    #[test]
    fn a_small_cnn_passes_layer_by_layer_and_whole() {
        let exp = parse("[data]\ndataset = \"digits\"\n[train]\nweight_decay = 0.01\n[[model.layers]]\ntype = \"conv\"\nfilters = 2\nsize = 3\npad = 1\n[[model.layers]]\ntype = \"batchnorm\"\n[[model.layers]]\ntype = \"tanh\"\n[[model.layers]]\ntype = \"maxpool\"\n[[model.layers]]\ntype = \"dropout\"\np = 0.7\n[[model.layers]]\ntype = \"affine\"\n").unwrap();
        let checks = gradcheck(&exp, Path::new("."), 4).unwrap();
        // 6 layers: dx each; conv W, b; bn gamma, beta; affine W, b; then 6 params of the model
        // less the conv bias before batch norm.
        assert_eq!(checks.len(), 6 + 6 + 5, "{checks:#?}");
        for c in &checks {
            assert!(c.report.is_good(), "{} {}: {:e}", c.layer, c.input, c.report.max_rel_error);
        }
    }

    #[test]
    fn a_wrong_gradient_is_caught() {
        // The checker itself must fail on a wrong analytic gradient.
        let v: Tensor<f64> = randn(IxDyn(&[3, 4]), 1.0, &mut rng(0));
        let wrong = v.mapv(|x| 2.0 * x * 1.01); // d/dv sum(v^2) = 2v; 1% off
        let rep = check_elements("sq", &v, &wrong, |v| v.iter().map(|x| x * x).sum());
        assert!(!rep.is_good() && rep.max_rel_error > 1e-3, "{rep:?}");
    }

    #[test]
    fn recurrent_models_pass() {
        let exp = parse("[data]\ndataset = \"adding\"\nseq_len = 5\n[model]\nkind = \"lstm\"\nhidden = [4]\n[train]\nloss = \"mse\"\n").unwrap();
        let checks = gradcheck(&exp, Path::new("."), 2).unwrap();
        assert_eq!(checks.len(), 5, "Wx, Wh, b, W_out, b_out");
        // Wh's entries at init are ~1e-6 after 5 steps back, near the difference's rounding
        // floor: they land in the acceptable band, not in good.
        for c in &checks {
            assert!(
                c.report.verdict <= crate::gradcheck::Verdict::Acceptable,
                "{} {}: {:e}",
                c.layer,
                c.input,
                c.report.max_rel_error
            );
        }
    }
}
