"""Training data: a generic manifest of tracks and adapters that read the published MSD and FMA layouts.

A :class:`Manifest` lists the training corpus: one row per track with its id,
its audio file and its split (``train``, ``valid`` or ``test``), saved as a CSV
file with the columns ``track_id,path,split``. An adapter reads a published
dataset into a :class:`PreparedDataset`: the manifest plus, per learning
source, the raw input that :func:`mtlmusic_training.targets.compute_targets`
takes, row ``i`` always being manifest track ``i``:

=========  ==========================================================================
source     raw input
=========  ==========================================================================
tag        ``scipy.sparse.csr_matrix`` track x tag counts
taste      ``csr_matrix`` track x user play counts
cdr_tag    ``csr_matrix`` binary track x genre
lyrics     ``csr_matrix`` track x word counts (TF-IDF is applied by the targets)
bpm, year  float64 array, NaN where unknown
artist     ``(labels, counts)``: the artist label of each track (``""`` when
           unknown: no target) and a track x tag matrix whose rows sum, artist by
           artist, to the artist's profile: its tags pooled over all its tracks
           (MSD: in ``lastfm_tags.db``; FMA: of the size read), not only over the
           manifest's. The profile sits on the artist's first manifest track; the
           artist's other rows are empty. ``artist_plsa`` sums an artist's rows,
           so it sees the profile.
=========  ==========================================================================

``self`` needs nothing but the audio, so it is never among the sources. The
column names of each matrix are in :attr:`PreparedDataset.vocabularies`: the
terms the manifest's tracks use for ``tag``, ``taste`` and ``cdr_tag``, the
whole word list for ``lyrics`` and the whole tag vocabulary for ``artist``.

Both adapters keep the tracks with audio that have data for every source in
``require`` and for at least one source. ``require="all"`` (every source
given) is the paper's selection: every task then trains on the same tracks,
and ``l`` of the epoch length ``L = l x m`` is the same for every run. The
report counts the tracks with audio that have each source (``with_<source>``)
and all of them (``with_every_source``: the intersection), the tracks kept
(``tracks``) and those left out (``tracks_left_out``).

Million Song Dataset (:func:`load_msd`)
    * audio: the 30 s previews anywhere under a folder, nested like the MSD
      itself (``<root>/A/B/C/TRABC....mp3``, letters 3 to 5 of the id) or flat,
      named ``<TRACK_ID>.<ext>`` or by 7digital track id (``<id>.clip.mp3`` or
      ``<id>.mp3``; matched through the ``track_7digitalid`` of the metadata).
      :func:`find_msd_audio` counts every file it matches, leaves out or cannot
      match, with the reason.
    * ``tag``: Last.fm ``lastfm_tags.db`` (SQLite). Its published schema is
      ``tids(tid TEXT)``, ``tags(tag TEXT)``, ``tid_tag(tid INT, tag INT, val FLOAT)``,
      where ``tid_tag.tid`` and ``tid_tag.tag`` are the ``ROWID`` of a row of
      ``tids`` and ``tags`` and ``val`` is Last.fm's 0-100 tag weight, used as
      the count (weights of 0 are dropped).
    * ``taste``: Echo Nest Taste Profile ``train_triplets.txt`` (``user \\t song_id
      \\t play_count``) with ``unique_tracks.txt`` (``track_id<SEP>song_id<SEP>artist
      <SEP>title``) mapping songs to tracks; a song maps to every track of it.
      Pairs listed in the published ``sid_mismatches.txt`` (``ERROR: <SONG TRACK>
      ...``), songs matched to the wrong track, can be excluded.
    * ``lyrics``: musiXmatch ``mxm_dataset_train.txt`` and ``mxm_dataset_test.txt``
      (both: they hold different tracks): ``#`` comment lines, one
      ``%word,word,...`` line listing the 5,000 words, then
      ``track_id,mxm_track_id,word_index:count,...`` with 1-based word indices.
    * ``year``, ``bpm``, artists and 7digital ids (:func:`read_msd_metadata`),
      from any of

      - ``track_metadata.db`` (SQLite, table ``songs``): ``year``, ``artist_id``
        (and ``track_7digitalid`` where the file has it);
      - ``msd_summary_file.h5`` (HDF5, needs ``h5py``): ``tempo`` and ``track_id``
        of ``/analysis/songs``, ``year`` of ``/musicbrainz/songs``, ``artist_id``
        and ``track_7digitalid`` of ``/metadata/songs``, row by row;
      - a CSV with a header, ``track_id`` and any of ``year``, ``tempo``,
        ``artist_id`` and ``track_7digitalid`` (or ``7digital_id``).

      A year, tempo or 7digital id of 0 is unknown, as in the MSD.
    * ``cdr_tag``: the paper's professional genre annotations are not public;
      tagtraum's ``msd_tagtraum_cd2.cls`` (``track_id \\t majority genre [\\t
      minority genre]``, ``#`` comment lines; both genres are labels) stands in,
      or a CSV ``track_id,genre`` with one row per track and genre.
    * ``artist``: the Last.fm tags of all the tracks of ``lastfm_tags.db`` by
      the artist, pooled (needs the tags and the metadata's ``artist_id``);
      its vocabulary is every tag of the database (522,366, as in the paper).
    * splits: the MSD has none; :func:`assign_splits` draws them from a hash of
      each track id (the paper: 90 % train, 10 % validation).

Free Music Archive (:func:`load_fma`), from the public ``fma_metadata.zip``
and an audio archive ``fma_<size>.zip``:

=========  ==============================================================  ===================
source     FMA field                                                       notes
=========  ==============================================================  ===================
self       audio ``fma_<size>/<id[:3]>/<id>.mp3`` (6-digit zero-padded)    every track
tag        ``tracks.csv`` ``(track, tags)``                                user tags; binary,
                                                                           lower-cased
cdr_tag    ``tracks.csv`` ``(track, genres_all)`` less the top-level       binary; genre
           genres (see below)                                              titles from
                                                                           ``genres.csv``
year       ``tracks.csv`` ``(album, date_released)``                       the year
bpm        ``echonest.csv`` ``(echonest, audio_features, tempo)``          about 13k tracks
artist     ``tracks.csv`` ``(artist, id)`` x the ``tag`` matrix            tags pooled per
                                                                           artist
taste      unavailable: FMA has no listening data                          --
lyrics     unavailable: FMA has no lyrics                                  --
=========  ==============================================================  ===================

FMA's top genre (``(track, genre_top)``) is what the FMA genre evaluation
predicts, on these same tracks, and ``genres_all`` lists it too. So that
``cdr_tag`` does not teach the evaluation's labels, it leaves out every
top-level genre: those whose ``parent`` is 0 in ``genres.csv`` and every title
used as a ``genre_top`` (the report counts them as ``cdr_tag_top_genres_dropped``).
Sub-genres stay: none is an evaluation label, though each belongs to one top-level genre.

``tracks.csv`` has a two-level column header followed by a ``track_id`` row
(``pandas.read_csv(index_col=0, header=[0, 1])``), ``echonest.csv`` a three-level
one; list columns (``tags``, ``genres_all``) are Python literals such as
``"['rock', 'lo-fi']"`` and ``"[21, 38]"``. Splits come from ``(set, split)``
(``training`` / ``validation`` / ``test``) and the tracks from ``(set, subset)``:
a size takes its own subset and the smaller ones (``small`` is within
``medium``, which is within ``large``; ``full`` has the tracks of ``large``).

Examples
--------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> manifest = Manifest(["a", "b"], [folder / "a.mp3", folder / "b.mp3"], ["train", "valid"])
>>> Manifest.load(manifest.save(folder / "manifest.csv")) == manifest
True
>>> manifest.indices("valid").tolist(), manifest.missing_files()
([1], ['a', 'b'])
"""

