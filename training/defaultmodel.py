"""The default model's recipe: held-out evaluation on the open corpus and the model card.

The open corpus (:mod:`mtlmusic_training.opencorpus`) is split by track and piece.
Its ``test`` part never reaches training (no audio, no targets); its labels
define the evaluation tasks:

=============  ==============================================  ===============
task           tracks and label                                metric
=============  ==============================================  ===============
soundtrack     held-out soundtrack tracks -> their game        accuracy
style          held-out music21 renders -> Bach / Palestrina   accuracy
               / Monteverdi / Trecento / Classical quartet
tempo          held-out music21 renders -> their rendered BPM  R^2
=============  ==============================================  ===============

Each representation (a model, ``rand``, ``mfcc``) is scored with the study's
protocol (linear SVM or RBF SVR, 5 x 10-fold cross-validation).

Examples
--------
>>> # rows = evaluate_on_open_corpus("corpus", {"default": "model.safetensors"})
>>> # print(score_table(rows))
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mtlmusic.evaluation import EvalDataset, evaluate

#: The evaluation tasks: name -> (corpus, label column, kind).
TASKS = {
    "soundtrack": ("soundtrack", "soundtrack", "classification"),
    "style": ("music21", "style", "classification"),
    "tempo": ("music21", "bpm_label", "regression"),
}


def held_out_datasets(corpus_dir: str | os.PathLike, split: str = "test") -> dict[str, EvalDataset]:
    """The evaluation tasks over the ``split`` tracks of a built open corpus (``manifest.csv``, ``metadata.csv``)."""
    corpus_dir = Path(corpus_dir)
    with open(corpus_dir / "manifest.csv", newline="") as f:
        manifest = {row["track_id"]: row for row in csv.DictReader(f)}
    with open(corpus_dir / "metadata.csv", newline="") as f:
        metadata = [row for row in csv.DictReader(f) if manifest.get(row["track_id"], {}).get("split") == split]
    datasets = {}
    for task, (corpus, column, kind) in TASKS.items():
        rows = [row for row in metadata if row["corpus"] == corpus and row[column] not in ("", None)]
        if not rows:
            continue
        paths = tuple(_absolute(corpus_dir, manifest[row["track_id"]]["path"]) for row in rows)
        ids = tuple(row["track_id"] for row in rows)
        if kind == "classification":
            datasets[task] = EvalDataset(task, kind, paths, ids, labels=np.array([row[column] for row in rows]))
        else:
            datasets[task] = EvalDataset(task, kind, paths, ids, values=np.array([float(row[column]) for row in rows]))
    return datasets


def _absolute(corpus_dir: Path, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else corpus_dir / path


def evaluate_on_open_corpus(corpus_dir: str | os.PathLike, representations: Mapping[str, object],
                            cache_dir: str | os.PathLike | None = None, n_repeats: int = 5,
                            seed: int = 0, workers: int = 0) -> list[dict]:
    """Score each representation (name -> model, model file, ``"rand"`` or ``"mfcc"``) on every held-out task.

    Returns rows with ``task``, ``representation``, ``metric``, ``mean``, ``low``, ``high``, ``n_tracks``.
    """
    rows = []
    for task, dataset in held_out_datasets(corpus_dir).items():
        for name, source in representations.items():
            result = evaluate(source, dataset, cache_dir=cache_dir, n_repeats=n_repeats, seed=seed, workers=workers)
            low, high = result.interval
            rows.append({"task": task, "representation": name, "metric": result.metric, "mean": result.mean,
                         "low": low, "high": high, "n_tracks": len(dataset)})
    return rows


def score_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`evaluate_on_open_corpus` rows: one line per task, one column per representation."""
    names = list(dict.fromkeys(row["representation"] for row in rows))
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    lines = ["| task (tracks, metric) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for task in tasks:
        cells = {row["representation"]: row for row in rows if row["task"] == task}
        first = next(iter(cells.values()))
        best = max(cells.values(), key=lambda row: row["mean"])["representation"]
        values = [(f"**{cells[n]['mean']:.3f}**" if n == best else f"{cells[n]['mean']:.3f}")
                  + f" [{cells[n]['low']:.3f}, {cells[n]['high']:.3f}]" for n in names]
        lines.append(f"| {task} ({first['n_tracks']}, {first['metric']}) | " + " | ".join(values) + " |")
    return "\n".join(lines)
