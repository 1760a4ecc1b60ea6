"""Prompt templates and label lists: turning a user's vocabulary into sentences for the text encoder.

MOV §3.1 (Qian et al., "Multimodal Open-Vocabulary Video Classification via Pre-Trained Vision and Language
Models") fills each class name into the "28 video classification prompts provided by CLIP" and averages the
embeddings over templates (see :mod:`openvocab.text.ensemble`). Text4Vis (Wu et al., appendix, Table A.4) compares
that ensemble with a single hard template, "a video of a person {class name}.", and with the bare class name;
:func:`prompt_set` offers the three modes.

Labels arrive from the command line (:func:`parse_labels_arg`), from files (:func:`read_labels_file`) or from
dataset class lists (:func:`normalise_class_name` turns ``ApplyEyeMakeup`` into ``apply eye makeup``), and are
cleaned once by :func:`clean_labels`; the cleaned string is the key of the label bank.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from openvocab.errors import InputError

__all__ = [
    "DEFAULT_SINGLE_TEMPLATE",
    "KINETICS_TEMPLATES",
    "PromptSet",
    "build_prompts",
    "class_name_key",
    "clean_labels",
    "load_templates_file",
    "normalise_class_name",
    "parse_labels_arg",
    "prompt_set",
    "read_labels_file",
]

_PREFIXES = ("a photo of", "a video of", "a example of", "a demonstration of")  # "a example" is CLIP's own text
_SUFFIXES = ("{}.", "a person {}.", "a person using {}.", "a person doing {}.", "a person during {}.", "a person performing {}.", "a person practicing {}.")

#: CLIP's 28 Kinetics-700 prompt templates (OpenAI CLIP repository, ``data/prompts.md``, Kinetics700 section), used
#: by MOV §3.1 and Text4Vis Table A.4, in CLIP's order.
KINETICS_TEMPLATES: tuple[str, ...] = tuple(f"{prefix} {suffix}" for prefix in _PREFIXES for suffix in _SUFFIXES)

#: The single hard template of Text4Vis (appendix, "Text input forms"); it is one of the 28 above.
DEFAULT_SINGLE_TEMPLATE = "a video of a person {}."

PromptMode = Literal["ensemble", "single", "classname"]


def _check_template(template: str, *, where: str | None = None) -> str:
    if not isinstance(template, str) or template.count("{}") != 1:
        raise InputError(f"prompt template {template!r} must contain exactly one '{{}}' where the label goes", path=where)
    return template


@dataclass(frozen=True)
class PromptSet:
    """A named tuple of templates, each with exactly one ``{}`` that the label replaces.

    ``key`` identifies the templates in the label bank: the name plus the first 12 hex digits of the SHA-256 of the
    newline-joined templates, so editing a template file invalidates its cached embeddings.
    """

    name: str
    templates: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.templates, str) or not self.templates:
            raise InputError(f"prompt set '{self.name}' has no templates")
        object.__setattr__(self, "templates", tuple(self.templates))
        for template in self.templates:
            _check_template(template)

    @property
    def key(self) -> str:
        digest = hashlib.sha256("\n".join(self.templates).encode("utf-8")).hexdigest()[:12]
        return f"{self.name}:{digest}"

    def __len__(self) -> int:
        return len(self.templates)

    def fill(self, label: str) -> list[str]:
        """The prompts for one label, one per template (plain substitution: braces in labels are safe)."""
        return [template.replace("{}", label, 1) for template in self.templates]


def build_prompts(labels: Iterable[str], prompts: PromptSet) -> list[str]:
    """All prompts for ``labels``, label-major: label 0's P prompts, then label 1's, ... (L*P strings).

    This is the layout :func:`openvocab.text.ensemble.ensemble_text_embeddings` expects.
    """
    return [text for label in labels for text in prompts.fill(label)]


def prompt_set(mode: PromptMode = "ensemble", *, template: str | None = None) -> PromptSet:
    """The prompt set for a mode.

    - ``"ensemble"``: CLIP's 28 Kinetics templates, averaged per label (MOV §3.1; CLIP's zero-shot protocol).
    - ``"single"``: one template, by default :data:`DEFAULT_SINGLE_TEMPLATE` (Text4Vis' single hard template), or
      ``template`` (which must contain exactly one ``{}``).
    - ``"classname"``: the bare label, ``"{}"``.
    """
    if mode == "ensemble":
        if template is not None:
            raise InputError("a custom template only applies to the 'single' prompt mode")
        return PromptSet("kinetics28", KINETICS_TEMPLATES)
    if mode == "single":
        if template is None:
            return PromptSet("single", (DEFAULT_SINGLE_TEMPLATE,))
        return PromptSet("single", (_check_template(template.strip()),))
    if mode == "classname":
        if template is not None:
            raise InputError("a custom template only applies to the 'single' prompt mode")
        return PromptSet("classname", ("{}",))
    raise InputError(f"unknown prompt mode {mode!r}; choose ensemble, single or classname")


def read_text_file(path: str | os.PathLike[str], *, what: str) -> str:
    """A UTF-8 (BOM tolerated) text file, or one :class:`InputError` line naming the path and ``what`` it is."""
    file = Path(path).expanduser()
    try:
        return file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{what} not found", path=file) from None
    except IsADirectoryError:
        raise InputError(f"is a directory, expected a {what}", path=file) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} is not valid UTF-8 (byte {exc.start})", path=file) from None
    except OSError as exc:
        raise InputError(f"cannot read {what} ({exc.strerror or exc})", path=file) from None


def _content_lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped line) for non-blank lines that do not start with '#'."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            out.append((number, stripped))
    return out


def load_templates_file(path: str | Path) -> PromptSet:
    """A user's own template ensemble: one template per line with one ``{}``; blank lines and ``#`` lines ignored.

    The prompt set is named after the file stem (its key also hashes the templates).
    """
    file = Path(path).expanduser()
    lines = _content_lines(read_text_file(file, what="templates file"))
    if not lines:
        raise InputError("templates file has no templates", path=file)
    for number, template in lines:
        _check_template(template, where=f"{file}:{number}")
    return PromptSet(file.stem or "templates", tuple(template for _, template in lines))


def clean_labels(labels: Iterable[str], *, source: str | Path | None = None) -> tuple[list[str], list[str]]:
    """Normalise a label list: strip, collapse inner whitespace, drop empties, drop case-insensitive duplicates.

    The first spelling of a duplicate is kept. Case and unicode are preserved (the tokenizer lowercases anyway, and
    other text encoders may be cased); text that is not valid UTF-8 is refused. Returns ``(labels, warnings)``; raises :class:`InputError` naming ``source``
    when nothing remains.
    """
    if isinstance(labels, str):
        labels = [labels]
    cleaned: list[str] = []
    warnings: list[str] = []
    seen: dict[str, str] = {}
    for raw in labels:
        label = " ".join(str(raw).split())
        if not label:
            continue
        try:
            label.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 (a shell's $'\233'): Python keeps them as lone surrogates
            raise InputError(f"label {label!r} is not valid UTF-8 text", path=source) from None
        folded = label.casefold()
        if folded in seen:
            warnings.append(f"duplicate label '{label}' ignored")
            continue
        seen[folded] = label
        cleaned.append(label)
    if not cleaned:
        raise InputError("empty label list", path=source)
    return cleaned, warnings


def parse_labels_text(text: str) -> list[str]:
    """Labels typed or pasted as text (the web page's labels box): one label per line, blank lines and ``#`` lines
    skipped as in a labels file (:func:`read_labels_file`); text of one line is a comma-separated list
    (:func:`parse_labels_arg`). Whitespace is collapsed; duplicates are left for :func:`clean_labels`. Returns ``[]``
    for text with no label (the caller says what is missing)."""
    lines = [" ".join(line.split()) for _, line in _content_lines(text)]
    if len(lines) == 1:
        lines = [" ".join(part.split()) for part in lines[0].split(",")]
    return [line for line in lines if line]


def parse_labels_arg(text: str) -> list[str]:
    """Split a command-line label list on commas: ``"playing guitar, yoga"`` -> ``["playing guitar", "yoga"]``.

    Commas always split (there is no quoting); labels that contain commas belong in a file
    (:func:`read_labels_file`). Whitespace is collapsed and empty items dropped (nothing left ->
    :class:`InputError`); duplicates are left for :func:`clean_labels`, which reports them.
    """
    labels = [" ".join(part.split()) for part in text.split(",")]
    labels = [label for label in labels if label]
    if not labels:
        raise InputError(f"empty label list in {text!r}")
    return labels


_CSV_COLUMNS = ("label", "name", "class", "class_name", "classname")


def read_labels_file(path: str | Path) -> list[str]:
    """Read a label list: UTF-8 text with one label per line (blank lines and lines starting with ``#`` ignored),
    a ``.csv`` with a header column named label/name/class (first match, case-insensitive; repeated rows such as
    the per-video rows of a Kinetics annotation CSV are collapsed), or a ``.json`` list of strings (or
    ``{"labels": [...]}``). Returns the labels stripped, in file order; pass them through :func:`clean_labels`.
    Unreadable or empty files raise :class:`InputError` naming the path.
    """
    file = Path(path).expanduser()
    text = read_text_file(file, what="labels file")
    suffix = file.suffix.lower()
    if suffix == ".json":
        labels = _labels_from_json(text, file)
    elif suffix == ".csv":
        labels = _labels_from_csv(text, file)
    else:
        labels = [line for _, line in _content_lines(text)]
    labels = [" ".join(label.split()) for label in labels]
    labels = [label for label in labels if label]
    if not labels:
        raise InputError("empty label list", path=file)
    return labels


def _labels_from_json(text: str, file: Path) -> list[str]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"not valid JSON ({exc})", path=file) from None
    if isinstance(data, dict) and "labels" in data:
        data = data["labels"]
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise InputError('JSON labels must be a list of strings or {"labels": [...]}', path=file)
    return list(data)


def _labels_from_csv(text: str, file: Path) -> list[str]:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise InputError(f"not a readable CSV ({exc})", path=file) from None
    if not rows:
        raise InputError("empty label list", path=file)
    header = [cell.strip().lower() for cell in rows[0]]
    column = next((header.index(name) for name in _CSV_COLUMNS if name in header), None)
    if column is None:
        raise InputError(f"CSV has no label/name/class column (columns: {', '.join(rows[0]) or 'none'})", path=file)
    labels: dict[str, None] = {}
    for row in rows[1:]:
        if column < len(row) and row[column].strip():
            labels.setdefault(row[column].strip(), None)
    return list(labels)


# Split before an upper-case letter that follows a lower-case one (eyeMakeup), before the last capital of an acronym
# run (HTMLParser) and between digits and a following capitalised word (Top10Songs); never inside 3D or mp3.
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[0-9])(?=[A-Z][a-z])")


def normalise_class_name(name: str) -> str:
    """Turn a dataset identifier into words for the text encoder.

    Identifier-like names (no spaces) are split at underscores and CamelCase boundaries and lowercased:
    ``ApplyEyeMakeup`` -> ``apply eye makeup``, ``brush_hair`` -> ``brush hair``, ``YoYo`` -> ``yo yo``,
    ``HTMLParser`` -> ``html parser``. Digits stay attached to the letters before them so tokens such as ``mp3``,
    ``3D`` or a class index survive: ``Skiing2`` -> ``skiing2``, ``3DPrinting`` -> ``3d printing``. Names that already
    contain spaces (``playing guitar``, ``Playing Guitar``) are natural text and only have whitespace collapsed.
    Hyphens are kept (``hula-hoop`` is a word).
    """
    collapsed = " ".join(name.split())
    if " " in collapsed:
        return collapsed
    parts = [piece for piece in collapsed.split("_") if piece]
    words = [word for piece in parts for word in _CAMEL.split(piece) if word]
    return " ".join(words).lower()


def class_name_key(name: object) -> str:
    """The key under which two spellings of a class name are the same class: :func:`normalise_class_name`, then
    case-folded. ``ApplyEyeMakeup``, ``apply eye makeup``, ``Apply_Eye_Makeup`` and ``Apply  Eye Makeup`` share one
    key. Used wherever names from different sources are matched (manifests against a vocabulary, split files
    against class lists); :func:`normalise_class_name` itself keeps the case of natural text for the prompts.
    """
    return normalise_class_name(str(name)).casefold()


PROMPT_MODES = ("ensemble", "single", "classname")


def resolve_prompts(prompts: str | PromptSet | None = None, *, template: str | None = None, default: str = "ensemble") -> PromptSet:
    """THE prompt rule of openvocab (classify, labels, train, evaluate, features all use it).

    ``prompts`` is a :class:`PromptSet`, one of :data:`PROMPT_MODES` (``template`` applies to ``"single"``), or the
    path of a templates file (one template a line with one ``{}``; see :func:`load_templates_file`); ``None`` means
    ``default``. Anything else is refused in one line.
    """
    if isinstance(prompts, PromptSet):
        return prompts
    name = default if prompts is None else str(prompts)
    if name in PROMPT_MODES:
        return prompt_set(name, template=template)  # type: ignore[arg-type]
    if template is not None:
        raise InputError("--template only applies to --prompts single")
    if not Path(name).expanduser().is_file():
        raise InputError(f"--prompts must be one of {', '.join(PROMPT_MODES)} or a templates file, got '{name}' (no such file)")
    return load_templates_file(Path(name).expanduser())
