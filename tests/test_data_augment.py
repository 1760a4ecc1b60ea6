"""Text4Vis Table A.3 training augmentation: determinism, temporal consistency, and each op against a reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openvocab.data.augment import (
    RANDAUGMENT_OPS,
    AugmentParams,
    AugmentSpec,
    VideoAugment,
    apply_op,
    eval_transform,
    randaugment_value,
    sample_crop_box,
)
from openvocab.errors import InputError
from openvocab.io.transforms import CLIP_MEAN, CLIP_STD, preprocess_frames

MEAN = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255.0
STD = torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255.0
SHIFT_PRESERVING = ("Identity", "Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Color", "Sharpness")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def denorm(y: torch.Tensor) -> torch.Tensor:
    return y * STD + MEAN


def random_clip(t: int = 4, h: int = 72, w: int = 96, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8))


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A (H, W, 3) uint8 image with gradients and noise (non-trivial histograms)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 40 + 150 * (xx / max(w - 1, 1)) * (0.5 + 0.5 * yy / max(h - 1, 1))
    img = base[..., None] + rng.normal(0, 12, (h, w, 3)) + np.array([0, 15, -15])
    return np.clip(img, 0, 255).round().astype(np.uint8)


def as_clip(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float with integer values, the op input format."""
    return torch.from_numpy(img).permute(2, 0, 1)[None].float()


def as_image(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).numpy()


# ------------------------------------------------------------------ pipeline


def test_same_seed_same_output_and_seeds_differ():
    aug = VideoAugment()
    clip = random_clip()
    a = aug(clip, generator=gen(3))
    b = aug(clip, generator=gen(3))
    assert torch.equal(a, b)
    outs = [aug(clip, generator=gen(s)) for s in range(4, 8)]
    assert any(not torch.equal(a, o) for o in outs)


def test_output_shape_dtype_layouts_and_normalisation():
    aug = VideoAugment(AugmentSpec(size=32))
    clip = random_clip(t=3)
    out = aug(clip, generator=gen(0))
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.float32
    # channels-first and numpy inputs give the same result for the same generator state
    assert torch.equal(aug(clip.permute(0, 3, 1, 2), generator=gen(0)), out)
    assert torch.equal(aug(clip.numpy(), generator=gen(0)), out)
    # a flat grey clip without colour ops normalises to (v/255 - mean)/std exactly
    spec = AugmentSpec(size=16, randaugment_n=0, gray_p=0.0)
    flat = torch.full((2, 20, 30, 3), 128, dtype=torch.uint8)
    y = VideoAugment(spec)(flat, generator=gen(1))
    expected = ((128.0 - MEAN) / STD).expand_as(y)
    assert torch.allclose(y, expected, atol=1e-5)


def test_identical_frames_stay_identical():
    frame = random_clip(t=1, h=60, w=80, seed=5)
    clip = frame.expand(5, -1, -1, -1).contiguous()
    aug = VideoAugment(AugmentSpec(size=48))
    for seed in range(12):  # covers many op combinations, including the data-dependent ones
        out = aug(clip, generator=gen(seed))
        assert all(torch.equal(out[0], out[t]) for t in range(1, 5)), seed


