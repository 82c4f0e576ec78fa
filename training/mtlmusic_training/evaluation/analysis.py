"""The study's analysis over many representations (paper section 5): tables, figures, models.

Input is a results table, one row per score, with the columns

==============  ===========================================================================
column          meaning
==============  ===========================================================================
representation  model name (``mscr2-self-bpm``...), or ``mfcc`` / ``rand`` for the baselines
architecture    ``SS-R``, ``MSS-CR``, ``MS-SR@FC``, ``MS-CR@2``, ``MS-CR@4``, ``MS-CR@6`` (names or
                codes); ignored for baselines
sources         learning sources joined by ``+`` (``self+bpm``); empty for baselines
n_sources       number of sources
dataset         evaluation dataset (``GTZAN``, ``FMA``...)
score           the protocol's metric (accuracy, R^2, AP@20)
==============  ===========================================================================

and optionally ``task``, ``metric``, ``n_tracks`` and ``n_classes``, which Table 5 reports when
present. A representation may have one row per dataset (its mean score) or one row per split;
every analysis below works on the mean score of each (representation, dataset) pair, and the split
rows only add the 95 % intervals of Fig. 6. "Trained representations" are all but the baselines.

The sources are those the table names, whatever they are (the paper's, or the eight of a design
over other sources, see :func:`~mtlmusic_training.design.design_sources`). Tables and figures list
them in canonical order, the order of model names
(:func:`~mtlmusic.architectures.canonical_sources`): the paper's sources in the paper's order, then
any other alphabetically.

:func:`analyze` writes every table and figure of the paper's section 5 into a folder, each
figure as ``.png`` with the numbers it draws as a ``.csv`` of the same name, each table as ``.csv``
and ``.md``:

========================  ========  ===============================================================
file                      paper     content
========================  ========  ===============================================================
datasets                  Table 5   per dataset: representations and baselines scored, scores per
                                    representation, and the optional columns above
scores_by_representation  --        mean score of every representation, one column per dataset
scores_by_architecture    --        mean over each architecture's representations, and baselines
fig06_single_source       Fig. 6    each source's SS-R score (bars, 95 % intervals), MFCC and Rand
fig07_architectures       Fig. 7    boxplots of the trained representations of each architecture
fig08_score_vs_sources    Fig. 8    every score against its number of sources, coloured by
                                    architecture (mean lines), the SS-Rs as black circles at 1
fig09_mixed_model         Fig. 9    the multilevel model's dataset and architecture effects
                                    (intercepts and slopes) with 95 % intervals; the model itself in
                                    ``mixed_model_fixed``, ``mixed_model_variances``,
                                    ``mixed_model_effects`` (per dataset and architecture) and
                                    ``mixed_model.txt``
fig10_std_vs_sources      Fig. 10   per dataset, the standard deviation of the scores of all
                                    trained representations with each number of sources
fig11_parameters          Fig. 11   network size against the number of sources, per architecture
fig12_best_source         Fig. 12   Fig. 8's scatter with and without the dataset's best single
                                    source (empty and filled circles)
variance_components       Table 6   each source's variance component (standard deviation, score
                                    units) per dataset; ``source_effects.csv``: the score change
                                    from adding each source
fig13_rank_correlation    Fig. 13   ranks of the sources by SS-R score against ranks by variance
                                    component, per dataset
spearman                  sec. 5.3  the Spearman correlation of those ranks per dataset, and mean
========================  ========  ===============================================================

Variance-component models
-------------------------
Fig. 9 and Table 6 both come from linear mixed models whose random effects are crossed
*variance components*: each component is a factor (or a factor times a covariate) whose levels'
effects are independent normal draws with the component's own variance, and the residual
variance is common to all rows. :class:`statsmodels.regression.mixed_linear_model.MixedLM` fits
them by REML, with one group holding every row (the factors are crossed, not nested) and one
design matrix per component; the response is divided by its standard deviation for numerical
stability and every estimate is reported back in score units (the model is scale-equivariant).
The REML likelihood of components with few levels is flat, and statsmodels' L-BFGS often stops
short of its maximum there, so the model is fitted with Powell's method and with L-BFGS and the
fit with the higher REML likelihood kept.
With the variances estimated, the fixed effects and the predicted random effects (BLUPs) solve
Henderson's mixed-model equations, whose inverted coefficient matrix (times the residual variance)
is the covariance of the fixed-effect estimates and the random effects' prediction errors: any
sum of fixed and random effects gets its standard error from it, and a 95 % interval
``estimate +- 1.96 se``. A component estimated at zero predicts zero effects without error; the
intervals do not include the uncertainty of the variances themselves.

The multilevel model (Fig. 9)
-----------------------------
Fitted by :func:`fit_mixed_model` on the mean scores of all trained representations (SS-R
included; baselines excluded), with ``x = n_sources - mean(n_sources)``::

    score ~ 1 + x + (1 + x | dataset) + (1 + x | architecture) + (1 + x | dataset:architecture)

a fixed intercept and slope, and random intercepts and slopes of ``x`` within dataset, within
architecture and within their interaction: six variance components (``dataset``,
``dataset_slope``, ``architecture``, ...). statsmodels has no correlated crossed effects, so each
intercept is independent of its slope (centring ``x`` keeps their correlation small). The SS-R
networks all have one source: their architecture's slope is left to the model's prior (a
deviation of zero, with a wide interval). Fig. 9 shows, for each dataset and each architecture,
its intercept (the score at the mean number of sources) and its slope (the change per source):
the fixed effect plus the level's BLUP, with a 95 % interval, against the fixed effect's own.

Variance components of the sources (Table 6)
--------------------------------------------
:func:`source_variance_components` fits, separately for each dataset, on the mean scores of all
trained representations::

    score ~ 1 + (1 | self) + (1 | bpm) + ... + (1 | artist) + (1 | architecture)

one factor per source of the table (the paper's eight above), each a two-level factor (the representation was learned from it or not). Table 6 is the
standard deviation of each component, the architecture's and the residual's, in score units: a
source's component is large when having it or not makes a large difference to the scores. With
two levels, a component's variance is about half the squared difference of its two effects, so
``source_effects.csv`` adds that difference (the BLUP of "with" minus "without", with its standard
error and 95 % interval). The Markdown table marks the largest source of each dataset in bold.

Best source and rank correlation (Figs. 12, 13)
-----------------------------------------------
A dataset's best source is the source of its best-scoring SS-R. Fig. 12 separates the
representations learned with it from those without, and its CSV gives the mean and standard
deviation of both per number of sources. Fig. 13 ranks the sources of each dataset by their SS-R
score (Fig. 6) and by their variance component (Table 6), 1 the highest, ties averaged; the
``spearman`` table holds each dataset's Spearman correlation of the two and their mean, the
statistic of the paper's section 5.3.

Examples
--------
>>> from mtlmusic_training.evaluation.analysis import analyze
>>> report = analyze("results.csv", "analysis/")            # doctest: +SKIP
>>> report.mixed_model.fixed.loc["x", "coef"]               # doctest: +SKIP
0.0042
>>> report.spearman.loc["mean", "rho"]                      # doctest: +SKIP
-0.06
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mtlmusic.architectures import SOURCES, build_network, canonical_architecture, count_parameters
from mtlmusic.errors import ConfigError
from mtlmusic.files import atomic_path

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ARCHITECTURE_ORDER",
    "Analysis",
    "MixedModelFit",
    "analyze",
    "best_sources",
    "dataset_table",
    "fit_mixed_model",
    "load_results",
    "markdown_table",
    "parameter_count",
    "plot_architectures",
    "plot_best_source",
    "plot_mixed_model",
    "plot_parameters",
    "plot_rank_correlation",
    "plot_score_vs_sources",
    "plot_single_source",
    "plot_std_vs_sources",
    "rank_correlation",
    "representation_means",
    "score_tables",
    "source_variance_components",
    "write_table",
]

#: Order of the architectures in tables and figures.
ARCHITECTURE_ORDER = ("SS-R", "MSS-CR", "MS-SR@FC", "MS-CR@2", "MS-CR@4", "MS-CR@6")
#: Baseline representation names and how figures label them.
BASELINES = {"mfcc": "MFCC", "rand": "Rand"}
COLUMNS = ("representation", "architecture", "sources", "n_sources", "dataset", "score")
#: Optional columns of the results table, reported per dataset in Table 5.
DATASET_COLUMNS = ("task", "metric", "n_tracks", "n_classes")
#: Columns the analysis reads or adds; no source may have their names (each source gets a 0/1 column).
_RESERVED = (*COLUMNS, *DATASET_COLUMNS, "baseline", "n_scores", "half_width")
_BASELINE_STYLE = {"MFCC": ("black", "--"), "Rand": ("tab:red", ":")}
_Z95 = 1.959963984540054  # standard normal 97.5 % quantile
#: statsmodels optimizers tried on every variance-component model; the best REML fit is kept.
_OPTIMIZERS = ("powell", "lbfgs")


# ---------------------------------------------------------------------------------------------
# the results table


def load_results(results) -> "pd.DataFrame":
    """Read and check a results table; return it with canonical architectures and source indicators.

    Parameters
    ----------
    results : path-like or pandas.DataFrame
        A CSV with the columns of the module docs, or the same as a DataFrame.

    Returns
    -------
    pandas.DataFrame
        The rows with ``architecture`` canonical (``"MFCC"`` / ``"Rand"`` for baselines), a
        ``baseline`` flag, ``sources`` as ``+``-joined canonical names, and one 0/1 column per
        source the table names, in canonical order.

    Raises
    ------
    mtlmusic.ConfigError
        For a missing column, an unknown architecture, a non-numeric score, an ``n_sources``
        that disagrees with ``sources``, or a source named like a column the analysis uses.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"representation": ["ssr-bpm", "mfcc"], "architecture": ["ssr", ""],
    ...                       "sources": ["bpm", ""], "n_sources": [1, 0], "dataset": ["GTZAN"] * 2,
    ...                       "score": [0.6, 0.5]})
    >>> load_results(table)[["architecture", "baseline", "bpm"]].values.tolist()
    [['SS-R', False, 1], ['MFCC', True, 0]]
    """
    import pandas as pd

    frame = pd.read_csv(results, keep_default_na=False) if isinstance(results, (str, os.PathLike)) \
        else results.copy()
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"the results table lacks the columns {missing}; it needs {list(COLUMNS)}")
    if frame.empty:
        raise ConfigError("the results table has no rows")
    frame["representation"] = frame["representation"].astype(str).str.strip()
    frame["dataset"] = frame["dataset"].astype(str).str.strip()
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    if frame["score"].isna().any():
        raise ConfigError(f"{int(frame['score'].isna().sum())} scores are not numbers")
    frame["baseline"] = frame["representation"].str.lower().isin(list(BASELINES))
    architectures, source_lists = [], []
    for row in frame.itertuples():
        if row.baseline:
            architectures.append(BASELINES[row.representation.lower()])
            source_lists.append(())
            continue
        architectures.append(canonical_architecture(row.architecture))
        sources = tuple(s.strip() for s in str(row.sources).split("+") if s.strip())
        try:
            n_sources = int(float(row.n_sources))
        except (TypeError, ValueError):
            n_sources = -1
        if not sources or len(sources) != n_sources:
            raise ConfigError(f"{row.representation}: n_sources is {row.n_sources} but sources are "
                              f"{str(row.sources)!r}")
        source_lists.append(tuple(sorted(sources, key=_source_order)))
    sources = sorted({s for listed in source_lists for s in listed}, key=_source_order)
    clashes = [s for s in sources if s in _RESERVED]
    if clashes:
        raise ConfigError(f"the sources {clashes} have the names of columns the analysis uses: rename them")
    frame["architecture"] = architectures
    frame["sources"] = ["+".join(s) for s in source_lists]
    frame["n_sources"] = [len(s) for s in source_lists]
    for source in sources:
        frame[source] = [int(source in s) for s in source_lists]
    return frame.reset_index(drop=True)


def _source_order(source: str) -> tuple[int, str]:
    """Sort key of the canonical order: the study's sources in :data:`SOURCES` order, then any other by name."""
    return (SOURCES.index(source) if source in SOURCES else len(SOURCES), source)


