"""Score every representation of the study on every evaluation dataset into one results table.

:func:`evaluate_grid` runs :func:`~mtlmusic_training.evaluation.evaluate` for each pair of a
representation and a dataset and appends the split scores to a CSV that
:func:`~mtlmusic_training.evaluation.analysis.load_results` reads. The representations come from
the networks that ``mtlmusic-train grid`` exported (``RUNS/models/<name>.safetensors``):

* every network file is a representation of its own (SS-R, MS-SR@FC, MS-CR@2, MS-CR@4, MS-CR@6);
* every MSS-CR representation of the study (the 78 design source sets and all eight sources, see
  :func:`~mtlmusic_training.design.representations`) whose SS-R networks are all there, assembled
  from their cached features (see :mod:`~mtlmusic_training.evaluation.run`), never extracted again;
* the baselines MFCC and Rand.

With the 90 networks that is the paper's 169 representations and 2 baselines per dataset. The
study's sources are those the runs folder's ``design.json`` records
(:func:`~mtlmusic_training.design.grid_sources`), the paper's by default.

Results table
-------------
One row per split, with the columns :data:`RESULT_COLUMNS`:

==============  ================================================================================
column          value
==============  ================================================================================
representation  model name (``mscr2-self-bpm``, ``msscr-self-bpm``...), ``mfcc`` or ``rand``
architecture    ``SS-R``, ``MSS-CR``, ``MS-SR@FC``, ``MS-CR@2``... (empty for baselines)
sources         learning sources joined by ``+`` (empty for baselines)
n_sources       number of sources (0 for baselines)
dataset         the dataset's name (a key of ``datasets``)
task            ``classification``, ``regression`` or ``recommendation``
metric          ``accuracy``, ``r2`` or ``ap@20``
n_tracks        tracks in the dataset
n_classes       classes (classification only)
standardize     whether the features were standardized before the task's model
seed            seed of the splits
n_splits        number of splits of the pair
split           index of the split, from 0
score           the split's score
==============  ================================================================================

Resuming
--------
The scores of one (representation, dataset) pair are appended in one write, flushed to disk, once
they are all computed. A later call skips every pair whose scores are all in the table, so an
interrupted grid resumes where it stopped; the pairs an interruption left incomplete (and a torn
last line) are removed and scored again. Features come from the feature cache, so a rerun extracts
nothing twice. Scores of a dataset written with other settings (standardization, seed, number of
splits) are refused rather than mixed with new ones.

Examples
--------
>>> from mtlmusic_training.evaluation import load_gtzan
>>> from mtlmusic_training.evaluation.grid import evaluate_grid
>>> summary = evaluate_grid("runs", {"GTZAN": load_gtzan("/data/gtzan")}, "results.csv",
...                         cache_dir="eval-cache")  # doctest: +SKIP
>>> summary.scored, summary.skipped  # doctest: +SKIP
(171, 0)
"""

from __future__ import annotations

import csv
import inspect
import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtlmusic.architectures import canonical_sources, model_name, parse_model_name
from mtlmusic.errors import ConfigError, MtlmusicError
from mtlmusic.files import atomic_path
from mtlmusic.modelfile import read_config

from ..design import Representation, grid_sources, representations
from .datasets import EvalDataset
from .protocols import evaluate_classification, evaluate_recommendation, evaluate_regression
from .run import BASELINES, evaluate

__all__ = ["RESULT_COLUMNS", "GridSummary", "evaluate_grid", "grid_representations"]

#: Columns of the results table, in order.
RESULT_COLUMNS = ("representation", "architecture", "sources", "n_sources", "dataset", "task", "metric",
                  "n_tracks", "n_classes", "standardize", "seed", "n_splits", "split", "score")
_PROTOCOLS = {"classification": evaluate_classification, "regression": evaluate_regression,
              "recommendation": evaluate_recommendation}


@dataclass
class GridSummary:
    """What a call of :func:`evaluate_grid` did.

    Attributes
    ----------
    scored : int
        (representation, dataset) pairs scored and appended.
    skipped : int
        Pairs already complete in the table.
    failed : dict of str to str
        ``"<representation> on <dataset>"`` -> error message of the pairs that could not be scored
        (a rerun retries them).
    unassembled : list of str
        MSS-CR representations of the study left out because SS-R networks are missing.
    """

    scored: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    unassembled: list[str] = field(default_factory=list)