from __future__ import annotations

import ast
import csv
import hashlib
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mtlmusic.audio import AUDIO_EXTENSIONS
from mtlmusic.errors import ConfigError
from mtlmusic.files import atomic_path

#: The splits a manifest row may belong to.
SPLITS = ("train", "valid", "test")
#: FMA audio archives, and the subsets of ``(set, subset)`` each holds.
FMA_SIZES = {"small": ("small",), "medium": ("small", "medium"), "large": ("small", "medium", "large"),
             "full": ("small", "medium", "large")}
#: Label of tracks without a known artist in the ``artist`` source's input.
UNKNOWN_ARTIST = ""

#: Columns :func:`read_msd_metadata` reads.
MSD_METADATA_COLUMNS = ("year", "tempo", "artist_id", "track_7digitalid")

_MSD_TRACK_ID = re.compile(r"TR[A-Z0-9]{16}")
_SEVEN_DIGITAL_ID = re.compile(r"([0-9]+)(?:\.clip)?")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Sources whose columns are the terms the manifest's tracks use; the others keep a fixed vocabulary.
_USED_TERMS = ("tag", "taste", "cdr_tag")
_MISMATCH = re.compile(r"<(SO[A-Z0-9]{16}) (TR[A-Z0-9]{16})>")
_FMA_SPLITS = {"training": "train", "validation": "valid", "test": "test"}
_FETCH_ROWS = 1 << 16


def check_track_ids(track_ids: Sequence[str]) -> None:
    """Refuse empty or repeated track ids, the keys of manifests, mel caches and targets.

    Raises
    ------
    ConfigError
        Naming the first empty id's position, or some of the repeated ids.

    Examples
    --------
    >>> check_track_ids(["a", "b"])
    >>> check_track_ids(["a", "b", "a"])
    Traceback (most recent call last):
    ...
    mtlmusic.errors.ConfigError: Track ids must be unique; 1 appear more than once, e.g. ['a'].
    """
    ids = [str(track_id) for track_id in track_ids]
    if "" in ids:
        raise ConfigError(f"Row {ids.index('')}: empty track id; every track needs one.")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        repeated = sorted({t for t in ids if t in seen or seen.add(t)})
        raise ConfigError(f"Track ids must be unique; {len(repeated)} appear more than once, e.g. {repeated[:5]}.")


@dataclass(frozen=True)
class Manifest:
    """The tracks of a training corpus: id, audio path and split, row by row.

    Parameters
    ----------
    track_ids : sequence of str
        Unique, non-empty ids.
    paths : sequence of path-like
        Audio file of each track.
    splits : sequence of str
        ``train``, ``valid`` or ``test`` for each track.

    Raises
    ------
    ConfigError
        For sequences of different lengths, empty or repeated ids, empty paths or unknown splits.

    Examples
    --------
    >>> manifest = Manifest(["t1", "t2", "t3"], ["a.wav", "b.wav", "c.wav"], ["train", "train", "test"])
    >>> len(manifest), manifest.indices("train").tolist()
    (3, [0, 1])
    """

    track_ids: tuple[str, ...]
    paths: tuple[Path, ...]
    splits: tuple[str, ...]

    def __post_init__(self):
        ids = tuple(str(track_id) for track_id in self.track_ids)
        paths = tuple(Path(path) for path in self.paths)
        splits = tuple(str(split) for split in self.splits)
        if not len(ids) == len(paths) == len(splits):
            raise ConfigError(f"A manifest needs as many paths and splits as track ids; got {len(ids)} ids, "
                              f"{len(paths)} paths and {len(splits)} splits.")
        check_track_ids(ids)
        if any(str(path) in ("", ".") for path in paths):
            raise ConfigError("Every manifest row needs an audio path.")
        unknown = sorted(set(splits) - set(SPLITS))
        if unknown:
            raise ConfigError(f"Unknown split(s) {unknown} in the manifest; use {', '.join(SPLITS)}.")
        object.__setattr__(self, "track_ids", ids)
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "splits", splits)

    def __len__(self) -> int:
        return len(self.track_ids)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Manifest:
        """Read a manifest CSV (``track_id,path,split``); relative paths are relative to its folder.

        The one reader of ``manifest.csv`` files; a UTF-8 byte-order mark is allowed.

        Raises
        ------
        ConfigError
            If the file is missing, lacks a column, or its rows are not a valid manifest.

        Examples
        --------
        >>> manifest = Manifest.load("data/manifest.csv")  # doctest: +SKIP
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"No manifest at {path}.")
        ids, paths, splits = [], [], []
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = {"track_id", "path", "split"} - set(reader.fieldnames or ())
            if missing:
                raise ConfigError(f"{path}: the header lacks the column(s) {sorted(missing)}; a manifest has "
                                  "track_id,path,split.")
            for row in reader:
                if None in row.values():
                    raise ConfigError(f"{path}, line {reader.line_num}: the row is truncated.")
                ids.append(row["track_id"])
                paths.append(path.parent / row["path"])
                splits.append(row["split"])
        try:
            return cls(ids, paths, splits)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the manifest CSV atomically; paths under its folder are written relative to it.

        Returns
        -------
        Path
            ``path``.

        Examples
        --------
        >>> Manifest(["t1"], ["/music/t1.mp3"], ["train"]).save("manifest.csv")  # doctest: +SKIP
        PosixPath('manifest.csv')
        """
        path = Path(path)
        base = Path(os.path.abspath(path.parent))
        with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["track_id", "path", "split"])
            for track_id, audio, split in zip(self.track_ids, self.paths, self.splits):
                absolute = Path(os.path.abspath(audio))
                text = absolute.relative_to(base).as_posix() if absolute.is_relative_to(base) else str(absolute)
                writer.writerow([track_id, text, split])
        return path

    def items(self) -> list[tuple[str, Path]]:
        """``(track_id, path)`` pairs, the input of :func:`~mtlmusic_training.melcache.build_mel_cache`.

        Examples
        --------
        >>> Manifest(["t1"], ["t1.wav"], ["train"]).items()
        [('t1', PosixPath('t1.wav'))]
        """
        return list(zip(self.track_ids, self.paths))

    def indices(self, split: str) -> np.ndarray:
        """Rows of the tracks of ``split``.

        Examples
        --------
        >>> Manifest(["a", "b"], ["a.wav", "b.wav"], ["valid", "train"]).indices("train").tolist()
        [1]
        """
        if split not in SPLITS:
            raise ConfigError(f"Unknown split {split!r}; use {', '.join(SPLITS)}.")
        return np.flatnonzero(np.asarray(self.splits, dtype=object) == split)

    def splits_of(self, track_ids: Iterable[str]) -> np.ndarray:
        """The split of each of ``track_ids`` (``""`` for an id the manifest lacks), e.g. of a mel cache's tracks.

        Examples
        --------
        >>> Manifest(["a", "b"], ["a.wav", "b.wav"], ["valid", "train"]).splits_of(["b", "x", "a"]).tolist()
        ['train', '', 'valid']
        """
        split_of = dict(zip(self.track_ids, self.splits))
        return np.asarray([split_of.get(str(track_id), "") for track_id in track_ids], dtype="<U5")

    def missing_files(self) -> list[str]:
        """Ids of the tracks whose audio file does not exist.

        Examples
        --------
        >>> Manifest(["a"], ["/nonexistent/a.wav"], ["train"]).missing_files()
        ['a']
        """
        return [track_id for track_id, path in zip(self.track_ids, self.paths) if not path.is_file()]

    def subset(self, rows: Sequence[int]) -> Manifest:
        """The manifest of the given rows, in that order.

        Examples
        --------
        >>> Manifest(["a", "b"], ["a.wav", "b.wav"], ["train", "test"]).subset([1]).track_ids
        ('b',)
        """
        rows = [int(row) for row in rows]
        return Manifest([self.track_ids[r] for r in rows], [self.paths[r] for r in rows],
                        [self.splits[r] for r in rows])


