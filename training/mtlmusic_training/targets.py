"""Learning targets: the raw data of each learning source reduced to a k-dimensional distribution.

Paper section 2.3 and SPEC section 4. Every source but ``self`` becomes a
probability distribution ``z`` over ``k = 50`` latent factors per track:

===========  ========  =====================================================
kind         sources   preprocessing
===========  ========  =====================================================
self         self      none: same-track / different-track pairs at training
plsa         tag,      pLSA (EM) on the track x term count matrix;
             taste,    ``z = P(topic | track)``
             cdr_tag
tfidf_plsa   lyrics    TF-IDF (l2 norm, smooth idf) of the bag of words, then pLSA
artist_plsa  artist    (artist x track)(track x tag) counts, pLSA over artists;
                       each track takes its artist's ``P(topic | artist)``
gmm          bpm,      1-D Gaussian mixture on the scalar;
             year      ``z`` = posterior responsibilities
===========  ========  =====================================================

The registry (:func:`register_source`, :func:`get_source`) maps source names to
a :class:`SourceSpec`; :func:`compute_targets` turns a source's raw data into
:class:`Targets`, which :func:`save_targets` and :func:`load_targets` keep on disk
as one ``.npz`` file per source (:func:`cached_targets` does both).

Examples
--------
>>> import numpy as np
>>> from mtlmusic_training.targets import compute_targets
>>> counts = np.array([[3, 0, 1], [0, 2, 2], [0, 0, 0]])
>>> targets = compute_targets("tag", counts, seed=0)
>>> targets.z.shape, targets.mask.tolist()
((3, 50), [True, True, False])
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mtlmusic.architectures import DEFAULT_HEAD_SIZE, canonical_sources
from mtlmusic.errors import ConfigError, MtlmusicError
from mtlmusic.files import atomic_path

#: Kinds of learning source, i.e. how raw data become targets.
KINDS = ("self", "plsa", "gmm", "tfidf_plsa", "artist_plsa")
#: Number of EM iterations of pLSA and of the Gaussian mixtures (SPEC section 4).
N_ITER = 100
#: Version of the layout of target files written by :func:`save_targets`.
TARGETS_FORMAT_VERSION = 1

# Nonzeros handled at once when evaluating the model at the nonzeros (times k floats of memory).
_CHUNK_VALUES = 1 << 22


class TargetsFileError(MtlmusicError, ValueError):
    """A target file is unreadable, of an unknown version or inconsistent."""


@dataclass(frozen=True)
class PLSAResult:
    """A fitted pLSA model.

    Attributes
    ----------
    doc_topic : ndarray, shape (n_docs, k)
        ``P(topic | document)``; rows sum to 1. Documents without any count get
        the uniform distribution ``1 / k``.
    topic_term : ndarray, shape (k, n_terms)
        ``P(term | topic)``; rows sum to 1.
    log_likelihood : ndarray, shape (n_iter + 1,)
        ``sum_dw n_dw log P(w | d)`` for the initial parameters (entry 0) and after
        each EM iteration; EM never lets it decrease.
    """

    doc_topic: np.ndarray
    topic_term: np.ndarray
    log_likelihood: np.ndarray


@dataclass(frozen=True)
class GMMTargets:
    """Posterior responsibilities of a 1-D Gaussian mixture.

    Attributes
    ----------
    responsibilities : ndarray, shape (n, k)
        ``P(component | value)``; rows sum to 1 where ``mask`` is true and are NaN
        where the value is missing.
    mask : ndarray of bool, shape (n,)
        True where the value was present (and the track has a target).
    means, variances, weights : ndarray, shape (k,)
        Parameters of the components, sorted by increasing mean (the column order
        of ``responsibilities``).
    """

    responsibilities: np.ndarray
    mask: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class ArtistPLSAResult:
    """pLSA over artists' bags of tags, spread back to tracks.

    Attributes
    ----------
    track_topic : ndarray, shape (n_tracks, k)
        Each track's row is its artist's ``P(topic | artist)``.
    artists : ndarray, shape (n_artists,)
        The distinct artist labels, sorted; row ``i`` of ``artist.doc_topic`` is ``artists[i]``.
    track_artist_index : ndarray of int, shape (n_tracks,)
        Index into ``artists`` of each track's artist.
    artist : PLSAResult
        The pLSA model of the artist x tag matrix.
    """

    track_topic: np.ndarray
    artists: np.ndarray
    track_artist_index: np.ndarray
    artist: PLSAResult


@dataclass(frozen=True)
class SourceSpec:
    """How one learning source becomes training targets.

    Attributes
    ----------
    name : str
        Source id (lower-case letters, digits, ``_``), as used in model names.
    kind : str
        One of :data:`KINDS`.
    dim : int
        Number of outputs of the task's head: ``k`` for distribution targets, 2 for
        the ``self`` task's same / different label.
    n_iter : int
        EM iterations of pLSA or of the Gaussian mixture.
    missing_values : tuple of float
        For ``gmm`` sources, values that mean "unknown" besides NaN (the Million
        Song Dataset writes an unknown year or tempo as 0).
    description : str
        What the raw data are.
    """

    name: str
    kind: str
    dim: int = DEFAULT_HEAD_SIZE
    n_iter: int = N_ITER
    missing_values: tuple[float, ...] = ()
    description: str = ""

    def __post_init__(self):
        canonical_sources([self.name])
        if self.kind not in KINDS:
            raise ConfigError(f"Source {self.name!r}: unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}.")
        if not isinstance(self.dim, int) or self.dim < 1:
            raise ConfigError(f"Source {self.name!r}: dim must be a positive integer, got {self.dim!r}.")
        if self.kind == "self" and self.dim != 2:
            raise ConfigError(f"Source {self.name!r}: a self source has dim 2 (same / different), got {self.dim}.")
        if not isinstance(self.n_iter, int) or self.n_iter < 0:
            raise ConfigError(f"Source {self.name!r}: n_iter must be a non-negative integer, got {self.n_iter!r}.")
        if self.missing_values and self.kind != "gmm":
            raise ConfigError(f"Source {self.name!r}: missing_values applies to gmm sources only.")


@dataclass(frozen=True)
class Targets:
    """The targets of one learning source for a list of tracks.

    Attributes
    ----------
    source : str
        Source name.
    z : ndarray of float32, shape (n_tracks, dim)
        Target distribution of each track (rows sum to 1 where ``mask`` is true).
    mask : ndarray of bool, shape (n_tracks,)
        True where the track has a target: a present value (gmm), at least one
        count (pLSA kinds; other rows hold the uniform distribution).
    params : dict
        How the targets were made: ``kind``, ``dim``, ``n_iter``, ``seed``.
    track_ids : ndarray of str, optional
        Track identifiers, row by row.
    topic_term : ndarray of float32, shape (dim, n_terms), optional
        ``P(term | topic)`` for pLSA kinds, to read topics back as terms.
    """

    source: str
    z: np.ndarray
    mask: np.ndarray
    params: dict
    track_ids: np.ndarray | None = None
    topic_term: np.ndarray | None = None


_REGISTRY: dict[str, SourceSpec] = {}


def register_source(spec: SourceSpec, *, replace: bool = False) -> SourceSpec:
    """Add a learning source to the registry.

    Parameters
    ----------
    spec : SourceSpec
        The source.
    replace : bool
        Allow replacing a source of the same name.

    Returns
    -------
    SourceSpec
        ``spec``.

    Raises
    ------
    ConfigError
        If a source of that name exists and ``replace`` is false.

    Examples
    --------
    >>> spec = register_source(SourceSpec("chroma_key", "plsa", 24, description="key profile counts"))
    >>> get_source("chroma_key").dim
    24
    """
    if not isinstance(spec, SourceSpec):
        raise ConfigError(f"register_source takes a SourceSpec, got {type(spec).__name__}.")
    if spec.name in _REGISTRY and not replace:
        raise ConfigError(f"Source {spec.name!r} is already registered; pass replace=True to replace it.")
    _REGISTRY[spec.name] = spec
    return spec


def get_source(name: str) -> SourceSpec:
    """The registered :class:`SourceSpec` called ``name``.

    Examples
    --------
    >>> get_source("lyrics").kind
    'tfidf_plsa'
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"Unknown learning source {name!r}; registered: {', '.join(_REGISTRY)}. "
                          "Add new ones with register_source.") from None


