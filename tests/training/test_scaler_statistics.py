"""The one scaler accumulator and the one whole-track dB spectrogram, against brute-force references.

``mtlmusic.frontend.ScalerStats`` / ``Scaler.fit`` serve both the training scaler
(``melcache.fit_scaler``) and the Rand baseline's dataset scaler (``evaluation.fit_scaler``);
``mtlmusic.frontend.track_db`` serves the mel cache and the Rand scaler.
"""

import numpy as np
import pytest
import soundfile as sf
import torch

from mtlmusic.audio import load_audio
from mtlmusic.errors import AudioError
from mtlmusic.frontend import Scaler, ScalerStats, db_floor, mel_power, power_to_db, track_db
from mtlmusic_training import evaluation
from mtlmusic_training.melcache import build_mel_cache, fit_scaler, load_scaler, save_scaler
from samples import tone


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three 22,050 Hz files of different lengths and loudness, one of them mono."""
    folder = tmp_path_factory.mktemp("scaler_audio")
    paths = [folder / "a.wav", folder / "b.flac", folder / "c.wav"]
    sf.write(paths[0], tone(3.0, 22050, seed=1), 22050)
    sf.write(paths[1], 0.1 * tone(5.0, 22050, channels=1, seed=2)[:, 0], 22050)
    sf.write(paths[2], tone(0.5, 22050, seed=3), 22050)
    return paths


def brute_force_db(path) -> np.ndarray:
    """The whole file decoded at once, transformed at once: ``(2, frames, 128)`` dB."""
    power = mel_power(load_audio(path))
    return power_to_db(power, power.max().item()).numpy()


def pooled_frames(arrays) -> np.ndarray:
    """Every frame of every ``(2, frames, 128)`` array, both channels, as float64 rows."""
    return np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1, 128) for a in arrays])


def test_track_db_equals_the_whole_signal_transform(files):
    for path in files:
        expected = brute_force_db(path)
        db, floor = track_db(path)
        assert db.shape == expected.shape
        np.testing.assert_allclose(db.numpy(), expected, rtol=0, atol=1e-4)
        assert floor == pytest.approx(db_floor(float(mel_power(load_audio(path)).max())))
        assert db.min().item() >= floor - 1e-4
    samples = tone(2.0, 44100, seed=5).T.copy()
    db, floor = track_db(samples, sr=44100)
    power = mel_power(load_audio(samples, 44100))
    np.testing.assert_allclose(db.numpy(), power_to_db(power).numpy(), rtol=0, atol=1e-4)
    assert floor == pytest.approx(db_floor(power.max().item()))
    with pytest.raises(AudioError):
        track_db(files[0].parent / "missing.wav")


def test_scaler_stats_equal_numpy_over_all_frames():
    rng = np.random.default_rng(0)
    # dB-like values far from zero in a narrow range: where sums of squares lose their digits.
    parts = [1e4 + rng.normal(size=(2, n, 128)) for n in (1, 7, 300, 2, 1000)]
    stats = ScalerStats()
    for part in parts:
        stats.update(part)
    stats.update(np.zeros((2, 0, 128)))
    values = pooled_frames(parts)
    assert stats.count == len(values)
    np.testing.assert_allclose(stats.mean, values.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(stats.m2 / stats.count), values.std(axis=0), rtol=1e-9)
    scaler = Scaler.fit(torch.from_numpy(part).float() for part in parts[2:])
    values = pooled_frames(parts[2:]).astype(np.float32)
    np.testing.assert_allclose(scaler.mean.numpy(), values.astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(scaler.std.numpy(), values.astype(np.float64).std(axis=0), rtol=1e-4)
    with pytest.raises(ValueError, match="without frames"):
        Scaler.fit([])
    with pytest.raises(ValueError, match="128 mel bins"):
        ScalerStats().update(np.zeros((2, 5, 64)))


def test_dataset_scaler_equals_numpy_over_every_frame_of_the_files(files):
    reference = pooled_frames(brute_force_db(path) for path in files)
    calls = []
    scaler = evaluation.fit_scaler([*files, files[0].parent / "missing.wav"],
                                   progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (4, 4)
    np.testing.assert_allclose(scaler.mean.numpy(), reference.mean(axis=0), rtol=0, atol=1e-4)
    np.testing.assert_allclose(scaler.std.numpy(), reference.std(axis=0), rtol=1e-5, atol=1e-4)


def test_training_scaler_equals_numpy_over_the_cached_audio_frames(files, tmp_path):
    cache = build_mel_cache([(path.stem, path) for path in files], tmp_path / "cache", workers=0)
    # The cache holds float16 dB and pads the short file to one slice; the padding does not count.
    reference = pooled_frames(brute_force_db(path).astype(np.float16) for path in files)
    scaler = fit_scaler(cache)
    np.testing.assert_allclose(scaler.mean.numpy(), reference.mean(axis=0), rtol=0, atol=1e-4)
    np.testing.assert_allclose(scaler.std.numpy(), reference.std(axis=0), rtol=1e-5, atol=1e-4)
    path = save_scaler(scaler, tmp_path / "data" / "scaler.npz")
    again = load_scaler(path)
    assert torch.equal(again.mean, scaler.mean) and torch.equal(again.std, scaler.std)
    assert sorted(p.name for p in path.parent.iterdir()) == ["scaler.npz"]
