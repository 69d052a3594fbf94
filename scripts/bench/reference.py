#!/usr/bin/env python3
"""Reference timings for crates/leaky/benches/steps.rs: the same workloads in PyTorch and in
hand-written numpy, same sizes, float32, same method (a trial = WARMUP untimed steps, then
the median of REPS timed steps; a workload's figure = the median over trials).

Run by hand, not by CI:

    scripts/bench/setup.sh                      # venv in scripts/bench/.venv with numpy + torch
    scripts/bench/.venv/bin/python scripts/bench/reference.py --threads 1
    scripts/bench/.venv/bin/python scripts/bench/reference.py --serve --threads 2   # for compare.py

Workload names: torch:mlp, numpy:mlp, torch:rnn, numpy:rnn, torch:lstm, numpy:lstm,
torch:conv, torch:gemm128 ... numpy:gemm1024. In --serve mode each line on stdin is a name,
answered by one trial's median wall and mean CPU milliseconds.
"""

import argparse
import os
import sys
import time

WARMUP = 3
REPS = 10
TRIALS = 7


def set_threads(n):
    # Must happen before numpy/torch start their thread pools.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)


def torch_workloads(threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    f = torch.float32

    def mlp():
        model = torch.nn.Sequential(
            torch.nn.Linear(784, 512), torch.nn.ReLU(),
            torch.nn.Linear(512, 256), torch.nn.ReLU(),
            torch.nn.Linear(256, 10))
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
        x = torch.randn(128, 784, dtype=f)
        y = torch.tensor([(i * 7 + 3) % 10 for i in range(128)])
        lossf = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(x), y)
            loss.backward()
            opt.step()
            return loss.item()
        return step

    def recurrent(kind):
        n, t, d, h = 32, 50, 64, 128
        cls = torch.nn.RNN if kind == "rnn" else torch.nn.LSTM
        net = cls(d, h, batch_first=True)
        opt = torch.optim.SGD(net.parameters(), lr=1e-3)
        x = torch.randn(n, t, d, dtype=f)
        dh = torch.randn(n, t, h, dtype=f)

        def step():
            opt.zero_grad(set_to_none=True)
            out, _ = net(x)
            out.backward(dh)
            opt.step()
            return float(out[0, 0, 0].detach())
        return step

    def conv():
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16 * 14 * 14, 10))
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
        x = torch.randn(64, 1, 28, 28, dtype=f)
        y = torch.tensor([(i * 7 + 3) % 10 for i in range(64)])
        lossf = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(x), y)
            loss.backward()
            opt.step()
            return loss.item()
        return step

    def gemm(n):
        a = torch.randn(n, n, dtype=f)
        b = torch.randn(n, n, dtype=f)
        c = torch.empty(n, n, dtype=f)

        def step():
            torch.mm(a, b, out=c)
            return float(c[0, 0])
        return step

    w = {"torch:mlp": mlp, "torch:rnn": lambda: recurrent("rnn"), "torch:lstm": lambda: recurrent("lstm"),
         "torch:conv": conv}
    for n in (128, 256, 512, 1024):
        w[f"torch:gemm{n}"] = (lambda n=n: gemm(n))
    return w


