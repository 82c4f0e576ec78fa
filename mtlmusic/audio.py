"""Audio input: decode files or validate arrays, resample to 22,050 Hz, apply the channel policy.

Every function here returns float32 audio of shape ``(2, n_samples)`` at
:data:`SAMPLE_RATE`, the network's input format.

Decoding
    WAV, FLAC, Ogg (Vorbis, Opus), MP3, AIFF and the other formats of libsndfile
    are read with :mod:`soundfile`. Anything else (M4A/AAC, WMA, WebM, tracker
    modules ``.mod .xm .it .s3m .stm`` through ffmpeg's libopenmpt, ...) is
    decoded by ``ffmpeg`` when it is installed; otherwise a
    :class:`~mtlmusic.errors.DecoderNotFoundError` names the file and the missing
    decoder.

Channel policy
    Stereo is kept. Mono is duplicated to both channels. More than two channels
    are downmixed to two: 3 (L, R, C), 5 (L, R, C, Ls, Rs), 6 (5.1: L, R, C,
    LFE, Ls, Rs), 7 (6.1: L, R, C, LFE, Cs, Ls, Rs) and 8 (7.1: L, R, C, LFE,
    Ls, Rs, Lb, Rb) channels follow the ITU-R BS.775 downmix (centre and
    surrounds at -3 dB, a centre surround at -6 dB to each side, LFE dropped);
    any other count sends even-numbered channels to the left and odd-numbered
    ones to the right. Every downmix is normalised so that a signal present
    identically in all channels keeps its level.

    Those channel orders are WAV's (WAVE_FORMAT_EXTENSIBLE), which FLAC, arrays
    and everything ffmpeg decodes follow. Ogg Vorbis and Opus streams read by
    libsndfile come in the Vorbis order instead (Vorbis I specification, section
    4.3.9; Opus channel mapping family 1), e.g. 5.1 as L, C, R, Ls, Rs, LFE:
    their channels are downmixed by what they are, not by their position.

Resampling
    soxr at high quality, as ``librosa.resample(res_type="soxr_hq")``. Long files
    are decoded and resampled block by block (:func:`stream_audio`), so memory
    stays bounded whatever the file's length.

Examples
--------
>>> import numpy as np
>>> from mtlmusic.audio import load_audio
>>> load_audio(np.zeros(8000, dtype=np.float32), sr=8000).shape
(2, 22050)
"""

from __future__ import annotations

import json
import numbers
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, ConfigError, DecoderNotFoundError

#: Sample rate of the network's input.
SAMPLE_RATE = 22050
#: Tracker module extensions (ProTracker, FastTracker 2, Impulse Tracker, Scream Tracker 2 and 3), decoded by ffmpeg.
TRACKER_EXTENSIONS = frozenset({".mod", ".xm", ".it", ".s3m", ".stm"})
#: File extensions treated as audio when scanning directories.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".m4a", ".aac", ".mp4",
    ".wma", ".webm", ".mka", ".ape", ".wv", ".au", ".caf",
}) | TRACKER_EXTENSIONS
#: Frames decoded per block when streaming a file.
BLOCK_FRAMES = 1 << 18

