"""Registries: one place per choice (name -> builder + one line of help).

Recipe validation, ``--help`` texts and the builders all read the same registry, so a new temporal module, label
encoder / head, fusion or sampler is one ``register`` call. Builders may be given as ``"module:attribute"`` strings
and are imported on first use, so listing the choices (the CLI's ``--help``) never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openvocab.errors import InputError


@dataclass(frozen=True)
class Entry:
    name: str
    builder: str | Callable[..., Any]
    help: str


class Registry:
    """Named builders of one kind of choice (``what``: e.g. ``"temporal module"``)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, builder: str | Callable[..., Any], *, help: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.what} '{name}' is registered twice")
        self._entries[name] = Entry(name, builder, help)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def help_text(self) -> str:
        """``"tap (mean over frames), ttrans (...)"`` for ``--help`` and error messages."""
        return ", ".join(f"{e.name} ({e.help})" for e in self._entries.values())

    def check(self, name: str, *, where: str = "") -> str:
        """``name`` if registered, else one :class:`InputError` line listing the choices."""
        if name not in self._entries:
            prefix = f"{where}: " if where else ""
            raise InputError(f"{prefix}unknown {self.what} '{name}' (choose {', '.join(self._entries)})")
        return name

    def builder(self, name: str) -> Callable[..., Any]:
        entry = self._entries[self.check(name)]
        if callable(entry.builder):
            return entry.builder
        module, _, attribute = entry.builder.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def build(self, name: str, /, **kwargs: Any) -> Any:
        return self.builder(name)(**kwargs)
