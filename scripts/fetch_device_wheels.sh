#!/usr/bin/env bash
# Download the wheels that the GPU check (benchmarks/gpu_session.sh) needs on a lent device
# machine and that its image lacks, for CPython 3.12 on x86-64: segment-anything, pycocotools, and
# ultralytics (+ its thop) for the fp16 YOLO GPU test (its other needs are there or not imported
# on that path; torch, torchvision, OpenCV, h5py, typer, tqdm, pytest, nvidia-ml-py are there), and
# segmentation-models-pytorch, timm and einops, which the public FineParser code imports
# (benchmarks/reference_eval.py; pinned here because the image's timm version is not known;
# huggingface_hub, safetensors and matplotlib are there).
# ~5 MB into .whl/, which git ignores; carry it with the run: carry [".whl"].
# Usage: bash scripts/fetch_device_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl segment-anything==1.0 pycocotools==2.0.11 ultralytics-opencv-headless==8.4.190 ultralytics-thop==2.2.3 segmentation-models-pytorch==0.6.0 \
  timm==1.0.29 einops==0.8.2
ls -l .whl
