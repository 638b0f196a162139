"""Audit of the Uni-FineParser metrics against scipy and the public TSA/FineParser/CoRe formulas, and of
the trainer/evaluation edge cases: a max_steps stop inside an epoch, damaged caches, eval on other data."""

from __future__ import annotations

import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _ufp_fixtures import make_dataset, make_store, one_torch_thread, write_finediving_annotations  # noqa: F401
from scipy import stats

from hmtools.datasets import load_dataset
from hmtools.errors import DataFormatError, InputError
from uni_fineparser import metrics
from uni_fineparser.cache import ClipCache
from uni_fineparser.config import load_run_config
from uni_fineparser.mask_source import open_mask_source
from uni_fineparser.run import evaluate_checkpoint, train_from_dataset
from uni_fineparser.train import train


def _public_rl2(pred: np.ndarray, true: np.ndarray) -> float:
    """TSA / FineParser / CoRe ``tools/runner.py``: the range of the evaluated split's true scores."""
    return float(np.power((pred - true) / (true.max() - true.min()), 2).sum() / true.shape[0])


def _public_segment_iou(target: np.ndarray, candidate: np.ndarray) -> float:
    """TSA / FineParser ``utils/misc.py:segment_iou`` for one pair."""
    tt1, tt2 = np.maximum(target[0], candidate[0]), np.minimum(target[1], candidate[1])
    inter = (tt2 - tt1).clip(0)
    union = (candidate[1] - candidate[0]) + (target[1] - target[0]) - inter
    return float(inter.astype(float) / (union + sys.float_info.epsilon))


def test_metrics_equal_scipy_and_the_public_formulas_on_random_inputs():
    rng = np.random.default_rng(7)
    for trial in range(50):
        n = int(rng.integers(2, 60))
        true = rng.integers(0, 12, n).astype(float) * 2.5  # many ties, as judges' scores have
        pred = true + rng.normal(0, 4, n) if trial % 2 else rng.integers(0, 5, n).astype(float)
        expect = stats.spearmanr(pred, true)[0]
        got = metrics.spearman_rho(pred, true)
        assert (math.isnan(got) and math.isnan(expect)) or got == pytest.approx(expect, abs=1e-12)
        assert metrics.rankdata(pred) == pytest.approx(stats.rankdata(pred))
        if np.ptp(true) > 0:
            assert metrics.relative_l2(pred, true) == pytest.approx(100 * _public_rl2(pred, true), rel=1e-12)
            assert metrics.score_report(pred, true)["rl2"] == pytest.approx(100 * _public_rl2(pred, true), rel=1e-12)
    segs_t = np.sort(rng.integers(0, 96, (200, 2)), axis=1)
    segs_p = np.sort(rng.integers(0, 96, (200, 2)), axis=1)
    segs_p[:20] = segs_t[:20]  # exact hits
    segs_t[0] = segs_p[0] = (40, 40)  # two zero-length segments: 0 in the public code (was 1.0 here)
    ours = metrics.segment_iou(segs_t, segs_p)
    public = [_public_segment_iou(a, b) for a, b in zip(segs_t, segs_p, strict=True)]
    assert ours == pytest.approx(public, abs=1e-12)
    for d in (0.5, 0.75):  # cal_tiou: the share of clips at or above the threshold
        assert metrics.aiou(ours, d) == pytest.approx(np.mean([v >= d for v in public]))
    rhos = rng.uniform(-0.9, 0.99, 6)
    assert metrics.fisher_z_mean(rhos) == pytest.approx(np.tanh(np.mean(np.arctanh(rhos))), abs=1e-12)


def test_nan_predictions_give_nan_rho_as_scipy():
    """A diverged model's NaN predictions ranked as the largest values and gave a finite rho (0.4 here;
    with all predictions NaN, the correlation of the sample order with the scores), which could pick best.pt."""
    true = np.array([1.0, 2, 3, 4, 5])
    pred = np.array([1.0, np.nan, 3, 4, 5])
    assert math.isnan(stats.spearmanr(pred, true)[0])
    assert math.isnan(metrics.spearman_rho(pred, true))
    assert math.isnan(metrics.spearman_rho(np.full(5, np.nan), true))
    assert math.isnan(metrics.score_report(pred, true)["rho"])


