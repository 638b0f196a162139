"""MTL-AQA adapter (Parmar & Morris, CVPR 2019): 1412 dives cut from 15 broadcast videos.

Frame layouts (see docs/datasets.md):

* whole-video folders (official ``frame_extractor.sh``: ``<vid:02d>/%06d.jpg``; CoRe:
  ``new_total_frames_256s/<vid:02d>/%08d.jpg``), numbered from 1 like ffmpeg. The loaders read list
  indices ``end_frame-103 .. end_frame-1`` of the sorted folder, i.e. files ``end_frame-102 .. end_frame``,
  and shift ``end_frame`` by up to 3 frames either way at train time. A sample here is the files
  ``min(start_frame, end_frame-102) - 3 .. end_frame + 3``: the loaders' 103-frame window, extended back to
  ``start_frame`` when the dive is longer, with the shift's 3 frames on each side (clamped at file 1 and at
  the video's last file); ``extra["window"]`` gives the window's positions in the sample's frames;
* MUSDL's pre-trimmed ``<vid:02d>_<clip:02d>/`` folders: a sample is every file of its folder.

Annotations: ``final_annotations_dict.pkl`` (official) or its CoRe
(``final_annotations_dict_with_dive_number.pkl``, + judge scores and dive number) / MUSDL
(``augmented_final_annotations_dict.pkl``, + judge scores) variants, with ``train_split_0.pkl`` /
``test_split_0.pkl``. By default the richest file present is read (CoRe, MUSDL, official).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from hmtools.datasets._common import (
    as_float,
    as_int,
    both_splits_problem,
    check,
    find_annotation_dir,
    first_file,
    judge_range_problem,
    list_folder,
    middle_sum,
)
from hmtools.datasets.index import DatasetIndex
from hmtools.datasets.roots import child_dirs, first_up, holds_images, up, wrong_root
from hmtools.errors import InputError
from hmtools.frames import frame_number, scan_frame_files
from hmtools.safe_pickle import load_pickle
from hmtools.schema import Problem, Sample

ANNOTATION_FILES = (
    "final_annotations_dict_with_dive_number.pkl",
    "augmented_final_annotations_dict.pkl",
    "final_annotations_dict.pkl",
)
"""Annotation dicts in order of preference (CoRe, MUSDL, official)."""
SPLITS = {"train": "train_split_0.pkl", "test": "test_split_0.pkl"}
WINDOW = 103
"""Frames the Parmar/CoRe/MUSDL loaders read per sample."""
SHIFT = 3
"""Parmar's and CoRe's train-time shift of ``end_frame`` (uniform in ``[-3, 3]``): a sample holds these
frames on both sides of its window too, so masks cover every frame those loaders read."""
FRAME_DIRS = (
    "whole_videos_frames",
    "new/new_total_frames_256s",
    "new_total_frames_256s",
    "frames",
    "data/frames",
)
ANNOTATION_DIRS = (
    "MTL-AQA_split_0_data",
    "info",
    "data/info",
    "Ready_2_Use/MTL-AQA_split_0_data",
    "MTL-AQA_dataset_release/Ready_2_Use/MTL-AQA_split_0_data",
)
_VIDEO_DIR = re.compile(r"^\d{2}$")
_CLIP_DIR = re.compile(r"^\d{2}_\d{2,}$")
EXTRA_FIELDS = ("position", "armstand", "rotation_type", "ss_no", "tw_no")

Key = tuple[int, int]


def _layout(root: Path) -> tuple[Path, str]:
    """(frame root, "video" | "clip") from the first candidate folder holding MTL-AQA frame folders;
    ``(root, "video")`` when none does."""
    return _find_layout(root) or (root, "video")


def _find_layout(root: Path) -> tuple[Path, str] | None:
    """(frame root, "video" | "clip") of the first candidate folder holding MTL-AQA frame folders, or ``None``."""
    for cand in (root, *(root / d for d in FRAME_DIRS)):
        try:
            names = [e.name for e in os.scandir(cand) if e.is_dir()]
        except OSError:
            continue
        if any(_VIDEO_DIR.match(n) for n in names):
            return cand, "video"
        if any(_CLIP_DIR.match(n) for n in names):
            return cand, "clip"
    return None


_HOLDS = (
    "the <vid>/ frame folders (whole_videos_frames/, new_total_frames_256s/ or MUSDL's frames/) or a folder "
    "above them, with MTL-AQA_split_0_data/ or info/ (train_split_0.pkl, test_split_0.pkl and an annotation "
    "dict) in it or beside it"
)


def check_root(root: Path) -> None:
    """Stop when ``root`` is one video's or one MUSDL clip's frame folder (image files, no sub-folder),
    naming the frame folder to pass instead.

    Raises:
        InputError: ``root`` is such a folder.
    """
    if not holds_images(root) or child_dirs(root):  # a dataset root never holds frames directly
        return
    name = up(root, 0).name
    kind = "one MUSDL clip folder" if _CLIP_DIR.match(name) else "one video's frame folder"
    raise wrong_root("MTL-AQA", root, f"{kind} of MTL-AQA ({name}/)", up(root, 1), _HOLDS)


def _check_found(root: Path, annotations: Path, samples: list[Sample]) -> None:
    """Stop when no frame folder is under ``root`` but one is under a folder above it (e.g. ``--root``
    is the annotation folder)."""
    if not samples or any(s.frames for s in samples) or _find_layout(root) is not None:
        return
    found = first_up(root, lambda a: _find_layout(a) is not None)
    if found is not None:
        same = up(root, 0) == Path(os.path.normpath(annotations.absolute()))
        kind = "the annotation folder" if same else "a folder inside the dataset"
        raise wrong_root("MTL-AQA", root, f"{kind} of MTL-AQA (no frame folder under it)", found, _HOLDS)


def _read_keys(path: Path) -> list[Key]:
    data = load_pickle(path)
    check(isinstance(data, (list, tuple)), path, "expected a list of (video_id, clip_id) tuples")
    out = []
    for k in data:
        check(
            isinstance(k, (tuple, list)) and len(k) == 2,
            path,
            f"split entries must be (video_id, clip_id), found {k!r}",
        )
        out.append((as_int(k[0], path, f"video id in {k!r}"), as_int(k[1], path, f"clip id in {k!r}")))
    return out


class _Videos:
    """Whole-video frame folders, each listed once: frame number -> file name.

    Only the latest video's listing is kept: samples come sorted by (video, clip), and the 15 real
    videos hold 2.36 M frames (~300 MB of listings if all were kept).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[int, dict[int, str] | None] = {}
        self.zero_based: set[int] = set()

    def numbers(self, vid: int) -> dict[int, str] | None:
        if vid not in self.cache:
            self.cache.clear()
            try:
                names, _ = scan_frame_files(self.root / f"{vid:02d}", check_empty=False)
                files = {n: name for name in names if (n := frame_number(name)) is not None}
                if 0 in files:  # extracted with -start_number 0: the loaders' list index i is file i
                    self.zero_based.add(vid)
                    files = {n + 1: name for n, name in files.items()}
                self.cache[vid] = files
            except OSError:
                self.cache[vid] = None
        return self.cache[vid]


