"""Score a representation on a dataset: features extracted once (and cached), then the task's protocol.

:func:`evaluate` takes what produces the features and an :class:`~mtlmusic_training.evaluation.EvalDataset`:

====================================  ==============================================================
features source                       features of every track
====================================  ==============================================================
a :class:`mtlmusic.Model`             its aggregated representation (``Model.extract``)
a model name or ``.safetensors`` file the model loaded with :func:`mtlmusic.load_model`
a feature file (``.npy``, ``.npz``,   its rows, matched to the dataset's audio paths
``.csv``, ``.parquet``)
a list of SS-R model names or files   their MSS-CR representation, assembled from each member's
                                      features (see below); an MSS-CR model name is assembled so too
``"mfcc"``                            :func:`~mtlmusic_training.evaluation.mfcc_features` (120 values)
``"rand"``                            the untrained network of :func:`rand_model` (512 values)
a callable ``f(y, sr) -> vector``     ``f`` of every track's waveform (``(2, n)`` at 22,050 Hz)
====================================  ==============================================================

then scores the features with :func:`~mtlmusic_training.evaluation.evaluate_classification`,
:func:`~mtlmusic_training.evaluation.evaluate_regression` or
:func:`~mtlmusic_training.evaluation.evaluate_recommendation`, as ``dataset.task`` says.

Feature cache
-------------
With ``cache_dir``, the features of one (features source, dataset) pair are computed once and kept
in ``cache_dir`` as a feature file (``.npz``, see :mod:`mtlmusic.extraction.sinks`, written atomically). Its name
ends with a hash of

* the source's identity: the SHA-256 of a model's tensors and scaler (the ``tensors_sha256`` a
  model file records), the baseline's name and version, or the ``key`` given for a callable;
* the dataset's audio paths (absolute, in order);
* the cache format and the mtlmusic version (the front end's code is part of the features).

Its name starts with the dataset's name, but datasets of the same tracks in the same order (the
open corpus's ``style`` and ``tempo``) share one entry: the features are extracted once.

Any change to one of them gives a new entry; a damaged or foreign cache file is recomputed.
Tracks whose audio cannot be read are stored as rows of NaN with their error message; delete the
cache file to retry them.

MSS-CR representations
----------------------
An MSS-CR representation is its SS-R members' representations side by side
(:func:`mtlmusic.architectures.assemble_msscr`), so its track features are assembled from the
members' features, each extracted once and cached like any model's, instead of running the
assembled network: the study's 79 MSS-CR representations then cost no extraction beyond the 8
SS-R networks'. A track's feature vector is laid out as :func:`mtlmusic.modelfile.feature_names`
says, every block's means and then every block's standard deviations, blocks in canonical source
order; the assembled vector is therefore every member's mean part, then every member's std part,
members in canonical source order, which is what the assembled network extracts. Each member
standardizes its input with its own scaler (the study's networks share one).

The Rand baseline
-----------------
The paper's Rand is the feature network with its initial random weights, read at fc-feature.
:func:`rand_model` builds it as an SS-R network (one ``tag`` head, which the representation does
not use) from the fixed seed :data:`RAND_SEED`, so every run gets the same weights. Its input is
standardized per mel bin like a trained model's, with the mean and standard deviation of the
evaluated dataset's own frames (both channels pooled; :func:`fit_scaler`). A trained model's scaler
comes from its training audio, which an untrained network does not have; the dataset's statistics
are the closest stand-in, and they keep the comparison about the weights alone. Raw dB values (an
identity scaler) would instead feed the untrained network inputs around -30 dB in every bin, which
its zero biases turn into a loudness detector. The scaler uses no labels, so no target leaks into
the features. To use another scaler, pass ``rand_model(scaler)`` as the features source.

Examples
--------
>>> from mtlmusic_training.evaluation import evaluate, load_gtzan
>>> dataset = load_gtzan("/data/gtzan")                                   # doctest: +SKIP
>>> print(evaluate("mscr2-self-bpm-tag", dataset, cache_dir="eval-cache"))  # doctest: +SKIP
accuracy 0.7540 (95% interval 0.7402 to 0.7678, 50 splits)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import torch

from mtlmusic.architectures import build_network, canonical_sources, model_name
from mtlmusic.audio import SAMPLE_RATE, load_audio
from mtlmusic.errors import AudioError, ConfigError, MtlmusicError
from .baselines import N_MFCC, mfcc_features
from .datasets import EvalDataset
from .protocols import (
    EvaluationResult,
    evaluate_classification,
    evaluate_recommendation,
    evaluate_regression,
)
from mtlmusic.frontend import Scaler, ScalerStats, track_db
from mtlmusic.extraction.engine import extract_files
from mtlmusic.extraction.sinks import FORMATS, MANIFEST, read_features, write_features
from mtlmusic.model import Model
from mtlmusic.modelfile import feature_names, read_config, tensors_sha256

__all__ = [
    "BASELINES",
    "RAND_SEED",
    "DatasetFeatures",
    "dataset_features",
    "default_cache_dir",
    "evaluate",
    "fit_scaler",
    "rand_model",
]

#: Names of the built-in baselines.
BASELINES = ("mfcc", "rand")
#: Seed of the Rand baseline's weights.
RAND_SEED = 0
#: Version of the cache layout and of the baselines' definitions; part of every cache key.
CACHE_FORMAT = 1

FeatureFunction = Callable[[np.ndarray, int], np.ndarray]
Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class DatasetFeatures:
    """Features of every track of a dataset, in the dataset's order.

    Attributes
    ----------
    features : numpy.ndarray, shape (n_tracks, d), float32
        One row per track; rows of tracks that failed are NaN.
    feature_names : tuple of str
        Name of each column.
    source : str
        Short name of the features source (model name, baseline, feature file).
    errors : dict of int to str
        Row index -> error message of every track that failed.
    cache_file : pathlib.Path or None
        The cache entry read or written, if a cache folder was given.
    from_cache : bool
        Whether the features came from the cache.
    """

    features: np.ndarray
    feature_names: tuple[str, ...]
    source: str
    errors: dict[int, str]
    cache_file: Path | None = None
    from_cache: bool = False


def default_cache_dir() -> Path:
    """Default feature cache of the command line: ``$MTLMUSIC_HOME/eval``, else ``~/.cache/mtlmusic/eval``.

    ``$XDG_CACHE_HOME`` replaces ``~/.cache`` when set.

    Examples
    --------
    >>> default_cache_dir().name
    'eval'
    """
    home = os.environ.get("MTLMUSIC_HOME")
    if home:
        return Path(home).expanduser() / "eval"
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "mtlmusic" / "eval"


def rand_model(scaler: Scaler | None = None, seed: int = RAND_SEED, device: str | None = None) -> Model:
    """The Rand baseline: the untrained SS-R feature network, with weights drawn from a fixed seed.

    Parameters
    ----------
    scaler : Scaler, optional
        Input standardization; default :meth:`Scaler.identity` (raw dB values). :func:`evaluate`
        with ``"rand"`` uses the evaluated dataset's statistics instead (see the module notes).
    seed : int, default RAND_SEED
        Seed of the Glorot-uniform initialization; torch's global random state is left untouched.
    device : str, optional
        Where to run.

    Returns
    -------
    Model
        An SS-R model (a ``tag`` head that the representation does not use); 512 features.

    Examples
    --------
    >>> import torch
    >>> a, b = rand_model(device="cpu"), rand_model(device="cpu")
    >>> all(torch.equal(p, q) for p, q in zip(a.network.parameters(), b.network.parameters()))
    True
    >>> a.dim
    512
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_network("SS-R", ["tag"])
    return Model(network, scaler or Scaler.identity(), {"name": "rand", "info": {"seed": seed}}, device=device)


