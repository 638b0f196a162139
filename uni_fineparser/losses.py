"""The three training losses as pure functions on tensors (no host synchronisation).

* ``loss_e``: contrastive score regression, both directions (FineParser's L_aqa).
* ``loss_a``: mask attention ``A`` vs the human masks pooled to A's grid (``f_2D`` resize +
  temporal average, the figure's "f_2D . Sigma"), binary cross-entropy with soft targets;
  frames without a mask are left out.
* ``loss_t``: each step query's attention over the temporal tokens vs the true share of each
  token's frames in that step, KL divergence (0 when they agree), for A_1 and A_2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def loss_e(delta_qe: torch.Tensor, delta_eq: torch.Tensor, y_q: torch.Tensor, y_e: torch.Tensor) -> torch.Tensor:
    """``MSE(delta_qe, y_q - y_e) + MSE(delta_eq, y_e - y_q)``; all ``(B,)`` in the same (normalised) units."""
    return F.mse_loss(delta_qe.float(), y_q - y_e) + F.mse_loss(delta_eq.float(), y_e - y_q)


def mask_targets(
    masks: torch.Tensor, valid: torch.Tensor, grid: tuple[int, int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool frame masks to the attention grid.

    Args:
        masks: ``(B, T, H, W)`` bool/uint8 human masks at the crop resolution.
        valid: ``(B, T)`` bool, False where a frame has no mask.
        grid: ``(T', h, w)`` of the attention logits.

    Returns:
        Soft targets ``(B, 1, T', h, w)`` in [0, 1] (foreground share of each cell) and a weight
        ``(B, 1, T', 1, 1)`` that is 1 where every frame of the cell has a mask.
    """
    target = F.adaptive_avg_pool3d(masks.float().unsqueeze(1), grid)
    missing = F.adaptive_max_pool1d((~valid).float().unsqueeze(1), grid[0])  # (B, 1, T')
    return target, (1.0 - missing)[..., None, None]


def loss_a(mask_logits: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean BCE between the attention logits ``(B, 1, T', h, w)`` and the pooled masks, over valid cells."""
    target, weight = mask_targets(masks, valid, tuple(mask_logits.shape[2:]))
    bce = F.binary_cross_entropy_with_logits(mask_logits.float(), target, reduction="none")
    weight = weight.expand_as(bce)
    return (bce * weight).sum() / weight.sum().clamp_min(1.0)


def step_targets(steps: torch.Tensor, num_steps: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target attention rows from per-frame step ids.

    Args:
        steps: ``(B, T)`` int64 step id of each sampled frame, -1 everywhere for clips without labels.
        num_steps: K.
        tokens: N temporal tokens (T must be a multiple of N).

    Returns:
        ``(B, K, N)`` rows summing to 1 (each token's share of the step's frames) and ``(B, K)``
        weights: 1 where the clip is labelled and the step occurs in it.
    """
    b, t = steps.shape
    labelled = (steps >= 0).all(dim=1)  # (B,)
    onehot = F.one_hot(steps.clamp_min(0), num_steps).float()  # (B, T, K)
    share = onehot.view(b, tokens, t // tokens, num_steps).sum(2).transpose(1, 2)  # (B, K, N)
    total = share.sum(-1, keepdim=True)
    weight = (total.squeeze(-1) > 0).float() * labelled.float()[:, None]
    return share / total.clamp_min(1.0), weight


def loss_t(attn: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """KL(target || attention) of every step query row, mean over labelled rows and both maps.

    Args:
        attn: ``(B, L, K, N)`` step-query attention maps (rows sum to 1).
        steps: ``(B, T)`` int64 per-frame step ids (-1 = unlabelled clip).
    """
    _, n_maps, k, n = attn.shape
    target, weight = step_targets(steps, k, n)  # (B, K, N), (B, K)
    target = target[:, None]  # (B, 1, K, N)
    kl = (target * (target.clamp_min(1e-8).log() - attn.float().clamp_min(1e-8).log())).sum(-1)  # (B, L, K)
    w = weight[:, None].expand_as(kl)
    return (kl * w).sum() / w.sum().clamp_min(1.0)
