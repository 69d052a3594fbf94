//! The four TD losses of the DQN, their gradients through gather (Q[:, a]) and through a
//! Q-network: numerical checks in f64 and hand-computed values.
//!
//! gather/scatter and the losses on their own are checked in their modules
//! (`layers::gather`, `layers::clip`, `losses`, and against numpy in `golden.rs`); here they
//! are checked composed the way the DQN uses them.

use leaky::gradcheck::{check_scalar, numerical_gradient};
use leaky::layers::gather;
use leaky::nn::{Activation, MlpSpec, Mode, NoProbe, Sequential};
use leaky::rl::dqn::{td_gradient, td_loss, td_targets, TdLoss};
use leaky::rl::replay::Batch;
use leaky::tensor::{randn, rng, Init};
use ndarray::{Array1, Array2};

/// d = -2, -1.75, ..., 2 (17 values) as q against y = 0.
fn ramp() -> (Array1<f64>, Array1<f64>) {
    (Array1::from_shape_fn(17, |i| -2.0 + 0.25 * i as f64), Array1::zeros(17))
}

#[test]
fn hand_computed_gradients_on_the_ramp() {
    let (d, y) = ramp();
    let n = 17.0;
    let clipped = td_loss(TdLoss::ClippedDelta, &d, &y);
    let huber = td_loss(TdLoss::Huber, &d, &y);
    let gclip = td_loss(TdLoss::GradClip, &d, &y);
    let mse = td_loss(TdLoss::Mse, &d, &y);
    for i in 0..17 {
        let di = d[i];
        // d/dd of sum(clip(d, -1, 1)^2): 2d inside [-1, 1], exactly 0 outside.
        let want_clipped = if di.abs() > 1.0 { 0.0 } else { 2.0 * di };
        assert_eq!(clipped.dq[i] * n, want_clipped, "clipped_delta at d = {di}");
        // d/dd of sum(huber(d)): clip(d, -1, 1).
        assert_eq!(huber.dq[i] * n, di.clamp(-1.0, 1.0), "huber at d = {di}");
        assert_eq!(gclip.dq[i] * n, di.clamp(-1.0, 1.0), "grad_clip at d = {di}");
        assert!((mse.dq[i] * n - 2.0 * di).abs() < 1e-12, "mse at d = {di}");
    }
    // |d| > 1 for -2..-1.25 and 1.25..2: 8 of 17.
    assert_eq!((clipped.zeroed, clipped.beyond_clip), (8, 8));
    assert_eq!((huber.zeroed, gclip.zeroed, mse.zeroed), (0, 0, 0));
    assert_eq!(huber.beyond_clip, 8);
    // Values: sum clip(d)^2 = 8 * 1 + (2 * (0.25^2 + 0.5^2 + 0.75^2 + 1)) = 8 + 3.75.
    assert!((clipped.loss * n - 11.75).abs() < 1e-12);
    // sum d^2 = 2 * 0.0625 * (1 + 4 + ... + 64) = 0.125 * 204 = 25.5.
    assert!((mse.loss * n - 25.5).abs() < 1e-12);
    assert!((gclip.loss * n - 12.75).abs() < 1e-12);
    // Huber: inside 0.5 d^2 (sum 0.5 * 3.75 = 1.875), outside |d| - 0.5 for 1.25..2 twice (0.75+1+1.25+1.5)*2 = 9.
    assert!((huber.loss * n - 10.875).abs() < 1e-12);
}

#[test]
fn huber_and_grad_clip_give_identical_gradients() {
    let mut r = rng(7);
    for n in [1usize, 5, 64] {
        let q: Array1<f64> = randn(n, 3.0, &mut r);
        let y: Array1<f64> = randn(n, 1.0, &mut r);
        let h = td_loss(TdLoss::Huber, &q, &y);
        let g = td_loss(TdLoss::GradClip, &q, &y);
        assert_eq!(h.dq, g.dq, "n = {n}");
    }
}

/// loss(Q) = td_loss(gather(Q, a), y): the DQN's loss as a function of the network output.
fn loss_of_q(kind: TdLoss, q: &Array2<f64>, a: &[usize], y: &Array1<f64>) -> (f64, Array2<f64>) {
    let (qa, cache) = gather::forward(q, a);
    let out = td_loss(kind, &qa, y);
    (out.loss, gather::backward(&out.dq, &cache))
}

