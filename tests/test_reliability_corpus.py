"""Every case of the reliability corpus (``tests/reliability_corpus.py``, its docstring holds the table) through the
decoder, the CLI and the Python API, each giving its documented outcome; and a batch over the whole corpus folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from openvocab.errors import OpenVocabError
from openvocab.io.decode import open_video
from openvocab.io.discover import expand_inputs
from openvocab.io.sampling import SamplerSpec, sample_indices
from reliability_corpus import CASE_NAMES, CorpusCase, build_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = ["a dog", "a cat"]
FRAMES = 4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, CorpusCase]:
    root = tmp_path_factory.mktemp("corpus")
    return {c.name: c for c in build_corpus(root)}


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    import openvocab

    return openvocab.load(tiny_model_dir, label_bank=False)


def _case(corpus: dict[str, CorpusCase], name: str) -> CorpusCase:
    if name not in corpus:
        pytest.skip(f"{name}: this platform cannot make it (FIFO / symbolic links)")
    return corpus[name]


def _decode_like_classify(path: Path):
    """What the classifier does: sample the declared length, read, and sample again if the stream was shorter."""
    source = open_video(path)
    declared = source.info.num_frames
    spec = SamplerSpec(frames=FRAMES)
    frames = source.read(sample_indices(spec, declared).reshape(-1).tolist(), max_short_side=224).frames
    if source.info.num_frames < declared:
        frames = source.read(sample_indices(spec, source.info.num_frames).reshape(-1).tolist(), max_short_side=224).frames
    return source.info, frames


def test_corpus_lists_every_case(corpus) -> None:
    import reliability_corpus

    assert set(corpus) <= set(CASE_NAMES)
    if os.name == "posix":
        assert set(corpus) == set(CASE_NAMES)
    for case in corpus.values():
        assert case.outcome in {"classified", "warning", "error"}
        assert (case.outcome == "classified") == (case.detail == ""), case.name
        assert case.name in reliability_corpus.__doc__ and case.detail in reliability_corpus.__doc__
    assert sum(c.stat().st_size for c in corpus["ok_mp4"].path.parent.rglob("*") if c.is_file() and not c.is_symlink() and c.name != "fifo.mp4") < 2_000_000


@pytest.mark.parametrize("name", CASE_NAMES)
def test_decoder(corpus, name: str) -> None:
    case = _case(corpus, name)
    if case.folder:
        videos, problems = expand_inputs([case.path])
        assert len(videos) == case.videos and problems == [], (videos, problems)
        paths = videos
    else:
        paths = [case.path]
    for path in paths:
        if case.outcome == "error":
            with pytest.raises(OpenVocabError) as err:
                _decode_like_classify(path)
            message = str(err.value)
            assert message.startswith(f"{path}: ") and case.detail in message and "\n" not in message, message
            continue
        info, frames = _decode_like_classify(path)
        assert frames.dtype == np.uint8 and frames.shape[0] == FRAMES and min(frames.shape[1:3]) >= 1
        assert min(frames.shape[1:3]) <= 224  # the 4K case is shrunk while decoding
        for key, value in case.info.items():
            assert getattr(info, key) == value, (key, info)
        if case.outcome == "warning":
            assert any(case.detail in w and w.startswith(f"{path}: ") for w in info.warnings), info.warnings
        else:
            assert info.warnings == (), info.warnings


@pytest.mark.parametrize("name", CASE_NAMES)
def test_cli(corpus, name: str, cli, tiny_model_dir, monkeypatch) -> None:
    case = _case(corpus, name)
    monkeypatch.chdir(case.path.parent)  # a relative name: the dash case must come after "--"
    arg = case.path.name
    code, out, err = cli(
        "classify", "--labels", ", ".join(LABELS), "--model", str(tiny_model_dir), "--no-label-bank",
        "--frames", str(FRAMES), "--format", "json", "--", arg,
    )  # fmt: skip
    if case.outcome == "error":
        assert code == 1, (code, err)
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and lines[0].startswith(f"error: {arg}: ") and case.detail in lines[0], err
        assert out == "" or json.loads(out)[0]["error"]  # nothing reported as classified
        return
    assert code == 0, err
    results = json.loads(out)
    assert len(results) == case.videos and all(r.get("error") is None and r["labels"] for r in results), results
    assert {r["labels"][0]["label"] for r in results} <= set(LABELS)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_python_api(corpus, classifier, on_error: str) -> None:
    inputs: list[tuple[CorpusCase, Path]] = []
    for case in corpus.values():
        paths = expand_inputs([case.path])[0] if case.folder else [case.path]
        assert len(paths) == case.videos
        inputs += [(case, p) for p in paths]
    if on_error == "skip":  # one batch call: failures come back as results, in order, and the rest is classified
        results = classifier.classify([p for _, p in inputs], LABELS, frames=FRAMES, on_error="skip")
    else:
        results = []
        for case, path in inputs:
            if case.outcome == "error":
                with pytest.raises(OpenVocabError) as err:
                    classifier.classify(path, LABELS, frames=FRAMES)
                results.append(str(err.value))
            else:
                results.append(classifier.classify(path, LABELS, frames=FRAMES))
    assert len(results) == len(inputs)
    for (case, path), result in zip(inputs, results):
        if case.outcome == "error":
            message = result if isinstance(result, str) else result.error
            assert message is not None and message.startswith(f"{path}: ") and case.detail in message, (case.name, message)
            assert "\n" not in message
        else:
            assert result.ok and result.path == str(path), (case.name, result.error)
            assert [s.label for s in result.labels] and result.labels[0].label in LABELS


def test_batch_over_the_whole_corpus_folder(corpus, cli, tiny_model_dir) -> None:
    root = corpus["ok_mp4"].path.parent
    code, out, err = cli(
        "classify", str(root), "--labels", ", ".join(LABELS), "--model", str(tiny_model_dir), "--no-label-bank",
        "--frames", str(FRAMES), "--format", "json",
    )  # fmt: skip
    assert code == 1, err
    reached = [c for c in corpus.values() if c.in_folder_search]
    good = {str(p) for c in reached if c.outcome != "error" for p in (expand_inputs([c.path])[0] if c.folder else [c.path])}
    bad = {str(c.path): c.detail for c in reached if c.outcome == "error"}
    results = json.loads(out)
    assert {r["path"] for r in results if r.get("error") is None} == good  # every good file classified, each once
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(bad), errors
    for path, detail in bad.items():
        assert any(line.startswith(f"error: {path}: ") and detail in line for line in errors), (path, errors)
    assert f"{len(bad)} of {len(good) + len(bad)} inputs failed; {len(good)} classified" in err


def test_decoder_warnings_reach_results_and_cli(corpus, classifier, cli, tiny_model_dir) -> None:
    cases = [c for c in corpus.values() if c.outcome == "warning"]
    results = classifier.classify([c.path for c in cases], LABELS, frames=FRAMES, on_error="skip")
    for case, result in zip(cases, results):
        assert result.ok and any(case.detail in w for w in result.warnings), (case.name, result.warnings)
    code, _, err = cli(
        "classify", *[str(c.path) for c in cases], "--labels", "a, b", "--model", str(tiny_model_dir), "--no-label-bank", "--frames", str(FRAMES)
    )
    assert code == 0
    for case in cases:
        assert any(line.startswith(f"warning: {case.path}: ") and case.detail in line for line in err.splitlines()), err
