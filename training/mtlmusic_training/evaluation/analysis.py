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

A representation may have one row per dataset (its mean score) or one row per split; every
analysis below works on the mean score of each (representation, dataset) pair, and the split rows
only add the 95 % intervals of Fig. 6.

:func:`analyze` writes everything into a folder:

- ``scores_by_representation`` and ``scores_by_architecture`` (``.csv`` and ``.md``): mean
  scores, one column per dataset;
- ``fig06_single_source.png``: each source's SS-R score per dataset, MFCC and Rand as lines;
- ``fig07_architectures.png``: boxplots of the representations of each architecture per dataset;
- ``fig08_score_vs_sources.png`` and ``fig10_std_vs_sources.png``: mean and standard deviation
  of the scores of each architecture against the number of sources;
- ``fig09_mixed_model.png`` and ``mixed_model_*`` tables: the multilevel model below;
- ``fig11_parameters.png``: network size against the number of sources;
- ``variance_components`` (``.csv``, ``.md``) and ``source_effects.csv``: Table 6.

The multilevel model (Fig. 9)
-----------------------------
Fitted by :func:`fit_mixed_model` on the mean scores of the multi-source architectures (every
architecture but SS-R, whose networks all have one source; baselines excluded), with
``x = n_sources - mean(n_sources)``::

    score ~ 1 + x + (1 + x | dataset) + (1 + x | architecture) + (1 + x | dataset:architecture)

i.e. a fixed intercept and slope, and random intercepts and slopes of ``x`` within dataset, within
architecture and within their interaction. The three grouping factors are crossed, so
:class:`statsmodels.regression.mixed_linear_model.MixedLM` gets a single group holding every row
(``groups`` constant, ``re_formula="0"``) and six variance components::

    vc_formula = {"dataset": "0 + C(dataset)",         "dataset_slope": "0 + C(dataset):x",
                  "architecture": "0 + C(architecture)", "architecture_slope": "0 + C(architecture):x",
                  "cell": "0 + C(cell)",               "cell_slope": "0 + C(cell):x"}

with ``cell = dataset:architecture``. Each component has its own variance; intercepts and slopes
are independent (statsmodels has no correlated crossed effects), and the residual variance is
common to all rows. The model is fitted by REML on ``score / sd(score)`` for numerical stability
and reported back in score units (the model is scale-equivariant). Predicted lines per dataset and
architecture add the fixed effects and the three groups' predicted random effects (BLUPs).

Variance components of the sources (Table 6)
--------------------------------------------
:func:`source_variance_components` fits, separately for each dataset, the linear model

    score ~ C(architecture) + self + bpm + year + tag + taste + cdr_tag + lyrics + artist

on the mean scores of all trained representations (baselines excluded), the sources being 0/1
membership indicators. Each source's share of variance is its type-II sum of squares (its unique
contribution given every other term) divided by the total sum of squares of the scores; the
architecture's share and the residual's are reported alongside. ``source_effects.csv`` holds each
indicator's coefficient (the score change from adding the source), its standard error and p-value.

Examples
--------
>>> from mtlmusic_training.evaluation.analysis import analyze
>>> report = analyze("results.csv", "analysis/")            # doctest: +SKIP
>>> report.mixed_model.fixed.loc["x", "coef"]               # doctest: +SKIP
0.0042
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
    "fit_mixed_model",
    "load_results",
    "markdown_table",
    "parameter_count",
    "plot_architectures",
    "plot_mixed_model",
    "plot_parameters",
    "plot_score_vs_sources",
    "plot_single_source",
    "plot_std_vs_sources",
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
_BASELINE_STYLE = {"MFCC": ("black", "--"), "Rand": ("tab:red", ":")}


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
        study source (:data:`mtlmusic.architectures.SOURCES`).

    Raises
    ------
    mtlmusic.ConfigError
        For a missing column, an unknown architecture, a non-numeric score or an ``n_sources``
        that disagrees with ``sources``.

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
        source_lists.append(tuple(sorted(sources, key=lambda s: (SOURCES.index(s) if s in SOURCES
                                                                   else len(SOURCES), s))))
    frame["architecture"] = architectures
    frame["sources"] = ["+".join(s) for s in source_lists]
    frame["n_sources"] = [len(s) for s in source_lists]
    for source in SOURCES:
        frame[source] = [int(source in s) for s in source_lists]
    return frame.reset_index(drop=True)


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


