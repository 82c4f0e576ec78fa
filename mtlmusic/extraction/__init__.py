"""Extraction over many files: the engine, resumable jobs, output files, and the Ray engine.

========================  ==========================================================
module                    what it does
========================  ==========================================================
:mod:`.engine`            decodes files in worker processes and batches slices of
                          many tracks through the network (:func:`extract_files`)
:mod:`.jobs`              a whole collection to one output: shards, resume, failure
                          report (:func:`run_job`, behind ``mtlmusic-extract``)
:mod:`.sinks`             feature files and datasets: ``.npy``, ``.npz``, ``.csv``,
                          ``.parquet``, Parquet folders (:func:`write_features`,
                          :func:`read_features`)
:mod:`.distributed`       the same jobs on a Ray cluster (:func:`extract_on_ray`)
========================  ==========================================================

Examples
--------
>>> from mtlmusic.extraction import find_audio_files, read_features, run_job
>>> find_audio_files([])
[]
"""

from .distributed import extract_on_ray, ray_extract_files
from .engine import TrackResult, extract_files, find_audio_files
from .jobs import JobSummary, read_path_list, run_job
from .sinks import FeatureTable, read_features, write_features

__all__ = ["FeatureTable", "JobSummary", "TrackResult", "extract_files", "extract_on_ray", "find_audio_files",
           "ray_extract_files", "read_features", "read_path_list", "run_job", "write_features"]
