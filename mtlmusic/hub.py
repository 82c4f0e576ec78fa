"""Where model files come from: the package, the local cache, the hub; downloads verified.

:func:`resolve_model` turns a name (see :mod:`mtlmusic.registry`) or a path into
a model file, looking in order at: an existing file path, the weights embedded
in the package (``mtlmusic/weights/``), the local cache, and the hub. An MSS-CR
name that is not published as a file of its own is served by loading its SS-R
members and putting them side by side (:func:`load_network`).

Downloads use ``huggingface_hub`` and its standard cache, pinned to the
registry's revision, and every file is checked against the registry's SHA-256.
Nothing is downloaded at import time.

Any hub repository holding mtlmusic model files is reachable without a registry,
as in timm, by a name of the form::

    hf-hub:ORG/REPO                       the repository's only .safetensors file
    hf-hub:ORG/REPO@REVISION              the same at a branch, tag or commit (no "/" in REVISION)
    hf-hub:ORG/REPO/FILE.safetensors      one file of a repository holding several (FILE may be in a folder)
    hf-hub:ORG/REPO/NAME                  NAME.safetensors, or for an MSS-CR NAME without a file of its own
                                          (msscr-self-bpm) its SS-R members ssr-self.safetensors, ssr-bpm.safetensors
    hf-hub:ORG/REPO@REVISION/FILE         a file at a revision; also hf-hub:ORG/REPO/FILE@REVISION,
                                          the form for revisions with a "/" (refs/pr/1)

Such files go to the same cache, honour ``HF_HUB_OFFLINE`` the same way, and,
with no registry checksum to compare with, are verified by the SHA-256 of their
tensors recorded in their own config (:func:`~mtlmusic.modelfile.verify_model_file`);
a corrupt cached copy is deleted and fetched again. A repository holding several
model files needs the file in the name: the error lists them, as does
``list_models("hf-hub:ORG/REPO")``.

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

import fnmatch
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .architectures import MultiTaskNetwork, assemble_msscr, model_name, parse_model_name
from .errors import ConfigError, ModelFileError, ModelNotFoundError
from .files import file_sha256
from .frontend import Scaler
from .modelfile import FORMAT_VERSION, NewerFormatError, feature_names, load_model_file, verify_model_file
from .registry import (ALIASES, EMBEDDED_DIR, Registry, RegistryEntry, RegistryLike, embedded_models, is_model_path,
                       load_registry, msscr_members)
from .registry import known_models

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


def _hf_hub(endpoint: str | None, token: str | bool | None) -> _Hub:
    """Where to fetch ``hf-hub:`` names from: no registry, the repository and revision are in the name."""
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    return _Hub(Registry(None, None, {}), None, None, endpoint.rstrip("/") if endpoint else None, token)


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
    known = known_models(registry=hub.registry)
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
        A model name or alias (see :func:`list_models`), or an ``hf-hub:`` name.
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
    if is_hub_name(name):
        return _hub_status(parse_hub_name(name))
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
        A model file, a model name or an alias, or an ``hf-hub:ORG/REPO...`` name
        (see the module's documentation; ``registry``, ``repo_id`` and ``revision``
        do not apply to it).
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
        cached nor downloadable (offline, 404, network error); for ``hf-hub:``
        names also a repository, revision or file that does not exist, a gated or
        private repository without a token, or several model files and none named.
    ModelFileError
        The downloaded file does not have the registry's SHA-256, or (``hf-hub:``
        names) is not a valid mtlmusic model file of a format this version reads
        (it is deleted).
    ConfigError
        A malformed ``hf-hub:`` name.

    Examples
    --------
    >>> resolve_model("ssr-bpm")                               # doctest: +SKIP
    PosixPath('/home/me/.cache/huggingface/hub/models--.../ssr-bpm.safetensors')
    >>> resolve_model("hf-hub:org/models@v1.0/ssr-bpm.safetensors")   # doctest: +SKIP
    PosixPath('/home/me/.cache/huggingface/hub/models--org--models/snapshots/.../ssr-bpm.safetensors')
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
    >>> sorted(model_files("hf-hub:org/models/msscr-self-bpm"))    # doctest: +SKIP
    ['ssr-bpm', 'ssr-self']
    """
    if is_hub_name(name_or_path):
        return _hub_model_files(parse_hub_name(name_or_path), _hf_hub(endpoint, token))
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


