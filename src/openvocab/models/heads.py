"""Classifier heads of Text4Vis §2 and their initialisations (Table 6).

* :class:`FrozenClassifier` -- Eq. 3: logits ``= s · cos(v, W̃_c)`` with ``W̃`` frozen (a buffer, never trained),
  the rows its label encoder (:mod:`openvocab.text.label_encoders`) gave for the training classes. Any other label
  list is scored the same way against ``label_encoder.encode(labels)`` (open vocabulary).
  When ``W̃`` lives in another space than the video embedding (a language-only encoder such as MiniLM, 384-d), a
  learned linear visual projection maps ``v`` to that width first ("it is easy to fit them with trainable visual
  encoders", Table 6 discussion).
* :class:`LinearClassifier` -- Eq. 1, the vision-only baseline: a learnable, randomly initialised ``W`` (Table 7).

Initialisations of ``W̃`` (rows = classes):

* :func:`build_text_head` -- Eq. 6, CLIP's text encoder on the class names (prompt-ensembled or single template);
* :func:`build_sentence_head` -- Eq. 6 with another text encoder (any sentence-embedding model; MiniLM offline);
* :func:`random_normal_weights` -- Eq. 4, ``W̃ ~ N(0, I_d)``;
* :func:`random_orthogonal_weights` -- Eq. 5, first ``c`` rows of the Q factor of a ``d × d`` Gaussian matrix;
* :func:`lda_weights` -- Appendix C.4 / Algorithm 2, the coefficients of scikit-learn's LDA fitted on
  pre-extracted video embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from openvocab.errors import InputError
from openvocab.scoring import similarity_logits


class FrozenClassifier(nn.Module):
    """``logits = scale · cos(P v, W̃_c)``; ``W̃`` is a buffer (frozen), ``P`` the identity or a learned projection.

    ``label_encoder`` (a :class:`~openvocab.text.label_encoders.LabelEncoder`) embeds label lists in the space of
    ``W̃``; an encoder that is an ``nn.Module`` (a trainable one) is registered as a submodule, so its parameters
    train and are checkpointed like any other.
    """

    def __init__(self, weight: torch.Tensor, *, logit_scale: float, projection_from: int | None = None, label_encoder=None) -> None:
        super().__init__()
        weight = torch.as_tensor(weight, dtype=torch.float32)
        self.register_buffer("weight", torch.nn.functional.normalize(weight, dim=-1))
        self.logit_scale = float(logit_scale)
        # W̃ from another embedding space (a language-only encoder): learn a visual projection into it
        self.projection = nn.Identity() if projection_from is None else nn.Linear(int(projection_from), weight.shape[1], bias=False)
        self.label_encoder = label_encoder

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def scores_by_similarity(self) -> bool:
        return True

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """The video embedding in the label space (after the projection, if any)."""
        return self.projection(video)

    def class_embeddings(self, indices: torch.Tensor) -> torch.Tensor:
        """Unit rows ``(K, D)`` of training classes ``indices`` (for a trainer scoring a subset of classes): ``W̃``'s;
        a head with a learnable label encoder returns them with gradients."""
        return self.weight[torch.as_tensor(indices, device=self.weight.device)]

    def refresh(self) -> None:
        """Recompute ``W̃`` from a learnable label encoder (after optimiser steps); frozen ``W̃`` here: nothing to do."""

    def forward(self, video: torch.Tensor, label_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """Logits against the training classes' ``W̃`` or, when given, any ``label_embeddings`` ``(L, D)``."""
        rows = self.weight if label_embeddings is None else label_embeddings
        return similarity_logits(self.embed(video), rows, logit_scale=self.logit_scale)


