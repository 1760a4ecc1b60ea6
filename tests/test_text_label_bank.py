"""The SQLite label bank: encode only what is missing, persistence, keys, concurrency, exports, bad files."""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from openvocab.errors import InputError
from openvocab.text.label_bank import SCHEMA_VERSION, LabelBank, LabelRecord, check_vocabulary_name
from openvocab.text.prompts import PromptSet, prompt_set

DIM = 8


def fake_embedding(label: str, salt: str = "") -> torch.Tensor:
    """A deterministic per-label vector, so tests can check which label landed where."""
    seed = sum((i + 1) * ord(c) for i, c in enumerate(salt + label)) % (2**31)
    return torch.randn(DIM, generator=torch.Generator().manual_seed(seed))


class CountingEncoder:
    """Records every call (the labels it was asked for) and returns fake embeddings."""

    def __init__(self, salt: str = "") -> None:
        self.calls: list[list[str]] = []
        self.salt = salt

    def __call__(self, labels: list[str]) -> torch.Tensor:
        self.calls.append(list(labels))
        return torch.stack([fake_embedding(label, self.salt) for label in labels])

    @property
    def encoded(self) -> int:
        return sum(len(call) for call in self.calls)


@pytest.fixture()
def bank_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "label_bank.sqlite"


PROMPTS = prompt_set("ensemble")
LABELS = ["playing guitar", "yoga", "dog barking", "Café au lait"]


def test_encode_once_then_cached_then_expand(bank_path: Path) -> None:
    encoder = CountingEncoder()
    bank = LabelBank(bank_path)
    assert not bank_path.parent.exists() and bank.count() == 0 and bank.list() == []  # opening and reading create nothing
    first, encoded = bank.get_or_encode(fingerprint="m1", prompt_set=PROMPTS, labels=LABELS, encode=encoder)
    assert bank_path.is_file()  # the first write created the file and its parent directories
    assert encoder.calls == [LABELS] and encoded == 4
    assert first.dtype == torch.float32 and first.shape == (4, DIM)
    torch.testing.assert_close(first, torch.stack([fake_embedding(label) for label in LABELS]))
    bank.close()

    # A new object on the same file: nothing is encoded, encode is never called.
    reopened = LabelBank(bank_path)
    never = CountingEncoder()
    again, encoded = reopened.get_or_encode(fingerprint="m1", prompt_set=PROMPTS, labels=LABELS, encode=never)
    assert never.calls == [] and encoded == 0
    assert torch.equal(again, first)

    # Vocabulary expansion: two new labels, one call with exactly those two, order of the request preserved.
    expanded = ["new one", *LABELS[:2], "new two", *LABELS[2:]]
    more = CountingEncoder()
    out, encoded = reopened.get_or_encode(fingerprint="m1", prompt_set=PROMPTS, labels=expanded, encode=more)
    assert more.calls == [["new one", "new two"]] and encoded == 2
    torch.testing.assert_close(out, torch.stack([fake_embedding(label) for label in expanded]))
    assert reopened.count(fingerprint="m1") == 6


def test_order_and_duplicates(bank_path: Path) -> None:
    bank = LabelBank(bank_path)
    encoder = CountingEncoder()
    bank.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=["a", "b", "c"], encode=encoder)
    wanted = ["c", "a", "d", "c", "b", "d"]
    out, encoded = bank.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=wanted, encode=encoder)
    assert encoder.calls[-1] == ["d"] and encoded == 1
    torch.testing.assert_close(out, torch.stack([fake_embedding(label) for label in wanted]))


def test_fingerprint_and_prompt_set_are_separate_keys(bank_path: Path) -> None:
    bank = LabelBank(bank_path)
    base = CountingEncoder()
    bank.get_or_encode(fingerprint="model-a", prompt_set=PROMPTS, labels=LABELS, encode=base)

    other_model = CountingEncoder(salt="b")
    out_b, _ = bank.get_or_encode(fingerprint="model-b", prompt_set=PROMPTS, labels=LABELS, encode=other_model)
    assert other_model.encoded == 4
    torch.testing.assert_close(out_b[0], fake_embedding(LABELS[0], "b"))

    single = CountingEncoder(salt="s")
    bank.get_or_encode(fingerprint="model-a", prompt_set=prompt_set("single"), labels=LABELS, encode=single)
    assert single.encoded == 4
    edited = PromptSet("kinetics28", PROMPTS.templates[:-1])  # same name, different templates -> new key
    changed = CountingEncoder()
    bank.get_or_encode(fingerprint="model-a", prompt_set=edited, labels=LABELS, encode=changed)
    assert changed.encoded == 4 and edited.key != PROMPTS.key

    still = CountingEncoder()
    out_a, _ = bank.get_or_encode(fingerprint="model-a", prompt_set=PROMPTS, labels=LABELS, encode=still)
    assert still.calls == []
    torch.testing.assert_close(out_a[0], fake_embedding(LABELS[0]))
    assert bank.count() == 16


