"""Audio input of MOV: decoding a file's sound track, the AST log-mel spectrogram and its crops, masks and views.

MOV §4.1 ("VGGSound audio spectrogram") follows the Audio Spectrogram Transformer (AST): the waveform is resampled
to 16 kHz mono, turned into a log-mel spectrogram with 128 frequency bins, a 25 ms window and a 10 ms hop (t
seconds give a 128 x 100t "image"), and normalised by the dataset mean and standard deviation. MOV §4.2 ("Data
augmentation") crops 8 s (128 x 800) at random for training, applies SpecAugment with a time mask of up to 192
frames and a frequency mask of up to 48 bins, duplicates the spectrogram to three channels for CLIP's patch
embedding (whose position embedding the model interpolates to the spectrogram's grid), and tests with 12 temporal
views whose scores are averaged (§4.2 "Inference hyper-parameters").

The path of a sound track (every step is a separate, explicit function)::

    load_audio(path) -> AudioClip.waveform (S,) float32 in [-1, 1], 16 kHz mono
      -> random_crop (train) | temporal_views (test)      windows of 8 s, aligned to the 10 ms hop
      -> log_mel                                          (frames, 128) float32, AST-normalised
      -> fit_length(frames=800)                           pad / truncate, as ASTFeatureExtractor does
      -> spec_augment (train only)                        one time mask <= 192 frames, one frequency mask <= 48 bins
      -> spectrogram_image                                (3, 128, frames): channels, frequency = height, time = width

:func:`train_image` and :func:`eval_images` compose the two branches.

Exactness. :func:`log_mel` is transformers' ``ASTFeatureExtractor(num_mel_bins=128)`` without its padding: a
Kaldi-compatible filter bank (``torchaudio.compliance.kaldi.fbank`` with ``window_type="hanning"``, dither 0, as AST's
own code calls it), computed with numpy from transformers' ``audio_utils`` mel filters and window. Per 400-sample
frame: remove the DC offset, pre-emphasis 0.97, symmetric Hann window (AST's and the extractor's "hanning"; the MOV
text says "Hamming", AST's code — which MOV says it follows — uses Hann), 512-point power spectrum, 128 Kaldi mel
filters from 20 Hz to 8 kHz, ``log(max(energy, 1.1920929e-07))`` (float32 epsilon: silence gives a finite
-15.94, never ``-inf``), then ``(x - (-4.2677393)) / (2 * 4.5689974)`` (AudioSet statistics). The waveform is NOT
scaled by 2**15 (the extractor and AST's data code feed [-1, 1] floats). Frames are independent of each other
(Kaldi ``snip_edges``: ``1 + (S - 400) // 160`` frames), so a window cut from the waveform at a multiple of the
hop gives exactly the frames cut from the whole clip's spectrogram: cropping the waveform (cheap) is cropping the
spectrogram as MOV describes it.

Padding (short audio). AST pads the filter bank with zeros *before* normalising (``ZeroPad2d`` in both AST's
data code and ``ASTFeatureExtractor``), and SpecAugment's masks also write zeros before normalising. After
normalisation such a zero is :data:`AST_ZERO` ``= 4.2677393 / 9.1379948 = 0.46703`` — not silence (silence is
about -1.277). MOV follows AST, so this module pads the same way: clips shorter than the 8 s crop are used whole
(every test view is then the whole clip) and :func:`fit_length` pads the spectrogram's missing frames with
:data:`AST_ZERO`, and :func:`spec_augment` fills its masks with the same value. Nothing loops the audio.

No sound track. :func:`load_audio` raises :class:`NoAudioTrack` (an :class:`~openvocab.errors.InputError`) for a
file without an audio stream. Callers that fall back to the modalities a video has (MOV) check first with
:func:`has_audio` — a header probe, no decoding — or read :attr:`openvocab.io.decode.VideoInfo.has_audio` of a
video they already opened; they never need to catch anything. Every user-caused failure is one line naming the file
(:class:`~openvocab.errors.InputError` / :class:`~openvocab.errors.VideoDecodeError`).
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass

import av
import numpy as np

from openvocab.errors import InputError, VideoDecodeError
from openvocab.io.decode import TEXT_DEMUXERS, check_media_file, iter_decoded, open_container

__all__ = [
    "AST_MAX_FRAMES",
    "AST_MEAN",
    "AST_STD",
    "AST_ZERO",
    "MEL_FLOOR",
    "MOV_CROP_SECONDS",
    "MOV_FREQ_MASK",
    "MOV_TIME_MASK",
    "MOV_VIEWS",
    "NUM_MEL_BINS",
    "SAMPLE_RATE",
    "AudioClip",
    "NoAudioTrack",
    "SpecMasks",
    "apply_spec_masks",
    "crop_frames",
    "crop_samples",
    "eval_images",
    "fit_length",
    "has_audio",
    "load_audio",
    "log_mel",
    "num_frames",
    "random_crop",
    "sample_spec_masks",
    "spec_augment",
    "spectrogram_image",
    "temporal_views",
    "train_image",
]

SAMPLE_RATE = 16000
"""MOV §4.1: "the raw audio signal is re-sampled to 16kHz and converted to mono channel"."""
NUM_MEL_BINS = 128
"""MOV §4.1: "log mel spectrogram with 128 frequency bins"."""
WINDOW_S = 0.025
"""MOV §4.1: 25 ms analysis window (400 samples at 16 kHz)."""
HOP_S = 0.010
"""MOV §4.1: 10 ms hop (160 samples at 16 kHz): 100 frames per second."""
AST_MEAN = -4.2677393
"""AudioSet mean of the AST log-mel (``ASTFeatureExtractor.mean``)."""
AST_STD = 4.5689974
"""AudioSet standard deviation of the AST log-mel (``ASTFeatureExtractor.std``); AST divides by twice this."""
AST_ZERO = float(np.float32((0.0 - AST_MEAN) / (AST_STD * 2)))
"""A raw log-mel value of 0 after AST normalisation (0.46703): AST's padding and SpecAugment fill value."""
AST_MAX_FRAMES = 1024
"""``ASTFeatureExtractor.max_length``: AST's fixed input length (10.24 s); MOV uses 8 s crops instead."""
MEL_FLOOR = 1.192092955078125e-07
"""Energy floor before the log (float32 epsilon, Kaldi's and the extractor's): silence stays finite."""
MOV_CROP_SECONDS = 8.0
"""MOV §4.2: "a random cropping of (128, 800) ... with a time duration of 8 seconds"."""
MOV_TIME_MASK = 192
"""MOV §4.2: SpecAugment "time masking range of 192 frames"."""
MOV_FREQ_MASK = 48
"""MOV §4.2: SpecAugment "frequency masking of 48 bins"."""
MOV_VIEWS = 12
"""MOV §4.2: "For audio, we use 12 temporal views without spatial cropping"."""

