"""Tests of the manifest and of the MSD and FMA adapters, on tiny fixtures written in the published layouts."""

import csv
import sqlite3

import numpy as np
import pandas as pd
import pytest

from mtlmusic.errors import ConfigError
from mtlmusic.files import PARTIAL_SUFFIX
from mtlmusic_training.datasets import (Manifest, PreparedDataset, assign_splits, check_track_ids, find_msd_audio,
                                        load_fma, load_msd, read_fma_csv, read_lastfm_tags, read_musixmatch)
from mtlmusic_training.targets import SourceSpec, compute_targets


def tid(i: int) -> str:
    """An MSD-style track id (``TR`` + 16 characters)."""
    return f"TRAB{i:014d}"


def sid(letter: str) -> str:
    """An MSD-style song id (``SO`` + 16 characters)."""
    return f"SO{letter * 4}{0:012d}"


def dense(matrix) -> list:
    return matrix.toarray().tolist()


# ---------------------------------------------------------------- manifest


def test_manifest_round_trip_with_relative_and_absolute_paths(tmp_path):
    outside = tmp_path / "elsewhere" / "c.ogg"
    manifest = Manifest(["a", "b", "c"], [tmp_path / "data" / "audio" / "a.wav", tmp_path / "data" / "b.mp3", outside],
                        ["train", "valid", "test"])
    path = manifest.save(tmp_path / "data" / "manifest.csv")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["track_id", "path", "split"], ["a", "audio/a.wav", "train"], ["b", "b.mp3", "valid"],
                    ["c", str(outside), "test"]]
    assert Manifest.load(path) == manifest
    assert not list((tmp_path / "data").glob(".*" + PARTIAL_SUFFIX))


def test_manifest_validation_and_missing_files(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"x")
    manifest = Manifest(["a", "b"], [tmp_path / "a.wav", tmp_path / "b.wav"], ["train", "train"])
    assert manifest.missing_files() == ["b"]
    assert manifest.items() == [("a", tmp_path / "a.wav"), ("b", tmp_path / "b.wav")]
    assert manifest.subset([1, 0]).track_ids == ("b", "a")
    with pytest.raises(ConfigError, match=r"unique.*\['a'\]"):
        Manifest(["a", "b", "a"], ["1", "2", "3"], ["train"] * 3)
    with pytest.raises(ConfigError, match="Unknown split"):
        Manifest(["a"], ["1"], ["training"])
    with pytest.raises(ConfigError, match="as many paths"):
        Manifest(["a", "b"], ["1"], ["train"])
    bad = tmp_path / "bad.csv"
    bad.write_text("track_id,path\na,a.wav\n")
    with pytest.raises(ConfigError, match=r"lacks the column\(s\) \['split'\]"):
        Manifest.load(bad)
    bad.write_text("track_id,path,split\na,a.wav,train\na,b.wav,valid\n")
    with pytest.raises(ConfigError, match="bad.csv: Track ids must be unique"):
        Manifest.load(bad)


def test_assign_splits_is_exact_deterministic_and_order_free():
    ids = [tid(i) for i in range(200)]
    splits = assign_splits(ids, valid_fraction=0.1, test_fraction=0.05, seed=3)
    assert (splits == "valid").sum() == 20 and (splits == "test").sum() == 10
    again = dict(zip(ids[::-1], assign_splits(ids[::-1], 0.1, 0.05, seed=3)))
    assert [again[t] for t in ids] == splits.tolist()
    assert assign_splits(ids, 0.1, 0.05, seed=4).tolist() != splits.tolist()
    with pytest.raises(ConfigError):
        assign_splits(ids, 0.8, 0.3)


# ---------------------------------------------------------------- Million Song Dataset


