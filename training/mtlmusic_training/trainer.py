"""Multi-task training, the study's Algorithm 1, readable top to bottom.

Every iteration picks one learning source uniformly at random, draws a batch of
48 training tracks that have that source's target, crops 2.5 s at random from
each (from the mel cache), and takes one Adam step on that task's loss:

* a source with a target distribution ``z``: ``KL(z || softmax(f(X)))``, summed
  over classes and averaged over the batch;
* ``self``: cross-entropy of the siamese head on pairs of crops, exactly half of
  them from the same track.

An epoch is ``L = l x m`` iterations (``l`` batches to visit every training track
once, ``m`` sources). Its random choices (tasks, tracks, crop starts) are drawn
at its start, from a generator seeded with the run's seed and the epoch's number
(:func:`draw_epoch`), and uploaded in one copy; the losses are summed on the
device and read once, at its end. After each epoch the per-task validation loss
is computed on fixed validation crops and a checkpoint is written (weights,
optimizer, dropout random state, position), so that a run resumed after a crash
ends with the same weights as a run that never stopped (bit-exact on CPU).

On CUDA the training tracks of the mel cache are kept on the GPU once per
process, shared by every run of the process (:func:`resident_cache`), and crops
are cut there; when they do not fit, crops are cut in host memory and copied
through pinned buffers. The forward pass runs under bf16 autocast in
channels-last layout, Adam is fused, and each task's step is captured as a CUDA
graph after a few eager steps and replayed: a step is then one launch, with no
copy and no synchronization. :func:`train_together` trains several runs at once,
one step of each in turn, each on its own CUDA stream, so that a GPU runs several
of the study's small networks concurrently.

Examples
--------
>>> # data = TrainingData(cache, scaler, {"bpm": TaskData(train_idx, valid_idx, z), "self": ...})
>>> # trainer = Trainer(TrainConfig("MS-CR@2", ["self", "bpm"], epochs=10), data, "runs/mscr2-self-bpm")
>>> # trainer.train(); trainer.export("mscr2-self-bpm.safetensors")
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mtlmusic.architectures import build_network, model_name
from mtlmusic.errors import ConfigError
from mtlmusic.frontend import N_MELS, SLICE_FRAMES, Scaler
from mtlmusic.files import atomic_path
from mtlmusic.modelfile import save_model_file

from .augment import N_PARAMS, Augmentation
from .datasets import Manifest
from .melcache import MelCache, MelTensors, gpu_crops, load_scaler
from .targets import load_targets, targets_path


def epoch_length(data: TrainingData, sources: Sequence[str], batch_size: int = 48) -> int:
    """The paper's iterations per epoch, ``L = l x m``: ``l`` batches cover the training tracks of the
    ``m`` sources once.

    >>> epoch_length(data, ["self", "bpm", "tag"])   # 2,500 training tracks  # doctest: +SKIP
    159
    """
    train_tracks = np.unique(np.concatenate([data.tasks[s].train for s in sources]))
    return math.ceil(len(train_tracks) / batch_size) * len(sources)


@dataclass
class TrainConfig:
    """Every knob of one training run (defaults follow the paper, SPEC section 5)."""

    architecture: str
    sources: list[str]
    epochs: int = 100
    batch_size: int = 48
    lr: float = 1e-4
    weight_decay: float = 1e-6       # L2 on all parameters (added to the gradient, as Adam's weight_decay does)
    seed: int = 0
    device: str = "auto"             # "auto": CUDA when available
    iterations_per_epoch: int | None = None   # default: l x m
    valid_tracks: int = 512          # validation tracks per task (fixed crops)
    data_on_device: bool | None = None  # keep the cache's training tracks on the device when they fit (None: on GPUs)
    device_memory_share: float = 1.0  # share of the device's memory this process may use (processes sharing it: less)
    cache_dtype: str = "auto"        # on the device: "float16", "uint8" (half the memory), "auto": float16 if it fits
    amp: bool = True                 # bf16 autocast on CUDA
    channels_last: bool = True       # channels-last layout on CUDA
    graphs: bool = True              # on CUDA, with the cache on the GPU: replay each task's step as a CUDA graph
    head_sizes: dict[str, int] = field(default_factory=dict)
    augment: dict[str, float] = field(default_factory=dict)   # Augmentation fields (gain_db, ...); empty: none

    def __post_init__(self):
        if self.cache_dtype not in CACHE_DTYPES:
            raise ConfigError(f"Unknown cache_dtype {self.cache_dtype!r}: choose {', '.join(CACHE_DTYPES)}.")
        self.augment = Augmentation.from_dict(self.augment).as_dict()

    @property
    def name(self) -> str:
        return model_name(self.architecture, self.sources)


@dataclass
class TaskData:
    """One source's tracks (indices into the mel cache) and, except for ``self``, targets for every cache track."""

    train: np.ndarray
    valid: np.ndarray
    targets: np.ndarray | None = None   # (n_cache_tracks, k) rows are distributions

    def __post_init__(self):
        self.train = np.asarray(self.train, dtype=np.int64)
        self.valid = np.asarray(self.valid, dtype=np.int64)
        if self.targets is not None:
            self.targets = np.asarray(self.targets, dtype=np.float32)


