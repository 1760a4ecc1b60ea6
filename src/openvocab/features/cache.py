"""The feature cache: frozen per-frame CLIP features on disk, so heads train without video or backbone.

``openvocab features extract`` runs every video of a manifest once through decoding, test-mode sampling,
preprocessing and the frozen vision tower, and writes sharded safetensors::

    cache/
      index.json                 model fingerprint, sampler, classes, shard list (written last, atomically)
      shard_00000.safetensors    frames (N, C·V, T, D) float16, targets (N,) or (N, K), index (N,)
                                 [+ tokens (N, C·V, T, L, 1+P, W) float16 when layers are asked for]

Each shard is written atomically; re-running skips finished shards (an interrupted extraction resumes). Heads
(TAP / T-Trans + a frozen or linear classifier, LDA, linear probes) then train from :class:`FeatureCache` through
:meth:`~openvocab.models.recognizer.VideoRecognizer.logits_from_frame_features`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from openvocab.atomic import atomic_path, atomic_write
from openvocab.data.dataset import VideoClipDataset, collate_skip_failed
from openvocab.data.manifests import VideoRecord
from openvocab.errors import InputError
from openvocab.io.sampling import SamplerSpec
from openvocab.models.backbone import ClipBackbone

log = logging.getLogger(__name__)

INDEX = "index.json"


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


def _shard_name(i: int) -> str:
    return f"shard_{i:05d}.safetensors"


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
) -> CacheInfo:
    """Extract (or finish extracting) the cache of ``records`` into ``out_dir``; returns its :class:`CacheInfo`."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    spec = backbone.image_spec
    clip = spec
    sampler_dict = asdict(sampler)
    previous = out / INDEX
    if previous.is_file():
        old = json.loads(previous.read_text())
        if old["fingerprint"] != backbone.fingerprint or old["sampler"] != sampler_dict:
            raise InputError("holds a cache of another model or sampler; choose another directory", path=out)
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
        ds = VideoClipDataset(chunk, sampler=sampler, clip=clip, train=False)
        frames, targets, index, tokens = [], [], [], []
        for batch in DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_skip_failed):
            done += len(batch["index"]) + batch["dropped"]
            if batch["inputs"] is not None:
                px = batch["inputs"]["rgb"]  # (B, C, V, T, 3, S, S)
                b, c, v, t = px.shape[:4]
                flat = px.reshape(b * c * v * t, *px.shape[4:])
                frames.append(backbone.encode_frames(flat).float().reshape(b, c * v, t, -1).half().cpu())
                if layers:
                    tok = backbone.vision_tokens(flat, layers=list(layers))
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
    """A finished cache, loaded into memory: ``frames (N, C·V, T, D)`` float32, ``targets``, ``index``."""

    def __init__(self, directory: str | Path, *, with_tokens: bool = False) -> None:
        self.directory = Path(directory).expanduser()
        index = self.directory / INDEX
        if not index.is_file():
            raise InputError("is not a feature cache (no index.json; run `openvocab features extract` first)", path=self.directory)
        self.info = CacheInfo(**json.loads(index.read_text()))
        keys = ("frames", "targets", "index") + (("tokens",) if with_tokens else ())
        parts = [_read_shard(self.directory / name, keys) for name in self.info.shards]
        self.frames = torch.cat([p["frames"] for p in parts]).float()
        self.targets = torch.cat([p["targets"] for p in parts])
        self.index = torch.cat([p["index"] for p in parts])
        self.tokens = torch.cat([p["tokens"] for p in parts]) if with_tokens and "tokens" in parts[0] else None

    def __len__(self) -> int:
        return int(self.index.numel())

    def video_embeddings(self) -> torch.Tensor:
        """TAP over time and views: ``(N, D)`` -- e.g. for LDA or linear probes."""
        return self.frames.mean(dim=(1, 2))
