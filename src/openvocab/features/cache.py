"""The feature cache: frozen per-frame CLIP features on disk, so heads train without video or backbone.

``openvocab features extract`` runs every video of a manifest once through decoding, test-mode sampling,
preprocessing and the frozen vision tower, and writes sharded safetensors::

    cache/
      extraction.json            what the shards are made of (written first; a resumed run must match it)
      index.json                 model fingerprint, sampler, modality + input settings, classes, shard list
                                 (written last, atomically)
      shard_00000.safetensors    frames (N, C·V, T, D) float16, targets (N,) or (N, K), index (N,)
                                 [+ tokens (N, C·V, T, L, 1+P, W) float16 when layers are asked for]

A cache holds ONE input modality (the recogniser's input mapping, :mod:`openvocab.io.modalities`): ``rgb`` frames,
``flow`` images of the same sampled frames (``flow_method``; read from an ``openvocab flow extract`` folder where it
has the video, else computed), or ``audio`` spectrograms, one 8 s window per temporal view (``audio_seconds``) and
so one "frame" per view: ``T = 1``. All go through the same frozen tower's ``encode_frames`` (a spectrogram's
position embeddings are interpolated to its 128 x 100·s grid, MOV §4.2). Caches of several modalities extracted
from the same manifest with the same ``--views`` are aligned video by video and view by view (view ``c·V + v`` is
crop ``c`` of temporal view ``v`` in each; the audio of view ``v`` is the window at about the time of video view
``v``), so a MOV head trains from an RGB cache and a flow or audio cache (:func:`check_aligned`,
:func:`openvocab.train.head_training.train_head`). Old caches without a modality field are RGB caches.

Each shard is written atomically; re-running skips finished shards (an interrupted extraction resumes), after
checking that the directory holds a cache of the same model, sampler, modality, input settings and manifest. Heads
(TAP / T-Trans + a frozen or linear classifier, LDA, linear probes, MOV fusions) then train from
:class:`FeatureCache` through :meth:`~openvocab.models.recognizer.VideoRecognizer.logits_from_frame_features`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from openvocab.atomic import atomic_path, atomic_write
from openvocab.data.dataset import VideoClipDataset, collate_skip_failed
from openvocab.data.manifests import VideoRecord
from openvocab.errors import InputError
from openvocab.io.modalities import InputSettings
from openvocab.io.sampling import SamplerSpec
from openvocab.models.backbone import ClipBackbone

log = logging.getLogger(__name__)

INDEX = "index.json"
EXTRACTION = "extraction.json"
#: The input modalities a cache can hold (the keys of a recogniser's input mapping).
CACHE_MODALITIES = ("rgb", "flow", "audio")


@dataclass(frozen=True)
class CacheInfo:
    model: str
    fingerprint: str
    sampler: dict
    classes: list[str]
    shards: list[str]
    count: int
    dim: int
    layers: list[int]
    failed: list[str]
    modality: str = "rgb"  # caches written before flow / audio existed are rgb
    inputs: dict = field(default_factory=dict)  # how the modality's input was made: flow_method (+ flow_cache), audio_seconds


def input_settings_record(modality: str, *, flow_method: str = "tvl1", flow_cache: str | Path | None = None, audio_seconds: float = 8.0) -> dict:
    """What defines a cache's input besides the sampler: ``{}`` for rgb, ``{"flow_method", "flow_cache"}`` for flow
    (the folder is where precomputed flow came from; the same method's flow computed on the fly is the same flow),
    ``{"audio_seconds"}`` for audio."""
    if modality == "flow":
        return {"flow_method": flow_method, "flow_cache": None if flow_cache is None else str(Path(flow_cache).expanduser())}
    if modality == "audio":
        return {"audio_seconds": float(audio_seconds)}
    return {}


#: Input settings that change the features (compared on resume); ``flow_cache`` only says where flow was read from.
_DEFINING = ("flow_method", "audio_seconds")


def _describe(modality: str, inputs: Mapping) -> str:
    settings = ", ".join(f"{k} {inputs[k]}" for k in _DEFINING if k in inputs)
    return f"{modality} ({settings})" if settings else modality


def _records_digest(records: Sequence[VideoRecord]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([str(r.path), list(r.labels), r.start_s, r.end_s]).encode())
    return h.hexdigest()[:24]


def _check_same_cache(out: Path, previous: Mapping, wanted: Mapping) -> None:
    """Refuse (one line) to add shards to a directory holding a cache made otherwise."""
    if previous.get("fingerprint") != wanted["fingerprint"] or previous.get("sampler") != wanted["sampler"]:
        raise InputError("holds a cache of another model or sampler; choose another directory", path=out)
    old_modality, old_inputs = previous.get("modality", "rgb"), previous.get("inputs") or {}
    same_inputs = all(old_inputs.get(k) == wanted["inputs"].get(k) for k in _DEFINING)
    if old_modality != wanted["modality"] or not same_inputs:
        raise InputError(
            f"holds a cache of {_describe(old_modality, old_inputs)} features, not {_describe(wanted['modality'], wanted['inputs'])}; choose another directory",
            path=out,
        )
    for key, what in (("shard_size", "shard size"), ("records", "manifest (other videos or another order)"), ("layers", "--layers")):
        if key in previous and previous[key] != wanted[key]:
            raise InputError(f"holds a cache extracted with another {what}; re-run it as it was started or choose another directory", path=out)


def _shard_name(i: int) -> str:
    return f"shard_{i:05d}.safetensors"


def _encode(backbone: ClipBackbone, px: torch.Tensor, modality: str) -> torch.Tensor:
    """``(B, C, V, T, 3, H, W)`` -> ``(B, C·V, T, D)`` float16 on the CPU. Audio (``T = 1``) is the same for every
    spatial crop (the dataset repeats it), so only crop 0 is encoded and the result repeated."""
    b, c, v, t = px.shape[:4]
    if modality == "audio":
        flat = px[:, 0].reshape(b * v * t, *px.shape[4:])
        feats = backbone.encode_frames(flat).float().reshape(b, 1, v, t, -1).expand(b, c, v, t, -1)
        return feats.reshape(b, c * v, t, -1).half().cpu()
    flat = px.reshape(b * c * v * t, *px.shape[4:])
    return backbone.encode_frames(flat).float().reshape(b, c * v, t, -1).half().cpu()


@torch.inference_mode()
def extract_features(
    *,
    backbone: ClipBackbone,
    records: Sequence[VideoRecord],
    classes: Sequence[str],
    out_dir: str | Path,
    sampler: SamplerSpec,
    layers: Sequence[int] = (),
    shard_size: int = 512,
    batch_size: int = 8,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    modality: str = "rgb",
    flow_method: str = "tvl1",
    flow_cache: str | Path | None = None,
    audio_seconds: float = 8.0,
) -> CacheInfo:
    """Extract (or finish extracting) the cache of ``records`` into ``out_dir``; returns its :class:`CacheInfo`.

    ``modality``: ``rgb``, ``flow`` (images of ``flow_method`` flow, from the ``flow_cache`` folder where it holds the
    video) or ``audio`` (``audio_seconds`` windows, one per temporal view; ``T = 1``); module docstring."""
    if modality not in CACHE_MODALITIES:
        raise InputError(f"unknown modality '{modality}' (choose {', '.join(CACHE_MODALITIES)})")
    if modality == "flow":
        from openvocab.io.choices import FLOW_METHODS

        FLOW_METHODS.check(flow_method, where="--flow-method")
    if modality == "audio":
        if not audio_seconds > 0:
            raise InputError(f"--audio-seconds must be positive, got {audio_seconds}")
        if layers:
            raise InputError("--layers: per-layer tokens are cached for rgb and flow frames only, not for spectrograms")
    out = Path(out_dir).expanduser()
    inputs = input_settings_record(modality, flow_method=flow_method, flow_cache=flow_cache, audio_seconds=audio_seconds)
    settings = InputSettings(
        modalities=(modality,),
        flow_method=flow_method,
        flow_cache=None if flow_cache is None else str(Path(flow_cache).expanduser()),
        audio_seconds=float(audio_seconds),
    )
    sampler_dict = asdict(sampler)
    wanted = {
        "model": backbone.source,
        "fingerprint": backbone.fingerprint,
        "sampler": sampler_dict,
        "modality": modality,
        "inputs": inputs,
        "shard_size": int(shard_size),
        "layers": list(layers),
        "records": _records_digest(records),
    }
    for name in (EXTRACTION, INDEX):  # extraction.json from the start; index.json of caches written before it
        if (out / name).is_file():
            _check_same_cache(out, json.loads((out / name).read_text()), wanted)
            break
    out.mkdir(parents=True, exist_ok=True)
    if not (out / EXTRACTION).is_file():
        atomic_write(out / EXTRACTION, json.dumps(wanted, indent=2))
    clip = backbone.image_spec
    shards: list[str] = []
    failed: list[str] = []
    done = 0
    for s, start in enumerate(range(0, len(records), shard_size)):
        name = _shard_name(s)
        chunk = list(records[start : start + shard_size])
        shards.append(name)
        if (out / name).is_file():  # finished by an earlier run
            done += len(chunk)
            if progress:
                progress(done, len(records))
            continue
        ds = VideoClipDataset(chunk, sampler=sampler, clip=clip, train=False, inputs=settings)
        frames, targets, index, tokens = [], [], [], []
        for batch in DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_skip_failed):
            done += len(batch["index"]) + batch["dropped"]
            if batch["inputs"] is not None:
                px = batch["inputs"][modality]  # (B, C, V, T, 3, H, W); audio: T = 1, H x W = 128 x 100·s
                frames.append(_encode(backbone, px, modality))
                if layers:
                    b, c, v, t = px.shape[:4]
                    tok = backbone.vision_tokens(px.reshape(b * c * v * t, *px.shape[4:]), layers=list(layers))
                    tokens.append(tok.reshape(b, c * v, t, *tok.shape[1:]).half().cpu())
                targets.append(batch["target"])
                index.append(batch["index"] + start)
            if progress:
                progress(done, len(records))
        got = {int(i) for part in index for i in part.tolist()}
        failed.extend(r.path for j, r in enumerate(chunk) if start + j not in got)
        if not frames:
            shards.pop()
            continue
        tensors = {"frames": torch.cat(frames).contiguous(), "targets": torch.cat(targets).contiguous(), "index": torch.cat(index).contiguous()}
        if tokens:
            tensors["tokens"] = torch.cat(tokens).contiguous()
        with atomic_path(out / name) as tmp:
            save_file(tensors, str(tmp))
    if not shards:
        raise InputError("no video could be decoded; nothing was cached", path=out)
    dims = _read_shard(out / shards[0], ("frames",))["frames"].shape
    count = sum(_shard_len(out / n) for n in shards)
    info = CacheInfo(
        model=backbone.source,
        fingerprint=backbone.fingerprint,
        sampler=sampler_dict,
        classes=list(classes),
        shards=shards,
        count=count,
        dim=int(dims[-1]),
        layers=list(layers),
        failed=failed,
        modality=modality,
        inputs=inputs,
    )
    atomic_write(out / INDEX, json.dumps(asdict(info), indent=2))
    return info


def _read_shard(path: Path, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in keys if k in f.keys()}


def _shard_len(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return int(f.get_slice("index").get_shape()[0])


class FeatureCache:
    """A finished cache, loaded into memory: ``frames (N, C·V, T, D)`` float32 (``T = 1`` for audio), ``targets``,
    ``index``; :attr:`modality` says which input it holds."""

    def __init__(self, directory: str | Path, *, with_tokens: bool = False) -> None:
        self.directory = Path(directory).expanduser()
        index = self.directory / INDEX
        if not index.is_file():
            raise InputError("is not a feature cache (no index.json; run `openvocab features extract` first)", path=self.directory)
        try:
            self.info = CacheInfo(**json.loads(index.read_text()))
        except (ValueError, TypeError) as exc:
            raise InputError(f"has an unreadable index.json ({exc})", path=self.directory) from None
        keys = ("frames", "targets", "index") + (("tokens",) if with_tokens else ())
        parts = [_read_shard(self.directory / name, keys) for name in self.info.shards]
        self.frames = torch.cat([p["frames"] for p in parts]).float()
        self.targets = torch.cat([p["targets"] for p in parts])
        self.index = torch.cat([p["index"] for p in parts])
        self.tokens = torch.cat([p["tokens"] for p in parts]) if with_tokens and "tokens" in parts[0] else None

    @property
    def modality(self) -> str:
        return self.info.modality

    @property
    def views(self) -> int:
        return int(self.frames.shape[1])

    def __len__(self) -> int:
        return int(self.index.numel())

    def video_embeddings(self) -> torch.Tensor:
        """TAP over time and views: ``(N, D)`` -- e.g. for LDA or linear probes."""
        return self.frames.mean(dim=(1, 2))


def check_aligned(caches: Mapping[str, FeatureCache]) -> None:
    """Refuse (one line) caches that do not hold the same videos in the same order with the same targets and the same
    views -- the condition for reading them as one multimodal dataset (stream name -> cache)."""
    items = list(caches.items())
    if not items:
        raise InputError("no feature cache given")
    first_name, first = items[0]
    for name, cache in items[1:]:
        where = f"the '{name}' cache ({cache.directory}) and the '{first_name}' cache ({first.directory})"
        if len(cache) != len(first) or not torch.equal(cache.index, first.index):
            raise InputError(
                f"{where} do not hold the same videos in the same order ({len(cache)} vs {len(first)} videos): extract both from one manifest "
                "(a video that failed in one must fail in both)"
            )
        if cache.targets.shape != first.targets.shape or not torch.equal(cache.targets, first.targets):
            raise InputError(f"{where} disagree on the videos' labels: extract both from one manifest with the same --classes")
        samplers = [{k: c.info.sampler.get(k) for k in ("temporal_views", "spatial_crops")} for c in (cache, first)]
        if cache.views != first.views or samplers[0] != samplers[1]:
            raise InputError(f"{where} have other views ({cache.views} vs {first.views}): extract both with the same --views")
