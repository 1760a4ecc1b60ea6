"""Fixed LLM prompting: label embeddings enriched with attributes an LLM writes (open-vocabulary multi-label §3.1
"Fixed LLM prompting", §4.3, appendix J.1; after Menon & Vondrick's descriptors for image classification).

For each label ``ℓ`` a T5 / Flan-T5 is asked, with the paper's prompt (§4.3, :data:`LLM_PROMPT_TEMPLATE`)::

    Q: What are useful features for distinguishing a {label} in a photo?
    A: There are several useful visual features to tell about a {label} in a photo:
    1. <extra_id_0>

and answers greedily. The answer is parsed into a list of attributes (J.1: "the text is split into each item of the
list, followed by removal of repetitions"; :func:`parse_attribute_list`), then cleaned for the label
(:func:`filter_attributes`): items that only repeat the label, echo the question, or name something that cannot be
seen are dropped. Each attribute becomes one CLIP prompt with a standard CLIP template that holds both the label and
the attribute (:data:`ATTRIBUTE_TEMPLATE`, "a photo of a {label}, which has {attribute}.", the "{category} which
(is/has/etc) {descriptor}" form of Menon & Vondrick with CLIP's "a photo of a" prefix -- the question asks about a
photo). The CLIP embeddings of a label's prompts are L2-normalised, averaged and normalised again. A label for which
the LLM gives nothing usable (garbage, an empty answer, only repeats) falls back to the plain prompt
(:data:`PLAIN_TEMPLATE`) with a warning naming the label (J.1: "the frequency of LLM failures").

The LLM runs once per new label: its answers are stored in the label bank's ``attributes`` table (keyed by the LLM's
fingerprint and :data:`ATTRIBUTE_PROMPT_KEY`), and the resulting embeddings in the bank's embeddings under
:attr:`LlmAttributeEncoder.prompt_key`; neither lookup loads the LLM (its fingerprint is read from its files).

:func:`load_llm` loads any T5 / Flan-T5 (a hub id or a local directory, e.g. one written by
``openvocab model create --arch t5-tiny DIR``); :class:`Llm` also serves other LLM users (the synthetic labels of
appendix I, :mod:`openvocab.labelling.synthesis`) with ``generate(prompts) -> answers``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from openvocab.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from openvocab.text.label_bank import LabelBank

__all__ = [
    "ATTRIBUTE_PROMPT_KEY",
    "ATTRIBUTE_TEMPLATE",
    "LLM_PROMPT_TEMPLATE",
    "NON_VISUAL_WORDS",
    "PLAIN_TEMPLATE",
    "PROMPT_ECHOES",
    "LabelAttributes",
    "Llm",
    "LlmAttributeEncoder",
    "LlmAttributes",
    "attribute_prompts",
    "filter_attributes",
    "llm_config",
    "llm_fingerprint",
    "load_llm",
    "parse_attribute_list",
]

log = logging.getLogger(__name__)

#: The LLM prompt of §4.3 ("following the Flan-T5 text generation instructions"); ``<extra_id_0>`` marks where T5
#: writes its answer (the list continues after "1. ").
LLM_PROMPT_TEMPLATE = (
    "Q: What are useful features for distinguishing a {label} in a photo?\n"
    "A: There are several useful visual features to tell about a {label} in a photo:\n"
    "1. <extra_id_0>"
)
#: The CLIP prompt of one attribute (J.1 "a standard CLIP prompting template to incorporate both the class label and
#: the descriptor"; Menon & Vondrick's "{category} which (is/has/etc) {descriptor}").
ATTRIBUTE_TEMPLATE = "a photo of a {label}, which has {attribute}."
#: The CLIP prompt of a label without usable attributes.
PLAIN_TEMPLATE = "a photo of a {label}."
#: Greedy decoding budget (tokens) of the answer: a list of several short attributes.
MAX_NEW_TOKENS = 64
#: Prompts per ``generate`` call.
GENERATE_BATCH_SIZE = 16
#: Bumped whenever parsing or filtering changes (stored attributes are keyed by it).
PARSER_VERSION = 1

#: Whole words that make an attribute non-visual: other senses (sound, smell, taste) and properties a camera cannot
#: see (price, history, personality). Deliberately small: a word that is often visual ("heavy", "warm") is not here.
NON_VISUAL_WORDS = frozenset(
    {
        "sound", "sounds", "noise", "noises", "noisy", "loud", "quiet", "smell", "smells", "odor", "odour", "scent",
        "taste", "tastes", "flavor", "flavour", "price", "cost", "costs", "expensive", "cheap", "history", "origin",
        "invented", "meaning", "personality", "lifespan",
    }
)  # fmt: skip
#: Phrases that echo the question instead of answering it ("there are several useful features ...").
PROMPT_ECHOES = ("useful feature", "visual feature", "in a photo", "distinguishing", "tell about", "there are several")

_RANDOM_WEIGHTS_MARKER = "openvocab_random_weights.json"  # models.create.RANDOM_WEIGHTS_MARKER (text/ cannot import models/)
_MIN_VOCAB = 100  # regular (non-special) tokens below this: the empty shell transformers returns when files are missing
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_TOKENIZER_FILES = ("tokenizer.json", "spiece.model")
_SAMPLES_PER_FILE = 256  # byte windows sampled from each weights file by the fingerprint
_SAMPLE_BYTES = 64


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


#: Key of stored attributes (beside the LLM fingerprint): the LLM prompt, the decoding budget and the parser.
ATTRIBUTE_PROMPT_KEY = f"t5-attributes:{_digest(LLM_PROMPT_TEMPLATE, f'greedy max_new_tokens={MAX_NEW_TOKENS}', f'parser {PARSER_VERSION}')[:12]}"


# ---------------------------------------------------------------------------------------------------------------------
# parsing the LLM's answer
# ---------------------------------------------------------------------------------------------------------------------
_SPECIALS = re.compile(r"<pad>|</s>|<unk>|<extra_id_\d+>")
_BULLET = re.compile(r"^\s*(?:[-*•·–]|\(?\d{1,2}[.)])\s+")
_NUMBER = re.compile(r"(?:(?<=\s)|^)\(?\d{1,2}[.)](?=\s|$)")
_STRIP = " \t.,;:!?\"'`*-–•()[]"
_LEADING_JOINERS = re.compile(r"^(?:and|or)\s+", re.IGNORECASE)
_ARTICLES = re.compile(r"^(?:a|an|the)\s+")
_WORDS = re.compile(r"[a-z]+")


def _key(text: str) -> str:
    """Case- and space-insensitive form used for comparisons."""
    return " ".join(text.casefold().split())


def _clean_item(text: str) -> str:
    return _LEADING_JOINERS.sub("", " ".join(text.split()).strip(_STRIP)).strip(_STRIP)


def _looping(item: str) -> bool:
    words = _key(item).split()
    return len(words) >= 4 and 2 * len(set(words)) <= len(words)


def parse_attribute_list(text: str) -> list[str]:
    """The items of an LLM's list answer, in order, without repeats (case and spacing aside) and empty items.

    Items are separated by lines, list numbers ("1.", "2)", "(3)", also within a line: the answer to
    :data:`LLM_PROMPT_TEMPLATE` starts after "1. " and goes on "... 2. ..."), bullets ("-", "*", "•") and semicolons;
    an answer that is not a list (one item) is split at commas ("four legs, a tail and fur"). Each item loses
    surrounding punctuation and a leading "and"/"or"; items without a letter ("...", "3") are garbage and dropped, and
    so are items stuck in a word-repetition loop (4 or more words, at most half of them distinct: "h h h h", "neck
    neck neck neck"; J.1 names repetition loops among the LLM's failures). T5's special tokens (``<pad>``, ``</s>``,
    ``<extra_id_N>``) separate items too.
    """
    lines = _SPECIALS.sub("\n", str(text)).splitlines()
    items: list[str] = []
    for line in lines:
        line = _BULLET.sub("", line)
        for part in _NUMBER.split(line):
            items.extend(part.split(";"))
    items = [item for item in items if item.strip(_STRIP + " ")]
    if len(items) == 1:
        items = items[0].split(",")
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        cleaned = _clean_item(item)
        if not cleaned or not any(ch.isalpha() for ch in cleaned) or _key(cleaned) in seen or _looping(cleaned):
            continue
        seen.add(_key(cleaned))
        out.append(cleaned)
    return out


def _is_label(item: str, label: str) -> bool:
    """Whether ``item`` only repeats ``label`` (articles, case, spacing and a plural "s" aside)."""
    a, b = _ARTICLES.sub("", _key(item)), _ARTICLES.sub("", _key(label))
    return a in (b, b + "s", b + "es") or b in (a + "s", a + "es")


def filter_attributes(items: Sequence[str], label: str) -> list[str]:
    """``items`` that say something visual about ``label``: not a repeat of the label, no echo of the question
    (:data:`PROMPT_ECHOES`), no non-visual word (:data:`NON_VISUAL_WORDS`), each once (case and spacing aside)."""
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        key = _key(item)
        if not key or key in seen or _is_label(item, label):
            continue
        if any(echo in key for echo in PROMPT_ECHOES) or NON_VISUAL_WORDS.intersection(_WORDS.findall(key)):
            continue
        seen.add(key)
        out.append(" ".join(item.split()))
    return out


def attribute_prompts(label: str, attributes: Sequence[str], *, template: str = ATTRIBUTE_TEMPLATE, plain: str = PLAIN_TEMPLATE) -> list[str]:
    """The CLIP prompts of a label: one per attribute, or the plain prompt when there is none."""
    if not attributes:
        return [plain.replace("{label}", label)]
    return [template.replace("{label}", label).replace("{attribute}", attribute) for attribute in attributes]


# ---------------------------------------------------------------------------------------------------------------------
# finding, fingerprinting and loading a T5
# ---------------------------------------------------------------------------------------------------------------------
def _hub_snapshot(repo_id: str, *, download: bool) -> Path:
    """The local snapshot directory of a hub id: the Hugging Face cache, else (``download``, online) a download of
    its config, tokenizer and safetensors weights. One-line :class:`InputError` otherwise."""
    from huggingface_hub import snapshot_download

    from openvocab.text.tokenizer import hub_download_hint, hub_offline, hub_unreachable

    hint = hub_download_hint(repo_id).replace("openvocab model create --arch vit-b-32 DIR", "openvocab model create --arch t5-tiny DIR")
    try:
        cached = Path(snapshot_download(repo_id, local_files_only=True))
        if any(p.suffix in _WEIGHT_SUFFIXES for p in cached.iterdir()):  # not just a config fetched by llm_config
            return cached
    except Exception:  # noqa: BLE001 - not cached (huggingface_hub raises several kinds)
        pass
    if hub_offline():
        raise InputError(f"LLM '{repo_id}' is not in the local Hugging Face cache and the hub is offline; {hint}")
    if not download:
        raise InputError(f"LLM '{repo_id}' is not in the local Hugging Face cache; {hint}")
    unreachable = hub_unreachable(repo_id)
    if unreachable is not None:
        raise InputError(f"LLM '{repo_id}' is not in the local Hugging Face cache and {unreachable}; {hint}")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"could not download LLM '{repo_id}' ({type(exc).__name__}); {hint}") from None


def llm_directory(source: str | Path, *, download: bool = True) -> Path:
    """The directory of a T5 / Flan-T5 named by a local path or a hub id (see :func:`load_llm`)."""
    from openvocab.text.tokenizer import looks_like_local_path, missing_path_message

    name = str(source)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise InputError(
                "not a T5 / Flan-T5 model directory (no config.json); pass a hub id such as google/flan-t5-xl or a directory "
                "such as one written by `openvocab model create --arch t5-tiny DIR`",
                path=path,
            )
        directory = path
    elif looks_like_local_path(name):
        raise InputError(missing_path_message(name).replace("model directory", "LLM directory").replace("--arch vit-b-32", "--arch t5-tiny"), path=name)
    else:
        directory = _hub_snapshot(name, download=download)
    try:
        model_type = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise InputError("unreadable config.json", path=directory) from None
    if model_type != "t5":
        raise InputError(f"is a '{model_type}' model; the LLM must be a T5 / Flan-T5 (model_type 't5')", path=source)
    return directory


def _sample_file(h, path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with path.open("rb") as f:
        if path.suffix == ".safetensors" and size >= 8:
            header = int.from_bytes(f.read(8), "little")
            if 0 < header <= min(size - 8, 100 * 2**20):
                h.update(f.read(header))  # tensor names, dtypes, shapes and offsets
        step = max(1, size // _SAMPLES_PER_FILE)
        for offset in range(0, size, step):
            f.seek(offset)
            h.update(f.read(_SAMPLE_BYTES))


def llm_fingerprint(source: str | Path) -> str:
    """A 24-hex-digit id of a T5's config, tokenizer and weights, read from its files WITHOUT loading the model:
    the config, the tokenizer files and each weights file's size, safetensors header and 256 evenly spaced 64-byte
    windows. It identifies the files (a re-sharded copy of the same weights counts as another LLM: its labels are
    encoded again); it is not a security hash. A hub id not in the local cache is downloaded first (when online)."""
    directory = llm_directory(source)
    h = hashlib.sha256(b"openvocab-llm-1")
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    h.update(json.dumps({k: v for k, v in config.items() if k not in ("_name_or_path", "transformers_version")}, sort_keys=True).encode())
    for name in _TOKENIZER_FILES:
        if (directory / name).is_file():
            h.update(name.encode())
            h.update((directory / name).read_bytes())
    weights = sorted(p for p in directory.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    if not weights:
        raise InputError("no model weights (*.safetensors) in this LLM directory", path=directory)
    for path in weights:
        _sample_file(h, path)
    return h.hexdigest()[:24]


def llm_config(source: str | Path):
    """The ``T5Config`` of an LLM: its config.json only (no weights are read; a hub id not cached fetches only the
    config)."""
    from transformers import T5Config

    from openvocab.text.tokenizer import hub_offline, looks_like_local_path

    name = str(source)
    try:
        directory: Path | None = llm_directory(name, download=False)
    except InputError:
        if Path(name).expanduser().exists() or looks_like_local_path(name) or hub_offline():
            raise
        directory = None  # a hub id not cached yet: the hub serves its config
    try:
        return T5Config.from_pretrained(str(directory) if directory is not None else name)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"could not read the LLM's config ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", path=name) from None


class Llm:
    """A loaded T5 / Flan-T5: ``model`` (``T5ForConditionalGeneration``, eval mode, frozen), ``tokenizer``, the
    ``source`` it was named by, its :func:`llm_fingerprint` and whether it carries random weights (a test model)."""

    def __init__(self, *, model, tokenizer, source: str, fingerprint: str, random_weights: bool = False) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.source = source
        self.fingerprint = fingerprint
        self.random_weights = random_weights

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def d_model(self) -> int:
        return int(self.model.config.d_model)

    def to(self, device: str | torch.device) -> Llm:
        self.model.to(device)
        return self

    def answer_text(self, ids: Sequence[int]) -> str:
        """The decoded answer of a generated sequence: the text of the first sentinel span (T5 writes
        ``<extra_id_0> answer <extra_id_1> ...``; Flan-T5 writes the answer directly), without special tokens."""
        text = self.tokenizer.decode(list(ids), skip_special_tokens=False)
        text = text.replace("<pad>", " ").replace("</s>", " ")
        spans = [s.strip() for s in re.split(r"<extra_id_\d+>", text)]
        return next((s for s in spans if s), "")

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = MAX_NEW_TOKENS,
        batch_size: int = GENERATE_BATCH_SIZE,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """Greedy answers (``do_sample=False``, one beam) to ``prompts``, ``batch_size`` prompts per call."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        prompts = list(prompts)
        answers: list[str] = []
        for start in range(0, len(prompts), batch_size):
            batch = self.tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True, truncation=True, max_length=512)
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=batch["input_ids"].to(self.device),
                    attention_mask=batch["attention_mask"].to(self.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                )
            answers.extend(self.answer_text(seq.tolist()) for seq in out)
            if progress is not None:
                progress(len(answers), len(prompts))
        return answers

    def __repr__(self) -> str:
        return f"Llm({self.source!r}, d_model={self.d_model})"


