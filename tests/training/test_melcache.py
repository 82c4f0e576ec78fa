"""Tests of the mel cache: the front end's dB mel, padding, failures, resume, verify, scaler, GPU crops."""

import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from mtlmusic.audio import load_audio
from mtlmusic.frontend import SLICE_FRAMES, db_floor, mel_power, power_to_db, track_slices
from mtlmusic_training.datasets import Manifest
from mtlmusic_training.melcache import MelCache, MelCacheError, build_mel_cache, fit_scaler, gpu_crops
from samples import tone

# float16 keeps about 3 significant digits: dB values up to ~100 in magnitude round by at most 0.03 dB.
F16_ATOL = 0.05


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """Track id -> file: stereo 44.1 kHz, mono 22.05 kHz, a short 48 kHz file, an undecodable one."""
    folder = tmp_path_factory.mktemp("melcache_audio")
    files = {"a": folder / "a.wav", "b": folder / "b.flac", "bad": folder / "bad.wav",
             "short": folder / "short.wav", "c": folder / "c.flac"}
    sf.write(files["a"], tone(3.0, 44100, seed=1), 44100)
    sf.write(files["b"], tone(2.0, 22050, channels=1, seed=2)[:, 0], 22050)
    files["bad"].write_bytes(b"RIFF not really a wave file" * 10)
    sf.write(files["short"], 0.3 * tone(1.0, 48000, seed=3), 48000)
    sf.write(files["c"], tone(4.0, 22050, seed=4), 22050)
    return files


@pytest.fixture(scope="module")
def built(tmp_path_factory, audio):
    """A cache with one track per shard, built in this process; the bad file gets an empty shard."""
    root = tmp_path_factory.mktemp("melcache") / "cache"
    return build_mel_cache(list(audio.items()), root, workers=0, shard_tracks=1)


def frontend_db(path) -> np.ndarray:
    """What mtlmusic's extraction computes before standardization: ``(2, frames, 128)`` dB mel."""
    power = mel_power(load_audio(path))
    return power_to_db(power, power.max().item()).numpy()


def test_crops_equal_the_front_ends_db_mel(built, audio):
    assert built.track_ids.tolist() == ["a", "b", "short", "c"]
    rng = np.random.default_rng(0)
    for row, track_id in enumerate(built.track_ids):
        expected = frontend_db(audio[track_id])
        assert built.n_audio_frames[row] == expected.shape[1]
        assert built.floors[row] == pytest.approx(db_floor(float(mel_power(load_audio(audio[track_id])).max())))
        if expected.shape[1] < SLICE_FRAMES:
            continue
        starts = np.r_[0, rng.integers(0, expected.shape[1] - SLICE_FRAMES + 1, 3), expected.shape[1] - SLICE_FRAMES]
        crops = built.crops(np.full(len(starts), row), starts)
        assert crops.dtype == np.float32 and crops.shape == (len(starts), 2, SLICE_FRAMES, 128)
        for crop, start in zip(crops, starts):
            np.testing.assert_allclose(crop, expected[:, start:start + SLICE_FRAMES], rtol=0, atol=F16_ATOL)
    whole = built.crops([3], [0], frames=int(built.n_frames[3]))[0]
    np.testing.assert_allclose(whole, frontend_db(audio["c"]), rtol=0, atol=F16_ATOL)


def test_short_track_is_padded_with_its_floor_like_the_front_ends_slices(built, audio):
    row = int(built.index_of(["short"])[0])
    n_audio = 1 + 22050 // 256
    assert built.n_audio_frames[row] == n_audio and built.n_frames[row] == SLICE_FRAMES
    crop = built.crops([row], [0])[0]
    np.testing.assert_allclose(crop[:, n_audio:], built.floors[row], rtol=0, atol=F16_ATOL)
    (slice_,) = torch.cat([c.slices for c in track_slices(audio["short"])]).numpy()
    np.testing.assert_allclose(crop, slice_, rtol=0, atol=F16_ATOL)
    assert built.random_starts([row] * 5, np.random.default_rng(0)).tolist() == [0] * 5
    with pytest.raises(ValueError, match="does not fit"):
        built.crops([row], [1])


def test_undecodable_track_is_reported_and_skipped(built):
    assert list(built.failures) == ["bad"]
    assert "bad.wav" in built.failures["bad"]
    with pytest.raises(KeyError, match="failed to decode"):
        built.index_of(["a", "bad"])
    assert built.verify() == []


def test_random_starts_keep_crops_inside_their_tracks(built):
    tracks = np.repeat(np.arange(len(built)), 50)
    starts = built.random_starts(tracks, np.random.default_rng(1))
    assert (starts >= 0).all() and (starts + SLICE_FRAMES <= built.n_frames[tracks]).all()
    assert starts[tracks == 3].max() > starts[tracks == 3].min()
    with pytest.raises(ValueError, match="shorter than"):
        built.random_starts([0], np.random.default_rng(0), frames=10_000)


