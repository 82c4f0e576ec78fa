"""The trainer's step: an epoch's choices drawn at once (Algorithm 1's distribution), read on the device without
host round trips; the mel cache on the device (here the CPU) shared by a process's runs, and its fallback to host
crops; runs trained together; ``--parallel`` spread over the GPUs."""

from __future__ import annotations

import copy
import sys
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import typer

from mtlmusic_training import grid, trainer as trainer_module
from mtlmusic_training.augment import Augmentation
from mtlmusic_training.cli import app
from mtlmusic_training.melcache import UINT8_DB_STEP, MelCache
from mtlmusic_training.trainer import (TaskData, Trainer, TrainConfig, TrainingData, cache_fits, draw_epoch,
                                       load_training_data, release_resident_caches, resident_cache, train_together)


def _config(architecture, sources, **kw):
    defaults = dict(epochs=2, batch_size=8, iterations_per_epoch=4, lr=1e-3, device="cpu", seed=0, valid_tracks=8)
    return TrainConfig(architecture, sources, **{**defaults, **kw})


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(autouse=True)
def _no_cache_on_the_device():
    torch.set_num_threads(1)
    release_resident_caches()
    yield
    release_resident_caches()


# --- an epoch's choices -------------------------------------------------------------------------

def test_batches_are_uniform_ordered_samples_without_replacement():
    """Every ordered choice of 3 of 5 tracks is drawn equally often, as rng.choice(5, 3, replace=False) would."""
    _, batches = draw_epoch([np.ones(5, dtype=np.int64)], [3], [False], 60_000, np.random.default_rng(0))
    rows = batches[0]["tracks"]
    assert rows.shape == (60_000, 3) and all(len(set(row)) == 3 for row in rows[:1000].tolist())
    counts = Counter(map(tuple, rows.tolist()))
    assert len(counts) == 60 and all(abs(c - 1000) < 5 * np.sqrt(1000) for c in counts.values())


def test_an_epoch_draws_tasks_uniformly_crops_that_fit_and_self_pairs():
    rooms = [np.arange(1, 11), np.full(6, 3)]
    order, (plain, pairs) = draw_epoch(rooms, [4, 4], [False, True], 20_000, np.random.default_rng(1))
    assert abs((order == 0).sum() - 10_000) < 5 * np.sqrt(5_000)
    assert plain["tracks"].shape == (int((order == 0).sum()), 4) and pairs["tracks"].shape[0] == (order == 1).sum()
    starts, room = plain["starts"], rooms[0][plain["tracks"]]
    assert (starts >= 0).all() and (starts < room).all()
    assert abs(starts[room == 10].mean() - 4.5) < 0.2   # uniform over the ten starts of the longest track
    left, right = pairs["tracks"], pairs["right_tracks"]
    assert (right[:, :2] == left[:, :2]).all() and (right[:, 2:] != left[:, 2:]).all()
    assert (np.sort(right[:, 2:], axis=1) == np.sort(left[:, 2:], axis=1)).all()
    assert (pairs["right_starts"] < 3).all() and not np.array_equal(pairs["starts"], pairs["right_starts"])
    again = draw_epoch(rooms, [4, 4], [False, True], 20_000, np.random.default_rng(1))
    assert np.array_equal(again[0], order) and np.array_equal(again[1][1]["right_starts"], pairs["right_starts"])


AUGMENT = {"gain_db": 6.0, "eq_db": 6.0, "pitch_bands": 1.5, "stretch": 0.1}


