"""CoOp: learned prompt context for CLIP's text tower (Zhou et al., "Learning to Prompt for Vision-Language Models",
2021), the first trained baseline of MOV Tables 1-2 (§4.3: "learns continuous text prompt embeddings instead of
manually selected templates").

CoOp replaces the words of a hand-written template ("a video of a ...") by ``M`` learned vectors
``[V]_1 ... [V]_M`` in CLIP's token-embedding space, shared by every class (the "unified context"), with the class
name at the end ("end" class-token position):

    prompt(c) = [SOS] [V]_1 ... [V]_M  <tokens of "c.">  [EOS]

Each prompt goes through CLIP's frozen text transformer (token + position embeddings, causal layers, final layer
norm, projection of the EOS state), so only the context vectors learn. Defaults are the paper's: ``M = 16``,
initialised ``N(0, 0.02²)``; ``init_words`` gives CoOp's other initialisation, the embeddings of a phrase such as
"a video of a" (then ``M`` is its token count, and the encoder reproduces CLIP on the template "a video of a {}.").

Any label list can be encoded (open vocabulary): class names never seen in training get the learned context too.
:class:`CoopLabelEncoder` is an ``nn.Module`` held by the head as ``head.label_encoder`` (so the trainer gives its
context its own optimiser group and checkpoints store it); it keeps only a plain reference to the CLIP backbone,
whose frozen text tower lives -- and is checkpointed as frozen -- in the recogniser's primary stream.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from openvocab.errors import InputError
from openvocab.scoring import similarity_logits
from openvocab.text.clip_soft_prompts import clip_text_transformer as _text_transformer
from openvocab.text.clip_soft_prompts import encode_token_embeddings
from openvocab.text.label_encoders import encode_in_batches

log = logging.getLogger(__name__)

#: Label names per text-tower call in :meth:`CoopLabelEncoder.encode` (inference; training encodes its classes at once).
ENCODE_BATCH_SIZE = 256


class CoopLabelEncoder(nn.Module):
    """``M`` learned context vectors + the frozen CLIP text tower of ``backbone``
    (a :class:`~openvocab.models.backbone.ClipBackbone`): ``forward(labels) -> (N, D)`` unit rows with gradient,
    ``encode(labels)`` the same without gradient, on the CPU (the :class:`~openvocab.text.label_encoders.LabelEncoder`
    protocol). ``fingerprint`` digests the context, so the label bank never serves rows of other weights."""

    open_vocabulary = True

    def __init__(self, backbone, *, context_tokens: int = 16, init_words: str | None = None, seed: int = 0) -> None:
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # a plain reference: the tower is not a submodule here
        tower = _text_transformer(backbone.clip.text_model)
        token_embedding = tower.embeddings.token_embedding
        width = int(token_embedding.weight.shape[1])
        if init_words is not None:
            ids = self._tokenize([init_words], backbone.context_length, backbone=backbone)[0]
            if not ids:
                raise InputError(f"CoOp: no tokens in the context initialisation {init_words!r}")
            with torch.no_grad():
                context = token_embedding(torch.as_tensor(ids, device=token_embedding.weight.device)).float().cpu()
        else:
            if context_tokens < 1:
                raise InputError(f"CoOp needs at least one context vector (model.context_tokens), got {context_tokens}")
            context = torch.randn(context_tokens, width, generator=torch.Generator().manual_seed(seed)) * 0.02
        if context.shape[0] > backbone.context_length - 3:
            raise InputError(f"CoOp: {context.shape[0]} context vectors leave no room for a class name in the {backbone.context_length}-token context")
        self.context = nn.Parameter(context.to(token_embedding.weight.device))
        self.init_words = init_words
        self._cache: tuple[tuple, list[str], torch.Tensor] | None = None

    # ------------------------------------------------------------------ the LabelEncoder protocol
    @property
    def context_tokens(self) -> int:
        return int(self.context.shape[0])

    @property
    def fingerprint(self) -> str:
        """The text tower's fingerprint and a digest of every value of the context (cheap: ``M × W`` floats)."""
        h = hashlib.sha256(f"coop:{self.backbone.fingerprint}".encode())
        h.update(str(tuple(self.context.shape)).encode())
        h.update(self.context.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()[:24]

    @property
    def prompt_key(self) -> str:
        return f"coop-{self.context_tokens}"

    def encode(self, labels: Sequence[str], *, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Unit-norm rows ``(N, D)``, float32 on the CPU, ``ENCODE_BATCH_SIZE`` labels per tower call."""
        return encode_in_batches(self, labels, batch_size=ENCODE_BATCH_SIZE, progress=progress)

    # ------------------------------------------------------------------ the prompts
    @staticmethod
    def _tokenize(texts: list[str], context_length: int, *, backbone) -> list[list[int]]:
        """Token ids of ``texts`` (the project's CLIP tokenizer) without the start/end tokens, each cut to
        ``context_length - 2`` tokens."""
        from openvocab.text.tokenizer import tokenize_prompts

        ids, truncated = tokenize_prompts(backbone.tokenizer, texts, context_length=context_length)
        for i in truncated:
            log.warning("'%s…' does not fit the text encoder's context beside the CoOp vectors; it was truncated", texts[i][:40])
        return [seq[1:-1] for seq in ids]

    def prompt_ids(self, labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids (N, L), eos positions (N,))`` of ``[SOS] x M  "label." [EOS]`` padded to the longest; the ``M``
        placeholder ids are replaced by the context in :meth:`forward`."""
        from openvocab.text.tokenizer import BOS_ID, EOS_ID

        tokenizer = self.backbone.tokenizer
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else BOS_ID
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else EOS_ID
        m = self.context_tokens
        names = self._tokenize([f"{label}." for label in labels], self.backbone.context_length - m, backbone=self.backbone)
        rows = [[bos, *([eos] * m), *name, eos] for name in names]
        ids = torch.full((len(rows), max(map(len, rows))), eos, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.as_tensor(row)
        return ids, torch.as_tensor([len(row) - 1 for row in rows])

    def forward(self, labels: Sequence[str]) -> torch.Tensor:
        """Unit-norm label rows ``(N, D)`` on the tower's device, differentiable in the context; all labels in one
        batch."""
        labels = list(labels)
        clip = self.backbone.clip
        ids, pooled = self.prompt_ids(labels)
        token_embedding = _text_transformer(clip.text_model).embeddings.token_embedding
        embeds = token_embedding(ids.to(token_embedding.weight.device))
        context = self.context.to(embeds.dtype)[None].expand(len(labels), -1, -1)
        embeds = torch.cat([embeds[:, :1], context, embeds[:, 1 + self.context_tokens :]], dim=1)
        return F.normalize(encode_token_embeddings(clip.text_model, clip.text_projection, embeds, pooled), dim=-1)

    def rows(self, labels: Sequence[str]) -> torch.Tensor:
        """:meth:`forward`, reused while nothing can change it: without gradient and with unchanged parameters
        (evaluation scores the same classes batch after batch)."""
        if torch.is_grad_enabled():
            self._cache = None
            return self(labels)
        key = (self.context._version, self.context.data_ptr(), self.context.device)
        if self._cache is not None and self._cache[0] == key and self._cache[1] == list(labels):
            return self._cache[2]
        rows = self(labels)
        self._cache = (key, list(labels), rows)
        return rows

    def __repr__(self) -> str:
        return f"CoopLabelEncoder({getattr(self.backbone, 'source', '?')!r}, context_tokens={self.context_tokens})"


class CoopClassifier(nn.Module):
    """``logits = s · cos(v, g([V]_1..M, c))`` for the training classes ``c``; rows are recomputed from the learned
    context on every training forward (that is what CoOp trains), any other ``label_embeddings`` are scored as given."""

    scores_by_similarity = True

    def __init__(self, *, label_encoder: CoopLabelEncoder, class_names: Sequence[str], logit_scale: float) -> None:
        super().__init__()
        self.label_encoder = label_encoder
        self.class_names = list(class_names)
        self.logit_scale = float(logit_scale)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        return video

    def class_embeddings(self, indices: torch.Tensor) -> torch.Tensor:
        """The rows of training classes ``indices`` with gradients (the multi-label trainer's batch classes)."""
        return self.label_encoder([self.class_names[i] for i in indices.tolist()])

    def forward(self, video: torch.Tensor, label_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        if label_embeddings is None:
            if not self.class_names:
                raise InputError("this CoOp head has no training classes; pass label embeddings")
            label_embeddings = self.label_encoder.rows(self.class_names)
        return similarity_logits(video, label_embeddings, logit_scale=self.logit_scale)


def context_words(template: str | None) -> str | None:
    """CoOp's context initialisation from a template ``"<words> {}."`` (the class name must come last)."""
    if template is None:
        return None
    prefix, sep, suffix = template.partition("{}")
    if not sep or suffix.strip() not in ("", ".") or not prefix.strip():
        raise InputError(f"CoOp initialises its context from a template of the form '<words> {{}}.'; got {template!r}")
    return prefix.strip()


def build_coop_head(*, spec, dim: int, backbone, class_names: Sequence[str], seed: int = 0, **_: object) -> CoopClassifier:
    """MOV Tables 1-2 "CoOp": ``spec.context_tokens`` learned vectors ``N(0, 0.02²)`` (or the words of
    ``spec.template``) before each class name, through the primary stream's frozen CLIP text tower."""
    from openvocab.models.heads import head_logit_scale

    if dim != backbone.embed_dim:
        raise InputError(f"the CoOp head scores in CLIP's {backbone.embed_dim}-d text space; the video embedding has {dim}")
    encoder = CoopLabelEncoder(backbone, context_tokens=spec.context_tokens, init_words=context_words(spec.template), seed=seed)
    return CoopClassifier(label_encoder=encoder, class_names=class_names, logit_scale=head_logit_scale(spec, backbone))