def test_parallel_build_from_a_manifest_equals_the_serial_build(tmp_path, built, audio):
    manifest = Manifest(list(audio), list(audio.values()), ["train"] * len(audio))
    calls = []
    cache = build_mel_cache(manifest, tmp_path / "cache", workers=2, shard_tracks=2,
                            progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert cache.track_ids.tolist() == built.track_ids.tolist() and list(cache.failures) == ["bad"]
    flat, offsets, lengths = cache.to_tensor()
    reference = built.to_tensor()
    assert torch.equal(flat, reference.flat) and torch.equal(lengths, reference.lengths)
    assert cache.verify() == []
    assert sorted(p.name for p in (tmp_path / "cache" / "shards").iterdir()) == [
        "00000.json", "00000.npy", "00001.json", "00001.npy", "00002.json", "00002.npy"]


def test_resume_rebuilds_only_missing_or_damaged_shards(tmp_path, built, audio):
    root = tmp_path / "cache"
    shutil.copytree(built.root, root)
    shards = root / "shards"
    past = 1_000_000_000_000_000_000
    for path in shards.iterdir():
        os.utime(path, ns=(past, past))
    # An interrupted build: no index yet, shard 1 never written, shard 4 half written, a stray temporary file.
    (root / "index.json").unlink()
    (shards / "00001.npy").unlink()
    (shards / "00001.json").unlink()
    (shards / "00004.json").unlink()
    (shards / ".00003.npy.x1y2z3.partial").write_bytes(b"partial")
    with pytest.raises(MelCacheError, match="no complete mel cache"):
        MelCache.open(root)
    # A shard whose bytes no longer match its checksum is rebuilt too.
    data = bytearray((shards / "00003.npy").read_bytes())
    data[-10:] = b"\xff" * 10
    (shards / "00003.npy").write_bytes(data)
    os.utime(shards / "00003.npy", ns=(past, past))

    cache = build_mel_cache(list(audio.items()), root, workers=0, shard_tracks=1)
    rebuilt = {path.name for path in shards.iterdir() if path.stat().st_mtime_ns != past}
    assert rebuilt == {"00001.npy", "00001.json", "00003.npy", "00003.json", "00004.npy", "00004.json"}
    assert not list(shards.glob(".*.partial"))
    assert cache.verify() == []
    assert torch.equal(cache.to_tensor().flat, built.to_tensor().flat)
    assert cache.failures == built.failures


def test_rebuild_with_other_shards_removes_stale_ones(tmp_path, built, audio):
    root = tmp_path / "cache"
    shutil.copytree(built.root, root)
    cache = build_mel_cache(list(audio.items())[:2], root, workers=0, shard_tracks=2)
    assert sorted(p.name for p in (root / "shards").iterdir()) == ["00000.json", "00000.npy"]
    assert cache.track_ids.tolist() == ["a", "b"] and cache.verify() == []


def test_verify_catches_corrupt_and_truncated_shards(tmp_path, built):
    root = tmp_path / "cache"
    shutil.copytree(built.root, root)
    corrupt, truncated, emptied = (root / "shards" / f"0000{i}.npy" for i in (0, 3, 2))
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0x40
    corrupt.write_bytes(data)
    truncated.write_bytes(truncated.read_bytes()[:-512])
    emptied.write_bytes(b"")
    problems = MelCache.open(root).verify()
    assert len(problems) == 3
    assert "00000.npy: checksum mismatch" in problems[0]
    assert problems[1].startswith("00002.npy: unreadable") and problems[2].startswith("00003.npy: unreadable")
    assert MelCache.open(root).verify(checksums=False) == problems[1:]


def test_open_refuses_another_format(tmp_path, built):
    root = tmp_path / "cache"
    shutil.copytree(built.root, root)
    index = (root / "index.json").read_text()
    (root / "index.json").write_text(index.replace('"version": 1', '"version": 99', 1))
    with pytest.raises(MelCacheError, match="format version 99"):
        MelCache.open(root)
    with pytest.raises(MelCacheError, match="no complete mel cache"):
        MelCache.open(tmp_path / "nothing")


def test_fit_scaler_equals_numpy_over_the_audio_frames(built):
    def frames(rows):
        return np.concatenate([built.crops([r], [0], frames=int(built.n_frames[r]))[0, :, :built.n_audio_frames[r]]
                               .reshape(-1, 128) for r in rows]).astype(np.float64)

    for rows in ([0, 1, 2, 3], [3, 1]):
        scaler = fit_scaler(built, rows)
        values = frames(rows)
        np.testing.assert_allclose(scaler.mean.numpy(), values.mean(axis=0), rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(scaler.std.numpy(), values.std(axis=0), rtol=1e-5, atol=1e-5)
    assert torch.equal(fit_scaler(built).mean, fit_scaler(built, [0, 1, 2, 3]).mean)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")])])
def test_gpu_crops_equal_cache_crops(built, device):
    rng = np.random.default_rng(2)
    tracks = rng.integers(0, len(built), 40)
    starts = built.random_starts(tracks, rng)
    flat, offsets, lengths = built.to_tensor(device)
    assert flat.dtype == torch.float16 and flat.shape == (int(built.n_frames.sum()), 2, 128)
    assert lengths.cpu().tolist() == built.n_frames.tolist()
    index = torch.as_tensor(tracks, device=device)
    crops = gpu_crops(flat, offsets[index], torch.as_tensor(starts, device=device))
    assert crops.dtype == torch.float32 and crops.shape == (40, 2, SLICE_FRAMES, 128)
    assert np.array_equal(crops.cpu().numpy(), built.crops(tracks, starts))
    subset = built.to_tensor(device, track_indices=[3, 0])
    part = gpu_crops(subset.flat, subset.offsets[torch.tensor([1, 0], device=device)],
                     torch.tensor([5, 7], device=device), frames=100)
    assert np.array_equal(part.cpu().numpy(), built.crops([0, 3], [5, 7], frames=100))