def test_data_dependent_ops_use_one_lut_for_the_clip():
    frame = smooth_image(24, 32)
    clip = torch.from_numpy(np.stack([frame, frame // 2 + 20])).permute(0, 3, 1, 2).float()
    for op in ("AutoContrast", "Equalize", "Contrast"):
        value = randaugment_value(op, 9, size=32)
        out = apply_op(clip, op, value)
        # equal input values map to equal output values in every frame (one lookup table per channel)
        for c in range(3):
            xs, ys = clip[:, c].reshape(-1), out[:, c].reshape(-1)
            for v in torch.unique(xs)[::7]:
                assert torch.unique(ys[xs == v]).numel() == 1, (op, c, v)


def test_brightness_shift_between_frames_is_preserved():
    rng = np.random.default_rng(0)
    grey = rng.integers(60, 150, (1, 80, 96, 1))
    base = np.clip(grey + rng.integers(-10, 11, (1, 80, 96, 3)), 0, 255)
    shifts = np.array([0, 8, 16, 24]).reshape(4, 1, 1, 1)
    clip = torch.from_numpy((base + shifts).astype(np.uint8))
    spec = AugmentSpec(size=64, randaugment_ops=SHIFT_PRESERVING, gray_p=0.5, randaugment_m=12)
    aug = VideoAugment(spec)
    for seed in range(10):
        out = denorm(aug(clip, generator=gen(seed)))
        # exclude the constant fill of rotate/shear/translate (not shifted) and, eroded by one pixel, the pixels
        # Sharpness's 3x3 blur mixed with it
        inside = (out[0] > 10).all(dim=0, keepdim=True).float()
        valid = (-torch.nn.functional.max_pool2d(-inside[None], 3, stride=1, padding=1))[0].bool().expand(3, -1, -1)
        assert valid.float().mean() > 0.4
        for t in range(1, 4):
            diff = (out[t] - out[0])[valid]
            assert (diff - 8 * t).abs().max() <= 1.5, (seed, t)


def test_flip_mirrors_and_grayscale_equalises_channels():
    clip = random_clip(t=2, h=40, w=40)
    base = {"size": 40, "scale": (1.0, 1.0), "ratio": (1.0, 1.0), "randaugment_n": 0}
    flipped = VideoAugment(AugmentSpec(flip_p=1.0, gray_p=0.0, **base))(clip, generator=gen(0))
    expected = (clip.permute(0, 3, 1, 2).float().flip(-1) - MEAN) / STD
    assert torch.allclose(flipped, expected, atol=1e-5)
    kept = VideoAugment(AugmentSpec(flip_p=0.0, gray_p=0.0, **base))(clip, generator=gen(0))
    assert torch.allclose(kept, (clip.permute(0, 3, 1, 2).float() - MEAN) / STD, atol=1e-5)
    grey = denorm(VideoAugment(AugmentSpec(flip_p=0.0, gray_p=1.0, **base))(clip, generator=gen(0)))
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-3) and torch.allclose(grey[:, 0], grey[:, 2], atol=1e-3)
    rgb = clip.permute(0, 3, 1, 2).float()
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert torch.allclose(grey[:, 0], luma, atol=1e-3)


def test_sample_and_apply_share_one_draw_across_modalities():
    aug = VideoAugment(AugmentSpec(size=32))
    rgb, other = random_clip(t=2, seed=1), random_clip(t=2, seed=2)
    params = aug.sample(72, 96, generator=gen(9))
    assert isinstance(params, AugmentParams) and len(params.ops) == 2
    assert torch.equal(aug(rgb, generator=gen(9)), aug.apply(rgb, params))
    # pixel-wise ops: one draw applied to two inputs equals applying it to their concatenation
    fixed = AugmentParams(crop=(5, 7, 50, 60), flip=True, ops=(("Rotate", 9.0), ("Solarize", 178.5)), gray=True)
    joint = aug.apply(torch.cat([rgb, other]), fixed)
    assert torch.equal(joint[:2], aug.apply(rgb, fixed)) and torch.equal(joint[2:], aug.apply(other, fixed))
    with pytest.raises(InputError):
        aug.apply(rgb, AugmentParams(crop=(0, 0, 100, 100), flip=False))


def test_crop_box_bounds_area_and_ratio():
    g = gen(0)
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    for h, w in [(240, 320), (360, 640), (224, 224), (100, 60)]:
        for _ in range(300):
            top, left, bh, bw = sample_crop_box(h, w, scale=scale, ratio=ratio, generator=g)
            assert 0 <= top and 0 <= left and bh > 0 and bw > 0 and top + bh <= h and left + bw <= w
            area = bh * bw / (h * w)
            # rounding of the box sides to whole pixels can move the area/ratio slightly outside the range
            tol = 2.5 / min(bh, bw)
            assert scale[0] * (1 - tol) <= area <= scale[1] * (1 + tol)
            assert ratio[0] * (1 - tol) <= bw / bh <= ratio[1] * (1 + tol)
    # no admissible box: the fallback is the largest centred box with the aspect ratio clamped into range
    assert sample_crop_box(50, 100, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=g) == (0, 25, 50, 50)
    assert sample_crop_box(60, 60, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=g) == (0, 0, 60, 60)


def test_spec_validation_and_video_preset():
    for bad in (
        {"size": 0},
        {"scale": (0.5, 0.2)},
        {"ratio": (0.0, 1.0)},
        {"flip_p": 1.5},
        {"randaugment_m": 31},
        {"randaugment_ops": ("Warp",)},
        {"interpolation": "area"},
    ):
        with pytest.raises(InputError):
            AugmentSpec(**bad)
    assert AugmentSpec.for_video().scale == (0.25, 1.0)
    with pytest.raises(InputError):
        VideoAugment()(torch.zeros(2, 8, 8, 3), generator=gen(0))  # float, not uint8


def test_eval_transform_delegates():
    clip = random_clip(t=2, h=50, w=70)
    assert torch.equal(eval_transform(clip, size=32, crops=3), preprocess_frames(clip, size=32, crops=3))
    assert torch.equal(eval_transform(clip.permute(0, 3, 1, 2), size=32), preprocess_frames(clip, size=32))


# ------------------------------------------------------------------ individual RandAugment ops


def test_magnitude_mapping_at_m9():
    assert randaugment_value("Rotate", 9, size=224) == pytest.approx(9.0)
    assert randaugment_value("Rotate", 9, size=224, negative=True) == pytest.approx(-9.0)
    assert randaugment_value("Solarize", 9, size=224) == pytest.approx(178.5)
    assert randaugment_value("Solarize", 9, size=224, negative=True) == pytest.approx(178.5)
    assert randaugment_value("Posterize", 9, size=224) == 7
    assert randaugment_value("Posterize", 30, size=224) == 4
    for op in ("Color", "Contrast", "Brightness", "Sharpness"):
        assert randaugment_value(op, 9, size=224) == pytest.approx(1.27)
        assert randaugment_value(op, 9, size=224, negative=True) == pytest.approx(0.73)
    assert randaugment_value("ShearX", 9, size=224) == pytest.approx(0.09)
    assert randaugment_value("TranslateY", 9, size=224, negative=True) == -30
    assert all(randaugment_value(op, 9, size=224) is None for op in ("Identity", "AutoContrast", "Equalize"))
    assert len(RANDAUGMENT_OPS) == 14


def test_solarize_posterize_brightness_against_numpy():
    img = smooth_image(16, 20, seed=1).astype(np.float64)
    x = as_clip(img.astype(np.uint8))
    assert np.array_equal(as_image(apply_op(x, "Solarize", 178.5)), np.where(img >= 178.5, 255 - img, img))
    assert np.array_equal(as_image(apply_op(x, "Posterize", 5.0)), (img.astype(np.uint8) & 0b11111000).astype(np.float64))
    assert np.array_equal(as_image(apply_op(x, "Brightness", 1.27)), np.clip(np.round(img * 1.27), 0, 255))
    assert np.array_equal(as_image(apply_op(x, "Identity", None)), img)


@pytest.mark.parametrize(
    "op, value",
    [
        ("Solarize", 178.5),
        ("Posterize", 6.0),
        ("Equalize", None),
        ("AutoContrast", None),
        ("Brightness", 1.27),
        ("Brightness", 0.73),
        ("Color", 1.27),
        ("Color", 0.73),
        ("Contrast", 1.27),
        ("Contrast", 0.73),
        ("Sharpness", 1.27),
        ("Sharpness", 0.73),
    ],
)
def test_colour_ops_match_pil(op, value):
    pil = pytest.importorskip("PIL.Image")
    from PIL import ImageEnhance, ImageOps

    img = smooth_image(20, 28, seed=2)
    im = pil.fromarray(img)
    ref = {
        "Solarize": lambda: ImageOps.solarize(im, threshold=value),
        "Posterize": lambda: ImageOps.posterize(im, int(value)),
        "Equalize": lambda: ImageOps.equalize(im),
        "AutoContrast": lambda: ImageOps.autocontrast(im),
        "Brightness": lambda: ImageEnhance.Brightness(im).enhance(value),
        "Color": lambda: ImageEnhance.Color(im).enhance(value),
        "Contrast": lambda: ImageEnhance.Contrast(im).enhance(value),
        "Sharpness": lambda: ImageEnhance.Sharpness(im).enhance(value),
    }[op]()
    ours = as_image(apply_op(as_clip(img), op, value))
    # PIL truncates blends to integers where we round: at most one grey level apart
    tol = 0 if op in ("Solarize", "Posterize", "Equalize") else 1
    assert np.abs(ours - np.asarray(ref, dtype=np.float64)).max() <= tol


def test_rotate_matches_rot90():
    x = as_clip(smooth_image(12, 12, seed=3))
    assert torch.equal(apply_op(x, "Rotate", 90.0), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(apply_op(x, "Rotate", -90.0), torch.rot90(x, -1, (-2, -1)))
    assert torch.equal(apply_op(x, "Rotate", 180.0), torch.rot90(x, 2, (-2, -1)))
    small = apply_op(x, "Rotate", 9.0)
    assert small.shape == x.shape and small[0, :, 6, 6].equal(x[0, :, 6, 6])  # the centre stays put


@pytest.mark.parametrize("k", [3, -2])
def test_translate_by_k_pixels(k):
    img = as_clip(smooth_image(10, 14, seed=4))
    for op, axis in (("TranslateX", 3), ("TranslateY", 2)):
        out = apply_op(img, op, float(k))
        ref = torch.roll(img, shifts=k, dims=axis)
        index = torch.arange(img.shape[axis])
        vacated = (index < k) if k > 0 else (index >= img.shape[axis] + k)
        shape = [1, 1, 1, 1]
        shape[axis] = -1
        ref = torch.where(vacated.view(shape), torch.zeros_like(ref), ref)
        assert torch.equal(out, ref), op
    filled = apply_op(img, "TranslateX", float(k), fill=128)
    assert (filled[..., :k] if k > 0 else filled[..., k:]).eq(128).all()


def test_shear_against_numpy_nearest():
    img = smooth_image(8, 8, seed=5).astype(np.float64)
    x = as_clip(img.astype(np.uint8))
    v = 0.15
    h, w = img.shape[:2]
    for op in ("ShearX", "ShearY"):
        ref = np.zeros_like(img)
        for i in range(h):
            for j in range(w):
                xc, yc = j + 0.5 - w / 2, i + 0.5 - h / 2
                xi, yi = (xc + v * yc, yc) if op == "ShearX" else (xc, yc + v * xc)
                jj, ii = math.floor(xi + w / 2), math.floor(yi + h / 2)  # nearest pixel centre
                if 0 <= ii < h and 0 <= jj < w:
                    ref[i, j] = img[ii, jj]
        assert np.array_equal(as_image(apply_op(x, op, v)), ref), op
