"""Tests of the experimental design: 90 networks, 169 representations, design quality."""

import csv
import hashlib
import itertools
import json

import numpy as np
import pytest

from mtlmusic.architectures import SOURCES, model_name, parse_model_name
from mtlmusic.errors import ConfigError
from mtlmusic_training import design as dz

# SHA-256 of the 90 network names, one per line, in design_runs() order. The names decide
# which networks get trained, so they must not drift between machines or versions; if this
# changes on purpose, every trained model of the study changes with it.
DESIGN_FINGERPRINT = "c41460a2fdf2e867cd751fc1be07b7807a7a2ac9ca063947226f7c4628c753aa"


@pytest.fixture(scope="module")
def runs():
    return dz.design_runs()


@pytest.fixture(scope="module")
def design(runs):
    return [run for run in runs if run.role == "design"]


def test_ninety_networks_in_three_roles(runs):
    assert len(runs) == 90
    assert [run.id for run in runs] == list(range(1, 91))
    roles = [run.role for run in runs]
    assert roles == ["design"] * 78 + ["all_sources"] * 4 + ["single_source"] * 8
    assert [(run.architecture, run.sources) for run in runs[78:82]] == [(a, SOURCES) for a in dz.DESIGN_ARCHITECTURES]
    assert [(run.architecture, run.sources) for run in runs[82:]] == [("SS-R", (s,)) for s in SOURCES]


def test_network_names_are_model_names_and_unique(runs):
    assert len({run.name for run in runs}) == 90
    for run in runs:
        assert run.name == model_name(run.architecture, run.sources)
        assert parse_model_name(run.name) == (run.architecture, run.sources)


def test_design_runs_have_two_to_seven_distinct_source_sets(design):
    assert all(run.architecture in dz.DESIGN_ARCHITECTURES for run in design)
    assert all(2 <= len(run.sources) <= 7 for run in design)
    assert len({run.sources for run in design}) == 78
    assert len({(run.architecture, run.sources) for run in design}) == 78


def test_169_representations_with_unique_names(runs, design):
    reps = dz.representations()
    assert len(reps) == 169
    assert len({rep.name for rep in reps}) == 169
    assert [rep.name for rep in reps[:90]] == [run.name for run in runs]
    msscr = reps[90:]
    assert all(rep.architecture == "MSS-CR" for rep in msscr)
    assert [rep.sources for rep in msscr] == [run.sources for run in design] + [SOURCES]
    ssr = {run.name for run in runs if run.role == "single_source"}
    for rep in msscr:
        assert rep.name == model_name("MSS-CR", rep.sources)
        assert rep.networks == tuple(f"ssr-{s}" for s in rep.sources)
        assert set(rep.networks) <= ssr
    assert all(rep.networks == (rep.name,) for rep in reps[:90])


def test_design_is_deterministic_and_pinned(runs, design):
    again = dz.optimal_design()
    assert again == [(run.architecture, run.sources) for run in design]
    assert dz.design_runs() == runs
    names = "\n".join(run.name for run in runs)
    assert hashlib.sha256(names.encode()).hexdigest() == DESIGN_FINGERPRINT


def test_design_quality_figures(design):
    quality = dz.design_quality(design)
    assert quality == dz.design_quality()
    assert quality["n_runs"] == 78
    assert quality["d_efficiency"] > 98.0
    assert quality["max_abs_corr_main"] < 0.1
    assert quality["max_abs_corr_main_2fi"] < 0.15
    assert sorted(quality["architecture_counts"].values()) == [19, 19, 20, 20]
    assert set(quality["source_counts"]) == set(SOURCES)
    assert all(36 <= count <= 42 for count in quality["source_counts"].values())
    assert sum(quality["n_sources_counts"].values()) == 78
    assert min(quality["n_sources_counts"]) >= 2 and max(quality["n_sources_counts"]) <= 7


def test_design_quality_of_the_full_factorial_is_perfect():
    full = [dz.Run(0, arch, tuple(s for s, on in zip(SOURCES, bits) if on), "", "design")
            for arch in dz.DESIGN_ARCHITECTURES for bits in itertools.product((0, 1), repeat=8)]
    quality = dz.design_quality(full)
    assert quality["d_efficiency"] == pytest.approx(100.0)
    assert quality["max_abs_corr_main"] == pytest.approx(0.0, abs=1e-12)
    assert quality["max_abs_corr_main_2fi"] == pytest.approx(0.0, abs=1e-12)
    assert set(quality["source_counts"].values()) == {512}


