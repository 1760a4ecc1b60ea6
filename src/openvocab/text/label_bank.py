"""The label bank: a persistent SQLite cache of label embeddings.

The open-vocabulary multi-label paper (Fig. 2b, "classifier vocabulary expansion") computes label embeddings once,
stores them in a label embedding database, and extends the vocabulary at any time; inference only compares video
features against stored embeddings. :class:`LabelBank` is that database. A row is keyed by

- the model fingerprint (which text tower produced it: weights, tokenizer, label encoder),
- the prompt-set key (:attr:`openvocab.text.prompts.PromptSet.key`, which templates were ensembled),
- the cleaned label text,

and holds a float32 little-endian embedding blob, its dimension and a creation time. Adding labels encodes only the
new ones (:meth:`LabelBank.get_or_encode`). The file is in WAL mode so several processes can read while one writes;
every write is one transaction.

LLM-generated label attributes (fixed LLM prompting, :mod:`openvocab.text.llm_attributes`) are kept beside the
embeddings in an ``attributes`` table keyed by the LLM's fingerprint, the LLM prompt key and the label (a JSON list and
the LLM's raw answer), so an LLM runs once per new label. The table is created on first use: bank files written before
it existed keep working (same schema version; older openvocab ignores the table).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from openvocab.atomic import atomic_write
from openvocab.errors import InputError
from openvocab.text.prompts import PromptSet

__all__ = ["AttributeRecord", "LabelBank", "LabelRecord", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
_CHUNK = 500  # labels per SELECT ... IN (...), below SQLite's bound-variable limit on old builds
_DTYPE = np.dtype("<f4")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    fingerprint TEXT NOT NULL,
    prompt_key TEXT NOT NULL,
    label TEXT NOT NULL,
    dim INTEGER NOT NULL,
    embedding BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, prompt_key, label)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class LabelRecord:
    """One stored embedding's metadata (``created_at`` is a Unix timestamp)."""

    fingerprint: str
    prompt_key: str
    label: str
    dim: int
    created_at: float


@dataclass(frozen=True)
class AttributeRecord:
    """LLM attributes of one label (:meth:`LabelBank.attribute_records`): the parsed list and the LLM's raw answer."""

    label: str
    attributes: tuple[str, ...]
    raw: str
    created_at: float


