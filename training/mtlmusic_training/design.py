"""The experimental design of the study: 90 networks to train, 169 representations to evaluate.

The paper (section 4.1) crosses two kinds of factors:

* architecture, four levels: MS-SR@FC, MS-CR@2, MS-CR@4 and MS-CR@6;
* eight binary factors, one per learning source, saying whether the source is
  among the network's learning tasks.

A full factorial would need 4 x 2^8 = 1,024 networks. The study trains 78 runs of
an optimal design instead, in which every run learns from at least two sources,
plus one run with all eight sources per architecture (82 multi-task networks),
plus one single-source network (SS-R) per source: 90 networks. MSS-CR needs no
training: it concatenates the SS-R representations of the sources of each of
the 78 design source sets and of all eight sources, 79 more representations,
169 in all.

The preprint's 78-run table is not public, so :func:`optimal_design` builds one
with a documented, deterministic algorithm:

*Model.* The main-effects model matrix ``X1`` has an intercept, ``L - 1``
Helmert contrasts for the ``L`` architectures (scaled to unit mean square over
the levels, so a balanced design has orthonormal columns up to ``n``) and one
``+1 / -1`` column per source (present / absent). The two-factor interactions
``X2`` are the products source x source and architecture contrast x source.

*Candidates.* Every architecture combined with every source set of at least
``min_sources`` sources, excluding the set of all sources (it has its own
runs). A design uses each source set at most once, so the 78 MSS-CR source sets
are distinct and every network name is unique.

*Criterion.* The design maximizes

.. math:: J = \\log\\det(X_1^\\top X_1) - w \\sum_{m, t} (x_m^\\top x_t / n)^2,

the D-criterion of the main-effects model penalized by the squared (uncentred)
correlations between every main effect ``m`` (intercept excluded) and every
two-factor interaction ``t``; ``w`` is ``alias_weight``. For a balanced
``+1 / -1`` design those terms are the entries of the alias matrix, so the
penalty keeps the main effects clear of two-factor interactions while the first
term keeps them estimable and near-orthogonal (see Jones and Nachtsheim (2011),
"Efficient designs with minimal aliasing", Technometrics 53(1)).

*Search.* A Fedorov exchange from ``n_starts`` random balanced starts (NumPy's
PCG64 generator, fixed ``seed``): at each step the single swap of a design run
for a candidate that improves ``J`` the most is made, evaluated for all pairs
at once with rank-one update formulas, until no swap improves ``J`` by more
than ``1e-9``. Swaps keep every architecture within one run of a perfectly
balanced count. Gains within ``1e-9`` of the best count as ties and go to the
first run and candidate in a fixed order, so rounding differences between
machines do not change the result. The best of the starts is kept (ties to
the earliest start).

*Other sources.* The design needs eight two-level source factors, whatever
they are. :func:`design_runs` and :func:`representations` take eight other
names for them, in the order of :data:`~mtlmusic.architectures.SOURCES`: slot
``i`` of the paper's sources becomes the ``i``-th name. The runs keep their ids,
roles, architectures and order; only their sources (and so their names) change.

Examples
--------
>>> from mtlmusic_training.design import design_runs, representations
>>> runs = design_runs()
>>> len(runs), len(representations())
(90, 169)
>>> sorted({run.role for run in runs})
['all_sources', 'design', 'single_source']
>>> open_corpus = "self,bpm,onset,chroma,tempogram,timbre,tag,mtt"
>>> [run.name for run in design_runs(open_corpus)[-6:-4]]   # the SS-R networks of the year and tag slots
['ssr-onset', 'ssr-chroma']
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from mtlmusic.architectures import SOURCES, canonical_architecture, canonical_sources, model_name
from mtlmusic.errors import ConfigError
from mtlmusic.files import atomic_path, write_texts

#: The four multi-task architectures of the optimal design, in the order of the paper.
DESIGN_ARCHITECTURES = ("MS-SR@FC", "MS-CR@2", "MS-CR@4", "MS-CR@6")
#: Number of runs of the optimal design (paper 4.1).
N_DESIGN_RUNS = 78
#: Fewest sources a multi-task run may learn from.
MIN_SOURCES = 2
#: Default weight of the aliasing penalty of the design criterion.
ALIAS_WEIGHT = 0.3
#: Default number of random starts of the exchange algorithm.
N_STARTS = 20

#: File of a runs folder that records the source names its grid was started with.
DESIGN_FILE = "design.json"

_TOL = 1e-9


@dataclass(frozen=True)
class Run:
    """One network to train.

    Attributes
    ----------
    id : int
        Position in :func:`design_runs`, from 1.
    architecture : str
        Canonical architecture name (see :data:`mtlmusic.architectures.ARCHITECTURES`).
    sources : tuple of str
        Learning sources in canonical order.
    name : str
        Model name from :func:`mtlmusic.architectures.model_name`.
    role : str
        ``'design'`` (one of the optimal-design runs), ``'all_sources'`` (a run with
        every source) or ``'single_source'`` (an SS-R network).
    """

    id: int
    architecture: str
    sources: tuple[str, ...]
    name: str
    role: str


@dataclass(frozen=True)
class Representation:
    """One representation to evaluate.

    Attributes
    ----------
    name : str
        Model name from :func:`mtlmusic.architectures.model_name`.
    architecture : str
        Canonical architecture name.
    sources : tuple of str
        Learning sources in canonical order.
    networks : tuple of str
        Names of the trained networks it is read from: the network itself, or for
        MSS-CR the SS-R network of each source, concatenated in this order.
    """

    name: str
    architecture: str
    sources: tuple[str, ...]
    networks: tuple[str, ...]


def optimal_design(sources: Sequence[str] = SOURCES,
                   architectures: Sequence[str] = DESIGN_ARCHITECTURES,
                   n_runs: int = N_DESIGN_RUNS, *, min_sources: int = MIN_SOURCES,
                   alias_weight: float = ALIAS_WEIGHT, n_starts: int = N_STARTS,
                   seed: int = 0) -> list[tuple[str, tuple[str, ...]]]:
    """Choose ``n_runs`` (architecture, source set) runs by the exchange algorithm of the module.

    Parameters
    ----------
    sources : sequence of str
        The binary source-membership factors.
    architectures : sequence of str
        The levels of the architecture factor.
    n_runs : int
        Number of runs to choose.
    min_sources : int
        Fewest sources per run.
    alias_weight : float
        Weight ``w`` of the aliasing penalty; 0 gives a plain D-optimal design.
    n_starts : int
        Number of random starts.
    seed : int
        Seed of the random starts.

    Returns
    -------
    list of (str, tuple of str)
        The runs, sorted by architecture (in the given order), then number of
        sources, then the source sets in canonical order. Source sets are distinct.

    Raises
    ------
    ConfigError
        If the factors or sizes do not allow such a design.

    Examples
    --------
    >>> runs = optimal_design(["bpm", "year", "tag", "taste", "lyrics"], ["MS-CR@2", "MS-CR@4"], 8, n_starts=2)
    >>> len(runs), len({sources for _, sources in runs}), runs[0][0]
    (8, 8, 'MS-CR@2')
    """
    sources = canonical_sources(sources)
    architectures = tuple(canonical_architecture(a) for a in architectures)
    if len(set(architectures)) != len(architectures):
        raise ConfigError(f"Duplicate architectures in {list(architectures)}.")
    if "SS-R" in architectures or "MSS-CR" in architectures:
        raise ConfigError("The design covers multi-task architectures only; SS-R and MSS-CR runs follow from it.")
    if not isinstance(n_starts, int) or n_starts < 1:
        raise ConfigError(f"n_starts must be a positive integer, got {n_starts!r}.")
    if alias_weight < 0:
        raise ConfigError(f"alias_weight must be >= 0, got {alias_weight!r}.")
    subsets = _candidate_subsets(len(sources), min_sources)
    n_levels = len(architectures)
    n_params = 1 + (n_levels - 1) + len(sources)
    if not n_params <= n_runs <= len(subsets):
        raise ConfigError(f"n_runs must lie between {n_params} (parameters of the main-effects model) and "
                          f"{len(subsets)} (distinct source sets of {min_sources} to {len(sources) - 1} sources), "
                          f"got {n_runs}.")
    # The matrices are small: one BLAS thread is fastest and keeps sums in a fixed order.
    with threadpool_limits(limits=1, user_api="blas"):
        rows = _exchange_search(subsets, n_levels, n_runs, alias_weight, n_starts, seed)
    cand_arch, cand_subset = np.divmod(rows, len(subsets))
    runs = [(architectures[a], tuple(s for s, on in zip(sources, subsets[k]) if on))
            for a, k in zip(cand_arch, cand_subset)]
    order = {s: i for i, s in enumerate(sources)}
    return sorted(runs, key=lambda run: (architectures.index(run[0]), len(run[1]),
                                         [order[s] for s in run[1]]))


def design_sources(sources: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """The names of the design's eight source factors, in the order of :data:`~mtlmusic.architectures.SOURCES`.

    Parameters
    ----------
    sources : str or sequence of str, optional
        Eight distinct source ids (a sequence, or one string joined by commas); default
        the paper's :data:`~mtlmusic.architectures.SOURCES`.

    Returns
    -------
    tuple of str
        The names in the order given: the ``i``-th replaces ``SOURCES[i]``.

    Raises
    ------
    ConfigError
        Unless there are exactly eight distinct valid source ids.

    Examples
    --------
    >>> design_sources("self,bpm,onset,chroma,tempogram,timbre,tag,mtt")[2:4]
    ('onset', 'chroma')
    >>> design_sources() == SOURCES
    True
    """
    if sources is None:
        return SOURCES
    names = tuple(s.strip() for s in sources.split(",")) if isinstance(sources, str) else tuple(sources)
    if len(names) != len(SOURCES):
        raise ConfigError(f"The design has {len(SOURCES)} source factors ({', '.join(SOURCES)}); "
                          f"give {len(SOURCES)} names for them, in this order, not {len(names)}: {list(names)}.")
    canonical_sources(names)  # valid, distinct ids
    return names


def design_runs(sources: str | Sequence[str] | None = None) -> list[Run]:
    """The 90 networks of the study, in a fixed order.

    Ids 1-78 are the optimal-design runs (:func:`optimal_design` with its defaults),
    79-82 the all-source run of each design architecture, 83-90 the SS-R network of
    each source. The same list comes back on every call and every machine.

    Parameters
    ----------
    sources : str or sequence of str, optional
        Eight names for the design's source factors (see :func:`design_sources`); default
        the paper's. Ids, roles and architectures stay; sources and names follow.

    Returns
    -------
    list of Run

    Examples
    --------
    >>> runs = design_runs()
    >>> runs[78].name
    'mssrfc-self-bpm-year-tag-taste-cdr_tag-lyrics-artist'
    >>> runs[-1].name, runs[-1].role
    ('ssr-artist', 'single_source')
    >>> design_runs("self,bpm,onset,chroma,tempogram,timbre,tag,mtt")[-1].name
    'ssr-mtt'
    """
    return list(_design_runs(design_sources(sources)))


def representations(sources: str | Sequence[str] | None = None) -> list[Representation]:
    """The 169 representations of the study: one per network, plus 79 MSS-CR concatenations.

    MSS-CR representations come for each source set of the 78 design runs and for
    all eight sources, built from the SS-R networks of :func:`design_runs`.

    Parameters
    ----------
    sources : str or sequence of str, optional
        Eight names for the design's source factors (see :func:`design_sources`).

    Returns
    -------
    list of Representation
        The 90 network representations in :func:`design_runs` order, then the MSS-CR ones.

    Examples
    --------
    >>> reps = representations()
    >>> reps[-1].name
    'msscr-self-bpm-year-tag-taste-cdr_tag-lyrics-artist'
    >>> reps[-1].networks[:2]
    ('ssr-self', 'ssr-bpm')
    """
    sources = design_sources(sources)
    runs = _design_runs(sources)
    reps = [Representation(run.name, run.architecture, run.sources, (run.name,)) for run in runs]
    source_sets = [run.sources for run in runs if run.role == "design"] + [canonical_sources(sources)]
    for source_set in source_sets:
        reps.append(Representation(model_name("MSS-CR", source_set), "MSS-CR", source_set,
                                   tuple(model_name("SS-R", [s]) for s in source_set)))
    return reps


def design_quality(runs: Iterable[Run] | None = None, sources: str | Sequence[str] | None = None) -> dict:
    """Efficiency, orthogonality and balance of a set of multi-task runs.

    Parameters
    ----------
    runs : iterable of Run, optional
        Runs whose architectures are among :data:`DESIGN_ARCHITECTURES` and whose
        sources are among ``sources``; default the 78 optimal-design runs.
    sources : str or sequence of str, optional
        The eight source factors (see :func:`design_sources`); default the paper's.

    Returns
    -------
    dict
        ``n_runs``; ``d_efficiency``: ``100 det(X1'X1)^(1/p) / n`` for the
        main-effects model matrix ``X1`` of the module (100 for an orthogonal,
        balanced design); ``max_abs_corr_main``: the largest absolute Pearson
        correlation between two main-effect columns; ``max_abs_corr_main_2fi``:
        the same between a main-effect column and a two-factor interaction column;
        ``source_counts`` and ``architecture_counts``: how many runs include each
        source and use each architecture; ``n_sources_counts``: how many runs have
        each number of sources. Correlations with a constant column count as 0.

    Raises
    ------
    ConfigError
        If a run has another architecture or source.

    Examples
    --------
    >>> quality = design_quality()
    >>> quality["n_runs"], sorted(quality["architecture_counts"].values())
    (78, [19, 19, 20, 20])
    """
    sources = design_sources(sources)
    runs = [run for run in _design_runs(sources) if run.role == "design"] if runs is None else list(runs)
    if not runs:
        raise ConfigError("design_quality needs at least one run.")
    arch_index, membership = [], []
    for run in runs:
        if run.architecture not in DESIGN_ARCHITECTURES:
            raise ConfigError(f"Run {run.name!r}: design_quality takes runs of "
                              f"{', '.join(DESIGN_ARCHITECTURES)} only.")
        unknown = set(run.sources) - set(sources)
        if unknown:
            raise ConfigError(f"Run {run.name!r} has sources outside the design's: {sorted(unknown)}.")
        arch_index.append(DESIGN_ARCHITECTURES.index(run.architecture))
        membership.append([s in run.sources for s in sources])
    x1, x2 = _model_matrices(np.array(arch_index), np.array(membership, dtype=bool), len(DESIGN_ARCHITECTURES))
    n, p = x1.shape
    sign, logdet = np.linalg.slogdet(x1.T @ x1)
    d_eff = 100.0 * float(np.exp(logdet / p)) / n if sign > 0 else 0.0
    corr = _correlations(np.column_stack([x1[:, 1:], x2]))
    n_main = p - 1
    main = np.abs(corr[:n_main, :n_main] - np.eye(n_main))
    cross = np.abs(corr[:n_main, n_main:])
    n_sources = Counter(len(run.sources) for run in runs)
    return {
        "n_runs": n,
        "d_efficiency": d_eff,
        "max_abs_corr_main": float(main.max()) if n_main > 1 else 0.0,
        "max_abs_corr_main_2fi": float(cross.max()),
        "source_counts": {s: int(c) for s, c in zip(sources, np.sum(membership, axis=0))},
        "architecture_counts": {a: arch_index.count(i) for i, a in enumerate(DESIGN_ARCHITECTURES)},
        "n_sources_counts": dict(sorted(n_sources.items())),
    }


def write_design_table(path: str | os.PathLike, sources: str | Sequence[str] | None = None, *,
                       overwrite: bool = False) -> Path:
    """Write the 90 networks of :func:`design_runs` as CSV.

    Columns: ``id, name, architecture, role, n_sources`` and one 0/1 column per
    source, in the design's order. The file is written atomically; a file there with
    another table is replaced only with ``overwrite`` (:func:`mtlmusic.files.write_texts`).

    Parameters
    ----------
    path : str or path-like
        Destination file.
    sources : str or sequence of str, optional
        The eight source factors (see :func:`design_sources`); default the paper's.
    overwrite : bool, default False
        Replace a file that holds another table.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    FileExistsError
        For a file of other contents, without ``overwrite``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = write_design_table(pathlib.Path(tempfile.mkdtemp()) / "design.csv")
    >>> len(out.read_text().splitlines())
    91
    """
    sources = design_sources(sources)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["id", "name", "architecture", "role", "n_sources", *sources])
    for run in _design_runs(sources):
        writer.writerow([run.id, run.name, run.architecture, run.role, len(run.sources),
                         *(int(s in run.sources) for s in sources)])
    write_texts({path: table.getvalue()}, overwrite=overwrite)
    return Path(path)


def grid_sources(runs_dir: str | os.PathLike, sources: str | Sequence[str] | None = None, *,
                 record: bool = False) -> tuple[str, ...]:
    """The design's source names for the grid in ``runs_dir``: those its :data:`DESIGN_FILE` records.

    A runs folder holds the networks of one design. Its ``design.json`` (``{"sources": [...]}``)
    records the names the grid was started with; a folder with grid runs (``*/state.json``) but no
    such file was started before the file existed, with the paper's sources.

    Parameters
    ----------
    runs_dir : str or path-like
        The runs folder of ``mtlmusic-train grid``.
    sources : str or sequence of str, optional
        The names asked for (see :func:`design_sources`); default those recorded, else the paper's.
    record : bool
        Write ``design.json`` (atomically) when the folder has none.

    Returns
    -------
    tuple of str

    Raises
    ------
    ConfigError
        If ``sources`` differ from the names the folder's grid was started with.

    Examples
    --------
    >>> import tempfile
    >>> runs = tempfile.mkdtemp()
    >>> grid_sources(runs, "self,bpm,onset,chroma,tempogram,timbre,tag,mtt", record=True)[2]
    'onset'
    >>> grid_sources(runs)[2]
    'onset'
    """
    runs_dir = Path(runs_dir)
    path = runs_dir / DESIGN_FILE
    if path.exists():
        try:
            recorded = design_sources(json.loads(path.read_text(encoding="utf-8"))["sources"])
        except (ValueError, KeyError, TypeError, ConfigError) as err:
            raise ConfigError(f"{path} does not record the design's sources ({err}); "
                              "remove it or use another runs folder.") from err
    elif any(runs_dir.glob("*/state.json")):
        recorded = SOURCES
    else:
        recorded = None
    asked = None if sources is None else design_sources(sources)
    if recorded is not None and asked not in (None, recorded):
        raise ConfigError(f"{runs_dir} holds the grid of the sources {','.join(recorded)}, not "
                          f"{','.join(asked)}: one runs folder holds one design; use another folder.")
    chosen = recorded or asked or SOURCES
    if record and not path.exists():
        runs_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"sources": list(chosen)}) + "\n", encoding="utf-8")
    return chosen


@functools.lru_cache(maxsize=1)
def _paper_runs() -> tuple[Run, ...]:
    specs = [(arch, sources, "design") for arch, sources in optimal_design()]
    specs += [(arch, SOURCES, "all_sources") for arch in DESIGN_ARCHITECTURES]
    specs += [("SS-R", (source,), "single_source") for source in SOURCES]
    return tuple(Run(i, arch, sources, model_name(arch, sources), role)
                 for i, (arch, sources, role) in enumerate(specs, start=1))


@functools.lru_cache(maxsize=None)
def _design_runs(sources: tuple[str, ...]) -> tuple[Run, ...]:
    """The paper's runs with slot ``i`` of :data:`SOURCES` renamed ``sources[i]``."""
    renamed = dict(zip(SOURCES, sources))
    runs = []
    for run in _paper_runs():
        run_sources = canonical_sources(renamed[s] for s in run.sources)
        runs.append(Run(run.id, run.architecture, run_sources, model_name(run.architecture, run_sources), run.role))
    return tuple(runs)


def _candidate_subsets(n_sources: int, min_sources: int) -> np.ndarray:
    """Boolean (n_subsets, n_sources) of the source sets with min_sources .. n_sources - 1 members."""
    if not 1 <= min_sources < n_sources:
        raise ConfigError(f"min_sources must lie between 1 and {n_sources - 1} (the number of sources less one), "
                          f"got {min_sources}.")
    subsets = [bits for bits in itertools.product((False, True), repeat=n_sources)
               if min_sources <= sum(bits) < n_sources]
    return np.array(subsets, dtype=bool)


def _helmert(n_levels: int) -> np.ndarray:
    """(n_levels, n_levels - 1) Helmert contrasts, each column of unit mean square over the levels."""
    contrasts = np.zeros((n_levels, n_levels - 1))
    for k in range(1, n_levels):
        contrasts[:k, k - 1] = 1.0
        contrasts[k, k - 1] = -float(k)
    return contrasts / np.sqrt(np.mean(contrasts ** 2, axis=0))


def _model_matrices(arch_index: np.ndarray, membership: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Main-effects matrix (intercept, architecture contrasts, sources) and two-factor interactions."""
    arch = _helmert(n_levels)[arch_index]
    src = np.where(membership, 1.0, -1.0)
    x1 = np.column_stack([np.ones(len(arch_index)), arch, src])
    pairs = itertools.combinations(range(src.shape[1]), 2)
    source_source = [src[:, i] * src[:, j] for i, j in pairs]
    arch_source = [arch[:, k] * src[:, j] for k in range(arch.shape[1]) for j in range(src.shape[1])]
    return x1, np.column_stack(source_source + arch_source)


def _correlations(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0)
    norms = np.sqrt(np.sum(centred ** 2, axis=0))
    constant = norms <= _TOL * np.sqrt(len(x))
    scaled = np.where(constant, 0.0, centred / np.where(constant, 1.0, norms))
    return scaled.T @ scaled


def _exchange_search(subsets: np.ndarray, n_levels: int, n_runs: int, alias_weight: float,
                     n_starts: int, seed: int) -> np.ndarray:
    """Best design (candidate indices ``level * n_subsets + subset``) over random starts."""
    n_subsets = len(subsets)
    cand_level = np.repeat(np.arange(n_levels), n_subsets)
    cand_subset = np.tile(np.arange(n_subsets), n_levels)
    x1, x2 = _model_matrices(cand_level, np.tile(subsets, (n_levels, 1)), n_levels)
    rng = np.random.default_rng(seed)
    best_rows, best_score = None, -np.inf
    for _ in range(n_starts):
        levels = (np.arange(n_runs) % n_levels)[np.argsort(rng.random(n_runs), kind="stable")]
        chosen = np.argsort(rng.random(n_subsets), kind="stable")[:n_runs]
        rows = levels * n_subsets + chosen
        if np.linalg.matrix_rank(x1[rows]) < x1.shape[1]:
            continue
        rows = _exchange(rows, x1, x2, cand_level, cand_subset, n_levels, alias_weight)
        score = _criterion(rows, x1, x2, alias_weight)
        if score > best_score + _TOL:
            best_rows, best_score = rows, score
    if best_rows is None:
        raise ConfigError(f"No random start of {n_runs} runs could estimate the main effects; "
                          "use more runs or more starts.")
    return best_rows


def _criterion(rows: np.ndarray, x1: np.ndarray, x2: np.ndarray, alias_weight: float) -> float:
    d1 = x1[rows]
    cross = d1[:, 1:].T @ x2[rows]
    return float(np.linalg.slogdet(d1.T @ d1)[1] - alias_weight * np.sum(cross ** 2) / len(rows) ** 2)


def _exchange(rows: np.ndarray, x1: np.ndarray, x2: np.ndarray, cand_level: np.ndarray,
              cand_subset: np.ndarray, n_levels: int, alias_weight: float) -> np.ndarray:
    """Fedorov exchange from ``rows`` until no single swap improves the criterion."""
    rows = rows.copy()
    n = len(rows)
    low, high = n // n_levels, -(-n // n_levels)
    main = x1[:, 1:]
    sq_norms = np.sum(main ** 2, axis=1) * np.sum(x2 ** 2, axis=1)
    while True:
        design = x1[rows]
        inv = np.linalg.inv(design.T @ design)
        scaled = x1 @ inv
        var_cand = np.sum(scaled * x1, axis=1)
        var_design = var_cand[rows]
        covar = scaled[rows] @ x1.T
        # det(M - x_i x_i' + x_j x_j') / det(M) for every design run i and candidate j.
        ratio = (1.0 + var_cand)[None, :] * (1.0 - var_design)[:, None] + covar ** 2
        cross = main[rows].T @ x2[rows]
        quad = np.sum((main @ cross) * x2, axis=1)
        # Change of sum((x1_m' x2_t)^2) when run i gives way to candidate j.
        alias_change = (sq_norms[rows][:, None] + sq_norms[None, :] - 2.0 * quad[rows][:, None]
                        + 2.0 * quad[None, :] - 2.0 * (main[rows] @ main.T) * (x2[rows] @ x2.T))
        with np.errstate(divide="ignore"):
            gain = np.log(np.maximum(ratio, 0.0)) - alias_weight * alias_change / n ** 2
        used = np.zeros(cand_subset.max() + 1, dtype=bool)
        used[cand_subset[rows]] = True
        level_count = np.bincount(cand_level[rows], minlength=n_levels)
        run_level = cand_level[rows][:, None]
        allowed = ~used[cand_subset][None, :] | (cand_subset[None, :] == cand_subset[rows][:, None])
        allowed &= (run_level == cand_level[None, :]) | ((level_count[run_level] > low)
                                                         & (level_count[cand_level][None, :] < high))
        gain = np.where(allowed, gain, -np.inf)
        best = gain.max()
        if best <= _TOL:
            return rows
        i, j = np.unravel_index(np.argmax(gain >= best - _TOL), gain.shape)
        rows[i] = j
