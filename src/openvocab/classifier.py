"""The main job: classify videos against any label list (the path of DESIGN.md, end to end).

``file -> decode once + sample (io) -> preprocess (io.transforms) -> CLIP frame embeddings (models.backbone)
-> TAP per view / per segment -> scoring against label-bank embeddings (scoring) -> ClipResult``.

Use :func:`openvocab.load` to build a :class:`VideoClassifier`.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import torch

from openvocab.errors import InputError, OpenVocabError
from openvocab.io.decode import DecodedFrames, VideoInfo, open_video
from openvocab.io.sampling import SamplerSpec, parse_views, sample_indices
from openvocab.io.transforms import preprocess_frames
from openvocab.models.backbone import ClipBackbone
from openvocab.results import ClipResult, LabelScore, SegmentResult
from openvocab.scoring import score_segments, score_views
from openvocab.text.label_bank import LabelBank
from openvocab.text.prompts import PromptSet, clean_labels, prompt_set

log = logging.getLogger(__name__)

VideoInput = Union[str, Path, np.ndarray]


@dataclass
class VideoEmbedding:
    """Frame embeddings of one video: ``(crops, temporal_views, T, D)`` plus the time of every sampled frame."""

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
    """Open-vocabulary video classifier over a CLIP backbone.

    Label embeddings come from the prompt set (default: CLIP's 28 Kinetics templates, MOV §3.1) and are cached in
    the persistent :class:`LabelBank`, so a label is encoded once per model and prompt set, ever.
    """

    def __init__(self, *, backbone: ClipBackbone, label_bank: LabelBank | None = None, prompts: PromptSet | None = None, frame_batch_size: int = 64) -> None:
        self.backbone = backbone
        self.label_bank = label_bank
        self.prompts = prompts or prompt_set("ensemble")
        self.frame_batch_size = frame_batch_size
        self.last_encoded_labels = 0
        if backbone.random_weights:
            log.warning("%s has RANDOM weights (an architecture-exact test model): its scores are meaningless", backbone.source)

    # ------------------------------------------------------------------ labels
    def _encode_labels(self, labels: list[str]) -> torch.Tensor:
        return self.backbone.encode_labels(labels, self.prompts)

    def label_embeddings(self, labels: Sequence[str]) -> torch.Tensor:
        """L2-normalised, prompt-ensembled embeddings ``(L, D)`` of ``labels`` (from the label bank when cached)."""
        labels = list(labels)
        if self.label_bank is None:
            self.last_encoded_labels = len(labels)
            return self._encode_labels(labels)
        emb = self.label_bank.get_or_encode(fingerprint=self.backbone.fingerprint, prompt_set=self.prompts, labels=labels, encode=self._encode_labels)
        self.last_encoded_labels = self.label_bank.last_encoded
        return emb

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
        pixels = preprocess_frames(decoded.frames, size=spec.size, crops=sampler.spatial_crops, mean=spec.mean, std=spec.std, resize_short_side=spec.resize_short_side)
        flat = pixels.reshape(-1, *pixels.shape[2:])  # (C*V*T, 3, S, S)
        chunks = [self.backbone.encode_frames(flat[i : i + self.frame_batch_size]).float().cpu() for i in range(0, flat.shape[0], self.frame_batch_size)]
        emb = torch.cat(chunks).reshape(sampler.spatial_crops, *indices.shape, -1)
        times = torch.as_tensor(decoded.timestamps_s, dtype=torch.float64).reshape(indices.shape)
        return VideoEmbedding(frames=emb, times_s=times, info=info)

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
    ) -> ClipResult | list[ClipResult]:
        """Classify one video (returns a :class:`ClipResult`) or a sequence of videos (returns a list).

        ``frames`` per view, ``sampler`` ``"uniform"`` (TSN segments, Text4Vis) or ``"dense"`` (``frames`` at
        ``stride``, MOV), ``views`` ``"TxC"`` temporal clips × spatial crops (``"4x3"`` as in the papers).
        ``segments`` time windows for the timeline (default: ``frames``). ``on_error="skip"`` returns failed videos
        as results with ``error`` set instead of raising. ``multi_label`` scores each label independently
        (sigmoid, uncalibrated heuristic bias until the multi-label issue; see :mod:`openvocab.scoring`).
        """
        single = isinstance(videos, (str, Path, np.ndarray))
        items: list[VideoInput] = [videos] if single else list(videos)  # type: ignore[list-item]
        if on_error not in {"raise", "skip"}:
            raise ValueError("on_error must be 'raise' or 'skip'")
        if top_k < 1:
            raise InputError(f"--top-k must be >= 1, got {top_k}")
        temporal, crops = parse_views(views)
        spec = SamplerSpec(kind=sampler, frames=frames, stride=stride, temporal_views=temporal, spatial_crops=crops)  # type: ignore[arg-type]
        label_list, warnings = clean_labels(labels)
        for w in warnings:
            log.warning(w)
        label_emb = self.label_embeddings(label_list)
        scale = self.backbone.logit_scale
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
                    result = self._score(emb, name, label_list, label_emb, scale=scale, spec=spec, views=views, top_k=top_k, multi_label=multi_label, threshold=threshold, n_segments=n_segments)
                    result.warnings.extend(warnings)
                except OpenVocabError as exc:
                    if on_error == "raise":
                        raise
                    result = ClipResult(path=name, error=str(exc))
                futures[i] = None  # type: ignore[call-overload]  # free decoded frames early
                results.append(result)
                if progress is not None:
                    progress(i + 1, name)
        return results[0] if single else results

    def _score(self, emb: VideoEmbedding, name: str, labels: list[str], label_emb: torch.Tensor, *, scale: float, spec: SamplerSpec, views: str, top_k: int, multi_label: bool, threshold: float, n_segments: int) -> ClipResult:
        probs = score_views(emb.frames, label_emb, logit_scale=scale, multi_label=multi_label)
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
            seg_probs, kept = score_segments(frame_emb, times, label_emb, boundaries=bounds, logit_scale=scale, multi_label=multi_label)
            for row, s in zip(seg_probs, kept.tolist()):
                segs.append(SegmentResult(start_s=float(bounds[s]), end_s=float(bounds[s + 1]), labels=_ranked(row, labels, k)))
        return ClipResult(
            path=name, labels=ranked, predicted=predicted, segments=segs, multi_label=multi_label,
            threshold=threshold if multi_label else None, duration_s=float(duration),
            frames_sampled=int(emb.frames.shape[1] * emb.frames.shape[2]), views=views,
        )


def _ranked(probs: torch.Tensor, labels: list[str], k: int) -> list[LabelScore]:
    values, order = probs.topk(k)
    return [LabelScore(label=labels[j], score=float(v)) for v, j in zip(values.tolist(), order.tolist())]


def load(model: str | Path, *, device: str = "cpu", dtype: torch.dtype | None = None, label_bank: str | Path | bool | None = True, prompts: str = "ensemble", template: str | None = None) -> VideoClassifier:
    """Load a classifier: ``openvocab.load("openai/clip-vit-base-patch32")`` or a local model directory.

    ``label_bank``: ``True`` (default) uses the persistent bank at :meth:`LabelBank.default_path`, a path uses
    that file, ``False``/``None`` disables caching. ``prompts``: ``"ensemble"`` (CLIP's 28 Kinetics templates),
    ``"single"`` (one ``template``), ``"classname"``, or a path to a templates file.
    """
    backbone = ClipBackbone.from_pretrained(model, device=device, dtype=dtype)
    bank: LabelBank | None
    if label_bank is True:
        bank = LabelBank(LabelBank.default_path())
    elif label_bank in (False, None):
        bank = None
    else:
        bank = LabelBank(label_bank)  # type: ignore[arg-type]
    if prompts in {"ensemble", "single", "classname"}:
        pset = prompt_set(prompts, template=template)  # type: ignore[arg-type]
    else:
        from openvocab.text.prompts import load_templates_file

        pset = load_templates_file(prompts)
    return VideoClassifier(backbone=backbone, label_bank=bank, prompts=pset)
