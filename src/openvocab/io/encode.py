"""Writing videos with PyAV (FFmpeg): synthetic test clips, benchmark inputs and the synthetic-data generator.

The writer is deliberately small: RGB uint8 frames in, one file out, codec chosen from the suffix, optional mono
audio track and display-rotation metadata. Files are written atomically (temporary file in the same directory,
fsync, :func:`os.replace`), so a crash never leaves a half-written video under the final name.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from openvocab.errors import InputError

__all__ = ["available_video_codecs", "default_codec", "write_video"]

# Preferred encoders per container suffix, first available wins.
_VIDEO_CODECS: dict[str, tuple[str, ...]] = {
    ".mp4": ("libx264", "mpeg4"),
    ".m4v": ("libx264", "mpeg4"),
    ".mov": ("libx264", "mpeg4"),
    ".avi": ("mpeg4",),
    ".mkv": ("libx264", "ffv1", "mpeg4"),
    ".webm": ("libvpx-vp9", "libvpx"),
    ".gif": ("gif",),
}
_AUDIO_CODECS: dict[str, tuple[str, ...]] = {
    ".mp4": ("aac",),
    ".m4v": ("aac",),
    ".mov": ("aac",),
    ".avi": ("pcm_s16le", "libmp3lame", "mp3"),
    ".mkv": ("aac", "libopus"),
    ".webm": ("libopus",),
}
# Containers whose muxer understands a display matrix (rotation side data).
_ROTATION_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm"})


def available_video_codecs() -> frozenset[str]:
    """Names of the encoders/decoders compiled into this PyAV build (``av.codecs_available``)."""
    return frozenset(av.codecs_available)


def _has_encoder(name: str) -> bool:
    """True when this PyAV build can ENCODE with ``name`` (``codecs_available`` also lists decoders)."""
    if name not in available_video_codecs():
        return False
    try:
        av.codec.Codec(name, "w")
    except (ValueError, av.FFmpegError):
        return False
    return True


def default_codec(suffix: str) -> str:
    """The encoder :func:`write_video` picks for a file suffix (``".mp4"`` -> ``"libx264"`` when available)."""
    suffix = suffix.lower()
    if suffix not in _VIDEO_CODECS:
        raise InputError(f"cannot choose a video codec for suffix {suffix!r}; use one of {sorted(_VIDEO_CODECS)}")
    for name in _VIDEO_CODECS[suffix]:
        if _has_encoder(name):
            return name
    raise InputError(f"this PyAV build has none of the encoders {_VIDEO_CODECS[suffix]} for {suffix}")


def _pick_audio_codec(suffix: str) -> str:
    for name in _AUDIO_CODECS.get(suffix, ()):
        if _has_encoder(name):
            return name
    raise InputError(f"cannot store an audio track in a {suffix or 'suffix-less'} file")


def _codec_setup(name: str, width: int, height: int, fps: float) -> tuple[str, dict[str, str], int | None]:
    """(pixel format, encoder options, bit rate) giving good quality on small synthetic clips."""
    if name == "gif":
        return "pal8", {}, None
    if name == "ffv1":
        return "yuv420p", {}, None
    if name == "libx264":
        return "yuv420p", {"crf": "18", "preset": "veryfast"}, None
    if name in ("libvpx", "libvpx-vp9"):
        opts = {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"}
        if name == "libvpx":  # VP8 needs a bit-rate ceiling next to crf
            opts["b"] = str(max(1_000_000, int(width * height * fps * 0.5)))
        return "yuv420p", opts, None
    # mpeg4 and anything else: a generous constant bit rate (the FFmpeg default of 200 kb/s is blurry).
    return "yuv420p", {}, max(2_000_000, int(width * height * fps * 0.5))


def _check_frames(frames: np.ndarray) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InputError(f"frames must have shape (N, H, W, 3), got {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise InputError("cannot write a video with zero frames")
    if arr.dtype != np.uint8:
        raise InputError(f"frames must be uint8 RGB, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


def _check_audio(audio: np.ndarray) -> np.ndarray:
    wav = np.asarray(audio, dtype=np.float32)
    if wav.ndim == 2 and 1 in wav.shape:
        wav = wav.reshape(-1)
    if wav.ndim != 1 or wav.size == 0:
        raise InputError(f"audio must be a non-empty mono waveform (S,), got shape {tuple(np.shape(audio))}")
    return np.clip(wav, -1.0, 1.0)


class _GifPalette:
    """One global 256-colour palette (median cut over a sample of the clip) for GIF's 8-bit frames.

    Far more faithful than FFmpeg's fixed 3-3-2 ``rgb8`` palette: a clip with at most 256 distinct colours is
    stored exactly.
    """

    def __init__(self, arr: np.ndarray) -> None:
        from PIL import Image

        n, h, w, _ = arr.shape
        pick = np.unique(np.linspace(0, n - 1, num=min(n, 32)).round().astype(np.int64))
        step = max(1, int(np.sqrt(h * w * len(pick) / 1_000_000)))
        sample = np.concatenate([arr[i, ::step, ::step] for i in pick], axis=0)
        self._image = Image.fromarray(sample).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        rgb = np.asarray(self._image.getpalette()[: 256 * 3], dtype=np.uint8).reshape(-1, 3)
        rgb = np.concatenate([rgb, np.zeros((256 - len(rgb), 3), np.uint8)]) if len(rgb) < 256 else rgb
        self.argb = np.ascontiguousarray(np.concatenate([np.full((256, 1), 255, np.uint8), rgb], axis=1))

    def frame(self, rgb: np.ndarray) -> av.VideoFrame:
        from PIL import Image

        idx = np.asarray(Image.fromarray(rgb).quantize(palette=self._image, dither=Image.Dither.NONE))
        return av.VideoFrame.from_ndarray((np.ascontiguousarray(idx), self.argb), format="pal8")


class _AudioWriter:
    """Feeds a mono waveform to an audio stream in chunks, so audio and video packets interleave by time."""

    def __init__(self, container: av.container.OutputContainer, codec: str, wav: np.ndarray, sample_rate: int):
        self.stream = container.add_stream(codec, rate=sample_rate)
        self.stream.layout = "mono"
        if codec == "pcm_s16le":
            self.data, self.fmt = (wav * 32767.0).round().astype(np.int16)[None, :], "s16"
        else:
            self.data, self.fmt = wav[None, :], "flt"
        self.rate = sample_rate
        self.pos = 0

    def feed_until(self, container: av.container.OutputContainer, seconds: float | None) -> None:
        """Encode samples up to ``seconds`` (everything, and flush, when None)."""
        total = self.data.shape[1]
        stop = total if seconds is None else min(total, int(round(seconds * self.rate)))
        while self.pos < stop:
            end = min(stop, self.pos + 4096)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(self.data[:, self.pos : end]), format=self.fmt, layout="mono")
            frame.sample_rate = self.rate
            frame.pts = self.pos
            frame.time_base = Fraction(1, self.rate)
            for packet in self.stream.encode(frame):  # PyAV re-chunks to the encoder's frame size
                container.mux(packet)
            self.pos = end
        if seconds is None:
            for packet in self.stream.encode(None):
                container.mux(packet)


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    *,
    fps: float = 25,
    codec: str | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    rotation: int = 0,
) -> Path:
    """Encode ``frames`` (N, H, W, 3) uint8 RGB into ``path`` atomically and return the path.

    The codec follows the suffix unless given: mp4/mov -> libx264 (mpeg4 fallback), avi -> mpeg4,
    mkv -> libx264/ffv1, webm -> libvpx-vp9/libvpx, gif -> gif (one global 256-colour median-cut palette).
    ``audio`` is a mono float32 waveform in [-1, 1] at ``sample_rate`` (aac in mp4/mov/mkv, pcm in avi, opus in
    webm; not allowed in gif).
    ``rotation`` (0/90/180/270, counter-clockwise as in PyAV's ``VideoStream.set_display_rotation`` and
    ``VideoFrame.rotation``) stores a display matrix (mp4/mov/mkv/webm); the frames are written as given, and a
    rotation-aware decoder turns them by ``rotation`` degrees counter-clockwise for display.
    yuv420p codecs need even width and height.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    arr = _check_frames(frames)
    n, height, width, _ = arr.shape
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive number, got {fps!r}")
    if rotation % 90 != 0:
        raise InputError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    rotation %= 360
    if rotation and suffix not in _ROTATION_SUFFIXES:
        raise InputError(f"rotation metadata is only supported for {sorted(_ROTATION_SUFFIXES)}", path=out)
    name = codec or default_codec(suffix)
    if not _has_encoder(name):
        raise InputError(f"encoder {name!r} is not available in this PyAV build")
    pix_fmt, options, bit_rate = _codec_setup(name, width, height, float(fps))
    if pix_fmt.startswith("yuv420") and (width % 2 or height % 2):
        raise InputError(f"{name} (yuv420p) needs even width and height, got {width}x{height}", path=out)
    wav = None
    if audio is not None:
        if sample_rate <= 0:
            raise InputError(f"sample_rate must be positive, got {sample_rate}")
        wav = _check_audio(audio)
        audio_codec = _pick_audio_codec(suffix)
    if not out.parent.is_dir():
        raise InputError("output directory does not exist", path=out.parent)

    rate = Fraction(fps).limit_denominator(1001)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix or ".tmp", dir=out.parent)
    os.close(fd)
    container_options = {"movflags": "+faststart"} if suffix in (".mp4", ".m4v", ".mov") else {}
    try:
        with av.open(tmp_name, mode="w", format=_format_for(suffix), options=container_options) as container:
            stream = container.add_stream(name, rate=rate, options=options)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            if bit_rate is not None:
                stream.bit_rate = bit_rate
            if rotation:
                stream.set_display_rotation(rotation)
            sound = None if wav is None else _AudioWriter(container, audio_codec, wav, sample_rate)
            palette = _GifPalette(arr) if pix_fmt == "pal8" else None
            for i in range(n):
                if palette is not None:
                    frame = palette.frame(arr[i])
                else:
                    frame = av.VideoFrame.from_ndarray(arr[i], format="rgb24")
                frame.pts = i
                frame.time_base = 1 / rate
                for packet in stream.encode(frame):
                    container.mux(packet)
                if sound is not None:
                    sound.feed_until(container, float((i + 1) / rate))
            for packet in stream.encode(None):
                container.mux(packet)
            if sound is not None:
                sound.feed_until(container, None)
        with open(tmp_name, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_name, out)
    except av.FFmpegError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise InputError(f"could not encode with {name}: {exc}", path=out) from exc
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return out


def _format_for(suffix: str) -> str | None:
    """FFmpeg muxer name for a suffix (the temp file keeps the suffix, this just makes it explicit)."""
    return {".mkv": "matroska", ".webm": "webm", ".gif": "gif", ".avi": "avi", ".mov": "mov", ".mp4": "mp4"}.get(suffix)
