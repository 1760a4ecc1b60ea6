"""End-to-end learnable LLM prompting: the label encoder of open-vocabulary multi-label §3.1 / Fig. 3 (Table 10).

``f_t(ℓ)`` for a label ``ℓ``:

1. the prompt template of §4.3 (:data:`~openvocab.text.llm_attributes.LLM_PROMPT_TEMPLATE`) filled with ``ℓ`` is
   tokenized and embedded by the frozen LLM's embedding layer: ``I ∈ R^{M×d}``;
2. each of ``N`` learnable prefixes ``P_i ∈ R^d`` is prepended: ``[P_i; I]`` goes through the frozen T5 encoder;
3. the frozen T5 decoder runs ``K·L`` decoding steps **on its own continuous outputs** (no argmax, no de-/re-
   tokenisation). Step 0 reads the embedding of the decoder start token; at step ``t`` the decoder's final hidden
   state ``h_t`` (after T5's final layer norm) is the decoded "token", and the next step reads the expected input
   embedding under the model's own next-token distribution, ``e_{t+1} = softmax(lm_head(h_t)) · E`` (``E``: the LLM's
   input embedding table; ``lm_head`` with T5's output scaling). At temperature → 0 this is exactly greedy decoding
   (tested: the arg-max of the same loop reproduces ``generate``), so the frozen LLM only ever reads vectors from the
   hull of its own token embeddings, while gradients flow through every step;
4. the ``K·L`` states ``h_t`` are split into ``K`` soft attributes of ``L`` tokens; the connector maps each to ``L``
   soft-prompt vectors in CLIP's token-embedding space (``transformer``: the prompt transformer, a small transformer
   encoder plus a linear map; ``mlp`` / ``linear``: per-token alternatives, Table 10);
5. each soft prompt is joined with the label's CLIP tokens, ``[SOS] s_1 … s_L  <tokens of "ℓ.">  [EOS]``, and run
   through the FROZEN CLIP text tower (causal mask, the EOS state, the text projection:
   :func:`openvocab.text.clip_soft_prompts.encode_token_embeddings`, the forward CoOp uses too);
6. the ``N·K`` features are mean-pooled and L2-normalised: ``f_t(ℓ)``.

``adaptation="lora"`` (Table 10) replaces the prefixes by LoRA of rank ``r`` on the query and value projections of
every T5 attention (encoder self-, decoder self- and cross-attention): ``W x + B A x`` with ``B = 0`` at the start; the
template then runs once per label (no prefixes: ``N = 1``).

Only the prefixes (or LoRA matrices) and the connector train. The LLM is NOT a submodule: it is loaded lazily, on
the first label that must be encoded, from ``llm`` (its shapes come from its config.json, which is all construction
reads), stays frozen in eval mode, and never enters ``state_dict``; the encoder stores the LLM's
:func:`~openvocab.text.llm_attributes.llm_fingerprint` in its state (``_extra_state``) and refuses to run with an LLM
whose files differ. The CLIP tower is the recogniser's primary backbone, held as a plain reference (not a submodule,
not copied). ``fingerprint`` digests the trainable weights, the LLM and CLIP, so the label bank never serves rows of
other weights: inference on labels already in the bank never loads the LLM.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from openvocab.errors import InputError
from openvocab.text import llm_attributes
from openvocab.text.clip_soft_prompts import clip_text_transformer, encode_token_embeddings
from openvocab.text.label_encoders import encode_in_batches
from openvocab.text.llm_attributes import LLM_PROMPT_TEMPLATE

__all__ = ["CONNECTORS", "ADAPTATIONS", "LlmPromptEncoder", "LoraAdapters", "build_connector", "decode_continuous"]

log = logging.getLogger(__name__)

CONNECTORS = ("transformer", "mlp", "linear")
ADAPTATIONS = ("prefix", "lora")
#: Labels per LLM + CLIP call in :meth:`LlmPromptEncoder.encode` (inference).
ENCODE_BATCH_SIZE = 32
#: Standard deviation of the initial prefixes (T5 initialises its embedding table N(0, initializer_factor²)).
PREFIX_INIT_STD = 1.0
#: Layers of the prompt transformer (the paper gives no size; "small").
CONNECTOR_LAYERS = 2
_FINGERPRINT_LEN = 24


# ---------------------------------------------------------------------------------------------------------------------
# the LLM side
# ---------------------------------------------------------------------------------------------------------------------
def _output_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """``T5ForConditionalGeneration``'s logits of decoder states (with T5's ``d_model^-0.5`` output scaling)."""
    if getattr(model.config, "scale_decoder_outputs", False):
        hidden = hidden * (model.config.d_model**-0.5)
    return model.lm_head(hidden)


def decode_continuous(model, encoder_states: torch.Tensor, encoder_mask: torch.Tensor, steps: int, *, temperature: float = 1.0) -> torch.Tensor:
    """``steps`` decoder steps fed by their own continuous outputs (module docstring, step 3): ``(B, steps, d)``
    final decoder states. ``temperature`` scales the next-token distribution whose expected embedding is fed back;
    ``0`` feeds the arg-max token's embedding (greedy decoding; not differentiable, for tests)."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    table = model.get_input_embeddings().weight
    batch = encoder_states.shape[0]
    start = int(model.config.decoder_start_token_id or 0)
    x = table[start].expand(batch, 1, -1)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    states = []
    for step in range(steps):
        out = model.decoder(inputs_embeds=x, encoder_hidden_states=encoder_states, encoder_attention_mask=encoder_mask, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        h = out.last_hidden_state
        states.append(h)
        if step + 1 < steps:
            logits = _output_logits(model, h).float()
            if temperature > 0:
                x = (torch.softmax(logits / temperature, dim=-1).to(table.dtype)) @ table
            else:
                x = table[logits.argmax(-1)]
    return torch.cat(states, dim=1)


class LoraAdapters(nn.Module):
    """LoRA (rank ``r``) of the query and value projections of every attention of a T5 (Table 10), built from its
    config alone. :meth:`applied` adds ``B A x`` to those projections of a loaded model while the context is open
    (forward hooks, removed on exit: the shared, frozen LLM is never changed)."""

    def __init__(self, config, rank: int, *, generator: torch.Generator) -> None:
        super().__init__()
        if rank < 1:
            raise InputError(f"model.llm_lora_rank must be >= 1, got {rank}")
        self.rank = int(rank)
        inner = int(config.num_heads) * int(config.d_kv)
        self.paths: list[str] = []
        for i in range(int(config.num_layers)):
            self.paths += [f"encoder.block.{i}.layer.0.SelfAttention.{p}" for p in ("q", "v")]
        for i in range(int(config.num_decoder_layers)):
            self.paths += [f"decoder.block.{i}.layer.{j}.{a}.{p}" for j, a in ((0, "SelfAttention"), (1, "EncDecAttention")) for p in ("q", "v")]
        bound = 1.0 / math.sqrt(config.d_model)
        self.down = nn.ParameterDict(
            {self._key(p): nn.Parameter((torch.rand(self.rank, config.d_model, generator=generator) * 2 - 1) * bound) for p in self.paths}
        )
        self.up = nn.ParameterDict({self._key(p): nn.Parameter(torch.zeros(inner, self.rank)) for p in self.paths})

    @staticmethod
    def _key(path: str) -> str:
        return path.replace(".", "_")

    @contextlib.contextmanager
    def applied(self, model) -> Iterator[None]:
        handles = []
        try:
            for path in self.paths:
                down, up = self.down[self._key(path)], self.up[self._key(path)]

                def hook(module, inputs, output, down=down, up=up):
                    return output + F.linear(F.linear(inputs[0], down.to(output.dtype)), up.to(output.dtype))

                handles.append(model.get_submodule(path).register_forward_hook(hook))
            yield
        finally:
            for handle in handles:
                handle.remove()


# ---------------------------------------------------------------------------------------------------------------------
# the LLM -> CLIP connector (Table 10)
# ---------------------------------------------------------------------------------------------------------------------
class PromptTransformer(nn.Module):
    """The prompt transformer: ``(S, L, d) -> (S, L, W)``: a linear map to width ``W``, learned positions, a small
    pre-norm transformer encoder over the ``L`` tokens of a soft attribute, a final layer norm and a linear map."""

    def __init__(self, d: int, width: int, tokens: int, *, layers: int = CONNECTOR_LAYERS) -> None:
        super().__init__()
        heads = max(1, width // 64)
        self.inp = nn.Linear(d, width)
        self.positions = nn.Parameter(torch.zeros(tokens, width))
        nn.init.normal_(self.positions, std=0.01)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.encoder(self.inp(x) + self.positions[: x.shape[1]])))


