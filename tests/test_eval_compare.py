"""Per-class accuracy gains of one run over another (MOV §4.5, Fig. 3): hand-computed gains on a tiny pair of
predictions CSVs, refusal of CSVs that cover different videos, the bar chart, and `openvocab evaluate --baseline`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openvocab.errors import InputError
from openvocab.eval.compare import ClassGain, class_gains, gain_report, per_class_accuracy, read_predictions, summarise_gains

pytest.importorskip("matplotlib")

from openvocab.eval.plots import plot_class_gains  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADER = "path,labels,predicted,score\n"
# ours: yawning 3/3, long jump 1/2, geocaching 0/2, sloshing water 1/1 (a multi-label row: hit when either is predicted)
OURS = (
    "/v/1.mp4,yawning,yawning,0.9\n"
    "/v/2.mp4,yawning,yawning,0.8\n"
    "/v/3.mp4,yawning,yawning,0.7\n"
    "/v/4.mp4,long jump,long jump,0.6\n"
    "/v/5.mp4,long jump,yawning,0.5\n"
    "/v/6.mp4,geocaching,yawning,0.4\n"
    "/v/7.mp4,geocaching,long jump,0.3\n"
    '"/v/8, with comma.mp4",sloshing water|wind noise,wind noise,0.2\n'
)
# baseline: yawning 1/3, long jump 1/2, geocaching 2/2, sloshing water 0/1 (rows in another order)
BASE = (
    '"/v/8, with comma.mp4",sloshing water|wind noise,geocaching,0.2\n'
    "/v/7.mp4,geocaching,geocaching,0.3\n"
    "/v/6.mp4,geocaching,geocaching,0.4\n"
    "/v/5.mp4,long jump,long jump,0.5\n"
    "/v/4.mp4,long jump,yawning,0.6\n"
    "/v/3.mp4,yawning,long jump,0.7\n"
    "/v/2.mp4,yawning,long jump,0.8\n"
    "/v/1.mp4,yawning,yawning,0.9\n"
)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "ours.csv").write_text(HEADER + OURS)
    (tmp_path / "base.csv").write_text(HEADER + BASE)
    return tmp_path / "ours.csv", tmp_path / "base.csv"


def test_per_class_accuracy_and_gains_by_hand(pair) -> None:
    ours, base = pair
    assert per_class_accuracy(ours) == {
        "geocaching": (0, 2),
        "long jump": (1, 2),
        "sloshing water": (1, 1),
        "wind noise": (1, 1),
        "yawning": (3, 3),
    }
    gains = class_gains(ours, base)
    assert [g.name for g in gains] == ["sloshing water", "wind noise", "yawning", "long jump", "geocaching"]
    expected = {
        "sloshing water": (1.0, 0.0, 1.0),
        "wind noise": (1.0, 0.0, 1.0),
        "yawning": (1.0, 1 / 3, 2 / 3),
        "long jump": (0.5, 0.5, 0.0),
        "geocaching": (0.0, 1.0, -1.0),
    }
    for g in gains:
        assert isinstance(g, ClassGain) and g == pytest.approx((g.name, *expected[g.name]))
        assert tuple(g) == (g.name, g.ours, g.baseline, g.gain)  # a plain (class, acc_ours, acc_base, gain) tuple
    summary = summarise_gains(gains)
    assert summary == {"classes": 5, "improved": 3, "worse": 1, "unchanged": 1, "mean_gain": pytest.approx((1 + 1 + 2 / 3 + 0 - 1) / 5)}
    reverse = class_gains(base, ours)
    assert {g.name: g.gain for g in reverse} == pytest.approx({g.name: -g.gain for g in gains})
    assert [g.name for g in reverse] == ["geocaching", "long jump", "yawning", "sloshing water", "wind noise"]  # ties by name


def test_mismatched_or_malformed_csvs_are_refused(pair, tmp_path: Path) -> None:
    ours, base = pair
    (tmp_path / "fewer.csv").write_text(HEADER + BASE.replace("/v/7.mp4,geocaching,geocaching,0.3\n", ""))
    with pytest.raises(InputError) as exc:
        class_gains(ours, tmp_path / "fewer.csv")
    assert str(exc.value) == (
        f"{ours} and {tmp_path / 'fewer.csv'} cover different videos (1 rows only in ours, 0 only in the baseline; "
        "e.g. /v/7.mp4 in ours): evaluate both on the same data"
    )
    (tmp_path / "relabelled.csv").write_text(HEADER + BASE.replace("/v/7.mp4,geocaching,", "/v/7.mp4,yawning,"))
    with pytest.raises(InputError, match="cover different videos"):
        class_gains(ours, tmp_path / "relabelled.csv")
    (tmp_path / "header.csv").write_text("video,label\n/v/1.mp4,yawning\n")
    with pytest.raises(InputError, match="header.csv: not a predictions CSV: the header needs path, labels, predicted"):
        read_predictions(tmp_path / "header.csv")
    (tmp_path / "short.csv").write_text(HEADER + "/v/1.mp4,yawning\n")
    with pytest.raises(InputError, match="short.csv: line 2: expected 4 columns, got 2"):
        read_predictions(tmp_path / "short.csv")
    (tmp_path / "empty.csv").write_text(HEADER)
    with pytest.raises(InputError, match="has no rows"):
        per_class_accuracy(tmp_path / "empty.csv")
    with pytest.raises(InputError, match="cannot read the predictions CSV"):
        read_predictions(tmp_path / "missing.csv")


def test_gain_plot_is_a_valid_png(pair, tmp_path: Path) -> None:
    ours, base = pair
    report = gain_report(ours, base, plot=tmp_path / "figs" / "gains.png", top=2)
    assert report["improved"] == 3 and report["worse"] == 1 and report["plot"] == str(tmp_path / "figs" / "gains.png")
    many = [(f"class {i}", 0.5, 0.5 - (i - 30) / 100, (i - 30) / 100) for i in range(60)]
    unchanged = [("a", 0.5, 0.5, 0.0)]
    for path in (plot_class_gains(many, tmp_path / "many.png"), plot_class_gains(unchanged, tmp_path / "none.png")):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    data = (tmp_path / "figs" / "gains.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.csv", "figs", "many.png", "none.png", "ours.csv"]  # no temporary files
    with pytest.raises(InputError, match="top must be a positive integer"):
        plot_class_gains(many, tmp_path / "x.png", top=0)


# ---------------------------------------------------------------------- openvocab evaluate --baseline
def test_evaluate_bad_gain_options_give_one_error_line(cli, tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label\nx.mp4,a\n")
    code, out, err = cli("evaluate", str(tmp_path / "m.csv"), "--gain-plot", str(tmp_path / "g.png"))
    assert code == 2 and out == "" and err.strip() == "error: --gain-plot needs --baseline (the predictions CSV to compare against)"
    code, out, err = cli("evaluate", str(tmp_path / "m.csv"), "--baseline", str(tmp_path / "nope.csv"))
    assert code == 2 and out == "" and err.strip().startswith(f"error: {tmp_path / 'nope.csv'}: cannot read the predictions CSV")
    assert len(err.strip().splitlines()) == 1


def test_evaluate_against_a_baseline(cli, tmp_path: Path, tiny_model_dir: Path) -> None:
    from openvocab.data.synth import SynthSpec, generate

    spec = SynthSpec(shapes=("circle",), colours=("red", "blue"), motions=("left",), label_factors=("colour",), clips_per_class=2, frames=2, size=32)
    spec = SynthSpec(**{**spec.__dict__, "novel_fraction": 0.0, "val_fraction": 0.0, "test_fraction": 0.5})
    synth = generate(spec, tmp_path / "synth", seed=0)
    test = [row.split(",") for row in (synth / "test.csv").read_text().splitlines()[1:]]
    assert len(test) == 2
    # a baseline that is always right: every class's gain is (our accuracy - 1), so mean_gain = mean-class accuracy - 1
    rows = "".join(f"{(synth / r[0]).absolute()},{r[1]},{r[1]},1.0\n" for r in test)
    (tmp_path / "oracle.csv").write_text(HEADER + rows)
    args = [str(synth / "test.csv"), "--model", str(tiny_model_dir), "--frames", "2", "--workers", "0"]
    code, out, err = cli("evaluate", *args, "--baseline", str(tmp_path / "oracle.csv"), "--gain-plot", str(tmp_path / "gains.png"))
    assert code == 0, err
    result = json.loads(out)
    gains = result["class_gains"]
    assert gains["improved"] == 0 and gains["worse"] + gains["unchanged"] == gains["classes"] == 2
    assert gains["mean_gain"] == pytest.approx(result["result"]["mean_class_accuracy"] - 1.0)
    assert gains["plot"] == str(tmp_path / "gains.png") and (tmp_path / "gains.png").read_bytes().startswith(PNG_MAGIC)
