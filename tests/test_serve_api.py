"""``openvocab serve``'s HTTP API (issue 10 part 1): every route, the OpenAPI schema, several models by name, and the
same scores as the Python API (``openvocab.load(...).classify(...)``) for an upload and for a media-root path.

In-process through FastAPI's ``TestClient``; one test starts the real command in a subprocess (a free port, /health,
SIGTERM stops it cleanly)."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import openvocab
from openvocab.io.encode import write_video
from openvocab.serve import create_app
from openvocab.text.prompts import parse_labels_text

pytest.importorskip("httpx2", reason="FastAPI's TestClient needs httpx2")
from starlette.testclient import TestClient  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LABELS = ["playing guitar", "yoga", "dog barking", "juggling"]


def moving_square(n: int = 40, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """Frames of a bright square crossing a dark background (distinct frames, so segments differ)."""
    w, h = size
    frames = np.full((n, h, w, 3), 30, np.uint8)
    for i in range(n):
        x = int(i * (w - 16) / max(n - 1, 1))
        frames[i, 20:36, x : x + 16] = (230, 60 + 4 * i % 190, 40)
    return frames


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    write_video(root / "clip.mp4", moving_square())
    return root


@pytest.fixture(scope="module")
def clf(tiny_model_dir, tmp_path_factory):
    return openvocab.load(tiny_model_dir, label_bank=tmp_path_factory.mktemp("bank") / "bank.sqlite")


@pytest.fixture
def client(clf, media, tmp_path):
    app = create_app(models={"tiny": clf}, media_root=media, temp_dir=tmp_path / "spool")
    with TestClient(app) as c:
        yield c
    assert not any((tmp_path / "spool").iterdir()), "an upload temp file was left behind"


def upload(c: TestClient, path: Path, **fields):
    data = {k: str(v) for k, v in fields.items()}
    with open(path, "rb") as f:
        return c.post("/classify", files={"file": (path.name, f, "video/mp4")}, data=data)


def by_label(entries) -> dict[str, float]:
    return {e["label"]: e["score"] for e in entries}


# ---------------------------------------------------------------------------------------------------------------------
def test_status_routes_and_openapi_schema(client, clf):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["models"] == ["tiny"]
    assert health["queue"] == {"running": 0, "waiting": 0, "capacity": 8}
    (model,) = client.get("/models").json()["models"]
    assert model["name"] == "tiny" and model["default"] is True and model["modalities"] == ["rgb"] and model["open_vocabulary"] is True
    assert model["multi_label"] == {"calibrated": False, "threshold": clf.calibration.threshold, "source": clf.calibration.source}
    paths = client.get("/openapi.json").json()["paths"]
    for route, method in [("/health", "get"), ("/models", "get"), ("/labels", "get"), ("/labels", "post"), ("/classify", "post")]:
        assert method in paths[route], route
    assert "/labels/vocabularies/{name}" in paths and "/progress/{request_id}" in paths
    fields = paths["/classify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"file", "path", "labels", "vocabulary", "model", "frames", "views", "multi_label", "threshold", "segments", "top_k", "thumbnails"} <= set(fields)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/classify" in docs.text and "http://" not in docs.text and "https://" not in docs.text
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert client.get("/static/index.html").status_code == 200
    assert page.headers["x-content-type-options"] == "nosniff" and "default-src 'self'" in page.headers["content-security-policy"]


def test_upload_and_media_path_give_the_python_api_scores(client, clf, media):
    expected = clf.classify(media / "clip.mp4", LABELS, top_k=len(LABELS))
    for response in (
        upload(client, media / "clip.mp4", labels="\n".join(LABELS)),
        client.post("/classify", data={"path": "clip.mp4", "labels": ", ".join(LABELS)}),
    ):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["path"] == "clip.mp4" and body["model"] == "tiny" and body["elapsed_s"] >= 0
        assert [e["label"] for e in body["labels"]] == [s.label for s in expected.labels]
        assert by_label(body["labels"]) == pytest.approx({s.label: s.score for s in expected.labels}, abs=1e-6)
        assert body["predicted"] == expected.predicted and body["frames_sampled"] == expected.frames_sampled
        assert len(body["segments"]) == len(expected.segments) == 8
        for got, want in zip(body["segments"], expected.segments):
            assert got["start_s"] == pytest.approx(want.start_s) and got["end_s"] == pytest.approx(want.end_s)
            assert by_label(got["labels"]) == pytest.approx({s.label: s.score for s in want.labels}, abs=1e-6)
        assert str(client.app.state.temp_dir) not in response.text


def test_timeline_is_the_segments_matrix_and_top_k_cuts_only_the_lists(client, media):
    body = upload(client, media / "clip.mp4", labels="\n".join(LABELS), top_k=2, segments=5).json()
    timeline = body["timeline"]
    assert len(body["labels"]) == 2 and all(len(s["labels"]) == 2 for s in body["segments"])
    assert timeline["labels"][:2] == [e["label"] for e in body["labels"]] and sorted(timeline["labels"]) == sorted(LABELS)
    assert timeline["start_s"] == [s["start_s"] for s in body["segments"]] and timeline["end_s"] == [s["end_s"] for s in body["segments"]]
    assert np.array(timeline["scores"]).shape == (len(LABELS), 5)
    for j, seg in enumerate(body["segments"]):
        column = {label: timeline["scores"][i][j] for i, label in enumerate(timeline["labels"])}
        assert sum(column.values()) == pytest.approx(1.0, abs=1e-5)  # softmax over every label, per segment
        for entry in seg["labels"]:
            assert column[entry["label"]] == entry["score"]


def test_thumbnails_are_small_jpegs_at_segment_middles(client, media):
    body = upload(client, media / "clip.mp4", labels="a, b", segments=4).json()
    thumbs = body["thumbnails"]
    assert len(thumbs) == len(body["segments"]) == 4
    for thumb, seg in zip(thumbs, body["segments"]):
        assert thumb["time_s"] == pytest.approx((seg["start_s"] + seg["end_s"]) / 2, abs=1e-3)
        prefix = "data:image/jpeg;base64,"
        assert thumb["image"].startswith(prefix)
        image = Image.open(io.BytesIO(base64.b64decode(thumb["image"][len(prefix) :])))
        assert image.format == "JPEG" and image.size == (96, 64)  # a 64-pixel-high video is never scaled up
    xs = [int(np.argmax(np.asarray(Image.open(io.BytesIO(base64.b64decode(t["image"][23:])))).astype(int)[28, :, 0] > 150)) for t in thumbs]
    assert xs == sorted(xs) and xs[0] < xs[-1]  # the square moves right: the frames are in time order
    assert upload(client, media / "clip.mp4", labels="a, b", thumbnails="false").json()["thumbnails"] == []


def test_multi_label_with_threshold(client, clf, media):
    scores = [s.score for s in clf.classify(media / "clip.mp4", LABELS, top_k=len(LABELS), multi_label=True).labels]
    threshold = round((scores[1] + scores[2]) / 2, 8)  # between the second and the third label: two pass
    expected = clf.classify(media / "clip.mp4", LABELS, top_k=len(LABELS), multi_label=True, threshold=threshold)
    body = upload(client, media / "clip.mp4", labels="\n".join(LABELS), multi_label="true", threshold=threshold).json()
    assert body["multi_label"] is True and body["threshold"] == threshold and body["calibration"]["source"] == clf.calibration.source
    assert body["predicted"] == expected.predicted == [e["label"] for e in body["labels"][:2]]
    assert by_label(body["labels"]) == pytest.approx({s.label: s.score for s in expected.labels}, abs=1e-6)


def test_several_models_by_name(clf, tiny_model_dir, media, tmp_path):
    other = openvocab.load(tiny_model_dir, label_bank=False)
    app = create_app(models={"first": clf, "second": other}, media_root=media, temp_dir=tmp_path)
    with TestClient(app) as c:
        assert c.get("/health").json()["models"] == ["first", "second"]
        listed = c.get("/models").json()["models"]
        assert [(m["name"], m["default"]) for m in listed] == [("first", True), ("second", False)]
        default = c.post("/classify", data={"path": "clip.mp4", "labels": "a, b"}).json()
        second = c.post("/classify", data={"path": "clip.mp4", "labels": "a, b", "model": "second"}).json()
        assert default["model"] == "first" and second["model"] == "second"
        assert by_label(second["labels"]) == pytest.approx(by_label(default["labels"]), abs=1e-6)  # same weights
        missing = c.post("/classify", data={"path": "clip.mp4", "labels": "a", "model": "third"})
        assert missing.status_code == 404 and "third" in missing.json()["detail"]
        assert c.get("/labels", params={"model": "third"}).status_code == 404
        assert c.post("/labels", json={"model": "second", "labels": ["x"]}).status_code == 409  # no label bank


def test_post_labels_then_get_labels(client):
    first = client.post("/labels", json={"labels": ["surfing", "  rock   climbing ", "Surfing"]})
    assert first.status_code == 200, first.text
    assert first.json() == {"model": "tiny", "encoded": 2, "cached": 0, "vocabulary": None}
    again = client.post("/labels", json={"labels": ["surfing", "rock climbing", "sailing"]}).json()
    assert (again["encoded"], again["cached"]) == (1, 2)
    listed = client.get("/labels", params={"model": "tiny"}).json()
    assert listed["model"] == "tiny" and {"surfing", "rock climbing", "sailing"} <= set(listed["labels"])
    assert isinstance(listed["vocabularies"], list)
    bad = client.post("/labels", json={"labels": "not a list"})
    assert bad.status_code == 422 and isinstance(bad.json()["detail"], str) and "\n" not in bad.json()["detail"]


def test_saved_vocabularies(client, clf, media):
    if not hasattr(clf.label_bank, "save_vocabulary"):
        pytest.skip("LabelBank.save_vocabulary is not in this tree yet (named vocabularies, issue 10)")
    saved = client.post("/labels", json={"labels": ["kayaking", "rowing", "diving"], "vocabulary": "water-sports"})
    assert saved.status_code == 200 and saved.json()["vocabulary"] == "water-sports"
    assert {"name": "water-sports", "size": 3} in client.get("/labels").json()["vocabularies"]
    assert client.get("/labels/vocabularies/water-sports").json() == {"name": "water-sports", "labels": ["kayaking", "rowing", "diving"]}
    assert client.get("/labels/vocabularies/nothing-here").status_code == 404
    body = client.post("/classify", data={"path": "clip.mp4", "vocabulary": "water-sports"}).json()
    assert sorted(body["timeline"]["labels"]) == ["diving", "kayaking", "rowing"]
    both = client.post("/classify", data={"path": "clip.mp4", "vocabulary": "water-sports", "labels": "a"})
    assert both.status_code == 400
    assert client.post("/classify", data={"path": "clip.mp4", "vocabulary": "nothing-here"}).status_code == 404


def test_progress_reports_queue_position_then_done(clf, media, tmp_path):
    gate = threading.Event()

    class Held:
        """The real classifier, whose classify waits for the test's signal."""

        def __getattr__(self, name):
            return getattr(clf, name)

        def classify(self, *args, **kwargs):
            gate.wait(20)
            return clf.classify(*args, **kwargs)

    app = create_app(models={"tiny": Held()}, media_root=media, temp_dir=tmp_path, workers=1, queue_size=2)
    with TestClient(app) as c:
        assert c.get("/progress/nobody").json() == {"request_id": "nobody", "stage": "unknown", "fraction": 0.0, "queue_position": None}
        results = {}
        threads = [
            threading.Thread(
                target=lambda rid=rid: results.__setitem__(rid, c.post("/classify", data={"path": "clip.mp4", "labels": "a, b", "request_id": rid}))
            )
            for rid in ("first", "second")
        ]
        threads[0].start()
        while c.get("/progress/first").json()["stage"] != "classifying":
            time.sleep(0.02)
        threads[1].start()
        while c.get("/progress/second").json()["stage"] != "queued":
            time.sleep(0.02)
        first, second = c.get("/progress/first").json(), c.get("/progress/second").json()
        assert first["queue_position"] is None and 0 < first["fraction"] < 1
        assert second == {"request_id": "second", "stage": "queued", "fraction": 0.0, "queue_position": 1}
        assert c.get("/health").json()["queue"] == {"running": 1, "waiting": 1, "capacity": 2}
        taken = c.post("/classify", data={"path": "clip.mp4", "labels": "a", "request_id": "second"})
        assert taken.status_code == 409
        gate.set()
        for t in threads:
            t.join(30)
        assert results["first"].status_code == results["second"].status_code == 200
        assert results["second"].json()["request_id"] == "second"
        assert c.get("/progress/second").json() == {"request_id": "second", "stage": "done", "fraction": 1.0, "queue_position": None}