def _sources(rows: "pd.DataFrame") -> list[str]:
    """The sources the rows name, in canonical order."""
    return sorted({s for listed in rows["sources"] for s in listed.split("+") if s}, key=_source_order)


def representation_means(results: "pd.DataFrame") -> "pd.DataFrame":
    """Mean score of every (representation, dataset) pair, with ``n_scores`` and the 95 % half-width.

    ``half_width`` is the Student-t half-width of the mean over the pair's rows (NaN for one row).

    Examples
    --------
    >>> means = representation_means(load_results("results.csv"))  # doctest: +SKIP
    """
    from scipy import stats

    keys = ["representation", "dataset"]
    grouped = results.groupby(keys, sort=False)
    means = grouped.first().drop(columns="score")
    means["score"] = grouped["score"].mean()
    means["n_scores"] = grouped["score"].size()
    sd = grouped["score"].std(ddof=1)
    n = means["n_scores"]
    means["half_width"] = [stats.t.ppf(0.975, k - 1) * s / math.sqrt(k) if k > 1 else math.nan
                           for k, s in zip(n, sd)]
    return means.reset_index()


def _trained(means: "pd.DataFrame") -> "pd.DataFrame":
    return means[~means["baseline"]]


def _ordered_architectures(values) -> list[str]:
    present = set(values)
    return [a for a in ARCHITECTURE_ORDER if a in present] + sorted(present - set(ARCHITECTURE_ORDER))


def _datasets(means: "pd.DataFrame") -> list[str]:
    return list(dict.fromkeys(means["dataset"]))


