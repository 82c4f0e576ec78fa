"""The torch front end against librosa, block processing, slicing and the long-file path."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from samples import REAL_MUSIC, tone
import mtlmusic.frontend as frontend
from mtlmusic.audio import load_audio
from mtlmusic.frontend import (SLICE_FRAMES, MelStream, Scaler, mel_filters, mel_power, power_to_db,
                               slice_frames, track_slices)


def librosa_db(y: np.ndarray) -> np.ndarray:
    S = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=1024, hop_length=256, n_mels=128)
    return librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=80).transpose(0, 2, 1)


def test_matches_librosa_on_real_music():
    y = load_audio(REAL_MUSIC)
    ours = power_to_db(mel_power(y)).numpy()
    reference = librosa_db(y)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 0.01


def test_matches_librosa_with_silence_and_odd_length():
    y = tone(3.3, 22050).T.copy()
    y[:, 10_000:30_000] = 0.0
    y = y[:, :70_001]
    assert np.abs(power_to_db(mel_power(y)).numpy() - librosa_db(y)).max() < 0.01


def test_filters_are_librosa_slaney():
    assert mel_filters().shape == (128, 513)
    assert np.allclose(mel_filters(), librosa.filters.mel(sr=22050, n_fft=1024, n_mels=128))


def test_band_groups_equal_the_full_filter_product():
    y = torch.from_numpy(tone(2.0, 22050).T.copy())
    spec = torch.stft(y, 1024, 256, window=torch.hann_window(1024), center=False, return_complex=True)
    full = spec.abs().square().transpose(1, 2) @ torch.from_numpy(mel_filters()).T
    assert torch.allclose(frontend.MelSpectrogram()(y), full, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n", [1, 255, 256, 1023, 1024, 5000])
def test_frame_count_is_centred(n):
    assert mel_power(np.ones((2, n), dtype=np.float32)).shape == (2, 1 + n // 256, 128)


def test_stream_in_blocks_equals_whole():
    y = tone(4.0, 22050).T.copy()
    stream = MelStream()
    parts = [stream.push(y[:, i:i + 777]) for i in range(0, y.shape[1], 777)] + [stream.finish()]
    assert torch.allclose(torch.cat(parts, dim=1), mel_power(y), rtol=1e-4, atol=1e-7)


def test_slices_pad_the_last_partial_slice():
    x = torch.arange(2 * 500 * 128, dtype=torch.float32).reshape(2, 500, 128)
    s = slice_frames(x, pad_value=-7.0)
    assert s.shape == (3, 2, SLICE_FRAMES, 128)
    assert torch.equal(s[1, :, 0], x[:, SLICE_FRAMES])
    assert torch.all(s[2, :, 500 - 2 * SLICE_FRAMES:] == -7.0)


def test_short_audio_gives_one_padded_slice():
    chunks = list(track_slices(np.ones(100, dtype=np.float32) * 0.1, sr=22050))
    assert [tuple(c.slices.shape) for c in chunks] == [(1, 2, SLICE_FRAMES, 128)]
    assert chunks[0].weights.tolist() == [1.0]  # the track is its one slice, whatever it holds


def test_silence_is_finite():
    (slices, _), = track_slices(np.zeros(22050, dtype=np.float32), sr=22050)
    assert torch.isfinite(slices).all()
    assert torch.all(slices == -100.0)


def test_scaler_standardizes_per_bin():
    scaler = Scaler(torch.arange(128.0), torch.full((128,), 2.0))
    out = scaler(torch.arange(128.0).expand(2, 5, 128) + 4.0)
    assert torch.allclose(out, torch.full_like(out, 2.0))


def test_zero_std_bin_is_guarded():
    scaler = Scaler(torch.zeros(128), torch.zeros(128))
    assert torch.isfinite(scaler(torch.zeros(1, 1, 128))).all()


def test_long_file_path_equals_in_memory_path(audio_dir, monkeypatch):
    path = audio_dir / "tone.flac"
    scaler = Scaler(torch.full((128,), -30.0), torch.full((128,), 15.0))
    in_memory = torch.cat([c.slices for c in track_slices(path, scaler=scaler, chunk_slices=1)])
    monkeypatch.setattr(frontend, "LONG_AUDIO_SECONDS", 1.0)
    two_pass = torch.cat([c.slices for c in track_slices(path, scaler=scaler, chunk_slices=1)])
    assert in_memory.shape == two_pass.shape == (3, 2, SLICE_FRAMES, 128)
    assert torch.allclose(in_memory, two_pass, atol=1e-4)


def test_chunking_does_not_change_slices():
    y = tone(12.0, 22050).T.copy()
    one = torch.cat([c.slices for c in track_slices(y, sr=22050, chunk_slices=1)])
    many = torch.cat([c.slices for c in track_slices(y, sr=22050, chunk_slices=64)])
    assert torch.equal(one, many)
