//! Deep Q-learning (Mnih et al. 2015) on CartPole: an MLP Q-network, experience replay, a
//! target network copied every `target_update` environment steps, epsilon-greedy
//! exploration, and four TD losses, one of them the clip_by_value bug.
//!
//! One update, on a minibatch of N transitions `(s, a, r, s', terminated)`:
//!
//! ```text
//! y     = r + gamma * max_a' Q_target(s', a') * (1 - terminated)   (N,)  no gradient
//! Q     = Q_online(s)                                              (N, A)
//! q     = gather(Q, a) = Q[i, a_i]                                 (N,)
//! delta = q - y                                                    (N,)
//! loss  = td_loss(delta);  dq = dloss/dq;  dQ = scatter(dq, a)     (N,), (N, A)
//! ```
//!
//! | [`TdLoss`] | value | dloss/dq_i | zero gradient where |
//! |---|---|---|---|
//! | `mse` | mean(delta^2) | 2 delta_i / N | delta_i = 0 |
//! | `huber` | mean(h(delta)), h = delta^2/2 inside [-1, 1], \|delta\| - 1/2 outside | clip(delta_i, -1, 1) / N | delta_i = 0 |
//! | `grad_clip` | mean(delta^2 / 2) | clip(delta_i, -1, 1) / N (the error term clipped backward) | delta_i = 0 |
//! | `clipped_delta` | mean(clip(delta, -1, 1)^2) | 2 delta_i / N inside, **0 for \|delta_i\| > 1** | \|delta_i\| > 1 |
//!
//! `huber` and `grad_clip` have the same gradient exactly; `clipped_delta` (squaring
//! TensorFlow's `clip_by_value(delta, -1, 1)`, the bug) gives no gradient at all to exactly
//! the samples whose TD error is largest. Truncation by the time limit is not termination:
//! the target still bootstraps from `s'`.

use super::cartpole::{CartPole, ACTIONS, STATE_DIM};
use super::replay::{Batch, Experience, ReplayBuffer};
use crate::doctor::stats::{FlatOp, FlatOpStats};
use crate::doctor::Doctor;
use crate::layers::{clip, gather};
use crate::losses::{clipped_mse_loss, huber_loss, mse_loss};
use crate::nn::{MlpSpec, Mode, NoProbe, Probe, Sequential};
use crate::optim::{clip_global_norm, global_norm, update, Slots, UpdateConfig};
use crate::tensor::{Float, Tensor};
use crate::train::{Observer, StepInfo};
use ndarray::{Array1, Array2, Ix2, IxDyn};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Where the doctor's `zero_gradient` finding places the clip of `clipped_delta`.
pub const TD_CLIP_WHERE: &str = "td error (clip)";

/// The TD losses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TdLoss {
    /// Huber loss of the TD error (delta 1): gradient clip(delta, -1, 1) / N.
    Huber,
    /// The bug: mean(clip_by_value(delta, -1, 1)^2); zero gradient where |delta| > 1.
    ClippedDelta,
    /// Plain squared error mean(delta^2).
    Mse,
    /// mean(delta^2 / 2) forward, the error term clipped to [-1, 1] backward.
    GradClip,
}

impl TdLoss {
    /// All four, in the order reports list them (the bug first).
    pub const ALL: [TdLoss; 4] = [TdLoss::ClippedDelta, TdLoss::Huber, TdLoss::GradClip, TdLoss::Mse];

    /// The name used in TOML files and reports.
    pub fn name(self) -> &'static str {
        match self {
            TdLoss::Huber => "huber",
            TdLoss::ClippedDelta => "clipped_delta",
            TdLoss::Mse => "mse",
            TdLoss::GradClip => "grad_clip",
        }
    }

    /// Parse a TOML name.
    pub fn parse(s: &str) -> Option<TdLoss> {
        TdLoss::ALL.into_iter().find(|l| l.name() == s)
    }
}