def _summary(rows: "pd.DataFrame", keys: list[str], column: str, statistics) -> "pd.DataFrame":
    """``rows[column]`` summarized per ``keys``; datasets and architectures in their display order."""
    import pandas as pd

    orders = {"dataset": _datasets(rows), "architecture": _ordered_architectures(rows["architecture"])}
    rows = rows.assign(**{k: pd.Categorical(rows[k], orders[k]) for k in keys if k in orders})
    grouped = rows.groupby(keys, observed=True)[column]
    return (grouped.agg(statistics) if isinstance(statistics, list) else getattr(grouped, statistics)()).reset_index()


def dataset_table(results: "pd.DataFrame") -> "pd.DataFrame":
    """Table 5: what was scored on each dataset.

    Returns
    -------
    pandas.DataFrame
        Index ``dataset`` (in order of appearance); the optional columns ``task``, ``metric``,
        ``n_tracks``, ``n_classes`` where the results have them (first value per dataset), then
        ``representations`` (trained representations scored), ``baselines`` and
        ``scores_per_representation`` (the largest number of scores of one representation).

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"representation": ["ssr-bpm", "ssr-bpm", "mfcc"], "architecture": ["ssr", "ssr", ""],
    ...                       "sources": ["bpm", "bpm", ""], "n_sources": [1, 1, 0], "dataset": ["GTZAN"] * 3,
    ...                       "score": [0.6, 0.62, 0.5], "n_classes": [10, 10, 10]})
    >>> dataset_table(load_results(table)).reset_index().values.tolist()
    [['GTZAN', 10, 1, 'MFCC', 2]]
    """
    import pandas as pd

    means = representation_means(results)
    rows = []
    for dataset in _datasets(means):
        part = means[means["dataset"] == dataset]
        row = {"dataset": dataset, **{c: part[c].iloc[0] for c in DATASET_COLUMNS if c in part.columns}}
        row["representations"] = int((~part["baseline"]).sum())
        row["baselines"] = ", ".join(b for b in BASELINES.values() if b in set(part["architecture"]))
        row["scores_per_representation"] = int(part["n_scores"].max())
        rows.append(row)
    return pd.DataFrame(rows).set_index("dataset")


def score_tables(results: "pd.DataFrame") -> dict[str, "pd.DataFrame"]:
    """Mean scores per representation and per architecture, one column per dataset.

    Returns
    -------
    dict
        ``"scores_by_representation"``: index (representation, architecture, sources, n_sources);
        ``"scores_by_architecture"``: the mean over each architecture's representations, with the
        baselines as rows ``MFCC`` and ``Rand``.

    Examples
    --------
    >>> tables = score_tables(load_results("results.csv"))  # doctest: +SKIP
    >>> tables["scores_by_architecture"].loc["MS-CR@2", "GTZAN"]  # doctest: +SKIP
    """
    means = representation_means(results)
    datasets = _datasets(means)
    by_rep = means.pivot_table(index=["representation", "architecture", "sources", "n_sources"],
                               columns="dataset", values="score", sort=False)[datasets]
    by_arch = means.pivot_table(index="architecture", columns="dataset", values="score")[datasets]
    order = _ordered_architectures(a for a in by_arch.index if a not in BASELINES.values())
    by_arch = by_arch.reindex(order + [b for b in BASELINES.values() if b in by_arch.index])
    by_rep.columns.name = by_arch.columns.name = None
    return {"scores_by_representation": by_rep, "scores_by_architecture": by_arch}


def markdown_table(frame: "pd.DataFrame", digits: int = 4) -> str:
    """A DataFrame (index included) as a GitHub Markdown table; floats with ``digits`` decimals.

    Examples
    --------
    >>> import pandas as pd
    >>> print(markdown_table(pd.DataFrame({"GTZAN": [0.51234]}, index=pd.Index(["SS-R"], name="architecture"))), end="")
    | architecture | GTZAN |
    |---|---|
    | SS-R | 0.5123 |
    """
    index_names = [n if n is not None else "" for n in frame.index.names]

    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return "" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(str(v)) for v in [*index_names, *frame.columns]) + " |",
             "|" + "---|" * (len(index_names) + len(frame.columns))]
    for key, row in zip(frame.index, frame.itertuples(index=False)):
        keys = key if isinstance(key, tuple) else (key,)
        lines.append("| " + " | ".join(cell(v) for v in (*keys, *row)) + " |")
    return "\n".join(lines) + "\n"


def write_table(frame: "pd.DataFrame", out_dir: str | os.PathLike, stem: str,
                markdown: str | None = None) -> list[Path]:
    """Write ``stem.csv`` and ``stem.md`` (atomically) into ``out_dir``; return their paths.

    ``markdown`` replaces :func:`markdown_table`'s rendering of ``frame`` in the ``.md`` file.

    Examples
    --------
    >>> write_table(tables["scores_by_architecture"], "analysis", "scores_by_architecture")  # doctest: +SKIP
    """
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp)
    with atomic_path(md_path) as tmp:
        tmp.write_text(markdown_table(frame) if markdown is None else markdown)
    return [csv_path, md_path]


# ---------------------------------------------------------------------------------------------
# figures


def _figure(width: float, height: float):
    """A figure drawn by matplotlib's Agg canvas, whatever pyplot's backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _panels(n: int, title: str, width: float = 4.2, height: float = 3.4):
    ncols = min(3, max(n, 1))
    nrows = max(1, math.ceil(n / ncols))
    figure = _figure(width * ncols, height * nrows)
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for extra in axes[n:]:
        extra.set_visible(False)
    figure.suptitle(title)
    return figure, axes[:n]


def _save(figure, data: "pd.DataFrame", out_png: str | os.PathLike) -> list[Path]:
    """Write the figure to ``out_png`` and the numbers it draws to the ``.csv`` beside it."""
    png, csv = Path(out_png), Path(out_png).with_suffix(".csv")
    with atomic_path(png) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    with atomic_path(csv) as tmp:
        data.to_csv(tmp, index=False)
    return [png, csv]


def _label_panel(axes, title: str, ylabel: str, xlabel: str | None = None, legend_size: str = "small") -> None:
    """Title and axis labels of a panel, and its legend when something in it is labelled."""
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    if xlabel is not None:
        axes.set_xlabel(xlabel)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=legend_size)


def _baseline_lines(axes, means: "pd.DataFrame", dataset: str) -> None:
    for name, (colour, style) in _BASELINE_STYLE.items():
        rows = means[(means["architecture"] == name) & (means["dataset"] == dataset)]
        if len(rows):
            axes.axhline(rows["score"].mean(), color=colour, linestyle=style, linewidth=1.2, label=name)


def _colours(architectures) -> dict[str, object]:
    """Colour of each architecture: SS-R black (the paper's circles at one source), the others tab10."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {a: "black" if a == "SS-R" else cmap(ARCHITECTURE_ORDER.index(a) if a in ARCHITECTURE_ORDER else 6 + i)
            for i, a in enumerate(architectures)}


def _ssr_sources(means: "pd.DataFrame", dataset: str) -> "pd.DataFrame":
    """The SS-R rows of one dataset, in source order, with a ``source`` column."""
    rows = means[(means["architecture"] == "SS-R") & (means["dataset"] == dataset)]
    rows = rows.assign(source=rows["sources"])
    return rows.iloc[sorted(range(len(rows)), key=lambda i: _source_order(rows["source"].iloc[i]))]


