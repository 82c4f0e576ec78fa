"""Shared fixtures: real and generated audio in several formats, and small model files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mtlmusic.architectures import build_network
from mtlmusic.frontend import Scaler
from mtlmusic.modelfile import save_model_file

DATA = Path(__file__).parent / "data"
REAL_MUSIC = DATA / "wesnoth-elvish-theme-excerpt.ogg"


def tone(seconds: float, sr: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    """A (frames, channels) test signal: a chirp plus a little noise, different per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    cols = [0.4 * np.sin(2 * np.pi * (220 * (c + 1) + 80 * t) * t) + 0.02 * rng.standard_normal(t.size)
            for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


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


def random_scaler(seed: int = 0) -> Scaler:
    g = torch.Generator().manual_seed(seed)
    return Scaler(-40 + 10 * torch.rand(128, generator=g), 10 + 5 * torch.rand(128, generator=g))


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
