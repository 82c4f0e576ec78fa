"""The Ray engine on a local 2-CPU cluster: same rows as one machine, killed workers, interrupted runs."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import mtlmusic
from mtlmusic.cli import app
from mtlmusic.extraction.distributed import extract_on_ray, ray_extract_files
from mtlmusic.extraction.sinks import read_features
from mtlmusic.extraction.jobs import run_job
from samples import tone

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """30 clips of 4 s in two folders, and one file that is not audio."""
    folder = tmp_path_factory.mktemp("clips")
    for i in range(30):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        sf.write(sub / f"clip{i:02d}.flac", tone(4.0, 22050, seed=i), 22050)
    (folder / "b" / "clip15-broken.mp3").write_bytes(b"not audio at all" * 64)
    return folder


@pytest.fixture(scope="module")
def one_machine(clips, model_file, tmp_path_factory):
    """The single-process result on the same input, to compare with."""
    out = tmp_path_factory.mktemp("local") / "feats.npy"
    summary = run_job(mtlmusic.load_model(model_file, device="cpu"), [clips], output=out, workers=0)
    return read_features(out), summary


def _same_rows(out: Path, one_machine) -> None:
    table, _ = one_machine
    got = read_features(out)
    assert got.paths == table.paths
    assert np.allclose(got.features, table.features, atol=1e-5)


def test_same_rows_and_failures_as_one_machine(clips, model_file, one_machine, tmp_path, ray_cluster):
    out = tmp_path / "feats.npy"
    summary = extract_on_ray(str(model_file), clips, out, files_per_task=4)
    _same_rows(out, one_machine)
    assert summary.failures and summary.failures[0][0] == one_machine[1].failures[0][0]
    failures = (tmp_path / "feats.npy.failures.tsv").read_text().splitlines()
    assert len(failures) == 2 and failures[1].split("\t")[0].endswith("clip15-broken.mp3")


def _extraction_workers() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline and cmdline[0].startswith("ray::_extract_task"):
            found.append(process)
    return found


def _run_killing_a_worker(job, *args, **kwargs):
    """``job(*args, **kwargs)`` in a thread while the first extraction worker seen running is killed; its result."""
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=job(*args, **kwargs)))
    thread.start()
    killed = 0
    while thread.is_alive() and not killed:
        for process in _extraction_workers():
            process.send_signal(signal.SIGKILL)
            killed += 1
        time.sleep(0.005)
    thread.join()
    assert killed, "no extraction worker was seen running"
    return outcome["result"]


def test_a_killed_worker_loses_and_duplicates_nothing(clips, model_file, one_machine, tmp_path, ray_cluster):
    out = tmp_path / "feats.npy"
    summary = _run_killing_a_worker(extract_on_ray, str(model_file), clips, out, files_per_task=3)
    _same_rows(out, one_machine)
    assert [path for path, _ in summary.failures] == [path for path, _ in one_machine[1].failures]
    assert summary.extracted == 30


def test_a_task_out_of_retries_is_split_into_one_task_per_file(clips, model_file, one_machine, tmp_path,
                                                                ray_cluster):
    out = tmp_path / "feats.npy"
    engine = functools.partial(ray_extract_files, files_per_task=6, max_retries=0)
    model = mtlmusic.load_model(model_file, device="cpu")
    summary = _run_killing_a_worker(run_job, model, [clips], output=out, extract=engine)
    _same_rows(out, one_machine)
    assert summary.extracted == 30


@pytest.mark.parametrize("name", ["feats.npy", "dataset"])
def test_an_interrupted_run_resumes_without_redoing_finished_shards(clips, model_file, one_machine, tmp_path,
                                                                   ray_cluster, name):
    out = tmp_path / name
    seen = []

    def interrupt_after_twelve(result):
        seen.append(result)
        if len(seen) == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_on_ray(str(model_file), clips, out, files_per_task=2, checkpoint_every=4,
                                            on_result=interrupt_after_twelve)
    if name == "dataset":
        assert not read_features(out).meta["complete"] and len(list(out.glob("part-*.parquet"))) >= 2
    else:
        assert not out.exists() and len(list((tmp_path / ".feats.npy.parts").glob("shard-*.npz"))) >= 2
    summary = extract_on_ray(str(model_file), clips, out, files_per_task=2)
    assert summary.skipped >= 8 and summary.skipped + summary.extracted + len(summary.failures) == 31
    if name == "dataset":
        table, reference = read_features(out), one_machine[0]
        assert table.meta["complete"] and sorted(table.paths) == sorted(reference.paths)
        order = [table.paths.index(p) for p in reference.paths]
        assert np.allclose(table.features[order], reference.features, atol=1e-5)
    else:
        _same_rows(out, one_machine)


def test_command_line_with_a_list_of_files(clips, model_file, one_machine, tmp_path, ray_cluster):
    listing = tmp_path / "files.txt"
    listing.write_text("".join(f"{path}\n" for path in one_machine[0].paths))
    out = tmp_path / "feats.npy"
    result = CliRunner().invoke(app, ["extract", "--files-from", str(listing), "-o", str(out), "-m", str(model_file),
                                      "--engine", "ray", "--address", ray_cluster, "--cpus-per-task", "0.5", "-q"])
    assert result.exit_code == 0, result.output
    _same_rows(out, one_machine)


def test_slice_rows_and_per_file_outputs(clips, model_file, tmp_path, ray_cluster):
    model = mtlmusic.load_model(model_file, device="cpu")
    run_job(model, [clips / "a"], output=tmp_path / "one.npz", per_file=tmp_path / "one", slices=True)
    extract_on_ray(model, clips / "a", tmp_path / "ray.npz", per_file=tmp_path / "ray", slices=True, files_per_task=5)
    a, b = read_features(tmp_path / "one.npz"), read_features(tmp_path / "ray.npz")
    assert a.paths == b.paths and np.array_equal(a.times, b.times)
    assert np.allclose(a.features, b.features, atol=1e-5)
    written = sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*.npz"))
    assert written == sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.npz"))
    assert len(written) == 15


def test_without_ray_the_engine_says_how_to_install_it(clips, model_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(app, ["extract", str(clips), "-o", str(tmp_path / "f.npy"), "-m", str(model_file),
                                      "--engine", "ray", "-q"])
    assert result.exit_code == 2
    assert "pip install 'mtlmusic[ray]'" in " ".join(result.output.split())


def test_an_unreachable_cluster_fails_fast(clips, model_file, tmp_path):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "mtlmusic.cli", "extract", str(clips), "-o", str(tmp_path / "f.npy"),
                             "-m", str(model_file), "--engine", "ray", "--address", "127.0.0.1:9", "-q"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Cannot reach the Ray cluster at 127.0.0.1:9" in " ".join(result.stderr.split())
    assert time.monotonic() - started < 60 and not (tmp_path / "f.npy").exists()
