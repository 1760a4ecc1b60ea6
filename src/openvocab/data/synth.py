"""A procedural synthetic video benchmark whose answers are known: shapes, colours, motions and tones.

Each clip shows one object (a shape, in a colour) doing one motion over a jittered grey background, optionally
with static clutter, pixel noise and a sine tone as the audio track. Classes are combinations of the *label
factors* and are named as natural phrases ("red circle moving left", "blue square growing", "moving up",
"low tone"); the other factors are random nuisances per clip. So:

* ``label_factors=("motion",)`` — single frames carry no label. Left/right, up/down and grow/shrink are time
  reverses of each other with the same distribution of per-frame positions and sizes, so an order-blind model
  (temporal average pooling of frame features) cannot separate them; a temporal model can;
* ``label_factors=("colour",)`` or ``("shape",)`` — any single frame is enough;
* ``label_factors=("tone",)`` — the label lives only in the audio; ``audio="class"`` duplicates any label there.

Every object carries a dark spot off its centre, so rotation is visible even for a circle. Clips are drawn with
vectorised NumPy (one (T, H, W) mask evaluation per clip) and encoded by :func:`openvocab.io.encode.write_video`.
Everything is a pure function of ``(spec, seed, class index, clip index)``: the same seed writes the same classes,
manifests and pixels.

:func:`generate` writes ``videos/<class_slug>/<i>.mp4``, ``classes.txt``, ``base_classes.txt``,
``novel_classes.txt``, ``train.csv``/``val.csv``/``test.csv`` (base classes only), ``novel_test.csv`` (every clip of
the novel classes) and ``splits.json``; the CSVs are :func:`~openvocab.data.manifests.read_manifest`'s format.

The multi-label variant (several objects per clip, one label per concept) is :mod:`openvocab.data.synth_multilabel`.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from openvocab.atomic import atomic_write
from openvocab.data.manifests import base_novel_split
from openvocab.errors import InputError
from openvocab.io.encode import write_video

if TYPE_CHECKING:  # pragma: no cover
    from openvocab.data.synth_multilabel import MultiLabelSpec

__all__ = [
    "COLOURS",
    "FACTORS",
    "MOTIONS",
    "SHAPES",
    "TONES",
    "SynthSpec",
    "class_phrase",
    "generate",
    "render_clip",
]

#: Object shapes (drawn in unit coordinates, "radius" 1).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star", "ring")
#: Colour name -> RGB. Kept far apart in hue so a jittered colour never looks like another.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 90, 230),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 200),
    "orange": (240, 140, 30),
    "cyan": (40, 200, 210),
    "white": (235, 235, 235),
}
#: Motion name -> its phrase in class names.
MOTIONS: dict[str, str] = {
    "left": "moving left",
    "right": "moving right",
    "up": "moving up",
    "down": "moving down",
    "rotate": "rotating",
    "grow": "growing",
    "shrink": "shrinking",
    "still": "standing still",
}
#: Tone name -> frequency in Hz (an audio-only factor).
TONES: dict[str, float] = {"low": 220.0, "middle": 440.0, "high": 880.0, "very high": 1760.0}
#: Factor names in the order they appear in class phrases.
FACTORS: tuple[str, ...] = ("colour", "shape", "motion", "tone")
_CHOICES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "motion": tuple(MOTIONS),
    "tone": tuple(TONES),
}
SAMPLE_RATE = 16000


def _as_tuple(value: object, *, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",")]
    items = tuple(" ".join(str(v).split()).lower() for v in value)  # type: ignore[union-attr]
    items = tuple(v for v in items if v)
    if len(set(items)) != len(items):
        raise InputError(f"synthetic {name} repeat a value: {', '.join(items)}")
    return items


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. Factor lists choose the values in play (classes for label factors, nuisances otherwise).

    ``label_factors``: which of colour/shape/motion/tone define the classes (their product, in :data:`FACTORS`
    order). ``audio``: None (no audio track), ``"class"`` (or True) (one tone per class, log-spaced 200-2000 Hz) or a factor
    name (one tone per value of that factor; ``"tone"`` uses :data:`TONES`). A ``"tone"`` label factor implies
    ``audio="tone"``. ``noise``: std of Gaussian pixel noise as a fraction of 255 (also hiss in the audio).
    ``clutter``: static distractor blobs per clip. ``object_size``: object radius range, fraction of the frame;
    ``travel``: translation distance range over the clip, fraction of the frame. ``val_fraction``/``test_fraction``
    of each base class's clips go to val/test (rounded); ``novel_fraction`` of the classes are held out as novel.
    """

    shapes: tuple[str, ...] = ("circle", "square")
    colours: tuple[str, ...] = ("red", "blue")
    motions: tuple[str, ...] = ("left", "right")
    tones: tuple[str, ...] = ("low", "high")
    label_factors: tuple[str, ...] = ("colour", "shape", "motion")
    clips_per_class: int = 10
    frames: int = 16
    fps: float = 8.0
    size: int = 64
    noise: float = 0.0
    clutter: int = 0
    audio: str | bool | None = None
    novel_fraction: float = 0.25
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    object_size: tuple[float, float] = (0.12, 0.18)
    travel: tuple[float, float] = (0.35, 0.5)

    def __post_init__(self) -> None:
        for name, factor in (("shapes", "shape"), ("colours", "colour"), ("motions", "motion"), ("tones", "tone")):
            values = _as_tuple(getattr(self, name), name=name)
            unknown = [v for v in values if v not in _CHOICES[factor]]
            if unknown or not values:
                what = f"unknown {factor} '{unknown[0]}'" if unknown else f"no {name}"
                raise InputError(f"{what}; choose from {', '.join(_CHOICES[factor])}")
            object.__setattr__(self, name, values)
        factors = _as_tuple(self.label_factors, name="label factors")
        bad = [f for f in factors if f not in FACTORS]
        if bad or not factors:
            raise InputError(f"label factors must be some of {', '.join(FACTORS)}, got {', '.join(factors) or 'none'}")
        object.__setattr__(self, "label_factors", tuple(f for f in FACTORS if f in factors))
        audio = "class" if self.audio is True else self.audio
        if "tone" in factors and audio in (None, "tone"):
            audio = "tone"
        elif "tone" in factors:
            raise InputError(f"a 'tone' label factor needs audio='tone' (got audio={audio!r})")
        if audio is not None and audio not in ("class", *FACTORS):
            raise InputError(f"audio must be None, 'class' or one of {', '.join(FACTORS)}, got {audio!r}")
        object.__setattr__(self, "audio", audio)
        for name in ("object_size", "travel"):  # accept lists (e.g. a spec read back from splits.json)
            lo, hi = (float(x) for x in getattr(self, name))
            object.__setattr__(self, name, (lo, hi))
        checks = [
            (self.clips_per_class >= 1, "clips_per_class must be >= 1"),
            (self.frames >= 2, "frames must be >= 2"),
            (self.fps > 0 and math.isfinite(self.fps), "fps must be positive"),
            (self.size >= 16 and self.size % 2 == 0, "size must be an even number >= 16"),
            (0 <= self.noise <= 1, "noise must be between 0 and 1 (a fraction of 255)"),
            (self.clutter >= 0, "clutter must be >= 0"),
            (0 <= self.novel_fraction < 1, "novel_fraction must be in [0, 1)"),
            (0 <= self.val_fraction and 0 <= self.test_fraction, "val/test fractions must be >= 0"),
            (0 < self.object_size[0] <= self.object_size[1] <= 0.3, "object_size must be 0 < lo <= hi <= 0.3"),
            (0 <= self.travel[0] <= self.travel[1] <= 0.6, "travel must be 0 <= lo <= hi <= 0.6"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"synthetic spec: {message}")
        if self.split_counts()["train"] < 1:
            raise InputError("synthetic spec: val/test fractions leave no training clip per class")

    def values(self, factor: str) -> tuple[str, ...]:
        """The values of ``factor`` in play."""
        return {"colour": self.colours, "shape": self.shapes, "motion": self.motions, "tone": self.tones}[factor]

    @property
    def clip_factors(self) -> tuple[str, ...]:
        """Factors each clip has: colour, shape, motion, and tone when the audio depends on it."""
        return FACTORS if self.audio == "tone" else FACTORS[:3]

    def class_factors(self) -> list[dict[str, str]]:
        """Per class (index order): its label-factor values, the product of the lists in :data:`FACTORS` order."""
        lists = [self.values(f) for f in self.label_factors]
        return [dict(zip(self.label_factors, combo)) for combo in itertools.product(*lists)]

    @property
    def num_classes(self) -> int:
        """Number of classes: the product of the label factors' value counts."""
        return math.prod(len(self.values(f)) for f in self.label_factors)

    def class_names(self) -> list[str]:
        """Class phrases in index order, e.g. ``"red circle moving left"``."""
        return [class_phrase(values) for values in self.class_factors()]

    def split_counts(self) -> dict[str, int]:
        """Clips per BASE class in train/val/test (novel classes put all their clips in ``novel_test``)."""
        n = self.clips_per_class
        val, test = math.floor(n * self.val_fraction + 0.5), math.floor(n * self.test_fraction + 0.5)  # half up
        return {"train": n - val - test, "val": val, "test": test}


def class_phrase(values: dict[str, str]) -> str:
    """The natural class name of some factor values: colour, then shape (``object`` when only the colour names
    it), then the motion phrase, then the tone: ``{"colour": "red", "motion": "left"}`` -> ``"red object moving
    left"``; ``{"motion": "grow"}`` -> ``"growing"``; ``{"tone": "low"}`` -> ``"low tone"``."""
    words: list[str] = []
    if "colour" in values:
        words.append(values["colour"])
    if "shape" in values:
        words.append(values["shape"])
    elif "colour" in values:
        words.append("object")
    if "motion" in values:
        words.append(MOTIONS[values["motion"]])
    if "tone" in values:
        words.append(f"with a {values['tone']} tone" if words else f"{values['tone']} tone")
    return " ".join(words)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


# --------------------------------------------------------------------------------------------------- drawing
def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of ``shape`` in unit object coordinates (arrays of any shape)."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "triangle":  # equilateral, circumradius 1.25: three half-planes at the inradius 0.625
        inside = np.ones(u.shape, dtype=bool)
        for angle in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6):
            inside &= u * math.cos(angle) + v * math.sin(angle) <= 0.625
        return inside
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.33) & (av <= 1.0)) | ((av <= 0.33) & (au <= 1.0))
    r = np.sqrt(u * u + v * v)
    if shape == "ring":
        return (r >= 0.55) & (r <= 1.05)
    if shape == "star":  # five points: radius goes 0.45 (between points) to 1.15 (tips)
        phase = np.mod(np.arctan2(v, u) * (5 / (2 * math.pi)), 1.0)
        return r <= 0.45 + 0.7 * np.abs(2 * phase - 1)
    raise InputError(f"unknown shape {shape!r}")