/// The TD loss of one minibatch.
#[derive(Clone, Debug)]
pub struct TdLossOutput {
    /// The loss value.
    pub loss: f64,
    /// dloss/dq, (N,).
    pub dq: Array1<f64>,
    /// The TD errors `q - y`, (N,).
    pub delta: Array1<f64>,
    /// Samples whose gradient is exactly 0 although their TD error is not.
    pub zeroed: usize,
    /// Samples with |delta| > 1 (beyond the clip).
    pub beyond_clip: usize,
    /// Mean |delta|.
    pub mean_abs_delta: f64,
}

/// TD loss and its gradient with respect to the picked Q-values.
///
/// * `q`: (N,) Q(s_i, a_i)
/// * `y`: (N,) TD targets (constants)
pub fn td_loss(kind: TdLoss, q: &Array1<f64>, y: &Array1<f64>) -> TdLossOutput {
    let n = q.len();
    let (loss, dq) = match kind {
        TdLoss::Mse => mse_loss(q, y),
        TdLoss::Huber => huber_loss(q, y, 1.0),
        TdLoss::ClippedDelta => clipped_mse_loss(q, y),
        TdLoss::GradClip => {
            // loss = (1/N) sum e_i^2 / 2 with e = grad_clip(delta): the backward of the square
            // gives the error term e_i = delta_i, grad_clip clips it to [-1, 1], the mean
            // divides by N.
            let delta = q - y;
            let loss = delta.iter().map(|d| 0.5 * d * d).sum::<f64>() / n.max(1) as f64;
            let clipped = clip::grad_clip_backward(&delta.clone().into_dyn(), -1.0, 1.0);
            let dq = clipped.into_dimensionality().expect("1-D") / n.max(1) as f64;
            (loss, dq)
        }
    };
    let mut zeroed = 0;
    let mut beyond = 0;
    let mut abs_sum = 0.0;
    for ((&qi, &yi), &g) in q.iter().zip(y).zip(&dq) {
        let d: f64 = qi - yi;
        abs_sum += d.abs();
        beyond += usize::from(d.abs() > 1.0);
        zeroed += usize::from(g == 0.0 && d != 0.0);
    }
    TdLossOutput { loss, dq, delta: q - y, zeroed, beyond_clip: beyond, mean_abs_delta: abs_sum / n.max(1) as f64 }
}

/// TD targets `y_i = r_i + gamma * max_a' q_next[i, a'] * (1 - terminated_i)`.
///
/// * `q_next`: (N, A) target-network Q-values of the next states
/// * `rewards`, `terminated`: (N,)
pub fn td_targets(q_next: &Array2<f64>, rewards: &Array1<f64>, terminated: &Array1<f64>, gamma: f64) -> Array1<f64> {
    Array1::from_shape_fn(rewards.len(), |i| {
        let max = q_next.row(i).fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        rewards[i] + gamma * max * (1.0 - terminated[i])
    })
}

/// Everything a DQN run needs.
#[derive(Clone, Debug, PartialEq)]
pub struct DqnConfig {
    /// The Q-network: input 4, output 2 (the builder checks).
    pub net: MlpSpec,
    /// The TD loss.
    pub td_loss: TdLoss,
    /// Episodes to run.
    pub episodes: usize,
    /// Discount factor.
    pub gamma: f64,
    /// Every reward is multiplied by this before it is stored (returns are reported unscaled).
    pub reward_scale: f64,
    /// Copy the online network into the target network every this many environment steps.
    pub target_update: usize,
    /// Update rule and learning rate.
    pub update: UpdateConfig,
    /// Transitions per update.
    pub batch_size: usize,
    /// Clip the global gradient norm to this (0 = off).
    pub clip_grad_norm: f64,
    /// Replay capacity.
    pub buffer_size: usize,
    /// Environment steps of pure exploration before the first update.
    pub learning_starts: usize,
    /// One update every this many environment steps.
    pub train_every: usize,
    /// Epsilon at the first step.
    pub eps_start: f64,
    /// Epsilon after `eps_decay_steps` environment steps (linear in between).
    pub eps_end: f64,
    /// Length of the linear epsilon schedule, in environment steps.
    pub eps_decay_steps: usize,
    /// Seed of the network init, the environment, exploration and replay sampling.
    pub seed: u64,
}