def test_labels_box_parsing_and_cleaning(client, media):
    assert parse_labels_text("playing guitar, yoga ,, dog barking") == ["playing guitar", "yoga", "dog barking"]
    assert parse_labels_text("a, b\n# a comment\n\n  c  d \r\n") == ["a, b", "c d"]  # several lines: commas are kept
    body = client.post("/classify", data={"path": "clip.mp4", "labels": "Yoga\nyoga\n juggling "}).json()
    assert sorted(body["timeline"]["labels"]) == ["Yoga", "juggling"]
    assert any("duplicate label 'yoga'" in w for w in body["warnings"])
    bad = client.post("/classify", data={"path": "clip.mp4", "labels": "a", "frames": "many"})
    assert bad.status_code == 400 and bad.json()["detail"] == "frames must be an integer, got 'many'"
    assert client.post("/classify", data={"path": "clip.mp4", "labels": "a", "views": "4x2"}).status_code == 400
    assert client.post("/classify", data={"path": "clip.mp4", "labels": "a", "colour": "red"}).status_code == 400
    neither = client.post("/classify", files={"labels": (None, "a")})
    assert neither.status_code == 400 and "exactly one of 'file'" in neither.json()["detail"]


def test_serve_command_answers_health_and_stops_on_sigterm(tiny_model_dir, media, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    cmd = [
        sys.executable,
        "-m",
        "openvocab.cli",
        "serve",
        "--model",
        f"tiny={tiny_model_dir}",
        "--port",
        str(port),
        "--media-root",
        str(media),
        "--no-label-bank",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, health = time.monotonic() + 120, None
        while health is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    health = r.read().decode()
            except OSError:
                time.sleep(0.2)
        assert health is not None and '"models":["tiny"]' in health, proc.stderr.read() if proc.poll() is not None else "no answer"
        spools = list(tmp_path.glob("openvocab-serve-*"))
        assert len(spools) == 1  # the server's private upload folder
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and f"http://127.0.0.1:{port}" in err and "GET /health 200" in err
    assert not spools[0].exists()  # removed at shutdown


def test_serve_command_options_warning_and_errors(cli, tiny_model_dir, media, monkeypatch, tmp_path):
    import uvicorn

    started: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.update(app=app, **kwargs))
    monkeypatch.delenv("OPENVOCAB_TOKEN", raising=False)
    code, _, err = cli("serve", "--model", str(tiny_model_dir), "--model", f"b={tiny_model_dir}", "--host", "0.0.0.0", "--port", "8123", "--no-label-bank")
    assert code == 0 and (started["host"], started["port"]) == ("0.0.0.0", 8123)
    warnings = [line for line in err.splitlines() if "without a token" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: serving on 0.0.0.0 without a token")
    with TestClient(started["app"]) as c:
        assert c.get("/health").json()["models"] == ["tiny", "b"]  # a bare path is named by its last component
    monkeypatch.setenv("OPENVOCAB_TOKEN", "from-env")
    code, _, err = cli("serve", "--model", str(tiny_model_dir), "--host", "0.0.0.0", "--max-upload-mb", "1", "--media-root", str(media), "--no-label-bank")
    assert code == 0 and "without a token" not in err and "token: on" in err
    with TestClient(started["app"]) as c:
        assert c.post("/classify", data={"path": "clip.mp4", "labels": "a"}).status_code == 401
        ok = c.post("/classify", data={"path": "clip.mp4", "labels": "a"}, headers={"Authorization": "Bearer from-env"})
        assert ok.status_code == 200 and ok.json()["path"] == "clip.mp4"
    code, _, err = cli("serve", "--model", str(tiny_model_dir), "--media-root", str(tmp_path / "nowhere"))
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ") and "not a directory" in err
    code, _, err = cli("serve", "--model", f"x={tiny_model_dir}", "--model", f"x={tiny_model_dir}")
    assert code == 2 and "two models named 'x'" in err
