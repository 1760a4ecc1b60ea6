"""What every command module of :mod:`openvocab.cli` shares: option definitions, logging set-up, the one-line error
convention (:func:`run_app`), atomic output, progress bars, label and prompt arguments.

Only the standard library, typer and small base modules (:mod:`openvocab.errors`, :mod:`openvocab.results`) are
imported at module level: ``openvocab --help`` and usage errors must answer without loading torch. Everything heavy is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from openvocab.errors import InputError, OpenVocabError
from openvocab.io.choices import SAMPLERS
from openvocab.results import terminal_text

if TYPE_CHECKING:  # pragma: no cover
    from openvocab.text.prompts import PromptSet

DEFAULT_MODEL = os.environ.get("OPENVOCAB_MODEL", "openai/clip-vit-base-patch32")

MODEL_HELP = "Hub id or local model directory (env OPENVOCAB_MODEL sets the default)."
PROMPTS_HELP = "Prompt set: 'ensemble' (CLIP's 28 Kinetics templates), 'single', 'classname', or a templates file."
LABELS_HELP = "Comma-separated labels, e.g. 'playing guitar, yoga, dog barking'."
LABELS_FILE_HELP = "Labels file: one per line (or .csv with a 'label' column, or a .json list)."
LABEL_BANK_HELP = "Label bank file (default: ~/.cache/openvocab/label_bank.sqlite)."
TEMPLATE_HELP = "The template of --prompts single, with one {} for the label."
LLM_HELP = (
    "A T5 / Flan-T5 hub id or directory: score labels by attributes this LLM writes (fixed LLM prompting, cached in the "
    "label bank); for a run with an LLM head, where its LLM is now."
)

# ---------------------------------------------------------------------------------------------------------------------
# Options used by several commands, defined once (``name: ModelOption = DEFAULT_MODEL``). typer copies the option
# object for every parameter, so one definition serves any number of commands.
ModelOption = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
LabelsOption = Annotated[Optional[str], typer.Option("--labels", "-l", help=LABELS_HELP)]
LabelsFileOption = Annotated[Optional[Path], typer.Option("--labels-file", "-L", help=LABELS_FILE_HELP)]
LabelBankOption = Annotated[Optional[Path], typer.Option("--label-bank", help=LABEL_BANK_HELP)]
PromptsOption = Annotated[str, typer.Option("--prompts", help=PROMPTS_HELP)]
TemplateOption = Annotated[Optional[str], typer.Option("--template", help=TEMPLATE_HELP)]
DeviceOption = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, mps ...")]
FramesOption = Annotated[int, typer.Option("--frames", "-f", help="Frames per view.")]
SamplerOption = Annotated[str, typer.Option("--sampler", help=f"Frame sampler: {SAMPLERS.help_text()}.")]
StrideOption = Annotated[int, typer.Option("--stride", help="Frame stride of the dense sampler (MOV: 16 frames, stride 4).")]
BatchSizeOption = Annotated[int, typer.Option("--batch-size")]
WorkersOption = Annotated[int, typer.Option("--workers")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing non-empty directory.")]


# ---------------------------------------------------------------------------------------------------------------------
def print_error(msg: str) -> None:
    """One line on stderr; control characters of the user's text in it (escape sequences in a label or a file name)
    are shown escaped, never sent to the terminal (:func:`openvocab.results.terminal_text`)."""
    print(terminal_text(msg), file=sys.stderr, flush=True)


class _TerminalFormatter(logging.Formatter):
    """``level: message`` with the message's control characters shown escaped (log lines name user files)."""

    def format(self, record: logging.LogRecord) -> str:
        return terminal_text(super().format(record), keep="\n")


