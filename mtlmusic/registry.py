"""Model names and the registry of published models.

Every network and representation of the study has a name made of its
architecture code and its sources in canonical order (see
:func:`mtlmusic.architectures.model_name`)::

    ssr-bpm                  SS-R trained on bpm (8 such networks)
    mscr2-self-bpm-tag       MS-CR@2 on self, bpm and tag
    mscr4-..., mscr6-...     MS-CR@4, MS-CR@6
    mssrfc-year-lyrics       MS-SR@FC on year and lyrics
    msscr-self-bpm           MSS-CR: ssr-self and ssr-bpm side by side (no weights of its own)

plus short aliases such as ``default``. Published models are listed in the
registry, ``mtlmusic/registry.json``: the hub repository, the pinned revision,
and for each model its file, the file's SHA-256, architecture, sources and
feature dimension. Where model files come from (the package, the cache, the
hub) is :mod:`mtlmusic.hub`'s business; publishing is :mod:`mtlmusic.publish`'s.

``MTLMUSIC_REGISTRY`` names a registry JSON file to use instead of the packaged
one (e.g. one written by :func:`mtlmusic.publish.push_models`).

Examples
--------
>>> from mtlmusic.registry import known_models
>>> isinstance(known_models(), list)
True
>>> "default" in known_models("def*")
True
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .architectures import model_name, parse_model_name
from .errors import ConfigError
from .files import atomic_path

#: Folder of the model files that ship inside the package.
EMBEDDED_DIR = Path(__file__).parent / "weights"
#: The registry of published models that ships with the package.
REGISTRY_PATH = Path(__file__).parent / "registry.json"
#: Version of the registry layout.
REGISTRY_FORMAT = 1
#: Short names for models.
ALIASES = {"default": "default"}
#: Environment variable naming a registry file to use instead of the packaged one.
ENV_REGISTRY = "MTLMUSIC_REGISTRY"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RegistryEntry:
    """One published model file: where it is in the hub repository and what it holds.

    Examples
    --------
    >>> entry = RegistryEntry("ssr-bpm", "ssr-bpm.safetensors", "0" * 64, "SS-R", ("bpm",), 512)
    >>> entry.to_json()["dim"]
    512
    """

    name: str
    file: str
    sha256: str
    architecture: str
    sources: tuple[str, ...]
    dim: int

    def to_json(self) -> dict[str, Any]:
        """The entry as stored in a registry file (the name is the key, not a field)."""
        return {"file": self.file, "sha256": self.sha256, "architecture": self.architecture,
                "sources": list(self.sources), "dim": self.dim}

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any], origin: str = "registry") -> "RegistryEntry":
        """Validate and build an entry; raises :class:`~mtlmusic.errors.ConfigError` when it is malformed."""
        try:
            if not isinstance(data["sources"], list):
                raise TypeError("sources must be a list")
            entry = cls(name, str(data["file"]), str(data["sha256"]).lower(), str(data["architecture"]),
                        tuple(data["sources"]), int(data["dim"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{origin}: the entry of model {name!r} is malformed ({err!r}); it needs "
                              "file, sha256, architecture, sources and dim.") from err
        if not _SHA256.match(entry.sha256):
            raise ConfigError(f"{origin}: model {name!r} has an invalid sha256 {entry.sha256!r} (64 hex digits).")
        expected = model_name(entry.architecture, entry.sources)
        if expected != name:
            raise ConfigError(f"{origin}: model {name!r} is declared as {entry.architecture} on "
                              f"{list(entry.sources)}, whose name is {expected!r}.")
        return entry


@dataclass(frozen=True)
class Registry:
    """The published models: hub repository, pinned revision, and one :class:`RegistryEntry` per model.

    Examples
    --------
    >>> Registry(None, None, {}).to_json()["models"]
    {}
    """

    repo_id: str | None
    revision: str | None
    models: dict[str, RegistryEntry] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The registry as written to a JSON file."""
        return {"format_version": REGISTRY_FORMAT, "repo_id": self.repo_id, "revision": self.revision,
                "models": {name: self.models[name].to_json() for name in sorted(self.models)}}

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Registry":
        """Read and validate a registry file; raises :class:`~mtlmusic.errors.ConfigError` when malformed."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"Cannot read the model registry {path}: {err}") from err
        if not isinstance(data, dict) or not isinstance(data.get("models", {}), dict):
            raise ConfigError(f"{path}: a model registry is a JSON object with a 'models' object.")
        version = data.get("format_version", REGISTRY_FORMAT)
        if not isinstance(version, int) or version < 1:
            raise ConfigError(f"{path}: the registry has no valid format_version.")
        if version > REGISTRY_FORMAT:
            raise ConfigError(f"{path}: registry format {data['format_version']} is newer than this mtlmusic "
                              f"understands ({REGISTRY_FORMAT}); upgrade with `pip install -U mtlmusic`.")
        models = {name: RegistryEntry.from_json(name, entry, str(path))
                  for name, entry in data.get("models", {}).items()}
        return cls(data.get("repo_id"), data.get("revision"), models)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the registry to ``path`` atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path


RegistryLike = Registry | str | os.PathLike | None


def load_registry(registry: RegistryLike = None) -> Registry:
    """The registry to use: ``registry`` itself, a registry file, ``$MTLMUSIC_REGISTRY``, or the packaged one.

    Examples
    --------
    >>> isinstance(load_registry().models, dict)
    True
    """
    if isinstance(registry, Registry):
        return registry
    path = registry if registry is not None else os.environ.get(ENV_REGISTRY) or REGISTRY_PATH
    return Registry.read(path)


def embedded_models() -> dict[str, Path]:
    """Model files shipped in the package, by name (file stem)."""
    return {path.stem: path for path in sorted(EMBEDDED_DIR.glob("*.safetensors"))}


def known_models(pattern: str | None = None, *, registry: RegistryLike = None) -> list[str]:
    """Names of the models known to this installation, optionally filtered by a glob ``pattern``.

    The names are those of the embedded models, of the models published in the
    registry, and the aliases. Any ``msscr-SOURCE-SOURCE...`` name whose SS-R
    members (``ssr-SOURCE``) are listed can be loaded too: MSS-CR
    representations are assembled on demand.

    Parameters
    ----------
    pattern : str, optional
        A shell-style glob such as ``"mscr2-*"`` or ``"*-tag*"``.
    registry : Registry or path-like, optional
        The registry to list; see :func:`load_registry`.

    Returns
    -------
    list of str
        Sorted names.

    Examples
    --------
    >>> known_models("no-such-*")
    []
    """
    names = set(embedded_models()) | set(load_registry(registry).models) | set(ALIASES)
    return sorted(n for n in names if pattern is None or fnmatch.fnmatch(n, pattern))


def is_model_path(name_or_path: str | os.PathLike) -> bool:
    """Whether ``name_or_path`` names a file rather than a model: a ``.safetensors`` name, a path, an existing file.

    >>> is_model_path("ssr-bpm"), is_model_path("models/ssr-bpm.safetensors")
    (False, True)
    """
    text = os.fspath(name_or_path)
    return (Path(text).suffix == ".safetensors" or os.path.isfile(text) or os.sep in text
            or (os.altsep is not None and os.altsep in text))


def msscr_members(name: str) -> tuple[str, ...] | None:
    """The SS-R names an MSS-CR name is made of, or None when ``name`` is not an MSS-CR name.

    >>> msscr_members("msscr-self-bpm"), msscr_members("ssr-bpm")
    (('ssr-self', 'ssr-bpm'), None)
    """
    try:
        architecture, sources = parse_model_name(name)
    except ConfigError:
        return None
    if architecture != "MSS-CR" or len(sources) < 2:
        return None
    return tuple(model_name("SS-R", [source]) for source in sources)
