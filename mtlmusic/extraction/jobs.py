"""Resumable extraction jobs over collections: inputs -> a feature file and/or one file per input.

A job never loses work and never overwrites without being asked:

* results are checkpointed in shards (``.OUT.parts/``) as they come, so a killed
  run resumes where it stopped;
* re-running skips what is done: rows already in the output and per-file outputs
  that exist are kept, only missing files are extracted (``overwrite=True``
  redoes everything);
* every output is written atomically;
* a file that fails is recorded with its reason (``OUT.failures.tsv``) and the
  run goes on.

Examples
--------
>>> from mtlmusic.extraction import run_job
>>> # summary = run_job(model, ["music/"], output="feats.npy", workers=1)
>>> # summary.failures  -> [(path, reason), ...]
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._version import __version__
from ..aggregation import AGGREGATION
from ..errors import ConfigError, MtlmusicError
from ..files import atomic_path
from ..model import Model
from .engine import TrackResult, extract_files, find_audio_files
from .sinks import (check_format, read_features, read_manifest, read_part_paths, require_pyarrow, write_features,
                    write_manifest)

#: Longest time between two checkpoints, in seconds.
SHARD_SECONDS = 60.0


@dataclass
class JobSummary:
    """What a job did: counts, failures ``(path, reason)``, audio seconds extracted and wall time."""

    total: int
    skipped: int
    extracted: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    failures_file: Path | None = None


def read_path_list(path: str | os.PathLike) -> list[Path]:
    r"""Audio paths listed in a file: a CSV with a ``path`` column (``.csv``), else one path per line.

    Blank lines and lines starting with ``#`` are skipped; relative paths are
    taken from the current directory, as ``tar -T`` does.

    Examples
    --------
    >>> import tempfile, os
    >>> listing = os.path.join(tempfile.mkdtemp(), "files.txt")
    >>> _ = open(listing, "w").write("# my collection\na.mp3\n\nsub/b.flac\n")
    >>> [str(p) for p in read_path_list(listing)]
    ['a.mp3', 'sub/b.flac']
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"Cannot read the list of files {path}: {err}") from err
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and "path" not in rows[0]:
            raise ConfigError(f"{path} has no 'path' column (columns: {', '.join(rows[0])}).")
        return [Path(row["path"]) for row in rows if row["path"]]
    lines = (line.strip() for line in text.splitlines())
    return [Path(line) for line in lines if line and not line.startswith("#")]


def per_file_targets(inputs: Sequence[str | os.PathLike], paths: Sequence[Path], folder: Path,
                     slices: bool) -> dict[Path, Path]:
    """Where ``--per-file`` writes each input: the tree under each input folder is mirrored in ``folder``.

    ``music/a/x.mp3`` given as ``music/`` becomes ``folder/a/x.mp3.npy`` (``.npz``
    with per-slice output); a file given by name lands at the top.
    """
    roots = [Path(i) for i in inputs if Path(i).is_dir()]
    suffix = ".npz" if slices else ".npy"
    targets: dict[Path, Path] = {}
    for path in paths:
        root = next((r for r in roots if path.is_relative_to(r)), None)
        relative = path.relative_to(root) if root else Path(path.name)
        targets[path] = folder / relative.parent / (relative.name + suffix)
    clashes = len(set(targets.values())) < len(targets)
    if clashes:
        raise ConfigError("Two inputs map to the same per-file output name; give their common parent folder instead.")
    return targets


class _Rows:
    """Finished rows by path: a track vector, or a track's slice rows with their times."""

    def __init__(self):
        self.rows: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    def add_table(self, table) -> None:
        order = dict.fromkeys(table.paths)
        paths = np.asarray(table.paths)
        for path in order:
            mask = paths == path
            self.rows[path] = (table.features[mask], None if table.times is None else table.times[mask])

    def add_result(self, result: TrackResult, slices: bool) -> None:
        features = result.slices if slices else result.features[np.newaxis]
        self.rows[str(result.path)] = (features, result.times if slices else None)

    def table(self, order: Sequence[str], n_columns: int) -> tuple[np.ndarray, list[str], np.ndarray | None]:
        """Rows in ``order`` (then any others), as ``(features, row paths, times)``."""
        listed = set(order)
        keys = [p for p in order if p in self.rows] + [p for p in self.rows if p not in listed]
        features = (np.concatenate([self.rows[k][0] for k in keys]) if keys
                    else np.zeros((0, n_columns), np.float32))
        paths = [k for k in keys for _ in range(len(self.rows[k][0]))]
        has_times = keys and self.rows[keys[0]][1] is not None
        times = np.concatenate([self.rows[k][1] for k in keys]) if has_times else None
        return features, paths, times


