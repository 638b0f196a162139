"""The ``inspect`` report: a :class:`DatasetIndex` summarised as a stable JSON-able dict."""

from __future__ import annotations

from typing import Any

from hmtools.datasets.index import DatasetIndex


def summarize(index: DatasetIndex) -> dict[str, Any]:
    """Summarise an index.

    Returns:
        ``{"dataset", "root", "annotations", "samples", "splits": {"train": n, "test": n}, "frames_found",
        "expected_frames", "problems": [{"sample_id", "kind", "detail"}], "problem_counts": {kind: n},
        "score_range": [lo, hi] | None, "classes": {name: {"samples", "score_min", "score_max"}},
        "notes": [str]}`` (``classes`` empty for datasets without classes; ``expected_frames`` sums the
        counts the annotations imply, over the samples that imply one).
    """
    splits: dict[str, int] = {"train": 0, "test": 0}
    problem_counts: dict[str, int] = {}
    for p in index.problems:
        problem_counts[p.kind] = problem_counts.get(p.kind, 0) + 1
    classes: dict[str, dict[str, Any]] = {}
    scores = [s.score for s in index.samples if s.score is not None]
    for s in index.samples:
        splits[s.split] = splits.get(s.split, 0) + 1
        if s.action_class is not None:
            c = classes.setdefault(s.action_class, {"samples": 0, "score_min": None, "score_max": None})
            c["samples"] += 1
            if s.score is not None:
                c["score_min"] = s.score if c["score_min"] is None else min(c["score_min"], s.score)
                c["score_max"] = s.score if c["score_max"] is None else max(c["score_max"], s.score)
    return {
        "dataset": index.dataset,
        "root": str(index.root),
        "annotations": str(index.annotations),
        "samples": len(index.samples),
        "splits": dict(sorted(splits.items())),
        "frames_found": sum(len(s.frames) for s in index.samples),
        "expected_frames": sum(s.expected_frames or 0 for s in index.samples),
        "problems": [{"sample_id": p.sample_id, "kind": p.kind, "detail": p.detail} for p in index.problems],
        "problem_counts": dict(sorted(problem_counts.items())),
        "score_range": [min(scores), max(scores)] if scores else None,
        "classes": dict(sorted(classes.items())),
        "notes": list(index.notes),
    }
