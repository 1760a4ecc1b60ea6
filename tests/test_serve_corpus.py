"""The reliability corpus (``tests/reliability_corpus.py``) through ``openvocab serve`` (issue 10 part 6): every case
posted as an upload (when a client could send its bytes) and read in place through ``path=`` under the media root.

Each case gets its documented result from the table below, the same for both routes: a classified case answers 200
with the decoder's warning when the corpus documents one; an input that is not a video by its content answers 415
before FFmpeg sees it; a video container that cannot be decoded answers 422 with the library's one line; a FIFO, a
broken link or a folder is refused in path mode. No reply leaks a server path, and no upload is left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import openvocab
from openvocab.serve import create_app
from reliability_corpus import build_corpus

pytest.importorskip("httpx2", reason="FastAPI's TestClient needs httpx2")
from starlette.testclient import TestClient  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: status code of each corpus error case (classified and warning cases answer 200)
ERROR_STATUS = {
    "truncated_moov_at_end_mp4": 422,  # an mp4 header, no index: FFmpeg's own verdict
    "zero_byte_mp4": 422,
    "audio_only_mp4": 422,
    "text_as_mp4": 415,  # not a video by its first bytes
    "png_as_mp4": 415,
    "wav_as_mp4": 415,  # RIFF, but WAVE, not AVI
    "random_64_bytes_mp4": 415,
    "random_64_bytes_cdg": 415,
    "fifo_mp4": 400,  # path mode only: never opened for reading
    "dangling_link_mp4": 404,
    "link_cycle_mp4": 404,
}
#: the reply's one line for the 415 cases (the 422 cases carry the corpus's own detail)
NOT_A_VIDEO = "not a video by its content"
#: the media-root checks answer these before the decoder sees the file (and say no more about the server's disk)
PATH_DETAIL = {"fifo_mp4": "not a regular file", "dangling_link_mp4": "no such file in the media root", "link_cycle_mp4": "cannot be opened"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("corpus")
    return root, build_corpus(root)


@pytest.fixture(scope="module")
def client(corpus, tiny_model_dir, tmp_path_factory):
    root, _ = corpus
    spool = tmp_path_factory.mktemp("spool")
    app = create_app(models={"tiny": openvocab.load(tiny_model_dir, label_bank=False)}, media_root=root, temp_dir=spool)
    with TestClient(app) as c:
        yield c
    assert not any(spool.iterdir()), "an upload temp file was left behind"


def _check(case, response, root: Path) -> None:
    body = response.json()
    assert str(root) not in response.text, "a server path leaked into the reply"
    if case.outcome in ("classified", "warning"):
        assert response.status_code == 200, (case.name, response.text)
        assert body["error"] is None and len(body["labels"]) == 2 and body["path"] == case.path.name
        warned = [w for w in body["warnings"] if "timeline has" not in w]
        if case.outcome == "warning":
            assert any(case.detail in w for w in warned), (case.name, body["warnings"])
        else:
            assert warned == [], (case.name, warned)
        assert len(body["thumbnails"]) == len(body["segments"]) >= 1
        return
    assert response.status_code == ERROR_STATUS[case.name], (case.name, response.status_code, response.text)
    detail = body["detail"]
    assert "\n" not in detail and "Traceback" not in detail
    expected = NOT_A_VIDEO if response.status_code == 415 else PATH_DETAIL.get(case.name, case.detail)
    assert detail.startswith(f"{case.path.name}: ") and expected in detail, (case.name, detail)


def test_every_case_by_upload(corpus, client):
    root, cases = corpus
    posted = 0
    for case in cases:
        if not case.uploadable or case.folder:
            continue
        with open(case.path, "rb") as f:
            response = client.post("/classify", files={"file": (case.path.name, f, "video/mp4")}, data={"labels": "a, b", "frames": "4"})
        _check(case, response, root)
        posted += 1
    assert posted >= 20


def test_every_case_by_media_root_path(corpus, client):
    root, cases = corpus
    for case in cases:
        rel = os.path.relpath(case.path, root)
        response = client.post("/classify", data={"path": rel, "labels": "a, b", "frames": "4"})
        if case.folder:  # the server classifies one file per request
            assert response.status_code == 400 and "is a directory" in response.json()["detail"], (case.name, response.text)
            continue
        _check(case, response, root)


def test_the_error_table_names_only_corpus_cases(corpus):
    _, cases = corpus
    errors = {c.name for c in cases if c.outcome == "error"}
    assert set(ERROR_STATUS) == errors, "each corpus error case needs its documented status here"