def numpy_workloads():
    import numpy as np

    rng = np.random.default_rng(0)
    f = np.float32

    def mlp():
        dims = [784, 512, 256, 10]
        ws = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(f) for a, b in zip(dims, dims[1:])]
        bs = [np.zeros(b, f) for b in dims[1:]]
        x = rng.standard_normal((128, 784)).astype(f)
        y = np.array([(i * 7 + 3) % 10 for i in range(128)])
        lr = f(1e-2)

        def step():
            h1 = np.maximum(x @ ws[0] + bs[0], 0)
            h2 = np.maximum(h1 @ ws[1] + bs[1], 0)
            s = h2 @ ws[2] + bs[2]
            s = s - s.max(axis=1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=1, keepdims=True)
            loss = -np.log(p[np.arange(128), y]).mean()
            p[np.arange(128), y] -= 1
            p /= 128
            dw2, db2 = h2.T @ p, p.sum(0)
            dh2 = (p @ ws[2].T) * (h2 > 0)
            dw1, db1 = h1.T @ dh2, dh2.sum(0)
            dh1 = (dh2 @ ws[1].T) * (h1 > 0)
            dw0, db0 = x.T @ dh1, dh1.sum(0)
            for w_, g in zip(ws + bs, [dw0, dw1, dw2, db0, db1, db2]):
                w_ -= lr * g
            return float(loss)
        return step

    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))

    def recurrent(kind):
        # Hand-written CS231n-style forward and BPTT; the input projection of all steps is
        # one matrix product, the recurrent one is per step.
        n, t, d, h = 32, 50, 64, 128
        g = 1 if kind == "rnn" else 4
        x = rng.standard_normal((n, t, d)).astype(f)
        dh = rng.standard_normal((n, t, h)).astype(f)
        wx = (rng.standard_normal((d, g * h)) / np.sqrt(d)).astype(f)
        wh = (rng.standard_normal((h, g * h)) / np.sqrt(h)).astype(f)
        b = np.zeros(g * h, f)
        lr = f(1e-3)

        def rnn_step():
            xw = (x.reshape(n * t, d) @ wx).reshape(n, t, h) + b
            hs = np.empty((n, t, h), f)
            prev = np.zeros((n, h), f)
            for s in range(t):
                prev = np.tanh(xw[:, s] + prev @ wh)
                hs[:, s] = prev
            da = np.empty((n, t, h), f)
            dnext = np.zeros((n, h), f)
            for s in reversed(range(t)):
                a = (dnext + dh[:, s]) * (1 - hs[:, s] ** 2)
                da[:, s] = a
                dnext = a @ wh.T
            hprev = np.concatenate([np.zeros((n, 1, h), f), hs[:, :-1]], axis=1)
            dx = (da.reshape(n * t, h) @ wx.T).reshape(n, t, d)
            dwx = x.reshape(n * t, d).T @ da.reshape(n * t, h)
            dwh = hprev.reshape(n * t, h).T @ da.reshape(n * t, h)
            dbb = da.sum((0, 1))
            wx[...] -= lr * dwx
            wh[...] -= lr * dwh
            b[...] -= lr * dbb
            return float(hs[0, 0, 0] + dx[0, 0, 0])

        def lstm_step():
            xw = (x.reshape(n * t, d) @ wx).reshape(n, t, 4 * h) + b
            gates = np.empty((n, t, 4 * h), f)
            cs = np.empty((n, t, h), f)
            tcs = np.empty((n, t, h), f)
            hs = np.empty((n, t, h), f)
            hp = np.zeros((n, h), f)
            cp = np.zeros((n, h), f)
            for s in range(t):
                a = xw[:, s] + hp @ wh
                a[:, :3 * h] = sigmoid(a[:, :3 * h])
                a[:, 3 * h:] = np.tanh(a[:, 3 * h:])
                i, fg, o, gg = a[:, :h], a[:, h:2 * h], a[:, 2 * h:3 * h], a[:, 3 * h:]
                cp = fg * cp + i * gg
                tc = np.tanh(cp)
                hp = o * tc
                gates[:, s], cs[:, s], tcs[:, s], hs[:, s] = a, cp, tc, hp
            da = np.empty((n, t, 4 * h), f)
            dnh = np.zeros((n, h), f)
            dnc = np.zeros((n, h), f)
            for s in reversed(range(t)):
                a = gates[:, s]
                i, fg, o, gg = a[:, :h], a[:, h:2 * h], a[:, 2 * h:3 * h], a[:, 3 * h:]
                dht = dnh + dh[:, s]
                tc = tcs[:, s]
                dc = dnc + dht * o * (1 - tc * tc)
                pc = cs[:, s - 1] if s > 0 else np.zeros((n, h), f)
                ds = da[:, s]
                ds[:, :h] = dc * gg * i * (1 - i)
                ds[:, h:2 * h] = dc * pc * fg * (1 - fg)
                ds[:, 2 * h:3 * h] = dht * tc * o * (1 - o)
                ds[:, 3 * h:] = dc * i * (1 - gg * gg)
                dnc = dc * fg
                dnh = ds @ wh.T
            hprev = np.concatenate([np.zeros((n, 1, h), f), hs[:, :-1]], axis=1)
            dx = (da.reshape(n * t, 4 * h) @ wx.T).reshape(n, t, d)
            dwx = x.reshape(n * t, d).T @ da.reshape(n * t, 4 * h)
            dwh = hprev.reshape(n * t, h).T @ da.reshape(n * t, 4 * h)
            dbb = da.sum((0, 1))
            wx[...] -= lr * dwx
            wh[...] -= lr * dwh
            b[...] -= lr * dbb
            return float(hs[0, 0, 0] + dx[0, 0, 0])

        return rnn_step if kind == "rnn" else lstm_step

    def gemm(n):
        a = rng.standard_normal((n, n)).astype(f)
        b = rng.standard_normal((n, n)).astype(f)
        c = np.empty((n, n), f)

        def step():
            np.matmul(a, b, out=c)
            return float(c[0, 0])
        return step

    w = {"numpy:mlp": mlp, "numpy:rnn": lambda: recurrent("rnn"), "numpy:lstm": lambda: recurrent("lstm")}
    for n in (128, 256, 512, 1024):
        w[f"numpy:gemm{n}"] = (lambda n=n: gemm(n))
    return w


def trial(step):
    """(median wall ms, mean on-CPU ms of this thread) per step, as steps.rs measures."""
    for _ in range(WARMUP):
        step()
    times = []
    cpu0 = time.thread_time()
    for _ in range(REPS):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    cpu = (time.thread_time() - cpu0) * 1e3 / REPS
    times.sort()
    return times[len(times) // 2], cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    set_threads(args.threads)
    makers = {}
    makers.update(numpy_workloads())
    makers.update(torch_workloads(args.threads))
    steps = {}

    def get(name):
        if name not in steps:
            steps[name] = makers[name]()
        return steps[name]

    if args.serve:
        for line in sys.stdin:
            name = line.strip()
            if not name:
                continue
            if name not in makers:
                print(f"error unknown workload {name}", flush=True)
                continue
            wall, cpu = trial(get(name))
            print(f"{wall:.6f} {cpu:.6f}", flush=True)
        return
    import numpy
    import torch
    print(f"torch {torch.__version__}, numpy {numpy.__version__}, threads {args.threads}: "
          f"median over {TRIALS} trials of the median of {REPS} steps after {WARMUP} warm-up steps")
    for name in args.names or list(makers):
        ts = sorted(trial(get(name))[0] for _ in range(TRIALS))
        print(f"{name:<16} {ts[len(ts) // 2]:>10.3f} ms")


if __name__ == "__main__":
    main()
