"""Training end to end on a synthetic, learnable task; evaluation, resume, explain, bf16, CLI."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from _ufp_fixtures import make_dataset, make_store, one_torch_thread, write_finediving_annotations  # noqa: F401
from typer.testing import CliRunner

from hmtools.cli import app
from hmtools.errors import ConfigError, HMToolsError, InputError
from uni_fineparser.config import load_run_config
from uni_fineparser.evaluate import autocast
from uni_fineparser.mask_source import open_mask_source
from uni_fineparser.model import UniFineParser
from uni_fineparser.run import evaluate_checkpoint
from uni_fineparser.train import compute_losses, make_optimizer, make_scheduler, train

LEARN = ["train.epochs=8", "train.lr=3e-3", "train.val_fraction=0.25"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """32 train / 16 test synthetic clips, masks in a store, one tiny model trained for 96 steps."""
    d = tmp_path_factory.mktemp("ufp")
    samples, masks = make_dataset(d / "root", n_train=32, n_test=16, n_frames=20)
    store = make_store(d / "masks.db", samples, masks)
    cfg = load_run_config("tiny", overrides=LEARN)
    data = {"dataset": "finediving", "root": str(d / "root"), "annotations": None, "masks": str(store)}
    best = train(cfg, samples, open_mask_source(store), d / "root", d / "out", device="cpu", data=data)
    return d, samples, store, best


def test_tiny_model_learns_the_synthetic_score(trained):
    d, _, _, best = trained
    out = d / "out"
    for name in ("best.pt", "last.pt", "metrics.json", "predictions_test.csv", "curves.png", "config.yaml"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["test"]["n"] == 16
    assert m["test"]["rho"] >= 0.7, m
    assert m["test"]["aiou_0.5"] >= 0.5, m  # the step boundaries are learnt too
    rows = list(csv.DictReader((out / "predictions_test.csv").open()))
    assert len(rows) == 16 and {"sample_id", "true", "pred", "step0_contrib", "seg_iou"} <= set(rows[0])
    ckpt = torch.load(best, weights_only=True)
    assert {"model", "optimizer", "scheduler", "config", "step", "best_metric", "data"} <= set(ckpt)
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_places_the_model_with_the_runs_device_settings(trained, monkeypatch):
    """``hmtools eval`` gets the trainer's channels-last / cuDNN settings through the same function."""
    import uni_fineparser.run as run_mod

    calls = []
    real = run_mod.place_model
    monkeypatch.setattr(run_mod, "place_model", lambda m, t, dev: (calls.append((t, dev)), real(m, t, dev)))
    _, samples, _, best = trained
    opened = run_mod.open_run(best, device="cpu", samples=samples)
    assert calls == [(opened.cfg.train, torch.device("cpu"))]
    assert not opened.model.channels_last and not opened.model.training  # CPU: only moved, then eval mode


def test_eval_cudnn_benchmark_flag_overrides_the_runs_setting(trained, monkeypatch):
    """``hmtools eval --cudnn-benchmark`` / ``--no-cudnn-benchmark`` reach place_model; without either
    the run's own train.cudnn_benchmark (false here) is used."""
    import uni_fineparser.run as run_mod

    seen = []
    real = run_mod.place_model
    monkeypatch.setattr(run_mod, "place_model", lambda m, t, dev: (seen.append(t.cudnn_benchmark), real(m, t, dev)))
    d, samples, _, best = trained
    monkeypatch.setattr(run_mod, "load_samples", lambda data: (samples, d / "root"))  # no annotation files here
    runner = CliRunner()
    for flag in ([], ["--cudnn-benchmark"], ["--no-cudnn-benchmark"]):
        res = runner.invoke(app, ["eval", "--checkpoint", str(best), "--json", "--device", "cpu", *flag])
        assert res.exit_code == 0, res.output
    assert seen == [False, True, False]


def test_place_model_on_cpu_only_moves(monkeypatch):
    from uni_fineparser.model import UniFineParser
    from uni_fineparser.train import place_model

    cfg = load_run_config("tiny", overrides=["train.channels_last=true", "train.cudnn_benchmark=true"])
    model = UniFineParser(cfg.model)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    place_model(model, cfg.train, torch.device("cpu"))
    assert not model.channels_last and torch.backends.cudnn.benchmark is False
    conv = next(p for p in model.parameters() if p.dim() == 5)
    assert conv.is_contiguous()  # default layout, not channels_last_3d


