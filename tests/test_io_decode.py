"""Decoding: exact frames by index for every container, clear one-line errors, resizing, rotation, real clips."""

from __future__ import annotations

import csv
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from openvocab.errors import InputError, VideoDecodeError
from openvocab.io.decode import DecodedFrames, VideoInfo, apply_rotation, open_video, probe_video
from openvocab.io.encode import write_video
from openvocab.io.sampling import uniform_segments


def _assert_one_line_error(exc: BaseException, path: Path) -> None:
    text = str(exc)
    assert path.name in text, text
    assert "\n" not in text, text


@pytest.mark.parametrize("suffix", ["mp4", "avi", "mkv", "webm", "gif", "mov"])
def test_read_returns_exactly_the_requested_frames(make_video, frame_code, suffix: str) -> None:
    path = make_video(f"clip.{suffix}", 40, fps=20)
    source = open_video(path)
    info = source.info
    assert isinstance(info, VideoInfo)
    assert info.num_frames == 40
    assert (info.width, info.height, info.rotation) == (96, 64, 0)
    assert info.fps == pytest.approx(20, rel=0.01)
    assert info.duration_s == pytest.approx(2.0, rel=0.1)
    indices = [39, 0, 5, 5, 17, 38, 0]  # unsorted, duplicates, both ends
    out = source.read(indices)
    assert isinstance(out, DecodedFrames)
    assert out.frames.shape == (7, 64, 96, 3) and out.frames.dtype == np.uint8
    assert frame_code.frame_indices(out.frames) == indices
    assert out.timestamps_s.dtype == np.float64
    np.testing.assert_allclose(out.timestamps_s, np.array(indices) / 20.0, atol=0.011)
    everything = source.read_all()
    assert frame_code.frame_indices(everything.frames) == list(range(40))
    assert probe_video(path) == info
    assert source.info.warnings == ()  # a sound file decodes without a word of warning


def test_frame_folder_natural_order(tmp_path: Path, frame_code) -> None:
    folder = tmp_path / "frames of my vidéo"
    folder.mkdir()
    for i in range(12):  # img_1 .. img_12: natural order puts img_2 before img_10
        ext = ".png" if i % 2 else ".jpg"
        bgr = cv2.cvtColor(frame_code.index_frame(i, 80, 48), cv2.COLOR_RGB2BGR)
        assert cv2.imwrite(str(folder / f"img_{i + 1}{ext}"), bgr)
    (folder / "notes.txt").write_text("not an image")
    source = open_video(folder, fps_for_frame_folders=10)
    assert source.info.num_frames == 12
    assert (source.info.fps, source.info.duration_s) == (10.0, 1.2)
    assert (source.info.width, source.info.height, source.info.has_audio) == (80, 48, False)
    out = source.read([11, 1, 9, 1])
    assert frame_code.frame_indices(out.frames) == [11, 1, 9, 1]
    np.testing.assert_allclose(out.timestamps_s, [1.1, 0.1, 0.9, 0.1])
    small = source.read([0], max_short_side=24)
    assert small.frames.shape == (1, 24, 40, 3)


def test_frame_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoDecodeError) as err:
        open_video(empty)
    _assert_one_line_error(err.value, empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoDecodeError) as err:
        open_video(broken)
    _assert_one_line_error(err.value, broken / "0001.jpg")


def test_one_frame_video(make_video, frame_code) -> None:
    path = make_video("single.mp4", 1)
    source = open_video(path)
    assert source.info.num_frames == 1
    idx = uniform_segments(source.info.num_frames, 8)
    assert idx.tolist() == [0] * 8
    out = source.read(idx)
    assert out.frames.shape == (8, 64, 96, 3)
    assert frame_code.frame_indices(out.frames) == [0] * 8


def test_short_clip_looped_indices(make_video, frame_code) -> None:
    source = open_video(make_video("short.mkv", 3))
    out = source.read([0, 1, 2, 0, 1, 2, 0, 1])
    assert frame_code.frame_indices(out.frames) == [0, 1, 2, 0, 1, 2, 0, 1]


