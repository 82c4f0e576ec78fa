"""An open training corpus: Debian game soundtracks plus music21 scores rendered with FluidSynth.

The study's training data (Million Song Dataset previews with Last.fm, Echo Nest,
musiXmatch and CDR targets) cannot be had here, so the project's own models are
trained on real music that any Debian machine can install. The recipe has four
steps, each resumable and each writing into one corpus folder:

1. :func:`build_soundtrack_corpus` lists the music of eight Debian soundtrack
   packages (recorded, produced audio; GPL, CC-BY and CC-BY-SA licences) with
   their soundtrack, composer (Vorbis tags), duration and licence (the
   package's ``debian/copyright``). The audio stays where the packages put it.
2. :func:`build_music21_corpus` renders pieces of five styles of the music21
   corpus (Bach chorales, Palestrina, Monteverdi madrigals, Trecento, Classical
   string quartets) with FluidSynth, one General MIDI program per piece drawn
   independently of the style and a tempo drawn independently of the style.
3. :func:`build_manifest` splits both into train / valid / test by track or
   work (never by slice), stratified by soundtrack or style.
4. :func:`compute_audio_descriptors` computes algorithm-derived descriptors of
   every track and :func:`compute_opencorpus_targets` turns them, and the
   composer labels, into the learning targets of :mod:`mtlmusic_training.targets`.

:func:`build_open_corpus` runs all four. Getting the soundtrack packages takes
no installation of the games (about 960 minutes of music)::

    apt-get update
    mkdir -p ~/open-music && cd ~/open-music
    apt-get download warzone2100-music ufoai-music planetblupi-music-ogg wesnoth-1.16-music \\
        nexuiz-music singularity-music hyperrogue-music asc-music
    for f in *.deb; do dpkg -x "$f" "x/${f%%_*}"; done
    find x -name '*.pk3' -execdir unzip -oq {} \\;

Rendering needs ``apt-get install fluidsynth fluid-soundfont-gm`` and
``pip install music21 mido``.

Learning sources (see :data:`OPEN_SOURCES` and :func:`compute_opencorpus_targets`)
    ``self`` (no stored targets), ``bpm`` (beat-tracked tempo, the study's Gaussian
    mixture), ``onset`` (onset rate, Gaussian mixture), ``chroma`` (pLSA of a
    histogram of local keys), ``tempogram`` (pLSA of a tempogram histogram) and
    ``composer`` (label distribution of the Wesnoth composers). ``soundtrack`` and
    ``style`` are the held-out evaluation labels and are not training sources
    unless asked for explicitly.

Examples
--------
>>> from mtlmusic_training.opencorpus import STYLES, split_tracks
>>> STYLES
('bach', 'palestrina', 'monteverdi', 'trecento', 'quartet')
>>> import pandas as pd
>>> table = pd.DataFrame({"track_id": list("abcdefghij"), "group": list("abcdefghij"), "stratum": ["x"] * 10})
>>> split_tracks(table, seed=0).value_counts().to_dict()
{'train': 7, 'test': 2, 'valid': 1}
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtlmusic.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, audio_info, stream_audio
from mtlmusic.errors import AudioError, ConfigError
from mtlmusic.files import atomic_path

from .targets import SourceSpec, Targets, compute_targets, get_source, register_source, save_targets, targets_path

logger = logging.getLogger(__name__)

#: The Debian packages of the soundtrack corpus (each package is one soundtrack class).
SOUNDTRACK_PACKAGES = ("warzone2100-music", "ufoai-music", "planetblupi-music-ogg", "wesnoth-1.16-music",
                       "nexuiz-music", "singularity-music", "hyperrogue-music", "asc-music")
#: Style classes of the rendered music21 corpus.
STYLES = ("bach", "palestrina", "monteverdi", "trecento", "quartet")
#: General MIDI programs drawn for rendered pieces: pianos to synth pads (0-95); sound
#: effects, percussive and ethnic programs are left out.
DEFAULT_PROGRAMS = tuple(range(96))
#: Range of the tempo (quarter notes per minute) drawn for each rendered piece, log-uniformly.
BPM_RANGE = (60.0, 180.0)
#: The FluidR3 General MIDI soundfont of Debian's ``fluid-soundfont-gm`` (MIT licence).
DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
#: Split names and their default fractions of each stratum's groups.
SPLITS = ("train", "valid", "test")
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
#: Columns of ``metadata.csv``.
METADATA_COLUMNS = ("track_id", "corpus", "soundtrack", "composer", "style", "program", "bpm_label",
                    "duration", "licence", "title", "group")
#: Licence of the rendered pieces.
MUSIC21_LICENCE = "music21 corpus encodings (see music21/corpus/license.txt); FluidR3_GM soundfont (MIT)"
#: Soundtracks whose composer tags make the ``composer`` source (the others have one composer each, or
#: composers that would just name the soundtrack).
COMPOSER_SOUNDTRACKS = ("wesnoth-1.16-music",)
#: Sources that :func:`compute_opencorpus_targets` computes by default. ``soundtrack`` and ``style`` are
#: the held-out evaluation labels: training on them would leak the evaluation tasks.
DEFAULT_TARGET_SOURCES = ("bpm", "onset", "chroma", "tempogram", "composer")
#: Metadata sources whose targets are label distributions.
LABEL_SOURCES = ("composer", "soundtrack", "style")
#: Label smoothing of the metadata sources: the true class gets ``1 - s``, the others share ``s``.
LABEL_SMOOTHING = 0.1

#: Audio analysed per track by :func:`compute_audio_descriptors`, in seconds.
ANALYSIS_SECONDS = 60.0
#: Hop of the descriptor analysis, in samples at 22,050 Hz.
HOP_LENGTH = 512
#: Length of the windows of the local-key histogram, in seconds.
KEY_WINDOW_SECONDS = 5.0
#: Edges of the tempogram histogram: 20 bins, 6 per octave, from 30 to about 302 BPM.
TEMPO_EDGES = 30.0 * 2.0 ** (np.arange(21) / 6.0)
#: Version of the descriptor analysis; cached results of another version are recomputed.
DESCRIPTOR_VERSION = 1

# Krumhansl-Kessler key profiles (C major, C minor).
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
#: Names of the 24 keys, in the column order of the local-key histogram.
KEY_NAMES = tuple(f"{p} {mode}" for mode in ("major", "minor")
                  for p in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"))

#: The learning sources of the open corpus besides the study's ``self`` and ``bpm``.
OPEN_SOURCES = {
    "onset": SourceSpec("onset", "gmm", description="onsets per second in the first minute (librosa)"),
    "chroma": SourceSpec("chroma", "plsa", 12, description="histogram over 24 keys of 5 s windows "
                                                           "(CQT chroma matched to Krumhansl-Kessler profiles)"),
    "tempogram": SourceSpec("tempogram", "plsa", 12, description="mean autocorrelation tempogram in 20 "
                                                                 "log-spaced tempo bins, 30-302 BPM"),
}

_AUDIO_SUFFIXES = frozenset(AUDIO_EXTENSIONS)
# Score formats in order of preference where the corpus holds one piece in several.
_SCORE_PREFERENCE = (".mxl", ".xml", ".krn")
_QUARTET_WORKS = re.compile(r"(beethoven/opus[^/]+(/[^/]+)?|mozart/k(80|155|156|458)/[^/]+|haydn/opus[^/]+/[^/]+)")


@dataclass(frozen=True)
class Descriptors:
    """Algorithm-derived descriptors of a corpus, one row per manifest track.

    Attributes
    ----------
    track_ids : ndarray of str, shape (n,)
    tempo : ndarray, shape (n,)
        Beat-tracked tempo in BPM (``librosa.beat.beat_track``); 0 where no beat was found.
    onset_rate : ndarray, shape (n,)
        Detected onsets per second.
    chroma : ndarray, shape (n, 12)
        Mean CQT chroma (C to B).
    key_counts : ndarray, shape (n, 24)
        Number of 5 s windows whose chroma correlates best with each key of :data:`KEY_NAMES`.
    tempogram : ndarray, shape (n, 20)
        Mean autocorrelation tempogram of the mean-removed onset envelope, averaged
        within the bins of :data:`TEMPO_EDGES`, negative values clipped, rows summing
        to 1 (0 for silence).
    seconds : ndarray, shape (n,)
        Audio analysed (at most :data:`ANALYSIS_SECONDS`); NaN where the track failed.
    n_computed : int
        Tracks analysed by this call (the others came from the cache).
    """

    track_ids: np.ndarray
    tempo: np.ndarray
    onset_rate: np.ndarray
    chroma: np.ndarray
    key_counts: np.ndarray
    tempogram: np.ndarray
    seconds: np.ndarray
    n_computed: int = 0


# --------------------------------------------------------------------------- soundtracks


def build_soundtrack_corpus(source_root: str | os.PathLike, out_dir: str | os.PathLike, *,
                            min_seconds: float = 30.0, packages: Sequence[str] | None = None):
    """List the tracks of extracted Debian soundtrack packages and write ``soundtracks.csv``.

    Every audio file of at least ``min_seconds`` under ``<source_root>/<package>/``
    becomes a track. The audio is not copied: the table holds absolute paths.

    Parameters
    ----------
    source_root : str or path-like
        A folder with one ``dpkg -x`` extraction per package (``x/`` in the module's
        recipe), ``.pk3`` archives already unzipped.
    out_dir : str or path-like
        The corpus folder; ``soundtracks.csv`` is written there.
    min_seconds : float
        Shorter files (sound effects, jingles) are left out.
    packages : sequence of str, optional
        Package folders to scan; default: every sub-folder of ``source_root``.

    Returns
    -------
    pandas.DataFrame
        One row per track, with the columns of :data:`METADATA_COLUMNS` and ``path``:
        ``soundtrack`` is the package name, ``composer`` the ``COMPOSER`` Vorbis/ID3
        tag (else ``ARTIST``), ``licence`` the licence that the package's
        ``copyright`` file gives for the file, ``group`` the track itself.

    Examples
    --------
    >>> table = build_soundtrack_corpus("~/open-music/x", "corpus")  # doctest: +SKIP
    >>> table.groupby("soundtrack").size()["wesnoth-1.16-music"]  # doctest: +SKIP
    35
    """
    import pandas as pd

    root = Path(source_root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder of extracted packages; see the recipe in "
                          "mtlmusic_training.opencorpus.")
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if packages is None else list(packages)
    rows = []
    for package in names:
        folder = root / package
        if not folder.is_dir():
            raise ConfigError(f"{folder}: no such package folder.")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _AUDIO_SUFFIXES)
        if not files:
            logger.warning("%s: no audio files", package)
            continue
        base = Path(os.path.commonpath([f.parent for f in files]))
        copyright_file = folder / "usr" / "share" / "doc" / package / "copyright"
        copyright_text = copyright_file.read_text(errors="replace") if copyright_file.exists() else ""
        for path in files:
            try:
                duration = audio_info(path).duration
            except AudioError as err:
                logger.warning("skipping %s: %s", path, err)
                continue
            if not duration >= min_seconds:
                continue
            tags = _read_tags(path)
            relative = path.relative_to(folder).as_posix()
            rows.append({
                "track_id": f"{package}/{path.relative_to(base).with_suffix('').as_posix()}",
                "path": str(path.resolve()),
                "corpus": "soundtrack",
                "soundtrack": package,
                "composer": _composer(tags),
                "style": "",
                "program": -1,
                "bpm_label": math.nan,
                "duration": round(float(duration), 3),
                "licence": licence_for(copyright_text, relative),
                "title": tags.get("title", ""),
                "group": "",
            })
    table = pd.DataFrame(rows, columns=["track_id", "path", *METADATA_COLUMNS[1:]])
    table["group"] = table["track_id"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(table, out / "soundtracks.csv")
    logger.info("%d soundtrack tracks, %.0f minutes", len(table), table["duration"].sum() / 60)
    return table


def licence_for(copyright_text: str, relative_path: str) -> str:
    """The licence that a Debian ``copyright`` file gives for one installed file.

    Machine-readable files (DEP-5) are matched stanza by stanza: the last ``Files:``
    stanza with a pattern matching the end of ``relative_path`` wins, as in DEP-5.
    Free-form files are recognised by their wording: Creative Commons
    Attribution-ShareAlike (with its version) or the GNU GPL (``GPL-2+`` when "any
    later version" is offered). Otherwise ``'unknown'``.

    Parameters
    ----------
    copyright_text : str
        The text of ``usr/share/doc/<package>/copyright``.
    relative_path : str
        The file's path inside the package, e.g. ``usr/share/games/ufoai/base/music/dawn.ogg``.

    Returns
    -------
    str
        A Debian/SPDX-style short name such as ``'GPL-2+'`` or ``'CC-BY-SA-3.0'``.

    Examples
    --------
    >>> text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\\n\\n"
    >>> text += "Files: *\\nLicense: GPL-2+\\n\\nFiles:\\n base/music/a.ogg\\nLicense: CC-BY-SA-3.0\\n"
    >>> licence_for(text, "usr/share/games/x/base/music/a.ogg"), licence_for(text, "usr/share/x/b.ogg")
    ('CC-BY-SA-3.0', 'GPL-2+')
    >>> licence_for("Attribution-ShareAlike 3.0 ... Creative Commons", "a.ogg")
    'CC-BY-SA-3.0'
    """
    if "copyright-format" in copyright_text and "Files:" in copyright_text:
        licence = None
        for stanza in re.split(r"\n\s*\n", copyright_text):
            fields = _dep5_fields(stanza)
            if "files" not in fields or "license" not in fields:
                continue
            name = fields["license"].splitlines()[0].strip() if fields["license"].strip() else ""
            if any(fnmatch.fnmatchcase(relative_path, pattern) or fnmatch.fnmatchcase(relative_path, "*/" + pattern)
                   for pattern in fields["files"].split()):
                licence = name or licence
        if licence:
            return licence
    lowered = copyright_text.lower()
    if "creative commons" in lowered and "sharealike" in lowered.replace("-", "").replace(" ", ""):
        version = re.search(r"attribution-sharealike\s+(\d\.\d)", lowered)
        return f"CC-BY-SA-{version.group(1) if version else '3.0'}"
    if "gnu general public license" in lowered:
        version = re.search(r"general public license[^.]*?version\s+(\d)", lowered, flags=re.S)
        number = version.group(1) if version else "2"
        return f"GPL-{number}+" if "any later version" in lowered else f"GPL-{number}"
    return "unknown"


def _dep5_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in stanza.splitlines():
        if line[:1].isspace() and key is not None:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


def _read_tags(path: Path) -> dict[str, str]:
    """Lower-cased container and stream tags read with ffprobe (empty when ffprobe is missing or fails)."""
    if shutil.which("ffprobe") is None:
        return {}
    result = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags:stream_tags", "-of", "json",
                             str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        return {}
    data = json.loads(result.stdout or "{}")
    tags: dict[str, str] = {}
    for holder in [data.get("format", {}), *data.get("streams", [])]:
        for key, value in (holder.get("tags") or {}).items():
            tags.setdefault(key.lower(), str(value).strip())
    return tags


def _composer(tags: Mapping[str, str]) -> str:
    for key in ("composer", "artist"):
        value = tags.get(key, "")
        if value and not value.startswith(("<", "www.", "http")):
            return value
    return ""


# --------------------------------------------------------------------------- music21 renders


def music21_candidates(style: str) -> list[str]:
    """Corpus paths (relative to music21's corpus folder) of the pieces of one style, sorted.

    ``bach``: the chorales (``bach/bwvN.M*`` and BWV 250-438); ``palestrina``: the mass
    movements; ``monteverdi``: the madrigals (MusicXML); ``trecento``: the Trecento
    collection; ``quartet``: the string quartets of Beethoven, Mozart and Haydn
    (MusicXML; the Humdrum duplicates and Mozart's piano sonata are left out). Where
    one piece exists in several formats, one file is kept (MusicXML first).

    Examples
    --------
    >>> len(music21_candidates("monteverdi")) > 40  # doctest: +SKIP
    True
    """
    from music21 import corpus

    if style not in STYLES:
        raise ConfigError(f"Unknown style {style!r}; choose one of {', '.join(STYLES)}.")
    if style == "quartet":
        paths = [p for composer in ("beethoven", "mozart", "haydn") for p in corpus.getComposer(composer)]
    else:
        paths = corpus.getComposer(style)
    keep = {
        "bach": lambda rel, suffix: suffix in (".mxl", ".xml") and _is_bach_chorale(rel),
        "palestrina": lambda rel, suffix: suffix == ".krn",
        "monteverdi": lambda rel, suffix: suffix == ".mxl",
        "trecento": lambda rel, suffix: suffix in (".xml", ".mxl"),
        "quartet": lambda rel, suffix: suffix in (".mxl", ".xml") and _QUARTET_WORKS.fullmatch(rel),
    }[style]
    chosen: dict[str, str] = {}
    for rel in sorted(_corpus_relative(Path(p)) for p in paths):
        stem, suffix = rel.rsplit(".", 1)
        suffix = "." + suffix.lower()
        if keep(stem, suffix) and (stem not in chosen or _SCORE_PREFERENCE.index(suffix) <
                                   _SCORE_PREFERENCE.index("." + chosen[stem].rsplit(".", 1)[-1].lower())):
            chosen[stem] = rel
    return sorted(chosen.values())


def _is_bach_chorale(stem: str) -> bool:
    """Cantata and passion chorales (``bwvN.M``) and the four-part chorales BWV 250-438."""
    match = re.fullmatch(r"bach/bwv(\d+)(\.\d+)?.*", stem)
    return bool(match) and (match.group(2) is not None or 250 <= int(match.group(1)) <= 438)


def _corpus_relative(path: Path) -> str:
    parts = path.as_posix().split("/corpus/", 1)
    return parts[-1]


def _music21_work(relative: str) -> str:
    """The work a corpus file belongs to: a quartet's folder for its movements, else the file itself."""
    stem = relative.rsplit(".", 1)[0]
    folder, _, name = stem.rpartition("/")
    return folder if re.fullmatch(r"movement\d+.*", name) else stem


def build_music21_corpus(out_dir: str | os.PathLike, per_style: int = 100, *, seed: int = 0, workers: int = 2,
                         styles: Sequence[str] = STYLES, max_seconds: float = 60.0, min_seconds: float = 15.0,
                         programs: Sequence[int] = DEFAULT_PROGRAMS, bpm_range: tuple[float, float] = BPM_RANGE,
                         soundfont: str | os.PathLike = DEFAULT_SOUNDFONT):
    """Render music21 corpus pieces of five styles to FLAC and write ``music21.csv``.

    For each style, ``per_style`` pieces are drawn (seeded) from
    :func:`music21_candidates`. Each piece is parsed with music21, cut to the
    measures needed for ``max_seconds``, exported to MIDI, and rewritten with mido:
    every program change is replaced by one General MIDI program drawn from
    ``programs``, and every tempo is scaled so that the piece starts at a tempo
    drawn log-uniformly from ``bpm_range``. Program and tempo come from a random
    generator seeded by ``seed`` and the piece's path only, so they are independent
    of the style and of the order of rendering. FluidSynth renders at 22,050 Hz;
    the audio is cut to ``max_seconds``, its trailing silence trimmed, its peak
    normalised to -1 dBFS, and written as 16-bit stereo FLAC.

    Rendering runs in ``workers`` processes and is resumable: each piece writes
    ``<out_dir>/music21/<style>/<name>.flac`` and a ``.json`` record (through a
    temporary file and a rename), and pieces with a record are skipped. A piece that
    fails or renders shorter than ``min_seconds`` gets a record with its error and is
    left out of the table (and not retried).

    Parameters
    ----------
    out_dir : str or path-like
        The corpus folder.
    per_style : int
        Pieces drawn per style (all of them where a style has fewer). The default
        (about 400 pieces, 6 hours of audio) renders in about 10 minutes on two cores.
    seed : int
        Seed of the choice of pieces, programs and tempi.
    workers : int
        Rendering processes.
    styles : sequence of str
        Subset of :data:`STYLES`.
    max_seconds, min_seconds : float
        Longest audio kept per piece; shortest accepted.
    programs : sequence of int
        General MIDI programs (0-127) to draw from.
    bpm_range : (float, float)
        Range of the drawn starting tempo, in quarter notes per minute.
    soundfont : str or path-like
        A General MIDI SoundFont.

    Returns
    -------
    pandas.DataFrame
        The rendered pieces with ``path`` and the columns of :data:`METADATA_COLUMNS`:
        ``style``, ``composer`` (the corpus folder; the score's for Trecento), ``program``,
        ``bpm_label`` (the mean tempo of the rendered excerpt in quarter notes per
        minute), ``duration`` (seconds of audio) and ``group`` (the work: a quartet's
        movements form one group).

    Examples
    --------
    >>> table = build_music21_corpus("corpus", per_style=2, styles=["bach"], max_seconds=10)  # doctest: +SKIP
    >>> table[["style", "program", "bpm_label"]].shape  # doctest: +SKIP
    (2, 3)
    """
    import pandas as pd

    _check_render_tools(soundfont)
    if per_style < 1:
        raise ConfigError(f"per_style must be at least 1, got {per_style}.")
    unknown = set(styles) - set(STYLES)
    if unknown:
        raise ConfigError(f"Unknown styles {sorted(unknown)}; choose from {', '.join(STYLES)}.")
    programs = [int(p) for p in programs]
    if not programs or min(programs) < 0 or max(programs) > 127:
        raise ConfigError("programs must be General MIDI program numbers 0-127.")
    low, high = (float(b) for b in bpm_range)
    if not 0 < low <= high:
        raise ConfigError(f"bpm_range must be an increasing pair of positive tempi, got {bpm_range}.")
    out = Path(out_dir)
    jobs = []
    for style in styles:
        candidates = music21_candidates(style)
        order = np.random.default_rng([seed, zlib.crc32(style.encode())]).permutation(len(candidates))
        for index in sorted(order[:per_style]):
            relative = candidates[index]
            rng = np.random.default_rng([seed, zlib.crc32(relative.encode())])
            program = programs[int(rng.integers(len(programs)))]
            bpm = float(np.exp(rng.uniform(np.log(low), np.log(high))))
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", relative.rsplit(".", 1)[0])
            flac = out / "music21" / style / f"{name}.flac"
            jobs.append(dict(relative=relative, style=style, flac=str(flac), program=program, bpm=bpm,
                             max_seconds=float(max_seconds), min_seconds=float(min_seconds),
                             soundfont=str(soundfont)))
    todo = [job for job in jobs if not Path(job["flac"]).with_suffix(".json").exists()]
    logger.info("music21: %d pieces, %d to render", len(jobs), len(todo))
    started = time.perf_counter()
    for done, record in enumerate(_map(_render_job, todo, workers), 1):
        if record["status"] != "ok":
            logger.warning("music21: %s failed: %s", record["relative"], record["error"])
        if done % 25 == 0:
            logger.info("music21: %d / %d rendered (%.0f s)", done, len(todo), time.perf_counter() - started)
    rows = []
    for job in jobs:
        record = json.loads(Path(job["flac"]).with_suffix(".json").read_text())
        if record["status"] != "ok":
            continue
        rows.append({
            "track_id": f"music21/{job['relative'].rsplit('.', 1)[0]}",
            "path": str(Path(job["flac"]).resolve()),
            "corpus": "music21",
            "soundtrack": "",
            "composer": record["composer"],
            "style": job["style"],
            "program": record["program"],
            "bpm_label": record["bpm_label"],
            "duration": record["duration"],
            "licence": MUSIC21_LICENCE,
            "title": record["title"],
            "group": f"music21/{_music21_work(job['relative'])}",
        })
    table = pd.DataFrame(rows, columns=["track_id", "path", *METADATA_COLUMNS[1:]])
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(table, out / "music21.csv")
    return table


def render_score(relative: str, out_path: str | os.PathLike, *, program: int, bpm: float,
                 max_seconds: float = 60.0, soundfont: str | os.PathLike = DEFAULT_SOUNDFONT) -> dict:
    """Render one music21 corpus piece with one General MIDI program at a given starting tempo.

    Parameters
    ----------
    relative : str
        Corpus path, e.g. ``'bach/bwv1.6.mxl'``.
    out_path : str or path-like
        The FLAC file to write (16-bit stereo, 22,050 Hz), through a temporary
        file and a rename.
    program : int
        General MIDI program (0-127) of every part.
    bpm : float
        Starting tempo in quarter notes per minute; later tempo changes keep their
        ratio to the first.
    max_seconds : float
        Longest audio kept.
    soundfont : str or path-like
        A General MIDI SoundFont.

    Returns
    -------
    dict
        ``duration`` (seconds of audio), ``bpm_label`` (mean tempo of the rendered
        excerpt, quarter notes per minute), ``program``, ``composer``, ``title``.

    Examples
    --------
    >>> render_score("bach/bwv1.6.mxl", "bwv1.6.flac", program=0, bpm=90, max_seconds=10)  # doctest: +SKIP
    {'duration': 10.0, 'bpm_label': 90.0, 'program': 0, 'composer': 'bach', 'title': '...'}
    """
    import soundfile as sf

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="render-") as scratch:
        scratch = Path(scratch)
        score, title, composer = _parse_excerpt(relative, max_seconds, bpm)
        _write_midi(score, scratch / "score.mid")
        bpm_label = _rewrite_midi(scratch / "score.mid", scratch / "render.mid", program=program, bpm=bpm,
                                  max_seconds=max_seconds)
        wav = scratch / "render.wav"
        result = subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(SAMPLE_RATE), "-O", "float",
                                 "-T", "wav", "-F", str(wav), str(soundfont), str(scratch / "render.mid")],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or not wav.exists():
            raise RuntimeError(f"fluidsynth failed: {(result.stderr or result.stdout).strip()[-300:]}")
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz instead of {SAMPLE_RATE} Hz.")
    audio = audio[:int(round(max_seconds * SAMPLE_RATE))]
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > 1e-3)
    audio = audio[:loud[-1] + 1] if loud.size else audio[:0]
    if audio.size:
        audio = audio * (10 ** (-1 / 20) / np.abs(audio).max())
    with atomic_path(out_path) as tmp:
        sf.write(str(tmp), audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return {"duration": round(len(audio) / SAMPLE_RATE, 3), "bpm_label": round(bpm_label, 3),
            "program": int(program), "composer": composer, "title": title}


def _check_render_tools(soundfont) -> None:
    if shutil.which("fluidsynth") is None:
        raise ConfigError("fluidsynth is not installed: `apt-get install fluidsynth fluid-soundfont-gm`.")
    if not Path(soundfont).is_file():
        raise ConfigError(f"SoundFont {soundfont} not found: `apt-get install fluid-soundfont-gm`.")
    for module in ("music21", "mido"):
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(f"Rendering needs {module}: `pip install music21 mido`.") from None


def _render_job(job: dict) -> dict:
    record = {"relative": job["relative"], "style": job["style"], "program": job["program"],
              "bpm": job["bpm"]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            record.update(render_score(job["relative"], job["flac"], program=job["program"], bpm=job["bpm"],
                                       max_seconds=job["max_seconds"], soundfont=job["soundfont"]))
        if record["duration"] < job["min_seconds"]:
            Path(job["flac"]).unlink(missing_ok=True)
            raise RuntimeError(f"only {record['duration']:.1f} s of audio (minimum {job['min_seconds']:.0f} s)")
        record["status"] = "ok"
    except Exception as err:  # one bad score must not stop a corpus build; the record keeps the error
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
    target = Path(job["flac"]).with_suffix(".json")
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(record, sort_keys=True))
    return record


def _parse_excerpt(relative: str, max_seconds: float, bpm: float):
    """The parsed score cut to the measures that can sound within ``max_seconds`` at the drawn tempo.

    Also returns the title and the composer: the corpus folder (``bach``,
    ``beethoven``, ...), except in the many-composer ``trecento`` folder, where the
    score's metadata name it.
    """
    from music21 import corpus, metadata, stream, tempo

    score = corpus.parse(relative)
    folder = relative.split("/", 1)[0]
    title, composer = "", "" if folder == "trecento" else folder
    if isinstance(score.metadata, metadata.Metadata):
        title = score.metadata.title or score.metadata.movementName or ""
        if folder == "trecento":
            composer = score.metadata.composer or ""
    marks = [m.getQuarterBPM() for m in score.recurse().getElementsByClass(tempo.MetronomeMark)]
    marks = [m for m in marks if m]
    first = marks[0] if marks else 120.0
    fastest = max(marks, default=120.0) * bpm / first
    quarters = (max_seconds + 5.0) * fastest / 60.0
    part = score.parts[0] if score.hasPartLikeStreams() else score
    measures = list(part.getElementsByClass(stream.Measure))
    if measures and measures[-1].offset >= quarters:
        last = next(m.number for m in reversed(measures) if m.offset < quarters)
        score = score.measures(measures[0].number, last)
    return score, str(title), str(composer)


def _write_midi(score, path: Path) -> None:
    """MIDI export; scores whose repeats cannot be expanded (often a cut mid-repeat) are played straight."""
    from music21 import bar, repeat, spanner

    try:
        score.write("midi", fp=str(path))
    except repeat.ExpanderException:
        for barline in list(score.recurse().getElementsByClass(bar.Repeat)):
            measure = barline.activeSite
            if barline is measure.leftBarline:
                measure.leftBarline = None
            else:
                measure.rightBarline = bar.Barline("regular")
        for element in [*score.recurse().getElementsByClass(repeat.RepeatMark),
                        *score.recurse().getElementsByClass(spanner.RepeatBracket)]:
            element.activeSite.remove(element)
        score.write("midi", fp=str(path))


def _rewrite_midi(source: Path, target: Path, *, program: int, bpm: float, max_seconds: float) -> float:
    """One program on every channel, tempi scaled to start at ``bpm``, cut at ``max_seconds``.

    Returns the mean tempo of the kept part in quarter notes per minute.
    """
    import mido

    midi = mido.MidiFile(str(source))
    if midi.type == 2:
        raise RuntimeError("MIDI type 2 (independent sequences) is not supported.")
    events, tick = [], 0
    for message in mido.merge_tracks(midi.tracks):
        tick += message.time
        events.append((tick, message))
    first_tempo = next((m.tempo for t, m in events if m.type == "set_tempo" and t == 0), 500000)
    scale = mido.bpm2tempo(bpm) / first_tempo
    used = sorted({m.channel for _, m in events if m.type in ("note_on", "note_off")})
    spare = [c for c in range(16) if c != 9 and c not in used]
    remap = {9: spare[0]} if 9 in used and spare else {}
    channels = sorted({remap.get(c, c) for c in used})
    limit_us = max_seconds * 1e6
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=round(first_tempo * scale), time=0)])
    track.extend(mido.Message("program_change", channel=c, program=program, time=0) for c in channels)
    tempo, now_us, last_tick, last_kept = round(first_tempo * scale), 0.0, 0, 0
    sounding: set[tuple[int, int]] = set()
    for tick, message in events:
        now_us += (tick - last_tick) * tempo / midi.ticks_per_beat
        last_tick = tick
        if now_us > limit_us:
            break
        if message.type == "set_tempo":
            tempo = round(message.tempo * scale)
            message = message.copy(tempo=tempo)
        elif message.type == "program_change" or (message.type == "control_change" and message.control in (0, 32)):
            continue
        elif message.is_meta and message.type == "end_of_track":
            continue
        if hasattr(message, "channel"):
            message = message.copy(channel=remap.get(message.channel, message.channel))
        if message.type == "note_on" and message.velocity > 0:
            sounding.add((message.channel, message.note))
        elif message.type in ("note_on", "note_off"):
            sounding.discard((message.channel, message.note))
        track.append(message.copy(time=tick - last_kept))
        last_kept = tick
    end_tick = last_tick if now_us > limit_us else last_kept
    for position, (channel, note) in enumerate(sorted(sounding)):
        track.append(mido.Message("note_off", channel=channel, note=note, velocity=0,
                                  time=(end_tick - last_kept) if position == 0 else 0))
    track.append(mido.MetaMessage("end_of_track", time=0))
    out = mido.MidiFile(type=0, ticks_per_beat=midi.ticks_per_beat)
    out.tracks.append(track)
    out.save(str(target))
    seconds = min(max_seconds, out.length)
    return 60.0 * _quarters_in(out, seconds) / seconds if seconds > 0 else float(bpm)