def fit_scaler(paths: Sequence[str | os.PathLike], progress: Progress | None = None) -> Scaler:
    """Per-mel-bin mean and standard deviation of the front end's dB frames of some audio files.

    The recipe of a trained model's scaler (SPEC section 1): every frame of every file
    (:func:`mtlmusic.frontend.track_db`), both channels pooled, population standard deviation,
    accumulated by :class:`mtlmusic.frontend.ScalerStats`. Files that cannot be read are skipped.

    Parameters
    ----------
    paths : sequence of path-like
        Audio files.
    progress : callable, optional
        Called as ``progress(done, total)`` after each file.

    Returns
    -------
    Scaler

    Raises
    ------
    mtlmusic.AudioError
        If no file can be read.

    Examples
    --------
    >>> scaler = fit_scaler(["a.wav", "b.mp3"])  # doctest: +SKIP
    >>> scaler.mean.shape  # doctest: +SKIP
    torch.Size([128])
    """
    stats = ScalerStats()
    for done, path in enumerate(paths, start=1):
        try:
            stats.update(track_db(path).db)
        except MtlmusicError:
            pass
        if progress is not None:
            progress(done, len(paths))
    if stats.count == 0:
        raise AudioError("cannot fit a scaler: none of the audio files could be read")
    return stats.scaler()


