"""Temporal modules of Text4Vis §4.3 / Table 8: how per-frame CLIP features become one video embedding.

* :class:`TemporalAveragePooling` (TAP) -- the mean over frames.
* :class:`TemporalTransformer` (T-Trans) -- frame embeddings plus learned temporal position embeddings through a
  multi-layer pre-LN transformer encoder, added back to the input (residual) and averaged over time, as in the
  Text4Vis reference implementation. Its output projections start at zero, so at step 0 it returns TAP exactly
  and fine-tuning starts from the pretrained model's behaviour.
* :class:`TokenT1D` -- a channel-wise temporal 1-D convolution on the [class] token *inside* chosen ViT blocks
  (applied to each chosen block's input), identity-initialised so the pretrained model is unchanged at step 0.
  It hooks into the CLIP vision encoder layers of a :class:`~openvocab.models.backbone.ClipBackbone`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class TemporalAveragePooling(nn.Module):
    """TAP: ``(B, T, D) -> (B, D)``."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.mean(dim=1)


class TemporalTransformer(nn.Module):
    """T-Trans: ``(B, T, D) -> (B, D)`` = mean_t( x_t + Transformer(x + pos)_t ) with zero-initialised outputs."""

    def __init__(self, *, dim: int, layers: int = 6, heads: int | None = None, max_frames: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        heads = heads or max(1, dim // 64)
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.position = nn.Parameter(torch.zeros(max_frames, dim))
        nn.init.normal_(self.position, std=0.01)
        layer = nn.TransformerEncoderLayer(d_model=dim, nhead=heads, dim_feedforward=4 * dim, dropout=dropout, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        for block in self.encoder.layers:  # every residual branch starts at zero: the module is TAP at step 0
            nn.init.zeros_(block.self_attn.out_proj.weight)
            nn.init.zeros_(block.self_attn.out_proj.bias)
            nn.init.zeros_(block.linear2.weight)
            nn.init.zeros_(block.linear2.bias)
        self.max_frames = max_frames

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t = frames.shape[1]
        if t > self.max_frames:
            raise ValueError(f"T-Trans was built for at most {self.max_frames} frames, got {t}")
        x = frames + self.position[:t].to(frames.dtype)
        delta = self.encoder(x) - x  # the transformer's residual branches only
        return (frames + delta).mean(dim=1)


class TokenT1D(nn.Module):
    """Temporal depthwise Conv1d (kernel 3) on the [class] token at the input of chosen ViT blocks.

    ``attach(backbone)`` registers forward pre-hooks on the chosen CLIP vision encoder layers. While
    :attr:`frames` is set (the recogniser sets it before every video forward), the hooks reshape the layer input
    ``(B*T, 1+P, W)`` to ``(B, W, T)`` for the class token, convolve over time and put it back. The attribute
    stays set after the forward on purpose: gradient checkpointing re-runs the layers during backward.
    """

    def __init__(self, *, width: int, blocks: Sequence[int], kernel_size: int = 3) -> None:
        super().__init__()
        self.blocks = tuple(int(b) for b in blocks)
        self.convs = nn.ModuleDict()
        for b in self.blocks:
            conv = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2, groups=width, bias=False)
            with torch.no_grad():  # identity: centre tap 1, others 0
                conv.weight.zero_()
                conv.weight[:, 0, kernel_size // 2] = 1.0
            self.convs[str(b)] = conv
        self.frames: int | None = None
        self._handles: list = []

    def attach(self, backbone) -> "TokenT1D":
        layers = backbone.clip.vision_model.encoder.layers
        for b in self.blocks:
            if not 0 <= b < len(layers):
                raise ValueError(f"TokenT1D block {b} is out of range 0..{len(layers) - 1}")
            self._handles.append(layers[b].register_forward_pre_hook(self._hook(str(b)), with_kwargs=True))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, key: str):
        def hook(module, args, kwargs):
            if self.frames is None:
                return None  # plain image forward: untouched
            hidden = args[0] if args else kwargs["hidden_states"]
            bt, tokens, width = hidden.shape
            t = self.frames
            cls = hidden[:, 0].reshape(bt // t, t, width).transpose(1, 2)  # (B, W, T)
            mixed = self.convs[key](cls).transpose(1, 2).reshape(bt, width)
            hidden = torch.cat([mixed.unsqueeze(1).to(hidden.dtype), hidden[:, 1:]], dim=1)
            if args:
                return (hidden, *args[1:]), kwargs
            kwargs = dict(kwargs, hidden_states=hidden)
            return args, kwargs

        return hook


def build_temporal(kind: str, *, dim: int, layers: int = 6, max_frames: int = 64) -> nn.Module:
    """``"tap"`` or ``"ttrans"`` (TokenT1D lives inside the backbone: see :class:`TokenT1D`)."""
    if kind == "tap":
        return TemporalAveragePooling()
    if kind == "ttrans":
        return TemporalTransformer(dim=dim, layers=layers, max_frames=max_frames)
    raise ValueError(f"unknown temporal module '{kind}' (tap, ttrans)")