def _ordered_architectures(values) -> list[str]:
    present = set(values)
    return [a for a in ARCHITECTURE_ORDER if a in present] + sorted(present - set(ARCHITECTURE_ORDER))


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
    datasets = list(dict.fromkeys(means["dataset"]))
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


def write_table(frame: "pd.DataFrame", out_dir: str | os.PathLike, stem: str) -> list[Path]:
    """Write ``stem.csv`` and ``stem.md`` (atomically) into ``out_dir``; return their paths.

    Examples
    --------
    >>> write_table(tables["scores_by_architecture"], "analysis", "scores_by_architecture")  # doctest: +SKIP
    """
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp)
    with atomic_path(md_path) as tmp:
        tmp.write_text(markdown_table(frame))
    return [csv_path, md_path]


# ---------------------------------------------------------------------------------------------
# figures


def _panels(n: int, title: str, width: float = 4.2, height: float = 3.4):
    from matplotlib.figure import Figure

    ncols = min(3, max(n, 1))
    nrows = max(1, math.ceil(n / ncols))
    figure = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for extra in axes[n:]:
        extra.set_visible(False)
    figure.suptitle(title)
    return figure, axes[:n]


def _save(figure, out_png: str | os.PathLike) -> Path:
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    return Path(out_png)


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


def _datasets(means: "pd.DataFrame") -> list[str]:
    return list(dict.fromkeys(means["dataset"]))


def _colours(architectures) -> dict[str, object]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {a: cmap(ARCHITECTURE_ORDER.index(a) if a in ARCHITECTURE_ORDER else 6 + i)
            for i, a in enumerate(architectures)}


def plot_single_source(results: "pd.DataFrame", out_png: str | os.PathLike) -> Path:
    """Fig. 6: the SS-R score of each source per dataset (bars, 95 % intervals) with MFCC and Rand lines.

    Examples
    --------
    >>> plot_single_source(load_results("results.csv"), "fig06.png")  # doctest: +SKIP
    """
    means = representation_means(results)
    datasets = _datasets(means)
    figure, panels = _panels(len(datasets), "Single-source representations (SS-R)")
    for axes, dataset in zip(panels, datasets):
        rows = means[(means["architecture"] == "SS-R") & (means["dataset"] == dataset)]
        rows = rows.assign(order=[SOURCES.index(s) if s in SOURCES else len(SOURCES) for s in rows["sources"]])
        rows = rows.sort_values(["order", "sources"])
        positions = np.arange(len(rows))
        errors = rows["half_width"].to_numpy()
        axes.bar(positions, rows["score"], color="tab:blue", alpha=0.8,
                 yerr=None if np.all(np.isnan(errors)) else np.nan_to_num(errors), capsize=3)
        axes.set_xticks(positions, rows["sources"], rotation=45, ha="right")
        _baseline_lines(axes, means, dataset)
        low = min([*rows["score"], *means.loc[means["dataset"] == dataset, "score"]])
        high = max(means.loc[means["dataset"] == dataset, "score"])
        span = max(high - low, 1e-6)
        axes.set_ylim(low - 0.15 * span, high + 0.15 * span)
        _label_panel(axes, dataset, "score")
    return _save(figure, out_png)


def plot_architectures(results: "pd.DataFrame", out_png: str | os.PathLike) -> Path:
    """Fig. 7: boxplots of the representations' scores of each architecture, per dataset.

    Examples
    --------
    >>> plot_architectures(load_results("results.csv"), "fig07.png")  # doctest: +SKIP
    """
    means = representation_means(results)
    trained = means[~means["baseline"]]
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
    return _save(figure, out_png)


def _by_sources(results: "pd.DataFrame", statistic: str, title: str, ylabel: str,
                out_png: str | os.PathLike, points: bool) -> Path:
    means = representation_means(results)
    trained = means[~means["baseline"]]
    architectures = _ordered_architectures(trained["architecture"])
    colours = _colours(architectures)
    datasets = _datasets(means)
    figure, panels = _panels(len(datasets), title)
    for axes, dataset in zip(panels, datasets):
        rows = trained[trained["dataset"] == dataset]
        for arch in architectures:
            part = rows[rows["architecture"] == arch]
            if part.empty:
                continue
            line = part.groupby("n_sources")["score"].agg(statistic).dropna()
            if points:
                jitter = (architectures.index(arch) - len(architectures) / 2) * 0.05
                axes.scatter(part["n_sources"] + jitter, part["score"], s=8, alpha=0.35, color=colours[arch])
            if len(line):
                axes.plot(line.index, line.to_numpy(), marker="o", markersize=4, color=colours[arch], label=arch)
        if points:
            _baseline_lines(axes, means, dataset)
        _label_panel(axes, dataset, ylabel, "number of sources", "x-small")
    return _save(figure, out_png)


