"""A per-video cache of the optical flow of EVERY consecutive frame pair (MOV §4.1 "Kinetics-700 optical flow").

MOV §4.1 extracts TV-L1 flow once for the whole dataset ("we follow a standard procedure [70, 26, 27]"), and §4.2
samples "16 frames with a stride of 4" anew every epoch, so the cache holds the flow of all pairs ``(k, k+1)`` of a
video, not of one sampling. TV-L1 costs ~1-4 s per 256-px pair on one CPU core (a 10 s clip: minutes), which is
why it is precomputed (``openvocab flow extract``, :func:`extract_manifest`) and read back by training and evaluation
(:meth:`FlowCache.read`), which compute flow on the fly only for videos the cache lacks.

Layout: one file per video, ``<cache>/<path relative to the video root>.flow.safetensors`` (the video's suffix is
kept: ``a/x.mp4`` and ``b/x.mp4`` or ``x.avi`` never collide; the folder tree of the dataset is mirrored), or
``<cache>/_by_hash/<sha256 of the absolute path, 16 hex>-<name>.flow.safetensors`` for a video outside the root
(or without one). ``<cache>/flow_cache.json`` records the video root, so a reader built without one
(``FlowCache(cache, method=...)``) finds the same keys. Each file is written atomically (temporary file, fsync,
rename): a crash or a kill never leaves a partial file under the final name; a temporary file a killed writer left
is removed when that video is extracted again.

Each file holds what :func:`openvocab.io.flow.flow_to_image` makes of the flow (clamp to +-20 px, shift and scale to
0..255; only the two informative channels, the third is the constant 128) at the size the video decodes to with
its short side shrunk to at most ``short_side`` (default 256; a recipe resizes and crops afterwards, as it does
the RGB frames), each pair's x and y images compressed separately (grayscale JPEG quality 95, as the TSN/mmaction
``denseflow`` tool stores flow, or lossless PNG) and concatenated into one uint8 tensor ``blobs`` with int64
``offsets`` (blob ``2k`` is x of pair ``k``, ``2k+1`` is y). The JSON header (``openvocab.flow_cache``) holds the
format tag, method, bound, short side, size, frame counts, fps and codec; a file written with another method, bound
or short side counts as absent for :meth:`FlowCache.has` and is refused by :meth:`FlowCache.read` with one line.

Measured on ../shared/data clips (2-core AMD EPYC build machine, shared and busy). Whole 10 s clips through
:func:`extract_video` with TV-L1, short side 256, JPEG q95: arm_wrestling (340x256, 28 fps) 2.69 MB, yoga (568x320
-> 454x256, 30 fps) 3.19 MB (uncompressed: 49 and 70 MB), i.e. ~2 TB for Kinetics-700's 650k clips; 1112 s for the
two in two processes (~3.7 s per pair). PNG (lossless) is 2-2.7x larger (4.7-8.5 MB). JPEG q95's error against
the uncompressed flow images, on 30 TV-L1 pairs from each of three clips: max 9 levels = 1.41 px (isolated pixels
at motion boundaries), mean 0.05-0.09 levels = 0.008-0.014 px; on whole DIS clips max 3-5 levels, mean 0.02-0.04.
:data:`CODEC_MAX_ERROR` / :data:`CODEC_MEAN_ERROR` are the bounds the tests hold the codec to. For scale: DIS
departs from TV-L1 by ~1.4 px on moving pixels. JPEG encoding + decoding take ~5 ms per pair.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openvocab.atomic import atomic_path, atomic_write
from openvocab.errors import InputError, OpenVocabError
from openvocab.io.choices import FLOW_METHODS
from openvocab.io.flow import FLOW_BOUND, compute_flow, flow_pairs, flow_to_image

__all__ = [
    "CODECS",
    "CODEC_MAX_ERROR",
    "CODEC_MEAN_ERROR",
    "DEFAULT_SHORT_SIDE",
    "FLOW_CACHE_FORMAT",
    "FLOW_CACHE_SUFFIX",
    "FlowCache",
    "FlowCacheEntry",
    "FlowExtractReport",
    "extract_manifest",
    "extract_video",
]

#: Format tag of every cache file (and of the cache folder's ``flow_cache.json``).
FLOW_CACHE_FORMAT = "openvocab.flow_cache/1"
FLOW_CACHE_SUFFIX = ".flow.safetensors"
INDEX_FILE = "flow_cache.json"
DEFAULT_SHORT_SIDE = 256
#: Codecs of the per-pair x/y images: ``jpeg`` (quality 95, as denseflow) or ``png`` (lossless, level 6).
CODECS = ("jpeg", "png")
JPEG_QUALITY = 95
PNG_COMPRESSION = 6
#: Worst error a codec introduces in the uint8 flow images (levels; 1 level = 40/255 px): measured max 9 on real
#: TV-L1 flow, bounded here with a margin for harder content.
CODEC_MAX_ERROR = {"jpeg": 16, "png": 0}
#: Bound on the MEAN absolute error in levels (measured 0.05-0.09 on real TV-L1 flow).
CODEC_MEAN_ERROR = {"jpeg": 0.25, "png": 0.0}
#: The settings that make a cache file usable: written with others, it counts as absent.
SETTINGS = ("method", "bound", "short_side")
_META_FIELD = "openvocab.flow_cache"
_HASH_DIR = "_by_hash"
_READ_CHUNK = 256  # frames decoded per read (memory: ~90 MB of RGB at 256 px)
_FLOW_CHUNK = 32  # pairs whose float flow is held at once
_STALE_TEMP_S = 600.0  # a temporary file this old beside a target belongs to a killed writer


@dataclass(frozen=True)
class FlowCacheEntry:
    """The header of one cache file: where, the settings, the image size ``(H, W)``, ``num_frames`` (frames decoded:
    ``num_frames - 1`` pairs), ``declared_frames`` (the container's count, more when the stream was truncated),
    ``fps``, ``codec`` and the ``video`` path it was extracted from."""

    path: Path
    method: str
    bound: float
    short_side: int
    size: tuple[int, int]
    num_frames: int
    declared_frames: int
    fps: float
    codec: str
    video: str


class FlowCache:
    """The flow cache folder ``root_dir`` for one setting (``method``, ``short_side``; the bound is MOV's 20 px).

    ``video_root``: paths under it are keyed by their relative path (default: the root recorded in
    ``root_dir/flow_cache.json`` by the extraction, else none: every key is a hash of the absolute path). ``codec``
    is how :meth:`write` compresses (:data:`CODECS`); files of any codec are read.
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        *,
        method: str = "tvl1",
        short_side: int = DEFAULT_SHORT_SIDE,
        video_root: str | os.PathLike[str] | None = None,
        codec: str = "jpeg",
    ) -> None:
        FLOW_METHODS.check(method)
        if isinstance(short_side, bool) or not isinstance(short_side, (int, np.integer)) or short_side < 2:
            raise InputError(f"short_side must be an integer of at least 2 pixels, got {short_side!r}")
        if codec not in CODECS:
            raise InputError(f"unknown flow cache codec '{codec}' (choose {', '.join(CODECS)})")
        self.root_dir = Path(root_dir).expanduser()
        self.method = method
        self.short_side = int(short_side)
        self.codec = codec
        self.bound = float(FLOW_BOUND)
        recorded = self._index() or {}
        root = video_root if video_root is not None else recorded.get("video_root")
        self.video_root: Path | None = Path(os.path.abspath(Path(root).expanduser())) if root is not None else None

    def __repr__(self) -> str:
        return f"FlowCache({str(self.root_dir)!r}, method={self.method!r}, short_side={self.short_side}, video_root={self.video_root}, codec={self.codec!r})"

    def spec(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this cache (in a worker process)."""
        return {"root_dir": str(self.root_dir), "method": self.method, "short_side": self.short_side, "video_root": self.video_root, "codec": self.codec}

    # ----------------------------------------------------------------------------------------------- keys
    def key(self, video_path: str | os.PathLike[str]) -> str:
        """The video's key: its path relative to :attr:`video_root` (POSIX separators), else ``_by_hash/<hash>-<name>``."""
        text = os.fspath(video_path)
        absolute = _absolute(text)
        if self.video_root is not None and "://" not in text:
            with contextlib.suppress(ValueError):  # another drive (Windows)
                rel = os.path.relpath(absolute, self.video_root)
                if rel not in (".", "..") and not rel.startswith(".." + os.sep):
                    return Path(rel).as_posix()
        digest = hashlib.sha256(absolute.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        name = (Path(text.rstrip("/")).name or "video")[:100]
        return f"{_HASH_DIR}/{digest}-{name}"

    def path_for(self, video_path: str | os.PathLike[str]) -> Path:
        """Where the video's flow is (or would be) cached."""
        return self.root_dir / (self.key(video_path) + FLOW_CACHE_SUFFIX)

    # ----------------------------------------------------------------------------------------------- reading
    def has(self, video_path: str | os.PathLike[str]) -> bool:
        """True when the video's file exists, is readable and was written with this cache's settings (a file of
        other settings, or a damaged one, counts as absent: :func:`extract_video` replaces it)."""
        if not self.path_for(video_path).is_file():
            return False
        try:
            self.entry(video_path)
        except InputError:
            return False
        return True

    def entry(self, video_path: str | os.PathLike[str]) -> FlowCacheEntry:
        """The header of the video's file; one :class:`InputError` line naming the file when it is missing,
        unreadable or written with another method, bound or short side."""
        path = self.path_for(video_path)
        with self._open(path) as (header, _fh):
            return header

    def read(self, video_path: str | os.PathLike[str], indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Flow images ``(K, H, W, 2)`` uint8 (x, y channels of :func:`~openvocab.io.flow.flow_to_image`) for the
        sampled frame ``indices`` of the video, by the pair rule of :func:`~openvocab.io.flow.flow_pairs`: index
        ``i`` gets pair ``(i, i+1)``, the last frame ``(N-2, N-1)``. Indices up to the container's declared frame
        count are valid; those past the decodable frames (a truncated stream) get the last pair. Only the needed
        pairs' blobs are read and decoded. Add the constant third channel (``ZERO_FLOW_LEVEL``) for CLIP images.
        """
        path = self.path_for(video_path)
        with self._open(path) as (header, fh):
            idx = np.asarray(indices)
            if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
                raise InputError(f"frame indices must be a 1-D sequence of integers, got shape {idx.shape} {idx.dtype}")
            limit = max(header.num_frames, header.declared_frames)
            if idx.size and (idx.min() < 0 or idx.max() >= limit):
                bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
                raise InputError(f"frame index {bad} is out of range (the cached video has {limit} frames)", path=path)
            out = np.empty((idx.size, *header.size, 2), dtype=np.uint8)
            if idx.size == 0:
                return out
            starts = flow_pairs(np.minimum(idx.astype(np.int64), header.num_frames - 1), header.num_frames)[:, 0]
            offsets = fh.get_tensor("offsets")
            blobs = fh.get_slice("blobs")
            if offsets.shape != (2 * (header.num_frames - 1) + 1,):
                raise InputError(f"corrupt flow cache: {offsets.shape[0]} offsets for {header.num_frames} frames", path=path)
            decoded: dict[int, np.ndarray] = {}
            for row, k in enumerate(starts.tolist()):
                if k not in decoded:
                    decoded[k] = np.stack([_decode(blobs[int(offsets[j]) : int(offsets[j + 1])], header.size, path) for j in (2 * k, 2 * k + 1)], axis=-1)
                out[row] = decoded[k]
            return out

    @contextlib.contextmanager
    def _open(self, path: Path):
        from safetensors import SafetensorError, safe_open

        if not path.is_file():
            raise InputError("no flow cache file for this video (run `openvocab flow extract`)", path=path)
        try:
            with safe_open(str(path), framework="np") as fh:
                yield self._header(path, fh.metadata() or {}), fh
        except (SafetensorError, OSError, KeyError, ValueError, TypeError) as exc:
            raise InputError(f"not a readable flow cache file ({type(exc).__name__}: {exc})", path=path) from exc

    def _header(self, path: Path, metadata: dict[str, str]) -> FlowCacheEntry:
        if _META_FIELD not in metadata:
            raise InputError("not a flow cache file (no openvocab.flow_cache header)", path=path)
        meta = json.loads(metadata[_META_FIELD])
        if meta.get("format") != FLOW_CACHE_FORMAT:
            raise InputError(f"not a flow cache of format {FLOW_CACHE_FORMAT} (found {meta.get('format')!r})", path=path)
        mine = {"method": self.method, "bound": self.bound, "short_side": self.short_side}
        for key in SETTINGS:
            if meta.get(key) != mine[key]:
                raise InputError(f"flow cache was written with {key}={meta.get(key)!r}, this cache wants {key}={mine[key]!r} (re-extract it)", path=path)
        h, w = (int(v) for v in meta["size"])
        return FlowCacheEntry(
            path, meta["method"], float(meta["bound"]), int(meta["short_side"]), (h, w), int(meta["num_frames"]),
            int(meta["declared_frames"]), float(meta["fps"]), str(meta["codec"]), str(meta["video"]),
        )  # fmt: skip

    # ----------------------------------------------------------------------------------------------- writing
    def write(self, video_path: str | os.PathLike[str], images: np.ndarray, *, fps: float, declared_frames: int | None = None) -> Path:
        """Cache the flow images of ALL ``N-1`` pairs of an ``N``-frame video: ``images`` ``(N-1, H, W, 2)`` or
        ``(N-1, H, W, 3)`` uint8 from :func:`~openvocab.io.flow.flow_to_image` of frames decoded at this cache's
        short side. Atomic; returns the file. (:func:`extract_video` computes and writes in one go.)"""
        if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] not in (2, 3) or images.dtype != np.uint8 or len(images) < 1:
            shape = f"shape {images.shape} {images.dtype}" if isinstance(images, np.ndarray) else type(images).__name__
            raise InputError(f"flow images must be an (N-1, H, W, 2) uint8 array of at least one pair, got {shape}")
        blobs = [b for image in images for b in self._encode_pair(image)]
        n = len(images) + 1
        return self._write_blobs(video_path, blobs, size=images.shape[1:3], num_frames=n, declared_frames=declared_frames or n, fps=fps)

    def _encode_pair(self, image: np.ndarray) -> tuple[bytes, bytes]:
        import cv2

        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if self.codec == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
        ext = ".jpg" if self.codec == "jpeg" else ".png"
        out = []
        for c in (0, 1):
            ok, buf = cv2.imencode(ext, np.ascontiguousarray(image[..., c]), params)
            if not ok:
                raise InputError(f"OpenCV could not encode a {image.shape[1]}x{image.shape[0]} flow image as {self.codec}")
            out.append(buf.tobytes())
        return out[0], out[1]

    def _write_blobs(self, video_path, blobs: list[bytes], *, size, num_frames: int, declared_frames: int, fps: float) -> Path:
        from safetensors.numpy import save_file

        offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(b) for b in blobs])
        meta = {
            "format": FLOW_CACHE_FORMAT, "method": self.method, "bound": self.bound, "short_side": self.short_side,
            "size": [int(size[0]), int(size[1])], "num_frames": int(num_frames), "declared_frames": int(declared_frames),
            "fps": float(fps), "codec": self.codec, "quality": JPEG_QUALITY if self.codec == "jpeg" else None, "video": _absolute(video_path),
        }  # fmt: skip
        self.ensure_index()
        target = self.path_for(video_path)
        _remove_stale_temps(target)
        data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        with atomic_path(target) as tmp:
            save_file({"blobs": data, "offsets": offsets}, str(tmp), metadata={_META_FIELD: json.dumps(meta, sort_keys=True)})
        return target

    def _index(self) -> dict[str, Any] | None:
        file = self.root_dir / INDEX_FILE
        if not file.is_file():
            return None
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"not a readable flow cache index ({exc})", path=file) from exc
        if not isinstance(data, dict) or data.get("format") != FLOW_CACHE_FORMAT:
            raise InputError(f"not a flow cache index of format {FLOW_CACHE_FORMAT}", path=file)
        return data

    def ensure_index(self) -> None:
        """Record the video root in ``flow_cache.json`` (first write); refuse to mix keys of another root."""
        recorded = self._index()
        mine = None if self.video_root is None else str(self.video_root)
        if recorded is None:
            atomic_write(self.root_dir / INDEX_FILE, json.dumps({"format": FLOW_CACHE_FORMAT, "video_root": mine}, indent=2) + "\n")
        elif recorded.get("video_root") != mine:
            raise InputError(f"holds flow keyed by video root {recorded.get('video_root')}, not {mine}: use that root or another folder", path=self.root_dir)


def _absolute(video_path: str | os.PathLike[str]) -> str:
    """The absolute, normalised path (symlinks kept); URLs as they are."""
    text = os.fspath(video_path)
    return text if "://" in text else os.path.abspath(os.path.expanduser(text))


def _remove_stale_temps(target: Path) -> None:
    """Temporary files a killed writer of ``target`` left (``atomic_path`` names them ``.<name>.*``)."""
    if not target.parent.is_dir():
        return
    now = time.time()
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > _STALE_TEMP_S:
                tmp.unlink()


def _decode(blob: np.ndarray, size: tuple[int, int], path: Path) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.ascontiguousarray(blob), cv2.IMREAD_GRAYSCALE) if blob.size else None
    if image is None or image.shape != tuple(size):
        raise InputError("corrupt flow cache: an image blob does not decode", path=path)
    return image


# --------------------------------------------------------------------------------------------------- extraction
def extract_video(video_path: str | os.PathLike[str], cache: FlowCache) -> Path:
    """Decode the whole video with its short side shrunk to at most ``cache.short_side``, compute the flow of every
    consecutive pair with ``cache.method`` (:func:`~openvocab.io.flow.compute_flow`), convert with
    :func:`~openvocab.io.flow.flow_to_image`, compress and write atomically. Decodes ``_READ_CHUNK`` frames per read
    (long videos are never held whole) and holds float flow for ``_FLOW_CHUNK`` pairs at a time. Every failure is
    one :class:`InputError` line naming the video (a one-frame video has no pair)."""
    from openvocab.io.decode import open_video

    source = open_video(video_path)
    declared = int(source.info.num_frames)
    if declared < 2:
        raise InputError("a one-frame video has no frame pair for optical flow", path=video_path)
    blobs: list[bytes] = []
    size: tuple[int, int] | None = None
    last: np.ndarray | None = None
    start = 0
    while start < source.info.num_frames:  # shrinks when the stream holds fewer frames than its header says
        stop = min(start + _READ_CHUNK, source.info.num_frames)
        frames = source.read(range(start, stop), max_short_side=cache.short_side).frames
        frames = frames[: max(0, min(stop, source.info.num_frames) - start)]
        if last is not None:
            frames = np.concatenate([last[None], frames])
        size = frames.shape[1:3]
        for a in range(0, len(frames) - 1, _FLOW_CHUNK):
            images = flow_to_image(compute_flow(frames[a : a + _FLOW_CHUNK + 1], method=cache.method))
            blobs.extend(b for image in images for b in cache._encode_pair(image))
        last = frames[-1] if len(frames) else last
        start = stop
    num_frames = int(source.info.num_frames)
    if num_frames < 2 or size is None:
        raise InputError("a one-frame video has no frame pair for optical flow", path=video_path)
    return cache._write_blobs(video_path, blobs, size=size, num_frames=num_frames, declared_frames=declared, fps=float(source.info.fps))


@dataclass
class FlowExtractReport:
    """What :func:`extract_manifest` did: ``done`` (extracted now), ``skipped`` (already cached with the same
    settings), ``failed`` ((video path, one-line reason) pairs)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.done) + len(self.skipped) + len(self.failed)


def _reason(exc: BaseException, video: str) -> str:
    """One line for the failure report, without the video path (the report's other column)."""
    if isinstance(exc, OpenVocabError):
        text = str(exc)
        if exc.path == video and text.startswith(f"{video}: "):
            text = text[len(video) + 2 :]
    elif isinstance(exc, MemoryError):
        text = "out of memory"
    elif isinstance(exc, OSError):
        text = f"cannot write the flow cache ({exc.strerror or exc})"
    else:
        text = f"unexpected {type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one video per process: OpenCV's own threads would only oversubscribe the cores


def _extract_job(video: str, spec: dict[str, Any]) -> tuple[str, str | None]:
    try:
        extract_video(video, FlowCache(**spec))
    except Exception as exc:  # a batch never stops on one video: the report lists it
        return video, _reason(exc, video)
    return video, None


def extract_manifest(records: Iterable[Any], cache: FlowCache, *, workers: int = 1, progress: Callable[[int, int], None] | None = None) -> FlowExtractReport:
    """Extract the flow of every video of ``records`` (:class:`~openvocab.data.records.VideoRecord` rows or plain
    paths; a video listed several times, e.g. ActivityNet segments, is done once) into ``cache``.

    Resumable: a video whose file exists with the cache's settings is skipped (not rewritten). ``workers`` > 1 runs
    videos in that many processes (spawned, OpenCV single-threaded in each); 1 runs them here. A failing video is
    reported and the batch goes on; a worker killed from outside (e.g. out of memory) fails the videos still
    pending, which a re-run picks up. ``progress(done, total)`` is called as videos finish. Spawned workers
    re-import the main module: in a script, call this under ``if __name__ == "__main__":``.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    videos = list(dict.fromkeys(os.fspath(getattr(r, "path", r)) for r in records))
    report = FlowExtractReport()
    todo = []
    for video in videos:
        (report.skipped if cache.has(video) else todo).append(video)
    total = len(videos)
    tick = progress or (lambda done, total: None)
    tick(len(report.skipped), total)
    if todo:
        cache.ensure_index()
    finished = len(report.skipped)

    def record(video: str, reason: str | None) -> None:
        nonlocal finished
        if reason is None:
            report.done.append(video)
        else:
            report.failed.append((video, reason))
        finished += 1
        tick(finished, total)

    if workers == 1 or len(todo) <= 1:
        for video in todo:
            record(*_extract_job(video, cache.spec()))
        return report
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
    try:
        futures = {pool.submit(_extract_job, video, cache.spec()): video for video in todo}
        for future in as_completed(futures):
            try:
                record(*future.result())
            except BrokenProcessPool:
                record(futures[future], "the worker process died (killed, or out of memory); re-run to retry")
    except BaseException:  # Ctrl-C: drop the queue (interrupted workers remove their temporary files)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return report
