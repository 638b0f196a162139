"""Per-rank stores for jobs that span machines, and merging them into the main store.

SQLite's WAL mode keeps its index in shared memory, so every process that opens one store
must run on the same machine. A job across nodes therefore writes one store per rank
(``<store>.rank<r>-of-<world>``, a single process per file) and :func:`merge_stores` copies the
built samples into the main store afterwards, one transaction per sample, idempotently.

Everything that would stop the merge (a part of another dataset, the target among the parts) is
checked before the first copy. A sample built in several parts is taken from the part that built
it last; a sample the target holds from a later build than the part's (e.g. a ``--force`` rebuild
into the target after the rank run) is kept as it is; a sample whose frame list differs from the
target's (stores made from another dataset root or frame layout) is not copied and counts as
failed. All three are listed in the summary. A merge killed midway leaves each sample either
merged or untouched (the rank stores are only read), so running it again finishes the job.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from hmtools.errors import InputError, StaleVersionError
from hmtools.store import MaskStore
from hmtools.store_admin import check_same_dataset, get_config, iter_current, put_config
from hmtools.store_types import FrameRow, MaskRecord, MaskWrite
from pipelines.build import MERGE_AUTHOR, BuildSummary, human_block
from pipelines.distributed import Rank


def rank_store_path(store: Path, rank: Rank) -> Path:
    """The per-rank store file of ``rank`` beside ``store``."""
    return store.with_name(f"{store.name}.rank{rank.rank}-of-{rank.world}")


def find_rank_stores(store: Path) -> list[Path]:
    """Per-rank store files beside ``store`` (their WAL side files excluded), sorted."""
    return sorted(p for p in store.parent.glob(f"{store.name}.rank*-of-*") if not p.name.endswith(("-wal", "-shm")))


@dataclass
class MergeSummary(BuildSummary):
    """What a merge did. Inherited counts: ``samples`` = built samples found in the parts (each
    counted once), ``built`` = samples copied, ``frames`` = masks copied (one new version each),
    ``flagged`` = copied masks with status ``flagged``, ``skipped_done`` = already in the target,
    ``skipped_human`` = kept for human work, ``failed`` = not copied (sample id -> why).

    Attributes:
        target: The store merged into.
        stores: File names of the parts read.
        configs: Configuration hashes of the samples copied.
        unbuilt: Samples registered in a part but never built there (failed or not reached).
        conflicts: ``(sample id, what was decided)`` for samples built in several parts with other
            masks, or built later in the target than in the part.
    """

    target: str = ""
    stores: list[str] = field(default_factory=list)
    configs: set[str] = field(default_factory=set)
    unbuilt: list[str] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary of the merge (nothing about build speed: nothing was built)."""
        out = [
            f"merged {len(self.stores)} rank store{'s' if len(self.stores) != 1 else ''} "
            f"({_few(self.stores, 4)}) into {self.target}: "
            f"{self.samples} built samples in them",
            f"{self.built} samples copied ({self.frames} frames, one new mask version each; {self.flagged} flagged), "
            f"{self.skipped_done} already in the store, {len(self.skipped_human)} kept "
            f"(human edits, imported masks or an annotator's lock), {len(self.conflicts)} conflicts, "
            f"{len(self.failed)} failed",
        ]
        if self.configs:
            out.append(f"  configs copied: {', '.join(sorted(self.configs))}")
        out += [f"  flagged: {r}: {n}" for r, n in self.reasons.most_common(5)]
        if self.unbuilt:
            out.append(
                f"  {len(self.unbuilt)} samples of the rank stores were never built there (failed or not reached; "
                f"rerun build-masks --rank-stores, then --merge): {_few(self.unbuilt, 10)}"
            )
        out += [f"  conflict {sid}: {why}" for sid, why in self.conflicts[:10]]
        if len(self.conflicts) > 10:
            out.append(f"  ... and {len(self.conflicts) - 10} more conflicts")
        if self.skipped_human:
            out.append(
                "  human edits / imported masks kept (rerun with --overwrite-human to replace them): "
                + _few(self.skipped_human, 10)
            )
        out += [f"  failed {sid}: {msg}" for sid, msg in list(self.failed.items())[:10]]
        if len(self.failed) > 10:
            out.append(f"  ... and {len(self.failed) - 10} more failed")
        return out


def _few(items: list[str], n: int) -> str:
    """The first ``n`` items, comma-separated, with how many more."""
    more = len(items) - n
    return ", ".join(items[:n]) + (f" and {more} more" if more > 0 else "")


@dataclass
class _Built:
    """One sample as built in one part."""

    part: MaskStore
    chash: str
    built_at: float


def merge_stores(target: MaskStore, parts: list[Path], *, overwrite_human: bool = False) -> MergeSummary:
    """Copy every built sample's current masks from ``parts`` into ``target``.

    A sample already built in ``target`` with the same configuration and masks is skipped, and so
    is one with human work in ``target`` unless ``overwrite_human``. Masks keep their source,
    score, status, reason and tracks; each sample is one transaction. The parts are only read.

    Returns:
        A :class:`MergeSummary`.

    Raises:
        InputError: ``target`` is one of ``parts``, or a part holds samples of another dataset than
            ``target`` or than another part (nothing is copied).
    """
    for part in parts:
        if part.exists() and target.path.exists() and os.path.samefile(part, target.path):
            raise InputError(f"cannot merge {part} into itself; pass the main store as --store")
    summary = MergeSummary(target=str(target.path), stores=[p.name for p in parts])
    with ExitStack() as stack:
        srcs = [stack.enter_context(MaskStore(p, read_only=True)) for p in parts]
        datasets = {r[0] for src in srcs for r in src.query("SELECT DISTINCT dataset FROM samples")}
        if len(datasets) > 1:
            raise InputError(
                f"the rank stores hold samples of several datasets ({', '.join(sorted(datasets))}); "
                "merge the stores of one dataset at a time into their own --store"
            )
        if datasets:  # rank stores that registered no sample copy nothing, into a store of any dataset
            check_same_dataset(target, datasets)  # before any copy
        chosen = _choose(srcs, summary)
        held = set(target.sample_ids())
        for sid in sorted(chosen):
            _merge_one(target, sid, chosen[sid], sid in held, overwrite_human, summary)
    return summary


