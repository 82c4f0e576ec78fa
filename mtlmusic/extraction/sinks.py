"""Feature files: write and read feature tables as ``.npy`` (+ JSON sidecar), ``.npz``, ``.csv`` or ``.parquet``.

Every format keeps the source path of each row, the feature names, and for
per-slice tables the start time of each slice. Writes are atomic: a temporary
file in the same folder is renamed over the destination, so an interrupted
write never leaves a half-written file.

============  ===========================================================
format        layout
============  ===========================================================
``.npy``      float32 ``N x D`` array; ``OUT.npy.json`` lists ``paths``,
              ``feature_names``, ``times`` (per-slice tables) and ``meta``
``.npz``      arrays ``features``, ``paths``, ``feature_names``, ``times``
              and ``meta`` (a JSON string)
``.csv``      header ``path[,time],<feature names>``, one row per track/slice
``.parquet``  the same columns as the CSV (needs ``pyarrow``)
folder        a *feature dataset* for very large collections: Parquet parts
              (``part-000000.parquet``...), each written atomically as the
              job goes, and ``_manifest.json`` (model, feature names, parts,
              whether the job is complete); readable by pandas, Spark or
              DuckDB as a Parquet dataset, and by :func:`read_features`
============  ===========================================================

Examples
--------
>>> import numpy as np, tempfile, os
>>> from mtlmusic.extraction.sinks import write_features, read_features
>>> out = os.path.join(tempfile.mkdtemp(), "feats.npz")
>>> _ = write_features(out, np.ones((2, 3), np.float32), ["a.mp3", "b.mp3"], ["f0", "f1", "f2"])
>>> table = read_features(out)
>>> table.paths, table.features.shape
(['a.mp3', 'b.mp3'], (2, 3))
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, MtlmusicError
from ..files import atomic_path

#: Output formats by file extension.
FORMATS = (".npy", ".npz", ".csv", ".parquet")


@dataclass
class FeatureTable:
    """Rows of features with their source ``paths`` (one per row) and, for slice tables, ``times``."""

    features: np.ndarray
    paths: list[str]
    feature_names: list[str]
    times: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


#: Name of a feature dataset's manifest.
MANIFEST = "_manifest.json"  # "_" first: Parquet readers skip it when reading the folder


def is_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a feature dataset (a folder): it has no extension, or is an existing folder."""
    path = Path(path)
    return path.is_dir() or path.suffix == ""


