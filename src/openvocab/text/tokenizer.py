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
import threading
import urllib.error
import urllib.request
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
    "hub_download_hint",
    "hub_offline",
    "hub_unreachable",
    "load_tokenizer",
    "looks_like_local_path",
    "missing_path_message",
    "pad_token_ids",
    "save_clip_tokenizer",
    "tokenize_prompts",
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
    "pass a local model directory, e.g. one written by `openvocab model create --arch vit-b-32 DIR` or downloaded with `hf download <hub id> --local-dir DIR`"
)
_PROBE_TIMEOUT_S = 2.0  # one request, no retries: enough to tell "no network" from "slow hub"


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


def looks_like_local_path(name: str) -> bool:
    """Whether a model name that does not exist on disk was meant as a local path rather than a hub id.

    True for names that cannot be a hub id (``owner/name``): starting with ``/``, ``.`` or ``~``, holding a backslash
    (or the OS separator, on Windows) or more than one ``/``, or not hub-id shaped; and for ``a/b`` whose first
    component ``a`` is an existing local directory (``models/clip`` typed in a folder that has ``models/``).
    """
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or not _HUB_ID.match(name):
        return True
    if os.sep != "/" and os.sep in name:
        return True
    head = name.split("/", 1)[0]
    return "/" in name and Path(head).is_dir()


def missing_path_message(name: str) -> str:
    """The one-line explanation for a model path that does not exist (no hub advice: it was meant as a path)."""
    head = name.split("/", 1)[0]
    why = f" (read as a local path because the folder '{head}' exists here)" if _HUB_ID.match(name) and name.count("/") == 1 else ""
    return (
        f"model directory not found: the path does not exist{why}; check the path (a model directory is written by "
        "`openvocab model create --arch vit-b-32 DIR` or `hf download <hub id> --local-dir DIR`)"
    )


def hub_download_hint(repo_id: str) -> str:
    """What to do when a hub id cannot be fetched here: download it elsewhere with the ``hf`` CLI and pass the folder."""
    return (
        f"pass a local model directory instead: on a machine with internet run `hf download {repo_id} --local-dir DIR`, "
        "copy DIR here and pass it (or write a random-weight model with `openvocab model create --arch vit-b-32 DIR`)"
    )


def _hub_endpoint() -> str:
    endpoint = os.environ.get("HF_ENDPOINT")
    if not endpoint:
        try:
            from huggingface_hub import constants

            endpoint = constants.ENDPOINT
        except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
            endpoint = "https://huggingface.co"
    return endpoint.rstrip("/")


def _probe(url: str, timeout: float) -> str | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # the hub (or a mirror/proxy) answered
    except urllib.error.URLError as exc:
        reason = exc.reason
        return reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
    except TimeoutError:  # socket.timeout is TimeoutError since Python 3.10
        return f"no answer within {timeout:g} s"
    except (OSError, ValueError) as exc:  # ValueError: a malformed HF_ENDPOINT
        return f"{type(exc).__name__}: {exc}"


