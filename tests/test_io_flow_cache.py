"""The per-video flow cache (MOV §4.1 flow, precomputed): what it reads back equals flow_to_image(compute_flow(...)) of
the same decoded frames within the codec's stated error, keys never collide, other settings are refused, batches
resume, skip and report bad videos, and writes are atomic."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from openvocab.data.records import VideoRecord
from openvocab.data.synth import SynthSpec, render_clip
from openvocab.errors import InputError
from openvocab.io.decode import open_video
from openvocab.io.encode import write_video
from openvocab.io.flow import compute_flow, flow_pairs, flow_to_image
from openvocab.io.flow_cache import (
    CODEC_MAX_ERROR,
    CODEC_MEAN_ERROR,
    FLOW_CACHE_SUFFIX,
    FlowCache,
    extract_manifest,
    extract_video,
)


def moving_clip(path: Path, *, frames: int = 10, size: int = 64, motion: str = "right", seed: int = 0) -> Path:
    """A synthetic clip of a shape moving over a textured background (openvocab.data.synth)."""
    spec = SynthSpec(frames=frames, size=size)
    video, _ = render_clip(spec, {"colour": "red", "shape": "square", "motion": motion}, rng=np.random.default_rng(seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, video, fps=8)


def reference(path: Path, method: str, short_side: int = 256) -> np.ndarray:
    """flow_to_image(compute_flow(...)) x/y channels of all pairs of the decoded video: (N-1, H, W, 2)."""
    frames = open_video(path).read_all(max_short_side=short_side).frames
    return flow_to_image(compute_flow(frames, method=method))[..., :2]


def leftovers(root: Path) -> list[Path]:
    """Temporary files (atomic_path names them '.<target>.*')."""
    return [p for p in root.rglob(".*") if p.is_file()]


def check_codec_error(got: np.ndarray, want: np.ndarray, codec: str) -> None:
    err = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert err.max() <= CODEC_MAX_ERROR[codec], err.max()
    assert err.mean() <= CODEC_MEAN_ERROR[codec], err.mean()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flow_videos")
    moving_clip(root / "a" / "clip.mp4", motion="right")
    moving_clip(root / "b" / "clip.mp4", motion="up", seed=1)
    return root


# --------------------------------------------------------------------------------------------------- reading back
@pytest.mark.parametrize(("method", "codec"), [("dis", "jpeg"), ("farneback", "png")])
def test_read_equals_flow_images_of_the_decoded_frames(videos, tmp_path, method, codec) -> None:
    video = videos / "a" / "clip.mp4"
    cache = FlowCache(tmp_path / "cache", method=method, video_root=videos, codec=codec)
    assert extract_video(video, cache) == cache.path_for(video)
    want = reference(video, method)
    n = len(want) + 1
    got = cache.read(video, np.arange(n))
    assert got.shape == (n, 64, 64, 2) and got.dtype == np.uint8
    check_codec_error(got, want[flow_pairs(np.arange(n), n)[:, 0]], codec)
    if codec == "png":  # lossless
        np.testing.assert_array_equal(got[:-1], want)
    entry = cache.entry(video)
    assert (entry.method, entry.short_side, entry.size, entry.num_frames, entry.codec) == (method, 256, (64, 64), n, codec)
    # the pair rule of flow_pairs: repeats, the last frame gets (N-2, N-1); only those pairs come back
    picks = [n - 1, 0, 3, 3]
    np.testing.assert_array_equal(cache.read(video, picks), got[[n - 2, 0, 3, 3]])
    assert cache.read(video, []).shape == (0, 64, 64, 2)
    with pytest.raises(InputError, match=f"frame index {n} is out of range"):
        cache.read(video, [0, n])


def test_write_then_read_round_trip(videos, tmp_path) -> None:
    """FlowCache.write: flow images computed elsewhere (3 channels accepted), stored losslessly with png."""
    video = videos / "b" / "clip.mp4"
    images = flow_to_image(compute_flow(open_video(video).read_all().frames, method="farneback"))
    cache = FlowCache(tmp_path, method="farneback", codec="png")
    cache.write(video, images, fps=8)
    np.testing.assert_array_equal(cache.read(video, np.arange(len(images))), images[..., :2])
    with pytest.raises(InputError, match="uint8 array"):
        cache.write(video, images.astype(np.float32), fps=8)


def test_tvl1_tiny_and_short_side(tmp_path) -> None:
    """The paper's TV-L1 on a tiny clip, decoded with its short side shrunk to 24 px (32x48 -> 24x36)."""
    spec = SynthSpec(frames=4, size=48)
    frames, _ = render_clip(spec, {"colour": "blue", "shape": "circle", "motion": "left"}, rng=np.random.default_rng(3))
    video = write_video(tmp_path / "tiny.mp4", np.ascontiguousarray(frames[:, 8:40]), fps=8)  # 32x48 (H x W)
    cache = FlowCache(tmp_path / "cache", method="tvl1", short_side=24, codec="png")
    extract_video(video, cache)
    want = reference(video, "tvl1", short_side=24)
    assert want.shape == (3, 24, 36, 2)
    np.testing.assert_array_equal(cache.read(video, [0, 1, 2]), want)


