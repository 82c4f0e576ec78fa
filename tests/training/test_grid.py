"""The grid: every run's status, failures recorded while the others finish, and the Ray engine on a local cluster."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
import typer
from safetensors.torch import load_file
from typer.testing import CliRunner

from mtlmusic_training.cli import app
from mtlmusic_training.design import design_runs
from mtlmusic_training.grid import GridError, run_grid, run_status

IDS = {run.name: run.id for run in design_runs()}
TWO_RUNS = [IDS["ssr-bpm"], IDS["ssr-tag"]]
SMALL = {"batch_size": 8, "iterations_per_epoch": 6}


def _states(runs_dir) -> dict[str, str]:
    return {s.run.name: s.state for s in run_status(runs_dir) if s.state != "pending"}


def _epochs_done(runs_dir, name: str) -> int:
    history = runs_dir / name / "history.jsonl"
    return len(history.read_text().splitlines()) if history.exists() else 0


def test_a_failed_run_is_recorded_and_the_others_finish(data_dir, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(GridError, match="ssr-year"):
        run_grid(data_dir, runs, [IDS["ssr-year"], IDS["ssr-bpm"]], epochs=1, device="cpu", log=lambda _: None,
                 **SMALL)
    assert _states(runs) == {"ssr-year": "failed", "ssr-bpm": "done"}
    log = (runs / "ssr-year" / "train.log").read_text()
    assert "failed" in log and "Traceback" in log
    listing = CliRunner().invoke(app, ["status", str(runs)])
    assert "1 done, 1 failed, 88 pending" in listing.output
    assert "ssr-year" in listing.output and "failed:" in listing.output
    log = CliRunner().invoke(app, ["status", str(runs), "--log", "ssr-year", "--tail", "0"])
    assert log.exit_code == 0 and "Traceback" in log.output
    assert CliRunner().invoke(app, ["status", str(runs), "--log", "no-such-run"]).exit_code == 2


def test_runs_trained_together_learn_what_they_learn_alone(data_dir, tmp_path):
    alone, together = tmp_path / "alone", tmp_path / "together"
    run_grid(data_dir, alone, TWO_RUNS, epochs=2, device="cpu", log=lambda _: None, **SMALL)
    with pytest.raises(GridError, match="ssr-year"):
        run_grid(data_dir, together, [IDS["ssr-year"], *TWO_RUNS], epochs=2, device="cpu", together=3,
                 log=lambda _: None, **SMALL)
    assert _states(together) == {"ssr-year": "failed", "ssr-bpm": "done", "ssr-tag": "done"}
    for name in ("ssr-bpm", "ssr-tag"):
        expected = load_file(alone / "models" / f"{name}.safetensors")
        got = load_file(together / "models" / f"{name}.safetensors")
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[key], got[key]) for key in expected)


def test_a_run_failing_while_trained_together_does_not_stop_the_others(data_dir, tmp_path, monkeypatch):
    from mtlmusic_training import trainer as trainer_module

    step = trainer_module.Trainer._step

    def failing_step(self, task):
        if self.config.sources == ["tag"] and task.steps == 2:
            raise RuntimeError("device lost")
        step(self, task)

    monkeypatch.setattr(trainer_module.Trainer, "_step", failing_step)
    runs = tmp_path / "runs"
    with pytest.raises(GridError, match="ssr-tag"):
        run_grid(data_dir, runs, TWO_RUNS, epochs=2, device="cpu", together=2, log=lambda _: None, **SMALL)
    assert _states(runs) == {"ssr-bpm": "done", "ssr-tag": "failed"}
    assert "RuntimeError: device lost" in (runs / "ssr-tag" / "train.log").read_text()


def _training_workers():
    psutil = pytest.importorskip("psutil")
    return [p for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [""])[0].startswith("ray::_train_task")]


def test_ray_grid_survives_a_killed_worker(data_dir, tmp_path, ray_cluster):
    runs = tmp_path / "runs"
    lines: list[str] = []
    grid = threading.Thread(target=run_grid, args=(data_dir, runs, TWO_RUNS),
                            kwargs=dict(epochs=5, device="cpu", engine="ray", log=lines.append, **SMALL))
    grid.start()
    killed = False
    while grid.is_alive() and not killed:
        if _epochs_done(runs, "ssr-bpm") >= 2:
            for process in _training_workers():
                process.send_signal(signal.SIGKILL)
                killed = True
        time.sleep(0.01)
    grid.join()
    assert killed
    assert _states(runs) == {"ssr-bpm": "done", "ssr-tag": "done"}
    assert all(_epochs_done(runs, name) == 5 for name in ("ssr-bpm", "ssr-tag"))
    assert "resumed after epoch" in (runs / "ssr-bpm" / "train.log").read_text()
    assert sum("exported to" in line for line in lines) == 2


def test_ray_grid_resumes_after_the_driver_is_killed(data_dir, tmp_path, ray_cluster):
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "mtlmusic_training.cli", "grid", str(data_dir), str(runs),
               "--runs", ",".join(map(str, TWO_RUNS)), "--epochs", "8", "--device", "cpu", "--batch-size", "8",
               "--iterations-per-epoch", "6", "--engine", "ray", "--address", ray_cluster]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300   # a busy machine starts Ray's workers slowly
    while max(_epochs_done(runs, "ssr-bpm"), _epochs_done(runs, "ssr-tag")) < 2 and time.monotonic() < deadline:
        assert driver.poll() is None, driver.stderr.read().decode()
        time.sleep(0.02)
    assert max(_epochs_done(runs, "ssr-bpm"), _epochs_done(runs, "ssr-tag")) >= 2, "no run reached epoch 2 in 300 s"
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 60  # Ray stops the tasks of a driver that died
    while "running" in _states(runs).values() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "interrupted" in _states(runs).values()
    assert max(_epochs_done(runs, "ssr-bpm"), _epochs_done(runs, "ssr-tag")) < 8

    result = CliRunner().invoke(app, ["grid", str(data_dir), str(runs), "--runs", ",".join(map(str, TWO_RUNS)),
                                      "--epochs", "8", "--device", "cpu", "--batch-size", "8",
                                      "--iterations-per-epoch", "6", "--engine", "ray"])
    assert result.exit_code == 0, result.output
    assert _states(runs) == {"ssr-bpm": "done", "ssr-tag": "done"}
    logs = [(runs / name / "train.log").read_text() for name in ("ssr-bpm", "ssr-tag")]
    assert any("resumed after epoch" in log for log in logs)


def test_without_ray_the_grid_says_how_to_install_it(data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(app, ["grid", str(data_dir), str(tmp_path / "runs"), "--runs", "1", "--engine", "ray"])
    assert result.exit_code == 2 and "pip install 'mtlmusic[ray]'" in result.output


# --- a grid over other sources --------------------------------------------------------------------

OTHER = ("self", "bpm", "onset", "chroma", "tempogram", "timbre", "tag", "mtt")   # slot i replaces SOURCES[i]
OTHER_IDS = {run.name: run.id for run in design_runs(OTHER)}


def _data_with_sources(data_dir, folder, renamed: dict[str, str]):
    """A data folder sharing ``data_dir``'s tracks and cache, with the targets of source ``old`` as ``new``."""
    import dataclasses
    import shutil

    from mtlmusic_training.targets import load_targets, save_targets, targets_path

    folder.mkdir()
    (folder / "cache").symlink_to(data_dir / "cache")
    for name in ("manifest.csv", "scaler.npz"):
        shutil.copy(data_dir / name, folder / name)
    for new, old in renamed.items():
        targets = load_targets(targets_path(data_dir / "targets", old))
        save_targets(dataclasses.replace(targets, source=new), targets_path(folder / "targets", new))
    return folder


