"""The Ray engine on a local cluster next to one process, measured in the same run.

Extraction (default): a folder of 30 s MP3s is extracted by the single-machine
CLI path (``run_job``: decoding workers + batched network) and by
``extract_on_ray`` on a local Ray cluster of ``--cpus`` CPUs; prints both rates
in audio-seconds per wall-second, their ratio, the cluster's start-up time
(paid once per cluster, not per job) and checks that the two outputs are equal.

Grid (``--grid DATA``): the runs named by ``--runs`` are trained for
``--epochs`` short epochs one after the other in this process, then again as
Ray tasks of one CPU each; prints training samples per second of both.

Usage::

    python benchmarks/distributed_throughput.py [--dir FOLDER_OF_MP3] [--files 60] [--cpus 2] [--files-per-task 8]
    python benchmarks/distributed_throughput.py --grid DATA --runs ssr-self,ssr-bpm [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))
from extract_throughput import benchmark_model, make_collection  # noqa: E402


def start_cluster(cpus: int) -> float:
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
    return time.perf_counter() - start


def extraction_benchmark(args) -> None:
    from mtlmusic.extraction.distributed import extract_on_ray
    from mtlmusic.extraction.sinks import read_features
    from mtlmusic.extraction.jobs import run_job

    folder = Path(args.dir) if args.dir else Path(tempfile.gettempdir()) / "mtlmusic-bench-mp3"
    paths = sorted(folder.glob("*.mp3"))[: args.files] if args.dir else make_collection(folder, args.files)
    audio_seconds = sum(sf.info(p).duration for p in paths)
    model, label = benchmark_model(args.model, folder)
    workers = max(1, args.cpus - 1)
    print(f"{len(paths)} files, {audio_seconds:.0f} s of audio; model {label}; {os.cpu_count()} CPUs here")

    with tempfile.TemporaryDirectory() as out:
        torch.set_num_threads(max(1, args.cpus - workers))  # as mtlmusic-extract does
        start = time.perf_counter()
        run_job(model, paths, output=Path(out) / "one.npy", workers=workers)
        single = time.perf_counter() - start

        startup = start_cluster(args.cpus)
        start = time.perf_counter()
        summary = extract_on_ray(model, paths, Path(out) / "ray.npy", files_per_task=args.files_per_task)
        distributed = time.perf_counter() - start
        assert not summary.failures, summary.failures
        a, b = read_features(Path(out) / "one.npy"), read_features(Path(out) / "ray.npy")
        assert a.paths == b.paths and np.allclose(a.features, b.features, atol=1e-4)

    print(f"single process ({workers} decoding workers): {audio_seconds / single:8.1f} audio-s per wall-s ({single:.1f} s)")
    print(f"Ray, local cluster of {args.cpus} CPUs:     {audio_seconds / distributed:8.1f} audio-s per wall-s "
          f"({distributed:.1f} s; {args.files_per_task} files per task)")
    print(f"ratio Ray / single: {single / distributed:.2f}x; cluster start-up {startup:.1f} s (once per cluster); "
          "outputs equal")


def grid_benchmark(args) -> None:
    from mtlmusic_training.design import design_runs
    from mtlmusic_training.grid import run_grid

    ids = {run.name: run.id for run in design_runs()}
    run_ids = [ids[name] for name in args.runs.split(",")]
    config = {"batch_size": 48, "iterations_per_epoch": args.iterations}
    samples = len(run_ids) * args.epochs * args.iterations * 48
    with tempfile.TemporaryDirectory() as out:
        torch.set_num_threads(args.cpus)
        start = time.perf_counter()
        run_grid(args.grid, Path(out) / "one", run_ids, epochs=args.epochs, device="cpu", log=lambda _: None, **config)
        single = time.perf_counter() - start
        startup = start_cluster(args.cpus)
        start = time.perf_counter()
        run_grid(args.grid, Path(out) / "ray", run_ids, epochs=args.epochs, device="cpu", engine="ray",
                 log=lambda _: None, **config)
        distributed = time.perf_counter() - start
    print(f"{len(run_ids)} runs x {args.epochs} epochs x {args.iterations} batches of 48 "
          f"(about {samples} training examples; wall time includes loading the data and validation)")
    print(f"one after the other, {args.cpus} threads: {single:7.1f} s ({samples / single:.0f} samples/s)")
    print(f"Ray tasks of 1 CPU on {args.cpus} CPUs:  {distributed:7.1f} s ({samples / distributed:.0f} samples/s; "
          f"ratio {single / distributed:.2f}x; cluster start-up {startup:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=60, help="30 s MP3 files (generated unless --dir)")
    parser.add_argument("--dir", help="use the MP3 files of this folder")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray cluster")
    parser.add_argument("--files-per-task", type=int, default=8)
    parser.add_argument("--model", help="model name or file (default: the embedded default)")
    parser.add_argument("--grid", help="a prepared data folder: benchmark the grid instead")
    parser.add_argument("--runs", default="ssr-self,ssr-bpm", help="runs of the design to train (names)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20, help="batches per epoch")
    args = parser.parse_args()
    grid_benchmark(args) if args.grid else extraction_benchmark(args)


if __name__ == "__main__":
    main()
