"""MOV's inputs from plain video files (MOV §4.1-4.2) as the datasets, ``classify`` and ``evaluate`` feed them: flow
images that follow the RGB clip's crop and flip (a flip negates the x motion), audio spectrograms per temporal view,
silence for a video without (readable) sound, and the classifier's choice of MOV's base / novel / video-only rule."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from openvocab.data.augment import AugmentSpec, VideoAugment
from openvocab.data.dataset import VideoClipDataset
from openvocab.data.records import VideoRecord
from openvocab.data.synth import SynthSpec, render_clip
from openvocab.errors import InputError
from openvocab.io.encode import write_video
from openvocab.io.modalities import InputSettings, load_waveform
from openvocab.io.sampling import SamplerSpec
from openvocab.io.transforms import CLIP_MEAN, CLIP_STD, ImageSpec
from openvocab.models.spec import HeadSpec, RecognizerSpec, StreamSpec
from openvocab.scoring import MOV_BETA, MOV_TAU_VIDEO, mov_base_probabilities, mov_novel_probabilities

S = 64  # crop size of the dataset tests
T = 4
SECONDS = 1.0  # audio window: spectrograms of 100 frames
CLASSES = ["low tone", "high tone"]
_MEAN = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255.0
_STD = torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255.0

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _levels(x: torch.Tensor) -> torch.Tensor:
    """CLIP-normalised ``(..., 3, H, W)`` -> the 0..255 image levels."""
    return x * _STD + _MEAN


def _corrupt_audio_copy(src: Path, dst: Path) -> Path:
    """``src`` remuxed with every audio packet's payload replaced by noise: the video stream is untouched."""
    rng = np.random.default_rng(1)
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        audio = out.add_stream_from_template(inp.streams.audio[0])
        for packet in inp.demux():
            if packet.size == 0:
                continue
            if packet.stream.type == "audio":
                noise = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                noise.pts, noise.dts, noise.time_base = packet.pts, packet.dts, packet.time_base
                noise.stream = audio
                out.mux(noise)
            else:
                packet.stream = video
                out.mux(packet)
    return dst