def _quarters_in(midi, seconds: float) -> float:
    """Quarter notes that fit in the first ``seconds`` of a type-0 MIDI file's tempo map."""
    import mido

    tempo, elapsed, quarters = 500000, 0.0, 0.0
    for message in midi.tracks[0]:
        step = mido.tick2second(message.time, midi.ticks_per_beat, tempo)
        if elapsed + step >= seconds:
            return quarters + (seconds - elapsed) * 1e6 / tempo
        elapsed += step
        quarters += message.time / midi.ticks_per_beat
        if message.type == "set_tempo":
            tempo = message.tempo
    return quarters + (seconds - elapsed) * 1e6 / tempo


# --------------------------------------------------------------------------- manifest


def split_tracks(table, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0):
    """Assign each track to train / valid / test, by group and stratified.

    Within each stratum (soundtrack or style), the distinct groups (a track, or a
    work whose movements must stay together) are shuffled with a generator seeded by
    ``seed`` and the stratum's name, and the first ``round(n * test)`` groups go to
    test, the next ``round(n * valid)`` to valid, the rest to train (at least one
    group always stays in train). The result does not depend on row order or on
    the other strata.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``track_id``, ``group`` and ``stratum``.
    fractions : (float, float, float)
        Train, valid and test fractions of each stratum's groups.
    seed : int

    Returns
    -------
    pandas.Series of str
        The split of each row, indexed like ``table``.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"track_id": list("abcdef"), "group": ["w", "w", "c", "d", "e", "f"],
    ...                       "stratum": ["s"] * 6})
    >>> split = split_tracks(table, seed=0)
    >>> split[0] == split[1], split.value_counts().to_dict()
    (True, {'train': 3, 'test': 2, 'valid': 1})
    """
    import pandas as pd

    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ConfigError(f"fractions must be three nonnegative numbers summing to 1, got {fractions}.")
    missing = {"track_id", "group", "stratum"} - set(table.columns)
    if missing:
        raise ConfigError(f"split_tracks needs the columns {sorted(missing)}.")
    assignment: dict[str, str] = {}
    for stratum, rows in table.groupby("stratum", sort=True):
        groups = sorted(set(rows["group"]))
        order = np.random.default_rng([seed, zlib.crc32(str(stratum).encode())]).permutation(len(groups))
        n = len(groups)
        n_test = math.floor(n * fractions[2] + 0.5)
        n_valid = math.floor(n * fractions[1] + 0.5)
        while n_test + n_valid >= n and n_test + n_valid > 0:
            if n_valid >= n_test and n_valid:
                n_valid -= 1
            else:
                n_test -= 1
        for rank, index in enumerate(order):
            split = "test" if rank < n_test else "valid" if rank < n_test + n_valid else "train"
            assignment[groups[index]] = split
    return pd.Series([assignment[g] for g in table["group"]], index=table.index, dtype=object)


