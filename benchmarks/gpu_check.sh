#!/usr/bin/env bash
# One short check of the pipeline's GPU paths (a few minutes on one H100/H200; nothing downloaded):
# the opt-in GPU tests, then SAM throughput of our batched path vs SamPredictor on the same card.
# Usage: bash benchmarks/gpu_check.sh            (random SAM weights)
#        SAM_VIT_H=/path/sam_vit_h_4b8939.pth bash benchmarks/gpu_check.sh   (real vit_h weights)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$py" -m pytest -q -p no:cacheprovider -m gpu tests/test_pipeline_gpu.py
"$py" benchmarks/sam_throughput.py --device cuda --segmenter sam_vit_b --frames 32 --batch-size 8 --warmup --lite-samples 0
ckpt=()
[[ -n "${SAM_VIT_H:-}" ]] && ckpt=(--checkpoint "$SAM_VIT_H")
"$py" benchmarks/sam_throughput.py --device cuda --segmenter sam_vit_h --frames 32 --batch-size 8 --warmup --lite-samples 0 "${ckpt[@]}"
"$py" benchmarks/sam_throughput.py --device cuda --segmenter sam_vit_h --frames 32 --batch-size 8 --warmup --lite-samples 0 --dtype fp32 --no-sdpa "${ckpt[@]}"
