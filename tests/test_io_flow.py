"""Optical flow (MOV §4.1): TV-L1 against DeepMind's i3d rendering, known answers, flow images, pairs, the cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openvocab.errors import InputError
from openvocab.io.decode import open_video
from openvocab.io.flow import (
    FLOW_METHODS,
    ZERO_FLOW_LEVEL,
    compute_flow,
    flow_for_indices,
    flow_pairs,
    flow_to_image,
    load_flow_images,
    save_flow_images,
)

GIF_LEVELS_PER_PX = 255 / 20  # DeepMind's flow GIF: 12.75 levels per pixel (measured, see below)
OUR_LEVELS_PER_PX = 255 / 40  # MOV: [-20, 20] -> [0, 255]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def _texture(size: int = 200, seed: int = 0) -> np.ndarray:
    """A smooth random grayscale texture as (size, size, 3) uint8 (trackable everywhere, no aperture problem)."""
    import cv2

    noise = np.random.default_rng(seed).random((size, size)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255
    return np.repeat(smooth[..., None], 3, axis=2).astype(np.uint8)


# --------------------------------------------------------------------------------------------------- DeepMind's flow
@pytest.fixture
def cricket(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """DeepMind's i3d cricket clip (RGB GIF) and its TV-L1 flow rendered as a GIF (skips without ../shared)."""
    videos = shared_data / "videos"
    rgb = open_video(videos / "cricket_shot_rgb.gif").read_all().frames
    flow = open_video(videos / "cricket_shot_tvl1_flow.gif").read_all().frames
    return rgb, flow


def test_deepmind_flow_gif_encoding(cricket) -> None:
    """What the i3d flow GIF holds (investigated before comparing): one flow frame per RGB frame (79), 224x224;
    the third channel is the constant 127 (zero motion rendered like the others: mid-gray, as MOV's appended zero
    channel); zero motion sits at 127.5 (palette levels 126/128 are the modes of channels 0 and 1)."""
    rgb, gif = cricket
    assert gif.shape == rgb.shape == (79, 224, 224, 3)
    assert np.unique(gif[..., 2]).tolist() == [127]
    for c in (0, 1):
        values, counts = np.unique(gif[..., c], return_counts=True)
        assert 126 <= values[counts.argmax()] <= 128
        assert counts.max() / gif[..., c].size > 0.7  # most of the scene is static


def test_tvl1_matches_deepmind_rendering(cricket) -> None:
    """Our ``flow_to_image(compute_flow(rgb[i:i+2]))`` against frame i of DeepMind's TV-L1 flow GIF.

    The GIF's encoding, found by regressing it on our flow over all 78 pairs: channel 0 is dx and channel 1 is dy
    (the cross-component correlation is far lower), GIF frame i is the flow of RGB pair (i, i+1) (pairs shifted by
    one frame correlate less), zero is 127.5, and the scale is 12.75 levels per pixel (= 255/20, i.e. +-10 px over
    [0, 255], twice MOV's 255/40): the std ratio GIF/ours of the uint8 levels is 1.97 (x) and 2.06 (y) on average.
    Pearson correlation is affine-invariant, so the scale does not affect it; the motion masks convert each
    rendering back to pixels with its own scale and mark |flow| > 1 px.

    Measured with OpenCV 5.0.0 (TVL1_SETTINGS) over all 78 pairs: correlation x mean 0.900 (min 0.740), y mean 0.789
    (min 0.513); motion-mask IoU mean 0.692 (min 0.478), pixel agreement mean 0.978 (min 0.936). The GIF is palette
    quantised (141/153 levels) and DeepMind probably computed flow on the full 256-px frames before the 224 crop
    (borders differ), so agreement is not exact. On the three pairs tested here (10, 40, 70): x 0.857 / 0.943 / 0.953, y 0.814 / 0.749 / 0.766, IoU
    0.672 / 0.761 / 0.772, agreement 0.987 / 0.979 / 0.982; thresholds sit a little below.
    """
    rgb, gif = cricket
    pairs = [10, 40, 70]
    corr_x, corr_y, shifted, ious, agree, scale = [], [], [], [], [], []
    for i in pairs:
        ours = flow_to_image(compute_flow(rgb[i : i + 2], method="tvl1"))[0]
        ref = gif[i]
        corr_x.append(_pearson(ours[..., 0], ref[..., 0]))
        corr_y.append(_pearson(ours[..., 1], ref[..., 1]))
        shifted.append(np.mean([_pearson(ours[..., c], gif[i + 1][..., c]) for c in (0, 1)]))
        ours_px = (ours[..., :2].astype(np.float64) - ZERO_FLOW_LEVEL) / OUR_LEVELS_PER_PX
        ref_px = (ref[..., :2].astype(np.float64) - 127.5) / GIF_LEVELS_PER_PX
        mask_ours, mask_ref = np.hypot(*np.moveaxis(ours_px, -1, 0)) > 1.0, np.hypot(*np.moveaxis(ref_px, -1, 0)) > 1.0
        ious.append((mask_ours & mask_ref).sum() / max((mask_ours | mask_ref).sum(), 1))
        agree.append((mask_ours == mask_ref).mean())
        scale.append([ref[..., c].std() / ours[..., c].std() for c in (0, 1)])
    assert min(corr_x) > 0.82 and np.mean(corr_x) > 0.88, corr_x
    assert min(corr_y) > 0.70 and np.mean(corr_y) > 0.74, corr_y
    assert np.mean(shifted) < np.mean(corr_x + corr_y) - 0.05, (shifted, corr_x, corr_y)  # GIF frame i = pair (i, i+1)
    assert min(ious) > 0.60 and np.mean(ious) > 0.68, ious
    assert min(agree) > 0.96, agree
    assert 1.7 < np.mean(scale) < 2.4, scale  # magnitudes agree, up to the GIF's doubled scale