def test_concurrent_banks_on_one_file(bank_path: Path) -> None:
    one, two = LabelBank(bank_path), LabelBank(bank_path)
    enc_one, enc_two = CountingEncoder(), CountingEncoder()
    one.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=["a", "b"], encode=enc_one)
    out, _ = two.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=["a", "b", "c"], encode=enc_two)
    assert enc_two.calls == [["c"]]
    assert one.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=["c"], encode=enc_one)[0].shape == (1, DIM)
    assert enc_one.calls == [["a", "b"]]
    torch.testing.assert_close(out, torch.stack([fake_embedding(x) for x in "abc"]))

    # Many writers at once, each with its own connection: every label lands exactly once, nothing is lost.
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            bank = LabelBank(bank_path)
            labels = [f"label {index}-{j}" for j in range(20)] + ["shared label"]
            for _ in range(3):
                result, _ = bank.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=labels, encode=CountingEncoder())
                assert result.shape == (21, DIM)
            bank.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert one.count(fingerprint="m") == 3 + 6 * 20 + 1


def test_shared_object_across_threads(bank_path: Path) -> None:
    bank = LabelBank(bank_path)
    results: list[torch.Tensor] = []

    def worker(index: int) -> None:
        results.append(bank.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=[f"t{index}", "common"], encode=CountingEncoder()))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and bank.count() == 9


def test_list_remove_clear(bank_path: Path) -> None:
    bank = LabelBank(bank_path)
    bank.get_or_encode(fingerprint="m1", prompt_set=PROMPTS, labels=LABELS, encode=CountingEncoder())
    bank.get_or_encode(fingerprint="m2", prompt_set=PROMPTS, labels=LABELS[:2], encode=CountingEncoder())
    records = bank.list(fingerprint="m1")
    assert {r.label for r in records} == set(LABELS)
    assert all(isinstance(r, LabelRecord) and r.dim == DIM and r.prompt_key == PROMPTS.key and r.created_at > 0 for r in records)
    assert len(bank.list()) == 6 and bank.list(prompt_key="other:000") == []
    assert bank.remove(fingerprint="m1", labels=["yoga", "not stored"]) == 1
    assert bank.remove(fingerprint="m1", prompt_key=PROMPTS.key) == 3
    assert bank.clear(fingerprint="m2") == 2 and bank.count() == 0
    bank.get_or_encode(fingerprint="m3", prompt_set=PROMPTS, labels=["x"], encode=CountingEncoder())
    assert bank.clear() == 1


def test_discard_returns_what_it_removed_and_model_names(bank_path: Path) -> None:
    bank = LabelBank(bank_path)
    assert bank.model_names() == {}  # no models table yet: nothing known, nothing created by reading
    single = prompt_set("single")
    bank.get_or_encode(fingerprint="m1", prompt_set=PROMPTS, labels=LABELS, encode=CountingEncoder())
    bank.get_or_encode(fingerprint="m1", prompt_set=single, labels=["yoga"], encode=CountingEncoder())
    bank.get_or_encode(fingerprint="m2", prompt_set=PROMPTS, labels=LABELS[:2], encode=CountingEncoder())
    bank.note_model("m1", "/models/a")
    bank.note_model("m1", "hub/a")
    bank.note_model("m2", "/models/b")
    bank.note_model("m2", "/models/b")  # noting twice keeps one name
    names = bank.model_names()
    assert set(names) == {"m1", "m2"} and sorted(names["m1"]) == ["/models/a", "hub/a"] and names["m2"] == ["/models/b"]
    removed = bank.discard(fingerprint="m1", labels=["yoga", "not stored"])  # every prompt set of m1
    assert sorted((r.prompt_key, r.label) for r in removed) == sorted([(PROMPTS.key, "yoga"), (single.key, "yoga")])
    assert bank.count(fingerprint="m1") == 3 and bank.count(fingerprint="m2") == 2
    removed = bank.discard(fingerprint="m1", prompt_key=PROMPTS.key, labels=["dog barking"])
    assert [r.label for r in removed] == ["dog barking"]
    removed = bank.discard(fingerprint="m1")
    assert {r.label for r in removed} == {"playing guitar", "Café au lait"} and all(r.fingerprint == "m1" for r in removed)
    assert bank.count(fingerprint="m2") == 2 and set(bank.model_names()) == {"m2"}  # m1 has no rows: name forgotten
    removed = bank.discard()
    assert len(removed) == 2 and bank.count() == 0 and bank.model_names() == {}
    with pytest.raises(TypeError):
        bank.discard(fingerprint="m2", labels="yoga")


