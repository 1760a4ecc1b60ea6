"""Turning what a user typed (files, directories, glob patterns) into a list of videos to process.

Batch commands never stop at the first bad path: :func:`expand_inputs` returns the videos it found together with
one-line problems for the paths that gave nothing, and the caller reports those at the end.

Hostile trees are searched safely:

* directory symbolic links are followed, but every real directory (``st_dev``, ``st_ino``) is searched once, so a
  loop (``ln -s . loop/m1; ln -s . loop/m2``) ends at once and finds each video once; ``**`` patterns use the same
  walk (Python's ``glob`` would follow such links 40 levels deep, 2**40 paths);
* a symbolic link that leads nowhere (dangling, or a cycle of links) is a problem of its own when its name looks
  like a video (``clip.mp4 -> missing``), and is ignored otherwise (a link to a missing folder may have held
  videos, but there is nothing to search); either way the rest of the folder is searched;
* a FIFO, socket or device is never opened (reading a FIFO blocks until a writer comes): named directly, or with a
  video suffix inside a folder, it is a problem "not a regular file (a FIFO)";
* names are taken as they are: unicode, spaces, a leading ``-`` (give those after ``--`` on a command line).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "broken_link_reason",
    "expand_inputs",
    "file_kind",
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
Problems = list[tuple[str, str]]


def natural_sort_key(name: str | os.PathLike[str]) -> tuple[object, ...]:
    """Sort key putting ``img_2`` before ``img_10`` (digit runs compare as numbers, text case-insensitively)."""
    parts = _DIGITS.split(str(name))
    # split() alternates text/digits starting with text, so equal positions always hold the same type.
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts))


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages: "a FIFO", "a character device", ..."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def broken_link_reason(path: str | os.PathLike[str]) -> str | None:
    """Why the symbolic link ``path`` leads nowhere ("broken symbolic link ...", "symbolic link loop"), or None when
    ``path`` is not a link or its target exists."""
    try:
        if not os.path.islink(path):
            return None
        os.stat(path)
        return None
    except FileNotFoundError:
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"broken symbolic link (its target {target} does not exist)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the links point at each other)"
        return f"cannot follow symbolic link: {exc.strerror or exc}"


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _is_video_name(name: str) -> bool:
    return Path(name).suffix.lower() in VIDEO_SUFFIXES


def list_frame_images(directory: str | os.PathLike[str]) -> list[Path]:
    """The image files directly inside ``directory`` in natural order (hidden files and unreadable entries ignored)."""
    names = []
    with os.scandir(directory) as it:
        for e in it:
            if _visible(e.name) and Path(e.name).suffix.lower() in IMAGE_SUFFIXES and _safe(e.is_file):
                names.append(e.name)
    return [Path(directory) / n for n in sorted(names, key=natural_sort_key)]


def _safe(check) -> bool:
    try:
        return bool(check())
    except OSError:
        return False


def is_frame_folder(directory: str | os.PathLike[str]) -> bool:
    """True when ``directory`` holds image files and neither video files nor sub-directories: ONE video. A link
    back to the directory itself or an ancestor is not a sub-directory (it holds nothing new)."""
    try:
        key = _dir_key(directory)
        ancestors = {key, *(_dir_key(p) for p in Path(os.path.abspath(directory)).parents)}
        with os.scandir(directory) as it:
            entries = [e for e in it if _visible(e.name)]
    except OSError:
        return False
    images = False
    for e in entries:
        try:
            st = os.stat(e.path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) not in ancestors:
                return False
            continue
        suffix = Path(e.name).suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            return False
        images = images or (suffix in IMAGE_SUFFIXES and stat.S_ISREG(st.st_mode))
    return images


def _dir_key(path: str | os.PathLike[str]) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _walk_directory(root: Path, problems: Problems, visited: set[tuple[int, int]] | None = None) -> list[Path]:
    """Video files and frame folders below ``root``, depth-first in natural order; every real directory once."""
    visited = set() if visited is None else visited
    try:
        key = _dir_key(root)
        if key in visited:  # reached again through a symbolic link: already searched
            return []
        visited.add(key)
        if is_frame_folder(root):
            return [root]
        with os.scandir(root) as it:
            entries = sorted((e.name for e in it if _visible(e.name)), key=natural_sort_key)
    except OSError as exc:
        problems.append((str(root), f"cannot read directory: {exc.strerror or exc}"))
        return []
    found: list[Path] = []
    for name in entries:
        path = root / name
        try:
            st = os.stat(path)  # follows symbolic links
        except OSError as exc:
            if _is_video_name(name):
                problems.append((str(path), broken_link_reason(path) or f"cannot read: {exc.strerror or exc}"))
            continue  # a broken link without a video name: nothing to search (module doc)
        if stat.S_ISDIR(st.st_mode):
            found.extend(_walk_directory(path, problems, visited))
        elif _is_video_name(name):
            if stat.S_ISREG(st.st_mode):
                found.append(path)
            else:
                problems.append((str(path), f"not a regular file ({file_kind(st.st_mode)})"))
    return found


# --------------------------------------------------------------------------------------------------- glob
def _split_pattern(pattern: str) -> tuple[str, list[str]]:
    """``(anchor, components)``: the anchor is ``/`` (or a drive) for an absolute pattern, ``""`` otherwise."""
    drive, rest = os.path.splitdrive(pattern)
    if os.altsep:
        rest = rest.replace(os.altsep, os.sep)
    anchor = drive + os.sep if rest.startswith(os.sep) else drive
    return anchor, [p for p in rest.split(os.sep) if p]


def _listdir(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory or os.curdir), key=natural_sort_key)
    except OSError:
        return []


def _dirs_below(base: str) -> list[str]:
    """``base`` and every visible directory below it, each real directory once (the walk of ``**``)."""
    out: list[str] = []
    visited: set[tuple[int, int]] = set()

    def visit(directory: str) -> None:
        try:
            key = _dir_key(directory or os.curdir)
        except OSError:
            return
        if key in visited:
            return
        visited.add(key)
        out.append(directory)
        for name in _listdir(directory):
            path = os.path.join(directory, name) if directory else name
            if _visible(name) and _safe(lambda p=path: os.path.isdir(p)):
                visit(path)

    visit(base)
    return out


def _glob(pattern: str) -> list[str]:
    """Paths matching ``pattern`` as :func:`glob.glob` (``recursive=True``) matches them (hidden names only for a
    component starting with ``.``), but with ``**`` walked once per real directory, so link loops end."""
    anchor, parts = _split_pattern(pattern)
    out: list[str] = []

    def match(base: str, rest: list[str]) -> None:
        if not rest:
            out.append(base)
            return
        head, tail = rest[0], rest[1:]
        if head == "**":
            for directory in _dirs_below(base):
                if tail:
                    match(directory, tail)
                else:  # "dir/**": the directories and every visible entry below them
                    if directory != base:
                        out.append(directory)
                    for name in _listdir(directory):
                        path = os.path.join(directory, name) if directory else name
                        if _visible(name) and not _safe(lambda p=path: os.path.isdir(p)):
                            out.append(path)
            return
        if not _GLOB_CHARS.search(head):
            path = os.path.join(base, head) if base else head
            if tail:
                if _safe(lambda: os.path.isdir(path)):
                    match(path, tail)
            elif os.path.lexists(path):
                out.append(path)
            return
        for name in _listdir(base):
            if (_visible(name) or head.startswith(".")) and fnmatch.fnmatch(name, head):
                path = os.path.join(base, name) if base else name
                if not tail:
                    out.append(path)
                elif _safe(lambda p=path: os.path.isdir(p)):
                    match(path, tail)

    match(anchor, parts)
    return list(dict.fromkeys(out))


def _expand_glob(pattern: str, problems: Problems) -> list[Path]:
    matches = sorted(_glob(pattern), key=natural_sort_key)
    explicit_suffix = Path(pattern).suffix.lower()
    explicit = bool(explicit_suffix) and not _GLOB_CHARS.search(explicit_suffix)
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()
    for m in matches:
        path = Path(m)
        wanted = _is_video_name(m) or explicit
        try:
            st = os.stat(path)
        except OSError as exc:
            if wanted:
                problems.append((m, broken_link_reason(path) or f"cannot read: {exc.strerror or exc}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            found.extend(_walk_directory(path, problems, visited))
        elif wanted:
            if stat.S_ISREG(st.st_mode):
                found.append(path)
            else:
                problems.append((m, f"not a regular file ({file_kind(st.st_mode)})"))
    return found


def expand_inputs(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], Problems]:
    """Expand user inputs into ``(videos, problems)``.

    * a regular file is kept whatever its suffix (decoding judges it); a FIFO, socket or device -> problem
      "not a regular file (a FIFO)" (never opened); a dangling or looping symbolic link -> problem;
    * a directory is searched recursively for video files (natural order; symbolic links followed, each real
      directory once); a directory holding images and no videos or sub-directories is one frame-folder video;
      nothing usable -> problem "no videos found in directory";
    * a glob pattern (``*.mp4``, ``**/*.mkv``) is expanded; no match -> problem;
    * a missing path -> problem "no such file or directory".

    Results are de-duplicated (by resolved path) keeping first-seen order; problems are ``(path, one-line reason)``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    videos: list[Path] = []
    problems: Problems = []
    seen: set[str] = set()

    def add(candidates: list[Path]) -> None:
        for c in candidates:
            try:
                key = str(c.resolve())
            except (OSError, RuntimeError):
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
            st = os.stat(text)
        except OSError as exc:
            link = broken_link_reason(text)
            if link is not None:
                problems.append((text, link))
            elif isinstance(exc, FileNotFoundError) and _GLOB_CHARS.search(text):
                found = _expand_glob(text, problems)
                if not found:
                    problems.append((text, "no videos match this pattern"))
                add(found)
            elif isinstance(exc, FileNotFoundError):
                problems.append((text, "no such file or directory"))
            else:
                problems.append((text, f"cannot access: {exc.strerror or exc}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            found = _walk_directory(path, problems)
            if not found:
                problems.append((text, "no videos found in directory"))
            add(found)
        elif stat.S_ISREG(st.st_mode):
            add([path])
        else:
            problems.append((text, f"not a regular file ({file_kind(st.st_mode)})"))
    return videos, _unique_problems(problems)


def _unique_problems(problems: Problems) -> Problems:
    """Each problem once, also when links made the search meet the same entry under several paths."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for path, why in problems:
        try:
            key = os.path.join(os.path.realpath(os.path.dirname(path) or os.curdir), os.path.basename(path))
        except (OSError, ValueError):
            key = path
        out.setdefault((key, why), (path, why))
    return list(out.values())
