"""The trainable video recogniser: CLIP vision tower + temporal module + classifier head (Text4Vis Fig. 2c).

``pixels (B, T, 3, H, W) -> frame features (B, T, D) -> temporal module -> video embedding (B, D) -> head -> logits``

Only the vision side learns; the text tower is frozen (its knowledge lives in the frozen classifier ``W̃``). The
same object scores cached frame features (:meth:`VideoRecognizer.logits_from_frame_features`), so heads train from
the feature cache without touching video or backbone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
from torch import nn

from openvocab.models.backbone import ClipBackbone
from openvocab.models.heads import FrozenClassifier, LinearClassifier
from openvocab.models.temporal import ResNetT1D, TokenT1D, build_temporal


@dataclass(frozen=True)
class RecognizerSpec:
    """Everything that fixes the recogniser's architecture; saved with checkpoints and compared on resume."""

    model: str
    num_classes: int
    classifier: str = "text"  # text | sentence | normal | orthogonal | lda | linear
    classifier_dim: int = 0  # width of W̃ (the text encoder's); 0 = the backbone's embedding dim
    temporal: str = "tap"  # tap | ttrans
    temporal_layers: int = 6
    token_t1d_blocks: tuple[int, ...] = field(default_factory=tuple)
    t1d_stages: tuple[int, ...] = field(default_factory=tuple)  # CLIP-ResNet stages with T1D (4, 5 = res4-5)
    t1d_init: str = "shift"
    frames: int = 8
    train_backbone: bool = True
    train_text: bool = False  # the contrastive baseline with the text encoder online (ActionCLIP; Table 9)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["token_t1d_blocks"] = list(self.token_t1d_blocks)
        d["t1d_stages"] = list(self.t1d_stages)
        return d


class VideoRecognizer(nn.Module):
    """Backbone + temporal module + head; see the module docstring."""

    def __init__(self, *, backbone: ClipBackbone, head: nn.Module, spec: RecognizerSpec) -> None:
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.temporal = build_temporal(spec.temporal, dim=backbone.embed_dim, layers=spec.temporal_layers, max_frames=max(64, spec.frames))
        self.token_t1d = None
        if spec.token_t1d_blocks:
            if backbone.is_resnet:
                raise ValueError("TokenT1D needs a ViT backbone; for CLIP-ResNet use T1D (model.t1d_stages)")
            width = int(backbone.clip.config.vision_config.hidden_size)
            self.token_t1d = TokenT1D(width=width, blocks=spec.token_t1d_blocks).attach(backbone)
        self.t1d = ResNetT1D(stages=spec.t1d_stages, init=spec.t1d_init).attach(backbone) if spec.t1d_stages else None
        self.head = head
        for p in backbone.clip.text_model.parameters():  # the text side learns only in the online contrastive mode
            p.requires_grad_(spec.train_text)
        backbone.clip.text_projection.requires_grad_(spec.train_text)
        backbone.clip.logit_scale.requires_grad_(False)
        if not spec.train_backbone:
            for p in backbone.clip.vision_model.parameters():
                p.requires_grad_(False)
            backbone.clip.visual_projection.requires_grad_(False)

    def train(self, mode: bool = True) -> "VideoRecognizer":
        """As ``nn.Module.train``, except that a frozen backbone stays in eval mode: a CLIP-ResNet's BatchNorm must
        not update its running statistics while its weights are frozen."""
        super().train(mode)
        if mode and not self.spec.train_backbone:
            self.backbone.eval()
        return self

    @property
    def num_classes(self) -> int:
        return int(self.head.num_classes)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each vision block in backward instead of storing activations (memory for compute)."""
        clip = self.backbone.clip
        if hasattr(clip, "activation_checkpointing_enable"):  # transformers >= 5.x
            clip.activation_checkpointing_enable()
        else:
            clip.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def frame_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W) -> (B, T, D)`` CLIP frame embeddings (TokenT1D mixes class tokens over T inside)."""
        b, t = pixels.shape[:2]
        for inserted in (self.token_t1d, self.t1d):
            if inserted is not None:
                inserted.frames = t
        feats = self.backbone.encode_frames(pixels.reshape(b * t, *pixels.shape[2:]))
        return feats.reshape(b, t, -1)

    def logits_from_frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Temporal module + head on precomputed frame features ``(B, T, D) -> (B, C)``."""
        return self.head(self.temporal(frames.float()))

    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.frame_features(pixels).float())

    def forward(self, pixels: torch.Tensor, *, embed: bool = False, text: dict | None = None):
        """Logits ``(B, C)``; with ``embed=True`` the video embedding in the classifier's space (after the head's
        projection, if any), and with ``text`` (tokenizer output) also the online text embeddings:
        ``(video, text)`` -- contrastive losses go through the same (DDP-wrapped) forward as CE."""
        video = self.encode_video(pixels)
        if not embed:
            return self.head(video)
        video = self.head.projection(video) if hasattr(self.head, "projection") else video
        if text is None:
            return video
        return video, self.backbone.encode_text(text["input_ids"], text.get("attention_mask"))

    def frozen_pretrained_keys(self) -> set[str]:
        """State-dict keys of the CLIP parameters this recogniser never trains (the text tower and logit scale,
        unless the text side is online; the vision tower too when ``train_backbone`` is off). Building the same
        spec loads them again from ``spec.model``, so checkpoints need not store them (buffers are always stored)."""
        return {f"backbone.clip.{n}" for n, p in self.backbone.clip.named_parameters() if not p.requires_grad}

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]


def build_head(spec: RecognizerSpec, *, backbone: ClipBackbone, class_names: Sequence[str], prompts=None, lda_features=None, lda_labels=None, sentence_encoder: str = "minilm", seed: int = 0, logit_scale: float | None = None) -> nn.Module:
    """The classifier head named by ``spec.classifier`` (Text4Vis Table 6 / Table 7 rows). The frozen heads use
    ``logit_scale`` (default: the CLIP model's learned temperature, 100 for released checkpoints)."""
    from openvocab.models import heads
    from openvocab.text.prompts import prompt_set

    dim, c = backbone.embed_dim, spec.num_classes
    scale = backbone.logit_scale if logit_scale is None else float(logit_scale)
    if len(class_names) != c:
        raise ValueError(f"{len(class_names)} class names for {c} classes")
    kind = spec.classifier
    if kind == "linear":
        return LinearClassifier(input_dim=dim, num_classes=c)
    if kind == "text":
        return FrozenClassifier(heads.text_weights(backbone, class_names, prompts or prompt_set("single")), logit_scale=scale)
    if kind == "sentence":
        return FrozenClassifier(heads.sentence_weights(sentence_encoder, class_names), logit_scale=scale, projection_from=dim)
    if kind == "normal":
        return FrozenClassifier(heads.random_normal_weights(c, dim, seed=seed), logit_scale=scale)
    if kind == "orthogonal":
        return FrozenClassifier(heads.random_orthogonal_weights(c, dim, seed=seed), logit_scale=scale)
    if kind == "lda":
        if lda_features is None:
            raise ValueError("the LDA classifier needs pre-extracted features (lda_features, lda_labels)")
        return FrozenClassifier(heads.lda_weights(lda_features, lda_labels, num_classes=c), logit_scale=scale)
    raise ValueError(f"unknown classifier '{kind}' (text, sentence, normal, orthogonal, lda, linear)")