@pytest.fixture
def msd(tmp_path):
    """Previews of tracks 1-6 (nested and flat) and every source file in its published layout."""
    audio = tmp_path / "previews"
    for i in (1, 2, 3):
        track = tid(i)
        folder = audio / track[2] / track[3] / track[4]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{track}.mp3").write_bytes(b"mp3")
    for i in (4, 5, 6):
        (audio / f"{tid(i)}.mp3").write_bytes(b"mp3")
    (audio / "A" / "B" / "0" / f"{tid(2)}.wav").write_bytes(b"a second copy")
    (audio / "notes.txt").write_text("not audio")
    (audio / "cover.mp3").write_bytes(b"not a track id")

    # lastfm_tags.db: tid_tag.tid and tid_tag.tag are ROWIDs of tids and tags.
    db = sqlite3.connect(tmp_path / "lastfm_tags.db")
    db.execute("CREATE TABLE tags (tag TEXT, CONSTRAINT tag_unique UNIQUE (tag))")
    db.execute("CREATE TABLE tids (tid TEXT, CONSTRAINT tid_unique UNIQUE (tid))")
    db.execute("CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT)")
    db.executemany("INSERT INTO tags VALUES (?)", [("rock",), ("jazz",), ("unused",), ("sad",)])
    db.executemany("INSERT INTO tids VALUES (?)", [(tid(9),), (tid(3),), (tid(1),), (tid(2),), (tid(4),)])
    db.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)", [
        (1, 1, 100.0),              # track 9 (no audio)
        (2, 2, 40.0), (2, 4, 5.0),  # track 3: jazz, sad
        (3, 1, 100.0),              # track 1: rock
        (4, 1, 0.0),                # track 2: a zero weight
        (5, 1, 60.0), (5, 2, 20.0),  # track 4: rock, jazz
    ])
    db.commit()
    db.close()

    (tmp_path / "unique_tracks.txt").write_text("".join(
        f"{track}<SEP>{song}<SEP>Some Artist<SEP>A Title\n"
        for track, song in [(tid(1), sid("A")), (tid(2), sid("B")), (tid(3), sid("B")), (tid(4), sid("C")),
                            (tid(9), sid("D"))]))
    (tmp_path / "train_triplets.txt").write_text(
        f"u2\t{sid('A')}\t3\nu1\t{sid('B')}\t1\nu1\t{sid('A')}\t7\nu3\t{sid('D')}\t2\nu3\t{sid('C')}\t4\n")
    (tmp_path / "sid_mismatches.txt").write_text(
        f"ERROR: <{sid('C')} {tid(4)}> Some Artist  -  A Title  !=  Other Artist  -  Another Title\n")

    (tmp_path / "mxm_dataset_train.txt").write_text(
        "# musiXmatch dataset\n# comment line\n%i,the,you,love,me\n"
        f"{tid(1)},11,1:3,4:1\n{tid(5)},12,2:2,5:1,3:4\n{tid(8)},13,1:1\n")
    (tmp_path / "mxm_dataset_test.txt").write_text(f"# test part\n%i,the,you,love,me\n{tid(2)},14,5:2\n")

    (tmp_path / "metadata.csv").write_text(
        "track_id,title,year,tempo,artist_id\n"
        f"{tid(1)},x,1999,120.5,ARX\n{tid(2)},x,0,,ARX\n{tid(3)},x,2005,0,ARY\n{tid(4)},x,1987,98,\n"
        f"{tid(5)},x,,140,ARZ\n")
    (tmp_path / "genres.csv").write_text(f"track_id,genre\n{tid(1)},Rock\n{tid(1)},Pop\n{tid(3)},Jazz\n{tid(9)},Folk\n")
    return tmp_path


def test_find_msd_audio_reads_nested_and_flat_folders(msd):
    files, counts = find_msd_audio(msd / "previews")
    assert sorted(files) == [tid(i) for i in range(1, 7)]
    assert files[tid(1)] == msd / "previews" / "A" / "B" / "0" / f"{tid(1)}.mp3"
    assert files[tid(5)] == msd / "previews" / f"{tid(5)}.mp3"
    assert files[tid(2)].suffix == ".mp3"
    assert counts == {"audio_by_track_id": 6, "audio_by_7digital_id": 0, "audio_duplicates": 1,
                      "audio_unmatched_7digital_id": 0, "audio_other_names": 1, "not_audio": 1}


def test_lastfm_tags_follow_the_rowid_references(msd):
    counts, tags = read_lastfm_tags(msd / "lastfm_tags.db", [tid(4), tid(1), tid(3), tid(2)])
    assert tags.tolist() == ["rock", "jazz", "sad"]
    assert dense(counts) == [[60, 20, 0], [100, 0, 0], [0, 40, 5], [0, 0, 0]]
    (msd / "other.db").write_bytes(b"")
    with pytest.raises(ConfigError, match="not lastfm_tags.db"):
        read_lastfm_tags(msd / "other.db", [tid(1)])
    (msd / "garbage.db").write_bytes(b"not an SQLite database at all" * 100)
    with pytest.raises(ConfigError, match="Cannot read"):
        read_lastfm_tags(msd / "garbage.db", [tid(1)])


