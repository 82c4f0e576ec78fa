"""The Debian game-data part of the open corpus: package list, fetch, track table, excerpts."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zipfile

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mtlmusic.audio import load_audio
from mtlmusic.errors import ConfigError
from mtlmusic_training import corpus as oc
from mtlmusic_training.corpus import debian

SR = 8000
DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
License: GPL-2+

Files: usr/share/games/alpha/music/cc.ogg
License: CC-BY-SA-3.0
"""
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffmpeg decodes the tracker module")
LIST_COLUMNS = ["package", "kind", "tracks_30s", "minutes", "format", "licence", "folder", "notes"]


def _ogg(path, seconds, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * SR)).astype(np.float32)
    sf.write(str(path), noise, SR, format="OGG", subtype="VORBIS")
    return path


def _mod(path, speed=31):
    """A one-pattern ProTracker module of 64 rows at ``speed`` ticks per row (about 40 s at speed 31)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 2000
    sample = (np.sin(np.arange(n) * 2 * np.pi / 32) * 100).astype(np.int8).tobytes()
    headers = b"sine".ljust(22, b"\0") + struct.pack(">HBBHH", n // 2, 0, 64, 0, n // 2)
    headers += (b"\0" * 22 + struct.pack(">HBBHH", 0, 0, 0, 0, 1)) * 30
    rows = b"".join(struct.pack(">BBBB", 0x01, 0xAC, 0x10, 0) + (struct.pack(">BBBB", 0, 0, 0x0F, speed)
                    if row == 0 else b"\0" * 4) + b"\0" * 8 for row in range(64))
    path.write_bytes(b"test".ljust(20, b"\0") + headers + bytes([1, 127]) + b"\0" * 128 + b"M.K." + rows + sample)
    return path


def _package_list(path, rows):
    pd.DataFrame([dict(zip(LIST_COLUMNS, row)) for row in rows], columns=LIST_COLUMNS).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Extracted packages in their installed layouts and a package list naming them."""
    root = tmp_path_factory.mktemp("debian")
    x = root / "x"
    alpha = x / "alpha-data"
    music = alpha / "usr/share/games/alpha/music"
    first = _ogg(music / "a.ogg", 40, 0)
    _ogg(music / "cc.ogg", 35, 1)
    _ogg(music / "jingle.ogg", 10, 2)
    shutil.copy(first, music / "copy.ogg")
    (music / "broken.ogg").write_bytes(b"OggS" + bytes(500))
    (music / "loop.raw").write_bytes(bytes(22050 * 2 * 40))
    _ogg(alpha / "usr/share/games/alpha/sounds/boom.ogg", 35, 3)
    (alpha / "usr/share/doc/alpha-data").mkdir(parents=True)
    (alpha / "usr/share/doc/alpha-data/copyright").write_text(DEP5)
    holotz = x / "holotz-castle-data/usr/share/games/holotz-castle/game/sound"
    _ogg(holotz / "theme.ogg", 32, 4)
    _ogg(holotz / "theme_Slow.ogg", 45, 5)
    shutil.copy(first, holotz / "borrowed.ogg")
    (x / "holotz-castle-data/usr/share/doc/holotz-castle-data").mkdir(parents=True)
    (x / "holotz-castle-data/usr/share/doc/holotz-castle-data/copyright").write_text(
        "This package is free software under the GNU General Public License version 2.")
    zipped = x / "zipped-data/usr/share/games/zipped/public.zip"
    zipped.parent.mkdir(parents=True)
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(_ogg(root / "z.ogg", 31, 6), "audio/music/z.ogg")
        zf.writestr("art/readme.txt", "not audio")
    assert debian.unpack_archives(x / "zipped-data") == [zipped.with_name("public.zip.d")]
    _ogg(x / "modplay-data/usr/share/games/modplay/music/song.ogg", 31, 7)
    _mod(x / "modplay-data/usr/share/games/modplay/music/song.mod")
    listing = _package_list(root / "list.csv", [
        ("alpha-data", "recorded", 2, 1.2, "vorbis", "GPL-2+", "alpha/music", ""),
        ("holotz-castle-data", "recorded", 2, 1.0, "vorbis", "GPL-2+", "holotz-castle/game/sound", "_Slow"),
        ("zipped-data", "recorded", 1, 0.5, "vorbis", "CC0-1.0", "zipped/public.zip.d/audio/music", ""),
        ("modplay-data", "recorded", 1, 0.5, "vorbis", "Zlib", "modplay/music", ""),
        ("modplay-data", "tracker", 1, 0.7, "mod", "Zlib", "modplay/music", ""),
        ("freedroid-data", "tracker", 8, 23.1, "mod", "GPL-2+", "freedroid/sound", "remixes"),
    ])
    return x, listing


@pytest.fixture(scope="module")
def built(source, tmp_path_factory):
    x, listing = source
    out = tmp_path_factory.mktemp("corpus")
    return debian.build_debian_corpus(x, out, package_list=listing), out


