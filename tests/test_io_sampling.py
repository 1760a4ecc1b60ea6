"""Temporal samplers: exact indices of the Text4Vis (uniform segments) and MOV/SlowFast (dense clips) formulas."""

from __future__ import annotations

import numpy as np
import pytest

from openvocab.errors import InputError
from openvocab.io.sampling import (
    SamplerSpec,
    dense_clip,
    dense_multiclip,
    parse_views,
    sample_indices,
    uniform_multiclip,
    uniform_segments,
)


@pytest.mark.parametrize(
    ("n", "t", "expected"),
    [
        (10, 4, [0, 3, 5, 8]),  # tick 2.5, offset 0.75
        (300, 8, [18, 55, 93, 130, 168, 205, 243, 280]),  # tick 37.5, offset 18.25
        (8, 8, [0, 1, 2, 3, 4, 5, 6, 7]),
        (5, 8, [0, 0, 1, 1, 2, 3, 3, 4]),  # N < T: i*N//T repeats frames
        (1, 4, [0, 0, 0, 0]),
        (9, 1, [4]),
        (10, 1, [4]),  # int((10 - 1) / 2)
    ],
)
def test_uniform_segments_test_mode(n: int, t: int, expected: list[int]) -> None:
    got = uniform_segments(n, t)
    assert got.dtype == np.int64
    assert got.tolist() == expected


@pytest.mark.parametrize(("n", "t"), [(10, 4), (3, 8), (1, 5), (300, 8), (17, 16)])
def test_uniform_segments_train_stays_in_its_segment(n: int, t: int) -> None:
    rng = np.random.default_rng(0)
    lo = np.arange(t) * n // t
    hi = np.maximum((np.arange(t) + 1) * n // t, lo + 1)  # empty segment -> its start frame
    seen = set()
    for _ in range(200):
        got = uniform_segments(n, t, train=True, rng=rng)
        assert got.dtype == np.int64 and got.shape == (t,)
        assert np.all(got >= lo) and np.all(got < hi) and np.all(got < n)
        seen.add(tuple(got.tolist()))
    if n > t:
        assert len(seen) > 1  # actually random
    assert uniform_segments(10, 4, train=True, rng=3).tolist() == uniform_segments(10, 4, train=True, rng=3).tolist()


def test_uniform_multiclip_text4vis_formula() -> None:
    # tick 2.5, starts linspace(0, 1.5, 3) -> [0, 0.75, 1.5] -> [0, 0, 1]
    assert uniform_multiclip(10, 4, 3).tolist() == [[0, 2, 5, 7], [0, 2, 5, 7], [1, 3, 6, 8]]
    # tick 37.5, starts linspace(0, 36.5, 4) -> [0, 12, 24, 36]
    assert uniform_multiclip(300, 8, 4).tolist() == [
        [0, 37, 75, 112, 150, 187, 225, 262],
        [12, 49, 87, 124, 162, 199, 237, 274],
        [24, 61, 99, 136, 174, 211, 249, 286],
        [36, 73, 111, 148, 186, 223, 261, 298],
    ]
    # N < T: tick 0.5, starts truncate toward zero (NumPy 1.x linspace) -> all 0
    assert uniform_multiclip(4, 8, 3).tolist() == [[0, 0, 1, 1, 2, 2, 3, 3]] * 3
    assert uniform_multiclip(1, 4, 2).tolist() == [[0, 0, 0, 0]] * 2
    single = uniform_multiclip(300, 8, 1)
    assert single.shape == (1, 8) and single[0].tolist() == uniform_segments(300, 8).tolist()
    assert uniform_multiclip(300, 8, 4).dtype == np.int64


def test_dense_clip_test_mode() -> None:
    # span = 15*4+1 = 61, start = (100-61)//2 = 19
    assert dense_clip(100, 16, 4).tolist() == list(range(19, 80, 4))
    # shorter than the span: start 0 and the clip loops modulo N
    assert dense_clip(30, 16, 4).tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 2, 6, 10, 14, 18, 22, 26, 0]
    assert dense_clip(1, 8, 2).tolist() == [0] * 8
    assert dense_clip(61, 16, 4).tolist() == list(range(0, 61, 4))
    assert dense_clip(100, 16, 4).dtype == np.int64


