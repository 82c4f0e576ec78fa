"""The MSD adapter on the miniature Million Song Dataset of ``msd_fixture`` (its table: which track has what)."""

import json
import sqlite3
import sys

import numpy as np
import pytest

from mtlmusic.errors import ConfigError
from mtlmusic_training.datasets import load_msd, read_msd_metadata
from msd_fixture import ARTISTS, SEVEN_DIGITAL, TAGS, TEMPI, WORDS, YEARS, tid, write_msd


@pytest.fixture
def msd(tmp_path):
    return write_msd(tmp_path)


def sources(msd, **overrides) -> dict:
    files = {"lastfm_tags": msd / "lastfm_tags.db", "taste_triplets": msd / "train_triplets.txt",
             "unique_tracks": msd / "unique_tracks.txt", "genres": msd / "msd_tagtraum_cd2.cls",
             "musixmatch": [msd / "mxm_dataset_train.txt", msd / "mxm_dataset_test.txt"],
             "metadata": [msd / "track_metadata.db", msd / "metadata.csv"]}
    return {**files, **overrides}


def test_require_all_keeps_the_tracks_with_every_source(msd):
    data = load_msd(msd / "previews", **sources(msd), require="all")
    assert sorted(data.sources) == ["artist", "bpm", "cdr_tag", "lyrics", "tag", "taste", "year"]
    assert data.manifest.track_ids == (tid(1), tid(2), tid(6))
    assert data.report["with_every_source"] == data.report["tracks"] == 3
    assert data.report["tracks_with_audio"] == 6 and data.report["tracks_left_out"] == 3
    assert {source: data.report[f"with_{source}"] for source in data.sources} == {
        "tag": 5, "taste": 6, "cdr_tag": 6, "lyrics": 6, "year": 5, "bpm": 5, "artist": 6}
    for source in data.sources:
        assert data.has_data(source).all(), source
    # Every task trains on the same tracks; tags used only by the tracks left out are gone.
    assert data.vocabularies["tag"].tolist() == ["rock", "indie", "electronic"]
    np.testing.assert_array_equal(data.sources["year"], [2001, 1995, 2012])
    np.testing.assert_array_equal(data.sources["bpm"], [120, 95, 130])
    assert data.vocabularies["cdr_tag"].tolist() == ["Electronic", "Pop", "Rock"]
    assert data.sources["cdr_tag"].toarray().tolist() == [[0, 0, 1], [0, 1, 1], [1, 0, 0]]

    without_all = load_msd(msd / "previews", **sources(msd))
    assert without_all.manifest.track_ids == tuple(tid(i) for i in range(1, 7))
    assert without_all.report["with_every_source"] == 3
    some = load_msd(msd / "previews", **sources(msd), require=["tag", "year"])
    assert some.manifest.track_ids == (tid(1), tid(2), tid(3), tid(6))


def test_artist_profiles_pool_every_lastfm_track_of_the_artist(msd):
    data = load_msd(msd / "previews", **sources(msd), require="all")
    labels, counts = data.sources["artist"]
    vocabulary = data.vocabularies["artist"].tolist()
    assert labels.tolist() == ["AR1", "AR1", "AR3"]
    assert vocabulary == TAGS  # every tag of the database
    profile = dict(zip(vocabulary, counts[labels == "AR1"].sum(axis=0).A1))
    # Track 9 has no audio, yet its tags are in AR1's profile; track 11 (AR9) is not.
    assert profile == {"rock": 200, "indie": 50, "jazz": 0, "electronic": 0, "only-t9": 100, "ambient": 0,
                       "unused": 0}
    assert dict(zip(vocabulary, counts[labels == "AR3"].sum(axis=0).A1))["ambient"] == 60
    assert "only-t9" not in data.vocabularies["tag"].tolist()
    # Track 5 has no tags of its own but its artist has: it has an artist target.
    everything = load_msd(msd / "previews", **sources(msd))
    assert everything.has_data("artist")[4] and not everything.has_data("tag")[4]


def test_both_musixmatch_files_are_read(msd):
    data = load_msd(msd / "previews", **sources(msd), require="all")
    assert data.vocabularies["lyrics"].tolist() == WORDS
    # Track 2 is in the test file, track 1 in the train file.
    assert data.sources["lyrics"].toarray().tolist() == [[1, 2, 0, 0, 0], [0, 1, 0, 0, 2], [0, 1, 0, 0, 6]]
    train_only = load_msd(msd / "previews", **sources(msd, musixmatch=msd / "mxm_dataset_train.txt"),
                          require="all")
    assert train_only.manifest.track_ids == (tid(1),)


def test_audio_named_by_7digital_id_is_matched_and_every_file_counted(msd):
    data = load_msd(msd / "previews", **sources(msd))
    path_of = dict(data.manifest.items())
    assert path_of[tid(2)] == msd / "previews" / "7002.clip.wav"
    assert path_of[tid(4)] == msd / "previews" / "7" / "7004.flac"
    assert {key: data.report[key] for key in ("audio_by_track_id", "audio_by_7digital_id", "audio_duplicates",
                                              "audio_unmatched_7digital_id", "audio_other_names", "not_audio")} == {
        "audio_by_track_id": 4, "audio_by_7digital_id": 2, "audio_duplicates": 1,
        "audio_unmatched_7digital_id": 2, "audio_other_names": 1, "not_audio": 1}
    # Without 7digital ids in the metadata, those files are counted as unmatched.
    plain = load_msd(msd / "previews", **sources(msd, metadata=msd / "track_metadata.db"))
    assert tid(2) not in plain.manifest.track_ids and plain.report["audio_unmatched_7digital_id"] == 4
    assert "bpm" not in plain.sources