def test_musixmatch_uses_one_based_word_indices(msd):
    counts, words = read_musixmatch([msd / "mxm_dataset_train.txt", msd / "mxm_dataset_test.txt"],
                                    [tid(5), tid(1), tid(2)])
    assert words.tolist() == ["i", "the", "you", "love", "me"]
    assert dense(counts) == [[0, 2, 4, 0, 1], [3, 0, 0, 1, 0], [0, 0, 0, 0, 2]]
    (msd / "bad.txt").write_text(f"%i,the\n{tid(1)},1,3:1\n")
    with pytest.raises(ConfigError, match="outside 1..2"):
        read_musixmatch(msd / "bad.txt", [tid(1)])


def test_load_msd_aligns_every_source_to_the_manifest(msd):
    data = load_msd(msd / "previews", lastfm_tags=msd / "lastfm_tags.db", taste_triplets=msd / "train_triplets.txt",
                    unique_tracks=msd / "unique_tracks.txt", taste_mismatches=msd / "sid_mismatches.txt",
                    musixmatch=[msd / "mxm_dataset_train.txt", msd / "mxm_dataset_test.txt"],
                    metadata=msd / "metadata.csv", genres=msd / "genres.csv", valid_fraction=0.4, seed=1)
    assert isinstance(data, PreparedDataset)
    # Track 6 has audio but no data at all.
    ids = [tid(i) for i in range(1, 6)]
    assert data.manifest.track_ids == tuple(ids)
    assert data.manifest.paths[4] == msd / "previews" / f"{tid(5)}.mp3"
    assert data.manifest.splits == tuple(assign_splits(ids, 0.4, 0.0, seed=1))
    assert data.report == {"audio_by_track_id": 6, "audio_by_7digital_id": 0, "audio_duplicates": 1,
                           "audio_unmatched_7digital_id": 0, "audio_other_names": 1, "not_audio": 1,
                           "tracks_with_audio": 6, "with_artist": 3, "with_bpm": 3, "with_cdr_tag": 2,
                           "with_lyrics": 3, "with_tag": 3, "with_taste": 3, "with_year": 3, "with_every_source": 1,
                           "tracks": 5, "tracks_left_out": 1}
    assert sorted(data.sources) == ["artist", "bpm", "cdr_tag", "lyrics", "tag", "taste", "year"]

    assert data.vocabularies["tag"].tolist() == ["rock", "jazz", "sad"]
    assert dense(data.sources["tag"]) == [[100, 0, 0], [0, 0, 0], [0, 40, 5], [60, 20, 0], [0, 0, 0]]
    # Song B belongs to tracks 2 and 3; track 4's song C is a listed mismatch; song D's track has no audio.
    assert data.vocabularies["taste"].tolist() == ["u1", "u2"]
    assert dense(data.sources["taste"]) == [[7, 3], [1, 0], [1, 0], [0, 0], [0, 0]]
    assert dense(data.sources["lyrics"])[0] == [3, 0, 0, 1, 0] and dense(data.sources["lyrics"])[2] == [0] * 5
    assert data.vocabularies["cdr_tag"].tolist() == ["Jazz", "Pop", "Rock"]
    assert dense(data.sources["cdr_tag"]) == [[0, 1, 1], [0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]]
    np.testing.assert_array_equal(data.sources["year"], [1999, np.nan, 2005, 1987, np.nan])
    np.testing.assert_array_equal(data.sources["bpm"], [120.5, np.nan, np.nan, 98, 140])
    # Each artist's tags, pooled over its Last.fm tracks, on its first track; the vocabulary is every tag.
    labels, artist_tags = data.sources["artist"]
    assert labels.tolist() == ["ARX", "ARX", "ARY", "", "ARZ"]
    assert data.vocabularies["artist"].tolist() == ["rock", "jazz", "unused", "sad"]
    assert dense(artist_tags) == [[100, 0, 0, 0], [0, 0, 0, 0], [0, 40, 0, 5], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert data.has_data("artist").tolist() == [True, True, True, False, False]
    assert data.has_data("self").all()

    for source in ("tag", "taste", "cdr_tag"):
        targets = compute_targets(SourceSpec(source, "plsa", dim=2, n_iter=5), data.sources[source],
                                  track_ids=data.manifest.track_ids)
        assert targets.mask.tolist() == data.has_data(source).tolist()
    lyrics = compute_targets(SourceSpec("lyrics", "tfidf_plsa", dim=2, n_iter=5), data.sources["lyrics"])
    assert lyrics.z.shape == (5, 2) and lyrics.mask.tolist() == [True, True, False, False, True]
    artist = compute_targets(SourceSpec("artist", "artist_plsa", dim=2, n_iter=5), data.sources["artist"])
    assert artist.mask.tolist() == [True, True, True, False, False]
    year = compute_targets(SourceSpec("year", "gmm", dim=2, n_iter=5, missing_values=(0.0,)), data.sources["year"])
    assert year.mask.tolist() == [True, False, True, True, False]


def test_load_msd_keeps_the_tracks_with_every_required_source(msd):
    data = load_msd(msd / "previews", lastfm_tags=msd / "lastfm_tags.db", metadata=msd / "metadata.csv",
                    require=["tag", "year", "self"])
    assert data.manifest.track_ids == (tid(1), tid(3), tid(4))
    assert data.report["tracks_left_out"] == 3 and data.report["tracks"] == 3
    assert dense(data.sources["tag"]) == [[100, 0, 0], [0, 40, 5], [60, 20, 0]]
    only_audio = load_msd(msd / "previews")
    assert len(only_audio.manifest) == 6 and only_audio.sources == {}
    with pytest.raises(ConfigError, match=r"Cannot require \['lyrics'\]"):
        load_msd(msd / "previews", metadata=msd / "metadata.csv", require=["lyrics"])
    with pytest.raises(ConfigError, match="needs both"):
        load_msd(msd / "previews", taste_triplets=msd / "train_triplets.txt")


# ---------------------------------------------------------------- Free Music Archive


def write_multiheader_csv(path, columns, rows, index_name="track_id"):
    """Write a CSV as pandas does for a multi-level column header: one row per level, then the index name."""
    levels = len(columns[0])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        for level in range(levels):
            writer.writerow([""] + [column[level] for column in columns])
        writer.writerow([index_name] + [""] * len(columns))
        writer.writerows(rows)


@pytest.fixture
def fma(tmp_path):
    meta = tmp_path / "fma_metadata"
    meta.mkdir()
    columns = [("album", "date_released"), ("album", "title"), ("artist", "id"), ("artist", "name"),
               ("set", "split"), ("set", "subset"), ("track", "genre_top"), ("track", "genres_all"),
               ("track", "information"), ("track", "tags"), ("track", "title")]
    rows = [
        [2, "2009-01-05 00:00:00", "AWOL", 1, "AWOL", "training", "small", "Hip-Hop", "[21, 539]",
         "<p>A multi-line\ndescription, with commas</p>", "['Hip Hop', 'rap']", "Food"],
        [3, "", "AWOL", 1, "AWOL", "validation", "medium", "Hip-Hop", "[21, 1]", "", "[]", "Electric Ave"],
        [5, "2008-02-06 00:00:00", "Other", 7, "Nicky", "test", "medium", "", "[]", "", "['rap', ' Lo-Fi ']",
         "This World"],
        [10, "2010-03-01 00:00:00", "Big", 9, "Kurt", "training", "large", "Pop", "[10]", "", "['pop']", "Freeway"],
        [20, "2011-05-05 00:00:00", "Gone", 9, "Kurt", "training", "medium", "Pop", "[10, 76]", "", "['pop']",
         "Lost"],
    ]
    write_multiheader_csv(meta / "tracks.csv", columns, rows)
    write_multiheader_csv(meta / "echonest.csv",
                          [("echonest", "audio_features", "acousticness"), ("echonest", "audio_features", "tempo"),
                           ("echonest", "metadata", "artist_name")],
                          [[2, 0.41, 165.9, "AWOL"], [10, 0.1, 99.0, "Kurt"], [3, 0.2, "", "AWOL"]])
    (meta / "genres.csv").write_text("genre_id,#tracks,parent,title,top_level\n1,8693,38,Avant-Garde,38\n"
                                     "10,13845,0,Pop,10\n21,8389,0,Hip-Hop,21\n38,38154,0,Experimental,38\n"
                                     "76,1014,10,Experimental Pop,10\n539,1021,21,Rap,21\n")
    for track in (2, 3, 5, 10):
        folder = tmp_path / "fma_medium" / f"{track:06d}"[:3]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{track:06d}.mp3").write_bytes(b"mp3")
    return tmp_path


def test_fma_fixture_is_in_the_published_layout(fma):
    tracks = pd.read_csv(fma / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1])
    assert tracks.index.tolist() == [2, 3, 5, 10, 20]
    assert tracks.loc[2, ("track", "information")].startswith("<p>A multi-line\n")
    echonest = pd.read_csv(fma / "fma_metadata" / "echonest.csv", index_col=0, header=[0, 1, 2])
    assert echonest.loc[2, ("echonest", "audio_features", "tempo")] == 165.9


