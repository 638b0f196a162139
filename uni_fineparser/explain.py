"""Interpretability: what the model looked at, where it put the steps, and how each step scored.

``explain_sample`` renders a PNG contact sheet for one sample:

1. 8 frames (evenly over the T sampled frames) with the mask attention ``A`` overlaid (heat
   map, upsampled to the crop) and the human mask's outline in white;
2. a timeline of the per-frame step posterior, with the predicted step boundaries (dashed)
   against the true ones (solid);
3. the per-step score contributions ``lambda_k * delta_k`` averaged over the voters, with the
   prediction and the true score.

With ``mp4`` set it also writes every sampled frame with its attention overlay as a video.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hmtools.errors import HMToolsError, InputError
from uni_fineparser.data import load_view
from uni_fineparser.evaluate import autocast, vote
from uni_fineparser.model import attention_to_frames, decode_boundaries, step_posterior
from uni_fineparser.run import OpenRun, open_run

STEP_NAMES = {3: ("take-off", "flight", "entry")}


@dataclass
class Explanation:
    """What the sheet shows, as arrays (for tests and other renderers).

    Attributes:
        frames: ``(T, S, S, 3)`` uint8 crop fed to the model.
        masks: ``(T, S, S)`` bool human masks.
        attention: ``(T, S, S)`` float mask attention in [0, 1].
        posterior: ``(T, K)`` step probabilities per frame.
        bounds_pred: ``(K-1,)`` predicted first frame of each later step.
        bounds_true: ``(K-1,)`` true boundaries, or ``None`` without labels.
        contributions: ``(K,)`` mean per-step contribution to ``y_q - y_e``, score units.
        pred: Predicted score; ``true``: the sample's score; ``voters``: exemplar ids.
    """

    frames: np.ndarray
    masks: np.ndarray
    attention: np.ndarray
    posterior: np.ndarray
    bounds_pred: np.ndarray
    bounds_true: np.ndarray | None
    contributions: np.ndarray
    pred: float
    true: float
    voters: list[str]


def explain(run: OpenRun, sample_id: str) -> Explanation:
    """Run the model on one sample and its voters.

    Raises:
        InputError: unknown sample id.
    """
    by_id = {s.sample_id: s for s in run.samples}
    if sample_id not in by_id:
        close = sorted(by_id)[:5]
        raise InputError(f"no sample {sample_id!r} in the checkpoint's dataset; e.g. {', '.join(close)}")
    sample, m = by_id[sample_id], run.cfg.model
    view = load_view(run.cache, sample, m.frames, m.size, m.num_steps, None)
    voters = run.pool.voters(sample, run.cfg.train.voters, run.cfg.train.seed)
    videos = torch.stack(
        [view["video"]] + [load_view(run.cache, e, m.frames, m.size, m.num_steps, None)["video"] for e in voters]
    )
    with torch.no_grad(), autocast(run.device, run.cfg.train.amp):
        enc = run.model.encode(videos.to(run.device))
        deltas = run.model.regress(enc.z[:1].expand(len(voters), -1, -1), enc.z[1:]).float().cpu().numpy()
    post = step_posterior(enc.attn[:1], m.frames)
    steps = view["steps"].numpy()
    k = m.num_steps
    truth = None if (steps < 0).any() else np.array([int((steps < j).sum()) for j in range(1, k)])
    preds, contrib = vote(deltas, sample, voters, run.score_scale, run.cfg.train.using_dd)
    return Explanation(
        frames=view["video"].numpy(),
        masks=view["masks"].numpy(),
        attention=attention_to_frames(enc.mask_logits[:1], m.frames, (m.size, m.size))[0].cpu().numpy(),
        posterior=post[0].cpu().numpy(),
        bounds_pred=decode_boundaries(post)[0].cpu().numpy(),
        bounds_true=truth,
        contributions=contrib,
        pred=float(preds.mean()),
        true=float(sample.score or 0.0),
        voters=[e.sample_id for e in voters],
    )


def _overlay(frame: np.ndarray, attention: np.ndarray) -> np.ndarray:
    import matplotlib

    heat = (matplotlib.colormaps["jet"](attention)[..., :3] * 255).astype(np.float32)
    return (0.55 * frame + 0.45 * heat).clip(0, 255).astype(np.uint8)


def render(ex: Explanation, out: str | Path, title: str = "") -> Path:
    """Write the contact sheet PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, k = ex.posterior.shape
    names = STEP_NAMES.get(k, tuple(f"step {i}" for i in range(k)))
    picks = np.linspace(0, t - 1, 8).astype(int)
    fig = plt.figure(figsize=(16, 7))
    grid = fig.add_gridspec(3, 8, height_ratios=[1.1, 1, 1])
    for col, i in enumerate(picks):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(_overlay(ex.frames[i], ex.attention[i]))
        if ex.masks[i].any():
            ax.contour(ex.masks[i].astype(float), levels=[0.5], colors="white", linewidths=0.8)
        ax.set_title(f"frame {i}", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    for j in range(k):
        ax.plot(ex.posterior[:, j], label=names[j])
    for b in ex.bounds_pred:
        ax.axvline(b, color="k", linestyle="--", linewidth=1)
    for b in ex.bounds_true if ex.bounds_true is not None else []:
        ax.axvline(b, color="tab:red", linewidth=1.5)
    ax.set_xlim(0, t - 1)
    ax.set_xlabel("sampled frame (dashed: predicted boundary, red: true)")
    ax.set_ylabel("step posterior")
    ax.legend(loc="upper right", fontsize=8)
    ax = fig.add_subplot(grid[2, :])
    ax.bar(
        names,
        ex.contributions,
        color=["tab:blue", "tab:orange", "tab:green", "tab:purple"][:k] * (k // 4 + 1),
    )
    ax.axhline(0, color="k", linewidth=0.5)
    ax.set_ylabel("contribution to y_q - y_e")
    ax.set_title(f"predicted {ex.pred:.2f}, true {ex.true:.2f}, {len(ex.voters)} exemplars", fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out) if Path(out).suffix else Path(out).with_name(Path(out).name + ".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")  # an earlier sheet stays until done
    try:
        fig.savefig(tmp, dpi=90, format=out.suffix[1:].lower())
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out


def write_mp4(ex: Explanation, out: str | Path, fps: int = 12) -> Path:
    """Every sampled frame with its attention overlay, upscaled 2x, as an MP4 (OpenCV ``mp4v``)."""
    from uni_fineparser.cache import import_cv2

    cv2 = import_cv2()
    s = ex.frames.shape[1] * 2
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial-{os.getpid()}.mp4")  # an earlier video stays until done
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (s, s))
    try:
        if not writer.isOpened():
            raise HMToolsError(f"cannot write {out}: OpenCV could not open an mp4v video writer there")
        try:
            for f, a in zip(ex.frames, ex.attention, strict=True):
                writer.write(cv2.resize(_overlay(f, a), (s, s))[..., ::-1].copy())
        finally:
            writer.release()
        cap = cv2.VideoCapture(str(tmp))  # the writer drops frames silently on a full disk
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        if n != len(ex.frames):
            raise HMToolsError(
                f"cannot write {out}: the video came out with {n} of {len(ex.frames)} frames (disk full?)"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


SHEET_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def explain_sample(
    checkpoint: str | Path,
    sample_id: str,
    out: str | Path,
    *,
    device: str = "auto",
    mp4: str | Path | None = None,
    **kw: Any,
) -> Explanation:
    """Load a checkpoint, explain ``sample_id`` and write the PNG (and optional MP4).

    Raises:
        InputError: ``out`` has a suffix other than .png/.jpg/.pdf/.svg, or ``mp4`` is not .mp4
            (checked before any work).
    """
    if Path(out).suffix and Path(out).suffix.lower() not in SHEET_SUFFIXES:  # no suffix: matplotlib writes PNG
        raise InputError(f"--out must end in {', '.join(SHEET_SUFFIXES)}, got {Path(out).name!r}")
    if mp4 and Path(mp4).suffix.lower() != ".mp4":
        raise InputError(f"--mp4 must end in .mp4, got {Path(mp4).name!r}")
    ex = explain(open_run(checkpoint, device=device, **kw), sample_id)
    render(ex, out, title=f"{sample_id}: {Path(checkpoint).name}")
    if mp4:
        write_mp4(ex, mp4)
    return ex
