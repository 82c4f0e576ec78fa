"""A miniature Million Song Dataset written in the published layouts, shared by the MSD tests.

Tracks 1-6 have audio (tracks 2 and 4 named by 7digital id); tracks 9-12 have
none. Tracks 1, 2 and 6 have every source: the intersection.

===== ====== ============== ========== =========== ============== ==== =====
track artist Last.fm tags   taste      musiXmatch  tagtraum       year tempo
===== ====== ============== ========== =========== ============== ==== =====
1     AR1    rock, indie    u1         train       Rock           2001 120
2     AR1    rock           u2         test        Rock, Pop      1995 95
3     AR2    jazz           u1         train       Jazz           1960 0
4     AR2    jazz           u3         train       Jazz           0    88
5     AR3    --             u2         train       Electronic     2010 128
6     AR3    electronic     u1         test        Electronic     2012 130
9     AR1    only-t9, rock  --         --          Rock           1999 100
10    AR3    ambient        --         --          --             2011 90
11    AR9    rock           --         --          --             2000 110
===== ====== ============== ========== =========== ============== ==== =====

:func:`write_msd` can add tracks 101, 102, ... with every source, each by an artist of its own,
enough of them for the study's targets (a 50-component mixture needs 50 years and 50 tempi)
and its networks (clips of at least 2.5 s).
"""

from __future__ import annotations

import csv
import sqlite3

import numpy as np
import soundfile as sf

ARTISTS = {1: "AR1", 2: "AR1", 3: "AR2", 4: "AR2", 5: "AR3", 6: "AR3", 9: "AR1", 10: "AR3", 11: "AR9", 12: "AR9"}
YEARS = {1: 2001, 2: 1995, 3: 1960, 4: 0, 5: 2010, 6: 2012, 9: 1999, 10: 2011, 11: 2000, 12: 2003}
TEMPI = {1: 120.0, 2: 95.0, 3: 0.0, 4: 88.0, 5: 128.0, 6: 130.0, 9: 100.0, 10: 90.0, 11: 110.0, 12: 105.0}
#: 7digital ids; 7011 names two tracks, so it matches neither.
SEVEN_DIGITAL = {1: 7001, 2: 7002, 3: 7003, 4: 7004, 5: 7005, 6: 7006, 9: 7009, 10: 7010, 11: 7011, 12: 7011}
TAGS = ["rock", "indie", "jazz", "electronic", "only-t9", "ambient", "unused"]
TRACK_TAGS = {1: {"rock": 100, "indie": 50}, 2: {"rock": 80}, 3: {"jazz": 100}, 4: {"jazz": 30},
              6: {"electronic": 100}, 9: {"only-t9": 100, "rock": 20}, 10: {"ambient": 60}, 11: {"rock": 10}}
PLAYS = {1: "u1", 2: "u2", 3: "u1", 4: "u3", 5: "u2", 6: "u1"}
LYRICS_TEST = (2, 6)   # in mxm_dataset_test.txt; tracks 1, 3, 4 and 5 in mxm_dataset_train.txt
GENRES = {1: "Rock", 2: "Rock\tPop", 3: "Jazz", 4: "Jazz", 5: "Electronic", 6: "Electronic", 9: "Rock"}
WORDS = ["love", "baby", "night", "blue", "moon"]
#: The tracks of the table with data for every source.
EVERY_SOURCE = (1, 2, 6)


def tid(i: int) -> str:
    return f"TRMSD{i:013d}"


def sid(i: int) -> str:
    return f"SOMSD{i:013d}"


