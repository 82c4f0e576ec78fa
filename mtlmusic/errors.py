"""The one exception family of mtlmusic.

Every error the library raises on purpose derives from :class:`MtlmusicError`, so
``except mtlmusic.MtlmusicError`` catches them all. Messages say what went wrong
and what to do about it.

Examples
--------
>>> import mtlmusic
>>> try:
...     mtlmusic.load_audio("missing.wav")
... except mtlmusic.AudioError as err:
...     print(type(err).__name__)
AudioError
"""


class MtlmusicError(Exception):
    """Base class of every error raised by mtlmusic."""


class AudioError(MtlmusicError, ValueError):
    """Audio could not be read or is not usable (missing, empty, corrupt, NaN, ...)."""


class DecoderNotFoundError(AudioError):
    """The file's format needs a decoder (ffmpeg) that is not installed."""


class ModelFileError(MtlmusicError, ValueError):
    """A model file is truncated, corrupt, of an unknown version or inconsistent."""


class ModelNotFoundError(MtlmusicError, LookupError):
    """No model of that name is embedded, cached or available from the hub."""


class ConfigError(MtlmusicError, ValueError):
    """An architecture, source list or option is not valid."""
