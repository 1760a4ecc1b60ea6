"""The SQLite side of the label bank (:mod:`openvocab.text.label_bank`): its schema, its errors, the checks that run
before SQLite sees a file, error classification, the WAL switch, and the export formats. Pure plumbing, no policy."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

from openvocab.atomic import atomic_write
from openvocab.errors import InputError

SCHEMA_VERSION = 1
VOCABULARY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_MAGIC = b"SQLite format 3\x00"
SCHEMA = """
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

ATTRIBUTES_SCHEMA = """
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

MODELS_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    fingerprint TEXT NOT NULL,
    model TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, model)
) WITHOUT ROWID
"""

VOCABULARIES_SCHEMA = """
CREATE TABLE IF NOT EXISTS vocabularies (
    name TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


class LabelBankError(InputError):
    """The label bank cannot do what was asked (one line naming the file)."""


class UnusableLabelBank(LabelBankError):
    """The file is not a label bank this openvocab can use (corrupt, truncated, another program's, a directory).
    ``problem`` is the reason alone, for callers that word their own line (the classifier's warning)."""

    def __init__(self, problem: str, *, path: Path, advice: str = "move it aside or pass --label-bank with another path") -> None:
        self.problem = problem
        super().__init__(f"not a usable label bank: {problem}; {advice}", path=path)


class ReadOnlyLabelBank(LabelBankError):
    """The bank can be read but not written (a read-only file or directory, or opened with ``read_only=True``);
    ``reason`` says which."""

    def __init__(self, reason: str, *, path: Path) -> None:
        self.reason = reason
        super().__init__(f"the label bank cannot be written ({reason})", path=path)


class BusyLabelBank(LabelBankError):
    """Another process held the write lock for longer than the bank's ``timeout``."""


def check_vocabulary_name(name: str) -> str:
    """``name`` if it is a valid saved-vocabulary name (``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``), else an InputError."""
    if not isinstance(name, str) or VOCABULARY_NAME.fullmatch(name) is None:
        raise InputError(f"invalid vocabulary name {name!r}: use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return name


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def error_kind(exc: sqlite3.Error) -> str:
    """``busy``, ``readonly``, ``cantopen`` or ``other`` for an SQLite error (by code where Python exposes it)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return "busy"
    if name.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return "readonly"
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return "cantopen"
    return "other"


def connect(path: Path, mode: str, *, timeout: float) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with ``busy_timeout`` = ``timeout`` seconds;
    ``mode``: ``rw`` (an existing file), ``rwc`` (create it), ``ro``, or ``ro&immutable=1`` (no locking at all)."""
    uri = "file:" + quote(str(path.absolute())) + "?mode=" + mode
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    if "immutable" not in mode:
        conn.execute("PRAGMA synchronous=NORMAL")  # per connection; takes no lock
    return conn


def check_schema(conn: sqlite3.Connection, path: Path) -> bool:
    """True for a label bank, False for an SQLite file without tables (a bank not written yet); else unusable.
    Reads only."""
    tables = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return False
    columns = {r[1] for r in conn.execute("PRAGMA table_info(embeddings)")} if "embeddings" in tables else set()
    if "meta" not in tables or not {"fingerprint", "prompt_key", "label", "dim", "embedding", "created_at"} <= columns:
        raise UnusableLabelBank("it is an SQLite database of another program (it has no label-bank tables)", path=path)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise UnusableLabelBank("it has no label-bank schema version", path=path)
    if str(row[0]) != str(SCHEMA_VERSION):
        raise UnusableLabelBank(f"it has label-bank schema version {row[0]}, this openvocab reads version {SCHEMA_VERSION}", path=path)
    return True


def check_header(path: Path) -> None:
    """Refuse, before SQLite sees it, a file that is not an SQLite database or is shorter than its header says (a
    truncated copy). An empty file is a bank not written yet. The size is only checked without a live WAL file: a
    checkpoint in progress may grow the file after its header."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise UnusableLabelBank(f"cannot read it ({exc.strerror or exc})", path=path) from None
    if not header:
        return
    if header[:16] != _MAGIC[: len(header[:16])]:
        raise UnusableLabelBank("the file is not an SQLite database", path=path)
    if len(header) < 100:
        raise UnusableLabelBank(f"the file is truncated ({size} bytes)", path=path)
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages, counter, valid_for = (int.from_bytes(header[i : i + 4], "big") for i in (28, 24, 92))
    wal = path.with_name(path.name + "-wal")
    if pages and counter == valid_for and size < pages * page_size and not (wal.exists() and wal.stat().st_size > 0):
        raise UnusableLabelBank(f"the file is truncated ({size} bytes, its header says {pages * page_size})", path=path)


def switch_to_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode (a no-op when it is). Switching needs an exclusive lock, and SQLite may answer
    'database is locked' at once instead of calling the busy handler (first writers racing on a new file), so
    retry until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode == "wal" or str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower() == "wal":
                return
        except sqlite3.OperationalError as exc:
            if error_kind(exc) != "busy" or time.monotonic() >= deadline:
                raise
        if time.monotonic() >= deadline:
            raise sqlite3.OperationalError("database is locked (could not switch the label bank to WAL mode)")
        time.sleep(0.02)


def sql_filters(fingerprint: str | None, prompt_key: str | None) -> tuple[str, tuple[str, ...]]:
    clauses, args = [], []
    for column, value in (("fingerprint", fingerprint), ("prompt_key", prompt_key)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)


def write_export(target: Path, payload: bytes) -> None:
    """Write an export atomically (temporary file, fsync, rename); an OS error is one line naming the file."""
    try:
        atomic_write(target, payload)
    except OSError as exc:
        raise InputError(f"cannot write the export ({exc.strerror or exc})", path=target) from None


def export_payload(suffix: str, names: list[str], matrix: np.ndarray, *, fingerprint: str, prompt_key: str) -> bytes:
    """The bytes of an export (:meth:`LabelBank.export`) of ``names`` and their rows ``matrix`` (L, D) float32."""
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
    return payload
