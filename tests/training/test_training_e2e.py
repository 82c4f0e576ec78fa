"""End to end on a tiny generated corpus: cache -> targets -> train every architecture -> export -> extract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtlmusic
from mtlmusic_training.trainer import Trainer, TrainConfig, epoch_length, load_training_data

def _config(architecture, sources, **kw):
    defaults = dict(epochs=2, batch_size=8, iterations_per_epoch=4, lr=1e-3, device="cpu", seed=0, valid_tracks=8)
    return TrainConfig(architecture, sources, **{**defaults, **kw})


@pytest.mark.parametrize("architecture,sources", [
    ("SS-R", ["bpm"]), ("SS-R", ["self"]), ("MS-CR@2", ["self", "bpm", "tag"]),
    ("MS-CR@4", ["bpm", "tag"]), ("MS-CR@6", ["self", "tag"]), ("MS-SR@FC", ["self", "bpm", "tag"]),
])
def test_train_export_extract(data_dir, tmp_path, architecture, sources):
    torch.set_num_threads(1)
    data = load_training_data(data_dir, sources)
    trainer = Trainer(_config(architecture, sources), data, tmp_path / "run", log=lambda _: None)
    history = trainer.train()
    assert len(history) == 2 and (tmp_path / "run" / "done").exists()
    assert set(history[-1]["valid_loss"]) == set(sources)
    path = trainer.export(tmp_path / "model.safetensors")
    model = mtlmusic.load_model(path, device="cpu")
    assert model.architecture == architecture and list(model.sources) == sorted(
        sources, key=["self", "bpm", "tag"].index) or set(model.sources) == set(sources)
    features = model.extract(data_dir / "clip00.wav")
    assert features.shape == (model.dim,) and np.isfinite(features).all()
    assert model.config["info"]["epochs_trained"] == 2


def test_loss_falls_on_the_planted_task(data_dir, tmp_path):
    torch.set_num_threads(1)
    data = load_training_data(data_dir, ["bpm"])
    trainer = Trainer(_config("MS-SR@FC", ["bpm"], epochs=4, iterations_per_epoch=10), data,
                      tmp_path / "run", log=lambda _: None)
    history = trainer.train()
    # The validation loss of a few tracks is noisy from epoch to epoch: the best epoch after the first counts.
    first, best = history[0]["valid_loss"]["bpm"], min(r["valid_loss"]["bpm"] for r in history[1:])
    assert best < 0.5 * first, (first, best)


def test_resume_is_exact(data_dir, tmp_path):
    """A run stopped after epoch 2 and resumed ends with the same weights as one that never stopped."""
    torch.set_num_threads(1)
    sources = ["self", "bpm"]
    data = load_training_data(data_dir, sources)
    straight = Trainer(_config("MS-CR@4", sources, epochs=3), data, tmp_path / "a", log=lambda _: None)
    straight.train()
    Trainer(_config("MS-CR@4", sources, epochs=2), data, tmp_path / "b", log=lambda _: None).train()
    # Resumed elsewhere: another device memory share does not change what is learned.
    resumed = Trainer(_config("MS-CR@4", sources, epochs=3, device_memory_share=0.25), data, tmp_path / "b",
                      log=lambda _: None)
    assert resumed.epoch == 2
    resumed.train()
    a, b = straight.network.state_dict(), resumed.network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]


def test_self_batches_are_half_positive(data_dir, tmp_path):
    data = load_training_data(data_dir, ["self"])
    trainer = Trainer(_config("SS-R", ["self"]), data, tmp_path / "run", log=lambda _: None)
    trainer._begin_epoch()
    task = trainer.tasks[0]
    left, right, same = task.host_plan["tracks"], task.host_plan["right_tracks"], task.labels.numpy()
    assert same.sum() == len(same) // 2 and left.shape[1] == len(same)
    assert np.all(left[:, same == 1] == right[:, same == 1]) and np.all(left[:, same == 0] != right[:, same == 0])


def test_another_config_in_the_same_folder_is_refused(data_dir, tmp_path):
    data = load_training_data(data_dir, ["bpm", "tag"])
    Trainer(_config("MS-CR@2", ["bpm"], epochs=1), load_training_data(data_dir, ["bpm"]),
            tmp_path / "run", log=lambda _: None).train()
    with pytest.raises(ValueError, match="another configuration"):
        Trainer(_config("MS-CR@2", ["bpm", "tag"]), data, tmp_path / "run", log=lambda _: None)
    # The default epoch length given explicitly is the same training; another length is not.
    bpm = load_training_data(data_dir, ["bpm"])
    Trainer(_config("SS-R", ["bpm"], epochs=1, iterations_per_epoch=None), bpm, tmp_path / "default",
            log=lambda _: None).train()
    length = epoch_length(bpm, ["bpm"], batch_size=8)
    same = Trainer(_config("SS-R", ["bpm"], epochs=1, iterations_per_epoch=length), bpm, tmp_path / "default",
                   log=lambda _: None)
    assert same.epoch == 1 and same.history[0]["iterations"] == length
    with pytest.raises(ValueError, match="another configuration"):
        Trainer(_config("SS-R", ["bpm"], iterations_per_epoch=length + 1), bpm, tmp_path / "default",
                log=lambda _: None)


def test_command_line_steps(data_dir, tmp_path):
    """cache -> design -> run -> grid (two SS-R runs of the study) -> status -> export, through mtlmusic-train."""
    from typer.testing import CliRunner

    from mtlmusic_training.cli import app
    from mtlmusic_training.design import design_runs

    runner = CliRunner()
    data = tmp_path / "data"
    data.mkdir()
    for name in ("manifest.csv",):
        (data / name).write_text((data_dir / name).read_text())
    (data / "targets").mkdir()
    for name in ("bpm.npz", "tag.npz"):
        (data / "targets" / name).write_bytes((data_dir / "targets" / name).read_bytes())
    result = runner.invoke(app, ["cache", str(data / "manifest.csv"), str(data), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert (data / "scaler.npz").exists() and "32 tracks cached" in result.output

    result = runner.invoke(app, ["design", "-o", str(tmp_path / "design.csv")])
    assert result.exit_code == 0 and "d_efficiency" in result.output.lower().replace("-", "_")

    result = runner.invoke(app, ["run", str(data), str(tmp_path / "one"), "--arch", "MS-CR@2", "--sources",
                                 "self,bpm", "--epochs", "1", "--batch-size", "8", "--iterations-per-epoch", "2",
                                 "--device", "cpu", "--export", str(tmp_path / "one.safetensors")])
    assert result.exit_code == 0, result.output
    assert mtlmusic.load_model(tmp_path / "one.safetensors").sources == ("self", "bpm")

    ids = {run.name: run.id for run in design_runs()}
    chosen = f"{ids['ssr-bpm']},{ids['ssr-tag']}"
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["grid", str(data), str(runs), "--runs", chosen, "--epochs", "1", "--device", "cpu",
                                 "--together", "2"])
    assert result.exit_code == 0, result.output
    assert (runs / "models" / "ssr-bpm.safetensors").exists() and (runs / "models" / "ssr-tag.safetensors").exists()
    again = runner.invoke(app, ["grid", str(data), str(runs), "--runs", chosen, "--epochs", "1", "--device", "cpu"])
    assert again.output.count("done, skipped") == 2
    refused = runner.invoke(app, ["run", str(data), str(tmp_path / "two"), "--arch", "SS-R", "--sources", "bpm",
                                  "--cache-dtype", "int8"])
    assert refused.exit_code == 2 and "Unknown cache_dtype 'int8'" in refused.output

    status = runner.invoke(app, ["status", str(runs)])
    assert status.output.count(" done ") == 2 and "2 done, 88 pending" in status.output

    result = runner.invoke(app, ["export", str(runs / "ssr-bpm"), str(data), "-o", str(tmp_path / "x.safetensors")])
    assert result.exit_code == 0, result.output
    assert mtlmusic.load_model(tmp_path / "x.safetensors").architecture == "SS-R"
    (tmp_path / "card.md").write_text("# default\n\n## Evaluation on the held-out part\n")
    (tmp_path / "scores.json").write_text('[{"task": "style", "mean": 0.5}]')
    result = runner.invoke(app, ["export", str(runs / "ssr-bpm"), str(data), "-o", str(tmp_path / "card.safetensors"),
                                 "--name", "default", "--card", str(tmp_path / "card.md"),
                                 "--scores", str(tmp_path / "scores.json")])
    assert result.exit_code == 0, result.output
    config = mtlmusic.load_model(tmp_path / "card.safetensors").config
    assert config["name"] == "default" and config["info"]["card"].startswith("# default")
    assert config["info"]["scores"] == [{"task": "style", "mean": 0.5}] and config["info"]["epochs_trained"] == 1
    missing = runner.invoke(app, ["export", str(runs / "ssr-bpm"), str(data), "-o", str(tmp_path / "y.safetensors"),
                                  "--card", str(tmp_path / "no-card.md")])
    assert missing.exit_code == 2 and "no-card.md" in missing.output and not (tmp_path / "y.safetensors").exists()


def test_the_mel_cache_goes_to_the_gpu_only_when_it_fits_the_runs_share():
    from mtlmusic_training.trainer import cache_fits

    gib = 1 << 30
    assert cache_fits(30 * gib, 79 * gib)                  # one run: half of the free memory
    assert not cache_fits(30 * gib, 79 * gib, share=0.25)   # four runs on the GPU: an eighth each
    assert cache_fits(9 * gib, 79 * gib, share=0.25)
    assert not cache_fits(264 * gib, 79 * gib)              # the study's whole cache: crops from host memory
