"""`openvocab calibrate`, `classify --multi-label` and multi-label `evaluate` end to end on the tiny random CLIP.

A random model knows nothing, so the multi-label datasets are labelled FROM the model's own cosines (a pair is
positive when its cosine is high): the calibration then has something to find, and every number is checked
against a reference computed in the test (scikit-learn, a brute-force threshold search, σ(a·cos + b) recomputed
from the embeddings)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score

import openvocab
from openvocab.calibration import SOURCE_HEURISTIC, SOURCE_TRAINED, Calibration
from openvocab.data.manifests import read_manifest
from openvocab.data.synth import SynthSpec, generate
from openvocab.eval.calibrate import PLATT_C
from openvocab.eval.run import class_embeddings, video_embeddings
from openvocab.io.sampling import SamplerSpec
from openvocab.models.factory import load_recognizer
from openvocab.scoring import similarity_logits

FRAMES = 4
SAMPLER = SamplerSpec(frames=FRAMES)
VOCAB_A = ["red", "blue", "green", "circle", "square", "moving left"]
VOCAB_B = ["dog barking", "playing guitar", "yoga", "surfing", "juggling"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    spec = SynthSpec(
        shapes=("circle", "square"),
        colours=("red", "blue", "green"),
        motions=("left",),
        label_factors=("colour", "shape"),
        clips_per_class=2,
        frames=FRAMES,
        size=48,
        novel_fraction=0.0,
        val_fraction=0.0,
        test_fraction=0.0,
    )
    root = generate(spec, tmp_path_factory.mktemp("synth_ml"), seed=3)
    return sorted(root.glob("videos/*/*.mp4"))


def _cosines(model_source, manifest_path: Path, *, multi_label: bool = True):
    """What calibrate / evaluate compute: per-view cosines ``(N, V, C)`` of the manifest's videos with its classes."""
    model = load_recognizer(model_source).eval()
    m = read_manifest(manifest_path)
    v, t, index = video_embeddings(model, m, sampler=SAMPLER, workers=0, multi_label=multi_label)
    cos = similarity_logits(v, class_embeddings(model, m.class_names()), logit_scale=1.0)
    return cos.double().numpy(), t.numpy() > 0.5, m


def _write_manifest(path: Path, rows: list[tuple[str, list[str]]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "labels"])
        for video, labels in rows:
            w.writerow([video, "|".join(labels)])
    return path


def labelled_by_the_model(model_source, videos: list[Path], vocab: list[str], path: Path) -> Path:
    """A multi-label manifest whose positives are each video's best class plus every pair above the 60th
    percentile of all its cosines (so a higher cosine means a likelier label, though not perfectly)."""
    probe = _write_manifest(path.with_suffix(".probe.csv"), [(str(v), list(vocab)) for v in videos])
    cos, _, m = _cosines(model_source, probe)
    names = m.classes  # sorted vocabulary
    c = cos[:, 0, :]
    cut = np.quantile(c, 0.6)
    rows = []
    for v, row in zip(videos, c):
        keep = {int(row.argmax())} | {j for j in range(len(names)) if row[j] > cut}
        rows.append((str(v), [names[j] for j in sorted(keep)]))
    return _write_manifest(path, rows)


