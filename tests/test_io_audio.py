"""Audio (MOV §4.1/§4.2): decoding sound tracks, the AST log-mel against transformers' ASTFeatureExtractor, crops,
test views, SpecAugment, the spectrogram "image", and one-line errors for bad input."""

from __future__ import annotations

import csv
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest

from openvocab.errors import InputError, VideoDecodeError
from openvocab.io import audio
from openvocab.io.decode import probe_video

# Measured on this machine (numpy path of the extractor: torchaudio is not installed, see DESIGN.md): the largest
# |ours - ASTFeatureExtractor| over the three shared wavs and the generated tone video is 1.19e-07 (one float32 ulp
# of values near 1), padded or not. The tolerance leaves room for other FFT/BLAS builds.
AST_TOLERANCE = 1e-5


def _assert_one_line_error(exc: BaseException, path: Path) -> None:
    text = str(exc)
    assert path.name in text, text
    assert "\n" not in text, text


def _tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write_wav(path: Path, channels: list[np.ndarray], rate: int) -> Path:
    """A 16-bit PCM wav (stdlib ``wave``) from per-channel float waveforms in [-1, 1]."""
    pcm = np.round(np.stack(channels, axis=1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(len(channels))
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(samples, channels) float64 in [-1, 1) and the rate, read with the stdlib (the reference decoder)."""
    with wave.open(str(path), "rb") as src:
        assert src.getsampwidth() == 2
        data = np.frombuffer(src.readframes(src.getnframes()), dtype="<i2").reshape(-1, src.getnchannels())
        return data / 32768.0, src.getframerate()


@pytest.fixture(scope="module")
def extractor():
    from transformers import ASTFeatureExtractor

    with warnings.catch_warnings():  # its 128 Kaldi filters over 257 FFT bins include empty ones (so do ours)
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        return ASTFeatureExtractor(num_mel_bins=128)


def _reference(extractor, waveform: np.ndarray) -> np.ndarray:
    out = extractor(waveform, sampling_rate=16000, return_tensors="np")["input_values"][0]
    assert out.shape == (1024, 128) and out.dtype == np.float32
    return out


def _check_against_ast(extractor, waveform: np.ndarray) -> float:
    """Max |log_mel - ASTFeatureExtractor| on the unpadded frames and after the extractor's padding to 1024."""
    ours = audio.log_mel(waveform)
    ref = _reference(extractor, waveform)
    assert ours.dtype == np.float32 and ours.shape == (audio.num_frames(waveform.shape[0]), 128)
    n = min(ours.shape[0], 1024)
    unpadded = float(np.abs(ours[:n] - ref[:n]).max())
    padded = float(np.abs(audio.fit_length(ours, frames=audio.AST_MAX_FRAMES) - ref).max())
    assert unpadded <= AST_TOLERANCE and padded <= AST_TOLERANCE, (unpadded, padded)
    return max(unpadded, padded)


# --------------------------------------------------------------------------------------------------- equivalence
def test_log_mel_equals_ast_feature_extractor_on_shared_wavs(shared_data: Path, extractor) -> None:
    """Every wav of ../shared/data (16 and 44.1 kHz stereo): load_audio matches the stdlib reading (mean of the two
    channels, resampled by FFmpeg for 44.1 kHz), and log_mel matches ASTFeatureExtractor(num_mel_bins=128) to
    1.19e-07 (max abs, measured), unpadded and padded to 1024 frames."""
    with open(shared_data / "manifest.csv", newline="") as fh:
        wavs = [row for row in csv.DictReader(fh) if row["path"].endswith(".wav")]
    assert len(wavs) >= 3
    for row in wavs:
        path = shared_data / row["path"]
        clip = audio.load_audio(path)
        raw, rate = _read_wav(path)
        assert clip.sample_rate == 16000 and clip.waveform.dtype == np.float32 and clip.waveform.ndim == 1
        assert (clip.source_sample_rate, clip.source_channels) == (rate, raw.shape[1])
        assert clip.duration_s == pytest.approx(raw.shape[0] / rate, abs=1e-3)
        assert clip.duration_s == pytest.approx(float(row["duration_s"]), abs=0.01)
        if rate == 16000:  # no resampling: exactly the channel mean of the 16-bit samples
            np.testing.assert_allclose(clip.waveform, raw.mean(axis=1), atol=1e-7)
        _check_against_ast(extractor, clip.waveform)


def test_log_mel_equals_ast_feature_extractor_on_a_video_sound_track(make_video, extractor) -> None:
    """A 440 Hz tone in an mp4 (aac) written by write_video: the decoded track is 2 s (codec padding cut), its log-mel
    matches ASTFeatureExtractor (max abs 1.19e-07 measured) and peaks in the mel band holding 440 Hz."""
    tone = _tone(440.0, 2.0, 16000)
    path = make_video("tone.mp4", 50, fps=25, audio=tone, sample_rate=16000)
    assert audio.has_audio(path) and probe_video(path).has_audio
    clip = audio.load_audio(path)
    assert clip.duration_s == pytest.approx(2.0, abs=0.01)
    _check_against_ast(extractor, clip.waveform)
    spec = audio.log_mel(clip.waveform)
    peak_band = int(np.argmax(spec[20:-20].mean(axis=0)))
    _, filters = audio._kaldi_filters(16000, 128)
    fft_bin = int(round(440 / (16000 / 512)))
    assert filters[fft_bin, peak_band] > 0, (peak_band, np.nonzero(filters[fft_bin])[0])


def test_edge_waveforms_match_ast_feature_extractor(extractor) -> None:
    """Silence, a clip of exactly one window, a clip longer than 1024 frames (truncated by fit_length), noise."""
    rng = np.random.default_rng(0)
    for waveform in (
        np.zeros(16000, np.float32),
        rng.uniform(-1, 1, 400).astype(np.float32),
        (0.3 * rng.standard_normal(16000 * 11)).clip(-1, 1).astype(np.float32),
    ):
        _check_against_ast(extractor, waveform)


def test_silent_audio_is_finite() -> None:
    """log(0) is floored (float32 epsilon, as Kaldi and AST): silence is a constant, finite spectrogram."""
    spec = audio.log_mel(np.zeros(3 * 16000, np.float32))
    assert np.isfinite(spec).all()
    assert np.allclose(spec, (np.log(np.float32(audio.MEL_FLOOR)) - audio.AST_MEAN) / (2 * audio.AST_STD), atol=1e-5)
    for batch in (audio.eval_images(np.zeros(20 * 16000, np.float32)), audio.train_image(np.zeros(100, np.float32), rng=0)):
        assert np.isfinite(batch).all()


# --------------------------------------------------------------------------------------------------- decoding
def test_resampling_44k1_stereo_to_16k_mono(tmp_path: Path) -> None:
    """A 440 Hz tone at 44.1 kHz, 0.5 amplitude left and 0.3 right: 16 kHz mono of amplitude 0.4 (channel mean),
    spectrum peak at 440 Hz, duration kept."""
    path = _write_wav(tmp_path / "tone.wav", [_tone(440.0, 2.0, 44100, 0.5), _tone(440.0, 2.0, 44100, 0.3)], 44100)
    clip = audio.load_audio(path)
    assert (clip.sample_rate, clip.source_sample_rate, clip.source_channels) == (16000, 44100, 2)
    assert clip.waveform.shape == (32000,) and clip.duration_s == pytest.approx(2.0, abs=1e-3)
    middle = clip.waveform[1600:-1600].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(middle.size)))
    freqs = np.fft.rfftfreq(middle.size, d=1 / 16000)
    assert abs(freqs[spectrum.argmax()] - 440.0) <= freqs[1]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.01)
    short = audio.load_audio(path, max_seconds=0.5)
    np.testing.assert_array_equal(short.waveform, clip.waveform[:8000])
    assert audio.load_audio(path, sample_rate=8000).waveform.shape == (16000,)