def plot_score_vs_sources(results: "pd.DataFrame", out_png: str | os.PathLike) -> Path:
    """Fig. 8: scores against the number of sources, one line (mean) and point cloud per architecture.

    Examples
    --------
    >>> plot_score_vs_sources(load_results("results.csv"), "fig08.png")  # doctest: +SKIP
    """
    return _by_sources(results, "mean", "Score vs number of sources", "score", out_png, points=True)


def plot_std_vs_sources(results: "pd.DataFrame", out_png: str | os.PathLike) -> Path:
    """Fig. 10: standard deviation (ddof 1) of the scores of each architecture at each number of sources.

    Examples
    --------
    >>> plot_std_vs_sources(load_results("results.csv"), "fig10.png")  # doctest: +SKIP
    """
    return _by_sources(results, "std", "Spread of scores vs number of sources", "std of scores", out_png,
                       points=False)


@lru_cache(maxsize=None)
def _parameters(architecture: str, n_sources: int, with_self: bool) -> int:
    others = [s for s in SOURCES if s != "self"]
    sources = (["self"] if with_self else []) + others[: n_sources - int(with_self)]
    with torch.device("meta"):  # shapes only: no memory, no initialization cost
        return count_parameters(build_network(architecture, sources))


def parameter_count(architecture: str, sources) -> int:
    """Trainable parameters of the network(s) behind a representation, task heads included.

    Counted with :func:`mtlmusic.architectures.count_parameters` on
    :func:`~mtlmusic.architectures.build_network` (MSS-CR: the sum of its SS-R networks), heads of
    the default size (50 outputs, the self head for ``self``). The count depends only on the
    architecture, the number of sources and whether ``self`` is one, so a network is built (on
    torch's ``meta`` device, without weights) once per such combination and its count cached.

    Examples
    --------
    >>> parameter_count("MS-SR@FC", ["self", "bpm"]) - parameter_count("MS-SR@FC", ["bpm"])
    66178
    """
    sources = tuple(sources)
    arch = canonical_architecture(architecture)
    if arch == "SS-R" and len(sources) != 1:
        raise ConfigError(f"SS-R has exactly one source, got {list(sources)}")
    if len(sources) > len(SOURCES) or not sources:
        raise ConfigError(f"cannot count parameters for {len(sources)} sources")
    return _parameters(arch, len(sources), "self" in sources)


def plot_parameters(results: "pd.DataFrame", out_png: str | os.PathLike) -> Path:
    """Fig. 11: parameter count against the number of sources, one line per architecture.

    Examples
    --------
    >>> plot_parameters(load_results("results.csv"), "fig11.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    reps = results[~results["baseline"]].drop_duplicates("representation")
    counts = reps.assign(parameters=[parameter_count(a, s.split("+"))
                                     for a, s in zip(reps["architecture"], reps["sources"])])
    architectures = _ordered_architectures(counts["architecture"])
    colours = _colours(architectures)
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for arch in architectures:
        line = counts[counts["architecture"] == arch].groupby("n_sources")["parameters"].mean()
        axes.plot(line.index, line.to_numpy() / 1e6, marker="o", color=colours[arch], label=arch)
    axes.set_xlabel("number of sources")
    axes.set_ylabel("parameters (millions)")
    axes.set_title("Network size vs number of sources")
    axes.legend(fontsize="small")
    return _save(figure, out_png)


# ---------------------------------------------------------------------------------------------
# models


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
        Index ``Intercept``, ``x``; columns ``coef``, ``se``, ``z``, ``p``.
    variances : pandas.DataFrame
        Index: the six variance components and ``residual``; column ``variance`` (score units^2).
    effects : pandas.DataFrame
        One row per (dataset, architecture): predicted ``intercept`` (at ``x = 0``) and ``slope``.
    n : int
        Rows fitted.
    converged : bool
        Whether the optimizer converged.
    warnings : list of str
        Warnings raised while fitting (boundary estimates, convergence).
    summary : str
        statsmodels' summary text.
    """

    formula: str
    center: float
    fixed: "pd.DataFrame"
    variances: "pd.DataFrame"
    effects: "pd.DataFrame"
    n: int
    converged: bool
    warnings: list[str] = field(default_factory=list)
    summary: str = ""