@dataclass(frozen=True)
class PreparedDataset:
    """A manifest and the raw input of each learning source, aligned to its rows.

    Attributes
    ----------
    manifest : Manifest
    sources : dict of str to object
        Source name -> the ``data`` argument of
        :func:`~mtlmusic_training.targets.compute_targets` (see the module docs).
    vocabularies : dict of str to ndarray of str
        Source name -> the names of its matrix's columns (tags, users, words, genres).
    report : dict of str to int
        What was found and left out: the tracks with each source
        (``with_<source>``) and with all of them (``with_every_source``), the
        tracks kept (``tracks``) and left out (``tracks_left_out``), and what the
        adapter counts while reading (audio files matched and ignored, see
        :func:`find_msd_audio`; ``missing_audio`` of FMA).

    Examples
    --------
    >>> data = load_fma("/data/fma", size="medium")  # doctest: +SKIP
    >>> sorted(data.sources)  # doctest: +SKIP
    ['artist', 'bpm', 'cdr_tag', 'tag', 'year']
    """

    manifest: Manifest
    sources: dict[str, object]
    vocabularies: dict[str, np.ndarray] = field(default_factory=dict)
    report: dict[str, int] = field(default_factory=dict)

    def has_data(self, source: str) -> np.ndarray:
        """Which manifest tracks have data for ``source`` (every track for ``self``).

        Examples
        --------
        >>> data.has_data("year").sum()  # doctest: +SKIP
        """
        if source == "self":
            return np.ones(len(self.manifest), dtype=bool)
        if source not in self.sources:
            raise ConfigError(f"No data for source {source!r}; this dataset has {sorted(self.sources)}.")
        return _has_data(self.sources[source])


def assign_splits(track_ids: Sequence[str], valid_fraction: float = 0.1, test_fraction: float = 0.0,
                  seed: int = 0) -> np.ndarray:
    """Deterministic random splits: tracks ranked by a hash of ``seed`` and their id.

    The first ``round(test_fraction * n)`` tracks of the ranking go to ``test``,
    the next ``round(valid_fraction * n)`` to ``valid``, the rest to ``train``:
    the result depends on the set of ids, not on their order.

    Parameters
    ----------
    track_ids : sequence of str
    valid_fraction, test_fraction : float
        Fractions of the tracks in the validation and test splits.
    seed : int

    Returns
    -------
    ndarray of str
        The split of each track.

    Examples
    --------
    >>> splits = assign_splits([f"T{i}" for i in range(10)], valid_fraction=0.2)
    >>> sorted(splits.tolist()).count("valid")
    2
    """
    if not (0 <= valid_fraction and 0 <= test_fraction and valid_fraction + test_fraction <= 1):
        raise ConfigError(f"Split fractions must be nonnegative and sum to at most 1, got valid {valid_fraction} "
                          f"and test {test_fraction}.")
    keys = [hashlib.sha256(f"{seed}:{track_id}".encode()).hexdigest() for track_id in track_ids]
    order = np.argsort(np.asarray(keys, dtype=str), kind="stable")
    n_test = round(test_fraction * len(keys))
    n_valid = round(valid_fraction * len(keys))
    splits = np.full(len(keys), "train", dtype="<U5")
    splits[order[:n_test]] = "test"
    splits[order[n_test:n_test + n_valid]] = "valid"
    return splits


def find_msd_audio(audio_root: str | os.PathLike, seven_digital: Mapping[str, str] | None = None
                   ) -> tuple[dict[str, Path], dict[str, int]]:
    """Audio files of MSD tracks under ``audio_root``, nested or flat, named by track id or by 7digital id.

    Every file is counted: matched, or left out with the reason.

    Parameters
    ----------
    audio_root : path-like
    seven_digital : mapping of str to str, optional
        7digital track id -> MSD track id (:func:`seven_digital_tracks`), for
        files named ``<7digital id>.clip.<ext>`` or ``<7digital id>.<ext>``.

    Returns
    -------
    dict of str to Path
        Track id -> file; of several files of one track, the first found (a folder's files, sorted,
        before its subfolders).
    dict of str to int
        ``audio_by_track_id``, ``audio_by_7digital_id``: files matched;
        ``audio_duplicates``: further files of a track already matched;
        ``audio_unmatched_7digital_id``: files named by a number that is the
        7digital id of no single track of ``seven_digital``;
        ``audio_other_names``: audio files named neither way;
        ``not_audio``: files without an audio extension.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("TRAAAAW128F429D538.mp3", "3945112.clip.mp3", "77.clip.mp3", "cover.jpg"):
    ...     _ = (root / name).write_bytes(b"")
    >>> files, counts = find_msd_audio(root, {"3945112": "TRAAABD128F429CF47"})
    >>> sorted(files)
    ['TRAAAAW128F429D538', 'TRAAABD128F429CF47']
    >>> {reason: n for reason, n in counts.items() if n}
    {'audio_by_track_id': 1, 'audio_by_7digital_id': 1, 'audio_unmatched_7digital_id': 1, 'not_audio': 1}
    """
    audio_root = Path(audio_root)
    if not audio_root.is_dir():
        raise ConfigError(f"No audio folder at {audio_root}.")
    seven_digital = seven_digital or {}
    counts = dict.fromkeys(("audio_by_track_id", "audio_by_7digital_id", "audio_duplicates",
                            "audio_unmatched_7digital_id", "audio_other_names", "not_audio"), 0)
    found: dict[str, Path] = {}
    for folder, subfolders, names in os.walk(audio_root):
        subfolders.sort()
        for name in sorted(names):
            stem, ext = os.path.splitext(name)
            number = _SEVEN_DIGITAL_ID.fullmatch(stem)
            track_id = None
            if ext.lower() not in AUDIO_EXTENSIONS:
                reason = "not_audio"
            elif _MSD_TRACK_ID.fullmatch(stem):
                track_id, reason = stem, "audio_by_track_id"
            elif number and number.group(1) in seven_digital:
                track_id, reason = seven_digital[number.group(1)], "audio_by_7digital_id"
            else:
                reason = "audio_unmatched_7digital_id" if number else "audio_other_names"
            if track_id in found:
                reason = "audio_duplicates"
            elif track_id is not None:
                found[track_id] = Path(folder) / name
            counts[reason] += 1
    return found, counts


