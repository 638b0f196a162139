"""Evaluation (and training-step) throughput of the public FineParser code against ours, in one process.

The baseline is the public code itself, from a local copy given by ``--reference-dir``: its modules
built as its ``tools/builder.py:model_builder`` builds them, and its own per-query evaluation function
``tools/helper.py:network_forward_test`` (a full pair forward per (query, exemplar), with its mask
loss and metrics), fp32 as released, batch 1 as in its config (``bs_test: 1``), random weights
(speed does not depend on them). Ours is ``uni_fineparser``'s evaluation algorithm
(``train_throughput.time_our_eval``) on clips of the same shape. Both time the model work only:
the clips are on the device before the clock starts on either side.

    git clone https://github.com/PKU-ICST-MIPL/FineParser_CVPR2024 /tmp/FineParser
    pip install einops segmentation-models-pytorch   # the public code's imports (wandb is stubbed)
    python benchmarks/reference_eval.py --reference-dir /tmp/FineParser --device cuda

With ``--ref-train N`` it also times the public code's training step (``network_forward_train``, 2
pairs, Adam; its figure can be checked against the task brief's 288 ms on one H200) and ours
(``train_throughput.time_train``, batch 2), and prints that ratio too.

What the harness changes around the public code, and nothing inside it:
- ``wandb`` is replaced by an empty module when it is not installed (used only with ``wandb: True``);
- ``tools/__init__.py`` is not run (it imports the training runner and its data pipeline);
- torchvision's ``resnet34(pretrained=True)`` gets random weights instead of a download;
- ``I3D_VOS`` reads ``models/model_rgb.pth`` relative to the working directory while it is built:
  a random I3D state dict is written there in a temporary directory;
- on a machine without CUDA, ``Tensor.cuda()`` (hard-coded in the public code) returns the tensor.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from benchmarks.train_throughput import (
    REFERENCE,
    build_model,
    device_name,
    eval_clips,
    peak_gib,
    sync,
    time_our_eval,
    time_train,
)

CLIP = (96, 112, 112)  # frames, height, width of the public code's clips


class ReferenceCodeError(RuntimeError):
    """The public code could not be loaded from the given directory."""


def import_reference(ref_dir: Path) -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """Import the public code's ``models``, ``tools.helper`` and ``segmentation_models_pytorch``.

    Raises ReferenceCodeError with one line saying what is missing."""
    if not (ref_dir / "tools" / "helper.py").is_file() or not (ref_dir / "models" / "i3d_vos.py").is_file():
        raise ReferenceCodeError(
            f"--reference-dir {ref_dir}: expected a copy of the public FineParser code (tools/helper.py, "
            "models/i3d_vos.py); clone https://github.com/PKU-ICST-MIPL/FineParser_CVPR2024 and pass its folder"
        )
    if importlib.util.find_spec("wandb") is None:
        sys.modules["wandb"] = types.ModuleType("wandb")
    sys.path.insert(0, str(ref_dir))
    try:
        models = importlib.import_module("models")
        tools = types.ModuleType("tools")  # its __init__ imports the training runner, which is not needed here
        tools.__path__ = [str(ref_dir / "tools")]
        sys.modules["tools"] = tools
        helper = importlib.import_module("tools.helper")
        smp = importlib.import_module("segmentation_models_pytorch")
    except ModuleNotFoundError as exc:
        raise ReferenceCodeError(
            f"the public FineParser code imports {exc.name!r}, which is not installed; "
            "pip install einops segmentation-models-pytorch"
        ) from exc
    return models, helper, smp


@contextlib.contextmanager
def _offline_weights(models: types.ModuleType) -> Iterator[None]:
    """Build the public modules without their pretrained files: random weights throughout."""
    import torchvision

    resnet34 = torchvision.models.resnet34
    torchvision.models.resnet34 = lambda pretrained=False, **kw: resnet34(weights=None, **kw)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "models").mkdir()
        state = models.i3d.I3D(num_classes=400).state_dict()
        # the released Kinetics file also holds the classifier, which the public code deletes after loading
        state["conv3d_0c_1x1.conv3d.weight"] = torch.zeros(400, 1024, 1, 1, 1)
        state["conv3d_0c_1x1.conv3d.bias"] = torch.zeros(400)
        torch.save(state, Path(tmp) / "models" / "model_rgb.pth")
        try:
            with contextlib.chdir(tmp):
                yield
        finally:
            torchvision.models.resnet34 = resnet34


def build_reference(models: types.ModuleType, device: torch.device) -> SimpleNamespace:
    """The public code's modules with the constructor arguments of its ``model_builder``, on ``device``."""
    torch.manual_seed(0)
    with _offline_weights(models), contextlib.redirect_stdout(None):
        net = SimpleNamespace(
            base_model=models.I3D_backbone(I3D_class=400),
            psnet=models.PSNet(),
            decoder=[models.decoder_fuser(dim=64, num_heads=8, num_layers=3) for _ in range(4)],
            regressor=[models.MLP_score(in_channel=64, out_channel=1) for _ in range(3)],
            reducer1=models.C_channel(in_channel=4),
            reducer2=models.C_channel(in_channel=4),
            reducer3=models.C_channel(in_channel=4),
            segmenter=models.I3D_VOS(num_classes=400),
            video_encoder=models.VideoEncoder(),
        )
    for m in modules(net):
        m.to(device)
    return net


