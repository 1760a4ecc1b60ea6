"""Fusion of per-stream video embeddings into one (the slot MOV's cross-attention fusion, Eq. 4-7, will fill).

A fusion takes ``{stream: (..., D_s)}`` in the recogniser's stream order and returns ``(..., D)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class IdentityFusion(nn.Module):
    """One stream: its embedding, unchanged."""

    def __init__(self, *, dims: Mapping[str, int]) -> None:
        super().__init__()
        if len(dims) != 1:
            raise ValueError(f"fusion 'identity' takes exactly one stream, got {list(dims)} (use model.fusion=mean)")
        self.dim = next(iter(dims.values()))

    def forward(self, streams: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return next(iter(streams.values()))


class MeanFusion(nn.Module):
    """Late fusion: the mean of the L2-normalised stream embeddings (all streams must share one width)."""

    def __init__(self, *, dims: Mapping[str, int]) -> None:
        super().__init__()
        widths = set(dims.values())
        if len(widths) != 1:
            raise ValueError(f"fusion 'mean' needs streams of one width, got {dict(dims)}")
        self.dim = widths.pop()

    def forward(self, streams: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([nn.functional.normalize(x.float(), dim=-1) for x in streams.values()]).mean(0)
