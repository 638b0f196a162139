"""SQL bodies of the mask store's writes (see :class:`hmtools.store.MaskStore`).

Every function here runs inside a transaction the caller opened (``MaskStore.transaction``), so
it is all-or-nothing together with the caller's audit entry. Masks arrive already encoded and
checked (:func:`hmtools.store_types.prepare_mask`), so the write lock is held only for SQL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral

from hmtools.errors import InputError, StaleVersionError
from hmtools.schema import Sample
from hmtools.store_types import PreparedMask

INSERT_MASK = (
    "INSERT INTO masks (frame_id, version, height, width, counts, area, bbox, tracks, source, score, status, "
    "reason, author, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def register_sample(c: sqlite3.Connection, s: Sample) -> bool:
    """Insert or update one sample and its frame keys; returns whether it was new.

    Raises:
        InputError: a frame key belongs to another sample, or a sample with masks would change
            its frame list.
    """
    info = json.dumps(s.to_json(), sort_keys=True)
    old = c.execute("SELECT n_frames FROM samples WHERE sample_id=?", (s.sample_id,)).fetchone()
    if old is None:
        c.execute(
            "INSERT INTO samples (sample_id, dataset, split, info, n_frames) VALUES (?,?,?,?,?)",
            (s.sample_id, s.dataset, s.split, info, len(s.frames)),
        )
    else:
        c.execute(
            "UPDATE samples SET dataset=?, split=?, info=?, n_frames=? WHERE sample_id=?",
            (s.dataset, s.split, info, len(s.frames), s.sample_id),
        )
        keys = [r[0] for r in c.execute("SELECT key FROM frames WHERE sample_id=? ORDER BY idx", (s.sample_id,))]
        if keys == list(s.frames):
            return False
        masked = c.execute(
            "SELECT COUNT(*) FROM frames WHERE sample_id=? AND head_version>0", (s.sample_id,)
        ).fetchone()[0]
        if masked:
            raise InputError(
                f"sample {s.sample_id} has masks for {len(keys)} frames but the dataset now lists "
                f"{len(s.frames)}; use a new --store for a changed dataset"
            )
        c.execute("DELETE FROM frames WHERE sample_id=?", (s.sample_id,))
    try:
        c.executemany(
            "INSERT INTO frames (sample_id, idx, key) VALUES (?,?,?)",
            [(s.sample_id, i, k) for i, k in enumerate(s.frames)],
        )
    except sqlite3.IntegrityError as e:
        raise InputError(
            f"sample {s.sample_id}: a frame key is already registered to another sample or repeated ({e})"
        ) from e
    return old is None


def insert_sample_masks(
    c: sqlite3.Connection,
    sample_id: str,
    prepared: Sequence[tuple[int, PreparedMask]],
    *,
    author: str,
    now: float,
    expected_versions: Mapping[int, int] | None,
) -> int:
    """Append ``(frame_idx, mask)`` versions to a sample's frames with two bulk statements.

    ``expected_versions`` may name frames of the sample that are not written (build-masks checks
    that no frame of the sample changed); every one of them is checked.

    Raises:
        InputError: unknown sample, a frame index out of range, a mask not at its frame's size,
            or ``expected_versions`` naming frames the sample does not have (or versions that are
            not whole numbers >= 0).
        StaleVersionError: a frame of ``expected_versions`` is at another version.
    """
    frames = {  # idx -> [frame_id, height, width, head]
        r[1]: [r[0], r[2], r[3], r[4]]
        for r in c.execute(
            "SELECT frame_id, idx, height, width, head_version FROM frames WHERE sample_id=?", (sample_id,)
        )
    }
    if not frames and c.execute("SELECT 1 FROM samples WHERE sample_id=?", (sample_id,)).fetchone() is None:
        raise InputError(f"no sample {sample_id!r} in the store; add_samples first")
    check_expected(sample_id, frames.keys(), expected_versions or {})
    for idx, version in (expected_versions or {}).items():
        if frames[idx][3] != version:
            raise StaleVersionError(
                f"sample {sample_id} frame {idx} is at version {frames[idx][3]}, not {version}: "
                "someone wrote it meanwhile; reload it and write again"
            )
    rows, touched = [], set()
    for idx, p in prepared:
        frame = None if isinstance(idx, bool) else frames.get(idx)
        if frame is None:
            raise InputError(f"sample {sample_id} has {len(frames)} frames; got a mask for frame index {idx!r}")
        check_size(frame[1], frame[2], p, f"sample {sample_id} frame {idx}")
        frame[1], frame[2], frame[3] = p.height, p.width, frame[3] + 1
        rows.append((frame[0], frame[3], *p, author, now))
        touched.add(idx)
    c.executemany(INSERT_MASK, rows)
    c.executemany(
        "UPDATE frames SET head_version=?, height=?, width=? WHERE frame_id=?",
        [(frames[i][3], frames[i][1], frames[i][2], frames[i][0]) for i in sorted(touched)],
    )
    return len(rows)


def check_expected(sample_id: str, indices: Iterable[int], expected: Mapping[int, int]) -> None:
    """Refuse ``{frame_idx: version}`` entries that could never be checked against the sample.

    A caller that names a frame believes it is compare-and-set; a frame the sample does not have
    (an index out of range, a frame key instead of an index) would otherwise be skipped silently.

    Raises:
        InputError: a key is not a frame index of the sample, or a version is not an int >= 0.
    """
    known = set(indices)
    unknown = [k for k in expected if isinstance(k, bool) or k not in known]
    if unknown:
        shown = ", ".join(repr(k) for k in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise InputError(
            f"sample {sample_id}: expected_versions names frames it does not have ({shown}); its keys are "
            f"0-based frame indices below {len(known)}, so nothing of it could be checked; nothing was written"
        )
    bad = [(k, v) for k, v in expected.items() if not _is_version(v)]
    if bad:
        raise InputError(
            f"sample {sample_id}: expected_versions must map frames to versions (whole numbers >= 0, 0 = no mask); "
            f"got frame {bad[0][0]}: {bad[0][1]!r}"
        )


def _is_version(v: object) -> bool:
    """Whether ``v`` is a whole number >= 0 and not a bool (``True`` would match version 1)."""
    return isinstance(v, Integral) and not isinstance(v, bool) and v >= 0


def check_version(where: str, version: object) -> None:
    """Refuse a compare-and-set version that is not a whole number >= 0 (``True`` would match version 1).

    Raises:
        InputError: ``version`` is a bool, not an integer, or negative.
    """
    if not _is_version(version):
        raise InputError(
            f"{where}: the expected version must be a whole number >= 0 (0 = no mask yet), the head version the "
            f"edit was based on; got {version!r}; nothing was written"
        )


def insert_frame_mask(
    c: sqlite3.Connection, frame_key: str, p: PreparedMask, *, author: str, now: float, expected_version: int
) -> tuple[int, str]:
    """Compare-and-set one frame's mask; returns ``(new version, sample_id)``.

    Raises:
        InputError: unknown frame, or a mask not at the frame's size.
        StaleVersionError: the frame's head is not ``expected_version``.
    """
    row = c.execute(
        "SELECT frame_id, head_version, height, width, sample_id FROM frames WHERE key=?", (frame_key,)
    ).fetchone()
    if row is None:
        raise InputError(f"no frame {frame_key!r} in the store")
    frame_id, head, height, width, sample_id = row
    if head != expected_version:
        last = c.execute("SELECT author FROM masks WHERE frame_id=? AND version=?", (frame_id, head)).fetchone()
        raise StaleVersionError(
            f"frame {frame_key} is at version {head} (by {last[0] if last else '?'}), not {expected_version}: "
            "reload the frame and redo the edit"
        )
    check_size(height, width, p, f"frame {frame_key}")
    c.execute(INSERT_MASK, (frame_id, head + 1, *p, author, now))
    c.execute(
        "UPDATE frames SET head_version=?, height=?, width=? WHERE frame_id=?",
        (head + 1, p.height, p.width, frame_id),
    )
    return head + 1, sample_id


def insert_status_versions(
    c: sqlite3.Connection,
    expected: Mapping[str, int],
    status: str,
    reason: str | None,
    *,
    author: str,
    now: float,
) -> tuple[dict[str, int], dict[str, int]]:
    """Copy each frame's head mask as a new version with a new status; all checked before any is written.

    Returns:
        ``{frame_key: new version}`` and ``{sample_id: number of those frames in it}``.

    Raises:
        InputError: unknown frame, or a frame without a mask.
        StaleVersionError: a frame's head is not the version the caller saw.
    """
    heads: dict[str, tuple[int, int]] = {}
    samples: dict[str, int] = {}
    for key, version in expected.items():  # nothing is inserted before every frame passed
        check_version(f"frame {key}", version)
        row = c.execute("SELECT frame_id, head_version, sample_id FROM frames WHERE key=?", (key,)).fetchone()
        if row is None:
            raise InputError(f"no frame {key!r} in the store")
        if row[1] != version:
            raise StaleVersionError(f"frame {key} is at version {row[1]}, not {version}: reload and review again")
        if row[1] == 0:
            raise InputError(f"frame {key} has no mask to review yet")
        heads[key] = (row[0], row[1])
        samples[row[2]] = samples.get(row[2], 0) + 1
    for frame_id, head in heads.values():
        c.execute(
            "INSERT INTO masks (frame_id, version, height, width, counts, area, bbox, tracks, source, score, "
            "status, reason, author, created_at) SELECT frame_id, ?, height, width, counts, area, bbox, tracks, "
            "source, score, ?, ?, ?, ? FROM masks WHERE frame_id=? AND version=?",
            (head + 1, status, reason, author, now, frame_id, head),
        )
        c.execute("UPDATE frames SET head_version=? WHERE frame_id=?", (head + 1, frame_id))
    return {key: head + 1 for key, (_, head) in heads.items()}, samples


def check_size(height: int | None, width: int | None, p: PreparedMask, where: str) -> None:
    """Raise :class:`InputError` if a frame of known size gets a mask of another size."""
    if height is not None and (height, width) != (p.height, p.width):
        raise InputError(
            f"{where} is {height}x{width} (HxW) but the mask is {p.height}x{p.width}; "
            "masks are stored at the frame's resolution"
        )
