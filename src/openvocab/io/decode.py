"""Decoding videos (PyAV/FFmpeg) and frame folders into RGB uint8 arrays.

Design rule (DESIGN.md, "decode once and pick frames"): a read decodes the stream sequentially from the start,
converts only the requested frames and stops after the last one. Seeking per frame costs 0.14-1.2 s with long
GOPs, far more than decoding through a short clip. Frame counts come from the container header
(``stream.frames``) or, when absent, from counting packets without decoding. Streams that hold fewer frames than
their header claims (truncated files) are handled by remapping the missing indices onto the last decodable
frames and recording the true count in :attr:`VideoSource.info`.

What counts as a video (the reliability corpus in ``tests/reliability_corpus.py`` exercises each rule):

* FFmpeg must recognise the container from the file's CONTENT. Some demuxers have no signature to check and are
  picked from the file name alone (CD+G ``.cdg``, ANSI art ``.txt``/``.nfo``, ...); they turn any bytes into
  "frames" (a 64-byte random ``.cdg`` file decoded as three 300x216 frames lasting 0.007 s). A format outside
  :data:`SIGNATURE_FORMATS` is therefore probed a second time with the name hidden, and refused when the content
  alone is not recognised; the message says what FFmpeg would have decoded.
* A still image (PNG/JPEG/... even renamed ``.mp4``) is not a video: put frames in a folder instead.
* A playlist (HLS ``.m3u8``, an FFmpeg concat list, DASH) is refused: it makes FFmpeg read other files or URLs.
* At least one frame must decode, at least 2x2 pixels.
* A file that decodes only in part (truncated, bit-flipped) is used as far as it decodes, and the loss is said in
  :attr:`VideoInfo.warnings` (frames the header lists but the stream lacks, frames FFmpeg flagged as corrupt,
  packets it could not decode). A caller shows them with its result.

Every user-caused failure is a :class:`~openvocab.errors.VideoDecodeError` / :class:`~openvocab.errors.InputError`
with a one-line message naming the file.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from openvocab.errors import InputError, VideoDecodeError
from openvocab.io.discover import broken_link_reason, file_kind, list_frame_images

__all__ = ["DecodedFrames", "VideoInfo", "VideoSource", "apply_rotation", "open_video", "probe_video"]

_MAX_BAD_PACKETS = 64  # give up on a stream after this many undecodable packets
_TAIL_FRAMES = 8  # recent frames kept to stand in for frames a truncated stream lacks
_MIN_SIDE = 2  # a decoded frame smaller than this in either direction is not a picture
# FFmpeg demuxers that turn text files (.txt, .nfo, .asc, ...) into "video" by rendering the characters
TEXT_DEMUXERS = frozenset({"tty", "bintext", "xbin", "adf", "idf"})
# Playlists: they make FFmpeg read other files or URLs (never follow a user's file to somewhere else)
REFERENCE_DEMUXERS = frozenset({"hls", "concat", "dash"})
# Containers whose FFmpeg demuxer refuses a file without its signature (ftyp/moov atoms, EBML, RIFF, GIF8x, FLV,
# ASF GUID, OggS...): random bytes fail to open, so a second, name-blind probe would only cost time (it decodes a
# frame: 0.3 s for 4K). Every other format is probed again from the content alone.
SIGNATURE_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "gif", "flv", "asf", "ogg", "nut", "mxf", "yuv4mpegpipe", "ivf"})


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
    warnings: tuple[str, ...] = ()  # one line each, naming the file: what could not be decoded (see module doc)


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
def _ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's own words for ``exc`` without the errno and file name PyAV wraps them in."""
    return str(getattr(exc, "strerror", None) or exc).strip().rstrip(".") or type(exc).__name__


def open_container(path: str, *, kind: str = "video") -> av.container.InputContainer:
    """``av.open`` with every failure as one line naming ``path``; ``kind`` names what was expected ("video",
    "audio or video") in the messages. Text files FFmpeg would render as frames are checked by the callers."""
    article = "an" if kind[:1] in "aeiou" else "a"
    try:
        return av.open(path, mode="r", metadata_errors="ignore")
    except FileNotFoundError as exc:
        raise InputError("no such file or directory", path=path) from exc
    except PermissionError as exc:
        if "://" not in path and os.access(path, os.R_OK):  # readable, yet FFmpeg said EPERM: its own refusal
            raise VideoDecodeError(f"FFmpeg refused to open it (operation not permitted: a list of other files?); not {article} {kind}", path=path) from exc
        raise InputError("permission denied", path=path) from exc
    except IsADirectoryError as exc:
        raise InputError("is a directory without frame images", path=path) from exc
    except av.error.InvalidDataError as exc:
        raise VideoDecodeError(f"not a recognised {kind} file (FFmpeg found invalid data: truncated, damaged or not {article} {kind})", path=path) from exc
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(f"cannot open as {article} {kind} (FFmpeg: {_ffmpeg_reason(exc)}; truncated or damaged?)", path=path) from exc


