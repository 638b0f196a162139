"""Training and evaluation throughput of Uni-FineParser on synthetic tensors of the baseline's shapes.

Training step = forward of 2 query/exemplar pairs (96 x 112 x 112 frames + masks for the paper
preset), all three losses, backward, optimizer step. Reports pairs/s and peak memory for batch 2
and (on CUDA) for the largest batch that fits. Evaluation = 10 exemplars per query, measured two
ways: the reference code's way (a full pair forward per (query, exemplar), 20 video encodings
per query) and ours (each distinct video encoded once, in batches, then the regressor on all
pairs), with as many distinct exemplars per query as FineDiving's test split has (2.85). The
reference way runs in our precision and in fp32 (as the public code does).

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
from uni_fineparser.train import compute_losses, make_optimizer, place_model

REFERENCE = {"ms_per_step": 288.0, "pairs_per_s": 6.95, "peak_gib": 16.5, "params_m": 51.8, "card": "1x H200"}


def build_model(preset: str, device: torch.device, amp: str, compile_: bool):  # type: ignore[no-untyped-def]
    """(run config, model) as the trainer sets them up: ``preset`` 'tiny' or 'paper', ``amp`` 'bf16' or
    'none', seed 0 weights, the preset's device settings (paper: channels-last on CUDA)."""
    cfg = load_run_config(preset, overrides=[f"train.amp={amp}", f"train.compile={str(compile_).lower()}"])
    torch.manual_seed(0)
    model = UniFineParser(cfg.model)
    place_model(model, cfg.train, device)  # as hmtools train / eval: channels-last on CUDA (train.channels_last)
    if compile_:
        model.compile()
    return cfg, model


def device_name(device: torch.device) -> str:
    """The card's name, or 'CPU (N threads)'."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"


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


def eval_clips(cfg, queries: int, per_query: float, voters: int, device: torch.device):  # type: ignore[no-untyped-def]
    """Random clips for ``queries`` queries and their distinct exemplars, made on the device (data
    loading is timed on neither side), and each pair's exemplar index (pair i has query i // voters).
    ``per_query`` is the number of distinct exemplar videos per query."""
    m = cfg.model
    n_ex = max(1, round(queries * per_query))
    g = torch.Generator(device=device).manual_seed(1)
    shape = (queries + n_ex, m.frames, m.size, m.size, 3)
    videos = torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=g)
    return videos, [queries + (i * 7919) % n_ex for i in range(queries * voters)]


def time_reference_eval(model, videos, exemplar: list[int], voters: int, device, amp: str) -> float:  # type: ignore[no-untyped-def]
    """Pairs/s of the public code's way: a full pair forward per (query, exemplar), 2 encodes per pair."""
    model.eval()
    with torch.no_grad(), autocast(device, amp):
        model(videos[:1], videos[exemplar[0] : exemplar[0] + 1])  # warm-up
        sync(device)
        tic = time.perf_counter()
        for i, e in enumerate(exemplar):
            model(videos[i // voters : i // voters + 1], videos[e : e + 1])
        sync(device)
    return len(exemplar) / (time.perf_counter() - tic)


def time_our_eval(model, videos, exemplar: list[int], voters: int, batch: int, device, amp: str) -> float:  # type: ignore[no-untyped-def]
    """Pairs/s of the algorithm ``uni_fineparser.evaluate`` runs, re-enacted here with the model's own
    ``encode`` and ``regress`` on clips already on the device: every distinct video encoded once,
    ``batch`` at a time, then the regressor on all pairs at once."""
    model.eval()
    queries = len(exemplar) // voters
    with torch.no_grad(), autocast(device, amp):
        for n in {min(batch, len(videos) - i) for i in range(0, len(videos), batch)}:
            model.encode(videos[:n])  # warm-up: every chunk shape (the last may be short; cuDNN autotune per shape)
        sync(device)
        tic = time.perf_counter()
        z = torch.cat([model.encode(videos[i : i + batch]).z for i in range(0, len(videos), batch)])
        zq = z[:queries].repeat_interleave(voters, dim=0)
        model.regress(zq, z[torch.tensor(exemplar, device=device)]).sum(-1).cpu()
    return len(exemplar) / (time.perf_counter() - tic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", default=None, choices=["bf16", "none"], help="default: bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--queries", type=int, default=16)
    ap.add_argument("--voters", type=int, default=10)
    ap.add_argument(
        "--exemplars-per-query", type=float, default=2.85,
        help="distinct exemplar videos per query in the evaluation (FineDiving test: 2137 / 749); 10: none shared",
    )  # fmt: skip
    ap.add_argument("--eval-batch", type=int, default=16, help="videos per encoder call in our evaluation")
    ap.add_argument("--max-batch", action="store_true", help="search the largest batch that fits (CUDA)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="train.cudnn_benchmark: cuDNN times its algorithms")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    amp = args.amp or ("bf16" if device.type == "cuda" else "none")
    cfg, model = build_model(args.preset, device, amp, args.compile)
    name = device_name(device)
    m = cfg.model
    print(
        f"device: {name}; preset {args.preset}: {m.frames}x{m.size}x{m.size} frames, amp {amp}, torch {torch.__version__}, cudnn.benchmark {args.cudnn_benchmark}"
    )
    print(f"params: {count_parameters(model) / 1e6:.2f} M   (reference FineParser: {REFERENCE['params_m']} M)")
    sec, mem = time_train(cfg, model, 2, device, args.steps, args.warmup)
    mem_name = "peak GPU memory" if device.type == "cuda" else "peak process RSS"
    print(
        f"train, batch 2: {sec * 1e3:.1f} ms/step, {2 / sec:.2f} pairs/s, {mem_name} {mem:.2f} GiB   "
        f"(reference on {REFERENCE['card']}: {REFERENCE['ms_per_step']:.0f} ms/step, {REFERENCE['pairs_per_s']} pairs/s, "
        f"{REFERENCE['peak_gib']} GiB)"
    )
    videos, exemplar = eval_clips(cfg, args.queries, args.exemplars_per_query, args.voters, device)
    ours = time_our_eval(model, videos, exemplar, args.voters, args.eval_batch, device, amp) / args.voters
    print(
        f"eval, {args.queries} queries x {args.voters} exemplars ({args.exemplars_per_query:g} distinct exemplars "
        f"per query, FineDiving's test split): each video encoded once, batch {args.eval_batch}, amp {amp}: "
        f"{ours:.2f} queries/s"
    )
    for ref_amp in dict.fromkeys([amp, "none"]):  # the reference way in our precision, and in fp32 as the public code
        ref = time_reference_eval(model, videos, exemplar, args.voters, device, ref_amp) / args.voters
        print(
            f"  reference way (pair forward per pair), amp {ref_amp}: {ref:.2f} queries/s; ours / it = {ours / ref:.2f}x"
        )
    # the open-ended batch search last: a time limit that cuts it loses nothing else
    if args.max_batch and device.type == "cuda":
        b, sec_b, mem_b = max_batch(cfg, model, device)
        print(f"train, largest batch {b}: {sec_b * 1e3:.1f} ms/step, {b / sec_b:.2f} pairs/s, peak {mem_b:.2f} GiB")
    elif args.max_batch:
        print("largest batch: only searched on CUDA")


if __name__ == "__main__":
    main()
