//! f32 GEMM: `matrixmultiply` (what `leaky` uses, through [`Float::gemm`]) against the
//! `gemm` crate, on square sizes and on the MLP shapes `leaky` trains. Results are in
//! BENCHMARKS.md at the repository root.
//!
//! Run with `cargo bench -p leaky --bench gemm`. Without `--bench` on the command line
//! (e.g. `cargo test --all-targets`) it only checks that both crates agree numerically.
//!
//! Method (the machine is shared and noisy): after a warm-up that also calibrates how many
//! calls fill one trial of ~`GEMM_BENCH_TRIAL_MS` ms (default 50), the two single-threaded
//! sides run as `GEMM_BENCH_PAIRS` adjacent pairs (default 15), the order alternating. The
//! figure of merit is the median over pairs of the per-pair ratio
//! `time(matrixmultiply) / time(gemm, Parallelism::None)`: above 1 means `gemm` is faster.
//! Both the thread's CPU time and wall time are recorded; CPU time is the primary one
//! because it does not count the time other processes hold the core.
//! Both sides write into a preallocated C with beta = 0 (no read of C), so they do the same
//! work; `leaky::tensor::matmul` is exactly this call plus a zeroed allocation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use gemm::Parallelism;
use leaky::tensor::{randn, rng, Float};
use ndarray::{Array2, ArrayView2, ArrayViewMut2};

/// One product `C (m, n) = A (m, k) B (k, n)`, with A and/or B possibly a transposed view.
struct Case {
    name: String,
    m: usize,
    k: usize,
    n: usize,
    /// A is stored as (k, m) and used as `.t()`.
    a_t: bool,
    /// B is stored as (n, k) and used as `.t()`.
    b_t: bool,
}

impl Case {
    fn new(name: impl Into<String>, m: usize, k: usize, n: usize, a_t: bool, b_t: bool) -> Self {
        Case { name: name.into(), m, k, n, a_t, b_t }
    }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for n in [128, 256, 512, 1024] {
        v.push(Case::new(format!("square {n}"), n, n, n, false, false));
    }
    // Two-layer MLP on MNIST, batch 128: 784 -> 512 -> 256.
    // forward x w; backward dx = dout w^T (B transposed), dW = x^T dout (A transposed).
    v.push(Case::new("fwd1 x w1", 128, 784, 512, false, false));
    v.push(Case::new("fwd2 h w2", 128, 512, 256, false, false));
    v.push(Case::new("dW1 = x^T dout1", 784, 128, 512, true, false));
    v.push(Case::new("dx = dout1 w1^T", 128, 512, 784, false, true));
    v.push(Case::new("dW2 = h^T dout2", 512, 128, 256, true, false));
    v.push(Case::new("dh = dout2 w2^T", 128, 256, 512, false, true));
    // The small end of the batch range (M = 32).
    v.push(Case::new("fwd1 x w1, batch 32", 32, 784, 512, false, false));
    v.push(Case::new("dx = dout1 w1^T, batch 32", 32, 512, 784, false, true));
    // The LSTM of benches/steps.rs (N 32, T 50, D 64, H 128): input projection of all steps,
    // one recurrent product forward (h Wh) and backward (da Wh^T), the fused weight gradient.
    v.push(Case::new("lstm x Wx (N*T rows)", 1600, 64, 512, false, false));
    v.push(Case::new("lstm h Wh", 32, 128, 512, false, false));
    v.push(Case::new("lstm da Wh^T", 32, 512, 128, false, true));
    v.push(Case::new("lstm [x,h]^T da", 192, 1600, 512, true, false));
    // The conv workload's second layer, one image (F 16, K = 8*3*3, P = 28*28).
    v.push(Case::new("conv2 W cols", 16, 72, 784, false, false));
    v.push(Case::new("conv2 dW = dout cols^T", 16, 784, 72, false, true));
    v.push(Case::new("conv2 dcols = W^T dout", 72, 16, 784, true, false));
    v
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    /// matrixmultiply, one call on this thread (`Float::gemm_one_thread`).
    Mm,
    /// The `gemm` crate, `Parallelism::None`.
    Gemm1,
    /// The `gemm` crate, `Parallelism::Rayon(2)`.
    Gemm2,
    /// leaky's `Float::gemm` on a 2-thread pool (matrixmultiply on blocks of C).
    Mm2,
}

