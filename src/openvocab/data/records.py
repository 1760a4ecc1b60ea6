"""The records of a dataset list and the helpers every reader shares.

:class:`VideoRecord` (a path, class indices, an optional time window, the source line, optional labelled
:class:`Segment` s), :class:`RowProblem` (a skipped row: file, 1-based line, one-line reason, kind) and
:class:`Manifest` (records, class vocabulary, problems, source name). Readers live in :mod:`openvocab.data.manifests` (generic CSV/JSONL) and
:mod:`openvocab.data.official` (Kinetics, UCF101, HMDB51).

Problem kinds (counted by :meth:`Manifest.summary`): ``malformed row``, ``empty path``, ``missing label``,
``unknown label``, ``bad time range``, ``missing file``. Every problem means its row was skipped.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from openvocab.errors import InputError
from openvocab.io.discover import IMAGE_SUFFIXES
from openvocab.text.prompts import normalise_class_name, read_labels_file, read_text_file  # noqa: F401 - read_text_file is re-exported for the readers

__all__ = [
    "LabelCollector",
    "Manifest",
    "RowProblem",
    "Segment",
    "VideoRecord",
    "Vocabulary",
    "check_window",
    "is_video_path",
    "parse_time",
    "read_text_file",
    "resolve_vocabulary",
    "split_labels",
]

MALFORMED = "malformed row"
EMPTY_PATH = "empty path"
MISSING_LABEL = "missing label"
UNKNOWN_LABEL = "unknown label"
BAD_TIME = "bad time range"
MISSING_FILE = "missing file"

_LABEL_SEPARATORS = ("|", ";")


@dataclass(frozen=True)
class Segment:
    """A labelled time span inside a video: ``start_s`` < ``end_s`` in seconds of the FILE (the same clock as
    :attr:`VideoRecord.start_s`), ``labels`` class indices into :attr:`Manifest.classes` (at least one)."""

    start_s: float
    end_s: float
    labels: tuple[int, ...]


@dataclass(frozen=True)
class VideoRecord:
    """One video of a manifest.

    ``path``: a video file or a folder of frame images (absolute unless the reader was told not to check files).
    ``labels``: class indices into :attr:`Manifest.classes` (one for single-label data, several for multi-label,
    none for unlabelled test lists). ``start_s``/``end_s``: the labelled window inside the file, when the file is
    longer than the clip. ``row``: the 1-based line of the source file, for messages. ``segments``: optional
    labelled spans inside the video (JSONL ``segments``, ActivityNet ``mode="videos"``), in source order; a
    record's ``labels`` include every segment's labels. Empty for most readers (added last, so positional
    constructors and pickled records of older code keep working).
    """

    path: str
    labels: tuple[int, ...]
    start_s: float | None = None
    end_s: float | None = None
    row: int | None = None
    segments: tuple[Segment, ...] = ()

    @property
    def label(self) -> int:
        """The single class index of a single-label record (raises ``ValueError`` otherwise)."""
        if len(self.labels) != 1:
            raise ValueError(f"{self.path} has {len(self.labels)} labels, not exactly one")
        return self.labels[0]


@dataclass(frozen=True)
class RowProblem:
    """A skipped row: ``source`` file, 1-based ``row`` (None for file-level notes), one-line ``message`` and the
    problem ``kind`` that :meth:`Manifest.summary` counts."""

    source: str
    row: int | None
    message: str
    kind: str = MALFORMED

    def __str__(self) -> str:
        where = self.source if self.row is None else f"{self.source}:{self.row}"
        return f"{where}: {self.message}"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _problem_counts(problems: Sequence[RowProblem]) -> str:
    counts = Counter(p.kind for p in problems)
    return ", ".join(_plural(n, kind) for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class Manifest:
    """Records, the class vocabulary (index -> raw class name), the skipped rows and a source name."""

    records: list[VideoRecord]
    classes: list[str]
    problems: list[RowProblem] = field(default_factory=list)
    source: str = "manifest"

    def __len__(self) -> int:
        return len(self.records)

    def class_names(self, *, normalised: bool = True) -> list[str]:
        """Class names in index order; ``normalised`` turns identifiers into prompt-ready words
        (``ApplyEyeMakeup`` -> ``apply eye makeup``, ``brush_hair`` -> ``brush hair``) with
        :func:`~openvocab.text.prompts.normalise_class_name`."""
        return [normalise_class_name(c) for c in self.classes] if normalised else list(self.classes)

    def class_counts(self) -> list[int]:
        """Number of records (videos) carrying each class, in class index order; a multi-label record counts once
        for each of its distinct classes, so the counts may sum to more than ``len(self)``."""
        counts = [0] * len(self.classes)
        for record in self.records:
            for label in set(record.labels):
                counts[label] += 1
        return counts

    def labels_per_video(self) -> float:
        """Mean number of distinct labels per record (multi-label §K.1 Table 14's "# Labels/Video"); 0.0 when empty."""
        return sum(len(set(r.labels)) for r in self.records) / len(self.records) if self.records else 0.0

    def summary(self) -> str:
        """One line: ``"ucf101 trainlist01: 9,537 videos, 101 classes, 3 rows skipped (2 missing files, 1 unknown
        label)"``."""
        text = f"{self.source}: {_plural(len(self.records), 'video')}, {_plural(len(self.classes), 'class')}"
        text = text.replace(" classs", " classes")
        if self.problems:
            text += f", {_plural(len(self.problems), 'row')} skipped ({_problem_counts(self.problems)})"
        return text

    def subset(self, class_indices: Iterable[int], *, partial: str = "keep") -> Manifest:
        """The records restricted to the classes ``class_indices``, re-indexed to that order (new index ``j`` is old
        class ``class_indices[j]``). For base/novel splits and the half-class protocol (Text4Vis §4.2: evaluate on a
        random half of the classes, repeated).

        A multi-label record with labels both inside and outside the subset: ``partial="keep"`` (the default) keeps
        it with the labels inside (the open-vocabulary multi-label convention: a video keeps its known labels, the
        others are simply not in this vocabulary); ``partial="drop"`` drops it (only records whose labels ALL lie in
        the subset survive; the behaviour before multi-label support). Single-label records are the same either
        way. Records left without labels (and unlabelled records) are dropped; segments keep their labels inside
        the subset and are dropped when none remain. Problems are kept.
        """
        if partial not in ("keep", "drop"):
            raise InputError(f"subset of {self.source}: partial must be 'keep' or 'drop', got {partial!r}")
        chosen = [int(i) for i in class_indices]
        if len(set(chosen)) != len(chosen):
            raise InputError(f"subset of {self.source}: class indices repeat")
        bad = [i for i in chosen if not 0 <= i < len(self.classes)]
        if bad:
            raise InputError(f"subset of {self.source}: class index {bad[0]} out of range 0..{len(self.classes) - 1}")
        remap = {old: new for new, old in enumerate(chosen)}
        records = []
        for r in self.records:
            if partial == "drop" and not all(i in remap for i in r.labels):
                continue
            kept = remap_record(r, remap)
            if kept is not None:
                records.append(kept)
        return Manifest(records, [self.classes[i] for i in chosen], list(self.problems), self.source)

    def require_nonempty(self) -> Manifest:
        """Return ``self``, or raise :class:`InputError` ``"no usable videos in <source> (N rows skipped: ...)"``
        (naming the first problem) when no record survived."""
        if self.records:
            return self
        if not self.problems:
            raise InputError(f"no usable videos in {self.source} (it lists none)")
        raise InputError(
            f"no usable videos in {self.source} ({_plural(len(self.problems), 'row')} skipped: {_problem_counts(self.problems)}; first: {self.problems[0]})"
        )


# --------------------------------------------------------------------------------------------------- shared helpers
def remap_record(record: VideoRecord, remap: dict[int, int]) -> VideoRecord | None:
    """``record`` with its labels (and its segments' labels) mapped through ``remap`` (old index -> new index);
    labels missing from ``remap`` are dropped, segments left without labels are dropped, and a record left
    without labels is None. Label order is kept as the records give it (the readers' sorted order)."""
    labels = tuple(dict.fromkeys(remap[i] for i in record.labels if i in remap))
    if not labels:
        return None
    segments = []
    for segment in record.segments:
        seg_labels = tuple(dict.fromkeys(remap[i] for i in segment.labels if i in remap))
        if seg_labels:
            segments.append(Segment(segment.start_s, segment.end_s, seg_labels))
    return VideoRecord(record.path, labels, record.start_s, record.end_s, record.row, tuple(segments))


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """True for an existing file, or a directory holding at least one frame image (a frame-folder video)."""
    try:
        if os.path.isfile(path):
            return True
        if not os.path.isdir(path):
            return False
        with os.scandir(path) as it:
            return any(not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES for e in it)
    except OSError:
        return False


def parse_time(value: object) -> float | None:
    """A start/end time in seconds: None for an empty cell, a finite float >= 0, else ``ValueError``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time in seconds")
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer too large for a float
        raise ValueError(f"{str(value)[:20]!r} is not a time in seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a time >= 0 s")
    return seconds


def check_window(start: float | None, end: float | None) -> None:
    """``ValueError`` unless ``end > start`` (when both are given)."""
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end {end:g} s is not after start {start:g} s")


def _label_key(name: str) -> str:
    return normalise_class_name(name).casefold()


class Vocabulary:
    """Class-name lookup: exact spelling first, then the normalised, case-folded form (so ``ApplyEyeMakeup``,
    ``apply eye makeup`` and ``Apply_Eye_Makeup`` are the same class)."""

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = list(classes)
        self._exact = {c: i for i, c in enumerate(self.classes)}
        self._loose: dict[str, int] = {}
        for i, c in enumerate(self.classes):
            self._loose.setdefault(_label_key(c), i)

    def __len__(self) -> int:
        return len(self.classes)

    def get(self, name: str) -> int | None:
        """The class index of ``name``, or None."""
        hit = self._exact.get(name)
        return hit if hit is not None else self._loose.get(_label_key(name))


def resolve_vocabulary(classes: Sequence[str] | str | os.PathLike[str] | None, *, where: str) -> list[str] | None:
    """A fixed class list from a sequence of names or a labels file (:func:`read_labels_file`); None stays None.
    Empty or duplicated (after normalisation) vocabularies raise :class:`InputError`."""
    if classes is None:
        return None
    names = read_labels_file(classes) if isinstance(classes, (str, os.PathLike)) else [str(c) for c in classes]
    names = [" ".join(n.split()) for n in names]
    if not names or not all(names):
        raise InputError(f"class vocabulary for {where} is empty or has blank names")
    seen: dict[str, str] = {}
    for name in names:
        key = _label_key(name)
        if key in seen:
            raise InputError(f"class vocabulary for {where} lists '{name}' twice (as '{seen[key]}')")
        seen[key] = name
    return names


class LabelCollector:
    """Maps label strings to indices for a reader: a fixed vocabulary (unknown names are problems), or an open one
    collecting every name seen, re-indexed in SORTED order at the end so indices never depend on row order."""

    def __init__(self, fixed: list[str] | None) -> None:
        self.fixed = None if fixed is None else Vocabulary(fixed)
        self.seen: dict[str, None] = {}

    def lookup(self, names: Sequence[str]) -> tuple[list[int | str] | None, str | None]:
        """Per name: the fixed index, or the name itself (open vocabulary); or (None, reason) for unknown names
        (``"unknown label 'x'"``, or ``"unknown labels 'x', 'y'"`` naming every one). Nothing is collected from a
        list with an unknown name."""
        if self.fixed is None:
            for name in names:
                self.seen.setdefault(name, None)
            return list(names), None
        out: list[int | str] = []
        unknown: list[str] = []
        for name in names:
            index = self.fixed.get(name)
            if index is None:
                unknown.append(name)
            else:
                out.append(index)
        if unknown:
            unknown = list(dict.fromkeys(unknown))
            quoted = ", ".join(f"'{n}'" for n in unknown)
            return None, f"unknown label{'s' if len(unknown) > 1 else ''} {quoted}"
        return out, None

    def finish(self, pending: Sequence[tuple]) -> tuple[list[VideoRecord], list[str]]:
        """Records with final indices (sorted, de-duplicated per record) and the class list.

        ``pending`` items are ``(record, labels)`` or ``(record, labels, segment_labels)``: ``segment_labels`` is one
        list of :meth:`lookup` results per segment of ``record`` (whose :class:`Segment` s carry the times; their
        ``labels`` are ignored). A record's labels become its labels plus every segment's labels."""
        if self.fixed is not None:
            classes = self.fixed.classes
            index = None
        else:
            classes = sorted(self.seen)
            index = {name: i for i, name in enumerate(classes)}

        def ids(labels) -> tuple[int, ...]:
            return tuple(sorted({int(x) if index is None else index[str(x)] for x in labels}))

        records = []
        for record, labels, *rest in pending:
            segments: tuple[Segment, ...] = ()
            if rest:
                segments = tuple(Segment(s.start_s, s.end_s, ids(found)) for s, found in zip(record.segments, rest[0], strict=True))
            all_labels = ids(labels) if not segments else tuple(sorted(set(ids(labels)).union(*(s.labels for s in segments))))
            records.append(VideoRecord(record.path, all_labels, record.start_s, record.end_s, record.row, segments))
        return records, classes


def split_labels(cell: str) -> list[str]:
    """``"a|b"``, ``"a; b"`` -> ``["a", "b"]`` (whitespace collapsed, empties dropped)."""
    parts = [cell]
    for sep in _LABEL_SEPARATORS:
        parts = [piece for part in parts for piece in part.split(sep)]
    return [" ".join(p.split()) for p in parts if p.strip()]


def csv_rows(reader, source: str, problems: list[RowProblem]):
    """``(1-based line, cells)`` of each non-blank row of a ``csv.reader``; a row the csv module cannot parse becomes a
    MALFORMED :class:`RowProblem` in ``problems`` and the reading goes on."""
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(RowProblem(source, reader.line_num, f"malformed row: {exc}", MALFORMED))
            continue
        if any(c.strip() for c in cells):
            yield reader.line_num, cells
