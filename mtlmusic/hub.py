"""Model names, the registry of published models, and where model files come from.

Every network and representation of the study has a name made of its
architecture code and its sources in canonical order (see
:func:`mtlmusic.architectures.model_name`)::

    ssr-bpm                  SS-R trained on bpm (8 such networks)
    mscr2-self-bpm-tag       MS-CR@2 on self, bpm and tag
    mscr4-..., mscr6-...     MS-CR@4, MS-CR@6
    mssrfc-year-lyrics       MS-SR@FC on year and lyrics
    msscr-self-bpm           MSS-CR: ssr-self and ssr-bpm side by side (no weights of its own)

plus short aliases such as ``default``. :func:`resolve_model` turns a name or a
path into a model file, looking in order at: an existing file path, the weights
embedded in the package (``mtlmusic/weights/``), the local cache, and the hub.
An MSS-CR name that is not published as a file of its own is served by loading
its SS-R members and concatenating them (:func:`load_network`).

Published models are listed in the registry, ``mtlmusic/registry.json``: the
hub repository, the pinned revision, and for each model its file, the file's
SHA-256, architecture, sources and feature dimension. Downloads use
``huggingface_hub`` and its standard cache, pinned to the registry's revision,
and every file is checked against the registry's SHA-256. Nothing is
downloaded at import time.

Environment variables:

``MTLMUSIC_HUB_REPO``
    Hub repository to download from instead of the registry's.
``MTLMUSIC_HUB_REVISION``
    Revision to download instead of the registry's pinned one.
``MTLMUSIC_HOME``
    Cache folder root: files go to ``$MTLMUSIC_HOME/hub`` instead of the Hugging Face cache.
``MTLMUSIC_REGISTRY``
    A registry JSON file to use instead of the packaged one (e.g. one written by :func:`push_models`).
``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``
    Honoured as by ``huggingface_hub``; offline, models are served from the cache only.

Examples
--------
>>> from mtlmusic.hub import list_models
>>> isinstance(list_models(), list)
True
>>> "default" in list_models("def*")
True
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .architectures import SOURCES, MultiTaskNetwork, build_network, model_name, parse_model_name
from .errors import ConfigError, ModelFileError, ModelNotFoundError
from .frontend import Scaler
from .modelfile import FORMAT_VERSION, feature_names, load_model_file
from .nets import FEATURE_DIM

#: Folder of the model files that ship inside the package.
EMBEDDED_DIR = Path(__file__).parent / "weights"
#: The registry of published models that ships with the package.
REGISTRY_PATH = Path(__file__).parent / "registry.json"
#: Version of the registry layout.
REGISTRY_FORMAT = 1
#: Short names for models.
ALIASES = {"default": "default"}

ENV_REPO = "MTLMUSIC_HUB_REPO"
ENV_REVISION = "MTLMUSIC_HUB_REVISION"
ENV_HOME = "MTLMUSIC_HOME"
ENV_REGISTRY = "MTLMUSIC_REGISTRY"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TRUE = {"1", "ON", "YES", "TRUE"}


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
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_json(), f, indent=2)
                f.write("\n")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
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


def cache_dir() -> Path:
    """Folder of downloaded model files: ``$MTLMUSIC_HOME/hub``, else the standard Hugging Face cache.

    >>> cache_dir().name
    'hub'
    """
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def embedded_models() -> dict[str, Path]:
    """Model files shipped in the package, by name (file stem)."""
    return {path.stem: path for path in sorted(EMBEDDED_DIR.glob("*.safetensors"))}


def list_models(pattern: str | None = None, *, registry: RegistryLike = None) -> list[str]:
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
    >>> list_models("no-such-*")
    []
    """
    names = set(embedded_models()) | set(load_registry(registry).models) | set(ALIASES)
    return sorted(n for n in names if pattern is None or fnmatch.fnmatch(n, pattern))


@dataclass(frozen=True)
class _Hub:
    """Where and how to fetch published files."""

    registry: Registry
    repo_id: str | None
    revision: str | None
    endpoint: str | None
    token: str | bool | None


def _hub(registry: RegistryLike, repo_id: str | None, revision: str | None, endpoint: str | None,
         token: str | bool | None = None) -> _Hub:
    registry = load_registry(registry)
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    return _Hub(registry, repo_id or os.environ.get(ENV_REPO) or registry.repo_id,
                revision or os.environ.get(ENV_REVISION) or registry.revision,
                endpoint.rstrip("/") if endpoint else None, token)


