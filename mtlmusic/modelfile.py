"""One model in one file: safetensors weights with a JSON config in the header.

The file holds the network's weights and BatchNorm statistics, the front end's
scaler (``scaler.mean``, ``scaler.std``) and, in the safetensors metadata under
``"mtlmusic"``, a JSON config: format version, architecture, sources, head
sizes, representation blocks (in the order the network concatenates them),
feature names, the mtlmusic version that wrote it, the SHA-256 of the tensors,
``pad_db`` where the front end pads with a fixed dB value rather than the
track's floor (see :class:`~mtlmusic.frontend.Scaler`), and free-form ``info``
(model card, training recipe).

Loading checks everything: a truncated or corrupt file, a config from a newer
format, weights that do not fit the declared architecture or tensors whose hash
differs all raise :class:`~mtlmusic.errors.ModelFileError`.

Examples
--------
>>> import tempfile, os, torch
>>> from mtlmusic.architectures import build_network
>>> from mtlmusic.frontend import Scaler
>>> from mtlmusic.modelfile import save_model_file, load_model_file
>>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
>>> _ = save_model_file(path, build_network("SS-R", ["bpm"]), Scaler.identity())
>>> network, scaler, config = load_model_file(path)
>>> config["architecture"], config["sources"]
('SS-R', ['bpm'])
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .architectures import MultiTaskNetwork, build_network
from .errors import ConfigError, ModelFileError
from .frontend import Scaler
from ._version import __version__
from .files import atomic_path

#: Version of the file layout; files of a newer version are refused with a clear message.
FORMAT_VERSION = 1
METADATA_KEY = "mtlmusic"
_SCALER_KEYS = ("scaler.mean", "scaler.std")


class NewerFormatError(ModelFileError):
    """A model file written in a newer format than this mtlmusic reads: upgrade mtlmusic to load it."""


def feature_names(blocks: tuple[str, ...] | list[str], dim: int = 256) -> list[str]:
    """Names of the aggregated features: ``mean`` block then ``std`` block, each source's ``dim`` values in order.

    >>> feature_names(["bpm", "tag"])[:2], feature_names(["bpm", "tag"])[256], len(feature_names(["bpm", "tag"]))
    (['mean.bpm.000', 'mean.bpm.001'], 'mean.tag.000', 1024)
    """
    return [f"{stat}.{block}.{i:03d}" for stat in ("mean", "std") for block in blocks for i in range(dim)]


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``tensors`` (in sorted order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_model_file(path: str | os.PathLike, network: MultiTaskNetwork, scaler: Scaler,
                    name: str | None = None, info: dict[str, Any] | None = None,
                    overwrite: bool = True) -> Path:
    """Write ``network`` and ``scaler`` to ``path`` atomically (temporary file, then rename).

    Parameters
    ----------
    path : path-like
        Destination, conventionally ``*.safetensors``.
    network : MultiTaskNetwork
        The trained network; its training-only state is kept (heads included).
    scaler : Scaler
        The per-bin standardization fitted on the training data.
    name : str, optional
        The model's name (defaults to none; registry names come from the hub).
    info : dict, optional
        JSON-serialisable extras: model card text, training recipe, scores.
    overwrite : bool
        When False, refuse to replace an existing file.
    """

    path = Path(path)
    if path.exists() and not overwrite:
        raise ModelFileError(f"{path} exists; pass overwrite=True to replace it.")
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    tensors["scaler.mean"] = scaler.mean.detach().cpu().float().contiguous()
    tensors["scaler.std"] = scaler.std.detach().cpu().float().contiguous()
    config = {
        "format_version": FORMAT_VERSION,
        "mtlmusic_version": __version__,
        "name": name,
        "architecture": network.architecture,
        "sources": list(network.sources),
        "head_sizes": network.head_sizes,
        "representation_blocks": list(network.representation_blocks),
        "feature_names": feature_names(network.representation_blocks),
        "tensors_sha256": tensors_sha256(tensors),
        "info": info or {},
    }
    if scaler.pad_db is not None:
        config["pad_db"] = scaler.pad_db
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(config)})
    return path


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a model file's config without loading its weights.

    >>> # read_config("model.safetensors")["sources"]  -> ['self', 'bpm', ...]
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file.")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: not a readable model file (truncated or corrupt?): {err}") from err
    if METADATA_KEY not in metadata:
        raise ModelFileError(f"{path}: a safetensors file without an mtlmusic config; "
                             "it was not written by mtlmusic (use `mtlmusic import-checkpoint` for other weights).")
    try:
        config = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path}: the model config is not valid JSON: {err}") from err
    version = config.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path}: the model config has no valid format_version.")
    if version > FORMAT_VERSION:
        raise NewerFormatError(f"{path}: model file format {version} is newer than this mtlmusic understands "
                             f"({FORMAT_VERSION}); upgrade with `pip install -U mtlmusic`.")
    return config


def _checked_tensors(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config and tensors of a model file whose tensors have the SHA-256 its config records."""
    config = read_config(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{path}: the weights cannot be read (truncated or corrupt?): {err}") from err
    if tensors_sha256(tensors) != config.get("tensors_sha256"):
        raise ModelFileError(f"{path}: the weights do not match the checksum in the file's config; "
                             "the file is corrupt. Download or export it again.")
    return config, tensors


def verify_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Check a model file without building its network: returns its config.

    The file must be an mtlmusic model file of a format this version reads,
    whose tensors have the SHA-256 recorded in its config (``tensors_sha256``);
    otherwise :class:`~mtlmusic.errors.ModelFileError` is raised. This is the
    integrity check of files that come with no published checksum.

    >>> # verify_model_file("model.safetensors")["architecture"]  -> 'SS-R'
    """
    return _checked_tensors(Path(path))[0]


def load_model_file(path: str | os.PathLike) -> tuple[MultiTaskNetwork, Scaler, dict[str, Any]]:
    """Load a model file: returns ``(network in eval mode, scaler, config)``.

    Raises :class:`~mtlmusic.errors.ModelFileError` when the file is truncated,
    corrupt, from a newer format, or its weights do not match its config.
    """
    path = Path(path)
    config, tensors = _checked_tensors(path)
    missing = [key for key in _SCALER_KEYS if key not in tensors]
    if missing:
        raise ModelFileError(f"{path}: the model file has no scaler ({', '.join(missing)} missing).")
    try:
        scaler = Scaler(tensors.pop("scaler.mean"), tensors.pop("scaler.std"), config.get("pad_db"))
        network = build_network(config["architecture"], config["sources"], config.get("head_sizes"),
                                config.get("representation_blocks"))
        network.load_state_dict(tensors, strict=True)
    except (ConfigError, KeyError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{path}: the weights do not fit the declared model "
                             f"({config.get('architecture')} on {config.get('sources')}): {err}") from err
    if list(network.representation_blocks) != config.get("representation_blocks"):
        raise ModelFileError(f"{path}: the config's representation blocks {config.get('representation_blocks')} "
                             f"differ from the architecture's {list(network.representation_blocks)}.")
    return network.eval(), scaler, config
