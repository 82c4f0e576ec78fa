"""The whole open-corpus recipe in one call: soundtracks, renders, split into excerpts, descriptors and targets.

Every step is resumable, so rerunning :func:`build_open_corpus` after an
interruption redoes only what is missing. The Debian game-data packages
(``debian.csv``, from :func:`~mtlmusic_training.corpus.debian.build_debian_corpus`)
and the rendered Debian MIDI packages (``midi.csv``) join when their tables are
in the corpus folder. The ``timbre`` source is added afterwards by
:func:`~mtlmusic_training.corpus.timbre.compute_timbre_targets`.

Examples
--------
>>> report = build_open_corpus("~/open-music/x", "~/open-corpus", per_style=100, workers=2)  # doctest: +SKIP
>>> sorted(report["seconds"])  # doctest: +SKIP
['descriptors', 'manifest', 'music21', 'soundtracks', 'targets']
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from ._io import read_table
from .descriptors import compute_audio_descriptors
from .renders import DEFAULT_SOUNDFONT, build_music21_corpus
from .soundtracks import build_soundtrack_corpus
from .sources import DEFAULT_TARGET_SOURCES, compute_opencorpus_targets
from .splits import DEFAULT_FRACTIONS, build_manifest, corpus_summary


def build_open_corpus(source_root: str | os.PathLike | None, out_dir: str | os.PathLike, *,
                      per_style: int = 100, per_track: int = 4, excerpt_seconds: float = 30.0, seed: int = 0,
                      workers: int = 2, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                      sources: Sequence[str] = DEFAULT_TARGET_SOURCES,
                      soundfonts: Sequence[str | os.PathLike] = (DEFAULT_SOUNDFONT,)) -> dict:
    """Build the whole open corpus: soundtracks, renders, manifest of excerpts, descriptors and targets.

    ``debian.csv`` and ``midi.csv`` of ``out_dir`` join the soundtracks and renders
    where present. Every step is resumable; rerunning after an interruption redoes
    only what is missing.

    Parameters
    ----------
    source_root : str or path-like, optional
        Extracted Debian packages (see the recipe of :mod:`mtlmusic_training.corpus`);
        None leaves the soundtracks out.
    out_dir : str or path-like
        The corpus folder (audio renders, CSV tables, descriptors, ``targets/``).
    per_style : int
        music21 pieces per style; 0 leaves the renders out.
    per_track : int
        Most excerpts per track (see :func:`~mtlmusic_training.corpus.excerpts.cut_excerpts`);
        0 keeps whole tracks.
    excerpt_seconds : float
        Length of an excerpt.
    seed : int
        Seed of the renders, the split, the excerpts and the targets.
    workers : int
        Processes for rendering, cutting and analysis.
    fractions : (float, float, float)
        Train, valid and test fractions.
    sources : sequence of str
        Learning sources to compute targets for.
    soundfonts : sequence of path-like
        Soundfonts the music21 renders draw from, one per piece (see
        :func:`~mtlmusic_training.corpus.renders.build_music21_corpus`).

    Returns
    -------
    dict
        ``tracks`` (count of source tracks), ``excerpts`` (rows of the manifest),
        ``minutes``, ``seconds`` (wall time per step) and ``summary`` (:func:`corpus_summary`).

    Examples
    --------
    >>> report = build_open_corpus("~/open-music/x", "~/open-corpus")  # doctest: +SKIP
    >>> sorted(report)  # doctest: +SKIP
    ['excerpts', 'minutes', 'seconds', 'summary', 'tracks']
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    tables = {name: read_table(out / f"{name}.csv") for name in ("debian", "midi") if (out / f"{name}.csv").exists()}
    started = time.perf_counter()
    if source_root is not None:
        tables["soundtracks"] = build_soundtrack_corpus(source_root, out)
        timings["soundtracks"] = time.perf_counter() - started
    if per_style > 0:
        started = time.perf_counter()
        tables["music21"] = build_music21_corpus(out, per_style, seed=seed, workers=workers, soundfonts=soundfonts)
        timings["music21"] = time.perf_counter() - started
    started = time.perf_counter()
    manifest = build_manifest(out, tables, fractions=fractions, seed=seed, per_track=per_track,
                              seconds=excerpt_seconds, workers=workers)
    timings["manifest"] = time.perf_counter() - started
    started = time.perf_counter()
    compute_audio_descriptors(out / "manifest.csv", out / "descriptors.npz", workers)
    timings["descriptors"] = time.perf_counter() - started
    started = time.perf_counter()
    compute_opencorpus_targets(out, sources=sources, seed=seed)
    timings["targets"] = time.perf_counter() - started
    summary = corpus_summary(out)
    minutes = float(summary[("minutes", "all")].sum())
    return {"tracks": int(summary[("tracks", "all")].sum()), "excerpts": len(manifest), "minutes": round(minutes, 1),
            "seconds": {k: round(v, 1) for k, v in timings.items()}, "summary": summary}