def load_llm(source: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Llm:
    """Load a T5 / Flan-T5 (``T5ForConditionalGeneration`` + ``AutoTokenizer``) from a local directory or a hub id
    (the local Hugging Face cache first, then the hub when online). Every failure -- a missing directory, no
    weights, an empty tokenizer (fewer than 100 tokens besides the special ones: what transformers returns offline
    when the files are missing), another model type -- is one :class:`InputError` naming the source."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    directory = llm_directory(source)
    fingerprint = llm_fingerprint(directory)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"could not load the LLM's tokenizer ({type(exc).__name__}: {exc})", path=source) from None
    regular = len(tokenizer) - len(set(tokenizer.all_special_tokens))
    if regular < _MIN_VOCAB:
        raise InputError(f"the LLM's tokenizer is empty ({len(tokenizer)} tokens, {regular} besides the special ones): tokenizer files missing?", path=source)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:
        model = T5ForConditionalGeneration.from_pretrained(str(directory), local_files_only=True, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"could not load the LLM ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", path=source) from None
    random_weights = (directory / _RANDOM_WEIGHTS_MARKER).is_file()
    if random_weights:
        log.warning("LLM %s has RANDOM weights (a test model): its attributes are meaningless", source)
    try:
        model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise InputError(f"cannot move the LLM to device '{device}' ({exc})") from None
    return Llm(model=model, tokenizer=tokenizer, source=str(source), fingerprint=fingerprint, random_weights=random_weights)


# ---------------------------------------------------------------------------------------------------------------------
# attributes of labels, cached
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelAttributes:
    """The attributes of one label, the LLM's raw answer, and whether they were generated now (else stored)."""

    label: str
    attributes: tuple[str, ...]
    raw: str
    generated: bool = False


class LlmAttributes:
    """Attributes of labels by one LLM (:data:`LLM_PROMPT_TEMPLATE`, greedy, parsed and filtered), cached in a label
    bank (or, without one, in memory). The LLM loads on the first label that is not cached; ``loader`` is
    :func:`load_llm` (replaceable in tests)."""

    def __init__(self, source: str | Path, *, label_bank: LabelBank | None = None, loader: Callable[..., Llm] | None = None) -> None:
        self.source = str(source)
        self.label_bank = label_bank
        self._loader = loader
        self._llm: Llm | None = None
        self._fingerprint: str | None = None
        self._memory: dict[str, LabelAttributes] = {}

    @property
    def fingerprint(self) -> str:
        """The LLM's :func:`llm_fingerprint` (from its files; the model is not loaded)."""
        if self._fingerprint is None:
            self._fingerprint = self._llm.fingerprint if self._llm is not None else llm_fingerprint(self.source)
        return self._fingerprint

    @property
    def prompt_key(self) -> str:
        return ATTRIBUTE_PROMPT_KEY

    def llm(self, device: str | torch.device = "cpu") -> Llm:
        """The loaded LLM (loaded on first use, on ``device``)."""
        if self._llm is None:
            self._llm = (self._loader or load_llm)(self.source, device=device)
            self._fingerprint = getattr(self._llm, "fingerprint", None) or self._fingerprint
        elif self._llm.device != torch.device(device):
            self._llm.to(device)
        return self._llm

    def stored(self, labels: Sequence[str]) -> dict[str, LabelAttributes]:
        """The attributes already known (label bank or memory) among ``labels``; never runs the LLM."""
        found = {label: self._memory[label] for label in labels if label in self._memory}
        rest = [label for label in dict.fromkeys(labels) if label not in found]
        if rest and self.label_bank is not None:
            for label, rec in self.label_bank.attribute_records(fingerprint=self.fingerprint, prompt_key=self.prompt_key, labels=rest).items():
                found[label] = self._memory[label] = LabelAttributes(label, rec.attributes, rec.raw)
        return found

    def get(
        self, labels: Sequence[str], *, device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None
    ) -> dict[str, LabelAttributes]:
        """``label -> attributes`` for every label; the LLM answers only the labels not stored yet (then stored)."""
        labels = list(dict.fromkeys(labels))
        found = self.stored(labels)
        missing = [label for label in labels if label not in found]
        if missing:
            answers = self.llm(device).generate([LLM_PROMPT_TEMPLATE.replace("{label}", label) for label in missing], progress=progress)
            new = {
                label: LabelAttributes(label, tuple(filter_attributes(parse_attribute_list(answer), label)), answer, generated=True)
                for label, answer in zip(missing, answers)
            }
            if self.label_bank is not None:
                self.label_bank.put_attributes(
                    fingerprint=self.fingerprint,
                    prompt_key=self.prompt_key,
                    attributes={label: list(a.attributes) for label, a in new.items()},
                    raw={label: a.raw for label, a in new.items()},
                )
            self._memory.update(new)
            found.update(new)
        return {label: found[label] for label in labels}


class LlmAttributeEncoder:
    """The :class:`~openvocab.text.label_encoders.LabelEncoder` of fixed LLM prompting: CLIP's text tower (``tower``,
    a :class:`~openvocab.models.backbone.ClipBackbone`, duck-typed) on :func:`attribute_prompts` of each label's
    LLM attributes, normalised, mean-pooled and normalised again.

    ``fingerprint`` is the CLIP text tower's (the rows are CLIP text embeddings); ``prompt_key`` holds the LLM's
    fingerprint, the LLM prompt and the CLIP templates, so another LLM or template never shares cached rows.
    """

    open_vocabulary = True

    def __init__(
        self,
        tower,
        llm: str | Path | LlmAttributes,
        *,
        template: str = ATTRIBUTE_TEMPLATE,
        plain: str = PLAIN_TEMPLATE,
        label_bank: LabelBank | None = None,
    ) -> None:
        self.tower = tower
        self.attributes = llm if isinstance(llm, LlmAttributes) else LlmAttributes(llm, label_bank=label_bank)
        if label_bank is not None:
            self.attributes.label_bank = label_bank
        for text, fields in ((template, ("{label}", "{attribute}")), (plain, ("{label}",))):
            if any(text.count(f) != 1 for f in fields):
                raise InputError(f"LLM attribute template {text!r} must contain {' and '.join(fields)} once each")
        self.template = template
        self.plain = plain

    @property
    def fingerprint(self) -> str:
        return self.tower.fingerprint

    @property
    def prompt_key(self) -> str:
        return f"llm-attributes:{self.attributes.fingerprint[:16]}:{_digest(self.attributes.prompt_key, self.template, self.plain)[:12]}"

    def attach_label_bank(self, label_bank: LabelBank | None) -> None:
        """Store the LLM's attributes in ``label_bank`` (the classifier's; called by :func:`openvocab.load`)."""
        if label_bank is not None:
            self.attributes.label_bank = label_bank

    def prompts(self, labels: Sequence[str], *, progress: Callable[[int, int], None] | None = None) -> dict[str, list[str]]:
        """``label -> CLIP prompts`` (generating missing attributes); warns once per label that falls back."""
        found = self.attributes.get(labels, device=self.tower.device, progress=progress)
        out: dict[str, list[str]] = {}
        for label in dict.fromkeys(labels):
            attrs = found[label].attributes
            if not attrs:
                plain = self.plain.replace("{label}", label)
                log.warning("the LLM gave no usable attributes for '%s' (answer: %r); using the plain prompt '%s'", label, found[label].raw[:80], plain)
            out[label] = attribute_prompts(label, attrs, template=self.template, plain=self.plain)
        return out

    def encode(self, labels: Sequence[str], *, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Unit rows ``(N, D)`` float32 on the CPU: the mean of each label's normalised prompt embeddings, normalised.
        ``progress(done, total)`` counts the LLM's answers (labels not stored yet), then the CLIP prompts encoded."""
        labels = list(labels)
        if not labels:
            raise InputError("no labels to encode")
        by_label = self.prompts(labels, progress=progress)
        flat = [p for label in labels for p in by_label[label]]
        owner = torch.as_tensor([i for i, label in enumerate(labels) for _ in by_label[label]])
        if progress is None:
            per_prompt, truncated = self.tower.encode_prompts(flat)
        else:
            per_prompt, truncated = self.tower.encode_prompts(flat, progress=progress)
        for i in truncated:
            log.warning("the CLIP prompt '%s…' is longer than the text encoder's context; it was truncated", flat[i][:60])
        per_prompt = torch.nn.functional.normalize(per_prompt.float(), dim=-1)
        sums = torch.zeros(len(labels), per_prompt.shape[1]).index_add_(0, owner, per_prompt)
        return torch.nn.functional.normalize(sums / torch.bincount(owner, minlength=len(labels))[:, None], dim=-1)

    def __repr__(self) -> str:
        return f"LlmAttributeEncoder({getattr(self.tower, 'source', '?')!r}, llm={self.attributes.source!r})"
