"""Loaders for the paper's evaluation datasets (Table 5) in their published layouts, and CSVs.

Each loader returns an :class:`EvalDataset`: the audio paths, one per track, and the task's targets
(class labels, real values or a users x tracks like matrix), after checking that the layout is
complete. Loaders read metadata only; extracting features from ``dataset.paths`` and scoring them
with :mod:`mtlmusic_training.evaluation.protocols` are separate steps.

=======================  ==============  ===========================================================
loader                   task            layout
=======================  ==============  ===========================================================
load_gtzan               classification  ``genres/<genre>/<genre>.000NN.wav`` (or ``.au``)
load_fma_medium          classification  ``fma_metadata/tracks.csv``, ``fma_medium/XXX/XXXXXX.mp3``
load_ballroom            classification  ``BallroomData/<Style>/*.wav``
load_irmas               classification  ``IRMAS-TrainingData/<instrument>/*.wav``
load_mediaeval_emotion   regression      ``annotations/static_annotations.csv``,
                                         ``clips_45seconds/<song_id>.mp3``
load_thisismyjam         recommendation  the dump's ``likes.tsv`` and ``jams.tsv``, the MSD's
                                         ``jam_to_msd.tsv``, MSD previews (or a jam_id,path CSV)
load_labels_csv          classification  CSV with ``path,label``
load_values_csv          regression      CSV with ``path,value``
load_interactions_csv    recommendation  CSV with ``user,item`` and CSV with ``item,path``
=======================  ==============  ===========================================================

Every problem (missing folder or file, missing column, unparsable value) raises
:class:`mtlmusic.ConfigError` with a message naming the expected layout.

:data:`PAPER_SUBSAMPLE` holds the fractions of FMA and IRMAS the paper evaluated on (Table 5), which
the command line uses by default (:func:`paper_subsample`); the loaders themselves keep every track
unless asked.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from mtlmusic.errors import ConfigError

from ..datasets import _MSD_TRACK_ID, FMA_SIZES, find_msd_audio, read_fma_csv


TASKS = ("classification", "regression", "recommendation")
#: Fraction of each subsampled dataset the paper evaluated on (Table 5: FMA 1,250 of 25,000 tracks,
#: IRMAS 1,341 of 6,705 excerpts), by dataset name.
PAPER_SUBSAMPLE = {"FMA": 0.05, "IRMAS": 0.2}
#: Fewest likes per user and per track of the This Is My Jam set used by the command line: the
#: filter the authors' later code documents for its subset (the paper states none; see
#: :func:`load_thisismyjam`).
JAM_MIN_LIKES = 5


@dataclass(frozen=True, eq=False)
class EvalDataset:
    """One evaluation dataset: tracks (audio paths) and the targets of its task.

    Attributes
    ----------
    name : str
        Short name, as in the paper's figures (``"GTZAN"``, ``"FMA"``, ``"EmotionArousal"``, ...).
    task : str
        ``"classification"``, ``"regression"`` or ``"recommendation"``.
    paths : tuple of pathlib.Path
        Audio file of every track.
    ids : tuple of str
        A unique identifier of every track (relative path, track id, ...), aligned with ``paths``.
    labels : numpy.ndarray of str, optional
        Class of every track (classification only).
    values : numpy.ndarray of float, optional
        Target of every track (regression only).
    interactions : scipy.sparse.csr_matrix, optional
        Binary users x tracks matrix of likes (recommendation only).
    users : tuple of str, optional
        User identifiers, the rows of ``interactions`` (recommendation only).

    Examples
    --------
    >>> import numpy as np
    >>> from pathlib import Path
    >>> ds = EvalDataset("toy", "classification", (Path("a.wav"), Path("b.wav")), ("a", "b"),
    ...                  labels=np.array(["x", "y"]))
    >>> len(ds), ds.classes.tolist()
    (2, ['x', 'y'])
    """

    name: str
    task: str
    paths: tuple[Path, ...]
    ids: tuple[str, ...]
    labels: np.ndarray | None = None
    values: np.ndarray | None = None
    interactions: sparse.csr_matrix | None = None
    users: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if len(self.paths) != len(self.ids):
            raise ConfigError(f"{len(self.paths)} paths but {len(self.ids)} ids")
        if len(set(self.ids)) != len(self.ids):
            raise ConfigError(f"dataset {self.name!r}: track ids are not unique")
        present = {
            "labels": self.labels is not None,
            "values": self.values is not None,
            "interactions": self.interactions is not None,
        }
        needed = {
            "classification": "labels",
            "regression": "values",
            "recommendation": "interactions",
        }
        wanted = needed[self.task]
        if not present[wanted] or sum(present.values()) != 1:
            raise ConfigError(f"a {self.task} dataset carries {wanted} and no other targets")
        if self.task == "recommendation":
            if self.users is None or self.interactions.shape != (len(self.users), len(self.paths)):
                raise ConfigError(
                    "interactions must be a users x tracks matrix matching users and paths"
                )
        elif len(self.targets) != len(self.paths):
            raise ConfigError(f"{len(self.targets)} targets for {len(self.paths)} tracks")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def targets(self):
        """The task's targets: ``labels``, ``values`` or ``interactions``."""
        return {
            "classification": self.labels,
            "regression": self.values,
            "recommendation": self.interactions,
        }[self.task]

    @property
    def classes(self) -> np.ndarray:
        """Sorted distinct labels (classification only)."""
        if self.labels is None:
            raise ConfigError(f"dataset {self.name!r} is a {self.task} dataset and has no classes")
        return np.unique(self.labels)


