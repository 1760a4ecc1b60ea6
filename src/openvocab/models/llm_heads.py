"""Classifier heads with LLM-guided label encoders (open-vocabulary multi-label §3.1, Table 4, Table 10).

* ``llm-attributes`` (:func:`build_llm_attributes_head`): fixed LLM prompting -- a
  :class:`~openvocab.models.heads.FrozenClassifier` whose ``W̃`` rows are CLIP text embeddings of LLM-written attribute
  prompts (:class:`~openvocab.text.llm_attributes.LlmAttributeEncoder`); nothing on the text side learns.
* ``llm-prompt`` (:func:`build_llm_prompt_head`): end-to-end learnable LLM prompting --
  :class:`LlmPromptClassifier`, whose label encoder (:class:`~openvocab.text.llm_prompting.LlmPromptEncoder`:
  learnable prefixes or LoRA + the prompt transformer, frozen T5 and CLIP) trains with the video side.

For the trainer, both heads offer ``class_embeddings(indices) -> (K, D)`` (unit rows of those training classes, with
gradients when the encoder learns) and ``refresh()`` (recompute the ``W̃`` buffer from the encoder; a no-op when
nothing on the text side learns).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from openvocab.errors import InputError
from openvocab.models.heads import FrozenClassifier, head_logit_scale
from openvocab.scoring import similarity_logits


def _need_llm(spec, kind: str) -> str:
    if not spec.llm:
        raise InputError(f"model.classifier {kind} needs model.llm: a T5 / Flan-T5 hub id or directory (e.g. google/flan-t5-xl)")
    return str(spec.llm)


def _need_clip_space(kind: str, dim: int, backbone) -> None:
    if dim != backbone.embed_dim:
        raise InputError(f"the {kind} head scores in CLIP's {backbone.embed_dim}-d text space; the video embedding has {dim}")


def build_llm_attributes_head(*, spec, dim: int, backbone, class_names: Sequence[str], from_checkpoint: bool = False, **_: object) -> FrozenClassifier:
    """Fixed LLM prompting (Table 4 "Fixed Prompt"): ``W̃`` from LLM attributes + CLIP's text tower."""
    from openvocab.text.llm_attributes import LlmAttributeEncoder

    _need_clip_space("llm-attributes", dim, backbone)
    encoder = LlmAttributeEncoder(backbone, _need_llm(spec, "llm-attributes"))
    if from_checkpoint or not class_names:
        weight = torch.zeros(len(class_names), backbone.embed_dim)
    else:
        weight = encoder.encode(list(class_names))
    return FrozenClassifier(weight, logit_scale=head_logit_scale(spec, backbone), label_encoder=encoder)


class LlmPromptClassifier(FrozenClassifier):
    """``logits = s · cos(v, f_t(c))`` for the training classes ``c`` with a learnable label encoder ``f_t``.

    * training forward (``self.training`` and grad enabled): rows of every training class recomputed by the encoder,
      differentiable (what a generic trainer needs); :meth:`class_embeddings` gives those of a subset of classes;
    * otherwise the ``W̃`` buffer, which :meth:`refresh` recomputes. ``W̃`` is refreshed automatically when it is
      stale -- the encoder's parameters changed in place (an optimiser step) since the last refresh or checkpoint
      load -- before an evaluation forward and before ``state_dict`` (so a checkpoint never stores stale rows).
      Loading a checkpoint marks it fresh: inference never needs the LLM for the training classes either.
    """

    def __init__(self, weight: torch.Tensor, *, label_encoder, class_names: Sequence[str], logit_scale: float) -> None:
        super().__init__(weight, logit_scale=logit_scale, label_encoder=label_encoder)
        self.class_names = list(class_names)
        self._fresh = self._versions()
        self.register_load_state_dict_post_hook(lambda module, incompatible: module._mark_fresh())
        self.register_state_dict_pre_hook(lambda module, prefix, keep_vars: module._refresh_if_stale())

    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.label_encoder.parameters())

    def _mark_fresh(self) -> None:
        self._fresh = self._versions()

    @property
    def stale(self) -> bool:
        """Whether the encoder's parameters changed since ``W̃`` was last computed or loaded."""
        return self._versions() != self._fresh

    def _refresh_if_stale(self) -> None:
        if self.class_names and self.stale:
            self.refresh()

    def class_embeddings(self, indices: torch.Tensor) -> torch.Tensor:
        """Unit rows ``(K, D)`` of training classes ``indices`` by the encoder, with gradients."""
        return self.label_encoder([self.class_names[i] for i in torch.as_tensor(indices).reshape(-1).tolist()])

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute ``W̃`` (every training class) from the encoder's current weights."""
        if self.class_names:
            rows = self.label_encoder.encode(self.class_names)
            self.weight.copy_(F.normalize(rows.to(self.weight), dim=-1))
        self._mark_fresh()

    def forward(self, video: torch.Tensor, label_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        if label_embeddings is None:
            if not self.class_names:
                raise InputError("this llm-prompt head has no training classes; pass label embeddings")
            if self.training and torch.is_grad_enabled():
                label_embeddings = self.label_encoder(self.class_names)
            else:
                self._refresh_if_stale()
                label_embeddings = self.weight
        return similarity_logits(self.embed(video), label_embeddings, logit_scale=self.logit_scale)


def build_llm_prompt_head(
    *, spec, dim: int, backbone, class_names: Sequence[str], from_checkpoint: bool = False, seed: int = 0, **_: object
) -> LlmPromptClassifier:
    """End-to-end learnable LLM prompting (Table 4 "Learnable Prompt", Table 10): ``spec.llm_prefixes`` prefixes (or
    LoRA of rank ``spec.llm_lora_rank``), ``spec.llm_attributes`` soft attributes of ``spec.llm_attribute_tokens``
    tokens, the ``spec.llm_connector`` connector, through the primary stream's frozen CLIP text tower."""
    from openvocab.text.llm_prompting import LlmPromptEncoder

    _need_clip_space("llm-prompt", dim, backbone)
    encoder = LlmPromptEncoder(
        backbone,
        _need_llm(spec, "llm-prompt"),
        prefixes=spec.llm_prefixes,
        attributes=spec.llm_attributes,
        attribute_tokens=spec.llm_attribute_tokens,
        connector=spec.llm_connector,
        adaptation=spec.llm_adaptation,
        lora_rank=spec.llm_lora_rank,
        seed=seed,
    )
    if from_checkpoint or not class_names:
        weight = torch.zeros(len(class_names), backbone.embed_dim)
    else:
        weight = encoder.encode(list(class_names))
    return LlmPromptClassifier(weight, label_encoder=encoder, class_names=class_names, logit_scale=head_logit_scale(spec, backbone))