def build_manifest(out_dir: str | os.PathLike, tables: Iterable | None = None, *,
                   fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0):
    """Combine the corpora, split them and write ``manifest.csv`` and ``metadata.csv``.

    Parameters
    ----------
    out_dir : str or path-like
        The corpus folder.
    tables : iterable of pandas.DataFrame, optional
        Track tables as :func:`build_soundtrack_corpus` and :func:`build_music21_corpus`
        return; default: ``soundtracks.csv`` and ``music21.csv`` of ``out_dir``, where present.
    fractions : (float, float, float)
        Train, valid and test fractions (see :func:`split_tracks`).
    seed : int
        Seed of the split.

    Returns
    -------
    pandas.DataFrame
        The manifest: ``track_id``, ``path``, ``split``, sorted by ``track_id``.
        ``metadata.csv`` holds the columns of :data:`METADATA_COLUMNS` in the same order.

    Examples
    --------
    >>> manifest = build_manifest("corpus")  # doctest: +SKIP
    >>> sorted(manifest["split"].unique())  # doctest: +SKIP
    ['test', 'train', 'valid']
    """
    import pandas as pd

    out = Path(out_dir)
    if tables is None:
        tables = [_read_csv(out / name) for name in ("soundtracks.csv", "music21.csv") if (out / name).exists()]
    tables = [t for t in tables if len(t)]
    if not tables:
        raise ConfigError(f"No tracks: build the soundtrack and/or music21 corpus in {out} first.")
    table = pd.concat(tables, ignore_index=True)
    if table["track_id"].duplicated().any():
        raise ConfigError(f"Duplicate track ids: {sorted(table.loc[table['track_id'].duplicated(), 'track_id'])[:5]}")
    table = table.sort_values("track_id", kind="stable").reset_index(drop=True)
    strata = table["corpus"] + ":" + table["soundtrack"].fillna("").astype(str) + table["style"].fillna("").astype(str)
    table["split"] = split_tracks(table.assign(stratum=strata), fractions, seed)
    _write_csv(table[["track_id", "path", "split"]], out / "manifest.csv")
    _write_csv(table[list(METADATA_COLUMNS)], out / "metadata.csv")
    return table[["track_id", "path", "split"]]


