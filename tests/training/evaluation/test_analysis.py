"""The study's analysis on synthetic results tables of the 169 design representations, with known structure."""

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from mtlmusic.architectures import SOURCES, build_network, count_parameters
from mtlmusic.errors import ConfigError
from mtlmusic_training.design import representations
from mtlmusic_training.evaluation.analysis import (
    ARCHITECTURE_ORDER,
    analyze,
    best_sources,
    fit_mixed_model,
    load_results,
    markdown_table,
    parameter_count,
    rank_correlation,
    source_variance_components,
)

COLUMNS = ["representation", "architecture", "sources", "n_sources", "dataset", "score"]
SLOPES = {"GTZAN": 0.01, "Ballroom": -0.005}
TAG_EFFECT = {"GTZAN": 0.05, "Ballroom": 0.0}
BPM_EFFECT = {"GTZAN": 0.0, "Ballroom": 0.08}
FIGURES = ["fig06_single_source", "fig07_architectures", "fig08_score_vs_sources", "fig09_mixed_model",
           "fig10_std_vs_sources", "fig11_parameters", "fig12_best_source", "fig13_rank_correlation"]
TABLES = ["datasets", "scores_by_representation", "scores_by_architecture", "mixed_model_fixed",
          "mixed_model_variances", "mixed_model_effects", "variance_components", "spearman"]


