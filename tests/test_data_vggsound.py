"""VGGSound's CSV (MOV §4.1): quoted labels with commas, the three file layouts, problems instead of exceptions, a
vocabulary from both splits, and the vggsound data format in recipes and `openvocab data check`.

Videos are empty placeholder files: the reader only checks that they exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from openvocab.data import read_vggsound_csv
from openvocab.data.manifests import read_vggsound_csv as reexported
from openvocab.errors import InputError
from openvocab.train.config import DataConfig, load_config
from openvocab.train.data_setup import read_split

CSV = (
    '---g-f_I2yQ,1,"people marching",test\n'  # 1 clip layout <id>_<start:06d>.mp4
    'abc,30,"engine accelerating, revving, vroom",train\n'  # 2 label with commas; <id>_<start>_<end>.mp4
    "def,0,dog barking,train\n"  # 3 the full video <id>.mp4: window (0, 10)
    "ghi,5,dog barking,train\n"  # 4 missing file
    "jkl,5,dog barking\n"  # 5 three columns
    "mno,x,dog barking,train\n"  # 6 bad start
    "pqr,2.5,dog barking,train\n"  # 7 start is not whole seconds
    "stu,3,,train\n"  # 8 empty label
    "vwx,3,dog barking,validation\n"  # 9 split is neither train nor test
    "\n"  # 10 blank: ignored
    'yz_,7,"wind noise",test\n'  # 11 missing file, but its label is still in the vocabulary
)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


@pytest.fixture
def vggsound(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "video"
    for name in ("---g-f_I2yQ_000001.mp4", "abc_30_40.mp4", "def.mp4", "unrelated_000005.mp4"):
        _touch(root / name)
    (tmp_path / "vggsound.csv").write_text(CSV)
    return tmp_path / "vggsound.csv", root


def test_rows_layouts_vocabulary_and_problems(vggsound) -> None:
    csv_path, root = vggsound
    m = read_vggsound_csv(csv_path, root=root)
    assert reexported is read_vggsound_csv
    # every well-formed row's label, both splits, missing files included, sorted
    assert m.classes == ["dog barking", "engine accelerating, revving, vroom", "people marching", "wind noise"]
    assert [(Path(r.path).name, r.labels, r.start_s, r.end_s, r.row) for r in m.records] == [
        ("---g-f_I2yQ_000001.mp4", (2,), None, None, 1),
        ("abc_30_40.mp4", (1,), None, None, 2),
        ("def.mp4", (0,), 0.0, 10.0, 3),
    ]
    assert all(Path(r.path).is_absolute() for r in m.records)
    assert [(p.row, p.kind) for p in m.problems] == [
        (4, "missing file"),
        (5, "malformed row"),
        (6, "bad time range"),
        (7, "bad time range"),
        (8, "missing label"),
        (9, "malformed row"),
        (11, "missing file"),
    ]
    assert str(m.problems[0]) == f"{csv_path}:4: missing file: no ghi_000005.mp4 or other ghi video in {root.absolute()}"
    assert m.summary() == "vggsound vggsound: 3 videos, 4 classes, 7 rows skipped (2 bad time ranges, 2 malformed rows, 2 missing files, 1 missing label)"


def test_split_filter_keeps_the_whole_vocabulary(vggsound) -> None:
    csv_path, root = vggsound
    train = read_vggsound_csv(csv_path, root=root, split="train")
    test = read_vggsound_csv(csv_path, root=root, split="test")
    assert train.classes == test.classes == read_vggsound_csv(csv_path, root=root).classes
    assert [r.row for r in train.records] == [2, 3] and [r.row for r in test.records] == [1]
    assert [(p.row, p.kind) for p in test.problems] == [(5, "malformed row"), (9, "malformed row"), (11, "missing file")]  # train rows: not checked
    assert train.source == "vggsound vggsound [train]"
    with pytest.raises(InputError, match="split must be 'train' or 'test'"):
        read_vggsound_csv(csv_path, root=root, split="val")


def test_header_fixed_vocabulary_and_no_file_check(vggsound, tmp_path: Path) -> None:
    csv_path, root = vggsound
    (tmp_path / "with_header.csv").write_text("youtube_id,start_seconds,label,split\n" + CSV)
    m = read_vggsound_csv(tmp_path / "with_header.csv", root=root)
    assert len(m.records) == 3 and [r.row for r in m.records] == [2, 3, 4]
    fixed = read_vggsound_csv(csv_path, root=root, classes=["people marching", "Dog_Barking"])
    assert fixed.classes == ["people marching", "Dog_Barking"]
    assert [r.labels for r in fixed.records] == [(0,), (1,)]
    assert [p.row for p in fixed.problems if p.kind == "unknown label"] == [2, 11]
    unchecked = read_vggsound_csv(csv_path, root=tmp_path / "nowhere", check_files=False)
    assert [Path(r.path).name for r in unchecked.records] == ["---g-f_I2yQ_000001.mp4", "abc_000030.mp4", "def_000000.mp4", "ghi_000005.mp4", "yz__000007.mp4"]
    with pytest.raises(InputError, match="cannot read the video root"):
        read_vggsound_csv(csv_path, root=tmp_path / "nowhere")
    with pytest.raises(InputError, match="missing.csv: VGGSound CSV not found"):
        read_vggsound_csv(tmp_path / "missing.csv", root=root)


def test_vggsound_format_in_recipes_and_data_check(vggsound, cli) -> None:
    csv_path, root = vggsound
    cfg = load_config(None, ["data.format=vggsound", f"data.train={csv_path}", f"data.val={csv_path}", f"data.root={root}"])
    assert cfg.data.format == "vggsound"
    where = DataConfig(format="vggsound", train=str(csv_path), val=str(csv_path), root=str(root))
    assert [r.row for r in read_split(where, "train").records] == [2, 3]
    assert [r.row for r in read_split(where, "val").records] == [1]  # the test rows
    code, out, err = cli("data", "check", str(csv_path), "--kind", "vggsound", "--root", str(root), "--split", "test")
    # rows of the train split are left out silently; rows whose split is unknown are problems whichever is read
    assert code == 1 and out.strip() == "vggsound vggsound [test]: 1 video, 4 classes, 3 rows skipped (2 malformed rows, 1 missing file)"
    assert [line.split(": ", 2)[1] for line in err.splitlines()] == [f"{csv_path}:{n}" for n in (5, 9, 11)]
    assert err.splitlines()[-1] == f"skipped: {csv_path}:11: missing file: no yz__000007.mp4 or other yz_ video in {root.absolute()}"
