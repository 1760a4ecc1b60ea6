"""The main job: classify videos against any label list (the path of DESIGN.md, end to end).

``file -> decode once + sample (io) -> preprocess (io.transforms) -> per-stream frame embeddings (the recogniser's
CLIP towers) -> temporal modules + fusion per view / per segment (the recogniser) -> scoring against label
embeddings from the recogniser's label encoder, cached in the label bank (scoring) -> ClipResult``.

Use :func:`openvocab.load` to build a :class:`VideoClassifier` over any recogniser that
:func:`openvocab.models.factory.load_recognizer` loads: zero-shot CLIP or a trained run, one code path.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import torch

from openvocab.calibration import Calibration, calibration_of
from openvocab.errors import InputError, OpenVocabError
from openvocab.io.decode import DecodedFrames, VideoInfo, open_video
from openvocab.io.modalities import AudioInput, audio_eval_tensor, check_modalities, flow_images, load_waveform, read_with_flow_pairs
from openvocab.io.sampling import SamplerSpec, parse_views, sample_indices
from openvocab.io.transforms import preprocess_frames
from openvocab.models.recognizer import VideoRecognizer
from openvocab.results import TIMELINE_NOTE, ClipResult, LabelScore, SegmentResult
from openvocab.scoring import MOV_BETA, MOV_TAU_VIDEO, mov_probabilities, score_segments, score_views
from openvocab.text.label_bank import LabelBank
from openvocab.text.prompts import clean_labels

log = logging.getLogger(__name__)

VideoInput = Union[str, Path, np.ndarray]


@dataclass
class EncodedLabels:
    """Label embeddings ``(L, D)`` and how many of the labels were encoded now (the rest came from the label bank)."""

    embeddings: torch.Tensor
    encoded: int


@dataclass
class VideoEmbedding:
    """Frame embeddings of one video: ``(crops, temporal_views, T, D)`` plus the time of every sampled frame (with
    several streams, their features side by side along ``D``, see :meth:`VideoClassifier.pool`). ``streams``: the
    streams whose inputs the video had; ``missing``: modality -> why it was not used."""

    frames: torch.Tensor
    times_s: torch.Tensor  # (temporal_views, T)
    info: VideoInfo
    streams: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


@dataclass
class DecodedVideo:
    """One decoded video: sampled frames ``(V·T, H, W, 3)``, their indices ``(V, T)``, and the flow images / audio of
    a recogniser with those streams (``missing``: modality -> why it could not be made)."""

    decoded: DecodedFrames
    indices: np.ndarray
    info: VideoInfo
    flow: np.ndarray | None = None
    audio: AudioInput | None = None
    missing: dict[str, str] = field(default_factory=dict)


class _ArraySource:
    """An in-memory video (``(N, H, W, 3)`` uint8 RGB frames) with the same interface as decoded files."""

    def __init__(self, frames: np.ndarray, *, fps: float, name: str = "<array>") -> None:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
            raise InputError(f"frame array must have shape (N, H, W, 3) with N >= 1, got {frames.shape}", path=name)
        self.frames = frames if frames.dtype == np.uint8 else np.clip(frames, 0, 255).astype(np.uint8)
        n, h, w, _ = frames.shape
        self.info = VideoInfo(path=name, num_frames=n, fps=fps, duration_s=n / fps, width=w, height=h, rotation=0, has_audio=False)

    def read(self, indices: Sequence[int], *, max_short_side: int | None = None) -> DecodedFrames:
        idx = np.asarray(indices, dtype=np.int64)
        return DecodedFrames(frames=self.frames[idx], timestamps_s=idx / self.info.fps)


class VideoClassifier:
    """Open-vocabulary video classifier over a :class:`~openvocab.models.recognizer.VideoRecognizer`.

    * frame features: each stream's tower on whole views ``(views, T, 3, S, S)`` (chunked by views, so in-tower
      temporal modules -- TokenT1D for ViT, T1D for CLIP-ResNet -- see the frames of one video together);
    * pooling (:meth:`pool`, handed to :mod:`openvocab.scoring`): the recogniser's temporal modules, fusion and head
      projection (TAP for zero-shot CLIP); the timeline pools each segment's crop-averaged frame features, in time
      order, the same way;
    * label embeddings: the recogniser's label encoder (CLIP text + prompts, a sentence encoder, or a closed-set
      head's own classes), cached in the persistent :class:`LabelBank` under the encoder's fingerprint (a label is
      encoded once per model and prompt set, ever);
    * scale: the head's ``logit_scale`` (CLIP's learned temperature for zero-shot).

    With ``views="1x1"`` the clip scores of a trained run equal ``softmax(recognizer(pixels))``.
    """

    def __init__(
        self,
        *,
        recognizer: VideoRecognizer,
        label_bank: LabelBank | None = None,
        frame_batch_size: int = 64,
        modalities: str | Sequence[str] | None = None,
        mov_beta: float = MOV_BETA,
        mov_tau_video: float = MOV_TAU_VIDEO,
        calibration: Calibration | str | Path | None = None,
    ) -> None:
        if not getattr(recognizer.head, "scores_by_similarity", False):
            raise _unscorable(recognizer.spec.classifier, getattr(recognizer, "source", ""))
        self.recognizer = recognizer.eval()
        self.label_bank = label_bank
        if label_bank is not None and hasattr(recognizer.label_encoder, "attach_label_bank"):
            recognizer.label_encoder.attach_label_bank(label_bank)  # LLM attributes are cached beside the embeddings
        self.frame_batch_size = frame_batch_size
        self.inputs = recognizer.spec.input_settings()
        if modalities is not None:
            text = modalities if isinstance(modalities, str) else ",".join(modalities)
            chosen = check_modalities(text, self.inputs.modalities)
            if chosen != self.inputs.modalities and not (recognizer.fused_outputs and recognizer.primary_stream.spec.input in chosen):
                raise InputError(
                    f"--modalities {text}: this model fuses {', '.join(self.inputs.modalities)} and needs all of them"
                    + (f" (a MOV run can drop its flow / audio stream, not {recognizer.primary_stream.spec.input})" if recognizer.fused_outputs else "")
                )
            self.inputs = self.inputs.restricted(chosen)
        self.mov_beta = float(mov_beta)
        self.mov_tau_video = float(mov_tau_video)
        # multi-label scoring: an explicit calibration (a file is read now: a bad one fails at load), else the model's
        # saved one or its default, resolved at first multi-label use (see :attr:`calibration`)
        self._calibration = calibration if isinstance(calibration, Calibration) or calibration is None else Calibration.read(calibration)
        backbone = recognizer.backbone
        if backbone.random_weights and not getattr(recognizer, "trained", False):
            log.warning("%s has RANDOM weights (an architecture-exact test model): its scores are meaningless", backbone.source)

    @property
    def backbone(self):
        """The primary stream's CLIP model."""
        return self.recognizer.backbone

    @property
    def label_encoder(self):
        return self.recognizer.label_encoder

    @property
    def prompts(self):
        """The CLIP-text label encoder's prompt set (``None`` for other label encoders)."""
        return getattr(self.label_encoder, "prompts", None)

    @property
    def class_names(self) -> list[str]:
        return self.recognizer.class_names

    @property
    def logit_scale(self) -> float:
        return self.recognizer.logit_scale

    @property
    def calibration(self) -> Calibration:
        """The multi-label scoring ``σ(a·cos + b)`` and threshold: the one given to :func:`load`, else
        ``calibration.json`` of the run / model directory (``openvocab calibrate``), else the documented default
        (:func:`openvocab.calibration.default_calibration`)."""
        if self._calibration is None:
            self._calibration = calibration_of(self.recognizer)
        return self._calibration

    @calibration.setter
    def calibration(self, value: Calibration | str | Path | None) -> None:
        self._calibration = value if isinstance(value, Calibration) or value is None else Calibration.read(value)

    @property
    def _device(self) -> torch.device:
        return next(self.recognizer.parameters()).device

    # ------------------------------------------------------------------ labels
    def encode_labels(self, labels: Sequence[str], *, progress: Callable[[int, int], None] | None = None) -> EncodedLabels:
        """Embeddings of ``labels`` in the classifier's space and how many were encoded now (see :class:`EncodedLabels`)."""
        labels = list(labels)
        if self.label_bank is None or not self.label_encoder.open_vocabulary:
            kwargs = {"progress": progress} if progress is not None else {}
            return EncodedLabels(self.label_encoder.encode(labels, **kwargs), len(labels) if self.label_encoder.open_vocabulary else 0)
        emb, encoded = self.label_bank.embeddings(self.label_encoder, labels, progress=progress)
        return EncodedLabels(emb, encoded)

    def label_embeddings(self, labels: Sequence[str]) -> torch.Tensor:
        """L2-normalised label embeddings ``(L, D)`` of ``labels`` (from the label bank when cached)."""
        return self.encode_labels(labels).embeddings

    # ------------------------------------------------------------------ video
    def _source(self, video: VideoInput, fps: float):
        if isinstance(video, np.ndarray):
            return _ArraySource(video, fps=fps)
        return open_video(video)

    def _read(self, source, indices: np.ndarray, short_side: int) -> tuple[DecodedFrames, object]:
        """The sampled frames, and a source over them plus the successors flow needs (decoded in the same pass)."""
        if self.inputs.needs_flow and source.info.num_frames >= 2:
            return read_with_flow_pairs(source, indices, max_short_side=short_side)
        return source.read(indices.reshape(-1).tolist(), max_short_side=short_side), source

    def _decode(self, video: VideoInput, sampler: SamplerSpec, fps: float) -> DecodedVideo:
        """Decode + sample (and, for flow / audio streams, make their inputs: this runs ahead in a thread)."""
        source = self._source(video, fps)
        declared = source.info.num_frames
        short_side = self.backbone.image_spec.resize_short_side
        indices = sample_indices(sampler, declared)  # (V, T)
        decoded, pairs = self._read(source, indices, short_side)
        if source.info.num_frames < declared:  # the header over-counted (a truncated file): sample the true length
            indices = sample_indices(sampler, source.info.num_frames)
            decoded, pairs = self._read(source, indices, short_side)
        out = DecodedVideo(decoded=decoded, indices=indices, info=source.info)
        if self.inputs.needs_flow:
            if source.info.num_frames < 2:
                out.missing["flow"] = "a one-frame video has no frame pair for optical flow"
            else:
                out.flow = flow_images(pairs, indices.reshape(-1), method=self.inputs.flow_method, size=decoded.frames.shape[1:3])
        if self.inputs.needs_audio:
            audio = load_waveform(video, seconds=self.inputs.audio_seconds) if not isinstance(video, np.ndarray) else None
            if audio is not None and audio.present:
                out.audio = audio
            else:
                out.missing["audio"] = audio.problem if audio is not None else "a frame array has no audio"
        return out

    @torch.inference_mode()
    def _embed_decoded(self, d: DecodedVideo, sampler: SamplerSpec) -> VideoEmbedding:
        spec = self.backbone.image_spec
        crops, (views, t) = sampler.spatial_crops, d.indices.shape
        inputs: dict[str, torch.Tensor] = {}
        for key, images in (("rgb", d.decoded.frames), ("flow", d.flow)):
            if images is not None and key in self.inputs.modalities:
                pixels = preprocess_frames(images, size=spec.size, crops=crops, mean=spec.mean, std=spec.std, resize_short_side=spec.resize_short_side)
                inputs[key] = pixels.reshape(-1, t, *pixels.shape[2:])  # (C*V, T, 3, S, S)
        if d.audio is not None:
            a = audio_eval_tensor(d.audio, temporal_views=views, crops=crops, seconds=self.inputs.audio_seconds)
            inputs["audio"] = a.reshape(-1, *a.shape[2:])  # (C*V, 1, 3, 128, F)
        streams = [n for n, s in self.recognizer.streams.items() if s.spec.input in inputs]
        emb = self._frame_features(inputs, streams, frames=t)
        emb = emb.reshape(crops, views, t, -1)
        times = torch.as_tensor(d.decoded.timestamps_s, dtype=torch.float64).reshape(d.indices.shape)
        return VideoEmbedding(frames=emb, times_s=times, info=d.info, streams=streams, missing=dict(d.missing))

    def _frame_features(self, views: dict[str, torch.Tensor], streams: list[str], *, frames: int) -> torch.Tensor:
        """``{modality: (views, T, ...)}`` -> ``(views, T, ΣD_s)`` float32 CPU frame features of ``streams`` side by
        side, whole views per call (``frame_batch_size`` frames at most, at least one view). A one-image stream
        (audio: one spectrogram per view) is repeated over the view's ``T`` frames: MOV's fusion attends to identical
        tokens exactly as to one, so the fused outputs are unchanged, and segments pool it like any frame."""
        step = max(1, self.frame_batch_size // frames)
        device = self._device
        count = next(iter(views.values())).shape[0]
        chunks = []
        for i in range(0, count, step):
            parts = []
            for name in streams:
                stream = self.recognizer.streams[name]
                f = stream.frame_features(views[stream.spec.input][i : i + step].to(device)).float().cpu()
                parts.append(f.expand(-1, frames, -1) if f.shape[1] == 1 and frames > 1 else f)
            chunks.append(torch.cat(parts, dim=-1))
        return torch.cat(chunks)

    @torch.inference_mode()
    def pool(self, frames: torch.Tensor, streams: Sequence[str] | None = None) -> torch.Tensor:
        """``(..., T, ΣD_s) -> (..., D')``: split into ``streams`` (default: all), then the recogniser's temporal
        modules, fusion and head projection (:meth:`VideoRecognizer.embed_frames`; a MOV run gives ``(..., 3, D')``).
        A MOV run without its flow / audio input pools the RGB stream alone: TAP of the frozen video features (the
        fallback of :mod:`openvocab.io.modalities`)."""
        rec = self.recognizer
        names = list(streams) if streams is not None else list(rec.streams)
        parts = torch.split(frames.to(self._device).float(), [rec.streams[n].frame_dim for n in names], dim=-1)
        by_name = dict(zip(names, parts))
        if rec.fused_outputs and len(names) < len(rec.streams):
            return rec.head.embed(by_name[rec.spec.primary].mean(dim=-2)).float().cpu()
        return rec.embed_frames(by_name).float().cpu()

    def embed_video(self, video: VideoInput, *, sampler: SamplerSpec | None = None, fps: float = 25.0) -> VideoEmbedding:
        """Decode, sample, preprocess and encode one video (a path or an ``(N, H, W, 3)`` uint8 array)."""
        sampler = sampler or SamplerSpec()
        return self._embed_decoded(self._decode(video, sampler, fps), sampler)

    # ------------------------------------------------------------------ the main job
    def classify(
        self,
        videos: VideoInput | Sequence[VideoInput],
        labels: Sequence[str],
        *,
        frames: int = 8,
        sampler: str = "uniform",
        stride: int = 4,
        views: str = "1x1",
        top_k: int = 5,
        multi_label: bool = False,
        threshold: float | None = None,
        segments: int | None = None,
        fps: float = 25.0,
        on_error: str = "raise",
        progress: Callable[[int, str], None] | None = None,
        label_progress: Callable[[int, int], None] | None = None,
        on_result: Callable[[ClipResult], None] | None = None,
    ) -> ClipResult | list[ClipResult]:
        """Classify one video (returns a :class:`ClipResult`) or a sequence of videos (returns a list).

        ``frames`` per view, ``sampler`` ``"uniform"`` (TSN segments, Text4Vis) or ``"dense"`` (``frames`` at
        ``stride``, MOV), ``views`` ``"TxC"`` temporal clips × spatial crops (``"4x3"`` as in the papers).
        ``segments`` time windows for the timeline (default: ``frames``). ``on_error="skip"`` returns failed videos
        as results with ``error`` set instead of raising. ``multi_label`` scores each label independently,
        ``σ(a·cos + b)`` with :attr:`calibration`, and predicts the labels scoring at least ``threshold`` (default:
        the calibration's threshold).
        ``progress(done, name)`` after each video; ``label_progress(done, total)`` while labels are encoded;
        ``on_result(result)`` with each video's result as soon as it is scored (a batch writer streams them out).
        Every warning (cleaned labels, a timeline with fewer segments than asked) is in each result's ``warnings``.
        """
        single = isinstance(videos, (str, Path, np.ndarray))
        items: list[VideoInput] = [videos] if single else list(videos)  # type: ignore[list-item]
        if on_error not in {"raise", "skip"}:
            raise ValueError("on_error must be 'raise' or 'skip'")
        if top_k < 1:
            raise InputError(f"--top-k must be >= 1, got {top_k}")
        if multi_label and self.recognizer.fused_outputs:
            raise InputError("a MOV run scores single-label probabilities (Eq. 10-12); drop --multi-label")
        temporal, crops = parse_views(views)
        spec = SamplerSpec(kind=sampler, frames=frames, stride=stride, temporal_views=temporal, spatial_crops=crops)  # type: ignore[arg-type]
        label_list, warnings = clean_labels(labels)  # their warnings go into every result's ``warnings``
        label_emb = self.encode_labels(label_list, progress=label_progress).embeddings
        calibration = self.calibration if multi_label else None  # multi-label: σ(a·cos + b), the calibration's (a, b)
        scale, bias = (calibration.scale, calibration.bias) if calibration is not None else (self.logit_scale, None)
        if calibration is not None and threshold is None:
            threshold = calibration.threshold
        n_segments = segments if segments is not None else frames
        if n_segments < 0:
            raise InputError(f"--segments must be >= 0, got {n_segments}")

        results: list[ClipResult] = []
        with ThreadPoolExecutor(max_workers=1) as pool:  # decode the next video while the model runs
            futures: list[Future] = [pool.submit(self._decode, items[0], spec, fps)] if items else []
            for i, video in enumerate(items):
                if i + 1 < len(items):
                    futures.append(pool.submit(self._decode, items[i + 1], spec, fps))
                name = "<array>" if isinstance(video, np.ndarray) else str(video)
                try:
                    emb = self._embed_decoded(futures[i].result(), spec)
                    result = self._score(
                        emb,
                        name,
                        label_list,
                        label_emb,
                        scale=scale,
                        bias=bias,
                        calibration=calibration,
                        spec=spec,
                        top_k=top_k,
                        multi_label=multi_label,
                        threshold=threshold,
                        n_segments=n_segments,
                    )
                    result.warnings[:0] = warnings
                except OpenVocabError as exc:
                    if on_error == "raise":
                        raise
                    result = ClipResult(path=name, error=str(exc))
                futures[i] = None  # type: ignore[call-overload]  # free decoded frames early
                results.append(result)
                if on_result is not None:
                    on_result(result)
                if progress is not None:
                    progress(i + 1, name)
        return results[0] if single else results

    def _score(
        self,
        emb: VideoEmbedding,
        name: str,
        labels: list[str],
        label_emb: torch.Tensor,
        *,
        scale: float,
        bias: float | None = None,
        calibration: Calibration | None = None,
        spec: SamplerSpec,
        top_k: int,
        multi_label: bool,
        threshold: float | None,
        n_segments: int,
    ) -> ClipResult:
        pool = functools.partial(self.pool, streams=emb.streams)
        rule, probabilities, notes = self._rule(labels, emb, name)
        notes = [*emb.info.warnings, *notes]  # what the decoder could not decode (a truncated or damaged file)
        probs = score_views(emb.frames, label_emb, logit_scale=scale, multi_label=multi_label, bias=bias, pool=pool, probabilities=probabilities)
        k = min(top_k, len(labels))
        ranked = _ranked(probs, labels, k)
        if multi_label:
            predicted = [labels[i] for i in torch.nonzero(probs >= threshold).flatten().tolist()]
            predicted.sort(key=lambda lab: -float(probs[labels.index(lab)]))
        else:
            predicted = [ranked[0].label]
        segs: list[SegmentResult] = []
        duration = emb.info.duration_s if emb.info.duration_s > 0 else float(emb.times_s.max()) + 1.0 / max(emb.info.fps, 1e-6)
        if n_segments > 0:
            frame_emb = emb.frames.mean(dim=0).reshape(-1, emb.frames.shape[-1])  # crops averaged: (V*T, D)
            times = emb.times_s.reshape(-1).float()
            bounds = torch.linspace(0.0, duration, n_segments + 1)
            seg_probs, kept = score_segments(
                frame_emb, times, label_emb, boundaries=bounds, logit_scale=scale, multi_label=multi_label, bias=bias, pool=pool, probabilities=probabilities
            )
            for row, s in zip(seg_probs, kept.tolist()):
                segs.append(SegmentResult(start_s=float(bounds[s]), end_s=float(bounds[s + 1]), labels=_ranked(row, labels, k)))
            if len(segs) < n_segments:
                notes.append(
                    f"{name}: {TIMELINE_NOTE} {len(segs)} of {n_segments} segments: the {spec.frames * spec.temporal_views} sampled frames "
                    f"cover {float(times.min()):.2f}-{float(times.max()):.2f} s of {duration:.2f} s"
                    + (" (dense sampling covers frames x stride; use --sampler uniform, more --views or fewer --segments)" if spec.kind == "dense" else "")
                )
        return ClipResult(
            path=name,
            labels=ranked,
            predicted=predicted,
            segments=segs,
            multi_label=multi_label,
            threshold=threshold if multi_label else None,
            calibration=calibration.summary() if multi_label and calibration is not None else None,
            duration_s=float(duration),
            frames_sampled=int(emb.frames.shape[1] * emb.frames.shape[2]),
            views=spec.views,
            modalities=[self.recognizer.streams[n].spec.input for n in emb.streams],
            scoring=rule,
            warnings=notes,
        )

    def _rule(self, labels: list[str], emb: VideoEmbedding, name: str) -> tuple[str | None, Callable | None, list[str]]:
        """MOV's inference rule for this label list and video: ``(name, per-view probabilities, notes)``.

        Labels all in the run's training vocabulary -> base classes, Eq. 10 (score fusion: both streams' probabilities
        averaged, Table 5); any other label -> the novel-class rule over the whole list, Eq. 11-12 (it mixes the fused
        flow/audio feature at ``τ`` with the frozen video feature at ``τ_v``, which keeps CLIP's generalisation). A
        video without the flow / audio input -> zero-shot CLIP on the frozen video feature. Other recognisers: one
        rule (``None``)."""
        rec = self.recognizer
        if not rec.fused_outputs:
            return None, None, []
        tau = 1.0 / rec.logit_scale
        if len(emb.streams) < len(rec.streams):
            why = "; ".join(emb.missing.values()) or "not requested (--modalities)"
            return "video only: zero-shot CLIP on the frozen video feature", None, [f"{name}: scored from the video alone ({why})"]
        kind = rec.mov_rule(labels)
        title = {
            "base": "base classes: MOV Eq. 10",
            "base-mean": "base classes: score fusion (MOV Table 5)",
            "novel": f"novel classes: MOV Eq. 11-12 (beta {self.mov_beta:g}, tau_v {self.mov_tau_video:g})",
        }[kind]
        rule = functools.partial(mov_probabilities, rule=kind, tau=tau, tau_video=self.mov_tau_video, beta=self.mov_beta)
        return title, rule, []


def _ranked(probs: torch.Tensor, labels: list[str], k: int) -> list[LabelScore]:
    values, order = probs.topk(k)
    return [LabelScore(label=labels[j], score=float(v)) for v, j in zip(values.tolist(), order.tolist())]


def _unscorable(kind: str, source: str | Path) -> InputError:
    return InputError(
        f"a '{kind}' classifier head cannot score labels by name (it has no frozen class embeddings); train with classifier text, sentence, normal, orthogonal or lda",
        path=source or None,
    )


def load(
    model: str | Path,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    label_bank: LabelBank | str | Path | bool | None = True,
    prompts: str | None = None,
    template: str | None = None,
    modalities: str | Sequence[str] | None = None,
    llm: str | Path | None = None,
    calibration: str | Path | None = None,
) -> VideoClassifier:
    """Load a classifier: ``openvocab.load("openai/clip-vit-base-patch32")``, a local model directory,
    ``random:ARCH``, or a training run directory of ``openvocab train`` (``config.yaml`` + checkpoints: the run's
    streams, temporal modules, fusion, classifier space and scale are used). Models come from
    :func:`openvocab.models.factory.load_recognizer`.

    ``label_bank``: ``True`` (default) uses the persistent bank at :meth:`LabelBank.default_path`, a path uses
    that file, ``False``/``None`` disables caching. The bank is a cache, opened ``optional``: a file that is not a
    usable bank logs one warning and the classifier runs without it; a read-only or busy bank serves what it holds
    and new labels are encoded without caching (one warning). A :class:`LabelBank` object is used as given (the
    ``labels`` commands pass a strict one: for them the bank is the job, so its failures are errors).
    ``prompts``: ``"ensemble"`` (CLIP's 28 Kinetics templates),
    ``"single"`` (one ``template``), ``"classname"``, or a path to a templates file; ``None`` (default) means
    ``"ensemble"`` for a CLIP model and the run's own prompt set (``model.prompts`` / ``model.template``) for a run.
    ``modalities``: the inputs to use, e.g. ``"rgb,audio"`` (default: every stream the model has; a MOV run may
    drop its flow / audio stream and then scores from the video alone). ``llm``: a T5 / Flan-T5 hub id or directory;
    a CLIP model then scores labels by LLM-written attributes (fixed LLM prompting, open-vocabulary multi-label §3.1;
    the attributes are cached in the label bank), a run with an LLM head finds its LLM there.
    ``calibration``: a ``calibration.json`` for multi-label scoring (default: the run's / model directory's own, else
    the documented default; :attr:`VideoClassifier.calibration`).
    """
    from openvocab.models.factory import is_run_dir, load_recognizer, run_spec
    from openvocab.text.label_bank import UnusableLabelBank

    bank: LabelBank | None = None
    if isinstance(label_bank, LabelBank):
        bank = label_bank
    elif label_bank not in (False, None):
        path = LabelBank.default_path() if label_bank is True else Path(label_bank)  # type: ignore[arg-type]
        try:
            bank = LabelBank(path, optional=True)
        except UnusableLabelBank as exc:
            log.warning("label bank %s unusable: %s; running without it (pass --label-bank with another path, or --no-label-bank)", path, exc.problem)
    saved = Calibration.read(calibration) if calibration is not None else None  # a bad file fails before the model loads
    if is_run_dir(model):
        kind = run_spec(model)[0].classifier
        if kind == "linear":  # refuse before building the model
            raise _unscorable(kind, Path(model).expanduser())
    recognizer = load_recognizer(model, device=device, dtype=dtype, prompts=prompts, template=template, llm=None if llm is None else str(llm))
    return VideoClassifier(recognizer=recognizer, label_bank=bank, modalities=modalities, calibration=saved)
