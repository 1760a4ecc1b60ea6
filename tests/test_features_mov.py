"""Flow and audio feature caches, and MOV heads trained from aligned caches (MOV §3-4 with frozen towers).

* an audio cache holds ``(N, C·V, 1, D)``: the frozen tower's ``encode_frames`` of the dataset's own audio input
  (one spectrogram per temporal view, repeated over crops); a flow cache the same of the dataset's flow images;
* the modality and its input settings are recorded and checked when a directory is resumed (also an unfinished one);
* a video + audio MOV head (cross-attention fusion, MOV's loss Eq. 9) trained from an rgb and an audio cache of the
  same videos learns tone classes that an rgb-only head cannot (the label lives only in the sound);
* caches that are not aligned (other videos, order, labels or views) or of the wrong modality are refused.
"""

from __future__ import annotations

import json

import pytest
import torch

from openvocab.data.dataset import VideoClipDataset
from openvocab.data.manifests import read_manifest
from openvocab.data.synth import SynthSpec, generate
from openvocab.errors import InputError
from openvocab.features.cache import FeatureCache, check_aligned, extract_features
from openvocab.io.modalities import InputSettings
from openvocab.io.sampling import SamplerSpec
from openvocab.models.backbone import ClipBackbone
from openvocab.models.factory import create_recognizer
from openvocab.models.spec import HeadSpec, RecognizerSpec, StreamSpec
from openvocab.train.head_training import evaluate_head, train_head

SECONDS = 2.0  # the synthetic clips last 2 s (8 frames at 4 fps)
SAMPLER = SamplerSpec(frames=4, temporal_views=2)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tone_synth(tmp_path_factory):
    """Four tone classes; the frames are drawn from the same distribution for every class."""
    spec = SynthSpec(
        label_factors=("tone",),
        tones=("low", "middle", "high", "very high"),
        clips_per_class=10,
        frames=8,
        fps=4.0,
        size=32,
        novel_fraction=0.0,
        val_fraction=0.4,
        test_fraction=0.0,
    )
    return generate(spec, tmp_path_factory.mktemp("tone_synth"), seed=0), spec.class_names()


@pytest.fixture(scope="module")
def backbone():
    return ClipBackbone.from_pretrained("random:tiny")


@pytest.fixture(scope="module")
def caches(tone_synth, backbone, tmp_path_factory):
    """``{(split, modality): FeatureCache}`` for train / val x rgb / audio."""
    root, _ = tone_synth
    out = tmp_path_factory.mktemp("tone_caches")
    loaded = {}
    for split in ("train", "val"):
        m = read_manifest(root / f"{split}.csv", classes=root / "classes.txt")
        for modality in ("rgb", "audio"):
            extract_features(
                backbone=backbone,
                records=m.records,
                classes=m.classes,
                out_dir=out / f"{split}_{modality}",
                sampler=SAMPLER,
                workers=0,
                modality=modality,
                audio_seconds=SECONDS,
            )
            loaded[split, modality] = FeatureCache(out / f"{split}_{modality}")
    return loaded


def _records(tone_synth, split="val", count=None):
    root, _ = tone_synth
    m = read_manifest(root / f"{split}.csv", classes=root / "classes.txt")
    return m, (m.records if count is None else m.records[:count])


def _dataset_reference(backbone, records, sampler, settings, key):
    """The frozen tower run on the dataset's own input of each record: ``(N, C·V, T, D)``."""
    ds = VideoClipDataset(records, sampler=sampler, clip=backbone.image_spec, train=False, inputs=settings)
    out = []
    with torch.inference_mode():
        for i in range(len(ds)):
            px = ds[i]["inputs"][key]  # (C, V, T, 3, H, W)
            c, v, t = px.shape[:3]
            out.append(backbone.encode_frames(px.reshape(c * v * t, *px.shape[3:])).float().reshape(c * v, t, -1))
    return torch.stack(out)


