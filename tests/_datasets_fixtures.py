"""Synthetic dataset trees in each dataset's real layout, for the adapter/frames tests.

The annotation structures mirror the real files (same Python types, numpy scalars/arrays where the
real pickles have them); the values are made up. The real files are never copied here.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REAL_ENV = "HMTOOLS_REAL_ANNOTATIONS"


def real_annotations_dir() -> Path | None:
    """``../shared/real_annotations`` beside the checkout (or ``$HMTOOLS_REAL_ANNOTATIONS``), if present."""
    repo = Path(__file__).resolve().parents[1]
    candidates = [Path(os.environ[REAL_ENV])] if os.environ.get(REAL_ENV) else []
    candidates += [
        repo.parent / "shared" / "real_annotations",
        repo.parent.parent / "shared" / "real_annotations",
    ]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def write_frames(folder: Path, names: list[str], real: bool = False, size: tuple[int, int] = (12, 16)) -> None:
    """Create frame files: tiny real JPEGs when ``real``, else empty-content placeholders (1 byte)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    img = np.zeros((*size, 3), np.uint8)
    for i, n in enumerate(names):
        if real:
            img[:] = (i * 7) % 256
            assert cv2.imwrite(str(folder / n), img)
        else:
            (folder / n).write_bytes(b"x")


def write_video(path: Path, n: int, size: tuple[int, int] = (24, 32)) -> None:
    """A real video (MJPG .avi, mp4v .mp4) of ``n`` frames whose gray level encodes the frame index (i * 20)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix == ".mp4" else "MJPG"))
    w = cv2.VideoWriter(str(path), fourcc, 25, (size[1], size[0]))
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((*size, 3), i * 20, np.uint8))
    w.release()


def rewrite_avi(
    src: Path, dst: Path, frame: Callable[[int, bytes], bytes], header: Callable[[bytearray], None] | None = None
) -> None:
    """Copy an OpenCV MJPG .avi with each frame chunk replaced by ``frame(i, data)`` and, with ``header``,
    the header bytes patched in place (a RIFF ``movi`` list and ``idx1`` index rebuilt to match)."""
    b = src.read_bytes()

    def chunks(off: int, end: int):
        while off + 8 <= end:
            size = struct.unpack("<I", b[off + 4 : off + 8])[0]
            yield b[off : off + 4], off, size
            off += 8 + size + (size & 1)

    out, movi, idx, i = bytearray(b[:12]), bytearray(b"movi"), bytearray(), 0
    for cid, off, size in chunks(12, len(b)):
        if cid == b"LIST" and b[off + 8 : off + 12] == b"movi":
            for c2, o2, s2 in chunks(off + 12, off + 8 + size):
                data = b[o2 + 8 : o2 + 8 + s2]
                if c2 == b"00dc":
                    data, i = frame(i, data), i + 1
                idx += c2 + struct.pack("<III", 0x10 if data else 0, len(movi), len(data))
                movi += c2 + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)
            out += b"LIST" + struct.pack("<I", len(movi)) + movi
        elif cid != b"idx1":
            out += b[off : off + 8 + size + (size & 1)]
    out += b"idx1" + struct.pack("<I", len(idx)) + idx
    out[4:8] = struct.pack("<I", len(out) - 8)
    if header is not None:
        header(out)
    dst.write_bytes(bytes(out))


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``hmtools ARGS`` through :func:`hmtools.cli.main` (the real error handling and exit codes).

    Returns:
        ``(exit_code, stdout, stderr)``.
    """
    from hmtools.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    code = e.value.code
    return (0 if code is None else int(code)), out.out, out.err


def write_mat(path: Path, key: str, rows: list[tuple[float, float, float]]) -> None:
    """A MATLAB v5 split file like AQA-7's: ``key`` -> (N, 3) float64."""
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {key: np.asarray(rows, np.float64).reshape(-1, 3)})