@pytest.mark.parametrize("augment", [{}, AUGMENT], ids=["plain", "augmented"])
def test_the_step_is_algorithm_1_on_the_epochs_choices(data_dir, tmp_path, augment):
    """Replaying the epoch's plan by hand (host crops, their changes, targets of the same tracks, Adam) gives the
    same weights."""
    sources = ["self", "bpm"]
    data = load_training_data(data_dir, sources)
    trainer = Trainer(_config("MS-CR@2", sources, epochs=1, iterations_per_epoch=6, data_on_device=True,
                              augment=augment), data, tmp_path / "run", log=lambda _: None)
    network = copy.deepcopy(trainer.network)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, weight_decay=1e-6)
    dropout = trainer._dropout.cpu_state.clone()
    trainer.train()

    tasks = trainer.tasks
    order, plans = draw_epoch([t.room for t in tasks], [t.batch for t in tasks], [t.pairs for t in tasks], 6,
                              np.random.default_rng([0, 2, 0]))
    augmentation = Augmentation(**augment)
    if augmentation:
        changes = np.random.default_rng([0, 3, 0])
        for task, plan in zip(tasks, plans):
            for side in ("", "right_") if task.pairs else ("",):
                plan[side + "augment"] = augmentation.draw(changes, plan["tracks"].shape, task.name)
    scaler, cache = data.scaler, data.cache

    def crops(plan, i, tracks, side=""):
        db = torch.from_numpy(cache.crops(tracks, plan[side + "starts"][i]))
        return scaler(augmentation.apply(db.float(), torch.from_numpy(plan[side + "augment"][i])) if augmentation
                      else db)

    saved = torch.get_rng_state()
    torch.set_rng_state(dropout)
    network.train()
    done, losses = Counter(), {s: [] for s in sources}
    for k in order.tolist():
        task, plan, i = tasks[k], plans[k], done[k]
        tracks = task.pool[plan["tracks"][i]]
        x = crops(plan, i, tracks)
        if task.pairs:
            right = task.pool[plan["right_tracks"][i]]
            x_right = crops(plan, i, right, "right_")
            same = torch.as_tensor((tracks == right).astype(np.int64))
            loss = F.cross_entropy(network(x, "self", x_right), same)
        else:
            z = torch.from_numpy(data.tasks[task.name].targets[tracks])
            loss = F.kl_div(F.log_softmax(network(x, task.name), dim=1), z, reduction="batchmean")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[task.name].append(loss.item())
        done[k] += 1
    torch.set_rng_state(saved)
    assert _same_weights(network, trainer.network)
    for source, values in losses.items():
        assert trainer.history[0]["train_loss"][source] == pytest.approx(np.mean(values), rel=1e-6)


@pytest.mark.parametrize("augment", [{}, AUGMENT], ids=["plain", "augmented"])
def test_the_trainer_reads_the_device_once_per_epoch(data_dir, tmp_path, monkeypatch, augment):
    """No call of the trainer's own code waits for the device during the steps: losses are read at an epoch's end."""
    reads = []

    def counted(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if sys._getframe(1).f_globals.get("__name__") == trainer_module.__name__:
                reads.append(name)
            return original(self, *args, **kwargs)
        return read

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, counted(name))
    data = load_training_data(data_dir, ["self", "bpm"])
    trainer = Trainer(_config("MS-CR@4", ["self", "bpm"], epochs=3, iterations_per_epoch=5, data_on_device=True,
                              augment=augment), data, tmp_path / "run", log=lambda _: None)
    trainer.train()
    assert reads == ["tolist", "tolist"] * 3   # per epoch: the training losses, then the validation losses


# --- the mel cache on the device ----------------------------------------------------------------

@pytest.mark.parametrize("augment", [{}, AUGMENT], ids=["plain", "augmented"])
def test_the_cache_on_the_device_trains_the_same_run_as_host_crops(data_dir, tmp_path, augment):
    sources = ["self", "bpm"]
    data = load_training_data(data_dir, sources)
    lines = []
    host = Trainer(_config("MS-CR@2", sources, augment=augment), data, tmp_path / "host", log=lines.append)
    device = Trainer(_config("MS-CR@2", sources, data_on_device=True, augment=augment), data, tmp_path / "device",
                     log=lines.append)
    assert host.resident is None and device.resident is not None
    assert "crops cut on cpu from the process's mel cache there (24 tracks, float16" in lines[0]
    host.train()
    device.train()
    assert _same_weights(host.network, device.network)
    assert host.history[-1]["train_loss"] == device.history[-1]["train_loss"]


