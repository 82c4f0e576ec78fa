"""Model names and where their files come from.

:func:`resolve_model` turns what a user passes to :func:`mtlmusic.load_model`
into a model file, looking in order at: an existing file path, the weights
embedded in the package (``mtlmusic/weights/``), and the aliases below.

Examples
--------
>>> from mtlmusic.hub import list_models
>>> isinstance(list_models(), list)
True
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from .errors import ModelNotFoundError

#: Folder of the model files that ship inside the package.
EMBEDDED_DIR = Path(__file__).parent / "weights"
#: Short names for models.
ALIASES = {"default": "default"}


def embedded_models() -> dict[str, Path]:
    """Model files shipped in the package, by name (file stem)."""
    return {path.stem: path for path in sorted(EMBEDDED_DIR.glob("*.safetensors"))}


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the models known to this installation, optionally filtered by a glob ``pattern``.

    >>> list_models("no-such-*")
    []
    """
    names = sorted(set(embedded_models()) | set(ALIASES))
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The model file for a name or path; raises :class:`~mtlmusic.errors.ModelNotFoundError`."""
    path = Path(name_or_path)
    if path.suffix == ".safetensors" or path.exists() or os.sep in str(name_or_path):
        if not path.is_file():
            raise ModelNotFoundError(f"Model file {path} does not exist.")
        return path
    name = ALIASES.get(str(name_or_path), str(name_or_path))
    embedded = embedded_models()
    if name in embedded:
        return embedded[name]
    if name == "default":
        raise ModelNotFoundError(
            "No default weights are installed in this mtlmusic package "
            f"(expected {EMBEDDED_DIR / 'default.safetensors'}). Load a model file instead: "
            "mtlmusic.load_model('path/to/model.safetensors').")
    raise ModelNotFoundError(f"Unknown model {name_or_path!r}. Known models: {', '.join(list_models()) or 'none'}; "
                             "or pass the path of a model file.")
