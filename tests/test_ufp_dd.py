"""``train.using_dd``: regress score/DD (CoRe's and TPT's MTL-AQA protocol) and multiply back at inference."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch
from _ufp_fixtures import make_dataset, make_store, one_torch_thread  # noqa: F401

from hmtools.errors import ConfigError, InputError
from hmtools.schema import Sample
from uni_fineparser.cache import build_cache
from uni_fineparser.config import load_run_config
from uni_fineparser.data import ExemplarPool, PairDataset, exemplar_group, split_and_scale, target_of
from uni_fineparser.evaluate import vote
from uni_fineparser.mask_source import open_mask_source
from uni_fineparser.run import evaluate_checkpoint
from uni_fineparser.train import train

DD = ["train.using_dd=true"]


def test_vote_multiplies_back_by_the_query_difficulty():
    q = Sample("v/0", "mtl-aqa", ("f.jpg",), "test", score=80.0, difficulty=3.0)
    e1 = replace(q, sample_id="v/1", split="train", score=60.0, difficulty=2.0)
    e2 = replace(q, sample_id="v/2", split="train", score=90.0, difficulty=3.0)
    deltas = np.array([[0.1, 0.0, 0.1], [0.0, -0.1, 0.0]])  # (M=2 voters, K=3 steps), regression units
    preds, contrib = vote(deltas, q, [e1, e2], 10.0, using_dd=True)
    # voter 1: 3.0 * (60/2 + 10*0.2) = 96; voter 2: 3.0 * (90/3 - 10*0.1) = 87
    assert preds == pytest.approx([96.0, 87.0]) and contrib == pytest.approx([1.5, -1.5, 1.5])
    raw, _ = vote(deltas, q, [e1, e2], 10.0, using_dd=False)
    assert raw == pytest.approx([62.0, 89.0])


def test_targets_scale_and_exemplar_groups_follow_the_difficulty(tmp_path):
    samples, masks = make_dataset(tmp_path / "root", n_train=8, n_test=0, n_frames=8)
    on = load_run_config("tiny", overrides=[*DD, "train.val_fraction=0"]).train
    off = load_run_config("tiny", overrides=["train.val_fraction=0"]).train
    _, _, scale = split_and_scale(samples, on)
    assert scale == pytest.approx(np.ptp([s.score / s.difficulty for s in samples]))
    assert split_and_scale(samples, off)[2] == pytest.approx(np.ptp([s.score for s in samples]))
    assert exemplar_group(on) == "difficulty" and exemplar_group(off) == "auto"
    assert exemplar_group(replace(on, exemplar_by="action")) == "action"  # an explicit choice stays
    cache = build_cache(samples, tmp_path / "root", open_mask_source(make_store(tmp_path / "m.db", samples, masks)),
                        tmp_path / "cache", (24, 32))  # fmt: skip
    cfg = load_run_config("tiny", overrides=[*DD, "model.frames=4", "model.token_stride=4", "model.size=16"])
    ds = PairDataset(samples, ExemplarPool(samples, exemplar_group(cfg.train)), cache, cfg.model, cfg.train, seed=0)
    by_id = {s.sample_id: s for s in samples}
    for i in range(len(samples)):
        item = ds[i]
        q = by_id[samples[i].sample_id]
        assert float(item["q_score"]) == pytest.approx(q.score / q.difficulty, rel=1e-6)
        e_target = float(item["e_score"])  # the exemplar has the query's difficulty, so its target is score/DD too
        assert any(abs(e_target - target_of(s, True)) < 1e-4 and s.difficulty == q.difficulty for s in samples)


def test_using_dd_without_difficulties_is_one_clear_error(tmp_path):
    samples, _ = make_dataset(tmp_path / "root", n_train=4, n_test=0, n_frames=4)
    no_dd = [replace(s, difficulty=None) for s in samples]
    with pytest.raises(InputError, match=r"train.using_dd=true .* 4 scored samples have none"):
        split_and_scale(no_dd, load_run_config("tiny", overrides=DD).train)
    split_and_scale(no_dd, load_run_config("tiny").train)  # without the option DD is not needed


def test_a_using_dd_run_predicts_dd_times_completeness_and_resume_keeps_the_target(tmp_path):
    samples, masks = make_dataset(tmp_path / "root", n_train=10, n_test=4, n_frames=16)
    store = make_store(tmp_path / "m.db", samples, masks)
    cfg = load_run_config("tiny", overrides=[*DD, "train.epochs=1", "train.val_fraction=0.2"])
    data = {"dataset": "finediving", "root": str(tmp_path / "root"), "annotations": None, "masks": str(store)}
    best = train(cfg, samples, open_mask_source(store), tmp_path / "root", tmp_path / "out", device="cpu", data=data)
    ckpt = torch.load(tmp_path / "out" / "last.pt", weights_only=True)
    assert ckpt["config"]["train"]["using_dd"] is True
    rows = list(csv.DictReader((tmp_path / "out" / "predictions_test.csv").open()))
    assert len(rows) == 4 and all(np.isfinite(float(r["pred"])) for r in rows)
    ev = evaluate_checkpoint(best, "test", device="cpu", samples=samples)
    assert [r["pred"] for r in ev.rows] == pytest.approx([float(r["pred"]) for r in rows], rel=1e-4)
    off = load_run_config("tiny", overrides=["train.epochs=2", "train.val_fraction=0.2", "train.score_norm=false"])
    on = load_run_config("tiny", overrides=[*DD, "train.epochs=2", "train.val_fraction=0.2", "train.score_norm=false"])
    train(on, samples, open_mask_source(store), tmp_path / "root", tmp_path / "b", device="cpu")
    with pytest.raises(ConfigError, match=r"train.using_dd true then, false now"):  # same scale (1): still refused
        train(off, samples, open_mask_source(store), tmp_path / "root", tmp_path / "b", device="cpu")
