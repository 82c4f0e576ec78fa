"""Ablation of the learning sources on a tiny corpus: variants, budgets, resumption, validation scores."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mtlmusic import load_model
from mtlmusic.errors import ConfigError
from mtlmusic_training.cli import app
from mtlmusic_training.corpus._io import write_table
from mtlmusic_training.corpus.ablation import ablation_variants, parse_variants, run_ablation
from mtlmusic_training.datasets import Manifest


def test_variants_remove_each_source_and_keep_each_teacher_alone():
    variants = ablation_variants(["self", "bpm", "tag", "mtt", "pitch"])
    assert variants["all"] == ("self", "bpm", "tag", "mtt", "pitch")
    assert variants["without-tag"] == ("self", "bpm", "mtt", "pitch") and "without-self" not in variants
    assert variants["musicnn-only"] == ("self", "tag", "mtt") and variants["basic_pitch-only"] == ("self", "pitch")
    assert "musicnn-only" not in ablation_variants(["self", "tag"])
    with pytest.raises(ConfigError):
        ablation_variants(["self"])


def test_variants_of_your_own_get_names_of_their_own():
    own = parse_variants(["pitch-tempo=self, pitch,tempo_cnn", "tag.alone=tag"])
    assert own == {"pitch-tempo": ("self", "pitch", "tempo_cnn"), "tag.alone": ("tag",)}
    assert ablation_variants(["self", "bpm", "tag"], own=own)["pitch-tempo"] == ("self", "pitch", "tempo_cnn")
    for text in ("no-sources=", "=self,bpm", "a/b=self", "twice=self,self"):
        with pytest.raises(ConfigError, match="variant"):
            parse_variants([text])
    with pytest.raises(ConfigError, match="given twice"):
        parse_variants(["x=self", "x=bpm"])
    for taken in ("all", "without-bpm", "augmented"):
        with pytest.raises(ConfigError, match=f"has a variant '{taken}' already"):
            ablation_variants(["self", "bpm", "tag"], own={taken: ["self"]})


def _corpus(data_dir, tmp_path):
    """The training fixture with the metadata of a soundtrack task."""
    corpus = tmp_path / "corpus"
    shutil.copytree(data_dir, corpus)
    manifest = Manifest.load(corpus / "manifest.csv")
    pitch = [int(track_id[1:]) % 4 for track_id in manifest.track_ids]
    write_table(pd.DataFrame({"track_id": manifest.track_ids, "corpus": "soundtrack",
                              "soundtrack": [f"game-{p % 2}" for p in pitch], "style": "", "bpm_label": np.nan}),
                corpus / "metadata.csv")
    return corpus


def test_ablation_trains_each_variant_to_its_budget_and_scores_the_tracks_of_a_split(data_dir, tmp_path):
    corpus = _corpus(data_dir, tmp_path)
    variants = {"all": ["self", "bpm", "tag"], "without-tag": ["self", "bpm"]}
    lines = []
    rows = run_ablation(corpus, tmp_path / "runs", ["self", "bpm", "tag"], variants=variants, epochs=1,
                        n_repeats=1, augment={"gain_db": 6.0}, log=lines.append)
    assert {row["representation"] for row in rows} == {"all", "without-tag", "augmented", "rand", "mfcc"}
    recipe = load_model(tmp_path / "runs" / "augmented.safetensors").config["info"]["training"]
    assert recipe["augment"] == {"gain_db": 6.0} and recipe["sources"] == ["self", "bpm", "tag"]
    assert load_model(tmp_path / "runs" / "all.safetensors").config["info"]["training"]["augment"] == {}
    assert {row["task"] for row in rows} == {"soundtrack"} and rows[0]["n_tracks"] == 8
    assert rows[0]["folds"] == 3   # the validation tracks are too few for the study's 10 folds
    summary = [line for line in lines if line.startswith("all: ")]
    assert (tmp_path / "runs" / "all.safetensors").exists() and summary[0].startswith("all: 1 epochs, ")
    # Every variant takes the full model's epoch length (l x m, m = 3 sources), whatever its own sources.
    steps = {row["representation"]: row.get("steps") for row in rows}
    assert steps["all"] == steps["without-tag"] == steps["augmented"] and steps["all"] % 3 == 0
    assert steps["rand"] is None
    assert f"all: 1 epochs, {steps['all']} steps, " in summary[0]
    assert load_model(tmp_path / "runs" / "without-tag.safetensors").config["info"]["training"][
        "iterations_per_epoch"] == steps["all"]
    assert summary[0].endswith(" samples/s")
    again = run_ablation(corpus, tmp_path / "runs", ["self", "bpm", "tag"], variants=variants, epochs=1,
                         n_repeats=1, augment={"gain_db": 6.0}, log=lines.append)
    assert sum(line.startswith("all: 1 epochs") for line in lines) == 2   # the budget was spent: no further epoch
    assert [row["mean"] for row in again] == [row["mean"] for row in rows]
    chosen = run_ablation(corpus, tmp_path / "runs", ["self", "bpm", "tag"], variants=variants, only=["without-tag"],
                          epochs=1, n_repeats=1, split="train", log=lines.append)
    assert {row["representation"] for row in chosen} == {"without-tag", "rand", "mfcc"}
    with pytest.raises(ConfigError, match="trained 1 epochs, more than the 0 asked"):
        run_ablation(corpus, tmp_path / "runs", ["self", "bpm", "tag"], variants=variants, epochs=0, n_repeats=1,
                     log=lines.append)
    with pytest.raises(ConfigError, match="Unknown ablation variants \\['without-year'\\]"):
        run_ablation(corpus, tmp_path / "runs", ["self", "bpm", "tag"], only=["without-year"], log=lines.append)


def test_cli_ablation_writes_its_rows_and_keeps_other_ones(data_dir, tmp_path):
    corpus = _corpus(data_dir, tmp_path)
    rows = tmp_path / "ablation.json"
    rows.write_text("[]")
    arguments = ["open-corpus-ablation", str(corpus), str(tmp_path / "runs"), "--sources", "self,bpm,tag",
                 "--epochs", "1", "--iterations-per-epoch", "3", "--only", "without-tag", "--repeats", "1",
                 "-o", str(rows)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2 and "exists with other contents" in result.output and rows.read_text() == "[]"
    assert "| representation | soundtrack (" in result.output and "| without-tag |" in result.output  # shown anyway
    result = CliRunner().invoke(app, [*arguments, "--overwrite"])
    assert result.exit_code == 0, result.output
    written = json.loads(rows.read_text())
    assert {row["steps"] for row in written if row["representation"] == "without-tag"} == {3}
    assert {tuple(row["sources"]) for row in written if row["representation"] == "without-tag"} == {("self", "bpm")}
    own = ["--variant", "tag-alone=self,tag", "--only", "tag-alone", "-o", str(tmp_path / "own.json")]
    result = CliRunner().invoke(app, [*arguments[:-2], *own])
    assert result.exit_code == 0, result.output
    assert "| tag-alone |" in result.output and "| without-tag |" in result.output   # earlier variants kept
    written = json.loads((tmp_path / "own.json").read_text())
    assert {tuple(row["sources"]) for row in written if row["representation"] == "tag-alone"} == {("self", "tag")}
    result = CliRunner().invoke(app, [*arguments[:-2], "--variant", "all=self,tag"])
    assert result.exit_code == 2 and "has a variant 'all' already" in result.output