def test_load_fma_maps_fields_to_sources(fma):
    data = load_fma(fma, size="medium")
    manifest = data.manifest
    # Track 10 is in the large subset only; track 20's audio is missing.
    assert manifest.track_ids == ("2", "3", "5")
    assert manifest.splits == ("train", "valid", "test")
    assert manifest.paths[0] == fma / "fma_medium" / "000" / "000002.mp3"
    assert data.report == {"tracks_in_subset": 4, "missing_audio": 1, "cdr_tag_top_genres_dropped": 1,
                           "with_artist": 3, "with_bpm": 1, "with_cdr_tag": 2, "with_tag": 2, "with_year": 2,
                           "with_every_source": 1, "tracks": 3, "tracks_left_out": 0}
    assert sorted(data.sources) == ["artist", "bpm", "cdr_tag", "tag", "year"]
    assert data.vocabularies["tag"].tolist() == ["hip hop", "lo-fi", "rap"]
    assert dense(data.sources["tag"]) == [[1, 0, 1], [0, 0, 0], [0, 1, 1]]
    # The top-level genres (Hip-Hop) are the FMA evaluation's labels: cdr_tag keeps the others.
    assert data.vocabularies["cdr_tag"].tolist() == ["Avant-Garde", "Rap"]
    assert dense(data.sources["cdr_tag"]) == [[0, 1], [1, 0], [0, 0]]
    np.testing.assert_array_equal(data.sources["year"], [2009, np.nan, 2008])
    np.testing.assert_array_equal(data.sources["bpm"], [165.9, np.nan, np.nan])
    labels, counts = data.sources["artist"]
    # Artist 1's tracks 2 and 3 pool their tags on track 2.
    assert labels.tolist() == ["1", "1", "7"] and dense(counts) == [[1, 0, 1], [0, 0, 0], [0, 1, 1]]
    artist = compute_targets(SourceSpec("artist", "artist_plsa", dim=2, n_iter=5), data.sources["artist"])
    assert artist.mask.all() and np.array_equal(artist.z[0], artist.z[1])
    assert data.has_data("cdr_tag").tolist() == [True, True, False]


