"""RareAct (Miech et al., 2020) as a multi-label test set: every positive clip gets its noun, its verb and the
"verb noun" combination as three labels (multi-label paper §4.1 and K.1: "using their noun and verb labels to
generate 3 labels for each clip").

RareAct's annotation file ``rareact.csv`` (github.com/antoine77340/RareAct) has a header and the columns
``id,video_id,start,end,class_id,verb,noun,annotation``: one row per (clip, class) judgement, where a clip is a
``start``-``end`` window (whole seconds, 10 s) of the YouTube video ``video_id`` and ``annotation`` is 1 (positive),
0 (negative), 2 (hard negative: only the verb is right), 3 (hard negative: only the noun is right) or 4 (hard
negative: verb and noun are both there but the verb is not applied to the noun). Columns are found by name, in any
order; other columns are ignored.

:func:`read_rareact` keeps the POSITIVE judgements (``annotation`` = 1) only: one record per distinct clip
(``video_id``, ``start``, ``end``) with the union of its positives' triples (a clip positive for two classes
carries both triples; repeated rows count once). Judgements 0 and 2-4 give no label and are not problems (a clip
with none positive gives no record). :func:`triple_labels` is the labelling rule, for any noun/verb data.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from openvocab.data.official import _FolderIndex, _video_root
from openvocab.data.records import (
    BAD_TIME,
    MALFORMED,
    MISSING_FILE,
    UNKNOWN_LABEL,
    LabelCollector,
    Manifest,
    RowProblem,
    VideoRecord,
    check_window,
    csv_rows,
    parse_time,
    read_text_file,
    resolve_vocabulary,
)
from openvocab.errors import InputError

__all__ = ["ANNOTATION_VALUES", "POSITIVE", "read_rareact", "triple_labels"]

POSITIVE = 1
#: RareAct's ``annotation`` values and their meaning (only :data:`POSITIVE` gives labels).
ANNOTATION_VALUES: dict[int, str] = {
    0: "negative",
    1: "positive",
    2: "hard negative: only the verb is right",
    3: "hard negative: only the noun is right",
    4: "hard negative: verb and noun present, verb not applied to the noun",
}
_REQUIRED = ("video_id", "start", "end", "verb", "noun", "annotation")
_SUFFIXES = (".mp4", ".mkv", ".webm")


def triple_labels(noun: str, verb: str, *, template: str = "{verb} {noun}") -> tuple[str, str, str]:
    """The three labels of a (noun, verb) annotation: ``(noun, verb, combination)``, whitespace collapsed;
    ``triple_labels("rock", "cut") == ("rock", "cut", "cut rock")``. ``template`` spells the combination
    (``{verb}`` and ``{noun}`` fields). Labels are plain strings, so a word that is both a noun and a verb of the
    dataset (RareAct's "microwave") is one class. ``ValueError`` for an empty noun or verb."""
    noun, verb = " ".join(str(noun).split()), " ".join(str(verb).split())
    if not noun or not verb:
        raise ValueError("empty noun" if not noun else "empty verb")
    try:
        combined = " ".join(template.format(verb=verb, noun=noun).split())
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"bad combination template {template!r} ({exc}); use the fields {{verb}} and {{noun}}") from None
    return noun, verb, combined


