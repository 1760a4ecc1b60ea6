"""The regularised temporal branch of open-vocabulary multi-label §3.2 (Fig. 4), its serial variant (appendix G,
Table 11) and the stochastic weight regularisation of its CLIP-initialised spatial layers.

A stream with ``temporal: parallel`` (or ``serial``) keeps its CLIP vision tower FROZEN (the paper trains only the
branch; Table 3b shows that unfreezing the tower over-fits) and runs a branch of ``T = branch_blocks`` blocks beside
its last ``T`` blocks. The recogniser's path is unchanged: the stream's per-frame "frame features" are everything
the branch needs from the frozen tower for that frame, flattened to one vector (:meth:`TemporalBranch.frame_features`,
``(N, 3, S, S) -> (N, F)``), and the branch is the stream's temporal module (``(..., T, F) -> (..., D)``), so the
classifier's views and timeline segments (the branch over one segment's frames) work as for TAP and T-Trans.

Frame features, one row per frame: ``[e (D) | V_s,1 .. V_s,K ((1+P)·W each)]`` -- ``e`` CLIP's projected CLS
embedding of the frame (what :meth:`~openvocab.models.backbone.ClipBackbone.encode_frames` gives), then the CLS +
``P`` patch tokens (width ``W``) at the ``K`` taps. ``F = D + K·(1+P)·W`` is :attr:`TemporalBranch.frame_dim`.

Parallel (§3.2, Fig. 4), for branch block ``t = 1..T`` aligned with CLIP blocks ``L−T+t``:

* ``V_s,t`` is the INPUT of CLIP block ``L−T+t`` (the output of block ``L−T+t−1``): block ``t``'s spatial layer is a
  copy of that CLIP block, so it reads the features its weights were trained on;
* ``V^T_t = V^T_{t−1} + Proj_spatial_t(V_s,t)`` with ``V^T_0 = 0``; ``Proj_1`` starts as the identity and
  ``Proj_t`` (``t > 1``) at zero, so the branch's tokens start as CLIP's own (it then learns to mix layers);
* at the first block learnable spatial (``1+P`` positions, zero-initialised: CLIP's tokens carry positions already)
  and temporal (``max_frames``, ``N(0, 0.02)``) position embeddings are added, and the temporal token TMP is the mean
  over frames of the CLS tokens of ``V_s,1``;
* divided space-time attention (TimeSformer): temporal attention over the frames of each token position (pre-LN,
  randomly initialised, its output projection ZERO-initialised so it starts as the identity residual), then the
  spatial block -- attention + MLP deep-copied from CLIP block ``L−T+t`` ("initialised from CLIP weights") -- on each
  frame's ``[TMP, CLS, patches]``: TMP is replicated per frame and averaged back over frames afterwards.

Serial (appendix G, Table 11: "serial blocks instead of parallel"; our reading): the same ``T`` blocks -- copies of
the last ``T`` CLIP blocks, the same temporal attention and position embeddings, the same regularisation -- are
stacked AFTER the frozen tower: one tap, the tower's final tokens (the output of block ``L``, before the
post-LayerNorm), projected once into block 1; no per-layer fusion afterwards. Only the wiring differs from parallel.

Video embedding. The paper mean-pools the final TMP (through CLIP's post-LayerNorm and visual projection, the
frozen tower's own, referenced and never copied) with the frames' CLS embeddings ``e_f``: ``mean(z, e_1..e_T) =
TAP(e) + (z − TAP(e)) / (T + 1)``. Here the share of ``z`` is a learnable linear read-out ``G`` (``D × D``) that
starts at zero::

    video = TAP(e) + G (z − TAP(e))

so at step 0 the branch's video embedding IS CLIP's (TAP of its frame embeddings) exactly, by construction; the
paper's fixed mean is ``G = I/(T+1)``. (A literal TMP through CLIP-copied blocks cannot equal TAP: the mean over
frames does not commute with the blocks.) At step 0 only ``G`` has a gradient; once it moves the whole branch does.
A matrix rather than a scalar gate: under AdamW each of its ``D²`` entries moves by about the learning rate per
step, so the branch's share grows ``D`` times faster (measured on the synthetic multi-label benchmark: a scalar gate
stayed below 0.07 after 120 steps at lr 1e-3 and the branch had learnt nothing).

Stochastic weight regularisation (§3.2): in training mode with ``λ = weight_reg > 0``, each forward draws
``α ~ U(0, λ)`` and evaluates the spatial layers with ``θ = α·θ_ft + (1 − α)·θ_frozen`` (``torch.func.functional_call``;
``θ_frozen`` is read from the frozen tower's own blocks, so no second copy is stored or trained). The task output uses
the mixed weights; the prediction-matching term ``MSE(video(θ_ft), video(θ_mix))`` is recorded and collected by
:meth:`~openvocab.models.recognizer.VideoRecognizer.auxiliary_loss` (the trainer adds ``optim.reg_weight`` × it,
K.2). Eval mode, or ``λ = 0``: ``θ_ft`` only, no randomness, nothing recorded.

Checkpoints hold only the branch's own parameters (the spatial copies are trainable, hence new state); the tower's
frozen tensors stay out (:meth:`VideoRecognizer.frozen_pretrained_keys`). Optimiser groups (K.2): the spatial copies
are CLIP-initialised (weight decay 0: :meth:`TemporalBranch.clip_initialised_parameters`, the recogniser's
``head_clip_init`` group), the rest is newly initialised.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from openvocab.errors import InputError
from openvocab.models.choices import BRANCH_TEMPORAL as BRANCH_KINDS


class TemporalAttention(nn.Module):
    """Pre-LN multi-head self-attention over time with a residual: ``(N, T, W) -> (N, T, W)``; the output projection
    starts at zero, so the module starts as the identity."""

    def __init__(self, *, width: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.attn(h, h, h, need_weights=False)[0]


class TemporalBranch(nn.Module):
    """The branch of the module docstring: ``(N, T, F) frame features -> (N, D)`` video embeddings.

    ``backbone``: the stream's :class:`~openvocab.models.backbone.ClipBackbone` (a ViT; referenced, not registered:
    its tensors are not this module's state). ``blocks``: ``T``. ``weight_reg``: ``λ``. ``serial``: Table 11's
    variant. ``max_frames``: temporal position embeddings.
    """

    def __init__(self, *, backbone, blocks: int = 4, weight_reg: float = 0.5, serial: bool = False, max_frames: int = 64) -> None:
        super().__init__()
        if backbone.is_resnet:
            raise InputError(f"temporal {'serial' if serial else 'parallel'} needs a ViT image tower (per-layer tokens); {backbone.source} is a CLIP-ResNet")
        cfg = backbone.clip.config.vision_config
        depth = int(cfg.num_hidden_layers)
        if not 1 <= int(blocks) <= depth:
            raise InputError(f"branch_blocks must be between 1 and {depth} (the tower's blocks), got {blocks}")
        if not 0.0 <= float(weight_reg) <= 1.0:
            raise InputError(f"weight_reg (λ of α ~ U(0, λ)) must be between 0 and 1, got {weight_reg}")
        self.kind = "serial" if serial else "parallel"
        self.blocks = int(blocks)
        self.weight_reg = float(weight_reg)
        self.max_frames = int(max_frames)
        self.width = int(cfg.hidden_size)
        self.image_size = int(cfg.image_size)
        self.tokens = 1 + (self.image_size // int(cfg.patch_size)) ** 2
        self.embed_dim = int(backbone.embed_dim)
        #: CLIP blocks (0-based) the spatial layers copy, and the hidden states (``hidden_states[k]`` = input of block k)
        self.layers = tuple(range(depth - self.blocks, depth))
        self.taps = (depth,) if serial else self.layers
        self._tower = (backbone,)  # a plain reference: not a submodule, so not in this module's state_dict
        vision = backbone.clip.vision_model
        self.spatial = nn.ModuleList(copy.deepcopy(vision.encoder.layers[i]).float().requires_grad_(True) for i in self.layers)
        heads = int(cfg.num_attention_heads)
        self.temporal = nn.ModuleList(TemporalAttention(width=self.width, heads=heads) for _ in range(self.blocks))
        self.proj = nn.ModuleList(nn.Linear(self.width, self.width) for _ in self.taps)
        with torch.no_grad():
            for k, proj in enumerate(self.proj):  # Proj_1 = identity, later ones zero: the branch starts on CLIP's tokens
                proj.weight.copy_(torch.eye(self.width) if k == 0 else torch.zeros(self.width, self.width))
                proj.bias.zero_()
        self.spatial_position = nn.Parameter(torch.zeros(self.tokens, self.width))
        self.temporal_position = nn.Parameter(torch.randn(self.max_frames, self.width) * 0.02)
        self.readout = nn.Linear(self.embed_dim, self.embed_dim, bias=False)
        nn.init.zeros_(self.readout.weight)
        self._pending: torch.Tensor | None = None
        self.last_alpha: float | None = None

    # ------------------------------------------------------------------ shapes
    @property
    def tower(self):
        """The frozen :class:`~openvocab.models.backbone.ClipBackbone` the branch reads."""
        return self._tower[0]

    @property
    def frame_dim(self) -> int:
        """``F``: values per frame of :meth:`frame_features` (the CLIP embedding, then the tapped tokens)."""
        return self.embed_dim + len(self.taps) * self.tokens * self.width

    def split(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, T, F) -> (e (N, T, D), taps (N, T, K, 1+P, W))``."""
        n, t = frames.shape[:2]
        return frames[..., : self.embed_dim], frames[..., self.embed_dim :].reshape(n, t, len(self.taps), self.tokens, self.width)

    # ------------------------------------------------------------------ the frozen tower's side
    @torch.no_grad()
    def frame_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S) -> (N, F)``: one pass of the frozen tower, its projected CLS embedding and tapped tokens."""
        tower = self.tower
        if pixels.shape[-2:] != (self.image_size, self.image_size):
            raise InputError(
                f"temporal {self.kind} reads the tower's {self.tokens - 1} patch tokens: frames must be {self.image_size}x{self.image_size}, "
                f"got {tuple(pixels.shape[-2:])}"
            )
        pixels = pixels.to(device=tower.device, dtype=tower.dtype)
        out = tower.clip.vision_model(pixel_values=pixels, output_hidden_states=True, return_dict=True)
        emb = tower.clip.visual_projection(out.pooler_output)
        taps = torch.stack([out.hidden_states[k] for k in self.taps], dim=1)
        return torch.cat([emb, taps.flatten(1)], dim=-1)

    def frozen_layer(self, block: int) -> nn.Module:
        """The frozen tower's CLIP block that spatial layer ``block`` was copied from (``θ_frozen``)."""
        return self.tower.clip.vision_model.encoder.layers[self.layers[block]]

    def clip_initialised_parameters(self) -> list[nn.Parameter]:
        """The spatial layers' parameters (copied from CLIP; weight decay 0 in K.2); the rest is newly initialised."""
        return list(self.spatial.parameters())

    # ------------------------------------------------------------------ weight regularisation
    def mixed_parameters(self, block: int, alpha: float) -> dict[str, torch.Tensor]:
        """``θ = α·θ_ft + (1 − α)·θ_frozen`` of spatial layer ``block`` by parameter name (differentiable in ``θ_ft``)."""
        frozen = dict(self.frozen_layer(block).named_parameters())
        return {name: alpha * p + (1.0 - alpha) * frozen[name].detach().to(p.dtype) for name, p in self.spatial[block].named_parameters()}

    def pop_auxiliary(self) -> torch.Tensor | None:
        """The prediction-matching term of the latest training forward (``None`` if none), cleared. A later forward
        replaces an uncollected term, so a loss that never collects it keeps no graphs alive."""
        term, self._pending = self._pending, None
        return term

    # ------------------------------------------------------------------ forward
    def video_embedding(self, frames: torch.Tensor, *, alpha: float | None = None) -> torch.Tensor:
        """``(N, T, F) -> (N, D)`` with the fine-tuned spatial weights (``alpha=None``) or the mixed ones."""
        emb, taps = self.split(frames)
        n, t = emb.shape[:2]
        tap = emb.mean(dim=1)
        x = torch.zeros(n, t, self.tokens, self.width, dtype=frames.dtype, device=frames.device)
        tmp = taps[:, :, 0, 0].mean(dim=1)  # TMP: the frames' CLS tokens at the first tap, averaged
        for b in range(self.blocks):
            if b < len(self.proj):
                x = x + self.proj[b](taps[:, :, b])  # V^T_t = V^T_{t-1} + Proj_spatial_t(V_s,t)
            if b == 0:
                x = x + self.spatial_position + self.temporal_position[:t, None, :]
            y = self.temporal[b](x.transpose(1, 2).reshape(n * self.tokens, t, self.width))  # per token position, over frames
            x = y.reshape(n, self.tokens, t, self.width).transpose(1, 2)
            seq = torch.cat([tmp[:, None, None, :].expand(n, t, 1, self.width), x], dim=2).reshape(n * t, 1 + self.tokens, self.width)
            layer = self.spatial[b]
            seq = layer(seq, None) if alpha is None else functional_call(layer, self.mixed_parameters(b, alpha), (seq, None))
            seq = seq.reshape(n, t, 1 + self.tokens, self.width)
            tmp, x = seq[:, :, 0].mean(dim=1), seq[:, :, 1:]
        tower = self.tower.clip
        z = tower.visual_projection(tower.vision_model.post_layernorm(tmp.to(self.tower.dtype))).to(tap.dtype)
        return tap + self.readout(z - tap)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, T, F) -> (N, D)``; in training mode with ``λ > 0`` the mixed-weight output (module docstring)."""
        if frames.dim() != 3 or frames.shape[-1] != self.frame_dim:
            raise InputError(
                f"temporal {self.kind} reads {self.frame_dim} values per frame (the CLIP embedding and the tower's tokens at "
                f"{len(self.taps)} layer(s)), got shape {tuple(frames.shape)}; its frame features come from the stream "
                "(a feature cache holds embeddings only)"
            )
        if frames.shape[1] > self.max_frames:
            raise InputError(f"temporal {self.kind} pools at most {self.max_frames} frames at once, got {frames.shape[1]}")
        if not (self.training and self.weight_reg > 0.0):
            return self.video_embedding(frames)
        alpha = float(torch.rand(())) * self.weight_reg  # α ~ U(0, λ), one draw per forward (per step)
        self.last_alpha = alpha
        finetuned = self.video_embedding(frames)
        mixed = self.video_embedding(frames, alpha=alpha)
        self._pending = F.mse_loss(finetuned.float(), mixed.float())
        return mixed


def build_branch(kind: str, *, backbone, blocks: int = 4, weight_reg: float = 0.5, max_frames: int = 64) -> TemporalBranch:
    """The branch named ``kind`` (``parallel`` / ``serial``) beside ``backbone``."""
    if kind not in BRANCH_KINDS:
        raise ValueError(f"unknown temporal branch '{kind}' ({', '.join(BRANCH_KINDS)})")
    return TemporalBranch(backbone=backbone, blocks=blocks, weight_reg=weight_reg, serial=kind == "serial", max_frames=max_frames)


def check_branch_stream(spec, backbone) -> None:
    """Refuse (one line) a stream spec the branch cannot serve: a trained tower, in-tower temporal hooks, audio."""
    where = f"model.temporal={spec.temporal}"
    if spec.train_backbone:
        raise InputError(f"{where} trains a branch beside a FROZEN vision tower (multi-label §3.2, Table 3b): set model.train_backbone: false")
    if spec.token_t1d_blocks or spec.t1d_stages:
        raise InputError(f"{where} is the stream's temporal model; drop model.token_t1d_blocks / model.t1d_stages")
    if spec.input == "audio":
        raise InputError(f"{where} models the frames of a video; an audio stream has one spectrogram per view (use tap)")


def _registry_builder(kind: str):
    def build(*, dim: int, layers: int = 6, max_frames: int = 64, backbone=None, blocks: int = 4, weight_reg: float = 0.5) -> TemporalBranch:
        if backbone is None:
            raise ValueError(f"temporal '{kind}' runs beside a CLIP vision tower: build it through a recogniser stream (models.recognizer.Stream)")
        if int(dim) != int(backbone.embed_dim):
            raise ValueError(f"temporal '{kind}': dim {dim} is not the tower's embedding width {backbone.embed_dim}")
        return build_branch(kind, backbone=backbone, blocks=blocks, weight_reg=weight_reg, max_frames=max_frames)

    build.__name__ = f"build_{kind}"
    return build


build_parallel = _registry_builder("parallel")
build_serial = _registry_builder("serial")
