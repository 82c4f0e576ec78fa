"""Rendered MIDI for the open corpus: the ``midi`` packages of the Debian package list, played by FluidSynth.

The ``midi`` rows of the package list (:data:`~.debian.PACKAGE_LIST`) are game
music written as MIDI: Freedoom's music lumps inside its WADs, Planet Blupi,
Simutrans, OpenTTD's OpenMSX, FreeDink, Kobo Deluxe, Liquid War and Pang Zero.
:func:`build_midi_corpus` renders every piece with its own programs (they are
real arrangements) and one General MIDI soundfont drawn per piece, and writes
``midi.csv``; :func:`extract_wad_music` takes the music out of a Doom WAD,
converting DMX MUS lumps to MIDI (:func:`mus_to_midi`). Rendering needs
``apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont
musescore-general-soundfont`` and ``pip install mido``.

Examples
--------
>>> from mtlmusic_training.corpus import fetch_packages, read_package_list
>>> read_package_list(kinds=("midi",))["package"].iloc[0]
'freedoom'
>>> fetch_packages(read_package_list(kinds=("midi",))["package"], "~/open-music-midi")  # doctest: +SKIP
>>> table = build_midi_corpus("~/open-music-midi/x", "corpus")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

from mtlmusic.errors import ConfigError
from mtlmusic.files import atomic_path, file_sha256

from ._io import METADATA_COLUMNS, write_table
from .debian import music_folders, read_package_list
from .renders import (GM_SOUNDFONTS, check_render_tools, draw_soundfont, piece_generator, read_midi,
                      record_render, render_midi, render_pieces)

logger = logging.getLogger(__name__)

#: Suffixes of MIDI files.
MIDI_SUFFIXES = frozenset({".mid", ".midi"})
#: Folder of an extracted package that receives the music of its WADs, one subfolder per WAD
#: (``music/freedoom1``), where the package list's ``folder`` column looks for it.
WAD_MUSIC_FOLDER = "music"

_MUS_MAGIC = b"MUS\x1a"
# MUS channels 0-15 as MIDI channels: MUS 15 is percussion (MIDI 9); MUS 9-14 move up one.
_MUS_CHANNELS = (*range(9), *range(10, 16), 9)
# MUS controllers 1-9 (0 is the program) and system events 10-14 as MIDI controllers: bank select (LSB),
# modulation, volume, pan, expression, reverb, chorus, sustain and soft pedals; all sounds off, all notes
# off, mono, poly, reset all controllers.
_MUS_CONTROLLERS = {1: 32, 2: 1, 3: 7, 4: 10, 5: 11, 6: 91, 7: 93, 8: 64, 9: 67,
                    10: 120, 11: 123, 12: 126, 13: 127, 14: 121}


def extract_wad_music(wad_path: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, str]:
    """Write the music lumps of a Doom WAD as MIDI files ``<out_dir>/<LUMP>.mid``.

    A WAD starts with ``IWAD`` or ``PWAD``, its number of lumps and the offset of
    its directory (little-endian 32-bit integers); the directory holds 16 bytes
    per lump: offset, size and an 8-byte name. Music lumps are named ``D_*``: a
    MIDI lump (``MThd``) is written as it is, a DMX MUS lump (``MUS\\x1a``)
    converted (:func:`mus_to_midi`); others (such as the Ogg music of some
    source ports) are skipped. Where a name occurs twice, the last lump wins, as
    in the game.

    Parameters
    ----------
    wad_path : str or path-like
    out_dir : str or path-like
        Created if needed; each file is written through a temporary file and a rename.

    Returns
    -------
    dict
        ``{lump name: status}`` with status ``'midi'``, ``'mus'`` (converted) or ``'skipped: <reason>'``.

    Raises
    ------
    ConfigError
        If the file is not a WAD or its directory lies outside it.

    Examples
    --------
    >>> extract_wad_music("freedoom2.wad", "music/freedoom2")  # doctest: +SKIP
    {'D_RUNNIN': 'midi', 'D_STALKS': 'midi', ...}
    """
    data = Path(wad_path).read_bytes()
    if len(data) < 12 or data[:4] not in (b"IWAD", b"PWAD"):
        raise ConfigError(f"{wad_path}: not a Doom WAD (no IWAD or PWAD header).")
    count, directory = struct.unpack_from("<ii", data, 4)
    if count < 0 or directory < 12 or directory + 16 * count > len(data):
        raise ConfigError(f"{wad_path}: its lump directory lies outside the file (a truncated WAD?).")
    lumps = {}
    for index in range(count):
        offset, size, raw = struct.unpack_from("<ii8s", data, directory + 16 * index)
        name = raw.split(b"\0", 1)[0].decode("ascii", "replace").upper()
        if name.startswith("D_"):
            lumps[name] = (offset, size)
    report = {}
    for name, (offset, size) in lumps.items():
        if offset < 0 or size < 0 or offset + size > len(data):
            report[name] = "skipped: the lump lies outside the file"
            continue
        lump = data[offset:offset + size]
        target = Path(out_dir) / f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.mid"
        try:
            if lump[:4] == b"MThd":
                with atomic_path(target) as tmp:
                    tmp.write_bytes(lump)
                report[name] = "midi"
            elif lump[:4] == _MUS_MAGIC:
                midi = mus_to_midi(lump)
                with atomic_path(target) as tmp:
                    midi.save(str(tmp))
                report[name] = "mus"
            else:
                report[name] = f"skipped: neither MIDI nor MUS (starts with {lump[:4]!r})"
        except ValueError as err:
            report[name] = f"skipped: {err}"
    return report


def mus_to_midi(data: bytes):
    """A type-0 MIDI file from a DMX MUS lump, the music format of Doom.

    MUS counts 140 ticks per second (here 70 ticks per quarter note at 120 quarter
    notes per minute). Its channel 15 is percussion (MIDI channel 10) and its
    channels 9-14 move up one to make room; a note without a volume takes the
    channel's last (127 at first); controllers map to their MIDI numbers.

    Parameters
    ----------
    data : bytes
        The lump: a 16-byte header (``MUS\\x1a``, score length and start, channel
        and instrument counts), the instrument list, then the events.

    Returns
    -------
    mido.MidiFile

    Raises
    ------
    ValueError
        If ``data`` is not MUS, is truncated or holds an unknown event.

    Examples
    --------
    >>> events = bytes([0x90, 0x80 | 60, 100, 70, 0x00, 60, 0x60])  # play C4 at volume 100, wait 70 ticks, release
    >>> midi = mus_to_midi(b"MUS\\x1a" + struct.pack("<6H", len(events), 16, 1, 0, 0, 0) + events)
    >>> [(m.type, m.note, m.time) for m in midi.tracks[0] if m.type.startswith("note")], midi.length
    ([('note_on', 60, 0), ('note_off', 60, 70)], 0.5)
    """
    import mido

    if data[:4] != _MUS_MAGIC or len(data) < 16:
        raise ValueError("not a MUS lump (no MUS header)")
    stream = iter(data[struct.unpack_from("<H", data, 6)[0]:])
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)])
    volumes, delay = [127] * 16, 0
    try:
        while True:
            descriptor = next(stream)
            kind, channel = descriptor >> 4 & 7, _MUS_CHANNELS[descriptor & 15]
            if kind == 6:  # end of the score
                break
            message = _mus_message(kind, channel, stream, volumes)
            if message is not None:
                track.append(message.copy(time=delay))
                delay = 0
            if descriptor & 0x80:  # a delay follows: a variable-length number of ticks, 7 bits a byte
                byte = next(stream)
                ticks = byte & 0x7F
                while byte & 0x80:
                    byte = next(stream)
                    ticks = ticks * 128 + (byte & 0x7F)
                delay += ticks
    except StopIteration:
        raise ValueError("truncated MUS lump (no end of score)") from None
    track.append(mido.MetaMessage("end_of_track", time=delay))
    midi = mido.MidiFile(type=0, ticks_per_beat=70)
    midi.tracks.append(track)
    return midi


def build_midi_corpus(source_root: str | os.PathLike, out_dir: str | os.PathLike, *,
                      soundfonts: Sequence[str | os.PathLike] | None = None, seed: int = 0, workers: int = 2,
                      max_seconds: float = 180.0, min_seconds: float = 30.0,
                      package_list: str | os.PathLike | None = None):
    """Render the MIDI pieces of the ``midi`` packages of the package list and write ``midi.csv``.

    For each ``midi`` row of the package list (in its order), the music of the
    package's WADs is extracted first (:func:`extract_wad_music`, into
    ``<package>/music/<wad name>/``); then every MIDI file under the row's music
    folders (:func:`~.debian.music_folders`) is a piece, unless it is
    byte-identical to an earlier one. Each piece keeps its own programs, drums and
    tempi and is rendered with one soundfont drawn from ``soundfonts`` by the
    generator of :func:`~.renders.piece_generator`, seeded by ``seed`` and the
    piece's path in its package only (not its package, nor the order of
    rendering), to ``<out_dir>/midi/<package>/<name>.flac`` (:func:`~.renders.render_midi`:
    22,050 Hz, 16-bit stereo FLAC, at most ``max_seconds``, trailing silence
    trimmed, peak at -1 dBFS).

    Rendering runs in ``workers`` processes and is resumable: each piece writes a
    ``.json`` record beside its FLAC (soundfont, ``duration``, ``midi_seconds``
    the length of the whole MIDI file, ``capped`` whether it was cut at
    ``max_seconds``, or the ``error``), and pieces with a record are not rendered
    again, failed ones included. Pieces that fail or render shorter than
    ``min_seconds``, duplicates, skipped WAD lumps and packages or folders not
    found are listed with the reason in ``midi-skipped.csv``.

    Parameters
    ----------
    source_root : str or path-like
        The ``x/`` folder of :func:`~.debian.fetch_packages` (one extraction per package).
    out_dir : str or path-like
        The corpus folder.
    soundfonts : sequence of str or path-like, optional
        General MIDI SoundFonts; default :data:`~.renders.GM_SOUNDFONTS` (FluidR3_GM, TimGM6mb, MuseScore General).
    seed : int
        Seed of the soundfont draws.
    workers : int
        Rendering processes.
    max_seconds, min_seconds : float
        Longest audio rendered per piece (looping tunes are cut there); shortest accepted.
    package_list : str or path-like, optional
        Default :data:`~.debian.PACKAGE_LIST`.

    Returns
    -------
    pandas.DataFrame
        One row per rendered piece: ``track_id`` (``midi/<package>/<name>``, the name
        being the path under the music folders without extension), ``path`` (the
        FLAC), the :data:`METADATA_COLUMNS` (``corpus`` ``'midi'``, ``soundtrack`` the
        package, ``composer``, ``style`` and ``title`` empty, ``program`` -1,
        ``bpm_label`` NaN, ``duration`` of the audio, ``licence`` the package list's,
        ``group`` ``<package>/<name>``), then ``soundfont`` (its file name) and
        ``sha256`` (of the MIDI file).

    Raises
    ------
    ConfigError
        If ``source_root`` is not a folder, the package list names a reserved
        package, or FluidSynth, a soundfont or mido is missing.

    Examples
    --------
    >>> table = build_midi_corpus("~/open-music-midi/x", "corpus", max_seconds=180)  # doctest: +SKIP
    >>> table.groupby("soundfont")["duration"].sum() / 60  # doctest: +SKIP
    """
    import pandas as pd

    root = Path(source_root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder of extracted packages; run fetch_packages first.")
    listed = read_package_list(package_list, kinds=("midi",))
    fonts = check_render_tools(GM_SOUNDFONTS if soundfonts is None else soundfonts, modules=("mido",))
    out = Path(out_dir).expanduser()
    jobs, skipped, seen = [], [], {}
    for entry in listed.itertuples(index=False):
        package_root = root / entry.package
        if not package_root.is_dir():
            skipped.append((entry.package, "", f"not extracted under {root}: run fetch_packages"))
            continue
        skipped.extend((entry.package, lump, reason) for lump, reason in _unpack_wads(package_root))
        folders = music_folders(package_root, entry.folder)
        if not folders:
            skipped.append((entry.package, "", f"music folder {entry.folder!r} not found in the package"))
            continue
        files = sorted({p for f in folders for p in f.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES})
        base = Path(os.path.commonpath(folders))
        for path in files:
            digest = file_sha256(path)
            if digest in seen:
                skipped.append((entry.package, str(path.resolve()), f"byte-identical to {seen[digest]}"))
                continue
            name = path.relative_to(base).with_suffix("").as_posix()
            if f"{entry.package}/{name}" in seen.values():
                name = path.relative_to(base).as_posix()
            seen[digest] = f"{entry.package}/{name}"
            soundfont = draw_soundfont(piece_generator(seed, path.relative_to(package_root).as_posix()), fonts)
            jobs.append(dict(source=str(path.resolve()), flac=str(out / "midi" / entry.package / f"{name}.flac"),
                             package=entry.package, name=name, licence=entry.licence, sha256=digest,
                             soundfont=str(soundfont), max_seconds=float(max_seconds),
                             min_seconds=float(min_seconds)))
    rows = []
    for job, record in zip(jobs, render_pieces(jobs, _render_job, workers, "midi")):
        if record["status"] != "ok":
            skipped.append((job["package"], job["source"], record["error"]))
            continue
        rows.append({
            "track_id": f"midi/{job['package']}/{job['name']}", "path": str(Path(job["flac"]).resolve()),
            "corpus": "midi", "soundtrack": job["package"], "composer": "", "style": "", "program": -1,
            "bpm_label": math.nan, "duration": record["duration"], "licence": job["licence"], "title": "",
            "group": f"{job['package']}/{job['name']}", "soundfont": record["soundfont"], "sha256": job["sha256"],
        })
    table = pd.DataFrame(rows, columns=["track_id", "path", *METADATA_COLUMNS[1:], "soundfont", "sha256"])
    out.mkdir(parents=True, exist_ok=True)
    write_table(table, out / "midi.csv")
    write_table(pd.DataFrame(skipped, columns=["package", "path", "reason"]), out / "midi-skipped.csv")
    logger.info("%d MIDI pieces, %.0f minutes, %d left out", len(table), table["duration"].sum() / 60, len(skipped))
    return table


def _mus_message(kind: int, channel: int, stream: Iterator[int], volumes: list[int]):
    """The MIDI message of one MUS event (None for an end of measure), reading its data bytes from ``stream``."""
    import mido

    if kind == 0:
        return mido.Message("note_off", channel=channel, note=next(stream) & 0x7F, velocity=0)
    if kind == 1:
        note = next(stream)
        if note & 0x80:
            volumes[channel] = next(stream) & 0x7F
        return mido.Message("note_on", channel=channel, note=note & 0x7F, velocity=volumes[channel])
    if kind == 2:
        return mido.Message("pitchwheel", channel=channel, pitch=next(stream) * 64 - 8192)
    if kind in (3, 4):
        number = next(stream)
        value = min(next(stream), 127) if kind == 4 else 0
        if kind == 4 and number == 0:
            return mido.Message("program_change", channel=channel, program=value)
        if number not in _MUS_CONTROLLERS:
            raise ValueError(f"unknown MUS controller {number}")
        return mido.Message("control_change", channel=channel, control=_MUS_CONTROLLERS[number], value=value)
    if kind == 5:
        return None
    raise ValueError(f"unknown MUS event type {kind}")


def _unpack_wads(package_root: Path) -> list[tuple[str, str]]:
    """Extract the music of every WAD of a package into ``music/<wad name>/``; the lumps skipped, with why."""
    skipped = []
    for wad in sorted(p for p in package_root.rglob("*") if p.suffix.lower() == ".wad" and p.is_file()):
        report = extract_wad_music(wad, package_root / WAD_MUSIC_FOLDER / wad.stem)
        skipped.extend((f"{wad.resolve()}:{lump}", status.removeprefix("skipped: "))
                       for lump, status in report.items() if status.startswith("skipped"))
    return skipped


def _render_job(job: dict) -> dict:
    record = {"source": job["source"], "sha256": job["sha256"], "soundfont": Path(job["soundfont"]).name,
              "max_seconds": job["max_seconds"]}
    return record_render(job["flac"], record, lambda: _render_piece(job), job["min_seconds"])


def _render_piece(job: dict) -> dict:
    seconds = read_midi(job["source"]).length
    rendered = render_midi(job["source"], job["flac"], soundfont=job["soundfont"], max_seconds=job["max_seconds"])
    return {"duration": rendered["duration"], "midi_seconds": round(seconds, 3),
            "capped": seconds > job["max_seconds"]}
