"""The models a server holds, by name (issue 10 part 1): ``--model M`` or ``--model name=M``, the first the default.

Models are loaded by the library's one loader (:func:`openvocab.load`); a :class:`ServedModel` adds the name, where it
came from, and a lock around its text tower: a fast tokenizer must not be called from two threads at once, so label
encoding of one model is serialised while video work runs in parallel (``--workers``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openvocab.errors import InputError, OpenVocabError

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass
class ServedModel:
    """A loaded :class:`~openvocab.classifier.VideoClassifier` under ``name`` (``source``: the hub id, directory or
    run it was loaded from)."""

    name: str
    classifier: Any
    source: str = ""
    text_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def info(self, *, default: bool) -> dict:
        """The ``GET /models`` entry: modalities, open vocabulary and the multi-label calibration in use."""
        clf = self.classifier
        try:
            cal = clf.calibration
            multi = {"calibrated": bool(cal.fitted), "threshold": float(cal.threshold), "source": str(cal.source)}
        except OpenVocabError as exc:  # a broken calibration.json: multi-label requests will say so too
            multi = {"calibrated": False, "threshold": 0.5, "source": f"unusable: {exc}"}
        return {
            "name": self.name,
            "source": self.source,
            "default": default,
            "modalities": list(clf.inputs.modalities),
            "open_vocabulary": bool(clf.label_encoder.open_vocabulary),
            "multi_label": multi,
        }

    def cached_labels(self) -> list[str]:
        """The labels the label bank holds for this model's label encoder and prompt set (a closed-set model: its
        classes)."""
        clf = self.classifier
        encoder = clf.label_encoder
        if not encoder.open_vocabulary:
            return list(clf.class_names)
        if clf.label_bank is None:
            return []
        return [r.label for r in clf.label_bank.list(fingerprint=encoder.fingerprint, prompt_key=encoder.prompt_key)]


def name_from_source(source: str) -> str:
    """A model name from where it comes from: the last path component of a directory or hub id
    (``openai/clip-vit-base-patch32`` -> ``clip-vit-base-patch32``, ``random:tiny`` -> ``random-tiny``)."""
    text = str(source).rstrip("/\\")
    base = re.split(r"[/\\]", text)[-1] if text else ""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-.") or "model"
    return name[:64] if name[0].isalnum() else ("m" + name)[:64]


def parse_model_specs(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``["M", "name=M2"]`` -> ``[(name, source), ...]``: ``name=source`` when the text before the first ``=`` is a
    valid name and the whole text is not an existing path; otherwise a name from :func:`name_from_source`. Duplicate
    names are an :class:`InputError`."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        name, sep, source = spec.partition("=")
        if not (sep and MODEL_NAME.fullmatch(name) and source and not Path(spec).expanduser().exists()):
            name, source = name_from_source(spec), spec
        if any(name == n for n, _ in out):
            raise InputError(f"--model: two models named '{name}'; name them with --model NAME=MODEL")
        out.append((name, source))
    if not out:
        raise InputError("no model to serve: give --model MODEL")
    return out


def load_models(specs: Sequence[str], *, device: str = "cpu", label_bank: str | Path | bool = True) -> list[ServedModel]:
    """Load every ``--model`` with :func:`openvocab.load` (the first is the default)."""
    import openvocab

    return [
        ServedModel(name=name, classifier=openvocab.load(source, device=device, label_bank=label_bank), source=source)
        for name, source in parse_model_specs(specs)
    ]


def served_models(models: Mapping[str, Any] | Sequence[ServedModel]) -> list[ServedModel]:
    """``{name: classifier}`` (first = default) or :class:`ServedModel` s, checked: at least one, valid unique names."""
    if isinstance(models, Mapping):
        items = [ServedModel(name=str(n), classifier=c, source=str(getattr(c.recognizer, "source", "") or "")) for n, c in models.items()]
    else:
        items = list(models)
    if not items:
        raise ValueError("create_app needs at least one model")
    seen: set[str] = set()
    for m in items:
        if not MODEL_NAME.fullmatch(m.name) or m.name in seen:
            raise ValueError(f"bad or repeated model name {m.name!r} (letters, digits, '_', '.', '-'; at most 64)")
        seen.add(m.name)
    return items
