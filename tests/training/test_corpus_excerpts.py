"""Excerpts of the open corpus: cutting, resuming, the manifest of excerpts and the held-out tracks."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mtlmusic.audio import load_audio
from mtlmusic.errors import ConfigError
from mtlmusic.files import file_sha256
from mtlmusic_training import corpus as oc
from mtlmusic_training.corpus._io import read_table, write_table
from mtlmusic_training.corpus.excerpts import excerpt_path
from mtlmusic_training.corpus.heldout import held_out_datasets
from samples import tone

SR = 22050


def _track(track_id, path, seconds, soundtrack="pkg", corpus="soundtrack", group=None, **extra):
    return {"track_id": track_id, "path": str(path), "corpus": corpus, "soundtrack": soundtrack, "composer": "",
            "style": "", "program": -1, "bpm_label": np.nan, "duration": float(seconds), "licence": "GPL-2+",
            "title": "", "group": group or track_id, **extra}


def _wav(path, seconds, seed=0, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, sr, seed=seed), sr)
    return path


@pytest.fixture(scope="module")
def tracks(tmp_path_factory):
    """A 65 s track at 44.1 kHz (two excerpts), a 20 s track (one whole excerpt) and a 10 s one (none)."""
    root = tmp_path_factory.mktemp("audio")
    return pd.DataFrame([_track("pkg/long", _wav(root / "long.wav", 65.0, sr=44100), 65.0),
                         _track("pkg/mid", _wav(root / "mid.wav", 20.0, seed=1), 20.0),
                         _track("pkg/short", _wav(root / "short.wav", 10.0, seed=2), 10.0)])


def test_excerpts_are_the_windows_of_the_decoded_track(tracks, tmp_path):
    excerpts = oc.cut_excerpts(tracks, tmp_path, seconds=30.0, per_track=4, workers=1)
    assert list(excerpts.columns) == list(oc.EXCERPT_COLUMNS)
    assert excerpts["track_id"].tolist() == ["pkg/long@0000", "pkg/long@0030", "pkg/mid@0000"]
    assert excerpts["source_track"].tolist() == ["pkg/long", "pkg/long", "pkg/mid"]
    assert excerpts["start"].tolist() == [0.0, 30.0, 0.0] and excerpts["duration"].tolist() == [30.0, 30.0, 20.0]
    assert (excerpts["soundtrack"] == "pkg").all() and excerpts["group"].tolist() == ["pkg/long", "pkg/long", "pkg/mid"]
    assert excerpts["path"].iloc[1] == str((tmp_path / "excerpts" / "pkg" / "long@0030.flac").resolve())
    source = load_audio(tracks["path"].iloc[0])
    for row in excerpts.iloc[:2].itertuples():
        info = sf.info(row.path)
        assert info.samplerate == SR and info.channels == 2 and info.subtype == "PCM_16"
        audio, _ = sf.read(row.path, dtype="float32", always_2d=True)
        first = int(row.start) * SR
        np.testing.assert_allclose(audio.T, source[:, first:first + 30 * SR], atol=1.5 / 32768)
    mid, _ = sf.read(excerpts["path"].iloc[2], dtype="float32", always_2d=True)
    np.testing.assert_allclose(mid.T, load_audio(tracks["path"].iloc[1]), atol=1.5 / 32768)
    assert pd.read_csv(tmp_path / "excerpts.csv")["track_id"].tolist() == excerpts["track_id"].tolist()


def test_excerpts_resume_and_skip_an_undecodable_track(tracks, tmp_path, caplog):
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(b"not audio at all" * 100)
    table = pd.concat([tracks, pd.DataFrame([_track("pkg/bad", bad, 40.0)])], ignore_index=True)
    first = oc.cut_excerpts(table, tmp_path, workers=2)
    assert "pkg/bad" in first.attrs["failed"] and "pkg/bad" not in set(first["source_track"])
    assert "pkg/bad failed" in caplog.text
    files = sorted((tmp_path / "excerpts").rglob("*.flac"))
    assert len(files) == 3
    stamps = {path: path.stat().st_mtime_ns for path in files}
    again = oc.cut_excerpts(tracks, tmp_path, workers=1)
    assert {path: path.stat().st_mtime_ns for path in files} == stamps
    files[1].unlink()
    redone = oc.cut_excerpts(tracks, tmp_path, workers=1)
    assert files[1].exists() and files[1].stat().st_mtime_ns != stamps[files[1]]
    assert all(path.stat().st_mtime_ns == stamps[path] for path in files if path != files[1])
    pd.testing.assert_frame_equal(redone, again)
    pd.testing.assert_frame_equal(again, first)


def test_excerpt_paths_are_safe_and_distinct():
    assert excerpt_path("c", "a/b", 0.0).as_posix() == "c/excerpts/a/b@0000.flac"
    odd = [excerpt_path("c", track_id, 30.0) for track_id in ("../x y", "../x_y", "a//b:c")]
    assert len(set(odd)) == 3
    assert all(".." not in path.parts and path.parts[:2] == ("c", "excerpts") for path in odd)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """Soundtrack, Debian and music21 tables of 5 s tracks; two Debian rows copy soundtrack files."""
    root = tmp_path_factory.mktemp("small")
    soundtracks = pd.DataFrame([_track(f"st{c}/t{i}", _wav(root / f"st{c}" / f"t{i}.wav", 5.0, seed=10 * c + i), 5.0,
                                       soundtrack=f"st{c}") for c in range(2) for i in range(5)])
    shutil.copy(root / "st0" / "t0.wav", root / "copy.wav")
    debian = pd.DataFrame([_track(f"deb/t{i}", _wav(root / "deb" / f"t{i}.wav", 5.0, seed=100 + i), 5.0,
                                  soundtrack="deb", group=f"deb/{i // 2}") for i in range(6)]
                          + [_track("deb/same-path", soundtracks["path"].iloc[1], 5.0, soundtrack="deb"),
                             _track("deb/same-bytes", root / "copy.wav", 5.0, soundtrack="deb")])
    debian["sha256"] = [file_sha256(path) for path in debian["path"]]
    music21 = pd.DataFrame([_track(f"music21/bach/{i}", _wav(root / f"bach{i}.wav", 5.0, seed=200 + i), 5.0,
                                   corpus="music21", soundtrack="", style="bach", bpm_label=60.0 + i)
                            for i in range(5)])
    return {"soundtracks": soundtracks, "debian": debian, "music21": music21}


def test_debian_copies_are_dropped_and_strata_keep_their_split(small_corpus, tmp_path):
    before = oc.build_manifest(tmp_path / "a", {k: small_corpus[k] for k in ("soundtracks", "music21")})
    after = oc.build_manifest(tmp_path / "b", small_corpus)
    assert not {"deb/same-path", "deb/same-bytes"} & set(after["track_id"])
    assert len(after) == len(before) + 6
    pd.testing.assert_frame_equal(after[~after["track_id"].str.startswith("deb/")].reset_index(drop=True), before)
    with pytest.raises(ConfigError, match="Unknown track tables"):
        oc.build_manifest(tmp_path / "c", {"extra": small_corpus["debian"]})


def test_midi_renders_of_recorded_pieces_are_left_out(small_corpus, tmp_path):
    paths = small_corpus["debian"]["path"]
    midi = pd.DataFrame([_track(f"midi/{package}/{i}", paths.iloc[i], 5.0, soundtrack=package, corpus="midi")
                         for package in ("planetblupi-music-midi", "simutrans-data") for i in range(3)])
    recorded = small_corpus["soundtracks"].assign(soundtrack="planetblupi-music-ogg")
    kept = oc.build_manifest(tmp_path / "a", {"soundtracks": recorded, "midi": midi})["track_id"]
    assert sum(t.startswith("midi/simutrans") for t in kept) == 3 and not any("planetblupi-music-midi" in t
                                                                              for t in kept)
    alone = oc.build_manifest(tmp_path / "b", {"midi": midi})["track_id"]
    assert len(alone) == 6


def test_excerpt_manifest_keeps_each_track_in_its_split(small_corpus, tmp_path):
    tracks = oc.build_manifest(tmp_path / "whole", small_corpus)
    corpus = tmp_path / "excerpts"
    for name, table in small_corpus.items():
        corpus.mkdir(exist_ok=True)
        write_table(table, corpus / f"{name}.csv")
    manifest = oc.build_manifest(corpus, per_track=4, seconds=2.0, workers=1)
    metadata = read_table(corpus / "metadata.csv")
    assert list(metadata.columns) == [*oc.METADATA_COLUMNS, "source_track", "start"]
    assert manifest["track_id"].tolist() == metadata["track_id"].tolist()
    assert len(manifest) == 2 * len(tracks) and metadata.groupby("source_track").size().eq(2).all()
    split_of = dict(zip(tracks["track_id"], tracks["split"]))
    assert manifest["split"].tolist() == [split_of[source] for source in metadata["source_track"]]
    summary = oc.corpus_summary(corpus)
    assert summary[("tracks", "all")].sum() == len(tracks)
    assert (metadata["duration"] == 2.0).all()
    assert summary.loc[("soundtrack", "deb"), ("minutes", "all")] == round(12 * 2.0 / 60, 1)


def test_held_out_uses_the_first_excerpt_of_each_track_and_classes_of_three(tmp_path):
    manifest, metadata = [], []
    for corpus, label, n_tracks in (("soundtrack", "big", 4), ("soundtrack", "small", 2), ("music21", "bach", 3)):
        for i in range(n_tracks):
            source = f"{label}/{i}"
            for start in (60.0, 0.0, 30.0):
                track_id = f"{source}@{int(start):04d}"
                manifest.append({"track_id": track_id, "path": f"{track_id}.flac", "split": "test"})
                metadata.append(_track(track_id, "", 30.0, corpus=corpus,
                                       soundtrack=label if corpus == "soundtrack" else "",
                                       style=label if corpus == "music21" else "",
                                       bpm_label=100.0 if corpus == "music21" else np.nan,
                                       source_track=source, start=start))
    manifest.append({"track_id": "big/9@0000", "path": "x.flac", "split": "train"})
    metadata.append(_track("big/9@0000", "", 30.0, soundtrack="big", source_track="big/9", start=0.0))
    pd.DataFrame(manifest).to_csv(tmp_path / "manifest.csv", index=False)
    pd.DataFrame(metadata).drop(columns="path").to_csv(tmp_path / "metadata.csv", index=False)
    datasets = held_out_datasets(tmp_path)
    assert sorted(datasets) == ["soundtrack", "style", "tempo"]
    assert datasets["soundtrack"].ids == ("big/0@0000", "big/1@0000", "big/2@0000", "big/3@0000")
    assert set(datasets["soundtrack"].labels) == {"big"}
    assert len(datasets["style"]) == 3 and len(datasets["tempo"]) == 3
    assert all(track_id.endswith("@0000") for track_id in datasets["tempo"].ids)