impl Side {
    const ALL: [Side; 4] = [Side::Mm, Side::Gemm1, Side::Gemm2, Side::Mm2];
}

/// matrixmultiply through leaky's own entry point, one thread (`matrixmultiply::sgemm`).
fn run_mm(a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>) {
    f32::gemm_one_thread(1.0, a, b, 0.0, c);
}

/// A 2-thread pool for leaky's split product.
fn pool2() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a 2-thread pool"))
}

/// The `gemm` crate: `dst := alpha dst + beta lhs rhs`, with `read_dst = false` (C ignored).
fn run_gemm(a: ArrayView2<f32>, b: ArrayView2<f32>, mut c: ArrayViewMut2<f32>, par: Parallelism) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2);
    assert_eq!(c.dim(), (m, n));
    let (rsa, csa) = (a.strides()[0], a.strides()[1]);
    let (rsb, csb) = (b.strides()[0], b.strides()[1]);
    let (rsc, csc) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the pointers come from live ndarray views whose shapes were checked above;
    // every (row, col) inside a view's shape, offset by its own strides, stays within its
    // allocation. `c` is a unique mutable view, so it aliases neither `a` nor `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            csc,
            rsc,
            false,
            a.as_ptr(),
            csa,
            rsa,
            b.as_ptr(),
            csb,
            rsb,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

fn run(side: Side, a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>) {
    match side {
        Side::Mm => run_mm(a, b, c),
        Side::Gemm1 => run_gemm(a, b, c, Parallelism::None),
        Side::Gemm2 => run_gemm(a, b, c, Parallelism::Rayon(2)),
        Side::Mm2 => pool2().install(|| f32::gemm(1.0, a, b, 0.0, c)),
    }
}

/// Storage for one case: A and B with the layout the case asks for.
struct Operands {
    a: Array2<f32>,
    b: Array2<f32>,
    a_t: bool,
    b_t: bool,
}

impl Operands {
    fn new(case: &Case, seed: u64) -> Self {
        let mut r = rng(seed);
        let a_shape = if case.a_t { (case.k, case.m) } else { (case.m, case.k) };
        let b_shape = if case.b_t { (case.n, case.k) } else { (case.k, case.n) };
        let a = randn(a_shape, 1.0, &mut r);
        let b = randn(b_shape, 1.0, &mut r);
        Operands { a, b, a_t: case.a_t, b_t: case.b_t }
    }

    fn a(&self) -> ArrayView2<'_, f32> {
        if self.a_t {
            self.a.t()
        } else {
            self.a.view()
        }
    }

    fn b(&self) -> ArrayView2<'_, f32> {
        if self.b_t {
            self.b.t()
        } else {
            self.b.view()
        }
    }
}

/// Max |x - y| over two equal-shape arrays.
fn max_abs_diff(x: &Array2<f64>, y: &Array2<f32>) -> f64 {
    x.iter().zip(y.iter()).map(|(p, q)| (p - *q as f64).abs()).fold(0.0, f64::max)
}