def plot_single_source(results: "pd.DataFrame", out_png: str | os.PathLike) -> list[Path]:
    """Fig. 6: the SS-R score of each source per dataset (bars, 95 % intervals) with MFCC and Rand lines.

    The CSV has one row per bar or line: ``dataset``, ``name`` (source or baseline), ``kind``
    (``SS-R`` or ``baseline``), ``score``, ``half_width``.

    Examples
    --------
    >>> plot_single_source(load_results("results.csv"), "fig06.png")  # doctest: +SKIP
    """
    import pandas as pd

    means = representation_means(results)
    datasets = _datasets(means)
    figure, panels = _panels(len(datasets), "Single-source representations (SS-R)")
    data = []
    for axes, dataset in zip(panels, datasets):
        rows = _ssr_sources(means, dataset)
        positions = np.arange(len(rows))
        errors = rows["half_width"].to_numpy()
        axes.bar(positions, rows["score"], color="tab:blue", alpha=0.8,
                 yerr=None if np.all(np.isnan(errors)) else np.nan_to_num(errors), capsize=3)
        axes.set_xticks(positions, rows["source"], rotation=45, ha="right")
        _baseline_lines(axes, means, dataset)
        scores = means.loc[means["dataset"] == dataset, "score"]
        span = max(scores.max() - scores.min(), 1e-6)
        axes.set_ylim(scores.min() - 0.15 * span, scores.max() + 0.15 * span)
        _label_panel(axes, dataset, "score")
        baselines = means[(means["dataset"] == dataset) & means["baseline"]]
        data.append(pd.DataFrame({"dataset": dataset, "name": [*rows["source"], *baselines["architecture"]],
                                  "kind": ["SS-R"] * len(rows) + ["baseline"] * len(baselines),
                                  "score": [*rows["score"], *baselines["score"]],
                                  "half_width": [*rows["half_width"], *baselines["half_width"]]}))
    return _save(figure, pd.concat(data, ignore_index=True), out_png)


def plot_architectures(results: "pd.DataFrame", out_png: str | os.PathLike) -> list[Path]:
    """Fig. 7: boxplots of the representations' scores of each architecture, per dataset.

    The CSV has the five-number summary, mean and count of each (dataset, architecture) box.

    Examples
    --------
    >>> plot_architectures(load_results("results.csv"), "fig07.png")  # doctest: +SKIP
    """
    means = representation_means(results)
    trained = _trained(means)
    architectures = _ordered_architectures(trained["architecture"])
    datasets = _datasets(means)
    figure, panels = _panels(len(datasets), "Scores per architecture")
    for axes, dataset in zip(panels, datasets):
        rows = trained[trained["dataset"] == dataset]
        groups = [rows.loc[rows["architecture"] == a, "score"].to_numpy() for a in architectures]
        axes.boxplot(groups, tick_labels=architectures, widths=0.6)
        axes.tick_params(axis="x", labelrotation=45)
        _baseline_lines(axes, means, dataset)
        _label_panel(axes, dataset, "score")
    data = _summary(trained, ["dataset", "architecture"], "score", "describe") \
        .rename(columns={"25%": "q1", "50%": "median", "75%": "q3"}).astype({"count": int})
    return _save(figure, data, out_png)


def _jitter(architectures: list[str], arch: str) -> float:
    """Horizontal offset of an architecture's points; the SS-Rs, alone at one source, stay there."""
    multi = [a for a in architectures if a != "SS-R"]
    return 0.0 if arch == "SS-R" else (multi.index(arch) - (len(multi) - 1) / 2) * 0.07


def _scatter_by_sources(axes, rows: "pd.DataFrame", architectures: list[str], hollow=None) -> None:
    """Every score at its number of sources, jittered and coloured per architecture (SS-R black).

    ``hollow`` (a boolean Series on ``rows``) draws those points as empty circles; the others are filled.
    """
    colours = _colours(architectures)
    for arch in architectures:
        part = rows[rows["architecture"] == arch]
        empty = hollow[part.index].to_numpy() if hollow is not None else np.zeros(len(part), bool)
        x = part["n_sources"].to_numpy() + _jitter(architectures, arch)
        label = arch
        for mask, face in ((~empty, colours[arch]), (empty, "none")):
            if mask.any():
                axes.scatter(x[mask], part["score"].to_numpy()[mask], s=14, facecolors=face,
                             edgecolors=colours[arch], linewidths=0.8, alpha=0.7, label=label)
                label = None


def plot_score_vs_sources(results: "pd.DataFrame", out_png: str | os.PathLike) -> list[Path]:
    """Fig. 8: scores against the number of sources per dataset, points and mean line per architecture.

    The SS-Rs are the black circles at one source. The CSV has the ``count``, ``mean`` and
    ``std`` of the scores of each (dataset, architecture, n_sources).

    Examples
    --------
    >>> plot_score_vs_sources(load_results("results.csv"), "fig08.png")  # doctest: +SKIP
    """
    means = representation_means(results)
    trained = _trained(means)
    architectures = _ordered_architectures(trained["architecture"])
    colours = _colours(architectures)
    datasets = _datasets(means)
    figure, panels = _panels(len(datasets), "Score vs number of sources")
    for axes, dataset in zip(panels, datasets):
        rows = trained[trained["dataset"] == dataset]
        _scatter_by_sources(axes, rows, architectures)
        for arch in architectures:
            line = rows[rows["architecture"] == arch].groupby("n_sources")["score"].mean()
            if len(line) > 1:
                axes.plot(line.index, line.to_numpy(), color=colours[arch], linewidth=1.2)
        _baseline_lines(axes, means, dataset)
        _label_panel(axes, dataset, "score", "number of sources", "x-small")
    data = _summary(trained, ["dataset", "architecture", "n_sources"], "score", ["count", "mean", "std"])
    return _save(figure, data, out_png)


def plot_std_vs_sources(results: "pd.DataFrame", out_png: str | os.PathLike) -> list[Path]:
    """Fig. 10: per dataset, the standard deviation of the scores against the number of sources.

    At each number of sources, the spread (ddof 1) is over every trained representation with that
    many sources, all architectures together (the 8 SS-Rs at one source); one line per dataset.
    The CSV has ``dataset``, ``n_sources``, ``count``, ``std`` (NaN for a single representation).

    Examples
    --------
    >>> plot_std_vs_sources(load_results("results.csv"), "fig10.png")  # doctest: +SKIP
    """
    trained = _trained(representation_means(results))
    data = _summary(trained, ["dataset", "n_sources"], "score", ["count", "std"])
    figure = _figure(6.5, 4.5)
    axes = figure.add_subplot()
    for dataset, line in data.dropna(subset=["std"]).groupby("dataset", observed=True):
        axes.plot(line["n_sources"], line["std"], marker="o", markersize=4, label=dataset)
    _label_panel(axes, "Spread of scores vs number of sources", "std of scores", "number of sources", "x-small")
    return _save(figure, data, out_png)


