//! `leaky train` and `leaky doctor` with `model.kind = "dqn"`: the run, its JSON, bad `[rl]`
//! input (exit 2, naming the key) and `--treat` applying `rl.td_loss = "huber"`.

mod common;

use common::{doctor_treat_json, expect_bad_input, leaky, read_json, scratch};

const SMALL: &str = "seed = 3\n[model]\nkind = \"dqn\"\nhidden = [32]\n[rl]\nepisodes = 12\nlearning_starts = 50\n";

#[test]
fn train_dqn_writes_returns_and_a_checkpoint() {
    let dir = scratch("train");
    let file = dir.join("small.toml");
    std::fs::write(&file, SMALL).unwrap();
    let json = dir.join("run.json");
    let ckpt = dir.join("q.safetensors");
    let o =
        leaky(&["train", file.to_str().unwrap(), "--json", json.to_str().unwrap(), "--save", ckpt.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("td_loss huber") && out.contains("done: mean return"), "{out}");
    let doc = read_json(&json);
    let returns = doc["metrics"]["returns"].as_array().unwrap();
    assert_eq!(returns.len(), 12);
    // CartPole returns are +1 per step: whole numbers from 1 to 500.
    assert!(returns.iter().all(|r| {
        let r = r.as_f64().unwrap();
        r.fract() == 0.0 && (1.0..=500.0).contains(&r)
    }));
    assert!(doc["metrics"]["updates"].as_u64().unwrap() > 0);
    assert!(std::fs::metadata(&ckpt).unwrap().len() > 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_rl_sections_exit_2_and_name_the_key() {
    let dir = scratch("bad");
    let cases: &[(&str, &str, &[&str])] = &[
        ("unknown.toml", "[model]\nkind = \"dqn\"\n[rl]\ntd_los = \"huber\"\n", &["td_los"]),
        ("loss.toml", "[model]\nkind = \"dqn\"\n[rl]\ntd_loss = \"l1\"\n", &["l1", "clipped_delta"]),
        ("scale.toml", "[model]\nkind = \"dqn\"\n[rl]\nreward_scale = -1.0\n", &["rl.reward_scale"]),
        ("gamma.toml", "[model]\nkind = \"dqn\"\n[rl]\ngamma = 1.5\n", &["rl.gamma"]),
        ("env.toml", "[model]\nkind = \"dqn\"\n[rl]\nenv = \"pong\"\n", &["rl.env", "cartpole"]),
        ("decay.toml", "[model]\nkind = \"dqn\"\n[train]\nweight_decay = 0.1\n", &["train.weight_decay"]),
    ];
    for (name, text, needles) in cases {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        for cmd in ["train", "doctor"] {
            expect_bad_input(&[cmd, p.to_str().unwrap()], needles);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn doctor_finds_the_clip_and_treat_removes_it_with_huber() {
    let doc = doctor_treat_json("examples/sick/dqn-clipped-delta.toml");
    let f = doc["findings"].as_array().unwrap().iter().find(|f| f["code"] == "zero_gradient").expect("zero_gradient");
    assert_eq!(f["where"], "td error (clip)");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["fix"][0]["text"], "use the Huber loss, whose gradient is the clipped error");
    assert_eq!(f["fix"][0]["set"], serde_json::json!({"rl.td_loss": "huber"}));
    assert!(f["caused_by"].is_null(), "the clip is a root cause: {f}");
    // Rewards x10: every TD error starts beyond the clip, so every sample is silenced.
    assert_eq!(f["evidence"]["zeroed_share"], 1.0);
    let over = f["evidence"]["zeroed_share_over_updates"].as_array().unwrap();
    assert!(over.len() >= 5 && over.iter().all(|p| p[1] == 1.0), "{over:?}");
    assert!(f["evidence"]["mean_loss"].as_f64().unwrap() > 0.5);
    // The treatment applies the root cause's fix (Huber) and the clip is gone.
    let t = &doc["treatment"];
    assert_eq!(t["applied"]["rl.td_loss"], "huber", "{t}");
    assert!(t["resolved"].as_array().unwrap().iter().any(|c| c == "zero_gradient"), "{t}");
    assert!(!t["new"].as_array().unwrap().iter().any(|c| c == "zero_gradient"), "{t}");
}