def build_connector(kind: str, d: int, width: int, tokens: int) -> nn.Module:
    """``transformer`` (:class:`PromptTransformer`), ``mlp`` (per token: Linear, GELU, Linear) or ``linear``."""
    if kind == "transformer":
        return PromptTransformer(d, width, tokens)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(d, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
    if kind == "linear":
        return nn.Linear(d, width)
    raise InputError(f"model.llm_connector must be one of {', '.join(CONNECTORS)}, got '{kind}'")


# ---------------------------------------------------------------------------------------------------------------------
# the label encoder
# ---------------------------------------------------------------------------------------------------------------------
class _LlmSlot:
    """Holds the lazily loaded LLM outside module registration (never a submodule, never in state_dict)."""

    def __init__(self) -> None:
        self.llm = None


class LlmPromptEncoder(nn.Module):
    """Learnable LLM prompting (module docstring): ``forward(labels) -> (N, D)`` unit rows with gradient,
    ``encode(labels)`` the same without gradient on the CPU (the
    :class:`~openvocab.text.label_encoders.LabelEncoder` protocol).

    ``backbone``: the CLIP model whose frozen text tower maps soft prompts to label embeddings (duck-typed:
    ``.clip``, ``.tokenizer``, ``.context_length``, ``.fingerprint``). ``llm``: a T5 / Flan-T5 hub id or directory.
    """

    open_vocabulary = True

    def __init__(
        self,
        backbone,
        llm: str | Path,
        *,
        prefixes: int = 4,
        attributes: int = 5,
        attribute_tokens: int = 5,
        connector: str = "transformer",
        adaptation: str = "prefix",
        lora_rank: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # a plain reference: the CLIP tower is not a submodule here
        if adaptation not in ADAPTATIONS:
            raise InputError(f"model.llm_adaptation must be one of {', '.join(ADAPTATIONS)}, got '{adaptation}'")
        if connector not in CONNECTORS:
            raise InputError(f"model.llm_connector must be one of {', '.join(CONNECTORS)}, got '{connector}'")
        if min(prefixes, attributes, attribute_tokens) < 1:
            raise InputError(f"model.llm_prefixes/llm_attributes/llm_attribute_tokens must be >= 1, got {prefixes}/{attributes}/{attribute_tokens}")
        self.llm_source = str(llm)
        config = llm_attributes.llm_config(self.llm_source)
        self.llm_dim = int(config.d_model)
        self.num_attributes = int(attributes)
        self.attribute_tokens = int(attribute_tokens)
        self.connector_kind = connector
        self.adaptation = adaptation
        tower = clip_text_transformer(backbone.clip.text_model)
        width = int(tower.embeddings.token_embedding.weight.shape[1])
        if 2 + self.attribute_tokens >= backbone.context_length:
            raise InputError(f"{self.attribute_tokens} soft-prompt tokens leave no room for a label in the {backbone.context_length}-token CLIP context")
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):  # seeded initialisation; the caller's random stream is left as it was
            torch.manual_seed(seed)
            if adaptation == "prefix":
                self.prefixes = nn.Parameter(torch.randn(int(prefixes), self.llm_dim, generator=generator) * PREFIX_INIT_STD)
                self.lora = None
            else:
                self.prefixes = None
                self.lora = LoraAdapters(config, lora_rank, generator=generator)
            self.connector = build_connector(connector, self.llm_dim, width, self.attribute_tokens)
        self.to(backbone.device)
        backbone.clip.text_model.requires_grad_(False)  # frozen CLIP: only the prefixes / LoRA and the connector learn
        backbone.clip.text_projection.requires_grad_(False)
        self._slot = _LlmSlot()
        self._llm_fingerprint: str | None = None  # the LLM this encoder was built / trained with
        self._fingerprint_cache: tuple[tuple, str] | None = None
        self.loader: Callable[..., object] | None = None  # default: llm_attributes.load_llm (looked up at call time)

    # ------------------------------------------------------------------ sizes and keys
    @property
    def num_prefixes(self) -> int:
        """``N``: sequences the LLM runs per label (1 with LoRA)."""
        return int(self.prefixes.shape[0]) if self.prefixes is not None else 1

    @property
    def llm_fingerprint(self) -> str:
        """The LLM this encoder belongs to: the one a checkpoint recorded, else read from the LLM's files."""
        if self._llm_fingerprint is None:
            self._llm_fingerprint = self._slot.llm.fingerprint if self._slot.llm is not None else llm_attributes.llm_fingerprint(self.llm_source)
        return self._llm_fingerprint

    def _arch(self) -> str:
        return f"N{self.num_prefixes}-K{self.num_attributes}-L{self.attribute_tokens}-{self.connector_kind}-{self.adaptation}"

    @property
    def fingerprint(self) -> str:
        """A digest of every trainable value, the LLM's and CLIP's fingerprints and the architecture (recomputed only
        when a parameter changed in place, e.g. by an optimiser step)."""
        params = sorted(self.named_parameters())
        key = (self.llm_fingerprint, *((n, p._version, p.data_ptr()) for n, p in params))
        if self._fingerprint_cache is not None and self._fingerprint_cache[0] == key:
            return self._fingerprint_cache[1]
        h = hashlib.sha256(f"llm-prompt:{self.backbone.fingerprint}:{self.llm_fingerprint}:{self._arch()}:{LLM_PROMPT_TEMPLATE}".encode())
        for name, p in params:
            h.update(name.encode())
            h.update(str(tuple(p.shape)).encode())
            h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        value = h.hexdigest()[:_FINGERPRINT_LEN]
        self._fingerprint_cache = (key, value)
        return value

    @property
    def prompt_key(self) -> str:
        return f"llm-prompt:{self._arch()}"

    # the LLM's identity travels in state_dict (a fixed-size uint8 tensor), so a checkpoint can check the LLM it meets
    def get_extra_state(self) -> torch.Tensor:
        known = self._llm_fingerprint
        if known is None:
            with contextlib.suppress(InputError, OSError):
                known = self.llm_fingerprint
        data = (known or "").encode("ascii")[:_FINGERPRINT_LEN].ljust(_FINGERPRINT_LEN, b"\0")
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()

    def set_extra_state(self, state) -> None:
        if isinstance(state, torch.Tensor):
            text = bytes(state.to(torch.uint8).cpu().tolist()).rstrip(b"\0").decode("ascii", errors="replace")
            if text:
                if self._slot.llm is not None and self._slot.llm.fingerprint != text:
                    raise InputError(f"this checkpoint was trained with LLM {text}, the loaded LLM {self.llm_source} is {self._slot.llm.fingerprint}")
                self._llm_fingerprint = text

    # ------------------------------------------------------------------ the LLM, lazily
    def llm(self):
        """The loaded LLM (loaded on first use, on this encoder's device, after checking its files' fingerprint)."""
        device = self.connector_device
        if self._slot.llm is None:
            if self._llm_fingerprint is not None:
                found = llm_attributes.llm_fingerprint(self.llm_source)
                if found != self._llm_fingerprint:
                    raise InputError(
                        f"the LLM at {self.llm_source} (fingerprint {found}) is not the one this label encoder was trained with "
                        f"({self._llm_fingerprint}); pass the training LLM with --llm"
                    )
            loader = self.loader or llm_attributes.load_llm
            self._slot.llm = loader(self.llm_source, device=device)
            if int(self._slot.llm.model.config.d_model) != self.llm_dim:
                raise InputError(f"the LLM at {self.llm_source} has width {self._slot.llm.model.config.d_model}, this encoder was built for {self.llm_dim}")
            self._llm_fingerprint = self._llm_fingerprint or self._slot.llm.fingerprint
        elif self._slot.llm.device != device:
            self._slot.llm.to(device)
        return self._slot.llm

    @property
    def llm_loaded(self) -> bool:
        return self._slot.llm is not None

    @property
    def connector_device(self) -> torch.device:
        return next(self.connector.parameters()).device

    # ------------------------------------------------------------------ forward
    def soft_attributes(self, labels: Sequence[str], *, temperature: float = 1.0) -> torch.Tensor:
        """The LLM's decoded states ``(B, N, K·L, d)`` for ``labels`` (module docstring, steps 1-3)."""
        llm = self.llm()
        model, device = llm.model, self.connector_device
        batch = llm.tokenizer([LLM_PROMPT_TEMPLATE.replace("{label}", label) for label in labels], return_tensors="pt", padding=True)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        embeds = model.get_input_embeddings()(ids)  # (B, M, d)
        b, n = len(labels), self.num_prefixes
        if self.prefixes is not None:
            prefix = self.prefixes.to(embeds.dtype)[None, :, None, :].expand(b, n, 1, -1)
            embeds = torch.cat([prefix, embeds[:, None].expand(-1, n, -1, -1)], dim=2).reshape(b * n, -1, embeds.shape[-1])
            mask = torch.cat([mask.new_ones(b, n, 1), mask[:, None].expand(-1, n, -1)], dim=2).reshape(b * n, -1)
        steps = self.num_attributes * self.attribute_tokens
        with self.lora.applied(model) if self.lora is not None else contextlib.nullcontext():
            states = model.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            decoded = decode_continuous(model, states, mask, steps, temperature=temperature)
        return decoded.reshape(b, n, steps, -1)

    def clip_token_ids(self, labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids (B, T), eos positions (B,))`` of ``[SOS] x L "label." [EOS]`` padded with EOS; the ``L``
        placeholder ids are replaced by a soft prompt in :meth:`clip_features`."""
        from openvocab.text.tokenizer import BOS_ID, EOS_ID, tokenize_prompts

        tokenizer = self.backbone.tokenizer
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else BOS_ID
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else EOS_ID
        room = self.backbone.context_length - self.attribute_tokens
        texts = [f"{label}." for label in labels]
        ids, truncated = tokenize_prompts(tokenizer, texts, context_length=room)
        for i in truncated:
            log.warning("label '%s…' does not fit CLIP's context beside the %d soft-prompt tokens; it was truncated", texts[i][:40], self.attribute_tokens)
        rows = [[bos, *([eos] * self.attribute_tokens), *seq[1:-1], eos] for seq in ids]
        out = torch.full((len(rows), max(map(len, rows))), eos, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.as_tensor(row)
        return out, torch.as_tensor([len(row) - 1 for row in rows])

    def clip_features(self, soft_prompts: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
        """CLIP text features ``(B, S, D)`` (projected, not normalised) of ``S`` soft prompts ``(B, S, L, W)`` per
        label, each as ``[SOS] soft prompt "label." [EOS]`` through the frozen CLIP text tower."""
        clip = self.backbone.clip
        b, s, length, width = soft_prompts.shape
        ids, pooled = self.clip_token_ids(labels)
        token_embedding = clip_text_transformer(clip.text_model).embeddings.token_embedding
        words = token_embedding(ids.to(token_embedding.weight.device))  # (B, T, W)
        words = words[:, None].expand(-1, s, -1, -1)
        soft = soft_prompts.to(words.dtype)
        embeds = torch.cat([words[:, :, :1], soft, words[:, :, 1 + length :]], dim=2).reshape(b * s, -1, width)
        feats = encode_token_embeddings(clip.text_model, clip.text_projection, embeds, pooled.repeat_interleave(s))
        return feats.reshape(b, s, -1)

    def forward(self, labels: Sequence[str]) -> torch.Tensor:
        """Unit-norm label rows ``(B, D)``, differentiable in the prefixes / LoRA and the connector."""
        labels = list(labels)
        if not labels:
            raise InputError("no labels to encode")
        decoded = self.soft_attributes(labels)  # (B, N, K·L, d)
        b, n = decoded.shape[:2]
        soft = decoded.reshape(b * n * self.num_attributes, self.attribute_tokens, -1)
        prompts = self.connector(soft.to(self.connector_device))  # (B·N·K, L, W)
        prompts = prompts.reshape(b, n * self.num_attributes, self.attribute_tokens, -1)
        return F.normalize(self.clip_features(prompts, labels).mean(dim=1), dim=-1)

    def encode(self, labels: Sequence[str], *, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Unit-norm rows ``(N, D)``, float32 on the CPU, without gradient, ``ENCODE_BATCH_SIZE`` labels per call."""
        return encode_in_batches(self, labels, batch_size=ENCODE_BATCH_SIZE, progress=progress)

    def __repr__(self) -> str:
        return f"LlmPromptEncoder({getattr(self.backbone, 'source', '?')!r}, llm={self.llm_source!r}, {self._arch()})"
