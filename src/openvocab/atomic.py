"""Atomic file writes: nothing a user wrote is ever lost or half-written.

Data goes to a temporary file in the target's directory, is flushed and fsynced, then renamed over the target
(``os.replace`` is atomic on POSIX and Windows). On any error the temporary file is removed and the target is
untouched. Deliberately:

* a target that is a symbolic link is followed: the file it points to is replaced, the link stays a link;
* a replaced file keeps its permission bits; a new file (or directory) gets the usual ``0o666`` (``0o777``) minus
  the process umask, as ``open`` would give it (``mkstemp`` alone would leave it ``0o600``);
* a target that exists and is not a regular file (a FIFO, a character device such as ``/dev/stdout`` or
  ``/dev/null``, a socket) cannot be replaced atomically and must never be turned into a file: :func:`atomic_write`
  writes through to it instead (``write_through``), and :func:`atomic_path` refuses it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_special_file(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` exists (after symbolic links) and is not a regular file or a directory."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _resolved(target: Path) -> Path:
    """A symbolic link's final target (the file to replace); other paths unchanged."""
    return Path(os.path.realpath(target)) if target.is_symlink() else target


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is fsynced and renamed to ``target``.

    For writers that want a file name (safetensors ``save_file``, PyAV, ``np.savez``). ``suffix`` defaults to the
    target's, so format-by-extension writers keep working. A symbolic link is followed; a non-regular target (FIFO,
    device) raises ``OSError`` (module docstring).
    """
    target = _resolved(Path(target))
    if is_special_file(target):
        raise OSError(f"{target} is not a regular file (a FIFO or a device); refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix if suffix is None else suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success its files are fsynced and it is renamed to
    ``target``, so ``target`` is either complete or absent (or, on failure, unchanged).

    An existing ``target`` that is a non-empty directory (or a file) raises :class:`FileExistsError` unless
    ``overwrite``; then the old one is moved aside, the new one renamed in, and the old one deleted.
    """
    import shutil

    target = Path(target)
    if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} already exists and is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb+") as fh:
                    os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0o700
        old = None
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent)) / target.name
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write(target: str | os.PathLike[str], data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text encoded with ``encoding`` and ``\\n`` newlines) to ``target`` atomically; to a
    FIFO or a device it is written through (module docstring)."""
    payload = data.encode(encoding) if isinstance(data, str) else data
    if is_special_file(target):
        with open(target, "wb") as fh:
            fh.write(payload)
        return Path(target)
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
    return Path(target)
