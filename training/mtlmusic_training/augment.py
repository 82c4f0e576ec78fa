"""Augmentation of training crops in the dB mel domain: gain, equalisation, pitch shift and time stretch.

Each training crop gets its own random change, drawn with the epoch's other choices
(seeded by the run's seed and the epoch, so a resumed run draws the same) and applied
on the device before standardization, without a host round trip (CUDA graphs keep
working). Validation crops are never changed.

* **gain**: ``gain_db``, a level change uniform in ``[-gain_db, gain_db]`` dB;
* **equalisation**: ``eq_db``, a smooth curve over the mel bands (4 cosines of random
  weights), at most ``eq_db`` dB up or down;
* **pitch shift**: ``pitch_bands``, a shift along the mel axis uniform in
  ``[-pitch_bands, pitch_bands]`` bands (fractional, linear interpolation; one mel
  band is about a semitone in the upper bands, more in the lowest), the edge band
  repeated;
* **time stretch**: ``stretch``, the crop resampled in time about its centre by a
  factor uniform in ``[1 - stretch, 1 + stretch]``, the edge frames repeated.

A change that alters a source's target is not applied to that source's crops: no
time stretch for the tempo and rhythm sources (:data:`TEMPO_SOURCES`), no pitch shift
for the pitch sources (:data:`PITCH_SOURCES`).

Examples
--------
>>> import numpy as np, torch
>>> aug = Augmentation.parse("gain_db=6,eq_db=3,pitch_bands=1,stretch=0.05")
>>> params = aug.draw(np.random.default_rng(0), (2, 4), "tag")
>>> params.shape
(2, 4, 7)
>>> aug.apply(torch.zeros(4, 2, 216, 128), torch.from_numpy(params[0])).shape
torch.Size([4, 2, 216, 128])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from mtlmusic.errors import ConfigError

#: Sources whose targets follow the tempo or the rhythm: their crops are not time-stretched.
TEMPO_SOURCES = frozenset({"bpm", "onset", "tempogram", "notes", "tempo_cnn"})
#: Sources whose targets follow the pitch: their crops are not pitch-shifted.
PITCH_SOURCES = frozenset({"chroma", "pitch"})
#: Cosines of the equalisation curve.
EQ_TERMS = 4
#: Per crop: gain, pitch shift, stretch factor, then the equalisation weights.
N_PARAMS = 3 + EQ_TERMS


@dataclass(frozen=True)
class Augmentation:
    """How much each change may alter a crop (0: not at all); see the module docs."""

    gain_db: float = 0.0
    eq_db: float = 0.0
    pitch_bands: float = 0.0
    stretch: float = 0.0

    def __post_init__(self):
        for field in fields(self):
            if not math.isfinite(getattr(self, field.name)) or getattr(self, field.name) < 0:
                raise ConfigError(f"Augmentation {field.name} must be a finite number >= 0, "
                                  f"got {getattr(self, field.name)}.")
        if self.stretch >= 1:
            raise ConfigError(f"Augmentation stretch must be below 1, got {self.stretch}.")

    @classmethod
    def parse(cls, spec: str) -> Augmentation:
        """From ``"gain_db=6,eq_db=6,pitch_bands=1,stretch=0.05"`` (missing keys: 0)."""
        values = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"Unknown augmentation {item!r}: give key=value pairs.")
            values[key.strip()] = value.strip()
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> Augmentation:
        """From ``{"gain_db": 6, ...}`` (what :meth:`as_dict` gives; missing keys: 0)."""
        names = [field.name for field in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(f"Unknown augmentation {', '.join(unknown)}: the keys are {', '.join(names)}.")
        numbers = {}
        for key, value in values.items():
            try:
                numbers[key] = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"Augmentation {key} needs a number, got {value!r}.") from None
        return cls(**numbers)

    def as_dict(self) -> dict[str, float]:
        """The non-zero settings (what a run's configuration records)."""
        return {key: value for key, value in asdict(self).items() if value}

    def __bool__(self) -> bool:
        return bool(self.as_dict())

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...], source: str) -> np.ndarray:
        """Parameters of ``shape`` crops of ``source``: float32 array ``shape + (N_PARAMS,)``."""
        def uniform(bound: float) -> np.ndarray:
            return rng.uniform(-bound, bound, size=shape)

        gain = uniform(self.gain_db)
        shift = uniform(0.0 if source in PITCH_SOURCES else self.pitch_bands)
        factor = 1.0 + uniform(0.0 if source in TEMPO_SOURCES else self.stretch)
        eq = rng.uniform(-1.0, 1.0, size=(*shape, EQ_TERMS)) * (self.eq_db / EQ_TERMS)
        return np.concatenate([np.stack([gain, shift, factor], axis=-1), eq], axis=-1).astype(np.float32)

    def apply(self, db: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Change dB crops ``(n, channels, frames, bands)`` by their ``params`` ``(n, N_PARAMS)``."""
        n, _, frames, bands = db.shape
        params = params.to(db.dtype)
        gain, shift, factor, eq = params[:, 0], params[:, 1], params[:, 2], params[:, 3:]
        band = torch.arange(bands, device=db.device, dtype=db.dtype)
        if self.stretch or self.pitch_bands:
            time = torch.arange(frames, device=db.device, dtype=db.dtype)
            centre = (frames - 1) / 2
            db = _warp(db, centre + (time - centre) * factor[:, None], band - shift[:, None])
        k = torch.arange(1, EQ_TERMS + 1, device=db.device, dtype=db.dtype)
        curve = eq @ torch.cos(math.pi * k[:, None] * (band + 0.5) / bands)     # (n, bands)
        return db + (gain[:, None] + curve)[:, None, None, :]


def _warp(db: torch.Tensor, frames: torch.Tensor, bands: torch.Tensor) -> torch.Tensor:
    """``db`` read at fractional ``frames`` ``(n, frames)`` and ``bands`` ``(n, bands)``: bilinear, which on this
    axis-aligned grid is linear interpolation along each axis in turn, the edges repeated."""
    n, _, n_frames, n_bands = db.shape
    y = frames * (2 / (n_frames - 1)) - 1          # grid_sample's coordinates: -1 and 1 are the edge cells
    x = bands * (2 / (n_bands - 1)) - 1
    grid = torch.stack([x[:, None, :].expand(n, n_frames, n_bands), y[:, :, None].expand(n, n_frames, n_bands)],
                       dim=-1)
    return F.grid_sample(db, grid, mode="bilinear", padding_mode="border", align_corners=True)