def seven_digital_tracks(metadata) -> dict[str, str]:
    """7digital track id -> MSD track id, from the ``track_7digitalid`` column of :func:`read_msd_metadata`.

    An id shared by several tracks names no single track: it is left out.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"track_7digitalid": ["12", "34", "34", None]}, index=["TRA", "TRB", "TRC", "TRD"])
    >>> seven_digital_tracks(table)
    {'12': 'TRA'}
    """
    ids = metadata["track_7digitalid"].dropna()
    single = ids[~ids.duplicated(keep=False)]
    return dict(zip(single.tolist(), single.index.tolist()))


def read_lastfm_tags(db_path: str | os.PathLike, track_ids: Sequence[str]) -> tuple[sp.csr_matrix, np.ndarray]:
    """Last.fm tag weights of the given tracks from ``lastfm_tags.db``.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (len(track_ids), n_tags)
        Tag weights (0-100); columns are the tags used by these tracks, in the
        database's tag order.
    ndarray of str (object)
        The tag of each column.

    Examples
    --------
    >>> counts, tags = read_lastfm_tags("lastfm_tags.db", ["TRAAAAW128F429D538"])  # doctest: +SKIP
    """
    matrix, names = _lastfm_tag_weights(db_path, _row_index(track_ids), len(track_ids))
    used = np.diff(matrix.tocsc().indptr) > 0
    return matrix[:, used], names[used]