def _is_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (huggingface_hub reads it only once, at import)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def _is_path(name_or_path: str | os.PathLike) -> bool:
    text = os.fspath(name_or_path)
    return (Path(text).suffix == ".safetensors" or os.path.isfile(text) or os.sep in text
            or (os.altsep is not None and os.altsep in text))


def _msscr_members(name: str) -> tuple[str, ...] | None:
    """The SS-R names an MSS-CR name is made of, or None when ``name`` is not an MSS-CR name."""
    try:
        architecture, sources = parse_model_name(name)
    except ConfigError:
        return None
    if architecture != "MSS-CR" or len(sources) < 2:
        return None
    return tuple(model_name("SS-R", [source]) for source in sources)


def _unknown(name: str, hub: _Hub) -> ModelNotFoundError:
    if name == "default":
        return ModelNotFoundError(
            "No default weights are installed in this mtlmusic package "
            f"(expected {EMBEDDED_DIR / 'default.safetensors'}). Load a model file instead: "
            "mtlmusic.load_model('path/to/model.safetensors').")
    try:
        architecture, sources = parse_model_name(name)
        what = (f"it would be {architecture} on {', '.join(sources)}, but no such model is embedded or "
                f"published in the registry (repository {hub.repo_id or 'none configured'})")
    except ConfigError as err:
        what = str(err)
    known = list_models(registry=hub.registry)
    shown = ", ".join(known[:12]) + (f" and {len(known) - 12} more" if len(known) > 12 else "")
    return ModelNotFoundError(f"Unknown model {name!r}: {what}. Known models: {shown or 'none'} "
                              "(see mtlmusic.list_models()); or pass the path of a model file.")


def _lookup(name: str, hub: _Hub) -> Path | RegistryEntry | tuple[str, ...]:
    """An embedded file, a registry entry, or the SS-R members of an MSS-CR name."""
    name = ALIASES.get(name, name)
    embedded = embedded_models()
    if name in embedded:
        return embedded[name]
    if name in hub.registry.models:
        return hub.registry.models[name]
    members = _msscr_members(name)
    if members is not None:
        missing = [m for m in members if m not in embedded and m not in hub.registry.models]
        if missing:
            raise ModelNotFoundError(
                f"MSS-CR model {name!r} is assembled from {', '.join(members)}, but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} neither embedded nor published in the registry "
                f"(repository {hub.repo_id or 'none configured'}).")
        return members
    raise _unknown(name, hub)


def model_status(name: str, *, registry: RegistryLike = None, repo_id: str | None = None,
                 revision: str | None = None) -> str:
    """Where a model would be loaded from: ``'embedded'``, ``'cached'`` or ``'remote'``.

    An MSS-CR model assembled from SS-R members is ``'embedded'`` when all its
    members are, ``'cached'`` when all are embedded or cached, else ``'remote'``.
    Nothing is downloaded.

    Parameters
    ----------
    name : str
        A model name or alias (see :func:`list_models`).
    registry : Registry or path-like, optional
        See :func:`load_registry`.
    repo_id, revision : str, optional
        Hub repository and revision (default: ``$MTLMUSIC_HUB_REPO`` / ``$MTLMUSIC_HUB_REVISION``,
        then the registry's).

    Returns
    -------
    str

    Examples
    --------
    >>> model_status("ssr-bpm")                               # doctest: +SKIP
    'remote'
    """
    hub = _hub(registry, repo_id, revision, None)
    found = _lookup(str(name), hub)
    if isinstance(found, tuple):
        statuses = {model_status(member, registry=hub.registry, repo_id=hub.repo_id, revision=hub.revision)
                    for member in found}
        return "remote" if "remote" in statuses else "cached" if "cached" in statuses else "embedded"
    if isinstance(found, Path):
        return "embedded"
    return "cached" if _cached_file(found, hub) is not None else "remote"


def _cached_file(entry: RegistryEntry, hub: _Hub) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    if hub.repo_id is None or hub.revision is None:
        return None
    found = try_to_load_from_cache(hub.repo_id, entry.file, cache_dir=cache_dir(), revision=hub.revision)
    return Path(found) if isinstance(found, str) else None