def _video_only_copy(src: Path, dst: Path) -> Path:
    """``src`` remuxed without its audio stream: the same encoded pictures (a second encode of the same frames need
    not give the same bits: x264's frame threads)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.size == 0:
                continue
            packet.stream = video
            out.mux(packet)
    return dst


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> SimpleNamespace:
    """A red circle moving right (about 5 px per frame) for 2 s with a 440 Hz tone; the same frames without sound;
    the same file with a corrupt sound track."""
    root = tmp_path_factory.mktemp("mov_inputs")
    spec = SynthSpec(motions=("right",), tones=("middle",), label_factors=("tone",), frames=8, fps=4.0, size=S, travel=(0.6, 0.6))
    clip = {"colour": "red", "shape": "circle", "motion": "right", "tone": "middle"}
    frames, wav = render_clip(spec, clip, rng=np.random.default_rng(0), tone_hz=440.0)
    tone = write_video(root / "tone.mp4", frames, fps=4, audio=wav, sample_rate=16000)
    return SimpleNamespace(
        tone=tone,
        silent=_video_only_copy(tone, root / "silent film.mp4"),
        corrupt=_corrupt_audio_copy(tone, root / "corrupt_track.mp4"),
        frames=frames,
        missing=root / "missing.mp4",
    )


def _mov_spec(other: str, **stream) -> RecognizerSpec:
    return RecognizerSpec(
        streams={
            "rgb": StreamSpec(model="random:tiny", train_backbone=False, frames=T),
            other: StreamSpec(model="random:tiny", input=other, frames=T, **stream),
        },
        head=HeadSpec(classifier="text", num_classes=len(CLASSES)),
        fusion="mov",
    )


# --------------------------------------------------------------------------------------------------- 7. training flow
def test_training_flow_follows_the_rgb_crop_and_flip_and_a_flip_negates_x(videos):
    settings = _mov_spec("flow", flow_method="farneback").input_settings()
    assert settings.modalities == ("rgb", "flow") and settings.flow_method == "farneback"

    def item(flip_p: float) -> dict:
        # brightness and grayscale on every clip: they must reach the RGB frames and never the flow images
        augment = VideoAugment(
            AugmentSpec(size=S, scale=(0.4, 0.8), flip_p=flip_p, gray_p=1.0, randaugment_n=1, randaugment_m=9, randaugment_ops=("Brightness",))
        )
        ds = VideoClipDataset(
            [VideoRecord(path=str(videos.tone), labels=(0,))],
            sampler=SamplerSpec(frames=T),
            clip=ImageSpec(size=S, resize_short_side=S),
            train=True,
            augment=augment,
            seed=3,
            inputs=settings,
        )
        return ds[0]["inputs"]

    flipped, plain = item(1.0), item(0.0)
    for x in (flipped, plain):
        assert set(x) == {"rgb", "flow"}
        assert x["rgb"].shape == x["flow"].shape == (T, 3, S, S)
    # same draw otherwise: the RGB clip is the exact mirror image (same crop, same brightness, grey)
    torch.testing.assert_close(flipped["rgb"], plain["rgb"].flip(-1), atol=1e-5, rtol=0)
    rgb = _levels(plain["rgb"])
    assert torch.allclose(rgb[:, 0], rgb[:, 2], atol=1e-3), "the RGB clip went through the random grayscale"

    f, p = _levels(flipped["flow"]), _levels(plain["flow"])
    x_plain = p[:, 0]
    assert (x_plain - 128).abs().max() > 20, "the clip must move for the test to mean anything"
    moving = (x_plain - 128).abs() > 5
    assert float((x_plain - 128)[moving].mean()) > 0, "an object moving right has positive x flow"
    mirror_x = f[:, 0].flip(-1)
    negated = (256 - x_plain).clamp(0, 255)  # about the zero-motion level 128, which stays 128
    assert (mirror_x - negated).abs().max() <= 1.0 + 1e-3, "x: mirrored AND negated (level v -> 256 - v)"
    assert (mirror_x - negated).abs().mean() < 0.05
    assert (mirror_x - x_plain).abs().max() > 20, "a mirror alone would leave the motion pointing the wrong way"
    torch.testing.assert_close(f[:, 1].flip(-1), p[:, 1], atol=1e-3, rtol=0)  # y: only mirrored
    zero = (128 / 255 - CLIP_MEAN[2]) / CLIP_STD[2]
    for x in (flipped, plain):  # neither brightness nor grayscale reached the flow: the third channel stays 128
        torch.testing.assert_close(x["flow"][:, 2], torch.full_like(x["flow"][:, 2], zero), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------------- 8. evaluation items
def _eval_item(path: Path, *, temporal_views: int = 2, crops: int = 3, modalities=("rgb", "flow", "audio")):
    ds = VideoClipDataset(
        [VideoRecord(path=str(path), labels=(1,))],
        sampler=SamplerSpec(frames=T, temporal_views=temporal_views, spatial_crops=crops),
        clip=ImageSpec(size=S, resize_short_side=S),
        inputs=InputSettings(modalities=modalities, flow_method="farneback", audio_seconds=SECONDS),
    )
    return ds[0]


def _silence_spectrograms(views: int) -> torch.Tensor:
    from openvocab.io.audio import crop_samples, eval_images

    return torch.from_numpy(eval_images(np.zeros(crop_samples(SECONDS), np.float32), views=views, seconds=SECONDS))


def test_evaluation_items_carry_flow_and_one_spectrogram_per_temporal_view(videos):
    from openvocab.io.audio import eval_images, load_audio
    from openvocab.io.flow import compute_flow, flow_to_image
    from openvocab.io.sampling import sample_indices
    from openvocab.io.transforms import preprocess_frames

    item = _eval_item(videos.tone)
    x = item["inputs"]
    assert item["target"] == 1
    assert x["rgb"].shape == x["flow"].shape == (3, 2, T, 3, S, S)
    assert x["audio"].shape == (3, 2, 1, 3, 128, int(100 * SECONDS))
    # audio: the evaluation windows of the file's own sound (one per temporal view), the same for every crop
    windows = torch.from_numpy(eval_images(load_audio(videos.tone).waveform, views=2, seconds=SECONDS))
    for crop in range(3):
        torch.testing.assert_close(x["audio"][crop, :, 0], windows)
    assert not torch.allclose(windows, _silence_spectrograms(2), atol=1e-2)
    # flow: the image of the pair (i, i+1) of every sampled frame i, CLIP-normalised like the frames
    with av.open(str(videos.tone)) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    indices = sample_indices(SamplerSpec(frames=T, temporal_views=2), len(decoded)).reshape(-1)
    flow = compute_flow(decoded, method="farneback")  # (N-1, H, W, 2): flow[i] is the pair (i, i+1)
    expected = preprocess_frames(flow_to_image(flow[np.minimum(indices, len(decoded) - 2)]), size=S, crops=3, resize_short_side=S)
    torch.testing.assert_close(x["flow"], expected.reshape(3, 2, T, 3, S, S), atol=0.02, rtol=0)


def test_videos_without_readable_sound_give_silence_and_a_missing_file_raises(videos, caplog):
    good = _eval_item(videos.tone, modalities=("rgb", "audio"))["inputs"]
    for path, why in ((videos.silent, "no audio track"), (videos.corrupt, "no decodable samples")):
        audio = load_waveform(path, seconds=SECONDS)
        assert audio.present is False and why in audio.problem
        assert not audio.waveform.any()
        item = _eval_item(path, modalities=("rgb", "audio"))
        assert item is not None, f"{path.name}: the video must still be usable"
        x = item["inputs"]
        assert x["audio"].shape == (3, 2, 1, 3, 128, 100)
        for crop in range(3):
            torch.testing.assert_close(x["audio"][crop, :, 0], _silence_spectrograms(2))
        torch.testing.assert_close(x["rgb"], good["rgb"], atol=0.05, rtol=0)  # the pictures are unaffected
    assert load_waveform(videos.tone, seconds=SECONDS).present is True
    assert any("corrupt_track.mp4" in r.getMessage() for r in caplog.records), "an unreadable track is logged"
    train = VideoClipDataset(
        [VideoRecord(path=str(videos.silent), labels=(0,))],
        sampler=SamplerSpec(frames=T),
        clip=ImageSpec(size=S, resize_short_side=S),
        train=True,
        inputs=InputSettings(modalities=("rgb", "audio"), audio_seconds=SECONDS),
    )[0]
    assert train["inputs"]["audio"].shape == (1, 3, 128, 100)

    with pytest.raises(InputError) as info:
        load_waveform(videos.missing, seconds=SECONDS)
    assert "\n" not in str(info.value) and str(videos.missing) in str(info.value) and "no such file" in str(info.value)
    assert _eval_item(videos.missing, modalities=("rgb", "audio")) is None, "datasets skip a missing file (and log it)"


# --------------------------------------------------------------------------------------------------- 9. classify
@pytest.fixture(scope="module")
def audio_model():
    from openvocab.models.factory import create_recognizer

    return create_recognizer(_mov_spec("audio", audio_seconds=SECONDS), class_names=CLASSES).eval()


def _own_outputs(model, path: Path):
    """The recogniser's own MOV outputs for the 1x1 view of ``path`` (the dataset's inputs: the training path)."""
    item = VideoClipDataset(
        [VideoRecord(path=str(path), labels=(0,))],
        sampler=SamplerSpec(frames=T),
        clip=model.backbone.image_spec,
        inputs=model.spec.input_settings(),
    )[0]
    inputs = {k: v.reshape(1, *v.shape[2:]) for k, v in item["inputs"].items()}  # (1, T, ...) / (1, 1, 3, 128, F)
    with torch.no_grad():
        return inputs, model(inputs, embed=True), model(inputs)


def _scores(result) -> dict[str, float]:
    return {ls.label: ls.score for ls in result.labels}


def test_classify_picks_eq10_for_training_classes_and_eq11_12_otherwise(audio_model, videos):
    from openvocab.classifier import VideoClassifier

    model = audio_model
    clf = VideoClassifier(recognizer=model, label_bank=None)
    inputs, out, logits = _own_outputs(model, videos.tone)

    base = clf.classify(videos.tone, ["high tone", "low tone"], frames=T, top_k=2, segments=2)
    assert "Eq. 10" in base.scoring and base.modalities == ["rgb", "audio"] and base.warnings == []
    expected = logits.softmax(-1)[0]  # Eq. 10 = the recogniser's own forward, in class order
    got = _scores(base)
    torch.testing.assert_close(torch.tensor([got[c] for c in CLASSES]), expected, atol=1e-4, rtol=0)
    assert base.segments and all(sum(ls.score for ls in s.labels) == pytest.approx(1.0, abs=1e-5) for s in base.segments)
    assert "Eq. 10" in clf.classify(videos.tone, ["High  Tone", " LOW tone"], frames=T, segments=0).scoring, "case / spaces do not matter"

    labels = ["low tone", "dog barking", "high tone"]
    novel = clf.classify(videos.tone, labels, frames=T, top_k=3, segments=0)
    assert "Eq. 11-12" in novel.scoring and novel.modalities == ["rgb", "audio"]
    label_emb = model.label_encoder.encode(labels)
    expected = mov_novel_probabilities(out.other[0], out.frozen_video[0], label_emb, tau_other=1.0 / model.logit_scale, tau_video=MOV_TAU_VIDEO, beta=MOV_BETA)
    got = _scores(novel)
    torch.testing.assert_close(torch.tensor([got[c] for c in labels]), expected, atol=1e-4, rtol=0)
    assert (mov_base_probabilities(out.video[0], label_emb) - expected).abs().max() > 1e-3, "the rules must differ here"
    mixed = VideoClassifier(recognizer=model, label_bank=None, mov_beta=0.6, mov_tau_video=0.02).classify(videos.tone, labels, frames=T, top_k=3, segments=0)
    assert "beta 0.6" in mixed.scoring
    expected = mov_novel_probabilities(out.other[0], out.frozen_video[0], label_emb, tau_other=1.0 / model.logit_scale, tau_video=0.02, beta=0.6)
    got = _scores(mixed)
    torch.testing.assert_close(torch.tensor([got[c] for c in labels]), expected, atol=1e-4, rtol=0)


def test_classify_falls_back_to_the_video_alone_and_refuses_what_a_mov_run_cannot_do(audio_model, videos):
    from openvocab.classifier import VideoClassifier

    model = audio_model
    clf = VideoClassifier(recognizer=model, label_bank=None)
    labels = ["low tone", "dog barking"]
    silent = clf.classify(videos.silent, labels, frames=T, top_k=2, segments=0)
    assert silent.modalities == ["rgb"] and "video only" in silent.scoring
    assert any(str(videos.silent) in w and "no audio track" in w for w in silent.warnings), silent.warnings
    # numerically: zero-shot CLIP on the TAP of the frozen RGB features at the head's τ
    inputs, _, _ = _own_outputs(model, videos.silent)
    with torch.no_grad():
        frozen = model.streams["rgb"].frame_features(inputs["rgb"]).mean(dim=1)[0]
    expected = mov_base_probabilities(frozen, model.label_encoder.encode(labels), tau=1.0 / model.logit_scale)
    got = _scores(silent)
    torch.testing.assert_close(torch.tensor([got[c] for c in labels]), expected, atol=1e-4, rtol=0)

    corrupt = clf.classify(videos.corrupt, labels, frames=T, segments=0)
    assert corrupt.modalities == ["rgb"] and "video only" in corrupt.scoring and any("corrupt_track.mp4" in w for w in corrupt.warnings)

    only_rgb = VideoClassifier(recognizer=model, label_bank=None, modalities="rgb").classify(videos.tone, labels, frames=T, segments=0)
    assert only_rgb.modalities == ["rgb"] and "video only" in only_rgb.scoring
    assert any("--modalities" in w for w in only_rgb.warnings)
    both = VideoClassifier(recognizer=model, label_bank=None, modalities="audio, RGB").classify(videos.tone, labels, frames=T, segments=0)
    assert both.modalities == ["rgb", "audio"] and "Eq. 11-12" in both.scoring
    with pytest.raises(InputError, match="rgb") as info:
        VideoClassifier(recognizer=model, label_bank=None, modalities="audio")
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="multi-label"):
        clf.classify(videos.tone, labels, multi_label=True)


def test_classify_with_more_frames_than_the_mov_temporal_transformer_holds_is_a_one_line_error(audio_model, videos):
    from openvocab.classifier import VideoClassifier

    result = VideoClassifier(recognizer=audio_model, label_bank=None).classify(videos.tone, CLASSES, frames=80, segments=0, on_error="skip")
    assert not result.ok and "64" in result.error and "\n" not in result.error


# --------------------------------------------------------------------------------------------------- 10. evaluate
def test_mov_score_chooses_the_rule_by_vocabulary_and_averages_per_view_probabilities(audio_model):
    from openvocab.eval.run import mov_score
    from openvocab.models.factory import create_recognizer

    model = audio_model
    for names in (["LOW  tone", " high tone "], ["high tone"]):
        assert mov_score(model, names)[1] == "base", names
    assert mov_score(model, ["low tone", "dog barking"])[1] == "novel"
    assert mov_score(create_recognizer(RecognizerSpec.zero_shot("random:tiny")), CLASSES) == (None, None)

    g = torch.Generator().manual_seed(0)
    videos = torch.randn(2, 3, 3, 16, generator=g)  # (N, views, [v_m, x_m, v], D)
    classes = torch.randn(4, 16, generator=g)
    tau = 1.0 / model.logit_scale

    def by_hand(per_view) -> torch.Tensor:
        return torch.stack([torch.stack([per_view(videos[n, v]) for v in range(3)]).mean(0) for n in range(2)])

    score, _ = mov_score(model, ["low tone"])
    base = by_hand(lambda e: mov_base_probabilities(e[0], classes, tau=tau))
    torch.testing.assert_close(score(videos, classes), base, atol=1e-6, rtol=1e-5)
    pooled = mov_base_probabilities(videos[:, :, 0].mean(1), classes, tau=tau)
    assert (pooled - base).abs().max() > 1e-3, "averaging probabilities differs from scoring the averaged embedding"

    score, _ = mov_score(model, ["dog barking"])
    novel = by_hand(lambda e: mov_novel_probabilities(e[1], e[2], classes, tau_other=tau, tau_video=MOV_TAU_VIDEO, beta=MOV_BETA))
    torch.testing.assert_close(score(videos, classes), novel, atol=1e-6, rtol=1e-5)
    score, _ = mov_score(model, ["dog barking"], beta=0.5, tau_video=0.05)
    tuned = by_hand(lambda e: mov_novel_probabilities(e[1], e[2], classes, tau_other=tau, tau_video=0.05, beta=0.5))
    torch.testing.assert_close(score(videos, classes), tuned, atol=1e-6, rtol=1e-5)

    from dataclasses import replace

    spec = _mov_spec("audio", audio_seconds=SECONDS)
    score_fusion = create_recognizer(replace(spec, head=replace(spec.head, logit_scale=10.0), fusion="score"), class_names=CLASSES)
    score, rule = mov_score(score_fusion, ["high tone"])
    assert rule == "base-mean"
    mean = by_hand(lambda e: 0.5 * (mov_base_probabilities(e[0], classes, tau=0.1) + mov_base_probabilities(e[1], classes, tau=0.1)))
    torch.testing.assert_close(score(videos, classes), mean, atol=1e-6, rtol=1e-5)


def test_a_one_frame_video_falls_back_to_the_video_alone_for_a_flow_run(videos, tmp_path):
    """MOV's bad-input case for flow: a single frame has no frame pair, so classify scores it from the video alone
    (named in a warning) instead of failing, and a batch with a normal clip carries on with both modalities."""
    from openvocab.classifier import VideoClassifier
    from openvocab.models.factory import create_recognizer

    model = create_recognizer(_mov_spec("flow", flow_method="farneback"), class_names=CLASSES).eval()
    still = write_video(tmp_path / "one frame.mp4", videos.frames[:1], fps=4)
    one, both = VideoClassifier(recognizer=model, label_bank=None).classify([still, videos.silent], CLASSES, frames=T, segments=0)
    assert one.ok and one.modalities == ["rgb"] and one.scoring.startswith("video only")
    assert any("one frame.mp4" in w and "one-frame video" in w for w in one.warnings)
    assert both.ok and both.modalities == ["rgb", "flow"] and "Eq. 10" in both.scoring