def test_max_short_side_shrinks_large_frames(make_video, frame_code) -> None:
    path = make_video("big.mp4", 3, size=(1920, 1080))
    source = open_video(path)
    assert (source.info.width, source.info.height) == (1920, 1080)
    out = source.read([2, 0], max_short_side=224)
    assert out.frames.shape == (2, 224, 398, 3)  # 1920 * 224 / 1080 = 398.2
    assert frame_code.frame_indices(out.frames) == [2, 0]
    same = source.read([1], max_short_side=2000)  # never upscales
    assert same.frames.shape == (1, 1080, 1920, 3)


@pytest.mark.parametrize(("suffix", "rotation"), [("mp4", 90), ("mp4", 180), ("mp4", 270), ("mkv", 90), ("webm", 270)])
def test_rotation_metadata_is_applied(tmp_path: Path, suffix: str, rotation: int) -> None:
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[:32, :32] = 255  # a white square in the top-left corner marks the orientation
    frame[48:, 64:, 0] = 255  # red in the bottom-right corner
    path = write_video(tmp_path / f"rot{rotation}.{suffix}", np.stack([frame] * 4), rotation=rotation)
    source = open_video(path)
    assert source.info.rotation == rotation
    expected = apply_rotation(frame, rotation)
    assert (source.info.height, source.info.width) == expected.shape[:2]
    out = source.read([0, 3], max_short_side=32)
    assert out.frames.shape[1:3] == (expected.shape[0] // 2, expected.shape[1] // 2)
    full = source.read([1]).frames[0]
    assert full.shape == expected.shape
    assert np.abs(full.astype(int) - expected).mean() < 4


def test_apply_rotation_counter_clockwise() -> None:
    img = np.arange(6).reshape(2, 3, 1)  # [[0 1 2], [3 4 5]]
    assert apply_rotation(img, 0) is img
    assert apply_rotation(img, 90)[..., 0].tolist() == [[2, 5], [1, 4], [0, 3]]  # counter-clockwise
    assert apply_rotation(img, 180)[..., 0].tolist() == [[5, 4, 3], [2, 1, 0]]
    assert apply_rotation(img, 270)[..., 0].tolist() == [[3, 0], [4, 1], [5, 2]]
    assert apply_rotation(img, -90)[..., 0].tolist() == apply_rotation(img, 270)[..., 0].tolist()


def test_variable_frame_rate_timestamps_from_pts(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mkv"
    pts_ms = [0, 40, 100, 250, 260, 270, 500, 900]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 30, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    out = open_video(path).read(range(8))
    np.testing.assert_allclose(out.timestamps_s, np.array(pts_ms) / 1000.0, atol=1e-6)
    assert np.abs(out.frames.astype(int).mean(axis=(1, 2, 3)) - np.arange(8) * 30).max() < 4


def test_audio_track_is_reported(make_video) -> None:
    wav = (0.2 * np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    info = probe_video(make_video("with_audio.mp4", 25, fps=25, audio=wav))
    assert info.has_audio and info.num_frames == 25
    assert not probe_video(make_video("silent.mp4", 5)).has_audio


# ------------------------------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.mp4"
    with pytest.raises(InputError) as err:
        open_video(path)
    _assert_one_line_error(err.value, path)
    assert "no such file" in str(err.value)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(VideoDecodeError) as err:
        open_video(path)
    _assert_one_line_error(err.value, path)
    assert "0 bytes" in str(err.value)


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoDecodeError) as err:
        open_video(path)
    _assert_one_line_error(err.value, path)


@pytest.mark.parametrize("name", ["notes.txt", "readme.nfo", "art.asc"])
def test_text_file_is_not_a_video(tmp_path: Path, name: str) -> None:
    """FFmpeg's tty demuxer opens long-enough .txt/.nfo/.asc files as ANSI-art "video": refuse them."""
    path = tmp_path / name
    path.write_text("These are my notes about the video.\n" * 50)
    with pytest.raises(VideoDecodeError) as err:
        open_video(path)
    _assert_one_line_error(err.value, path)
    assert f"{path}: not a video" in str(err.value)


@pytest.mark.parametrize("suffix", ["m4a", "wav"])
def test_audio_only_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"sound only.{suffix}"
    codec = "aac" if suffix == "m4a" else "pcm_s16le"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=16000)
        stream.layout = "mono"
        data = np.zeros((1, 8000), np.float32 if codec == "aac" else np.int16)
        frame = av.AudioFrame.from_ndarray(data, format="flt" if codec == "aac" else "s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(VideoDecodeError) as err:
        open_video(path)
    _assert_one_line_error(err.value, path)
    assert "no video stream" in str(err.value)


def test_video_stream_without_frames(tmp_path: Path) -> None:
    path = tmp_path / "no_frames.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4000), np.float32), format="flt", layout="mono")
        frame.sample_rate = 16000
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            container.mux(packet)
    with pytest.raises(VideoDecodeError) as err:
        open_video(path)
    _assert_one_line_error(err.value, path)
    assert "no decodable video frames" in str(err.value)


def _moov_at_end_mp4(path: Path, num_frames: int) -> Path:
    with av.open(str(path), "w") as container:  # plain mp4 muxer: the index (moov) is written last
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), i * 4, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize("layout", ["faststart", "moov_at_end"])
@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1, 0.02])
def test_truncated_mp4(make_video, frame_code, tmp_path: Path, layout: str, keep: float) -> None:
    if layout == "faststart":
        path = make_video("cut.mp4", 60)  # write_video puts the index first, so half the data is still indexed
    else:
        path = _moov_at_end_mp4(tmp_path / "cut.mp4", 60)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    try:
        source = open_video(path)
        declared = source.info.num_frames
        out = source.read(range(declared))
    except VideoDecodeError as exc:
        _assert_one_line_error(exc, path)
        return
    assert out.frames.shape[0] == declared
    assert source.info.num_frames <= declared
    if source.info.num_frames < declared:  # the loss is said, naming the file
        assert any(w.startswith(f"{path}: only {source.info.num_frames} of the {declared} frames") for w in source.info.warnings)
    if layout == "faststart":
        got = frame_code.frame_indices(out.frames)
        true_count = source.info.num_frames
        assert got[:true_count] == list(range(true_count))  # decodable frames exact, the rest remapped
        tail = got[true_count:]  # indices past the real end: the last decodable frames, in order
        assert all(g < true_count for g in tail) and tail == sorted(tail)
        if keep == 0.9:
            assert 0 < true_count < 60


