"""Decoding, resampling and the channel policy, on real and generated audio, good and bad."""

from __future__ import annotations

import os
import subprocess

import librosa
import numpy as np
import pytest
import soundfile as sf

from samples import REAL_MUSIC, tone
from mtlmusic import AudioError, ConfigError, DecoderNotFoundError, load_audio
from mtlmusic.audio import SAMPLE_RATE, AudioInfo, audio_info, check_sample_rate, downmix_matrix, stream_audio


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


@pytest.mark.parametrize("sr", [22050.0, np.float32(22050), np.float64(22050), np.int64(22050), np.int16(22050)])
def test_whole_float_and_numpy_sample_rates_are_accepted(sr):
    y = tone(1.0, 22050).T
    assert check_sample_rate(sr) == 22050 and type(check_sample_rate(sr)) is int
    assert np.array_equal(load_audio(y, sr=sr), load_audio(y, sr=22050))


@pytest.mark.parametrize("sr,reason", [
    (22050.5, "whole number"), (0, "positive"), (-44100.0, "positive"), (float("nan"), "positive"),
    (float("inf"), "positive"), ("22050", "number of samples per second"), (True, "number of samples per second"),
])
def test_bad_sample_rates_say_why(sr, reason):
    with pytest.raises(AudioError, match=reason):
        load_audio(tone(1.0, 22050).T, sr=sr)


def _surround_file(path, channel: int, **write_options) -> None:
    """1 s of 6 channels at 44.1 kHz, silent but for a tone in ``channel``."""
    frames = np.zeros((44100, 6), dtype=np.float32)
    frames[:, channel] = tone(1.0, 44100, channels=1)[:, 0]
    sf.write(path, frames, 44100, **write_options)


def _left_right_rms(source) -> np.ndarray:
    y = source if isinstance(source, np.ndarray) else load_audio(source)
    return np.sqrt(np.mean(y.astype(np.float64) ** 2, axis=1))


def _assert_lands(rms: np.ndarray, side: str) -> None:
    assert rms.max() > 0.05
    if side == "both":
        assert abs(rms[0] - rms[1]) < 0.01 * rms.max()
    else:
        assert rms[1 - "lr".index(side)] < 0.01 * rms["lr".index(side)]


# Ogg Vorbis 5.1 is L, C, R, Ls, Rs, LFE; WAV 5.1 is L, R, C, LFE, Ls, Rs.
@pytest.mark.parametrize("channel,side", [(0, "l"), (1, "both"), (2, "r"), (3, "l"), (4, "r")])
def test_ogg_vorbis_surround_is_downmixed_in_vorbis_order(tmp_path, channel, side):
    path = tmp_path / "surround.ogg"
    _surround_file(path, channel, format="OGG", subtype="VORBIS")
    info = audio_info(path)
    assert (info.decoder, info.channel_order) == ("soundfile", "vorbis")
    _assert_lands(_left_right_rms(path), side)


@pytest.mark.parametrize("channel,side", [(1, "both"), (4, "r")])
def test_ogg_vorbis_decoded_by_ffmpeg_lands_alike(tmp_path, ffmpeg, channel, side):
    path = tmp_path / "surround.ogg"
    _surround_file(path, channel, format="OGG", subtype="VORBIS")
    info = AudioInfo(path, 44100, 6, 1.0, decoder="ffmpeg")
    _assert_lands(_left_right_rms(np.concatenate(list(stream_audio(info)), axis=1)), side)


@pytest.mark.parametrize("channel,side", [(0, "l"), (1, "r"), (2, "both"), (4, "l"), (5, "r")])
def test_wav_surround_is_downmixed_in_wav_order(tmp_path, channel, side):
    path = tmp_path / "surround.wav"
    _surround_file(path, channel)
    _assert_lands(_left_right_rms(path), side)


@pytest.mark.parametrize("channel,side", [(2, "both"), (4, "l"), (5, "r")])
def test_opus_surround_made_by_ffmpeg(tmp_path, ffmpeg, channel, side):
    _surround_file(tmp_path / "surround.wav", channel)  # WAV order, taken by ffmpeg as 5.1
    result = subprocess.run([ffmpeg, "-v", "error", "-i", str(tmp_path / "surround.wav"), "-c:a", "libopus",
                             str(tmp_path / "surround.opus")], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"ffmpeg cannot encode 5.1 Opus here: {result.stderr.strip()[-200:]}")
    _assert_lands(_left_right_rms(tmp_path / "surround.opus"), side)


@pytest.mark.parametrize("channels", [3, 5, 6, 7, 8])
def test_vorbis_order_is_wav_order_reordered(channels):
    wav = downmix_matrix(channels)
    vorbis = downmix_matrix(channels, order="vorbis")
    assert np.allclose(vorbis.sum(axis=1), 1.0)
    assert np.array_equal(vorbis[:, 1], wav[:, 2])  # the centre: second in Vorbis order, third in WAV's
    assert np.array_equal(np.sort(vorbis, axis=1), np.sort(wav, axis=1))


def test_six_one_sends_the_back_centre_to_both_sides():
    m = downmix_matrix(7)  # L, R, C, LFE, Cs, Ls, Rs
    assert m[0, 4] == m[1, 4] > 0 and m[0, 3] == m[1, 3] == 0
    assert m[0, 5] > 0 == m[1, 5] and m[1, 6] > 0 == m[0, 6]


def test_unknown_channel_order():
    with pytest.raises(ConfigError, match="'wav', 'vorbis'"):
        downmix_matrix(6, order="smpte")
