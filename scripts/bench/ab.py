#!/usr/bin/env python3
"""Before/after: two builds of leaky's step bench (crates/leaky/benches/steps.rs), interleaved.

    cargo bench -p leaky --bench steps --no-run        # prints the binary's path
    cp target/release/deps/steps-<hash> /tmp/steps-old # keep the old build
    ... change code, build again ...
    python3 scripts/bench/ab.py /tmp/steps-old target/release/deps/steps-<hash> --rounds 15 rnn lstm

Both binaries run as `--serve` servers with `--threads N` threads (default 1: RAYON_NUM_THREADS,
leaky's thread knob, and MATMUL_NUM_THREADS for builds from before it); each round asks each
side for one trial (3 warm-up steps, then 10 timed steps; the figure is the mean on-CPU time
per step of the computing thread with 1 thread, the median wall time per step with more),
alternating which side goes first. The table gives the median
of the pairwise ratios new/old with [min, max] and the median times; below 1 means the new
build is faster. No Python packages needed. A workload written `A=B` runs workload A on the
old binary and B on the new one (give the same binary twice to compare two workloads, e.g.
`recur_gemm=recur_packed`).
"""

import argparse
import os
import statistics
import subprocess
import sys


def ask(p, name, clock):
    p.stdin.write(name + "\n")
    p.stdin.flush()
    line = p.stdout.readline().strip()
    if not line or line.startswith("error"):
        sys.exit(f"server failed on {name}: {line!r}")
    wall, cpu = (float(v) for v in line.split())
    return cpu if clock == "cpu" and cpu > 0 else wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--old-threads", type=int, default=None,
                    help="threads of the old side (default: --threads); e.g. the same binary twice with "
                         "--old-threads 1 --threads 2 measures the 1 -> 2 thread speed-up (wall time)")
    ap.add_argument("workloads", nargs="+")
    args = ap.parse_args()
    old_threads = args.old_threads or args.threads
    envs = [dict(os.environ, RAYON_NUM_THREADS=str(t), MATMUL_NUM_THREADS=str(t)) for t in (old_threads, args.threads)]
    clock = "cpu" if args.threads == 1 and old_threads == 1 else "wall"
    up = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"load before: {up()}; threads old {old_threads}, new {args.threads}; clock {clock}")
    servers = [subprocess.Popen([b, "--serve"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                bufsize=1) for b, env in zip((args.old, args.new), envs)]
    old, new = servers
    print("| workload | old ms/step | new ms/step | ratio new/old, median [min, max] | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for name in args.workloads:
        name_old, _, name_new = name.partition("=")
        name_new = name_new or name_old
        to, tn, ratios = [], [], []
        for r in range(args.rounds):
            if r % 2 == 0:
                a = ask(old, name_old, clock)
                b = ask(new, name_new, clock)
            else:
                b = ask(new, name_new, clock)
                a = ask(old, name_old, clock)
            to.append(a)
            tn.append(b)
            ratios.append(b / a)
        med = statistics.median(ratios)
        print(f"| {name} | {statistics.median(to):.3f} | {statistics.median(tn):.3f} | {med:.3f} "
              f"[{min(ratios):.3f}, {max(ratios):.3f}] | {1 / med:.2f}x |", flush=True)
    for p in servers:
        p.stdin.close()
        p.wait()
    print(f"load after: {up()}")


if __name__ == "__main__":
    main()
