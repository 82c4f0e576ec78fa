"""What keeping freed memory (``keep_freed_memory``) gains on a CPU, against glibc's default, in the same run.

Two workloads, each in a fresh process per measurement (the setting is for the
whole process), default and kept alternated (A/B/A/B) and reported as medians:

* ``train``: training steps as ``mtlmusic-train`` takes them on a CPU: the study's
  network (MS-SR@FC, three sources), channels-last, a batch of 48 crops, KL loss,
  backward and Adam; rate in crops/s;
* ``extract``: ``Model.extract`` of a 60 s stereo signal with the default model;
  rate in audio-seconds per second.

Each line prints both rates, their ratio, and the page faults per step or file
(what the setting saves: memory faulted in again after glibc handed it back).

Usage::

    python benchmarks/cpu_memory.py [--repeats 3] [--steps 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

_WORKLOAD = r"""
import json, resource, sys, time
import numpy as np, torch
import torch.nn.functional as F
from mtlmusic.extraction.engine import keep_freed_memory

workload, mode, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "kept":
    keep_freed_memory()
torch.set_num_threads(threads)
torch.manual_seed(0)
if workload == "train":
    from mtlmusic.architectures import build_network
    net = build_network("MS-SR@FC", ["self", "pitch", "notes"]).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), 3e-4)
    x = torch.randn(48, 2, 216, 128).contiguous(memory_format=torch.channels_last)
    def step():
        out = net(x, "pitch")
        loss = F.kl_div(F.log_softmax(out, 1), torch.full_like(out, 1 / out.shape[1]), reduction="batchmean")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    units = 48
else:
    import mtlmusic
    model = mtlmusic.load_model("default", device="cpu")
    t = np.arange(60 * 22050) / 22050
    audio = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 331 * t)]).astype(np.float32)
    audio += 0.05 * np.random.default_rng(0).standard_normal(audio.shape).astype(np.float32)
    def step():
        model.extract(audio, sr=22050)
    units = 60
for _ in range(2):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start = time.perf_counter()
for _ in range(steps):
    step()
seconds = time.perf_counter() - start
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"rate": units * steps / seconds, "faults": faults / steps}))
"""


def measure(workload: str, mode: str, steps: int, threads: int) -> dict:
    """One fresh process's rate and page faults per step."""
    out = subprocess.run([sys.executable, "-c", _WORKLOAD, workload, mode, str(steps), str(threads)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="Measured steps (train) or files (extract).")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each process.")
    args = parser.parse_args()
    units = {"train": "crops/s", "extract": "audio-s/s"}
    for workload in ("train", "extract"):
        runs: dict[str, list[dict]] = {"default": [], "kept": []}
        for _ in range(args.repeats):
            for mode in runs:
                runs[mode].append(measure(workload, mode, args.steps, args.threads))
        rate = {mode: statistics.median(r["rate"] for r in rows) for mode, rows in runs.items()}
        faults = {mode: statistics.median(r["faults"] for r in rows) for mode, rows in runs.items()}
        print(f"{workload:8s} default {rate['default']:7.1f} {units[workload]} ({faults['default']:8.0f} faults/step)"
              f"   kept {rate['kept']:7.1f} {units[workload]} ({faults['kept']:8.0f} faults/step)"
              f"   ratio {rate['kept'] / rate['default']:.2f}x")


if __name__ == "__main__":
    main()
