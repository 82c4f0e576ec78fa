"""Teacher sources: learning targets that pretrained open models predict from the audio of any track.

The study's ``tag`` source was Last.fm tags of the Million Song Dataset. Open
models that ship their weights in their wheels can supply such targets for any
audio: a teacher labels every track once, its outputs are cached beside the
corpus, and :mod:`.targets` turns them into learning targets like any other
source. Each teacher runs in its own pinned virtual environment (created by
:func:`ensure_environment`; the project's own environment never needs
TensorFlow), through a runner script of :data:`RUNNERS` that speaks one small
protocol (see ``runners/_protocol.py``): a job file of ``key<TAB>path`` lines in,
one ``key.npz`` (or ``key.error``) per track out, resumable.

=============  =================================================  ===============================
teacher        model (licence)                                    outputs per track
=============  =================================================  ===============================
musicnn        MSD_musicnn and MTT_musicnn, musicnn 0.1.0 (ISC)   50 MSD tags, 50 MagnaTagATune
                                                                  tags, MSD_musicnn penultimate
                                                                  (200) and mean-pool (753)
                                                                  features
basic_pitch    basic-pitch 0.4.0, ICASSP 2022 ONNX model          note events, mean note
               (Apache-2.0)                                       posteriorgram (88)
tempocnn       tempo-CNN fcn model, tempocnn 0.0.8 (AGPL-3.0)     tempo distribution over 30-285
                                                                  BPM (256), global tempo
=============  =================================================  ===============================

Tests run the plumbing with :data:`STANDIN_RUNNER`, a small numpy stand-in that
writes outputs of the same names and shapes in the project's own interpreter.

Examples
--------
>>> sorted(TEACHERS)
['basic_pitch', 'musicnn', 'tempocnn']
>>> TEACHERS["musicnn"].outputs["msd_tags"]
(50,)
>>> python = ensure_environment("musicnn")  # doctest: +SKIP
>>> run_teacher("musicnn", [("t1", "song.flac")], "corpus/teachers/musicnn", python=python)  # doctest: +SKIP
{'done': 1, 'failed': 0, 'skipped': 0, 'pending': 0}
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtlmusic.errors import ConfigError, MtlmusicError
from mtlmusic.files import atomic_path

#: Folder of the runner scripts (run by a teacher's own interpreter, without mtlmusic).
RUNNERS = Path(__file__).with_name("runners")
#: The numpy stand-in runner used by the tests: outputs of every teacher's names and shapes.
STANDIN_RUNNER = RUNNERS / "standin_runner.py"
#: Environment variable of the root folder of the teachers' environments.
ENV_TEACHERS = "MTLMUSIC_TEACHERS"
_STAMP = "mtlmusic-teacher.json"


class TeacherError(MtlmusicError, RuntimeError):
    """A teacher's environment could not be made, or its runner failed as a whole."""


@dataclass(frozen=True)
class Teacher:
    """A pretrained model that labels audio, with its pinned environment and runner.

    Attributes
    ----------
    name : str
    runner : str
        Script under :data:`RUNNERS`.
    requirements : tuple of str
        Pinned packages installed with their dependencies.
    no_deps : tuple of str
        Pinned packages installed without their declared dependencies (the teacher's own
        package, whose declared pins cannot be installed on current Python).
    outputs : dict
        Name -> shape of each fixed-size array the runner writes per track (``None``
        for arrays whose length varies from track to track).
    licence : str
    description : str
    baseline : bool
        Whether its features are an evaluation baseline, so that it labels the held-out
        (test) tracks too; other teachers label only the tracks their targets are fitted on.
    """

    name: str
    runner: str
    requirements: tuple[str, ...]
    no_deps: tuple[str, ...]
    outputs: dict = field(default_factory=dict)
    licence: str = ""
    description: str = ""
    baseline: bool = False

    def spec(self) -> dict:
        """What an environment must hold for this teacher (compared with the environment's stamp)."""
        return {"teacher": self.name, "requirements": list(self.requirements), "no_deps": list(self.no_deps),
                "python": f"{sys.version_info.major}.{sys.version_info.minor}"}


