"""The reliability corpus: hostile and unusual inputs, generated at test time, each with ONE documented outcome.

``build_corpus(root)`` writes every case below ``root`` (about 0.4 MB; 3-5 s on the shared 2-core build machine,
most of it encoding the 4K case's two 3840x2160 frames) and returns the :class:`CorpusCase` list. It needs no
pytest fixture, so the CLI tests, the Python API tests and the HTTP server tests can all run the same files
(``tests/test_reliability_corpus.py`` runs the first two; a server test posts the ``uploadable`` ones). Files are
64x48, 24 frames at 25 fps unless said otherwise. Outcomes (``classify --frames 4``):

==========================  =====================================================  ===========================================
case                        what it is                                             outcome
==========================  =====================================================  ===========================================
ok_mp4                      H.264 mp4, index (moov) first ("faststart")            classified
moov_at_end_mp4             H.264 mp4 as the plain muxer writes it: moov last      classified
fragmented_mp4              movflags frag_keyframe+empty_moov (no sample index)    classified
one_frame_mp4               a single frame                                         classified (info: 1 frame)
vfr_mkv                     variable frame rate: pts 0,40,100,250,260,...,900 ms   classified (timestamps from pts)
rotated_mp4                 display matrix rotating 90 degrees                     classified (info: 48x64, rotation 90)
4k_mp4                      two 3840x2160 frames                                   classified (shrunk while decoding)
unicode_name                ``vidéo 日本語 ✓.mkv``                                 classified
dash_name                   ``-dash start.mp4`` (give it after ``--``)             classified
symlink_loop_folder         folder: a video, ``m1 -> .``, ``m2 -> .``              classified (the video once)
folder_with_bad_links       folder: a video, a dangling link, a self-link          classified (links ignored, no error)
truncated_mp4               faststart mp4 cut inside packet 16 of 24               classified with warning "truncated or damaged"
truncated_avi               MPEG-4 avi cut inside packet 16 of 24                  classified with warning "truncated or damaged"
truncated_mkv               H.264 mkv cut inside packet 16 of 24                   classified with warning "truncated or damaged"
bitflip_mp4                 8 bytes inverted inside packets 3, 9 and 15            classified with warning "damaged video data"
bitflip_avi                 the same in an avi                                     classified with warning "damaged video data"
bitflip_mkv                 the same in an mkv                                     classified with warning "damaged video data"
truncated_moov_at_end_mp4   moov-last mp4 cut to 60 %: the index is gone           error "not a recognised video file"
zero_byte_mp4               0 bytes                                                error "empty file (0 bytes)"
text_as_mp4                 a text file renamed .mp4                               error "not a recognised video file"
png_as_mp4                  a PNG image renamed .mp4                               error "not a video (a still png image"
wav_as_mp4                  a WAV file renamed .mp4                                error "no video stream (audio-only file?)"
audio_only_mp4              an mp4 with an AAC track and no video                  error "no video stream (audio-only file?)"
random_64_bytes_mp4         64 random bytes named .mp4                             error "not a recognised video file"
random_64_bytes_cdg         64 random bytes named .cdg (FFmpeg's CD+G guess)       error "not a video: FFmpeg recognises no format"
fifo_mp4                    a named pipe (FIFO) called .mp4; POSIX only            error "not a regular file (a FIFO)"
dangling_link_mp4           ``dangling.mp4 -> missing.mp4``                        error "broken symbolic link"
link_cycle_mp4              ``cycle.mp4 -> cycle.mp4``                             error "symbolic link loop"
==========================  =====================================================  ===========================================

"error" means one line ``error: <path>: <reason>`` from the CLI (exit 1, no traceback), an
:class:`~openvocab.errors.OpenVocabError` whose message is ``<path>: <reason>`` from ``classify(...,
on_error="raise")``, and a result with ``error`` set from ``on_error="skip"``. "warning" means a classified result
whose warnings (the decoder's :attr:`~openvocab.io.decode.VideoInfo.warnings`) contain the text. A folder search
of ``root`` finds every case whose name has a video suffix (and the videos inside the two folders), so a batch over
``root`` classifies every "classified"/"warning" case, lists every "error" case and exits 1. The bit positions
and cut points are chosen from the packets' byte positions, so the outcomes do not depend on the encoder's exact
output size.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from openvocab.io.discover import VIDEO_SUFFIXES
from openvocab.io.encode import write_video

__all__ = ["CASE_NAMES", "CorpusCase", "build_corpus"]

WIDTH, HEIGHT, FRAMES, FPS = 64, 48, 24, 25
CUT_PACKET = 16  # truncated cases end inside this packet
FLIP_PACKETS = (3, 9, 15)  # bit-flipped cases invert bytes inside these packets (never the first keyframe)


@dataclass(frozen=True)
class CorpusCase:
    """One input and its documented outcome.

    ``outcome``: "classified", "warning" (classified, and a warning containing ``detail``) or "error" (one line
    ``<path>: ...`` containing ``detail``). ``folder``: the path is a directory holding ``videos`` videos.
    ``uploadable``: a regular file whose bytes a client can post. ``info``: VideoInfo fields the decoder must report.
    """

    name: str
    path: Path
    outcome: str
    detail: str = ""
    what: str = ""
    folder: bool = False
    videos: int = 1
    uploadable: bool = True
    info: dict[str, object] = field(default_factory=dict)

    @property
    def expected(self) -> str:
        """The outcome as the table above words it."""
        if self.outcome == "classified":
            return "classified"
        if self.outcome == "warning":
            return f"classified with warning: {self.detail}"
        return f"error: {self.path}: {self.detail}"

    @property
    def in_folder_search(self) -> bool:
        """Whether a folder search of the corpus root reaches this case (a video suffix, or a folder)."""
        return self.folder or self.path.suffix.lower() in VIDEO_SUFFIXES

    @property
    def needs_dashdash(self) -> bool:
        """A command line must give this path after ``--`` (it starts with ``-``)."""
        return self.path.name.startswith("-")


# --------------------------------------------------------------------------------------------------- content
def _frames(n: int = FRAMES, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Smooth moving content (a gradient and a sliding white square): inter-coded frames, small files."""
    y, x = np.mgrid[0:height, 0:width]
    out = np.zeros((n, height, width, 3), np.uint8)
    side = max(4, height // 4)
    for i in range(n):
        out[i, ..., 0] = (x * 255 // max(width - 1, 1) + i * 9) % 256
        out[i, ..., 1] = y * 255 // max(height - 1, 1)
        left = (i * 3) % max(width - side, 1)
        out[i, side : 2 * side, left : left + side] = 255
    return out


def _mux(path: Path, frames: np.ndarray, *, fmt: str, options: dict[str, str] | None = None, codec_options=None) -> Path:
    """H.264 through PyAV directly (for muxer options write_video does not offer)."""
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "veryfast", **(codec_options or {})})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _vfr_mkv(path: Path) -> Path:
    pts_ms = [0, 40, 100, 250, 260, 270, 500, 900]
    frames = _frames(len(pts_ms))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for frame_rgb, pts in zip(frames, pts_ms):
            frame = av.VideoFrame.from_ndarray(frame_rgb, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _audio_file(path: Path, *, fmt: str, codec: str) -> Path:
    """One second of a 440 Hz tone, mono 16 kHz, no video stream."""
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=16000)
        stream.layout = "mono"
        if codec == "pcm_s16le":
            frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16)[None], format="s16", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def _png_bytes() -> bytes:
    """A valid 64x48 RGB PNG, written by hand (zlib + CRC), so no image library is needed."""
    import zlib

    rgb = _frames(1)[0]
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _packets(path: Path) -> list[tuple[int, int]]:
    """``(byte position, size)`` of every video packet with data, in file order."""
    with av.open(str(path)) as container:
        return [(int(p.pos), int(p.size)) for p in container.demux(container.streams.video[0]) if p.size and p.pos is not None and p.pos >= 0]


