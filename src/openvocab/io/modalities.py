"""The flow and audio inputs of a recogniser's streams, made from a plain video file (MOV §4.1-4.2).

One place for what the training and evaluation datasets (:mod:`openvocab.data.dataset`) and ``classify``
(:mod:`openvocab.classifier`) feed the ``flow`` and ``audio`` streams, so both see the same inputs:

* **flow** -- for the sampled frame indices, flow images (:func:`openvocab.io.flow.flow_to_image`: clamp ±20 px,
  0..255, constant third channel) of the pairs ``(i, i+1)`` (:func:`openvocab.io.flow.flow_pairs`), from a
  precomputed :class:`~openvocab.io.flow_cache.FlowCache` when it holds the video with the same settings, else
  computed from the decoded frames with the stream's method (TV-L1 by default). They are treated "directly as
  images" (§4.2): CLIP-normalised, with the RGB frames' crops at test time and the RGB clip's crop box and flip in
  training (:func:`flow_train_tensor`; a flip negates the x component). RandAugment's colour and affine ops and the
  random grayscale are NOT applied to flow: they would change the motion values and directions the image encodes.
* **audio** -- :func:`openvocab.io.audio.load_audio` (16 kHz mono) of the labelled window; training: one random 8 s
  crop + SpecAugment (:func:`openvocab.io.audio.train_image`); testing: one 8 s window per temporal video view,
  evenly spaced like the video views (:func:`openvocab.io.audio.eval_images`), repeated over the spatial crops, so
  every video view is fused with the sound of about the same time (MOV tests audio with 12 temporal views; with
  ``--views 12x1`` the two protocols coincide). A file without an audio track, or whose audio does not decode, gives
  the spectrogram of digital silence and ``AudioInput.present = False``: training and evaluation carry on (one log
  line per file), and ``classify`` falls back to the video stream alone and says so (see
  :mod:`openvocab.classifier`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openvocab.errors import InputError, VideoDecodeError
from openvocab.io.decode import DecodedFrames

log = logging.getLogger(__name__)

#: Input modalities that need more than the sampled RGB frames.
DERIVED = ("flow", "audio")
#: Short side (px) at which flow is computed, on the fly as in the cache (``openvocab flow extract``'s default): flow
#: values are pixels of these frames (Kinetics' 340 x 256 videos, as MOV's TV-L1 flow), whatever the RGB crop size.
FLOW_SHORT_SIDE = 256


@dataclass(frozen=True)
class InputSettings:
    """Which inputs a recogniser reads (``modalities``, stream order) and how flow / audio are made for it."""

    modalities: tuple[str, ...] = ("rgb",)
    flow_method: str = "tvl1"
    flow_cache: str | None = None  # an `openvocab flow extract` folder; flow is computed where it has no entry
    audio_seconds: float = 8.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", tuple(dict.fromkeys(self.modalities)))

    @property
    def needs_flow(self) -> bool:
        return "flow" in self.modalities

    @property
    def needs_audio(self) -> bool:
        return "audio" in self.modalities

    def restricted(self, modalities: tuple[str, ...]) -> InputSettings:
        return InputSettings(
            modalities=tuple(m for m in self.modalities if m in modalities),
            flow_method=self.flow_method,
            flow_cache=self.flow_cache,
            audio_seconds=self.audio_seconds,
        )


# --------------------------------------------------------------------------------------------------- flow
class _DecodedSource:
    """Already decoded frames behind the ``source.read`` interface of :func:`openvocab.io.flow.flow_for_indices`."""

    def __init__(self, info: Any, indices: np.ndarray, decoded: DecodedFrames) -> None:
        self.info = info
        self._where = {int(i): k for k, i in enumerate(indices.tolist())}
        self._decoded = decoded

    def read(self, indices, *, max_short_side: int | None = None) -> DecodedFrames:
        rows = [self._where[int(i)] for i in np.asarray(indices).reshape(-1).tolist()]
        return DecodedFrames(frames=self._decoded.frames[rows], timestamps_s=self._decoded.timestamps_s[rows])


def read_with_flow_pairs(source: Any, indices: np.ndarray, *, max_short_side: int | None) -> tuple[DecodedFrames, Any]:
    """Decode the sampled ``indices`` AND the successors their flow needs in one pass: ``(frames of indices, a source
    over everything decoded)``; hand the second to :func:`flow_images`. Frames are decoded with a short side of at
    least :data:`FLOW_SHORT_SIDE` (the RGB preprocessing resizes them to its crop size anyway), so flow computed here
    has the magnitudes of the cached flow."""
    if max_short_side is not None:
        max_short_side = max(int(max_short_side), FLOW_SHORT_SIDE)
    from openvocab.io.flow import flow_pairs

    flat = np.asarray(indices, dtype=np.int64).reshape(-1)
    needed = np.union1d(flat, flow_pairs(flat, int(source.info.num_frames)).reshape(-1))
    decoded = source.read(needed.tolist(), max_short_side=max_short_side)
    cached = _DecodedSource(source.info, needed, decoded)
    return cached.read(flat), cached


def flow_images(
    source: Any, indices: np.ndarray, *, method: str = "tvl1", cache_dir: str | None = None, path: str | None = None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Flow images ``(K, H, W, 3)`` uint8 for the sampled ``indices`` (module docstring): from the flow cache at
    ``cache_dir`` when it holds ``path`` with ``method``, else computed from ``source``'s frames. ``size`` ``(H, W)``
    resizes them to the RGB frames' size (a cache written at another short side)."""
    from openvocab.io.flow import ZERO_FLOW_LEVEL, flow_for_indices, flow_to_image

    flat = np.asarray(indices, dtype=np.int64).reshape(-1)
    images = None
    if cache_dir is not None and path is not None:
        from openvocab.io.flow_cache import FlowCache

        cache = FlowCache(cache_dir, method=method)
        if cache.has(path):
            xy = cache.read(path, flat)
            images = np.empty((*xy.shape[:-1], 3), dtype=np.uint8)
            images[..., :2] = xy
            images[..., 2] = ZERO_FLOW_LEVEL
    if images is None:
        images = flow_to_image(flow_for_indices(source, flat, method=method))
    if size is not None and tuple(images.shape[1:3]) != tuple(size):
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        x = torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
        images = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return images