# --------------------------------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("method", ["tvl1", "dis", "farneback"])
def test_translation_known_answer(method: str) -> None:
    """A smooth texture moved by (+3, -2) px (right 3, up 2) between two 112x112 frames: flow (dx, dy) = (3, -2).

    Measured (interior, 12-px border dropped): mean tvl1 (3.0006, -1.9989), dis (2.9984, -1.9975), farneback
    (3.0002, -2.0000); per-pixel std <= 0.015 px. Tolerances: mean within 0.05 px, 95% of pixels within 0.25 px.
    """
    big = _texture()
    size, o = 112, 40
    first = big[o : o + size, o : o + size]
    second = big[o + 2 : o + 2 + size, o - 3 : o - 3 + size]  # second[y, x] = first[y + 2, x - 3]
    flow = compute_flow(np.stack([first, second]), method=method)
    assert flow.shape == (1, size, size, 2) and flow.dtype == np.float32
    inner = flow[0, 12:-12, 12:-12].reshape(-1, 2)
    np.testing.assert_allclose(inner.mean(0), [3.0, -2.0], atol=0.05)
    assert (np.abs(inner - [3.0, -2.0]).max(1) < 0.25).mean() > 0.95


def test_compute_flow_shapes_and_list_input() -> None:
    frames = np.stack([np.roll(_texture(64), k, axis=1) for k in range(4)])
    flow = compute_flow(list(frames), method="farneback")
    assert flow.shape == (3, 64, 64, 2) and flow.dtype == np.float32
    np.testing.assert_array_equal(flow, compute_flow(frames, method="farneback"))
    assert set(FLOW_METHODS.names()) == {"tvl1", "dis", "farneback"}


# --------------------------------------------------------------------------------------------------- flow images
def test_flow_to_image_exact_values() -> None:
    """level = floor((clip(v, -20, 20) + 20) * 255/40 + 0.5): hand-computed."""
    values = np.array([-25.0, -20.0, -10.0, -0.1, 0.0, 0.1, 1.0, 10.0, 19.9, 20.0, 300.0, np.nan], dtype=np.float32)
    # -20->0, -10->63.75->64, -0.1->126.86->127, 0->127.5->128, 0.1->128.14->128, 1->133.875->134, 10->191.25->191,
    # 19.9->254.36->254, 20->255; clamped beyond; NaN is zero motion
    expected_x = [0, 0, 64, 127, 128, 128, 134, 191, 254, 255, 255, 128]
    flow = np.stack([values, -values], axis=-1)[None, None]  # (1, 1, 12, 2)
    image = flow_to_image(flow)
    assert image.shape == (1, 1, 12, 3) and image.dtype == np.uint8
    assert image[0, 0, :, 0].tolist() == expected_x
    # dy = -v: -(-25)=25->255, 20->255, 10->191, 0.1->128, 0->128, -0.1->127, -1->121.125->121, -10->64, -19.9->0.64->1, -20->0
    assert image[0, 0, :, 1].tolist() == [255, 255, 191, 128, 128, 127, 121, 64, 1, 0, 0, 128]
    assert (image[..., 2] == ZERO_FLOW_LEVEL).all() and ZERO_FLOW_LEVEL == 128


def test_flow_to_image_bound_and_third_channel() -> None:
    flow = np.array([[[[-5.0, 5.0], [2.5, 0.0]]]], dtype=np.float32)  # (1, 1, 2, 2)
    image = flow_to_image(flow, bound=5.0)  # 25.5 levels per pixel
    assert image[0, 0, :, 0].tolist() == [0, 191]  # 2.5 -> 191.25 -> 191
    assert image[0, 0, :, 1].tolist() == [255, 128]
    assert image[..., 2].tolist() == [[[128, 128]]]
    single = flow_to_image(np.zeros((4, 6, 2), np.float64))  # one (H, W, 2) flow field works too
    assert single.shape == (4, 6, 3) and (single == 128).all()


