"""Content-aware ALS (Eq. 7), AP@k and the cold-start recommendation protocol."""

import numpy as np
import pytest
from scipy import optimize, sparse

from mtlmusic.errors import ConfigError
from mtlmusic_training.evaluation import average_precision_at_k, content_als, evaluate_recommendation
from mtlmusic_training.evaluation.protocols import _ap_at_k_rows


def _objective(R, X, U, V, W, lv, lu, lw):
    return (
        np.sum((R - U @ V.T) ** 2)
        + lv / 2 * np.sum((V - X @ W) ** 2)
        + lu / 2 * np.sum(U**2)
        + lw / 2 * np.sum(W**2)
    )


def _gradients(R, X, U, V, W, lv, lu, lw):
    E = R - U @ V.T
    C = V - X @ W
    return -2 * E @ V + lu * U, -2 * E.T @ U + lv * C, -lv * X.T @ C + lw * W


def _lbfgs_minimum(R, X, r, lv, lu, lw, restarts=8):
    n_users, n_items = R.shape
    d = X.shape[1]
    sizes = [n_users * r, n_items * r, d * r]

    def unpack(theta):
        u, v, w = np.split(theta, np.cumsum(sizes)[:2])
        return u.reshape(n_users, r), v.reshape(n_items, r), w.reshape(d, r)

    def fun(theta):
        U, V, W = unpack(theta)
        grads = _gradients(R, X, U, V, W, lv, lu, lw)
        return _objective(R, X, U, V, W, lv, lu, lw), np.concatenate([g.ravel() for g in grads])

    rng = np.random.default_rng(1)
    best = np.inf
    for _ in range(restarts):
        result = optimize.minimize(
            fun,
            rng.normal(size=sum(sizes)),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-10},
        )
        best = min(best, result.fun)
    return best


TINY = [
    # (users, items, d, r, lambda_v, lambda_u, lambda_w): d < items (feature-space W-step) ...
    (6, 8, 3, 2, 100.0, 1.0, 1.0),
    (6, 8, 3, 2, 2.0, 0.5, 0.3),
    # ... and d >= items (item-space W-step)
    (5, 4, 6, 2, 3.0, 0.7, 0.2),
]


@pytest.mark.parametrize("n_users,n_items,d,r,lv,lu,lw", TINY)
def test_als_reaches_the_minimum_of_eq7(n_users, n_items, d, r, lv, lu, lw):
    rng = np.random.default_rng(0)
    R = (rng.random((n_users, n_items)) < 0.4).astype(float)
    X = rng.normal(size=(n_items, d))
    model = content_als(
        sparse.csr_matrix(R), X, r=r, lambda_v=lv, lambda_u=lu, lambda_w=lw, n_iter=10000, seed=0
    )
    U, V, W = model.user_factors, model.item_factors, model.projection
    value = _objective(R, X, U, V, W, lv, lu, lw)
    # the recorded objective is Eq. 7 evaluated at the returned factors ...
    assert model.objective[-1] == pytest.approx(value, rel=1e-10)
    # ... it never increases ...
    assert np.all(np.diff(model.objective) <= 1e-10 * model.objective[0])
    # ... the last W-step is the exact ridge solution ...
    W_exact = np.linalg.solve(X.T @ X + lw / lv * np.eye(d), X.T @ V)
    np.testing.assert_allclose(W, W_exact, atol=1e-10)
    # ... the result is a stationary point ...
    for gradient in _gradients(R, X, U, V, W, lv, lu, lw):
        assert np.max(np.abs(gradient)) < 1e-6
    # ... and as good as a quasi-Newton method on the full problem, from several starts.
    assert value == pytest.approx(_lbfgs_minimum(R, X, r, lv, lu, lw), rel=1e-7, abs=1e-9)


def test_als_step_is_exact_block_minimizer():
    """One iteration from a given start equals the three closed-form block updates."""
    rng = np.random.default_rng(3)
    R = (rng.random((7, 9)) < 0.3).astype(float)
    X = rng.normal(size=(9, 4))
    lv, lu, lw, r = 100.0, 1.0, 1.0, 3
    model = content_als(R, X, r=r, n_iter=1, seed=5)
    V0 = np.random.default_rng(5).normal(scale=0.01, size=(9, r))  # documented initialization
    W0 = np.linalg.solve(X.T @ X + lw / lv * np.eye(4), X.T @ V0)
    U1 = R @ V0 @ np.linalg.inv(V0.T @ V0 + lu / 2 * np.eye(r))
    V1 = (R.T @ U1 + lv / 2 * X @ W0) @ np.linalg.inv(U1.T @ U1 + lv / 2 * np.eye(r))
    W1 = np.linalg.solve(X.T @ X + lw / lv * np.eye(4), X.T @ V1)
    np.testing.assert_allclose(model.user_factors, U1, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.item_factors, V1, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.projection, W1, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.predict(X), U1 @ (X @ W1).T, atol=1e-12)


