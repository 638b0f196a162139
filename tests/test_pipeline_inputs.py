"""build-masks on awkward input: devices per rank, bad settings and weights, frames of another size, preview."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from hmtools.cli import main
from hmtools.config import load_config
from hmtools.errors import ConfigError, InputError
from hmtools.masks import decode_rle
from hmtools.store import MaskStore
from pipelines.config import BuildConfig, FramesConfig
from pipelines.run import Models, build_sample_masks
from tests._pipeline_fixtures import BlobDetector, ColourSegmenter, write_aqa7_splits, write_clip
from tests._pipeline_worker import samples as worker_samples

CFG = BuildConfig(device="cpu", frames=FramesConfig(batch_size=4, workers=1, prefetch=1))


def _fake_gpus(monkeypatch, count: int) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_bare_cuda_means_this_ranks_gpu(monkeypatch) -> None:
    """Under torchrun ``--device cuda`` must not put every rank's models on GPU 0."""
    from hmtools.devices import resolve_device

    _fake_gpus(monkeypatch, 4)
    assert resolve_device("cuda", 2) == "cuda:2"
    assert resolve_device("auto", 3) == "cuda:3"
    assert resolve_device("cuda:1", 3) == "cuda:1"
    assert resolve_device("cpu", 3) == "cpu"


def test_bad_or_absent_device_is_one_input_error(monkeypatch) -> None:
    from hmtools.devices import resolve_device

    _fake_gpus(monkeypatch, 1)
    with pytest.raises(InputError, match="not a torch device"):
        resolve_device("gpu")
    with pytest.raises(InputError, match="needs CUDA device 3"):
        resolve_device("cuda:3")
    _fake_gpus(monkeypatch, 0)
    with pytest.raises(InputError, match="needs CUDA device 0"):
        resolve_device("cuda")


def test_nccl_rank_pins_its_own_gpu_before_joining(monkeypatch) -> None:
    """NCCL object collectives (the summary gather) run on the *current* CUDA device: unless each
    rank sets it, every rank uses GPU 0 and NCCL fails (a rank with no sample to build, or the
    lite detector, never lets ultralytics set it)."""
    import torch
    import torch.distributed as dist

    from pipelines.distributed import Rank, process_group

    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", torch.device(d))))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append(("init", backend)))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append(("destroy", None)))
    with process_group(Rank(1, 2, 1), "cuda:1"):
        pass
    assert calls == [("set_device", torch.device("cuda:1")), ("init", "nccl"), ("destroy", None)]
    calls.clear()
    with process_group(Rank(1, 2, 1), "cpu"):
        pass
    assert calls == [("init", "gloo"), ("destroy", None)]


@pytest.mark.parametrize(
    "override", ["frames.batch_size=0", "frames.batch_size=-4", "frames.prefetch=-1", "segment.dtype=fp16"]
)
def test_bad_build_settings_are_config_errors(override: str) -> None:
    """``--batch-size 0`` made every batch empty (each sample failed as 'no frame could be read'),
    a negative one made overlapping batches; a wrong dtype was a traceback from inside SAM."""
    with pytest.raises(ConfigError):
        load_config(BuildConfig, None, [override])


def _dataset(root: Path) -> None:
    write_clip(root, "diving-out/001", n=4)
    write_aqa7_splits(root, 1)


@pytest.mark.parametrize("flags", [["--batch-size", "0"], ["--device", "gpu"]])
def test_bad_flags_exit_2_with_one_line(tmp_path, capsys, flags) -> None:
    _dataset(tmp_path)
    args = ["build-masks", "--dataset", "aqa7", "--root", str(tmp_path), "--store", str(tmp_path / "m.db")]
    with pytest.raises(SystemExit) as e:
        main([*args, "--detector", "lite", "--segmenter", "lite", *flags])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("hmtools: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_frame_of_another_size_gets_a_mask_of_its_own_size(tmp_path) -> None:
    """A frame whose size differs from the clip's is flagged; its mask must still be at its own
    resolution, or the store records a wrong frame size and an annotator's fix is refused."""
    import cv2

    _dataset(tmp_path)
    sample = worker_samples(tmp_path, 1)[0]
    odd = tmp_path / sample.frames[2]
    cv2.imwrite(str(odd), cv2.resize(cv2.imread(str(odd)), (200, 120)))
    writes = build_sample_masks(sample, tmp_path, Models(BlobDetector(), ColourSegmenter()), CFG)
    assert writes[2].status == "flagged" and "size differs" in writes[2].reason
    assert decode_rle(writes[2].rle).shape == (120, 200)
    assert [decode_rle(w.rle).shape for i, w in enumerate(writes) if i != 2] == [(96, 160)] * 3
    with MaskStore(tmp_path / "m.db") as st:
        st.add_samples([sample])
        st.write_sample_masks(sample.sample_id, writes, author="t")
        assert (st.frames(sample.sample_id)[2].height, st.frames(sample.sample_id)[2].width) == (120, 200)


def test_preview_of_an_unbuilt_sample_with_a_missing_frame(tmp_path) -> None:
    """A frame with no mask and no file is drawn on a 240x320 placeholder; the contact sheet used
    to crash on it when it was taller than the first thumbnail."""
    from pipelines.preview import write_preview

    _dataset(tmp_path)
    sample = worker_samples(tmp_path, 1)[0]
    (tmp_path / sample.frames[3]).unlink()
    with MaskStore(tmp_path / "m.db") as st:
        st.add_samples([sample])
    video, sheet = write_preview(tmp_path / "m.db", tmp_path, sample.sample_id, tmp_path / "p.gif")
    assert video.stat().st_size > 0 and sheet.is_file()
    assert np.asarray(__import__("cv2").imread(str(sheet))).shape[1] == 4 * 320


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_corrupt_detector_weights_are_one_input_error(tmp_path, content: bytes) -> None:
    """ultralytics raises TypeError for an empty or truncated .pt: a traceback, not exit 2."""
    if importlib.util.find_spec("ultralytics") is None:  # not imported here: that patches PIL process-wide
        pytest.skip("ultralytics is not installed")
    from pipelines.detect import build_detector

    path = tmp_path / "yolo11m.pt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"yolo11m.pt cannot be loaded .*pass --detector FILE"):
        build_detector(str(path), "cpu")


def test_sam_checkpoint_of_another_model_is_one_input_error(tmp_path) -> None:
    """``--sam-checkpoint`` of another SAM size (the default segmenter is sam_vit_h) or a corrupt
    file raised torch's multi-page size-mismatch RuntimeError."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    from pipelines.segment import build_segmenter
    from pipelines.segment_tiny import build_tiny_sam

    other = tmp_path / "other.pth"
    torch.save(build_tiny_sam(0).state_dict(), other)
    with pytest.raises(InputError, match=r"does not load as sam_vit_b .*sam_vit_b_01ec64.pth") as e:
        build_segmenter("sam_vit_b", other, "cpu")
    assert "\n" not in str(e.value) and len(str(e.value)) < 300 + len(str(other))
    (tmp_path / "cut.pth").write_bytes(other.read_bytes()[:1000])
    with pytest.raises(InputError, match="does not load as sam_vit_b"):
        build_segmenter("sam_vit_b", tmp_path / "cut.pth", "cpu")