def list_sources() -> tuple[SourceSpec, ...]:
    """All registered sources, the study's eight first, in canonical order.

    Examples
    --------
    >>> [spec.name for spec in list_sources()][:3]
    ['self', 'bpm', 'year']
    """
    return tuple(_REGISTRY[name] for name in canonical_sources(_REGISTRY))


def plsa(counts, k: int = DEFAULT_HEAD_SIZE, n_iter: int = N_ITER, seed: int = 0, *,
         init: tuple[np.ndarray, np.ndarray] | None = None) -> PLSAResult:
    """Probabilistic latent semantic analysis fitted by EM.

    The model is ``P(w | d) = sum_z P(z | d) P(w | z)``. Each iteration is the
    exact EM update written over the nonzeros only::

        R = n_dw / P(w | d)                (sparse, at the nonzeros)
        P(z | d) <- normalize(P(z | d) * (R @ P(w | z).T))
        P(w | z) <- normalize(P(w | z) * (P(z | d).T @ R))

    so memory is ``O(nnz + (n_docs + n_terms) k)``; the n_docs x n_terms x k
    posterior is never formed.

    Parameters
    ----------
    counts : scipy.sparse matrix or array_like, shape (n_docs, n_terms)
        Nonnegative counts or weights.
    k : int
        Number of topics.
    n_iter : int
        Number of EM iterations (no early stopping).
    seed : int
        Seed of the random initialisation: uniform random entries, rows normalized.
    init : (ndarray, ndarray), optional
        Initial ``(doc_topic, topic_term)`` instead of the random ones; rows are
        normalized.

    Returns
    -------
    PLSAResult
        Documents without any count (all-zero rows) get the uniform ``doc_topic``
        row ``1 / k``: they carry no evidence and do not enter the likelihood.

    Examples
    --------
    >>> import numpy as np
    >>> result = plsa(np.array([[4, 1, 0, 0], [0, 0, 3, 5], [0, 0, 0, 0]]), k=2, n_iter=20)
    >>> result.doc_topic.shape, result.topic_term.shape, result.log_likelihood.shape
    ((3, 2), (2, 4), (21,))
    >>> result.doc_topic[2].tolist()
    [0.5, 0.5]
    """
    matrix = _as_counts(counts, "counts")
    n_docs, n_terms = matrix.shape
    _check_positive_int(k, "k")
    _check_nonnegative_int(n_iter, "n_iter")
    empty = np.diff(matrix.indptr) == 0
    if init is None:
        rng = np.random.default_rng(seed)
        doc_topic = _normalize_rows(rng.random((n_docs, k)))
        topic_term = _normalize_rows(rng.random((k, n_terms)))
    else:
        doc_topic, topic_term = (np.array(a, dtype=np.float64) for a in init)
        if doc_topic.shape != (n_docs, k) or topic_term.shape != (k, n_terms):
            raise ConfigError(f"init must have shapes {(n_docs, k)} and {(k, n_terms)}, "
                              f"got {doc_topic.shape} and {topic_term.shape}.")
        if not (np.all(np.isfinite(doc_topic)) and np.all(np.isfinite(topic_term))
                and doc_topic.min(initial=0) >= 0 and topic_term.min(initial=0) >= 0):
            raise ConfigError("init must hold finite, nonnegative values.")
        doc_topic, topic_term = _normalize_rows(doc_topic), _normalize_rows(topic_term)
    doc_topic[empty] = 1.0 / k
    rows = np.repeat(np.arange(n_docs), np.diff(matrix.indptr))
    values = matrix.data
    fitted = _fitted_at_nonzeros(doc_topic, topic_term, rows, matrix.indices)
    history = [float(values @ np.log(fitted))]
    for _ in range(n_iter):
        ratio = sp.csr_matrix((values / fitted, matrix.indices, matrix.indptr), shape=matrix.shape)
        new_doc_topic = doc_topic * (ratio @ topic_term.T)
        topic_term = _normalize_rows(topic_term * (ratio.T @ doc_topic).T)
        doc_topic = _normalize_rows(new_doc_topic)
        fitted = _fitted_at_nonzeros(doc_topic, topic_term, rows, matrix.indices)
        history.append(float(values @ np.log(fitted)))
    return PLSAResult(doc_topic, topic_term, np.array(history))


