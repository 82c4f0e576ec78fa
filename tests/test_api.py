"""The public API: load_model, extract, extract_slices, feature layout, bad input end to end."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

import mtlmusic
from samples import REAL_MUSIC, tone
from mtlmusic import AudioError, ConfigError, ModelNotFoundError
from mtlmusic.architectures import build_network
from mtlmusic.frontend import SLICE_SECONDS, Scaler
from mtlmusic.nets import ConvBlock


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
    # Slices batched with another file's round differently in float32 (a small std, most of all).
    np.testing.assert_allclose(matrix[1], model.extract(REAL_MUSIC), rtol=1e-4, atol=1e-6)


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


def _features_of_a_fresh_model(model, y):
    """What a Model built now on a copy of ``model.network`` extracts from ``y`` (22,050 Hz)."""
    return mtlmusic.Model(copy.deepcopy(model.network), model.scaler, device="cpu").extract(y, sr=22050)


def test_extraction_follows_changes_to_the_network(model_file):
    model = mtlmusic.load_model(model_file, device="cpu")
    y = tone(5.0, 22050).T
    original = copy.deepcopy(model.network.state_dict())
    before = model.extract(y, sr=22050)

    model.network.train()  # one step of fine-tuning, in place
    optimizer = torch.optim.SGD(model.network.parameters(), lr=0.05)
    model.network(torch.randn(4, 2, 216, 128), "bpm").logsumexp(dim=1).mean().backward()
    optimizer.step()
    tuned = model.extract(y, sr=22050)
    assert not np.allclose(tuned, before, atol=1e-3)
    assert np.allclose(tuned, _features_of_a_fresh_model(model, y), atol=1e-5)
    model.network.eval()  # the network's mode does not matter
    assert np.array_equal(model.extract(y, sr=22050), tuned)

    other = build_network("MS-CR@2", ["self", "bpm", "tag"])
    model.network.load_state_dict(other.state_dict())
    expected = mtlmusic.Model(other, model.scaler, device="cpu").extract_slices(y, sr=22050).features
    assert np.allclose(model.extract_slices(y, sr=22050).features, expected, atol=1e-5)
    model.network.load_state_dict(original)
    assert np.allclose(model.extract(y, sr=22050), before, atol=1e-5)

    model.network.shared[0] = ConvBlock(2, 16, 5, stride=(2, 1))  # a new layer with other weights
    replaced = model.extract(y, sr=22050)
    assert not np.allclose(replaced, before, atol=1e-3)
    assert np.allclose(replaced, _features_of_a_fresh_model(model, y), atol=1e-5)
    model.network.shared[0].pool = torch.nn.AvgPool2d(2)  # a new layer without weights
    pooled = model.extract(y, sr=22050)
    assert not np.allclose(pooled, replaced, atol=1e-3)
    assert np.allclose(pooled, _features_of_a_fresh_model(model, y), atol=1e-5)


def test_unchanged_network_is_not_rebuilt(model):
    network = model._current_inference_network()
    model.extract(tone(3.0, 22050).T, sr=22050)
    assert model._current_inference_network() is network


def test_pickled_model_extracts_alike(model):
    y = tone(3.0, 22050).T
    restored = pickle.loads(pickle.dumps(model))
    assert np.array_equal(restored.extract(y, sr=22050), model.extract(y, sr=22050))
    copied = copy.deepcopy(model)
    torch.nn.init.zeros_(copied.network.shared[0].conv.weight)
    assert not np.allclose(copied.extract(y, sr=22050), model.extract(y, sr=22050), atol=1e-3)


def test_missing_cuda_is_a_config_error(model_file, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    network = build_network("MS-CR@2", ["self", "bpm"])
    calls = [lambda: mtlmusic.Model(network, Scaler.identity(), device="cuda"),
             lambda: mtlmusic.load_model(model_file, device="cuda:0"),
             lambda: mtlmusic.extract(REAL_MUSIC, model=str(model_file), device="cuda")]
    for call in calls:
        with pytest.raises(ConfigError, match=r"CUDA is not available on this machine.*device='cpu'"):
            call()


def test_absent_cuda_index_lists_the_devices(model_file, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match="'cuda:7' does not exist: this machine has 2 CUDA device.*cuda:0, cuda:1"):
        mtlmusic.load_model(model_file, device="cuda:7")


def test_missing_mps_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="MPS is not available.*device='cpu'"):
        mtlmusic.Model(build_network("MS-CR@2", ["self", "bpm"]), Scaler.identity(), device="mps")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "", "meta", "xla"])
def test_unknown_device_names_the_valid_ones(model_file, device):
    with pytest.raises(ConfigError, match="use 'cpu', 'cuda', 'cuda:N'.* or 'mps'"):
        mtlmusic.load_model(model_file, device=device)


def test_float_sample_rate_of_an_array(model):
    y = tone(3.0, 44100).T
    assert np.array_equal(model.extract(y, sr=44100.0), model.extract(y, sr=44100))


def test_a_few_milliseconds_more_audio_barely_move_the_track_vector(model):
    """11.6 ms more audio add a slice of one real frame: it weighs 1/216, not a whole slice."""
    y, sr = sf.read(REAL_MUSIC, dtype="float32", always_2d=True)
    y = mtlmusic.load_audio(y.T, sr)
    exact = (4 * 216 - 1) * 256                      # exactly four slices of frames
    four = model.extract(y[:, :exact], sr=22050)
    longer = model.extract(y[:, :exact + 256], sr=22050)
    slices = model.extract_slices(y[:, :exact + 256], sr=22050).features
    assert slices.shape[0] == 5
    unweighted = np.concatenate([slices.mean(0), slices.std(0)])  # the padded slice counted fully

    def moved(a, b):
        return np.linalg.norm(a - b) / np.linalg.norm(b)

    half = model.dim // 2
    assert moved(longer, four) < 0.01 and moved(longer[:half], four[:half]) < 0.005
    assert moved(longer[half:], four[half:]) < 0.1
    assert moved(unweighted, four) > 10 * moved(longer, four)
