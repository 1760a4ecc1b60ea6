"""Server-side paths: ``POST /classify`` with ``path=`` reads files inside ``--media-root`` and nowhere else (issue 10
part 3).

:meth:`MediaRoot.resolve` refuses, before anything is opened: NUL bytes and other control characters (400),
backslashes, absolute paths, ``..`` components -- also in URL-encoded or double-encoded spellings (``%2e%2e%2f``,
``%252e``) -- (403), and any path whose real location (symbolic links followed) is outside the root (403). Only a
regular file passes (a FIFO would block a reader; a directory is not a video). Only then is the file opened, by
:func:`read_head` (the content sniff) and the decoder. The root is resolved once, at start-up.

What this does not cover: a local user who can write inside the media root can swap a checked component for a
symbolic link between the check and the read. Point ``--media-root`` at a folder only trusted users write to.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from openvocab.serve.errors import ServeError
from openvocab.serve.limits import SNIFF_BYTES

MAX_PATH_CHARS = 4096


class MediaRoot:
    """The allow-listed folder of path mode (``None`` root: path mode is off, every path is refused with 403)."""

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root: Path | None = None
        if root is not None:
            path = Path(root).expanduser()
            if not path.is_dir():
                raise ValueError(f"--media-root {root}: not a directory")
            self.root = path.resolve(strict=True)

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def resolve(self, raw: str) -> tuple[Path, str]:
        """``(real path, the relative path to show the user)`` of ``raw``, or a :class:`ServeError` (see the module)."""
        if self.root is None:
            raise ServeError(403, "path mode is off: this server has no --media-root; upload the file instead")
        if not raw or len(raw) > MAX_PATH_CHARS:
            raise ServeError(400, f"path must be 1 to {MAX_PATH_CHARS} characters")
        for form in _spellings(raw):
            if "\x00" in form or any(ord(ch) < 32 or ord(ch) == 127 for ch in form):
                raise ServeError(400, "path contains a NUL byte or control characters")
            if "\\" in form:
                raise ServeError(403, "path must use '/' separators (backslashes are refused)")
            if form.startswith("/"):
                raise ServeError(403, "path must be relative to the media root")
            if ".." in PurePosixPath(form).parts:
                raise ServeError(403, "path must stay inside the media root ('..' is refused)")
        shown = str(PurePosixPath(raw))
        real = Path(os.path.realpath(self.root / raw))  # every symbolic link followed; a loop stays unresolved
        if real != self.root and self.root not in real.parents:
            raise ServeError(403, f"{shown}: outside the media root")
        try:
            mode = real.stat().st_mode
        except FileNotFoundError:
            raise ServeError(404, f"{shown}: no such file in the media root") from None
        except PermissionError:
            raise ServeError(403, f"{shown}: permission denied") from None
        except OSError:  # a symbolic-link loop (ELOOP), a name too long ...
            raise ServeError(404, f"{shown}: cannot be opened") from None
        if stat.S_ISDIR(mode):
            raise ServeError(400, f"{shown}: is a directory, not a video file")
        if not stat.S_ISREG(mode):
            raise ServeError(400, f"{shown}: not a regular file")
        return real, shown


def _spellings(raw: str) -> list[str]:
    """``raw`` and its URL-decoded forms (up to three rounds: double- and triple-encoded separators are decoded too)."""
    forms = [raw]
    for _ in range(3):
        decoded = unquote(forms[-1], errors="replace")
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    return forms


def read_head(path: str | os.PathLike[str], n: int = SNIFF_BYTES) -> bytes:
    """The first ``n`` bytes of a checked file (the content sniff), opened without following a final symbolic link
    (:meth:`MediaRoot.resolve` returned its real path) and without blocking on a FIFO swapped in after the check."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except PermissionError:
        raise ServeError(403, "permission denied") from None
    except OSError:
        raise ServeError(404, "cannot be opened") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ServeError(400, "not a regular file")
        return os.read(fd, n)
    finally:
        os.close(fd)
