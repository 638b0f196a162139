#!/usr/bin/env bash
# Every GPU figure the open issues ask for, in one command on one lent H100/H200 (< 9.5 minutes):
#   #3  SAM vit_h: our batched bf16/SDPA(+torch.compile) segment path vs plain SamPredictor, IoU >= 0.98
#       (DESIGN.md: 60 frames/s needs torch.compile; the runs without it and in fp32 show each lever)
#   #5  annotator click latency with vit_h (server side, cached embedding)
#   #7  Uni-FineParser paper preset: train pairs/s and memory at batch 2, eval speed-up, largest batch;
#       "reference": the public FineParser code's own evaluation (and training step) against ours, in one
#       process (needs .ref/FineParser_CVPR2024 from scripts/fetch_reference.py, carried, and the
#       segmentation-models-pytorch wheel from scripts/fetch_device_wheels.sh); "loader": the training
#       data path on the host's cores (benchmarks/loader_throughput.py, 0/4/8 workers)
# plus the opt-in GPU tests. (Every step has run on an H100/H200, 2026-11-26 and 2026-11-27; the figures are
# in docs/pipeline.md, docs/annotator.md and docs/training.md. The #7 run of 2026-11-27, about 5 minutes:
#   run(command="STEPS='reference loader train' TRAIN_MAXB=0 TRAIN_CUDNN=1 TRAIN_COMPILE=1 bash benchmarks/gpu_session.sh",
#       carry=[".whl", ".ref/FineParser_CVPR2024"], timeout_s=560)
# .) Random weights everywhere (speed does not depend on their values; no checkpoint can be fetched
# there). Each step has its own time limit and a failed step does not stop the others. The log goes to $OUT/gpu_session.log (the device tool brings $OUT back).
#
# Here, first:   bash scripts/fetch_device_wheels.sh
# Device tool:   run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=600)
# Dry run on a CPU (same steps, tiny sizes, a few minutes):
#                HM_GPU_DRY=1 PYTHON=.venv/bin/python bash benchmarks/gpu_session.sh
# Only some steps: STEPS="sam train" bash benchmarks/gpu_session.sh   (tests sam annotator train; opt-in: reference loader;
#   also "breakdown": where the SAM path's time goes, eager, with a kernel profile)
# SAM runs: SAM_RUNS="compile nocompile fp32" (the default); SAM_EXTRA="--no-fold-rel-pos" adds flags to each.
# TRAIN_MAXB=0 skips the largest-batch search; TRAIN_CUDNN=1 adds a run with cudnn.benchmark,
# TRAIN_COMPILE=1 one with torch.compile (train.compile).
# Real vit_h weights (a user's machine): SAM_VIT_H=/path/sam_vit_h_4b8939.pth bash benchmarks/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out/gpu_session}"
mkdir -p "$out"
log="$out/gpu_session.log"
: >"$log"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
steps="${STEPS:-tests sam annotator train}"
sam_runs="${SAM_RUNS:-compile nocompile fp32}"
read -r -a sam_extra <<<"${SAM_EXTRA:-}"
ckpt=()
[[ -n "${SAM_VIT_H:-}" && -z "${HM_GPU_DRY:-}" ]] && ckpt=(--checkpoint "$SAM_VIT_H")
if [[ -n "${HM_GPU_DRY:-}" ]]; then
  # bf16 encoders as on CUDA (where "auto" picks bf16), so the dry run takes the GPU's dtype paths
  dev=cpu vit=sam_vit_b frames=2 bs=1 preset=tiny clicks=3 maxb=() warm=() compile=() bf16=(--dtype bf16)
  refargs=(--ref-queries 1 --queries 2 --eval-batch 2) loadargs=(--clips 8 --batches 30 --workers 0 2)
  reflimit=900  # a public query takes 1-2 minutes on a CPU, its warm-up another
else
  dev=cuda vit=sam_vit_h frames=32 bs=8 preset=paper clicks=50 maxb=(--max-batch) warm=(--warmup) compile=(--compile) bf16=()
  refargs=(--ref-train 5 --ref-queries 8 --flops) loadargs=(--workers 0 4 8) reflimit=200
  [[ "${TRAIN_MAXB:-1}" == 0 ]] && maxb=()