def test_design_quality_sees_confounding():
    # self and bpm always together: their main effects are perfectly correlated.
    runs = [dz.Run(0, arch, ("self", "bpm") + extra, "", "design")
            for arch in dz.DESIGN_ARCHITECTURES for extra in [(), ("tag",), ("year", "lyrics"), ("taste",)]]
    runs += [dz.Run(0, arch, ("cdr_tag", "artist"), "", "design") for arch in dz.DESIGN_ARCHITECTURES]
    quality = dz.design_quality(runs)
    assert quality["max_abs_corr_main"] == pytest.approx(1.0)
    assert quality["d_efficiency"] == 0.0


def test_design_quality_rejects_other_architectures(runs):
    with pytest.raises(ConfigError, match="design_quality takes runs"):
        dz.design_quality(runs)


def test_optimal_design_on_a_small_problem():
    sources = ["bpm", "year", "tag", "taste", "lyrics"]
    runs = dz.optimal_design(sources, ["MS-CR@2", "MS-CR@4", "MS-SR@FC"], 12, n_starts=3, seed=1)
    assert len(runs) == 12 and len({s for _, s in runs}) == 12
    assert all(2 <= len(s) <= 4 for _, s in runs)
    counts = [sum(arch == a for arch, _ in runs) for a in ("MS-SR@FC", "MS-CR@2", "MS-CR@4")]
    assert counts == [4, 4, 4]
    assert [arch for arch, _ in runs] == sorted((arch for arch, _ in runs),
                                                key=["MS-CR@2", "MS-CR@4", "MS-SR@FC"].index)
    assert runs == dz.optimal_design(sources, ["MS-CR@2", "MS-CR@4", "MS-SR@FC"], 12, n_starts=3, seed=1)