def test_a_truncated_stream_keeps_the_decodable_pairs(tmp_path) -> None:
    """An AVI cut in half: its header still says 40 frames; the cache holds the pairs of the frames that decode and
    gives indices past them the last pair (as the decoder gives them the last frames)."""
    full = moving_clip(tmp_path / "full.avi", frames=40)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    cache = FlowCache(tmp_path / "cache", method="dis")
    extract_video(cut, cache)
    entry = cache.entry(cut)
    assert entry.declared_frames == 40 and 2 <= entry.num_frames < 40
    last = cache.read(cut, [entry.num_frames - 1])
    np.testing.assert_array_equal(cache.read(cut, [entry.num_frames, 39]), np.concatenate([last, last]))


def test_jpeg_error_on_a_real_clip(shared_data, tmp_path) -> None:
    """The stated JPEG bounds hold on real content (the first 13 frames of a real clip, 128-px short side)."""
    frames = open_video(shared_data / "videos" / "arm_wrestling.mp4").read(range(13), max_short_side=128).frames
    video = write_video(tmp_path / "real.mp4", frames, fps=25)
    cache = FlowCache(tmp_path / "cache", method="dis", short_side=128)
    extract_video(video, cache)
    want = reference(video, "dis", short_side=128)
    check_codec_error(cache.read(video, np.arange(12)), want, "jpeg")


# --------------------------------------------------------------------------------------------------- keys and settings
def test_keys_never_collide_and_the_index_keeps_them(videos, tmp_path) -> None:
    a, b = videos / "a" / "clip.mp4", videos / "b" / "clip.mp4"
    cache = FlowCache(tmp_path / "cache", method="dis", video_root=videos)
    assert cache.path_for(a) == tmp_path / "cache" / "a" / f"clip.mp4{FLOW_CACHE_SUFFIX}"
    assert cache.path_for(b) == tmp_path / "cache" / "b" / f"clip.mp4{FLOW_CACHE_SUFFIX}"
    assert cache.path_for(videos / "a" / ".." / "b" / "clip.mp4") == cache.path_for(b)
    outside = tmp_path / "elsewhere" / "clip.mp4"
    key = cache.key(outside)
    assert key.startswith("_by_hash/") and key.endswith("-clip.mp4") and key != cache.key(tmp_path / "other" / "clip.mp4")
    rootless = FlowCache(tmp_path / "fresh", method="dis")
    assert rootless.key(a) != rootless.key(b) and rootless.key(a).startswith("_by_hash/")
    extract_video(a, cache)  # records the video root in flow_cache.json
    reader = FlowCache(tmp_path / "cache", method="dis")  # as training builds it: no root given
    assert reader.video_root == videos and reader.path_for(a) == cache.path_for(a) and reader.has(a) and not reader.has(b)
    with pytest.raises(InputError, match="video root"):
        extract_video(b, FlowCache(tmp_path / "cache", method="dis", video_root=tmp_path))


