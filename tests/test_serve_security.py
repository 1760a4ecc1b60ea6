"""Limits and safety of ``openvocab serve`` (issue 10 part 3): each limit's status code, and that nothing outside the
media root was read.

A spy on the two ways the server reads a file -- ``av.open`` (every decode: the classifier's and the thumbnails') and
the content sniff of path mode (``read_head``) -- records every path opened; the tests assert that none lies outside
the media root (or the server's upload folder). Streaming limits and client disconnects are driven through the raw
ASGI interface, where the test controls each body chunk and the moment the client goes away.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

import openvocab
import openvocab.serve.app as serve_app
from openvocab.io.encode import write_video
from openvocab.serve import create_app
from openvocab.serve.limits import Limits, sniff_video

pytest.importorskip("httpx2", reason="FastAPI's TestClient needs httpx2")
from starlette.testclient import TestClient  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BOUNDARY = "openvocab-test-boundary"


@pytest.fixture(scope="module")
def clf(tiny_model_dir, tmp_path_factory):
    return openvocab.load(tiny_model_dir, label_bank=tmp_path_factory.mktemp("bank") / "bank.sqlite")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict[str, Path]:
    """``media/clip.mp4``, ``outside/secret.mp4`` (a valid video next to the root), and links inside the root."""
    base = tmp_path_factory.mktemp("tree")
    media, outside = base / "media", base / "outside"
    media.mkdir()
    outside.mkdir()
    frames = np.random.default_rng(0).integers(0, 255, (12, 64, 96, 3), dtype=np.uint8)
    write_video(media / "clip.mp4", frames)
    write_video(outside / "secret.mp4", frames)
    (media / "sub").mkdir()
    (media / "out.mp4").symlink_to(outside / "secret.mp4")  # a link pointing out
    (media / "outdir").symlink_to(outside)
    (media / "sub" / "in.mp4").symlink_to(media / "clip.mp4")  # a link that stays inside
    (media / "notes.txt").write_text("not a video\n" * 100)
    return {"media": media, "outside": outside, "secret": outside / "secret.mp4", "clip": media / "clip.mp4"}


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Every file the server opens (real paths)."""
    seen: list[str] = []
    real_av_open, real_head = av.open, serve_app.read_head

    def av_open(file, *args, **kwargs):
        seen.append(os.path.realpath(str(file)))
        return real_av_open(file, *args, **kwargs)

    def read_head(path, *args, **kwargs):
        seen.append(os.path.realpath(str(path)))
        return real_head(path, *args, **kwargs)

    monkeypatch.setattr(av, "open", av_open)
    monkeypatch.setattr(serve_app, "read_head", read_head)
    return seen


def only_inside(reads: list[str], *roots: Path) -> bool:
    return all(any(Path(p).is_relative_to(os.path.realpath(r)) for r in roots) for p in reads)


class Held:
    """The real classifier, whose ``classify`` waits for ``gate`` (and counts its calls)."""

    def __init__(self, clf) -> None:
        self._clf, self.gate, self.calls = clf, threading.Event(), 0

    def __getattr__(self, name):
        return getattr(self._clf, name)

    def classify(self, *args, **kwargs):
        self.calls += 1
        self.gate.wait(30)
        return self._clf.classify(*args, **kwargs)


def multipart(fields: dict[str, str], file: tuple[str, bytes] | None = None) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    if file is not None:
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{file[0]}"\r\nContent-Type: video/mp4\r\n\r\n'
        parts.append(head.encode() + file[1] + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


async def asgi_post(app, body_chunks: list[bytes], *, headers: dict[str, str] | None = None, gone: asyncio.Event | None = None, after_body="wait") -> dict:
    """POST /classify through ASGI: the body in ``body_chunks`` (counted in ``result["pulled"]`` as the app takes
    them), then the client disconnects at once (``after_body="disconnect"``) or when ``gone`` is set."""
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", **(headers or {})}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/classify",
        "raw_path": b"/classify",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    out: dict = {"pulled": 0, "status": None, "body": b""}
    pending = list(body_chunks)
    gone = gone or asyncio.Event()

    async def receive():
        if pending:
            out["pulled"] += 1
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or after_body == "disconnect-mid"}
        if after_body in ("disconnect", "disconnect-mid"):
            return {"type": "http.disconnect"}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out


def wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------------------------------
ATTACKS = [
    ("../outside/secret.mp4", 403),
    ("sub/../../outside/secret.mp4", 403),
    ("./../outside/secret.mp4", 403),
    ("ABSOLUTE", 403),
    ("%2e%2e%2foutside%2fsecret.mp4", 403),
    ("%252e%252e%252foutside%252fsecret.mp4", 403),  # double-encoded
    ("..%2Foutside%2Fsecret.mp4", 403),
    ("%2Fetc%2Fpasswd", 403),
    ("out.mp4", 403),  # a symbolic link inside the root pointing out
    ("outdir/secret.mp4", 403),  # through a linked directory
    ("..\\outside\\secret.mp4", 403),
    ("clip.mp4\x00.txt", 400),
    ("%00clip.mp4", 400),
    ("sub", 400),
    ("missing.mp4", 404),
    ("notes.txt", 415),
]


@pytest.mark.parametrize(("path", "status"), ATTACKS, ids=[repr(a[0]) for a in ATTACKS])
def test_no_path_outside_the_media_root_is_read(clf, tree, reads, tmp_path, path, status):
    path = str(tree["secret"]) if path == "ABSOLUTE" else path
    app = create_app(models={"tiny": clf}, media_root=tree["media"], temp_dir=tmp_path)
    with TestClient(app) as c:
        r = c.post("/classify", files={"path": (None, path), "labels": (None, "a, b")})
    assert r.status_code == status, r.text
    assert str(tree["outside"]) not in r.text and str(tree["media"]) not in r.text
    assert os.path.realpath(tree["secret"]) not in reads
    assert only_inside(reads, tree["media"])
    if status in (403, 400):
        assert reads == []  # refused before anything was opened


def test_paths_inside_the_root_work_and_path_mode_needs_a_root(clf, tree, reads, tmp_path):
    with TestClient(create_app(models={"tiny": clf}, media_root=tree["media"], temp_dir=tmp_path)) as c:
        assert c.post("/classify", data={"path": "sub/in.mp4", "labels": "a, b"}).status_code == 200  # a link that stays inside
        assert c.post("/classify", data={"path": "sub/../clip.mp4", "labels": "a, b"}).status_code == 403  # '..' is refused outright
    assert reads and only_inside(reads, tree["media"])
    reads.clear()
    with TestClient(create_app(models={"tiny": clf}, temp_dir=tmp_path)) as c:
        r = c.post("/classify", data={"path": "clip.mp4", "labels": "a"})
    assert r.status_code == 403 and "--media-root" in r.json()["detail"] and reads == []


def test_upload_limit_is_enforced_while_streaming(clf, tree, reads, tmp_path):
    limits = Limits(max_upload_bytes=64 * 1024)
    app = create_app(models={"tiny": clf}, temp_dir=tmp_path, limits=limits)
    video = tree["clip"].read_bytes()
    body = multipart({"labels": "a, b"}, ("big.mp4", video + b"\0" * (1024 * 1024)))
    chunks = [body[i : i + 16 * 1024] for i in range(0, len(body), 16 * 1024)]  # 67 chunks, no Content-Length
    out = asyncio.run(asgi_post(app, chunks))
    assert out["status"] == 413 and b"upload limit" in out["body"]
    assert out["pulled"] <= 64 // 16 + 2 < len(chunks)  # it stopped reading at the limit, not at the end
    assert reads == [] and list(tmp_path.iterdir()) == []

    def never():
        raise AssertionError("the body was read although Content-Length was over the limit")

    out = asyncio.run(asgi_post(app, [never], headers={"content-length": str(10**12)}))  # type: ignore[list-item]
    assert out["status"] == 413 and out["pulled"] == 0
    with TestClient(app) as c:  # an honest client, same limit
        r = c.post("/classify", files={"file": ("big.mp4", video + b"\0" * (1024 * 1024), "video/mp4")}, data={"labels": "a"})
        assert r.status_code == 413
        assert c.post("/labels", content=b"[" + b'"a",' * 2_000_000 + b'"a"]', headers={"content-type": "application/json"}).status_code == 413
    assert list(tmp_path.iterdir()) == []


