"""The study's grid of 90 networks: run a range of it, skip what is finished, resume what was interrupted, export.

Each run trains in ``RUNS/<name>/`` (checkpoint, history, ``train.log``,
``state.json``, ``done`` marker) and is exported to
``RUNS/models/<name>.safetensors`` when it finishes. A run that fails is
recorded as failed (the error is in its log) and the grid goes on with the
others. Three engines:

* ``local``: one run after the other in this process;
* ``parallel=N``: N processes on this machine, each taking every N-th run,
  spread over every visible GPU (:func:`parallel_devices`; keeps large GPUs
  busy with the study's small networks);
* ``ray``: each run is a Ray task asking for ``gpus_per_run`` GPUs (a fraction
  lets several runs share one GPU); a task whose worker dies is retried and
  resumes from the run's last checkpoint. ``RUNS`` and the data folder must be
  on a file system that every node sees.

:func:`run_status` lists every run as done, running, failed, interrupted or
pending at any time, from the run folders alone.

A runs folder holds the grid of one design: ``RUNS/design.json`` records the
names of its eight sources (:func:`~mtlmusic_training.design.grid_sources`;
the paper's by default, others with ``sources``), and a grid asked for other
names there is refused.

Examples
--------
>>> from mtlmusic_training.grid import parse_range
>>> parse_range("1-3,7", 90)
[1, 2, 3, 7]
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mtlmusic.files import atomic_path

from .design import Run, design_runs, grid_sources
from .melcache import MelCache
from .trainer import Trainer, TrainConfig, load_training_data, train_together


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


@dataclass
class RunStatus:
    """Where one run stands: ``state`` is done, running, failed, interrupted or pending."""

    run: Run
    state: str
    epochs_done: int = 0
    host: str = ""
    updated: float | None = None   # time of the run's last log line (seconds since the epoch)
    last_line: str = ""            # the last line of its train.log


def run_status(runs_dir: str | os.PathLike, runs: list[Run] | None = None) -> list[RunStatus]:
    """The status of each run (default: of the folder's design) of the grid, read from ``RUNS/<name>/``."""
    runs_dir = Path(runs_dir)
    statuses = []
    for run in runs or design_runs(grid_sources(runs_dir)):
        folder = runs_dir / run.name
        state = _read_state(folder)
        history = folder / "history.jsonl"
        epochs = len(history.read_text().splitlines()) if history.exists() else 0
        if (folder / "done").exists() and (runs_dir / "models" / f"{run.name}.safetensors").exists():
            name = "done"
        elif state.get("state") == "failed" or (state.get("state") == "running" and _may_be_alive(state)):
            name = state["state"]
        elif (folder / "checkpoint.pt").exists():
            name = "interrupted"
        else:
            name = "pending"
        statuses.append(RunStatus(run, name, epochs, state.get("host", ""), state.get("updated"),
                                  _last_log_line(folder / "train.log")))
    return statuses


def _last_log_line(log: Path) -> str:
    """The last line written by :class:`_RunRecorder` (tracebacks skipped), without its time stamp."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []
    for line in reversed(lines):
        if len(line) > 20 and line[:4].isdigit() and line[10] == " " and line[19] == " ":
            return line[20:]
    return ""


def _may_be_alive(state: dict) -> bool:
    """False when the process that wrote ``state`` ran on this host and is gone; True otherwise."""
    if state.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(state.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        pass
    return True


def _read_state(folder: Path) -> dict:
    try:
        return json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        return {}


class _RunRecorder:
    """Keeps a run's ``state.json`` and ``train.log`` up to date, and echoes log lines to ``echo``."""

    def __init__(self, folder: Path, echo):
        self.folder = folder
        self.echo = echo
        folder.mkdir(parents=True, exist_ok=True)
        self.state = {"state": "running", "host": socket.gethostname(), "pid": os.getpid(),
                      "started": time.time(), "updated": time.time()}
        self._save()

    def log(self, line: str) -> None:
        with open(self.folder / "train.log", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        self.state["updated"] = time.time()
        self._save()
        self.echo(line)

    def finish(self, state: str, error: str | None = None) -> None:
        self.state.update(state=state, updated=time.time(), error=error)
        self._save()

    def _save(self) -> None:
        with atomic_path(self.folder / "state.json") as tmp:
            tmp.write_text(json.dumps(self.state))


class _GridRun:
    """One run of the grid in ``RUNS/<name>/``: its trainer, its records, its export (see :func:`train_run`)."""

    def __init__(self, runs_dir: Path, run: Run, log):
        self.run = run
        self.folder = runs_dir / run.name
        self.model_path = runs_dir / "models" / f"{run.name}.safetensors"
        self.log = log
        self.recorder: _RunRecorder | None = None

    @property
    def finished(self) -> bool:
        return (self.folder / "done").exists() and self.model_path.exists()

    def start(self, data_dir, epochs: int, device: str, seed: int, cache: MelCache | None, config: dict) -> Trainer:
        """The run's trainer, resumed from its checkpoint if it has one."""
        self.recorder = _RunRecorder(self.folder, self.log)
        try:
            data = load_training_data(data_dir, list(self.run.sources), cache=cache)
            train_config = TrainConfig(self.run.architecture, list(self.run.sources), epochs=epochs, device=device,
                                       seed=seed, **config)
            return Trainer(train_config, data, self.folder, log=self.recorder.log)
        except Exception as err:
            self.fail(err)
            raise

    def finish(self, trainer: Trainer) -> Path:
        """Export the trained run and mark it done."""
        try:
            trainer.export(self.model_path, info={"design_run": self.run.id, "role": self.run.role}, overwrite=True)
        except Exception as err:
            self.fail(err)
            raise
        self.recorder.log(f"run {self.run.id} {self.run.name}: exported to {self.model_path}")
        self.recorder.finish("done")
        return self.model_path

    def fail(self, err: BaseException) -> None:
        """Record a failure (with its traceback) or an interruption."""
        if isinstance(err, KeyboardInterrupt):
            self.recorder.finish("interrupted")
            return
        self.recorder.log(f"run {self.run.id} {self.run.name}: failed: {type(err).__name__}: {err}")
        with open(self.folder / "train.log", "a", encoding="utf-8") as f:
            f.write("".join(traceback.format_exception(err)))
        self.recorder.finish("failed", f"{type(err).__name__}: {err}")


def train_run(data_dir: str | os.PathLike, runs_dir: str | os.PathLike, run: Run, epochs: int = 100,
              device: str = "auto", seed: int = 0, log=print, cache: MelCache | None = None,
              **config) -> Path:
    """Train (or resume) one run of the grid and export it; returns the model file. Skips a finished run.

    ``config`` holds further :class:`~mtlmusic_training.trainer.TrainConfig` fields
    (``batch_size``, ``iterations_per_epoch``, ``lr``...). A failure is recorded in
    the run's ``state.json`` and ``train.log`` before it is raised.
    """
    grid_run = _GridRun(Path(runs_dir), run, log)
    if grid_run.finished:
        log(f"run {run.id} {run.name}: done, skipped")
        return grid_run.model_path
    trainer = grid_run.start(data_dir, epochs, device, seed, cache, config)
    try:
        trainer.train()
    except (Exception, KeyboardInterrupt) as err:   # a process told to exit is judged by its pid (run_status)
        grid_run.fail(err)
        raise
    return grid_run.finish(trainer)


def train_runs_together(data_dir: str | os.PathLike, runs_dir: str | os.PathLike, runs: list[Run],
                        epochs: int = 100, device: str = "auto", seed: int = 0, log=print,
                        cache: MelCache | None = None, **config) -> list[str]:
    """Train (or resume) several runs of the grid at once with :func:`~mtlmusic_training.trainer.train_together`.

    Finished runs are skipped; each run learns what :func:`train_run` would train, is
    recorded and exported the same way, and a run that fails does not stop the others.
    Returns the names of the runs that failed.
    """
    started: list[tuple[_GridRun, Trainer]] = []
    failed: list[str] = []
    for run in runs:
        grid_run = _GridRun(Path(runs_dir), run, log)
        if grid_run.finished:
            log(f"run {run.id} {run.name}: done, skipped")
            continue
        try:
            started.append((grid_run, grid_run.start(data_dir, epochs, device, seed, cache, config)))
        except Exception:
            failed.append(run.name)

    def record_failure(index: int, err: Exception) -> None:
        started[index][0].fail(err)
        failed.append(started[index][0].run.name)

    try:
        train_together([trainer for _, trainer in started], on_error=record_failure)
    except KeyboardInterrupt as err:
        for grid_run, _ in started:
            grid_run.fail(err)
        raise
    for grid_run, trainer in started:
        if grid_run.run.name not in failed:
            try:
                grid_run.finish(trainer)
            except Exception:
                failed.append(grid_run.run.name)
    return failed


class GridError(RuntimeError):
    """Some runs of the grid failed; the others finished. Rerunning the grid retries the failed ones."""


def run_grid(data_dir: str | os.PathLike, runs_dir: str | os.PathLike, run_ids: list[int],
             epochs: int = 100, device: str = "auto", seed: int = 0, parallel: int = 1, engine: str = "local",
             address: str | None = None, gpus_per_run: float | None = None, cpus_per_run: float = 1.0,
             together: int = 1, sources: str | Sequence[str] | None = None, log=print, **config) -> None:
    """Train the runs ``run_ids`` of :func:`~mtlmusic_training.design.design_runs` (see module docs).

    ``sources`` names the design's eight sources (default: those ``RUNS/design.json`` records, else
    the paper's); the grid records them there, and refuses other names than those recorded
    (:func:`~mtlmusic_training.design.grid_sources`). ``config`` holds further
    :class:`~mtlmusic_training.trainer.TrainConfig` fields. ``together`` runs at a time are trained
    in each process with :func:`train_runs_together` (several small networks keep one GPU busy;
    local and parallel engines). Processes that
    share a GPU (``parallel`` above the number of GPUs, or a fraction in ``gpus_per_run``) keep the
    mel cache on it only when it fits their share of its memory.
    Raises :class:`GridError` when some runs failed (after the others finished).
    """
    sources = grid_sources(runs_dir, sources, record=True)
    runs = {run.id: run for run in design_runs(sources)}
    chosen = [runs[i] for i in run_ids]
    if engine == "ray" and gpus_per_run is not None and 0 < gpus_per_run < 1:
        config.setdefault("device_memory_share", gpus_per_run)
    if engine == "ray":
        failed = _run_on_ray(data_dir, runs_dir, chosen, sources, epochs, device, seed, address, gpus_per_run,
                             cpus_per_run, log, config)
    elif engine != "local":
        raise ValueError(f"Unknown engine {engine!r}: choose local or ray.")
    elif parallel > 1:
        failed = _run_in_processes(data_dir, runs_dir, run_ids, sources, epochs, device, seed, parallel, together,
                                   config)
    else:
        cache = MelCache.open(Path(data_dir) / "cache")
        failed = []
        for first in range(0, len(chosen), max(1, together)):
            group = chosen[first:first + max(1, together)]
            if len(group) > 1:
                failed += train_runs_together(data_dir, runs_dir, group, epochs, device, seed, log, cache, **config)
                continue
            try:
                train_run(data_dir, runs_dir, group[0], epochs, device, seed, log, cache=cache, **config)
            except Exception:
                failed.append(group[0].name)
    if failed:
        raise GridError(f"{len(failed)} run(s) failed: {', '.join(failed)}; their train.log says why. "
                        "Rerun the grid to retry them.")


def parallel_devices(device: str, processes: int, gpus: int) -> list[str]:
    """The device of each of ``processes`` parallel processes: the visible GPUs in turn.

    ``device`` ``"auto"`` or ``"cuda"`` with ``gpus`` GPUs visible spreads the
    processes over them; any other device (``"cpu"``, ``"cuda:1"``) is every process's.

    >>> parallel_devices("auto", 5, 2), parallel_devices("cuda:1", 2, 2), parallel_devices("auto", 2, 0)
    (['cuda:0', 'cuda:1', 'cuda:0', 'cuda:1', 'cuda:0'], ['cuda:1', 'cuda:1'], ['auto', 'auto'])
    """
    if device in ("auto", "cuda") and gpus > 0:
        return [f"cuda:{k % gpus}" for k in range(processes)]
    return [device] * processes


def _run_in_processes(data_dir, runs_dir, run_ids, sources, epochs, device, seed, parallel, together,
                      config) -> list[str]:
    import torch

    shares = [run_ids[k::parallel] for k in range(parallel)]
    shares = [share for share in shares if share]
    devices = parallel_devices(device, len(shares), torch.cuda.device_count() if torch.cuda.is_available() else 0)
    processes = []
    for share, process_device in zip(shares, devices):
        # Processes sharing a device share its memory too, unless told otherwise.
        options = {"device_memory_share": 1 / devices.count(process_device), **config}
        command = [sys.executable, "-m", "mtlmusic_training.cli", "grid", str(data_dir), str(runs_dir),
                   "--runs", ",".join(map(str, share)), "--epochs", str(epochs), "--device", process_device,
                   "--seed", str(seed), "--together", str(together), "--sources", ",".join(sources),
                   *[arg for key, value in options.items() for arg in _option(key, value)]]
        processes.append(subprocess.Popen(command))
    return [f"process {k}" for k, p in enumerate(processes) if p.wait() != 0]


def _option(key: str, value) -> list[str]:
    """A TrainConfig field as ``mtlmusic-train grid`` options: ``['--lr', '0.001']``, ``['--no-graphs']``."""
    flag = key.replace("_", "-")
    if isinstance(value, bool):
        return [f"--{flag}" if value else f"--no-{flag}"]
    return [f"--{flag}", str(value)]


def _train_task(data_dir: str, runs_dir: str, run_id: int, sources: tuple[str, ...], epochs: int, device: str,
                seed: int, threads: int, config: dict) -> str:
    import torch

    torch.set_num_threads(max(1, threads))
    run = next(r for r in design_runs(sources) if r.id == run_id)
    return str(train_run(data_dir, runs_dir, run, epochs, device, seed, log=lambda _: None, **config))


def _run_on_ray(data_dir, runs_dir, runs: list[Run], sources, epochs, device, seed, address, gpus_per_run,
                cpus_per_run, log, config) -> list[str]:
    """Each run a Ray task (retried when its worker dies); returns the names of the runs that failed."""
    from mtlmusic.extraction.distributed import connect

    ray = connect(address)
    if gpus_per_run is None:
        wants_gpu = device.startswith("cuda") or (device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
        gpus_per_run = 1.0 if wants_gpu else 0.0
    task = ray.remote(_train_task).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=3)
    data_dir, runs_dir = os.path.abspath(data_dir), os.path.abspath(runs_dir)
    pending = {task.remote(data_dir, runs_dir, run.id, sources, epochs, device, seed, int(cpus_per_run), config): run
               for run in runs}
    log(f"{len(pending)} runs submitted to Ray ({cpus_per_run:g} CPU, {gpus_per_run:g} GPU each); "
        f"follow them with: mtlmusic-train status {runs_dir}")
    failed = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        run = pending.pop(ready[0])
        try:
            log(f"run {run.id} {run.name}: exported to {ray.get(ready[0])}")
        except ray.exceptions.RayError as err:
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            log(f"run {run.id} {run.name}: failed: {reason}")
            failed.append(run.name)
    return failed
