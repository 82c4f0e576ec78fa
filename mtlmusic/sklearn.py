"""A scikit-learn transformer: audio files (or waveforms) in, mtlmusic features out.

:class:`MusicFeatures` drops into a :class:`~sklearn.pipeline.Pipeline`::

    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC
    from mtlmusic.sklearn import MusicFeatures

    clf = make_pipeline(MusicFeatures(model="default"), LinearSVC())
    clf.fit(["a.mp3", "b.mp3", ...], labels)

``X`` may be a list of file paths, a list of waveforms (with ``sr``), or a 2-D
numeric array whose rows are mono waveforms at ``sr``.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

from .errors import ConfigError
from .model import load_model


class MusicFeatures(TransformerMixin, BaseEstimator):
    """Map audio to the study's track representation (mean and std of slice representations).

    Parameters
    ----------
    model : str or path-like
        Model name or model file.
    sr : int, optional
        Sample rate of waveform input (not needed for files).
    device : str, optional
        Torch device (default: CUDA when available).
    batch_size : int
        Slices per forward pass.

    Examples
    --------
    >>> features = MusicFeatures(model="model.safetensors").fit_transform(["a.mp3"])  # doctest: +SKIP
    >>> features.shape                                                               # doctest: +SKIP
    (1, 512)
    """

    def __init__(self, model="default", sr=None, device=None, batch_size=64):
        self.model = model
        self.sr = sr
        self.device = device
        self.batch_size = batch_size

    def fit(self, X, y=None):
        """Load the model (nothing is learned); returns self."""

        _, self.n_features_in_ = self._validate(X)
        self.model_ = load_model(os.fspath(self.model), device=self.device)
        self.model_.batch_size = self.batch_size
        self.n_features_out_ = self.model_.dim
        return self

    def transform(self, X):
        """Features of each item of ``X``: an ``(n_items, model.dim)`` float32 array."""
        check_is_fitted(self, "model_")
        items, n_features = self._validate(X)
        if n_features != self.n_features_in_:
            raise ValueError(f"X has {n_features} features, but MusicFeatures is expecting "
                             f"{self.n_features_in_} features as input.")
        if all(isinstance(item, (str, os.PathLike)) for item in items):
            return self.model_.extract(list(items))
        if self.sr is None:
            raise ConfigError("Waveform input needs the sample rate: MusicFeatures(sr=...).")
        return np.stack([self.model_.extract(np.asarray(item, dtype=np.float32), sr=self.sr) for item in items])

    def get_feature_names_out(self, input_features=None):
        """Names such as ``'mean.bpm.007'``, one per output column."""
        check_is_fitted(self, "model_")
        return np.asarray(self.model_.feature_names, dtype=object)

    @staticmethod
    def _validate(X) -> tuple[list, int]:
        """Items of ``X`` and its number of columns (waveform length for a matrix, 1 for a list)."""
        if isinstance(X, (str, os.PathLike)):
            raise ValueError("X must be a list of paths or waveforms, not a single path: wrap it in a list.")
        if hasattr(X, "tocsr"):
            raise TypeError("MusicFeatures does not accept sparse input: pass file paths or waveforms.")
        if hasattr(X, "__array__") and not isinstance(X, (list, tuple)):
            X = np.asarray(X)
        if isinstance(X, np.ndarray) and X.dtype.kind not in "OUS":
            matrix = check_array(X, dtype=np.float32)
            return list(matrix), matrix.shape[1]
        items = list(X)
        if not items:
            raise ValueError("Found array with 0 sample(s) (shape=(0,)) while a minimum of 1 is required.")
        return items, 1

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.string = True
        tags.requires_fit = True
        tags.non_deterministic = False
        tags.transformer_tags.preserves_dtype = []  # features are float32 whatever the input
        return tags