def test_a_grid_over_other_sources_records_them_and_refuses_others(data_dir, tmp_path, grid_processes,
                                                                   one_torch_thread):
    data = _data_with_sources(data_dir, tmp_path / "data", {"onset": "bpm", "chroma": "tag"})
    runs = tmp_path / "runs"
    chosen = [OTHER_IDS["ssr-onset"], OTHER_IDS["ssr-chroma"]]
    assert chosen == [IDS["ssr-year"], IDS["ssr-tag"]]  # the slots of year and tag
    run_grid(data, runs, chosen, epochs=1, device="cpu", sources=OTHER, log=lambda _: None, **SMALL)
    assert (runs / "design.json").read_text().strip() == '{"sources": ["self", "bpm", "onset", "chroma", ' \
                                                         '"tempogram", "timbre", "tag", "mtt"]}'
    assert sorted(p.name for p in (runs / "models").iterdir()) == ["ssr-chroma.safetensors", "ssr-onset.safetensors"]
    statuses = run_status(runs)
    assert [s.run.name for s in statuses] == [run.name for run in design_runs(OTHER)]
    assert _states(runs) == {"ssr-onset": "done", "ssr-chroma": "done"}

    listing = CliRunner().invoke(app, ["status", str(runs)])
    assert listing.exit_code == 0 and "2 done, 88 pending" in listing.output and "ssr-chroma" in listing.output
    log = CliRunner().invoke(app, ["status", str(runs), "--log", "ssr-onset"])
    assert log.exit_code == 0 and "exported to" in log.output
    # The same folder without --sources keeps its design (finished runs skipped); other sources are refused.
    again = CliRunner().invoke(app, ["grid", str(data), str(runs), "--runs", ",".join(map(str, chosen)),
                                     "--device", "cpu", "--epochs", "1"])
    assert again.exit_code == 0 and again.output.count("done, skipped") == 2, again.output
    refused = CliRunner().invoke(app, ["grid", str(data), str(runs), "--runs", "1", "--sources",
                                       "self,bpm,year,tag,taste,cdr_tag,lyrics,artist"])
    assert refused.exit_code == 2 and "one runs folder holds one design" in refused.output
    bad = CliRunner().invoke(app, ["grid", str(data), str(tmp_path / "other"), "--sources", "self,bpm"])
    assert bad.exit_code == 2 and "give 8 names" in bad.output and not (tmp_path / "other").exists()

    # Parallel processes get the design's sources on their command lines, which the real CLI accepts.
    run_grid(data, runs, chosen, parallel=2, device="cpu")
    grid_command = typer.main.get_command(app).commands["grid"]
    for command in grid_processes:
        options = grid_command.make_context("grid", command[command.index("grid") + 1:]).params
        assert options["sources"] == ",".join(OTHER)
    assert len(grid_processes) == 2


def test_every_training_command_keeps_freed_memory(tmp_path, monkeypatch):
    """``mtlmusic-train``'s process is its own: malloc keeps what a training step frees."""
    import mtlmusic.extraction.engine as engine

    calls: list = []
    monkeypatch.setattr(engine, "keep_freed_memory", lambda: calls.append("keep_freed_memory"))
    result = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert calls == ["keep_freed_memory"]
