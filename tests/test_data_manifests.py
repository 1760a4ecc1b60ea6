"""Manifests: the generic CSV/JSONL reader, Kinetics/UCF101/HMDB51 layouts, subsets and base/novel splits.

Dataset trees are built in tmp_path: most videos are empty placeholders (the readers only check existence), a
couple are real clips written with write_video, and frame folders are folders of (empty) .jpg files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openvocab.data import (
    Manifest,
    RowProblem,
    VideoRecord,
    base_novel_split,
    read_hmdb51,
    read_kinetics_csv,
    read_manifest,
    read_ucf101,
)
from openvocab.errors import InputError
from openvocab.io.decode import open_video
from openvocab.io.encode import write_video


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _frame_folder(path: Path, count: int = 3) -> Path:
    for i in range(count):
        _touch(path / f"img_{i:05d}.jpg")
    return path


def _real_clip(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.full((6, 32, 32, 3), value, np.uint8)
    return write_video(path, frames, fps=10)


def _problems(manifest: Manifest) -> list[tuple[int | None, str]]:
    return [(p.row, p.kind) for p in manifest.problems]


# ---------------------------------------------------------------------- generic CSV / JSONL
def _generic_tree(tmp_path: Path) -> Path:
    _real_clip(tmp_path / "videos" / "a.mp4")
    _touch(tmp_path / "videos" / "b.mp4")
    _frame_folder(tmp_path / "frames" / "c")
    (tmp_path / "frames" / "empty").mkdir(parents=True)
    return tmp_path


def test_csv_manifest_rows_problems_and_summary(tmp_path: Path) -> None:
    _generic_tree(tmp_path)
    text = (
        "path,label,start,end\n"  # line 1
        "videos/a.mp4,yoga,,\n"  # 2 ok
        "videos/b.mp4,yoga|playing guitar,1.5,4\n"  # 3 ok, multi-label with a window
        "videos/b.mp4,yoga,1\n"  # 4 wrong column count
        ",yoga,,\n"  # 5 empty path
        "videos/a.mp4,,,\n"  # 6 missing label
        "videos/nope.mp4,yoga,,\n"  # 7 missing file
        "videos/a.mp4,yoga,abc,\n"  # 8 bad start
        "videos/a.mp4,yoga,5,2\n"  # 9 end before start
        "\n"  # 10 blank: ignored
        "frames/c,dog barking; yoga,,\n"  # 11 ok: frame folder, ';' separator
        "frames/empty,yoga,,\n"  # 12 a folder without images is not a video
    )
    (tmp_path / "train.csv").write_text(text)
    m = read_manifest(tmp_path / "train.csv")
    assert m.classes == ["dog barking", "playing guitar", "yoga"]  # sorted, whatever the row order
    assert [r.row for r in m.records] == [2, 3, 11]
    assert [r.labels for r in m.records] == [(2,), (1, 2), (0, 2)]
    assert m.records[0].path == str((tmp_path / "videos" / "a.mp4").absolute())
    assert (m.records[1].start_s, m.records[1].end_s) == (1.5, 4.0)
    assert m.records[0].start_s is None and m.records[0].label == 2
    assert _problems(m) == [
        (4, "malformed row"), (5, "empty path"), (6, "missing label"), (7, "missing file"),
        (8, "bad time range"), (9, "bad time range"), (12, "missing file"),
    ]  # fmt: skip
    assert str(m.problems[0]) == f"{tmp_path / 'train.csv'}:4: malformed row: expected 4 columns, got 3"
    assert "'abc' is not a time" in m.problems[4].message
    assert "end 2 s is not after start 5 s" in m.problems[5].message
    assert m.summary() == (
        f"{tmp_path / 'train.csv'}: 3 videos, 3 classes, 7 rows skipped (2 bad time ranges, 2 missing files, 1 empty path, 1 malformed row, 1 missing label)"
    )
    # the real clip decodes through the path the record carries
    assert open_video(m.records[0].path).info.num_frames == 6


def test_fixed_vocabulary_unknown_labels_and_normalised_matching(tmp_path: Path) -> None:
    _generic_tree(tmp_path)
    (tmp_path / "labels.txt").write_text("apply eye makeup\nyoga\n")
    (tmp_path / "m.csv").write_text("Path,Labels\nvideos/a.mp4,ApplyEyeMakeup\nvideos/b.mp4,skydiving\nvideos/b.mp4,YOGA|apply_eye_makeup\n")
    m = read_manifest(tmp_path / "m.csv", classes=tmp_path / "labels.txt")
    assert m.classes == ["apply eye makeup", "yoga"]
    assert [r.labels for r in m.records] == [(0,), (0, 1)]
    assert _problems(m) == [(3, "unknown label")]
    assert "unknown label 'skydiving'" in str(m.problems[0])
    assert m.summary().endswith("2 videos, 2 classes, 1 row skipped (1 unknown label)")
    # the same from a list; a list with duplicates is refused
    assert read_manifest(tmp_path / "m.csv", classes=["yoga", "apply eye makeup"]).records[0].labels == (1,)
    with pytest.raises(InputError, match="twice"):
        read_manifest(tmp_path / "m.csv", classes=["yoga", "Yoga"])


def test_jsonl_manifest(tmp_path: Path) -> None:
    _generic_tree(tmp_path)
    lines = [
        '{"path": "videos/a.mp4", "label": "yoga"}',
        '{"path": "videos/b.mp4", "labels": ["yoga", "dog barking"], "start": 0, "end_s": 2.5}',
        "{not json",
        '["a list"]',
        '{"path": "videos/b.mp4", "labels": 3}',
        "",
        '{"path": "videos/b.mp4", "label": "yoga", "start": "x"}',
        '{"path": "frames/c", "labels": "dog barking|yoga"}',
        '{"path": "", "label": "yoga"}',
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    m = read_manifest(tmp_path / "m.jsonl")
    assert m.classes == ["dog barking", "yoga"]
    assert [(r.row, r.labels) for r in m.records] == [(1, (1,)), (2, (0, 1)), (8, (0, 1))]
    assert (m.records[1].start_s, m.records[1].end_s) == (0.0, 2.5)
    assert _problems(m) == [(3, "malformed row"), (4, "malformed row"), (5, "malformed row"), (7, "bad time range"), (9, "empty path")]


def test_paths_resolve_against_root_and_check_files_off(tmp_path: Path) -> None:
    _generic_tree(tmp_path / "data")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "m.csv").write_text(f"path,label\nvideos/a.mp4,x\n{tmp_path / 'data' / 'videos' / 'b.mp4'},y\n")
    assert _problems(read_manifest(lists / "m.csv")) == [(2, "missing file")]  # relative to lists/ by default
    m = read_manifest(lists / "m.csv", root=tmp_path / "data")
    assert not m.problems and len(m) == 2
    m = read_manifest(lists / "m.csv", check_files=False)
    assert not m.problems and m.records[0].path == str(lists.absolute() / "videos" / "a.mp4")


def test_unreadable_files_raise_one_line_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="manifest not found") as info:
        read_manifest(tmp_path / "missing.csv")
    assert str(tmp_path / "missing.csv") in str(info.value)
    (tmp_path / "nolabel.csv").write_text("path,caption\na.mp4,hello\n")
    with pytest.raises(InputError, match="'label' or 'labels' column"):
        read_manifest(tmp_path / "nolabel.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        read_manifest(tmp_path / "empty.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00path")
    with pytest.raises(InputError, match="UTF-8"):
        read_manifest(tmp_path / "bin.csv")


def test_subset_reindexes_and_require_nonempty(tmp_path: Path) -> None:
    records = [
        VideoRecord("a", (0,), row=2),
        VideoRecord("b", (1,), row=3),
        VideoRecord("c", (2,), row=4),
        VideoRecord("d", (1, 2), row=5),
        VideoRecord("e", (0, 3), row=6),
        VideoRecord("f", (), row=7),
    ]
    m = Manifest(records, ["w", "x", "y", "z"], [RowProblem("m.csv", 9, "missing file q", "missing file")], "m.csv")
    sub = m.subset([2, 1])
    assert sub.classes == ["y", "x"]
    assert [(r.path, r.labels) for r in sub.records] == [("b", (1,)), ("c", (0,)), ("d", (1, 0))]
    assert sub.problems == m.problems and m.class_counts() == [2, 2, 2, 1]
    with pytest.raises(InputError, match="out of range"):
        m.subset([4])
    with pytest.raises(InputError, match="repeat"):
        m.subset([1, 1])
    assert m.require_nonempty() is m
    with pytest.raises(InputError) as info:
        Manifest([], ["x"], m.problems * 2, "m.csv").require_nonempty()
    assert str(info.value) == ("no usable videos in m.csv (2 rows skipped: 2 missing files; first: m.csv:9: missing file q)")
    assert str(RowProblem("s.txt", None, "note")) == "s.txt: note"


def test_base_novel_split_is_deterministic_and_disjoint() -> None:
    classes = [f"class {i}" for i in range(10)]
    base, novel = base_novel_split(classes, seed=3)
    assert (base, novel) == base_novel_split(classes, seed=3)
    assert len(novel) == 5 and sorted(base + novel) == list(range(10)) and base == sorted(base)
    # independent of the list order: the same NAMES are novel
    shuffled = classes[::-1]
    _, novel_rev = base_novel_split(shuffled, seed=3)
    assert sorted(shuffled[i] for i in novel_rev) == sorted(classes[i] for i in novel)
    assert len({tuple(base_novel_split(classes, seed=s)[1]) for s in range(10)}) > 1  # seeds differ
    assert base_novel_split(classes, novel_fraction=0.25)[1].__len__() == 3  # round(2.5) -> 3
    assert base_novel_split(classes, novel_fraction=0.0) == (list(range(10)), [])
    assert len(base_novel_split(["a", "b"], novel_fraction=0.1)[1]) == 1  # both sides non-empty
    with pytest.raises(InputError):
        base_novel_split(classes, novel_fraction=1.5)


# ---------------------------------------------------------------------- Kinetics
K_IDS = ["--07WQ2iBlw", "a_b-cdefghi", "zzzzzzzzzz1", "q1q1q1q1q1q", "missing0000", "nested00001", "frames00001"]


def _kinetics_tree(root: Path) -> None:
    _real_clip(root / "abseiling" / "--07WQ2iBlw_000010_000020.mp4")
    _touch(root / "air_drumming" / "a_b-cdefghi_000003_000013.mkv")  # label folder with '_' for spaces
    _touch(root / "zzzzzzzzzz1_000000_000010.webm")  # flat at the root
    _touch(root / "part2" / "deep" / "nested00001.mp4")  # a full video somewhere below
    _touch(root / "part2" / "nested000011.mp4")  # a longer id sharing the prefix: must not match
    _frame_folder(root / "abseiling" / "frames00001_000001_000011")
    _touch(root / "q1q1q1q1q1q_000005_000015.mp4")


def test_kinetics_csv_layouts_and_problems(tmp_path: Path) -> None:
    root = tmp_path / "k400"
    _kinetics_tree(root)
    csv_text = (
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "abseiling,--07WQ2iBlw,10,20,train,0\n"  # 2 label folder
        "air drumming,a_b-cdefghi,3,13,train,0\n"  # 3 underscored folder, mkv
        "abseiling,zzzzzzzzzz1,0,10,train,0\n"  # 4 root level
        "air drumming,missing0000,0,10,train,0\n"  # 5 missing
        "abseiling,nested00001,30,40,train,0\n"  # 6 full video: window from the CSV
        "abseiling,frames00001,1,11,train,0\n"  # 7 frame folder
        "air drumming,q1q1q1q1q1q,5,abc,train,0\n"  # 8 bad time
        "air drumming,q1q1q1q1q1q,15,5,train,0\n"  # 9 end before start
        "abseiling,q1q1q1q1q1q,5,15\n"  # 10 column count
        "abseiling,q1q1q1q1q1q,5,15,val,0\n"  # 11 other split: left out silently
        "skydiving,q1q1q1q1q1q,5,15,train,0\n"  # 12 unknown (fixed vocabulary)
    )
    (tmp_path / "train.csv").write_text(csv_text)
    m = read_kinetics_csv(tmp_path / "train.csv", video_root=root, split="train", classes=["abseiling", "air drumming"])
    assert [r.row for r in m.records] == [2, 3, 4, 6, 7]
    assert [r.labels for r in m.records] == [(0,), (1,), (0,), (0,), (0,)]
    paths = [Path(r.path).relative_to(root.absolute()).as_posix() for r in m.records]
    assert paths == [
        "abseiling/--07WQ2iBlw_000010_000020.mp4",
        "air_drumming/a_b-cdefghi_000003_000013.mkv",
        "zzzzzzzzzz1_000000_000010.webm",
        "part2/deep/nested00001.mp4",
        "abseiling/frames00001_000001_000011",
    ]
    assert (m.records[0].start_s, m.records[0].end_s) == (None, None)  # trimmed clip
    assert (m.records[3].start_s, m.records[3].end_s) == (30.0, 40.0)  # full video
    assert _problems(m) == [(5, "missing file"), (8, "bad time range"), (9, "bad time range"), (10, "malformed row"), (12, "unknown label")]
    assert "missing file: no missing0000_000000_000010.* or other missing0000 video under" in str(m.problems[0])
    assert m.summary() == ("kinetics train [train]: 5 videos, 2 classes, 5 rows skipped (2 bad time ranges, 1 malformed row, 1 missing file, 1 unknown label)")
    # open vocabulary, all splits; the val row now counts, the unknown label becomes a class
    m_all = read_kinetics_csv(tmp_path / "train.csv", video_root=root)
    assert m_all.classes == ["abseiling", "air drumming", "skydiving"] and len(m_all) == 7


def test_kinetics_test_csv_without_labels_and_no_file_check(tmp_path: Path) -> None:
    root = tmp_path / "test"
    _touch(root / "q1q1q1q1q1q_000005_000015.mp4")
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end,split\nq1q1q1q1q1q,5,15,test\nmissing0000,0,10,test\n")
    m = read_kinetics_csv(tmp_path / "test.csv", video_root=root)
    assert m.classes == [] and [r.labels for r in m.records] == [()]
    assert _problems(m) == [(3, "missing file")]
    m = read_kinetics_csv(tmp_path / "test.csv", video_root=tmp_path / "nowhere", check_files=False)
    assert len(m) == 2 and m.records[1].path.endswith("nowhere/missing0000_000000_000010.mp4")
    with pytest.raises(InputError, match="video root is not a directory"):
        read_kinetics_csv(tmp_path / "test.csv", video_root=tmp_path / "nowhere")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a Kinetics CSV"):
        read_kinetics_csv(tmp_path / "bad.csv", video_root=root)


def test_kinetics_with_the_real_k400_vocabulary(tmp_path: Path, shared_data: Path) -> None:
    vocabulary = shared_data / "labels" / "kinetics_k400.txt"
    names = vocabulary.read_text().splitlines()
    root = tmp_path / "videos"
    rows = ["label,youtube_id,time_start,time_end,split"]
    for i, name in enumerate(names[:40]):
        youtube_id = f"vid{i:08d}"
        folder = name.replace(" ", "_") if i % 2 else name
        _touch(root / folder / f"{youtube_id}_000000_000010.mp4")
        rows.append(f'"{name}",{youtube_id},0,10,train')
    rows.append("not a kinetics class,vid99999999,0,10,train")
    (tmp_path / "k.csv").write_text("\n".join(rows) + "\n")
    m = read_kinetics_csv(tmp_path / "k.csv", video_root=root, classes=vocabulary)
    assert len(m.classes) == 400 and len(m) == 40
    assert [r.labels[0] for r in m.records] == list(range(40))
    assert _problems(m) == [(42, "unknown label")]
    assert m.summary() == "kinetics k: 40 videos, 400 classes, 1 row skipped (1 unknown label)"


# ---------------------------------------------------------------------- UCF101
def _ucf_tree(tmp_path: Path, classes: list[str]) -> tuple[Path, Path]:
    splits, videos = tmp_path / "ucfTrainTestlist", tmp_path / "UCF-101"
    splits.mkdir()
    (splits / "classInd.txt").write_text("".join(f"{i} {c}\r\n" for i, c in enumerate(classes, start=1)))
    return splits, videos


def test_ucf101_train_and_test_lists(tmp_path: Path) -> None:
    splits, videos = _ucf_tree(tmp_path, ["ApplyEyeMakeup", "Archery", "YoYo"])
    _real_clip(videos / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi")
    _touch(videos / "YoYo" / "v_YoYo_g01_c01.avi")
    _frame_folder(videos / "Archery" / "v_Archery_g01_c02")  # rawframes layout: no suffix
    (splits / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"  # 1 ok
        "Archery/v_Archery_g01_c02.avi 2\r\n"  # 2 ok: frame folder
        "YoYo/v_YoYo_g01_c01.avi 9\r\n"  # 3 unknown index
        "YoYo/v_YoYo_g01_c01.avi\r\n"  # 4 no index in a train list
        "YoYo/v_YoYo_g02_c01.avi 3\r\n"  # 5 missing file
        "Archery/v_YoYo_g01_c01.avi 3\r\n"  # 6 folder disagrees with index
        "YoYo/v_YoYo_g01_c01.avi 3\r\n"  # 7 ok
    )
    m = read_ucf101(splits, video_root=videos, split=1, subset="train")
    assert m.classes == ["ApplyEyeMakeup", "Archery", "YoYo"]
    assert m.class_names() == ["apply eye makeup", "archery", "yo yo"]
    assert m.class_names(normalised=False) == m.classes
    assert [(r.row, r.labels) for r in m.records] == [(1, (0,)), (2, (1,)), (7, (2,))]
    assert _problems(m) == [(3, "unknown label"), (4, "malformed row"), (5, "missing file"), (6, "malformed row")]
    assert m.summary() == ("ucf101 trainlist01: 3 videos, 3 classes, 4 rows skipped (2 malformed rows, 1 missing file, 1 unknown label)")
    (splits / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\nSkiing/v_Skiing_g01_c01.avi\n")
    t = read_ucf101(splits, video_root=videos, subset="test")
    assert [r.labels for r in t.records] == [(0,)] and _problems(t) == [(2, "unknown label")]
    with pytest.raises(InputError, match="testlist02.txt"):
        read_ucf101(splits, video_root=videos, split=2, subset="test")
    with pytest.raises(InputError, match="split must be 1, 2 or 3"):
        read_ucf101(splits, video_root=videos, split=4)


def test_ucf101_with_the_real_vocabulary(tmp_path: Path, shared_data: Path) -> None:
    classes = (shared_data / "labels" / "ucf101.txt").read_text().split()
    splits, videos = _ucf_tree(tmp_path, classes)
    lines = []
    for i, name in enumerate(classes):
        rel = f"{name}/v_{name}_g08_c01.avi"
        if i % 50 != 7:  # leave two files missing
            _touch(videos / rel)
        lines.append(f"{rel} {i + 1}")
    lines.append("Skiing/v_Nothing_g01_c01.avi 999")
    (splits / "trainlist01.txt").write_text("\n".join(lines) + "\n")
    m = read_ucf101(splits, video_root=videos)
    assert len(m.classes) == 101 and len(m) == 99
    assert m.summary() == "ucf101 trainlist01: 99 videos, 101 classes, 3 rows skipped (2 missing files, 1 unknown label)"
    names = m.class_names()
    assert names[0] == "apply eye makeup" and "yo yo" in names and all(n == n.lower() for n in names)


# ---------------------------------------------------------------------- HMDB51
def _hmdb_tree(tmp_path: Path, classes: list[str], split: int = 1) -> tuple[Path, Path]:
    splits, videos = tmp_path / "testTrainMulti_7030_splits", tmp_path / "hmdb51"
    splits.mkdir(exist_ok=True)
    for c in classes:
        lines = [f"{c}_video_{k}.avi {code} " for k, code in enumerate(["1", "1", "2", "0"])]
        (splits / f"{c}_test_split{split}.txt").write_text("\n".join(lines) + "\n")
        for k in range(4):
            _touch(videos / c / f"{c}_video_{k}.avi")
    return splits, videos


def test_hmdb51_splits(tmp_path: Path) -> None:
    splits, videos = _hmdb_tree(tmp_path, ["wave", "brush_hair", "catch"])
    _hmdb_tree(tmp_path, ["wave", "brush_hair"], split=2)
    (videos / "catch" / "catch_video_1.avi").unlink()
    _real_clip(videos / "catch_video_0.avi")  # flat layout
    (videos / "catch" / "catch_video_0.avi").unlink()
    with open(splits / "wave_test_split1.txt", "a") as fh:
        fh.write("broken line here\nwave_video_9.avi 3\n")
    m = read_hmdb51(splits, video_root=videos, split=1, subset="train")
    assert m.classes == ["brush_hair", "catch", "wave"] and m.class_names()[0] == "brush hair"
    assert [(Path(r.path).name, r.labels, r.row) for r in m.records] == [
        ("brush_hair_video_0.avi", (0,), 1), ("brush_hair_video_1.avi", (0,), 2),
        ("catch_video_0.avi", (1,), 1), ("wave_video_0.avi", (2,), 1), ("wave_video_1.avi", (2,), 2),
    ]  # fmt: skip
    assert [(Path(p.source).name, p.row, p.kind) for p in m.problems] == [
        ("catch_test_split1.txt", 2, "missing file"),
        ("wave_test_split1.txt", 5, "malformed row"),
        ("wave_test_split1.txt", 6, "malformed row"),
    ]
    assert m.summary() == "hmdb51 split1 train: 5 videos, 3 classes, 3 rows skipped (2 malformed rows, 1 missing file)"
    test = read_hmdb51(splits, video_root=videos, split=1, subset="test")
    assert [Path(r.path).name for r in test.records] == ["brush_hair_video_2.avi", "catch_video_2.avi", "wave_video_2.avi"]
    assert read_hmdb51(splits, video_root=videos, split=2).classes == ["brush_hair", "wave"]
    with pytest.raises(InputError, match="_test_split3.txt"):
        read_hmdb51(splits, video_root=videos, split=3)


def test_hmdb51_with_the_real_vocabulary(tmp_path: Path, shared_data: Path) -> None:
    names = (shared_data / "labels" / "hmdb51.txt").read_text().split()
    splits, videos = _hmdb_tree(tmp_path, names)
    m = read_hmdb51(splits, video_root=videos, subset="test").require_nonempty()
    assert m.classes == sorted(names) and len(m) == 51 and not m.problems
    assert m.summary() == "hmdb51 split1 test: 51 videos, 51 classes"
    _base, novel = base_novel_split(m.classes, seed=0)
    half = m.subset(novel)
    assert len(half.classes) == 26 == len(half) and all(len(r.labels) == 1 for r in half.records)