@dataclass
class TrainingData:
    """What a run learns from: the mel cache, the scaler fitted on the training split, and the tasks."""

    cache: MelCache
    scaler: Scaler
    tasks: dict[str, TaskData]


def load_training_data(data_dir: str | os.PathLike, sources: list[str],
                       cache: MelCache | None = None) -> TrainingData:
    """Assemble :class:`TrainingData` from a prepared data folder.

    The folder holds ``manifest.csv`` (track_id, path, split), the mel cache in
    ``cache/`` with its scaler ``scaler.npz`` (``mean``, ``std``), and the targets
    of each source in ``targets/<source>.npz`` (see ``targets.save_targets``).
    Tracks of the ``train`` and ``valid`` splits that have a target (and are in
    the cache) train and validate that source; ``self`` uses all of them.
    """
    data_dir = Path(data_dir)
    cache = cache or MelCache.open(data_dir / "cache")
    ids = np.asarray(cache.track_ids)
    splits = Manifest.load(data_dir / "manifest.csv").splits_of(ids)
    scaler = load_scaler(data_dir / "scaler.npz")
    tasks = {}
    for source in sources:
        if source == "self":
            tasks[source] = TaskData(np.flatnonzero(splits == "train"), np.flatnonzero(splits == "valid"))
            continue
        targets = load_targets(targets_path(data_dir / "targets", source))
        row_of = {t: i for i, t in enumerate(targets.track_ids)}
        rows = np.asarray([row_of.get(t, -1) for t in ids])
        has = rows >= 0
        has[has] = targets.mask[rows[has]]
        z = np.zeros((len(ids), targets.z.shape[1]), dtype=np.float32)
        z[has] = targets.z[rows[has]]
        tasks[source] = TaskData(np.flatnonzero(has & (splits == "train")),
                                 np.flatnonzero(has & (splits == "valid")), z)
    return TrainingData(cache, scaler, tasks)


# --- the mel cache on the device ---------------------------------------------------------------

#: Part of a process's share of a device's memory that the mel cache may take; the rest is for
#: training itself (networks, activations, CUDA graphs, cuDNN workspaces).
CACHE_MEMORY_FRACTION = 0.75
#: Tensor types the cache may take on the device, in order of preference, for each ``cache_dtype``.
CACHE_DTYPES = {"auto": (torch.float16, torch.uint8), "float16": (torch.float16,), "uint8": (torch.uint8,)}


def cache_fits(cache_bytes: int, free_bytes: int, share: float = 1.0, total_bytes: int | None = None) -> bool:
    """Whether a mel cache of ``cache_bytes`` may be kept on a device by a process entitled to ``share`` of its
    memory (``total_bytes``, default ``free_bytes``), of which ``free_bytes`` are free now; see
    :data:`CACHE_MEMORY_FRACTION`.

    >>> gib = 1 << 30
    >>> cache_fits(10 * gib, 80 * gib), cache_fits(10 * gib, 80 * gib, share=0.25), cache_fits(70 * gib, 80 * gib)
    (True, True, False)
    >>> cache_fits(28 * gib, 50 * gib, share=0.5, total_bytes=80 * gib)   # the second of two processes on a GPU
    True
    """
    budget = min(free_bytes, share * (free_bytes if total_bytes is None else total_bytes))
    return cache_bytes <= CACHE_MEMORY_FRACTION * budget