def check_format(path: str | os.PathLike) -> str:
    """The format of an output path: its extension, or ``""`` for a feature dataset (a folder).

    Raises :class:`~mtlmusic.errors.ConfigError` for an unsupported extension.
    """
    if is_dataset(path):
        return ""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"Cannot write features to {path}: use one of the extensions {', '.join(FORMATS)}, "
                          "or a folder name without extension for a feature dataset.")
    return suffix


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a feature dataset; raises :class:`~mtlmusic.errors.ConfigError` when there is none."""
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not a feature dataset: it has no {MANIFEST}.") from None
    except (OSError, ValueError) as err:
        raise MtlmusicError(f"{path} cannot be read: {err}") from err


def write_manifest(folder: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Write a feature dataset's manifest atomically."""
    with atomic_path(Path(folder) / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a ``.npy`` feature file: ``feats.npy`` -> ``feats.npy.json``."""
    return Path(f"{path}.json")


def write_features(path: str | os.PathLike, features: np.ndarray, paths: Sequence[str],
                   feature_names: Sequence[str], times: np.ndarray | None = None,
                   meta: dict[str, Any] | None = None) -> Path:
    """Write a feature table atomically; the format follows the extension (see module docs).

    Parameters
    ----------
    path : path-like
        Destination ending in ``.npy``, ``.npz``, ``.csv`` or ``.parquet``.
    features : array (N, D)
        One row per track (or per slice when ``times`` is given).
    paths : sequence of str
        Source file of each row.
    feature_names : sequence of str
        Name of each of the D columns.
    times : array (N,), optional
        Start time in seconds of each slice row.
    meta : dict, optional
        JSON-serialisable information (model name, version ...).
    """
    suffix = check_format(path)
    features = np.asarray(features, dtype=np.float32)
    paths = [str(p) for p in paths]
    if features.ndim != 2 or features.shape[0] != len(paths) or features.shape[1] != len(feature_names):
        raise ConfigError(f"Feature table shape {features.shape} does not match {len(paths)} paths "
                          f"and {len(feature_names)} feature names.")
    if times is not None and len(times) != len(paths):
        raise ConfigError("times needs one value per row.")
    meta = dict(meta or {})
    path = Path(path)
    if suffix == ".npy":
        sidecar = {"paths": paths, "feature_names": list(feature_names), "meta": meta,
                   "times": None if times is None else np.asarray(times).tolist()}
        with atomic_path(sidecar_path(path)) as tmp:
            tmp.write_text(json.dumps(sidecar))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, features)
    elif suffix == ".npz":
        arrays = {"features": features, "paths": np.array(paths, dtype=str),
                  "feature_names": np.array(feature_names, dtype=str), "meta": np.array(json.dumps(meta))}
        if times is not None:
            arrays["times"] = np.asarray(times, dtype=np.float64)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
    elif suffix == ".csv":
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["path"] + (["time"] if times is not None else []) + list(feature_names))
                for i, row in enumerate(features):
                    lead = [paths[i]] + ([f"{times[i]:.4f}"] if times is not None else [])
                    writer.writerow(lead + [f"{v:.9g}" for v in row])
    else:
        pa, pq = require_pyarrow()
        columns = {"path": pa.array(paths)}
        if times is not None:
            columns["time"] = pa.array(np.asarray(times, dtype=np.float64))
        columns.update({name: pa.array(features[:, j]) for j, name in enumerate(feature_names)})
        table = pa.table(columns).replace_schema_metadata({"mtlmusic": json.dumps(meta)})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    return path


def read_features(path: str | os.PathLike) -> FeatureTable:
    """Read a feature table written by :func:`write_features` (any of its formats), or a whole feature dataset."""
    suffix = check_format(path)
    path = Path(path)
    if suffix == "":
        return _read_dataset(path)
    if not path.is_file():
        raise MtlmusicError(f"{path}: no such feature file.")
    if suffix == ".npy":
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise MtlmusicError(f"{path}: its sidecar {sidecar} (paths and feature names) is missing.")
        info = json.loads(sidecar.read_text())
        times = None if info.get("times") is None else np.asarray(info["times"])
        table = FeatureTable(np.load(path), info["paths"], info["feature_names"], times, info.get("meta", {}))
    elif suffix == ".npz":
        with np.load(path) as data:
            table = FeatureTable(data["features"], data["paths"].tolist(), data["feature_names"].tolist(),
                                 data["times"] if "times" in data else None, json.loads(str(data["meta"])))
    elif suffix == ".csv":
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            rows = list(reader)
        lead = 2 if len(header) > 1 and header[1] == "time" else 1
        features = np.array([[float(v) for v in row[lead:]] for row in rows], dtype=np.float32)
        times = np.array([float(row[1]) for row in rows]) if lead == 2 else None
        table = FeatureTable(features.reshape(len(rows), len(header) - lead), [row[0] for row in rows],
                             header[lead:], times)
    else:
        _, pq = require_pyarrow()
        data = pq.read_table(path)
        names = [n for n in data.column_names if n not in ("path", "time")]
        features = np.stack([data.column(n).to_numpy() for n in names], axis=1).astype(np.float32)
        times = data.column("time").to_numpy() if "time" in data.column_names else None
        meta = json.loads((data.schema.metadata or {}).get(b"mtlmusic", b"{}"))
        table = FeatureTable(features, data.column("path").to_pylist(), names, times, meta)
    if table.features.shape[0] != len(table.paths):
        raise MtlmusicError(f"{path}: {table.features.shape[0]} rows but {len(table.paths)} paths; the file is damaged.")
    return table


def read_part_paths(part: str | os.PathLike) -> list[str]:
    """The source path of each row of a feature dataset's Parquet part, without reading its features."""
    _, pq = require_pyarrow()
    return pq.read_table(part, columns=["path"]).column("path").to_pylist()


def _read_dataset(folder: Path) -> FeatureTable:
    """The parts of a feature dataset, in order, as one table (``meta["complete"]`` says if the job finished)."""
    manifest = read_manifest(folder)
    parts = [read_features(part) for part in sorted(folder.glob("part-*.parquet"))]
    names = manifest["feature_names"]
    if not parts:
        return FeatureTable(np.zeros((0, len(names)), np.float32), [], names, None,
                            {**manifest["meta"], "complete": manifest["complete"]})
    times = np.concatenate([p.times for p in parts]) if parts[0].times is not None else None
    return FeatureTable(np.concatenate([p.features for p in parts]), [x for p in parts for x in p.paths],
                        names, times, {**manifest["meta"], "complete": manifest["complete"]})


def require_pyarrow():
    """``(pyarrow, pyarrow.parquet)``, or a :class:`~mtlmusic.errors.ConfigError` that says how to install them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ConfigError("Writing Parquet needs pyarrow: pip install 'mtlmusic[parquet]'.") from err
    return pa, pq
