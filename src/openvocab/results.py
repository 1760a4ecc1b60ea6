"""Plain result objects returned by :meth:`openvocab.VideoClassifier.classify`, and their JSON / CSV / table forms."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

#: Words that start every "fewer timeline segments than asked" warning (the CLI shows those only with a timeline).
TIMELINE_NOTE = "the timeline has"


@dataclass(frozen=True)
class LabelScore:
    """One label and its score: a probability (single-label softmax) or an independent sigmoid (multi-label)."""

    label: str
    score: float


@dataclass(frozen=True)
class SegmentResult:
    """Scores of one time window of the video (a row of the timeline)."""

    start_s: float
    end_s: float
    labels: list[LabelScore]


@dataclass
class ClipResult:
    """The result for one video.

    ``modalities`` lists the inputs used (``rgb``; a MOV run's ``flow`` / ``audio`` when the video has them) and
    ``scoring`` names the probability rule when the recogniser has several (MOV's base / novel inference).
    ``labels`` holds the ``top_k`` best labels, best first. ``predicted`` is what applies: the top label for
    single-label scoring, every label whose score reaches ``threshold`` for multi-label scoring, whose scores are
    ``σ(a·cos + b)`` with the model's calibration: ``calibration`` shows which (``source``, ``scale``, ``bias`` and
    its own ``threshold``; ``threshold`` is the one applied). ``error`` is set (and everything else empty) when the
    video could not be classified.
    """

    path: str
    labels: list[LabelScore] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)
    segments: list[SegmentResult] = field(default_factory=list)
    multi_label: bool = False
    threshold: float | None = None
    calibration: dict | None = None  # multi-label: the calibration applied (source, scale, bias, threshold)
    duration_s: float = 0.0
    frames_sampled: int = 0
    views: str = "1x1"
    modalities: list[str] = field(default_factory=lambda: ["rgb"])  # the inputs the scores came from
    scoring: str | None = None  # the rule, for recognisers with several (MOV: base Eq. 10, novel Eq. 11-12, video only)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def top(self) -> LabelScore | None:
        return self.labels[0] if self.labels else None

    def to_dict(self) -> dict:
        return asdict(self)


def to_json(results: Sequence[ClipResult]) -> str:
    """All results as one JSON document (a list of objects, one per video)."""
    return json.dumps([r.to_dict() for r in results], indent=2, ensure_ascii=False)


CSV_COLUMNS = ("path", "scope", "start_s", "end_s", "rank", "label", "score", "predicted", "error")


def csv_rows(results: Iterable[ClipResult]) -> Iterable[dict]:
    """Long-format rows: one per (video, clip-or-segment, ranked label); failed videos give one row with ``error``."""
    for r in results:
        if not r.ok:
            yield {"path": r.path, "scope": "clip", "error": r.error}
            continue
        for rank, ls in enumerate(r.labels, 1):
            yield {
                "path": r.path,
                "scope": "clip",
                "start_s": 0.0,
                "end_s": round(r.duration_s, 3),
                "rank": rank,
                "label": ls.label,
                "score": f"{ls.score:.6f}",
                "predicted": int(ls.label in r.predicted),
            }
        for seg in r.segments:
            for rank, ls in enumerate(seg.labels, 1):
                yield {
                    "path": r.path,
                    "scope": "segment",
                    "start_s": round(seg.start_s, 3),
                    "end_s": round(seg.end_s, 3),
                    "rank": rank,
                    "label": ls.label,
                    "score": f"{ls.score:.6f}",
                }


def to_csv(results: Sequence[ClipResult]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in csv_rows(results):
        writer.writerow(row)
    return buf.getvalue()


#: Characters that must not reach a terminal as they are: C0 controls (escape sequences start with ESC, \x1b), DEL,
#: C1 controls (\x9b is a one-byte CSI), the bidirectional overrides and isolates that reorder what is shown ("Trojan
#: source"), and lone surrogates (bytes of a non-UTF-8 file name or argument, which cannot even be encoded).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _visible(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_text(text: object, *, keep: str = "") -> str:
    """``text`` safe to print on a terminal: every control character (but those in ``keep``, e.g. ``"\\n"``) is
    shown as its escape (``\\x1b``, ``\\u202e``), so a label or a file name can neither send escape sequences to the
    terminal (colours, window titles, cursor moves) nor hide or reorder what is printed around it. For display
    only: JSON, CSV and JSON-lines outputs keep the exact text."""
    text = str(text)
    if keep:
        return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else _visible(m), text)
    return _UNSAFE.sub(_visible, text)


def render_table(results: Sequence[ClipResult], *, show_segments: bool = False) -> list:
    """rich Tables, one per video with its ranked labels (and its timeline after it when asked); the CLI prints them.

    Every text that comes from the user (paths, labels, calibration names) is a ``rich.text.Text``, never a markup
    string, so ``[/bold]`` in a label or a folder named ``clips[`` prints as it is, and control characters are shown
    escaped (:func:`terminal_text`)."""
    from rich.table import Table
    from rich.text import Text

    def plain(value: object) -> Text:
        return Text(terminal_text(value))

    blocks = []
    for r in results:
        if not r.ok:
            continue
        kind = f"multi-label, threshold {r.threshold:g}" if r.multi_label and r.threshold is not None else "softmax"
        if r.multi_label and r.calibration:
            kind += f", {r.calibration.get('source', '')}"
        title = plain(f"{r.path}  ({r.duration_s:.1f} s, {r.frames_sampled} frames, {r.views} views, {kind})")
        table = Table(title=title, title_justify="left", expand=False)
        table.add_column("rank", justify="right")
        table.add_column("label")
        table.add_column("score", justify="right")
        table.add_column("", justify="left")
        for rank, ls in enumerate(r.labels, 1):
            table.add_row(str(rank), plain(ls.label), f"{ls.score:.4f}", "✓" if ls.label in r.predicted else "")
        blocks.append(table)
        if show_segments and r.segments:
            timeline = Table(title="timeline", title_justify="left")
            timeline.add_column("from s", justify="right")
            timeline.add_column("to s", justify="right")
            timeline.add_column("top label")
            timeline.add_column("score", justify="right")
            for seg in r.segments:
                best = seg.labels[0]
                timeline.add_row(f"{seg.start_s:.2f}", f"{seg.end_s:.2f}", plain(best.label), f"{best.score:.4f}")
            blocks.append(timeline)
    return blocks