_PADDING_S = 0.1  # decoded audio at most this much longer than the stream header says is codec padding: trimmed
_FBANK_CHUNK = 4096  # frames per vectorised FFT block (bounds memory on hour-long tracks)


class NoAudioTrack(InputError):
    """The file opened fine but has no audio stream (e.g. a silent video); MOV then uses the other modalities.

    Check beforehand with :func:`has_audio` (or ``VideoInfo.has_audio``) to avoid handling this error at all.
    """


@dataclass(frozen=True)
class AudioClip:
    """A decoded sound track: ``waveform`` (S,) float32 mono in [-1, 1] at ``sample_rate`` Hz.

    ``source_sample_rate`` and ``source_channels`` describe the stream before resampling and down-mixing.
    """

    path: str
    waveform: np.ndarray
    sample_rate: int
    source_sample_rate: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        """Length in seconds (samples / sample rate)."""
        return self.waveform.shape[0] / self.sample_rate

    def __repr__(self) -> str:
        return f"AudioClip(path={self.path!r}, samples={self.waveform.shape[0]}, sample_rate={self.sample_rate}, duration_s={self.duration_s:.3f})"


# --------------------------------------------------------------------------------------------------- decoding
def _check_file(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    check_media_file(text, directory="is a directory, not an audio or video file")
    return text


def _open(path: str) -> av.container.InputContainer:
    container = open_container(path, kind="audio or video")
    if TEXT_DEMUXERS.intersection((container.format.name or "").split(",")):
        container.close()
        raise VideoDecodeError("not audio or video (a text file)", path=path)
    return container


def has_audio(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has an audio stream, from the container header alone (no decoding; MOV's modality check).

    Returns False for a file that opens but has no audio stream (a silent video); raises the same one-line
    :class:`~openvocab.errors.InputError` / :class:`~openvocab.errors.VideoDecodeError` as :func:`load_audio` for a
    missing, empty, unrecognised or text file. ``True`` does not promise the track decodes (a corrupt track fails in
    :func:`load_audio`).
    """
    text = _check_file(path)
    with _open(text) as container:
        return bool(container.streams.audio)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (np.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def load_audio(path: str | os.PathLike[str], *, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> AudioClip:
    """Decode the first audio stream of a video or audio file to mono float32 at ``sample_rate`` (MOV §4.1: 16 kHz mono).

    PyAV/FFmpeg decodes the stream and its ``AudioResampler`` converts it to float samples at ``sample_rate`` keeping
    the channels; mono is the mean of the channels (as torchaudio/librosa down-mix; FFmpeg's own stereo-to-mono
    matrix, 0.707 (L + R), can leave [-1, 1]). Samples are clipped to [-1, 1] (lossy codecs overshoot slightly).
    ``max_seconds`` stops decoding after that much audio (long files). Up to 0.1 s of samples beyond the duration in
    the stream header are codec padding (AAC decodes whole 1024-sample frames) and are cut, so a 2 s track in an mp4
    loads as 2 s; a header that claims more than was decoded changes nothing.

    Raises :class:`NoAudioTrack` when the file has no audio stream (check with :func:`has_audio` first to fall back
    without an error), :class:`~openvocab.errors.VideoDecodeError` when the file is not audio/video or its audio
    track yields no decodable samples, :class:`~openvocab.errors.InputError` for a missing file or a bad option.
    A track that breaks off part-way (truncated file) returns the samples decoded up to there.
    """
    rate = _positive_int(sample_rate, "sample_rate")
    limit = None if max_seconds is None else int(round(_positive_float(max_seconds, "max_seconds") * rate))
    text = _check_file(path)
    with _open(text) as container:
        if not container.streams.audio:
            what = "a video without sound" if container.streams.video else "no streams FFmpeg can read"
            raise NoAudioTrack(f"no audio track ({what})", path=text)
        stream = container.streams.audio[0]
        source_rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        source_channels = int(stream.codec_context.channels or 0)
        resampler = av.AudioResampler(format="fltp", layout=None, rate=rate)
        chunks: list[np.ndarray] = []
        total = 0
        codec_name = stream.codec_context.name
        declared = None  # samples the header promises (codec end padding, e.g. AAC's last 1024-sample frame, is cut)
        if stream.duration and stream.time_base:
            declared = int(round(float(stream.duration * stream.time_base) * rate))
        try:
            for frame in iter_decoded(container, stream):
                for out in resampler.resample(frame):
                    chunks.append(_downmix(out))
                    total += chunks[-1].shape[0]
                if limit is not None and total >= limit:
                    break
            for out in resampler.resample(None):
                chunks.append(_downmix(out))
        except (av.FFmpegError, OSError, ValueError) as exc:
            if not chunks:
                raise VideoDecodeError(f"cannot decode the audio track ({codec_name}): {exc}", path=text) from exc
    mono = np.concatenate(chunks) if chunks else np.zeros((0,), np.float32)
    if mono.size == 0:
        raise VideoDecodeError(f"the audio track ({codec_name}) has no decodable samples (corrupt or truncated?)", path=text)
    if declared and 0 < mono.shape[0] - declared <= _PADDING_S * rate:
        mono = mono[:declared]
    if limit is not None:
        mono = mono[:limit]
    waveform = np.clip(np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0).astype(np.float32, copy=False)
    return AudioClip(text, waveform, rate, source_rate or rate, source_channels or 1)


def _downmix(frame: av.AudioFrame) -> np.ndarray:
    """(n,) float32 mono of a planar float frame: the mean of its channels."""
    planes = frame.to_ndarray()
    return planes[0].astype(np.float32) if planes.shape[0] == 1 else planes.mean(axis=0, dtype=np.float64).astype(np.float32)


# --------------------------------------------------------------------------------------------------- log-mel
def _frame_sizes(sample_rate: int) -> tuple[int, int, int]:
    """(window, hop, fft) lengths in samples: 25 ms, 10 ms, next power of two (400, 160, 512 at 16 kHz)."""
    window = int(round(WINDOW_S * sample_rate))
    hop = int(round(HOP_S * sample_rate))
    return window, hop, 1 << (window - 1).bit_length()


@functools.lru_cache(maxsize=8)
def _kaldi_filters(sample_rate: int, num_mel_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(window (W,), mel filters (fft/2+1, bins)) exactly as ``ASTFeatureExtractor`` builds them without torchaudio."""
    from transformers.audio_utils import mel_filter_bank, window_function

    window, _, fft = _frame_sizes(sample_rate)
    with warnings.catch_warnings():  # 128 Kaldi bins over 257 FFT bins leave the lowest filters empty: true of AST too
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        filters = mel_filter_bank(
            num_frequency_bins=fft // 2 + 1,
            num_mel_filters=num_mel_bins,
            min_frequency=20,
            max_frequency=sample_rate // 2,
            sampling_rate=sample_rate,
            norm=None,
            mel_scale="kaldi",
            triangularize_in_mel_space=True,
        )
    win = np.asarray(window_function(window, "hann", periodic=False), dtype=np.float64)
    filters = np.asarray(filters, dtype=np.float64)
    win.setflags(write=False)
    filters.setflags(write=False)
    return win, filters


def _check_waveform(waveform: np.ndarray) -> np.ndarray:
    arr = np.asarray(waveform)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise InputError(f"waveform must be mono (S,) samples, got shape {tuple(arr.shape)} (average the channels first)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"waveform must be floating point in [-1, 1] (AST does not scale by 2**15), got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise InputError("waveform contains NaN or infinite samples")
    return arr


def num_frames(samples: int, *, sample_rate: int = SAMPLE_RATE) -> int:
    """Spectrogram frames of ``samples`` samples (Kaldi ``snip_edges``): ``1 + (samples - 400) // 160``, 0 if shorter."""
    window, hop, _ = _frame_sizes(sample_rate)
    return 0 if samples < window else 1 + (samples - window) // hop


def log_mel(
    waveform: np.ndarray,
    *,
    sample_rate: int = SAMPLE_RATE,
    num_mel_bins: int = NUM_MEL_BINS,
    normalize: bool = True,
    mean: float = AST_MEAN,
    std: float = AST_STD,
) -> np.ndarray:
    """AST log-mel of a mono waveform (MOV §4.1): ``(frames, num_mel_bins)`` float32, ``frames = 1 + (S - 400) // 160``.

    Equals ``ASTFeatureExtractor(num_mel_bins=128)(waveform, sampling_rate=16000)["input_values"][0]`` on its first
    ``frames`` rows (the extractor also pads/truncates to 1024 frames: here that is :func:`fit_length`). See the
    module docstring for the exact steps; the FFTs are batched rather than the extractor's per-frame loop. A
    waveform shorter than one 25 ms window gives ``(0, num_mel_bins)``; silence gives finite values. With
    ``normalize=False`` the raw natural-log energies are returned.
    """
    rate = _positive_int(sample_rate, "sample_rate")
    bins = _positive_int(num_mel_bins, "num_mel_bins")
    wav = _check_waveform(waveform).astype(np.float64)
    window_len, hop, fft = _frame_sizes(rate)
    window, filters = _kaldi_filters(rate, bins)
    count = num_frames(wav.shape[0], sample_rate=rate)
    out = np.empty((count, bins), dtype=np.float32)
    if count:
        strided = np.lib.stride_tricks.sliding_window_view(wav, window_len)[::hop][:count]
        for lo in range(0, count, _FBANK_CHUNK):
            frames = strided[lo : lo + _FBANK_CHUNK]
            frames = frames - frames.mean(axis=1, keepdims=True)  # remove_dc_offset
            emphasised = np.empty_like(frames)
            emphasised[:, 1:] = frames[:, 1:] - 0.97 * frames[:, :-1]  # pre-emphasis 0.97 (Kaldi: x[0] -= 0.97 x[0])
            emphasised[:, 0] = frames[:, 0] * (1 - 0.97)
            power = np.abs(np.fft.rfft(emphasised * window, n=fft, axis=1)) ** 2
            out[lo : lo + _FBANK_CHUNK] = np.log(np.maximum(MEL_FLOOR, power @ filters))
    if normalize:
        out = (out - np.float32(mean)) / np.float32(std * 2)
    return out.astype(np.float32, copy=False)


def fit_length(spec: np.ndarray, *, frames: int, fill: float = AST_ZERO) -> np.ndarray:
    """Pad or truncate a ``(T, bins)`` spectrogram to ``(frames, bins)`` (ASTFeatureExtractor's ``max_length`` step).

    Truncation keeps the first ``frames`` frames; padding appends frames of ``fill``, by default :data:`AST_ZERO`:
    the normalised value of the zeros AST pads its raw filter bank with, so
    ``fit_length(log_mel(w), frames=1024)`` equals ``ASTFeatureExtractor(num_mel_bins=128)(w)``. MOV's 8 s crops
    use ``frames=800`` (:func:`crop_frames`). The real frames are the first ``min(T, frames)``.
    """
    arr = np.asarray(spec)
    if arr.ndim != 2:
        raise InputError(f"spectrogram must have shape (frames, bins), got {tuple(arr.shape)}")
    target = _positive_int(frames, "frames")
    have = arr.shape[0]
    if have >= target:
        return np.ascontiguousarray(arr[:target], dtype=np.float32)
    out = np.full((target, arr.shape[1]), fill, dtype=np.float32)
    out[:have] = arr
    return out


# --------------------------------------------------------------------------------------------------- crops and views
def crop_frames(seconds: float = MOV_CROP_SECONDS) -> int:
    """Spectrogram frames of a crop of ``seconds`` (100 per second: 8 s -> 800, MOV §4.2's (128, 800))."""
    return max(1, int(round(_positive_float(seconds, "seconds") / HOP_S)))


def crop_samples(seconds: float = MOV_CROP_SECONDS, *, sample_rate: int = SAMPLE_RATE) -> int:
    """Waveform samples whose spectrogram has exactly :func:`crop_frames` frames: ``400 + (frames - 1) * 160``.

    8 s -> 128 240 samples (8.015 s: the last 25 ms window ends 15 ms after the 800th hop).
    """
    window, hop, _ = _frame_sizes(_positive_int(sample_rate, "sample_rate"))
    return window + (crop_frames(seconds) - 1) * hop


def _rng(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise InputError(f"rng must be a numpy Generator or an integer seed, got {type(rng).__name__}")


def random_crop(waveform: np.ndarray, *, rng: np.random.Generator | int, seconds: float = MOV_CROP_SECONDS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A random ``seconds`` window of the waveform for training (MOV §4.2 "a random cropping of (128, 800)").

    The window has :func:`crop_samples` samples and starts at a uniformly random multiple of the 10 ms hop, so its
    :func:`log_mel` is exactly the frames a random crop of the whole clip's spectrogram would give. Audio no longer
    than the window is returned whole (a copy); :func:`fit_length` then pads its spectrogram as AST does (see the
    module docstring: no looping, no waveform padding).
    """
    wav = _check_waveform(waveform)
    gen = _rng(rng)
    rate = _positive_int(sample_rate, "sample_rate")
    length = crop_samples(seconds, sample_rate=rate)
    _, hop, _ = _frame_sizes(rate)
    if wav.shape[0] <= length:
        return wav.copy()
    last = (wav.shape[0] - length) // hop  # the last hop-aligned start that fits
    start = int(gen.integers(0, last + 1)) * hop
    return wav[start : start + length].copy()


def temporal_views(waveform: np.ndarray, *, views: int = MOV_VIEWS, seconds: float = MOV_CROP_SECONDS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``views`` evenly spaced ``seconds`` windows for testing (MOV §4.2: 12 temporal views, scores averaged): ``(views, n)``.

    Starts are ``round(linspace(0, F - f, views))`` hops, with F and f the frame counts of the clip and of a
    window, so the first view starts at 0 and the last ends at the clip's end; windows overlap when the clip is
    shorter than ``views`` x ``seconds``. A clip no longer than one window gives ``views`` copies of the whole clip
    (``n`` = its length; :func:`fit_length` pads each spectrogram as AST does), so every clip yields the same
    ``views`` rows and the view-averaging rule needs no special case.
    """
    wav = _check_waveform(waveform)
    rate = _positive_int(sample_rate, "sample_rate")
    count = _positive_int(views, "views")
    length = crop_samples(seconds, sample_rate=rate)
    _, hop, _ = _frame_sizes(rate)
    if wav.shape[0] <= length:
        return np.repeat(wav[None, :], count, axis=0).astype(np.float32)
    last = (wav.shape[0] - length) // hop
    starts = np.round(np.linspace(0, last, count)).astype(np.int64) * hop
    return np.stack([wav[s : s + length] for s in starts.tolist()]).astype(np.float32)


# --------------------------------------------------------------------------------------------------- SpecAugment
@dataclass(frozen=True)
class SpecMasks:
    """One SpecAugment draw: time frames ``[time_start, time_start + time_width)`` and frequency bins
    ``[freq_start, freq_start + freq_width)`` are masked."""

    time_start: int
    time_width: int
    freq_start: int
    freq_width: int


def sample_spec_masks(*, frames: int, bins: int, rng: np.random.Generator | int, time_mask: int = MOV_TIME_MASK, freq_mask: int = MOV_FREQ_MASK) -> SpecMasks:
    """Draw one time mask and one frequency mask (MOV §4.2, via AST: one ``TimeMasking(192)``, one ``FrequencyMasking(48)``).

    As torchaudio's masking, which AST uses: a width uniform in ``[0, mask]`` (capped at the axis length; 0 means no
    mask on that axis this time), then a start uniform over the positions where the band fits. Draw order:
    frequency width, frequency start, time width, time start — reproducible for a given seed.
    """
    nf, nb = _positive_int(frames, "frames"), _positive_int(bins, "bins")
    for value, name in ((time_mask, "time_mask"), (freq_mask, "freq_mask")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 0:
            raise InputError(f"{name} must be a non-negative integer, got {value!r}")
    gen = _rng(rng)
    freq_width = int(gen.integers(0, min(int(freq_mask), nb) + 1))
    freq_start = int(gen.integers(0, nb - freq_width + 1))
    time_width = int(gen.integers(0, min(int(time_mask), nf) + 1))
    time_start = int(gen.integers(0, nf - time_width + 1))
    return SpecMasks(time_start, time_width, freq_start, freq_width)


def apply_spec_masks(spec: np.ndarray, masks: SpecMasks, *, fill: float = AST_ZERO) -> np.ndarray:
    """A copy of a ``(frames, bins)`` spectrogram with ``masks`` set to ``fill`` (:data:`AST_ZERO`: AST masks its raw
    filter bank with zeros before normalising)."""
    arr = np.asarray(spec)
    if arr.ndim != 2:
        raise InputError(f"spectrogram must have shape (frames, bins), got {tuple(arr.shape)}")
    out = np.array(arr, dtype=np.float32, copy=True)
    out[masks.time_start : masks.time_start + masks.time_width, :] = fill
    out[:, masks.freq_start : masks.freq_start + masks.freq_width] = fill
    return out


def spec_augment(
    spec: np.ndarray, *, rng: np.random.Generator | int, time_mask: int = MOV_TIME_MASK, freq_mask: int = MOV_FREQ_MASK, fill: float = AST_ZERO
) -> np.ndarray:
    """SpecAugment as MOV §4.2 applies it: one time mask of up to 192 frames and one frequency mask of up to 48 bins
    (:func:`sample_spec_masks`, :func:`apply_spec_masks`) on a ``(frames, bins)`` spectrogram; returns a copy."""
    arr = np.asarray(spec)
    if arr.ndim != 2:
        raise InputError(f"spectrogram must have shape (frames, bins), got {tuple(arr.shape)}")
    masks = sample_spec_masks(frames=arr.shape[0], bins=arr.shape[1], rng=rng, time_mask=time_mask, freq_mask=freq_mask)
    return apply_spec_masks(arr, masks, fill=fill)


# --------------------------------------------------------------------------------------------------- to CLIP's input
def spectrogram_image(spec: np.ndarray) -> np.ndarray:
    """``(..., frames, bins)`` spectrogram(s) -> ``(..., 3, bins, frames)`` float32 "images" for CLIP's vision tower.

    MOV §4.2 (following AST): the single-channel spectrogram is duplicated to three channels for the pre-trained
    patch embedding; frequency is the image height (low frequencies at row 0, as AST's transpose) and time the width,
    so 8 s give a 128 x 800 image. The tower interpolates its position embedding to that patch grid (the model's
    job, not this function's). Values stay AST-normalised: CLIP's RGB mean/std are not applied.
    """
    arr = np.asarray(spec, dtype=np.float32)
    if arr.ndim < 2:
        raise InputError(f"spectrogram must have shape (..., frames, bins), got {tuple(arr.shape)}")
    image = np.swapaxes(arr, -1, -2)[..., None, :, :]
    shape = (*image.shape[:-3], 3, *image.shape[-2:])
    return np.ascontiguousarray(np.broadcast_to(image, shape))


def train_image(
    waveform: np.ndarray,
    *,
    rng: np.random.Generator | int,
    seconds: float = MOV_CROP_SECONDS,
    sample_rate: int = SAMPLE_RATE,
    time_mask: int = MOV_TIME_MASK,
    freq_mask: int = MOV_FREQ_MASK,
) -> np.ndarray:
    """MOV §4.2's training input: random 8 s crop -> log-mel -> padded to 800 frames -> SpecAugment -> (3, 128, 800)."""
    gen = _rng(rng)
    crop = random_crop(waveform, rng=gen, seconds=seconds, sample_rate=sample_rate)
    spec = fit_length(log_mel(crop, sample_rate=sample_rate), frames=crop_frames(seconds))
    return spectrogram_image(spec_augment(spec, rng=gen, time_mask=time_mask, freq_mask=freq_mask))


def eval_images(waveform: np.ndarray, *, views: int = MOV_VIEWS, seconds: float = MOV_CROP_SECONDS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """MOV §4.2's test input: 12 evenly spaced 8 s views (:func:`temporal_views`), each log-mel padded to 800 frames:
    ``(views, 3, 128, 800)``; the recogniser averages the views' probabilities (``scoring.py``)."""
    windows = temporal_views(waveform, views=views, seconds=seconds, sample_rate=sample_rate)
    frames = crop_frames(seconds)
    if windows.shape[1] < crop_samples(seconds, sample_rate=sample_rate):  # a short clip: every view is the whole clip
        one = fit_length(log_mel(windows[0], sample_rate=sample_rate), frames=frames)
        specs = np.repeat(one[None], windows.shape[0], axis=0)
    else:
        specs = np.stack([fit_length(log_mel(w, sample_rate=sample_rate), frames=frames) for w in windows])
    return spectrogram_image(specs)
