"""Optical flow as CLIP-ready images (MOV §4.1 "Kinetics-700 optical flow").

MOV §4.1: "We follow a standard procedure [70, 26, 27] to use the TV-L1 algorithm [75] to extract optical flow
in an unsupervised manner. To accommodate for pre-trained vision encoders, we first truncate the vertical and
horizontal motion values to [-20, 20], then append a third all-zero channel. Finally we do a shift and scale
transformation to map [-20, 20] to [0, 255]." MOV §4.1 (augmentation) then treats flow "directly as images" with
the same augmentation as the RGB frames, so flow images go through the same CLIP preprocessing.

The pieces:

* :func:`compute_flow` -- flow between consecutive frames, ``(N, H, W, 3)`` uint8 RGB -> ``(N-1, H, W, 2)``
  float32 (dx, dy) in pixels, on grayscale frames. Methods are the registry :data:`FLOW_METHODS`: ``tvl1`` (the
  paper's), ``dis`` and ``farneback`` (much faster, less exact; see BENCHMARKS.md).
* :func:`flow_to_image` -- the paper's truncate / append zero channel / shift-and-scale, to uint8 images.
* :func:`flow_pairs` / :func:`flow_for_indices` -- flow for the frames a sampler picked: for each sampled index
  ``i`` the pair ``(i, i+1)`` of the decoded video, the last frame using ``(N-2, N-1)``.
* :func:`save_flow_images` / :func:`load_flow_images` -- a one-file-per-video cache (safetensors, atomic) whose
  metadata refuses a cache written with other settings.

TV-L1 settings. The paper gives none beyond the algorithm (Zach et al. [75]) and the [-20, 20] bound; its "standard
procedure" [70, 26, 27] is DeepMind's i3d preprocessing (grayscale frames, "TV-L1 optical flow algorithm, similar
to this code from OpenCV", values truncated to [-20, 20]) and the TSN/mmaction ``denseflow`` tool, both of which
run OpenCV's Dual TV-L1 with its default parameters: tau 0.25, lambda 0.15, theta 0.3, 5 scales (step 0.8),
5 warps, epsilon 0.01, 300 iterations (OpenCV >= 3 splits them into 30 inner x 10 outer), gamma 0 and, on the CPU
implementation, a 5x5 median filter. :data:`TVL1_SETTINGS` are exactly these. Checked against DeepMind's own
rendering of the TV-L1 flow of the i3d cricket clip (``tests/test_io_flow.py``): the defaults correlate with it as
well as any variant tried (lambda 0.1, epsilon 0.005, 3 scales, no median filter: all within +-0.005 of the mean
per-component correlation), at the lowest cost.

cv2 (opencv-contrib-python-headless) is imported on first use, so importing this module (and listing
:data:`FLOW_METHODS`, which lives in :mod:`openvocab.io.choices` with the other input choices) stays cheap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from openvocab.atomic import atomic_path
from openvocab.errors import InputError
from openvocab.io.choices import FLOW_METHODS

__all__ = [
    "DIS_PRESET",
    "FARNEBACK_SETTINGS",
    "FLOW_BOUND",
    "FLOW_CACHE_FORMAT",
    "FLOW_META_KEYS",
    "FLOW_METHODS",
    "TVL1_SETTINGS",
    "ZERO_FLOW_LEVEL",
    "compute_flow",
    "flow_for_indices",
    "flow_pairs",
    "flow_to_image",
    "load_flow_images",
    "save_flow_images",
]

#: MOV §4.1: motion values are truncated to [-20, 20] pixels (as in i3d / TSN).
FLOW_BOUND = 20.0

#: OpenCV's Dual TV-L1 defaults, the settings of DeepMind's i3d and TSN/denseflow flow (see the module docstring).
TVL1_SETTINGS: dict[str, Any] = {
    "tau": 0.25,
    "lambda_": 0.15,
    "theta": 0.3,
    "nscales": 5,
    "warps": 5,
    "epsilon": 0.01,
    "innnerIterations": 30,  # sic: OpenCV's keyword is spelled with three n's
    "outerIterations": 10,
    "scaleStep": 0.8,
    "gamma": 0.0,
    "medianFiltering": 5,
    "useInitialFlow": False,
}

#: ``cv2.DISOPTICAL_FLOW_PRESET_MEDIUM``: of OpenCV's three presets the closest to TV-L1 on moving pixels
#: (benchmarks/flow.py pairs: EPE 1.36 px vs 1.55 fast, 1.72 ultrafast).
DIS_PRESET = "medium"

#: ``cv2.calcOpticalFlowFarneback`` parameters of OpenCV's optical-flow tutorial.
FARNEBACK_SETTINGS: dict[str, Any] = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2, "flags": 0}

#: The uint8 level of zero motion, ``floor((0 + 20) * 255 / 40 + 0.5) = 128``; also the level of the third channel,
#: which MOV appends as zeros *before* the shift and scale (DeepMind's i3d flow rendering likewise shows zero
#: motion, and its constant third channel, as mid-gray 127).
ZERO_FLOW_LEVEL = 128

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class _Calc(Protocol):
    def calc(self, prev: np.ndarray, nxt: np.ndarray, flow: None) -> np.ndarray: ...


def _tvl1() -> FlowFn:
    """Dual TV-L1 (Zach et al. 2007, MOV [75]) with :data:`TVL1_SETTINGS`."""
    import cv2

    estimator: _Calc = cv2.optflow.DualTVL1OpticalFlow_create(**TVL1_SETTINGS)
    return lambda prev, nxt: estimator.calc(prev, nxt, None)


def _dis() -> FlowFn:
    """DIS (Kroeger et al. 2016) with OpenCV's ``medium`` preset."""
    import cv2

    estimator: _Calc = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return lambda prev, nxt: estimator.calc(prev, nxt, None)


