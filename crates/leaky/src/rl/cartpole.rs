//! CartPole-v1 with Gymnasium's exact dynamics and constants.
//!
//! A pole (half-length 0.5 m, 0.1 kg) is hinged on a cart (1 kg) that moves on a track; each
//! step pushes the cart with a force of 10 N left (action 0) or right (action 1) and
//! integrates the equations of motion (Barto, Sutton & Anderson 1983) with the explicit
//! Euler method over tau = 0.02 s:
//!
//! ```text
//! temp      = (F + m_p l theta_dot^2 sin theta) / (m_c + m_p)
//! theta_acc = (g sin theta - cos theta temp) / (l (4/3 - m_p cos^2 theta / (m_c + m_p)))
//! x_acc     = temp - m_p l theta_acc cos theta / (m_c + m_p)
//! x += tau x_dot;  x_dot += tau x_acc;  theta += tau theta_dot;  theta_dot += tau theta_acc
//! ```
//!
//! The episode *terminates* when |x| > 2.4 or |theta| > 12 degrees and is *truncated* after
//! 500 steps (CartPole-v1's TimeLimit); every step, the last included, gives reward +1.
//! The state is kept in f64 as in Gymnasium (`env.unwrapped.state` is float64); Gymnasium
//! returns a float32 copy as the observation ([`CartPole::observation`] gives the same
//! rounding). The arithmetic follows Gymnasium's order of operations, so a trajectory
//! replayed from Gymnasium's recorded initial state and actions agrees to within the last
//! few bits of `sin`/`cos` (see `tests/rl_cartpole.rs` for the measured difference).

use rand::Rng;

/// Gravity, m/s^2.
pub const GRAVITY: f64 = 9.8;
/// Mass of the cart, kg.
pub const MASS_CART: f64 = 1.0;
/// Mass of the pole, kg.
pub const MASS_POLE: f64 = 0.1;
/// Half the pole's length, m (Gymnasium's `length`).
pub const HALF_LENGTH: f64 = 0.5;
/// Magnitude of the push, N.
pub const FORCE: f64 = 10.0;
/// Seconds between states (Euler step).
pub const TAU: f64 = 0.02;
/// The episode terminates when |theta| exceeds this: 12 degrees, in radians.
pub const THETA_LIMIT: f64 = 12.0 * 2.0 * std::f64::consts::PI / 360.0;
/// The episode terminates when |x| exceeds this, m.
pub const X_LIMIT: f64 = 2.4;
/// CartPole-v1's time limit: the episode is truncated after this many steps.
pub const MAX_STEPS: usize = 500;
/// Number of actions (0 = push left, 1 = push right).
pub const ACTIONS: usize = 2;
/// Size of the state `[x, x_dot, theta, theta_dot]`.
pub const STATE_DIM: usize = 4;

/// The outcome of one [`CartPole::step`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition {
    /// The state after the step, `[x, x_dot, theta, theta_dot]`.
    pub state: [f64; STATE_DIM],
    /// +1 on every step, including the one that ends the episode.
    pub reward: f64,
    /// The pole fell or the cart left the track (a true terminal state: no future reward).
    pub terminated: bool,
    /// The time limit ended the episode (not a terminal state of the MDP).
    pub truncated: bool,
}

/// The CartPole-v1 environment.
#[derive(Clone, Debug)]
pub struct CartPole {
    state: [f64; STATE_DIM],
    steps: usize,
    done: bool,
}

impl CartPole {
    /// An environment in the given state, at step 0.
    pub fn from_state(state: [f64; STATE_DIM]) -> Self {
        CartPole { state, steps: 0, done: false }
    }

    /// Start an episode: every state variable uniform in [-0.05, 0.05) (Gymnasium's reset,
    /// drawn from our generator, not numpy's). Returns the state.
    pub fn reset(&mut self, rng: &mut impl Rng) -> [f64; STATE_DIM] {
        for v in self.state.iter_mut() {
            *v = rng.random_range(-0.05..0.05);
        }
        self.steps = 0;
        self.done = false;
        self.state
    }

    /// The current state (f64, Gymnasium's `env.unwrapped.state`).
    pub fn state(&self) -> [f64; STATE_DIM] {
        self.state
    }

    /// The current state rounded to f32, as Gymnasium returns observations.
    pub fn observation(&self) -> [f32; STATE_DIM] {
        self.state.map(|v| v as f32)
    }