def _data(tmp: Path, n_train: int = 10, n_test: int = 2):
    samples, masks = make_dataset(tmp / "root", n_train=n_train, n_test=n_test, n_frames=16)
    return samples, make_store(tmp / "m.db", samples, masks)


def test_max_steps_stop_inside_an_epoch_resumes_exactly(tmp_path):
    """8 pairs at batch 2 = 4 steps an epoch. Stopped by max_steps after 2 (mid-epoch), the resumed run
    used to start the next epoch: 6 of 8 steps, other weights. Dropout on, so the RNG stream counts too."""
    samples, store = _data(tmp_path)

    def run(out: str, extra: list[str]) -> dict:
        overrides = ["train.epochs=2", "train.val_fraction=0.2", "model.dropout=0.2", *extra]
        cfg = load_run_config("tiny", overrides=overrides)
        train(cfg, samples, open_mask_source(store), tmp_path / "root", tmp_path / out, device="cpu")
        return torch.load(tmp_path / out / "last.pt", weights_only=True)

    full = run("a", [])
    stopped = run("b", ["train.max_steps=2"])
    assert stopped["step"] == 2 and stopped["epoch"] == 0 and stopped["partial"]["micro"] == 2
    assert stopped["history"] == []  # the unfinished epoch joins the history when it ends
    resumed = run("b", [])
    assert resumed["step"] == full["step"] == 8 and resumed["epoch"] == 2 and resumed["partial"] is None
    for k, v in full["model"].items():
        torch.testing.assert_close(resumed["model"][k], v, rtol=0, atol=1e-6, msg=k)
    for key in ("loss", "loss_e", "loss_a", "loss_t", "step"):
        assert [h[key] for h in resumed["history"]] == pytest.approx([h[key] for h in full["history"]], abs=1e-6)


@pytest.fixture(scope="module")
def fd_run(tmp_path_factory):
    """A one-epoch tiny run on the FineDiving layout (pickles + store), through the dataset adapter."""
    d = tmp_path_factory.mktemp("fd")
    made, masks = make_dataset(d / "root", n_train=10, n_test=4, n_frames=16)
    write_finediving_annotations(d / "root", made)
    store = make_store(d / "m.db", load_dataset("finediving", d / "root").samples, masks)
    cfg = load_run_config("tiny", overrides=["train.epochs=1", "train.val_fraction=0.2"])
    train_from_dataset(cfg, "finediving", d / "root", store, d / "out", device="cpu")
    return d


@pytest.mark.parametrize("damage", ["delete", "truncate", "index"])
def test_a_damaged_cache_is_one_clear_error_and_eval_rebuilds_it(fd_run, damage):
    folder = next(p for p in (fd_run / "out" / "cache").iterdir() if p.is_dir())
    target = folder / ("index.json" if damage == "index" else "masks.npy")
    data = target.read_bytes()
    if damage == "delete":
        target.unlink()
    else:
        target.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"clip cache .* is damaged .*delete that folder and rerun"):
        ClipCache(folder)
    before = evaluate_checkpoint(fd_run / "out" / "best.pt", device="cpu").metrics  # rebuilt, not a traceback
    assert target.read_bytes() == data  # the same content again
    assert evaluate_checkpoint(fd_run / "out" / "best.pt", device="cpu").metrics == before


