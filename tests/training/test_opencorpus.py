"""The open corpus recipe: soundtrack listing, music21 renders, split, descriptors and targets."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mtlmusic.errors import ConfigError
from mtlmusic_training import corpus as oc
from mtlmusic_training import targets as tg
from samples import tone

SR = 22050

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files:
 music/cc.ogg
Copyright: 2020 Someone Else
License: CC-BY-SA-3.0

License: GPL-2+
 This program is free software.
"""


def _ogg(path, seconds, seed, artist=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(path), "w", SR, 2, format="OGG", subtype="VORBIS") as f:
        if artist:
            f.artist = artist
        f.write(tone(seconds, SR, seed=seed))


def _package(root, name, tracks):
    folder = root / name
    doc = folder / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    for i, (file, seconds) in enumerate(tracks):
        _ogg(folder / "usr" / "share" / "games" / name / "music" / file, seconds, seed=i,
             artist=f"{name} composer {i % 2}")
    return folder


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("x")
    _package(root, "alpha-music", [("a.ogg", 3.0), ("b.ogg", 3.0), ("cc.ogg", 3.0), ("jingle.ogg", 0.5)])
    _package(root, "beta-music", [("x.ogg", 3.0), ("y.ogg", 3.0), ("z.ogg", 3.0)])
    return root


def test_soundtrack_corpus_lists_long_tracks_with_labels_tags_and_licences(packages, tmp_path):
    table = oc.build_soundtrack_corpus(packages, tmp_path, min_seconds=1.0)
    assert sorted(table["track_id"]) == ["alpha-music/a", "alpha-music/b", "alpha-music/cc",
                                         "beta-music/x", "beta-music/y", "beta-music/z"]
    assert (tmp_path / "soundtracks.csv").exists()
    row = table.set_index("track_id").loc["alpha-music/cc"]
    assert row["soundtrack"] == "alpha-music" and row["licence"] == "CC-BY-SA-3.0"
    assert row["duration"] == pytest.approx(3.0, abs=0.01) and row["corpus"] == "soundtrack"
    assert set(table.loc[table["track_id"] != "alpha-music/cc", "licence"]) == {"GPL-2+"}
    if shutil.which("ffprobe"):
        assert row["composer"] == "alpha-music composer 0"
    assert (table["group"] == table["track_id"]).all()


def test_licence_for_reads_free_form_copyright_files():
    assert oc.licence_for("under the GNU General Public License version 2\nor at your option any later version.",
                          "a.ogg") == "GPL-2+"
    assert oc.licence_for("GNU General Public License, version 3 only.", "a.ogg") == "GPL-3"
    assert oc.licence_for("no licence named here", "a.ogg") == "unknown"


def test_split_is_by_group_stratified_deterministic_and_independent_of_row_order():
    rng = np.random.default_rng(0)
    rows = [{"track_id": f"{s}/{i}", "group": f"{s}/{i // 2}", "stratum": s}
            for s, n in (("big", 40), ("small", 10), ("tiny", 3)) for i in range(n)]
    table = pd.DataFrame(rows)
    split = oc.split_tracks(table, seed=3)
    shuffled = table.iloc[rng.permutation(len(table))]
    assert oc.split_tracks(shuffled, seed=3).reindex(table.index).equals(split)
    assert table.assign(split=split).groupby("group")["split"].nunique().max() == 1
    counts = table.assign(split=split).groupby(["stratum", "split"]).size().unstack(fill_value=0)
    assert counts.loc["big"].to_dict() == {"test": 8, "train": 28, "valid": 4}
    assert counts.loc["tiny", "train"] >= 2
    assert not oc.split_tracks(table, seed=4).equals(split)
    with pytest.raises(ConfigError, match="summing to 1"):
        oc.split_tracks(table, fractions=(0.5, 0.1, 0.1))


def test_label_targets_smooth_and_mask():
    targets = oc.label_targets("composer", ["b", "a", "", "c"], smoothing=0.2, track_ids=list("wxyz"))
    assert targets.params["classes"] == ["a", "b", "c"] and targets.params["kind"] == "label"
    np.testing.assert_allclose(targets.z[0], [0.1, 0.8, 0.1], rtol=1e-6)
    np.testing.assert_allclose(targets.z[targets.mask].sum(axis=1), 1.0, rtol=1e-6)
    assert targets.mask.tolist() == [True, True, False, True] and np.isnan(targets.z[2]).all()


def test_describe_audio_gives_distributions():
    result = oc.describe_audio(tone(4.0, SR, channels=1)[:, 0])
    assert result["key_counts"].shape == (24,) and result["key_counts"].sum() >= 1
    assert result["tempogram"].shape == (len(oc.TEMPO_EDGES) - 1,)
    assert result["tempogram"].sum() == pytest.approx(1.0) and result["tempogram"].min() >= 0
    assert result["onset_rate"] >= 0 and result["seconds"] == pytest.approx(4.0)
    silent = oc.describe_audio(np.zeros(2 * SR, dtype=np.float32))
    assert silent["tempo"] == 0 and silent["key_counts"].sum() == 0 and silent["tempogram"].sum() == 0


