"""Plots: valid PNG files, and the class-correlation matrix (Text4Vis Fig. 1 / A.5) against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from openvocab.eval.plots import (
    class_correlation,
    plot_class_correlation,
    plot_confusion_matrix,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_class_correlation_equals_numpy():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(7, 16)) * rng.uniform(0.5, 3.0, size=(7, 1))
    ref = np.array([[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in e] for a in e])
    assert np.allclose(class_correlation(e), ref)
    assert np.allclose(class_correlation(torch.from_numpy(e).float()), ref, atol=1e-6)
    assert np.allclose(np.diag(class_correlation(e)), 1.0)


def test_plots_write_valid_pngs(tmp_path):
    rng = np.random.default_rng(1)
    cm = rng.integers(0, 10, (60, 60))
    cm[3] = 0  # an empty row must not divide by zero
    names = [f"class {i}" for i in range(60)]
    out = plot_confusion_matrix(cm, names, tmp_path / "cm.png", max_classes=20)
    small = plot_confusion_matrix(cm[:5, :5], names[:5], tmp_path / "sub" / "cm5.png", normalise=False)
    corr = plot_class_correlation(rng.normal(size=(30, 8)), names[:30], tmp_path / "corr.png", max_classes=10)
    for path in (out, small, corr):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png", "corr.png", "sub"]  # no temporary files left
