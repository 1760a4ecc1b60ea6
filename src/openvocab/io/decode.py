"""Decoding videos (PyAV/FFmpeg) and frame folders into RGB uint8 arrays.

Design rule (DESIGN.md, "decode once and pick frames"): a read decodes the stream sequentially from the start,
converts only the requested frames and stops after the last one. Seeking per frame costs 0.14-1.2 s with long
GOPs, far more than decoding through a short clip. Frame counts come from the container header
(``stream.frames``) or, when absent, from counting packets without decoding. Streams that hold fewer frames than
their header claims (truncated files) are handled by remapping the missing indices onto the last decodable
frames and recording the true count in :attr:`VideoSource.info`.

Every user-caused failure is a :class:`~openvocab.errors.VideoDecodeError` / :class:`~openvocab.errors.InputError`
with a one-line message naming the file.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from openvocab.errors import InputError, VideoDecodeError
from openvocab.io.discover import list_frame_images

__all__ = ["DecodedFrames", "VideoInfo", "VideoSource", "apply_rotation", "open_video", "probe_video"]

_MAX_BAD_PACKETS = 64  # give up on a stream after this many undecodable packets
_TAIL_FRAMES = 8  # recent frames kept to stand in for frames a truncated stream lacks
# FFmpeg demuxers that turn text files (.txt, .nfo, .asc, ...) into "video" by rendering the characters
TEXT_DEMUXERS = frozenset({"tty", "bintext", "xbin", "adf", "idf"})


@dataclass(frozen=True)
class VideoInfo:
    """What a video is: frame count, rate, duration, displayed size (after rotation) and display rotation.

    ``rotation`` is the counter-clockwise angle (0/90/180/270) by which stored frames are turned for display,
    as PyAV reports it (``VideoFrame.rotation``, FFmpeg's display matrix); frames returned by
    :meth:`VideoSource.read` are already turned.
    """

    path: str
    num_frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    rotation: int
    has_audio: bool


@dataclass
class DecodedFrames:
    """Frames in the order of the requested indices: ``frames`` (K, H, W, 3) uint8 RGB and ``timestamps_s`` (K,)
    float64 presentation times (pts x time_base, seconds from the stream start)."""

    frames: np.ndarray
    timestamps_s: np.ndarray


def apply_rotation(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Turn an (H, W, C) image ``rotation`` degrees counter-clockwise (the display-matrix convention)."""
    k = (int(rotation) // 90) % 4
    return frame if k == 0 else np.ascontiguousarray(np.rot90(frame, k=k, axes=(0, 1)))


def _normalise_rotation(value: float | int | None) -> int:
    if value is None:
        return 0
    return int(round(float(value) / 90.0)) * 90 % 360


def _target_size(width: int, height: int, max_short_side: int | None) -> tuple[int, int]:
    """(width, height) after shrinking so the short side is at most ``max_short_side`` (aspect kept)."""
    if max_short_side is None:
        return width, height
    short = min(width, height)
    if short <= max_short_side:
        return width, height
    scale = max_short_side / short
    if width <= height:
        return max_short_side, max(1, round(height * scale))
    return max(1, round(width * scale)), max_short_side


def _check_indices(indices: Sequence[int], limit: int, path: str) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.size == 0:
        return idx.astype(np.int64).reshape(0)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise InputError(f"frame indices must be a 1-D sequence of integers, got shape {idx.shape} {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.min() < 0 or idx.max() >= limit:
        bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
        raise InputError(f"frame index {bad} is out of range (the video has {limit} frames)", path=path)
    return idx


class VideoSource:
    """An opened video: :attr:`info` plus :meth:`read` to fetch frames by index. Use :func:`open_video`."""

    info: VideoInfo

    def read(self, indices: Sequence[int], *, max_short_side: int | None = None) -> DecodedFrames:
        """Frames ``indices`` (duplicates allowed) as RGB uint8, short side shrunk to ``max_short_side`` if larger."""
        raise NotImplementedError

    def read_all(self, *, max_short_side: int | None = None) -> DecodedFrames:
        """Every frame (small clips only: this holds the whole video in memory)."""
        return self.read(range(self.info.num_frames), max_short_side=max_short_side)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info!r})"


# --------------------------------------------------------------------------------------------------- files
def open_container(path: str, *, kind: str = "video") -> av.container.InputContainer:
    """``av.open`` with every failure as one line naming ``path``; ``kind`` names what was expected ("video",
    "audio or video") in the messages. Text files FFmpeg would render as frames are checked by the callers."""
    article = "an" if kind[:1] in "aeiou" else "a"
    try:
        return av.open(path, mode="r", metadata_errors="ignore")
    except FileNotFoundError as exc:
        raise InputError("no such file or directory", path=path) from exc
    except PermissionError as exc:
        raise InputError("permission denied", path=path) from exc
    except IsADirectoryError as exc:
        raise InputError("is a directory without frame images", path=path) from exc
    except av.error.InvalidDataError as exc:
        raise VideoDecodeError(f"not a recognised {kind} file (FFmpeg found invalid data)", path=path) from exc
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(f"cannot open as {article} {kind}: {exc}", path=path) from exc


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    if TEXT_DEMUXERS.intersection((container.format.name or "").split(",")):
        raise VideoDecodeError("not a video (a text file, which FFmpeg would draw as ANSI-art frames)", path=path)
    if not container.streams.video:
        what = "audio-only file?" if container.streams.audio else "truncated, or not a video?"
        raise VideoDecodeError(f"no video stream ({what})", path=path)
    return container.streams.video[0]


def iter_decoded(container: av.container.InputContainer, stream: av.stream.Stream):
    """Decoded frames of ``stream`` (video or audio) in order; stops quietly at truncation (what was decoded so far is
    the stream; the decoder is then drained) or after ``_MAX_BAD_PACKETS`` undecodable packets."""
    if stream.type == "video":
        stream.thread_type = "AUTO"
    bad = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:  # the demuxer's final empty packet has already flushed the decoder
            return
        except (av.FFmpegError, OSError):  # truncated/corrupt container: what was decoded so far is the stream
            break
        try:
            frames = packet.decode()
        except (av.FFmpegError, OSError):
            bad += 1
            if bad > _MAX_BAD_PACKETS:
                return
            continue
        yield from frames
    try:  # drain frames the decoder still holds (B-frame reordering / frame threads / audio delay)
        yield from stream.codec_context.decode(None)
    except (av.FFmpegError, OSError):
        return


def _count_packets(path: str) -> int:
    with open_container(path) as container:
        stream = _video_stream(container, path)
        count = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    count += 1
        except (av.FFmpegError, OSError):
            pass
    return count


def _rate(stream: av.video.stream.VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0 and np.isfinite(float(rate)):
            return float(rate)
    return None


class _FileSource(VideoSource):
    """A container file decoded by PyAV."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open_container(path) as container:
            stream = _video_stream(container, path)
            has_audio = bool(container.streams.audio)
            header_frames = int(stream.frames or 0)
            tb = stream.time_base
            duration = None
            if stream.duration and tb:
                duration = float(stream.duration * tb)
            elif container.duration:
                duration = container.duration / av.time_base
            self._start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
            fps = _rate(stream)
            first = None
            for frame in iter_decoded(container, stream):
                first = frame
                break
            if first is None:
                raise VideoDecodeError("no decodable video frames", path=path)
            rotation = _normalise_rotation(first.rotation)
            coded_w, coded_h = first.width, first.height
        num = header_frames if header_frames > 0 else _count_packets(path)
        if num <= 0:
            raise VideoDecodeError("no decodable video frames", path=path)
        if fps is None:
            fps = num / duration if duration else 25.0
        if not duration or duration <= 0:
            duration = num / fps
        self._coded = (coded_w, coded_h)
        self._declared = num
        width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
        self.info = VideoInfo(path, num, fps, float(duration), width, height, rotation, has_audio)

    def _convert(self, frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
        if (frame.width, frame.height) != size:
            # swscale shrinks BEFORE the RGB array exists, so 4K frames are never held at full size as RGB.
            frame = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA")
        return apply_rotation(frame.to_ndarray(format="rgb24"), self.info.rotation)

    def _time(self, frame: av.VideoFrame, index: int) -> float:
        if frame.pts is not None and frame.time_base:
            return float(frame.pts * frame.time_base) - self._start
        return index / self.info.fps

    def read(self, indices: Sequence[int], *, max_short_side: int | None = None) -> DecodedFrames:
        if max_short_side is not None and (isinstance(max_short_side, bool) or int(max_short_side) < 1):
            raise InputError(f"max_short_side must be a positive integer, got {max_short_side!r}")
        idx = _check_indices(indices, self._declared, self.path)
        size = _target_size(*self._coded, max_short_side)
        out_w, out_h = (size[1], size[0]) if self.info.rotation in (90, 270) else size
        if idx.size == 0:
            return DecodedFrames(np.zeros((0, out_h, out_w, 3), np.uint8), np.zeros((0,), np.float64))
        wanted = set(idx.tolist())
        last = int(idx.max())
        got: dict[int, tuple[np.ndarray, float]] = {}
        tail: deque[tuple[int, av.VideoFrame]] = deque(maxlen=min(len(wanted), _TAIL_FRAMES))
        decoded = 0
        with open_container(self.path) as container:
            stream = _video_stream(container, self.path)
            for i, frame in enumerate(iter_decoded(container, stream)):
                decoded = i + 1
                if i in wanted:
                    got[i] = (self._convert(frame, size), self._time(frame, i))
                tail.append((i, frame))
                if i >= last:
                    break
            if len(got) < len(wanted):
                if decoded == 0:
                    raise VideoDecodeError("no decodable video frames", path=self.path)
                self._remap_missing(wanted, got, tail, size, decoded)
        frames = np.stack([got[i][0] for i in idx.tolist()])
        times = np.array([got[i][1] for i in idx.tolist()], dtype=np.float64)
        return DecodedFrames(frames, times)

    def _remap_missing(self, wanted, got, tail, size, decoded) -> None:
        """The stream ended early (its header over-counted): give missing indices the last decodable frames,
        keeping their order, and record the true frame count."""
        missing = sorted(i for i in wanted if i not in got)
        frames = list(tail)
        for j, i in enumerate(missing):
            if len(missing) <= len(frames):  # one-to-one onto the last frames
                pos = len(frames) - len(missing) + j
            else:  # more holes than kept frames: spread them evenly, in order
                pos = j * len(frames) // len(missing)
            src_i, frame = frames[pos]
            got[i] = (self._convert(frame, size), self._time(frame, src_i))
        if decoded < self.info.num_frames:
            fps = self.info.fps
            duration = min(self.info.duration_s, decoded / fps)
            self.info = dataclasses.replace(self.info, num_frames=decoded, duration_s=duration)


# --------------------------------------------------------------------------------------------------- folders
class _FolderSource(VideoSource):
    """A directory of frame images (natural order), treated as one video at a fixed frame rate."""

    def __init__(self, path: str, fps: float) -> None:
        self.path = path
        try:
            self._files = list_frame_images(path)
        except OSError as exc:
            raise InputError(f"cannot read directory: {exc.strerror or exc}", path=path) from exc
        if not self._files:
            raise VideoDecodeError("directory has no frame images (jpg/png/bmp/webp)", path=path)
        first = self._load(0)
        h, w = first.shape[:2]
        n = len(self._files)
        self.info = VideoInfo(path, n, float(fps), n / float(fps), w, h, 0, False)

    def _load(self, i: int) -> np.ndarray:
        import cv2

        file = self._files[i]
        try:
            data = np.fromfile(file, dtype=np.uint8)
        except OSError as exc:
            raise InputError(f"cannot read frame image: {exc.strerror or exc}", path=file) from exc
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if bgr is None:
            raise VideoDecodeError("not a readable image", path=file)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def read(self, indices: Sequence[int], *, max_short_side: int | None = None) -> DecodedFrames:
        import cv2

        if max_short_side is not None and (isinstance(max_short_side, bool) or int(max_short_side) < 1):
            raise InputError(f"max_short_side must be a positive integer, got {max_short_side!r}")
        idx = _check_indices(indices, self.info.num_frames, self.path)
        w, h = _target_size(self.info.width, self.info.height, max_short_side)
        cache: dict[int, np.ndarray] = {}
        for i in dict.fromkeys(idx.tolist()):
            img = self._load(i)
            if img.shape[:2] != (h, w):
                shrinking = img.shape[0] * img.shape[1] > w * h
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
            cache[i] = img
        frames = np.stack([cache[i] for i in idx.tolist()]) if idx.size else np.zeros((0, h, w, 3), np.uint8)
        return DecodedFrames(frames, idx.astype(np.float64) / self.info.fps)


# --------------------------------------------------------------------------------------------------- entry points
def open_video(path: str | os.PathLike[str], *, fps_for_frame_folders: float = 30.0) -> VideoSource:
    """Open a video file (anything FFmpeg reads: mp4/avi/mkv/webm/mov/gif...) or a folder of frame images.

    Probes the stream (frame count from the header or by counting packets, rate, duration, display rotation,
    audio presence) and decodes the first frame so an undecodable file fails here, with a one-line
    :class:`VideoDecodeError`, rather than mid-batch.
    """
    text = os.fspath(path)
    if not (isinstance(fps_for_frame_folders, (int, float)) and fps_for_frame_folders > 0):
        raise InputError(f"fps_for_frame_folders must be positive, got {fps_for_frame_folders!r}")
    if "://" in text:  # URL or FFmpeg protocol: let FFmpeg judge it
        return _FileSource(text)
    try:
        is_dir = Path(text).is_dir()
    except OSError as exc:
        raise InputError(f"cannot access: {exc.strerror or exc}", path=text) from exc
    if is_dir:
        return _FolderSource(text, float(fps_for_frame_folders))
    check_media_file(text)
    return _FileSource(text)


def check_media_file(text: str, *, directory: str = "is a directory") -> None:
    """One-line errors for a path that cannot be a media file: missing, a directory (``directory`` says why that is
    wrong here), not a regular file, empty. URLs and FFmpeg protocols (``scheme://``) are left to FFmpeg."""
    if "://" in text:
        return
    p = Path(text)
    try:
        if not p.exists():
            raise InputError("no such file or directory", path=text)
        if p.is_dir():
            raise InputError(directory, path=text)
        if not p.is_file():
            raise InputError("not a regular file", path=text)
        if p.stat().st_size == 0:
            raise VideoDecodeError("empty file (0 bytes)", path=text)
    except OSError as exc:
        raise InputError(f"cannot access: {exc.strerror or exc}", path=text) from exc


def probe_video(path: str | os.PathLike[str], *, fps_for_frame_folders: float = 30.0) -> VideoInfo:
    """:class:`VideoInfo` of a video file or frame folder (see :func:`open_video`)."""
    return open_video(path, fps_for_frame_folders=fps_for_frame_folders).info
