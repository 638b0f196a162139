"""A run's inputs stay consistent: masks in the dataset's frame order, a resumed run on the split and score units it began with."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from _ufp_fixtures import make_dataset, make_store, one_torch_thread  # noqa: F401

from hmtools.errors import ConfigError, InputError
from uni_fineparser.config import load_run_config
from uni_fineparser.mask_source import open_mask_source
from uni_fineparser.train import train


def test_store_masks_in_another_frame_order_are_refused(tmp_path):
    """A store whose frame order differs from the dataset's (same keys, same count) gave each frame
    another frame's mask: masks and frames out of step, silently."""
    samples, masks = make_dataset(tmp_path / "root", n_train=1, n_test=0, n_frames=6)
    src = open_mask_source(make_store(tmp_path / "m.db", samples, masks))
    s = samples[0]
    got = src.read(s)
    assert all(np.array_equal(g, m) for g, m in zip(got, masks[s.sample_id], strict=True))
    swapped = replace(s, frames=(s.frames[1], s.frames[0], *s.frames[2:]))
    with pytest.raises(InputError, match="order"):
        src.read(swapped)
    with pytest.raises(InputError, match="order"):
        src.available(swapped)


def _dataset(tmp_path):
    """10 train / 2 test clips of 16 frames, masks in a store: ``(samples, mask source)``."""
    samples, masks = make_dataset(tmp_path / "root", n_train=10, n_test=2, n_frames=16)
    return samples, open_mask_source(make_store(tmp_path / "m.db", samples, masks))


def _train(tmp_path, samples, store, *overrides: str) -> None:
    """The tiny preset, a fifth of train for validation, into ``tmp_path / "out"`` (resuming from it)."""
    cfg = load_run_config("tiny", overrides=["train.val_fraction=0.2", *overrides])
    train(cfg, samples, store, tmp_path / "root", tmp_path / "out", device="cpu")


@pytest.mark.parametrize("change", ["train.seed=7", "train.val_fraction=0.4", "train.score_norm=false"])
def test_resume_refuses_a_changed_validation_split_or_score_scale(tmp_path, change):
    """Resuming with another seed / val_fraction / score_norm carved another validation split (samples
    already trained on chose best.pt) and regressed in other score units than the weights had learnt."""
    samples, store = _dataset(tmp_path)
    _train(tmp_path, samples, store, "train.epochs=1")
    first = torch.load(tmp_path / "out" / "last.pt", weights_only=True)
    with pytest.raises(ConfigError, match=change.split("=")[0].split(".")[1]):
        _train(tmp_path, samples, store, "train.epochs=2", change)
    after = torch.load(tmp_path / "out" / "last.pt", weights_only=True)
    assert after["epoch"] == first["epoch"] == 1  # nothing trained on the wrong split


def test_resume_never_replaces_a_better_best_checkpoint(tmp_path):
    """best.pt can be newer than last.pt (save_every > 1, or a crash between the two writes): a resumed
    run must compare against best.pt's own validation rho, not the older one in last.pt."""
    samples, store = _dataset(tmp_path)
    _train(tmp_path, samples, store, "train.epochs=1")
    best_pt, last_pt = tmp_path / "out" / "best.pt", tmp_path / "out" / "last.pt"
    older = torch.load(last_pt, weights_only=True)
    older["best_metric"] = -1.0  # last.pt written before best.pt's epoch: it knows only a worse best
    torch.save(older, last_pt)
    newer = torch.load(best_pt, weights_only=True)
    newer["best_metric"] = 1.0  # the best a rho can be: no later epoch may replace it
    torch.save(newer, best_pt)
    _train(tmp_path, samples, store, "train.epochs=3")
    kept = torch.load(best_pt, weights_only=True)
    assert (kept["best_metric"], kept["epoch"]) == (1.0, 1)
    assert torch.load(last_pt, weights_only=True)["epoch"] == 3


@pytest.mark.parametrize("key", ["train.eval_every", "train.save_every"])
def test_zero_epoch_intervals_are_refused_before_training(key):
    """Both are epoch moduli: 0 passed the config check and crashed (ZeroDivisionError) after epoch 1."""
    with pytest.raises(ConfigError, match=key):
        load_run_config("tiny", overrides=[f"{key}=0"])


def test_aqa7_class_too_small_for_a_batch_is_refused_before_any_class_trains(tmp_path):
    """A class with 2 training samples passed the up-front check, but after carving validation it gave
    0 batches: train() refused it only after every class before it had trained."""
    from uni_fineparser.run import train_per_class

    made, masks = make_dataset(tmp_path / "root", n_train=12, n_test=4, n_frames=16)
    cls = ["diving"] * 10 + ["gym_vault"] * 2 + ["diving"] * 3 + ["gym_vault"]
    samples = [replace(s, dataset="aqa7", action_class=c) for s, c in zip(made, cls, strict=True)]
    store = open_mask_source(make_store(tmp_path / "m.db", samples, masks))
    cfg = load_run_config("tiny", overrides=["train.epochs=1"])
    with pytest.raises(InputError, match=r"gym_vault \(1 training pairs"):
        train_per_class(cfg, samples, store, tmp_path / "root", tmp_path / "out", device="cpu")
    assert not (tmp_path / "out" / "diving").exists()


def test_eval_of_a_moved_run_folder_uses_the_cache_inside_it(tmp_path):
    """The default cache is <out>/cache; after moving the run folder, eval rebuilt the cache under the
    folder's old path (recreating it there) instead of using the one that moved with the checkpoint."""
    from uni_fineparser.run import evaluate_checkpoint

    samples, store = _dataset(tmp_path)
    _train(tmp_path, samples, store, "train.epochs=1")
    (tmp_path / "out").rename(tmp_path / "moved")
    res = evaluate_checkpoint(tmp_path / "moved" / "best.pt", device="cpu", samples=samples, masks=tmp_path / "m.db")
    assert res.metrics["n"] == 2
    assert not (tmp_path / "out").exists()
    assert len(list((tmp_path / "moved" / "cache").iterdir())) == 1  # reused, not a second build
