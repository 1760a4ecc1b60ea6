"""The parts of the OpenAPI schema FastAPI cannot derive, and ``GET /docs`` without a CDN (issue 10 part 1).

``POST /classify`` reads its multipart body itself (to hold the upload limit while it streams), so its fields are
described here. ``/docs`` is a plain HTML list of the routes made from the schema: FastAPI's Swagger page loads its
script from a CDN, and the machine serving may be offline.
"""

from __future__ import annotations

import html

_FIELDS = {
    "file": {"type": "string", "format": "binary", "description": "the video (its type is checked by content); or give 'path'"},
    "path": {"type": "string", "description": "a file relative to the server's --media-root (path mode); or upload 'file'"},
    "labels": {"type": "string", "description": "one label per line, or comma-separated when it is one line; or give 'vocabulary'"},
    "vocabulary": {"type": "string", "description": "a saved vocabulary's name (GET /labels lists them)"},
    "model": {"type": "string", "description": "a served model's name (default: the first)"},
    "frames": {"type": "integer", "default": 8, "description": "frames per view"},
    "views": {"type": "string", "default": "1x1", "description": "temporal views x spatial crops, e.g. 4x3"},
    "multi_label": {"type": "boolean", "default": False, "description": "independent calibrated scores per label"},
    "threshold": {"type": "number", "description": "multi-label decision threshold (default: the model's calibration)"},
    "segments": {"type": "integer", "default": 8, "description": "time windows of the timeline (0: none)"},
    "top_k": {"type": "integer", "description": "ranked labels to return (default: all; the timeline always has all)"},
    "thumbnails": {"type": "boolean", "default": True, "description": "one small JPEG per segment"},
    "request_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "description": "your id for GET /progress/{request_id}"},
}

CLASSIFY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {"type": "object", "properties": _FIELDS}}},
    }
}

CLASSIFY_RESPONSES = {
    200: {"description": "ClipResult fields plus model, elapsed_s, request_id, timeline and thumbnails"},
    400: {"description": "neither or both of file and path; a bad field"},
    401: {"description": "the server has a token and the request did not send it"},
    403: {"description": "path outside the media root, or path mode off"},
    404: {"description": "path not found; unknown model or vocabulary"},
    413: {"description": "upload larger than the server's limit"},
    415: {"description": "the file is not a video by its content"},
    422: {"description": "labels: none, too many or too long; or an undecodable video"},
    503: {"description": "work queue full (see Retry-After)"},
    504: {"description": "timed out"},
}


def docs_page(schema: dict) -> str:
    """An HTML page listing every route of ``schema`` (method, path, summary) and linking the JSON schema."""
    rows = []
    for path, item in sorted(schema.get("paths", {}).items()):
        for method, op in item.items():
            summary = html.escape(str(op.get("summary", "")))
            rows.append(f"<tr><td><code>{html.escape(method.upper())}</code></td><td><code>{html.escape(path)}</code></td><td>{summary}</td></tr>")
    title = html.escape(str(schema.get("info", {}).get("title", "API")))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title} API</title></head><body><h1>{title} API</h1>"
        "<p>The full schema: <a href='/openapi.json'>/openapi.json</a>. The page: <a href='/'>/</a>.</p>"
        f"<table><thead><tr><th>method</th><th>path</th><th>what</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        "</body></html>"
    )
