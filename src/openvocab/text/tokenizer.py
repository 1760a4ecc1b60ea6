"""The CLIP tokenizer: built offline from the bundled BPE vocabulary, saved, loaded and applied to prompts.

Every released CLIP model (Radford et al., 2021, "Learning Transferable Visual Models From Natural Language
Supervision") shares one byte-level BPE vocabulary of 49,408 tokens, released by OpenAI as
``bpe_simple_vocab_16e6.txt.gz`` (MIT, see ``assets/NOTICE.txt``). The papers openvocab implements (MOV §3.1,
Text4Vis §3, the open-vocabulary multi-label paper §3) all encode class names with CLIP's text tower, so the
tokenizer must match the released one id for id. :func:`build_clip_tokenizer` assembles it without any network
access, in the same order as OpenAI's ``SimpleTokenizer``:

1. the 256 byte-to-unicode characters (GPT-2 order),
2. the same 256 characters followed by ``</w>`` (end of word),
3. the first 48,894 merges, each merged pair as one token,
4. ``<|startoftext|>`` (id 49406) and ``<|endoftext|>`` (id 49407).

The vocabulary is handed to transformers' ``CLIPTokenizer`` (the ``tokenizers``-backed class in transformers 5.x),
so saving and loading go through ``save_pretrained``/``from_pretrained`` and the written directory also loads in
transformers' own ``CLIPProcessor``.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from openvocab.atomic import atomic_write
from openvocab.errors import InputError, ModelLoadError, OpenVocabError

if TYPE_CHECKING:  # pragma: no cover - imported lazily at run time (transformers is slow to import)
    import torch
    from transformers import CLIPTokenizer, PreTrainedTokenizerBase

__all__ = [
    "BOS_ID",
    "CONTEXT_LENGTH",
    "EOS_ID",
    "VOCAB_SIZE",
    "build_clip_tokenizer",
    "clip_vocab_and_merges",
    "encode_prompts",
    "load_tokenizer",
    "save_clip_tokenizer",
]

log = logging.getLogger(__name__)

VOCAB_SIZE = 49408
BOS_ID = 49406  # <|startoftext|>
EOS_ID = 49407  # <|endoftext|>, also the padding token (CLIP pools at the first end-of-text position)
CONTEXT_LENGTH = 77
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
_BPE_ASSET = "assets/bpe_simple_vocab_16e6.txt.gz"
_NUM_MERGES = 49152 - 256 - 2  # 48,894: the merges OpenAI's SimpleTokenizer keeps
_MIN_REAL_VOCAB = 1000  # below this a "tokenizer" is the empty shell transformers returns when files are missing

# Files that make a directory loadable as a tokenizer / as a model (transformers' naming).
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")
_MODEL_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_LOCAL_HINT = (
    "pass a local model directory, e.g. one written by `openvocab model create --arch vit-b-32 DIR` "
    "or downloaded with `huggingface-cli download`"
)


def _bytes_to_unicode() -> list[str]:
    """GPT-2's reversible byte -> printable-unicode table, as a list in CLIP's vocabulary order.

    Printable latin-1 bytes map to themselves; the remaining 68 bytes map to code points 256, 257, ... in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


@functools.lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """The 49,408-token CLIP vocabulary (token -> id) and its 48,894 merges, read from the bundled asset (cached).

    Callers must not mutate the returned dict (it is shared by every call).
    """
    try:
        raw = importlib.resources.files("openvocab.text").joinpath(_BPE_ASSET).read_bytes()
        lines = gzip.decompress(raw).decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # a broken install, not user input
        raise ModelLoadError(f"cannot read the bundled CLIP BPE vocabulary {_BPE_ASSET} ({exc}); reinstall openvocab") from None
    merges: tuple[tuple[str, str], ...] = tuple(tuple(line.split()) for line in lines[1 : _NUM_MERGES + 1])  # type: ignore[misc]
    byte_chars = _bytes_to_unicode()
    tokens = [*byte_chars, *(c + "</w>" for c in byte_chars), *("".join(pair) for pair in merges), BOS_TOKEN, EOS_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE or len(merges) != _NUM_MERGES:
        raise ModelLoadError(f"the bundled CLIP BPE vocabulary has {len(vocab)} tokens, expected {VOCAB_SIZE}; reinstall openvocab")
    return vocab, merges


def build_clip_tokenizer(*, model_max_length: int = CONTEXT_LENGTH) -> CLIPTokenizer:
    """A fresh CLIP tokenizer identical to the released OpenAI one ("a photo of a cat" -> 49406 320 1125 ... 49407).

    The vocabulary is parsed once per process (cached); building the tokenizer object itself takes ~50 ms.
    A new object is returned on every call so callers may change settings on it freely.
    """
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=model_max_length)


_PROBES = ("a photo of a cat", "a video of a person playing guitar.", "Ümläut, emoji 🎸 and 123 don't!")


