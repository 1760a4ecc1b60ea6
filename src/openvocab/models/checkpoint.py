"""Atomic, pickle-free training checkpoints (safetensors + JSON): the trainer writes them, and everything that
loads a trained recogniser (:func:`openvocab.models.factory.load_recognizer`, resume, ``init_from``) reads them here.

A model may define ``upgrade_checkpoint(saved_arch) -> (arch in today's form, key_rename or None)`` to read
checkpoints written by older code (the single-stream recogniser named its keys ``backbone.*``, now
``streams.rgb.backbone.*``); omitted frozen tensors are still digest-checked under the name they were saved with.

Layout of a run directory::

    run/
      latest                  -> one line: "step_00000300" (written atomically)
      step_00000100/
      step_00000200/
      step_00000300/
        model.safetensors     model.state_dict() (shared tensors stored once, aliases in the metadata), except the
                              tensors named by ``omit`` (frozen pretrained weights): only their digests are kept
        optimizer.safetensors optimizer tensors, keys "state.<param_idx>.<name>" (e.g. "state.0.exp_avg")
        optimizer.json        the rest of the optimizer state_dict: param_groups, non-tensor state values
        trainer_state.json    step, epoch, arch, scheduler / sampler state, extra, RNG states (base64)
        trainer_state.safetensors  only if scheduler/sampler/extra hold tensors

A checkpoint is written completely into a hidden temporary directory beside its target (every file fsynced), the
directory is renamed to ``step_XXXXXXXX`` and only then is ``latest`` replaced (:func:`openvocab.atomic.atomic_write`)
and are older checkpoints pruned (``keep_last``). A crash at any point leaves the previous checkpoint and ``latest``
intact and no half-written ``step_*`` directory. One writer per run directory (rank 0 under DDP).

Reading a run directory never stops at a damaged newest checkpoint: a truncated or unreadable file, a corrupt
``trainer_state.json``, a ``latest`` that is missing or names no checkpoint -- the newest intact checkpoint is used
instead (at or below the one ``latest`` names, else the newest of the listing), with a warning naming the unusable
one, which is left in place. Only when no checkpoint is intact is it an error (one line naming each file and its
problem). A ``step_*`` directory given explicitly is used as it is, or refused in one line. Which checkpoint to
read, and whether it is intact: :mod:`openvocab.models.checkpoint_choice`.

Nothing is ever unpickled: ``torch.load`` is not used. Non-JSON values (tensors, tuples, non-string dict keys, bytes)
are encoded with small markers (``{"__tensor__": key}``, ``{"__tuple__": [...]}``, ``{"__dict__": [[k, v], ...]}``,
``{"__bytes__": base64}``) and decoded exactly.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from openvocab.atomic import atomic_path, atomic_write
from openvocab.digest import tensor_digest
from openvocab.errors import InputError
from openvocab.models.checkpoint_choice import (
    CorruptCheckpointError,
    choose_checkpoint,
    json_metadata,
    list_checkpoints,
    read_json,
    read_tensors,
    resolve_checkpoint,
    step_of,
)

__all__ = [
    "CorruptCheckpointError",
    "list_checkpoints",
    "load_checkpoint",
    "load_model_subset",
    "read_trainer_state",
    "resolve_checkpoint",
    "save_checkpoint",
    "step_of",
]


FORMAT_VERSION = 1
_TMP_PREFIX = ".tmp-step_"
_MARKERS = ("__tensor__", "__tuple__", "__dict__", "__bytes__")


# ---------------------------------------------------------------------------------------------------------------------
# JSON <-> (JSON + tensors) encoding
# ---------------------------------------------------------------------------------------------------------------------
def _encode(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able form of ``obj``; tensors go into ``tensors`` under dotted keys derived from their path."""
    if isinstance(obj, torch.Tensor):
        if key in tensors:
            raise TypeError(f"checkpoint: two tensors would be stored under the key {key!r}")
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        plain = all(isinstance(k, str) and not k.startswith("__") for k in obj)
        if plain:
            return {k: _encode(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        return {"__dict__": [[_encode(k, key, {}), _encode(v, f"{key}.{k}", tensors)] for k, v in obj.items()]}
    raise TypeError(f"checkpoint: cannot serialise {type(obj).__name__} at {key!r} (only tensors and JSON-like values)")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1:
            ((marker, value),) = obj.items()
            if marker == "__tensor__":
                return tensors[value]
            if marker == "__tuple__":
                return tuple(_decode(v, tensors) for v in value)
            if marker == "__dict__":
                return {_decode(k, tensors): _decode(v, tensors) for k, v in value}
            if marker == "__bytes__":
                return base64.b64decode(value)
        return {k: _decode(v, tensors) for k, v in obj.items()}
    return obj


def _canonical(value: Any) -> Any:
    """Plain-JSON form (tuples become lists) for comparing architecture descriptions."""
    return json.loads(json.dumps(value, sort_keys=False, default=str))


# ---------------------------------------------------------------------------------------------------------------------
# RNG states
# ---------------------------------------------------------------------------------------------------------------------
def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, base64.b64encode(np.asarray(keys, dtype=np.uint32).tobytes()).decode("ascii"), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def _restore_rng(state: Mapping[str, Any]) -> None:
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        keys_array = np.frombuffer(base64.b64decode(keys), dtype=np.uint32).copy()
        np.random.set_state((kind, keys_array, pos, has_gauss, cached))
    if "torch" in state:
        torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8) for s in state["cuda"]])