# ---------------------------------------------------------------------------------------------
# features sources


@dataclass
class _Extractor:
    """How to get the features of a list of files, and what identifies them in the cache.

    A model's extractor knows its ``architecture`` and ``sources``; an MSS-CR source has ``members``
    (its SS-R networks) instead of ``extract``: its features are assembled from theirs.
    """

    label: str
    identity: dict | None  # None: not cacheable
    extract: Callable[[list[Path], Progress | None], tuple[np.ndarray, list[str], dict[int, str]]] | None
    members: list | None = None
    architecture: str | None = None
    sources: tuple[str, ...] = ()


def _model_extract(model: Model, workers: int | None):
    def extract(paths, progress):
        rows = np.full((len(paths), model.dim), np.nan, dtype=np.float32)
        errors = {}
        for index, result in enumerate(extract_files(model, paths, workers=workers)):
            if result.ok:
                rows[index] = result.features
            else:
                errors[index] = result.error
            if progress is not None:
                progress(index + 1, len(paths))
        return rows, model.feature_names, errors

    return extract


def _function_extract(function: FeatureFunction, names: Callable[[int], list[str]] | None, label: str):
    def extract(paths, progress):
        vectors: dict[int, np.ndarray] = {}
        errors = {}
        for index, path in enumerate(paths):
            try:
                vector = np.asarray(function(load_audio(path), SAMPLE_RATE), dtype=np.float32).ravel()
            except MtlmusicError as err:
                errors[index] = f"{path}: {err}" if str(path) not in str(err) else str(err)
            else:
                first = next(iter(vectors.values()), vector)
                if vector.shape != first.shape or vector.size == 0:
                    raise ConfigError(f"{label} returned {vector.size} values for {path} but "
                                      f"{first.size} for earlier tracks; it must return one fixed-size vector")
                vectors[index] = vector
            if progress is not None:
                progress(index + 1, len(paths))
        dim = next(iter(vectors.values())).size if vectors else 0
        rows = np.full((len(paths), dim), np.nan, dtype=np.float32)
        for index, vector in vectors.items():
            rows[index] = vector
        return rows, (names(dim) if names else [f"{label}.{i:03d}" for i in range(dim)]), errors

    return extract


def _mfcc_names(_dim: int) -> list[str]:
    return [f"{stat}.{kind}.{i:02d}" for stat in ("mean", "std") for kind in ("mfcc", "delta", "delta2")
            for i in range(N_MFCC)]


def _rand_extract(device: str | None, workers: int | None):
    def extract(paths, progress):
        scaler = fit_scaler(paths)
        return _model_extract(rand_model(scaler, device=device), workers)(paths, progress)

    return extract


def _model_sha(model: Model) -> str:
    tensors = dict(model.network.state_dict())
    tensors["scaler.mean"] = model.scaler.mean.float()
    tensors["scaler.std"] = model.scaler.std.float()
    return tensors_sha256(tensors)


def _loaded_model_extractor(model: Model, workers: int | None) -> _Extractor:
    return _Extractor(model.name or "model", {"kind": "model", "sha256": _model_sha(model)},
                      _model_extract(model, workers), architecture=model.architecture, sources=tuple(model.sources))


