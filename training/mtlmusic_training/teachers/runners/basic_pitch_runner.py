"""basic-pitch teacher: the notes that basic-pitch (ICASSP 2022, its ONNX model) transcribes from each track.

Runs in the basic-pitch environment (onnxruntime, no TensorFlow). The model is
loaded once. Per track it writes

- ``notes`` (n, 4): start and end in seconds, MIDI pitch, amplitude of each note event
  (basic-pitch's defaults: onset threshold 0.5, frame threshold 0.3, notes of at least 127.7 ms);
- ``note_activation`` (88): mean over frames of the note posteriorgram (A0 to C8);
- ``seconds``: the duration analysed.
"""

import logging

import numpy as np

logging.disable(logging.WARNING)  # basic-pitch warns about every runtime it does not find

from basic_pitch import ICASSP_2022_MODEL_PATH  # noqa: E402
from basic_pitch.inference import AUDIO_SAMPLE_RATE, Model, predict  # noqa: E402

from _protocol import run_jobs  # noqa: E402


def main():
    model = Model(ICASSP_2022_MODEL_PATH)

    def analyse(path):
        output, _, events = predict(path, model)
        notes = np.array([(start, end, pitch, amplitude) for start, end, pitch, amplitude, _ in events],
                         dtype=np.float32).reshape(-1, 4)
        activation = np.asarray(output["note"], dtype=np.float32)
        if activation.size == 0:
            raise ValueError("no audio frames")
        seconds = len(activation) * 256 / AUDIO_SAMPLE_RATE  # basic-pitch's frame hop is 256 samples
        return {"notes": notes, "note_activation": activation.mean(0), "seconds": np.array(seconds)}

    run_jobs(analyse, "basic-pitch notes of each track")


if __name__ == "__main__":
    main()
