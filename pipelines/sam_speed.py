"""Speed levers for the SAM image encoder (DESIGN.md §6): attention through
``torch.nn.functional.scaled_dot_product_attention`` with the decomposed relative-position bias
passed as an additive mask, bf16 weights, and optional ``torch.compile``.

The encoder is passed in; its attention blocks are recognised by their attributes (``qkv``,
``proj``, ``num_heads``, ``use_rel_pos``), so this module does not import segment_anything.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F


def _rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative position embeddings ``(q_size, k_size, C)`` for one axis (SAM's rule)."""
    max_dist = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != max_dist:
        rel_pos = F.interpolate(rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=max_dist, mode="linear")
        rel_pos = rel_pos.reshape(-1, max_dist).permute(1, 0)
    q = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    return rel_pos[((q - k) + (k_size - 1) * max(q_size / k_size, 1.0)).long()]


def _rel_terms(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's decomposed relative-position terms of the queries ``q`` ``(B, heads, h*w, d)``:
    ``(B, heads, h, w, h)`` over key rows and ``(B, heads, h, w, w)`` over key columns."""
    b, nh, _, d = q.shape
    r_q = q.reshape(b, nh, h, w, d)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, _rel_pos(h, h, rel_pos_h).to(q.dtype))
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, _rel_pos(w, w, rel_pos_w).to(q.dtype))
    return rel_h, rel_w


def _attention_block(self: Any, x: torch.Tensor, folded: bool) -> torch.Tensor:
    """SAM ``Attention.forward`` (the same maths) with fused SDPA kernels: the relative-position
    bias as an additive ``(HW, HW)`` mask, or ``folded`` into q/k (:func:`folded_rel_pos_attention`)."""
    B, H, W, _ = x.shape  # (B, H, W, C)
    qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, nh, HW, hd) each
    if folded:
        out = folded_rel_pos_attention(q, k, v, self.rel_pos_h, self.rel_pos_w, H, W)
    else:
        bias = None
        if self.use_rel_pos:
            rel_h, rel_w = _rel_terms(q, self.rel_pos_h, self.rel_pos_w, H, W)
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(B, self.num_heads, H * W, H * W)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, nh, HW, hd)
    out = out.reshape(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(out)


def _sdpa_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """SAM ``Attention.forward`` through SDPA, the relative-position bias as an additive mask."""
    return _attention_block(self, x, folded=False)


def _folded_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """SAM ``Attention.forward`` through :func:`folded_rel_pos_attention` (no bias tensor)."""
    return _attention_block(self, x, folded=True)


def folded_rel_pos_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    h: int,
    w: int,
    *,
    pad_v: bool = True,
) -> torch.Tensor:
    """SAM's attention with decomposed relative positions, without a ``(HW, HW)`` bias tensor.

    The logit of query i and key j is ``q_i . k_j / sqrt(d) + Rh[i, row(j)] + Rw[i, col(j)]``. The
    two bias terms are the dot product of the query's ``(Rh[i], Rw[i])`` with the key's one-hot
    ``(row(j), col(j))``, so they are appended to q and k, and a fused kernel (flash where the width
    allows) computes the whole logit; only ``(B, heads, HW, d + H + W)`` tensors are written.

    Args:
        q, k, v: ``(B, heads, H*W, d)``. rel_pos_h / rel_pos_w: the block's tables ``(2H-1, d)`` /
            ``(2W-1, d)``. h, w: token grid. pad_v: widen v to the q/k width (flash kernels need
            equal widths), else let SDPA pick a kernel that takes a narrower v.

    Returns:
        ``(B, heads, H*W, d)``, as ``softmax(logits) @ v``.
    """
    b, nh, n, d = q.shape
    rel_h, rel_w = (t.reshape(b, nh, n, -1) for t in _rel_terms(q, rel_pos_h, rel_pos_w, h, w))  # (.., n, H/W)
    width = -(-(d + h + w) // 8) * 8  # fused kernels want a multiple of 8
    pad = width - (d + h + w)
    rows = torch.arange(n, device=q.device)
    onehot = torch.zeros((n, h + w + pad), dtype=q.dtype, device=q.device)
    onehot[rows, rows // w] = 1
    onehot[rows, h + rows % w] = 1
    qf = torch.cat([q * d**-0.5, rel_h, rel_w, q.new_zeros((b, nh, n, pad))], dim=-1)
    kf = torch.cat([k, onehot.expand(b, nh, n, -1)], dim=-1)
    vf = F.pad(v, (0, width - d)) if pad_v else v
    return F.scaled_dot_product_attention(qf, kf, vf, scale=1.0)[..., :d]


def use_sdpa_attention(encoder: torch.nn.Module, *, fold_rel_pos: bool = False) -> int:
    """Route every SAM attention block of ``encoder`` through SDPA (in place).

    Args:
        fold_rel_pos: For the global-attention blocks (``window_size == 0``: the whole token
            grid), fold the relative-position bias into q/k (:func:`folded_rel_pos_attention`)
            instead of passing a ``(HW, HW)`` bias tensor.

    Returns:
        Number of attention blocks changed.
    """
    global_attn = {id(blk.attn) for blk in encoder.modules() if getattr(blk, "window_size", None) == 0}
    n = 0
    for mod in encoder.modules():
        if all(hasattr(mod, a) for a in ("qkv", "proj", "num_heads", "use_rel_pos")):
            fold = fold_rel_pos and mod.use_rel_pos and id(mod) in global_attn
            mod.forward = types.MethodType(_folded_forward if fold else _sdpa_forward, mod)
            n += 1
    return n


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``"auto"`` -> bf16 on CUDA (when supported), fp32 elsewhere; ``"bf16"``/``"fp32"`` as named."""
    if dtype == "bf16":
        return torch.bfloat16
    if dtype == "fp32":
        return torch.float32
    if dtype != "auto":
        raise ValueError(f"dtype must be auto, bf16 or fp32; got {dtype!r}")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
