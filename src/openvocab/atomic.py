"""Atomic file writes: nothing a user wrote is ever lost or half-written.

Data goes to a temporary file in the target's directory, is flushed and fsynced, then renamed over the target
(``os.replace`` is atomic on POSIX and Windows). On any error the temporary file is removed and the target is
untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is fsynced and renamed to ``target``.

    For writers that want a file name (safetensors ``save_file``, PyAV, ``np.savez``). ``suffix`` defaults to the
    target's, so format-by-extension writers keep working.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix if suffix is None else suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(target: str | os.PathLike[str], data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text encoded with ``encoding`` and ``\\n`` newlines) to ``target`` atomically."""
    payload = data.encode(encoding) if isinstance(data, str) else data
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
    return Path(target)