impl DqnConfig {
    /// A 4-64-64-2 ReLU network with He init, Adam lr 1e-3, batch 64, the documented `[rl]`
    /// defaults (gamma 0.99, target_update 500, reward_scale 1), a 50 000-transition replay,
    /// 500 steps before learning, one update per step, epsilon 1 -> 0.05 over 5000 steps.
    pub fn new(td_loss: TdLoss, episodes: usize, seed: u64) -> Self {
        DqnConfig {
            net: MlpSpec {
                input_dim: STATE_DIM,
                hidden: vec![64, 64],
                output_dim: ACTIONS,
                activation: crate::nn::Activation::Relu,
                init: crate::tensor::Init::He,
                bias_init: 0.0,
                batchnorm: false,
                dropout_keep: None,
            },
            td_loss,
            episodes,
            gamma: 0.99,
            reward_scale: 1.0,
            target_update: 500,
            update: UpdateConfig::new(crate::optim::Rule::Adam, 1e-3),
            batch_size: 64,
            clip_grad_norm: 0.0,
            buffer_size: 50_000,
            learning_starts: 500,
            train_every: 1,
            eps_start: 1.0,
            eps_end: 0.05,
            eps_decay_steps: 5000,
            seed,
        }
    }

    /// Epsilon at environment step `t` (from 0).
    pub fn epsilon(&self, t: usize) -> f64 {
        if t >= self.eps_decay_steps {
            return self.eps_end;
        }
        self.eps_start + (self.eps_end - self.eps_start) * t as f64 / self.eps_decay_steps.max(1) as f64
    }
}

/// What one update tells observers (after the backward pass, before the weights change).
#[derive(Clone, Debug)]
pub struct UpdateInfo {
    /// Update index, from 0.
    pub update: usize,
    /// Environment steps so far.
    pub env_step: usize,
    /// The episode being played.
    pub episode: usize,
    /// TD loss of the minibatch.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate.
    pub lr: f64,
    /// Transitions in the minibatch.
    pub batch_size: usize,
    /// Samples with exactly zero gradient although their TD error is not zero.
    pub zeroed: usize,
    /// Samples with |delta| > 1.
    pub beyond_clip: usize,
    /// Mean |delta| over the minibatch.
    pub mean_abs_delta: f64,
    /// Samples whose next state is terminal (their target is just the reward).
    pub terminal: usize,
    /// Of those, the ones with exactly zero gradient although their TD error is not zero.
    pub terminal_zeroed: usize,
    /// The TD loss in use.
    pub td_loss: TdLoss,
}

/// Hooks into [`train`]; do-nothing defaults.
pub trait DqnObserver<F: Float> {
    /// A probe for the online network's forward and backward pass of update `update`.
    fn probe(&mut self, _update: usize) -> Option<&mut dyn Probe<F>> {
        None
    }
    /// After the backward pass of an update, before the weights change.
    fn on_update(&mut self, _info: &UpdateInfo, _model: &Sequential<F>) {}
    /// After an episode: its index, its return in CartPole's units (+1 per step, unscaled)
    /// and the environment steps so far.
    fn on_episode(&mut self, _episode: usize, _ret: f64, _env_steps: usize) {}
    /// Once, after the last episode: the trained online network and the replay buffer
    /// (e.g. for a pass over the replay states).
    fn on_finish(&mut self, _model: &mut Sequential<F>, _replay: &ReplayBuffer) {}
}

/// An observer that does nothing.
pub struct NoDqnObserver;
impl<F: Float> DqnObserver<F> for NoDqnObserver {}

