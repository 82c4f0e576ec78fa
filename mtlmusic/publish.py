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

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .architectures import SOURCES, model_name
from .errors import ConfigError
from .files import file_sha256
from .modelfile import load_model_file
from .nets import FEATURE_DIM
from .registry import Registry, RegistryEntry


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

