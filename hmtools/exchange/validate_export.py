"""``hmtools validate`` for exports: manifest hashes, schema fields, RLE sizes, one mask per frame.

Each check returns human-readable problem lines; an empty list means the export is sound.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from hmtools.errors import DataFormatError, InputError
from hmtools.exchange.manifest import SUMS_NAME, check_files, manifest_path, read_manifest
from hmtools.exchange.parallel import default_workers, ordered_map
from hmtools.exchange.sink import read_image_size

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def detect_format(path: Path) -> str:
    """``coco``, ``ytvis``, ``hdf5`` or ``fineparser`` for an export at ``path``.

    Raises:
        InputError: the path is none of these.
    """
    if path.is_dir():
        return "fineparser"
    with path.open("rb") as f:
        head = f.read(8)
    if head == HDF5_SIGNATURE:
        return "hdf5"
    if manifest_path(path).is_file():
        try:
            return str(read_manifest(path)["format"])
        except DataFormatError:
            pass
    from hmtools.exchange.jsonio import top_level_keys

    try:
        keys = top_level_keys(path)
    except DataFormatError as e:
        raise InputError(f"{path} is neither a mask store nor an export hmtools can read ({e})") from e
    if "videos" in keys:
        return "ytvis"
    if "images" in keys:
        return "coco"
    raise InputError(f"{path} is a JSON file but neither COCO ('images') nor YouTube-VIS ('videos')")


def validate_export(path: Path, root: Path | None = None) -> list[str]:
    """Problems of an export, one line each (empty when sound).

    Checks the manifest (present, hashes match), the format's required fields, that every RLE
    covers its frame's size, that every frame of every exported sample has exactly one mask, and
    with ``root`` that every frame exists and has the export's size.
    """
    fmt = detect_format(path)
    problems: list[str] = []
    try:
        manifest = read_manifest(path)
        problems += check_files(path, manifest)
        if manifest["format"] != fmt:
            problems.append(f"{path}: manifest says format {manifest['format']}, the file is {fmt}")
        missing = manifest["counts"].get("frames_without_mask", 0)
        if missing and fmt == "fineparser" and root is None:  # other formats show it per sample
            problems.append(f"{path}: {missing} frames of the exported samples have no mask file (manifest)")
    except DataFormatError as e:
        problems.append(str(e))
    if fmt == "coco":
        from hmtools.exchange.validate_json import validate_coco

        problems += validate_coco(path, root, read_image_size)
    elif fmt == "ytvis":
        from hmtools.exchange.validate_json import validate_ytvis

        problems += validate_ytvis(path, root, read_image_size)
    elif fmt == "hdf5":
        problems += validate_hdf5(path, root)
    else:
        problems += validate_folder(path, root)
    return problems


def validate_hdf5(path: Path, root: Path | None) -> list[str]:
    """Problems of an HDF5 export: layout, shapes, dtypes, frames without a mask, frame sizes."""
    import h5py

    from hmtools.exchange.hdf5 import FORMAT, check_group

    problems: list[str] = []
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT or "samples" not in f:
                return [f"{path}: not an hmtools HDF5 export (format attribute {f.attrs.get('format')!r})"]
            for group_name, g in f["samples"].items():
                name = str(g.attrs.get("sample_id", group_name))
                try:
                    check_group(path, name, g)
                except DataFormatError as e:
                    problems.append(str(e))
                    continue
                height, width = int(g["masks"].attrs["height"]), int(g["masks"].shape[2])
                absent = int((g["present"][()] == 0).sum())
                if absent:
                    problems.append(f"{path}: sample {name}: {absent} of {g['masks'].shape[0]} frames have no mask")
                keys = g["frame_keys"].asstr()[()]
                if len(set(keys)) != len(keys):
                    problems.append(f"{path}: sample {name} lists a frame key twice")
                if root is not None:
                    for key in keys:
                        size = read_image_size(root / key)
                        if size != (height, width):
                            problems.append(f"{key}: export is {height}x{width}, frame under --root is {size}")
    except OSError as e:
        problems.append(f"{path}: HDF5 library cannot read it ({e})")
    return problems


def validate_folder(path: Path, root: Path | None, workers: int | None = None) -> list[str]:
    """Problems of a FineParser mask folder: SHA256SUMS, 8-bit single-channel images, sizes, coverage."""
    from hmtools.exchange.fineparser import MASK_EXTENSIONS, scan_mask_folder

    problems: list[str] = []
    sums = path / SUMS_NAME
    listed: dict[str, str] = {}
    if sums.is_file():
        for line in sums.read_text(encoding="utf-8").splitlines():
            digest, _, rel = line.partition("  ")
            listed[rel] = digest
    else:
        problems.append(f"{path}: {SUMS_NAME} missing")
    found = scan_mask_folder(path)
    on_disk = set(found.values())
    for rel in sorted(set(listed) - on_disk):
        problems.append(f"{path / rel}: listed in {SUMS_NAME} but missing")
    for rel in sorted(on_disk - set(listed)) if listed else []:
        problems.append(f"{path / rel}: mask file not in {SUMS_NAME}")

    def check(rel: str) -> list[str]:
        return _check_mask_file(path, rel, listed.get(rel), root)

    for lines in ordered_map(check, sorted(on_disk), workers or default_workers()):
        problems += lines
    if root is not None:
        problems += _uncovered_frames(path, root, set(found), MASK_EXTENSIONS)
    return problems


def _check_mask_file(path: Path, rel: str, digest: str | None, root: Path | None) -> list[str]:
    import cv2
    import numpy as np

    from hmtools.exchange.fineparser import THRESHOLD

    data = (path / rel).read_bytes()
    problems = []
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        problems.append(f"{path / rel}: sha256 differs from {SUMS_NAME}")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        return [*problems, f"{path / rel}: not a readable image"]
    if img.ndim != 2 or img.dtype != np.uint8:
        problems.append(f"{path / rel}: expected 8-bit single-channel, found {img.dtype} {img.shape}")
        return problems
    top = int(img.max())
    if 0 < top < THRESHOLD:  # a 0/1 mask: FineParser's loader (and import) read it as all background
        problems.append(f"{path / rel}: pixel values 0-{top}, none reaches {THRESHOLD}; masks must be 0/255")
    if root is not None:
        frame = _frame_for(root, rel)
        size = None if frame is None else read_image_size(frame)
        if size is None:
            problems.append(f"{path / rel}: no frame with this name under {root}")
        elif size != img.shape[:2]:
            problems.append(f"{path / rel}: mask is {img.shape[0]}x{img.shape[1]}, frame is {size[0]}x{size[1]}")
    return problems


def _frame_for(root: Path, rel: str) -> Path | None:
    """The frame a mask file mirrors: same relative path, any common image extension."""
    stem = os.path.splitext(rel)[0]
    for candidate in (rel, *(stem + ext for ext in (".jpg", ".jpeg", ".png", ".bmp"))):
        if (root / candidate).is_file():
            return root / candidate
    return None


def _uncovered_frames(path: Path, root: Path, mask_stems: set[str], exts: tuple[str, ...]) -> list[str]:
    """Frames in the mirrored folders under ``root`` that have no mask file."""
    problems = []
    folders = sorted({os.path.dirname(s) for s in mask_stems})
    for folder in folders:
        frame_dir = root / folder
        if not frame_dir.is_dir():
            continue
        for name in sorted(os.listdir(frame_dir)):
            stem, ext = os.path.splitext(name)
            key = f"{folder}/{stem}" if folder else stem
            if ext.lower() in exts and key not in mask_stems:
                problems.append(f"{frame_dir / name}: frame has no mask in {path}")
    return problems
