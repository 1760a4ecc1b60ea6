"""User-facing errors.

Every error a user can cause (a bad file, a bad label list, a model that cannot be found) is raised as an
:class:`OpenVocabError` whose ``str()`` is ONE line naming the thing and the problem. The CLI prints that line and
exits non-zero; it never shows a traceback for these. Anything else escaping is a bug in openvocab.
"""

from __future__ import annotations

from pathlib import Path


class OpenVocabError(Exception):
    """Base class: the message is a complete, single-line explanation for the user."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        line = " ".join(str(message).split())  # guarantee one line
        super().__init__(f"{self.path}: {line}" if self.path else line)


class InputError(OpenVocabError):
    """A user-supplied input (path, label list, option value) is unusable."""


class VideoDecodeError(InputError):
    """A file exists but is not a decodable video (corrupt, truncated, audio-only, not a video at all)."""


class ModelLoadError(OpenVocabError):
    """A model or tokenizer could not be loaded (missing weights, offline hub id, wrong directory)."""
