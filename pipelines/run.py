"""One sample through the pipeline: frames -> people -> the judged athlete(s) -> masks -> repair -> flags.

Two streaming passes over the frames keep memory flat in the clip length: pass 1 decodes and
detects (the selection needs the whole clip's detections, a few numbers per frame); pass 2
decodes again, embeds the frames that have an athlete box, decodes all prompts of a batch at
once, repairs and flags in frame order, and keeps each mask only as RLE. Pass 2 queues the
encoder of the next batch on the device before the CPU finishes the current one, so on CUDA the
two overlap.

Per frame the result is one :class:`~hmtools.store_types.MaskWrite`: the union of the
athletes' masks, ``score`` = the lowest of their segmenter scores, ``tracks`` = one entry per
athlete (its box; its own RLE when there are two), and ``status="flagged"`` with the reasons
joined by ``"; "`` when any check failed. An unreadable frame gets the previous frame's mask
(empty when it is the first) and is flagged with the reason; a frame whose size differs from the
clip's gets an empty mask at its own size (masks are stored at their frame's resolution).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hmtools.errors import HMToolsError
from hmtools.masks import encode_rle
from hmtools.schema import Sample
from hmtools.store_types import MaskWrite
from pipelines.camera import CameraPath
from pipelines.config import BuildConfig
from pipelines.frames_in import FrameBatch, iter_frame_batches
from pipelines.prompts import athlete_prompt
from pipelines.repair import INTERPOLATED, MISSING, box_reason, fill_gaps, jump_reason
from pipelines.segment_types import Prediction, Prompt, Segmenter
from pipelines.select import Selection, select_athletes

log = logging.getLogger(__name__)
SIZE_DIFFERS = "unreadable frame: size differs from the clip"


@dataclass
class Models:
    """The loaded backends, passed in (never module globals).

    Attributes:
        detect: Frames ``[(H, W, 3) uint8 RGB]`` -> per frame ``(N, 5)`` ``[x1, y1, x2, y2, conf]``.
        segmenter: Anything with ``embed`` and ``predict_batch`` (see :class:`pipelines.segment_types.Segmenter`).
        weights: What identifies the weights (name -> sha256), part of the configuration hash.
    """

    detect: Callable[[Sequence[np.ndarray]], list[np.ndarray]]
    segmenter: Segmenter
    weights: dict[str, str] = field(default_factory=dict)


@dataclass
class _Athlete:
    """Running state of one athlete in pass 2."""

    prev_mask: np.ndarray | None = None
    prev_logits: np.ndarray | None = None
    jumps: int = 0


def detect_pass(
    sample: Sample, root: Path, models: Models, cfg: BuildConfig, hw: tuple[int, int] | None = None
) -> tuple[list[np.ndarray], list[str | None], tuple[int, int], np.ndarray | None]:
    """Pass 1: per-frame detections, unreadable-frame reasons, the frame size ``(H, W)`` and the
    camera path (``(T, 2)`` cumulative background shift, :class:`pipelines.camera.CameraPath`; ``None``
    without ``select.camera_motion``, which alone uses it).

    The clip's size is the most common size of its readable frames: frames of another size are
    unreadable for the clip (flagged). With ``hw`` unset it is taken from the first readable frame,
    and the pass runs again with the most common size when that differs (an odd first frame would
    otherwise put every other frame of the clip out). One warning per sample lists unreadable frames.
    """
    dets: list[np.ndarray] = []
    errors: list[str | None] = []
    sizes: Counter[tuple[int, int]] = Counter()
    first = hw
    camera = CameraPath() if cfg.select.camera_motion else None
    fc = cfg.frames
    for batch in iter_frame_batches(root, sample.frames, fc.batch_size, workers=fc.workers, prefetch=fc.prefetch):
        images, errs = list(batch.images), list(batch.errors)
        for j, img in enumerate(images):
            if img is None:
                continue
            sizes[img.shape[:2]] += 1
            first = first or (int(img.shape[0]), int(img.shape[1]))
            if img.shape[:2] != first:
                images[j], errs[j] = None, SIZE_DIFFERS
        found = iter(models.detect([img for img in images if img is not None]))
        batch_dets = [next(found) if img is not None else np.zeros((0, 5), np.float32) for img in images]
        if camera is not None:
            for img, d in zip(images, batch_dets, strict=True):
                camera.add(img, d)  # the background's shift, people left out
        dets += batch_dets
        errors += errs
    if first is None or not sizes:
        raise HMToolsError(
            f"none of its {len(sample.frames)} frames could be read ({_unreadable(sample.frames, errors)})"
        )
    common, n = sizes.most_common(1)[0]
    if hw is None and common != first and n > sizes[first]:
        return detect_pass(sample, root, models, cfg, (int(common[0]), int(common[1])))
    if any(e is not None for e in errors):
        n_bad = sum(e is not None for e in errors)
        log.warning(
            "sample %s: %d of %d frames unreadable (%s)",
            sample.sample_id,
            n_bad,
            len(errors),
            _unreadable(sample.frames, errors),
        )
    return dets, errors, first, None if camera is None else camera.path


def _unreadable(keys: Sequence[str], errors: Sequence[str | None]) -> str:
    """Why frames are unreadable, counted, and the first few keys: ``"2 cannot decode, 1 missing file: a, b, c"``."""
    bad = [(k, e) for k, e in zip(keys, errors, strict=True) if e is not None]
    why = ", ".join(f"{n} {r.removeprefix('unreadable frame: ')}" for r, n in Counter(e for _, e in bad).items())
    return f"{why}: " + ", ".join(k for k, _ in bad[:3]) + (", ..." if len(bad) > 3 else "")


def build_sample_masks(
    sample: Sample,
    root: Path,
    models: Models,
    cfg: BuildConfig,
    tick: Callable[[int], None] = lambda n: None,
) -> list[MaskWrite]:
    """Masks for every frame of ``sample``, in frame order.

    Args:
        sample: The sample (its ``frames`` are keys under ``root``).
        root: Dataset root.
        models: Detector and segmenter.
        cfg: The build configuration.
        tick: Called with the number of frames finished (for progress bars), after pass 2.

    Raises:
        HMToolsError: no frame of the sample can be read.
    """
    dets, errors, hw, camera = detect_pass(sample, root, models, cfg)
    sel = select_athletes(dets, hw, cfg.select, synchronized=sample.synchronized, camera=camera)
    filled = [fill_gaps(sel.boxes[k], cfg.repair.max_interp_gap) for k in range(sel.boxes.shape[0])]
    clip = _Clip(dets, errors, hw, sel, filled, [_Athlete() for _ in filled])
    seg, fc = models.segmenter, cfg.frames
    pending = None
    for batch in iter_frame_batches(root, sample.frames, fc.batch_size, workers=fc.workers, prefetch=fc.prefetch):
        jobs, handles = _embed_batch(batch.images, batch.start, clip, seg, cfg)  # queued on the device
        decoded = _decode_batch(jobs, handles, seg)  # queued behind the encoder where the segmenter can
        if pending is not None:  # the CPU finishes the previous batch while the device encodes this one
            _finish_batch(pending[0], pending[1](), clip, seg, cfg)
            tick(len(pending[0].images))
        pending = (batch, decoded)
    if pending is not None:
        _finish_batch(pending[0], pending[1](), clip, seg, cfg)
        tick(len(pending[0].images))
    return clip.writes


@dataclass
class _Clip:
    """What pass 2 knows about the sample, and what it has written so far."""

    dets: list[np.ndarray]
    errors: list[str | None]
    hw: tuple[int, int]
    sel: Selection
    filled: list[tuple[np.ndarray, np.ndarray]]
    athletes: list[_Athlete]
    writes: list[MaskWrite] = field(default_factory=list)
    carry: np.ndarray | None = None


_Job = tuple[int, int, Prompt]  # (frame, athlete, prompt)


def _embed_batch(
    images: list[np.ndarray | None], start: int, clip: _Clip, seg: Segmenter, cfg: BuildConfig
) -> tuple[list[_Job], dict[int, Any]]:
    """Prompts of a batch, and the embeddings of its frames that have one (launched, not awaited)."""
    jobs: list[_Job] = []
    for j, img in enumerate(images):
        t = start + j
        if img is None or clip.errors[t] is not None or img.shape[:2] != clip.hw:  # (a file replaced meanwhile)
            continue
        for k, (boxes, kind) in enumerate(clip.filled):
            if kind[t] != MISSING:
                own = {int(clip.sel.det_idx[k, t])} - {-1}
                jobs.append((t, k, athlete_prompt(boxes[t], clip.dets[t], own, cfg.segment)))
    frames = sorted({t for t, _, _ in jobs})
    embs = seg.embed([images[t - start] for t in frames]) if frames else []  # type: ignore[misc]
    return jobs, dict(zip(frames, embs, strict=True))


def _decode_batch(
    jobs: list[_Job], handles: dict[int, Any], seg: Segmenter
) -> Callable[[], dict[int, dict[int, tuple[Any, Prompt, Prediction]]]]:
    """First predictions of a batch, as a function that returns
    ``{frame: {athlete: (handle, prompt, prediction)}}``. A segmenter with ``predict_batch_async``
    (SAM) only queues the work here, so the caller can go on before the device has finished."""
    embs, prompts = [handles[t] for t, _, _ in jobs], [p for _, _, p in jobs]
    launch = getattr(seg, "predict_batch_async", None)
    if not jobs:
        wait: Callable[[], list[Prediction]] = list
    elif launch is not None:
        wait = launch(embs, prompts)
    else:
        preds = seg.predict_batch(embs, prompts)
        wait = lambda: preds  # noqa: E731

    def result() -> dict[int, dict[int, tuple[Any, Prompt, Prediction]]]:
        out: dict[int, dict[int, tuple[Any, Prompt, Prediction]]] = {}
        for (t, k, p), pred in zip(jobs, wait(), strict=True):
            out.setdefault(t, {})[k] = (handles[t], p, pred)
        return out

    return result


def _finish_batch(
    batch: FrameBatch,
    preds: dict[int, dict[int, tuple[Any, Prompt, Prediction]]],
    clip: _Clip,
    seg: Segmenter,
    cfg: BuildConfig,
) -> None:
    """Repair, flag and encode a batch's frames in order, appending to ``clip.writes``."""
    for j, img in enumerate(batch.images):
        t = batch.start + j
        if clip.errors[t] is not None or img is None or img.shape[:2] != clip.hw:
            hw = clip.hw if img is None else img.shape[:2]  # a frame of another size gets a mask of its size
            mask = clip.carry if clip.carry is not None and clip.carry.shape == hw else np.zeros(hw, bool)
            reason = clip.errors[t] or batch.errors[j] or SIZE_DIFFERS  # (changed since pass 1)
            clip.writes.append(
                MaskWrite(rle=encode_rle(mask), score=None, status="flagged", reason=reason, frame_idx=t)
            )
            continue
        w, clip.carry = _finish_frame(
            t, preds.get(t, {}), clip.dets[t], clip.sel, clip.filled, clip.athletes, seg, cfg, clip.hw
        )
        clip.writes.append(w)


