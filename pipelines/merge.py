"""Per-rank stores for jobs that span machines, and merging them into the main store.

SQLite's WAL mode keeps its index in shared memory, so every process that opens one store
must run on the same machine. A job across nodes therefore writes one store per rank
(``<store>.rank<r>-of-<world>``, a single process per file) and :func:`merge_stores` copies the
built samples into the main store afterwards, one transaction per sample, idempotently.
"""

from __future__ import annotations

from pathlib import Path

from hmtools.store import MaskStore
from hmtools.store_admin import check_same_dataset, get_config, iter_current, put_config
from hmtools.store_types import MaskWrite
from pipelines.build import MERGE_AUTHOR, BuildSummary, human_block
from pipelines.distributed import Rank


def rank_store_path(store: Path, rank: Rank) -> Path:
    """The per-rank store file of ``rank`` beside ``store``."""
    return store.with_name(f"{store.name}.rank{rank.rank}-of-{rank.world}")


def find_rank_stores(store: Path) -> list[Path]:
    """Per-rank store files beside ``store`` (their WAL side files excluded), sorted."""
    return sorted(p for p in store.parent.glob(f"{store.name}.rank*-of-*") if not p.name.endswith(("-wal", "-shm")))


def merge_stores(target: MaskStore, parts: list[Path], *, overwrite_human: bool = False) -> BuildSummary:
    """Copy every built sample's current masks from ``parts`` into ``target``.

    A sample already built in ``target`` with the same configuration is skipped, and so is one
    with human work in ``target`` unless ``overwrite_human``. Masks keep their source, score,
    status, reason and tracks; each sample is one transaction.

    Returns:
        ``built`` = samples merged, ``frames`` = masks copied.

    Raises:
        InputError: a part holds samples of another dataset than ``target`` (nothing is copied).
    """
    for part in parts:  # every part first, so a store of another dataset stops the merge before any copy
        with MaskStore(part, create=False) as src:
            check_same_dataset(target, {r[0] for r in src.query("SELECT DISTINCT dataset FROM samples")})
    summary = BuildSummary()
    for part in parts:
        with MaskStore(part, create=False) as src:
            for sid in src.sample_ids():
                chash = src.build_config(sid)
                if chash is None:
                    continue
                summary.samples += 1
                if target.build_config(sid) == chash and _same_heads(src, target, sid):
                    summary.skipped_done += 1
                    continue
                if sid in target.sample_ids() and not overwrite_human and human_block(target, sid):
                    summary.skipped_human.append(sid)
                    continue
                target.add_samples([src.get_sample(sid)], author=MERGE_AUTHOR)
                body = get_config(src, chash)
                if body is not None:
                    put_config(target, chash, body)
                writes = [
                    MaskWrite.copy_of(rec, frame.idx) for _, frame, rec in iter_current(src, [sid]) if rec is not None
                ]
                summary.frames += target.write_sample_masks(sid, writes, author=MERGE_AUTHOR, build_config=chash)
                summary.built += 1
                summary.config_hash = chash
    return summary


def _same_heads(src: MaskStore, dst: MaskStore, sid: str) -> bool:
    """Whether ``dst`` already holds ``src``'s current masks of the sample (a repeated merge)."""
    a = {f.key: r.rle["counts"] if r else None for _, f, r in iter_current(src, [sid])}
    b = {f.key: r.rle["counts"] if r else None for _, f, r in iter_current(dst, [sid])}
    return a == b
