"""Throughput and memory of extraction, against a straightforward reference measured in the same run.

Collection benchmark (default): a folder of 30 s MP3 files is extracted

* with the CLI's code path (``mtlmusic.extraction.jobs.run_job``: worker processes, slices of
  many files batched, BatchNorm folded, channels-last, inference mode), and
* with a reference: ``librosa.load`` + librosa mel + the eager torch model, one
  file at a time;

it prints audio-seconds per wall-second of both, their ratio, and the peak RSS.

Long-file benchmark (``--long``): a 60-minute stereo file is extracted in a child
process whose peak RSS is printed.

Usage::

    python benchmarks/extract_throughput.py [--files 40] [--dir FOLDER_OF_MP3] [--workers N] [--model NAME_OR_FILE]
    python benchmarks/extract_throughput.py --long [--minutes 60]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def make_music(seconds: float, sr: int, seed: int) -> np.ndarray:
    """A stereo test signal with notes, chords and noise bursts (frames x 2)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros((t.size, 2), dtype=np.float32)
    note = int(0.25 * sr)
    for start in range(0, t.size - note, note):
        freqs = 110 * 2 ** (rng.integers(0, 36, size=3) / 12)
        seg = t[start:start + note] - t[start]
        env = np.exp(-4 * seg)
        chord = sum(np.sin(2 * np.pi * f * seg) for f in freqs) * env / 3
        y[start:start + note, 0] += 0.5 * chord
        y[start:start + note, 1] += 0.4 * chord + 0.05 * rng.standard_normal(note) * env
    return y


def make_collection(folder: Path, n_files: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        path = folder / f"track{i:03d}.mp3"
        if not path.exists():
            sf.write(path, make_music(30.0, 44100, i), 44100, format="MP3")
        paths.append(path)
    return paths


def benchmark_model(name: str | None, folder: Path):
    """The named model, or (when none is installed) a random MS-SR@FC model of the same cost."""
    import mtlmusic
    from mtlmusic.architectures import build_network
    from mtlmusic.frontend import Scaler
    from mtlmusic.modelfile import save_model_file

    try:
        return mtlmusic.load_model(name or "default", device="cpu"), name or "default"
    except mtlmusic.ModelNotFoundError:
        path = folder / "mssrfc-self-bpm.safetensors"
        save_model_file(path, build_network("MS-SR@FC", ["self", "bpm"]),
                        Scaler(torch.full((128,), -40.0), torch.full((128,), 20.0)))
        return mtlmusic.load_model(path, device="cpu"), f"{path.name} (random weights)"


def reference_extract(model, path: Path) -> np.ndarray:
    """librosa.load + librosa mel + the eager network, one file, one slice batch."""
    import librosa

    y, _ = librosa.load(path, sr=22050, mono=False)
    S = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=1024, hop_length=256, n_mels=128)
    db = librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=80).transpose(0, 2, 1)
    n = max(1, -(-db.shape[1] // 216))
    db = np.pad(db, ((0, 0), (0, n * 216 - db.shape[1]), (0, 0)), constant_values=db.min())
    x = torch.from_numpy(db).reshape(2, n, 216, 128).transpose(0, 1)
    x = (x - model.scaler.mean) / model.scaler.std.clamp(min=1e-10)
    with torch.no_grad():
        features = model.network.features(x)
    return torch.cat([features.mean(0), features.std(0, unbiased=False)]).numpy()


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def collection_benchmark(args) -> None:
    from mtlmusic.extraction.jobs import run_job

    folder = Path(args.dir) if args.dir else Path(tempfile.gettempdir()) / "mtlmusic-bench-mp3"
    paths = sorted(folder.glob("*.mp3")) if args.dir else make_collection(folder, args.files)
    audio_seconds = sum(sf.info(p).duration for p in paths)
    model, label = benchmark_model(args.model, folder)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - args.workers))  # as mtlmusic-extract does
    print(f"{len(paths)} files, {audio_seconds:.0f} s of audio; model {label}; "
          f"{os.cpu_count()} CPUs, {args.workers} workers")

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = run_job(model, paths, output=Path(out) / "feats.npy", workers=args.workers)
        ours = time.perf_counter() - start
    assert not summary.failures, summary.failures

    reference_paths = paths[: args.reference_files]
    reference_seconds = sum(sf.info(p).duration for p in reference_paths)
    reference_extract(model, reference_paths[0])  # warm-up (librosa's first call compiles)
    start = time.perf_counter()
    for path in reference_paths:
        reference_extract(model, path)
    reference = time.perf_counter() - start

    ours_rate = audio_seconds / ours
    reference_rate = reference_seconds / reference
    print(f"mtlmusic-extract: {ours_rate:8.1f} audio-s per wall-s ({ours:.1f} s)")
    print(f"reference:        {reference_rate:8.1f} audio-s per wall-s "
          f"({reference:.1f} s for {len(reference_paths)} files)")
    print(f"ratio:            {ours_rate / reference_rate:8.2f}x")
    print(f"peak RSS:         {peak_rss_mb():8.0f} MB (this process), "
          f"{peak_rss_mb(resource.RUSAGE_CHILDREN):.0f} MB (largest worker)")


def long_file_benchmark(args) -> None:
    folder = Path(tempfile.gettempdir()) / "mtlmusic-bench-long"
    folder.mkdir(exist_ok=True)
    path = folder / f"long-{args.minutes}min.flac"
    if not path.exists():
        block = make_music(60.0, 44100, 0)
        with sf.SoundFile(path, "w", 44100, 2, format="FLAC") as f:
            for _ in range(args.minutes):
                f.write(block)
    model, label = benchmark_model(args.model, folder)
    model_path = model.config["path"]
    code = ("import resource, time, mtlmusic\n"
            f"m = mtlmusic.load_model({model_path!r}, device='cpu')\n"
            "t = time.perf_counter()\n"
            f"v = m.extract({str(path)!r})\n"
            "print(v.shape, round(time.perf_counter() - t, 1), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    seconds, rss_kb = float(out[-2]), int(out[-1])
    print(f"{args.minutes}-minute stereo FLAC ({path.stat().st_size / 1e6:.0f} MB), model {label}")
    print(f"extraction: {seconds:.1f} s ({args.minutes * 60 / seconds:.0f}x real time)")
    print(f"peak RSS of the whole process: {rss_kb / 1024:.0f} MB (target < 1024 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40, help="30 s MP3 files to generate")
    parser.add_argument("--dir", help="use the MP3 files of this folder instead")
    parser.add_argument("--reference-files", type=int, default=8, help="files timed with the reference")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--model", help="model name or file (default: the embedded default)")
    parser.add_argument("--long", action="store_true", help="run the 60-minute file benchmark instead")
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    long_file_benchmark(args) if args.long else collection_benchmark(args)


if __name__ == "__main__":
    main()
