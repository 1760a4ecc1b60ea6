"""CLIP's text tower on token EMBEDDINGS instead of token ids: the one soft-prompt forward of openvocab.

Learned prompts (CoOp's context vectors, :mod:`openvocab.models.coop`; the soft prompts of the end-to-end LLM label
encoder, :mod:`openvocab.text.llm_prompting`, open-vocabulary multi-label §3.1 / Fig. 3) are rows in CLIP's
token-embedding space placed between ``[SOS]`` and the label's tokens. transformers' ``CLIPTextModel.forward`` needs
ids, so this module wires the same pieces from embeddings: position embeddings, the causal transformer, the final layer
norm and the text projection of the state at the pooled (EOS) position. Gradients reach the embeddings; the tower's
weights are whatever the caller froze. Pure wiring of transformers' modules (duck-typed, so ``text/`` does not import
``models/``); tested equal to ``CLIPModel.get_text_features`` when the embeddings are those of real tokens.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["clip_text_transformer", "encode_token_embeddings"]


def clip_text_transformer(text_model: nn.Module) -> nn.Module:
    """The module with ``embeddings`` / ``encoder`` / ``final_layer_norm`` (transformers 5.x: ``CLIPTextModel``
    itself; older layouts nest a ``CLIPTextTransformer`` under ``.text_model``)."""
    return text_model if hasattr(text_model, "encoder") else getattr(text_model, "text_model", text_model)


def encode_token_embeddings(text_model: nn.Module, projection: nn.Module, embeds: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """CLIP's text features from token embeddings ``(N, L, W)`` instead of ids: position embeddings, the causal
    transformer, the final layer norm and the projection of the state at ``pooled`` ``(N,)`` (the EOS positions).

    The same wiring as transformers' ``CLIPTextModel.forward`` (which needs ids), so gradients reach ``embeds``.
    Right padding after the EOS position does not change the result (causal attention).
    """
    from transformers.masking_utils import create_causal_mask

    tower = clip_text_transformer(text_model)
    hidden = tower.embeddings(inputs_embeds=embeds)
    mask = create_causal_mask(config=tower.config, inputs_embeds=hidden, attention_mask=None, past_key_values=None)
    out = tower.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True)
    last = tower.final_layer_norm(out.last_hidden_state)
    return projection(last[torch.arange(last.shape[0], device=last.device), pooled.to(last.device)])
