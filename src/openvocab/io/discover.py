"""Turning what a user typed (files, directories, glob patterns) into a list of videos to process.

Batch commands never stop at the first bad path: :func:`expand_inputs` returns the videos it found together with
one-line problems for the paths that gave nothing, and the caller reports those at the end.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "expand_inputs",
    "is_frame_folder",
    "list_frame_images",
    "natural_sort_key",
]

VIDEO_SUFFIXES: frozenset[str] = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg", ".wmv", ".flv",
        ".3gp", ".ogv", ".ts", ".mts", ".m2ts", ".vob", ".asf",
    }
)  # fmt: skip
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

_DIGITS = re.compile(r"(\d+)")
_GLOB_CHARS = re.compile(r"[*?\[]")


def natural_sort_key(name: str | os.PathLike[str]) -> tuple[object, ...]:
    """Sort key putting ``img_2`` before ``img_10`` (digit runs compare as numbers, text case-insensitively)."""
    parts = _DIGITS.split(str(name))
    # split() alternates text/digits starting with text, so equal positions always hold the same type.
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts))


def _visible(entry: os.DirEntry[str]) -> bool:
    return not entry.name.startswith(".")


def list_frame_images(directory: str | os.PathLike[str]) -> list[Path]:
    """The image files directly inside ``directory`` in natural order (hidden files ignored)."""
    with os.scandir(directory) as it:
        names = [e.name for e in it if _visible(e) and e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES]
    return [Path(directory) / n for n in sorted(names, key=natural_sort_key)]


def is_frame_folder(directory: str | os.PathLike[str]) -> bool:
    """True when ``directory`` holds image files and neither video files nor sub-directories: ONE video."""
    images = False
    with os.scandir(directory) as it:
        for e in it:
            if not _visible(e):
                continue
            if e.is_dir():
                return False
            suffix = Path(e.name).suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                return False
            images = images or suffix in IMAGE_SUFFIXES
    return images


def _walk_directory(root: Path, problems: list[tuple[str, str]]) -> list[Path]:
    """Video files and frame folders below ``root``, depth-first in natural order."""
    found: list[Path] = []
    try:
        if is_frame_folder(root):
            return [root]
        with os.scandir(root) as it:
            entries = sorted((e for e in it if _visible(e)), key=lambda e: natural_sort_key(e.name))
    except OSError as exc:
        problems.append((str(root), f"cannot read directory: {exc.strerror or exc}"))
        return found
    for e in entries:
        path = root / e.name
        try:
            if e.is_dir():
                found.extend(_walk_directory(path, problems))
            elif e.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
                found.append(path)
        except OSError as exc:
            problems.append((str(path), f"cannot read: {exc.strerror or exc}"))
    return found


def _expand_glob(pattern: str, problems: list[tuple[str, str]]) -> list[Path]:
    matches = sorted(glob.glob(pattern, recursive=True), key=natural_sort_key)
    explicit_suffix = Path(pattern).suffix.lower()
    explicit = bool(explicit_suffix) and not _GLOB_CHARS.search(explicit_suffix)
    found: list[Path] = []
    for m in matches:
        path = Path(m)
        if path.is_dir():
            found.extend(_walk_directory(path, problems))
        elif path.is_file() and (path.suffix.lower() in VIDEO_SUFFIXES or explicit):
            found.append(path)
    return found


def expand_inputs(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand user inputs into ``(videos, problems)``.

    * a file is kept whatever its suffix (decoding judges it);
    * a directory is searched recursively for video files (natural order); a directory holding images and no
      videos or sub-directories is one frame-folder video; nothing usable -> problem "no videos found in directory";
    * a glob pattern (``*.mp4``, ``**/*.mkv``) is expanded; no match -> problem;
    * a missing path -> problem "no such file or directory".

    Results are de-duplicated (by resolved path) keeping first-seen order; problems are ``(path, one-line reason)``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    videos: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(candidates: list[Path]) -> None:
        for c in candidates:
            try:
                key = str(c.resolve())
            except OSError:
                key = os.path.abspath(c)
            if key not in seen:
                seen.add(key)
                videos.append(c)

    for raw in paths:
        text = os.path.expanduser(os.fspath(raw))
        if not text.strip():
            problems.append((str(raw), "empty path"))
            continue
        path = Path(text)
        try:
            exists = path.exists()
        except OSError as exc:
            problems.append((text, f"cannot access: {exc.strerror or exc}"))
            continue
        if exists:
            if path.is_dir():
                found = _walk_directory(path, problems)
                if not found:
                    problems.append((text, "no videos found in directory"))
                add(found)
            else:
                add([path])
        elif _GLOB_CHARS.search(text):
            found = _expand_glob(text, problems)
            if not found:
                problems.append((text, "no videos match this pattern"))
            add(found)
        else:
            problems.append((text, "no such file or directory"))
    return videos, problems
