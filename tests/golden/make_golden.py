"""Write the golden outputs that tests/test_golden.py checks the code against (issue 7: behaviour preserved).

Run ONCE with the code from before the refactor (commit d43e9c0), from the repository root:

    PYTHONPATH=<old checkout>/src python tests/golden/make_golden.py

It trains three tiny seeded runs on a synthetic set (written as run directories in the old format under
tests/golden/runs/), then records ``classify`` results (random:vit-b-32 and the runs) on the real clips of
../shared/data/videos and ``evaluate`` metrics of the runs on a manifest of those clips. The run directories are
committed: they are also the fixture proving that run directories written by the old code keep loading.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data"
LABELS = ["playing guitar", "yoga", "dog barking", "arm wrestling", "sign language", "applauding", "cricket shot"]
RUNS = {
    # name: overrides of configs/text4vis/synth_tiny.yaml
    "text_ttrans_t1d": {"model.classifier": "text", "model.temporal": "ttrans", "model.temporal_layers": "1", "model.token_t1d_blocks": "[0]"},
    "sentence_tap": {"model.classifier": "sentence"},
    "orthogonal_tap": {"model.classifier": "orthogonal"},
}


def videos() -> list[str]:
    return sorted(str(p) for p in (SHARED / "videos").iterdir() if p.suffix in {".mp4", ".avi", ".mkv", ".gif"})


def shared_manifest(out: Path) -> Path:
    """The video rows of ../shared/data/manifest.csv as an openvocab manifest (path,label)."""
    rows = [r for r in csv.DictReader(open(SHARED / "manifest.csv")) if r["path"].startswith("videos/") and "flow" not in r["path"]]
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for r in rows:
            w.writerow([str(SHARED / r["path"]), r["label"]])
    return out


def main() -> None:
    import torch

    from openvocab.data.synth import SynthSpec, generate
    from openvocab.train.config import load_config
    from openvocab.train.trainer import train

    torch.set_num_threads(2)
    os.environ["OPENVOCAB_CACHE"] = tempfile.mkdtemp()
    recipe = HERE.parents[1] / "configs" / "text4vis" / "synth_tiny.yaml"
    synth = generate(
        SynthSpec(
            shapes=("circle", "square"),
            colours=("red", "blue"),
            motions=("left",),
            label_factors=("colour", "shape"),
            clips_per_class=4,
            frames=4,
            size=48,
            novel_fraction=0.0,
        ),
        Path(tempfile.mkdtemp()) / "synth",
        seed=7,
    )
    runs_dir = HERE / "runs"
    shutil.rmtree(runs_dir, ignore_errors=True)
    for name, extra in RUNS.items():
        overrides = {
            "data.train": str(synth / "train.csv"),
            "data.val": "null",
            "run.out": str(runs_dir / name),
            "run.progress": "false",
            "run.keep_last": "1",
            "model.prompts": "single",
            "data.frames": "4",
            "data.batch_size": "4",
            "data.workers": "0",
            "optim.epochs": "2",
            "optim.warmup_epochs": "0",
            "optim.lr": "3e-3",
            **extra,
        }
        train(load_config(recipe, [f"{k}={v}" for k, v in overrides.items()]))
    golden = {"labels": LABELS, "classify": {}, "evaluate": {}}
    import openvocab

    clips = videos()
    clf = openvocab.load("random:vit-b-32", label_bank=False)
    golden["classify"]["random:vit-b-32 1x1"] = [r.to_dict() for r in clf.classify(clips, LABELS)]
    golden["classify"]["random:vit-b-32 2x3"] = [r.to_dict() for r in clf.classify(clips[:2], LABELS, views="2x3")]
    for name in RUNS:
        run = runs_dir / name
        clf = openvocab.load(run, label_bank=False)
        labels = LABELS if name != "orthogonal_tap" else clf.class_names
        golden["classify"][f"{name} 1x1"] = [r.to_dict() for r in clf.classify(clips, labels, frames=4)]
        golden["classify"][f"{name} 2x3"] = [r.to_dict() for r in clf.classify(clips[:3], labels, frames=4, views="2x3")]
    from openvocab.data.manifests import read_manifest
    from openvocab.eval.run import evaluate
    from openvocab.io.sampling import SamplerSpec

    manifest = read_manifest(shared_manifest(Path(tempfile.mkdtemp()) / "shared.csv"))
    for name in ("text_ttrans_t1d", "sentence_tap"):
        res = evaluate(model_source=str(runs_dir / name), manifest=manifest, sampler=SamplerSpec(frames=4), workers=0)
        golden["evaluate"][name] = res["result"]
    (HERE / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    print("wrote", HERE / "golden.json", file=sys.stderr)


if __name__ == "__main__":
    main()
