"""Classifier heads of Text4Vis §2 and their initialisations (Table 6).

* :class:`FrozenClassifier` -- Eq. 3: logits ``= s · cos(v, W̃_c)`` with ``W̃`` frozen (a buffer, never trained).
  When ``W̃`` lives in another space than the video embedding (a language-only encoder such as MiniLM, 384-d), a
  learned linear visual projection maps ``v`` to that width first ("it is easy to fit them with trainable visual
  encoders", Table 6 discussion).
* :class:`LinearClassifier` -- Eq. 1, the vision-only baseline: a learnable, randomly initialised ``W`` (Table 7).

Initialisations of ``W̃`` (rows = classes):

* :func:`text_weights` -- Eq. 6, CLIP's text encoder on the class names (prompt-ensembled or single template);
* :func:`sentence_weights` -- Eq. 6 with another text encoder (any sentence-embedding model; MiniLM offline);
* :func:`random_normal_weights` -- Eq. 4, ``W̃ ~ N(0, I_d)``;
* :func:`random_orthogonal_weights` -- Eq. 5, first ``c`` rows of the Q factor of a ``d × d`` Gaussian matrix;
* :func:`lda_weights` -- Appendix C.4 / Algorithm 2, the coefficients of scikit-learn's LDA fitted on
  pre-extracted video embeddings.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from openvocab.errors import InputError
from openvocab.scoring import similarity_logits


class FrozenClassifier(nn.Module):
    """``logits = scale · cos(P v, W̃_c)``; ``W̃`` is a buffer (frozen), ``P`` the identity or a learned projection."""

    def __init__(self, weight: torch.Tensor, *, logit_scale: float, projection_from: int | None = None) -> None:
        super().__init__()
        weight = torch.as_tensor(weight, dtype=torch.float32)
        self.register_buffer("weight", torch.nn.functional.normalize(weight, dim=-1))
        self.logit_scale = float(logit_scale)
        # W̃ from another embedding space (a language-only encoder): learn a visual projection into it
        self.projection = nn.Identity() if projection_from is None else nn.Linear(int(projection_from), weight.shape[1], bias=False)

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return similarity_logits(self.projection(video), self.weight, logit_scale=self.logit_scale)


class LinearClassifier(nn.Module):
    """The vision-only baseline (Eq. 1): a learnable ``nn.Linear`` from random initialisation."""

    def __init__(self, *, input_dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim, num_classes)

    @property
    def num_classes(self) -> int:
        return int(self.linear.out_features)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.linear(video.float())


def text_weights(backbone, class_names: Sequence[str], prompts) -> torch.Tensor:
    """Eq. 6 with CLIP's text encoder: prompt-ensembled embeddings of the class names ``(C, D)``."""
    return backbone.encode_labels(list(class_names), prompts)


def sentence_weights(encoder: str, class_names: Sequence[str], *, template: str = "{}") -> torch.Tensor:
    """Eq. 6 with another text encoder (e.g. ``"minilm"``): ``(C, D_text)`` unit-norm sentence embeddings."""
    from openvocab.text.sentence_encoder import SentenceEncoder

    enc = SentenceEncoder.from_pretrained(encoder)
    return enc.encode([template.replace("{}", name) for name in class_names])


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
