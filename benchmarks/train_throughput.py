"""Training and evaluation throughput of Uni-FineParser on synthetic tensors of the baseline's shapes.

Training step = forward of 2 query/exemplar pairs (96 x 112 x 112 frames + masks for the paper
preset), all three losses, backward, optimizer step. Reports pairs/s and peak memory for batch 2
and (on CUDA) for the largest batch that fits. Evaluation = 10 exemplars per query, measured two
ways: the reference code's way (a full pair forward per (query, exemplar), 20 video encodings
per query) and ours (each video encoded once, then the regressor on all pairs).

    python benchmarks/train_throughput.py --preset tiny --device cpu
    python benchmarks/train_throughput.py --preset paper --device cuda --max-batch

The public FineParser reference figures (one H200, from the task brief) are printed beside.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from uni_fineparser.config import load_run_config
from uni_fineparser.evaluate import autocast
from uni_fineparser.model import UniFineParser, count_parameters
from uni_fineparser.train import compute_losses, make_optimizer

REFERENCE = {"ms_per_step": 288.0, "pairs_per_s": 6.95, "peak_gib": 16.5, "params_m": 51.8, "card": "1x H200"}


def synthetic_batch(cfg, b: int, device: torch.device) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Random uint8 clips, masks with a box, FineDiving-like step ids, scores."""
    m = cfg.model
    t, s = m.frames, m.size
    g = torch.Generator().manual_seed(0)
    out = {}
    for p in ("q_", "e_"):
        out[p + "video"] = torch.randint(0, 256, (b, t, s, s, 3), dtype=torch.uint8, generator=g)
        masks = torch.zeros(b, t, s, s, dtype=torch.bool)
        masks[:, :, s // 4 : 3 * s // 4, s // 3 : 2 * s // 3] = True
        out[p + "masks"] = masks
        out[p + "valid"] = torch.ones(b, t, dtype=torch.bool)
        steps = torch.zeros(b, t, dtype=torch.long)
        steps[:, t * 3 // 10 :] = 1
        steps[:, t * 7 // 10 :] = 2
        out[p + "steps"] = steps
        out[p + "score"] = torch.rand(b, generator=g) * 100
    return {k: v.to(device) for k, v in out.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS (Linux: KiB)


def time_train(cfg, model, b: int, device: torch.device, steps: int, warmup: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Seconds per optimizer step and peak memory (GiB) at batch ``b``."""
    opt = make_optimizer(model, cfg, device)
    batch = synthetic_batch(cfg, b, device)
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            tic = time.perf_counter()
        with autocast(device, cfg.train.amp):
            out = model(batch["q_video"], batch["e_video"])
        loss, _ = compute_losses(out, batch, cfg, 100.0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return (time.perf_counter() - tic) / steps, peak_gib(device)


def max_batch(cfg, model, device: torch.device) -> tuple[int, float, float]:  # type: ignore[no-untyped-def]
    """Largest batch that fits (doubling, then bisection); returns (batch, s/step, peak GiB)."""
    best, lo, hi = (2, *time_train(cfg, model, 2, device, 2, 1)), 2, None
    b = 4
    while True:
        try:
            sec, mem = time_train(cfg, model, b, device, 2, 1)
            best, lo = (b, sec, mem), b
        except torch.OutOfMemoryError:
            hi = b
        torch.cuda.empty_cache()
        if hi is None:
            b *= 2
        elif hi - lo <= 1:
            return best
        else:
            b = (lo + hi) // 2


def time_eval(cfg, model, device: torch.device, queries: int, voters: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Pairs/s of (reference: pair forward per pair, ours: encode each video once + batched regressor)."""
    model.eval()
    m = cfg.model
    g = torch.Generator().manual_seed(1)

    def clip(n: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, m.frames, m.size, m.size, 3), dtype=torch.uint8, generator=g).to(device)

    q, e = clip(1), clip(1)
    with torch.no_grad(), autocast(device, cfg.train.amp):
        model(q, e)  # warm-up
        sync(device)
        tic = time.perf_counter()
        for _ in range(queries * voters):
            model(q, e)
        sync(device)
        ref = queries * voters / (time.perf_counter() - tic)
        tic = time.perf_counter()
        for _ in range(queries):  # worst case: no exemplar shared between queries
            z = model.encode(clip(1 + voters)).z
            model.regress(z[:1].expand(voters, -1, -1), z[1:]).sum(-1)
        sync(device)
        ours = queries * voters / (time.perf_counter() - tic)
    return ref, ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", default=None, choices=["bf16", "none"], help="default: bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--voters", type=int, default=10)
    ap.add_argument("--max-batch", action="store_true", help="search the largest batch that fits (CUDA)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = args.amp or ("bf16" if device.type == "cuda" else "none")
    cfg = load_run_config(args.preset, overrides=[f"train.amp={amp}", f"train.compile={str(args.compile).lower()}"])
    torch.manual_seed(0)
    model = UniFineParser(cfg.model).to(device)
    if args.compile:
        model.compile()
    if device.type == "cuda":
        model.channels_last = True
        model.to(memory_format=torch.channels_last_3d)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    m = cfg.model
    print(
        f"device: {name}; preset {args.preset}: {m.frames}x{m.size}x{m.size} frames, amp {amp}, torch {torch.__version__}"
    )
    print(f"params: {count_parameters(model) / 1e6:.2f} M   (reference FineParser: {REFERENCE['params_m']} M)")
    sec, mem = time_train(cfg, model, 2, device, args.steps, args.warmup)
    mem_name = "peak GPU memory" if device.type == "cuda" else "peak process RSS"
    print(
        f"train, batch 2: {sec * 1e3:.1f} ms/step, {2 / sec:.2f} pairs/s, {mem_name} {mem:.2f} GiB   "
        f"(reference on {REFERENCE['card']}: {REFERENCE['ms_per_step']:.0f} ms/step, {REFERENCE['pairs_per_s']} pairs/s, "
        f"{REFERENCE['peak_gib']} GiB)"
    )
    ref, ours = time_eval(cfg, model, device, args.queries, args.voters)
    print(
        f"eval, {args.voters} exemplars/query: pair-forward per pair (reference way) {ref:.2f} pairs/s; "
        f"each video encoded once {ours:.2f} pairs/s; ratio {ours / ref:.2f}x"
    )
    # the open-ended batch search last: a time limit that cuts it loses nothing else
    if args.max_batch and device.type == "cuda":
        b, sec_b, mem_b = max_batch(cfg, model, device)
        print(f"train, largest batch {b}: {sec_b * 1e3:.1f} ms/step, {b / sec_b:.2f} pairs/s, peak {mem_b:.2f} GiB")
    elif args.max_batch:
        print("largest batch: only searched on CUDA")


if __name__ == "__main__":
    main()
