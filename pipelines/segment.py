"""Segment-anything (SAM v1) behind a small batched interface: embed frames once, decode prompts.

With ``segment_tiny.py`` the only pipeline modules (beside ``propagate.py``) that import
``segment_anything``. The image encoder runs on a batch of frames at once (bf16 weights on CUDA,
attention through SDPA, an optional ``torch.compile``), and the batch halves itself when the GPU
runs out of memory. The prompt encoder and mask decoder run batched over frames too
(:meth:`SamSegmenter.predict_batch`), and can be queued without waiting
(:meth:`SamSegmenter.predict_batch_async`).

Coordinates are pixels of the original frame: boxes XYXY, points ``(X, Y)``.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import sam_model_registry
from segment_anything.modeling import MaskDecoder, Sam
from segment_anything.utils.transforms import ResizeLongestSide

from hmtools.errors import InputError
from pipelines.batching import BatchSize, run_batched
from pipelines.sam_speed import resolve_dtype, use_sdpa_attention
from pipelines.segment_types import ImageEmbedding, Prompt
from pipelines.weights import cache_dir, download_verified, require_file

__all__ = [
    "SEGMENTERS",
    "ImageEmbedding",
    "Prompt",
    "SamSegmenter",
    "SamSpec",
    "build_segmenter",
    "resolve_checkpoint",
]

log = logging.getLogger(__name__)

_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


@dataclass(frozen=True)
class SamSpec:
    """A published SAM checkpoint: architecture key of ``sam_model_registry``, file and sha256."""

    arch: str
    filename: str
    sha256: str

    @property
    def url(self) -> str:
        """Meta's public download URL."""
        return _URL + self.filename


SEGMENTERS: dict[str, SamSpec] = {
    "sam_vit_b": SamSpec(
        "vit_b", "sam_vit_b_01ec64.pth", "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"
    ),
    "sam_vit_l": SamSpec(
        "vit_l", "sam_vit_l_0b3195.pth", "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"
    ),
    "sam_vit_h": SamSpec(
        "vit_h", "sam_vit_h_4b8939.pth", "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"
    ),
}
"""Segmenter name -> published checkpoint (``--segmenter``; ``lite`` is handled by pipelines.lite)."""