def run_job(model: Model, inputs: Sequence[str | os.PathLike], output: str | os.PathLike | None = None,
            per_file: str | os.PathLike | None = None, pattern: str | None = None, workers: int | None = 0,
            slices: bool = False, overwrite: bool = False, checkpoint_every: int = 64,
            on_result: Callable[[TrackResult], None] | None = None,
            on_start: Callable[[int], None] | None = None,
            extract: Callable[..., Iterator[TrackResult]] = extract_files) -> JobSummary:
    """Extract a collection into ``output`` (a feature file) and/or ``per_file`` (a folder); see module docs.

    Parameters
    ----------
    model : Model
    inputs : files and folders (folders are searched recursively)
    output : path of a ``.npy``, ``.npz``, ``.csv`` or ``.parquet`` file, optional
    per_file : folder for one output per input, optional
    pattern : glob that files inside input folders must match
    workers : decoding processes (0: in this process; None: chosen from the cores and the number of
        files, see :func:`~mtlmusic.extraction.engine.engine_setup`)
    slices : per-slice rows with start times instead of one row per track
    overwrite : redo everything and replace existing outputs
    checkpoint_every : files per checkpoint shard (a checkpoint is also written every minute)
    on_result : called with each :class:`~mtlmusic.extraction.engine.TrackResult`
    on_start : called with the number of files to extract
    extract : the engine, called as ``extract(model, paths, workers=..., keep_slices=...)``:
        :func:`~mtlmusic.extraction.engine.extract_files` on this machine, or
        :func:`~mtlmusic.extraction.distributed.ray_extract_files` (options bound with
        :func:`functools.partial`) on a Ray cluster
    """
    if output is None and per_file is None:
        raise ConfigError("Nothing to write: give an output file (-o) and/or a per-file folder (--per-file).")
    started = time.perf_counter()
    paths = find_audio_files(inputs, pattern)
    if not paths:
        raise ConfigError(f"No audio files found in {', '.join(map(str, inputs))}"
                          + (f" matching {pattern!r}" if pattern else "") + ".")
    meta = {"model": model.name or model.config.get("path"), "architecture": model.architecture,
            "sources": list(model.sources), "slices": slices, "aggregation": AGGREGATION,
            "mtlmusic_version": __version__}
    columns = _column_names(model, slices)
    sink, todo = None, set(paths)
    if output is not None:
        output_format = check_format(output)
        if output_format in ("", ".parquet"):
            require_pyarrow()  # before any work, not at the first write
        sink_type = _DatasetSink if output_format == "" else _FileSink
        sink = sink_type(Path(output), columns, meta, slices, overwrite)
        todo = {p for p in paths if str(p) not in sink.done}
    targets = per_file_targets(inputs, paths, Path(per_file), slices) if per_file is not None else {}
    if targets:
        _check_writable(Path(per_file))
        todo |= {p for p, target in targets.items() if overwrite or not target.exists()}
    ordered_todo = [p for p in paths if p in todo]
    if on_start:
        on_start(len(ordered_todo))

    summary = JobSummary(total=len(paths), skipped=len(paths) - len(ordered_todo), extracted=0)
    last_checkpoint = time.monotonic()
    for result in extract(model, ordered_todo, workers=workers, keep_slices=slices):
        if result.ok:
            summary.extracted += 1
            summary.audio_seconds += result.seconds
            if result.path in targets and (overwrite or not targets[result.path].exists()):
                _write_one(targets[result.path], result, slices)
            if sink is not None and str(result.path) not in sink.done:
                sink.add(result)
        else:
            summary.failures.append((str(result.path), result.error))
        if on_result:
            on_result(result)
        if sink is not None and (len(sink.pending) >= checkpoint_every
                                 or time.monotonic() - last_checkpoint > SHARD_SECONDS):
            sink.checkpoint()
            last_checkpoint = time.monotonic()

    if sink is not None:
        sink.finish([str(p) for p in paths])
    summary.failures_file = _write_failures(output, per_file, summary.failures)
    summary.wall_seconds = time.perf_counter() - started
    return summary


class _FileSink:
    """One feature file: rows kept in memory, checkpointed in shards in ``.OUT.parts/``, written at the end."""

    def __init__(self, output: Path, columns: list[str], meta: dict, slices: bool, overwrite: bool):
        self.output, self.columns, self.meta, self.slices = output, columns, meta, slices
        self.parts = output.parent / f".{output.name}.parts"
        _check_writable(output.parent)
        self.rows = _Rows()
        if overwrite:
            shutil.rmtree(self.parts, ignore_errors=True)
        else:
            _load_previous(output, self.parts, meta, self.rows)
        self.done = set(self.rows.rows)
        self.pending: list[TrackResult] = []

    def add(self, result: TrackResult) -> None:
        self.rows.add_result(result, self.slices)
        self.done.add(str(result.path))
        self.pending.append(result)

    def checkpoint(self) -> None:
        if self.pending:
            index = len(list(self.parts.glob("shard-*.npz"))) if self.parts.is_dir() else 0
            _write_results(self.parts / f"shard-{index:06d}.npz", self.pending, self.columns, self.meta, self.slices)
            self.pending = []

    def finish(self, order: list[str]) -> None:
        features, row_paths, times = self.rows.table(order, len(self.columns))
        write_features(self.output, features, row_paths, self.columns, times, self.meta)
        shutil.rmtree(self.parts, ignore_errors=True)