MIXED_FORMULA = "score ~ 1 + x + (1 + x | dataset) + (1 + x | architecture) + (1 + x | dataset:architecture)"
_VC_FORMULA = {
    "dataset": "0 + C(dataset)", "dataset_slope": "0 + C(dataset):x",
    "architecture": "0 + C(architecture)", "architecture_slope": "0 + C(architecture):x",
    "cell": "0 + C(cell)", "cell_slope": "0 + C(cell):x",
}


def fit_mixed_model(results: "pd.DataFrame") -> MixedModelFit:
    """Fit the multilevel model of the module docs (Fig. 9) on the multi-source representations.

    Raises
    ------
    mtlmusic.ConfigError
        If fewer than 3 distinct numbers of sources or too few rows remain.

    Examples
    --------
    >>> fit = fit_mixed_model(load_results("results.csv"))  # doctest: +SKIP
    >>> fit.fixed.loc["x", "coef"], fit.converged  # doctest: +SKIP
    """
    import pandas as pd
    import statsmodels.formula.api as smf

    means = representation_means(results)
    data = means[~means["baseline"] & (means["architecture"] != "SS-R")].copy()
    if data["n_sources"].nunique() < 3 or len(data) < 10:
        raise ConfigError("the mixed model needs multi-source representations with at least 3 different "
                          f"numbers of sources and 10 rows; got {len(data)} rows")
    center = float(data["n_sources"].mean())
    data["x"] = data["n_sources"] - center
    data["cell"] = data["dataset"] + ":" + data["architecture"]
    scale = float(data["score"].std(ddof=1)) or 1.0
    data["y"] = data["score"] / scale
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = smf.mixedlm("y ~ x", data, groups=np.ones(len(data)), re_formula="0", vc_formula=_VC_FORMULA)
        fit = model.fit(reml=True, method=["lbfgs", "powell"])
    fixed = pd.DataFrame({"coef": fit.fe_params * scale, "se": fit.bse_fe * scale,
                          "z": fit.tvalues[fit.fe_params.index], "p": fit.pvalues[fit.fe_params.index]})
    variances = pd.DataFrame({"variance": [*(np.asarray(fit.vcomp) * scale**2), fit.scale * scale**2]},
                             index=pd.Index([*model.exog_vc.names, "residual"], name="component"))
    blups = next(iter(fit.random_effects.values())) * scale

    def effect(factor: str, level: str, slope: bool) -> float:
        """The BLUP of one level; statsmodels names it ``component[C(factor)[level]]`` (``...:x]`` for slopes)."""
        component = f"{factor}_slope" if slope else factor
        return float(blups.get(f"{component}[C({factor})[{level}]{':x' if slope else ''}]", 0.0))

    rows = []
    for (dataset, arch), _ in data.groupby(["dataset", "architecture"], sort=False):
        cell = f"{dataset}:{arch}"
        rows.append({
            "dataset": dataset, "architecture": arch,
            "intercept": fixed.loc["Intercept", "coef"] + effect("dataset", dataset, False)
            + effect("architecture", arch, False) + effect("cell", cell, False),
            "slope": fixed.loc["x", "coef"] + effect("dataset", dataset, True)
            + effect("architecture", arch, True) + effect("cell", cell, True),
        })
    effects = pd.DataFrame(rows).set_index(["dataset", "architecture"])
    return MixedModelFit(MIXED_FORMULA, center, fixed, variances, effects, len(data), bool(fit.converged),
                         [str(w.message) for w in caught], str(fit.summary()))