def test_als_accepts_dense_and_sparse_alike():
    rng = np.random.default_rng(0)
    R = (rng.random((10, 12)) < 0.3).astype(float)
    X = rng.normal(size=(12, 4))
    dense = content_als(R, X, r=2, n_iter=5)
    sparse_fit = content_als(sparse.csr_matrix(R), X, r=2, n_iter=5)
    np.testing.assert_allclose(dense.user_factors, sparse_fit.user_factors)
    with pytest.raises(ConfigError, match="item columns"):
        content_als(R, X[:-1])
    with pytest.raises(ConfigError, match="lambda_v"):
        content_als(R, X, lambda_v=0)


def test_average_precision_hand_computed():
    # relevant at ranks 1, 3 and 5 out of 4 relevant items: (1 + 2/3 + 3/5) / 4
    assert average_precision_at_k(list("abcde"), set("acez")) == pytest.approx(
        (1 + 2 / 3 + 3 / 5) / 4
    )
    # only the first k ranks count, and the normalizer is min(|relevant|, k)
    assert average_precision_at_k(list("xaby"), {"a", "b", "y"}, k=2) == pytest.approx(0.5 / 2)
    assert average_precision_at_k(list("ab"), {"a", "b"}, k=20) == 1.0
    assert average_precision_at_k(list("xyz"), {"a"}) == 0.0
    ranked = [f"miss{i}" for i in range(20)] + ["hit"]
    assert average_precision_at_k(ranked, {"hit"}, k=20) == 0.0
    with pytest.raises(ConfigError, match="relevant"):
        average_precision_at_k(["a"], [])
    with pytest.raises(ConfigError, match="repeats"):
        average_precision_at_k(["a", "a"], ["a"])


def test_vectorized_average_precision_matches_the_reference():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(30, 50))
    relevant = rng.random((30, 50)) < 0.15
    relevant[:, 0] = True
    fast = _ap_at_k_rows(scores, relevant, 20, np.random.default_rng(0))
    for row in range(30):
        ranked = np.argsort(-scores[row]).tolist()
        expected = average_precision_at_k(ranked, np.flatnonzero(relevant[row]).tolist(), k=20)
        assert fast[row] == pytest.approx(expected)


def _taste_data(n_users=120, n_items=90, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_items, d))
    taste = rng.normal(size=(n_users, d))
    affinity = taste @ X.T
    R = sparse.csr_matrix((affinity > np.quantile(affinity, 0.9)).astype(float))
    return R, X


def test_recommendation_protocol_rewards_informative_features():
    R, X = _taste_data()
    kwargs = dict(r=5, n_iter=15, n_repeats=2, n_folds=5)
    informative = evaluate_recommendation(R, X, **kwargs)
    noise = evaluate_recommendation(R, np.random.default_rng(9).normal(size=X.shape), **kwargs)
    assert (informative.task, informative.metric, informative.n_splits) == (
        "recommendation",
        "ap@20",
        10,
    )
    assert np.all((informative.scores >= 0) & (informative.scores <= 1))
    assert informative.mean > 2 * noise.mean


def test_recommendation_protocol_is_reproducible_across_thread_counts():
    R, X = _taste_data(n_users=40, n_items=30, d=4)
    one = evaluate_recommendation(R, X, r=3, n_iter=5, n_repeats=1, n_folds=3, seed=4)
    two = evaluate_recommendation(R, X, r=3, n_iter=5, n_repeats=1, n_folds=3, seed=4, n_jobs=2)
    np.testing.assert_array_equal(one.scores, two.scores)


def test_recommendation_protocol_reports_folds_without_likes():
    R = sparse.csr_matrix(np.array([[1.0, 0, 0, 0], [1.0, 0, 0, 0]]))
    with pytest.raises(ConfigError, match="held-out tracks has a like"):
        evaluate_recommendation(R, np.eye(4), n_repeats=1, n_folds=2)
