"""Extraction on a Ray cluster: the job of one machine, with its files spread over many workers.

:func:`ray_extract_files` is a drop-in for :func:`mtlmusic.extraction.engine.extract_files`:
the files are cut into tasks of ``files_per_task``; each Ray worker receives the
model once (through Ray's object store, so the nodes need neither the model file
nor network access), keeps it for every later task, and runs the same front end
and network as one machine does. Results come back per task and are checkpointed
by :func:`mtlmusic.extraction.jobs.run_job` exactly as on one machine, so ``--engine ray``
writes the same outputs, resumes the same way and reports failures in the same
file.

A task whose worker dies (killed, out of memory, node lost) is retried by Ray; a
task that keeps killing its workers is split into one task per file, so that
only the file that crashes the decoder is reported as failed.

The audio paths must be readable by every worker under the same name (a shared
file system, as on a Slurm or Kubernetes cluster with a common volume).

Examples
--------
>>> from mtlmusic.extraction import ray_extract_files
>>> # for result in ray_extract_files(model, paths, address="auto"):
>>> #     print(result.path, result.error or result.features.shape)
"""

from __future__ import annotations

import copy
import functools
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch

from ..errors import ConfigError
from ..model import Model, load_model
from .engine import TrackResult, extract_files, keep_freed_memory
from .jobs import JobSummary, read_path_list, run_job

#: What to run when Ray is missing.
INSTALL_HINT = "pip install 'mtlmusic[ray]'"


def require_ray():
    """The ``ray`` module, or a :class:`~mtlmusic.errors.ConfigError` that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ConfigError(f"The Ray engine needs Ray, which is not installed: {INSTALL_HINT}") from err
    return ray


def connect(address: str | None = None):
    """Join the Ray cluster at ``address`` (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``), or start a
    local one on this machine when ``address`` is None and ``RAY_ADDRESS`` is unset; returns ``ray``.

    A connection that already exists in this process is reused.
    """
    ray = require_ray()
    if not ray.is_initialized():
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, configure_logging=False,
                     log_to_driver=False)
        except ConnectionError as err:
            raise ConfigError(f"Cannot reach the Ray cluster at {address}: {err}") from err
    return ray


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (Ray itself would retry for minutes)."""
    if not address or "://" in address or address == "auto" or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as err:
        raise ConfigError(f"Cannot reach the Ray cluster at {address}: {err}. Is `ray start --head` "
                          "running there, and is the port open?") from err


# --- worker side -------------------------------------------------------------------------------

_worker_models: dict[str, Model] = {}


def _worker_model(key: str, boxed_model: list, device: str, threads: int) -> Model:
    """The job's model in this worker process, fetched from the object store on the worker's first task."""
    model = _worker_models.get(key)
    if model is None:
        import ray

        torch.set_num_threads(max(1, threads))
        keep_freed_memory()  # this worker process belongs to the engine
        network, scaler, config, batch_size = ray.get(boxed_model[0])
        model = Model(network, scaler, config, device=device, batch_size=batch_size)
        _worker_models.clear()  # one job at a time per worker: keep only the newest model
        _worker_models[key] = model
    return model


def _extract_task(key: str, boxed_model: list, paths: list[str], keep_slices: bool, device: str,
                  threads: int) -> list[TrackResult]:
    model = _worker_model(key, boxed_model, device, threads)
    return list(extract_files(model, paths, workers=0, keep_slices=keep_slices))


# --- driver side -------------------------------------------------------------------------------

