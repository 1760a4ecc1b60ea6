"""Browser test of the page of ``openvocab serve`` (issue 10, "Browser test" evidence).

The real server runs in a subprocess on 127.0.0.1 with a random-weight tiny model; Debian's Chromium, driven by
Playwright's Python API, opens the page, uploads a generated H.264 clip, types labels and classifies. The checks:
ranked bars with exactly the typed labels and percentages summing to 100 %, a labels × segments timeline whose cells
hold the response's scores and seek the video to their segment's start, thumbnails, literal text for a label holding
HTML, multi-label ticks at the threshold, and JSON / CSV downloads equal to what the CLI writes.

A missing browser or Playwright FAILS this test with the reason (the issue requires that it is not skipped). The
screenshot goes to ``tmp_path``; with ``OPENVOCAB_SCREENSHOT=1`` it regenerates ``docs/serve.png`` (the README's).
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from openvocab.io.encode import write_video
from openvocab.results import CSV_COLUMNS, ClipResult, LabelScore, SegmentResult, to_csv

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("OPENVOCAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LABELS = ["red circle", "blue square", "green triangle", "<b>x</b>"]
SEGMENTS = 6
WAIT_MS = 60_000  # generous ceilings for a busy shared machine; nothing is timed

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------------ fixtures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """``openvocab serve`` on a free port of 127.0.0.1 (a real process); yields its base URL."""
    work = tmp_path_factory.mktemp("serve")
    port = _free_port()
    log = (work / "server.log").open("w+")
    cmd = [sys.executable, "-m", "openvocab", "serve", "--model", str(tiny_model_dir), "--port", str(port)]
    cmd += ["--label-bank", str(work / "labels.sqlite")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"openvocab serve exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                if _get_json(f"{url}/health").get("status") == "ok":
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"openvocab serve did not answer /health within 120 s:\n{log.read()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright; fails (never skips) with the reason when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"the browser test needs Playwright's Python package (pip install playwright): {exc}")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):  # pragma: no cover
        pytest.fail(f"the browser test needs Chromium at {CHROMIUM} (apt-get install chromium, or set OPENVOCAB_CHROMIUM)")
    with sync_playwright() as p:
        try:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as exc:  # pragma: no cover
            pytest.fail(f"Chromium at {CHROMIUM} did not start under Playwright: {exc}")
        yield chromium
        chromium.close()


def shapes_clip(path: Path, *, seconds: float = 2.4, fps: int = 25, size: tuple[int, int] = (192, 112)) -> Path:
    """An H.264 mp4 that Chromium plays: a red circle, then a blue square, then a green triangle, each moving."""
    width, height = size
    n = round(seconds * fps)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        frame = np.empty((height, width, 3), np.float32)
        frame[:] = (236 + 10 * yy[..., None] / height) * np.array([0.97, 0.98, 1.0], np.float32)
        part = 3 * i // n
        cx = 30 + (width - 60) * ((i * 3) % n) / n
        cy, r = height / 2, 26
        if part == 0:
            mask, colour = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2, (220, 40, 50)
        elif part == 1:
            mask, colour = (abs(xx - cx) <= r) & (abs(yy - cy) <= r), (40, 80, 220)
        else:
            mask, colour = (yy >= cy - r) & (yy <= cy + r) & (abs(xx - cx) <= (yy - (cy - r)) / 2), (30, 160, 70)
        frame[mask] = colour
        frames[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return write_video(path, frames, fps=fps, codec="libx264")


def post_classify(url: str, video: Path, form: dict[str, str]) -> dict:
    """POST /classify straight from Python (multipart by hand: no third-party client needed)."""
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for name, value in form.items():
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{video.name}"\r\n'.encode())
    body.write(b"Content-Type: video/mp4\r\n\r\n" + video.read_bytes() + f"\r\n--{boundary}--\r\n".encode())
    request = urllib.request.Request(f"{url}/classify", data=body.getvalue(), method="POST")
    request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def clip_result(data: dict) -> ClipResult:
    """The ClipResult a response describes (its extra keys dropped), to compare the page's CSV with the CLI's."""
    kept = {f.name: data[f.name] for f in fields(ClipResult) if f.name in data}
    kept["duration_s"] = float(data["duration_s"])  # JSON written by JavaScript has 2 where Python wrote 2.0
    kept["labels"] = [LabelScore(x["label"], float(x["score"])) for x in data["labels"]]
    kept["segments"] = [
        SegmentResult(float(s["start_s"]), float(s["end_s"]), [LabelScore(x["label"], float(x["score"])) for x in s["labels"]]) for s in data["segments"]
    ]
    return ClipResult(**kept)


def percent(text: str) -> float:
    assert text.endswith("%"), text
    return float(text.rstrip("% \u00a0"))


def download(page, testid: str) -> str:
    with page.expect_download() as info:
        page.get_by_test_id(testid).click()
    return Path(info.value.path()).read_text(encoding="utf-8")


def renders(page) -> int:
    """How many results the page has rendered (it counts them in ``data-renders`` of the results section)."""
    return int(page.evaluate("document.getElementById('results').dataset.renders || '0'"))


def classify_on_page(page) -> None:
    """Click Classify and wait until the page has rendered the new result."""
    before = renders(page)
    page.get_by_test_id("classify").click()
    page.wait_for_function("n => +(document.getElementById('results').dataset.renders || 0) > n", arg=before, timeout=WAIT_MS)


# ------------------------------------------------------------------------------------------------ the test


def test_page_classifies_an_upload_and_renders_bars_timeline_and_downloads(browser, server, tmp_path):
    video = shapes_clip(tmp_path / "shapes.mp4")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requests = []
    page.on("request", lambda r: requests.append(r))
    # Function predicates only: the page's Content-Security-Policy (script-src 'self') forbids Playwright's eval of
    # bare expressions, and the test keeps that policy on to show the page works under it.
    page.goto(server + "/")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=model-select] option').length > 0", timeout=WAIT_MS)

    # ---- single-label: upload, labels, options, classify
    page.get_by_test_id("file-input").set_input_files(str(video))
    page.get_by_test_id("labels-input").fill("\n".join(LABELS))
    page.get_by_test_id("segments-input").fill(str(SEGMENTS))
    classify_on_page(page)

    result = json.loads(download(page, "download-json"))
    assert result["path"] == video.name and not result["multi_label"]
    bars = page.get_by_test_id("bar")
    names = page.get_by_test_id("bar-label").all_text_contents()
    values = [percent(t) for t in page.get_by_test_id("bar-value").all_text_contents()]
    assert bars.count() == len(LABELS)
    assert sorted(names) == sorted(LABELS)  # exactly the typed labels, "<b>x</b>" as literal text
    assert names == [x["label"] for x in result["labels"]]  # in the server's ranked order
    assert values == sorted(values, reverse=True)
    assert abs(sum(values) - 100.0) < 0.05 * len(values) + 1e-9  # softmax: the rounded percents sum to 100 %
    assert values == pytest.approx([100 * x["score"] for x in result["labels"]], abs=0.05 + 1e-9)
    assert page.locator("[data-testid=bars] b, [data-testid=timeline] b").count() == 0  # no HTML from labels

    # ---- the upload reported its progress, and the page polled /progress with the id it sent
    assert page.get_by_test_id("upload-progress").evaluate("p => p.value") == 1
    polled = {r.url.rsplit("/", 1)[1] for r in requests if r.url.startswith(f"{server}/progress/")}
    assert len(polled) == 1  # one client-made id, polled from the start ...
    assert _get_json(f"{server}/progress/{polled.pop()}")["stage"] == "done"  # ... and sent with the upload

    # ---- timeline: labels x segments cells holding the response's scores, thumbnails under it
    segments = result["segments"]
    assert 1 <= len(segments) <= SEGMENTS
    assert page.get_by_test_id("timeline-label").all_text_contents() == result["timeline"]["labels"] == names
    cells = page.get_by_test_id("timeline-cell")
    assert cells.count() == len(LABELS) * len(segments)
    shown = page.eval_on_selector_all("[data-testid=timeline-cell]", "cs => cs.map(c => [+c.dataset.row, +c.dataset.col, +c.dataset.score, +c.dataset.start])")
    for row, col, score, start in shown:
        assert score == pytest.approx(result["timeline"]["scores"][row][col], abs=1e-9)
        assert start == pytest.approx(segments[col]["start_s"], abs=1e-9)
    assert page.get_by_test_id("thumbnail").count() == len(result["thumbnails"]) >= 1
    page.wait_for_function(  # every thumbnail decoded as an image
        "() => [...document.querySelectorAll('[data-testid=thumbnail]')].every(t => t.complete && t.naturalWidth > 0)",
        timeout=WAIT_MS,
    )

    # ---- the video plays the chosen file; a timeline cell seeks it to that segment's start
    state = page.wait_for_function(
        "() => { const v = document.querySelector('video'); return (v.readyState >= 1 || v.error) && "
        "{ready: v.readyState, error: v.error && v.error.code, src: v.currentSrc}; }",
        timeout=WAIT_MS,
    ).json_value()
    assert state["src"].startswith("blob:")
    col = len(segments) - 1
    target = segments[col]["start_s"]
    cells.nth(1 * len(segments) + col).click()
    video_state = page.evaluate("() => { const v = document.querySelector('video'); return [v.currentTime, v.dataset.seekRequest]; }")
    assert float(video_state[1]) == pytest.approx(target)
    if state["error"] is None:  # the browser plays H.264: the element itself moved
        assert video_state[0] == pytest.approx(target, abs=0.05)
        assert target > 0
    # keyboard: the focused cell moves with the arrow keys and Enter seeks too
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.activeElement.dataset.col") == str(col - 1)
    page.keyboard.press("Enter")
    assert float(page.evaluate("document.querySelector('video').dataset.seekRequest")) == pytest.approx(segments[col - 1]["start_s"])

    # ---- downloads: the CSV equals what `openvocab classify --format csv` writes for this result
    page_csv = download(page, "download-csv")
    assert next(csv.reader(io.StringIO(page_csv))) == list(CSV_COLUMNS)
    assert page_csv == to_csv([clip_result(result)])

    page.wait_for_function(  # the screenshot shows the frame seeked to, not a loading spinner
        "() => { const v = document.querySelector('video'); return (!v.seeking && v.readyState >= 2) || v.error; }",
        timeout=WAIT_MS,
    )
    assert page.locator("thead th.current").get_attribute("data-col") == str(col - 1)  # the column now playing
    page.evaluate("() => document.activeElement.blur()")
    page.mouse.move(0, 0)
    page.wait_for_timeout(600)  # cosmetic: let the player's loading spinner of the two quick seeks fade out
    shot = REPO / "docs" / "serve.png" if os.environ.get("OPENVOCAB_SCREENSHOT") else tmp_path / "serve.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # ---- multi-label: a threshold between the scores; labels at or above it are ticked and bold
    probe = post_classify(server, video, {"labels": "\n".join(LABELS), "multi_label": "true", "segments": str(SEGMENTS)})
    scores = sorted(x["score"] for x in probe["labels"])
    assert scores[1] < scores[2], f"the tiny model gave tied multi-label scores: {scores}"
    threshold = (scores[1] + scores[2]) / 2
    page.get_by_test_id("multi-label-toggle").check()
    page.get_by_test_id("threshold-input").fill(repr(threshold))
    classify_on_page(page)
    multi = json.loads(download(page, "download-json"))
    assert multi["multi_label"] and multi["threshold"] == pytest.approx(threshold)
    mode = page.get_by_test_id("mode")
    assert "multi-label" in mode.text_content() and "threshold" in mode.text_content()
    assert float(mode.get_attribute("data-threshold")) == pytest.approx(threshold)
    ticks = {}
    for i in range(page.get_by_test_id("bar").count()):
        bar = page.get_by_test_id("bar").nth(i)
        label = bar.get_by_test_id("bar-label").text_content()
        weight = bar.get_by_test_id("bar-label").evaluate("e => +getComputedStyle(e).fontWeight")
        ticks[label] = (bar.get_by_test_id("bar-tick").count() == 1, weight >= 700)
    expected = {x["label"]: x["score"] >= threshold for x in multi["labels"]}
    assert {label: tick for label, (tick, _) in ticks.items()} == expected
    assert {label: bold for label, (_, bold) in ticks.items()} == expected
    assert sum(expected.values()) == 2  # the threshold splits the four labels

    # ---- an error from the server is shown in the alert area
    page.get_by_test_id("multi-label-toggle").uncheck()
    page.get_by_test_id("labels-input").fill("")
    page.get_by_test_id("labels-input").fill(" ,  , ")
    page.get_by_test_id("classify").click()
    page.wait_for_function("() => !document.querySelector('[data-testid=alert]').hidden", timeout=WAIT_MS)
    alert = page.get_by_test_id("alert").text_content()
    assert alert.startswith("Error 422: ") and len(alert) > len("Error 422: ")  # with the server's one-line detail

    # ---- a file dropped on the drop zone becomes the chosen video
    dropped = page.evaluate_handle(
        "() => { const t = new DataTransfer(); t.items.add(new File([new Uint8Array(8)], 'dropped.webm', {type: 'video/webm'})); return t; }"
    )
    page.get_by_test_id("dropzone").dispatch_event("drop", {"dataTransfer": dropped})
    assert page.get_by_test_id("file-name").text_content().startswith("dropped.webm")
    assert page.get_by_test_id("file-input").evaluate("i => i.files[0].name") == "dropped.webm"

    assert errors == []  # no script errors
    outside = [r.url for r in requests if not r.url.startswith((server + "/", "blob:", "data:"))]
    assert outside == []  # nothing fetched from anywhere but the server
    context.close()
