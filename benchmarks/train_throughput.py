"""Training throughput per architecture at MSD scale, today's step against the trainer's, and the grid's cost.

The mel cache is synthetic and as large as the study's: 46,490 tracks of 30 s,
of which the 41,841 training tracks go to the device (generated there, in the
type the trainer picks), and every one of the eight sources trains on all of
them. For each architecture (all eight sources; SS-R: one), in the same run:

* ``today``: the step the trainer took before it drew an epoch's choices at
  once: Algorithm 1 drawn on the host step by step, crops cut in host memory
  (at MSD scale the cache did not fit half of a GPU's free memory), copied to
  the device, targets copied, ``loss.item()`` after every step, one run at a time;
* ``eager``: the trainer with its CUDA graphs off;
* ``graphs xk``: the trainer, k runs trained together on the device
  (:func:`~mtlmusic_training.trainer.train_together`), aggregate crops/s;
* ``augmented`` (with ``--augment``): the trainer, one run, its crops augmented
  (:mod:`mtlmusic_training.augment`): what the augmentation costs.

Rates are crops per second (a self step counts its pairs' two crops), measured
on the last of a few short epochs. The projection applies the paper's schedule
(41,841 training tracks, batch 48, L = l x m iterations per epoch, 100 epochs) to
the 90 runs of the design, adds each epoch's fixed cost (drawing a full epoch's
choices, validation on 512 tracks per task, the checkpoint), and compares today's
step, one run at a time, with the trainer's at its best k. On a CPU the trainer
trains without graphs and one run at a time; ``--repeats`` alternates today's and
the trainer's measurements (A/B/A/B) and reports medians.

Usage::

    python benchmarks/train_throughput.py                      # on the GPU, MSD scale
    python benchmarks/train_throughput.py --device cpu --tracks 300 --train-tracks 256 --seconds 10 \\
        --steps 8 --epochs 2 --repeats 3 --valid-tracks 0      # a small CPU comparison
    python benchmarks/train_throughput.py ... --augment gain_db=6,eq_db=6,pitch_bands=1,stretch=0.05
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mtlmusic.architectures import SOURCES, build_network
from mtlmusic.audio import SAMPLE_RATE
from mtlmusic.frontend import HOP_LENGTH, N_MELS, SLICE_FRAMES, Scaler
from mtlmusic_training.augment import Augmentation
from mtlmusic_training.design import design_runs
from mtlmusic_training.melcache import MelTensors
from mtlmusic_training.trainer import (TaskData, Trainer, TrainConfig, TrainingData, draw_epoch,
                                       release_resident_caches, train_together)

MSD_TRACKS = 46_490
PAPER_TRAIN_TRACKS = 41_841
PAPER_EPOCHS = 100
BATCH = 48
ARCHITECTURES = ("SS-R", "MS-CR@2", "MS-CR@4", "MS-CR@6", "MS-SR@FC")


class SyntheticCache:
    """A stand-in for :class:`~mtlmusic_training.melcache.MelCache`: random dB frames of equal-length tracks.

    :meth:`to_tensor` generates the frames on the device; :meth:`crops` cuts host
    crops, one slice each as the real cache does, from a pool of ``host_tracks``
    tracks (a crop costs the same whatever the cache's size).
    """

    def __init__(self, n_tracks: int, seconds: float, host_tracks: int = 256):
        frames = 1 + int(seconds * SAMPLE_RATE) // HOP_LENGTH
        self.root = f"synthetic-{n_tracks}x{seconds:g}s"
        self.n_frames = np.full(n_tracks, frames, dtype=np.int64)
        self.floors = np.full(n_tracks, -80.0, dtype=np.float32)
        self.host_tracks = min(host_tracks, n_tracks)
        rng = np.random.default_rng(0)
        self.host = (rng.random((self.host_tracks * frames, 2, N_MELS), dtype=np.float32) * 80 - 80).astype(np.float16)

    def __len__(self) -> int:
        return len(self.n_frames)

    def to_tensor(self, device, track_indices, dtype=torch.float16) -> MelTensors:
        tracks = np.asarray(track_indices, dtype=np.int64)
        lengths = self.n_frames[tracks]
        flat = torch.empty((int(lengths.sum()), 2, N_MELS), dtype=dtype, device=device)
        for part in flat.split(1 << 22):
            part.random_(0, 256) if dtype == torch.uint8 else part.uniform_(-80, 0)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return MelTensors(flat, torch.as_tensor(offsets, device=device), torch.as_tensor(lengths, device=device))

    def random_starts(self, tracks, rng, frames: int = SLICE_FRAMES) -> np.ndarray:
        return rng.integers(0, self.n_frames[tracks] - frames + 1)

    def crops(self, tracks, starts, frames: int = SLICE_FRAMES) -> np.ndarray:
        out = np.empty((len(tracks), 2, frames, N_MELS), dtype=np.float32)
        for i, (track, start) in enumerate(zip(np.asarray(tracks).tolist(), np.asarray(starts).tolist())):
            first = (track % self.host_tracks) * self.n_frames[0] + start
            out[i] = self.host[first:first + frames].transpose(1, 0, 2)
        return out


def synthetic_data(cache: SyntheticCache, train_tracks: int, valid_tracks: int) -> TrainingData:
    rng = np.random.default_rng(0)
    train = np.arange(train_tracks)
    tasks = {s: TaskData(train, train[:valid_tracks],
                         None if s == "self" else rng.dirichlet(np.ones(50), len(cache)).astype(np.float32))
             for s in SOURCES}
    scaler = Scaler(torch.full((N_MELS,), -40.0), torch.full((N_MELS,), 20.0))
    return TrainingData(cache, scaler, tasks)


def sources_of(architecture: str) -> list[str]:
    return ["tag"] if architecture == "SS-R" else list(SOURCES)


class TodayStep:
    """The trainer's step before the device-side epoch plan (see the module docs); call it for one step."""

    def __init__(self, data: TrainingData, architecture: str, device: torch.device):
        self.data, self.device = data, device
        self.cuda = device.type == "cuda"
        torch.manual_seed(0)
        self.network = build_network(architecture, sources_of(architecture)).to(device)
        if self.cuda:
            self.network = self.network.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=1e-4, weight_decay=1e-6)
        self.sources = list(self.network.sources)
        self.scaler = data.scaler.to(device)
        self.rng = np.random.default_rng(0)

    def __call__(self) -> int:
        """One step; returns its crops."""
        source = self.sources[self.rng.integers(len(self.sources))]
        pool = self.data.tasks[source].train
        tracks = pool[self.rng.choice(len(pool), size=min(BATCH, len(pool)), replace=False)]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            if source == "self":
                half = len(tracks) // 2
                left = tracks[:2 * half]
                right = left.copy()
                right[half:] = np.roll(left[half:], 1)
                same = torch.as_tensor(np.r_[np.ones(half), np.zeros(half)].astype(np.int64), device=self.device)
                logits = self.network(self._input(left), "self", self._input(right))
                loss = F.cross_entropy(logits.float(), same)
            else:
                logits = self.network(self._input(tracks), source)
                z = torch.as_tensor(self.data.tasks[source].targets[tracks], device=self.device)
                loss = F.kl_div(F.log_softmax(logits.float(), dim=1), z, reduction="batchmean")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        loss.item()
        return len(tracks) // 2 * 4 if source == "self" else len(tracks)

    def _input(self, tracks: np.ndarray) -> torch.Tensor:
        crops = self.data.cache.crops(tracks, self.data.cache.random_starts(tracks, self.rng))
        x = self.scaler(torch.from_numpy(crops).to(self.device).float())
        return x.contiguous(memory_format=torch.channels_last) if self.cuda else x


