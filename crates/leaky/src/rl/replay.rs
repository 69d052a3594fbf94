//! Experience replay: a ring buffer of transitions `(s, a, r, s', terminated)` from which
//! the DQN samples uniform minibatches (Mnih et al. 2015), breaking the correlation between
//! consecutive steps.

use super::cartpole::STATE_DIM;
use ndarray::{Array1, Array2};
use rand::Rng;

/// One stored transition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Experience {
    /// State before the action.
    pub state: [f64; STATE_DIM],
    /// The action taken.
    pub action: usize,
    /// The reward received (already multiplied by the reward scale).
    pub reward: f64,
    /// State after the action.
    pub next_state: [f64; STATE_DIM],
    /// Whether `next_state` is terminal (truncation by the time limit is not: the TD target
    /// still bootstraps from it).
    pub terminated: bool,
}

/// A minibatch of transitions as arrays.
#[derive(Clone, Debug)]
pub struct Batch {
    /// States, (N, 4).
    pub states: Array2<f64>,
    /// Actions, length N.
    pub actions: Vec<usize>,
    /// Rewards, (N,).
    pub rewards: Array1<f64>,
    /// Next states, (N, 4).
    pub next_states: Array2<f64>,
    /// 1.0 where the next state is terminal, else 0.0, (N,).
    pub terminated: Array1<f64>,
}

/// A fixed-capacity ring buffer: once full, each push overwrites the oldest transition.
#[derive(Clone, Debug)]
pub struct ReplayBuffer {
    items: Vec<Experience>,
    capacity: usize,
    next: usize,
}

impl ReplayBuffer {
    /// An empty buffer holding at most `capacity` (>= 1) transitions.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "replay buffer: capacity must be at least 1");
        ReplayBuffer { items: Vec::with_capacity(capacity.min(1 << 16)), capacity, next: 0 }
    }

    /// Number of stored transitions.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is stored yet.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Store a transition, overwriting the oldest when full.
    pub fn push(&mut self, e: Experience) {
        if self.items.len() < self.capacity {
            self.items.push(e);
        } else {
            self.items[self.next] = e;
        }
        self.next = (self.next + 1) % self.capacity;
    }

    /// The stored transitions, in storage order (not time order once wrapped).
    pub fn items(&self) -> &[Experience] {
        &self.items
    }

    /// `n` transitions drawn uniformly with replacement. Panics when empty.
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> Batch {
        assert!(!self.items.is_empty(), "replay buffer: sample from an empty buffer");
        let picks: Vec<&Experience> = (0..n).map(|_| &self.items[rng.random_range(0..self.items.len())]).collect();
        Batch {
            states: Array2::from_shape_fn((n, STATE_DIM), |(i, j)| picks[i].state[j]),
            actions: picks.iter().map(|e| e.action).collect(),
            rewards: picks.iter().map(|e| e.reward).collect(),
            next_states: Array2::from_shape_fn((n, STATE_DIM), |(i, j)| picks[i].next_state[j]),
            terminated: picks.iter().map(|e| if e.terminated { 1.0 } else { 0.0 }).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(i: usize) -> Experience {
        Experience {
            state: [i as f64; 4],
            action: i % 2,
            reward: 1.0,
            next_state: [i as f64 + 0.5; 4],
            terminated: i == 3,
        }
    }

    #[test]
    fn ring_overwrites_the_oldest() {
        let mut b = ReplayBuffer::new(3);
        for i in 0..5 {
            b.push(exp(i));
        }
        assert_eq!(b.len(), 3);
        let mut held: Vec<f64> = b.items().iter().map(|e| e.state[0]).collect();
        held.sort_by(f64::total_cmp);
        assert_eq!(held, [2.0, 3.0, 4.0]);
    }

    #[test]
    fn sample_keeps_rows_together_and_covers_the_buffer() {
        let mut b = ReplayBuffer::new(10);
        for i in 0..4 {
            b.push(exp(i));
        }
        let batch = b.sample(400, &mut crate::tensor::rng(0));
        let mut seen = [0usize; 4];
        for i in 0..400 {
            let k = batch.states[[i, 0]] as usize;
            seen[k] += 1;
            assert_eq!(batch.actions[i], k % 2);
            assert_eq!(batch.next_states[[i, 3]], k as f64 + 0.5);
            assert_eq!(batch.terminated[i], if k == 3 { 1.0 } else { 0.0 });
        }
        // Uniform: each of the 4 is drawn 100 times on average; 60 is > 4 standard deviations below.
        assert!(seen.iter().all(|&c| c > 60), "{seen:?}");
    }
}
