"""Algorithm-derived audio descriptors of the corpus tracks: tempo, onset rate, local keys and tempogram.

:func:`describe_audio` analyses one mono signal with librosa;
:func:`compute_audio_descriptors` runs it on the first minute of every
manifest track (cached per track, resumable) and writes one ``.npz`` file that
:func:`load_descriptors` reads back as :class:`Descriptors`.

Examples
--------
>>> KEY_NAMES[:2], KEY_NAMES[12], len(TEMPO_EDGES) - 1
(('C major', 'C# major'), 'C minor', 20)
>>> computed = compute_audio_descriptors("corpus/manifest.csv", "corpus/descriptors.npz", workers=2)  # doctest: +SKIP
>>> load_descriptors("corpus/descriptors.npz").tempo.shape == computed.tempo.shape  # doctest: +SKIP
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtlmusic.audio import SAMPLE_RATE, stream_audio
from mtlmusic.errors import AudioError
from mtlmusic.files import atomic_path

from ..datasets import Manifest
from ._io import parallel_map

logger = logging.getLogger(__name__)

#: Audio analysed per track by :func:`compute_audio_descriptors`, in seconds.
ANALYSIS_SECONDS = 60.0
#: Hop of the descriptor analysis, in samples at 22,050 Hz.
HOP_LENGTH = 512
#: Length of the windows of the local-key histogram, in seconds.
KEY_WINDOW_SECONDS = 5.0
#: Edges of the tempogram histogram: 20 bins, 6 per octave, from 30 to about 302 BPM.
TEMPO_EDGES = 30.0 * 2.0 ** (np.arange(21) / 6.0)
#: Version of the descriptor analysis; cached results of another version are recomputed.
DESCRIPTOR_VERSION = 1

# Krumhansl-Kessler key profiles (C major, C minor).
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
#: Names of the 24 keys, in the column order of the local-key histogram.
KEY_NAMES = tuple(f"{p} {mode}" for mode in ("major", "minor")
                  for p in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"))


@dataclass(frozen=True)
class Descriptors:
    """Algorithm-derived descriptors of a corpus, one row per manifest track.

    Attributes
    ----------
    track_ids : ndarray of str, shape (n,)
    tempo : ndarray, shape (n,)
        Beat-tracked tempo in BPM (``librosa.beat.beat_track``); 0 where no beat was found.
    onset_rate : ndarray, shape (n,)
        Detected onsets per second.
    chroma : ndarray, shape (n, 12)
        Mean CQT chroma (C to B).
    key_counts : ndarray, shape (n, 24)
        Number of 5 s windows whose chroma correlates best with each key of :data:`KEY_NAMES`.
    tempogram : ndarray, shape (n, 20)
        Mean autocorrelation tempogram of the mean-removed onset envelope, averaged
        within the bins of :data:`TEMPO_EDGES`, negative values clipped, rows summing
        to 1 (0 for silence).
    seconds : ndarray, shape (n,)
        Audio analysed (at most :data:`ANALYSIS_SECONDS`); NaN where the track failed.
    n_computed : int
        Tracks analysed by this call (the others came from the cache).
    """

    track_ids: np.ndarray
    tempo: np.ndarray
    onset_rate: np.ndarray
    chroma: np.ndarray
    key_counts: np.ndarray
    tempogram: np.ndarray
    seconds: np.ndarray
    n_computed: int = 0


# The arrays of a descriptors file, in the field order of Descriptors.
_ARRAYS = tuple(f.name for f in dataclasses.fields(Descriptors) if f.name != "n_computed")


def compute_audio_descriptors(manifest: str | os.PathLike, out: str | os.PathLike, workers: int = 2, *,
                              max_seconds: float = ANALYSIS_SECONDS) -> Descriptors:
    """Algorithm-derived descriptors of every track of a manifest, cached and resumable.

    Each track's first ``max_seconds`` are decoded at 22,050 Hz, the two channels
    averaged, and analysed with librosa (hop 512): the beat-tracked tempo, the
    onset rate, the mean CQT chroma, a histogram of local keys (5 s windows matched
    to the 24 Krumhansl-Kessler profiles) and a tempogram histogram (the mean
    autocorrelation tempogram of the mean-removed onset envelope in the bins of
    :data:`TEMPO_EDGES`; without the mean removal the window's own autocorrelation
    would dominate every histogram). Each track's
    result is cached in ``<out parent>/descriptors/<hash>.npz`` and reused when the
    track id, path and analysis settings match; ``out`` collects all tracks, in
    manifest order. A track that cannot be decoded gets NaN values and a warning
    (cached too: delete its cache file to retry).

    Parameters
    ----------
    manifest : str or path-like
        ``manifest.csv`` (``track_id``, ``path``, ``split``), read with
        :meth:`~mtlmusic_training.datasets.Manifest.load`: relative paths are relative to its folder.
    out : str or path-like
        The ``.npz`` file to write.
    workers : int
        Analysis processes.
    max_seconds : float
        Audio analysed per track.

    Returns
    -------
    Descriptors

    Examples
    --------
    >>> descriptors = compute_audio_descriptors("corpus/manifest.csv", "corpus/descriptors.npz")  # doctest: +SKIP
    >>> descriptors.key_counts.shape[1], descriptors.tempogram.shape[1]  # doctest: +SKIP
    (24, 20)
    """
    tracks = Manifest.load(manifest)
    out = Path(out)
    cache = out.parent / "descriptors"
    cache.mkdir(parents=True, exist_ok=True)
    settings = {"version": DESCRIPTOR_VERSION, "max_seconds": float(max_seconds), "hop": HOP_LENGTH}
    jobs = []
    for track_id, path in tracks.items():
        key = hashlib.sha1(json.dumps([track_id, str(path), settings]).encode()).hexdigest()[:20]
        jobs.append({"track_id": track_id, "path": str(path), "file": str(cache / f"{key}.npz"),
                     "max_seconds": float(max_seconds)})
    todo = [job for job in jobs if not Path(job["file"]).exists()]
    logger.info("descriptors: %d tracks, %d to analyse", len(jobs), len(todo))
    started = time.perf_counter()
    for done, (track_id, error) in enumerate(parallel_map(_descriptor_job, todo, workers), 1):
        if error:
            logger.warning("descriptors: %s failed: %s", track_id, error)
        if done % 25 == 0:
            logger.info("descriptors: %d / %d (%.0f s)", done, len(todo), time.perf_counter() - started)
    fields = _ARRAYS[1:]
    values: dict[str, list] = {name: [] for name in fields}
    for job in jobs:
        with np.load(job["file"]) as data:
            for name in fields:
                values[name].append(data[name])
    result = Descriptors(np.asarray(tracks.track_ids, dtype=str),
                         *(np.asarray(values[name], dtype=np.float64) for name in fields), n_computed=len(todo))
    _write_npz(out, {name: getattr(result, name) for name in _ARRAYS})
    return result


def load_descriptors(path: str | os.PathLike) -> Descriptors:
    """Read the file written by :func:`compute_audio_descriptors`.

    Parameters
    ----------
    path : str or path-like
        A ``descriptors.npz`` file.

    Returns
    -------
    Descriptors
        With ``n_computed`` 0.

    Examples
    --------
    >>> load_descriptors("corpus/descriptors.npz").tempo.shape  # doctest: +SKIP
    (585,)
    """
    with np.load(Path(path), allow_pickle=False) as data:
        return Descriptors(**{name: data[name] for name in _ARRAYS})


def describe_audio(y: np.ndarray, sr: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
    """The descriptors of one mono signal at 22,050 Hz (see :func:`compute_audio_descriptors`).

    Parameters
    ----------
    y : ndarray, shape (n,)
        Mono audio.
    sr : int
        Its sample rate (22,050 Hz for the descriptors of the corpus).

    Returns
    -------
    dict
        ``tempo``, ``onset_rate``, ``chroma`` (12), ``key_counts`` (24),
        ``tempogram`` (20) and ``seconds``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(10 * 22050) / 22050
    >>> clicks = (np.sin(2 * np.pi * 440 * t) * (t % 0.5 < 0.05)).astype(np.float32)
    >>> result = describe_audio(clicks)
    >>> bool(100 < result["tempo"] < 140), result["key_counts"].shape, round(float(result["tempogram"].sum()), 6)
    (True, (24,), 1.0)
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    seconds = len(y) / sr
    envelope = librosa.onset.onset_strength(y=y, sr=sr, hop_length=HOP_LENGTH)
    tempo, _ = librosa.beat.beat_track(onset_envelope=envelope, sr=sr, hop_length=HOP_LENGTH)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sr, hop_length=HOP_LENGTH)
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=HOP_LENGTH)
    window = max(1, int(round(KEY_WINDOW_SECONDS * sr / HOP_LENGTH)))
    profiles = np.stack([np.roll(profile, shift) for profile in (_MAJOR_PROFILE, _MINOR_PROFILE)
                         for shift in range(12)])
    profiles = (profiles - profiles.mean(axis=1, keepdims=True)) / profiles.std(axis=1, keepdims=True)
    key_counts = np.zeros(24)
    energy = np.abs(y).max() if y.size else 0.0
    for start in range(0, chroma.shape[1], window):
        local = chroma[:, start:start + window].mean(axis=1)
        if energy > 1e-4 and local.std() > 1e-6:
            key_counts[np.argmax(profiles @ ((local - local.mean()) / local.std()))] += 1
    tempogram = librosa.feature.tempogram(onset_envelope=envelope - envelope.mean(), sr=sr,
                                          hop_length=HOP_LENGTH).mean(axis=1)
    lag_bpm = librosa.tempo_frequencies(len(tempogram), hop_length=HOP_LENGTH, sr=sr)
    bins = np.digitize(lag_bpm, TEMPO_EDGES) - 1
    inside = (bins >= 0) & (bins < len(TEMPO_EDGES) - 1)
    sums = np.bincount(bins[inside], weights=np.clip(tempogram[inside], 0, None), minlength=len(TEMPO_EDGES) - 1)
    counts = np.bincount(bins[inside], minlength=len(TEMPO_EDGES) - 1)
    histogram = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    total = histogram.sum()
    histogram = histogram / total if total > 0 and energy > 1e-4 else np.zeros_like(histogram)
    return {"tempo": np.float64(np.atleast_1d(tempo)[0] if energy > 1e-4 else 0.0),
            "onset_rate": np.float64(len(onsets) / seconds if seconds else 0.0),
            "chroma": chroma.mean(axis=1).astype(np.float64), "key_counts": key_counts,
            "tempogram": histogram, "seconds": np.float64(seconds)}