def resolve_model(name_or_path: str | os.PathLike, *, registry: RegistryLike = None, repo_id: str | None = None,
                  revision: str | None = None, endpoint: str | None = None,
                  token: str | bool | None = None) -> Path:
    """The model file for a name or path, downloaded and verified if needed.

    Parameters
    ----------
    name_or_path : str or path-like
        A model file, a model name or an alias.
    registry : Registry or path-like, optional
        See :func:`load_registry`.
    repo_id : str, optional
        Hub repository (default: ``$MTLMUSIC_HUB_REPO``, then the registry's).
    revision : str, optional
        Revision (default: ``$MTLMUSIC_HUB_REVISION``, then the registry's pinned commit).
    endpoint : str, optional
        Hub URL (default: ``$HF_ENDPOINT``, then https://huggingface.co).
    token : str or bool, optional
        Access token for private repositories (default: the logged-in user's, if any).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ModelNotFoundError
        No such file or model, the name is an MSS-CR assembled from several files
        (use :func:`model_files` or :func:`load_network`), or the file is neither
        cached nor downloadable (offline, 404, network error).
    ModelFileError
        The downloaded file does not have the registry's SHA-256 (it is deleted).

    Examples
    --------
    >>> resolve_model("ssr-bpm")                               # doctest: +SKIP
    PosixPath('/home/me/.cache/huggingface/hub/models--.../ssr-bpm.safetensors')
    """
    files = model_files(name_or_path, registry=registry, repo_id=repo_id, revision=revision,
                        endpoint=endpoint, token=token)
    if len(files) != 1:
        raise ModelNotFoundError(f"{name_or_path!r} is an MSS-CR representation assembled from "
                                 f"{', '.join(files)}: it has no single model file; load it with "
                                 "mtlmusic.load_model() or get its members with mtlmusic.hub.model_files().")
    return next(iter(files.values()))


def model_files(name_or_path: str | os.PathLike, *, registry: RegistryLike = None, repo_id: str | None = None,
                revision: str | None = None, endpoint: str | None = None,
                token: str | bool | None = None) -> dict[str, Path]:
    """The model files a name needs, by model name, downloaded and verified if needed.

    One file for a network; the SS-R member files for an assembled MSS-CR name.
    Parameters and errors as in :func:`resolve_model`.

    Examples
    --------
    >>> sorted(model_files("msscr-self-bpm"))                  # doctest: +SKIP
    ['ssr-bpm', 'ssr-self']
    """
    if _is_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise ModelNotFoundError(f"Model file {path} does not exist.")
        return {path.stem: path}
    hub = _hub(registry, repo_id, revision, endpoint, token)
    name = str(name_or_path)
    found = _lookup(name, hub)
    items = ({member: _lookup(member, hub) for member in found} if isinstance(found, tuple)
             else {ALIASES.get(name, name): found})
    return {member: item if isinstance(item, Path) else _fetch(item, hub) for member, item in items.items()}


def _transfer_errors() -> tuple[type[BaseException], ...]:
    """Errors a failed transfer raises: OSError and the base error of the HTTP library huggingface_hub uses."""
    from huggingface_hub.utils import HfHubHTTPError

    libraries = (sys.modules.get(name) for name in ("httpx2", "httpx", "requests"))
    return (OSError, HfHubHTTPError, *(lib.HTTPError for lib in libraries if lib is not None))


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as recorded in the registry.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     file_sha256(f.name)[:12]
    'e3b0c44298fc'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove_cached(path: Path) -> None:
    """Delete a cached file: the snapshot link and the blob it points to."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def _fetch(entry: RegistryEntry, hub: _Hub) -> Path:
    """The verified local file of a published model; a corrupt cached copy is deleted and fetched again."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                       RevisionNotFoundError)

    from . import __version__

    cache = cache_dir()
    where = f"{hub.repo_id}@{hub.revision}"
    if hub.repo_id is None or hub.revision is None:
        raise ModelNotFoundError(
            f"Model {entry.name!r} is published, but no hub repository and revision are configured "
            f"(repository {hub.repo_id}, revision {hub.revision}): set {ENV_REPO} and {ENV_REVISION}.")
    offline = _is_offline()
    from_cache = _cached_file(entry, hub) is not None
    while True:
        try:
            path = Path(hf_hub_download(
                hub.repo_id, entry.file, revision=hub.revision, cache_dir=cache, endpoint=hub.endpoint,
                token=hub.token, local_files_only=offline, library_name="mtlmusic", library_version=__version__))
        except LocalEntryNotFoundError as err:
            reason = "offline mode is on (HF_HUB_OFFLINE)" if offline else "the hub cannot be reached"
            raise ModelNotFoundError(
                f"Model {entry.name!r} ({entry.file} of repository {where}) is not in the cache {cache} and "
                f"{reason}. Connect to the network and unset HF_HUB_OFFLINE to download it once, or point "
                f"{ENV_HOME} at a cache that holds it.") from err
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
            raise ModelNotFoundError(
                f"Model {entry.name!r}: {entry.file} is not found in repository {where} "
                f"({type(err).__name__}). Check {ENV_REPO} / {ENV_REVISION} or the registry.") from err
        except _transfer_errors() as err:
            raise ModelNotFoundError(
                f"Model {entry.name!r}: downloading {entry.file} from repository {where} into {cache} "
                f"failed: {err}") from err
        digest = file_sha256(path)
        if digest == entry.sha256:
            return path
        _remove_cached(path)
        if from_cache and not offline:
            from_cache = False
            continue
        state = "cached" if from_cache else "downloaded"
        raise ModelFileError(
            f"The {state} file {entry.file} of model {entry.name!r} (repository {where}) has SHA-256 {digest}, "
            f"but the registry expects {entry.sha256}; the file was deleted from {cache}. "
            + ("Go online (unset HF_HUB_OFFLINE) to download it again." if from_cache else
               "The repository does not hold the published file: check the repository and revision."))


