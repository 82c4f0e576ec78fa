"""Import of the PyTorch checkpoints released by the study's authors.

Their checkpoint is a ``torch.save`` dict with the keys ``iters``, ``tasks``,
``n_outs``, ``branch_at`` (``'null'``, ``'2'``, ``'4'``, ``'6'`` or ``'fc'``),
``scaler_fn``, ``state_dict`` and ``optimizer``; the self task is called
``self_``. Its network is the Table 3 feature network written as one flat
sequence of 12 items::

    0-6   conv blocks 1, 2, 3, 4, 5, 6a, 6b (each with ``.conv`` and ``.bn``)
    7     global average pooling
    8-11  Linear 256 -> 256, BatchNorm1d, ReLU, Dropout  (fc-feature)

cut at the branch point: the first items are ``shared`` (none for ``'null'``,
1 for ``'2'``, 3 for ``'4'``, 5 for ``'6'``, all 12 for ``'fc'``), the rest are
in every task's ``branches_feature.{t}`` with their indices starting again at
0, ``t`` being the task's position in ``tasks``. ``branches_infer.{t}`` is the
task's head: ``Linear(256, n_outs)``, or for self ``Linear(512, 128)``,
``BatchNorm1d``, ReLU, Dropout, ``Linear(128, 2)``. The front end's scaler is a
separate ``.npz`` file with ``mean`` and ``sd`` (128 values each).

:func:`import_checkpoint` converts such a checkpoint and its scaler to an
mtlmusic model file, architecture named after the branch point (``'null'`` ->
MSS-CR, ``'2'``/``'4'``/``'6'`` -> MS-CR@2/4/6, ``'fc'`` -> MS-SR@FC; any
checkpoint of a single task -> SS-R). Checkpoints of the no-sharing
architecture (``'null'``) are supported too.

Examples
--------
>>> from mtlmusic.checkpoint import import_checkpoint
>>> import_checkpoint("model.pth.gz", "scaler.npz", "mscr2.safetensors")   # doctest: +SKIP
PosixPath('mscr2.safetensors')
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .architectures import MultiTaskNetwork, build_network, canonical_sources, model_name
from .errors import ConfigError, ModelFileError
from .frontend import N_MELS, Scaler
from .files import file_sha256
from .modelfile import save_model_file

#: The authors' branch point -> our architecture (for checkpoints of two or more tasks).
BRANCH_POINTS = {"null": "MSS-CR", "2": "MS-CR@2", "4": "MS-CR@4", "6": "MS-CR@6", "fc": "MS-SR@FC"}
#: How many items of the flat feature network sit in ``shared`` for each branch point.
SHARED_ITEMS = {"null": 0, "2": 1, "4": 3, "6": 5, "fc": 12}
#: The authors' task names that differ from our source ids.
TASK_NAMES = {"self_": "self"}

_CONV = {key: key for key in ("conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean",
                              "bn.running_var", "bn.num_batches_tracked")}
_BATCHNORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
#: Item of the authors' flat feature network -> (our stage index, their parameter name -> ours within the stage).
_ITEMS: tuple[tuple[int, dict[str, str]], ...] = (
    *((stage, _CONV) for stage in range(7)),
    (7, {}),
    (8, {"weight": "linear.weight", "bias": "linear.bias"}),
    (8, {key: f"bn.{key}" for key in _BATCHNORM}),
    (8, {}),
    (8, {}),
)
#: The self head's parametrised layers: their index in ``branches_infer.{t}`` -> parameter names.
_SELF_HEAD = {0: ("weight", "bias"), 1: _BATCHNORM, 4: ("weight", "bias")}
_REQUIRED_KEYS = ("tasks", "n_outs", "branch_at", "state_dict")


def import_checkpoint(checkpoint_path: str | os.PathLike, scaler_path: str | os.PathLike,
                      output_path: str | os.PathLike, overwrite: bool = False,
                      allow_pickle: bool = False) -> Path:
    """Convert one of the authors' PyTorch checkpoints and its scaler to an mtlmusic model file.

    Parameters
    ----------
    checkpoint_path : path-like
        The ``torch.save`` checkpoint (see the module documentation for its layout).
    scaler_path : path-like
        The ``.npz`` scaler with ``mean`` and ``sd`` arrays of 128 values.
    output_path : path-like
        The model file to write, conventionally ``NAME.safetensors``.
    overwrite : bool
        Replace ``output_path`` when it exists.
    allow_pickle : bool
        Load a checkpoint that holds more than tensors and plain containers with
        full unpickling. Unpickling runs code from the file: only for files you trust.

    Returns
    -------
    pathlib.Path
        ``output_path``; the model's name (e.g. ``'mscr2-self-bpm'``) is in its config.

    Raises
    ------
    ModelFileError
        The checkpoint or the scaler is unreadable or malformed (missing keys,
        unknown branch point or task, weights that do not fit the Table 3
        network), or ``output_path`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> path = import_checkpoint("ss0_self_bpm.pth", "scaler.npz", "out.safetensors")   # doctest: +SKIP
    >>> mtlmusic.load_model(path).sources                                              # doctest: +SKIP
    ('self', 'bpm')
    """
    checkpoint_path, scaler_path, output_path = Path(checkpoint_path), Path(scaler_path), Path(output_path)
    if output_path.exists() and not overwrite:
        raise ModelFileError(f"{output_path} exists; pass overwrite=True to replace it.")
    checkpoint = _load_checkpoint(checkpoint_path, allow_pickle)
    network, tasks, branch_at = convert_checkpoint(checkpoint, origin=str(checkpoint_path))
    scaler = read_scaler(scaler_path)
    info = {
        "description": (f"Imported from the study authors' PyTorch checkpoint {checkpoint_path.name} "
                        f"(branch point {branch_at!r}, tasks {tasks})."),
        "imported_from": {"checkpoint": checkpoint_path.name, "checkpoint_sha256": file_sha256(checkpoint_path),
                          "scaler": scaler_path.name, "scaler_sha256": file_sha256(scaler_path),
                          "branch_at": branch_at, "tasks": tasks, "iters": _plain(checkpoint.get("iters")),
                          "scaler_fn": _plain(checkpoint.get("scaler_fn"))},
    }
    name = model_name(network.architecture, network.sources)
    return save_model_file(output_path, network, scaler, name=name, info=info, overwrite=overwrite)


def _plain(value: Any) -> Any:
    """A JSON-friendly version of a checkpoint's metadata value."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.numel() == 1):
        return value.item()
    return str(value)


def _load_checkpoint(path: Path, allow_pickle: bool) -> Mapping[str, Any]:
    if not path.is_file():
        raise ModelFileError(f"Checkpoint {path} does not exist.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as err:
        hint = ("" if allow_pickle else " If it holds other Python objects and you trust the file, "
                "import it with allow_pickle=True.")
        raise ModelFileError(f"{path}: not a loadable PyTorch checkpoint: {err}{hint}") from err
    except (EOFError, OSError, RuntimeError, ValueError, zipfile.BadZipFile) as err:
        raise ModelFileError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {err}") from err
    if not isinstance(checkpoint, Mapping):
        raise ModelFileError(f"{path}: a checkpoint is a dict with keys {', '.join(_REQUIRED_KEYS)}; "
                             f"this file holds a {type(checkpoint).__name__}.")
    return checkpoint


def convert_checkpoint(checkpoint: Mapping[str, Any],
                       origin: str = "checkpoint") -> tuple[MultiTaskNetwork, list[str], str]:
    """Build our network from the authors' checkpoint dict: ``(network in eval mode, tasks, branch point)``.

    Parameters
    ----------
    checkpoint : mapping
        The dict the authors' training saved (``tasks``, ``n_outs``, ``branch_at``, ``state_dict``...).
    origin : str
        How to name the checkpoint in error messages.

    Returns
    -------
    (MultiTaskNetwork, list of str, str)
        The network, the checkpoint's task names, and its branch point.

    Examples
    --------
    >>> network, tasks, branch_at = convert_checkpoint(torch.load("ckpt.pth"))   # doctest: +SKIP
    >>> network.architecture                                                    # doctest: +SKIP
    'MS-CR@4'
    """
    missing = [key for key in _REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise ModelFileError(f"{origin}: not a checkpoint of the study's PyTorch code: no {', '.join(missing)} "
                             f"(it has {', '.join(map(str, checkpoint)) or 'no keys'}).")
    branch_at = "null" if checkpoint["branch_at"] is None else str(checkpoint["branch_at"]).lower()
    if branch_at not in BRANCH_POINTS:
        raise ModelFileError(f"{origin}: unknown branch point {checkpoint['branch_at']!r}; "
                             f"expected one of {', '.join(BRANCH_POINTS)}.")
    tasks = checkpoint["tasks"]
    if isinstance(tasks, str) or not isinstance(tasks, (list, tuple)) or not tasks:
        raise ModelFileError(f"{origin}: 'tasks' must be a non-empty list of task names, got {tasks!r}.")
    tasks = [str(task) for task in tasks]
    sources = [TASK_NAMES.get(task, task) for task in tasks]
    try:
        canonical_sources(sources)
    except ConfigError as err:
        raise ModelFileError(f"{origin}: bad task list {tasks}: {err}") from err
    state = checkpoint["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{origin}: 'state_dict' must map parameter names to tensors.")
    if state and all(key.startswith("module.") for key in state):  # saved from nn.DataParallel
        state = {key[len("module."):]: value for key, value in state.items()}

    head_sizes = {}
    for t, source in enumerate(sources):
        weight = state.get(f"branches_infer.{t}.0.weight")
        if source != "self" and weight is not None:
            head_sizes[source] = int(weight.shape[0])
    n_outs = checkpoint["n_outs"]
    if isinstance(n_outs, bool) or not isinstance(n_outs, int) or n_outs < 1:
        raise ModelFileError(f"{origin}: 'n_outs' must be a positive integer, got {n_outs!r}.")
    wrong = {s: n for s, n in head_sizes.items() if n != n_outs}
    if wrong:
        raise ModelFileError(f"{origin}: n_outs is {n_outs} but the heads of {', '.join(wrong)} have "
                             f"{', '.join(map(str, wrong.values()))} outputs.")

    architecture = "SS-R" if len(sources) == 1 else BRANCH_POINTS[branch_at]
    network = build_network(architecture, sources, head_sizes)
    converted, used = _convert_state(state, sources, SHARED_ITEMS[branch_at], network.n_shared, origin)
    unexpected = sorted(set(state) - used)
    if unexpected:
        raise ModelFileError(f"{origin}: parameters that do not belong to the network of branch point "
                             f"{branch_at!r} with {len(tasks)} task(s): {', '.join(unexpected[:8])}"
                             f"{' ...' if len(unexpected) > 8 else ''}.")
    try:
        network.load_state_dict(converted, strict=True)
    except RuntimeError as err:
        raise ModelFileError(f"{origin}: the weights do not fit the Table 3 network "
                             f"({architecture} on {', '.join(sources)}): {err}") from err
    return network.eval(), tasks, branch_at


def _convert_state(state: Mapping[str, torch.Tensor], sources: list[str], their_shared: int, our_shared: int,
                   origin: str) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Rename the authors' parameters to ours; returns the new state dict and the keys it used."""
    converted: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(theirs: str, ours: str) -> None:
        if theirs in state:
            converted[ours] = state[theirs]
            used.add(theirs)
        elif theirs.endswith("num_batches_tracked"):  # written by PyTorch >= 0.4.1 only; unused in eval
            converted[ours] = torch.tensor(0, dtype=torch.long)
        else:
            raise ModelFileError(f"{origin}: parameter {theirs} is missing from the state dict; the checkpoint "
                                 "does not hold the network its branch point and tasks describe.")

    for t, source in enumerate(sources):
        for item, (stage, names) in enumerate(_ITEMS):
            theirs = f"shared.{item}" if item < their_shared else f"branches_feature.{t}.{item - their_shared}"
            ours = f"shared.{stage}" if stage < our_shared else f"branches.{source}.{stage - our_shared}"
            for their_name, our_name in names.items():
                take(f"{theirs}.{their_name}", f"{ours}.{our_name}")
        if source == "self":
            for index, names in _SELF_HEAD.items():
                for param in names:
                    take(f"branches_infer.{t}.{index}.{param}", f"heads.self.layers.{index}.{param}")
        else:
            for param in ("weight", "bias"):
                take(f"branches_infer.{t}.0.{param}", f"heads.{source}.{param}")
    return converted, used


def read_scaler(path: str | os.PathLike) -> Scaler:
    """Read the authors' scaler file: an ``.npz`` with ``mean`` and ``sd``, 128 values each.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/scaler.npz"
    >>> np.savez(path, mean=np.zeros(128), sd=np.ones(128))
    >>> read_scaler(path).std[:2]
    tensor([1., 1.])
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in ("mean", "sd") if key in data.files}
            keys = data.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ModelFileError(f"{path}: not a readable .npz scaler file: {err}") from err
    if set(arrays) != {"mean", "sd"}:
        raise ModelFileError(f"{path}: a scaler file holds 'mean' and 'sd' arrays; it has {', '.join(keys)}.")
    for key, value in arrays.items():
        if value.shape != (N_MELS,) or not np.issubdtype(value.dtype, np.number) or not np.isfinite(value).all():
            raise ModelFileError(f"{path}: '{key}' must be {N_MELS} finite numbers, got shape {value.shape} "
                                 f"of {value.dtype}.")
    if (arrays["sd"] < 0).any():
        raise ModelFileError(f"{path}: 'sd' has negative values; it is not a standard deviation.")
    return Scaler(torch.from_numpy(arrays["mean"].astype(np.float32)),
                  torch.from_numpy(arrays["sd"].astype(np.float32)))
