"""The synthetic label pipeline (open-vocabulary multi-label, appendix I): the listing's prompt, k-means
de-duplication and caption-label assignment with a REAL sentence encoder (MiniLM), captions from files and from an
image-to-text model (a tiny random BLIP, against the model called directly), and the CLI."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch

from openvocab.errors import InputError
from openvocab.labelling.captioners import CaptionFile, FrameCaptioner
from openvocab.labelling.synthesis import assign_labels, deduplicate, extract_concepts, extraction_prompt, synthesize

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def minilm():
    from openvocab.text.label_encoders import SentenceLabelEncoder

    return SentenceLabelEncoder("minilm").encode


def test_extraction_prompt_is_the_listing_with_the_video_as_fourth_example():
    prompt = extraction_prompt(["A dog runs on a beach.", "  A dog   catches a frisbee. ", ""])
    instruction = (
        "Following is the description of a video. Output a numbered list of verbs representing visual actions performed in the video. "
        "Do not add any explanation."
    )
    assert prompt.count(instruction) == 4
    assert "Video 1 description:\n\n1. A group of people riding motorcycles at night.\n2. A motorcycle is lit up with blue lights." in prompt
    assert "Verbs Found:\n\n1. performing on stage\n2. singing on stage\n3. playing guitar" in prompt
    assert "Verbs Found:\n\n1. putting lotion\n2. putting nail polish\n3. writing\n4. putting ring" in prompt
    assert prompt.endswith("Video 4 description:\n\n1. A dog runs on a beach.\n2. A dog catches a frisbee.\n\nVerbs Found:\n\n")
    objects = extraction_prompt(["A cat on a sofa."], kind="objects")
    assert objects.endswith("Objects Found:\n\n") and "nouns representing visible objects" in objects
    with pytest.raises(InputError, match="unknown concept kind"):
        extraction_prompt(["x"], kind="sounds")


def _fake_llm(answers: dict[str, str]):
    """An LLM stand-in: answers by the first caption of the prompt's Video 4, counting calls."""
    calls = []

    def generate(prompts):
        calls.append(len(prompts))
        out = []
        for prompt in prompts:
            first = re.search(r"Video 4 description:\n\n1\. (.*)\n", prompt).group(1)
            out.append(answers[first])
        return out

    generate.calls = calls
    return generate


def test_extract_concepts_parses_lists_and_drops_repeats():
    captions = {"a.mp4": ["A man rides a bike."], "b.mp4": ["A girl plays guitar."], "c.mp4": ["Nothing here."], "d.mp4": []}
    llm = _fake_llm(
        {"A man rides a bike.": "1. riding bike\n2. Riding  Bike.\n3. cycling", "A girl plays guitar.": "1. playing guitar", "Nothing here.": "..."}
    )
    found = extract_concepts(captions, llm, batch_size=2)
    assert found == {"a.mp4": ["riding bike", "cycling"], "b.mp4": ["playing guitar"], "c.mp4": [], "d.mp4": []}
    assert llm.calls == [2, 1]  # d.mp4 has no caption: no prompt


def test_deduplicate_groups_near_duplicates_and_keeps_the_most_frequent(minilm):
    concepts = {
        "1": ["riding bike", "playing guitar"],
        "2": ["riding bike", "swimming"],
        "3": ["riding a bicycle", "guitar playing"],
        "4": ["bike riding", "playing guitar", "swimming in a pool"],
        "5": ["swimming"],
    }
    vocab = deduplicate(concepts, minilm, clusters=3, seed=0)
    assert vocab.labels == ["playing guitar", "riding bike", "swimming"]  # counts 2, 2, 2: then alphabetical
    assert vocab.label_of["riding a bicycle"] == "riding bike" and vocab.label_of["bike riding"] == "riding bike"
    assert vocab.label_of["guitar playing"] == "playing guitar" and vocab.label_of["swimming in a pool"] == "swimming"
    assert sorted(sum(vocab.clusters, [])) == sorted({c for v in concepts.values() for c in v})
    assert vocab.counts["riding bike"] == 2
    rare = deduplicate(concepts, minilm, clusters=5, min_videos=2)
    assert set(rare.label_of) == {"riding bike", "playing guitar", "swimming"}
    with pytest.raises(InputError, match="no concept"):
        deduplicate({"a": []}, minilm)