def test_metadata_files_merge_first_known_value_first(msd):
    table = read_msd_metadata([msd / "track_metadata.db", msd / "metadata.csv"])
    assert list(table.columns) == ["year", "tempo", "artist_id", "track_7digitalid"]
    assert table.loc[tid(4), "year"] != table.loc[tid(4), "year"]        # 0: unknown
    assert np.isnan(table.loc[tid(3), "tempo"]) and table.loc[tid(2), "track_7digitalid"] == "7002"
    (msd / "years.csv").write_text(f"track_id,year\n{tid(4)},1977\n{tid(1)},1900\n")
    merged = read_msd_metadata([msd / "track_metadata.db", msd / "years.csv"])
    assert merged.loc[tid(4), "year"] == 1977 and merged.loc[tid(1), "year"] == 2001
    (msd / "bad.csv").write_text(f"track_id,tempo\n{tid(1)},fast\n")
    with pytest.raises(ConfigError, match="not a number"):
        read_msd_metadata(msd / "bad.csv")
    (msd / "repeated.csv").write_text(f"track_id,year\n{tid(1)},1\n{tid(1)},2\n")
    with pytest.raises(ConfigError, match="more than once"):
        read_msd_metadata(msd / "repeated.csv")
    db = sqlite3.connect(msd / "other.db")
    db.execute("CREATE TABLE songs (track_id text, title text)")
    db.close()
    with pytest.raises(ConfigError, match="not track_metadata.db"):
        read_msd_metadata(msd / "other.db")


def write_summary(path, tracks) -> None:
    """An MSD summary file: one row per track in /analysis, /metadata and /musicbrainz songs tables."""
    import h5py

    analysis = np.array([(tid(i).encode(), TEMPI[i], 0.5) for i in tracks],
                        dtype=[("track_id", "S18"), ("tempo", "<f8"), ("loudness", "<f8")])
    metadata = np.array([(ARTISTS[i].encode(), SEVEN_DIGITAL[i], f"Song {i}".encode()) for i in tracks],
                        dtype=[("artist_id", "S18"), ("track_7digitalid", "<i4"), ("title", "S20")])
    musicbrainz = np.array([(YEARS[i],) for i in tracks], dtype=[("year", "<i4")])
    with h5py.File(path, "w") as handle:
        for group, table in (("analysis", analysis), ("metadata", metadata), ("musicbrainz", musicbrainz)):
            handle.create_group(group).create_dataset("songs", data=table)


def test_year_and_tempo_from_the_msd_summary_file(msd):
    pytest.importorskip("h5py")
    write_summary(msd / "msd_summary_file.h5", list(ARTISTS))
    table = read_msd_metadata(msd / "msd_summary_file.h5")
    assert table.loc[tid(9)].tolist() == [1999.0, 100.0, "AR1", "7009"]
    assert np.isnan(table.loc[tid(4), "year"]) and np.isnan(table.loc[tid(3), "tempo"])
    from_summary = load_msd(msd / "previews", **sources(msd, metadata=msd / "msd_summary_file.h5"), require="all")
    from_files = load_msd(msd / "previews", **sources(msd), require="all")
    assert from_summary.manifest == from_files.manifest
    for source in ("year", "bpm"):
        np.testing.assert_array_equal(from_summary.sources[source], from_files.sources[source])
    assert (from_summary.sources["artist"][1] != from_files.sources["artist"][1]).nnz == 0

    import h5py

    with h5py.File(msd / "broken.h5", "w") as handle:
        handle.create_group("analysis").create_dataset("songs", data=np.zeros(2, dtype=[("tempo", "<f8")]))
    with pytest.raises(ConfigError, match="not the MSD summary file"):
        read_msd_metadata(msd / "broken.h5")


def test_an_hdf5_file_without_h5py_is_a_clear_error(msd, monkeypatch):
    (msd / "msd_summary_file.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ConfigError, match="needs h5py"):
        read_msd_metadata(msd / "msd_summary_file.h5")


def test_tagtraum_genres_need_a_genre(msd):
    (msd / "bad.cls").write_text(f"# comment\n{tid(1)}\n")
    with pytest.raises(ConfigError, match="line 2: expected track_id<TAB>genre"):
        load_msd(msd / "previews", genres=msd / "bad.cls")


def test_prepare_msd_command_requires_every_source(msd):
    from typer.testing import CliRunner

    from mtlmusic_training.cli import app
    from mtlmusic_training.datasets import Manifest

    data = msd / "data"
    result = CliRunner().invoke(app, [
        "prepare-msd", str(msd / "previews"), str(data), "--lastfm-tags", str(msd / "lastfm_tags.db"),
        "--taste-triplets", str(msd / "train_triplets.txt"), "--unique-tracks", str(msd / "unique_tracks.txt"),
        "--musixmatch", str(msd / "mxm_dataset_train.txt"), "--musixmatch", str(msd / "mxm_dataset_test.txt"),
        "--genres", str(msd / "msd_tagtraum_cd2.cls"), "--require-all"])
    assert result.exit_code == 0, result.output
    # Without metadata the 7digital-named files cannot be matched: tracks 2 and 4 have no audio.
    assert Manifest.load(data / "manifest.csv").track_ids == (tid(1), tid(3), tid(6))
    assert "3 tracks in the manifest; 3 tracks have data for every source" in result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["audio_unmatched_7digital_id"] == 4
    assert sorted(path.name for path in (data / "targets").iterdir()) == [
        "cdr_tag.npz", "lyrics.npz", "tag.npz", "taste.npz"]
