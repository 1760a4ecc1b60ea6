"""The one error type of the server: an HTTP status and ONE clear line for the user (issue 10 part 3).

Routes and helpers raise :class:`ServeError` (an ``HTTPException``, so FastAPI answers ``{"detail": "<line>"}`` with
the status and its headers, e.g. ``Retry-After``, also when it is raised while a request body is read). Messages never
hold a server temp path or a traceback: :func:`scrub` replaces the paths a user must not see in library messages."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException


class ServeError(HTTPException):
    """``status`` + one-line ``detail`` (+ response ``headers``)."""

    def __init__(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status_code=int(status), detail=" ".join(str(detail).split()), headers=dict(headers or {}) or None)

    @property
    def status(self) -> int:
        return self.status_code


def scrub(text: str, hide: Mapping[str, str]) -> str:
    """``text`` with each key of ``hide`` (a server path) replaced by its value (what the user may see), longest
    first so a file path goes before its directory; then squeezed to one line."""
    for secret in sorted(hide, key=len, reverse=True):
        if secret:
            text = text.replace(secret, hide[secret])
    return " ".join(text.split())
