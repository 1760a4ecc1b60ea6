"""MOV's heads (§3.1-3.2): temporal transformers, the audio MLP and the cross-attention fusion.

* :class:`MovTemporalTransformer` -- ``φ_v`` / ``φ_f`` (Eq. 2-4): ``L`` pre-LN transformer layers over the frame
  features of one stream, ``y = MSA(LN(z)) + z``, ``z' = MLP(LN(y)) + y``; it returns the whole sequence (MOV pools
  only after the fusion, Eq. 6 / 8). §4.2: 2 layers, width 512, 8 heads. Learned temporal position embeddings are
  added to ``z⁰`` (the paper does not say; without them the layers are permutation-equivariant and frame order, which
  the flow stream is about, would be lost after pooling) -- initialised at zero, so step 0 sees the frames as given.
* :class:`MovAudioMLP` -- ``a_t = MLP(a)`` (Eq. 4) on the single spectrogram embedding (a residual MLP block).
* :class:`MovCrossAttention` -- one "transformer decoder layer" of §4.2 with separate LayerNorms for the query and
  the key/value inputs: ``q' = MCA(LN_q(q), LN_kv(c)) + q``, then ``AvgPool(MLP(LN(q')) + q')`` (Eq. 5-8).
* :class:`MovFusion` -- the two directions of §3.2 for a video + flow or video + audio pair: the video branch queries
  the other stream's temporal features (``v_m``, Eq. 5-6); the other branch queries the BACKBONE video features ``v``,
  not ``φ_v(v)``, "for better generalization on novel classes" (``x_m``, Eq. 7-8). It also returns the temporal average
  of the frozen ``v``, which the novel-class inference of Eq. 11-12 mixes in (:func:`openvocab.scoring.mov_novel_probabilities`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class _Mlp(nn.Sequential):
    """``Linear(d, 4d) -> GELU -> Linear(4d, d)``, the transformer MLP of Eq. 3 / 6 / 8."""

    def __init__(self, dim: int, *, ratio: int = 4) -> None:
        super().__init__(nn.Linear(dim, ratio * dim), nn.GELU(), nn.Linear(ratio * dim, dim))


class MovTemporalLayer(nn.Module):
    """Eq. 2-3: ``y = MSA(LN(z)) + z``; ``z' = MLP(LN(y)) + y``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.norm1(z)
        y = self.attn(h, h, h, need_weights=False)[0] + z
        return self.mlp(self.norm2(y)) + y


class MovTemporalTransformer(nn.Module):
    """``φ`` of Eq. 2-4: ``(B, T, D) -> (B, T, D)`` (no pooling)."""

    def __init__(self, *, dim: int = 512, layers: int = 2, heads: int = 8, max_frames: int = 64) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.position = nn.Parameter(torch.zeros(max_frames, dim))
        self.layers = nn.ModuleList(MovTemporalLayer(dim, heads) for _ in range(layers))
        self.max_frames = max_frames

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t = frames.shape[1]
        if t > self.max_frames:
            raise ValueError(f"the MOV temporal transformer was built for at most {self.max_frames} frames, got {t}")
        z = frames + self.position[:t].to(frames.dtype)
        for layer in self.layers:
            z = layer(z)
        return z


class MovAudioMLP(nn.Module):
    """Eq. 4 for audio, ``a_t = MLP(a)``, ``(B, 1, D) -> (B, 1, D)`` (one spectrogram image per view), as a pre-LN
    residual MLP block, ``a + MLP(LN(a))``, like the sublayers of ``φ_v`` / ``φ_f`` (Eq. 3). The paper says only that
    an MLP is attached upon the backbone; without the residual the backbone's embedding reaches the fusion only through
    a randomly initialised MLP, and on the synthetic tone benchmark the fused model then did not learn in 12 epochs
    where this form, like the audio-only model, does."""

    def __init__(self, *, dim: int = 512) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a + self.mlp(self.norm(a))


