"""Where the time of the SAM segment path goes, and what the global-attention variants cost.

1. Per batch of frames (our ``SamSegmenter``): host preparation + upload, the image encoder, the
   prompt/mask decoder with the masks' copy to the host; each timed with a device sync around it.
2. One global-attention block of the encoder at the batch size (B, heads, 64*64 tokens, head dim),
   and one batch of windowed blocks: the relative-position bias materialised as an additive mask
   (what ``pipelines.sam_speed`` does for windowed blocks, and for global ones with
   ``fold_rel_pos=False``), the same logits from the bias folded into wider q/k vectors (no bias
   tensor; the default for global blocks), and plain SDPA without any bias (a lower bound, not
   SAM's maths).
3. With ``--profile``: the CUDA kernels of one encoder batch, by total time.

    PYTHONPATH=. python benchmarks/sam_breakdown.py --device cuda --segmenter sam_vit_h --compile --profile
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks.sam_throughput import load_frames
from pipelines.sam_speed import _rel_terms, folded_rel_pos_attention
from pipelines.segment import SamSegmenter, build_segmenter
from pipelines.segment_types import Prompt


def timed(fn: Callable[[], object], device: torch.device, reps: int = 3) -> float:
    """Median seconds of ``fn`` over ``reps`` runs, each between two device syncs."""
    out = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return sorted(out)[len(out) // 2]


def stages(seg: SamSegmenter, frames: list, device: torch.device) -> None:
    bs = seg.batch.value
    chunk = frames[:bs]
    box = [Prompt(box=torch.tensor([420.0, 120, 900, 720]).numpy()) for _ in chunk]
    seg.embed(chunk)  # warm-up (compiles)
    total = timed(lambda: seg.predict_batch(seg.embed(chunk), box), device)
    embed = timed(lambda: seg.embed(chunk), device)
    embs = seg.embed(chunk)
    x = torch.zeros((bs, 3, seg.img_size, seg.img_size), dtype=seg.encoder_dtype, device=device)
    with torch.inference_mode():
        enc = timed(lambda: seg._encoder(x), device)
    dec = timed(lambda: seg.predict_batch(embs, box), device)
    per = 1000 / bs
    print(
        f"batch {bs}, ms/frame, each timed alone: embed+decode {total * per:.2f} ({bs / total:.1f} frames/s); "
        f"embed {embed * per:.2f}; encoder on a ready input {enc * per:.2f}; decode+masks to host {dec * per:.2f}"
    )


def attention(device: torch.device, dtype: torch.dtype, b: int, heads: int, side: int, hd: int) -> None:
    g = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(b, heads, side * side, hd, device=device, dtype=dtype, generator=g) for _ in range(3))
    rel_h_w = torch.randn(2 * side - 1, hd, device=device, dtype=dtype, generator=g) * 0.1
    rel_w_w = torch.randn(2 * side - 1, hd, device=device, dtype=dtype, generator=g) * 0.1

    def bias_way() -> torch.Tensor:  # as sam_speed's bias-tensor path
        rel_h, rel_w = _rel_terms(q, rel_h_w, rel_w_w, side, side)
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, heads, side * side, side * side)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

    def folded_way(pad_v: bool = True) -> torch.Tensor:
        return folded_rel_pos_attention(q, k, v, rel_h_w, rel_w_w, side, side, pad_v=pad_v)

    with torch.inference_mode():
        ref, new = bias_way().float(), folded_way().float()
        err = ((ref - new).norm() / ref.norm()).item()
        t_bias = timed(bias_way, device)
        t_fold = timed(folded_way, device)
        t_narrow = timed(lambda: folded_way(False), device)
        t_none = timed(lambda: F.scaled_dot_product_attention(q, k, v), device)
    print(
        f"attention ({b}, {heads}, {side}x{side} tokens, {hd}) {dtype}: bias tensor {t_bias * 1e3:.2f} ms; "
        f"folded into q/k {t_fold * 1e3:.2f} ms (v narrow {t_narrow * 1e3:.2f} ms; rel. diff {err:.1e}); "
        f"no bias at all {t_none * 1e3:.2f} ms"
    )


def profile(seg: SamSegmenter, device: torch.device) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    x = torch.zeros((seg.batch.value, 3, seg.img_size, seg.img_size), dtype=seg.encoder_dtype, device=device)
    with torch.inference_mode(), prof(activities=[ProfilerActivity.CUDA]) as p:
        seg._encoder(x)
        torch.cuda.synchronize()
    print(p.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=70))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--segmenter", default="sam_vit_h")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-fold-rel-pos", action="store_true", help="global attention with a bias tensor (the old way)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--side", type=int, default=64, help="global attention tokens per side (64 for SAM at 1024)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    seg = build_segmenter(
        args.segmenter, None, args.device, random_weights=True, batch_size=args.batch_size,
        dtype=args.dtype, compile=args.compile, fold_rel_pos=not args.no_fold_rel_pos,
    )  # fmt: skip
    heads = seg.model.image_encoder.blocks[0].attn.num_heads
    hd = seg.model.image_encoder.blocks[0].attn.qkv.out_features // 3 // heads
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(
        f"{args.segmenter} on {name}, encoder {seg.encoder_dtype}, compile {args.compile}, fold {not args.no_fold_rel_pos}"
    )
    attention(device, seg.encoder_dtype, args.batch_size, heads, args.side, hd)  # a global block
    win = seg.model.image_encoder.blocks[0].window_size
    if win:  # a windowed block: every window of every frame is one attention batch
        attention(device, seg.encoder_dtype, args.batch_size * (-(-args.side // win)) ** 2, heads, win, hd)
    stages(seg, load_frames(args.frames), device)
    if args.profile and device.type == "cuda":
        profile(seg, device)


if __name__ == "__main__":
    main()
