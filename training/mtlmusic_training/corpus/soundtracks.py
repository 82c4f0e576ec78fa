"""The soundtrack part of the open corpus: tracks of extracted Debian soundtrack packages and their licences.

Every audio file of a package is a track whose class is the package; its
composer comes from its tags (read with ffprobe) and its licence from the
package's ``debian/copyright`` file (:func:`licence_for`). The audio stays where
``dpkg -x`` put it: ``soundtracks.csv`` holds absolute paths.

Examples
--------
>>> licence_for("under the GNU General Public License version 3 or any later version", "music/a.ogg")
'GPL-3+'
>>> table = build_soundtrack_corpus("~/open-music/x", "corpus")  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from mtlmusic.audio import AUDIO_EXTENSIONS, audio_info
from mtlmusic.errors import AudioError, ConfigError

from ._io import METADATA_COLUMNS, write_table

logger = logging.getLogger(__name__)

#: The Debian packages of the soundtrack corpus (each package is one soundtrack class).
SOUNDTRACK_PACKAGES = ("warzone2100-music", "ufoai-music", "planetblupi-music-ogg", "wesnoth-1.16-music",
                       "nexuiz-music", "singularity-music", "hyperrogue-music", "asc-music")

_AUDIO_SUFFIXES = frozenset(AUDIO_EXTENSIONS)


def build_soundtrack_corpus(source_root: str | os.PathLike, out_dir: str | os.PathLike, *,
                            min_seconds: float = 30.0, packages: Sequence[str] | None = None):
    """List the tracks of extracted Debian soundtrack packages and write ``soundtracks.csv``.

    Every audio file of at least ``min_seconds`` under ``<source_root>/<package>/``
    becomes a track. The audio is not copied: the table holds absolute paths.

    Parameters
    ----------
    source_root : str or path-like
        A folder with one ``dpkg -x`` extraction per package (``x/`` in the recipe
        of :mod:`mtlmusic_training.corpus`), ``.pk3`` archives already unzipped.
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
                          "mtlmusic_training.corpus.")
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
        copyright_text = package_copyright(folder, package)
        for path in files:
            try:
                duration = audio_info(path).duration
            except AudioError as err:
                logger.warning("skipping %s: %s", path, err)
                continue
            if not duration >= min_seconds:
                continue
            tags = read_tags(path)
            relative = path.relative_to(folder).as_posix()
            rows.append({
                "track_id": f"{package}/{path.relative_to(base).with_suffix('').as_posix()}",
                "path": str(path.resolve()),
                "corpus": "soundtrack",
                "soundtrack": package,
                "composer": composer_of(tags),
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
    write_table(table, out / "soundtracks.csv")
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
    matched = dep5_licence(copyright_text, relative_path)
    if matched:
        return matched[0]
    lowered = copyright_text.lower()
    if "creative commons" in lowered and "sharealike" in lowered.replace("-", "").replace(" ", ""):
        version = re.search(r"attribution-sharealike\s+(\d\.\d)", lowered)
        return f"CC-BY-SA-{version.group(1) if version else '3.0'}"
    if "gnu general public license" in lowered:
        version = re.search(r"general public license[^.]*?version\s+(\d)", lowered, flags=re.S)
        number = version.group(1) if version else "2"
        return f"GPL-{number}+" if "any later version" in lowered else f"GPL-{number}"
    return "unknown"


def package_copyright(package_root: Path, package: str) -> str:
    """The text of an extracted package's ``usr/share/doc/<package>/copyright`` (empty when it has none)."""
    path = package_root / "usr" / "share" / "doc" / package / "copyright"
    return path.read_text(errors="replace") if path.exists() else ""


def dep5_licence(copyright_text: str, relative_path: str) -> tuple[str, str] | None:
    """``(licence, pattern)`` of the machine-readable (DEP-5) stanza that covers a file, or None.

    The last ``Files:`` stanza with a named licence and a pattern matching the end
    of ``relative_path`` wins, as in DEP-5; ``pattern`` is the one that matched.

    >>> text = "Format: .../copyright-format/1.0/\\n\\nFiles: *\\nLicense: GPL-2+\\n"
    >>> dep5_licence(text, "usr/share/x/a.ogg"), dep5_licence("free-form text", "a.ogg")
    (('GPL-2+', '*'), None)
    """
    if "copyright-format" not in copyright_text or "Files:" not in copyright_text:
        return None
    found = None
    for stanza in re.split(r"\n\s*\n", copyright_text):
        fields = _dep5_fields(stanza)
        name = fields.get("license", "").strip().split("\n")[0].strip()
        if "files" not in fields or not name:
            continue
        for pattern in fields["files"].split():
            if fnmatch.fnmatchcase(relative_path, pattern) or fnmatch.fnmatchcase(relative_path, "*/" + pattern):
                found = (name, pattern)
                break
    return found


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


def read_tags(path: Path) -> dict[str, str]:
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


def composer_of(tags: Mapping[str, str]) -> str:
    """The composer named by a file's tags (``composer``, else ``artist``), leaving out web addresses.

    >>> composer_of({"artist": "Jeroen Tel"}), composer_of({"artist": "www.example.org"})
    ('Jeroen Tel', '')
    """
    for key in ("composer", "artist"):
        value = tags.get(key, "")
        if value and not value.startswith(("<", "www.", "http")):
            return value
    return ""

