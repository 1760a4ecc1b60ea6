"""Batched CLIP preprocessing: equivalence with transformers' CLIPImageProcessor, exact crop positions, shapes."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from openvocab.errors import InputError
from openvocab.io.transforms import CLIP_MEAN, CLIP_STD, crop_offsets, preprocess_frames

# Measured against CLIPImageProcessor (PIL bicubic, uint8 rounding after resize), normalised units:
# mean |diff| 0.0033-0.0041 and 99th percentile 0.010-0.013 (one uint8 level is 1/255/0.27 = 0.0146);
# the max sits on hard edges (~0.17). Exact (< 1e-6) when no resize is needed.
MEAN_TOLERANCE = 0.006
P99_TOLERANCE = 0.02


def _realish(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random texture + gradient + a hard-edged disc: natural-image-like statistics."""
    rng = np.random.default_rng(seed)
    base = rng.random((height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    img = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 1) * 200 + np.linspace(0, 55, width)[None, :, None]
    img = img.astype(np.uint8)
    cv2.circle(img, (width // 2, height // 3), min(height, width) // 5, (250, 30, 20), -1)
    return img


def _clip_processor():
    transformers = pytest.importorskip("transformers")
    logging.getLogger("transformers").setLevel(logging.ERROR)  # "torchvision missing, using PIL backend"
    return transformers.CLIPImageProcessor()


def _compare(processor, image: np.ndarray) -> tuple[float, float]:
    ref = processor(images=image, return_tensors="pt")["pixel_values"][0]
    ours = preprocess_frames(image[None])[0, 0]
    diff = (ref - ours).abs()
    return float(diff.mean()), float(diff.flatten().quantile(0.99))


@pytest.mark.parametrize(("height", "width"), [(240, 320), (480, 360), (100, 150), (224, 224), (720, 1280)])
def test_matches_clip_image_processor(height: int, width: int) -> None:
    processor = _clip_processor()
    mean_diff, p99 = _compare(processor, _realish(height, width, seed=height + width))
    assert mean_diff < MEAN_TOLERANCE, mean_diff
    assert p99 < P99_TOLERANCE, p99


def test_matches_clip_image_processor_on_real_frames(shared_data: Path) -> None:
    from openvocab.io.decode import open_video

    processor = _clip_processor()
    for name in ("yoga.mp4", "dog_barking.mp4", "asl_book.mkv"):
        frame = open_video(shared_data / "videos" / name).read([15]).frames[0]
        mean_diff, p99 = _compare(processor, frame)
        assert mean_diff < MEAN_TOLERANCE and p99 < P99_TOLERANCE, (name, mean_diff, p99)


def _normalised(pixels: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
    return (x - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)


def test_three_crops_positions_landscape_and_portrait() -> None:
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (2, 224, 300, 3), dtype=np.uint8)  # short side already 224: no resize
    out = preprocess_frames(wide, crops=3)
    assert out.shape == (3, 2, 3, 224, 224)
    for c, left in enumerate((0, 38, 76)):  # left, centre ((300-224)//2), right
        for n in range(2):
            torch.testing.assert_close(out[c, n], _normalised(wide[n, :, left : left + 224]))
    tall = rng.integers(0, 256, (1, 260, 224, 3), dtype=np.uint8)
    out = preprocess_frames(tall, crops=3)
    for c, top in enumerate((0, 18, 36)):  # top, centre, bottom
        torch.testing.assert_close(out[c, 0], _normalised(tall[0, top : top + 224]))
    centre = preprocess_frames(wide, crops=1)
    assert centre.shape == (1, 2, 3, 224, 224)
    torch.testing.assert_close(centre[0], preprocess_frames(wide, crops=3)[1])


def test_three_crops_after_resize_cover_the_long_side() -> None:
    img = np.zeros((1, 200, 400, 3), np.uint8)
    img[:, :, :100] = 255  # white left quarter, black elsewhere
    out = preprocess_frames(img, size=32, crops=3)  # resized to 32x64: crops at x = 0, 16, 32
    white = (255 / 255.0 - CLIP_MEAN[0]) / CLIP_STD[0]
    black = (0 - CLIP_MEAN[0]) / CLIP_STD[0]
    assert out[0, 0, 0, :, :6].mean() == pytest.approx(white, abs=1e-3)  # left crop starts in the white part
    assert out[2, 0, 0].max() == pytest.approx(black, abs=1e-3)  # right crop is all black
    assert crop_offsets(32, 64, 32, 3) == [(0, 0), (0, 16), (0, 32)]
    assert crop_offsets(64, 32, 32, 3) == [(0, 0), (16, 0), (32, 0)]
    assert crop_offsets(32, 32, 32, 3) == [(0, 0)] * 3


def test_output_shape_dtype_and_inputs() -> None:
    frames = np.random.default_rng(1).integers(0, 256, (5, 90, 120, 3), dtype=np.uint8)
    out = preprocess_frames(frames, size=64)
    assert out.shape == (1, 5, 3, 64, 64) and out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(preprocess_frames(torch.from_numpy(frames), size=64), out)
    bigger = preprocess_frames(frames, size=64, resize_short_side=72, crops=3)
    assert bigger.shape == (3, 5, 3, 64, 64)
    lo = (0 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    hi = (1 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    assert float(out.min()) >= lo.min() - 1e-5 and float(out.max()) <= hi.max() + 1e-5  # clamped after bicubic
    custom = preprocess_frames(frames, size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert float(custom.min()) >= -1 - 1e-5 and float(custom.max()) <= 1 + 1e-5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frames": np.zeros((2, 8, 8), np.uint8)},
        {"frames": np.zeros((2, 8, 8, 3), np.float32)},
        {"frames": np.zeros((0, 8, 8, 3), np.uint8)},
        {"frames": [[1, 2, 3]]},
        {"frames": np.zeros((1, 8, 8, 3), np.uint8), "crops": 2},
        {"frames": np.zeros((1, 8, 8, 3), np.uint8), "size": 0},
        {"frames": np.zeros((1, 8, 8, 3), np.uint8), "size": 8, "resize_short_side": 4},
    ],
)
def test_bad_input_raises_input_error(kwargs) -> None:
    frames = kwargs.pop("frames")
    with pytest.raises(InputError):
        preprocess_frames(frames, **kwargs)
