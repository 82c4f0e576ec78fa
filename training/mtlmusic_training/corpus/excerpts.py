"""The corpus's unit of training: 30 s excerpts of its tracks, each its own audio file.

The study's tracks were 30 s previews. :func:`cut_excerpts` cuts the windows of
:func:`~mtlmusic_training.corpus.debian.excerpt_windows` (at most ``per_track``
non-overlapping windows of ``seconds`` per track) out of every track, decoding
each track once and only up to its last window, and writes each as a 16-bit
stereo FLAC at 22,050 Hz under ``<out_dir>/excerpts/``. A track shorter than
``seconds`` but at least :data:`MIN_EXCERPT_SECONDS` long gives one excerpt of
its whole length; shorter tracks give none. Splits stay by track and group:
every excerpt inherits its track's split (see
:func:`~mtlmusic_training.corpus.splits.build_manifest`).

Examples
--------
>>> import os, tempfile
>>> import numpy as np, pandas as pd, soundfile as sf
>>> root = tempfile.mkdtemp()
>>> sf.write(os.path.join(root, "song.wav"), np.zeros((5 * 22050, 2), dtype=np.float32), 22050)
>>> table = pd.DataFrame({"track_id": ["pkg/song"], "path": [os.path.join(root, "song.wav")], "duration": [5.0],
...                       "corpus": ["soundtrack"], "soundtrack": ["pkg"], "group": ["pkg/song"]})
>>> cut_excerpts(table, root, seconds=2.0, workers=1)[["track_id", "start", "duration"]].values.tolist()
[['pkg/song@0000', 0.0, 2.0], ['pkg/song@0002', 2.0, 2.0]]
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import numpy as np

from mtlmusic.audio import SAMPLE_RATE, stream_audio
from mtlmusic.errors import AudioError, ConfigError
from mtlmusic.files import atomic_path

from ..datasets import check_track_ids
from ._io import METADATA_COLUMNS, parallel_map, write_table
from .debian import excerpt_windows

logger = logging.getLogger(__name__)

#: Shortest track that still gives an excerpt (of its whole length) when it is shorter than the excerpt length.
MIN_EXCERPT_SECONDS = 15.0
#: Columns of ``excerpts.csv``: the excerpt, its source track and start, then the source's metadata.
EXCERPT_COLUMNS = ("track_id", "path", "source_track", "start", *METADATA_COLUMNS[1:])


def cut_excerpts(table, out_dir: str | os.PathLike, *, seconds: float = 30.0, per_track: int = 4, seed: int = 0,
                 workers: int = 2):
    """Write the excerpts of every track as audio files and ``excerpts.csv``; resumable.

    Each excerpt goes to ``<out_dir>/excerpts/<track_id>@<start>.flac`` (the start
    in whole seconds, at least 4 digits; the slashes of the track id become folders,
    characters other than ASCII letters, digits and ``_.+-`` become ``_`` and a
    name so changed gets a hash of the id). Files are written atomically, so an
    existing one is complete and skipped; a track whose excerpts all exist is not
    decoded. A track that fails to decode is logged, skipped and listed in the
    result's ``attrs["failed"]``; running again retries it.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per track: ``track_id``, ``path``, ``duration`` (seconds) and the
        other :data:`~mtlmusic_training.corpus.METADATA_COLUMNS`.
    out_dir : str or path-like
        The corpus folder.
    seconds : float
        Length of an excerpt (at least 1 s).
    per_track : int
        Most excerpts per track (see :func:`~mtlmusic_training.corpus.excerpt_windows`).
    seed : int
        Seed of the choice of windows in tracks with more than ``per_track``.
    workers : int
        Decoding processes.

    Returns
    -------
    pandas.DataFrame
        One row per excerpt written, columns :data:`EXCERPT_COLUMNS`: ``track_id``
        (``<source track>@<start>``), ``path`` (absolute), ``source_track``, ``start``
        and ``duration`` (of the excerpt, in seconds) and the source's metadata (empty
        where ``table`` lacks a column), sorted by ``track_id``. ``attrs["failed"]``
        maps each track that failed to its error.

    Raises
    ------
    ConfigError
        If ``seconds`` is below 1 or ``per_track`` below 1.

    Examples
    --------
    >>> excerpts = cut_excerpts(tracks, "corpus", seconds=30, per_track=4)  # doctest: +SKIP
    >>> excerpts.groupby("source_track").size().max()  # doctest: +SKIP
    4
    """
    import pandas as pd
    import soundfile as sf

    if seconds < 1 or per_track < 1:
        raise ConfigError(f"seconds ({seconds}) must be at least 1 and per_track ({per_track}) at least 1.")
    check_track_ids(table["track_id"])
    out = Path(out_dir).expanduser().resolve()
    short = table[(table["duration"] >= MIN_EXCERPT_SECONDS) & (table["duration"] < seconds)]
    windows = pd.concat([excerpt_windows(table, seconds=seconds, per_track=per_track, seed=seed),
                         pd.DataFrame({"track_id": short["track_id"], "start": 0.0, "duration": short["duration"]})],
                        ignore_index=True)
    windows["file"] = [str(excerpt_path(out, t, s)) for t, s in zip(windows["track_id"], windows["start"])]
    paths = dict(zip(table["track_id"], table["path"]))
    jobs = [{"track_id": track_id, "path": paths[track_id],
             "windows": [(w.start, w.duration, w.file) for w in rows.itertuples() if not os.path.exists(w.file)]}
            for track_id, rows in windows.groupby("track_id", sort=False)]
    jobs = [job for job in jobs if job["windows"]]
    logger.info("excerpts: %d excerpts of %d of %d tracks; %d tracks to cut", len(windows),
                windows["track_id"].nunique(), len(table), len(jobs))
    failed = {}
    for job, error in zip(jobs, parallel_map(_cut_job, jobs, workers)):
        if error:
            logger.warning("excerpts: %s failed: %s", job["track_id"], error)
            failed[job["track_id"]] = error
    windows = windows[[os.path.exists(file) for file in windows["file"]]]
    excerpts = windows[["track_id", "start"]].rename(columns={"track_id": "source_track"}).merge(
        table.drop(columns=["path", "duration"]), left_on="source_track", right_on="track_id", how="left")
    excerpts["track_id"] = [excerpt_id(t, s) for t, s in zip(excerpts["source_track"], excerpts["start"])]
    excerpts["path"] = windows["file"].to_numpy()
    excerpts["duration"] = [round(sf.info(file).frames / SAMPLE_RATE, 3) for file in windows["file"]]
    excerpts = excerpts.reindex(columns=list(EXCERPT_COLUMNS)).sort_values("track_id").reset_index(drop=True)
    write_table(excerpts, out / "excerpts.csv")
    excerpts.attrs["failed"] = failed
    return excerpts


def excerpt_id(track_id: str, start: float) -> str:
    """The id of the excerpt of ``track_id`` that starts at ``start`` seconds.

    Examples
    --------
    >>> excerpt_id("wesnoth-1.16-music/battle", 60.0)
    'wesnoth-1.16-music/battle@0060'
    """
    return f"{track_id}@{int(start):04d}"


def excerpt_path(out_dir: str | os.PathLike, track_id: str, start: float) -> Path:
    """Where the excerpt of ``track_id`` that starts at ``start`` seconds is written: a filesystem-safe path.

    Examples
    --------
    >>> excerpt_path("corpus", "alpha/theme", 30.0).as_posix()
    'corpus/excerpts/alpha/theme@0030.flac'
    >>> excerpt_path("corpus", "../odd name", 0.0).as_posix()
    'corpus/excerpts/_/odd_name-e19599e1@0000.flac'
    """
    parts = [re.sub(r"[^\w.+-]", "_", part, flags=re.ASCII)[:200] for part in str(track_id).split("/")]
    parts = ["_" if part in ("", ".", "..") else part for part in parts]
    if "/".join(parts) != track_id:
        parts[-1] += "-" + hashlib.sha1(str(track_id).encode()).hexdigest()[:8]
    parts[-1] = excerpt_id(parts[-1], start) + ".flac"
    return Path(out_dir, "excerpts", *parts)


def _cut_job(job: dict) -> str:
    """Decode a track once, up to its last window, and write each window; returns the error or ``''``."""
    import soundfile as sf

    bounds = [(round(start * SAMPLE_RATE), round((start + duration) * SAMPLE_RATE), file)
              for start, duration, file in job["windows"]]
    end = max(last for _, last, _ in bounds)
    parts: dict[str, list] = {file: [] for _, _, file in bounds}
    position = 0
    try:
        stream = stream_audio(job["path"])
        try:
            for block in stream:
                for first, last, file in bounds:
                    lo, hi = max(first - position, 0), min(last - position, block.shape[1])
                    if lo < hi:
                        parts[file].append(block[:, lo:hi])
                position += block.shape[1]
                if position >= end:
                    break
        finally:
            stream.close()
        for first, _, file in bounds:
            if not parts[file]:
                raise AudioError(f"the file ends before {first / SAMPLE_RATE:.1f} s")
            with atomic_path(file) as tmp:
                sf.write(str(tmp), np.concatenate(parts[file], axis=1).T, SAMPLE_RATE, format="FLAC",
                         subtype="PCM_16")
    except Exception as err:  # an unreadable track is reported and must not stop the corpus
        return f"{type(err).__name__}: {err}"
    return ""