class SamSegmenter:
    """A SAM model with batched image encoding and batched prompt decoding.

    Args:
        model: A ``segment_anything`` ``Sam`` (moved to ``device`` here, put in eval mode).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        batch_size: Frames per encoder call (halved on CUDA out-of-memory, see :mod:`pipelines.batching`).
        dtype: Encoder precision: ``"auto"`` (bf16 on CUDA, fp32 on CPU), ``"bf16"`` or ``"fp32"``.
        sdpa: Route encoder attention through fused SDPA kernels.
        compile: ``torch.compile`` the encoder (CUDA; the first batch then takes ~1 min).
        fold_rel_pos: With ``sdpa``, compute the global-attention blocks' relative-position bias
            inside the attention kernel's q/k (no ``(HW, HW)`` bias tensor; see
            :func:`pipelines.sam_speed.folded_rel_pos_attention`): 3.6x faster per global block
            for vit_h at batch 8 on an H100 (17.2 -> 4.7 ms).
        resize_on_device: Resize frames to the encoder input on the device (antialiased bilinear,
            as SAM's PIL resize) instead of on the CPU; default: on CUDA.
    """

    def __init__(
        self,
        model: Sam,
        device: str = "cpu",
        *,
        batch_size: int = 4,
        dtype: str = "auto",
        sdpa: bool = True,
        compile: bool = False,
        fold_rel_pos: bool = True,
        resize_on_device: bool | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.encoder_dtype = resolve_dtype(dtype, self.device)
        self.batch = BatchSize(max(1, batch_size))
        self.transform = ResizeLongestSide(model.image_encoder.img_size)
        if sdpa:
            use_sdpa_attention(model.image_encoder, fold_rel_pos=fold_rel_pos)
        if self.encoder_dtype != torch.float32:
            model.image_encoder.to(self.encoder_dtype)
        self._compiled = compile
        self.resize_on_device = self.device.type == "cuda" if resize_on_device is None else resize_on_device
        self._encoder = torch.compile(model.image_encoder) if compile else model.image_encoder
        self.mask_threshold = float(model.mask_threshold)

    @property
    def img_size(self) -> int:
        """Side of SAM's square encoder input (1024 for the published models)."""
        return int(self.model.image_encoder.img_size)

    # -- image encoder -------------------------------------------------------------------
    @torch.inference_mode()
    def embed(self, images: Sequence[np.ndarray]) -> list[ImageEmbedding]:
        """Encode frames in batches of ``self.batch.value``.

        Args:
            images: ``(H, W, 3)`` uint8 RGB frames (sizes may differ).

        Returns:
            One :class:`ImageEmbedding` per frame, in order.
        """
        return run_batched(self._embed_chunk, list(images), self.batch)

    def _embed_chunk(self, images: Sequence[np.ndarray]) -> list[ImageEmbedding]:
        for img in images:
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {img.shape} {img.dtype}")
        same = len({img.shape for img in images}) == 1
        if same and self.resize_on_device:  # frames of one clip: upload full frames, resize on the GPU
            h, w = images[0].shape[:2]
            small = self.transform.get_preprocess_shape(h, w, self.img_size)
            x = self._upload(np.stack(images)).permute(0, 3, 1, 2).float()  # (B, 3, H, W)
            x = F.interpolate(x, size=small, mode="bilinear", antialias=True, align_corners=False)
            x = self.model.preprocess(x.round_().clamp_(0, 255))  # SAM's PIL path yields uint8 values
            sizes = [((h, w), tuple(small))] * len(images)
        else:
            smalls = [self.transform.apply_image(img) for img in images]  # (h, w, 3) uint8, longest side = S
            sizes = [(tuple(i.shape[:2]), tuple(s.shape[:2])) for i, s in zip(images, smalls, strict=True)]
            if same:  # one host-to-device copy
                x = self.model.preprocess(self._upload(np.stack(smalls)).permute(0, 3, 1, 2).float())
            else:
                x = torch.cat(
                    [self.model.preprocess(self._upload(s[None]).permute(0, 3, 1, 2).float()) for s in smalls]
                )
        x = x.to(self.encoder_dtype)  # (B, 3, S, S) normalised + padded
        if self._compiled and len(x) < self.batch.value:  # keep one shape: no recompiling for a short last batch
            x = torch.cat([x, x.new_zeros((self.batch.value - len(x), *x.shape[1:]))])
        feats = self._encoder(x).float()  # (B, 256, E, E)
        return [ImageEmbedding(feats[i : i + 1].clone(), orig, inp) for i, (orig, inp) in enumerate(sizes)]

    def _upload(self, batch: np.ndarray) -> torch.Tensor:
        """``(B, h, w, 3)`` uint8 to the device (pinned, non-blocking on CUDA)."""
        host = torch.from_numpy(np.ascontiguousarray(batch))
        cuda = self.device.type == "cuda"
        return (host.pin_memory() if cuda else host).to(self.device, non_blocking=cuda)

    # -- prompt decoder ------------------------------------------------------------------
    def predict(
        self,
        emb: ImageEmbedding,
        *,
        box: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """Decode one frame's prompts into its best mask.

        Args:
            emb: The frame's embedding.
            box: ``(4,)`` XYXY pixels.
            points: ``(N, 2)`` ``(X, Y)`` pixels; needs ``labels``.
            labels: ``(N,)`` 1 foreground / 0 background.
            mask_input: ``(4E, 4E)`` (or ``(1, 4E, 4E)``) low-resolution logits of an earlier prediction.

        Returns:
            ``(mask (H, W) bool, score in [0, 1]-ish SAM IoU estimate, low-res logits (4E, 4E) float32)``;
            4E = 256 for the published models.
        """
        mi = None if mask_input is None else np.asarray(mask_input).reshape(mask_input.shape[-2:])
        return self.predict_batch([emb], [Prompt(box, points, labels, mi)])[0]

    def predict_batch(
        self, embs: Sequence[ImageEmbedding], prompts: Sequence[Prompt]
    ) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Decode many frames at once; frames whose prompts have the same shape share one decoder call.

        Returns:
            One ``(mask, score, low-res logits)`` per frame, as :meth:`predict`.
        """
        return self.predict_batch_async(embs, prompts)()

    @torch.inference_mode()
    def predict_batch_async(
        self, embs: Sequence[ImageEmbedding], prompts: Sequence[Prompt]
    ) -> Callable[[], list[tuple[np.ndarray, float, np.ndarray]]]:
        """Queue :meth:`predict_batch`'s work on the device and return a function that waits for it.

        On CUDA the results are copied to pinned host memory behind the decoder and an event marks
        their arrival: waiting blocks only until then, not for work queued later (the next batch's
        encoder). So a caller can prepare and queue batch k+1 before it collects batch k.
        """
        if len(embs) != len(prompts):
            raise ValueError(f"{len(embs)} embeddings but {len(prompts)} prompts")
        groups: dict[tuple[bool, int, bool], list[int]] = {}
        for i, p in enumerate(prompts):
            if p.box is None and p.points is None and p.mask_input is None:
                raise ValueError("a prompt needs a box, points or a mask_input")
            n_pts = 0 if p.points is None else len(p.points)
            groups.setdefault((p.box is not None, n_pts, p.mask_input is not None), []).append(i)
        parts = [(idx, self._decode([embs[i] for i in idx], [prompts[i] for i in idx])) for idx in groups.values()]

        def wait() -> list[tuple[np.ndarray, float, np.ndarray]]:
            out: list[tuple[np.ndarray, float, np.ndarray] | None] = [None] * len(embs)
            for idx, part in parts:
                for i, res in zip(idx, part(), strict=True):
                    out[i] = res
            return out  # type: ignore[return-value]

        return wait

    def _decode(
        self, embs: Sequence[ImageEmbedding], prompts: Sequence[Prompt]
    ) -> Callable[[], list[tuple[np.ndarray, float, np.ndarray]]]:
        dev, p0 = self.device, prompts[0]
        points = boxes = masks = None
        if p0.points is not None:
            coords = np.stack(
                [
                    self.transform.apply_coords(np.asarray(p.points, float), e.original_size)
                    for e, p in zip(embs, prompts, strict=True)
                ]
            )
            labels = np.stack([np.asarray(p.labels) for p in prompts])
            points = (
                torch.as_tensor(coords, dtype=torch.float, device=dev),
                torch.as_tensor(labels, dtype=torch.int, device=dev),
            )
        if p0.box is not None:
            bx = np.stack(
                [
                    self.transform.apply_boxes(np.asarray(p.box, float).reshape(1, 4), e.original_size)[0]
                    for e, p in zip(embs, prompts, strict=True)
                ]
            )
            boxes = torch.as_tensor(bx, dtype=torch.float, device=dev)  # (B, 4)
        if p0.mask_input is not None:
            masks = torch.as_tensor(np.stack([p.mask_input for p in prompts]), dtype=torch.float, device=dev)[:, None]
        sparse, dense = self.model.prompt_encoder(
            points=points, boxes=boxes, masks=masks
        )  # (B, T, 256), (B, 256, E, E)
        if dense.shape[0] != len(embs):
            dense = dense.expand(len(embs), -1, -1, -1)
        feats = torch.cat([e.features for e in embs])  # (B, 256, E, E)
        multimask = p0.box is None and p0.mask_input is None and len(p0.points if p0.points is not None else ()) == 1
        low, iou = _decode_masks(
            self.model.mask_decoder, feats, self.model.prompt_encoder.get_dense_pe(), sparse, dense
        )
        low, iou = (low[:, 1:], iou[:, 1:]) if multimask else (low[:, :1], iou[:, :1])
        best = iou.argmax(dim=1)  # (B,)
        ar = torch.arange(len(embs), device=dev)
        low, score = low[ar, best], iou[ar, best]  # (B, 4E, 4E), (B,)
        sizes = {(e.input_size, e.original_size) for e in embs}
        one_size = len(sizes) == 1
        if one_size:  # frames of one clip: upscale all masks in one call
            full = self.model.postprocess_masks(low[:, None], *next(iter(sizes)))  # (B, 1, H, W)
            host_masks = [_to_host(full[:, 0] > self.mask_threshold)]  # one (B, H, W)
        else:
            host_masks = [  # one (H, W) per frame
                _to_host(
                    self.model.postprocess_masks(low[i : i + 1, None], e.input_size, e.original_size)[0, 0]
                    > self.mask_threshold
                )
                for i, e in enumerate(embs)
            ]
        scores, lows = _to_host(score.float()), _to_host(low.float())
        done = torch.cuda.Event() if dev.type == "cuda" else None
        if done is not None:
            done.record(torch.cuda.current_stream(dev))  # this device's stream, whichever is current

        def wait() -> list[tuple[np.ndarray, float, np.ndarray]]:
            if done is not None:
                done.synchronize()
            # on CUDA, copies out of the pinned buffers, which then go back to torch's pool
            own = (lambda t: t.numpy().copy()) if done is not None else (lambda t: t.numpy())
            ms = list(own(host_masks[0])) if one_size else [own(m) for m in host_masks]
            ss, ls = own(scores), own(lows)
            return [(m, float(s), lw) for m, s, lw in zip(ms, ss, ls, strict=True)]

        return wait


def _to_host(t: torch.Tensor) -> torch.Tensor:
    """Start copying a device tensor to (pinned) host memory without waiting; CPU tensors as they are."""
    if t.device.type != "cuda":
        return t
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return host.copy_(t, non_blocking=True)


def _decode_masks(
    dec: MaskDecoder, feats: torch.Tensor, pe: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's ``MaskDecoder.predict_masks`` with one image embedding per prompt (not one shared).

    Args:
        feats: ``(B, C, E, E)`` image embeddings. pe: ``(1, C, E, E)`` positional encoding.
        sparse: ``(B, T, C)`` prompt tokens. dense: ``(B, C, E, E)`` dense prompt embeddings.

    Returns:
        ``(low-res logits (B, M, 4E, 4E), IoU predictions (B, M))`` for the M = 4 mask tokens.
    """
    tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
    tokens = torch.cat([tokens[None].expand(sparse.shape[0], -1, -1), sparse], dim=1)  # (B, 1+M+T, C)
    src = feats + dense
    b, c, h, w = src.shape
    hs, src = dec.transformer(src, pe.expand(b, -1, -1, -1), tokens)
    up = dec.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))  # (B, C/8, 4E, 4E)
    hyper = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1)
    bb, cc, hh, ww = up.shape
    masks = (hyper @ up.reshape(bb, cc, hh * ww)).reshape(bb, -1, hh, ww)
    return masks, dec.iou_prediction_head(hs[:, 0])


