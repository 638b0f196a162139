"""Atomic export output and the manifest that travels with every export.

An export is first written under a temporary name beside its destination and renamed into place
only when complete, so a crash or an error never leaves a half-written export under the final
name. Its manifest records counts, the tool version, the store's build configurations and the
SHA-256 of every file, and holds no timestamps, so the same store gives the same bytes.

Where the manifest lives:

* a single-file export ``PATH`` (COCO, YouTube-VIS, HDF5): ``PATH.manifest.json`` beside it;
* a folder export (FineParser): ``PATH/manifest.json``, plus ``PATH/SHA256SUMS`` with one
  ``<sha256>  <relative path>`` line per mask file (``sha256sum -c SHA256SUMS`` checks it).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hmtools.errors import DataFormatError, HMToolsError, InputError

MANIFEST_FORMAT = "hmtools-export-manifest"
MANIFEST_VERSION = 1
SUMS_NAME = "SHA256SUMS"
_FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def manifest_path(out: Path) -> Path:
    """Where the manifest of the export at ``out`` lives."""
    return out / "manifest.json" if out.is_dir() else out.with_name(out.name + ".manifest.json")


@contextmanager
def atomic_output(out: Path, *, folder: bool, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``out``; rename it (and its sidecar manifest) into place on success.

    Raises:
        InputError: ``out`` exists and ``overwrite`` is false, or its parent folder is missing.
    """
    if not out.parent.is_dir():
        raise InputError(f"output folder {out.parent} does not exist; create it or pick another --out")
    sidecar = out.with_name(out.name + ".manifest.json")
    if (out.exists() or sidecar.exists()) and not overwrite:
        raise InputError(f"{out} already exists; pass --overwrite to replace it or pick another --out")
    _check_replaceable(out, sidecar)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    tmp_sidecar = tmp.with_name(tmp.name + ".manifest.json")
    _remove(tmp)
    _remove(tmp_sidecar)
    if folder:
        tmp.mkdir()
    try:
        yield tmp
        # The old export is renamed aside (atomic) and deleted only once the new one is in place:
        # deleting a large folder takes long, and a crash meanwhile must not leave half of it at ``out``.
        old = [_set_aside(p) for p in (out, sidecar)]
        if not folder:
            os.replace(tmp_sidecar, sidecar)
        os.replace(tmp, out)
        for aside in old:
            if aside is not None:
                _remove(aside)
    except OSError as e:
        if e.errno not in _FULL_OR_READ_ONLY:
            raise
        raise HMToolsError(
            f"cannot write export {out}: {os.strerror(e.errno)}; nothing was written and an earlier export there is "
            "untouched: free some space or pick another --out"
        ) from e
    finally:
        _remove(tmp)
        _remove(tmp_sidecar)


def _check_replaceable(out: Path, sidecar: Path) -> None:
    """Refuse to replace anything but an earlier export: ``--overwrite`` on a frame folder, the dataset
    root or a frame would otherwise delete it. An export is known by its hmtools manifest.

    Raises:
        InputError: ``out`` or the sidecar manifest path exists and is not (part of) an hmtools export.
    """
    found = [(out, out / "manifest.json" if out.is_dir() else sidecar)] if out.exists() or out.is_symlink() else []
    if sidecar.exists() or sidecar.is_symlink():
        found.append((sidecar, sidecar))
    for path, manifest in found:
        if not _is_manifest(manifest):
            raise InputError(
                f"--out {out}: {path} exists and is not an hmtools export (no hmtools manifest {manifest}); "
                "--overwrite only replaces an earlier export: move it away or pick another --out"
            )


def _is_manifest(path: Path) -> bool:
    """Whether ``path`` is a readable hmtools export manifest."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("manifest") == MANIFEST_FORMAT
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


def _set_aside(path: Path) -> Path | None:
    """Rename an existing ``path`` to ``.NAME.old-PID`` beside it; the new name, or ``None`` if absent."""
    if not (path.exists() or path.is_symlink()):
        return None
    aside = path.with_name(f".{path.name}.old-{os.getpid()}")
    _remove(aside)
    os.replace(path, aside)
    return aside


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(tmp_out: Path, body: dict[str, Any], *, folder: bool) -> None:
    """Hash the export's files and write its manifest next to (or inside) the temporary output.

    Args:
        tmp_out: The temporary path :func:`atomic_output` yielded, with the export written.
        body: Format-specific fields: ``format``, ``counts``, ``store``, ``options``...
        folder: The export is a folder (its mask files are hashed in ``SHA256SUMS`` already).
    """
    from hmtools import __version__

    if folder:
        sums = tmp_out / SUMS_NAME
        files = {SUMS_NAME: {"sha256": sha256_file(sums), "bytes": sums.stat().st_size}}
        target = tmp_out / "manifest.json"
    else:
        files = {tmp_out_name(tmp_out): {"sha256": sha256_file(tmp_out), "bytes": tmp_out.stat().st_size}}
        target = tmp_out.with_name(tmp_out.name + ".manifest.json")
    manifest = {
        "manifest": MANIFEST_FORMAT,
        "manifest_version": MANIFEST_VERSION,
        "tool": "hmtools",
        "tool_version": __version__,
        **body,
        "files": files,
    }
    target.write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n", encoding="utf-8")


def tmp_out_name(tmp_out: Path) -> str:
    """The final file name of a temporary single-file export (``.NAME.partial-PID`` -> ``NAME``)."""
    name = tmp_out.name
    if name.startswith(".") and ".partial-" in name:
        return name[1 : name.rindex(".partial-")]
    return name


def read_manifest(path: Path) -> dict[str, Any]:
    """Load and check the manifest of the export at ``path``.

    Raises:
        DataFormatError: the manifest is missing, not JSON, or not an hmtools manifest.
    """
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise DataFormatError(f"{path} has no manifest ({mpath} missing); was it written by hmtools export?")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(f"manifest {mpath} is not valid JSON ({e}); re-export") from e
    if not isinstance(manifest, dict) or manifest.get("manifest") != MANIFEST_FORMAT:
        raise DataFormatError(f"{mpath} is not an hmtools export manifest; re-export")
    for key in ("format", "counts", "files"):
        if key not in manifest:
            raise DataFormatError(f"manifest {mpath} lacks the {key!r} field; re-export")
    return manifest


def check_files(path: Path, manifest: dict[str, Any]) -> list[str]:
    """Compare the export's files with the manifest's hashes; one line per mismatch."""
    base = path if path.is_dir() else path.parent
    problems = []
    for name, entry in sorted(manifest["files"].items()):
        target = base / name
        if not target.is_file():
            problems.append(f"{target}: listed in the manifest but missing")
        elif sha256_file(target) != entry.get("sha256"):
            problems.append(f"{target}: sha256 differs from the manifest (file changed after export)")
    return problems


def store_info(store: Any, sample_ids: list[str]) -> dict[str, Any]:
    """The store facts a manifest records: file name, schema version, the build configurations used."""
    from hmtools.store_admin import get_config
    from hmtools.store_schema import SCHEMA_VERSION

    hashes = sorted({h for sid in sample_ids if (h := store.build_config(sid)) is not None})
    return {
        "name": Path(store.path).name,
        "schema_version": SCHEMA_VERSION,
        "build_configs": {h: get_config(store, h) for h in hashes},
    }
