"""The extraction engine's setup and confinement: cores split between decoding workers and network threads
the same way for ``Model.extract(list)`` and ``mtlmusic-extract``, the caller's torch threads and allocator left
alone, workers that do not re-run an unguarded main script, and long files that fail alone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import mtlmusic
import mtlmusic.extraction.engine as engine
from mtlmusic.cli import app
from mtlmusic.extraction import extract_files, run_job
from mtlmusic.extraction.engine import EngineSetup, engine_setup
from samples import tone


@pytest.fixture(scope="module")
def model(model_file):
    return mtlmusic.load_model(model_file, device="cpu")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for i, seconds in enumerate((3.0, 4.0, 3.5)):
        path = folder / f"clip{i}.flac"
        sf.write(path, tone(seconds, 22050, seed=i), 22050)
        paths.append(path)
    return paths


@pytest.fixture
def caller_threads():
    """The test's own torch thread count (3, whatever the machine), put back as it was afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(previous)


def _record_workers(monkeypatch) -> list[int]:
    """Spy on the engine: the number of decoding workers of each run."""
    seen, run = [], engine._extract

    def spy(model, paths, workers, keep_slices):
        seen.append(workers)
        return run(model, paths, workers, keep_slices)

    monkeypatch.setattr(engine, "_extract", spy)
    return seen


def _record_network_threads(monkeypatch, model) -> list[int]:
    """Spy on the network: torch's thread count at each forward pass."""
    seen, forward = [], model.slice_features

    def spy(slices):
        seen.append(torch.get_num_threads())
        return forward(slices)

    monkeypatch.setattr(model, "slice_features", spy)
    return seen


# --- 1. one engine setup for the API and the CLI ---------------------------------------------------

def test_engine_setup_splits_the_cores():
    assert engine_setup(cores=2) == EngineSetup(workers=1, threads=1)
    assert engine_setup(cores=1) == EngineSetup(workers=0, threads=1)
    assert engine_setup(cores=16) == EngineSetup(workers=15, threads=1)
    assert engine_setup(workers=3, cores=16) == EngineSetup(workers=3, threads=13)
    assert engine_setup(workers=0, cores=4) == EngineSetup(workers=0, threads=4)
    assert engine_setup(workers=8, cores=4) == EngineSetup(workers=8, threads=1)
    # a few files: starting a worker costs more than this process decoding them meanwhile
    assert engine_setup(files=3, cores=16) == EngineSetup(workers=0, threads=16)
    assert engine_setup(files=2 * engine.FILES_PER_WORKER, cores=16) == EngineSetup(workers=2, threads=14)
    assert engine_setup(files=1000, cores=4) == EngineSetup(workers=3, threads=1)