_SQRT_HALF = float(np.sqrt(0.5))
# ITU-R BS.775 downmix matrices (2 x channels) for channels in WAV order, by channel count.
_ITU_DOWNMIX = {
    3: [[1, 0, _SQRT_HALF], [0, 1, _SQRT_HALF]],
    5: [[1, 0, _SQRT_HALF, _SQRT_HALF, 0], [0, 1, _SQRT_HALF, 0, _SQRT_HALF]],
    6: [[1, 0, _SQRT_HALF, 0, _SQRT_HALF, 0], [0, 1, _SQRT_HALF, 0, 0, _SQRT_HALF]],
    7: [[1, 0, _SQRT_HALF, 0, 0.5, _SQRT_HALF, 0], [0, 1, _SQRT_HALF, 0, 0.5, 0, _SQRT_HALF]],
    8: [[1, 0, _SQRT_HALF, 0, _SQRT_HALF, 0, _SQRT_HALF, 0],
        [0, 1, _SQRT_HALF, 0, 0, _SQRT_HALF, 0, _SQRT_HALF]],
}
# Where each channel of a Vorbis-order stream sits in WAV order, by channel count (Vorbis I, section 4.3.9).
_VORBIS_TO_WAV = {
    3: [0, 2, 1],                  # L C R
    5: [0, 2, 1, 3, 4],            # L C R Ls Rs
    6: [0, 2, 1, 4, 5, 3],         # L C R Ls Rs LFE
    7: [0, 2, 1, 5, 6, 4, 3],      # L C R Ls Rs Cs LFE
    8: [0, 2, 1, 6, 7, 4, 5, 3],   # L C R Ls Rs Lb Rb LFE
}
#: Channel orders :func:`downmix_matrix` knows.
CHANNEL_ORDERS = ("wav", "vorbis")


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds before decoding: native sample rate, channel count and duration in seconds.

    ``decoder`` is ``"soundfile"`` or ``"ffmpeg"``; ``channel_order`` (one of
    :data:`CHANNEL_ORDERS`) is the order in which that decoder delivers the
    channels: ``"vorbis"`` for Ogg Vorbis and Opus read by libsndfile, ``"wav"``
    otherwise.
    """

    path: Path
    sample_rate: int
    channels: int
    duration: float
    decoder: str
    channel_order: str = "wav"


def downmix_matrix(channels: int, order: str = "wav") -> np.ndarray:
    """The ``(2, channels)`` matrix that maps ``channels`` input channels to stereo.

    ``order`` is the order of the input channels: ``"wav"`` (L, R, C, LFE, ...)
    or ``"vorbis"`` (L, C, R, ..., the order of Ogg Vorbis and Opus streams).

    >>> downmix_matrix(1)
    array([[1.],
           [1.]], dtype=float32)
    >>> downmix_matrix(4).round(2)
    array([[0.5, 0. , 0.5, 0. ],
           [0. , 0.5, 0. , 0.5]], dtype=float32)
    >>> downmix_matrix(3, order="vorbis").round(2)  # L C R
    array([[0.59, 0.41, 0.  ],
           [0.  , 0.41, 0.59]], dtype=float32)
    """
    if order not in CHANNEL_ORDERS:
        raise ConfigError(f"Unknown channel order {order!r}: use one of {list(CHANNEL_ORDERS)}.")
    if channels < 1:
        raise AudioError("Audio must have at least one channel.")
    if channels == 1:
        matrix = np.ones((2, 1))
    elif channels == 2:
        matrix = np.eye(2)
    elif channels in _ITU_DOWNMIX:
        matrix = np.asarray(_ITU_DOWNMIX[channels], dtype=np.float64)
    else:
        matrix = np.zeros((2, channels))
        matrix[0, 0::2] = 1.0
        matrix[1, 1::2] = 1.0
    if order == "vorbis" and channels in _VORBIS_TO_WAV:
        matrix = matrix[:, _VORBIS_TO_WAV[channels]]
    return (matrix / matrix.sum(axis=1, keepdims=True)).astype(np.float32)


def to_stereo(y: np.ndarray) -> np.ndarray:
    """Apply the channel policy to channels-first audio ``(channels, n)`` -> ``(2, n)``.

    >>> import numpy as np
    >>> to_stereo(np.ones((6, 3), dtype=np.float32))
    array([[1., 1., 1.],
           [1., 1., 1.]], dtype=float32)
    """
    if y.shape[0] == 2:
        return y
    return downmix_matrix(y.shape[0]) @ y


def validate_array(y, sr: int | None) -> np.ndarray:
    """Check a waveform array and return it as float32 channels-first ``(channels, n)``.

    Accepts ``(n,)`` (mono) or ``(channels, n)``, like librosa. Raises
    :class:`~mtlmusic.errors.AudioError` for a missing or invalid ``sr`` (see
    :func:`check_sample_rate`), an empty array, non-finite values or an array
    that looks transposed.
    """
    check_sample_rate(sr)
    y = np.asarray(y)
    if y.dtype.kind not in "fiu":
        raise AudioError(f"Audio array must be numeric, got dtype {y.dtype}.")
    if y.dtype.kind in "iu":
        y = _int_to_float(y)
    if y.ndim == 1:
        y = y[np.newaxis]
    if y.ndim != 2:
        raise AudioError(f"Audio array must be 1-D (n,) or 2-D (channels, n); got shape {y.shape}.")
    if y.shape[0] > 16 and y.shape[1] <= 16:
        raise AudioError(f"Audio array of shape {y.shape} looks like (samples, channels); "
                         "mtlmusic expects channels first, like librosa: pass y.T.")
    if y.shape[1] == 0:
        raise AudioError("Audio array is empty (0 samples).")
    if not np.isfinite(y).all():
        raise AudioError("Audio array contains NaN or infinite values; clean or replace them first "
                         "(e.g. np.nan_to_num(y)).")
    return np.ascontiguousarray(y, dtype=np.float32)


def check_sample_rate(sr) -> int:
    """The sample rate of an audio array as an ``int``.

    A whole number of Hz, as an int or a float (``librosa.load`` and
    ``soundfile.info`` may give ``22050.0``), numpy scalars included. Raises
    :class:`~mtlmusic.errors.AudioError` for a missing, non-numeric,
    fractional or non-positive rate.

    >>> check_sample_rate(22050.0)
    22050
    """
    if sr is None:
        raise AudioError("An audio array needs its sample rate: pass sr=..., e.g. extract(y, sr=44100).")
    if isinstance(sr, (bool, np.bool_)) or not isinstance(sr, numbers.Real):
        raise AudioError(f"Sample rate must be a number of samples per second such as 44100, got {sr!r}.")
    rate = float(sr)
    if not (np.isfinite(rate) and rate > 0):
        raise AudioError(f"Sample rate must be positive, got {sr!r}; pass the rate of the array, e.g. sr=44100.")
    if not rate.is_integer():
        raise AudioError(f"Sample rate must be a whole number of Hz, got {sr!r}; pass the rate the audio was "
                         "decoded or recorded at, e.g. sr=44100 (resample fractional rates yourself first).")
    return int(rate)


def _int_to_float(y: np.ndarray) -> np.ndarray:
    info = np.iinfo(y.dtype)
    offset = (info.max + 1) // 2 if info.min == 0 else 0
    return ((y.astype(np.float64) - offset) / (info.max - offset + 1)).astype(np.float32)


def resample(y: np.ndarray, sr: int) -> np.ndarray:
    """Resample channels-first audio from ``sr`` to :data:`SAMPLE_RATE` with soxr (high quality)."""
    if sr == SAMPLE_RATE:
        return y
    return np.ascontiguousarray(soxr.resample(y.T, sr, SAMPLE_RATE, quality="HQ").T, dtype=np.float32)


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Probe a file without decoding it.

    Raises :class:`~mtlmusic.errors.AudioError` for a missing, empty or
    undecodable file and :class:`~mtlmusic.errors.DecoderNotFoundError` when the
    format needs ffmpeg and none is installed.
    """
    path = _check_file(path)
    try:
        info = sf.info(str(path))
        if info.frames > 0 and info.samplerate > 0:
            order = "vorbis" if info.format == "OGG" and info.subtype in ("VORBIS", "OPUS") else "wav"
            return AudioInfo(path, int(info.samplerate), int(info.channels),
                             info.frames / info.samplerate, "soundfile", order)
        soundfile_error = "no audio frames"
    except (sf.LibsndfileError, RuntimeError) as err:
        soundfile_error = str(err).split(": ", 1)[-1]
        if "does not exist" in soundfile_error or "not recognised" in soundfile_error:
            soundfile_error = "format not recognised"
    if shutil.which("ffprobe") is None or shutil.which("ffmpeg") is None:
        if path.suffix.lower() in {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"}:
            raise AudioError(f"{path}: not a readable audio file ({soundfile_error}).")
        raise DecoderNotFoundError(
            f"{path}: libsndfile cannot decode this file ({soundfile_error}) and ffmpeg, which decodes "
            "M4A/AAC, WMA and most other formats, is not installed. Install it (e.g. `apt-get install "
            "ffmpeg`, `brew install ffmpeg` or `conda install ffmpeg`) or convert the file to WAV/FLAC.")
    return _ffprobe(path, soundfile_error)


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file.")
    if not path.is_file():
        raise AudioError(f"{path}: not a file.")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes).")
    return path


