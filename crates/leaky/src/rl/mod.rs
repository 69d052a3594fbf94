//! Reinforcement learning: the CartPole-v1 environment ([`cartpole`]), experience replay
//! ([`replay`]) and a DQN with four TD losses ([`dqn`]), one of them the clip_by_value bug
//! that gives zero gradient to every sample whose TD error is beyond the clip.
//!
//! ```
//! use leaky::rl::dqn::{train, DqnConfig, NoDqnObserver, TdLoss};
//!
//! let mut cfg = DqnConfig::new(TdLoss::ClippedDelta, 5, 0);
//! cfg.learning_starts = 20;
//! cfg.reward_scale = 100.0; // every TD error starts far beyond the clip
//! let (_net, run) = train::<f64>(&cfg, &mut NoDqnObserver);
//! assert_eq!(run.returns.len(), 5);
//! assert!(run.zeroed_share_total() > 0.9);
//! ```

pub mod cartpole;
pub mod dqn;
pub mod replay;