@lru_cache(maxsize=None)
def _parameters(architecture: str, n_sources: int, with_self: bool) -> int:
    others = [f"source{i}" for i in range(n_sources - int(with_self))]  # any names: only self's head differs
    sources = (["self"] if with_self else []) + others
    with torch.device("meta"):  # shapes only: no memory, no initialization cost
        return count_parameters(build_network(architecture, sources))


def parameter_count(architecture: str, sources) -> int:
    """Trainable parameters of the network(s) behind a representation, task heads included.

    Counted with :func:`mtlmusic.architectures.count_parameters` on
    :func:`~mtlmusic.architectures.build_network` (MSS-CR: the sum of its SS-R networks), heads of
    the default size (50 outputs, the self head for ``self``), whatever the sources are. The count
    depends only on the architecture, the number of sources and whether ``self`` is one, so a
    network is built (on torch's ``meta`` device, without weights) once per such combination and its
    count cached.

    Examples
    --------
    >>> parameter_count("MS-SR@FC", ["self", "bpm"]) - parameter_count("MS-SR@FC", ["bpm"])
    66178
    >>> parameter_count("MS-CR@2", ["self", "onset", "chroma"]) == parameter_count("MS-CR@2", ["self", "bpm", "tag"])
    True
    """
    sources = tuple(sources)
    arch = canonical_architecture(architecture)
    if arch == "SS-R" and len(sources) != 1:
        raise ConfigError(f"SS-R has exactly one source, got {list(sources)}")
    if not sources or len(set(sources)) != len(sources):
        raise ConfigError(f"cannot count parameters for the sources {list(sources)}")
    return _parameters(arch, len(sources), "self" in sources)


def plot_parameters(results: "pd.DataFrame", out_png: str | os.PathLike) -> list[Path]:
    """Fig. 11: parameter count against the number of sources, one line per architecture.

    The CSV has the mean ``parameters`` of each (architecture, n_sources).

    Examples
    --------
    >>> plot_parameters(load_results("results.csv"), "fig11.png")  # doctest: +SKIP
    """
    reps = _trained(results).drop_duplicates("representation")
    counts = reps.assign(parameters=[parameter_count(a, s.split("+"))
                                     for a, s in zip(reps["architecture"], reps["sources"])])
    architectures = _ordered_architectures(counts["architecture"])
    colours = _colours(architectures)
    data = _summary(counts, ["architecture", "n_sources"], "parameters", "mean")
    figure = _figure(6, 4.5)
    axes = figure.add_subplot()
    for arch, line in data.groupby("architecture", observed=True):
        axes.plot(line["n_sources"], line["parameters"] / 1e6, marker="o", color=colours[arch], label=arch)
    _label_panel(axes, "Network size vs number of sources", "parameters (millions)", "number of sources")
    return _save(figure, data, out_png)


def best_sources(results: "pd.DataFrame") -> dict[str, str]:
    """The source of the best-scoring SS-R of each dataset that has SS-R scores.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"representation": ["ssr-bpm", "ssr-tag"], "architecture": ["ssr"] * 2,
    ...                       "sources": ["bpm", "tag"], "n_sources": [1, 1], "dataset": ["GTZAN"] * 2,
    ...                       "score": [0.6, 0.7]})
    >>> best_sources(load_results(table))
    {'GTZAN': 'tag'}
    """
    means = representation_means(results)
    best = {}
    for dataset in _datasets(means):
        rows = _ssr_sources(means, dataset)
        if len(rows):
            best[dataset] = rows["source"].iloc[int(np.argmax(rows["score"].to_numpy()))]
    return best


def plot_best_source(results: "pd.DataFrame", out_png: str | os.PathLike) -> list[Path]:
    """Fig. 12: Fig. 8's scatter with (empty circles) and without (filled) each dataset's best source.

    The best source is :func:`best_sources`'; the CSV has the ``count``, ``mean`` and ``std`` of
    the scores of each (dataset, n_sources) with and without it (``with_best``).

    Examples
    --------
    >>> plot_best_source(load_results("results.csv"), "fig12.png")  # doctest: +SKIP
    """
    trained = _trained(representation_means(results))
    best = best_sources(results)
    architectures = _ordered_architectures(trained["architecture"])
    figure, panels = _panels(len(best), "With (empty) and without (filled) the best single source")
    data = []
    for axes, (dataset, source) in zip(panels, best.items()):
        rows = trained[trained["dataset"] == dataset]
        with_best = rows[source].astype(bool)
        _scatter_by_sources(axes, rows, architectures, hollow=with_best)
        _label_panel(axes, f"{dataset} (best: {source})", "score", "number of sources", "x-small")
        summary = _summary(rows.assign(with_best=with_best), ["n_sources", "with_best"], "score",
                           ["count", "mean", "std"])
        data.append(summary.assign(dataset=dataset, best_source=source))
    columns = ["dataset", "best_source", "n_sources", "with_best", "count", "mean", "std"]
    return _save(figure, _concat(data, columns), out_png)


def _concat(frames: list["pd.DataFrame"], columns: list[str]) -> "pd.DataFrame":
    import pandas as pd

    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


# ---------------------------------------------------------------------------------------------
# variance-component models


@dataclass(eq=False)
class _ComponentsFit:
    """A REML fit of crossed variance components and its mixed-model equations (see the module docs).

    ``labels`` names the entries of ``estimate`` and the rows and columns of ``covariance``:
    ``("fixed", name)`` for a fixed effect, ``(component, level)`` for a random effect; all in
    score units.
    """

    labels: list[tuple[str, object]]
    estimate: np.ndarray
    covariance: np.ndarray
    variances: dict[str, float]
    converged: bool
    warnings: list[str]
    summary: str

    def combine(self, weights: dict) -> tuple[float, float]:
        """Estimate and standard error of ``sum(weight * effect)`` over ``{label: weight}``.

        An unknown label (a level of a component left out of the model) counts as an effect of zero.
        """
        index = {label: i for i, label in enumerate(self.labels)}
        w = np.zeros(len(self.labels))
        for label, weight in weights.items():
            if label in index:
                w[index[label]] = weight
        return float(w @ self.estimate), float(math.sqrt(max(w @ self.covariance @ w, 0.0)))