def dump(path: Path, obj: object, protocol: int = 3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


# ------------------------------------------------------------------------------------------ AQA-7
AQA7_TRAIN = [(1, 1, 80.5), (1, 3, 21.6), (2, 1, 14.2), (3, 2, 30.0), (4, 1, 8.0), (5, 2, 90.0), (6, 1, 70.0)]
AQA7_TEST = [(1, 2, 102.6), (2, 2, 16.87), (4, 2, 50.0), (6, 2, 99.36)]


def make_aqa7(
    root: Path,
    scale: float = 1.0,
    names: str = "split_4",
    extracted: dict[str, int] | None = None,
    videos: dict[str, int] | None = None,
) -> Path:
    """An AQA-7 root with split files and, per sample id, extracted frame folders and/or videos.

    Args:
        scale: Multiplier applied to the scores written (100 mimics the public copies).
        names: ``"split_4"`` (official names in ``Split_4/``) or ``"consolidated"`` (C3D-LSTM names).
        extracted: ``{"diving/001": n_frames}`` folders ``<class>-out/<NNN>/img_%05d.jpg`` (1-based).
        videos: ``{"diving/001": n_frames}`` real .avi files ``Actions/<class>/<NNN>.avi``.
    """
    split_dir = root / "Split_4"
    for split, rows in (("train", AQA7_TRAIN), ("test", AQA7_TEST)):
        fname = f"split_4_{split}_list.mat" if names == "split_4" else f"consolidated_{split}_list.mat"
        write_mat(split_dir / fname, f"consolidated_{split}_list", [(c, i, s * scale) for c, i, s in rows])
    for sid, n in (extracted or {}).items():
        cls, nnn = sid.split("/")
        write_frames(root / f"{cls}-out" / nnn, [f"img_{i:05d}.jpg" for i in range(1, n + 1)])
    for sid, n in (videos or {}).items():
        cls, nnn = sid.split("/")
        write_video(root / "Actions" / cls / f"{nnn}.avi", n)
    return root


# ------------------------------------------------------------------------------------- FineDiving
FD_V1 = "FINADivingWorldCup2021_Men3m_final_r1"
FD_SYNC = "FINAWorldChampionships2019_Men10mSynchronised_final_r4"
FD_ENTRIES = {
    # key: (start, end, dd, judges, action, split, labels as (id, run length) pairs)
    (FD_V1, 0): (489, 492, 3.0, [7.5, 8.0, 8.5], "207c", "train", [(2, 2), (36, 2)]),
    (FD_V1, 2): (99998, 100001, 2.0, [6.0, np.float64(6.5), 7.0], "105b", "test", [(1, 1), (13, 2), (36, 1)]),
    ("01", 1): (
        7378,
        7382,
        3.2,
        [9.5, 9.0, 9.5, 9.0, 8.5, 9.5, 8.5],
        "407c",
        "train",
        [(4, 1), (25, 3), (36, 1)],
    ),
    ("14", 55): (94829, 94831, 2.9, [np.float64(8.5)] * 7, "205b", "test", [(2, 1), (36, 2)]),
    (FD_SYNC, 1): (3095, 3098, 3.3, [7.5, 9.0, 8.0, 8.0, 8.5], "207c", "train", [(2, 2), (25, 1), (36, 1)]),
}


def _fd_score(judges: list[float], dd: float) -> float:
    s = sorted(float(j) for j in judges)
    base = sum(s[2:5]) if len(s) == 7 else sum(s) * (0.6 if len(s) == 5 else 1.0)
    return round(base * dd, 2)


def make_finediving(
    base: Path,
    frame_dir: str = "FINADiving_MTL_256s",
    ann_dir: str = "Annotations",
    skip_frames: tuple[tuple[str, int], ...] = ((FD_V1, 0),),
    fine_file: str = "dict",
) -> dict[tuple[str, int], dict]:
    """A FineDiving tree: ``base/<frame_dir>/<video>/<idx>/<%05d>.jpg`` + ``base/<ann_dir>/*.pkl``.

    Planted facts: ``(FD_V1, 0)`` has no frame folder (``skip_frames``), ``("14", 55)`` holds one frame
    fewer than annotated, ``(FD_SYNC, 1)`` has an anomalous ``steps_transit_frames`` (-1), ``("01", 1)``
    has a score that the judges do not reproduce, ``(FD_V1, 2)`` crosses 99999 -> 100000 (6-digit names)
    and index 1 of FD_V1 is absent (gap). ``fine_file``: "dict" (fine-grained pkl), "aqa" (the 5-list pkl
    only) or "none".

    Returns:
        The coarse annotation dict written.
    """
    coarse, fine, aqa = {}, {}, {}
    for key, (start, end, dd, judges, action, _split, runs) in FD_ENTRIES.items():
        score = _fd_score(judges, dd) + (1.0 if key == ("01", 1) else 0.0)
        coarse[key] = {
            "action_type": action,
            "start_frame": start,
            "end_frame": end,
            "dive_score": score,
            "difficulty": dd,
            "judge_scores": list(judges),
        }
        labels = np.concatenate([np.full(n, i, np.int64) for i, n in runs])
        steps = np.nonzero(np.diff(labels))[0].astype(np.int64)
        if key == (FD_SYNC, 1):
            steps[0] = -1
        fine[key] = {
            "action_type": action,
            "dive_score": score,
            "difficulty": dd,
            "steps_transit_frames": steps,
            "frames_labels": labels,
            "sub-action_types": {np.int64(i): f"step{i}" for i, _ in runs},
        }
        aqa[key] = [action, score, dd, steps, labels]
        if key not in skip_frames:
            n = end - start + 1 - (1 if key == ("14", 55) else 0)
            write_frames(base / frame_dir / key[0] / str(key[1]), [f"{f:05d}.jpg" for f in range(start, start + n)])
    ann = base / ann_dir
    dump(ann / "FineDiving_coarse_annotation.pkl", coarse)
    if fine_file == "dict":
        dump(ann / "FineDiving_fine-grained_annotation.pkl", fine, protocol=4)
    if fine_file in ("dict", "aqa"):
        dump(ann / "fine-grained_annotation_aqa.pkl", aqa)
    dump(ann / "Sub_action_Types_Table.pkl", {1: "Forward", 2: "Back", 13: "1.5 Soms.Pike", 36: "Entry"})
    dump(ann / "train_split.pkl", [k for k, v in FD_ENTRIES.items() if v[5] == "train"])
    dump(ann / "test_split.pkl", [k for k, v in FD_ENTRIES.items() if v[5] == "test"])
    return coarse


class Hostile:
    """Unpickling this with plain ``pickle.load`` would create ``target`` (``open(target, "w")``)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.target), "w")


def hostile_pickle(path: Path, target: Path) -> None:
    """Write a pickle at ``path`` that would create ``target`` if loaded unsafely."""
    dump(path, {("x", 0): Hostile(target)})


# ---------------------------------------------------------------------------------------- MTL-AQA
MTL_ENTRIES = {
    # key: (start, end, split); frames of video 01: 1..450, of video 02: 1..59, video 03 absent
    (1, 1): (100, 150, "train"),  # short: window 48..150
    (1, 2): (200, 420, "test"),  # long: 200..420
    (2, 5): (10, 60, "train"),  # window clamps at file 1; file 60 missing
    (3, 7): (5, 90, "test"),  # no video folder
}
MTL_JUDGES = [9.5, 9.0, 9.5, 9.0, 8.5, 9.5, 8.5]


def make_mtl_aqa(
    root: Path, layout: str = "official", ann: str = "official", ann_dir: str = "MTL-AQA_split_0_data"
) -> None:
    """An MTL-AQA tree. ``layout``: "official" (``<vid>/%06d.jpg``), "core" (``new/new_total_frames_256s/
    <vid>/%08d.jpg``) or "musdl" (``frames/<vid>_<clip>/``, 109 frames except (1, 2) with 50).
    ``ann``: which annotation dict to write ("official", "core", "musdl")."""
    data = {}
    for (vid, clip), (start, end, _) in MTL_ENTRIES.items():
        e = {
            "primary_view": 0,
            "start_frame": start,
            "end_frame": end,
            "position": 2,
            "difficulty": 3.2,
            "armstand": 0,
            "rotation_type": 2,
            "ss_no": 7,
            "tw_no": 0,
            "final_score": 88.0,
        }
        if ann in ("core", "musdl"):
            e["judge_scores"] = np.asarray(MTL_JUDGES)
        if ann == "core":
            e["dive_number"] = "407C"
        data[(vid, clip)] = e
    if ann == "core":
        data[(2, 5)]["final_score"] = 80.0  # judges do not reproduce it
    name = {
        "official": "final_annotations_dict.pkl",
        "core": "final_annotations_dict_with_dive_number.pkl",
        "musdl": "augmented_final_annotations_dict.pkl",
    }[ann]
    dump(root / ann_dir / name, data, protocol=4 if ann == "core" else 3)
    for split in ("train", "test"):
        dump(root / ann_dir / f"{split}_split_0.pkl", [k for k, v in MTL_ENTRIES.items() if v[2] == split])
    if layout == "musdl":
        for vid, clip in ((1, 1), (1, 2), (3, 7)):
            n = 50 if (vid, clip) == (1, 2) else 109
            write_frames(root / "frames" / f"{vid:02d}_{clip:02d}", [f"{i:05d}.jpg" for i in range(n)])
        return
    base, fmt = (root, "{:06d}.jpg") if layout == "official" else (root / "new" / "new_total_frames_256s", "{:08d}.jpg")
    write_frames(base / "01", [fmt.format(i) for i in range(1, 451)])
    write_frames(base / "02", [fmt.format(i) for i in range(1, 60)])
