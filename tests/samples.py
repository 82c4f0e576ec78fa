"""Test signals and paths shared by the test modules (import them as ``from samples import ...``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mtlmusic.frontend import Scaler

DATA = Path(__file__).parent / "data"
REAL_MUSIC = DATA / "wesnoth-elvish-theme-excerpt.ogg"


def tone(seconds: float, sr: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    """A (frames, channels) test signal: a chirp plus a little noise, different per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    cols = [0.4 * np.sin(2 * np.pi * (220 * (c + 1) + 80 * t) * t) + 0.02 * rng.standard_normal(t.size)
            for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def random_scaler(seed: int = 0) -> Scaler:
    """A plausible per-bin scaler (means around -35 dB, stds around 12 dB)."""
    g = torch.Generator().manual_seed(seed)
    return Scaler(-40 + 10 * torch.rand(128, generator=g), 10 + 5 * torch.rand(128, generator=g))