def test_schedule_follows_the_reference_recipe_per_group():
    """lr 1e-3, backbone x0.1, floor 0.1 x lr, 5 warmup epochs of 400 (timm's CosineLRScheduler in the
    reference, lr_min = warmup_lr_init = 1e-4): the backbone stays at 1e-4; the head warms up from the floor
    to 1e-3 over 5 epochs and decays back to 1e-4."""
    cfg = load_run_config("tiny", overrides=["train.epochs=400", "train.warmup_epochs=5"])
    opt = make_optimizer(UniFineParser(cfg.model), cfg, torch.device("cpu"))
    sched = make_scheduler(opt, cfg.train, steps_per_epoch=3)
    lrs = []
    for _ in range(400 * 3):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    backbone, head = np.array(lrs).T
    assert np.allclose(backbone, 1e-4)
    assert head[0] == pytest.approx(1e-4 + 0.9e-3 / 15)
    assert head.argmax() == 14 and head.max() == pytest.approx(1e-3)
    assert np.all(np.diff(head[:15]) > 0) and np.all(np.diff(head[15:]) <= 1e-12)
    assert head[-1] == pytest.approx(1e-4, rel=1e-3)


def test_cached_evaluation_equals_uncached(trained):
    _, samples, _, best = trained
    fast = evaluate_checkpoint(best, "test", device="cpu", samples=samples, voters=3)
    slow = evaluate_checkpoint(best, "test", device="cpu", samples=samples, voters=3, reuse_features=False)
    assert [r["sample_id"] for r in fast.rows] == [r["sample_id"] for r in slow.rows]
    np.testing.assert_allclose([r["pred"] for r in fast.rows], [r["pred"] for r in slow.rows], rtol=1e-4, atol=1e-3)
    m = json.loads((best.parent / "metrics.json").read_text())["test"]
    assert fast.metrics["rho"] == pytest.approx(m["rho"], abs=1e-6)


def test_explain_writes_contact_sheet_and_mp4(trained, tmp_path):
    from uni_fineparser.explain import explain_sample

    _, samples, _, best = trained
    sid = samples[-1].sample_id
    ex = explain_sample(best, sid, tmp_path / "sheet.png", device="cpu", samples=samples, mp4=tmp_path / "a.mp4")
    assert (tmp_path / "sheet.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "a.mp4").stat().st_size > 1000
    assert ex.attention.shape == (16, 32, 32) and ex.posterior.shape == (16, 3)
    assert ex.contributions.shape == (3,) and ex.bounds_true is not None and len(ex.voters) == 3


def test_explain_on_a_full_disk_keeps_the_earlier_sheet_and_mp4(trained, tmp_path, monkeypatch):
    """Both were written in place: a full disk (OpenCV drops frames silently) or a kill left them truncated."""
    from uni_fineparser.cache import import_cv2
    from uni_fineparser.explain import explain_sample

    _, samples, _, best = trained
    sheet, mp4 = tmp_path / "sheet.png", tmp_path / "a.mp4"
    explain_sample(best, samples[-1].sample_id, sheet, device="cpu", samples=samples, mp4=mp4)
    before = sheet.read_bytes(), mp4.read_bytes()
    cv2 = import_cv2()

    class FullDiskWriter:
        def __init__(self, path, *args):
            Path(path).write_bytes(b"\0" * 48)

        def isOpened(self):  # noqa: N802 (OpenCV's name)
            return True

        def write(self, frame):
            pass

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoWriter", FullDiskWriter)
    with pytest.raises(HMToolsError, match="disk full"):
        explain_sample(best, samples[0].sample_id, sheet, device="cpu", samples=samples, mp4=mp4)
    assert mp4.read_bytes() == before[1] and sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "sheet.png"]


def _short_run(root: Path, out: Path, samples, store, extra: list[str]) -> dict:
    cfg = load_run_config("tiny", overrides=["train.epochs=2", "train.val_fraction=0.2", *extra])
    train(cfg, samples, open_mask_source(store), root, out, device="cpu")
    return torch.load(out / "last.pt", weights_only=True)