def _named_model_extractor(name: str | os.PathLike, device: str | None, workers: int | None) -> _Extractor:
    """A model given by name or file, loaded only when features have to be extracted."""
    from mtlmusic.model import load_model
    from mtlmusic.hub import model_files

    files = model_files(name)
    if len(files) != 1:  # an MSS-CR representation assembled from SS-R files
        return _Extractor(os.fspath(name), None, None, list(files.values()))
    (member, path), = files.items()  # member: the model name, the file's stem for a file or an hf-hub: name
    config = read_config(path)
    label = config.get("name") or member

    def extract(paths, progress):
        return _model_extract(load_model(path, device=device), workers)(paths, progress)

    return _Extractor(label, {"kind": "model", "sha256": config.get("tensors_sha256")}, extract,
                      architecture=config.get("architecture"), sources=tuple(config.get("sources") or ()))


def _extractor(source, key: str | None, device: str | None, workers: int | None) -> _Extractor:
    if isinstance(source, Model):
        return _loaded_model_extractor(source, workers)
    if isinstance(source, (list, tuple)):
        if len(source) < 2:
            raise ConfigError(f"an MSS-CR representation concatenates two or more SS-R networks; got "
                              f"{len(source)}")
        return _Extractor("MSS-CR", None, None, list(source))
    if callable(source):
        label = _slug(key or getattr(source, "__name__", "features"))
        identity = None if key is None else {"kind": "callable", "key": key}
        return _Extractor(label, identity, _function_extract(source, None, label))
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(f"cannot evaluate a {type(source).__name__}: pass a Model, a model name or file, "
                          f"a list of SS-R models, a feature file, a baseline ({', '.join(BASELINES)}) "
                          "or a function f(y, sr)")
    name = os.fspath(source)
    if name.lower() == "mfcc":
        identity = {"kind": "baseline", "name": "mfcc", "librosa": librosa.__version__}
        return _Extractor("mfcc", identity,
                          _function_extract(mfcc_features, _mfcc_names, "mfcc"))
    if name.lower() == "rand":
        identity = {"kind": "baseline", "name": "rand", "seed": RAND_SEED, "scaler": "dataset",
                    "torch": torch.__version__.split("+")[0]}
        return _Extractor("rand", identity, _rand_extract(device, workers))
    return _named_model_extractor(source, device, workers)


