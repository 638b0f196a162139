"""SAM segment path: our batched embed/decode against segment_anything's own SamPredictor (tiny SAM)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from segment_anything import SamPredictor  # noqa: E402

from hmtools.errors import InputError  # noqa: E402
from pipelines.segment import (  # noqa: E402
    SEGMENTERS,
    ImageEmbedding,
    Prompt,
    build_segmenter,
    resolve_checkpoint,
)
from pipelines.segment_tiny import build_tiny_sam, build_tiny_sam_segmenter  # noqa: E402


def _frame(h: int = 120, w: int = 200, seed: int = 0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    img[30:90, 80:120] = 250
    return img


@pytest.fixture(scope="module")
def seg_and_ref():
    return build_tiny_sam_segmenter(seed=3), SamPredictor(build_tiny_sam(3))


def test_embedding_matches_sam_predictor(seg_and_ref) -> None:
    seg, ref = seg_and_ref
    img = _frame()
    emb = seg.embed([img, _frame(90, 60, 1)])
    ref.set_image(img)
    assert isinstance(emb[0], ImageEmbedding)
    assert emb[0].features.shape == (1, 256, 16, 16) and emb[0].features.dtype == torch.float32
    assert emb[0].original_size == (120, 200) and emb[0].input_size == tuple(ref.input_size)
    assert emb[1].original_size == (90, 60)
    assert emb[0].nbytes == 256 * 16 * 16 * 4
    assert torch.allclose(emb[0].features, ref.features, atol=1e-4)


@pytest.mark.parametrize(
    "kw,multi",
    [
        ({"box": np.array([70.0, 20, 130, 100])}, False),
        ({"points": np.array([[100.0, 60]]), "labels": np.array([1])}, True),
        (
            {
                "points": np.array([[100.0, 60], [10, 10]]),
                "labels": np.array([1, 0]),
                "box": np.array([70.0, 20, 130, 100]),
            },
            False,
        ),
    ],
)
def test_predict_matches_sam_predictor(seg_and_ref, kw, multi) -> None:
    seg, ref = seg_and_ref
    img = _frame()
    (emb,) = seg.embed([img])
    ref.set_image(img)
    mask, score, low = seg.predict(emb, **kw)
    pc, pl = kw.get("points"), kw.get("labels")
    rm, rs, rl = ref.predict(point_coords=pc, point_labels=pl, box=kw.get("box"), multimask_output=multi)
    best = int(np.argmax(rs))
    assert mask.shape == (120, 200) and mask.dtype == bool
    assert low.shape == (64, 64) and low.dtype == np.float32
    assert np.array_equal(mask, rm[best])
    assert score == pytest.approx(float(rs[best]), abs=1e-5)
    assert np.allclose(low, rl[best], atol=1e-4)
    # the low-res logits feed back as a mask prompt, as in SamPredictor
    m2, s2, _ = seg.predict(emb, box=np.array([70.0, 20, 130, 100]), mask_input=low)
    r2, rs2, _ = ref.predict(box=np.array([70.0, 20, 130, 100]), mask_input=low[None], multimask_output=False)
    assert np.array_equal(m2, r2[0]) and s2 == pytest.approx(float(rs2[0]), abs=1e-5)


def test_predict_batch_equals_one_by_one(seg_and_ref) -> None:
    seg, _ = seg_and_ref
    frames = [_frame(seed=s) for s in range(3)]
    embs = seg.embed(frames)
    prompts = [
        Prompt(box=np.array([70.0, 20, 130, 100])),
        Prompt(box=np.array([60.0, 10, 140, 110])),
        Prompt(points=np.array([[100.0, 60]]), labels=np.array([1])),
    ]
    batch = seg.predict_batch(embs, prompts)
    for e, p, (m, s, low) in zip(embs, prompts, batch, strict=True):
        m1, s1, l1 = seg.predict(e, box=p.box, points=p.points, labels=p.labels)
        assert np.array_equal(m, m1) and s == pytest.approx(s1, abs=1e-5) and np.allclose(low, l1, atol=1e-4)


def test_bf16_and_plain_attention_paths_agree() -> None:
    img = _frame()
    plain = build_tiny_sam_segmenter(seed=3, sdpa=False).embed([img])[0].features
    bf16 = build_tiny_sam_segmenter(seed=3, dtype="bf16").embed([img])[0].features
    assert bf16.dtype == torch.float32
    rel = (bf16 - plain).norm() / plain.norm()
    assert rel < 0.05


def test_embed_rejects_non_rgb(seg_and_ref) -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        seg_and_ref[0].embed([np.zeros((10, 10), np.uint8)])


def test_unknown_segmenter_lists_valid_names() -> None:
    with pytest.raises(InputError, match="sam_vit_b, sam_vit_l, sam_vit_h, lite"):
        build_segmenter("sam_vit_x", None, "cpu")


def test_missing_checkpoint_names_what_to_pass(tmp_path) -> None:
    with pytest.raises(InputError, match="--sam-checkpoint PATH"):
        resolve_checkpoint("sam_vit_b", tmp_path / "nope.pth")


def test_no_download_when_not_allowed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HMTOOLS_CACHE", str(tmp_path))
    with pytest.raises(InputError, match=SEGMENTERS["sam_vit_h"].url):
        resolve_checkpoint("sam_vit_h", None, download=False)
    assert not any(tmp_path.rglob("*"))


def test_checkpoint_loads_through_build_segmenter(tmp_path) -> None:
    # a real state dict saved and loaded back by name (vit_b arch, random weights, fp32)
    seg = build_segmenter("sam_vit_b", None, "cpu", random_weights=True)
    path = tmp_path / "vit_b.pth"
    torch.save(seg.model.state_dict(), path)
    again = build_segmenter("sam_vit_b", path, "cpu", sdpa=False)
    a, b = seg.model.mask_decoder.state_dict(), again.model.mask_decoder.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_size_batch_one_copy_and_padding_for_compiled_encoder(seg_and_ref) -> None:
    _, ref = seg_and_ref
    frames = [_frame(seed=s) for s in range(3)]
    seg = build_tiny_sam_segmenter(seed=3, batch_size=4)
    calls = []
    encoder = seg._encoder
    seg._encoder = lambda x: calls.append(x.shape[0]) or encoder(x)
    plain = seg.embed(frames)
    seg._compiled = True  # a compiled encoder always gets full batches (the short one is zero-padded)
    padded = seg.embed(frames)
    assert calls == [3, 4] and len(padded) == 3
    for i, f in enumerate(frames):
        ref.set_image(f)
        assert torch.allclose(plain[i].features, ref.features, atol=1e-4)
        assert torch.allclose(padded[i].features, plain[i].features, atol=1e-5)


def test_embed_backs_off_when_the_encoder_runs_out_of_memory() -> None:
    seg = build_tiny_sam_segmenter(seed=3, batch_size=8)
    encoder, sizes = seg._encoder, []

    def tight(x):
        sizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return encoder(x)

    seg._encoder = tight
    frames = [_frame(seed=s) for s in range(5)]
    embs = seg.embed(frames)
    assert len(embs) == 5 and seg.batch.value == 2 and sizes[:3] == [5, 4, 2]
    ref = build_tiny_sam_segmenter(seed=3).embed(frames)
    assert all(torch.allclose(a.features, b.features, atol=1e-5) for a, b in zip(embs, ref, strict=True))


def test_resize_on_device_matches_sams_pil_resize() -> None:
    # a smooth 720p-like frame: the device resize (antialiased bilinear) and SAM's PIL resize agree
    yy, xx = np.mgrid[0:360, 0:640]
    img = np.stack([(xx * 0.4) % 256, (yy * 0.7) % 256, ((xx + yy) * 0.2) % 256], -1).astype(np.uint8)
    frames = [img, img[:, ::-1].copy()]
    host = build_tiny_sam_segmenter(seed=3, resize_on_device=False)
    dev = build_tiny_sam_segmenter(seed=3, resize_on_device=True)
    a, b = host.embed(frames), dev.embed(frames)
    box = np.array([100.0, 50, 400, 300])
    for x, y in zip(a, b, strict=True):
        assert x.input_size == y.input_size == (144, 256) and x.original_size == y.original_size
        assert ((x.features - y.features).norm() / x.features.norm()) < 0.02
        mx, my = host.predict(x, box=box)[0], dev.predict(y, box=box)[0]
        assert (mx & my).sum() / max((mx | my).sum(), 1) > 0.98


def test_folded_rel_pos_attention_equals_the_bias_tensor_way() -> None:
    """The bias folded into q/k gives SAM's logits: softmax(q.k/sqrt(d) + Rh[i, row j] + Rw[i, col j]) v."""
    import torch.nn.functional as F

    from pipelines.sam_speed import _rel_pos, folded_rel_pos_attention

    g = torch.Generator().manual_seed(0)
    b, heads, h, w, d = 2, 3, 5, 7, 16  # a non-square grid catches a swapped row/column
    q, k, v = (torch.randn(b, heads, h * w, d, generator=g) for _ in range(3))
    rph, rpw = torch.randn(2 * h - 1, d, generator=g), torch.randn(2 * w - 1, d, generator=g)
    r_q = q.reshape(b, heads, h, w, d)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, _rel_pos(h, h, rph))
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, _rel_pos(w, w, rpw))
    bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, heads, h * w, h * w)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    for pad_v in (True, False):
        got = folded_rel_pos_attention(q, k, v, rph, rpw, h, w, pad_v=pad_v)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-5)
    no_bias = F.scaled_dot_product_attention(q, k, v)
    assert not torch.allclose(no_bias, expected, atol=1e-3)  # the bias matters in this test


