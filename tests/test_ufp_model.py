"""Uni-FineParser network: shapes, gradients, boundary decoding, state dict, Kinetics weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _ufp_fixtures import one_torch_thread  # noqa: F401

from hmtools.config import to_dict
from hmtools.errors import ConfigError, InputError
from uni_fineparser.backbone import I3DBackbone, load_kinetics_weights
from uni_fineparser.config import ModelConfig, load_run_config
from uni_fineparser.model import UniFineParser, attention_to_frames, decode_boundaries, step_posterior


def _tiny() -> ModelConfig:
    return load_run_config("tiny").model


def test_forward_backward_shapes_and_finite():
    torch.manual_seed(0)
    cfg = _tiny()
    model = UniFineParser(cfg)
    q = torch.randint(0, 256, (2, cfg.frames, cfg.size, cfg.size, 3), dtype=torch.uint8)
    e = torch.randint(0, 256, (2, cfg.frames, cfg.size, cfg.size, 3), dtype=torch.uint8)
    out = model(q, e)
    k, n = cfg.num_steps, cfg.frames // cfg.token_stride
    assert out.delta_qe.shape == (2,) and out.delta_eq.shape == (2,)
    assert out.query.z.shape == (2, k, cfg.d_model)
    assert out.query.attn.shape == (2, 2, k, n)
    torch.testing.assert_close(out.query.attn.sum(-1), torch.ones(2, 2, k))
    assert out.query.mask_logits.shape == (2, 1, cfg.frames // 2, cfg.size // 8, cfg.size // 8)
    loss = out.delta_qe.square().sum() + out.query.mask_logits.mean() + out.exemplar.attn[:, :, 0, 0].sum()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_forward_equals_separate_encodes_in_eval():
    torch.manual_seed(1)
    cfg = _tiny()
    model = UniFineParser(cfg).eval()
    q = torch.randint(0, 256, (1, cfg.frames, cfg.size, cfg.size, 3), dtype=torch.uint8)
    e = torch.randint(0, 256, (1, cfg.frames, cfg.size, cfg.size, 3), dtype=torch.uint8)
    with torch.no_grad():
        out = model(q, e)
        zq, ze = model.encode(q).z, model.encode(e).z
        torch.testing.assert_close(out.delta_qe, model.regress(zq, ze).sum(-1), atol=1e-5, rtol=1e-5)


def test_decode_boundaries_finds_hand_segmentation():
    post = torch.full((1, 12, 3), 0.05)
    post[0, :3, 0] = 0.9
    post[0, 3:8, 1] = 0.9
    post[0, 8:, 2] = 0.9
    assert decode_boundaries(post).tolist() == [[3, 8]]
    # steps must stay in order and non-empty even when the posterior says otherwise
    flat = torch.full((2, 6, 3), 1 / 3)
    b = decode_boundaries(flat)
    assert ((b[:, 0] >= 1) & (b[:, 1] > b[:, 0]) & (b[:, 1] <= 5)).all()


def test_step_posterior_and_attention_upsampling_shapes():
    attn = torch.softmax(torch.randn(2, 2, 3, 4), -1)
    post = step_posterior(attn, 16)
    assert post.shape == (2, 16, 3)
    torch.testing.assert_close(post.sum(-1), torch.ones(2, 16))
    a = attention_to_frames(torch.zeros(2, 1, 8, 4, 4), 16, (32, 32))
    assert a.shape == (2, 16, 32, 32) and torch.allclose(a, torch.full_like(a, 0.5))


def test_state_dict_round_trip(tmp_path):
    cfg = _tiny()
    a, b = UniFineParser(cfg), UniFineParser(cfg)
    torch.save(a.state_dict(), tmp_path / "m.pt")
    b.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert a.state_dict().keys() == b.state_dict().keys()
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


def test_kinetics_weights_load_by_hassony2_names(tmp_path):
    torch.manual_seed(0)
    src = I3DBackbone(width=1.0)
    state = {k: v.clone() for k, v in src.state_dict().items() if not k.startswith("mask_attention")}
    # names of the public model_rgb.pth, including the logits layer we drop
    for name in (
        "conv3d_1a_7x7.conv3d.weight",
        "conv3d_1a_7x7.batch3d.running_var",
        "mixed_5b.branch_2.1.conv3d.weight",
        "mixed_4f.branch_3.1.batch3d.bias",
    ):
        assert name in state
    state["conv3d_0c_1x1.conv3d.weight"] = torch.zeros(400, 1024, 1, 1, 1)
    state["conv3d_0c_1x1.conv3d.bias"] = torch.zeros(400)
    torch.save(state, tmp_path / "model_rgb.pth")
    dst = I3DBackbone(width=1.0)
    assert load_kinetics_weights(dst, tmp_path / "model_rgb.pth") == len(state) - 2
    assert torch.equal(dst.mixed_5b.branch_2[1].conv3d.weight, src.mixed_5b.branch_2[1].conv3d.weight)
    with pytest.raises(InputError, match="backbone_width=1.0"):
        load_kinetics_weights(I3DBackbone(width=0.0625), tmp_path / "model_rgb.pth")
    with pytest.raises(InputError, match="not found"):
        load_kinetics_weights(dst, tmp_path / "nope.pth")


def test_paper_backbone_token_and_attention_grid():
    cfg = ModelConfig()
    bb = I3DBackbone(0.0625, cfg.token_stride)  # channel counts do not change the grid
    with torch.no_grad():
        feat, logits = bb(torch.zeros(1, 3, cfg.frames, cfg.size, cfg.size))
    assert feat.shape[2:] == (24, 4, 4)
    assert logits.shape[2:] == (48, 14, 14)


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="did you mean 'd_model'"):
        load_run_config("tiny", overrides=["model.d_modle=8"])
    with pytest.raises(ConfigError, match="divisible"):
        load_run_config("tiny", overrides=["model.d_model=30"])
    with pytest.raises(ConfigError, match="unknown preset"):
        load_run_config("huge")
    cfg = load_run_config("tiny", overrides=["train.lr=3e-4"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert to_dict(cfg)["model"]["frames"] == 16


def test_shipped_configs_load_and_finediving_lists_every_key_at_defaults():
    import dataclasses

    import yaml

    from uni_fineparser.config import RunConfig

    root = Path(__file__).resolve().parents[1] / "configs"
    full = yaml.safe_load((root / "train_finediving.yaml").read_text())
    for section, cls in (("model", ModelConfig), ("train", load_run_config().train.__class__)):
        assert set(full[section]) == {f.name for f in dataclasses.fields(cls)}
    assert load_run_config("paper", root / "train_finediving.yaml") == RunConfig()
    for name in ("train_mtl_aqa.yaml", "train_aqa7.yaml"):
        assert load_run_config("paper", root / name).train.loss_t == 0.0


def test_optional_static_stream_adds_to_the_tokens_and_loads_torchvision_weights(tmp_path):
    from torchvision.models import resnet18

    from uni_fineparser.backbone import load_resnet18_weights

    cfg = load_run_config("tiny", overrides=["model.static_stream=resnet18"]).model
    model = UniFineParser(cfg)
    assert model.static is not None and count_params(model) > count_params(UniFineParser(_tiny())) + 11e6
    q = torch.randint(0, 256, (2, cfg.frames, cfg.size, cfg.size, 3), dtype=torch.uint8)
    out = model(q, q.flip(0))
    out.delta_qe.sum().backward()
    assert model.static.net.conv1.weight.grad is not None and torch.isfinite(model.static.net.conv1.weight.grad).all()
    torch.save(resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    assert load_resnet18_weights(model.static, tmp_path / "r18.pth") == 120  # fc dropped
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="do not fit"):
        load_resnet18_weights(model.static, tmp_path / "bad.pth")


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_backbone_batchnorm_is_frozen_from_construction_and_after_train():
    """Spec 1.2: the backbone's BatchNorm stays in eval mode (fix_bn), also on a freshly built model."""
    torch.manual_seed(0)
    cfg = _tiny()
    model = UniFineParser(cfg)
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert bns and not any(m.training for m in bns) and model.decoder.training  # dropout still trains
    before = [m.running_mean.clone() for m in bns]
    q = torch.randint(0, 256, (2, cfg.frames, cfg.size, cfg.size, 3), dtype=torch.uint8)
    model(q, q.flip(0))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, bns, strict=True))
    model.eval().train()
    assert not any(m.training for m in bns)