def test_audio_cache_equals_the_tower_on_the_dataset_audio(tone_synth, backbone, tmp_path):
    m, records = _records(tone_synth, count=5)
    sampler = SamplerSpec(frames=4, temporal_views=2, spatial_crops=3)  # crops: the audio is repeated, encoded once
    info = extract_features(
        backbone=backbone, records=records, classes=m.classes, out_dir=tmp_path / "a", sampler=sampler, workers=0, modality="audio", audio_seconds=SECONDS
    )
    assert info.modality == "audio" and info.inputs == {"audio_seconds": SECONDS} and info.failed == []
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    assert index["modality"] == "audio" and index["inputs"] == {"audio_seconds": SECONDS}
    cache = FeatureCache(tmp_path / "a")
    assert cache.modality == "audio" and cache.frames.shape == (5, 6, 1, backbone.embed_dim)  # T = 1
    ref = _dataset_reference(backbone, records, sampler, InputSettings(modalities=("audio",), audio_seconds=SECONDS), "audio")
    assert ref.shape == cache.frames.shape
    torch.testing.assert_close(cache.frames, ref, atol=2e-2, rtol=2e-2)  # stored as fp16
    # the spectrogram is the input, not the frames: the tones differ, so do the clips' features
    assert not torch.allclose(cache.frames[0], cache.frames[-1], atol=1e-2)
    assert cache.targets.tolist() == [records[int(i)].labels[0] for i in cache.index]


def test_flow_cache_equals_the_tower_on_the_dataset_flow(tone_synth, backbone, tmp_path):
    m, records = _records(tone_synth, count=3)
    sampler = SamplerSpec(frames=3, temporal_views=1, spatial_crops=3)
    info = extract_features(
        backbone=backbone, records=records, classes=m.classes, out_dir=tmp_path / "f", sampler=sampler, workers=0, modality="flow", flow_method="farneback"
    )
    assert info.modality == "flow" and info.inputs == {"flow_method": "farneback", "flow_cache": None}
    cache = FeatureCache(tmp_path / "f")
    assert cache.frames.shape == (3, 3, 3, backbone.embed_dim)
    ref = _dataset_reference(backbone, records, sampler, InputSettings(modalities=("flow",), flow_method="farneback"), "flow")
    torch.testing.assert_close(cache.frames, ref, atol=2e-2, rtol=2e-2)
    rgb = _dataset_reference(backbone, records, sampler, InputSettings(), "rgb")
    assert not torch.allclose(cache.frames, rgb, atol=0.1), "flow features must not be the RGB frames' features"


def test_resume_refuses_another_modality_or_setting(tone_synth, backbone, tmp_path):
    m, records = _records(tone_synth, count=3)
    out = tmp_path / "c"

    def extract(**kw):
        return extract_features(backbone=backbone, records=records, classes=m.classes, out_dir=out, sampler=SAMPLER, workers=0, **kw)

    extract(modality="audio", audio_seconds=SECONDS)
    for kw, words in (({}, "of audio (audio_seconds 2.0) features, not rgb"), ({"modality": "audio", "audio_seconds": 1.0}, "not audio (audio_seconds 1.0)")):
        with pytest.raises(InputError, match=r"choose another directory") as exc:
            extract(**kw)
        assert words in str(exc.value) and "\n" not in str(exc.value)
    assert extract(modality="audio", audio_seconds=SECONDS).count == 3  # the same settings: a finished cache, nothing redone
    # an interrupted extraction (shards, no index.json yet) is checked as well
    (out / "index.json").unlink()
    with pytest.raises(InputError, match="of audio .* not flow"):
        extract(modality="flow", flow_method="farneback")
    with pytest.raises(InputError, match="another manifest"):
        extract_features(
            backbone=backbone, records=records[:2], classes=m.classes, out_dir=out, sampler=SAMPLER, workers=0, modality="audio", audio_seconds=SECONDS
        )
    # a cache written before modalities existed reads as rgb, and resumes as rgb
    old = tmp_path / "old"
    extract_features(backbone=backbone, records=records, classes=m.classes, out_dir=old, sampler=SAMPLER, workers=0)
    index = json.loads((old / "index.json").read_text())
    del index["modality"], index["inputs"]
    (old / "index.json").write_text(json.dumps(index))
    (old / "extraction.json").unlink()
    assert FeatureCache(old).modality == "rgb"
    assert extract_features(backbone=backbone, records=records, classes=m.classes, out_dir=old, sampler=SAMPLER, workers=0).count == 3
    with pytest.raises(InputError, match="of rgb features, not audio"):
        extract_features(backbone=backbone, records=records, classes=m.classes, out_dir=old, sampler=SAMPLER, workers=0, modality="audio")


