"""Query/exemplar pairs and single videos over the packed clip cache.

* Exemplars share the query's action group: the dive number (FineDiving; MTL-AQA by default),
  the difficulty (MTL-AQA with ``exemplar_by=difficulty``) or the class (AQA-7). Fallback when a
  group holds no other training sample: the same difficulty, then any training sample (logged
  and counted). At train time a sample with no other group member may be its own exemplar
  (target delta 0), as in the FineParser code.
* Step ids per sampled frame come from ``Sample.frame_labels`` (or ``step_transitions``):
  with 3 steps, step 1 starts at the first frame of the second distinct label and step 2 at the
  first frame of the last one (middle sub-actions merge into the flight step).
* Randomness is drawn from ``default_rng([seed, epoch, index])``: the same pair and augmentation
  whatever the number of workers or processes, and after a resume.
"""

from __future__ import annotations

import logging
import zlib
from collections import defaultdict

import numpy as np
import torch
from torch.utils.data import Dataset

from hmtools.errors import InputError
from hmtools.schema import Sample
from uni_fineparser.cache import ClipCache
from uni_fineparser.config import ModelConfig, TrainConfig
from uni_fineparser.transforms import crop_box, paired_flip, sample_indices

log = logging.getLogger(__name__)

AUTO_GROUP = {"finediving": "action", "mtl-aqa": "action", "aqa7": "class"}
"""Dataset -> exemplar grouping used by ``exemplar_by=auto``."""


def group_of(sample: Sample, by: str) -> str:
    """The exemplar group key of a sample (``by``: auto, action, difficulty, class or any)."""
    if by == "auto":
        by = AUTO_GROUP.get(sample.dataset, "action" if sample.action else "class")
    value = {"action": sample.action, "difficulty": sample.difficulty, "class": sample.action_class}.get(by)
    return "*" if by == "any" or value is None else f"{by}:{value}"


