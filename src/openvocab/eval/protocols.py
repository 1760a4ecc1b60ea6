"""Zero-shot evaluation protocols of Text4Vis §4.2 (Table 4), on pre-computed embeddings.

Inputs are video embeddings ``(N, D)`` or per view ``(N, V, D)``, integer targets ``(N,)``, class text embeddings
``(C, D)`` (the frozen text classifier of Text4Vis Eq. 5) and CLIP's logit scale; scores are
:func:`openvocab.scoring.clip_scores` over the classes in play (``scale · cos(video, class)`` per view, softmax,
averaged over views), the one scoring path of openvocab.

* :func:`full_protocol` — "directly evaluating on the full dataset" (UCF / HMDB / ANet columns).
* :func:`half_class_protocol` — "randomly choose half of the test dataset's classes, 50 for UCF, 25 for HMDB, and
  100 for ActivityNet ... Repeat ten times and average" (UCF* / HMDB* / ANet*): ``floor(C / 2)`` classes per
  trial, only the videos of those classes, classified among those classes only.
* :func:`kinetics600_novel_protocol` — the three splits of ER [7]: each lists 160 of the 220 Kinetics-600 classes
  outside Kinetics-400; videos of a split's classes are classified among that split's classes; mean ± std over
  the splits.

Spread convention: ``std`` is the POPULATION standard deviation over trials/splits (``ddof = 0``, numpy's
``np.std`` default; 0.0 for a single trial). Accuracies are fractions in ``[0, 1]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from openvocab.errors import InputError
from openvocab.eval.metrics import as_numpy, mean_class_accuracy, topk_accuracy
from openvocab.scoring import clip_scores
from openvocab.text.prompts import class_name_key

__all__ = [
    "DEFAULT_LOGIT_SCALE",
    "HalfClassResult",
    "NovelSplitsResult",
    "ProtocolResult",
    "SplitResult",
    "TrialResult",
    "full_protocol",
    "half_class_protocol",
    "kinetics600_novel_protocol",
]

DEFAULT_LOGIT_SCALE = 100.0  # CLIP's learned temperature 1/0.01 (ranking metrics do not depend on it)


@dataclass
class ProtocolResult:
    """Accuracies over one set of classes (fractions)."""

    top1: float
    top5: float
    mean_class_accuracy: float
    num_videos: int
    num_classes: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrialResult:
    """One half-class trial: the class indices drawn and the accuracies among them."""

    classes: list[int]
    top1: float
    top5: float
    num_videos: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HalfClassResult:
    """Text4Vis UCF* / HMDB* / ANet*: ``mean ± std`` of the per-trial top-1 (std: population, ddof=0)."""

    subset_size: int
    seed: int
    trials: list[TrialResult] = field(default_factory=list)
    mean: float = 0.0
    std: float = 0.0
    mean_top5: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SplitResult:
    """One Kinetics-600 novel split: where it came from, its size and accuracies."""

    source: str
    num_classes: int
    num_videos: int
    top1: float
    top5: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NovelSplitsResult:
    """Kinetics-600 novel-class protocol: ``mean ± std`` of the per-split top-1 (std: population, ddof=0)."""

    splits: list[SplitResult] = field(default_factory=list)
    mean: float = 0.0
    std: float = 0.0
    mean_top5: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


#: Clip scores of per-view video embeddings against class embeddings: ``(N, views, *E), (C, D) -> (N, C)``.
Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _inputs(video_embeddings, targets, class_embeddings, *, packed: bool = False) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    v = torch.as_tensor(as_numpy(video_embeddings, name="video embeddings"), dtype=torch.float32)
    c = torch.as_tensor(as_numpy(class_embeddings, name="class embeddings"), dtype=torch.float32)
    if v.ndim == 2:
        v = v[:, None]  # one view
    if packed and v.ndim == 4:  # a custom score's packed embeddings (N, views, K, D), e.g. MOV's three
        pass
    elif v.ndim != 3 or c.ndim != 2 or v.shape[-1] != c.shape[1]:
        raise InputError(f"need video embeddings (N, D) or (N, views, D) and class embeddings (C, D), got {tuple(v.shape)} and {tuple(c.shape)}")
    y = as_numpy(targets, name="targets")
    if y.ndim != 1 or y.shape[0] != v.shape[0]:
        raise InputError(f"targets must have shape ({v.shape[0]},), got {y.shape}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= c.shape[0]):
        raise InputError(f"targets must be class indices in [0, {c.shape[0]}), got range [{y.min()}, {y.max()}]")
    if v.shape[0] == 0:
        raise InputError("no videos to evaluate")
    return v, y, c


def _evaluate_subset(
    v: torch.Tensor, y: np.ndarray, c: torch.Tensor, classes: np.ndarray, *, logit_scale: float, score: Score | None = None
) -> tuple[dict[int, float], float, int]:
    """Accuracy of the videos of ``classes`` classified among ``classes`` only (``score``: another scoring rule than
    :func:`~openvocab.scoring.clip_scores`, e.g. MOV's Eq. 10-12)."""
    remap = np.full(c.shape[0], -1, dtype=np.int64)
    remap[classes] = np.arange(classes.size)
    keep = remap[y] >= 0
    n = int(keep.sum())
    if n == 0:
        return {1: float("nan"), 5: float("nan")}, float("nan"), 0
    vk, ck = v[torch.from_numpy(keep)], c[torch.from_numpy(classes)]
    scores = clip_scores(vk, ck, logit_scale=logit_scale) if score is None else score(vk, ck)
    sub_targets = remap[y[keep]]
    return topk_accuracy(scores, sub_targets, ks=(1, 5)), mean_class_accuracy(scores, sub_targets), n


def _spread(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=0))


