"""Publishing: push_models uploads model files and a model card through huggingface_hub and updates a registry;
the pushed repositories load by ``hf-hub:`` name, and pushing never replaces other contents unasked."""

from __future__ import annotations

import numpy as np
import pytest
from huggingface_hub import ModelCard
from typer.testing import CliRunner

import mtlmusic
import mtlmusic.hub
from hub_fixtures import fake_hub, hub_env, hub_tools  # noqa: F401  (fixtures)
from mtlmusic import ConfigError, ModelFileError
from mtlmusic.architectures import build_network
from mtlmusic.cli import app
from mtlmusic.files import file_sha256
from mtlmusic.hub import model_status
from mtlmusic.publish import push_models
from mtlmusic.hub import list_models
from mtlmusic.registry import Registry
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


def commits_posted(hub) -> int:
    return sum(1 for method, path, _ in hub.requests if method == "POST" and "/commit/" in path)


def test_pushed_repositories_load_by_hub_name(hub_env, tmp_path, hub_tools):
    ssr = hub_tools.make_model_file(tmp_path, "SS-R", ["tag"], seed=4)
    mscr = hub_tools.make_model_file(tmp_path, "MS-CR@2", ["self", "bpm"], seed=5)
    push_models([ssr, mscr], "me/models")
    audio = np.random.default_rng(1).standard_normal(22050 * 3).astype(np.float32)
    for name, local in (("hf-hub:me/models/ssr-tag.safetensors", ssr), ("hf-hub:me/models/mscr2-self-bpm", mscr)):
        np.testing.assert_array_equal(mtlmusic.load_model(name, device="cpu").extract(audio, sr=22050),
                                      mtlmusic.load_model(local, device="cpu").extract(audio, sr=22050))
    card = ModelCard(hub_env.files["me/models"]["README.md"].decode())
    assert card.data.library_name == "mtlmusic" and "mtlmusic" in card.data.tags
    assert "mtlmusic.load_model('hf-hub:me/models/mscr2-self-bpm.safetensors')" in card.text
    assert "mtlmusic-extract music/ -m hf-hub:me/models/mscr2-self-bpm.safetensors -o feats.npy" in card.text

    (tmp_path / "one").mkdir()
    push_models([hub_tools.make_model_file(tmp_path / "one", "SS-R", ["year"])], "me/one")
    card = ModelCard(hub_env.files["me/one"]["README.md"].decode())
    assert "mtlmusic-extract music/ -m hf-hub:me/one -o feats.npy" in card.text
    assert mtlmusic.load_model("hf-hub:me/one", device="cpu").name == "ssr-year"
    assert mtlmusic.list_models("hf-hub:me/models") == ["hf-hub:me/models/mscr2-self-bpm.safetensors",
                                                        "hf-hub:me/models/ssr-tag.safetensors"]


def test_pushing_the_same_files_again_changes_nothing(hub_env, tmp_path, hub_tools):
    model = hub_tools.make_model_file(tmp_path, "SS-R", ["bpm"])
    registry_path = tmp_path / "registry.json"
    push_models([model], "me/models", registry_path=registry_path)
    commit = hub_env.commits["me/models"]
    assert commits_posted(hub_env) == 1
    entries = push_models([model], "me/models", registry_path=registry_path)
    assert entries["ssr-bpm"].sha256 == file_sha256(model)
    assert commits_posted(hub_env) == 1 and hub_env.commits["me/models"] == commit
    assert Registry.read(registry_path).revision == commit


def test_push_refuses_to_replace_other_contents_unless_asked(hub_env, tmp_path, hub_tools):
    (tmp_path / "old").mkdir()
    old = hub_tools.make_model_file(tmp_path / "old", "SS-R", ["bpm"], seed=1)
    year = hub_tools.make_model_file(tmp_path / "old", "SS-R", ["year"], seed=1)
    push_models([old, year], "me/models")
    new = hub_tools.make_model_file(tmp_path, "SS-R", ["bpm"], seed=2)
    with pytest.raises(ConfigError, match=rf"me/models@main already holds ssr-bpm.safetensors \(sha256 "
                                          rf"{file_sha256(old)}, yours {file_sha256(new)}\) with other contents: "
                                          r"pass overwrite=True \(mtlmusic hub push --overwrite\)"):
        push_models([new, year], "me/models")
    assert hub_env.files["me/models"]["ssr-bpm.safetensors"] == old.read_bytes()

    result = CliRunner().invoke(app, ["hub", "push", str(new), "--repo", "me/models",
                                      "--registry", str(tmp_path / "registry.json")])
    assert result.exit_code == 2 and "--overwrite" in result.output
    result = CliRunner().invoke(app, ["hub", "push", str(new), "--repo", "me/models", "--overwrite",
                                      "--registry", str(tmp_path / "registry.json")])
    assert result.exit_code == 0, result.output
    assert "hf-hub:me/models/ssr-bpm.safetensors" in result.output
    assert hub_env.files["me/models"]["ssr-bpm.safetensors"] == new.read_bytes()
    assert file_sha256(mtlmusic.hub.resolve_model("hf-hub:me/models/ssr-bpm")) == file_sha256(new)
    assert "| `ssr-year` |" in hub_env.files["me/models"]["README.md"].decode()   # still in the repository