def test_out_of_range_and_bad_indices(make_video) -> None:
    path = make_video("short.mp4", 10)
    source = open_video(path)
    for bad in ([10], [-1], [[1, 2]], [0.5]):
        with pytest.raises(InputError) as err:
            source.read(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(InputError):
        source.read([0], max_short_side=0)
    empty = source.read([])
    assert empty.frames.shape == (0, 64, 96, 3) and empty.timestamps_s.shape == (0,)


# ------------------------------------------------------------------------------------------------- real clips
def test_real_clips_from_manifest(shared_data: Path) -> None:
    with open(shared_data / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    videos = [r for r in rows if r["resolution"]]
    assert videos, "manifest lists no videos"
    for row in videos:
        path = shared_data / row["path"]
        source = open_video(path)
        info = source.info
        width, height = (int(v) for v in row["resolution"].split("x"))
        expected_s = float(row["duration_s"])
        assert (info.width, info.height) == (width, height), row["path"]
        assert info.duration_s == pytest.approx(expected_s, rel=0.1), row["path"]
        assert info.num_frames / info.fps == pytest.approx(expected_s, rel=0.1), row["path"]
        assert info.has_audio == (row["has_audio"] == "yes"), row["path"]
        out = source.read(uniform_segments(info.num_frames, 8), max_short_side=128)
        assert out.frames.shape[0] == 8 and out.frames.dtype == np.uint8
        assert min(out.frames.shape[1:3]) == min(128, height, width), row["path"]
        assert np.all(np.diff(out.timestamps_s) > 0), row["path"]
        assert out.frames.std() > 1, row["path"]  # picture content, not blank frames
    for row in (r for r in rows if not r["resolution"]):
        with pytest.raises(VideoDecodeError, match="no video stream"):
            open_video(shared_data / row["path"])


# ------------------------------------------------------------------------------------------------- writing
def test_write_video_is_atomic_and_validates(tmp_path: Path) -> None:
    frames = np.zeros((2, 32, 48, 3), np.uint8)
    path = write_video(tmp_path / "ok.avi", frames, fps=12.5)
    assert path == tmp_path / "ok.avi" and probe_video(path).fps == pytest.approx(12.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.avi"]  # no temp file left behind
    bad_calls = [
        lambda: write_video(tmp_path / "odd.mp4", np.zeros((2, 33, 48, 3), np.uint8)),
        lambda: write_video(tmp_path / "float.mp4", frames.astype(np.float32)),
        lambda: write_video(tmp_path / "none.mp4", frames[:0]),
        lambda: write_video(tmp_path / "gray.mp4", frames[..., 0]),
        lambda: write_video(tmp_path / "sound.gif", frames, audio=np.zeros(100, np.float32)),
        lambda: write_video(tmp_path / "rot.avi", frames, rotation=90),
        lambda: write_video(tmp_path / "rot.mp4", frames, rotation=45),
        lambda: write_video(tmp_path / "clip.xyz", frames),
        lambda: write_video(tmp_path / "codec.mp4", frames, codec="nonsense"),
        lambda: write_video(tmp_path / "fps.mp4", frames, fps=0),
        lambda: write_video(tmp_path / "missing_dir" / "a.mp4", frames),
    ]
    for call in bad_calls:
        with pytest.raises(InputError):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.avi"]
    odd_gif = write_video(tmp_path / "odd.gif", np.zeros((2, 33, 47, 3), np.uint8))  # palette codecs allow odd sizes
    assert (probe_video(odd_gif).width, probe_video(odd_gif).height) == (47, 33)


# ------------------------------------------------------------------------------------------------- what is a video
def _random_file(tmp_path: Path, name: str, size: int, seed: int) -> Path:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def test_random_bytes_named_cdg_are_not_a_video(tmp_path: Path) -> None:
    """Issue 10: 64 random bytes were accepted as a 0.007 s video by FFmpeg's CD+G demuxer, chosen by the name."""
    path = _random_file(tmp_path, "noise.cdg", 64, seed=22)
    with av.open(str(path)) as container:  # the trap is real: FFmpeg decodes frames from these bytes
        assert container.format.name == "cdg" and next(container.decode(video=0)).width == 300
    with pytest.raises(VideoDecodeError) as err:
        open_video(path)
    _assert_one_line_error(err.value, path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a video: FFmpeg recognises no format in its content")
    assert "(.cdg)" in message and "64 bytes" in message and "CD Graphics" in message and "300x216" in message


@pytest.mark.parametrize("suffix", ["cdg", "h261", "nfo", "ans", "vt", "mp4", "avi", "mkv", "m4v", "ts", "mpg", "h264", "yuv", "bin", ""])
def test_random_bytes_are_never_a_video(tmp_path: Path, suffix: str) -> None:
    for seed in range(8):
        for size in (16, 64, 256, 4096):
            path = _random_file(tmp_path, f"r{seed}_{size}.{suffix}" if suffix else f"r{seed}_{size}", size, seed * 7 + size)
            with pytest.raises(VideoDecodeError) as err:
                open_video(path)
            assert str(err.value).count(str(path)) == 1 and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("suffix", "fmt", "codec"),
    [("mpg", "mpeg", "mpeg2video"), ("ts", "mpegts", "mpeg2video"), ("h264", "h264", "libx264"), ("m4v", "m4v", "mpeg4"), ("mjpeg", "mjpeg", "mjpeg")],
)
def test_containers_without_a_strong_signature_still_decode(tmp_path: Path, frame_code, suffix: str, fmt: str, codec: str) -> None:
    """Formats outside SIGNATURE_FORMATS are probed again with the name hidden: real files pass that probe."""
    from openvocab.io.decode import SIGNATURE_FORMATS

    path = tmp_path / f"clip.{suffix}"
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec in ("mpeg4", "mpeg2video", "mjpeg"):
            stream.bit_rate = 4_000_000
        for i in range(12):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_code.index_frame(i, 96, 64), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with av.open(str(path)) as container:
        assert container.format.name not in SIGNATURE_FORMATS
    source = open_video(path)
    assert source.info.num_frames == 12 and source.info.warnings == ()
    assert frame_code.frame_indices(source.read([0, 5, 11]).frames) == [0, 5, 11]


@pytest.mark.parametrize(("name", "ext"), [("photo.mp4", ".png"), ("photo.avi", ".jpg"), ("photo.mkv", ".bmp"), ("photo.png", ".png")])
def test_still_images_are_not_videos(tmp_path: Path, name: str, ext: str) -> None:
    ok, data = cv2.imencode(ext, np.full((48, 64, 3), 128, np.uint8))
    assert ok
    path = tmp_path / name
    path.write_bytes(data.tobytes())
    with pytest.raises(VideoDecodeError) as err:
        open_video(path)
    _assert_one_line_error(err.value, path)
    assert "not a video (a still " in str(err.value) and "put them in a folder" in str(err.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "pipe.mp4"
    os.mkfifo(path)
    box: dict = {}

    def attempt() -> None:
        try:
            open_video(path)
        except InputError as exc:
            box["error"] = str(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(60)  # opening a FIFO for reading would block until a writer comes: never return
    assert not thread.is_alive(), "open_video blocked on a FIFO"
    assert box["error"] == f"{path}: not a regular file (a FIFO); save it to a file first"


@pytest.mark.skipif(os.name != "posix", reason="symbolic links as on POSIX")
def test_broken_and_looping_links(tmp_path: Path) -> None:
    dangling, cycle = tmp_path / "gone.mp4", tmp_path / "cycle.mp4"
    os.symlink("nowhere.mp4", dangling)
    os.symlink("cycle.mp4", cycle)
    for path, reason in ((dangling, "broken symbolic link (its target nowhere.mp4 does not exist)"), (cycle, "symbolic link loop")):
        with pytest.raises(InputError) as err:
            open_video(path)
        assert str(err.value).startswith(f"{path}: {reason}")


def test_unreadable_container_message_names_the_file_once(tmp_path: Path) -> None:
    path = _random_file(tmp_path, "short.mp4", 16, seed=1)
    with pytest.raises(VideoDecodeError) as err:
        open_video(path)
    assert str(err.value).count(str(path)) == 1 and "\n" not in str(err.value)
    assert "Errno" not in str(err.value)


def test_4k_frames_are_shrunk_before_they_become_arrays(tmp_path: Path) -> None:
    """Memory stays bounded: a 3840x2160 frame is never held as a full-size RGB array (24.9 MB each)."""
    import tracemalloc

    y, x = np.mgrid[0:2160, 0:3840]
    frame = np.stack([(x // 15) % 256, (y // 9) % 256, np.zeros_like(x)], axis=-1).astype(np.uint8)
    path = write_video(tmp_path / "uhd.mp4", np.stack([frame, frame[::-1]]))
    del frame, y, x
    source = open_video(path)
    assert (source.info.width, source.info.height) == (3840, 2160)
    tracemalloc.start()
    try:
        out = source.read([1, 0, 1], max_short_side=224)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.frames.shape == (3, 224, 398, 3)
    assert peak < 5_000_000, peak  # a full-size RGB copy alone would be 24,883,200 bytes


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("playlist.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nreal.mkv\n#EXT-X-ENDLIST\n"),
        ("list.mp4", "ffconcat version 1.0\nfile 'real.mkv'\n"),
        ("list.ffconcat", "ffconcat version 1.0\nfile 'real.mkv'\n"),
    ],
)
def test_playlists_are_not_followed(make_video, tmp_path: Path, name: str, text: str) -> None:
    """A playlist makes FFmpeg read other files (a server must never be led outside its media root by one)."""
    make_video("real.mkv", 5)
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(VideoDecodeError) as err:
        open_video(path)
    _assert_one_line_error(err.value, path)
    assert "not a video" in str(err.value)