def test_real_video_sound_tracks(shared_data: Path) -> None:
    """has_audio agrees with the manifest for every clip; the avi's mp3 track is the wav it was made from."""
    with open(shared_data / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        assert audio.has_audio(shared_data / row["path"]) == (row["has_audio"] == "yes"), row["path"]
    video = audio.load_audio(shared_data / "videos" / "applying_eye_makeup.avi")
    wav = audio.load_audio(shared_data / "audio" / "applying_eye_makeup.wav")
    assert video.waveform.shape == wav.waveform.shape
    assert np.abs(video.waveform - wav.waveform).max() < 1e-3


def test_video_without_audio_track(make_video) -> None:
    """No sound track: has_audio is False (no error to catch), load_audio raises NoAudioTrack, an InputError."""
    path = make_video("silent_film.mp4", 10)
    assert audio.has_audio(path) is False
    assert probe_video(path).has_audio is False
    with pytest.raises(audio.NoAudioTrack) as info:
        audio.load_audio(path)
    assert isinstance(info.value, InputError) and not isinstance(info.value, VideoDecodeError)
    _assert_one_line_error(info.value, path)
    assert "no audio track" in str(info.value)


def test_bad_files_give_one_line_errors(tmp_path: Path, make_video) -> None:
    rng = np.random.default_rng(0)
    garbage = tmp_path / "noise.wav"
    garbage.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    header_only = tmp_path / "header_only.wav"
    header_only.write_bytes(_write_wav(tmp_path / "ok.wav", [_tone(440, 0.5, 16000)], 16000).read_bytes()[:30])
    text = tmp_path / "notes.txt"
    text.write_text("not a sound\n" * 50)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    # an mp4 whose audio payload is overwritten with noise: the container opens, the aac track does not decode
    good = make_video("tone.mp4", 25, fps=25, audio=_tone(440.0, 1.0, 16000), sample_rate=16000)
    data = bytearray(good.read_bytes())
    start = data.find(b"mdat") + 8
    data[start:] = rng.integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    corrupt = tmp_path / "corrupt_track.mp4"
    corrupt.write_bytes(bytes(data))
    cases = {garbage: "not a recognised", header_only: "not a recognised", text: "text file", empty: "empty file", corrupt: "no decodable samples"}
    for path, words in cases.items():
        with pytest.raises(VideoDecodeError) as info:
            audio.load_audio(path)
        _assert_one_line_error(info.value, path)
        assert words in str(info.value)
    for path in (garbage, text):  # the probe fails the same way: a file that is not audio/video is not "no audio"
        with pytest.raises(VideoDecodeError):
            audio.has_audio(path)
    for path in (tmp_path / "missing.wav", tmp_path):
        with pytest.raises(InputError) as info:
            audio.load_audio(path)
        _assert_one_line_error(info.value, path)
    with pytest.raises(InputError, match="sample_rate"):
        audio.load_audio(good, sample_rate=0)


def test_bad_waveforms_are_refused() -> None:
    with pytest.raises(InputError, match="2\\*\\*15"):
        audio.log_mel(np.zeros(16000, np.int16))
    with pytest.raises(InputError, match="mono"):
        audio.log_mel(np.zeros((2, 16000), np.float32))
    with pytest.raises(InputError, match="NaN"):
        audio.log_mel(np.full(16000, np.nan, np.float32))
    with pytest.raises(InputError, match="rng"):
        audio.random_crop(np.zeros(16000, np.float32), rng=None)
    assert audio.log_mel(np.zeros((1, 16000), np.float32)).shape == (98, 128)


# --------------------------------------------------------------------------------------------------- crops and views
def test_crop_sizes_follow_the_paper() -> None:
    """MOV §4.1/§4.2: 100 frames per second, 8 s -> (128, 800)."""
    assert audio.crop_frames(8.0) == 800
    assert audio.num_frames(audio.crop_samples(8.0)) == 800
    assert audio.num_frames(audio.crop_samples(8.0) - 1) == 799
    assert audio.log_mel(np.zeros(audio.crop_samples(8.0), np.float32)).shape == (800, 128)
    assert audio.num_frames(399) == 0 and audio.log_mel(np.zeros(399, np.float32)).shape == (0, 128)


def test_random_crop_is_a_crop_of_the_whole_spectrogram() -> None:
    """The waveform window starts on a hop, so its log-mel is exactly 800 frames of the whole clip's log-mel."""
    rng = np.random.default_rng(1)
    wav = (0.2 * rng.standard_normal(12 * 16000)).astype(np.float32)
    whole = audio.log_mel(wav)
    starts = set()
    for seed in range(5):
        crop = audio.random_crop(wav, rng=seed)
        assert crop.shape == (audio.crop_samples(8.0),)
        np.testing.assert_array_equal(crop, audio.random_crop(wav, rng=np.random.default_rng(seed)))
        start = int(np.flatnonzero(wav == crop[0])[0])
        np.testing.assert_array_equal(crop, wav[start : start + crop.size])
        assert start % 160 == 0
        np.testing.assert_allclose(audio.log_mel(crop), whole[start // 160 : start // 160 + 800], atol=1e-5)
        starts.add(start)
    assert len(starts) > 1


def test_short_audio_is_padded_like_ast() -> None:
    """Shorter than the 8 s crop: used whole, the spectrogram padded with AST_ZERO (AST's raw-zero padding)."""
    wav = _tone(440.0, 3.0, 16000)
    np.testing.assert_array_equal(audio.random_crop(wav, rng=0), wav)
    spec = audio.log_mel(wav)
    assert spec.shape == (298, 128)
    fitted = audio.fit_length(spec, frames=800)
    np.testing.assert_array_equal(fitted[:298], spec)
    assert (fitted[298:] == np.float32(audio.AST_ZERO)).all()
    assert audio.AST_ZERO == pytest.approx(0.46703, abs=1e-5)
    np.testing.assert_array_equal(audio.fit_length(spec, frames=100), spec[:100])
    views = audio.temporal_views(wav)
    assert views.shape == (12, wav.size) and (views == wav).all()
    images = audio.eval_images(wav)
    assert images.shape == (12, 3, 128, 800) and images.dtype == np.float32
    np.testing.assert_array_equal(images[5, 1], fitted.T)
    train = audio.train_image(wav, rng=3)
    assert train.shape == (3, 128, 800) and train.dtype == np.float32


def test_temporal_views_are_evenly_spaced() -> None:
    """12 hop-aligned 8 s windows from the clip's start to its end, evenly spaced (to one hop)."""
    n = 20 * 16000 + 123
    wav = ((np.arange(n) % 2**20) / 2**20).astype(np.float32)  # exactly invertible ramp: value -> position
    views = audio.temporal_views(wav)
    length = audio.crop_samples(8.0)
    assert views.shape == (12, length)
    starts = np.round(views[:, 0].astype(np.float64) * 2**20).astype(np.int64)
    for start, view in zip(starts, views):
        np.testing.assert_array_equal(view, wav[start : start + length])
    assert starts[0] == 0 and (starts % 160 == 0).all()
    assert n - (starts[-1] + length) < 160
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 160
    assert audio.temporal_views(wav, views=1).shape == (1, length)


# --------------------------------------------------------------------------------------------------- SpecAugment
def test_spec_augment_masks_one_band_of_each_within_bounds() -> None:
    rng = np.random.default_rng(2)
    spec = (rng.standard_normal((800, 128)) + 10).astype(np.float32)  # never equal to AST_ZERO
    before = spec.copy()
    widths_t, widths_f = [], []
    for seed in range(200):
        out = audio.spec_augment(spec, rng=seed)
        np.testing.assert_array_equal(out, audio.spec_augment(spec, rng=np.random.default_rng(seed)))
        masks = audio.sample_spec_masks(frames=800, bins=128, rng=seed)
        np.testing.assert_array_equal(out, audio.apply_spec_masks(spec, masks))
        filled = out == np.float32(audio.AST_ZERO)
        rows = np.flatnonzero(filled.all(axis=1))
        cols = np.flatnonzero(filled.all(axis=0))
        np.testing.assert_array_equal(rows, np.arange(masks.time_start, masks.time_start + masks.time_width))
        np.testing.assert_array_equal(cols, np.arange(masks.freq_start, masks.freq_start + masks.freq_width))
        assert 0 <= masks.time_width <= 192 and 0 <= masks.freq_width <= 48
        assert masks.time_start + masks.time_width <= 800 and masks.freq_start + masks.freq_width <= 128
        expected = np.zeros_like(filled)  # nothing outside the two bands is touched
        expected[rows] = True
        expected[:, cols] = True
        np.testing.assert_array_equal(filled, expected)
        widths_t.append(masks.time_width)
        widths_f.append(masks.freq_width)
    assert max(widths_t) > 150 and max(widths_f) > 38  # the whole ranges are used
    assert not np.array_equal(audio.spec_augment(spec, rng=0), audio.spec_augment(spec, rng=1))
    np.testing.assert_array_equal(spec, before)  # the input is never modified
    short = audio.sample_spec_masks(frames=50, bins=16, rng=0, time_mask=192, freq_mask=48)
    assert short.time_start + short.time_width <= 50 and short.freq_start + short.freq_width <= 16


def test_train_image_is_reproducible() -> None:
    wav = (0.1 * np.random.default_rng(4).standard_normal(10 * 16000)).astype(np.float32)
    a = audio.train_image(wav, rng=7)
    np.testing.assert_array_equal(a, audio.train_image(wav, rng=np.random.default_rng(7)))
    assert a.shape == (3, 128, 800)
    assert not np.array_equal(a, audio.train_image(wav, rng=8))


# --------------------------------------------------------------------------------------------------- CLIP input
def test_spectrogram_image_layout() -> None:
    """(frames, bins) -> (3, bins, frames): three equal channels, frequency as rows, time as columns."""
    spec = np.arange(800 * 128, dtype=np.float32).reshape(800, 128)
    image = audio.spectrogram_image(spec)
    assert image.shape == (3, 128, 800) and image.dtype == np.float32 and image.flags.c_contiguous
    for channel in image:
        np.testing.assert_array_equal(channel, spec.T)
    assert image[0, 5, 700] == spec[700, 5]
    batch = audio.spectrogram_image(np.stack([spec, spec + 1]))
    assert batch.shape == (2, 3, 128, 800)
    np.testing.assert_array_equal(batch[1, 2], spec.T + 1)
    with pytest.raises(InputError):
        audio.spectrogram_image(np.zeros(10, np.float32))
