"""Models by name: registry, download through huggingface_hub from a local hub, cache, offline, MSS-CR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants

import mtlmusic
from hub_fixtures import fake_hub, hub_env, hub_tools, published  # noqa: F401  (fixtures)
from mtlmusic import ConfigError, ModelFileError, ModelNotFoundError
from mtlmusic.files import file_sha256
from mtlmusic.hub import cache_dir, load_network, model_files, model_status, resolve_model
from mtlmusic.hub import list_models
from mtlmusic.registry import Registry

CHUNK = 64 * 1024
AUDIO = np.random.default_rng(0).standard_normal((2, 22050 * 4)).astype(np.float32) * 0.1


def cached_blobs(home: Path) -> list[Path]:
    return [p for p in (home / "hub").rglob("blobs/*")]


def test_registry_shipped_with_the_package_is_valid():
    registry = Registry.read(Path(mtlmusic.__file__).parent / "registry.json")
    assert isinstance(registry.models, dict)


def test_import_and_listing_touch_no_network(published, hub_env):
    code = ("import mtlmusic, mtlmusic.hub as hub; "
            "print(mtlmusic.list_models('ssr-*'), hub.model_status('ssr-bpm'), hub.model_status('msscr-self-bpm'))")
    done = subprocess.run([sys.executable, "-c", code], env=os.environ.copy(), capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["['ssr-bpm',", "'ssr-self']", "remote", "remote"]
    assert hub_env.requests == []


def test_list_models_and_status(published):
    assert list_models() == sorted(["default", "mscr2-self-bpm", "ssr-bpm", "ssr-self"])
    assert list_models("ssr-*") == ["ssr-bpm", "ssr-self"]
    assert model_status("ssr-bpm") == "remote"
    assert model_status("msscr-self-bpm") == "remote"
    resolve_model("ssr-bpm")
    assert model_status("ssr-bpm") == "cached"
    assert model_status("msscr-self-bpm") == "remote"   # ssr-self is not cached yet
    with pytest.raises(ModelNotFoundError, match="Unknown model 'mscr4-self-bpm'"):
        model_status("mscr4-self-bpm")


def test_download_then_cached_with_the_server_down(published, hub_env, tmp_path):
    path = resolve_model("ssr-bpm")
    assert path.is_relative_to(cache_dir()) and cache_dir() == tmp_path / "home" / "hub"
    assert file_sha256(path) == file_sha256(published["ssr-bpm"])
    reference = mtlmusic.load_model(published["ssr-bpm"], device="cpu").extract(AUDIO, sr=22050)
    assert mtlmusic.load_model("ssr-bpm", device="cpu").name == "ssr-bpm"
    assert len(hub_env.gets("ssr-bpm.safetensors")) == 1
    hub_env.stop()
    again = mtlmusic.load_model("ssr-bpm", device="cpu")
    np.testing.assert_array_equal(again.extract(AUDIO, sr=22050), reference)


def test_missing_file_is_a_clear_model_not_found(published, hub_env, tmp_path, hub_tools):
    hub_env.files[hub_tools.repo].pop("ssr-self.safetensors")
    with pytest.raises(ModelNotFoundError, match=r"ssr-self.*not found in repository tester/mtlmusic-models@"):
        resolve_model("ssr-self")
    with pytest.raises(ModelNotFoundError, match="not found in repository other/repo"):
        resolve_model("ssr-bpm", repo_id="other/repo")
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_model("ssr-bpm", revision="0" * 40)
    assert cached_blobs(tmp_path / "home") == []


@pytest.fixture
def small_chunks(monkeypatch):
    """Make huggingface_hub write downloads in 64 KiB chunks instead of 10 MB.

    A transfer resumes from the last complete chunk written; the study's
    multi-task model files span several 10 MB chunks, these test files do not.
    """
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)


def test_interrupted_download_resumes_with_a_range_request(published, hub_env, small_chunks):
    hub_env.truncate["ssr-self.safetensors"] = 10 * CHUNK + 123
    path = resolve_model("ssr-self")
    assert file_sha256(path) == file_sha256(published["ssr-self"])
    assert hub_env.gets("ssr-self.safetensors") == [None, f"bytes={10 * CHUNK}-"]


def test_interrupted_download_that_cannot_resume_leaves_nothing_behind(published, hub_env, tmp_path,
                                                                        small_chunks):
    hub_env.truncate["ssr-self.safetensors"] = 3 * CHUNK
    hub_env.refuse_range = True
    with pytest.raises(ModelNotFoundError, match="downloading ssr-self.safetensors .* failed"):
        resolve_model("ssr-self")
    leftovers = [p for p in (tmp_path / "home" / "hub").rglob("*") if p.is_file() and "blobs" in p.parts]
    assert leftovers == []
    hub_env.refuse_range = False
    assert file_sha256(resolve_model("ssr-self")) == file_sha256(published["ssr-self"])


def test_wrong_hash_is_refused_and_not_kept(published, hub_env, tmp_path, hub_tools):
    hub_tools.write_registry(tmp_path / "registry.json", published, hub_env.commits[hub_tools.repo],
                             sha256={"ssr-bpm": "f" * 64})
    with pytest.raises(ModelFileError, match=r"downloaded file ssr-bpm.safetensors .* registry expects f{64}"):
        mtlmusic.load_model("ssr-bpm")
    assert cached_blobs(tmp_path / "home") == []
    assert model_status("ssr-bpm") == "remote"


def test_corrupt_cached_file_is_fetched_again(published, hub_env):
    path = resolve_model("ssr-self")
    blob = path.resolve()
    blob.chmod(0o644)
    blob.write_bytes(b"\0" * blob.stat().st_size)
    again = resolve_model("ssr-self")
    assert file_sha256(again) == file_sha256(published["ssr-self"])
    assert len(hub_env.gets("ssr-self.safetensors")) == 2


def test_offline_serves_the_cache_or_names_model_repo_and_cache(published, hub_env, monkeypatch):
    resolve_model("ssr-bpm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests_before = len(hub_env.requests)
    assert mtlmusic.load_model("ssr-bpm", device="cpu").sources == ("bpm",)
    with pytest.raises(ModelNotFoundError) as err:
        mtlmusic.load_model("ssr-self")
    message = str(err.value)
    assert "'ssr-self'" in message and "tester/mtlmusic-models@" in message and str(cache_dir()) in message
    assert "HF_HUB_OFFLINE" in message
    assert len(hub_env.requests) == requests_before


def test_offline_with_a_corrupt_cache_deletes_it_and_says_so(published, hub_env, monkeypatch):
    path = resolve_model("ssr-bpm")
    path.resolve().chmod(0o644)
    path.resolve().write_bytes(b"junk")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelFileError, match="cached file ssr-bpm.safetensors .* deleted"):
        resolve_model("ssr-bpm")
    assert model_status("ssr-bpm") == "remote"


def test_msscr_is_assembled_from_ssr_members(published):
    msscr = mtlmusic.load_model("msscr-self-bpm", device="cpu")
    assert (msscr.architecture, msscr.sources, msscr.name) == ("MSS-CR", ("self", "bpm"), "msscr-self-bpm")
    assert sorted(model_files("msscr-self-bpm")) == ["ssr-bpm", "ssr-self"]
    parts = {s: mtlmusic.load_model(published[f"ssr-{s}"], device="cpu").extract(AUDIO, sr=22050)
             for s in ("self", "bpm")}
    features = msscr.extract(AUDIO, sr=22050)
    expected = np.concatenate([parts["self"][:256], parts["bpm"][:256], parts["self"][256:], parts["bpm"][256:]])
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(msscr.extract_slices(AUDIO, sr=22050).features[:, 256:],
                                  mtlmusic.load_model("ssr-bpm", device="cpu").extract_slices(AUDIO, sr=22050).features)
    assert model_status("msscr-self-bpm") == "cached"
    with pytest.raises(ModelNotFoundError, match="no single model file"):
        resolve_model("msscr-self-bpm")


def test_msscr_members_must_share_the_scaler(hub_env, tmp_path, hub_tools):
    files = {"ssr-self": hub_tools.make_model_file(tmp_path, "SS-R", ["self"], scaler_seed=0),
             "ssr-tag": hub_tools.make_model_file(tmp_path, "SS-R", ["tag"], scaler_seed=1)}
    commit = hub_env.publish(hub_tools.repo, {f"{n}.safetensors": p.read_bytes() for n, p in files.items()})
    hub_tools.write_registry(tmp_path / "registry.json", files, commit)
    with pytest.raises(ConfigError, match="must share the front end's scaler"):
        load_network("msscr-self-tag")
    with pytest.raises(ModelNotFoundError, match="ssr-year is neither embedded nor published"):
        load_network("msscr-self-year")


def test_names_that_are_not_published(hub_env, tmp_path, monkeypatch):
    (tmp_path / "registry.json").write_text(json.dumps({"format_version": 1, "repo_id": None, "revision": None,
                                                        "models": {}}))
    monkeypatch.setattr(mtlmusic.registry, "EMBEDDED_DIR", tmp_path / "no-weights")
    with pytest.raises(ModelNotFoundError, match="No default weights"):
        mtlmusic.load_model("default")
    with pytest.raises(ModelNotFoundError, match=r"Unknown model 'mscr2-self-bpm': it would be MS-CR@2"):
        mtlmusic.load_model("mscr2-self-bpm")
    with pytest.raises(ModelNotFoundError, match="Unknown model 'mscr2-bpm-self'.*canonical order"):
        mtlmusic.load_model("mscr2-bpm-self")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        mtlmusic.load_model(tmp_path / "missing.safetensors")


def test_malformed_registry_is_a_config_error(hub_env, tmp_path):
    path = tmp_path / "registry.json"
    entry = {"file": "x.safetensors", "sha256": "0" * 64, "architecture": "SS-R", "sources": ["bpm"], "dim": 512}
    path.write_text(json.dumps({"models": {"ssr-tag": entry}}))
    with pytest.raises(ConfigError, match="whose name is 'ssr-bpm'"):
        list_models()
    path.write_text(json.dumps({"models": {"ssr-bpm": {**entry, "sha256": "abc"}}}))
    with pytest.raises(ConfigError, match="invalid sha256"):
        list_models()
    path.write_text("{")
    with pytest.raises(ConfigError, match="Cannot read the model registry"):
        list_models()


def test_repository_and_revision_from_the_environment(published, hub_env, monkeypatch, hub_tools):
    commit = hub_env.publish("mirror/models", {"ssr-bpm.safetensors": published["ssr-bpm"].read_bytes()})
    monkeypatch.setenv("MTLMUSIC_HUB_REPO", "mirror/models")
    monkeypatch.setenv("MTLMUSIC_HUB_REVISION", commit)
    assert "models--mirror--models" in str(resolve_model("ssr-bpm"))
    assert hub_env.gets("ssr-bpm.safetensors") == [None]
