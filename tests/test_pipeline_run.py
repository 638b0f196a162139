"""One sample through the run loop: fakes that read pixels, tiny SAM, corrupt frames, sync divers."""

from __future__ import annotations

import numpy as np
import pytest

from hmtools.masks import decode_rle
from hmtools.schema import Sample
from pipelines.config import BuildConfig, FramesConfig
from pipelines.frames_in import iter_frame_batches, read_frame
from pipelines.run import Models, build_sample_masks
from pipelines.select import SMALL_ATHLETE
from tests._pipeline_fixtures import BlobDetector, ColourSegmenter, blob_frame, write_clip

CFG = BuildConfig(frames=FramesConfig(batch_size=4, workers=2, prefetch=1))


def _sample(keys, sid="diving/001", action_class="diving") -> Sample:
    return Sample(sample_id=sid, dataset="aqa7", frames=tuple(keys), split="train", action_class=action_class)


def _truth(root, key):
    img, _ = read_frame(root, key)
    return np.abs(img.astype(int) - (235, 190, 160)).sum(-1) < 60


def test_masks_follow_the_athlete_not_the_judges(tmp_path) -> None:
    keys, _ = write_clip(tmp_path, "diving-out/001")
    det, seg = BlobDetector(), ColourSegmenter()
    writes = build_sample_masks(_sample(keys), tmp_path, Models(det, seg), CFG)
    assert [w.frame_idx for w in writes] == list(range(12))
    for key, w in zip(keys, writes, strict=True):
        mask, truth = decode_rle(w.rle), _truth(tmp_path, key)
        assert (mask & truth).sum() / (mask | truth).sum() > 0.9
        assert not mask[:, :20].any() and not mask[:, -20:].any()  # judges stay background
        assert w.source == "auto" and w.score == pytest.approx(0.95)
        assert w.tracks and w.tracks[0]["track"] == 0
    assert max(det.calls) <= 4  # batched by frames.batch_size
    assert seg.embedded == 12


def test_corrupt_and_missing_frames_are_flagged_and_carried(tmp_path) -> None:
    keys, _ = write_clip(tmp_path, "diving-out/002", corrupt=(5,))
    keys = [*keys, "diving-out/002/img_00099.jpg"]  # listed but absent
    writes = build_sample_masks(_sample(keys), tmp_path, Models(BlobDetector(), ColourSegmenter()), CFG)
    assert len(writes) == 13
    bad = writes[5]
    assert bad.status == "flagged" and bad.reason == "unreadable frame: cannot decode" and bad.score is None
    assert np.array_equal(decode_rle(bad.rle), decode_rle(writes[4].rle))  # carried from the neighbour
    assert writes[12].status == "flagged" and writes[12].reason == "unreadable frame: missing file"
    assert all(w.status == "unreviewed" for i, w in enumerate(writes) if i not in (5, 12))


def test_undetected_frames_get_interpolated_boxes_and_flags(tmp_path) -> None:
    keys, _ = write_clip(tmp_path, "diving-out/003")
    det, missed, state = BlobDetector(), {5, 6}, {"t": 0}

    def detect(frames):  # misses the athlete in frames 5 and 6 (mid-somersault)
        res = det(frames)
        for i in range(len(res)):
            if state["t"] + i in missed:
                res[i] = res[i][(res[i][:, 0] < 20) | (res[i][:, 0] > 140)]  # only the judges remain
        state["t"] += len(frames)
        return res

    writes = build_sample_masks(_sample(keys), tmp_path, Models(detect, ColourSegmenter()), CFG)
    for t in missed:
        assert writes[t].status == "flagged" and "interpolated" in writes[t].reason
        assert decode_rle(writes[t].rle).sum() > 50  # still segmented from the interpolated box
    assert writes[4].status == "unreviewed"


def test_synchronized_sample_keeps_two_athletes(tmp_path) -> None:
    import cv2

    keys, _ = write_clip(tmp_path, "sync_diving_3m-out/001", w=200)
    for k in keys:  # a second diver beside the first
        img = cv2.imread(str(tmp_path / k))
        img[:, 100:140] = img[:, 50:90]
        cv2.imwrite(str(tmp_path / k), img)
    s = _sample(keys, "sync_diving_3m/001", "sync_diving_3m")
    writes = build_sample_masks(s, tmp_path, Models(BlobDetector(), ColourSegmenter()), CFG)
    for w in writes:
        assert len(w.tracks) == 2 and all(p["counts"] for p in w.tracks)
        m = decode_rle(w.rle)
        assert m[:, 50:90].any() and m[:, 100:140].any()


def test_tiny_sam_through_the_run_loop(tmp_path) -> None:
    pytest.importorskip("segment_anything")
    from pipelines.segment_tiny import build_tiny_sam_segmenter

    keys, _ = write_clip(tmp_path, "diving-out/004", n=6)
    seg = build_tiny_sam_segmenter(seed=0, batch_size=3)
    writes = build_sample_masks(_sample(keys), tmp_path, Models(BlobDetector(), seg), CFG)
    assert len(writes) == 6
    for w in writes:
        assert w.rle["size"] == [96, 160] and w.score is not None
        assert w.status in ("unreviewed", "flagged")  # random weights: flags are expected, never a crash


