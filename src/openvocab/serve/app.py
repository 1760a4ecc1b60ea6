"""The HTTP API and page of ``openvocab serve`` (issue 10 parts 1 and 3): a thin FastAPI layer over the library.

Routes (all JSON; errors ``{"detail": "<one line>"}``): ``GET /`` (the page) and ``/static/*``; ``GET /health``;
``GET /models``; ``GET /labels?model=``; ``GET /labels/vocabularies/{name}``; ``POST /labels`` (vocabulary expansion
into the label bank); ``POST /classify`` (multipart: ``file`` or ``path`` inside ``--media-root``, ``labels`` or a
saved ``vocabulary``, options); ``GET /progress/{request_id}``; ``GET /openapi.json`` and ``GET /docs`` (a plain list
of the routes: no external assets, the machine may be offline).

Safety (part 3): the upload limit holds while the body streams in (413), the file type is sniffed from its bytes
(415), work goes through a bounded queue (503 + ``Retry-After``; a full queue refuses before the upload is read), a
request waits at most ``timeout_s`` (504), upload temp files are removed on every path out, server paths outside the
media root are never opened (403), label count and length are limited (422). With a ``token``, every request that changes state needs ``Authorization: Bearer <token>``
(401): ``POST /labels`` and ``POST /classify`` too, since classifying writes new label embeddings into the label bank;
``GET`` routes stay open. A POST whose ``Origin`` is another site is refused (403), so a web page elsewhere cannot
make a browser on this machine classify files. One log line per request (logger ``openvocab.serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from openvocab.errors import OpenVocabError
from openvocab.serve.errors import ServeError, scrub
from openvocab.serve.jobs import ClassifyJob, ClassifyOptions, LabelsJob
from openvocab.serve.limits import VOCABULARY_NAME, Limits, check_labels, not_a_video, sniff_video
from openvocab.serve.media import MediaRoot, read_head
from openvocab.serve.models import ServedModel, served_models
from openvocab.serve.openapi import CLASSIFY_BODY, CLASSIFY_RESPONSES, docs_page
from openvocab.serve.upload import Disconnected, Form, read_form
from openvocab.serve.work_queue import Job, JobCancelled, QueueFull, WorkQueue
from openvocab.text import label_bank as _label_bank
from openvocab.text.prompts import parse_labels_text

log = logging.getLogger("openvocab.serve")
STATIC = Path(__file__).resolve().parent / "static"
JSON_BODY_LIMIT = 4 * 1024 * 1024  # any body but POST /classify's (POST /labels: 1000 labels of 200 characters is 0.2 MB)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
        b"script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
]


class LabelsRequest(BaseModel):
    """``POST /labels``: labels to add to the label bank of ``model`` (default model if absent), optionally saved
    as the vocabulary ``vocabulary``."""

    model: str | None = None
    labels: list[str] = Field(..., description="labels to encode (cleaned as everywhere: whitespace, duplicates)")
    vocabulary: str | None = Field(None, description="save the list under this name (GET /labels lists it)")


def create_app(
    *,
    models: Mapping[str, Any] | Sequence[ServedModel],
    media_root: str | Path | None = None,
    token: str | None = None,
    limits: Limits | None = None,
    queue_size: int = 8,
    workers: int = 1,
    timeout_s: float = 120.0,
    temp_dir: str | Path | None = None,
    label_bank: Any = None,
) -> FastAPI:
    """The app. ``models``: ``{name: VideoClassifier}`` (the first is the default) or :class:`ServedModel` s.
    ``media_root``: the folder ``path=`` may read (``None``: path mode off). ``token``: bearer token for state-changing
    requests (``None``/empty: none). ``temp_dir``: where uploads are spooled (default: a private folder made now and
    removed at shutdown). ``label_bank``: the bank of saved vocabularies (default: the default model's)."""
    served = served_models(models)
    by_name = {m.name: m for m in served}
    limits = limits or Limits()
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    media = MediaRoot(media_root)
    owned_temp = temp_dir is None
    spool = Path(tempfile.mkdtemp(prefix="openvocab-serve-")) if temp_dir is None else Path(temp_dir)
    spool.mkdir(parents=True, exist_ok=True)
    queue = WorkQueue(workers=workers, capacity=queue_size)
    bank = label_bank if label_bank is not None else served[0].classifier.label_bank
    # uploads being received at once; with the admitted jobs' files, the temp folder holds at most
    # 3 x (workers + queue_size) uploads, however many clients send
    uploads, max_uploads = [0], 2 * (workers + queue_size)
    secret = (token or "").encode("utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        for m in served:  # best effort: `openvocab labels list` can then name the model of the cached labels
            with contextlib.suppress(OpenVocabError, AttributeError):
                if m.classifier.label_bank is not None and m.classifier.label_encoder.open_vocabulary:
                    m.classifier.label_bank.note_model(m.classifier.label_encoder.fingerprint, m.source or m.name)
        yield
        queue.close()
        if owned_temp:
            shutil.rmtree(spool, ignore_errors=True)

    app = FastAPI(
        title="openvocab",
        description="Open-vocabulary video classification: any video, any labels.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.queue, app.state.temp_dir, app.state.models, app.state.limits = queue, spool, by_name, limits
    app.add_middleware(_Gate, secret=secret, limits=limits)
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    def model_of(name: str | None) -> ServedModel:
        if not name:
            return served[0]
        if name not in by_name:
            raise ServeError(404, f"unknown model '{name[:64]}' (served: {', '.join(by_name)})")
        return by_name[name]

    hide = {
        str(getattr(b, "path", "")): "the label bank" for b in {id(x): x for x in [bank, *(m.classifier.label_bank for m in served)] if x is not None}.values()
    }

    def bank_call(fn, *args):
        """A label-bank call as one line for the user (busy: 503; else 422), its file path not shown."""
        try:
            return fn(*args)
        except OpenVocabError as exc:
            busy = isinstance(exc, getattr(_label_bank, "BusyLabelBank", ()))
            raise ServeError(503 if busy else 422, scrub(str(exc), hide), headers={"Retry-After": "5"} if busy else None) from None

    def vocabulary_labels(name: str) -> list[str]:
        lookup = getattr(bank, "vocabulary", None) if bank is not None else None
        labels = bank_call(lookup, name) if lookup is not None and VOCABULARY_NAME.fullmatch(name) else None
        if labels is None:
            raise ServeError(404, f"unknown vocabulary '{name[:100]}' (GET /labels lists the saved ones)")
        return list(labels)

    # ------------------------------------------------------------------ page and status
    @app.get("/", include_in_schema=False)
    def page() -> Response:
        index = STATIC / "index.html"
        if not index.is_file():
            raise ServeError(404, "the page is not installed (openvocab/serve/static/index.html is missing)")
        return FileResponse(index, media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))

    @app.get("/health", summary="Liveness, the models served and the work queue")
    def health() -> dict:
        return {"status": "ok", "models": list(by_name), "queue": queue.stats(), "token_required": bool(secret)}

    @app.get("/models", summary="The models served: modalities, open vocabulary, multi-label calibration")
    def list_models() -> dict:
        return {"models": [m.info(default=i == 0) for i, m in enumerate(served)]}

    @app.get("/labels", summary="Saved vocabularies, and the labels cached for a model")
    def list_labels(model: str | None = None) -> dict:
        m = model_of(model)
        listing = getattr(bank, "vocabularies", None) if bank is not None else None
        vocabularies = [{"name": str(n), "size": int(s)} for n, s in (bank_call(listing) if listing is not None else [])]
        return {"model": m.name, "vocabularies": vocabularies, "labels": bank_call(m.cached_labels)}

    @app.get("/labels/vocabularies/{name}", summary="The labels of a saved vocabulary")
    def get_vocabulary(name: str) -> dict:
        return {"name": name, "labels": vocabulary_labels(name)}

    @app.get("/progress/{request_id}", summary="Stage and fraction of a classify request (its request_id field)")
    def progress(request_id: str) -> dict:
        return queue.progress(request_id[:64])

    # ------------------------------------------------------------------ state-changing routes
    @app.post("/labels", summary="Add labels to the label bank (vocabulary expansion); optionally save them as a vocabulary")
    async def add_labels(body: LabelsRequest) -> dict:
        m = model_of(body.model)
        clf = m.classifier
        if clf.label_bank is None:
            raise ServeError(409, "this server runs without a label bank (--no-label-bank): there is nothing to add labels to")
        if not clf.label_encoder.open_vocabulary:
            raise ServeError(422, f"model '{m.name}' has a fixed set of classes; it takes no new labels")
        labels, _ = check_labels(body.labels, limits)
        save = None
        if body.vocabulary is not None:
            if not VOCABULARY_NAME.fullmatch(body.vocabulary):
                raise ServeError(422, "vocabulary names are 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
            save = getattr(bank, "save_vocabulary", None)
            if save is None:
                raise ServeError(501, "this label bank cannot save vocabularies")
        job = queue.submit(LabelsJob(model=m, labels=labels))
        encoded, cached = await _outcome(job, queue=queue, timeout_s=timeout_s, hide=hide)
        if save is not None:
            await run_in_threadpool(bank_call, save, body.vocabulary, labels)
        return {"model": m.name, "encoded": encoded, "cached": cached, "vocabulary": body.vocabulary}

    @app.post("/classify", summary="Classify one video against labels", openapi_extra=CLASSIFY_BODY, responses=CLASSIFY_RESPONSES)
    async def classify(request: Request) -> Response:
        if queue.full() or uploads[0] >= max_uploads:  # refuse before the body is read: no bandwidth, no disk
            raise QueueFull(queue.retry_after())
        uploads[0] += 1
        try:
            form = await read_form(request, temp_dir=spool, limits=limits)
        except Disconnected:
            return Response(status_code=499)
        finally:
            uploads[0] -= 1
        try:
            task = await _classify_job(form, model_of=model_of, vocabulary_labels=vocabulary_labels, media=media, limits=limits, spool=spool)
            task.hide.update(hide)
            job = queue.submit(task, job_id=task.options.request_id)
            started = time.perf_counter()
            try:
                body = await _outcome(job, queue=queue, timeout_s=timeout_s, hide=task.hide, receive=request.receive)
            except Disconnected:
                log.info("client left while %s was %s: dropped", task.display, "waiting" if job.future.cancelled() else "running")
                return Response(status_code=499)
            body["elapsed_s"] = round(time.perf_counter() - started, 4)
            body["request_id"] = job.id
            return JSONResponse(body)
        finally:
            form.cleanup()

    return app


async def _classify_job(form: Form, *, model_of, vocabulary_labels, media: MediaRoot, limits: Limits, spool: Path) -> ClassifyJob:
    """Check a parsed form (400/403/404/415/422, in that spirit: where first, then what) into a :class:`ClassifyJob`."""
    fields = form.fields
    path_text = fields.get("path", "")
    if (form.upload is None) == (not path_text):
        raise ServeError(400, "give exactly one of 'file' (an upload) and 'path' (a file inside the server's media root)")
    if form.upload is not None:
        video, display = form.upload.path, form.upload.display
        hide = {str(video): display, str(spool): "<upload>"}
    else:
        video, display = media.resolve(path_text)
        head = await run_in_threadpool(read_head, video)
        if not head:  # as for an empty upload
            raise ServeError(422, f"{display}: empty file (0 bytes)")
        if sniff_video(head) is None:
            raise not_a_video(display)
        hide = {str(video): display, str(media.root): "<media root>"}
    model = model_of(fields.get("model", "").strip() or None)
    text, vocabulary = fields.get("labels", ""), fields.get("vocabulary", "").strip()
    if text.strip() and vocabulary:
        raise ServeError(400, "give 'labels' or 'vocabulary', not both")
    raw = await run_in_threadpool(vocabulary_labels, vocabulary) if vocabulary else parse_labels_text(text)
    labels, warnings = check_labels(raw, limits)
    options = ClassifyOptions.from_fields(fields, limits)
    return ClassifyJob(model=model, video=video, display=display, labels=labels, options=options, warnings=warnings, hide=hide)


async def _outcome(job: Job, *, queue: WorkQueue, timeout_s: float, hide: dict[str, str], receive=None) -> Any:
    """Wait for ``job`` (the event loop stays free): its result; its error as one line (the library's user errors:
    422); 504 after ``timeout_s`` since it was queued; :class:`Disconnected` when ``receive`` reports the client gone.
    A job given up on is dropped from the queue (or flagged, if running)."""
    result = asyncio.wrap_future(job.future)
    watcher = asyncio.ensure_future(_client_gone(receive)) if receive is not None else None
    waits = {result} | ({watcher} if watcher is not None else set())
    try:
        done, _ = await asyncio.wait(waits, timeout=max(0.0, job.submitted + timeout_s - time.monotonic()), return_when=asyncio.FIRST_COMPLETED)
        if result not in done:
            dropped = queue.cancel(job)
            result.cancel()
            if watcher is not None and watcher in done:
                raise Disconnected()
            where = "waiting in the queue" if dropped else "classifying"
            raise ServeError(504, f"timed out after {timeout_s:g} s ({where}); try fewer frames or views, a shorter video, or later")
        try:
            return result.result()
        except (ServeError, Disconnected):
            raise
        except JobCancelled:
            raise ServeError(504, f"timed out after {timeout_s:g} s") from None
        except OpenVocabError as exc:
            if isinstance(exc, getattr(_label_bank, "BusyLabelBank", ())):
                raise ServeError(503, scrub(str(exc), hide), headers={"Retry-After": "5"}) from None
            raise ServeError(422, scrub(str(exc), hide)) from None
        except Exception as exc:
            log.error("job %s failed: %s", job.id, scrub(f"{type(exc).__name__}: {exc}", hide), exc_info=exc)
            raise ServeError(500, "internal error while processing the request (the server log has the details)") from None
    finally:
        if watcher is not None:
            watcher.cancel()


async def _client_gone(receive) -> None:
    """Returns when the client disconnects (once the body is read, the server's next message is the disconnect)."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


def _add_error_handlers(app: FastAPI) -> None:
    async def http_error(_request: Request, exc: HTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "bad request"
        return JSONResponse({"detail": " ".join(detail.split())}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    async def unexpected(_request: Request, exc: Exception) -> Response:
        log.error("unexpected error: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return JSONResponse({"detail": "internal error (the server log has the details)"}, status_code=500)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


class _Gate:
    """Pure ASGI middleware in front of every route: the bearer token for state-changing methods and the cross-origin
    check (both before one body byte is read), the body limit of every route but ``POST /classify`` (which streams
    its own), security headers, and one log line per request (client, method, path, status, seconds)."""

    def __init__(self, app, *, secret: bytes, limits: Limits) -> None:
        self.app, self.secret, self.limits = app, secret, limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [0]
        method, path = scope["method"], scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            refusal = self._refusal(method, path, headers)
            if refusal is not None:
                code, detail, extra = refusal
                await JSONResponse({"detail": detail}, status_code=code, headers=extra)(scope, receive, send_with_headers)
                return
            if not (method == "POST" and path == "/classify"):
                receive = _capped(receive, JSON_BODY_LIMIT)
            await self.app(scope, receive, send_with_headers)
        finally:
            client = scope.get("client") or ("-", 0)
            log.info("%s %s %s %d %.3fs", client[0], method, path, status[0] or 499, time.perf_counter() - started)

    def _refusal(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str, dict[str, str] | None] | None:
        if method in ("GET", "HEAD", "OPTIONS"):
            return None
        origin = headers.get("origin")
        if origin and (origin == "null" or urlsplit(origin).netloc.lower() != headers.get("host", "").lower()):
            return 403, "cross-origin request refused (use the page this server serves, or a client without an Origin header)", None
        if self.secret:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8"), self.secret):
                return 401, "this server needs a token: send 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
        length = headers.get("content-length", "")
        cap = self.limits.max_body_bytes if path == "/classify" else JSON_BODY_LIMIT
        if length.isdigit() and int(length) > cap:
            return 413, f"request body of {int(length)} bytes is larger than this server accepts ({cap} bytes)", None
        return None


def _capped(receive, limit: int):
    """``receive`` that refuses (413) once more than ``limit`` body bytes arrived."""
    seen = [0]

    async def wrapped():
        message = await receive()
        if message.get("type") == "http.request":
            seen[0] += len(message.get("body", b""))
            if seen[0] > limit:
                raise ServeError(413, f"request body is larger than this server accepts ({limit} bytes)")
        return message

    return wrapped
