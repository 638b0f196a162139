"""The whole ``hmtools build-masks`` job: index the dataset, pick samples, load models, build, report."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import reduce
from pathlib import Path

from hmtools.devices import resolve_device
from hmtools.errors import InputError
from hmtools.schema import Sample
from hmtools.store import MaskStore
from pipelines.build import BuildSummary, build_masks
from pipelines.config import BuildConfig
from pipelines.distributed import barrier, gather, process_group, rank_from_env
from pipelines.merge import MergeSummary, find_rank_stores, merge_stores, rank_store_path
from pipelines.models import check_names, load_models
from pipelines.run import Models

log = logging.getLogger(__name__)


def pick_samples(
    samples: Sequence[Sample], ids: Sequence[str] | None, limit: int | None, split: str | None = None
) -> list[Sample]:
    """Samples of ``split`` (any when ``None``), named by ``ids`` (all when ``None``; comma-separated items
    are split), then the first ``limit``.

    Raises:
        InputError: an id is not in the dataset (the first few valid ids are named), or no sample has ``split``.
    """
    chosen = list(samples)
    if split is not None:
        splits = sorted({s.split for s in samples})
        if split not in splits:
            raise InputError(f"--split {split!r}: the dataset's splits are {', '.join(splits) or 'none'}")
        chosen = [s for s in chosen if s.split == split]
    if ids:
        wanted = [i.strip() for item in ids for i in item.split(",") if i.strip()]  # "a, b" too
        if not wanted:  # e.g. --samples "$IDS" with IDS unset: not "build nothing, exit 0"
            raise InputError("--samples names no sample id; pass ids such as diving/001 (or leave --samples out)")
        by_id = {s.sample_id: s for s in samples}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            some = ", ".join(list(by_id)[:5])
            raise InputError(f"sample {missing[0]!r} is not in the dataset ({len(by_id)} samples, e.g. {some})")
        chosen = [by_id[i] for i in dict.fromkeys(wanted) if split is None or by_id[i].split == split]
    if limit is not None:
        if limit < 0:
            raise InputError(f"--limit must be >= 0, got {limit}")
        chosen = chosen[:limit]
    return chosen


def run_build_masks(
    dataset: str,
    root: Path,
    annotations: Path | None,
    store_path: Path,
    cfg: BuildConfig,
    *,
    sample_ids: Sequence[str] | None = None,
    limit: int | None = None,
    split: str | None = None,
    force: bool = False,
    keep_built: bool = False,
    overwrite_human: bool = False,
    progress: bool = True,
    rank_stores: bool = False,
    merge: bool = False,
) -> BuildSummary:
    """Run build-masks on this process's share of the samples; returns the summary of all ranks.

    With ``rank_stores`` each rank writes its own store beside ``store_path`` (jobs across
    machines); ``merge`` then copies those into ``store_path`` instead of building.

    Raises:
        InputError: bad dataset, sample id or model name; ``force`` with ``keep_built``; ``merge`` with a
            build-only option or as in :func:`run_merge` (exit 2).
    """
    from hmtools.datasets import load_dataset

    if merge:
        given = {
            "--samples": sample_ids,
            "--limit": limit,
            "--split": split,
            "--force": force,
            "--keep-built": keep_built,
        }
        refuse_build_options(given)
        return run_merge(dataset, store_path, overwrite_human=overwrite_human)
    if force and keep_built:
        raise InputError("--force rebuilds built samples and --keep-built skips them; pass one of the two")
    check_names(cfg)
    index = load_dataset(dataset, root, annotations)
    samples = pick_samples(index.samples, sample_ids, limit, split)
    kinds = ("missing_frames", "empty_folder", "unreadable_folder", "frame_count_mismatch")
    no_frames: dict[str, str] = {}  # why a sample lists no frame, for its failure line
    for p in index.problems:
        if p.kind in kinds:
            no_frames.setdefault(p.sample_id, p.detail)
    return run_sharded(
        samples,
        index.root,  # the frame folder the adapter found: frame keys are relative to it, not to --root
        store_path,
        cfg,
        load_models,
        force=force,
        keep_built=keep_built,
        overwrite_human=overwrite_human,
        progress=progress,
        rank_stores=rank_stores,
        no_frames=no_frames,
    )


def refuse_build_options(options: Mapping[str, object]) -> None:
    """Refuse options that only steer a build when ``--merge`` is asked for (the merge would ignore them).

    Args:
        options: ``{option name as typed, e.g. "--samples": its value}``; ``None``, ``False`` and ``[]``
            mean not given.

    Raises:
        InputError: any option is given (all of those named, exit 2).
    """
    given = [name for name, v in options.items() if v is not None and v is not False and v != []]
    if given:
        raise InputError(
            f"--merge copies the per-rank stores into --store as they are; {', '.join(given)} only steer"
            f"{'s' if len(given) == 1 else ''} a build: drop {'it' if len(given) == 1 else 'them'}, "
            "or build with them first (--rank-stores) and merge after"
        )


def run_merge(dataset: str, store_path: Path, *, overwrite_human: bool = False) -> MergeSummary:
    """Merge the per-rank stores beside ``store_path`` into it (one process, any machine: no dataset root is read).

    Raises:
        InputError: unknown ``dataset``; run under torchrun with several processes; no per-rank stores;
            the rank stores or ``store_path`` hold samples of another dataset than ``dataset`` (nothing is
            created or copied); and what :func:`pipelines.merge.merge_stores` refuses (exit 2).
    """
    from hmtools.datasets.index import dataset_key

    key = dataset_key(dataset)
    world = rank_from_env().world
    if world > 1:
        raise InputError(
            f"--merge runs in one process, not under torchrun ({world} processes would merge into one store "
            "at once); run it once, without torchrun, on one machine"
        )
    parts = find_rank_stores(store_path)
    if not parts:
        raise InputError(
            f"no per-rank stores {store_path.name}.rank*-of-* beside {store_path}; run with --rank-stores first"
        )
    _check_merge_dataset(key, store_path, parts)
    with MaskStore(store_path) as target:
        return merge_stores(target, parts, overwrite_human=overwrite_human)


def _check_merge_dataset(key: str, store_path: Path, parts: Sequence[Path]) -> None:
    """Refuse ``--dataset key`` when the rank stores (or the existing ``store_path``) hold another dataset.

    Rank stores of several datasets are left to :func:`pipelines.merge.merge_stores`, which names them.
    """
    parts_held = _datasets_held(parts)
    if len(parts_held) > 1:
        return
    for what, held in (("the rank stores", parts_held), ("--store", _datasets_held([store_path]))):
        other = sorted(set(held) - {key})
        if other:
            fix = f"pass --dataset {other[0]}" if what != "--store" else "merge into another --store"
            raise InputError(f"--dataset {key} does not match {what}: {held[other[0]]} holds {other[0]} samples; {fix}")


def _datasets_held(paths: Sequence[Path]) -> dict[str, str]:
    """Dataset name -> the name of the first of ``paths`` holding its samples (missing or empty files skipped)."""
    held: dict[str, str] = {}
    for path in paths:
        if not path.is_file() or path.stat().st_size == 0:
            continue  # a missing target is created by the merge; merge_stores says what is wrong with an empty part
        with MaskStore(path, read_only=True) as st:
            for (name,) in st.query("SELECT DISTINCT dataset FROM samples"):
                held.setdefault(name, path.name)
    return held


def check_rank_store_world(store_path: Path, world: int) -> None:
    """Refuse per-rank stores when stores of a run with another process count lie beside ``store_path``:
    this run would not see their samples (it would build them again) and a merge would mix both.

    Raises:
        InputError: such stores exist (exit 2, before any process group is joined).
    """
    other = [p.name for p in find_rank_stores(store_path) if not p.name.endswith(f"-of-{world}")]
    if other:
        raise InputError(
            f"{store_path.parent} holds per-rank stores of a run with another number of processes "
            f"({', '.join(other[:3])}{', ...' if len(other) > 3 else ''}); merge them into {store_path.name} "
            f"(--merge) and move them away, or rerun with that number of processes"
        )


def run_sharded(
    samples: Sequence[Sample],
    root: Path,
    store_path: Path,
    cfg: BuildConfig,
    models_factory: Callable[[BuildConfig, str], Models],
    *,
    force: bool = False,
    keep_built: bool = False,
    overwrite_human: bool = False,
    progress: bool = True,
    rank_stores: bool = False,
    no_frames: Mapping[str, str] | None = None,
) -> BuildSummary:
    """Build this rank's share (``samples[rank::world]``) with models from ``models_factory(cfg, device)``.

    Under torchrun every rank joins the process group (Gloo on CPU, NCCL on GPU) and gets the
    merged summary of all ranks; a lone process just builds everything.
    """
    rank = rank_from_env()
    if rank_stores:
        check_rank_store_world(store_path, rank.world)
    device = resolve_device(cfg.device, rank.local_rank)
    with process_group(rank, device):
        mine = rank.shard(list(samples))
        # local rank 0 loads first (and downloads named weights once per machine), then the others
        models = models_factory(cfg, device) if rank.local_rank == 0 else None
        barrier(rank)
        models = models or models_factory(cfg, device)
        path = rank_store_path(store_path, rank) if rank_stores else store_path
        if rank.rank == 0 and not rank_stores:
            MaskStore(path).close()  # create / migrate the shared store once, before the others open it
        barrier(rank)
        with MaskStore(path) as store:
            desc = "build-masks" if rank.world == 1 else f"build-masks rank {rank.rank}"
            summary = build_masks(
                mine,
                Path(root),
                store,
                models,
                cfg,
                force=force,
                keep_built=keep_built,
                overwrite_human=overwrite_human,
                progress=progress,
                desc=desc,
                no_frames=no_frames,
            )
        return reduce(BuildSummary.merge, gather(summary, rank))
