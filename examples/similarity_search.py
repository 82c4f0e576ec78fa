"""Find the tracks of a collection that sound most alike.

Usage::

    python examples/similarity_search.py music/ music/jazz/take-five.mp3 -k 5
    python examples/similarity_search.py music/                  # the neighbours of every track
    python examples/similarity_search.py music/ --features feats.npy

Every audio file under the folder is extracted; the features are standardised over the
collection and compared by cosine similarity. Prints the ``k`` nearest tracks of the query
(a file of the collection, or any other audio file) with their similarity, or of every track.

``--features FILE`` keeps the collection's features in a feature file, as ``mtlmusic-extract
music/ -o FILE`` writes it: tracks already there are read from it, only new ones are extracted.
Files that cannot be decoded are reported and skipped.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.preprocessing import StandardScaler

import mtlmusic
from mtlmusic.extraction import extract_files, find_audio_files, read_features, run_job


def report_failure(result) -> None:
    """Say on stderr why a file was left out."""
    if not result.ok:
        print("skipped:", result.error, file=sys.stderr)


def collection_features(model: mtlmusic.Model, folder: Path, features: Path | None = None,
                        minimum: int = 2) -> tuple[np.ndarray, list[Path]]:
    """One feature row per audio file under ``folder`` and the files' paths, in the same order.

    With ``features`` (a feature file), what it holds is reused and the rest extracted into it.
    Raises :class:`mtlmusic.ConfigError` when fewer than ``minimum`` tracks could be read.
    """
    if not folder.is_dir():
        raise mtlmusic.ConfigError(f"{folder} is not a folder: give a folder of audio files.")
    if features is not None:
        run_job(model, [folder], output=features, workers=None, on_result=report_failure)
        table = read_features(features)
        in_folder = {str(path) for path in find_audio_files([folder])}  # the file may hold other tracks too
        rows = [i for i, path in enumerate(table.paths) if path in in_folder]
        matrix, paths = table.features[rows], [Path(table.paths[i]) for i in rows]
    else:
        paths = find_audio_files([folder])
        if not paths:
            raise mtlmusic.ConfigError(f"No audio files found in {folder}.")
        # workers=None: decoding processes beside the network, as many as the cores and files warrant.
        results = list(extract_files(model, paths, workers=None))
        for result in results:
            report_failure(result)
        matrix = np.array([result.features for result in results if result.ok])
        paths = [result.path for result in results if result.ok]
    if len(paths) < minimum:
        raise mtlmusic.ConfigError(f"{len(paths)} track(s) of {folder} could be read: at least {minimum} are needed.")
    return matrix, paths


def nearest(similarity: np.ndarray, i: int, k: int) -> list[int]:
    """Indices of the ``k`` rows most similar to row ``i``, best first, ``i`` itself left out."""
    return [j for j in np.argsort(-similarity[i], kind="stable") if j != i][:k]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="folder of audio files (searched recursively)")
    parser.add_argument("query", type=Path, nargs="?", help="audio file to find neighbours of (default: every track)")
    parser.add_argument("-k", type=int, default=5, help="neighbours to print (default 5)")
    parser.add_argument("--features", type=Path, help="feature file (.npy, .npz, .csv, .parquet) to reuse and update")
    parser.add_argument("-m", "--model", default="default", help="model name or .safetensors file")
    args = parser.parse_intermixed_args(argv)

    try:
        model = mtlmusic.load_model(args.model)
        X, paths = collection_features(model, args.folder, args.features)
        queries = range(len(paths))
        if args.query is not None:
            resolved = [p.resolve() for p in paths]
            if args.query.resolve() in resolved:
                queries = [resolved.index(args.query.resolve())]
            else:  # a track from outside the collection: extract it and add it as the last row
                X = np.vstack([X, model.extract(args.query)])
                paths.append(args.query)
                queries = [len(paths) - 1]
    except mtlmusic.MtlmusicError as err:
        sys.exit(f"error: {err}")

    # Standardised features weigh every dimension alike; cosine similarity then compares their profiles.
    similarity = cosine_similarity(StandardScaler().fit_transform(X))
    names = [str(p.relative_to(args.folder)) if p.is_relative_to(args.folder) else str(p) for p in paths]
    width = max(map(len, names))
    for i in queries:
        print(names[i])
        for rank, j in enumerate(nearest(similarity, i, args.k), 1):
            print(f"  {rank:2d}. {names[j]:<{width}}  {similarity[i, j]:+.3f}")


if __name__ == "__main__":
    main()
