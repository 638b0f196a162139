"""SAM throughput: our batched segment path vs. plain ``segment_anything.SamPredictor``, same frames, same weights.

Prints frames/s of each, their ratio, and the mean mask IoU between the two paths (it must stay
>= 0.98), then the end-to-end ``build-masks`` frames/s of the lite backend on CPU.

CPU (random vit_b weights when no checkpoint is given; vit_b takes seconds per frame on a CPU):
    python benchmarks/sam_throughput.py --device cpu --segmenter sam_vit_b --frames 4 --batch-size 2
GPU (DESIGN.md §6 levers: batched encoder, bf16 weights, SDPA attention, optional torch.compile):
    python benchmarks/sam_throughput.py --device cuda --segmenter sam_vit_h --checkpoint sam_vit_h_4b8939.pth \
        --frames 64 --batch-size 8 --warmup --compile
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "aqa7_sample"


def load_frames(n: int) -> list[np.ndarray]:
    """``n`` real frames (the bundled sample, upscaled to 720p like broadcast footage) with a person box each."""
    import cv2

    keys = sorted((SAMPLE / "diving-out" / "001").glob("img_*.jpg"))
    frames = []
    for i in range(n):
        img = cv2.imread(str(keys[i % len(keys)]))[..., ::-1]
        frames.append(np.ascontiguousarray(cv2.resize(img, (1280, 720), interpolation=cv2.INTER_LINEAR)))
    return frames


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_sam(args: argparse.Namespace) -> None:
    import torch
    from segment_anything import SamPredictor

    from pipelines.segment import SamSegmenter, build_segmenter

    frames = load_frames(args.frames)
    boxes = [np.array([420.0, 120, 900, 720]) for _ in frames]  # the person in the sample clip, at 720p
    random = args.checkpoint is None
    torch.manual_seed(0)
    # one set of fp32 weights (the checkpoint, or random); ours converts its own copy (bf16 on CUDA)
    base = build_segmenter(
        args.segmenter, args.checkpoint, "cpu", random_weights=random, sdpa=False, dtype="fp32"
    ).model
    ours = SamSegmenter(
        copy.deepcopy(base),
        args.device,
        batch_size=args.batch_size,
        dtype=args.dtype,
        sdpa=not args.no_sdpa,
        compile=args.compile,
        fold_rel_pos=not args.no_fold_rel_pos,
        resize_on_device=False if args.host_resize else None,
    )
    ref_model = base
    ref = SamPredictor(ref_model.to(args.device))
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, device {args.device}"
        + (
            f" ({torch.cuda.get_device_name()})"
            if args.device.startswith("cuda")
            else f", {torch.get_num_threads()} torch threads"
        )
    )
    print(
        f"model {args.segmenter}, weights: {'RANDOM (no --checkpoint given)' if random else args.checkpoint}; "
        f"{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}; ours: batch {args.batch_size}, "
        f"dtype {ours.encoder_dtype}, sdpa {not args.no_sdpa}, compile {args.compile}, fold {not args.no_fold_rel_pos}, "
        f"resize on device {ours.resize_on_device}"
    )
    from pipelines.segment_types import Prompt

    if args.warmup or args.compile:  # compiles (never timed), and the first calls' one-time costs
        ours.predict_batch(ours.embed(frames[: args.batch_size]), [Prompt(box=boxes[0])] * args.batch_size)
        ref.set_image(frames[0])
        ref.predict(box=boxes[0], multimask_output=False)

    # ours as build-masks runs it: batch k+1 is prepared and queued before batch k's masks are
    # collected (so the host work overlaps the device's); the baseline one frame at a time
    bs = args.batch_size
    chunks = [(frames[i : i + bs], [Prompt(box=b) for b in boxes[i : i + bs]]) for i in range(0, len(frames), bs)]
    preds, ref_masks, pending = [], [], None
    sync(args.device)
    t = time.perf_counter()
    for chunk, prompts in chunks:
        wait = ours.predict_batch_async(ours.embed(chunk), prompts)
        if pending is not None:
            preds += pending()
        pending = wait
    preds += pending()
    sync(args.device)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    with torch.inference_mode():
        for f, b in zip(frames, boxes, strict=True):
            ref.set_image(f)
            m, _, _ = ref.predict(box=b, multimask_output=False)
            ref_masks.append(m[0])
    sync(args.device)
    t_ref = time.perf_counter() - t
    ious = []
    for (m, _, _), r in zip(preds, ref_masks, strict=True):
        union = np.count_nonzero(m | r)
        ious.append(np.count_nonzero(m & r) / union if union else 1.0)
    fo, fr = len(frames) / t_ours, len(frames) / t_ref
    print(f"SamPredictor, one frame at a time: {fr:.3f} frames/s ({t_ref:.1f} s)")
    print(f"hmtools SamSegmenter (batched):    {fo:.3f} frames/s ({t_ours:.1f} s)")
    print(
        f"ratio ours/baseline: {fo / fr:.2f}x; mean mask IoU ours vs baseline: {np.mean(ious):.4f} (min {np.min(ious):.4f})"
    )
    if np.mean(ious) < 0.98:
        print("FAIL: mean IoU below 0.98")
        sys.exit(1)


def bench_lite(n_samples: int) -> None:
    """End-to-end build-masks with the lite backend on the bundled sample dataset."""
    import tempfile

    from hmtools.datasets import load_dataset
    from hmtools.store import MaskStore
    from pipelines.build import build_masks
    from pipelines.config import BuildConfig, DetectConfig, SegmentConfig
    from pipelines.models import load_models

    samples = load_dataset("aqa7", SAMPLE).samples[:n_samples]
    cfg = BuildConfig(device="cpu", detect=DetectConfig(model="lite"), segment=SegmentConfig(model="lite"))
    models = load_models(cfg, "cpu")
    with tempfile.TemporaryDirectory() as tmp, MaskStore(Path(tmp) / "m.db") as store:
        s = build_masks(samples, SAMPLE, store, models, cfg, progress=False)
    h, w = 144, 176
    print(
        f"lite backend end to end (build-masks, CPU, {w}x{h} frames): {s.frames} frames of {s.built} samples "
        f"in {s.seconds:.1f} s = {s.frames / s.seconds:.1f} frames/s; {s.flagged} flagged"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--segmenter", default="sam_vit_b", choices=["sam_vit_b", "sam_vit_l", "sam_vit_h"])
    p.add_argument("--checkpoint", type=Path, default=None, help="SAM weights; random weights without it")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--no-sdpa", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--no-fold-rel-pos", action="store_true", help="global attention with a (HW, HW) bias tensor")
    p.add_argument("--host-resize", action="store_true", help="resize frames on the CPU (PIL) even on CUDA")
    p.add_argument("--warmup", action="store_true", help="one untimed batch first (use on GPU; always with --compile)")
    p.add_argument("--skip-sam", action="store_true")
    p.add_argument("--lite-samples", type=int, default=4, help="samples for the lite end-to-end figure (0: skip)")
    args = p.parse_args()
    if not args.skip_sam:
        bench_sam(args)
    if args.lite_samples:
        bench_lite(args.lite_samples)


if __name__ == "__main__":
    main()
