"""Training throughput per architecture on the device at hand, and the projected cost of the 90-network grid.

For each architecture, the trainer (Algorithm 1, batch 48, all eight sources) runs
on a synthetic mel cache; samples/s are measured after a warm-up epoch, for the
optimised path (on CUDA: cache on the GPU, bf16 autocast, channels-last) and, in
the same run, for a reference (fp32, crops cut on the CPU, default layout).
The projection applies the paper's schedule (41,841 training tracks, batch 48,
L = l x m iterations per epoch, 100 epochs) to the runs of the design.

Usage::

    python benchmarks/train_throughput.py [--device cuda] [--iterations 30] [--tracks 96]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mtlmusic.architectures import SOURCES
from mtlmusic_training.design import design_runs
from mtlmusic_training.melcache import build_mel_cache, fit_scaler
from mtlmusic_training.trainer import TaskData, Trainer, TrainConfig, TrainingData

PAPER_TRAIN_TRACKS = 41_841
PAPER_EPOCHS = 100
ARCHITECTURES = ("SS-R", "MS-CR@2", "MS-CR@4", "MS-CR@6", "MS-SR@FC")


def synthetic_data(folder: Path, n_tracks: int) -> TrainingData:
    rng = np.random.default_rng(0)
    items = []
    for i in range(n_tracks):
        path = folder / f"t{i:03d}.flac"
        sf.write(path, (0.1 * rng.standard_normal((22050 * 6, 2))).astype(np.float32), 22050)
        items.append((f"t{i:03d}", str(path)))
    cache = build_mel_cache(items, folder / "cache", workers=0)
    tracks = np.arange(n_tracks)
    tasks = {s: TaskData(tracks, tracks[:8], None if s == "self" else rng.dirichlet(np.ones(50), n_tracks))
             for s in SOURCES}
    return TrainingData(cache, fit_scaler(cache), tasks)


def samples_per_second(data: TrainingData, architecture: str, device: str, iterations: int,
                       optimised: bool, folder: Path) -> float:
    sources = ["tag"] if architecture == "SS-R" else list(SOURCES)
    config = TrainConfig(architecture, sources, epochs=2, iterations_per_epoch=iterations, device=device,
                         valid_tracks=8, amp=optimised, data_on_device=optimised, channels_last=optimised)
    run_dir = Path(tempfile.mkdtemp(dir=folder))
    trainer = Trainer(config, data, run_dir, log=lambda _: None)
    history = trainer.train()
    return history[-1]["samples_per_second"]


def projected_hours(rate_by_architecture: dict[str, float]) -> float:
    """Hours for the 90 networks at the paper's schedule, one network at a time."""
    batches = math.ceil(PAPER_TRAIN_TRACKS / 48)
    seconds = 0.0
    for run in design_runs():
        m = len(run.sources)
        samples = batches * m * PAPER_EPOCHS * 48 * (1 + 1 / max(m, 1) * ("self" in run.sources))
        seconds += samples / rate_by_architecture[run.architecture]
    return seconds / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iterations", type=int, default=30, help="iterations per timed epoch")
    parser.add_argument("--tracks", type=int, default=96, help="tracks of the synthetic cache")
    args = parser.parse_args()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = synthetic_data(folder, args.tracks)
        rates = {}
        print(f"{'architecture':12s} {'samples/s':>10s} {'reference':>10s} {'ratio':>6s}")
        for architecture in ARCHITECTURES:
            ours = samples_per_second(data, architecture, args.device, args.iterations, True, folder)
            reference = samples_per_second(data, architecture, args.device, args.iterations, False, folder)
            rates[architecture] = ours
            print(f"{architecture:12s} {ours:10.1f} {reference:10.1f} {ours / reference:6.2f}")
    if not args.device.startswith("cuda"):
        print("(on the CPU both paths run the same code: the ratio only measures noise; run on CUDA to compare)")
    hours = projected_hours(rates)
    print(f"projected grid (90 networks, paper schedule, one at a time): {hours:.1f} device-hours")


if __name__ == "__main__":
    main()