def read_lastfm_artist_tags(db_path: str | os.PathLike, artist_of: Mapping[str, str]
                            ) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Last.fm tag weights pooled per artist over every track of ``lastfm_tags.db`` by that artist.

    Parameters
    ----------
    db_path : path-like
        ``lastfm_tags.db``.
    artist_of : mapping of str to str
        Track id -> artist id, for as many tracks as known (e.g. every track of
        ``track_metadata.db``); the database's tracks missing here are not pooled.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_artists, n_tags)
        Summed tag weights; columns are every tag of the database, in its order.
    ndarray of str
        The artists (the values of ``artist_of``), sorted.
    ndarray of str (object)
        The tag of each column.

    Examples
    --------
    >>> profiles, artists, tags = read_lastfm_artist_tags("lastfm_tags.db", {"TRAAAAW128F429D538": "ARD7TVE"}
    ...                                                   )  # doctest: +SKIP
    """
    artists = np.asarray(sorted(set(artist_of.values()) - {UNKNOWN_ARTIST}), dtype=str)
    position = {artist: row for row, artist in enumerate(artists.tolist())}
    row_of = {track_id: position[artist] for track_id, artist in artist_of.items() if artist in position}
    matrix, names = _lastfm_tag_weights(db_path, row_of, len(artists))
    return matrix, artists, names


def _lastfm_tag_weights(db_path: str | os.PathLike, row_of: Mapping[str, int],
                        n_rows: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """The tag weights of ``lastfm_tags.db``, those of track ``t`` added to row ``row_of[t]``; every tag a column."""
    db_path = _require(db_path, "Last.fm tag database")
    with _sqlite(db_path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"tids", "tags", "tid_tag"} <= tables:
            raise ConfigError(f"{db_path} is not lastfm_tags.db: it lacks the tables tids, tags and tid_tag "
                              f"(it has {sorted(tables)}).")
        tids = db.execute("SELECT ROWID, tid FROM tids").fetchall()
        # Row of each tids ROWID; the last entry (-1) also stands for ROWIDs that tids lacks.
        row_at = np.full(max((rowid for rowid, _ in tids), default=0) + 2, -1, dtype=np.int64)
        for rowid, tid in tids:
            row_at[rowid] = row_of.get(tid, -1)
        tags = db.execute("SELECT ROWID, tag FROM tags ORDER BY ROWID").fetchall()
        rows, cols, vals = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
        cursor = db.execute("SELECT tid, tag, val FROM tid_tag")
        while batch := cursor.fetchmany(_FETCH_ROWS):
            triples = np.asarray(batch, dtype=np.float64)
            row = row_at[np.clip(triples[:, 0].astype(np.int64), -1, len(row_at) - 1)]
            keep = (row >= 0) & (triples[:, 2] > 0)
            rows.append(row[keep])
            cols.append(triples[keep, 1].astype(np.int64))
            vals.append(triples[keep, 2])
    rows, cols, vals = (np.concatenate(parts) for parts in (rows, cols, vals))
    tag_rowids = np.asarray([rowid for rowid, _ in tags], dtype=np.int64)
    columns = np.searchsorted(tag_rowids, cols)
    named = columns < len(tag_rowids)
    named[named] = tag_rowids[columns[named]] == cols[named]
    if not named.all():
        raise ConfigError(f"{db_path}: tid_tag refers to tag rows {np.unique(cols[~named])[:5].tolist()} that the "
                          "tags table lacks.")
    matrix = sp.csr_matrix((vals, (rows, columns)), shape=(n_rows, len(tags)))
    return matrix, np.asarray([tag for _, tag in tags], dtype=object)


def read_taste_profile(triplets: str | os.PathLike, unique_tracks: str | os.PathLike, track_ids: Sequence[str],
                       mismatches: str | os.PathLike | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
    """Taste Profile play counts of the given tracks: ``train_triplets.txt`` via ``unique_tracks.txt``.

    Parameters
    ----------
    triplets : path-like
        ``user \\t song_id \\t count`` lines.
    unique_tracks : path-like
        ``track_id<SEP>song_id<SEP>artist<SEP>title`` lines.
    track_ids : sequence of str
    mismatches : path-like, optional
        ``sid_mismatches.txt``: the (song, track) pairs it lists are not used.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (len(track_ids), n_users)
        Play counts; columns are the users who played these tracks, sorted.
    ndarray of str
        The user of each column.

    Examples
    --------
    >>> counts, users = read_taste_profile("train_triplets.txt", "unique_tracks.txt", ids)  # doctest: +SKIP
    """
    import pandas as pd

    row_of = _row_index(track_ids)
    excluded = set()
    if mismatches is not None:
        excluded = set(_MISMATCH.findall(_require(mismatches, "Taste Profile mismatch list").read_text("utf-8")))
    song_rows = []
    with _require(unique_tracks, "MSD song-to-track list (unique_tracks.txt)").open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split("<SEP>")
            if len(fields) < 2:
                raise ConfigError(f"{unique_tracks}, line {line_number}: expected track_id<SEP>song_id<SEP>...")
            track_id, song_id = fields[0], fields[1]
            if track_id in row_of and (song_id, track_id) not in excluded:
                song_rows.append((song_id, row_of[track_id]))
    songs = pd.DataFrame(song_rows, columns=["song", "row"])
    parts = []
    try:
        reader = pd.read_csv(_require(triplets, "Taste Profile triplets"), sep="\t", header=None,
                             names=["user", "song", "count"], dtype={"user": str, "song": str, "count": np.int64},
                             chunksize=1 << 20)
        for chunk in reader:
            parts.append(chunk[chunk["song"].isin(songs["song"])])
    except (ValueError, pd.errors.ParserError) as err:
        raise ConfigError(f"{triplets} is not a Taste Profile triplets file (user, song, count): {err}") from err
    plays = pd.concat(parts).merge(songs, on="song")
    users, columns = np.unique(plays["user"].to_numpy(dtype=str), return_inverse=True)
    matrix = sp.csr_matrix((plays["count"].to_numpy(dtype=np.float64), (plays["row"].to_numpy(), columns)),
                           shape=(len(row_of), len(users)))
    return matrix, users


def read_musixmatch(paths: str | os.PathLike | Sequence[str | os.PathLike],
                    track_ids: Sequence[str]) -> tuple[sp.csr_matrix, np.ndarray]:
    """musiXmatch bag-of-words counts of the given tracks from ``mxm_dataset_train.txt`` and ``_test``.

    Parameters
    ----------
    paths : path-like or sequence of path-like
        The published train and test files: each holds its own tracks, so give
        both (a track in two files, or files with different word lists, are refused).
    track_ids : sequence of str

    Returns
    -------
    scipy.sparse.csr_matrix, shape (len(track_ids), 5000)
        Word counts, columns in the order of the ``%`` word list.
    ndarray of str
        The word of each column.

    Examples
    --------
    >>> counts, words = read_musixmatch(["mxm_dataset_train.txt", "mxm_dataset_test.txt"], ids)  # doctest: +SKIP
    """
    files = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    row_of = _row_index(track_ids)
    words: list[str] | None = None
    rows, cols, vals = [], [], []
    seen: set[str] = set()
    for path in files:
        file_words = None
        with _require(path, "musiXmatch bag of words").open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                line = line.rstrip("\n")
                if not line or line.startswith("#"):
                    continue
                if line.startswith("%"):
                    file_words = line[1:].split(",")
                    if words is not None and file_words != words:
                        raise ConfigError(f"{path}: its word list differs from that of {files[0]}.")
                    words = file_words
                    continue
                if file_words is None:
                    raise ConfigError(f"{path}, line {line_number}: track data before the '%' word list.")
                track_id, *fields = line.split(",")
                if track_id in seen:
                    raise ConfigError(f"{path}, line {line_number}: track {track_id} appears a second time.")
                seen.add(track_id)
                row = row_of.get(track_id)
                if row is None or len(fields) < 2:
                    continue
                try:
                    pairs = [pair.split(":") for pair in fields[1:]]
                    indices = [int(index) for index, _ in pairs]
                    counts = [int(count) for _, count in pairs]
                except ValueError:
                    raise ConfigError(f"{path}, line {line_number}: expected word_index:count pairs.") from None
                if min(indices) < 1 or max(indices) > len(words):
                    raise ConfigError(f"{path}, line {line_number}: word index outside 1..{len(words)}.")
                rows.extend([row] * len(indices))
                cols.extend(index - 1 for index in indices)
                vals.extend(counts)
    if words is None:
        raise ConfigError(f"{files[0]} has no '%' word list: not a musiXmatch dataset file.")
    matrix = sp.csr_matrix((np.asarray(vals, dtype=np.float64), (rows, cols)), shape=(len(row_of), len(words)))
    return matrix, np.asarray(words, dtype=str)


def read_msd_metadata(paths: str | os.PathLike | Sequence[str | os.PathLike]):
    """Year, tempo, artist id and 7digital id of MSD tracks: ``track_metadata.db``, ``msd_summary_file.h5``, CSV.

    Each file's kind is told by its content (SQLite, HDF5, else CSV); the
    module docs list what each gives. Reading HDF5 needs ``h5py``.

    Parameters
    ----------
    paths : path-like or sequence of path-like
        Where several files give a track's value, the first file's known value wins.

    Returns
    -------
    pandas.DataFrame
        Indexed by track id, with the :data:`MSD_METADATA_COLUMNS` the files
        give: ``year`` and ``tempo`` (float), ``artist_id`` and
        ``track_7digitalid`` (str); NaN where unknown (empty, or a 0 year, tempo
        or 7digital id).

    Raises
    ------
    ConfigError
        For a missing file, one without a track id and any of the columns, a
        repeated track id, a value that is not a number, or an HDF5 file
        without ``h5py``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metadata.csv"
    >>> _ = path.write_text("track_id,year,tempo,7digital_id\\nTRAAAAW128F429D538,1999,0,3945112\\n")
    >>> read_msd_metadata(path).to_dict("index")
    {'TRAAAAW128F429D538': {'year': 1999.0, 'tempo': nan, 'track_7digitalid': '3945112'}}
    """
    files = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not files:
        raise ConfigError("No MSD metadata file given.")
    table = None
    for path in files:
        path = _require(path, "MSD metadata file")
        with path.open("rb") as handle:
            magic = handle.read(len(_SQLITE_MAGIC))
        if magic.startswith(_SQLITE_MAGIC):
            columns = _metadata_from_sqlite(path)
        elif magic.startswith(_HDF5_MAGIC):
            columns = _metadata_from_hdf5(path)
        else:
            columns = _metadata_from_csv(path)
        part = _metadata_frame(columns, path)
        table = part if table is None else table.combine_first(part)
    return table[[column for column in MSD_METADATA_COLUMNS if column in table]]


def _metadata_from_sqlite(path: Path) -> dict[str, list]:
    """``track_metadata.db``: ``track_id``, ``year``, ``artist_id`` (and ``track_7digitalid``) of table ``songs``."""
    with _sqlite(path) as db:
        have = {row[1] for row in db.execute("PRAGMA table_info(songs)")}
        columns = [name for name in ("track_id", *MSD_METADATA_COLUMNS) if name in have]
        if "track_id" not in columns or len(columns) < 2:
            raise ConfigError(f"{path} is not track_metadata.db: it needs a table songs with track_id and any of "
                              f"{', '.join(MSD_METADATA_COLUMNS)}.")
        rows = db.execute(f"SELECT {', '.join(columns)} FROM songs").fetchall()
    return {name: [row[i] for row in rows] for i, name in enumerate(columns)}


def _metadata_from_hdf5(path: Path) -> dict[str, np.ndarray]:
    """``msd_summary_file.h5``: its tables hold one row per track, in the same order."""
    try:
        import h5py
    except ImportError:
        raise ConfigError(f"Reading {path} (HDF5) needs h5py: pip install h5py, or pip install "
                          "'mtlmusic[training]'.") from None
    fields = {"track_id": "analysis/songs", "tempo": "analysis/songs", "year": "musicbrainz/songs",
              "artist_id": "metadata/songs", "track_7digitalid": "metadata/songs"}
    columns = {}
    with h5py.File(path, "r") as handle:
        for name, table in fields.items():
            if table not in handle or name not in (handle[table].dtype.names or ()):
                raise ConfigError(f"{path} is not the MSD summary file: /{table} lacks the field {name}.")
            columns[name] = handle[table][name]
    if len({len(values) for values in columns.values()}) > 1:
        raise ConfigError(f"{path}: its tables /analysis/songs, /metadata/songs and /musicbrainz/songs differ in "
                          "length.")
    for name in ("track_id", "artist_id"):
        columns[name] = np.char.decode(columns[name].astype(bytes), "utf-8")
    return columns


def _metadata_from_csv(path: Path) -> dict[str, list]:
    """A CSV with a header: ``track_id`` and any of the metadata columns (``7digital_id`` = ``track_7digitalid``)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        aliases = {"7digital_id": "track_7digitalid"}
        names = {aliases.get(name, name): name for name in reader.fieldnames or ()}
        columns = [name for name in ("track_id", *MSD_METADATA_COLUMNS) if name in names]
        if "track_id" not in columns or len(columns) < 2:
            raise ConfigError(f"{path}: the header needs track_id and at least one of year, tempo, artist_id, "
                              f"track_7digitalid (or 7digital_id); it has {sorted(names.values())}.")
        records = list(reader)
    if any(None in record.values() for record in records):
        raise ConfigError(f"{path}: a row is truncated.")
    return {name: [record[names[name]] for record in records] for name in columns}