# ---------------------------------------------------------------------------------------------------------------------
# model state: shared tensors
# ---------------------------------------------------------------------------------------------------------------------
def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers (so keys carry no ``module.`` prefix)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def _model_tensors(model: nn.Module, omit: Collection[str] = ()) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, str]]:
    """``state_dict`` split into unique tensors, ``alias -> stored name`` for tied weights (same view), and
    ``name -> digest`` of the entries in ``omit`` (not stored)."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    omitted: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    storages: set[int] = set()
    for name, tensor in _unwrap(model).state_dict().items():
        tensor = tensor.detach()
        if name in omit:
            omitted[name] = tensor_digest(name, tensor)
            continue
        view = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype, tensor.device)
        if view in seen and tensor.numel() > 0:
            aliases[name] = seen[view]
            continue
        seen[view] = name
        ptr = tensor.untyped_storage().data_ptr()
        shared = ptr in storages and tensor.numel() > 0
        storages.add(ptr)
        # safetensors refuses overlapping storages: an independent copy for views of an already stored storage
        tensors[name] = (tensor.clone() if shared else tensor).cpu().contiguous()
    return tensors, aliases, omitted


# ---------------------------------------------------------------------------------------------------------------------
# saving
# ---------------------------------------------------------------------------------------------------------------------
def _write_json(path: Path, payload: Any) -> None:
    atomic_write(path, json.dumps(payload, indent=1) + "\n")


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    directory: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    sampler: Any | None = None,
    step: int,
    epoch: int,
    arch: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    rng: bool = True,
    keep_last: int | None = 3,
    omit: Collection[str] = (),
) -> Path:
    """Write ``directory/step_{step:08d}`` atomically, point ``directory/latest`` at it and prune old ones.

    Args:
        directory: the run directory (created if needed).
        model: saved through ``state_dict()`` (unwrapped from DDP).
        optimizer, scheduler, sampler: optional objects with ``state_dict()``; the sampler's state should already
            hold the consumed position (e.g. ``ResumableDistributedSampler.advance``).
        step, epoch: training progress, returned by :func:`load_checkpoint`.
        arch: JSON-able description of the architecture (``{"backbone": {...}, "temporal": "ttrans", ...}``);
            :func:`load_checkpoint` refuses a model described differently.
        extra: any other JSON-like values (tensors allowed).
        rng: also save the python ``random``, numpy, torch CPU (and CUDA) RNG states.
        keep_last: keep this many newest ``step_*`` directories (``None``: keep all); older ones are deleted only
            after the new checkpoint and ``latest`` are in place.
        omit: state-dict keys NOT to store -- tensors the loader's model already holds, e.g. a frozen pretrained
            text tower that ``model.model`` loads again (a third of a ViT-B/16 checkpoint). Their digests are stored
            instead, and loading checks that the model's values still match them.

    Returns:
        The checkpoint directory.
    """
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f"{_TMP_PREFIX}*"):  # left by a killed save (single writer per run)
        shutil.rmtree(stale, ignore_errors=True)
    name = f"step_{int(step):08d}"
    final = directory / name
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{int(step):08d}-", dir=directory))
    try:
        tensors, aliases, omitted = _model_tensors(model, set(omit))
        _write_tensors(tmp / "model.safetensors", tensors, {"format": "openvocab-checkpoint", "aliases": json.dumps(aliases), "omitted": json.dumps(omitted)})
        if optimizer is not None:
            opt_tensors: dict[str, torch.Tensor] = {}  # keys "state.<param_idx>.<name>"
            opt_json = {k: _encode(v, k, opt_tensors) for k, v in optimizer.state_dict().items()}
            _write_tensors(tmp / "optimizer.safetensors", opt_tensors)
            _write_json(tmp / "optimizer.json", opt_json)
        extra_tensors: dict[str, torch.Tensor] = {}
        state = {
            "format_version": FORMAT_VERSION,
            "step": int(step),
            "epoch": int(epoch),
            "arch": _canonical(dict(arch)),
            "scheduler": None if scheduler is None else _encode(scheduler.state_dict(), "scheduler", extra_tensors),
            "sampler": None if sampler is None else _encode(sampler.state_dict(), "sampler", extra_tensors),
            "extra": _encode(dict(extra or {}), "extra", extra_tensors),
            "rng": _rng_state() if rng else None,
        }
        if extra_tensors:
            _write_tensors(tmp / "trainer_state.safetensors", extra_tensors)
        _write_json(tmp / "trainer_state.json", state)  # written last: its presence marks a complete checkpoint
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step: move the old one aside (hidden), then swap
            trash = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}old-", dir=directory))
            os.replace(final, trash / name)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write(directory / "latest", name + "\n")
    if keep_last is not None:
        for old in list_checkpoints(directory)[:-keep_last]:
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------------------
def _first_difference(saved: Any, given: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(saved, dict) and isinstance(given, dict):
        for key in list(given) + [k for k in saved if k not in given]:
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved or key not in given:
                return where, saved.get(key, "<missing>"), given.get(key, "<missing>")
            found = _first_difference(saved[key], given[key], where)
            if found:
                return found
        return None
    return None if saved == given else (prefix or "arch", saved, given)


def _upgrade(model: nn.Module, arch: Any) -> tuple[Any, Callable[[str], str] | None]:
    hook = getattr(_unwrap(model), "upgrade_checkpoint", None)
    if hook is None or arch is None:
        return arch, None
    return hook(arch)


def _model_file_tensors(step_dir: Path, rename: Callable[[str], str] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, tuple[str, str]]]:
    """The saved ``state_dict`` of a checkpoint (keys through ``rename``), tied-weight aliases resolved, and the
    omitted entries: ``key -> (digest, name it was digested under)``."""
    path = step_dir / "model.safetensors"
    tensors, metadata = read_tensors(path)
    for alias, source in json_metadata(metadata, "aliases", path).items():
        if source not in tensors:
            raise CorruptCheckpointError(f"alias {alias!r} of a missing tensor {source!r}", path=path)
        tensors[alias] = tensors[source]
    omitted = {k: (v, k) for k, v in json_metadata(metadata, "omitted", path).items()}
    if rename is not None:
        tensors = {rename(k): v for k, v in tensors.items()}
        omitted = {rename(k): v for k, v in omitted.items()}
    return tensors, omitted


def _check_omitted(step_dir: Path, key: str, saved: tuple[str, str], value: torch.Tensor) -> None:
    """An entry the checkpoint left out must still hold the value it was trained with (same pretrained weights)."""
    digest, saved_name = saved
    if tensor_digest(saved_name, value) != digest:
        raise InputError(
            f"checkpoint {step_dir} did not store the frozen tensor {key!r} and this model's differs from "
            f"the one it was trained with (model.model must load the same pretrained weights)"
        )


def read_trainer_state(path_or_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """``(step directory, trainer_state.json contents)`` of a run directory (its ``latest``) or a step directory;
    the JSON only (step, epoch, arch, ...), no tensors are read (the model file is checked to be complete). A run
    directory's damaged newest checkpoint is passed over for an older one (:func:`resolve_checkpoint`); one-line
    :class:`InputError` when none is usable."""
    choice = choose_checkpoint(path_or_dir)
    return choice.step_dir, choice.state


def load_model_subset(path_or_dir: str | os.PathLike[str], *, model: nn.Module, keep: Callable[[str], bool]) -> dict[str, Any]:
    """Copy into ``model`` the checkpoint's model tensors whose state-dict key passes ``keep``; the other tensors of
    ``model`` keep their values. For initialising a new run from another one (a different head, say); nothing
    else (optimizer, scheduler, RNG) is touched and nothing is unpickled.

    Every kept key of ``model`` must be in the checkpoint with the same shape, else a one-line
    :class:`InputError` names the first key that is missing or differs (and both shapes).

    Returns:
        ``{"path": step dir, "loaded": [keys copied], "skipped": [model keys not kept], "unused": [checkpoint keys
        this model does not take (not kept, or absent from the model)]}``.
    """
    choice = choose_checkpoint(path_or_dir)
    step_dir = choice.step_dir
    _, rename = _upgrade(model, choice.state.get("arch"))
    tensors, omitted = _model_file_tensors(step_dir, rename)
    target = _unwrap(model)
    expected = target.state_dict()
    verified = [k for k in expected if keep(k) and k in omitted and k not in tensors]
    for key in verified:  # frozen pretrained tensors the checkpoint left out: the model must hold the same values
        _check_omitted(step_dir, key, omitted[key], expected[key])
    loaded = [k for k in expected if keep(k) and k not in verified]
    for key in loaded:
        if key not in tensors:
            raise InputError(f"checkpoint {step_dir} has no tensor {key!r} that this model needs (shape {list(expected[key].shape)})")
        if tuple(tensors[key].shape) != tuple(expected[key].shape):
            raise InputError(f"checkpoint {step_dir} has {key!r} of shape {list(tensors[key].shape)}, this model has shape {list(expected[key].shape)}")
    target.load_state_dict({k: tensors[k] for k in loaded}, strict=False)  # the others keep their values
    loaded += verified
    chosen = set(loaded)
    return {
        "path": str(step_dir),
        "loaded": loaded,
        "skipped": [k for k in expected if k not in chosen],
        "unused": [k for k in tensors if k not in chosen],
    }


def _load_model(step_dir: Path, model: nn.Module, rename: Callable[[str], str] | None = None) -> None:
    tensors, omitted = _model_file_tensors(step_dir, rename)
    target = _unwrap(model)
    expected = target.state_dict()
    for key, value in expected.items():
        if key in omitted and key not in tensors:
            _check_omitted(step_dir, key, omitted[key], value)
            continue
        if key not in tensors:
            raise InputError(f"checkpoint {step_dir} has no tensor {key!r} that this model needs (shape {list(value.shape)})")
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise InputError(f"checkpoint {step_dir} has {key!r} of shape {list(tensors[key].shape)}, this model has shape {list(value.shape)}")
    for key, value in tensors.items():
        if key not in expected:
            raise InputError(f"checkpoint {step_dir} has tensor {key!r} (shape {list(value.shape)}) that this model does not have")
    for key in omitted:
        if key not in expected:
            raise InputError(f"checkpoint {step_dir} was trained with a tensor {key!r} that this model does not have")
    target.load_state_dict({k: tensors[k] for k in expected if k in tensors}, strict=False)


_PARAM_SHAPED = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "square_avg", "acc_delta", "sum"}


def _load_optimizer(step_dir: Path, optimizer: torch.optim.Optimizer, rename: Callable[[str], str] | None = None) -> None:
    tensors, _ = read_tensors(step_dir / "optimizer.safetensors")
    state = _decode(read_json(step_dir / "optimizer.json"), tensors)
    saved_groups, groups = state["param_groups"], optimizer.param_groups
    if len(saved_groups) != len(groups):
        raise InputError(f"checkpoint {step_dir} has {len(saved_groups)} optimizer param groups, this optimizer has {len(groups)}")
    for g, (saved, current) in enumerate(zip(saved_groups, groups)):
        if len(saved["params"]) != len(current["params"]):
            raise InputError(f"checkpoint {step_dir} optimizer group {g} has {len(saved['params'])} parameters, this optimizer has {len(current['params'])}")
        names = current.get("param_names") or [None] * len(current["params"])
        saved_names = [rename(n) for n in saved["param_names"]] if rename and saved.get("param_names") else (saved.get("param_names") or names)
        for index, name, saved_name, param in zip(saved["params"], names, saved_names, current["params"]):
            label = name or f"group {g} parameter {index}"
            if name is not None and saved_name != name:
                raise InputError(f"checkpoint {step_dir} optimizer group {g} holds {saved_name!r} where this optimizer has {name!r}")
            for key, value in state["state"].get(index, {}).items():
                if key in _PARAM_SHAPED and isinstance(value, torch.Tensor) and value.shape != param.shape:
                    raise InputError(
                        f"checkpoint {step_dir} optimizer state {key} of {label!r} has shape {list(value.shape)}, this parameter has shape {list(param.shape)}"
                    )
    optimizer.load_state_dict(state)


def load_checkpoint(
    path_or_dir: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    sampler: Any | None = None,
    arch: Mapping[str, Any] | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote (safetensors + JSON only; nothing is unpickled).

    Args:
        path_or_dir: a run directory (its ``latest`` is followed) or a ``step_*`` directory.
        model, optimizer, scheduler, sampler: objects to restore in place (those given).
        arch: when given, must equal the saved description, else a one-line
            :class:`~openvocab.errors.InputError` names the first differing key and both values.
        restore_rng: restore the python / numpy / torch (/ CUDA) RNG states saved with the checkpoint.

    A run directory whose newest checkpoint is damaged is read from its newest intact one (a warning names the
    damaged one; nothing is deleted); ``unusable`` in the result lists those passed over.

    Returns:
        ``{"step", "epoch", "arch", "extra", "path", "unusable"}``.

    Raises:
        InputError: one line, for a missing/corrupt checkpoint (no intact one in a run directory), an architecture
            mismatch, a missing, unexpected or differently shaped model tensor (naming the first one and both
            shapes) or an incompatible optimizer.
    """
    choice = choose_checkpoint(path_or_dir, optimizer=optimizer is not None)
    step_dir, state = choice.step_dir, choice.state
    saved_arch, rename = _upgrade(model, state.get("arch"))
    if arch is not None:
        diff = _first_difference(_canonical(saved_arch or {}), _canonical(dict(arch)))
        if diff is not None:
            key, saved, given = diff
            raise InputError(f"checkpoint {step_dir} was saved for {key}={saved!r}, this model has {key}={given!r}")
    tensors: dict[str, torch.Tensor] = {}
    if (step_dir / "trainer_state.safetensors").is_file():
        tensors, _ = read_tensors(step_dir / "trainer_state.safetensors")
    _load_model(step_dir, model, rename)
    if optimizer is not None:
        _load_optimizer(step_dir, optimizer, rename)
    where = step_dir / "trainer_state.json"
    try:
        if scheduler is not None:
            if state.get("scheduler") is None:
                raise InputError(f"checkpoint {step_dir} has no scheduler state")
            scheduler.load_state_dict(_decode(state["scheduler"], tensors))
        if sampler is not None:
            if state.get("sampler") is None:
                raise InputError(f"checkpoint {step_dir} has no sampler state")
            sampler.load_state_dict(_decode(state["sampler"], tensors))
        if restore_rng and state.get("rng"):
            _restore_rng(state["rng"])
        extra = _decode(state.get("extra") or {}, tensors)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:  # hand-edited or damaged values
        raise CorruptCheckpointError(f"unreadable trainer state ({type(exc).__name__}: {exc})", path=where) from None
    return {
        "step": int(state["step"]),
        "epoch": int(state["epoch"]),
        "arch": saved_arch,
        "extra": extra,
        "path": str(step_dir),
        "unusable": [str(p) for p, _ in choice.unusable],
    }