def _window_frames(
    videos: _Videos, vid: int, sid: str, core: tuple[int, int], extra: dict[str, Any], problems: list[Problem]
) -> tuple[tuple[str, ...], int]:
    """The files of window ``core`` (first, last file number) plus :data:`SHIFT` files on each side
    (clamped at file 1 and, past ``core``'s end, at the video's last file). Records ``first_file``,
    ``last_file`` and ``window`` (``[i0, i1]``: positions of ``core``'s first and last present files in
    the returned keys) in ``extra``; returns the keys and the count the annotation implies."""
    files = videos.numbers(vid)
    first = max(1, core[0] - SHIFT)
    last = core[1] + SHIFT if not files else max(core[1], min(core[1] + SHIFT, max(files)))
    extra.update(first_file=first, last_file=last)
    if files is None:
        problems.append(
            Problem(sid, "missing_frames", f"video frame folder {vid:02d}/ missing or unreadable under {videos.root}")
        )
        return (), last - first + 1
    numbers = [n for n in range(first, last + 1) if n in files]
    inside = [i for i, n in enumerate(numbers) if core[0] <= n <= core[1]]
    if inside:
        extra["window"] = [inside[0], inside[-1]]
    keys = [f"{vid:02d}/{files[n]}" for n in numbers]
    if len(keys) != last - first + 1:
        problems.append(
            Problem(
                sid,
                "frame_count_mismatch",
                f"{vid:02d}/ holds {len(keys)} of the {last - first + 1} frames {first}..{last}",
            )
        )
    empty = [k for k in keys if os.stat(videos.root / k).st_size == 0]
    if empty:
        problems.append(Problem(sid, "unreadable_frames", f"{len(empty)} zero-byte frame files, first {empty[0]}"))
    return tuple(keys), last - first + 1


def _sample(
    key: Key,
    split: str,
    a: Any,
    path: Path,
    layout: str,
    frame_root: Path,
    videos: _Videos,
    problems: list[Problem],
) -> Sample:
    vid, clip = key
    sid = f"{vid:02d}/{clip}"
    check(isinstance(a, dict), path, f"entry {key} must be a dict")
    start = as_int(a.get("start_frame"), path, f"{key} start_frame")
    end = as_int(a.get("end_frame"), path, f"{key} end_frame")
    score = as_float(a.get("final_score"), path, f"{key} final_score")
    dd = as_float(a.get("difficulty"), path, f"{key} difficulty")
    judges = tuple(as_float(j, path, f"{key} judge_scores") for j in list(a.get("judge_scores", ())))
    extra: dict[str, Any] = {"start_frame": start, "end_frame": end}
    extra.update({f: as_int(a[f], path, f"{key} {f}") for f in EXTRA_FIELDS if f in a})
    if end < start:
        problems.append(Problem(sid, "annotation_anomaly", f"end_frame {end} before start_frame {start}"))
    rp = judge_range_problem(sid, judges)
    if rp is not None:
        problems.append(rp)
    if len(judges) == 7 and abs(middle_sum(judges, 3) * dd - score) > 0.011:
        problems.append(
            Problem(
                sid,
                "score_mismatch",
                f"judge scores {list(judges)}: middle 3 x DD = "
                f"{middle_sum(judges, 3) * dd:.2f}, the annotation says {score}",
            )
        )
    expected = None
    if layout == "video":
        core = (max(1, min(start, end - WINDOW + 1)), end)
        frames, expected = _window_frames(videos, vid, sid, core, extra, problems)
    else:
        frames, _ = list_folder(frame_root, f"{vid:02d}_{clip:02d}", sid, problems)
        if frames and len(frames) < WINDOW:
            problems.append(
                Problem(sid, "frame_count_mismatch", f"{len(frames)} frames, fewer than the {WINDOW} MUSDL reads")
            )
    dive = a.get("dive_number")
    return Sample(
        sample_id=sid,
        dataset="mtl-aqa",
        frames=frames,
        split=split,
        score=score,
        difficulty=dd,
        action=str(dive).lower() if dive is not None else None,
        judge_scores=judges,
        expected_frames=expected,
        extra=extra,
    )


