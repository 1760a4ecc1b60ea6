"""Multi-label calibration (multi-label paper §3.3, §4.6): the Platt fit against scikit-learn and its optimality
conditions, the max-min-F1 threshold against a brute-force search, the JSON file (round trip, atomic write, bad
files), the defaults and where a model's calibration is found."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score

from openvocab.calibration import (
    CALIBRATION_FILE,
    SOURCE_HEURISTIC,
    SOURCE_TRAINED,
    Calibration,
    DatasetFit,
    calibration_of,
    default_calibration,
)
from openvocab.errors import InputError
from openvocab.eval.calibrate import PLATT_C, LabelledCosines, calibration_pairs, fit_calibration, fit_platt
from openvocab.eval.metrics import mean_average_precision
from openvocab.eval.multilabel import multilabel_metrics


def _dataset(seed: int, *, n: int = 30, views: int = 2, classes: int = 5, signal: float = 0.08, offset: float = 0.2) -> LabelledCosines:
    """Cosines ``(N, V, C)`` around ``offset`` where positives sit ``signal`` higher (noisy, not separable)."""
    rng = np.random.default_rng(seed)
    targets = rng.random((n, classes)) < 0.3
    targets[np.arange(n), rng.integers(0, classes, n)] = True  # every video has a label
    cos = offset + signal * targets[:, None, :] + 0.05 * rng.standard_normal((n, views, classes))
    return LabelledCosines(name=f"set{seed}", cosines=torch.tensor(cos, dtype=torch.float32), targets=targets, class_names=[f"c{i}" for i in range(classes)])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_platt_fit_is_sklearns_logistic_regression_on_every_view_label_pair_and_its_optimum():
    datasets = [_dataset(0), _dataset(1, n=20, views=2, classes=7, signal=0.12, offset=0.15)]
    cal = fit_calibration(datasets)
    # the same pairs built by hand: every (video, view, class) of both datasets, a view carrying its video's labels
    x = np.concatenate([d.cosines.double().numpy().reshape(-1) for d in datasets])
    y = np.concatenate([np.repeat(d.targets[:, None, :], d.cosines.shape[1], axis=1).reshape(-1) for d in datasets])
    xs, ys = calibration_pairs(datasets)
    np.testing.assert_array_equal(xs, x)
    np.testing.assert_array_equal(ys, y)
    ref = LogisticRegression(C=PLATT_C, solver="lbfgs", max_iter=1000, tol=1e-10).fit(x[:, None], y)
    assert cal.scale == pytest.approx(float(ref.coef_[0, 0]), rel=1e-6)
    assert cal.bias == pytest.approx(float(ref.intercept_[0]), rel=1e-6, abs=1e-9)
    assert fit_platt(x, y) == pytest.approx((cal.scale, cal.bias))
    # independently of scikit-learn: the gradient of the penalised log-likelihood vanishes at (a, b)
    p = _sigmoid(cal.scale * x + cal.bias)
    grad_a = np.sum((p - y) * x) + cal.scale / PLATT_C
    grad_b = np.sum(p - y)
    assert abs(grad_a) < 1e-3 * np.sum(np.abs(x)) and abs(grad_b) < 1e-3 * x.size
    assert cal.scale > 0 and cal.fitted and [d.name for d in cal.datasets] == ["set0", "set1"]


def test_threshold_maximises_the_minimum_f1_over_the_datasets_by_brute_force():
    datasets = [_dataset(2, signal=0.10), _dataset(3, n=25, classes=6, signal=0.04, offset=0.25)]
    cal = fit_calibration(datasets)
    scores = [d.scores(cal) for d in datasets]
    # the scores are σ(a·cos + b) per view, averaged over views
    for d, s in zip(datasets, scores):
        np.testing.assert_allclose(s, _sigmoid(cal.scale * d.cosines.double().numpy() + cal.bias).mean(axis=1), rtol=1e-5, atol=1e-6)
    candidates = np.unique(np.concatenate([s.ravel() for s in scores]))
    worst = [min(f1_score(d.targets.ravel(), (s >= t).ravel()) for d, s in zip(datasets, scores)) for t in candidates]
    best = max(worst)
    assert min(f1_score(d.targets.ravel(), (s >= cal.threshold).ravel()) for d, s in zip(datasets, scores)) == pytest.approx(best, abs=1e-12)
    assert cal.threshold == pytest.approx(max(t for t, w in zip(candidates, worst) if w == best)), "ties: the highest threshold"
    for d, s, fit in zip(datasets, scores, cal.datasets):
        assert fit.f1 == pytest.approx(f1_score(d.targets.ravel(), (s >= cal.threshold).ravel()), abs=1e-12)
        assert fit.aupr == pytest.approx(average_precision_score(d.targets.ravel(), s.ravel()), abs=1e-12)
        peak = max(f1_score(d.targets.ravel(), (s >= t).ravel()) for t in np.unique(s))
        assert fit.peak_f1 == pytest.approx(peak, abs=1e-12)
        assert (fit.videos, fit.classes, fit.positives) == (d.targets.shape[0], d.targets.shape[1], int(d.targets.sum()))


def test_a_model_whose_cosine_ranks_negatives_higher_is_refused():
    d = _dataset(4)
    flipped = LabelledCosines(name="flipped", cosines=-d.cosines, targets=d.targets, class_names=d.class_names)
    with pytest.raises(InputError, match="not positive"):
        fit_calibration([flipped])
    with pytest.raises(InputError, match="positive and negative"):
        fit_platt(np.zeros(4), np.ones(4))


def test_multilabel_metrics_match_sklearn():
    d = _dataset(5)
    s = d.cosines.mean(1).numpy()
    m = multilabel_metrics(s, d.targets, threshold=0.25)
    assert m["aupr"] == pytest.approx(average_precision_score(d.targets.ravel(), s.ravel()), abs=1e-12)
    per_class = [average_precision_score(d.targets[:, c], s[:, c]) for c in range(s.shape[1]) if d.targets[:, c].any()]
    assert m["map"] == pytest.approx(np.mean(per_class), abs=1e-12) == pytest.approx(mean_average_precision(s, d.targets))
    assert m["f1"] == pytest.approx(f1_score(d.targets.ravel(), (s >= 0.25).ravel()), abs=1e-12)
    assert f1_score(d.targets.ravel(), (s >= m["peak_threshold"]).ravel()) == pytest.approx(m["peak_f1"], abs=1e-12)


def _fitted() -> Calibration:
    fit = DatasetFit(name="a.csv", videos=10, classes=4, positives=13, aupr=0.5, peak_f1=0.6, peak_threshold=0.41, f1=0.55)
    return Calibration(
        scale=61.5, bias=-17.25, threshold=0.375, source="test", model="runs/x", created="2025-01-01T00:00:00Z", frames=8, views="1x1", datasets=(fit,)
    )


def test_json_round_trip_and_atomic_write(tmp_path, monkeypatch):
    cal = _fitted()
    path = cal.write(tmp_path / "cal.json")
    data = json.loads(path.read_text())
    assert data["format"] == "openvocab-calibration" and data["version"] == 1
    assert (data["scale"], data["bias"], data["threshold"]) == (61.5, -17.25, 0.375)
    assert data["datasets"][0]["f1"] == 0.55
    assert Calibration.read(path) == cal
    assert cal.write(tmp_path) == tmp_path / CALIBRATION_FILE and Calibration.read(tmp_path) == cal  # a folder gets calibration.json
    # a write that fails half-way leaves the old file whole and no temporary file behind
    import openvocab.atomic

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(openvocab.atomic.os, "replace", boom)
    with pytest.raises(InputError, match="cannot write the calibration"):
        cal.with_threshold(0.9).write(path)
    monkeypatch.undo()
    assert Calibration.read(path).threshold == 0.375
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cal.json", CALIBRATION_FILE])


@pytest.mark.parametrize(
    "text,why",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"scale": 1.0, "bias": 0.0}', "missing threshold"),
        ('{"scale": -1.0, "bias": 0.0, "threshold": 0.5}', "scale must be >= 0"),
        ('{"scale": 1.0, "bias": 0.0, "threshold": 1.5}', "threshold must be in"),
        ('{"scale": "x", "bias": 0.0, "threshold": 0.5}', "finite number"),
        ('{"format": "other", "scale": 1.0, "bias": 0.0, "threshold": 0.5}', "format"),
        ('{"scale": 1.0, "bias": 0.0, "threshold": 0.5, "datasets": [{"name": "a"}]}', "not a valid calibration file"),
    ],
)
def test_bad_calibration_files_are_one_line_errors(tmp_path, text, why):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(InputError, match=why) as exc:
        Calibration.read(bad)
    assert str(bad) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(InputError, match="no such calibration file"):
        Calibration.read(tmp_path / "missing.json")


def test_defaults_and_where_a_models_calibration_comes_from(tmp_path):
    trained = default_calibration(logit_scale=1 / 0.07, trained_multi_label=True)
    assert (trained.scale, trained.bias, trained.threshold, trained.source) == (pytest.approx(1 / 0.07), 0.0, 0.5, SOURCE_TRAINED)
    heuristic = default_calibration(logit_scale=100.0, trained_multi_label=False)
    assert (heuristic.scale, heuristic.bias, heuristic.threshold, heuristic.source) == (100.0, -25.0, 0.5, SOURCE_HEURISTIC)
    assert not trained.fitted and not heuristic.fitted

    def recognizer(run_dir=None, multi=False):
        return SimpleNamespace(run_dir=run_dir, source=run_dir, logit_scale=50.0, spec=SimpleNamespace(head=SimpleNamespace(multi_label=multi)))

    assert calibration_of(recognizer(multi=True)) == default_calibration(logit_scale=50.0, trained_multi_label=True)
    assert calibration_of(recognizer(str(tmp_path))) == default_calibration(logit_scale=50.0, trained_multi_label=False)  # no file yet
    _fitted().write(tmp_path / CALIBRATION_FILE)
    assert calibration_of(recognizer(str(tmp_path))) == _fitted()
    other = _fitted().with_threshold(0.7).write(tmp_path / "other.json")
    assert calibration_of(recognizer(str(tmp_path)), other).threshold == 0.7  # an explicit file wins
    assert _fitted().summary() == {"source": "test", "scale": 61.5, "bias": -17.25, "threshold": 0.375}
