"""Publishing models: upload model files with a model card to a hub repository, and record them in a registry.

Examples
--------
>>> from mtlmusic.publish import model_card
>>> card = model_card({"ssr-bpm": {"architecture": "SS-R", "sources": ["bpm"],
...                                "representation_blocks": ["bpm"], "info": {"license": "mit"}}})
>>> card.startswith("---")
True
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .architectures import SOURCES, model_name, parse_model_name
from .errors import ConfigError
from .files import file_sha256
from .modelfile import load_model_file
from .nets import FEATURE_DIM
from .registry import Registry, RegistryEntry


def _feature_dim(config: Mapping[str, Any]) -> int:
    """Length of a track's feature vector (mean and std of every representation block)."""
    return 2 * FEATURE_DIM * len(config["representation_blocks"])


def _license(configs: Mapping[str, Mapping[str, Any]]) -> str:
    """The licence the configs' ``info["license"]`` agree on (``"unknown"`` when none is given)."""
    licenses = {str(info["license"]) for info in (config.get("info") or {} for config in configs.values())
                if info.get("license")}
    if len(licenses) > 1:
        raise ConfigError(f"The model files declare different licenses ({', '.join(sorted(licenses))}); "
                          "publish them to separate repositories or agree on one licence in info['license'].")
    return licenses.pop() if licenses else "unknown"


def _named_row(file: str) -> tuple[str, list[str], int] | None:
    """Architecture, sources and feature dimension of a model file named after what it is (None otherwise)."""
    try:
        architecture, sources = parse_model_name(Path(file).stem)
    except ConfigError:
        return None
    blocks = 1 if architecture in ("SS-R", "MS-SR@FC") else len(sources)
    return architecture, list(sources), 2 * FEATURE_DIM * blocks


