"""Training augmentation of Text4Vis (Table A.3), in pure torch and temporally consistent.

Text4Vis Appendix B.1, Table A.3 ("Default training details for video recognition") lists the augmentation used
for every video dataset: *RandomSizedCrop* to 224, random horizontal flip 0.5, random grayscale 0.2 and
RandAugment with ``N = 2, M = 9``. MOV §4.2 applies "the standard image augmentation used on ImageNet with same
augmentation parameters across all frames to keep temporal consistency" (and the same augmentation to flow
images). Here one set of random parameters (:class:`AugmentParams`) is drawn per clip and applied to the whole
``(T, 3, H, W)`` batch at once: one crop box, one resize call, one flip decision, one RandAugment op sequence, one
grayscale decision. Data-dependent statistics (AutoContrast's range, Equalize's histogram, Contrast's mean grey)
are computed over the whole clip so every frame goes through the same lookup table; a clip of identical frames
therefore stays a clip of identical frames, and there is no per-frame flicker.

Pipeline (:class:`VideoAugment`): RandomResizedCrop -> horizontal flip -> RandAugment -> random grayscale ->
CLIP normalisation. The intermediate image is kept as integer values in ``[0, 255]`` (rounded and clamped after
the resize and after every RandAugment op), as for the 8-bit images the original ops were defined on.

RandAugment (Cubuk et al., 2020) ops and magnitude mappings, at the usual 31-bin scale where magnitude ``M``
means the fraction ``M/30`` of each op's maximum (torchvision's ``num_magnitude_bins=31``). "±" ops take the "−"
branch with probability 0.5. Values at Table A.3's ``M = 9`` in brackets:

- Identity, AutoContrast, Equalize: no magnitude.
- Rotate: ± 30·M/30 degrees, counter-clockwise positive [± 9°].
- Solarize: threshold 255·(1 − M/30); pixels ``>= threshold`` become ``255 − x`` [178.5].
- Posterize: keep 8 − round(4·M/30) high bits [7 bits].
- Color, Contrast, Brightness, Sharpness: enhance factor 1 ± 0.9·M/30 [0.73 or 1.27], PIL ImageEnhance
  semantics: blend with the grey image, the mean grey, black, or the 3×3 SMOOTH-filtered image.
- ShearX, ShearY: shear factor ± 0.3·M/30 [± 0.09].
- TranslateX, TranslateY: ± round(150/331 · size · M/30) pixels [± 30 px at size 224].

Geometric ops use ``affine_grid``/``grid_sample`` about the image centre with nearest sampling and a constant
fill (``AugmentSpec.fill``, default 0 as torchvision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from openvocab.errors import InputError
from openvocab.io.transforms import CLIP_MEAN, CLIP_STD, preprocess_frames

__all__ = [
    "IMAGENET_CROP_SCALE",
    "RANDAUGMENT_OPS",
    "VIDEO_CROP_SCALE",
    "AugmentParams",
    "AugmentSpec",
    "VideoAugment",
    "apply_op",
    "eval_transform",
    "randaugment_value",
    "sample_crop_box",
    "to_channels_first",
]

IMAGENET_CROP_SCALE: tuple[float, float] = (0.08, 1.0)
"""Area range of ImageNet's RandomResizedCrop ("RandomSizedCrop" of Text4Vis Table A.3): the default."""
VIDEO_CROP_SCALE: tuple[float, float] = (0.25, 1.0)
"""A milder area range common in video recipes (short clips lose the action when cropped to 8 % of the frame)."""