def today_rate(data: TrainingData, architecture: str, device: torch.device, steps: int) -> float:
    step = TodayStep(data, architecture, device)
    for _ in range(3):
        step()
    _sync(device)
    started, crops = time.perf_counter(), 0
    for _ in range(steps):
        crops += step()
    _sync(device)
    return crops / (time.perf_counter() - started)


def trainer_rate(data: TrainingData, architecture: str, device: torch.device, args, graphs: bool, k: int,
                 folder: Path, augment: dict | None = None) -> tuple[float, float | None]:
    """Aggregate crops/s of ``k`` runs trained together on the last epoch; with validation data, also the fixed
    cost of an epoch's end (validation, checkpoint) of the first run."""
    trainers = [Trainer(TrainConfig(architecture, sources_of(architecture), epochs=args.epochs - 1, seed=seed,
                                    iterations_per_epoch=args.steps, device=str(device), graphs=graphs,
                                    cache_dtype=args.cache_dtype, valid_tracks=args.valid_tracks,
                                    augment=augment or {}),
                        data, tempfile.mkdtemp(dir=folder), log=lambda _: None) for seed in range(k)]
    train_together(trainers)
    for trainer in trainers:
        trainer.config.epochs += 1
    started = time.perf_counter()
    train_together(trainers)
    wall = time.perf_counter() - started
    rate = sum(trainer.history[-1]["samples_per_second"] for trainer in trainers)
    epoch_end = wall - trainers[0].history[-1]["seconds"] if k == 1 and args.valid_tracks else None
    return rate, epoch_end


