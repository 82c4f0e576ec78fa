"""Shared fixtures: real and generated audio in several formats, and small model files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf
import torch

from mtlmusic.architectures import build_network
from mtlmusic.modelfile import save_model_file
from samples import random_scaler, tone


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory) -> Path:
    """A folder with the same 6 s stereo signal as WAV, FLAC, Ogg Vorbis and MP3 (44.1 kHz)."""
    folder = tmp_path_factory.mktemp("audio")
    y = tone(6.0, 44100)
    sf.write(folder / "tone.wav", y, 44100)
    sf.write(folder / "tone.flac", y, 44100)
    sf.write(folder / "tone.ogg", y, 44100, format="OGG", subtype="VORBIS")
    sf.write(folder / "tone.mp3", y, 44100, format="MP3")
    return folder


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("ffmpeg is not installed")
    return path


@pytest.fixture(scope="session")
def m4a_file(tmp_path_factory, audio_dir, ffmpeg) -> Path:
    out = tmp_path_factory.mktemp("m4a") / "tone.m4a"
    subprocess.run([ffmpeg, "-v", "error", "-i", str(audio_dir / "tone.wav"), "-c:a", "aac", str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    """An MS-CR@2 model on three sources, with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    network = build_network("MS-CR@2", ["self", "bpm", "tag"])
    for module in network.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("models") / "mscr2-self-bpm-tag.safetensors"
    save_model_file(path, network, random_scaler(), name="mscr2-self-bpm-tag")
    return path


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    """A local Ray cluster with 2 CPUs, started once for the tests of the Ray engine; yields its address."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False,
             object_store_memory=128 * 2**20)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
