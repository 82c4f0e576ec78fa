"""End to end on a tiny generated corpus: cache -> targets -> train every architecture -> export -> extract."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

import mtlmusic
from mtlmusic_training.melcache import build_mel_cache, fit_scaler
from mtlmusic_training.targets import Targets, save_targets, targets_path
from mtlmusic_training.trainer import Trainer, TrainConfig, load_training_data

PITCHES = (220.0, 440.0, 880.0, 1760.0)   # the planted "pitch" source: which tone a clip holds
N_CLIPS = 32


def _smooth_one_hot(labels: np.ndarray, k: int, eps: float = 0.05) -> np.ndarray:
    z = np.full((len(labels), k), eps / k, dtype=np.float32)
    z[np.arange(len(labels)), labels] += 1 - eps
    return z


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """32 clips of 3 s; 'pitch' (4 classes, by tone) and 'level' (2 classes, by loudness) are learnable."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows, pitch, level = [], [], []
    t = np.arange(3 * 22050) / 22050
    for i in range(N_CLIPS):
        p, l = i % 4, (i // 4) % 2
        y = (0.05 + 0.4 * l) * np.sin(2 * np.pi * PITCHES[p] * t) + 0.01 * rng.standard_normal(t.size)
        path = root / f"clip{i:02d}.wav"
        sf.write(path, np.stack([y, y], axis=1).astype(np.float32), 22050)
        split = "valid" if i % 8 in (6, 7) else "train"
        rows.append({"track_id": f"t{i:02d}", "path": str(path), "split": split})
        pitch.append(p)
        level.append(l)
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["track_id", "path", "split"])
        writer.writeheader()
        writer.writerows(rows)
    cache = build_mel_cache([(r["track_id"], r["path"]) for r in rows], root / "cache", workers=0)
    train = [i for i, r in enumerate(rows) if r["split"] == "train"]
    scaler = fit_scaler(cache, train)
    np.savez(root / "scaler.npz", mean=scaler.mean.numpy(), std=scaler.std.numpy())
    ids = np.array([r["track_id"] for r in rows])
    for name, labels, k in (("pitch", np.array(pitch), 4), ("level", np.array(level), 2)):
        targets = Targets(name, _smooth_one_hot(labels, k), np.ones(N_CLIPS, bool), {"kind": "label"}, ids)
        save_targets(targets, targets_path(root / "targets", name))
    return root


def _config(architecture, sources, **kw):
    defaults = dict(epochs=2, batch_size=8, iterations_per_epoch=4, lr=1e-3, device="cpu", seed=0, valid_tracks=8)
    return TrainConfig(architecture, sources, **{**defaults, **kw})


@pytest.mark.parametrize("architecture,sources", [
    ("SS-R", ["pitch"]), ("SS-R", ["self"]), ("MS-CR@2", ["self", "pitch", "level"]),
    ("MS-CR@4", ["pitch", "level"]), ("MS-CR@6", ["self", "level"]), ("MS-SR@FC", ["self", "pitch", "level"]),
])
def test_train_export_extract(data_dir, tmp_path, architecture, sources):
    torch.set_num_threads(1)
    data = load_training_data(data_dir, sources)
    trainer = Trainer(_config(architecture, sources), data, tmp_path / "run", log=lambda _: None)
    history = trainer.train()
    assert len(history) == 2 and (tmp_path / "run" / "done").exists()
    assert set(history[-1]["valid_loss"]) == set(sources)
    path = trainer.export(tmp_path / "model.safetensors")
    model = mtlmusic.load_model(path, device="cpu")
    assert model.architecture == architecture and list(model.sources) == sorted(
        sources, key=["self", "pitch", "level"].index) or set(model.sources) == set(sources)
    features = model.extract(data_dir / "clip00.wav")
    assert features.shape == (model.dim,) and np.isfinite(features).all()
    assert model.config["info"]["epochs_trained"] == 2


def test_loss_falls_on_the_planted_task(data_dir, tmp_path):
    torch.set_num_threads(1)
    data = load_training_data(data_dir, ["pitch"])
    trainer = Trainer(_config("MS-SR@FC", ["pitch"], epochs=4, iterations_per_epoch=10), data,
                      tmp_path / "run", log=lambda _: None)
    history = trainer.train()
    first, last = history[0]["valid_loss"]["pitch"], history[-1]["valid_loss"]["pitch"]
    assert last < 0.5 * first, (first, last)


def test_resume_is_exact(data_dir, tmp_path):
    """A run stopped after epoch 2 and resumed ends with the same weights as one that never stopped."""
    torch.set_num_threads(1)
    sources = ["self", "pitch"]
    data = load_training_data(data_dir, sources)
    straight = Trainer(_config("MS-CR@4", sources, epochs=3), data, tmp_path / "a", log=lambda _: None)
    straight.train()
    Trainer(_config("MS-CR@4", sources, epochs=2), data, tmp_path / "b", log=lambda _: None).train()
    resumed = Trainer(_config("MS-CR@4", sources, epochs=3), data, tmp_path / "b", log=lambda _: None)
    assert resumed.epoch == 2
    resumed.train()
    a, b = straight.network.state_dict(), resumed.network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]


def test_self_batches_are_half_positive(data_dir, tmp_path):
    data = load_training_data(data_dir, ["self"])
    trainer = Trainer(_config("SS-R", ["self"]), data, tmp_path / "run", log=lambda _: None)
    left, _, right, _, same = trainer._draw_batch("self")
    assert same.sum() == len(same) // 2
    assert np.all(left[same == 1] == right[same == 1]) and np.all(left[same == 0] != right[same == 0])


def test_another_config_in_the_same_folder_is_refused(data_dir, tmp_path):
    data = load_training_data(data_dir, ["pitch", "level"])
    Trainer(_config("MS-CR@2", ["pitch"], epochs=1), load_training_data(data_dir, ["pitch"]),
            tmp_path / "run", log=lambda _: None).train()
    with pytest.raises(ValueError, match="another configuration"):
        Trainer(_config("MS-CR@2", ["pitch", "level"]), data, tmp_path / "run", log=lambda _: None)
