"""Helpers shared by the CLI modules (:mod:`openvocab.cli`, :mod:`openvocab.train.cli`): logging set-up, the one-line
error convention, atomic output, common option help texts."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

from openvocab.errors import InputError

DEFAULT_MODEL = os.environ.get("OPENVOCAB_MODEL", "openai/clip-vit-base-patch32")

MODEL_HELP = "Hub id or local model directory (env OPENVOCAB_MODEL sets the default)."
PROMPTS_HELP = "Prompt set: 'ensemble' (CLIP's 28 Kinetics templates), 'single', 'classname', or a templates file."


def print_error(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def setup_logging(quiet: bool) -> None:
    for level in (logging.INFO, logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.ERROR if quiet else logging.WARNING, stream=sys.stderr, force=True)
    for noisy in ("transformers", "huggingface_hub", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # openvocab shows its own progress; no per-shard bars on stderr
    hf_logging.set_verbosity_error()


def write_output(text: str, output: Optional[Path]) -> None:
    """Print, or write atomically so an existing file is never half-overwritten."""
    text = text if text.endswith("\n") else text + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    from openvocab.atomic import atomic_write

    try:
        atomic_write(output.expanduser(), text)
    except OSError as exc:
        raise InputError(f"cannot write results ({exc.strerror or exc})", path=output) from None
