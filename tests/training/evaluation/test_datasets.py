"""Dataset loaders on tiny fixtures written in each dataset's published layout."""

import csv
from pathlib import Path

import numpy as np
import pytest

from mtlmusic.errors import ConfigError
from mtlmusic_training.evaluation import (
    EvalDataset,
    load_ballroom,
    load_fma_medium,
    load_gtzan,
    load_interactions_csv,
    load_irmas,
    load_labels_csv,
    load_mediaeval_emotion,
    load_thisismyjam,
    load_values_csv,
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really audio")
    return path


# --- GTZAN ------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder,extension", [("genres", "au"), ("genres_original", "wav")])
def test_gtzan(tmp_path, folder, extension):
    for genre in ("blues", "rock"):
        for n in range(3):
            _touch(tmp_path / folder / genre / f"{genre}.{n:05d}.{extension}")
    _touch(tmp_path / folder / "rock" / ".DS_Store")
    _touch(tmp_path / folder / "rock" / "blues.00009.wav")  # wrong folder: not a rock track
    (tmp_path / folder / "bextract_single.mf").write_text("list")
    ds = load_gtzan(tmp_path)
    assert (ds.name, ds.task, len(ds)) == ("GTZAN", "classification", 6)
    assert ds.classes.tolist() == ["blues", "rock"]
    assert ds.ids[0] == "blues.00000" and ds.labels[-1] == "rock"
    assert ds.paths[0] == tmp_path / folder / "blues" / f"blues.00000.{extension}"
    assert ds.targets is ds.labels


def test_gtzan_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        load_gtzan(tmp_path / "missing")
    (tmp_path / "genres" / "blues").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"genres/<genre>/<genre>\.000NN\.wav"):
        load_gtzan(tmp_path)


# --- FMA --------------------------------------------------------------------------------------


