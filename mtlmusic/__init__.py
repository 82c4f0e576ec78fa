"""mtlmusic: deep music representations from multi-task learning.

Audio in, one feature vector per track out::

    import mtlmusic
    features = mtlmusic.extract("song.mp3")              # the embedded default model
    model = mtlmusic.load_model("path/to/model.safetensors")
    model = mtlmusic.load_model("hf-hub:org/models/ssr-bpm.safetensors")   # any hub repository
    matrix = model.extract(["a.mp3", "b.flac"])           # N x model.dim

The whole public surface is here: :func:`load_model`, :func:`extract`,
:func:`list_models`, :func:`load_audio`, :class:`Model` and the exceptions.
"""

from ._version import __version__
from .audio import SAMPLE_RATE, load_audio
from .errors import (AudioError, ConfigError, DecoderNotFoundError, ModelFileError, ModelNotFoundError,
                     MtlmusicError)
from .model import Model, SliceFeatures, extract, load_model
from .hub import list_models

__all__ = [
    "SAMPLE_RATE", "AudioError", "ConfigError", "DecoderNotFoundError", "Model", "ModelFileError",
    "ModelNotFoundError", "MtlmusicError", "SliceFeatures", "__version__", "extract", "list_models", "load_audio",
    "load_model",
]
