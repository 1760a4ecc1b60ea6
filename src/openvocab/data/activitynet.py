"""Reader for the official ActivityNet v1.3 annotation JSON (``activity_net.v1-3.min.json``), returning a
:class:`~openvocab.data.records.Manifest`.

ActivityNet has 200 classes over untrimmed 5-10 minute YouTube videos; each video lists labelled segments. Two
protocols read the same file: ``mode="segments"`` (one record per annotated segment, with its window: the
trimmed-clip protocol) and ``mode="videos"`` (one record per video with all its distinct labels, no window, its
annotations as labelled segments: the untrimmed video-level, multi-label protocol).

Like the other readers a bad entry never raises: it is a :class:`~openvocab.data.records.RowProblem`. The JSON has
no lines, so ``row`` is the 1-based position of the video in the database (over all subsets, in file order) and the
message names the video id. Only an unreadable file, or one that is not an ActivityNet JSON, raises
:class:`~openvocab.errors.InputError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from openvocab.data.official import _FolderIndex, _video_root
from openvocab.data.records import (
    BAD_TIME,
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
    parse_time,
    read_text_file,
    resolve_vocabulary,
)
from openvocab.errors import InputError

__all__ = ["read_activitynet"]

AnetSubset = Literal["training", "validation", "testing"]
AnetMode = Literal["segments", "videos"]
_SUBSETS = ("training", "validation", "testing")
_MODES = ("segments", "videos")
_LABELLED = ("training", "validation")
_SUFFIXES = (".mp4", ".mkv", ".webm")
_DURATION_SLACK_S = 1.0  # a segment may end up to 1 s after the stated duration (rounding in the official file)


def read_activitynet(
    json_path: str | os.PathLike[str],
    *,
    video_root: str | os.PathLike[str],
    subset: AnetSubset = "training",
    mode: AnetMode = "segments",
    classes: Sequence[str] | str | os.PathLike[str] | None = None,
    check_files: bool = True,
) -> Manifest:
    """Read ActivityNet v1.3's ``{"database": {"<id>": {"subset", "duration", "annotations": [{"segment": [s, e],
    "label": ...}]}}}`` for one ``subset`` (``training``, ``validation`` or ``testing``; other videos are left out).

    ``mode="segments"``: one single-label record per annotation with ``start_s``/``end_s``; a bad annotation is
    skipped alone (the video's other segments stay). ``mode="videos"``: one record per video with its distinct
    labels (several = multi-label) and no window; any bad annotation skips the whole video, since a partial label
    set would turn a true class into a negative. The ``testing`` subset has no annotations: its videos become
    unlabelled whole-video records in both modes.

    ``classes`` fixes the vocabulary (a list or labels file, e.g. ``activitynet.txt``; labels outside it are
    problems); otherwise the sorted distinct labels of the WHOLE database, all subsets, so the training and
    validation manifests share indices.

    Videos are found from one walk of ``video_root`` (sub-folders included): ``v_<id>`` then ``<id>``, each as
    ``.mp4``, ``.mkv``, ``.webm``, any other video suffix, or a frame folder. With ``check_files=False`` no folder
    is read and paths are ``{video_root}/v_<id>.mp4``.

    In ``videos`` mode each record's ``segments`` are its annotations (one :class:`~openvocab.data.records.Segment`
    per annotation, single-label, in file order, times in seconds of the video), so the multi-label video keeps
    where each action happens.

    Problems (the entry or annotation is skipped): ``malformed row`` (an entry or annotation of the wrong shape),
    ``missing label`` (no annotations in a labelled subset, or an empty label), ``unknown label``, ``bad time
    range`` (end <= start, negative, or past ``duration`` + 1 s) and ``missing file``.
    """
    if subset not in _SUBSETS:
        raise InputError(f"ActivityNet subset must be one of {', '.join(_SUBSETS)}, got {subset!r}")
    if mode not in _MODES:
        raise InputError(f"ActivityNet mode must be 'segments' or 'videos', got {mode!r}")
    file = Path(json_path).expanduser()
    database = _read_database(file)
    source = str(file)
    fixed = resolve_vocabulary(classes, where=source)
    collector = LabelCollector(fixed if fixed is not None else _database_labels(database))
    root = _video_root(video_root, check_files=check_files)
    index = _FolderIndex(root) if check_files else None
    pending: list[tuple[VideoRecord, list[int | str]]] = []
    problems: list[RowProblem] = []
    for position, (video_id, entry) in enumerate(database.items(), start=1):
        if not isinstance(entry, dict):
            message = f"malformed row: video {video_id} is not an object"
            problems.append(RowProblem(source, position, message, MALFORMED))
            continue
        if entry.get("subset") != subset:
            continue
        parsed = _parse_entry(video_id, entry, position, source, subset, collector)
        if isinstance(parsed, RowProblem):
            problems.append(parsed)
            continue
        annotations, entry_problems = parsed
        if mode == "videos" and entry_problems:
            problems.extend(entry_problems)
            continue
        problems.extend(entry_problems)
        if not annotations and entry_problems:
            continue
        video = root / f"v_{video_id}.mp4" if index is None else _find_video(index, str(video_id))
        if video is None:
            message = f"missing file: no v_{video_id}.* or {video_id}.* video or frame folder under {root}"
            problems.append(RowProblem(source, position, message, MISSING_FILE))
            continue
        if not annotations:
            pending.append((VideoRecord(str(video), (), None, None, position), []))
        elif mode == "videos":  # all distinct labels; every annotation kept as a labelled segment, in file order
            labels = [label for _, _, label in annotations]
            segments = tuple(Segment(start, end, ()) for start, end, _ in annotations)
            pending.append((VideoRecord(str(video), (), None, None, position, segments), labels, [[label] for label in labels]))
        else:
            for start, end, label in annotations:
                pending.append((VideoRecord(str(video), (), start, end, position), [label]))
    records, names = collector.finish(pending)
    name = f"activitynet {subset}" + (" videos" if mode == "videos" else "")
    return Manifest(records, names, problems, name)


def _read_database(file: Path) -> dict:
    text = read_text_file(file, what="ActivityNet annotation JSON")
    try:
        data = json.loads(text)
    except ValueError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if hasattr(exc, "lineno") else ""
        raise InputError(f"ActivityNet annotation file is not valid JSON{where}", path=file) from None
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise InputError("not an ActivityNet annotation JSON: no 'database' object", path=file)
    return database


def _clean_label(value: object) -> str | None:
    return " ".join(value.split()) if isinstance(value, str) else None


def _database_labels(database: dict) -> list[str]:
    """The sorted distinct labels of every subset (well-formed annotations only)."""
    seen: set[str] = set()
    for entry in database.values():
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        for ann in annotations if isinstance(annotations, list) else ():
            label = _clean_label(ann.get("label")) if isinstance(ann, dict) else None
            if label:
                seen.add(label)
    return sorted(seen)


def _parse_entry(video_id: str, entry: dict, position: int, source: str, subset: str, collector: LabelCollector):
    """``([(start, end, label), ...], [problems of single annotations])`` or one :class:`RowProblem` for the whole
    entry. ``label`` is what :meth:`LabelCollector.lookup` returns."""
    annotations = entry.get("annotations", [])
    if annotations is None:
        annotations = []
    if not isinstance(annotations, list):
        message = f"malformed row: 'annotations' of video {video_id} is not a list"
        return RowProblem(source, position, message, MALFORMED)
    if not annotations:
        if subset in _LABELLED:
            return RowProblem(source, position, f"missing label: video {video_id} has no annotations", MISSING_LABEL)
        return [], []
    try:
        duration = parse_time(entry.get("duration"))
    except ValueError as exc:
        return RowProblem(source, position, f"malformed row: bad duration of video {video_id}: {exc}", MALFORMED)
    out: list[tuple[float, float, int | str]] = []
    problems: list[RowProblem] = []
    for number, ann in enumerate(annotations, start=1):
        what = f"annotation {number} of video {video_id}"
        problem = None
        if not isinstance(ann, dict):
            problem = RowProblem(source, position, f"malformed row: {what} is not an object", MALFORMED)
        else:
            label = _clean_label(ann.get("label"))
            segment = ann.get("segment")
            if not label:
                problem = RowProblem(source, position, f"missing label for {what}", MISSING_LABEL)
            elif not isinstance(segment, (list, tuple)) or len(segment) != 2:
                message = f"bad time range for {what}: segment is not [start, end]"
                problem = RowProblem(source, position, message, BAD_TIME)
            else:
                found, why = collector.lookup([label])
                try:
                    start, end = _check_segment(segment, duration)
                except ValueError as exc:
                    problem = RowProblem(source, position, f"bad time range for {what}: {exc}", BAD_TIME)
                else:
                    if found is None:
                        problem = RowProblem(source, position, f"{why} for {what}", UNKNOWN_LABEL)
                    else:
                        out.append((start, end, found[0]))
        if problem is not None:
            problems.append(problem)
    return out, problems


def _check_segment(segment: Sequence[object], duration: float | None) -> tuple[float, float]:
    start, end = parse_time(segment[0]), parse_time(segment[1])
    if start is None or end is None:
        raise ValueError("empty start or end")
    check_window(start, end)
    if duration is not None and end > duration + _DURATION_SLACK_S:
        raise ValueError(f"end {end:g} s is past the video's duration {duration:g} s")
    return start, end


def _rank(path: Path, stem: str) -> tuple[int, int, str] | None:
    """Sort key of a candidate for ``stem`` (preferred suffixes, then other videos, then frame folders), or None."""
    name = path.name
    if name == stem:
        return (len(_SUFFIXES) + 1, len(path.parts), str(path))
    base, suffix = os.path.splitext(name)
    if base != stem:
        return None
    order = _SUFFIXES.index(suffix.lower()) if suffix.lower() in _SUFFIXES else len(_SUFFIXES)
    return (order, len(path.parts), str(path))


def _find_video(index: _FolderIndex, video_id: str) -> Path | None:
    """``v_<id>.*`` (or frame folder ``v_<id>``) anywhere below the root, then ``<id>.*`` / ``<id>``."""
    for stem in (f"v_{video_id}", video_id):
        ranked = [(key, path) for path in index.with_prefix(stem) if (key := _rank(path, stem)) is not None]
        if ranked:
            return min(ranked)[1]
    return None
