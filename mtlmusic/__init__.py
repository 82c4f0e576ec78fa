"""mtlmusic: deep music representations from multi-task learning.

Audio in, one feature vector per track out::

    import mtlmusic
    features = mtlmusic.extract("song.mp3")              # the embedded default model
    model = mtlmusic.load_model("path/to/model.safetensors")
    matrix = model.extract(["a.mp3", "b.flac"])           # N x model.dim

The whole public surface is here: :func:`load_model`, :func:`extract`,
:func:`list_models`, :func:`load_audio`, :class:`Model` and the exceptions.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from .audio import SAMPLE_RATE, load_audio
from .errors import (AudioError, ConfigError, DecoderNotFoundError, ModelFileError, ModelNotFoundError,
                     MtlmusicError)
from .hub import list_models, load_network
from .model import Model, SliceFeatures

__version__ = "0.1.0"
__all__ = [
    "SAMPLE_RATE", "AudioError", "ConfigError", "DecoderNotFoundError", "Model", "ModelFileError",
    "ModelNotFoundError", "MtlmusicError", "SliceFeatures", "extract", "list_models", "load_audio", "load_model",
]


def load_model(name_or_path: str | os.PathLike = "default", device: str | None = None) -> Model:
    """Load a model by name or from a model file.

    Parameters
    ----------
    name_or_path : str or path-like
        A model name (see :func:`list_models`), an alias such as ``"default"``, or
        the path of a ``.safetensors`` model file. Named models come from the
        package, the local cache or the hub (see :mod:`mtlmusic.hub`); an MSS-CR
        name such as ``"msscr-self-bpm"`` is assembled from its SS-R members.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; defaults to CUDA when available.

    Returns
    -------
    Model

    Examples
    --------
    >>> model = mtlmusic.load_model("model.safetensors")       # doctest: +SKIP
    >>> model.extract("song.mp3").shape                          # doctest: +SKIP
    (512,)
    """
    network, scaler, config = load_network(name_or_path)
    return Model(network, scaler, config, device=device)


@lru_cache(maxsize=4)
def _cached_model(name_or_path: str, device: str | None) -> Model:
    return load_model(name_or_path, device)


def extract(audio, sr: int | None = None, model: str | os.PathLike | Model = "default",
            device: str | None = None) -> np.ndarray:
    """Features of one track (vector) or of a list of tracks (N x D), with a model loaded once and reused.

    Parameters
    ----------
    audio : path, array, or list of them
        See :meth:`Model.extract`.
    sr : int, optional
        Sample rate of array input.
    model : str, path-like or Model
        A model name, a model file, or a loaded :class:`Model`.
    device : str, optional
        Device for a model loaded by name.

    Examples
    --------
    >>> mtlmusic.extract("song.mp3").shape                      # doctest: +SKIP
    (512,)
    """
    if not isinstance(model, Model):
        model = _cached_model(os.fspath(model), device)
    return model.extract(audio, sr=sr)
