"""Import of the PyTorch checkpoints released by the study's authors.

Their checkpoint is a ``torch.save`` dict, usually gzip-compressed (``.pth.gz``),
with the keys ``iters``, ``tasks``, ``branch_at`` (``'null'``, ``'2'``, ``'4'``,
``'6'`` or ``'fc'``), ``scaler_fn``, ``state_dict`` and ``optimizer``; later
versions of their code also saved ``n_outs``, the training code of the study
period (2018) did not, and each head's output size is read from its weights.
The self task is called ``self_`` (``self`` in 2018), the genre task ``cdr``
(our ``cdr_tag``). Its network is the Table 3 feature network written as one
flat sequence of 12 items::

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

Compatibility with the authors' features
----------------------------------------
By default an imported model follows mtlmusic's conventions: the per-task
blocks of its representation in canonical source order, and a track's final
partial slice (or a track shorter than one slice) padded with the track's floor,
what digital silence becomes. ``compat="authors"`` (``mtlmusic
import-checkpoint --compat authors``) makes the model compute what the
authors' feature extractor computed: blocks in the checkpoint's task order, and
padding with 0 dB before standardization. The model file records both in its
config (``representation_blocks``, ``pad_db``; ``info.imported_from.compat``),
so the model extracts this way wherever it is loaded. Two differences of their
extractor are not reproduced: it counted the final, partial slice fully in a
track's mean and std, where mtlmusic weighs it by the audio it holds (features
agree for tracks of at most one slice or of whole slices), and for ``'fc'``
checkpoints it repeated the one shared block once per task.

Examples
--------
>>> from mtlmusic.checkpoint import import_checkpoint
>>> import_checkpoint("model.pth.gz", "scaler.npz", "mscr2.safetensors")   # doctest: +SKIP
PosixPath('mscr2.safetensors')
>>> import_checkpoint("model.pth.gz", "scaler.npz", "mscr2-authors.safetensors",
...                   compat="authors")                                     # doctest: +SKIP
PosixPath('mscr2-authors.safetensors')
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import replace
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
TASK_NAMES = {"self_": "self", "cdr": "cdr_tag"}
#: The conventions an imported model can follow besides mtlmusic's own (see the module documentation).
COMPAT_MODES = ("authors",)
#: The dB value the authors' extractor padded spectrograms with, before standardization.
AUTHORS_PAD_DB = 0.0

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
_REQUIRED_KEYS = ("tasks", "branch_at", "state_dict")
_GZIP_MAGIC = b"\x1f\x8b"
#: How a ``torch.save`` file starts: a zip archive (PyTorch >= 1.6) or a pickle of protocol 2 or later (before).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def import_checkpoint(checkpoint_path: str | os.PathLike, scaler_path: str | os.PathLike,
                      output_path: str | os.PathLike, overwrite: bool = False,
                      allow_pickle: bool = False, compat: str | None = None) -> Path:
    """Convert one of the authors' PyTorch checkpoints and its scaler to an mtlmusic model file.

    Parameters
    ----------
    checkpoint_path : path-like
        The ``torch.save`` checkpoint, plain or gzip-compressed (see the module
        documentation for its layout).
    scaler_path : path-like
        The ``.npz`` scaler with ``mean`` and ``sd`` arrays of 128 values.
    output_path : path-like
        The model file to write, conventionally ``NAME.safetensors``.
    overwrite : bool
        Replace ``output_path`` when it exists.
    allow_pickle : bool
        Load a checkpoint that holds more than tensors and plain containers with
        full unpickling. Unpickling runs code from the file: only for files you trust.
    compat : {None, 'authors'}
        ``None``: the model follows mtlmusic's conventions. ``'authors'``: it
        computes the features of the authors' extractor (blocks in the
        checkpoint's task order, padding with 0 dB); see the module documentation.

    Returns
    -------
    pathlib.Path
        ``output_path``; the model's name (e.g. ``'mscr2-self-bpm'``) is in its config.

    Raises
    ------
    ConfigError
        ``compat`` is not one of the modes above.
    ModelFileError
        The checkpoint or the scaler is unreadable or malformed (not gzip or not a
        ``torch.save`` file, missing keys, unknown branch point or task, weights
        that do not fit the Table 3 network), or ``output_path`` exists and
        ``overwrite`` is False.

    Examples
    --------
    >>> path = import_checkpoint("ss0_self_bpm.pth.gz", "scaler.npz", "out.safetensors")   # doctest: +SKIP
    >>> mtlmusic.load_model(path).sources                                                 # doctest: +SKIP
    ('self', 'bpm')
    """
    if compat is not None and compat not in COMPAT_MODES:
        raise ConfigError(f"Unknown compat mode {compat!r}: use None (mtlmusic's conventions) or "
                          f"{', '.join(map(repr, COMPAT_MODES))}.")
    checkpoint_path, scaler_path, output_path = Path(checkpoint_path), Path(scaler_path), Path(output_path)
    if output_path.exists() and not overwrite:
        raise ModelFileError(f"{output_path} exists; pass overwrite=True to replace it.")
    checkpoint = load_checkpoint(checkpoint_path, allow_pickle)
    network, tasks, branch_at = convert_checkpoint(checkpoint, origin=str(checkpoint_path),
                                                   task_order=compat == "authors")
    scaler = read_scaler(scaler_path)
    if compat == "authors":
        scaler = replace(scaler, pad_db=AUTHORS_PAD_DB)
    info = {
        "description": (f"Imported from the study authors' PyTorch checkpoint {checkpoint_path.name} "
                        f"(branch point {branch_at!r}, tasks {tasks})"
                        + (", computing the features of the authors' extractor." if compat else ".")),
        "imported_from": {"checkpoint": checkpoint_path.name, "checkpoint_sha256": file_sha256(checkpoint_path),
                          "scaler": scaler_path.name, "scaler_sha256": file_sha256(scaler_path),
                          "branch_at": branch_at, "tasks": tasks, "iters": _plain(checkpoint.get("iters")),
                          "scaler_fn": _plain(checkpoint.get("scaler_fn")), "compat": compat},
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


def load_checkpoint(path: str | os.PathLike, allow_pickle: bool = False) -> Mapping[str, Any]:
    """Read a ``torch.save`` dict from a file, gzip-compressed or not, onto the CPU.

    Parameters
    ----------
    path : path-like
        The checkpoint; gzip compression is recognised by the file's contents.
    allow_pickle : bool
        Unpickle any Python object, not only tensors and plain containers
        (``torch.load(weights_only=False)``): only for files you trust.

    Returns
    -------
    mapping
        The checkpoint's dict.

    Raises
    ------
    ModelFileError
        The file is missing, a corrupt gzip file, not a ``torch.save`` file,
        truncated, not a dict, or holds other objects while ``allow_pickle`` is False.

    Examples
    --------
    >>> import gzip, io, tempfile, torch
    >>> buffer = io.BytesIO()
    >>> torch.save({"tasks": ["cdr"], "branch_at": "fc"}, buffer)
    >>> path = tempfile.mkdtemp() + "/model.pth.gz"
    >>> with gzip.open(path, "wb") as f:
    ...     _ = f.write(buffer.getvalue())
    >>> load_checkpoint(path)["tasks"]
    ['cdr']
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Checkpoint {path} does not exist.")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelFileError(f"{path}: cannot be read: {err}") from err
    compressed = data.startswith(_GZIP_MAGIC)
    if compressed:
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as err:
            raise ModelFileError(f"{path}: a truncated or corrupt gzip file: {err}") from err
    if not data.startswith(_TORCH_MAGIC):
        if compressed:
            what = "gzip-compressed, but what it holds is not a PyTorch checkpoint"
        elif path.suffix == ".gz":
            what = "not gzip-compressed, despite its .gz name, and not a PyTorch checkpoint either"
        else:
            what = "not a PyTorch checkpoint"
        raise ModelFileError(f"{path}: {what} (a torch.save file, plain or gzip-compressed); "
                             f"its first bytes are {data[:8]!r}.")
    kind = "gzip-compressed PyTorch checkpoint" if compressed else "PyTorch checkpoint"
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as err:
        if allow_pickle or "Weights only load failed" not in str(err):
            raise ModelFileError(f"{path}: a {kind} that cannot be read (truncated or corrupt?): "
                                 f"{_first_line(err)}") from err
        reason = next((line.strip() for line in str(err).splitlines() if "WeightsUnpickler error" in line), "")
        raise ModelFileError(f"{path}: the checkpoint holds Python objects other than tensors and plain "
                             f"containers{f' ({reason})' if reason else ''}. Unpickling them runs code from the "
                             "file: if you trust it, import it with allow_pickle=True (--trust-pickle).") from err
    except (EOFError, KeyError, OSError, RuntimeError, ValueError) as err:
        raise ModelFileError(f"{path}: a {kind} that cannot be read (truncated or corrupt?): "
                             f"{_first_line(err)}") from err
    except (AttributeError, ImportError) as err:  # full unpickling of objects whose code is not installed
        raise ModelFileError(f"{path}: the checkpoint holds Python objects that cannot be recreated here: "
                             f"{err}") from err
    if not isinstance(checkpoint, Mapping):
        raise ModelFileError(f"{path}: a checkpoint is a dict with keys {', '.join(_REQUIRED_KEYS)}; "
                             f"this file holds a {type(checkpoint).__name__}.")
    return checkpoint