def test_alias_penalty_lowers_confounding_with_interactions():
    def max_corr(weight):
        chosen = dz.optimal_design(alias_weight=weight, n_starts=3)
        runs = [dz.Run(0, a, s, "", "design") for a, s in chosen]
        return dz.design_quality(runs)

    plain, penalized = max_corr(0.0), max_corr(dz.ALIAS_WEIGHT)
    assert plain["d_efficiency"] >= penalized["d_efficiency"] - 1e-9
    assert penalized["max_abs_corr_main_2fi"] < plain["max_abs_corr_main_2fi"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_runs=300), "n_runs must lie"),
    (dict(n_runs=5), "n_runs must lie"),
    (dict(architectures=["SS-R", "MS-CR@2"]), "multi-task architectures only"),
    (dict(architectures=["MS-CR@2", "mscr2"]), "Duplicate architectures"),
    (dict(min_sources=8), "min_sources"),
    (dict(n_starts=0), "n_starts"),
    (dict(alias_weight=-1.0), "alias_weight"),
])
def test_optimal_design_rejects_impossible_requests(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        dz.optimal_design(**kwargs)


def test_write_design_table(tmp_path, runs):
    path = dz.write_design_table(tmp_path / "design.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 90
    assert list(rows[0]) == ["id", "name", "architecture", "role", "n_sources", *SOURCES]
    for row, run in zip(rows, runs):
        assert int(row["id"]) == run.id and row["name"] == run.name and row["role"] == run.role
        assert tuple(s for s in SOURCES if row[s] == "1") == run.sources
        assert int(row["n_sources"]) == len(run.sources)
    assert [p.name for p in tmp_path.iterdir()] == ["design.csv"]
    membership = np.array([[int(row[s]) for s in SOURCES] for row in rows[:78]])
    assert membership.sum(axis=1).min() >= 2


# --- the design over other sources --------------------------------------------------------------

OTHER = ("self", "bpm", "onset", "chroma", "tempogram", "timbre", "tag", "mtt")   # slot i replaces SOURCES[i]


def test_other_sources_rename_the_slots_of_the_same_design(runs):
    renamed = dz.design_runs(",".join(OTHER))
    assert renamed == dz.design_runs(list(OTHER))
    slot = dict(zip(SOURCES, OTHER))
    for run, other in zip(runs, renamed):
        assert (other.id, other.architecture, other.role) == (run.id, run.architecture, run.role)
        assert set(other.sources) == {slot[s] for s in run.sources}
        assert other.name == model_name(other.architecture, other.sources)
        assert parse_model_name(other.name) == (other.architecture, other.sources)
    assert [run.name for run in renamed[82:]] == [f"ssr-{s}" for s in OTHER]
    assert renamed[0].name == "mssrfc-bpm-chroma" and runs[0].name == "mssrfc-bpm-tag"
    # "tag" is a name of both lists, in different slots: the paper's tag runs are the other design's chroma runs.
    assert [r.id for r in runs if "tag" in r.sources] == [r.id for r in renamed if "chroma" in r.sources]
    assert len({run.name for run in renamed}) == 90

    reps = dz.representations(OTHER)
    assert len(reps) == 169 and len({rep.name for rep in reps}) == 169
    assert [rep.name for rep in reps[:90]] == [run.name for run in renamed]
    paper_msscr = dz.representations()[90:]
    assert [set(rep.sources) for rep in reps[90:]] == [{slot[s] for s in rep.sources} for rep in paper_msscr]
    assert all(rep.networks == tuple(f"ssr-{s}" for s in rep.sources) for rep in reps[90:])

    quality = dz.design_quality(sources=OTHER)
    paper = dz.design_quality()
    assert quality["source_counts"] == {slot[s]: n for s, n in paper["source_counts"].items()}
    assert {k: v for k, v in quality.items() if k != "source_counts"} == \
        {k: v for k, v in paper.items() if k != "source_counts"}
    with pytest.raises(ConfigError, match="outside the design's"):
        dz.design_quality(runs[:78], sources=OTHER)


def test_write_design_table_over_other_sources(tmp_path):
    path = dz.write_design_table(tmp_path / "design.csv", OTHER)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "name", "architecture", "role", "n_sources", *OTHER]
    for row, run in zip(rows, dz.design_runs(OTHER)):
        assert row["name"] == run.name and {s for s in OTHER if row[s] == "1"} == set(run.sources)
    dz.write_design_table(path, OTHER)    # the same table again: nothing to replace
    with pytest.raises(FileExistsError, match="other contents"):
        dz.write_design_table(path)
    assert dz.write_design_table(path, overwrite=True).read_text().startswith("id,name,architecture,role,n_sources,"
                                                                             "self,bpm,year")


@pytest.mark.parametrize("sources, match", [
    (OTHER[:7], "give 8 names"),
    ((*OTHER[:7], "self"), "Duplicate sources"),
    ((*OTHER[:7], "Mtt"), "Invalid source id"),
    ("self,bpm", "give 8 names"),
])
def test_other_sources_must_be_eight_distinct_ids(sources, match):
    with pytest.raises(ConfigError, match=match):
        dz.design_runs(sources)


def test_a_runs_folder_holds_one_design(tmp_path):
    runs = tmp_path / "runs"
    assert dz.grid_sources(runs) == SOURCES and not runs.exists()  # nothing recorded without record=True
    assert dz.grid_sources(runs, OTHER, record=True) == OTHER
    assert json.loads((runs / dz.DESIGN_FILE).read_text()) == {"sources": list(OTHER)}
    assert dz.grid_sources(runs) == dz.grid_sources(runs, ",".join(OTHER)) == OTHER
    with pytest.raises(ConfigError, match="holds the grid of the sources self,bpm,onset.*one design"):
        dz.grid_sources(runs, SOURCES, record=True)
    assert json.loads((runs / dz.DESIGN_FILE).read_text()) == {"sources": list(OTHER)}

    # A folder of grid runs from before design.json existed holds the paper's design.
    old = tmp_path / "old"
    (old / "ssr-bpm").mkdir(parents=True)
    (old / "ssr-bpm" / "state.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds the grid of the sources self,bpm,year"):
        dz.grid_sources(old, OTHER)
    assert dz.grid_sources(old, record=True) == SOURCES and (old / dz.DESIGN_FILE).exists()

    (runs / dz.DESIGN_FILE).write_text('{"sources": ["self"]}')
    with pytest.raises(ConfigError, match="does not record the design's sources"):
        dz.grid_sources(runs)


def test_cli_design_over_other_sources(tmp_path):
    from typer.testing import CliRunner

    from mtlmusic_training.cli import app

    result = CliRunner().invoke(app, ["design", "-o", str(tmp_path / "design.csv"), "--sources", ",".join(OTHER)])
    assert result.exit_code == 0, result.output
    quality = json.loads(result.output[result.output.index("{"):])
    assert list(quality["source_counts"]) == list(OTHER)
    assert (tmp_path / "design.csv").read_text().splitlines()[0].endswith(",".join(OTHER))
    refused = CliRunner().invoke(app, ["design", "--sources", "self,bpm"])
    assert refused.exit_code == 2 and "give 8 names" in refused.output