def _finish_frame(
    t: int,
    preds: dict[int, tuple[Any, Any, Prediction]],
    dets: np.ndarray,
    sel: Selection,
    filled: list[tuple[np.ndarray, np.ndarray]],
    athletes: list[_Athlete],
    seg: Segmenter,
    cfg: BuildConfig,
    hw: tuple[int, int],
) -> tuple[MaskWrite, np.ndarray]:
    """Repair and flag one frame's athlete masks in order; returns its write and union mask."""
    union = np.zeros(hw, bool)
    reasons: list[str] = list(sel.review) if filled else ["no athlete found in the clip"]
    scores, tracks = [], []
    for k, (boxes, kind) in enumerate(filled):
        st = athletes[k]
        if k not in preds:
            reasons.append("no detection of the athlete" if len(filled) == 1 else f"no detection of athlete {k + 1}")
            continue
        handle, prompt, (mask, score, logits) = preds[k]
        jump = jump_reason(st.prev_mask, mask, cfg.repair)
        if (jump or kind[t] == INTERPOLATED) and cfg.repair.reprompt and st.prev_logits is not None:
            alt = seg.predict_batch([handle], [replace(prompt, mask_input=st.prev_logits)])[0]
            alt_jump = jump_reason(st.prev_mask, alt[0], cfg.repair)
            if alt_jump is None or (jump is not None and kind[t] == INTERPOLATED):
                (mask, score, logits), jump = alt, alt_jump
        if kind[t] == INTERPOLATED:
            reasons.append("no detection (box interpolated from neighbours)")
        if jump:
            reasons.append(jump)
        if (br := box_reason(mask, boxes[t], cfg.flags)) is not None:
            reasons.append(br)
        if score < cfg.flags.min_score:
            reasons.append("low segmenter score")
        # a jumped mask does not become the reference unless the jump lasts (a real change of shape)
        st.jumps = st.jumps + 1 if jump else 0
        if not jump or st.jumps > cfg.repair.max_jump_run:
            st.prev_mask, st.prev_logits, st.jumps = mask, logits, 0
        union |= mask
        scores.append(score)
        part = {"track": k, "bbox": [round(float(v), 1) for v in boxes[t]], "counts": None}
        if len(filled) > 1:
            part["counts"] = encode_rle(mask)["counts"]
        tracks.append(part)
    reason = "; ".join(dict.fromkeys(reasons)) or None
    write = MaskWrite(
        rle=encode_rle(union),
        source="auto",
        score=min(scores) if scores else None,
        status="flagged" if reason else "unreviewed",
        reason=reason,
        tracks=tracks or None,
        frame_idx=t,
    )
    return write, union
