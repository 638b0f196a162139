"""AQA-7 adapter (Parmar & Morris, WACV 2019): six scored action classes, Split_4 ``.mat`` lists.

Layouts read (see docs/datasets.md):

* extracted frames (CoRe's ``Seven/``): ``<root>/<class>-out/<NNN:03d>/img_%05d.jpg`` (1-based);
* raw videos (official ``AQA-7.zip``): ``<root>/Actions/<class>/<NNN:03d>.avi``; such samples get
  ``video`` set, ``frames=()`` and a ``frames_not_extracted`` problem. Extracted frames win when both exist.

Split files: ``Split_4/split_4_{train,test}_list.mat`` or ``consolidated_{train,test}_list.mat``, each a
``(N, 3)`` float array ``[class_idx 1-6, sample_idx (1-based, = NNN), final_score]`` under the key
``consolidated_train_list`` / ``consolidated_test_list``. The public C3D-LSTM copies hold scores x100;
``score_scale`` ("auto", "1" or "100") says how to read them, and auto-detection is recorded in the notes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hmtools.datasets._common import check, find_annotation_dir, first_file, list_folder
from hmtools.datasets.index import DatasetIndex
from hmtools.datasets.roots import child_dirs, first_up, up, wrong_root
from hmtools.errors import DataFormatError, InputError
from hmtools.frames import frame_number
from hmtools.schema import Problem, Sample

CLASSES = {
    1: "diving",
    2: "gym_vault",
    3: "ski_big_air",
    4: "snowboard_big_air",
    5: "sync_diving_3m",
    6: "sync_diving_10m",
    7: "trampoline",
}
"""AQA-7 class index -> folder name (trampoline is not in Split_4)."""

SCORE_RANGES = {
    "diving": (21.6, 102.6),
    "gym_vault": (12.3, 16.87),
    "ski_big_air": (8.0, 50.0),
    "snowboard_big_air": (8.0, 50.0),
    "sync_diving_3m": (46.2, 104.88),
    "sync_diving_10m": (49.8, 99.36),
}
"""Per-class (min, max) final score of Split_4 on the original scale (= CoRe ``label_ranges``)."""

SPLIT_FILES = {
    "train": ("split_4_train_list.mat", "consolidated_train_list.mat"),
    "test": ("split_4_test_list.mat", "consolidated_test_list.mat"),
}
CORE_FRAMES = 103
"""Frames CoRe-style loaders read per sample (``img_00001`` ... ``img_00103``)."""


def _read_mat(path: Path, split: str) -> np.ndarray:
    """The ``(N, 3)`` float64 split array of one ``.mat`` file (MATLAB v5 or v7.3)."""
    from scipy.io import loadmat

    want = f"consolidated_{split}_list"
    try:
        mat = {k: v for k, v in loadmat(str(path)).items() if not k.startswith("__")}
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        import h5py

        with h5py.File(path, "r") as f:
            mat = {k: np.asarray(f[k]).T for k in f.keys() if not k.startswith("#")}
    except Exception as e:  # scipy raises several types (ValueError, MatReadError, TypeError, ...)
        raise DataFormatError(f"{path}: not a readable MATLAB .mat file ({type(e).__name__}: {e})") from e
    arr = mat.get(want)
    if arr is None and len(mat) == 1:
        arr = next(iter(mat.values()))
    check(arr is not None, path, f"no variable {want!r} (found {sorted(mat)})")
    arr = np.asarray(arr)
    check(
        arr.ndim == 2 and arr.shape[1] == 3 and np.issubdtype(arr.dtype, np.number),
        path,
        f"expected an (N, 3) numeric array [class, sample, score], found shape {arr.shape} {arr.dtype}",
    )
    arr = arr.astype(np.float64)
    check(bool(np.isfinite(arr).all()), path, "non-finite values in the split array")
    check(
        bool((arr[:, :2] == np.round(arr[:, :2])).all() and (arr[:, :2] >= 1).all()),
        path,
        "class and sample indices must be positive integers",
    )
    bad = sorted({int(c) for c in arr[:, 0]} - set(CLASSES))
    check(not bad, path, f"unknown class indices {bad} (valid: 1-7)")
    return arr


def _fits(rows: np.ndarray, scale: float) -> bool:
    for idx, name in CLASSES.items():
        lo_hi = SCORE_RANGES.get(name)
        s = rows[rows[:, 0] == idx, 2] / scale
        if lo_hi is not None and s.size and not (s.min() >= 0.5 * lo_hi[0] and s.max() <= 1.5 * lo_hi[1]):
            return False
    return True


def _scale(rows: np.ndarray, option: Any, notes: list[str], problems: list[Problem]) -> float:
    """Resolve ``score_scale`` to the divisor (1 or 100), noting how it was decided."""
    opt = str(option).strip().lower()
    if opt not in ("auto", "1", "100"):
        raise InputError(f"--score-scale must be auto, 1 or 100, got {option!r}")
    fitting = [s for s in (1.0, 100.0) if _fits(rows, s)]
    if opt == "auto":
        if len(fitting) != 1:
            raise InputError(
                "cannot tell whether the AQA-7 split scores are on the original scale or x100 (per-class "
                "ranges match neither the published ranges nor x100 of them); pass --score-scale 1 or 100"
            )
        scale = fitting[0]
        how = "a x100 scale (as the public C3D-LSTM copies); divided by 100" if scale == 100 else "the original scale"
        notes.append(f"score scale auto-detected: split files hold scores on {how} (per-class ranges checked)")
        return scale
    scale = float(opt)
    notes.append(f"score scale given: split file scores divided by {opt}")
    if fitting and scale not in fitting:
        problems.append(
            Problem(
                "",
                "score_scale_suspect",
                f"--score-scale {opt} gives per-class scores outside the published ranges; "
                f"the files look like scale {int(fitting[0])}",
            )
        )
    return scale


def _numbering_problem(sid: str, rel: str, names: list[str]) -> Problem | None:
    """A ``frame_range_mismatch`` when numbers the CoRe-style loaders open by name (``img_%05d.jpg`` of
    1..103) are missing: a gap, or a folder numbered from 0. Up to the highest number present when the
    folder holds fewer than 103 files (the count is reported on its own)."""
    numbers = {n for n in map(frame_number, names) if n is not None}
    if not numbers:
        return None
    upto = CORE_FRAMES if len(names) >= CORE_FRAMES else min(max(numbers), CORE_FRAMES)
    missing = [n for n in range(1, upto + 1) if n not in numbers]
    if not missing:
        return None
    shown = ", ".join(str(n) for n in missing[:5]) + (", ..." if len(missing) > 5 else "")
    return Problem(
        sid,
        "frame_range_mismatch",
        f"{rel}/ lacks frame numbers {shown} ({len(missing)} of 1..{upto}), which CoRe-style loaders open "
        f"as img_%05d.jpg; re-extract it (hmtools extract-frames numbers from 1)",
    )


def _sample(root: Path, split: str, row: np.ndarray, scale: float, problems: list[Problem]) -> Sample:
    cls = CLASSES[int(row[0])]
    nnn = int(row[1])
    sid = f"{cls}/{nnn:03d}"
    rel = f"{cls}-out/{nnn:03d}"
    video_rel = f"Actions/{cls}/{nnn:03d}.avi"
    video = None
    if (root / rel).is_dir():
        frames, names = list_folder(root, rel, sid, problems)
        if frames and len(frames) < CORE_FRAMES:
            problems.append(
                Problem(
                    sid,
                    "frame_count_mismatch",
                    f"{rel}/ holds {len(frames)} frames, fewer than the {CORE_FRAMES} CoRe-style loaders read",
                )
            )
        gap = _numbering_problem(sid, rel, names)
        if gap is not None:
            problems.append(gap)
    elif (root / video_rel).is_file():
        frames, video = (), video_rel
        problems.append(
            Problem(
                sid,
                "frames_not_extracted",
                f"only the video {video_rel} exists; run `hmtools extract-frames --dataset aqa7 --root {root}`",
            )
        )
    else:
        frames = ()
        problems.append(Problem(sid, "missing_frames", f"neither {rel}/ nor {video_rel} found under {root}"))
    return Sample(
        sample_id=sid,
        dataset="aqa7",
        frames=frames,
        split=split,
        score=round(float(row[2]) / scale, 4),
        action_class=cls,
        video=video,
        extra={"class_idx": int(row[0]), "sample_idx": nnn, "raw_score": float(row[2])},
    )


def _has_data(folder: Path) -> bool:
    """Whether ``folder`` holds AQA-7 frames or videos (``<class>-out/`` or ``Actions/``)."""
    return (folder / "Actions").is_dir() or any((folder / f"{c}-out").is_dir() for c in CLASSES.values())


_CLASS_DIRS = {f"{c}-out" for c in CLASSES.values()}
_HOLDS = "the <class>-out/ frame folders (or Actions/) and Split_4/ (split_4_train_list.mat, split_4_test_list.mat)"


def check_root(root: Path) -> None:
    """Stop when ``root`` is a folder inside AQA-7 or just above it, naming the folder to pass.

    Recognised: one class folder (``<class>-out/`` holding ``NNN/`` frame folders), one sample's frame
    folder (``<class>-out/NNN/``), ``Actions/`` or one class's video folder, ``Split_4/``, any other
    folder whose parent or grandparent holds the dataset, and a folder holding the dataset one level
    down (CoRe's ``Seven/``; the zip's doubled ``AQA-7/`` is followed by :func:`load` instead).

    Raises:
        InputError: ``root`` is one of those (the message names the dataset root to pass).
    """
    if _has_data(root):
        return
    name, parent = up(root, 0).name, up(root, 1)
    if name in _CLASS_DIRS:
        what, fix = f"one class folder of AQA-7 ({name}/, holding the NNN/ frame folders of its samples)", parent
    elif parent.name in _CLASS_DIRS:
        what, fix = f"one sample's frame folder of AQA-7 ({parent.name}/{name}/)", up(root, 2)
    elif name == "Actions":
        what, fix = "the raw-video folder Actions/ of AQA-7", parent
    elif parent.name == "Actions":
        what, fix = f"one class's video folder of AQA-7 (Actions/{name}/)", up(root, 2)
    elif (found := first_up(root, _has_data, levels=2)) is not None:
        kind = "the Split_4/ annotation folder" if name == "Split_4" else "a folder inside the dataset"
        what, fix = f"{kind} of AQA-7", found
    else:
        inner = [d for d in child_dirs(root) if d.name != "AQA-7" and _has_data(d)]
        if not inner:
            return
        what, fix = f"a folder that holds AQA-7 in {inner[0].name}/", inner[0]
    raise wrong_root("AQA-7", root, what, fix, _HOLDS)


def load(root: Path, annotations: Path | None = None, score_scale: Any = "auto", **_: Any) -> DatasetIndex:
    """Index AQA-7 under ``root``.

    Args:
        root: Folder holding ``<class>-out/`` frame folders and/or ``Actions/<class>/*.avi``.
        annotations: Folder of the split files; default: ``root/Split_4``, ``root``, ``root/AQA-7/Split_4``.
        score_scale: ``"auto"``, ``"1"`` or ``"100"``: the factor the split files' scores are divided by.

    Returns:
        DatasetIndex with one sample per split row, id ``"<class>/<NNN:03d>"``, sorted by id.

    Raises:
        InputError: ``root`` is a folder inside AQA-7 (:func:`check_root`), no split files, bad
            ``score_scale``, or auto-detection undecided.
        DataFormatError: a split file is malformed.
    """
    check_root(root)
    folder = find_annotation_dir(
        "aqa7", annotations, [root / "Split_4", root, root / "AQA-7" / "Split_4"], list(SPLIT_FILES.values())
    )
    rows = {}
    for split, names in SPLIT_FILES.items():
        path = first_file(folder, names)
        assert path is not None  # guaranteed by find_annotation_dir
        rows[split] = _read_mat(path, split)
    notes: list[str] = [f"split files read from {folder}"]
    doubled = root / "AQA-7"  # the zip's doubled AQA-7/AQA-7/, also with --annotations elsewhere
    if (annotations is None and folder == doubled / "Split_4") or (not _has_data(root) and _has_data(doubled)):
        root = doubled
        notes.append(f"dataset found at {root}; frame keys are relative to it")
    problems: list[Problem] = []
    scale = _scale(np.concatenate(list(rows.values())), score_scale, notes, problems)
    seen: dict[str, str] = {}
    samples: list[Sample] = []
    for split, arr in rows.items():
        for row in arr:
            sid = f"{CLASSES[int(row[0])]}/{int(row[1]):03d}"
            if sid in seen:
                problems.append(
                    Problem(
                        sid,
                        "annotation_anomaly",
                        f"listed again in the {split} split (kept the {seen[sid]} row)",
                    )
                )
                continue
            seen[sid] = split
            samples.append(_sample(root, split, row, scale, problems))
    samples.sort(key=lambda s: s.sample_id)
    return DatasetIndex("aqa7", root, folder, samples, problems, notes)
