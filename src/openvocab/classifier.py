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
        self.pool = None  # TAP (scoring's default); a trained run's temporal module in RunClassifier
        if backbone.random_weights:
            log.warning("%s has RANDOM weights (an architecture-exact test model): its scores are meaningless", backbone.source)

    @property
    def logit_scale(self) -> float:
        return self.backbone.logit_scale

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
        emb = self._frame_features(pixels.reshape(-1, indices.shape[-1], *pixels.shape[2:]))  # (C*V, T, D)
        emb = emb.reshape(sampler.spatial_crops, *indices.shape, -1)
        times = torch.as_tensor(decoded.timestamps_s, dtype=torch.float64).reshape(indices.shape)
        return VideoEmbedding(frames=emb, times_s=times, info=info)

    def _frame_features(self, views: torch.Tensor) -> torch.Tensor:
        """``(views, T, 3, S, S) -> (views, T, D)`` float32 CPU CLIP frame embeddings, in batches of frames."""
        flat = views.reshape(-1, *views.shape[2:])
        chunks = [self.backbone.encode_frames(flat[i : i + self.frame_batch_size]).float().cpu() for i in range(0, flat.shape[0], self.frame_batch_size)]
        return torch.cat(chunks).reshape(*views.shape[:2], -1)

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
        probs = score_views(emb.frames, label_emb, logit_scale=scale, multi_label=multi_label, pool=self.pool)
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
            seg_probs, kept = score_segments(frame_emb, times, label_emb, boundaries=bounds, logit_scale=scale, multi_label=multi_label, pool=self.pool)
            for row, s in zip(seg_probs, kept.tolist()):
                segs.append(SegmentResult(start_s=float(bounds[s]), end_s=float(bounds[s + 1]), labels=_ranked(row, labels, k)))
        return ClipResult(
            path=name, labels=ranked, predicted=predicted, segments=segs, multi_label=multi_label,
            threshold=threshold if multi_label else None, duration_s=float(duration),
            frames_sampled=int(emb.frames.shape[1] * emb.frames.shape[2]), views=views,
        )


