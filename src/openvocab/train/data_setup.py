"""From a recipe's ``data`` section to manifests, class names and datasets (one place for every trainer)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from openvocab.data.dataset import VideoClipDataset, collate_skip_failed
from openvocab.data.manifests import (
    Manifest,
    read_activitynet,
    read_hmdb51,
    read_kinetics_csv,
    read_manifest,
    read_ucf101,
    read_vggsound_csv,
)
from openvocab.data.rareact import read_rareact
from openvocab.data.vocabulary import filter_vocabulary, read_block_list
from openvocab.errors import InputError, OpenVocabError
from openvocab.train.config import DataConfig

log = logging.getLogger(__name__)


def read_split(data: DataConfig, which: str) -> Manifest:
    """The ``train`` or ``val`` split named by the recipe, in its format."""
    source = data.train if which == "train" else data.val
    if not source:
        raise InputError(f"the recipe names no {which} data (data.{which})")
    fmt = data.format
    if fmt == "manifest":
        return read_manifest(source, root=data.root, classes=data.classes)
    if data.root is None:
        raise InputError(f"data.format={fmt} needs data.root (the folder holding the videos)")
    if fmt == "kinetics":
        return read_kinetics_csv(source, video_root=data.root, classes=data.classes)
    if fmt == "ucf101":
        return read_ucf101(source, video_root=data.root, split=data.split, subset="train" if which == "train" else "test")
    if fmt == "hmdb51":
        return read_hmdb51(source, video_root=data.root, split=data.split, subset="train" if which == "train" else "test")
    if fmt == "activitynet":  # both splits share the whole database's vocabulary
        # training: the trimmed annotation segments; validation: the segments too, or (data.val_mode=videos, Text4Vis
        # Table 2) the untrimmed videos, one record per video with all its distinct labels (multi-label when several)
        subset = "training" if which == "train" else "validation"
        mode = "videos" if which == "val" and data.val_mode == "videos" else "segments"
        return read_activitynet(source, video_root=data.root, subset=subset, mode=mode, classes=data.classes)
    if fmt == "vggsound":  # one CSV holds both splits (and defines the whole vocabulary): train rows / test rows
        return read_vggsound_csv(source, root=data.root, split="train" if which == "train" else "test", classes=data.classes)
    if fmt == "rareact":  # an evaluation set (multi-label K.1): the positive clips, each with noun, verb, "verb noun"
        return read_rareact(source, video_root=data.root, classes=data.classes)
    raise InputError(f"unknown data.format '{fmt}' (manifest, kinetics, ucf101, hmdb51, activitynet, vggsound, rareact)")


def load_splits(data: DataConfig, *, log_problems: bool = True) -> tuple[Manifest, Manifest | None]:
    """Train (and val) manifests on one shared vocabulary, restricted to ``classes_subset`` when given; then the
    TRAINING vocabulary is filtered (multi-label §4.1) by ``data.block_list`` (a file of class names) and
    ``data.min_class_count`` (classes with fewer training videos are dropped; 0 = off): classes are re-indexed,
    training records left without labels are dropped, and one log line says what went. The val split (scored by the
    trained head on the training classes) follows: its records keep their labels among the kept classes, and those
    left without one are dropped.

    Problems are reported per row (with row numbers) plus a summary; training refuses an empty train split.
    """
    train = read_split(data, "train")
    val = read_split(data, "val") if data.val else None
    if val is not None and val.classes != train.classes:
        if set(val.classes) <= set(train.classes):  # re-index val onto the train vocabulary
            index = {c: i for i, c in enumerate(train.classes)}
            val = replace(val, classes=list(train.classes), records=[replace(r, labels=tuple(index[val.classes[j]] for j in r.labels)) for r in val.records])
        else:
            extra = sorted(set(val.classes) - set(train.classes))[:5]
            raise InputError(f"the val split has classes the train split lacks: {', '.join(extra)} (use a fixed vocabulary: data.classes)")
    if data.classes_subset:
        train = train.subset(data.classes_subset)
        val = val.subset(data.classes_subset) if val is not None else None
    if data.min_class_count or data.block_list:
        blocked = read_block_list(data.block_list) if data.block_list else []
        train, report = filter_vocabulary(train, min_count=data.min_class_count, block_list=blocked)
        if log_problems:
            log.info("training %s", report.summary())
        if not train.classes:
            raise InputError(f"data.min_class_count / data.block_list leave no training class ({report.summary()})")
        if val is not None:  # validation scores the training classes: the same filtered vocabulary, in its order
            where = {name: i for i, name in enumerate(val.classes)}
            val = val.subset([where[name] for name in train.classes])
    for m in (train, val):
        if m is None or not log_problems:
            continue
        for problem in m.problems[:20]:
            log.warning("%s", problem)
        if len(m.problems) > 20:
            log.warning("… and %d more problems in %s", len(m.problems) - 20, m.source)
        log.info("%s", m.summary())
    train.require_nonempty()
    if val is not None:
        val.require_nonempty()
    return train, val


@dataclass(frozen=True)
class DecodeFailure:
    """A training clip that could not be decoded: its one-line reason (naming the file)."""

    message: str


class TrainingClips(VideoClipDataset):
    """:class:`~openvocab.data.dataset.VideoClipDataset` whose failed items say which file failed and why (a
    :class:`DecodeFailure` instead of ``None``), so that the trainer can name a failure even when the clips decode
    in DataLoader worker processes (a training set where no clip decodes stops with that line)."""

    def _failed(self, record, exc: OpenVocabError) -> DecodeFailure:
        message = str(exc)
        return DecodeFailure(message if message.startswith(str(record.path)) else f"{record.path}: {message}")


def collate_training_clips(items: list) -> dict:
    """:func:`~openvocab.data.dataset.collate_skip_failed` over :class:`TrainingClips` items, plus ``failures``:
    the reasons of the items that failed to decode (``dropped`` counts them)."""
    failures = [it.message for it in items if isinstance(it, DecodeFailure)]
    batch = collate_skip_failed([None if isinstance(it, DecodeFailure) else it for it in items])
    batch["failures"] = failures
    return batch


#: A failure rate of the training clips from which the trainer warns (after the first epoch) that much is skipped.
HIGH_FAILURE_RATE = 0.1


class DecodeTally:
    """How many training clips decoded and failed, and the first failure's reason (``collate_training_clips``)."""

    def __init__(self) -> None:
        self.decoded = 0
        self.failed = 0
        self.first: str | None = None
        self.checked = False

    def add(self, batch: dict) -> None:
        self.failed += int(batch["dropped"])
        self.decoded += int(len(batch["index"]))
        if self.first is None and batch.get("failures"):
            self.first = batch["failures"][0]

    def summary(self) -> str:
        seen = self.decoded + self.failed
        first = f"; first: {self.first}" if self.first else ""
        return f"{self.failed} of {seen} training clips ({100 * self.failed / max(seen, 1):.0f}%) failed to decode and were skipped{first}"

    def check(self) -> None:
        """An epoch where no clip decoded cannot train: one-line :class:`InputError`; a high failure rate warns."""
        if not self.decoded + self.failed:
            return  # nothing seen yet (a run resumed at the end of an epoch): check the next one
        self.checked = True
        if self.decoded == 0:
            first = f", first: {self.first}" if self.first else ""
            raise InputError(f"no clip of the training set could be decoded: {self.failed} failed{first}")
        if self.failed and self.failed >= HIGH_FAILURE_RATE * (self.decoded + self.failed):
            log.warning("%s; training goes on with the others", self.summary())