def test_eval_of_a_checkpoint_on_other_data_is_one_line_exit_2(fd_run, tmp_path, capsys):
    """Another dataset (or version) under the recorded root: before, eval scored it silently (an empty
    validation split, exemplars and score units of data the model never saw)."""
    from hmtools.cli import main

    other, masks = make_dataset(tmp_path / "root", n_train=10, n_test=4, n_frames=16, seed=3)
    store = make_store(tmp_path / "m.db", other, masks)
    best = fd_run / "out" / "best.pt"
    with pytest.raises(InputError, match=r"trained on other samples \(training scores span"):
        evaluate_checkpoint(best, device="cpu", samples=other, masks=store)
    ann = fd_run / "root" / "Annotations"
    saved = {p.name: p.read_bytes() for p in ann.iterdir()}
    try:  # a new version of the annotations: every training sample is now a test sample
        splits = pickle.loads(saved["train_split.pkl"]) + pickle.loads(saved["test_split.pkl"])
        (ann / "train_split.pkl").write_bytes(pickle.dumps(splits[4:]))
        (ann / "test_split.pkl").write_bytes(pickle.dumps(splits[:4]))
        with pytest.raises(SystemExit) as exc:
            main(["eval", "--checkpoint", str(best), "--device", "cpu"])
    finally:
        for name, blob in saved.items():
            (ann / name).write_bytes(blob)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("hmtools: error: checkpoint ") and "was trained on other samples" in err[0]
    assert evaluate_checkpoint(best, device="cpu").metrics["n"] == 4  # the data it was trained on still works


def test_eval_with_a_custom_cache_dir_that_is_gone_uses_the_run_folder(tmp_path):
    """``train.cache_dir`` on another disk or machine: eval recreated that path and rebuilt the cache there
    (or failed to create it); now it uses, or builds, ``<run>/cache`` beside the checkpoint."""
    import shutil

    samples, store = _data(tmp_path)
    cfg = load_run_config("tiny", overrides=["train.epochs=1", "train.val_fraction=0.2", f"train.cache_dir={tmp_path / 'ssd'}"])  # fmt: skip
    train(cfg, samples, open_mask_source(store), tmp_path / "root", tmp_path / "out", device="cpu")
    shutil.rmtree(tmp_path / "ssd")
    res = evaluate_checkpoint(tmp_path / "out" / "best.pt", device="cpu", samples=samples, masks=store)
    assert res.metrics["n"] == 2
    assert not (tmp_path / "ssd").exists() and len(list((tmp_path / "out" / "cache").iterdir())) == 1


def test_best_checkpoint_is_chosen_on_validation_only(tmp_path, monkeypatch):
    """Every evaluation during training sees the validation samples only; the test split is scored once,
    at the end, at best.pt, whose metric is the best validation rho of the history."""
    train_mod = sys.modules["uni_fineparser.train"]  # the package re-exports train(), hiding the module

    samples, store = _data(tmp_path, n_train=12, n_test=4)
    seen: list[list[str]] = []
    real = train_mod.evaluate_split

    def spy(model, queries, *args, **kwargs):
        seen.append([q.sample_id for q in queries])
        return real(model, queries, *args, **kwargs)

    monkeypatch.setattr(train_mod, "evaluate_split", spy)
    cfg = load_run_config("tiny", overrides=["train.epochs=3", "train.val_fraction=0.25"])
    train(cfg, samples, open_mask_source(store), tmp_path / "root", tmp_path / "out", device="cpu")
    last = torch.load(tmp_path / "out" / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "out" / "best.pt", weights_only=True)
    val = last["splits"]["val"]
    test = [s.sample_id for s in samples if s.split == "test"]
    assert seen == [val, val, val, test]
    rhos = [
        h["val_rho"] if h["val_rho"] is not None and not math.isnan(h["val_rho"]) else -1.0 for h in last["history"]
    ]
    assert best["best_metric"] == max(rhos) and best["epoch"] == 1 + rhos.index(max(rhos))


def test_eval_of_an_empty_split_is_refused(tmp_path):
    """``--split val`` of a run trained with ``val_fraction=0`` printed NaNs with n = 0 as a result."""
    samples, store = _data(tmp_path)
    cfg = load_run_config("tiny", overrides=["train.epochs=1", "train.val_fraction=0"])
    train(cfg, samples, open_mask_source(store), tmp_path / "root", tmp_path / "out", device="cpu")
    best = tmp_path / "out" / "best.pt"
    with pytest.raises(
        InputError, match=r"the val split .* holds no scored samples \(trained with train.val_fraction=0\)"
    ):
        evaluate_checkpoint(best, "val", device="cpu", samples=samples, masks=store)
    assert evaluate_checkpoint(best, "test", device="cpu", samples=samples, masks=store).metrics["n"] == 2
