#!/usr/bin/env python3
"""Regenerate the README's "Every finding code" section from real `leaky doctor` runs.

Usage (from the repository root, after `cargo build --release -p leaky-cli`):

    python3 scripts/finding_examples.py          # rewrites README.md between the markers

Standard library only. Each code is shown with the finding block that `leaky doctor FILE
--quiet --fail-on never` printed for one of the sick experiments.
"""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "leaky"
BEGIN, END = "<!-- finding-examples:begin -->", "<!-- finding-examples:end -->"

# (code, experiment, what the code means in backward-pass terms)
CASES = [
    ("saturation", "examples/sick/tanh-saturated.toml",
     "sigmoid/tanh units sit in their flat tails, where the local gradient (z(1-z) <= 0.25, 1-t^2 <= 1) is ~0."),
    ("vanishing_gradient", "examples/sick/deep-sigmoid-vanishing.toml",
     "through depth: each layer multiplies the gradient by W^T and a local gradient below 1."),
    ("vanishing_gradient", "examples/sick/rnn-vanishing.toml",
     "through time: each step back multiplies it by diag(1-h^2) Wh^T; Whh's spectral radius 0.5 halves it per step."),
    ("exploding_gradient", "examples/sick/deep-relu-exploding.toml",
     "through depth: weights too large for the fan-in grow the gradient layer by layer."),
    ("exploding_gradient", "examples/sick/rnn-exploding.toml",
     "through time: Whh at spectral radius 3 grows the gradient ~1.3x per step back."),
    ("dead_relu", "examples/sick/relu-dead-bias.toml",
     "ReLU units that output 0 on every training example of a full pass: their gradient is 0 forever."),
    ("zero_gradient", "examples/sick/dqn-clipped-delta.toml",
     "an op with flat regions (here clip_by_value on the TD error) sets the gradient of many samples to exactly 0 while the loss is not 0."),
    ("non_finite", "examples/sick/nan-lr.toml",
     "the first op, layer and pass where NaN or Inf appeared."),
    ("bad_init_loss", "examples/sick/big-init-loss.toml",
     "the loss at step 0 is far from what the initialisation predicts (ln C for softmax)."),
    ("update_ratio", "examples/sick/stalled-lr.toml",
     "lr*|dW|/|W| far from ~1e-3: here far too small (too large kills units, see huge-lr-updates.toml)."),
    ("unnormalized_input", "examples/sick/raw-inputs.toml",
     "features far from zero mean and unit scale: dW = x^T dout then zig-zags and sigmoids saturate."),
]


def block(code, file):
    out = subprocess.run([str(BIN), "doctor", file, "--quiet", "--fail-on", "never"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout.splitlines()
    lines = out[out.index("Diagnosis") + 1:]
    got, on = [], False
    for line in lines:
        if not line.startswith(" "):
            if on:
                break
            on = line.split()[1:2] == [code]
        if on:
            got.append(line)
    if not got:
        sys.exit(f"{file}: no {code} finding")
    return "\n".join([f"$ leaky doctor {file}"] + got)


def main():
    parts, last = [], None
    for code, file, what in CASES:
        if not (ROOT / file).exists():
            sys.exit(f"missing {file}")
        head = f"#### `{code}`\n\n" if code != last else ""
        last = code
        parts.append(f"{head}{what[0].upper() + what[1:]}\n\n```text\n{block(code, file)}\n```\n")
    readme = (ROOT / "README.md").read_text()
    a, b = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    (ROOT / "README.md").write_text(readme[:a] + "\n\n" + "\n".join(parts) + "\n" + readme[b:])


if __name__ == "__main__":
    main()