def test_put_and_get(bank_path: Path) -> None:
    bank = LabelBank(bank_path)
    vectors = torch.stack([fake_embedding("p"), fake_embedding("q")])
    bank.put(fingerprint="m", prompt_set=PROMPTS, labels=["p", "q"], embeddings=vectors)
    got = bank.get(fingerprint="m", prompt_set=PROMPTS.key, labels=["q", "missing"])
    assert list(got) == ["q"] and torch.equal(got["q"], vectors[1])
    with pytest.raises(ValueError):
        bank.put(fingerprint="m", prompt_set=PROMPTS, labels=["p"], embeddings=vectors)


def test_blob_is_little_endian_float32(bank_path: Path) -> None:
    bank = LabelBank(bank_path)
    vector = torch.tensor([[1.5, -2.0, 0.25]])
    bank.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=["x"], encode=lambda labels: vector)
    bank.close()
    with sqlite3.connect(bank_path) as conn:
        blob, dim = conn.execute("SELECT embedding, dim FROM embeddings").fetchone()
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert blob == np.array([1.5, -2.0, 0.25], dtype="<f4").tobytes() and dim == 3
    assert version == str(SCHEMA_VERSION) and mode.lower() == "wal"


def test_bad_encoder_output_stores_nothing(bank_path: Path) -> None:
    bank = LabelBank(bank_path)
    with pytest.raises(ValueError, match="expected"):
        bank.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=["a", "b"], encode=lambda labels: torch.zeros(1, DIM))
    with pytest.raises(ValueError, match="non-finite"):
        bank.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=["a"], encode=lambda labels: torch.full((1, DIM), float("nan")))
    assert bank.count() == 0


def test_export_formats(bank_path: Path, tmp_path: Path) -> None:
    bank = LabelBank(bank_path)
    expected, _ = bank.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=LABELS, encode=CountingEncoder())
    assert bank.export(tmp_path / "out.npz", fingerprint="m", prompt_key=PROMPTS.key) == 4
    with np.load(tmp_path / "out.npz") as data:
        order = [str(x) for x in data["labels"]]
        assert sorted(order) == sorted(LABELS) and str(data["prompt_key"]) == PROMPTS.key
        for label, row in zip(order, data["embeddings"]):
            np.testing.assert_array_equal(row, expected[LABELS.index(label)].numpy())

    bank.export(tmp_path / "out.json", fingerprint="m", prompt_key=PROMPTS.key, labels=["yoga", "Café au lait"])
    document = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert document["labels"] == ["yoga", "Café au lait"] and document["dim"] == DIM
    np.testing.assert_allclose(document["embeddings"][0], expected[1].numpy())

    bank.export(tmp_path / "out.csv", fingerprint="m", prompt_key=PROMPTS.key, labels=LABELS)
    with open(tmp_path / "out.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:3] == ["label", "dim", "e0"] and len(rows[0]) == 2 + DIM
    assert rows[1][0] == "playing guitar" and float(rows[1][2]) == pytest.approx(float(expected[0, 0]))
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary leftovers

    with pytest.raises(InputError, match="format"):
        bank.export(tmp_path / "out.xlsx", fingerprint="m", prompt_key=PROMPTS.key)
    with pytest.raises(InputError, match="no embeddings stored"):
        bank.export(tmp_path / "none.npz", fingerprint="other", prompt_key=PROMPTS.key)
    with pytest.raises(InputError, match="not in the label bank"):
        bank.export(tmp_path / "x.json", fingerprint="m", prompt_key=PROMPTS.key, labels=["unknown"])


def test_corrupt_file_is_one_line_input_error(tmp_path: Path) -> None:
    path = tmp_path / "label_bank.sqlite"
    path.write_bytes(b"this is not an SQLite database at all\n" * 200)
    with pytest.raises(InputError) as info:
        LabelBank(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)) and "--label-bank" in message