def hub_unreachable(repo_id: str, *, timeout: float = _PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or ``None`` when it answers.

    One HEAD request for the model's ``config.json`` with a short timeout and no retries: any HTTP answer (200, 404,
    401, ...) means the hub is reachable and the normal loader runs; a DNS failure, refused connection or timeout
    is returned as a short reason. Without this probe, huggingface_hub retries each request five times with back-off
    (about 30 s) and prints every attempt before failing. The request runs in a daemon thread so that a slow DNS
    resolver (which socket timeouts do not cover) cannot hold the caller longer than ``timeout`` either.
    """
    endpoint = _hub_endpoint()
    result: list[str | None] = []
    worker = threading.Thread(target=lambda: result.append(_probe(f"{endpoint}/{repo_id}/resolve/main/config.json", timeout)), daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if not result:
        return f"{endpoint} did not answer within {timeout:g} s"
    return None if result[0] is None else f"{endpoint} cannot be reached: {result[0]}"


def hub_offline() -> bool:
    """Whether the user asked for offline mode (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set to a true value)."""
    return any(os.environ.get(k, "").strip().lower() in {"1", "true", "yes", "on"} for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


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
    elif looks_like_local_path(name):
        raise ModelLoadError(missing_path_message(name), path=path if name.startswith("~") else name)
    else:
        offline = local_files_only or hub_offline()
        source = name
        attempts = [{"local_files_only": True}] + ([] if offline else [{"local_files_only": False}])

    problem = "offline or missing files"
    for kwargs in attempts:
        if not kwargs["local_files_only"] and source == name:
            unreachable = hub_unreachable(name)  # fail in ~2 s instead of ~30 s of retried requests
            if unreachable is not None:
                raise ModelLoadError(
                    f"could not load a CLIP tokenizer for '{name}': not in the local Hugging Face cache and {unreachable}; {hub_download_hint(name)}"
                )
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError, ... here
            problem = f"offline or missing files: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            continue
        if len(tokenizer) > _MIN_REAL_VOCAB:
            return tokenizer
        problem = f"offline or missing files: got an empty tokenizer with {len(tokenizer)} tokens"
    hint = _LOCAL_HINT if source != name else hub_download_hint(name)
    raise ModelLoadError(f"could not load a CLIP tokenizer for '{name}' ({problem}); {hint}")


def _check_prompts(prompts: Sequence[str], context_length: int) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string")
    texts = list(prompts)
    if not texts:
        raise InputError("no prompts to encode")
    if context_length < 2:
        raise ValueError(f"context_length must be at least 2, got {context_length}")
    return texts


def tokenize_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], *, context_length: int = CONTEXT_LENGTH) -> tuple[list[list[int]], list[int]]:
    """Token ids of every prompt, unpadded, truncated to ``context_length``; and the indices of the prompts cut.

    Truncation keeps the special tokens (CLIP: ``<|startoftext|>`` first, ``<|endoftext|>`` last), as OpenAI's
    ``clip.tokenize(truncate=True)`` does. One batched tokenizer call; only the prompts that are too long are
    tokenized a second time.
    """
    texts = _check_prompts(prompts, context_length)
    ids = [list(seq) for seq in tokenizer(texts, truncation=False, padding=False, verbose=False)["input_ids"]]
    truncated = [i for i, seq in enumerate(ids) if len(seq) > context_length]
    if truncated:
        cut = tokenizer([texts[i] for i in truncated], truncation=True, max_length=context_length, padding=False)["input_ids"]
        for i, seq in zip(truncated, cut, strict=True):
            ids[i] = list(seq)
    return ids, truncated


def pad_token_ids(sequences: Sequence[Sequence[int]], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token id lists to the longest of them: ``input_ids`` and ``attention_mask`` (int64, ``(N, L)``).

    For CLIP's text tower the padding length does not change the embeddings: a causal mask keeps every position
    before the end-of-text token from seeing the padding, and the pooled output is taken at the first end-of-text
    token (or the arg-max id, which is the same position since ``<|endoftext|>`` is the largest id).
    """
    import torch

    if not sequences:
        raise InputError("no token sequences to pad")
    longest = max(len(seq) for seq in sequences)
    input_ids = torch.full((len(sequences), longest), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], *, context_length: int = CONTEXT_LENGTH
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Tokenize a batch of prompts for the text tower, padded to the longest and truncated to ``context_length``.

    Truncation keeps the special tokens (CLIP: ``<|startoftext|>`` first, ``<|endoftext|>`` last), as OpenAI's
    ``clip.tokenize(truncate=True)`` does. Returns the model inputs (``input_ids``, ``attention_mask``, ... as
    tensors) and the indices of the prompts that were cut, so callers can warn about them.
    """
    texts = _check_prompts(prompts, context_length)
    # One pass without truncation tells which prompts are too long; re-tokenize only when some are.
    full = tokenizer(texts, truncation=False, padding=False, verbose=False)
    truncated = [i for i, ids in enumerate(full["input_ids"]) if len(ids) > context_length]
    if truncated:
        batch = tokenizer(texts, padding="longest", truncation=True, max_length=context_length, return_tensors="pt")
    else:
        batch = tokenizer.pad(full, padding="longest", return_tensors="pt", verbose=False)
    return dict(batch), truncated
