"""The video recogniser: per-modality streams, a fusion and a classifier head (Text4Vis Fig. 2c, MOV Fig. 2).

``inputs {modality: (B, T, C, H, W)} -> per stream: CLIP tower -> frame features (B, T, D_s) -> temporal module
-> (B, D_s) -> fusion -> video embedding (B, D) -> head (label encoder rows W̃) -> logits``

A stream is one CLIP tower with its temporal modelling (TAP / T-Trans after the tower, TokenT1D / T1D inside it);
MOV adds flow and audio streams and a fusion (``mov``: cross-attention; ``score``) that takes the UNPOOLED frame
features of the RGB and the flow/audio stream and returns three embeddings (:class:`~openvocab.models.mov.MovOutputs`:
fused video ``v_m``, fused flow/audio ``x_m``, frozen video ``v``); ``forward`` then gives the base-class logits
(Eq. 10; Table 5's score fusion: the log of the averaged probabilities), ``forward(embed=True)`` the three
embeddings for the loss of Eq. 9, and :meth:`VideoRecognizer.embed_frames` packs them as ``(..., 3, D)`` for the
novel-class rule of Eq. 11-12 (:func:`openvocab.scoring.mov_probabilities`). Zero-shot
CLIP is the recogniser with a frozen RGB stream, TAP, identity fusion and a CLIP-text head without training classes.
The text towers are frozen unless the contrastive baseline trains them online. The same object scores cached
frame features (:meth:`VideoRecognizer.logits_from_frame_features`), so heads train from the feature cache.
Build recognisers with :func:`openvocab.models.factory.create_recognizer` / ``load_recognizer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from openvocab.errors import InputError
from openvocab.models.backbone import ClipBackbone
from openvocab.models.spec import RecognizerSpec, StreamSpec, is_legacy, legacy_state_key
from openvocab.models.temporal import ResNetT1D, TokenT1D, build_temporal
from openvocab.models.temporal_branch import BRANCH_KINDS, TemporalBranch, build_branch, check_branch_stream

Inputs = Mapping[str, torch.Tensor] | torch.Tensor


class Stream(nn.Module):
    """One modality: a CLIP tower, its in-tower temporal hooks (TokenT1D / T1D) and its temporal module."""

    def __init__(self, *, backbone: ClipBackbone, spec: StreamSpec) -> None:
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        if spec.temporal in BRANCH_KINDS:  # open-vocabulary multi-label §3.2: a branch beside the frozen tower (models.temporal_branch)
            check_branch_stream(spec, backbone)
            self.temporal = build_branch(
                spec.temporal, backbone=backbone, blocks=spec.branch_blocks, weight_reg=spec.weight_reg, max_frames=max(64, spec.frames)
            )
        else:
            self.temporal = build_temporal(spec.temporal, dim=backbone.embed_dim, layers=spec.temporal_layers, max_frames=max(64, spec.frames))
        self.token_t1d = None
        if spec.token_t1d_blocks:
            if backbone.is_resnet:
                raise ValueError("TokenT1D needs a ViT backbone; for CLIP-ResNet use T1D (model.t1d_stages)")
            width = int(backbone.clip.config.vision_config.hidden_size)
            self.token_t1d = TokenT1D(width=width, blocks=spec.token_t1d_blocks).attach(backbone)
        self.t1d = ResNetT1D(stages=spec.t1d_stages, init=spec.t1d_init).attach(backbone) if spec.t1d_stages else None
        # set both ways: a tower copied from another stream's (MOV §3.1) carries that stream's flags
        backbone.clip.vision_model.requires_grad_(spec.train_backbone)
        backbone.clip.visual_projection.requires_grad_(spec.train_backbone)
        if spec.train_last_blocks and not spec.train_backbone:
            raise InputError("train_last_blocks needs train_backbone: true (the stream's tower is frozen)")
        if spec.train_backbone and spec.train_last_blocks:
            _train_last_blocks(backbone, spec.train_last_blocks)

    @property
    def dim(self) -> int:
        return self.backbone.embed_dim

    @property
    def frame_dim(self) -> int:
        """Width ``F`` of :meth:`frame_features`: ``dim`` (CLIP frame embeddings), except for a temporal branch, whose
        frame features also carry the frozen tower's tokens (:attr:`TemporalBranch.frame_dim`)."""
        return self.temporal.frame_dim if isinstance(self.temporal, TemporalBranch) else self.dim

    @property
    def max_frames(self) -> int | None:
        return getattr(self.temporal, "max_frames", None)

    def frame_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W) -> (B, T, F)`` CLIP frame embeddings (TokenT1D / T1D mix the T frames of a video; a temporal
        branch's frame features are :meth:`TemporalBranch.frame_features`, ``F =`` :attr:`frame_dim`)."""
        b, t = pixels.shape[:2]
        if isinstance(self.temporal, TemporalBranch):
            return self.temporal.frame_features(pixels.reshape(b * t, *pixels.shape[2:])).reshape(b, t, -1)
        for inserted in (self.token_t1d, self.t1d):
            if inserted is not None:
                inserted.frames = t
        feats = self.backbone.encode_frames(pixels.reshape(b * t, *pixels.shape[2:]))
        return feats.reshape(b, t, -1)

    def pool(self, frames: torch.Tensor) -> torch.Tensor:
        """``(..., T, D) -> (..., D)``: the temporal module over any leading dimensions."""
        t, d = frames.shape[-2:]
        limit = self.max_frames
        if limit is not None and t > limit:
            raise InputError(f"the temporal transformer pools at most {limit} frames at once, got {t} (use fewer --frames, or more --segments)")
        return self.temporal(frames.reshape(-1, t, d).float()).reshape(*frames.shape[:-2], -1)


def _train_last_blocks(backbone: ClipBackbone, k: int) -> None:
    """MOV Table 6: only the last ``k`` transformer blocks of the vision tower train (with its final LayerNorm and the
    projection); the patch / position embeddings, the pre-LayerNorm and the earlier blocks stay frozen."""
    if backbone.is_resnet:
        raise InputError("train_last_blocks needs a ViT backbone (a CLIP-ResNet has stages, not blocks)")
    layers = backbone.clip.vision_model.encoder.layers
    if not 0 < k <= len(layers):
        raise InputError(f"train_last_blocks must be between 1 and {len(layers)} (the tower's blocks), got {k}")
    for p in backbone.clip.vision_model.parameters():
        p.requires_grad_(False)
    for layer in layers[len(layers) - k :]:
        layer.requires_grad_(True)
    backbone.clip.vision_model.post_layernorm.requires_grad_(True)
    backbone.clip.visual_projection.requires_grad_(True)


def _norm_label(label: str) -> str:
    return " ".join(str(label).lower().split())


class VideoRecognizer(nn.Module):
    """Streams + fusion + head; see the module docstring. ``spec`` is a :class:`RecognizerSpec`."""

    def __init__(self, *, streams: Mapping[str, Stream], fusion: nn.Module, head: nn.Module, spec: RecognizerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.streams = nn.ModuleDict(dict(streams))
        self.fusion = fusion
        self.head = head
        for stream in self.streams.values():  # the text side learns only in the online contrastive mode
            clip = stream.backbone.clip
            for p in clip.text_model.parameters():
                p.requires_grad_(spec.train_text and stream is self.primary_stream)
            clip.text_projection.requires_grad_(spec.train_text and stream is self.primary_stream)
            clip.logit_scale.requires_grad_(False)

    # ------------------------------------------------------------------ the primary stream (single-stream access)
    @property
    def primary_stream(self) -> Stream:
        return self.streams[self.spec.primary]

    @property
    def backbone(self) -> ClipBackbone:
        """The primary stream's CLIP model (its text tower is the CLIP-text label encoder's)."""
        return self.primary_stream.backbone

    @property
    def temporal(self) -> nn.Module:
        return self.primary_stream.temporal

    @property
    def token_t1d(self):
        return self.primary_stream.token_t1d

    @property
    def t1d(self):
        return self.primary_stream.t1d

    @property
    def label_encoder(self):
        return self.head.label_encoder

    @property
    def logit_scale(self) -> float:
        return float(self.head.logit_scale)

    @property
    def num_classes(self) -> int:
        return int(self.head.num_classes)

    @property
    def class_names(self) -> list[str]:
        return list(getattr(self.label_encoder, "class_names", []) or getattr(self, "_class_names", []))

    def train(self, mode: bool = True) -> VideoRecognizer:
        """As ``nn.Module.train``, except that frozen towers stay in eval mode: a CLIP-ResNet's BatchNorm must not
        update its running statistics while its weights are frozen."""
        super().train(mode)
        if mode:
            for stream in self.streams.values():
                if not stream.spec.train_backbone:
                    stream.backbone.eval()
        return self

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each vision block in backward instead of storing activations (memory for compute)."""
        for stream in self.streams.values():
            clip = stream.backbone.clip
            if hasattr(clip, "activation_checkpointing_enable"):  # transformers >= 5.x
                clip.activation_checkpointing_enable()
            else:
                clip.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # ------------------------------------------------------------------ forward pieces
    def _inputs(self, inputs: Inputs) -> Mapping[str, torch.Tensor]:
        if isinstance(inputs, torch.Tensor):
            return {"rgb": inputs}
        return inputs

    def frame_features(self, inputs: Inputs) -> dict[str, torch.Tensor]:
        """``{modality: (B, T, C, H, W)}`` (or one RGB tensor) -> ``{stream: (B, T, D_s)}``."""
        inputs = self._inputs(inputs)
        out = {}
        for name, stream in self.streams.items():
            if stream.spec.input not in inputs:
                raise InputError(f"stream '{name}' needs the '{stream.spec.input}' input; got {sorted(inputs)}")
            out[name] = stream.frame_features(inputs[stream.spec.input])
        return out

    @property
    def fused_outputs(self) -> bool:
        """Whether the fusion is a MOV fusion (``mov`` / ``score``) giving :class:`MovOutputs` (module docstring)."""
        return bool(getattr(self.fusion, "sequences", False))

    def _fuse(self, frames: Mapping[str, torch.Tensor]):
        """Frame features ``{stream: (..., T, D_s)}`` -> the fusion's output: ``(..., D)``, or MovOutputs of ``(..., D)``."""
        if not self.fused_outputs:
            return self.fusion({name: self.streams[name].pool(x) for name, x in frames.items()})
        limit = self.fusion.max_frames
        longest = max(x.shape[-2] for x in frames.values())
        if longest > limit:
            raise InputError(f"MOV's temporal transformers take at most {limit} frames at once, got {longest} (use fewer --frames, or more --views)")
        lead = next(iter(frames.values())).shape[:-2]
        flat = {name: x.reshape(-1, *x.shape[-2:]).float() for name, x in frames.items()}
        return self.fusion(flat).map(lambda e: e.reshape(*lead, e.shape[-1]))

    def _base_logits(self, fused) -> torch.Tensor:
        """Logits whose softmax is the base-class probability: the head's; for MOV, Eq. 10 on ``v_m`` (``score``
        fusion: the log of the mean of both streams' probabilities, Table 5)."""
        if not self.fused_outputs:
            return self.head(fused)
        if self.fusion.base_rule == "mean":
            p = 0.5 * (self.head(fused.video).float().softmax(-1) + self.head(fused.other).float().softmax(-1))
            return p.clamp_min(1e-12).log()
        return self.head(fused.video)

    def mov_rule(self, labels: Sequence[str]) -> str:
        """MOV's probability rule for a label list (:func:`openvocab.scoring.mov_probabilities`): every label a training
        class (case and spacing aside) -> the base rule, Eq. 10 (``"base-mean"`` for Table 5's score fusion); any
        other label -> ``"novel"``, Eq. 11-12 over the whole list. ``classify`` and ``evaluate`` both ask here."""
        if not self.fused_outputs:
            raise ValueError("mov_rule needs a MOV fusion (mov or score)")
        trained = {_norm_label(c) for c in self.class_names}
        if trained and all(_norm_label(label) in trained for label in labels):
            return "base-mean" if self.fusion.base_rule == "mean" else "base"
        return "novel"

    def embed_frames(self, frames: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Frame features ``{stream: (..., T, D_s)}`` (a tensor for one stream) -> video embeddings ``(..., D')`` in
        the label space: temporal modules, fusion, then the head's projection (if any). A MOV fusion's three
        embeddings come packed as ``(..., 3, D')`` (:meth:`MovOutputs.stack`)."""
        if isinstance(frames, torch.Tensor):
            frames = {self.spec.primary: frames}
        fused = self._fuse(frames)
        if self.fused_outputs:
            return fused.map(self.head.embed).stack()
        return self.head.embed(fused)

    def logits_from_frame_features(self, frames: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Temporal modules + fusion + head on precomputed frame features ``(B, T, D) -> (B, C)``."""
        if isinstance(frames, torch.Tensor):
            frames = {self.spec.primary: frames}
        return self._base_logits(self._fuse(frames))

    def encode_video(self, inputs: Inputs):
        """The fused video embedding before the head ``(B, D)`` (MovOutputs for a MOV fusion)."""
        return self._fuse(self.frame_features(inputs))

    def forward(self, inputs: Inputs, *, embed: bool = False, text: dict | None = None):
        """Logits ``(B, C)``; with ``embed=True`` the video embedding in the classifier's space (after the head's
        projection, if any; MovOutputs for a MOV fusion), and with ``text`` (tokenizer output) also the online text
        embeddings: ``(video, text)`` -- contrastive losses go through the same (DDP-wrapped) forward as CE."""
        video = self.encode_video(inputs)
        if not embed:
            return self._base_logits(video)
        if self.fused_outputs:
            if text is not None:
                raise ValueError("a MOV fusion trains with the MOV loss (Eq. 9), not the online-text contrastive loss")
            return video.map(self.head.embed)
        video = self.head.embed(video)
        if text is None:
            return video
        return video, self.backbone.encode_text(text["input_ids"], text.get("attention_mask"))

    # ------------------------------------------------------------------ checkpoints
    def frozen_pretrained_keys(self) -> set[str]:
        """State-dict keys of the pretrained CLIP parameters this recogniser never trains, in every stream (text
        towers and logit scales, unless the text side is online; vision towers when ``train_backbone`` is off).
        Building the same spec loads them again, so checkpoints store only their digests (buffers are stored)."""
        return {
            f"streams.{name}.backbone.clip.{n}"
            for name, stream in self.streams.items()
            for n, p in stream.backbone.clip.named_parameters()
            if not p.requires_grad
        }

    def upgrade_checkpoint(self, arch: Mapping) -> tuple[dict, object]:
        """For :func:`openvocab.models.checkpoint.load_checkpoint`: a saved ``arch`` in today's form, and a function
        mapping saved state-dict keys to today's (single-stream run directories name ``backbone.*``)."""
        if is_legacy(arch):
            return RecognizerSpec.from_dict(arch).arch(), lambda key: legacy_state_key(key, primary=self.spec.primary)
        return dict(arch), None

    def auxiliary_loss(self) -> torch.Tensor:
        """The sum of the auxiliary training terms the streams' temporal modules recorded in training mode, collected
        and cleared (0 when none): a temporal branch's prediction-matching term of its stochastic weight
        regularisation (open-vocabulary multi-label §3.2; each branch keeps the term of its latest forward). The trainer
        adds ``optim.reg_weight`` (K.2) times this to the task loss after each forward."""
        terms = [t for s in self.streams.values() if isinstance(s.temporal, TemporalBranch) and (t := s.temporal.pop_auxiliary()) is not None]
        if not terms:
            return torch.zeros((), device=next(self.parameters()).device)
        return torch.stack(terms).sum()

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Trainable parameters by optimiser group: ``backbone`` (pretrained towers), ``label_encoder`` (a trainable
        label encoder inside the head), ``head_clip_init`` (new modules initialised from CLIP weights: a temporal
        branch's spatial layers, weight decay 0 in open-vocabulary multi-label K.2) and ``head`` (temporal modules,
        T1D convolutions, fusion, head)."""
        groups: dict[str, list] = {"backbone": [], "head": [], "label_encoder": [], "head_clip_init": []}
        clip_init = {id(p) for s in self.streams.values() if isinstance(s.temporal, TemporalBranch) for p in s.temporal.clip_initialised_parameters()}
        for n, p in self.trainable_named_parameters():
            if id(p) in clip_init:
                groups["head_clip_init"].append((n, p))
            elif ".backbone." in f".{n}" and n.startswith("streams."):
                groups["backbone"].append((n, p))
            elif n.startswith("head.label_encoder."):
                groups["label_encoder"].append((n, p))
            else:
                groups["head"].append((n, p))
        return groups
