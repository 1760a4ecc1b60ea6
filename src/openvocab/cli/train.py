"""``openvocab train``: train a video recogniser from a YAML recipe (Text4Vis and later recipes)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from openvocab.cli.common import progress_bars, setup_logging

# registered by openvocab.cli with these settings: extra arguments are the recipe's section.key=value overrides
CONTEXT_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": False}


def train(
    recipe: Optional[Path] = typer.Argument(None, help="YAML recipe (configs/...); omit to use the defaults."),
    overrides: Optional[list[str]] = typer.Argument(None, help="section.key=value overrides, e.g. optim.lr=1e-4 data.batch_size=4"),
) -> None:
    """Train a video recogniser (Text4Vis: CLIP vision tower + temporal module + frozen text classifier).

    Example: openvocab train configs/text4vis/synth_tiny.yaml run.out=runs/synth optim.epochs=3

    Re-running the same command resumes from the run directory's latest checkpoint (its newest intact one, with a
    warning, when the latest is damaged).
    """
    setup_logging(False)
    logging.getLogger("openvocab").setLevel(logging.INFO)
    from openvocab.train.config import load_config
    from openvocab.train.trainer import train as run_training

    cfg = load_config(recipe, list(overrides or []))
    with progress_bars(enabled=cfg.run.progress) as bars:
        bar = bars.fraction("training")
        result = run_training(cfg, progress=lambda step, total, loss: bar(step, total, None if loss is None else f"loss {loss:.4f}"))
    print(json.dumps(result, indent=2))
