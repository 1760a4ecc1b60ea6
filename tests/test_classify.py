"""The main job end to end: decode -> sample -> preprocess -> CLIP -> TAP -> scores, against a reference."""

from __future__ import annotations

import csv

import av
import numpy as np
import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

import openvocab
from openvocab.errors import InputError, VideoDecodeError
from openvocab.io.encode import write_video
from openvocab.io.sampling import SamplerSpec, uniform_segments
from openvocab.results import to_csv, to_json

LABELS = ["playing guitar", "yoga", "dog barking", "arm wrestling"]


def _smooth_clip(path, n=40, w=320, h=240):
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, ..., 0] = (xx + 4 * i) % 256
        frames[i, ..., 1] = yy * 255 // h
        frames[i, ..., 2] = ((xx + yy) // 3 + 8 * i) % 256
    return write_video(path, frames, fps=20)


@pytest.fixture
def clf(tiny_model_dir, tmp_path):
    return openvocab.load(tiny_model_dir, label_bank=tmp_path / "bank.sqlite")


def test_scores_match_a_transformers_reference_pipeline(clf, tiny_model_dir, tmp_path):
    """Every frame decoded to RGB, CLIPProcessor per frame, CLIPModel features, TAP, 28-template ensemble."""
    video = _smooth_clip(tmp_path / "smooth.mp4")
    ours = clf.classify(video, LABELS, frames=8, top_k=len(LABELS))

    model = CLIPModel.from_pretrained(str(tiny_model_dir)).eval()
    processor = CLIPProcessor.from_pretrained(str(tiny_model_dir))
    with av.open(str(video)) as container:
        all_frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    picks = uniform_segments(len(all_frames), 8)
    templates = clf.prompts.templates
    assert len(templates) == 28
    with torch.inference_mode():
        pixels = processor(images=[all_frames[i] for i in picks], return_tensors="pt")["pixel_values"]
        video_emb = model.get_image_features(pixel_values=pixels).pooler_output.mean(0)
        tok = processor.tokenizer([t.format(label) for label in LABELS for t in templates], padding=True, return_tensors="pt")
        text = model.get_text_features(**tok).pooler_output
        text = torch.nn.functional.normalize(text, dim=-1).reshape(len(LABELS), 28, -1).mean(1)
        text = torch.nn.functional.normalize(text, dim=-1)
        probs = (model.logit_scale.exp() * torch.nn.functional.normalize(video_emb, dim=-1) @ text.T).softmax(-1)
    expected = {label: float(p) for label, p in zip(LABELS, probs)}
    got = {ls.label: ls.score for ls in ours.labels}
    for label in LABELS:
        assert got[label] == pytest.approx(expected[label], abs=2e-3)
    ours_emb = clf.embed_video(video).frames.mean(dim=(0, 1, 2))
    cos = torch.nn.functional.cosine_similarity(ours_emb, video_emb, dim=0)
    assert cos > 0.995, f"clip embedding differs from the reference (cos {cos:.4f})"


def test_label_bank_encodes_each_label_once_ever(tiny_model_dir, tmp_path, make_video):
    video = make_video("v.mp4", num_frames=20)
    bank = tmp_path / "bank.sqlite"
    first = openvocab.load(tiny_model_dir, label_bank=bank)
    calls = []
    original = first.backbone.encode_prompts
    first.backbone.encode_prompts = lambda prompts, **kw: (calls.append(len(prompts)), original(prompts, **kw))[1]
    assert first.encode_labels(LABELS).encoded == 4 and calls == [4 * 28]
    a = first.classify(video, LABELS)
    assert calls == [4 * 28], "classify found the labels in the bank"
    again = openvocab.load(tiny_model_dir, label_bank=bank)  # a new process would see the same file
    again.backbone.encode_prompts = lambda prompts, **kw: (calls.append(len(prompts)), original(prompts, **kw))[1]
    b = again.classify(video, LABELS)
    assert again.encode_labels(LABELS).encoded == 0 and calls == [4 * 28], "a re-run must encode nothing"
    assert [(x.label, round(x.score, 5)) for x in a.labels] == [(x.label, round(x.score, 5)) for x in b.labels]
    assert again.encode_labels(LABELS + ["surfing", "juggling"]).encoded == 2 and calls == [4 * 28, 2 * 28], "expansion encodes only the new labels"
    again.classify(video, LABELS + ["surfing", "juggling"])
    assert calls == [4 * 28, 2 * 28]


def test_views_segments_samplers_and_formats(clf, make_video):
    video = make_video("v.mp4", num_frames=60, fps=10)
    r = clf.classify(video, LABELS, views="4x3", frames=4, top_k=2)
    assert r.frames_sampled == 16 and r.views == "4x3" and len(r.labels) == 2
    assert r.labels[0].score >= r.labels[1].score
    assert 1 <= len(r.segments) <= 4
    assert r.segments[0].start_s == 0.0 and r.segments[-1].end_s == pytest.approx(r.duration_s)
    d = clf.classify(video, LABELS, sampler="dense", frames=8, stride=2, segments=0)
    assert d.frames_sampled == 8 and d.segments == []
    rows = list(csv.DictReader(to_csv([r, d]).splitlines()))
    assert {row["scope"] for row in rows} == {"clip", "segment"}
    assert '"predicted"' in to_json([r])


def test_softmax_and_multi_label_outputs(clf, make_video):
    video = make_video("v.mp4", num_frames=20)
    single = clf.classify(video, LABELS, top_k=4)
    assert sum(ls.score for ls in single.labels) == pytest.approx(1.0, abs=1e-5)
    assert single.predicted == [single.labels[0].label]
    multi = clf.classify(video, LABELS, top_k=4, multi_label=True, threshold=0.0)
    assert sorted(multi.predicted) == sorted(LABELS) and multi.threshold == 0.0
    none = clf.classify(video, LABELS, top_k=4, multi_label=True, threshold=1.01)
    assert none.predicted == []


def test_arrays_lists_and_errors(clf, make_video, tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (12, 64, 80, 3), dtype=np.uint8)
    r = clf.classify(frames, LABELS)
    assert r.ok and r.path == "<array>"
    good = make_video("good.mp4", num_frames=20)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    results = clf.classify([good, bad], LABELS, on_error="skip")
    assert [x.ok for x in results] == [True, False]
    assert "bad.mp4" in results[1].error and "\n" not in results[1].error
    with pytest.raises(VideoDecodeError):
        clf.classify(bad, LABELS)
    with pytest.raises(InputError, match="empty label list"):
        clf.classify(good, [" ", ""])


def test_long_and_unicode_labels(clf, make_video, caplog):
    video = make_video("vidéo avec espaces.mp4", num_frames=20)
    long_label = "x" * 2000
    r = clf.classify(video, ["café au lait", "跳舞", long_label])
    assert {ls.label for ls in r.labels} == {"café au lait", "跳舞", long_label}
    assert any("truncated" in rec.getMessage() for rec in caplog.records)


def test_every_real_clip_decodes_and_classifies(clf, shared_data):
    rows = [row for row in csv.DictReader((shared_data / "manifest.csv").open()) if row["path"].startswith("videos/")]
    assert len(rows) >= 10
    labels = sorted({row["label"] for row in rows})
    results = clf.classify([shared_data / row["path"] for row in rows], labels, frames=8, on_error="skip")
    for row, res in zip(rows, results):
        assert res.ok, f"{row['path']}: {res.error}"
        assert res.frames_sampled == 8 and len(res.labels) == 5
        assert res.duration_s == pytest.approx(float(row["duration_s"]), rel=0.15)


def test_truncated_file_is_sampled_over_its_true_length(clf, make_video, tmp_path, frame_code):
    """A file cut short keeps its header's frame count; frames must still be spread over what really decodes."""
    from openvocab.io.decode import open_video

    full = make_video("full.mp4", num_frames=200, size=(96, 64))  # index at the front: the cut keeps "200 frames"
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.5)])
    source = open_video(cut)
    declared = source.info.num_frames
    d = clf._decode(cut, SamplerSpec(frames=8), 25.0)
    decoded, info = d.decoded, d.info
    got = frame_code.frame_indices(decoded.frames)
    assert declared == 200 and info.num_frames < 150
    assert got == sorted(got) and len(set(got)) == 8, f"frames not spread over the decodable part: {got}"
    assert got[-1] >= 0.6 * info.num_frames
