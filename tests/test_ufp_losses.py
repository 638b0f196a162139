"""Each loss term responds to its input and is zero/minimal where it should be."""

from __future__ import annotations

import torch
from _ufp_fixtures import one_torch_thread  # noqa: F401

from uni_fineparser import losses


def test_loss_e_zero_for_exact_deltas_and_symmetric():
    yq, ye = torch.tensor([0.7, 0.2]), torch.tensor([0.5, 0.6])
    assert float(losses.loss_e(yq - ye, ye - yq, yq, ye)) == 0.0
    wrong = losses.loss_e(torch.zeros(2), torch.zeros(2), yq, ye)
    assert abs(float(wrong) - 2 * float(((yq - ye) ** 2).mean())) < 1e-6


def test_mask_targets_pool_to_foreground_share():
    masks = torch.zeros(1, 4, 8, 8, dtype=torch.bool)
    masks[0, :2, :4, :4] = True  # top-left quarter in frames 0-1
    valid = torch.ones(1, 4, dtype=torch.bool)
    target, weight = losses.mask_targets(masks, valid, (2, 2, 2))
    assert target.shape == (1, 1, 2, 2, 2)
    assert float(target[0, 0, 0, 0, 0]) == 1.0 and float(target[0, 0, 0, 1, 1]) == 0.0
    assert float(target[0, 0, 1].sum()) == 0.0
    valid[0, 3] = False
    _, weight = losses.mask_targets(masks, valid, (2, 2, 2))
    assert weight.flatten().tolist() == [1.0, 0.0]


def test_loss_a_falls_when_attention_matches_mask():
    masks = torch.zeros(2, 4, 16, 16, dtype=torch.bool)
    masks[:, :, 4:12, 4:12] = True
    valid = torch.ones(2, 4, dtype=torch.bool)
    target, _ = losses.mask_targets(masks, valid, (2, 4, 4))
    matching = torch.logit(target.clamp(0.02, 0.98))
    inverted = torch.logit((1 - target).clamp(0.02, 0.98))
    flat = torch.zeros_like(target)
    la = [float(losses.loss_a(x, masks, valid)) for x in (matching, flat, inverted)]
    assert la[0] < la[1] < la[2]


def test_loss_a_ignores_frames_without_masks():
    masks = torch.zeros(1, 4, 8, 8, dtype=torch.bool)
    valid = torch.tensor([[True, True, False, False]])
    logits = torch.zeros(1, 1, 2, 2, 2)
    base = float(losses.loss_a(logits, masks, valid))
    logits[:, :, 1] = 50.0  # terrible prediction, but only where masks are missing
    assert float(losses.loss_a(logits, masks, valid)) == base


def test_step_targets_and_loss_t_respond_to_alignment():
    steps = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2]])
    target, weight = losses.step_targets(steps, 3, 4)
    assert target[0].tolist() == [[1.0, 0, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0, 1.0]]
    assert weight.tolist() == [[1.0, 1.0, 1.0]]
    aligned = target[:, None].expand(1, 2, 3, 4).clamp_min(1e-6)
    aligned = aligned / aligned.sum(-1, keepdim=True)
    uniform = torch.full((1, 2, 3, 4), 0.25)
    reversed_ = aligned.flip(-1)
    lt = [float(losses.loss_t(a, steps)) for a in (aligned, uniform, reversed_)]
    assert lt[0] < 1e-4 < lt[1] < lt[2]


def test_loss_t_is_zero_weight_for_unlabelled_clips():
    steps = torch.full((2, 16), -1)
    attn = torch.softmax(torch.randn(2, 2, 3, 4), -1)
    assert float(losses.loss_t(attn, steps)) == 0.0
