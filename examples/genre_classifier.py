"""Train a classifier on mtlmusic features of labelled folders (one folder per class).

Usage::

    python examples/genre_classifier.py MODEL music_by_genre/

where ``music_by_genre/rock/*.mp3``, ``music_by_genre/jazz/*.mp3`` ... are the classes.
Prints the 5-fold cross-validated accuracy of a linear SVM.
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

import mtlmusic
from mtlmusic.extraction.engine import extract_files, find_audio_files


def main(model_name: str, folder: str) -> None:
    model = mtlmusic.load_model(model_name)
    paths = find_audio_files([folder])
    rows, labels = [], []
    for result in extract_files(model, paths, workers=1):
        if result.ok:
            rows.append(result.features)
            labels.append(result.path.relative_to(folder).parts[0])
        else:
            print("skipped:", result.error, file=sys.stderr)
    X, y = np.stack(rows), np.array(labels)
    scores = cross_val_score(make_pipeline(StandardScaler(), LinearSVC()), X, y, cv=5)
    print(f"{len(y)} tracks, {len(set(y))} classes: accuracy {scores.mean():.3f} +- {scores.std():.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
