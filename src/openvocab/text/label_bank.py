"""The label bank: a persistent SQLite cache of label embeddings.

The open-vocabulary multi-label paper (Fig. 2b, "classifier vocabulary expansion") computes label embeddings once,
stores them in a label embedding database, and extends the vocabulary at any time; inference only compares video
features against stored embeddings. :class:`LabelBank` is that database. A row is keyed by

- the model fingerprint (which text tower produced it: weights, tokenizer, label encoder),
- the prompt-set key (:attr:`openvocab.text.prompts.PromptSet.key`, which templates were ensembled),
- the cleaned label text,

and holds a float32 little-endian embedding blob, its dimension and a creation time. Adding labels encodes only the
new ones (:meth:`LabelBank.get_or_encode`).

Concurrency and faults: the file is in WAL mode, so readers never wait for a writer and a writer killed mid-write
leaves only uncommitted WAL frames that SQLite discards; every write is one ``BEGIN IMMEDIATE`` transaction that waits
up to ``timeout`` seconds for the write lock. Opening and reading never write: the file (and its schema) is created by
the first write, so listing a bank that does not exist creates nothing, and a bank held by a long writer, or a
read-only file, still serves its cached labels. A bank opened with ``optional=True`` (how the classifier opens it) is
a cache and nothing more: when it turns out read-only, busy or corrupt during use, labels are encoded without caching
and one warning is logged, instead of failing the classification.

Tables created on first use, beside ``meta`` and ``embeddings`` (same schema version; older openvocab ignores them):
``attributes`` (LLM-generated label attributes, :mod:`openvocab.text.llm_attributes`, keyed by the LLM's fingerprint,
its prompt key and the label), ``models`` (which model names a fingerprint belongs to) and ``vocabularies`` (saved
label lists such as Kinetics-400, by name, for the web page and ``openvocab labels vocabularies``).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from openvocab.errors import InputError
from openvocab.text.label_bank_sqlite import (
    ATTRIBUTES_SCHEMA,
    MODELS_SCHEMA,
    SCHEMA,
    SCHEMA_VERSION,
    VOCABULARIES_SCHEMA,
    VOCABULARY_NAME,
    BusyLabelBank,
    LabelBankError,
    ReadOnlyLabelBank,
    UnusableLabelBank,
    check_header,
    check_schema,
    check_vocabulary_name,
    connect,
    error_kind,
    export_payload,
    has_table,
    sql_filters,
    switch_to_wal,
    write_export,
)
from openvocab.text.prompts import PromptSet

__all__ = [
    "AttributeRecord",
    "BusyLabelBank",
    "LabelBank",
    "LabelBankError",
    "LabelRecord",
    "ReadOnlyLabelBank",
    "SCHEMA_VERSION",
    "UnusableLabelBank",
    "VOCABULARY_NAME",
    "check_vocabulary_name",
]

log = logging.getLogger(__name__)

_CHUNK = 500  # labels per SELECT ... IN (...), below SQLite's bound-variable limit on old builds
_DTYPE = np.dtype("<f4")
_T = TypeVar("_T")


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
    """A label-embedding cache in one SQLite file (created, with its parent directories, on the first write).

    Thread-safe within a process (one connection guarded by a lock) and safe across processes (SQLite locking,
    WAL journal, ``busy_timeout`` = ``timeout`` seconds). Opening reads only: a file that is not a label bank raises
    a one-line :class:`UnusableLabelBank`; a file that cannot be written is opened for reading
    (:attr:`read_only`; ``read_only=True`` forces that). Writes that cannot happen raise :class:`ReadOnlyLabelBank`
    or :class:`BusyLabelBank`, or, with ``optional=True``, are skipped with one logged warning (see the module doc).
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0, read_only: bool = False, optional: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.timeout = float(timeout)
        self.optional = optional
        self._force_read_only = read_only
        self._read_only = read_only
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._schema_ready = False  # the tables exist (checked on open; created by the first write otherwise)
        self._wal_ready = False
        self._closed = False
        self._disabled: str | None = None  # optional bank found unusable during use: the problem; the bank is skipped
        self._warned: set[str] = set()
        if self.path.is_dir():
            raise UnusableLabelBank("it is a directory", path=self.path, advice="pass --label-bank with a file path")
        if self.path.exists():
            with self._lock, self._guard():
                self._open_existing()

    # ------------------------------------------------------------------ opening (reads only) and the first write
    @property
    def read_only(self) -> bool:
        """Whether writes are known to be impossible (forced, or found out on open or on a write)."""
        return self._read_only

    def _open_existing(self) -> None:
        """Connect to an existing file and check it is a label bank, without writing anything."""
        check_header(self.path)
        conn = connect(self.path, "ro" if self._force_read_only else "rw", timeout=self.timeout)
        try:
            try:
                self._schema_ready = check_schema(conn, self.path)
            except sqlite3.OperationalError as exc:
                if self._force_read_only or error_kind(exc) not in ("readonly", "cantopen"):
                    raise
                # A WAL file in a read-only directory without its -shm index: readable only as an immutable file.
                conn.close()
                conn = connect(self.path, "ro&immutable=1", timeout=self.timeout)
                self._read_only = True
                self._schema_ready = check_schema(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _reader(self) -> sqlite3.Connection | None:
        """The connection for reads, or None while there is no bank yet (no file, or a file without tables). A
        file another process created since we looked is picked up here."""
        if self._closed:
            raise RuntimeError("the label bank is closed")
        if self._conn is None:
            if not self.path.is_file():
                return None
            self._open_existing()
        if not self._schema_ready:
            self._schema_ready = check_schema(self._db, self.path)
        return self._conn if self._schema_ready else None

    def _writer(self) -> sqlite3.Connection:
        """The connection for writes: the file and its directories are created here, and switched to WAL."""
        if self._closed:
            raise RuntimeError("the label bank is closed")
        if self._read_only:
            raise self._read_only_error("it was opened read-only" if self._force_read_only else "the file or its directory is read-only")
        if self._conn is None:
            if self.path.exists():
                self._open_existing()
            else:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise self._read_only_error(f"cannot create its directory: {exc.strerror or exc}") from None
                self._conn = connect(self.path, "rwc", timeout=self.timeout)
        if not self._wal_ready:
            switch_to_wal(self._db, self.timeout)
            self._wal_ready = True
        return self._db

    def _read_only_error(self, why: str) -> ReadOnlyLabelBank:
        self._read_only = True
        return ReadOnlyLabelBank(why, path=self.path)

    # ------------------------------------------------------------------ plumbing
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
        """One write transaction (``BEGIN IMMEDIATE`` takes the write lock up front; rollback on any error). The
        schema is created inside the first one, so concurrent first writers cannot race."""
        with self._lock:
            conn = self._writer()
            conn.execute("BEGIN IMMEDIATE")
            created = False
            try:
                if not self._schema_ready:
                    for statement in filter(str.strip, SCHEMA.split(";")):
                        conn.execute(statement)
                    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    created = check_schema(conn, self.path)
                yield conn
            except BaseException:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the transaction is gone already (SQLite rolled back on the error)
                raise
            conn.execute("COMMIT")
            self._schema_ready = self._schema_ready or created

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn SQLite errors (a read-only or busy file, one corrupted or replaced underneath us) into one-line errors."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            kind = error_kind(exc)
            if kind == "busy":
                raise BusyLabelBank(
                    f"the label bank is busy: another process held its write lock for over {self.timeout:g} s ({exc}); try again", path=self.path
                ) from None
            if kind == "readonly":
                raise self._read_only_error(str(exc)) from None
            raise UnusableLabelBank(str(exc), path=self.path) from None
        except sqlite3.DatabaseError as exc:
            raise UnusableLabelBank(str(exc), path=self.path) from None

    def _degrade(self, exc: LabelBankError, fallback: _T, what: str) -> _T:
        """An optional bank (the classifier's cache) turns a failure into one warning per kind and ``fallback``;
        any other bank re-raises. ``what`` says what the caller goes on without."""
        if not self.optional:
            raise exc
        if isinstance(exc, UnusableLabelBank):
            self._disabled = exc.problem
            kind, line = (
                "unusable",
                f"label bank {self.path} unusable: {exc.problem}; running without it (pass --label-bank with another path, or --no-label-bank)",
            )
        elif isinstance(exc, ReadOnlyLabelBank):
            kind, line = "readonly", f"label bank {self.path} is read-only ({exc.reason}): {what}"
        else:
            kind, line = "busy", f"label bank {self.path} is busy (another process holds its write lock): {what}"
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("%s", line)
        return fallback

    def close(self) -> None:
        with self._lock:
            self._closed = True
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
            conn = self._reader()
            if conn is None:
                return found
            for start in range(0, len(labels), _CHUNK):
                chunk = list(labels[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT label, dim, embedding FROM embeddings WHERE fingerprint = ? AND prompt_key = ? AND label IN ({marks})",
                    (fingerprint, prompt_key, *chunk),
                )
                for label, dim, blob in rows:
                    vector = np.frombuffer(blob, dtype=_DTYPE)
                    if vector.size != dim:
                        raise UnusableLabelBank(f"the stored embedding of '{label}' has {vector.size} values, expected {dim}", path=self.path)
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
        An optional bank that cannot be read or written returns the encoded rows all the same (see the module doc).
        """
        if isinstance(labels, str):
            raise TypeError("labels must be a sequence of strings, not one string")
        ordered = list(dict.fromkeys(labels))
        if not ordered:
            raise InputError("empty label list")
        key = prompt_set.key if isinstance(prompt_set, PromptSet) else prompt_set
        found: dict[str, np.ndarray] = {}
        if self._disabled is None:
            try:
                found = self._lookup(fingerprint, key, ordered)
            except LabelBankError as exc:
                found = self._degrade(exc, {}, "encoding every label")
        missing = [label for label in ordered if label not in found]
        if missing:
            encoded = encode(list(missing))
            if not isinstance(encoded, torch.Tensor) or encoded.dim() != 2 or encoded.shape[0] != len(missing):
                shape = tuple(encoded.shape) if isinstance(encoded, torch.Tensor) else type(encoded).__name__
                raise ValueError(f"encode returned {shape} for {len(missing)} labels; expected ({len(missing)}, D)")
            if self._disabled is None:
                try:
                    self._store(fingerprint, key, missing, encoded, replace=False)
                except LabelBankError as exc:
                    self._degrade(exc, None, f"{len(missing)} new label(s) encoded for this run but not cached")
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
        where, args = sql_filters(fingerprint, prompt_key)
        with self._lock, self._guard():
            conn = self._reader()
            return 0 if conn is None else int(conn.execute(f"SELECT COUNT(*) FROM embeddings{where}", args).fetchone()[0])

    def list(self, *, fingerprint: str | None = None, prompt_key: str | None = None) -> list[LabelRecord]:
        """Metadata of stored embeddings, optionally for one fingerprint / prompt key, ordered by creation."""
        where, args = sql_filters(fingerprint, prompt_key)
        with self._lock, self._guard():
            conn = self._reader()
            if conn is None:
                return []
            rows = conn.execute(
                f"SELECT fingerprint, prompt_key, label, dim, created_at FROM embeddings{where} ORDER BY fingerprint, prompt_key, created_at, label",
                args,
            ).fetchall()
        return [LabelRecord(str(f), str(k), str(label), int(d), float(t)) for f, k, label, d, t in rows]

    def remove(self, *, fingerprint: str, prompt_key: str | None = None, labels: Sequence[str] | None = None) -> int:
        """Delete the rows of a fingerprint (optionally only one prompt key / some labels); returns rows deleted."""
        where, args = sql_filters(fingerprint, prompt_key)
        if not self._has_rows():
            return 0
        with self._guard(), self._write() as conn:
            if labels is None:
                return int(conn.execute(f"DELETE FROM embeddings{where}", args).rowcount)
            deleted = 0
            for label in dict.fromkeys(labels):
                deleted += conn.execute(f"DELETE FROM embeddings{where} AND label = ?", (*args, label)).rowcount
            return deleted

    def clear(self, *, fingerprint: str | None = None) -> int:
        """Delete everything, or everything of one fingerprint; returns rows deleted."""
        where, args = sql_filters(fingerprint, None)
        if not self._has_rows():
            return 0
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
        write_export(target, export_payload(suffix, names, matrix, fingerprint=fingerprint, prompt_key=prompt_key))
        return len(names)

    # ------------------------------------------------------------------ model names and removal
    def _has_rows(self) -> bool:
        """Whether the bank exists with its tables (deleting from a bank that is not there creates nothing)."""
        with self._lock, self._guard():
            return self._reader() is not None

    def _has(self, table: str) -> sqlite3.Connection | None:
        """The read connection when ``table`` exists (tables other than ``embeddings`` are created on first use)."""
        conn = self._reader()
        return conn if conn is not None and has_table(conn, table) else None

    def note_model(self, fingerprint: str, model: str) -> None:
        """Remember that ``model`` (a hub id, a model directory, ``random:ARCH``) has text-tower ``fingerprint``, so
        listings can name the model. Several names may share a fingerprint (a hub id and a local copy of it). A name
        already noted is not written again, so classifying with cached labels never takes the write lock; an
        optional bank skips the note silently when it cannot write."""
        try:
            with self._lock, self._guard():
                conn = self._has("models")
                if conn is not None and conn.execute("SELECT 1 FROM models WHERE fingerprint = ? AND model = ?", (fingerprint, str(model))).fetchone():
                    return
            with self._guard(), self._write() as conn:
                conn.execute(MODELS_SCHEMA)
                conn.execute("INSERT OR REPLACE INTO models (fingerprint, model, seen_at) VALUES (?, ?, ?)", (fingerprint, str(model), time.time()))
        except LabelBankError:
            if not self.optional:
                raise

    def model_names(self) -> dict[str, list[str]]:
        """``fingerprint -> model names`` recorded by :meth:`note_model`, most recently first noted first
        (fingerprints never named are absent)."""
        with self._lock, self._guard():
            conn = self._has("models")
            if conn is None:
                return {}
            rows = conn.execute("SELECT fingerprint, model FROM models ORDER BY seen_at DESC, model").fetchall()
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
        if not self._has_rows():
            return []
        where, args = sql_filters(fingerprint, prompt_key)
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
            if has_table(conn, "models"):
                conn.execute("DELETE FROM models WHERE fingerprint NOT IN (SELECT DISTINCT fingerprint FROM embeddings)")
        return [LabelRecord(str(f), str(k), str(label), int(d), float(t)) for f, k, label, d, t in rows]

    # ------------------------------------------------------------------ saved vocabularies (label lists by name)
    def save_vocabulary(self, name: str, labels: Sequence[str]) -> None:
        """Save (or replace) the label list ``labels`` under ``name`` (see :func:`check_vocabulary_name`), in order."""
        check_vocabulary_name(name)
        if isinstance(labels, str):
            raise TypeError("labels must be a sequence of strings, not one string")
        items = list(labels)
        if not items:
            raise InputError(f"vocabulary '{name}' has no labels")
        bad = next((x for x in items if not isinstance(x, str) or not x.strip()), None)
        if bad is not None:
            raise InputError(f"vocabulary '{name}' has an invalid label {bad!r}")
        with self._guard(), self._write() as conn:
            conn.execute(VOCABULARIES_SCHEMA)
            conn.execute(
                "INSERT OR REPLACE INTO vocabularies (name, labels, created_at) VALUES (?, ?, ?)", (name, json.dumps(items, ensure_ascii=False), time.time())
            )

    def vocabulary(self, name: str) -> list[str] | None:
        """The labels saved under ``name``, or None when there is no such vocabulary."""
        check_vocabulary_name(name)
        with self._lock, self._guard():
            conn = self._has("vocabularies")
            row = None if conn is None else conn.execute("SELECT labels FROM vocabularies WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._vocabulary_labels(name, row[0])

    def vocabularies(self) -> list[tuple[str, int]]:
        """``(name, number of labels)`` of every saved vocabulary, by name."""
        with self._lock, self._guard():
            conn = self._has("vocabularies")
            rows = [] if conn is None else conn.execute("SELECT name, labels FROM vocabularies ORDER BY name").fetchall()
        return [(str(name), len(self._vocabulary_labels(str(name), blob))) for name, blob in rows]

    def delete_vocabulary(self, name: str) -> bool:
        """Delete the vocabulary ``name``; False when there was none (nothing is written then)."""
        if self.vocabulary(name) is None:
            return False
        with self._guard(), self._write() as conn:
            return conn.execute("DELETE FROM vocabularies WHERE name = ?", (name,)).rowcount > 0

    def _vocabulary_labels(self, name: str, blob: object) -> list[str]:
        try:
            items = json.loads(str(blob))
        except ValueError:
            items = None
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise UnusableLabelBank(f"the saved vocabulary '{name}' is not a JSON list of labels", path=self.path)
        return items

    # ------------------------------------------------------------------ LLM attributes (fixed LLM prompting)
    def attribute_records(self, *, fingerprint: str, prompt_key: str, labels: Sequence[str]) -> dict[str, AttributeRecord]:
        """The stored LLM attributes among ``labels`` (label -> record) for an LLM ``fingerprint`` and LLM prompt
        ``prompt_key``; missing labels are absent (an empty list is stored: the LLM gave nothing usable)."""
        if isinstance(labels, str):
            raise TypeError("labels must be a sequence of strings, not one string")
        if self._disabled is not None:
            return {}
        try:
            return self._attribute_records(fingerprint, prompt_key, labels)
        except LabelBankError as exc:
            return self._degrade(exc, {}, "asking the LLM again")

    def _attribute_records(self, fingerprint: str, prompt_key: str, labels: Sequence[str]) -> dict[str, AttributeRecord]:
        found: dict[str, AttributeRecord] = {}
        with self._lock, self._guard():
            conn = self._has("attributes")
            if conn is None:
                return found
            unique = list(dict.fromkeys(labels))
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                rows = conn.execute(
                    f"SELECT label, attributes, raw, created_at FROM attributes WHERE fingerprint = ? AND prompt_key = ? AND label IN ({','.join('?' * len(chunk))})",
                    (fingerprint, prompt_key, *chunk),
                )
                for label, blob, raw, created in rows:
                    try:
                        items = json.loads(blob)
                    except ValueError:
                        raise UnusableLabelBank(f"the stored attributes of '{label}' are not JSON", path=self.path) from None
                    found[str(label)] = AttributeRecord(str(label), tuple(str(x) for x in items), str(raw or ""), float(created))
        return found

    def get_attributes(self, *, fingerprint: str, prompt_key: str, labels: Sequence[str]) -> dict[str, list[str]]:
        """``label -> attributes`` of the stored labels among ``labels`` (see :meth:`attribute_records`)."""
        return {label: list(rec.attributes) for label, rec in self.attribute_records(fingerprint=fingerprint, prompt_key=prompt_key, labels=labels).items()}

    def put_attributes(self, *, fingerprint: str, prompt_key: str, attributes: Mapping[str, Sequence[str]], raw: Mapping[str, str] | None = None) -> None:
        """Store (or replace) ``label -> attributes`` (and the LLM's raw answers) in one transaction."""
        if self._disabled is not None:
            return
        now = time.time()
        rows = [
            (fingerprint, prompt_key, label, json.dumps([str(x) for x in items], ensure_ascii=False), (raw or {}).get(label, ""), now)
            for label, items in attributes.items()
        ]
        try:
            with self._guard(), self._write() as conn:
                conn.execute(ATTRIBUTES_SCHEMA)
                conn.executemany(
                    "INSERT OR REPLACE INTO attributes (fingerprint, prompt_key, label, attributes, raw, created_at) VALUES (?, ?, ?, ?, ?, ?)", rows
                )
        except LabelBankError as exc:
            self._degrade(exc, None, f"LLM attributes of {len(rows)} label(s) not cached")