def _fit_components(data: "pd.DataFrame", fixed: list[str], components: dict[str, tuple[str, str | None]]
                    ) -> _ComponentsFit:
    """Fit ``score ~ fixed + components`` by REML with statsmodels, then solve Henderson's equations.

    Parameters
    ----------
    data : pandas.DataFrame
        Rows with a ``score`` column and the columns named below.
    fixed : list of str
        Fixed-effect covariates (columns of ``data``; ``"Intercept"`` is a column of ones).
    components : dict
        ``{name: (factor, covariate)}``: one random effect per level of the column ``factor``,
        multiplying the column ``covariate`` (None: an intercept). A component whose factor has
        one level in ``data``, or groups the rows as an earlier component with the same covariate
        does (such as dataset:architecture with one architecture), is left out, and its variance
        reported as NaN.

    Raises
    ------
    mtlmusic.ConfigError
        If no component is left, or no optimizer can fit the model.
    """
    import pandas as pd
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

    n = len(data)
    scale = float(data["score"].std(ddof=1)) or 1.0
    y = data["score"].to_numpy(float) / scale
    exog = pd.DataFrame({c: np.ones(n) if c == "Intercept" else data[c].to_numpy(float) for c in fixed})
    names, colnames, mats, labels = [], [], [], [("fixed", c) for c in fixed]
    groupings = set()
    for name, (factor, covariate) in components.items():
        levels = list(dict.fromkeys(data[factor]))
        grouping = (covariate, pd.factorize(data[factor])[0].tobytes())
        if len(levels) < 2 or grouping in groupings:
            continue
        groupings.add(grouping)
        design = (data[factor].to_numpy()[:, None] == np.array(levels, dtype=object)[None, :]).astype(float)
        if covariate is not None:
            design *= data[covariate].to_numpy(float)[:, None]
        names.append(name)
        colnames.append([[f"{name}[{level}]" for level in levels]])
        mats.append([design])
        labels += [(name, level) for level in levels]
    if not names:
        raise ConfigError(f"no random effect of {list(components)} varies over the {n} rows")
    model = MixedLM(y, exog, groups=np.zeros(n), exog_vc=VCSpec(names, colnames, mats))
    fits, errors = [], []
    for method in _OPTIMIZERS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fit = model.fit(reml=True, method=method)
            except (np.linalg.LinAlgError, ValueError) as err:
                errors.append(f"{method}: {err}")
                continue
        fits.append((fit.llf if np.isfinite(fit.llf) else -np.inf, method, fit, [str(w.message) for w in caught]))
    if not fits:
        raise ConfigError(f"the variance-component model could not be fitted: {'; '.join(errors)}")
    _, method, fit, messages = max(fits, key=lambda f: f[0])
    residual = float(fit.scale)
    component_var = np.maximum(np.asarray(fit.vcomp, dtype=float), 0.0)

    # Henderson's mixed-model equations (in units of the residual variance); a component at zero drops out.
    X = exog.to_numpy()
    Z = np.hstack([m[0] for m in mats]) if mats else np.zeros((n, 0))
    g = np.repeat(component_var, [m[0].shape[1] for m in mats])
    keep = g > 1e-8 * residual
    Zk = Z[:, keep]
    lhs = np.block([[X.T @ X, X.T @ Zk], [Zk.T @ X, Zk.T @ Zk + np.diag(residual / g[keep])]])
    inverse = np.linalg.inv(lhs)
    solution = inverse @ np.concatenate([X.T @ y, Zk.T @ y])
    kept = np.concatenate([np.ones(X.shape[1], bool), keep])
    estimate = np.zeros(len(labels))
    estimate[kept] = solution * scale
    covariance = np.zeros((len(labels), len(labels)))
    covariance[np.ix_(kept, kept)] = inverse * residual * scale**2
    variances = {name: math.nan for name in components}
    variances.update({name: float(v) * scale**2 for name, v in zip(model.exog_vc.names, component_var)})
    variances["residual"] = residual * scale**2
    return _ComponentsFit(labels, estimate, covariance, variances, bool(fit.converged), messages,
                          f"REML, optimizer {method}\n{fit.summary()}")


@dataclass(eq=False)
class MixedModelFit:
    """The multilevel model of score on number of sources (see the module docs).

    Attributes
    ----------
    formula : str
        The model, in lme4 notation.
    center : float
        The mean number of sources subtracted from ``n_sources`` (``x = n_sources - center``).
    fixed : pandas.DataFrame
        Index ``Intercept``, ``x``; columns ``coef``, ``se``, ``z``, ``p``, ``low``, ``high`` (95 %).
    variances : pandas.DataFrame
        Index: the six variance components and ``residual``; columns ``variance`` (score units^2)
        and ``sd`` (score units).
    level_effects : pandas.DataFrame
        Fig. 9: one row per ``factor`` (``dataset``, ``architecture``), ``level`` and ``term``
        (``intercept``, ``slope``): ``estimate`` (fixed effect plus the level's BLUP),
        ``deviation`` (the BLUP), ``se``, ``low``, ``high`` (95 %).
    effects : pandas.DataFrame
        One row per (dataset, architecture): predicted ``intercept`` (at ``x = 0``) and ``slope``,
        the fixed effects plus the dataset's, architecture's and cell's BLUPs.
    n : int
        Rows fitted.
    converged : bool
        Whether the optimizer converged.
    warnings : list of str
        Warnings raised while fitting (boundary estimates, convergence).
    summary : str
        The optimizer kept and statsmodels' summary of its fit.
    """

    formula: str
    center: float
    fixed: "pd.DataFrame"
    variances: "pd.DataFrame"
    level_effects: "pd.DataFrame"
    effects: "pd.DataFrame"
    n: int
    converged: bool
    warnings: list[str] = field(default_factory=list)
    summary: str = ""


MIXED_FORMULA = "score ~ 1 + x + (1 + x | dataset) + (1 + x | architecture) + (1 + x | dataset:architecture)"
_MIXED_COMPONENTS = {
    "dataset": ("dataset", None), "dataset_slope": ("dataset", "x"),
    "architecture": ("architecture", None), "architecture_slope": ("architecture", "x"),
    "cell": ("cell", None), "cell_slope": ("cell", "x"),
}
_TERMS = {"intercept": ("Intercept", ""), "slope": ("x", "_slope")}