def _farneback() -> FlowFn:
    """Farneback polynomial expansion (2003) with :data:`FARNEBACK_SETTINGS`."""
    import cv2

    return lambda prev, nxt: cv2.calcOpticalFlowFarneback(prev, nxt, None, **FARNEBACK_SETTINGS)


#: Optical-flow methods (``compute_flow(method=...)``); each builder returns ``f(prev_gray, next_gray) -> (H, W, 2)``.


# --------------------------------------------------------------------------------------------------- flow
def _describe(x: object) -> str:
    return f"shape {tuple(x.shape)} {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__


def _as_frames(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """``frames`` as one (N, H, W, 3) uint8 array, or one :class:`InputError` line."""
    if not isinstance(frames, np.ndarray):
        if not isinstance(frames, Sequence) or not all(isinstance(f, np.ndarray) for f in frames):
            raise InputError(f"frames must be an (N, H, W, 3) uint8 RGB array or a list of (H, W, 3) arrays, got {_describe(frames)}")
        if len(frames) == 0:
            raise InputError("optical flow needs at least two frames, got none")
        for i, frame in enumerate(frames):
            if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
                raise InputError(f"frame {i} must be an (H, W, 3) uint8 RGB image, got {_describe(frame)}")
            if frame.shape != frames[0].shape:
                (h, w), (h0, w0) = frame.shape[:2], frames[0].shape[:2]
                raise InputError(f"frame {i} is {w}x{h} but frame 0 is {w0}x{h0}: optical flow needs frames of one size")
        frames = np.stack(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be an (N, H, W, 3) uint8 RGB array, got {_describe(frames)}")
    if frames.shape[1] == 0 or frames.shape[2] == 0:
        raise InputError(f"frames must not be empty, got shape {tuple(frames.shape)}")
    if frames.shape[0] < 2:
        count = "no frames" if frames.shape[0] == 0 else "one frame"
        raise InputError(f"optical flow needs at least two frames (a pair), got {count}")
    return frames


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def _pair_flow(fn: FlowFn, prev: np.ndarray, nxt: np.ndarray, method: str) -> np.ndarray:
    import cv2

    try:
        return np.asarray(fn(prev, nxt), dtype=np.float32)
    except cv2.error as exc:  # e.g. DIS on frames smaller than its patches
        reason = str(exc).strip().splitlines()[-1].split(") ", 1)[-1] if str(exc).strip() else "OpenCV error"
        h, w = prev.shape[:2]
        raise InputError(f"{method} optical flow cannot run on {w}x{h} frames: {reason}") from exc


def compute_flow(frames: np.ndarray | Sequence[np.ndarray], *, method: str = "tvl1") -> np.ndarray:
    """Optical flow between consecutive frames (MOV §4.1: TV-L1, the i3d/TSN "standard procedure").

    ``frames``: (N, H, W, 3) uint8 RGB as :func:`openvocab.io.decode.open_video` returns them (or a list of
    (H, W, 3) frames of one size), N >= 2. Flow is computed on grayscale frames (BT.601 luma, as i3d does) by
    ``method``, one of :data:`FLOW_METHODS`. Returns (N-1, H, W, 2) float32: ``out[k, y, x] = (dx, dy)``, the
    displacement in pixels of the point at (x, y) in frame k to frame k+1 (x to the right, y downwards).
    """
    FLOW_METHODS.check(method)
    frames = _as_frames(frames)
    fn: FlowFn = FLOW_METHODS.build(method)
    n, h, w = frames.shape[:3]
    out = np.empty((n - 1, h, w, 2), dtype=np.float32)
    prev = _gray(frames[0])
    for k in range(1, n):
        nxt = _gray(frames[k])
        out[k - 1] = _pair_flow(fn, prev, nxt, method)
        prev = nxt
    return out


def flow_to_image(flow: np.ndarray, *, bound: float = FLOW_BOUND) -> np.ndarray:
    """Flow (..., H, W, 2) in pixels -> CLIP-ready uint8 images (..., H, W, 3) (MOV §4.1).

    MOV §4.1: "truncate the vertical and horizontal motion values to [-20, 20], then append a third all-zero
    channel. Finally ... map [-20, 20] to [0, 255]": ``level = floor((clip(v, -bound, bound) + bound) * 255 /
    (2 bound) + 0.5)`` (rounded half up), so -bound -> 0, 0 -> 128, +bound -> 255. Channel 0 is dx, channel 1 is dy;
    the third channel is the appended zero motion, hence :data:`ZERO_FLOW_LEVEL` (128) everywhere. NaNs count as
    zero motion.
    """
    if not isinstance(flow, np.ndarray) or flow.ndim < 3 or flow.shape[-1] != 2 or not np.issubdtype(flow.dtype, np.floating):
        raise InputError(f"flow must be a float array of shape (..., H, W, 2), got {_describe(flow)}")
    if isinstance(bound, bool) or not isinstance(bound, (int, float, np.integer, np.floating)) or not np.isfinite(bound) or bound <= 0:
        raise InputError(f"bound must be a positive number of pixels, got {bound!r}")
    b = np.float32(bound)
    scaled = (np.clip(np.nan_to_num(flow, nan=0.0), -b, b) + b) * (np.float32(255.0) / (2 * b))
    xy = np.floor(scaled + np.float32(0.5)).clip(0, 255).astype(np.uint8)
    out = np.empty((*flow.shape[:-1], 3), dtype=np.uint8)
    out[..., :2] = xy
    out[..., 2] = ZERO_FLOW_LEVEL
    return out


# --------------------------------------------------------------------------------------------------- sampled frames
def flow_pairs(indices: Sequence[int] | np.ndarray, num_frames: int) -> np.ndarray:
    """The frame pairs whose flow stands for sampled frames ``indices`` of an ``num_frames``-frame video: (K, 2) int64.

    Sampled frame ``i`` gets the flow from ``i`` to ``i + 1``; the last frame has no successor, so it gets the last
    pair ``(N-2, N-1)`` (the pair is clamped inside the video, rather than the blank flow of ``(N-1, N-1)``).
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise InputError(f"num_frames must be a positive integer, got {num_frames!r}")
    if num_frames < 2:
        raise InputError("a one-frame video has no frame pair for optical flow")
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise InputError(f"frame indices must be a 1-D sequence of integers, got {_describe(idx)}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= num_frames):
        bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
        raise InputError(f"frame index {bad} is out of range (the video has {num_frames} frames)")
    start = np.minimum(idx, num_frames - 2)
    return np.stack([start, start + 1], axis=1)


def flow_for_indices(source: Any, indices: Sequence[int] | np.ndarray, *, method: str = "tvl1", max_short_side: int | None = None) -> np.ndarray:
    """Flow for the frames a sampler picked (MOV §3: "sample N RGB frames V and calculate the corresponding optical
    flow images F"): (K, H, W, 2) float32, row k for ``indices[k]`` (pairs as :func:`flow_pairs`).

    ``source`` is an opened video (:func:`openvocab.io.decode.open_video`); the frames of all pairs are decoded in
    one ``source.read(..., max_short_side=...)`` and each distinct pair is computed once (looped clips repeat
    indices). Flow magnitudes are in pixels of the decoded (possibly shrunk) frames, so compute flow at the size
    the model will see it, as i3d does (frames resized, then flow).
    """
    FLOW_METHODS.check(method)
    pairs = flow_pairs(indices, int(source.info.num_frames))
    needed = np.unique(pairs)
    decoded = source.read(needed, max_short_side=max_short_side).frames
    if pairs.shape[0] == 0:
        return np.zeros((0, *decoded.shape[1:3], 2), dtype=np.float32)
    where = {int(i): k for k, i in enumerate(needed.tolist())}
    fn: FlowFn = FLOW_METHODS.build(method)
    done: dict[tuple[int, int], np.ndarray] = {}
    rows = []
    for a, b in pairs.tolist():
        if (a, b) not in done:
            done[(a, b)] = _pair_flow(fn, _gray(decoded[where[a]]), _gray(decoded[where[b]]), method)
        rows.append(done[(a, b)])
    return np.stack(rows)


# --------------------------------------------------------------------------------------------------- cache
#: Format tag written into every cache file's metadata.
FLOW_CACHE_FORMAT = "openvocab.flow_images/1"
#: Keys every cache's metadata must carry: flow method, bound (px), image size (H, W), sampled frame indices.
FLOW_META_KEYS = ("method", "bound", "size", "indices")
_META_FIELD = "openvocab.flow"


def _json_meta(meta: Mapping[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(meta, Mapping):
        raise InputError(f"{what} must be a mapping, got {type(meta).__name__}")
    try:  # tuples -> lists, numpy scalars/arrays -> plain values, so written and expected metadata compare equal
        return json.loads(json.dumps(dict(meta), default=lambda v: v.tolist() if isinstance(v, (np.ndarray, np.generic)) else str(v)))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} is not JSON-serialisable: {exc}") from exc


def save_flow_images(path: str | os.PathLike[str], images: np.ndarray, *, meta: Mapping[str, Any]) -> Path:
    """Write the flow images of one video to ``path`` (a ``.safetensors`` file), atomically (MOV §4.1 flow, cached).

    ``images``: (N, H, W, 3) uint8 from :func:`flow_to_image`. Only channels 0-1 are stored (the third is the
    constant :data:`ZERO_FLOW_LEVEL`, restored on load: a third less disk). ``meta`` must hold
    :data:`FLOW_META_KEYS` -- ``method``, ``bound``, ``size`` (H, W) and ``indices`` (N sampled frame indices) --
    and may hold more (e.g. the video's digest); :func:`load_flow_images` refuses the file when any expected key
    differs. safetensors rather than ``.npz``: the metadata sits in a small JSON header that is checked before any
    image byte is read, the data is uncompressed and memory-mappable, nothing is ever unpickled, and checkpoints
    and the feature cache already use it. The write goes to a temporary file that is fsynced and renamed, so a
    crash never leaves a partial cache under ``path``.
    """
    from safetensors.numpy import save_file

    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise InputError(f"flow images must be an (N, H, W, 3) uint8 array, got {_describe(images)}", path=path)
    if images.size and not (images[..., 2] == ZERO_FLOW_LEVEL).all():
        raise InputError(f"flow images must have the constant third channel {ZERO_FLOW_LEVEL} of flow_to_image", path=path)
    info = _json_meta(meta, "flow cache metadata")
    missing = [k for k in FLOW_META_KEYS if k not in info]
    if missing:
        raise InputError(f"flow cache metadata lacks {', '.join(missing)} (needs {', '.join(FLOW_META_KEYS)})", path=path)
    n, h, w = images.shape[:3]
    if info["size"] != [h, w]:
        raise InputError(f"flow cache metadata says size {info['size']} but the images are {h}x{w} (H, W)", path=path)
    if not isinstance(info["indices"], list) or len(info["indices"]) != n:
        raise InputError(f"flow cache metadata must list one frame index per image ({n}), got {info['indices']!r}", path=path)
    header = {_META_FIELD: json.dumps({"format": FLOW_CACHE_FORMAT, **info}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file({"flow_xy": np.ascontiguousarray(images[..., :2])}, str(tmp), metadata=header)
    return Path(path)


def load_flow_images(path: str | os.PathLike[str], *, expect_meta: Mapping[str, Any]) -> np.ndarray:
    """Read flow images written by :func:`save_flow_images`: (N, H, W, 3) uint8, exactly as saved.

    Every key of ``expect_meta`` (normally :data:`FLOW_META_KEYS`: method, bound, size, indices) must equal the
    stored value, else one :class:`InputError` line naming the file and the first differing setting -- a cache
    written with other settings is refused, never silently used. A missing or unreadable file is an
    :class:`InputError` too (check ``path.exists()`` for a plain cache miss).
    """
    from safetensors import SafetensorError, safe_open

    expected = _json_meta(expect_meta, "expected flow cache metadata")
    if not Path(path).is_file():
        raise InputError("no flow cache file", path=path)
    try:
        with safe_open(str(path), framework="np") as fh:
            header = fh.metadata() or {}
            stored = json.loads(header[_META_FIELD])
            if stored.get("format") != FLOW_CACHE_FORMAT:
                raise InputError(f"not a flow cache of format {FLOW_CACHE_FORMAT} (found {stored.get('format')!r})", path=path)
            for key, value in expected.items():
                if key not in stored:
                    raise InputError(f"flow cache has no setting {key!r} (expected {value!r})", path=path)
                if stored[key] != value:
                    raise InputError(f"flow cache was written with {key}={_short(stored[key])}, expected {key}={_short(value)}", path=path)
            xy = fh.get_tensor("flow_xy")
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise InputError(f"not a readable flow cache file ({type(exc).__name__}: {exc})", path=path) from exc
    if xy.ndim != 4 or xy.shape[-1] != 2 or xy.dtype != np.uint8 or list(xy.shape[1:3]) != stored.get("size"):
        raise InputError(f"corrupt flow cache: stored images have shape {tuple(xy.shape)} {xy.dtype}", path=path)
    out = np.empty((*xy.shape[:3], 3), dtype=np.uint8)
    out[..., :2] = xy
    out[..., 2] = ZERO_FLOW_LEVEL
    return out


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