def _recognizer(backbone, class_names, streams, fusion):
    spec = RecognizerSpec(
        streams={s: StreamSpec(model="random:tiny", input=s, train_backbone=False, frames=1 if s == "audio" else SAMPLER.frames) for s in streams},
        head=HeadSpec(classifier="sentence", num_classes=len(class_names), logit_scale=20.0, prompts="single"),
        fusion=fusion,
    )
    return create_recognizer(spec, class_names=class_names, backbones=dict.fromkeys(streams, backbone), seed=0)


def test_mov_head_from_rgb_and_audio_caches_learns_the_tone(tone_synth, backbone, caches):
    """The label lives only in the sound: the rgb + audio MOV head learns it, the rgb-only head stays near chance (1/4)."""
    _, names = tone_synth
    scores = {}
    for streams, fusion in ((("rgb", "audio"), "mov"), (("rgb",), "identity")):
        torch.manual_seed(0)
        model = _recognizer(backbone, names, streams, fusion)
        train = {s: caches["train", s] for s in streams}
        history = train_head(model, train if len(streams) > 1 else train["rgb"], epochs=30, lr=3e-3, batch_size=8)
        scores[fusion] = (history, evaluate_head(model, {s: caches["val", s] for s in streams}))
    history, result = scores["mov"]
    assert history[-1] < 0.5 * history[0]
    assert result["videos"] == 16 and result["top1"] >= 0.75, result  # chance: 0.25
    assert scores["identity"][1]["top1"] <= 0.5, scores["identity"]


def test_mov_loss_is_eq9_on_the_fused_cached_features(tone_synth, backbone, caches):
    """One step's loss is MOV Eq. 9 of the recogniser's own fused outputs (what ``model(inputs, embed=True)`` gives)."""
    from openvocab.train.head_training import head_loss
    from openvocab.train.losses import mov_loss

    _, names = tone_synth
    model = _recognizer(backbone, names, ("rgb", "audio"), "mov")
    frames = {s: caches["train", s].frames[:6, 0] for s in ("rgb", "audio")}
    targets = caches["train", "rgb"].targets[:6]
    out = model._fuse(frames)
    video, other = model.head.embed(out.video), model.head.embed(out.other)
    expected = mov_loss(video, other, model.head.weight, targets, alpha=0.3, tau=1 / 20.0)
    torch.testing.assert_close(head_loss(model, frames, targets, mov_alpha=0.3), expected)
    assert not torch.allclose(head_loss(model, frames, targets, mov_alpha=0.0), head_loss(model, frames, targets, mov_alpha=1.0))


def test_misaligned_or_mismatched_caches_are_refused(tone_synth, backbone, caches):
    _, names = tone_synth
    model = _recognizer(backbone, names, ("rgb", "audio"), "mov")
    with pytest.raises(InputError, match="same videos in the same order"):
        train_head(model, {"rgb": caches["train", "rgb"], "audio": caches["val", "audio"]}, epochs=1)
    with pytest.raises(InputError, match="holds audio features, but stream 'rgb' reads rgb"):
        train_head(model, {"rgb": caches["train", "audio"], "audio": caches["train", "audio"]}, epochs=1)
    with pytest.raises(InputError, match="streams are rgb, audio; got feature caches for rgb"):
        evaluate_head(model, caches["val", "rgb"])
    shuffled = FeatureCache(caches["train", "audio"].directory)
    shuffled.targets = shuffled.targets.roll(1)
    with pytest.raises(InputError, match="disagree on the videos' labels"):
        check_aligned({"rgb": caches["train", "rgb"], "audio": shuffled})
    fewer_views = FeatureCache(caches["train", "audio"].directory)
    fewer_views.frames = fewer_views.frames[:, :1]
    with pytest.raises(InputError, match="other views") as exc:
        train_head(model, {"rgb": caches["train", "rgb"], "audio": fewer_views}, epochs=1)
    assert "\n" not in str(exc.value)