def _is_feature_file(source) -> bool:
    """A feature file, or a feature dataset folder (see :mod:`mtlmusic.extraction.sinks`)."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    return Path(source).suffix.lower() in FORMATS or (Path(source) / MANIFEST).is_file()


# ---------------------------------------------------------------------------------------------
# feature files


def _path_keys(path: str, depth: int) -> str:
    parts = Path(os.path.normpath(path)).parts
    return "/".join(parts[-depth:])


def _match_rows(table_paths: Sequence[str], dataset: EvalDataset, source: str) -> np.ndarray:
    """Row of the feature table of every dataset track: same absolute path, else the shortest unique path ending."""
    absolute = {}
    for row, path in enumerate(table_paths):
        absolute.setdefault(os.path.abspath(path), row)
    rows = [absolute.get(os.path.abspath(path)) for path in dataset.paths]
    if all(row is not None for row in rows):
        return np.asarray(rows)
    wanted = [str(path) for path in dataset.paths]
    max_depth = max(len(Path(p).parts) for p in wanted)
    for depth in range(1, max_depth + 1):
        keys = [_path_keys(p, depth) for p in wanted]
        if len(set(keys)) != len(keys):
            continue
        index: dict[str, list[int]] = {}
        for row, path in enumerate(table_paths):
            index.setdefault(_path_keys(path, depth), []).append(row)
        found = [index.get(k, []) for k in keys]
        if all(len(rows) == 1 for rows in found):
            return np.asarray([rows[0] for rows in found])
        if any(len(rows) == 0 for rows in found):
            missing = [p for p, rows in zip(wanted, found) if not rows]
            raise ConfigError(f"{source} has no row for {len(missing)} of the {len(wanted)} tracks of "
                              f"{dataset.name} (first: {', '.join(missing[:3])}); extract features for "
                              "every track of the dataset")
    raise ConfigError(f"cannot match the rows of {source} to the tracks of {dataset.name}: several rows "
                      "share a path ending; extract the features of this dataset into a file of its own")


def _feature_file_features(path: Path, dataset: EvalDataset) -> DatasetFeatures:
    table = read_features(path)
    if table.times is not None:
        raise ConfigError(f"{path} holds one row per slice; evaluation needs one row per track "
                          "(extract without --slices)")
    rows = _match_rows(table.paths, dataset, str(path))
    features = np.asarray(table.features, dtype=np.float32)[rows]
    bad = np.flatnonzero(~np.all(np.isfinite(features), axis=1))
    errors = {int(i): f"{dataset.paths[i]}: no finite features in {path}" for i in bad}
    return DatasetFeatures(features, tuple(table.feature_names), path.name, errors)


# ---------------------------------------------------------------------------------------------
# MSS-CR


def _msscr_members(members: Sequence, device: str | None, workers: int | None) -> dict[str, _Extractor]:
    """The extractor of each SS-R member of an MSS-CR source, by source, in canonical source order.

    Raises :class:`~mtlmusic.errors.ConfigError`, before anything is extracted, when a member is not
    an SS-R network or two members learned from the same source.
    """
    by_source: dict[str, _Extractor] = {}
    for member in members:
        extractor = None if _is_feature_file(member) else _extractor(member, None, device, workers)
        if extractor is None or extractor.architecture != "SS-R":
            raise ConfigError(f"{member} is not an SS-R network; an MSS-CR representation concatenates SS-R networks")
        source, = extractor.sources
        if source in by_source:
            raise ConfigError(f"{by_source[source].label} and {extractor.label} both learned from {source!r}; an "
                              "MSS-CR representation has one SS-R network per source")
        by_source[source] = extractor
    return {source: by_source[source] for source in canonical_sources(by_source)}


def _msscr_features(members: dict[str, DatasetFeatures]) -> DatasetFeatures:
    """The MSS-CR features of its SS-R members' features, given by source in canonical order.

    Every member's mean part, then every member's std part (see the module notes).
    """
    sources, parts = tuple(members), list(members.values())
    dim = parts[0].features.shape[1] // 2
    features = np.hstack([part.features[:, :dim] for part in parts] + [part.features[:, dim:] for part in parts])
    errors: dict[int, str] = {}
    for part in parts:
        for row, message in part.errors.items():
            errors.setdefault(row, message)
    return DatasetFeatures(features, tuple(feature_names(sources, dim)), model_name("MSS-CR", sources), errors,
                           None, all(part.from_cache for part in parts))


# ---------------------------------------------------------------------------------------------
# cache


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@+-]+", "_", str(text)).strip("._")[:60] or "features"


def _cache_key(identity: dict, dataset: EvalDataset) -> str:
    from mtlmusic._version import __version__

    payload = {"format": CACHE_FORMAT, "mtlmusic": __version__, "source": identity,
               "paths": [os.path.abspath(p) for p in dataset.paths]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_cache(path: Path, key: str, dataset: EvalDataset) -> tuple[np.ndarray, list[str], dict[int, str]] | None:
    """The cached features, or None when the entry is missing, damaged or not this one."""
    if not path.is_file():
        return None
    try:
        table = read_features(path)
    except (MtlmusicError, OSError, ValueError, KeyError):
        return None
    if table.meta.get("key") != key or table.paths != [str(p) for p in dataset.paths]:
        return None
    errors = {int(row): message for row, message in table.meta.get("errors", {}).items()}
    return np.asarray(table.features, dtype=np.float32), list(table.feature_names), errors


def dataset_features(
    source,
    dataset: EvalDataset,
    *,
    cache_dir: str | os.PathLike | None = None,
    key: str | None = None,
    device: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> DatasetFeatures:
    """Features of every track of ``dataset`` from any features source, through the cache.

    Parameters
    ----------
    source : Model, str, path-like, list or callable
        See :func:`evaluate`.
    dataset : EvalDataset
        The tracks.
    cache_dir : path-like, optional
        Feature cache folder (created if needed); ``None`` computes the features every time.
        Feature files are read directly and never cached; an MSS-CR representation is not cached
        itself, its members are.
    key : str, optional
        Cache identity of a callable source, e.g. ``"chroma-v2"``: change it when the function
        changes. A callable without a key is not cached.
    device : str, optional
        Device of a model loaded by name and of Rand.
    workers : int, optional
        Decoding processes beside the network; by default the engine chooses them from the cores
        available (see :func:`mtlmusic.extraction.engine.extract_files`).
    progress : callable, optional
        Called as ``progress(done, total)`` while tracks are extracted.

    Returns
    -------
    DatasetFeatures
        For an MSS-CR source, ``cache_file`` is None and ``from_cache`` says whether every member
        came from the cache.

    Raises
    ------
    mtlmusic.ConfigError
        For an unknown source, a feature file that lacks tracks of the dataset, a callable whose
        output size changes, or MSS-CR members that are not distinct SS-R networks.
    mtlmusic.ModelNotFoundError, mtlmusic.ModelFileError
        For a model that cannot be found or read.

    Examples
    --------
    >>> feats = dataset_features("mfcc", dataset, cache_dir="eval-cache")  # doctest: +SKIP
    >>> feats.features.shape  # doctest: +SKIP
    (1000, 120)
    """
    if _is_feature_file(source):
        return _feature_file_features(Path(source), dataset)
    extractor = _extractor(source, key, device, workers)
    if extractor.members is None:
        return _extracted_features(extractor, dataset, cache_dir, progress)
    members = _msscr_members(extractor.members, device, workers)
    return _msscr_features({source: _extracted_features(member, dataset, cache_dir, progress)
                            for source, member in members.items()})


def _extracted_features(extractor: _Extractor, dataset: EvalDataset, cache_dir, progress) -> DatasetFeatures:
    """The features of ``extractor`` for every track of ``dataset``, through the cache."""
    paths = list(dataset.paths)
    cache_file = None
    if cache_dir is not None and extractor.identity is not None:
        digest = _cache_key(extractor.identity, dataset)
        entry = f"{_slug(extractor.label)}.{digest[:20]}.npz"
        cache_file = Path(cache_dir) / f"{_slug(dataset.name)}.{entry}"
        # Datasets of the same tracks (e.g. the open corpus's style and tempo) share one entry.
        for candidate in [cache_file, *sorted(Path(cache_dir).glob(f"*.{entry}"))]:
            cached = _read_cache(candidate, digest, dataset)
            if cached is not None:
                features, names, errors = cached
                return DatasetFeatures(features, tuple(names), extractor.label, errors, candidate, True)
    features, names, errors = extractor.extract(paths, progress)
    if cache_file is not None and features.shape[1] > 0:
        meta = {"key": digest, "source": extractor.identity, "dataset": dataset.name,
                "errors": {str(row): message for row, message in errors.items()}}
        write_features(cache_file, features, [str(p) for p in paths], names, meta=meta)
    return DatasetFeatures(features, tuple(names), extractor.label, errors, cache_file, False)


# ---------------------------------------------------------------------------------------------
# evaluation


def _subset(dataset: EvalDataset, keep: np.ndarray) -> EvalDataset:
    index = np.flatnonzero(keep)
    changes = {"paths": tuple(dataset.paths[i] for i in index), "ids": tuple(dataset.ids[i] for i in index)}
    if dataset.task == "classification":
        changes["labels"] = dataset.labels[index]
    elif dataset.task == "regression":
        changes["values"] = dataset.values[index]
    else:
        changes["interactions"] = dataset.interactions[:, index].tocsr()
    return dataclasses.replace(dataset, **changes)


def evaluate(
    source,
    dataset: EvalDataset,
    *,
    cache_dir: str | os.PathLike | None = None,
    key: str | None = None,
    on_error: str = "raise",
    n_repeats: int = 5,
    n_folds: int = 10,
    seed: int = 0,
    standardize: bool | None = None,
    n_jobs: int | None = 1,
    device: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    **protocol_options,
) -> EvaluationResult:
    """Score a representation on a dataset with the protocol of its task (paper 4.2-4.4).

    Parameters
    ----------
    source : Model, str, path-like, list or callable
        What gives each track's features: a :class:`mtlmusic.Model`; a model name or model file;
        a list of SS-R model names or files (their MSS-CR representation, see the module notes);
        a feature file (``.npy``/``.npz``/``.csv``/``.parquet`` written by ``mtlmusic extract``,
        rows matched to the dataset by audio path: the same absolute path, else the shortest path
        ending that tells the dataset's files apart, so a folder extracted elsewhere still matches);
        ``"mfcc"`` or ``"rand"`` (the baselines, see the module notes); or a function
        ``f(y, sr) -> vector`` called with each track as a ``(2, n)`` float32 array at 22,050 Hz.
    dataset : EvalDataset
        The dataset, from one of the loaders of :mod:`mtlmusic_training.evaluation.datasets`.
    cache_dir : path-like, optional
        Feature cache folder; see :func:`dataset_features`.
    key : str, optional
        Cache identity of a callable source.
    on_error : {"raise", "drop"}, default "raise"
        What to do with tracks whose features could not be computed: raise
        :class:`mtlmusic.AudioError` listing them, or leave them out of the evaluation (with a
        warning).
    n_repeats, n_folds, seed : int
        Split design of the protocol (5 x 10 folds = 50 splits by default).
    standardize : bool, optional
        Standardize the features before the task's model; ``None`` keeps the protocol's default,
        the study's choice: no for classification (the paper's linear SVM on the representation
        as it is), yes for regression and recommendation (see
        :mod:`~mtlmusic_training.evaluation.protocols`). The result records the setting.
    n_jobs : int or None, default 1
        Threads scoring splits.
    device : str, optional
        Device of a model loaded by name and of Rand.
    workers : int, optional
        Decoding processes beside the network (default: chosen from the cores available).
    progress : callable, optional
        Called as ``progress(done, total)`` while tracks are extracted.
    **protocol_options
        Further options of the protocol (``C``, ``gamma``, ``k``, ``r``, ``lambda_v``, ...).

    Returns
    -------
    EvaluationResult
        One score per split, with the mean and 95 % interval, and ``standardized``.

    Raises
    ------
    mtlmusic.AudioError
        If tracks failed and ``on_error="raise"``.
    mtlmusic.ConfigError
        For an unknown source or ``on_error``, or data the protocol refuses.

    Examples
    --------
    >>> from mtlmusic_training.evaluation import evaluate, load_gtzan
    >>> result = evaluate("mfcc", load_gtzan("/data/gtzan"), cache_dir="eval-cache")  # doctest: +SKIP
    >>> result.metric, result.n_splits  # doctest: +SKIP
    ('accuracy', 50)
    """
    if on_error not in ("raise", "drop"):
        raise ConfigError(f"on_error must be 'raise' or 'drop', got {on_error!r}")
    found = dataset_features(source, dataset, cache_dir=cache_dir, key=key, device=device,
                             workers=workers, progress=progress)
    features = found.features
    if found.errors:
        shown = "; ".join(found.errors[row] for row in sorted(found.errors)[:3])
        summary = f"{len(found.errors)} of {len(dataset)} tracks of {dataset.name} have no features ({shown})"
        if on_error == "raise":
            raise AudioError(f"{summary}; fix or remove those files, or pass on_error='drop'")
        warnings.warn(f"{summary}; evaluating without them", UserWarning, stacklevel=2)
        keep = np.ones(len(dataset), dtype=bool)
        keep[list(found.errors)] = False
        dataset, features = _subset(dataset, keep), features[keep]
    splits = {"n_repeats": n_repeats, "n_folds": n_folds, "seed": seed, "n_jobs": n_jobs}
    if standardize is not None:
        protocol_options["standardize"] = bool(standardize)
    if dataset.task == "classification":
        return evaluate_classification(features, dataset.labels, **splits, **protocol_options)
    if dataset.task == "regression":
        return evaluate_regression(features, dataset.values, **splits, **protocol_options)
    return evaluate_recommendation(dataset.interactions, features, **splits, **protocol_options)
