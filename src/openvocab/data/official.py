"""Readers for the official annotation layouts of Kinetics, UCF101 and HMDB51, each returning a
:class:`~openvocab.data.manifests.Manifest`.

Like :func:`~openvocab.data.manifests.read_manifest`, a bad row never raises: it is a
:class:`~openvocab.data.manifests.RowProblem` with its file and 1-based line. Only an unreadable annotation file (or
folder) raises :class:`~openvocab.errors.InputError`. Videos may be files or folders of frame images (the
``rawframes`` layout: the same path without the suffix).
"""

from __future__ import annotations

import bisect
import csv
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from openvocab.data.records import (
    BAD_TIME,
    MALFORMED,
    MISSING_FILE,
    MISSING_LABEL,
    UNKNOWN_LABEL,
    LabelCollector,
    Manifest,
    RowProblem,
    VideoRecord,
    Vocabulary,
    check_window,
    csv_rows,
    is_video_path,
    parse_time,
    read_text_file,
    resolve_vocabulary,
)
from openvocab.errors import InputError
from openvocab.io.discover import IMAGE_SUFFIXES, VIDEO_SUFFIXES

__all__ = ["read_hmdb51", "read_kinetics_csv", "read_ucf101"]

Subset = Literal["train", "test"]
_KINETICS_SUFFIXES = (".mp4", ".mkv", ".webm")


def _check_split(split: int, subset: str, *, dataset: str) -> None:
    if split not in (1, 2, 3) or isinstance(split, bool):
        raise InputError(f"{dataset} split must be 1, 2 or 3, got {split!r}")
    if subset not in ("train", "test"):
        raise InputError(f"{dataset} subset must be 'train' or 'test', got {subset!r}")


def _locate(root: Path, candidates: Sequence[str]) -> Path | None:
    """The first candidate (relative to ``root``) that is a video file or a frame folder."""
    for rel in candidates:
        path = root / rel
        if is_video_path(path):
            return path
    return None


def _video_root(video_root: str | os.PathLike[str], *, check_files: bool) -> Path:
    root = Path(video_root).expanduser().absolute()
    if check_files and not root.is_dir():
        raise InputError("video root is not a directory", path=root)
    return root


# --------------------------------------------------------------------------------------------------- Kinetics
class _FolderIndex:
    """Every video file and frame folder below a root, listed ONCE (one walk, not one glob per row).

    Lookups: by path relative to the root, and by name prefix (bisect over the sorted names).
    """

    def __init__(self, root: Path) -> None:
        self.by_rel: dict[str, Path] = {}
        entries: list[tuple[str, str]] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            here = Path(dirpath)
            has_images = False
            for name in sorted(filenames):
                suffix = os.path.splitext(name)[1].lower()
                if name.startswith("."):
                    continue
                if suffix in IMAGE_SUFFIXES:
                    has_images = True
                elif suffix in VIDEO_SUFFIXES:
                    path = here / name
                    self.by_rel[path.relative_to(root).as_posix()] = path
                    entries.append((name, str(path)))
            if has_images and here != root:
                self.by_rel[here.relative_to(root).as_posix()] = here
                entries.append((here.name, str(here)))
        entries.sort()
        self._names = [name for name, _ in entries]
        self._paths = [path for _, path in entries]

    def get(self, rel: str) -> Path | None:
        return self.by_rel.get(rel)

    def with_prefix(self, prefix: str) -> list[Path]:
        out = []
        at = bisect.bisect_left(self._names, prefix)
        while at < len(self._names) and self._names[at].startswith(prefix):
            out.append(Path(self._paths[at]))
            at += 1
        return out


def _kinetics_time(value: str) -> int:
    seconds = parse_time(value)
    if seconds is None:
        raise ValueError("empty time")
    return round(seconds)


