"""Base/novel benchmark splits written as manifests: MOV §4.1's open-vocabulary protocol on any labelled dataset.

MOV builds its benchmarks by splitting a dataset's classes at random into *base* classes (training and testing
videos) and *novel* classes (testing videos only): Kinetics-700 400 base / 300 novel, VGGSound 154 base / 155
novel. :func:`write_base_novel_split` does that for a train and a test :class:`~openvocab.data.records.Manifest`
(any reader) with :func:`~openvocab.data.manifests.base_novel_split` (seeded, order-independent, exact counts) and
writes a folder laid out like the synthetic benchmark of :mod:`openvocab.data.synth`, so one consumer reads both:

=====================  ===============================================================  =========================
file                   content                                                          brief's / paper's name
=====================  ===============================================================  =========================
``classes.txt``        every class, one per line (index order of ``splits.json``)
``base_classes.txt``   the base classes                                                 base classes
``novel_classes.txt``  the novel classes                                                novel classes
``train.csv``          train rows whose labels are all base classes                     train_base
``test.csv``           test rows whose labels are all base classes                      test_base
``novel_test.csv``     test rows whose labels are all novel classes                     test_novel
``splits.json``        seed, classes, base/novel names and indices, files, counts,      split.json
                       the source files
=====================  ===============================================================  =========================

The CSVs are :func:`~openvocab.data.manifests.read_manifest`'s format (``path,label,start,end``; absolute paths;
several labels joined by ``|``; empty start/end for whole files); :func:`read_split_folder` reads a folder back with
base indices for ``train``/``test`` and novel indices for ``novel_test``. Every file is written atomically, and
``splits.json`` last, so a folder with a ``splits.json`` is complete. Synthetic folders also hold ``val.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from openvocab.atomic import atomic_write
from openvocab.data.manifests import base_novel_split, read_manifest
from openvocab.data.records import Manifest, VideoRecord
from openvocab.errors import InputError

__all__ = ["SPLIT_FILES", "ClassSplit", "read_split_folder", "split_classes", "write_base_novel_split"]

SPLIT_FILES = {"train": "train.csv", "test": "test.csv", "novel_test": "novel_test.csv"}
_RESERVED = ("|", ";")  # read_manifest's label separators cannot appear inside one class name


@dataclass(frozen=True)
class ClassSplit:
    """A vocabulary split into ascending ``base`` and ``novel`` class indices into ``classes``."""

    classes: list[str]
    base: list[int]
    novel: list[int]
    seed: int

    @property
    def base_names(self) -> list[str]:
        return [self.classes[i] for i in self.base]

    @property
    def novel_names(self) -> list[str]:
        return [self.classes[i] for i in self.novel]


def split_classes(classes: Sequence[str], *, novel: int | None = None, novel_fraction: float | None = None, seed: int = 0) -> ClassSplit:
    """Split ``classes`` into base and novel with exactly ``novel`` novel classes (MOV §4.1: 300 of Kinetics-700,
    155 of VGGSound) or ``round(novel_fraction * C)`` of them; give one of the two. Same seed, same split, whatever
    the order of ``classes`` (see :func:`~openvocab.data.manifests.base_novel_split`)."""
    names = [str(c) for c in classes]
    count = len(names)
    if len(set(names)) != count:
        raise InputError("the class vocabulary lists a class twice")
    if count < 2:
        raise InputError(f"a base/novel split needs at least 2 classes, the data has {count}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if (novel is None) == (novel_fraction is None):
        raise InputError("give the number of novel classes (--novel N) or their fraction (--novel-fraction F), not both")
    if novel is not None:
        if isinstance(novel, bool) or not isinstance(novel, int) or not 1 <= novel <= count - 1:
            raise InputError(f"the number of novel classes must be between 1 and {count - 1} (the data has {count} classes), got {novel!r}")
        fraction = novel / count
    else:
        fraction = float(novel_fraction)  # type: ignore[arg-type]
        if not 0.0 < fraction < 1.0:
            raise InputError(f"the novel fraction must be strictly between 0 and 1, got {novel_fraction!r}")
    base_ids, novel_ids = base_novel_split(names, novel_fraction=fraction, seed=seed)
    if novel is not None and len(novel_ids) != novel:  # pragma: no cover - floor(n / C * C + 0.5) == n for any C
        raise InputError(f"internal: asked for {novel} novel classes, got {len(novel_ids)}")
    return ClassSplit(names, base_ids, novel_ids, seed)


def _union_classes(train: Manifest, test: Manifest) -> list[str]:
    """The train vocabulary in its order, then test-only classes in theirs."""
    seen = dict.fromkeys(train.classes)
    for name in test.classes:
        seen.setdefault(name, None)
    return list(seen)


def _check_names(names: Sequence[str]) -> None:
    for name in names:
        if any(sep in name for sep in _RESERVED) or name.startswith("#") or name != " ".join(name.split()) or not name:
            raise InputError(f"class '{name}' cannot be written to a manifest (it contains '|' or ';', starts with '#' or has stray spaces)")


def _time(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _rows_csv(rows: list[tuple[VideoRecord, list[str]]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "start", "end"])
    for record, names in rows:
        writer.writerow([record.path, "|".join(names), _time(record.start_s), _time(record.end_s)])
    return buffer.getvalue()


def write_base_novel_split(
    train: Manifest,
    test: Manifest,
    out_dir: str | os.PathLike[str],
    *,
    novel: int | None = None,
    novel_fraction: float | None = None,
    seed: int = 0,
    sources: Mapping[str, object] | None = None,
) -> dict:
    """Split the union vocabulary of ``train`` and ``test`` (:func:`split_classes`) and write the folder described
    in the module docstring; returns the ``splits.json`` content.

    Train rows of novel classes are left out (that is the protocol); so are rows mixing base and novel labels and
    unlabelled rows (counted under ``left_out``). ``sources`` (e.g. ``{"train": path, "test": path, "format":
    "kinetics"}``) is recorded in ``splits.json``. Raises :class:`~openvocab.errors.InputError` for an impossible
    split or an unwritable folder; nothing is half-written.
    """
    classes = _union_classes(train, test)
    _check_names(classes)
    split = split_classes(classes, novel=novel, novel_fraction=novel_fraction, seed=seed)
    side = {name: "base" for name in split.base_names} | {name: "novel" for name in split.novel_names}
    rows: dict[str, list[tuple[VideoRecord, list[str]]]] = {key: [] for key in SPLIT_FILES}
    left_out = {"train_novel": 0, "mixed": 0, "unlabelled": 0}
    for which, manifest in (("train", train), ("test", test)):
        for record in manifest.records:
            names = [manifest.classes[i] for i in record.labels]
            sides = {side[n] for n in names}
            if not names:
                left_out["unlabelled"] += 1
            elif len(sides) > 1:
                left_out["mixed"] += 1
            elif sides == {"base"}:
                rows[which].append((record, names))
            elif which == "test":
                rows["novel_test"].append((record, names))
            else:
                left_out["train_novel"] += 1
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError("output exists and is not a directory", path=out)
    meta = {
        "seed": seed,
        "classes": classes,
        "base": split.base_names,
        "novel": split.novel_names,
        "base_indices": split.base,
        "novel_indices": split.novel,
        "num_classes": {"all": len(classes), "base": len(split.base), "novel": len(split.novel)},
        "splits": dict(SPLIT_FILES),
        "counts": {key: len(value) for key, value in rows.items()},
        "left_out": left_out,
        "skipped_rows": {"train": len(train.problems), "test": len(test.problems)},
        "sources": {"train": train.source, "test": test.source, **{k: str(v) for k, v in (sources or {}).items() if v is not None}},
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        for key, name in SPLIT_FILES.items():
            atomic_write(out / name, _rows_csv(rows[key]))
        atomic_write(out / "classes.txt", "".join(f"{n}\n" for n in classes))
        atomic_write(out / "base_classes.txt", "".join(f"{n}\n" for n in split.base_names))
        atomic_write(out / "novel_classes.txt", "".join(f"{n}\n" for n in split.novel_names))
        atomic_write(out / "splits.json", json.dumps(meta, indent=2) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write the split ({exc.strerror or exc})", path=out) from None
    return meta


def read_split_folder(folder: str | os.PathLike[str], *, check_files: bool = True) -> dict[str, Manifest]:
    """The manifests of a split folder (:func:`write_base_novel_split` or the synthetic benchmark): ``train`` and
    ``test`` (and ``val`` when present) indexed by ``base_classes.txt``, ``novel_test`` by ``novel_classes.txt``."""
    root = Path(folder).expanduser()
    if not (root / "splits.json").is_file():
        raise InputError("not a split folder (no splits.json)", path=root)
    out: dict[str, Manifest] = {}
    for key in ("train", "val", "test", "novel_test"):
        file = root / f"{key}.csv"
        if key == "val" and not file.exists():
            continue
        vocabulary = root / ("novel_classes.txt" if key == "novel_test" else "base_classes.txt")
        out[key] = read_manifest(file, classes=vocabulary, check_files=check_files)
    return out
