"""The corpus split: tracks grouped by work, split into train / valid / test within each class.

:func:`split_tracks` assigns whole groups (a track, or a work whose movements
stay together) to the splits, stratified by soundtrack or style;
:func:`build_manifest` combines the soundtrack and render tables, splits them
and writes ``manifest.csv`` (``track_id, path, split``) and ``metadata.csv``
(:data:`METADATA_COLUMNS`); :func:`corpus_summary` counts tracks and minutes
per class and split.

Examples
--------
>>> import pandas as pd
>>> works = pd.DataFrame({"track_id": ["w1", "w2", "b", "c"], "group": ["w", "w", "b", "c"], "stratum": ["s"] * 4})
>>> split_tracks(works, fractions=(0.5, 0.0, 0.5), seed=0).tolist()
['train', 'train', 'test', 'test']
>>> manifest = build_manifest("corpus")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mtlmusic.errors import ConfigError

from ..datasets import SPLITS, Manifest
from ._io import METADATA_COLUMNS, read_table, write_table

#: Default train, valid and test fractions of each stratum's groups.
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)


def split_tracks(table, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0):
    """Assign each track to train / valid / test, by group and stratified.

    Within each stratum (soundtrack or style), the distinct groups (a track, or a
    work whose movements must stay together) are shuffled with a generator seeded by
    ``seed`` and the stratum's name, and the first ``round(n * test)`` groups go to
    test, the next ``round(n * valid)`` to valid, the rest to train (at least one
    group always stays in train). The result does not depend on row order or on
    the other strata.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``track_id``, ``group`` and ``stratum``.
    fractions : (float, float, float)
        Train, valid and test fractions of each stratum's groups.
    seed : int

    Returns
    -------
    pandas.Series of str
        The split of each row, indexed like ``table``.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"track_id": list("abcdef"), "group": ["w", "w", "c", "d", "e", "f"],
    ...                       "stratum": ["s"] * 6})
    >>> split = split_tracks(table, seed=0)
    >>> split[0] == split[1], split.value_counts().to_dict()
    (True, {'train': 3, 'test': 2, 'valid': 1})
    """
    import pandas as pd

    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ConfigError(f"fractions must be three nonnegative numbers summing to 1, got {fractions}.")
    missing = {"track_id", "group", "stratum"} - set(table.columns)
    if missing:
        raise ConfigError(f"split_tracks needs the columns {sorted(missing)}.")
    assignment: dict[str, str] = {}
    for stratum, rows in table.groupby("stratum", sort=True):
        groups = sorted(set(rows["group"]))
        order = np.random.default_rng([seed, zlib.crc32(str(stratum).encode())]).permutation(len(groups))
        n = len(groups)
        n_test = math.floor(n * fractions[2] + 0.5)
        n_valid = math.floor(n * fractions[1] + 0.5)
        while n_test + n_valid >= n and n_test + n_valid > 0:
            if n_valid >= n_test and n_valid:
                n_valid -= 1
            else:
                n_test -= 1
        for rank, index in enumerate(order):
            split = "test" if rank < n_test else "valid" if rank < n_test + n_valid else "train"
            assignment[groups[index]] = split
    return pd.Series([assignment[g] for g in table["group"]], index=table.index, dtype=object)


def build_manifest(out_dir: str | os.PathLike, tables: Iterable | None = None, *,
                   fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0):
    """Combine the corpora, split them and write ``manifest.csv`` and ``metadata.csv``.

    Parameters
    ----------
    out_dir : str or path-like
        The corpus folder.
    tables : iterable of pandas.DataFrame, optional
        Track tables as :func:`build_soundtrack_corpus` and :func:`build_music21_corpus`
        return; default: ``soundtracks.csv`` and ``music21.csv`` of ``out_dir``, where present.
    fractions : (float, float, float)
        Train, valid and test fractions (see :func:`split_tracks`).
    seed : int
        Seed of the split.

    Returns
    -------
    pandas.DataFrame
        The manifest: ``track_id``, ``path``, ``split``, sorted by ``track_id``.
        ``metadata.csv`` holds the columns of :data:`METADATA_COLUMNS` in the same order.

    Examples
    --------
    >>> manifest = build_manifest("corpus")  # doctest: +SKIP
    >>> sorted(manifest["split"].unique())  # doctest: +SKIP
    ['test', 'train', 'valid']
    """
    import pandas as pd

    out = Path(out_dir)
    if tables is None:
        tables = [read_table(out / name) for name in ("soundtracks.csv", "music21.csv") if (out / name).exists()]
    tables = [t for t in tables if len(t)]
    if not tables:
        raise ConfigError(f"No tracks: build the soundtrack and/or music21 corpus in {out} first.")
    table = pd.concat(tables, ignore_index=True)
    if table["track_id"].duplicated().any():
        raise ConfigError(f"Duplicate track ids: {sorted(table.loc[table['track_id'].duplicated(), 'track_id'])[:5]}")
    table = table.sort_values("track_id", kind="stable").reset_index(drop=True)
    strata = table["corpus"] + ":" + table["soundtrack"].fillna("").astype(str) + table["style"].fillna("").astype(str)
    table["split"] = split_tracks(table.assign(stratum=strata), fractions, seed)
    write_table(table[["track_id", "path", "split"]], out / "manifest.csv")
    write_table(table[list(METADATA_COLUMNS)], out / "metadata.csv")
    return table[["track_id", "path", "split"]]


def corpus_summary(out_dir: str | os.PathLike):
    """Tracks and minutes per class and split of a built corpus.

    Parameters
    ----------
    out_dir : str or path-like
        The corpus folder, with ``manifest.csv`` and ``metadata.csv``.

    Returns
    -------
    pandas.DataFrame
        Index: ``(corpus, class)``; columns: tracks and minutes for each split and in all.

    Examples
    --------
    >>> corpus_summary("corpus").loc[("music21", "bach")]  # doctest: +SKIP
    """
    import pandas as pd

    out = Path(out_dir)
    manifest = Manifest.load(out / "manifest.csv")
    splits = pd.DataFrame({"track_id": manifest.track_ids, "split": manifest.splits})
    table = read_table(out / "metadata.csv").merge(splits)
    table["class"] = table["soundtrack"].fillna("").astype(str) + table["style"].fillna("").astype(str)
    tracks = table.pivot_table(index=["corpus", "class"], columns="split", values="track_id", aggfunc="count",
                               fill_value=0)
    minutes = table.pivot_table(index=["corpus", "class"], columns="split", values="duration", aggfunc="sum",
                                fill_value=0) / 60
    tracks = tracks.reindex(columns=list(SPLITS), fill_value=0)
    minutes = minutes.reindex(columns=list(SPLITS), fill_value=0).round(1)
    tracks["all"], minutes["all"] = tracks.sum(axis=1), minutes.sum(axis=1).round(1)
    return pd.concat({"tracks": tracks, "minutes": minutes}, axis=1)
