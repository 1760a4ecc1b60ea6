"""Torch datasets over manifests: the same decoding, sampling and preprocessing as ``openvocab classify``.

Items carry ``inputs``, a mapping modality -> tensor (``rgb``, and ``flow`` / ``audio`` for MOV recognisers: the
modalities of :class:`~openvocab.io.modalities.InputSettings`), the recogniser's input contract.

* training items: one clip of ``T`` frames sampled in train mode (random frame per TSN segment, or a random dense
  clip), augmented identically across frames (Text4Vis Table A.3) -> ``(T, 3, S, S)``; flow images of the same
  frames with the same crop and flip; audio: a random 8 s spectrogram with SpecAugment -> ``(1, 3, 128, 800)``;
* evaluation items: test-mode sampling with ``temporal_views × spatial_crops`` views -> ``(C, V, T, 3, S, S)``
  (flow the same; audio ``(C, V, 1, 3, 128, 800)``, one window per temporal view; :mod:`openvocab.io.modalities`).

Randomness is a pure function of ``(seed, epoch, index)``, so a resumed run sees exactly the clips and
augmentations the uninterrupted run would have seen, whatever the number of DataLoader workers. A file that fails
to decode yields ``None``; :func:`collate_skip_failed` drops it and the trainer reports it (batch jobs continue).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from openvocab.data.manifests import VideoRecord
from openvocab.errors import OpenVocabError
from openvocab.io.decode import open_video
from openvocab.io.modalities import InputSettings
from openvocab.io.sampling import SamplerSpec, sample_indices
from openvocab.io.transforms import ImageSpec, preprocess_frames

log = logging.getLogger(__name__)


def _window(record: VideoRecord, num_frames: int, fps: float) -> tuple[int, int]:
    """Frame range ``[first, first + count)`` of the labelled window (the whole file when no start/end)."""
    if record.start_s is None and record.end_s is None:
        return 0, num_frames
    first = int(round((record.start_s or 0.0) * fps))
    last = num_frames if record.end_s is None else int(round(record.end_s * fps))
    first = min(max(first, 0), num_frames - 1)
    last = min(max(last, first + 1), num_frames)
    return first, last - first


class VideoClipDataset(Dataset):
    """Clips of the videos in ``records``; see the module docstring for what an item is."""

    def __init__(
        self,
        records: Sequence[VideoRecord],
        *,
        sampler: SamplerSpec,
        clip: ImageSpec = ImageSpec(),
        train: bool = False,
        augment=None,
        seed: int = 0,
        multi_label: bool = False,
        num_classes: int | None = None,
        inputs: InputSettings = InputSettings(),
    ) -> None:
        self.records = list(records)
        self.inputs = inputs
        self.sampler = sampler
        self.clip = clip
        self.train = train
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.multi_label = multi_label
        self.num_classes = num_classes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def _target(self, record: VideoRecord):
        if not self.multi_label:
            return int(record.labels[0]) if record.labels else -1
        target = torch.zeros(self.num_classes or 0)
        target[list(record.labels)] = 1.0
        return target

    def __getitem__(self, index: int):
        record = self.records[index]
        try:
            return self._load(index, record)
        except OpenVocabError as exc:
            log.warning("skipped %s", exc)
            return self._failed(record, exc)

    def _failed(self, record, exc: OpenVocabError):
        """What a clip that cannot be decoded becomes in a batch (``None``: the collate function drops it)."""
        return None

    def _load(self, index: int, record: VideoRecord) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        source = open_video(record.path)
        first, count = _window(record, source.info.num_frames, source.info.fps)
        if self.train:
            one_view = SamplerSpec(kind=self.sampler.kind, frames=self.sampler.frames, stride=self.sampler.stride)
            indices = sample_indices(one_view, count, train=True, rng=rng) + first
        else:
            indices = sample_indices(self.sampler, count) + first
        flat = indices.reshape(-1)
        settings = self.inputs
        # decode a bit larger than the crop when augmenting, so RandomResizedCrop has pixels to zoom into
        short = self.clip.resize_short_side if not self.train else max(self.clip.resize_short_side, int(self.clip.size * 1.15))
        if settings.needs_flow:
            from openvocab.io.modalities import read_with_flow_pairs

            decoded, decoded_source = read_with_flow_pairs(source, flat, max_short_side=short)
        else:
            decoded = source.read(flat.tolist(), max_short_side=short)
        c = self.clip
        out: dict[str, torch.Tensor] = {}
        flow = self._flow_images(decoded_source, flat, record, decoded.frames.shape[1:3]) if settings.needs_flow else None
        if self.train:
            if self.augment is not None:
                from openvocab.data.augment import to_channels_first

                gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
                frames = to_channels_first(torch.from_numpy(decoded.frames))
                params = self.augment.sample(int(frames.shape[2]), int(frames.shape[3]), generator=gen)
                if "rgb" in settings.modalities:
                    out["rgb"] = self.augment.apply(frames, params)
                if flow is not None:
                    from openvocab.io.modalities import flow_train_tensor

                    out["flow"] = flow_train_tensor(flow, augment=self.augment, params=params)
            else:
                for key, images in (("rgb", decoded.frames), ("flow", flow)):
                    if key in settings.modalities:
                        out[key] = preprocess_frames(images, size=c.size, crops=1, mean=c.mean, std=c.std, resize_short_side=c.resize_short_side)[0]
            if settings.needs_audio:
                from openvocab.io.modalities import audio_train_tensor

                out["audio"] = audio_train_tensor(self._audio(record), rng=rng, seconds=settings.audio_seconds)
        else:
            crops = self.sampler.spatial_crops
            for key, images in (("rgb", decoded.frames), ("flow", flow)):
                if key in settings.modalities:
                    pixels = preprocess_frames(images, size=c.size, crops=crops, mean=c.mean, std=c.std, resize_short_side=c.resize_short_side)
                    out[key] = pixels.reshape(crops, *indices.shape, *pixels.shape[2:])
            if settings.needs_audio:
                from openvocab.io.modalities import audio_eval_tensor

                out["audio"] = audio_eval_tensor(self._audio(record), temporal_views=indices.shape[0], crops=crops, seconds=settings.audio_seconds)
        return {"inputs": out, "target": self._target(record), "index": index}

    def _flow_images(self, source, flat: np.ndarray, record: VideoRecord, size) -> np.ndarray:
        from openvocab.io.modalities import flow_images

        s = self.inputs
        return flow_images(source, flat, method=s.flow_method, cache_dir=s.flow_cache, path=str(record.path), size=tuple(size))

    def _audio(self, record: VideoRecord):
        from openvocab.io.modalities import load_waveform

        return load_waveform(record.path, start_s=record.start_s, end_s=record.end_s, seconds=self.inputs.audio_seconds)


def collate_skip_failed(items: list) -> dict:
    """Stack the items that decoded; ``dropped`` counts those that failed (each was logged).

    The batch contract: ``inputs`` maps each modality to its batched tensor (``{"rgb": (B, ...)}``), the recogniser's
    input mapping. When every item failed, ``inputs`` is ``None`` (the caller still learns how many samples were
    consumed)."""
    good = [it for it in items if it is not None]
    if not good:
        return {"inputs": None, "target": None, "index": torch.zeros(0, dtype=torch.long), "dropped": len(items)}
    target = [it["target"] for it in good]
    return {
        "inputs": {key: torch.stack([it["inputs"][key] for it in good]) for key in good[0]["inputs"]},
        "target": torch.stack(target) if isinstance(target[0], torch.Tensor) else torch.tensor(target, dtype=torch.long),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "dropped": len(items) - len(good),
    }
