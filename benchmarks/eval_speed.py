"""Time the transfer-evaluation protocols against a plain scikit-learn loop, on the paper's sizes.

One representation x one dataset x 50 splits (5 x 10-fold), for each task:

- classification: GTZAN-sized data (1,000 tracks, 512 features, 10 classes).
  Reference: ``cross_val_score`` of ``make_pipeline(StandardScaler(), SVC(kernel="linear"))``.
- regression: emotion-sized data (744 tracks, 512 features).
  Reference: ``cross_val_score`` of ``make_pipeline(StandardScaler(), SVR(gamma=1/d))``.
- recommendation: This Is My Jam-sized data (944 tracks x 993 users, 512 features).
  Reference: the textbook ALS of Eq. 7 with one small solve per user and per item in Python
  loops, a dense interaction matrix and a per-user AP@20 loop (the shape of the authors' code).
  It takes about 5 s a split, so it runs on the first ``--reference-splits`` splits (default 5)
  and its time is scaled to 50 splits; the mean scores compare those splits only.

Features are synthetic (class or taste structure plus noise, with ReLU-like sparsity); timing
does not depend on the values. The protocol and the reference score the same splits, so their
mean scores are printed side by side. Run::

    python benchmarks/eval_speed.py [--task all|classification|regression|recommendation]
                                    [--n-jobs 1] [--dim 512] [--reference-splits 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import sparse
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR

from mtlmusic_training.evaluation import (
    average_precision_at_k,
    evaluate_classification,
    evaluate_recommendation,
    evaluate_regression,
)


def _features(rng, latent, d):
    mixing = rng.normal(size=(latent.shape[1], d)) / np.sqrt(latent.shape[1])
    X = latent @ mixing + rng.normal(size=(latent.shape[0], d))
    return np.maximum(X * rng.uniform(0.1, 10.0, size=d), 0.0)


def _classification_data(rng, d):
    y = np.repeat(np.arange(10), 100)
    centers = rng.normal(size=(10, 16)) * 0.6
    return _features(rng, centers[y] + rng.normal(size=(1000, 16)), d), y


def _regression_data(rng, d):
    latent = rng.normal(size=(744, 16))
    y = 5.0 + latent[:, 0] + 0.5 * latent[:, 1] + 0.5 * rng.normal(size=744)
    return _features(rng, latent, d), y


def _recommendation_data(rng, d):
    latent = rng.normal(size=(944, 16))
    taste = rng.normal(size=(993, 16))
    affinity = taste @ latent.T + 2.0 * rng.normal(size=(993, 944))
    R = sparse.csr_matrix((affinity > np.quantile(affinity, 0.99)).astype(np.float64))
    return R, _features(rng, latent, d)


def _reference_recommendation(
    R, X, n_splits, r=10, lv=100.0, lu=1.0, lw=1.0, n_iter=40, k=20, seed=0
):
    """Eq. 7 by the book on the first ``n_splits`` splits: per-row solves, dense R, AP@k loop."""
    R = R.toarray()
    X = StandardScaler().fit_transform(X)
    n_items, d = X.shape
    scores = []
    folds = RepeatedKFold(n_splits=10, n_repeats=5, random_state=seed)
    splits = list(folds.split(np.arange(n_items)))[:n_splits]
    for split, (train, test) in enumerate(splits):
        rng = np.random.default_rng([seed, split])
        R_train, X_train = R[:, train], X[train]
        V = rng.normal(scale=0.01, size=(train.size, r))
        W = np.linalg.solve(X_train.T @ X_train + lw / lv * np.eye(d), X_train.T @ V)
        for _ in range(n_iter):
            A = V.T @ V + lu / 2 * np.eye(r)
            U = np.array([np.linalg.solve(A, V.T @ row) for row in R_train])
            B = U.T @ U + lv / 2 * np.eye(r)
            XW = X_train @ W
            V = np.array(
                [
                    np.linalg.solve(B, U.T @ R_train[:, j] + lv / 2 * XW[j])
                    for j in range(train.size)
                ]
            )
            W = np.linalg.solve(lv * X_train.T @ X_train + lw * np.eye(d), lv * X_train.T @ V)
        V_all = np.empty((n_items, r))
        V_all[train] = V
        V_all[test] = X[test] @ W
        test_set = set(test.tolist())
        user_ap = []
        for u in range(R.shape[0]):
            liked = np.flatnonzero(R[u])
            relevant = [j for j in liked if j in test_set]
            if not relevant:
                continue
            seen = set(liked.tolist()) - test_set
            ranking = [j for j in np.argsort(-(U[u] @ V_all.T), kind="stable") if j not in seen]
            user_ap.append(average_precision_at_k(ranking, relevant, k))
        scores.append(np.mean(user_ap))
    return np.asarray(scores)


def _time(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - start, value


def _bench_classification(rng, dim, n_jobs, _):
    X, y = _classification_data(rng, dim)
    t_fast, fast = _time(evaluate_classification, X, y, n_jobs=n_jobs, standardize=True)
    reference = make_pipeline(StandardScaler(), SVC(kernel="linear", C=1.0))
    cv = RepeatedStratifiedKFold(n_splits=10, n_repeats=5, random_state=0)
    t_ref, ref = _time(cross_val_score, reference, X, y, cv=cv)
    return t_fast, fast.mean, t_ref, float(np.mean(ref))


def _bench_regression(rng, dim, n_jobs, _):
    X, y = _regression_data(rng, dim)
    t_fast, fast = _time(evaluate_regression, X, y, n_jobs=n_jobs)
    reference = make_pipeline(StandardScaler(), SVR(kernel="rbf", C=1.0, gamma=1.0 / dim))
    cv = RepeatedKFold(n_splits=10, n_repeats=5, random_state=0)
    t_ref, ref = _time(cross_val_score, reference, X, y, cv=cv, scoring="r2")
    return t_fast, fast.mean, t_ref, float(np.mean(ref))


def _bench_recommendation(rng, dim, n_jobs, reference_splits):
    R, X = _recommendation_data(rng, dim)
    t_fast, fast = _time(evaluate_recommendation, R, X, n_jobs=n_jobs)
    n_ref = min(max(reference_splits, 1), 50)
    t_ref, ref = _time(_reference_recommendation, R, X, n_ref)
    print(f"(recommendation reference: {n_ref} splits in {t_ref:.1f} s, scaled to 50 below)")
    # Same models; the means differ only where users without a training like (all-zero scores)
    # are ranked: the protocol breaks those ties at random, the reference by item order.
    return t_fast, float(np.mean(fast.scores[:n_ref])), t_ref * 50 / n_ref, float(np.mean(ref))


BENCHMARKS = {
    "classification": _bench_classification,
    "regression": _bench_regression,
    "recommendation": _bench_recommendation,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="all", choices=["all", *BENCHMARKS])
    parser.add_argument("--n-jobs", type=int, default=1, help="protocol threads (default 1)")
    parser.add_argument("--dim", type=int, default=512, help="feature dimension (default 512)")
    parser.add_argument(
        "--reference-splits",
        type=int,
        default=5,
        help="splits the recommendation reference runs, its time scaled to 50 (default 5)",
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    tasks = list(BENCHMARKS) if args.task == "all" else [args.task]
    print(f"50 splits per task, d = {args.dim}, protocol n_jobs = {args.n_jobs}")
    for task in tasks:
        t_fast, fast_mean, t_ref, ref_mean = BENCHMARKS[task](
            rng, args.dim, args.n_jobs, args.reference_splits
        )
        print(
            f"{task:15s} protocol {t_fast:7.2f} s (mean {fast_mean:.4f})   "
            f"reference {t_ref:7.2f} s (mean {ref_mean:.4f})   speed-up x{t_ref / t_fast:.1f}"
        )


if __name__ == "__main__":
    main()
