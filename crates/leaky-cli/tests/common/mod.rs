//! Helpers shared by the integration tests of the `leaky` binary (each test file has
//! `mod common;`): running the binary from the repository root, scratch directories, the
//! "exit 2 and name the problem" check, and finding Chromium.

// Each test file is its own crate and uses a subset of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (example paths such as `examples/sick/...` are relative to it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The `leaky` binary as a command to add arguments to, started in the repository root.
pub fn leaky_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leaky"));
    cmd.current_dir(root());
    cmd
}

/// Run `leaky ARGS` in the repository root and wait for it.
pub fn leaky(args: &[&str]) -> Output {
    leaky_cmd().args(args).output().expect("the leaky binary runs")
}

/// Bytes (a run's stdout or stderr) as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A run's standard error as text.
pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// A path in the temp directory, unique to this test process and `tag`, that does not exist
/// (a leftover is removed): for outputs the binary must create itself.
pub fn scratch_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("leaky-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    let _ = std::fs::remove_file(&p);
    p
}

/// A fresh, empty directory in the temp directory, unique to this test process and `tag`.
pub fn scratch(tag: &str) -> PathBuf {
    let d = scratch_path(tag);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A JSON file the binary wrote, parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `leaky doctor EXAMPLE --treat --quiet --fail-on never --json FILE` (`example` relative to
/// the repository root) must exit 0; its JSON document.
pub fn doctor_treat_json(example: &str) -> serde_json::Value {
    let dir = scratch(&format!("treat-{}", example.replace('/', "-")));
    let json = dir.join("t.json");
    let file = root().join(example);
    let o = leaky(&[
        "doctor",
        file.to_str().unwrap(),
        "--treat",
        "--quiet",
        "--fail-on",
        "never",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = read_json(&json);
    std::fs::remove_dir_all(&dir).ok();
    doc
}

/// Bad input: `leaky ARGS` exits 2, names every one of `needles` on stderr, and does not panic.
pub fn expect_bad_input(args: &[&str], needles: &[&str]) {
    let o = leaky(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "args {args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "args {args:?}: expected {n:?} in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// Chromium: `$LEAKY_CHROMIUM`, else `chromium`, `chromium-browser`, `google-chrome` or
/// `google-chrome-stable` on the PATH.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LEAKY_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Chromium, or `None` after a skip notice naming `test`; panics instead when
/// `LEAKY_REQUIRE_CHROMIUM=1` (CI).
pub fn require_chromium(test: &str) -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        assert!(
            std::env::var("LEAKY_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "{test}: LEAKY_REQUIRE_CHROMIUM=1 but no chromium was found (set LEAKY_CHROMIUM or put chromium on the PATH; Debian: apt-get install -y chromium)"
        );
        eprintln!(
            "{test}: SKIPPED the browser check: no chromium found (set LEAKY_CHROMIUM, or LEAKY_REQUIRE_CHROMIUM=1 to make this a failure)"
        );
    }
    found
}

/// The batch of the recurrent PyTorch fixture `name` (crates/leaky/tests/fixtures/torch,
/// `<name>.json`: inputs `x` and targets `y`) written into `dir` as `<name>.x.npy` and
/// `<name>.y.npy`, as `np.save` writes them: token ids and per-step classes as int64 for the
/// RNNs, sequences and targets as f32 for the LSTMs. Returns the two paths.
pub fn seq_npy(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    use ndarray::{ArrayD, IxDyn};
    use ndarray_npy::WriteNpyExt;
    let fx = read_json(&root().join("crates/leaky/tests/fixtures/torch").join(format!("{name}.json")));
    let arr = |v: &serde_json::Value| -> ArrayD<f64> {
        let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let data: Vec<f64> = v["data"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).collect();
        ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap()
    };
    let paths = (dir.join(format!("{name}.x.npy")), dir.join(format!("{name}.y.npy")));
    for (key, path) in [("x", &paths.0), ("y", &paths.1)] {
        let a = arr(&fx[key]);
        let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        if name.starts_with("rnn") {
            a.mapv(|v| v as i64).write_npy(file).unwrap();
        } else {
            a.mapv(|v| v as f32).write_npy(file).unwrap();
        }
    }
    paths
}