def corpus_summary(out_dir: str | os.PathLike):
    """Tracks and minutes per class and split of a built corpus.

    Returns
    -------
    pandas.DataFrame
        Index: ``(corpus, class)``; columns: tracks and minutes for each split and in all.

    Examples
    --------
    >>> corpus_summary("corpus").loc[("music21", "bach")]  # doctest: +SKIP
    """
    import pandas as pd

    out = Path(out_dir)
    table = _read_csv(out / "metadata.csv").merge(_read_csv(out / "manifest.csv")[["track_id", "split"]])
    table["class"] = table["soundtrack"].fillna("").astype(str) + table["style"].fillna("").astype(str)
    tracks = table.pivot_table(index=["corpus", "class"], columns="split", values="track_id", aggfunc="count",
                               fill_value=0)
    minutes = table.pivot_table(index=["corpus", "class"], columns="split", values="duration", aggfunc="sum",
                                fill_value=0) / 60
    tracks = tracks.reindex(columns=list(SPLITS), fill_value=0)
    minutes = minutes.reindex(columns=list(SPLITS), fill_value=0).round(1)
    tracks["all"], minutes["all"] = tracks.sum(axis=1), minutes.sum(axis=1).round(1)
    return pd.concat({"tracks": tracks, "minutes": minutes}, axis=1)


