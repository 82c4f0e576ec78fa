"""What a multi-task model hears in a track (paper Fig. 14), and 2-D maps of a dataset's representations.

A multi-task network keeps, next to its representation, one output head per learning source.
Each head turns the representation back into that source's target: a distribution ``z^t`` over
the source's 50 topics (pLSA of tags, lyrics, ...) or components (the mixtures of tempo and year).
:func:`explain` runs every head on a track and names its strongest topics by their strongest
original terms, from the topic-term tables ``P(term | topic)`` of the training targets
(:class:`mtlmusic_training.targets.Targets.topic_term`).

Examples
--------
>>> import numpy as np, mtlmusic
>>> from mtlmusic.architectures import build_network
>>> from mtlmusic.frontend import Scaler
>>> model = mtlmusic.Model(build_network("MS-CR@2", ["self", "tag"]), Scaler.identity(), device="cpu")
>>> terms = [f"tag{i}" for i in range(20)]
>>> table = np.random.default_rng(0).dirichlet(np.ones(20), size=50)
>>> found = explain(model, np.zeros(22050 * 3, np.float32), {"tag": (terms, table)}, sr=22050)
>>> len(found["tag"].topics), len(found["tag"].topics[0].terms)
(3, 5)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mtlmusic.errors import ConfigError
from mtlmusic.frontend import track_slices
from mtlmusic.files import atomic_path
from mtlmusic.model import Model

__all__ = ["Topic", "TaskExplanation", "explain", "plot_map"]


@dataclass(frozen=True)
class Topic:
    """One predicted topic of a task head.

    Attributes
    ----------
    index : int
        Topic (output unit) number.
    probability : float
        Its predicted probability, averaged over the track's slices.
    terms : tuple of str
        The topic's strongest terms, strongest first (empty without a topic-term table).
    weights : tuple of float
        ``P(term | topic)`` of each of ``terms``.
    """

    index: int
    probability: float
    terms: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()


@dataclass(frozen=True, eq=False)
class TaskExplanation:
    """A task head's reading of one track.

    Attributes
    ----------
    source : str
        The learning source of the head.
    distribution : numpy.ndarray, shape (k,)
        Predicted topic distribution ``z^t``: the head's softmax, averaged over slices (sums to 1).
    topics : tuple of Topic
        The strongest topics, most probable first.
    """

    source: str
    distribution: np.ndarray
    topics: tuple[Topic, ...]


def _check_table(source: str, entry, k: int) -> tuple[list[str], np.ndarray]:
    try:
        terms, matrix = entry
    except (TypeError, ValueError):
        raise ConfigError(f"topic_terms[{source!r}] must be a pair (terms, topic_term matrix)") from None
    terms = [str(t) for t in terms]
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (k, len(terms)):
        raise ConfigError(f"topic_terms[{source!r}]: the head has {k} topics and {len(terms)} terms are given, "
                          f"so the topic-term matrix must be {k} x {len(terms)}, not {matrix.shape}")
    return terms, matrix


@torch.inference_mode()
def explain(
    model: Model,
    audio,
    topic_terms: Mapping[str, tuple[Sequence[str], np.ndarray]] | None = None,
    top_topics: int = 3,
    top_terms: int = 5,
    *,
    sr: int | None = None,
    sources: Sequence[str] | None = None,
) -> dict[str, TaskExplanation]:
    """Each task head's strongest predicted topics for a track, with their strongest terms.

    Every 2.5 s slice of the track goes through the path of the network that serves each task
    (for MS-CR and MSS-CR, the task's own branch; for MS-SR@FC, the shared network) and through
    the task's head; the head's softmax is averaged over the slices into ``z^t``.

    Parameters
    ----------
    model : Model
        A model whose network kept its task heads (every mtlmusic model file does).
    audio : path, path-like or array
        One track: a file, or a waveform with ``sr``.
    topic_terms : mapping, optional
        Source -> ``(terms, topic_term)``, with ``topic_term`` a ``k x len(terms)`` matrix of
        ``P(term | topic)`` (pLSA's topic-term table). Sources without an entry get topics
        without terms.
    top_topics : int, default 3
        Topics to report per task.
    top_terms : int, default 5
        Terms to report per topic.
    sr : int, optional
        Sample rate of array input.
    sources : sequence of str, optional
        The tasks to explain; default every task except ``self`` (whose head compares two
        slices and predicts no topics).

    Returns
    -------
    dict of str to TaskExplanation
        One entry per explained source, in the model's source order.

    Raises
    ------
    mtlmusic.ConfigError
        If a source is not one of the model's tasks, is ``self``, or its topic-term table does
        not fit its head.

    Examples
    --------
    >>> found = explain(model, "song.mp3", {"tag": (tag_names, targets.topic_term)})  # doctest: +SKIP
    >>> [(t.probability, t.terms) for t in found["tag"].topics]  # doctest: +SKIP
    [(0.21, ('rock', 'guitar', 'classic rock', 'alternative', 'hard rock')), ...]
    """
    if int(top_topics) != top_topics or top_topics < 1 or int(top_terms) != top_terms or top_terms < 0:
        raise ConfigError("top_topics must be a positive integer and top_terms a non-negative one")
    network = model.network.eval()
    topic_terms = dict(topic_terms or {})
    wanted = [s for s in network.sources if s != "self"] if sources is None else list(sources)
    for source in [*wanted, *topic_terms]:
        if source not in network.heads or source == "self":
            raise ConfigError(f"{source!r} is not a topic task of this model; its tasks are "
                              f"{[s for s in network.sources if s != 'self']}")
    tables = {s: _check_table(s, topic_terms[s], network.head_sizes[s]) for s in wanted if s in topic_terms}
    sums = {s: torch.zeros(network.head_sizes[s], dtype=torch.float64) for s in wanted}
    total_weight = 0.0
    for chunk in track_slices(audio, sr, model.scaler, model.device, chunk_slices=model.batch_size):
        shared = network.shared(chunk.slices.to(model.device, torch.float32))
        weights = chunk.weights.double()
        for source in wanted:
            features = network.branches[source](shared) if network.branches else shared
            probabilities = torch.softmax(network.heads[source](features).double(), dim=1)
            sums[source] += weights @ probabilities.cpu()
        total_weight += float(weights.sum())
    found = {}
    for source in wanted:
        distribution = (sums[source] / total_weight).numpy()
        order = np.argsort(-distribution, kind="stable")[: int(top_topics)]
        topics = []
        for index in order:
            terms: tuple[str, ...] = ()
            weights: tuple[float, ...] = ()
            if source in tables:
                names, matrix = tables[source]
                strongest = np.argsort(-matrix[index], kind="stable")[: int(top_terms)]
                terms = tuple(names[j] for j in strongest)
                weights = tuple(float(matrix[index, j]) for j in strongest)
            topics.append(Topic(int(index), float(distribution[index]), terms, weights))
        found[source] = TaskExplanation(source, distribution, tuple(topics))
    return found


def plot_map(
    features,
    labels,
    out_png: str | os.PathLike,
    *,
    perplexity: float = 30.0,
    seed: int = 0,
    title: str | None = None,
) -> np.ndarray:
    """Draw a 2-D t-SNE map of a dataset's representations, coloured by label, as a PNG.

    The features are standardized per dimension and reduced to 50 principal components (when
    they have more) before :class:`sklearn.manifold.TSNE` (seeded, PCA initialization).

    Parameters
    ----------
    features : array_like, shape (n_tracks, d)
        One feature vector per track (at least 3 tracks).
    labels : array_like, shape (n_tracks,)
        Class labels (one colour each) or real values (a colour scale, when numeric with more
        than 20 distinct values).
    out_png : path-like
        Image to write (atomically).
    perplexity : float, default 30
        t-SNE perplexity; lowered to ``(n_tracks - 1) / 3`` for small datasets.
    seed : int, default 0
        Random state of t-SNE.
    title : str, optional
        Figure title.

    Returns
    -------
    numpy.ndarray, shape (n_tracks, 2)
        The map's coordinates.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> X = np.random.default_rng(0).normal(size=(30, 8))
    >>> xy = plot_map(X, ["a", "b", "c"] * 10, os.path.join(tempfile.mkdtemp(), "map.png"))
    >>> xy.shape
    (30, 2)
    """
    import matplotlib
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    X = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if X.ndim != 2 or X.shape[0] < 3 or labels.shape != (X.shape[0],):
        raise ConfigError(f"plot_map needs an (n, d) feature array with n >= 3 and n labels, "
                          f"got {X.shape} and {labels.shape}")
    if not np.all(np.isfinite(X)):
        raise ConfigError("plot_map: the features contain NaN or infinite values")
    scale = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    if X.shape[1] > 50 and X.shape[0] > 50:
        X = PCA(n_components=50, random_state=seed).fit_transform(X)
    perplexity = min(float(perplexity), (X.shape[0] - 1) / 3.0)
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(X)

    figure = Figure(figsize=(7, 6), layout="constrained")
    axes = figure.add_subplot()
    continuous = np.issubdtype(labels.dtype, np.number) and np.unique(labels).size > 20
    if continuous:
        points = axes.scatter(xy[:, 0], xy[:, 1], c=labels.astype(float), cmap="viridis", s=12)
        figure.colorbar(points, ax=axes)
    else:
        classes = np.unique(labels)
        cmap = matplotlib.colormaps["tab20" if classes.size > 10 else "tab10"]
        for i, label in enumerate(classes):
            chosen = labels == label
            axes.scatter(xy[chosen, 0], xy[chosen, 1], s=12, color=cmap(i % cmap.N), label=str(label))
        axes.legend(fontsize="small", markerscale=1.5, loc="best", ncol=1 + classes.size // 12)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title or "t-SNE map")
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    return xy
