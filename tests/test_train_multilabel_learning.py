"""The open-vocabulary multi-label system learns, end to end through the real CLI (issue 9's learning test).

Known-answer data: ``openvocab data synth --multi-label`` clips show one to three objects at once, labelled with every
shape, colour ("red object") and motion ("moving left") they show. The recipe is ``configs/multilabel/synth_tiny.yaml``
as a user runs it (paths overridden): tiny random-weight CLIP and T5, the learnable LLM label encoder (§3.1), the
regularised parallel temporal branch (§3.2) and the multi-label loss (§3.3). Proved here:

* trained AUPR on held-out clips is clearly above the untrained model (zero-shot CLIP with class-name prompts, the
  first baseline of Table 1) -- whose AUPR is the base rate of positive pairs (a random tower knows nothing);
* ``openvocab calibrate`` on the validation split picks a threshold whose test F1 is within a few points of the
  oracle's peak F1 (§4.6), saved with the run;
* ``openvocab classify --multi-label`` with the run applies that threshold and says so in its JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "multilabel" / "synth_tiny.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from openvocab.data.synth_multilabel import MultiLabelSpec, generate_multilabel

    spec = MultiLabelSpec(train_clips=120, val_clips=32, test_clips=40, novel_clips=0)
    return generate_multilabel(spec, tmp_path_factory.mktemp("ml") / "synth", seed=0)


def _json(cli, *args) -> dict:
    code, out, err = cli(*args)
    assert code == 0, err
    return json.loads(out)


def test_multilabel_system_learns_calibrates_and_classifies(cli, synth, tiny_t5_dir, tmp_path, shared_data):
    test = str(synth / "test.jsonl")
    baseline = _json(cli, "evaluate", test, "--model", "random:tiny", "--prompts", "classname", "--multi-label", "--workers", "0")
    base_rate = baseline["result"]["multi_label"]["positives"] / (baseline["videos"] * baseline["classes"])

    run = tmp_path / "run"
    code, out, err = cli(
        "train",
        str(RECIPE),
        f"data.train={synth / 'train.jsonl'}",
        f"data.val={synth / 'val.jsonl'}",
        f"model.llm={tiny_t5_dir}",
        f"run.out={run}",
        "run.progress=false",
        "run.eval_every_epochs=100",
    )
    assert code == 0, err
    cal = _json(cli, "calibrate", str(synth / "val.jsonl"), "--model", str(run), "--json", "-q")
    assert (run / "calibration.json").is_file() and 0.0 < cal["threshold"] < 1.0
    trained = _json(cli, "evaluate", test, "--model", str(run), "--multi-label", "--workers", "0")
    ml, zero = trained["result"]["multi_label"], baseline["result"]["multi_label"]
    assert zero["aupr"] < base_rate + 0.06, (zero, base_rate)  # the untrained model: about the base rate
    assert ml["aupr"] > zero["aupr"] + 0.08, (ml, zero)  # measured 0.5x vs 0.4x
    assert ml["threshold"] == pytest.approx(cal["threshold"])
    assert ml["f1"] > ml["peak_f1"] - 0.06, ml  # the calibrated threshold is close to the oracle's

    result = _json(
        cli,
        "classify",
        str(shared_data / "videos" / "yoga.mp4"),
        "--model",
        str(run),
        "--labels",
        "circle, red object, moving left, juggling",
        "--multi-label",
        "--format",
        "json",
        "--no-label-bank",
    )
    first = result[0] if isinstance(result, list) else result
    assert first["threshold"] == pytest.approx(cal["threshold"])
    assert first["calibration"]["threshold"] == pytest.approx(cal["threshold"])
    assert set(first["predicted"]) == {s["label"] for s in first["labels"] if s["score"] >= cal["threshold"]}
