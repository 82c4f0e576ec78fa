"""Models of any hub repository by ``hf-hub:`` name: revisions, files, MSS-CR, cache, offline, errors, listing, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

import mtlmusic
from hub_fixtures import fake_hub, hub_env, make_model_file  # noqa: F401  (fixtures)
from mtlmusic import ConfigError, ModelFileError, ModelNotFoundError
from mtlmusic.cli import app, extract_app
from mtlmusic.files import file_sha256
from mtlmusic.hub import cache_dir, load_network, model_files, model_status, parse_hub_name, resolve_model
from mtlmusic.modelfile import METADATA_KEY

AUDIO = np.random.default_rng(0).standard_normal((2, 22050 * 4)).astype(np.float32) * 0.1
runner = CliRunner()


def features(name_or_path) -> np.ndarray:
    return mtlmusic.load_model(name_or_path, device="cpu").extract(AUDIO, sr=22050)


def safetensors_gets(hub) -> list[str]:
    return [path for method, path, _ in hub.requests if method in ("GET", "HEAD") and path.endswith(".safetensors")]


@pytest.fixture
def repos(hub_env, tmp_path):
    """``org/models``: ssr-bpm (v1 tagged v1.0, then v2 on main), ssr-self, a branch ``dev`` with ssr-year;
    ``org/single``: one model file and a README. Returns the local files."""
    folders = {name: tmp_path / name for name in ("v1", "v2", "single")}
    for folder in folders.values():
        folder.mkdir()
    files = {"bpm-v1": make_model_file(folders["v1"], "SS-R", ["bpm"], seed=2),
             "self": make_model_file(folders["v1"], "SS-R", ["self"], seed=1),
             "bpm-v2": make_model_file(folders["v2"], "SS-R", ["bpm"], seed=5),
             "year": make_model_file(folders["v2"], "SS-R", ["year"], seed=6),
             "single": make_model_file(folders["single"], "MS-CR@2", ["self", "tag"], seed=7)}
    files["v1-commit"] = hub_env.publish("org/models", {"ssr-bpm.safetensors": files["bpm-v1"].read_bytes(),
                                                        "ssr-self.safetensors": files["self"].read_bytes(),
                                                        "README.md": b"# models\n"})
    hub_env.tag("org/models", "v1.0")
    hub_env.publish("org/models", {"ssr-bpm.safetensors": files["bpm-v2"].read_bytes()})
    hub_env.publish("org/models", {"ssr-year.safetensors": files["year"].read_bytes()}, branch="dev")
    hub_env.publish("org/single", {"mscr2-self-tag.safetensors": files["single"].read_bytes(),
                                   "README.md": b"# one model\n"})
    return files


def test_names_parse_both_revision_forms():
    assert parse_hub_name("hf-hub:org/models@v1.0/ssr-bpm.safetensors") == \
        parse_hub_name("hf-hub:org/models/ssr-bpm.safetensors@v1.0")
    assert parse_hub_name("hf-hub:org/models/msscr-self-bpm@refs/pr/1").revision == "refs/pr/1"
    for bad in ("hf-hub:org", "hf-hub:org/models@a/x@b", "hf-hub:"):
        with pytest.raises(ConfigError, match="Malformed hub model name"):
            mtlmusic.load_model(bad, device="cpu")


def test_repository_with_one_model_loads_without_a_file_name(repos, hub_env):
    assert model_status("hf-hub:org/single") == "remote"
    model = mtlmusic.load_model("hf-hub:org/single", device="cpu")
    assert (model.name, model.architecture) == ("mscr2-self-tag", "MS-CR@2")
    np.testing.assert_array_equal(model.extract(AUDIO, sr=22050), features(repos["single"]))
    assert model_status("hf-hub:org/single") == "cached"
    assert resolve_model("hf-hub:org/single").is_relative_to(cache_dir())


def test_revisions_branches_tags_and_commits(repos, hub_env):
    v1, v2 = file_sha256(repos["bpm-v1"]), file_sha256(repos["bpm-v2"])
    assert file_sha256(resolve_model("hf-hub:org/models/ssr-bpm.safetensors")) == v2
    assert file_sha256(resolve_model("hf-hub:org/models@v1.0/ssr-bpm.safetensors")) == v1
    assert file_sha256(resolve_model("hf-hub:org/models/ssr-bpm.safetensors@v1.0")) == v1
    assert file_sha256(resolve_model(f"hf-hub:org/models@{repos['v1-commit']}/ssr-bpm")) == v1
    assert file_sha256(resolve_model("hf-hub:org/models@dev/ssr-year")) == file_sha256(repos["year"])
    np.testing.assert_array_equal(features("hf-hub:org/models@v1.0/ssr-bpm"), features(repos["bpm-v1"]))
    with pytest.raises(ModelNotFoundError, match=r"ssr-year.safetensors is not in repository org/models@main"):
        resolve_model("hf-hub:org/models/ssr-year")


def test_several_models_need_a_file_name(repos):
    with pytest.raises(ModelNotFoundError, match=r"holds 2 model files; name one: "
                                                 r"hf-hub:org/models/ssr-bpm.safetensors, "
                                                 r"hf-hub:org/models/ssr-self.safetensors\."):
        mtlmusic.load_model("hf-hub:org/models")
    with pytest.raises(ModelNotFoundError, match="holds 3 model files"):
        mtlmusic.load_model("hf-hub:org/models@dev")


def test_msscr_is_assembled_from_members_of_one_repository(repos):
    msscr = mtlmusic.load_model("hf-hub:org/models@v1.0/msscr-self-bpm", device="cpu")
    assert (msscr.architecture, msscr.sources, msscr.name) == ("MSS-CR", ("self", "bpm"), "msscr-self-bpm")
    assert sorted(model_files("hf-hub:org/models/msscr-self-bpm")) == ["ssr-bpm", "ssr-self"]
    parts = {"self": features(repos["self"]), "bpm": features(repos["bpm-v1"])}
    expected = np.concatenate([parts["self"][:256], parts["bpm"][:256], parts["self"][256:], parts["bpm"][256:]])
    np.testing.assert_allclose(msscr.extract(AUDIO, sr=22050), expected, rtol=1e-6, atol=1e-6)
    assert model_status("hf-hub:org/models@v1.0/msscr-self-bpm") == "cached"
    assert model_status("hf-hub:org/models@v1.0/msscr-self-year") == "remote"
    with pytest.raises(ModelNotFoundError, match=r"assembled from ssr-self, ssr-year: ssr-year.safetensors is not "
                                                 r"in repository org/models@v1.0"):
        load_network("hf-hub:org/models@v1.0/msscr-self-year")


def test_cached_models_load_with_the_server_down(repos, hub_env):
    # Files not in the cache are not tried here: huggingface_hub retries an unreachable hub for ~20 s first.
    single = features("hf-hub:org/single")
    tagged = features("hf-hub:org/models@v1.0/ssr-bpm.safetensors")
    gets = len(safetensors_gets(hub_env))
    hub_env.stop()
    np.testing.assert_array_equal(features("hf-hub:org/single"), single)
    np.testing.assert_array_equal(features("hf-hub:org/models@v1.0/ssr-bpm.safetensors"), tagged)
    np.testing.assert_array_equal(features("hf-hub:org/models@v1.0/ssr-bpm"), tagged)
    assert len(safetensors_gets(hub_env)) == gets


def test_offline_serves_the_cache_or_says_what_to_do(repos, hub_env, monkeypatch):
    expected = features("hf-hub:org/single")
    resolve_model("hf-hub:org/models/ssr-bpm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = len(hub_env.requests)
    np.testing.assert_array_equal(features("hf-hub:org/single"), expected)
    assert mtlmusic.load_model("hf-hub:org/models/ssr-bpm.safetensors", device="cpu").sources == ("bpm",)
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("hf-hub:org/models/ssr-self.safetensors")
    assert "HF_HUB_OFFLINE" in str(err.value) and str(cache_dir()) in str(err.value)
    with pytest.raises(ModelNotFoundError, match="needs the hub, and offline mode is on"):
        mtlmusic.list_models("hf-hub:org/models")
    assert len(hub_env.requests) == requests


def test_corrupt_cached_file_is_deleted_and_fetched_again(repos, hub_env, monkeypatch):
    path = resolve_model("hf-hub:org/single")
    blob = path.resolve()
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-8:] = b"\x7f" * 8          # the header still reads, the tensors' hash does not match
    blob.write_bytes(bytes(data))
    assert file_sha256(resolve_model("hf-hub:org/single")) == file_sha256(repos["single"])
    assert len(hub_env.gets("mscr2-self-tag.safetensors")) == 2
    resolve_model("hf-hub:org/single").resolve().write_bytes(bytes(data))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelFileError, match=r"cached file mscr2-self-tag.safetensors .* deleted .*unset "
                                             "HF_HUB_OFFLINE"):
        resolve_model("hf-hub:org/single/mscr2-self-tag.safetensors")
    assert model_status("hf-hub:org/single/mscr2-self-tag.safetensors") == "remote"


def test_missing_repository_revision_and_file(repos):
    with pytest.raises(ModelNotFoundError, match=r"Repository org/nothing is not found on http://127.0.0.1:\d+: "
                                                 r"check the name .* if it is private, log in"):
        mtlmusic.load_model("hf-hub:org/nothing/ssr-bpm.safetensors")
    with pytest.raises(ModelNotFoundError, match="Repository org/nothing is not found"):
        mtlmusic.load_model("hf-hub:org/nothing")
    with pytest.raises(ModelNotFoundError, match=r"Revision 'v9' is not found in repository org/models: give an "
                                                 "existing branch, tag or 40-hex commit"):
        mtlmusic.load_model("hf-hub:org/models@v9/ssr-bpm.safetensors")
    with pytest.raises(ModelNotFoundError, match="Revision '0{40}' is not found"):
        mtlmusic.load_model("hf-hub:org/models@" + "0" * 40)
    with pytest.raises(ModelNotFoundError, match=r"ssr-tag.safetensors is not in repository org/models@main. Its "
                                                 r"model files: hf-hub:org/models/ssr-bpm.safetensors, "
                                                 r"hf-hub:org/models/ssr-self.safetensors\."):
        mtlmusic.load_model("hf-hub:org/models/ssr-tag")


@pytest.mark.parametrize("access, message", [("gated", r"Repository org/single is gated: request access on .* "
                                                        r"then log in with `hf auth login` or set HF_TOKEN"),
                                             ("private", "Repository org/single is not found .* if it is private")])
def test_gated_and_private_repositories_need_a_token(repos, hub_env, monkeypatch, access, message):
    hub_env.access["org/single"] = access
    with pytest.raises(ModelNotFoundError, match=message):
        mtlmusic.load_model("hf-hub:org/single/mscr2-self-tag.safetensors")
    with pytest.raises(ModelNotFoundError, match=message):
        mtlmusic.load_model("hf-hub:org/single")
    monkeypatch.setenv("HF_TOKEN", hub_env.token)
    np.testing.assert_array_equal(features("hf-hub:org/single"), features(repos["single"]))


def test_files_that_are_not_usable_model_files(repos, hub_env, tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign))
    with safe_open(str(repos["self"]), framework="pt") as f:
        metadata = f.metadata()
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    newer = tmp_path / "newer.safetensors"
    config = json.loads(metadata[METADATA_KEY])
    save_file(tensors, str(newer), metadata={METADATA_KEY: json.dumps({**config, "format_version": 99})})
    hub_env.publish("org/odd", {"foreign.safetensors": foreign.read_bytes(), "newer.safetensors": newer.read_bytes(),
                                "notes.txt": b"text"})
    with pytest.raises(ModelFileError, match=r"downloaded file foreign.safetensors of repository org/odd@main is not "
                                             r"a usable mtlmusic model file .*not written by mtlmusic.* deleted"):
        mtlmusic.load_model("hf-hub:org/odd/foreign")
    with pytest.raises(ModelFileError, match=r"newer.safetensors of repository org/odd@main needs a newer mtlmusic "
                                             r"than .* format 99 is newer .*`pip install -U mtlmusic`"):
        mtlmusic.load_model("hf-hub:org/odd/newer.safetensors")
    with pytest.raises(ModelNotFoundError, match=r"notes.txt.safetensors is not in repository org/odd@main\. Its "
                                                 "model files: hf-hub:org/odd/foreign.safetensors, "):
        resolve_model("hf-hub:org/odd/notes.txt")      # a name without .safetensors is a model's name
    assert [p.name for p in cache_dir().rglob("snapshots/*/*")] == ["newer.safetensors"]   # sound, kept


def test_list_models_of_a_repository_downloads_no_weights(repos, hub_env):
    assert mtlmusic.list_models("hf-hub:org/models") == ["hf-hub:org/models/ssr-bpm.safetensors",
                                                         "hf-hub:org/models/ssr-self.safetensors"]
    assert mtlmusic.list_models("hf-hub:org/models@dev/ssr-y*") == ["hf-hub:org/models/ssr-year.safetensors@dev"]
    assert mtlmusic.list_models("hf-hub:org/models/*self") == ["hf-hub:org/models/ssr-self.safetensors"]
    with pytest.raises(ModelNotFoundError, match="Repository org/nothing is not found"):
        mtlmusic.list_models("hf-hub:org/nothing")
    assert safetensors_gets(hub_env) == []
    for name in mtlmusic.list_models("hf-hub:org/models@dev"):
        assert mtlmusic.load_model(name, device="cpu").architecture == "SS-R"


def test_commands_take_hub_names(repos, hub_env, tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    sf.write(music / "a.wav", AUDIO.T, 22050)
    out = tmp_path / "feats.npy"
    result = runner.invoke(extract_app, [str(music), "-m", "hf-hub:org/single", "-o", str(out), "--workers", "0",
                                         "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    expected = mtlmusic.load_model(repos["single"], device="cpu").extract(music / "a.wav")
    np.testing.assert_allclose(np.load(out)[0], expected, rtol=1e-5, atol=1e-6)
    result = runner.invoke(extract_app, [str(music), "-m", "hf-hub:org/models", "-o", str(out), "-q"])
    assert result.exit_code == 2 and "name one: hf-hub:org/models/ssr-bpm.safetensors" in result.output

    result = runner.invoke(app, ["info", "hf-hub:org/models@v1.0/ssr-bpm"])
    assert result.exit_code == 0 and json.loads(result.output)["sources"] == ["bpm"]
    result = runner.invoke(app, ["models", "hf-hub:org/models"])
    assert result.exit_code == 0 and "ssr-self" in result.output and "remote" in result.output
    result = runner.invoke(app, ["models", "hf-hub:org/nothing"])
    assert result.exit_code == 2 and "Repository org/nothing is not found" in result.output


def test_evaluation_labels_and_caches_hub_models_by_their_weights(repos):
    run = pytest.importorskip("mtlmusic_training.evaluation.run")
    extractor = run._named_model_extractor("hf-hub:org/models@v1.0/ssr-bpm", "cpu", 0)
    same = run._named_model_extractor(repos["bpm-v1"], "cpu", 0)
    assert extractor.label == same.label == "ssr-bpm"
    assert extractor.identity == same.identity
    assert run._named_model_extractor("hf-hub:org/models/ssr-bpm", "cpu", 0).identity != same.identity
