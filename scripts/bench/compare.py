#!/usr/bin/env python3
"""Side by side: leaky (crates/leaky/benches/steps.rs) against PyTorch and numpy
(scripts/bench/reference.py), interleaved in short trials, one table of ratios.

    scripts/bench/setup.sh                         # once: venv with numpy + torch
    python3 scripts/bench/compare.py               # 1 and 2 threads, every workload, 9 rounds
    python3 scripts/bench/compare.py --threads 1 --rounds 5 mlp rnn

For each thread count it starts one leaky server (`cargo bench -p leaky --bench steps --
--serve`, RAYON_NUM_THREADS=t) and one reference server (reference.py --serve --threads t),
then for each workload runs ROUNDS rounds of one trial per side (a trial = 3 warm-up steps,
then 10 timed steps), alternating which side goes first. With 1 thread a trial's figure is
the median wall time per step (default, `--clock wall`: for a quiet machine) or, with
`--clock cpu` at 1 thread, the mean on-CPU time per step of the computing thread
(CLOCK_THREAD_CPUTIME_ID; time lost to other processes on shared cores does not count, so it
suits a loaded machine; it misses a second thread's work, so 2 threads always use wall time). Each round gives the
pairwise ratios t(leaky) / t(reference); the table reports their median with [min, max],
and the median times. A ratio below 1 means leaky is faster; speed-up = 1 / ratio.
The machine's load (`uptime`) is printed before and after.
"""

import argparse
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_PY = os.path.join(ROOT, "scripts", "bench", ".venv", "bin", "python")

# leaky workload -> reference workloads it is compared with
PAIRS = {
    "mlp": ["torch:mlp", "numpy:mlp"],
    "rnn": ["torch:rnn", "numpy:rnn"],
    "lstm": ["torch:lstm", "numpy:lstm"],
    "conv": ["torch:conv"],
    "gemm128": ["torch:gemm128", "numpy:gemm128"],
    "gemm256": ["torch:gemm256", "numpy:gemm256"],
    "gemm512": ["torch:gemm512", "numpy:gemm512"],
    "gemm1024": ["torch:gemm1024", "numpy:gemm1024"],
    # the doctor's overhead: leaky with the doctor against leaky without
    "mlp_doctor": ["leaky:mlp"],
    "seq_rnn_doctor": ["leaky:seq_rnn"],
}


class Server:
    def __init__(self, cmd, env):
        self.p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, bufsize=1)

    def ask(self, name, clock):
        """One trial of `name`: median wall ms (clock "wall") or mean thread-CPU ms ("cpu")."""
        self.p.stdin.write(name + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline().strip()
        if not line or line.startswith("error"):
            sys.exit(f"server failed on {name}: {line!r}")
        wall, cpu = (float(v) for v in line.split())
        return cpu if clock == "cpu" and cpu > 0 else wall

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="1-thread clock: wall (quiet machine) or thread CPU time (loaded machine)")
    ap.add_argument("workloads", nargs="*")
    args = ap.parse_args()
    names = args.workloads or list(PAIRS)
    if not os.path.exists(VENV_PY):
        sys.exit("no venv: run scripts/bench/setup.sh first")
    if not os.environ.get("LEAKY_STEPS_BIN"):
        subprocess.run(["cargo", "bench", "-p", "leaky", "--bench", "steps", "--no-run"], cwd=ROOT, check=True)
    print(f"load before: {uptime()}")
    rows = []
    for t in args.threads:
        # Two threads: wall time (the CPU time of one thread misses the other's work).
        clock = args.clock if t == 1 else "wall"
        # RAYON_NUM_THREADS is leaky's one thread knob; MATMUL_NUM_THREADS is for binaries
        # built before leaky moved to rayon (matrixmultiply's own pool), e.g. LEAKY_STEPS_BIN.
        env = dict(os.environ, RAYON_NUM_THREADS=str(t), MATMUL_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t),
                   MKL_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t))
        # LEAKY_STEPS_BIN=path runs an already built steps binary instead (e.g. a kept copy of
        # an older build, to measure before and after against the same reference run).
        steps_bin = os.environ.get("LEAKY_STEPS_BIN")
        leaky_cmd = [steps_bin, "--serve"] if steps_bin else ["cargo", "bench", "-q", "-p", "leaky", "--bench",
                                                               "steps", "--", "--serve"]
        leaky = Server(leaky_cmd, env)
        ref = Server([VENV_PY, os.path.join(ROOT, "scripts", "bench", "reference.py"), "--serve",
                      "--threads", str(t)], env)
        for name in names:
            for other in PAIRS[name]:
                side_b = leaky if other.startswith("leaky:") else ref
                b_name = other.split(":", 1)[1] if other.startswith("leaky:") else other
                ratios, ta, tb = [], [], []
                for r in range(args.rounds):
                    if r % 2 == 0:
                        a = leaky.ask(name, clock)
                        b = side_b.ask(b_name, clock)
                    else:
                        b = side_b.ask(b_name, clock)
                        a = leaky.ask(name, clock)
                    ta.append(a)
                    tb.append(b)
                    ratios.append(a / b)
                row = (t, clock, name, other, statistics.median(ta), statistics.median(tb), statistics.median(ratios),
                       min(ratios), max(ratios))
                rows.append(row)
                print(f"  {t} thr {clock} {name:<15} vs {other:<15} {row[4]:8.3f} ms vs {row[5]:8.3f} ms  "
                      f"ratio {row[6]:.3f} [{row[7]:.3f}, {row[8]:.3f}]", flush=True)
        leaky.close()
        ref.close()
    print(f"load after: {uptime()}")
    print()
    print("| threads | clock | leaky workload | compared with | leaky ms/step | other ms/step "
          "| ratio leaky/other (median [min, max]) | speed-up |")
    print("|---:|---|---|---|---:|---:|---:|---:|")
    for t, clock, name, other, a, b, med, lo, hi in rows:
        print(f"| {t} | {clock} | {name} | {other} | {a:.3f} | {b:.3f} | {med:.3f} [{lo:.3f}, {hi:.3f}] "
              f"| {1 / med:.2f}x |")


if __name__ == "__main__":
    main()