/// The doctor watches a DQN like any other training run: the online network's layers and
/// parameters through its `Observer` hooks, and, for `clipped_delta`, the clip of the TD
/// error as a flat op ([`TD_CLIP_WHERE`]) for the `zero_gradient` detector.
impl<F: Float> DqnObserver<F> for Doctor {
    fn probe(&mut self, update: usize) -> Option<&mut dyn Probe<F>> {
        self.stats.run.rl = true;
        Observer::<F>::probe(self, update)
    }

    /// The dead-unit pass of the Q-network over the states in the replay buffer (the
    /// states it was trained on).
    fn on_finish(&mut self, model: &mut Sequential<F>, replay: &ReplayBuffer) {
        self.stats.run.rl = true;
        let states = replay_states(replay);
        self.dead_unit_pass_inputs(model, states.view());
    }

    fn on_update(&mut self, info: &UpdateInfo, model: &Sequential<F>) {
        let step = StepInfo {
            epoch: info.episode,
            step: info.update,
            loss: info.loss,
            lr: info.lr,
            grad_norm: info.grad_norm,
            batch_size: info.batch_size,
        };
        Observer::<F>::on_step(self, &step, model);
        if info.td_loss == TdLoss::ClippedDelta && info.update % self.config.sample_every.max(1) == 0 {
            self.stats.flat_ops.push(FlatOpStats {
                op: FlatOp::Clip,
                where_: TD_CLIP_WHERE.into(),
                rl: true,
                step: info.update,
                zeroed: info.beyond_clip as u64,
                total: info.batch_size as u64,
                loss: info.loss,
            });
        }
    }
}

/// The states of every transition in `replay`, (N, 4).
pub fn replay_states(replay: &ReplayBuffer) -> Array2<f64> {
    let items = replay.items();
    Array2::from_shape_fn((items.len(), STATE_DIM), |(i, j)| items[i].state[j])
}

/// The outcome of [`train`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct DqnRun {
    /// Return of every episode, in CartPole's units (+1 per step; the reward scale undone).
    pub returns: Vec<f64>,
    /// Updates made.
    pub updates: usize,
    /// Environment steps taken.
    pub env_steps: usize,
    /// Share of zero-gradient samples (see [`UpdateInfo::zeroed`]) per update.
    pub zeroed_share: Vec<f32>,
    /// Share of samples with |delta| > 1 per update.
    pub beyond_share: Vec<f32>,
    /// TD loss per update.
    pub losses: Vec<f32>,
    /// Terminal transitions sampled over all updates.
    pub terminal: u64,
    /// Of those, the ones whose gradient was exactly zero although their TD error was not.
    pub terminal_zeroed: u64,
    /// The update at which the loss or gradient became NaN or infinite (training stopped).
    pub diverged_at: Option<usize>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl DqnRun {
    /// Mean return over the last `k` episodes (all when fewer).
    pub fn mean_last(&self, k: usize) -> f64 {
        let tail = &self.returns[self.returns.len().saturating_sub(k)..];
        tail.iter().sum::<f64>() / tail.len().max(1) as f64
    }

    /// Share of the sampled terminal transitions whose gradient was zero (NaN when none).
    pub fn terminal_zeroed_share(&self) -> f64 {
        self.terminal_zeroed as f64 / self.terminal as f64
    }

    /// Share of zero-gradient samples over all updates.
    pub fn zeroed_share_total(&self) -> f64 {
        self.zeroed_share.iter().map(|&v| v as f64).sum::<f64>() / self.zeroed_share.len().max(1) as f64
    }
}

fn to_tensor<F: Float>(a: &Array2<f64>) -> Tensor<F> {
    a.mapv(F::from_f64c).into_dyn()
}

fn to_f64<F: Float>(t: Tensor<F>) -> Array2<f64> {
    t.into_dimensionality::<Ix2>().expect("the Q-network outputs (N, A)").mapv(|v| v.to_f64c())
}

