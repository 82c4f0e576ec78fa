"""explain(): task heads read back as topics and terms; plot_map(): a t-SNE map as PNG."""

import matplotlib.image
import numpy as np
import pytest
import torch

import mtlmusic
from mtlmusic.errors import ConfigError
from mtlmusic_training.explain import explain, plot_map
from mtlmusic.frontend import track_slices
from samples import tone

SR = 22050


@pytest.fixture()
def model(model_file):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield mtlmusic.load_model(model_file, device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def audio():
    return tone(6.0, SR).T  # (2, n): three slices


def _tag_table(n_terms=30, k=50, seed=0):
    terms = [f"term{j:02d}" for j in range(n_terms)]
    table = np.random.default_rng(seed).dirichlet(np.ones(n_terms), size=k)
    return terms, table


def test_topics_follow_each_tasks_own_branch_and_head(model, audio):
    terms, table = _tag_table()
    found = explain(model, audio, {"tag": (terms, table)}, top_topics=4, top_terms=6, sr=SR)
    assert list(found) == ["bpm", "tag"]  # every topic task, not the siamese self task
    network = model.network
    with torch.no_grad():
        (slices, weights), = track_slices(audio, SR, model.scaler)
        for source in ("bpm", "tag"):
            probabilities = torch.softmax(network.heads[source](network.task_features(slices, source)), 1)
            expected = weights @ probabilities / weights.sum()  # the final, partial slice weighs what it holds
            np.testing.assert_allclose(found[source].distribution, expected.numpy(), rtol=1e-4, atol=1e-6)
    tag = found["tag"]
    assert tag.distribution.shape == (50,) and tag.distribution.sum() == pytest.approx(1.0)
    assert len(tag.topics) == 4
    probabilities = [t.probability for t in tag.topics]
    assert probabilities == sorted(probabilities, reverse=True)
    first = tag.topics[0]
    assert first.index == int(np.argmax(tag.distribution))
    assert first.terms == tuple(terms[j] for j in np.argsort(-table[first.index])[:6])
    assert np.all(np.diff(first.weights) <= 0) and len(first.weights) == 6
    assert found["bpm"].topics[0].terms == ()  # no topic-term table given for bpm


def test_strongest_topic_is_the_one_a_head_favours(model, audio):
    terms, table = _tag_table()
    table[17] = 0.0
    table[17, [3, 9, 1]] = [0.5, 0.3, 0.2]
    with torch.no_grad():
        model.network.heads["tag"].bias.zero_()
        model.network.heads["tag"].bias[17] = 50.0
        model.network.heads["bpm"].bias[42] = 50.0
    found = explain(model, audio, {"tag": (terms, table)}, top_terms=3, sr=SR)
    assert found["tag"].topics[0].index == 17
    assert found["tag"].topics[0].probability > 0.99
    assert found["tag"].topics[0].terms == ("term03", "term09", "term01")
    assert found["bpm"].topics[0].index == 42
    only_tag = explain(model, audio, {"tag": (terms, table)}, sr=SR, sources=["tag"])
    assert list(only_tag) == ["tag"]


def test_explain_rejects_what_does_not_fit(model, audio):
    terms, table = _tag_table()
    with pytest.raises(ConfigError, match="50 x 30"):
        explain(model, audio, {"tag": (terms, table[:, :-1])}, sr=SR)
    with pytest.raises(ConfigError, match="not a topic task"):
        explain(model, audio, {"year": (terms, table)}, sr=SR)
    with pytest.raises(ConfigError, match="not a topic task"):
        explain(model, audio, sr=SR, sources=["self"])
    with pytest.raises(ConfigError, match="top_topics"):
        explain(model, audio, sr=SR, top_topics=0)


def test_plot_map_writes_an_image(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(["blues", "rock", "jazz"], 15)
    centers = {"blues": 0.0, "rock": 4.0, "jazz": -4.0}
    features = rng.normal(size=(45, 60)) + np.array([centers[label] for label in labels])[:, None]
    xy = plot_map(features, labels, tmp_path / "map.png", title="toy")
    assert xy.shape == (45, 2) and np.all(np.isfinite(xy))
    image = matplotlib.image.imread(tmp_path / "map.png")
    assert image.ndim == 3 and image.shape[0] > 100
    values = rng.uniform(1, 9, size=45)  # a regression target: a colour scale
    plot_map(features, values, tmp_path / "values.png")
    assert matplotlib.image.imread(tmp_path / "values.png").ndim == 3
    with pytest.raises(ConfigError, match="n >= 3"):
        plot_map(features[:2], labels[:2], tmp_path / "small.png")
