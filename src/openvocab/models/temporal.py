"""Temporal modules of Text4Vis §4.3 / Table 8: how per-frame CLIP features become one video embedding.

* :class:`TemporalAveragePooling` (TAP) -- the mean over frames.
* :class:`TemporalTransformer` (T-Trans) -- frame embeddings plus learned temporal position embeddings through a
  multi-layer pre-LN transformer encoder, added back to the input (residual) and averaged over time, as in the
  Text4Vis reference implementation. Its output projections start at zero, so at step 0 it returns TAP exactly
  and fine-tuning starts from the pretrained model's behaviour.
* :class:`TokenT1D` -- a channel-wise temporal 1-D convolution on the [class] token *inside* chosen ViT blocks
  (applied to each chosen block's input), identity-initialised so the pretrained model is unchanged at step 0.
  It hooks into the CLIP vision encoder layers of a :class:`~openvocab.models.backbone.ClipBackbone`.
* :class:`ResNetT1D` -- T1D for CLIP-ResNet: a channel-wise temporal 1-D convolution on the residual branch of every
  bottleneck in the chosen stages (Text4Vis uses res4-5), initialised as a temporal shift (TSM) or as identity.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        layer = nn.TransformerEncoderLayer(
            d_model=dim, nhead=heads, dim_feedforward=4 * dim, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
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


class _FrameHooks(nn.Module):
    """Base of the temporal modules that live inside the image tower as forward pre-hooks: they act only while
    :attr:`frames` (frames per video in the current batch) is set, and :meth:`detach` removes the hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: int | None = None
        self._handles: list = []

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


class TokenT1D(_FrameHooks):
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

    def attach(self, backbone) -> TokenT1D:
        layers = backbone.clip.vision_model.encoder.layers
        for b in self.blocks:
            if not 0 <= b < len(layers):
                raise ValueError(f"TokenT1D block {b} is out of range 0..{len(layers) - 1}")
            self._handles.append(layers[b].register_forward_pre_hook(self._hook(str(b)), with_kwargs=True))
        return self

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


class ResNetT1D(_FrameHooks):
    """T1D of Text4Vis §4.3 / Table 8 for CLIP-ResNet: a depthwise temporal Conv1d (kernel 3) on the input of
    ``conv1`` of every bottleneck in the chosen stages -- the residual branch only, the identity path is untouched
    (the "residual shift" placement of TSM, which Text4Vis' reference code uses for ResNet).

    Stages use the paper's names: ``res2`` .. ``res5`` are CLIP-ResNet's ``layer1`` .. ``layer4``; the paper's
    setting is ``stages=(4, 5)``. ``init="shift"`` starts as TSM's shift (1/``fold_div`` of the channels read the
    next frame, 1/``fold_div`` the previous frame, the rest the current one), a learnable generalisation of it;
    ``init="identity"`` leaves the pretrained model unchanged at step 0. Like :class:`TokenT1D`, the hooks act only
    while :attr:`frames` is set (the recogniser sets it before each video forward).
    """

    def __init__(self, *, stages: Sequence[int], init: str = "shift", fold_div: int = 8, kernel_size: int = 3) -> None:
        super().__init__()
        if init not in ("shift", "identity"):
            raise ValueError(f"unknown T1D init '{init}' (shift, identity)")
        bad = [s for s in stages if not 2 <= int(s) <= 5]
        if bad or not stages:
            raise ValueError(f"T1D stages must be among 2, 3, 4, 5 (res2-res5), got {list(stages)}")
        self.stages = tuple(sorted({int(s) for s in stages}))
        self.init, self.fold_div, self.kernel_size = init, fold_div, kernel_size
        self.convs = nn.ModuleDict()

    def _conv(self, channels: int) -> nn.Conv1d:
        k = self.kernel_size
        conv = nn.Conv1d(channels, channels, k, padding=k // 2, groups=channels, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[:, 0, k // 2] = 1.0  # out[t] = x[t]
            if self.init == "shift":
                fold = channels // self.fold_div
                conv.weight[:fold, 0, k // 2] = 0.0
                conv.weight[:fold, 0, k // 2 + 1] = 1.0  # out[t] = x[t + 1]
                conv.weight[fold : 2 * fold, 0, k // 2] = 0.0
                conv.weight[fold : 2 * fold, 0, k // 2 - 1] = 1.0  # out[t] = x[t - 1]
        return conv

    def attach(self, backbone) -> ResNetT1D:
        vision = backbone.clip.vision_model
        if not hasattr(vision, "layer1"):
            raise ValueError("T1D needs a CLIP-ResNet backbone; for a ViT use TokenT1D (model.token_t1d_blocks)")
        for stage in self.stages:
            for i, block in enumerate(getattr(vision, f"layer{stage - 1}")):
                key = f"res{stage}_{i}"
                if key not in self.convs:
                    self.convs[key] = self._conv(int(block.conv1.in_channels)).to(device=block.conv1.weight.device)
                self._handles.append(block.conv1.register_forward_pre_hook(self._hook(key)))
        return self

    def _hook(self, key: str):
        def hook(module, args):
            if self.frames is None:
                return None
            x = args[0]  # (B*T, C, H, W)
            bt, c, h, w = x.shape
            t = self.frames
            seq = x.reshape(bt // t, t, c, h * w).permute(0, 3, 2, 1).reshape(-1, c, t)  # (B*H*W, C, T)
            mixed = self.convs[key](seq.to(self.convs[key].weight.dtype)).to(x.dtype)
            return (mixed.reshape(bt // t, h * w, c, t).permute(0, 3, 2, 1).reshape(bt, c, h, w), *args[1:])

        return hook


def build_tap(*, dim: int, layers: int = 6, max_frames: int = 64) -> TemporalAveragePooling:
    """TAP (no parameters; ``dim``/``layers``/``max_frames`` are accepted for a uniform builder signature)."""
    return TemporalAveragePooling()


def build_ttrans(*, dim: int, layers: int = 6, max_frames: int = 64) -> TemporalTransformer:
    return TemporalTransformer(dim=dim, layers=layers, max_frames=max_frames)


def build_temporal(kind: str, *, dim: int, layers: int = 6, max_frames: int = 64) -> nn.Module:
    """The temporal module named ``kind`` in :data:`openvocab.models.choices.TEMPORAL` (TokenT1D / T1D live inside
    the backbone: see :class:`TokenT1D`, :class:`ResNetT1D`)."""
    from openvocab.models.choices import TEMPORAL

    try:
        return TEMPORAL.build(kind, dim=dim, layers=layers, max_frames=max_frames)
    except Exception as exc:
        if kind not in TEMPORAL:
            raise ValueError(str(exc)) from None
        raise
