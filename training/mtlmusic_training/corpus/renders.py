"""The rendered part of the open corpus: music21 scores of five styles played by FluidSynth.

:func:`build_music21_corpus` draws pieces of each style from
:func:`music21_candidates` and renders each with :func:`render_score`: one
General MIDI program for all parts and a starting tempo, both drawn
independently of the style, so that neither timbre nor tempo gives the style
away; the soundfont is :data:`DEFAULT_SOUNDFONT`, or one drawn per piece from
several (:data:`GM_SOUNDFONTS`). :func:`render_midi` (a MIDI file to trimmed,
normalised FLAC), :func:`record_render` and :func:`render_pieces` (resumable,
recorded renders) serve the rendered MIDI corpus too (:mod:`.midi`). Rendering
needs ``apt-get install fluidsynth fluid-soundfont-gm`` (``timgm6mb-soundfont``
and ``musescore-general-soundfont`` for the other soundfonts) and
``pip install music21 mido``.

Examples
--------
>>> STYLES
('bach', 'palestrina', 'monteverdi', 'trecento', 'quartet')
>>> [font.name for font in GM_SOUNDFONTS]
['FluidR3_GM.sf2', 'TimGM6mb.sf2', 'MuseScore_General_Full.sf3']
>>> table = build_music21_corpus("corpus", per_style=2, styles=["bach"], max_seconds=10)  # doctest: +SKIP
>>> table[["style", "program", "bpm_label"]].shape  # doctest: +SKIP
(2, 3)
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from unittest import mock

import numpy as np

from mtlmusic.audio import SAMPLE_RATE
from mtlmusic.errors import ConfigError
from mtlmusic.files import atomic_path

from ._io import METADATA_COLUMNS, parallel_map, write_table

logger = logging.getLogger(__name__)

#: Style classes of the rendered music21 corpus.
STYLES = ("bach", "palestrina", "monteverdi", "trecento", "quartet")
#: General MIDI programs drawn for rendered pieces: pianos to synth pads (0-95); sound
#: effects, percussive and ethnic programs are left out.
DEFAULT_PROGRAMS = tuple(range(96))
#: Range of the tempo (quarter notes per minute) drawn for each rendered piece, log-uniformly.
BPM_RANGE = (60.0, 180.0)
#: The FluidR3 General MIDI soundfont of Debian's ``fluid-soundfont-gm`` (MIT licence).
DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
#: General MIDI soundfonts of Debian to draw from: FluidR3_GM, TimGM6mb (``timgm6mb-soundfont``) and
#: MuseScore General (``musescore-general-soundfont``; FluidSynth reads its compressed ``.sf3``).
GM_SOUNDFONTS = (DEFAULT_SOUNDFONT, Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
                 Path("/usr/share/sounds/sf3/MuseScore_General_Full.sf3"))
#: Licences of the soundfonts of :data:`GM_SOUNDFONTS`, by file name (their Debian copyright files).
SOUNDFONT_LICENCES = {"FluidR3_GM.sf2": "MIT", "TimGM6mb.sf2": "GPL-2", "MuseScore_General_Full.sf3": "MIT"}
_ENCODINGS_LICENCE = "music21 corpus encodings (see music21/corpus/license.txt)"
#: Licence of the pieces rendered with :data:`DEFAULT_SOUNDFONT` (see :func:`music21_licence` for the others).
MUSIC21_LICENCE = f"{_ENCODINGS_LICENCE}; FluidR3_GM soundfont (MIT)"

# Score formats in order of preference where the corpus holds one piece in several.
_SCORE_PREFERENCE = (".mxl", ".xml", ".krn")
_QUARTET_WORKS = re.compile(r"(beethoven/opus[^/]+(/[^/]+)?|mozart/k(80|155|156|458)/[^/]+|haydn/opus[^/]+/[^/]+)")


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
                         soundfonts: Sequence[str | os.PathLike] = (DEFAULT_SOUNDFONT,)):
    """Render music21 corpus pieces of five styles to FLAC and write ``music21.csv``.

    For each style, ``per_style`` pieces are drawn (seeded) from
    :func:`music21_candidates`. Each piece is parsed with music21, cut to the
    measures needed for ``max_seconds``, exported to MIDI, and rewritten with mido:
    every program change is replaced by one General MIDI program drawn from
    ``programs``, and every tempo is scaled so that the piece starts at a tempo
    drawn log-uniformly from ``bpm_range``. FluidSynth renders it at 22,050 Hz with
    one of ``soundfonts`` (:func:`render_midi`): the audio is cut to ``max_seconds``,
    its trailing silence trimmed, its peak normalised to -1 dBFS, and written as
    16-bit stereo FLAC. Program, tempo and then soundfont are drawn in this order from
    the generator of :func:`piece_generator` (the seed and the piece's path only), so
    they are independent of the style and of the order of rendering, and adding
    soundfonts leaves the programs and tempi of a seed unchanged.

    Rendering runs in ``workers`` processes and is resumable: each piece writes
    ``<out_dir>/music21/<style>/<name>.flac`` and a ``.json`` record (through a
    temporary file and a rename), and pieces with a record are skipped. A piece that
    fails or renders shorter than ``min_seconds`` gets a record with its error and is
    left out of the table (and not retried): see :func:`render_pieces`.

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
    soundfonts : sequence of str or path-like
        General MIDI SoundFonts, one drawn per piece; default :data:`DEFAULT_SOUNDFONT`
        alone (:data:`GM_SOUNDFONTS` for three).

    Returns
    -------
    pandas.DataFrame
        The rendered pieces with ``path`` and the columns of :data:`METADATA_COLUMNS`:
        ``style``, ``composer`` (the corpus folder; the score's for Trecento), ``program``,
        ``bpm_label`` (the mean tempo of the rendered excerpt in quarter notes per
        minute), ``duration`` (seconds of audio), ``licence`` (:func:`music21_licence`)
        and ``group`` (the work: a quartet's movements form one group); then
        ``soundfont`` (its file name).

    Examples
    --------
    >>> table = build_music21_corpus("corpus", per_style=2, styles=["bach"], max_seconds=10)  # doctest: +SKIP
    >>> table[["style", "program", "bpm_label"]].shape  # doctest: +SKIP
    (2, 3)
    """
    import pandas as pd

    soundfonts = check_render_tools(soundfonts, modules=("music21", "mido"))
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
            rng = piece_generator(seed, relative)
            program = programs[int(rng.integers(len(programs)))]
            bpm = float(np.exp(rng.uniform(np.log(low), np.log(high))))
            soundfont = draw_soundfont(rng, soundfonts)
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", relative.rsplit(".", 1)[0])
            flac = out / "music21" / style / f"{name}.flac"
            jobs.append(dict(relative=relative, style=style, flac=str(flac), program=program, bpm=bpm,
                             max_seconds=float(max_seconds), min_seconds=float(min_seconds),
                             soundfont=str(soundfont)))
    rows = []
    for job, record in zip(jobs, render_pieces(jobs, _render_job, workers, "music21")):
        if record["status"] != "ok":
            continue
        # Records written before soundfonts were drawn name none: theirs was the job's.
        soundfont = record.get("soundfont", Path(job["soundfont"]).name)
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
            "licence": music21_licence(soundfont),
            "title": record["title"],
            "group": f"music21/{_music21_work(job['relative'])}",
            "soundfont": soundfont,
        })
    table = pd.DataFrame(rows, columns=["track_id", "path", *METADATA_COLUMNS[1:], "soundfont"])
    out.mkdir(parents=True, exist_ok=True)
    write_table(table, out / "music21.csv")
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
    with tempfile.TemporaryDirectory(prefix="score-") as scratch:
        midi = Path(scratch) / "score.mid"
        score, title, composer = _parse_excerpt(relative, max_seconds, bpm)
        _write_midi(score, midi)
        rendered = render_midi(midi, out_path, soundfont=soundfont, max_seconds=max_seconds, program=program,
                               bpm=bpm)
    return {**rendered, "program": int(program), "composer": composer, "title": title}


def render_midi(midi_path: str | os.PathLike, out_path: str | os.PathLike, *,
                soundfont: str | os.PathLike = DEFAULT_SOUNDFONT, max_seconds: float = 60.0,
                program: int | None = None, bpm: float | None = None) -> dict:
    """Render a MIDI file with FluidSynth to 16-bit stereo FLAC at 22,050 Hz, trimmed and normalised.

    The MIDI file is first rewritten with mido and cut at ``max_seconds`` (notes
    still sounding are released at the next event), so that long pieces render no further.
    By default it keeps its own programs, drums and tempi; ``program`` puts every
    part, drums included, on that General MIDI program, and ``bpm`` scales the
    tempi so that the piece starts at ``bpm``. The audio is cut to ``max_seconds``,
    its trailing silence trimmed and its peak normalised to -1 dBFS.

    Parameters
    ----------
    midi_path : str or path-like
        A MIDI file of type 0 or 1.
    out_path : str or path-like
        The FLAC file to write, through a temporary file and a rename.
    soundfont : str or path-like
        A General MIDI SoundFont (``.sf2``, or ``.sf3``).
    max_seconds : float
        Longest audio kept.
    program : int, optional
        General MIDI program (0-127) of every part.
    bpm : float, optional
        Starting tempo in quarter notes per minute; later tempo changes keep their ratio to the first.

    Returns
    -------
    dict
        ``duration`` (seconds of audio) and ``bpm_label`` (mean tempo of the rendered part, quarter notes per
        minute).

    Raises
    ------
    RuntimeError
        If the MIDI file is of type 2 or FluidSynth fails.

    Examples
    --------
    >>> render_midi("theme.mid", "theme.flac", max_seconds=180)  # doctest: +SKIP
    {'duration': 180.0, 'bpm_label': 120.0}
    """
    import soundfile as sf

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="render-") as scratch:
        scratch = Path(scratch)
        bpm_label = _rewrite_midi(Path(midi_path), scratch / "render.mid", program=program, bpm=bpm,
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
    return {"duration": round(len(audio) / SAMPLE_RATE, 3), "bpm_label": round(bpm_label, 3)}


def read_midi(path: str | os.PathLike):
    """Read a MIDI file with mido; key signatures it cannot decode (such as a mode of 255) read as C major.

    Key signatures do not sound, and some game MIDI files hold invalid ones.

    Examples
    --------
    >>> read_midi("theme.mid").length  # doctest: +SKIP
    183.5
    """
    import mido
    from mido.midifiles.meta import KeySignatureError, MetaSpec_key_signature

    try:
        return mido.MidiFile(str(path))
    except KeySignatureError:
        with mock.patch.object(MetaSpec_key_signature, "decode", _decode_key_as_c):
            return mido.MidiFile(str(path))


def _decode_key_as_c(spec, message, data) -> None:
    message.key = "C"


def piece_generator(seed: int, path: str) -> np.random.Generator:
    """The random generator of one rendered piece, seeded by ``seed`` and the piece's path only.

    What it draws is independent of the piece's class and of the order of rendering.

    Examples
    --------
    >>> first, again = piece_generator(0, "bach/bwv1.6.mxl"), piece_generator(0, "bach/bwv1.6.mxl")
    >>> int(first.integers(96)) == int(again.integers(96))
    True
    """
    return np.random.default_rng([seed, zlib.crc32(path.encode())])


def draw_soundfont(rng: np.random.Generator, soundfonts: Sequence[str | os.PathLike]) -> Path:
    """One of ``soundfonts``, uniformly, from ``rng`` (a :func:`piece_generator`).

    Examples
    --------
    >>> draw_soundfont(piece_generator(0, "bach/bwv1.6.mxl"), [DEFAULT_SOUNDFONT]).name
    'FluidR3_GM.sf2'
    """
    return Path(soundfonts[int(rng.integers(len(soundfonts)))])


def music21_licence(soundfont: str | os.PathLike) -> str:
    """The licence of a music21 piece rendered with ``soundfont``: the encodings' and the soundfont's.

    Examples
    --------
    >>> music21_licence(DEFAULT_SOUNDFONT) == MUSIC21_LICENCE
    True
    >>> music21_licence("/usr/share/sounds/sf2/TimGM6mb.sf2")
    'music21 corpus encodings (see music21/corpus/license.txt); TimGM6mb soundfont (GPL-2)'
    """
    name = Path(soundfont).name
    return f"{_ENCODINGS_LICENCE}; {Path(name).stem} soundfont ({SOUNDFONT_LICENCES.get(name, 'see its licence')})"


def check_render_tools(soundfonts: Sequence[str | os.PathLike], modules: Sequence[str] = ("mido",)) -> list[Path]:
    """Check that FluidSynth, the soundfonts and the Python modules of a render are there.

    Parameters
    ----------
    soundfonts : sequence of str or path-like
    modules : sequence of str

    Returns
    -------
    list of Path
        The soundfonts.

    Raises
    ------
    ConfigError
        If ``fluidsynth``, a soundfont or a module is missing, or no soundfont is given.

    Examples
    --------
    >>> check_render_tools([DEFAULT_SOUNDFONT])  # doctest: +SKIP
    [PosixPath('/usr/share/sounds/sf2/FluidR3_GM.sf2')]
    """
    if shutil.which("fluidsynth") is None:
        raise ConfigError("fluidsynth is not installed: `apt-get install fluidsynth fluid-soundfont-gm`.")
    fonts = [Path(font) for font in soundfonts]
    if not fonts:
        raise ConfigError("No soundfont given: pass at least one General MIDI SoundFont.")
    for font in fonts:
        if not font.is_file():
            raise ConfigError(f"SoundFont {font} not found: `apt-get install fluid-soundfont-gm timgm6mb-soundfont "
                              "musescore-general-soundfont` installs those of GM_SOUNDFONTS.")
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(f"Rendering needs {module}: `pip install music21 mido`.") from None
    return fonts


def record_render(flac: str | os.PathLike, record: dict, render: Callable[[], dict], min_seconds: float) -> dict:
    """Run one piece's render and write its record, ``flac`` with ``.json``; a failure is recorded, not raised.

    ``render()`` writes ``flac`` and returns facts with its ``duration``; they are
    added to a copy of ``record`` with ``status`` ``'ok'``, or ``status``
    ``'failed'`` and the ``error`` when it raises or the audio is shorter than
    ``min_seconds`` (the FLAC is then removed).

    Parameters
    ----------
    flac : str or path-like
    record : dict
        What the record holds besides the render's facts.
    render : callable
        No arguments; returns a dict with ``duration``.
    min_seconds : float

    Returns
    -------
    dict
        The record written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> flac = pathlib.Path(tempfile.mkdtemp()) / "a.flac"
    >>> record = record_render(flac, {"piece": "a"}, lambda: {"duration": 1.0}, min_seconds=2.0)
    >>> record["status"], record["error"], flac.with_suffix(".json").exists()
    ('failed', 'RuntimeError: only 1.0 s of audio (minimum 2 s)', True)
    """
    record = dict(record)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            record.update(render())
        if record["duration"] < min_seconds:
            Path(flac).unlink(missing_ok=True)
            raise RuntimeError(f"only {record['duration']:.1f} s of audio (minimum {min_seconds:.0f} s)")
        record["status"] = "ok"
    except Exception as err:  # one bad piece must not stop a corpus build; the record keeps the error
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
    with atomic_path(Path(flac).with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(record, sort_keys=True))
    return record


def render_pieces(jobs: list[dict], render_job: Callable[[dict], dict], workers: int, name: str) -> list[dict]:
    """Render the pieces that have no record yet, in ``workers`` processes, and return every piece's record.

    Each job is a dict with a ``flac`` path; ``render_job(job)`` renders it and
    writes its record (:func:`record_render`). A piece with a record, failed or
    not, is never rendered again, so an interrupted build resumes where it stopped.

    Parameters
    ----------
    jobs : list of dict
    render_job : callable
        A picklable function of one job.
    workers : int
    name : str
        The corpus, for the log.

    Returns
    -------
    list of dict
        The records, in job order.

    Examples
    --------
    >>> render_pieces([], record_render, workers=1, name="music21")
    []
    """
    todo = [job for job in jobs if not Path(job["flac"]).with_suffix(".json").exists()]
    logger.info("%s: %d pieces, %d to render", name, len(jobs), len(todo))
    started = time.perf_counter()
    for done, (job, record) in enumerate(zip(todo, parallel_map(render_job, todo, workers)), 1):
        if record["status"] != "ok":
            logger.warning("%s: %s failed: %s", name, job["flac"], record["error"])
        if done % 25 == 0:
            logger.info("%s: %d / %d rendered (%.0f s)", name, done, len(todo), time.perf_counter() - started)
    return [json.loads(Path(job["flac"]).with_suffix(".json").read_text()) for job in jobs]


def _render_job(job: dict) -> dict:
    record = {"relative": job["relative"], "style": job["style"], "program": job["program"], "bpm": job["bpm"],
              "soundfont": Path(job["soundfont"]).name}
    return record_render(job["flac"], record, lambda: render_score(
        job["relative"], job["flac"], program=job["program"], bpm=job["bpm"], max_seconds=job["max_seconds"],
        soundfont=job["soundfont"]), job["min_seconds"])


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


def _rewrite_midi(source: Path, target: Path, *, program: int | None, bpm: float | None,
                  max_seconds: float) -> float:
    """Cut at ``max_seconds``; with ``program``, that program on every channel (drums moved off channel 10);
    with ``bpm``, tempi scaled to start at ``bpm``.

    Returns the mean tempo of the kept part in quarter notes per minute.
    """
    import mido

    midi = read_midi(source)
    if midi.type == 2:
        raise RuntimeError("MIDI type 2 (independent sequences) is not supported.")
    events, tick = [], 0
    for message in mido.merge_tracks(midi.tracks):
        tick += message.time
        events.append((tick, message))
    first_tempo = next((m.tempo for t, m in events if m.type == "set_tempo" and t == 0), 500000)
    scale = mido.bpm2tempo(bpm) / first_tempo if bpm is not None else 1.0
    used = sorted({m.channel for _, m in events if m.type in ("note_on", "note_off")})
    spare = [c for c in range(16) if c != 9 and c not in used]
    remap = {9: spare[0]} if program is not None and 9 in used and spare else {}
    channels = sorted({remap.get(c, c) for c in used}) if program is not None else []
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
        elif program is not None and (message.type == "program_change" or
                                      (message.type == "control_change" and message.control in (0, 32))):
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
    return 60.0 * _quarters_in(out, seconds) / seconds if seconds > 0 else float(bpm or mido.tempo2bpm(first_tempo))


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
