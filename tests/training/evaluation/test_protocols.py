"""Classification and regression protocols and the result object."""

import math

import numpy as np
import pytest
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR

from mtlmusic.errors import ConfigError
from mtlmusic_training.evaluation import EvaluationResult, evaluate_classification, evaluate_regression


def _blobs(n_per_class=30, d=6, separation=3.0, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"class{c}" for c in range(n_classes)], n_per_class)
    centers = rng.normal(size=(n_classes, d)) * separation
    codes = np.repeat(np.arange(n_classes), n_per_class)
    X = centers[codes] + rng.normal(size=(labels.size, d))
    # features on very different scales, as concatenated representations have
    return X * np.logspace(-2, 2, d), labels


def test_classification_separable_data_scores_high_over_50_splits():
    X, y = _blobs(separation=4.0)
    result = evaluate_classification(X, y, standardize=True)
    assert result.task == "classification"
    assert result.metric == "accuracy"
    assert result.n_splits == 50
    assert result.scores.shape == (50,)
    assert result.mean > 0.95
    assert np.all((result.scores >= 0) & (result.scores <= 1))


def test_classification_matches_sklearn_pipeline_with_linear_kernel():
    X, y = _blobs(separation=0.6, seed=1)
    result = evaluate_classification(X, y, n_repeats=2, n_folds=5, seed=3, standardize=True)
    assert result.standardized
    reference = cross_val_score(
        make_pipeline(StandardScaler(), SVC(kernel="linear", C=1.0)),
        X,
        y,
        cv=RepeatedStratifiedKFold(n_splits=5, n_repeats=2, random_state=3),
    )
    assert 0.4 < reference.mean() < 0.95  # a task that is neither trivial nor hopeless
    np.testing.assert_allclose(result.scores, reference, atol=1.0 / 18 + 1e-12)
    assert abs(result.mean - reference.mean()) < 0.01


def test_classification_is_reproducible_and_thread_count_independent():
    X, y = _blobs(separation=0.8, seed=2)
    first = evaluate_classification(X, y, n_repeats=2, seed=7)
    again = evaluate_classification(X, y, n_repeats=2, seed=7, n_jobs=2)
    other = evaluate_classification(X, y, n_repeats=2, seed=8)
    np.testing.assert_array_equal(first.scores, again.scores)
    assert not np.array_equal(first.scores, other.scores)


def test_classification_rejects_bad_input():
    X, y = _blobs()
    with pytest.raises(ConfigError, match="rows"):
        evaluate_classification(X[:-1], y)
    with pytest.raises(ConfigError, match="2 classes"):
        evaluate_classification(X, np.zeros(len(y)))
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        evaluate_classification(bad, y)
    with pytest.raises(ConfigError, match="n_folds"):
        evaluate_classification(X, y, n_folds=1)
    few = np.repeat(["a", "b", "c"], [4, 3, 3])
    with pytest.raises(ConfigError, match="10-fold cross-validation needs a class of at least 10 tracks; the largest "
                                          "has 4"):
        evaluate_classification(X[:10], few)
    assert evaluate_classification(X[:10], few, n_repeats=1, n_folds=3).n_splits == 3


def test_regression_recovers_a_smooth_target_and_matches_sklearn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 5)) * np.array([1.0, 10.0, 0.1, 5.0, 1.0])
    y = np.sin(X[:, 0]) + X[:, 1] / 10.0 + 0.1 * rng.normal(size=150)
    result = evaluate_regression(X, y)
    assert (result.task, result.metric, result.n_splits) == ("regression", "r2", 50)
    assert result.mean > 0.6
    reference = cross_val_score(
        make_pipeline(StandardScaler(), SVR(kernel="rbf", C=1.0, gamma=1.0 / X.shape[1])),
        X,
        y,
        cv=RepeatedKFold(n_splits=10, n_repeats=5, random_state=0),
        scoring="r2",
    )
    # same model; libsvm stops at tolerance 1e-3, so float rounding moves scores slightly
    np.testing.assert_allclose(result.scores, reference, atol=1e-3)


def test_regression_rejects_non_finite_targets():
    X = np.ones((20, 2))
    with pytest.raises(ConfigError, match="NaN"):
        evaluate_regression(X, np.full(20, np.nan))


def test_result_interval_is_a_t_interval():
    scores = np.array([0.70, 0.80, 0.75, 0.90, 0.85])
    result = EvaluationResult("classification", "accuracy", scores)
    half = 2.7764451051977987 * np.std(scores, ddof=1) / math.sqrt(5)  # t(0.975, 4)
    low, high = result.interval
    assert low == pytest.approx(scores.mean() - half)
    assert high == pytest.approx(scores.mean() + half)
    summary = result.to_dict()
    assert summary["n_splits"] == 5 and summary["interval"] == [low, high]
    assert "accuracy 0.8000" in str(result)
    single = EvaluationResult("regression", "r2", np.array([0.5]))
    assert all(math.isnan(v) for v in single.interval)
