"""A tiny random-weight SAM built from ``segment_anything.modeling``, for tests and demos that
need the real SAM code paths without a checkpoint (256 px input, 2 encoder blocks: one with
windowed attention, one with attention over the whole token grid)."""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from pipelines.segment import SamSegmenter

__all__ = ["build_tiny_sam", "build_tiny_sam_segmenter"]


def build_tiny_sam(seed: int = 0) -> Sam:
    """A tiny random-weight SAM (256 px input, 2 encoder blocks) for tests: E = 16, logits 64x64."""
    torch.manual_seed(seed)
    size, patch, dim = 256, 16, 256
    encoder = ImageEncoderViT(
        img_size=size,
        patch_size=patch,
        embed_dim=96,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        out_chans=dim,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=4,
        global_attn_indexes=(1,),
    )
    prompt = PromptEncoder(
        embed_dim=dim,
        image_embedding_size=(size // patch,) * 2,
        input_image_size=(size, size),
        mask_in_chans=16,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=256, num_heads=8),
        transformer_dim=dim,
        iou_head_depth=3,
        iou_head_hidden_dim=64,
    )
    return Sam(encoder, prompt, decoder, pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


def build_tiny_sam_segmenter(seed: int = 0, device: str = "cpu", **options: object) -> SamSegmenter:
    """:class:`SamSegmenter` over :func:`build_tiny_sam` (for tests and demos without weights)."""
    return SamSegmenter(build_tiny_sam(seed), device, **options)  # type: ignore[arg-type]
