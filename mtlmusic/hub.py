"""Where model files come from: the package, the local cache, the hub; downloads verified.

:func:`resolve_model` turns a name (see :mod:`mtlmusic.registry`) or a path into
a model file, looking in order at: an existing file path, the weights embedded
in the package (``mtlmusic/weights/``), the local cache, and the hub. An MSS-CR
name that is not published as a file of its own is served by loading its SS-R
members and putting them side by side (:func:`load_network`).

Downloads use ``huggingface_hub`` and its standard cache, pinned to the
registry's revision, and every file is checked against the registry's SHA-256.
Nothing is downloaded at import time.

Environment variables:

``MTLMUSIC_HUB_REPO``
    Hub repository to download from instead of the registry's.
``MTLMUSIC_HUB_REVISION``
    Revision to download instead of the registry's pinned one.
``MTLMUSIC_HOME``
    Cache folder root: files go to ``$MTLMUSIC_HOME/hub`` instead of the Hugging Face cache.
``MTLMUSIC_REGISTRY``
    A registry JSON file to use instead of the packaged one (see :mod:`mtlmusic.registry`).
``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``
    Honoured as by ``huggingface_hub``; offline, models are served from the cache only.

Examples
--------
>>> from mtlmusic.hub import model_status
>>> model_status("default")
'embedded'
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .architectures import MultiTaskNetwork, assemble_msscr, model_name, parse_model_name
from .errors import ConfigError, ModelFileError, ModelNotFoundError
from .files import file_sha256
from .frontend import Scaler
from .modelfile import FORMAT_VERSION, feature_names, load_model_file
from .registry import (ALIASES, EMBEDDED_DIR, Registry, RegistryEntry, RegistryLike, embedded_models, is_model_path,
                       list_models, load_registry, msscr_members)

ENV_REPO = "MTLMUSIC_HUB_REPO"
ENV_REVISION = "MTLMUSIC_HUB_REVISION"
ENV_HOME = "MTLMUSIC_HOME"

_TRUE = {"1", "ON", "YES", "TRUE"}


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
    members = msscr_members(name)
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
    if is_model_path(name_or_path):
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


def load_network(name_or_path: str | os.PathLike = "default", *, registry: RegistryLike = None,
                 repo_id: str | None = None, revision: str | None = None, endpoint: str | None = None,
                 token: str | bool | None = None) -> tuple[MultiTaskNetwork, Scaler, dict[str, Any]]:
    """Load a network by name or path: ``(network in eval mode, scaler, config)``.

    An MSS-CR name with no file of its own is assembled from its SS-R members
    (:func:`~mtlmusic.architectures.assemble_msscr`), which must share one scaler.
    Parameters and errors as in :func:`resolve_model`.

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
        if not is_model_path(name_or_path) and not config.get("name"):
            config["name"] = ALIASES.get(str(name_or_path), str(name_or_path))
        return network, scaler, config
    return _assembled_msscr([load_model_file(path) for path in files.values()], str(name_or_path))


def _assembled_msscr(members: Sequence[tuple[MultiTaskNetwork, Scaler, dict[str, Any]]],
                     name: str) -> tuple[MultiTaskNetwork, Scaler, dict[str, Any]]:
    """The MSS-CR network, scaler and config of SS-R members loaded from their files."""
    scaler = members[0][1]
    for network, member_scaler, config in members:
        if not (torch.equal(member_scaler.mean, scaler.mean) and torch.equal(member_scaler.std, scaler.std)):
            names = ", ".join(model_name("SS-R", member.sources) for member, _, _ in members)
            raise ConfigError(f"Cannot assemble MSS-CR from {names}: "
                              f"{config.get('name') or model_name('SS-R', network.sources)} standardizes its input "
                              f"with another scaler than {members[0][2].get('name') or names.split(',')[0]}; "
                              "members of an MSS-CR representation must share the front end's scaler.")
    assembled = assemble_msscr([network for network, _, _ in members])
    config = {
        "format_version": FORMAT_VERSION, "name": name, "architecture": "MSS-CR",
        "sources": list(assembled.sources), "head_sizes": assembled.head_sizes,
        "representation_blocks": list(assembled.representation_blocks),
        "feature_names": feature_names(assembled.representation_blocks),
        "info": {"assembled_from": {model_name("SS-R", network.sources): config.get("tensors_sha256")
                                    for network, _, config in members}},
    }
    return assembled, scaler, config