class LinearClassifier(nn.Module):
    """The vision-only baseline (Eq. 1): a learnable ``nn.Linear`` from random initialisation. Its classes have no
    embeddings, so it scores only its own training classes (``label_encoder`` names them)."""

    scores_by_similarity = False

    def __init__(self, *, input_dim: int, num_classes: int, label_encoder=None) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim, num_classes)
        self.label_encoder = label_encoder
        self.logit_scale = 1.0

    @property
    def num_classes(self) -> int:
        return int(self.linear.out_features)

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        return video

    def forward(self, video: torch.Tensor, label_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        if label_embeddings is not None:
            raise InputError("a linear classifier head scores only its own training classes")
        return self.linear(video.float())


def random_normal_weights(num_classes: int, dim: int, *, seed: int = 0) -> torch.Tensor:
    """Eq. 4: each row ``~ N(0, I_d)``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num_classes, dim, generator=g)


def random_orthogonal_weights(num_classes: int, dim: int, *, seed: int = 0) -> torch.Tensor:
    """Eq. 5: QR-decompose a ``d × d`` Gaussian matrix and keep ``c`` orthonormal rows (needs ``c <= d``)."""
    if num_classes > dim:
        raise InputError(f"an orthogonal classifier needs classes <= embedding dim, got {num_classes} > {dim}")
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
    return q.T[:num_classes].contiguous()


def lda_weights(features: torch.Tensor | np.ndarray, labels: Sequence[int] | np.ndarray, *, num_classes: int | None = None) -> torch.Tensor:
    """Appendix C.4: scikit-learn ``LinearDiscriminantAnalysis().fit(feats, labels).coef_`` as ``W̃`` (C, D).

    For two classes scikit-learn returns one discriminant row ``w``; the two-class classifier is then
    ``[-w, w]``. Every class in ``0..num_classes-1`` must have samples.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    y = np.asarray(labels)
    c = int(num_classes if num_classes is not None else y.max() + 1)
    missing = sorted(set(range(c)) - set(y.tolist()))
    if missing:
        raise InputError(f"LDA needs samples of every class; none for class indices {missing[:10]}")
    coef = LinearDiscriminantAnalysis().fit(x, y).coef_
    if coef.shape[0] == 1 and c == 2:
        coef = np.concatenate([-coef, coef])
    return torch.as_tensor(coef, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------------------------
# builders, registered in openvocab.models.choices.HEADS
# ---------------------------------------------------------------------------------------------------------------------
def head_logit_scale(spec, backbone) -> float:
    """The frozen classifier's temperature: the recipe's ``logit_scale`` or the CLIP model's (100 when released)."""
    return backbone.logit_scale if spec.logit_scale is None else float(spec.logit_scale)


def build_text_head(*, spec, dim: int, backbone, class_names: Sequence[str], from_checkpoint: bool = False, **_: object) -> FrozenClassifier:
    """Eq. 6: CLIP's text tower + the spec's prompt set (default single template); no classes = zero-shot CLIP."""
    from openvocab.text.label_encoders import ClipTextEncoder
    from openvocab.text.prompts import resolve_prompts

    encoder = ClipTextEncoder(backbone, resolve_prompts(spec.prompts, template=spec.template, default="single"))
    if from_checkpoint or not class_names:
        weight = torch.zeros(len(class_names), backbone.embed_dim)
    else:
        weight = encoder.encode(list(class_names))
    return FrozenClassifier(weight, logit_scale=head_logit_scale(spec, backbone), label_encoder=encoder)


def build_sentence_head(*, spec, dim: int, backbone, class_names: Sequence[str], from_checkpoint: bool = False, **_: object) -> FrozenClassifier:
    """Eq. 6 with another text encoder, plus a learned visual projection ``dim -> D_text``."""
    from openvocab.text.label_encoders import SentenceLabelEncoder

    encoder = SentenceLabelEncoder(spec.sentence_encoder)
    weight = torch.zeros(len(class_names), encoder.encoder.dim) if from_checkpoint else encoder.encode(list(class_names))
    return FrozenClassifier(weight, logit_scale=head_logit_scale(spec, backbone), projection_from=dim, label_encoder=encoder)


def _closed_set(kind: str, weight: torch.Tensor, spec, backbone, class_names: Sequence[str]) -> FrozenClassifier:
    from openvocab.text.label_encoders import ClosedSetEncoder

    _need_classes(kind, class_names)
    head = FrozenClassifier(weight, logit_scale=head_logit_scale(spec, backbone))
    head.label_encoder = ClosedSetEncoder(class_names, lambda: head.weight, kind=kind)
    return head


def _need_classes(kind: str, class_names: Sequence[str]) -> None:
    if not class_names:
        raise InputError(f"a closed-set '{kind}' classifier needs its training classes")


def build_normal_head(*, spec, dim: int, backbone, class_names: Sequence[str], seed: int = 0, **_: object) -> FrozenClassifier:
    return _closed_set("normal", random_normal_weights(len(class_names), dim, seed=seed), spec, backbone, class_names)


def build_orthogonal_head(*, spec, dim: int, backbone, class_names: Sequence[str], seed: int = 0, **_: object) -> FrozenClassifier:
    return _closed_set("orthogonal", random_orthogonal_weights(len(class_names), dim, seed=seed), spec, backbone, class_names)


def build_lda_head(*, spec, dim: int, backbone, class_names: Sequence[str], lda=None, from_checkpoint: bool = False, **_: object) -> FrozenClassifier:
    if from_checkpoint:
        weight = torch.zeros(len(class_names), dim)
    elif lda is None:
        raise ValueError("the LDA classifier needs pre-extracted features (lda=(features, labels))")
    else:
        weight = lda_weights(lda[0], lda[1], num_classes=len(class_names))
    return _closed_set("lda", weight, spec, backbone, class_names)


def build_linear_head(*, spec, dim: int, backbone, class_names: Sequence[str], **_: object) -> LinearClassifier:
    from openvocab.text.label_encoders import ClosedSetEncoder

    _need_classes("linear", class_names)
    head = LinearClassifier(input_dim=dim, num_classes=len(class_names))
    head.label_encoder = ClosedSetEncoder(class_names, lambda: head.linear.weight, kind="linear")
    return head
