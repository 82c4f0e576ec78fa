"""Draw a 2-D map of a music collection, where tracks that sound alike lie close together.

Usage::

    python examples/collection_map.py music/ -o map.png
    python examples/collection_map.py music/ -o map.png --tsne --features feats.npy

Needs matplotlib (``pip install "mtlmusic[plots]"``). The features of every audio file under
the folder are standardised and projected to two dimensions by PCA, or by t-SNE with ``--tsne``
(from 10 tracks on). Points are coloured by sub-folder, which is often the genre or the album,
and labelled with file names in collections of up to 60 tracks. ``--features`` keeps the
features in a feature file as in ``similarity_search.py``, whose ``collection_features`` this
script uses. Files that cannot be decoded are reported and skipped.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # a Figure made without pyplot draws with Agg and never opens a window
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.preprocessing import StandardScaler

import mtlmusic
from similarity_search import collection_features

MIN_TSNE_TRACKS = 10
MAX_LABELS = 60


def project(X: np.ndarray, tsne: bool) -> tuple[np.ndarray, list[str]]:
    """2-D coordinates of the standardised rows of ``X``, and the names of the two axes."""
    X = StandardScaler().fit_transform(X)
    if tsne:
        # The perplexity (about how many neighbours t-SNE keeps close) must stay well below the number of tracks.
        embedding = TSNE(perplexity=min(30.0, (len(X) - 1) / 3), init="pca", random_state=0)
        return embedding.fit_transform(X), ["t-SNE 1", "t-SNE 2"]
    pca = PCA(n_components=2).fit(X)
    return pca.transform(X), [f"PC{i} ({share:.0%} of the variance)"
                              for i, share in enumerate(pca.explained_variance_ratio_, 1)]


def draw(coords: np.ndarray, axes: list[str], paths: list[Path], folder: Path, output: Path) -> None:
    """Scatter the tracks, one colour per sub-folder of ``folder``, and save the figure as a PNG."""
    relative = [path.relative_to(folder) for path in paths]
    groups = np.array([r.parts[0] if len(r.parts) > 1 else "." for r in relative])
    fig = Figure(figsize=(8, 6), layout="constrained")
    ax = fig.subplots()
    for group in sorted(set(groups)):
        ax.scatter(*coords[groups == group].T, label=group, s=25)
    if len(set(groups)) > 1:
        ax.legend(title="folder", fontsize="small")
    if len(paths) <= MAX_LABELS:
        for (x, y), name in zip(coords, relative):
            ax.annotate(name.stem, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
    ax.set(xlabel=axes[0], ylabel=axes[1], title=f"{folder}: {len(paths)} tracks")
    fig.savefig(output, dpi=100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="folder of audio files (searched recursively)")
    parser.add_argument("-o", "--output", type=Path, default=Path("map.png"), help="PNG to write (default map.png)")
    parser.add_argument("--tsne", action="store_true", help=f"t-SNE instead of PCA (from {MIN_TSNE_TRACKS} tracks on)")
    parser.add_argument("--features", type=Path, help="feature file (.npy, .npz, .csv, .parquet) to reuse and update")
    parser.add_argument("-m", "--model", default="default", help="model name or .safetensors file")
    args = parser.parse_intermixed_args(argv)

    try:
        model = mtlmusic.load_model(args.model)
        X, paths = collection_features(model, args.folder, args.features, minimum=3)
    except mtlmusic.MtlmusicError as err:
        sys.exit(f"error: {err}")
    tsne = args.tsne and len(paths) >= MIN_TSNE_TRACKS
    if args.tsne and not tsne:
        print(f"{len(paths)} tracks are too few for t-SNE: drawing PCA instead.", file=sys.stderr)
    draw(*project(X, tsne), paths, args.folder, args.output)
    print(f"wrote {args.output}: {len(paths)} tracks, {'t-SNE' if tsne else 'PCA'}")


if __name__ == "__main__":
    main()
