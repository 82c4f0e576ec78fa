"""Held-out evaluation of the open corpus recipe, on a tiny corpus in the recipe's layout."""

from __future__ import annotations

import csv

import numpy as np
import soundfile as sf

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
                         "bpm_label": str(60 + 3 * i) if corpus == "music21" else ""})
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
