"""Publishing: push_models uploads model files and a model card through huggingface_hub and updates a registry."""

from __future__ import annotations

import numpy as np
import pytest
from huggingface_hub import ModelCard

import mtlmusic
from hub_fixtures import fake_hub, hub_env, hub_tools  # noqa: F401  (fixtures)
from mtlmusic import ConfigError, ModelFileError
from mtlmusic.architectures import build_network
from mtlmusic.files import file_sha256
from mtlmusic.hub import model_status
from mtlmusic.publish import push_models
from mtlmusic.registry import Registry, list_models
from mtlmusic.modelfile import save_model_file


def test_push_then_load_by_name(hub_env, tmp_path, hub_tools):
    ssr = hub_tools.make_model_file(tmp_path, "SS-R", ["tag"], seed=4)
    info = {"license": "cc-by-4.0", "datasets": ["msd"], "metrics": ["accuracy", "r_squared"],
            "description": "Trained on the Million Song Dataset."}
    mscr = save_model_file(tmp_path / "mscr4-bpm-year.safetensors", build_network("MS-CR@4", ["year", "bpm"]),
                           hub_tools.random_scaler(0), name="mscr4-bpm-year", info={**info, "tags": ["tempo"]})
    registry_path = tmp_path / "registry.json"
    entries = push_models([ssr, mscr], "me/models", registry_path=registry_path)

    assert sorted(entries) == ["mscr4-bpm-year", "ssr-tag"]
    assert entries["mscr4-bpm-year"].dim == 1024 and entries["ssr-tag"].sources == ("tag",)
    uploaded = hub_env.files["me/models"]
    assert uploaded["ssr-tag.safetensors"] == ssr.read_bytes()
    card = ModelCard(uploaded["README.md"].decode())
    assert card.data.license == "cc-by-4.0" and card.data.library_name == "mtlmusic"
    assert card.data.datasets == ["msd"] and card.data.metrics == ["accuracy", "r_squared"]
    assert {"tempo", "bpm", "year", "tag"} <= set(card.data.tags)
    assert "Million Song Dataset" in card.text and "| `ssr-tag` | SS-R | tag | 512 |" in card.text

    registry = Registry.read(registry_path)
    assert registry.repo_id == "me/models" and registry.revision == hub_env.commits["me/models"]
    assert registry.models["ssr-tag"].sha256 == file_sha256(ssr)
    assert list_models() == ["default", "mscr4-bpm-year", "ssr-tag"]
    assert model_status("ssr-tag") == "remote"
    model = mtlmusic.load_model("ssr-tag", device="cpu")
    reference = mtlmusic.load_model(ssr, device="cpu")
    audio = np.random.default_rng(1).standard_normal(22050 * 3).astype(np.float32)
    np.testing.assert_array_equal(model.extract(audio, sr=22050), reference.extract(audio, sr=22050))


def test_second_push_merges_into_the_registry(hub_env, tmp_path, hub_tools):
    registry_path = tmp_path / "registry.json"
    push_models([hub_tools.make_model_file(tmp_path, "SS-R", ["bpm"])], "me/models", registry_path=registry_path)
    first = Registry.read(registry_path).revision
    push_models([hub_tools.make_model_file(tmp_path, "SS-R", ["year"])], "me/models", registry_path=registry_path)
    registry = Registry.read(registry_path)
    assert sorted(registry.models) == ["ssr-bpm", "ssr-year"] and registry.revision != first
    assert {"ssr-bpm.safetensors", "ssr-year.safetensors"} <= set(hub_env.files["me/models"])
    assert "| `ssr-bpm` |" in hub_env.files["me/models"]["README.md"].decode()
    with pytest.raises(ConfigError, match="lists models of repository me/models"):
        push_models([hub_tools.make_model_file(tmp_path, "SS-R", ["tag"])], "someone/else",
                    registry_path=registry_path)


def test_push_refuses_bad_input(hub_env, tmp_path, hub_tools):
    good = hub_tools.make_model_file(tmp_path, "SS-R", ["bpm"])
    with pytest.raises(ConfigError, match="both model 'ssr-bpm'"):
        push_models([good, good], "me/models")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ModelFileError):
        push_models([corrupt], "me/models")
    misnamed = save_model_file(tmp_path / "x.safetensors", build_network("SS-R", ["tag"]),
                               hub_tools.random_scaler(0), name="ssr-bpm")
    with pytest.raises(ConfigError, match="does not say what it is"):
        push_models([misnamed], "me/models")
    mit = save_model_file(tmp_path / "y.safetensors", build_network("SS-R", ["year"]),
                          hub_tools.random_scaler(0), info={"license": "mit"})
    apache = save_model_file(tmp_path / "z.safetensors", build_network("SS-R", ["tag"]), hub_tools.random_scaler(0),
                             info={"license": "apache-2.0"})
    with pytest.raises(ConfigError, match="different licenses"):
        push_models([mit, apache], "me/models")
    assert hub_env.requests == []
