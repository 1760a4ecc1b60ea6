"""User text on the terminal: rich markup in labels and paths prints as text, control characters (escape sequences,
C1 controls, bidi overrides) are shown escaped and never reach the terminal raw (JSON keeps the exact text), and an
unexpected exception is ONE line (the traceback only with OPENVOCAB_DEBUG=1)."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
import typer

from openvocab.cli.common import progress_bars, run_app, setup_logging

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Characters that must never reach the terminal raw: ESC (CSI, OSC), BEL, a one-byte C1 CSI, a right-to-left override.
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def _raw_in(text: str) -> list[str]:
    return [repr(ch) for ch in RAW if ch in text]


def test_markup_in_labels_and_paths_prints_as_text(cli, make_video, tiny_model_dir):
    video = make_video("clips[/[bold]x[/bold].mp4", num_frames=12, size=(64, 48))
    labels = "[/bold], [red]tag[/red], :warning: sign"
    code, out, err = cli("classify", str(video.parent), "--labels", labels, "--model", str(tiny_model_dir), "--no-label-bank", "--timeline", "--frames", "2")
    assert code == 0, err
    assert "[/bold]" in out and "[red]tag[/red]" in out and ":warning: sign" in out
    assert f"{video}  (" in out, "the path with its brackets is the table's title, as it is"
    assert "timeline" in out


def test_control_characters_are_escaped_on_the_terminal_and_exact_in_json(cli, make_video, tiny_model_dir):
    video = make_video("clip.mp4", num_frames=12, size=(64, 48))
    hostile = ["\x1b[31mred", "title\x1b]0;pwned\x07", "csi\x9b2J", "rtl\u202eevil"]
    args = ("classify", str(video), "--labels", ", ".join(hostile), "--model", str(tiny_model_dir), "--no-label-bank", "--frames", "2")
    code, out, err = cli(*args)
    assert code == 0, err
    assert not _raw_in(out) and not _raw_in(err), (_raw_in(out), _raw_in(err))
    for shown in ("\\x1b[31mred", "title\\x1b]0;pwned\\x07", "csi\\x9b2J", "rtl\\u202eevil"):
        assert shown in out, out
    code, out, err = cli(*args, "--format", "json")
    assert code == 0, err
    assert {ls["label"] for ls in json.loads(out)[0]["labels"]} == set(hostile), "machine-readable output keeps the exact text"


def test_error_lines_escape_control_characters(cli, tmp_path):
    missing = tmp_path / "gone\x1b[2J\x07.mp4"
    code, out, err = cli("classify", str(missing), "--labels", "a, b", "--model", "unused")
    assert code == 1 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "gone\\x1b[2J\\x07.mp4" in lines[0], err
    assert not _raw_in(err)


def test_usage_errors_escape_control_characters(cli):
    code, _, err = cli("classify", "--bo\x07gus\x9b")
    assert code == 2 and "No such option" in err
    assert "--bo\\x07gus\\x9b" in err and not _raw_in(err)


def test_log_lines_escape_control_characters(capsys):
    setup_logging(False)
    logging.getLogger("openvocab.test").warning("skipped %s", "evil\x1b]0;title\x07.mp4")
    err = capsys.readouterr().err
    assert "warning: skipped evil\\x1b]0;title\\x07.mp4" in err and not _raw_in(err)


def test_progress_bar_items_are_not_markup_and_are_escaped():
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160, color_system=None)
    with progress_bars(console=console) as bars:
        update = bars.counter("classifying", 2, show_item=True)
        update(1, item="clips[/x[red]y\x1b[2J.mp4")  # shown: the file name (with markup, "[red]" would vanish)
        note = bars.fraction("encoding labels")
        note(1, 2, "[red]label\x07[/blue]")
        bars._progress.refresh()
    shown = screen.getvalue()
    assert "x[red]y\\x1b[2J.mp4" in shown and "[red]label\\x07[/blue]" in shown
    assert "\x07" not in shown


# ---------------------------------------------------------------------------------------------------------------------
# run_app: an unexpected exception is one line
# ---------------------------------------------------------------------------------------------------------------------
def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command()
    def crash(kind: str) -> None:
        if kind == "bug":
            raise RuntimeError("kaput\nwith \x1b[31m a second line")
        if kind == "abort":
            raise typer.Abort()
        if kind == "pipe":
            raise BrokenPipeError(32, "Broken pipe")

    @app.command()
    def other() -> None:
        """A second command, so that the app is a group like openvocab's."""

    return app


def _run(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["openvocab", *argv])
    with pytest.raises(SystemExit) as exc:
        run_app(_app())
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_an_unexpected_exception_is_one_line_and_exit_1(monkeypatch, capsys):
    monkeypatch.delenv("OPENVOCAB_DEBUG", raising=False)
    code, out, err = _run(monkeypatch, capsys, "crash", "bug")
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "internal error: RuntimeError: kaput with \\x1b[31m a second line (please report it; run with OPENVOCAB_DEBUG=1 for the traceback)"
    ]


def test_openvocab_debug_adds_the_traceback(monkeypatch, capsys):
    monkeypatch.setenv("OPENVOCAB_DEBUG", "1")
    code, _, err = _run(monkeypatch, capsys, "crash", "bug")
    assert code == 1
    assert err.startswith("Traceback (most recent call last):") and 'raise RuntimeError("kaput' in err
    assert err.splitlines()[-1].startswith("internal error: RuntimeError: kaput")


def test_abort_and_broken_pipe_end_quietly(monkeypatch, capsys):
    monkeypatch.delenv("OPENVOCAB_DEBUG", raising=False)
    code, _, err = _run(monkeypatch, capsys, "crash", "abort")
    assert code == 1 and err.strip() == "aborted"
    code, _, err = _run(monkeypatch, capsys, "crash", "pipe")
    assert code == 1 and err == ""


def test_labels_attributes_text_output_escapes_control_characters(cli, tiny_t5_dir, tmp_path):
    """`labels attributes` prints labels (and LLM output) as text; its JSON keeps the label exact."""
    bank = str(tmp_path / "bank.sqlite")
    code, out, _err = cli("labels", "attributes", "red\x1b[31mcar", "--llm", str(tiny_t5_dir), "--label-bank", bank)
    assert code == 0
    assert "\x1b" not in out and "red\\x1b[31mcar" in out
    code, out, _err = cli("labels", "attributes", "red\x1b[31mcar", "--llm", str(tiny_t5_dir), "--label-bank", bank, "--format", "json")
    assert code == 0 and json.loads(out)[0]["label"] == "red\x1b[31mcar"
