"""Fusion of the recogniser's streams.

Two kinds, told apart by the class attribute ``sequences``:

* pooled fusions (``identity``, ``mean``): each stream's temporal module pools first; the fusion takes
  ``{stream: (..., D_s)}`` in the recogniser's stream order and returns ``(..., D)``;
* MOV fusions (``mov``, ``score``; ``sequences = True``): they take the unpooled frame features ``{stream: (..., T,
  D)}`` of a video stream (the primary one, RGB) and one flow or audio stream, run their own temporal heads and
  return :class:`~openvocab.models.mov.MovOutputs` -- the fused video feature, the fused flow/audio feature and the
  frozen video feature -- which MOV's loss (Eq. 9) and its base / novel inference (Eq. 10-12) score separately.
  ``mov`` is the cross-attention fusion of §3.2 (Eq. 5-8); ``score`` is Table 5's "score fusion" baseline: the same
  temporal heads (Eq. 2-4) without cross-attention, pooled, and the two streams' class probabilities averaged.
  A stream that feeds a MOV fusion keeps ``temporal: tap`` (unused): the fusion's temporal transformers replace it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from openvocab.errors import InputError


class IdentityFusion(nn.Module):
    """One stream: its embedding, unchanged."""

    sequences = False

    def __init__(self, *, dims: Mapping[str, int], **_: object) -> None:
        super().__init__()
        if len(dims) != 1:
            raise ValueError(f"fusion 'identity' takes exactly one stream, got {list(dims)} (use model.fusion=mean)")
        self.dim = next(iter(dims.values()))

    def forward(self, streams: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return next(iter(streams.values()))


class MeanFusion(nn.Module):
    """Late fusion: the mean of the L2-normalised stream embeddings (all streams must share one width)."""

    sequences = False

    def __init__(self, *, dims: Mapping[str, int], **_: object) -> None:
        super().__init__()
        widths = set(dims.values())
        if len(widths) != 1:
            raise ValueError(f"fusion 'mean' needs streams of one width, got {dict(dims)}")
        self.dim = widths.pop()

    def forward(self, streams: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([nn.functional.normalize(x.float(), dim=-1) for x in streams.values()]).mean(0)


class MovStreamFusion(nn.Module):
    """MOV fusion of the video stream with one flow or audio stream (module docstring).

    ``dims`` / ``inputs``: width and input modality of each stream, in the recogniser's order: the first stream must
    read ``rgb`` (its backbone gives ``v``), the second ``flow`` or ``audio``. ``cross_attention=False`` is the score
    fusion of Table 5. ``base_rule`` says how base classes are scored: ``"video"`` (Eq. 10, ``v_m`` alone) or
    ``"mean"`` (score fusion: the two streams' probabilities averaged).
    """

    sequences = True

    def __init__(self, *, dims: Mapping[str, int], inputs: Mapping[str, str], cross_attention: bool = True, layers: int = 2, heads: int = 8) -> None:
        super().__init__()
        from openvocab.models.mov import MovAudioMLP, MovFusion, MovTemporalTransformer

        kind = "mov" if cross_attention else "score"
        names = list(dims)
        if len(names) != 2:
            raise InputError(f"fusion '{kind}' fuses exactly two streams (video + flow or audio), got {names}")
        self.video, self.other = names
        if inputs.get(self.video) != "rgb" or inputs.get(self.other) not in ("flow", "audio"):
            raise InputError(
                f"fusion '{kind}' needs the first stream to read rgb and the second flow or audio, got {self.video}: {inputs.get(self.video)}, "
                f"{self.other}: {inputs.get(self.other)}"
            )
        if dims[self.video] != dims[self.other]:
            raise InputError(f"fusion '{kind}' needs streams of one width, got {dict(dims)}")
        self.other_input = inputs[self.other]
        self.dim = dims[self.video]
        self.cross_attention = cross_attention
        self.base_rule = "video" if cross_attention else "mean"
        self.max_frames = 64  # the temporal transformers' learned positions
        if cross_attention:
            self.mov = MovFusion(other=self.other_input, dim=self.dim, layers=layers, heads=heads)
        else:
            self.video_temporal = MovTemporalTransformer(dim=self.dim, layers=layers, heads=heads)
            self.other_temporal = MovTemporalTransformer(dim=self.dim, layers=layers, heads=heads) if self.other_input == "flow" else MovAudioMLP(dim=self.dim)

    def forward(self, streams: Mapping[str, torch.Tensor]):
        """``{video: (B, T, D), other: (B, T', D)}`` -> :class:`~openvocab.models.mov.MovOutputs` of ``(B, D)``."""
        from openvocab.models.mov import MovOutputs

        v, x = streams[self.video].float(), streams[self.other].float()
        if self.cross_attention:
            return self.mov(v, x)
        return MovOutputs(video=self.video_temporal(v).mean(dim=1), other=self.other_temporal(x).mean(dim=1), frozen_video=v.mean(dim=1))


def build_mov_fusion(*, dims: Mapping[str, int], inputs: Mapping[str, str], **_: object) -> MovStreamFusion:
    """MOV §3.2: temporal transformers (2 layers, 8 heads, Eq. 2-4) + cross-attention fusion (Eq. 5-8)."""
    return MovStreamFusion(dims=dims, inputs=inputs, cross_attention=True)


def build_score_fusion(*, dims: Mapping[str, int], inputs: Mapping[str, str], **_: object) -> MovStreamFusion:
    """MOV Table 5 "score fusion": the same temporal heads, no cross-attention, probabilities averaged."""
    return MovStreamFusion(dims=dims, inputs=inputs, cross_attention=False)
