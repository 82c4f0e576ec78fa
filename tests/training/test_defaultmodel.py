"""Held-out evaluation of the open corpus recipe, on a tiny corpus in the recipe's layout."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from mtlmusic.errors import ConfigError

from mtlmusic_training.corpus.heldout import evaluate_on_open_corpus, held_out_datasets, score_table


def _corpus(root):
    t = np.arange(22050) / 22050
    manifest, metadata = [], []
    for i in range(44):
        corpus = "soundtrack" if i < 20 else "music21" if i < 40 else "soundtrack"
        label = ["game-a", "game-b"][i % 2] if corpus == "soundtrack" else ["bach", "palestrina"][i % 2]
        freq = 300 * (1 + i % 2) if corpus == "soundtrack" else 700 * (1 + i % 2)
        path = root / f"{i:02d}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 22050)
        split = "train" if i >= 40 else "test"
        manifest.append({"track_id": f"t{i:02d}", "path": path.name, "split": split})
        metadata.append({"track_id": f"t{i:02d}", "corpus": corpus,
                         "soundtrack": label if corpus == "soundtrack" else "",
                         "style": label if corpus == "music21" else "",
                         "bpm_label": str(60 + 3 * i) if corpus == "music21" else "",
                         "duration": 1.0, "licence": "GPL-2+"})
    for name, rows in (("manifest.csv", manifest), ("metadata.csv", metadata)):
        with open(root / name, "w", newline="") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def test_held_out_tasks_use_only_the_test_split(tmp_path):
    _corpus(tmp_path)
    datasets = held_out_datasets(tmp_path)
    assert sorted(datasets) == ["soundtrack", "style", "tempo"]
    assert len(datasets["soundtrack"]) == 20 and "t40" not in datasets["soundtrack"].ids
    assert sorted(set(datasets["style"].labels)) == ["bach", "palestrina"]
    assert datasets["tempo"].task == "regression" and np.isclose(datasets["tempo"].values[0], np.log2((60 + 3 * 20) / 120))
    assert held_out_datasets(tmp_path, "valid") == {}
    with pytest.raises(ConfigError, match="valid tracks of .* give no task to score"):
        evaluate_on_open_corpus(tmp_path, {"mfcc": "mfcc"}, split="valid")
    with pytest.raises(ConfigError, match="Unknown split 'holdout'"):
        held_out_datasets(tmp_path, "holdout")


def test_a_card_is_written_from_the_test_tracks_only(tmp_path, model_file):
    from typer.testing import CliRunner

    from mtlmusic_training.cli import app

    _corpus(tmp_path)
    result = CliRunner().invoke(app, ["open-corpus-eval", str(tmp_path), str(model_file), "--split", "valid",
                                      "--card", str(tmp_path / "card.md")])
    assert result.exit_code == 2 and "held-out (test)" in result.output and not (tmp_path / "card.md").exists()


def test_a_card_shows_the_ablation_rows_it_is_given(tmp_path, model_file):
    import json

    from typer.testing import CliRunner

    from mtlmusic_training.cli import app

    _corpus(tmp_path)
    arguments = ["open-corpus-eval", str(tmp_path), str(model_file), "--repeats", "1", "--cache", str(tmp_path / "c")]
    not_rows = tmp_path / "not-rows.json"
    not_rows.write_text(json.dumps({"all": 0.5}))
    result = CliRunner().invoke(app, [*arguments, "--card", str(tmp_path / "card.md"), "--ablation", str(not_rows)])
    assert result.exit_code == 2 and "holds no ablation rows" in result.output
    result = CliRunner().invoke(app, [*arguments, "--ablation", str(not_rows)])
    assert result.exit_code == 2 and "give --card too" in result.output
    rows = [{"task": "style", "representation": r, "metric": "accuracy", "mean": 0.5, "low": 0.4, "high": 0.6,
             "n_tracks": 54, "split": "valid", "folds": 3} for r in ("all", "without-bpm")]
    (tmp_path / "ablation.json").write_text(json.dumps(rows))
    result = CliRunner().invoke(app, [*arguments, "--card", str(tmp_path / "card.md"),
                                      "--ablation", str(tmp_path / "ablation.json")])
    assert result.exit_code == 0, result.output
    card = (tmp_path / "card.md").read_text()
    assert "| representation | style (54, accuracy) |\n|---|---|\n| all | **0.500** [0.400, 0.600] |\n| without-bpm |" in card
    # The same card again is no change; another one replaces it only when asked.
    again = [*arguments, "--card", str(tmp_path / "card.md"), "--ablation", str(tmp_path / "ablation.json")]
    assert CliRunner().invoke(app, again).exit_code == 0
    (tmp_path / "ablation.json").write_text(json.dumps([{**row, "mean": 0.55} for row in rows]))
    result = CliRunner().invoke(app, again)
    assert result.exit_code == 2 and "exists with other contents" in result.output
    assert (tmp_path / "card.md").read_text() == card
    result = CliRunner().invoke(app, [*again, "--overwrite"])
    assert result.exit_code == 0 and "0.550" in (tmp_path / "card.md").read_text()
    result = CliRunner().invoke(app, [*again, "--ablation", str(tmp_path / "ablation.json"), "--overwrite"])
    assert result.exit_code == 0 and (tmp_path / "card.md").read_text().count("| without-bpm |") == 2  # a table each


def test_scores_and_table(tmp_path, model_file):
    _corpus(tmp_path)
    rows = evaluate_on_open_corpus(tmp_path, {"model": model_file, "mfcc": "mfcc"}, cache_dir=tmp_path / "cache",
                                   n_repeats=1)
    assert {(r["task"], r["representation"]) for r in rows} == {
        (t, n) for t in ("soundtrack", "style", "tempo") for n in ("model", "mfcc")}
    mfcc = {r["task"]: r["mean"] for r in rows if r["representation"] == "mfcc"}
    assert mfcc["soundtrack"] == 1.0 and mfcc["style"] == 1.0
    table = score_table(rows)
    assert table.count("\n") == 4 and "| soundtrack (20, accuracy) |" in table


def test_model_card_describes_the_corpus_sources_teachers_and_scores(tmp_path, model_file):
    import pandas as pd

    from mtlmusic import load_model
    from mtlmusic_training.corpus._io import write_table
    from mtlmusic_training.corpus.heldout import corpus_tables, model_card

    ids = [f"{c}/{i}@0000" for c in ("deb", "midi", "m21") for i in range(4)]
    corpus = {"deb": "soundtrack", "midi": "midi", "m21": "music21"}
    splits = ["train", "train", "valid", "test"] * 3
    write_table(pd.DataFrame({"track_id": ids, "path": [f"{i}.flac" for i in range(12)], "split": splits}),
                tmp_path / "manifest.csv")
    write_table(pd.DataFrame({
        "track_id": ids, "corpus": [corpus[t.split("/")[0]] for t in ids],
        "soundtrack": ["pkg-a", "pkg-b", "pkg-a", "pkg-b", "mid", "mid", "mid", "mid"] + [""] * 4,
        "style": [""] * 8 + ["bach", "bach", "trecento", "bach"], "duration": [30.0] * 12,
        "licence": ["GPL-2+"] * 6 + ["CC-BY-SA-3.0"] * 6, "source_track": [t.split("@")[0] for t in ids]}),
        tmp_path / "metadata.csv")
    tables = corpus_tables(tmp_path)
    assert "| recorded and tracker music (Debian packages) | 2 | 2 / 1 / 1 | 4 | 2 |" in tables
    assert "| music21 scores, rendered | 2 | 2 / 1 / 1 | 4 | 2 |" in tables
    assert "| GPL-2+ | 3 |" in tables and "| CC-BY-SA-3.0 | 3 |" in tables
    config = dict(load_model(model_file).config)
    config["sources"] = ["self", "bpm", "tag", "pitch"]
    rows = [{"task": "style", "representation": r, "metric": "accuracy", "mean": 0.5, "low": 0.4, "high": 0.6,
             "n_tracks": 150} for r in ("model", "rand", "mfcc", "musicnn-penultimate")]
    card = model_card(config, rows, tmp_path)
    assert card.startswith("---\n") and "## What it is not good for" in card
    assert "* `tag`: teacher musicnn" in card and "* `pitch`: teacher basic-pitch" in card
    assert "ISC" in card and "Apache-2.0" in card and "mtlmusic-train teachers corpus" in card
    assert "| style (150, accuracy) |" in card and "musicnn is MSD_musicnn's penultimate layer" in card
    assert "--augment" not in card and "augmented" not in card and "## Ablation" not in card
    ablation = [{"task": "style", "representation": r, "metric": "accuracy", "mean": m, "low": m - 0.1,
                 "high": m + 0.1, "n_tracks": 54, "split": "valid", "folds": 3}
                for r, m in (("all", 0.6), ("without-tag", 0.5), ("rand", 0.3), ("mfcc", 0.4))]
    with_ablation = model_card(config, rows, tmp_path, ablations=[ablation])
    assert "## Ablation" in with_ablation and "scored on the valid tracks (3 folds" in with_ablation
    assert "### The same number of steps" in with_ablation   # rows without their steps
    assert ("| representation | style (54, accuracy) |\n|---|---|\n| all | **0.600** [0.500, 0.700] |\n"
            "| without-tag | 0.500 [0.400, 0.600] |\n| rand |") in with_ablation
    stepped = model_card(config, rows, tmp_path, ablations=[[{**row, "steps": 2288} for row in ablation[:2]]])
    assert "### 2,288 steps" in stepped and "Sources of the other variants" not in stepped
    named = [{**row, "representation": "pitch-only", "sources": ["self", "pitch"]} for row in ablation[:1]]
    with_named = model_card(config, rows, tmp_path, ablations=[ablation + named])
    assert "| pitch-only | 0.600 [0.500, 0.700] |" in with_named
    assert "Sources of the other variants: `pitch-only`: self, pitch." in with_named
    assert "This model has the sources" not in with_named
    # Short runs of every variant, then the model's own variant at its own budget: a table each. The model was
    # started for 1000 epochs and stopped by its time budget after 40: the recipe trains the 40 it trained.
    config["info"] = {**config.get("info", {}), "epochs_trained": 40, "final": {"iterations": 572},
                      "training": {**config.get("info", {}).get("training", {}), "epochs": 1000,
                                   "iterations_per_epoch": 572}}
    own = [{**row, "representation": "teachers", "sources": config["sources"][::-1], "steps": 22880}  # any order
           for row in ablation[:1]]
    two = model_card(config, rows, tmp_path, ablations=[[{**row, "steps": 2288} for row in ablation], own])
    assert two.index("### 2,288 steps") < two.index("### 22,880 steps")
    assert "Short runs (the model trained 22,880 steps)" in two and two.count("Short runs") == 1
    assert "This model has the sources of the variant `teachers`." in two
    assert "--epochs 40 --iterations-per-epoch 572 --lr" in two
    assert "40 epochs of 572 iterations (22,880 steps)" in two
    config["info"] = {**config.get("info", {}), "training": {**config.get("info", {}).get("training", {}),
                                                             "augment": {"gain_db": 6.0, "stretch": 0.05}}}
    augmented = model_card(config, rows, tmp_path)
    assert " --augment gain_db=6,stretch=0.05\nmtlmusic-train export" in augmented
    assert "Training crops augmented (`docs/open-corpus.md`, section 4): gain_db 6, stretch 0.05." in augmented
