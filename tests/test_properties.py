"""Property-based tests (hypothesis): label parsing, manifest parsing and the frame samplers.

Each property holds for ANY input of its kind: text, bytes, frame counts. The example budgets are bounded so the
file runs in seconds; ``derandomize`` keeps runs repeatable (a failure is reproduced by rerunning)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from openvocab.cli.common import gather_labels
from openvocab.data.manifests import manifest_jsonl_text, read_manifest, write_manifest_jsonl
from openvocab.data.records import Manifest, Segment, VideoRecord
from openvocab.errors import InputError
from openvocab.io.sampling import SamplerSpec, dense_clip, sample_indices, uniform_segments
from openvocab.text.prompts import clean_labels, normalise_class_name, parse_labels_arg, read_labels_file

FAST = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


def _write(tmp: Path, name: str, data: bytes | str) -> Path:
    path = tmp / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def _normal(label: str) -> str:
    return " ".join(label.split())


# --------------------------------------------------------------------------------------------------- labels
def _check_clean(labels: list[str], raw: list[str]) -> None:
    """The contract of a cleaned label list against the raw items it came from."""
    assert labels, "an empty list must raise instead"
    for label in labels:
        assert label and label == label.strip() and "  " not in label
        assert all(c == " " or not c.isspace() for c in label)
    folded = [label.casefold() for label in labels]
    assert len(set(folded)) == len(folded)  # unique (case-insensitively)
    firsts = list(dict.fromkeys(_normal(r).casefold() for r in raw if _normal(r)))
    assert folded == firsts  # every distinct label once, in first-seen order
    assert all(any(_normal(r) == label for r in raw) for label in labels)  # first spelling kept


@FAST
@given(st.lists(st.text(max_size=30), max_size=12))
def test_clean_labels_any_text(raw: list[str]) -> None:
    try:
        labels, warnings = clean_labels(raw)
    except InputError as exc:
        assert not any(_normal(r) for r in raw) and "\n" not in str(exc)
        return
    _check_clean(labels, raw)
    assert len(warnings) == sum(1 for r in raw if _normal(r)) - len(labels)  # one warning per dropped duplicate


@FAST
@given(st.text(max_size=120))
@example("a, A, b,, ,c")
@example(",\u2028,")
def test_gather_labels_from_the_command_line(text: str) -> None:
    try:
        labels, _ = clean_labels(gather_labels(text, None))
    except InputError as exc:
        assert "\n" not in str(exc)
        assert not any(_normal(part) for part in text.split(","))
        return
    _check_clean(labels, text.split(","))
    assert all("," not in label for label in labels)


_LABEL = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=25).map(_normal).filter(bool)


@FAST
@given(st.lists(_LABEL, min_size=1, max_size=10, unique_by=str.casefold))
def test_label_list_round_trips_through_a_file_and_the_option(tmp: Path, labels: list[str]) -> None:
    """A cleaned list joined with newlines reads back as itself (``#`` lines are comments, so no label may start
    with ``#``; a byte-order mark at the very start is dropped as an encoding mark)."""
    labels = [label for label in labels if not label.startswith(("#", "\ufeff"))] or ["x"]
    path = _write(tmp, "labels.txt", "\n".join(labels) + "\n")
    assert read_labels_file(path) == labels
    assert clean_labels(gather_labels(None, path)) == (labels, [])
    if not any("," in label for label in labels):  # the option splits on commas: labels with commas need a file
        assert clean_labels(parse_labels_arg(", ".join(labels)))[0] == labels


@FAST
@given(st.binary(max_size=200), st.sampled_from(["txt", "csv", "json"]))
@example(b"\xff\xfe", "txt")
@example(b"label\n\x00", "csv")
@example(b'{"labels": [1]}', "json")
def test_labels_file_any_bytes(tmp: Path, data: bytes, suffix: str) -> None:
    path = _write(tmp, f"labels.{suffix}", data)
    try:
        labels = read_labels_file(path)
    except InputError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    assert labels and all(label and label == _normal(label) for label in labels)


# --------------------------------------------------------------------------------------------------- manifests
_CELL = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.integers(min_value=10**300, max_value=10**400) | st.floats(allow_nan=True) | _CELL,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_CELL, inner, max_size=3),
    max_leaves=8,
)
_JSON_ROW = st.dictionaries(
    st.sampled_from(["path", "video", "label", "labels", "start", "end", "start_s", "end_s", "segments", "other"]),
    _JSON_VALUE | st.lists(st.dictionaries(st.sampled_from(["start", "end", "labels", "label"]), _JSON_VALUE), max_size=3),
    max_size=6,
)


