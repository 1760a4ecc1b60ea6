"""Video manifests: which videos a dataset split holds, with their labels, read row by row without ever failing on
a bad row.

A :class:`Manifest` is the one shape every dataset reader returns: :class:`VideoRecord` rows (a path, class indices,
an optional time window), the class vocabulary (index -> raw class name), the rows that were skipped as
:class:`RowProblem` (source file, 1-based line, one-line reason) and a ``source`` name for messages (the types live
in :mod:`openvocab.data.records`).

Readers: :func:`read_manifest` for openvocab's generic CSV / JSONL format (also what :mod:`openvocab.data.synth`
writes; :func:`write_manifest_jsonl` writes the JSONL form back), and, re-exported from :mod:`openvocab.data.official`, :func:`read_kinetics_csv`, :func:`read_ucf101` and
:func:`read_hmdb51` for the official layouts, and, from :mod:`openvocab.data.activitynet`, :func:`read_activitynet`
for ActivityNet v1.3's annotation JSON, and, from :mod:`openvocab.data.vggsound`,
:func:`read_vggsound_csv` for VGGSound's CSV. A folder of frame images counts as a video wherever a path is expected.
:func:`base_novel_split` splits a vocabulary into base and novel classes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from openvocab.atomic import atomic_write
from openvocab.data.activitynet import read_activitynet
from openvocab.data.official import read_hmdb51, read_kinetics_csv, read_ucf101
from openvocab.data.records import (
    BAD_TIME,
    EMPTY_PATH,
    MALFORMED,
    MISSING_FILE,
    MISSING_LABEL,
    UNKNOWN_LABEL,
    LabelCollector,
    Manifest,
    RowProblem,
    Segment,
    VideoRecord,
    check_window,
    is_video_path,
    parse_time,
    read_text_file,
    resolve_vocabulary,
    split_labels,
)
from openvocab.data.vggsound import read_vggsound_csv
from openvocab.errors import InputError

__all__ = [
    "Manifest",
    "RowProblem",
    "Segment",
    "VideoRecord",
    "base_novel_split",
    "manifest_jsonl_text",
    "read_activitynet",
    "read_hmdb51",
    "read_kinetics_csv",
    "read_manifest",
    "read_ucf101",
    "read_vggsound_csv",
    "write_manifest_jsonl",
]

_PATH_COLUMNS = ("path", "video", "video_path", "file", "filename")
_LABEL_COLUMNS = ("labels", "label")
_START_COLUMNS = ("start_s", "start")
_END_COLUMNS = ("end_s", "end")


# --------------------------------------------------------------------------------------------------- generic format
def read_manifest(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | str | os.PathLike[str] | None = None,
    check_files: bool = True,
) -> Manifest:
    """Read openvocab's generic manifest: CSV (``.csv``; ``.tsv`` tab-separated) or JSON lines (``.jsonl``,
    ``.ndjson``, or any file whose first character is ``{``).

    CSV: a header naming a ``path`` column (also ``video``/``file``) and ``label`` or ``labels`` (several labels
    separated by ``|`` or ``;``), optional ``start``/``end`` (or ``start_s``/``end_s``) in seconds; other columns
    are ignored. JSONL: one object per line, ``{"path": ..., "label": "x"}`` or ``"labels": ["x", "y"]``, optional
    ``start``/``end``, and optional labelled spans ``"segments": [{"start": s, "end": e, "labels": [...]}, ...]``
    (times in seconds of the file, like ``start``/``end``; each segment needs at least one label and, when the row
    has a window, must lie inside it). A JSONL record's labels are its ``labels`` plus every segment's labels;
    other keys are ignored. Relative paths resolve against ``root`` (default: the manifest's folder); a path may
    be a folder of frame images.

    ``classes``: a fixed vocabulary (a list, or a labels file) that defines the indices — labels outside it are
    row problems; names match exactly or after :func:`normalise_class_name` + case folding. Without it the classes
    are the distinct label strings in SORTED order (deterministic whatever the row order).

    A bad row never raises: it becomes a :class:`RowProblem` with its 1-based line number and is skipped:
    ``missing label`` (no labels at all: an empty cell, ``"labels": []``), ``unknown label`` (naming each label
    outside a fixed vocabulary), ``bad time range`` (also a bad segment time), ``malformed row`` (also a segment of
    the wrong shape), ``empty path``, ``missing file``. :meth:`Manifest.summary` counts them by kind. An unreadable
    file or a header without the required columns raises :class:`InputError` naming the file.
    """
    file = Path(path).expanduser()
    text = read_text_file(file, what="manifest")
    base = Path(root).expanduser() if root is not None else file.parent
    base = base.absolute()
    collector = LabelCollector(resolve_vocabulary(classes, where=str(file)))
    suffix = file.suffix.lower()
    if suffix in (".jsonl", ".ndjson") or (suffix not in (".csv", ".tsv") and text.lstrip().startswith("{")):
        rows = _jsonl_rows(text, str(file))
    else:
        rows = _csv_rows(text, file, delimiter="\t" if suffix == ".tsv" else ",")
    pending: list[tuple] = []
    problems: list[RowProblem] = []
    for row_number, fields in rows:
        if isinstance(fields, RowProblem):
            problems.append(fields)
            continue
        outcome = _validate_row(fields, row_number, str(file), base, collector, check_files)
        if isinstance(outcome, RowProblem):
            problems.append(outcome)
        else:
            pending.append(outcome)
    records, names = collector.finish(pending)
    return Manifest(records, names, problems, str(file))


def _pick(header: list[str], names: Sequence[str]) -> int | None:
    return next((header.index(n) for n in names if n in header), None)


def _csv_rows(text: str, file: Path, *, delimiter: str):
    """(line, fields dict | RowProblem) for each data row of a CSV with a header."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header_row = next(reader, None)
        while header_row is not None and not any(c.strip() for c in header_row):
            header_row = next(reader, None)
    except csv.Error as exc:
        raise InputError(f"not a readable CSV header ({exc})", path=file) from None
    if header_row is None:
        raise InputError("manifest is empty (no header row)", path=file)
    header = [c.strip().lower() for c in header_row]
    columns = {
        "path": _pick(header, _PATH_COLUMNS),
        "labels": _pick(header, _LABEL_COLUMNS),
        "start": _pick(header, _START_COLUMNS),
        "end": _pick(header, _END_COLUMNS),
    }
    if columns["path"] is None or columns["labels"] is None:
        need = "a 'path' column" if columns["path"] is None else "a 'label' or 'labels' column"
        raise InputError(f"manifest header needs {need} (columns: {', '.join(header_row) or 'none'})", path=file)
    source = str(file)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, RowProblem(source, reader.line_num, f"malformed row: {exc}", MALFORMED)
            continue
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            message = f"malformed row: expected {len(header)} columns, got {len(cells)}"
            yield line, RowProblem(source, line, message, MALFORMED)
            continue
        fields = {key: (None if index is None else cells[index]) for key, index in columns.items()}
        fields["labels"] = split_labels(fields["labels"] or "")
        yield line, fields


def _jsonl_rows(text: str, source: str):
    """(line, fields dict | RowProblem) for each non-blank line of a JSON-lines manifest."""
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            yield line, RowProblem(source, line, f"malformed row: not valid JSON ({exc.msg})", MALFORMED)
            continue
        if not isinstance(obj, dict):
            yield line, RowProblem(source, line, "malformed row: expected a JSON object", MALFORMED)
            continue
        path = next((obj[k] for k in _PATH_COLUMNS if k in obj), None)
        labels = obj.get("labels", obj.get("label"))
        if isinstance(labels, str):
            labels = split_labels(labels)
        elif isinstance(labels, list) and all(isinstance(x, str) for x in labels):
            labels = [" ".join(x.split()) for x in labels if x.strip()]
        elif labels is not None:
            yield line, RowProblem(source, line, "malformed row: 'labels' must be a string or a list of strings")
            continue
        if path is not None and not isinstance(path, str):
            yield line, RowProblem(source, line, "malformed row: 'path' must be a string", MALFORMED)
            continue
        start = next((obj[k] for k in _START_COLUMNS if k in obj), None)
        end = next((obj[k] for k in _END_COLUMNS if k in obj), None)
        segments = obj.get("segments")
        if segments is not None and not isinstance(segments, list):
            yield line, RowProblem(source, line, "malformed row: 'segments' must be a list of {start, end, labels} objects", MALFORMED)
            continue
        yield line, {"path": path, "labels": labels or [], "start": start, "end": end, "segments": segments or []}


def _segment_labels(obj: dict) -> list[str] | None:
    """A segment's labels (``labels`` list or string, or ``label``), whitespace-collapsed; None when malformed."""
    labels = obj.get("labels", obj.get("label"))
    if labels is None:
        return []
    if isinstance(labels, str):
        return split_labels(labels)
    if isinstance(labels, list) and all(isinstance(x, str) for x in labels):
        return [" ".join(x.split()) for x in labels if x.strip()]
    return None


def _parse_segments(raw: list, start: float | None, end: float | None, what: str, line: int, source: str, collector: LabelCollector):
    """``(segments with times, per-segment lookup results)`` or the row's :class:`RowProblem` (the first bad
    segment, numbered from 1)."""
    segments: list[Segment] = []
    found_labels: list[list[int | str]] = []
    for number, obj in enumerate(raw, start=1):
        where = f"segment {number} of {what}"
        if not isinstance(obj, dict):
            return RowProblem(source, line, f"malformed row: {where} is not an object", MALFORMED)
        labels = _segment_labels(obj)
        if labels is None:
            return RowProblem(source, line, f"malformed row: 'labels' of {where} must be a string or a list of strings", MALFORMED)
        try:
            s = parse_time(next((obj[k] for k in _START_COLUMNS if k in obj), None))
            e = parse_time(next((obj[k] for k in _END_COLUMNS if k in obj), None))
            if s is None or e is None:
                raise ValueError("a segment needs both start and end")
            check_window(s, e)
            if (start is not None and s < start) or (end is not None and e > end):
                lo = f"{start:g}" if start is not None else "0"
                window = f"{lo}-{end:g} s" if end is not None else f"from {lo} s"
                raise ValueError(f"{s:g}-{e:g} s lies outside the row's window {window}")
        except ValueError as exc:
            return RowProblem(source, line, f"bad time range for {where}: {exc}", BAD_TIME)
        if not labels:
            return RowProblem(source, line, f"no labels for {where}", MISSING_LABEL)
        found, why = collector.lookup(labels)
        if found is None:
            return RowProblem(source, line, f"{why} in {where}", UNKNOWN_LABEL)
        segments.append(Segment(s, e, ()))
        found_labels.append(found)
    return segments, found_labels


def _validate_row(fields: dict, line: int, source: str, base: Path, collector: LabelCollector, check_files: bool):
    """A pending ``(record, labels)`` (or ``(record, labels, segment_labels)``, see :meth:`LabelCollector.finish`)
    or the row's :class:`RowProblem`."""
    raw_path = (fields.get("path") or "").strip()
    if not raw_path:
        return RowProblem(source, line, "empty path", EMPTY_PATH)
    if "\x00" in raw_path:
        return RowProblem(source, line, "malformed row: the path contains a NUL character", MALFORMED)
    raw_segments = fields.get("segments") or []
    if not fields["labels"] and not raw_segments:
        return RowProblem(source, line, f"no labels for {raw_path}", MISSING_LABEL)
    labels, why = collector.lookup(fields["labels"])
    if labels is None:
        return RowProblem(source, line, f"{why} for {raw_path}", UNKNOWN_LABEL)
    try:
        start, end = parse_time(fields.get("start")), parse_time(fields.get("end"))
        check_window(start, end)
    except ValueError as exc:
        return RowProblem(source, line, f"bad time range for {raw_path}: {exc}", BAD_TIME)
    parsed = _parse_segments(raw_segments, start, end, raw_path, line, source, collector)
    if isinstance(parsed, RowProblem):
        return parsed
    video = Path(os.path.expanduser(raw_path))
    video = video if video.is_absolute() else base / video
    if check_files and not is_video_path(video):
        return RowProblem(source, line, f"missing file {video}", MISSING_FILE)
    segments, segment_labels = parsed
    if not segments:
        return VideoRecord(str(video), (), start, end, line), labels
    return VideoRecord(str(video), (), start, end, line, tuple(segments)), labels, segment_labels


# --------------------------------------------------------------------------------------------------- writing
def _seconds(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def manifest_jsonl_text(manifest: Manifest, *, relative_to: str | os.PathLike[str] | None = None) -> str:
    """``manifest`` as openvocab's JSONL manifest text, one record a line: ``{"path", "labels": [class names],
    "start", "end", "segments": [{"start", "end", "labels"}]}`` (keys without a value left out; whole seconds
    written as integers). Paths inside ``relative_to`` are written relative to it (POSIX separators), others as
    stored. :func:`read_manifest` reads it back (with ``classes=`` the same class list for the same indices;
    unlabelled records read back as ``missing label`` problems)."""
    base = Path(relative_to).expanduser().absolute() if relative_to is not None else None
    lines = []
    for record in manifest.records:
        path = Path(record.path)
        if base is not None and path.is_absolute():
            try:
                path_text = path.relative_to(base).as_posix()
            except ValueError:
                path_text = str(path)
        else:
            path_text = str(record.path)
        row: dict = {"path": path_text, "labels": [manifest.classes[i] for i in record.labels]}
        if record.start_s is not None:
            row["start"] = _seconds(record.start_s)
        if record.end_s is not None:
            row["end"] = _seconds(record.end_s)
        if record.segments:
            row["segments"] = [
                {"start": _seconds(seg.start_s), "end": _seconds(seg.end_s), "labels": [manifest.classes[i] for i in seg.labels]} for seg in record.segments
            ]
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    return "".join(lines)


def write_manifest_jsonl(manifest: Manifest, path: str | os.PathLike[str], *, relative: bool = True) -> Path:
    """Write ``manifest`` atomically as a JSONL manifest (:func:`manifest_jsonl_text`); with ``relative`` the paths
    below the output's folder are written relative to it (so the folder can move). Returns the path."""
    out = Path(path).expanduser()
    atomic_write(out, manifest_jsonl_text(manifest, relative_to=out.absolute().parent if relative else None))
    return out


# --------------------------------------------------------------------------------------------------- splits
def base_novel_split(classes: Sequence[str], *, novel_fraction: float = 0.5, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split class indices into ``(base, novel)``, both ascending, ``round(novel_fraction * C)`` novel.

    Deterministic per ``seed`` and independent of the list's order and of the Python/NumPy version: classes are
    ranked by SHA-256 of ``"<seed>:<name>"`` (ties by index) and the first ones are novel. With
    ``0 < novel_fraction < 1`` and at least two classes both sides are non-empty. Seeds 0..9 with 0.5 give the ten
    random half-class trials of Text4Vis §4.2 (UCF*, HMDB*, ANet*).
    """
    if not (isinstance(novel_fraction, (int, float)) and 0.0 <= float(novel_fraction) <= 1.0):
        raise InputError(f"novel_fraction must be between 0 and 1, got {novel_fraction!r}")
    names = [str(c) for c in classes]
    count = len(names)
    novel_count = math.floor(float(novel_fraction) * count + 0.5)
    if 0.0 < novel_fraction < 1.0 and count >= 2:
        novel_count = min(max(novel_count, 1), count - 1)
    ranked = sorted(range(count), key=lambda i: (hashlib.sha256(f"{seed}:{names[i]}".encode()).hexdigest(), i))
    novel = sorted(ranked[:novel_count])
    chosen = set(novel)
    return [i for i in range(count) if i not in chosen], novel