def flow_train_tensor(images: np.ndarray, *, augment: Any, params: Any) -> torch.Tensor:
    """Training flow: the RGB clip's crop box and flip (``params`` from ``VideoAugment.sample``), a flip negating the x
    component (level ``v`` -> ``256 - v``, so zero motion stays 128; +20 px becomes -19.8 px), no RandAugment or grayscale; CLIP-normalised ``(T, 3, S, S)``."""
    from dataclasses import replace

    from openvocab.io.flow import ZERO_FLOW_LEVEL

    x = np.array(images, copy=True)
    if params.flip:  # negate dx about the zero-motion level 128 (255 - v would move zero motion to 127)
        x[..., 0] = np.clip(2 * ZERO_FLOW_LEVEL - x[..., 0].astype(np.int16), 0, 255).astype(np.uint8)
    return augment.apply(x, replace(params, ops=(), gray=False))


# --------------------------------------------------------------------------------------------------- audio
@dataclass(frozen=True)
class AudioInput:
    """A file's waveform for the audio stream (silence when ``present`` is False; ``problem`` says why)."""

    waveform: np.ndarray
    present: bool
    problem: str = ""


def load_waveform(path: str | Path, *, start_s: float | None = None, end_s: float | None = None, seconds: float = 8.0) -> AudioInput:
    """The 16 kHz mono waveform of ``path`` between ``start_s`` and ``end_s`` (module docstring: a missing or
    undecodable track gives ``seconds`` of silence and ``present=False``; a missing FILE still raises)."""
    from openvocab.io.audio import SAMPLE_RATE, NoAudioTrack, crop_samples, load_audio

    try:
        clip = load_audio(path, max_seconds=end_s)
    except NoAudioTrack as exc:
        return AudioInput(np.zeros(crop_samples(seconds), np.float32), False, _reason(exc))
    except VideoDecodeError as exc:
        log.warning("%s (audio: using silence)", exc)
        return AudioInput(np.zeros(crop_samples(seconds), np.float32), False, _reason(exc))
    wav = clip.waveform
    if start_s:
        wav = wav[int(round(start_s * SAMPLE_RATE)) :]
    if wav.shape[0] == 0:
        return AudioInput(np.zeros(crop_samples(seconds), np.float32), False, "no audio inside the labelled window")
    return AudioInput(wav, True)


def _reason(exc: Exception) -> str:
    """The problem of a one-line error without its ``path: `` prefix."""
    text, path = str(exc), getattr(exc, "path", None)
    return text[len(path) + 2 :] if path and text.startswith(f"{path}: ") else text


def audio_train_tensor(audio: AudioInput, *, rng: np.random.Generator, seconds: float = 8.0) -> torch.Tensor:
    """Training audio: random crop + log-mel + SpecAugment -> ``(1, 3, 128, 100·seconds)`` (one "frame").

    MOV's time mask (at most 192 frames) is for its 8 s (800-frame) crop; another crop length keeps the same fraction
    (24 %), so a 2 s crop is masked by at most 48 frames instead of nearly all of it. The frequency mask (48 bins)
    is unchanged."""
    from openvocab.io.audio import MOV_CROP_SECONDS, MOV_TIME_MASK, train_image

    time_mask = max(1, int(round(MOV_TIME_MASK * seconds / MOV_CROP_SECONDS)))
    return torch.from_numpy(train_image(audio.waveform, rng=rng, seconds=seconds, time_mask=time_mask))[None]


def audio_eval_tensor(audio: AudioInput, *, temporal_views: int, crops: int, seconds: float = 8.0) -> torch.Tensor:
    """Test audio: one window per temporal video view, repeated over crops -> ``(crops, views, 1, 3, 128, F)``."""
    from openvocab.io.audio import eval_images

    images = torch.from_numpy(eval_images(audio.waveform, views=temporal_views, seconds=seconds))  # (V, 3, 128, F)
    return images[None, :, None].expand(crops, -1, -1, -1, -1, -1).contiguous()


def check_modalities(requested: str, available: tuple[str, ...]) -> tuple[str, ...]:
    """``--modalities rgb,audio`` -> the tuple, refusing names the model has no stream for (one line)."""
    names = tuple(dict.fromkeys(m.strip().lower() for m in requested.split(",") if m.strip()))
    unknown = [m for m in names if m not in available]
    if not names or unknown:
        raise InputError(f"--modalities {requested!r}: this model reads {', '.join(available)}")
    return names