def ray_extract_files(model: Model, paths: Iterable[str | os.PathLike], workers: int = 0,
                      keep_slices: bool = False, *, address: str | None = None, files_per_task: int = 32,
                      device: str | None = None, cpus_per_task: float = 1.0, gpus_per_task: float | None = None,
                      max_retries: int = 3) -> Iterator[TrackResult]:
    """Extract features of many files on a Ray cluster; yields one :class:`TrackResult` per path as tasks finish.

    Parameters
    ----------
    model : Model
        The model to run; it is sent to the workers once.
    paths : iterable of path-like
        Audio files, readable by every worker under the same name.
    workers : int
        Unused (Ray decides where and how many); kept so that this function
        can stand in for :func:`~mtlmusic.extraction.engine.extract_files`.
    keep_slices : bool
        Also return per-slice features and their start times.
    address : str, optional
        The cluster to join (see :func:`connect`); a local cluster by default.
    files_per_task : int
        Files per Ray task: larger tasks cost less scheduling, smaller ones
        lose less work when a worker dies.
    device : str, optional
        Where workers run the network: ``"cpu"`` (default) or ``"cuda"``.
    cpus_per_task, gpus_per_task : float
        Resources each task asks for; ``gpus_per_task`` defaults to 1 on CUDA,
        and may be a fraction so that several tasks share a GPU.
    max_retries : int
        How often a task whose worker died is run again before its files are
        tried one by one.
    """
    if files_per_task < 1 or cpus_per_task <= 0 or (gpus_per_task or 0) < 0:
        raise ConfigError(f"files_per_task must be >= 1, cpus_per_task > 0 and gpus_per_task >= 0 "
                          f"(got {files_per_task}, {cpus_per_task}, {gpus_per_task}).")
    ray = connect(address)
    device = device or "cpu"
    if gpus_per_task is None:
        gpus_per_task = 1.0 if device.startswith("cuda") else 0.0
    originals = [Path(p) for p in paths]
    absolute = [os.path.abspath(p) for p in originals]
    network = copy.deepcopy(model.network).to("cpu")
    recipe = ray.put((network, model.scaler_cpu, model.config, model.batch_size))
    key = uuid.uuid4().hex
    threads = max(1, int(cpus_per_task))
    remote = ray.remote(_extract_task)
    task = remote.options(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=max_retries)
    lone_task = remote.options(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=1)

    chunks = [list(range(i, min(i + files_per_task, len(absolute)))) for i in range(0, len(absolute), files_per_task)]
    chunks.reverse()  # popped from the end: submitted in input order
    pending: dict = {}
    window, window_checked = 2, -float("inf")

    def submit(indices: list[int], runner) -> None:
        ref = runner.remote(key, [recipe], [absolute[i] for i in indices], keep_slices, device, threads)
        pending[ref] = indices

    while pending or chunks:
        if time.monotonic() - window_checked > 10:  # an autoscaling cluster grows: keep every slot busy
            slots = ray.cluster_resources().get("GPU" if gpus_per_task else "CPU", 1.0)
            window = max(2, int(2 * slots / max(gpus_per_task or cpus_per_task, 1e-3)))
            window_checked = time.monotonic()
        while chunks and len(pending) < window:
            submit(chunks.pop(), task)
        ready, _ = ray.wait(list(pending), num_returns=1)
        indices = pending.pop(ready[0])
        try:
            results = ray.get(ready[0])
        except ray.exceptions.RayError as err:
            if len(indices) > 1:  # find the file that kills its workers: retry each file alone
                for index in indices:
                    submit([index], lone_task)
                continue
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            results = [TrackResult(Path(absolute[indices[0]]),
                                   error=f"{originals[indices[0]]}: the worker died each time it extracted "
                                         f"this file: {reason}")]
        for index, result in zip(indices, results):
            result.path = originals[index]
            yield result


def extract_on_ray(model: Model | str | os.PathLike, paths: Sequence[str | os.PathLike] | str | os.PathLike,
                   output: str | os.PathLike | None = None, *, per_file: str | os.PathLike | None = None,
                   pattern: str | None = None, address: str | None = None, files_per_task: int = 32,
                   device: str | None = None, cpus_per_task: float = 1.0, gpus_per_task: float | None = None,
                   slices: bool = False,
                   overwrite: bool = False, checkpoint_every: int = 256, on_result=None) -> JobSummary:
    """Extract a collection on a Ray cluster into ``output`` and/or ``per_file``, resumably (see module docs).

    Parameters
    ----------
    model : Model, or a model name or file
    paths : files and folders, or the path of a list of files (``.txt``, one per
        line, or ``.csv`` with a ``path`` column; see :func:`mtlmusic.extraction.jobs.read_path_list`)
    output, per_file, pattern, slices, overwrite, checkpoint_every, on_result : as :func:`mtlmusic.extraction.jobs.run_job`
    address, files_per_task, device, cpus_per_task, gpus_per_task : as :func:`ray_extract_files`

    Examples
    --------
    >>> from mtlmusic.extraction import extract_on_ray
    >>> # summary = extract_on_ray("default", "catalogue.txt", "features.npy", address="auto")
    >>> # summary.extracted, summary.failures
    """
    if not isinstance(model, Model):

        model = load_model(model, device="cpu")
    if isinstance(paths, (str, os.PathLike)):
        listed = Path(paths)
        paths = read_path_list(listed) if listed.is_file() and listed.suffix.lower() in (".txt", ".csv") else [listed]
    engine = functools.partial(ray_extract_files, address=address, files_per_task=files_per_task, device=device,
                               cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task)
    return run_job(model, paths, output=output, per_file=per_file, pattern=pattern, slices=slices, overwrite=overwrite,
                   checkpoint_every=checkpoint_every, on_result=on_result, extract=engine)