def setup_logging(quiet: bool) -> None:
    for level in (logging.INFO, logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_TerminalFormatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.ERROR if quiet else logging.WARNING, handlers=[handler], force=True)
    for noisy in ("transformers", "huggingface_hub", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # openvocab shows its own progress; no per-shard bars on stderr
    hf_logging.set_verbosity_error()


def write_output(text: str, output: Optional[Path]) -> None:
    """Print (``output`` None or ``-``), or write atomically so an existing file is never half-overwritten (a symbolic
    link is followed, a file keeps its mode, a FIFO or device such as ``/dev/stdout`` is written through:
    :mod:`openvocab.atomic`)."""
    text = text if text.endswith("\n") else text + "\n"
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        return
    from openvocab.atomic import atomic_write

    try:
        atomic_write(output.expanduser(), text)
    except OSError as exc:
        raise InputError(f"cannot write results ({exc.strerror or exc})", path=output) from None


@contextlib.contextmanager
def progress_bar(title: str, total: int, *, enabled: bool = True, show_item: bool = False) -> Iterator[Callable[..., None]]:
    """A transient progress bar on stderr; yields ``update(done, item=None)`` (a no-op when ``enabled`` is off)."""
    with progress_bars(enabled=enabled) as bars:
        yield bars.counter(title, total, show_item=show_item)


class ProgressBars:
    """Several bars in one live display (rich allows one at a time): ``counter`` for a known total,
    ``fraction`` for callbacks that report ``(done, total)`` themselves (label encoding, training steps). The
    library reports progress through such callbacks; this is the one place that turns them into bars.

    Item names and notes are user text (file names, labels): their columns do not parse rich markup and their
    control characters are shown escaped (:func:`openvocab.results.terminal_text`)."""

    def __init__(self, progress) -> None:
        self._progress = progress

    def counter(self, title: str, total: int, *, show_item: bool = False) -> Callable[..., None]:
        if self._progress is None:
            return lambda done, item=None: None
        task = self._progress.add_task("", total=total, title=title)

        def update(done: int, item: object = None) -> None:
            description = terminal_text(Path(str(item)).name) if show_item and item is not None else None
            self._progress.update(task, completed=done, **({"description": description} if description else {}))

        return update

    def fraction(self, title: str) -> Callable[..., None]:
        """``update(done, total, note=None)``; the bar appears at the first call (when the total is known)."""
        if self._progress is None:
            return lambda done, total, note=None: None
        state: dict = {}

        def update(done: int, total: int, note: object = None) -> None:
            if "task" not in state:
                state["task"] = self._progress.add_task("", total=total, title=title)
            self._progress.update(state["task"], completed=done, total=total, description="" if note is None else terminal_text(note))

        return update


@contextlib.contextmanager
def progress_bars(*, enabled: bool = True, console=None) -> Iterator[ProgressBars]:
    """Transient bars on stderr (none when ``enabled`` is off or stderr is not a terminal: logs and pipes get no bar
    residue); see :class:`ProgressBars`. ``console``: a rich Console to draw on instead (always drawn; tests)."""
    if not enabled or (console is None and not sys.stderr.isatty()):
        yield ProgressBars(None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [
        TextColumn("{task.fields[title]}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}", markup=False),
    ]
    with Progress(*columns, console=console or Console(stderr=True), transient=True) as progress:
        yield ProgressBars(progress)


# ---------------------------------------------------------------------------------------------------------------------
def gather_labels(labels: Optional[str], labels_file: Optional[Path], extra: Optional[list[str]] = None, *, required: bool = True) -> list[str]:
    """Labels from ``--labels``, ``--labels-file`` and positional ``extra`` (in that order, not yet cleaned)."""
    from openvocab.text.prompts import parse_labels_arg, read_labels_file

    out: list[str] = list(extra or [])
    if labels is not None:
        out.extend(parse_labels_arg(labels))
    if labels_file is not None:
        out.extend(read_labels_file(labels_file))
    if required and labels is None and labels_file is None and not extra:
        raise InputError("no labels given: use --labels 'a, b, c' or --labels-file FILE")
    return out


def clean_label_list(labels: list[str], *, quiet: bool = False) -> list[str]:
    """:func:`openvocab.text.prompts.clean_labels`, printing its warnings (duplicates) on stderr."""
    from openvocab.text.prompts import clean_labels

    cleaned, warnings = clean_labels(labels)
    if not quiet:
        for w in warnings:
            print_error(f"warning: {w}")
    return cleaned


def label_bank_arg(label_bank: Optional[Path], no_label_bank: bool = False):
    """``openvocab.load(label_bank=...)``: False (none), a path, or True (the default file)."""
    if no_label_bank:
        return False
    return label_bank if label_bank is not None else True


def prompt_set_of(prompts: str, template: Optional[str] = None) -> PromptSet:
    """The prompt set an option names: 'ensemble' / 'single' (with ``template``) / 'classname', or a templates file
    (:func:`openvocab.text.prompts.resolve_prompts`, the one prompt rule)."""
    from openvocab.text.prompts import resolve_prompts

    return resolve_prompts(prompts, template=template)


def model_name(model: str) -> str:
    """How the label bank records a model: an existing local path absolute, anything else (hub id, random:ARCH) as given."""
    try:
        path = Path(model).expanduser()
        if path.exists():
            return str(path.resolve())
    except (OSError, ValueError):
        pass
    return model


def note_model(clf, model: str) -> None:
    """Record in the label bank which model the fingerprint of ``clf``'s label encoder belongs to (for `labels
    list`); best effort: a busy or read-only bank never fails the command that already did its work."""
    if clf.label_bank is None or not clf.label_encoder.open_vocabulary:
        return
    try:
        clf.label_bank.note_model(clf.label_encoder.fingerprint, model_name(model))
    except OpenVocabError:
        pass


# ---------------------------------------------------------------------------------------------------------------------
def run_app(app: typer.Typer) -> NoReturn:
    """Run ``app`` the openvocab way: an :class:`OpenVocabError` is one line on stderr and exit code 2, a usage
    error is click's short message and exit code 2, ``typer.Exit(n)`` is exit code n, never a traceback for the
    user's mistakes. Anything else is a bug in openvocab: ONE line (``internal error: <type>: <message>``) and exit
    code 1; the traceback is printed too when ``OPENVOCAB_DEBUG`` is set (to anything but 0 or empty)."""
    try:
        rc = app(standalone_mode=False)  # click returns the exit code of typer.Exit here
        sys.exit(rc if isinstance(rc, int) else 0)
    except OpenVocabError as exc:
        print_error(f"error: {exc}")
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print_error("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        print_error("interrupted")
        sys.exit(130)
    except BrokenPipeError:  # `openvocab ... | head`: the reader left; nothing more to say, and nowhere to say it
        _silence_stdout()
        sys.exit(1)
    except Exception as exc:
        _exit_on_click_exception(exc)
        internal_error(exc)


def _exit_on_click_exception(exc: Exception) -> None:
    """Usage errors (typer vendors its own click in recent versions; accept both): click's message, control
    characters escaped, and its exit code. Returns when ``exc`` is not one of click's."""
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            exceptions = importlib.import_module(module)
        except ImportError:
            continue
        if isinstance(exc, getattr(exceptions, "ClickException", ())):
            buffer = io.StringIO()
            exc.show(file=buffer)
            sys.stderr.write(terminal_text(buffer.getvalue(), keep="\n"))
            sys.stderr.flush()
            sys.exit(exc.exit_code)
        if isinstance(exc, getattr(exceptions, "Abort", ())):
            print_error("aborted")
            sys.exit(1)


def debug_enabled() -> bool:
    """Whether ``OPENVOCAB_DEBUG`` asks for tracebacks of internal errors."""
    return os.environ.get("OPENVOCAB_DEBUG", "").strip() not in ("", "0")


def internal_error(exc: BaseException) -> NoReturn:
    """An unexpected exception (a bug): one line and exit code 1; the traceback first with ``OPENVOCAB_DEBUG=1``."""
    if debug_enabled():
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    message = " ".join(str(exc).split())
    if len(message) > 500:
        message = message[:500] + " …"
    hint = "" if debug_enabled() else "; run with OPENVOCAB_DEBUG=1 for the traceback"
    print_error(f"internal error: {type(exc).__name__}{': ' + message if message else ''} (please report it{hint})")
    sys.exit(1)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again on the closed pipe."""
    if sys.stdout is not sys.__stdout__:  # a replaced stdout (tests, embedding): not ours to redirect
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
