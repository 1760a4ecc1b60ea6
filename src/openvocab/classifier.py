"""The main job: classify videos against any label list (the path of DESIGN.md, end to end).

``file -> decode once + sample (io) -> preprocess (io.transforms) -> per-stream frame embeddings (the recogniser's
CLIP towers) -> temporal modules + fusion per view / per segment (the recogniser) -> scoring against label
embeddings from the recogniser's label encoder, cached in the label bank (scoring) -> ClipResult``.

Use :func:`openvocab.load` to build a :class:`VideoClassifier` over any recogniser that
:func:`openvocab.models.factory.load_recognizer` loads: zero-shot CLIP or a trained run, one code path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch

from openvocab.errors import InputError, OpenVocabError
from openvocab.io.decode import DecodedFrames, VideoInfo, open_video
from openvocab.io.sampling import SamplerSpec, parse_views, sample_indices
from openvocab.io.transforms import preprocess_frames
from openvocab.models.recognizer import VideoRecognizer
from openvocab.results import TIMELINE_NOTE, ClipResult, LabelScore, SegmentResult
from openvocab.scoring import score_segments, score_views
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
    several streams, their features side by side along ``D``, see :meth:`VideoClassifier.pool`)."""

    frames: torch.Tensor
    times_s: torch.Tensor  # (temporal_views, T)
    info: VideoInfo


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

    def __init__(self, *, recognizer: VideoRecognizer, label_bank: LabelBank | None = None, frame_batch_size: int = 64) -> None:
        if not getattr(recognizer.head, "scores_by_similarity", False):
            raise _unscorable(recognizer.spec.classifier, getattr(recognizer, "source", ""))
        self.recognizer = recognizer.eval()
        self.label_bank = label_bank
        self.frame_batch_size = frame_batch_size
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

    def _decode(self, video: VideoInput, sampler: SamplerSpec, fps: float) -> tuple[DecodedFrames, np.ndarray, VideoInfo]:
        source = self._source(video, fps)
        declared = source.info.num_frames
        short_side = self.backbone.image_spec.resize_short_side
        indices = sample_indices(sampler, declared)  # (V, T)
        decoded = source.read(indices.reshape(-1).tolist(), max_short_side=short_side)
        if source.info.num_frames < declared:  # the header over-counted (a truncated file): sample the true length
            indices = sample_indices(sampler, source.info.num_frames)
            decoded = source.read(indices.reshape(-1).tolist(), max_short_side=short_side)
        return decoded, indices, source.info

    @torch.inference_mode()
    def _embed_decoded(self, decoded: DecodedFrames, indices: np.ndarray, info: VideoInfo, sampler: SamplerSpec) -> VideoEmbedding:
        spec = self.backbone.image_spec
        pixels = preprocess_frames(
            decoded.frames, size=spec.size, crops=sampler.spatial_crops, mean=spec.mean, std=spec.std, resize_short_side=spec.resize_short_side
        )
        emb = self._frame_features(pixels.reshape(-1, indices.shape[-1], *pixels.shape[2:]))  # (C*V, T, D)
        emb = emb.reshape(sampler.spatial_crops, *indices.shape, -1)
        times = torch.as_tensor(decoded.timestamps_s, dtype=torch.float64).reshape(indices.shape)
        return VideoEmbedding(frames=emb, times_s=times, info=info)

    def _frame_features(self, views: torch.Tensor) -> torch.Tensor:
        """``(views, T, 3, S, S) -> (views, T, ΣD_s)`` float32 CPU frame features of every stream side by side,
        whole views per call (``frame_batch_size`` frames at most, at least one view)."""
        step = max(1, self.frame_batch_size // views.shape[1])
        device = self._device
        chunks = []
        for i in range(0, views.shape[0], step):
            feats = self.recognizer.frame_features({"rgb": views[i : i + step].to(device)})
            chunks.append(torch.cat([f.float().cpu() for f in feats.values()], dim=-1))
        return torch.cat(chunks)

    @torch.inference_mode()
    def pool(self, frames: torch.Tensor) -> torch.Tensor:
        """``(..., T, ΣD_s) -> (..., D')``: split into streams, then the recogniser's temporal modules, fusion and
        head projection (:meth:`VideoRecognizer.embed_frames`)."""
        widths = [stream.dim for stream in self.recognizer.streams.values()]
        parts = torch.split(frames.to(self._device).float(), widths, dim=-1)
        video = self.recognizer.embed_frames(dict(zip(self.recognizer.streams.keys(), parts)))
        return video.float().cpu()

    def embed_video(self, video: VideoInput, *, sampler: SamplerSpec | None = None, fps: float = 25.0) -> VideoEmbedding:
        """Decode, sample, preprocess and encode one video (a path or an ``(N, H, W, 3)`` uint8 array)."""
        sampler = sampler or SamplerSpec()
        return self._embed_decoded(*self._decode(video, sampler, fps), sampler)

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
        threshold: float = 0.5,
        segments: int | None = None,
        fps: float = 25.0,
        on_error: str = "raise",
        progress: Callable[[int, str], None] | None = None,
        label_progress: Callable[[int, int], None] | None = None,
    ) -> ClipResult | list[ClipResult]:
        """Classify one video (returns a :class:`ClipResult`) or a sequence of videos (returns a list).

        ``frames`` per view, ``sampler`` ``"uniform"`` (TSN segments, Text4Vis) or ``"dense"`` (``frames`` at
        ``stride``, MOV), ``views`` ``"TxC"`` temporal clips × spatial crops (``"4x3"`` as in the papers).
        ``segments`` time windows for the timeline (default: ``frames``). ``on_error="skip"`` returns failed videos
        as results with ``error`` set instead of raising. ``multi_label`` scores each label independently
        (sigmoid, uncalibrated heuristic bias until the multi-label issue; see :mod:`openvocab.scoring`).
        ``progress(done, name)`` after each video; ``label_progress(done, total)`` while labels are encoded.
        Every warning (cleaned labels, a timeline with fewer segments than asked) is in each result's ``warnings``.
        """
        single = isinstance(videos, (str, Path, np.ndarray))
        items: list[VideoInput] = [videos] if single else list(videos)  # type: ignore[list-item]
        if on_error not in {"raise", "skip"}:
            raise ValueError("on_error must be 'raise' or 'skip'")
        if top_k < 1:
            raise InputError(f"--top-k must be >= 1, got {top_k}")
        temporal, crops = parse_views(views)
        spec = SamplerSpec(kind=sampler, frames=frames, stride=stride, temporal_views=temporal, spatial_crops=crops)  # type: ignore[arg-type]
        label_list, warnings = clean_labels(labels)  # their warnings go into every result's ``warnings``
        label_emb = self.encode_labels(label_list, progress=label_progress).embeddings
        scale = self.logit_scale
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
                    decoded, indices, info = futures[i].result()
                    emb = self._embed_decoded(decoded, indices, info, spec)
                    result = self._score(
                        emb,
                        name,
                        label_list,
                        label_emb,
                        scale=scale,
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
        spec: SamplerSpec,
        top_k: int,
        multi_label: bool,
        threshold: float,
        n_segments: int,
    ) -> ClipResult:
        probs = score_views(emb.frames, label_emb, logit_scale=scale, multi_label=multi_label, pool=self.pool)
        k = min(top_k, len(labels))
        ranked = _ranked(probs, labels, k)
        if multi_label:
            predicted = [labels[i] for i in torch.nonzero(probs >= threshold).flatten().tolist()]
            predicted.sort(key=lambda lab: -float(probs[labels.index(lab)]))
        else:
            predicted = [ranked[0].label]
        segs: list[SegmentResult] = []
        notes: list[str] = []
        duration = emb.info.duration_s if emb.info.duration_s > 0 else float(emb.times_s.max()) + 1.0 / max(emb.info.fps, 1e-6)
        if n_segments > 0:
            frame_emb = emb.frames.mean(dim=0).reshape(-1, emb.frames.shape[-1])  # crops averaged: (V*T, D)
            times = emb.times_s.reshape(-1).float()
            bounds = torch.linspace(0.0, duration, n_segments + 1)
            seg_probs, kept = score_segments(frame_emb, times, label_emb, boundaries=bounds, logit_scale=scale, multi_label=multi_label, pool=self.pool)
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
            duration_s=float(duration),
            frames_sampled=int(emb.frames.shape[1] * emb.frames.shape[2]),
            views=spec.views,
            warnings=notes,
        )


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
    label_bank: str | Path | bool | None = True,
    prompts: str | None = None,
    template: str | None = None,
) -> VideoClassifier:
    """Load a classifier: ``openvocab.load("openai/clip-vit-base-patch32")``, a local model directory,
    ``random:ARCH``, or a training run directory of ``openvocab train`` (``config.yaml`` + checkpoints: the run's
    streams, temporal modules, fusion, classifier space and scale are used). Models come from
    :func:`openvocab.models.factory.load_recognizer`.

    ``label_bank``: ``True`` (default) uses the persistent bank at :meth:`LabelBank.default_path`, a path uses
    that file, ``False``/``None`` disables caching. ``prompts``: ``"ensemble"`` (CLIP's 28 Kinetics templates),
    ``"single"`` (one ``template``), ``"classname"``, or a path to a templates file; ``None`` (default) means
    ``"ensemble"`` for a CLIP model and the run's own prompt set (``model.prompts`` / ``model.template``) for a run.
    """
    from openvocab.models.factory import is_run_dir, load_recognizer, run_spec

    bank: LabelBank | None
    if label_bank is True:
        bank = LabelBank(LabelBank.default_path())
    elif label_bank in (False, None):
        bank = None
    else:
        bank = LabelBank(label_bank)  # type: ignore[arg-type]
    if is_run_dir(model):
        kind = run_spec(model)[0].classifier
        if kind == "linear":  # refuse before building the model
            raise _unscorable(kind, Path(model).expanduser())
    recognizer = load_recognizer(model, device=device, dtype=dtype, prompts=prompts, template=template)
    return VideoClassifier(recognizer=recognizer, label_bank=bank)
