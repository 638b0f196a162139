"""I3D (Inception-v1 inflated to 3D, Carreira & Zisserman 2017) with a mask-attention block.

Layer names follow hassony2/kinetics_i3d_pytorch, so its Kinetics-400 ``model_rgb.pth`` (the file
the FineParser code loads) maps key for key: ``conv3d_1a_7x7.conv3d.weight``,
``mixed_3b.branch_1.1.batch3d.running_mean``, ... Padding is TensorFlow "SAME" with the
static split of that port (``pad = max(k - s, 0)``, the extra pixel at the end) and max-pooling
uses ``ceil_mode``, as the weights were trained.

Two changes, both weight-free: the temporal stride of the last pooling is configurable
(``token_stride`` 4 keeps 24 time steps for 96 frames instead of 12), and the mask-attention
block ``B_A(X) = X + X * sigmoid(f_A(X))`` sits after ``mixed_3c`` (the 3rd of I3D's 5 stages,
as in the Uni-FineParser figure). ``width`` scales every channel count (tiny test models);
pretrained weights need ``width == 1``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hmtools.errors import InputError

log = logging.getLogger(__name__)

# (in, [b0, b1a, b1b, b2a, b2b, b3]) of each Inception block, at width 1.
_MIXED = {
    "mixed_3b": [64, 96, 128, 16, 32, 32],
    "mixed_3c": [128, 128, 192, 32, 96, 64],
    "mixed_4b": [192, 96, 208, 16, 48, 64],
    "mixed_4c": [160, 112, 224, 24, 64, 64],
    "mixed_4d": [128, 128, 256, 24, 64, 64],
    "mixed_4e": [112, 144, 288, 32, 64, 64],
    "mixed_4f": [256, 160, 320, 32, 128, 128],
    "mixed_5b": [256, 160, 320, 32, 128, 128],
    "mixed_5c": [384, 192, 384, 48, 128, 128],
}


def _same_pad(kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> tuple[int, ...]:
    """F.pad tuple (W, H, T order) of the static TF-SAME padding."""
    pads: list[int] = []
    for k, s in reversed(list(zip(kernel, stride, strict=True))):
        total = max(k - s, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm3d + ReLU with TF-SAME padding."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        self.pad = _same_pad(kernel, stride)
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, bias=False)
        self.batch3d = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        return F.relu(self.batch3d(self.conv3d(x)))


class MaxPoolSame(nn.Module):
    """MaxPool3d with zero TF-SAME padding and ``ceil_mode`` (inputs are post-ReLU, so 0 is neutral)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.pad = _same_pad(kernel, stride)
        self.pool = nn.MaxPool3d(kernel, stride, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.pad(x, self.pad) if any(self.pad) else x)


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1->3x3 | 1x1->3x3 | pool->1x1, concatenated on channels."""

    def __init__(self, cin: int, c: list[int]):
        super().__init__()
        self.branch_0 = Unit3D(cin, c[0])
        self.branch_1 = nn.Sequential(Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3)))
        self.branch_2 = nn.Sequential(Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3)))
        self.branch_3 = nn.Sequential(MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5]))
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], 1)


class MaskAttention(nn.Module):
    """``B_A(X) = X + X * A`` with ``A = sigmoid(f_A(X))``; returns the logits of ``A`` too."""

    def __init__(self, channels: int, hidden: int, bias_init: float):
        super().__init__()
        self.f_a = nn.Sequential(
            nn.Conv3d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv3d(hidden, 1, 3, padding=1),
        )
        nn.init.zeros_(self.f_a[2].weight)
        nn.init.constant_(self.f_a[2].bias, bias_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.f_a(x)  # (B, 1, T', h, w)
        return x + x * torch.sigmoid(logits), logits


class I3DBackbone(nn.Module):
    """I3D trunk without the logits layer, with mask attention after ``mixed_3c``.

    Input ``(B, 3, T, H, W)`` float, ImageNet-normalised RGB. Output: tokens
    ``(B, C5, T / token_stride, H / 32, W / 32)`` from ``mixed_5c`` and the attention logits
    ``(B, 1, T / 2, H / 8, W / 8)``.
    """

    def __init__(self, width: float = 1.0, token_stride: int = 4, attn_hidden: int = 64, attn_bias: float = -2.2):
        super().__init__()

        def w(c: int) -> int:
            return max(1, round(c * width))

        self.conv3d_1a_7x7 = Unit3D(3, w(64), (7, 7, 7), (2, 2, 2))
        self.maxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.conv3d_2b_1x1 = Unit3D(w(64), w(64))
        self.conv3d_2c_3x3 = Unit3D(w(64), w(192), (3, 3, 3))
        self.maxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        cin = w(192)
        blocks = {}
        for name, chans in _MIXED.items():
            blocks[name] = Mixed(cin, [w(c) for c in chans])
            cin = blocks[name].out_channels
        self.mixed_3b, self.mixed_3c = blocks["mixed_3b"], blocks["mixed_3c"]
        self.mask_attention = MaskAttention(self.mixed_3c.out_channels, attn_hidden, attn_bias)
        self.maxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        self.mixed_4b, self.mixed_4c, self.mixed_4d = (
            blocks["mixed_4b"],
            blocks["mixed_4c"],
            blocks["mixed_4d"],
        )
        self.mixed_4e, self.mixed_4f = blocks["mixed_4e"], blocks["mixed_4f"]
        t5 = 2 if token_stride == 8 else 1
        self.maxPool3d_5a_2x2 = MaxPoolSame((t5, 2, 2), (t5, 2, 2))
        self.mixed_5b, self.mixed_5c = blocks["mixed_5b"], blocks["mixed_5c"]
        self.out_channels = self.mixed_5c.out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxPool3d_2a_3x3(self.conv3d_1a_7x7(x))  # (B, 64, T/2, H/4, W/4)
        x = self.maxPool3d_3a_3x3(self.conv3d_2c_3x3(self.conv3d_2b_1x1(x)))  # (B, 192, T/2, H/8, W/8)
        x = self.mixed_3c(self.mixed_3b(x))  # (B, 480, T/2, H/8, W/8)
        x, attn_logits = self.mask_attention(x)
        x = self.maxPool3d_4a_3x3(x)  # (B, 480, T/4, H/16, W/16)
        x = self.mixed_4f(self.mixed_4e(self.mixed_4d(self.mixed_4c(self.mixed_4b(x)))))
        x = self.maxPool3d_5a_2x2(x)  # (B, 832, T/token_stride, H/32, W/32)
        x = self.mixed_5c(self.mixed_5b(x))  # (B, 1024, T/token_stride, H/32, W/32)
        return x, attn_logits


class StaticStream(nn.Module):
    """Per-frame 2D ResNet-18 trunk (torchvision layout), frames pooled to the I3D token rate.

    Input ``(B, 3, T, H, W)`` normalised RGB; output ``(B, T / token_stride, 512)``.
    """

    def __init__(self, token_stride: int):
        super().__init__()
        from torchvision.models import resnet18

        self.net = resnet18(weights=None)
        self.net.fc = nn.Identity()
        self.token_stride = token_stride
        self.out_channels = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        f = self.net(x.transpose(1, 2).reshape(b * t, c, h, w))  # (B*T, 512)
        return f.view(b, t // self.token_stride, self.token_stride, -1).mean(2)


def load_resnet18_weights(stream: StaticStream, path: str | Path) -> int:
    """Load a torchvision ResNet-18 state dict (``fc.*`` dropped) into the static stream.

    Raises:
        InputError: missing/unreadable file or tensors that do not fit.
    """
    p = Path(path)
    state = _read_state_dict(p, "ResNet-18", "train.static_weights=PATH")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        stream.net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InputError(f"ResNet-18 weights {p} do not fit torchvision's resnet18: {str(e).splitlines()[0]}") from e
    return len(state)


def load_kinetics_weights(backbone: I3DBackbone, path: str | Path) -> int:
    """Load hassony2's Kinetics-400 ``model_rgb.pth`` into ``backbone`` (logits layer dropped).

    Returns:
        Number of tensors loaded.

    Raises:
        InputError: the file is missing, unreadable, or its tensors do not fit this backbone
            (e.g. ``backbone_width != 1``).
    """
    p = Path(path)
    state = _read_state_dict(p, "I3D", "train.backbone_weights=PATH/model_rgb.pth")
    state = {k: v for k, v in state.items() if not k.startswith("conv3d_0c_1x1")}
    own = backbone.state_dict()
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.startswith("mask_attention") and "num_batches" not in k]
    if wrong or missing:
        raise InputError(
            f"I3D weights {p} do not fit this backbone ({len(wrong)} shape mismatches, e.g. "
            f"{(wrong or missing)[0]}; {len(missing)} missing); they need model.backbone_width=1.0"
        )
    backbone.load_state_dict(state, strict=False)
    return len(state)


def _read_state_dict(p: Path, what: str, option: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, on the CPU, without running pickled code.

    Raises:
        InputError: the file is missing (``option`` says what to pass) or not a readable state dict.
    """
    if not p.is_file():
        raise InputError(f"{what} weights {p} not found; pass {option}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for bad pickles
        raise InputError(f"{what} weights {p} could not be read as a state dict ({type(e).__name__}: {e})") from e


def warn_random_init() -> None:
    """Log the loud warning for a backbone without Kinetics weights."""
    log.warning(
        "!!! I3D backbone is RANDOMLY INITIALISED: no train.backbone_weights given. Published "
        "numbers all start from Kinetics-400 weights (model_rgb.pth); expect far worse results. !!!"
    )