def _ffprobe(path: Path, soundfile_error: str) -> AudioInfo:
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels,duration:format=duration", "-of", "json", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    streams = json.loads(result.stdout or "{}").get("streams", []) if result.returncode == 0 else []
    if not streams:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no audio stream"
        raise AudioError(f"{path}: not a readable audio file (libsndfile: {soundfile_error}; ffmpeg: {reason}).")
    stream = streams[0]
    duration = stream.get("duration") or json.loads(result.stdout).get("format", {}).get("duration") or "nan"
    return AudioInfo(path, int(stream["sample_rate"]), int(stream["channels"]), float(duration), "ffmpeg")


def _decode_blocks(info: AudioInfo, block_frames: int) -> Iterator[np.ndarray]:
    """Native-rate channels-first float32 blocks of a file."""
    if info.decoder == "soundfile":
        with sf.SoundFile(str(info.path)) as f:
            while True:
                block = f.read(block_frames, dtype="float32", always_2d=True)
                if len(block) == 0:
                    return
                yield block.T
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(info.path), "-map", "0:a:0",
           "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        frame_bytes = 4 * info.channels
        while True:
            data = process.stdout.read(block_frames * frame_bytes)
            if not data:
                break
            usable = len(data) - len(data) % frame_bytes
            yield np.frombuffer(data[:usable], dtype=np.float32).reshape(-1, info.channels).T
        stderr = process.stderr.read().decode(errors="replace").strip()
        if process.wait() != 0:
            raise AudioError(f"{info.path}: ffmpeg failed to decode the file: {stderr.splitlines()[-1:]}")
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
        process.stderr.close()
        process.wait()