def read_kinetics_csv(
    path: str | os.PathLike[str],
    *,
    video_root: str | os.PathLike[str],
    split: str | None = None,
    classes: Sequence[str] | str | os.PathLike[str] | None = None,
    check_files: bool = True,
) -> Manifest:
    """Read an official Kinetics annotation CSV (``label,youtube_id,time_start,time_end,split[,is_cc]``; the test
    CSV without ``label`` gives unlabelled records).

    ``split`` keeps only rows whose ``split`` column equals it (others are silently left out). ``classes`` fixes the
    vocabulary (a list or labels file, e.g. ``kinetics_k400.txt``); otherwise the sorted distinct labels.

    Videos are found as the common downloaders name them, from one walk of ``video_root``:
    ``{label}/{id}_{start:06d}_{end:06d}.{mp4,mkv,webm}`` (label as written or with ``_`` for spaces), then
    ``{id}_{start:06d}_{end:06d}.*`` at the root, then any file or frame folder below the root whose name starts
    with the youtube id. A trimmed clip (the ``{id}_{start}_{end}`` name) is the whole labelled window; any other
    match is taken to be the full YouTube video and gets ``start_s``/``end_s`` from the CSV. With
    ``check_files=False`` no folder is read and paths are the first naming pattern.
    """
    file = Path(path).expanduser()
    text = read_text_file(file, what="Kinetics CSV")
    source = str(file)
    root = _video_root(video_root, check_files=check_files)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [c.strip().lower() for c in next(reader, [])]
    need = ("youtube_id", "time_start", "time_end")
    if not all(n in header for n in need):
        got = ", ".join(header) or "nothing"
        raise InputError(f"not a Kinetics CSV: the header needs {', '.join(need)} (got {got})", path=file)
    col = {name: header.index(name) for name in header}
    has_label = "label" in col
    collector = LabelCollector(resolve_vocabulary(classes, where=source))
    index = _FolderIndex(root) if check_files else None
    pending: list[tuple[VideoRecord, list[int | str]]] = []
    problems: list[RowProblem] = []
    for line, cells in csv_rows(reader, source, problems):
        if len(cells) != len(header):
            message = f"malformed row: expected {len(header)} columns, got {len(cells)}"
            problems.append(RowProblem(source, line, message, MALFORMED))
            continue
        if split is not None and "split" in col and cells[col["split"]].strip() != split:
            continue
        youtube_id = cells[col["youtube_id"]].strip()
        if not youtube_id:
            problems.append(RowProblem(source, line, "malformed row: empty youtube_id", MALFORMED))
            continue
        label = " ".join(cells[col["label"]].split()) if has_label else ""
        labels: list[int | str] = []
        if has_label:
            if not label:
                problems.append(RowProblem(source, line, f"missing label for {youtube_id}", MISSING_LABEL))
                continue
            found, why = collector.lookup([label])
            if found is None:
                problems.append(RowProblem(source, line, f"{why} for {youtube_id}", UNKNOWN_LABEL))
                continue
            labels = found
        try:
            start, end = _kinetics_time(cells[col["time_start"]]), _kinetics_time(cells[col["time_end"]])
            check_window(start, end)
        except ValueError as exc:
            problems.append(RowProblem(source, line, f"bad time range for {youtube_id}: {exc}", BAD_TIME))
            continue
        stem = f"{youtube_id}_{start:06d}_{end:06d}"
        folders = list(dict.fromkeys([label, label.replace(" ", "_")])) if label else []
        if index is None:
            video, trimmed = root / (f"{folders[0]}/{stem}.mp4" if folders else f"{stem}.mp4"), True
        else:
            video, trimmed = _find_kinetics_video(index, folders, stem, youtube_id)
            if video is None:
                message = f"missing file: no {stem}.* or other {youtube_id} video under {root}"
                problems.append(RowProblem(source, line, message, MISSING_FILE))
                continue
        window = (None, None) if trimmed else (float(start), float(end))
        pending.append((VideoRecord(str(video), (), window[0], window[1], line), labels))
    records, names = collector.finish(pending)
    return Manifest(records, names, problems, f"kinetics {file.stem}" + (f" [{split}]" if split else ""))


def _find_kinetics_video(index: _FolderIndex, folders: list[str], stem: str, youtube_id: str) -> tuple[Path | None, bool]:
    """(video, is a trimmed clip) for one Kinetics row, or (None, False)."""
    for folder in folders:
        for suffix in ("", *_KINETICS_SUFFIXES):
            hit = index.get(f"{folder}/{stem}{suffix}")
            if hit is not None:
                return hit, True
    for suffix in _KINETICS_SUFFIXES + ("",):
        hit = index.get(f"{stem}{suffix}")
        if hit is not None:
            return hit, True
    matches = index.with_prefix(youtube_id)
    exact = [m for m in matches if m.name.split(".")[0] == stem]
    if exact:
        return exact[0], True
    # Another youtube id may extend this one as a prefix ("abc" vs "abcd"): the next character must end the id.
    matches = [m for m in matches if len(m.name) == len(youtube_id) or m.name[len(youtube_id)] in "._"]
    if not matches:
        return None, False
    in_label = [m for m in matches if m.parent.name in folders]
    return (in_label or matches)[0], False