class _DatasetSink:
    """A feature dataset (see :mod:`mtlmusic.extraction.sinks`): a Parquet part per checkpoint, a manifest at the start and end.

    Each part is written atomically, so every part in the folder is complete and a
    rerun skips the tracks it holds. Nothing is kept in memory but the paths already
    done, and nothing is assembled at the end, so the collection may be as large as
    the disk allows. Rows are in the order they were extracted.
    """

    def __init__(self, folder: Path, columns: list[str], meta: dict, slices: bool, overwrite: bool):
        self.folder, self.columns, self.meta, self.slices = folder, columns, meta, slices
        self.parts: list[dict] = []
        self.done: set[str] = set()
        self.pending: list[TrackResult] = []
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{folder} is a file: a feature dataset is a folder, and a feature file needs one "
                              "of the extensions .npy, .npz, .csv or .parquet.")
        if folder.exists() and any(folder.iterdir()):
            previous = read_manifest(folder).get("meta", {})
            if overwrite:
                for part in folder.glob("part-*.parquet"):
                    part.unlink()
            elif not _same_job(previous, meta):
                raise ConfigError(f"{folder} holds features of another model or layout "
                                  f"({previous.get('model')}, slices={previous.get('slices')}); "
                                  "pass --overwrite to replace it, or choose another output folder.")
            for part in sorted(folder.glob("part-*.parquet")):
                paths = read_part_paths(part)
                self.parts.append({"file": part.name, "tracks": len(set(paths)), "rows": len(paths)})
                self.done.update(paths)
        _check_writable(folder)
        self._write_manifest(complete=False)

    def add(self, result: TrackResult) -> None:
        self.done.add(str(result.path))
        self.pending.append(result)

    def checkpoint(self) -> None:
        if self.pending:
            index = int(self.parts[-1]["file"][5:11]) + 1 if self.parts else 0
            name = f"part-{index:06d}.parquet"
            rows = _write_results(self.folder / name, self.pending, self.columns, self.meta, self.slices)
            self.parts.append({"file": name, "tracks": len(self.pending), "rows": rows})
            self.pending = []

    def finish(self, order: list[str]) -> None:
        self.checkpoint()
        self._write_manifest(complete=True)

    def _write_manifest(self, complete: bool) -> None:
        write_manifest(self.folder, {"format": "mtlmusic feature dataset", "version": 1, "complete": complete,
                                     "meta": self.meta, "tracks": sum(p["tracks"] for p in self.parts),
                                     "rows": sum(p["rows"] for p in self.parts), "parts": self.parts,
                                     "feature_names": self.columns})


def _column_names(model: Model, slices: bool) -> list[str]:
    """Column names: the aggregated features, or for slice rows the representation blocks' values."""
    if not slices:
        return model.feature_names
    return [name.split(".", 1)[1] for name in model.feature_names[: len(model.feature_names) // 2]]


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / ".mtlmusic-write-test") as tmp:
            tmp.write_text("")
        (folder / ".mtlmusic-write-test").unlink()
    except OSError as err:
        raise ConfigError(f"Cannot write to {folder}: {err.strerror or err}.") from err


def _load_previous(output: Path, parts: Path, meta: dict, rows: _Rows) -> None:
    """Collect rows from an existing output and from the shards of an interrupted run."""
    if output.exists():
        table = read_features(output)
        if not _same_job(table.meta, meta):
            raise ConfigError(f"{output} holds features of another model or layout "
                              f"({table.meta.get('model')}, slices={table.meta.get('slices')}); "
                              "pass --overwrite to replace it, or choose another output path.")
        rows.add_table(table)
    for shard in sorted(parts.glob("shard-*.npz")) if parts.is_dir() else []:
        try:
            table = read_features(shard)
        except (MtlmusicError, OSError, ValueError, KeyError):
            continue  # a shard cut short by a crash: its tracks are extracted again
        if _same_job(table.meta, meta):
            rows.add_table(table)


def _same_job(previous: dict, current: dict) -> bool:
    keys = ("model", "architecture", "sources", "slices", "aggregation")
    return all(previous.get(k) == current.get(k) for k in keys)


def _write_results(path: Path, results: list[TrackResult], columns: list[str], meta: dict, slices: bool) -> int:
    """Write the rows of ``results`` as one feature file; returns the number of rows."""
    rows = _Rows()
    for result in results:
        rows.add_result(result, slices)
    features, row_paths, times = rows.table([], len(columns))
    write_features(path, features, row_paths, columns, times, meta)
    return len(row_paths)


def _write_one(target: Path, result: TrackResult, slices: bool) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            if slices:
                np.savez(f, slices=result.slices, times=result.times)
            else:
                np.save(f, result.features)


def _write_failures(output: Path | None, per_file, failures: list[tuple[str, str]]) -> Path | None:
    target = Path(f"{output}.failures.tsv") if output is not None else Path(per_file) / "failures.tsv"
    if not failures:
        if target.exists():
            target.unlink()
        return None
    with atomic_path(target) as tmp:
        tmp.write_text("path\treason\n" + "".join(
            f"{p}\t{' '.join(reason.split())}\n" for p, reason in failures))
    return target
