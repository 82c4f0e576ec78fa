"""The study's analysis on a synthetic results table of the 169 design representations."""

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from mtlmusic.architectures import SOURCES, build_network, count_parameters
from mtlmusic.errors import ConfigError
from mtlmusic_training.evaluation.analysis import (
    analyze,
    fit_mixed_model,
    load_results,
    markdown_table,
    parameter_count,
    source_variance_components,
)
from mtlmusic_training.design import representations

SLOPES = {"GTZAN": 0.01, "Ballroom": -0.005}
TAG_EFFECT = {"GTZAN": 0.05, "Ballroom": 0.0}
BPM_EFFECT = {"GTZAN": 0.0, "Ballroom": 0.08}


@pytest.fixture(scope="module")
def results_csv(tmp_path_factory):
    """Scores with a known structure: per-dataset slope in n_sources and one dominant source per dataset."""
    rng = np.random.default_rng(0)
    rows = []
    for dataset, base in (("GTZAN", 0.6), ("Ballroom", 0.4)):
        for rep in representations():
            n = len(rep.sources)
            mean = (base + SLOPES[dataset] * n + TAG_EFFECT[dataset] * ("tag" in rep.sources)
                    + BPM_EFFECT[dataset] * ("bpm" in rep.sources))
            for _ in range(2):  # two split scores per representation
                rows.append((rep.name, rep.architecture, "+".join(rep.sources), n, dataset,
                             mean + rng.normal(0, 0.01)))
        for name, score in (("mfcc", base - 0.05), ("rand", base - 0.1)):
            rows.append((name, "", "", 0, dataset, score))
    path = tmp_path_factory.mktemp("results") / "results.csv"
    pd.DataFrame(rows, columns=["representation", "architecture", "sources", "n_sources", "dataset",
                                "score"]).to_csv(path, index=False)
    return path


def test_analyze_writes_tables_figures_and_models(results_csv, tmp_path):
    report = analyze(results_csv, tmp_path / "out")
    names = {p.name for p in report.files}
    figures = ["fig06_single_source.png", "fig07_architectures.png", "fig08_score_vs_sources.png",
               "fig09_mixed_model.png", "fig10_std_vs_sources.png", "fig11_parameters.png"]
    for figure in figures:
        assert figure in names
        image = matplotlib.image.imread(tmp_path / "out" / figure)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    for stem in ("scores_by_representation", "scores_by_architecture", "variance_components",
                 "mixed_model_fixed", "mixed_model_effects"):
        assert {f"{stem}.csv", f"{stem}.md"} <= names
    assert all(p.is_file() for p in report.files) and not report.notes

    by_arch = report.tables["scores_by_architecture"]
    assert list(by_arch.index) == ["SS-R", "MSS-CR", "MS-SR@FC", "MS-CR@2", "MS-CR@4", "MS-CR@6", "MFCC", "Rand"]
    assert list(by_arch.columns) == ["GTZAN", "Ballroom"]
    assert by_arch.loc["MFCC", "GTZAN"] == pytest.approx(0.55)
    assert len(report.tables["scores_by_representation"]) == 169 + 2
    assert (tmp_path / "out" / "scores_by_architecture.md").read_text().startswith("| architecture | GTZAN |")

    # The mixed model recovers the per-dataset slopes of the synthetic scores (plus the source effects'
    # share per extra source, on average 1/7 of them for the 7 sources besides one).
    effects = report.mixed_model.effects
    assert effects.index.names == ["dataset", "architecture"] and len(effects) == 2 * 5
    gtzan = effects.xs("GTZAN")["slope"].mean()
    ballroom = effects.xs("Ballroom")["slope"].mean()
    assert gtzan > ballroom
    assert list(report.mixed_model.variances.index) == [
        "architecture", "architecture_slope", "cell", "cell_slope", "dataset", "dataset_slope", "residual"]
    assert report.mixed_model.n == 2 * (169 - 8)

    # Table 6: the dominant source of each dataset explains the most variance.
    shares = report.variance_components
    assert shares.loc["GTZAN", list(SOURCES)].astype(float).idxmax() == "tag"
    assert shares.loc["Ballroom", list(SOURCES)].astype(float).idxmax() == "bpm"
    assert shares.loc["GTZAN", "residual"] < 0.2
    tag = report.source_effects.query("dataset == 'GTZAN' and source == 'tag'")
    assert tag["coef"].item() == pytest.approx(0.05 + SLOPES["GTZAN"], abs=0.01)


def test_parameter_counts_match_built_networks():
    for arch, sources in [("MS-CR@2", ["self", "bpm", "tag"]), ("MSS-CR", ["year", "lyrics"]),
                          ("SS-R", ["self"]), ("MS-SR@FC", list(SOURCES))]:
        assert parameter_count(arch, sources) == count_parameters(build_network(arch, sources))
    assert parameter_count("mscr2", ["bpm", "tag"]) == parameter_count("MS-CR@2", ["year", "artist"])
    with pytest.raises(ConfigError):
        parameter_count("SS-R", ["bpm", "tag"])


def test_results_are_checked():
    table = pd.DataFrame({"representation": ["mscr2-self-bpm"], "architecture": ["mscr2"],
                          "sources": ["bpm+self"], "n_sources": [3], "dataset": ["GTZAN"], "score": [0.5]})
    with pytest.raises(ConfigError, match="n_sources is 3"):
        load_results(table)
    with pytest.raises(ConfigError, match="lacks the columns"):
        load_results(table.drop(columns="score"))
    table["n_sources"] = 2
    loaded = load_results(table)
    assert loaded.loc[0, "sources"] == "self+bpm" and loaded.loc[0, "architecture"] == "MS-CR@2"
    with pytest.raises(ConfigError, match="mixed model needs"):
        fit_mixed_model(loaded)
    shares, effects = source_variance_components(loaded)
    assert shares.empty and effects.empty


def test_markdown_table_escapes_and_formats():
    frame = pd.DataFrame({"a|b": [1.0, float("nan")], "c": ["x|y", "z"]}, index=pd.Index([1, 2], name="i"))
    assert markdown_table(frame, digits=2) == "| i | a\\|b | c |\n|---|---|---|\n| 1 | 1.00 | x\\|y |\n| 2 |  | z |\n"