def _download(repo_id: str, file: str, revision: str, hub: _Hub, verify: Callable[[Path], None], owner: str,
              advice: str, missing_ok: bool = False) -> Path | None:
    """The checked local copy of ``file`` of a hub repository, downloaded into :func:`cache_dir` if needed.

    ``verify(path)`` raises :class:`~mtlmusic.errors.ModelFileError` for a file that
    must not be used; such a file is deleted from the cache and, when it was a
    cached copy and the hub is reachable, downloaded once more. ``owner`` names
    what the file belongs to in messages (``"repository org/models@main"``) and
    ``advice`` says what to do when the hub's own copy fails. A file neither cached
    nor downloadable gives None with ``missing_ok``, else a
    :class:`~mtlmusic.errors.ModelNotFoundError`; other errors of the transfer
    (missing repository, revision or file) propagate as ``huggingface_hub`` raises them.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.utils import LocalEntryNotFoundError

    cache, offline = cache_dir(), _is_offline()
    from_cache = isinstance(try_to_load_from_cache(repo_id, file, cache_dir=cache, revision=revision), str)
    while True:
        try:
            path = Path(hf_hub_download(
                repo_id, file, revision=revision, cache_dir=cache, endpoint=hub.endpoint, token=hub.token,
                local_files_only=offline, library_name="mtlmusic", library_version=__version__))
        except LocalEntryNotFoundError as err:
            if missing_ok:
                return None
            reason = "offline mode is on (HF_HUB_OFFLINE)" if offline else "the hub cannot be reached"
            raise ModelNotFoundError(
                f"{file} of {owner} is not in the cache {cache} and {reason}. Connect to the network and "
                f"unset HF_HUB_OFFLINE to download it once, or point {ENV_HOME} at a cache that holds it.") from err
        try:
            verify(path)
            return path
        except NewerFormatError:  # a sound file, for a newer mtlmusic: kept in the cache
            raise
        except ModelFileError as err:
            _remove_cached(path)
            if from_cache and not offline:
                from_cache = False
                continue
            state = "cached" if from_cache else "downloaded"
            raise ModelFileError(
                f"The {state} file {file} of {owner} {err}; it was deleted from {cache}. "
                + ("Go online (unset HF_HUB_OFFLINE) to download it again." if from_cache else advice)) from err


def _fetch(entry: RegistryEntry, hub: _Hub) -> Path:
    """The verified local file of a published model (its SHA-256 is the registry's)."""
    from huggingface_hub.utils import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    where = f"{hub.repo_id}@{hub.revision}"
    if hub.repo_id is None or hub.revision is None:
        raise ModelNotFoundError(
            f"Model {entry.name!r} is published, but no hub repository and revision are configured "
            f"(repository {hub.repo_id}, revision {hub.revision}): set {ENV_REPO} and {ENV_REVISION}.")

    def verify(path: Path) -> None:
        digest = file_sha256(path)
        if digest != entry.sha256:
            raise ModelFileError(f"has SHA-256 {digest}, but the registry expects {entry.sha256}")

    try:
        return _download(hub.repo_id, entry.file, hub.revision, hub, verify,
                         f"model {entry.name!r} (repository {where})",
                         "The repository does not hold the published file: check the repository and revision.")
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
        raise ModelNotFoundError(
            f"Model {entry.name!r}: {entry.file} is not found in repository {where} "
            f"({type(err).__name__}). Check {ENV_REPO} / {ENV_REVISION} or the registry.") from err
    except _transfer_errors() as err:
        raise ModelNotFoundError(
            f"Model {entry.name!r}: downloading {entry.file} from repository {where} into {cache_dir()} "
            f"failed: {err}") from err


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
    hub_name = parse_hub_name(name_or_path) if is_hub_name(name_or_path) else None
    if len(files) == 1:
        (member, path), = files.items()
        network, scaler, config = load_model_file(path)
        config["path"] = str(path)
        if (hub_name or not is_model_path(name_or_path)) and not config.get("name"):
            config["name"] = member
        return network, scaler, config
    return _assembled_msscr([load_model_file(path) for path in files.values()],
                            Path(hub_name.file).name if hub_name else str(name_or_path))


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


# ---------------------------------------------------------------------------------------------
# hf-hub: names, any hub repository without a registry

#: Prefix of the names of models in any hub repository.
HUB_PREFIX = "hf-hub:"
_HUB_NAME = re.compile(r"^hf-hub:(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[^/@\s]+))?"
                       r"(?:/(?P<file>[^@\s]+))?(?:@(?P<tail>[^@\s]+))?$")
_MODEL_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class HubName:
    """A parsed ``hf-hub:`` name: repository, revision (None: ``main``) and file or model name (None: the only one).

    Examples
    --------
    >>> name = parse_hub_name("hf-hub:org/models@v1.0/ssr-bpm.safetensors")
    >>> name.repo_id, name.revision, name.file, str(name)
    ('org/models', 'v1.0', 'ssr-bpm.safetensors', 'hf-hub:org/models/ssr-bpm.safetensors@v1.0')
    """

    repo_id: str
    revision: str | None
    file: str | None

    def __str__(self) -> str:
        return (f"{HUB_PREFIX}{self.repo_id}" + (f"/{self.file}" if self.file else "")
                + (f"@{self.revision}" if self.revision else ""))

    def with_file(self, file: str | None) -> "HubName":
        """The same repository and revision, another file."""
        return HubName(self.repo_id, self.revision, file)

    @property
    def where(self) -> str:
        """``ORG/REPO@REVISION``, for messages."""
        return f"{self.repo_id}@{self.revision or 'main'}"


def is_hub_name(name: object) -> bool:
    """Whether ``name`` is an ``hf-hub:`` name (checked before any file path rule: it contains slashes).

    >>> is_hub_name("hf-hub:org/models"), is_hub_name("ssr-bpm")
    (True, False)
    """
    return isinstance(name, str) and name.startswith(HUB_PREFIX)


def parse_hub_name(name: str) -> HubName:
    """Split ``hf-hub:ORG/REPO[@REVISION][/FILE][@REVISION]`` (see the module's documentation).

    Raises :class:`~mtlmusic.errors.ConfigError` for a malformed name.

    >>> parse_hub_name("hf-hub:org/models/msscr-self-bpm@refs/pr/1")
    HubName(repo_id='org/models', revision='refs/pr/1', file='msscr-self-bpm')
    """
    match = _HUB_NAME.match(name)
    if match is None or (match["revision"] and match["tail"]):
        raise ConfigError(f"Malformed hub model name {name!r}: write hf-hub:ORG/REPO, optionally with @REVISION "
                          "(branch, tag or commit) and /FILE, e.g. hf-hub:org/models@v1.0/ssr-bpm.safetensors "
                          "or hf-hub:org/models/ssr-bpm.safetensors@v1.0.")
    return HubName(match["repo"], match["revision"] or match["tail"], match["file"])


def _api(hub: _Hub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.endpoint, token=hub.token, library_name="mtlmusic", library_version=__version__)


def _hub_error(err: BaseException, name: HubName, hub: _Hub, file: str | None = None) -> ModelNotFoundError:
    """A clear error for a failed hub request about ``name`` (``file`` of it, when one file was asked for)."""
    from huggingface_hub.utils import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    site = hub.endpoint or "https://huggingface.co"
    login = "log in with `hf auth login` or set HF_TOKEN"
    if isinstance(err, GatedRepoError):
        return ModelNotFoundError(f"Repository {name.repo_id} is gated: request access on {site}/{name.repo_id}, "
                                  f"then {login} (a token of the account that was granted access).")
    if isinstance(err, RepositoryNotFoundError):
        return ModelNotFoundError(f"Repository {name.repo_id} is not found on {site}: check the name in {name}; "
                                  f"if it is private, {login} with a token that can read it.")
    if isinstance(err, RevisionNotFoundError):
        return ModelNotFoundError(f"Revision {name.revision!r} is not found in repository {name.repo_id}: "
                                  "give an existing branch, tag or 40-hex commit after '@' in the name.")
    if isinstance(err, EntryNotFoundError):
        try:
            held = ", ".join(str(name.with_file(f)) for f in _listed_model_files(name, hub)) or "none"
        except ModelNotFoundError:
            held = "unknown (the file listing failed too)"
        return ModelNotFoundError(f"{file} is not in repository {name.where}. Its model files: {held}.")
    return ModelNotFoundError(f"{name}: the request to {site} for {file or 'the file list'} failed: {err}")


def _listed_model_files(name: HubName, hub: _Hub) -> list[str]:
    """The ``.safetensors`` files of the repository at the revision, from the hub's file listing (no download).

    The listing is the ``siblings`` of the repository's information: one request,
    not retried, so that an unreachable hub falls back to the cache at once.
    """
    if _is_offline():
        raise ModelNotFoundError(f"Listing the files of repository {name.where} needs the hub, and offline mode is "
                                 "on (HF_HUB_OFFLINE): unset it, or name the file (hf-hub:ORG/REPO/FILE).")
    try:
        siblings = _api(hub).model_info(name.repo_id, revision=name.revision, expand=["siblings"]).siblings
    except _transfer_errors() as err:
        raise _hub_error(err, name, hub) from err
    return sorted(s.rfilename for s in siblings or () if s.rfilename.endswith(_MODEL_SUFFIX))


def _snapshot(name: HubName) -> Path | None:
    """The cached snapshot folder of the repository at the revision, if any file of it was downloaded."""
    from huggingface_hub.file_download import repo_folder_name

    folder = cache_dir() / repo_folder_name(repo_id=name.repo_id, repo_type="model")
    revision = name.revision or "main"
    ref = folder / "refs" / revision
    snapshot = folder / "snapshots" / (ref.read_text().strip() if ref.is_file() else revision)
    return snapshot if snapshot.is_dir() else None


def _cached_model_files(name: HubName) -> list[str]:
    snapshot = _snapshot(name)
    return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob(f"*{_MODEL_SUFFIX}")) if snapshot else []