/// Copy every parameter of `from` into `to` (same architecture).
pub fn copy_params<F: Float>(to: &mut Sequential<F>, from: &Sequential<F>) {
    let src: Vec<&Tensor<F>> = from.params().into_iter().map(|(_, p)| &p.value).collect();
    let dst = to.params_mut();
    assert_eq!(src.len(), dst.len(), "copy_params: different architectures");
    for (d, s) in dst.into_iter().zip(src) {
        d.value.assign(s);
    }
}

/// The greedy action of `model` in `state` (ties go to action 0).
pub fn greedy<F: Float>(model: &mut Sequential<F>, state: &[f64; STATE_DIM]) -> usize {
    let x = Tensor::from_shape_fn(IxDyn(&[1, STATE_DIM]), |ix| F::from_f64c(state[ix[1]]));
    let q = model.forward(x, Mode::Eval);
    let mut best = 0;
    for a in 1..q.len() {
        if q[[0, a]] > q[[0, best]] {
            best = a;
        }
    }
    best
}

/// One gradient computation on `batch`: sets every parameter's `grad` of `online`; returns
/// the TD loss output. `probe` sees the online network's forward and backward pass.
pub fn td_gradient<F: Float>(
    online: &mut Sequential<F>,
    target: &mut Sequential<F>,
    batch: &Batch,
    td: TdLoss,
    gamma: f64,
    probe: &mut dyn Probe<F>,
) -> TdLossOutput {
    let q_next = to_f64(target.forward(to_tensor(&batch.next_states), Mode::Eval));
    let y = td_targets(&q_next, &batch.rewards, &batch.terminated, gamma);
    let q_all = online.forward_probed(to_tensor(&batch.states), Mode::Train, probe);
    let q_all = to_f64(q_all);
    let (q, cache) = gather::forward(&q_all, &batch.actions);
    let out = td_loss(td, &q, &y);
    let dq_all = gather::backward(&out.dq, &cache);
    online.backward_probed(dq_all.mapv(F::from_f64c).into_dyn(), probe);
    out
}

