"""Training-vocabulary filtering (multi-label §4.1): block lists, minimum class counts, the remap (checked against a
brute-force recomputation), the recipe wiring (data.min_class_count / data.block_list in load_splits) and
``openvocab data filter``."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from openvocab.data import Manifest, RowProblem, Segment, VideoRecord, filter_vocabulary, read_block_list, read_manifest
from openvocab.data.vocabulary import block_key
from openvocab.errors import InputError
from openvocab.train.config import DataConfig
from openvocab.train.data_setup import load_splits

CLASSES = ["Minecraft", "dog", "Grand Theft Auto V", "cat", "rare bird", "Apply_Eye_Makeup", "guitar"]


def _manifest() -> Manifest:
    labels = [(0, 1), (1, 3), (2,), (1,), (3, 6), (4, 2), (0,), (5, 1), (6,), (1, 6)]
    records = [VideoRecord(f"v{i}.mp4", lab, row=i + 1) for i, lab in enumerate(labels)]
    records[0] = VideoRecord("v0.mp4", (0, 1), row=1, segments=(Segment(0.0, 1.0, (0,)), Segment(1.0, 2.0, (1,))))
    return Manifest(records, list(CLASSES), [RowProblem("m", 99, "missing file x", "missing file")], "m")


def test_block_list_file_comments_case_and_spacing(tmp_path: Path) -> None:
    path = tmp_path / "block.txt"
    path.write_text("# video game titles\n\n  minecraft  \nGRAND  theft auto v\n   # an indented comment\napply eye makeup\nNo Such Game\nMINECRAFT\n")
    assert read_block_list(path) == ["minecraft", "GRAND theft auto v", "apply eye makeup", "No Such Game"]
    assert block_key("  Grand  Theft Auto V ") == block_key("grand theft auto v")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    assert read_block_list(tmp_path / "empty.txt") == []
    with pytest.raises(InputError, match="block list not found"):
        read_block_list(tmp_path / "missing.txt")


def test_filter_counts_and_block_list() -> None:
    m = _manifest()
    assert m.class_counts() == [2, 5, 2, 2, 1, 1, 3]
    blocked = ["minecraft", "GRAND theft auto v", "Apply Eye Makeup", "No Such Game", "no such  game"]
    out, report = filter_vocabulary(m, min_count=2, block_list=blocked)
    assert out.classes == ["dog", "cat", "guitar"]
    assert report.kept == (1, 3, 6)
    assert report.blocked == ("Minecraft", "Grand Theft Auto V", "Apply_Eye_Makeup")  # case, spacing and identifier spelling ignored
    assert report.rare == ("rare bird",)  # 1 video < 2
    assert report.not_found == ("No Such Game",)  # reported once
    # v2 (game only), v5 (rare bird + game), v6 (game only) are left without labels
    assert [r.path for r in out.records] == ["v0.mp4", "v1.mp4", "v3.mp4", "v4.mp4", "v7.mp4", "v8.mp4", "v9.mp4"]
    assert [r.labels for r in out.records] == [(0,), (0, 1), (0,), (1, 2), (0,), (2,), (0, 2)]
    assert out.records[0].segments == (Segment(1.0, 2.0, (0,)),)  # the Minecraft segment went with its class
    assert (report.classes_before, report.classes_after, report.classes_removed) == (7, 3, 4)
    assert (report.records_before, report.records_after, report.records_dropped) == (10, 7, 3)
    assert out.problems == m.problems and out.source == "m"
    assert report.summary() == (
        "vocabulary 7 -> 3 classes (1 with fewer than 2 videos, 3 block-listed); 3 videos left without labels dropped; 1 block-list name not found: No Such Game"
    )
    assert m.classes == CLASSES and len(m.records) == 10  # the input is untouched
    same, nothing = filter_vocabulary(m)
    assert same.classes == m.classes and [r.labels for r in same.records] == [r.labels for r in m.records]
    assert nothing.summary() == "vocabulary 7 -> 7 classes; 0 videos left without labels dropped"
    with pytest.raises(InputError, match="min_count"):
        filter_vocabulary(m, min_count=-1)
    with pytest.raises(InputError, match="list of class names"):
        filter_vocabulary(m, block_list="minecraft")


@pytest.mark.parametrize("seed", range(5))
def test_filter_matches_a_brute_force_recomputation(seed: int) -> None:
    rng = random.Random(seed)
    classes = [f"class {i}" for i in range(30)]
    records = [VideoRecord(f"v{i}", tuple(sorted(rng.sample(range(30), rng.randint(1, 4)))), row=i) for i in range(200)]
    m = Manifest(records, classes)
    blocked = rng.sample(classes, 5)
    min_count = rng.randint(10, 30)
    out, report = filter_vocabulary(m, min_count=min_count, block_list=[b.upper() for b in blocked])
    # brute force: count by name, keep by name, compare by name
    counts = {c: sum(c in {classes[i] for i in r.labels} for r in records) for c in classes}
    kept = [c for c in classes if c not in blocked and counts[c] >= min_count]
    expected = [(r.path, sorted(classes[i] for i in r.labels if classes[i] in kept)) for r in records]
    expected = [(path, names) for path, names in expected if names]
    assert out.classes == kept
    assert [(r.path, sorted(out.classes[i] for i in r.labels)) for r in out.records] == expected
    assert all(list(r.labels) == sorted(r.labels) for r in out.records)
    assert report.records_dropped == len(records) - len(expected)
    assert set(report.rare) == {c for c in classes if c not in blocked and counts[c] < min_count}
    assert out.class_counts() == [counts[c] for c in kept]


# ---------------------------------------------------------------------- recipes: data.min_class_count / data.block_list
def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_load_splits_filters_the_training_vocabulary_only(tmp_path: Path, caplog) -> None:
    for name in ("a", "b", "c", "d", "e"):
        (tmp_path / f"{name}.mp4").write_bytes(b"")
    train = _jsonl(
        tmp_path / "train.jsonl",
        [
            {"path": "a.mp4", "labels": ["dog", "Minecraft"]},
            {"path": "b.mp4", "labels": ["dog", "cat"]},
            {"path": "c.mp4", "labels": ["Minecraft"]},
            {"path": "d.mp4", "labels": ["cat", "owl"]},
            {"path": "e.mp4", "labels": ["cat"]},
        ],
    )  # counts: Minecraft 2, cat 3, dog 2, owl 1
    val = _jsonl(tmp_path / "val.jsonl", [{"path": "a.mp4", "labels": ["Minecraft"]}, {"path": "b.mp4", "labels": ["owl", "dog"]}])
    (tmp_path / "block.txt").write_text("# games\nminecraft\nTetris\n")
    data = DataConfig(train=str(train), val=str(val), min_class_count=2, block_list=str(tmp_path / "block.txt"))
    with caplog.at_level(logging.INFO, logger="openvocab.train.data_setup"):
        train_m, val_m = load_splits(data)
    assert train_m.classes == ["cat", "dog"]
    assert [(Path(r.path).name, r.labels) for r in train_m.records] == [("a.mp4", (1,)), ("b.mp4", (0, 1)), ("d.mp4", (0,)), ("e.mp4", (0,))]
    # validation (scored by the trained head) follows the kept classes: a.mp4 (only Minecraft) goes, b.mp4 keeps dog
    assert val_m is not None and val_m.classes == ["cat", "dog"]
    assert [(Path(r.path).name, r.labels) for r in val_m.records] == [("b.mp4", (1,))]
    lines = [r.getMessage() for r in caplog.records if "vocabulary" in r.getMessage()]
    assert lines == [
        "training vocabulary 4 -> 2 classes (1 with fewer than 2 videos, 1 block-listed); 1 video left without labels dropped; "
        "1 block-list name not found: Tetris"
    ]
    # min_class_count alone; without either setting nothing changes
    train_m, _ = load_splits(DataConfig(train=str(train), min_class_count=3), log_problems=False)
    assert train_m.classes == ["cat"] and [Path(r.path).name for r in train_m.records] == ["b.mp4", "d.mp4", "e.mp4"]
    assert load_splits(DataConfig(train=str(train)), log_problems=False)[0].classes == ["Minecraft", "cat", "dog", "owl"]
    with pytest.raises(InputError, match="leave no training class"):
        load_splits(DataConfig(train=str(train), min_class_count=10), log_problems=False)
    with pytest.raises(InputError, match="block list not found"):
        load_splits(DataConfig(train=str(train), block_list=str(tmp_path / "nope.txt")), log_problems=False)


# ---------------------------------------------------------------------- openvocab data filter
def test_cli_data_filter(tmp_path: Path, cli) -> None:
    (tmp_path / "videos").mkdir()
    for name in ("a", "b", "c", "d"):
        (tmp_path / "videos" / f"{name}.mp4").write_bytes(b"")
    source = _jsonl(
        tmp_path / "train.jsonl",
        [
            {"path": "videos/a.mp4", "labels": ["dog", "Minecraft"], "segments": [{"start": 0, "end": 2, "labels": ["Minecraft"]}]},
            {"path": "videos/b.mp4", "labels": ["dog", "cat"], "start": 1, "end": 5},
            {"path": "videos/c.mp4", "labels": ["Minecraft"]},
            {"path": "videos/d.mp4", "labels": ["cat", "owl"]},
            {"path": "videos/missing.mp4", "labels": ["cat"]},
        ],
    )
    (tmp_path / "block.txt").write_text("MINECRAFT\n")
    out = tmp_path / "out" / "filtered.jsonl"
    code, stdout, stderr = cli("data", "filter", str(source), str(out), "--min-count", "2", "--block-list", str(tmp_path / "block.txt"),
                               "--classes-out", str(tmp_path / "out" / "classes.txt"))  # fmt: skip
    assert code == 0, stderr
    assert stderr.startswith(f"skipped: {source}:5: missing file")
    assert stdout.strip() == (
        f"wrote {out}: 3 videos, 2 classes, 1.33 labels per video; vocabulary 4 -> 2 classes (1 with fewer than 2 videos, 1 block-listed); "
        "1 video left without labels dropped"
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    videos = tmp_path / "videos"
    assert rows == [
        {"path": str(videos / "a.mp4"), "labels": ["dog"]},  # its Minecraft segment is gone
        {"path": str(videos / "b.mp4"), "labels": ["cat", "dog"], "start": 1, "end": 5},
        {"path": str(videos / "d.mp4"), "labels": ["cat"]},
    ]
    assert (tmp_path / "out" / "classes.txt").read_text() == "cat\ndog\n"
    back = read_manifest(out)
    assert back.classes == ["cat", "dog"] and len(back) == 3 and not back.problems
    # bad input: one line, non-zero exit, no traceback
    for args, message in [
        ((str(tmp_path / "nope.jsonl"), str(out)), f"error: {tmp_path / 'nope.jsonl'}: manifest not found"),
        ((str(source), str(out), "--block-list", str(tmp_path / "nope.txt")), f"error: {tmp_path / 'nope.txt'}: block list not found"),
        ((str(source), str(out), "--min-count", "-1"), "error: --min-count must be >= 0"),
        ((str(source), str(out), "--min-count", "50"), f"error: no videos left after filtering {source}"),
        ((str(source), str(out), "--format", "youtube8m"), "error: --format must be one of manifest,"),
    ]:
        code, stdout, stderr = cli("data", "filter", *args)
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and errors[0].startswith(message), (args, stderr)
        assert stdout == ""
