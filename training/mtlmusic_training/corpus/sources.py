"""The learning sources of the open corpus and their targets, computed on the training splits only.

:data:`OPEN_SOURCES` (``onset``, ``chroma``, ``tempogram``) join the study's
``self`` and ``bpm``; :func:`register_opencorpus_sources` registers them with
:mod:`mtlmusic_training.targets`. :func:`compute_opencorpus_targets` turns the
audio descriptors (:mod:`.descriptors`) and the ``composer`` labels into one
target file per source; :func:`label_targets` makes the label distributions of
the metadata sources. ``soundtrack`` and ``style`` are the held-out evaluation
labels and are not training sources unless asked for explicitly.

Examples
--------
>>> targets = label_targets("composer", ["a", "b", "", "a"], smoothing=0.1)
>>> targets.params["classes"], targets.mask.tolist()
(['a', 'b'], [True, True, False, True])
>>> targets = compute_opencorpus_targets("corpus")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mtlmusic.errors import ConfigError

from ..datasets import SPLITS, Manifest
from ..targets import SourceSpec, Targets, compute_targets, get_source, register_source, save_targets, targets_path
from ._io import read_table
from .descriptors import load_descriptors

logger = logging.getLogger(__name__)

#: Soundtracks whose composer tags make the ``composer`` source (the others have one composer each, or
#: composers that would just name the soundtrack).
COMPOSER_SOUNDTRACKS = ("wesnoth-1.16-music",)
#: Sources that :func:`compute_opencorpus_targets` computes by default. ``soundtrack`` and ``style`` are
#: the held-out evaluation labels: training on them would leak the evaluation tasks.
DEFAULT_TARGET_SOURCES = ("bpm", "onset", "chroma", "tempogram", "composer")
#: Metadata sources whose targets are label distributions.
LABEL_SOURCES = ("composer", "soundtrack", "style")
#: Label smoothing of the metadata sources: the true class gets ``1 - s``, the others share ``s``.
LABEL_SMOOTHING = 0.1

#: The learning sources of the open corpus besides the study's ``self`` and ``bpm``.
OPEN_SOURCES = {
    "onset": SourceSpec("onset", "gmm", description="onsets per second in the first minute (librosa)"),
    "chroma": SourceSpec("chroma", "plsa", 12, description="histogram over 24 keys of 5 s windows "
                                                           "(CQT chroma matched to Krumhansl-Kessler profiles)"),
    "tempogram": SourceSpec("tempogram", "plsa", 12, description="mean autocorrelation tempogram in 20 "
                                                                 "log-spaced tempo bins, 30-302 BPM"),
}


def register_opencorpus_sources(*, replace: bool = False) -> tuple[SourceSpec, ...]:
    """Register the open corpus's audio sources (:data:`OPEN_SOURCES`) with the study's source registry.

    ``bpm`` is the study's own source (a 50-component Gaussian mixture) and is
    already registered; the metadata sources are label distributions that
    :func:`label_targets` makes.

    Parameters
    ----------
    replace : bool
        Allow replacing registered sources of the same names.

    Returns
    -------
    tuple of SourceSpec
        The registered specs.

    Raises
    ------
    ConfigError
        If a source of one of these names is registered and ``replace`` is false.

    Examples
    --------
    >>> register_opencorpus_sources()  # doctest: +SKIP
    >>> OPEN_SOURCES["chroma"].kind, OPEN_SOURCES["chroma"].dim, OPEN_SOURCES["onset"].dim
    ('plsa', 12, 50)
    """
    return tuple(register_source(spec, replace=replace) for spec in OPEN_SOURCES.values())


def label_targets(source: str, labels: Sequence[str], *, classes: Sequence[str] | None = None,
                  smoothing: float = LABEL_SMOOTHING, track_ids: Sequence[str] | None = None) -> Targets:
    """Label distributions: the true class gets ``1 - smoothing``, the other classes share ``smoothing``.

    Parameters
    ----------
    source : str
        Source name (``composer``, ``soundtrack``, ``style``).
    labels : sequence of str
        One label per track; ``''`` or None for tracks without one, and labels not in
        ``classes``, get no target (``mask`` false, NaN row).
    classes : sequence of str, optional
        The classes, in column order; default: the distinct labels, sorted.
    smoothing : float
        Label smoothing, in ``[0, 1)``.
    track_ids : sequence of str, optional

    Returns
    -------
    Targets
        ``params``: ``kind='label'``, ``dim``, ``smoothing`` and ``classes``.

    Examples
    --------
    >>> import numpy as np
    >>> targets = label_targets("composer", ["a", "b", "", "a"], smoothing=0.1)
    >>> np.round(targets.z[0].astype(float), 2).tolist(), targets.mask.tolist()
    ([0.9, 0.1], [True, True, False, True])
    """
    if not 0 <= smoothing < 1:
        raise ConfigError(f"smoothing must be in [0, 1), got {smoothing}.")
    labels = ["" if label is None or (isinstance(label, float) and math.isnan(label)) else str(label)
              for label in labels]
    classes = sorted({label for label in labels if label}) if classes is None else [str(c) for c in classes]
    if len(classes) < 2:
        raise ConfigError(f"Source {source!r} needs at least two classes, got {classes}.")
    index = {name: i for i, name in enumerate(classes)}
    z = np.full((len(labels), len(classes)), np.nan, dtype=np.float32)
    mask = np.array([label in index for label in labels], dtype=bool)
    z[mask] = smoothing / (len(classes) - 1)
    z[np.flatnonzero(mask), [index[label] for label in labels if label in index]] = 1.0 - smoothing
    ids = None if track_ids is None else np.asarray(track_ids, dtype=str)
    params = {"kind": "label", "dim": len(classes), "smoothing": float(smoothing), "classes": list(classes)}
    return Targets(source, z, mask, params, ids)


def compute_opencorpus_targets(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                               sources: Sequence[str] = DEFAULT_TARGET_SOURCES,
                               splits: Sequence[str] = ("train", "valid"), seed: int = 0,
                               dims: Mapping[str, int] | None = None,
                               composer_soundtracks: Sequence[str] = COMPOSER_SOUNDTRACKS) -> dict[str, Targets]:
    """Learning targets of the open corpus, one :func:`~mtlmusic_training.targets.save_targets` file per source.

    Rows follow ``manifest.csv``. Only tracks of ``splits`` get targets, and only
    they enter the fits (pLSA, Gaussian mixtures, label classes); the other tracks
    (the test split by default) have ``mask`` false, so nothing of the held-out part
    reaches training.

    ==========  ====================================================================
    source      target
    ==========  ====================================================================
    bpm         the study's ``bpm``: Gaussian mixture on the beat-tracked tempo
    onset       Gaussian mixture on the onset rate
    chroma      pLSA (12 topics) of the 24-key histogram of local keys
    tempogram   pLSA (12 topics) of the 20-bin tempogram histogram (scaled to 100)
    composer    label distribution over the composers of ``composer_soundtracks``
    soundtrack  label distribution over soundtracks (evaluation label: opt-in only)
    style       label distribution over styles (evaluation label: opt-in only)
    ==========  ====================================================================

    Parameters
    ----------
    corpus_dir : str or path-like
        Folder with ``manifest.csv``, ``metadata.csv`` and ``descriptors.npz``.
    out_dir : str or path-like, optional
        Where the target files go; default ``<corpus_dir>/targets``.
    sources : sequence of str
        Sources to compute.
    splits : sequence of str
        Splits that get targets.
    seed : int
        Seed of the pLSA and mixture initialisations.
    dims : mapping, optional
        Number of outputs per source instead of the registered ones (pLSA topics,
        mixture components).
    composer_soundtracks : sequence of str
        Soundtracks whose composers form the ``composer`` classes.

    Returns
    -------
    dict
        Source name -> :class:`~mtlmusic_training.targets.Targets`, also saved as ``<out_dir>/<source>.npz``.

    Examples
    --------
    >>> targets = compute_opencorpus_targets("corpus")  # doctest: +SKIP
    >>> targets["bpm"].z.shape[1], int(targets["composer"].mask.sum()) > 0  # doctest: +SKIP
    (50, True)
    """
    import pandas as pd

    corpus = Path(corpus_dir)
    out = corpus / "targets" if out_dir is None else Path(out_dir)
    manifest = Manifest.load(corpus / "manifest.csv")
    track_ids = list(manifest.track_ids)
    metadata = pd.DataFrame({"track_id": track_ids}).merge(read_table(corpus / "metadata.csv"), how="left",
                                                           on="track_id")
    descriptors = load_descriptors(corpus / "descriptors.npz")
    if not np.array_equal(descriptors.track_ids, np.asarray(track_ids, dtype=str)):
        raise ConfigError(f"{corpus / 'descriptors.npz'} does not follow manifest.csv; rerun "
                          "compute_audio_descriptors.")
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ConfigError(f"Unknown splits {sorted(unknown)}; choose from {', '.join(SPLITS)}.")
    fit = np.isin(manifest.splits, list(splits))
    dims = dict(dims or {})
    results = {}
    for source in sources:
        if source in LABEL_SOURCES:
            labels = metadata[source].fillna("").astype(str).to_numpy(copy=True)
            if source == "composer":
                labels[~metadata["soundtrack"].isin(list(composer_soundtracks)).to_numpy()] = ""
            labels[~fit] = ""
            if source in dims:
                raise ConfigError(f"The number of classes of {source!r} comes from its labels; drop it from dims.")
            targets = label_targets(source, labels, track_ids=track_ids)
        else:
            spec = OPEN_SOURCES.get(source) or get_source(source)
            if source in dims:
                spec = dataclasses.replace(spec, dim=int(dims[source]))
            data = {
                "bpm": descriptors.tempo,
                "onset": descriptors.onset_rate,
                "chroma": descriptors.key_counts,
                "tempogram": 100.0 * descriptors.tempogram,
            }.get(source)
            if data is None:
                raise ConfigError(f"The open corpus has no data for source {source!r}; choose from "
                                  f"bpm, {', '.join(OPEN_SOURCES)}, {', '.join(LABEL_SOURCES)}.")
            data = np.array(data, dtype=np.float64)
            if data.ndim == 1:
                data[~fit | ~np.isfinite(data)] = np.nan
            else:
                data[~fit | ~np.isfinite(data).all(axis=1)] = 0.0
            targets = compute_targets(spec, data, seed=seed, track_ids=track_ids)
        save_targets(targets, targets_path(out, source))
        results[source] = targets
        logger.info("targets %s: %d x %d, %d tracks with a target", source, *targets.z.shape, int(targets.mask.sum()))
    return results