/// Checks both sides against an f64 reference (matrixmultiply dgemm on the same data) and
/// against each other; returns (max |mm - ref|, max |gemm - ref|, max |mm - gemm|, max |ref|).
fn check(case: &Case, ops: &Operands) -> (f64, f64, f64, f64) {
    let a64 = ops.a().mapv(f64::from);
    let b64 = ops.b().mapv(f64::from);
    let reference = leaky::tensor::matmul(a64.view(), b64.view());
    let mut c_mm = Array2::<f32>::zeros((case.m, case.n));
    let mut c_g1 = Array2::<f32>::from_elem((case.m, case.n), f32::NAN);
    let mut c_g2 = Array2::<f32>::from_elem((case.m, case.n), f32::NAN);
    run(Side::Mm, ops.a(), ops.b(), c_mm.view_mut());
    run(Side::Gemm1, ops.a(), ops.b(), c_g1.view_mut());
    run(Side::Gemm2, ops.a(), ops.b(), c_g2.view_mut());
    // leaky's split product on 2 threads gives matrixmultiply's bits.
    let mut c_m2 = Array2::<f32>::from_elem((case.m, case.n), f32::NAN);
    run(Side::Mm2, ops.a(), ops.b(), c_m2.view_mut());
    assert!(c_m2 == c_mm, "{}: the 2-thread product differs from the 1-thread one", case.name);
    let e_mm = max_abs_diff(&reference, &c_mm);
    let e_g1 = max_abs_diff(&reference, &c_g1);
    let e_g2 = max_abs_diff(&reference, &c_g2);
    let d = c_mm.iter().zip(c_g1.iter()).map(|(p, q)| (p - q).abs() as f64).fold(0.0, f64::max);
    let scale = reference.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    // Sums of k products of N(0,1) values: f32 rounding error grows like sqrt(k) * eps * |c|.
    let tol = 1e-4 * scale.max(1.0);
    assert!(e_mm <= tol && e_g1 <= tol && e_g2 <= tol && d <= tol, "{}: results disagree", case.name);
    (e_mm, e_g1, d, scale)
}

/// CPU time consumed by the calling thread, in seconds. On this shared 2-core machine other
/// processes take the cores away for whole trials at a time; the thread's own CPU time does
/// not count those gaps, wall time does. Only meaningful for the single-threaded sides.
#[cfg(unix)]
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a libc constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[cfg(not(unix))]
fn thread_cpu_s() -> f64 {
    use std::sync::OnceLock;
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Seconds per call, as (wall, thread CPU), over `reps` calls.
#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
}