@pytest.mark.parametrize(
    ("flow", "bound", "needle"),
    [
        (np.zeros((2, 4, 4, 2), np.int16), 20.0, "float array"),
        (np.zeros((2, 4, 4, 3), np.float32), 20.0, "(..., H, W, 2)"),
        (np.zeros((4, 2), np.float32), 20.0, "(..., H, W, 2)"),
        ([[0.0, 0.0]], 20.0, "got list"),
        (np.zeros((1, 4, 4, 2), np.float32), 0.0, "bound must be a positive"),
        (np.zeros((1, 4, 4, 2), np.float32), float("inf"), "bound must be a positive"),
    ],
)
def test_flow_to_image_bad_input(flow, bound, needle: str) -> None:
    with pytest.raises(InputError) as info:
        flow_to_image(flow, bound=bound)
    assert needle in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------- bad frames
@pytest.mark.parametrize(
    ("frames", "needle"),
    [
        (np.zeros((1, 16, 16, 3), np.uint8), "at least two frames (a pair), got one frame"),
        (np.zeros((0, 16, 16, 3), np.uint8), "got no frames"),
        ([np.zeros((16, 16, 3), np.uint8)], "got one frame"),
        ([], "got none"),
        ([np.zeros((16, 16, 3), np.uint8), np.zeros((16, 20, 3), np.uint8)], "frame 1 is 20x16 but frame 0 is 16x16"),
        (np.zeros((2, 16, 16, 3), np.float32), "uint8 RGB array, got shape (2, 16, 16, 3) float32"),
        (np.zeros((2, 16, 16), np.uint8), "got shape (2, 16, 16) uint8"),
        (np.zeros((2, 16, 16, 4), np.uint8), "got shape (2, 16, 16, 4) uint8"),
        ([np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.int32)], "frame 1 must be an (H, W, 3) uint8"),
        ("video.mp4", "got str"),
    ],
)
def test_compute_flow_bad_input(frames, needle: str) -> None:
    with pytest.raises(InputError) as info:
        compute_flow(frames, method="farneback")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_compute_flow_unknown_method_and_too_small_for_dis() -> None:
    with pytest.raises(InputError, match=r"unknown optical flow method 'raft' \(choose tvl1, dis, farneback\)"):
        compute_flow(np.zeros((2, 16, 16, 3), np.uint8), method="raft")
    with pytest.raises(InputError, match=r"dis optical flow cannot run on 8x8 frames") as info:
        compute_flow(np.zeros((2, 8, 8, 3), np.uint8), method="dis")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------- sampled frames
def test_flow_pairs_clamp_at_last_frame() -> None:
    pairs = flow_pairs([0, 4, 8, 9, 9], 10)
    assert pairs.dtype == np.int64
    assert pairs.tolist() == [[0, 1], [4, 5], [8, 9], [8, 9], [8, 9]]
    assert flow_pairs([], 10).shape == (0, 2)
    with pytest.raises(InputError, match="a one-frame video has no frame pair for optical flow"):
        flow_pairs([0], 1)
    with pytest.raises(InputError, match="frame index 10 is out of range"):
        flow_pairs([3, 10], 10)
    with pytest.raises(InputError, match="1-D sequence of integers"):
        flow_pairs([0.5], 10)


class _CountingSource:
    """Wraps a VideoSource and counts ``read`` calls."""

    def __init__(self, source) -> None:
        self.source, self.info, self.reads = source, source.info, []

    def read(self, indices, *, max_short_side=None):
        self.reads.append(list(np.asarray(indices).tolist()))
        return self.source.read(indices, max_short_side=max_short_side)