/// Train a DQN on CartPole-v1 as `cfg` says; `observer` sees every update and episode.
/// Returns the trained online network and the run's record.
pub fn train<F: Float>(cfg: &DqnConfig, observer: &mut dyn DqnObserver<F>) -> (Sequential<F>, DqnRun) {
    assert_eq!(cfg.net.input_dim, STATE_DIM, "dqn: the Q-network takes the 4 CartPole state variables");
    assert_eq!(cfg.net.output_dim, ACTIONS, "dqn: the Q-network outputs one Q-value per action (2)");
    assert!(cfg.batch_size > 0 && cfg.target_update > 0 && cfg.train_every > 0, "dqn: sizes must be positive");
    let start = std::time::Instant::now();
    let mut online: Sequential<F> = cfg.net.build(cfg.seed);
    let mut target: Sequential<F> = cfg.net.build(cfg.seed);
    copy_params(&mut target, &online);
    let mut slots: Vec<Slots<F>> = online.params_mut().iter().map(|p| Slots::zeros_like(&p.value)).collect();
    let mut rng = crate::tensor::rng(cfg.seed.wrapping_add(0x5eed));
    let mut env = CartPole::from_state([0.0; STATE_DIM]);
    let mut buffer = ReplayBuffer::new(cfg.buffer_size);
    let mut run = DqnRun::default();
    let mut t = 0usize;
    'episodes: for episode in 0..cfg.episodes {
        let mut state = env.reset(&mut rng);
        let mut ret = 0.0;
        loop {
            let action = if rng.random::<f64>() < cfg.epsilon(t) {
                rng.random_range(0..ACTIONS)
            } else {
                greedy(&mut online, &state)
            };
            let tr = env.step(action);
            ret += tr.reward;
            buffer.push(Experience {
                state,
                action,
                reward: tr.reward * cfg.reward_scale,
                next_state: tr.state,
                terminated: tr.terminated,
            });
            state = tr.state;
            t += 1;
            if t > cfg.learning_starts && t % cfg.train_every == 0 {
                let batch = buffer.sample(cfg.batch_size, &mut rng);
                let u = run.updates;
                let mut no_probe = NoProbe;
                let out = {
                    let probe: &mut dyn Probe<F> = match observer.probe(u) {
                        Some(p) => p,
                        None => &mut no_probe,
                    };
                    td_gradient(&mut online, &mut target, &batch, cfg.td_loss, cfg.gamma, probe)
                };
                let grad_norm = {
                    let mut grads: Vec<&mut Tensor<F>> = online.params_mut().into_iter().map(|p| &mut p.grad).collect();
                    if cfg.clip_grad_norm > 0.0 {
                        clip_global_norm(&mut grads, cfg.clip_grad_norm)
                    } else {
                        global_norm(grads.iter().map(|g| &**g))
                    }
                };
                let n = batch.actions.len();
                let (mut terminal, mut terminal_zeroed) = (0, 0);
                for (i, &done) in batch.terminated.iter().enumerate() {
                    if done == 1.0 {
                        terminal += 1;
                        terminal_zeroed += usize::from(out.dq[i] == 0.0 && out.delta[i] != 0.0);
                    }
                }
                let info = UpdateInfo {
                    update: u,
                    env_step: t,
                    episode,
                    loss: out.loss,
                    grad_norm,
                    lr: cfg.update.lr,
                    batch_size: n,
                    zeroed: out.zeroed,
                    beyond_clip: out.beyond_clip,
                    mean_abs_delta: out.mean_abs_delta,
                    terminal,
                    terminal_zeroed,
                    td_loss: cfg.td_loss,
                };
                run.terminal += terminal as u64;
                run.terminal_zeroed += terminal_zeroed as u64;
                observer.on_update(&info, &online);
                run.zeroed_share.push(out.zeroed as f32 / n as f32);
                run.beyond_share.push(out.beyond_clip as f32 / n as f32);
                run.losses.push(out.loss as f32);
                run.updates += 1;
                if !out.loss.is_finite() || !grad_norm.is_finite() {
                    run.diverged_at = Some(u);
                    run.returns.push(ret);
                    break 'episodes;
                }
                for (p, s) in online.params_mut().into_iter().zip(slots.iter_mut()) {
                    update(&mut p.value, &p.grad, s, &cfg.update);
                }
            }
            if t % cfg.target_update == 0 {
                copy_params(&mut target, &online);
            }
            if tr.terminated || tr.truncated {
                break;
            }
        }
        run.returns.push(ret);
        observer.on_episode(episode, ret, t);
    }
    run.env_steps = t;
    run.seconds = start.elapsed().as_secs_f64();
    observer.on_finish(&mut online, &buffer);
    (online, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_bootstrap_unless_terminated() {
        let q_next = ndarray::array![[1.0, 3.0], [5.0, -2.0]];
        let y = td_targets(&q_next, &ndarray::array![1.0, 1.0], &ndarray::array![0.0, 1.0], 0.5);
        assert_eq!(y, ndarray::array![2.5, 1.0]);
    }

    #[test]
    fn epsilon_schedule_is_linear_then_flat() {
        let cfg = DqnConfig::new(TdLoss::Huber, 1, 0);
        assert_eq!(cfg.epsilon(0), 1.0);
        assert!((cfg.epsilon(2500) - 0.525).abs() < 1e-12);
        assert_eq!(cfg.epsilon(5000), 0.05);
        assert_eq!(cfg.epsilon(99_999), 0.05);
    }

    #[test]
    fn names_round_trip() {
        for l in TdLoss::ALL {
            assert_eq!(TdLoss::parse(l.name()), Some(l));
        }
        assert_eq!(TdLoss::parse("l1"), None);
    }
}
