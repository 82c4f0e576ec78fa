"""The mel cache: every training track decoded and transformed once, stored as float16 dB mel frames.

Training crops 2.5 s windows at random from tens of thousands of tracks for
hundreds of epochs; decoding MP3s and computing spectrograms each time would
dominate. The cache holds, for every track, exactly what :mod:`mtlmusic`'s
extraction computes before standardization: the power mel spectrogram
turned into dB with the track's own loudest bin as the ``top_db`` reference:
:func:`mtlmusic.frontend.track_db`.

Layout of a cache folder::

    <root>/index.json          the index, written last (a cache without it is incomplete)
    <root>/shards/00000.npy    float16, shape (frames_in_shard, 2, 128): frames x channel x mel
    <root>/shards/00000.json   the shard's tracks, their offsets and lengths, failures, sha256

Tracks follow each other in a shard, frame after frame, so a crop is one
contiguous read from a memory-mapped ``.npy`` file. A track shorter than one
slice (216 frames) is padded to 216 frames with its dB floor
(:func:`mtlmusic.frontend.db_floor`, the value digital silence takes), as the
front end pads slices; ``n_audio_frames`` keeps the unpadded length.

Building (:func:`build_mel_cache`) splits the tracks into shards of
``shard_tracks`` consecutive tracks and builds them in a process pool. Every
file is written atomically (a temporary file, then a rename); a shard's
``.json`` is written after its ``.npy`` and marks it complete. Running the same
build again after an interruption keeps every shard whose ``.json`` lists the
same tracks and whose ``.npy`` matches its checksum, and builds the rest.
A track that cannot be decoded (:class:`mtlmusic.errors.AudioError`) is left
out and reported in :attr:`MelCache.failures`; to retry such tracks, delete the
files of their shards and build again. One build at a time per folder.

Examples
--------
>>> import tempfile, pathlib
>>> import numpy as np, soundfile as sf
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> sf.write(folder / "a.wav", np.zeros(22050 * 3, dtype=np.float32), 22050)
>>> cache = build_mel_cache([("a", folder / "a.wav")], folder / "cache", workers=0)
>>> cache.track_ids.tolist(), cache.n_frames.tolist()
(['a'], [259])
>>> cache.crops([0], [10]).shape
(1, 2, 216, 128)
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from mtlmusic.audio import SAMPLE_RATE
from mtlmusic.errors import AudioError, ConfigError, MtlmusicError
from mtlmusic.files import PARTIAL_SUFFIX, atomic_path, file_sha256
from mtlmusic.frontend import AMIN, HOP_LENGTH, N_FFT, N_MELS, SLICE_FRAMES, TOP_DB, Scaler, track_db

from .datasets import Manifest, check_track_ids

#: Version of the cache layout; a cache of another version must be rebuilt.
CACHE_FORMAT_VERSION = 1
#: Tracks per shard by default (about 170 MB of float16 for 30 s previews).
SHARD_TRACKS = 128
#: The front-end settings a cache was computed with; a cache made with others is refused.
FRONTEND = {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop_length": HOP_LENGTH, "n_mels": N_MELS,
            "top_db": TOP_DB, "amin": AMIN}

#: dB per step of the uint8 coding of :meth:`MelCache.to_tensor` (255 steps span a track's ``TOP_DB``).
UINT8_DB_STEP = TOP_DB / 255

_DTYPE = np.dtype("<f2")
_INDEX = "index.json"
_SHARDS = "shards"


class MelCacheError(MtlmusicError, ValueError):
    """A mel cache folder is missing, incomplete, of another version or inconsistent."""


class MelTensors(NamedTuple):
    """The whole cache (or a subset of its tracks) as torch tensors, for crops on the GPU.

    Attributes
    ----------
    flat : torch.Tensor of float16 or uint8, shape (total_frames, 2, 128)
        Every track's frames, one track after the other (uint8: coded, see :meth:`MelCache.to_tensor`).
    offsets : torch.Tensor of int64, shape (n_tracks,)
        Row of ``flat`` where each track starts.
    lengths : torch.Tensor of int64, shape (n_tracks,)
        Frames of each track (padding included, so at least 216).
    """

    flat: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor


class MelCache:
    """A built mel cache, opened read-only; crops are read from memory-mapped shards.

    Open one with :meth:`open` (or get it from :func:`build_mel_cache`). Tracks
    are numbered ``0 .. len(cache) - 1`` in the order of the build's input,
    failed tracks left out.

    Attributes
    ----------
    root : Path
        The cache folder.
    track_ids : ndarray of str, shape (n_tracks,)
    n_frames : ndarray of int64, shape (n_tracks,)
        Stored frames of each track, padding included (at least 216).
    n_audio_frames : ndarray of int64, shape (n_tracks,)
        Frames computed from the audio, ``1 + n_samples // 256``, before padding.
    floors : ndarray of float32, shape (n_tracks,)
        Each track's dB floor (its padding value).
    failures : dict of str to str
        Track id -> why it could not be decoded.
    """

    def __init__(self, root: Path, index: dict):
        self.root = root
        tracks = index["tracks"]
        self.track_ids = np.asarray(tracks["track_id"], dtype=str)
        self.n_frames = np.asarray(tracks["n_frames"], dtype=np.int64)
        self.n_audio_frames = np.asarray(tracks["n_audio_frames"], dtype=np.int64)
        self.floors = np.asarray(tracks["floor"], dtype=np.float32)
        self.failures = dict(index["failures"])
        self._shard = np.asarray(tracks["shard"], dtype=np.int64)
        self._offset = np.asarray(tracks["offset"], dtype=np.int64)
        self._shards = index["shards"]
        self._maps: dict[int, np.ndarray] = {}
        self._row = {track_id: i for i, track_id in enumerate(self.track_ids.tolist())}

    @classmethod
    def open(cls, root: str | os.PathLike) -> MelCache:
        """Open the cache built in ``root``.

        Raises
        ------
        MelCacheError
            If ``root`` holds no complete cache, or one of another format or front end.

        Examples
        --------
        See :func:`build_mel_cache`.
        """
        root = Path(root)
        path = root / _INDEX
        if not path.is_file():
            raise MelCacheError(f"{root} holds no complete mel cache (no {_INDEX}); build it with "
                                "build_mel_cache (an interrupted build resumes where it stopped).")
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise MelCacheError(f"Cannot read {path}: {err}. Delete it and build the cache again.") from err
        if index.get("version") != CACHE_FORMAT_VERSION:
            raise MelCacheError(f"{root} is a mel cache of format version {index.get('version')}; this code reads "
                                f"version {CACHE_FORMAT_VERSION}. Build the cache again in a new folder.")
        if index.get("frontend") != FRONTEND:
            raise MelCacheError(f"{root} was computed with front-end settings {index.get('frontend')}, not "
                                f"{FRONTEND}. Build the cache again in a new folder.")
        return cls(root, index)

    def __len__(self) -> int:
        return len(self.track_ids)

    def __repr__(self) -> str:
        return (f"MelCache({str(self.root)!r}, tracks={len(self)}, frames={int(self.n_frames.sum())}, "
                f"shards={len(self._shards)}, failures={len(self.failures)})")

    def index_of(self, track_ids: Iterable[str]) -> np.ndarray:
        """Cache rows of the given track ids.

        Raises
        ------
        KeyError
            For an id that is not in the cache (never listed, or failed to decode).

        Examples
        --------
        >>> cache.index_of(["a"]).tolist()  # doctest: +SKIP
        [0]
        """
        ids = list(track_ids)
        missing = [t for t in ids if t not in self._row]
        if missing:
            raise KeyError(f"{len(missing)} track(s) are not in the mel cache {self.root}, e.g. {missing[:5]}"
                           + (f"; {len(self.failures)} track(s) failed to decode" if self.failures else ""))
        return np.fromiter((self._row[t] for t in ids), dtype=np.int64, count=len(ids))

    def crops(self, track_indices: Sequence[int], starts: Sequence[int], frames: int = SLICE_FRAMES) -> np.ndarray:
        """Read ``frames`` frames of each track from ``starts``: only those frames are read from disk.

        Parameters
        ----------
        track_indices : sequence of int, length n
            Cache rows.
        starts : sequence of int, length n
            First frame of each crop; ``start + frames`` must not pass the track's end.
        frames : int
            Length of each crop.

        Returns
        -------
        ndarray of float32, shape (n, 2, frames, 128)
            dB mel values (channel, time, mel).

        Examples
        --------
        >>> cache.crops([0, 0], [0, 40], frames=100).shape  # doctest: +SKIP
        (2, 2, 100, 128)
        """
        tracks = np.asarray(track_indices, dtype=np.int64).reshape(-1)
        starts = np.asarray(starts, dtype=np.int64).reshape(-1)
        if tracks.shape != starts.shape:
            raise ValueError(f"Need one start per track, got {len(tracks)} tracks and {len(starts)} starts.")
        if len(tracks) and (tracks.min() < 0 or tracks.max() >= len(self)):
            raise IndexError(f"Track indices must lie in [0, {len(self)}).")
        bad = (starts < 0) | (starts + frames > self.n_frames[tracks])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"Crop of {frames} frames from frame {starts[i]} does not fit track "
                             f"{self.track_ids[tracks[i]]!r} of {self.n_frames[tracks[i]]} frames.")
        out = np.empty((len(tracks), 2, frames, N_MELS), dtype=np.float32)
        for i, (track, start) in enumerate(zip(tracks.tolist(), starts.tolist())):
            first = self._offset[track] + start
            out[i] = self._shard_map(int(self._shard[track]))[first:first + frames].transpose(1, 0, 2)
        return out

    def random_starts(self, track_indices: Sequence[int], rng: np.random.Generator,
                      frames: int = SLICE_FRAMES) -> np.ndarray:
        """Uniformly random crop starts, one per track, such that every crop fits its track.

        Examples
        --------
        >>> starts = cache.random_starts([0], np.random.default_rng(0))  # doctest: +SKIP
        """
        tracks = np.asarray(track_indices, dtype=np.int64)
        room = self.n_frames[tracks] - frames + 1
        if (room < 1).any():
            raise ValueError(f"Some tracks are shorter than {frames} frames (the shortest has "
                             f"{int(self.n_frames[tracks].min())}).")
        return rng.integers(0, room)

    def to_tensor(self, device: str | torch.device = "cpu", track_indices: Sequence[int] | None = None,
                  dtype: torch.dtype = torch.float16) -> MelTensors:
        """The frames of all tracks (or of ``track_indices``) in one tensor on ``device``.

        Each shard is read once and copied in one piece; the tracks lie in
        ``flat`` in cache order whatever the order of ``track_indices``.

        Parameters
        ----------
        device : str or torch.device
        track_indices : sequence of int, optional
            Keep only these tracks; row ``i`` of ``offsets`` and ``lengths`` is then
            ``track_indices[i]``.
        dtype : torch.float16 or torch.uint8
            float16: the cache's dB values as they are. uint8: half the memory, each
            value coded in :data:`UINT8_DB_STEP` steps above its track's floor
            (a track spans ``TOP_DB`` above its floor, so the coding loses at most
            half a step, 0.16 dB); pass the tracks' floors to :func:`gpu_crops`.

        Returns
        -------
        MelTensors
            ``(flat, offsets, lengths)``; crop it with :func:`gpu_crops`.

        Examples
        --------
        >>> flat, offsets, lengths = cache.to_tensor("cpu")  # doctest: +SKIP
        >>> gpu_crops(flat, offsets[[0]], torch.tensor([5])).shape  # doctest: +SKIP
        torch.Size([1, 2, 216, 128])
        """
        if dtype not in (torch.float16, torch.uint8):
            raise ValueError(f"A mel cache tensor is float16 or uint8, not {dtype}.")
        device = torch.device(device)
        tracks = np.arange(len(self)) if track_indices is None else np.asarray(track_indices, dtype=np.int64)
        held = np.unique(tracks)
        starts = np.concatenate([[0], np.cumsum(self.n_frames[held])]).astype(np.int64)
        flat = torch.empty((int(starts[-1]), 2, N_MELS), dtype=dtype, device=device)
        for shard in np.unique(self._shard[held]).tolist():
            members = held[self._shard[held] == shard]
            first, last = starts[np.searchsorted(held, members[[0, -1]])] + [0, self.n_frames[members[-1]]]
            data = self._shard_map(shard)
            ends = self._offset[members] + self.n_frames[members]
            if np.array_equal(self._offset[members[1:]], ends[:-1]):   # consecutive tracks: one slice
                part = np.array(data[self._offset[members[0]]:ends[-1]])
            else:
                part = np.concatenate([data[a:b] for a, b in zip(self._offset[members], ends)])
            frames = torch.from_numpy(part).to(device)
            if dtype == torch.uint8:
                floors = torch.as_tensor(self.floors[members], device=device).repeat_interleave(
                    torch.as_tensor(self.n_frames[members], device=device))
                frames = (frames.float() - floors[:, None, None]).div_(UINT8_DB_STEP).round_().clamp_(0, 255)
            flat[first:last] = frames.to(dtype)
        offsets = starts[np.searchsorted(held, tracks)]
        return MelTensors(flat, torch.as_tensor(offsets, device=device),
                          torch.as_tensor(self.n_frames[tracks], device=device))

    def verify(self, checksums: bool = True) -> list[str]:
        """Check the cache: every shard's shape, the index's consistency and (optionally) each shard's sha256.

        Parameters
        ----------
        checksums : bool
            Also hash every shard file (reads the whole cache).

        Returns
        -------
        list of str
            The problems found; empty when the cache is sound.

        Examples
        --------
        >>> cache.verify()  # doctest: +SKIP
        []
        """
        problems = []
        if len(self._row) != len(self.track_ids):
            problems.append("the index lists some track ids more than once")
        floor_ok = np.isfinite(self.floors)
        if not floor_ok.all():
            problems.append(f"{int((~floor_ok).sum())} track(s) have a non-finite dB floor")
        expected = np.maximum(self.n_audio_frames, SLICE_FRAMES)
        if (self.n_audio_frames < 1).any() or not np.array_equal(self.n_frames, expected):
            problems.append("track lengths disagree with their unpadded lengths (n_frames != max(n_audio_frames, "
                            f"{SLICE_FRAMES}))")
        for shard, entry in enumerate(self._shards):
            path = self.root / _SHARDS / entry["file"]
            rows = np.flatnonzero(self._shard == shard)
            ends = self._offset[rows] + self.n_frames[rows]
            tiles = np.r_[0, ends]
            if not np.array_equal(self._offset[rows], tiles[:-1]) or tiles[-1] != entry["n_frames"]:
                problems.append(f"{path.name}: the index's offsets do not tile the shard's {entry['n_frames']} frames")
            try:
                data = _open_shard(path)
            except (OSError, ValueError, EOFError) as err:
                problems.append(f"{path.name}: unreadable ({err or type(err).__name__})")
                continue
            if data.shape != (entry["n_frames"], 2, N_MELS) or data.dtype != _DTYPE:
                problems.append(f"{path.name}: holds {data.dtype} {data.shape}, the index says float16 "
                                f"{(entry['n_frames'], 2, N_MELS)}")
            elif checksums and file_sha256(path) != entry["sha256"]:
                problems.append(f"{path.name}: checksum mismatch, the file is corrupt")
        return problems

    def _shard_map(self, shard: int) -> np.ndarray:
        data = self._maps.get(shard)
        if data is None:
            data = self._maps[shard] = _open_shard(self.root / _SHARDS / self._shards[shard]["file"])
        return data


def build_mel_cache(manifest_or_items: Manifest | Iterable[tuple[str, str | os.PathLike]],
                    root: str | os.PathLike, *, workers: int | None = None, shard_tracks: int = SHARD_TRACKS,
                    progress: Callable[[int, int], None] | None = None) -> MelCache:
    """Decode and transform every track once into a mel cache in ``root``; resume an interrupted build.

    Parameters
    ----------
    manifest_or_items : Manifest or iterable of (track_id, path)
        The tracks, in the order the cache will number them.
    root : str or path-like
        The cache folder (created if needed).
    workers : int, optional
        Worker processes (spawned, one torch thread each). Default: the number of
        CPUs, at most one per shard to build. ``0`` builds in this process.
    shard_tracks : int
        Tracks per shard. A resumed build must use the same value to keep its shards.
    progress : callable, optional
        Called as ``progress(done, total)`` after each shard.

    Returns
    -------
    MelCache
        The opened cache; decode failures are in its ``failures``.

    Raises
    ------
    ConfigError
        For duplicate or empty track ids, or a bad ``shard_tracks`` or ``workers``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np, soundfile as sf
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> sf.write(folder / "b.wav", np.zeros(4410, dtype=np.float32), 44100)
    >>> cache = build_mel_cache([("b", folder / "b.wav")], folder / "cache", workers=0)
    >>> cache.n_audio_frames.tolist(), cache.n_frames.tolist(), cache.floors.tolist()
    ([9], [216], [-100.0])
    >>> cache.verify()
    []
    """
    items = _as_items(manifest_or_items)
    if not isinstance(shard_tracks, int) or isinstance(shard_tracks, bool) or shard_tracks < 1:
        raise ConfigError(f"shard_tracks must be a positive integer, got {shard_tracks!r}.")
    if workers is not None and (not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"workers must be a non-negative integer, got {workers!r}.")
    root = Path(root)
    shard_dir = root / _SHARDS
    shard_dir.mkdir(parents=True, exist_ok=True)
    (root / _INDEX).unlink(missing_ok=True)
    for folder in (root, shard_dir):
        for stray in folder.glob(f".*{PARTIAL_SUFFIX}"):
            stray.unlink()
    jobs = [(str(shard_dir), number, items[start:start + shard_tracks])
            for number, start in enumerate(range(0, len(items), shard_tracks))]
    metas: list[dict | None] = [None] * len(jobs)
    if workers is None:
        workers = min(len(jobs), os.cpu_count() or 1)
    if workers == 0 or not jobs:
        for done, job in enumerate(jobs, start=1):
            metas[job[1]] = _shard_job(*job)
            if progress:
                progress(done, len(jobs))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            futures = {pool.submit(_shard_job, *job): job[1] for job in jobs}
            for done, future in enumerate(as_completed(futures), start=1):
                metas[futures[future]] = future.result()
                if progress:
                    progress(done, len(jobs))
    for stale in shard_dir.iterdir():
        if stale.suffix in (".npy", ".json") and stale.stem.isdigit() and int(stale.stem) >= len(jobs):
            stale.unlink()
    with atomic_path(root / _INDEX) as tmp:
        tmp.write_text(json.dumps(_index(metas)))
    return MelCache.open(root)


def gpu_crops(flat: torch.Tensor, offsets: torch.Tensor, starts: torch.Tensor, frames: int = SLICE_FRAMES,
              floors: torch.Tensor | None = None) -> torch.Tensor:
    """Cut crops out of a :class:`MelTensors` ``flat`` tensor with index arithmetic, on its device.

    Nothing is checked (that would synchronize with the GPU): every
    ``start + frames`` must lie within its track, as
    :meth:`MelCache.random_starts` guarantees.

    Parameters
    ----------
    flat : torch.Tensor of float16 or uint8, shape (total_frames, 2, 128)
    offsets : torch.Tensor of int64, shape (n,)
        Where each cropped track starts in ``flat`` (e.g. ``tensors.offsets[batch]``).
    starts : torch.Tensor of int64, shape (n,)
        First frame of each crop within its track.
    frames : int
        Length of each crop.
    floors : torch.Tensor of float32, shape (n,), optional
        For a uint8 ``flat``: each cropped track's dB floor (``MelCache.floors``),
        to decode the values (see :meth:`MelCache.to_tensor`).

    Returns
    -------
    torch.Tensor of float32, shape (n, 2, frames, 128)
        dB values.

    Examples
    --------
    >>> flat = torch.arange(10.0).repeat_interleave(256).reshape(10, 2, 128).half()
    >>> crops = gpu_crops(flat, torch.tensor([0, 4]), torch.tensor([1, 0]), frames=3)
    >>> crops.shape, crops[:, 0, :, 0].tolist()
    (torch.Size([2, 2, 3, 128]), [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    """
    rows = (offsets + starts).unsqueeze(1) + torch.arange(frames, device=flat.device)
    crops = flat[rows].permute(0, 2, 1, 3).to(torch.float32, memory_format=torch.contiguous_format)
    if flat.dtype == torch.uint8:
        if floors is None:
            raise ValueError("Crops of a uint8 mel cache tensor need the tracks' floors to be decoded.")
        crops.mul_(UINT8_DB_STEP).add_(floors.view(-1, 1, 1, 1))
    return crops


def fit_scaler(cache: MelCache, track_indices: Sequence[int] | None = None) -> Scaler:
    """Per-mel-bin mean and standard deviation over every frame of the given tracks, both channels pooled.

    Padding frames of short tracks are left out: only the frames computed from
    the audio count. The statistics are accumulated track by track by
    :meth:`mtlmusic.frontend.Scaler.fit` (float64, Chan et al.'s pairwise update),
    so memory does not grow with the cache.

    Parameters
    ----------
    cache : MelCache
    track_indices : sequence of int, optional
        The tracks to fit on (the training split); default all.

    Returns
    -------
    mtlmusic.frontend.Scaler
        Population standard deviation (ddof 0), float32.

    Examples
    --------
    >>> scaler = fit_scaler(cache, cache.index_of(train_ids))  # doctest: +SKIP
    >>> scaler.mean.shape  # doctest: +SKIP
    torch.Size([128])
    """
    tracks = np.arange(len(cache)) if track_indices is None else np.asarray(track_indices, dtype=np.int64)
    if len(tracks) == 0:
        raise ValueError("fit_scaler needs at least one track.")

    def audio_frames(track: int) -> np.ndarray:
        first = cache._offset[track]
        return cache._shard_map(int(cache._shard[track]))[first:first + cache.n_audio_frames[track]]

    return Scaler.fit(audio_frames(track) for track in np.sort(tracks).tolist())


def save_scaler(scaler: Scaler, path: str | os.PathLike) -> Path:
    """Write a scaler atomically as ``.npz`` with the arrays ``mean`` and ``std`` (a data folder's ``scaler.npz``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = save_scaler(Scaler.identity(), pathlib.Path(tempfile.mkdtemp()) / "scaler.npz")
    >>> load_scaler(path).std[:2]
    tensor([1., 1.])
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, mean=scaler.mean.cpu().numpy(), std=scaler.std.cpu().numpy())
    return Path(path)


def load_scaler(path: str | os.PathLike) -> Scaler:
    """Read a scaler written by :func:`save_scaler`.

    Examples
    --------
    See :func:`save_scaler`.
    """
    with np.load(path, allow_pickle=False) as arrays:
        return Scaler(torch.from_numpy(arrays["mean"]).float(), torch.from_numpy(arrays["std"]).float())


def _as_items(manifest_or_items) -> list[tuple[str, str]]:
    pairs = manifest_or_items.items() if isinstance(manifest_or_items, Manifest) else manifest_or_items
    items = [(str(track_id), str(path)) for track_id, path in pairs]
    check_track_ids([track_id for track_id, _ in items])
    return items


def _shard_job(shard_dir: str, number: int, items: list[tuple[str, str]]) -> dict:
    """Keep shard ``number`` if it is complete and intact, otherwise build it; return its metadata."""
    npy = Path(shard_dir) / f"{number:05d}.npy"
    meta_path = npy.with_suffix(".json")
    track_ids = [track_id for track_id, _ in items]
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if (meta["version"] == CACHE_FORMAT_VERSION and meta["frontend"] == FRONTEND
                and meta["track_ids"] == track_ids and file_sha256(npy) == meta["sha256"]):
            return meta
    except (OSError, ValueError, KeyError, TypeError):
        pass
    arrays, tracks, failures = [], [], {}
    offset = 0
    for track_id, path in items:
        try:
            frames, n_audio, floor = _track_frames(path)
        except AudioError as err:
            failures[track_id] = str(err)
            continue
        arrays.append(frames)
        tracks.append({"track_id": track_id, "offset": offset, "n_frames": len(frames),
                       "n_audio_frames": n_audio, "floor": floor})
        offset += len(frames)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(_DTYPE),
                                                  "fortran_order": False, "shape": (offset, 2, N_MELS)})
    sha = hashlib.sha256(header.getvalue())
    for array in arrays:
        sha.update(memoryview(array).cast("B"))

    with atomic_path(npy) as tmp, open(tmp, "wb") as handle:
        handle.write(header.getvalue())
        for array in arrays:
            handle.write(memoryview(array).cast("B"))
    meta = {"version": CACHE_FORMAT_VERSION, "frontend": FRONTEND, "file": npy.name, "track_ids": track_ids,
            "tracks": tracks, "failures": failures, "n_frames": offset, "sha256": sha.hexdigest()}
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps(meta))
    return meta