def test_manifest_descriptors_and_targets_end_to_end(packages, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    tracks = oc.build_soundtrack_corpus(packages, corpus, min_seconds=1.0)
    manifest = oc.build_manifest(corpus, {"soundtracks": tracks}, fractions=(0.5, 0.0, 0.5), seed=0)
    assert list(manifest.columns) == ["track_id", "path", "split"]
    metadata = pd.read_csv(corpus / "metadata.csv")
    assert list(metadata.columns) == list(oc.METADATA_COLUMNS)
    per_class = manifest.merge(metadata).groupby(["soundtrack", "split"]).size().unstack(fill_value=0)
    assert (per_class["train"] >= 1).all() and (per_class["test"] >= 1).all()

    first = oc.compute_audio_descriptors(corpus / "manifest.csv", corpus / "descriptors.npz", workers=2)
    assert first.n_computed == len(manifest) and first.key_counts.shape == (len(manifest), 24)
    cached = sorted((corpus / "descriptors").glob("*.npz"))
    stamps = [path.stat().st_mtime_ns for path in cached]
    again = oc.compute_audio_descriptors(corpus / "manifest.csv", corpus / "descriptors.npz", workers=2)
    assert again.n_computed == 0 and [path.stat().st_mtime_ns for path in cached] == stamps
    np.testing.assert_array_equal(again.tempogram, first.tempogram)
    assert np.array_equal(oc.load_descriptors(corpus / "descriptors.npz").track_ids, first.track_ids)

    monkeypatch.setattr(tg, "_REGISTRY", dict(tg._REGISTRY))
    oc.register_opencorpus_sources()
    assert tg.get_source("tempogram").kind == "plsa" and tg.get_source("onset").kind == "gmm"
    dims = {"bpm": 2, "onset": 2, "chroma": 3, "tempogram": 3}
    targets = oc.compute_opencorpus_targets(corpus, sources=[*dims, "soundtrack"], dims=dims, seed=0,
                                            splits=("train",), composer_soundtracks=("alpha-music",))
    train = (manifest["split"] == "train").to_numpy()
    for name, result in targets.items():
        assert result.z.shape == (len(manifest), dims.get(name, 2))
        assert not result.mask[~train].any()
        np.testing.assert_allclose(result.z[result.mask].sum(axis=1), 1.0, rtol=1e-5)
        assert list(result.track_ids) == list(manifest["track_id"])
        assert tg.load_targets(corpus / "targets" / f"{name}.npz").z.shape == result.z.shape
    with pytest.raises(ConfigError, match="at least two classes"):
        oc.compute_opencorpus_targets(corpus, sources=["composer"], splits=("train",))

    timbre = oc.compute_timbre_targets(corpus, splits=("train",), n_words=4, n_topics=2, workers=1)
    assert timbre.z.shape == (len(manifest), 2) and np.array_equal(timbre.mask, train)
    np.testing.assert_allclose(timbre.z.sum(axis=1), 1.0, rtol=1e-5)
    assert tg.load_targets(corpus / "targets" / "timbre.npz").topic_term.shape == (2, 4)


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not oc.DEFAULT_SOUNDFONT.exists(),
                    reason="fluidsynth or the FluidR3 soundfont is not installed")
def test_music21_renders_are_labelled_bounded_and_resumable(tmp_path):
    pytest.importorskip("music21")
    pytest.importorskip("mido")
    kwargs = dict(styles=["bach", "palestrina"], max_seconds=6.0, min_seconds=2.0, seed=1, workers=1)
    table = oc.build_music21_corpus(tmp_path, per_style=1, **kwargs)
    assert sorted(table["style"]) == ["bach", "palestrina"]
    assert table["program"].between(0, 95).all() and table["bpm_label"].between(55, 200).all()
    for path, duration in zip(table["path"], table["duration"]):
        info = sf.info(path)
        assert info.samplerate == SR and info.channels == 2 and info.format == "FLAC"
        assert 2.0 <= info.duration <= 6.0 and info.duration == pytest.approx(duration, abs=0.01)
    records = sorted((tmp_path / "music21").rglob("*.json"))
    stamps = [path.stat().st_mtime_ns for path in records]
    again = oc.build_music21_corpus(tmp_path, per_style=1, **kwargs)
    assert [path.stat().st_mtime_ns for path in records] == stamps
    pd.testing.assert_frame_equal(again, table)


def test_music21_candidates_hold_one_file_per_piece():
    pytest.importorskip("music21")
    for style in ("trecento", "quartet"):
        candidates = oc.music21_candidates(style)
        stems = [path.rsplit(".", 1)[0] for path in candidates]
        assert len(set(stems)) == len(stems) and candidates == sorted(candidates)
    assert not any(path.endswith(".krn") or "k545" in path for path in oc.music21_candidates("quartet"))
    with pytest.raises(ConfigError, match="Unknown style"):
        oc.music21_candidates("jazz")