def fit_mixed_model(results: "pd.DataFrame") -> MixedModelFit:
    """Fit the multilevel model of the module docs (Fig. 9) on the trained representations.

    Raises
    ------
    mtlmusic.ConfigError
        If fewer than 3 distinct numbers of sources or 10 rows remain, or the fit fails.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> rows = [(f"mscr2-{i}", "MS-CR@2", "+".join(["self", "bpm", "tag", "year"][:n]), n, dataset,
    ...          base + 0.02 * n + rng.normal(0, 0.005))
    ...         for dataset, base in (("GTZAN", 0.6), ("FMA", 0.4)) for i, n in enumerate([2, 3, 4] * 5)]
    >>> table = pd.DataFrame(rows, columns=["representation", "architecture", "sources", "n_sources",
    ...                                     "dataset", "score"])
    >>> fit = fit_mixed_model(load_results(table))
    >>> print(f"slope {fit.fixed.loc['x', 'coef']:.2f} from {fit.n} rows")
    slope 0.02 from 30 rows
    """
    import pandas as pd
    from scipy import stats

    data = _trained(representation_means(results)).copy()
    if data["n_sources"].nunique() < 3 or len(data) < 10:
        raise ConfigError("the mixed model needs trained representations with at least 3 different "
                          f"numbers of sources and 10 rows; got {len(data)} rows")
    center = float(data["n_sources"].mean())
    data["x"] = data["n_sources"] - center
    data["cell"] = data["dataset"] + ":" + data["architecture"]
    fit = _fit_components(data, ["Intercept", "x"], _MIXED_COMPONENTS)

    fixed_rows = {}
    for name in ("Intercept", "x"):
        coef, se = fit.combine({("fixed", name): 1.0})
        z = coef / se if se > 0 else math.nan
        fixed_rows[name] = {"coef": coef, "se": se, "z": z, "p": 2 * stats.norm.sf(abs(z)),
                            "low": coef - _Z95 * se, "high": coef + _Z95 * se}
    fixed = pd.DataFrame.from_dict(fixed_rows, orient="index")
    variances = pd.DataFrame({"variance": fit.variances})
    variances["sd"] = np.sqrt(variances["variance"])
    variances.index.name = "component"

    levels = []
    orders = {"dataset": _datasets(data), "architecture": _ordered_architectures(data["architecture"])}
    for factor, values in orders.items():
        for level in values:
            for term, (fixed_name, suffix) in _TERMS.items():
                deviation, _ = fit.combine({(factor + suffix, level): 1.0})
                estimate, se = fit.combine({("fixed", fixed_name): 1.0, (factor + suffix, level): 1.0})
                levels.append({"factor": factor, "level": level, "term": term, "estimate": estimate,
                               "deviation": deviation, "se": se, "low": estimate - _Z95 * se,
                               "high": estimate + _Z95 * se})
    cells = []
    for (dataset, arch), _ in data.groupby(["dataset", "architecture"], sort=False):
        row = {"dataset": dataset, "architecture": arch}
        for term, (fixed_name, suffix) in _TERMS.items():
            row[term] = fit.combine({("fixed", fixed_name): 1.0, ("dataset" + suffix, dataset): 1.0,
                                     ("architecture" + suffix, arch): 1.0,
                                     ("cell" + suffix, f"{dataset}:{arch}"): 1.0})[0]
        cells.append(row)
    return MixedModelFit(MIXED_FORMULA, center, fixed, variances, pd.DataFrame(levels),
                         pd.DataFrame(cells).set_index(["dataset", "architecture"]), len(data),
                         fit.converged, fit.warnings, fit.summary)