def load(root: Path, annotations: Path | None = None, annotation_file: str | None = None, **_: Any) -> DatasetIndex:
    """Index MTL-AQA.

    Args:
        root: Folder of the frame folders (``<vid:02d>/`` or ``<vid:02d>_<clip:02d>/``), or a folder holding
            ``whole_videos_frames/``, ``new/new_total_frames_256s/`` or ``frames/``.
        annotations: Folder of the pickles; default: ``MTL-AQA_split_0_data``, ``info``, ``data/info`` (and
            the release's ``Ready_2_Use/...``) under the root, the root itself, or ``info`` one or two levels up.
        annotation_file: One of :data:`ANNOTATION_FILES` to read instead of the richest one present.

    Returns:
        DatasetIndex whose ``root`` is the frame folder; ids ``"<vid:02d>/<clip>"``, sorted.

    Raises:
        InputError: ``root`` is one video's frame folder (:func:`check_root`) or a folder inside the dataset
            whose frames lie above it, annotation files not found, or ``annotation_file`` unknown/absent.
        DataFormatError: a pickle is malformed or hostile.
    """
    check_root(root)
    # beside the frame folder too: <root>/whole_videos_frames + <root>/MTL-AQA_split_0_data, --root the former
    cands = [root / d for d in ANNOTATION_DIRS] + [root]
    cands += [up(root, n) / d for n in (1, 2) for d in ANNOTATION_DIRS]
    folder = find_annotation_dir("mtl-aqa", annotations, cands, [ANNOTATION_FILES, [SPLITS["train"]], [SPLITS["test"]]])
    if annotation_file is not None and annotation_file not in ANNOTATION_FILES:
        raise InputError(f"annotation_file must be one of {', '.join(ANNOTATION_FILES)}, got {annotation_file!r}")
    path = first_file(folder, [annotation_file] if annotation_file else ANNOTATION_FILES)
    if path is None:
        raise InputError(f"{folder / str(annotation_file)} not found")
    data = load_pickle(path)
    check(
        isinstance(data, dict) and len(data) > 0,
        path,
        "expected a non-empty dict keyed by (video_id, clip_id)",
    )
    ann: dict[Key, Any] = {}
    for k, v in data.items():
        check(isinstance(k, tuple) and len(k) == 2, path, f"keys must be (video_id, clip_id), found {k!r}")
        ann[(as_int(k[0], path, f"video id in {k!r}"), as_int(k[1], path, f"clip id in {k!r}"))] = v
    split_of: dict[Key, str] = {}
    in_both: set[Key] = set()
    for split, name in SPLITS.items():
        for k in _read_keys(folder / name):
            if split_of.setdefault(k, split) != split:
                in_both.add(k)
    frame_root, layout = _layout(root)
    notes = [
        f"annotations read from {path}",
        f"frame layout: {'per-video folders' if layout == 'video' else 'MUSDL per-clip folders'} under {frame_root}",
    ]
    problems: list[Problem] = [both_splits_problem(f"{k[0]:02d}/{k[1]}") for k in sorted(in_both)]
    videos = _Videos(frame_root)
    samples = []
    for key in sorted(ann):
        if key not in split_of:
            problems.append(
                Problem(
                    f"{key[0]:02d}/{key[1]}",
                    "annotation_anomaly",
                    "annotated but in neither split file; skipped",
                )
            )
            continue
        samples.append(_sample(key, split_of[key], ann[key], path, layout, frame_root, videos, problems))
    for key in sorted(set(split_of) - set(ann)):
        problems.append(
            Problem(f"{key[0]:02d}/{key[1]}", "annotation_anomaly", "in a split file but not annotated; skipped")
        )
    if videos.zero_based:
        zb = ", ".join(f"{v:02d}/" for v in sorted(videos.zero_based))
        notes.append(f"{zb} numbered from 0: annotation frame i is taken as file i-1 (the loaders' list index)")
    samples.sort(key=lambda s: s.sample_id)
    _check_found(root, folder, samples)
    return DatasetIndex("mtl-aqa", frame_root, folder, samples, problems, notes)