def _metadata_frame(columns: dict[str, Sequence], path: Path):
    """The metadata columns of one file as a table by track id, unknown values (empty, 0) as NaN."""
    import pandas as pd

    table = pd.DataFrame(columns).astype({"track_id": str}).set_index("track_id")
    repeated = table.index[table.index.duplicated()].unique().tolist()
    if repeated:
        raise ConfigError(f"{path}: track(s) {repeated[:5]} appear more than once.")
    for name in table.columns:
        values = table[name]
        if name == "artist_id":
            text = values.fillna("").astype(str).str.strip()
            table[name] = text.where(text != "")
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna() & values.notna() & (values.astype(str).str.strip() != "")
        if bad.any():
            raise ConfigError(f"{path}: the {name} of track {bad.idxmax()} is {values[bad.idxmax()]!r}, not a number.")
        numbers = numbers.astype(np.float64).where(numbers != 0)
        table[name] = numbers.map(lambda v: str(int(v)), na_action="ignore") if name == "track_7digitalid" else numbers
    return table


def read_genres(path: str | os.PathLike, track_ids: Sequence[str]) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary track x genre matrix from tagtraum's ``msd_tagtraum_cd2.cls`` or a CSV ``track_id,genre``.

    A ``.cls`` file has ``track_id \\t majority genre [\\t minority genre]``
    lines and ``#`` comments; both genres of a track are its labels. The CSV
    has a header and one row per track and genre.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (len(track_ids), n_genres)
    ndarray of str
        The genres, sorted.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "msd_tagtraum_cd2.cls"
    >>> _ = path.write_text("# tagtraum\\nTRA\\tRock\\nTRB\\tJazz\\tBlues\\n")
    >>> labels, genres = read_genres(path, ["TRB", "TRA"])
    >>> labels.toarray().tolist(), genres.tolist()
    ([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], ['Blues', 'Jazz', 'Rock'])
    """
    path = _require(path, "genre annotations")
    row_of = _row_index(track_ids)
    pairs = set()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        if path.suffix == ".cls":
            for line_number, line in enumerate(handle, start=1):
                if not line.strip() or line.startswith("#"):
                    continue
                track_id, *genres = [field.strip() for field in line.split("\t")]
                if not any(genres):
                    raise ConfigError(f"{path}, line {line_number}: expected track_id<TAB>genre[<TAB>genre].")
                pairs.update((row_of[track_id], genre) for genre in genres if genre and track_id in row_of)
        else:
            reader = csv.DictReader(handle)
            if not {"track_id", "genre"} <= set(reader.fieldnames or ()):
                raise ConfigError(f"{path}: the header needs the columns track_id and genre (or use tagtraum's "
                                  ".cls file).")
            for record in reader:
                row, genre = row_of.get(record["track_id"]), (record["genre"] or "").strip()
                if row is not None and genre:
                    pairs.add((row, genre))
    return _binary_matrix(sorted(pairs), len(row_of))


def load_msd(audio_root: str | os.PathLike, *, lastfm_tags: str | os.PathLike | None = None,
             taste_triplets: str | os.PathLike | None = None, unique_tracks: str | os.PathLike | None = None,
             taste_mismatches: str | os.PathLike | None = None,
             musixmatch: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
             metadata: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
             genres: str | os.PathLike | None = None, require: Iterable[str] | str = (),
             valid_fraction: float = 0.1, test_fraction: float = 0.0, seed: int = 0) -> PreparedDataset:
    """The Million Song Dataset's previews and learning sources as a :class:`PreparedDataset`.

    Every file but the audio is optional; a source is present when its files
    are given (see the module docs for the layouts). The manifest holds the
    tracks with audio that have data for every source in ``require`` and for at
    least one source (every track with audio when no source file is given),
    sorted by track id.

    Parameters
    ----------
    audio_root : path-like
        Folder of the previews (nested or flat, named by track id or 7digital id).
    lastfm_tags : path-like, optional
        ``lastfm_tags.db`` (sources ``tag`` and, with artist ids in ``metadata``, ``artist``).
    taste_triplets, unique_tracks, taste_mismatches : path-like, optional
        ``train_triplets.txt``, ``unique_tracks.txt`` (both needed for ``taste``)
        and optionally ``sid_mismatches.txt``.
    musixmatch : path-like or sequence of path-like, optional
        ``mxm_dataset_train.txt`` and ``mxm_dataset_test.txt``: ``lyrics``.
    metadata : path-like or sequence of path-like, optional
        ``track_metadata.db``, ``msd_summary_file.h5`` or a CSV
        (:func:`read_msd_metadata`): ``year``, ``bpm``, the artists, and the
        7digital ids that audio files may be named by.
    genres : path-like, optional
        ``msd_tagtraum_cd2.cls`` or a CSV ``track_id,genre``: ``cdr_tag``.
    require : iterable of str, or str
        Sources every manifest track must have data for (a string: comma-separated);
        ``"all"`` (every source given) is the paper's selection of tracks with every source.
    valid_fraction, test_fraction, seed
        Passed to :func:`assign_splits`.

    Returns
    -------
    PreparedDataset
        Its report adds the counts of :func:`find_msd_audio` and
        ``tracks_with_audio``.

    Examples
    --------
    >>> data = load_msd("/data/msd/previews", lastfm_tags="/data/msd/lastfm_tags.db",
    ...                 metadata=["/data/msd/track_metadata.db", "/data/msd/msd_summary_file.h5"],
    ...                 require="all")  # doctest: +SKIP
    >>> sorted(data.sources)  # doctest: +SKIP
    ['artist', 'bpm', 'tag', 'year']
    """
    if (taste_triplets is None) != (unique_tracks is None):
        raise ConfigError("The taste source needs both taste_triplets (train_triplets.txt) and unique_tracks "
                          "(unique_tracks.txt).")
    table = read_msd_metadata(metadata) if metadata is not None else None
    seven_digital = seven_digital_tracks(table) if table is not None and "track_7digitalid" in table else None
    files, found = find_msd_audio(audio_root, seven_digital)
    ids = sorted(files)
    sources: dict[str, object] = {}
    vocabularies: dict[str, np.ndarray] = {}
    if lastfm_tags is not None:
        sources["tag"], vocabularies["tag"] = read_lastfm_tags(lastfm_tags, ids)
    if taste_triplets is not None:
        sources["taste"], vocabularies["taste"] = read_taste_profile(taste_triplets, unique_tracks, ids,
                                                                     taste_mismatches)
    if genres is not None:
        sources["cdr_tag"], vocabularies["cdr_tag"] = read_genres(genres, ids)
    if musixmatch is not None:
        sources["lyrics"], vocabularies["lyrics"] = read_musixmatch(musixmatch, ids)
    if table is not None:
        meta = table.reindex(ids)
        for source, column in (("bpm", "tempo"), ("year", "year")):
            if column in meta:
                sources[source] = meta[column].to_numpy(dtype=np.float64)
        if "artist_id" in meta and lastfm_tags is not None:
            labels = meta["artist_id"].fillna(UNKNOWN_ARTIST).to_numpy(dtype=str)
            artist_of = table["artist_id"][table["artist_id"].isin(set(labels.tolist()))]
            profiles, artists, vocabularies["artist"] = read_lastfm_artist_tags(lastfm_tags, artist_of.to_dict())
            sources["artist"] = (labels, _artist_rows(labels, artists, profiles))
    rows, sources, vocabularies, counts = _select(sources, vocabularies, len(ids), require)
    kept = [ids[row] for row in rows]
    manifest = Manifest(kept, [files[t] for t in kept], assign_splits(kept, valid_fraction, test_fraction, seed))
    return PreparedDataset(manifest, sources, vocabularies, {**found, "tracks_with_audio": len(ids), **counts})


def load_fma(root: str | os.PathLike, *, size: str = "medium", check_files: bool = True,
             require: Iterable[str] | str = ()) -> PreparedDataset:
    """The Free Music Archive's metadata and audio as a :class:`PreparedDataset`.

    Parameters
    ----------
    root : path-like
        Folder holding ``fma_metadata/`` (``tracks.csv`` and ``genres.csv``;
        ``echonest.csv`` is used when present) and ``fma_<size>/``.
    size : str
        ``small``, ``medium``, ``large`` or ``full``: the audio archive, and the tracks taken.
    check_files : bool
        Leave out tracks whose audio file is missing (counted in the report as ``missing_audio``).
    require : iterable of str, or str
        Sources every manifest track must have data for (a string: comma-separated;
        ``"all"``: every source).

    Returns
    -------
    PreparedDataset
        Tracks in ``tracks.csv`` order, with FMA's own splits; the source mapping
        is in the module docs (``taste`` and ``lyrics`` are unavailable, and
        ``cdr_tag`` leaves out the top-level genres, the FMA evaluation's labels).

    Examples
    --------
    >>> data = load_fma("/data/fma", size="small", require=["cdr_tag"])  # doctest: +SKIP
    >>> data.manifest.splits.count("train")  # doctest: +SKIP
    6400
    """
    if size not in FMA_SIZES:
        raise ConfigError(f"Unknown FMA size {size!r}; use one of {', '.join(FMA_SIZES)}.")
    root = Path(root)
    tracks_csv = _require(root / "fma_metadata" / "tracks.csv", "FMA metadata (fma_metadata/tracks.csv)")
    titles, top_level = _read_fma_genres(_require(root / "fma_metadata" / "genres.csv",
                                                  "FMA genre list (fma_metadata/genres.csv)"))
    wanted = {"subset": ("set", "subset"), "split": ("set", "split"), "tags": ("track", "tags"),
              "genres": ("track", "genres_all"), "top": ("track", "genre_top"),
              "released": ("album", "date_released"), "artist": ("artist", "id")}
    ids, paths, splits, tags, genres, years, artists = [], [], [], [], [], [], []
    top_titles, missing_audio = set(), 0
    for line, track_id, record in read_fma_csv(tracks_csv, 2, wanted):
        top_titles.add(record["top"].strip())
        if record["subset"] not in FMA_SIZES[size]:
            continue
        path = root / f"fma_{size}" / f"{track_id:06d}"[:3] / f"{track_id:06d}.mp3"
        if check_files and not path.is_file():
            missing_audio += 1
            continue
        if record["split"] not in _FMA_SPLITS:
            raise ConfigError(f"{tracks_csv}, line {line}: unknown split {record['split']!r}.")
        ids.append(str(track_id))
        paths.append(path)
        splits.append(_FMA_SPLITS[record["split"]])
        tags.append({tag.strip().lower() for tag in _literal_list(record["tags"], tracks_csv, line, str)} - {""})
        genres.append(set(_literal_list(record["genres"], tracks_csv, line, int)))
        year = re.match(r"\d{4}", record["released"].strip())
        years.append(float(year.group()) if year else np.nan)
        artists.append(record["artist"].strip() or UNKNOWN_ARTIST)
    evaluation_labels = top_level | {genre for genre, title in titles.items() if title in top_titles - {""}}
    row_count = len(ids)
    tag_matrix, tag_names = _binary_matrix(sorted((row, tag) for row, names in enumerate(tags) for tag in names),
                                           row_count)
    genre_matrix, genre_ids = _binary_matrix(sorted((row, g) for row, names in enumerate(genres)
                                                    for g in names - evaluation_labels), row_count)
    sources: dict[str, object] = {"tag": tag_matrix, "cdr_tag": genre_matrix, "year": np.asarray(years),
                                  "artist": (np.asarray(artists, dtype=str), tag_matrix)}
    vocabularies = {"tag": tag_names, "artist": tag_names,
                    "cdr_tag": np.asarray([titles.get(int(g), g) for g in genre_ids.tolist()], dtype=str)}
    echonest = root / "fma_metadata" / "echonest.csv"
    if echonest.is_file():
        row_of = _row_index(ids)
        tempo = np.full(row_count, np.nan)
        for line, track_id, record in read_fma_csv(echonest, 3, {"tempo": ("echonest", "audio_features", "tempo")}):
            row = row_of.get(str(track_id))
            if row is not None and record["tempo"].strip():
                tempo[row] = _float(record["tempo"], echonest, line)
        sources["bpm"] = tempo
    rows, sources, vocabularies, counts = _select(sources, vocabularies, row_count, require)
    report = {"tracks_in_subset": row_count + missing_audio, "missing_audio": missing_audio,
              "cdr_tag_top_genres_dropped": len(evaluation_labels & set().union(*genres)), **counts}
    return PreparedDataset(Manifest(ids, paths, splits).subset(rows), sources, vocabularies, report)


def _select(sources: dict, vocabularies: dict, n_rows: int, require: Iterable[str] | str
            ) -> tuple[np.ndarray, dict, dict, dict[str, int]]:
    """The rows with data for every required source and for at least one source (all rows without sources).

    Returns the rows, the sources and vocabularies restricted to them (columns
    of :data:`_USED_TERMS` that no kept track uses are dropped), and the
    counts of the report.
    """
    if isinstance(require, str):
        require = list(sources) if require.strip() == "all" else require.split(",")
    require = [source.strip() for source in require if source.strip() not in ("", "self")]
    unknown = [source for source in require if source not in sources]
    if unknown:
        raise ConfigError(f"Cannot require {unknown}: no data given for them (available: {sorted(sources)}).")
    has = {source: _has_data(data) for source, data in sources.items()}
    every = np.all(list(has.values()), axis=0) if has else np.ones(n_rows, dtype=bool)
    keep = np.any(list(has.values()), axis=0) if has else np.ones(n_rows, dtype=bool)
    for source in require:
        keep &= has[source]
    rows = np.flatnonzero(keep)
    sources, vocabularies = _take_rows(sources, rows), dict(vocabularies)
    for source in set(_USED_TERMS) & set(sources):
        used = np.diff(sources[source].tocsc().indptr) > 0
        sources[source], vocabularies[source] = sources[source][:, used], vocabularies[source][used]
    counts = {**{f"with_{source}": int(has[source].sum()) for source in sorted(has)},
              "with_every_source": int(every.sum()), "tracks": len(rows), "tracks_left_out": n_rows - len(rows)}
    return rows, sources, vocabularies, counts


def _has_data(data) -> np.ndarray:
    if isinstance(data, tuple):
        labels, counts = data
        artist_of, index = np.unique(labels, return_inverse=True)
        tagged = np.bincount(index, weights=np.diff(counts.indptr) > 0, minlength=len(artist_of)) > 0
        return tagged[index] & (labels != UNKNOWN_ARTIST)
    if sp.issparse(data):
        return np.diff(data.tocsr().indptr) > 0
    return np.isfinite(np.asarray(data, dtype=np.float64))


def _take_rows(data, rows: np.ndarray):
    """``data`` (a source's input or a dict of sources) restricted to ``rows``.

    The artist source's profiles, pooled over all of ``data``'s rows, move to
    each artist's first kept track.
    """
    if isinstance(data, dict):
        return {key: _take_rows(value, rows) for key, value in data.items()}
    if isinstance(data, tuple):
        labels, counts = data
        return labels[rows], _artist_rows(labels[rows], *_artist_profiles(labels, counts))
    return data[rows] if sp.issparse(data) else np.asarray(data)[rows]


def _artist_profiles(labels: np.ndarray, counts: sp.csr_matrix) -> tuple[np.ndarray, sp.csr_matrix]:
    """The known artists of ``labels`` (sorted) and the sum of the rows of each one's tracks."""
    artists, index = np.unique(labels, return_inverse=True)
    membership = sp.csr_matrix((np.ones(len(index)), (index, np.arange(len(index)))),
                               shape=(len(artists), len(index)))
    known = artists != UNKNOWN_ARTIST
    return artists[known], (membership @ counts).tocsr()[known]


def _artist_rows(labels: np.ndarray, artists: np.ndarray, profiles: sp.csr_matrix) -> sp.csr_matrix:
    """A track x tag matrix with each artist's profile on its first track in ``labels``, the other rows empty."""
    position = {artist: row for row, artist in enumerate(artists.tolist())}
    _, first = np.unique(labels, return_index=True)
    first = [row for row in first.tolist() if labels[row] in position]
    carrier = sp.csr_matrix((np.ones(len(first)), (first, [position[labels[row]] for row in first])),
                            shape=(len(labels), len(artists)))
    return (carrier @ profiles).tocsr()


def _binary_matrix(pairs: list[tuple[int, object]], n_rows: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """A binary ``n_rows x n_terms`` matrix from sorted (row, term) pairs; columns are the sorted terms."""
    terms = sorted({term for _, term in pairs})
    col_of = {term: col for col, term in enumerate(terms)}
    rows = [row for row, _ in pairs]
    cols = [col_of[term] for _, term in pairs]
    matrix = sp.csr_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n_rows, len(terms)))
    return matrix, np.asarray([str(term) for term in terms], dtype=str)


def _read_fma_genres(genres_csv: Path) -> tuple[dict[int, str], set[int]]:
    """Title of each genre id and the top-level ids (``parent`` 0), from FMA's ``genres.csv``."""
    titles, top_level = {}, set()
    with genres_csv.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"genre_id", "parent", "title"} <= set(reader.fieldnames or ()):
            raise ConfigError(f"{genres_csv}: not FMA's genres.csv (it needs the columns genre_id, parent and "
                              "title).")
        for record in reader:
            try:
                genre, parent = int(record["genre_id"]), int(record["parent"] or 0)
            except (TypeError, ValueError):
                raise ConfigError(f"{genres_csv}, line {reader.line_num}: genre_id and parent must be "
                                  "integers.") from None
            titles[genre] = record["title"]
            if parent == 0:
                top_level.add(genre)
    return titles, top_level