def test_fma_cdr_tag_holds_no_evaluation_label(fma):
    from mtlmusic_training.evaluation import load_fma_medium

    data = load_fma(fma, size="medium", check_files=False)
    evaluation_labels = set(load_fma_medium(fma, check_files=False).classes.tolist())
    genres = pd.read_csv(fma / "fma_metadata" / "genres.csv")
    top_level = set(genres.loc[genres["parent"] == 0, "title"])
    vocabulary = set(data.vocabularies["cdr_tag"].tolist())
    assert evaluation_labels == {"Hip-Hop", "Pop"}
    assert not vocabulary & (evaluation_labels | top_level)
    assert vocabulary == {"Avant-Garde", "Rap", "Experimental Pop"}
    assert data.report["cdr_tag_top_genres_dropped"] == 2
    # Tracks whose only genre is a top-level one get no cdr_tag target.
    tracks_csv = fma / "fma_metadata" / "tracks.csv"
    tracks_csv.write_text(tracks_csv.read_text().replace('"[21, 539]"', '"[21]"'))
    only_top = load_fma(fma, size="medium")
    assert only_top.has_data("cdr_tag").tolist() == [False, True, False]
    assert load_fma(fma, size="medium", require="all").manifest.track_ids == ()


def test_load_fma_sizes_requirements_and_errors(fma):
    large = load_fma(fma, size="medium", check_files=False, require=["cdr_tag"])
    assert large.manifest.track_ids == ("2", "3", "20")
    assert large.report["tracks_left_out"] == 1
    every = load_fma(fma, size="medium", require="all")
    assert every.manifest.track_ids == ("2",) and every.report["with_every_source"] == 1
    assert all(every.has_data(source).all() for source in every.sources)
    assert load_fma(fma, size="medium", require="tag, year").manifest.track_ids == ("2", "5")
    assert load_fma(fma, size="medium", require=["bpm"]).manifest.track_ids == ("2",)
    (fma / "fma_metadata" / "echonest.csv").unlink()
    assert "bpm" not in load_fma(fma).sources
    (fma / "fma_metadata" / "genres.csv").rename(fma / "genres.csv")
    with pytest.raises(ConfigError, match="No FMA genre list"):
        load_fma(fma)
    (fma / "genres.csv").rename(fma / "fma_metadata" / "genres.csv")
    with pytest.raises(ConfigError, match="Unknown FMA size"):
        load_fma(fma, size="huge")
    with pytest.raises(ConfigError, match="no data given"):
        load_fma(fma, require=["taste"])
    tracks_csv = fma / "fma_metadata" / "tracks.csv"
    tracks_csv.write_text(tracks_csv.read_text().replace('"[21, 1]"', '"[21, \'x\']"'))
    with pytest.raises(ConfigError, match=r"line 6: expected a list of int"):
        load_fma(fma)
    write_multiheader_csv(fma / "fma_metadata" / "tracks.csv", [("track", "tags")], [[2, "[]"]])
    with pytest.raises(ConfigError, match=r"lacks the column\(s\) \[\('set', 'subset'\)"):
        load_fma(fma)


