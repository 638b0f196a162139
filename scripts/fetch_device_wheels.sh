#!/usr/bin/env bash
# Download the wheels that the GPU check (benchmarks/gpu_session.sh) needs on a lent device
# machine and that its image lacks: segment-anything and pycocotools for CPython 3.12 on x86-64
# (torch, torchvision, OpenCV, h5py, typer, tqdm, pytest are already there). ~0.5 MB into .whl/,
# which git ignores (.git/info/exclude); carry it with the run: carry [".whl"].
# Usage: bash scripts/fetch_device_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl segment-anything==1.0 pycocotools==2.0.11
ls -l .whl