def plan_seconds(m: int) -> float:
    """Host time to draw a full epoch's choices for ``m`` tasks of the paper's training tracks (30 s each)."""
    iterations = math.ceil(PAPER_TRAIN_TRACKS / BATCH) * m
    rooms = [np.full(PAPER_TRAIN_TRACKS, 1 + int(30 * SAMPLE_RATE) // HOP_LENGTH - SLICE_FRAMES + 1)] * m
    started = time.perf_counter()
    draw_epoch(rooms, [BATCH] * m, [i == 0 for i in range(m)], iterations, np.random.default_rng(0))
    return time.perf_counter() - started


def projected_hours(rates: dict[str, float], epoch_seconds: float) -> float:
    """Hours for the 90 networks at the paper's schedule, at the given crops/s per architecture, plus a fixed
    cost per epoch."""
    batches = math.ceil(PAPER_TRAIN_TRACKS / BATCH)
    seconds = 0.0
    for run in design_runs():
        crops = batches * BATCH * (len(run.sources) + ("self" in run.sources)) * PAPER_EPOCHS
        seconds += crops / rates[run.architecture] + PAPER_EPOCHS * epoch_seconds
    return seconds / 3600


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tracks", type=int, default=MSD_TRACKS, help="tracks of the synthetic cache")
    parser.add_argument("--train-tracks", type=int, default=PAPER_TRAIN_TRACKS, help="training tracks among them")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of every track")
    parser.add_argument("--steps", type=int, default=120, help="steps per timed epoch (and per today's timing)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement; the last is timed")
    parser.add_argument("--concurrent", default="1,2,4", help="numbers of runs trained together on a GPU")
    parser.add_argument("--cache-dtype", default="auto", choices=["auto", "float16", "uint8"])
    parser.add_argument("--valid-tracks", type=int, default=512, help="validation tracks per task (0: no epoch cost)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating repetitions of every measurement")
    parser.add_argument("--architectures", default=",".join(ARCHITECTURES))
    parser.add_argument("--augment", default="", help="also time one run with these crop augmentations")
    args = parser.parse_args()
    augment = Augmentation.parse(args.augment).as_dict()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    architectures = args.architectures.split(",")
    ks = [int(k) for k in args.concurrent.split(",")] if cuda else [1]
    paths = ["today", "eager"] + [f"graphs x{k}" for k in ks] if cuda else ["today", "trainer"]
    paths += ["augmented"] if augment else []
    print(f"device: {name}; synthetic cache: {args.tracks} tracks x {args.seconds:g} s, "
          f"{args.train_tracks} training tracks")
    data = synthetic_data(SyntheticCache(args.tracks, args.seconds), args.train_tracks, args.valid_tracks)
    rates = {path: {a: [] for a in architectures} for path in paths}
    epoch_ends = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for architecture in architectures:
                rates["today"][architecture].append(today_rate(data, architecture, device, args.steps))
                for path in paths[1:]:
                    k = int(path.split("x")[1]) if path.startswith("graphs") else 1
                    try:
                        rate, epoch_end = trainer_rate(data, architecture, device, args, path != "eager" and cuda,
                                                       k, Path(tmp), augment if path == "augmented" else None)
                    except torch.cuda.OutOfMemoryError:
                        rate, epoch_end = float("nan"), None
                        torch.cuda.empty_cache()
                    rates[path][architecture].append(rate)
                    if epoch_end is not None and path != "augmented":
                        epoch_ends.append(epoch_end)
        release_resident_caches()
    median = {path: {a: statistics.median(v) for a, v in by_arch.items()} for path, by_arch in rates.items()}
    print(f"\ncrops/s (median of {args.repeats})")
    print(f"{'architecture':12s}" + "".join(f"{path:>12s}" for path in paths) + f"{'ratio':>8s}")
    best = {}
    for architecture in architectures:
        row = {path: median[path][architecture] for path in paths}
        best[architecture] = max((v for p, v in row.items() if p not in ("today", "augmented") and not math.isnan(v)),
                                 default=math.nan)
        print(f"{architecture:12s}" + "".join(f"{row[p]:12.1f}" for p in paths)
              + f"{best[architecture] / row['today']:8.2f}")
    if augment:
        plain = "graphs x1" if cuda else "trainer"
        print(f"augmented / {plain} (the cost of {args.augment}): "
              + ", ".join(f"{a} {median['augmented'][a] / median[plain][a]:.3f}" for a in architectures))
    if set(architectures) != set(ARCHITECTURES):
        return
    plan = plan_seconds(len(SOURCES))
    epoch_end = statistics.median(epoch_ends) if epoch_ends else 0.0
    print(f"\nfixed cost per epoch: drawing a full epoch's choices {plan * 1e3:.0f} ms (8 tasks, host), "
          f"validation and checkpoint {epoch_end * 1e3:.0f} ms")
    today = projected_hours(median["today"], epoch_end)
    ours = projected_hours(best, epoch_end + plan)
    unit = "GPU-hours" if cuda else "CPU-hours"
    print(f"projected grid (90 networks, {PAPER_TRAIN_TRACKS} training tracks, {PAPER_EPOCHS} epochs): "
          f"today's step, one run at a time: {today:.1f} {unit}; the trainer, best of {paths[1:]}: "
          f"{ours:.1f} {unit}; ratio {today / ours:.1f}")


if __name__ == "__main__":
    main()