def model_card(configs: Mapping[str, Mapping[str, Any]], registry: Registry | None = None,
               repo_id: str | None = None, repo_files: Iterable[str] = ()) -> str:
    """A hub model card (README.md with a YAML metadata header) for model files, from their configs.

    The header's ``license``, ``tags``, ``datasets`` and ``metrics`` come from the
    ``info`` of each file's config (keys of the same names; ``license`` must agree
    across files, ``"unknown"`` when none is given). ``info["description"]``
    texts form the body, followed by a table of the models (those of
    ``registry`` and the other model files of the repository as well when given).
    With ``repo_id``, the usage snippet loads the models by their ``hf-hub:`` names.

    Parameters
    ----------
    configs : mapping of name to config
        Model configs as returned by :func:`~mtlmusic.modelfile.read_config`;
        each is the file ``NAME.safetensors``.
    registry : Registry, optional
        Other published models to list in the table.
    repo_id : str, optional
        The hub repository the card is for.
    repo_files : iterable of str
        Other files of that repository: its ``.safetensors`` files named after
        what they are join the table.

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
    data = ModelCardData(license=_license(configs), library_name="mtlmusic",
                         pipeline_tag="feature-extraction",
                         tags=union("tags", ["mtlmusic", "music", "audio", "feature-extraction",
                                             "multi-task-learning", *sources]),
                         datasets=union("datasets") or None, metrics=union("metrics") or None)
    rows = {name: (config["architecture"], list(config["sources"]), _feature_dim(config))
            for name, config in configs.items()}
    for name, entry in (registry.models.items() if registry else ()):
        rows.setdefault(name, (entry.architecture, list(entry.sources), entry.dim))
    model_files = sorted({f"{name}.safetensors" for name in configs}
                         | {f for f in repo_files if f.endswith(".safetensors")})
    for file in model_files:
        row = _named_row(file)
        if row is not None:
            rows.setdefault(Path(file).stem, row)
    lines = ["---", data.to_yaml(), "---", "", "# mtlmusic models", "",
             "Deep music representations from multi-task learning (Kim, Urbano, Liem, Hanjalic: "
             "*One Deep Music Representation to Rule Them All?*), for the `mtlmusic` feature extractor.", ""]
    if repo_id is None:
        lines += ["```python", "import mtlmusic", f"model = mtlmusic.load_model({min(rows)!r})",
                  "features = model.extract(\"song.mp3\")", "```", ""]
    else:
        first = f"hf-hub:{repo_id}/{min(f'{name}.safetensors' for name in configs)}"
        whole = f"hf-hub:{repo_id}" if len(model_files) == 1 else first
        lines += ["```python", "import mtlmusic", f"model = mtlmusic.load_model({first!r})",
                  "features = model.extract(\"song.mp3\")   # one vector per track", "```", "",
                  "From the command line, a folder of audio into one feature file:", "",
                  "```bash", f"mtlmusic-extract music/ -m {whole} -o feats.npy", "```", ""]
        if len(model_files) > 1:
            lines += [f"Each model file of this repository loads as `hf-hub:{repo_id}/FILE` "
                      f"(append `@REVISION` to pin a branch, tag or commit); `mtlmusic.list_models"
                      f"(\"hf-hub:{repo_id}\")` lists them.", ""]
    lines += [str(info["description"]).strip() + "\n" for info in infos.values() if info.get("description")]
    lines += ["| model | architecture | sources | features |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {arch} | {', '.join(srcs)} | {dim} |" for name, (arch, srcs, dim) in sorted(rows.items())]
    where = f" (`hf-hub:{repo_id}/msscr-SOURCE-SOURCE...`)" if repo_id else ""
    lines += ["", f"MSS-CR representations (`msscr-SOURCE-SOURCE...`){where} are assembled by mtlmusic from the "
              "SS-R models above; they have no files of their own.", ""]
    return "\n".join(lines)


def _remote_files(api, repo_id: str, revision: str) -> dict[str, Any]:
    """The files of a hub repository at a branch, by path (with their LFS SHA-256); none when it does not exist yet."""
    from huggingface_hub.utils import RepositoryNotFoundError, RevisionNotFoundError

    try:
        return {f.path: f for f in api.list_repo_tree(repo_id, revision=revision, recursive=True)
                if hasattr(f, "lfs")}
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return {}


def _git_blob_id(data: bytes) -> str:
    """The id git (and the hub) gives a file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def push_models(files: Iterable[str | os.PathLike], repo_id: str, token: str | None = None, *,
                registry_path: str | os.PathLike | None = None, revision: str = "main",
                endpoint: str | None = None, private: bool | None = None,
                commit_message: str | None = None, overwrite: bool = False) -> dict[str, RegistryEntry]:
    """Upload model files and a model card to a hub repository in one commit, and record them in a registry.

    Every file is fully checked (:func:`~mtlmusic.modelfile.load_model_file`)
    and uploaded as ``NAME.safetensors``, where NAME is the file's config name or
    :func:`~mtlmusic.architectures.model_name` of its architecture and sources.
    The repository is created if needed; it then loads as
    ``mtlmusic.load_model("hf-hub:REPO_ID/NAME.safetensors")`` (see
    :mod:`mtlmusic.hub`), and its card (``README.md``: Hugging Face metadata, usage,
    a table of the repository's models) says so. When ``registry_path`` is given, the
    entries are merged into that registry file (created if missing) and its
    pinned revision becomes the new commit; point ``$MTLMUSIC_REGISTRY`` at it
    (or ship it as ``mtlmusic/registry.json``) to make the models loadable by name.

    The repository's files are checked first: a file already there with the same
    SHA-256 is not uploaded again (pushing the same files twice makes no commit),
    and one with other contents is replaced only with ``overwrite=True``.

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
    overwrite : bool
        Replace model files of the repository that differ from the ones pushed.

    Returns
    -------
    dict of str to RegistryEntry
        The pushed models' registry entries, by name.

    Raises
    ------
    ModelFileError
        A file is not a valid mtlmusic model file.
    ConfigError
        Two files have the same name, licences disagree, the registry file
        belongs to another repository, or (without ``overwrite``) the repository
        holds other files of the same names.

    Examples
    --------
    >>> entries = push_models(["ssr-bpm.safetensors"], "me/mtlmusic-models",
    ...                       registry_path="registry.json")     # doctest: +SKIP
    >>> entries["ssr-bpm"].dim                                   # doctest: +SKIP
    512
    >>> import mtlmusic
    >>> mtlmusic.load_model("hf-hub:me/mtlmusic-models/ssr-bpm.safetensors")   # doctest: +SKIP
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
    _license(configs)
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
    remote = _remote_files(api, repo_id, revision)
    remote_sha = {path: info.lfs.sha256 if info.lfs else None for path, info in remote.items()}
    changed = {name: entry for name, entry in entries.items() if remote_sha.get(entry.file, "") != entry.sha256}
    differing = sorted(entry.file for entry in changed.values() if entry.file in remote)
    if differing and not overwrite:
        raise ConfigError(f"Repository {repo_id}@{revision} already holds " + ", ".join(
            f"{file} (sha256 {remote_sha[file] or 'unknown, not an LFS file'}, yours "
            f"{entries[file.removesuffix('.safetensors')].sha256})" for file in differing)
            + " with other contents: pass overwrite=True (mtlmusic hub push --overwrite) to replace "
              f"{'it' if len(differing) == 1 else 'them'}, or push to another repository.")
    card = model_card(configs, registry, repo_id=repo_id, repo_files=remote).encode()
    operations = [CommitOperationAdd(path_in_repo=entries[name].file, path_or_fileobj=str(paths[name]))
                  for name in sorted(changed)]
    readme = remote.get("README.md")
    if readme is None or readme.blob_id != _git_blob_id(card):
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card))
    if operations:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.create_commit(repo_id, operations, revision=revision,
                                   commit_message=commit_message or f"Upload {len(changed)} mtlmusic model(s)").oid
    else:
        commit = api.model_info(repo_id, revision=revision).sha
    if registry is not None:
        Registry(repo_id, commit, registry.models).write(registry_path)
    return entries