def stream_audio(path: str | os.PathLike | AudioInfo, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Decode a file block by block: yields float32 ``(2, k)`` arrays at 22,050 Hz.

    ``path`` may also be the file's :class:`AudioInfo`, which saves probing it again.

    Memory stays bounded by ``block_frames`` whatever the file's length. A file
    that ends before its header says (a truncated MP3, say) yields what can be
    decoded and issues a :class:`UserWarning`.

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> sf.write(path, np.zeros(44100, dtype=np.float32), 44100)
    >>> sum(block.shape[1] for block in stream_audio(path))
    22050
    """
    info = path if isinstance(path, AudioInfo) else audio_info(path)
    matrix = downmix_matrix(info.channels, info.channel_order)
    resampler = (None if info.sample_rate == SAMPLE_RATE else
                 soxr.ResampleStream(info.sample_rate, SAMPLE_RATE, 2, dtype="float32", quality="HQ"))
    decoded = 0
    try:
        for block in _decode_blocks(info, block_frames):
            decoded += block.shape[1]
            stereo = block if info.channels == 2 else matrix @ block
            if not np.isfinite(stereo).all():
                raise AudioError(f"{info.path}: decoded audio contains NaN or infinite values; the file is corrupt.")
            if resampler is not None:
                stereo = resampler.resample_chunk(np.ascontiguousarray(stereo.T)).T
            if stereo.shape[1]:
                yield np.ascontiguousarray(stereo, dtype=np.float32)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{info.path}: decoding failed after {decoded / info.sample_rate:.1f} s: {err}") from err
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros((0, 2), dtype=np.float32), last=True).T
        if tail.shape[1]:
            yield np.ascontiguousarray(tail, dtype=np.float32)
    if decoded == 0:
        raise AudioError(f"{info.path}: the file holds no audio samples.")
    expected = info.duration * info.sample_rate
    if np.isfinite(expected) and decoded < 0.99 * expected - info.sample_rate * 0.1:
        warnings.warn(f"{info.path}: decoded {decoded / info.sample_rate:.2f} s of the {info.duration:.2f} s "
                      "its header announces; the file looks truncated.", UserWarning, stacklevel=2)


def load_audio(source, sr: int | None = None) -> np.ndarray:
    """Load a file or an array as float32 stereo ``(2, n)`` at 22,050 Hz.

    Parameters
    ----------
    source : str, path-like or array
        An audio file, or a waveform ``(n,)`` / ``(channels, n)``.
    sr : int, optional
        Sample rate of an array (required for arrays, ignored for files); a
        whole-valued float such as ``22050.0`` is accepted.

    Returns
    -------
    numpy.ndarray
        ``(2, n)`` float32 at :data:`SAMPLE_RATE`.

    Examples
    --------
    >>> import numpy as np
    >>> load_audio(np.ones((6, 48000), dtype=np.float32), sr=48000).shape
    (2, 22050)
    """
    if isinstance(source, (str, os.PathLike)):
        blocks = list(stream_audio(source))
        return np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    y = validate_array(source, sr)
    return resample(to_stereo(y), check_sample_rate(sr))
