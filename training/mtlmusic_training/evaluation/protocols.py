"""Transfer-evaluation protocols of the paper (sections 4.2-4.3).

Classification, regression and recommendation.

Every protocol takes one feature vector per track (``X``, shape ``(n_tracks, d)``) and the task's
targets, and scores ``n_repeats x n_folds`` train/test splits (5 x 10 = 50 by default: each split
holds out 10 % of the tracks, as the paper's "50 random 90/10 splits" and the authors' repeated
10-fold cross-validation). Nothing here knows about the network that produced ``X``.

=================  ===============================================  ==========================
protocol           model                                            metric per split
=================  ===============================================  ==========================
classification     linear SVM (C = 1) on the features as given      accuracy
regression         standardized input, RBF SVR (C = 1, gamma=1/d)   coefficient of determination
recommendation     content-aware ALS of Eq. 7, cold-start items     mean AP@20 over users
=================  ===============================================  ==========================

Standardization
---------------
Every protocol takes ``standardize``: center and scale each feature dimension (with the training
tracks' statistics for the SVMs, with all tracks' for recommendation) before the model sees it.
The defaults follow the study:

* classification, ``False``: the paper fits a linear SVM with ``C = 1`` on the representation and
  names no preprocessing, and the authors' code fed the features to the SVM as they were (its
  optional scaler was off by default). At a fixed ``C`` standardizing changes the margin/error
  trade-off, so it changes absolute accuracies, most for features on very unequal scales such
  as MFCCs.
* regression, ``True``: the paper fixes the RBF width to ``gamma = 1/d``, which presumes unit-scale
  dimensions (on raw features the kernel of any two tracks vanishes or saturates); the authors'
  code put a standard scaler before the SVR.
* recommendation, ``True``: the authors' code standardized the item features before the
  factorization (see :func:`evaluate_recommendation`).

Every :class:`EvaluationResult` records the setting it was scored with (``standardized``).

Speed comes from handing libsvm a precomputed kernel: the kernel matrix of a split is one BLAS
matrix product instead of libsvm's per-pair dot products, and the recommendation model runs its
ridge step in the item space with a Cholesky factor computed once per split. Both give the same
models as the textbook formulations (see ``benchmarks/eval_speed.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
from joblib import Parallel, delayed
from scipy import linalg, sparse, stats
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold
from sklearn.svm import SVC, SVR
from threadpoolctl import threadpool_limits

from mtlmusic.errors import ConfigError

__all__ = [
    "ContentALSModel",
    "EvaluationResult",
    "average_precision_at_k",
    "content_als",
    "evaluate_classification",
    "evaluate_recommendation",
    "evaluate_regression",
]


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """Scores of one representation on one task, one value per train/test split.

    Attributes
    ----------
    task : str
        ``"classification"``, ``"regression"`` or ``"recommendation"``.
    metric : str
        ``"accuracy"``, ``"r2"`` or ``"ap@K"``.
    scores : numpy.ndarray
        One score per split, shape ``(n_splits,)``, in split order (repeat-major).
    confidence : float
        Level of :attr:`interval`, 0.95 by default.
    standardized : bool or None
        Whether the features were standardized before the model (``None``: not recorded).

    Notes
    -----
    :attr:`interval` is the Student-t interval ``mean +- t(1 - a/2, n - 1) * s / sqrt(n)`` over the
    ``n`` split scores (``s``: sample standard deviation, ddof 1). It describes the spread of the
    protocol's estimate over random splits; as the training sets of cross-validation splits overlap,
    the scores are not independent and the interval is narrower than a confidence interval for
    the performance on new data would be.

    Examples
    --------
    >>> import numpy as np
    >>> result = EvaluationResult("classification", "accuracy", np.array([0.8, 0.9, 0.85]))
    >>> round(result.mean, 3)
    0.85
    >>> [round(v, 3) for v in result.interval]
    [0.726, 0.974]
    """

    task: str
    metric: str
    scores: np.ndarray
    confidence: float = 0.95
    standardized: bool | None = None

    @property
    def n_splits(self) -> int:
        """Number of splits scored."""
        return int(self.scores.size)

    @property
    def mean(self) -> float:
        """Mean score over the splits."""
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof 1) of the split scores; NaN for a single split."""
        if self.scores.size < 2:
            return math.nan
        return float(np.std(self.scores, ddof=1))

    @property
    def interval(self) -> tuple[float, float]:
        """Student-t interval of the mean at level :attr:`confidence`; NaNs for a single split."""
        n = self.scores.size
        if n < 2:
            return (math.nan, math.nan)
        half = stats.t.ppf(0.5 + self.confidence / 2.0, n - 1) * self.std / math.sqrt(n)
        return (float(self.mean - half), float(self.mean + half))

    def to_dict(self) -> dict:
        """Plain-Python summary (JSON serializable), split scores included."""
        low, high = self.interval
        return {
            "task": self.task,
            "metric": self.metric,
            "n_splits": self.n_splits,
            "mean": self.mean,
            "std": self.std,
            "confidence": self.confidence,
            "interval": [low, high],
            "standardized": self.standardized,
            "scores": [float(s) for s in self.scores],
        }

    def __str__(self) -> str:
        low, high = self.interval
        return (
            f"{self.metric} {self.mean:.4f} "
            f"({self.confidence:.0%} interval {low:.4f} to {high:.4f}, {self.n_splits} splits)"
        )