def _choose(srcs: list[MaskStore], summary: MergeSummary) -> dict[str, _Built]:
    """The part each built sample is taken from (the latest build where several parts built it);
    records unbuilt samples and conflicts between parts in ``summary``."""
    chosen: dict[str, _Built] = {}
    registered: set[str] = set()
    for src in srcs:
        for sid, chash, at in src.query("SELECT sample_id, build_config, built_at FROM samples ORDER BY sample_id"):
            registered.add(sid)
            if chash is None:
                continue
            new = _Built(src, chash, float(at or 0.0))
            old = chosen.get(sid)
            if old is None:
                chosen[sid] = new
                continue
            if _heads(old.part, sid) == _heads(src, sid):
                continue
            keep, drop = (new, old) if new.built_at > old.built_at else (old, new)
            chosen[sid] = keep
            summary.conflicts.append(
                (
                    sid,
                    f"built with other masks in {keep.part.path.name} and {drop.part.path.name}; took the later build "
                    f"({keep.part.path.name})",
                )
            )
    summary.samples = len(chosen)
    summary.unbuilt = sorted(registered - set(chosen))
    return chosen


def _merge_one(
    target: MaskStore, sid: str, b: _Built, held: bool, overwrite_human: bool, summary: MergeSummary
) -> None:
    """Copy one sample from its part into ``target`` (or record why not)."""
    src = b.part
    current = [(frame, rec) for _, frame, rec in iter_current(src, [sid])]  # read once: compared, then copied
    if held:
        t_hash, t_at = target.query("SELECT build_config, built_at FROM samples WHERE sample_id=?", (sid,))[0]
        if t_hash is not None and _counts(current) == _heads(target, sid):  # a repeated merge
            summary.skipped_done += 1
            return
        blocked = human_block(target, sid) is not None
        if blocked and not overwrite_human:
            summary.skipped_human.append(sid)
            return
        if not blocked and t_hash is not None and float(t_at or 0.0) > b.built_at:
            summary.conflicts.append(
                (
                    sid,
                    f"{target.path.name} holds a later build (config {t_hash}) than {src.path.name} "
                    f"(config {b.chash}); kept the store's",
                )
            )
            return
        why = _frames_differ(src, target, sid)
        if why is not None:
            summary.failed[sid] = why
            return
    body = get_config(src, b.chash)
    if body is not None:
        put_config(target, b.chash, body)
    try:
        target.add_samples([src.get_sample(sid)], author=MERGE_AUTHOR)
    except InputError as e:  # a frame key registered to another sample of the target
        summary.failed[sid] = str(e)
        return
    writes = [MaskWrite.copy_of(rec, frame.idx) for frame, rec in current if rec is not None]
    heads = None if overwrite_human else {f.idx: f.head_version for f in target.frames(sid)}
    try:  # compare-and-set on the heads checked above: an annotator's save meanwhile keeps the sample
        if not overwrite_human and human_block(target, sid):
            summary.skipped_human.append(sid)
            return
        target.write_sample_masks(sid, writes, author=MERGE_AUTHOR, build_config=b.chash, expected_versions=heads)
    except StaleVersionError:
        summary.skipped_human.append(sid)
        return
    summary.count_written(writes)
    summary.built += 1
    summary.configs.add(b.chash)
    summary.config_hash = b.chash


def _frames_differ(src: MaskStore, dst: MaskStore, sid: str) -> str | None:
    """Why ``src``'s sample cannot be copied over ``dst``'s masked one: another frame list (stores made
    from another dataset root or frame layout), or ``None``."""
    a = [f.key for f in src.frames(sid)]
    held = dst.frames(sid)
    b = [f.key for f in held]
    if a == b or not any(f.head_version > 0 for f in held):
        return None
    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    shown = f"{a[first] if first < len(a) else '(none)'} vs {b[first] if first < len(b) else '(none)'}"
    return (
        f"{src.path.name} lists {len(a)} frames, {dst.path.name} has masks for {len(b)} other ones "
        f"(frame {first}: {shown}); the stores were built from other dataset roots or frame layouts: "
        "merge into a new --store"
    )


def _heads(store: MaskStore, sid: str) -> dict[str, str | None]:
    """Frame key -> the RLE counts of its current mask in ``store`` (``None`` without one)."""
    return _counts((f, r) for _, f, r in iter_current(store, [sid]))


def _counts(current: Iterable[tuple[FrameRow, MaskRecord | None]]) -> dict[str, str | None]:
    """Frame key -> the RLE counts of its mask (``None`` without one) over ``(frame, record)`` pairs."""
    return {f.key: r.rle["counts"] if r else None for f, r in current}