def test_folded_global_attention_keeps_the_encoder_output() -> None:
    img = _frame()
    folded = build_tiny_sam_segmenter(seed=3, fold_rel_pos=True)
    bias = build_tiny_sam_segmenter(seed=3, fold_rel_pos=False)
    blocks = folded.model.image_encoder.blocks
    assert [blk.attn.forward.__func__.__name__ for blk in blocks] == ["_sdpa_forward", "_folded_forward"]
    a, b_ = folded.embed([img])[0].features, bias.embed([img])[0].features
    assert torch.allclose(a, b_, atol=1e-4)


def test_async_decode_validates_at_launch_and_returns_what_predict_batch_returns(seg_and_ref) -> None:
    seg = seg_and_ref[0]
    embs = seg.embed([_frame(), _frame(seed=1)])
    prompts = [Prompt(box=np.array([60.0, 10, 140, 110])), Prompt(box=np.array([20.0, 20, 120, 100]))]
    with pytest.raises(ValueError, match="2 embeddings but 1 prompts"):
        seg.predict_batch_async(embs, prompts[:1])
    wait = seg.predict_batch_async(embs, prompts)
    for (m, s, low), (m2, s2, low2) in zip(wait(), seg.predict_batch(embs, prompts), strict=True):
        assert np.array_equal(m, m2) and s == pytest.approx(s2) and np.array_equal(low, low2)