# ---------------------------------------------------------------------------------------------
# helpers


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ConfigError(f"{what} not found: {path} is not a folder")
    return path


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path} does not exist")
    return path


def _first_dir(root: Path, candidates: Sequence[str], layout: str, dataset: str) -> Path:
    """The first of ``root / candidate`` that is a folder (``""`` means ``root`` itself)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{dataset} root not found: {root} is not a folder (expected {layout})")
    for candidate in candidates:
        path = root / candidate if candidate else root
        if path.is_dir():
            return path
    tried = ", ".join(str(root / c) if c else str(root) for c in candidates)
    raise ConfigError(f"no {dataset} folder under {root}: tried {tried} (expected {layout})")


def _check_exist(paths: Iterable[Path], dataset: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        raise ConfigError(
            f"{dataset}: {len(missing)} audio files are missing (first: {shown}); "
            "complete the download or pass check_files=False to load the metadata anyway"
        )


def _folder_classes(base: Path, pattern: re.Pattern, dataset: str, layout: str):
    """Audio files in the class folders of ``base`` matching ``pattern``, labelled by folder."""
    paths, labels = [], []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        for file in sorted(folder.iterdir()):
            match = pattern.fullmatch(file.name)
            if (
                file.is_file()
                and match
                and match.groupdict().get("label", folder.name) == folder.name
            ):
                paths.append(file)
                labels.append(folder.name)
    if not paths:
        raise ConfigError(f"no {dataset} audio found in {base} (expected {layout})")
    if len(set(labels)) < 2:
        raise ConfigError(
            f"{dataset}: only one class folder with audio in {base} (expected {layout})"
        )
    return paths, labels


def paper_subsample(name: str, fraction: float | None = None) -> float | None:
    """The fraction of dataset ``name`` to keep: ``fraction`` when given, else the paper's.

    ``None`` (keep all) for 1 and for datasets the paper did not subsample.

    >>> paper_subsample("FMA"), paper_subsample("IRMAS", 0.5), paper_subsample("FMA", 1), paper_subsample("GTZAN")
    (0.05, 0.5, None, None)
    """
    fraction = PAPER_SUBSAMPLE.get(name) if fraction is None else fraction
    return None if fraction == 1 else fraction


def _stratified_subsample(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded stratified sample of about ``fraction`` of the tracks.

    Each class gets ``fraction`` of its tracks, rounded so that the total is
    ``round(fraction * n)`` (largest remainders get the extra tracks), and at least one track.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"subsample must be in (0, 1], got {fraction!r}")
    classes, codes = np.unique(labels, return_inverse=True)
    counts = np.bincount(codes)
    quota = fraction * counts
    take = np.maximum(np.floor(quota).astype(int), 1)
    remainder = np.where(take > quota, -1.0, quota - np.floor(quota))
    extra = int(round(fraction * len(labels))) - int(take.sum())
    for c in np.argsort(-remainder, kind="stable")[: max(extra, 0)]:
        if remainder[c] > 0:
            take[c] += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(codes == c), size=min(take[c], counts[c]), replace=False)
        for c in range(classes.size)
    ]
    return np.sort(np.concatenate(chosen))


def _classification(name, paths, ids, labels, subsample, seed, check_files) -> EvalDataset:
    labels = np.asarray(labels, dtype=str)
    if subsample is not None:
        keep = _stratified_subsample(labels, subsample, seed)
        paths = [paths[i] for i in keep]
        ids = [ids[i] for i in keep]
        labels = labels[keep]
    if check_files:
        _check_exist(paths, name)
    return EvalDataset(name, "classification", tuple(paths), tuple(ids), labels=labels)


def _read_table(path: Path, columns: dict[str, Sequence[str]], what: str) -> dict[str, list[str]]:
    """Read a CSV or TSV file with a header row; return the requested columns by canonical name.

    ``columns`` maps each canonical name to the header names accepted for it. The delimiter is a
    tab when the header line contains one, otherwise a comma; header names are stripped. Tab-separated
    fields are read as they are, quotes included (the This Is My Jam dump's titles hold unbalanced
    quotes); comma-separated ones may be quoted.
    """
    path = _require_file(Path(path), what)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        first = handle.readline()
        handle.seek(0)
        tabs = "\t" in first
        reader = csv.reader(handle, delimiter="\t" if tabs else ",",
                            quoting=csv.QUOTE_NONE if tabs else csv.QUOTE_MINIMAL)
        header = [h.strip() for h in next(reader, [])]
        index = {}
        for canonical, accepted in columns.items():
            found = [header.index(a) for a in accepted if a in header]
            if not found:
                raise ConfigError(
                    f"{what} {path} has no {' or '.join(map(repr, accepted))} column "
                    f"(header: {', '.join(header) or 'empty'})"
                )
            index[canonical] = found[0]
        table = {canonical: [] for canonical in columns}
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(index.values()):
                raise ConfigError(
                    f"{what} {path}, line {line}: expected {len(header)} fields, got {len(row)}"
                )
            for canonical, i in index.items():
                table[canonical].append(row[i].strip())
    if not next(iter(table.values())):
        raise ConfigError(f"{what} {path} has a header but no rows")
    return table


def _resolve(base: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


def _floats(values: Sequence[str], what: str, path: Path) -> np.ndarray:
    try:
        array = np.asarray([float(v) for v in values], dtype=np.float64)
    except ValueError as err:
        raise ConfigError(f"{what} in {path} must be numbers: {err}") from None
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"{what} in {path} contain NaN or infinite values")
    return array


# ---------------------------------------------------------------------------------------------
# published datasets


_GTZAN_FILE = re.compile(r"(?P<label>[a-z]+)\.\d{5}\.(wav|au)")


def load_gtzan(root) -> EvalDataset:
    """GTZAN genre collection (1,000 30-s clips, 10 genres).

    Parameters
    ----------
    root : str or path
        The folder holding ``genres/`` (original release, ``.au``), ``genres_original/``
        (common ``.wav`` re-release) or the genre folders themselves. Each genre folder
        ``<genre>/`` holds ``<genre>.000NN.wav`` (or ``.au``); other files are ignored.

    Returns
    -------
    EvalDataset
        ``name="GTZAN"``, classification, labels = genre folder names, ids like ``"blues.00000"``.

    Raises
    ------
    mtlmusic.ConfigError
        If no genre folder with matching audio is found.

    Examples
    --------
    >>> ds = load_gtzan("/data/gtzan")  # doctest: +SKIP
    >>> len(ds), ds.classes.size  # doctest: +SKIP
    (1000, 10)
    """
    base = _first_dir(
        Path(root), ("genres", "genres_original", ""), "genres/<genre>/<genre>.000NN.wav", "GTZAN"
    )
    paths, labels = _folder_classes(base, _GTZAN_FILE, "GTZAN", "genres/<genre>/<genre>.000NN.wav")
    ids = [p.name.rsplit(".", 1)[0] for p in paths]
    return _classification("GTZAN", paths, ids, labels, None, 0, False)


def load_fma_medium(
    root, *, subsample: float | None = None, seed: int = 0, check_files: bool = True
) -> EvalDataset:
    """FMA medium, top-genre classification (25,000 30-s clips, 16 genres).

    Parameters
    ----------
    root : str or path
        Folder holding ``fma_metadata/tracks.csv`` and ``fma_medium/XXX/XXXXXX.mp3`` (the track id
        zero-padded to 6 digits; ``XXX`` its first 3 digits), as unpacked from the FMA release.
    subsample : float, optional
        Keep this fraction of the tracks, stratified by genre and seeded (see Notes); the paper
        used ``0.05`` (1,250 tracks). ``None`` keeps all.
    seed : int, default 0
        Seed of the subsample.
    check_files : bool, default True
        Check that every selected track's mp3 exists.

    Returns
    -------
    EvalDataset
        ``name="FMA"``, classification, labels = ``track.genre_top``, ids = track ids.

    Raises
    ------
    mtlmusic.ConfigError
        If ``tracks.csv`` or audio files are missing or ``tracks.csv`` has an unexpected header.

    Notes
    -----
    ``tracks.csv`` has a two-row column header (``pandas.read_csv(header=[0, 1], index_col=0)``)
    followed by a ``track_id`` row. FMA's subsets are nested (small within medium within large)
    and ``set.subset`` names the smallest one a track belongs to, so FMA medium is every track
    whose subset is ``small`` or ``medium``: 25,000 tracks. The subsample gives each genre its
    share of ``round(subsample * n)`` tracks (largest remainders round up; at least one per genre),
    drawn at random with ``numpy.random.default_rng(seed)``, and keeps the tracks in id order.

    Examples
    --------
    >>> ds = load_fma_medium("/data/fma", subsample=0.05)  # doctest: +SKIP
    >>> len(ds), ds.classes.size  # doctest: +SKIP
    (1250, 16)
    """
    root = Path(root)
    tracks_csv = _require_file(
        root / "fma_metadata" / "tracks.csv", "FMA metadata (fma_metadata/tracks.csv)"
    )
    audio = root / "fma_medium"
    if check_files:
        _require_dir(audio, "FMA medium audio folder (fma_medium/)")
    ids, labels = [], []
    wanted = {"subset": ("set", "subset"), "genre": ("track", "genre_top")}
    for _, track_id, record in read_fma_csv(tracks_csv, 2, wanted):
        if record["subset"] in FMA_SIZES["medium"] and record["genre"]:
            ids.append(f"{track_id:06d}")
            labels.append(record["genre"])
    if not ids:
        raise ConfigError(
            f"{tracks_csv} lists no track of the small or medium subset with a top genre"
        )
    paths = [audio / tid[:3] / f"{tid}.mp3" for tid in ids]
    return _classification("FMA", paths, ids, labels, subsample, seed, check_files)


_WAV_FILE = re.compile(r"[^.].*\.wav", re.IGNORECASE)


def load_ballroom(root) -> EvalDataset:
    """Ballroom dance styles (698 30-s excerpts, 10 classes).

    Parameters
    ----------
    root : str or path
        The folder holding ``BallroomData/`` or that folder itself; each style folder
        (``ChaChaCha``, ``Jive``, ..., ``Waltz``) holds ``*.wav`` files.

    Returns
    -------
    EvalDataset
        ``name="Ballroom"``, classification, labels = style folder names,
        ids = ``"<Style>/<file stem>"``.

    Raises
    ------
    mtlmusic.ConfigError
        If no style folder with ``.wav`` files is found.

    Examples
    --------
    >>> ds = load_ballroom("/data/ballroom")  # doctest: +SKIP
    >>> len(ds), ds.classes.size  # doctest: +SKIP
    (698, 10)
    """
    layout = "BallroomData/<Style>/*.wav"
    base = _first_dir(Path(root), ("BallroomData", ""), layout, "Ballroom")
    paths, labels = _folder_classes(base, _WAV_FILE, "Ballroom", layout)
    ids = [f"{p.parent.name}/{p.stem}" for p in paths]
    return _classification("Ballroom", paths, ids, labels, None, 0, False)


def load_irmas(root, *, subsample: float | None = None, seed: int = 0) -> EvalDataset:
    """IRMAS training set, predominant instrument (6,705 3-s excerpts, 11 instruments).

    Parameters
    ----------
    root : str or path
        The folder holding ``IRMAS-TrainingData/`` or that folder itself; each instrument folder
        (``cel``, ``cla``, ``flu``, ``gac``, ``gel``, ``org``, ``pia``, ``sax``, ``tru``, ``vio``,
        ``voi``) holds ``*.wav`` files, e.g. ``[cel][cla]0001__1.wav``.
    subsample : float, optional
        Keep this fraction, stratified by instrument and seeded, as in :func:`load_fma_medium`;
        the paper used ``0.2`` (1,341 excerpts). ``None`` keeps all.
    seed : int, default 0
        Seed of the subsample.

    Returns
    -------
    EvalDataset
        ``name="IRMAS"``, classification, labels = instrument folder names,
        ids = ``"<instrument>/<file stem>"``.

    Raises
    ------
    mtlmusic.ConfigError
        If no instrument folder with ``.wav`` files is found.

    Examples
    --------
    >>> ds = load_irmas("/data/irmas", subsample=0.2)  # doctest: +SKIP
    >>> len(ds), ds.classes.size  # doctest: +SKIP
    (1341, 11)
    """
    layout = "IRMAS-TrainingData/<instrument>/*.wav"
    base = _first_dir(Path(root), ("IRMAS-TrainingData", ""), layout, "IRMAS")
    paths, labels = _folder_classes(base, _WAV_FILE, "IRMAS", layout)
    ids = [f"{p.parent.name}/{p.stem}" for p in paths]
    return _classification("IRMAS", paths, ids, labels, subsample, seed, False)


def load_mediaeval_emotion(
    root, target: str = "arousal", *, audio_dir=None, check_files: bool = True
) -> EvalDataset:
    """MediaEval "1000 songs" emotion data set, song-level arousal or valence (744 45-s clips).

    Parameters
    ----------
    root : str or path
        The release folder, holding ``annotations/static_annotations.csv`` (or the CSV directly)
        and the clips ``clips_45seconds/<song_id>.mp3`` (or ``clips/<song_id>.mp3``).
        ``static_annotations.csv`` has the columns ``song_id, mean_arousal, std_arousal,
        mean_valence, std_valence`` (ratings on a 1-9 scale, averaged over annotators).
    target : {"arousal", "valence"}, default "arousal"
        Which mean rating is the regression target; the paper fits the two separately.
    audio_dir : str or path, optional
        Folder of the clips when it is elsewhere.
    check_files : bool, default True
        Check that every annotated song's mp3 exists.

    Returns
    -------
    EvalDataset
        ``name="EmotionArousal"`` or ``"EmotionValence"``, regression, ids = song ids.

    Raises
    ------
    mtlmusic.ConfigError
        If the annotations, their columns or audio files are missing, or ``target`` is unknown.

    Examples
    --------
    >>> ds = load_mediaeval_emotion("/data/emomusic", "valence")  # doctest: +SKIP
    >>> ds.name, len(ds)  # doctest: +SKIP
    ('EmotionValence', 744)
    """
    if target not in ("arousal", "valence"):
        raise ConfigError(f"target must be 'arousal' or 'valence', got {target!r}")
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"emotion data set root not found: {root} is not a folder")
    for candidate in (
        root / "annotations" / "static_annotations.csv",
        root / "static_annotations.csv",
    ):
        if candidate.is_file():
            annotations = candidate
            break
    else:
        raise ConfigError(
            f"no static_annotations.csv under {root} (expected annotations/static_annotations.csv)"
        )
    if audio_dir is None:
        audio = next((root / d for d in ("clips_45seconds", "clips") if (root / d).is_dir()), None)
        if audio is None:
            raise ConfigError(
                f"no clips_45seconds/ (or clips/) folder under {root}; pass audio_dir"
            )
    else:
        audio = _require_dir(Path(audio_dir), "emotion audio folder")
    table = _read_table(
        annotations,
        {"song_id": ("song_id",), "value": (f"mean_{target}",)},
        "emotion annotations",
    )
    values = _floats(table["value"], f"mean_{target} ratings", annotations)
    ids = [song_id.split(".")[0] for song_id in table["song_id"]]
    paths = [audio / f"{song_id}.mp3" for song_id in ids]
    if check_files:
        _check_exist(paths, "emotion data set")
    return EvalDataset(
        f"Emotion{target.capitalize()}", "regression", tuple(paths), tuple(ids), values=values
    )


def _like_core(pairs: set[tuple[str, int]], min_likes: int, min_track_likes: int) -> set[tuple[str, int]]:
    """The ``(user, track)`` likes left once every user has ``min_likes`` and every track ``min_track_likes``.

    Users and tracks below their minimum are dropped together, repeatedly, as each drop can take
    others below theirs.

    >>> sorted(_like_core({("a", 0), ("a", 1), ("b", 1), ("c", 2)}, 1, 2))
    [('a', 1), ('b', 1)]
    """
    while True:
        per_user = Counter(user for user, _ in pairs)
        per_track = Counter(track for _, track in pairs)
        kept = {(u, j) for u, j in pairs if per_user[u] >= min_likes and per_track[j] >= min_track_likes}
        if len(kept) == len(pairs):
            return pairs
        pairs = kept


def _interactions(
    name, users_col, items_col, track_ids, paths, min_likes, min_track_likes, check_files
) -> EvalDataset:
    """The binary users x tracks likes of ``users_col`` on ``items_col``, reduced to the tracks of
    ``track_ids`` and to the users and tracks that meet ``min_likes`` and ``min_track_likes``."""
    if int(min_likes) != min_likes or min_likes < 1:
        raise ConfigError(f"min_likes must be a positive integer, got {min_likes!r}")
    if int(min_track_likes) != min_track_likes or min_track_likes < 0:
        raise ConfigError(f"min_track_likes must be a non-negative integer, got {min_track_likes!r}")
    column = {track: j for j, track in enumerate(track_ids)}
    pairs = {(u, column[i]) for u, i in zip(users_col, items_col, strict=True) if i in column}
    if not pairs:
        raise ConfigError(
            f"{name}: no like refers to a track of the audio map; check the track ids"
        )
    pairs = _like_core(pairs, int(min_likes), int(min_track_likes))
    if not pairs:
        raise ConfigError(f"{name}: no user has {min_likes} or more likes on tracks with "
                          f"{min_track_likes} or more likes")
    users = sorted({user for user, _ in pairs})
    per_track = Counter(track for _, track in pairs)
    tracks = [j for j in range(len(track_ids)) if per_track[j] >= min_track_likes]
    row = {user: r for r, user in enumerate(users)}
    col = {track: c for c, track in enumerate(tracks)}
    kept = sorted((row[u], col[j]) for u, j in pairs)
    rows, cols = np.asarray(kept, dtype=np.int64).T
    matrix = sparse.csr_matrix(
        (np.ones(rows.size), (rows, cols)), shape=(len(users), len(tracks))
    )
    paths = [paths[j] for j in tracks]
    if check_files:
        _check_exist(paths, name)
    return EvalDataset(
        name,
        "recommendation",
        tuple(paths),
        tuple(track_ids[j] for j in tracks),
        interactions=matrix,
        users=tuple(users),
    )


def _track_map(path: Path, item_names: Sequence[str], what: str):
    table = _read_table(path, {"item": item_names, "path": ("path",)}, what)
    if len(set(table["item"])) != len(table["item"]):
        raise ConfigError(f"{what} {path} lists a track id twice")
    base = path.parent
    return table["item"], [_resolve(base, p) for p in table["path"]]


def _read_jam_to_msd(path: Path) -> dict[str, str]:
    """jam id -> MSD track id from ``jam_to_msd.tsv`` (``jam_id<TAB>track_id`` lines, a header allowed).

    A jam listed twice keeps its first track.
    """
    path = _require_file(Path(path), "jam to MSD mapping (jam_to_msd.tsv)")
    mapping: dict[str, str] = {}
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            fields = [field.strip() for field in line.split("\t")]
            if not line.strip():
                continue
            if len(fields) < 2 or not _MSD_TRACK_ID.fullmatch(fields[1]):
                if number == 1:  # the header
                    continue
                raise ConfigError(f"jam to MSD mapping {path}, line {number}: expected jam_id<TAB>MSD track id "
                                  f"(TR + 16 characters), got {line.strip()[:80]!r}")
            mapping.setdefault(fields[0], fields[1])
    if not mapping:
        raise ConfigError(f"jam to MSD mapping {path} maps no jam")
    return mapping


def _msd_audio(audio: Path) -> tuple[list[str], list[Path]]:
    """MSD track ids and their audio: a ``track_id,path`` CSV (in its order) or a folder of previews (sorted)."""
    if audio.is_dir():
        files, _ = find_msd_audio(audio)
        if not files:
            raise ConfigError(f"no MSD preview named <track id>.<ext> under {audio}")
        track_ids = sorted(files)
        return track_ids, [files[track_id] for track_id in track_ids]
    return _track_map(audio, ("track_id",), "audio map")


def load_thisismyjam(
    likes,
    audio,
    *,
    jam_to_msd=None,
    jams=None,
    min_likes: int = 1,
    min_track_likes: int = 0,
    check_files: bool = True,
) -> EvalDataset:
    """This Is My Jam likes for content-aware recommendation (paper 4.2), by MSD track or by jam.

    The paper's tracks are the Million Song Dataset tracks that jams are matched to, with their
    MSD audio previews. With a ``jam_to_msd`` mapping, every jam becomes its MSD track: jams
    without a match are left out, jams matched to the same track are merged and their likes pooled
    (a user who liked several of them likes the track once), and tracks without audio are left
    out. Without one, every jam with audio is a track of its own.

    Parameters
    ----------
    likes : str or path
        The dump's folder, holding ``likes.tsv`` and ``jams.tsv`` (and ``jam_to_msd.tsv``, when it
        is put there); or a likes file: ``likes.tsv`` (tab-separated, header ``user_id  jam_id``)
        or a CSV with ``user,item`` columns.
    audio : str or path
        With a mapping: a CSV with the columns ``track_id`` (MSD track id) and ``path``, or a
        folder of MSD previews named ``<track id>.<ext>``, nested or flat (see
        :func:`mtlmusic_training.datasets.find_msd_audio`). Without: a CSV with the columns
        ``jam_id`` (or ``track_id``/``item``) and ``path``. Relative paths are resolved against the
        CSV's folder. Tracks keep the CSV's order (a folder's: sorted by track id).
    jam_to_msd : str or path, optional
        The MSD's ``jam_to_msd.tsv``: ``jam_id<TAB>track_id`` lines (a header line is skipped; a
        jam listed twice keeps its first track). Default: ``jam_to_msd.tsv`` in the dump's folder
        when ``likes`` is that folder and it is there; otherwise tracks are jams.
    jams : str or path, optional
        The dump's ``jams.tsv`` (a ``jam_id`` column; ``user_id``, ``artist``, ``title``... are not
        needed): likes of jams it does not list are dropped. Default: the dump folder's one when
        ``likes`` is a folder; otherwise every like counts.
    min_likes : int, default 1
        Keep the users with at least this many likes on the kept tracks.
    min_track_likes : int, default 0
        Keep the tracks liked by at least this many kept users (0 also keeps tracks without likes).
        The two minimums are applied together until both hold, as dropping users can take tracks
        below theirs and the other way round.
    check_files : bool, default True
        Check that every kept track's audio file exists.

    Returns
    -------
    EvalDataset
        ``name="ThisIsMyJam"``, recommendation; ``ids`` are MSD track ids (or jam ids),
        ``interactions`` the binary users x tracks matrix (a repeated like counts once), ``users``
        the sorted user ids.

    Raises
    ------
    mtlmusic.ConfigError
        If a file or column is missing, a mapping line is malformed, no like refers to a track with
        audio, or no user meets the minimums.

    Notes
    -----
    The paper's set has 944 tracks and 993 users, "uniformly sampled" from the dump for efficiency
    (Table 5); it does not state how, nor any minimum number of likes. :data:`JAM_MIN_LIKES` is the
    filter the authors' later code documents for its own This Is My Jam subset (5 likes per user and
    5 per track), which the command line applies; the tracks kept depend on the MSD previews at hand.

    Examples
    --------
    >>> ds = load_thisismyjam("thisismyjam/", "msd_previews/", min_likes=5, min_track_likes=5)  # doctest: +SKIP
    >>> ds.interactions.shape  # doctest: +SKIP
    (993, 944)
    >>> ds = load_thisismyjam("jams/likes.tsv", "jam_audio.csv")  # tracks are jams  # doctest: +SKIP
    """
    likes = Path(likes)
    if likes.is_dir():
        folder = likes
        likes = _require_file(folder / "likes.tsv", "This Is My Jam likes (likes.tsv of the dump)")
        jams = folder / "jams.tsv" if jams is None else jams
        if jam_to_msd is None and (folder / "jam_to_msd.tsv").is_file():
            jam_to_msd = folder / "jam_to_msd.tsv"
    table = _read_table(
        likes, {"user": ("user_id", "user"), "item": ("jam_id", "item")}, "likes file"
    )
    users, items = table["user"], table["item"]
    if jams is not None:
        posted = set(_read_table(Path(jams), {"jam_id": ("jam_id",)}, "jams file")["jam_id"])
        kept = [i in posted for i in items]
        users = [u for u, keep in zip(users, kept) if keep]
        items = [i for i, keep in zip(items, kept) if keep]
    if jam_to_msd is None:
        track_ids, paths = _track_map(Path(audio), ("jam_id", "track_id", "item"), "audio map")
    else:
        track_of = _read_jam_to_msd(Path(jam_to_msd))
        items = [track_of.get(jam) for jam in items]
        track_ids, paths = _msd_audio(Path(audio))
    return _interactions(
        "ThisIsMyJam", users, items, track_ids, paths, min_likes, min_track_likes, check_files
    )


# ---------------------------------------------------------------------------------------------
# generic CSVs


def load_labels_csv(path, *, name: str | None = None, check_files: bool = True) -> EvalDataset:
    """A classification dataset from a CSV with the columns ``path`` and ``label``.

    Parameters
    ----------
    path : str or path
        The CSV (header row required; other columns are ignored). Relative audio paths are
        resolved against the CSV's folder.
    name : str, optional
        Dataset name; default the CSV's file stem.
    check_files : bool, default True
        Check that every audio file exists.

    Returns
    -------
    EvalDataset
        Classification; ids are the paths as written in the CSV.

    Raises
    ------
    mtlmusic.ConfigError
        If the file, a column or an audio file is missing, or a path is listed twice.

    Examples
    --------
    >>> ds = load_labels_csv("my_genres.csv")  # doctest: +SKIP
    """
    path, table, paths, dataset_name = _path_table(path, "label", "labels CSV", name, check_files)
    return EvalDataset(dataset_name, "classification", tuple(paths), tuple(table["path"]),
                       labels=np.asarray(table["label"], dtype=str))


def load_values_csv(path, *, name: str | None = None, check_files: bool = True) -> EvalDataset:
    """A regression dataset from a CSV with the columns ``path`` and ``value``.

    Reads the CSV as :func:`load_labels_csv` does (same parameters), with numbers instead of
    labels.

    Returns
    -------
    EvalDataset
        Regression; ids are the paths as written in the CSV.

    Raises
    ------
    mtlmusic.ConfigError
        If the file, a column or an audio file is missing, or a value is not a finite number.

    Examples
    --------
    >>> ds = load_values_csv("tempo.csv", name="Tempo")  # doctest: +SKIP
    """
    path, table, paths, dataset_name = _path_table(path, "value", "values CSV", name, check_files)
    return EvalDataset(dataset_name, "regression", tuple(paths), tuple(table["path"]),
                       values=_floats(table["value"], "values", path))


def _path_table(path, column: str, what: str, name: str | None, check_files: bool):
    """Read a ``path,<column>`` CSV: ``(csv path, table, resolved audio paths, dataset name)``."""
    path = Path(path)
    table = _read_table(path, {"path": ("path",), column: (column,)}, what)
    paths = [_resolve(path.parent, p) for p in table["path"]]
    dataset_name = name or path.stem
    if check_files:
        _check_exist(paths, dataset_name)
    return path, table, paths, dataset_name


def load_interactions_csv(
    interactions, tracks, *, name: str | None = None, min_likes: int = 1, check_files: bool = True
) -> EvalDataset:
    """A recommendation dataset from a ``user,item`` CSV and an ``item,path`` CSV.

    Parameters
    ----------
    interactions : str or path
        CSV with the columns ``user`` and ``item``, one row per like.
    tracks : str or path
        CSV with the columns ``item`` and ``path``, one row per track with audio; relative paths
        are resolved against its folder. Only these tracks are kept, in this order.
    name : str, optional
        Dataset name; default the interactions CSV's file stem.
    min_likes : int, default 1
        Drop users with fewer likes on the kept tracks.
    check_files : bool, default True
        Check that every audio file exists.

    Returns
    -------
    EvalDataset
        Recommendation with a binary users x tracks ``interactions`` matrix.

    Raises
    ------
    mtlmusic.ConfigError
        If a file, column or audio file is missing, or no like refers to a listed track.

    Examples
    --------
    >>> ds = load_interactions_csv("likes.csv", "tracks.csv")  # doctest: +SKIP
    """
    interactions = Path(interactions)
    table = _read_table(interactions, {"user": ("user",), "item": ("item",)}, "interactions CSV")
    track_ids, paths = _track_map(Path(tracks), ("item",), "tracks CSV")
    return _interactions(
        name or interactions.stem,
        table["user"],
        table["item"],
        track_ids,
        paths,
        min_likes,
        0,
        check_files,
    )