def test_shipped_package_list():
    table = debian.read_package_list()
    assert set(table["kind"]) == {"recorded", "tracker", "midi"}
    assert "freedroid-data" not in set(table["package"])
    assert not set(table["package"]) & debian.RESERVED_PACKAGES
    assert table.loc[table["package"] == "0ad-data", "folder"].item().startswith("0ad/")
    assert oc.read_package_list is debian.read_package_list


def test_reserved_packages_are_refused(tmp_path):
    listing = _package_list(tmp_path / "list.csv", [("supertux-data", "recorded", 5, 9.0, "ogg", "GPL", "x", "")])
    with pytest.raises(ConfigError, match="reserved"):
        debian.read_package_list(listing)
    with pytest.raises(ConfigError, match="reserved"):
        debian.fetch_packages(["wesnoth-data", "widelands-data"], tmp_path)
    with pytest.raises(ConfigError, match="reserved"):
        debian.build_debian_corpus(tmp_path, tmp_path, packages=["hedgewars-data"])


@needs_ffmpeg
def test_tracks_licences_and_left_out_files(built):
    table, out = built
    assert table["track_id"].tolist() == ["alpha-data/a", "alpha-data/cc", "holotz-castle-data/theme",
                                          "zipped-data/z", "modplay-data/song", "modplay-data/song.mod"]
    assert table["soundtrack"].tolist()[:2] == ["alpha-data"] * 2 and set(table["corpus"]) == {"soundtrack"}
    assert table["licence"].tolist() == ["GPL-2+", "CC-BY-SA-3.0", "GPL-2+", "CC0-1.0", "Zlib", "Zlib"]
    assert table["licence_source"].tolist() == ["copyright Files: *", "copyright", "package list", "package list",
                                                "package list", "package list"]
    assert table["kind"].tolist() == ["recorded"] * 5 + ["tracker"]
    assert table["duration"].iloc[0] == pytest.approx(40, abs=0.1) and table["duration"].iloc[5] > 30
    skipped = pd.read_csv(out / "debian-skipped.csv", keep_default_na=False)
    reasons = dict(zip(skipped["path"].str.rsplit("/", n=1).str[-1], skipped["reason"]))
    assert reasons["jingle.ogg"].startswith("shorter than 30 s")
    assert reasons["broken.ogg"].startswith("undecodable")
    assert reasons["copy.ogg"] == reasons["borrowed.ogg"] == "byte-identical to alpha-data/a"
    assert reasons["theme_Slow.ogg"] == "slowed variant of the same theme"
    assert reasons["loop.raw"].startswith("headerless raw PCM")
    assert "boom.ogg" not in reasons and "readme.txt" not in reasons  # outside the music folder / not audio
    module = load_audio(table["path"].iloc[5])
    assert module.shape[0] == 2 and module.shape[1] / 22050 == pytest.approx(table["duration"].iloc[5], abs=0.5)
    read = oc._io.read_table(out / "debian.csv")
    assert read["track_id"].tolist() == table["track_id"].tolist()


@needs_ffmpeg
def test_groups_keep_one_piece_together(built):
    table, _ = built
    groups = dict(zip(table["track_id"], table["group"]))
    assert groups["modplay-data/song"] == groups["modplay-data/song.mod"] == "modplay-data/song"
    assert groups["alpha-data/a"] != groups["alpha-data/cc"]
    strata = table.assign(stratum=table["soundtrack"])
    split = oc.split_tracks(strata, seed=0)
    pieces = split[table["group"] == "modplay-data/song"]
    assert len(pieces) == 2 and pieces.nunique() == 1


def test_unknown_kinds_and_missing_packages(source, tmp_path):
    x, listing = source
    with pytest.raises(ConfigError, match="MIDI"):
        debian.build_debian_corpus(x, tmp_path, kinds=("midi",), package_list=listing)
    table = debian.build_debian_corpus(x, tmp_path, kinds=("recorded",), package_list=listing,
                                       packages=["zipped-data", "gone-data"])
    assert table["track_id"].tolist() == ["zipped-data/z"]


def test_excerpt_windows():
    table = pd.DataFrame({"track_id": ["long", "short", "mid"], "duration": [400.0, 29.0, 95.0]})
    windows = debian.excerpt_windows(table, per_track=3, seed=1)
    assert windows.groupby("track_id").size().to_dict() == {"long": 3, "mid": 3}
    long = windows[windows["track_id"] == "long"]["start"]
    assert long.is_monotonic_increasing and (long % 30 == 0).all() and (long.diff().dropna() >= 30).all()
    assert (long + 30 <= 400).all() and (windows["duration"] == 30).all()
    again = debian.excerpt_windows(table.iloc[::-1], per_track=3, seed=1)
    assert again[again["track_id"] == "long"]["start"].tolist() == long.tolist()
    other = debian.excerpt_windows(table, per_track=3, seed=2)
    assert len(other) == len(windows)