def _model_files(models) -> dict[str, Path]:
    """Model files by representation name, from a runs folder, a folder of model files or a list of files."""
    if isinstance(models, (str, os.PathLike)):
        folder = Path(models)
        if (folder / "models").is_dir():
            folder = folder / "models"
        if not folder.is_dir():
            raise ConfigError(f"{models} is neither a runs folder (with models/) nor a folder of model files")
        paths = sorted(folder.glob("*.safetensors"))
        if not paths:
            raise ConfigError(f"no model file (*.safetensors) in {folder}")
    else:
        paths = [Path(path) for path in models]
    files: dict[str, Path] = {}
    for path in paths:
        config = read_config(path)
        name = model_name(config["architecture"], config["sources"])
        if name in files:
            raise ConfigError(f"{files[name]} and {path} are both {name}; keep one of them")
        files[name] = path
    return files


def grid_representations(
    model_files: Mapping[str, Path], msscr: Iterable[Iterable[str]] | None = None,
    sources: str | Sequence[str] | None = None,
) -> tuple[list[Representation], list[str]]:
    """The representations that ``model_files`` give: each network, and the MSS-CRs of its SS-Rs.

    Parameters
    ----------
    model_files : mapping of str to Path
        Model file of each network, by model name (``ssr-bpm``, ``mscr2-self-bpm``...).
    msscr : iterable of source lists, optional
        Source sets of the MSS-CR representations; default the study's 79
        (:func:`~mtlmusic_training.design.representations`).
    sources : str or sequence of str, optional
        The eight sources of the study's design (see :func:`~mtlmusic_training.design.design_sources`);
        default the paper's.

    Returns
    -------
    list of Representation
        The networks in the study's order (others after them, by name), then the MSS-CR
        representations whose SS-R networks are all in ``model_files``.
    list of str
        The MSS-CR representations left out, for want of SS-R networks.

    Examples
    --------
    >>> files = {"ssr-bpm": "a.safetensors", "ssr-tag": "b.safetensors", "mscr2-bpm-tag": "c.safetensors"}
    >>> reps, left_out = grid_representations(files, msscr=[["tag", "bpm"], ["self", "bpm"]])
    >>> [rep.name for rep in reps]
    ['ssr-bpm', 'ssr-tag', 'mscr2-bpm-tag', 'msscr-bpm-tag']
    >>> reps[-1].networks, left_out
    (('ssr-bpm', 'ssr-tag'), ['msscr-self-bpm'])
    >>> open_corpus = "self,bpm,onset,chroma,tempogram,timbre,tag,mtt"
    >>> len(grid_representations({}, sources=open_corpus)[1])   # the study's 79 MSS-CRs, none assembled
    79
    """
    study = representations(sources)
    order = {rep.name: index for index, rep in enumerate(study)}
    networks = [Representation(name, *parse_model_name(name), (name,))
                for name in sorted(model_files, key=lambda n: (order.get(n, len(order)), n))]
    source_sets = ([rep.sources for rep in study if rep.architecture == "MSS-CR"] if msscr is None
                   else [canonical_sources(sources) for sources in msscr])
    assembled, left_out = [], []
    for sources in source_sets:
        members = tuple(model_name("SS-R", [source]) for source in sources)
        name = model_name("MSS-CR", sources)
        if all(member in model_files for member in members):
            assembled.append(Representation(name, "MSS-CR", sources, members))
        else:
            left_out.append(name)
    return networks + assembled, left_out


def _default_standardize(task: str) -> bool:
    """The protocol's own ``standardize`` default for ``task``."""
    return inspect.signature(_PROTOCOLS[task]).parameters["standardize"].default