def plot_mixed_model(fit: MixedModelFit, out_png: str | os.PathLike) -> list[Path]:
    """Fig. 9: each dataset's and architecture's intercept and slope with 95 % intervals.

    Columns: intercept (the score at the mean number of sources) and slope (per source); rows:
    datasets and architectures. A grey line and band mark the fixed effect and its interval. The
    CSV is :attr:`MixedModelFit.level_effects`.

    Examples
    --------
    >>> plot_mixed_model(fit_mixed_model(load_results("results.csv")), "fig09.png")  # doctest: +SKIP
    """
    effects = fit.level_effects
    counts = [max(1, (effects["factor"] == f).sum() // 2) for f in ("dataset", "architecture")]
    figure = _figure(9, 1.2 + 0.32 * sum(counts))
    panels = figure.subplots(2, 2, squeeze=False, gridspec_kw={"height_ratios": counts})
    figure.suptitle("Multilevel model: estimated effects and 95 % intervals")
    titles = {"intercept": f"intercept (score at {fit.center:.2f} sources)", "slope": "slope (score per source)"}
    for row, factor in enumerate(("dataset", "architecture")):
        for col, (term, (fixed_name, _)) in enumerate(_TERMS.items()):
            axes = panels[row, col]
            part = effects[(effects["factor"] == factor) & (effects["term"] == term)]
            position = np.arange(len(part))[::-1]
            low, high = fit.fixed.loc[fixed_name, ["low", "high"]]
            axes.axvspan(low, high, color="0.9")
            axes.axvline(fit.fixed.loc[fixed_name, "coef"], color="0.5", linewidth=1)
            axes.errorbar(part["estimate"], position, fmt="o", color="tab:blue", markersize=4, capsize=2,
                          xerr=[part["estimate"] - part["low"], part["high"] - part["estimate"]])
            axes.set_yticks(position, part["level"])
            axes.set_title(f"{factor}: {titles[term]}", fontsize="medium")
    return _save(figure, effects, out_png)


def source_variance_components(results: "pd.DataFrame") -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """Table 6: the standard deviation of each source's variance component per dataset (module docs).

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        The components (score units), one row per source of the results (canonical order) plus
        ``architecture`` and ``residual``, and one column per dataset; and the long table of source
        effects (``dataset``, ``source``, ``effect``: the BLUP with the source minus without, ``se``,
        ``low``, ``high``). A source constant within a dataset's rows gets NaN; a dataset with fewer
        than 10 trained representations or no varying source is left out.

    Examples
    --------
    >>> components, effects = source_variance_components(load_results("results.csv"))  # doctest: +SKIP
    >>> components.loc["tag", "GTZAN"]  # doctest: +SKIP
    """
    import pandas as pd

    trained = _trained(representation_means(results))
    sources = _sources(trained)
    components, effects = {}, []
    terms = {s: (s, None) for s in sources} | {"architecture": ("architecture", None)}
    for dataset in _datasets(trained):
        rows = trained[trained["dataset"] == dataset]
        if len(rows) < 10 or not any(rows[s].nunique() > 1 for s in sources):
            continue
        fit = _fit_components(rows, ["Intercept"], terms)
        components[dataset] = {name: math.sqrt(v) for name, v in fit.variances.items()}
        for source in sources:
            if rows[source].nunique() > 1:
                effect, se = fit.combine({(source, 1): 1.0, (source, 0): -1.0})
                effects.append({"dataset": dataset, "source": source, "effect": effect, "se": se,
                                "low": effect - _Z95 * se, "high": effect + _Z95 * se})
    table = pd.DataFrame(components, index=pd.Index([*sources, "architecture", "residual"], name="component"))
    return table, _concat([pd.DataFrame(effects)] if effects else [],
                          ["dataset", "source", "effect", "se", "low", "high"])


def _components_markdown(components: "pd.DataFrame") -> str:
    """Table 6 as Markdown, like the paper: 4 decimals, ``<0.0001`` below, each dataset's largest source in bold."""
    text = components.map(lambda v: "" if math.isnan(v) else "<0.0001" if v < 5e-5 else f"{v:.4f}")
    for dataset in components.columns:
        sources = components.loc[components.index.drop(["architecture", "residual"]), dataset].dropna()
        if len(sources):
            text.loc[sources.idxmax(), dataset] = f"**{text.loc[sources.idxmax(), dataset]}**"
    return markdown_table(text)


def rank_correlation(results: "pd.DataFrame", components: "pd.DataFrame") -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """Fig. 13 and the Spearman statistic: SS-R score ranks against variance-component ranks.

    Parameters
    ----------
    results : pandas.DataFrame
        :func:`load_results`' table.
    components : pandas.DataFrame
        Table 6 (:func:`source_variance_components`).

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        One row per (dataset, source) with both: ``ssr_score``, ``component`` and their ranks
        ``score_rank``, ``component_rank`` (1 the highest, ties averaged); and per dataset the
        Spearman ``rho`` of the two and its ``p``, with ``n`` sources, plus a row ``mean`` (the mean
        rho over the datasets). A dataset with fewer than 3 such sources gets no rho.

    Examples
    --------
    >>> ranks, spearman = rank_correlation(results, source_variance_components(results)[0])  # doctest: +SKIP
    """
    import pandas as pd
    from scipy import stats

    means = representation_means(results)
    ranks, rhos = [], {}
    for dataset in components.columns:
        ssr = _ssr_sources(means, dataset).set_index("source")["score"]
        part = pd.DataFrame({"ssr_score": ssr, "component": components[dataset].reindex(ssr.index)}).dropna()
        part = part.assign(score_rank=part["ssr_score"].rank(ascending=False),
                           component_rank=part["component"].rank(ascending=False))
        ranks.append(part.rename_axis("source").reset_index().assign(dataset=dataset))
        if len(part) >= 3:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # constant input: rho is NaN
                rho, p = stats.spearmanr(part["ssr_score"], part["component"])
            rhos[dataset] = {"rho": float(rho), "p": float(p), "n": len(part)}
    spearman = pd.DataFrame.from_dict(rhos, orient="index", columns=["rho", "p", "n"])
    spearman.loc["mean"] = [spearman["rho"].mean(), math.nan, len(spearman)]
    spearman["n"] = spearman["n"].astype(int)
    spearman.index.name = "dataset"
    columns = ["dataset", "source", "ssr_score", "component", "score_rank", "component_rank"]
    return _concat(ranks, columns), spearman


def plot_rank_correlation(ranks: "pd.DataFrame", spearman: "pd.DataFrame", out_png: str | os.PathLike) -> list[Path]:
    """Fig. 13: per dataset, each source's rank by SS-R score against its rank by variance component.

    Arguments are :func:`rank_correlation`'s results; the CSV is ``ranks``.

    Examples
    --------
    >>> plot_rank_correlation(*rank_correlation(results, components), "fig13.png")  # doctest: +SKIP
    """
    datasets = _datasets(ranks)
    figure, panels = _panels(len(datasets), f"Rank of SS-R score vs rank of variance component "
                                            f"(mean Spearman rho {spearman.loc['mean', 'rho']:.3f})", 3.6, 3.4)
    for axes, dataset in zip(panels, datasets):
        part = ranks[ranks["dataset"] == dataset]
        axes.scatter(part["score_rank"], part["component_rank"], color="tab:blue", s=18)
        for row in part.itertuples():
            axes.annotate(row.source, (row.score_rank, row.component_rank), fontsize="x-small",
                          xytext=(3, 3), textcoords="offset points")
        top = max(len(part), 1) + 0.5
        axes.plot([0.5, top], [0.5, top], color="0.7", linewidth=0.8)
        axes.set_xlim(0.5, top)
        axes.set_ylim(0.5, top)
        rho = spearman["rho"].get(dataset, math.nan)
        _label_panel(axes, f"{dataset} (rho {rho:.2f})", "rank of variance component", "rank of SS-R score")
    return _save(figure, ranks, out_png)


# ---------------------------------------------------------------------------------------------
# everything


@dataclass(eq=False)
class Analysis:
    """What :func:`analyze` computed and wrote.

    Attributes
    ----------
    results : pandas.DataFrame
        The checked results table (:func:`load_results`).
    tables : dict of str to pandas.DataFrame
        :func:`score_tables`, and ``"datasets"``: :func:`dataset_table` (Table 5).
    mixed_model : MixedModelFit or None
        The multilevel model; None when the results cannot support it (see ``notes``).
    variance_components : pandas.DataFrame
        Table 6 (standard deviations, score units).
    source_effects : pandas.DataFrame
        The score change from adding each source, per dataset.
    ranks : pandas.DataFrame
        Fig. 13's ranks.
    spearman : pandas.DataFrame
        The Spearman correlation per dataset and its mean.
    files : list of pathlib.Path
        Every file written.
    notes : list of str
        Analyses that were skipped, and why.
    """

    results: "pd.DataFrame"
    tables: dict
    mixed_model: MixedModelFit | None
    variance_components: "pd.DataFrame"
    source_effects: "pd.DataFrame"
    ranks: "pd.DataFrame"
    spearman: "pd.DataFrame"
    files: list[Path]
    notes: list[str] = field(default_factory=list)


def analyze(results_csv, out_dir: str | os.PathLike) -> Analysis:
    """Run the whole analysis of a results table and write its tables and figures into ``out_dir``.

    Parameters
    ----------
    results_csv : path-like or pandas.DataFrame
        The results table (see the module docs).
    out_dir : path-like
        Output folder (created if needed); the files are listed in the module docs.

    Returns
    -------
    Analysis

    Examples
    --------
    >>> report = analyze("results.csv", "analysis")  # doctest: +SKIP
    >>> sorted(p.name for p in report.files)[:2]  # doctest: +SKIP
    ['datasets.csv', 'datasets.md']
    """
    results = load_results(results_csv)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    notes: list[str] = []
    tables = {"datasets": dataset_table(results), **score_tables(results)}
    for stem, frame in tables.items():
        files += write_table(frame, out, stem)
    files += plot_single_source(results, out / "fig06_single_source.png")
    files += plot_architectures(results, out / "fig07_architectures.png")
    files += plot_score_vs_sources(results, out / "fig08_score_vs_sources.png")
    files += plot_std_vs_sources(results, out / "fig10_std_vs_sources.png")
    files += plot_parameters(results, out / "fig11_parameters.png")
    files += plot_best_source(results, out / "fig12_best_source.png")
    try:
        mixed = fit_mixed_model(results)
    except ConfigError as err:
        mixed = None
        notes.append(f"mixed model skipped: {err}")
    if mixed is not None:
        files += write_table(mixed.fixed, out, "mixed_model_fixed")
        files += write_table(mixed.variances, out, "mixed_model_variances")
        files += write_table(mixed.effects, out, "mixed_model_effects")
        summary = out / "mixed_model.txt"
        with atomic_path(summary) as tmp:
            tmp.write_text(f"{mixed.formula}\nx = n_sources - {mixed.center:.4f}\n\n{mixed.summary}\n"
                           + "".join(f"warning: {w}\n" for w in mixed.warnings))
        files.append(summary)
        files += plot_mixed_model(mixed, out / "fig09_mixed_model.png")
    components, effects = source_variance_components(results)
    if components.empty:
        notes.append("variance components skipped: no dataset has enough representations")
    files += write_table(components, out, "variance_components", _components_markdown(components))
    effects_csv = out / "source_effects.csv"
    with atomic_path(effects_csv) as tmp:
        effects.to_csv(tmp, index=False)
    files.append(effects_csv)
    ranks, spearman = rank_correlation(results, components)
    files += plot_rank_correlation(ranks, spearman, out / "fig13_rank_correlation.png")
    files += write_table(spearman, out, "spearman")
    return Analysis(results, tables, mixed, components, effects, ranks, spearman, files, notes)