class _NamelessReader:
    """A file object without a ``name``: FFmpeg must then recognise the format from the bytes alone."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()

    def read(self, size: int = -1) -> bytes:
        return self._fh.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()


def _recognised_by_content(path: str) -> bool:
    """Whether FFmpeg opens ``path`` with its name hidden (the content carries a format signature)."""
    try:
        reader = _NamelessReader(path)
    except OSError:
        return False
    try:
        with av.open(reader, mode="r", metadata_errors="ignore"):
            return True
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return False
    finally:
        reader.close()


def _is_still_image(format_name: str) -> bool:
    names = format_name.split(",")
    return "image2" in names or any(n.endswith("_pipe") and n != "gif_pipe" for n in names)


def _describe_first_frame(container: av.container.InputContainer, stream: av.stream.Stream) -> str:
    """What FFmpeg would have decoded, for refusal messages: "a 300x216 frame" / "no frame"."""
    for frame in iter_decoded(container, stream):
        return f"a {frame.width}x{frame.height} {stream.codec_context.name} frame"
    return "no frame"


def _video_stream(container: av.container.InputContainer, path: str, *, check_content: bool = False) -> av.video.stream.VideoStream:
    """The first video stream; refuses text renderings, still images and (``check_content``) formats FFmpeg picked
    from the file name alone (see the module doc)."""
    format_name = container.format.name or ""
    if TEXT_DEMUXERS.intersection(format_name.split(",")):
        raise VideoDecodeError("not a video (a text file, which FFmpeg would draw as ANSI-art frames)", path=path)
    if REFERENCE_DEMUXERS.intersection(format_name.split(",")):
        raise VideoDecodeError(f"not a video file (a {format_name} playlist that refers to other files; classify those files)", path=path)
    if _is_still_image(format_name):
        codec = container.streams.video[0].codec_context.name if container.streams.video else format_name
        raise VideoDecodeError(f"not a video (a still {codec} image); to classify images, put them in a folder as frames", path=path)
    if not container.streams.video:
        what = "audio-only file?" if container.streams.audio else "truncated, or not a video?"
        raise VideoDecodeError(f"no video stream ({what})", path=path)
    stream = container.streams.video[0]
    if check_content and format_name not in SIGNATURE_FORMATS and not _recognised_by_content(path):
        size = os.path.getsize(path)
        suffix = Path(path).suffix or "(none)"
        long_name = container.format.long_name or format_name
        decoded = _describe_first_frame(container, stream)
        raise VideoDecodeError(
            f"not a video: FFmpeg recognises no format in its content; only its name ({suffix}) makes FFmpeg read its "
            f"{size} bytes as {long_name} ({format_name}), which would decode {decoded}",
            path=path,
        )
    return stream


@dataclass
class _DecodeStats:
    """What :func:`iter_decoded` met: packets with data, packets FFmpeg could not decode, frames it flagged corrupt."""

    packets: int = 0
    bad_packets: int = 0
    corrupt_frames: int = 0
    stopped_early: bool = False  # the container broke off (truncated) or too many bad packets


def iter_decoded(container: av.container.InputContainer, stream: av.stream.Stream, *, stats: _DecodeStats | None = None):
    """Decoded frames of ``stream`` (video or audio) in order; stops quietly at truncation (what was decoded so far is
    the stream; the decoder is then drained) or after ``_MAX_BAD_PACKETS`` undecodable packets. ``stats`` (optional)
    counts what went wrong on the way."""
    stats = stats if stats is not None else _DecodeStats()
    if stream.type == "video":
        stream.thread_type = "AUTO"
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:  # the demuxer's final empty packet has already flushed the decoder
            return
        except (av.FFmpegError, OSError):  # truncated/corrupt container: what was decoded so far is the stream
            stats.stopped_early = True
            break
        if packet.size:
            stats.packets += 1
        try:
            frames = packet.decode()
        except (av.FFmpegError, OSError):
            stats.bad_packets += 1
            if stats.bad_packets > _MAX_BAD_PACKETS:
                stats.stopped_early = True
                return
            continue
        for frame in frames:
            stats.corrupt_frames += bool(getattr(frame, "is_corrupt", False))
            yield frame
    try:  # drain frames the decoder still holds (B-frame reordering / frame threads / audio delay)
        for frame in stream.codec_context.decode(None):
            stats.corrupt_frames += bool(getattr(frame, "is_corrupt", False))
            yield frame
    except (av.FFmpegError, OSError):
        return


def _count_packets(path: str) -> tuple[int, float | None]:
    """``(packets with data, end time in seconds of the last one or None)`` of the video stream, without decoding."""
    with open_container(path) as container:
        stream = _video_stream(container, path)
        count, end = 0, None
        tb = stream.time_base
        try:
            for packet in container.demux(stream):
                if packet.size:
                    count += 1
                    if packet.pts is not None and tb:
                        stop = float((packet.pts + (packet.duration or 0)) * tb)
                        end = stop if end is None else max(end, stop)
        except (av.FFmpegError, OSError):
            pass
    return count, end


def _rate(stream: av.video.stream.VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0 and np.isfinite(float(rate)):
            return float(rate)
    return None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _FileSource(VideoSource):
    """A container file decoded by PyAV."""

    def __init__(self, path: str) -> None:
        self.path = path
        warnings: list[str] = []
        with open_container(path) as container:
            stream = _video_stream(container, path, check_content="://" not in path)
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
            stats = _DecodeStats()
            first = None
            for frame in iter_decoded(container, stream, stats=stats):
                first = frame
                break
            if first is None:
                what = f"{_plural(stats.packets, 'packet')} of {stream.codec_context.name} data, none decodable" if stats.packets else "no video data"
                raise VideoDecodeError(f"no decodable video frames ({what}: damaged or truncated?)", path=path)
            if min(first.width, first.height) < _MIN_SIDE:
                raise VideoDecodeError(f"not a video: its first frame is {first.width}x{first.height} pixels", path=path)
            rotation = _normalise_rotation(first.rotation)
            coded_w, coded_h = first.width, first.height
        if header_frames > 0:
            num = header_frames
        else:
            num, end = _count_packets(path)
            if end is not None and duration and end - self._start < 0.9 * duration - 2.0 / (fps or 25.0):
                warnings.append(
                    f"{path}: only {end - self._start:.2f} s of the {duration:.2f} s its header lists can be read "
                    "(truncated or damaged file?); classified from that part"
                )
                duration = end - self._start
        if num <= 0:
            raise VideoDecodeError("no decodable video frames", path=path)
        if fps is None:
            fps = num / duration if duration else 25.0
        if not duration or duration <= 0:
            duration = num / fps
        self._coded = (coded_w, coded_h)
        self._declared = num
        width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
        self.info = VideoInfo(path, num, fps, float(duration), width, height, rotation, has_audio, tuple(warnings))

    def _warn(self, message: str) -> None:
        if message not in self.info.warnings:
            self.info = dataclasses.replace(self.info, warnings=(*self.info.warnings, message))

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
        stats = _DecodeStats()
        with open_container(self.path) as container:
            stream = _video_stream(container, self.path)
            for i, frame in enumerate(iter_decoded(container, stream, stats=stats)):
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
        self._note_damage(stats, decoded)
        frames = np.stack([got[i][0] for i in idx.tolist()])
        times = np.array([got[i][1] for i in idx.tolist()], dtype=np.float64)
        return DecodedFrames(frames, times)

    def _note_damage(self, stats: _DecodeStats, decoded: int) -> None:
        damage = []
        if stats.corrupt_frames:
            damage.append(f"{_plural(stats.corrupt_frames, 'frame')} decoded with errors concealed")
        if stats.bad_packets:
            damage.append(f"{_plural(stats.bad_packets, 'packet')} undecodable and skipped")
        if damage:
            self._warn(f"{self.path}: damaged video data: {' and '.join(damage)} among the first {_plural(decoded, 'frame')}")

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
            self._warn(
                f"{self.path}: only {decoded} of the {self.info.num_frames} frames its header lists could be decoded "
                "(truncated or damaged file?); classified from those"
            )
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
    """One-line errors for a path that cannot be a media file: missing, a broken or looping symbolic link, a
    directory (``directory`` says why that is wrong here), not a regular file (a FIFO or device is never opened: it
    could block or never end), empty. URLs and FFmpeg protocols (``scheme://``) are left to FFmpeg."""
    if "://" in text:
        return
    try:
        st = os.stat(text)
    except FileNotFoundError:
        raise InputError(broken_link_reason(text) or "no such file or directory", path=text) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(broken_link_reason(text) or "symbolic link loop", path=text) from None
        raise InputError(f"cannot access: {exc.strerror or exc}", path=text) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(directory, path=text)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"not a regular file ({file_kind(st.st_mode)}); save it to a file first", path=text)
    if st.st_size == 0:
        raise VideoDecodeError("empty file (0 bytes)", path=text)


def probe_video(path: str | os.PathLike[str], *, fps_for_frame_folders: float = 30.0) -> VideoInfo:
    """:class:`VideoInfo` of a video file or frame folder (see :func:`open_video`)."""
    return open_video(path, fps_for_frame_folders=fps_for_frame_folders).info
