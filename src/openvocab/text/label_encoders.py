"""Label encoders: one protocol for everything that turns label names into classifier rows.

A label encoder maps ``labels -> (N, D)`` embeddings that a recogniser's head scores video embeddings against
(Text4Vis Eq. 3 ``s · cos(v, W̃_c)``, MOV Eq. 8). It says whether it is open-vocabulary (any label) or closed-set
(only the classes it was built with), and it has a ``fingerprint`` + ``prompt_key`` pair that keys the persistent
:class:`~openvocab.text.label_bank.LabelBank`, so every open-vocabulary encoder is cached the same way.

Implementations (Text4Vis Table 6 rows):

* :class:`ClipTextEncoder` -- CLIP's text tower with a prompt set (Eq. 6; the prompt ensemble of MOV §3.1);
* :class:`SentenceLabelEncoder` -- another text encoder (MiniLM, Text4Vis' "DistilBERT" row); the recogniser's
  head learns the visual projection into its space;
* :class:`ClosedSetEncoder` -- the rows of a closed-set classifier (random normal Eq. 4, orthogonal Eq. 5, LDA,
  a linear probe's weights) for the class names it was trained on; other names are refused in one line.

LLM-guided encoders (open-vocabulary multi-label §3.1): :class:`~openvocab.text.llm_attributes.LlmAttributeEncoder`
(fixed LLM prompting: CLIP on LLM-written attribute prompts) and :class:`~openvocab.text.llm_prompting.LlmPromptEncoder`
(learnable prefixes + prompt transformer). An encoder that learns is an ordinary ``nn.Module`` held by the head, and its
parameters get their own optimiser group in the trainer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

from openvocab.errors import InputError
from openvocab.text.prompts import PromptSet, prompt_set

Progress = Callable[[int, int], None]


def encode_in_batches(
    forward: Callable[[list[str]], torch.Tensor], labels: Sequence[str], *, batch_size: int, progress: Progress | None = None
) -> torch.Tensor:
    """``encode`` of a learnable (``nn.Module``) label encoder: ``forward`` on ``batch_size`` labels at a time without
    gradient, float32 rows on the CPU; ``progress(done, total)`` after each batch."""
    labels = list(labels)
    if not labels:
        raise InputError("no labels to encode")
    parts = []
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            parts.append(forward(labels[start : start + batch_size]).float().cpu())
            if progress is not None:
                progress(min(start + batch_size, len(labels)), len(labels))
    return torch.cat(parts)


@runtime_checkable
class LabelEncoder(Protocol):
    """``encode(labels) -> (N, D)``; ``fingerprint`` / ``prompt_key`` key the label bank; ``open_vocabulary``."""

    @property
    def fingerprint(self) -> str: ...

    @property
    def prompt_key(self) -> str: ...

    @property
    def open_vocabulary(self) -> bool: ...

    def encode(self, labels: Sequence[str], *, progress: Progress | None = None) -> torch.Tensor: ...


class ClipTextEncoder:
    """CLIP's text tower + a prompt set: prompt-ensembled, L2-normalised label embeddings (Eq. 6, MOV §3.1).

    ``tower`` is anything with ``encode_labels(labels, prompts, progress=)`` and ``fingerprint`` -- the
    :class:`~openvocab.models.backbone.ClipBackbone` (kept duck-typed so ``text/`` does not import ``models/``).
    """

    open_vocabulary = True

    def __init__(self, tower, prompts: PromptSet | None = None) -> None:
        self.tower = tower
        self.prompts = prompts or prompt_set("ensemble")

    @property
    def fingerprint(self) -> str:
        return self.tower.fingerprint

    @property
    def prompt_key(self) -> str:
        return self.prompts.key

    def with_prompts(self, prompts: PromptSet) -> ClipTextEncoder:
        return ClipTextEncoder(self.tower, prompts)

    def encode(self, labels: Sequence[str], *, progress: Progress | None = None) -> torch.Tensor:
        if progress is None:
            return self.tower.encode_labels(list(labels), self.prompts)
        return self.tower.encode_labels(list(labels), self.prompts, progress=progress)

    def __repr__(self) -> str:
        return f"ClipTextEncoder({getattr(self.tower, 'source', '?')!r}, prompts={self.prompts.key!r})"


class SentenceLabelEncoder:
    """A sentence-embedding model (``"minilm"`` or a local directory) on ``template`` filled with each label: unit-norm
    ``(N, D_text)`` rows (Text4Vis Table 6 "other text encoder"). The model loads on first use."""

    open_vocabulary = True

    def __init__(self, name: str = "minilm", *, template: str = "{}") -> None:
        self.name = name
        self.template = template
        self._encoder = None
        self._fingerprint: str | None = None

    @property
    def encoder(self):
        if self._encoder is None:
            from openvocab.text.sentence_encoder import SentenceEncoder

            self._encoder = SentenceEncoder.from_pretrained(self.name)
        return self._encoder

    @property
    def fingerprint(self) -> str:
        """The encoder's name and a digest of its weights (so another checkpoint under the same name re-encodes)."""
        if self._fingerprint is None:
            from openvocab.digest import update_digest

            h = hashlib.sha256(f"sentence:{self.name}".encode())
            for key, tensor in sorted(self.encoder.model.state_dict().items()):
                update_digest(h, key, tensor)
            self._fingerprint = "sentence-" + h.hexdigest()[:20]
        return self._fingerprint

    @property
    def prompt_key(self) -> str:
        return PromptSet("sentence", (self.template,)).key

    def encode(self, labels: Sequence[str], *, progress: Progress | None = None) -> torch.Tensor:
        out = self.encoder.encode([self.template.replace("{}", name) for name in labels])
        if progress is not None:
            progress(len(labels), len(labels))
        return out

    def __repr__(self) -> str:
        return f"SentenceLabelEncoder({self.name!r})"


class ClosedSetEncoder:
    """The rows of a closed-set classifier, by class name: ``encode`` returns the rows of the names asked for and
    refuses any other name (it cannot embed labels it was not built with); names match case-insensitively. Not cached in the label bank."""

    open_vocabulary = False
    prompt_key = ""

    def __init__(self, class_names: Sequence[str], weight: torch.Tensor | Callable[[], torch.Tensor], *, kind: str) -> None:
        self.class_names = list(class_names)
        self._weight = weight
        self.kind = kind
        self._index = {name: i for i, name in enumerate(self.class_names)}
        self._folded = {name.casefold(): i for i, name in enumerate(self.class_names)}

    @property
    def fingerprint(self) -> str:
        return f"closed-set:{self.kind}"

    @property
    def weight(self) -> torch.Tensor:
        return self._weight() if callable(self._weight) else self._weight

    def encode(self, labels: Sequence[str], *, progress: Progress | None = None) -> torch.Tensor:
        rows = [self._index.get(label, self._folded.get(label.casefold())) for label in labels]
        unknown = [label for label, row in zip(labels, rows) if row is None]
        if unknown:
            shown = ", ".join(self.class_names[:20]) + (" ..." if len(self.class_names) > 20 else "")
            raise InputError(
                f"a closed-set '{self.kind}' classifier only scores the {len(self.class_names)} classes it was trained on "
                f"({shown}); not: {', '.join(unknown[:10])}"
            )
        return self.weight.detach().float().cpu()[rows]

    def __repr__(self) -> str:
        return f"ClosedSetEncoder({self.kind!r}, {len(self.class_names)} classes)"
