"""Extraction over many files: decoding in worker processes, slices of many tracks batched through the network.

:func:`extract_files` is the engine behind ``mtlmusic-extract`` and
``Model.extract(list_of_paths)``. Worker processes decode, resample and
transform files (the front end) while the main process runs the network on
batches that mix slices of several tracks. Results come back per track, in
input order, with the error of a file that failed instead of stopping the run.

Files longer than :data:`mtlmusic.frontend.LONG_AUDIO_SECONDS` are streamed by
the main process in blocks, so memory stays bounded whatever their length.

:func:`engine_setup` splits the cores this process may use between decoding
workers and the network's torch threads; ``extract_files(model, paths,
workers=None)`` (what ``Model.extract(list_of_paths)`` and ``mtlmusic-extract``
run) uses it, with the network on that many threads only while it runs.

Examples
--------
>>> from mtlmusic.extraction import extract_files
>>> # for result in extract_files(model, ["a.mp3", "b.flac"], workers=1):
>>> #     print(result.path, result.error or result.features.shape)
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import sys
import threading
import warnings
from contextlib import contextmanager
from fnmatch import fnmatch
from functools import cache
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..aggregation import SliceStats
from ..audio import AUDIO_EXTENSIONS, audio_info
from ..errors import MtlmusicError
from ..frontend import LONG_AUDIO_SECONDS, Scaler, SliceChunk, slice_start_times, track_slices

if TYPE_CHECKING:  # the model calls this engine for lists of files; the engine only uses the model it is given
    from ..model import Model


@dataclass
class TrackResult:
    """Outcome for one file: ``features`` (D,) and, when asked, per-slice ``slices`` and ``times``; or an ``error``."""

    path: Path
    features: np.ndarray | None = None
    slices: np.ndarray | None = None
    times: np.ndarray | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    seconds: float = 0.0  # duration of the audio, once read


def find_audio_files(inputs: Iterable[str | os.PathLike], pattern: str | None = None) -> list[Path]:
    """Expand files and directories (recursively) into a sorted, de-duplicated list of audio files.

    Directories contribute files with an audio extension (see
    :data:`mtlmusic.audio.AUDIO_EXTENSIONS`) whose path relative to the
    directory matches the glob ``pattern`` when given (``*`` also matches
    ``/``: ``'*.mp3'`` takes MP3s at any depth, ``'rock/*'`` everything under
    ``rock/``); files named explicitly
    are always kept (a missing one is kept too, to be reported as a failure).

    >>> find_audio_files([])
    []
    """
    found: dict[Path, None] = {}
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                if (path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()
                        and (pattern is None or fnmatch(path.relative_to(item).as_posix(), pattern))):
                    found.setdefault(path, None)
        else:
            found.setdefault(item, None)
    return list(found)


@cache
def keep_freed_memory() -> None:
    """Make glibc's malloc serve blocks of every size from its heap and keep them when freed (Linux; a no-op
    elsewhere).

    The front end and the network allocate and free blocks of megabytes for every
    file and forward pass, and a training step blocks of hundreds of megabytes. By
    default glibc maps every block above 32 MB afresh, hands freed memory back to
    the system and faults it in again at the next use: on two idle cores that costs
    a tenth to a quarter of the time of a training step or of an extraction, and
    far more when other processes share the cores (``benchmarks/cpu_memory.py``
    measures both). This sets ``M_MMAP_MAX`` (0: no block of its own mapping)
    and ``M_TRIM_THRESHOLD`` (never hand the heap back) for the whole process,
    once: the process keeps the memory of its largest batch.

    It changes the allocator of the whole process, so only processes that
    mtlmusic owns call it: ``mtlmusic-train``, ``mtlmusic-extract`` and the
    decoding workers; never :func:`extract_files` in a library caller's process.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: the largest it takes
        libc.mallopt(-4, 0)          # M_MMAP_MAX
    except (OSError, AttributeError):
        pass


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the system has one, else the CPU count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


#: Files per decoding worker below which :func:`engine_setup` starts fewer workers: starting
#: one (a new interpreter importing torch) costs about as much as decoding this many 30 s files,
#: which this process does itself meanwhile.
FILES_PER_WORKER = 8


@dataclass(frozen=True)
class EngineSetup:
    """How :func:`extract_files` uses the cores: decoding ``workers`` beside the network's torch ``threads``."""

    workers: int
    threads: int


