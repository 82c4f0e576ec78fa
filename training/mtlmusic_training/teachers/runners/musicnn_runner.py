"""musicnn teacher: MSD_musicnn and MTT_musicnn tag probabilities and MSD_musicnn features of each track.

Runs in the musicnn environment (TensorFlow 1.x graph mode through ``tf.compat.v1``).
Both graphs are built once and fed 3 s patches without overlap, with musicnn's own
input: 16 kHz mono, log-compressed 96-band mel spectrogram (``log10(10000 x + 1)``).
Per track it writes the mean over patches of

- ``msd_tags`` (50) and ``mtt_tags`` (50): sigmoid tag probabilities;
- ``msd_penultimate`` (200) and ``msd_mean_pool``: MSD_musicnn's penultimate layer and mean-pool layer;

and ``patches``, the number of patches.
"""

import os

import librosa
import numpy as np
import tensorflow as tf
from musicnn import configuration, models

from _protocol import run_jobs

tf.compat.v1.disable_eager_execution()
N_FRAMES = librosa.time_to_frames(3, sr=configuration.SR, n_fft=configuration.FFT_SIZE,
                                  hop_length=configuration.FFT_HOP) + 1
WEIGHTS = os.path.dirname(models.__file__)


class Tagger:
    def __init__(self, name, n_tags):
        self.graph = tf.Graph()
        with self.graph.as_default():
            with tf.name_scope("model"):
                self.x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, configuration.N_MELS])
                self.is_training = tf.compat.v1.placeholder(tf.bool)
                y, _, _, _, _, _, mean_pool, _, penultimate = models.define_model(
                    self.x, self.is_training, name, n_tags)
                self.outputs = [tf.nn.sigmoid(y), penultimate, mean_pool]
            self.session = tf.compat.v1.Session(graph=self.graph)
            tf.compat.v1.train.Saver().restore(self.session, os.path.join(WEIGHTS, name) + "/")

    def __call__(self, patches):
        return self.session.run(self.outputs, feed_dict={self.x: patches, self.is_training: False})


def patches_of(path):
    audio, sr = librosa.load(path, sr=configuration.SR)
    if audio.size == 0 or not np.any(audio):
        raise ValueError("silent or empty audio")
    mel = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=configuration.FFT_HOP,
                                         n_fft=configuration.FFT_SIZE, n_mels=configuration.N_MELS).T
    mel = np.log10(10000 * mel.astype(np.float16) + 1)
    if len(mel) < N_FRAMES:
        mel = np.concatenate([mel, np.zeros((N_FRAMES - len(mel), mel.shape[1]), mel.dtype)])
    starts = range(0, len(mel) - N_FRAMES + 1, N_FRAMES)
    return np.stack([mel[s:s + N_FRAMES] for s in starts]).astype(np.float32)


def main():
    msd = Tagger("MSD_musicnn", len(configuration.MSD_LABELS))
    mtt = Tagger("MTT_musicnn", len(configuration.MTT_LABELS))

    def analyse(path):
        patches = patches_of(path)
        msd_tags, penultimate, mean_pool = msd(patches)
        mtt_tags = mtt(patches)[0]
        return {"msd_tags": msd_tags.mean(0), "mtt_tags": mtt_tags.mean(0),
                "msd_penultimate": penultimate.mean(0), "msd_mean_pool": mean_pool.mean(0),
                "patches": np.array(len(patches))}

    run_jobs(analyse, "musicnn tags and features of each track")


if __name__ == "__main__":
    main()