def modules(net: SimpleNamespace) -> list[nn.Module]:
    """Every module of the reference model."""
    out: list[nn.Module] = []
    for v in vars(net).values():
        out.extend(v if isinstance(v, list) else [v])
    return out


def reference_sample(device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    """One clip as the public data loader yields it (batch 1): normalised float video (1, 3, T, H, W),
    a 0/1 float mask (1, 1, T, H, W), step transitions (1, 2) as frame indices, and a score."""
    t, h, w = CLIP
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(1, 1, t, h, w)
    mask[..., h // 4 : 3 * h // 4, w // 3 : 2 * w // 3] = 1.0
    sample = {
        "video": torch.randn(1, 3, t, h, w, generator=g),
        "video_mask": mask,
        "transits": torch.tensor([[30.0, 66.0]]),
        "final_score": torch.rand(1, generator=g) * 100,
    }
    return {k: v.to(device) for k, v in sample.items()}


def reference_query(helper, smp, net, device: torch.device, voters: int) -> Callable[[], None]:  # type: ignore[no-untyped-def]
    """A call of the public ``network_forward_test`` for one query with ``voters`` exemplars (batch 1),
    with the model in eval mode; run it under ``torch.no_grad()``."""
    for m in modules(net):
        m.eval()
    losses = (nn.MSELoss(), nn.BCELoss(), smp.losses.FocalLoss("binary"))
    args = SimpleNamespace(voter_number=voters)
    query = reference_sample(device, 0)
    exemplars = [reference_sample(device, 1 + i) for i in range(voters)]

    def one_query() -> None:
        helper.network_forward_test(
            net.base_model, net.psnet, net.decoder, net.regressor, net.video_encoder, net.reducer3,
            net.segmenter, net.reducer1, net.reducer2, [],
            query["video"], [e["video"] for e in exemplars],
            [e["final_score"].reshape(-1, 1) for e in exemplars],
            query["video_mask"], [e["video_mask"] for e in exemplars], args,
            query["transits"] + 1, [e["transits"] + 1 for e in exemplars],
            [], [], {k: [] for k in ("iou_scores", "f1_scores", "f2_scores", "accuracy", "recall")},
            *losses, query["final_score"],
        )  # fmt: skip

    return one_query


def time_reference_eval(helper, smp, net, device: torch.device, queries: int, voters: int) -> float:  # type: ignore[no-untyped-def]
    """Queries/s of the public ``network_forward_test``: ``voters`` exemplars per query, batch 1."""
    one_query = reference_query(helper, smp, net, device, voters)
    with torch.no_grad():
        one_query()  # warm-up
        sync(device)
        tic = time.perf_counter()
        for _ in range(queries):
            one_query()
        sync(device)
    return queries / (time.perf_counter() - tic)


def count_flops(fn: Callable[[], object]) -> float:
    """Floating-point operations of one call of ``fn`` (torch's FLOP counter: matmuls and convolutions),
    under ``torch.no_grad()``."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def time_reference_train(helper, smp, net, device: torch.device, steps: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(s/step, peak GiB) of the public ``network_forward_train`` at its batch of 2 pairs, with Adam."""
    for m in modules(net):
        m.train()
    params = [p for m in modules(net) for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    args = SimpleNamespace(
        max_epoch=400, prob_tas_threshold=1.0, update_iter=2, wandb=False, print_freq=40, log_freq=10
    )
    q = [reference_sample(device, 10 + i) for i in range(2)]
    e = [reference_sample(device, 20 + i) for i in range(2)]

    def cat(samples: list[dict[str, torch.Tensor]], key: str) -> torch.Tensor:
        return torch.cat([s[key] for s in samples])

    def one_step(i: int) -> None:
        helper.network_forward_train(
            net.base_model, net.psnet, net.decoder, net.regressor, net.reducer1, net.reducer2, [],
            cat(q, "video"), cat(q, "final_score").reshape(-1, 1), cat(e, "video"),
            cat(e, "final_score").reshape(-1, 1), cat(q, "video_mask"), cat(e, "video_mask"),
            nn.MSELoss(), optimizer, True, 0, i + 1, 1000, args,
            cat(q, "transits") + 1, cat(e, "transits") + 1, nn.BCELoss(), [], [], net.reducer3,
            net.video_encoder, net.segmenter, {k: [] for k in ("iou_scores", "f1_scores", "f2_scores", "accuracy", "recall")},
            1, 1000, smp.losses.FocalLoss("binary"), None, 1000,
        )  # fmt: skip

    if device.type == "cuda":  # the peak over warm-up and timed steps, as train_throughput.time_train (ours)
        torch.cuda.reset_peak_memory_stats(device)
    one_step(0)
    one_step(1)
    sync(device)
    tic = time.perf_counter()
    for i in range(steps):
        one_step(2 + i)
    sync(device)
    return (time.perf_counter() - tic) / steps, peak_gib(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference-dir", type=Path, required=True, help="a copy of the public FineParser code")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--ref-queries", type=int, default=8, help="queries timed on the public code")
    ap.add_argument("--queries", type=int, default=16, help="queries timed on ours")
    ap.add_argument("--voters", type=int, default=10)
    ap.add_argument("--exemplars-per-query", type=float, default=2.85, help="distinct exemplars per query, ours")
    ap.add_argument("--eval-batch", type=int, default=16, help="videos per encoder call, ours")
    ap.add_argument("--amp", default=None, choices=["bf16", "none"], help="ours; default bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--ref-train", type=int, default=0, metavar="STEPS", help="also time the public training step")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--flops", action="store_true", help="also count the FLOPs of one query on each side")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type != "cuda":
        torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]  # the public code hard-codes it
    try:
        models, helper, smp = import_reference(args.reference_dir.resolve())
    except ReferenceCodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    public_train, public_eval, public_flops = run_public(models, helper, smp, device, args)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    run_ours(device, args, public_train, public_eval, public_flops)


def run_public(models, helper, smp, device: torch.device, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Time the public code: ((s/step, peak GiB) or None, queries/s, FLOPs per query or None); its
    model is freed on return."""
    net = build_reference(models, device)
    n_ref = sum(p.numel() for m in modules(net) for p in m.parameters())
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    print(f"public FineParser: {n_ref / 1e6:.2f} M parameters (task brief: {REFERENCE['params_m']} M), fp32, batch 1")
    train = None
    if args.ref_train:
        train = time_reference_train(helper, smp, net, device, args.ref_train)
        sec, mem = train
        print(
            f"public train step, 2 pairs: {sec * 1e3:.1f} ms/step, {2 / sec:.2f} pairs/s, peak {mem:.2f} GiB "
            f"(task brief, {REFERENCE['card']}: {REFERENCE['ms_per_step']:.0f} ms, {REFERENCE['peak_gib']} GiB)"
        )
    ref = time_reference_eval(helper, smp, net, device, args.ref_queries, args.voters)
    print(
        f"public eval (network_forward_test), {args.ref_queries} queries x {args.voters} exemplars: {ref:.3f} queries/s"
    )
    flops = None
    if args.flops:
        flops = count_flops(reference_query(helper, smp, net, device, args.voters))
        print(f"public eval: {flops / 1e9:.0f} GFLOP per query (torch's counter: matmuls, convolutions)")
    return train, ref, flops


def run_ours(device: torch.device, args: argparse.Namespace, public_train, public_eval: float, public_flops) -> None:  # type: ignore[no-untyped-def]
    """Time ours on the same shapes and print the ratios to the public figures."""
    amp = args.amp or ("bf16" if device.type == "cuda" else "none")
    cfg, model = build_model("paper", device, amp, False)
    if public_train is not None:
        sec, mem = time_train(cfg, model, 2, device, max(args.ref_train, 5), 3)
        mem_note = f", peak {mem:.2f} GiB vs public {public_train[1]:.2f} GiB" if device.type == "cuda" else ""
        print(f"ours, train step, 2 pairs, amp {amp}: {sec * 1e3:.1f} ms/step, {2 / sec:.2f} pairs/s{mem_note}")
        print(f"train: ours / public = {public_train[0] / sec:.1f}x (target: >= 4x)")
    videos, exemplar = eval_clips(cfg, args.queries, args.exemplars_per_query, args.voters, device)
    ours = time_our_eval(model, videos, exemplar, args.voters, args.eval_batch, device, amp) / args.voters
    print(
        f"ours, paper preset, {args.queries} queries x {args.voters} exemplars ({args.exemplars_per_query:g} distinct "
        f"per query), batch {args.eval_batch}, amp {amp}: {ours:.3f} queries/s"
    )
    print(f"eval: ours / public = {ours / public_eval:.1f}x (target: >= 10x)")
    if public_flops is not None:
        model.eval().requires_grad_(False)  # the counter's module tracker trips on parameters under no_grad
        encode = count_flops(lambda: model.encode(videos[:1]))
        with torch.no_grad():
            z = model.encode(videos[:2]).z
        regress = count_flops(
            lambda: model.regress(z[:1].expand(args.voters, -1, -1), z[1:2].expand(args.voters, -1, -1))
        )
        per_query = encode * (1 + args.exemplars_per_query) + regress
        print(
            f"ours: {encode / 1e9:.1f} GFLOP per video encode, {regress / 1e9:.2f} per {args.voters} regressions: "
            f"{per_query / 1e9:.0f} GFLOP per query; public / ours = {public_flops / per_query:.1f}x"
        )


if __name__ == "__main__":
    main()
