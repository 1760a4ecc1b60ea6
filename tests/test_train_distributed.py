"""DDP (torchrun, gloo) and gradient accumulation give the same weights as one process on the whole batch."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from openvocab.data.synth import SynthSpec, generate

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "text4vis" / "synth_tiny.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    spec = SynthSpec(
        shapes=("circle", "square"),
        colours=("red", "blue"),
        motions=("left",),
        label_factors=("colour", "shape"),
        clips_per_class=5,
        frames=4,
        size=48,
        novel_fraction=0.0,
        val_fraction=0.0,
        test_fraction=0.0,
    )
    return generate(spec, tmp_path_factory.mktemp("synth_ddp"), seed=3)


def _args(synth: Path, out: Path, batch: int, accumulation: int = 1) -> list[str]:
    return [
        str(RECIPE),
        f"data.train={synth / 'train.csv'}",
        "data.val=null",
        f"run.out={out}",
        "run.progress=false",
        "model.classifier=orthogonal",
        "data.frames=4",
        f"data.batch_size={batch}",
        "data.workers=0",
        "run.max_steps=3",
        f"optim.accumulation={accumulation}",
        "optim.warmup_epochs=0",
    ]


def _weights(out: Path) -> dict:
    return load_file(str(out / (out / "latest").read_text().strip() / "model.safetensors"))


def _assert_same(a: dict, b: dict) -> None:
    # k_proj.bias cannot change attention (softmax is shift-invariant): its true gradient is 0, Adam turns the
    # float noise there into lr-sized steps, so it is no evidence either way
    trained = [
        k
        for k in a
        if k.startswith(("streams.rgb.backbone.clip.vision_model", "streams.rgb.backbone.clip.visual_projection")) and not k.endswith("k_proj.bias")
    ]
    assert trained
    # Adam also magnifies float noise wherever a gradient element is ~0 (seen once: 1 element of 196,608 off by 9e-5),
    # so: every element within a fraction of one lr-sized step (lr 1e-3), and all but a handful within 2e-5 -- a
    # wrong batch split or a missing all-reduce moves most elements by about lr
    off = total = 0
    for k in trained:
        diff = (a[k].float() - b[k].float()).abs()
        assert diff.max() < 3e-4, f"{k}: max difference {diff.max():.2e}"
        off += int((diff > 2e-5 + 2e-5 * b[k].float().abs()).sum())
        total += diff.numel()
    assert off <= max(3, total // 20000), f"{off} of {total} weights differ by more than 2e-5"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_accumulation_and_ddp_equal_one_big_batch(synth, tmp_path):
    run = lambda *a, **kw: subprocess.run(*a, capture_output=True, text=True, timeout=600, **kw)  # noqa: E731
    big = run([sys.executable, "-m", "openvocab.cli", "train", *_args(synth, tmp_path / "big", batch=4)])
    assert big.returncode == 0, big.stderr[-2000:]
    acc = run([sys.executable, "-m", "openvocab.cli", "train", *_args(synth, tmp_path / "acc", batch=2, accumulation=2)])
    assert acc.returncode == 0, acc.stderr[-2000:]
    _assert_same(_weights(tmp_path / "big"), _weights(tmp_path / "acc"))

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found next to the interpreter")
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    ddp = run(
        [
            torchrun,
            "--nproc_per_node=2",
            f"--master_port={_free_port()}",
            "--master_addr=127.0.0.1",
            "-m",
            "openvocab.cli",
            "train",
            *_args(synth, tmp_path / "ddp", batch=2),
        ],
        env=env,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    _assert_same(_weights(tmp_path / "big"), _weights(tmp_path / "ddp"))
