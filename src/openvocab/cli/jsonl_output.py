"""Batch output that survives faults: ``openvocab classify FOLDER -o results.jsonl`` writes one JSON line per finished
video, appended and fsynced as it finishes, so a batch killed at any point (Ctrl-C, SIGKILL, a power cut) keeps every
video it finished, and ``--resume`` continues it:

* without ``--resume`` an existing non-empty output is REFUSED (nothing is overwritten or mixed): continue it with
  ``--resume``, or name another file;
* with ``--resume`` the videos the file already holds (by path, as given) are skipped; a half-written last line (a kill
  in the middle of a write) is cut off first, so the file ends with complete lines only and each video appears once;
* failed videos are reported on stderr, not written, so a resumed run tries them again.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from openvocab.errors import InputError


def prepare_jsonl_output(path: Path, *, resume: bool) -> set[str]:
    """Check (and, with ``resume``, repair) the output; returns the video paths it already holds."""
    path = path.expanduser()
    if path.is_dir():
        raise InputError("is a directory; give a file for the JSON-lines results", path=path)
    if not path.exists() or (not resume and path.is_file() and path.stat().st_size == 0):
        path.parent.mkdir(parents=True, exist_ok=True)
        return set()
    if not path.is_file():
        if resume:
            raise InputError("--resume needs a regular file to read back (this is a FIFO or a device)", path=path)
        return set()
    if not resume:
        raise InputError("already holds results; continue it with --resume, or choose another file (nothing was overwritten)", path=path)
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut < len(data):  # a line cut short by a kill: drop it, its video is classified again
        with open(path, "r+b") as fh:
            fh.truncate(cut)
            os.fsync(fh.fileno())
        print(f"warning: {path}: dropped a half-written last line ({len(data) - cut} bytes)", file=sys.stderr)
    done: set[str] = set()
    for number, line in enumerate(data[:cut].decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise InputError(f"line {number} is not JSON; it is not an openvocab results file (nothing was changed)", path=path) from None
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            raise InputError(f"line {number} has no 'path'; it is not an openvocab results file (nothing was changed)", path=path)
        done.add(row["path"])
    return done


class JsonlSink:
    """Appends one JSON line per result to ``path`` (one ``write`` on an ``O_APPEND`` descriptor, then ``fsync``), or
    prints it to stdout when ``path`` is None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path.expanduser() if path is not None else None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666) if self.path is not None else None

    def write(self, result) -> None:
        line = (json.dumps(result.to_dict(), ensure_ascii=False) + "\n").encode("utf-8")
        if self._fd is None:
            sys.stdout.write(line.decode("utf-8"))
            sys.stdout.flush()
            return
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if os.path.isfile(self.path):
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
