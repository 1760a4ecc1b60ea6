"""Loading errors a new user meets: a mistyped local path, and a hub id on a machine without network.

The network is never touched: "no network" is a closed port on 127.0.0.1 given as ``HF_ENDPOINT``.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from pathlib import Path

import pytest

from openvocab.errors import ModelLoadError
from openvocab.models.backbone import ClipBackbone
from openvocab.text.tokenizer import hub_unreachable, load_tokenizer, looks_like_local_path


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


@pytest.fixture
def closed_port() -> int:
    """A localhost port with nothing listening (bound once, then released): connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, closed_port: int) -> None:
    """Offline mode NOT requested (the case that used to retry for ~30 s), hub endpoint unreachable, empty cache."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


@pytest.mark.parametrize("kind", ["dot", "absolute", "home", "existing_parent"])
def test_missing_local_path_says_it_does_not_exist(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    name = {
        "dot": "./models/clip",
        "absolute": str(tmp_path / "data" / "clip"),
        "home": "~/openvocab-no-such-dir-7f3a/clip",
        "existing_parent": "models/clip",  # hub-id shaped, but ./models exists: meant as a path
    }[kind]
    assert looks_like_local_path(name)
    for load in (ClipBackbone.from_pretrained, load_tokenizer):
        with pytest.raises(ModelLoadError) as err:
            load(name)
        msg = _one_line(err.value)
        assert "does not exist" in msg and "not found" in msg
        assert "pass a local model directory instead" not in msg
    if kind == "existing_parent":
        assert "'models' exists" in msg


def test_hub_shaped_names_are_not_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert not looks_like_local_path("openai/clip-vit-base-patch32")
    assert not looks_like_local_path("clip-vit-base-patch32")


def test_hub_id_without_network_fails_fast_with_download_advice(no_network: None) -> None:
    name = "openvocab-test/not-a-cached-model"
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError) as err:
        ClipBackbone.from_pretrained(name)
    elapsed = time.perf_counter() - t0
    msg = _one_line(err.value)
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert f"hf download {name} --local-dir DIR" in msg and "cannot be reached" in msg
    assert "huggingface-cli" not in msg


def test_tokenizer_for_hub_id_without_network_fails_fast(no_network: None) -> None:
    name = "openvocab-test/not-a-cached-model"
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError) as err:
        load_tokenizer(name)
    assert time.perf_counter() - t0 < 10
    msg = _one_line(err.value)
    assert f"hf download {name} --local-dir DIR" in msg and "cannot be reached" in msg


def test_probe_times_out_on_a_silent_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts the connection but never answers (a dead proxy) is 'unreachable' after the timeout."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        t0 = time.perf_counter()
        reason = hub_unreachable("a/b", timeout=0.5)
        elapsed = time.perf_counter() - t0
    assert reason is not None and elapsed < 5


def test_probe_counts_any_http_answer_as_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 404 (unknown model) or 401 (gated) is the hub answering: the normal loader then runs and explains."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert hub_unreachable("a/b", timeout=2.0) is None
    finally:
        server.shutdown()
        server.server_close()
