"""The multi-label synthetic benchmark (open-vocabulary multi-label; ``openvocab data synth --multi-label``): each
clip shows 1-3 objects at once, all of different shapes and colours (and different motions while there are enough),
and its labels are the CONCEPTS present, one label per concept, of three kinds (:func:`concept_label`): the shape name
(``"circle"``), the colour as ``"<colour> object"`` (``"red object"``) and the motion phrase (``"moving left"``). Some
concepts are held out (by default one shape and one colour, chosen by the seed): they never appear, neither drawn nor
labelled, in ``train``/``val``/``test.jsonl``; every ``novel_test.jsonl`` clip shows at least one of them, labelled with
all its concepts (held-out and seen). Objects are drawn exactly as :mod:`openvocab.data.synth` draws its one object.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from openvocab.atomic import atomic_write
from openvocab.data.synth import (
    _CHOICES,
    SHAPES,
    _as_tuple,
    _background,
    _check_run_args,
    _object_masks,
    _run_jobs,
    _write_class_lists,
    class_phrase,
)
from openvocab.errors import InputError
from openvocab.io.encode import write_video

__all__ = ["CONCEPT_FACTORS", "MULTILABEL_FILES", "MultiLabelSpec", "concept_label", "draw_multilabel_clip", "generate_multilabel", "render_objects"]

#: Concept kinds of the multi-label benchmark, in label (classes.txt) order.
CONCEPT_FACTORS: tuple[str, ...] = ("shape", "colour", "motion")
#: Split name -> the code in each clip's seed ``[seed, code, index]``.
_SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2, "novel_test": 3}
MULTILABEL_FILES: tuple[str, ...] = (
    "classes.txt",
    "base_classes.txt",
    "novel_classes.txt",
    "train.jsonl",
    "val.jsonl",
    "test.jsonl",
    "novel_test.jsonl",
    "splits.json",
)


def concept_label(factor: str, value: str) -> str:
    """The label of one concept: a shape is its name (``"circle"``), a colour ``"<colour> object"`` (``"red
    object"``), a motion its phrase (``"moving left"``, ``"rotating"``); the same phrases as :func:`class_phrase`
    gives a single factor."""
    if factor not in CONCEPT_FACTORS:
        raise InputError(f"concept kinds are {', '.join(CONCEPT_FACTORS)}, got {factor!r}")
    return class_phrase({factor: value})


@dataclass(frozen=True)
class MultiLabelSpec:
    """What :func:`generate_multilabel` draws. Defaults: 6 shapes × 6 colours × 4 motions (16 concepts), 1-3
    objects a clip, one shape and one colour held out, 160/40/40 train/val/test clips and 60 novel-test clips of
    64×64 px, 16 frames at 8 fps (~10 ms a clip to draw and encode on one core).

    ``shapes``/``colours``/``motions``: the concepts in play. ``min_objects``..``max_objects``: objects per clip
    (uniform), all of different shapes and different colours; motions differ too while there are enough of them.
    ``held_out_shapes``/``held_out_colours``/``held_out_motions``: how many concepts of each kind are held out
    (chosen by the seed, whatever the list order: the values ranked by SHA-256 of ``"<seed>:<kind>:<value>"``).
    ``*_clips``: clips per split. ``noise``, ``clutter``, ``object_size``, ``travel``: as in :class:`SynthSpec`
    (objects are a little smaller by default, to fit three).
    """

    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
    motions: tuple[str, ...] = ("left", "right", "up", "down")
    min_objects: int = 1
    max_objects: int = 3
    held_out_shapes: int = 1
    held_out_colours: int = 1
    held_out_motions: int = 0
    train_clips: int = 160
    val_clips: int = 40
    test_clips: int = 40
    novel_clips: int = 60
    frames: int = 16
    fps: float = 8.0
    size: int = 64
    noise: float = 0.0
    clutter: int = 0
    object_size: tuple[float, float] = (0.1, 0.14)
    travel: tuple[float, float] = (0.35, 0.5)

    def __post_init__(self) -> None:
        for name, factor in (("shapes", "shape"), ("colours", "colour"), ("motions", "motion")):
            values = _as_tuple(getattr(self, name), name=name)
            unknown = [v for v in values if v not in _CHOICES[factor]]
            if unknown or not values:
                what = f"unknown {factor} '{unknown[0]}'" if unknown else f"no {name}"
                raise InputError(f"{what}; choose from {', '.join(_CHOICES[factor])}")
            object.__setattr__(self, name, values)
        for name in ("object_size", "travel"):
            lo, hi = (float(x) for x in getattr(self, name))
            object.__setattr__(self, name, (lo, hi))
        ints = (
            "min_objects",
            "max_objects",
            "held_out_shapes",
            "held_out_colours",
            "held_out_motions",
            "train_clips",
            "val_clips",
            "test_clips",
            "novel_clips",
        )
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"synthetic spec: {name} must be a whole number >= 0, got {value!r}")
        checks = [
            (1 <= self.min_objects <= self.max_objects <= 4, "objects per clip must be 1 <= min_objects <= max_objects <= 4"),
            (self.held_out_shapes < len(self.shapes), f"held_out_shapes must leave a seen shape (of {len(self.shapes)})"),
            (self.held_out_colours < len(self.colours), f"held_out_colours must leave a seen colour (of {len(self.colours)})"),
            (self.held_out_motions < len(self.motions), f"held_out_motions must leave a seen motion (of {len(self.motions)})"),
            (len(self.shapes) - self.held_out_shapes >= self.max_objects, "max_objects needs that many seen (not held-out) shapes"),
            (len(self.colours) - self.held_out_colours >= self.max_objects, "max_objects needs that many seen (not held-out) colours"),
            (self.train_clips >= 1, "train_clips must be >= 1"),
            (self.novel_clips == 0 or self.num_held_out > 0, "novel_clips needs at least one held-out concept"),
            (self.frames >= 2, "frames must be >= 2"),
            (self.fps > 0 and math.isfinite(self.fps), "fps must be positive"),
            (self.size >= 16 and self.size % 2 == 0, "size must be an even number >= 16"),
            (0 <= self.noise <= 1, "noise must be between 0 and 1 (a fraction of 255)"),
            (0 < self.object_size[0] <= self.object_size[1] <= 0.3, "object_size must be 0 < lo <= hi <= 0.3"),
            (0 <= self.travel[0] <= self.travel[1] <= 0.6, "travel must be 0 <= lo <= hi <= 0.6"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"synthetic spec: {message}")

    def values(self, factor: str) -> tuple[str, ...]:
        """The values of concept kind ``factor`` in play."""
        return {"shape": self.shapes, "colour": self.colours, "motion": self.motions}[factor]

    @property
    def num_held_out(self) -> int:
        return self.held_out_shapes + self.held_out_colours + self.held_out_motions

    def split_counts(self) -> dict[str, int]:
        """Clips per split (``train``, ``val``, ``test``, ``novel_test``)."""
        return {"train": self.train_clips, "val": self.val_clips, "test": self.test_clips, "novel_test": self.novel_clips}

    def concepts(self) -> list[tuple[str, str]]:
        """Every ``(kind, value)`` in class order: the shapes, then the colours, then the motions (spec order)."""
        return [(f, v) for f in CONCEPT_FACTORS for v in self.values(f)]

    def class_names(self) -> list[str]:
        """The labels of :meth:`concepts`, in class (``classes.txt``) order."""
        return [concept_label(f, v) for f, v in self.concepts()]

    def held_out(self, seed: int) -> dict[str, tuple[str, ...]]:
        """Per kind, the held-out values for ``seed`` (in spec order)."""
        counts = {"shape": self.held_out_shapes, "colour": self.held_out_colours, "motion": self.held_out_motions}
        out = {}
        for factor in CONCEPT_FACTORS:
            values = self.values(factor)
            ranked = sorted(values, key=lambda v: hashlib.sha256(f"{seed}:{factor}:{v}".encode()).hexdigest())
            chosen = set(ranked[: counts[factor]])
            out[factor] = tuple(v for v in values if v in chosen)
        return out


def _draw_objects(spec: MultiLabelSpec, held: dict[str, tuple[str, ...]], novel: bool, rng: np.random.Generator) -> list[dict[str, str]]:
    """The objects of one clip: seen concepts only, or (``novel``) object 0 carrying one held-out concept drawn
    uniformly and every other attribute drawn from all the concepts in play."""
    n = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    forced: tuple[str, str] | None = None
    if novel:
        options = [(f, v) for f in CONCEPT_FACTORS for v in held[f]]
        forced = options[int(rng.integers(len(options)))]
    columns: dict[str, list[str]] = {}
    for factor in CONCEPT_FACTORS:
        pool = [v for v in spec.values(factor) if novel or v not in held[factor]]
        first: list[str] = []
        if forced is not None and forced[0] == factor:
            first = [forced[1]]
            pool = [v for v in pool if v != forced[1]]
        need = n - len(first)
        replace = factor == "motion" and len(pool) < need  # shapes and colours always differ (checked by the spec)
        picked = [str(v) for v in rng.choice(pool, size=need, replace=replace)] if need else []
        columns[factor] = first + picked
    return [{f: columns[f][k] for f in CONCEPT_FACTORS} for k in range(n)]


def render_objects(spec: MultiLabelSpec, objects: list[dict[str, str]], *, rng: np.random.Generator) -> np.ndarray:
    """Draw several objects (each a shape, colour and motion, as :func:`render_clip` draws one) over one background,
    in list order (later objects in front); returns (T, H, W, 3) uint8 RGB."""
    size, frames = spec.size, spec.frames
    video = np.broadcast_to(_background(spec, rng), (frames, size, size, 3)).copy()
    for obj in objects:
        body, spot, colour = _object_masks(obj, spec, rng)
        video[body] = colour
        video[spot] = colour * 0.45
    if spec.noise > 0:
        video += rng.normal(0.0, spec.noise * 255.0, video.shape).astype(np.float32)
    return np.clip(video + 0.5, 0, 255).astype(np.uint8)


def draw_multilabel_clip(spec: MultiLabelSpec, *, seed: int, split: str, index: int) -> tuple[list[dict[str, str]], np.ndarray]:
    """Clip ``index`` of ``split`` exactly as :func:`generate_multilabel` draws it: ``(objects, frames)``. A pure
    function of ``(spec, seed, split, index)`` (its generator is seeded ``[seed, split code, index]``)."""
    if split not in _SPLIT_CODES:
        raise InputError(f"split must be one of {', '.join(_SPLIT_CODES)}, got {split!r}")
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    objects = _draw_objects(spec, spec.held_out(seed), split == "novel_test", rng)
    return objects, render_objects(spec, objects, rng=rng)


def _clip_labels(spec: MultiLabelSpec, objects: list[dict[str, str]]) -> list[str]:
    present = {(f, obj[f]) for obj in objects for f in CONCEPT_FACTORS}
    return [concept_label(f, v) for f, v in spec.concepts() if (f, v) in present]


def _make_multilabel_clip(job: tuple) -> tuple[str, list[dict[str, str]]]:
    spec, out, seed, split, index = job
    objects, frames = draw_multilabel_clip(spec, seed=seed, split=split, index=index)
    rel = f"videos/{split}/{index:04d}.mp4"
    write_video(Path(out) / rel, frames, fps=spec.fps)
    return rel, objects


def generate_multilabel(
    spec: MultiLabelSpec,
    out_dir: str | Path,
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> Path:
    """Write the multi-label benchmark described by ``spec`` into ``out_dir`` (created) and return it. Deterministic
    per seed (``workers`` threads give the same files).

    Files: ``videos/<split>/<i:04d>.mp4``; ``classes.txt`` (every concept label, :meth:`MultiLabelSpec.class_names`
    order: shapes, colours, motions); ``base_classes.txt`` (the seen concepts) and ``novel_classes.txt`` (the
    held-out ones), both in class order; ``train.jsonl``, ``val.jsonl``, ``test.jsonl`` (seen concepts only, drawn
    and labelled) and ``novel_test.jsonl`` (each clip shows at least one held-out concept); each line
    ``{"path": "videos/...", "labels": [concept labels present, class order], "objects": [{"shape", "colour",
    "motion"}, ...]}`` (:func:`~openvocab.data.manifests.read_manifest`'s JSONL; ``objects`` in drawing order,
    ignored by the reader); ``splits.json`` (seed, spec, classes, base/novel names and indices into classes.txt,
    the held-out values per kind, counts, label kinds). Read a split with ``read_manifest(out/"train.jsonl",
    classes=out/"classes.txt")``. Manifests are written atomically after every video.
    """
    out = _check_run_args(seed, workers, out_dir)
    names = spec.class_names()
    held = spec.held_out(seed)
    novel = [i for i, (f, v) in enumerate(spec.concepts()) if v in held[f]]
    base = [i for i in range(len(names)) if i not in set(novel)]
    counts = spec.split_counts()
    jobs = []
    for split, count in counts.items():
        (out / "videos" / split).mkdir(parents=True, exist_ok=True)
        jobs.extend((spec, str(out), seed, split, i) for i in range(count))
    made = _run_jobs(_make_multilabel_clip, jobs, workers=workers, progress=progress)
    lines: dict[str, list[str]] = {split: [] for split in counts}
    for (_, _, _, split, _), (rel, objects) in zip(jobs, made):
        row = {"path": rel, "labels": _clip_labels(spec, objects), "objects": objects}
        lines[split].append(json.dumps(row) + "\n")
    for split, split_lines in lines.items():
        atomic_write(out / f"{split}.jsonl", "".join(split_lines))
    _write_class_lists(out, names, base, novel)
    meta = {
        "seed": seed,
        "multi_label": True,
        "spec": asdict(spec),
        "classes": names,
        "label_kinds": {concept_label(f, v): f for f, v in spec.concepts()},
        "base": [names[i] for i in base],
        "novel": [names[i] for i in novel],
        "base_indices": base,
        "novel_indices": novel,
        "held_out": {f: list(v) for f, v in held.items()},
        "splits": {split: f"{split}.jsonl" for split in counts},
        "counts": dict(counts),
        "labels_per_clip": {
            split: round(sum(len(json.loads(line)["labels"]) for line in split_lines) / len(split_lines), 3) if split_lines else 0.0
            for split, split_lines in lines.items()
        },
    }
    atomic_write(out / "splits.json", json.dumps(meta, indent=2) + "\n")
    return out
