"""The example scripts in examples/, run through their main functions on short generated audio."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mtlmusic.frontend import HOP_LENGTH, SLICE_FRAMES
from samples import tone

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SR = 22050


def noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((int(seconds * SR), 2))).astype(np.float32)


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # as when a script is run: its folder comes first


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """Two chirps in tones/, two noises in noises/ (3 s each), and a file that does not decode."""
    folder = tmp_path_factory.mktemp("collection")
    for kind, make in (("tones", lambda seed: tone(3.0, SR, seed=seed)), ("noises", lambda seed: noise(3.0, seed))):
        (folder / kind).mkdir()
        for seed in range(2):
            sf.write(folder / kind / f"{kind[:-1]}{seed}.wav", make(seed), SR)
    (folder / "broken.wav").write_bytes(b"RIFF, but no audio")
    return folder


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 300 and len(data) > 10_000


def neighbours(output: str) -> dict[str, list[str]]:
    """The printed neighbours of each query: ``{query: [nearest, ...]}``."""
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        if line.startswith(" "):
            found[query].append(line.split()[1])
        else:
            query = line
            found[query] = []
    return found


def test_similarity_search_finds_the_other_file_of_its_kind(collection, capsys):
    import similarity_search

    similarity_search.main([str(collection), "-k", "1"])
    out, err = capsys.readouterr()
    assert neighbours(out) == {"noises/noise0.wav": ["noises/noise1.wav"], "noises/noise1.wav": ["noises/noise0.wav"],
                               "tones/tone0.wav": ["tones/tone1.wav"], "tones/tone1.wav": ["tones/tone0.wav"]}
    assert "skipped:" in err and "broken.wav" in err


def test_similarity_search_query_and_feature_file(collection, tmp_path, capsys):
    import similarity_search

    features = tmp_path / "feats.npy"
    args = [str(collection), str(collection / "tones" / "tone0.wav"), "-k", "3", "--features", str(features)]
    similarity_search.main(args)
    first = capsys.readouterr().out
    assert neighbours(first)["tones/tone0.wav"][0] == "tones/tone1.wav"
    assert len(neighbours(first)["tones/tone0.wav"]) == 3 and features.is_file()
    similarity_search.main(args)  # from the feature file this time
    assert capsys.readouterr().out == first


def test_collection_map(collection, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import collection_map

    collection_map.main([str(collection), "-o", str(tmp_path / "map.png"), "--tsne"])
    out, err = capsys.readouterr()
    assert "too few for t-SNE" in err and "4 tracks, PCA" in out
    assert_png(tmp_path / "map.png")


def test_slice_timeline(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import slice_timeline

    # Four slices of chirp, then four of noise.
    half = 4 * SLICE_FRAMES * HOP_LENGTH
    sf.write(tmp_path / "track.wav", np.concatenate([tone(half / SR, SR)[:half], noise(half / SR, 1)]), SR)
    slice_timeline.main([str(tmp_path / "track.wav"), "-o", str(tmp_path / "timeline.png")])
    assert "8 slices" in capsys.readouterr().out
    assert_png(tmp_path / "timeline.png")


def test_novelty_peaks_where_a_section_begins():
    pytest.importorskip("matplotlib")
    from slice_timeline import novelty

    sections = np.repeat([0, 1, 2], [5, 3, 6])
    similarity = np.where(sections[:, None] == sections[None, :], 1.0, -0.5)
    curve = novelty(similarity, width=2)
    assert sorted(np.argsort(curve)[-2:] + 1) == [5, 8]  # the boundaries before slices 5 and 8


@pytest.mark.parametrize("script, target, message", [
    ("similarity_search", "empty", "No audio files found"),
    ("similarity_search", "missing", "is not a folder"),
    ("collection_map", "empty", "No audio files found"),
    ("slice_timeline", "missing.wav", "no such file"),
])
def test_bad_input_exits_with_a_message(script, target, message, tmp_path):
    if script != "similarity_search":
        pytest.importorskip("matplotlib")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        __import__(script).main([str(tmp_path / target)])
    assert message in str(exit_info.value.code)
