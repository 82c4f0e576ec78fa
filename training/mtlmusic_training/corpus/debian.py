"""More recorded music for the open corpus: the game-data packages of Debian listed in ``debian-music-packages.csv``.

The package list ships with the code (:data:`PACKAGE_LIST`, one row per package
and kind: ``recorded`` audio, ``tracker`` modules or ``midi``). :func:`fetch_packages`
downloads and extracts packages without installing them (``apt-get download``,
``dpkg -x``) and unpacks the zip archives that hold music (0ad's ``public.zip``,
``.pk3``, ``.love``), keeping only their audio members. :func:`build_debian_corpus`
lists every piece of music of at least 30 s in each package's music folder as a
track of class ``<package>``, with its licence, and writes ``debian.csv`` (the
columns of ``soundtracks.csv`` plus ``kind``, ``licence_source`` and ``sha256``)
and ``debian-skipped.csv`` (each file left out and why). :func:`excerpt_windows`
lists the 30 s excerpts that the study trains on; splits stay by track and group
(:func:`~mtlmusic_training.corpus.splits.split_tracks`), never by excerpt.

Reserved packages (:data:`RESERVED_PACKAGES`) are kept for independent evaluation
and are refused wherever they appear; ``freedroid-data`` (remixes of commercial
game tunes) is left out.

Examples
--------
>>> table = read_package_list(kinds=("recorded",))
>>> len(table), table["package"].iloc[0]
(85, '0ad-data')
>>> report = fetch_packages(table["package"], "~/open-music-debian")  # doctest: +SKIP
>>> tracks = build_debian_corpus("~/open-music-debian/x", "corpus")  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mtlmusic.audio import AUDIO_EXTENSIONS, TRACKER_EXTENSIONS, audio_info
from mtlmusic.errors import AudioError, ConfigError
from mtlmusic.files import file_sha256

from ._io import METADATA_COLUMNS, write_table
from .soundtracks import composer_of, read_tags, dep5_licence, package_copyright

logger = logging.getLogger(__name__)

#: The package list shipped with the code (columns package, kind, tracks_30s, minutes, format, licence, folder, notes).
PACKAGE_LIST = Path(__file__).with_name("debian-music-packages.csv")
#: Packages kept for independent evaluation: never trained on, never fitted, never tuned on.
RESERVED_PACKAGES = frozenset({"supertux-data", "supertuxkart-data", "widelands-data", "hedgewars-data",
                               "megaglest-data", "drascula-music"})
#: Packages left out of the corpus, with the reason.
EXCLUDED_PACKAGES = {"freedroid-data": "its modules are remixes of old commercial game tunes (doubtful provenance)"}
#: Kinds of music of the package list that :func:`build_debian_corpus` reads (``midi`` needs rendering first).
DEBIAN_KINDS = ("recorded", "tracker")
#: Zip archives that may hold music; their audio members are unpacked into ``<archive>.d/``.
ARCHIVE_SUFFIXES = (".zip", ".pk3", ".love", ".data")
#: Files of a package left out although they are long enough, as (package, pattern on the path, reason):
#: slowed or layered variants of one piece, instrument stems and ambience (notes of the package list).
LEFT_OUT_RULES = (
    ("holotz-castle-data", r"_(Ultra)?Slow\.[^/]+$", "slowed variant of the same theme"),
    ("glob2-data", r"(^|/)a[23]\.[^/]+$", "layered variant of a1 (same piece, same length)"),
    ("warmux-data", r"(^|/)Apnee2\.[^/]+$", "variant of Apnee (same piece, same length)"),
    ("fretsonfire-songs-sectoid", r"(^|/)guitar\.ogg$", "guitar stem of song.ogg"),
    ("fretsonfire-songs-muldjord", r"(^|/)guitar\.ogg$", "guitar stem of song.ogg"),
    ("plee-the-bear-data", r"(^|/)sequencer/", "instrument stems"),
    ("redeclipse-data", r"/ambience/", "ambience, not music"),
    ("lugaru-data", r"/(DesertAmbient|Wind)\.[^/]+$", "ambience, not music"),
)
#: Names of a package that belong to the group of another piece, as (package, pattern on the name, replacement):
#: variants that the notes of the package list suspect, kept as tracks but never split apart.
GROUP_RULES = (
    ("ardentryst", r"(_raw|2)$", ""),
    ("seahorse-adventures", r"^title$", "5"),
)
#: Upstream files that give the licence of each piece of music of a package (``- author: / license: / music:``
#: lists), read before ``debian/copyright``.
UPSTREAM_LICENCE_FILES = {"naev-data": "usr/share/naev/dat/snd/SOUND_LICENSE.yaml"}
#: Headerless raw PCM; not decodable by path, so left out (``ffmpeg -f u8 -ar 22050 -ac 2 -i f.raw`` reads it).
RAW_SUFFIXES = frozenset({".raw"})

_RECORDED_SUFFIXES = frozenset(AUDIO_EXTENSIONS - TRACKER_EXTENSIONS)
_INSTALL_BASES = ("", "usr/share/games", "usr/share", "usr/games", "usr/lib/games", "usr/lib")
_SKIPPED_COLUMNS = ("package", "path", "reason")


def read_package_list(path: str | os.PathLike | None = None, kinds: Sequence[str] | None = None):
    """Read the list of Debian packages with music, refusing reserved packages.

    Parameters
    ----------
    path : str or path-like, optional
        A CSV with the columns of :data:`PACKAGE_LIST` (the default).
    kinds : sequence of str, optional
        Keep only these kinds (``recorded``, ``tracker``, ``midi``); default: all.

    Returns
    -------
    pandas.DataFrame
        One row per package and kind, in the list's order, without the packages of
        :data:`EXCLUDED_PACKAGES`; text columns as strings (``''`` where empty).

    Raises
    ------
    ConfigError
        If the list names a package of :data:`RESERVED_PACKAGES` or an unknown kind.

    Examples
    --------
    >>> table = read_package_list(kinds=("tracker",))
    >>> table["package"].iloc[0], "freedroid-data" in set(table["package"])
    ('ironseed-data', False)
    """
    import pandas as pd

    source = Path(path) if path is not None else PACKAGE_LIST
    if not source.exists():
        raise ConfigError(f"{source}: no such package list; pass the path of a debian-music-packages.csv.")
    table = pd.read_csv(source, dtype=str, keep_default_na=False)
    for column in ("tracks_30s", "minutes"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    reserved = sorted(set(table["package"]) & RESERVED_PACKAGES)
    if reserved:
        raise ConfigError(f"{source} lists {', '.join(reserved)}, reserved for independent evaluation: remove them "
                          "from the list (never train, fit targets or tune on them).")
    unknown = sorted(set(table["kind"]) - {"recorded", "tracker", "midi"})
    if unknown:
        raise ConfigError(f"{source}: unknown kinds {unknown}; use recorded, tracker or midi.")
    table = table[~table["package"].isin(EXCLUDED_PACKAGES)]
    if kinds is not None:
        table = table[table["kind"].isin(kinds)]
    return table.reset_index(drop=True)


def fetch_packages(packages: Iterable[str], dest: str | os.PathLike) -> dict[str, str]:
    """Download Debian packages and extract them, without installing them; resumable.

    Each package is downloaded with ``apt-get download`` into ``dest/debs/`` (unless
    a ``<package>_*.deb`` is already there), extracted with ``dpkg -x`` and its zip
    archives holding music unpacked (:func:`unpack_archives`) into a temporary folder
    that is then renamed ``dest/x/<package>/``: a package whose folder exists is
    done and skipped. A failure is logged and reported, and the others go on.

    Parameters
    ----------
    packages : iterable of str
        Package names (run ``apt-get update`` once before).
    dest : str or path-like
        The download folder.

    Returns
    -------
    dict
        ``{package: status}`` with status ``'extracted'``, ``'present'`` or ``'failed: <reason>'``.

    Raises
    ------
    ConfigError
        If a package is reserved (:data:`RESERVED_PACKAGES`).

    Examples
    --------
    >>> fetch_packages(["singularity-music"], "~/open-music-debian")  # doctest: +SKIP
    {'singularity-music': 'extracted'}
    """
    names = list(dict.fromkeys(packages))
    reserved = sorted(set(names) & RESERVED_PACKAGES)
    if reserved:
        raise ConfigError(f"{', '.join(reserved)}: reserved for independent evaluation; do not fetch them for the "
                          "corpus.")
    root = Path(dest).expanduser()
    debs, extracted = root / "debs", root / "x"
    debs.mkdir(parents=True, exist_ok=True)
    extracted.mkdir(parents=True, exist_ok=True)
    report = {}
    for package in names:
        target = extracted / package
        if target.is_dir():
            report[package] = "present"
            continue
        try:
            deb = _download(package, debs)
            partial = extracted / f".{package}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            _run(["dpkg", "-x", str(deb), str(partial)], f"dpkg -x {deb.name}")
            unpack_archives(partial)
            partial.rename(target)
            report[package] = "extracted"
        except (ConfigError, OSError, zipfile.BadZipFile) as err:
            logger.warning("%s: %s", package, err)
            report[package] = f"failed: {err}"
    failed = [name for name, status in report.items() if status.startswith("failed")]
    if failed:
        logger.warning("%d of %d packages failed (%s); run fetch_packages again to retry them.",
                       len(failed), len(names), ", ".join(failed))
    return report


def unpack_archives(package_root: str | os.PathLike) -> list[Path]:
    """Unpack the audio members of the zip archives of an extracted package into ``<archive>.d/``.

    Archives are the files ending in :data:`ARCHIVE_SUFFIXES` that are zip files
    (0ad's ``public.zip``, Quake-style ``.pk3``, LÖVE's ``.love``, blockattack's
    ``.data``). Only members with an audio extension are written; an archive whose
    ``.d`` folder exists is skipped.

    Parameters
    ----------
    package_root : str or path-like
        A ``dpkg -x`` extraction.

    Returns
    -------
    list of Path
        The ``.d`` folders written now.

    Examples
    --------
    >>> unpack_archives("~/open-music-debian/x/0ad-data")  # doctest: +SKIP
    [PosixPath('.../usr/share/games/0ad/mods/public/public.zip.d')]
    """
    written = []
    for archive in sorted(Path(package_root).expanduser().rglob("*")):
        if archive.suffix.lower() not in ARCHIVE_SUFFIXES or not archive.is_file() or not zipfile.is_zipfile(archive):
            continue
        folder = archive.with_name(archive.name + ".d")
        if folder.exists():
            continue
        partial = archive.with_name(archive.name + ".d.partial")
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.namelist() if Path(m).suffix.lower() in AUDIO_EXTENSIONS | RAW_SUFFIXES]
            if not members:
                continue
            zf.extractall(partial, members=members)
        partial.rename(folder)
        written.append(folder)
    return written


def music_folders(package_root: str | os.PathLike, folder: str) -> list[Path]:
    """The music folders of an extracted package, from the ``folder`` column of the package list.

    The column holds one or more folders separated by ``;``, relative to the
    package root or to ``usr/share/games``, ``usr/share``, ``usr/games``,
    ``usr/lib/games`` or ``usr/lib``; a folder ending in ``(+N more)`` stands for
    its parent. A component ``X.d`` is an unpacked archive (:func:`unpack_archives`)
    and matches any ``*.d`` folder there.

    Parameters
    ----------
    package_root : str or path-like
    folder : str

    Returns
    -------
    list of Path
        The folders found (empty if none).

    Examples
    --------
    >>> music_folders("x/0ad-data", "0ad/mods/public/public.zip.d/audio/music")  # doctest: +SKIP
    [PosixPath('x/0ad-data/usr/share/games/0ad/mods/public/public.zip.d/audio/music')]
    """
    root = Path(package_root)
    found: list[Path] = []
    for entry in (part.strip() for part in folder.split(";")):
        if not entry:
            continue
        more = re.search(r"\s*\(\+\d+ more\)$", entry)
        relative = str(Path(entry[:more.start()]).parent) if more else entry
        candidates = [root / base / relative for base in _INSTALL_BASES]
        hits = [c for c in candidates if c.is_dir()]
        if not hits:
            pattern = "*/" + "/".join("*.d" if part.endswith(".d") else part for part in Path(relative).parts)
            hits = sorted(p for p in root.rglob("*") if p.is_dir()
                          and fnmatch.fnmatchcase("/" + p.relative_to(root).as_posix(), pattern))
        for hit in hits[:1]:
            if hit not in found:
                found.append(hit)
    return found


def build_debian_corpus(source_root: str | os.PathLike, out_dir: str | os.PathLike,
                        kinds: Sequence[str] = DEBIAN_KINDS, *, min_seconds: float = 30.0,
                        packages: Sequence[str] | None = None, package_list: str | os.PathLike | None = None):
    """List the music of extracted Debian game-data packages and write ``debian.csv``.

    For each row of the package list (in its order) of the given kinds, every file
    of the row's music folders (:func:`music_folders`) with an audio extension of
    that kind (tracker modules for ``tracker``, the others for ``recorded``) and
    at least ``min_seconds`` long becomes a track whose class is the package. Left
    out, with the reason in ``debian-skipped.csv``: shorter files (sound effects,
    jingles), undecodable ones, byte-identical copies of an earlier track (the
    first in package order stays), the variants, stems and ambience of
    :data:`LEFT_OUT_RULES` and headerless raw PCM.

    The licence comes from the upstream per-track list of :data:`UPSTREAM_LICENCE_FILES`
    where there is one (``licence_source`` its file name), else from the package's
    ``usr/share/doc/<package>/copyright`` when it is machine-readable (DEP-5) and a
    stanza matches the file (:func:`~mtlmusic_training.corpus.soundtracks.licence_for`);
    ``licence_source`` is then ``'copyright'``, or ``'copyright Files: *'`` when only
    the package-wide stanza matched. Otherwise it is the package list's licence
    column (``licence_source`` ``'package list'``).

    Parameters
    ----------
    source_root : str or path-like
        The ``x/`` folder of :func:`fetch_packages` (one extraction per package).
    out_dir : str or path-like
        The corpus folder; ``debian.csv`` and ``debian-skipped.csv`` are written there.
    kinds : sequence of str
        ``recorded`` and/or ``tracker``.
    min_seconds : float
    packages : sequence of str, optional
        Only these packages; default: every package of the list.
    package_list : str or path-like, optional
        Default :data:`PACKAGE_LIST`.

    Returns
    -------
    pandas.DataFrame
        One row per track: ``track_id`` (``<package>/<path in the music folders
        without extension>``), ``path`` (absolute), the :data:`METADATA_COLUMNS`
        (``corpus`` ``'soundtrack'``, ``soundtrack`` the package, ``composer`` from
        the tags, ``group`` the piece: files of one folder and name, such as a
        module and its recording, share it, and :data:`GROUP_RULES` join
        suspected variants) and ``kind``, ``licence_source``, ``sha256``.

    Raises
    ------
    ConfigError
        If ``source_root`` is not a folder, a kind is unknown or ``midi``, or a
        package is reserved.

    Examples
    --------
    >>> table = build_debian_corpus("~/open-music-debian/x", "corpus")  # doctest: +SKIP
    >>> table.groupby("licence")["duration"].sum() / 60  # doctest: +SKIP
    """
    import pandas as pd

    root = Path(source_root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder of extracted packages; run fetch_packages first.")
    bad = sorted(set(kinds) - set(DEBIAN_KINDS))
    if bad:
        raise ConfigError(f"kinds {bad} not supported: use {DEBIAN_KINDS} (MIDI must be rendered to audio first).")
    if packages is not None and set(packages) & RESERVED_PACKAGES:
        raise ConfigError(f"{sorted(set(packages) & RESERVED_PACKAGES)}: reserved for independent evaluation.")
    listed = read_package_list(package_list, kinds=kinds)
    if packages is not None:
        listed = listed[listed["package"].isin(packages)]
    rows, skipped, seen = [], [], {}
    for entry in listed.itertuples(index=False):
        package_root = root / entry.package
        if not package_root.is_dir():
            skipped.append((entry.package, "", f"not extracted under {root}: run fetch_packages"))
            continue
        folders = music_folders(package_root, entry.folder)
        if not folders:
            skipped.append((entry.package, "", f"music folder {entry.folder!r} not found in the package"))
            continue
        suffixes = TRACKER_EXTENSIONS if entry.kind == "tracker" else _RECORDED_SUFFIXES | RAW_SUFFIXES
        files = sorted({p for f in folders for p in f.rglob("*") if p.is_file() and p.suffix.lower() in suffixes})
        base = Path(os.path.commonpath(folders))
        copyright_text = package_copyright(package_root, entry.package)
        upstream = _upstream_licences(package_root, entry.package)
        for path in files:
            relative = path.relative_to(package_root).as_posix()
            reason = _variant_reason(entry.package, relative)
            if reason is None and path.suffix.lower() in RAW_SUFFIXES:
                reason = "headerless raw PCM: convert with ffmpeg -f u8 -ar 22050 -ac 2 -i FILE out.flac"
            if reason is None:
                reason, duration = _duration_reason(path, min_seconds)
            if reason is None:
                digest = file_sha256(path)
                reason = f"byte-identical to {seen[digest]}" if digest in seen else None
            if reason is not None:
                skipped.append((entry.package, str(path.resolve()), reason))
                continue
            name = path.relative_to(base).with_suffix("").as_posix()
            track_id = f"{entry.package}/{name}"
            if track_id in seen.values():
                track_id = f"{entry.package}/{path.relative_to(base).as_posix()}"
            seen[digest] = track_id
            licence, source = upstream.get(path.name) or _licence(copyright_text, relative, entry.licence)
            tags = read_tags(path)
            rows.append({
                "track_id": track_id, "path": str(path.resolve()), "corpus": "soundtrack",
                "soundtrack": entry.package, "composer": composer_of(tags), "style": "", "program": -1,
                "bpm_label": math.nan, "duration": round(float(duration), 3), "licence": licence,
                "title": tags.get("title", ""), "group": f"{entry.package}/{_group_name(entry.package, name)}",
                "kind": entry.kind, "licence_source": source, "sha256": digest,
            })
    table = pd.DataFrame(rows, columns=["track_id", "path", *METADATA_COLUMNS[1:], "kind", "licence_source",
                                        "sha256"])
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    write_table(table, out / "debian.csv")
    write_table(pd.DataFrame(skipped, columns=list(_SKIPPED_COLUMNS)), out / "debian-skipped.csv")
    logger.info("%d Debian tracks, %.0f minutes, %d files left out", len(table), table["duration"].sum() / 60,
                len(skipped))
    return table


def excerpt_windows(table, seconds: float = 30.0, per_track: int = 4, seed: int = 0):
    """The excerpts of each track: non-overlapping windows of ``seconds``, at most ``per_track`` of them.

    A track of duration ``d`` has ``floor(d / seconds)`` windows starting at
    ``0, seconds, 2 seconds, ...``; when there are more than ``per_track``, a
    sample of them is drawn with a generator seeded by ``seed`` and the track id
    (independent of row order). Excerpts are a unit of training only: split by
    track or group, never by excerpt.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``track_id`` and ``duration`` (seconds), e.g. from :func:`build_debian_corpus`.
    seconds : float
    per_track : int
    seed : int

    Returns
    -------
    pandas.DataFrame
        Columns ``track_id, start, duration``, by track in table order and by start.

    Examples
    --------
    >>> import pandas as pd
    >>> excerpt_windows(pd.DataFrame({"track_id": ["a", "b"], "duration": [65.0, 20.0]})).values.tolist()
    [['a', 0.0, 30.0], ['a', 30.0, 30.0]]
    """
    import pandas as pd

    if seconds <= 0 or per_track < 1:
        raise ConfigError(f"seconds ({seconds}) must be positive and per_track ({per_track}) at least 1.")
    rows = []
    for track_id, duration in zip(table["track_id"], table["duration"]):
        count = int(duration // seconds) if duration == duration else 0
        starts = np.arange(count) * float(seconds)
        if count > per_track:
            rng = np.random.default_rng([seed, *str(track_id).encode()])
            starts = np.sort(rng.choice(starts, size=per_track, replace=False))
        rows.extend((track_id, float(start), float(seconds)) for start in starts)
    return pd.DataFrame(rows, columns=["track_id", "start", "duration"])


def _download(package: str, debs: Path) -> Path:
    existing = sorted(debs.glob(f"{package}_*.deb"))
    if not existing:
        _run(["apt-get", "download", package], f"apt-get download {package}", cwd=debs)
        existing = sorted(debs.glob(f"{package}_*.deb"))
    if not existing:
        raise ConfigError(f"apt-get download {package} left no {package}_*.deb in {debs}.")
    return existing[-1]


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise ConfigError(f"{what}: {cmd[0]} not found; run this on Debian or Ubuntu.") from err
    if result.returncode != 0:
        lines = (result.stderr or result.stdout or "").strip().splitlines()
        raise ConfigError(f"{what} failed ({lines[-1] if lines else f'exit {result.returncode}'}); "
                          "check the package name and run apt-get update.")


def _licence(copyright_text: str, relative: str, listed: str) -> tuple[str, str]:
    """(licence, licence_source) of a file: a matching DEP-5 stanza, else the package list's licence."""
    matched = dep5_licence(copyright_text, relative)
    if matched:
        licence, pattern = matched
        return licence, "copyright Files: *" if pattern == "*" else "copyright"
    return listed, "package list"


