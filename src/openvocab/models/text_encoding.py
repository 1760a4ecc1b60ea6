"""Encoding many prompts through CLIP's text tower without recomputing what they share.

A label vocabulary becomes ``labels x templates`` prompts ("a photo of a person doing {}." ...), so most of the
tokens of most prompts are a template prefix that every label repeats. CLIP's text transformer is causal (each
position attends to itself and the positions before it) with absolute position embeddings, so the hidden states,
keys and values of a shared prefix are the same in every prompt that starts with it. This module computes them once
per prefix and runs only the rest of each prompt ("suffix"), attending to the cached prefix keys/values: for the
Kinetics-400 vocabulary x 28 templates that is ~4 tokens a prompt instead of ~11.

Two more savings apply to every batch: prompts are sorted by (suffix) length so each batch pads only to its own
longest row, and padding never changes the result -- positions up to the pooled end-of-text token cannot see the
padding after it (causal mask), and the pooled token is chosen exactly as transformers' ``CLIPTextModel`` does
(the first ``eos_token_id``, or the arg-max id for configs carrying the pre-2023 ``eos_token_id = 2``).

The prefix path re-implements only the attention wiring of ``CLIPEncoderLayer`` (projections, scaled dot-product
attention, residuals) and calls the model's own layer norms, MLPs and embeddings; it is used only for transformers'
``CLIPTextModel`` built from ``CLIPEncoderLayer``/``CLIPAttention`` in eval mode, and tested against
``CLIPModel.get_text_features`` on 77-token inputs to 1e-5. Anything else falls back to sorted, padded batches
through the model's own forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MAX_PREFIX_CACHE_BYTES", "MIN_SHARED_PROMPTS", "PrefixPlan", "plan_prefixes", "pooled_positions", "prefix_sharing_supported", "encode_token_ids"]

#: A prefix is cached only when at least this many prompts start with it (bounds the cache's size and count).
MIN_SHARED_PROMPTS = 8

#: Upper bound on the cached prefix keys/values; a plan over it is redone with a higher sharing threshold.
MAX_PREFIX_CACHE_BYTES = 512 * 2**20


def _text_transformer(text_model: nn.Module) -> nn.Module:
    """The module holding ``embeddings``/``encoder``/``final_layer_norm`` (transformers 5.x: ``CLIPTextModel`` itself;
    older layouts nest a ``CLIPTextTransformer`` under ``.text_model``)."""
    return text_model if hasattr(text_model, "encoder") else getattr(text_model, "text_model", text_model)


def prefix_sharing_supported(text_model: nn.Module) -> bool:
    """Whether the prefix-cached forward reproduces this text tower (transformers' CLIP text model, eval mode)."""
    try:
        from transformers.models.clip.modeling_clip import CLIPAttention, CLIPEncoderLayer, CLIPTextEmbeddings
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        return False
    tower = _text_transformer(text_model)
    layers = getattr(getattr(tower, "encoder", None), "layers", None)
    if tower.training or not layers or not isinstance(getattr(tower, "embeddings", None), CLIPTextEmbeddings):
        return False
    if not hasattr(tower, "final_layer_norm") or not hasattr(tower, "eos_token_id"):
        return False
    return all(type(layer) is CLIPEncoderLayer and type(layer.self_attn) is CLIPAttention for layer in layers)


def pooled_positions(ids: Sequence[Sequence[int]], eos_token_id: int | None) -> list[int]:
    """The position transformers' CLIP text model pools at, per (unpadded) token list.

    ``eos_token_id == 2`` (configs of the released OpenAI checkpoints, written before transformers PR #24773): the
    first arg-max id; otherwise the first ``eos_token_id`` (position 0 when there is none, as ``argmax`` of an
    all-zero row gives).
    """
    out: list[int] = []
    for seq in ids:
        if eos_token_id == 2:
            top = max(seq)
            out.append(list(seq).index(top))
        else:
            out.append(list(seq).index(eos_token_id) if eos_token_id in seq else 0)
    return out


@dataclass
class PrefixPlan:
    """Which cached prefix each prompt uses: ``row_prefix[i]`` indexes ``prefixes`` (-1: none)."""

    prefixes: list[tuple[int, ...]]
    row_prefix: list[int]

    def prefix_length(self, row: int) -> int:
        index = self.row_prefix[row]
        return 0 if index < 0 else len(self.prefixes[index])


def plan_prefixes(ids: Sequence[Sequence[int]], pooled: Sequence[int], *, min_shared: int = MIN_SHARED_PROMPTS) -> PrefixPlan:
    """For each prompt, the longest token prefix that at least ``min_shared`` prompts start with.

    A prefix never reaches the pooled position (the pooled token must be computed in the suffix). Built with a trie
    over the token lists: linear in the number of tokens.
    """
    children: dict[tuple[int, int], int] = {}
    counts: list[int] = [0]  # node 0 = the empty prefix
    paths: list[list[int]] = []
    for seq, pool in zip(ids, pooled, strict=True):
        node, path = 0, []
        for token in seq[:pool]:  # prefixes of length 1..pool
            key = (node, int(token))
            child = children.get(key)
            if child is None:
                child = children[key] = len(counts)
                counts.append(0)
            counts[child] += 1
            node = child
            path.append(node)
        paths.append(path)
    index_of_node: dict[int, int] = {}
    prefixes: list[tuple[int, ...]] = []
    row_prefix: list[int] = []
    for seq, path in zip(ids, paths, strict=True):
        depth = next((d for d in range(len(path), 0, -1) if counts[path[d - 1]] >= min_shared), 0)
        if depth == 0:
            row_prefix.append(-1)
            continue
        node = path[depth - 1]
        if node not in index_of_node:
            index_of_node[node] = len(prefixes)
            prefixes.append(tuple(int(t) for t in seq[:depth]))
        row_prefix.append(index_of_node[node])
    return PrefixPlan(prefixes=prefixes, row_prefix=row_prefix)


def _pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(1, max(len(r) for r in rows))
    tokens = torch.full((len(rows), longest), int(pad_id), dtype=torch.long)
    valid = torch.zeros((len(rows), longest), dtype=torch.bool)
    for i, r in enumerate(rows):
        if r:
            tokens[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
            valid[i, : len(r)] = True
    return tokens.to(device), valid.to(device)


def _run_layers(
    tower: nn.Module, tokens: torch.Tensor, start: torch.Tensor, past: list[tuple[torch.Tensor, torch.Tensor]] | None, past_valid: torch.Tensor | None
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Hidden states (before the final layer norm) of ``tokens`` (B, S) at positions ``start[b] + 0..S-1``, each
    position attending causally to the suffix and to the valid slots of ``past`` (per layer (B, H, P, hd) keys and
    values). Returns the hidden states and the new keys/values of every layer."""
    batch, length = tokens.shape
    max_pos = tower.embeddings.position_embedding.weight.shape[0]
    positions = (start[:, None] + torch.arange(length, device=tokens.device)[None, :]).clamp(max=max_pos - 1)  # padding only is clamped
    hidden = tower.embeddings(input_ids=tokens, position_ids=positions)
    causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
    if past is not None and past_valid is not None:
        mask = torch.cat([past_valid[:, None, None, :].expand(batch, 1, length, -1), causal.expand(batch, 1, length, length)], dim=-1)
    else:
        mask = causal.expand(batch, 1, length, length)
    new_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
    for index, layer in enumerate(tower.encoder.layers):
        attn = layer.self_attn
        residual = hidden
        x = layer.layer_norm1(hidden)
        shape = (batch, length, -1, attn.head_dim)
        q = attn.q_proj(x).view(shape).transpose(1, 2)
        k = attn.k_proj(x).view(shape).transpose(1, 2)
        v = attn.v_proj(x).view(shape).transpose(1, 2)
        new_kv.append((k, v))
        if past is not None:
            k = torch.cat([past[index][0], k], dim=2)
            v = torch.cat([past[index][1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scale)
        hidden = residual + attn.out_proj(out.transpose(1, 2).reshape(batch, length, -1))
        hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
    return hidden, new_kv


def encode_token_ids(
    text_model: nn.Module,
    projection: nn.Module,
    ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int,
    share_prefixes: bool = True,
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Projected text embeddings (float32, CPU, input order) of unpadded token lists.

    With ``share_prefixes`` (and a supported tower) shared prefixes are computed once (see the module docstring);
    otherwise rows sorted by length go through ``forward(input_ids, attention_mask)`` (the model's own forward) in
    batches padded to their longest row. ``progress(done, total)`` is called after each batch of prompts.
    """
    total = len(ids)
    device = next(text_model.parameters()).device
    out: torch.Tensor | None = None

    def store(rows: list[int], emb: torch.Tensor) -> None:
        nonlocal out
        emb = emb.float().cpu()
        if out is None:
            out = torch.empty(total, emb.shape[-1], dtype=torch.float32)
        out[torch.as_tensor(rows)] = emb

    tower = _text_transformer(text_model)
    use_prefixes = share_prefixes and prefix_sharing_supported(text_model)
    if use_prefixes:
        pooled = pooled_positions(ids, tower.eos_token_id)
        param = next(text_model.parameters())
        bytes_per_token = 2 * len(tower.encoder.layers) * int(tower.config.hidden_size) * param.element_size()
        min_shared = MIN_SHARED_PROMPTS
        plan = plan_prefixes(ids, pooled, min_shared=min_shared)
        while plan.prefixes and len(plan.prefixes) * max(map(len, plan.prefixes)) * bytes_per_token > MAX_PREFIX_CACHE_BYTES:
            min_shared *= 2  # fewer, shorter prefixes
            plan = plan_prefixes(ids, pooled, min_shared=min_shared)
        use_prefixes = bool(plan.prefixes)
    if not use_prefixes:
        if forward is None:
            raise ValueError("forward is required when prefixes are not shared")
        order = sorted(range(total), key=lambda i: -len(ids[i]))  # longest first: the memory peak comes at once
        for start in range(0, total, batch_size):
            rows = order[start : start + batch_size]
            tokens, valid = _pad([ids[i] for i in rows], pad_id, torch.device("cpu"))
            store(rows, forward(tokens, valid.long()))
            if progress is not None:
                progress(min(start + batch_size, total), total)
        assert out is not None
        return out

    # 1. keys/values of every distinct prefix, padded to the longest prefix (slots past a prefix's end are masked)
    caches: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    longest_prefix = max(len(p) for p in plan.prefixes)
    for start in range(0, len(plan.prefixes), batch_size):
        chunk = plan.prefixes[start : start + batch_size]
        tokens, _ = _pad(chunk, pad_id, device)
        tokens = F.pad(tokens, (0, longest_prefix - tokens.shape[1]), value=int(pad_id))
        _, kv = _run_layers(tower, tokens, torch.zeros(len(chunk), dtype=torch.long, device=device), None, None)
        caches.append(kv)
    prefix_kv = [(torch.cat([c[layer][0] for c in caches]), torch.cat([c[layer][1] for c in caches])) for layer in range(len(caches[0]))]
    prefix_len = torch.tensor([len(p) for p in plan.prefixes], dtype=torch.long, device=device)
    slots = torch.arange(longest_prefix, device=device)
    # an all-zero entry for rows without a prefix (their past slots are all masked)
    prefix_kv = [(torch.cat([k, k[:1] * 0]), torch.cat([v, v[:1] * 0])) for k, v in prefix_kv]
    prefix_len = torch.cat([prefix_len, prefix_len.new_zeros(1)])
    none_index = len(plan.prefixes)

    # 2. suffixes, sorted by length, attending to their prefix's cached keys/values
    cut = [plan.prefix_length(i) for i in range(total)]
    order = sorted(range(total), key=lambda i: -(len(ids[i]) - cut[i]))
    for start in range(0, total, batch_size):
        rows = order[start : start + batch_size]
        tokens, _ = _pad([ids[i][cut[i] :] for i in rows], pad_id, device)
        which = torch.tensor([plan.row_prefix[i] if plan.row_prefix[i] >= 0 else none_index for i in rows], dtype=torch.long, device=device)
        past = [(k[which], v[which]) for k, v in prefix_kv]
        past_valid = slots[None, :] < prefix_len[which][:, None]
        hidden, _ = _run_layers(tower, tokens, prefix_len[which], past, past_valid)
        at = torch.tensor([pooled[i] - cut[i] for i in rows], dtype=torch.long, device=device)
        picked = hidden[torch.arange(len(rows), device=device), at]
        store(rows, projection(tower.final_layer_norm(picked)))
        if progress is not None:
            progress(min(start + batch_size, total), total)
    assert out is not None
    return out