def _only_model_file(name: HubName, hub: _Hub) -> str:
    """The file of a name without one: the repository's only model file (offline: the cached snapshot's only one)."""
    try:
        files, origin = _listed_model_files(name, hub), "the repository"
    except ModelNotFoundError as err:
        if not _is_offline() and not isinstance(err.__cause__, _connection_errors()):
            raise
        files, origin = _cached_model_files(name), f"the cache {cache_dir()} (the hub is not reachable)"
        if not files:
            raise ModelNotFoundError(f"{name}: {err} No model file of {name.where} is cached either.") from err
    if len(files) == 1:
        return files[0]
    if not files:
        raise ModelNotFoundError(f"Repository {name.where} holds no {_MODEL_SUFFIX} model file.")
    raise ModelNotFoundError(f"{name}: {origin} holds {len(files)} model files; name one: "
                             f"{', '.join(str(name.with_file(f)) for f in files)}.")


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Errors of a hub that cannot be reached (as opposed to one that answers no)."""
    libraries = (sys.modules.get(name) for name in ("httpx2", "httpx", "requests"))
    return (ConnectionError, *(getattr(lib, "TransportError", getattr(lib, "ConnectionError", OSError))
                               for lib in libraries if lib is not None))


def _fetch_hub_file(name: HubName, file: str, hub: _Hub, optional: bool = False) -> Path | None:
    """The verified local copy of ``file`` of the repository; None when ``optional`` and it is not there.

    The file is checked against its own tensor hashes (:func:`~mtlmusic.modelfile.verify_model_file`).
    """
    from huggingface_hub.utils import EntryNotFoundError

    def verify(path: Path) -> None:
        try:
            verify_model_file(path)
        except NewerFormatError as err:
            raise NewerFormatError(f"{file} of repository {name.where} needs a newer mtlmusic than "
                                   f"{__version__}: {err}") from err
        except ModelFileError as err:
            raise ModelFileError(f"is not a usable mtlmusic model file ({err})") from err

    advice = f"Name an mtlmusic model file of the repository (see mtlmusic.list_models('{HUB_PREFIX}{name.repo_id}'))."
    try:
        return _download(name.repo_id, file, name.revision or "main", hub, verify, f"repository {name.where}",
                         advice, missing_ok=optional)
    except EntryNotFoundError as err:
        if optional:
            return None
        raise _hub_error(err, name, hub, file) from err
    except _transfer_errors() as err:
        raise _hub_error(err, name, hub, file) from err


def _hub_model_files(name: HubName, hub: _Hub) -> dict[str, Path]:
    """The model files of an ``hf-hub:`` name by model name (file stem): one, or the members of an MSS-CR."""
    file = name.file or _only_model_file(name, hub)
    if file.endswith(_MODEL_SUFFIX):
        return {Path(file).stem: _fetch_hub_file(name, file, hub)}
    members = msscr_members(Path(file).name)
    own = _fetch_hub_file(name, file + _MODEL_SUFFIX, hub, optional=members is not None)
    if own is not None:
        return {Path(file).name: own}
    folder = file.rpartition("/")[0]
    paths = {}
    for member in members:
        try:
            paths[member] = _fetch_hub_file(name, f"{folder}/{member}{_MODEL_SUFFIX}".lstrip("/"), hub)
        except ModelNotFoundError as err:
            raise ModelNotFoundError(f"MSS-CR model {name} has no file {file}{_MODEL_SUFFIX} and is assembled "
                                     f"from {', '.join(members)}: {err}") from err
    return paths


def _hub_status(name: HubName) -> str:
    """``'cached'`` or ``'remote'`` for an ``hf-hub:`` name, from the cache alone."""
    from huggingface_hub import try_to_load_from_cache

    def cached(file: str) -> bool:
        return isinstance(try_to_load_from_cache(name.repo_id, file, cache_dir=cache_dir(),
                                                 revision=name.revision or "main"), str)

    if name.file is None:
        found = len(_cached_model_files(name)) == 1
    elif name.file.endswith(_MODEL_SUFFIX):
        found = cached(name.file)
    else:
        members = msscr_members(Path(name.file).name) or ()
        folder = name.file.rpartition("/")[0]
        found = cached(name.file + _MODEL_SUFFIX) or (
            bool(members) and all(cached(f"{folder}/{m}{_MODEL_SUFFIX}".lstrip("/")) for m in members))
    return "cached" if found else "remote"


def list_models(pattern: str | None = None, *, registry: RegistryLike = None, endpoint: str | None = None,
                token: str | bool | None = None) -> list[str]:
    """Names of models: those known to this installation, or the model files of a hub repository.

    ``pattern`` is a shell-style glob over the names of :func:`mtlmusic.registry.known_models`
    (embedded, registry and aliases), or ``hf-hub:ORG/REPO[@REVISION][/GLOB]``:
    the ``.safetensors`` files of that repository, from its file listing (nothing
    is downloaded), as full names ``hf-hub:ORG/REPO/FILE[@REVISION]`` that
    :func:`mtlmusic.load_model` accepts. GLOB matches the file name with or without
    ``.safetensors``. Listing a repository needs the hub (not offline).

    Parameters
    ----------
    pattern : str, optional
        A glob such as ``"mscr2-*"``, or an ``hf-hub:`` repository.
    registry : Registry or path-like, optional
        See :func:`~mtlmusic.registry.load_registry`.
    endpoint, token : optional
        Hub URL and access token, as in :func:`resolve_model`.

    Returns
    -------
    list of str
        Sorted names.

    Examples
    --------
    >>> list_models("no-such-*")
    []
    >>> list_models("hf-hub:org/models")                       # doctest: +SKIP
    ['hf-hub:org/models/ssr-bpm.safetensors', 'hf-hub:org/models/ssr-self.safetensors']
    """
    if not is_hub_name(pattern):
        return known_models(pattern, registry=registry)
    name = parse_hub_name(pattern)
    files = _listed_model_files(name.with_file(None), _hf_hub(endpoint, token))
    glob = name.file
    return [str(name.with_file(f)) for f in files
            if glob is None or fnmatch.fnmatch(f, glob) or fnmatch.fnmatch(f[:-len(_MODEL_SUFFIX)], glob)]
