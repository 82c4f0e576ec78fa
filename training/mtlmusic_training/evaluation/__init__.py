"""Transfer evaluation of music representations (paper sections 4.2-4.4).

The protocols work on feature vectors only: one vector per track of a dataset (any extractor,
or the :func:`mfcc_features` baseline), scored with the protocol of the dataset's task.
:func:`evaluate` does both steps for a model, a feature file, a baseline or any function of the
audio, with a feature cache; :func:`evaluate_grid` does them for every representation of the study
on every dataset, into a resumable table of scores. :mod:`.analysis` turns that table into the
paper's tables and figures.

Examples
--------
>>> import numpy as np
>>> from mtlmusic_training.evaluation import evaluate_classification
>>> rng = np.random.default_rng(0)
>>> y = np.repeat(["a", "b"], 40)
>>> X = rng.normal(size=(80, 6)) + (y == "b")[:, None] * 3.0
>>> print(evaluate_classification(X, y, n_repeats=1, n_folds=4).metric)
accuracy
"""

from .baselines import MFCC_SAMPLE_RATE, N_MFCC, mfcc_features
from .datasets import (JAM_MIN_LIKES, PAPER_SUBSAMPLE, EvalDataset, load_ballroom, load_fma_medium, load_gtzan,
                       load_interactions_csv, load_irmas, load_labels_csv, load_mediaeval_emotion, load_thisismyjam,
                       load_values_csv, paper_subsample)
from .grid import RESULT_COLUMNS, GridSummary, evaluate_grid, grid_representations
from .protocols import (ContentALSModel, EvaluationResult, average_precision_at_k, content_als, evaluate_classification,
                        evaluate_recommendation, evaluate_regression)
from .run import BASELINES, RAND_SEED, DatasetFeatures, dataset_features, evaluate, fit_scaler, rand_model
