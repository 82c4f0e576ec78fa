"""The MFCC baseline."""

import librosa
import numpy as np
import pytest

from mtlmusic.errors import AudioError
from mtlmusic_training.evaluation import mfcc_features

SR = 22050


def _tone(seconds=2.0, sr=SR, freq=440.0):
    t = np.arange(int(seconds * sr)) / sr
    return (
        0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(0).normal(size=t.size)
    ).astype(np.float32)


def test_layout_matches_librosa_statistics():
    y = _tone()
    features = mfcc_features(y, SR)
    assert features.shape == (120,) and features.dtype == np.float32
    mfcc = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20)
    delta2 = librosa.feature.delta(mfcc, order=2)
    np.testing.assert_allclose(features[:20], mfcc.mean(axis=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(features[100:], delta2.std(axis=1), rtol=1e-5, atol=1e-4)
    assert np.all(features[60:] >= 0)  # second half: standard deviations


def test_stereo_is_mixed_down_and_other_rates_resampled():
    y = _tone()
    stereo = np.stack([y, y])
    np.testing.assert_allclose(
        mfcc_features(stereo, SR), mfcc_features(y, SR), rtol=1e-5, atol=1e-4
    )
    at_44k = librosa.resample(y, orig_sr=SR, target_sr=44100)
    back = librosa.resample(at_44k, orig_sr=44100, target_sr=SR)
    np.testing.assert_allclose(
        mfcc_features(at_44k, 44100), mfcc_features(back, SR), rtol=1e-5, atol=1e-4
    )


@pytest.mark.filterwarnings("ignore:n_fft=2048 is too large")
@pytest.mark.parametrize("n_samples", [1, 1000, 3000])
def test_very_short_clips_still_give_finite_features(n_samples):
    features = mfcc_features(_tone()[:n_samples], SR)
    assert features.shape == (120,) and np.all(np.isfinite(features))


def test_bad_waveforms_raise_audio_error():
    with pytest.raises(AudioError, match="empty"):
        mfcc_features(np.zeros(0), SR)
    with pytest.raises(AudioError, match="NaN"):
        mfcc_features(np.array([0.0, np.nan, 0.0]), SR)
    with pytest.raises(AudioError, match="shape"):
        mfcc_features(np.zeros((1, 2, 3)), SR)
    with pytest.raises(AudioError, match="sample rate"):
        mfcc_features(np.zeros(100), 0)