def _track_frames(path: str) -> tuple[np.ndarray, int, float]:
    """A file's dB mel frames as float16 ``(frames, 2, 128)``, padded to a slice; unpadded length; dB floor."""
    whole, floor = track_db(path)
    db = whole.transpose(0, 1)
    n_audio = db.shape[0]
    if n_audio < SLICE_FRAMES:
        db = torch.cat([db, db.new_full((SLICE_FRAMES - n_audio, 2, N_MELS), floor)])
    return np.ascontiguousarray(db.numpy().astype(_DTYPE)), n_audio, floor


def _index(metas: list[dict]) -> dict:
    columns: dict[str, list] = {"track_id": [], "shard": [], "offset": [], "n_frames": [], "n_audio_frames": [],
                                "floor": []}
    failures: dict[str, str] = {}
    for shard, meta in enumerate(metas):
        for track in meta["tracks"]:
            for key in ("track_id", "offset", "n_frames", "n_audio_frames", "floor"):
                columns[key].append(track[key])
            columns["shard"].append(shard)
        failures.update(meta["failures"])
    shards = [{"file": meta["file"], "n_frames": meta["n_frames"], "sha256": meta["sha256"]} for meta in metas]
    return {"version": CACHE_FORMAT_VERSION, "frontend": FRONTEND, "shards": shards, "tracks": columns,
            "failures": failures}


def _open_shard(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)