def test_assign_labels_by_caption_similarity(minilm):
    captions = {"bike.mp4": ["a man rides a bicycle down the street"], "swim.mp4": ["a woman swims in the sea", "waves on a beach"], "none.mp4": []}
    labels = ["riding bike", "playing guitar", "swimming"]
    out = assign_labels(captions, labels, minilm, min_similarity=0.3)
    assert out == {"bike.mp4": ["riding bike"], "swim.mp4": ["swimming"], "none.mp4": []}
    # the rule itself, recomputed: cos(caption, "a video of {label}") >= threshold, best first, at most max_labels
    c = torch.nn.functional.normalize(minilm(captions["swim.mp4"]), dim=-1)
    lab = torch.nn.functional.normalize(minilm([f"a video of {x}" for x in labels]), dim=-1)
    best = (c @ lab.T).max(0).values
    expected = [labels[j] for j in torch.argsort(-best).tolist() if best[j] >= 0.0][:2]
    assert assign_labels({"swim.mp4": captions["swim.mp4"]}, labels, minilm, min_similarity=0.0, max_labels=2)["swim.mp4"] == expected


def test_caption_file_jsonl_csv_and_lookup(tmp_path):
    (tmp_path / "v").mkdir()
    jsonl = tmp_path / "caps.jsonl"
    jsonl.write_text(
        json.dumps({"path": "v/a.mp4", "captions": ["A dog  runs.", " "]}) + "\n" + json.dumps({"path": "v/a.mp4", "caption": "A dog jumps."}) + "\n\n",
        encoding="utf-8",
    )
    caps = CaptionFile(jsonl)
    assert caps(str(tmp_path / "v" / "a.mp4")) == ["A dog runs.", "A dog jumps."]
    assert caps("/elsewhere/a.mp4") == ["A dog runs.", "A dog jumps."]  # unique file name
    with pytest.raises(InputError, match="no captions"):
        caps(str(tmp_path / "b.mp4"))
    csv_file = tmp_path / "caps.csv"
    csv_file.write_text("path,caption\nv/b.mp4,A cat sleeps.\nv/b.mp4,A cat yawns.\n", encoding="utf-8")
    assert CaptionFile(csv_file)(str(tmp_path / "v" / "b.mp4")) == ["A cat sleeps.", "A cat yawns."]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "x.mp4", "captions": "not a list"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 1"):
        CaptionFile(bad)
    (tmp_path / "nocol.csv").write_text("video,text\na,b\n", encoding="utf-8")
    with pytest.raises(InputError, match="'path' and 'caption'"):
        CaptionFile(tmp_path / "nocol.csv")


