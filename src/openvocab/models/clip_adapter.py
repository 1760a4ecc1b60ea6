"""CLIP-Adapter (Gao et al., "CLIP-Adapter: Better Vision-Language Models with Feature Adapters", 2021), the second
trained baseline of MOV Tables 1-2 (§4.3: "attaches adapter heads to both video and text encoder").

An adapter is a two-layer bottleneck MLP ``A(x) = ReLU(W_2 ReLU(W_1 x))`` (``W_1: d -> d/r``, ``W_2: d/r -> d``, no
biases, reduction ``r = 4``) mixed with the frozen feature it adapts by a residual ratio ``α`` (0.2 in the paper):

    x' = α · A(x) + (1 − α) · x

Here the visual adapter acts on the video embedding after temporal pooling and fusion (the head's ``embed``, so
``classify``, evaluation and training all see it) and the textual adapter on CLIP's frozen text embeddings of the
labels (the prompt set of ``spec.prompts``; MOV's recipes use CLIP's 28-template ensemble). Scores are
``s · cos(v', t')``. With ``α = 0`` the head is exactly the frozen CLIP-text head (Text4Vis Eq. 6).

The textual adapter is part of :class:`AdapterLabelEncoder` (``head.label_encoder``: its own optimiser group; any
label can be encoded, so unseen labels go through the trained adapter too). Its ``fingerprint`` digests the adapter's
weights, so the label bank caches rows per trained state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

from openvocab.errors import InputError
from openvocab.scoring import similarity_logits


class Adapter(nn.Module):
    """``x' = α · ReLU(W_2 ReLU(W_1 x)) + (1 − α) · x`` with ``W_1: d -> d // reduction`` (CLIP-Adapter Eq. 1-3)."""

    def __init__(self, dim: int, *, reduction: int = 4, ratio: float = 0.2) -> None:
        super().__init__()
        if reduction < 1 or dim // reduction < 1:
            raise InputError(f"CLIP-Adapter: model.adapter_reduction must be between 1 and {dim}, got {reduction}")
        if not 0.0 <= ratio <= 1.0:
            raise InputError(f"CLIP-Adapter: model.adapter_ratio must be between 0 and 1, got {ratio}")
        hidden = dim // reduction
        self.mlp = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, dim, bias=False), nn.ReLU())
        self.ratio = float(ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ratio * self.mlp(x.to(self.mlp[0].weight.dtype)) + (1.0 - self.ratio) * x


class AdapterLabelEncoder(nn.Module):
    """CLIP's frozen text rows (``base``: a :class:`~openvocab.text.label_encoders.ClipTextEncoder`) through the
    textual adapter: ``forward(rows)`` adapts given frozen rows (with gradient), ``encode(labels)`` encodes labels
    and adapts them (the :class:`~openvocab.text.label_encoders.LabelEncoder` protocol)."""

    open_vocabulary = True

    def __init__(self, base, *, dim: int, reduction: int = 4, ratio: float = 0.2) -> None:
        super().__init__()
        self.base = base  # not a module: CLIP's text tower lives in the recogniser's primary stream
        self.adapter = Adapter(dim, reduction=reduction, ratio=ratio)

    @property
    def prompts(self):
        """The prompt set of the frozen text rows (what ``classify`` reports)."""
        return self.base.prompts

    @property
    def fingerprint(self) -> str:
        """The text tower's fingerprint, the ratio and a digest of every adapter weight."""
        h = hashlib.sha256(f"clip-adapter:{self.base.fingerprint}:{self.adapter.ratio!r}".encode())
        for name, tensor in self.adapter.state_dict().items():
            h.update(f"{name}{tuple(tensor.shape)}".encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()[:24]

    @property
    def prompt_key(self) -> str:
        return self.base.prompt_key

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.adapter(rows)

    def encode(self, labels: Sequence[str], *, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Adapted rows ``(N, D)``, float32 on the CPU."""
        rows = self.base.encode(list(labels), progress=progress) if progress is not None else self.base.encode(list(labels))
        weight = self.adapter.mlp[0].weight
        with torch.no_grad():
            return self(rows.to(weight.device, weight.dtype)).float().cpu()

    def __repr__(self) -> str:
        return f"AdapterLabelEncoder({self.base!r}, ratio={self.adapter.ratio})"


class AdapterClassifier(nn.Module):
    """``logits = s · cos(A_v(v), A_t(W̃_c))``: ``W̃`` the frozen CLIP text rows of the training classes (a buffer,
    as in the frozen classifier), ``A_v`` / ``A_t`` the visual / textual adapters."""

    scores_by_similarity = True

    def __init__(self, weight: torch.Tensor, *, label_encoder: AdapterLabelEncoder, logit_scale: float, reduction: int = 4, ratio: float = 0.2) -> None:
        super().__init__()
        weight = torch.as_tensor(weight, dtype=torch.float32)
        self.register_buffer("weight", torch.nn.functional.normalize(weight, dim=-1))
        self.visual_adapter = Adapter(weight.shape[1], reduction=reduction, ratio=ratio)
        self.label_encoder = label_encoder
        self.logit_scale = float(logit_scale)

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """The adapted video embedding (what every scoring path compares with adapted label rows)."""
        return self.visual_adapter(video.float())

    def forward(self, video: torch.Tensor, label_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """Logits against the adapted training-class rows or, when given, already adapted ``label_embeddings``."""
        rows = self.label_encoder(self.weight) if label_embeddings is None else label_embeddings
        return similarity_logits(self.embed(video), rows, logit_scale=self.logit_scale)


def build_adapter_head(*, spec, dim: int, backbone, class_names: Sequence[str], from_checkpoint: bool = False, seed: int = 0, **_: object) -> AdapterClassifier:
    """MOV Tables 1-2 "CLIP-Adapter": visual + textual adapters (``spec.adapter_reduction``, ``spec.adapter_ratio``)
    over the frozen CLIP-text head of ``spec.prompts``. Adapter weights start from PyTorch's default initialisation,
    seeded by ``seed``."""
    from openvocab.models.heads import head_logit_scale
    from openvocab.text.label_encoders import ClipTextEncoder
    from openvocab.text.prompts import resolve_prompts

    if dim != backbone.embed_dim:
        raise InputError(f"the CLIP-Adapter head scores in CLIP's {backbone.embed_dim}-d text space; the video embedding has {dim}")
    base = ClipTextEncoder(backbone, resolve_prompts(spec.prompts, template=spec.template, default="single"))
    if from_checkpoint or not class_names:
        weight = torch.zeros(len(class_names), backbone.embed_dim)
    else:
        weight = base.encode(list(class_names))
    with torch.random.fork_rng(devices=[]):  # seeded adapters; the caller's random stream is left as it was
        torch.manual_seed(seed)
        encoder = AdapterLabelEncoder(base, dim=backbone.embed_dim, reduction=spec.adapter_reduction, ratio=spec.adapter_ratio)
        return AdapterClassifier(
            weight, label_encoder=encoder, logit_scale=head_logit_scale(spec, backbone), reduction=spec.adapter_reduction, ratio=spec.adapter_ratio
        )