class LabelBank:
    """A label-embedding cache in one SQLite file (created, with its parent directories, on first use).

    Thread-safe within a process (one connection guarded by a lock) and safe across processes (SQLite locking,
    WAL journal, ``busy_timeout``). A file that is not a label bank raises a one-line :class:`InputError`.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the label bank directory ({exc.strerror or exc})", path=self.path) from None
        if self.path.is_dir():
            raise self._unusable("is a directory")
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            with self._write() as conn:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(embeddings)")}
        except sqlite3.DatabaseError as exc:
            self.close()
            raise self._unusable(str(exc)) from None
        if not {"fingerprint", "prompt_key", "label", "dim", "embedding", "created_at"} <= columns:
            self.close()
            raise self._unusable("has an 'embeddings' table of another program")
        if str(row[0]) != str(SCHEMA_VERSION):
            self.close()
            raise self._unusable(f"has label-bank schema version {row[0]}, this openvocab reads version {SCHEMA_VERSION}")

    # ------------------------------------------------------------------ plumbing
    def _unusable(self, problem: str) -> InputError:
        return InputError(
            f"not a usable label bank ({problem}); pass --label-bank with another path or delete this file",
            path=self.path,
        )

    @staticmethod
    def default_path() -> Path:
        """``$OPENVOCAB_CACHE/label_bank.sqlite``, else ``~/.cache/openvocab/label_bank.sqlite``."""
        root = os.environ.get("OPENVOCAB_CACHE")
        base = Path(root).expanduser() if root else Path.home() / ".cache" / "openvocab"
        return base / "label_bank.sqlite"

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the label bank is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` takes the write lock up front; rollback on any error)."""
        with self._lock:
            conn = self._db
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn SQLite errors during use (a file corrupted or replaced underneath us) into one-line errors."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise InputError(f"label bank is busy ({exc}); another process holds it, try again", path=self.path) from None
            raise self._unusable(str(exc)) from None
        except sqlite3.DatabaseError as exc:
            raise self._unusable(str(exc)) from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> LabelBank:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LabelBank({str(self.path)!r})"

    # ------------------------------------------------------------------ reading and writing embeddings
    def _lookup(self, fingerprint: str, prompt_key: str, labels: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock, self._guard():
            for start in range(0, len(labels), _CHUNK):
                chunk = list(labels[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT label, dim, embedding FROM embeddings WHERE fingerprint = ? AND prompt_key = ? AND label IN ({marks})",
                    (fingerprint, prompt_key, *chunk),
                )
                for label, dim, blob in rows:
                    vector = np.frombuffer(blob, dtype=_DTYPE)
                    if vector.size != dim:
                        raise self._unusable(f"stored embedding for '{label}' has {vector.size} values, expected {dim}")
                    found[label] = vector
        return found

    def get(self, *, fingerprint: str, prompt_set: PromptSet | str, labels: Sequence[str]) -> dict[str, torch.Tensor]:
        """The stored embeddings among ``labels`` (label -> (D,) float32); missing labels are absent."""
        key = prompt_set.key if isinstance(prompt_set, PromptSet) else prompt_set
        return {label: torch.from_numpy(v.copy()) for label, v in self._lookup(fingerprint, key, list(labels)).items()}

    def put(self, *, fingerprint: str, prompt_set: PromptSet | str, labels: Sequence[str], embeddings: torch.Tensor) -> None:
        """Store (or replace) embeddings (L, D) for ``labels`` in one transaction."""
        key = prompt_set.key if isinstance(prompt_set, PromptSet) else prompt_set
        self._store(fingerprint, key, list(labels), embeddings, replace=True)

    def _store(self, fingerprint: str, prompt_key: str, labels: list[str], embeddings: torch.Tensor, *, replace: bool) -> None:
        array = embeddings.detach().to("cpu", torch.float32).contiguous().numpy().astype(_DTYPE, copy=False)
        if array.ndim != 2 or array.shape[0] != len(labels):
            raise ValueError(f"expected ({len(labels)}, D) embeddings, got shape {tuple(array.shape)}")
        if not np.isfinite(array).all():
            raise ValueError("refusing to store non-finite label embeddings")
        now = time.time()
        rows = [(fingerprint, prompt_key, label, array.shape[1], array[i].tobytes(), now) for i, label in enumerate(labels)]
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"  # IGNORE: a concurrent writer got there first
        with self._guard(), self._write() as conn:
            conn.executemany(
                f"{verb} INTO embeddings (fingerprint, prompt_key, label, dim, embedding, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def embeddings(self, encoder, labels: Sequence[str], *, progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, int]:
        """``(embeddings (L, D), how many were encoded now)`` of ``labels`` by a label encoder
        (:class:`~openvocab.text.label_encoders.LabelEncoder`), cached under its ``fingerprint`` and ``prompt_key``;
        closed-set encoders are not cached (their rows are the classifier's own)."""
        if not encoder.open_vocabulary:
            return encoder.encode(list(labels)), 0
        return self.get_or_encode(
            fingerprint=encoder.fingerprint, prompt_set=encoder.prompt_key, labels=labels, encode=lambda missing: encoder.encode(missing, progress=progress)
        )

    def get_or_encode(
        self,
        *,
        fingerprint: str,
        prompt_set: PromptSet | str,
        labels: Sequence[str],
        encode: Callable[[list[str]], torch.Tensor],
    ) -> tuple[torch.Tensor, int]:
        """``(embeddings (L, D) float32 for labels in order, M)``; ``encode`` runs once, on the M missing labels only.

        ``encode(missing)`` must return an (M, D) tensor for the M missing labels (in their order). The new rows
        are stored in one transaction; M is 0 when everything was cached and ``encode`` was not called (the count
        is returned, not kept on the bank: one bank serves concurrent callers). Repeated labels are encoded once.
        """
        if isinstance(labels, str):
            raise TypeError("labels must be a sequence of strings, not one string")
        ordered = list(dict.fromkeys(labels))
        if not ordered:
            raise InputError("empty label list")
        key = prompt_set.key if isinstance(prompt_set, PromptSet) else prompt_set
        found = self._lookup(fingerprint, key, ordered)
        missing = [label for label in ordered if label not in found]
        if missing:
            encoded = encode(list(missing))
            if not isinstance(encoded, torch.Tensor) or encoded.dim() != 2 or encoded.shape[0] != len(missing):
                shape = tuple(encoded.shape) if isinstance(encoded, torch.Tensor) else type(encoded).__name__
                raise ValueError(f"encode returned {shape} for {len(missing)} labels; expected ({len(missing)}, D)")
            self._store(fingerprint, key, missing, encoded, replace=False)
            array = encoded.detach().to("cpu", torch.float32).numpy()
            found.update({label: array[i] for i, label in enumerate(missing)})
        dims = {found[label].shape[0] for label in ordered}
        if len(dims) != 1:
            raise InputError(
                f"cached embeddings for fingerprint '{fingerprint}' have mixed sizes {sorted(dims)}; "
                "clear them with `openvocab labels clear` or use another --label-bank",
                path=self.path,
            )
        stacked = np.stack([found[label] for label in labels]).astype(np.float32, copy=False)
        return torch.from_numpy(np.ascontiguousarray(stacked)), len(missing)

    # ------------------------------------------------------------------ inspection and maintenance
    def count(self, *, fingerprint: str | None = None, prompt_key: str | None = None) -> int:
        where, args = _filters(fingerprint, prompt_key)
        with self._lock, self._guard():
            return int(self._db.execute(f"SELECT COUNT(*) FROM embeddings{where}", args).fetchone()[0])

    def list(self, *, fingerprint: str | None = None, prompt_key: str | None = None) -> list[LabelRecord]:
        """Metadata of stored embeddings, optionally for one fingerprint / prompt key, ordered by creation."""
        where, args = _filters(fingerprint, prompt_key)
        with self._lock, self._guard():
            rows = self._db.execute(
                f"SELECT fingerprint, prompt_key, label, dim, created_at FROM embeddings{where} ORDER BY fingerprint, prompt_key, created_at, label",
                args,
            ).fetchall()
        return [LabelRecord(str(f), str(k), str(label), int(d), float(t)) for f, k, label, d, t in rows]

    def remove(self, *, fingerprint: str, prompt_key: str | None = None, labels: Sequence[str] | None = None) -> int:
        """Delete the rows of a fingerprint (optionally only one prompt key / some labels); returns rows deleted."""
        where, args = _filters(fingerprint, prompt_key)
        with self._guard(), self._write() as conn:
            if labels is None:
                return int(conn.execute(f"DELETE FROM embeddings{where}", args).rowcount)
            deleted = 0
            for label in dict.fromkeys(labels):
                deleted += conn.execute(f"DELETE FROM embeddings{where} AND label = ?", (*args, label)).rowcount
            return deleted

    def clear(self, *, fingerprint: str | None = None) -> int:
        """Delete everything, or everything of one fingerprint; returns rows deleted."""
        where, args = _filters(fingerprint, None)
        with self._guard(), self._write() as conn:
            return int(conn.execute(f"DELETE FROM embeddings{where}", args).rowcount)

    def export(
        self,
        path: str | Path,
        *,
        fingerprint: str,
        prompt_key: str,
        labels: Sequence[str] | None = None,
    ) -> int:
        """Write stored embeddings to ``path``; the format follows the suffix. Returns the number of labels.

        - ``.npz``: arrays ``labels`` (str), ``embeddings`` (L, D float32), ``fingerprint``, ``prompt_key``;
        - ``.json``: ``{"fingerprint", "prompt_key", "dim", "labels": [...], "embeddings": [[...], ...]}``;
        - ``.csv``: header ``label,dim,e0,...,e{D-1}``, one row per label.

        ``labels`` restricts and orders the export (all must be stored); by default every label of the key, in
        creation order. The file is written to a temporary name, fsynced and renamed (atomic).
        """
        target = Path(path).expanduser()
        suffix = target.suffix.lower()
        if suffix not in (".npz", ".json", ".csv"):
            raise InputError("unknown export format; use a .npz, .json or .csv file name", path=target)
        if labels is None:
            names = [r.label for r in self.list(fingerprint=fingerprint, prompt_key=prompt_key)]
            found = self._lookup(fingerprint, prompt_key, names)
        else:
            names = list(labels)
            found = self._lookup(fingerprint, prompt_key, names)
            absent = [label for label in names if label not in found]
            if absent:
                raise InputError(f"{len(absent)} labels are not in the label bank, e.g. '{absent[0]}'", path=self.path)
        if not names:
            raise InputError(f"no embeddings stored for fingerprint '{fingerprint}' and prompt key '{prompt_key}'", path=self.path)
        dims = {found[label].shape[0] for label in names}
        if len(dims) != 1:
            raise InputError(f"stored embeddings have mixed sizes {sorted(dims)}", path=self.path)
        matrix = np.stack([found[label] for label in names]).astype(np.float32)
        if suffix == ".npz":
            buffer = io.BytesIO()
            np.savez(buffer, labels=np.array(names, dtype=str), embeddings=matrix, fingerprint=np.array(fingerprint), prompt_key=np.array(prompt_key))
            payload = buffer.getvalue()
        elif suffix == ".json":
            document = {"fingerprint": fingerprint, "prompt_key": prompt_key, "dim": int(matrix.shape[1]), "labels": names, "embeddings": matrix.tolist()}
            payload = (json.dumps(document, ensure_ascii=False) + "\n").encode("utf-8")
        else:
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(["label", "dim", *(f"e{i}" for i in range(matrix.shape[1]))])
            for label, row in zip(names, matrix):
                writer.writerow([label, matrix.shape[1], *(repr(float(x)) for x in row)])
            payload = text.getvalue().encode("utf-8")
        _write_bytes_atomic(target, payload)
        return len(names)

    # ------------------------------------------------------------------ model names and removal
    def note_model(self, fingerprint: str, model: str) -> None:
        """Remember that ``model`` (a hub id, a model directory, ``random:ARCH``) has text-tower ``fingerprint``, so
        listings can name the model. Several names may share a fingerprint (a hub id and a local copy of it)."""
        with self._guard(), self._write() as conn:
            conn.execute(_MODELS_SCHEMA)
            conn.execute("INSERT OR REPLACE INTO models (fingerprint, model, seen_at) VALUES (?, ?, ?)", (fingerprint, str(model), time.time()))

    def model_names(self) -> dict[str, list[str]]:
        """``fingerprint -> model names`` recorded by :meth:`note_model`, most recently noted first (fingerprints
        never named are absent)."""
        with self._lock, self._guard():
            if not _has_models_table(self._db):
                return {}
            rows = self._db.execute("SELECT fingerprint, model FROM models ORDER BY seen_at DESC, model").fetchall()
        names: dict[str, list[str]] = {}
        for fingerprint, model in rows:
            names.setdefault(str(fingerprint), []).append(str(model))
        return names

    def discard(self, *, fingerprint: str | None = None, prompt_key: str | None = None, labels: Sequence[str] | None = None) -> list[LabelRecord]:
        """Delete stored embeddings and return what was deleted, in one transaction: everything (no arguments), or
        those of a fingerprint and/or prompt key, optionally only ``labels``. Model names whose fingerprint has no
        embedding left are forgotten as well."""
        if isinstance(labels, str):
            raise TypeError("labels must be a sequence of strings, not one string")
        where, args = _filters(fingerprint, prompt_key)
        columns = "fingerprint, prompt_key, label, dim, created_at"
        order = " ORDER BY fingerprint, prompt_key, created_at, label"
        rows: list[tuple] = []
        with self._guard(), self._write() as conn:
            if labels is None:
                rows = conn.execute(f"SELECT {columns} FROM embeddings{where}{order}", args).fetchall()
                conn.execute(f"DELETE FROM embeddings{where}", args)
            else:
                unique = list(dict.fromkeys(labels))
                joiner = " AND " if where else " WHERE "
                for start in range(0, len(unique), _CHUNK):
                    chunk = unique[start : start + _CHUNK]
                    clause = f"{where}{joiner}label IN ({','.join('?' * len(chunk))})"
                    rows.extend(conn.execute(f"SELECT {columns} FROM embeddings{clause}{order}", (*args, *chunk)).fetchall())
                    conn.execute(f"DELETE FROM embeddings{clause}", (*args, *chunk))
            if _has_models_table(conn):
                conn.execute("DELETE FROM models WHERE fingerprint NOT IN (SELECT DISTINCT fingerprint FROM embeddings)")
        return [LabelRecord(str(f), str(k), str(label), int(d), float(t)) for f, k, label, d, t in rows]

    # ------------------------------------------------------------------ LLM attributes (fixed LLM prompting)
    def attribute_records(self, *, fingerprint: str, prompt_key: str, labels: Sequence[str]) -> dict[str, AttributeRecord]:
        """The stored LLM attributes among ``labels`` (label -> record) for an LLM ``fingerprint`` and LLM prompt
        ``prompt_key``; missing labels are absent (an empty list is stored: the LLM gave nothing usable)."""
        if isinstance(labels, str):
            raise TypeError("labels must be a sequence of strings, not one string")
        found: dict[str, AttributeRecord] = {}
        with self._lock, self._guard():
            if not _has_table(self._db, "attributes"):
                return found
            unique = list(dict.fromkeys(labels))
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                rows = self._db.execute(
                    f"SELECT label, attributes, raw, created_at FROM attributes WHERE fingerprint = ? AND prompt_key = ? AND label IN ({','.join('?' * len(chunk))})",
                    (fingerprint, prompt_key, *chunk),
                )
                for label, blob, raw, created in rows:
                    try:
                        items = json.loads(blob)
                    except ValueError:
                        raise self._unusable(f"stored attributes of '{label}' are not JSON") from None
                    found[str(label)] = AttributeRecord(str(label), tuple(str(x) for x in items), str(raw or ""), float(created))
        return found

    def get_attributes(self, *, fingerprint: str, prompt_key: str, labels: Sequence[str]) -> dict[str, list[str]]:
        """``label -> attributes`` of the stored labels among ``labels`` (see :meth:`attribute_records`)."""
        return {label: list(rec.attributes) for label, rec in self.attribute_records(fingerprint=fingerprint, prompt_key=prompt_key, labels=labels).items()}

    def put_attributes(self, *, fingerprint: str, prompt_key: str, attributes: Mapping[str, Sequence[str]], raw: Mapping[str, str] | None = None) -> None:
        """Store (or replace) ``label -> attributes`` (and the LLM's raw answers) in one transaction."""
        now = time.time()
        rows = [
            (fingerprint, prompt_key, label, json.dumps([str(x) for x in items], ensure_ascii=False), (raw or {}).get(label, ""), now)
            for label, items in attributes.items()
        ]
        with self._guard(), self._write() as conn:
            conn.execute(_ATTRIBUTES_SCHEMA)
            conn.executemany("INSERT OR REPLACE INTO attributes (fingerprint, prompt_key, label, attributes, raw, created_at) VALUES (?, ?, ?, ?, ?, ?)", rows)


_ATTRIBUTES_SCHEMA = """
CREATE TABLE IF NOT EXISTS attributes (
    fingerprint TEXT NOT NULL,
    prompt_key TEXT NOT NULL,
    label TEXT NOT NULL,
    attributes TEXT NOT NULL,
    raw TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, prompt_key, label)
) WITHOUT ROWID
"""


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


_MODELS_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    fingerprint TEXT NOT NULL,
    model TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, model)
) WITHOUT ROWID
"""


def _has_models_table(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'models'").fetchone() is not None


def _filters(fingerprint: str | None, prompt_key: str | None) -> tuple[str, tuple[str, ...]]:
    clauses, args = [], []
    for column, value in (("fingerprint", fingerprint), ("prompt_key", prompt_key)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)


def _write_bytes_atomic(target: Path, payload: bytes) -> None:
    try:
        atomic_write(target, payload)
    except OSError as exc:
        raise InputError(f"cannot write the export ({exc.strerror or exc})", path=target) from None
