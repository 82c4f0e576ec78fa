"""Learning targets and baseline features from teacher outputs, for a corpus with a ``manifest.csv``.

==========  ===========  ==========================================================================
source      teacher      target
==========  ===========  ==========================================================================
tag         musicnn      the study's ``tag``: pLSA (50 topics) of tag weights, here 100 x the mean
                         MSD_musicnn probability of each of its 50 Last.fm tags (Last.fm's own tag
                         weights run from 0 to 100)
mtt         musicnn      pLSA (50 topics) of 100 x the MTT_musicnn probability of 50 MagnaTagATune
                         tags (instruments, voices, moods, genres)
pitch       basic_pitch  pLSA (12 topics) of a bag of 20 terms: the seconds of transcribed notes
                         of each pitch class (12) and each octave A0-C8 (8), weighted by loudness
notes       basic_pitch  50-component Gaussian mixture on log(0.1 + transcribed notes per second)
tempo_cnn   tempocnn     the study's ``bpm`` made from tempo-CNN's global tempo instead of a beat
                         tracker's: 50-component Gaussian mixture on the tempo in BPM
==========  ===========  ==========================================================================

:func:`label_corpus` runs the teachers over the tracks of the manifest (the test
tracks only for a teacher whose features are an evaluation baseline, musicnn);
:func:`compute_teacher_targets` fits the targets on the ``train`` and ``valid``
tracks only; :func:`write_baseline_features` writes musicnn's features as
feature files that :func:`mtlmusic_training.evaluation.evaluate` reads.

Examples
--------
>>> import numpy as np
>>> notes = np.array([[0.0, 1.0, 60, 1.0], [0.5, 1.0, 72, 0.5]])   # C4 for 1 s, C5 for 0.5 s
>>> bag = pitch_bag(notes)
>>> bag[:12].round(2).tolist()[0], bag[12:].round(2).tolist()
(1.25, [0.0, 0.0, 0.0, 1.0, 0.25, 0.0, 0.0, 0.0])
>>> round(float(note_rate(notes, seconds=4.0)), 2)
0.5
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from mtlmusic.errors import ConfigError

from ..datasets import SPLITS, Manifest
from ..targets import SourceSpec, Targets, compute_targets, get_source, save_targets, targets_path
from . import TEACHERS, environment_python, get_teacher, load_outputs, run_teacher

logger = logging.getLogger(__name__)

#: Teacher sources: name -> (teacher, spec). ``tag`` keeps the study's spec.
TEACHER_SOURCES = {
    "tag": ("musicnn", None),
    "mtt": ("musicnn", SourceSpec("mtt", "plsa", 50, description="pLSA of MTT_musicnn tag weights")),
    "pitch": ("basic_pitch", SourceSpec("pitch", "plsa", 12, description="pLSA of basic-pitch pitch-class and "
                                                                         "octave durations")),
    "notes": ("basic_pitch", SourceSpec("notes", "gmm", description="log notes per second (basic-pitch)")),
    "tempo_cnn": ("tempocnn", SourceSpec("tempo_cnn", "gmm", description="global tempo in BPM (tempo-CNN)")),
}
#: Baseline representations of :func:`write_baseline_features`: name -> (teacher, output).
BASELINES = {"musicnn-penultimate": ("musicnn", "msd_penultimate"), "musicnn-mean-pool": ("musicnn", "msd_mean_pool")}
#: Added to the note rate before the log, so that a track without notes has a target too.
NOTE_RATE_OFFSET = 0.1
#: Lowest MIDI pitch of the octave bins (A0) and their number (A0 to C8).
LOWEST_PITCH, N_OCTAVES = 21, 8


def teacher_dir(corpus_dir: str | os.PathLike, teacher: str) -> Path:
    """Where a teacher's per-track outputs of a corpus live: ``<corpus>/teachers/<teacher>``.

    >>> teacher_dir("corpus", "musicnn").as_posix()
    'corpus/teachers/musicnn'
    """
    return Path(corpus_dir) / "teachers" / teacher


def baseline_path(corpus_dir: str | os.PathLike, name: str) -> Path:
    """The feature file of a baseline of :data:`BASELINES`: ``<corpus>/teachers/<name>.npz``.

    >>> baseline_path("corpus", "musicnn-penultimate").as_posix()
    'corpus/teachers/musicnn-penultimate.npz'
    """
    return Path(corpus_dir) / "teachers" / f"{name}.npz"


def pitch_bag(notes: np.ndarray) -> np.ndarray:
    """Seconds of notes per pitch class (C to B) and per octave from A0, weighted by amplitude: 20 values.

    Parameters
    ----------
    notes : ndarray, shape (n, 4)
        Start, end (seconds), MIDI pitch and amplitude of each note.

    Examples
    --------
    >>> pitch_bag(np.array([[0.0, 2.0, 69, 0.5]]))[[9, 16]].tolist()   # A4: class A, octave A4-G#5
    [1.0, 1.0]
    """
    notes = np.asarray(notes, dtype=np.float64).reshape(-1, 4)
    weight = np.clip(notes[:, 1] - notes[:, 0], 0, None) * notes[:, 3]
    pitch = np.round(notes[:, 2]).astype(int)
    classes = np.bincount(pitch % 12, weights=weight, minlength=12)
    octaves = np.bincount(np.clip((pitch - LOWEST_PITCH) // 12, 0, N_OCTAVES - 1), weights=weight,
                          minlength=N_OCTAVES)
    return np.concatenate([classes, octaves])


def note_rate(notes: np.ndarray, seconds: float) -> float:
    """Transcribed notes per second (NaN for no audio).

    >>> note_rate(np.zeros((6, 4)), 3.0)
    2.0
    """
    return len(np.asarray(notes).reshape(-1, 4)) / seconds if seconds > 0 else float("nan")


def label_corpus(corpus_dir: str | os.PathLike, teachers: Sequence[str] = tuple(TEACHERS), *,
                 pythons: Mapping[str, str | os.PathLike] | None = None, runner: str | os.PathLike | None = None,
                 max_minutes: float | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict[str, int]]:
    """Run each teacher over the tracks of ``<corpus_dir>/manifest.csv`` (resumable; see :func:`run_teacher`).

    A teacher labels the ``train`` and ``valid`` tracks, whose targets it gives, and,
    if its features are an evaluation baseline (:attr:`~mtlmusic_training.teachers.Teacher.baseline`),
    the held-out ``test`` tracks too. Excerpts are labelled in rounds
    (:func:`labelling_order`): the first excerpt of every source track, then the
    second, and so on, so that a run stopped by ``max_minutes`` covers the tracks
    evenly; the held-out tracks' first excerpts (the evaluation's) come first.

    Parameters
    ----------
    corpus_dir : str or path-like
    teachers : sequence of str
    pythons : mapping, optional
        Teacher -> interpreter; default each teacher's environment (:func:`environment_python`).
    runner : str or path-like, optional
        One runner script for every teacher (the tests' stand-in).
    max_minutes : float, optional
        Time limit of each teacher; rerun to label the rest.
    progress : callable, optional
        Called as ``progress(teacher, done, total)``.

    Returns
    -------
    dict
        Teacher -> counts of ``done``, ``failed`` and ``skipped`` tracks.

    Examples
    --------
    >>> label_corpus("corpus", ["musicnn"])  # doctest: +SKIP
    {'musicnn': {'done': 2400, 'failed': 0, 'skipped': 0}}
    """
    manifest = Manifest.load(Path(corpus_dir) / "manifest.csv")
    order = labelling_order(corpus_dir)
    held_out = np.asarray(manifest.splits)[order] == "test"
    all_items = manifest.items()
    report = {}
    for teacher in teachers:
        python = (pythons or {}).get(teacher) or environment_python(teacher)
        rows = order if get_teacher(teacher).baseline else order[~held_out]
        items = [all_items[row] for row in rows]
        report[teacher] = run_teacher(teacher, items, teacher_dir(corpus_dir, teacher), python=python,
                                      runner=runner, max_minutes=max_minutes,
                                      progress=(lambda done, total, t=teacher: progress(t, done, total))
                                      if progress else None)
    return report


def labelling_order(corpus_dir: str | os.PathLike) -> np.ndarray:
    """Manifest rows in labelling rounds: each source track's first excerpt (by start), then its second, ...

    Within a round the test tracks come first: their first excerpts are the
    held-out evaluation's, for which musicnn's features are a baseline. Whole-track corpora (no ``source_track`` column in ``metadata.csv``) keep the manifest's order.

    Examples
    --------
    >>> labelling_order("corpus")  # doctest: +SKIP
    array([0, 2, 1])
    """
    import pandas as pd

    from ..corpus._io import read_table

    corpus = Path(corpus_dir)
    manifest = Manifest.load(corpus / "manifest.csv")
    metadata = corpus / "metadata.csv"
    table = read_table(metadata) if metadata.is_file() else pd.DataFrame()
    if "source_track" not in table or "start" not in table:
        return np.arange(len(manifest))
    table = pd.DataFrame({"track_id": manifest.track_ids, "row": np.arange(len(manifest))}).merge(
        table[["track_id", "source_track", "start"]], how="left", on="track_id")
    table["round"] = table.sort_values("start", kind="stable").groupby("source_track", dropna=False).cumcount()
    table["training"] = np.asarray(manifest.splits) != "test"
    return table.sort_values(["round", "training", "row"], kind="stable")["row"].to_numpy()


def compute_teacher_targets(corpus_dir: str | os.PathLike, sources: Sequence[str] = tuple(TEACHER_SOURCES), *,
                            splits: Sequence[str] = ("train", "valid"), seed: int = 0,
                            dims: Mapping[str, int] | None = None) -> dict[str, Targets]:
    """Targets of the teacher sources, one ``<corpus_dir>/targets/<source>.npz`` per source.

    Rows follow ``manifest.csv``. Only tracks of ``splits`` with a teacher result
    get a target and enter the fits (pLSA, mixtures); the held-out tracks have
    ``mask`` false.

    Parameters
    ----------
    corpus_dir : str or path-like
        A corpus labelled by :func:`label_corpus`.
    sources : sequence of str
        Names of :data:`TEACHER_SOURCES`.
    splits : sequence of str
    seed : int
        Seed of the pLSA and mixture initialisations.
    dims : mapping, optional
        Topics or mixture components per source instead of the defaults.

    Returns
    -------
    dict
        Source -> :class:`~mtlmusic_training.targets.Targets`.

    Examples
    --------
    >>> targets = compute_teacher_targets("corpus", ["tag", "pitch"])  # doctest: +SKIP
    >>> targets["tag"].z.shape[1]  # doctest: +SKIP
    50
    """
    corpus = Path(corpus_dir)
    unknown = sorted(set(sources) - set(TEACHER_SOURCES)) + sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ConfigError(f"Unknown teacher sources or splits {unknown}; sources: {', '.join(TEACHER_SOURCES)}; "
                          f"splits: {', '.join(SPLITS)}.")
    manifest = Manifest.load(corpus / "manifest.csv")
    fit = np.isin(manifest.splits, list(splits))
    outputs = {}
    results = {}
    for source in sources:
        teacher, spec = TEACHER_SOURCES[source]
        spec = spec or get_source(source)
        if dims and source in dims:
            spec = dataclasses.replace(spec, dim=int(dims[source]))
        if teacher not in outputs:
            outputs[teacher] = load_outputs(teacher, teacher_dir(corpus, teacher), manifest.track_ids)
            if not outputs[teacher].present[fit].any():
                raise ConfigError(f"No {teacher} outputs for the {'/'.join(splits)} tracks of {corpus}: run "
                                  "label_corpus (mtlmusic-train teachers-label) first.")
        data = _source_data(source, outputs[teacher])
        use = fit & outputs[teacher].present
        if data.ndim == 1:
            data[~use] = np.nan
        else:
            data[~use] = 0.0
        targets = compute_targets(spec, data, seed=seed, track_ids=manifest.track_ids)
        save_targets(targets, targets_path(corpus / "targets", source))
        results[source] = targets
        logger.info("targets %s: %d x %d, %d tracks with a target", source, *targets.z.shape, int(targets.mask.sum()))
    return results


def write_baseline_features(corpus_dir: str | os.PathLike, names: Sequence[str] = tuple(BASELINES)) -> list[Path]:
    """Write a teacher's features of every labelled track as ``<corpus>/teachers/<name>.npz`` feature files.

    The files follow :mod:`mtlmusic.extraction.sinks` (one row per track, with its
    audio path), so :func:`~mtlmusic_training.evaluation.evaluate` takes them as a
    representation.

    Examples
    --------
    >>> write_baseline_features("corpus")  # doctest: +SKIP
    [PosixPath('corpus/teachers/musicnn-penultimate.npz'), PosixPath('corpus/teachers/musicnn-mean-pool.npz')]
    """
    from mtlmusic.extraction.sinks import write_features

    corpus = Path(corpus_dir)
    manifest = Manifest.load(corpus / "manifest.csv")
    written = []
    for name in names:
        if name not in BASELINES:
            raise ConfigError(f"Unknown baseline {name!r}; choose from {', '.join(BASELINES)}.")
        teacher, output = BASELINES[name]
        outputs = load_outputs(teacher, teacher_dir(corpus, teacher), manifest.track_ids)
        rows = np.flatnonzero(outputs.present)
        features = outputs.arrays[output][rows]
        paths = [str(manifest.paths[row]) for row in rows]
        names_ = [f"{output}_{i}" for i in range(features.shape[1])]
        written.append(write_features(baseline_path(corpus, name), features, paths, names_,
                                      meta={"teacher": teacher, "output": output, "aggregation": "mean"}))
    return written


def _source_data(source: str, outputs) -> np.ndarray:
    """The raw data of a teacher source, one row per track (zeros / NaN where a track has no result)."""
    if source == "tag":
        return 100.0 * np.nan_to_num(outputs.arrays["msd_tags"].astype(np.float64))
    if source == "mtt":
        return 100.0 * np.nan_to_num(outputs.arrays["mtt_tags"].astype(np.float64))
    if source == "tempo_cnn":
        return outputs.arrays["bpm"].astype(np.float64)
    notes, seconds = outputs.arrays["notes"], outputs.arrays["seconds"]
    if source == "pitch":
        return np.array([pitch_bag(n) if n is not None else np.zeros(12 + N_OCTAVES) for n in notes])
    return np.log(np.array([note_rate(n, s) if n is not None else np.nan for n, s in zip(notes, seconds)])
                  + NOTE_RATE_OFFSET)