def read_fma_csv(path: str | os.PathLike, levels: int, wanted: dict[str, tuple[str, ...]]
                 ) -> Iterator[tuple[int, int, dict[str, str]]]:
    """Rows of an FMA metadata CSV (``tracks.csv``, ``echonest.csv``) with a ``levels``-row column header.

    The one parser of FMA's multi-level CSVs, for the training adapter
    (:func:`load_fma`) and the evaluation loader
    (:func:`~mtlmusic_training.evaluation.load_fma_medium`). The header rows may be
    followed by the index-name row (``track_id`` then empty cells) that pandas
    writes for a multi-level header; a UTF-8 byte-order mark is allowed. Fields
    may span lines.

    Parameters
    ----------
    path : path-like
    levels : int
        Rows of the column header: 2 for ``tracks.csv``, 3 for ``echonest.csv``.
    wanted : dict of str to tuple of str
        Name -> the column's header cells, e.g. ``{"subset": ("set", "subset")}``.

    Yields
    ------
    (int, int, dict of str to str)
        The row's last line number in the file, the track id, and ``{name: value}``.

    Raises
    ------
    ConfigError
        If a wanted column is missing, a track id is not an integer or a row is truncated.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tracks.csv"
    >>> _ = path.write_text(",set,track\\n,subset,genre_top\\ntrack_id,,\\n2,small,Hip-Hop\\n", encoding="utf-8-sig")
    >>> list(read_fma_csv(path, 2, {"subset": ("set", "subset"), "genre": ("track", "genre_top")}))
    [(4, 2, {'subset': 'small', 'genre': 'Hip-Hop'})]
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [next(reader, []) for _ in range(levels)]
        columns = list(zip(*header))
        try:
            index = {name: columns.index(key) for name, key in wanted.items()}
        except ValueError:
            missing = [key for key in wanted.values() if key not in columns]
            raise ConfigError(f"{path} lacks the column(s) {missing} in its {levels}-row header; is it FMA's "
                              f"{path.name} from fma_metadata.zip?") from None
        width = max(index.values())
        for row in reader:
            if not row or (row[0] == "track_id" and not any(row[1:])):
                continue
            try:
                track_id = int(row[0])
            except ValueError:
                raise ConfigError(f"{path}, line {reader.line_num}: track id {row[0]!r} is not an integer.") from None
            if len(row) <= width:
                raise ConfigError(f"{path}, line {reader.line_num}: the row is truncated.")
            yield reader.line_num, track_id, {name: row[col] for name, col in index.items()}


def _literal_list(text: str, path: Path, line: int, kind: type) -> list:
    """A list of ``kind`` values written as a Python literal (FMA's ``tags``, ``genres_all``)."""
    if not text.strip():
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, list) or not all(isinstance(item, kind) for item in value):
        raise ConfigError(f"{path}, line {line}: expected a list of {kind.__name__} such as "
                          f"{[21, 38] if kind is int else ['rock', 'pop']}, got {text[:60]!r}.")
    return value


def _float(text: str, path: Path, line: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{path}, line {line}: {text!r} is not a number.") from None


def _row_index(track_ids: Sequence[str]) -> dict[str, int]:
    return {str(track_id): row for row, track_id in enumerate(track_ids)}


def _require(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"No {what} at {path}.")
    return path


@contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to an SQLite file; its errors become :class:`ConfigError`."""
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        yield db
    except sqlite3.DatabaseError as err:
        raise ConfigError(f"Cannot read {path}: {err}.") from err
    finally:
        db.close()
