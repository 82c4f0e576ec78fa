"""From slices to a track: weighted mean and standard deviation of per-slice representations.

A track is cut into 2.5 s slices; its final slice is usually partial, padded
with silence. In the track vector each slice counts by the fraction of real
(unpadded) audio it holds (:class:`mtlmusic.frontend.SliceChunk` carries the
weights), so a few milliseconds more audio move the vector by
a few milliseconds' worth, not by a whole slice of padding. A track shorter
than one slice is its one (padded) slice.

Examples
--------
>>> import torch
>>> from mtlmusic.aggregation import SliceStats
>>> stats = SliceStats()
>>> stats.add(torch.tensor([[1.0], [3.0], [9.0]]), torch.tensor([1.0, 1.0, 0.0]))
>>> stats.aggregate()                        # the weightless third slice does not count
array([2., 1.], dtype=float32)
"""

from __future__ import annotations

import numpy as np
import torch

#: How track vectors are made, recorded with every feature table: tables made otherwise
#: (by earlier versions, which counted a padded final slice fully) are never mixed with these.
AGGREGATION = "slice-weighted mean and std"


class SliceStats:
    """Weighted mean and population std over slices, accumulated chunk by chunk (float64).

    >>> import torch
    >>> stats = SliceStats()
    >>> stats.add(torch.tensor([[1.0], [3.0]])); stats.add(torch.tensor([[5.0]]))
    >>> stats.aggregate()
    array([3.       , 1.6329932], dtype=float32)
    """

    def __init__(self):
        self.count = 0
        self.weight = 0.0
        self.total = self.total_sq = None

    def add(self, features: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        """Add ``(n, d)`` per-slice features, each with its weight (default 1)."""
        features = features.double()
        if weights is not None:
            weights = weights.to(features.device, torch.float64)
            part, part_sq = weights @ features, weights @ features.square()
            self.weight += float(weights.sum())
        else:
            part, part_sq = features.sum(0), features.square().sum(0)
            self.weight += features.shape[0]
        self.total = part if self.total is None else self.total + part
        self.total_sq = part_sq if self.total_sq is None else self.total_sq + part_sq
        self.count += features.shape[0]

    def aggregate(self) -> np.ndarray:
        """``[mean, std]`` concatenated, float32, as a NumPy array."""
        mean = self.total / self.weight
        std = torch.sqrt(torch.clamp(self.total_sq / self.weight - mean.square(), min=0.0))
        return torch.cat([mean, std]).float().cpu().numpy()
