"""Which checkpoint of a run directory to read, and whether it is intact (:mod:`openvocab.models.checkpoint` writes
and loads them; this module only looks).

A checkpoint is intact when its ``trainer_state.json`` parses into the structure the writer gives it and its
safetensors files have complete headers and all the data they declare (a truncated file is caught here; tensors
are not read). A run directory is read from its ``latest`` checkpoint, or -- when that one is damaged, or
``latest`` is missing or names no checkpoint -- from the newest intact checkpoint below it (the newest of the
listing when ``latest`` cannot be followed), with a warning naming what was passed over; nothing is deleted.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from openvocab.errors import InputError

__all__ = ["CheckpointChoice", "CorruptCheckpointError", "choose_checkpoint", "list_checkpoints", "resolve_checkpoint", "step_of"]

log = logging.getLogger(__name__)

_STEP_RE = re.compile(r"^step_(\d{8,})$")


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Complete ``step_*`` checkpoint directories of a run, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := _STEP_RE.match(p.name))]
    return [p for _, p in sorted(found)]


class CorruptCheckpointError(InputError):
    """A checkpoint file is missing, truncated or unreadable -- damage, as opposed to a checkpoint of another model.
    Reading a run directory falls back past such a checkpoint to the newest intact one."""


def step_of(step_dir: str | os.PathLike[str]) -> int | None:
    """The step number of a ``step_XXXXXXXX`` directory name (``None`` for any other name)."""
    m = _STEP_RE.match(Path(step_dir).name)
    return int(m.group(1)) if m else None


def read_json(path: Path) -> Any:
    """A checkpoint's JSON file; one-line :class:`CorruptCheckpointError` naming it when missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptCheckpointError("missing file in checkpoint", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptCheckpointError(f"corrupt JSON ({exc})", path=path) from None
    except OSError as exc:
        raise CorruptCheckpointError(f"unreadable ({exc.strerror or exc})", path=path) from None


def _tensor_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file, checking its header and that the file holds all the data it declares
    (a truncated file is refused here, before any tensor is read)."""
    from safetensors import safe_open

    if not path.is_file():
        raise CorruptCheckpointError("missing file in checkpoint", path=path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CorruptCheckpointError(f"corrupt safetensors file ({type(exc).__name__}: {exc})", path=path) from None


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a checkpoint's safetensors file (nothing unpickled); one-line error when damaged."""
    metadata = _tensor_metadata(path)
    try:
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CorruptCheckpointError(f"corrupt safetensors file ({type(exc).__name__}: {exc})", path=path) from None


def json_metadata(metadata: Mapping[str, str], key: str, path: Path) -> dict:
    """A JSON object the writer stored in a safetensors file's metadata (tied-weight aliases, omitted tensors)."""
    try:
        value = json.loads(metadata.get(key, "{}"))
    except (json.JSONDecodeError, TypeError):
        value = None
    if not isinstance(value, dict):
        raise CorruptCheckpointError(f"corrupt '{key}' metadata", path=path)
    return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _check_state(state: Any, path: Path) -> dict[str, Any]:
    """The structure :func:`save_checkpoint` writes in ``trainer_state.json`` (what readers rely on)."""
    if not isinstance(state, dict):
        raise CorruptCheckpointError(f"not a trainer state ({_json_type(state)}, not an object with step and epoch)", path=path)
    for key in ("step", "epoch"):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CorruptCheckpointError(f"'{key}' is {value!r}, not a count", path=path)
    for key in ("arch", "extra", "rng", "scheduler", "sampler"):
        if state.get(key) is not None and not isinstance(state[key], dict):
            raise CorruptCheckpointError(f"'{key}' is {_json_type(state[key])}, not an object", path=path)
    extra = state.get("extra") or {}
    names = extra.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CorruptCheckpointError("'extra.class_names' is not a list of class names", path=path)
    if extra.get("spec") is not None and not isinstance(extra["spec"], dict):
        raise CorruptCheckpointError("'extra.spec' is not an object", path=path)
    return state


