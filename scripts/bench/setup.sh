#!/bin/sh
# Create scripts/bench/.venv with numpy and PyTorch (CPU) for reference.py and compare.py.
# Tries the CPU-only wheel index first; where only PyPI is reachable, plain PyPI (which
# pulls the CUDA build of torch, several GB; its CPU path is the same code).
set -e
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install -q numpy
.venv/bin/pip install -q torch --index-url https://download.pytorch.org/whl/cpu || .venv/bin/pip install -q torch
.venv/bin/python -c 'import numpy, torch; print("numpy", numpy.__version__, "torch", torch.__version__)'