def test_available_cores_follow_the_affinity(monkeypatch):
    monkeypatch.setattr(engine.os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert engine.available_cores() == 3
    assert engine_setup(workers=1) == EngineSetup(workers=1, threads=2)
    monkeypatch.delattr(engine.os, "sched_getaffinity", raising=False)  # where it does not exist
    monkeypatch.setattr(engine.os, "cpu_count", lambda: 6)
    assert engine.available_cores() == 6


def test_api_runs_the_engine_setup_and_restores_the_callers_threads(model, clips, monkeypatch, caller_threads):
    monkeypatch.setattr(engine, "available_cores", lambda: 2)
    monkeypatch.setattr(engine, "FILES_PER_WORKER", 1)  # a worker even for 3 files
    workers = _record_workers(monkeypatch)
    threads = _record_network_threads(monkeypatch, model)

    features = model.extract(clips)

    assert workers == [1]  # as mtlmusic-extract on 2 cores: one decoding worker ...
    assert threads and set(threads) == {1}  # ... and the network on the one core left
    assert torch.get_num_threads() == caller_threads
    assert np.allclose(features, np.stack([model.extract(p) for p in clips]), atol=1e-5)


def test_api_on_a_few_files_decodes_in_this_process(model, clips, monkeypatch, caller_threads):
    monkeypatch.setattr(engine, "available_cores", lambda: 2)
    workers = _record_workers(monkeypatch)
    threads = _record_network_threads(monkeypatch, model)
    model.extract(clips)
    assert workers == [0] and set(threads) == {2}
    assert torch.get_num_threads() == caller_threads


def test_the_callers_threads_between_results(model, clips, monkeypatch, caller_threads):
    monkeypatch.setattr(engine, "available_cores", lambda: 1)
    model.batch_size = 1  # a forward pass per file, between the results
    threads = _record_network_threads(monkeypatch, model)
    try:
        for result in extract_files(model, clips, workers=None):
            assert result.ok and torch.get_num_threads() == caller_threads
        seen_between = torch.get_num_threads()
    finally:
        model.batch_size = 64
    assert set(threads) == {1} and seen_between == caller_threads

    results = extract_files(model, clips, workers=None)
    next(results)
    results.close()  # abandoned after the first result
    assert torch.get_num_threads() == caller_threads


def test_an_explicit_worker_count_leaves_the_threads_to_the_caller(model, clips, monkeypatch, caller_threads):
    threads = _record_network_threads(monkeypatch, model)
    assert all(r.ok for r in extract_files(model, clips, workers=0))
    assert set(threads) == {caller_threads}


def test_cli_sizes_its_threads_with_the_engine_setup(model_file, clips, monkeypatch, tmp_path, caller_threads):
    monkeypatch.setattr(engine, "available_cores", lambda: 4)
    workers = _record_workers(monkeypatch)
    runner = CliRunner()
    folder = str(clips[0].parent)

    result = runner.invoke(app, ["extract", folder, "-o", str(tmp_path / "a.npy"), "-m", str(model_file), "-q",
                                 "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert workers == [0] and torch.get_num_threads() == 4  # the CLI owns its process: 4 - 0 threads

    torch.set_num_threads(caller_threads)
    result = runner.invoke(app, ["extract", folder, "-o", str(tmp_path / "b.npy"), "-m", str(model_file), "-q"])
    assert result.exit_code == 0, result.output
    assert workers[1] == engine_setup(files=len(clips)).workers  # by default, as Model.extract(list) chooses


def test_workers_do_not_rerun_an_unguarded_script(model_file, clips, tmp_path):
    """A script calling Model.extract(list) at its top level, without ``if __name__ == "__main__"``."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import mtlmusic
        import mtlmusic.extraction.engine as engine
        engine.FILES_PER_WORKER = 1
        engine.available_cores = lambda: 2
        print("script ran", flush=True)
        model = mtlmusic.load_model({str(model_file)!r}, device="cpu")
        runs = []
        original = engine._extract
        engine._extract = lambda *args: runs.append(args[2]) or original(*args)
        print("shape", model.extract({[str(p) for p in clips]!r}).shape, "workers", runs)
    """))
    package_root = str(Path(mtlmusic.__file__).parents[1])  # this mtlmusic, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("script ran") == 1
    assert "shape (3, 1536) workers [1]" in done.stdout


# --- 2. the allocator of a library caller's process is left alone ---------------------------------------

class _FakeLibc:
    def __init__(self, calls: list):
        self.calls = calls

    def mallopt(self, *args):
        self.calls.append(args)


def test_list_extraction_leaves_the_callers_allocator_alone(model, clips, monkeypatch):
    calls: list = []
    monkeypatch.setattr(engine, "keep_freed_memory", lambda: calls.append("keep_freed_memory"))
    monkeypatch.setattr(engine.ctypes, "CDLL", lambda name, *a, **k: _FakeLibc(calls))
    monkeypatch.setattr(engine, "available_cores", lambda: 2)

    model.extract(clips)  # 3 files: all in this process
    assert all(r.ok for r in extract_files(model, clips, workers=0))
    assert all(r.ok for r in extract_files(model, clips[:1], workers=0, keep_slices=True))
    assert calls == []


def test_the_cli_and_the_workers_tune_their_own_allocator(model_file, clips, monkeypatch, tmp_path, caller_threads):
    calls: list = []
    monkeypatch.setattr(engine, "keep_freed_memory", lambda: calls.append("keep_freed_memory"))
    result = CliRunner().invoke(app, ["extract", str(clips[0].parent), "-o", str(tmp_path / "f.npy"),
                                      "-m", str(model_file), "-q", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert calls == ["keep_freed_memory"]

    calls.clear()
    scaler = mtlmusic.load_model(model_file, device="cpu").scaler_cpu
    try:
        engine._init_worker(scaler.mean.numpy(), scaler.std.numpy())  # what each worker process runs first
    finally:
        engine._worker_scaler = None
    assert calls == ["keep_freed_memory"]


def test_keep_freed_memory_calls_mallopt(monkeypatch):
    calls: list = []
    monkeypatch.setattr(engine.ctypes, "CDLL", lambda name, *a, **k: _FakeLibc(calls))
    engine.keep_freed_memory.__wrapped__()  # past the once-per-process cache
    assert calls == [(-1, 2**31 - 1), (-4, 0)]


_FAULTS_PER_BLOCK = """
import resource, sys, torch
from mtlmusic.extraction.engine import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    torch.ones(64 << 20, dtype=torch.uint8)  # the first blocks fault in either way
before = faults()
for _ in range(10):
    torch.ones(64 << 20, dtype=torch.uint8)  # 64 MB, freed at once: a batch's activations
print((faults() - before) // 10)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="glibc's malloc only")
def test_kept_memory_is_not_faulted_in_again():
    """A block above glibc's largest mmap threshold (32 MB), freed and allocated again, costs no page faults."""
    def faults_per_block(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS_PER_BLOCK, mode], capture_output=True, text=True,
                             check=True).stdout
        return int(out.split()[-1])

    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert faults_per_block("default") > pages // 2   # mapped afresh and faulted in for every block
    assert faults_per_block("keep") < pages // 4      # the heap's memory, reused (it may grow once or twice)


# --- 3. an unexpected error in a long file fails that file only -------------------------------------------

@pytest.fixture
def long_file_crashes(model, clips, monkeypatch):
    """Every clip is a 'long' file (streamed in this process), and decoding the second one crashes."""
    monkeypatch.setattr(engine, "LONG_AUDIO_SECONDS", 1.0)
    stream = model.track_features

    def crashing(source, sr=None):
        if Path(source) == clips[1]:
            raise RuntimeError("decoder exploded")
        return stream(source, sr)

    monkeypatch.setattr(model, "track_features", crashing)
    return clips[1]


def test_a_crash_in_a_long_file_fails_that_file_only(model, clips, long_file_crashes):
    results = list(extract_files(model, clips, workers=0))
    assert [r.path for r in results] == clips
    assert results[0].ok and results[2].ok
    assert results[0].features.shape == (model.dim,)
    assert results[1].error == f"{clips[1]}: RuntimeError: decoder exploded"
    assert results[1].features is None


def test_a_crash_in_a_long_file_is_in_the_failures_report(model, clips, long_file_crashes, tmp_path):
    summary = run_job(model, clips, output=tmp_path / "feats.npy", workers=0)
    assert summary.extracted == 2
    assert summary.failures == [(str(clips[1]), f"{clips[1]}: RuntimeError: decoder exploded")]
    report = summary.failures_file.read_text().splitlines()
    assert report[1] == f"{clips[1]}\t{clips[1]}: RuntimeError: decoder exploded"
    assert np.load(tmp_path / "feats.npy").shape == (2, model.dim)