# ---------------------------------------------------------------- one FMA parser, one manifest reader


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_read_fma_csv_equals_pandas_with_and_without_a_bom(fma, tmp_path, encoding):
    source = fma / "fma_metadata" / "tracks.csv"
    path = tmp_path / "tracks.csv"
    path.write_text(source.read_text(encoding="utf-8"), encoding=encoding)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    wanted = {"subset": ("set", "subset"), "tags": ("track", "tags"), "released": ("album", "date_released"),
              "information": ("track", "information")}
    rows = list(read_fma_csv(path, 2, wanted))
    reference = pd.read_csv(source, index_col=0, header=[0, 1], dtype=str, keep_default_na=False)
    assert [track_id for _, track_id, _ in rows] == reference.index.astype(int).tolist()
    for name, column in wanted.items():
        assert [record[name] for _, _, record in rows] == reference[column].tolist()
    assert [line for line, _, _ in rows] == [5, 6, 7, 8, 9]  # track 2's description spans two lines


def test_fma_adapter_reads_metadata_with_a_bom(fma):
    plain = load_fma(fma, size="medium")
    for name in ("tracks.csv", "echonest.csv", "genres.csv"):
        path = fma / "fma_metadata" / name
        path.write_text(path.read_text(encoding="utf-8"), encoding="utf-8-sig")
    with_bom = load_fma(fma, size="medium")
    assert with_bom.manifest == plain.manifest
    np.testing.assert_array_equal(with_bom.sources["bpm"], plain.sources["bpm"])
    assert with_bom.vocabularies["cdr_tag"].tolist() == plain.vocabularies["cdr_tag"].tolist()


def test_manifest_is_read_with_a_bom_and_gives_the_splits_of_any_ids(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text("track_id,path,split\na,a.wav,train\nb,b.wav,valid\n", encoding="utf-8-sig")
    manifest = Manifest.load(path)
    assert manifest.track_ids == ("a", "b") and manifest.paths == (tmp_path / "a.wav", tmp_path / "b.wav")
    assert manifest.splits_of(["b", "unknown", "a"]).tolist() == ["valid", "", "train"]
    assert manifest.save(path) == path and Manifest.load(path) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.csv"]


def test_track_ids_are_checked_alike_by_the_manifest_and_the_mel_cache(tmp_path):
    from mtlmusic_training.melcache import build_mel_cache

    check_track_ids(["a", "b"])
    for ids, message in ((["a", "b", "a", "b"], r"unique; 2 appear more than once, e.g. \['a', 'b'\]"),
                         (["a", ""], "Row 1: empty track id")):
        with pytest.raises(ConfigError, match=message):
            check_track_ids(ids)
        with pytest.raises(ConfigError, match=message):
            Manifest(ids, ["x.wav"] * len(ids), ["train"] * len(ids))
        with pytest.raises(ConfigError, match=message):
            build_mel_cache([(track_id, "x.wav") for track_id in ids], tmp_path / "cache", workers=0)