#: The teachers, by name.
TEACHERS = {
    "musicnn": Teacher(
        "musicnn", "musicnn_runner.py",
        requirements=("tensorflow-cpu==2.15.1", "numpy==1.26.4", "librosa==0.10.2.post1", "soundfile==0.14.0"),
        no_deps=("musicnn==0.1.0",),
        outputs={"msd_tags": (50,), "mtt_tags": (50,), "msd_penultimate": (200,), "msd_mean_pool": (753,),
                 "patches": ()},
        licence="ISC (code and weights, musicnn 0.1.0)",
        description="MSD_musicnn (50 Last.fm tags of the Million Song Dataset) and MTT_musicnn (50 MagnaTagATune "
                    "tags) taggers, 3 s patches, mean over patches",
        baseline=True),
    "basic_pitch": Teacher(
        "basic_pitch", "basic_pitch_runner.py",
        requirements=("onnxruntime==1.32.0", "numpy==1.26.4", "librosa==0.10.2.post1", "resampy==0.4.2",
                      "pretty_midi==0.2.11.post0", "mir_eval==0.8.2", "scipy==1.17.1", "soundfile==0.14.0"),
        no_deps=("basic-pitch==0.4.0",),
        outputs={"notes": None, "note_activation": (88,), "seconds": ()},
        licence="Apache-2.0 (code and ONNX model, basic-pitch 0.4.0)",
        description="polyphonic note transcription (ICASSP 2022 model): note events and mean note posteriorgram"),
    "tempocnn": Teacher(
        "tempocnn", "tempocnn_runner.py",
        requirements=("tensorflow-cpu==2.17.0", "keras==3.4.1", "numpy==1.26.4", "librosa==0.10.2.post1",
                      "soundfile==0.14.0"),
        no_deps=("tempocnn==0.0.8",),
        outputs={"tempo_distribution": (256,), "bpm": (), "windows": ()},
        licence="AGPL-3.0 (code and weights, tempocnn 0.0.8)",
        description="tempo-CNN's fcn model: distribution over 30-285 BPM of 11.9 s windows, mean over windows, "
                    "and its global tempo"),
}


def get_teacher(name: str | Teacher) -> Teacher:
    """The :class:`Teacher` of a name (a Teacher is returned as is).

    >>> get_teacher("basic_pitch").runner
    'basic_pitch_runner.py'
    """
    if isinstance(name, Teacher):
        return name
    if name not in TEACHERS:
        raise ConfigError(f"Unknown teacher {name!r}; choose from {', '.join(sorted(TEACHERS))}.")
    return TEACHERS[name]