def engine_setup(workers: int | None = None, files: int | None = None, cores: int | None = None) -> EngineSetup:
    """Decoding workers and network threads for a run on ``cores`` (default: :func:`available_cores`).

    ``workers=None`` chooses one worker per core but one (none on a single core),
    and no more than one per :data:`FILES_PER_WORKER` of ``files`` when the number
    of files is known. The network gets one torch thread per core left beside the
    workers (at least one): more threads than free cores contend with the workers
    and with other programs, and make torch far slower on a busy machine.

    >>> engine_setup(cores=8)
    EngineSetup(workers=7, threads=1)
    >>> engine_setup(files=20, cores=8)
    EngineSetup(workers=2, threads=6)
    >>> engine_setup(workers=0, cores=8)
    EngineSetup(workers=0, threads=8)
    """
    cores = max(1, cores or available_cores())
    if workers is None:
        workers = cores - 1
        if files is not None:
            workers = min(workers, files // FILES_PER_WORKER)
    workers = max(0, workers)
    return EngineSetup(workers, max(1, cores - workers))


# --- worker side -------------------------------------------------------------------------------

_worker_scaler: Scaler | None = None


def _init_worker(mean: np.ndarray, std: np.ndarray, pad_db: float | None = None) -> None:
    global _worker_scaler
    torch.set_num_threads(1)
    keep_freed_memory()
    _worker_scaler = Scaler(torch.from_numpy(mean), torch.from_numpy(std), pad_db)


def _prepare(path: Path, scaler: Scaler | None = None) -> tuple[str, object, float, list[str]]:
    """Front end of one file: ``(kind, payload, seconds, warnings)``.

    ``kind`` is ``"slices"`` (payload: the standardized slices), ``"long"`` (to be
    streamed by the caller) or ``"error"`` (payload: the message).
    """
    scaler = scaler or _worker_scaler
    seconds = 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            info = audio_info(path)
            seconds = info.duration
            if not seconds <= LONG_AUDIO_SECONDS:
                return "long", None, seconds, []
            (chunk,) = track_slices(info, scaler=scaler, chunk_slices=1 << 20)
            outcome: tuple[str, object] = ("slices", (chunk.slices.numpy(), chunk.weights.numpy()))
        except MtlmusicError as err:
            outcome = ("error", str(err))
        except Exception as err:  # a decoder crash must not stop a collection run
            outcome = ("error", f"{path}: {type(err).__name__}: {err}")
    return (*outcome, seconds, [str(w.message) for w in caught])


# --- main side ---------------------------------------------------------------------------------

class _Batcher:
    """Collects slices of several tracks and runs the network once per ``batch_size`` slices."""

    def __init__(self, model: Model, keep_slices: bool):
        self.model = model
        self.keep_slices = keep_slices
        self.pending: list[tuple[int, TrackResult, SliceChunk]] = []
        self.n_pending = 0

    def add(self, index: int, result: TrackResult, chunk: SliceChunk) -> list[int]:
        """Queue one track's slices; returns the indices of the tracks finished by this call."""
        self.pending.append((index, result, chunk))
        self.n_pending += chunk.slices.shape[0]
        return self.flush() if self.n_pending >= self.model.batch_size else []

    def flush(self) -> list[int]:
        """Run everything queued; returns the indices of the finished tracks."""
        if not self.pending:
            return []
        batch = torch.cat([chunk.slices for _, _, chunk in self.pending])
        features = torch.cat([self.model.slice_features(part)
                              for part in batch.split(self.model.batch_size)]).cpu()
        done, start = [], 0
        for index, result, chunk in self.pending:
            end = start + chunk.slices.shape[0]
            _finish(result, [SliceChunk(features[start:end], chunk.weights)], self.keep_slices)
            start = end
            done.append(index)
        self.pending, self.n_pending = [], 0
        return done


def _finish(result: TrackResult, chunks: Iterable[SliceChunk], keep_slices: bool) -> None:
    """Aggregate a track's per-slice features (``chunks`` of network outputs and slice weights) into ``result``."""
    stats = SliceStats()
    kept = []
    for chunk in chunks:
        stats.add(chunk.slices, chunk.weights)
        if keep_slices:
            kept.append(chunk.slices.cpu())
    result.features = stats.aggregate()
    result.times = slice_start_times(stats.count)
    if keep_slices:
        result.slices = torch.cat(kept).numpy()


def _stream_long(model: Model, result: TrackResult, keep_slices: bool) -> None:
    try:
        _finish(result, model.track_features(result.path), keep_slices)
    except MtlmusicError as err:
        result.error = str(err)
    except Exception as err:  # as in _prepare: a decoder crash fails this file, not the run
        result.features = result.slices = result.times = None
        result.error = f"{result.path}: {type(err).__name__}: {err}"


def extract_files(model: Model, paths: Iterable[str | os.PathLike], workers: int | None = 0,
                  keep_slices: bool = False) -> Iterator[TrackResult]:
    """Extract features of many files; yields one :class:`TrackResult` per path, in order.

    A file that cannot be read yields a result with ``error`` set; the run goes on.
    Nothing here changes the allocator of this process (see :func:`keep_freed_memory`).

    Parameters
    ----------
    model : Model
        The model to run (its ``batch_size`` sets slices per forward pass).
    paths : iterable of path-like
        Audio files.
    workers : int or None
        Processes that decode and transform files in parallel with the
        network; 0 does everything in this process. ``None`` chooses them with
        :func:`engine_setup` from the cores available and the number of files,
        and runs the network on the torch threads it chooses: the caller's
        thread count is set back before each result is yielded, so the
        caller's code never sees it changed.
    keep_slices : bool
        Also return per-slice features and their start times.
    """
    paths = [Path(p) for p in paths]
    if workers is None:
        setup = engine_setup(files=len(paths))
        yield from _on_threads(setup.threads, _extract(model, paths, setup.workers, keep_slices))
    else:
        yield from _extract(model, paths, workers, keep_slices)


def _extract(model: Model, paths: list[Path], workers: int, keep_slices: bool) -> Iterator[TrackResult]:
    scaler = model.scaler_cpu
    if workers <= 0:
        yield from _ordered(model, paths, keep_slices,
                            ((i, _prepare(path, scaler)) for i, path in enumerate(paths)))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(scaler.mean.numpy(), scaler.std.numpy(), scaler.pad_db)) as pool:
        yield from _ordered(model, paths, keep_slices, _shared_work(pool, paths, scaler, window=2 * workers + 2))


