"""``openvocab labels ...``: the label bank (cached label embeddings) -- add, list, export, remove, clear, and saved
vocabularies. For these commands the bank is the job: a bank that cannot be used is an error (classify only warns and
runs without it), and commands that read or delete never create a bank that is not there."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from openvocab.cli.common import (
    DEFAULT_MODEL,
    LLM_HELP,
    MODEL_HELP,
    PROMPTS_HELP,
    DeviceOption,
    LabelBankOption,
    LabelsFileOption,
    LabelsOption,
    ModelOption,
    PromptsOption,
    TemplateOption,
    clean_label_list,
    gather_labels,
    note_model,
    print_error,
    progress_bars,
    prompt_set_of,
    setup_logging,
)
from openvocab.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from openvocab.text.label_bank import LabelBank, LabelRecord

labels_app = typer.Typer(no_args_is_help=True, help="Manage the label bank (cached label embeddings).")

FingerprintOption = typer.Option(None, "--fingerprint", help="A model fingerprint as `labels list` shows it (for a model that is no longer at hand).")


def _open_bank(label_bank: Optional[Path]) -> LabelBank:
    """The bank (strict: an unusable file is an error) for a command that writes; it is created on its first write."""
    from openvocab.text.label_bank import LabelBank

    return LabelBank(label_bank or LabelBank.default_path())


def _existing_bank(label_bank: Optional[Path], *, missing_default_ok: bool = True) -> Optional[LabelBank]:
    """The bank for a command that reads or deletes: never created here. No file at an explicit ``--label-bank``
    is an error (exit 1); at the default path it is an empty bank (None, with a note) where ``missing_default_ok``."""
    from openvocab.text.label_bank import LabelBank

    path = (label_bank or LabelBank.default_path()).expanduser()
    if not path.exists() and not path.is_symlink():
        if label_bank is not None or not missing_default_ok:
            print_error(f"error: no label bank at {path}")
            raise typer.Exit(1)
        print_error(f"no label bank at {path} yet (the first 'openvocab labels add' or classify creates it)")
        return None
    return LabelBank(path)


def _load(model: str, *, bank: LabelBank, prompts: Optional[str], template: Optional[str], device: str = "cpu", llm: Optional[str] = None):
    """``openvocab.load`` with this (strict) bank, refusing models whose labels are not cached (closed-set heads)."""
    import openvocab

    clf = openvocab.load(model, device=device, label_bank=bank, prompts=prompts, template=template, llm=llm)
    _require_open_vocabulary(clf, model)
    return clf


def _require_open_vocabulary(clf, model: str) -> None:
    if not clf.label_encoder.open_vocabulary:
        kind = clf.recognizer.spec.classifier
        raise InputError(f"the closed-set '{kind}' classifier of this run scores only its own classes; the label bank does not hold them", path=model)


@labels_app.command("add")
def labels_add(
    labels: LabelsOption = None,
    labels_file: LabelsFileOption = None,
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP + " Or a training run directory: its (trained) label encoder."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help=PROMPTS_HELP + " Default: 'ensemble'; for a training run, the run's own."),
    template: TemplateOption = None,
    llm: Optional[str] = typer.Option(None, "--llm", help=LLM_HELP),
    label_bank: LabelBankOption = None,
    device: DeviceOption = "cpu",
    save_as: Optional[str] = typer.Option(
        None, "--save-as", help="Also save the label list under this name (a saved vocabulary, e.g. kinetics400; replaces one of that name)."
    ),
) -> None:
    """Encode labels into the bank ahead of time (only labels not yet there are encoded); with a training run this is
    the vocabulary expansion of open-vocabulary multi-label Fig. 2b. Example:

    openvocab labels add --labels-file kinetics400.txt --model /models/clip-vit-b-16 --save-as kinetics400

    openvocab labels add --labels 'kayaking, juggling' --model runs/llm_prompt
    """
    from openvocab.text.label_bank import check_vocabulary_name

    setup_logging(False)
    if save_as is not None:
        check_vocabulary_name(save_as)  # before the model loads
    label_list = clean_label_list(gather_labels(labels, labels_file))
    bank = _open_bank(label_bank)
    clf = _load(model, bank=bank, prompts=prompts, template=template, device=device, llm=llm)
    with progress_bars() as bars:
        encoded = clf.encode_labels(label_list, progress=bars.fraction("encoding labels")).encoded
    note_model(clf, model)
    print(f"{len(label_list)} labels in the bank for this model and prompt set; {encoded} newly encoded ({bank.path})")
    if save_as is not None:
        bank.save_vocabulary(save_as, label_list)
        print(f"saved vocabulary '{save_as}' ({len(label_list)} labels)")


@labels_app.command("attributes")
def labels_attributes(
    labels: list[str] = typer.Argument(..., help="Labels, e.g. zebra 'playing guitar'."),
    llm: str = typer.Option(..., "--llm", help="A T5 / Flan-T5 hub id or directory."),
    label_bank: LabelBankOption = None,
    raw: bool = typer.Option(False, "--raw", help="Also show the LLM's raw answer."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
    device: DeviceOption = "cpu",
) -> None:
    """Show the attributes an LLM gives labels (fixed LLM prompting): those stored in the label bank, generating
    (and storing) the missing ones. A label without attributes is scored by its plain prompt. Example:

    openvocab labels attributes zebra 'playing guitar' --llm google/flan-t5-xl --raw
    """
    if fmt not in {"table", "json"}:
        raise InputError(f"--format must be table or json, got '{fmt}'")
    setup_logging(False)
    from openvocab.text.llm_attributes import PLAIN_TEMPLATE, LlmAttributes

    wanted = clean_label_list(list(labels))
    bank = _open_bank(label_bank)
    found = LlmAttributes(llm, label_bank=bank).get(wanted, device=device)
    rows = [
        {"label": label, "attributes": list(a.attributes), "source": "generated" if a.generated else "label bank", **({"raw": a.raw} if raw else {})}
        for label, a in found.items()
    ]
    if fmt == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:  # LLM output and labels are shown as text: control characters escaped (the JSON form keeps them exact)
        from openvocab.results import terminal_text as shown

        for row in rows:
            print(f"{shown(row['label'])} ({row['source']}):")
            for attribute in row["attributes"]:
                print(f"  - {shown(attribute)}")
            if not row["attributes"]:
                print(f"  (none usable: scored as '{shown(PLAIN_TEMPLATE.replace('{label}', row['label']))}')")
            if raw:
                print(f"  raw answer: {row['raw']!r}")
    generated = sum(a.generated for a in found.values())
    print_error(f"{len(rows)} labels; {generated} generated now, {len(rows) - generated} from {bank.path}")


_LIST_COLUMNS = ("model", "fingerprint", "prompts", "dim", "label", "added")


@labels_app.command("list")
def labels_list(
    label_bank: LabelBankOption = None,
    fingerprint: Optional[str] = typer.Option(None, "--fingerprint", help="Only this model fingerprint."),
    fmt: str = typer.Option("table", "--format", help="table, tsv (tab-separated, with a header row) or json."),
) -> None:
    """List cached labels with the model they were encoded by (its name where the bank knows it, and its
    fingerprint), prompt set, size and date. Example: openvocab labels list --format tsv
    """
    if fmt not in {"table", "tsv", "json"}:
        raise InputError(f"--format must be table, tsv or json, got '{fmt}'")
    bank = _existing_bank(label_bank)
    records = bank.list(fingerprint=fingerprint) if bank is not None else []
    names = bank.model_names() if bank is not None else {}
    rows = [_row(rec, names) for rec in records]
    if fmt == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif fmt == "tsv":
        print("\t".join(_LIST_COLUMNS))
        for row in rows:
            print("\t".join(_cell(row[c]) for c in _LIST_COLUMNS))
    elif rows:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        from openvocab.results import terminal_text

        table = Table()
        for column in _LIST_COLUMNS:
            table.add_column(column, overflow="fold", justify="right" if column == "dim" else "left")  # fold: never cut an id
        for row in rows:  # Text, not markup: a label '[/bold]' prints as it is; control characters shown escaped
            table.add_row(*(Text(terminal_text(_cell(row[c]))) for c in _LIST_COLUMNS[:-1]), row["added"][:16].replace("T", " "))
        Console().print(table)
    models = len({rec.fingerprint for rec in records})
    if bank is not None:
        print_error(f"{len(records)} labels of {models} model{'s' if models != 1 else ''} in {bank.path}" + (" (read-only)" if bank.read_only else ""))


def _row(rec: LabelRecord, names: dict[str, list[str]]) -> dict:
    known = names.get(rec.fingerprint)
    added = datetime.fromtimestamp(rec.created_at, tz=timezone.utc).astimezone().isoformat(timespec="seconds")
    return {
        "model": ", ".join(known) if known else None,
        "fingerprint": rec.fingerprint,
        "prompts": rec.prompt_key,
        "dim": rec.dim,
        "label": rec.label,
        "added": added,
    }


def _cell(value: object) -> str:
    return "unknown" if value is None else str(value)


@labels_app.command("export")
def labels_export(
    output: Path = typer.Argument(..., help="Output file: .npz (labels + embeddings), .json or .csv."),
    model: ModelOption = DEFAULT_MODEL,
    labels: LabelsOption = None,
    labels_file: LabelsFileOption = None,
    prompts: PromptsOption = "ensemble",
    template: TemplateOption = None,
    label_bank: LabelBankOption = None,
) -> None:
    """Export the embeddings of one model and prompt set: the labels given with --labels / --labels-file, in that
    order (those not in the bank yet are encoded first), or every label cached for the model. Example:

    openvocab labels export k400.npz --labels-file kinetics_k400.txt -m DIR
    """
    setup_logging(False)
    selection = gather_labels(labels, labels_file, required=False)
    selected = clean_label_list(selection) if labels is not None or labels_file is not None else None
    bank = _existing_bank(label_bank, missing_default_ok=False)
    assert bank is not None
    clf = _load(model, bank=bank, prompts=prompts, template=template)
    with progress_bars() as bars:
        encoded = clf.encode_labels(selected, progress=bars.fraction("encoding labels")).encoded if selected is not None else 0
    note_model(clf, model)
    encoder = clf.label_encoder
    n = bank.export(output, fingerprint=encoder.fingerprint, prompt_key=encoder.prompt_key, labels=selected)
    print(f"exported {n} labels to {output}" + (f" ({encoded} newly encoded)" if encoded else ""))


def _fingerprint(model: Optional[str], fingerprint: Optional[str]) -> tuple[str, str]:
    """``(fingerprint, how to name it)`` from --model (loaded to compute its fingerprint) or --fingerprint."""
    if (model is None) == (fingerprint is None):
        raise InputError("give the model as --model M (or --fingerprint FP, as `openvocab labels list` shows it)")
    if fingerprint is not None:
        return fingerprint, f"fingerprint {fingerprint}"
    setup_logging(False)
    import openvocab

    clf = openvocab.load(model, label_bank=False)
    _require_open_vocabulary(clf, model)
    fp = clf.label_encoder.fingerprint
    return fp, f"{model} (fingerprint {fp})"


def _report(removed: Sequence[LabelRecord], names: dict[str, list[str]], *, show_labels: bool) -> None:
    groups: dict[tuple[str, str], list[str]] = {}
    for rec in removed:
        groups.setdefault((rec.fingerprint, rec.prompt_key), []).append(rec.label)
    for (fp, key), labels in groups.items():
        who = f"{', '.join(names[fp])} (fingerprint {fp})" if fp in names else f"fingerprint {fp}"
        shown = ": " + ", ".join(labels) if show_labels else ""
        print(f"removed {len(labels)} label{'s' if len(labels) != 1 else ''} of {who}, prompts {key}{shown}")


@labels_app.command("remove")
def labels_remove(
    labels: list[str] = typer.Argument(..., help="Labels to remove, e.g. yoga 'dog barking'."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    fingerprint: Optional[str] = FingerprintOption,
    prompts: Optional[str] = typer.Option(
        None, "--prompts", help="Only this prompt set's embeddings ('ensemble', 'single', 'classname' or a templates file); default: every prompt set."
    ),
    template: TemplateOption = None,
    label_bank: LabelBankOption = None,
) -> None:
    """Remove labels of one model from the bank (they are encoded again when next used). Example:

    openvocab labels remove yoga 'dog barking' --model /models/clip-vit-b-16
    """
    wanted = clean_label_list(list(labels))
    if prompts is None and template is not None:
        raise InputError("--template only applies to --prompts single")
    key = prompt_set_of(prompts, template).key if prompts is not None else None
    bank = _existing_bank(label_bank)  # before the model loads
    fp, who = _fingerprint(model, fingerprint)
    if bank is None:
        print_error(f"warning: not in the bank for {who}: {', '.join(wanted)}")
        return
    names = bank.model_names()
    removed = bank.discard(fingerprint=fp, prompt_key=key, labels=wanted)
    _report(removed, names, show_labels=True)
    gone = {rec.label for rec in removed}
    absent = [label for label in wanted if label not in gone]
    if absent:
        print_error(f"warning: not in the bank for {who}: {', '.join(absent)}")
    print_error(f"{len(removed)} embeddings removed from {bank.path}")


@labels_app.command("clear")
def labels_clear(
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    fingerprint: Optional[str] = FingerprintOption,
    everything: bool = typer.Option(False, "--all", help="Clear the whole bank (every model). Nothing is asked."),
    label_bank: LabelBankOption = None,
) -> None:
    """Remove every cached label of one model (all prompt sets), or of all models with --all. Example:

    openvocab labels clear --model /models/clip-vit-b-16
    """
    if everything and (model is not None or fingerprint is not None):
        raise InputError("--all clears every model; do not combine it with --model or --fingerprint")
    bank = _existing_bank(label_bank)  # before the model loads
    fp = None if everything else _fingerprint(model, fingerprint)[0]
    if bank is None:
        print("nothing to remove")
        return
    names = bank.model_names()
    removed = bank.discard(fingerprint=fp)
    _report(removed, names, show_labels=False)
    if not removed:
        print("nothing to remove" + ("" if everything else f" for {model or 'fingerprint ' + str(fingerprint)}"))
    print_error(f"{len(removed)} embeddings removed from {bank.path}")


@labels_app.command("vocabularies")
def labels_vocabularies(
    name: Optional[str] = typer.Argument(None, help="Show the labels of this saved vocabulary (one per line: a labels file)."),
    label_bank: LabelBankOption = None,
    remove: bool = typer.Option(False, "--remove", help="Delete the vocabulary NAME (its cached embeddings stay)."),
    fmt: str = typer.Option("table", "--format", help="table, tsv (tab-separated, with a header row) or json."),
) -> None:
    """List the saved vocabularies (label lists saved with `labels add --save-as NAME`), show one, or remove one.
    Example: openvocab labels vocabularies kinetics400 > k400.txt
    """
    from openvocab.text.label_bank import check_vocabulary_name

    if fmt not in {"table", "tsv", "json"}:
        raise InputError(f"--format must be table, tsv or json, got '{fmt}'")
    if name is not None:
        check_vocabulary_name(name)
    elif remove:
        raise InputError("--remove needs the NAME of the vocabulary to delete")
    bank = _existing_bank(label_bank, missing_default_ok=name is None)
    if name is not None:
        assert bank is not None
        if remove:
            if not bank.delete_vocabulary(name):
                raise InputError(f"no saved vocabulary '{name}'", path=bank.path)
            print(f"removed vocabulary '{name}'")
            return
        items = bank.vocabulary(name)
        if items is None:
            raise InputError(f"no saved vocabulary '{name}'", path=bank.path)
        print(json.dumps(items, indent=2, ensure_ascii=False) if fmt == "json" else "\n".join(items))
        return
    saved = bank.vocabularies() if bank is not None else []
    if fmt == "json":
        print(json.dumps([{"name": n, "size": size} for n, size in saved], indent=2))
    elif fmt == "tsv":
        print("name\tsize")
        for n, size in saved:
            print(f"{n}\t{size}")
    elif saved:
        from rich.console import Console
        from rich.table import Table

        table = Table()
        table.add_column("name")
        table.add_column("labels", justify="right")
        for n, size in saved:
            table.add_row(n, str(size))  # names are [A-Za-z0-9_.-]: no markup
        Console().print(table)
    if bank is not None:
        print_error(f"{len(saved)} saved vocabular{'ies' if len(saved) != 1 else 'y'} in {bank.path}")