class MovCrossAttention(nn.Module):
    """Eq. 5-6 (or 7-8): ``q' = MCA(LN_q(q), LN_kv(c)) + q``; returns ``AvgPool_t(MLP(LN(q')) + q')``, ``(B, D)``."""

    def __init__(self, *, dim: int = 512, heads: int = 8) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        # the cross-modal term starts at zero (as Flamingo's gated cross-attention): at step 0 each branch is its own
        # stream, and the other modality is mixed in as training finds it useful rather than as noise from the start
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)
        self.norm_out = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        c = self.norm_context(context)
        q = self.attn(self.norm_query(query), c, c, need_weights=False)[0] + query
        return (self.mlp(self.norm_out(q)) + q).mean(dim=1)


@dataclass
class MovOutputs:
    """What MOV scores: ``video`` = ``v_m`` (base classes, Eq. 10; loss term α), ``other`` = ``f_m`` or ``a_m`` (loss
    term 1 − α; novel classes, Eq. 11), ``frozen_video`` = TAP of the frozen backbone features ``v`` (Eq. 11).

    :meth:`stack` packs the three into one ``(..., 3, D)`` tensor (in this field order) so that view and segment
    pooling in :mod:`openvocab.scoring` can carry them like any other embedding; :meth:`unstack` reverses it."""

    video: torch.Tensor
    other: torch.Tensor
    frozen_video: torch.Tensor

    def map(self, fn) -> MovOutputs:
        """The same outputs with ``fn`` applied to each (e.g. a head's projection)."""
        return MovOutputs(video=fn(self.video), other=fn(self.other), frozen_video=fn(self.frozen_video))

    def stack(self) -> torch.Tensor:
        return torch.stack([self.video, self.other, self.frozen_video], dim=-2)

    @classmethod
    def unstack(cls, stacked: torch.Tensor) -> MovOutputs:
        if stacked.shape[-2] != 3:
            raise ValueError(f"stacked MOV outputs have shape (..., 3, D), got {tuple(stacked.shape)}")
        return cls(video=stacked[..., 0, :], other=stacked[..., 1, :], frozen_video=stacked[..., 2, :])


class MovFusion(nn.Module):
    """§3.2 for one pair: video + ``other`` (``"flow"``: frame sequence, ``φ_f``; ``"audio"``: one embedding, MLP).

    ``forward(v, x)``: ``v`` the video backbone's frame features ``(B, T, D)``, ``x`` the other backbone's features
    (flow ``(B, T', D)``; audio ``(B, D)`` or ``(B, 1, D)``). Returns :class:`MovOutputs`.
    """

    def __init__(self, *, other: str, dim: int = 512, layers: int = 2, heads: int = 8, max_frames: int = 64) -> None:
        super().__init__()
        if other not in ("flow", "audio"):
            raise ValueError(f"MOV fuses video with 'flow' or 'audio', got '{other}'")
        self.other = other
        self.video_temporal = MovTemporalTransformer(dim=dim, layers=layers, heads=heads, max_frames=max_frames)
        self.other_temporal = MovTemporalTransformer(dim=dim, layers=layers, heads=heads, max_frames=max_frames) if other == "flow" else MovAudioMLP(dim=dim)
        self.video_fusion = MovCrossAttention(dim=dim, heads=heads)  # v_t queries x_t (Eq. 5-6)
        self.other_fusion = MovCrossAttention(dim=dim, heads=heads)  # x_t queries the backbone's v (Eq. 7-8)

    def forward(self, video: torch.Tensor, other: torch.Tensor) -> MovOutputs:
        if other.ndim == 2:
            other = other[:, None]
        v = video.float()
        v_t = self.video_temporal(v)
        x_t = self.other_temporal(other.float())
        return MovOutputs(video=self.video_fusion(v_t, x_t), other=self.other_fusion(x_t, v), frozen_video=v.mean(dim=1))
