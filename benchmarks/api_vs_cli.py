"""``Model.extract(list_of_paths)`` against ``mtlmusic-extract`` on the same files, idle and beside a busy core.

Both should run the same engine (decoding workers and network threads chosen by
``mtlmusic.extraction.engine.engine_setup`` from the cores available), so the
Python API should take about as long as the CLI, also when other work runs on
the machine. For each condition (``idle``, and ``busy``: one more process
spinning a Python loop on a core), the script times, alternately and
``--repeats`` times each:

* ``api``: ``model.extract(paths)`` in this process, the model loaded beforehand
  and torch left at its default thread count, as a library user has it;
* ``cli``: ``mtlmusic-extract FOLDER -o OUT.npy`` in a subprocess. Its ``job``
  time is the extraction as the CLI reports it (audio seconds over its
  "Nx real time"), without starting Python and loading the model, which its
  ``wall`` time includes;

and prints the best time of each, and the ratio api / cli job (target: about 1.1
at most). ``--legacy`` also times the engine as ``Model.extract(list)`` ran it
before (no decoding worker, torch on every core).

Usage::

    python benchmarks/api_vs_cli.py [--files 30] [--seconds 30] [--format flac|mp3] [--repeats 3] [--legacy]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_throughput import benchmark_model, make_music  # noqa: E402


def make_files(folder: Path, n_files: int, seconds: float, fmt: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        path = folder / f"track{i:03d}.{fmt}"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp")
            sf.write(tmp, make_music(seconds, 44100, i), 44100, format=fmt.upper())
            tmp.replace(path)
        paths.append(path)
    return paths


def cli_command() -> list[str]:
    script = shutil.which("mtlmusic-extract")
    if script:
        return [script]
    return [sys.executable, "-c", "from mtlmusic.cli import extract_app; extract_app()"]


def time_api(model, paths: list[Path]) -> float:
    start = time.perf_counter()
    features = model.extract(paths)
    elapsed = time.perf_counter() - start
    assert features.shape == (len(paths), model.dim)
    return elapsed


LEGACY = """
import sys, time
import mtlmusic
from mtlmusic.extraction.engine import extract_files, keep_freed_memory
keep_freed_memory()  # as extract_files did in the caller's process
model = mtlmusic.load_model(sys.argv[1], device="cpu")
paths = sys.argv[2:]
list(extract_files(model, paths[:1], workers=0))
start = time.perf_counter()
assert all(r.ok for r in extract_files(model, paths, workers=0))
print(time.perf_counter() - start)
"""


def time_legacy(model_arg: str, paths: list[Path]) -> float:
    """Model.extract(list) as it ran before, in a process of its own (its allocator settings are process-wide):
    no decoding worker, torch on its default threads."""
    done = subprocess.run([sys.executable, "-c", LEGACY, model_arg, *map(str, paths)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"legacy run failed ({done.returncode}):\n{done.stderr}")
    return float(done.stdout.split()[-1])


def time_cli(model_arg: str, folder: Path, audio_seconds: float) -> tuple[float, float]:
    """(wall, job) seconds of one ``mtlmusic-extract`` run on ``folder``."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run([*cli_command(), str(folder), "-o", str(Path(out) / "feats.npy"), "-m", model_arg, "-q",
                               "--device", "cpu"], capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"mtlmusic-extract failed ({done.returncode}):\n{done.stderr}")
    rate = re.search(r"\(([\d.]+)x real time\)", done.stderr)
    return wall, audio_seconds / float(rate.group(1)) if rate else wall


def spin() -> subprocess.Popen:
    """A process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=30, help="audio files to generate")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each file")
    parser.add_argument("--format", choices=["flac", "mp3"], default="flac")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind per condition (best is kept)")
    parser.add_argument("--model", help="model name or file (default: the embedded default)")
    parser.add_argument("--legacy", action="store_true", help="also time Model.extract(list)'s former engine setup")
    args = parser.parse_args()

    import mtlmusic.extraction.engine as engine

    folder = Path(tempfile.gettempdir()) / f"mtlmusic-bench-api-{args.format}-{args.files}x{args.seconds:g}s"
    started = time.perf_counter()
    paths = make_files(folder, args.files, args.seconds, args.format)
    audio_seconds = sum(sf.info(p).duration for p in paths)
    model, label = benchmark_model(args.model, folder)
    model_arg = model.config.get("path") or args.model or "default"
    setup = engine.engine_setup(files=len(paths))
    print(f"{len(paths)} {args.format.upper()} files, {audio_seconds:.0f} s of audio ({time.perf_counter() - started:.0f} s "
          f"to make); model {label}; {engine.available_cores()} cores available, load average "
          f"{os.getloadavg()[0]:.1f}; engine: {setup.workers} decoding worker(s), {setup.threads} network thread(s)")
    model.extract(paths[:1])  # warm-up: first forward passes, imports

    rows = []
    for condition in ("idle", "busy"):
        spinner = spin() if condition == "busy" else None
        try:
            if spinner:
                time.sleep(0.5)
            api, cli_wall, cli_job, legacy = [], [], [], []
            for _ in range(args.repeats):
                api.append(time_api(model, paths))
                wall, job = time_cli(model_arg, folder, audio_seconds)
                cli_wall.append(wall)
                cli_job.append(job)
                if args.legacy:
                    legacy.append(time_legacy(model_arg, paths))
        finally:
            if spinner:
                spinner.kill()
                spinner.wait()
        rows.append((condition, min(api), min(cli_job), min(cli_wall), min(legacy) if legacy else None))
        print(f"  {condition}: api {' '.join(f'{t:.1f}' for t in api)} s; cli job {' '.join(f'{t:.1f}' for t in cli_job)} s"
              f" (wall {' '.join(f'{t:.1f}' for t in cli_wall)} s)"
              + (f"; legacy api {' '.join(f'{t:.1f}' for t in legacy)} s" if legacy else ""), flush=True)

    print(f"\n{'condition':<10}{'api (s)':>9}{'cli job (s)':>13}{'cli wall (s)':>14}{'api/cli':>9}"
          + (f"{'legacy api (s)':>16}{'legacy/cli':>12}" if args.legacy else ""))
    for condition, api, job, wall, legacy in rows:
        print(f"{condition:<10}{api:>9.2f}{job:>13.2f}{wall:>14.2f}{api / job:>9.2f}"
              + (f"{legacy:>16.2f}{legacy / job:>12.2f}" if legacy is not None else ""))
    print(f"(best of {args.repeats}; api/cli target: <= ~1.1)")


if __name__ == "__main__":
    main()