def assemble_msscr(members: Iterable[tuple[MultiTaskNetwork, Scaler, dict[str, Any]]],
                   name: str | None = None) -> tuple[MultiTaskNetwork, Scaler, dict[str, Any]]:
    """Build the MSS-CR network of independently trained SS-R networks, without new weights.

    Member ``shared.{i}`` weights become the MSS-CR network's ``branches.{source}.{i}``
    and each member's head is kept, so the representation is the members'
    representations side by side, in canonical source order.

    Parameters
    ----------
    members : iterable of (network, scaler, config)
        SS-R networks as returned by :func:`~mtlmusic.modelfile.load_model_file`; one per source.
    name : str, optional
        Name of the result (default: its canonical name).

    Returns
    -------
    (MultiTaskNetwork, Scaler, dict)
        The MSS-CR network in eval mode, the common scaler, and a config.

    Raises
    ------
    ConfigError
        A member is not SS-R, two members have the same source, or the members'
        scalers differ (their inputs would be standardized differently).

    Examples
    --------
    >>> from mtlmusic.frontend import Scaler
    >>> parts = [(build_network("SS-R", [s]), Scaler.identity(), {}) for s in ("tag", "self")]
    >>> network, scaler, config = assemble_msscr(parts)
    >>> config["name"], network.representation_blocks
    ('msscr-self-tag', ('self', 'tag'))
    """
    members = list(members)
    for network, _, config in members:
        if network.architecture != "SS-R":
            raise ConfigError(f"MSS-CR is assembled from SS-R networks; {config.get('name') or 'a member'} is "
                              f"{network.architecture}.")
    sources = [network.sources[0] for network, _, _ in members]
    head_sizes = {network.sources[0]: network.head_sizes[network.sources[0]] for network, _, _ in members}
    assembled = build_network("MSS-CR", sources, head_sizes)
    scaler = members[0][1]
    state = {}
    for network, member_scaler, config in members:
        source = network.sources[0]
        if not (torch.equal(member_scaler.mean, scaler.mean) and torch.equal(member_scaler.std, scaler.std)):
            raise ConfigError(f"Cannot assemble MSS-CR from {', '.join(model_name('SS-R', [s]) for s in sources)}: "
                              f"{config.get('name') or model_name('SS-R', [source])} standardizes its input with "
                              f"another scaler than {members[0][2].get('name') or sources[0]}; members of an MSS-CR "
                              "representation must share the front end's scaler.")
        for key, value in network.state_dict().items():
            prefix, rest = key.split(".", 1)
            state[f"branches.{source}.{rest}" if prefix == "shared" else key] = value
    assembled.load_state_dict(state, strict=True)
    name = name or model_name("MSS-CR", sources)
    member_info = {model_name("SS-R", [network.sources[0]]): config.get("tensors_sha256")
                   for network, _, config in members}
    config = {
        "format_version": FORMAT_VERSION, "name": name, "architecture": "MSS-CR",
        "sources": list(assembled.sources), "head_sizes": assembled.head_sizes,
        "representation_blocks": list(assembled.representation_blocks),
        "feature_names": feature_names(assembled.representation_blocks),
        "info": {"assembled_from": member_info},
    }
    return assembled.eval(), scaler, config


