"""A tiny generated training corpus with planted targets, shared by the training tests."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from mtlmusic_training.melcache import build_mel_cache, fit_scaler
from mtlmusic_training.targets import Targets, save_targets, targets_path

PITCHES = (220.0, 440.0, 880.0, 1760.0)   # the planted "bpm" source: which tone a clip holds
N_CLIPS = 32


def _smooth_one_hot(labels: np.ndarray, k: int, eps: float = 0.05) -> np.ndarray:
    z = np.full((len(labels), k), eps / k, dtype=np.float32)
    z[np.arange(len(labels)), labels] += 1 - eps
    return z


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """32 clips of 3 s; 'bpm' (4 classes, by tone) and 'level' (2 classes, by loudness) are learnable."""
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
    # Planted targets under two of the study's source names, so the study's grid can run on them.
    for name, labels, k in (("bpm", np.array(pitch), 4), ("tag", np.array(level), 2)):
        targets = Targets(name, _smooth_one_hot(labels, k), np.ones(N_CLIPS, bool), {"kind": "label"}, ids)
        save_targets(targets, targets_path(root / "targets", name))
    return root


@pytest.fixture
def one_torch_thread():
    """Torch on one thread during the test: small networks train faster than with threads fighting for 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def grid_processes(monkeypatch):
    """The command lines of the processes ``run_grid(parallel=N)`` starts, recorded instead of run."""
    from mtlmusic_training import grid

    commands: list[list[str]] = []

    class Process:
        def __init__(self, command):
            commands.append(command)

        def wait(self):
            return 0

    monkeypatch.setattr(grid.subprocess, "Popen", Process)
    return commands
