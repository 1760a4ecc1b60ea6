"""Calibrated multi-label scores: ``p = σ(a·cos + b)`` and one decision threshold ``t`` (multi-label paper §3.3, §4.6).

A model's multi-label score of a (video, label) pair is an independent sigmoid of the cosine of their embeddings.
A :class:`Calibration` holds its scale ``a``, bias ``b`` and threshold ``t``, where they come from (``source``) and,
for a fitted one, what it was fitted on (per dataset: videos, classes, AUPR, peak F1 and the F1 at ``t``).
``openvocab calibrate`` fits one (:mod:`openvocab.eval.calibrate`: Platt scaling of ``(a, b)`` by logistic
regression over all video-label pairs, then the threshold maximising the MINIMUM F1 over the datasets, §4.6) and
saves it as ``calibration.json`` in a training run directory (or anywhere with ``--save``).

Without a saved calibration (:func:`default_calibration`):

* a run trained with the multi-label loss (``HeadSpec.multi_label``, Eq. 2, ``p = σ(s/τ)``): ``a`` is the head's
  ``logit_scale`` (``1/τ``), ``b = 0``, ``t = 0.5`` -- the loss's own probabilities, threshold uncalibrated;
* anything else (zero-shot CLIP, single-label runs): the UNCALIBRATED HEURISTIC ``a = logit_scale``,
  ``b = −0.25·logit_scale`` (for released CLIP models a matching video-text pair has cosine ≈ 0.3, a non-matching one
  ≈ 0.2), ``t = 0.5``. This is the only place that heuristic lives.

The JSON file (``format: openvocab-calibration``, ``version: 1``)::

    {"format": "openvocab-calibration", "version": 1,
     "scale": 61.2, "bias": -17.9, "threshold": 0.37,
     "source": "Platt scaling + max-min-F1 threshold on 2 datasets (openvocab calibrate)",
     "model": "runs/multilabel", "created": "2025-01-01T12:00:00Z", "frames": 8, "views": "1x1",
     "datasets": [{"name": "anet_val.csv", "videos": 400, "classes": 200, "positives": 520,
                   "aupr": 0.61, "peak_f1": 0.63, "peak_threshold": 0.41, "f1": 0.60}, ...]}

Written atomically; a missing or malformed file is one :class:`~openvocab.errors.InputError` line naming it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from openvocab.errors import InputError

__all__ = [
    "CALIBRATION_FILE",
    "Calibration",
    "DatasetFit",
    "UNCALIBRATED_COSINE_OFFSET",
    "calibration_of",
    "default_calibration",
    "saved_calibration_path",
]

#: The file name of a model's calibration inside its run (or model) directory.
CALIBRATION_FILE = "calibration.json"
FORMAT = "openvocab-calibration"
VERSION = 1
#: The uncalibrated heuristic for models not trained multi-label: ``b = −0.25·logit_scale`` (module docstring).
UNCALIBRATED_COSINE_OFFSET = 0.25
SOURCE_TRAINED = "trained with the multi-label loss (Eq. 2), uncalibrated threshold"
SOURCE_HEURISTIC = "uncalibrated default: run openvocab calibrate"


@dataclass(frozen=True)
class DatasetFit:
    """How a calibration does on one dataset it was fitted on (scores ``σ(a·cos + b)`` averaged over views)."""

    name: str
    videos: int
    classes: int
    positives: int  # positive video-label pairs
    aupr: float  # micro AUPR over all video-label pairs (§4.4)
    peak_f1: float  # F1 at the oracle threshold of this dataset (§4.4)
    peak_threshold: float
    f1: float  # F1 at the calibration's threshold


@dataclass(frozen=True)
class Calibration:
    """Multi-label scoring of a model: ``p = σ(scale·cos + bias)``, predicted when ``p >= threshold``."""

    scale: float
    bias: float
    threshold: float = 0.5
    source: str = SOURCE_HEURISTIC
    model: str | None = None
    created: str | None = None  # ISO 8601, UTC
    frames: int | None = None
    views: str | None = None
    datasets: tuple[DatasetFit, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("scale", "bias", "threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.scale < 0:
            raise ValueError(f"scale must be >= 0 (a higher cosine must not mean a less likely label), got {self.scale:g}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold:g}")
        object.__setattr__(self, "datasets", tuple(self.datasets))

    @property
    def fitted(self) -> bool:
        """Whether it was fitted on labelled data (``openvocab calibrate``), not a default."""
        return bool(self.datasets)

    def with_threshold(self, threshold: float) -> Calibration:
        return replace(self, threshold=float(threshold))

    def summary(self) -> dict:
        """What a result shows of the calibration applied: source, scale, bias and its threshold."""
        return {"source": self.source, "scale": self.scale, "bias": self.bias, "threshold": self.threshold}

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        out = {"format": FORMAT, "version": VERSION, **asdict(self)}
        out["datasets"] = [asdict(d) for d in self.datasets]
        return out

    @classmethod
    def from_dict(cls, data: object, *, where: str | Path | None = None) -> Calibration:
        """Validate and build; anything malformed is one :class:`InputError` naming ``where``."""

        def bad(why: str) -> InputError:
            return InputError(f"not a valid calibration file: {why}", path=where)

        if not isinstance(data, dict):
            raise bad("expected a JSON object")
        if data.get("format", FORMAT) != FORMAT:
            raise bad(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        version = data.get("version", VERSION)
        if not isinstance(version, int) or version > VERSION:
            raise bad(f"version {version!r} is newer than this openvocab reads ({VERSION})")
        missing = [k for k in ("scale", "bias", "threshold") if k not in data]
        if missing:
            raise bad(f"missing {', '.join(missing)}")
        try:
            datasets = tuple(DatasetFit(**d) for d in data.get("datasets") or ())
            return cls(
                scale=data["scale"],
                bias=data["bias"],
                threshold=data["threshold"],
                source=str(data.get("source") or "calibration file"),
                model=data.get("model"),
                created=data.get("created"),
                frames=data.get("frames"),
                views=data.get("views"),
                datasets=datasets,
            )
        except (TypeError, ValueError) as exc:
            raise bad(str(exc).splitlines()[0]) from None

    @classmethod
    def read(cls, path: str | os.PathLike) -> Calibration:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / CALIBRATION_FILE
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError("no such calibration file", path=p) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"unreadable calibration file ({getattr(exc, 'strerror', None) or exc})", path=p) from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"not a valid calibration file: not JSON ({exc})", path=p) from None
        return cls.from_dict(data, where=p)

    def write(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file, fsync, rename); a directory gets ``calibration.json`` inside it."""
        from openvocab.atomic import atomic_write

        p = Path(path).expanduser()
        if p.is_dir():
            p = p / CALIBRATION_FILE
        try:
            atomic_write(p, json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise InputError(f"cannot write the calibration ({exc.strerror or exc})", path=p) from None
        return p


def now_utc() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def default_calibration(*, logit_scale: float, trained_multi_label: bool) -> Calibration:
    """A model's calibration when none is saved (module docstring): the loss's own ``σ(s/τ)`` for a run trained
    multi-label, else the uncalibrated heuristic."""
    scale = float(logit_scale)
    if trained_multi_label:
        return Calibration(scale=scale, bias=0.0, threshold=0.5, source=SOURCE_TRAINED)
    return Calibration(scale=scale, bias=-UNCALIBRATED_COSINE_OFFSET * scale, threshold=0.5, source=SOURCE_HEURISTIC)


def saved_calibration_path(model_source: str | os.PathLike | None) -> Path | None:
    """``<dir>/calibration.json`` when ``model_source`` is a local directory (a run or a model directory), else ``None``."""
    if not model_source:
        return None
    try:
        p = Path(model_source).expanduser()
        return p / CALIBRATION_FILE if p.is_dir() else None
    except (OSError, ValueError):
        return None


def calibration_of(recognizer, path: str | os.PathLike | None = None) -> Calibration:
    """The calibration a recogniser's multi-label scores use: the file at ``path`` when given, else the one saved in
    its run / model directory, else :func:`default_calibration` (from ``recognizer.logit_scale`` and
    ``recognizer.spec.head.multi_label``)."""
    if path is not None:
        return Calibration.read(path)
    saved = saved_calibration_path(getattr(recognizer, "run_dir", None) or getattr(recognizer, "source", None))
    if saved is not None and saved.is_file():
        return Calibration.read(saved)
    head = getattr(getattr(recognizer, "spec", None), "head", None)
    return default_calibration(logit_scale=recognizer.logit_scale, trained_multi_label=bool(getattr(head, "multi_label", False)))
