"""A loaded model: front end + network + aggregation over slices.

:class:`Model` turns audio into the study's track representation: every 2.5 s
slice goes through the network, and the fc-feature activations are aggregated
by mean and (population) standard deviation over the slices, giving
``2 x d x m`` values per track (``m`` representation blocks of ``d = 256``).

Examples
--------
>>> import numpy as np, mtlmusic
>>> from mtlmusic.architectures import build_network
>>> from mtlmusic.frontend import Scaler
>>> model = mtlmusic.Model(build_network("MS-CR@2", ["self", "bpm"]), Scaler.identity())
>>> model.extract(np.zeros(22050 * 4, dtype=np.float32), sr=22050).shape
(1024,)
>>> model.feature_names[model.feature_slice("bpm", "std")][0]
'std.bpm.000'
"""

from __future__ import annotations

import copy
import os
import weakref
from dataclasses import dataclass
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .aggregation import SliceStats
from .architectures import MultiTaskNetwork
from .errors import AudioError, ConfigError
from .frontend import Scaler, SliceChunk, slice_start_times, track_slices
from .hub import load_network
from .modelfile import feature_names, load_model_file, save_model_file
from .nets import fold_batchnorm, use_elementwise_pooling


@dataclass(frozen=True)
class SliceFeatures:
    """Per-slice representation of one track: ``features`` (n_slices x d*m) and slice ``times`` (seconds)."""

    features: np.ndarray
    times: np.ndarray


