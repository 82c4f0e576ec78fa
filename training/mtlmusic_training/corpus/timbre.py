"""The ``timbre`` learning source of the open corpus: pLSA topics of bags of MFCC words.

Every analysis frame of a track's first minute is described by 20 MFCCs and
assigned to the nearest word of a k-means codebook; each track becomes a
histogram of words, and pLSA turns the histograms into timbre topics, as the
study's ``tag`` source does with tags. Codebook and topics are fitted on the
training splits only.

Examples
--------
>>> TIMBRE_WORDS, TIMBRE_TOPICS
(64, 16)
>>> targets = compute_timbre_targets("corpus")  # doctest: +SKIP
>>> targets.z.shape  # doctest: +SKIP
(585, 16)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtlmusic.audio import SAMPLE_RATE

from ..datasets import Manifest
from ..targets import Targets, plsa, save_targets, targets_path
from ._io import parallel_map
from .descriptors import analysis_audio

#: MFCC "words" of the timbre source (k-means codebook size) and its pLSA topics.
TIMBRE_WORDS = 64
TIMBRE_TOPICS = 16


def compute_timbre_targets(corpus_dir: str | os.PathLike, *, splits: Sequence[str] = ("train", "valid"),
                           n_words: int = TIMBRE_WORDS, n_topics: int = TIMBRE_TOPICS, seed: int = 0,
                           workers: int = 2) -> Targets:
    """The ``timbre`` source: pLSA topics of each track's bag of MFCC words.

    Every frame's 20 MFCCs are assigned to the nearest of ``n_words`` k-means
    centroids (fitted on up to 400 frames of each ``splits`` track only); each
    track becomes a histogram of words, and pLSA over the ``splits`` tracks gives
    ``n_topics`` timbre topics. Written to ``targets/timbre.npz``; tracks outside
    ``splits`` have no target.

    Parameters
    ----------
    corpus_dir : str or path-like
        A built corpus folder (``manifest.csv``).
    splits : sequence of str
        Splits that get targets and enter the fits.
    n_words : int
        Size of the k-means codebook.
    n_topics : int
        pLSA topics: the target's dimension.
    seed : int
        Seed of the frame sample, the k-means and the pLSA.
    workers : int
        Processes computing the MFCCs.

    Returns
    -------
    Targets
        ``z`` of shape ``(tracks, n_topics)`` (uniform where ``mask`` is false),
        ``topic_term`` of shape ``(n_topics, n_words)``.

    Examples
    --------
    >>> targets = compute_timbre_targets("corpus")  # doctest: +SKIP
    >>> targets.z.shape  # doctest: +SKIP
    (585, 16)
    """
    import scipy.sparse as sp
    from sklearn.cluster import MiniBatchKMeans

    corpus = Path(corpus_dir)
    manifest = Manifest.load(corpus / "manifest.csv")
    frames = list(parallel_map(_mfcc_frames, [str(path) for path in manifest.paths], workers))
    use = np.isin(manifest.splits, list(splits))
    rng = np.random.default_rng(seed)
    sample = np.concatenate([f[rng.choice(len(f), size=min(len(f), 400), replace=False)]
                             for f, u in zip(frames, use) if u])
    codebook = MiniBatchKMeans(n_words, random_state=seed, n_init=3).fit(sample)
    counts = np.zeros((len(manifest), n_words))
    for i, track_frames in enumerate(frames):
        counts[i] = np.bincount(codebook.predict(track_frames), minlength=n_words)
    topics = plsa(sp.csr_matrix(counts[use]), k=n_topics, seed=seed)
    z = np.full((len(manifest), n_topics), 1.0 / n_topics, dtype=np.float32)
    z[use] = topics.doc_topic
    targets = Targets("timbre", z, use, {"kind": "plsa", "dim": n_topics, "words": n_words, "seed": seed},
                      np.asarray(manifest.track_ids, dtype=str), topics.topic_term)
    save_targets(targets, targets_path(corpus / "targets", "timbre"))
    return targets


def _mfcc_frames(path: str) -> np.ndarray:
    """20 MFCCs of every analysis frame of the first minute of a track, ``(frames, 20)``."""
    import librosa

    y = analysis_audio(path)
    return librosa.feature.mfcc(y=y, sr=SAMPLE_RATE, n_mfcc=20).T.astype(np.float32)