# --------------------------------------------------------------------------- descriptors


def compute_audio_descriptors(manifest: str | os.PathLike, out: str | os.PathLike, workers: int = 2, *,
                              max_seconds: float = ANALYSIS_SECONDS) -> Descriptors:
    """Algorithm-derived descriptors of every track of a manifest, cached and resumable.

    Each track's first ``max_seconds`` are decoded at 22,050 Hz, the two channels
    averaged, and analysed with librosa (hop 512): the beat-tracked tempo, the
    onset rate, the mean CQT chroma, a histogram of local keys (5 s windows matched
    to the 24 Krumhansl-Kessler profiles) and a tempogram histogram (the mean
    autocorrelation tempogram of the mean-removed onset envelope in the bins of
    :data:`TEMPO_EDGES`; without the mean removal the window's own autocorrelation
    would dominate every histogram). Each track's
    result is cached in ``<out parent>/descriptors/<hash>.npz`` and reused when the
    track id, path and analysis settings match; ``out`` collects all tracks, in
    manifest order. A track that cannot be decoded gets NaN values and a warning
    (cached too: delete its cache file to retry).

    Parameters
    ----------
    manifest : str or path-like
        ``manifest.csv`` (``track_id``, ``path``, ``split``).
    out : str or path-like
        The ``.npz`` file to write.
    workers : int
        Analysis processes.
    max_seconds : float
        Audio analysed per track.

    Returns
    -------
    Descriptors

    Examples
    --------
    >>> descriptors = compute_audio_descriptors("corpus/manifest.csv", "corpus/descriptors.npz")  # doctest: +SKIP
    >>> descriptors.key_counts.shape[1], descriptors.tempogram.shape[1]  # doctest: +SKIP
    (24, 20)
    """
    table = _read_csv(Path(manifest))
    out = Path(out)
    cache = out.parent / "descriptors"
    cache.mkdir(parents=True, exist_ok=True)
    settings = {"version": DESCRIPTOR_VERSION, "max_seconds": float(max_seconds), "hop": HOP_LENGTH}
    jobs = []
    for track_id, path in zip(table["track_id"], table["path"]):
        key = hashlib.sha1(json.dumps([track_id, path, settings]).encode()).hexdigest()[:20]
        jobs.append({"track_id": track_id, "path": path, "file": str(cache / f"{key}.npz"),
                     "max_seconds": float(max_seconds)})
    todo = [job for job in jobs if not Path(job["file"]).exists()]
    logger.info("descriptors: %d tracks, %d to analyse", len(jobs), len(todo))
    started = time.perf_counter()
    for done, (track_id, error) in enumerate(_map(_descriptor_job, todo, workers), 1):
        if error:
            logger.warning("descriptors: %s failed: %s", track_id, error)
        if done % 25 == 0:
            logger.info("descriptors: %d / %d (%.0f s)", done, len(todo), time.perf_counter() - started)
    fields = ("tempo", "onset_rate", "chroma", "key_counts", "tempogram", "seconds")
    values: dict[str, list] = {name: [] for name in fields}
    for job in jobs:
        with np.load(job["file"]) as data:
            for name in fields:
                values[name].append(data[name])
    result = Descriptors(np.asarray(table["track_id"], dtype=str),
                         *(np.asarray(values[name], dtype=np.float64) for name in fields), n_computed=len(todo))
    arrays = {f.name: getattr(result, f.name) for f in dataclasses.fields(Descriptors) if f.name != "n_computed"}
    _write_npz(out, arrays)
    return result


