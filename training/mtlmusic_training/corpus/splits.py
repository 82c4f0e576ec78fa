"""The corpus split: tracks grouped by work, split into train / valid / test within each class.

:func:`split_tracks` assigns whole groups (a track, or a work whose movements
stay together) to the splits, stratified by soundtrack, package or style;
:func:`build_manifest` combines the track tables (:data:`TRACK_TABLES`), splits
them, optionally cuts every track into excerpts that inherit its split, and
writes ``manifest.csv`` (``track_id, path, split``) and ``metadata.csv``
(:data:`METADATA_COLUMNS`, plus ``source_track`` and ``start`` for excerpts);
:func:`corpus_summary` counts tracks and minutes per class and split.

Examples
--------
>>> import pandas as pd
>>> works = pd.DataFrame({"track_id": ["w1", "w2", "b", "c"], "group": ["w", "w", "b", "c"], "stratum": ["s"] * 4})
>>> split_tracks(works, fractions=(0.5, 0.0, 0.5), seed=0).tolist()
['train', 'train', 'test', 'test']
>>> manifest = build_manifest("corpus")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mtlmusic.errors import ConfigError
from mtlmusic.files import file_sha256

from ..datasets import SPLITS, Manifest
from ._io import METADATA_COLUMNS, read_table, write_table
from .excerpts import cut_excerpts

logger = logging.getLogger(__name__)

#: Default train, valid and test fractions of each stratum's groups.
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
#: MIDI packages that hold the same pieces as a recorded package: left out when the recordings are in the
#: corpus, where they would put held-out recordings' pieces into training.
SAME_PIECES = {"planetblupi-music-midi": "planetblupi-music-ogg"}
#: Fractions of the corpora that differ from the default, so that each held-out task has enough tracks: the
#: music21 styles have few pieces (46 quartet works, 49 Monteverdi madrigals), and many Debian packages hold only
#: a few pieces (the package task keeps the packages with at least three held-out tracks).
CORPUS_FRACTIONS = {"music21": (0.5, 0.1, 0.4), "soundtrack": (0.6, 0.1, 0.3)}
#: The track tables of a corpus folder (``<name>.csv``): the eight soundtracks, the Debian game-data packages,
#: the music21 renders and the rendered Debian MIDI packages.
TRACK_TABLES = ("soundtracks", "debian", "music21", "midi")


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


def build_manifest(out_dir: str | os.PathLike, tables: Mapping | None = None, *,
                   fractions: Sequence[float] = DEFAULT_FRACTIONS,
                   corpus_fractions: Mapping[str, Sequence[float]] = CORPUS_FRACTIONS, seed: int = 0,
                   per_track: int = 0, seconds: float = 30.0, workers: int = 2):
    """Combine the corpora, split them by track and write ``manifest.csv`` and ``metadata.csv``.

    A Debian track that is also a soundtrack track (the same resolved path or the
    same bytes) is dropped, and so are the MIDI renders of :data:`SAME_PIECES`.
    Tracks are split by group within each class
    (:func:`split_tracks`); with ``per_track`` the manifest then lists the
    excerpts of every track instead (:func:`~mtlmusic_training.corpus.excerpts.cut_excerpts`),
    each in its track's split.

    Parameters
    ----------
    out_dir : str or path-like
        The corpus folder.
    tables : mapping of str to pandas.DataFrame, optional
        Track tables by name, among :data:`TRACK_TABLES` (``{"soundtracks": ...,
        "debian": ...}``); default: the tables of ``out_dir`` named ``<name>.csv``, where present.
    fractions : (float, float, float)
        Train, valid and test fractions (see :func:`split_tracks`).
    corpus_fractions : mapping
        Fractions of particular corpora (``corpus`` column) instead of ``fractions``;
        default :data:`CORPUS_FRACTIONS`.
    seed : int
        Seed of the split and of the choice of excerpts.
    per_track : int
        Most excerpts per track; 0 lists whole tracks.
    seconds : float
        Length of an excerpt.
    workers : int
        Processes cutting excerpts.

    Returns
    -------
    pandas.DataFrame
        The manifest: ``track_id``, ``path``, ``split``, sorted by ``track_id``.
        ``metadata.csv`` holds the columns of :data:`METADATA_COLUMNS` in the same
        order, followed by ``source_track`` and ``start`` when excerpts are listed.

    Raises
    ------
    ConfigError
        For an unknown table name, no tracks at all or repeated track ids.

    Examples
    --------
    >>> manifest = build_manifest("corpus", per_track=4)  # doctest: +SKIP
    >>> sorted(manifest["split"].unique())  # doctest: +SKIP
    ['test', 'train', 'valid']
    """
    import pandas as pd

    out = Path(out_dir)
    if tables is None:
        tables = {name: read_table(out / f"{name}.csv") for name in TRACK_TABLES if (out / f"{name}.csv").exists()}
    unknown = sorted(set(tables) - set(TRACK_TABLES))
    if unknown:
        raise ConfigError(f"Unknown track tables {unknown}; use {', '.join(TRACK_TABLES)}.")
    tables = {name: table for name, table in tables.items() if len(table)}
    if "soundtracks" in tables and "debian" in tables:
        tables["debian"] = _without_copies(tables["debian"], tables["soundtracks"])
    if "midi" in tables:
        recorded = {package for name in ("soundtracks", "debian") if name in tables
                    for package in tables[name]["soundtrack"]}
        same = [package for package, recording in SAME_PIECES.items() if recording in recorded]
        tables["midi"] = tables["midi"][~tables["midi"]["soundtrack"].isin(same)]
    if not tables:
        raise ConfigError(f"No tracks: build the soundtrack, Debian and/or music21 corpus in {out} first.")
    columns = ["track_id", "path", *METADATA_COLUMNS[1:]]
    table = pd.concat([t[columns] for t in tables.values()], ignore_index=True)
    if table["track_id"].duplicated().any():
        raise ConfigError(f"Duplicate track ids: {sorted(table.loc[table['track_id'].duplicated(), 'track_id'])[:5]}")
    strata = table["corpus"] + ":" + table["soundtrack"].fillna("").astype(str) + table["style"].fillna("").astype(str)
    table = table.assign(stratum=strata)
    table["split"] = pd.concat([split_tracks(rows, corpus_fractions.get(corpus, fractions), seed)
                                for corpus, rows in table.groupby("corpus", sort=True)])
    table = table.drop(columns="stratum")
    metadata = list(METADATA_COLUMNS)
    if per_track:
        splits = dict(zip(table["track_id"], table["split"]))
        table = cut_excerpts(table, out, seconds=seconds, per_track=per_track, seed=seed, workers=workers)
        table["split"] = table["source_track"].map(splits)
        metadata += ["source_track", "start"]
    table = table.sort_values("track_id", kind="stable").reset_index(drop=True)
    write_table(table[["track_id", "path", "split"]], out / "manifest.csv")
    write_table(table[metadata], out / "metadata.csv")
    return table[["track_id", "path", "split"]]


def _without_copies(debian, soundtracks):
    """The rows of ``debian`` whose file is not one of ``soundtracks`` (same resolved path or same SHA-256)."""
    paths = {str(Path(path).resolve()) for path in soundtracks["path"]}
    copies = debian["path"].map(lambda path: str(Path(path).resolve()) in paths)
    if "sha256" in debian:
        sizes = {os.path.getsize(path) for path in debian["path"] if os.path.exists(path)}
        digests = {file_sha256(path) for path in paths if os.path.exists(path) and os.path.getsize(path) in sizes}
        copies |= debian["sha256"].isin(digests)
    if copies.any():
        logger.info("%d Debian tracks are soundtrack tracks too and left out: %s", int(copies.sum()),
                    ", ".join(debian.loc[copies, "track_id"][:5]))
    return debian[~copies]


def corpus_summary(out_dir: str | os.PathLike):
    """Tracks and minutes per class and split of a built corpus.

    With excerpts, tracks are the source tracks and minutes those of the excerpts.

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
    if "source_track" not in table:
        table["source_track"] = table["track_id"]
    table["class"] = table["soundtrack"].fillna("").astype(str) + table["style"].fillna("").astype(str)
    tracks = table.pivot_table(index=["corpus", "class"], columns="split", values="source_track", aggfunc="nunique",
                               fill_value=0)
    minutes = table.pivot_table(index=["corpus", "class"], columns="split", values="duration", aggfunc="sum",
                                fill_value=0) / 60
    tracks = tracks.reindex(columns=list(SPLITS), fill_value=0)
    minutes = minutes.reindex(columns=list(SPLITS), fill_value=0).round(1)
    tracks["all"], minutes["all"] = tracks.sum(axis=1), minutes.sum(axis=1).round(1)
    return pd.concat({"tracks": tracks, "minutes": minutes}, axis=1)