def load_network(name_or_path: str | os.PathLike = "default", *, registry: RegistryLike = None,
                 repo_id: str | None = None, revision: str | None = None, endpoint: str | None = None,
                 token: str | bool | None = None) -> tuple[MultiTaskNetwork, Scaler, dict[str, Any]]:
    """Load a network by name or path: ``(network in eval mode, scaler, config)``.

    An MSS-CR name with no file of its own is assembled from its SS-R members
    (:func:`assemble_msscr`). Parameters and errors as in :func:`resolve_model`.

    Examples
    --------
    >>> network, scaler, config = load_network("msscr-self-bpm")   # doctest: +SKIP
    >>> network.representation_blocks                              # doctest: +SKIP
    ('self', 'bpm')
    """
    files = model_files(name_or_path, registry=registry, repo_id=repo_id, revision=revision,
                        endpoint=endpoint, token=token)
    if len(files) == 1:
        path = next(iter(files.values()))
        network, scaler, config = load_model_file(path)
        config["path"] = str(path)
        if not _is_path(name_or_path) and not config.get("name"):
            config["name"] = ALIASES.get(str(name_or_path), str(name_or_path))
        return network, scaler, config
    return assemble_msscr([load_model_file(path) for path in files.values()], name=str(name_or_path))


def _feature_dim(config: Mapping[str, Any]) -> int:
    """Length of a track's feature vector (mean and std of every representation block)."""
    return 2 * FEATURE_DIM * len(config["representation_blocks"])


def model_card(configs: Mapping[str, Mapping[str, Any]], registry: Registry | None = None) -> str:
    """A hub model card (README.md with a YAML metadata header) for model files, from their configs.

    The header's ``license``, ``tags``, ``datasets`` and ``metrics`` come from the
    ``info`` of each file's config (keys of the same names; ``license`` must agree
    across files, ``"unknown"`` when none is given). ``info["description"]``
    texts form the body, followed by a table of the models (those of
    ``registry`` as well when given).

    Parameters
    ----------
    configs : mapping of name to config
        Model configs as returned by :func:`~mtlmusic.modelfile.read_config`.
    registry : Registry, optional
        Other published models to list in the table.

    Returns
    -------
    str

    Examples
    --------
    >>> card = model_card({"ssr-bpm": {"architecture": "SS-R", "sources": ["bpm"],
    ...                                "representation_blocks": ["bpm"], "info": {"license": "mit"}}})
    >>> header = card.split("---")[1]
    >>> "license: mit" in header, "- bpm" in header
    (True, True)
    """
    from huggingface_hub import ModelCardData

    infos = {name: dict(config.get("info") or {}) for name, config in configs.items()}
    licenses = {str(info["license"]) for info in infos.values() if info.get("license")}
    if len(licenses) > 1:
        raise ConfigError(f"The model files declare different licenses ({', '.join(sorted(licenses))}); "
                          "publish them to separate repositories or agree on one licence in info['license'].")

    def union(key: str, start: Iterable[str] = ()) -> list[str]:
        values = list(start)
        for info in infos.values():
            items = info.get(key) or []
            for item in [items] if isinstance(items, str) else items:
                if str(item) not in values:
                    values.append(str(item))
        return values

    sources = sorted({s for config in configs.values() for s in config.get("sources", [])},
                     key=lambda s: (SOURCES.index(s) if s in SOURCES else len(SOURCES), s))
    data = ModelCardData(license=licenses.pop() if licenses else "unknown", library_name="mtlmusic",
                         pipeline_tag="feature-extraction",
                         tags=union("tags", ["mtlmusic", "music", "audio", "feature-extraction",
                                             "multi-task-learning", *sources]),
                         datasets=union("datasets") or None, metrics=union("metrics") or None)
    rows = {name: (config["architecture"], list(config["sources"]), _feature_dim(config))
            for name, config in configs.items()}
    for name, entry in (registry.models.items() if registry else ()):
        rows.setdefault(name, (entry.architecture, list(entry.sources), entry.dim))
    lines = ["---", data.to_yaml(), "---", "", "# mtlmusic models", "",
             "Deep music representations from multi-task learning (Kim, Urbano, Liem, Hanjalic: "
             "*One Deep Music Representation to Rule Them All?*), for the `mtlmusic` feature extractor.", "",
             "```python", "import mtlmusic", f"model = mtlmusic.load_model({min(rows)!r})",
             "features = model.extract(\"song.mp3\")", "```", ""]
    lines += [str(info["description"]).strip() + "\n" for info in infos.values() if info.get("description")]
    lines += ["| model | architecture | sources | features |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {arch} | {', '.join(srcs)} | {dim} |" for name, (arch, srcs, dim) in sorted(rows.items())]
    lines += ["", "MSS-CR representations (`msscr-SOURCE-SOURCE...`) are assembled by mtlmusic from the SS-R "
              "models above; they have no files of their own.", ""]
    return "\n".join(lines)