@pytest.fixture(scope="module")
def datasets(videos, tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ml_manifests")
    a = labelled_by_the_model(tiny_model_dir, videos[:6], VOCAB_A, folder / "a.csv")
    b = labelled_by_the_model(tiny_model_dir, videos[6:], VOCAB_B, folder / "b.csv")
    broken = folder / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 20)
    with b.open("a") as fh:  # a video that cannot be decoded: reported and skipped
        fh.write(f"{broken},yoga\n")
    return a, b


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _valid_png(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
        return path.read_bytes()[:8] == PNG and image.format == "PNG" and min(image.size) > 100


def _max_min_f1(sets):
    candidates = np.unique(np.concatenate([s.ravel() for s, _ in sets]))
    worst = [min(f1_score(t.ravel(), (s >= c).ravel()) for s, t in sets) for c in candidates]
    return max(worst)


@pytest.fixture(scope="module")
def saved(datasets, tiny_model_dir, tmp_path_factory):
    """`openvocab calibrate` of the tiny CLIP on both datasets, saved with --save (it is not a run)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("calibration")
    args = [sys.executable, "-m", "openvocab.cli", "calibrate", "--model", str(tiny_model_dir), str(datasets[0]), str(datasets[1])]
    args += ["--frames", str(FRAMES), "--workers", "0", "--save", str(out / "cal.json"), "--plots", str(out / "plots")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    return done, out / "cal.json", out / "plots"


def test_calibrate_fits_platt_and_the_max_min_f1_threshold(saved, datasets, tiny_model_dir):
    done, path, plots = saved
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    cal = Calibration.read(path)
    # the table: one row per dataset with AUPR, peak F1 @ oracle threshold, F1 @ the chosen threshold
    for fit in cal.datasets:
        assert Path(fit.name).name in done.stdout and f"{fit.f1:.4f}" in done.stdout and f"{fit.aupr:.4f}" in done.stdout
    assert "1 of 7 videos could not be decoded" in done.stderr and "broken.mp4" in done.stderr
    assert f"saved the calibration to {path}" in done.stderr
    # Platt scaling = scikit-learn's logistic regression on the same (view, label) pairs
    sets = [_cosines(tiny_model_dir, d) for d in datasets]
    x = np.concatenate([c.reshape(-1) for c, _, _ in sets])
    y = np.concatenate([np.broadcast_to(t[:, None, :], c.shape).reshape(-1) for c, t, _ in sets])
    ref = LogisticRegression(C=PLATT_C, solver="lbfgs", max_iter=1000, tol=1e-10).fit(x[:, None], y)
    assert cal.scale == pytest.approx(float(ref.coef_[0, 0]), rel=1e-4) and cal.scale > 0
    assert cal.bias == pytest.approx(float(ref.intercept_[0]), rel=1e-4, abs=1e-6)
    # the threshold: the brute-force maximum over thresholds of the minimum F1 of the two datasets
    scored = [(_sigmoid(cal.scale * c + cal.bias).mean(axis=1), t) for c, t, _ in sets]
    # (the threshold IS one of calibrate's scores; recomputed here in another process, that pair may land a rounding
    # error below it, so it is compared 1e-6 below)
    assert min(f1_score(t.ravel(), (s >= cal.threshold - 1e-6).ravel()) for s, t in scored) == pytest.approx(_max_min_f1(scored), abs=1e-6)
    for fit, (s, t) in zip(cal.datasets, scored):
        assert fit.aupr == pytest.approx(average_precision_score(t.ravel(), s.ravel()), abs=1e-6)
    assert (cal.frames, cal.views, cal.model) == (FRAMES, "1x1", str(tiny_model_dir)) and cal.created
    assert [fit.videos for fit in cal.datasets] == [6, 6]
    for name in ("f1_threshold.png", "precision_recall.png"):
        assert _valid_png(plots / name)


def test_classify_multi_label_applies_the_saved_calibration(cli, saved, videos, tiny_model_dir, tmp_path):
    _, path, _ = saved
    cal = Calibration.read(path)
    labels = VOCAB_A
    clip = str(videos[0])
    code, out, err = cli(
        "classify", clip, "--labels", ", ".join(labels), "--model", str(tiny_model_dir), "--frames", str(FRAMES),
        "--multi-label", "--calibration", str(path), "--format", "json", "--top-k", str(len(labels)), "--segments", "1", "-q",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)[0]
    assert result["threshold"] == cal.threshold
    assert result["calibration"] == {"source": cal.source, "scale": cal.scale, "bias": cal.bias, "threshold": cal.threshold}
    scores = {ls["label"]: ls["score"] for ls in result["labels"]}
    assert sorted(result["predicted"]) == sorted(lab for lab, s in scores.items() if s >= cal.threshold)
    # the score is σ(a·cos + b), recomputed from the classifier's embeddings
    clf = openvocab.load(tiny_model_dir, label_bank=False, calibration=path)
    assert clf.calibration == cal
    emb = clf.embed_video(clip, sampler=SAMPLER)
    cos = similarity_logits(clf.pool(emb.frames), clf.label_embeddings(labels), logit_scale=1.0)  # (1, 1, L)
    expected = torch.sigmoid(cal.scale * cos + cal.bias).mean(dim=(0, 1))
    for label, e in zip(labels, expected.tolist()):
        assert scores[label] == pytest.approx(e, abs=1e-5)
    # the one segment covers every frame: scored with the same calibration, it equals the clip
    seg = {ls["label"]: ls["score"] for ls in result["segments"][0]["labels"]}
    assert seg == pytest.approx(scores, abs=1e-5)

    # an explicit --threshold wins over the calibrated one
    code, out, err = cli(
        "classify", clip, "--labels", ", ".join(labels), "--model", str(tiny_model_dir), "--frames", str(FRAMES),
        "--multi-label", "--calibration", str(path), "--threshold", "0", "--format", "json", "-q",
    )  # fmt: skip
    assert code == 0, err
    r = json.loads(out)[0]
    assert r["threshold"] == 0.0 and sorted(r["predicted"]) == sorted(labels) and r["calibration"]["threshold"] == cal.threshold

    # without a calibration: the named, uncalibrated default (a = logit_scale, b = -0.25 logit_scale), and a warning
    code, out, err = cli(
        "classify", clip, "--labels", ", ".join(labels), "--model", str(tiny_model_dir), "--frames", str(FRAMES), "--multi-label", "--format", "json"
    )
    assert code == 0, err
    r = json.loads(out)[0]
    assert r["calibration"]["source"] == SOURCE_HEURISTIC and r["threshold"] == 0.5
    assert r["calibration"]["bias"] == pytest.approx(-0.25 * clf.logit_scale) and r["calibration"]["scale"] == pytest.approx(clf.logit_scale)
    assert "not calibrated" in err


def test_missing_or_corrupt_calibration_is_one_line(cli, videos, datasets, tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"scale": 3.0, "bias": ')
    for path, why in ((tmp_path / "none.json", "no such calibration file"), (bad, "not a valid calibration file")):
        code, out, err = cli("classify", str(videos[0]), "--labels", "a, b", "--model", str(tiny_model_dir), "--multi-label", "--calibration", str(path))
        assert code != 0 and out == ""
        assert len(err.strip().splitlines()) == 1 and why in err and str(path) in err
    code, _, err = cli("evaluate", str(datasets[0]), "--model", str(tiny_model_dir), "--calibration", str(bad))
    assert code != 0 and "not a valid calibration file" in err


def test_calibrate_refuses_without_a_place_to_save_and_explains_bad_manifests(cli, datasets, tiny_model_dir, tmp_path):
    code, _, err = cli("calibrate", "--model", str(tiny_model_dir), str(datasets[0]))
    assert code == 2 and "--save PATH is required" in err and len(err.strip().splitlines()) == 1
    empty = tmp_path / "empty.csv"
    empty.write_text(f"path,labels\n{datasets[0]},\n{datasets[1]},\n")
    code, _, err = cli("calibrate", "--model", str(tiny_model_dir), str(empty), "--save", str(tmp_path / "c.json"), "-q")
    assert code == 2 and "no usable videos" in err and "missing label" in err
    assert not (tmp_path / "c.json").exists()


def test_evaluate_multi_label_numbers_equal_sklearn(cli, saved, datasets, tiny_model_dir, tmp_path):
    _, path, _ = saved
    cal = Calibration.read(path)
    code, out, err = cli(
        "evaluate", str(datasets[0]), "--model", str(tiny_model_dir), "--frames", str(FRAMES), "--workers", "0",
        "--calibration", str(path), "--plots", str(tmp_path / "plots"),
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    ml = result["result"]["multi_label"]
    assert result["multi_label"] and result["calibration"]["threshold"] == cal.threshold
    cos, targets, _ = _cosines(tiny_model_dir, datasets[0])
    scores = _sigmoid(cal.scale * cos + cal.bias).mean(axis=1)
    assert ml["aupr"] == pytest.approx(average_precision_score(targets.ravel(), scores.ravel()), abs=1e-6)
    per_class = [average_precision_score(targets[:, c], scores[:, c]) for c in range(targets.shape[1]) if targets[:, c].any()]
    assert ml["map"] == pytest.approx(float(np.mean(per_class)), abs=1e-6)
    assert ml["threshold"] == cal.threshold and ml["f1"] == pytest.approx(f1_score(targets.ravel(), (scores >= cal.threshold).ravel()), abs=1e-6)
    assert ml["peak_f1"] == pytest.approx(max(f1_score(targets.ravel(), (scores >= t).ravel()) for t in np.unique(scores)), abs=1e-6)
    for name in ("f1_threshold.png", "precision_recall.png", "class_correlation.png"):
        assert _valid_png(tmp_path / "plots" / name)
    # --multi-label on a single-label manifest: one-hot targets, the same metrics
    single = _write_manifest(tmp_path / "single.csv", [(row["path"], [lab]) for row, lab in zip(csv.DictReader(datasets[0].open()), VOCAB_A)])
    code, out, err = cli("evaluate", str(single), "--model", str(tiny_model_dir), "--frames", str(FRAMES), "--workers", "0", "--multi-label")
    assert code == 0, err
    result = json.loads(out)
    assert result["multi_label"] and result["calibration"]["source"] == SOURCE_HEURISTIC and 0.0 <= result["result"]["multi_label"]["aupr"] <= 1.0


def test_a_run_trained_multi_label_saves_into_its_directory(cli, videos, datasets, tmp_path):
    from openvocab.train.config import load_config
    from openvocab.train.trainer import train

    run = tmp_path / "run"
    recipe = load_config(
        None,
        [
            "model.model=random:tiny",
            "model.classifier=text",
            "optim.loss=bce",
            f"data.train={datasets[0]}",
            "data.val=null",
            f"run.out={run}",
            "run.progress=false",
            "run.max_steps=1",
            f"data.frames={FRAMES}",
            "data.batch_size=4",
            "data.workers=0",
        ],
    )
    train(recipe)
    clip = str(videos[0])
    args = ("classify", clip, "--labels", ", ".join(VOCAB_A), "--model", str(run), "--frames", str(FRAMES), "--multi-label", "--format", "json", "-q")
    code, out, err = cli(*args)
    assert code == 0, err
    before = json.loads(out)[0]
    model = load_recognizer(run)
    assert model.spec.head.multi_label
    assert before["calibration"] == {"source": SOURCE_TRAINED, "scale": pytest.approx(model.logit_scale), "bias": 0.0, "threshold": 0.5}
    manifest = labelled_by_the_model(run, videos, VOCAB_A, tmp_path / "run_val.csv")
    code, out, err = cli("calibrate", "--model", str(run), str(manifest), "--frames", str(FRAMES), "--workers", "0", "--json", "-q")
    assert code == 0, err
    saved = Calibration.read(run / "calibration.json")
    assert json.loads(out)["threshold"] == saved.threshold and saved.fitted
    code, out, err = cli(*args)
    after = json.loads(out)[0]
    assert after["threshold"] == saved.threshold and after["calibration"]["source"] == saved.source
    assert openvocab.load(run, label_bank=False).calibration == saved
