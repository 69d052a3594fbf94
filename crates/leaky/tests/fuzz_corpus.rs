//! Replay of the committed fuzz corpus (`fuzz/corpus/<target>/`) through the bodies of the
//! cargo-fuzz targets, on stable inside `cargo test`: every `seed-*` file must load, every
//! `bad-*` file must give an error naming the file, and nothing may panic. Then a short
//! random-mutation run over the same corpus (a few hundred inputs per target: seconds), which
//! only checks for panics; `LEAKY_FUZZ_ITERS=N` runs N per target instead (docs/fuzzing.md).
//!
//! The `experiment` target's bad files start with a line `# expect: TEXT`: the error must
//! contain TEXT (the key or value at fault), since experiment errors name no file. The
//! `resumable` corpus is written by leaky itself: `cargo test -p leaky --test fuzz_corpus --
//! --ignored write_resumable_corpus` regenerates it.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// A target's body: Ok(()) or the error message.
type Body = fn(&[u8]) -> Result<(), String>;

fn targets() -> Vec<(&'static str, Body, &'static str)> {
    // (name, body, the file name the target's errors must mention)
    vec![
        ("npy", |d| leaky::data::fuzz::npy(d).map(|_| ()).map_err(|e| e.to_string()), ".npy"),
        ("npz", |d| leaky::data::fuzz::npz(d).map(|_| ()).map_err(|e| e.to_string()), "d.npz"),
        ("csv", |d| leaky::data::fuzz::csv(d).map(|_| ()).map_err(|e| e.to_string()), "d.csv"),
        ("idx", |d| leaky::data::fuzz::idx(d).map(|_| ()).map_err(|e| e.to_string()), ".idx"),
        ("text", |d| leaky::data::fuzz::text(d).map(|_| ()).map_err(|e| e.to_string()), "t.txt"),
        ("checkpoint", |d| leaky::data::fuzz::checkpoint(d).map_err(|e| e.to_string()), "model.safetensors"),
        ("resumable", |d| leaky::data::fuzz::resumable(d).map(|_| ()).map_err(|e| e.to_string()), "resume.safetensors"),
        ("experiment", |d| leaky::data::fuzz::experiment(d).map(|_| ()).map_err(|e| e.to_string()), EXPECT),
    ]
}

/// The needle of the `experiment` target: the file's own `# expect: TEXT` line.
const EXPECT: &str = "# expect: ";

/// What the error for `data` must contain: `names`, or for [`EXPECT`] the text after it on
/// the file's first line (`None`: the file has no such line).
fn needle<'a>(names: &'a str, data: &'a [u8]) -> Option<&'a str> {
    if names != EXPECT {
        return Some(names);
    }
    let line = data.split(|&b| b == b'\n').next()?;
    let first = std::str::from_utf8(line).ok()?;
    first.strip_prefix(EXPECT).map(str::trim).filter(|n| !n.is_empty())
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

/// The committed files of one target, sorted; plus, for the checkpoint target, inputs made
/// here with leaky itself (a valid checkpoint, and one with a NaN weight).
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir().join(target))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
                .filter(|(n, _)| n.starts_with("seed-") || n.starts_with("bad-"))
                .collect()
        })
        .unwrap_or_default();
    if target == "checkpoint" {
        files.extend(made_checkpoints());
    }
    if target == "resumable" {
        // The current leaky's own output, besides the committed files of an earlier one.
        files.extend(
            resumable_files()
                .into_iter()
                .filter(|(n, _)| n == "seed-resumable")
                .map(|(_, d)| ("seed-made-by-this-leaky".to_string(), d)),
        );
    }
    files.sort();
    files
}