fi

step() {  # step SECONDS CMD...: run with a time limit, log everything, never stop the script
  local secs=$1
  shift
  echo "=== $(date +%T) [limit ${secs}s] $*" | tee -a "$log"
  timeout "$secs" "$@" 2>&1 | tee -a "$log"
  echo "=== exit ${PIPESTATUS[0]}" | tee -a "$log"
}
want() { [[ " $steps " == *" $1 "* ]]; }
sam_run() { [[ " $sam_runs " == *" $1 "* ]]; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  "$py" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee -a "$log"

if want tests; then
  step 75 "$py" -m pytest -q -p no:cacheprovider -m gpu tests/test_pipeline_gpu.py tests/test_ufp_gpu.py
fi
if want breakdown; then
  step 90 "$py" benchmarks/sam_breakdown.py --device "$dev" --segmenter "$vit" --batch-size "$bs" \
    --frames "$bs" --profile "${bf16[@]}" "${sam_extra[@]}"
fi
if want sam; then  # the target path first (compile takes ~46 s on an H200), then without each lever
  sam_run compile && step 160 "$py" benchmarks/sam_throughput.py --device "$dev" --segmenter "$vit" \
    --frames "$((frames * 2))" --batch-size "$bs" "${warm[@]}" --lite-samples 0 "${compile[@]}" "${bf16[@]}" \
    "${ckpt[@]}" "${sam_extra[@]}"
  sam_run nocompile && step 60 "$py" benchmarks/sam_throughput.py --device "$dev" --segmenter "$vit" \
    --frames "$frames" --batch-size "$bs" "${warm[@]}" --lite-samples 0 "${ckpt[@]}" "${sam_extra[@]}"
  sam_run fp32 && step 55 "$py" benchmarks/sam_throughput.py --device "$dev" --segmenter "$vit" \
    --frames "$frames" --batch-size "$bs" "${warm[@]}" --lite-samples 0 --dtype fp32 --no-sdpa "${ckpt[@]}"
fi
if want annotator; then
  frame="$out/frame_720p.jpg"  # a bundled frame at broadcast size (the wheel with zidane.jpg is not there)
  "$py" -c "import cv2, sys; f = cv2.imread('examples/aqa7_sample/diving-out/001/img_00010.jpg'); cv2.imwrite(sys.argv[1], cv2.resize(f, (1280, 720)))" "$frame"
  step 80 "$py" benchmarks/annotator_latency.py --segmenter "$vit" --device "$dev" --browser none \
    --clicks "$clicks" --frame "$frame" "${bf16[@]}" "${ckpt[@]}"
  rm -f "$frame"
fi
if want reference; then  # the public FineParser code's own evaluation and training step vs ours (#7)
  ref=.ref/FineParser_CVPR2024
  if [[ -d "$ref" ]]; then
    step "$reflimit" "$py" -W ignore benchmarks/reference_eval.py --reference-dir "$ref" --device "$dev" "${refargs[@]}"
  else
    echo "=== reference: skipped, no $ref here (python scripts/fetch_reference.py; carry it)" | tee -a "$log"
  fi
fi
if want loader; then  # the training data path on the GPU host's cores: packed cache vs JPEG decoding per pair
  step 120 "$py" benchmarks/loader_throughput.py "${loadargs[@]}"
fi
if want train; then
  step 140 "$py" benchmarks/train_throughput.py --preset "$preset" --device "$dev" "${maxb[@]}"
  [[ "${TRAIN_CUDNN:-0}" == 1 ]] && step 60 "$py" benchmarks/train_throughput.py --preset "$preset" \
    --device "$dev" --cudnn-benchmark
  [[ "${TRAIN_COMPILE:-0}" == 1 ]] && step 240 "$py" benchmarks/train_throughput.py --preset "$preset" \
    --device "$dev" --compile --queries 4
fi
echo "=== done $(date +%T); log: $log" | tee -a "$log"
