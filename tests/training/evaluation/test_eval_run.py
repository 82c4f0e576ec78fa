"""evaluate(): every kind of features source on a tiny GTZAN-layout dataset, the feature cache, the CLI."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mtlmusic
import mtlmusic.model
import mtlmusic_training.evaluation.run as evaluation_run
from gtzan_clips import write_gtzan
from mtlmusic_training.cli import app
from mtlmusic.errors import AudioError, ConfigError
from mtlmusic_training.evaluation import (
    dataset_features,
    evaluate,
    evaluate_classification,
    fit_scaler,
    load_gtzan,
    mfcc_features,
    rand_model,
)
from mtlmusic.extraction.sinks import write_features

SR = 22050
SPLITS = {"n_repeats": 1, "n_folds": 3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def gtzan_root(tmp_path_factory):
    return write_gtzan(tmp_path_factory.mktemp("gtzan"), clips=6, seconds=1.0)


@pytest.fixture(scope="module")
def dataset(gtzan_root):
    return load_gtzan(gtzan_root)


def test_model_file_feature_file_and_loaded_model_agree(dataset, model_file, tmp_path):
    by_file = evaluate(model_file, dataset, **SPLITS)
    assert (by_file.task, by_file.metric, by_file.n_splits) == ("classification", "accuracy", 3)
    model = mtlmusic.load_model(model_file, device="cpu")
    features = model.extract([str(p) for p in dataset.paths])
    by_model = evaluate(model, dataset, **SPLITS)
    expected = evaluate_classification(features, dataset.labels, **SPLITS)
    np.testing.assert_allclose(by_model.scores, expected.scores)
    np.testing.assert_allclose(by_file.scores, expected.scores)

    # A feature file written elsewhere (other root, shuffled rows, extra tracks) matches by path ending.
    moved = [f"/elsewhere/genres/{p.parent.name}/{p.name}" for p in dataset.paths]
    order = np.random.default_rng(0).permutation(len(moved))
    extra = np.zeros((1, features.shape[1]), np.float32)
    table = tmp_path / "feats.npz"
    write_features(table, np.vstack([features[order], extra]), [moved[i] for i in order] + ["/x/other.wav"],
                   model.feature_names)
    found = dataset_features(table, dataset)
    np.testing.assert_array_equal(found.features, features)
    np.testing.assert_allclose(evaluate(table, dataset, **SPLITS).scores, expected.scores)

    write_features(table, features[1:], moved[1:], model.feature_names)
    with pytest.raises(ConfigError, match="no row for 1 of the 12 tracks"):
        evaluate(table, dataset, **SPLITS)


def test_baselines_separate_the_tones(dataset):
    mfcc = evaluate("mfcc", dataset, **SPLITS)
    assert mfcc.mean == 1.0
    rand = evaluate("rand", dataset, **SPLITS)
    assert rand.mean >= 0.8
    first = dataset_features("RAND", dataset)
    again = dataset_features("rand", dataset)
    assert first.features.shape == (12, 512)
    np.testing.assert_array_equal(first.features, again.features)  # Rand is deterministic


def test_rand_model_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = rand_model(device="cpu"), rand_model(device="cpu")
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(p, q) for p, q in zip(a.network.parameters(), b.network.parameters()))
    other = rand_model(seed=1, device="cpu")
    assert not torch.equal(next(a.network.parameters()), next(other.network.parameters()))


def test_fit_scaler_standardizes_the_frames(dataset):
    scaler = fit_scaler(dataset.paths[:3])
    assert scaler.mean.shape == (128,) and torch.all(scaler.std > 0)
    with pytest.raises(AudioError, match="none of the audio files"):
        fit_scaler([dataset.paths[0].parent / "missing.wav"])


def test_features_are_cached_per_source_and_dataset(dataset, model_file, tmp_path, monkeypatch):
    calls = []

    def counted(y, sr):
        calls.append(y.shape)
        return mfcc_features(y, sr)

    cache = tmp_path / "cache"
    first = evaluate(counted, dataset, cache_dir=cache, key="counted-mfcc", **SPLITS)
    assert len(calls) == 12
    again = evaluate(counted, dataset, cache_dir=cache, key="counted-mfcc", **SPLITS)
    assert len(calls) == 12
    np.testing.assert_array_equal(first.scores, again.scores)
    evaluate(counted, dataset, cache_dir=cache, key="counted-mfcc-v2", **SPLITS)
    assert len(calls) == 24  # another key, another entry
    evaluate(counted, dataset, cache_dir=cache, **SPLITS)
    assert len(calls) == 36  # no key: not cached
    assert calls[0] == (2, SR)

    found = dataset_features(model_file, dataset, cache_dir=cache)
    assert not found.from_cache and found.cache_file.is_file()
    assert found.cache_file.name.startswith("GTZAN.mscr2-self-bpm-tag.")

    def broken(*args, **kwargs):
        raise RuntimeError("extraction must not run")

    monkeypatch.setattr(evaluation_run, "extract_files", broken)
    monkeypatch.setattr(mtlmusic.model, "load_model", broken)
    cached = dataset_features(model_file, dataset, cache_dir=cache)
    assert cached.from_cache
    np.testing.assert_array_equal(cached.features, found.features)
    # A loaded model with the same weights shares the entry, and so does a dataset of the same tracks.
    model = mtlmusic.Model.from_file(model_file, device="cpu")
    assert dataset_features(model, dataset, cache_dir=cache).from_cache
    renamed = dataset_features(model, dataclasses.replace(dataset, name="GTZAN-again"), cache_dir=cache)
    assert renamed.from_cache and renamed.cache_file == found.cache_file
    fewer = dataclasses.replace(dataset, name="GTZAN-fewer", paths=dataset.paths[:-1], ids=dataset.ids[:-1],
                                labels=dataset.labels[:-1])
    with pytest.raises(RuntimeError, match="must not run"):   # other tracks: another entry
        dataset_features(model, fewer, cache_dir=cache)
    # A damaged entry is recomputed, not trusted.
    found.cache_file.write_bytes(b"damaged")
    with pytest.raises(RuntimeError, match="must not run"):
        dataset_features(model, dataset, cache_dir=cache)


def test_unreadable_tracks_raise_or_are_dropped(gtzan_root, tmp_path):
    root = tmp_path / "gtzan"
    for genre in ("blues", "rock"):
        (root / genre).mkdir(parents=True)
        for n in range(6):
            (root / genre / f"{genre}.{n:05d}.wav").write_bytes(
                (gtzan_root / "genres" / genre / f"{genre}.{n:05d}.wav").read_bytes())
    (root / "rock" / "rock.00006.wav").write_bytes(b"RIFF but not audio")
    dataset = load_gtzan(root)
    with pytest.raises(AudioError, match="1 of 13 tracks of GTZAN have no features"):
        evaluate("mfcc", dataset, **SPLITS)
    with pytest.warns(UserWarning, match="evaluating without them"):
        result = evaluate("mfcc", dataset, on_error="drop", **SPLITS)
    assert result.mean == 1.0
    with pytest.raises(ConfigError, match="on_error"):
        evaluate("mfcc", dataset, on_error="ignore")


def test_unknown_sources_are_refused(dataset):
    with pytest.raises(ConfigError, match="cannot evaluate a int"):
        evaluate(3, dataset)
    with pytest.raises(mtlmusic.MtlmusicError, match="no such feature file"):
        evaluate("missing.npz", dataset)
    with pytest.raises(mtlmusic.ModelNotFoundError):
        evaluate("missing-model.safetensors", dataset)


def test_cli_eval_prints_mean_and_interval(gtzan_root, tmp_path):
    out = tmp_path / "result.json"
    args = ["eval", "mfcc", "--dataset", "gtzan", "--root", str(gtzan_root), "--cache", str(tmp_path / "c"),
            "--json", str(out), "--repeats", "1", "--folds", "3", "--workers", "0", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "GTZAN (12 tracks), mfcc: accuracy 1.0000 (95% interval" in result.output
    summary = json.loads(out.read_text())
    assert summary["dataset"] == "GTZAN" and summary["n_splits"] == 3 and len(summary["scores"]) == 3
    assert list((tmp_path / "c").glob("GTZAN.mfcc.*.npz"))

    bad = CliRunner().invoke(app, ["eval", "mfcc", "--dataset", "nope", "--root", str(gtzan_root)])
    assert bad.exit_code == 2 and "unknown dataset" in bad.output
    missing = CliRunner().invoke(app, ["eval", "mfcc", "--dataset", "gtzan", "--root", str(tmp_path / "none"),
                                       "--cache", str(tmp_path / "c")])
    assert missing.exit_code == 2 and "GTZAN root not found" in missing.output
