"""Reading a ``POST /classify`` body: multipart/form-data parsed while it streams in (issue 10 part 3).

The file part goes straight to a private temporary file in the server's temp folder (``mkstemp``: mode 600, a random
name; the client's file name is only ever shown, never used as a path). Limits hold while the body arrives, not after
it was read: a ``Content-Length`` above the limit is refused before one byte is read, and a body that grows past it
(or a file part past ``--max-upload-mb``) is cut off at that byte (413). The first bytes of the file decide whether it
is a video (:func:`openvocab.serve.limits.sniff_video`, 415), before the rest is stored. Whatever happens -- a limit,
a bad field, the client disconnecting mid-upload -- :meth:`Form.cleanup` removes the temporary file; callers run it
in a ``finally``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from openvocab.serve.errors import ServeError
from openvocab.serve.limits import SNIFF_BYTES, Limits, display_name, not_a_video, sniff_video

#: The text fields of ``POST /classify`` (the contract in the issue); anything else is refused with 400.
FIELDS = ("path", "labels", "vocabulary", "model", "frames", "views", "multi_label", "threshold", "segments", "top_k", "thumbnails", "request_id")


class Disconnected(Exception):
    """The client went away while its request was read or waited for (nobody is left to answer)."""


@dataclass
class Upload:
    """The uploaded file: its temporary ``path``, the name to show (``display``), its size and sniffed suffix."""

    path: Path
    display: str
    size: int = 0
    kind: str | None = None


@dataclass
class Form:
    """Text fields (name -> value) and the upload, if any."""

    fields: dict[str, str] = field(default_factory=dict)
    upload: Upload | None = None

    def cleanup(self) -> None:
        """Remove the temporary file (safe to call more than once, and while a worker still has it open)."""
        if self.upload is not None:
            try:
                self.upload.path.unlink()
            except FileNotFoundError:
                pass


class _Reader:
    """The callbacks of python-multipart's streaming parser: one part at a time, with every limit applied."""

    def __init__(self, form: Form, *, temp_dir: Path, limits: Limits) -> None:
        self.form, self.temp_dir, self.limits = form, temp_dir, limits
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, bytes] = {}  # raw values: browsers send UTF-8 file names unescaped
        self.name: str | None = None
        self.value = bytearray()
        self.fd: int | None = None
        self.head = bytearray()
        self.ended = False
        self.no_name = False
        self.form_bytes = 0

    # headers of one part ------------------------------------------------------------------------------------------
    def on_part_begin(self) -> None:
        self.headers, self.name, self.value = {}, None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field, self.header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        kind, params = parse_options_header(self.headers.get("content-disposition", b""))
        name = params.get(b"name")
        if kind != b"form-data" or name is None:
            raise ServeError(400, "a multipart part without a form-data name")
        self.name = name.decode("utf-8", "replace")
        if self.name == "file":
            if self.form.upload is not None:
                raise ServeError(400, "one file per request")
            fd, path = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.temp_dir)
            self.fd = fd
            self.form.upload = Upload(path=Path(path), display=display_name(params.get(b"filename", b"").decode("utf-8", "replace")))
            self.no_name = not params.get(b"filename")
        elif b"filename" in params:
            raise ServeError(400, f"unexpected file field '{self.name[:40]}' (send the video as 'file')")
        elif self.name not in FIELDS:
            raise ServeError(400, f"unknown field '{self.name[:40]}' (fields: file, {', '.join(FIELDS)})")
        elif self.name in self.form.fields:
            raise ServeError(400, f"field '{self.name}' given twice")

    # data ----------------------------------------------------------------------------------------------------------
    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.fd is None:
            self.form_bytes += len(chunk)
            if self.form_bytes > self.limits.max_form_bytes:
                raise ServeError(413, f"form fields are larger than {self.limits.max_form_bytes} bytes")
            self.value += chunk
            return
        upload = self.form.upload
        assert upload is not None
        upload.size += len(chunk)
        if upload.size > self.limits.max_upload_bytes:
            raise ServeError(413, f"{upload.display}: larger than this server's upload limit ({_mb(self.limits.max_upload_bytes)})")
        if upload.kind is None:
            self.head += chunk
            if len(self.head) < SNIFF_BYTES:
                return
            self._sniff()
            chunk, self.head = bytes(self.head), bytearray()
        os.write(self.fd, chunk)

    def _sniff(self) -> None:
        upload = self.form.upload
        assert upload is not None
        kind = sniff_video(bytes(self.head))
        if kind is None:
            raise not_a_video(upload.display)
        upload.kind = kind

    def on_part_end(self) -> None:
        if self.fd is not None:
            upload = self.form.upload
            assert upload is not None
            if upload.kind is None:  # shorter than the sniff window
                if not self.head and self.no_name:  # a browser form's empty file input: no file
                    self.close_file()
                    self.form.cleanup()
                    self.form.upload = None
                    return
                if not self.head:
                    raise ServeError(422, f"{upload.display}: empty file (0 bytes)")
                self._sniff()
                os.write(self.fd, bytes(self.head))
            self.close_file()
            return
        assert self.name is not None
        try:
            self.form.fields[self.name] = self.value.decode("utf-8")
        except UnicodeDecodeError:
            raise ServeError(400, f"field '{self.name}' is not UTF-8 text") from None

    def on_end(self) -> None:
        self.ended = True

    def close_file(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def callbacks(self) -> dict:
        names = ("part_begin", "part_data", "part_end", "header_field", "header_value", "header_end", "headers_finished", "end")
        return {f"on_{n}": getattr(self, f"on_{n}") for n in names}


async def read_form(request: Request, *, temp_dir: Path, limits: Limits) -> Form:
    """Parse the multipart body of ``request`` into a :class:`Form` (see the module). On any error the temporary file
    is already removed; a client gone mid-upload raises :class:`Disconnected`."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if kind == b"application/x-www-form-urlencoded":  # path mode from `curl -d` (no file can come this way)
        return await _read_urlencoded(request, limits=limits)
    if kind != b"multipart/form-data" or not boundary:
        raise ServeError(400, "POST /classify takes multipart/form-data: a 'file' (or a 'path') and 'labels'")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ServeError(400, "bad Content-Length")
        if int(length) > limits.max_body_bytes:
            raise ServeError(413, f"request body of {int(length)} bytes is larger than this server's upload limit ({_mb(limits.max_upload_bytes)})")
    form = Form()
    reader = _Reader(form, temp_dir=temp_dir, limits=limits)
    parser = MultipartParser(boundary, reader.callbacks(), max_size=limits.max_body_bytes + 1)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limits.max_body_bytes:
                raise ServeError(413, f"request body is larger than this server's upload limit ({_mb(limits.max_upload_bytes)})")
            parser.write(chunk)
        parser.finalize()
        if not reader.ended:
            raise ServeError(400, "incomplete multipart body")
    except ClientDisconnect:
        reader.close_file()
        form.cleanup()
        raise Disconnected() from None
    except ServeError:
        reader.close_file()
        form.cleanup()
        raise
    except Exception:  # the parser's own errors on a malformed body
        reader.close_file()
        form.cleanup()
        raise ServeError(400, "malformed multipart body") from None
    reader.close_file()
    return form


async def _read_urlencoded(request: Request, *, limits: Limits) -> Form:
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_form_bytes:
                raise ServeError(413, f"form fields are larger than {limits.max_form_bytes} bytes")
    except ClientDisconnect:
        raise Disconnected() from None
    form = Form()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise ServeError(400, "form fields are not UTF-8 text") from None
    for name, value in pairs:
        if name not in FIELDS:
            raise ServeError(400, f"unknown field '{name[:40]}' (fields: file, {', '.join(FIELDS)}; a file needs multipart/form-data)")
        if name in form.fields:
            raise ServeError(400, f"field '{name}' given twice")
        form.fields[name] = value
    return form


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"
