"""Paper-preset training step on a CUDA device (skipped without one): bf16, channels_last, fused Adam."""

from __future__ import annotations

import pytest
import torch

from uni_fineparser.config import load_run_config
from uni_fineparser.evaluate import autocast
from uni_fineparser.model import UniFineParser
from uni_fineparser.train import compute_losses, make_optimizer, place_model


@pytest.mark.gpu
def test_paper_preset_bf16_step_on_cuda():
    device = torch.device("cuda")
    cfg = load_run_config("paper")
    model = UniFineParser(cfg.model)
    place_model(model, cfg.train, device)  # as train and eval do: channels_last_3d on CUDA
    conv = next(p for p in model.parameters() if p.dim() == 5)
    assert model.channels_last and conv.is_contiguous(memory_format=torch.channels_last_3d)
    opt = make_optimizer(model, cfg, device)
    t, s = cfg.model.frames, cfg.model.size
    batch = {}
    for p in ("q_", "e_"):
        batch[p + "video"] = torch.randint(0, 256, (2, t, s, s, 3), dtype=torch.uint8, device=device)
        batch[p + "masks"] = torch.rand(2, t, s, s, device=device) > 0.8
        batch[p + "valid"] = torch.ones(2, t, dtype=torch.bool, device=device)
        batch[p + "steps"] = torch.arange(t, device=device).expand(2, t) * 3 // t
        batch[p + "score"] = torch.rand(2, device=device) * 100
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):
        with autocast(device, "bf16"):
            out = model(batch["q_video"], batch["e_video"])
        loss, parts = compute_losses(out, batch, cfg, 100.0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert torch.isfinite(parts).all()
    assert torch.cuda.max_memory_allocated(device) < 40 * 2**30
