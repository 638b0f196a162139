"""FineDiving adapter (Xu et al., CVPR 2022): trimmed frame folders + the six annotation pickles.

Layout (see docs/datasets.md): ``<frames>/<video_name>/<idx>/<frame>.jpg`` where the frame folder is
``FINADiving_MTL_256s`` (the configs' name) or ``FineDiving`` (the release's name) and file names are the
untrimmed video's frame numbers ``start_frame`` .. ``end_frame`` (``%05d``, 6 digits above 99999).
``--root`` may be that folder or a folder holding it. A sample is every frame of its folder, sorted
numerically; the annotation implies ``end_frame - start_frame + 1`` of them.

Annotations (``Annotations/``): ``FineDiving_coarse_annotation.pkl`` (frames, score, DD, judges),
``FineDiving_fine-grained_annotation.pkl`` (step transitions, per-frame step labels; falls back to
``fine-grained_annotation_aqa.pkl``), ``Sub_action_Types_Table.pkl`` (step names), ``train_split.pkl`` /
``test_split.pkl`` (lists of ``(video_name, idx)``). All are loaded with the restricted unpickler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hmtools.datasets._common import (
    as_float,
    as_int,
    both_splits_problem,
    check,
    find_annotation_dir,
    first_file,
    int_tuple,
    judge_range_problem,
    list_folder,
    middle_sum,
)
from hmtools.datasets.index import DatasetIndex
from hmtools.datasets.roots import child_dirs, first_up, holds_images, up, wrong_root
from hmtools.frames import frame_number
from hmtools.safe_pickle import load_pickle
from hmtools.schema import Problem, Sample

COARSE = "FineDiving_coarse_annotation.pkl"
FINE = ("FineDiving_fine-grained_annotation.pkl", "fine-grained_annotation_aqa.pkl")
TABLE = "Sub_action_Types_Table.pkl"
SPLITS = {"train": "train_split.pkl", "test": "test_split.pkl"}
FRAME_DIRS = ("FINADiving_MTL_256s", "FineDiving", "Dataset/FineDiving")
"""Frame folder names looked for inside ``--root`` when ``--root`` is not the frame folder itself."""

Key = tuple[str, int]


def _key(k: Any, path: Path) -> Key:
    ok = isinstance(k, tuple) and len(k) == 2 and isinstance(k[0], str)
    check(ok, path, f"instance keys must be (video_name, idx) tuples, found {k!r}")
    return k[0], as_int(k[1], path, f"instance index of {k!r} must be an integer")


def _read_dict(path: Path) -> dict[Key, Any]:
    data = load_pickle(path)
    check(isinstance(data, dict) and len(data) > 0, path, "expected a non-empty dict keyed by (video_name, idx)")
    return {_key(k, path): v for k, v in data.items()}


def _fine_entry(v: Any, path: Path, key: Key) -> dict[str, Any]:
    """Normalise a fine-grained entry (dict form or the 5-list ``*_aqa.pkl`` form)."""
    if isinstance(v, (list, tuple)):
        check(len(v) == 5, path, f"entry {key} must be [action, score, DD, transitions, labels]")
        v = {
            "action_type": v[0],
            "dive_score": v[1],
            "difficulty": v[2],
            "steps_transit_frames": v[3],
            "frames_labels": v[4],
        }
    check(isinstance(v, dict) and "frames_labels" in v, path, f"entry {key} has no frames_labels")
    return {
        "steps": int_tuple(v.get("steps_transit_frames", ()), path, f"{key} steps_transit_frames"),
        "labels": int_tuple(v["frames_labels"], path, f"{key} frames_labels"),
        "names": {int(i): str(n) for i, n in dict(v.get("sub-action_types") or {}).items()},
        "labels_of": (str(v.get("action_type", "")).lower(), v.get("dive_score"), v.get("difficulty")),
    }


def _judge_problem(sid: str, judges: tuple[float, ...], dd: float, score: float) -> Problem | None:
    """A ``score_mismatch`` when the judges' formula does not give the stored score (2 decimals)."""
    rules = {
        7: ("middle 3 of 7 x DD", lambda: middle_sum(judges, 3) * dd),
        5: ("sum of 5 x DD x 0.6 (synchronised)", lambda: sum(judges) * dd * 0.6),
        3: ("sum of 3 x DD", lambda: sum(judges) * dd),
    }
    rule = rules.get(len(judges))
    if rule is None or abs(rule[1]() - score) <= 0.011:
        return None
    return Problem(
        sid,
        "score_mismatch",
        f"judge scores {list(judges)} give {rule[1]():.2f} by the {rule[0]} rule, the annotation says {score}",
    )


