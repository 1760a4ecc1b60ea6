"""Training-vocabulary filtering (multi-label §4.1): drop block-listed classes and the least frequent ones.

The multi-label paper trains on YouTube-8M after removing the 771 video-game titles ("tagged with the video game
title as the label irrespective of the actual entities and actions present") and "some of the least frequently
occurring labels" from the TRAINING vocabulary (3,862 -> 2,429 classes). :func:`filter_vocabulary` does both on a
:class:`~openvocab.data.records.Manifest`; :func:`read_block_list` reads a block list (one class name a line).

    from openvocab.data.manifests import read_manifest
    from openvocab.data.vocabulary import filter_vocabulary, read_block_list
    train = read_manifest("yt8m_train.jsonl")
    train, report = filter_vocabulary(train, min_count=10, block_list=read_block_list("video_games.txt"))
    print(report.summary())  # "vocabulary 3,862 -> 2,429 classes (...); 12,345 videos left without labels dropped"

Validation and test data keep their own vocabulary: filtering is for training only (recipes: ``data.min_class_count``
and ``data.block_list``, applied by :func:`openvocab.train.data_setup.load_splits`; CLI: ``openvocab data filter``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from openvocab.data.records import Manifest, read_text_file, remap_record
from openvocab.errors import InputError
from openvocab.text.prompts import class_name_key

__all__ = ["VocabularyReport", "block_key", "filter_vocabulary", "read_block_list"]


def block_key(name: str) -> str:
    """The key a block-list name matches a class under: whitespace collapsed, case folded (``"  Grand  Theft
    Auto V"`` and ``"grand theft auto v"`` are the same)."""
    return " ".join(str(name).split()).casefold()


def read_block_list(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a block-list file: UTF-8 text, one name a line; blank lines and lines whose first
    non-blank character is ``#`` are ignored; whitespace is collapsed; repeats (after :func:`block_key`) are kept
    once, in file order. An empty list is allowed (nothing blocked). An unreadable file raises
    :class:`~openvocab.errors.InputError` naming it."""
    text = read_text_file(Path(path).expanduser(), what="block list")
    names: dict[str, str] = {}
    for line in text.splitlines():
        name = " ".join(line.split())
        if name and not name.startswith("#"):
            names.setdefault(block_key(name), name)
    return list(names.values())


@dataclass(frozen=True)
class VocabularyReport:
    """What :func:`filter_vocabulary` removed.

    ``kept``: old class indices kept, in their (new) index order (new index ``j`` is old class ``kept[j]``).
    ``rare``: names of the classes removed for ``count < min_count``; ``blocked``: names removed by the block list
    (a class both rare and blocked is listed as blocked only). ``not_found``: block-list names matching no class.
    ``records_dropped``: records left without any label (also counted when they had segments).
    """

    classes_before: int
    classes_after: int
    records_before: int
    records_after: int
    kept: tuple[int, ...]
    rare: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    not_found: tuple[str, ...] = ()
    min_count: int = 0
    counts: tuple[int, ...] = field(default=(), repr=False)

    @property
    def classes_removed(self) -> int:
        return self.classes_before - self.classes_after

    @property
    def records_dropped(self) -> int:
        return self.records_before - self.records_after

    def summary(self) -> str:
        """One line: ``"vocabulary 10 -> 7 classes (2 with fewer than 3 videos, 1 block-listed); 4 videos left
        without labels dropped; 1 block-list name not found: foo"``."""
        parts = []
        if self.rare:
            parts.append(f"{len(self.rare):,} with fewer than {self.min_count:,} video{'s' if self.min_count != 1 else ''}")
        if self.blocked:
            parts.append(f"{len(self.blocked):,} block-listed")
        text = f"vocabulary {self.classes_before:,} -> {self.classes_after:,} classes" + (f" ({', '.join(parts)})" if parts else "")
        dropped = self.records_dropped
        text += f"; {dropped:,} video{'s' if dropped != 1 else ''} left without labels dropped"
        if self.not_found:
            shown = ", ".join(self.not_found[:5]) + (", ..." if len(self.not_found) > 5 else "")
            text += f"; {len(self.not_found):,} block-list name{'s' if len(self.not_found) != 1 else ''} not found: {shown}"
        return text


def filter_vocabulary(manifest: Manifest, *, min_count: int = 0, block_list: Iterable[str] = ()) -> tuple[Manifest, VocabularyReport]:
    """``(filtered manifest, report)``: ``manifest`` without the classes named in ``block_list`` and those carried
    by fewer than ``min_count`` records (:meth:`Manifest.class_counts`, counted on the input; 0 = off).

    A block-list name matches a class when they are equal after :func:`block_key` (whitespace and case) or after
    :func:`~openvocab.text.prompts.class_name_key` (the readers' class matching: ``Apply_Eye_Makeup`` is
    ``apply eye makeup``). Kept classes keep their relative order and are re-indexed 0..K-1; records are remapped
    (segments too: segments left without labels are dropped); records left without any label are dropped (and so
    are unlabelled records: this is for training data). Problems and the source name are kept. Deterministic; the
    input manifest is not modified.
    """
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 0:
        raise InputError(f"min_count must be a whole number >= 0, got {min_count!r}")
    if isinstance(block_list, str):
        raise InputError("block_list must be a list of class names (read a file with read_block_list)")
    wanted = [" ".join(str(n).split()) for n in block_list]
    wanted = [n for n in wanted if n]
    by_key: dict[str, list[int]] = {}
    for index, name in enumerate(manifest.classes):
        for key in {block_key(name), class_name_key(name)}:
            by_key.setdefault(key, []).append(index)
    blocked_idx: set[int] = set()
    not_found: list[str] = []
    seen: set[str] = set()
    for name in wanted:
        if block_key(name) in seen:
            continue
        seen.add(block_key(name))
        hits = set(by_key.get(block_key(name), ())) | set(by_key.get(class_name_key(name), ()))
        if hits:
            blocked_idx |= hits
        else:
            not_found.append(name)
    counts = manifest.class_counts()
    rare_idx = {i for i, c in enumerate(counts) if c < min_count} - blocked_idx if min_count else set()
    kept = [i for i in range(len(manifest.classes)) if i not in blocked_idx and i not in rare_idx]
    remap = {old: new for new, old in enumerate(kept)}
    records = [r for r in (remap_record(record, remap) for record in manifest.records) if r is not None]
    filtered = Manifest(records, [manifest.classes[i] for i in kept], list(manifest.problems), manifest.source)
    report = VocabularyReport(
        classes_before=len(manifest.classes),
        classes_after=len(kept),
        records_before=len(manifest.records),
        records_after=len(records),
        kept=tuple(kept),
        rare=tuple(manifest.classes[i] for i in sorted(rare_idx)),
        blocked=tuple(manifest.classes[i] for i in sorted(blocked_idx)),
        not_found=tuple(not_found),
        min_count=min_count,
        counts=tuple(counts),
    )
    return filtered, report
