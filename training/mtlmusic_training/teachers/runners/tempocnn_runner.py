"""tempo-CNN teacher: the tempo distribution that tempo-CNN's ``fcn`` model estimates for each track.

Runs in the tempocnn environment (TensorFlow 2, Keras 3). The model is loaded
once. tempo-CNN's own input: 11025 Hz mono, 40-band mel magnitude spectrogram
(20-5000 Hz, hop 512), windows of 256 frames (11.9 s) every 128 frames, each
window divided by its maximum (tempo-CNN's ``estimate``). Per track it writes

- ``tempo_distribution`` (256): the mean over windows of the softmax over 30-285 BPM (1 BPM steps);
- ``bpm``: the global tempo, the mean distribution's peak refined by quadratic interpolation
  (tempo-CNN's ``estimate_tempo(interpolate=True)``);
- ``windows``: the number of windows.
"""

import numpy as np
from tempocnn.classifier import TempoClassifier
from tempocnn.feature import read_features

from _protocol import run_jobs


def main():
    classifier = TempoClassifier("fcn")

    def analyse(path):
        features = read_features(path)
        if not np.any(features):
            raise ValueError("silent or empty audio")
        windows = classifier.normalize(features)
        predictions = classifier.model.predict(windows, batch_size=len(windows), verbose=0)  # no progress bar
        distribution = np.asarray(predictions, dtype=np.float64).mean(axis=0)
        index, _ = classifier.quad_interpol_argmax(distribution)
        return {"tempo_distribution": distribution.astype(np.float32), "bpm": np.array(classifier.to_bpm(index)),
                "windows": np.array(len(features))}

    run_jobs(analyse, "tempo-CNN tempo distribution of each track")


if __name__ == "__main__":
    main()
