"""A tiny GTZAN-layout folder of generated clips, shared by the evaluation tests."""

from __future__ import annotations

import numpy as np
import soundfile as sf

SR = 22050


def genre_clip(genre: str, n: int, seconds: float = 1.0) -> np.ndarray:
    """Stereo clip: a low steady tone for 'blues', a high chirp for 'rock', a little noise each."""
    rng = np.random.default_rng(n)
    t = np.arange(int(seconds * SR)) / SR
    if genre == "blues":
        y = 0.5 * np.sin(2 * np.pi * (150 + 10 * n) * t)
    else:
        y = 0.3 * np.sin(2 * np.pi * (3000 + 400 * n + 2000 * t) * t)
    y = y + 0.01 * rng.standard_normal(t.size)
    return np.stack([y, y], axis=1).astype(np.float32)


def write_gtzan(root, clips: int, seconds: float = 1.0):
    """``root/genres/{blues,rock}/<genre>.0000n.wav``, ``clips`` of each; returns ``root``."""
    for genre in ("blues", "rock"):
        folder = root / "genres" / genre
        folder.mkdir(parents=True)
        for n in range(clips):
            sf.write(folder / f"{genre}.{n:05d}.wav", genre_clip(genre, n, seconds), SR)
    return root