def test_one_cache_per_process_is_shared_by_its_runs(data_dir, tmp_path):
    bpm = load_training_data(data_dir, ["bpm"])
    task = bpm.tasks["bpm"]
    few = TrainingData(bpm.cache, bpm.scaler, {"bpm": TaskData(task.train[:12], task.valid, task.targets)})
    first = Trainer(_config("SS-R", ["bpm"], data_on_device=True), few, tmp_path / "a", log=lambda _: None)
    again = Trainer(_config("MS-SR@FC", ["bpm"], data_on_device=True), few, tmp_path / "b", log=lambda _: None)
    assert again.resident is first.resident and len(first.resident.tracks) == 12
    # A run with more tracks (from another cache object of the same folder) extends it.
    both = load_training_data(data_dir, ["self", "bpm"], cache=MelCache.open(data_dir / "cache"))
    more = Trainer(_config("MS-CR@2", ["self", "bpm"], data_on_device=True), both, tmp_path / "c", log=lambda _: None)
    assert more.resident is not first.resident and len(more.resident.tracks) == 24
    assert set(first.resident.tracks) <= set(more.resident.tracks)
    last = Trainer(_config("SS-R", ["bpm"], data_on_device=True), few, tmp_path / "d", log=lambda _: None)
    assert last.resident is more.resident
    # A run asking for uint8 does not take float16 values: the cache is replaced.
    coded = resident_cache(bpm.cache, bpm.tasks["bpm"].train, torch.device("cpu"), "uint8")
    assert coded.tensors.flat.dtype == torch.uint8 and coded.nbytes * 2 == more.resident.nbytes


def test_uint8_crops_are_within_half_a_step_of_the_cache(data_dir):
    cache = MelCache.open(data_dir / "cache")
    tracks = np.array([3, 0, 17, 5])
    coded = resident_cache(cache, tracks, torch.device("cpu"), "uint8")
    rng = np.random.default_rng(0)
    chosen = rng.choice(tracks, 20)
    starts = cache.random_starts(chosen, rng)
    crops = coded.crops(torch.as_tensor(coded.rows(chosen)), torch.as_tensor(starts))
    error = np.abs(crops.numpy() - cache.crops(chosen, starts)).max()
    assert 0 < error <= UINT8_DB_STEP / 2 + 1e-3


