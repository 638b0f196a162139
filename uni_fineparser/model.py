"""Uni-FineParser: the whole network in one root module (``UniFineParser``) configured by ``ModelConfig``.

Pipeline for one video (``encode``), shapes for the paper preset (T=96, 112x112):

1. uint8 frames ``(B, T, H, W, 3)`` -> ImageNet-normalised ``(B, 3, T, H, W)``.
2. I3D with the mask-attention block after ``mixed_3c`` (:mod:`uni_fineparser.backbone`):
   tokens ``(B, 1024, N=T/4, 4, 4)`` and attention logits ``(B, 1, T/2, 14, 14)`` (L_A).
3. Spatial mean -> LayerNorm -> Linear -> + learned temporal position: K/V ``(B, N, d)``.
4. ``num_steps`` learnable step queries: cross-attention (map A_1) -> self-attention ->
   cross-attention (map A_2) -> MLP, pre-LN residual blocks: step features ``(B, K, d)``.
   A_1 and A_2 ``(B, K, N)`` are aligned with the true step segments (L_T).
5. Score encoder (LN, Linear, GELU) per step: ``z (B, K, d)``.

A pair (``regress``): per step ``delta_k = MLP([z_q, z_e, z_q - z_e])``; the prediction is
``y_q = y_e + sum_k lambda_k delta_k`` (L_E, both directions). Because nothing in ``encode``
depends on the other video, evaluation encodes every video once and pairs them afterwards.

Step boundaries come from the attention (``decode_boundaries``): the step posterior of each
token, interpolated to frames, segmented into K contiguous steps by dynamic programming.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from uni_fineparser.backbone import I3DBackbone, StaticStream
from uni_fineparser.config import ModelConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Encoded(NamedTuple):
    """What ``encode`` returns for a batch of videos.

    Attributes:
        z: ``(B, K, d)`` per-step score-encoder features.
        attn: ``(B, 2, K, N)`` head-averaged step-query attention over the N temporal tokens
            (A_1 and A_2); each ``[b, l, k]`` row sums to 1.
        mask_logits: ``(B, 1, T/2, H/8, W/8)`` logits of the mask attention A.
    """

    z: torch.Tensor
    attn: torch.Tensor
    mask_logits: torch.Tensor


class PairOutput(NamedTuple):
    """What ``forward`` returns for a batch of query/exemplar pairs.

    Attributes:
        delta_qe: ``(B,)`` predicted ``y_q - y_e`` (in normalised score units).
        delta_eq: ``(B,)`` predicted ``y_e - y_q``.
        query: :class:`Encoded` of the queries.
        exemplar: :class:`Encoded` of the exemplars.
    """

    delta_qe: torch.Tensor
    delta_eq: torch.Tensor
    query: Encoded
    exemplar: Encoded


class Attention(nn.Module):
    """Multi-head attention that also returns its head-averaged weights ``(B, Q, N)``."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d, bias=False)
        self.kv = nn.Linear(d, 2 * d, bias=False)
        self.out = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, nq, d = x.shape
        n, h = ctx.shape[1], self.heads
        q = self.q(x).view(b, nq, h, d // h).transpose(1, 2)  # (B, h, Q, dh)
        k, v = self.kv(ctx).view(b, n, 2, h, d // h).permute(2, 0, 3, 1, 4)  # (B, h, N, dh) each
        w = torch.softmax((q @ k.transpose(-2, -1)).float() * (d // h) ** -0.5, dim=-1)  # (B, h, Q, N)
        out = (self.drop(w).to(v.dtype) @ v).transpose(1, 2).reshape(b, nq, d)
        return self.out(out), w.mean(1)


class StepDecoder(nn.Module):
    """Learnable step queries reading the temporal tokens: cross -> self -> cross -> MLP."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.queries = nn.Parameter(torch.randn(cfg.num_steps, d) * 0.02)
        self.norm_kv = nn.LayerNorm(d)
        self.norm1, self.cross1 = nn.LayerNorm(d), Attention(d, cfg.heads, cfg.dropout)
        self.norm2, self.self_attn = nn.LayerNorm(d), Attention(d, cfg.heads, cfg.dropout)
        self.norm3, self.cross2 = nn.LayerNorm(d), Attention(d, cfg.heads, cfg.dropout)
        self.norm4 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_ratio * d),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.mlp_ratio * d, d),
        )

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``(B, N, d)`` -> step features ``(B, K, d)`` and attention ``(B, 2, K, N)``."""
        kv = self.norm_kv(tokens)
        q = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)  # (B, K, d)
        y, a1 = self.cross1(self.norm1(q), kv)
        q = q + y
        s = self.norm2(q)
        q = q + self.self_attn(s, s)[0]
        y, a2 = self.cross2(self.norm3(q), kv)
        q = q + y
        q = q + self.mlp(self.norm4(q))
        return q, torch.stack([a1, a2], dim=1)


class UniFineParser(nn.Module):
    """The root module: backbone, step decoder, score encoder and contrastive regressor."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.channels_last = False  # set by the trainer on CUDA (input and weights in channels_last_3d)
        d = cfg.d_model
        self.backbone = I3DBackbone(cfg.backbone_width, cfg.token_stride, cfg.attn_hidden, cfg.attn_bias_init)
        c5 = self.backbone.out_channels
        self.proj = nn.Sequential(nn.LayerNorm(c5), nn.Linear(c5, d))
        self.static: StaticStream | None = None
        self.static_proj: nn.Module | None = None
        if cfg.static_stream == "resnet18":  # the figure's second (2D) stream, summed into K/V
            self.static = StaticStream(cfg.token_stride)
            self.static_proj = nn.Sequential(nn.LayerNorm(512), nn.Linear(512, d))
        self.pos = nn.Parameter(torch.randn(1, cfg.frames // cfg.token_stride, d) * 0.02)
        self.decoder = StepDecoder(cfg)
        self.score_encoder = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU())
        self.regressor = nn.Sequential(
            nn.Linear(3 * d, cfg.regressor_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.regressor_hidden, 1),
        )
        self.register_buffer("step_weights", torch.tensor(cfg.step_weights, dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1) * 255, persistent=False)
        self.train()  # nn.Module starts in training mode without calling train(): apply freeze_bn from the start

    def train(self, mode: bool = True) -> UniFineParser:
        """Switch modes; with ``freeze_bn`` the pretrained streams' BatchNorm stays in eval mode."""
        super().train(mode)
        if mode and self.cfg.freeze_bn:
            streams = [self.backbone] + ([self.static] if self.static is not None else [])
            for m in (m for s in streams for m in s.modules()):
                if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                    m.eval()
        return self

    def encode(self, video: torch.Tensor) -> Encoded:
        """Encode videos ``(B, T, H, W, 3)`` uint8 RGB (``T == cfg.frames``, ``H == W == cfg.size``)."""
        x = video.permute(0, 4, 1, 2, 3).float()  # (B, 3, T, H, W)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        feat, mask_logits = self.backbone(x)  # (B, C5, N, h5, w5), (B, 1, T/2, H/8, W/8)
        tokens = self.proj(feat.mean(dim=(3, 4)).transpose(1, 2)) + self.pos  # (B, N, d)
        if self.static is not None and self.static_proj is not None:
            tokens = tokens + self.static_proj(self.static(x))  # (B, N, d)
        steps, attn = self.decoder(tokens)  # (B, K, d), (B, 2, K, N)
        return Encoded(self.score_encoder(steps), attn, mask_logits)

    def regress(self, zq: torch.Tensor, ze: torch.Tensor) -> torch.Tensor:
        """Weighted per-step deltas ``(B, K)`` of ``y_q - y_e`` from step features ``(B, K, d)``.

        The predicted score difference is the sum over K; each term is one step's contribution.
        """
        delta = self.regressor(torch.cat([zq, ze, zq - ze], dim=-1)).squeeze(-1)  # (B, K)
        return delta.float() * self.step_weights

    def forward(self, query: torch.Tensor, exemplar: torch.Tensor) -> PairOutput:
        """Pairs of uint8 videos ``(B, T, H, W, 3)`` each -> :class:`PairOutput` (one backbone pass)."""
        enc = self.encode(torch.cat([query, exemplar], dim=0))
        b = query.shape[0]
        q = Encoded(*(t[:b] for t in enc))
        e = Encoded(*(t[b:] for t in enc))
        return PairOutput(self.regress(q.z, e.z).sum(-1), self.regress(e.z, q.z).sum(-1), q, e)


def step_posterior(attn: torch.Tensor, frames: int) -> torch.Tensor:
    """Per-frame step probabilities ``(B, T, K)`` from attention ``(B, 2, K, N)``.

    Each token's attention is normalised over the K steps (mean of A_1 and A_2) and linearly
    interpolated from N tokens to ``frames`` frames.
    """
    a = attn.float().mean(1)  # (B, K, N)
    p = a / a.sum(1, keepdim=True).clamp_min(1e-12)
    p = F.interpolate(p, size=frames, mode="linear", align_corners=False)  # (B, K, T)
    return p.transpose(1, 2)


def decode_boundaries(post: torch.Tensor) -> torch.Tensor:
    """Best segmentation of each clip into K contiguous, non-empty steps in order.

    Args:
        post: ``(B, T, K)`` per-frame step probabilities.

    Returns:
        ``(B, K - 1)`` int64: the first frame of steps 1..K-1 (0-based, sampled-frame index space),
        maximising ``sum_t log post[t, step(t)]``.
    """
    b, t, k = post.shape
    logp = post.float().clamp_min(1e-8).log()
    cum = F.pad(logp.cumsum(1), (0, 0, 1, 0))  # (B, T+1, K): cum[:, i, k] = sum of frames < i
    idx = torch.arange(t + 1, device=post.device)
    dp = cum[:, :, 0].clone()  # best score of steps 0..0 covering frames [0, i)
    dp[:, 0] = float("-inf")
    backs = []
    invalid = idx[:, None] >= idx[None, :]  # s >= i is not a valid split
    for step in range(1, k):
        # score[b, s, i] = dp[b, s] + sum of step frames in [s, i)
        score = dp[:, :, None] + cum[:, None, :, step] - cum[:, :, step, None]
        score = score.masked_fill(invalid, float("-inf"))
        dp, back = score.max(dim=1)  # (B, T+1)
        backs.append(back)
    out = torch.zeros(b, k - 1, dtype=torch.long, device=post.device)
    end = torch.full((b,), t, dtype=torch.long, device=post.device)
    for step in range(k - 1, 0, -1):
        end = backs[step - 1].gather(1, end[:, None]).squeeze(1)
        out[:, step - 1] = end
    return out


def attention_to_frames(mask_logits: torch.Tensor, frames: int, size: tuple[int, int]) -> torch.Tensor:
    """Mask-attention probabilities at frame resolution: ``(B, 1, T', h, w)`` -> ``(B, T, H, W)`` float."""
    a = torch.sigmoid(mask_logits.float())
    return F.interpolate(a, size=(frames, *size), mode="trilinear", align_corners=False)[:, 0]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
