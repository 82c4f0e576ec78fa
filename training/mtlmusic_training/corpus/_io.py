"""The corpus's tables on disk and its per-track worker pool.

``soundtracks.csv``, ``music21.csv`` and ``metadata.csv`` are written through
:func:`mtlmusic.files.atomic_path` and read back with their text columns as
strings (empty cells stay ``''``; only ``bpm_label`` and ``duration`` become
NaN). ``manifest.csv`` is read with
:meth:`mtlmusic_training.datasets.Manifest.load`. :func:`parallel_map` runs
per-track jobs (renders, descriptors, MFCCs) in single-threaded processes.

Examples
--------
>>> import tempfile, pathlib
>>> import pandas as pd
>>> path = pathlib.Path(tempfile.mkdtemp()) / "metadata.csv"
>>> write_table(pd.DataFrame({"track_id": ["a"], "style": [""], "bpm_label": [None]}), path)
>>> row = read_table(path).iloc[0]
>>> row["track_id"], row["style"], bool(row.isna()["bpm_label"])
('a', '', True)
>>> list(parallel_map(abs, [-1, 2], workers=1))
[1, 2]
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from mtlmusic.errors import ConfigError
from mtlmusic.files import atomic_path

#: Columns of ``metadata.csv``.
METADATA_COLUMNS = ("track_id", "corpus", "soundtrack", "composer", "style", "program", "bpm_label",
                    "duration", "licence", "title", "group")


def write_table(table, path: Path) -> None:
    """Write a DataFrame as CSV, without its index, through a temporary file and a rename.

    Parameters
    ----------
    table : pandas.DataFrame
    path : Path
    """
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def read_table(path: Path):
    """Read a table of the corpus written by :func:`write_table`.

    Parameters
    ----------
    path : Path

    Returns
    -------
    pandas.DataFrame
        Text columns as strings, ``''`` where empty; ``bpm_label`` and ``duration`` as floats, NaN where empty.

    Raises
    ------
    ConfigError
        If the file does not exist.
    """
    import pandas as pd

    if not path.exists():
        raise ConfigError(f"{path} not found; build the corpus first.")
    return pd.read_csv(path, keep_default_na=False, na_values={"bpm_label": [""], "duration": [""]},
                       dtype={"track_id": str, "path": str, "split": str, "soundtrack": str, "style": str,
                              "composer": str, "group": str, "title": str, "licence": str, "corpus": str,
                              "source_track": str})


def parallel_map(function: Callable, jobs: list, workers: int) -> Iterable:
    """``function`` over ``jobs`` in ``workers`` processes (in this process when 1), results in job order.

    Parameters
    ----------
    function : callable
        A picklable function of one job.
    jobs : list
    workers : int
        Processes, started fresh ("spawn": a forked copy of a process whose threads
        already run, such as numba's or torch's, may crash); each is limited to one
        BLAS/OpenMP thread.

    Yields
    ------
    object
        ``function(job)`` for each job, as soon as it and those before it are done.

    Raises
    ------
    ConfigError
        If ``workers`` is below 1.
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}.")
    if workers == 1 or len(jobs) <= 1:
        yield from (function(job) for job in jobs)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_limit_threads) as pool:
        yield from pool.map(function, jobs, chunksize=1)


def _limit_threads() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
