"""evaluate_grid(): the results table, resumption, MSS-CR from SS-R features, standardization, the Jam dump."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import mtlmusic_training.evaluation.run as evaluation_run
from mtlmusic.architectures import assemble_msscr, build_network, model_name
from mtlmusic.errors import ConfigError
from mtlmusic.model import Model
from mtlmusic.modelfile import feature_names, save_model_file
from gtzan_clips import write_gtzan
from mtlmusic_training.cli import app
from mtlmusic_training.corpus.heldout import DEFAULT_FOLDS
from mtlmusic_training.design import grid_sources
from mtlmusic_training.evaluation import (
    RESULT_COLUMNS,
    dataset_features,
    evaluate,
    evaluate_classification,
    evaluate_grid,
    evaluate_regression,
    grid_representations,
    load_gtzan,
    load_thisismyjam,
    load_values_csv,
)
from mtlmusic_training.evaluation.analysis import load_results, representation_means
from samples import random_scaler

SPLITS = {"n_repeats": 1, "n_folds": 3}
NETWORKS = (("SS-R", ("bpm",)), ("SS-R", ("tag",)), ("MS-CR@2", ("bpm", "tag")))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _network(architecture, sources, seed):
    torch.manual_seed(seed)
    network = build_network(architecture, sources)
    for module in network.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return network.eval()


@pytest.fixture(scope="module")
def gtzan(tmp_path_factory):
    return write_gtzan(tmp_path_factory.mktemp("gtzan"), clips=5, seconds=1.2)


@pytest.fixture(scope="module")
def datasets(gtzan):
    classification = load_gtzan(gtzan)
    table = gtzan / "pitch.csv"
    table.write_text("path,value\n" + "".join(f"{p},{0.1 * i}\n" for i, p in enumerate(classification.paths)))
    return {"GTZAN": classification, "Pitch": load_values_csv(table, name="Pitch")}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """A runs folder with models/: two SS-R networks sharing a scaler, and an MS-CR@2 network."""
    runs = tmp_path_factory.mktemp("runs")
    for seed, (architecture, sources) in enumerate(NETWORKS, start=1):
        name = model_name(architecture, sources)
        save_model_file(runs / "models" / f"{name}.safetensors", _network(architecture, sources, seed),
                        random_scaler(), name=name)
    return runs


def test_msscr_features_from_ssr_caches_equal_the_assembled_network(runs_dir, datasets, tmp_path, monkeypatch):
    dataset = datasets["GTZAN"]
    members = [runs_dir / "models" / "ssr-tag.safetensors", runs_dir / "models" / "ssr-bpm.safetensors"]
    found = dataset_features(members, dataset, cache_dir=tmp_path)
    assembled = Model(assemble_msscr([_network("SS-R", ("bpm",), 1), _network("SS-R", ("tag",), 2)]),
                      random_scaler(), device="cpu")
    direct = assembled.extract([str(p) for p in dataset.paths])
    assert found.features.shape == direct.shape == (10, 1024)
    assert found.feature_names == tuple(assembled.feature_names) == tuple(feature_names(["bpm", "tag"]))
    assert found.source == "msscr-bpm-tag" and not found.from_cache
    np.testing.assert_allclose(found.features, direct, rtol=1e-5, atol=1e-6)

    def broken(*args, **kwargs):
        raise RuntimeError("extraction must not run")

    monkeypatch.setattr(evaluation_run, "extract_files", broken)
    again = dataset_features(members[::-1], dataset, cache_dir=tmp_path)
    assert again.from_cache
    np.testing.assert_array_equal(again.features, found.features)
    with pytest.raises(ConfigError, match="mscr2-bpm-tag.safetensors is not an SS-R network"):
        dataset_features([members[0], runs_dir / "models" / "mscr2-bpm-tag.safetensors"], dataset, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="both learned from 'tag'"):
        dataset_features([members[0], members[0]], dataset, cache_dir=tmp_path)


def test_grid_writes_the_table_load_results_reads_and_resumes(runs_dir, datasets, tmp_path, monkeypatch):
    out, cache = tmp_path / "results.csv", tmp_path / "cache"
    lines = []
    summary = evaluate_grid(runs_dir, datasets, out, cache_dir=cache, msscr=[("tag", "bpm"), ("self", "bpm")],
                            log=lines.append, **SPLITS)
    assert (summary.scored, summary.skipped, summary.failed) == (12, 0, {})
    assert summary.unassembled == ["msscr-self-bpm"]

    header = out.read_text().splitlines()[0]
    assert tuple(header.split(",")) == RESULT_COLUMNS
    results = load_results(out)
    assert len(results) == 6 * 2 * 3  # (2 baselines + 3 networks + 1 MSS-CR) x 2 datasets x 3 splits
    means = representation_means(results)
    assert sorted(means["representation"].unique()) == ["mfcc", "mscr2-bpm-tag", "msscr-bpm-tag", "rand",
                                                        "ssr-bpm", "ssr-tag"]
    by_name = means[means["dataset"] == "GTZAN"].set_index("representation")
    assert by_name.loc["msscr-bpm-tag", "architecture"] == "MSS-CR"
    assert by_name.loc["msscr-bpm-tag", "sources"] == "bpm+tag" and by_name.loc["msscr-bpm-tag", "n_sources"] == 2
    assert by_name.loc["mscr2-bpm-tag", "architecture"] == "MS-CR@2"
    assert by_name.loc["mfcc", "baseline"] and by_name.loc["rand", "architecture"] == "Rand"
    assert set(results["metric"]) == {"accuracy", "r2"}
    # The protocols' defaults, recorded: no standardization for classification, standardization for regression.
    assert set(zip(results["task"], results["standardize"])) == {("classification", False), ("regression", True)}
    assert set(results.loc[results["dataset"] == "GTZAN", "n_classes"]) == {"2"}
    assert lines[-1].startswith("[12/12] Pitch msscr-bpm-tag: r2")

    # The same scores as evaluate() on the assembled representation.
    members = [runs_dir / "models" / "ssr-bpm.safetensors", runs_dir / "models" / "ssr-tag.safetensors"]
    direct = evaluate(members, datasets["GTZAN"], cache_dir=cache, **SPLITS)
    rows = results[(results["representation"] == "msscr-bpm-tag") & (results["dataset"] == "GTZAN")]
    np.testing.assert_allclose(rows.sort_values("split")["score"], direct.scores)

    # Resuming: nothing left to do, and nothing extracted.
    def broken(*args, **kwargs):
        raise RuntimeError("extraction must not run")

    monkeypatch.setattr(evaluation_run, "extract_files", broken)
    table = out.read_bytes()
    again = evaluate_grid(runs_dir, datasets, out, cache_dir=cache, msscr=[("tag", "bpm")], **SPLITS)
    assert (again.scored, again.skipped) == (0, 12)
    assert out.read_bytes() == table

    # An interrupted append (a pair with only some of its rows, the last one torn) is scored again.
    text = out.read_text()
    out.write_text(text[: text.rstrip("\n").rfind("\n") - 7])
    resumed = evaluate_grid(runs_dir, datasets, out, cache_dir=cache, msscr=[("tag", "bpm")], **SPLITS)
    assert (resumed.scored, resumed.skipped) == (1, 11)
    assert sorted(out.read_text().splitlines()) == sorted(text.splitlines())

    with pytest.raises(ConfigError, match="standardize, seed, n_splits = False, 0, 3; this run uses True, 0, 3"):
        evaluate_grid(runs_dir, {"GTZAN": datasets["GTZAN"]}, out, cache_dir=cache, standardize=True, **SPLITS)
    with pytest.raises(ConfigError, match="n_splits = False, 0, 3; this run uses False, 0, 2"):
        evaluate_grid(runs_dir, {"GTZAN": datasets["GTZAN"]}, out, cache_dir=cache, n_repeats=1, n_folds=2)


def test_grid_reports_failed_pairs_and_goes_on(runs_dir, datasets, tmp_path):
    models = [runs_dir / "models" / "ssr-bpm.safetensors"]
    summary = evaluate_grid(models, [datasets["GTZAN"]], tmp_path / "r.csv", cache_dir=tmp_path, baselines=["mfcc"],
                            msscr=[], on_error="skip", **SPLITS)
    assert summary.scored == 0 and set(summary.failed) == {"mfcc on GTZAN", "ssr-bpm on GTZAN"}
    assert "on_error" in summary.failed["mfcc on GTZAN"]
    with pytest.raises(ConfigError, match="unknown baselines"):
        evaluate_grid(models, datasets, tmp_path / "r.csv", cache_dir=tmp_path, baselines=["choi"])
    with pytest.raises(ConfigError, match="no model file"):
        evaluate_grid(tmp_path, datasets, tmp_path / "r.csv", cache_dir=tmp_path)
    (tmp_path / "other.csv").write_text("representation,score\n")
    with pytest.raises(ConfigError, match="not a results table"):
        evaluate_grid(models, datasets, tmp_path / "other.csv", cache_dir=tmp_path)


def test_cli_evaluate_grid_skips_missing_datasets_and_resumes(runs_dir, gtzan, tmp_path):
    args = ["evaluate-grid", str(runs_dir), "--gtzan", str(gtzan), "-o", str(tmp_path / "results.csv"),
            "--cache", str(tmp_path / "cache"), "--repeats", "1", "--folds", "3", "--workers", "0"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "Ballroom: no folder given, skipped" in first.output and "GTZAN: 10 tracks" in first.output
    assert "78 MSS-CR representations left out" in first.output
    assert "6 scored, 0 already in" in first.output  # 2 baselines, 3 networks and the study's msscr-bpm-tag
    again = CliRunner().invoke(app, args + ["--no-standardize"])
    assert again.exit_code == 0 and "0 scored, 6 already in" in again.output
    clash = CliRunner().invoke(app, args + ["--standardize"])
    assert clash.exit_code == 2 and "write the results to another file" in clash.output
    none = CliRunner().invoke(app, ["evaluate-grid", str(runs_dir), "-o", str(tmp_path / "x.csv")])
    assert none.exit_code == 2 and "at least one dataset" in none.output


# --- standardization --------------------------------------------------------------------------


def _unequal_scales(n=60, seed=0):
    """Two classes told apart by a tiny-scale dimension, beside large-scale noise (as MFCC c0 dwarfs the others)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(["a", "b"], n // 2)
    signal = (y == "b") * 1.0 + 0.3 * rng.normal(size=n)
    return np.column_stack([1e-3 * signal, 50.0 * rng.normal(size=(n, 3))]), y


def test_standardize_switch_changes_the_scores_and_is_recorded():
    X, y = _unequal_scales()
    raw = evaluate_classification(X, y, **SPLITS)
    scaled = evaluate_classification(X, y, standardize=True, **SPLITS)
    assert raw.standardized is False and scaled.standardized is True
    assert scaled.mean > 0.85 and raw.mean < 0.75
    assert scaled.to_dict()["standardized"] is True

    target = X[:, 0] * 1e3
    assert evaluate_regression(X, target, **SPLITS).standardized is True
    assert evaluate_regression(X, target, **SPLITS).mean > evaluate_regression(X, target, standardize=False,
                                                                                **SPLITS).mean


def test_evaluate_passes_the_switch_to_the_protocol(datasets):
    def mfcc_like(y, sr):
        loud = float(np.mean(np.abs(y)))  # 'blues' clips are louder
        noise = np.random.default_rng(int(loud * 1e6)).normal(size=3)
        return np.concatenate([[1e-3 * loud], 50.0 * noise])

    dataset = datasets["GTZAN"]
    default = evaluate(mfcc_like, dataset, **SPLITS)
    scaled = evaluate(mfcc_like, dataset, standardize=True, **SPLITS)
    assert default.standardized is False and scaled.standardized is True
    assert scaled.mean == 1.0 and default.mean < scaled.mean


# --- This Is My Jam ---------------------------------------------------------------------------


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


TRA, TRB, TRC, TRD = "TRAAAAW128F429D538", "TRAAABD128F429CF47", "TRAAADZ128F9348C2E", "TRAAAEF128F4273421"


@pytest.fixture
def jam_dump(tmp_path):
    """A miniature This Is My Jam dump with the MSD's jam_to_msd.tsv, and MSD previews for three tracks."""
    dump = tmp_path / "thisismyjam"
    dump.mkdir()
    (dump / "jams.tsv").write_text(
        "jam_id\tuser_id\tartist\ttitle\tcreation_date\tlink\tspotify_uri\n"
        + "".join(f"j{i}\tposter\tArtist\t\"Title {i}\t2012-01-01\t\t\n" for i in range(1, 8)))
    (dump / "likes.tsv").write_text(
        "user_id\tjam_id\n"
        "u1\tj1\nu1\tj2\nu1\tj3\n"  # j1 and j2 are the same MSD track: one like
        "u2\tj2\nu2\tj3\nu2\tj7\n"
        "u3\tj4\nu3\tj5\n"  # j4's track has no audio, j5 no match: u3 has no like left
        "u4\tj9\n"  # j9 is not in jams.tsv
        "u5\tj7\n"
    )
    (dump / "jam_to_msd.tsv").write_text(f"jam_id\ttrack_id\nj1\t{TRA}\nj2\t{TRA}\nj3\t{TRB}\nj4\t{TRC}\n"
                                         f"j7\t{TRD}\nj9\t{TRD}\n")
    for track in (TRA, TRB, TRD):
        _touch(tmp_path / "previews" / track[2] / f"{track}.mp3")
    return dump


def test_jam_dump_merges_jams_of_one_msd_track(jam_dump):
    ds = load_thisismyjam(jam_dump, jam_dump.parent / "previews")
    assert (ds.name, ds.task) == ("ThisIsMyJam", "recommendation")
    assert ds.ids == (TRA, TRB, TRD) and ds.users == ("u1", "u2", "u5")
    assert ds.paths[0] == jam_dump.parent / "previews" / "A" / f"{TRA}.mp3"
    np.testing.assert_array_equal(ds.interactions.toarray(), [[1, 1, 0], [1, 1, 1], [0, 0, 1]])

    # Both minimums at 2, together: u5 goes, then TRD (1 like left), then nobody else.
    core = load_thisismyjam(jam_dump, jam_dump.parent / "previews", min_likes=2, min_track_likes=2)
    assert core.ids == (TRA, TRB) and core.users == ("u1", "u2")
    np.testing.assert_array_equal(core.interactions.toarray(), [[1, 1], [1, 1]])

    # The files given one by one, the audio as a CSV of MSD track ids; without jams.tsv, j9's like counts.
    (jam_dump / "audio.csv").write_text(f"track_id,path\n{TRD},d.mp3\n{TRA},a.mp3\n")
    mapping = jam_dump / "jam_to_msd.tsv"
    by_file = load_thisismyjam(jam_dump / "likes.tsv", jam_dump / "audio.csv", jam_to_msd=mapping, check_files=False)
    assert by_file.ids == (TRD, TRA) and by_file.users == ("u1", "u2", "u4", "u5")
    assert by_file.paths[1] == jam_dump / "a.mp3"


def test_jam_dump_errors(jam_dump, tmp_path):
    previews = jam_dump.parent / "previews"
    (jam_dump / "jam_to_msd.tsv").write_text(f"j1\t{TRA}\nj2\tnot-a-track\n")
    with pytest.raises(ConfigError, match="line 2: expected jam_id<TAB>MSD track id"):
        load_thisismyjam(jam_dump, previews)
    (jam_dump / "jam_to_msd.tsv").unlink()
    (tmp_path / "msd.csv").write_text(f"track_id,path\n{TRA},a.mp3\n")
    with pytest.raises(ConfigError, match="no like refers to a track"):  # without a mapping, tracks are jams
        load_thisismyjam(jam_dump, tmp_path / "msd.csv")
    with pytest.raises(ConfigError, match="likes.tsv of the dump"):
        load_thisismyjam(tmp_path / "previews", previews)
    mapping = tmp_path / "mapping.tsv"
    mapping.write_text(f"j1\t{TRA}\n")
    with pytest.raises(ConfigError, match="no MSD preview"):
        load_thisismyjam(jam_dump, tmp_path / "thisismyjam", jam_to_msd=mapping)
    with pytest.raises(ConfigError, match="min_track_likes"):
        load_thisismyjam(jam_dump, previews, jam_to_msd=mapping, min_track_likes=-1)


# --- a design over other sources, and the open corpus's held-out tasks ---------------------------

OTHER = ("self", "bpm", "onset", "chroma", "tempogram", "timbre", "tag", "mtt")   # slot i replaces SOURCES[i]


@pytest.fixture(scope="module")
def other_runs_dir(tmp_path_factory):
    """A runs folder of the design over OTHER: SS-R networks of bpm and chroma (the tag slot), and MS-CR@2 of both."""
    runs = tmp_path_factory.mktemp("other-runs")
    grid_sources(runs, OTHER, record=True)
    for seed, (architecture, sources) in enumerate((("SS-R", ("bpm",)), ("SS-R", ("chroma",)),
                                                    ("MS-CR@2", ("bpm", "chroma"))), start=1):
        name = model_name(architecture, sources)
        save_model_file(runs / "models" / f"{name}.safetensors", _network(architecture, sources, seed),
                        random_scaler(), name=name)
    return runs


def _open_corpus(root):
    """The tables of a built open corpus: in each of test and valid, 6 soundtrack and 6 music21 tracks of 1 s."""
    t = np.arange(22050) / 22050
    manifest, metadata = [], []
    for split in ("test", "valid"):
        for i in range(12):
            corpus = "soundtrack" if i < 6 else "music21"
            label = ("game-a", "game-b")[i % 2] if corpus == "soundtrack" else ("bach", "palestrina")[i % 2]
            track_id = f"{split}{i:02d}"
            freq = 300 * (1 + i % 2) + 400 * (corpus == "music21")
            sf.write(root / f"{track_id}.wav", (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 22050)
            manifest.append({"track_id": track_id, "path": f"{track_id}.wav", "split": split})
            metadata.append({"track_id": track_id, "corpus": corpus,
                             "soundtrack": label if corpus == "soundtrack" else "",
                             "style": label if corpus == "music21" else "",
                             "bpm_label": 60 + 5 * i if corpus == "music21" else None})
    pd.DataFrame(manifest).to_csv(root / "manifest.csv", index=False)
    pd.DataFrame(metadata).to_csv(root / "metadata.csv", index=False)
    return root


def test_grid_representations_follow_the_design_of_the_runs_folder(other_runs_dir):
    files = {path.stem: path for path in (other_runs_dir / "models").iterdir()}
    reps, left_out = grid_representations(files, sources=OTHER)
    assert [rep.name for rep in reps] == ["ssr-bpm", "ssr-chroma", "mscr2-bpm-chroma", "msscr-bpm-chroma"]
    assert reps[-1].networks == ("ssr-bpm", "ssr-chroma") and len(left_out) == 78
    paper_reps, paper_left_out = grid_representations(files)
    assert "msscr-bpm-chroma" not in {rep.name for rep in paper_reps} and len(paper_left_out) == 79


def test_cli_evaluate_grid_scores_the_open_corpus_held_out_tasks(other_runs_dir, tmp_path):
    corpus = _open_corpus(tmp_path)
    results = tmp_path / "results.csv"
    args = ["evaluate-grid", str(other_runs_dir), "--open-corpus", str(corpus), "-o", str(results),
            "--cache", str(tmp_path / "cache"), "--repeats", "1", "--folds", "3", "--workers", "0", "--device", "cpu"]
    held_out = CliRunner().invoke(app, args)
    assert held_out.exit_code == 0, held_out.output
    assert "soundtrack: 6 tracks" in held_out.output and "tempo: 6 tracks" in held_out.output
    assert "78 MSS-CR representations left out" in held_out.output   # the design recorded in the runs folder
    assert "18 scored, 0 already in" in held_out.output  # (2 baselines, 3 networks, msscr-bpm-chroma) x 3 tasks
    # The validation tracks are tasks of their own, beside the held-out ones in the same table, scored
    # with DEFAULT_FOLDS["valid"] folds unless --folds says otherwise.
    without_folds = [arg for arg in args if arg not in ("--folds", "3")]
    valid = CliRunner().invoke(app, without_folds + ["--open-corpus-split", "valid"])
    assert valid.exit_code == 0, valid.output
    assert "soundtrack-valid: 6 tracks" in valid.output and "18 scored, 0 already in" in valid.output

    table = load_results(results)
    assert set(table["representation"]) == {"mfcc", "rand", "ssr-bpm", "ssr-chroma", "mscr2-bpm-chroma",
                                            "msscr-bpm-chroma"}
    splits = table.groupby(["dataset", "representation"]).size()
    assert set(splits[["soundtrack-valid", "style-valid", "tempo-valid"]]) == {DEFAULT_FOLDS["valid"]}
    assert table.loc[table["representation"] == "msscr-bpm-chroma", "sources"].unique().tolist() == ["bpm+chroma"]
    kinds = table.groupby("dataset")[["task", "metric", "n_tracks", "n_classes"]].first().to_dict("index")
    classification = {"task": "classification", "metric": "accuracy", "n_tracks": 6, "n_classes": "2"}
    regression = {"task": "regression", "metric": "r2", "n_tracks": 6, "n_classes": ""}
    assert kinds == {name + suffix: kind for suffix in ("", "-valid") for name, kind in
                     (("soundtrack", classification), ("style", classification), ("tempo", regression))}
    wrong = CliRunner().invoke(app, args + ["--open-corpus-split", "train"])
    assert wrong.exit_code == 2 and "choose test or valid" in wrong.output