def test_other_settings_count_as_absent_and_are_refused_on_read(videos, tmp_path) -> None:
    video = videos / "a" / "clip.mp4"
    extract_video(video, FlowCache(tmp_path, method="dis", short_side=32))
    assert FlowCache(tmp_path, method="dis", short_side=32).has(video)
    for other, setting in ((FlowCache(tmp_path, method="farneback", short_side=32), "method"), (FlowCache(tmp_path, method="dis"), "short_side")):
        assert not other.has(video)
        with pytest.raises(InputError) as info:
            other.read(video, [0])
        message = str(info.value)
        assert "\n" not in message and message.startswith(str(other.path_for(video))) and f"written with {setting}=" in message
    with pytest.raises(InputError, match="no flow cache file"):
        FlowCache(tmp_path, method="dis").read(videos / "b" / "clip.mp4", [0])


def test_a_damaged_file_is_absent_and_unreadable(videos, tmp_path) -> None:
    video = videos / "a" / "clip.mp4"
    cache = FlowCache(tmp_path, method="dis")
    cache.path_for(video).parent.mkdir(parents=True)
    cache.path_for(video).write_bytes(b"\x00" * 40)
    assert not cache.has(video)
    with pytest.raises(InputError, match="not a readable flow cache file"):
        cache.read(video, [0])
    extract_video(video, cache)  # replaced by a good one
    assert cache.has(video)


def test_bad_arguments_are_one_line() -> None:
    with pytest.raises(InputError, match="unknown optical flow method 'raft'"):
        FlowCache("x", method="raft")
    with pytest.raises(InputError, match="short_side"):
        FlowCache("x", short_side=0)
    with pytest.raises(InputError, match="codec"):
        FlowCache("x", codec="webp")


# --------------------------------------------------------------------------------------------------- batches
def test_extract_manifest_resumes_and_reports_bad_videos(videos, tmp_path) -> None:
    (tmp_path / "in").mkdir()
    one_frame = write_video(tmp_path / "in" / "still.mp4", np.zeros((1, 32, 32, 3), np.uint8), fps=8)
    corrupt = tmp_path / "in" / "corrupt.mp4"
    corrupt.write_bytes(b"this is not a video" * 50)
    good = [videos / "a" / "clip.mp4", videos / "b" / "clip.mp4"]
    cache = FlowCache(tmp_path / "cache", method="dis", video_root=videos)
    calls: list[tuple[int, int]] = []
    records = [VideoRecord(str(good[0]), (0,)), one_frame, good[1], corrupt, good[0]]  # manifest records or paths
    report = extract_manifest(records, cache, progress=lambda d, t: calls.append((d, t)))
    assert report.done == [str(p) for p in good] and report.skipped == []
    reasons = dict(report.failed)
    assert reasons[str(one_frame)] == "a one-frame video has no frame pair for optical flow"
    assert "\n" not in reasons[str(corrupt)] and not reasons[str(corrupt)].startswith(str(corrupt))
    assert calls[-1] == (4, 4)
    assert all(cache.has(p) for p in good) and not cache.path_for(one_frame).exists() and not cache.path_for(corrupt).exists()
    assert leftovers(tmp_path / "cache") == []
    mtimes = [cache.path_for(p).stat().st_mtime_ns for p in good]
    again = extract_manifest([*good, one_frame], cache)
    assert again.skipped == [str(p) for p in good] and again.done == [] and len(again.failed) == 1
    assert [cache.path_for(p).stat().st_mtime_ns for p in good] == mtimes


def test_a_failed_write_leaves_nothing_and_stale_temporaries_go(videos, tmp_path, monkeypatch) -> None:
    import safetensors.numpy

    video = videos / "a" / "clip.mp4"
    cache = FlowCache(tmp_path, method="dis", video_root=videos)
    target = cache.path_for(video)

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as m:
        m.setattr(safetensors.numpy, "save_file", crash)
        report = extract_manifest([video], cache)
    assert report.failed == [(str(video), "unexpected RuntimeError: disk on fire")]
    assert not target.exists() and leftovers(tmp_path) == []
    stale, fresh = target.parent / f".{target.name}.killed.safetensors", target.parent / f".{target.name}.busy.safetensors"
    stale.write_bytes(b"left by a killed writer")
    fresh.write_bytes(b"another writer, now")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert extract_manifest([video], cache).done == [str(video)]
    assert not stale.exists() and fresh.exists() and cache.has(video)
