"""Video manifests: which videos a dataset split holds, with their labels, read row by row without ever failing on
a bad row.

A :class:`Manifest` is the one shape every dataset reader returns: :class:`VideoRecord` rows (a path, class indices,
an optional time window), the class vocabulary (index -> raw class name), the rows that were skipped as
:class:`RowProblem` (source file, 1-based line, one-line reason) and a ``source`` name for messages (the types live
in :mod:`openvocab.data.records`).

Readers: :func:`read_manifest` for openvocab's generic CSV / JSONL format (also what :mod:`openvocab.data.synth`
writes), and, re-exported from :mod:`openvocab.data.official`, :func:`read_kinetics_csv`, :func:`read_ucf101` and
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
    "VideoRecord",
    "base_novel_split",
    "read_activitynet",
    "read_hmdb51",
    "read_kinetics_csv",
    "read_manifest",
    "read_ucf101",
    "read_vggsound_csv",
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
    ``start``/``end``. Relative paths resolve against ``root`` (default: the manifest's folder); a path may be a
    folder of frame images.

    ``classes``: a fixed vocabulary (a list, or a labels file) that defines the indices — labels outside it are
    row problems; names match exactly or after :func:`normalise_class_name` + case folding. Without it the classes
    are the distinct label strings in SORTED order (deterministic whatever the row order).

    A bad row never raises: it becomes a :class:`RowProblem` with its 1-based line number. An unreadable file or a
    header without the required columns raises :class:`InputError` naming the file.
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
    pending: list[tuple[VideoRecord, list[int | str]]] = []
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
        yield line, {"path": path, "labels": labels or [], "start": start, "end": end}


def _validate_row(fields: dict, line: int, source: str, base: Path, collector: LabelCollector, check_files: bool):
    """A pending (record, labels) pair or the row's :class:`RowProblem`."""
    raw_path = (fields.get("path") or "").strip()
    if not raw_path:
        return RowProblem(source, line, "empty path", EMPTY_PATH)
    if not fields["labels"]:
        return RowProblem(source, line, f"missing label for {raw_path}", MISSING_LABEL)
    labels, why = collector.lookup(fields["labels"])
    if labels is None:
        return RowProblem(source, line, f"{why} for {raw_path}", UNKNOWN_LABEL)
    try:
        start, end = parse_time(fields.get("start")), parse_time(fields.get("end"))
        check_window(start, end)
    except ValueError as exc:
        return RowProblem(source, line, f"bad time range for {raw_path}: {exc}", BAD_TIME)
    video = Path(os.path.expanduser(raw_path))
    video = video if video.is_absolute() else base / video
    if check_files and not is_video_path(video):
        return RowProblem(source, line, f"missing file {video}", MISSING_FILE)
    return VideoRecord(str(video), (), start, end, line), labels


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