#[test]
fn td_losses_through_gather_match_numerical_gradients() {
    let mut r = rng(11);
    for (n, na) in [(1usize, 2usize), (8, 2), (16, 3)] {
        // Keep |delta| away from the clip at +-1 so no finite difference straddles a kink.
        let mut q: Array2<f64> = randn((n, na), 2.0, &mut r);
        let a: Vec<usize> = (0..n).map(|i| (i * 5 + 1) % na).collect();
        let y: Array1<f64> = randn(n, 1.0, &mut r);
        for i in 0..n {
            let d = q[[i, a[i]]] - y[i];
            if (d.abs() - 1.0).abs() < 0.05 {
                q[[i, a[i]]] += 0.2 * d.signum();
            }
        }
        for kind in [TdLoss::Mse, TdLoss::Huber, TdLoss::ClippedDelta] {
            let (_, dq) = loss_of_q(kind, &q, &a, &y);
            let rep = check_scalar(kind.name(), |q| loss_of_q(kind, q, &a, &y).0, &q, &dq);
            println!("{:<14} n={n:<3} rel_error {:.2e}", kind.name(), rep.max_rel_error);
            assert!(rep.is_good(), "{rep:?}");
            // Columns of actions not taken get no gradient.
            for i in 0..n {
                for j in 0..na {
                    if j != a[i] {
                        assert_eq!(dq[[i, j]], 0.0);
                    }
                }
            }
        }
        // grad_clip is not the gradient of its own forward value (that is the point: it
        // clips the error term); it is the gradient of the Huber loss.
        let (_, dg) = loss_of_q(TdLoss::GradClip, &q, &a, &y);
        let (_, dh) = loss_of_q(TdLoss::Huber, &q, &a, &y);
        assert_eq!(dg, dh);
        let num = numerical_gradient(|q| loss_of_q(TdLoss::Huber, q, &a, &y).0, &q, 1e-5);
        assert!(leaky::gradcheck::rel_error(&dg, &num.grad) < 1e-7);
    }
}

fn tanh_net(seed: u64) -> Sequential<f64> {
    MlpSpec {
        input_dim: 4,
        hidden: vec![8, 8],
        output_dim: 2,
        activation: Activation::Tanh,
        init: Init::Xavier,
        bias_init: 0.0,
        batchnorm: false,
        dropout_keep: None,
    }
    .build(seed)
}

fn batch(n: usize, reward: f64, seed: u64) -> Batch {
    let mut r = rng(seed);
    Batch {
        states: randn((n, 4), 0.5, &mut r),
        actions: (0..n).map(|i| i % 2).collect(),
        rewards: Array1::from_elem(n, reward),
        next_states: randn((n, 4), 0.5, &mut r),
        terminated: Array1::from_shape_fn(n, |i| if i % 5 == 0 { 1.0 } else { 0.0 }),
    }
}

/// The TD loss of `online` (first-layer weights replaced by `w`) on `b`: the function the
/// network gradient must be the derivative of.
fn loss_of_w(w: &Array2<f64>, kind: TdLoss, b: &Batch) -> f64 {
    let mut online = tanh_net(1);
    online.params_mut()[0].value.assign(&w.clone().into_dyn());
    let mut target = tanh_net(2);
    let q_next = target.forward(b.next_states.clone().into_dyn(), Mode::Eval).into_dimensionality().unwrap();
    let y = td_targets(&q_next, &b.rewards, &b.terminated, 0.9);
    let q = online.forward(b.states.clone().into_dyn(), Mode::Train).into_dimensionality().unwrap();
    let (qa, _) = gather::forward(&q, &b.actions);
    td_loss(kind, &qa, &y).loss
}

#[test]
fn network_gradient_of_the_td_loss_matches_numerical() {
    let b = batch(10, 1.0, 3);
    for kind in [TdLoss::Mse, TdLoss::Huber, TdLoss::ClippedDelta] {
        let mut online = tanh_net(1);
        let mut target = tanh_net(2);
        td_gradient(&mut online, &mut target, &b, kind, 0.9, &mut NoProbe);
        let w0 = online.params()[0].1.value.clone().into_dimensionality().unwrap();
        let dw = online.params()[0].1.grad.clone().into_dimensionality().unwrap();
        let rep = check_scalar(kind.name(), |w| loss_of_w(w, kind, &b), &w0, &dw);
        println!("{:<14} dW1 rel_error {:.2e} ({} kinks)", kind.name(), rep.max_rel_error, rep.kinks);
        assert!(rep.is_good(), "{rep:?}");
    }
}

#[test]
fn huber_and_grad_clip_give_identical_network_gradients_and_clipped_delta_none_at_large_rewards() {
    // Rewards of 50 put every TD error far beyond the clip.
    let b = batch(32, 50.0, 4);
    let grads = |kind| {
        let mut online = tanh_net(1);
        let mut target = tanh_net(2);
        let out = td_gradient(&mut online, &mut target, &b, kind, 0.9, &mut NoProbe);
        let g: Vec<f64> =
            online.params().iter().flat_map(|(_, p)| p.grad.iter().copied().collect::<Vec<_>>()).collect();
        (out, g)
    };
    let (h, gh) = grads(TdLoss::Huber);
    let (_, gg) = grads(TdLoss::GradClip);
    assert_eq!(gh, gg);
    assert!(gh.iter().any(|&v| v != 0.0));
    assert_eq!(h.beyond_clip, 32);
    let (c, gc) = grads(TdLoss::ClippedDelta);
    assert_eq!(c.zeroed, 32);
    assert!(c.loss > 0.99, "the loss is not zero: {}", c.loss);
    assert!(gc.iter().all(|&v| v == 0.0), "no parameter may get any gradient");
}