def _check_manifest(manifest: Manifest) -> None:
    assert isinstance(manifest, Manifest)
    for record in manifest.records:
        assert record.path and all(0 <= i < len(manifest.classes) for i in record.labels)
        assert list(record.labels) == sorted(set(record.labels))
        if record.start_s is not None and record.end_s is not None:
            assert record.end_s > record.start_s >= 0
        for seg in record.segments:
            assert seg.end_s > seg.start_s >= 0 and set(seg.labels) <= set(record.labels)
    for problem in manifest.problems:
        assert "\n" not in str(problem) and problem.row is None or problem.row >= 1


@FAST
@given(st.binary(max_size=300), st.sampled_from(["csv", "tsv", "jsonl", "txt"]), st.booleans())
@example(b'path,label\na.mp4,x\n"unterminated', "csv", False)
@example(b"path,label\n", "csv", True)
@example(b"{", "txt", False)
def test_manifest_any_bytes(tmp: Path, data: bytes, suffix: str, check_files: bool) -> None:
    path = _write(tmp, f"manifest.{suffix}", data)
    try:
        manifest = read_manifest(path, check_files=check_files)
    except InputError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    _check_manifest(manifest)


@FAST
@given(st.lists(_JSON_ROW, max_size=5), st.booleans())
def test_manifest_any_jsonl_objects(tmp: Path, rows: list[dict], check_files: bool) -> None:
    path = _write(tmp, "rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    manifest = read_manifest(path, check_files=check_files)  # a bad row is a problem, never an exception
    _check_manifest(manifest)
    assert len(manifest.records) + len(manifest.problems) == len(rows)


@FAST
@given(st.lists(st.lists(_CELL, min_size=1, max_size=5), max_size=6), st.booleans())
def test_manifest_any_csv_cells(tmp: Path, rows: list[list[str]], check_files: bool) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "label", "start", "end"])
    writer.writerows(rows)
    manifest = read_manifest(_write(tmp, "cells.csv", buffer.getvalue()), check_files=check_files)
    _check_manifest(manifest)


_NAME = st.text("abcdefghij klmnop_-é日", min_size=1, max_size=10).map(_normal).filter(bool)


@st.composite
def _manifests(draw) -> Manifest:
    """A manifest whose record paths are relative names (the test puts them under its folder)."""
    classes = draw(st.lists(_NAME, min_size=1, max_size=5, unique_by=lambda n: normalise_class_name(n).casefold()))
    records = []
    for row in range(draw(st.integers(0, 6))):
        start = draw(st.none() | st.floats(0, 1000, allow_nan=False) | st.integers(0, 1000))
        end = draw(st.none() | st.floats(0, 2000, allow_nan=False))
        if start is not None and end is not None and end <= start:
            end = None
        segments = []
        lo = float(start or 0.0)
        for _ in range(draw(st.integers(0, 2))):
            width = draw(st.floats(0.5, 10))
            if end is not None and lo + width > end:
                break
            segments.append(Segment(lo, lo + width, tuple(sorted(set(draw(st.lists(st.integers(0, len(classes) - 1), min_size=1, max_size=2)))))))
            lo += width
        own = set(draw(st.lists(st.integers(0, len(classes) - 1), min_size=1, max_size=3)))
        labels = tuple(sorted(own.union(*(s.labels for s in segments))))
        name = draw(_NAME).replace(" ", "_").strip("_-") or "v"
        records.append(VideoRecord(f"videos/{name}_{row}.mp4", labels, start, end, None, tuple(segments)))
    return Manifest(records, classes, [], "generated")


