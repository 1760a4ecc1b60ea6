"""The label bank under faults (issue 10 part 5): concurrent writer processes, a writer killed mid-transaction, a
long writer, read-only and corrupt banks, missing banks, and classify going on without a bank it cannot use.

Concurrency tests use real processes (fork: the children store tiny embeddings through the bank's API, no model
loads); CLI tests run ``openvocab`` in-process through the ``cli`` fixture."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch

import openvocab
from openvocab.text.label_bank import BusyLabelBank, LabelBank, ReadOnlyLabelBank, UnusableLabelBank

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FORK = multiprocessing.get_context("fork")
KEY = "prompts:test"
DIM = 4


def vector(label: str) -> torch.Tensor:
    """A deterministic tiny embedding per label (so a reader can check which row it got)."""
    seed = sum((i + 1) * ord(c) for i, c in enumerate(label)) % (2**31)
    return torch.randn(DIM, generator=torch.Generator().manual_seed(seed))


def vectors(labels: list[str]) -> torch.Tensor:
    return torch.stack([vector(label) for label in labels])


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def stored_labels(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT label FROM embeddings WHERE fingerprint = 'fp' ORDER BY label")]


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def bank_warnings(err: str) -> list[str]:
    """Warning lines about the label bank (the tiny model's 'RANDOM weights' warning is not one)."""
    return [line for line in err.splitlines() if line.startswith("warning:") and "label bank" in line]


# ---------------------------------------------------------------------------------------------------------------------
# processes
def _writer(path: str, index: int, start, errors) -> None:
    """A child: waits for the others, then opens the (not yet existing) bank and adds overlapping labels, four per
    transaction, half through get_or_encode (lookup, encode the missing, INSERT OR IGNORE), half through put."""
    try:
        start.wait(30)
        bank = LabelBank(path)
        mine = [f"label {n:02d}" for n in range(index * 5, index * 5 + 20)] + ["shared"]
        for round_ in range(2):
            for at in range(0, len(mine), 4):
                chunk = mine[at : at + 4]
                if (round_ + index) % 2:
                    bank.put(fingerprint="fp", prompt_set=KEY, labels=chunk, embeddings=vectors(chunk))
                else:
                    out, _ = bank.get_or_encode(fingerprint="fp", prompt_set=KEY, labels=chunk, encode=vectors)
                    assert torch.equal(out, vectors(chunk))
        bank.close()
    except BaseException:  # noqa: BLE001 - reported to the parent
        errors.put(f"writer {index}: {traceback.format_exc()}")
        os._exit(1)
    os._exit(0)


def test_eight_processes_adding_overlapping_labels_to_a_new_bank(tmp_path):
    path = tmp_path / "new" / "bank.sqlite"  # no file yet: the eight race to create it (directory, WAL switch, schema)
    start, errors = FORK.Barrier(8), FORK.Queue()
    children = [FORK.Process(target=_writer, args=(str(path), i, start, errors), daemon=True) for i in range(8)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    reports = [errors.get(timeout=1) for _ in range(errors.qsize())] if not errors.empty() else []
    assert reports == [] and [c.exitcode for c in children] == [0] * 8, reports
    expected = sorted({f"label {n:02d}" for n in range(0, 7 * 5 + 20)} | {"shared"})
    assert stored_labels(path) == expected  # every label exactly once (55 + 'shared'), none lost
    assert integrity(path) == "ok"
    with LabelBank(path) as bank:
        got = bank.get(fingerprint="fp", prompt_set=KEY, labels=expected)
        assert all(torch.equal(got[label], vector(label)) for label in expected)


def _holder(path: str, labels: list[str], ready) -> None:
    """A child that stops inside a write transaction: ``put`` of ``labels``, paused by an SQLite progress handler
    once some rows are inserted, until it is killed."""
    bank = LabelBank(path)
    conn = bank._db  # the bank's own connection: the transaction paused is the one put() opened

    def pause() -> int:
        if conn.in_transaction and conn.total_changes > 0:
            ready.set()
            time.sleep(300)
        return 0

    conn.set_progress_handler(pause, 50)
    bank.put(fingerprint="fp", prompt_set=KEY, labels=labels, embeddings=vectors(labels))
    os._exit(3)  # never reached: the parent kills us first


def _start_holder(path: Path, labels: list[str]):
    ready = FORK.Event()
    child = FORK.Process(target=_holder, args=(str(path), labels, ready), daemon=True)
    child.start()
    assert ready.wait(60), "the writer child never got inside its transaction"
    return child


def _kill(child) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    assert child.exitcode == -signal.SIGKILL


def _second_process_reads_and_writes(path: str, done) -> None:
    try:
        bank = LabelBank(path)
        assert bank.get(fingerprint="fp", prompt_set=KEY, labels=["kept"])
        bank.put(fingerprint="fp", prompt_set=KEY, labels=["from another process"], embeddings=vectors(["from another process"]))
        done.put("ok")
    except BaseException:  # noqa: BLE001 - reported to the parent
        done.put(traceback.format_exc())


def test_a_writer_killed_mid_transaction_leaves_a_consistent_bank(tmp_path):
    path = tmp_path / "bank.sqlite"
    with LabelBank(path) as bank:
        bank.put(fingerprint="fp", prompt_set=KEY, labels=["kept"], embeddings=vectors(["kept"]))
    doomed = [f"doomed {n}" for n in range(300)]
    child = _start_holder(path, doomed)
    try:
        # while it holds the write lock: a new bank opens and serves its cached rows (opening and reading never
        # take the write lock) ...
        reader = LabelBank(path, timeout=0.2)
        assert torch.equal(reader.get(fingerprint="fp", prompt_set=KEY, labels=["kept", "doomed 0"])["kept"], vector("kept"))
        assert reader.count() == 1  # the child's uncommitted rows are invisible
        # ... and a writer really is blocked (the child is inside its transaction): one line, not a traceback
        with pytest.raises(BusyLabelBank) as info:
            reader.put(fingerprint="fp", prompt_set=KEY, labels=["late"], embeddings=vectors(["late"]))
        assert "\n" not in str(info.value) and "busy" in str(info.value)
    finally:
        _kill(child)
    assert integrity(path) == "ok"
    assert stored_labels(path) == ["kept"]  # none of the killed transaction's 300 rows
    reader.put(fingerprint="fp", prompt_set=KEY, labels=["late"], embeddings=vectors(["late"]))  # the lock died with it
    done = FORK.Queue()
    other = FORK.Process(target=_second_process_reads_and_writes, args=(str(path), done), daemon=True)
    other.start()
    other.join(60)
    assert done.get(timeout=5) == "ok"
    assert stored_labels(path) == ["from another process", "kept", "late"] and integrity(path) == "ok"


def test_classify_with_cached_labels_while_another_process_holds_the_write_lock(cli, tiny_model_dir, make_video, tmp_path):
    bank = tmp_path / "bank.sqlite"
    code, _, err = cli("labels", "add", "--labels", "juggling, yoga", "--model", str(tiny_model_dir), "--label-bank", str(bank))
    assert code == 0, err
    child = _start_holder(bank, [f"other {n}" for n in range(200)])
    try:
        video = make_video("clip.mp4", num_frames=8)
        code, out, err = cli(
            "classify", str(video), "--labels", "juggling, yoga", "--model", str(tiny_model_dir), "--label-bank", str(bank), "--frames", "2", "--format", "json"
        )
        assert code == 0 and bank_warnings(err) == [], err
        assert {s["label"] for s in json.loads(out)[0]["labels"]} == {"juggling", "yoga"}
        code, out, err = cli("labels", "list", "--label-bank", str(bank), "--format", "tsv")
        assert code == 0 and {line.split("\t")[4] for line in out.splitlines()[1:]} == {"juggling", "yoga"}, err
    finally:
        _kill(child)
    assert integrity(bank) == "ok"


# ---------------------------------------------------------------------------------------------------------------------
# read-only banks
def _cached_bank(path: Path, labels: list[str]) -> None:
    with LabelBank(path) as bank:
        bank.put(fingerprint="fp", prompt_set=KEY, labels=labels, embeddings=vectors(labels))


def test_a_bank_opened_read_only_serves_reads_and_refuses_writes_in_one_line(tmp_path, caplog):
    path = tmp_path / "bank.sqlite"
    _cached_bank(path, ["a", "b"])
    before = path.read_bytes()
    bank = LabelBank(path, read_only=True)
    assert bank.read_only and bank.count() == 2 and torch.equal(bank.get(fingerprint="fp", prompt_set=KEY, labels=["b"])["b"], vector("b"))
    for write in (
        lambda: bank.put(fingerprint="fp", prompt_set=KEY, labels=["c"], embeddings=vectors(["c"])),
        lambda: bank.get_or_encode(fingerprint="fp", prompt_set=KEY, labels=["a", "c"], encode=vectors),
        lambda: bank.save_vocabulary("v", ["a"]),
        lambda: bank.clear(),
    ):
        with pytest.raises(ReadOnlyLabelBank) as info:
            write()
        assert "\n" not in str(info.value) and str(info.value).startswith(str(path)) and "cannot be written" in str(info.value)
    # the classifier's kind of bank (optional): cached rows come from the file, the new label is encoded, not cached,
    # with one warning however often it happens
    optional = LabelBank(path, read_only=True, optional=True)
    with caplog.at_level("WARNING", logger="openvocab.text.label_bank"):
        for _ in range(3):
            out, encoded = optional.get_or_encode(fingerprint="fp", prompt_set=KEY, labels=["a", "c"], encode=vectors)
            assert encoded == 1 and torch.equal(out, vectors(["a", "c"]))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "is read-only" in lines[0] and "not cached" in lines[0] and str(path) in lines[0], lines
    assert optional.count() == 2 and path.read_bytes() == before


def test_classifier_on_a_read_only_bank_encodes_new_labels_without_caching(tiny_model_dir, tmp_path, caplog):
    path = tmp_path / "bank.sqlite"
    clf = openvocab.load(tiny_model_dir, label_bank=path)
    clf.encode_labels(["juggling"])
    clf.label_bank.close()
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    with caplog.at_level("WARNING"):
        ro = openvocab.load(tiny_model_dir, label_bank=LabelBank(path, read_only=True, optional=True))
        result = ro.classify(frames, ["juggling", "yoga"], frames=2, segments=0)
        again = ro.classify(frames, ["juggling", "yoga"], frames=2, segments=0)
    assert {s.label for s in result.labels} == {"juggling", "yoga"} and result.labels == again.labels
    assert len([r for r in caplog.records if "read-only" in r.getMessage()]) == 1
    with LabelBank(path) as bank:
        assert [r.label for r in bank.list()] == ["juggling"]  # 'yoga' was not cached


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod does not stop root from writing (the forced read-only open is tested above)")
def test_chmod_read_only_bank_through_the_cli(cli, tiny_model_dir, make_video, tmp_path):
    folder = tmp_path / "ro"
    bank = folder / "bank.sqlite"
    assert cli("labels", "add", "--labels", "juggling", "--model", str(tiny_model_dir), "--label-bank", str(bank))[0] == 0
    video = make_video("clip.mp4", num_frames=8)
    bank.chmod(0o444)
    folder.chmod(0o555)
    try:
        code, out, err = cli("labels", "list", "--label-bank", str(bank), "--format", "tsv")
        assert code == 0 and out.splitlines()[1].split("\t")[4] == "juggling", err
        args = ("--labels", "juggling, yoga", "--model", str(tiny_model_dir), "--label-bank", str(bank), "--frames", "2", "--format", "json")
        code, out, err = cli("classify", str(video), *args)
        assert code == 0 and len(json.loads(out)[0]["labels"]) == 2, err
        assert len(bank_warnings(err)) == 1 and "read-only" in err and error_lines(err) == [], err
        code, _, err = cli("labels", "add", "--labels", "yoga", "--model", str(tiny_model_dir), "--label-bank", str(bank))
        assert code == 2 and len(error_lines(err)) == 1 and "cannot be written" in err, err
    finally:
        folder.chmod(0o755)
        bank.chmod(0o644)


# ---------------------------------------------------------------------------------------------------------------------
# corrupt and foreign files
def _corrupt_banks(tmp_path: Path) -> dict[str, Path]:
    banks = {}
    banks["random bytes"] = tmp_path / "random.sqlite"
    banks["random bytes"].write_bytes(np.random.default_rng(0).bytes(4096))
    whole = tmp_path / "whole.sqlite"
    _cached_bank(whole, [f"label {n} " + "x" * 200 for n in range(300)])  # several pages
    data = whole.read_bytes()
    banks["truncated"] = tmp_path / "truncated.sqlite"
    banks["truncated"].write_bytes(data[: len(data) // 2])
    banks["foreign"] = tmp_path / "photos.sqlite"
    with sqlite3.connect(banks["foreign"]) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
    banks["directory"] = tmp_path / "bank_dir"
    banks["directory"].mkdir()
    return banks


def test_unusable_banks_fail_labels_commands_in_one_line_and_classify_runs_without_them(cli, tiny_model_dir, make_video, tmp_path):
    video = make_video("clip.mp4", num_frames=8)
    for kind, bank in _corrupt_banks(tmp_path).items():
        before = None if bank.is_dir() else bank.read_bytes()
        code, out, err = cli("labels", "list", "--label-bank", str(bank))
        assert code == 2 and len(error_lines(err)) == 1 and len(err.strip().splitlines()) == 1, (kind, err)
        line = error_lines(err)[0]
        assert line.startswith(f"error: {bank}: not a usable label bank") and "--label-bank" in line and "delet" not in line, (kind, line)
        code, _, err = cli("labels", "add", "--labels", "yoga", "--model", str(tiny_model_dir), "--label-bank", str(bank))
        assert code == 2 and len(error_lines(err)) == 1 and "not a usable label bank" in err, (kind, err)

        args = ("--labels", "juggling, yoga", "--model", str(tiny_model_dir), "--label-bank", str(bank), "--frames", "2", "--format", "json")
        code, out, err = cli("classify", str(video), *args)
        assert code == 0, (kind, err)
        assert {s["label"] for s in json.loads(out)[0]["labels"]} == {"juggling", "yoga"}
        warnings = bank_warnings(err)
        assert len(warnings) == 1 and warnings[0].startswith(f"warning: label bank {bank} unusable: "), (kind, err)
        assert "running without it" in warnings[0] and "--no-label-bank" in warnings[0] and "delet" not in warnings[0]
        assert (bank.is_dir() and kind == "directory") or bank.read_bytes() == before  # never touched


def test_messages_name_the_problem(tmp_path):
    banks = _corrupt_banks(tmp_path)
    expected = {
        "random bytes": "the file is not an SQLite database",
        "truncated": "the file is truncated",
        "foreign": "an SQLite database of another program",
        "directory": "it is a directory",
    }
    for kind, bank in banks.items():
        with pytest.raises(UnusableLabelBank) as info:
            LabelBank(bank)
        assert expected[kind] in info.value.problem and "\n" not in str(info.value), (kind, str(info.value))
    short = tmp_path / "short.sqlite"
    short.write_bytes(b"SQLite format 3\x00" + b"\x00" * 20)
    with pytest.raises(UnusableLabelBank, match="truncated"):
        LabelBank(short)
    empty = tmp_path / "empty.sqlite"
    empty.touch()  # an empty file is a bank not written yet
    bank = LabelBank(empty)
    assert bank.count() == 0 and empty.stat().st_size == 0
    bank.put(fingerprint="fp", prompt_set=KEY, labels=["a"], embeddings=vectors(["a"]))
    assert bank.count() == 1 and integrity(empty) == "ok"


def test_damage_found_while_classifying_becomes_one_warning(tiny_model_dir, tmp_path, caplog):
    """A bank whose header and schema read fine but whose data pages are garbage: the damage shows up at the first
    lookup, after the bank was opened; the classifier warns once and goes on without the bank."""
    path = tmp_path / "bank.sqlite"
    clf = openvocab.load(tiny_model_dir, label_bank=path)
    encoder, filler = clf.label_encoder, [f"label {n} " + "x" * 200 for n in range(300)]  # rows of this model, many pages
    clf.label_bank.put(
        fingerprint=encoder.fingerprint, prompt_set=encoder.prompt_key, labels=filler, embeddings=torch.randn(300, clf.encode_labels(["a"]).embeddings.shape[1])
    )
    clf.label_bank.close()
    page = int.from_bytes(path.read_bytes()[16:18], "big")
    with open(path, "r+b") as handle:  # keep the schema and the tables' root pages, scramble the leaves
        handle.seek(8 * page)
        handle.write(np.random.default_rng(1).bytes(path.stat().st_size - 8 * page))
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    with caplog.at_level("WARNING"):
        damaged = openvocab.load(tiny_model_dir, label_bank=path)
        assert damaged.label_bank is not None  # it opened: the damage is not visible yet
        for _ in range(2):
            result = damaged.classify(frames, ["label 1 " + "x" * 200, "yoga"], frames=2, segments=0)
            assert len(result.labels) == 2
    lines = [r.getMessage() for r in caplog.records if "label bank" in r.getMessage()]
    assert len(lines) == 1 and "unusable" in lines[0] and "running without it" in lines[0], lines


# ---------------------------------------------------------------------------------------------------------------------
# missing banks are never created by reading
def test_commands_that_read_never_create_a_bank(cli, tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "bank.sqlite"
    for args in (
        ["list"],
        ["vocabularies"],
        ["vocabularies", "kinetics400"],
        ["export", str(tmp_path / "out.npz"), "--model", "random:tiny"],
        ["remove", "yoga", "--fingerprint", "fp"],
        ["clear", "--all"],
    ):
        code, out, err = cli("labels", *args, "--label-bank", str(missing))
        assert code == 1 and error_lines(err) == [f"error: no label bank at {missing}"], (args, err)
        assert not missing.parent.exists(), args
    default = tmp_path / "cache"
    monkeypatch.setenv("OPENVOCAB_CACHE", str(default))
    code, out, err = cli("labels", "list", "--format", "json")
    assert code == 0 and json.loads(out) == [] and f"no label bank at {default / 'label_bank.sqlite'} yet" in err
    code, out, err = cli("labels", "vocabularies", "--format", "tsv")
    assert code == 0 and out == "name\tsize\n"
    assert cli("labels", "clear", "--all")[0] == 0
    assert not default.exists()


# ---------------------------------------------------------------------------------------------------------------------
# saved vocabularies through the CLI
def test_labels_add_save_as_and_list_vocabularies(cli, tiny_model_dir, tmp_path):
    bank = str(tmp_path / "bank.sqlite")
    k400 = tmp_path / "k400.txt"
    k400.write_text("abseiling\nair drumming\nyoga\n", encoding="utf-8")
    code, out, err = cli("labels", "add", "--labels-file", str(k400), "--model", str(tiny_model_dir), "--label-bank", bank, "--save-as", "kinetics400")
    assert code == 0 and "saved vocabulary 'kinetics400' (3 labels)" in out, err
    assert cli("labels", "add", "--labels", "yoga, surfing", "--model", str(tiny_model_dir), "--label-bank", bank, "--save-as", "mine")[0] == 0
    code, out, _ = cli("labels", "vocabularies", "--label-bank", bank, "--format", "json")
    assert code == 0 and json.loads(out) == [{"name": "kinetics400", "size": 3}, {"name": "mine", "size": 2}]
    code, out, _ = cli("labels", "vocabularies", "--label-bank", bank, "--format", "tsv")
    assert out.splitlines() == ["name\tsize", "kinetics400\t3", "mine\t2"]
    code, out, err = cli("labels", "vocabularies", "--label-bank", bank)
    assert code == 0 and "kinetics400" in out and "2 saved vocabularies" in err
    code, out, _ = cli("labels", "vocabularies", "kinetics400", "--label-bank", bank)
    assert out.splitlines() == ["abseiling", "air drumming", "yoga"]
    with LabelBank(bank) as b:
        assert b.vocabulary("kinetics400") == ["abseiling", "air drumming", "yoga"] and b.count() == 4  # yoga encoded once
    code, out, _ = cli("labels", "vocabularies", "mine", "--remove", "--label-bank", bank)
    assert code == 0 and "removed vocabulary 'mine'" in out
    for args in (["vocabularies", "mine"], ["vocabularies", "mine", "--remove"], ["vocabularies", "../etc"]):
        code, _, err = cli("labels", *args, "--label-bank", bank)
        assert code == 2 and len(error_lines(err)) == 1, (args, err)
    code, _, err = cli("labels", "add", "--labels", "yoga", "--model", "no/such-model", "--label-bank", bank, "--save-as", "bad name!")
    assert code == 2 and "invalid vocabulary name" in err, err  # refused before the model is looked for