def teachers_home() -> Path:
    """Root folder of the teachers' environments: ``$MTLMUSIC_TEACHERS``, else ``$MTLMUSIC_HOME/teachers``,
    else ``~/.cache/mtlmusic/teachers``.

    >>> teachers_home().name
    'teachers'
    """
    if os.environ.get(ENV_TEACHERS):
        return Path(os.environ[ENV_TEACHERS]).expanduser()
    home = os.environ.get("MTLMUSIC_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "mtlmusic") / "teachers"


def environment_python(teacher: str | Teacher, root: str | os.PathLike | None = None) -> Path:
    """The interpreter of a teacher's environment (which may not exist yet).

    >>> environment_python("musicnn", "/envs").as_posix()
    '/envs/musicnn/bin/python'
    """
    folder = Path(root).expanduser() if root is not None else teachers_home()
    return folder / get_teacher(teacher).name / "bin" / "python"


def ensure_environment(teacher: str | Teacher, root: str | os.PathLike | None = None, *,
                       log: Callable[[str], None] | None = None) -> Path:
    """Create a teacher's pinned virtual environment unless an intact one exists; return its interpreter.

    The environment is ``<root>/<teacher>``. It counts as intact when its stamp file
    records the same requirements and Python version; otherwise it is rebuilt from
    scratch (``venv --clear``), its packages installed with pip from the package
    index, and the stamp written last, so an interrupted installation is redone.

    Parameters
    ----------
    teacher : str or Teacher
    root : str or path-like, optional
        Default :func:`teachers_home`.
    log : callable, optional
        Called with a line of text before each step.

    Returns
    -------
    Path
        The environment's ``python``.

    Raises
    ------
    TeacherError
        If pip fails (its output's end is in the message).

    Examples
    --------
    >>> ensure_environment("basic_pitch")  # doctest: +SKIP
    PosixPath('/root/.cache/mtlmusic/teachers/basic_pitch/bin/python')
    """
    teacher = get_teacher(teacher)
    python = environment_python(teacher, root)
    folder = python.parent.parent
    stamp = folder / _STAMP
    try:
        if json.loads(stamp.read_text(encoding="utf-8")) == teacher.spec() and python.exists():
            return python
    except (OSError, ValueError):
        pass
    say = log or (lambda line: None)
    say(f"creating the {teacher.name} environment in {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(clear=True, with_pip=True).create(folder)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for what, extra in ((teacher.requirements, []), (teacher.no_deps, ["--no-deps"])):
        if not what:
            continue
        say(f"pip install {' '.join(extra + list(what))}")
        done = subprocess.run(pip + extra + list(what), capture_output=True, text=True)
        if done.returncode:
            raise TeacherError(f"Installing {' '.join(what)} for {teacher.name} failed:\n{done.stderr[-3000:]}")
    with atomic_path(stamp) as tmp:
        tmp.write_text(json.dumps(teacher.spec()), encoding="utf-8")
    return python


def track_key(track_id: str) -> str:
    """The file name stem of a track's teacher output: a hash of its id (ids may hold slashes or spaces).

    >>> track_key("wesnoth/battle 1")
    'ae3282e0ecf9ec6883408793'
    """
    return hashlib.sha256(str(track_id).encode("utf-8")).hexdigest()[:24]


def run_teacher(teacher: str | Teacher, items: Iterable[tuple[str, str | os.PathLike]],
                out_dir: str | os.PathLike, *, python: str | os.PathLike | None = None,
                runner: str | os.PathLike | None = None, retry_failed: bool = False,
                max_minutes: float | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Label tracks with a teacher: one ``<out_dir>/<key>.npz`` per track (:func:`track_key`), resumable.

    Tracks are labelled in the order given. Tracks with a result are skipped;
    tracks that failed before (a ``.error`` file) are skipped too unless
    ``retry_failed``. A track that fails is recorded and the run goes on.

    Parameters
    ----------
    teacher : str or Teacher
    items : iterable of (track_id, path)
    out_dir : str or path-like
        Folder of the results; the job file ``jobs.tsv`` (keys and paths) and the
        runner's messages ``runner.log`` are written there too.
    python : str or path-like, optional
        Interpreter of the teacher's environment; default :func:`environment_python`
        (which :func:`ensure_environment` must have made).
    runner : str or path-like, optional
        The runner script; default the teacher's own (:data:`STANDIN_RUNNER` for tests).
    retry_failed : bool
    max_minutes : float, optional
        Stop the runner after this long (the tracks not reached are left for a later run).
    progress : callable, optional
        Called as ``progress(done, total)`` after each track.

    Returns
    -------
    dict
        Counts of ``done``, ``failed`` and ``skipped`` tracks, and ``pending``: those not
        reached within ``max_minutes``.

    Raises
    ------
    TeacherError
        If the interpreter is missing or the runner stops with an error before the end.

    Examples
    --------
    >>> run_teacher("musicnn", [("t1", "song.flac")], "teachers/musicnn")  # doctest: +SKIP
    {'done': 1, 'failed': 0, 'skipped': 0, 'pending': 0}
    """
    teacher = get_teacher(teacher)
    items = [(str(track_id), os.path.abspath(path)) for track_id, path in items]
    keys = [track_key(track_id) for track_id, _ in items]
    if len(set(keys)) != len(keys):
        raise ConfigError("Track ids must be unique.")
    bad = [track_id for track_id, path in items if "\t" in path or "\n" in path]
    if bad:
        raise ConfigError(f"Audio paths may not hold tabs or line breaks: tracks {bad[:3]}.")
    python = Path(python) if python is not None else environment_python(teacher)
    if not python.exists():
        raise TeacherError(f"No interpreter at {python}: `mtlmusic-train teachers CORPUS --teacher {teacher.name}` "
                           f"creates the {teacher.name} environment (or ensure_environment({teacher.name!r})).")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "jobs.tsv") as tmp:
        tmp.write_text("".join(f"{key}\t{path}\n" for key, (_, path) in zip(keys, items)), encoding="utf-8")
    command = [str(python), str(runner or RUNNERS / teacher.runner), "--jobs", str(out / "jobs.tsv"),
               "--out", str(out)] + (["--retry-failed"] if retry_failed else [])
    counts = {"done": 0, "failed": 0, "skipped": 0}
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
    with open(out / "runner.log", "ab") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True,
                                   env=os.environ | {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
        for line in process.stdout:
            status = line.split(" ", 1)[0]
            if status in counts:
                counts[status] += 1
                if progress:
                    progress(sum(counts.values()), len(items))
            if deadline is not None and time.monotonic() > deadline:
                process.terminate()
                process.wait()
                return counts | {"pending": len(items) - sum(counts.values())}
        if process.wait():
            tail = (out / "runner.log").read_text(errors="replace")[-3000:]
            raise TeacherError(f"The {teacher.name} runner stopped with status {process.returncode} after "
                               f"{sum(counts.values())} of {len(items)} tracks (rerun to resume):\n{tail}")
    return counts | {"pending": 0}


@dataclass(frozen=True)
class TeacherOutputs:
    """A teacher's outputs for a list of tracks, row by row.

    Attributes
    ----------
    track_ids : tuple of str
    arrays : dict
        Output name -> array of shape ``(n_tracks, *shape)`` (NaN rows where a track
        has no result) for fixed-size outputs, or a list of per-track arrays (None where
        missing) for variable-size ones.
    present : ndarray of bool
        Whether each track has a result.
    errors : dict
        Track id -> the runner's message, for failed tracks.
    """

    track_ids: tuple[str, ...]
    arrays: dict
    present: np.ndarray
    errors: dict


def load_outputs(teacher: str | Teacher, out_dir: str | os.PathLike, track_ids: Sequence[str]) -> TeacherOutputs:
    """Gather the per-track results of :func:`run_teacher` for ``track_ids``, in that order.

    Examples
    --------
    >>> outputs = load_outputs("musicnn", "corpus/teachers/musicnn", ["t1", "t2"])  # doctest: +SKIP
    >>> outputs.arrays["msd_tags"].shape  # doctest: +SKIP
    (2, 50)
    """
    teacher = get_teacher(teacher)
    out = Path(out_dir)
    n = len(track_ids)
    arrays: dict = {name: (np.full((n, *shape), np.nan, dtype=np.float32) if shape is not None else [None] * n)
                    for name, shape in teacher.outputs.items()}
    present = np.zeros(n, dtype=bool)
    errors = {}
    for row, track_id in enumerate(track_ids):
        key = track_key(track_id)
        result, error = out / f"{key}.npz", out / f"{key}.error"
        if result.exists():
            with np.load(result, allow_pickle=False) as data:
                for name, shape in teacher.outputs.items():
                    value = np.asarray(data[name], dtype=np.float32)
                    if shape is not None and value.shape != shape:
                        raise TeacherError(f"{result}: {name} has shape {value.shape}, expected {shape}.")
                    arrays[name][row] = value
            present[row] = True
        elif error.exists():
            errors[str(track_id)] = error.read_text(encoding="utf-8", errors="replace")
    return TeacherOutputs(tuple(str(t) for t in track_ids), arrays, present, errors)
