"""The HEAR 2021 API (https://hearbenchmark.com): ``load_model``, ``get_scene_embeddings``, ``get_timestamp_embeddings``.

Audio is a float tensor ``(n_sounds, n_samples)`` of mono sound at
``model.sample_rate`` (22,050 Hz); it is duplicated to the two channels the
networks take.

* Scene embeddings are the study's track representation: mean and std of the
  slice representations, ``model.scene_embedding_size = 2 x d x m``.
* Timestamp embeddings are the representation of a 2.5 s window centred on each
  timestamp, every ``hop`` seconds (default 50 ms, HEAR's recommendation);
  ``model.timestamp_embedding_size = d x m``. Windows are processed in batches,
  so long clips need no more memory than short ones.

Examples
--------
>>> import torch
>>> from mtlmusic import hear
>>> model = hear.load_model("model.safetensors")                    # doctest: +SKIP
>>> audio = torch.zeros(3, model.sample_rate * 4)                    # doctest: +SKIP
>>> hear.get_scene_embeddings(audio, model).shape                    # doctest: +SKIP
torch.Size([3, 512])
>>> emb, ts = hear.get_timestamp_embeddings(audio, model)            # doctest: +SKIP
>>> emb.shape, ts.shape                                              # doctest: +SKIP
(torch.Size([3, 81, 256]), torch.Size([3, 81]))
"""

from __future__ import annotations

import torch
from torch import nn

from .audio import SAMPLE_RATE
from .errors import AudioError
from .frontend import HOP_LENGTH, SLICE_FRAMES, track_db
from .model import Model
from .model import load_model as load_mtlmusic_model


class HearModel(nn.Module):
    """A :class:`~mtlmusic.model.Model` with the attributes HEAR expects."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: Model, hop: float = 0.05):
        super().__init__()
        self.model = model
        self.hop_frames = max(1, round(hop * SAMPLE_RATE / HOP_LENGTH))
        self.scene_embedding_size = model.dim
        self.timestamp_embedding_size = model.dim // 2


def load_model(model_file_path: str = "", hop: float = 0.05, device: str | None = None) -> HearModel:
    """Load a model for HEAR; an empty path loads the package's default model."""

    return HearModel(load_mtlmusic_model(model_file_path or "default", device=device), hop=hop)


def _check(audio: torch.Tensor) -> torch.Tensor:
    if audio.ndim != 2:
        raise AudioError(f"HEAR audio must be (n_sounds, n_samples), got shape {tuple(audio.shape)}.")
    if not torch.isfinite(audio).all():
        raise AudioError("Audio contains NaN or infinite values.")
    return audio.float()


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """``(n_sounds, n_samples) -> (n_sounds, scene_embedding_size)``."""
    rows = [torch.from_numpy(model.model.extract(sound, sr=SAMPLE_RATE)) for sound in _check(audio).cpu().numpy()]
    return torch.stack(rows) if rows else torch.zeros(0, model.scene_embedding_size)


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_sounds, n_samples) -> (embeddings (n_sounds, n_times, d*m), timestamps in ms (n_sounds, n_times))``.

    Timestamps are the centres of the 2.5 s windows, one every ``hop`` seconds
    from 0 to the end of the sound.
    """
    audio = _check(audio)
    if audio.shape[0] == 0:
        return torch.zeros(0, 0, model.timestamp_embedding_size), torch.zeros(0, 0)
    inner = model.model
    embeddings = []
    for sound in audio:
        db, floor = track_db(sound.cpu().numpy(), SAMPLE_RATE, inner.device)
        half = SLICE_FRAMES // 2
        padded = torch.cat([db.new_full((2, half, db.shape[2]), floor), db,
                            db.new_full((2, SLICE_FRAMES - half, db.shape[2]), floor)], dim=1)
        starts = torch.arange(0, db.shape[1], model.hop_frames)
        rows = []
        for batch in starts.split(inner.batch_size):
            windows = torch.stack([padded[:, s:s + SLICE_FRAMES] for s in batch.tolist()])
            rows.append(inner.slice_features(inner.scaler(windows)).cpu())
        embeddings.append(torch.cat(rows))
    times = torch.arange(embeddings[0].shape[0]) * model.hop_frames * HOP_LENGTH / SAMPLE_RATE * 1000.0
    return torch.stack(embeddings), times.expand(len(embeddings), -1).clone()
