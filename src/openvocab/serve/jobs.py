"""What a worker does for ``POST /classify`` and ``POST /labels`` (issue 10 part 1): the library's calls, nothing more.

A classify job opens the video with the library's decoder (an undecodable file fails here, before any label is
encoded: stage ``decoding``), encodes the labels not yet in the label bank (``labels``, with the encoder's progress),
calls :meth:`VideoClassifier.classify` with ``top_k`` = every label so each segment carries every label's score
(``classifying``), and decodes one small frame per segment for the timeline. The response is
:meth:`ClipResult.to_dict` plus ``model``, ``timeline`` (labels x segments, in ranked order) and ``thumbnails``; the
ranked lists are cut to the request's ``top_k`` only after the timeline was built.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from openvocab.errors import InputError
from openvocab.io.decode import open_video
from openvocab.io.sampling import parse_views
from openvocab.serve.errors import ServeError, scrub
from openvocab.serve.limits import REQUEST_ID, Limits
from openvocab.serve.models import ServedModel
from openvocab.serve.thumbnails import segment_thumbnails
from openvocab.serve.work_queue import Job

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


@dataclass
class ClassifyOptions:
    """The numeric and switch fields of ``POST /classify``, checked (400 with one line when bad)."""

    frames: int = 8
    views: str = "1x1"
    multi_label: bool = False
    threshold: float | None = None
    segments: int = 8
    top_k: int | None = None
    thumbnails: bool = True
    request_id: str | None = None

    @classmethod
    def from_fields(cls, fields: dict[str, str], limits: Limits) -> ClassifyOptions:
        def get(name: str) -> str | None:
            value = fields.get(name)
            return None if value is None or not value.strip() else value.strip()

        opts = cls(
            frames=_integer("frames", get("frames"), 8, 1, limits.max_frames),
            views=get("views") or "1x1",
            multi_label=_switch("multi_label", get("multi_label"), False),
            segments=_integer("segments", get("segments"), 8, 0, limits.max_segments),
            thumbnails=_switch("thumbnails", get("thumbnails"), True),
        )
        if get("top_k") is not None:
            opts.top_k = _integer("top_k", get("top_k"), 1, 1, limits.max_labels)
        if get("threshold") is not None:
            try:
                opts.threshold = float(get("threshold"))  # type: ignore[arg-type]
            except ValueError:
                raise ServeError(400, f"threshold must be a number, got {get('threshold')[:40]!r}") from None  # type: ignore[index]
            if not 0.0 <= opts.threshold <= 1.0:
                raise ServeError(400, f"threshold must be between 0 and 1, got {opts.threshold:g}")
        if len(opts.views) > 16:
            raise ServeError(400, "views must look like '4x3' (temporal x spatial)")
        try:
            temporal, crops = parse_views(opts.views)
        except (InputError, ValueError) as exc:
            raise ServeError(400, str(exc)) from None
        total = opts.frames * temporal * crops
        if total > limits.max_frames_total:
            raise ServeError(400, f"frames x views = {total} frames per video; this server decodes at most {limits.max_frames_total}")
        request_id = get("request_id")
        if request_id is not None and not REQUEST_ID.fullmatch(request_id):
            raise ServeError(400, "request_id must be 1 to 64 letters, digits, '_' or '-'")
        opts.request_id = request_id
        return opts


def _integer(name: str, text: str | None, default: int, low: int, high: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ServeError(400, f"{name} must be an integer, got {text[:40]!r}") from None
    if not low <= value <= high:
        raise ServeError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def _switch(name: str, text: str | None, default: bool) -> bool:
    if text is None:
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ServeError(400, f"{name} must be true or false, got {text[:40]!r}")


@dataclass
class ClassifyJob:
    """One video to classify: the file the worker reads, the name the user sees, cleaned labels (and the cleaning's
    warnings), options, and ``hide`` (server paths -> what to show instead, for every message)."""

    model: ServedModel
    video: Path
    display: str
    labels: list[str]
    options: ClassifyOptions
    warnings: list[str] = field(default_factory=list)
    hide: dict[str, str] = field(default_factory=dict)

    def __call__(self, job: Job) -> dict:
        clf = self.model.classifier
        job.report("decoding", 0.02)
        source = open_video(self.video)  # an undecodable file fails now, before any label is encoded
        job.report("labels", 0.1)
        cached = clf.label_bank is not None or not clf.label_encoder.open_vocabulary

        def label_progress(done: int, total: int) -> None:
            job.report("labels", 0.1 + 0.3 * done / max(total, 1))

        if cached:  # encode new labels now (one text tower user at a time); classify then only reads the bank
            with self.model.text_lock:
                clf.encode_labels(self.labels, progress=label_progress)
        job.report("classifying", 0.4)
        with contextlib.nullcontext() if cached else self.model.text_lock:
            result = clf.classify(
                str(self.video),
                self.labels,
                frames=self.options.frames,
                views=self.options.views,
                top_k=len(self.labels),
                multi_label=self.options.multi_label,
                threshold=self.options.threshold,
                segments=self.options.segments,
                label_progress=label_progress,
            )
        job.report("classifying", 0.85)
        notes: list[str] = []
        thumbnails: list[dict] = []
        if self.options.thumbnails and result.segments:
            try:
                thumbnails = segment_thumbnails(source, [(s.start_s, s.end_s) for s in result.segments])
            except (InputError, OSError) as exc:  # the scores stand; say why the strip is missing
                notes.append(f"no thumbnails: {exc}")
        job.report("classifying", 0.98)
        return response_body(result, model=self.model.name, display=self.display, top_k=self.options.top_k, warnings=self.warnings + notes, hide=self.hide) | {
            "thumbnails": thumbnails
        }


def response_body(result, *, model: str, display: str, top_k: int | None, warnings: list[str], hide: dict[str, str]) -> dict:
    """``ClipResult.to_dict()`` (every label ranked) -> the response: the user's file name as ``path``, scrubbed
    warnings, the ``timeline`` of every label over the segments, then ranked lists cut to ``top_k``."""
    body = result.to_dict()
    body["path"] = display
    body["warnings"] = [scrub(w, hide) for w in [*warnings, *body["warnings"]]]
    if body.get("error"):
        body["error"] = scrub(body["error"], hide)
    order = [entry["label"] for entry in body["labels"]]
    rows = [{entry["label"]: entry["score"] for entry in seg["labels"]} for seg in body["segments"]]
    body["timeline"] = {
        "labels": order,
        "start_s": [seg["start_s"] for seg in body["segments"]],
        "end_s": [seg["end_s"] for seg in body["segments"]],
        "scores": [[row.get(label) for row in rows] for label in order],
    }
    k = top_k if top_k is not None else len(order)
    body["labels"] = body["labels"][:k]
    for seg in body["segments"]:
        seg["labels"] = seg["labels"][:k]
    body["model"] = model
    return body


@dataclass
class LabelsJob:
    """``POST /labels``: encode the labels the bank lacks (vocabulary expansion) and, when named, save the list as a
    vocabulary. Returns ``(encoded now, already cached)``."""

    model: ServedModel
    labels: list[str]

    def __call__(self, job: Job) -> tuple[int, int]:
        clf = self.model.classifier

        def progress(done: int, total: int) -> None:
            job.report("labels", done / max(total, 1))

        job.report("labels", 0.0)
        with self.model.text_lock:
            encoded = clf.encode_labels(self.labels, progress=progress).encoded
        return encoded, len(self.labels) - encoded