def push_models(files: Iterable[str | os.PathLike], repo_id: str, token: str | None = None, *,
                registry_path: str | os.PathLike | None = None, revision: str = "main",
                endpoint: str | None = None, private: bool | None = None,
                commit_message: str | None = None) -> dict[str, RegistryEntry]:
    """Upload model files and a model card to a hub repository in one commit, and record them in a registry.

    Every file is fully checked (:func:`~mtlmusic.modelfile.load_model_file`)
    and uploaded as ``NAME.safetensors``, where NAME is the file's config name or
    :func:`~mtlmusic.architectures.model_name` of its architecture and sources.
    The repository is created if needed. When ``registry_path`` is given, the
    entries are merged into that registry file (created if missing) and its
    pinned revision becomes the new commit; point ``$MTLMUSIC_REGISTRY`` at it
    (or ship it as ``mtlmusic/registry.json``) to make the models loadable by name.

    Parameters
    ----------
    files : iterable of path-like
        mtlmusic model files.
    repo_id : str
        Hub repository, ``"owner/name"``.
    token : str, optional
        A write token (default: ``$HF_TOKEN`` or the logged-in user's).
    registry_path : path-like, optional
        Registry JSON file to update.
    revision : str
        Branch to commit to.
    endpoint : str, optional
        Hub URL (default: ``$HF_ENDPOINT``, then https://huggingface.co).
    private : bool, optional
        Visibility of a repository created by this call.
    commit_message : str, optional
        Defaults to ``"Upload N mtlmusic model(s)"``.

    Returns
    -------
    dict of str to RegistryEntry
        The pushed models' registry entries, by name.

    Raises
    ------
    ModelFileError
        A file is not a valid mtlmusic model file.
    ConfigError
        Two files have the same name, licences disagree, or the registry file
        belongs to another repository.

    Examples
    --------
    >>> entries = push_models(["ssr-bpm.safetensors"], "me/mtlmusic-models",
    ...                       registry_path="registry.json")     # doctest: +SKIP
    >>> entries["ssr-bpm"].dim                                   # doctest: +SKIP
    512
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    files = [Path(f) for f in files]
    if not files:
        raise ConfigError("push_models needs at least one model file.")
    configs, entries, paths = {}, {}, {}
    for path in files:
        _, _, config = load_model_file(path)
        name = config.get("name") or model_name(config["architecture"], config["sources"])
        if name != model_name(config["architecture"], config["sources"]):
            raise ConfigError(f"{path}: its name {name!r} does not say what it is "
                              f"({model_name(config['architecture'], config['sources'])!r}); "
                              "save it with that name.")
        if name in configs:
            raise ConfigError(f"{paths[name]} and {path} are both model {name!r}.")
        configs[name], paths[name] = config, path
        entries[name] = RegistryEntry(name, f"{name}.safetensors", file_sha256(path), config["architecture"],
                                      tuple(config["sources"]), _feature_dim(config))
    registry = None
    if registry_path is not None:
        registry = Registry.read(registry_path) if Path(registry_path).exists() else Registry(repo_id, None, {})
        if registry.models and registry.repo_id != repo_id:
            raise ConfigError(f"The registry {registry_path} lists models of repository {registry.repo_id}; "
                              f"write the models of {repo_id} to another registry file.")
        registry = Registry(repo_id, registry.revision, {**registry.models, **entries})
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint.rstrip("/") if endpoint else None, token=token,
                library_name="mtlmusic")
    operations = [CommitOperationAdd(path_in_repo=entries[name].file, path_or_fileobj=str(paths[name]))
                  for name in sorted(entries)]
    operations.append(CommitOperationAdd(path_in_repo="README.md",
                                         path_or_fileobj=model_card(configs, registry).encode()))
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.create_commit(repo_id, operations, revision=revision,
                               commit_message=commit_message or f"Upload {len(entries)} mtlmusic model(s)")
    if registry is not None:
        Registry(repo_id, commit.oid, registry.models).write(registry_path)
    return entries