def plot_mixed_model(fit: MixedModelFit, results: "pd.DataFrame", out_png: str | os.PathLike) -> Path:
    """Fig. 9: the model's predicted score lines per architecture in each dataset, over the data.

    Examples
    --------
    >>> plot_mixed_model(fit, results, "fig09.png")  # doctest: +SKIP
    """
    means = representation_means(results)
    datasets = list(dict.fromkeys(fit.effects.index.get_level_values("dataset")))
    architectures = _ordered_architectures(fit.effects.index.get_level_values("architecture"))
    colours = _colours(architectures)
    figure, panels = _panels(len(datasets), "Multilevel model: score vs number of sources")
    for axes, dataset in zip(panels, datasets):
        for arch in architectures:
            if (dataset, arch) not in fit.effects.index:
                continue
            part = means[(means["dataset"] == dataset) & (means["architecture"] == arch)]
            n = np.array([part["n_sources"].min(), part["n_sources"].max()], dtype=float)
            intercept, slope = fit.effects.loc[(dataset, arch), ["intercept", "slope"]]
            axes.scatter(part["n_sources"], part["score"], s=6, alpha=0.25, color=colours[arch])
            axes.plot(n, intercept + slope * (n - fit.center), color=colours[arch], label=arch)
        _label_panel(axes, dataset, "score", "number of sources", "x-small")
    return _save(figure, out_png)


def source_variance_components(results: "pd.DataFrame") -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """Table 6: each source's share of score variance within each dataset (see the module docs).

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        Shares (fractions of the total sum of squares), one row per dataset and one column per
        source plus ``architecture`` and ``residual``; and the long table of source effects
        (``dataset``, ``source``, ``coef``, ``se``, ``p``). A source that is constant within a
        dataset's rows gets NaN; a dataset with too few rows for the model is left out.

    Examples
    --------
    >>> shares, effects = source_variance_components(load_results("results.csv"))  # doctest: +SKIP
    >>> shares.loc["GTZAN", "tag"]  # doctest: +SKIP
    """
    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    means = representation_means(results)
    trained = means[~means["baseline"]]
    shares, effects = {}, []
    for dataset in _datasets(trained):
        rows = trained[trained["dataset"] == dataset]
        terms = [s for s in SOURCES if rows[s].nunique() > 1]
        if rows["architecture"].nunique() > 1:
            terms.insert(0, "C(architecture)")
        n_params = 1 + sum(1 for t in terms if t != "C(architecture)") + (
            rows["architecture"].nunique() - 1 if "C(architecture)" in terms else 0)
        if not terms or len(rows) <= n_params:
            continue
        fit = smf.ols("score ~ " + " + ".join(terms), data=rows).fit()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = anova_lm(fit, typ=2)
        total = float(np.sum(np.square(rows["score"] - rows["score"].mean())))
        share = {s: (table.loc[s, "sum_sq"] / total if s in table.index else math.nan) for s in SOURCES}
        share["architecture"] = table.loc["C(architecture)", "sum_sq"] / total if "C(architecture)" in table.index \
            else math.nan
        share["residual"] = table.loc["Residual", "sum_sq"] / total
        shares[dataset] = share
        for source in SOURCES:
            if source in fit.params.index:
                effects.append({"dataset": dataset, "source": source, "coef": fit.params[source],
                                "se": fit.bse[source], "p": fit.pvalues[source]})
    share_table = pd.DataFrame.from_dict(shares, orient="index")
    share_table.index.name = "dataset"
    return share_table, pd.DataFrame(effects, columns=["dataset", "source", "coef", "se", "p"])


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
        :func:`score_tables`.
    mixed_model : MixedModelFit or None
        The multilevel model; None when the results cannot support it (see ``notes``).
    variance_components : pandas.DataFrame
        Table 6 shares.
    source_effects : pandas.DataFrame
        Table 6 coefficients.
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
    ['fig06_single_source.png', 'fig07_architectures.png']
    """
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(results_csv)
    files: list[Path] = []
    notes: list[str] = []
    tables = score_tables(results)
    for stem, frame in tables.items():
        files += write_table(frame, out, stem)
    files.append(plot_single_source(results, out / "fig06_single_source.png"))
    files.append(plot_architectures(results, out / "fig07_architectures.png"))
    files.append(plot_score_vs_sources(results, out / "fig08_score_vs_sources.png"))
    files.append(plot_std_vs_sources(results, out / "fig10_std_vs_sources.png"))
    files.append(plot_parameters(results, out / "fig11_parameters.png"))
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
        files.append(plot_mixed_model(mixed, results, out / "fig09_mixed_model.png"))
    shares, effects = source_variance_components(results)
    if shares.empty:
        notes.append("variance components skipped: no dataset has enough representations")
    files += write_table(shares, out, "variance_components")
    effects_csv = out / "source_effects.csv"
    with atomic_path(effects_csv) as tmp:
        pd.DataFrame(effects).to_csv(tmp, index=False)
    files.append(effects_csv)
    return Analysis(results, tables, mixed, shares, effects, files, notes)