def _on_threads(threads: int, results: Iterator[TrackResult]) -> Iterator[TrackResult]:
    """``results``, computed with ``threads`` torch threads; the caller's count is back whenever one is yielded."""
    try:
        while True:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                result = next(results, None)
            finally:
                torch.set_num_threads(previous)
            if result is None:
                return
            yield result
    finally:
        results.close()  # an abandoned run stops its workers now, not when it is collected


@contextmanager
def _without_main():
    """Start worker processes that do not run the caller's ``__main__``.

    A spawned process first re-runs the main script (as ``__mp_main__``), so a
    script calling ``Model.extract(list)`` without an ``if __name__ ==
    "__main__"`` guard would load its model and start workers again in every
    worker, which fails. The workers only run this module's functions: while
    they start, ``__main__`` shows neither a file nor a module name to run.
    """
    with _MAIN_LOCK:  # threads starting workers at once must not save each other's blanked names
        main = sys.modules.get("__main__")
        saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__} if main else {}
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        try:
            yield
        finally:
            if main is not None:
                main.__dict__.pop("__spec__", None)
                main.__dict__.update(saved)


_MAIN_LOCK = threading.Lock()


def _shared_work(pool: ProcessPoolExecutor, paths: list[Path], scaler: Scaler,
                 window: int) -> Iterator[tuple[int, tuple]]:
    """Prepared tracks ``(index, outcome)``: the workers take files from the front of the list, and
    while the next one is not ready this process prepares one from the back instead of waiting
    (at the end, one that no worker has started yet)."""
    pending: deque[tuple[int, Future]] = deque()
    front, back = 0, len(paths)  # paths[front:back] are not submitted yet
    while pending or front < back:
        while len(pending) < window and front < back:
            with _without_main():  # submit starts the workers
                pending.append((front, pool.submit(_prepare, paths[front])))
            front += 1
        if pending[0][1].done():
            index, future = pending.popleft()
            yield index, future.result()
        elif front < back:
            back -= 1
            yield back, _prepare(paths[back], scaler)
        elif pending[-1][1].cancel():
            index, _ = pending.pop()
            yield index, _prepare(paths[index], scaler)
        else:
            index, future = pending.popleft()
            yield index, future.result()


def _ordered(model: Model, paths: list[Path], keep_slices: bool,
             outcomes: Iterable[tuple[int, tuple]]) -> Iterator[TrackResult]:
    """Run prepared tracks (in any order) through the batcher; yield results in input order once final."""
    batcher = _Batcher(model, keep_slices)
    results: list[TrackResult | None] = [TrackResult(p) for p in paths]
    done: set[int] = set()
    next_out = 0
    for index, (kind, payload, seconds, messages) in outcomes:
        result = results[index]
        result.seconds, result.warnings = seconds, messages
        if kind == "error":
            result.error = payload
            done.add(index)
        elif kind == "long":
            done.update(batcher.flush())
            _stream_long(model, result, keep_slices)
            done.add(index)
        else:
            slices, weights = payload
            done.update(batcher.add(index, result, SliceChunk(torch.from_numpy(slices), torch.from_numpy(weights))))
        while next_out in done:
            yield results[next_out]
            results[next_out] = None
            next_out += 1
    done.update(batcher.flush())
    while next_out < len(results):
        yield results[next_out]
        next_out += 1