/// Calls `side` `reps` times.
fn time_reps(side: Side, ops: &Operands, c: &mut Array2<f32>, reps: u32) -> Sample {
    let cpu0 = thread_cpu_s();
    let t0 = Instant::now();
    for _ in 0..reps {
        run(side, black_box(ops.a()), black_box(ops.b()), c.view_mut());
        black_box(&mut *c);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu_s() - cpu0;
    Sample { wall: wall / reps as f64, cpu: cpu / reps as f64 }
}

/// Warms `side` up (caches, page faults, rayon's pool, gemm's CPU dispatch) and returns the
/// number of calls that fill about `trial`.
fn calibrate(side: Side, ops: &Operands, c: &mut Array2<f32>, trial: Duration) -> u32 {
    let t_end = Instant::now() + trial * 2;
    let mut per = time_reps(side, ops, c, 1).wall;
    while Instant::now() < t_end {
        let reps = ((trial.as_secs_f64() / 4.0 / per).ceil() as u32).max(1);
        per = time_reps(side, ops, c, reps).wall;
    }
    ((trial.as_secs_f64() / per).round() as u32).max(1)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let pairs: usize = env_or("GEMM_BENCH_PAIRS", 15);
    let trial = Duration::from_millis(env_or("GEMM_BENCH_TRIAL_MS", 50));
    let cases = cases();

    if !bench {
        for (i, case) in cases.iter().enumerate() {
            let ops = Operands::new(case, 1000 + i as u64);
            check(case, &ops);
        }
        println!(
            "gemm bench: {} shapes agree between matrixmultiply and gemm (run `cargo bench` to time)",
            cases.len()
        );
        return;
    }

    #[cfg(target_arch = "x86_64")]
    {
        let flags: Vec<&str> = [
            ("avx2", is_x86_feature_detected!("avx2")),
            ("fma", is_x86_feature_detected!("fma")),
            ("avx512f", is_x86_feature_detected!("avx512f")),
        ]
        .iter()
        .filter(|f| f.1)
        .map(|f| f.0)
        .collect();
        println!("CPU features detected at run time: {}", flags.join(", "));
    }
    println!("f32 C = A B; per shape: warm-up, then {pairs} adjacent pairs (matrixmultiply, gemm None), order");
    println!("alternating, ~{} ms per side per pair; then {pairs} pairs of gemm Rayon(2) and leaky's Float::gemm on 2 threads.", trial.as_millis());
    println!("ratio = time(matrixmultiply) / time(gemm None) per pair, median [min, max] over pairs;");
    println!("> 1 means gemm is faster. cpu = the thread's CPU time, wall = wall-clock time.");
    println!("GFLOP/s = 2 m k n / median time (thread CPU time; wall time for the 2-thread columns).\n");
    println!(
        "| shape | m x k x n | matrixmultiply GFLOP/s | gemm None GFLOP/s | ratio cpu | ratio wall \
         | leaky 2 threads GFLOP/s (wall) | gemm Rayon(2) GFLOP/s (wall) | max abs diff (max abs C) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut all_ratios = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let ops = Operands::new(case, 1000 + i as u64);
        let (_, _, diff, scale) = check(case, &ops);
        let mut c = Array2::<f32>::zeros((case.m, case.n));
        let reps: Vec<u32> = Side::ALL.iter().map(|&s| calibrate(s, &ops, &mut c, trial)).collect();
        let (mut mm, mut g1) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
        for pair in 0..pairs {
            if pair % 2 == 0 {
                mm.push(time_reps(Side::Mm, &ops, &mut c, reps[0]));
                g1.push(time_reps(Side::Gemm1, &ops, &mut c, reps[1]));
            } else {
                g1.push(time_reps(Side::Gemm1, &ops, &mut c, reps[1]));
                mm.push(time_reps(Side::Mm, &ops, &mut c, reps[0]));
            }
        }
        let (mut g2, mut m2) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
        for pair in 0..pairs {
            if pair % 2 == 0 {
                g2.push(time_reps(Side::Gemm2, &ops, &mut c, reps[2]).wall);
                m2.push(time_reps(Side::Mm2, &ops, &mut c, reps[3]).wall);
            } else {
                m2.push(time_reps(Side::Mm2, &ops, &mut c, reps[3]).wall);
                g2.push(time_reps(Side::Gemm2, &ops, &mut c, reps[2]).wall);
            }
        }

        let r_cpu: Vec<f64> = mm.iter().zip(&g1).map(|(a, b)| a.cpu / b.cpu).collect();
        let r_wall: Vec<f64> = mm.iter().zip(&g1).map(|(a, b)| a.wall / b.wall).collect();
        let flops = 2.0 * (case.m * case.k * case.n) as f64;
        let gf = |v: &[f64]| flops / median(v) / 1e9;
        let g_mm = gf(&mm.iter().map(|s| s.cpu).collect::<Vec<_>>());
        let g_g1 = gf(&g1.iter().map(|s| s.cpu).collect::<Vec<_>>());
        let g_g2 = gf(&g2);
        let g_m2 = gf(&m2);
        let lo = r_cpu.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = r_cpu.iter().cloned().fold(0.0, f64::max);
        let (rc, rw) = (median(&r_cpu), median(&r_wall));
        all_ratios.push(rc);
        println!(
            "| {} | {}x{}x{} | {g_mm:.1} | {g_g1:.1} | {rc:.2} [{lo:.2}, {hi:.2}] | {rw:.2} | {g_m2:.1} | {g_g2:.1} \
             | {diff:.1e} ({scale:.0}) |",
            case.name, case.m, case.k, case.n
        );
    }
    let geo = (all_ratios.iter().map(|r| r.ln()).sum::<f64>() / all_ratios.len() as f64).exp();
    println!("\ngeometric mean of the per-shape cpu ratios: {geo:.3}");
}