def resolve_checkpoint(name: str, checkpoint: Path | None, *, download: bool = True) -> Path:
    """The checkpoint file for a named SAM: the given path, else the cache (downloading once).

    Raises:
        InputError: unknown name, or a given/needed file is missing and may not be downloaded.
    """
    if name not in SEGMENTERS:
        raise InputError(f"unknown segmenter {name!r}; valid names: {', '.join([*SEGMENTERS, 'lite'])}")
    spec = SEGMENTERS[name]
    if checkpoint is not None:
        return require_file(
            Path(checkpoint), "SAM checkpoint", f"pass --sam-checkpoint PATH of {spec.filename} ({spec.url})"
        )
    cached = cache_dir() / "sam" / spec.filename
    if cached.is_file() or download:
        return download_verified(spec.url, cached, spec.sha256)
    raise InputError(f"no {spec.filename} in {cached.parent}; pass --sam-checkpoint PATH (download: {spec.url})")


def build_segmenter(
    name: str,
    checkpoint: Path | None,
    device: str,
    *,
    download: bool = True,
    random_weights: bool = False,
    **options: object,
) -> SamSegmenter:
    """Build a :class:`SamSegmenter` from a name of :data:`SEGMENTERS`.

    Args:
        name: ``sam_vit_b``, ``sam_vit_l`` or ``sam_vit_h``.
        checkpoint: Weights file; ``None`` uses the cache and downloads the published file once.
        device: Torch device string.
        download: Allow the one-time download when the file is not cached.
        random_weights: Build untrained weights (benchmarks and tests only; no file needed).
        **options: ``batch_size``, ``dtype``, ``sdpa``, ``compile``, ``fold_rel_pos`` of :class:`SamSegmenter`.
    """
    if name not in SEGMENTERS:
        raise InputError(f"unknown segmenter {name!r}; valid names: {', '.join([*SEGMENTERS, 'lite'])}")
    model = sam_model_registry[SEGMENTERS[name].arch](checkpoint=None)
    if not random_weights:
        path = resolve_checkpoint(name, checkpoint, download=download)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, EOFError, pickle.UnpicklingError, TypeError, AttributeError, KeyError) as e:
            why = " ".join(str(e).split())[:160] or type(e).__name__  # a size mismatch lists every tensor
            why = "not a torch checkpoint file" if isinstance(e, KeyError) else why  # a stray pickle opcode
            raise InputError(
                f"SAM checkpoint {path} does not load as {name} ({why}); pass the {SEGMENTERS[name].filename} "
                "file, or the --segmenter that matches the checkpoint"
            ) from e
    return SamSegmenter(model, device, **options)  # type: ignore[arg-type]
