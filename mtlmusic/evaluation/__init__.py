"""Transfer evaluation of music representations (paper sections 4.2-4.4).

Evaluation works on feature vectors only: extract one vector per track of a dataset (any
extractor, or the :func:`mfcc_features` baseline), then score it with the protocol of the
dataset's task.

Examples
--------
>>> import numpy as np
>>> from mtlmusic.evaluation import evaluate_classification
>>> rng = np.random.default_rng(0)
>>> y = np.repeat(["a", "b"], 40)
>>> X = rng.normal(size=(80, 6)) + (y == "b")[:, None] * 3.0
>>> print(evaluate_classification(X, y, n_repeats=1, n_folds=4).metric)
accuracy
"""

from mtlmusic.evaluation.baselines import MFCC_SAMPLE_RATE, N_MFCC, mfcc_features
from mtlmusic.evaluation.datasets import (
    EvalDataset,
    load_ballroom,
    load_fma_medium,
    load_gtzan,
    load_interactions_csv,
    load_irmas,
    load_labels_csv,
    load_mediaeval_emotion,
    load_thisismyjam,
    load_values_csv,
)
from mtlmusic.evaluation.protocols import (
    ContentALSModel,
    EvaluationResult,
    average_precision_at_k,
    content_als,
    evaluate_classification,
    evaluate_recommendation,
    evaluate_regression,
)

__all__ = [
    "MFCC_SAMPLE_RATE",
    "N_MFCC",
    "ContentALSModel",
    "EvalDataset",
    "EvaluationResult",
    "average_precision_at_k",
    "content_als",
    "evaluate_classification",
    "evaluate_recommendation",
    "evaluate_regression",
    "load_ballroom",
    "load_fma_medium",
    "load_gtzan",
    "load_interactions_csv",
    "load_irmas",
    "load_labels_csv",
    "load_mediaeval_emotion",
    "load_thisismyjam",
    "load_values_csv",
    "mfcc_features",
]
