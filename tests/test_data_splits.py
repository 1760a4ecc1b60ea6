"""Base/novel splits written as manifests (MOV §4.1): exact counts (Kinetics-700 400/300, VGGSound 154/155),
determinism per seed, files that read back through read_manifest, the synthetic benchmark's layout, and
`openvocab data split` with one-line errors.

Videos are empty placeholder files: the readers only check that they exist.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openvocab.data import Manifest, VideoRecord, read_manifest
from openvocab.data.splits import SPLIT_FILES, read_split_folder, split_classes, write_base_novel_split
from openvocab.data.synth import SynthSpec, generate
from openvocab.errors import InputError

FILES = ["base_classes.txt", "classes.txt", "novel_classes.txt", "novel_test.csv", "splits.json", "test.csv", "train.csv"]


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


@pytest.fixture
def vggsound_like(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A VGGSound CSV of 309 classes (labels with commas), one train and one test clip each, plus one missing clip."""
    classes = [f"sound {i:03d}, variant {i % 7}" for i in range(309)]
    root = tmp_path / "video"
    lines = []
    for i, name in enumerate(classes):
        for j, split in enumerate(("train", "test")):
            vid = f"v{i:03d}{split}"
            lines.append(f'{vid},{j * 10},"{name}",{split}')
            _touch(root / f"{vid}_{j * 10:06d}.mp4")
    lines.append('gone,0,"sound 000, variant 0",test')  # no file: a skipped row
    (tmp_path / "vggsound.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "vggsound.csv", root, classes


# ---------------------------------------------------------------------- class splits
def test_exact_counts_of_the_mov_benchmarks_and_determinism() -> None:
    k700 = [f"action {i}" for i in range(700)]
    split = split_classes(k700, novel=300, seed=0)
    assert (len(split.base), len(split.novel)) == (400, 300)
    assert sorted(split.base + split.novel) == list(range(700)) and split.base == sorted(split.base)
    vgg = [f"sound {i}" for i in range(309)]
    assert [len(x) for x in (split_classes(vgg, novel=155).base, split_classes(vgg, novel=155).novel)] == [154, 155]
    assert split_classes(k700, novel=300, seed=0) == split  # same seed, same split
    assert split_classes(k700, novel=300, seed=1).novel != split.novel
    shuffled = k700[::-1]  # the split depends on the names, not their order
    assert sorted(split_classes(shuffled, novel=300, seed=0).novel_names) == sorted(split.novel_names)
    assert len(split_classes(vgg, novel_fraction=0.5).novel) == 155  # floor(0.5 * 309 + 0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give the number of novel classes"),
        ({"novel": 3, "novel_fraction": 0.5}, "not both"),
        ({"novel": 10}, "between 1 and 9 .* got 10"),
        ({"novel": 0}, "between 1 and 9"),
        ({"novel_fraction": 1.0}, "strictly between 0 and 1"),
        ({"novel": 3, "seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_impossible_splits_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        split_classes([f"c{i}" for i in range(10)], **kwargs)


# ---------------------------------------------------------------------- written folders
def test_vggsound_split_files_round_trip(cli, vggsound_like, tmp_path: Path) -> None:
    csv_path, root, classes = vggsound_like
    out = tmp_path / "split"
    args = [str(csv_path), str(csv_path), str(out), "--format", "vggsound", "--root", str(root), "--novel", "155", "--seed", "3"]
    code, stdout, err = cli("data", "split", *args)
    assert code == 0, err
    assert (
        stdout.strip() == f"wrote a base/novel split of 309 classes (154 base, 155 novel, seed 3) to {out}: train 154, test 154, novel_test 155; 1 row skipped"
    )
    assert err.strip() == f"skipped: {csv_path}:619: missing file: no gone_000000.mp4 or other gone video in {root.absolute()}"
    assert sorted(p.name for p in out.iterdir()) == FILES  # no temporary files left behind
    meta = json.loads((out / "splits.json").read_text())
    assert meta["seed"] == 3 and meta["num_classes"] == {"all": 309, "base": 154, "novel": 155}
    assert meta["counts"] == {"train": 154, "test": 154, "novel_test": 155}
    assert meta["left_out"] == {"train_novel": 155, "mixed": 0, "unlabelled": 0}
    assert meta["splits"] == SPLIT_FILES and meta["skipped_rows"] == {"train": 0, "test": 1}  # the 'gone' test row
    assert meta["sources"]["format"] == "vggsound" and meta["sources"]["train_path"] == str(csv_path.absolute())
    assert meta["classes"] == sorted(classes) and meta["base"] == [meta["classes"][i] for i in meta["base_indices"]]
    base = (out / "base_classes.txt").read_text().splitlines()
    novel = (out / "novel_classes.txt").read_text().splitlines()
    assert base == meta["base"] and novel == meta["novel"] and not set(base) & set(novel)
    assert sorted(base + novel) == sorted(classes)
    # read back with read_manifest, indexed by the class files: labels with commas survive the CSV quoting
    train = read_manifest(out / "train.csv", classes=out / "base_classes.txt")
    test = read_manifest(out / "test.csv", classes=out / "base_classes.txt")
    novel_test = read_manifest(out / "novel_test.csv", classes=out / "novel_classes.txt")
    for m, names, split in ((train, base, "train"), (test, base, "test"), (novel_test, novel, "test")):
        assert not m.problems and m.classes == names
        assert sorted(m.classes[r.label] for r in m.records) == sorted(names)
        assert all(Path(r.path).is_file() and r.path.endswith(".mp4") and split in Path(r.path).name for r in m.records)
        assert all(r.start_s is None and r.end_s is None for r in m.records)
    folder = read_split_folder(out)
    assert sorted(folder) == ["novel_test", "test", "train"] and len(folder["novel_test"]) == 155
    # the same seed writes the same bytes; another seed another split
    again = tmp_path / "again"
    assert cli("data", "split", *args[:2], str(again), *args[3:])[0] == 0
    assert all((out / name).read_bytes() == (again / name).read_bytes() for name in FILES if name != "splits.json")
    other = tmp_path / "other"
    assert cli("data", "split", *args[:2], str(other), *args[3:-1], "4")[0] == 0
    assert (other / "novel_classes.txt").read_text() != (out / "novel_classes.txt").read_text()


def test_kinetics_split_keeps_time_windows(cli, tmp_path: Path) -> None:
    root = tmp_path / "k700"
    rows = ["label,youtube_id,time_start,time_end,split"]
    val = ["label,youtube_id,time_start,time_end,split"]
    for i in range(10):
        label = f"action {i}"
        rows.append(f"{label},tr{i:09d},4,14,train")
        _touch(root / label / f"tr{i:09d}_000004_000014.mp4")  # a trimmed clip: no window
        val.append(f"{label},va{i:09d},20,30,val")
        _touch(root / f"va{i:09d}.mkv")  # the full video: the CSV's window
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "validate.csv").write_text("\n".join(val) + "\n")
    out = tmp_path / "split"
    code, stdout, err = cli(
        "data", "split", str(tmp_path / "train.csv"), str(tmp_path / "validate.csv"), str(out), "--format", "kinetics", "--root", str(root), "--novel", "4"
    )
    assert code == 0, err
    assert stdout.strip() == f"wrote a base/novel split of 10 classes (6 base, 4 novel, seed 0) to {out}: train 6, test 6, novel_test 4"
    expected = split_classes([f"action {i}" for i in range(10)], novel=4, seed=0)
    assert (out / "novel_classes.txt").read_text().splitlines() == expected.novel_names  # the library's split
    test = read_manifest(out / "test.csv", classes=out / "base_classes.txt")
    assert [(r.start_s, r.end_s) for r in test.records] == [(20.0, 30.0)] * 6
    train = read_manifest(out / "train.csv", classes=out / "base_classes.txt")
    assert [(r.start_s, r.end_s) for r in train.records] == [(None, None)] * 6


def test_multi_label_rows_and_reserved_names(tmp_path: Path) -> None:
    def record(name: str, *labels: int) -> VideoRecord:
        _touch(tmp_path / "v" / name)
        return VideoRecord(str(tmp_path / "v" / name), labels)

    classes = ["a", "b", "c", "d"]
    split = split_classes(classes, novel=2, seed=0)
    b0, b1 = split.base
    n0, n1 = split.novel
    train = Manifest([record("t1", b0, b1), record("t2", b0, n0), record("t3", n1), record("t4")], classes, source="train")
    test = Manifest([record("e1", b1), record("e2", n0, n1), record("e3", b0, n1)], classes, source="test")
    meta = write_base_novel_split(train, test, tmp_path / "out", novel=2, seed=0)
    assert meta["counts"] == {"train": 1, "test": 1, "novel_test": 1}
    assert meta["left_out"] == {"train_novel": 1, "mixed": 2, "unlabelled": 1}
    back = read_manifest(tmp_path / "out" / "train.csv", classes=tmp_path / "out" / "base_classes.txt")
    assert [r.labels for r in back.records] == [(0, 1)]  # both base labels, joined by '|'
    novel = read_manifest(tmp_path / "out" / "novel_test.csv", classes=tmp_path / "out" / "novel_classes.txt")
    assert [r.labels for r in novel.records] == [(0, 1)]
    bad = Manifest([record("x", 0)], ["rock|pop", "jazz"], source="bad")
    with pytest.raises(InputError, match="class 'rock|pop' cannot be written"):
        write_base_novel_split(bad, bad, tmp_path / "bad", novel=1)
    assert not (tmp_path / "bad").exists()
    _touch(tmp_path / "file")
    with pytest.raises(InputError, match="output exists and is not a directory"):
        write_base_novel_split(train, test, tmp_path / "file", novel=2)


def test_the_synthetic_benchmark_has_the_same_layout(tmp_path: Path) -> None:
    spec = SynthSpec(shapes=("circle",), colours=("red", "blue"), motions=("left", "right"), clips_per_class=2, frames=2, size=16, novel_fraction=0.5)
    out = generate(spec, tmp_path / "synth", seed=0)
    assert set(FILES) <= {p.name for p in out.iterdir()}
    meta = json.loads((out / "splits.json").read_text())
    for key in ("seed", "classes", "base", "novel", "base_indices", "novel_indices", "splits", "counts"):
        assert key in meta
    assert {k: v for k, v in meta["splits"].items() if k != "val"} == SPLIT_FILES
    folder = read_split_folder(out)
    assert sorted(folder) == ["novel_test", "test", "train", "val"]
    assert folder["novel_test"].classes == meta["novel"] and folder["train"].classes == meta["base"]
    assert len(folder["novel_test"]) == meta["counts"]["novel_test"] and not folder["train"].problems
    # the same class split as `openvocab data split --novel-fraction 0.5 --seed 0` on these classes
    assert split_classes(meta["classes"], novel_fraction=0.5, seed=0).novel_names == meta["novel"]
    with pytest.raises(InputError, match="not a split folder"):
        read_split_folder(tmp_path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--novel", "400"], "error: the number of novel classes must be between 1 and 308"),
        (["--novel", "5", "--novel-fraction", "0.5"], "not both"),
        ([], "error: give the number of novel classes (--novel N) or their fraction"),
        (["--novel", "5", "--format", "youtube"], "error: --format must be one of manifest"),
    ],
)
def test_cli_bad_options_give_one_error_line(cli, vggsound_like, tmp_path: Path, extra: list[str], message: str) -> None:
    csv_path, root, _ = vggsound_like
    base = [str(csv_path), str(csv_path), str(tmp_path / "out")]
    fmt = [] if "--format" in extra else ["--format", "vggsound"]
    code, out, err = cli("data", "split", *base, *fmt, "--root", str(root), *extra)
    assert code == 2 and out == ""
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.splitlines()[-1]]
    assert message in err.splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_cli_bad_inputs_give_one_error_line(cli, tmp_path: Path) -> None:
    code, out, err = cli("data", "split", str(tmp_path / "nope.csv"), str(tmp_path / "nope.csv"), str(tmp_path / "out"), "--novel", "2")
    assert code == 2 and err.strip() == f"error: {tmp_path / 'nope.csv'}: manifest not found"
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\n")
    code, out, err = cli("data", "split", str(tmp_path / "k.csv"), str(tmp_path / "k.csv"), str(tmp_path / "out"), "--novel", "2", "--format", "kinetics")
    assert code == 2 and err.strip() == "error: data.format=kinetics needs data.root (the folder holding the videos)"
    (tmp_path / "videos").mkdir()
    args = [str(tmp_path / "k.csv"), str(tmp_path / "k.csv"), str(tmp_path / "out"), "--novel", "2", "--format", "kinetics", "--root", str(tmp_path / "videos")]
    code, out, err = cli("data", "split", *args)
    assert code == 2 and err.strip() == "error: no usable videos in kinetics k (it lists none)"