def device_memory(device: torch.device) -> tuple[int, int]:
    """Free and total bytes of ``device``'s memory (the host's for the CPU); free counts the memory PyTorch's
    allocator holds unused in this process, released first."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return torch.cuda.mem_get_info(device)
    pages = "SC_AVPHYS_PAGES" if "SC_AVPHYS_PAGES" in os.sysconf_names else "SC_PHYS_PAGES"
    return (os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE"),
            os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


@dataclass
class ResidentCache:
    """Tracks of a mel cache held on a device by this process (see :func:`resident_cache`).

    Attributes
    ----------
    root : str
        The cache's folder, which names it.
    tracks : ndarray of int64
        The cache rows held, sorted; resident row ``i`` is cache row ``tracks[i]``.
    tensors : MelTensors
        Their frames, float16 or uint8 coded (see :meth:`MelCache.to_tensor`).
    floors : torch.Tensor or None
        For uint8: each held track's dB floor, to decode crops.
    """

    root: str
    tracks: np.ndarray
    tensors: MelTensors
    floors: torch.Tensor | None

    @property
    def nbytes(self) -> int:
        return self.tensors.flat.numel() * self.tensors.flat.element_size()

    def rows(self, cache_rows: np.ndarray) -> np.ndarray:
        """Resident rows of some held cache rows."""
        return np.searchsorted(self.tracks, cache_rows)

    def crops(self, rows: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """dB crops ``(n, 2, 216, 128)`` of resident ``rows`` from ``starts``, cut on the device without a sync."""
        floors = None if self.floors is None else self.floors.index_select(0, rows)
        return gpu_crops(self.tensors.flat, self.tensors.offsets.index_select(0, rows), starts, SLICE_FRAMES, floors)


_RESIDENT: dict[str, ResidentCache] = {}


def resident_cache(cache: MelCache, tracks: np.ndarray, device: torch.device, dtype: str = "auto",
                   share: float = 1.0) -> ResidentCache | None:
    """``tracks`` of ``cache`` on ``device``, uploaded once and shared by every run of this process.

    A process holds one cache per device. A run whose tracks it holds (in a type
    ``dtype`` allows) shares it; otherwise it is replaced by one holding its tracks
    and the new ones, in the first type of :data:`CACHE_DTYPES` that fits
    (:func:`cache_fits` with ``share`` of the device's memory).

    Returns
    -------
    ResidentCache or None
        None when the tracks fit in no allowed type: cut crops in host memory.
    """
    key, root, dtypes = str(device), str(cache.root), CACHE_DTYPES[dtype]
    held = _RESIDENT.get(key)
    if held is not None and held.root == root:
        if held.tensors.flat.dtype in dtypes and np.isin(tracks, held.tracks).all():
            return held
        tracks = np.union1d(tracks, held.tracks)
    release_resident_caches(device)
    held = None
    tracks = np.unique(tracks)
    free, total = device_memory(device)
    for tensor_type in dtypes:
        if cache_fits(int(cache.n_frames[tracks].sum()) * 2 * N_MELS * tensor_type.itemsize, free, share, total):
            floors = torch.as_tensor(cache.floors[tracks], device=device) if tensor_type == torch.uint8 else None
            held = ResidentCache(root, tracks, cache.to_tensor(device, tracks, tensor_type), floors)
            if device.type == "cuda":
                torch.cuda.synchronize(device)   # the runs use it from their own streams
            _RESIDENT[key] = held
            break
    return held


def release_resident_caches(device: torch.device | None = None) -> None:
    """Forget this process's cache on ``device`` (default: on every device); runs still using it keep it alive."""
    for key in [k for k in _RESIDENT if device is None or k == str(device)]:
        del _RESIDENT[key]


#: Pinned host buffers crops go through on their way to the GPU when the cache is not there.
_PINNED_BUFFERS = 4


class _HostCrops:
    """dB crops cut in host memory from the memory-mapped cache and moved to ``device``.

    On CUDA they are written into one of :data:`_PINNED_BUFFERS` pinned buffers and
    copied asynchronously, a buffer being reused once its last copy has completed.
    """

    def __init__(self, cache: MelCache, device: torch.device, batch: int):
        self.cache = cache
        self.device = device
        pinned = device.type == "cuda"
        self.buffers = [torch.empty((batch, 2, SLICE_FRAMES, N_MELS), pin_memory=True)
                        for _ in range(_PINNED_BUFFERS if pinned else 0)]
        self.copied: list[torch.cuda.Event | None] = [None] * len(self.buffers)
        self.turn = 0

    def __call__(self, tracks: np.ndarray, starts: np.ndarray) -> torch.Tensor:
        crops = self.cache.crops(tracks, starts, SLICE_FRAMES)
        if not self.buffers:
            return torch.from_numpy(crops).to(self.device)
        k = self.turn % len(self.buffers)
        self.turn += 1
        if self.copied[k] is not None:
            self.copied[k].synchronize()
        buffer = self.buffers[k][:len(crops)]
        buffer.numpy()[...] = crops
        x = buffer.to(self.device, non_blocking=True)
        self.copied[k] = torch.cuda.Event()
        self.copied[k].record()
        return x


# --- an epoch's random choices -----------------------------------------------------------------

def draw_epoch(rooms: Sequence[np.ndarray], batch_sizes: Sequence[int], pairs: Sequence[bool], iterations: int,
               rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """The random choices of one epoch of Algorithm 1, drawn at once.

    Each iteration independently: a task uniformly; ``batch_sizes[t]`` distinct
    tracks of its list uniformly, in random order (as ``rng.choice(n, size,
    replace=False)`` draws them); a crop start uniformly among those that fit each
    track. A pair task (self) pairs its first half of the tracks with themselves
    and its second half with another track of the second half (a cyclic shift),
    each second crop with a start of its own.

    Parameters
    ----------
    rooms : sequence of ndarray of int
        For each task, the number of crop starts that fit each of its tracks.
    batch_sizes : sequence of int
        Tracks per batch of each task (at most its number of tracks; even for pairs).
    pairs : sequence of bool
        Whether each task learns from pairs (self).
    iterations : int
    rng : numpy.random.Generator

    Returns
    -------
    order : ndarray of int64, shape (iterations,)
        The task of each iteration.
    batches : list of dict of str to ndarray
        Per task, one row per iteration of that task, in order: ``tracks``
        (positions in the task's list of tracks) and ``starts``, and for a pair
        task ``right_tracks`` and ``right_starts``, all of shape ``(n, batch_size)``.

    Examples
    --------
    >>> order, batches = draw_epoch([np.full(10, 5), np.full(6, 1)], [4, 4], [False, True], 8,
    ...                             np.random.default_rng(0))
    >>> len(order), sorted(batches[1]), batches[1]["tracks"].shape == (int((order == 1).sum()), 4)
    (8, ['right_starts', 'right_tracks', 'starts', 'tracks'], True)
    """
    order = rng.integers(len(rooms), size=iterations)
    batches = []
    for task, (room, size, paired) in enumerate(zip(rooms, batch_sizes, pairs)):
        tracks = _distinct(rng, len(room), size, int((order == task).sum()))
        plan = {"tracks": tracks, "starts": rng.integers(0, room[tracks])}
        if paired:
            plan["right_tracks"] = _pair_with_others(tracks)
            plan["right_starts"] = rng.integers(0, room[plan["right_tracks"]])
        batches.append(plan)
    return order, batches


def _distinct(rng: np.random.Generator, n: int, k: int, rows: int) -> np.ndarray:
    """``rows`` uniformly random ordered samples of ``k`` distinct values of ``range(n)``: Floyd's algorithm
    (uniform sets) on every row at once, then each row shuffled."""
    out = np.empty((rows, k), dtype=np.int64)
    for i, top in enumerate(range(n - k, n)):
        t = rng.integers(0, top + 1, size=rows)
        out[:, i] = np.where((out[:, :i] == t[:, None]).any(axis=1), top, t)
    return rng.permuted(out, axis=1)


def _pair_with_others(left: np.ndarray) -> np.ndarray:
    """The right side of self pairs: the first half of (each row of) ``left`` itself, the second half shifted."""
    right = left.copy()
    half = left.shape[-1] // 2
    right[..., half:] = np.roll(left[..., half:], 1, axis=-1)
    return right


# --- the run ------------------------------------------------------------------------------------

#: Eager steps of a task before its step is captured as a CUDA graph (cuDNN picks its algorithms, Adam its state).
GRAPH_WARMUP_STEPS = 3


class _Task:
    """One source during training: its tracks and targets on the device, and its part of the epoch's choices."""

    def __init__(self, name: str, pool: np.ndarray, room: np.ndarray, rows: np.ndarray,
                 targets: np.ndarray | None, batch: int, capacity: int, device: torch.device, augmented: bool):
        self.name = name
        self.pairs = name == "self"
        self.pool = pool                      # cache rows of its training tracks
        self.room = room                      # crop starts that fit each of them
        self.batch = batch
        self.rows = torch.as_tensor(rows, device=device)   # their rows in the crop source
        self.targets = None if targets is None else torch.as_tensor(targets[pool], device=device)
        self.labels = torch.as_tensor(np.repeat([1, 0], batch // 2), device=device) if self.pairs else None
        keys = ("tracks", "starts", "right_tracks", "right_starts") if self.pairs else ("tracks", "starts")
        self.plan = {key: torch.zeros((capacity, batch), dtype=torch.int64, device=device) for key in keys}
        if augmented:
            for side in ("", "right_") if self.pairs else ("",):
                self.plan[side + "augment"] = torch.zeros((capacity, batch, N_PARAMS), device=device)
        self.host_plan: dict[str, np.ndarray] = {}
        self.counter = torch.zeros((), dtype=torch.int64, device=device)   # steps taken this epoch
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        self.steps = 0                        # the same count, on the host
        self.eager_steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None


class _DropoutRandomness:
    """The run's own stream of the random numbers dropout draws, swapped into its device's default generator
    for each of its steps, so that runs trained together in one process do not share one."""

    def __init__(self, device: torch.device, seed: int):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.generator = torch.Generator(device).manual_seed(seed)
            self.default = torch.cuda.default_generators[device.index]
        else:
            self.cpu_state = torch.get_rng_state()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        if self.cuda:
            saved = self.default.graphsafe_get_state()
            self.default.graphsafe_set_state(self.generator)
            try:
                yield
            finally:
                self.default.graphsafe_set_state(saved)
            return
        saved = torch.get_rng_state()
        torch.set_rng_state(self.cpu_state)
        try:
            yield
        finally:
            self.cpu_state = torch.get_rng_state()
            torch.set_rng_state(saved)

    def get_state(self) -> dict[str, Any]:
        return {"cuda": self.cuda, "state": self.generator.get_state() if self.cuda else self.cpu_state}

    def set_state(self, saved: dict[str, Any]) -> None:
        """Restore a state of :meth:`get_state` saved on the same kind of device (another kind keeps the seed's)."""
        if saved["cuda"] == self.cuda:
            if self.cuda:
                self.generator.set_state(saved["state"].cpu())
            else:
                self.cpu_state = saved["state"].cpu()


#: Config fields that may change when a run is resumed: they do not change what is learned.
_RESUMABLE_CHANGES = ("epochs", "device", "data_on_device", "device_memory_share", "cache_dtype", "graphs")


class Trainer:
    """Train one network of the study on :class:`TrainingData`; resumable, see the module docs.

    Parameters
    ----------
    config : TrainConfig
    data : TrainingData
    run_dir : path-like
        Where checkpoints (``checkpoint.pt``), the history (``history.jsonl``)
        and the config are written; an existing checkpoint is resumed.
    log : callable, optional
        Receives one line per epoch (default: print).
    """

    def __init__(self, config: TrainConfig, data: TrainingData, run_dir: str | os.PathLike, log=print):
        missing = [s for s in config.sources if s not in data.tasks]
        if missing:
            raise ValueError(f"No training data for sources {missing}.")
        self.config = config
        self.data = data
        self.run_dir = Path(run_dir)
        self.log = log
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                                   if config.device == "auto" else config.device)
        cuda = self.device.type == "cuda"
        if cuda and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        torch.manual_seed(config.seed)
        head_sizes = {s: data.tasks[s].targets.shape[1] for s in config.sources if s != "self"}
        self.network = build_network(config.architecture, config.sources, head_sizes).to(self.device)
        self._dropout = _DropoutRandomness(self.device, config.seed)
        self.stream = torch.cuda.Stream(self.device) if cuda else None
        self._in_turn = False
        self.amp = config.amp and cuda
        self.channels_last = config.channels_last and cuda
        if self.channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        if cuda:
            torch.backends.cudnn.benchmark = True
        self.sources = list(self.network.sources)
        self.scaler = data.scaler.to(self.device)
        self.augmentation = Augmentation.from_dict(config.augment)
        train_tracks = np.unique(np.concatenate([data.tasks[s].train for s in self.sources]))
        self.iterations_per_epoch = config.iterations_per_epoch or epoch_length(data, self.sources, config.batch_size)
        with self._turn():
            self.resident = self._place_cache(train_tracks)
            self.host_crops = None if self.resident else _HostCrops(data.cache, self.device, config.batch_size)
            self.capture = cuda and config.graphs and self.resident is not None
            self._graph_pool = torch.cuda.graph_pool_handle() if self.capture else None
            self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.lr,
                                              weight_decay=config.weight_decay, **self._adam_flags())
            self.tasks = [self._task(source) for source in self.sources]
            self.valid_batches = self._fixed_validation_batches()
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self._resume()

    # --- data -------------------------------------------------------------------------------

    def _place_cache(self, tracks: np.ndarray) -> ResidentCache | None:
        """The training ``tracks`` of the cache on the device when wanted and they fit (else None: host crops)."""
        on_device = self.config.data_on_device
        if on_device is None:
            on_device = self.device.type != "cpu"
        resident = on_device and resident_cache(self.data.cache, tracks, self.device, self.config.cache_dtype,
                                                self.config.device_memory_share)
        if resident:
            flat = resident.tensors.flat
            self.log(f"{self.config.name}: crops cut on {self.device} from the process's mel cache there "
                     f"({len(resident.tracks)} tracks, {str(flat.dtype).removeprefix('torch.')}, "
                     f"{resident.nbytes / 2**30:.1f} GiB)")
            return resident
        if on_device:
            self.log(f"{self.config.name}: crops cut in host memory (the mel cache's training tracks do not fit "
                     f"this process's share of {self.device}'s memory)")
        return None

    def _task(self, source: str) -> _Task:
        task = self.data.tasks[source]
        pool = task.train
        room = self.data.cache.n_frames[pool] - SLICE_FRAMES + 1
        if len(pool) == 0 or room.min() < 1:
            raise ValueError(f"The {source} task needs training tracks of at least {SLICE_FRAMES} frames.")
        batch = min(self.config.batch_size, len(pool))
        if source == "self":
            batch -= batch % 2
            if batch < 4:
                raise ValueError("The self task needs at least 4 distinct tracks per batch.")
        rows = pool if self.resident is None else self.resident.rows(pool)
        return _Task(source, pool, room, rows, task.targets, batch, self.iterations_per_epoch, self.device,
                     bool(self.augmentation))

    def _fixed_validation_batches(self) -> dict[str, list[tuple[torch.Tensor, ...]]]:
        """Validation crops cut once (own seed), so every epoch is scored on the same inputs.

        Each batch is ``(x, x_right, z)``: float16 dB crops on the device, the right
        crops of self pairs (else None), and the targets (self: same-track labels).
        """
        rng = np.random.default_rng([self.config.seed, 1])
        cache, size = self.data.cache, self.config.batch_size
        batches = {}
        for source in self.sources:
            task = self.data.tasks[source]
            tracks = task.valid[rng.permutation(len(task.valid))[: self.config.valid_tracks]]
            batches[source] = []
            for chunk in (tracks[i:i + size] for i in range(0, len(tracks), size)):
                if source != "self":
                    x = cache.crops(chunk, cache.random_starts(chunk, rng))
                    batches[source].append((self._on_device(x), None, self._on_device(task.targets[chunk])))
                elif len(chunk) >= 4:
                    left = chunk[: len(chunk) // 2 * 2]
                    right = _pair_with_others(left)
                    x = cache.crops(left, cache.random_starts(left, rng))
                    x_right = cache.crops(right, cache.random_starts(right, rng))
                    same = np.repeat([1, 0], len(left) // 2)
                    batches[source].append((self._on_device(x), self._on_device(x_right), self._on_device(same)))
        return batches

    def _on_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        return tensor.to(self.device, torch.float16 if tensor.dtype == torch.float32 and tensor.dim() == 4 else None)

    def _standardize(self, db: torch.Tensor) -> torch.Tensor:
        x = self.scaler(db.float())
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _input(self, task: _Task, step: dict[str, torch.Tensor], side: str = "") -> torch.Tensor:
        """Standardized crops of this step (``side`` ``"right_"``: the right crops of self pairs)."""
        if self.resident is not None:
            db = self.resident.crops(task.rows.index_select(0, step[side + "tracks"]), step[side + "starts"])
        else:
            plan, i = task.host_plan, task.steps
            db = self.host_crops(task.pool[plan[side + "tracks"][i]], plan[side + "starts"][i])
        if self.augmentation:
            db = self.augmentation.apply(db.float(), step[side + "augment"])
        return self._standardize(db)

    # --- loss and step ----------------------------------------------------------------------

    def _loss(self, source: str, x: torch.Tensor, x_right: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        """The task's loss: KL divergence to the targets ``z``, or for self pairs cross-entropy to the labels ``z``."""
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp, cache_enabled=False):
            if source == "self":
                return F.cross_entropy(self.network(x, "self", x_right).float(), z)
            return F.kl_div(F.log_softmax(self.network(x, source).float(), dim=1), z, reduction="batchmean")

    def _train_step(self, task: _Task) -> None:
        """One iteration of Algorithm 1 on ``task``, its choices read from the epoch's plan on the device.

        Nothing here waits for the device or copies from the host (with the cache
        on the device), so it can be captured as a CUDA graph.
        """
        step = {key: plan.index_select(0, task.counter.view(1))[0] for key, plan in task.plan.items()}
        right = self._input(task, step, "right_") if task.pairs else None
        z = task.labels if task.pairs else task.targets.index_select(0, step["tracks"])
        loss = self._loss(task.name, self._input(task, step), right, z)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        task.loss_sum += loss.detach()
        task.counter += 1

    def _step(self, task: _Task) -> None:
        """:meth:`_train_step`, eager for a task's first steps, then captured once and replayed as a CUDA graph."""
        if self.capture and task.graph is None and task.eager_steps >= GRAPH_WARMUP_STEPS:
            task.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(task.graph, pool=self._graph_pool, stream=self.stream):
                self._train_step(task)
        if task.graph is not None:
            task.graph.replay()
        else:
            self._train_step(task)
            task.eager_steps += 1
        task.steps += 1

    def _adam_flags(self) -> dict[str, Any]:
        """Fused Adam on CUDA (capturable when its steps are CUDA graphs); PyTorch's default elsewhere."""
        if self.device.type == "cuda":
            return {"fused": True, "foreach": None, "capturable": self.capture}
        return {"fused": None, "foreach": None, "capturable": False}

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """This run's GPU, CUDA stream and dropout random state, for work of the run (re-entrant)."""
        if self._in_turn:
            yield
            return
        self._in_turn = True
        try:
            with contextlib.ExitStack() as stack:
                if self.stream is not None:
                    stack.enter_context(torch.cuda.device(self.device))
                    stack.enter_context(torch.cuda.stream(self.stream))
                stack.enter_context(self._dropout.active())
                yield
        finally:
            self._in_turn = False

    # --- the loop ---------------------------------------------------------------------------

    def train(self, max_minutes: float | None = None) -> list[dict[str, Any]]:
        """Run the remaining epochs; returns the history (one dict per epoch).

        With ``max_minutes``, stop after the first epoch that ends past that much time
        (a checkpoint is written after every epoch: train again to continue).
        """
        for _ in self._steps(_deadline(max_minutes)):
            pass
        return self.history

    def _steps(self, deadline: float | None) -> Iterator[None]:
        """The remaining epochs, pausing after every step (see :func:`train_together`)."""
        while self.epoch < self.config.epochs:
            if deadline is not None and time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            with self._turn():
                order = self._begin_epoch()
            for k in order:
                with self._turn():
                    self._step(self.tasks[k])
                yield
            with self._turn():
                self._end_epoch(started)
        with atomic_path(self.run_dir / "done") as tmp:
            tmp.write_text(json.dumps(self.history[-1]) if self.history else "{}")

    def _begin_epoch(self) -> list[int]:
        """Draw the epoch's choices (:func:`draw_epoch`), upload them; returns the task of each iteration."""
        self.network.train()
        rng = np.random.default_rng([self.config.seed, 2, self.epoch])
        order, plans = draw_epoch([t.room for t in self.tasks], [t.batch for t in self.tasks],
                                  [t.pairs for t in self.tasks], self.iterations_per_epoch, rng)
        if self.augmentation:
            changes = np.random.default_rng([self.config.seed, 3, self.epoch])
            for task, plan in zip(self.tasks, plans):
                for side in ("", "right_") if task.pairs else ("",):
                    plan[side + "augment"] = self.augmentation.draw(changes, plan["tracks"].shape, task.name)
        for task, plan in zip(self.tasks, plans):
            task.host_plan = plan
            for key, array in plan.items():
                rows = torch.from_numpy(array)
                if self.device.type == "cuda":
                    rows = rows.pin_memory()
                task.plan[key][:len(array)].copy_(rows, non_blocking=True)
            task.counter.zero_()
            task.loss_sum.zero_()
            task.steps = 0
        return order.tolist()

    def _end_epoch(self, started: float) -> None:
        sums = torch.stack([task.loss_sum for task in self.tasks]).tolist()   # the epoch's one wait for the device
        seconds = time.perf_counter() - started
        samples = sum(task.steps * task.batch * (2 if task.pairs else 1) for task in self.tasks)
        self.epoch += 1
        record = {
            "epoch": self.epoch,
            "train_loss": {t.name: total / t.steps if t.steps else None for t, total in zip(self.tasks, sums)},
            "valid_loss": self.validate(),
            "iterations": self.iterations_per_epoch,
            "samples_per_second": samples / seconds,
            "seconds": seconds,
        }
        self.history.append(record)
        self._checkpoint()
        self.log(f"{self.config.name} epoch {self.epoch}/{self.config.epochs} "
                 f"train {_fmt(record['train_loss'])} valid {_fmt(record['valid_loss'])} "
                 f"{record['samples_per_second']:.0f} samples/s")

    @torch.no_grad()
    def validate(self) -> dict[str, float | None]:
        """Mean loss of each task on its fixed validation crops (eval mode)."""
        with self._turn():
            self.network.eval()
            totals, counts = [], []
            for source, batches in self.valid_batches.items():
                total = torch.zeros((), device=self.device)
                for x, x_right, z in batches:
                    right = None if x_right is None else self._standardize(x_right)
                    total += self._loss(source, self._standardize(x), right, z) * len(x)
                totals.append(total)
                counts.append(sum(len(x) for x, _, _ in batches))
            values = torch.stack(totals).tolist()
        return {source: value / count if count else None
                for source, value, count in zip(self.valid_batches, values, counts)}

    # --- checkpoints ------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def _checkpoint(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "config": asdict(self.config),
            "epoch": self.epoch,
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "dropout_rng": self._dropout.get_state(),
            "history": self.history,
        }
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)
        with atomic_path(self.run_dir / "history.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history))

    def _resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        saved = {k: v for k, v in asdict(TrainConfig(**state["config"])).items() if k not in _RESUMABLE_CHANGES}
        current = {k: v for k, v in asdict(self.config).items() if k not in _RESUMABLE_CHANGES}
        # The default epoch length and the same length given explicitly are the same training.
        saved["iterations_per_epoch"] = saved["iterations_per_epoch"] or state["history"][-1]["iterations"]
        current["iterations_per_epoch"] = self.iterations_per_epoch
        if saved != current:
            raise ValueError(f"{self.checkpoint_path} belongs to another configuration; "
                             "use another run folder or delete it.")
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:   # this device's Adam, whatever the checkpoint's was
            group.update(self._adam_flags())
        if "dropout_rng" in state:
            self._dropout.set_state(state["dropout_rng"])
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.log(f"{self.config.name}: resumed after epoch {self.epoch}")

    def export(self, path: str | os.PathLike, info: dict[str, Any] | None = None, overwrite: bool = False,
               name: str | None = None) -> Path:
        """Write the trained network as an mtlmusic model file (heads kept, config and history in ``info``),
        named ``name`` (default the run's)."""
        recipe = {"training": asdict(self.config), "epochs_trained": self.epoch, "device": str(self.device),
                  "train_seconds": sum(record["seconds"] for record in self.history),
                  "final": self.history[-1] if self.history else None}
        self.optimizer.zero_grad(set_to_none=True)
        network = copy.deepcopy(self.network).cpu().eval()
        return save_model_file(path, network, self.data.scaler.to("cpu"), name=name or self.config.name,
                               info={**recipe, **(info or {})}, overwrite=overwrite)


def train_together(trainers: Sequence[Trainer], max_minutes: float | None = None,
                   on_error: Callable[[int, Exception], None] | None = None) -> list[list[dict[str, Any]]]:
    """Train several runs at once in this process: one step of each in turn, each on its own CUDA stream.

    The runs share the process's mel cache on the device (:func:`resident_cache`);
    on a GPU, their steps (CUDA graphs) run concurrently. Each run ends, resumes and
    is checkpointed as with :meth:`Trainer.train`, and learns exactly what it would
    learn alone. ``max_minutes`` applies to every run. With ``on_error``, a run that
    raises is reported as ``on_error(index, error)`` and dropped while the others go
    on; without it, the error ends them all.

    Returns
    -------
    list of list of dict
        The history of each run.
    """
    deadline = _deadline(max_minutes)
    running = dict(enumerate(trainer._steps(deadline) for trainer in trainers))
    while running:
        for index, steps in list(running.items()):
            try:
                next(steps)
            except StopIteration:
                del running[index]
            except Exception as err:
                if on_error is None:
                    raise
                del running[index]
                on_error(index, err)
    return [trainer.history for trainer in trainers]


def _deadline(max_minutes: float | None) -> float | None:
    return None if max_minutes is None else time.perf_counter() + 60.0 * max_minutes


def _fmt(losses: dict[str, float | None]) -> str:
    return " ".join(f"{s}={v:.3f}" for s, v in losses.items() if v is not None)
