"""Multi-task training, the study's Algorithm 1, readable top to bottom.

Every iteration picks one learning source uniformly at random, draws a batch of
48 training tracks that have that source's target, crops 2.5 s at random from
each (from the mel cache), and takes one Adam step on that task's loss:

* a source with a target distribution ``z``: ``KL(z || softmax(f(X)))``, summed
  over classes and averaged over the batch;
* ``self``: cross-entropy of the siamese head on pairs of crops, exactly half of
  them from the same track.

An epoch is ``L = l x m`` iterations (``l`` batches to visit every training track
once, ``m`` sources). After each epoch the per-task validation loss is computed
on fixed validation crops and a checkpoint is written (weights, optimizer, every
random state, position), so that a run resumed after a crash ends with the same
weights as a run that never stopped (bit-exact on CPU).

On CUDA the whole cache can live on the GPU and crops are cut there; the forward
pass runs under bf16 autocast in channels-last layout.

Examples
--------
>>> # data = TrainingData(cache, scaler, {"bpm": TaskData(train_idx, valid_idx, z), "self": ...})
>>> # trainer = Trainer(TrainConfig("MS-CR@2", ["self", "bpm"], epochs=10), data, "runs/mscr2-self-bpm")
>>> # trainer.train(); trainer.export("mscr2-self-bpm.safetensors")
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mtlmusic.architectures import build_network, model_name
from mtlmusic.frontend import N_MELS, SLICE_FRAMES, Scaler
from mtlmusic.files import atomic_path
from mtlmusic.modelfile import save_model_file

from .datasets import Manifest
from .melcache import MelCache, gpu_crops, load_scaler
from .targets import load_targets, targets_path


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
    data_on_device: bool = True      # on CUDA, keep the whole mel cache on the GPU when it fits
    device_memory_share: float = 1.0  # share of the GPU's free memory this run may use (runs sharing a GPU: less)
    amp: bool = True                 # bf16 autocast on CUDA
    channels_last: bool = True       # channels-last layout on CUDA
    head_sizes: dict[str, int] = field(default_factory=dict)

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


#: Part of a run's share of free GPU memory that the mel cache may take; the rest is for training itself.
CACHE_MEMORY_FRACTION = 0.5


def cache_fits(cache_bytes: int, free_bytes: int, share: float = 1.0) -> bool:
    """Whether a mel cache of ``cache_bytes`` may be kept on a GPU with ``free_bytes`` free by a run entitled to
    ``share`` of it (see :data:`CACHE_MEMORY_FRACTION`).

    >>> cache_fits(10 << 30, 80 << 30), cache_fits(10 << 30, 80 << 30, share=0.25), cache_fits(50 << 30, 80 << 30)
    (True, True, False)
    """
    return cache_bytes <= CACHE_MEMORY_FRACTION * share * free_bytes


def cache_fits_on_device(cache: MelCache, device: torch.device, share: float) -> bool:
    """:func:`cache_fits` for ``cache`` (float16 frames) on the CUDA ``device``, with its free memory now."""
    free_bytes, _ = torch.cuda.mem_get_info(device)
    return cache_fits(int(cache.n_frames.sum()) * 2 * N_MELS * 2, free_bytes, share)


class _Crops:
    """Random crops of the cache as standardized ``(n, 2, 216, 128)`` tensors on the training device."""

    def __init__(self, cache: MelCache, scaler: Scaler, device: torch.device, on_device: bool):
        self.cache = cache
        self.device = device
        self.scaler = scaler.to(device)
        self.flat = None
        if on_device:
            self.flat, self.offsets, _ = cache.to_tensor(device)

    def random_starts(self, tracks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.cache.random_starts(tracks, rng)

    def __call__(self, tracks: np.ndarray, starts: np.ndarray) -> torch.Tensor:
        if self.flat is not None:
            index = torch.as_tensor(tracks, device=self.device)
            x = gpu_crops(self.flat, self.offsets[index], torch.as_tensor(starts, device=self.device), SLICE_FRAMES)
        else:
            x = torch.from_numpy(self.cache.crops(tracks, starts, SLICE_FRAMES)).to(self.device)
        return self.scaler(x.float())


#: Config fields that may change when a run is resumed: they do not change what is learned.
_RESUMABLE_CHANGES = ("epochs", "device", "data_on_device", "device_memory_share")


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
        torch.manual_seed(config.seed)
        head_sizes = {s: data.tasks[s].targets.shape[1] for s in config.sources if s != "self"}
        self.network = build_network(config.architecture, config.sources, head_sizes).to(self.device)
        self.channels_last = config.channels_last and self.device.type == "cuda"
        if self.channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.rng = np.random.default_rng(config.seed)
        on_device = config.data_on_device and self.device.type == "cuda" and cache_fits_on_device(
            data.cache, self.device, config.device_memory_share)
        self.crops = _Crops(data.cache, data.scaler, self.device, on_device)
        if self.device.type == "cuda":
            self.log(f"{config.name}: crops cut from the mel cache " + (
                "on the GPU" if on_device else "in host memory (it does not fit the GPU share of this run)"))
        self.sources = list(self.network.sources)
        train_tracks = np.unique(np.concatenate([data.tasks[s].train for s in self.sources]))
        self.iterations_per_epoch = config.iterations_per_epoch or (
            math.ceil(len(train_tracks) / config.batch_size) * len(self.sources))
        self.valid_batches = self._fixed_validation_batches()
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self._resume()

    # --- data -------------------------------------------------------------------------------

    def _fixed_validation_batches(self) -> dict[str, list[tuple[np.ndarray, ...]]]:
        """Validation crops drawn once (own seed), so every epoch is scored on the same inputs."""
        rng = np.random.default_rng([self.config.seed, 1])
        batches = {}
        for source in self.sources:
            tracks = self.data.tasks[source].valid
            tracks = tracks[rng.permutation(len(tracks))[: self.config.valid_tracks]]
            batches[source] = [self._batch_indices(source, tracks[i:i + self.config.batch_size], rng)
                               for i in range(0, len(tracks), self.config.batch_size)
                               if len(tracks[i:i + self.config.batch_size]) >= (4 if source == "self" else 1)]
        return batches

    def _batch_indices(self, source: str, tracks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Track indices and crop starts of one batch; for self, left/right pairs and same-track labels."""
        if source != "self":
            return tracks, self.crops.random_starts(tracks, rng)
        half = len(tracks) // 2
        left = tracks[: 2 * half]
        right = left.copy()
        # The second half is paired with a different track: a cyclic shift within that half.
        negatives = left[half:]
        right[half:] = np.roll(negatives, 1) if half > 1 else negatives
        same = np.r_[np.ones(half), np.zeros(half)].astype(np.int64)
        if half <= 1 or np.any(right[half:] == left[half:]):
            raise ValueError("The self task needs at least 4 distinct tracks per batch.")
        return left, self.crops.random_starts(left, rng), right, self.crops.random_starts(right, rng), same

    def _draw_batch(self, source: str) -> tuple[np.ndarray, ...]:
        pool = self.data.tasks[source].train
        size = min(self.config.batch_size, len(pool))
        tracks = pool[self.rng.choice(len(pool), size=size, replace=False)]
        return self._batch_indices(source, tracks, self.rng)

    # --- loss -------------------------------------------------------------------------------

    def _loss(self, source: str, batch: tuple[np.ndarray, ...]) -> torch.Tensor:
        amp = self.config.amp and self.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            if source == "self":
                left, left_starts, right, right_starts, same = batch
                logits = self.network(self._input(left, left_starts), "self", self._input(right, right_starts))
                return F.cross_entropy(logits.float(), torch.as_tensor(same, device=self.device))
            tracks, starts = batch
            logits = self.network(self._input(tracks, starts), source)
            z = torch.as_tensor(self.data.tasks[source].targets[tracks], device=self.device)
            return F.kl_div(F.log_softmax(logits.float(), dim=1), z, reduction="batchmean")

    def _input(self, tracks: np.ndarray, starts: np.ndarray) -> torch.Tensor:
        x = self.crops(tracks, starts)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # --- the loop ---------------------------------------------------------------------------

    def train(self, max_minutes: float | None = None) -> list[dict[str, Any]]:
        """Run the remaining epochs; returns the history (one dict per epoch).

        With ``max_minutes``, stop after the first epoch that ends past that much time
        (a checkpoint is written after every epoch: train again to continue).
        """
        deadline = None if max_minutes is None else time.perf_counter() + 60.0 * max_minutes
        while self.epoch < self.config.epochs:
            if deadline is not None and time.perf_counter() >= deadline:
                return self.history
            self.network.train()
            started = time.perf_counter()
            losses: dict[str, list[float]] = {s: [] for s in self.sources}
            samples = 0
            for _ in range(self.iterations_per_epoch):
                source = self.sources[self.rng.integers(len(self.sources))]
                batch = self._draw_batch(source)
                loss = self._loss(source, batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                losses[source].append(loss.item())
                samples += len(batch[0]) * (2 if source == "self" else 1)
            seconds = time.perf_counter() - started
            self.epoch += 1
            record = {
                "epoch": self.epoch,
                "train_loss": {s: float(np.mean(v)) if v else None for s, v in losses.items()},
                "valid_loss": self.validate(),
                "samples_per_second": samples / seconds,
                "seconds": seconds,
            }
            self.history.append(record)
            self._checkpoint()
            self.log(f"{self.config.name} epoch {self.epoch}/{self.config.epochs} "
                     f"train {_fmt(record['train_loss'])} valid {_fmt(record['valid_loss'])} "
                     f"{record['samples_per_second']:.0f} samples/s")
        with atomic_path(self.run_dir / "done") as tmp:
            tmp.write_text(json.dumps(self.history[-1]) if self.history else "{}")
        return self.history

    @torch.no_grad()
    def validate(self) -> dict[str, float | None]:
        """Mean loss of each task on its fixed validation crops (eval mode)."""
        self.network.eval()
        scores = {}
        for source, batches in self.valid_batches.items():
            values = [self._loss(source, batch).item() * len(batch[0]) for batch in batches]
            count = sum(len(batch[0]) for batch in batches)
            scores[source] = sum(values) / count if count else None
        return scores

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
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
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
        saved = {k: v for k, v in state["config"].items() if k not in _RESUMABLE_CHANGES}
        current = {k: v for k, v in asdict(self.config).items() if k not in _RESUMABLE_CHANGES}
        if saved != current:
            raise ValueError(f"{self.checkpoint_path} belongs to another configuration; "
                             "use another run folder or delete it.")
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.log(f"{self.config.name}: resumed after epoch {self.epoch}")

    def export(self, path: str | os.PathLike, info: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
        """Write the trained network as an mtlmusic model file (heads kept, config and history in ``info``)."""
        recipe = {"training": asdict(self.config), "epochs_trained": self.epoch, "device": str(self.device),
                  "train_seconds": sum(record["seconds"] for record in self.history),
                  "final": self.history[-1] if self.history else None}
        network = copy.deepcopy(self.network).cpu().eval()
        return save_model_file(path, network, self.data.scaler.to("cpu"), name=self.config.name, info={**recipe, **(info or {})},
                               overwrite=overwrite)


def _fmt(losses: dict[str, float | None]) -> str:
    return " ".join(f"{s}={v:.3f}" for s, v in losses.items() if v is not None)