def test_synthesize_end_to_end_records_failures(minilm):
    captions = {
        "a.mp4": ["a man rides a bicycle", "a man on a bike"],
        "b.mp4": ["a boy is riding a bike", "a street"],
        "c.mp4": ["a girl plays the guitar on stage"],
        "bad.mp4": None,
    }

    def caption(video):
        if captions[video] is None:
            raise InputError("cannot decode", path=video)
        return captions[video]

    llm = _fake_llm(
        {
            "a man rides a bicycle": "1. riding bicycle\n2. riding bike",
            "a boy is riding a bike": "1. riding bike",
            "a girl plays the guitar on stage": "1. playing guitar",
        }
    )
    done = []
    result = synthesize(list(captions), caption=caption, generate=llm, embed=minilm, clusters=2, min_similarity=0.3, progress=lambda d, t: done.append(d))
    assert done == [1, 2, 3, 4]
    assert set(result.failed) == {"bad.mp4"} and "cannot decode" in result.failed["bad.mp4"]
    assert result.vocabulary.labels == ["riding bike", "playing guitar"]
    assert result.labels == {"a.mp4": ["riding bike"], "b.mp4": ["riding bike"], "c.mp4": ["playing guitar"]}


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    """A random-weight BLIP captioner with a small WordPiece vocabulary, written as a local model directory."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_blip import BlipImageProcessor

    d = tmp_path_factory.mktemp("blip")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "runs", "on", "the", "beach"] + [f"w{i}" for i in range(40)]
    (d / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 64, "width": 64}), tokenizer=BertTokenizer(str(d / "vocab.txt")))
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    config = BlipConfig(
        text_config=dict(vocab_size=len(vocab), bos_token_id=2, sep_token_id=3, pad_token_id=0, **small),
        vision_config=dict(image_size=64, patch_size=16, **small),
        projection_dim=32,
    )
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(d)
    processor.save_pretrained(d)
    return d


def test_frame_captioner_equals_the_model_called_directly(tiny_blip, make_video):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from openvocab.io.decode import open_video

    video = make_video("clip.mp4", num_frames=24, size=(96, 64))
    captioner = FrameCaptioner(str(tiny_blip), frames=3, max_new_tokens=6)
    got = captioner(str(video))
    assert got and all(isinstance(c, str) and c for c in got)
    frames = open_video(video).read([4, 12, 20], max_short_side=384).frames  # uniform centres of 3 segments of 24
    processor, model = AutoProcessor.from_pretrained(tiny_blip), AutoModelForImageTextToText.from_pretrained(tiny_blip).eval()
    with torch.inference_mode():
        out = model.generate(**processor(images=list(frames), return_tensors="pt"), max_new_tokens=6, do_sample=False)
    expected = list(dict.fromkeys(" ".join(t.split()) for t in processor.batch_decode(out, skip_special_tokens=True)))
    assert got == expected
    with pytest.raises(InputError, match="captioning model"):
        FrameCaptioner(os.fspath(tiny_blip / "missing"))(str(video))


def test_cli_synthesize_writes_a_manifest_training_reads(cli, tmp_path, tiny_t5_dir):
    from openvocab.data.manifests import read_manifest

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (videos / name).write_bytes(b"")  # the captions file stands in for decoding
    caps = tmp_path / "caps.jsonl"
    caps.write_text(
        "".join(json.dumps({"path": str(videos / n), "captions": [c]}) + "\n" for n, c in (("a.mp4", "a man rides a bike"), ("b.mp4", "a dog swims"))),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    code, stdout, err = cli(
        "labels",
        "synthesize",
        str(videos),
        "-o",
        str(out),
        "--captions",
        str(caps),
        "--llm",
        str(tiny_t5_dir),
        "--text-encoder",
        "minilm",
        "--min-similarity",
        "-1",
    )
    # a random T5 answers gibberish: whatever it says is parsed, clustered and assigned -- the files must be coherent
    if code == 0:
        rows = [json.loads(line) for line in (out / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
        vocab = (out / "vocabulary.txt").read_text(encoding="utf-8").split("\n")[:-1]
        assert {r["path"] for r in rows} <= {str(videos / "a.mp4"), str(videos / "b.mp4")}
        assert all(set(r["labels"]) <= set(vocab) for r in rows)
        m = read_manifest(out / "labels.jsonl", check_files=False)
        assert len(m.records) == len(rows)
        assert json.loads((out / "clusters.json").read_text(encoding="utf-8"))[0]["label"] == vocab[0]
    else:
        assert "no concept" in err  # the random LLM produced no parsable list at all: one clear line
    code, _, err = cli("labels", "synthesize", str(videos), "-o", str(out), "--llm", str(tiny_t5_dir))
    assert code != 0 and "exactly one of --captions" in err
    code, _, err = cli("labels", "synthesize", "-o", str(out), "--captions", str(caps), "--llm", str(tiny_t5_dir))
    assert code != 0 and "no videos to label" in err


def test_numpy_free_of_nan_in_vocabulary(minilm):
    vocab = deduplicate({"a": ["x"], "b": ["x", "y"]}, minilm, clusters=1)
    assert vocab.labels == ["x"] and vocab.label_of == {"x": "x", "y": "x"}
    assert np.isfinite(np.array(list(vocab.counts.values()))).all()