def tfidf(counts) -> sp.csr_matrix:
    """TF-IDF weights as scikit-learn's ``TfidfTransformer()`` computes them by default.

    Raw counts times ``idf = ln((1 + n_docs) / (1 + df)) + 1`` (smooth idf), then
    each row scaled to unit Euclidean norm; all-zero rows stay zero.

    Parameters
    ----------
    counts : scipy.sparse matrix or array_like, shape (n_docs, n_terms)
        Nonnegative term counts.

    Returns
    -------
    scipy.sparse.csr_matrix of float64

    Examples
    --------
    >>> import numpy as np
    >>> weights = tfidf(np.array([[1, 1], [1, 0]])).toarray()
    >>> np.round(weights, 3).tolist()
    [[0.58, 0.815], [1.0, 0.0]]
    """
    matrix = _as_counts(counts, "counts")
    n_docs, n_terms = matrix.shape
    doc_freq = np.bincount(matrix.indices, minlength=n_terms)
    idf = np.log((1.0 + n_docs) / (1.0 + doc_freq)) + 1.0
    data = matrix.data * idf[matrix.indices]
    rows = np.repeat(np.arange(n_docs), np.diff(matrix.indptr))
    norms = np.sqrt(np.bincount(rows, weights=data ** 2, minlength=n_docs))
    data = data / norms[rows]
    return sp.csr_matrix((data, matrix.indices.copy(), matrix.indptr.copy()), shape=matrix.shape)


