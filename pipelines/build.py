"""``build-masks`` over many samples: skip what is done, one store transaction per sample, summary.

A sample is *done* when the store marks it built with the same configuration hash (the parts
of :class:`~pipelines.config.BuildConfig` that change masks, plus the weights' sha256); reruns
skip it, ``force`` redoes it. A sample with human work (a head version whose source is
``human`` or ``propagated``, whose status is ``accepted``/``rejected``, or that a person wrote, such
as an undo back to an automatic mask) or an annotator's unexpired lock is never rebuilt unless
``overwrite_human`` is given: new automatic versions would hide the edits (they stay in the
history, but the annotator and exports read the head). It is checked before building and again
before writing, and the write is compare-and-set on the heads seen then, so an edit saved in
between also keeps the sample as it is. A killed run leaves every sample either
fully written or untouched, so a rerun finishes the job with no duplicates. A store that cannot be
written any more (a full disk, a file system turned read-only, I/O errors) stops the run at once with
:class:`StoreUnwritableError` instead of failing every later sample.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmtools.config import config_hash
from hmtools.errors import HMToolsError, StaleVersionError
from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_admin import check_same_dataset, lock_holder, put_config
from hmtools.store_open import StoreBusyError, sqlite_unwritable
from hmtools.store_types import MaskWrite
from pipelines.config import BuildConfig, result_config
from pipelines.run import Models, build_sample_masks

log = logging.getLogger(__name__)

BUSY_RETRIES = 4
"""Times a sample's write is tried again when another process held the store past its busy timeout (60 s:
a large ``hmtools import`` is one transaction), so the sample's inference is kept; then the run stops."""
UNEXPECTED_IN_A_ROW = 3
"""Samples in a row that may fail with an unexpected error (a bug, a broken GPU) before the run stops:
one odd sample must not end an overnight run, a systematic error must not fail every sample."""
OS_STOPS = {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EROFS: "read-only"}
AUTHOR = "build-masks"
MERGE_AUTHOR = "build-masks merge"  # pipelines.merge writes the per-rank stores' masks as this


@dataclass
class BuildSummary:
    """What a build did (one rank, or all ranks merged with :meth:`merge`)."""

    samples: int = 0
    built: int = 0
    skipped_done: int = 0
    skipped_human: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    flagged: int = 0
    seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    config_hash: str = ""

    def count_written(self, writes: Sequence[MaskWrite]) -> None:
        """Count one sample's written masks: ``frames``, ``flagged`` and the flag ``reasons``."""
        self.frames += len(writes)
        for w in writes:
            if w.status == "flagged":
                self.flagged += 1
                self.reasons.update((w.reason or "").split("; "))

    def merge(self, other: BuildSummary) -> BuildSummary:
        """Sum of two ranks' summaries (wall time: the slowest)."""
        return BuildSummary(
            self.samples + other.samples,
            self.built + other.built,
            self.skipped_done + other.skipped_done,
            self.skipped_human + other.skipped_human,
            {**self.failed, **other.failed},
            self.frames + other.frames,
            self.flagged + other.flagged,
            max(self.seconds, other.seconds),
            self.reasons + other.reasons,
            self.config_hash or other.config_hash,
        )

    def lines(self) -> list[str]:
        """Human-readable summary."""
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"{self.samples} samples: {self.built} built, {self.skipped_done} already done, "
            f"{len(self.skipped_human)} skipped (human edits, imported masks or an annotator's lock), "
            f"{len(self.failed)} failed",
            f"{self.frames} frames in {self.seconds:.1f} s ({fps:.2f} frames/s), {self.flagged} flagged; config {self.config_hash}",
        ]
        out += [f"  flagged: {r}: {n}" for r, n in self.reasons.most_common(10)]
        if self.skipped_human:
            more = len(self.skipped_human) - 10
            out.append(
                "  human edits / imported masks kept (rerun with --overwrite-human to rebuild): "
                + ", ".join(self.skipped_human[:10])
                + (f" and {more} more" if more > 0 else "")
            )
        out += [f"  failed {sid}: {msg}" for sid, msg in list(self.failed.items())[:10]]
        if len(self.failed) > 10:
            out.append(f"  ... and {len(self.failed) - 10} more failed (hmtools inspect lists frame problems)")
        return out


class StoreUnwritableError(HMToolsError):
    """The store's disk filled up, or its file system turned read-only or failing, during a build (exit 1).

    Every later sample would fail the same way, so the run stops at the first one; the samples built
    before are committed, the failing sample's transaction is rolled back, and rerunning the same
    command resumes once the disk is fixed.
    """