def default_device() -> str:
    """``"cuda"`` when a CUDA device is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The :class:`torch.device` for ``device``, checked against the devices of this machine.

    ``None`` means :func:`default_device`. Raises :class:`~mtlmusic.errors.ConfigError`
    for a string that names no device (valid forms: ``'cpu'``, ``'cuda'``,
    ``'cuda:N'``, ``'mps'``) and for a device this machine does not have.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    forms = "'cpu', 'cuda', 'cuda:N' (N = GPU index) or 'mps'"
    try:
        resolved = torch.device(default_device() if device is None else device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"Unknown device {device!r}: use {forms}.") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"Device {device!r}: CUDA is not available on this machine "
                              "(torch.cuda.is_available() is False); use device='cpu'.")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(f"Device {device!r} does not exist: this machine has {count} CUDA device(s), "
                              f"{', '.join(f'cuda:{i}' for i in range(count))}.")
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"Device {device!r}: MPS is not available on this machine "
                              "(torch.backends.mps.is_available() is False); use device='cpu'.")
    elif resolved.type != "cpu":
        raise ConfigError(f"Device {device!r} is not supported: use {forms}.")
    return resolved


def _state_objects(network: torch.nn.Module) -> Iterator[torch.nn.Module | torch.Tensor]:
    """Every module of ``network`` followed by its own parameters and buffers."""
    for module in network.modules():
        yield module
        for tensors in (module._parameters, module._buffers):  # read directly: twice as fast as .parameters()
            yield from (tensor for tensor in tensors.values() if tensor is not None)


def _stamp(obj: torch.nn.Module | torch.Tensor) -> tuple[int, int] | None:
    return (obj.data_ptr(), obj._version) if isinstance(obj, torch.Tensor) else None


class _NetworkState:
    """A cheap fingerprint of what a network computes with, to tell whether it changed since.

    Modules, parameters and buffers are followed by weak reference (replacing
    any of them shows), tensors also by storage address (moving or casting the
    network shows) and version counter, which every in-place update bumps
    (``optimizer.step()``, ``load_state_dict``, ``nn.init``, BatchNorm statistics).
    The train/eval mode is left out: extraction does not depend on it.
    """

    def __init__(self, network: torch.nn.Module):
        self._items = [(weakref.ref(obj), _stamp(obj)) for obj in _state_objects(network)]

    def matches(self, network: torch.nn.Module) -> bool:
        """Whether ``network`` still has the modules and tensor contents it had when this was taken."""
        current = list(_state_objects(network))
        return len(current) == len(self._items) and all(
            ref() is obj and _stamp(obj) == stamp for (ref, stamp), obj in zip(self._items, current))


#: Slices per forward pass of the network on the CPU (see :meth:`Model.slice_features`).
CPU_FORWARD_SLICES = 32


class Model:
    """A representation model ready for extraction.

    Parameters
    ----------
    network : MultiTaskNetwork
        The network; it is put in eval mode.
    scaler : Scaler
        Per-mel-bin standardization of the front end.
    config : dict, optional
        The model file's config (name, info, ...).
    device : str or torch.device, optional
        Where to run: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'mps'``; defaults to
        CUDA when available. A device this machine lacks raises
        :class:`~mtlmusic.errors.ConfigError`.
    batch_size : int
        Slices per forward pass.

    Notes
    -----
    Extraction runs a BatchNorm-folded copy of :attr:`network` in eval mode,
    rebuilt whenever the network changed since the last call: fine-tuning it in
    place, ``load_state_dict``, replacing a layer, moving it. Its train/eval mode
    does not matter. Writes through ``tensor.data`` are invisible to that check;
    call :meth:`to` after them.

    Examples
    --------
    >>> # model.network.load_state_dict(other_weights); model.extract("song.mp3")  # uses the new weights
    """

    def __init__(self, network: MultiTaskNetwork, scaler: Scaler, config: dict[str, Any] | None = None,
                 device: str | torch.device | None = None, batch_size: int = 64):
        self.network = network.eval()
        self.scaler = scaler
        self.config = dict(config or {})
        self.batch_size = int(batch_size)
        self.to(device)

    @property
    def name(self) -> str | None:
        """The model's name, when it has one."""
        return self.config.get("name")

    @property
    def architecture(self) -> str:
        """One of ``SS-R``, ``MSS-CR``, ``MS-CR@2``, ``MS-CR@4``, ``MS-CR@6``, ``MS-SR@FC``."""
        return self.network.architecture

    @property
    def sources(self) -> tuple[str, ...]:
        """The learning sources the network was trained on."""
        return self.network.sources

    @property
    def representation_blocks(self) -> tuple[str, ...]:
        """Names of the d-sized blocks of one slice's representation (sources, or ``shared``)."""
        return self.network.representation_blocks

    @property
    def dim(self) -> int:
        """Length of one track's feature vector: 2 (mean, std) x d x m."""
        return 2 * self.network.representation_dim

    @property
    def scaler_cpu(self) -> Scaler:
        """The front end's scaler on the CPU (for worker processes)."""
        return self.scaler.to("cpu")

    @property
    def feature_names(self) -> list[str]:
        """``stat.block.index`` for every feature, e.g. ``'mean.bpm.007'``."""
        return feature_names(self.representation_blocks)

    def feature_slice(self, block: str, stat: str = "mean") -> slice:
        """Where one block's ``'mean'`` or ``'std'`` values sit in a feature vector.

        >>> # features[model.feature_slice("tag", "mean")] -> the 256 tag means
        """
        if block not in self.representation_blocks or stat not in ("mean", "std"):
            raise ConfigError(f"No block {block!r} / stat {stat!r}: blocks are {list(self.representation_blocks)}, "
                              "stats 'mean' and 'std'.")
        d = self.network.representation_dim // len(self.representation_blocks)
        start = (0 if stat == "mean" else self.network.representation_dim) + self.representation_blocks.index(block) * d
        return slice(start, start + d)

    def to(self, device: str | torch.device | None) -> "Model":
        """Move the model to ``device`` (``None``: the default device); returns self.

        Raises :class:`~mtlmusic.errors.ConfigError` for a device this machine lacks
        (see :func:`resolve_device`).
        """
        self.device = resolve_device(device)
        self.network.to(self.device)
        self.scaler = self.scaler.to(self.device)
        self._build_inference_network()
        return self

    def _build_inference_network(self) -> None:
        # Inference runs on an eval-mode copy with BatchNorm folded into the layers before it,
        # channels-last (and, on the CPU, with max pooling as elementwise maxima).
        self._inference_state = _NetworkState(self.network)
        network = fold_batchnorm(copy.deepcopy(self.network).eval())
        if self.device.type == "cpu":
            use_elementwise_pooling(network)
        self._inference_network = network.to(self.device, memory_format=torch.channels_last)

    def __getstate__(self) -> dict[str, Any]:
        # The inference copy derives from the network: pickles (and copies) leave it out and rebuild it.
        return {key: value for key, value in self.__dict__.items()
                if key not in ("_inference_network", "_inference_state")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._build_inference_network()

    def _current_inference_network(self) -> torch.nn.Module:
        """The inference copy of :attr:`network`, rebuilt first when the network changed since it was made."""
        if not self._inference_state.matches(self.network):
            self._build_inference_network()
        return self._inference_network

    def slice_features(self, slices: torch.Tensor) -> torch.Tensor:
        """Representation of a batch of standardized slices: ``(n, 2, 216, 128) -> (n, d*m)`` float32.

        Uses the current weights of :attr:`network`. On the CPU the network runs on
        at most :data:`CPU_FORWARD_SLICES` slices at a time, whatever the batch
        size: larger forward passes outgrow the cache.
        """
        network = self._current_inference_network()
        step = CPU_FORWARD_SLICES if self.device.type == "cpu" else max(1, slices.shape[0])
        with torch.inference_mode():
            return torch.cat([network.features(
                part.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)).float()
                for part in slices.split(step)])

    def track_features(self, source, sr: int | None = None) -> Iterator[SliceChunk]:
        """The representation of each chunk of slices of one track, as :class:`~mtlmusic.frontend.SliceChunk` s.

        >>> # [chunk.slices.shape for chunk in model.track_features("song.mp3")] -> [(n, d*m)]
        """
        for chunk in track_slices(source, sr, self.scaler, self.device, chunk_slices=self.batch_size):
            yield SliceChunk(self.slice_features(chunk.slices), chunk.weights)

    def extract(self, audio, sr: int | None = None) -> np.ndarray:
        """Aggregated features of one track (a vector) or of several (an N x D array).

        Parameters
        ----------
        audio : path, array, or a list of them
            A file path, a waveform ``(n,)`` / ``(channels, n)`` with ``sr``, or a
            list of paths (or arrays) for a batch.
        sr : int, optional
            Sample rate of array input.

        Returns
        -------
        numpy.ndarray
            float32 ``(D,)`` for one track, ``(N, D)`` for a list; ``D`` = :attr:`dim`.

        Examples
        --------
        >>> # model.extract("song.mp3").shape  -> (model.dim,)
        >>> # model.extract(["a.mp3", "b.flac"]).shape  -> (2, model.dim)
        """
        if not isinstance(audio, (list, tuple)):
            return self._extract_one(audio, sr)
        if all(isinstance(item, (str, os.PathLike)) for item in audio):
            from .extraction.engine import extract_files  # batches slices of many files through the network

            rows = []
            for result in extract_files(self, audio, workers=None):  # as mtlmusic-extract: see engine_setup
                if result.error:
                    raise AudioError(result.error)
                rows.append(result.features)
        else:
            rows = [self._extract_one(item, sr) for item in audio]
        return np.stack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)

    def _extract_one(self, audio, sr: int | None) -> np.ndarray:
        stats = SliceStats()
        for chunk in self.track_features(audio, sr):
            stats.add(chunk.slices, chunk.weights)
        return stats.aggregate()

    def extract_slices(self, audio, sr: int | None = None) -> SliceFeatures:
        """Per-slice features of one track with each slice's start time in seconds.

        >>> # sf = model.extract_slices("song.mp3"); sf.features.shape, sf.times[:2]
        """
        if isinstance(audio, (list, tuple)):
            raise ConfigError("extract_slices takes one track; call it once per file.")
        features = torch.cat([chunk.slices for chunk in self.track_features(audio, sr)]).cpu().numpy()
        return SliceFeatures(features, slice_start_times(features.shape[0]))

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the model to a file that :func:`mtlmusic.load_model` reads."""
        save_model_file(path, self.network, self.scaler, name=self.name, info=self.config.get("info"),
                        overwrite=overwrite)

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> "Model":
        """Load a model file (see :mod:`mtlmusic.modelfile`)."""
        network, scaler, config = load_model_file(path)
        return cls(network, scaler, {**config, "path": str(path)}, device=device)

    def __repr__(self) -> str:
        return (f"Model(name={self.name!r}, architecture={self.architecture!r}, sources={list(self.sources)}, "
                f"dim={self.dim}, device={str(self.device)!r})")



def load_model(name_or_path: str | os.PathLike = "default", device: str | None = None) -> Model:
    """Load a model by name or from a model file.

    Parameters
    ----------
    name_or_path : str or path-like
        A model name (see :func:`mtlmusic.list_models`), an alias such as ``"default"``, or
        the path of a ``.safetensors`` model file. Named models come from the
        package, the local cache or the hub (see :mod:`mtlmusic.hub`); an MSS-CR
        name such as ``"msscr-self-bpm"`` is assembled from its SS-R members.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; defaults to CUDA when
        available. A device this machine lacks raises
        :class:`~mtlmusic.errors.ConfigError` before anything is loaded.

    Returns
    -------
    Model

    Examples
    --------
    >>> model = mtlmusic.load_model("model.safetensors")       # doctest: +SKIP
    >>> model.extract("song.mp3").shape                          # doctest: +SKIP
    (512,)
    """
    resolve_device(device)
    network, scaler, config = load_network(name_or_path)
    return Model(network, scaler, config, device=device)


@lru_cache(maxsize=4)
def _cached_model(name_or_path: str, device: str | None) -> Model:
    return load_model(name_or_path, device)


def extract(audio, sr: int | None = None, model: str | os.PathLike | Model = "default",
            device: str | None = None) -> np.ndarray:
    """Features of one track (vector) or of a list of tracks (N x D), with a model loaded once and reused.

    Parameters
    ----------
    audio : path, array, or list of them
        See :meth:`Model.extract`.
    sr : int, optional
        Sample rate of array input.
    model : str, path-like or Model
        A model name, a model file, or a loaded :class:`Model`.
    device : str, optional
        Device for a model loaded by name (see :func:`load_model`).

    Examples
    --------
    >>> mtlmusic.extract("song.mp3").shape                      # doctest: +SKIP
    (512,)
    """
    if not isinstance(model, Model):
        model = _cached_model(os.fspath(model), device)
    return model.extract(audio, sr=sr)