def tfidf_plsa(counts, k: int = DEFAULT_HEAD_SIZE, n_iter: int = N_ITER, seed: int = 0) -> PLSAResult:
    """pLSA of the TF-IDF weights of a bag-of-words matrix (the lyrics source).

    pLSA takes the nonnegative TF-IDF weights as fractional counts.

    Parameters
    ----------
    counts : scipy.sparse matrix or array_like, shape (n_docs, n_terms)
        Word counts.
    k, n_iter, seed
        As in :func:`plsa`.

    Returns
    -------
    PLSAResult

    Examples
    --------
    >>> import numpy as np
    >>> result = tfidf_plsa(np.array([[2, 1, 0], [0, 1, 3]]), k=2, n_iter=10)
    >>> np.allclose(result.doc_topic.sum(axis=1), 1)
    True
    """
    return plsa(tfidf(counts), k=k, n_iter=n_iter, seed=seed)


def artist_plsa(track_artist: Sequence, track_tag_counts, k: int = DEFAULT_HEAD_SIZE,
                n_iter: int = N_ITER, seed: int = 0) -> ArtistPLSAResult:
    """pLSA over artists' bags of tags; every track gets its artist's topic distribution.

    The artist x tag matrix is the product of the artist x track membership matrix
    and the track x tag counts: an artist's row sums the tag counts of its tracks.

    Parameters
    ----------
    track_artist : sequence, length n_tracks
        Artist label (id or name) of each track; every track needs one.
    track_tag_counts : scipy.sparse matrix or array_like, shape (n_tracks, n_tags)
        Tag counts per track.
    k, n_iter, seed
        As in :func:`plsa`.

    Returns
    -------
    ArtistPLSAResult

    Examples
    --------
    >>> import numpy as np
    >>> result = artist_plsa(["a", "b", "a"], np.array([[2, 0], [0, 3], [1, 0]]), k=2, n_iter=10)
    >>> result.artists.tolist(), result.track_artist_index.tolist()
    (['a', 'b'], [0, 1, 0])
    >>> bool(np.array_equal(result.track_topic[0], result.track_topic[2]))
    True
    """
    counts = _as_counts(track_tag_counts, "track_tag_counts")
    labels = np.asarray(track_artist)
    if labels.ndim != 1 or len(labels) != counts.shape[0]:
        raise ConfigError(f"track_artist must give one artist per track ({counts.shape[0]}), "
                          f"got shape {labels.shape}.")
    if any(label is None for label in labels.tolist()):
        raise ConfigError("Every track needs an artist label; drop tracks without one first.")
    artists, index = np.unique(labels, return_inverse=True)
    membership = sp.csr_matrix((np.ones(len(index)), (index, np.arange(len(index)))),
                               shape=(len(artists), len(index)))
    result = plsa(membership @ counts, k=k, n_iter=n_iter, seed=seed)
    return ArtistPLSAResult(result.doc_topic[index], artists, index, result)


