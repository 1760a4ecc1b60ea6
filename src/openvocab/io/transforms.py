"""Batched CLIP preprocessing in torch: all frames of a clip in one resize call, no per-frame PIL.

Matches CLIP's image pipeline (and transformers' ``CLIPImageProcessor`` defaults): bicubic resize of the short
side to 224, centre crop 224x224, scale to [0, 1], normalise with CLIP's mean/std. The multi-view test protocol of
the papers (Text4Vis, MOV: "3 spatial crops") takes three crops along the long side instead of the centre one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from openvocab.errors import InputError

__all__ = ["CLIP_MEAN", "CLIP_STD", "ImageSpec", "crop_offsets", "preprocess_frames"]

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def _resized_shape(height: int, width: int, short: int) -> tuple[int, int]:
    """Output (H, W) with the short side = ``short``; the long side truncated like transformers' resize."""
    if height <= width:
        return short, max(short, int(short * width / height))
    return max(short, int(short * height / width)), short


def crop_offsets(height: int, width: int, size: int, crops: int) -> list[tuple[int, int]]:
    """Top-left corners (top, left) of the crops.

    ``crops=1``: the centre crop (``(H-size)//2, (W-size)//2`` as transformers' ``center_crop``).
    ``crops=3``: the papers' three spatial crops along the long side — left/centre/right for landscape (and
    square) frames, top/centre/bottom for portrait ones — centred on the short side.
    """
    if height < size or width < size:
        raise InputError(f"cannot take {size}x{size} crops from {width}x{height} frames")
    centre = ((height - size) // 2, (width - size) // 2)
    if crops == 1:
        return [centre]
    if width >= height:
        return [(centre[0], 0), centre, (centre[0], width - size)]
    return [(0, centre[1]), centre, (height - size, centre[1])]


def _as_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(frames, torch.Tensor):
        x = frames
    elif isinstance(frames, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(frames))
    else:
        raise InputError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"frames must have shape (N, H, W, 3), got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise InputError(f"frames must be uint8 RGB, got {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise InputError(f"frames must be non-empty, got shape {tuple(x.shape)}")
    return x


def preprocess_frames(
    frames: np.ndarray | torch.Tensor,
    *,
    size: int = 224,
    crops: int = 1,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    resize_short_side: int | None = None,
) -> torch.Tensor:
    """CLIP-normalised crops of a clip: (N, H, W, 3) uint8 -> float32 (crops, N, 3, size, size).

    Steps (CLIP / ``CLIPImageProcessor``): bicubic antialiased resize of the short side to ``resize_short_side``
    (default ``size``), clamp to [0, 255], crop (centre, or three along the long side — the papers' 3-crop test
    views), scale to [0, 1], normalise with ``mean``/``std``. One ``interpolate`` call for all frames; crops are
    views of the resized batch, so 3 crops cost one resize.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"size must be a positive integer, got {size!r}")
    if crops not in (1, 3):
        raise InputError(f"crops must be 1 or 3, got {crops!r}")
    short = size if resize_short_side is None else resize_short_side
    if isinstance(short, bool) or not isinstance(short, int) or short < size:
        raise InputError(f"resize_short_side must be an integer >= size ({size}), got {resize_short_side!r}")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise InputError("mean and std must have 3 values each, std positive")

    x = _as_tensor(frames)
    _, h, w, _ = x.shape
    x = x.permute(0, 3, 1, 2).to(torch.float32)  # (N, 3, H, W), 0..255: the one uint8 -> float conversion
    out_h, out_w = _resized_shape(h, w, short)
    if (out_h, out_w) != (h, w):
        x = F.interpolate(x, size=(out_h, out_w), mode="bicubic", antialias=True, align_corners=False)
        x = x.clamp_(0.0, 255.0)
    views = [x[:, :, top : top + size, left : left + size] for top, left in crop_offsets(out_h, out_w, size, crops)]
    out = torch.stack(views)  # (crops, N, 3, size, size)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1) * 255.0
    return out.sub_(m).div_(s).contiguous()


@dataclass(frozen=True)
class ImageSpec:
    """How frames are prepared for a model: crop size, short side before cropping, normalisation.

    A model's spec is read from its ``preprocessor_config.json`` (:class:`~openvocab.models.backbone.ClipBackbone`);
    datasets, the feature cache and the classifier all preprocess with it.
    """

    size: int = 224
    resize_short_side: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