def carve_validation(train: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split ``train`` into (train, validation) with a seeded shuffle; validation gets ``round(fraction * n)``."""
    if fraction <= 0 or len(train) < 2:
        return list(train), []
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = min(max(1, round(fraction * len(train))), len(train) - 1)
    val_idx = set(order[:n_val].tolist())
    return [s for i, s in enumerate(train) if i not in val_idx], [s for i, s in enumerate(train) if i in val_idx]


def target_of(sample: Sample, using_dd: bool) -> float:
    """What the model regresses for ``sample``: its score, or with ``using_dd`` its score divided by its
    degree of difficulty (the "completeness" CoRe and TPT regress on MTL-AQA), in score units."""
    score = float(sample.score or 0.0)
    return score / float(sample.difficulty) if using_dd else score


def exemplar_group(t: TrainConfig) -> str:
    """The exemplar grouping a run uses: ``t.exemplar_by``, where ``auto`` with ``t.using_dd`` means the same
    difficulty (as CoRe picks exemplars on MTL-AQA)."""
    return "difficulty" if t.using_dd and t.exemplar_by == "auto" else t.exemplar_by


def check_difficulties(samples: list[Sample], t: TrainConfig) -> None:
    """With ``t.using_dd`` every scored sample needs a positive degree of difficulty.

    Raises:
        InputError: some have none (AQA-7 has no DD) or one <= 0.
    """
    bad = [s.sample_id for s in samples if s.score is not None and not (s.difficulty or 0) > 0]
    if t.using_dd and bad:
        raise InputError(
            f"train.using_dd=true divides each score by its degree of difficulty, but {len(bad)} scored samples "
            f"have none (e.g. {bad[0]}); use it on FineDiving or MTL-AQA, or set train.using_dd=false"
        )


def split_and_scale(train: list[Sample], t: TrainConfig) -> tuple[list[Sample], list[Sample], float]:
    """:func:`carve_validation` of the scored training samples ``train`` by ``t.val_fraction`` and
    ``t.seed``, and the score scale the deltas are divided by: the range of the training targets
    (:func:`target_of`) with ``t.score_norm`` (1 without, or when the range is 0).

    Raises:
        InputError: ``t.using_dd`` and a sample has no degree of difficulty.
    """
    check_difficulties(train, t)
    train_s, val_s = carve_validation(train, t.val_fraction, t.seed)
    scores = np.array([target_of(s, t.using_dd) for s in train_s], dtype=np.float64)
    scale = float(np.ptp(scores)) if t.score_norm and scores.size and np.ptp(scores) > 0 else 1.0
    return train_s, val_s, scale


class ExemplarPool:
    """Training samples grouped for exemplar choice."""

    def __init__(self, pool: list[Sample], by: str):
        self.by = by
        self.pool = list(pool)
        self.groups: dict[str, list[Sample]] = defaultdict(list)
        self.by_difficulty: dict[float | None, list[Sample]] = defaultdict(list)
        for s in self.pool:
            self.groups[group_of(s, by)].append(s)
            self.by_difficulty[s.difficulty].append(s)
        self.fallbacks = 0

    def candidates(self, sample: Sample, allow_self: bool) -> list[Sample]:
        """Same group (minus ``sample``), else same difficulty, else the whole pool; ``[sample]`` when
        ``allow_self`` and it is its group's only member.

        Raises:
            InputError: the pool holds no sample other than ``sample``.
        """
        same = [s for s in self.groups.get(group_of(sample, self.by), []) if s.sample_id != sample.sample_id]
        if same:
            return same
        if allow_self and any(s.sample_id == sample.sample_id for s in self.pool):
            return [sample]
        self.fallbacks += 1
        near = [s for s in self.by_difficulty.get(sample.difficulty, []) if s.sample_id != sample.sample_id]
        if near and sample.difficulty is not None:
            return near
        rest = [s for s in self.pool if s.sample_id != sample.sample_id]
        if not rest:
            raise InputError(
                f"no exemplar for {sample.sample_id}: the exemplar pool (the training samples less the validation "
                f"split) holds {len(self.pool)} sample(s) and none other than it; score it against a larger "
                "training split (e.g. train.val_fraction=0 or more training samples)"
            )
        return rest

    def voters(self, sample: Sample, n: int, seed: int) -> list[Sample]:
        """Up to ``n`` exemplars for evaluation, a seeded shuffle of :meth:`candidates`."""
        cands = self.candidates(sample, allow_self=False)
        rng = np.random.default_rng([seed, zlib.crc32(sample.sample_id.encode())])
        return [cands[i] for i in rng.permutation(len(cands))[:n]]


def frame_steps(sample: Sample, idx: np.ndarray, num_steps: int) -> np.ndarray:
    """Step id ``(T,)`` int64 of each sampled frame; all -1 when the sample has no usable step labels."""
    t = len(idx)
    unknown = np.full(t, -1, np.int64)
    labels = sample.frame_labels
    if labels is None and sample.step_transitions:
        n = max(len(sample.frames), max(sample.step_transitions) + 2)
        labels = np.searchsorted(sample.step_transitions, np.arange(n), side="left")
    if labels is None or num_steps < 1:
        return unknown
    lab = np.asarray(labels)[np.clip(idx, 0, len(labels) - 1)]
    _, first = np.unique(lab, return_index=True)
    starts = np.sort(first)[1:]  # first sampled frame of each later distinct label
    if num_steps == 1:
        return np.zeros(t, np.int64)
    if num_steps == 3 and len(starts) >= 2:
        bounds = np.array([starts[0], starts[-1]])
    elif len(starts) == num_steps - 1:
        bounds = starts
    else:
        return unknown
    return np.searchsorted(bounds, np.arange(t), side="right").astype(np.int64)


def clip_window(sample: Sample, n: int) -> tuple[int, int] | None:
    """The positions ``(lo, hi)`` of the frames the dataset's loaders read, when the sample holds margins
    beyond them (``extra["window"]``, MTL-AQA); ``None``: all ``n`` frames."""
    window = sample.extra.get("window")
    if window is None:
        return None
    lo, hi = int(window[0]), int(window[1])
    return (lo, hi) if 0 <= lo <= hi < n else None


def load_view(
    cache: ClipCache,
    sample: Sample,
    frames: int,
    size: int,
    num_steps: int,
    rng: np.random.Generator | None,
    shift: tuple[int, int] = (0, 0),
    flip: bool = False,
) -> dict[str, torch.Tensor]:
    """One sampled, cropped clip: ``video (T, S, S, 3)`` uint8, ``masks (T, S, S)`` bool,
    ``valid (T,)`` bool, ``steps (T,)`` int64, ``score`` float32."""
    n = cache.length(sample.sample_id)
    s = int(rng.integers(shift[0], shift[1] + 1)) if rng is not None else 0
    idx = sample_indices(n, frames, s, clip_window(sample, n))
    y, x = crop_box(*cache.size, size, rng)
    f, m, v = cache.get(sample.sample_id, idx, (y, x, size))
    f, m = paired_flip(f, m, rng, flip)
    return {
        "video": torch.from_numpy(f),
        "masks": torch.from_numpy(m),
        "valid": torch.from_numpy(v),
        "steps": torch.from_numpy(frame_steps(sample, idx, num_steps)),
        "score": torch.tensor(float(sample.score or 0.0), dtype=torch.float32),
    }


class PairDataset(Dataset):
    """Training pairs: item ``i`` is query ``queries[i]`` with a random same-group exemplar.

    Items are dicts with ``q_*`` and ``e_*`` keys (see :func:`load_view`); ``*_score`` is the regression
    target (:func:`target_of`: score/DD with ``train.using_dd``).
    """

    def __init__(
        self,
        queries: list[Sample],
        pool: ExemplarPool,
        cache: ClipCache,
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        seed: int,
    ):
        self.queries, self.pool, self.cache = queries, pool, cache
        self.m, self.t, self.seed = model_cfg, train_cfg, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random stream (call before each epoch, in every process)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        q = self.queries[i]
        cands = self.pool.candidates(q, allow_self=True)
        e = cands[int(rng.integers(len(cands)))]
        out = {}
        for prefix, s in (("q_", q), ("e_", e)):
            view = load_view(
                self.cache,
                s,
                self.m.frames,
                self.m.size,
                self.m.num_steps,
                rng,
                self.t.temporal_shift,
                self.t.flip,
            )
            out.update({prefix + k: v for k, v in view.items()})
            if self.t.using_dd:
                out[prefix + "score"] = torch.tensor(target_of(s, True), dtype=torch.float32)
        return out


class VideoDataset(Dataset):
    """Single videos for evaluation (no shift, centre crop, no flip); items add ``index``."""

    def __init__(self, samples: list[Sample], cache: ClipCache, model_cfg: ModelConfig):
        self.samples, self.cache, self.m = samples, cache, model_cfg

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        view = load_view(self.cache, self.samples[i], self.m.frames, self.m.size, self.m.num_steps, None)
        return {**view, "index": torch.tensor(i)}