def _step_problem(sid: str, steps: tuple[int, ...], labels: tuple[int, ...], expected: int) -> Problem | None:
    if len(labels) != expected:
        return Problem(sid, "annotation_anomaly", f"{len(labels)} frame labels for a {expected}-frame clip")
    changes = tuple(int(i) for i in np.nonzero(np.diff(np.asarray(labels)))[0])
    if steps == changes:
        return None
    why = []
    if any(s < 0 or s >= len(labels) for s in steps):
        why.append("out of range")
    if list(steps) != sorted(steps):
        why.append("out of order")
    why.append(f"the frame labels change after {list(changes)}")
    return Problem(sid, "annotation_anomaly", f"steps_transit_frames {list(steps)}: {'; '.join(why)}")


def _frame_root(root: Path, videos: set[str]) -> Path:
    for cand in (root, *(root / d for d in FRAME_DIRS)):
        if cand.is_dir() and any((cand / v).is_dir() for v in videos):
            return cand
    return root


def _sample(
    root: Path,
    key: Key,
    split: str,
    c: Any,
    fine: dict[str, Any] | None,
    table: dict[int, str],
    path: Path,
    problems: list[Problem],
) -> Sample:
    sid = f"{key[0]}/{key[1]}"
    check(isinstance(c, dict), path, f"entry {key} must be a dict")
    start = as_int(c.get("start_frame"), path, f"{key} start_frame")
    end = as_int(c.get("end_frame"), path, f"{key} end_frame")
    score = as_float(c.get("dive_score"), path, f"{key} dive_score")
    dd = as_float(c.get("difficulty"), path, f"{key} difficulty")
    judges = tuple(as_float(j, path, f"{key} judge_scores") for j in c.get("judge_scores") or ())
    expected = end - start + 1
    frames, names = list_folder(root, sid, sid, problems, expected if expected > 0 else None)
    if expected <= 0:
        problems.append(Problem(sid, "annotation_anomaly", f"end_frame {end} before start_frame {start}"))
    elif len(names) == expected and (frame_number(names[0]), frame_number(names[-1])) != (start, end):
        problems.append(
            Problem(
                sid,
                "frame_range_mismatch",
                f"files run {names[0]}..{names[-1]}, the annotation says frames {start}..{end}",
            )
        )
    rp = judge_range_problem(sid, judges)
    if rp is not None:
        problems.append(rp)
    p = _judge_problem(sid, judges, dd, score)
    if p is not None:
        problems.append(p)
    extra: dict[str, Any] = {"start_frame": start, "end_frame": end}
    if fine is not None:
        p = _step_problem(sid, fine["steps"], fine["labels"], expected)
        if p is not None:
            problems.append(p)
        action, fscore, fdd = fine["labels_of"]
        if (action, fscore, fdd) != (str(c.get("action_type", "")).lower(), score, dd):
            detail = f"fine-grained file says {action} / {fscore} / DD {fdd}, coarse file {c.get('action_type')} / {score} / DD {dd}"
            problems.append(Problem(sid, "annotation_anomaly", detail))
        names_of = {**table, **fine["names"]}
        extra["sub_action_types"] = {str(i): names_of.get(i, "?") for i in sorted(set(fine["labels"]))}
    return Sample(
        sample_id=sid,
        dataset="finediving",
        frames=frames,
        split=split,
        score=score,
        difficulty=dd,
        action=str(c.get("action_type", "")).lower() or None,
        judge_scores=judges,
        step_transitions=None if fine is None else fine["steps"],
        frame_labels=None if fine is None else fine["labels"],
        expected_frames=max(expected, 0),
        extra=extra,
    )


def _read_splits(folder: Path, problems: list[Problem]) -> dict[Key, str]:
    """Split of each key; a key in both files stays in train and is reported (test data trained on)."""
    where: dict[Key, str] = {}
    for split, name in SPLITS.items():
        path = folder / name
        data = load_pickle(path)
        check(isinstance(data, (list, tuple)), path, "expected a list of (video_name, idx) tuples")
        for k in data:
            key = _key(tuple(k) if isinstance(k, list) else k, path)
            if where.setdefault(key, split) != split:
                problems.append(both_splits_problem(f"{key[0]}/{key[1]}"))
    return where