def _write_fma(root: Path, rows, with_audio=True):
    meta = root / "fma_metadata"
    meta.mkdir(parents=True)
    with (meta / "tracks.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "album", "set", "set", "track", "track"])
        writer.writerow(["", "title", "split", "subset", "genre_top", "title"])
        writer.writerow(["track_id", "", "", "", "", ""])
        for track_id, subset, genre in rows:
            title = 'multi\nline, "quoted" title'  # real tracks.csv has such fields
            writer.writerow([track_id, "Album", "training", subset, genre, title])
            if with_audio and subset in ("small", "medium"):
                tid = f"{track_id:06d}"
                _touch(root / "fma_medium" / tid[:3] / f"{tid}.mp3")


def test_fma_medium_selects_small_and_medium_tracks(tmp_path):
    rows = [
        (2, "small", "Hip-Hop"),
        (3, "medium", "Rock"),
        (1040, "medium", "Hip-Hop"),
        (5, "large", "Rock"),
        (6, "medium", ""),
    ]
    _write_fma(tmp_path, rows)
    ds = load_fma_medium(tmp_path)
    assert (ds.name, len(ds)) == ("FMA", 3)
    assert ds.ids == ("000002", "000003", "001040")
    assert ds.labels.tolist() == ["Hip-Hop", "Rock", "Hip-Hop"]
    assert ds.paths[2] == tmp_path / "fma_medium" / "001" / "001040.mp3"


def test_fma_medium_stratified_subsample_is_seeded(tmp_path):
    rows = [(i, "medium", "Rock" if i <= 30 else "Folk") for i in range(1, 41)]
    rows += [(100, "medium", "Blues")]  # a rare class keeps one track
    _write_fma(tmp_path, rows)
    ds = load_fma_medium(tmp_path, subsample=0.5, seed=1)
    counts = dict(zip(*np.unique(ds.labels, return_counts=True), strict=True))
    assert counts == {"Rock": 15, "Folk": 5, "Blues": 1}
    assert list(ds.ids) == sorted(ds.ids)
    assert load_fma_medium(tmp_path, subsample=0.5, seed=1).ids == ds.ids
    assert load_fma_medium(tmp_path, subsample=0.5, seed=2).ids != ds.ids
    with pytest.raises(ConfigError, match="subsample"):
        load_fma_medium(tmp_path, subsample=1.5)


def test_fma_medium_errors(tmp_path):
    with pytest.raises(ConfigError, match="fma_metadata/tracks.csv"):
        load_fma_medium(tmp_path)
    _write_fma(tmp_path, [(2, "small", "Rock"), (3, "medium", "Folk")], with_audio=False)
    (tmp_path / "fma_medium").mkdir()
    with pytest.raises(ConfigError, match="2 audio files are missing"):
        load_fma_medium(tmp_path)
    assert len(load_fma_medium(tmp_path, check_files=False)) == 2
    (tmp_path / "fma_metadata" / "tracks.csv").write_text("track_id,title\n1,x\n")
    with pytest.raises(ConfigError, match="genre_top"):
        load_fma_medium(tmp_path, check_files=False)


def test_fma_medium_reads_tracks_csv_with_a_bom(tmp_path):
    rows = [(2, "small", "Hip-Hop"), (3, "medium", "Rock"), (5, "large", "Rock")]
    _write_fma(tmp_path, rows)
    plain = load_fma_medium(tmp_path)
    tracks_csv = tmp_path / "fma_metadata" / "tracks.csv"
    tracks_csv.write_text(tracks_csv.read_text(encoding="utf-8"), encoding="utf-8-sig")
    with_bom = load_fma_medium(tmp_path)
    assert with_bom.ids == plain.ids == ("000002", "000003")
    assert with_bom.labels.tolist() == plain.labels.tolist() == ["Hip-Hop", "Rock"]


# --- Ballroom and IRMAS -----------------------------------------------------------------------


def test_ballroom(tmp_path):
    for style in ("ChaChaCha", "Rumba-American", "Waltz"):
        for n in range(2):
            _touch(tmp_path / "BallroomData" / style / f"Media-10{n}.wav")
    _touch(tmp_path / "BallroomData" / "allBallroomFiles")
    ds = load_ballroom(tmp_path)
    assert (ds.name, len(ds)) == ("Ballroom", 6)
    assert ds.classes.tolist() == ["ChaChaCha", "Rumba-American", "Waltz"]
    assert ds.ids[0] == "ChaChaCha/Media-100"
    assert load_ballroom(tmp_path / "BallroomData").ids == ds.ids


def test_irmas_with_subsample(tmp_path):
    for instrument, n_files in (("cel", 10), ("voi", 20)):
        for n in range(n_files):
            _touch(
                tmp_path
                / "IRMAS-TrainingData"
                / instrument
                / f"[{instrument}][pop_roc]{n:04d}__1.wav"
            )
    full = load_irmas(tmp_path)
    assert (full.name, len(full)) == ("IRMAS", 30)
    small = load_irmas(tmp_path, subsample=0.2, seed=0)
    assert len(small) == 6
    assert sorted(small.labels.tolist()) == ["cel"] * 2 + ["voi"] * 4
    assert set(small.ids) <= set(full.ids)


def test_irmas_missing(tmp_path):
    with pytest.raises(ConfigError, match="IRMAS"):
        load_irmas(tmp_path)


# --- MediaEval emotion ------------------------------------------------------------------------


def _write_emotion(root: Path, audio="clips_45seconds"):
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "static_annotations.csv").write_text(
        "song_id, mean_arousal, std_arousal, mean_valence, std_valence\n"
        "2,3.1,0.94,3.0,0.63\n"
        "3,4.4,1.42,5.3,1.85\n"
        "5,2.0,1.1,4.5,1.2\n"
    )
    for song in (2, 3, 5):
        _touch(root / audio / f"{song}.mp3")


def test_mediaeval_emotion(tmp_path):
    _write_emotion(tmp_path)
    arousal = load_mediaeval_emotion(tmp_path)
    valence = load_mediaeval_emotion(tmp_path, "valence")
    assert (arousal.name, arousal.task) == ("EmotionArousal", "regression")
    assert valence.name == "EmotionValence"
    assert arousal.ids == ("2", "3", "5")
    np.testing.assert_allclose(arousal.values, [3.1, 4.4, 2.0])
    np.testing.assert_allclose(valence.values, [3.0, 5.3, 4.5])
    assert arousal.paths[1] == tmp_path / "clips_45seconds" / "3.mp3"


def test_mediaeval_emotion_errors(tmp_path):
    with pytest.raises(ConfigError, match="static_annotations.csv"):
        load_mediaeval_emotion(tmp_path)
    _write_emotion(tmp_path, audio="elsewhere")
    with pytest.raises(ConfigError, match="clips_45seconds"):
        load_mediaeval_emotion(tmp_path)
    assert len(load_mediaeval_emotion(tmp_path, audio_dir=tmp_path / "elsewhere")) == 3
    (tmp_path / "elsewhere" / "5.mp3").unlink()
    with pytest.raises(ConfigError, match="1 audio files are missing"):
        load_mediaeval_emotion(tmp_path, audio_dir=tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="arousal"):
        load_mediaeval_emotion(tmp_path, "dominance")