def load_descriptors(path: str | os.PathLike) -> Descriptors:
    """Read the file written by :func:`compute_audio_descriptors`.

    Examples
    --------
    >>> load_descriptors("corpus/descriptors.npz").tempo.shape  # doctest: +SKIP
    (585,)
    """
    with np.load(Path(path), allow_pickle=False) as data:
        return Descriptors(**{f.name: data[f.name] for f in dataclasses.fields(Descriptors) if f.name != "n_computed"})


def describe_audio(y: np.ndarray, sr: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
    """The descriptors of one mono signal at 22,050 Hz (see :func:`compute_audio_descriptors`).

    Parameters
    ----------
    y : ndarray, shape (n,)
        Mono audio.
    sr : int
        Its sample rate (22,050 Hz for the descriptors of the corpus).

    Returns
    -------
    dict
        ``tempo``, ``onset_rate``, ``chroma`` (12), ``key_counts`` (24),
        ``tempogram`` (20) and ``seconds``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(10 * 22050) / 22050
    >>> clicks = (np.sin(2 * np.pi * 440 * t) * (t % 0.5 < 0.05)).astype(np.float32)
    >>> result = describe_audio(clicks)
    >>> bool(100 < result["tempo"] < 140), result["key_counts"].shape, round(float(result["tempogram"].sum()), 6)
    (True, (24,), 1.0)
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    seconds = len(y) / sr
    envelope = librosa.onset.onset_strength(y=y, sr=sr, hop_length=HOP_LENGTH)
    tempo, _ = librosa.beat.beat_track(onset_envelope=envelope, sr=sr, hop_length=HOP_LENGTH)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sr, hop_length=HOP_LENGTH)
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=HOP_LENGTH)
    window = max(1, int(round(KEY_WINDOW_SECONDS * sr / HOP_LENGTH)))
    profiles = np.stack([np.roll(profile, shift) for profile in (_MAJOR_PROFILE, _MINOR_PROFILE)
                         for shift in range(12)])
    profiles = (profiles - profiles.mean(axis=1, keepdims=True)) / profiles.std(axis=1, keepdims=True)
    key_counts = np.zeros(24)
    energy = np.abs(y).max() if y.size else 0.0
    for start in range(0, chroma.shape[1], window):
        local = chroma[:, start:start + window].mean(axis=1)
        if energy > 1e-4 and local.std() > 1e-6:
            key_counts[np.argmax(profiles @ ((local - local.mean()) / local.std()))] += 1
    tempogram = librosa.feature.tempogram(onset_envelope=envelope - envelope.mean(), sr=sr,
                                          hop_length=HOP_LENGTH).mean(axis=1)
    lag_bpm = librosa.tempo_frequencies(len(tempogram), hop_length=HOP_LENGTH, sr=sr)
    bins = np.digitize(lag_bpm, TEMPO_EDGES) - 1
    inside = (bins >= 0) & (bins < len(TEMPO_EDGES) - 1)
    sums = np.bincount(bins[inside], weights=np.clip(tempogram[inside], 0, None), minlength=len(TEMPO_EDGES) - 1)
    counts = np.bincount(bins[inside], minlength=len(TEMPO_EDGES) - 1)
    histogram = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    total = histogram.sum()
    histogram = histogram / total if total > 0 and energy > 1e-4 else np.zeros_like(histogram)
    return {"tempo": np.float64(np.atleast_1d(tempo)[0] if energy > 1e-4 else 0.0),
            "onset_rate": np.float64(len(onsets) / seconds if seconds else 0.0),
            "chroma": chroma.mean(axis=1).astype(np.float64), "key_counts": key_counts,
            "tempogram": histogram, "seconds": np.float64(seconds)}


def _descriptor_job(job: dict) -> tuple[str, str]:
    error = ""
    try:
        samples = int(job["max_seconds"] * SAMPLE_RATE)
        blocks, have = [], 0
        stream = stream_audio(job["path"])
        try:
            for block in stream:
                blocks.append(block.mean(axis=0))
                have += block.shape[1]
                if have >= samples:
                    break
        finally:
            stream.close()
        y = np.concatenate(blocks)[:samples] if blocks else np.zeros(0, np.float32)
        if not y.size:
            raise AudioError("no audio")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = describe_audio(y)
    except Exception as err:  # an unreadable track gets NaN descriptors and must not stop the corpus
        error = f"{type(err).__name__}: {err}"
        result = {"tempo": np.nan, "onset_rate": np.nan, "chroma": np.full(12, np.nan),
                  "key_counts": np.full(24, np.nan), "tempogram": np.full(len(TEMPO_EDGES) - 1, np.nan),
                  "seconds": np.nan}
    _write_npz(Path(job["file"]), result)
    return job["track_id"], error


# --------------------------------------------------------------------------- targets


def register_opencorpus_sources(*, replace: bool = False) -> tuple[SourceSpec, ...]:
    """Register the open corpus's audio sources (:data:`OPEN_SOURCES`) with :func:`~.targets.register_source`.

    ``bpm`` is the study's own source (a 50-component Gaussian mixture) and is
    already registered; the metadata sources are label distributions that
    :func:`label_targets` makes.

    Examples
    --------
    >>> register_opencorpus_sources()  # doctest: +SKIP
    >>> OPEN_SOURCES["chroma"].kind, OPEN_SOURCES["chroma"].dim, OPEN_SOURCES["onset"].dim
    ('plsa', 12, 50)
    """
    return tuple(register_source(spec, replace=replace) for spec in OPEN_SOURCES.values())


def label_targets(source: str, labels: Sequence[str], *, classes: Sequence[str] | None = None,
                  smoothing: float = LABEL_SMOOTHING, track_ids: Sequence[str] | None = None) -> Targets:
    """Label distributions: the true class gets ``1 - smoothing``, the other classes share ``smoothing``.

    Parameters
    ----------
    source : str
        Source name (``composer``, ``soundtrack``, ``style``).
    labels : sequence of str
        One label per track; ``''`` or None for tracks without one, and labels not in
        ``classes``, get no target (``mask`` false, NaN row).
    classes : sequence of str, optional
        The classes, in column order; default: the distinct labels, sorted.
    smoothing : float
        Label smoothing, in ``[0, 1)``.
    track_ids : sequence of str, optional

    Returns
    -------
    Targets
        ``params``: ``kind='label'``, ``dim``, ``smoothing`` and ``classes``.

    Examples
    --------
    >>> import numpy as np
    >>> targets = label_targets("composer", ["a", "b", "", "a"], smoothing=0.1)
    >>> np.round(targets.z[0].astype(float), 2).tolist(), targets.mask.tolist()
    ([0.9, 0.1], [True, True, False, True])
    """
    if not 0 <= smoothing < 1:
        raise ConfigError(f"smoothing must be in [0, 1), got {smoothing}.")
    labels = ["" if label is None or (isinstance(label, float) and math.isnan(label)) else str(label)
              for label in labels]
    classes = sorted({label for label in labels if label}) if classes is None else [str(c) for c in classes]
    if len(classes) < 2:
        raise ConfigError(f"Source {source!r} needs at least two classes, got {classes}.")
    index = {name: i for i, name in enumerate(classes)}
    z = np.full((len(labels), len(classes)), np.nan, dtype=np.float32)
    mask = np.array([label in index for label in labels], dtype=bool)
    z[mask] = smoothing / (len(classes) - 1)
    z[np.flatnonzero(mask), [index[label] for label in labels if label in index]] = 1.0 - smoothing
    ids = None if track_ids is None else np.asarray(track_ids, dtype=str)
    params = {"kind": "label", "dim": len(classes), "smoothing": float(smoothing), "classes": list(classes)}
    return Targets(source, z, mask, params, ids)


def compute_opencorpus_targets(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                               sources: Sequence[str] = DEFAULT_TARGET_SOURCES,
                               splits: Sequence[str] = ("train", "valid"), seed: int = 0,
                               dims: Mapping[str, int] | None = None,
                               composer_soundtracks: Sequence[str] = COMPOSER_SOUNDTRACKS) -> dict[str, Targets]:
    """Learning targets of the open corpus, one :func:`~.targets.save_targets` file per source.

    Rows follow ``manifest.csv``. Only tracks of ``splits`` get targets, and only
    they enter the fits (pLSA, Gaussian mixtures, label classes); the other tracks
    (the test split by default) have ``mask`` false, so nothing of the held-out part
    reaches training.

    ==========  ====================================================================
    source      target
    ==========  ====================================================================
    bpm         the study's ``bpm``: Gaussian mixture on the beat-tracked tempo
    onset       Gaussian mixture on the onset rate
    chroma      pLSA (12 topics) of the 24-key histogram of local keys
    tempogram   pLSA (12 topics) of the 20-bin tempogram histogram (scaled to 100)
    composer    label distribution over the composers of ``composer_soundtracks``
    soundtrack  label distribution over soundtracks (evaluation label: opt-in only)
    style       label distribution over styles (evaluation label: opt-in only)
    ==========  ====================================================================

    Parameters
    ----------
    corpus_dir : str or path-like
        Folder with ``manifest.csv``, ``metadata.csv`` and ``descriptors.npz``.
    out_dir : str or path-like, optional
        Where the target files go; default ``<corpus_dir>/targets``.
    sources : sequence of str
        Sources to compute.
    splits : sequence of str
        Splits that get targets.
    seed : int
        Seed of the pLSA and mixture initialisations.
    dims : mapping, optional
        Number of outputs per source instead of the registered ones (pLSA topics,
        mixture components).
    composer_soundtracks : sequence of str
        Soundtracks whose composers form the ``composer`` classes.

    Returns
    -------
    dict
        Source name -> :class:`~.targets.Targets`, also saved as ``<out_dir>/<source>.npz``.

    Examples
    --------
    >>> targets = compute_opencorpus_targets("corpus")  # doctest: +SKIP
    >>> targets["bpm"].z.shape[1], int(targets["composer"].mask.sum()) > 0  # doctest: +SKIP
    (50, True)
    """
    corpus = Path(corpus_dir)
    out = corpus / "targets" if out_dir is None else Path(out_dir)
    manifest = _read_csv(corpus / "manifest.csv")
    metadata = manifest[["track_id"]].merge(_read_csv(corpus / "metadata.csv"), how="left", on="track_id")
    descriptors = load_descriptors(corpus / "descriptors.npz")
    if not np.array_equal(descriptors.track_ids, np.asarray(manifest["track_id"], dtype=str)):
        raise ConfigError(f"{corpus / 'descriptors.npz'} does not follow manifest.csv; rerun "
                          "compute_audio_descriptors.")
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ConfigError(f"Unknown splits {sorted(unknown)}; choose from {', '.join(SPLITS)}.")
    fit = manifest["split"].isin(list(splits)).to_numpy()
    track_ids = manifest["track_id"].tolist()
    dims = dict(dims or {})
    results = {}
    for source in sources:
        if source in LABEL_SOURCES:
            labels = metadata[source].fillna("").astype(str).to_numpy(copy=True)
            if source == "composer":
                labels[~metadata["soundtrack"].isin(list(composer_soundtracks)).to_numpy()] = ""
            labels[~fit] = ""
            if source in dims:
                raise ConfigError(f"The number of classes of {source!r} comes from its labels; drop it from dims.")
            targets = label_targets(source, labels, track_ids=track_ids)
        else:
            spec = OPEN_SOURCES.get(source) or get_source(source)
            if source in dims:
                spec = dataclasses.replace(spec, dim=int(dims[source]))
            data = {
                "bpm": descriptors.tempo,
                "onset": descriptors.onset_rate,
                "chroma": descriptors.key_counts,
                "tempogram": 100.0 * descriptors.tempogram,
            }.get(source)
            if data is None:
                raise ConfigError(f"The open corpus has no data for source {source!r}; choose from "
                                  f"bpm, {', '.join(OPEN_SOURCES)}, {', '.join(LABEL_SOURCES)}.")
            data = np.array(data, dtype=np.float64)
            if data.ndim == 1:
                data[~fit | ~np.isfinite(data)] = np.nan
            else:
                data[~fit | ~np.isfinite(data).all(axis=1)] = 0.0
            targets = compute_targets(spec, data, seed=seed, track_ids=track_ids)
        save_targets(targets, targets_path(out, source))
        results[source] = targets
        logger.info("targets %s: %d x %d, %d tracks with a target", source, *targets.z.shape, int(targets.mask.sum()))
    return results


# --------------------------------------------------------------------------- all steps


def build_open_corpus(source_root: str | os.PathLike | None, out_dir: str | os.PathLike, *,
                      per_style: int = 100, seed: int = 0, workers: int = 2,
                      fractions: Sequence[float] = DEFAULT_FRACTIONS,
                      sources: Sequence[str] = DEFAULT_TARGET_SOURCES) -> dict:
    """Build the whole open corpus: soundtracks, renders, manifest, descriptors and targets.

    Every step is resumable; rerunning after an interruption redoes only what is missing.

    Parameters
    ----------
    source_root : str or path-like, optional
        Extracted Debian packages (see the module's recipe); None leaves the
        soundtracks out.
    out_dir : str or path-like
        The corpus folder (audio renders, CSV tables, descriptors, ``targets/``).
    per_style : int
        music21 pieces per style; 0 leaves the renders out.
    seed : int
        Seed of the renders, the split and the targets.
    workers : int
        Processes for rendering and analysis.
    fractions : (float, float, float)
        Train, valid and test fractions.
    sources : sequence of str
        Learning sources to compute targets for.

    Returns
    -------
    dict
        ``tracks`` (count), ``minutes``, ``seconds`` (wall time per step) and
        ``summary`` (:func:`corpus_summary`).

    Examples
    --------
    >>> report = build_open_corpus("~/open-music/x", "~/open-corpus")  # doctest: +SKIP
    >>> report["tracks"]  # doctest: +SKIP
    585
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    tables = []
    started = time.perf_counter()
    if source_root is not None:
        tables.append(build_soundtrack_corpus(source_root, out))
        timings["soundtracks"] = time.perf_counter() - started
    if per_style > 0:
        started = time.perf_counter()
        tables.append(build_music21_corpus(out, per_style, seed=seed, workers=workers))
        timings["music21"] = time.perf_counter() - started
    manifest = build_manifest(out, tables, fractions=fractions, seed=seed)
    started = time.perf_counter()
    compute_audio_descriptors(out / "manifest.csv", out / "descriptors.npz", workers)
    timings["descriptors"] = time.perf_counter() - started
    started = time.perf_counter()
    compute_opencorpus_targets(out, sources=sources, seed=seed)
    timings["targets"] = time.perf_counter() - started
    summary = corpus_summary(out)
    minutes = float(summary[("minutes", "all")].sum())
    return {"tracks": len(manifest), "minutes": round(minutes, 1),
            "seconds": {k: round(v, 1) for k, v in timings.items()}, "summary": summary}


# --------------------------------------------------------------------------- helpers


def _map(function: Callable[[dict], object], jobs: list[dict], workers: int) -> Iterable:
    """``function`` over ``jobs`` in ``workers`` processes (in this process when 1), results as they come."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}.")
    if workers == 1 or len(jobs) <= 1:
        yield from (function(job) for job in jobs)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_limit_threads) as pool:
        yield from pool.map(function, jobs, chunksize=1)


def _limit_threads() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _write_csv(table, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def _read_csv(path: Path):
    import pandas as pd

    if not path.exists():
        raise ConfigError(f"{path} not found; build the corpus first.")
    return pd.read_csv(path, keep_default_na=False, na_values={"bpm_label": [""], "duration": [""]},
                       dtype={"track_id": str, "path": str, "split": str, "soundtrack": str, "style": str,
                              "composer": str, "group": str, "title": str, "licence": str, "corpus": str})


#: MFCC "words" of the timbre source (k-means codebook size) and its pLSA topics.
TIMBRE_WORDS = 64
TIMBRE_TOPICS = 16


def _mfcc_frames(job: dict) -> np.ndarray:
    """20 MFCCs of every analysis frame of the first :data:`ANALYSIS_SECONDS` of a track, ``(frames, 20)``."""
    import librosa

    y = _analysis_audio(job["path"])
    return librosa.feature.mfcc(y=y, sr=SAMPLE_RATE, n_mfcc=20).T.astype(np.float32)


def _analysis_audio(path: str) -> np.ndarray:
    blocks, total = [], 0
    for block in stream_audio(path):
        blocks.append(block.mean(axis=0))
        total += block.shape[1]
        if total >= ANALYSIS_SECONDS * SAMPLE_RATE:
            break
    return np.concatenate(blocks)[: int(ANALYSIS_SECONDS * SAMPLE_RATE)]


def compute_timbre_targets(corpus_dir: str | os.PathLike, *, splits: Sequence[str] = ("train", "valid"),
                           n_words: int = TIMBRE_WORDS, n_topics: int = TIMBRE_TOPICS, seed: int = 0,
                           workers: int = 2) -> Targets:
    """The ``timbre`` source: pLSA topics of each track's bag of MFCC words.

    Every frame's 20 MFCCs are assigned to the nearest of ``n_words`` k-means
    centroids (fitted on frames of the ``splits`` tracks only); each track becomes
    a histogram of words, and pLSA over the ``splits`` tracks gives ``n_topics``
    timbre topics, as the study's tag source does with tags. Written to
    ``targets/timbre.npz``; tracks outside ``splits`` have no target.

    Examples
    --------
    >>> targets = compute_timbre_targets("corpus")  # doctest: +SKIP
    >>> targets.z.shape  # doctest: +SKIP
    (585, 16)
    """
    import scipy.sparse as sp
    from sklearn.cluster import MiniBatchKMeans

    from .targets import plsa

    corpus = Path(corpus_dir)
    table = _read_csv(corpus / "manifest.csv")
    frames = list(_map(_mfcc_frames, [{"path": path} for path in table["path"]], workers))
    use = table["split"].isin(list(splits)).to_numpy()
    rng = np.random.default_rng(seed)
    sample = np.concatenate([f[rng.choice(len(f), size=min(len(f), 400), replace=False)]
                             for f, u in zip(frames, use) if u])
    codebook = MiniBatchKMeans(n_words, random_state=seed, n_init=3).fit(sample)
    counts = np.zeros((len(table), n_words))
    for i, track_frames in enumerate(frames):
        counts[i] = np.bincount(codebook.predict(track_frames), minlength=n_words)
    topics = plsa(sp.csr_matrix(counts[use]), k=n_topics, seed=seed)
    z = np.full((len(table), n_topics), 1.0 / n_topics, dtype=np.float32)
    z[use] = topics.doc_topic
    targets = Targets("timbre", z, use.copy(), {"kind": "plsa", "dim": n_topics, "words": n_words, "seed": seed},
                      table["track_id"].to_numpy(dtype=str), topics.topic_term)
    save_targets(targets, targets_path(corpus / "targets", "timbre"))
    return targets