def _check_intact(step_dir: Path, *, optimizer: bool) -> dict[str, Any]:
    """``trainer_state.json`` of ``step_dir`` after checking that what a reader needs is there and readable: the
    trainer state, the model file's header and complete data (and the optimizer's when ``optimizer``). Tensors are
    not read. :class:`CorruptCheckpointError` names the first damaged file."""
    if not step_dir.is_dir():
        raise CorruptCheckpointError("no such checkpoint directory", path=step_dir)
    state = _check_state(read_json(step_dir / "trainer_state.json"), step_dir / "trainer_state.json")
    model_file = step_dir / "model.safetensors"
    metadata = _tensor_metadata(model_file)
    json_metadata(metadata, "aliases", model_file)
    json_metadata(metadata, "omitted", model_file)
    if (step_dir / "trainer_state.safetensors").exists():
        _tensor_metadata(step_dir / "trainer_state.safetensors")
    if optimizer:
        _tensor_metadata(step_dir / "optimizer.safetensors")
        saved = read_json(step_dir / "optimizer.json")
        if not isinstance(saved, dict) or not isinstance(saved.get("param_groups"), list) or not isinstance(saved.get("state"), dict):
            raise CorruptCheckpointError("not an optimizer state (param_groups, state)", path=step_dir / "optimizer.json")
    return state


@dataclass
class CheckpointChoice:
    """The checkpoint a reader uses, its trainer state, and the newer ones passed over as unusable (with why)."""

    step_dir: Path
    state: dict[str, Any]
    unusable: list[tuple[Path, str]] = field(default_factory=list)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning per distinct message and process (a run is often resolved twice: its spec, then its weights)."""
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _candidates(run: Path) -> tuple[list[Path], str | None]:
    """The step directories of ``run`` to try, newest first, and a note when ``latest`` could not be followed."""
    steps = list_checkpoints(run)
    pointer = run / "latest"
    if not pointer.is_file():
        if not steps:
            raise InputError("not a checkpoint (no trainer_state.json) nor a run directory (no 'latest' file)", path=run)
        return steps[::-1], "has no 'latest' file"
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        name = ""
    named = step_of(name)
    if named is None:
        if not steps:
            raise CorruptCheckpointError(f"'latest' names {name[:80]!r}, not a checkpoint, and there is none in {run}", path=pointer)
        return steps[::-1], f"has a 'latest' file naming {name[:80]!r}, not a checkpoint"
    return [run / name] + [p for p in steps[::-1] if (step_of(p) or 0) < named], None


def choose_checkpoint(path_or_dir: str | os.PathLike[str], *, optimizer: bool = False) -> CheckpointChoice:
    """The checkpoint to read for a step directory (itself, checked) or a run directory (the newest intact one,
    falling back past damaged ones with a warning, see the module docstring)."""
    path = Path(path_or_dir)
    if (path / "trainer_state.json").is_file():
        return CheckpointChoice(path, _check_intact(path, optimizer=optimizer))
    if not path.exists():
        raise InputError("no such checkpoint directory", path=path)
    candidates, note = _candidates(path)
    unusable: list[tuple[Path, str]] = []
    for step_dir in candidates:
        try:
            state = _check_intact(step_dir, optimizer=optimizer)
        except CorruptCheckpointError as exc:
            unusable.append((step_dir, str(exc)))
            continue
        if note is not None:
            _warn_once(f"{path} {note}: using its newest intact checkpoint, {step_dir.name}")
        for bad, why in unusable:
            _warn_once(f"checkpoint {bad.name} is unusable ({why}); falling back to {step_dir} (step {state['step']}); {bad.name} is kept, not deleted")
        return CheckpointChoice(step_dir, state, unusable)
    if len(unusable) == 1:
        raise CorruptCheckpointError(f"no usable checkpoint ({unusable[0][1]})", path=path)
    raise CorruptCheckpointError(f"no usable checkpoint: {'; '.join(why for _, why in unusable)}", path=path)


def resolve_checkpoint(path_or_dir: str | os.PathLike[str], *, optimizer: bool = False) -> Path:
    """The step directory to read: a step directory itself, or a run directory's newest intact checkpoint (its
    ``latest``, else an older one with a warning; with ``optimizer`` its optimizer state must be intact too)."""
    return choose_checkpoint(path_or_dir, optimizer=optimizer).step_dir