class RunClassifier(VideoClassifier):
    """A :class:`VideoClassifier` over a trained ``openvocab train`` run: the run's whole video side.

    * frame features: ``recognizer.frame_features`` on whole views ``(views, T, 3, S, S)`` (chunked by views), so
      in-backbone temporal modules (TokenT1D for ViT, T1D for CLIP-ResNet) see the frames of one video together;
    * pooling (:attr:`pool`, handed to :mod:`openvocab.scoring`): the run's temporal module (TAP or T-Trans), then
      the head's ``projection`` when it has one (the ``sentence`` classifier's visual projection); the timeline
      pools each segment's crop-averaged frame features, in time order, the same way;
    * label embeddings, in the classifier's space (as :func:`openvocab.eval.run.class_embeddings`): ``text`` -- the
      run's CLIP text tower with its prompt set (cached in the label bank, keyed by the text tower's fingerprint);
      ``sentence`` -- the run's sentence encoder; the frozen closed-set heads (``normal``, ``orthogonal``, ``lda``)
      -- only the run's own class names, their rows of ``head.weight``. ``linear`` heads are refused by :func:`load`;
    * scale: the head's ``logit_scale``.

    With ``views="1x1"`` the clip scores equal ``softmax(recognizer(pixels))`` of the run's evaluation pipeline.
    """

    CLOSED_SET = ("normal", "orthogonal", "lda")

    def __init__(self, *, recognizer, cfg, class_names: Sequence[str], run_dir: str | Path, label_bank: LabelBank | None = None, prompts: PromptSet | None = None, frame_batch_size: int = 64) -> None:
        self.recognizer = recognizer.eval()
        self.cfg = cfg
        self.class_names = list(class_names)
        self.run_dir = str(run_dir)
        self.kind = cfg.model.classifier
        if self.kind not in {"text", "sentence", *self.CLOSED_SET}:
            raise _unscorable(self.kind, run_dir)
        super().__init__(backbone=recognizer.backbone, label_bank=label_bank if self.kind == "text" else None, prompts=prompts, frame_batch_size=frame_batch_size)
        self.pool = self._pool
        self._sentence_cache: dict[str, torch.Tensor] = {}

    @property
    def logit_scale(self) -> float:
        return float(self.recognizer.head.logit_scale)

    @property
    def _device(self) -> torch.device:
        return next(self.recognizer.parameters()).device

    # ------------------------------------------------------------------ labels
    def label_embeddings(self, labels: Sequence[str]) -> torch.Tensor:
        labels = list(labels)
        if self.kind == "text":
            return super().label_embeddings(labels)
        if self.kind == "sentence":
            from openvocab.models.heads import sentence_weights

            missing = [lab for lab in dict.fromkeys(labels) if lab not in self._sentence_cache]
            if missing:
                for lab, row in zip(missing, sentence_weights(self.cfg.model.sentence_encoder, missing).float().cpu()):
                    self._sentence_cache[lab] = row
            self.last_encoded_labels = len(missing)
            return torch.stack([self._sentence_cache[lab] for lab in labels]) if labels else torch.empty(0, 0)
        index = {name: i for i, name in enumerate(self.class_names)}
        folded = {name.casefold(): i for i, name in enumerate(self.class_names)}
        rows = []
        for lab in labels:
            i = index.get(lab, folded.get(lab.casefold()))
            if i is None:
                shown = ", ".join(self.class_names[:10]) + (" ..." if len(self.class_names) > 10 else "")
                raise InputError(f"label '{lab}' is not one of the {len(self.class_names)} classes of this closed-set '{self.kind}' classifier ({shown})", path=self.run_dir)
            rows.append(i)
        self.last_encoded_labels = 0
        return self.recognizer.head.weight.detach().float().cpu()[rows]

    # ------------------------------------------------------------------ video
    def _frame_features(self, views: torch.Tensor) -> torch.Tensor:
        """Through ``recognizer.frame_features``, whole views per call so TokenT1D / T1D see one video's frames."""
        t = views.shape[1]
        step = max(1, self.frame_batch_size // t)
        device = self._device
        return torch.cat([self.recognizer.frame_features(views[i : i + step].to(device)).float().cpu() for i in range(0, views.shape[0], step)])

    @torch.inference_mode()
    def _pool(self, frames: torch.Tensor) -> torch.Tensor:
        """``(..., T, D) -> (..., D')``: the run's temporal module, then the head's projection (if any)."""
        t, d = frames.shape[-2:]
        limit = getattr(self.recognizer.temporal, "max_frames", None)
        if limit is not None and t > limit:
            raise InputError(f"the run's temporal transformer pools at most {limit} frames at once, got {t} (use fewer --frames, or more --segments)", path=self.run_dir)
        x = frames.reshape(-1, t, d).to(self._device).float()
        video = self.recognizer.temporal(x)
        projection = getattr(self.recognizer.head, "projection", None)
        if projection is not None:
            video = projection(video)
        return video.float().cpu().reshape(*frames.shape[:-2], video.shape[-1])


def _ranked(probs: torch.Tensor, labels: list[str], k: int) -> list[LabelScore]:
    values, order = probs.topk(k)
    return [LabelScore(label=labels[j], score=float(v)) for v, j in zip(values.tolist(), order.tolist())]


def _unscorable(kind: str, run_dir: str | Path) -> InputError:
    return InputError(f"a '{kind}' classifier head cannot score labels by name (it has no frozen class embeddings); train with classifier text, sentence, normal, orthogonal or lda", path=run_dir)


def is_run_dir(model: str | Path) -> bool:
    """Whether ``model`` names an ``openvocab train`` run directory (``config.yaml`` and a ``latest`` checkpoint)."""
    p = Path(model).expanduser()
    return p.is_dir() and (p / "config.yaml").is_file() and (p / "latest").is_file()


def load(model: str | Path, *, device: str = "cpu", dtype: torch.dtype | None = None, label_bank: str | Path | bool | None = True, prompts: str | None = None, template: str | None = None) -> VideoClassifier:
    """Load a classifier: ``openvocab.load("openai/clip-vit-base-patch32")``, a local model directory, or a
    training run directory of ``openvocab train`` (``config.yaml`` + checkpoints; see :class:`RunClassifier`:
    the run's temporal modules, classifier space and scale are used).

    ``label_bank``: ``True`` (default) uses the persistent bank at :meth:`LabelBank.default_path`, a path uses
    that file, ``False``/``None`` disables caching. ``prompts``: ``"ensemble"`` (CLIP's 28 Kinetics templates),
    ``"single"`` (one ``template``), ``"classname"``, or a path to a templates file; ``None`` (default) means
    ``"ensemble"`` for a CLIP model and the run's own prompt set (``model.prompts`` / ``model.template``) for a run.
    """
    bank: LabelBank | None
    if label_bank is True:
        bank = LabelBank(LabelBank.default_path())
    elif label_bank in (False, None):
        bank = None
    else:
        bank = LabelBank(label_bank)  # type: ignore[arg-type]
    if is_run_dir(model):
        return _load_run(model, device=device, dtype=dtype, bank=bank, prompts=prompts, template=template)
    p = Path(model).expanduser()
    if p.is_dir() and (p / "config.yaml").is_file() and not (p / "config.json").is_file():
        raise InputError("looks like a training run directory but has no checkpoint yet (no 'latest' file)", path=p)
    backbone = ClipBackbone.from_pretrained(model, device=device, dtype=dtype)
    return VideoClassifier(backbone=backbone, label_bank=bank, prompts=_prompt_set(prompts or "ensemble", template))


def _prompt_set(prompts: str, template: str | None) -> PromptSet:
    if prompts in {"ensemble", "single", "classname"}:
        pset = prompt_set(prompts, template=template)  # type: ignore[arg-type]
    else:
        from openvocab.text.prompts import load_templates_file

        pset = load_templates_file(prompts)
    return pset


def _load_run(run: str | Path, *, device: str, dtype: torch.dtype | None, bank: LabelBank | None, prompts: str | None, template: str | None) -> RunClassifier:
    from openvocab.eval.run import load_run
    from openvocab.train.config import load_config

    run_dir = Path(run).expanduser()
    cfg = load_config(run_dir / "config.yaml")
    if cfg.model.classifier == "linear":  # refuse before building the model
        raise _unscorable("linear", run_dir)
    if dtype is not None and dtype != torch.float32:
        log.warning("%s: a training run is loaded in float32 (dtype %s ignored)", run_dir, dtype)
    recognizer, cfg, class_names = load_run(run_dir, device=device)
    if prompts is None:
        prompts, template = cfg.model.prompts, cfg.model.template
    elif cfg.model.classifier != "text":
        log.warning("%s: --prompts is used only by a 'text' classifier; this run's is '%s'", run_dir, cfg.model.classifier)
    return RunClassifier(recognizer=recognizer, cfg=cfg, class_names=class_names, run_dir=run_dir, label_bank=bank, prompts=_prompt_set(prompts, template))