def unwritable_kind(e: BaseException) -> tuple[str, BaseException] | None:
    """``("full" | "read-only" | "io", the error that says so)`` when ``e`` (or an error it was raised
    from) means that the disk can take no more writes, else ``None``.

    SQLite errors as :func:`hmtools.store_open.sqlite_unwritable` reads them; ``OSError`` by errno (``ENOSPC``, ``EDQUOT``, ``EROFS``; not ``EIO``, which a bad frame file of
    the dataset also raises). The chain of ``__cause__``/``__context__`` is followed, so an hmtools error
    that wraps such an SQLite error is recognised too.
    """
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, sqlite3.Error):
            kind = sqlite_unwritable(cur)
            if kind is not None:
                return kind, cur
        elif isinstance(cur, OSError) and cur.errno in OS_STOPS:
            return OS_STOPS[cur.errno], cur
        cur = cur.__cause__ or cur.__context__
    return None


def unwritable_error(e: BaseException, store: Path, sample_id: str | None, built: int) -> StoreUnwritableError | None:
    """The one-line run-stopping error for ``e`` when it means the store can no longer be written, else ``None``.

    Args:
        e: What building or writing ``sample_id`` raised.
        store: The store's path (named in the message).
        sample_id: The sample being built, or ``None`` before the first one.
        built: Samples built and committed by this run so far.
    """
    found = unwritable_kind(e)
    if found is None:
        return None
    kind, cause = found
    where = f"mask store {store}"
    if isinstance(cause, OSError) and cause.filename and Path(str(cause.filename)).parent != store.parent:
        where = str(cause.filename)  # e.g. a temporary file on another disk
    what = {
        "full": f"the disk of {where} is full",
        "read-only": f"the file system of {where} became read-only",
        "io": f"the disk of {where} reports I/O errors",
    }[kind]
    fix = {
        "full": "free some space or move the store (with its -wal and -shm files) to a disk with room",
        "read-only": "remount it read-write or copy the store (with its -wal and -shm files) to a writable disk",
        "io": f"check the disk (dmesg), run `hmtools validate {store}` and copy the store to a sound disk if needed",
    }[kind]
    at = f" at sample {sample_id} (its partial write was rolled back)" if sample_id else ""
    return StoreUnwritableError(
        f"build-masks stopped{at}: {what} ({cause}); what this run built so far ({built} samples) is saved; "
        f"{fix}, then rerun the same command: it resumes where it stopped"
    )


def human_block(store: MaskStore, sample_id: str) -> str | None:
    """Why the sample must not be rebuilt without ``overwrite_human``: human work, imported masks, or an
    annotator's lease."""
    if has_human_work(store, sample_id):
        return "human edits"
    if has_imported_masks(store, sample_id):
        return "imported masks"
    lock = lock_holder(store, sample_id)
    if lock is not None:
        return f"being edited by {lock.owner}"
    return None


def has_human_work(store: MaskStore, sample_id: str) -> bool:
    """Whether any frame's head mask of the sample was edited, reviewed or written by a person: source
    ``human`` or ``propagated`` (a saved annotator preview), status accepted/rejected, or any head that
    neither build-masks nor an import wrote (e.g. an annotator's undo back to an automatic mask)."""
    return _any_head_mask(
        store,
        sample_id,
        "m.source IN ('human','propagated') OR m.status IN ('accepted','rejected') "
        f"OR (m.source <> 'imported' AND m.author NOT IN ('{AUTHOR}', '{MERGE_AUTHOR}'))",
    )


def has_imported_masks(store: MaskStore, sample_id: str) -> bool:
    """Whether any frame's head mask came from ``hmtools import`` (masks made elsewhere, e.g. by hand)."""
    return _any_head_mask(store, sample_id, "m.source='imported'")


def _any_head_mask(store: MaskStore, sample_id: str, condition: str) -> bool:
    """Whether a head mask (``m``) of the sample's frames meets an SQL ``condition`` (a constant)."""
    rows = store.query(
        "SELECT EXISTS (SELECT 1 FROM frames f JOIN masks m ON m.frame_id=f.frame_id AND m.version=f.head_version "
        f"WHERE f.sample_id=? AND ({condition}))",
        (sample_id,),
    )
    return bool(rows[0][0])


def no_frames_reason(sample: Sample, details: Mapping[str, str]) -> str:
    """The failure line of a sample that lists no frame: its video is not extracted, or its frame folder
    is missing or empty (``details``: the dataset index's problem detail, naming the folder)."""
    if sample.video:
        return f"frames not extracted from {sample.video}; run hmtools extract-frames --dataset {sample.dataset} --root DIR"
    why = details.get(sample.sample_id, "its frame folder is missing or holds no image file")
    return f"no frames: {why}; see hmtools inspect"