def _truncate_inside_packet(good: Path, out: Path, packet: int) -> Path:
    pos, size = _packets(good)[packet]
    out.write_bytes(good.read_bytes()[: pos + size // 2])
    return out


def _flip_inside_packets(good: Path, out: Path, packets: tuple[int, ...]) -> Path:
    data = bytearray(good.read_bytes())
    table = _packets(good)
    for k in packets:
        pos, size = table[k]
        start = pos + size // 4
        for i in range(start, min(start + 8, pos + size)):
            data[i] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


# --------------------------------------------------------------------------------------------------- the corpus
CASE_NAMES: tuple[str, ...] = (
    "ok_mp4", "moov_at_end_mp4", "fragmented_mp4", "one_frame_mp4", "vfr_mkv", "rotated_mp4", "4k_mp4",
    "unicode_name", "dash_name", "symlink_loop_folder", "folder_with_bad_links",
    "truncated_mp4", "truncated_avi", "truncated_mkv", "bitflip_mp4", "bitflip_avi", "bitflip_mkv",
    "truncated_moov_at_end_mp4", "zero_byte_mp4", "text_as_mp4", "png_as_mp4", "wav_as_mp4", "audio_only_mp4",
    "random_64_bytes_mp4", "random_64_bytes_cdg", "fifo_mp4", "dangling_link_mp4", "link_cycle_mp4",
)  # fmt: skip


def build_corpus(root: Path) -> list[CorpusCase]:
    """Write every case below ``root`` (created if missing; it should be empty) and return them in
    :data:`CASE_NAMES` order. Cases the platform cannot make (a FIFO or symbolic links on Windows) are left out."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    work = root / ".sources"  # hidden: a folder search of root skips it
    work.mkdir(exist_ok=True)
    frames = _frames()
    cases: list[CorpusCase] = []

    def add(name: str, path: Path, outcome: str, detail: str = "", what: str = "", **kw) -> None:
        cases.append(CorpusCase(name=name, path=path, outcome=outcome, detail=detail, what=what, **kw))

    good = {ext: write_video(work / f"good.{ext}", frames) for ext in ("mp4", "avi", "mkv")}
    moov_last = _mux(work / "moov_last.mp4", frames, fmt="mp4")

    add("ok_mp4", write_video(root / "ok.mp4", frames), "classified", what="faststart mp4", info={"num_frames": FRAMES})
    add("moov_at_end_mp4", _mux(root / "moov_at_end.mp4", frames, fmt="mp4"), "classified", what="moov last", info={"num_frames": FRAMES})
    add(
        "fragmented_mp4",
        _mux(root / "fragmented.mp4", frames, fmt="mp4", options={"movflags": "frag_keyframe+empty_moov"}, codec_options={"g": "6"}),
        "classified",
        what="fragmented mp4",
        info={"num_frames": FRAMES},
    )
    add("one_frame_mp4", write_video(root / "one_frame.mp4", frames[:1]), "classified", what="one frame", info={"num_frames": 1})
    add("vfr_mkv", _vfr_mkv(root / "vfr.mkv"), "classified", what="variable frame rate", info={"num_frames": 8})
    add(
        "rotated_mp4",
        write_video(root / "rotated.mp4", frames[:8], rotation=90),
        "classified",
        what="display matrix 90",
        info={"rotation": 90, "width": HEIGHT, "height": WIDTH},
    )
    big = _frames(2, 3840, 2160)
    add("4k_mp4", write_video(root / "4k.mp4", big), "classified", what="two 3840x2160 frames", info={"width": 3840, "height": 2160})
    add("unicode_name", write_video(root / "vidéo 日本語 ✓.mkv", frames), "classified", what="unicode file name")
    add("dash_name", write_video(root / "-dash start.mp4", frames), "classified", what="name starting with '-'")

    symlinks = hasattr(os, "symlink") and os.name == "posix"
    if symlinks:
        loop = root / "loop"
        loop.mkdir()
        write_video(loop / "inside.mp4", frames[:8])
        os.symlink(".", loop / "m1")
        os.symlink(".", loop / "m2")
        add("symlink_loop_folder", loop, "classified", what="folder with m1 -> ., m2 -> .", folder=True, uploadable=False)
        links = root / "links"
        links.mkdir()
        write_video(links / "inside.mkv", frames[:8])
        os.symlink("missing_folder", links / "dangling")
        os.symlink("self", links / "self")
        add("folder_with_bad_links", links, "classified", what="folder with a dangling link and a self-link", folder=True, uploadable=False)

    for ext in ("mp4", "avi", "mkv"):
        add(
            f"truncated_{ext}",
            _truncate_inside_packet(good[ext], root / f"truncated.{ext}", CUT_PACKET),
            "warning",
            "truncated or damaged",
            what=f"{ext} cut inside packet {CUT_PACKET}",
        )
    for ext in ("mp4", "avi", "mkv"):
        add(
            f"bitflip_{ext}",
            _flip_inside_packets(good[ext], root / f"bitflip.{ext}", FLIP_PACKETS),
            "warning",
            "damaged video data",
            what=f"{ext} with bytes inverted inside packets {FLIP_PACKETS}",
        )

    cut = root / "truncated_moov_at_end.mp4"
    cut.write_bytes(moov_last.read_bytes()[: int(moov_last.stat().st_size * 0.6)])
    add("truncated_moov_at_end_mp4", cut, "error", "not a recognised video file", what="moov-last mp4 cut to 60 %")
    (root / "zero_byte.mp4").write_bytes(b"")
    add("zero_byte_mp4", root / "zero_byte.mp4", "error", "empty file (0 bytes)", what="0 bytes")
    (root / "text.mp4").write_text("These are my notes about the holiday video.\n" * 40, encoding="utf-8")
    add("text_as_mp4", root / "text.mp4", "error", "not a recognised video file", what="text renamed .mp4")
    (root / "image.mp4").write_bytes(_png_bytes())
    add("png_as_mp4", root / "image.mp4", "error", "not a video (a still png image", what="PNG renamed .mp4")
    wav = _audio_file(work / "tone.wav", fmt="wav", codec="pcm_s16le")
    (root / "sound.mp4").write_bytes(wav.read_bytes())
    add("wav_as_mp4", root / "sound.mp4", "error", "no video stream (audio-only file?)", what="WAV renamed .mp4")
    add("audio_only_mp4", _audio_file(root / "audio_only.mp4", fmt="mp4", codec="aac"), "error", "no video stream (audio-only file?)", what="AAC-only mp4")
    rng = np.random.default_rng(22)  # seed 22: FFmpeg's CD+G demuxer decodes these 64 bytes as three frames
    noise = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    (root / "random.mp4").write_bytes(noise)
    add("random_64_bytes_mp4", root / "random.mp4", "error", "not a recognised video file", what="64 random bytes .mp4")
    (root / "random.cdg").write_bytes(noise)
    add("random_64_bytes_cdg", root / "random.cdg", "error", "not a video: FFmpeg recognises no format", what="64 random bytes .cdg")

    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "fifo.mp4")
        add("fifo_mp4", root / "fifo.mp4", "error", "not a regular file (a FIFO)", what="named pipe", uploadable=False)
    if symlinks:
        os.symlink("missing.mp4", root / "dangling.mp4")
        add("dangling_link_mp4", root / "dangling.mp4", "error", "broken symbolic link", what="dangling link", uploadable=False)
        os.symlink("cycle.mp4", root / "cycle.mp4")
        add("link_cycle_mp4", root / "cycle.mp4", "error", "symbolic link loop", what="self-referencing link", uploadable=False)

    order = {n: i for i, n in enumerate(CASE_NAMES)}
    assert set(order) >= {c.name for c in cases}, "every case must be listed in CASE_NAMES"
    return sorted(cases, key=lambda c: order[c.name])
