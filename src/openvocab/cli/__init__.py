"""The ``openvocab`` command line, one module per command group:

- :mod:`~openvocab.cli.classify` -- ``classify`` (the main job);
- :mod:`~openvocab.cli.labels` -- ``labels add|list|export|remove|clear`` (the label bank); ``labels synthesize`` from
  :mod:`~openvocab.cli.labels_synthesize` (synthetic labels);
- :mod:`~openvocab.cli.model` -- ``model create|export|convert|info``;
- :mod:`~openvocab.cli.data` -- ``data synth|check``;
- :mod:`~openvocab.cli.flow` -- ``flow extract`` (precomputed optical flow, MOV §4.1);
- :mod:`~openvocab.cli.train`, :mod:`~openvocab.cli.evaluate`, :mod:`~openvocab.cli.features` -- ``train``,
  ``evaluate``, ``features extract|train-head``;
- :mod:`~openvocab.cli.calibrate` -- ``calibrate`` (multi-label scores and threshold, multi-label paper §4.6);
- :mod:`~openvocab.cli.serve` -- ``serve`` (the HTTP API and web page, :mod:`openvocab.serve`);
- :mod:`~openvocab.cli.common` -- shared options, logging, output, progress bars and :func:`run_app`.

Every user-caused failure prints one line (``error: <file>: <problem>``) and exits non-zero; batch commands carry on
past bad files, list them at the end and exit 1. This package is the only place that imports typer or a rich
console; heavy imports (torch, transformers, PyAV, the library's models) happen inside commands, so ``--help`` and
usage errors answer at once.
"""

from __future__ import annotations

import typer

from openvocab.cli import calibrate as _calibrate
from openvocab.cli import classify as _classify
from openvocab.cli import evaluate as _evaluate
from openvocab.cli import labels_synthesize as _labels_synthesize
from openvocab.cli import serve as _serve
from openvocab.cli import train as _train
from openvocab.cli.common import run_app
from openvocab.cli.data import data_app
from openvocab.cli.features import features_app
from openvocab.cli.flow import flow_app
from openvocab.cli.labels import labels_app
from openvocab.cli.model import model_app

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Open-vocabulary video classification: any video, any labels.\n\n"
    "Example: openvocab classify my_video.mp4 --labels 'playing guitar, yoga, dog barking' --model /models/clip-vit-b-32",
)
app.command()(_classify.classify)
labels_app.command("synthesize", help="Label videos from captions with an LLM (synthetic labels, multi-label appendix I).\n\n" + _labels_synthesize.EXAMPLE)(
    _labels_synthesize.synthesize
)
app.add_typer(labels_app, name="labels")
app.add_typer(model_app, name="model")
app.add_typer(data_app, name="data", help="Datasets: synthetic benchmark, manifest checks.")
app.command(context_settings=_train.CONTEXT_SETTINGS)(_train.train)
app.command()(_evaluate.evaluate)
app.command()(_calibrate.calibrate)
app.add_typer(features_app, name="features")
app.add_typer(flow_app, name="flow", help="Optical flow: precompute the flow of a dataset's videos (MOV §4.1).")
app.command()(_serve.serve)


def main() -> None:
    """Entry point (``openvocab``): run the app; errors are one line on stderr (see :func:`run_app`)."""
    run_app(app)


if __name__ == "__main__":
    main()