def gmm_targets(values, k: int = DEFAULT_HEAD_SIZE, n_iter: int = N_ITER, seed: int = 0, *,
                missing_values: Sequence[float] = ()) -> GMMTargets:
    """Posterior responsibilities of a 1-D Gaussian mixture fitted on a scalar (bpm, year).

    Missing values (NaN, infinities and any of ``missing_values``) are left out of
    the fit; those tracks get no target: ``mask`` is false and their rows are NaN.

    Parameters
    ----------
    values : array_like, shape (n,)
        The scalar per track.
    k : int
        Number of components.
    n_iter : int
        Most EM iterations (scikit-learn's ``GaussianMixture(max_iter=n_iter)``).
    seed : int
        Seed of the k-means initialisation.
    missing_values : sequence of float
        Values that also mean "unknown".

    Returns
    -------
    GMMTargets
        Components sorted by increasing mean.

    Raises
    ------
    ConfigError
        If fewer than ``k`` values are present.

    Examples
    --------
    >>> import numpy as np
    >>> values = np.r_[np.linspace(60, 70, 20), np.linspace(170, 180, 20), np.nan, 0]
    >>> result = gmm_targets(values, k=2, missing_values=[0])
    >>> int(result.mask.sum()), np.round(result.means).tolist()
    (40, [65.0, 175.0])
    >>> result.responsibilities[0].round(3).tolist()
    [1.0, 0.0]
    """
    from sklearn.mixture import GaussianMixture

    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ConfigError(f"values must be one-dimensional, got shape {values.shape}.")
    _check_positive_int(k, "k")
    _check_positive_int(n_iter, "n_iter")
    mask = np.isfinite(values) & ~np.isin(values, np.asarray(missing_values, dtype=np.float64))
    if mask.sum() < k:
        raise ConfigError(f"A {k}-component mixture needs at least {k} present values, got {int(mask.sum())}.")
    present = values[mask][:, None]
    mixture = GaussianMixture(n_components=k, covariance_type="spherical", max_iter=n_iter,
                              random_state=seed).fit(present)
    order = np.argsort(mixture.means_[:, 0], kind="stable")
    responsibilities = np.full((len(values), k), np.nan)
    responsibilities[mask] = mixture.predict_proba(present)[:, order]
    return GMMTargets(responsibilities, mask, mixture.means_[order, 0],
                      mixture.covariances_[order], mixture.weights_[order])


def compute_targets(source: str | SourceSpec, data, *, seed: int = 0,
                    track_ids: Sequence[str] | None = None) -> Targets:
    """Turn a source's raw data into :class:`Targets`, as its :class:`SourceSpec` says.

    Parameters
    ----------
    source : str or SourceSpec
        A registered source name, or a spec.
    data
        ``plsa``, ``tfidf_plsa``: the track x term count matrix; ``gmm``: the
        values, one per track; ``artist_plsa``: a pair ``(track_artist,
        track_tag_counts)``.
    seed : int
        Seed of the initialisation.
    track_ids : sequence of str, optional
        Identifiers of the tracks, row by row.

    Returns
    -------
    Targets

    Raises
    ------
    ConfigError
        For the ``self`` kind, which has no stored targets (pairs are drawn while training).

    Examples
    --------
    >>> import numpy as np
    >>> targets = compute_targets("year", np.r_[np.arange(1960, 2010), 0], track_ids=[str(i) for i in range(51)])
    >>> targets.z.shape, bool(targets.mask[-1])
    ((51, 50), False)
    """
    spec = source if isinstance(source, SourceSpec) else get_source(source)
    k, n_iter = spec.dim, spec.n_iter
    topic_term = None
    if spec.kind == "self":
        raise ConfigError(f"Source {spec.name!r} has no stored targets: its pairs are drawn while training.")
    if spec.kind == "gmm":
        try:
            result = gmm_targets(data, k, n_iter, seed, missing_values=spec.missing_values)
        except ConfigError as err:
            raise ConfigError(f"Source {spec.name!r}: {err}") from err
        z, mask = result.responsibilities, result.mask
    elif spec.kind == "artist_plsa":
        track_artist, track_tag_counts = data
        counts = _as_counts(track_tag_counts, "track_tag_counts")
        result = artist_plsa(track_artist, counts, k, n_iter, seed)
        z, topic_term = result.track_topic, result.artist.topic_term
        tagged = np.bincount(result.track_artist_index, weights=_nonempty_rows(counts),
                             minlength=len(result.artists)) > 0
        mask = tagged[result.track_artist_index]
    else:
        fit = tfidf_plsa if spec.kind == "tfidf_plsa" else plsa
        counts = _as_counts(data, "data")
        result = fit(counts, k, n_iter, seed)
        z, topic_term, mask = result.doc_topic, result.topic_term, _nonempty_rows(counts)
    ids = None
    if track_ids is not None:
        ids = np.asarray(track_ids, dtype=str)
        if ids.shape != (len(z),):
            raise ConfigError(f"track_ids must name the {len(z)} tracks, got shape {ids.shape}.")
    params = {"kind": spec.kind, "dim": k, "n_iter": n_iter, "seed": int(seed)}
    return Targets(spec.name, z.astype(np.float32), mask, params, ids,
                   None if topic_term is None else topic_term.astype(np.float32))