def _table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


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
    _table(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def report(results_csv, tmp_path_factory):
    return analyze(results_csv, tmp_path_factory.mktemp("analysis"))


def test_analyze_writes_every_table_and_figure(report):
    out = report.files[0].parent
    names = {p.name for p in report.files}
    assert names == {p.name for p in out.iterdir()}, "analyze returns exactly what it wrote"
    assert len(names) == len(report.files) and not report.notes
    for figure in FIGURES:
        assert {f"{figure}.png", f"{figure}.csv"} <= names
        image = matplotlib.image.imread(out / f"{figure}.png")
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert len(pd.read_csv(out / f"{figure}.csv")) > 0
    for stem in TABLES:
        assert {f"{stem}.csv", f"{stem}.md"} <= names
    assert {"source_effects.csv", "mixed_model.txt"} <= names

    datasets = report.tables["datasets"]
    assert list(datasets.index) == ["GTZAN", "Ballroom"]
    assert datasets.loc["GTZAN"].tolist() == [169, "MFCC, Rand", 2]
    by_arch = report.tables["scores_by_architecture"]
    assert list(by_arch.index) == [*ARCHITECTURE_ORDER, "MFCC", "Rand"]
    assert list(by_arch.columns) == ["GTZAN", "Ballroom"]
    assert by_arch.loc["MFCC", "GTZAN"] == pytest.approx(0.55)
    assert len(report.tables["scores_by_representation"]) == 169 + 2
    assert (out / "scores_by_architecture.md").read_text().startswith("| architecture | GTZAN |")


def test_figure_data_are_the_plotted_statistics(report):
    out = report.files[0].parent
    means = report.results[~report.results["baseline"]].groupby(["dataset", "representation"]) \
        .agg(score=("score", "mean"), n_sources=("n_sources", "first")).reset_index()

    # Fig. 10: one spread per dataset and number of sources, all architectures together (8 SS-Rs at 1).
    spread = pd.read_csv(out / "fig10_std_vs_sources.csv")
    assert list(spread.columns) == ["dataset", "n_sources", "count", "std"]
    assert len(spread) == 2 * 8
    expected = means.groupby(["dataset", "n_sources"])["score"].agg(["count", "std"])
    for row in spread.itertuples():
        assert row.count == expected.loc[(row.dataset, row.n_sources), "count"]
        assert row.std == pytest.approx(expected.loc[(row.dataset, row.n_sources), "std"])
    assert spread.query("n_sources == 1")["count"].tolist() == [8, 8]

    # Fig. 12: the best single source splits the scores of each number of sources.
    best = pd.read_csv(out / "fig12_best_source.csv")
    assert best.groupby("dataset")["best_source"].first().to_dict() == {"GTZAN": "tag", "Ballroom": "bpm"}
    assert best.groupby("dataset")["count"].sum().tolist() == [169, 169]
    gtzan_5 = best.query("dataset == 'GTZAN' and n_sources == 5").set_index("with_best")["mean"]
    assert gtzan_5[True] - gtzan_5[False] == pytest.approx(TAG_EFFECT["GTZAN"], abs=0.01)

    # Fig. 9's data are the model's level effects; Fig. 7's boxes follow the architecture order.
    pd.testing.assert_frame_equal(pd.read_csv(out / "fig09_mixed_model.csv"), report.mixed_model.level_effects,
                                  check_dtype=False)
    boxes = pd.read_csv(out / "fig07_architectures.csv")
    assert boxes.query("dataset == 'GTZAN'")["architecture"].tolist() == list(ARCHITECTURE_ORDER)


def test_analysis_finds_the_synthetic_structure(report):
    fit = report.mixed_model
    assert fit.n == 2 * 169 and fit.effects.index.names == ["dataset", "architecture"] and len(fit.effects) == 2 * 6
    assert list(fit.variances.index) == ["dataset", "dataset_slope", "architecture", "architecture_slope",
                                         "cell", "cell_slope", "residual"]
    slopes = fit.level_effects.query("factor == 'dataset' and term == 'slope'").set_index("level")["estimate"]
    assert slopes["GTZAN"] > slopes["Ballroom"]

    # Table 6: the dominant source of each dataset has the largest component, bold in the Markdown.
    components = report.variance_components
    assert list(components.index) == [*SOURCES, "architecture", "residual"]
    assert components.loc[list(SOURCES)].idxmax().to_dict() == {"GTZAN": "tag", "Ballroom": "bpm"}
    markdown = (report.files[0].parent / "variance_components.md").read_text()
    assert f"| tag | **{components.loc['tag', 'GTZAN']:.4f}** |" in markdown
    tag = report.source_effects.query("dataset == 'GTZAN' and source == 'tag'")
    assert tag["effect"].item() == pytest.approx(TAG_EFFECT["GTZAN"] + SLOPES["GTZAN"], abs=0.01)

    spearman = report.spearman
    assert list(spearman.index) == ["GTZAN", "Ballroom", "mean"]
    assert spearman.loc["mean", "rho"] == pytest.approx(spearman.loc[["GTZAN", "Ballroom"], "rho"].mean())
    assert (spearman.loc[["GTZAN", "Ballroom"], "n"] == 8).all()


# Known effects of the multilevel model: fixed intercept (at the mean number of sources) and slope,
# and each dataset's and architecture's deviations from them (summing to zero; SS-R, whose networks
# all have one source, has no slope of its own).
FIXED = {"intercept": 0.5, "slope": 0.01}
DEVIATIONS = {
    ("dataset", "intercept"): {"A": 0.2, "B": -0.1, "C": 0.05, "D": -0.15},
    ("dataset", "slope"): {"A": 0.01, "B": -0.005, "C": 0.005, "D": -0.01},
    ("architecture", "intercept"): dict(zip(ARCHITECTURE_ORDER, [-0.04, 0.02, -0.02, 0.03, 0.01, 0.0])),
    ("architecture", "slope"): dict(zip(ARCHITECTURE_ORDER, [0.0, 0.002, -0.004, 0.003, 0.0, -0.001])),
}


def test_mixed_model_recovers_known_effects():
    rng = np.random.default_rng(1)
    reps = representations()
    center = np.mean([len(r.sources) for r in reps])
    rows = []
    for dataset in DEVIATIONS["dataset", "intercept"]:
        for rep in reps:
            intercept, slope = (FIXED[term] + DEVIATIONS["dataset", term][dataset]
                                + DEVIATIONS["architecture", term][rep.architecture] for term in ("intercept", "slope"))
            score = intercept + slope * (len(rep.sources) - center) + rng.normal(0, 0.005)
            rows.append((rep.name, rep.architecture, "+".join(rep.sources), len(rep.sources), dataset, score))
    fit = fit_mixed_model(load_results(_table(rows)))

    assert fit.center == pytest.approx(center)
    assert fit.fixed.loc["Intercept", "coef"] == pytest.approx(FIXED["intercept"], abs=0.002)
    assert fit.fixed.loc["x", "coef"] == pytest.approx(FIXED["slope"], abs=0.001)
    effects = fit.level_effects
    assert len(effects) == 2 * 4 + 2 * 6
    for row in effects.itertuples():
        truth = FIXED[row.term] + DEVIATIONS[row.factor, row.term][row.level]
        assert row.estimate == pytest.approx(truth, abs=0.005 if row.term == "intercept" else 0.002), row
        assert row.low <= truth <= row.high, row
    # No dataset-by-architecture effects were simulated, nor noise beyond the residual's.
    assert fit.variances.loc[["cell", "cell_slope"], "sd"].max() < 0.002
    assert fit.variances.loc["residual", "sd"] == pytest.approx(0.005, rel=0.1)


# Known variance components per dataset: (sign of the sources' effects, source SDs, architecture SD,
# residual SD). A two-level factor's SD can only be estimated from its one realized pair of effects,
# so the simulation sets the pair to -sd/sqrt(2) (without the source) and +sd/sqrt(2) (with it),
# whose standard deviation (ddof 1) is sd; the architectures' six effects are scaled to an SD of
# exactly theirs.
SPREAD = dict(zip(SOURCES, [0.012, 0.028, 0.004, 0.020, 0.032, 0.008, 0.024, 0.016]))
COMPONENTS = {
    "Up": (1, SPREAD, 0.02, 0.001),
    "Down": (-1, SPREAD, 0.02, 0.001),
    "Sparse": (1, dict(zip(SOURCES, [0.0, 0.05, 0.0, 0.02, 0.0, 0.0, 0.01, 0.0])), 0.03, 0.01),
}


def test_variance_components_recover_known_standard_deviations():
    rng = np.random.default_rng(2)
    rows = []
    for dataset, (sign, source_sd, arch_sd, residual_sd) in COMPONENTS.items():
        arch = rng.normal(size=len(ARCHITECTURE_ORDER))
        arch = dict(zip(ARCHITECTURE_ORDER, (arch - arch.mean()) / arch.std(ddof=1) * arch_sd))
        for rep in representations():
            score = 0.5 + arch[rep.architecture] + rng.normal(0, residual_sd) + sum(
                sign * sd / np.sqrt(2) * (1 if source in rep.sources else -1) for source, sd in source_sd.items())
            rows.append((rep.name, rep.architecture, "+".join(rep.sources), len(rep.sources), dataset, score))
    results = load_results(_table(rows))
    components, effects = source_variance_components(results)

    assert list(components.columns) == list(COMPONENTS)
    for dataset, (sign, source_sd, arch_sd, residual_sd) in COMPONENTS.items():
        truth = pd.Series({**source_sd, "architecture": arch_sd, "residual": residual_sd})
        error = (components[dataset] - truth).abs()
        assert (error <= 0.1 * truth + 0.003).all(), pd.DataFrame({"estimate": components[dataset], "truth": truth})
        assert components.loc["residual", dataset] == pytest.approx(residual_sd, rel=0.15)
        effect = effects[effects["dataset"] == dataset].set_index("source")["effect"]
        assert effect.to_numpy() == pytest.approx(sign * np.sqrt(2) * truth[list(SOURCES)].to_numpy(), abs=0.004)

    # With every source helping (Up), the SS-R scores rank the sources as their components do: rho 1;
    # with every source hurting (Down), in reverse: rho -1. The best SS-R is the largest (smallest) one.
    ranks, spearman = rank_correlation(results, components)
    assert spearman.loc["Up", "rho"] == pytest.approx(1.0) and spearman.loc["Down", "rho"] == pytest.approx(-1.0)
    assert spearman.loc["mean", "rho"] == pytest.approx(spearman["rho"].iloc[:3].mean())
    up = ranks[ranks["dataset"] == "Up"]
    assert (up["score_rank"] == up["component_rank"]).all() and sorted(up["score_rank"]) == list(range(1, 9))
    assert best_sources(results) == {"Up": "taste", "Down": "year", "Sparse": "bpm"}


def test_parameter_counts_match_built_networks():
    for arch, sources in [("MS-CR@2", ["self", "bpm", "tag"]), ("MSS-CR", ["year", "lyrics"]),
                          ("SS-R", ["self"]), ("MS-SR@FC", list(SOURCES)), ("MS-CR@4", ["self", "onset", "chroma"]),
                          ("MS-CR@6", ["timbre", "mtt"]), ("MSS-CR", [*SOURCES, "onset", "chroma"])]:
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
    components, effects = source_variance_components(loaded)
    assert components.empty and effects.empty


def test_markdown_table_escapes_and_formats():
    frame = pd.DataFrame({"a|b": [1.0, float("nan")], "c": ["x|y", "z"]}, index=pd.Index([1, 2], name="i"))
    assert markdown_table(frame, digits=2) == "| i | a\\|b | c |\n|---|---|---|\n| 1 | 1.00 | x\\|y |\n| 2 |  | z |\n"


# --- a design over other sources ----------------------------------------------------------------

OTHER = ("self", "bpm", "onset", "chroma", "tempogram", "timbre", "tag", "mtt")   # slot i replaces SOURCES[i]
OTHER_EFFECT = {"Tempo": "onset", "Timbre": "mtt"}   # the source that makes the difference on each dataset


def test_analysis_of_a_design_over_other_sources(tmp_path):
    rng = np.random.default_rng(3)
    rows = [(rep.name, rep.architecture, "+".join(rep.sources), len(rep.sources), dataset,
             0.5 + 0.06 * (source in rep.sources) + 0.01 * len(rep.sources) + rng.normal(0, 0.01))
            for dataset, source in OTHER_EFFECT.items() for rep in representations(OTHER)]
    rows += [(name, "", "", 0, dataset, 0.45) for dataset in OTHER_EFFECT for name in ("mfcc", "rand")]
    report = analyze(_table(rows), tmp_path)
    assert not report.notes

    canonical = ["self", "bpm", "tag", "chroma", "mtt", "onset", "tempogram", "timbre"]
    assert [c for c in report.results.columns if c in OTHER or c in SOURCES] == canonical
    components = report.variance_components
    assert list(components.index) == [*canonical, "architecture", "residual"]
    assert components.loc[canonical].idxmax().to_dict() == OTHER_EFFECT
    assert f"| mtt | {components.loc['mtt', 'Tempo']:.4f} | **{components.loc['mtt', 'Timbre']:.4f}** |" in \
        (tmp_path / "variance_components.md").read_text()
    assert best_sources(report.results) == OTHER_EFFECT
    assert (report.spearman.loc[list(OTHER_EFFECT), "n"] == 8).all()
    single = pd.read_csv(tmp_path / "fig06_single_source.csv").query("dataset == 'Tempo' and kind == 'SS-R'")
    assert single["name"].tolist() == canonical
    sizes = pd.read_csv(tmp_path / "fig11_parameters.csv").set_index(["architecture", "n_sources"])["parameters"]
    assert sizes["MS-CR@2", 8] == count_parameters(build_network("MS-CR@2", OTHER))


def test_sources_named_like_the_analysis_columns_are_refused():
    table = _table([("ssr-score", "SS-R", "score", 1, "GTZAN", 0.5)])
    with pytest.raises(ConfigError, match="names of columns the analysis uses"):
        load_results(table)
