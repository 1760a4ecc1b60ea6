"""Architecture-exact T5 / Flan-T5 models with random weights and an offline-trained SentencePiece tokenizer.

No T5 weights can be downloaded on machines without a hub. These directories let the LLM-guided label encoders
(:mod:`openvocab.text.llm_attributes`, :mod:`openvocab.text.llm_prompting`) run offline: ``t5-tiny`` for tests, and
the widths/depths of the released T5 / Flan-T5 checkpoints for speed and memory measurements. Their answers are
meaningless; the directory carries the same random-weights marker as a random CLIP
(:data:`openvocab.models.create.RANDOM_WEIGHTS_MARKER`) and loading it warns.

The tokenizer is a SentencePiece unigram model trained here, offline, on a built-in corpus: the English words of the
bundled CLIP BPE vocabulary (the ``</w>``-terminated merges, most frequent first), the LLM prompt template and CLIP's
prompt templates. It has T5's layout (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, then the pieces, then the 100
``<extra_id_*>`` sentinels with ``<extra_id_0>`` last) and is saved as ``tokenizer.json`` (transformers'
``T5Tokenizer``) plus ``spiece.model``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from openvocab.errors import InputError

__all__ = ["T5_ARCHITECTURES", "T5Arch", "build_t5_tokenizer", "create_t5_dir", "t5_config"]

#: SentencePiece pieces of the offline tokenizer (besides the 100 sentinels).
T5_TOKENIZER_PIECES = 1000
_EXTRA_IDS = 100
_CORPUS_WORDS = 8000


@dataclass(frozen=True)
class T5Arch:
    """Widths/depths of one T5 (Raffel et al. 2020; Flan-T5 = T5 v1.1: gated-GELU, untied output layer)."""

    d_model: int
    d_ff: int
    d_kv: int
    layers: int
    heads: int
    feed_forward: str = "relu"
    tied: bool = True
    vocab_size: int | None = 32128  # None: the tokenizer's size


T5_ARCHITECTURES: dict[str, T5Arch] = {
    # a sub-MB model with T5's real interfaces (relative attention, sentinels, an encoder and a decoder): for tests
    "t5-tiny": T5Arch(d_model=32, d_ff=64, d_kv=16, layers=2, heads=2, feed_forward="gated-gelu", tied=False, vocab_size=None),
    "t5-small": T5Arch(d_model=512, d_ff=2048, d_kv=64, layers=6, heads=8),
    "t5-base": T5Arch(d_model=768, d_ff=3072, d_kv=64, layers=12, heads=12),
    "flan-t5-small": T5Arch(d_model=512, d_ff=1024, d_kv=64, layers=8, heads=6, feed_forward="gated-gelu", tied=False),
    "flan-t5-base": T5Arch(d_model=768, d_ff=2048, d_kv=64, layers=12, heads=12, feed_forward="gated-gelu", tied=False),
    "flan-t5-large": T5Arch(d_model=1024, d_ff=2816, d_kv=64, layers=24, heads=16, feed_forward="gated-gelu", tied=False),
}


def t5_config(arch: str, *, vocab_size: int):
    """The ``transformers.T5Config`` of an architecture name (:data:`T5_ARCHITECTURES`)."""
    from transformers import T5Config

    if arch not in T5_ARCHITECTURES:
        raise InputError(f"unknown T5 architecture '{arch}'; choose one of {', '.join(T5_ARCHITECTURES)}")
    a = T5_ARCHITECTURES[arch]
    return T5Config(
        vocab_size=a.vocab_size or vocab_size,
        d_model=a.d_model,
        d_ff=a.d_ff,
        d_kv=a.d_kv,
        num_layers=a.layers,
        num_decoder_layers=a.layers,
        num_heads=a.heads,
        feed_forward_proj=a.feed_forward,
        tie_word_embeddings=a.tied,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )


def _corpus() -> list[str]:
    """Sentences of the built-in corpus (module docstring), deterministic."""
    from openvocab.text.llm_attributes import ATTRIBUTE_TEMPLATE, LLM_PROMPT_TEMPLATE
    from openvocab.text.prompts import KINETICS_TEMPLATES
    from openvocab.text.tokenizer import clip_vocab_and_merges

    vocab, _ = clip_vocab_and_merges()
    words = [t[:-4] for t in list(vocab)[512:] if t.endswith("</w>") and t[:-4].isalpha()][:_CORPUS_WORDS]
    lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    lines += [" ".join(w.capitalize() for w in words[i : i + 12]) for i in range(0, 600, 12)]
    examples = ("dog", "playing guitar", "red car", "person riding a bike")
    for label in examples:
        lines += LLM_PROMPT_TEMPLATE.replace("{label}", label).replace("<extra_id_0>", "").splitlines()
        lines.append(ATTRIBUTE_TEMPLATE.replace("{label}", label).replace("{attribute}", "four legs, 2. a long tail; 3. fur"))
    lines += [t.replace("{}", label) for t in KINETICS_TEMPLATES for label in examples]
    return lines


def build_t5_tokenizer(*, pieces: int = T5_TOKENIZER_PIECES):
    """``(T5Tokenizer, spiece model bytes)``: a SentencePiece unigram model trained offline on the built-in corpus
    (about 0.2 s), in T5's id layout, with the 100 ``<extra_id_*>`` sentinels."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from transformers import T5Tokenizer

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()),
        model_writer=buffer,
        vocab_size=pieces,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    proto = buffer.getvalue()
    processor = spm.SentencePieceProcessor(model_proto=proto)
    scores = [(processor.id_to_piece(i), float(processor.get_score(i))) for i in range(processor.get_piece_size())]
    scores[:3] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    scores += [(f"<extra_id_{i}>", 0.0) for i in range(_EXTRA_IDS - 1, -1, -1)]  # T5: <extra_id_0> is the last id
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(proto)
    tokenizer = T5Tokenizer(vocab=scores, _spm_precompiled_charsmap=model.normalizer_spec.precompiled_charsmap, extra_ids=_EXTRA_IDS)
    return tokenizer, proto


def build_random_t5(arch: str, *, vocab_size: int, seed: int = 0):
    """A ``T5ForConditionalGeneration`` of ``arch`` with transformers' own (seeded) random initialisation."""
    from transformers import T5ForConditionalGeneration

    config = t5_config(arch, vocab_size=vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
    return model.eval()


def create_t5_dir(arch: str, directory: str | Path, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a random-weight T5 of ``arch`` with the offline tokenizer to ``directory`` (safetensors, config,
    generation config, ``tokenizer.json``, ``spiece.model`` and the random-weights marker), atomically. It loads with
    :func:`openvocab.text.llm_attributes.load_llm` and transformers' own ``from_pretrained``."""
    from openvocab.atomic import atomic_dir
    from openvocab.models.create import RANDOM_WEIGHTS_MARKER

    if arch not in T5_ARCHITECTURES:
        raise InputError(f"unknown T5 architecture '{arch}'; choose one of {', '.join(T5_ARCHITECTURES)}")
    target = Path(directory).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise InputError("already exists and is not empty (use --overwrite to replace it)", path=target)
    tokenizer, proto = build_t5_tokenizer()
    model = build_random_t5(arch, vocab_size=len(tokenizer), seed=seed)
    with atomic_dir(target, overwrite=True) as tmp:  # never a half-written model directory
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "spiece.model").write_bytes(proto)
        marker = {"architecture": arch, "seed": seed, "note": "random weights: answers are meaningless; for tests and speed measurements"}
        (tmp / RANDOM_WEIGHTS_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return target