def targets_path(cache_dir: str | os.PathLike, source: str) -> Path:
    """Where the targets of ``source`` live in ``cache_dir``: ``<cache_dir>/<source>.npz``.

    Examples
    --------
    >>> targets_path("cache", "tag").as_posix()
    'cache/tag.npz'
    """
    canonical_sources([source])
    return Path(cache_dir) / f"{source}.npz"


def save_targets(targets: Targets, path: str | os.PathLike) -> Path:
    """Write targets to ``path`` (``.npz``) atomically: a temporary file in the same folder, then a rename.

    Parameters
    ----------
    targets : Targets
    path : str or path-like

    Returns
    -------
    Path
        The path written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> targets = compute_targets("tag", np.eye(3), seed=1)
    >>> path = save_targets(targets, pathlib.Path(tempfile.mkdtemp()) / "tag.npz")
    >>> np.array_equal(load_targets(path).z, targets.z)
    True
    """
    path = Path(path)
    arrays = {
        "version": np.array(TARGETS_FORMAT_VERSION),
        "source": np.array(targets.source),
        "params": np.array(json.dumps(targets.params, sort_keys=True)),
        "z": np.asarray(targets.z, dtype=np.float32),
        "mask": np.asarray(targets.mask, dtype=bool),
    }
    if targets.track_ids is not None:
        arrays["track_ids"] = np.asarray(targets.track_ids, dtype=str)
    if targets.topic_term is not None:
        arrays["topic_term"] = np.asarray(targets.topic_term, dtype=np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def load_targets(path: str | os.PathLike) -> Targets:
    """Read targets written by :func:`save_targets`.

    Raises
    ------
    TargetsFileError
        If the file is unreadable, of another format version or inconsistent.

    Examples
    --------
    See :func:`save_targets`.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise TargetsFileError(f"Cannot read targets from {path}: {err}. Delete the file to recompute it.") from err
    missing = {"version", "source", "params", "z", "mask"} - set(arrays)
    if missing:
        raise TargetsFileError(f"{path} is not a targets file (missing {sorted(missing)}); delete it to recompute.")
    if int(arrays["version"]) != TARGETS_FORMAT_VERSION:
        raise TargetsFileError(f"{path} has targets format version {int(arrays['version'])}, this code reads "
                               f"version {TARGETS_FORMAT_VERSION}; delete it to recompute.")
    z, mask = arrays["z"], arrays["mask"]
    track_ids = arrays.get("track_ids")
    if z.ndim != 2 or mask.shape != (len(z),) or (track_ids is not None and track_ids.shape != (len(z),)):
        raise TargetsFileError(f"{path}: z, mask and track_ids do not describe the same tracks; "
                               "delete it to recompute.")
    return Targets(str(arrays["source"]), z, mask, json.loads(str(arrays["params"])), track_ids,
                   arrays.get("topic_term"))


def cached_targets(source: str | SourceSpec, cache_dir: str | os.PathLike, load_data: Callable[[], object], *,
                   seed: int = 0, track_ids: Sequence[str] | None = None) -> Targets:
    """Targets of ``source`` from ``cache_dir``, computed and saved first if absent or made differently.

    A cached file is reused when its kind, dim, n_iter and seed match the source's
    spec and ``seed`` (and its track ids match ``track_ids`` when given);
    otherwise the data are loaded with ``load_data()`` and the targets recomputed.

    Parameters
    ----------
    source : str or SourceSpec
    cache_dir : str or path-like
    load_data : callable
        Returns the raw data that :func:`compute_targets` takes; only called on a miss.
    seed : int
    track_ids : sequence of str, optional

    Returns
    -------
    Targets

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> first = cached_targets("cdr_tag", folder, lambda: np.eye(4))
    >>> again = cached_targets("cdr_tag", folder, lambda: 1 / 0)
    >>> np.array_equal(first.z, again.z)
    True
    """
    spec = source if isinstance(source, SourceSpec) else get_source(source)
    path = targets_path(cache_dir, spec.name)
    wanted = {"kind": spec.kind, "dim": spec.dim, "n_iter": spec.n_iter, "seed": int(seed)}
    if path.exists():
        cached = load_targets(path)
        same_tracks = track_ids is None or (cached.track_ids is not None
                                            and np.array_equal(cached.track_ids, np.asarray(track_ids, dtype=str)))
        if cached.source == spec.name and cached.params == wanted and same_tracks:
            return cached
    targets = compute_targets(spec, load_data(), seed=seed, track_ids=track_ids)
    save_targets(targets, path)
    return targets


def _as_counts(counts, what: str) -> sp.csr_matrix:
    """Validated float64 CSR copy without explicit zeros and with canonical indices."""
    matrix = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    if matrix.ndim != 2:
        raise ConfigError(f"{what} must be a 2-D matrix, got {matrix.ndim} dimensions.")
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if not np.all(np.isfinite(matrix.data)) or matrix.data.min(initial=0.0) < 0:
        raise ConfigError(f"{what} must hold finite, nonnegative values.")
    return matrix


def _nonempty_rows(matrix: sp.csr_matrix) -> np.ndarray:
    return np.diff(matrix.indptr) > 0


def _fitted_at_nonzeros(doc_topic: np.ndarray, topic_term: np.ndarray, rows: np.ndarray,
                        cols: np.ndarray) -> np.ndarray:
    """``P(w | d)`` at the nonzeros, in chunks of about ``_CHUNK_VALUES`` floats."""
    term_topic = np.ascontiguousarray(topic_term.T)
    fitted = np.empty(len(rows))
    step = max(1, _CHUNK_VALUES // doc_topic.shape[1])
    for start in range(0, len(rows), step):
        part = slice(start, start + step)
        fitted[part] = np.einsum("ij,ij->i", doc_topic[rows[part]], term_topic[cols[part]])
    return np.maximum(fitted, np.finfo(np.float64).tiny)


def _normalize_rows(a: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1; rows summing to 0 become uniform."""
    totals = a.sum(axis=1, keepdims=True)
    return np.where(totals > 0, a / np.where(totals > 0, totals, 1.0), 1.0 / a.shape[1])


def _check_positive_int(value, name: str) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")


def _check_nonnegative_int(value, name: str) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}.")


for _spec in (
    SourceSpec("self", "self", 2, description="the audio itself: same-track / different-track pairs"),
    SourceSpec("bpm", "gmm", missing_values=(0.0,), description="Echo Nest tempo estimate (MSD)"),
    SourceSpec("year", "gmm", missing_values=(0.0,), description="release year (MSD metadata)"),
    SourceSpec("tag", "plsa", description="Last.fm social tag counts per track"),
    SourceSpec("taste", "plsa", description="Echo Nest Taste Profile play counts, track x user"),
    SourceSpec("cdr_tag", "plsa", description="binary track x CDR professional genre (367 genres)"),
    SourceSpec("lyrics", "tfidf_plsa", description="musiXmatch bag of words per track"),
    SourceSpec("artist", "artist_plsa", description="Last.fm tags pooled per artist"),
):
    register_source(_spec)
del _spec