def _upstream_licences(package_root: Path, package: str) -> dict[str, tuple[str, str]]:
    """``{file name: (licence, source)}`` from a package's upstream list of music licences, if it has one."""
    if package not in UPSTREAM_LICENCE_FILES:
        return {}
    path = package_root / UPSTREAM_LICENCE_FILES[package]
    if not path.exists():
        logger.warning("%s: %s not found; the music's licences come from debian/copyright", package, path.name)
        return {}
    licences, licence, in_music = {}, "", False
    for line in path.read_text(errors="replace").splitlines():
        key = line.strip()
        if line.startswith("- "):
            licence, in_music = "", False
        elif key.startswith("license:"):
            licence = _short_licence(key.split(":", 1)[1])
        elif key.endswith(":"):
            in_music = key == "music:"
        elif in_music and key.startswith("- ") and licence:
            licences[key[2:].strip()] = (licence, path.name)
    return licences


def _short_licence(text: str) -> str:
    """Debian-style short names for upstream wordings: ``GPLv3 / CC-by 3`` -> ``GPL-3 or CC-BY-3.0``."""
    names = []
    for part in re.split(r"\s*(?:/|\bor\b)\s*", text.strip()):
        part = re.sub(r"^GPLv(\d)", r"GPL-\1", part.strip())
        cc = re.fullmatch(r"(?i)cc-(by(?:-sa)?)\s*(\d)(?:\.(\d))?", part)
        if cc:
            part = f"CC-{cc.group(1).upper()}-{cc.group(2)}.{cc.group(3) or 0}"
        names.append({"CC0": "CC0-1.0", "PD": "public-domain"}.get(part, part))
    return " or ".join(names)


def _variant_reason(package: str, relative: str) -> str | None:
    for name, pattern, reason in LEFT_OUT_RULES:
        if name == package and re.search(pattern, relative):
            return reason
    return None


def _duration_reason(path: Path, min_seconds: float) -> tuple[str | None, float]:
    try:
        duration = audio_info(path).duration
    except AudioError as err:
        return f"undecodable: {err}", math.nan
    if not duration >= min_seconds:
        return f"shorter than {min_seconds:g} s ({duration:.1f} s)", duration
    return None, duration


def _group_name(package: str, name: str) -> str:
    """The piece a file belongs to: fretsonfire songs are their folder, other files their name after GROUP_RULES."""
    if package.startswith("fretsonfire-songs-"):
        return str(Path(name).parent)
    for rule_package, pattern, replacement in GROUP_RULES:
        if rule_package == package:
            folder, stem = os.path.split(name)
            name = os.path.join(folder, re.sub(pattern, replacement, stem))
    return name