def read_rareact(
    csv_path: str | os.PathLike[str],
    *,
    video_root: str | os.PathLike[str],
    classes: Sequence[str] | str | os.PathLike[str] | None = None,
    check_files: bool = True,
    template: str = "{verb} {noun}",
) -> Manifest:
    """Read RareAct's ``rareact.csv`` into a multi-label :class:`~openvocab.data.records.Manifest` of its positive
    clips (see the module docstring): labels noun, verb and ``template`` ("verb noun"), via :func:`triple_labels`.

    ``classes`` fixes the vocabulary (a list or labels file; a positive whose labels fall outside it is an
    ``unknown label`` problem); otherwise the sorted distinct labels of the positive rows.

    Videos are found from one walk of ``video_root`` (sub-folders included), by exact name: a trimmed clip
    ``<video_id>_<start:06d>_<end:06d>.*`` or ``<video_id>_<start>_<end>.*`` (the record is the whole file), else
    the full video ``<video_id>.*`` (mp4, mkv, webm, any other video suffix, or a frame folder) with
    ``start_s``/``end_s`` from the CSV. With ``check_files=False`` no folder is read and paths are
    ``{video_root}/<video_id>.mp4`` with the window.

    ``row`` is the CSV line of the clip's first positive. Problems (the row is skipped): ``malformed row`` (wrong
    column count, empty ``video_id``, empty verb/noun, an ``annotation`` outside 0-4), ``bad time range``,
    ``unknown label``, ``missing file``. An unreadable file or a header without the columns raises
    :class:`~openvocab.errors.InputError`.
    """
    file = Path(csv_path).expanduser()
    source = str(file)
    text = read_text_file(file, what="RareAct CSV")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header_row = next(reader, None)
    except csv.Error as exc:
        raise InputError(f"not a readable CSV header ({exc})", path=file) from None
    header = [c.strip().lower() for c in header_row or []]
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        got = ", ".join(header) or "nothing"
        raise InputError(f"not a RareAct CSV: the header needs {', '.join(_REQUIRED)} (missing {', '.join(missing)}; got {got})", path=file)
    col = {name: header.index(name) for name in _REQUIRED}
    try:  # a bad template is the caller's error, not a row problem
        triple_labels("noun", "verb", template=template)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    collector = LabelCollector(resolve_vocabulary(classes, where=source))
    root = _video_root(video_root, check_files=check_files)
    index = _FolderIndex(root) if check_files else None
    clips: dict[tuple[str, float, float], tuple[int, list[int | str]]] = {}  # clip -> (first line, labels)
    problems: list[RowProblem] = []
    for line, cells in csv_rows(reader, source, problems):
        problem = _row_problem(cells, header, col, line, source)
        if problem is not None:
            problems.append(problem)
            continue
        video_id = cells[col["video_id"]].strip()
        if int(cells[col["annotation"]].strip()) != POSITIVE:
            continue
        try:
            start, end = parse_time(cells[col["start"]]), parse_time(cells[col["end"]])
            if start is None or end is None:
                raise ValueError("empty start or end")
            check_window(start, end)
        except ValueError as exc:
            problems.append(RowProblem(source, line, f"bad time range for {video_id}: {exc}", BAD_TIME))
            continue
        try:
            labels = triple_labels(cells[col["noun"]], cells[col["verb"]], template=template)
        except ValueError as exc:
            problems.append(RowProblem(source, line, f"malformed row: {exc} for {video_id}", MALFORMED))
            continue
        found, why = collector.lookup(list(labels))
        if found is None:
            problems.append(RowProblem(source, line, f"{why} for {video_id} {start:g}-{end:g} s", UNKNOWN_LABEL))
            continue
        key = (video_id, start, end)
        if key in clips:
            clips[key][1].extend(found)
        else:
            clips[key] = (line, list(found))
    pending: list[tuple] = []
    for (video_id, start, end), (line, labels) in clips.items():
        located = _locate(index, root, video_id, start, end)
        if located is None:
            message = f"missing file: no {video_id}.* or {video_id}_{start:06.0f}_{end:06.0f}.* video or frame folder under {root}"
            problems.append(RowProblem(source, line, message, MISSING_FILE))
            continue
        video, trimmed = located
        window = (None, None) if trimmed else (start, end)
        pending.append((VideoRecord(str(video), (), window[0], window[1], line), labels))
    records, names = collector.finish(pending)
    problems.sort(key=lambda p: p.row or 0)
    return Manifest(records, names, problems, f"rareact {file.stem}")


def _row_problem(cells: list[str], header: list[str], col: dict[str, int], line: int, source: str) -> RowProblem | None:
    if len(cells) != len(header):
        return RowProblem(source, line, f"malformed row: expected {len(header)} columns, got {len(cells)}", MALFORMED)
    if not cells[col["video_id"]].strip():
        return RowProblem(source, line, "malformed row: empty video_id", MALFORMED)
    value = cells[col["annotation"]].strip()
    if not (value.isdigit() and int(value) in ANNOTATION_VALUES):
        return RowProblem(source, line, f"malformed row: annotation {value!r} is not one of 0-4 (1 = positive)", MALFORMED)
    return None


def _stem(path: Path) -> str:
    return path.name if path.is_dir() else os.path.splitext(path.name)[0]


def _rank(path: Path) -> tuple[int, int, str]:
    """Preferred suffixes first, then other video files, then frame folders; shallower paths first."""
    suffix = path.suffix.lower()
    order = _SUFFIXES.index(suffix) if suffix in _SUFFIXES else len(_SUFFIXES) + int(path.is_dir())
    return order, len(path.parts), str(path)


def _locate(index: _FolderIndex | None, root: Path, video_id: str, start: float, end: float) -> tuple[Path, bool] | None:
    """``(path, is a trimmed clip)`` for one clip, or None."""
    if index is None:
        return root / f"{video_id}.mp4", False
    whole = start.is_integer() and end.is_integer()
    trimmed_stems = [f"{video_id}_{start:06.0f}_{end:06.0f}", f"{video_id}_{start:.0f}_{end:.0f}"] if whole else []
    candidates = index.with_prefix(video_id)
    for stems, trimmed in ((trimmed_stems, True), ([video_id], False)):
        hits = [p for p in candidates if _stem(p) in stems]
        if hits:
            return min(hits, key=_rank), trimmed
    return None