def full_protocol(video_embeddings, targets, class_embeddings, *, logit_scale: float = DEFAULT_LOGIT_SCALE, score: Score | None = None) -> ProtocolResult:
    """Text4Vis §4.2 zero-shot protocol 2: every video, classified among all ``C`` classes."""
    v, y, c = _inputs(video_embeddings, targets, class_embeddings, packed=score is not None)
    all_classes = np.arange(c.shape[0])
    acc, mca, n = _evaluate_subset(v, y, c, all_classes, logit_scale=logit_scale, score=score)
    return ProtocolResult(top1=acc[1], top5=acc[5], mean_class_accuracy=mca, num_videos=n, num_classes=int(c.shape[0]))


def half_class_protocol(
    video_embeddings,
    targets,
    class_embeddings,
    *,
    trials: int = 10,
    seed: int = 0,
    subset_size: int | None = None,
    logit_scale: float = DEFAULT_LOGIT_SCALE,
    score: Score | None = None,
) -> HalfClassResult:
    """Text4Vis §4.2 zero-shot protocol 1 (UCF* / HMDB* / ANet*; E2E [3]).

    Each of ``trials`` trials draws ``subset_size`` classes (default ``floor(C / 2)``: 101 -> 50, 51 -> 25,
    200 -> 100) without replacement with ``numpy.random.default_rng(seed)``, keeps only the videos of those
    classes and classifies them among those classes only. The same ``seed`` gives the same subsets. A trial
    whose classes have no videos is an error (the mean would silently ignore it).
    """
    v, y, c = _inputs(video_embeddings, targets, class_embeddings, packed=score is not None)
    num_classes = int(c.shape[0])
    size = num_classes // 2 if subset_size is None else int(subset_size)
    if not 1 <= size <= num_classes:
        raise InputError(f"subset_size must be in [1, {num_classes}], got {size}")
    if trials < 1:
        raise InputError(f"trials must be >= 1, got {trials}")
    rng = np.random.default_rng(seed)
    result = HalfClassResult(subset_size=size, seed=int(seed))
    for index in range(trials):
        classes = np.sort(rng.choice(num_classes, size=size, replace=False))
        acc, _, n = _evaluate_subset(v, y, c, classes, logit_scale=logit_scale, score=score)
        if n == 0:
            raise InputError(f"half-class trial {index} drew classes with no videos; the targets cover too few classes")
        result.trials.append(TrialResult(classes=classes.tolist(), top1=acc[1], top5=acc[5], num_videos=n))
    result.mean, result.std = _spread([t.top1 for t in result.trials])
    result.mean_top5 = _spread([t.top5 for t in result.trials])[0]
    return result


