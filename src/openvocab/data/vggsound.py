"""Reader for VGGSound's annotation CSV (Chen et al., ICASSP 2020), the audio-visual benchmark of MOV §4.1.

VGGSound ships one headerless CSV, ``vggsound.csv``, with rows ``youtube_id,start_seconds,label,split`` (split is
``train`` or ``test``; labels such as ``"engine accelerating, revving, vroom"`` contain commas and are quoted). Each
row is a 10-second clip of a YouTube video starting at ``start_seconds``. MOV splits its 309 classes into 154 base
and 155 novel classes (§4.1, ``openvocab data split``); the vocabulary here is therefore the sorted labels of ALL
well-formed rows, both splits, whichever videos were downloaded, so class indices and base/novel splits are stable.

Like the other readers, a bad row never raises: it is a :class:`~openvocab.data.records.RowProblem` (file, 1-based
line, reason); only an unreadable CSV or video root raises :class:`~openvocab.errors.InputError`.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openvocab.data.records import (
    BAD_TIME,
    MALFORMED,
    MISSING_FILE,
    MISSING_LABEL,
    UNKNOWN_LABEL,
    Manifest,
    RowProblem,
    VideoRecord,
    Vocabulary,
    csv_rows,
    is_video_path,
    parse_time,
    read_text_file,
    resolve_vocabulary,
)
from openvocab.errors import InputError

__all__ = ["CLIP_SECONDS", "read_vggsound_csv"]

CLIP_SECONDS = 10  # every VGGSound clip is 10 s long (MOV §4.2: "the videos in VGGSound are all 10-second long")
_SPLITS = ("train", "test")


@dataclass(frozen=True)
class _Row:
    line: int
    youtube_id: str
    start: int | None  # None: the start cell is not a whole number of seconds (``time_error`` says why)
    label: str
    split: str
    time_error: str = ""


def read_vggsound_csv(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str],
    split: str | None = None,
    classes: Sequence[str] | str | os.PathLike[str] | None = None,
    check_files: bool = True,
) -> Manifest:
    """Read VGGSound's CSV (no header; ``youtube_id,start_seconds,label,split``) into a
    :class:`~openvocab.data.records.Manifest`.

    ``split``: ``"train"`` or ``"test"`` keeps only those rows (the others still define the vocabulary); None keeps
    both. ``classes`` fixes the vocabulary (a list or labels file); otherwise it is the sorted distinct labels of
    every well-formed row of the file. A header row, if present, is skipped.

    Videos are looked up in ``root`` as ``<youtube_id>_<start:06d>.mp4`` (the common released layout, e.g.
    ``---g-f_I2yQ_000001.mp4``), then ``<youtube_id>_<start>_<start+10>.mp4`` -- both are the 10-s clip itself
    (no time window) -- then ``<youtube_id>.mp4``, the full YouTube video, whose record gets ``start_s, end_s =
    start, start + 10``. A row without any of them is a ``missing file`` problem. With ``check_files=False`` the
    root is not read and every path is the first pattern.
    """
    if split is not None and split not in _SPLITS:
        raise InputError(f"VGGSound split must be 'train' or 'test', got {split!r}")
    file = Path(path).expanduser()
    source = str(file)
    text = read_text_file(file, what="VGGSound CSV")
    base = Path(root).expanduser().absolute()
    present: set[str] | None = None
    if check_files:
        try:
            present = set(os.listdir(base))
        except OSError as exc:
            raise InputError(f"cannot read the video root ({exc.strerror or exc})", path=base) from None
    rows, problems = _parse(text, source, split)
    if not rows and not problems:
        raise InputError("VGGSound CSV lists no rows", path=file)
    fixed = resolve_vocabulary(classes, where=source)
    names = fixed if fixed is not None else sorted({r.label for r in rows})
    vocab = Vocabulary(names)
    records: list[VideoRecord] = []
    for row in rows:
        if split is not None and row.split != split:
            continue
        if row.start is None:
            problems.append(RowProblem(source, row.line, f"bad time range for {row.youtube_id}: {row.time_error}", BAD_TIME))
            continue
        label = vocab.get(row.label)
        if label is None:
            problems.append(RowProblem(source, row.line, f"unknown label '{row.label}' for {row.youtube_id}", UNKNOWN_LABEL))
            continue
        found = _find_video(base, present, row)
        if found is None:
            message = f"missing file: no {row.youtube_id}_{row.start:06d}.mp4 or other {row.youtube_id} video in {base}"
            problems.append(RowProblem(source, row.line, message, MISSING_FILE))
            continue
        video, window = found
        records.append(VideoRecord(str(video), (label,), window[0], window[1], row.line))
    problems.sort(key=lambda p: p.row or 0)
    return Manifest(records, list(names), problems, f"vggsound {file.stem}" + (f" [{split}]" if split else ""))


def _parse(text: str, source: str, wanted: str | None) -> tuple[list[_Row], list[RowProblem]]:
    """Rows with an id, a label and a valid split (their labels make the vocabulary; a bad start time is kept on the
    row and reported by the caller) and the problems of the others: rows without four columns or a valid split, and
    rows of the ``wanted`` split (any, when None) without an id or a label. Other splits' rows are never problems."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[_Row] = []
    problems: list[RowProblem] = []
    first = True
    for line, cells in csv_rows(reader, source, problems):
        if first and _is_header(cells):
            first = False
            continue
        first = False
        if len(cells) != 4:
            message = f"malformed row: expected 4 columns (youtube_id,start_seconds,label,split), got {len(cells)}"
            problems.append(RowProblem(source, line, message, MALFORMED))
            continue
        youtube_id, start_cell, label_cell, split_cell = (c.strip() for c in cells)
        label = " ".join(label_cell.split())
        split = split_cell.lower()
        reported = wanted is None or split == wanted
        if split not in _SPLITS:
            problems.append(RowProblem(source, line, f"malformed row: split must be train or test, got {split_cell!r}", MALFORMED))
        elif not youtube_id or not label:
            if reported and not youtube_id:
                problems.append(RowProblem(source, line, "malformed row: empty youtube_id", MALFORMED))
            elif reported:
                problems.append(RowProblem(source, line, f"missing label for {youtube_id}", MISSING_LABEL))
        else:
            try:
                rows.append(_Row(line, youtube_id, _start_seconds(start_cell), label, split))
            except ValueError as exc:
                rows.append(_Row(line, youtube_id, None, label, split, str(exc)))
    return rows, problems


