"""Temporal samplers: which frame indices of an N-frame video a model sees.

Two families, as in the papers:

* **uniform segments** (TSN-style; Text4Vis §3 "we uniformly sample T frames", ActionCLIP / Text4Vis data code):
  the video is cut into T equal segments and one frame is taken per segment — its centre at test time, a random
  frame during training. Multi-view testing shifts the whole grid (Text4Vis multi-view uniform test).
* **dense clips** (MOV §4.1 "16 frames with a stride of 4"): ``clip_len`` consecutive frames ``stride`` apart; at
  test time several clips spread uniformly over the video (MOV §4.2 "4 clips temporally", following SlowFast).

Every function returns ``np.int64`` indices in ``[0, N)``; videos shorter than the sampled span repeat frames
(loop / pad), so callers never need special cases for short clips.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from openvocab.errors import InputError
from openvocab.io.choices import SAMPLERS

__all__ = [
    "SamplerSpec",
    "dense_clip",
    "dense_multiclip",
    "parse_views",
    "sample_indices",
    "uniform_multiclip",
    "uniform_segments",
]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def uniform_segments(
    num_frames: int,
    num_segments: int,
    *,
    train: bool = False,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """TSN-style segment sampling (Text4Vis §3 "uniformly sample T frames"); returns (T,) int64 indices.

    Test mode, as in the Text4Vis / ActionCLIP data code (segment length 1):
    ``N >= T``: ``idx_i = int(i*N/T + (N/T - 1)/2)`` (the centre of segment i);
    ``N < T``: ``idx_i = i*N // T`` (frames repeat: the loop/pad case).
    Train mode: one uniformly random frame inside each segment ``[floor(i*N/T), floor((i+1)*N/T))``; an empty
    segment (``N < T``) yields its start frame.
    """
    n = _positive_int(num_frames, "num_frames")
    t = _positive_int(num_segments, "num_segments")
    i = np.arange(t, dtype=np.int64)
    if train:
        lo = i * n // t
        hi = (i + 1) * n // t
        width = np.maximum(hi - lo, 1)
        return (lo + (_rng(rng).random(t) * width).astype(np.int64).clip(max=width - 1)).astype(np.int64)
    if n < t:
        return (i * n // t).astype(np.int64)
    tick = n / t
    return np.array([int(k * tick + (tick - 1.0) / 2.0) for k in range(t)], dtype=np.int64)


def uniform_multiclip(num_frames: int, num_segments: int, num_clips: int) -> np.ndarray:
    """Text4Vis multi-view uniform test sampling; returns (num_clips, T) int64 indices.

    ``tick = N/T; starts = linspace(0, tick - 1, num_clips)`` truncated to int, ``idx = int(start + tick*x) % N``.
    The starts are truncated toward zero as NumPy 1.x's ``linspace(..., dtype=int)`` did in the original code
    (NumPy 2 floors instead, which would give negative starts when N < T). ``num_clips == 1`` gives the
    single-view test indices of :func:`uniform_segments`.
    """
    n = _positive_int(num_frames, "num_frames")
    t = _positive_int(num_segments, "num_segments")
    c = _positive_int(num_clips, "num_clips")
    if c == 1:
        return uniform_segments(n, t)[None, :]
    tick = n / t
    starts = np.linspace(0.0, tick - 1.0, num=c).astype(np.int64)  # astype truncates toward zero
    return np.array([[int(s + tick * x) % n for x in range(t)] for s in starts.tolist()], dtype=np.int64)


def _span(clip_len: int, stride: int) -> int:
    return (clip_len - 1) * stride + 1


def dense_clip(
    num_frames: int,
    clip_len: int,
    stride: int,
    *,
    train: bool = False,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """One dense clip of ``clip_len`` frames ``stride`` apart (MOV §4.1 "16 frames with a stride of 4"); (L,) int64.

    ``span = (L-1)*stride + 1``. Test: ``start = max(0, (N-span)//2)`` (centred clip); train: ``start`` uniform in
    ``[0, max(0, N-span)]``. ``idx_k = (start + k*stride) mod N`` — the clip loops when the video is shorter than
    the span.
    """
    n = _positive_int(num_frames, "num_frames")
    length = _positive_int(clip_len, "clip_len")
    step = _positive_int(stride, "stride")
    delta = max(0, n - _span(length, step))
    start = int(_rng(rng).integers(0, delta + 1)) if train else delta // 2
    return ((start + np.arange(length, dtype=np.int64) * step) % n).astype(np.int64)


def dense_multiclip(num_frames: int, clip_len: int, stride: int, num_clips: int) -> np.ndarray:
    """Dense clips spread uniformly in time (MOV §4.2 "4 clips temporally", following SlowFast); (num_clips, L).

    ``delta = max(0, N - span)``; ``start_k = round(k * delta / (num_clips - 1))`` (rounded half up) for
    ``num_clips > 1``, the centre ``delta // 2`` for one clip; indices wrap modulo N.
    """
    n = _positive_int(num_frames, "num_frames")
    length = _positive_int(clip_len, "clip_len")
    step = _positive_int(stride, "stride")
    c = _positive_int(num_clips, "num_clips")
    delta = max(0, n - _span(length, step))
    if c == 1:
        starts = np.array([delta // 2], dtype=np.int64)
    else:
        k = np.arange(c, dtype=np.int64)
        starts = (2 * k * delta + (c - 1)) // (2 * (c - 1))  # exact integer round-half-up of k*delta/(c-1)
    offsets = np.arange(length, dtype=np.int64) * step
    return ((starts[:, None] + offsets[None, :]) % n).astype(np.int64)


@dataclass(frozen=True)
class SamplerSpec:
    """How to sample a video: ``kind`` uniform (TSN segments) or dense (strided clip), ``frames`` per view,
    ``stride`` (dense only), ``temporal_views`` x ``spatial_crops`` test views (the papers' "4x3" protocol)."""

    kind: Literal["uniform", "dense"] = "uniform"
    frames: int = 8
    stride: int = 4
    temporal_views: int = 1
    spatial_crops: int = 1

    def __post_init__(self) -> None:
        SAMPLERS.check(self.kind)
        for name in ("frames", "stride", "temporal_views", "spatial_crops"):
            _positive_int(getattr(self, name), name)
        if self.spatial_crops not in (1, 3):
            raise InputError(f"spatial_crops must be 1 or 3, got {self.spatial_crops}")

    @property
    def views(self) -> str:
        """The view protocol as text, e.g. ``"4x3"``."""
        return f"{self.temporal_views}x{self.spatial_crops}"


_VIEWS_RE = re.compile(r"^\s*(\d+)\s*(?:[x×X*]\s*(\d+))?\s*$")


def parse_views(text: str) -> tuple[int, int]:
    """Parse a view protocol ``"TxS"`` (temporal views x spatial crops), e.g. ``"4x3" -> (4, 3)``; ``"4" -> (4, 1)``."""
    match = _VIEWS_RE.match(str(text))
    if not match:
        raise InputError(f"views must look like '4x3' (temporal x spatial), got {text!r}")
    temporal = int(match.group(1))
    spatial = int(match.group(2) or 1)
    if temporal < 1:
        raise InputError(f"temporal views must be at least 1, got {text!r}")
    if spatial not in (1, 3):
        raise InputError(f"spatial crops must be 1 or 3, got {text!r}")
    return temporal, spatial


def sample_indices(
    spec: SamplerSpec,
    num_frames: int,
    *,
    train: bool = False,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Frame indices for every temporal view of ``spec``: (temporal_views, frames) int64.

    Test: uniform -> :func:`uniform_multiclip` (Text4Vis), dense -> :func:`dense_multiclip` (MOV/SlowFast).
    Train: each view is an independent random draw (:func:`uniform_segments` / :func:`dense_clip` with
    ``train=True``).
    """
    if not isinstance(spec, SamplerSpec):
        raise InputError(f"expected a SamplerSpec, got {type(spec).__name__}")
    n = _positive_int(num_frames, "num_frames")
    if train:
        gen = _rng(rng)
        if spec.kind == "uniform":
            rows = [uniform_segments(n, spec.frames, train=True, rng=gen) for _ in range(spec.temporal_views)]
        else:
            rows = [dense_clip(n, spec.frames, spec.stride, train=True, rng=gen) for _ in range(spec.temporal_views)]
        return np.stack(rows).astype(np.int64)
    if spec.kind == "uniform":
        return uniform_multiclip(n, spec.frames, spec.temporal_views)
    return dense_multiclip(n, spec.frames, spec.stride, spec.temporal_views)