def test_the_cache_type_and_the_host_fallback_follow_the_devices_memory(data_dir, tmp_path, monkeypatch):
    data = load_training_data(data_dir, ["bpm"])
    float16_bytes = int(data.cache.n_frames[data.tasks["bpm"].train].sum()) * 2 * 128 * 2

    def memory(free):
        monkeypatch.setattr(trainer_module, "device_memory", lambda device: (free, free))
        release_resident_caches()

    memory(float16_bytes * 2)
    assert Trainer(_config("SS-R", ["bpm"], data_on_device=True), data, tmp_path / "a",
                   log=lambda _: None).resident.tensors.flat.dtype == torch.float16
    memory(float16_bytes)     # 3/4 of it: room for uint8 only
    assert Trainer(_config("SS-R", ["bpm"], data_on_device=True), data, tmp_path / "b",
                   log=lambda _: None).resident.tensors.flat.dtype == torch.uint8
    memory(float16_bytes // 4)
    lines = []
    fallback = Trainer(_config("SS-R", ["bpm"], data_on_device=True), data, tmp_path / "c", log=lines.append)
    assert fallback.resident is None and "crops cut in host memory" in lines[0]
    memory(float16_bytes * 2)
    resident = Trainer(_config("SS-R", ["bpm"], data_on_device=True), data, tmp_path / "d", log=lambda _: None)
    fallback.train()
    resident.train()
    assert _same_weights(fallback.network, resident.network)


def test_a_process_gets_its_share_of_the_devices_memory():
    gib = 1 << 30
    assert cache_fits(30 * gib, 79 * gib) and not cache_fits(30 * gib, 79 * gib, share=0.25)
    # Two processes on an 80 GiB GPU: the second sees the first's cache, yet keeps its half.
    assert cache_fits(28 * gib, 50 * gib, share=0.5, total_bytes=80 * gib)
    assert not cache_fits(28 * gib, 30 * gib, share=0.5, total_bytes=80 * gib)


def test_to_tensor_keeps_any_subset_in_cache_order(data_dir):
    cache = MelCache.open(data_dir / "cache")
    tensors = cache.to_tensor("cpu", [5, 2, 9, 2], dtype=torch.uint8)
    assert tensors.offsets.tolist() == [259, 0, 518, 0]   # tracks 2, 5, 9 of 259 frames, each once
    assert tensors.flat.shape == (3 * 259, 2, 128) and tensors.lengths.tolist() == [259] * 4
    with pytest.raises(ValueError, match="float16 or uint8"):
        cache.to_tensor("cpu", [0], dtype=torch.float32)


# --- runs trained together, resumed, placed ------------------------------------------------------

def test_runs_trained_together_learn_what_they_learn_alone(data_dir, tmp_path):
    both = load_training_data(data_dir, ["self", "bpm"])
    bpm = load_training_data(data_dir, ["bpm"])
    configs = [(_config("MS-CR@2", ["self", "bpm"], data_on_device=True), both),
               (_config("SS-R", ["bpm"], epochs=3, seed=1), bpm)]
    alone = [Trainer(c, d, tmp_path / f"alone{i}", log=lambda _: None) for i, (c, d) in enumerate(configs)]
    for trainer in alone:
        trainer.train()
    together = [Trainer(c, d, tmp_path / f"together{i}", log=lambda _: None) for i, (c, d) in enumerate(configs)]
    histories = train_together(together)
    assert [len(h) for h in histories] == [2, 3]
    for a, b in zip(alone, together):
        assert _same_weights(a.network, b.network)
        assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert (tmp_path / "together1" / "done").exists()
    assert train_together([Trainer(_config("SS-R", ["bpm"], epochs=5), bpm, tmp_path / "late", log=lambda _: None)],
                          max_minutes=0) == [[]]


def test_a_checkpoint_of_another_device_resumes_with_this_devices_adam(data_dir, tmp_path):
    data = load_training_data(data_dir, ["bpm"])
    Trainer(_config("SS-R", ["bpm"], epochs=1), data, tmp_path / "run", log=lambda _: None).train()
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    for group in state["optimizer"]["param_groups"]:
        group.update(fused=True, capturable=True)       # as written by a run on a GPU
    state["dropout_rng"] = {"cuda": True, "state": torch.zeros(16, dtype=torch.uint8)}
    torch.save(state, path)
    resumed = Trainer(_config("SS-R", ["bpm"], epochs=2, graphs=False), data, tmp_path / "run", log=lambda _: None)
    assert all(not g["capturable"] and not g["fused"] for g in resumed.optimizer.param_groups)
    assert len(resumed.train()) == 2


def test_parallel_processes_are_spread_over_the_gpus(data_dir, tmp_path, monkeypatch, grid_processes):
    commands = grid_processes
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    def option(command, name):
        return command[command.index(name) + 1]

    grid.run_grid(data_dir, tmp_path / "runs", [1, 2, 3, 4, 5], parallel=3, batch_size=8)
    assert [option(c, "--runs") for c in commands] == ["1,4", "2,5", "3"]
    assert [option(c, "--device") for c in commands] == ["cuda:0", "cuda:1", "cuda:0"]
    assert [float(option(c, "--device-memory-share")) for c in commands] == [0.5, 1.0, 0.5]
    assert all(option(c, "--batch-size") == "8" for c in commands)
    commands.clear()
    grid.run_grid(data_dir, tmp_path / "runs", [1, 2], parallel=2, device="cpu", device_memory_share=0.3, together=2,
                  graphs=False, cache_dtype="uint8")
    assert [(option(c, "--device"), option(c, "--device-memory-share")) for c in commands] == [("cpu", "0.3")] * 2
    # Each process's command line is one that `mtlmusic-train grid` accepts, options included.
    grid_command = typer.main.get_command(app).commands["grid"]
    for command in commands:
        options = grid_command.make_context("grid", command[command.index("grid") + 1:]).params
        assert (options["together"], options["graphs"], options["cache_dtype"]) == (2, False, "uint8")
