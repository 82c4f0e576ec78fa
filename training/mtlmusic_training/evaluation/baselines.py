"""The MFCC baseline of the paper (section 4.4): 120 values per track.

20 MFCCs with their first and second time derivatives, each summarized by its mean and standard
deviation over time, following Choi et al. ("Transfer learning for music classification and
regression tasks", 2017), the paper's reference [13].
"""

from __future__ import annotations

import librosa
import numpy as np

from mtlmusic.errors import AudioError

__all__ = ["MFCC_SAMPLE_RATE", "N_MFCC", "mfcc_features"]

MFCC_SAMPLE_RATE = 22050
"""Sample rate (Hz) the MFCCs are computed at; other rates are resampled first."""

N_MFCC = 20
"""Number of cepstral coefficients; the feature vector has ``6 * N_MFCC`` values."""

_DELTA_WIDTH = 9


def mfcc_features(y, sr: int) -> np.ndarray:
    """MFCC baseline vector of one track: 20 MFCCs, deltas and delta-deltas, mean and std over time.

    Parameters
    ----------
    y : array_like, shape (n_samples,) or (n_channels, n_samples)
        Waveform; several channels (channels first, as librosa and :mod:`mtlmusic` lay them out)
        are mixed down to mono by averaging.
    sr : int
        Sample rate of ``y`` in Hz; anything but 22,050 Hz is resampled to it (librosa's default
        resampler, soxr high quality).

    Returns
    -------
    numpy.ndarray, shape (120,), float32
        ``[mean(mfcc), mean(delta), mean(delta2), std(mfcc), std(delta), std(delta2)]``, 20 values
        each; standard deviations are population ones (ddof 0).

    Raises
    ------
    mtlmusic.AudioError
        If the waveform is empty, has more than 2 dimensions, or contains NaN or infinite values,
        or if ``sr`` is not positive.

    Notes
    -----
    The MFCCs are librosa's defaults at 22,050 Hz: 2,048-sample Hann windows, hop 512 (23 ms),
    centered frames, 128 Slaney mel bands, log power (``power_to_db``), orthonormal DCT-II.
    Derivatives use librosa's Savitzky-Golay ``delta`` over 9 frames. A clip shorter than
    9 frames (about 0.19 s) uses the widest odd window that fits, and one shorter than 3 frames
    gets zero derivatives.

    Examples
    --------
    >>> import numpy as np
    >>> sr = 22050
    >>> t = np.arange(sr) / sr
    >>> features = mfcc_features(np.sin(2 * np.pi * 440 * t), sr)
    >>> features.shape, features.dtype
    ((120,), dtype('float32'))
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=0)
    elif y.ndim != 1:
        raise AudioError(
            f"expected a waveform of shape (samples,) or (channels, samples), got {y.shape}"
        )
    if y.size == 0:
        raise AudioError("the waveform is empty")
    if not np.all(np.isfinite(y)):
        raise AudioError("the waveform contains NaN or infinite samples")
    if not sr > 0:
        raise AudioError(f"the sample rate must be positive, got {sr!r}")
    if sr != MFCC_SAMPLE_RATE:
        y = librosa.resample(y, orig_sr=sr, target_sr=MFCC_SAMPLE_RATE)
    mfcc = librosa.feature.mfcc(y=y, sr=MFCC_SAMPLE_RATE, n_mfcc=N_MFCC)
    n_frames = mfcc.shape[1]
    width = min(_DELTA_WIDTH, n_frames if n_frames % 2 else n_frames - 1)
    if width >= 3:
        delta = librosa.feature.delta(mfcc, width=width, order=1)
        delta2 = librosa.feature.delta(mfcc, width=width, order=2)
    else:
        delta = delta2 = np.zeros_like(mfcc)
    stacked = np.concatenate([mfcc, delta, delta2], axis=0)
    return np.concatenate([stacked.mean(axis=1), stacked.std(axis=1)]).astype(np.float32)
