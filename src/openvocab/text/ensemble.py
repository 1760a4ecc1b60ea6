"""Prompt ensembling: one text embedding per label from several templates.

CLIP's zero-shot protocol (Radford et al., 2021, §3.1.4) and MOV §3.1 ("the embedding of each class is averaged
over all templates") build each class embedding by L2-normalising the embedding of every filled-in template,
averaging them, and L2-normalising the mean. :func:`ensemble_encoder` wraps a raw text encoder into the
``encode(labels) -> (L, D)`` callable that :meth:`openvocab.text.label_bank.LabelBank.get_or_encode` expects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from openvocab.text.prompts import PromptSet, build_prompts

__all__ = ["ensemble_encoder", "ensemble_text_embeddings"]


def ensemble_text_embeddings(per_prompt: torch.Tensor, num_labels: int, num_prompts: int) -> torch.Tensor:
    """Average prompt embeddings per label: ``normalise(mean_p normalise(e[l, p]))``, shape (L*P, D) -> (L, D).

    ``per_prompt`` is label-major (label 0's P prompts first), the order of
    :func:`openvocab.text.prompts.build_prompts`. Computed in float32 at least; the input dtype is returned.
    """
    if per_prompt.dim() != 2 or per_prompt.shape[0] != num_labels * num_prompts or num_prompts < 1:
        raise ValueError(f"expected ({num_labels}*{num_prompts}, D) prompt embeddings, got shape {tuple(per_prompt.shape)}")
    work = per_prompt.float() if per_prompt.dtype in (torch.float16, torch.bfloat16) else per_prompt
    grouped = F.normalize(work, dim=-1).reshape(num_labels, num_prompts, -1)
    return F.normalize(grouped.mean(dim=1), dim=-1).to(per_prompt.dtype)


def ensemble_encoder(
    prompts: PromptSet,
    encode_texts: Callable[[list[str]], torch.Tensor],
    *,
    batch_size: int = 1024,
) -> Callable[[list[str]], torch.Tensor]:
    """Turn ``encode_texts(sentences) -> (N, D)`` into ``encode(labels) -> (L, D)`` ensembled over ``prompts``.

    Sentences are sent to ``encode_texts`` in chunks of at most ``batch_size`` (rounded to whole labels so each
    label's prompts stay together); the result is float32 on the CPU, ready for the label bank.
    """
    per_chunk = max(1, batch_size // len(prompts))

    def encode(labels: Sequence[str]) -> torch.Tensor:
        labels = list(labels)
        parts: list[torch.Tensor] = []
        for start in range(0, len(labels), per_chunk):
            chunk = labels[start : start + per_chunk]
            embedded = encode_texts(build_prompts(chunk, prompts))
            parts.append(ensemble_text_embeddings(embedded.detach().float().cpu(), len(chunk), len(prompts)))
        if not parts:
            raise ValueError("no labels to encode")
        return torch.cat(parts)

    return encode
