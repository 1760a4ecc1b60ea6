"""DualCoOp (Sun et al., NeurIPS 2022), the multi-label prompt-learning baseline of open-vocabulary multi-label
(§4.2, appendix J.3, Table 1 "DualCoOp*"): a positive and a negative learned context per label, and "a soft
prediction score ... by taking a softmax across the two similarity values" -- here without DualCoOp's region
aggregation, as the paper's starred variant.

For a video ``v`` and label ``ℓ`` with positive and negative prompt embeddings ``t⁺(ℓ)`` and ``t⁻(ℓ)`` (CoOp's
context learner, :class:`~openvocab.models.coop.CoopLabelEncoder`, twice):

    p(ℓ, v) = softmax([cos(v, t⁺), cos(v, t⁻)] / τ)₀ = σ((cos(v, t⁺) − cos(v, t⁻)) / τ)

The one scoring path of openvocab is ``σ/softmax(scale · cos(video, row))``; DualCoOp is written in it exactly. A label
row is ``[t̂⁺, −t̂⁻] / √2`` and the video embedding ``[v̂, v̂] / √2`` (both unit vectors of twice CLIP's width), so
``cos(video, row) = (cos(v, t⁺) − cos(v, t⁻)) / 2`` and a head scale of ``2/τ`` gives the softmax-over-the-pair score
above. Rows are cached in the label bank like any label encoder's, and classify / evaluate / calibrate work unchanged.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from openvocab.errors import InputError
from openvocab.models.coop import ENCODE_BATCH_SIZE, CoopClassifier, CoopLabelEncoder, context_words
from openvocab.scoring import similarity_logits
from openvocab.text.label_encoders import encode_in_batches


class DualCoopLabelEncoder(nn.Module):
    """A positive and a negative CoOp context: ``forward(labels) -> (N, 2D)`` unit rows ``[t̂⁺, −t̂⁻] / √2``."""

    open_vocabulary = True

    def __init__(self, backbone, *, context_tokens: int = 16, init_words: str | None = None, seed: int = 0) -> None:
        super().__init__()
        self.positive = CoopLabelEncoder(backbone, context_tokens=context_tokens, init_words=init_words, seed=seed)
        self.negative = CoopLabelEncoder(backbone, context_tokens=context_tokens, init_words=init_words, seed=seed + 1)
        if init_words is not None:  # the same words would make both prompts equal: every score 0.5 until they move
            with torch.no_grad():
                g = torch.Generator().manual_seed(seed + 1)
                self.negative.context.add_(0.02 * torch.randn(self.negative.context.shape, generator=g).to(self.negative.context))

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256(b"dualcoop:")
        h.update(self.positive.fingerprint.encode())
        h.update(self.negative.fingerprint.encode())
        return h.hexdigest()[:24]

    @property
    def prompt_key(self) -> str:
        return f"dualcoop-{self.positive.context_tokens}"

    def forward(self, labels: Sequence[str]) -> torch.Tensor:
        return torch.cat([self.positive(labels), -self.negative(labels)], dim=-1) / math.sqrt(2.0)

    def encode(self, labels: Sequence[str], *, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        return encode_in_batches(self, labels, batch_size=ENCODE_BATCH_SIZE, progress=progress)

    def __repr__(self) -> str:
        return f"DualCoopLabelEncoder(context_tokens={self.positive.context_tokens})"


class DualCoopClassifier(CoopClassifier):
    """Scores ``σ/softmax(scale · cos([v̂, v̂]/√2, [t̂⁺, −t̂⁻]/√2))`` with ``scale = 2/τ`` (module docstring); the rest
    (training classes, :meth:`class_embeddings`) is CoOp's head."""

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        v = F.normalize(video.float(), dim=-1)
        return torch.cat([v, v], dim=-1) / math.sqrt(2.0)

    def forward(self, video: torch.Tensor, label_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        if label_embeddings is None:
            if not self.class_names:
                raise InputError("this DualCoOp head has no training classes; pass label embeddings")
            label_embeddings = self.label_encoder(self.class_names)
        return similarity_logits(self.embed(video), label_embeddings, logit_scale=self.logit_scale)


def build_dualcoop_head(*, spec, dim: int, backbone, class_names: Sequence[str], seed: int = 0, **_: object) -> DualCoopClassifier:
    """Open-vocabulary multi-label Table 1 "DualCoOp*": ``spec.context_tokens`` positive and as many negative learned
    vectors before each label, through the primary stream's frozen CLIP text tower; the head's scale is twice the
    recipe's ``1/τ`` (module docstring)."""
    from openvocab.models.heads import head_logit_scale

    if dim != backbone.embed_dim:
        raise InputError(f"the DualCoOp head scores in CLIP's {backbone.embed_dim}-d text space; the video embedding has {dim}")
    encoder = DualCoopLabelEncoder(backbone, context_tokens=spec.context_tokens, init_words=context_words(spec.template), seed=seed)
    return DualCoopClassifier(label_encoder=encoder, class_names=class_names, logit_scale=2.0 * head_logit_scale(spec, backbone))
