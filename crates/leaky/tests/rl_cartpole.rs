//! CartPole-v1 against Gymnasium: `scripts/fixtures/make_cartpole.py` (run by hand with
//! gymnasium 1.4.0 and numpy 2.4.6; the JSON is committed) recorded seeded trajectories
//! under random actions, a balancing controller that is truncated at 500 steps, and a
//! drifting controller that leaves the track. Each is replayed here from the recorded
//! initial state and actions.
//!
//! Tolerance: the internal state is float64 in both and the arithmetic follows Gymnasium's
//! order, so the only source of difference is the last bit of `sin`/`cos` between libm and
//! numpy; we allow 1e-10 absolute per state variable (measured: 4.4e-16 over 1237 steps,
//! printed by the test with `--nocapture`). Observations are the state rounded to f32 and
//! must match to 1 f32 ulp; rewards and both flags must be equal.

use leaky::rl::cartpole::{CartPole, STATE_DIM};
use serde_json::Value;

const STATE_TOL: f64 = 1e-10;

fn arr4(v: &Value) -> [f64; STATE_DIM] {
    let a = v.as_array().expect("array");
    assert_eq!(a.len(), STATE_DIM);
    std::array::from_fn(|i| a[i].as_f64().expect("number"))
}

#[test]
fn trajectories_match_gymnasium() {
    let doc: Value = serde_json::from_str(include_str!("fixtures/cartpole.json")).unwrap();
    let trajs = doc["trajectories"].as_array().unwrap();
    assert!(trajs.len() >= 8);
    let (mut worst, mut steps, mut truncated, mut x_out) = (0.0f64, 0usize, 0usize, 0usize);
    for t in trajs {
        let name = format!("seed {} {}", t["seed"], t["policy"]);
        let init = arr4(&t["initial_state"]);
        let mut env = CartPole::from_state(init);
        let obs0 = arr4(&t["initial_obs"]);
        for (o, &want) in env.observation().iter().zip(&obs0) {
            assert_eq!(*o, want as f32, "{name}: initial observation");
        }
        let recorded = t["steps"].as_array().unwrap();
        for (k, s) in recorded.iter().enumerate() {
            let action = s["action"].as_u64().unwrap() as usize;
            let tr = env.step(action);
            let want = arr4(&s["state"]);
            for (i, (&got, &w)) in tr.state.iter().zip(&want).enumerate() {
                let d = (got - w).abs();
                worst = worst.max(d);
                assert!(d <= STATE_TOL, "{name} step {k} var {i}: {got} vs {w}");
            }
            let obs = arr4(&s["obs"]);
            for (i, (&a, &b)) in env.observation().iter().zip(&obs).enumerate() {
                let b = b as f32;
                assert!(a == b || (a - b).abs() <= f32::EPSILON * b.abs(), "{name} step {k} obs {i}: {a} vs {b}");
            }
            assert_eq!(tr.reward, s["reward"].as_f64().unwrap(), "{name} step {k} reward");
            assert_eq!(tr.terminated, s["terminated"].as_bool().unwrap(), "{name} step {k} terminated");
            assert_eq!(tr.truncated, s["truncated"].as_bool().unwrap(), "{name} step {k} truncated");
            if k + 1 == recorded.len() {
                assert!(tr.terminated || tr.truncated, "{name}: the episode must end where Gymnasium's did");
                truncated += usize::from(tr.truncated);
                x_out += usize::from(tr.state[0].abs() > 2.4);
            } else {
                assert!(!tr.terminated && !tr.truncated, "{name}: ended early at step {k}");
            }
            steps += 1;
        }
    }
    println!("cartpole: {} trajectories, {steps} steps, max |state - gymnasium| = {worst:.3e}", trajs.len());
    assert!(truncated >= 2 && x_out >= 1, "the fixture must cover truncation and the track's end");
}
