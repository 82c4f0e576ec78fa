"""The study's grid of 90 networks: run a range of it, skip what is finished, resume what was interrupted, export.

Each run trains in ``RUNS/<name>/`` (checkpoint, history, ``done`` marker) and is
exported to ``RUNS/models/<name>.safetensors`` when it finishes. Several runs can
share one device (``parallel``): each of ``parallel`` processes takes every
``parallel``-th run, which keeps a large GPU busy with the study's small networks.

Examples
--------
>>> from mtlmusic_training.grid import parse_range
>>> parse_range("1-3,7", 90)
[1, 2, 3, 7]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .design import Run, design_runs
from .melcache import MelCache
from .trainer import Trainer, TrainConfig, load_training_data


def parse_range(spec: str | None, n: int) -> list[int]:
    """Run ids from ``'1-10,15'`` (1-based, inclusive); all of ``1..n`` when ``spec`` is empty."""
    if not spec:
        return list(range(1, n + 1))
    ids: list[int] = []
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        lo, hi = int(first), int(last or first)
        if not 1 <= lo <= hi <= n:
            raise ValueError(f"Run range {part!r} is outside 1-{n}.")
        ids.extend(range(lo, hi + 1))
    return sorted(set(ids))


def run_status(runs_dir: str | os.PathLike, runs: list[Run] | None = None) -> list[tuple[Run, str]]:
    """``(run, status)`` for each run: ``done``, ``started`` (a checkpoint exists) or ``pending``."""
    runs_dir = Path(runs_dir)
    status = []
    for run in runs or design_runs():
        folder = runs_dir / run.name
        state = "done" if (folder / "done").exists() else "started" if (folder / "checkpoint.pt").exists() else "pending"
        status.append((run, state))
    return status


def run_grid(data_dir: str | os.PathLike, runs_dir: str | os.PathLike, run_ids: list[int],
             epochs: int = 100, device: str = "auto", seed: int = 0, parallel: int = 1, log=print) -> None:
    """Train the runs ``run_ids`` of :func:`~mtlmusic_training.design.design_runs` (see module docs)."""
    if parallel > 1:
        _run_in_processes(data_dir, runs_dir, run_ids, epochs, device, seed, parallel)
        return
    runs = {run.id: run for run in design_runs()}
    runs_dir = Path(runs_dir)
    cache = MelCache.open(Path(data_dir) / "cache")
    for run_id in run_ids:
        run = runs[run_id]
        folder = runs_dir / run.name
        model_path = runs_dir / "models" / f"{run.name}.safetensors"
        if (folder / "done").exists() and model_path.exists():
            log(f"run {run.id} {run.name}: done, skipped")
            continue
        data = load_training_data(data_dir, list(run.sources), cache=cache)
        config = TrainConfig(run.architecture, list(run.sources), epochs=epochs, device=device, seed=seed)
        trainer = Trainer(config, data, folder, log=log)
        trainer.train()
        trainer.export(model_path, info={"design_run": run.id, "role": run.role}, overwrite=True)
        log(f"run {run.id} {run.name}: exported to {model_path}")


def _run_in_processes(data_dir, runs_dir, run_ids, epochs, device, seed, parallel) -> None:
    processes = []
    for k in range(parallel):
        share = run_ids[k::parallel]
        if not share:
            continue
        command = [sys.executable, "-m", "mtlmusic_training.cli", "grid", str(data_dir), str(runs_dir),
                   "--runs", ",".join(map(str, share)), "--epochs", str(epochs), "--device", device,
                   "--seed", str(seed)]
        processes.append(subprocess.Popen(command))
    failed = [p.args for p in processes if p.wait() != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(processes)} grid processes failed; rerun to resume them.")