def _read_split(split: str | os.PathLike | Sequence[str], index: int, lookup: dict[str, int]) -> tuple[str, np.ndarray]:
    """Class indices of one split (a file with one class name per line, or a sequence of names)."""
    if isinstance(split, (str, os.PathLike)):
        path = Path(split)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read split file: {exc.__class__.__name__}", path=path) from exc
        source = str(path)
        where = lambda n: f"{source}:{n}"
    else:
        lines = [str(s) for s in split]
        source = f"split {index}"
        where = lambda n: f"{source}, item {n}"
    indices: list[int] = []
    seen: dict[int, int] = {}
    for number, raw in enumerate(lines, start=1):
        key = class_name_key(raw)
        if not key:
            continue
        if key not in lookup:
            raise InputError(f"{where(number)}: unknown class name {raw.strip()!r} (not among the {len(lookup)} class names)")
        if lookup[key] in seen:
            raise InputError(f"{where(number)}: class {raw.strip()!r} repeated (first at {seen[lookup[key]]})")
        seen[lookup[key]] = number
        indices.append(lookup[key])
    if not indices:
        raise InputError(f"{source}: the split lists no class names")
    return source, np.sort(np.asarray(indices, dtype=np.int64))


def kinetics600_novel_protocol(
    video_embeddings,
    targets,
    class_embeddings,
    *,
    class_names: Sequence[str],
    split_files: Sequence[str | os.PathLike | Sequence[str]],
    logit_scale: float = DEFAULT_LOGIT_SCALE,
    score: Score | None = None,
) -> NovelSplitsResult:
    """Text4Vis §4.2 Kinetics-600 protocol (ER [7]): per split, classify its classes' videos among its classes.

    ``class_names[i]`` names class ``i`` of ``class_embeddings``/``targets`` (e.g. the 220 novel classes, or all
    600). Each entry of ``split_files`` is a path to a text file with one class name per line (blank lines are
    skipped) or a sequence of names; names match after :func:`~openvocab.text.prompts.class_name_key`. An unknown or
    repeated name raises :class:`~openvocab.errors.InputError` naming the file and line. Reports per-split top-1/top-5 and the
    mean ± std (population) of top-1 over the splits.
    """
    v, y, c = _inputs(video_embeddings, targets, class_embeddings, packed=score is not None)
    names = [str(n) for n in class_names]
    if len(names) != c.shape[0]:
        raise InputError(f"{len(names)} class names for {c.shape[0]} class embeddings")
    lookup: dict[str, int] = {}
    for i, name in enumerate(names):
        key = class_name_key(name)
        if key in lookup:
            raise InputError(f"class names {names[lookup[key]]!r} and {name!r} are the same after normalisation")
        lookup[key] = i
    if isinstance(split_files, (str, os.PathLike)) or len(split_files) == 0:
        raise InputError("split_files must be a non-empty list of split files (or lists of class names)")
    result = NovelSplitsResult()
    for index, split in enumerate(split_files):
        source, classes = _read_split(split, index, lookup)
        acc, _, n = _evaluate_subset(v, y, c, classes, logit_scale=logit_scale, score=score)
        if n == 0:
            raise InputError(f"{source}: no videos belong to the classes of this split")
        result.splits.append(SplitResult(source=source, num_classes=int(classes.size), num_videos=n, top1=acc[1], top5=acc[5]))
    result.mean, result.std = _spread([s.top1 for s in result.splits])
    result.mean_top5 = _spread([s.top5 for s in result.splits])[0]
    return result