def _frame_folder(folder: Path, num_frames: int, *, step: int = 2) -> Path:
    """A lossless frame folder: the texture moving ``step`` px right per frame (96x64 frames)."""
    import cv2

    big = _texture(160)
    folder.mkdir()
    for k in range(num_frames):
        frame = big[20:84, 40 - step * k : 136 - step * k]
        cv2.imwrite(str(folder / f"{k:04d}.png"), cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    return folder


def test_flow_for_indices_equals_flow_of_decoded_pairs(tmp_path: Path) -> None:
    """Sampled index i -> flow of (i, i+1), last frame -> (N-2, N-1); one read; repeated pairs computed once."""
    source = open_video(_frame_folder(tmp_path / "clip", 10))
    counting = _CountingSource(source)
    indices = [1, 5, 9, 5]
    flow = flow_for_indices(counting, indices, method="farneback")
    assert flow.shape == (4, 64, 96, 2) and flow.dtype == np.float32
    assert counting.reads == [[1, 2, 5, 6, 8, 9]]
    everything = compute_flow(source.read_all().frames, method="farneback")
    np.testing.assert_array_equal(flow, everything[[1, 5, 8, 5]])
    np.testing.assert_allclose(flow[:, 16:-16, 16:-16].mean((1, 2)), [[2.0, 0.0]] * 4, atol=0.1)
    small = flow_for_indices(source, [0, 9], method="dis", max_short_side=32)  # flow at the decoded (shrunk) size
    assert small.shape == (2, 32, 48, 2)


def test_flow_for_indices_one_frame_video(tmp_path: Path) -> None:
    source = open_video(_frame_folder(tmp_path / "one", 1))
    with pytest.raises(InputError, match="a one-frame video has no frame pair for optical flow"):
        flow_for_indices(source, [0, 0], method="farneback")


# --------------------------------------------------------------------------------------------------- cache
def _meta(**changes) -> dict:
    meta = {"method": "tvl1", "bound": 20.0, "size": (24, 32), "indices": [3, 7, 11]}
    meta.update(changes)
    return meta


def _images(seed: int = 0) -> np.ndarray:
    flow = np.random.default_rng(seed).normal(0, 8, (3, 24, 32, 2)).astype(np.float32)
    return flow_to_image(flow)


def test_cache_round_trip_exact(tmp_path: Path) -> None:
    images = _images()
    path = save_flow_images(tmp_path / "v" / "clip.safetensors", images, meta={**_meta(), "video": "clip.mp4"})
    got = load_flow_images(path, expect_meta=_meta(size=[24, 32], indices=np.array([3, 7, 11])))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, images)
    assert path.stat().st_size < images.nbytes  # only the two flow channels are stored


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"method": "dis"}, 'written with method="tvl1", expected method="dis"'),
        ({"bound": 10.0}, "written with bound=20.0, expected bound=10.0"),
        ({"size": [48, 64]}, "written with size=[24, 32], expected size=[48, 64]"),
        ({"indices": [3, 7, 12]}, "written with indices=[3, 7, 11], expected indices=[3, 7, 12]"),
        ({"video_digest": "abc"}, "flow cache has no setting 'video_digest'"),
    ],
)
def test_cache_refuses_other_settings(tmp_path: Path, change: dict, needle: str) -> None:
    path = save_flow_images(tmp_path / "clip.safetensors", _images(), meta=_meta())
    with pytest.raises(InputError) as info:
        load_flow_images(path, expect_meta=_meta(**change))
    message = str(info.value)
    assert message.startswith(f"{path}: ") and needle in message and "\n" not in message


def test_cache_bad_writes_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "clip.safetensors"
    with pytest.raises(InputError, match="lacks indices"):
        save_flow_images(path, _images(), meta={"method": "tvl1", "bound": 20.0, "size": [24, 32]})
    with pytest.raises(InputError, match="says size"):
        save_flow_images(path, _images(), meta=_meta(size=[32, 24]))
    with pytest.raises(InputError, match="one frame index per image"):
        save_flow_images(path, _images(), meta=_meta(indices=[1, 2]))
    with pytest.raises(InputError, match=r"\(N, H, W, 3\) uint8"):
        save_flow_images(path, _images().astype(np.float32), meta=_meta())
    bad_third = _images()
    bad_third[..., 2] = 0
    with pytest.raises(InputError, match="constant third channel 128"):
        save_flow_images(path, bad_third, meta=_meta())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="no flow cache file"):
        load_flow_images(path, expect_meta=_meta())
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(InputError, match="not a readable flow cache file") as info:
        load_flow_images(path, expect_meta=_meta())
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_cache_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that dies half-way leaves neither a partial file nor a temporary; an old cache stays intact."""
    import safetensors.numpy

    path = tmp_path / "clip.safetensors"
    old = _images(seed=1)
    save_flow_images(path, old, meta=_meta())
    before = path.read_bytes()

    def dying_writer(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", dying_writer)
    with pytest.raises(OSError, match="disk full"):
        save_flow_images(path, _images(seed=2), meta=_meta(method="dis"))
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["clip.safetensors"]
    with pytest.raises(OSError, match="disk full"):
        save_flow_images(tmp_path / "new.safetensors", _images(), meta=_meta())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.safetensors"]
    np.testing.assert_array_equal(load_flow_images(path, expect_meta=_meta()), old)


def test_import_is_light() -> None:
    """Listing FLOW_METHODS (``--help``) must not import OpenCV."""
    code = "import sys, openvocab.io.flow as f; assert f.FLOW_METHODS.names(); assert 'cv2' not in sys.modules, 'cv2 imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
