"""``openvocab serve``: an HTTP API and a page for classifying videos (issue 10 parts 1-3).

A thin layer over the library: models come from :func:`openvocab.load`, scores from
:meth:`openvocab.VideoClassifier.classify`, frames from :mod:`openvocab.io.decode`. Build the app with
:func:`create_app` (keyword-only); the command line is :mod:`openvocab.cli.serve`.

- :mod:`~openvocab.serve.app` -- routes, the token / origin / body-size gate, error handling, request log;
- :mod:`~openvocab.serve.upload` -- multipart bodies parsed while they stream, limits held on the way in;
- :mod:`~openvocab.serve.limits` -- limits, content sniffing, label parsing and checks;
- :mod:`~openvocab.serve.media` -- ``--media-root`` path resolution (nothing outside it is ever opened);
- :mod:`~openvocab.serve.work_queue` -- the bounded queue, worker threads, progress, cancellation;
- :mod:`~openvocab.serve.jobs` -- what a worker does for a classify / labels request;
- :mod:`~openvocab.serve.models` -- models by name; :mod:`~openvocab.serve.thumbnails` -- timeline frames;
- :mod:`~openvocab.serve.openapi` -- the multipart schema and a CDN-free ``/docs``.

FastAPI is imported only when the app is built, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["create_app"]

if TYPE_CHECKING:  # pragma: no cover
    from openvocab.serve.app import create_app


def __getattr__(name: str):
    if name == "create_app":
        from openvocab.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'openvocab.serve' has no attribute {name!r}")
