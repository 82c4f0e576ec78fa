"""The rendered MIDI part of the open corpus: WAD music, MUS conversion, soundfont draws and resumable renders."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mtlmusic.audio import SAMPLE_RATE
from mtlmusic.errors import ConfigError
from mtlmusic_training.corpus import midi, renders

mido = pytest.importorskip("mido")

TIMGM = renders.GM_SOUNDFONTS[1]
needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None or not TIMGM.exists(),
                                      reason="fluidsynth or the TimGM6mb soundfont is not installed")
LIST_COLUMNS = ["package", "kind", "tracks_30s", "minutes", "format", "licence", "folder", "notes"]


def _midi(path, seconds, note=60, program=0, drums=False):
    """A type-1 MIDI file of half-second notes lasting ``seconds`` (120 quarter notes per minute)."""
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0),
                            mido.Message("program_change", channel=0, program=program, time=0)])
    for _ in range(int(seconds * 2)):
        track.append(mido.Message("note_on", channel=0, note=note, velocity=100, time=0))
        if drums:
            track.append(mido.Message("note_on", channel=9, note=36, velocity=100, time=0))
            track.append(mido.Message("note_off", channel=9, note=36, velocity=0, time=240))
        track.append(mido.Message("note_off", channel=0, note=note, velocity=0, time=240 if drums else 480))
    out = mido.MidiFile(type=1, ticks_per_beat=480)
    out.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(str(path))
    return path


def _mus(events: bytes) -> bytes:
    return b"MUS\x1a" + struct.pack("<6H", len(events), 18, 1, 0, 1, 0) + struct.pack("<H", 0) + events


def _wad(path, lumps):
    """A PWAD of ``(name, bytes)`` lumps: header, lump data, then the directory."""
    data, directory = b"", b""
    for name, content in lumps:
        directory += struct.pack("<ii8s", 12 + len(data), len(content), name.encode())
        data += content
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PWAD" + struct.pack("<ii", len(lumps), 12 + len(data)) + data + directory)
    return path


def _package_list(path, packages):
    rows = [(name, "midi", "", "", "mid", f"licence of {name}", folder, "") for name, folder in packages]
    pd.DataFrame(rows, columns=LIST_COLUMNS).to_csv(path, index=False)
    return path


def test_mus_lumps_become_midi_with_doom_timing_and_channels():
    # channel 15 (percussion) plays 36, wait 140 ticks (1 s: two delay bytes, 1*128 + 12), channel 9 plays 60
    # with its program 5 and a pitch bend, then both stop; a measure end carries no message
    events = bytes([0x1F, 0x80 | 36, 90, 0x49, 0, 5, 0x80 | 0x19, 0x80 | 60, 70, 0x80 | 1, 12, 0x29, 192,
                    0x50, 0x0F, 36, 0x09, 60, 0x60])
    converted = midi.mus_to_midi(_mus(events))
    notes = [(m.type, m.channel, m.note, m.velocity) for m in converted.tracks[0] if m.type.startswith("note")]
    assert notes == [("note_on", 9, 36, 90), ("note_on", 10, 60, 70), ("note_off", 9, 36, 0), ("note_off", 10, 60, 0)]
    programs = [(m.channel, m.program) for m in converted.tracks[0] if m.type == "program_change"]
    bends = [m.pitch for m in converted.tracks[0] if m.type == "pitchwheel"]
    assert programs == [(10, 5)] and bends == [192 * 64 - 8192]
    assert converted.length == pytest.approx(1.0)
    with pytest.raises(ValueError, match="truncated"):
        midi.mus_to_midi(_mus(events[:-1]))
    with pytest.raises(ValueError, match="not a MUS"):
        midi.mus_to_midi(b"MThd" + bytes(20))


def test_wad_music_lumps_are_extracted_and_converted(tmp_path):
    song = _midi(tmp_path / "song.mid", 2).read_bytes()
    wad = _wad(tmp_path / "game.wad", [
        ("D_RUNNIN", b"MThd old"), ("MAP01", song), ("D_E1M1", _mus(bytes([0x10, 60, 0x60]))),
        ("D_OGG", b"OggS" + bytes(8)), ("D_RUNNIN", song),
    ])
    report = midi.extract_wad_music(wad, tmp_path / "music")
    assert report["D_RUNNIN"] == "midi" and report["D_E1M1"] == "mus"
    assert report["D_OGG"].startswith("skipped: neither MIDI nor MUS")
    assert sorted(p.name for p in (tmp_path / "music").iterdir()) == ["D_E1M1.mid", "D_RUNNIN.mid"]
    assert (tmp_path / "music" / "D_RUNNIN.mid").read_bytes() == song  # the last lump of a name wins
    assert mido.MidiFile(tmp_path / "music" / "D_E1M1.mid").tracks[0][1].type == "note_on"
    with pytest.raises(ConfigError, match="not a Doom WAD"):
        midi.extract_wad_music(tmp_path / "song.mid", tmp_path / "out")


def test_kept_programs_drums_and_cut(tmp_path):
    source = _midi(tmp_path / "long.mid", 8, program=40, drums=True)
    original = mido.MidiFile(source)
    original.tracks[0].insert(0, mido.MetaMessage("key_signature", key="F", time=0))
    original.save(str(source))
    # a key signature of mode 255, as some game MIDI files have: mido cannot decode it, read_midi reads C major
    source.write_bytes(source.read_bytes().replace(b"\xff\x59\x02\xff\x00", b"\xff\x59\x02\xff\xff"))
    with pytest.raises(mido.midifiles.meta.KeySignatureError):
        mido.MidiFile(source)
    assert renders.read_midi(source).tracks[0][0].key == "C"
    renders._rewrite_midi(source, tmp_path / "cut.mid", program=None, bpm=None, max_seconds=2.0)
    cut = mido.MidiFile(tmp_path / "cut.mid")
    messages = list(cut.tracks[0])
    assert [(m.channel, m.program) for m in messages if m.type == "program_change"] == [(0, 40)]
    assert {m.channel for m in messages if m.type == "note_on"} == {0, 9}
    assert cut.length == pytest.approx(2.25)  # what sounds at 2 s is released at the next event
    sounding = set()
    for m in messages:
        if m.type in ("note_on", "note_off"):
            (sounding.add if m.type == "note_on" and m.velocity else sounding.discard)((m.channel, m.note))
    assert not sounding


def test_soundfont_draw_depends_on_seed_and_path_only():
    fonts = ["a.sf2", "b.sf2", "c.sf2"]
    paths = [f"usr/share/games/music/{i}.mid" for i in range(60)]
    draws = [renders.draw_soundfont(renders.piece_generator(0, path), fonts).name for path in paths]
    again = [renders.draw_soundfont(renders.piece_generator(0, path), fonts).name for path in reversed(paths)]
    assert draws == again[::-1] and set(draws) == set(fonts)
    other_seed = [renders.draw_soundfont(renders.piece_generator(1, path), fonts).name for path in paths]
    assert other_seed != draws


def test_reserved_packages_are_refused(tmp_path):
    (tmp_path / "x").mkdir()
    listed = _package_list(tmp_path / "list.csv", [("supertux-data", "supertux2/music")])
    with pytest.raises(ConfigError, match="reserved"):
        midi.build_midi_corpus(tmp_path / "x", tmp_path / "corpus", package_list=listed)


@needs_fluidsynth
def test_midi_corpus_renders_capped_deduplicated_and_resumable(tmp_path):
    root = tmp_path / "x"
    music = "usr/share/games/music"
    _midi(root / "alpha" / music / "song.mid", 3, note=60)
    _midi(root / "alpha" / music / "long.mid", 8, note=64)
    _midi(root / "alpha" / music / "short.mid", 0.5, note=67)
    shutil.copy(root / "alpha" / music / "song.mid", root / "alpha" / music / "theme.mid")
    _midi(root / "beta" / music / "song.mid", 3, note=72)
    wad_song = _midi(tmp_path / "wad-song.mid", 3, note=55).read_bytes()
    _wad(root / "gamma" / "usr/share/games/doom/gamma.wad", [("D_RUNNIN", wad_song)])
    packages = [("alpha", "music"), ("beta", "music"), ("gamma", "music/gamma")]
    fonts = []
    for name in ("a.sf2", "b.sf2", "c.sf2"):
        (tmp_path / name).symlink_to(TIMGM)
        fonts.append(tmp_path / name)
    kwargs = dict(soundfonts=fonts, seed=3, workers=1, max_seconds=4.0, min_seconds=1.0)

    corpus = tmp_path / "corpus"
    table = midi.build_midi_corpus(root, corpus, package_list=_package_list(tmp_path / "list.csv", packages),
                                   **kwargs)
    assert table["track_id"].tolist() == ["midi/alpha/long", "midi/alpha/song", "midi/beta/song",
                                          "midi/gamma/D_RUNNIN"]
    assert (table["corpus"] == "midi").all() and (table["program"] == -1).all() and table["bpm_label"].isna().all()
    assert table["group"].tolist() == [t.removeprefix("midi/") for t in table["track_id"]]
    assert table.loc[0, "licence"] == "licence of alpha"
    skipped = pd.read_csv(corpus / "midi-skipped.csv")
    reasons = dict(zip(skipped["path"].str.rsplit("/", n=1).str[-1], skipped["reason"]))
    assert reasons["theme.mid"] == "byte-identical to alpha/song"
    assert reasons["short.mid"].startswith("RuntimeError: only")

    expected = {relative: renders.draw_soundfont(renders.piece_generator(3, relative), fonts).name
                for relative in (f"{music}/long.mid", f"{music}/song.mid", "music/gamma/D_RUNNIN.mid")}
    assert table["soundfont"].tolist() == [expected[f"{music}/long.mid"], expected[f"{music}/song.mid"],
                                           expected[f"{music}/song.mid"], expected["music/gamma/D_RUNNIN.mid"]]
    long = json.loads((corpus / "midi" / "alpha" / "long.json").read_text())
    assert long["capped"] and long["midi_seconds"] == pytest.approx(8.0, abs=0.1)
    assert not json.loads((corpus / "midi" / "alpha" / "song.json").read_text())["capped"]
    for path, duration in zip(table["path"], table["duration"]):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.format, info.subtype) == (SAMPLE_RATE, 2, "FLAC", "PCM_16")
        assert info.duration == pytest.approx(duration, abs=0.01) and duration <= 4.0
        assert np.abs(sf.read(path)[0]).max() == pytest.approx(10 ** (-1 / 20), abs=1e-3)
    assert table.loc[0, "duration"] == pytest.approx(4.0, abs=0.01)

    records = sorted((corpus / "midi").rglob("*.json"))
    assert len(records) == 5  # four pieces and the short one, whose failure is not retried
    stamps = [path.stat().st_mtime_ns for path in records]
    again = midi.build_midi_corpus(root, corpus, package_list=tmp_path / "list.csv", **kwargs)
    assert [path.stat().st_mtime_ns for path in records] == stamps
    pd.testing.assert_frame_equal(again, table)

    reordered = midi.build_midi_corpus(root, tmp_path / "reordered", **kwargs,
                                       package_list=_package_list(tmp_path / "rev.csv", packages[::-1]))
    assert reordered.set_index("track_id")["soundfont"].to_dict() == table.set_index("track_id")["soundfont"].to_dict()
