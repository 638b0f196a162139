"""The data contract shared by every package: samples, provenance vocabularies, conventions.

Conventions (written once, here and in docs/data_format.md):

* Images are ``uint8`` arrays of shape ``(H, W, 3)`` in RGB order.
* Masks are ``bool`` arrays of shape ``(H, W)`` at the frame's resolution; on disk they are COCO
  compressed RLE (column-major, ``size == [H, W]``, ``counts`` an ASCII string).
* Boxes are ``(x1, y1, x2, y2)`` float pixels (XYXY); COCO exports convert to ``[x, y, w, h]``.
* A *frame key* is the frame file's path relative to the dataset root, with ``/`` separators.
* Frame indices are 0-based positions in a sample's ordered frame list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SOURCES = ("auto", "propagated", "human", "imported")
"""Where a stored mask came from."""

STATUSES = ("unreviewed", "flagged", "accepted", "rejected")
"""Review status of a stored mask."""

SPLITS = ("train", "test")
"""Splits the adapters produce (training code carves its own validation split from train)."""


@dataclass(frozen=True)
class Sample:
    """One judged performance (a clip) of a dataset, as an adapter describes it.

    Adapters fill this from paths and annotation files only; they never read pixels.

    Attributes:
        sample_id: Stable string id, unique within the dataset (e.g. ``"FINADivingWorldCup2021_Men3m_final_r1/0"``,
            ``"01/1"`` for MTL-AQA, ``"diving/054"`` for AQA-7).
        dataset: Adapter name: ``"finediving"``, ``"mtl-aqa"`` or ``"aqa7"``.
        frames: Ordered frame keys (paths relative to the dataset root, sorted numerically).
        split: ``"train"`` or ``"test"``.
        score: Final score on the dataset's own scale, or ``None`` where unknown.
        difficulty: Degree of difficulty (diving), else ``None``.
        action: Action/dive code (e.g. ``"407c"``), lower case, or ``None``.
        judge_scores: Individual judges' scores as stored by the dataset (may be empty).
        action_class: AQA-7 class name (``"diving"``, ``"gym_vault"``, ...), else ``None``.
        step_transitions: 0-based clip indices of the last frame before each step change
            (FineDiving), or ``None``.
        frame_labels: Per-frame step (sub-action) ids, same length as the annotated clip, or ``None``.
        video: Source video path relative to the root, for layouts that hold videos, else ``None``.
        expected_frames: Frame count the annotation implies, or ``None`` where it implies none.
        extra: Other dataset-specific labels (JSON-serialisable).
    """

    sample_id: str
    dataset: str
    frames: tuple[str, ...]
    split: str
    score: float | None = None
    difficulty: float | None = None
    action: str | None = None
    judge_scores: tuple[float, ...] = ()
    action_class: str | None = None
    step_transitions: tuple[int, ...] | None = None
    frame_labels: tuple[int, ...] | None = None
    video: str | None = None
    expected_frames: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def synchronized(self) -> bool:
        """True for synchronized diving, where both divers are the judged athletes."""
        if self.action_class in ("sync_diving_3m", "sync_diving_10m"):
            return True
        return "synchron" in self.sample_id.lower()

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (lists for tuples) used by the store and exports."""
        out: dict[str, Any] = {
            "sample_id": self.sample_id,
            "dataset": self.dataset,
            "split": self.split,
            "score": self.score,
            "difficulty": self.difficulty,
            "action": self.action,
            "judge_scores": list(self.judge_scores),
            "action_class": self.action_class,
            "step_transitions": None if self.step_transitions is None else list(self.step_transitions),
            "frame_labels": None if self.frame_labels is None else list(self.frame_labels),
            "video": self.video,
            "expected_frames": self.expected_frames,
            "extra": self.extra,
        }
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], frames: tuple[str, ...]) -> Sample:
        """Inverse of :meth:`to_json`; ``frames`` are given separately (the store keeps them in a table)."""
        st = data.get("step_transitions")
        fl = data.get("frame_labels")
        return cls(
            sample_id=data["sample_id"],
            dataset=data["dataset"],
            frames=frames,
            split=data["split"],
            score=data.get("score"),
            difficulty=data.get("difficulty"),
            action=data.get("action"),
            judge_scores=tuple(data.get("judge_scores") or ()),
            action_class=data.get("action_class"),
            step_transitions=None if st is None else tuple(st),
            frame_labels=None if fl is None else tuple(fl),
            video=data.get("video"),
            expected_frames=data.get("expected_frames"),
            extra=dict(data.get("extra") or {}),
        )


@dataclass(frozen=True)
class Problem:
    """Something wrong with a dataset that ``hmtools inspect`` reports.

    Attributes:
        sample_id: The sample concerned, or ``""`` for the dataset as a whole.
        kind: Short machine-readable kind, e.g. ``"missing_frames"``, ``"frame_count_mismatch"``.
        detail: One human-readable sentence.
    """

    sample_id: str
    kind: str
    detail: str
