"""The public API: load_model, extract, extract_slices, feature layout, bad input end to end."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import mtlmusic
from samples import REAL_MUSIC, tone
from mtlmusic import AudioError, ModelNotFoundError
from mtlmusic.frontend import SLICE_SECONDS


@pytest.fixture(scope="module")
def model(model_file):
    return mtlmusic.load_model(model_file, device="cpu")


def test_model_attributes(model):
    assert model.architecture == "MS-CR@2"
    assert model.sources == ("self", "bpm", "tag")
    assert model.dim == 2 * 256 * 3 == len(model.feature_names)
    assert model.name == "mscr2-self-bpm-tag"


def test_extract_a_real_file(model):
    features = model.extract(REAL_MUSIC)
    assert features.shape == (model.dim,) and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert features[model.feature_slice("tag", "std")].max() > 0


def test_mean_and_std_are_the_slice_statistics(model):
    slices = model.extract_slices(REAL_MUSIC)
    assert slices.features.shape == (5, 256 * 3)  # 12 s -> 4 full slices + 1 padded
    assert np.allclose(slices.times, np.arange(5) * SLICE_SECONDS)
    features = model.extract(REAL_MUSIC)
    weights = np.ones(5)
    weights[-1] = (1 + sf.info(REAL_MUSIC).frames * 22050 // sf.info(REAL_MUSIC).samplerate // 256 - 4 * 216) / 216
    mean = np.average(slices.features, axis=0, weights=weights)
    std = np.sqrt(np.average((slices.features - mean) ** 2, axis=0, weights=weights))
    assert np.allclose(features[:768], mean, atol=1e-5)
    assert np.allclose(features[768:], std, atol=1e-5)


def test_feature_blocks_by_name(model):
    names = model.feature_names
    for block in model.representation_blocks:
        for stat in ("mean", "std"):
            picked = names[model.feature_slice(block, stat)]
            assert len(picked) == 256 and all(n.startswith(f"{stat}.{block}.") for n in picked)


def test_list_of_paths_gives_rows_in_order(model, audio_dir):
    paths = [audio_dir / "tone.flac", REAL_MUSIC, audio_dir / "tone.mp3"]
    matrix = model.extract(paths)
    assert matrix.shape == (3, model.dim)
    assert np.allclose(matrix[1], model.extract(REAL_MUSIC))


def test_same_output_whatever_the_batch(model_file):
    small = mtlmusic.load_model(model_file, device="cpu")
    small.batch_size = 1
    large = mtlmusic.load_model(model_file, device="cpu")
    assert np.allclose(small.extract(REAL_MUSIC), large.extract(REAL_MUSIC), atol=1e-5)


def test_forward_passes_in_parts_equal_the_eager_network(model):
    x = torch.randn(40, 2, 216, 128)  # more than CPU_FORWARD_SLICES
    with torch.no_grad():
        expected = model.network.eval().features(x)
    assert torch.allclose(model.slice_features(x), expected, atol=1e-4)


def test_file_and_array_agree(model):
    y, sr = sf.read(REAL_MUSIC, dtype="float32")
    assert np.allclose(model.extract(y.T, sr=sr), model.extract(REAL_MUSIC), atol=1e-5)


def test_one_slice_track_has_zero_std(model):
    features = model.extract(tone(1.0, 22050).T, sr=22050)
    assert np.isfinite(features).all()
    assert np.all(features[model.dim // 2:] == 0)


@pytest.mark.parametrize("audio,sr", [
    (np.zeros(22050 * 3, dtype=np.float32), 22050),       # digital silence
    (np.ones(1, dtype=np.float32) * 0.5, 22050),           # one sample
    (tone(2.0, 8000, channels=1)[:, 0], 8000),             # 8 kHz mono
    (tone(3.0, 44100, channels=6).T, 44100),               # 5.1
])
def test_unusual_audio_gives_finite_features(model, audio, sr):
    features = model.extract(audio, sr=sr)
    assert features.shape == (model.dim,) and np.isfinite(features).all()


def test_mono_equals_duplicated_stereo(model):
    y = tone(3.0, 22050, channels=1)[:, 0]
    assert np.allclose(model.extract(y, sr=22050), model.extract(np.stack([y, y]), sr=22050), atol=1e-6)


def test_bad_inputs_raise_audio_errors(model, tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        model.extract(tmp_path / "empty.wav")
    with pytest.raises(AudioError, match="no such file"):
        model.extract([REAL_MUSIC, tmp_path / "missing.ogg"])
    with pytest.raises(AudioError, match="NaN"):
        model.extract(np.full(1000, np.nan, dtype=np.float32), sr=22050)


def test_default_model_says_none_is_installed(monkeypatch, tmp_path):
    """A package installed without its weights says so (never random weights posing as a model)."""
    monkeypatch.setattr(mtlmusic.registry, "EMBEDDED_DIR", tmp_path)
    with pytest.raises(ModelNotFoundError, match="No default weights"):
        mtlmusic.load_model("default")


def test_unknown_name():
    with pytest.raises(ModelNotFoundError, match="Unknown model"):
        mtlmusic.load_model("mscr2-nonsense")


def test_module_level_extract_reuses_the_model(model_file):
    a = mtlmusic.extract(REAL_MUSIC, model=str(model_file), device="cpu")
    b = mtlmusic.extract(REAL_MUSIC, model=str(model_file), device="cpu")
    assert np.array_equal(a, b)
    assert mtlmusic.model._cached_model.cache_info().hits >= 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(model_file):
    cpu = mtlmusic.load_model(model_file, device="cpu").extract(REAL_MUSIC)
    gpu = mtlmusic.load_model(model_file, device="cuda").extract(REAL_MUSIC)
    assert np.allclose(cpu, gpu, atol=1e-3)
