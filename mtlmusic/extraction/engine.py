"""Extraction over many files: decoding in worker processes, slices of many tracks batched through the network.

:func:`extract_files` is the engine behind ``mtlmusic-extract`` and
``Model.extract(list_of_paths)``. Worker processes decode, resample and
transform files (the front end) while the main process runs the network on
batches that mix slices of several tracks. Results come back per track, in
input order, with the error of a file that failed instead of stopping the run.

Files longer than :data:`mtlmusic.frontend.LONG_AUDIO_SECONDS` are streamed by
the main process in blocks, so memory stays bounded whatever their length.

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
import warnings
from fnmatch import fnmatch
from functools import cache
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..aggregation import SliceStats
from ..audio import AUDIO_EXTENSIONS, audio_info
from ..errors import MtlmusicError
from ..frontend import LONG_AUDIO_SECONDS, Scaler, SliceChunk, slice_start_times, track_slices
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
    """Make glibc's malloc keep freed blocks of up to 32 MB for reuse (Linux; a no-op elsewhere).

    The front end and the network allocate and free blocks of megabytes for
    every file and forward pass. By default glibc hands such blocks back to the
    system and faults them in again at the next use, which costs up to a third
    of the network's time on the CPU. This sets ``M_MMAP_THRESHOLD`` (32 MB) and
    ``M_TRIM_THRESHOLD`` (256 MB) for the whole process, once.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


# --- worker side -------------------------------------------------------------------------------

_worker_scaler: Scaler | None = None


def _init_worker(mean: np.ndarray, std: np.ndarray) -> None:
    global _worker_scaler
    torch.set_num_threads(1)
    keep_freed_memory()
    _worker_scaler = Scaler(torch.from_numpy(mean), torch.from_numpy(std))


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


def extract_files(model: Model, paths: Iterable[str | os.PathLike], workers: int = 0,
                  keep_slices: bool = False) -> Iterator[TrackResult]:
    """Extract features of many files; yields one :class:`TrackResult` per path, in order.

    Parameters
    ----------
    model : Model
        The model to run (its ``batch_size`` sets slices per forward pass).
    paths : iterable of path-like
        Audio files.
    workers : int
        Processes that decode and transform files in parallel with the
        network; 0 does everything in this process.
    keep_slices : bool
        Also return per-slice features and their start times.

    A file that cannot be read yields a result with ``error`` set; the run goes on.
    """
    paths = [Path(p) for p in paths]
    scaler = model.scaler_cpu
    keep_freed_memory()
    if workers <= 0:
        yield from _ordered(model, paths, keep_slices,
                            ((i, _prepare(path, scaler)) for i, path in enumerate(paths)))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(scaler.mean.numpy(), scaler.std.numpy())) as pool:
        yield from _ordered(model, paths, keep_slices, _shared_work(pool, paths, scaler, window=2 * workers + 2))


def _shared_work(pool: ProcessPoolExecutor, paths: list[Path], scaler: Scaler,
                 window: int) -> Iterator[tuple[int, tuple]]:
    """Prepared tracks ``(index, outcome)``: the workers take files from the front of the list, and
    while the next one is not ready this process prepares one from the back instead of waiting
    (at the end, one that no worker has started yet)."""
    pending: deque[tuple[int, Future]] = deque()
    front, back = 0, len(paths)  # paths[front:back] are not submitted yet
    while pending or front < back:
        while len(pending) < window and front < back:
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
