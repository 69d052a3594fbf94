//! Replay of the committed fuzz corpus (`fuzz/corpus/<target>/`) through the bodies of the
//! cargo-fuzz targets, on stable inside `cargo test`: every `seed-*` file must load, every
//! `bad-*` file must give an error naming the file, and nothing may panic. Then a short
//! random-mutation run over the same corpus (a few hundred inputs per target: seconds), which
//! only checks for panics; `LEAKY_FUZZ_ITERS=N` runs N per target instead (docs/fuzzing.md).

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
    ]
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
    files.sort();
    files
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
    let dir = std::env::temp_dir().join(format!("leaky-fuzz-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
                Ok(Err(e)) if !e.contains(names) => problems.push(format!("{target}/{name}: error names no file: {e}")),
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