@FAST
@given(_manifests())
def test_manifest_round_trip(tmp: Path, generated: Manifest) -> None:
    records = [dataclasses.replace(r, path=str(tmp / r.path)) for r in generated.records]
    manifest = dataclasses.replace(generated, records=records)
    out = write_manifest_jsonl(manifest, tmp / "round.jsonl")
    back = read_manifest(out, classes=manifest.classes, check_files=False)
    assert back.problems == [] and back.classes == manifest.classes
    assert [(r.path, r.labels, r.start_s, r.end_s, r.segments) for r in back.records] == [
        (r.path, r.labels, r.start_s, r.end_s, r.segments) for r in manifest.records
    ]
    assert [r.row for r in back.records] == list(range(1, len(manifest.records) + 1))
    assert manifest_jsonl_text(back, relative_to=tmp) == manifest_jsonl_text(manifest, relative_to=tmp)


def test_manifest_huge_integer_time_is_a_row_problem(tmp: Path) -> None:
    path = _write(tmp, "huge.jsonl", '{"path": "a.mp4", "label": "x", "start": 1' + "0" * 400 + "}\n")
    manifest = read_manifest(path, check_files=False)
    assert manifest.records == [] and [p.kind for p in manifest.problems] == ["bad time range"]


def test_manifest_nul_in_path_is_a_row_problem(tmp: Path) -> None:
    path = _write(tmp, "nul.csv", "path,label\n~a\x00b/x.mp4,y\nok.mp4,y\n")
    manifest = read_manifest(path, check_files=False)
    assert [r.path.endswith("ok.mp4") for r in manifest.records] == [True] and len(manifest.problems) == 1


# --------------------------------------------------------------------------------------------------- samplers
_SPECS = st.builds(
    SamplerSpec,
    kind=st.sampled_from(["uniform", "dense"]),
    frames=st.integers(1, 32),
    stride=st.integers(1, 8),
    temporal_views=st.integers(1, 5),
    spatial_crops=st.sampled_from([1, 3]),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_SPECS, st.integers(1, 5000), st.booleans(), st.integers(0, 2**32 - 1))
def test_sample_indices(spec: SamplerSpec, num_frames: int, train: bool, seed: int) -> None:
    idx = sample_indices(spec, num_frames, train=train, rng=seed)
    assert idx.shape == (spec.temporal_views, spec.frames) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < num_frames
    np.testing.assert_array_equal(idx, sample_indices(spec, num_frames, train=train, rng=seed))  # deterministic
    span = (spec.frames - 1) * spec.stride + 1
    for row in idx:
        if spec.kind == "uniform":
            assert np.all(np.diff(row) >= 0)  # monotone non-decreasing
            if num_frames >= spec.frames:
                assert len(set(row.tolist())) == spec.frames  # one distinct frame per segment
        elif num_frames >= span:  # dense: frames*stride window, consecutive, stride apart
            assert np.all(np.diff(row) == spec.stride) and row[-1] - row[0] == span - 1
        else:  # shorter than the window: the clip loops
            np.testing.assert_array_equal(row, (row[0] + np.arange(spec.frames) * spec.stride) % num_frames)
    if not train and spec.kind == "uniform" and num_frames >= spec.frames:  # frame i lies in segment i's span
        i = np.arange(spec.frames)
        lo, hi = i * num_frames // spec.frames, -((-(i + 1) * num_frames) // spec.frames)  # floor / ceil
        assert np.all((idx >= lo) & (idx < hi))
    if not train and spec.temporal_views > 1 and spec.kind == "dense":
        assert np.all(np.diff(idx[:, 0]) >= 0) or num_frames < span  # clips spread forward in time


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(1, 3000), st.integers(1, 64), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_train_sampling_stays_in_its_window(num_frames: int, frames: int, stride: int, seed: int) -> None:
    idx = uniform_segments(num_frames, frames, train=True, rng=seed)
    lo = np.arange(frames) * num_frames // frames
    hi = np.maximum((np.arange(frames) + 1) * num_frames // frames, lo + 1)
    assert np.all((idx >= lo) & (idx < hi))
    clip = dense_clip(num_frames, frames, stride, train=True, rng=seed)
    np.testing.assert_array_equal(clip, (clip[0] + np.arange(frames) * stride) % num_frames)
    assert 0 <= clip[0] <= max(0, num_frames - ((frames - 1) * stride + 1))


@FAST
@given(st.integers(-5, 0) | st.just(True) | st.just(2.5))
def test_bad_frame_counts_are_input_errors(num_frames) -> None:
    with pytest.raises(InputError):
        sample_indices(SamplerSpec(), num_frames)
