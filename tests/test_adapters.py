"""The HEAR 2021 API and the scikit-learn transformer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import parametrize_with_checks

import mtlmusic
from samples import REAL_MUSIC, tone
from mtlmusic import hear
from mtlmusic.sklearn import MusicFeatures


@pytest.fixture(scope="module")
def hear_model(model_file):
    return hear.load_model(str(model_file), device="cpu")


def test_hear_attributes(hear_model):
    assert hear_model.sample_rate == 22050
    assert hear_model.scene_embedding_size == 2 * 768
    assert hear_model.timestamp_embedding_size == 768


def test_hear_scene_embeddings(hear_model, model_file):
    audio = torch.from_numpy(tone(3.0, 22050, channels=2).T.copy())
    embeddings = hear.get_scene_embeddings(audio, hear_model)
    assert embeddings.shape == (2, hear_model.scene_embedding_size)
    model = mtlmusic.load_model(model_file, device="cpu")
    assert np.allclose(embeddings[0].numpy(), model.extract(audio[0].numpy(), sr=22050), atol=1e-5)


def test_hear_timestamp_embeddings(hear_model, model_file):
    audio = torch.from_numpy(tone(1.0, 22050, channels=3).T.copy())
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, hear_model)
    n = 1 + (1 + 22050 // 256 - 1) // hear_model.hop_frames
    assert embeddings.shape == (3, n, hear_model.timestamp_embedding_size)
    assert timestamps.shape == (3, n)
    assert torch.all(timestamps[:, 1:] > timestamps[:, :-1])
    assert abs(timestamps[0, 1].item() - 50.0) < 10


def test_hear_window_at_centre_equals_a_slice(model_file):
    """A window centred on 1.25 s of a clip is the clip's first slice."""
    model = hear.load_model(str(model_file), hop=108 * 256 / 22050, device="cpu")
    clip = torch.from_numpy(tone(5.0, 22050, channels=1)[:, 0].copy())
    embeddings, _ = hear.get_timestamp_embeddings(clip[None], model)
    slices = mtlmusic.load_model(model_file, device="cpu").extract_slices(clip.numpy(), sr=22050)
    assert torch.allclose(embeddings[0, 1], torch.from_numpy(slices.features[0]), atol=1e-4)


def test_hear_rejects_bad_shapes(hear_model):
    with pytest.raises(mtlmusic.AudioError):
        hear.get_scene_embeddings(torch.zeros(100), hear_model)


def test_pipeline_on_paths(model_file, audio_dir):
    paths = [str(REAL_MUSIC), str(audio_dir / "tone.wav"), str(audio_dir / "tone.flac"), str(REAL_MUSIC)]
    labels = [1, 0, 0, 1]
    pipe = make_pipeline(MusicFeatures(model=str(model_file), device="cpu"), StandardScaler(), LinearSVC())
    pipe.fit(paths, labels)
    assert list(pipe.predict(paths)) == labels
    names = pipe[0].get_feature_names_out()
    assert names[0] == "mean.self.000" and len(names) == 2 * 768


def test_waveforms_need_sr(model_file):
    transformer = MusicFeatures(model=str(model_file)).fit([np.zeros(100)])
    with pytest.raises(mtlmusic.ConfigError, match="sr"):
        transformer.transform([np.zeros(100)])


def _small_model(tmp_path_factory=None):
    from mtlmusic.architectures import build_network
    from mtlmusic.frontend import Scaler
    from mtlmusic.modelfile import save_model_file
    import tempfile, os
    path = os.path.join(tempfile.mkdtemp(), "ssr-bpm.safetensors")
    save_model_file(path, build_network("SS-R", ["bpm"]), Scaler.identity())
    return path


@parametrize_with_checks([MusicFeatures(model=_small_model(), sr=22050, device="cpu")])
def test_scikit_learn_contract(estimator, check):
    check(estimator)
