"""Shared fixtures: frame-numbered synthetic videos and the real clips in ../shared/data.

A frame-numbered video draws its frame index in base 4 as ``CODE_DIGITS`` vertical bands of four gray levels
(0, 85, 170, 255); the bands are large and flat, so the index survives lossy codecs (x264, mpeg4, VP9, GIF
palettes) and downscaling, and :func:`read_frame_index` recovers it from the band centres.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from openvocab.io.encode import write_video

CODE_DIGITS = 5  # indices up to 4**5 - 1 = 1023
GRAY_LEVELS = np.array([0, 85, 170, 255], dtype=np.float64)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def index_frame(index: int, width: int, height: int) -> np.ndarray:
    """An (H, W, 3) uint8 frame whose vertical bands spell ``index`` in base 4 (most significant digit left)."""
    frame = np.zeros((height, width, 3), np.uint8)
    edges = np.linspace(0, width, CODE_DIGITS + 1).round().astype(int)
    for d in range(CODE_DIGITS):
        digit = (index // 4 ** (CODE_DIGITS - 1 - d)) % 4
        frame[:, edges[d] : edges[d + 1]] = int(GRAY_LEVELS[digit])
    return frame


def read_frame_index(frame: np.ndarray) -> int:
    """Recover the index drawn by :func:`index_frame` (any size, tolerant to codec noise)."""
    height, width = frame.shape[:2]
    gray = frame.astype(np.float64).mean(axis=2)
    edges = np.linspace(0, width, CODE_DIGITS + 1)
    value = 0
    for d in range(CODE_DIGITS):
        lo, hi = edges[d], edges[d + 1]
        pad = (hi - lo) / 4
        band = gray[height // 4 : height - height // 4 or None, int(lo + pad) : max(int(hi - pad), int(lo + pad) + 1)]
        digit = int(np.abs(GRAY_LEVELS - band.mean()).argmin())
        value = value * 4 + digit
    return value


def frame_indices(frames: np.ndarray) -> list[int]:
    """Decoded index of every frame in a (K, H, W, 3) batch."""
    return [read_frame_index(f) for f in frames]


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_video("clip.mp4", num_frames=30, size=(96, 64), fps=25, **write_video_kwargs) -> Path``.

    Frames are frame-numbered (see :func:`index_frame`); the file goes in ``tmp_path`` (sub-dirs allowed).
    """

    def make(name: str = "clip.mp4", num_frames: int = 30, *, size: tuple[int, int] = (96, 64), **kwargs) -> Path:
        width, height = size
        frames = np.stack([index_frame(i, width, height) for i in range(num_frames)])
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_video(path, frames, **kwargs)

    return make


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` next to the repository (real clips, see its manifest.csv); skips when absent."""
    if not (SHARED_DATA / "manifest.csv").is_file():
        pytest.skip("../shared/data not present (a fresh clone): real-clip tests skipped")
    return SHARED_DATA


@pytest.fixture
def frame_code():
    """The frame-number code as a fixture (``.index_frame``, ``.read_frame_index``, ``.frame_indices``), so test
    modules need not import conftest."""
    from types import SimpleNamespace

    return SimpleNamespace(index_frame=index_frame, read_frame_index=read_frame_index, frame_indices=frame_indices)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-weight CLIP of the 'tiny' architecture (real tokenizer, 224 px input), written once per session."""
    from openvocab.models.create import create_model_dir

    return create_model_dir("tiny", tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    """A random-weight T5 of the 't5-tiny' architecture (offline SentencePiece tokenizer, 100 sentinels), written once."""
    from openvocab.models.create import create_model_dir

    return create_model_dir("t5-tiny", tmp_path_factory.mktemp("models") / "t5-tiny")


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches(tmp_path_factory):
    """Keep tests away from the user's ~/.cache/openvocab and from the network."""
    import os

    old = {k: os.environ.get(k) for k in ("OPENVOCAB_CACHE", "HF_HUB_OFFLINE")}
    os.environ["OPENVOCAB_CACHE"] = str(tmp_path_factory.mktemp("openvocab_cache"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: two OpenMP threads on a shared, busy machine spin far longer than they compute (measured 25x)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``openvocab ARGS...`` in-process as the entry point does: ``(exit code, stdout, stderr)``; never a traceback."""
    import sys

    from openvocab.cli import main

    def call(*args):
        monkeypatch.setattr(sys, "argv", ["openvocab", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return exc.value.code, out, err

    return call