_HOLDS = (
    "the <video>/<idx>/ frame folders (FINADiving_MTL_256s/ or FineDiving/) or the folder above it, with "
    "Annotations/ (FineDiving_coarse_annotation.pkl, train_split.pkl, test_split.pkl) in it or beside it"
)


def check_root(root: Path) -> None:
    """Stop when ``root`` is one dive's frame folder (``<video>/<idx>/``: image files, no sub-folder) or
    one video folder (``<idx>/`` sub-folders of image files), naming the frame folder to pass instead.

    Raises:
        InputError: ``root`` is such a folder.
    """
    name = up(root, 0).name
    if holds_images(root) and not child_dirs(root):  # a dataset root never holds frames directly
        what, fix = f"one dive's frame folder of FineDiving (<video>/<idx>/ = {up(root, 1).name}/{name}/)", up(root, 2)
    elif any(d.name.isdigit() and holds_images(d) for d in child_dirs(root)[:8]):
        what, fix = (
            f"one video folder of FineDiving ({name}/, holding the <idx>/ frame folders of its dives)",
            up(root, 1),
        )
    else:
        return
    raise wrong_root("FineDiving", root, what, fix, _HOLDS)


def _check_found(root: Path, samples: list[Sample], videos: set[str]) -> None:
    """Stop when no sample's frame folder is under ``root`` but one is under a folder above it (e.g.
    ``--root`` is the ``Annotations/`` folder)."""
    if not samples or any(s.frames for s in samples):
        return
    some = sorted(videos)[:50]
    found = first_up(root, lambda a: any((c / v).is_dir() for c in (a, *(a / d for d in FRAME_DIRS)) for v in some))
    if found is not None:
        kind = "the Annotations/ folder" if up(root, 0).name == "Annotations" else "a folder inside the dataset"
        raise wrong_root("FineDiving", root, f"{kind} of FineDiving (no dive's frame folder under it)", found, _HOLDS)


def load(root: Path, annotations: Path | None = None, **_: Any) -> DatasetIndex:
    """Index FineDiving.

    Args:
        root: The frame folder (``FINADiving_MTL_256s`` / ``FineDiving``) or a folder that holds it.
        annotations: Folder of the pickles; default: ``Annotations/`` inside the root, the root itself,
            or ``Annotations/`` one or two levels up (the release's ``Dataset/FineDiving`` + ``Annotations``).

    Returns:
        DatasetIndex whose ``root`` is the frame folder; ids ``"<video_name>/<idx>"``, sorted.

    Raises:
        InputError: ``root`` is a video or dive folder (:func:`check_root`) or a folder inside the dataset
            whose frames lie above it, or the annotation files are not found (every folder looked at is named).
        DataFormatError: a pickle is malformed or hostile.
    """
    check_root(root)
    cands = [root / "Annotations", root, root.parent / "Annotations", root.parent.parent / "Annotations"]
    folder = find_annotation_dir("finediving", annotations, cands, [[COARSE], [SPLITS["train"]], [SPLITS["test"]]])
    coarse_path = folder / COARSE
    coarse = _read_dict(coarse_path)
    problems: list[Problem] = []
    split_of = _read_splits(folder, problems)
    fine_path = first_file(folder, FINE)
    fine = {} if fine_path is None else _read_dict(fine_path)
    table_path = first_file(folder, [TABLE])
    table = {} if table_path is None else {int(k): str(v) for k, v in dict(load_pickle(table_path)).items()}
    notes = [f"annotations read from {folder}"]
    if fine_path is None:
        notes.append("no fine-grained annotation file: samples have no step labels")
    frame_root = _frame_root(root, {k[0] for k in coarse})
    if frame_root != root:
        notes.append(f"frame folder found at {frame_root}; frame keys are relative to it")
    samples = []
    for key in sorted(coarse):
        sid = f"{key[0]}/{key[1]}"
        if key not in split_of:
            problems.append(Problem(sid, "annotation_anomaly", "annotated but in neither split file; skipped"))
            continue
        f = None if key not in fine else _fine_entry(fine[key], fine_path, key)  # type: ignore[arg-type]
        samples.append(_sample(frame_root, key, split_of[key], coarse[key], f, table, coarse_path, problems))
    for key in sorted(set(split_of) - set(coarse)):
        problems.append(
            Problem(f"{key[0]}/{key[1]}", "annotation_anomaly", "in a split file but not annotated; skipped")
        )
    samples.sort(key=lambda s: s.sample_id)
    _check_found(root, samples, {k[0] for k in coarse})
    return DatasetIndex("finediving", frame_root, folder, samples, problems, notes)
