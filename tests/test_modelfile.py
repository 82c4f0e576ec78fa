"""Model files: bit-exact round trip and clear errors for every kind of damage."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import mtlmusic
from samples import random_scaler
from mtlmusic import ModelFileError
from mtlmusic.architectures import ARCHITECTURES, build_network
from mtlmusic.modelfile import load_model_file, read_config, save_model_file


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_round_trip_is_bit_exact(tmp_path, architecture):
    sources = ["tag"] if architecture == "SS-R" else ["self", "bpm", "tag"]
    network = build_network(architecture, sources, head_sizes={"tag": 20})
    scaler = random_scaler()
    path = save_model_file(tmp_path / "m.safetensors", network, scaler, name="x", info={"card": "hello"})
    loaded, loaded_scaler, config = load_model_file(path)
    original = network.state_dict()
    assert original.keys() == loaded.state_dict().keys()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert torch.equal(loaded_scaler.mean, scaler.mean) and torch.equal(loaded_scaler.std, scaler.std)
    assert config["architecture"] == architecture and config["info"] == {"card": "hello"}
    assert config["mtlmusic_version"] == mtlmusic.__version__
    assert len(config["feature_names"]) == 2 * loaded.representation_dim


def test_features_survive_round_trip(model_file, tmp_path):
    model = mtlmusic.load_model(model_file)
    model.save(tmp_path / "again.safetensors")
    y = np.random.default_rng(0).standard_normal((2, 22050 * 3)).astype(np.float32)
    assert np.array_equal(model.extract(y, sr=22050), mtlmusic.load_model(tmp_path / "again.safetensors").extract(y, sr=22050))


def test_a_model_file_gets_the_permissions_of_any_new_file(model_file, tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "m.safetensors"
    mtlmusic.load_model(model_file).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask    # not safetensors' own 0o600


def test_no_silent_overwrite(model_file, tmp_path):
    model = mtlmusic.load_model(model_file)
    target = tmp_path / "m.safetensors"
    model.save(target)
    with pytest.raises(ModelFileError, match="overwrite"):
        model.save(target)
    model.save(target, overwrite=True)


def test_truncated_file(model_file, tmp_path):
    data = model_file.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 100):
        (tmp_path / "cut.safetensors").write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            mtlmusic.load_model(tmp_path / "cut.safetensors")


def test_flipped_byte_in_weights(model_file, tmp_path):
    data = bytearray(model_file.read_bytes())
    data[-1000] ^= 0xFF
    (tmp_path / "bad.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        mtlmusic.load_model(tmp_path / "bad.safetensors")


def _rewrite_config(src, dst, **changes):
    data = src.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    config = json.loads(header["__metadata__"]["mtlmusic"])
    config.update(changes)
    header["__metadata__"]["mtlmusic"] = json.dumps(config)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    dst.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def test_config_that_does_not_fit_the_weights(model_file, tmp_path):
    _rewrite_config(model_file, tmp_path / "m.safetensors", architecture="MS-CR@6")
    with pytest.raises(ModelFileError, match="do not fit"):
        mtlmusic.load_model(tmp_path / "m.safetensors")


def test_newer_format_is_refused(model_file, tmp_path):
    _rewrite_config(model_file, tmp_path / "m.safetensors", format_version=99)
    with pytest.raises(ModelFileError, match="upgrade"):
        read_config(tmp_path / "m.safetensors")


def test_foreign_safetensors_file(tmp_path):
    save_file({"w": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="not written by mtlmusic"):
        mtlmusic.load_model(tmp_path / "other.safetensors")


def test_not_a_model_at_all(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"hello, world" * 10)
    with pytest.raises(ModelFileError):
        mtlmusic.load_model(tmp_path / "x.safetensors")