def _descriptor_job(job: dict) -> tuple[str, str]:
    error = ""
    try:
        y = analysis_audio(job["path"], job["max_seconds"])
        if not y.size:
            raise AudioError("no audio")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = describe_audio(y)
    except Exception as err:  # an unreadable track gets NaN descriptors and must not stop the corpus
        error = f"{type(err).__name__}: {err}"
        result = {"tempo": np.nan, "onset_rate": np.nan, "chroma": np.full(12, np.nan),
                  "key_counts": np.full(24, np.nan), "tempogram": np.full(len(TEMPO_EDGES) - 1, np.nan),
                  "seconds": np.nan}
    _write_npz(Path(job["file"]), result)
    return job["track_id"], error


def analysis_audio(path: str | os.PathLike, max_seconds: float = ANALYSIS_SECONDS) -> np.ndarray:
    """The first ``max_seconds`` of a file at 22,050 Hz, its two channels averaged.

    Parameters
    ----------
    path : str or path-like
        An audio file that :func:`mtlmusic.audio.stream_audio` decodes.
    max_seconds : float
        Audio kept; only as much of the file is decoded.

    Returns
    -------
    ndarray of float32, shape (n,)
        At most ``max_seconds * 22050`` samples.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> sf.write(path, np.zeros((3 * 22050, 2), dtype=np.float32), 22050)
    >>> analysis_audio(path, max_seconds=2.0).shape
    (44100,)
    """
    samples = int(max_seconds * SAMPLE_RATE)
    blocks, have = [], 0
    stream = stream_audio(path)
    try:
        for block in stream:
            blocks.append(block.mean(axis=0))
            have += block.shape[1]
            if have >= samples:
                break
    finally:
        stream.close()
    return np.concatenate(blocks)[:samples] if blocks else np.zeros(0, np.float32)


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