def test_foreign_sqlite_and_directory(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE embeddings (id INTEGER)")
    with pytest.raises(InputError, match="another program"):
        LabelBank(other)
    newer = tmp_path / "newer.sqlite"
    LabelBank(newer).put(fingerprint="m", prompt_set=PROMPTS, labels=["a"], embeddings=torch.ones(1, DIM))
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(InputError, match="schema version 99"):
        LabelBank(newer)
    with pytest.raises(InputError, match="is a directory"):
        LabelBank(tmp_path)


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENVOCAB_CACHE", str(tmp_path / "cache"))
    assert LabelBank.default_path() == tmp_path / "cache" / "label_bank.sqlite"
    monkeypatch.delenv("OPENVOCAB_CACHE")
    assert LabelBank.default_path() == Path.home() / ".cache" / "openvocab" / "label_bank.sqlite"


def test_context_manager_closes(bank_path: Path) -> None:
    with LabelBank(bank_path) as bank:
        bank.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=["a"], encode=CountingEncoder())
    with pytest.raises(RuntimeError, match="closed"):
        bank.count()


# ---------------------------------------------------------------------------------------------------------------------
# saved vocabularies
def test_saved_vocabularies_round_trip_replace_and_delete(bank_path: Path) -> None:
    bank = LabelBank(bank_path)
    assert bank.vocabularies() == [] and bank.vocabulary("kinetics400") is None and not bank_path.exists()
    assert bank.delete_vocabulary("kinetics400") is False and not bank_path.exists()  # nothing to delete: nothing created
    bank.save_vocabulary("kinetics400", ["abseiling", "air drumming", "Café au lait"])
    bank.save_vocabulary("mine.v2", ["yoga"])
    assert bank.vocabulary("kinetics400") == ["abseiling", "air drumming", "Café au lait"]
    assert bank.vocabularies() == [("kinetics400", 3), ("mine.v2", 1)]
    bank.save_vocabulary("mine.v2", ["b", "a"])  # replaced, order kept
    assert bank.vocabulary("mine.v2") == ["b", "a"] and bank.vocabularies()[1] == ("mine.v2", 2)
    assert LabelBank(bank_path).vocabulary("kinetics400") == ["abseiling", "air drumming", "Café au lait"]  # persisted
    assert bank.delete_vocabulary("mine.v2") is True and bank.delete_vocabulary("mine.v2") is False
    assert bank.vocabularies() == [("kinetics400", 3)]
    assert bank.count() == 0  # vocabularies are label lists, not embeddings


@pytest.mark.parametrize("name", ["", "-lead", ".hidden", "a b", "a/b", "../x", "x" * 65, "naïve", "semi;colon"])
def test_vocabulary_names_are_checked(bank_path: Path, name: str) -> None:
    bank = LabelBank(bank_path)
    for call in (lambda: bank.save_vocabulary(name, ["a"]), lambda: bank.vocabulary(name), lambda: bank.delete_vocabulary(name)):
        with pytest.raises(InputError, match="invalid vocabulary name"):
            call()
    assert check_vocabulary_name("K400_v1.2-x") == "K400_v1.2-x" and check_vocabulary_name("9" * 64)
    with pytest.raises(InputError, match="no labels"):
        bank.save_vocabulary("ok", [])
    with pytest.raises(InputError, match="invalid label"):
        bank.save_vocabulary("ok", ["a", " "])
    with pytest.raises(TypeError):
        bank.save_vocabulary("ok", "abc")
    assert not bank_path.exists()


def test_an_older_bank_gets_the_vocabularies_table_on_first_write(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # the version-1 layout before vocabularies existed
        conn.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('schema_version', '1');"
            "CREATE TABLE embeddings (fingerprint TEXT NOT NULL, prompt_key TEXT NOT NULL, label TEXT NOT NULL, dim INTEGER NOT NULL,"
            " embedding BLOB NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (fingerprint, prompt_key, label)) WITHOUT ROWID;"
        )
    bank = LabelBank(path)
    assert bank.vocabularies() == [] and bank.vocabulary("k") is None  # reading creates no table
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'vocabularies'").fetchone() is None
    bank.save_vocabulary("k", ["yoga"])
    bank.close()
    assert LabelBank(path).vocabularies() == [("k", 1)]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_opening_and_reading_never_write(bank_path: Path) -> None:
    """Opening runs no write transaction: a bank file's bytes are unchanged by opening and every kind of read."""
    LabelBank(bank_path).get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=LABELS, encode=CountingEncoder())
    with sqlite3.connect(bank_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = bank_path.read_bytes()
    bank = LabelBank(bank_path)
    assert bank.count() == 4 and len(bank.list()) == 4 and bank.model_names() == {} and bank.vocabularies() == []
    assert bank.get_attributes(fingerprint="llm", prompt_key="k", labels=["yoga"]) == {}
    assert bank.get_or_encode(fingerprint="m", prompt_set=PROMPTS, labels=LABELS[:2], encode=CountingEncoder())[1] == 0
    wal = bank_path.with_name(bank_path.name + "-wal")
    assert bank_path.read_bytes() == before and (not wal.exists() or wal.stat().st_size == 0)
