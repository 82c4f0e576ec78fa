"""The default model's recipe: held-out evaluation on the open corpus and the model card.

The open corpus (:mod:`mtlmusic_training.corpus`) is split by track and piece.
Its ``test`` part never reaches training (no audio, no targets); its labels
define the evaluation tasks:

=============  ==============================================  ===============
task           tracks and label                                metric
=============  ==============================================  ===============
soundtrack     held-out tracks of the soundtrack and Debian    accuracy
               game-data packages -> their package
style          held-out music21 renders -> Bach / Palestrina   accuracy
               / Monteverdi / Trecento / Classical quartet
tempo          held-out music21 renders -> their rendered      R^2
               tempo, in octaves from 120 BPM (log2(BPM/120))
=============  ==============================================  ===============

Each held-out track counts once: where the manifest lists excerpts, a track is
represented by its first excerpt (the smallest start), so that no two items of a
task come from one track and cross-validation folds cannot share a track. A
classification task keeps only the classes with at least
:data:`MIN_CLASS_TRACKS` held-out tracks (many Debian packages hold only a few
pieces), so that every class can appear in the training and the test side of
the folds.

Each representation (a model, ``rand``, ``mfcc``) is scored with the study's
protocol (linear SVM or RBF SVR, 5 x 10-fold cross-validation).

Examples
--------
>>> rows = evaluate_on_open_corpus("corpus", {"default": "model.safetensors", "mfcc": "mfcc"})  # doctest: +SKIP
>>> print(score_table(rows))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mtlmusic.errors import ConfigError

from ..datasets import SPLITS, Manifest
from ..evaluation import EvalDataset, evaluate
from ._io import read_table

#: The evaluation tasks: name -> (corpus, label column, kind).
TASKS = {
    "soundtrack": ("soundtrack", "soundtrack", "classification"),
    "style": ("music21", "style", "classification"),
    "tempo": ("music21", "bpm_label", "regression"),
}
#: Fewest held-out tracks of a class for it to be kept in a classification task.
MIN_CLASS_TRACKS = 3


def held_out_datasets(corpus_dir: str | os.PathLike, split: str = "test",
                      required: bool = False) -> dict[str, EvalDataset]:
    """The evaluation tasks over the ``split`` tracks of a built open corpus, one item per track.

    Parameters
    ----------
    corpus_dir : str or path-like
        The corpus folder, with ``manifest.csv`` (relative paths are relative to it) and ``metadata.csv``.
    split : str
        The split whose tracks are evaluated.
    required : bool, default False
        Raise :class:`~mtlmusic.ConfigError` when no task has tracks in ``split``, instead of
        returning an empty dict.

    Returns
    -------
    dict
        Task name -> :class:`~mtlmusic_training.evaluation.EvalDataset`, for the tasks of
        :data:`TASKS` that have labelled tracks in ``split``. With excerpts, each track is
        its first excerpt (ids and paths are the excerpt's). Classification tasks keep the
        classes with at least :data:`MIN_CLASS_TRACKS` tracks; ``tempo`` values are
        ``log2(bpm_label / 120)``.

    Examples
    --------
    >>> sorted(held_out_datasets("corpus"))  # doctest: +SKIP
    ['soundtrack', 'style', 'tempo']
    """
    if split not in SPLITS:
        raise ConfigError(f"Unknown split {split!r}; choose from {', '.join(SPLITS)}.")
    corpus_dir = Path(corpus_dir)
    manifest = Manifest.load(corpus_dir / "manifest.csv")
    paths = {track_id: path for (track_id, path), in_split in zip(manifest.items(), manifest.splits)
             if in_split == split}
    metadata = read_table(corpus_dir / "metadata.csv")
    metadata = metadata[metadata["track_id"].isin(list(paths))]
    if "source_track" in metadata:
        metadata = metadata.sort_values(["source_track", "start"]).drop_duplicates("source_track")
    datasets = {}
    for task, (corpus, column, kind) in TASKS.items():
        rows = metadata[(metadata["corpus"] == corpus) & metadata[column].notna() & (metadata[column] != "")]
        if kind == "classification":
            counts = rows[column].value_counts()
            rows = rows[rows[column].isin(counts.index[counts >= MIN_CLASS_TRACKS])]
        if rows.empty:
            continue
        ids = tuple(rows["track_id"])
        track_paths = tuple(paths[track_id] for track_id in ids)
        if kind == "classification":
            datasets[task] = EvalDataset(task, kind, track_paths, ids, labels=np.array(rows[column].tolist()))
        else:
            bpm = rows[column].to_numpy(dtype=np.float64)
            datasets[task] = EvalDataset(task, kind, track_paths, ids, values=np.log2(bpm / 120.0))
    if required and not datasets:
        raise ConfigError(f"The {split} tracks of {corpus_dir} give no task to score: a soundtrack or style class "
                          f"needs {MIN_CLASS_TRACKS} tracks, tempo a labelled music21 track. Score another split "
                          f"or build a larger corpus.")
    return datasets


def baseline_representations(corpus_dir: str | os.PathLike) -> dict[str, object]:
    """The baselines a model is scored against: Rand, MFCC and, where present, musicnn's features.

    musicnn's MSD penultimate-layer and mean-pool features are feature files that
    ``mtlmusic-train teachers`` writes into ``<corpus>/teachers/``.

    Examples
    --------
    >>> baseline_representations("no-corpus")
    {'rand': 'rand', 'mfcc': 'mfcc'}
    """
    from ..teachers.targets import BASELINES, baseline_path

    found = {name: baseline_path(corpus_dir, name) for name in BASELINES}
    return {"rand": "rand", "mfcc": "mfcc"} | {name: path for name, path in found.items() if path.is_file()}


#: Folds of the protocol's cross-validation on each split's tracks: the study's 10 on the held-out part,
#: 3 on the validation part (about a fifth of its size: too few tracks per class for 10 folds).
DEFAULT_FOLDS = {"test": 10, "valid": 3, "train": 10}


def evaluate_on_open_corpus(corpus_dir: str | os.PathLike, representations: Mapping[str, object],
                            cache_dir: str | os.PathLike | None = None, n_repeats: int = 5,
                            seed: int = 0, workers: int = 0, split: str = "test",
                            n_folds: int | None = None) -> list[dict]:
    """Score each representation (name -> model, model file, ``"rand"`` or ``"mfcc"``) on every held-out task.

    Parameters
    ----------
    corpus_dir : str or path-like
        A built open corpus (see :func:`held_out_datasets`).
    representations : mapping
        Name -> anything :func:`~mtlmusic_training.evaluation.evaluate` takes as its source.
    cache_dir : str or path-like, optional
        Feature cache folder.
    n_repeats, seed : int
        Repetitions of the cross-validation and the seed of its splits.
    n_folds : int, optional
        Folds of each repetition: default :data:`DEFAULT_FOLDS` of the split, the study's 10 on
        the test tracks and 3 on the validation tracks, too few for 10 folds of every class.
    workers : int
        Decoding processes beside the network.
    split : str
        The tracks scored: ``test`` (the held-out part) or ``valid`` (to choose between models).

    Returns
    -------
    list of dict
        One row per task and representation: ``task``, ``representation``, ``metric``,
        ``mean``, ``low``, ``high`` (the 95 % interval), ``n_tracks``, ``split``, ``folds`` and
        ``standardized`` (whether the protocol standardized the features).

    Raises
    ------
    mtlmusic.ConfigError
        When the split has no task to score (see :func:`held_out_datasets`).

    Examples
    --------
    >>> rows = evaluate_on_open_corpus("corpus", {"mfcc": "mfcc"}, n_repeats=1)  # doctest: +SKIP
    >>> sorted({row["task"] for row in rows})  # doctest: +SKIP
    ['soundtrack', 'style', 'tempo']
    """
    datasets = held_out_datasets(corpus_dir, split, required=True)
    n_folds = n_folds or DEFAULT_FOLDS[split]
    rows = []
    for task, dataset in datasets.items():
        for name, source in representations.items():
            result = evaluate(source, dataset, cache_dir=cache_dir, n_repeats=n_repeats, n_folds=n_folds, seed=seed,
                              workers=workers)
            low, high = result.interval
            rows.append({"task": task, "representation": name, "metric": result.metric, "mean": result.mean,
                         "low": low, "high": high, "n_tracks": len(dataset), "split": split, "folds": n_folds,
                         "standardized": result.standardized})
    return rows


def score_table(rows: list[dict], by_representation: bool = False) -> str:
    """A Markdown table of :func:`evaluate_on_open_corpus` rows: one line per task, one column per representation
    (or, ``by_representation``, one line per representation: the long list of an ablation).

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`evaluate_on_open_corpus`.
    by_representation : bool, default False
        One line per representation, one column per task.

    Returns
    -------
    str
        The table; each task's best mean is in bold, followed by its 95 % interval.

    Examples
    --------
    >>> rows = [{"task": "style", "representation": r, "metric": "accuracy", "mean": m, "low": m - 0.1,
    ...          "high": m + 0.1, "n_tracks": 75} for r, m in (("default", 0.5), ("mfcc", 0.6))]
    >>> print(score_table(rows))
    | task (tracks, metric) | default | mfcc |
    |---|---|---|
    | style (75, accuracy) | 0.500 [0.400, 0.600] | **0.600** [0.500, 0.700] |
    >>> print(score_table(rows, by_representation=True))
    | representation | style (75, accuracy) |
    |---|---|
    | default | 0.500 [0.400, 0.600] |
    | mfcc | **0.600** [0.500, 0.700] |
    """
    names = list(dict.fromkeys(row["representation"] for row in rows))
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    cells = {(row["task"], row["representation"]): row for row in rows}
    best = {task: max((row for row in rows if row["task"] == task), key=lambda row: row["mean"])["representation"]
            for task in tasks}
    headings = {task: f"{task} ({cells[task, best[task]]['n_tracks']}, {cells[task, best[task]]['metric']})"
                for task in tasks}

    def cell(task: str, name: str) -> str:
        row = cells[task, name]
        mean = f"**{row['mean']:.3f}**" if name == best[task] else f"{row['mean']:.3f}"
        return f"{mean} [{row['low']:.3f}, {row['high']:.3f}]"

    if by_representation:
        lines = ["| representation | " + " | ".join(headings.values()) + " |", "|---" * (len(tasks) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(cell(task, name) for task in tasks) + " |" for name in names]
    else:
        lines = ["| task (tracks, metric) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {headings[task]} | " + " | ".join(cell(task, name) for name in names) + " |" for task in tasks]
    return "\n".join(lines)


#: What each learning source of the open corpus is, in the words of a model card.
CARD_SOURCES = {
    "self": "same-track pairs of 2.5 s crops (half of every batch from the same excerpt)",
    "bpm": "beat-tracked tempo (librosa) -> 50-component Gaussian mixture, as the study's bpm",
    "onset": "onset rate -> 50-component Gaussian mixture",
    "chroma": "histogram of local keys (chroma matched to key profiles) -> pLSA, 12 topics",
    "tempogram": "tempogram histogram -> pLSA, 12 topics",
    "timbre": "bag of MFCC words (64-word k-means codebook) -> pLSA, 16 topics",
    "composer": "composer tags of the Wesnoth soundtrack -> label distribution",
    "tag": "teacher musicnn (MSD_musicnn): weights of 50 Last.fm tags of the Million Song Dataset -> pLSA, 50 "
           "topics, as the study's tag source",
    "mtt": "teacher musicnn (MTT_musicnn): weights of 50 MagnaTagATune tags (instruments, voices, moods, genres) "
           "-> pLSA, 50 topics",
    "pitch": "teacher basic-pitch: seconds of transcribed notes per pitch class and octave -> pLSA, 12 topics",
    "notes": "teacher basic-pitch: transcribed notes per second -> 50-component Gaussian mixture",
    "tempo_cnn": "teacher tempo-CNN: global tempo -> 50-component Gaussian mixture, as the study's bpm",
}


def corpus_tables(corpus_dir: str | os.PathLike) -> str:
    """Markdown tables of a built corpus: tracks, excerpts and minutes per part and split; minutes per licence.

    Examples
    --------
    >>> print(corpus_tables("corpus"))  # doctest: +SKIP
    """
    import pandas as pd

    corpus_dir = Path(corpus_dir)
    manifest = Manifest.load(corpus_dir / "manifest.csv")
    table = read_table(corpus_dir / "metadata.csv").merge(
        pd.DataFrame({"track_id": manifest.track_ids, "split": manifest.splits}))
    if "source_track" not in table:
        table["source_track"] = table["track_id"]
    table["part"] = table["corpus"].map({"soundtrack": "recorded and tracker music (Debian packages)",
                                         "midi": "MIDI pieces of Debian packages, rendered",
                                         "music21": "music21 scores, rendered"})
    lines = ["| part | classes | tracks (train / valid / test) | excerpts | minutes of excerpts |",
             "|---|---|---|---|---|"]
    for part, rows in table.groupby("part", sort=False):
        classes = rows["soundtrack"].where(rows["corpus"] != "music21", rows["style"]).nunique()
        tracks = rows.groupby("split")["source_track"].nunique().reindex(["train", "valid", "test"], fill_value=0)
        lines.append(f"| {part} | {classes} | {' / '.join(str(n) for n in tracks)} | {len(rows)} | "
                     f"{rows['duration'].sum() / 60:.0f} |")
    minutes = (table.groupby("licence")["duration"].sum() / 60).sort_values(ascending=False)
    shown = minutes.iloc[:12]
    lines += ["", "| licence (as the package states it) | minutes of excerpts |", "|---|---|"]
    lines += [f"| {licence or 'unknown'} | {value:.0f} |" for licence, value in shown.items()]
    if len(minutes) > len(shown):
        lines.append(f"| {len(minutes) - len(shown)} other licence statements | {minutes.iloc[12:].sum():.0f} |")
    return "\n".join(lines)


def model_card(config: Mapping, rows: list[dict], corpus_dir: str | os.PathLike,
               ablations: Sequence[Sequence[dict]] = ()) -> str:
    """The model card (Markdown with the hub's metadata header) of a model trained on the open corpus.

    Parameters
    ----------
    config : mapping
        The model file's config; its ``info`` holds the training recipe and history.
    rows : list of dict
        :func:`evaluate_on_open_corpus` rows for the model and the baselines.
    corpus_dir : str or path-like
        The corpus it was trained on (:func:`corpus_tables` describes it).
    ablations : sequence of lists of dict, optional
        :func:`~mtlmusic_training.corpus.ablation.run_ablation` rows (``open-corpus-ablation -o``),
        one table each in the card's ablation section (e.g. short runs of every variant, then the
        best ones at the model's own budget).

    Returns
    -------
    str
        The card, as ``docs/models/default.md`` holds it.

    Examples
    --------
    >>> card = model_card(config, rows, "corpus")  # doctest: +SKIP
    >>> card.splitlines()[0]  # doctest: +SKIP
    '---'
    """
    from ..teachers import TEACHERS
    from ..teachers.targets import TEACHER_SOURCES

    info = config.get("info", {})
    training = info.get("training", {})
    final = info.get("final") or {}
    sources = list(config["sources"])
    minutes = info.get("train_seconds", 0.0) / 60
    length = training.get("iterations_per_epoch")
    steps = info.get("epochs_trained", 0) * final.get("iterations", 0)
    teachers = sorted({TEACHER_SOURCES[s][0] for s in sources if s in TEACHER_SOURCES})
    augment = training.get("augment") or {}
    augment_option = f" --augment {','.join(f'{k}={v:g}' for k, v in augment.items())}" if augment else ""
    names = list(dict.fromkeys(row["representation"] for row in rows))
    name = config.get("name") or "default"
    header = "\n".join([
        "---", "license: other", "license_name: open-corpus-mixed", "library_name: mtlmusic",
        "tags: [audio, music, feature-extraction, music-information-retrieval, multi-task-learning]",
        "datasets: [debian-game-music, music21-corpus]", "metrics: [accuracy, r2]", "---"])
    lines = [
        header, "",
        f"# {name}: {config['architecture']} on {', '.join(sources)}", "",
        f"A model of mtlmusic: the study's network (Table 3) as {config['architecture']}, trained by mtlmusic's own "
        f"pipeline on openly licensed music with {len(sources)} learning sources. Each track is described by "
        f"{2 * 256} values: the mean and standard deviation of the 256-dimensional representation of its 2.5 s "
        "slices.",
        "",
        "## Data and licences", "",
        "The open corpus (`docs/open-corpus.md`): the recorded and tracker music of the Debian game and "
        "soundtrack packages of the package list (sound effects, jingles under 30 s, copies and variants left out), "
        "the MIDI pieces of Debian packages rendered with FluidSynth and one of three Debian General MIDI soundfonts "
        "(FluidR3_GM, TimGM6mb, MuseScore General), and pieces of five styles of the music21 corpus (BSD-licensed "
        "encodings of public-domain works) rendered with one General MIDI instrument, one tempo and one soundfont "
        "per piece, drawn independently of the style. Cut into 30 s excerpts (at most four per track); split by "
        "track and by work, never by excerpt. None of the collections reserved for independent evaluation is used.",
        "",
        corpus_tables(corpus_dir),
        "",
        "The weights are learned from this music; whoever redistributes them should honour the licences of the "
        "training audio (copyleft GPL and CC-BY-SA terms included; each track's licence is in the corpus tables "
        "`debian.csv`, `soundtracks.csv`, `midi.csv`, `music21.csv`).",
        "",
        "## Learning sources", "",
        *[f"* `{s}`: {CARD_SOURCES.get(s, 'see docs/open-corpus.md')}." for s in sources],
        "",
        "No label of the evaluation tasks (package, style, rendered tempo) is a learning source, and the held-out "
        "tracks contribute neither audio nor targets to training.",
    ]
    if teachers:
        lines += ["", "Teachers (each run in its own pinned environment; their predictions are targets only, none "
                      "of their weights is in this model):", ""]
        lines += [f"* {name}: {TEACHERS[name].description}; licence {TEACHERS[name].licence}." for name in teachers]
    lines += [
        "",
        "## Recipe", "",
        "```bash",
        "mtlmusic-train open-corpus-debian open-music-debian corpus --fetch",
        "mtlmusic-train open-corpus-midi open-music-midi corpus --fetch",
        "apt-get download warzone2100-music ufoai-music planetblupi-music-ogg wesnoth-1.16-music nexuiz-music \\",
        "    singularity-music hyperrogue-music asc-music   # then dpkg -x and unzip, see docs/open-corpus.md",
        "mtlmusic-train open-corpus open-music/x corpus --per-style 150 --per-track 4",
        "mtlmusic-train open-corpus-timbre corpus",
        *([" ".join(["mtlmusic-train teachers corpus", *(f"--teacher {name}" for name in teachers)])]
          if teachers else []),
        "mtlmusic-train cache corpus/manifest.csv corpus --workers 2",
        f"mtlmusic-train run corpus runs/{name} --arch {config['architecture']} "
        f"--sources {','.join(sources)} --epochs {info.get('epochs_trained')} "
        + (f"--iterations-per-epoch {length} " if length else "")
        + f"--lr {training.get('lr')}{augment_option}",
        f"mtlmusic-train export runs/{name} corpus -o {name}.safetensors --name {name}",
        f"mtlmusic-train open-corpus-eval corpus {name}.safetensors --cache eval-cache",
        "```", "",
        f"Batch {training.get('batch_size')}, Adam (lr {training.get('lr')}, L2 {training.get('weight_decay')}), "
        f"{info.get('epochs_trained')} epochs of {f'{length} iterations' if length else 'L = l x m iterations'}"
        + (f" ({steps:,} steps)" if steps else "") + f", seed {training.get('seed')}, "
        f"device: {info.get('device')}" + (f", {minutes:.0f} minutes of training." if minutes else ".")
        + (" Training crops augmented (`docs/open-corpus.md`, section 4): "
           + ", ".join(f"{k} {v:g}" for k, v in augment.items()) + "." if augment else ""),
        "",
        "Final validation losses: " + ", ".join(f"{k} {v:.3f}" for k, v in (final.get("valid_loss") or {}).items()
                                              if v is not None) + ".",
        "",
        "## Evaluation on the held-out part", "",
        "The study's protocol: linear SVM (C = 1) on the features as they are for classification, RBF SVR "
        "(gamma = 1/d) on standardized features for regression, 5 x 10-fold cross-validation over the held-out "
        "tracks (one excerpt each); mean and 95% interval. "
        "Rand is the same network untrained; MFCC is 20 MFCCs with deltas and delta-deltas, mean and std"
        + ("; musicnn is MSD_musicnn's penultimate layer (200) or mean-pool layer (753), averaged over 3 s patches"
           if any(name.startswith("musicnn") for name in names) else "") + ".",
        "",
        score_table(rows), "",
        "Reproduce this table with the last command of the recipe.",
        "",
        *(_ablation_section(ablations, sources, steps) if ablations else []),
        "## What it is not good for", "",
        "* Vocals, lyrics and most popular genres: the training music is game soundtracks, chiptune modules and "
        "rendered scores; none of it is commercial popular music.",
        "* Reading off tempo, key or pitch directly: the features help a model learn them (see the tempo task), "
        "but a dedicated estimator (a beat tracker, a key or pitch detector) is far more accurate.",
        "* Tasks that need more than 2.5 s of context per slice (form, long-range structure): the track vector is "
        "the mean and standard deviation of its slices.",
        "* Comparisons with the study's numbers: the study trained on 46,490 Million Song Dataset previews with "
        "Last.fm, Echo Nest, musiXmatch and CDR targets; this model's data and sources are different and smaller.",
    ]
    return "\n".join(lines) + "\n"


def _ablation_section(tables: Sequence[Sequence[dict]], sources: Sequence[str], model_steps: int) -> list[str]:
    """The card's lines on the ablations: how their variants were trained and scored, which variant the model
    is, one table per ablation with its steps, and the sources of the variants whose names do not say them
    (``<teacher>-only`` and your own)."""
    first = tables[0][0]
    rows = [row for table in tables for row in table]
    chosen = sorted({row["representation"] for row in rows if set(row.get("sources", ())) == set(sources)})
    lines = [
        "## Ablation", "",
        "Which sources the model needs: the model with all sources, without each source in turn, each teacher's "
        "sources alone (with `self`) and, where named `augmented`, all sources with augmented crops; every "
        "variant of a table trained for the same steps by `mtlmusic-train open-corpus-ablation` and scored on the "
        f"{first.get('split', 'valid')} tracks ({first.get('folds', 10)} folds x the repetitions; mean and 95% "
        "interval)."
        + (f" This model has the sources of the variant `{chosen[0]}`." if chosen else ""),
        "",
    ]
    for table in tables:
        steps = next((row["steps"] for row in table if "steps" in row), None)
        lines += [f"### {steps:,} steps" if steps else "### The same number of steps", ""]
        if steps and model_steps and steps < model_steps:
            lines += [f"Short runs (the model trained {model_steps:,} steps): the table compares sources, not "
                      "final scores.", ""]
        lines += [score_table(list(table), by_representation=True), ""]
    named = {row["representation"]: row["sources"] for row in rows if "sources" in row
             and row["representation"] not in ("all", "augmented") and not row["representation"].startswith("without-")}
    if named:
        lines += ["Sources of the other variants: " + "; ".join(f"`{name}`: {', '.join(variant_sources)}"
                                                               for name, variant_sources in named.items()) + ".", ""]
    return lines