def test_dense_clip_train_mode() -> None:
    rng = np.random.default_rng(1)
    starts = set()
    for _ in range(300):
        got = dense_clip(100, 16, 4, train=True, rng=rng)
        assert 0 <= got[0] <= 39 and np.all(np.diff(got) == 4)
        starts.add(int(got[0]))
    assert {0, 39} <= starts  # both ends of [0, N - span] are reachable
    assert dense_clip(30, 16, 4, train=True, rng=rng).tolist() == dense_clip(30, 16, 4).tolist()


def test_dense_multiclip_spreads_clips() -> None:
    # delta = 39, starts round(k*39/3) = 0, 13, 26, 39
    got = dense_multiclip(100, 16, 4, 4)
    assert got.shape == (4, 16) and got.dtype == np.int64
    assert got[:, 0].tolist() == [0, 13, 26, 39]
    assert np.all(np.diff(got, axis=1) == 4)
    # delta = 1, k*1/2 = 0, 0.5, 1 -> 0, 1, 1 (half rounds up)
    assert dense_multiclip(62, 16, 4, 3)[:, 0].tolist() == [0, 1, 1]
    assert dense_multiclip(100, 16, 4, 1).tolist() == [dense_clip(100, 16, 4).tolist()]
    assert dense_multiclip(30, 16, 4, 2).tolist() == [dense_clip(30, 16, 4).tolist()] * 2
    assert dense_multiclip(1, 4, 4, 3).tolist() == [[0, 0, 0, 0]] * 3


@pytest.mark.parametrize(
    "call",
    [
        lambda: uniform_segments(0, 8),
        lambda: uniform_segments(10, 0),
        lambda: uniform_segments(10, 2.5),
        lambda: uniform_multiclip(10, 4, 0),
        lambda: dense_clip(10, 16, 0),
        lambda: dense_multiclip(-1, 16, 4, 2),
        lambda: uniform_segments(True, 4),
    ],
)
def test_bad_arguments_raise_input_error(call) -> None:
    with pytest.raises(InputError):
        call()


def test_sampler_spec_validation_and_views() -> None:
    spec = SamplerSpec()
    assert (spec.kind, spec.frames, spec.stride, spec.temporal_views, spec.spatial_crops) == ("uniform", 8, 4, 1, 1)
    assert SamplerSpec(temporal_views=4, spatial_crops=3).views == "4x3"
    for bad in (
        {"kind": "random"},
        {"frames": 0},
        {"stride": -1},
        {"temporal_views": 0},
        {"spatial_crops": 2},
        {"frames": 8.0},
        {"frames": True},
    ):
        with pytest.raises(InputError):
            SamplerSpec(**bad)
    assert parse_views("4x3") == (4, 3)
    assert parse_views(" 10 X 1 ") == (10, 1)
    assert parse_views("2") == (2, 1)
    for bad in ("4x2", "x3", "0x1", "four", ""):
        with pytest.raises(InputError):
            parse_views(bad)


def test_sample_indices_dispatch() -> None:
    uni = SamplerSpec(kind="uniform", frames=8, temporal_views=4)
    assert sample_indices(uni, 300).tolist() == uniform_multiclip(300, 8, 4).tolist()
    dense = SamplerSpec(kind="dense", frames=16, stride=4, temporal_views=4)
    assert sample_indices(dense, 100).tolist() == dense_multiclip(100, 16, 4, 4).tolist()
    one = sample_indices(SamplerSpec(frames=8), 300)
    assert one.shape == (1, 8) and one.dtype == np.int64
    train = sample_indices(dense, 100, train=True, rng=0)
    assert train.shape == (4, 16) and np.all(np.diff(train, axis=1) == 4)
    train_u = sample_indices(uni, 1, train=True, rng=0)
    assert train_u.tolist() == [[0] * 8] * 4
    with pytest.raises(InputError):
        sample_indices(uni, 0)