def test_type_is_checked_by_content_not_name(clf, tree, reads, tmp_path):
    app = create_app(models={"tiny": clf}, temp_dir=tmp_path)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 600
    with TestClient(app) as c:
        for name, data in [("clip.mp4", b"hello, I am text\n" * 50), ("clip.mkv", png), ("x.avi", b"RIFF\0\0\0\0WAVE" + b"\0" * 600)]:
            r = c.post("/classify", files={"file": (name, data, "video/mp4")}, data={"labels": "a"})
            assert r.status_code == 415 and r.json()["detail"].startswith(f"{name}: not a video")
        assert reads == []  # refused from its first bytes: FFmpeg never saw them
        r = c.post("/classify", files={"file": ("notes.txt", tree["clip"].read_bytes(), "text/plain")}, data={"labels": "a, b"})
        assert r.status_code == 200 and r.json()["path"] == "notes.txt"  # a video named .txt is a video
        assert any(w.startswith("notes.txt: the timeline has") for w in r.json()["warnings"]) and str(tmp_path) not in r.text
    assert list(tmp_path.iterdir()) == []
    assert sniff_video(tree["clip"].read_bytes()[:512]) == ".mp4" and sniff_video(b"\x1a\x45\xdf\xa3" + b"\0" * 60) == ".mkv"
    assert sniff_video(b"RIFF\0\0\0\0AVI LIST") == ".avi" and sniff_video(b"GIF89a") == ".gif" and sniff_video(bytes([0x47] + [0] * 187) * 3) == ".ts"


def test_undecodable_video_is_422_without_paths_or_traceback(clf, tmp_path):
    app = create_app(models={"tiny": clf}, temp_dir=tmp_path / "spool")
    broken = b"\0\0\0\x18ftypisom\0\0\0\0isomiso2" + os.urandom(4000)  # an mp4 signature, then noise
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/classify", files={"file": ("../../broken.mp4", broken, "video/mp4")}, data={"labels": "a"})
    detail = r.json()["detail"]
    assert r.status_code == 422 and detail.startswith("broken.mp4: ") and "\n" not in detail
    assert str(tmp_path) not in r.text and "Traceback" not in r.text and "upload-" not in r.text
    assert list((tmp_path / "spool").iterdir()) == [] and not (tmp_path / "broken.mp4").exists()


def test_bounded_queue_answers_503_with_retry_after(clf, tree, tmp_path):
    held = Held(clf)
    app = create_app(models={"tiny": held}, media_root=tree["media"], temp_dir=tmp_path, workers=1, queue_size=1)
    with TestClient(app) as c:
        answers: list = []

        def send(i: int) -> None:
            answers.append(c.post("/classify", files={"file": ("clip.mp4", tree["clip"].read_bytes(), "video/mp4")}, data={"labels": "a, b"}))

        first = threading.Thread(target=send, args=(0,))
        first.start()
        wait_for(lambda: held.calls == 1, "the first request to run")
        second = threading.Thread(target=send, args=(1,))
        second.start()
        wait_for(lambda: c.get("/health").json()["queue"]["waiting"] == 1, "the second request to queue")
        third = c.post("/classify", files={"file": ("clip.mp4", tree["clip"].read_bytes(), "video/mp4")}, data={"labels": "a"})
        assert third.status_code == 503 and int(third.headers["retry-after"]) >= 1 and "busy" in third.json()["detail"]
        assert len(list(tmp_path.iterdir())) == 2  # the running and the waiting upload; the refused one is gone

        def never():
            raise AssertionError("the body was read although the queue was full")

        out = asyncio.run(asgi_post(app, [never]))  # type: ignore[list-item]
        assert out["status"] == 503 and out["pulled"] == 0  # refused before its upload was taken
        held.gate.set()
        first.join(30)
        second.join(30)
    assert [a.status_code for a in answers] == [200, 200] and held.calls == 2
    assert list(tmp_path.iterdir()) == []


def test_timeouts_answer_504_and_drop_the_waiting_job(clf, tree, tmp_path):
    held = Held(clf)
    app = create_app(models={"tiny": held}, media_root=tree["media"], temp_dir=tmp_path, workers=1, queue_size=2, timeout_s=0.5)
    with TestClient(app) as c:
        answers: list = []
        running = threading.Thread(
            target=lambda: answers.append(c.post("/classify", files={"file": ("a.mp4", tree["clip"].read_bytes())}, data={"labels": "a"}))
        )
        running.start()
        wait_for(lambda: held.calls == 1, "the first request to run")
        queued = c.post("/classify", files={"file": ("b.mp4", tree["clip"].read_bytes())}, data={"labels": "a", "request_id": "late"})
        running.join(30)
        assert queued.status_code == 504 and "waiting in the queue" in queued.json()["detail"]
        assert answers[0].status_code == 504 and "classifying" in answers[0].json()["detail"]
        assert list(tmp_path.iterdir()) == []  # both uploads removed when their requests ended, the worker still busy
        assert c.get("/progress/late").json()["stage"] == "failed"
        held.gate.set()
        wait_for(lambda: c.get("/health").json()["queue"]["running"] == 0, "the running job to end")
    assert held.calls == 1  # the timed-out waiting job never ran