def _complete_pairs(path: Path, settings: Mapping[str, tuple[str, str, str]]) -> set[tuple[str, str]]:
    """The (representation, dataset) pairs with all their scores in the table at ``path``.

    Rows of incomplete pairs and a torn last line are removed from the file. ``settings`` maps each
    dataset of this run to its ``(standardize, seed, n_splits)`` as the table writes them; a
    complete pair of such a dataset scored otherwise is refused.
    """
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    torn = bool(lines) and not lines[-1].endswith("\n")
    if torn:
        lines.pop()
    reader = csv.DictReader(lines)
    if tuple(reader.fieldnames or ()) != RESULT_COLUMNS:
        raise ConfigError(f"{path} is not a results table of evaluate_grid (columns {reader.fieldnames}); "
                          "write the results to another file")
    rows = list(reader)
    pairs: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        pairs.setdefault((row["representation"], row["dataset"]), []).append(row)
    complete = set()
    for (representation, dataset), group in pairs.items():
        written = {(row["standardize"], row["seed"], row["n_splits"]) for row in group}
        n_splits = group[0]["n_splits"] or ""
        splits = sorted(str(i) for i in range(int(n_splits))) if n_splits.isdigit() else None
        if len(written) != 1 or sorted(row["split"] or "" for row in group) != splits:
            continue
        if dataset in settings and written != {settings[dataset]}:
            raise ConfigError(f"{path} holds scores of {dataset} with standardize, seed, n_splits = "
                              f"{', '.join(written.pop())}; this run uses {', '.join(settings[dataset])}: "
                              "write the results to another file")
        complete.add((representation, dataset))
    if torn or len(complete) != len(pairs):
        kept = [row for row in rows if (row["representation"], row["dataset"]) in complete]
        with atomic_path(path) as tmp:
            tmp.write_text(_csv_text(kept, header=True), encoding="utf-8")
    return complete