# --------------------------------------------------------------------------------------------------- UCF101
def _content_lines(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_ucf101(
    split_dir: str | os.PathLike[str],
    *,
    video_root: str | os.PathLike[str],
    split: int = 1,
    subset: Subset = "train",
    check_files: bool = True,
) -> Manifest:
    """Read UCF101's official split (``ucfTrainTestlist``): ``classInd.txt`` (``"1 ApplyEyeMakeup"``) gives the
    classes in index order; ``trainlist0N.txt`` lines are ``"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"``,
    ``testlist0N.txt`` lines have no index (the class is the folder name, matched case-insensitively).

    Videos are looked up at ``{video_root}/{line path}``, then the same without the suffix (a frame folder), then
    the bare file name at the root.
    """
    _check_split(split, subset, dataset="UCF101")
    folder = Path(split_dir).expanduser()
    class_file = folder / "classInd.txt"
    list_file = folder / f"{subset}list{split:02d}.txt"
    problems: list[RowProblem] = []
    classes: list[str] = []
    by_number: dict[int, int] = {}
    for line, text in _content_lines(read_text_file(class_file, what="UCF101 classInd.txt")):
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit():
            message = f"malformed row: expected 'INDEX ClassName', got {text!r}"
            problems.append(RowProblem(str(class_file), line, message, MALFORMED))
            continue
        number = int(parts[0])
        if number in by_number or parts[1] in classes:
            problems.append(RowProblem(str(class_file), line, f"malformed row: class {text!r} repeats", MALFORMED))
            continue
        by_number[number] = len(classes)
        classes.append(parts[1])
    if not classes:
        raise InputError("UCF101 classInd.txt lists no classes", path=class_file)
    vocab = Vocabulary(classes)
    root = _video_root(video_root, check_files=check_files)
    source = str(list_file)
    records: list[VideoRecord] = []
    for line, text in _content_lines(read_text_file(list_file, what=f"UCF101 {list_file.name}")):
        parts = text.split()
        if len(parts) not in (1, 2) or (subset == "train" and len(parts) != 2):
            expected = "Class/video.avi INDEX" if subset == "train" else "Class/video.avi"
            problems.append(RowProblem(source, line, f"malformed row: expected '{expected}', got {text!r}", MALFORMED))
            continue
        rel = parts[0].replace("\\", "/")
        folder_name = rel.split("/")[0] if "/" in rel else None
        if len(parts) == 2:
            if not parts[1].isdigit() or int(parts[1]) not in by_number:
                message = f"unknown label index {parts[1]!r} for {rel}"
                problems.append(RowProblem(source, line, message, UNKNOWN_LABEL))
                continue
            label = by_number[int(parts[1])]
            if folder_name is not None and vocab.get(folder_name) not in (None, label):
                message = f"malformed row: index {parts[1]} ({classes[label]}) disagrees with folder {folder_name}"
                problems.append(RowProblem(source, line, message, MALFORMED))
                continue
        else:
            found = None if folder_name is None else vocab.get(folder_name)
            if found is None:
                message = f"unknown label '{folder_name or ''}' (from the folder of {rel})"
                problems.append(RowProblem(source, line, message, UNKNOWN_LABEL))
                continue
            label = found
        name = rel.split("/")[-1]
        candidates = [rel, os.path.splitext(rel)[0], name, os.path.splitext(name)[0]]
        video = _ucf_hmdb_video(root, candidates, check_files)
        if video is None:
            problems.append(RowProblem(source, line, f"missing file {root / rel}", MISSING_FILE))
            continue
        records.append(VideoRecord(str(video), (label,), None, None, line))
    return Manifest(records, classes, problems, f"ucf101 {list_file.stem}")


def _ucf_hmdb_video(root: Path, candidates: list[str], check_files: bool) -> Path | None:
    if not check_files:
        return root / candidates[0]
    return _locate(root, list(dict.fromkeys(candidates)))


# --------------------------------------------------------------------------------------------------- HMDB51
_HMDB_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>[123])\.txt$")
_HMDB_CODES = {"train": "1", "test": "2"}


def read_hmdb51(
    split_dir: str | os.PathLike[str],
    *,
    video_root: str | os.PathLike[str],
    split: int = 1,
    subset: Subset = "train",
    check_files: bool = True,
) -> Manifest:
    """Read HMDB51's official split (``testTrainMulti_7030_splits``): one ``<class>_test_split<N>.txt`` per class,
    lines ``"video.avi 1"`` (1 = train, 2 = test, 0 = unused). Classes are the file-name classes, sorted by name.

    Videos are looked up at ``{video_root}/{class}/{video}``, then ``{video_root}/{video}``, then both without
    the suffix (frame folders). Problems name the per-class split file and its line.
    """
    _check_split(split, subset, dataset="HMDB51")
    folder = Path(split_dir).expanduser()
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise InputError(f"cannot read the HMDB51 split folder ({exc.strerror or exc})", path=folder) from None
    files: dict[str, Path] = {}
    for name in names:
        match = _HMDB_FILE.match(name)
        if match and int(match["split"]) == split:
            files[match["cls"]] = folder / name
    if not files:
        raise InputError(f"no HMDB51 files '*_test_split{split}.txt' in this folder", path=folder)
    classes = sorted(files)
    root = _video_root(video_root, check_files=check_files)
    want = _HMDB_CODES[subset]
    records: list[VideoRecord] = []
    problems: list[RowProblem] = []
    for label, cls in enumerate(classes):
        source = str(files[cls])
        for line, text in _content_lines(read_text_file(files[cls], what="HMDB51 split file")):
            parts = text.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                message = f"malformed row: expected 'video.avi 0|1|2', got {text!r}"
                problems.append(RowProblem(source, line, message, MALFORMED))
                continue
            if parts[1] != want:
                continue
            name = parts[0]
            stem = os.path.splitext(name)[0]
            video = _ucf_hmdb_video(root, [f"{cls}/{name}", name, f"{cls}/{stem}", stem], check_files)
            if video is None:
                problems.append(RowProblem(source, line, f"missing file {root / cls / name}", MISSING_FILE))
                continue
            records.append(VideoRecord(str(video), (label,), None, None, line))
    return Manifest(records, classes, problems, f"hmdb51 split{split} {subset}")