def _trajectory(motion: str, size: int, frames: int, spec: SynthSpec | MultiLabelSpec, rng: np.random.Generator):
    """Per-frame centre x, centre y, radius (pixels) and angle (radians), each shape (T,)."""
    t = np.linspace(0.0, 1.0, frames)
    radius = rng.uniform(*spec.object_size) * size
    angle0 = rng.uniform(0.0, 2 * math.pi)
    angle = np.full(frames, angle0)
    scale = np.full(frames, radius)
    margin = radius * 1.2

    def place(extent: float) -> float:
        lo, hi = margin, size - margin - extent
        return rng.uniform(lo, hi) if hi > lo else (size - extent) / 2

    if motion in ("left", "right", "up", "down"):
        dist = rng.uniform(*spec.travel) * size
        along = place(dist) + dist * t
        if motion in ("left", "up"):
            along = along[::-1].copy()
        across = np.full(frames, place(0.0))
        cx, cy = (along, across) if motion in ("left", "right") else (across, along)
    else:
        if motion in ("grow", "shrink"):
            factor = rng.uniform(1.8, 2.4)
            small = min(radius * 0.7, 0.4 * size / factor)
            scale = small * factor ** (t if motion == "grow" else 1.0 - t)
            margin = small * factor * 1.2
        elif motion == "rotate":
            turn = rng.uniform(0.5, 1.0) * 2 * math.pi * rng.choice([-1.0, 1.0])
            angle = angle0 + turn * t
        cx = np.full(frames, place(0.0))
        cy = np.full(frames, place(0.0))
    return cx, cy, scale, angle