def test_resume_continues_exactly_where_the_checkpoint_left(tmp_path, caplog):
    samples, masks = make_dataset(tmp_path / "root", n_train=10, n_test=2, n_frames=16)
    store = make_store(tmp_path / "m.db", samples, masks)
    root = tmp_path / "root"
    full = _short_run(root, tmp_path / "a", samples, store, [])
    steps_per_epoch = full["step"] // 2
    first = _short_run(root, tmp_path / "b", samples, store, [f"train.max_steps={steps_per_epoch}"])  # killed
    assert first["epoch"] == 1 and first["step"] == steps_per_epoch
    resumed = _short_run(root, tmp_path / "b", samples, store, [])
    assert resumed["step"] == full["step"] and resumed["epoch"] == 2
    for k, v in full["model"].items():
        torch.testing.assert_close(resumed["model"][k], v, rtol=0, atol=1e-6, msg=k)
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in full["history"]], abs=1e-6)
    # a new learning rate on resume cannot apply (the optimizer state keeps the old one): it is said, not silent
    with caplog.at_level("WARNING", logger="uni_fineparser.train"):
        _short_run(root, tmp_path / "b", samples, store, ["train.epochs=3", "train.lr=0.5"])
    assert "do not apply: lr " in caplog.text and "-> 0.5" in caplog.text


def test_checkpoint_from_another_config_is_refused(trained):
    d, samples, store, _ = trained
    cfg = load_run_config("tiny", overrides=[*LEARN, "model.d_model=16"])
    with pytest.raises(ConfigError, match=r"d_model: 32 != 16"):
        train(cfg, samples, open_mask_source(store), d / "root", d / "out", device="cpu")


def test_bf16_autocast_matches_fp32_loss_curve(trained):
    """Same init and batches, 12 optimizer steps at lr 1e-3: the bf16 loss curve tracks fp32.

    Tolerances: first step within 2%, every step within 25%, curve mean within 5% (bf16 rounding
    makes the two trajectories drift apart slowly; a broken bf16 path is off by far more).
    """
    from torch.utils.data import DataLoader

    from uni_fineparser.cache import ClipCache
    from uni_fineparser.data import ExemplarPool, PairDataset

    d, samples, _, _ = trained
    cache = ClipCache(next(p for p in (d / "out" / "cache").iterdir() if p.is_dir()))
    train_s = [s for s in samples if s.split == "train"]
    curves = {}
    for amp in ("none", "bf16"):
        cfg = load_run_config("tiny", overrides=[f"train.amp={amp}"])
        torch.manual_seed(0)
        model = UniFineParser(cfg.model)
        opt = make_optimizer(model, cfg, torch.device("cpu"))
        ds = PairDataset(train_s, ExemplarPool(train_s, "auto"), cache, cfg.model, cfg.train, seed=0)
        losses = []
        for batch in list(DataLoader(ds, batch_size=2))[:12]:
            with autocast(torch.device("cpu"), amp):
                out = model(batch["q_video"], batch["e_video"])
            loss, _ = compute_losses(out, batch, cfg, 80.0)
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(float(loss.detach()))
        curves[amp] = np.array(losses)
    assert np.isfinite(curves["bf16"]).all()
    rel = np.abs(curves["bf16"] - curves["none"]) / np.abs(curves["none"])
    print(rel, curves)
    assert rel[0] <= 0.02 and rel.max() <= 0.25, curves
    assert abs(curves["bf16"].mean() - curves["none"].mean()) <= 0.05 * curves["none"].mean(), curves


def test_cli_train_then_eval_json(tmp_path, monkeypatch):
    """CLI wiring and bad input with the dataset adapter patched (the real adapter: next test)."""
    import uni_fineparser.run as run

    samples, masks = make_dataset(tmp_path / "root", n_train=8, n_test=4, n_frames=16)
    store = make_store(tmp_path / "m.db", samples, masks)
    monkeypatch.setattr(run, "load_samples", lambda data: (samples, tmp_path / "root"))
    runner = CliRunner()
    args = ["train", "--dataset", "finediving", "--root", str(tmp_path / "root"), "--masks", str(store)]
    res = runner.invoke(
        app,
        [
            *args,
            "--out",
            str(tmp_path / "out"),
            "--preset",
            "tiny",
            "--device",
            "cpu",
            "--set",
            "train.epochs=1",
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", "--checkpoint", str(tmp_path / "out" / "best.pt"), "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output.strip().splitlines()[-1])
    assert set(report) == {"rho", "rl2", "aiou_0.5", "aiou_0.75", "mask_iou", "n"} and report["n"] == 4
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "bad"), "--preset", "tiny", "--set", "train.lrr=1"])
    assert isinstance(res.exception, ConfigError) and res.exception.exit_code == 2
    assert "did you mean 'lr'" in str(res.exception)
    samples2 = [replace(s, split="test") for s in samples]
    monkeypatch.setattr(run, "load_samples", lambda data: (samples2, tmp_path / "root"))
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "none"), "--preset", "tiny", "--device", "cpu"])
    assert isinstance(res.exception, InputError) and res.exception.exit_code == 2
    assert "need at least 2 training samples" in str(res.exception)