/// A fresh scratch directory: the two tests run in parallel in one process and each makes
/// checkpoints, so the name holds a counter besides the process id.
fn scratch(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("leaky-fuzz-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn made_checkpoints() -> Vec<(String, Vec<u8>)> {
    let spec = leaky::nn::MlpSpec {
        input_dim: 4,
        hidden: vec![3],
        output_dim: 2,
        activation: leaky::nn::Activation::Relu,
        init: leaky::tensor::Init::He,
        bias_init: 0.0,
        batchnorm: false,
        dropout_keep: None,
    };
    let dir = scratch("ckpt");
    let mut m = spec.build::<f32>(1);
    let good = dir.join("good.safetensors");
    leaky::train::save_checkpoint(&m, &good, HashMap::new()).unwrap();
    m.params_mut()[1].value[[0]] = f32::INFINITY;
    let bad = dir.join("inf.safetensors");
    leaky::train::save_checkpoint(&m, &bad, HashMap::new()).unwrap();
    let out = vec![
        ("seed-made-by-leaky".to_string(), std::fs::read(&good).unwrap()),
        ("bad-inf-weight".to_string(), std::fs::read(&bad).unwrap()),
    ];
    std::fs::remove_dir_all(&dir).ok();
    out
}

fn run(body: Body, data: &[u8]) -> Result<Result<(), String>, String> {
    catch_unwind(AssertUnwindSafe(|| body(data))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

#[test]
fn committed_corpus_gives_ok_for_seeds_and_named_errors_for_bad_inputs() {
    let mut problems = Vec::new();
    let mut counts = Vec::new();
    for (target, body, names) in targets() {
        let files = corpus(target);
        let bad = files.iter().filter(|(n, _)| n.starts_with("bad-")).count();
        assert!(bad >= 4 && files.len() > bad, "{target}: corpus missing ({} files)", files.len());
        counts.push(format!("{target}: {} files", files.len()));
        for (name, data) in &files {
            let t = std::time::Instant::now();
            match run(body, data) {
                Err(panic) => problems.push(format!("{target}/{name}: PANIC {panic}")),
                Ok(Ok(())) if name.starts_with("bad-") => {
                    problems.push(format!("{target}/{name}: loaded, expected an error"))
                }
                Ok(Err(e)) if name.starts_with("seed-") => problems.push(format!("{target}/{name}: {e}")),
                Ok(Err(e)) if needle(names, data).is_none() => {
                    problems.push(format!("{target}/{name}: no `{EXPECT}TEXT` first line (error: {e})"))
                }
                Ok(Err(e)) if !e.contains(needle(names, data).unwrap_or_default()) => problems.push(format!(
                    "{target}/{name}: error does not name {:?}: {e}",
                    needle(names, data).unwrap_or_default()
                )),
                Ok(Err(e)) if e.len() > 2000 => {
                    problems.push(format!("{target}/{name}: {} byte error message", e.len()))
                }
                _ => {}
            }
            // Bombs and huge headers are refused early, not after inflating or allocating.
            let secs = t.elapsed().as_secs_f64();
            if secs > 2.0 {
                problems.push(format!("{target}/{name}: took {secs:.1} s"));
            }
        }
    }
    assert!(problems.is_empty(), "{}\n({})", problems.join("\n"), counts.join(", "));
}

/// The `resumable` corpus, made with leaky: a resumable checkpoint of
/// `leaky::data::fuzz::resumable_model` after two epochs (with its checksum, and without it so
/// that mutations reach the resume state), a plain checkpoint without resume state, and bad
/// files, each with one thing wrong (and no checksum, so that thing is what is found).
fn resumable_files() -> Vec<(String, Vec<u8>)> {
    use leaky::data::fuzz::{resumable_data, resumable_model};
    use leaky::train::{CHECKSUM_KEY, RESUME_KEY};
    let mut model = resumable_model();
    let (train, val) = resumable_data().split(0.25, 0);
    let cfg = leaky::train::TrainConfig { epochs: 2, batch_size: 4, ..Default::default() };
    let (_, state) = leaky::train::fit_from(&mut model, &train, &val, &cfg, &mut leaky::train::NoObserver, None);
    let dir = scratch("resume");
    let (with_state, plain) = (dir.join("r.safetensors"), dir.join("p.safetensors"));
    leaky::train::save_resumable(&model, &state, &with_state, HashMap::new()).unwrap();
    leaky::train::save_checkpoint(&model, &plain, HashMap::new()).unwrap();
    let seed = std::fs::read(&with_state).unwrap();
    let plain = std::fs::read(&plain).unwrap();
    std::fs::remove_dir_all(&dir).ok();

    // The seed's tensors and metadata, to write edited copies.
    let st = safetensors::SafeTensors::deserialize(&seed).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&seed).unwrap();
    let meta: HashMap<String, String> = meta.metadata().clone().unwrap();
    let tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> =
        st.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    let resume: serde_json::Value = serde_json::from_str(&meta[RESUME_KEY]).unwrap();
    type Edit<'a> =
        Box<dyn Fn(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>, &mut serde_json::Value) + 'a>;
    let write = |edit: Edit| -> Vec<u8> {
        let mut t = tensors.clone();
        let mut r = resume.clone();
        edit(&mut t, &mut r);
        let mut m = meta.clone();
        m.remove(CHECKSUM_KEY);
        // A JSON string as the whole state stands for raw text (to write one that is not JSON).
        m.insert(RESUME_KEY.to_string(), r.as_str().map_or_else(|| r.to_string(), str::to_string));
        let views: Vec<(String, safetensors::tensor::TensorView)> = t
            .iter()
            .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, Some(m)).unwrap()
    };
    let tensor = |name: &'static str| {
        move |t: &mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>| {
            t.iter().position(|(n, ..)| n.starts_with(name)).expect(name)
        }
    };
    let mut out = vec![
        ("seed-resumable".to_string(), seed.clone()),
        ("seed-resumable-no-checksum".to_string(), write(Box::new(|_, _| {}))),
        ("seed-plain".to_string(), plain),
        ("bad-empty".to_string(), Vec::new()),
        ("bad-junk".to_string(), b"not a checkpoint at all".to_vec()),
    ];
    let mut bad = |name: &str, edit: Edit| out.push((format!("bad-{name}"), write(edit)));
    bad("resume-not-json", Box::new(|_, r| *r = serde_json::Value::String("{".into())));
    bad("format-2", Box::new(|_, r| r["format"] = 2.into()));
    bad("epochs-done-vs-history", Box::new(|_, r| r["epochs_done"] = 5.into()));
    bad("best-epoch-past-the-end", Box::new(|_, r| r["best_epoch"] = 7.into()));
    bad(
        "adam-t-count",
        Box::new(|_, r| {
            r["adam_t"].as_array_mut().unwrap().pop();
        }),
    );
    bad("adam-t-negative", Box::new(|_, r| r["adam_t"][0] = (-1).into()));
    bad(
        "history-row-short",
        Box::new(|_, r| {
            r["history"][0].as_array_mut().unwrap().pop();
        }),
    );
    bad("history-float-not-a-string", Box::new(|_, r| r["history"][1][1] = 0.5.into()));
    bad("shuffle-rng", Box::new(|_, r| r["shuffle_rng"] = "zzz".into()));
    bad("layer-rngs-missing", Box::new(|_, r| r["layer_rngs"] = serde_json::json!({})));
    bad("steps-not-a-number", Box::new(|_, r| r["steps"] = "many".into()));
    bad("steps-huge", Box::new(|_, r| r["steps"] = u64::MAX.into()));
    bad("adam-t-over-steps", Box::new(|_, r| r["adam_t"][2] = (r["steps"].as_u64().unwrap() + 1).into()));
    bad(
        "missing-moment",
        Box::new(move |t, _| {
            let k = tensor("resume.m.")(t);
            t.remove(k);
        }),
    );
    bad(
        "missing-last",
        Box::new(move |t, _| {
            let k = tensor("resume.last.")(t);
            t.remove(k);
        }),
    );
    bad(
        "nan-moment",
        Box::new(move |t, _| {
            let k = tensor("resume.v.")(t);
            t[k].3[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        }),
    );
    bad(
        "inf-last",
        Box::new(move |t, _| {
            let k = tensor("resume.last.")(t);
            t[k].3[..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        }),
    );
    bad(
        "last-wrong-shape",
        Box::new(move |t, _| {
            let k = tensor("resume.last.")(t);
            // The same number of values in another shape: (n,) as (1, n), (r, c) as (r * c,).
            let n: usize = t[k].2.iter().product();
            t[k].2 = if t[k].2.len() == 1 { vec![1, n] } else { vec![n] };
        }),
    );
    let mut flipped = seed;
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40; // a tensor byte: the checksum no longer matches
    out.push(("bad-checksum".to_string(), flipped));
    out
}

/// Regenerate `fuzz/corpus/resumable/` (the committed files): run with `--ignored`.
#[test]
#[ignore = "writes fuzz/corpus/resumable; run by hand to regenerate it"]
fn write_resumable_corpus() {
    let dir = corpus_dir().join("resumable");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in resumable_files() {
        std::fs::write(dir.join(name), data).unwrap();
    }
}

/// xorshift64*: a fixed, dependency-free generator so a failure can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random mutation of `data`: flip, set, insert, delete or duplicate bytes, splice in
/// an "interesting" value, or cut the end.
fn mutate(data: &mut Vec<u8>, r: &mut Rng) {
    const INTERESTING: [&[u8]; 8] =
        [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f", b"\x80", b"(", b"'", b",", b"\n"];
    match r.below(7) {
        0 if !data.is_empty() => {
            let k = r.below(data.len());
            data[k] ^= 1 << r.below(8);
        }
        1 if !data.is_empty() => {
            let k = r.below(data.len());
            data[k] = r.next() as u8;
        }
        2 => {
            let k = r.below(data.len() + 1);
            data.insert(k, r.next() as u8);
        }
        3 if !data.is_empty() => {
            let k = r.below(data.len());
            let n = 1 + r.below(8.min(data.len() - k));
            data.drain(k..k + n);
        }
        4 if !data.is_empty() => {
            let k = r.below(data.len());
            let n = 1 + r.below(16.min(data.len() - k));
            let chunk: Vec<u8> = data[k..k + n].to_vec();
            let at = r.below(data.len() + 1);
            data.splice(at..at, chunk);
        }
        5 => {
            let v = INTERESTING[r.below(INTERESTING.len())];
            let k = r.below(data.len() + 1);
            let end = (k + v.len()).min(data.len());
            data.splice(k..end, v.iter().copied());
        }
        _ => {
            let k = r.below(data.len() + 1);
            data.truncate(k);
        }
    }
}

#[test]
fn random_mutations_of_the_corpus_never_panic() {
    let iters: usize = std::env::var("LEAKY_FUZZ_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let mut report = Vec::new();
    for (target, body, _) in targets() {
        // Large seeds (the bombs) are slow to mutate usefully; mutate the small files.
        let files: Vec<Vec<u8>> = corpus(target).into_iter().map(|(_, d)| d).filter(|d| d.len() <= 4096).collect();
        let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
        let (mut ok, mut err) = (0usize, 0usize);
        for i in 0..iters {
            let mut d = files[i % files.len()].clone();
            for _ in 0..1 + r.below(4) {
                mutate(&mut d, &mut r);
            }
            match run(body, &d) {
                Ok(Ok(())) => ok += 1,
                Ok(Err(_)) => err += 1,
                Err(panic) => panic!("{target}: mutation {i} panicked: {panic}\ninput: {d:?}"),
            }
        }
        report.push(format!("{target}: {iters} runs, {ok} ok, {err} errors"));
    }
    eprintln!("{}", report.join("\n"));
}