# --- This Is My Jam ---------------------------------------------------------------------------


def test_thisismyjam(tmp_path):
    (tmp_path / "likes.tsv").write_text(
        "user_id\tjam_id\n"
        "u1\tjA\nu1\tjB\nu1\tjA\n"  # a repeated like counts once
        "u2\tjB\n"
        "u3\tjZ\n"  # jam without audio: dropped, and u3 with it
    )
    for jam in ("jA", "jB", "jC"):
        _touch(tmp_path / "audio" / f"{jam}.mp3")
    (tmp_path / "map.csv").write_text(
        "jam_id,path\njA,audio/jA.mp3\njB,audio/jB.mp3\njC,audio/jC.mp3\n"
    )
    ds = load_thisismyjam(tmp_path / "likes.tsv", tmp_path / "map.csv")
    assert (ds.name, ds.task) == ("ThisIsMyJam", "recommendation")
    assert ds.users == ("u1", "u2") and ds.ids == ("jA", "jB", "jC")
    assert ds.paths[0] == tmp_path / "audio" / "jA.mp3"
    np.testing.assert_array_equal(ds.interactions.toarray(), [[1, 1, 0], [0, 1, 0]])
    assert load_thisismyjam(tmp_path / "likes.tsv", tmp_path / "map.csv", min_likes=2).users == (
        "u1",
    )


def test_thisismyjam_errors(tmp_path):
    (tmp_path / "likes.tsv").write_text("user_id\tjam_id\nu1\tjX\n")
    (tmp_path / "map.csv").write_text("jam_id,path\njA,a.mp3\n")
    with pytest.raises(ConfigError, match="no like refers"):
        load_thisismyjam(tmp_path / "likes.tsv", tmp_path / "map.csv", check_files=False)
    (tmp_path / "map.csv").write_text("jam_id,file\njA,a.mp3\n")
    with pytest.raises(ConfigError, match="'path' column"):
        load_thisismyjam(tmp_path / "likes.tsv", tmp_path / "map.csv")
    with pytest.raises(ConfigError, match="not found"):
        load_thisismyjam(tmp_path / "nope.tsv", tmp_path / "map.csv")


# --- generic CSVs -----------------------------------------------------------------------------


def test_labels_and_values_csv(tmp_path):
    _touch(tmp_path / "a.wav")
    _touch(tmp_path / "sub" / "b.wav")
    (tmp_path / "labels.csv").write_text("path,label,comment\na.wav,x,first\nsub/b.wav,y,\n")
    labels = load_labels_csv(tmp_path / "labels.csv")
    assert (labels.name, labels.task, labels.ids) == (
        "labels",
        "classification",
        ("a.wav", "sub/b.wav"),
    )
    assert labels.paths[1] == tmp_path / "sub" / "b.wav"
    (tmp_path / "values.csv").write_text("path,value\na.wav,1.5\nsub/b.wav,-2\n")
    values = load_values_csv(tmp_path / "values.csv", name="Tempo")
    assert values.name == "Tempo"
    np.testing.assert_allclose(values.values, [1.5, -2.0])
    (tmp_path / "bad.csv").write_text("path,value\na.wav,fast\n")
    with pytest.raises(ConfigError, match="must be numbers"):
        load_values_csv(tmp_path / "bad.csv")
    (tmp_path / "missing.csv").write_text("path,label\nnothere.wav,x\n")
    with pytest.raises(ConfigError, match="missing"):
        load_labels_csv(tmp_path / "missing.csv")


def test_interactions_csv(tmp_path):
    (tmp_path / "likes.csv").write_text("user,item\nalice,t1\nbob,t2\nbob,t1\n")
    (tmp_path / "tracks.csv").write_text("item,path\nt1,t1.ogg\nt2,t2.ogg\n")
    ds = load_interactions_csv(tmp_path / "likes.csv", tmp_path / "tracks.csv", check_files=False)
    assert ds.name == "likes" and ds.users == ("alice", "bob")
    np.testing.assert_array_equal(ds.targets.toarray(), [[1, 0], [1, 1]])


def test_dataset_consistency_is_checked():
    with pytest.raises(ConfigError, match="labels and no other"):
        EvalDataset("x", "classification", (Path("a"),), ("a",), values=np.array([1.0]))
    with pytest.raises(ConfigError, match="unknown task"):
        EvalDataset("x", "clustering", (), ())
    with pytest.raises(ConfigError, match="not unique"):
        EvalDataset(
            "x", "classification", (Path("a"), Path("b")), ("a", "a"), labels=np.array(["p", "q"])
        )
