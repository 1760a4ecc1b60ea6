"""Feature cache: same features as the classify path, resumable extraction, heads trained from the cache."""

from __future__ import annotations

import pytest
import torch

from openvocab.classifier import VideoClassifier
from openvocab.data.manifests import read_manifest
from openvocab.data.synth import SynthSpec, generate
from openvocab.features import cache as cache_mod
from openvocab.features.cache import FeatureCache, extract_features
from openvocab.io.sampling import SamplerSpec
from openvocab.models.backbone import ClipBackbone
from openvocab.models.factory import RecognizerSpec, create_recognizer
from openvocab.train.head_training import evaluate_head, train_head


@pytest.fixture(scope="module")
def colour_synth(tmp_path_factory):
    spec = SynthSpec(
        shapes=("circle",),
        colours=("red", "blue", "green"),
        motions=("left", "right"),
        label_factors=("colour",),
        clips_per_class=8,
        frames=6,
        size=48,
        novel_fraction=0.0,
        val_fraction=0.25,
        test_fraction=0.0,
        object_size=(0.25, 0.3),
    )
    return generate(spec, tmp_path_factory.mktemp("colour_synth"), seed=2)


@pytest.fixture(scope="module")
def backbone():
    return ClipBackbone.from_pretrained("random:tiny")


def test_cached_features_equal_the_classify_path(colour_synth, backbone, tmp_path):
    m = read_manifest(colour_synth / "val.csv", classes=colour_synth / "classes.txt")
    spec = SamplerSpec(frames=4, temporal_views=2, spatial_crops=3)
    info = extract_features(backbone=backbone, records=m.records, classes=m.classes, out_dir=tmp_path / "c", sampler=spec, layers=(1,), shard_size=4, workers=0)
    assert info.count == len(m.records) and len(info.shards) == -(-len(m.records) // 4) and info.failed == []
    cache = FeatureCache(tmp_path / "c", with_tokens=True)
    assert cache.frames.shape == (len(m.records), 6, 4, backbone.embed_dim)
    assert cache.tokens.shape[:4] == (len(m.records), 6, 4, 1)
    clf = VideoClassifier(recognizer=create_recognizer(RecognizerSpec.zero_shot("random:tiny"), backbones={"rgb": backbone}))
    for row in (0, len(m.records) - 1):
        ref = clf.embed_video(m.records[int(cache.index[row])].path, sampler=spec).frames  # (C, V, T, D)
        torch.testing.assert_close(cache.frames[row], ref.reshape(6, 4, -1), atol=2e-2, rtol=2e-2)  # stored as fp16
    assert cache.targets.tolist() == [m.records[int(i)].labels[0] for i in cache.index]


def test_extraction_resumes_where_it_stopped(colour_synth, backbone, tmp_path, monkeypatch):
    m = read_manifest(colour_synth / "train.csv", classes=colour_synth / "classes.txt")
    spec = SamplerSpec(frames=2)
    out = tmp_path / "c"
    calls = []
    original = cache_mod.save_file

    def crash_on_second_shard(tensors, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user pressed ^C while shard 2 was being written
        original(tensors, path)

    monkeypatch.setattr(cache_mod, "save_file", crash_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        extract_features(backbone=backbone, records=m.records, classes=m.classes, out_dir=out, sampler=spec, shard_size=5, workers=0)
    assert sorted(p.name for p in out.iterdir()) == ["extraction.json", "shard_00000.safetensors"], "no partial shard, no index yet"
    monkeypatch.setattr(cache_mod, "save_file", lambda t, p: (calls.append(p), original(t, p)))
    info = extract_features(backbone=backbone, records=m.records, classes=m.classes, out_dir=out, sampler=spec, shard_size=5, workers=0)
    assert len(calls) == 2 + len(info.shards) - 1, "the finished shard is not extracted again"
    assert FeatureCache(out).frames.shape[0] == len(m.records)
    other = SamplerSpec(frames=3)
    with pytest.raises(Exception, match="another model or sampler"):
        extract_features(backbone=backbone, records=m.records, classes=m.classes, out_dir=out, sampler=other, workers=0)


def test_heads_train_from_the_cache(colour_synth, backbone, tmp_path):
    """Colour classes are linearly separable even in a random ViT's features: a linear probe must find that."""
    spec = SamplerSpec(frames=4)
    caches = {}
    for split in ("train", "val"):
        m = read_manifest(colour_synth / f"{split}.csv", classes=colour_synth / "classes.txt")
        extract_features(backbone=backbone, records=m.records, classes=m.classes, out_dir=tmp_path / split, sampler=spec, workers=0)
        caches[split] = FeatureCache(tmp_path / split)
    names = ["red circle", "blue circle", "green circle"]
    rspec = RecognizerSpec.single(model="random:tiny", num_classes=3, classifier="linear", frames=4, train_backbone=False)
    model = create_recognizer(rspec, class_names=names, backbones={"rgb": backbone})
    history = train_head(model, caches["train"], epochs=60, lr=1e-2, batch_size=8)
    result = evaluate_head(model, caches["val"])
    assert history[-1] < history[0] * 0.7
    assert result["top1"] >= 0.8


def test_features_cli_extract_and_train_head(colour_synth, tiny_model_dir, tmp_path, monkeypatch, capsys):
    import json
    import sys

    from openvocab.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["openvocab", "features", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return exc.value.code, out, err

    for split in ("train", "val"):
        code, out, err = run(
            "extract",
            str(colour_synth / f"{split}.csv"),
            "--out",
            str(tmp_path / split),
            "--model",
            str(tiny_model_dir),
            "--frames",
            "4",
            "--classes",
            str(colour_synth / "classes.txt"),
            "--workers",
            "0",
        )
        assert code == 0 and "cached" in out, err
    code, out, err = run(
        "train-head", str(tmp_path / "train"), "--val", str(tmp_path / "val"), "--classifier", "linear", "--epochs", "40", "--lr", "0.01", "--batch-size", "8"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["trained"] and result["val"]["top1"] >= 0.8
    code, out, err = run("train-head", str(tmp_path / "nope"))
    assert code == 2 and "not a feature cache" in err