def write_clip(path, fmt: str, seconds: float = 0.1) -> None:
    """A stereo 440 Hz tone at 22.05 kHz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * 22050)) / 22050)
    sf.write(path, np.stack([tone, tone], axis=1), 22050, format=fmt)


def write_msd(root, complete: int = 0, seconds: float = 0.1):
    """Write the table's files into ``root``, plus ``complete`` tracks 101, 102, ... with every source.

    Files: ``previews/`` (clips of ``seconds``), ``lastfm_tags.db``, ``track_metadata.db``,
    ``metadata.csv`` (tempo, 7digital id), ``unique_tracks.txt``, ``train_triplets.txt``,
    ``mxm_dataset_{train,test}.txt`` and ``msd_tagtraum_cd2.cls``. Returns ``root``.
    """
    extra = range(101, 101 + complete)
    artists = {**ARTISTS, **{i: f"AR{i}" for i in extra}}
    years = {**YEARS, **{i: 1900 + i - 101 for i in extra}}       # none of the table's years or tempi
    tempi = {**TEMPI, **{i: 150.5 + i - 101 for i in extra}}
    seven_digital = {**SEVEN_DIGITAL, **{i: 7000 + i for i in extra}}
    track_tags = {**TRACK_TAGS, **{i: {TAGS[i % 4]: 20 + i % 50} for i in extra}}
    plays = {**PLAYS, **{i: f"u{i % 3 + 1}" for i in extra}}
    genres = {**GENRES, **{i: ("Rock", "Jazz", "Electronic")[i % 3] for i in extra}}

    audio = root / "previews"
    write_clip(audio / "M" / "S" / "D" / f"{tid(1)}.wav", "WAV", seconds)
    write_clip(audio / "extra" / f"{tid(1)}.flac", "FLAC", seconds)      # a second copy of track 1
    write_clip(audio / "7002.clip.wav", "WAV", seconds)
    write_clip(audio / f"{tid(3)}.flac", "FLAC", seconds)
    write_clip(audio / "7" / "7004.flac", "FLAC", seconds)
    write_clip(audio / f"{tid(5)}.wav", "WAV", seconds)
    write_clip(audio / "M" / "S" / "D" / f"{tid(6)}.wav", "WAV", seconds)
    for i in extra:
        write_clip(audio / f"{tid(i)}.wav", "WAV", seconds)
    write_clip(audio / "8888.clip.wav", "WAV")                          # no track has this 7digital id
    write_clip(audio / "7011.clip.wav", "WAV")                          # two tracks have it
    write_clip(audio / "cover.wav", "WAV")
    (audio / "readme.txt").write_text("not audio")

    db = sqlite3.connect(root / "lastfm_tags.db")
    db.execute("CREATE TABLE tags (tag TEXT, CONSTRAINT tag_unique UNIQUE (tag))")
    db.execute("CREATE TABLE tids (tid TEXT, CONSTRAINT tid_unique UNIQUE (tid))")
    db.execute("CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT)")
    db.executemany("INSERT INTO tags VALUES (?)", [(tag,) for tag in TAGS])
    tracks = sorted(track_tags)
    db.executemany("INSERT INTO tids VALUES (?)", [(tid(i),) for i in tracks])
    db.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)",
                   [(tracks.index(i) + 1, TAGS.index(tag) + 1, float(val))
                    for i in tracks for tag, val in track_tags[i].items()])
    db.commit()
    db.close()

    db = sqlite3.connect(root / "track_metadata.db")
    db.execute("CREATE TABLE songs (track_id text PRIMARY KEY, title text, song_id text, release text, "
               "artist_id text, artist_mbid text, artist_name text, duration real, artist_familiarity real, "
               "artist_hotttnesss real, year int)")
    db.executemany("INSERT INTO songs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [(tid(i), f"Song {i}", sid(i), "An Album", artists[i], "", f"Artist {artists[i]}", 30.0, 0.5,
                     0.4, years[i]) for i in artists])
    db.commit()
    db.close()

    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["track_id", "tempo", "7digital_id"])
        writer.writerows([tid(i), tempi[i], seven_digital[i]] for i in artists)

    (root / "unique_tracks.txt").write_text("".join(f"{tid(i)}<SEP>{sid(i)}<SEP>Artist<SEP>Song {i}\n"
                                                    for i in artists))
    (root / "train_triplets.txt").write_text("".join(f"{user}\t{sid(i)}\t{i}\n" for i, user in plays.items()))

    header = "# musiXmatch dataset\n# words stemmed\n%" + ",".join(WORDS) + "\n"
    (root / "mxm_dataset_train.txt").write_text(
        header + "".join(f"{tid(i)},{100 + i},1:{i},{i % 5 + 1}:2\n" for i in (1, 3, 4, 5, *extra)))
    (root / "mxm_dataset_test.txt").write_text(
        header + "".join(f"{tid(i)},{100 + i},2:1,5:{i}\n" for i in LYRICS_TEST))

    (root / "msd_tagtraum_cd2.cls").write_text(
        "# tagtraum industries, CD2\n# track_id\tmajority\tminority\n"
        + "".join(f"{tid(i)}\t{genre}\n" for i, genre in genres.items()))
    return root
