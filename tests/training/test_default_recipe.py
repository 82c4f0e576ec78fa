"""The default model's whole recipe in miniature, through the documented commands (slow: real teachers).

Extracted "packages" of generated music stand in for the Debian downloads; everything
after them is the real recipe: soundtrack listing, music21 renders, split, excerpts,
descriptors and targets, timbre, every teacher in its own environment (created
from the package index on first use), the mel cache, training, export, the source
ablation and the held-out evaluation against Rand, MFCC and musicnn, with the ablation in the card.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mtlmusic import load_model
from mtlmusic_training.cli import app
from mtlmusic_training.corpus import DEFAULT_SOUNDFONT
from mtlmusic_training.datasets import Manifest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600),
              pytest.mark.skipif(shutil.which("fluidsynth") is None or not DEFAULT_SOUNDFONT.exists(),
                                 reason="fluidsynth or the FluidR3 soundfont is not installed")]

SR = 22050
SOURCES = "self,bpm,onset,chroma,tempogram,timbre,composer,tag,mtt,pitch,notes,tempo_cnn"
#: Long enough to be listed as music (30 s at least); short enough to cut two 5 s excerpts quickly.
PIECE_SECONDS = 32


def _package(root, name, n_tracks, base_hz):
    """A package tree with a copyright file and ``n_tracks`` pieces tagged with one of two composers."""
    doc = root / name / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                                   "Files: *\nCopyright: 2020 Someone\nLicense: GPL-2+\n")
    music = root / name / "usr" / "share" / "games" / name / "music"
    music.mkdir(parents=True)
    t = np.arange(PIECE_SECONDS * SR) / SR
    for i in range(n_tracks):
        hz = base_hz * 2 ** (i % 12 / 12)
        beat = (np.sin(2 * np.pi * (1 + i % 3) * t) > 0.9).astype(np.float32)
        y = 0.2 * np.sin(2 * np.pi * hz * t) * (0.5 + 0.5 * beat)
        with sf.SoundFile(str(music / f"piece{i:02d}.ogg"), "w", SR, 2, format="OGG", subtype="VORBIS") as f:
            f.artist = f"composer {i % 2}"
            f.write(np.stack([y, y], axis=1).astype(np.float32))


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def test_the_default_recipe_runs_end_to_end(tmp_path):
    packages, corpus, runs = tmp_path / "x", tmp_path / "corpus", tmp_path / "runs"
    _package(packages, "wesnoth-1.16-music", 24, 220.0)
    _package(packages, "asc-music", 24, 330.0)
    runner = CliRunner()

    _ok(runner.invoke(app, ["open-corpus", str(packages), str(corpus), "--per-style", "2", "--per-track", "2",
                            "--excerpt-seconds", "5", "--workers", "2"]))
    manifest = Manifest.load(corpus / "manifest.csv")
    assert sum(track.startswith("music21/") for track in manifest.track_ids) >= 5
    assert all("@" in track for track in manifest.track_ids)
    _ok(runner.invoke(app, ["open-corpus-timbre", str(corpus), "--workers", "2"]))
    output = _ok(runner.invoke(app, ["teachers", str(corpus)]))
    for source in ("tag", "mtt", "pitch", "notes", "tempo_cnn"):
        assert f"{source}: targets for" in output
    assert (corpus / "teachers" / "musicnn-penultimate.npz").exists()
    _ok(runner.invoke(app, ["cache", str(corpus / "manifest.csv"), str(corpus), "--workers", "2"]))
    _ok(runner.invoke(app, ["run", str(corpus), str(runs / "default"), "--arch", "MS-SR@FC", "--sources", SOURCES,
                            "--epochs", "1", "--iterations-per-epoch", "6", "--augment", "gain_db=6,stretch=0.05",
                            "--export", str(runs / "m.safetensors")]))
    model = load_model(runs / "m.safetensors")
    assert set(model.config["sources"]) == set(SOURCES.split(","))
    _ok(runner.invoke(app, ["open-corpus-ablation", str(corpus), str(runs / "ablation"), "--sources", SOURCES,
                            "--epochs", "1", "--iterations-per-epoch", "3", "--only", "all", "--only", "musicnn-only",
                            "--split", "test", "--repeats", "1", "--folds", "2", "-o", str(runs / "ablation.json")]))
    _ok(runner.invoke(app, ["open-corpus-eval", str(corpus), str(runs / "m.safetensors"), "--repeats", "1",
                            "--folds", "3", "--cache", str(tmp_path / "eval"), "-o", str(runs / "rows.json"),
                            "--card", str(runs / "card.md"), "--ablation", str(runs / "ablation.json")]))
    rows = json.loads((runs / "rows.json").read_text())
    assert {row["representation"] for row in rows} == {"m", "rand", "mfcc", "musicnn-penultimate",
                                                       "musicnn-mean-pool"}
    assert {row["task"] for row in rows} >= {"soundtrack"}
    card = (runs / "card.md").read_text()
    assert "musicnn" in card and "GPL-2+" in card and "gain_db" in card and "AGPL-3.0 (code and weights" in card
    assert "--teacher tempocnn" in card
    assert "## Ablation" in card and "each trained for 3 steps" in card and "| musicnn-only |" in card