def test_fetch_is_resumable_and_reports_failures(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, cwd=None, capture_output=True, text=True):
        calls.append(cmd[:2] + [cmd[2].rsplit("/", 1)[-1]])
        if cmd[:2] == ["apt-get", "download"]:
            if cmd[2] == "missing-data":
                return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package missing-data")
            (cwd / f"{cmd[2]}_1.0_all.deb").write_bytes(b"deb")
        else:
            music = tmp_path / "x" / cmd[3].rsplit("/", 1)[-1] / "usr/share/games/p/music"
            music.mkdir(parents=True)
            with zipfile.ZipFile(music / "pak0.pk3", "w") as zf:
                zf.writestr("music/t.ogg", b"ogg bytes")
                zf.writestr("maps/m.bsp", b"map")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(debian.subprocess, "run", fake_run)
    report = debian.fetch_packages(["one-data", "missing-data", "two-data"], tmp_path)
    assert report["one-data"] == report["two-data"] == "extracted"
    assert report["missing-data"].startswith("failed") and "Unable to locate" in report["missing-data"]
    unpacked = tmp_path / "x/one-data/usr/share/games/p/music/pak0.pk3.d"
    assert [p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()] == ["music/t.ogg"]
    assert not list((tmp_path / "x").glob(".*partial"))
    calls.clear()
    again = debian.fetch_packages(["one-data", "missing-data", "two-data"], tmp_path)
    assert again["one-data"] == again["two-data"] == "present"
    assert calls == [["apt-get", "download", "missing-data"]]
    shutil.rmtree(tmp_path / "x/two-data")
    calls.clear()
    assert debian.fetch_packages(["two-data"], tmp_path) == {"two-data": "extracted"}
    assert [c[:2] for c in calls] == [["dpkg", "-x"]]  # the .deb was already downloaded


def test_command_lists_a_listed_package(tmp_path):
    from typer.testing import CliRunner

    from mtlmusic_training.cli import app

    _ogg(tmp_path / "dl/x/colobot-common-sounds/usr/share/games/colobot/music/Intro.ogg", 31, 8)
    result = CliRunner().invoke(app, ["open-corpus-debian", str(tmp_path / "dl"), str(tmp_path / "corpus")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("1 tracks, 1 minutes, 1 packages") and "GPL-3+" in result.output
    assert (tmp_path / "corpus/debian.csv").exists()


def test_suspected_variants_share_a_group_and_ambience_is_left_out(tmp_path):
    x = tmp_path / "x"
    for name, seed in (("castle", 10), ("castle2", 11), ("theme1", 12), ("theme1_raw", 13), ("shop", 14)):
        _ogg(x / f"ardentryst/usr/share/games/ardentryst/Music/{name}.ogg", 31, seed)
    _ogg(x / "lugaru-data/usr/share/games/lugaru/Sounds/Wind.ogg", 31, 15)
    _ogg(x / "lugaru-data/usr/share/games/lugaru/Sounds/Music3.ogg", 31, 16)
    listing = _package_list(tmp_path / "list.csv", [
        ("ardentryst", "recorded", 5, 2.6, "vorbis", "CC-BY-SA-3.0", "ardentryst/Music", "castle2 ~= castle"),
        ("lugaru-data", "recorded", 1, 0.5, "vorbis", "GPL-2+", "lugaru/Sounds", "ambient excluded"),
    ])
    table = debian.build_debian_corpus(x, tmp_path / "corpus", package_list=listing)
    assert dict(zip(table["track_id"], table["group"])) == {
        "ardentryst/castle": "ardentryst/castle", "ardentryst/castle2": "ardentryst/castle",
        "ardentryst/shop": "ardentryst/shop", "ardentryst/theme1": "ardentryst/theme1",
        "ardentryst/theme1_raw": "ardentryst/theme1", "lugaru-data/Music3": "lugaru-data/Music3"}
    skipped = pd.read_csv(tmp_path / "corpus/debian-skipped.csv", keep_default_na=False)
    assert skipped["reason"].tolist() == ["ambience, not music"]


def test_upstream_per_track_licences(tmp_path):
    snd = tmp_path / "x/naev-data/usr/share/naev/dat/snd"
    _ogg(snd / "music/ambient1.ogg", 31, 20)
    _ogg(snd / "music/peace1.ogg", 31, 21)
    _ogg(snd / "music/unlisted.ogg", 31, 22)
    (snd / "SOUND_LICENSE.yaml").write_text(
        "- Vega Strike:\n   license: GPLv2+\n   music:\n     - peace1.ogg\n   sounds:\n     - ambient1.ogg\n"
        "- Nikola Whallon <n@example.org>:\n   license: GPLv3 / CC-by 3\n   music:\n     - ambient1.ogg\n")
    listing = _package_list(tmp_path / "list.csv", [
        ("naev-data", "recorded", 3, 1.5, "vorbis", "mixed free", "naev/dat/snd/music", "")])
    table = debian.build_debian_corpus(tmp_path / "x", tmp_path / "corpus", package_list=listing)
    assert table[["track_id", "licence", "licence_source"]].values.tolist() == [
        ["naev-data/ambient1", "GPL-3 or CC-BY-3.0", "SOUND_LICENSE.yaml"],
        ["naev-data/peace1", "GPL-2+", "SOUND_LICENSE.yaml"],
        ["naev-data/unlisted", "mixed free", "package list"]]