def _csv_text(rows: Sequence[Mapping], header: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, RESULT_COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _append(path: Path, rows: Sequence[Mapping]) -> None:
    """Append ``rows`` to the table in one write, flushed to disk."""
    with open(path, "a", encoding="utf-8", newline="") as handle:
        handle.write(_csv_text(rows))
        handle.flush()
        os.fsync(handle.fileno())


def _result_rows(representation: Representation | None, name: str, dataset_name: str, dataset: EvalDataset,
                 result, seed: int) -> list[dict]:
    """The table rows of one result; ``representation`` None for a baseline ``name``."""
    described = {"representation": name, "architecture": "", "sources": "", "n_sources": 0}
    if representation is not None:
        described.update(architecture=representation.architecture, sources="+".join(representation.sources),
                         n_sources=len(representation.sources))
    common = {**described, "dataset": dataset_name, "task": dataset.task, "metric": result.metric,
              "n_tracks": len(dataset),
              "n_classes": dataset.classes.size if dataset.task == "classification" else "",
              "standardize": result.standardized, "seed": seed, "n_splits": result.n_splits}
    return [{**common, "split": split, "score": repr(float(score))} for split, score in enumerate(result.scores)]


def evaluate_grid(
    models,
    datasets: Mapping[str, EvalDataset] | Sequence[EvalDataset],
    out_csv: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike,
    msscr: Iterable[Iterable[str]] | None = None,
    sources: str | Sequence[str] | None = None,
    baselines: Sequence[str] = BASELINES,
    standardize: bool | None = None,
    n_repeats: int = 5,
    n_folds: int | Mapping[str, int] = 10,
    seed: int = 0,
    on_error: str = "raise",
    n_jobs: int | None = 1,
    device: str | None = None,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
) -> GridSummary:
    """Score every representation on every dataset and append the scores to a results table.

    See the module notes for the representations, the table and how a call resumes.

    Parameters
    ----------
    models : path-like or iterable of path-like
        The runs folder of ``mtlmusic-train grid`` (its ``models/`` subfolder is read), a folder of
        model files (``*.safetensors``), or the model files.
    datasets : mapping of str to EvalDataset, or sequence of EvalDataset
        The evaluation datasets, by the name the table gives them (a sequence: by
        ``dataset.name``).
    out_csv : path-like
        The results table, created if needed and extended otherwise.
    cache_dir : path-like
        Feature cache folder, shared by every call (see :func:`~mtlmusic_training.evaluation.dataset_features`).
    msscr : iterable of source lists, optional
        Source sets of the MSS-CR representations; default the study's 79.
    sources : str or sequence of str, optional
        The eight sources of the study's design; default those the runs folder ``models`` records in
        its ``design.json`` (see :func:`~mtlmusic_training.design.grid_sources`), else the paper's.
    baselines : sequence of str, default ("mfcc", "rand")
        Baselines to score as well.
    standardize : bool, optional
        Standardize the features before the task's model; ``None``: each protocol's default (no for
        classification, yes for regression and recommendation; see
        :mod:`~mtlmusic_training.evaluation.protocols`). Every row records the setting.
    n_repeats, seed : int
    n_folds : int or mapping of str to int, default 10
        Folds per repetition (5 x 10 = 50 splits by default), or folds by dataset name (10 for a
        dataset it leaves out), e.g. fewer for a small validation set.
    on_error : {"raise", "drop"}, default "raise"
        Tracks without features: fail the pair, or score without them (see :func:`evaluate`).
    n_jobs : int or None, default 1
        Threads scoring splits.
    device : str, optional
        Device of the networks.
    workers : int, optional
        Decoding processes beside the network.
    log : callable, optional
        Called with a line of text after each pair and for what is skipped.

    Returns
    -------
    GridSummary

    Raises
    ------
    mtlmusic.ConfigError
        For no model file, two files of one network, a dataset that is not an
        :class:`~mtlmusic_training.evaluation.EvalDataset`, a table written with other settings, or
        ``sources`` other than the runs folder's.
    mtlmusic.ModelFileError
        For a model file that cannot be read. Errors of single pairs are reported in
        :attr:`GridSummary.failed` instead, and the grid goes on.

    Examples
    --------
    >>> summary = evaluate_grid("runs", {"GTZAN": gtzan, "FMA": fma}, "results.csv",
    ...                         cache_dir="eval-cache", log=print)  # doctest: +SKIP
    >>> len(summary.failed)  # doctest: +SKIP
    0
    """
    log = log or (lambda line: None)
    named = dict(datasets) if isinstance(datasets, Mapping) else {dataset.name: dataset for dataset in datasets}
    for name, dataset in named.items():
        if not isinstance(dataset, EvalDataset):
            raise ConfigError(f"dataset {name!r} is a {type(dataset).__name__}, not an EvalDataset")
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baselines {unknown}; choose among {list(BASELINES)}")
    files = _model_files(models)
    if isinstance(models, (str, os.PathLike)):
        sources = grid_sources(models, sources)
    reps, left_out = grid_representations(files, msscr, sources)
    summary = GridSummary(unassembled=left_out)
    if left_out:
        log(f"{len(left_out)} MSS-CR representations left out: SS-R networks missing (first: {left_out[0]})")
    folds = {name: n_folds.get(name, 10) if isinstance(n_folds, Mapping) else n_folds for name in named}
    settings = {name: (str(_default_standardize(dataset.task) if standardize is None else bool(standardize)),
                       str(seed), str(n_repeats * folds[name])) for name, dataset in named.items()}
    out_csv = Path(out_csv)
    if out_csv.exists():
        done = _complete_pairs(out_csv, settings)
    else:
        done = set()
        with atomic_path(out_csv) as tmp:
            tmp.write_text(_csv_text([], header=True), encoding="utf-8")
    entries = [(name, None, name) for name in baselines]
    entries += [(rep.name, rep, [files[n] for n in rep.networks] if rep.architecture == "MSS-CR"
                 else files[rep.name]) for rep in reps]
    total = len(entries) * len(named)
    pairs = [(dataset_name, dataset, *entry) for dataset_name, dataset in named.items() for entry in entries]
    for index, (dataset_name, dataset, name, representation, source) in enumerate(pairs, start=1):
        if (name, dataset_name) in done:
            summary.skipped += 1
            continue
        position = f"[{index}/{total}]"
        try:
            result = evaluate(source, dataset, cache_dir=cache_dir, on_error=on_error, n_repeats=n_repeats,
                              n_folds=folds[dataset_name], seed=seed, standardize=standardize, n_jobs=n_jobs,
                              device=device, workers=workers)
        except MtlmusicError as err:
            summary.failed[f"{name} on {dataset_name}"] = str(err)
            log(f"{position} {dataset_name} {name}: failed: {err}")
            continue
        _append(out_csv, _result_rows(representation, name, dataset_name, dataset, result, seed))
        summary.scored += 1
        log(f"{position} {dataset_name} {name}: {result}")
    if summary.skipped:
        log(f"{summary.skipped} of {total} scores were already in {out_csv}")
    return summary