def test_cli_end_to_end_on_finediving_layout_with_store_masks(tmp_path):
    """`hmtools train --preset tiny` then `hmtools eval --json` and `hmtools explain` through the real
    FineDiving adapter: frames in FineDiving's layout, the six annotation pickles, masks in a store."""
    from hmtools.datasets import load_dataset

    made, masks = make_dataset(tmp_path / "root", n_train=8, n_test=4, n_frames=16)
    write_finediving_annotations(tmp_path / "root", made)
    samples = load_dataset("finediving", tmp_path / "root").samples  # keys relative to the frame folder
    assert sorted(s.sample_id for s in samples) == sorted(s.sample_id for s in made)
    store = make_store(tmp_path / "m.db", samples, masks)
    runner = CliRunner()
    out = tmp_path / "out"
    args = ["--dataset", "finediving", "--root", str(tmp_path / "root"), "--masks", str(store), "--out", str(out)]
    res = runner.invoke(app, ["train", *args, "--preset", "tiny", "--device", "cpu", "--set", "train.epochs=1"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["n"] == 4
    res = runner.invoke(app, ["eval", "--checkpoint", str(out / "best.pt"), "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output.strip().splitlines()[-1])
    assert set(report) == {"rho", "rl2", "aiou_0.5", "aiou_0.75", "mask_iou", "n"} and report["n"] == 4
    sid = samples[-1].sample_id
    res = runner.invoke(
        app,
        [
            "explain",
            "--checkpoint",
            str(out / "best.pt"),
            "--sample",
            sid,
            "--out",
            str(tmp_path / "x.png"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


def test_aqa7_trains_one_model_per_class_and_fisher_z_averages(tmp_path):
    from uni_fineparser.metrics import fisher_z_mean
    from uni_fineparser.run import train_per_class

    made, masks = make_dataset(tmp_path / "root", n_train=12, n_test=6, n_frames=16)
    samples = [replace(s, dataset="aqa7", action_class=("diving", "gym_vault")[i % 2]) for i, s in enumerate(made)]
    store = make_store(tmp_path / "m.db", samples, masks)
    cfg = load_run_config("tiny", overrides=["train.epochs=1", "train.val_fraction=0.2"])
    summary = train_per_class(cfg, samples, open_mask_source(store), tmp_path / "root", tmp_path / "out", device="cpu")
    assert set(summary["per_class"]) == {"diving", "gym_vault"}
    assert all(summary["per_class"][c]["n"] == 3 for c in ("diving", "gym_vault"))
    rhos = [summary["per_class"][c]["rho"] for c in ("diving", "gym_vault")]
    assert summary["rho_fisher_z"] == pytest.approx(fisher_z_mean(rhos))
    ckpt = torch.load(tmp_path / "out" / "diving" / "best.pt", weights_only=True)
    assert ckpt["data"]["filter"] == {"action_class": "diving"}
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["rl2_mean"] == pytest.approx(summary["rl2_mean"])


def test_explain_unknown_sample_and_eval_unknown_split_fail_clearly(trained):
    from uni_fineparser.explain import explain_sample

    _, samples, _, best = trained
    with pytest.raises(InputError, match="no sample 'nope/1'"):
        explain_sample(best, "nope/1", "/dev/null", device="cpu", samples=samples)
    with pytest.raises(InputError, match="--split must be"):
        evaluate_checkpoint(best, "dev", device="cpu", samples=samples)


def test_dataset_without_step_labels_trains_and_reports_null_aiou(tmp_path):
    """MTL-AQA/AQA-7-like samples: no step labels -> L_T is 0, AIoU is NaN (null in metrics.json)."""
    made, masks = make_dataset(tmp_path / "root", n_train=8, n_test=4, n_frames=16)
    samples = [replace(s, dataset="mtl-aqa", frame_labels=None, step_transitions=None) for s in made]
    store = make_store(tmp_path / "m.db", samples, masks)
    cfg = load_run_config("tiny", overrides=["train.epochs=1"])
    train(cfg, samples, open_mask_source(store), tmp_path / "root", tmp_path / "out", device="cpu")
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["test"]["aiou_0.5"] is None and m["test"]["n"] == 4 and m["test"]["rho"] is not None
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert history[0]["loss_t"] == 0.0 and history[0]["loss_a"] > 0
