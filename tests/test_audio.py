"""Decoding, resampling and the channel policy, on real and generated audio, good and bad."""

from __future__ import annotations

import os

import librosa
import numpy as np
import pytest
import soundfile as sf

from samples import REAL_MUSIC, tone
from mtlmusic import AudioError, DecoderNotFoundError, load_audio
from mtlmusic.audio import SAMPLE_RATE, audio_info, downmix_matrix, stream_audio


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_formats_decode_like_librosa(audio_dir, fmt):
    path = audio_dir / f"tone.{fmt}"
    ours = load_audio(path)
    reference, _ = librosa.load(path, sr=SAMPLE_RATE, mono=False)
    assert ours.dtype == np.float32 and ours.shape[0] == 2
    assert abs(ours.shape[1] - reference.shape[1]) <= 1
    n = min(ours.shape[1], reference.shape[1])
    assert np.abs(ours[:, :n] - reference[:, :n]).max() < 1e-4


def test_real_music_equals_librosa_load():
    ours = load_audio(REAL_MUSIC)
    reference, _ = librosa.load(REAL_MUSIC, sr=SAMPLE_RATE, mono=False)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-5


def test_blocks_equal_whole_file(audio_dir):
    whole = load_audio(audio_dir / "tone.flac")
    blocks = list(stream_audio(audio_dir / "tone.flac", block_frames=10_000))
    assert len(blocks) > 10
    joined = np.concatenate(blocks, axis=1)
    assert joined.shape == whole.shape
    assert np.abs(joined - whole).max() < 1e-5


def test_m4a_through_ffmpeg(m4a_file):
    assert audio_info(m4a_file).decoder == "ffmpeg"
    y = load_audio(m4a_file)
    assert y.shape[0] == 2 and abs(y.shape[1] / SAMPLE_RATE - 6.0) < 0.1
    assert np.abs(y).max() > 0.1


def test_missing_decoder_is_named(m4a_file, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg on PATH
    with pytest.raises(DecoderNotFoundError, match="ffmpeg") as err:
        load_audio(m4a_file)
    assert str(m4a_file) in str(err.value)


def test_mono_is_duplicated(tmp_path):
    sf.write(tmp_path / "mono.wav", tone(1.0, 22050, channels=1)[:, 0], 22050)
    y = load_audio(tmp_path / "mono.wav")
    assert y.shape == (2, 22050)
    assert np.array_equal(y[0], y[1])


def test_8khz_mono(tmp_path):
    sf.write(tmp_path / "phone.wav", tone(2.0, 8000, channels=1), 8000, subtype="PCM_16")
    y = load_audio(tmp_path / "phone.wav")
    assert y.shape == (2, 2 * SAMPLE_RATE)
    reference = librosa.resample(sf.read(tmp_path / "phone.wav", dtype="float32")[0], orig_sr=8000,
                                 target_sr=SAMPLE_RATE, res_type="soxr_hq")
    assert np.abs(y[0] - reference).max() < 1e-5


def test_six_channels_downmix_itu(tmp_path):
    frames = tone(1.0, 44100, channels=6)
    sf.write(tmp_path / "surround.wav", frames, 44100)
    y = load_audio(tmp_path / "surround.wav")
    assert y.shape == (2, SAMPLE_RATE)
    fl, fr, c, lfe, sl, sr_ = frames.T
    g = np.sqrt(0.5)
    expected_left = (fl + g * c + g * sl) / (1 + 2 * g)
    expected = librosa.resample(expected_left, orig_sr=44100, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    assert np.abs(y[0] - expected).max() < 1e-4


def test_downmix_keeps_level_of_common_signal():
    for channels in range(1, 10):
        m = downmix_matrix(channels)
        assert m.shape == (2, channels)
        assert np.allclose(m.sum(axis=1), 1.0)


def test_48k_24bit_flac(tmp_path):
    sf.write(tmp_path / "hires.flac", tone(3.0, 48000), 48000, subtype="PCM_24")
    y = load_audio(tmp_path / "hires.flac")
    assert y.shape == (2, 3 * SAMPLE_RATE)
    assert 0.2 < np.abs(y).max() < 1.0


def test_missing_file():
    with pytest.raises(AudioError, match="no such file"):
        load_audio("does/not/exist.mp3")


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(AudioError, match="not a file"):
        load_audio(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.mp3")


def test_non_audio_file(tmp_path):
    (tmp_path / "notes.wav").write_text("this is not audio\n" * 200)
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(tmp_path / "notes.wav")


def test_truncated_mp3_decodes_what_is_there_and_warns(audio_dir, tmp_path):
    data = (audio_dir / "tone.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="truncated"):
        y = load_audio(tmp_path / "cut.mp3")
    seconds = y.shape[1] / SAMPLE_RATE
    assert 2.0 < seconds < 4.0
    full = load_audio(audio_dir / "tone.mp3")
    assert np.abs(y[:, : SAMPLE_RATE] - full[:, : SAMPLE_RATE]).max() < 1e-4


def test_header_only_wav_is_rejected(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros((0, 2), dtype=np.float32), 44100)
    assert os.path.getsize(tmp_path / "zero.wav") > 0
    with pytest.raises(AudioError):
        load_audio(tmp_path / "zero.wav")


def test_array_needs_sample_rate():
    with pytest.raises(AudioError, match="sr="):
        load_audio(np.zeros(100, dtype=np.float32))


def test_array_with_nan():
    y = np.zeros(1000, dtype=np.float32)
    y[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        load_audio(y, sr=22050)


def test_array_transposed_is_explained():
    with pytest.raises(AudioError, match="y.T"):
        load_audio(np.zeros((44100, 2), dtype=np.float32), sr=44100)


def test_int16_array_is_scaled():
    y = (np.ones(22050) * 16384).astype(np.int16)
    out = load_audio(y, sr=22050)
    assert np.allclose(out, 0.5)


def test_one_sample_array():
    assert load_audio(np.ones(1, dtype=np.float32), sr=22050).shape == (2, 1)
