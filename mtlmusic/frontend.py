"""The audio front end in torch: STFT -> 128-band mel -> dB -> per-bin standardization -> 2.5 s slices.

It reproduces ``librosa.feature.melspectrogram(sr=22050, n_fft=1024, hop_length=256,
n_mels=128)`` followed by ``librosa.power_to_db(ref=1.0, amin=1e-10, top_db=80)``
(centred frames, zero padding, Hann window, Slaney mel filters), batched and on
any torch device. The ``top_db`` floor is taken relative to the loudest bin of the
whole track, both channels together, exactly as librosa does on a ``(2, n)`` array.

Long audio is transformed block by block with :class:`MelStream`, which gives the
same frames as a transform of the whole signal.

Examples
--------
>>> import numpy as np
>>> from mtlmusic.frontend import mel_power, power_to_db, slice_frames
>>> S = mel_power(np.zeros((2, 22050 * 3), dtype=np.float32))
>>> S.shape
torch.Size([2, 259, 128])
>>> slice_frames(power_to_db(S), pad_value=-100.0).shape
torch.Size([2, 2, 216, 128])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .audio import SAMPLE_RATE, AudioInfo, audio_info, load_audio, stream_audio

N_FFT = 1024
HOP_LENGTH = 256
N_MELS = 128
#: Frames per 2.5 s slice: int(2.5 * 22050 / 256) + 1.
SLICE_FRAMES = 216
#: Seconds between the starts of consecutive slices.
SLICE_SECONDS = SLICE_FRAMES * HOP_LENGTH / SAMPLE_RATE
AMIN = 1e-10
TOP_DB = 80.0
#: Frames transformed at once by :class:`MelStream` (bounds its memory).
CHUNK_FRAMES = 4096
#: The same on the CPU, where chunks this small stay in the cache and run faster.
CPU_CHUNK_FRAMES = 256
#: Files longer than this (in seconds) are decoded twice rather than held in memory:
#: once to find the loudest bin (the ``top_db`` reference), once to transform.
LONG_AUDIO_SECONDS = 600.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(hz < 1000.0, 3.0 * hz / 200.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    log_step = np.log(6.4) / 27.0
    return np.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * np.exp(log_step * (mel - 15.0)))


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """The ``(128, 513)`` mel filter bank: Slaney scale and area normalisation, 0 to 11,025 Hz.

    The same triangles as ``librosa.filters.mel(sr=22050, n_fft=1024, n_mels=128)``.

    >>> mel_filters().shape
    (128, 513)
    """
    fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, np.newaxis] - fft_hz[np.newaxis, :]
    rising = -ramps[:-2] / widths[:-1, np.newaxis]
    falling = ramps[2:] / widths[1:, np.newaxis]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, np.newaxis]
    return weights.astype(np.float32)


class MelSpectrogram(nn.Module):
    """Power mel spectrogram of already padded frames: ``(..., n) -> (..., frames, 128)``.

    Frame ``t`` covers samples ``[t * 256, t * 256 + 1024)`` of the input; padding
    for centred frames is the caller's job (see :class:`MelStream`). The filter
    bank is applied band group by band group, each to the FFT bins its triangles
    cover: the same sums as the full matrix product, without the zeros.
    """

    def __init__(self, bands_per_group: int = 16):
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        self.register_buffer("filters", torch.from_numpy(mel_filters()).T.contiguous(), persistent=False)
        self.groups = []  # (first bin, end bin, first band, end band)
        for first in range(0, N_MELS, bands_per_group):
            end = min(first + bands_per_group, N_MELS)
            bins = np.flatnonzero(mel_filters()[first:end].any(axis=0))
            span = (int(bins[0]), int(bins[-1]) + 1) if bins.size else (0, 0)
            self.groups.append((*span, first, end))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        frames = y.reshape(-1, y.shape[-1]).unfold(-1, N_FFT, HOP_LENGTH) * self.window
        spec = torch.view_as_real(torch.fft.rfft(frames))                 # (b, frames, 513, 2)
        power = torch.addcmul(spec[..., 0].square(), spec[..., 1], spec[..., 1])
        mel = torch.cat([power[..., lo:hi] @ self.filters[lo:hi, first:end]
                         for lo, hi, first, end in self.groups], dim=-1)  # (b, frames, 128)
        return mel.reshape(*y.shape[:-1], *mel.shape[1:])


@lru_cache(maxsize=4)
def _mel_module(device: str) -> MelSpectrogram:
    return MelSpectrogram().to(device)


class MelStream:
    """Centred mel frames of a signal that arrives in blocks.

    Push ``(2, k)`` blocks in order; each call returns the frames that are
    complete so far as a ``(2, frames, 128)`` tensor. After the last block,
    :meth:`finish` returns the remaining frames. Altogether the frames equal
    those of the whole signal: ``1 + n // 256`` of them.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).standard_normal((2, 5000)).astype(np.float32)
    >>> stream = MelStream()
    >>> parts = [stream.push(y[:, :1234]), stream.push(y[:, 1234:]), stream.finish()]
    >>> torch.allclose(torch.cat(parts, dim=1), mel_power(y), rtol=1e-4, atol=1e-6)
    True
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self._mel = _mel_module(str(self.device))
        self._chunk_frames = CPU_CHUNK_FRAMES if self.device.type == "cpu" else CHUNK_FRAMES
        self._buffer = torch.zeros(2, N_FFT // 2, device=self.device)

    def push(self, block) -> torch.Tensor:
        """Add the next ``(2, k)`` samples; return the frames completed by them."""
        block = torch.as_tensor(block, dtype=torch.float32).to(self.device)
        self._buffer = torch.cat([self._buffer, block], dim=1)
        return self._take_frames()

    def finish(self) -> torch.Tensor:
        """Pad the end (centred frames) and return the last frames."""
        self._buffer = torch.cat([self._buffer, torch.zeros(2, N_FFT // 2, device=self.device)], dim=1)
        return self._take_frames()

    def _take_frames(self) -> torch.Tensor:
        n_frames = max(0, (self._buffer.shape[1] - N_FFT) // HOP_LENGTH + 1)
        parts = []
        for start in range(0, n_frames, self._chunk_frames):
            count = min(self._chunk_frames, n_frames - start)
            first = start * HOP_LENGTH
            parts.append(self._mel(self._buffer[:, first:first + (count - 1) * HOP_LENGTH + N_FFT]))
        self._buffer = self._buffer[:, n_frames * HOP_LENGTH:]
        return torch.cat(parts, dim=1) if parts else torch.zeros(2, 0, N_MELS, device=self.device)


def mel_power(y, device: str | torch.device = "cpu") -> torch.Tensor:
    """Power mel spectrogram of a whole signal ``(2, n) -> (2, 1 + n // 256, 128)``.

    Equal (to float32 precision) to ``librosa.feature.melspectrogram(y=y, sr=22050,
    n_fft=1024, hop_length=256, n_mels=128)`` transposed to (channel, time, mel).
    """
    stream = MelStream(device)
    first = stream.push(y)
    return torch.cat([first, stream.finish()], dim=1)


def power_to_db(S: torch.Tensor, max_power: float | None = None) -> torch.Tensor:
    """``10 log10(max(S, 1e-10))`` floored at 80 dB below the loudest bin.

    ``max_power`` is the loudest bin of the whole track; it defaults to ``S.max()``
    (pass it when ``S`` is only part of a track).
    """
    floor = db_floor(S.max().item() if max_power is None else max_power)
    return torch.clamp(S, min=AMIN).log10_().mul_(10.0).clamp_(min=floor)


def db_floor(max_power: float) -> float:
    """The lowest dB value of a track whose loudest bin is ``max_power``: what digital silence becomes.

    >>> db_floor(1.0), db_floor(0.0)
    (-80.0, -100.0)
    """
    return max(10.0 * float(np.log10(max(max_power, AMIN))) - TOP_DB, 10.0 * float(np.log10(AMIN)))


@dataclass(frozen=True)
class Scaler:
    """Per-mel-bin standardization: ``(X - mean) / max(std, 1e-10)`` with 128 values each.

    The part of the front end that belongs to a model (and its model file).

    Attributes
    ----------
    mean, std : torch.Tensor, shape (128,)
        The per-bin statistics.
    pad_db : float or None
        The dB value that pads a track's final partial slice (and a track shorter
        than one slice) before standardization. ``None``, the default, pads with
        the track's floor (:func:`db_floor`): what digital silence becomes. The
        authors' extractor padded with 0 dB (see :mod:`mtlmusic.checkpoint`).

    Examples
    --------
    >>> import torch
    >>> scaler = Scaler(torch.full((128,), -40.0), torch.full((128,), 20.0))
    >>> scaler(torch.full((1, 3, 128), -20.0)).unique()
    tensor([1.])
    """

    mean: torch.Tensor
    std: torch.Tensor
    pad_db: float | None = None

    def __post_init__(self):
        if self.mean.shape != (N_MELS,) or self.std.shape != (N_MELS,):
            raise ValueError(f"Scaler needs {N_MELS} means and stds, got {tuple(self.mean.shape)} "
                             f"and {tuple(self.std.shape)}.")
        if self.pad_db is not None and (isinstance(self.pad_db, bool) or not isinstance(self.pad_db, (int, float))
                                        or not np.isfinite(self.pad_db)):
            raise ValueError(f"Scaler's pad_db must be a finite number of dB or None, got {self.pad_db!r}.")

    def __call__(self, db: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(db.device, db.dtype)
        std = torch.clamp(self.std.to(db.device, db.dtype), min=AMIN)
        return (db - mean) / std

    @classmethod
    def identity(cls) -> "Scaler":
        """A scaler that leaves dB values unchanged (mean 0, std 1)."""
        return cls(torch.zeros(N_MELS), torch.ones(N_MELS))

    @classmethod
    def fit(cls, frames: Iterable) -> "Scaler":
        """The scaler of some dB frames: per-bin mean and population std, both channels pooled.

        Parameters
        ----------
        frames : iterable of array-like, each of shape (..., 128)
            dB mel frames in parts of any size (a track's ``(2, frames, 128)``, say);
            accumulated by :class:`ScalerStats`, so memory does not grow with their number.

        Raises
        ------
        ValueError
            If there are no frames at all.

        Examples
        --------
        >>> scaler = Scaler.fit([torch.full((2, 10, 128), -20.0), torch.full((2, 10, 128), -40.0)])
        >>> scaler.mean[0].item(), scaler.std[0].item()
        (-30.0, 10.0)
        """
        stats = ScalerStats()
        for part in frames:
            stats.update(part)
        return stats.scaler()

    def to(self, device: str | torch.device) -> "Scaler":
        """The same scaler with its tensors on ``device``.

        >>> Scaler.identity().to("cpu").mean.device
        device(type='cpu')
        """
        return replace(self, mean=self.mean.to(device), std=self.std.to(device))


class ScalerStats:
    """Running per-mel-bin mean and variance of dB frames, for :class:`Scaler` statistics.

    Every part's mean and sum of squared deviations are computed in float64 and
    merged into the running ones with Chan et al.'s parallel update, which stays
    accurate where sums of squares minus squared sums lose their digits (dB values
    are large and close together). Both channels are pooled: a ``(2, n, 128)``
    part adds ``2 n`` frames.

    Attributes
    ----------
    count : int
        Frames added so far.
    mean : ndarray of float64, shape (128,)
    m2 : ndarray of float64, shape (128,)
        Sums of squared deviations from ``mean``.

    Examples
    --------
    >>> import numpy as np
    >>> stats = ScalerStats()
    >>> stats.update(np.full((2, 3, 128), 1.0))
    >>> stats.update(torch.full((2, 1, 128), 5.0))
    >>> stats.count, float(stats.mean[0]), round(stats.scaler().std[0].item(), 4)
    (8, 2.0, 1.7321)
    """

    def __init__(self):
        self.count = 0
        self.mean = np.zeros(N_MELS)
        self.m2 = np.zeros(N_MELS)

    def update(self, frames) -> None:
        """Add frames: an array or tensor of shape ``(..., 128)``."""
        if isinstance(frames, torch.Tensor):
            frames = frames.detach().to("cpu", torch.float64).numpy()
        values = np.asarray(frames, dtype=np.float64)
        if values.ndim == 0 or values.shape[-1] != N_MELS:
            raise ValueError(f"Frames must have {N_MELS} mel bins in their last axis, got shape {values.shape}.")
        values = values.reshape(-1, N_MELS)
        n = len(values)
        if n == 0:
            return
        part_mean = values.mean(axis=0)
        part_m2 = np.square(values - part_mean).sum(axis=0)
        total = self.count + n
        delta = part_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + part_m2 + np.square(delta) * (self.count * n / total)
        self.count = total

    def scaler(self) -> Scaler:
        """The :class:`Scaler` of the frames so far (population standard deviation, float32).

        Raises
        ------
        ValueError
            If no frame was added.
        """
        if self.count == 0:
            raise ValueError("Cannot fit a scaler without frames.")
        return Scaler(torch.from_numpy(self.mean).float(), torch.from_numpy(np.sqrt(self.m2 / self.count)).float())


def slice_frames(x: torch.Tensor, pad_value: float) -> torch.Tensor:
    """Cut ``(2, frames, 128)`` into non-overlapping ``(n, 2, 216, 128)`` slices.

    The last partial slice (and a track shorter than one slice) is padded with
    ``pad_value``: the value digital silence takes after the same transform.
    """
    n_slices = max(1, -(-x.shape[1] // SLICE_FRAMES))
    missing = n_slices * SLICE_FRAMES - x.shape[1]
    if missing:
        x = torch.cat([x, x.new_full((x.shape[0], missing, x.shape[2]), pad_value)], dim=1)
    return x.reshape(x.shape[0], n_slices, SLICE_FRAMES, x.shape[2]).transpose(0, 1)


class SliceChunk(NamedTuple):
    """Consecutive slices of a track: ``slices`` ``(k, 2, 216, 128)`` and the ``weights`` ``(k,)`` of each.

    A slice's weight is the fraction of it that holds real audio: 1 but for a
    track's final, padded slice (see :mod:`mtlmusic.aggregation`).
    """

    slices: torch.Tensor
    weights: torch.Tensor


def track_slices(source, sr: int | None = None, scaler: Scaler | None = None,
                 device: str | torch.device = "cpu", chunk_slices: int = 64) -> Iterator[SliceChunk]:
    """Standardized slices of one track, in :class:`SliceChunk` s of at most ``chunk_slices`` slices.

    The front end's entry point: a file (path or :class:`~mtlmusic.audio.AudioInfo`)
    or an array in, network input out, in
    track order. Memory stays bounded for files of any length: files longer
    than :data:`LONG_AUDIO_SECONDS` are decoded twice instead of being held.

    Examples
    --------
    >>> import numpy as np
    >>> chunks = list(track_slices(np.zeros(22050 * 6, dtype=np.float32), sr=22050))
    >>> [tuple(c.slices.shape) for c in chunks], round(chunks[0].weights[-1].item() * 216)  # real frames
    ([(3, 2, 216, 128)], 85)
    """
    frames, max_power = _track_power(source, sr, device)
    yield from _standardized_slices(frames, max_power, scaler or Scaler.identity(), chunk_slices)


def _track_power(source, sr: int | None, device) -> tuple[Iterable[torch.Tensor], float]:
    """A track's power mel frames, chunk by chunk, and its loudest bin (the ``top_db`` reference).

    Files longer than :data:`LONG_AUDIO_SECONDS` (or of unknown length) are decoded
    twice, the first time only to find the loudest bin, rather than held in memory.
    """
    if isinstance(source, (str, os.PathLike, AudioInfo)):
        info = source if isinstance(source, AudioInfo) else audio_info(source)
        if not info.duration <= LONG_AUDIO_SECONDS:  # also when the duration is unknown (NaN)
            max_power = max(chunk.max().item() for chunk in _mel_chunks(stream_audio(info), device))
            return _mel_chunks(stream_audio(info), device), max_power
        frames = list(_mel_chunks(stream_audio(info), device))
    else:
        frames = list(_mel_chunks([load_audio(source, sr)], device))
    return frames, max(chunk.max().item() for chunk in frames)


def _mel_chunks(blocks: Iterable[np.ndarray], device) -> Iterator[torch.Tensor]:
    stream = MelStream(device)
    for block in blocks:
        frames = stream.push(block)
        if frames.shape[1]:
            yield frames
    yield stream.finish()


def _standardized_slices(frames: Iterable[torch.Tensor], max_power: float, scaler: Scaler,
                         chunk_slices: int) -> Iterator[SliceChunk]:
    chunk_frames = chunk_slices * SLICE_FRAMES
    pending: list[torch.Tensor] = []
    n_pending = 0
    emitted = False
    for chunk in frames:
        pending.append(power_to_db(chunk, max_power))
        n_pending += chunk.shape[1]
        while n_pending >= chunk_frames:
            db = torch.cat(pending, dim=1)
            yield SliceChunk(scaler(slice_frames(db[:, :chunk_frames], 0.0)), torch.ones(chunk_slices))
            pending, n_pending, emitted = [db[:, chunk_frames:]], n_pending - chunk_frames, True
    if pending and (n_pending or not emitted):
        pad_db = db_floor(max_power) if scaler.pad_db is None else scaler.pad_db
        slices = scaler(slice_frames(torch.cat(pending, dim=1), pad_db))
        weights = torch.ones(slices.shape[0])
        if emitted or slices.shape[0] > 1:  # a track shorter than one slice is that one slice
            weights[-1] = (n_pending - (slices.shape[0] - 1) * SLICE_FRAMES) / SLICE_FRAMES
        yield SliceChunk(slices, weights)


def slice_start_times(n_slices: int) -> np.ndarray:
    """Start time in seconds of each of ``n_slices`` consecutive slices.

    >>> slice_start_times(3).round(3)
    array([0.   , 2.508, 5.016])
    """
    return np.arange(n_slices) * SLICE_SECONDS


class TrackDb(NamedTuple):
    """A whole track's dB mel spectrogram: ``db`` ``(2, frames, 128)`` and its ``floor``.

    ``floor`` is :func:`db_floor` of the track's loudest bin: the lowest value in
    ``db``, and what digital silence (padding) becomes.
    """

    db: torch.Tensor
    floor: float


def track_db(source, sr: int | None = None, device: str | torch.device = "cpu") -> TrackDb:
    """The dB mel spectrogram of a whole track, floored ``top_db`` below its loudest bin.

    What :func:`track_slices` computes before standardization and slicing:
    ``power_to_db(mel_power(y), max_power)`` with the whole track's loudest bin
    as ``max_power``. A file is decoded block by block (:func:`~mtlmusic.audio.stream_audio`),
    never held whole as a waveform.

    Parameters
    ----------
    source : path-like, AudioInfo or array
        A file, its :class:`~mtlmusic.audio.AudioInfo`, or samples (see
        :func:`~mtlmusic.audio.load_audio`).
    sr : int, optional
        Sample rate of an array ``source``.
    device : str or torch.device
        Where to compute and return the spectrogram.

    Returns
    -------
    TrackDb
        ``db`` of shape ``(2, 1 + n // 256, 128)`` (``n`` samples at 22,050 Hz)
        and the track's dB ``floor``.

    Raises
    ------
    mtlmusic.AudioError
        If the audio cannot be read.

    Examples
    --------
    >>> import numpy as np
    >>> db, floor = track_db(np.zeros(22050 * 3, dtype=np.float32), sr=22050)
    >>> tuple(db.shape), floor, db.min().item()
    ((2, 259, 128), -100.0, -100.0)
    """
    frames, max_power = _track_power(source, sr, device)
    return TrackDb(torch.cat([power_to_db(chunk, max_power) for chunk in frames], dim=1), db_floor(max_power))
