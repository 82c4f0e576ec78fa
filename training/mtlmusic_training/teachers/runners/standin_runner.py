"""A stand-in for every teacher, for tests: outputs of the teachers' names and shapes from plain numpy.

It runs in the project's own interpreter (numpy and soundfile) and follows the
runners' protocol (``_protocol.py``). Its numbers are simple functions of the
audio, so targets made from them differ between different sounds:

- ``msd_tags``, ``mtt_tags`` (50): sigmoid of the standardised log energy of 50 frequency bands
  (``mtt_tags`` in reverse band order); ``msd_penultimate`` (200), ``msd_mean_pool`` (753): log
  band energies; ``patches``: the number of 3 s patches;
- ``notes``: one note per 0.5 s frame at the MIDI pitch of its strongest frequency;
  ``note_activation`` (88): how often each piano key is that pitch; ``seconds``;
- ``tempo_distribution`` (256): the positive autocorrelation of the 10 ms energy envelope's rise at the
  beat period of 30-285 BPM, normalised to sum 1; ``bpm``: its peak; ``windows``: the number of 11.9 s windows.
"""

import numpy as np
import soundfile as sf

from _protocol import run_jobs

FRAME_SECONDS = 0.5


def band_energies(power, bands):
    edges = np.unique(np.geomspace(1, len(power), bands + 1).astype(int))
    energies = np.add.reduceat(power, edges[:-1])[:bands]
    return np.log(np.pad(energies, (0, bands - len(energies)), mode="edge") + 1e-9)


def tempo_distribution(audio, sr):
    hop = max(int(0.01 * sr), 1)
    frames = len(audio) // hop
    energy = np.sqrt(np.mean(audio[:frames * hop].reshape(frames, hop) ** 2, axis=1)) if frames else np.zeros(1)
    rise = np.maximum(np.diff(energy, prepend=energy[:1]), 0)
    rise = rise - rise.mean()
    bpms = 30.0 + np.arange(256)
    lags = np.round(60.0 / bpms / 0.01).astype(int)
    correlation = np.array([np.dot(rise[:-lag], rise[lag:]) if lag < len(rise) else 0.0 for lag in lags])
    weights = np.maximum(correlation, 0) + 1e-12
    return weights / weights.sum(), float(bpms[np.argmax(weights)])


def analyse(path):
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if audio.size == 0 or not np.any(audio):
        raise ValueError("silent or empty audio")
    power = np.abs(np.fft.rfft(audio)) ** 2
    tags = band_energies(power, 50)
    tags = 1 / (1 + np.exp(-(tags - tags.mean()) / (tags.std() + 1e-9)))
    frame = int(FRAME_SECONDS * sr)
    notes = []
    for start in range(0, max(len(audio) - frame + 1, 1), frame):
        spectrum = np.abs(np.fft.rfft(audio[start:start + frame], n=frame))
        peak = np.argmax(spectrum[1:]) + 1
        pitch = int(np.clip(np.round(69 + 12 * np.log2(peak * sr / frame / 440.0)), 21, 108))
        notes.append((start / sr, (start + frame) / sr, pitch, float(spectrum[peak] / spectrum.sum())))
    notes = np.array(notes, dtype=np.float32).reshape(-1, 4)
    activation = np.bincount(notes[:, 2].astype(int) - 21, minlength=88)[:88] / max(len(notes), 1)
    distribution, bpm = tempo_distribution(audio, sr)
    return {"msd_tags": tags, "mtt_tags": tags[::-1].copy(), "msd_penultimate": band_energies(power, 200),
            "msd_mean_pool": band_energies(power, 753), "patches": np.array(max(len(audio) // (3 * sr), 1)),
            "notes": notes, "note_activation": activation, "seconds": np.array(len(audio) / sr),
            "tempo_distribution": distribution, "bpm": np.array(bpm),
            "windows": np.array(max(int((len(audio) / sr - 11.9) // 5.9) + 1, 1))}


if __name__ == "__main__":
    run_jobs(analyse, "stand-in teacher outputs of each track")