def _first_line(err: BaseException) -> str:
    """The first line of an error's message (PyTorch's go on for paragraphs)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def head_sizes(state: Mapping[str, torch.Tensor], tasks: list[str], n_outs: Any = None,
               origin: str = "checkpoint") -> dict[str, int]:
    """Each task's output size, read from the weight of its head ``branches_infer.{t}.0``.

    Parameters
    ----------
    state : mapping
        The checkpoint's state dict.
    tasks : list of str
        The checkpoint's task names; ``t`` is a task's position among them.
    n_outs : int, optional
        The output size the checkpoint declares for every task but self, when it does.
    origin : str
        How to name the checkpoint in error messages.

    Returns
    -------
    dict
        Our source id -> output size, for every task but self (whose head always has 2).

    Raises
    ------
    ModelFileError
        A head's weight is missing or not a ``Linear`` weight, ``n_outs`` is not a
        positive integer, or a head's size differs from ``n_outs``.

    Examples
    --------
    >>> import torch
    >>> state = {"branches_infer.0.0.weight": torch.zeros(50, 256),
    ...          "branches_infer.1.0.weight": torch.zeros(128, 512)}
    >>> head_sizes(state, ["cdr", "self"])
    {'cdr_tag': 50}
    """
    sizes = {}
    for t, task in enumerate(tasks):
        source = TASK_NAMES.get(task, task)
        if source == "self":
            continue
        key = f"branches_infer.{t}.0.weight"
        if key not in state:
            raise ModelFileError(f"{origin}: parameter {key} (the head of task {task!r}) is missing from the "
                                 "state dict; the checkpoint does not hold the network its tasks describe.")
        weight = state[key]
        if weight.ndim != 2 or weight.shape[0] < 1:
            raise ModelFileError(f"{origin}: {key} has shape {tuple(weight.shape)}; the head of task {task!r} "
                                 "is a Linear(256, n_outs) layer.")
        sizes[source] = int(weight.shape[0])
    if n_outs is not None:
        if isinstance(n_outs, bool) or not isinstance(n_outs, (int, np.integer)) or n_outs < 1:
            raise ModelFileError(f"{origin}: 'n_outs' must be a positive integer, got {n_outs!r}.")
        wrong = {source: size for source, size in sizes.items() if size != n_outs}
        if wrong:
            raise ModelFileError(f"{origin}: n_outs is {n_outs} but the heads of {', '.join(wrong)} have "
                                 f"{', '.join(map(str, wrong.values()))} outputs.")
    return sizes


def convert_checkpoint(checkpoint: Mapping[str, Any], origin: str = "checkpoint",
                       task_order: bool = False) -> tuple[MultiTaskNetwork, list[str], str]:
    """Build our network from the authors' checkpoint dict: ``(network in eval mode, tasks, branch point)``.

    Parameters
    ----------
    checkpoint : mapping
        The dict the authors' training saved (``tasks``, ``branch_at``, ``state_dict``,
        and ``n_outs`` in their later versions).
    origin : str
        How to name the checkpoint in error messages.
    task_order : bool
        Concatenate the per-task blocks of the representation in the checkpoint's
        task order, as the authors' extractor did, rather than in canonical source order.

    Returns
    -------
    (MultiTaskNetwork, list of str, str)
        The network, the checkpoint's task names, and its branch point.

    Raises
    ------
    ModelFileError
        Missing keys, an unknown branch point or task, or weights that do not fit
        the Table 3 network.

    Examples
    --------
    >>> network, tasks, branch_at = convert_checkpoint(load_checkpoint("ckpt.pth.gz"))   # doctest: +SKIP
    >>> network.architecture                                                            # doctest: +SKIP
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

    sizes = head_sizes(state, tasks, checkpoint.get("n_outs"), origin)
    architecture = "SS-R" if len(sources) == 1 else BRANCH_POINTS[branch_at]
    block_order = sources if task_order and architecture != "MS-SR@FC" else None  # MS-SR@FC has one block
    network = build_network(architecture, sources, sizes, block_order)
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
