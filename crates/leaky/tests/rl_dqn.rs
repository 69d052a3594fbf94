//! The DQN with the doctor attached, from Rust: `clipped_delta` with large rewards gets
//! `zero_gradient` (every sample silenced, no parameter moves); `huber` on the same run
//! gets none, and `grad_clip` trains exactly as `huber` does.

use leaky::doctor::{Code, Doctor, DoctorConfig, Severity};
use leaky::losses::Loss;
use leaky::rl::dqn::{train, DqnConfig, NoDqnObserver, TdLoss, TD_CLIP_WHERE};

fn cfg(loss: TdLoss, scale: f64) -> DqnConfig {
    let mut c = DqnConfig::new(loss, 25, 4);
    c.learning_starts = 100;
    c.reward_scale = scale;
    c.net.hidden = vec![32, 32];
    c
}

#[test]
fn clipped_delta_with_large_rewards_is_diagnosed_and_learns_nothing() {
    let mut doc = Doctor::new(DoctorConfig { sample_every: 5 }, Loss::ClippedMse, 2);
    let (net, run) = train::<f64>(&cfg(TdLoss::ClippedDelta, 100.0), &mut doc);
    assert!(run.updates > 50, "{} updates", run.updates);
    assert_eq!(run.zeroed_share_total(), 1.0);
    // One record per sampled update (every 5th, from 0).
    assert_eq!(doc.stats.flat_ops.len(), run.updates.div_ceil(5));
    let f = doc.diagnose();
    let z = f.iter().find(|f| f.code == Code::ZeroGradient).expect("zero_gradient");
    assert_eq!((z.severity, z.where_.as_str()), (Severity::Error, TD_CLIP_WHERE));
    assert_eq!(z.number("zeroed_share"), Some(1.0));
    // No gradient at all: the network is still its initialisation.
    let init = cfg(TdLoss::ClippedDelta, 100.0).net.build::<f64>(4);
    for ((_, a), (_, b)) in net.params().iter().zip(init.params().iter()) {
        assert_eq!(a.value, b.value);
    }
}

#[test]
fn huber_is_not_diagnosed_and_grad_clip_trains_identically() {
    let mut doc = Doctor::new(DoctorConfig { sample_every: 5 }, Loss::Huber, 2);
    let (_, h) = train::<f64>(&cfg(TdLoss::Huber, 100.0), &mut doc);
    assert!(doc.stats.flat_ops.is_empty());
    assert!(!doc.diagnose().iter().any(|f| f.code == Code::ZeroGradient));
    assert_eq!(h.zeroed_share_total(), 0.0);
    let (_, g) = train::<f64>(&cfg(TdLoss::GradClip, 100.0), &mut NoDqnObserver);
    assert_eq!(h.returns, g.returns);
    assert_eq!(h.losses.len(), g.losses.len());
}