def test_frame_batches_are_ordered_and_bounded(tmp_path) -> None:
    keys, _ = write_clip(tmp_path, "diving-out/005", n=10)
    batches = list(iter_frame_batches(tmp_path, keys, 3, workers=2, prefetch=1))
    assert [b.start for b in batches] == [0, 3, 6, 9]
    assert [len(b.images) for b in batches] == [3, 3, 3, 1]
    assert all(img.shape == (96, 160, 3) and img.dtype == np.uint8 for b in batches for img in b.images)


def test_one_bad_mask_flags_only_its_own_frame(tmp_path) -> None:
    keys, boxes = write_clip(tmp_path, "diving-out/006")
    glitch_y = (boxes[6, 1] + boxes[6, 3]) / 2

    class GlitchSegmenter(ColourSegmenter):
        """Like ColourSegmenter, but frame 6 gets a mask three times the size of the athlete box."""

        def predict_batch(self, embs, prompts):
            out = super().predict_batch(embs, prompts)
            for i, p in enumerate(prompts):
                if abs((p.box[1] + p.box[3]) / 2 - glitch_y) < 2:
                    m = np.zeros_like(out[i][0])
                    x1, y1, x2, y2 = p.box.astype(int)
                    m[max(0, y1 - 10) : y2 + 10, max(0, x1 - 12) : x2 + 12] = True
                    out[i] = (m, out[i][1], out[i][2])
            return out

    writes = build_sample_masks(_sample(keys), tmp_path, Models(BlobDetector(), GlitchSegmenter()), CFG)
    assert writes[6].status == "flagged" and "jumped" in writes[6].reason
    assert [i for i, w in enumerate(writes) if w.status == "flagged"] == [6]


class _EmbedLogging(ColourSegmenter):
    """ColourSegmenter that logs its embed calls (the run loop's order of device work)."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def embed(self, images):
        self.log.append(f"embed {len(images)}")
        return super().embed(images)


def _run_logged(tmp_path, seg: _EmbedLogging) -> list[str]:
    keys, _ = write_clip(tmp_path, "diving-out/007")  # 12 frames, batches of 4
    tick = lambda n: seg.log.append(f"done {n}")  # noqa: E731
    build_sample_masks(_sample(keys), tmp_path, Models(BlobDetector(), seg), CFG, tick=tick)
    return seg.log


def test_device_encodes_the_next_batch_while_the_cpu_finishes_this_one(tmp_path) -> None:
    """With an asynchronous decoder (SAM on CUDA), batch k+1's encoder and decoder are queued
    before the CPU waits for batch k's masks and finishes it."""

    class Queued(_EmbedLogging):
        def predict_batch_async(self, embs, prompts):
            self.log.append(f"launch {len(embs)}")
            preds = super().predict_batch(embs, prompts)
            return lambda: self.log.append(f"wait {len(embs)}") or preds

    assert _run_logged(tmp_path, Queued([])) == [
        "embed 4", "launch 4",
        "embed 4", "launch 4", "wait 4", "done 4",
        "embed 4", "launch 4", "wait 4", "done 4",
        "wait 4", "done 4",
    ]  # fmt: skip


def test_a_synchronous_segmenter_decodes_each_batch_once_in_order(tmp_path) -> None:
    class Synchronous(_EmbedLogging):
        def predict_batch(self, embs, prompts):
            self.log.append(f"decode {len(embs)}")
            return super().predict_batch(embs, prompts)

    log = _run_logged(tmp_path, Synchronous([]))
    assert log == ["embed 4", "decode 4", "embed 4", "decode 4", "done 4", "embed 4", "decode 4", "done 4", "done 4"]


def test_a_small_athlete_is_segmented_and_every_frame_flagged_for_review(tmp_path) -> None:
    # a wide 320x240 shot: a ~10 px skier (under select.min_rel_height) crosses the frame past two
    # still 24 px spectators; the skier is chosen, and the whole sample is flagged for a human to check
    import cv2

    n, spectators = 16, [(30, 200, 40, 224), (270, 196, 280, 220)]
    keys = []
    for i in range(n):
        x, y = 20 + 17 * i, 60 + 6 * i
        keys.append(f"ski_big_air-out/001/img_{i + 1:05d}.jpg")
        (tmp_path / keys[-1]).parent.mkdir(parents=True, exist_ok=True)
        img = blob_frame(240, 320, np.array([x, y, x + 6, y + 10]), spectators, seed=i)
        cv2.imwrite(str(tmp_path / keys[-1]), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    s = _sample(keys, "ski_big_air/001", "ski_big_air")
    writes = build_sample_masks(s, tmp_path, Models(BlobDetector(), ColourSegmenter()), CFG)
    for i, (key, w) in enumerate(zip(keys, writes, strict=True)):
        mask, truth = decode_rle(w.rle), _truth(tmp_path, key)
        assert (mask & truth).sum() / max((mask | truth).sum(), 1) > 0.5, i
        assert w.status == "flagged" and SMALL_ATHLETE in w.reason.split("; ")