# ---------------------------------------------------------------------------------------------
# input checks


def _check_features(X, n_rows: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ConfigError(
            f"features must be a non-empty 2-D array (tracks x dimensions), got shape {X.shape}"
        )
    if n_rows is not None and X.shape[0] != n_rows:
        raise ConfigError(
            f"features have {X.shape[0]} rows but the targets describe {n_rows} tracks; "
            "pass one feature vector per track, in the dataset's order"
        )
    if not np.all(np.isfinite(X)):
        bad = np.flatnonzero(~np.all(np.isfinite(X), axis=1))
        raise ConfigError(
            f"features contain NaN or infinite values in {bad.size} rows "
            f"(first: {bad[:5].tolist()}); "
            "re-extract those tracks or drop them together with their targets"
        )
    return X


def _check_positive_int(value, name: str) -> None:
    """Refuse anything but a positive whole number (``5`` or ``5.0``)."""
    if int(value) != value or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _check_splits(n_repeats: int, n_folds: int, n_items: int) -> None:
    _check_positive_int(n_repeats, "n_repeats")
    if int(n_folds) != n_folds or n_folds < 2:
        raise ConfigError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if n_folds > n_items:
        raise ConfigError(f"n_folds={n_folds} is more than the {n_items} tracks to split")


def _standardize(X: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
    """Center and scale every column of ``X`` with the statistics of ``X[rows]``.

    Constant columns keep a scale of 1, as :class:`sklearn.preprocessing.StandardScaler` does.
    """
    fit = X[rows]
    mean = fit.mean(axis=0)
    scale = fit.std(axis=0)
    scale[scale < 10.0 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)] = 1.0
    return (X - mean) / scale


def _map_splits(function, splits, n_jobs: int | None) -> np.ndarray:
    """Score every ``(train, test)`` split with ``function``, on ``n_jobs`` threads.

    BLAS runs single-threaded meanwhile: the matrices of one split are small (about a thousand
    rows), so threads pay off across splits, not inside a product, and a multi-threaded BLAS
    slows down badly on a machine whose cores are busy with other work.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        if n_jobs is None or n_jobs == 1:
            scores = [function(index, train, test) for index, (train, test) in enumerate(splits)]
        else:
            scores = Parallel(n_jobs=n_jobs, backend="threading")(
                delayed(function)(index, train, test) for index, (train, test) in enumerate(splits)
            )
    return np.asarray(scores, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# classification and regression


def evaluate_classification(
    X,
    y,
    n_repeats: int = 5,
    n_folds: int = 10,
    seed: int = 0,
    *,
    C: float = 1.0,
    standardize: bool = False,
    n_jobs: int | None = 1,
) -> EvaluationResult:
    """Accuracy of a linear SVM over repeated stratified k-fold splits (paper 4.3.2).

    For each of the ``n_repeats x n_folds`` splits, a linear-kernel SVM (libsvm, hinge loss,
    one-vs-one for several classes, ``C = 1``) is fitted on the training tracks and scored on
    the held-out ones; with ``standardize`` the features are first standardized with the training
    tracks' mean and standard deviation.

    Parameters
    ----------
    X : array_like, shape (n_tracks, d)
        One feature vector per track.
    y : array_like, shape (n_tracks,)
        Class labels (any hashable values).
    n_repeats : int, default 5
        Number of repetitions of the k-fold partition, each with a new shuffle.
    n_folds : int, default 10
        Folds per repetition; each split holds out one fold (``1 / n_folds`` of the tracks).
    seed : int, default 0
        Seed of the fold shuffles; the same seed gives the same splits.
    C : float, default 1.0
        SVM regularization parameter (the paper fixes 1).
    standardize : bool, default False
        Standardize every dimension with the training tracks' statistics first. Off by default,
        as in the paper and the authors' code (see the module notes).
    n_jobs : int or None, default 1
        Threads scoring splits in parallel (joblib; ``-1``: one per core). BLAS runs
        single-threaded inside a split. Results do not depend on it.

    Returns
    -------
    EvaluationResult
        ``metric="accuracy"``, ``n_repeats * n_folds`` scores.

    Raises
    ------
    mtlmusic.ConfigError
        If shapes disagree, features are not finite, or there are fewer than 2 classes.

    Notes
    -----
    The model is ``SVC(kernel="linear")`` as in the authors' evaluation code, fitted through
    libsvm's precomputed-kernel interface: the split's Gram matrix ``Z Z^T`` of the (optionally
    standardized) features is one BLAS product, which is several times faster than libsvm's own kernel
    evaluations and gives the same classifier. ``LinearSVC`` (liblinear) minimizes a different
    loss (squared hinge, one-vs-rest) and converges slowly on such data, so it is not used.
    Splits come from :class:`sklearn.model_selection.RepeatedStratifiedKFold`; a class with
    fewer than ``n_folds`` tracks cannot appear in every test fold (scikit-learn warns).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(["a", "b"], 50)
    >>> X = rng.normal(size=(100, 8)) + (y == "b")[:, None] * 3.0
    >>> result = evaluate_classification(X, y, n_repeats=2, n_folds=5)
    >>> result.n_splits, result.mean > 0.9
    (10, True)
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ConfigError(f"labels must be 1-D, got shape {y.shape}")
    X = _check_features(X, y.shape[0])
    _check_splits(n_repeats, n_folds, y.shape[0])
    classes, y_codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise ConfigError(f"classification needs at least 2 classes, got {classes.size}")
    largest = int(np.bincount(y_codes).max())
    if largest < n_folds:
        raise ConfigError(f"stratified {n_folds}-fold cross-validation needs a class of at least {n_folds} "
                          f"tracks; the largest has {largest}: use fewer folds or more tracks")
    splitter = RepeatedStratifiedKFold(n_splits=n_folds, n_repeats=n_repeats, random_state=seed)
    scores = _map_splits(
        partial(_classification_split, X, y_codes, C, bool(standardize)), splitter.split(X, y_codes), n_jobs
    )
    return EvaluationResult("classification", "accuracy", scores, standardized=bool(standardize))


def _classification_split(X, y, C, standardize, index, train, test) -> float:
    Z = _standardize(X, train) if standardize else X
    z_train = Z[train]
    model = SVC(kernel="precomputed", C=C).fit(z_train @ z_train.T, y[train])
    predicted = model.predict(Z[test] @ z_train.T)
    return float(np.mean(predicted == y[test]))


def evaluate_regression(
    X,
    y,
    n_repeats: int = 5,
    n_folds: int = 10,
    seed: int = 0,
    *,
    C: float = 1.0,
    gamma: float | None = None,
    epsilon: float = 0.1,
    standardize: bool = True,
    n_jobs: int | None = 1,
) -> EvaluationResult:
    """Coefficient of determination of an RBF support vector regressor over repeated k-fold splits.

    For each of the ``n_repeats x n_folds`` splits, the features are standardized with the
    training tracks' statistics (unless ``standardize`` is off) and an epsilon-SVR with an RBF kernel
    ``exp(-gamma ||z - z'||^2)`` (``C = 1``, ``gamma = 1 / d``) is fitted on the training tracks;
    the score is R^2 on the held-out tracks (paper 4.2, 4.3.2).

    Parameters
    ----------
    X : array_like, shape (n_tracks, d)
        One feature vector per track.
    y : array_like, shape (n_tracks,)
        Real-valued targets (for example mean arousal or mean valence).
    n_repeats, n_folds, seed : int
        As in :func:`evaluate_classification`; splits are plain (unstratified) shuffled k-fold
        partitions from :class:`sklearn.model_selection.RepeatedKFold`.
    C : float, default 1.0
        SVR regularization parameter.
    gamma : float, optional
        RBF width; ``None`` means ``1 / d`` (the paper's choice).
    epsilon : float, default 0.1
        Width of the SVR's insensitive tube, in target units (scikit-learn's default; the paper
        does not state it and the authors' code used the default). Targets are not rescaled.
    standardize : bool, default True
        Standardize every dimension with the training tracks' statistics first: ``gamma = 1/d``
        presumes unit-scale dimensions (see the module notes).
    n_jobs : int or None, default 1
        Threads scoring splits in parallel, as in :func:`evaluate_classification`.

    Returns
    -------
    EvaluationResult
        ``metric="r2"``, ``n_repeats * n_folds`` scores (R^2 can be negative).

    Raises
    ------
    mtlmusic.ConfigError
        If shapes disagree or features or targets are not finite.

    Notes
    -----
    The kernel matrix is computed with BLAS and passed to libsvm as a precomputed kernel, which
    gives the same model as ``SVR(kernel="rbf", gamma=1/d)`` on standardized input.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(120, 4))
    >>> y = X[:, 0] + 0.1 * rng.normal(size=120)
    >>> result = evaluate_regression(X, y, n_repeats=1, n_folds=5)
    >>> result.metric, result.n_splits, result.mean > 0.5
    ('r2', 5, True)
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise ConfigError(f"regression targets must be 1-D, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ConfigError("regression targets contain NaN or infinite values")
    X = _check_features(X, y.shape[0])
    _check_splits(n_repeats, n_folds, y.shape[0])
    gamma = 1.0 / X.shape[1] if gamma is None else float(gamma)
    splitter = RepeatedKFold(n_splits=n_folds, n_repeats=n_repeats, random_state=seed)
    scores = _map_splits(
        partial(_regression_split, X, y, C, gamma, epsilon, bool(standardize)), splitter.split(X), n_jobs
    )
    return EvaluationResult("regression", "r2", scores, standardized=bool(standardize))


def _regression_split(X, y, C, gamma, epsilon, standardize, index, train, test) -> float:
    Z = _standardize(X, train) if standardize else X
    z_train = Z[train]
    sq_train = np.einsum("ij,ij->i", z_train, z_train)

    def rbf(rows: np.ndarray) -> np.ndarray:
        sq_rows = np.einsum("ij,ij->i", rows, rows)
        dist = sq_rows[:, None] + sq_train[None, :] - 2.0 * (rows @ z_train.T)
        return np.exp(-gamma * np.maximum(dist, 0.0))

    model = SVR(kernel="precomputed", C=C, epsilon=epsilon).fit(rbf(z_train), y[train])
    predicted = model.predict(rbf(Z[test]))
    residual = np.sum((y[test] - predicted) ** 2)
    total = np.sum((y[test] - y[test].mean()) ** 2)
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return float(1.0 - residual / total)


# ---------------------------------------------------------------------------------------------
# recommendation: content-aware ALS (Eq. 7)


@dataclass(frozen=True, eq=False)
class ContentALSModel:
    """A fitted content-aware matrix factorization (paper Eq. 7).

    Attributes
    ----------
    user_factors : numpy.ndarray, shape (n_users, r)
        ``U``.
    item_factors : numpy.ndarray, shape (n_items, r)
        ``V``, for the items the model was fitted on.
    projection : numpy.ndarray, shape (d, r)
        ``W``, the map from features to item factors.
    objective : numpy.ndarray, shape (n_iter,)
        Value of the Eq. 7 objective after each ALS iteration (never increasing).

    Examples
    --------
    >>> import numpy as np
    >>> R = np.array([[1, 0, 1], [0, 1, 0]])
    >>> X = np.eye(3)
    >>> model = content_als(R, X, r=2, n_iter=5)
    >>> model.predict(X).shape
    (2, 3)
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    projection: np.ndarray
    objective: np.ndarray

    def item_factors_from_features(self, X) -> np.ndarray:
        """Cold-start item factors ``X W`` for items described only by features ``X``."""
        return np.asarray(X, dtype=np.float64) @ self.projection

    def predict(self, X) -> np.ndarray:
        """Preference scores ``U (X W)^T`` of every user for items with features ``X``."""
        return self.user_factors @ self.item_factors_from_features(X).T


class _RidgeStep:
    """The W-step of Eq. 7: ``argmin_W lambda_v/2 ||V - X W||^2 + lambda_w/2 ||W||^2``.

    The minimizer is ``W = (X^T X + c I)^-1 X^T V`` with ``c = lambda_w / lambda_v``. With
    ``d < n_items`` it is solved in feature space (a ``d x d`` Cholesky factor); otherwise in item
    space, ``W = X^T alpha`` with ``alpha = (X X^T + c I)^-1 V``, which needs only the items' Gram
    matrix. Either factor is computed once and reused by every iteration.
    """

    def __init__(self, c: float, *, X: np.ndarray | None = None, gram: np.ndarray | None = None):
        self.c = c
        self.X = X
        self.primal = X is not None and X.shape[1] < X.shape[0]
        if self.primal:
            normal = X.T @ X
        else:
            normal = X @ X.T if gram is None else gram.copy()
        normal[np.diag_indices_from(normal)] += c
        self.factor = linalg.cho_factor(normal, lower=True, check_finite=False)

    def solve(self, V: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """``X W``, the coefficients (``W`` or ``alpha``) and ``||W||^2`` for targets ``V``."""
        if self.primal:
            coef = linalg.cho_solve(self.factor, self.X.T @ V, check_finite=False)
            fitted = self.X @ coef
            return fitted, coef, float(np.sum(coef * coef))
        # (X X^T + c I) alpha = V, so X W = X X^T alpha = V - c alpha and ||W||^2 = alpha . X W.
        coef = linalg.cho_solve(self.factor, V, check_finite=False)
        fitted = V - self.c * coef
        return fitted, coef, float(np.sum(coef * fitted))

    def projection(self, coef: np.ndarray) -> np.ndarray:
        """``W`` from the coefficients returned by :meth:`solve` (needs ``X``)."""
        return coef if self.primal else self.X.T @ coef


def _check_interactions(R, n_items: int) -> sparse.csr_matrix:
    R = sparse.csr_matrix(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] == 0 or R.shape[1] == 0:
        raise ConfigError(f"interactions must be a non-empty users x items matrix, got {R.shape}")
    if R.shape[1] != n_items:
        raise ConfigError(
            f"interactions have {R.shape[1]} item columns but the features have {n_items} rows; "
            "pass one feature vector per item, in the interaction matrix's column order"
        )
    if not np.all(np.isfinite(R.data)):
        raise ConfigError("interactions contain NaN or infinite values")
    return R


def _check_als_input(R, X, r, lambda_v, lambda_u, lambda_w, n_iter) -> tuple[sparse.csr_matrix, np.ndarray]:
    """The checked interactions and features of a content-aware ALS fit, after checking its options."""
    X = _check_features(X)
    R = _check_interactions(R, X.shape[0])
    _check_positive_int(r, "r (number of factors)")
    _check_positive_int(n_iter, "n_iter")
    for name, value in (("lambda_v", lambda_v), ("lambda_u", lambda_u), ("lambda_w", lambda_w)):
        if not value > 0:
            raise ConfigError(f"{name} must be positive, got {value!r}")
    return R, X


def _als(R, ridge, r, lambda_v, lambda_u, n_iter, rng, track_objective):
    """Alternate the exact block minimizers of Eq. 7 (U, then V, then W) ``n_iter`` times."""
    n_items = R.shape[1]
    eye = np.eye(r)
    V = rng.normal(scale=0.01, size=(n_items, r))
    XW, coef, w_sq = ridge.solve(V)
    R_T = R.T.tocsr()
    r_sq = float(R.multiply(R).sum()) if track_objective else 0.0
    objective = []
    for _ in range(n_iter):
        # U = R V (V^T V + lambda_u/2 I)^-1   (r x r systems, solved for all users at once)
        U = np.linalg.solve(V.T @ V + 0.5 * lambda_u * eye, (R @ V).T).T
        # V = (R^T U + lambda_v/2 X W) (U^T U + lambda_v/2 I)^-1
        rhs = R_T @ U + 0.5 * lambda_v * XW
        V = np.linalg.solve(U.T @ U + 0.5 * lambda_v * eye, rhs.T).T
        # W = (X^T X + lambda_w/lambda_v I)^-1 X^T V
        XW, coef, w_sq = ridge.solve(V)
        if track_objective:
            fit = r_sq - 2.0 * np.sum((R @ V) * U) + np.sum((U.T @ U) * (V.T @ V))
            objective.append(
                fit
                + 0.5 * lambda_v * np.sum((V - XW) ** 2)
                + 0.5 * lambda_u * np.sum(U * U)
                + 0.5 * ridge.c * lambda_v * w_sq
            )
    return U, V, coef, np.asarray(objective)


def content_als(
    R,
    X,
    r: int = 10,
    lambda_v: float = 100.0,
    lambda_u: float = 1.0,
    lambda_w: float = 1.0,
    n_iter: int = 40,
    seed: int = 0,
) -> ContentALSModel:
    """Fit the content-aware matrix factorization of the paper's Eq. 7 by alternating least squares.

    Minimizes ::

        ||R - U V^T||^2 + lambda_v/2 ||V - X W||^2 + lambda_u/2 ||U||^2 + lambda_w/2 ||W||^2

    (squared Frobenius norms; every entry of ``R`` counts, zeros included) over the user factors
    ``U`` (``n_users x r``), item factors ``V`` (``n_items x r``) and the feature projection
    ``W`` (``d x r``). Each iteration replaces ``U``, ``V`` and ``W`` in turn by the exact
    minimizer of the objective with the other two fixed:

    - ``U = R V (V^T V + lambda_u/2 I)^-1``
    - ``V = (R^T U + lambda_v/2 X W) (U^T U + lambda_v/2 I)^-1``
    - ``W = (X^T X + lambda_w/lambda_v I)^-1 X^T V``

    so the objective never increases.

    Parameters
    ----------
    R : array_like or scipy.sparse matrix, shape (n_users, n_items)
        Interactions (binary likes in the paper). Sparse input stays sparse.
    X : array_like, shape (n_items, d)
        One feature vector per item, used as given (see :func:`evaluate_recommendation` for the
        standardization applied in the protocol).
    r : int, default 10
        Number of latent factors.
    lambda_v, lambda_u, lambda_w : float, default 100, 1, 1
        Weights of the three penalty terms (the paper's values).
    n_iter : int, default 40
        Number of ALS iterations.
    seed : int, default 0
        Seed of the initial item factors, drawn from N(0, 0.01^2); ``W`` starts at the
        ridge fit of those factors.

    Returns
    -------
    ContentALSModel
        The factors, the projection and the objective after each iteration.

    Raises
    ------
    mtlmusic.ConfigError
        On inconsistent shapes, non-finite input or non-positive options.

    Notes
    -----
    The factors ``1/2`` follow the paper's Eq. 7. The authors' code minimized the same objective
    without them, i.e. with all three ``lambda`` values doubled; pass doubled values to follow it.
    The W-step solves its ridge problem in feature space when ``d < n_items`` and in item space
    otherwise, with a Cholesky factor computed once, so each iteration costs ``O(nnz(R) r)`` plus
    small dense products.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import sparse
    >>> rng = np.random.default_rng(0)
    >>> R = sparse.random(30, 20, density=0.2, random_state=0, data_rvs=np.ones)
    >>> X = rng.normal(size=(20, 5))
    >>> model = content_als(R, X, r=3, n_iter=10)
    >>> model.user_factors.shape, model.item_factors.shape, model.projection.shape
    ((30, 3), (20, 3), (5, 3))
    >>> bool(np.all(np.diff(model.objective) <= 1e-9 * model.objective[0]))
    True
    """
    R, X = _check_als_input(R, X, r, lambda_v, lambda_u, lambda_w, n_iter)
    ridge = _RidgeStep(lambda_w / lambda_v, X=X)
    U, V, coef, objective = _als(
        R, ridge, int(r), lambda_v, lambda_u, int(n_iter), np.random.default_rng(seed), True
    )
    return ContentALSModel(U, V, ridge.projection(coef), objective)


def average_precision_at_k(ranked, relevant, k: int = 20) -> float:
    """Average precision of a ranked list, cut at rank ``k``.

    ``AP@k = sum_{i <= k} P@i * rel(i) / min(|relevant|, k)``, where ``rel(i)`` is 1 when the item
    at rank ``i`` is relevant and ``P@i`` is the fraction of relevant items among the first ``i``.
    A list that puts every relevant item (or ``k`` of them) first scores 1.

    Parameters
    ----------
    ranked : sequence
        Item identifiers, best first, without repetitions. Only the first ``k`` count.
    relevant : iterable
        The relevant item identifiers (at least one).
    k : int, default 20
        Cut-off rank.

    Returns
    -------
    float
        AP@k in [0, 1].

    Raises
    ------
    mtlmusic.ConfigError
        If ``relevant`` is empty (AP is undefined), ``ranked`` repeats an item, or ``k < 1``.

    Examples
    --------
    Relevant items at ranks 1 and 3 of 2 relevant: (1/1 + 2/3) / 2.

    >>> round(average_precision_at_k(["a", "b", "c", "d"], {"a", "c"}, k=20), 4)
    0.8333
    """
    _check_positive_int(k, "k")
    relevant = set(relevant)
    if not relevant:
        raise ConfigError("average precision is undefined without relevant items")
    ranked = list(ranked)
    if len(set(ranked)) != len(ranked):
        raise ConfigError("the ranked list repeats items; rank every item once")
    hits = 0
    total = 0.0
    for rank, item in enumerate(ranked[: int(k)], start=1):
        if item in relevant:
            hits += 1
            total += hits / rank
    return total / min(len(relevant), int(k))


def _ap_at_k_rows(scores: np.ndarray, relevant: np.ndarray, k: int, rng) -> np.ndarray:
    """AP@k of every row of ``scores`` (users x items) against a boolean ``relevant`` matrix.

    Items are ranked by decreasing score. Exact ties are broken at random: the columns are
    shuffled (seeded) before the top ``k`` are selected, and equal scores keep the shuffled order.
    """
    n_items = scores.shape[1]
    k = min(k, n_items)
    perm = rng.permutation(n_items)
    negated = -scores[:, perm]
    top = np.sort(np.argpartition(negated, k - 1, axis=1)[:, :k], axis=1)
    ranked = np.argsort(np.take_along_axis(negated, top, axis=1), axis=1, kind="stable")
    order = perm[np.take_along_axis(top, ranked, axis=1)]
    hits = np.take_along_axis(relevant, order, axis=1)
    precision = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    return np.sum(precision * hits, axis=1) / np.minimum(relevant.sum(axis=1), k)


def evaluate_recommendation(
    R,
    X,
    r: int = 10,
    lambda_v: float = 100.0,
    lambda_u: float = 1.0,
    lambda_w: float = 1.0,
    n_iter: int = 40,
    k: int = 20,
    n_repeats: int = 5,
    n_folds: int = 10,
    seed: int = 0,
    *,
    standardize: bool = True,
    n_jobs: int | None = 1,
) -> EvaluationResult:
    """Cold-start recommendation quality (mean AP@k) of content-aware ALS over item splits.

    The items (tracks) are partitioned into ``n_folds`` folds, ``n_repeats`` times with new
    shuffles (:class:`sklearn.model_selection.RepeatedKFold` over item indices, seeded). For each
    split, the held-out tracks and all their interactions are hidden; :func:`content_als` is fitted
    on the remaining tracks; every held-out track gets the item factors ``V = X W`` from its
    features alone. Each user's scores ``U V^T`` over all tracks (learned factors for training
    tracks, ``X W`` for held-out ones) are ranked, excluding the tracks the user liked in the
    training part, and AP@k is computed with the user's held-out liked tracks as the relevant ones
    ("outer-matrix" evaluation, paper 4.2). The split's score is the mean AP@k over the users that
    have at least one held-out like.

    Parameters
    ----------
    R : array_like or scipy.sparse matrix, shape (n_users, n_items)
        Interactions; every nonzero entry counts as a like and is used as 1.
    X : array_like, shape (n_items, d)
        One feature vector per item (track), in the column order of ``R``.
    r, lambda_v, lambda_u, lambda_w, n_iter : int or float
        Model options of :func:`content_als` (paper: 10, 100, 1, 1, 40).
    k : int, default 20
        Cut-off rank of the average precision.
    n_repeats, n_folds, seed : int
        Split design as in :func:`evaluate_classification`; ``seed`` also seeds the model
        initialization and the random tie-breaking of equal scores (one stream per split).
    standardize : bool, default True
        Standardize every dimension over all tracks first (see Notes).
    n_jobs : int or None, default 1
        Threads scoring splits in parallel, as in :func:`evaluate_classification`.

    Returns
    -------
    EvaluationResult
        ``metric="ap@K"``, ``n_repeats * n_folds`` scores.

    Raises
    ------
    mtlmusic.ConfigError
        On inconsistent shapes, non-finite input, or a split whose held-out tracks have no likes.

    Notes
    -----
    With ``standardize``, features are standardized once over all tracks (zero mean, unit variance
    per dimension), as in the authors' code: a cold-start item's content is known when it arrives,
    and no interaction reaches the scaler. Every split then reuses one item Gram matrix ``X X^T``
    (of the features as given, or standardized), from which the W-step and the cold-start factors
    are computed exactly. Users without any training like have ``U = 0`` and therefore a random
    ranking; they are kept in the mean when they have held-out likes.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import sparse
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 6))
    >>> taste = rng.normal(size=(40, 6))
    >>> R = sparse.csr_matrix((taste @ X.T > 2.0).astype(float))
    >>> result = evaluate_recommendation(R, X, r=4, n_iter=10, n_repeats=1, n_folds=5)
    >>> result.metric, result.n_splits
    ('ap@20', 5)
    """
    R, X = _check_als_input(R, X, r, lambda_v, lambda_u, lambda_w, n_iter)
    _check_positive_int(k, "k")
    n_items = X.shape[0]
    _check_splits(n_repeats, n_folds, n_items)
    R = R.copy()
    R.eliminate_zeros()
    R.data[:] = 1.0
    splits = list(
        RepeatedKFold(n_splits=n_folds, n_repeats=n_repeats, random_state=seed).split(
            np.arange(n_items)
        )
    )
    item_has_like = np.asarray(R.getnnz(axis=0) > 0)
    for index, (_, test) in enumerate(splits):
        if not item_has_like[test].any():
            raise ConfigError(
                f"split {index}: none of its {test.size} held-out tracks has a like; "
                "use fewer folds or a denser interaction matrix"
            )
    with threadpool_limits(limits=1, user_api="blas"):
        Z = _standardize(X, slice(None)) if standardize else X
        gram = Z @ Z.T
    split_function = partial(
        _recommendation_split,
        R.tocsc(),
        R.toarray().astype(bool),
        gram,
        dict(r=int(r), lambda_v=lambda_v, lambda_u=lambda_u, lambda_w=lambda_w, n_iter=int(n_iter)),
        int(k),
        seed,
    )
    scores = _map_splits(split_function, splits, n_jobs)
    return EvaluationResult("recommendation", f"ap@{int(k)}", scores, standardized=bool(standardize))


def _recommendation_split(R_cols, liked, gram, options, k, seed, index, train, test) -> float:
    rng = np.random.default_rng([seed, index])
    n_items = gram.shape[0]
    held_out = np.zeros(n_items, dtype=bool)
    held_out[test] = True
    relevant = liked & held_out
    users = np.flatnonzero(relevant.any(axis=1))
    ridge = _RidgeStep(options["lambda_w"] / options["lambda_v"], gram=gram[np.ix_(train, train)])
    U, V_train, alpha, _ = _als(
        R_cols[:, train].tocsr(),
        ridge,
        options["r"],
        options["lambda_v"],
        options["lambda_u"],
        options["n_iter"],
        rng,
        False,
    )
    V = np.empty((n_items, options["r"]))
    V[train] = V_train
    V[test] = gram[np.ix_(test, train)] @ alpha
    user_scores = U[users] @ V.T
    user_scores[liked[users] & ~held_out] = -np.inf
    return float(np.mean(_ap_at_k_rows(user_scores, relevant[users], k, rng)))