RANDAUGMENT_OPS: tuple[str, ...] = (
    "Identity",
    "AutoContrast",
    "Equalize",
    "Rotate",
    "Solarize",
    "Color",
    "Posterize",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
)
_SIGNED = frozenset({"Rotate", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY"})
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's convert("L")


@dataclass(frozen=True)
class AugmentSpec:
    """Options of the Text4Vis training augmentation (Table A.3 defaults).

    ``scale`` is the crop's area range as a fraction of the frame: ``(0.08, 1.0)`` is ImageNet's RandomResizedCrop
    (what Table A.3's "RandomSizedCrop" names); :data:`VIDEO_CROP_SCALE` ``(0.25, 1.0)`` is a milder option
    (:meth:`for_video`). ``ratio`` is the aspect-ratio range (sampled log-uniformly). ``randaugment_ops``
    restricts the op list (default: all 14 of :data:`RANDAUGMENT_OPS`). ``interpolation`` is the crop resize
    mode ("bilinear" or "bicubic", antialiased); ``fill`` is the 0..255 value geometric ops leave outside the image.
    """

    size: int = 224
    scale: tuple[float, float] = IMAGENET_CROP_SCALE
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    gray_p: float = 0.2
    randaugment_n: int = 2
    randaugment_m: int = 9
    randaugment_ops: tuple[str, ...] = RANDAUGMENT_OPS
    interpolation: str = "bilinear"
    fill: int = 0
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise InputError(f"augment size must be a positive integer, got {self.size!r}")
        lo, hi = self.scale
        if not 0.0 < lo <= hi <= 1.0:
            raise InputError(f"augment scale must satisfy 0 < min <= max <= 1, got {self.scale!r}")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise InputError(f"augment ratio must satisfy 0 < min <= max, got {self.ratio!r}")
        for name in ("flip_p", "gray_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise InputError(f"augment {name} must be in [0, 1], got {p!r}")
        if self.randaugment_n < 0:
            raise InputError(f"randaugment_n must be >= 0, got {self.randaugment_n!r}")
        if not 0 <= self.randaugment_m <= 30:
            raise InputError(f"randaugment_m must be in [0, 30], got {self.randaugment_m!r}")
        unknown = [op for op in self.randaugment_ops if op not in RANDAUGMENT_OPS]
        if unknown or (self.randaugment_n > 0 and not self.randaugment_ops):
            raise InputError(f"unknown or empty RandAugment ops {unknown!r}; choose from {', '.join(RANDAUGMENT_OPS)}")
        if self.interpolation not in ("bilinear", "bicubic"):
            raise InputError(f"augment interpolation must be 'bilinear' or 'bicubic', got {self.interpolation!r}")
        if not 0 <= self.fill <= 255:
            raise InputError(f"augment fill must be in [0, 255], got {self.fill!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise InputError("augment mean and std must have 3 values each, std positive")

    @classmethod
    def for_video(cls, **overrides: object) -> AugmentSpec:
        """The Table A.3 recipe with the milder video crop area range :data:`VIDEO_CROP_SCALE`."""
        return cls(**{"scale": VIDEO_CROP_SCALE, **overrides})  # type: ignore[arg-type]


@dataclass(frozen=True)
class AugmentParams:
    """One clip's random draw: applied identically to every frame (and to flow images of the same clip, MOV §4.2).

    ``crop``: ``(top, left, height, width)`` in input pixels; ``ops``: ``(name, value)`` pairs of RandAugment in
    application order, ``value`` as in the module table (``None`` for ops without magnitude).
    """

    crop: tuple[int, int, int, int]
    flip: bool
    ops: tuple[tuple[str, float | None], ...] = field(default_factory=tuple)
    gray: bool = False


def _uniform(generator: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _randint(generator: torch.Generator, high: int) -> int:
    """Uniform integer in ``[0, high)``."""
    return int(torch.randint(high, (), generator=generator))


def sample_crop_box(
    height: int, width: int, *, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator, attempts: int = 10
) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box ``(top, left, h, w)`` (Szegedy et al. 2015; ImageNet "RandomSizedCrop").

    Up to ``attempts`` draws of an area fraction uniform in ``scale`` and an aspect ratio ``w/h`` log-uniform in
    ``ratio``; the first box that fits is placed uniformly. If none fits, the fallback is the largest centred box
    whose aspect ratio is clamped to ``ratio``.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target = area * _uniform(generator, *scale)
        aspect = math.exp(_uniform(generator, log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = _randint(generator, height - h + 1)
            left = _randint(generator, width - w + 1)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def randaugment_value(op: str, magnitude: int, *, size: int, negative: bool = False) -> float | None:
    """Value of ``op`` at RandAugment magnitude ``magnitude`` (0..30), see the module table.

    ``negative`` picks the "−" branch of the ± ops (for the enhance ops the factor ``1 − 0.9·M/30``); it is
    ignored by unsigned ops.
    """
    frac = (-1.0 if negative and op in _SIGNED else 1.0) * magnitude / 30.0
    if op in ("Identity", "AutoContrast", "Equalize"):
        return None
    if op == "Rotate":
        return 30.0 * frac
    if op == "Solarize":
        return 255.0 * (1.0 - frac)
    if op == "Posterize":
        return float(8 - round(4.0 * frac))
    if op in ("Color", "Contrast", "Brightness", "Sharpness"):
        return 1.0 + 0.9 * frac
    if op in ("ShearX", "ShearY"):
        return 0.3 * frac
    if op in ("TranslateX", "TranslateY"):
        return float(round(150.0 / 331.0 * size * frac))
    raise InputError(f"unknown RandAugment op {op!r}")


# ---------------------------------------------------------------- ops on (T, 3, H, W) float, integer values 0..255


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0.0, 255.0)


def _blend(image: torch.Tensor, degenerate: torch.Tensor | float, factor: float) -> torch.Tensor:
    """PIL ImageEnhance: ``degenerate + factor · (image − degenerate)``, rounded and clamped to 8 bits."""
    return _quantise(degenerate + factor * (image - degenerate))


def _gray(x: torch.Tensor, *, rounded: bool) -> torch.Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` as ``(T, 1, H, W)``; rounded like PIL's ``convert("L")``."""
    w = torch.tensor(_GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    g = (x * w).sum(dim=1, keepdim=True)
    return g.round_() if rounded else g


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each channel's clip-wide [min, max] to [0, 255]; constant channels are left alone."""
    lo = x.amin(dim=(0, 2, 3), keepdim=True)
    hi = x.amax(dim=(0, 2, 3), keepdim=True)
    span = hi - lo
    scale = torch.where(span > 0, 255.0 / span.clamp_min(1e-12), torch.ones_like(span))
    lo = torch.where(span > 0, lo, torch.zeros_like(lo))
    return _quantise((x - lo) * scale)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.equalize`` with one histogram per channel over the whole clip."""
    xi = x.to(torch.long)
    out = torch.empty_like(x)
    for c in range(3):
        channel = xi[:, c]
        hist = torch.bincount(channel.reshape(-1), minlength=256)
        last = hist[hist.nonzero()[-1]].item()
        step = (int(hist.sum()) - last) // 255
        if step == 0:
            out[:, c] = x[:, c]
            continue
        before = torch.cumsum(hist, 0) - hist  # pixels strictly below each level
        lut = ((before + step // 2) // step).clamp_(max=255).to(x.dtype)
        out[:, c] = lut[channel]
    return out


def _sharpness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with PIL's SMOOTH filter (3×3, centre 5, others 1, /13); border pixels keep their values."""
    _t, c, h, w = x.shape
    if h < 3 or w < 3:
        return x.clone()
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    blurred = x.clone()
    blurred[:, :, 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c).round_()
    return _blend(x, blurred, factor)


def _affine(x: torch.Tensor, matrix: tuple[float, float, float, float], offset: tuple[float, float], *, fill: int) -> torch.Tensor:
    """Resample with the inverse map ``p_in = A p_out + b`` in centred pixel coordinates (x right, y down).

    ``affine_grid`` works in normalised coordinates (``2 p / W`` for x, ``2 p / H`` for y, ``align_corners=False``),
    so ``A`` and ``b`` are rescaled accordingly; one theta serves every frame of the clip. Nearest sampling.
    """
    t, c, h, w = x.shape
    a, b, cc, d = matrix
    theta = torch.tensor([[a, b * h / w, 2.0 * offset[0] / w], [cc * w / h, d, 2.0 * offset[1] / h]], dtype=x.dtype, device=x.device).expand(t, 2, 3)
    grid = F.affine_grid(theta, [t, c, h, w], align_corners=False)
    if fill == 0:
        return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    ones = torch.ones_like(x[:, :1])
    out = F.grid_sample(torch.cat([x, ones], dim=1), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    inside = out[:, 3:]
    return out[:, :3] * inside + float(fill) * (1.0 - inside)


def apply_op(x: torch.Tensor, op: str, value: float | None, *, fill: int = 0) -> torch.Tensor:
    """Apply one RandAugment op with its signed ``value`` (module table) to a clip.

    ``x``: float ``(T, 3, H, W)`` holding integer values in ``[0, 255]``; returns a new tensor of the same kind.
    Rotate is counter-clockwise for positive degrees (``+90`` equals ``torch.rot90(x, 1, (-2, -1))``); ShearX maps
    output ``(x, y)`` to input ``(x + v·y, y)`` about the centre; TranslateX by ``+k`` moves content ``k`` pixels
    right (TranslateY: down).
    """
    if op == "Identity":
        return x.clone()
    if op == "AutoContrast":
        return _autocontrast(x)
    if op == "Equalize":
        return _equalize(x)
    if value is None:
        raise InputError(f"RandAugment op {op!r} needs a value")
    v = float(value)
    if op == "Solarize":
        return torch.where(x >= v, 255.0 - x, x)
    if op == "Posterize":
        step = float(2 ** (8 - int(v)))
        return torch.floor(x / step) * step
    if op == "Brightness":
        return _blend(x, 0.0, v)
    if op == "Color":
        return _blend(x, _gray(x, rounded=True), v)
    if op == "Contrast":
        return _blend(x, _gray(x, rounded=True).mean().round(), v)
    if op == "Sharpness":
        return _sharpness(x, v)
    if op == "Rotate":
        cos, sin = math.cos(math.radians(v)), math.sin(math.radians(v))
        return _affine(x, (cos, -sin, sin, cos), (0.0, 0.0), fill=fill)
    if op == "ShearX":
        return _affine(x, (1.0, v, 0.0, 1.0), (0.0, 0.0), fill=fill)
    if op == "ShearY":
        return _affine(x, (1.0, 0.0, v, 1.0), (0.0, 0.0), fill=fill)
    if op == "TranslateX":
        return _affine(x, (1.0, 0.0, 0.0, 1.0), (-v, 0.0), fill=fill)
    if op == "TranslateY":
        return _affine(x, (1.0, 0.0, 0.0, 1.0), (0.0, -v), fill=fill)
    raise InputError(f"unknown RandAugment op {op!r}")


# ---------------------------------------------------------------- the clip-level pipeline


def to_channels_first(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` or ``(T, 3, H, W)`` (numpy or torch) -> uint8 tensor ``(T, 3, H, W)``.

    A shape that fits both layouts (``H == 3``) is read as channels-last, the layout decoders produce.
    """
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise InputError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
    if frames.dtype != torch.uint8:
        raise InputError(f"frames must be uint8 RGB, got {frames.dtype}")
    if frames.ndim != 4 or 3 not in (frames.shape[1], frames.shape[-1]):
        raise InputError(f"frames must have shape (T, H, W, 3) or (T, 3, H, W), got {tuple(frames.shape)}")
    x = frames.permute(0, 3, 1, 2) if frames.shape[-1] == 3 else frames
    if 0 in x.shape:
        raise InputError(f"frames must be non-empty, got shape {tuple(frames.shape)}")
    return x


class VideoAugment:
    """Text4Vis Table A.3 training augmentation, one random draw per clip (MOV §4.2 temporal consistency).

    ``augment(frames, generator=g)`` -> float32 ``(T, 3, size, size)``, CLIP-normalised. All randomness comes from
    ``generator``: the same generator state gives the same output, so a resumed run replays its augmentations.
    Use :meth:`sample` + :meth:`apply` to apply one draw to several aligned inputs (RGB frames and flow images).
    """

    def __init__(self, spec: AugmentSpec | None = None) -> None:
        self.spec = spec if spec is not None else AugmentSpec()
        self._mean = torch.tensor(self.spec.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(self.spec.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0

    def __repr__(self) -> str:
        return f"VideoAugment({self.spec!r})"

    def sample(self, height: int, width: int, *, generator: torch.Generator) -> AugmentParams:
        """Draw one clip's parameters for ``height × width`` input frames."""
        s = self.spec
        crop = sample_crop_box(height, width, scale=s.scale, ratio=s.ratio, generator=generator)
        flip = _uniform(generator) < s.flip_p
        ops: list[tuple[str, float | None]] = []
        for _ in range(s.randaugment_n):
            name = s.randaugment_ops[_randint(generator, len(s.randaugment_ops))]
            negative = name in _SIGNED and _uniform(generator) < 0.5
            ops.append((name, randaugment_value(name, s.randaugment_m, size=s.size, negative=negative)))
        gray = _uniform(generator) < s.gray_p
        return AugmentParams(crop=crop, flip=flip, ops=tuple(ops), gray=gray)

    def apply(self, frames: np.ndarray | torch.Tensor, params: AugmentParams, *, normalise: bool = True) -> torch.Tensor:
        """Apply ``params`` to every frame: crop+resize, flip, RandAugment ops, grayscale, then normalise.

        ``normalise=False`` returns the augmented 0..255 float image instead of CLIP-normalised values.
        """
        x = to_channels_first(frames)
        top, left, h, w = params.crop
        _, _, height, width = x.shape
        if not (0 <= top and 0 <= left and 0 < h and 0 < w and top + h <= height and left + w <= width):
            raise InputError(f"crop box {params.crop} does not fit {width}x{height} frames")
        size = self.spec.size
        y = x[:, :, top : top + h, left : left + w].to(torch.float32)
        if (h, w) != (size, size):
            y = F.interpolate(y, size=(size, size), mode=self.spec.interpolation, antialias=True, align_corners=False)
        y = _quantise(y)
        if params.flip:
            y = y.flip(-1)
        for name, value in params.ops:
            y = apply_op(y, name, value, fill=self.spec.fill)
        if params.gray:
            y = _gray(y, rounded=False).expand(-1, 3, -1, -1)
        if not normalise:
            return y.contiguous()
        return ((y - self._mean) / self._std).contiguous()

    def __call__(self, frames: np.ndarray | torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Augment one clip: uint8 ``(T, H, W, 3)`` or ``(T, 3, H, W)`` -> float32 ``(T, 3, size, size)``."""
        x = to_channels_first(frames)
        params = self.sample(int(x.shape[2]), int(x.shape[3]), generator=generator)
        return self.apply(x, params)


def eval_transform(frames: np.ndarray | torch.Tensor, *, size: int = 224, crops: int = 1) -> torch.Tensor:
    """Test-time preprocessing: delegates to :func:`openvocab.io.transforms.preprocess_frames`.

    Text4Vis §4.1 "Inference": centre crop for single view, three crops for the multi-view protocol. Accepts the
    same layouts as :class:`VideoAugment`; returns ``(crops, T, 3, size, size)``.
    """
    x = to_channels_first(frames).permute(0, 2, 3, 1)
    return preprocess_frames(x, size=size, crops=crops)
