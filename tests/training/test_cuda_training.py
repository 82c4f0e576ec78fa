"""On a CUDA device: the trainer's fast path (the cache on the GPU, CUDA graphs, bf16, fused Adam) against the CPU
and the eager fp32 step, steps that never wait for the GPU, resume, the pinned host fallback, runs trained together,
and ``--parallel`` placement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlmusic_training.design import design_runs
from mtlmusic_training.grid import run_grid
from mtlmusic_training.melcache import MelCache
from mtlmusic_training.trainer import (Trainer, TrainConfig, load_training_data, release_resident_caches,
                                       resident_cache, train_together)

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SOURCES = ["self", "bpm"]
EAGER_FP32 = dict(amp=False, channels_last=False, graphs=False)
AUGMENT = {"gain_db": 6.0, "eq_db": 6.0, "pitch_bands": 1.5, "stretch": 0.1}


def _config(architecture="MS-CR@2", sources=SOURCES, **kw):
    defaults = dict(epochs=3, batch_size=8, iterations_per_epoch=24, lr=1e-3, device="cuda", seed=0, valid_tracks=8)
    return TrainConfig(architecture, sources, **{**defaults, **kw})


def _trainer(data, folder, log=lambda _: None, dropout=True, **kw) -> Trainer:
    trainer = Trainer(_config(**kw), data, folder, log=log)
    if not dropout:   # runs on different devices draw different dropout masks: compare them without
        for module in trainer.network.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    return trainer


def _losses(trainer: Trainer, kind: str) -> np.ndarray:
    return np.array([[record[kind][s] for s in SOURCES] for record in trainer.history])


@pytest.fixture(autouse=True)
def _no_cache_on_the_device():
    release_resident_caches()
    yield
    release_resident_caches()
    torch.cuda.empty_cache()


@pytest.fixture(scope="module")
def data(data_dir):
    return load_training_data(data_dir, SOURCES)


@pytest.mark.parametrize("augment", [{}, AUGMENT], ids=["plain", "augmented"])
def test_a_short_run_on_the_gpu_equals_the_cpu_run(data, tmp_path, augment):
    short = dict(dropout=False, epochs=2, iterations_per_epoch=6, augment=augment)
    cpu = _trainer(data, tmp_path / "cpu", device="cpu", **short)
    eager = _trainer(data, tmp_path / "eager", **short, **EAGER_FP32)
    fast = _trainer(data, tmp_path / "fast", **short)
    for trainer in (cpu, eager, fast):
        trainer.train()
    for kind in ("train_loss", "valid_loss"):
        np.testing.assert_allclose(_losses(eager, kind), _losses(cpu, kind), rtol=2e-2, atol=1e-3)
        np.testing.assert_allclose(_losses(fast, kind), _losses(cpu, kind), rtol=5e-2, atol=1e-2)


def test_the_fast_step_follows_the_eager_fp32_step(data, tmp_path):
    """The same run (same choices, same dropout stream) with CUDA graphs, bf16 and channels-last, and without."""
    lines = []
    fast = _trainer(data, tmp_path / "fast", log=lines.append)
    eager = _trainer(data, tmp_path / "eager", **EAGER_FP32)
    fast.train()
    eager.train()
    assert "crops cut on cuda:" in lines[0] and "float16" in lines[0]
    assert fast.capture and all(task.graph is not None for task in fast.tasks)
    assert eager.resident is fast.resident and not eager.capture
    for kind in ("train_loss", "valid_loss"):
        np.testing.assert_allclose(_losses(fast, kind), _losses(eager, kind), rtol=0.1, atol=0.05)
    assert _losses(fast, "train_loss")[-1, 1] < 0.5 * _losses(fast, "train_loss")[0, 1]


@pytest.mark.parametrize("graphs,augment", [(True, {}), (False, {}), (True, AUGMENT)])
def test_the_steps_never_wait_for_the_gpu(data, tmp_path, graphs, augment):
    trainer = _trainer(data, tmp_path / "run", epochs=1, graphs=graphs, augment=augment)
    trainer.train()    # the first epoch captures every task's graph
    assert all((task.graph is not None) == graphs for task in trainer.tasks)
    with trainer._turn():
        order = trainer._begin_epoch()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for k in order:
                trainer._step(trainer.tasks[k])
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert sum(task.counter.item() for task in trainer.tasks) == len(order)


def test_a_run_resumed_on_the_gpu_continues_where_it_stopped(data, tmp_path):
    straight = _trainer(data, tmp_path / "a")
    straight.train()
    _trainer(data, tmp_path / "b", epochs=2).train()
    lines = []
    resumed = _trainer(data, tmp_path / "b", log=lines.append)
    assert resumed.epoch == 2 and any("resumed after epoch 2" in line for line in lines)
    resumed.train()
    assert len(resumed.history) == 3
    np.testing.assert_allclose(_losses(resumed, "train_loss"), _losses(straight, "train_loss"), rtol=2e-2, atol=1e-3)
    a, b = straight.network.state_dict(), resumed.network.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-2, atol=2e-2) for k in a)


def test_the_cache_falls_back_to_pinned_host_crops(data, tmp_path):
    lines = []
    host = _trainer(data, tmp_path / "host", log=lines.append, device_memory_share=1e-9, **EAGER_FP32)
    assert host.resident is None and "crops cut in host memory" in lines[0]
    assert not host.capture and host.host_crops.buffers[0].is_pinned()
    host.train()
    resident = _trainer(data, tmp_path / "resident", **EAGER_FP32)
    resident.train()
    for kind in ("train_loss", "valid_loss"):
        np.testing.assert_allclose(_losses(host, kind), _losses(resident, kind), rtol=1e-3, atol=1e-4)


def test_uint8_crops_on_the_gpu_decode_as_on_the_cpu(data_dir):
    cache = MelCache.open(data_dir / "cache")
    tracks = np.arange(len(cache))
    rows, starts = torch.tensor([3, 0, 17]), torch.tensor([0, 20, 43])
    on_cpu = resident_cache(cache, tracks, torch.device("cpu"), "uint8").crops(rows, starts)
    on_gpu = resident_cache(cache, tracks, torch.device("cuda", 0), "uint8").crops(rows.cuda(), starts.cuda())
    torch.testing.assert_close(on_gpu.cpu(), on_cpu)


def test_runs_trained_together_on_the_gpu_learn_what_they_learn_alone(data, tmp_path):
    alone = [_trainer(data, tmp_path / f"alone{seed}", seed=seed, **EAGER_FP32) for seed in (0, 1)]
    for trainer in alone:
        trainer.train()
    together = [_trainer(data, tmp_path / f"together{seed}", seed=seed, **EAGER_FP32) for seed in (0, 1)]
    train_together(together)
    assert together[0].resident is together[1].resident
    for a, b in zip(alone, together):
        np.testing.assert_allclose(_losses(b, "train_loss"), _losses(a, "train_loss"), rtol=1e-3, atol=1e-4)
    fast = [_trainer(data, tmp_path / f"fast{seed}", seed=seed) for seed in (0, 1)]
    train_together(fast)
    assert all(task.graph is not None for trainer in fast for task in trainer.tasks)


def test_parallel_processes_train_on_every_gpu(data_dir, tmp_path):
    ids = {run.name: run.id for run in design_runs()}
    runs = tmp_path / "runs"
    run_grid(data_dir, runs, [ids["ssr-bpm"], ids["ssr-tag"]], epochs=1, parallel=2, batch_size=8,
             iterations_per_epoch=6)
    gpus = torch.cuda.device_count()
    for k, name in enumerate(("ssr-bpm", "ssr-tag")):
        assert f"crops cut on cuda:{k % gpus} " in (runs / name / "train.log").read_text()
        assert (runs / "models" / f"{name}.safetensors").exists()
