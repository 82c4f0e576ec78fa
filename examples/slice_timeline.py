"""Show how one track's features change over time, and where its sections begin.

Usage::

    python examples/slice_timeline.py song.mp3 -o timeline.png

Needs matplotlib (``pip install "mtlmusic[plots]"``). Each 2.5 s slice of the track gets its own
feature vector (``Model.extract_slices``). The figure shows

* a heatmap of the slice features, standardised and reduced by PCA to ``--components`` (8),
  against time;
* the self-similarity matrix: the cosine similarity of every slice with every other; the
  blocks along its diagonal are the track's sections;
* the novelty curve (Foote, 2000): a checkerboard kernel slid along that diagonal, which
  peaks where one section gives way to the next.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # a Figure made without pyplot draws with Agg and never opens a window
from sklearn.decomposition import PCA
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.preprocessing import StandardScaler

import mtlmusic
from mtlmusic.audio import audio_info
from mtlmusic.frontend import SLICE_SECONDS

MIN_SLICES = 3


def novelty(similarity: np.ndarray, width: int) -> np.ndarray:
    """Foote's novelty at each boundary between two slices (before slice 1, 2, ...), ``width`` slices each side.

    The kernel is +1 where both slices lie on the same side of the boundary and -1 where they lie
    on either side: the score is high when each side is self-similar but unlike the other.
    """
    side = np.where(np.arange(2 * width) < width, -1.0, 1.0)
    kernel = np.outer(side, side) / (2 * width) ** 2
    padded = np.pad(similarity, width, mode="edge")  # the first and last slices stand in beyond the ends
    return np.array([(kernel * padded[i:i + 2 * width, i:i + 2 * width]).sum() for i in range(1, len(similarity))])


def draw(features: np.ndarray, times: np.ndarray, components: int, width: int, title: str, output: Path) -> None:
    """Heatmap and novelty curve (left) and self-similarity matrix (right) of the slices, saved as a PNG."""
    standardised = StandardScaler().fit_transform(features)
    # Centred, n slices span at most n - 1 dimensions.
    reduced = PCA(n_components=min(components, len(features) - 1)).fit_transform(standardised)
    similarity = cosine_similarity(standardised)
    end = times[-1] + SLICE_SECONDS

    fig = Figure(figsize=(12, 5.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(1.7, 1), height_ratios=(1.5, 1))
    heatmap = fig.add_subplot(grid[0, 0])
    curve = fig.add_subplot(grid[1, 0], sharex=heatmap)
    matrix = fig.add_subplot(grid[:, 1])

    limit = np.abs(reduced).max()
    heatmap.imshow(reduced.T, aspect="auto", cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest",
                   extent=(0, end, reduced.shape[1] + 0.5, 0.5))
    heatmap.set(ylabel="PCA component", title=f"{title}: slice features")
    curve.plot(times[1:], novelty(similarity, width), marker=".")
    curve.set(xlabel="time (s)", ylabel="novelty", xlim=(0, end))
    image = matrix.imshow(similarity, cmap="magma", vmin=-1, vmax=1, extent=(0, end, end, 0), interpolation="nearest")
    matrix.set(xlabel="time (s)", ylabel="time (s)", title="self-similarity")
    fig.colorbar(image, ax=matrix, shrink=0.8, label="cosine similarity")
    fig.savefig(output, dpi=100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("track", type=Path, help="audio file")
    parser.add_argument("-o", "--output", type=Path, default=Path("timeline.png"),
                        help="PNG to write (default timeline.png)")
    parser.add_argument("--components", type=int, default=8, help="PCA components in the heatmap (default 8)")
    parser.add_argument("--width", type=int, default=4, help="novelty kernel: slices each side (default 4, 10 s)")
    parser.add_argument("-m", "--model", default="default", help="model name or .safetensors file")
    args = parser.parse_intermixed_args(argv)

    try:
        duration = audio_info(args.track).duration
        slices = mtlmusic.load_model(args.model).extract_slices(args.track)
    except mtlmusic.MtlmusicError as err:
        sys.exit(f"error: {err}")
    # The last slice is padded with silence: keep it only when at least half of it is the track.
    keep = slices.times + SLICE_SECONDS / 2 <= duration
    if keep.sum() < MIN_SLICES:
        sys.exit(f"error: {args.track} lasts {duration:.1f} s: a timeline needs at least {MIN_SLICES} slices of 2.5 s.")
    draw(slices.features[keep], slices.times[keep], args.components, args.width, args.track.name, args.output)
    print(f"wrote {args.output}: {keep.sum()} slices of {args.track}")


if __name__ == "__main__":
    main()