def build_masks(
    samples: Sequence[Sample],
    root: Path,
    store: MaskStore,
    models: Models,
    cfg: BuildConfig,
    *,
    force: bool = False,
    keep_built: bool = False,
    overwrite_human: bool = False,
    progress: bool = True,
    desc: str = "build-masks",
    no_frames: Mapping[str, str] | None = None,
) -> BuildSummary:
    """Build masks for ``samples`` into ``store``.

    Args:
        samples: The samples this process handles (already split across ranks).
        root: Dataset root.
        store: Open mask store (samples are registered here).
        models: Loaded backends.
        cfg: Build configuration.
        force: Rebuild samples already built with this configuration.
        keep_built: Skip every sample already built, whatever configuration (or hmtools version)
            built it: only samples never built are built (finishing a run after an upgrade).
        overwrite_human: Also rebuild samples with human edits, reviews or imported masks.
        progress: Show a tqdm bar (frames, frames/s).
        desc: Progress bar label.
        no_frames: Why a sample lists no frame (sample id -> the dataset index's problem detail), for
            the failure line.

    Returns:
        A :class:`BuildSummary`; failed samples are listed there and never half-written.

    Raises:
        StoreUnwritableError: the store's disk is full, or its file system turned read-only or reports
            I/O errors (SQLITE_FULL/READONLY/IOERR, ENOSPC/EDQUOT/EROFS): the run stops at once, the
            failing sample's write is rolled back and the samples built before stay committed.
    """
    from tqdm import tqdm

    body: dict[str, Any] = result_config(cfg, models.weights)
    chash = config_hash(body)
    check_same_dataset(store, {s.dataset for s in samples})
    try:
        store.add_samples(samples, author=AUTHOR)
        put_config(store, chash, body)
    except Exception as e:
        stop = unwritable_error(e, store.path, None, 0)
        if stop is None:
            raise
        raise stop from e
    summary = BuildSummary(samples=len(samples), config_hash=chash)
    todo = []
    for s in samples:
        built = store.build_config(s.sample_id)
        if (not force and built == chash) or (keep_built and built is not None):
            summary.skipped_done += 1
        elif not overwrite_human and human_block(store, s.sample_id):
            summary.skipped_human.append(s.sample_id)
        else:
            todo.append(s)
    t0, unexpected = time.perf_counter(), 0
    with tqdm(
        total=sum(len(s.frames) for s in todo),
        unit="frame",
        desc=desc,
        disable=not progress,
    ) as bar:
        for s in todo:
            if not s.frames:
                summary.failed[s.sample_id] = no_frames_reason(s, no_frames or {})
                continue
            try:
                bar.set_postfix_str(s.sample_id, refresh=False)
                writes = build_sample_masks(s, root, models, cfg, tick=bar.update)
                heads = None if overwrite_human else {f.idx: f.head_version for f in store.frames(s.sample_id)}
                if not overwrite_human and human_block(store, s.sample_id):  # an annotator started meanwhile
                    summary.skipped_human.append(s.sample_id)
                    continue
                _write_waiting(store, s.sample_id, writes, chash, heads)
            except StaleVersionError:  # an annotator saved a frame after the check: keep their work
                summary.skipped_human.append(s.sample_id)
                continue
            except Exception as e:
                stop = unwritable_error(e, store.path, s.sample_id, summary.built)
                if stop is not None:  # a full, read-only or failing disk fails every later sample too
                    log.debug("sample %s: the store cannot be written", s.sample_id, exc_info=True)
                    raise stop from e
                if isinstance(e, StoreBusyError):  # held past every retry: later samples would wait as long
                    raise StoreBusyError(f"build-masks stopped at sample {s.sample_id}: {e}; the {summary.built} "
                                         "samples built before it are saved, and a rerun resumes") from e  # fmt: skip
                if isinstance(e, HMToolsError):
                    summary.failed[s.sample_id] = str(e)
                    log.error("sample %s failed: %s", s.sample_id, e)
                    continue
                unexpected += 1  # not bad input: a bug or the machine; the sample is not written
                log.exception("sample %s failed with an unexpected error (please report it)", s.sample_id)
                if unexpected >= UNEXPECTED_IN_A_ROW:
                    raise
                summary.failed[s.sample_id] = f"unexpected error {type(e).__name__}: {e} (traceback in the log)"
                continue
            unexpected = 0
            summary.built += 1
            summary.count_written(writes)
    summary.seconds = time.perf_counter() - t0
    return summary


def _write_waiting(
    store: MaskStore, sample_id: str, writes: list[Any], chash: str, heads: dict[int, int] | None
) -> None:
    """``store.write_sample_masks`` for a built sample, tried again up to :data:`BUSY_RETRIES` times
    while another process holds the store past its busy timeout (nothing is written by a failed try).

    Raises:
        StoreBusyError: the store stayed busy through every try.
    """
    for attempt in range(BUSY_RETRIES + 1):
        try:
            store.write_sample_masks(sample_id, writes, author=AUTHOR, build_config=chash, expected_versions=heads)
            return
        except StoreBusyError as e:
            if attempt == BUSY_RETRIES:
                raise
            log.warning("sample %s: %s; trying its write again (%d of %d)", sample_id, e, attempt + 1, BUSY_RETRIES)