def save_clip_tokenizer(directory: str | Path, *, model_max_length: int = CONTEXT_LENGTH) -> Path:
    """Write the CLIP tokenizer to ``directory`` so that transformers loads it offline.

    Writes ``tokenizer.json`` + ``tokenizer_config.json`` (via ``save_pretrained``; what ``CLIPTokenizer``/
    ``AutoTokenizer``/``CLIPProcessor.from_pretrained`` read in transformers 5.x) plus ``vocab.json`` and
    ``merges.txt`` in the layout of the released checkpoints, for older transformers and other CLIP libraries.
    The directory is reloaded and checked to give identical ids. Returns the directory.
    """
    from transformers import CLIPTokenizer

    target = Path(directory).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    tokenizer = build_clip_tokenizer(model_max_length=model_max_length)
    tokenizer.save_pretrained(str(target))
    vocab, merges = clip_vocab_and_merges()
    atomic_write(target / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    atomic_write(target / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    reloaded = CLIPTokenizer.from_pretrained(str(target), local_files_only=True)
    expected = tokenizer(list(_PROBES))["input_ids"]
    if len(reloaded) != VOCAB_SIZE or reloaded(list(_PROBES))["input_ids"] != expected:
        raise OpenVocabError("the saved CLIP tokenizer does not reload identically (disk full or a transformers bug?)", path=target)
    return target


def _looks_like_path(name: str) -> bool:
    """Names that cannot be a hub id (``owner/name``) are treated as local paths that do not exist."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or not _HUB_ID.match(name)


def _is_clip_checkpoint(directory: Path) -> bool:
    """Whether a directory holds model weights whose config (if any) is a CLIP-family model."""
    if not any((directory / name).is_file() for name in _MODEL_FILES) and not any(directory.glob("*.safetensors")):
        return False
    config = directory / "config.json"
    if not config.is_file():
        return True
    try:
        model_type = str(json.loads(config.read_text(encoding="utf-8")).get("model_type", "clip"))
    except (OSError, ValueError, AttributeError):
        return True
    return "clip" in model_type.lower()


def load_tokenizer(name_or_path: str | Path, *, local_files_only: bool = False) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a model from a local directory or a hub id (``AutoTokenizer.from_pretrained``).

    A local directory with CLIP weights but no tokenizer files gets the standard CLIP tokenizer (all CLIP
    checkpoints share one vocabulary) with a logged warning. Offline, transformers can silently return an empty
    tokenizer for a hub id; that and every other failure is raised as a one-line :class:`ModelLoadError`.
    For a hub id the local cache is tried first, then the network unless ``local_files_only``.
    """
    from transformers import AutoTokenizer

    name = str(name_or_path)
    path = Path(name).expanduser()
    attempts: list[dict[str, bool]]
    if path.is_dir():
        if not any((path / f).is_file() for f in _TOKENIZER_FILES):
            if _is_clip_checkpoint(path):
                log.warning("%s: no tokenizer files; using the standard CLIP BPE tokenizer", path)
                return build_clip_tokenizer()
            raise ModelLoadError(f"no tokenizer files (tokenizer.json or vocab.json) and no CLIP weights here; {_LOCAL_HINT}", path=path)
        source, attempts = str(path), [{"local_files_only": True}]
    elif path.exists():
        raise ModelLoadError(f"is a file; expected a model directory or a hub id; {_LOCAL_HINT}", path=path)
    elif _looks_like_path(name):
        raise ModelLoadError(f"directory not found; {_LOCAL_HINT}", path=path)
    else:
        offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE", "") not in ("", "0")
        source = name
        attempts = [{"local_files_only": True}] + ([] if offline else [{"local_files_only": False}])

    problem = "offline or missing files"
    for kwargs in attempts:
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError, ... here
            problem = f"offline or missing files: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            continue
        if len(tokenizer) > _MIN_REAL_VOCAB:
            return tokenizer
        problem = f"offline or missing files: got an empty tokenizer with {len(tokenizer)} tokens"
    raise ModelLoadError(f"could not load a CLIP tokenizer for '{name}' ({problem}); {_LOCAL_HINT}")


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], *, context_length: int = CONTEXT_LENGTH
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Tokenize a batch of prompts for the text tower, padded to the longest and truncated to ``context_length``.

    Truncation keeps the special tokens (CLIP: ``<|startoftext|>`` first, ``<|endoftext|>`` last), as OpenAI's
    ``clip.tokenize(truncate=True)`` does. Returns the model inputs (``input_ids``, ``attention_mask``, ... as
    tensors) and the indices of the prompts that were cut, so callers can warn about them.
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string")
    texts = list(prompts)
    if not texts:
        raise InputError("no prompts to encode")
    if context_length < 2:
        raise ValueError(f"context_length must be at least 2, got {context_length}")
    # One pass without truncation tells which prompts are too long; re-tokenize only when some are.
    full = tokenizer(texts, truncation=False, padding=False, verbose=False)
    truncated = [i for i, ids in enumerate(full["input_ids"]) if len(ids) > context_length]
    if truncated:
        batch = tokenizer(texts, padding="longest", truncation=True, max_length=context_length, return_tensors="pt")
    else:
        batch = tokenizer.pad(full, padding="longest", return_tensors="pt", verbose=False)
    return dict(batch), truncated
