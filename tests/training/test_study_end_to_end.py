"""The study from its published data files to its tables and figures, one ``mtlmusic-train`` command per stage.

prepare-msd -> cache -> design -> grid (which exports runs/models/) -> evaluate-grid -> analyse, on the
miniature Million Song Dataset of ``msd_fixture`` and tiny GTZAN and Ballroom folders: each stage reads
what the previous one wrote, and the counts agree from stage to stage. The same stages run on a miniature
open corpus, with the design over its own sources and its held-out tasks. The statistics of the analysis
are tested on simulations with known components in ``evaluation/test_analysis.py``
(``test_mixed_model_recovers_known_effects``, ``test_variance_components_recover_known_standard_deviations``).
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from evaluation.gtzan_clips import SR, genre_clip, write_gtzan
from msd_fixture import EVERY_SOURCE, tid, write_msd
from mtlmusic_training import targets
from mtlmusic_training.cli import app
from mtlmusic_training.datasets import Manifest
from mtlmusic_training.design import representations
from mtlmusic_training.trainer import TrainConfig, load_training_data
from test_training_datasets import fma, write_multiheader_csv  # noqa: F401 (fma: a fixture)

DOCS = Path(__file__).parents[2] / "docs" / "training.md"
#: Tracks with every source added to the fixture's three: a 50-component mixture needs 50 years and 50 tempi.
EXTRA_TRACKS = 47
BATCH = 16
EVAL_CLIPS = 5   # per class of GTZAN and Ballroom
FOLDS = 3        # one repetition: 3 splits per (representation, dataset)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def invoke(*args) -> str:
    """Run one ``mtlmusic-train`` command; return its output, failing the test on a non-zero exit code."""
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result.output


def write_ballroom(root, clips: int):
    """``root/BallroomData/{ChaChaCha,Waltz}/*.wav``: ``clips`` of each GTZAN genre, spread over both styles.

    The style is not the genre, so that the scores differ from one representation to another.
    """
    for n in range(clips):
        folder = root / "BallroomData" / ("ChaChaCha", "Waltz")[n % 2]
        folder.mkdir(parents=True, exist_ok=True)
        for genre in ("blues", "rock"):
            sf.write(folder / f"Media-{genre}{n:02d}.wav", genre_clip(genre, n, 1.2), SR)
    return root


def documented_outputs() -> set[str]:
    """The files of the table in docs/training.md's "Analysis": figures as PNG and CSV, tables as CSV and Markdown."""
    section = DOCS.read_text().split("### Analysis", 1)[1]
    names = [name for line in section.splitlines() if line.startswith("| `")
             for name in re.findall(r"`([^`]+)`", line.split("|")[1])]
    return {file for name in names
            for file in ([name] if "." in name else [f"{name}.png", f"{name}.csv"] if name.startswith("fig")
                         else [f"{name}.csv", f"{name}.md"])}


# Every trained representation scores 1 on GTZAN's two clearly different genres: fitting variance
# components to scores without variance makes statsmodels warn.
@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
def test_published_files_to_tables_and_figures(tmp_path):
    msd = write_msd(tmp_path / "msd", complete=EXTRA_TRACKS, seconds=2.7)
    data, runs, results, analysis = (tmp_path / name for name in ("data", "runs", "results.csv", "analysis"))

    # prepare: the tracks with every source, and their targets
    output = invoke("prepare-msd", msd / "previews", data, "--require-all",
                    "--lastfm-tags", msd / "lastfm_tags.db", "--taste-triplets", msd / "train_triplets.txt",
                    "--unique-tracks", msd / "unique_tracks.txt",
                    "--musixmatch", msd / "mxm_dataset_train.txt", "--musixmatch", msd / "mxm_dataset_test.txt",
                    "--metadata", msd / "track_metadata.db", "--metadata", msd / "metadata.csv",
                    "--genres", msd / "msd_tagtraum_cd2.cls")
    every_source = [*EVERY_SOURCE, *range(101, 101 + EXTRA_TRACKS)]
    report = json.loads(output[output.index("{"):])
    assert report["with_every_source"] == report["tracks"] == len(every_source)
    assert f"{len(every_source)} tracks have data for every source" in output
    manifest = Manifest.load(data / "manifest.csv")
    assert sorted(manifest.track_ids) == sorted(tid(i) for i in every_source)
    assert sorted(path.stem for path in (data / "targets").iterdir()) == [
        "artist", "bpm", "cdr_tag", "lyrics", "tag", "taste", "year"]

    # cache
    output = invoke("cache", data / "manifest.csv", data, "--workers", 0)
    assert f"{len(every_source)} tracks cached, 0 failed" in output

    # design: every SS-R network, and the first two-source run of each multi-task architecture
    invoke("design", "-o", tmp_path / "design.csv")
    with open(tmp_path / "design.csv", newline="") as handle:
        design = list(csv.DictReader(handle))
    chosen = [row for row in design if row["role"] == "single_source"]
    for architecture in ("MS-SR@FC", "MS-CR@2", "MS-CR@4", "MS-CR@6"):
        chosen.append(next(row for row in design if row["architecture"] == architecture
                           and row["role"] == "design" and row["n_sources"] == "2"))
    trained = {row["name"] for row in chosen}

    # grid, which exports every run to runs/models/
    invoke("grid", data, runs, "--runs", ",".join(row["id"] for row in chosen), "--epochs", 1,
           "--batch-size", BATCH, "--device", "cpu")
    assert {path.stem for path in (runs / "models").glob("*.safetensors")} == trained
    # Every task trains on the same tracks: the epoch length L = l x m has the same l in every run.
    n_train, per_source = manifest.splits.count("train"), set()
    for name in trained:
        history = [json.loads(line) for line in (runs / name / "history.jsonl").read_text().splitlines()]
        sources = TrainConfig(**torch.load(runs / name / "checkpoint.pt", weights_only=False)["config"]).sources
        assert all(len(task.train) == n_train for task in load_training_data(data, sources).tasks.values())
        assert len(history) == 1
        per_source.add(history[0]["iterations"] / len(sources))
    assert per_source == {math.ceil(n_train / BATCH)}

    # evaluate-grid: every network, the MSS-CRs of its SS-Rs and the baselines on every dataset
    gtzan = write_gtzan(tmp_path / "gtzan", clips=EVAL_CLIPS, seconds=1.2)
    ballroom = write_ballroom(tmp_path / "ballroom", clips=EVAL_CLIPS)
    invoke("evaluate-grid", runs, "-o", results, "--cache", tmp_path / "eval-cache", "--gtzan", gtzan,
           "--ballroom", ballroom, "--repeats", 1, "--folds", FOLDS, "--device", "cpu", "--workers", 0)
    table = pd.read_csv(results, keep_default_na=False)
    msscr = {rep.name for rep in representations() if rep.architecture == "MSS-CR"}   # all 79: every SS-R is there
    expected = trained | msscr | {"mfcc", "rand"}
    assert set(table["representation"]) == expected and set(table["dataset"]) == {"GTZAN", "Ballroom"}
    assert len(table) == len(expected) * 2 * FOLDS
    assert (table.groupby(["representation", "dataset"])["split"].nunique() == FOLDS).all()

    # analyse: every table and figure that the docs list
    output = invoke("analyse", results, "-o", analysis)
    assert f"{len(expected)} representations on 2 datasets: 8 tables and 8 figures" in output
    written = {path.name for path in analysis.iterdir()}
    assert written == documented_outputs()
    assert all((analysis / name).stat().st_size > 0 for name in written)
    assert set(pd.read_csv(analysis / "scores_by_representation.csv")["representation"]) == expected


def test_prepare_fma_leaves_the_evaluation_genres_out_of_cdr_tag(fma, monkeypatch):  # noqa: F811
    """The cdr_tag targets that prepare-fma writes are fitted on sub-genres only: no genre_top, no parent 0.

    ``test_training_datasets.py`` checks the adapter's vocabulary; this checks the command's targets.
    """
    # A 50-component mixture needs 50 release dates and 50 tempi: the fixture's medium tracks (2, 3, 5),
    # given a tempo each, get 2-component ones.
    write_multiheader_csv(fma / "fma_metadata" / "echonest.csv", [("echonest", "audio_features", "tempo")],
                          [[2, 165.9], [3, 120.0], [5, 98.0]])
    for source in ("year", "bpm"):
        monkeypatch.setitem(targets._REGISTRY, source, dataclasses.replace(targets.get_source(source), dim=2))
    invoke("prepare-fma", fma, fma / "data")

    tracks = pd.read_csv(fma / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1])
    genres = pd.read_csv(fma / "fma_metadata" / "genres.csv", index_col="genre_id")
    evaluation = set(genres.index[(genres["parent"] == 0) | genres["title"].isin(tracks["track", "genre_top"])])
    sub_genres = {str(track): set(ast.literal_eval(listed)) - evaluation
                  for track, listed in tracks["track", "genres_all"].items()}
    cdr_tag = targets.load_targets(fma / "data" / "targets" / "cdr_tag.npz")
    assert evaluation and any(sub_genres.values())
    assert cdr_tag.topic_term.shape[1] == len(set().union(*(sub_genres[track] for track in cdr_tag.track_ids)))
    assert cdr_tag.mask.tolist() == [bool(sub_genres[track]) for track in cdr_tag.track_ids]


def test_analyse_refuses_a_non_empty_folder_and_a_malformed_table(tmp_path):
    results = tmp_path / "results.csv"
    pd.DataFrame({"representation": ["ssr-bpm", "ssr-tag", "mscr2-bpm-tag", "mfcc", "rand"],
                  "architecture": ["SS-R", "SS-R", "MS-CR@2", "", ""], "sources": ["bpm", "tag", "bpm+tag", "", ""],
                  "n_sources": [1, 1, 2, 0, 0], "dataset": "GTZAN", "score": [0.6, 0.5, 0.7, 0.4, 0.2]}
                 ).to_csv(results, index=False)
    out = tmp_path / "analysis"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = CliRunner().invoke(app, ["analyse", str(results), "-o", str(out)])
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert [path.name for path in out.iterdir()] == ["notes.txt"]
    output = invoke("analyse", results, "-o", out, "--overwrite")
    assert "mixed model skipped" in output
    assert (out / "datasets.md").exists() and (out / "notes.txt").read_text() == "mine"

    for name, text in (("columns.csv", "representation,dataset,score\nssr-bpm,GTZAN,0.5\n"), ("empty.csv", ""),
                       ("ragged.csv", "representation,dataset\nssr-bpm,GTZAN,0.5,1\n"),
                       ("scores.csv", results.read_text().replace("0.6", "high"))):
        (tmp_path / name).write_text(text)
        result = CliRunner().invoke(app, ["analyse", str(tmp_path / name), "-o", str(tmp_path / "out")])
        assert result.exit_code == 2 and "error: cannot analyse" in result.output, (name, result.output)
    missing = CliRunner().invoke(app, ["analyse", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "out")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


#: The open corpus's design: slot i of the paper's sources (self, bpm, year, tag, ...) is the i-th of these.
OPEN_SOURCES = ("self", "bpm", "onset", "chroma", "tempogram", "timbre", "tag", "mtt")
PLANTED = ("bpm", "onset", "chroma")   # the sources with targets in write_open_corpus


def write_open_corpus(root):
    """A built open corpus in miniature: training, validation and held-out tracks, the held-out tasks' labels,
    and planted targets of :data:`PLANTED` (the class of the clip, and two splits of the clips by number)."""
    root.mkdir()
    manifest, metadata, clips = [], [], []
    for split, count in (("train", 16), ("valid", 4), ("test", 12)):
        for n in range(count):
            genre = ("blues", "rock")[n % 2]
            track_id = f"{split}{n:02d}"
            path = root / f"{track_id}.wav"
            sf.write(path, genre_clip(genre, n, 2.7), SR)
            music21 = split == "test" and n >= 6
            manifest.append({"track_id": track_id, "path": str(path), "split": split})
            metadata.append({"track_id": track_id, "corpus": "music21" if music21 else "soundtrack",
                             "soundtrack": "" if music21 else f"game-{genre}",
                             "style": ("bach", "palestrina")[n % 2] if music21 else "",
                             "bpm_label": 60 + 10 * n if music21 else ""})
            if split != "test":
                clips.append((track_id, n % 2, (n // 2) % 2, (n // 4) % 2))
    for name, rows in (("manifest.csv", manifest), ("metadata.csv", metadata)):
        pd.DataFrame(rows).to_csv(root / name, index=False)
    ids = np.array([clip[0] for clip in clips])
    for column, source in enumerate(PLANTED, start=1):
        z = np.full((len(clips), 2), 0.025, dtype=np.float32)
        z[np.arange(len(clips)), [clip[column] for clip in clips]] = 0.975
        targets.save_targets(targets.Targets(source, z, np.ones(len(clips), bool), {"kind": "label"}, ids),
                             targets.targets_path(root / "targets", source))
    return root


# Scores of 6 tracks vary little between representations: fitting variance components to them may warn.
@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning",
                            "ignore:invalid value encountered in sqrt:RuntimeWarning")
def test_open_corpus_to_tables_and_figures_over_its_own_sources(tmp_path):
    corpus, runs, results, analysis = (tmp_path / name for name in ("corpus", "runs", "results.csv", "analysis"))
    write_open_corpus(corpus)
    invoke("cache", corpus / "manifest.csv", corpus, "--workers", 0)

    # design over the corpus's sources: the SS-R networks with targets, and the two-source runs among them
    invoke("design", "-o", tmp_path / "design.csv", "--sources", ",".join(OPEN_SOURCES))
    with open(tmp_path / "design.csv", newline="") as handle:
        design = list(csv.DictReader(handle))
    assert list(design[0])[5:] == list(OPEN_SOURCES)
    usable = {"self", *PLANTED}
    chosen = [row for row in design if row["n_sources"] in ("1", "2")
              and {s for s in OPEN_SOURCES if row[s] == "1"} <= usable]
    trained = {row["name"] for row in chosen}
    assert trained == {"ssr-self", "ssr-bpm", "ssr-onset", "ssr-chroma", "mssrfc-bpm-chroma", "mscr2-bpm-onset",
                       "mscr4-self-chroma"}

    # grid over them, a few steps per network; the runs folder keeps its design
    invoke("grid", corpus, runs, "--runs", ",".join(row["id"] for row in chosen), "--sources", ",".join(OPEN_SOURCES),
           "--epochs", 1, "--iterations-per-epoch", 4, "--batch-size", 8, "--device", "cpu")
    assert {path.stem for path in (runs / "models").glob("*.safetensors")} == trained
    assert "7 done, 83 pending" in invoke("status", runs)

    # evaluate-grid on the held-out tasks: every network, the MSS-CRs of its SS-Rs, the baselines
    output = invoke("evaluate-grid", runs, "-o", results, "--open-corpus", corpus, "--cache", tmp_path / "eval-cache",
                    "--repeats", 1, "--folds", FOLDS, "--device", "cpu", "--workers", 0)
    assert "soundtrack: 6 tracks" in output and "style: 6 tracks" in output and "tempo: 6 tracks" in output
    table = pd.read_csv(results, keep_default_na=False)
    msscr = {rep.name for rep in representations(OPEN_SOURCES)
             if rep.architecture == "MSS-CR" and set(rep.networks) <= trained}
    assert msscr == {"msscr-bpm-chroma", "msscr-bpm-onset", "msscr-self-chroma", "msscr-self-chroma-onset",
                     "msscr-self-bpm-chroma-onset"}
    expected = trained | msscr | {"mfcc", "rand"}
    assert set(table["representation"]) == expected and len(table) == len(expected) * 3 * FOLDS
    assert table.groupby("dataset")["metric"].first().to_dict() == {"soundtrack": "accuracy", "style": "accuracy",
                                                                    "tempo": "r2"}

    # analyse: the variance components of the sources the corpus trained on, in canonical order
    output = invoke("analyse", results, "-o", analysis)
    assert f"{len(expected)} representations on 3 datasets" in output
    components = pd.read_csv(analysis / "variance_components.csv", index_col=0)
    assert list(components.index) == ["self", "bpm", "chroma", "onset", "architecture", "residual"]
    assert list(components.columns) == ["soundtrack", "style", "tempo"]
    assert set(pd.read_csv(analysis / "fig06_single_source.csv").query("kind == 'SS-R'")["name"]) == usable