def _background(spec: SynthSpec | MultiLabelSpec, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32: jittered dark grey plus ``spec.clutter`` static grey blobs."""
    size = spec.size
    grey = rng.uniform(40.0, 90.0)
    image = np.empty((size, size, 3), np.float32)
    image[:] = grey + rng.uniform(-12.0, 12.0, 3)
    if spec.clutter:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        for _ in range(spec.clutter):
            cx, cy = rng.uniform(0, size, 2)
            r = rng.uniform(0.03, 0.08) * size
            level = np.clip(grey + rng.uniform(-35.0, 60.0), 0, 255)
            if rng.random() < 0.5:
                blob = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            else:
                blob = np.maximum(np.abs(xx - cx), np.abs(yy - cy)) <= r
            image[blob] = level
    return image


def _tone_hz(spec: SynthSpec, class_index: int, num_classes: int, clip: dict[str, str]) -> float:
    if spec.audio == "class":
        return 200.0 * 10.0 ** (class_index / max(num_classes - 1, 1))
    if spec.audio == "tone":
        return TONES[clip["tone"]]
    values = spec.values(str(spec.audio))
    return 250.0 * 8.0 ** (values.index(clip[str(spec.audio)]) / max(len(values) - 1, 1))


def _object_masks(obj: dict[str, str], spec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One object's (T, H, W) body and spot masks and its jittered colour: its ``shape`` on its ``motion``'s trajectory
    (random draws: the trajectory, then the colour jitter)."""
    size, frames = spec.size, spec.frames
    cx, cy, scale, angle = _trajectory(obj["motion"], size, frames, spec, rng)
    coords = np.arange(size, dtype=np.float32) + 0.5
    dx = coords[None, None, :] - cx[:, None, None].astype(np.float32)
    dy = coords[None, :, None] - cy[:, None, None].astype(np.float32)
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    inv = (1.0 / scale).astype(np.float32)[:, None, None]
    u = (dx * cos + dy * sin) * inv
    v = (dy * cos - dx * sin) * inv
    body = _shape_mask(obj["shape"], u, v)
    spot_u, spot_r = (0.8, 0.25) if obj["shape"] == "ring" else (0.45, 0.3)
    spot = body & ((u - spot_u) ** 2 + v * v <= spot_r**2)
    colour = np.clip(np.asarray(COLOURS[obj["colour"]], np.float32) + rng.uniform(-15.0, 15.0, 3), 0, 255)
    return body, spot, colour


def render_clip(
    spec: SynthSpec,
    clip: dict[str, str],
    *,
    rng: np.random.Generator,
    tone_hz: float | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw one clip: ``clip`` gives its colour, shape and motion (and tone); returns ``(frames, audio)``, frames
    (T, H, W, 3) uint8 RGB and, when ``tone_hz`` is given, a mono float32 waveform at 16 kHz of the clip's length."""
    size, frames = spec.size, spec.frames
    body, spot, colour = _object_masks(clip, spec, rng)
    video = np.broadcast_to(_background(spec, rng), (frames, size, size, 3)).copy()
    video[body] = colour
    video[spot] = colour * 0.45
    if spec.noise > 0:
        video += rng.normal(0.0, spec.noise * 255.0, video.shape).astype(np.float32)
    video = np.clip(video + 0.5, 0, 255).astype(np.uint8)
    if tone_hz is None:
        return video, None
    count = round(frames / spec.fps * SAMPLE_RATE)
    seconds = np.arange(count, dtype=np.float64) / SAMPLE_RATE
    hz = tone_hz * rng.uniform(0.98, 1.02)
    wave = rng.uniform(0.25, 0.35) * np.sin(2 * math.pi * hz * seconds + rng.uniform(0, 2 * math.pi))
    fade = np.minimum(1.0, np.minimum(seconds, seconds[-1] - seconds) / 0.01)  # 10 ms ramps, no clicks
    wave = wave * fade
    if spec.noise > 0:
        wave = wave + rng.normal(0.0, spec.noise * 0.3, count)
    return video, np.clip(wave, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------- writing
def _csv_text(rows: list[list[str]], header: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _make_clip(job: tuple) -> tuple[str, dict[str, str]]:
    """Render and write clip ``i`` of class ``c``; returns (path relative to the output folder, factor values)."""
    spec, out, seed, c, i, name, fixed = job
    rng = np.random.default_rng([seed, c, i])
    clip = {f: fixed[f] if f in fixed else str(rng.choice(spec.values(f))) for f in spec.clip_factors}
    tone = None if spec.audio is None else _tone_hz(spec, c, spec.num_classes, clip)
    frames, audio = render_clip(spec, clip, rng=rng, tone_hz=tone)
    rel = f"videos/{_slug(name)}/{i:04d}.mp4"
    write_video(Path(out) / rel, frames, fps=spec.fps, audio=audio, sample_rate=SAMPLE_RATE)
    return rel, clip


def _collect(results, total: int, progress: Callable[[int, int], None] | None) -> list:
    made = []
    for done, item in enumerate(results, start=1):
        made.append(item)
        if progress is not None:
            progress(done, total)
    return made


def _run_jobs(make: Callable, jobs: list, *, workers: int, progress: Callable[[int, int], None] | None) -> list:
    """``[make(job) for job in jobs]``, in ``workers`` threads when > 1 (same results, in job order)."""
    total = len(jobs)
    if workers > 1 and total > 1:
        from concurrent.futures import ThreadPoolExecutor

        # Threads, not processes: FFmpeg's encoders and NumPy release the GIL for most of the work, and a process
        # pool would re-import the caller's __main__ (spawn) or copy its locks mid-use (fork).
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synth") as pool:
            return _collect(pool.map(make, jobs), total, progress)
    return _collect(map(make, jobs), total, progress)


def _check_run_args(seed: object, workers: object, out_dir: str | Path) -> Path:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError("output exists and is not a directory", path=out)
    return out


def _write_class_lists(out: Path, names: list[str], base: list[int], novel: list[int]) -> None:
    """``classes.txt`` (every class, index order), ``base_classes.txt`` and ``novel_classes.txt``, atomically."""
    atomic_write(out / "classes.txt", "".join(f"{n}\n" for n in names))
    atomic_write(out / "base_classes.txt", "".join(f"{names[i]}\n" for i in base))
    atomic_write(out / "novel_classes.txt", "".join(f"{names[i]}\n" for i in novel))


def generate(
    spec: SynthSpec,
    out_dir: str | Path,
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> Path:
    """Write the benchmark described by ``spec`` into ``out_dir`` (created) and return it. Deterministic per seed.

    Files: ``videos/<class_slug>/<i:04d>.mp4``; ``classes.txt`` (all classes, one per line, index order);
    ``base_classes.txt``/``novel_classes.txt``; ``train.csv``, ``val.csv``, ``test.csv`` (base classes) and
    ``novel_test.csv`` (all clips of the novel classes), each with columns ``path,label`` (path relative to
    ``out_dir``, label = class phrase) then the clip's factor values; ``splits.json`` (seed, spec, classes,
    base/novel names and indices into classes.txt, counts). Read a split with
    ``read_manifest(out/"train.csv", classes=out/"classes.txt")`` for indices into classes.txt, then
    ``.subset(base_indices)`` for a base-only head. ``progress(done, total)`` is called after each clip.
    Manifests are written atomically after all videos, so a complete manifest never lists a missing clip.
    ``workers > 1`` draws and encodes clips in that many threads (same output: each clip has its own seeded
    generator).
    """
    out = _check_run_args(seed, workers, out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    names = spec.class_names()
    factors = spec.class_factors()
    base, novel = base_novel_split(names, novel_fraction=spec.novel_fraction, seed=seed)
    novel_set = set(novel)
    counts = spec.split_counts()
    order = ["train"] * counts["train"] + ["val"] * counts["val"] + ["test"] * counts["test"]
    columns = list(spec.clip_factors)
    rows: dict[str, list[list[str]]] = {"train": [], "val": [], "test": [], "novel_test": []}
    jobs = []
    for c, (name, fixed) in enumerate(zip(names, factors)):
        (out / "videos" / _slug(name)).mkdir(parents=True, exist_ok=True)
        jobs.extend((spec, str(out), seed, c, i, name, fixed) for i in range(spec.clips_per_class))
    made = _run_jobs(_make_clip, jobs, workers=workers, progress=progress)
    for (_, _, _, c, i, _, _), (rel, clip) in zip(jobs, made):
        split = "novel_test" if c in novel_set else order[i]
        rows[split].append([rel, names[c], *(clip[f] for f in columns)])
    header = ["path", "label", *columns]
    for split, split_rows in rows.items():
        atomic_write(out / f"{split}.csv", _csv_text(split_rows, header))
    _write_class_lists(out, names, base, novel)
    meta = {
        "seed": seed,
        "spec": asdict(spec),
        "classes": names,
        "base": [names[i] for i in base],
        "novel": [names[i] for i in novel],
        "base_indices": base,
        "novel_indices": novel,
        "splits": {split: f"{split}.csv" for split in rows},
        "counts": {split: len(split_rows) for split, split_rows in rows.items()},
        "sample_rate": SAMPLE_RATE if spec.audio is not None else None,
    }
    atomic_write(out / "splits.json", json.dumps(meta, indent=2) + "\n")
    return out