def _is_header(cells: list[str]) -> bool:
    """A first row naming the columns (``youtube_id,start_seconds,label,split`` or similar), not a clip."""
    return len(cells) >= 2 and "start" in cells[1].lower() and _time_or_none(cells[1]) is None


def _time_or_none(value: str) -> float | None:
    try:
        return parse_time(value)
    except ValueError:
        return None


def _start_seconds(value: str) -> int:
    seconds = parse_time(value)
    if seconds is None:
        raise ValueError("empty start time")
    if seconds != int(seconds):
        raise ValueError(f"start {value!r} is not a whole number of seconds")
    return int(seconds)


def _find_video(base: Path, present: set[str] | None, row: _Row) -> tuple[Path, tuple[float | None, float | None]] | None:
    """(video, (start_s, end_s)) for one row, or None when no candidate file exists."""
    start = row.start or 0
    end = start + CLIP_SECONDS
    clip_names = (f"{row.youtube_id}_{start:06d}.mp4", f"{row.youtube_id}_{start}_{end}.mp4")
    if present is None:
        return base / clip_names[0], (None, None)
    for name in clip_names:
        if name in present and is_video_path(base / name):
            return base / name, (None, None)
    full = f"{row.youtube_id}.mp4"
    if full in present and is_video_path(base / full):
        return base / full, (float(start), float(end))
    return None
