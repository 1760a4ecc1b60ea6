"""Request limits of ``openvocab serve`` and the pure checks behind them (issue 10 part 3).

* :class:`Limits` -- upload size (413), label count and length (422), frames / views / segments per request (400);
* :func:`sniff_video` -- the container type from the first bytes of a file (magic numbers), never from its name:
  anything else is refused with 415 before FFmpeg sees it;
* :func:`check_labels` -- count, length and control characters, then :func:`openvocab.text.prompts.clean_labels`
  (the library's one cleaning rule: whitespace collapsed, case-insensitive duplicates dropped with a warning).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from openvocab.errors import InputError
from openvocab.serve.errors import ServeError
from openvocab.text import label_bank as _label_bank
from openvocab.text.prompts import clean_labels

SNIFF_BYTES = 512  # enough for every signature below (MPEG-TS needs three 188-byte packets: 0, 188, 376)
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: saved-vocabulary names: the label bank's rule (the same pattern where an older bank has none)
VOCABULARY_NAME: re.Pattern = getattr(_label_bank, "VOCABULARY_NAME", None) or re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # tab / newline are whitespace (collapsed), not refused


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. ``max_upload_bytes``: the uploaded file (the multipart body may exceed it by
    ``max_form_bytes`` of other fields); ``max_frames_total``: frames x temporal views x crops decoded per video."""

    max_upload_bytes: int = 200 * 1024 * 1024
    max_labels: int = 1000
    max_label_length: int = 200
    max_form_bytes: int = 1024 * 1024
    max_frames: int = 256
    max_segments: int = 256
    max_frames_total: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_labels", "max_label_length", "max_form_bytes", "max_frames", "max_segments", "max_frames_total"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def max_body_bytes(self) -> int:
        """The most a ``POST /classify`` body may hold: the file plus the other fields and multipart framing."""
        return self.max_upload_bytes + self.max_form_bytes


# ---------------------------------------------------------------------------------------------------------------------
def sniff_video(head: bytes) -> str | None:
    """The container a file's first bytes announce (a file suffix for it: ``.mp4``, ``.mkv``, ...), or ``None`` when
    they are no known video container. Checked: ISO BMFF / QuickTime (``ftyp``, or an old QuickTime atom at offset 4),
    Matroska / WebM (EBML ``1A 45 DF A3``), AVI (``RIFF....AVI ``), GIF, MPEG-TS (0x47 sync every 188 bytes, or every
    192 in M2TS), MPEG program / elementary streams (``00 00 01 BA`` / ``B3``), Ogg, FLV, ASF / WMV."""
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return ".mov" if head[8:10] == b"qt" else ".mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip") and int.from_bytes(head[:4], "big") >= 8:
        return ".mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ".mkv"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return ".avi"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return ".gif"
    if len(head) > 376 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return ".ts"
    if len(head) > 388 and head[4] == 0x47 and head[196] == 0x47 and head[388] == 0x47:
        return ".m2ts"
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return ".mpg"
    if head.startswith(b"OggS"):
        return ".ogv"
    if head.startswith(b"FLV\x01"):
        return ".flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return ".wmv"
    return None


def not_a_video(name: str) -> ServeError:
    return ServeError(415, f"{name}: not a video by its content (accepted: mp4/mov, mkv/webm, avi, gif, mpeg-ts, mpeg, ogg, flv, asf)")


# ---------------------------------------------------------------------------------------------------------------------
def check_labels(labels: list[str], limits: Limits) -> tuple[list[str], list[str]]:
    """``(cleaned labels, warnings)`` or a 422 :class:`ServeError`: none, more than ``max_labels``, one longer than
    ``max_label_length`` characters, or one with control characters. The count is checked before cleaning, so a
    list of a million duplicates is refused without being cleaned."""
    if not any(isinstance(label, str) and label.strip() for label in labels):
        raise ServeError(422, "no labels given: type labels (one per line, or comma-separated) or choose a saved vocabulary")
    if len(labels) > limits.max_labels:
        raise ServeError(422, f"too many labels: {len(labels)} (this server takes at most {limits.max_labels} per request)")
    for label in labels:
        if not isinstance(label, str):
            raise ServeError(422, "labels must be strings")
        if _CONTROL.search(label):
            raise ServeError(422, f"label {_short(label)!r} contains control characters")
        if len(label) > limits.max_label_length:
            raise ServeError(422, f"label {_short(label)!r} is {len(label)} characters long (this server takes at most {limits.max_label_length})")
    try:
        return clean_labels(labels)
    except InputError as exc:
        raise ServeError(422, str(exc)) from None


def _short(text: str, n: int = 40) -> str:
    text = _CONTROL.sub("?", text)
    return text if len(text) <= n else text[: n - 1] + "…"


def display_name(filename: str | None) -> str:
    """What an uploaded file is called in responses: the last component of the client's name (either slash), without
    control characters, at most 255 characters (``upload`` when nothing is left). It is never used as a path."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:255] or "upload"