    /// Steps taken in this episode.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Push left (`action` 0) or right (1) for one Euler step of tau seconds.
    ///
    /// Panics on an action other than 0 or 1, or when called after the episode ended
    /// (Gymnasium calls that undefined behaviour; call [`CartPole::reset`]).
    pub fn step(&mut self, action: usize) -> Transition {
        assert!(action < ACTIONS, "cartpole: action {action} is not 0 or 1");
        assert!(!self.done, "cartpole: step after the episode ended; call reset");
        let [x, x_dot, theta, theta_dot] = self.state;
        let force = if action == 1 { FORCE } else { -FORCE };
        let total_mass = MASS_POLE + MASS_CART;
        let polemass_length = MASS_POLE * HALF_LENGTH;
        let (sintheta, costheta) = (theta.sin(), theta.cos());
        // Same grouping as Gymnasium's cartpole.py, so rounding matches.
        let temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) / total_mass;
        let thetaacc = (GRAVITY * sintheta - costheta * temp)
            / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * (costheta * costheta) / total_mass));
        let xacc = temp - polemass_length * thetaacc * costheta / total_mass;
        self.state = [x + TAU * x_dot, x_dot + TAU * xacc, theta + TAU * theta_dot, theta_dot + TAU * thetaacc];
        self.steps += 1;
        let [x, _, theta, _] = self.state;
        // Gymnasium's comparisons, kept as written (a range `contains` would differ on NaN).
        #[allow(clippy::manual_range_contains)]
        let terminated = x < -X_LIMIT || x > X_LIMIT || theta < -THETA_LIMIT || theta > THETA_LIMIT;
        // As Gymnasium's TimeLimit wrapper: truncated at the limit even when that step also
        // terminates (the DQN's target uses `terminated` only).
        let truncated = self.steps >= MAX_STEPS;
        self.done = terminated || truncated;
        Transition { state: self.state, reward: 1.0, terminated, truncated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_is_in_range_and_upright_pole_without_push_stays_balanced_in_symmetry() {
        let mut env = CartPole::from_state([0.0; 4]);
        let s = env.reset(&mut crate::tensor::rng(1));
        assert!(s.iter().all(|v| (-0.05..0.05).contains(v)));
        // From rest, upright, pushing right accelerates the cart right and tips the pole left.
        let mut env = CartPole::from_state([0.0; 4]);
        let t = env.step(1);
        assert_eq!(t.state[0], 0.0);
        assert!(t.state[1] > 0.0 && t.state[3] < 0.0);
        // F/(m_c + m_p) = 10/1.1; theta_acc = -temp / (0.5 (4/3 - 0.1/1.1)).
        let temp = 10.0 / 1.1;
        let thetaacc = -temp / (0.5 * (4.0 / 3.0 - 0.1 / 1.1));
        assert!((t.state[3] - 0.02 * thetaacc).abs() < 1e-15);
        assert!((t.state[1] - 0.02 * (temp - 0.05 * thetaacc / 1.1)).abs() < 1e-15);
    }

    #[test]
    fn terminates_past_the_limits_and_truncates_at_500() {
        let mut env = CartPole::from_state([2.39, 1.0, 0.0, 0.0]);
        let t = env.step(1);
        assert!(t.terminated && !t.truncated && t.reward == 1.0);
        let mut env = CartPole::from_state([0.0, 0.0, THETA_LIMIT - 1e-4, 0.1]);
        assert!(env.step(0).terminated);
        // A state that cannot end in 500 steps does not exist for the real dynamics, so
        // check the counter with the step limit: truncation happens exactly at step 500.
        let mut env = CartPole::from_state([0.0; 4]);
        let mut last = None;
        for i in 0..MAX_STEPS {
            // Bang-bang balance: push towards the side the pole leans to.
            let s = env.state();
            let t = env.step(usize::from(s[2] + 0.5 * s[3] + 0.01 * s[0] + 0.1 * s[1] > 0.0));
            assert!(!t.terminated, "fell at step {i}");
            assert_eq!(t.truncated, i + 1 == MAX_STEPS);
            last = Some(t);
        }
        assert!(last.unwrap().truncated);
    }

    #[test]
    #[should_panic(expected = "step after the episode ended")]
    fn step_after_end_panics() {
        let mut env = CartPole::from_state([2.39, 1.0, 0.0, 0.0]);
        env.step(1);
        env.step(1);
    }
}