def test_client_disconnect_drops_the_queued_job_and_its_file(clf, tree, tmp_path):
    held = Held(clf)
    app = create_app(models={"tiny": held}, temp_dir=tmp_path, workers=1, queue_size=2)
    video = tree["clip"].read_bytes()

    async def scenario():
        blocker = asyncio.ensure_future(asgi_post(app, [multipart({"labels": "a"}, ("a.mp4", video))]))
        await asyncio.to_thread(wait_for, lambda: held.calls == 1, "the first request to run")
        gone = asyncio.Event()
        leaving = asyncio.ensure_future(asgi_post(app, [multipart({"labels": "a"}, ("b.mp4", video))], gone=gone))
        await asyncio.to_thread(wait_for, lambda: app.state.queue.stats()["waiting"] == 1, "the second request to queue")
        assert len(list(tmp_path.iterdir())) == 2
        gone.set()  # the client of the queued request goes away
        left = await leaving
        assert app.state.queue.stats() == {"running": 1, "waiting": 0, "capacity": 2}
        assert len(list(tmp_path.iterdir())) == 1  # only the running request's upload
        held.gate.set()
        return left, await blocker

    left, first = asyncio.run(scenario())
    assert first["status"] == 200 and left["status"] in (None, 499)
    assert held.calls == 1 and list(tmp_path.iterdir()) == []

    body = multipart({"labels": "a"}, ("c.mp4", video))  # a client that leaves halfway through its upload
    out = asyncio.run(asgi_post(app, [body[: len(body) // 2]], after_body="disconnect-mid"))
    assert out["status"] in (None, 499) and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("\n".join(f"label {i}" for i in range(6)), "too many labels: 6"),
        ("x" * 31, "is 31 characters long"),
        ("", "no labels given"),
        (" \n \t\n ", "no labels given"),
        ("ok\nbell\x07", "control characters"),
    ],
)
def test_label_count_and_length_limits(clf, tree, reads, tmp_path, labels, message):
    app = create_app(models={"tiny": clf}, media_root=tree["media"], temp_dir=tmp_path, limits=Limits(max_labels=5, max_label_length=30))
    with TestClient(app) as c:
        r = c.post("/classify", files={"path": (None, "clip.mp4"), "labels": (None, labels)})
        assert r.status_code == 422 and message in r.json()["detail"]
        r = c.post("/labels", json={"labels": labels.split("\n")})
        assert r.status_code == 422 and message in r.json()["detail"]
    assert only_inside(reads, tree["media"])


def test_token_guards_state_changing_routes_before_reading_the_body(clf, tree, tmp_path):
    app = create_app(models={"tiny": clf}, media_root=tree["media"], temp_dir=tmp_path, token="s3cret")
    form = {"path": "clip.mp4", "labels": "a, b"}
    with TestClient(app) as c:
        assert c.get("/health").json()["token_required"] is True
        for route, kwargs in [("/classify", {"data": form}), ("/labels", {"json": {"labels": ["z"]}})]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}, {"Authorization": "Bearer s3cret0"}):
                r = c.post(route, headers=headers, **kwargs)
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/classify", data=form, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/labels", json={"labels": ["z"]}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/labels").status_code == 200 and c.get("/models").status_code == 200
        crossed = c.post("/classify", data=form, headers={"Authorization": "Bearer s3cret", "Origin": "http://evil.example"})
        assert crossed.status_code == 403 and "cross-origin" in crossed.json()["detail"]

    def never():
        raise AssertionError("the body was read before the token was checked")

    out = asyncio.run(asgi_post(app, [never]))  # type: ignore[list-item]
    assert out["status"] == 401 and out["pulled"] == 0


def test_unexpected_errors_are_500_with_one_line(clf, tree, tmp_path):
    class Broken(Held):
        def classify(self, *args, **kwargs):
            raise RuntimeError(f"boom in {args[0]}")

    app = create_app(models={"tiny": Broken(clf)}, temp_dir=tmp_path)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/classify", files={"file": ("clip.mp4", tree["clip"].read_bytes())}, data={"labels": "a"})
    assert r.status_code == 500 and r.json() == {"detail": "internal error while processing the request (the server log has the details)"}
    assert list(tmp_path.iterdir()) == []
