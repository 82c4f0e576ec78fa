"""Teacher sources: environments, the runner protocol, outputs, targets and baseline features.

The plumbing runs with the numpy stand-in runner in this interpreter; the real
teachers (TensorFlow musicnn and tempo-CNN, ONNX basic-pitch, in their own
environments) are exercised by the tests marked slow.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from mtlmusic.errors import ConfigError
from mtlmusic_training.targets import load_targets, targets_path
from mtlmusic_training.teachers import (STANDIN_RUNNER, TEACHERS, Teacher, TeacherError, ensure_environment,
                                        load_outputs, run_teacher, track_key)
from mtlmusic_training.teachers.targets import (compute_teacher_targets, label_corpus, note_rate, pitch_bag,
                                                write_baseline_features)

SR = 22050


def _tone(path, hz, seconds=4.0, amplitude=0.3):
    t = np.arange(int(seconds * SR)) / SR
    y = amplitude * np.sin(2 * np.pi * hz * t)
    sf.write(path, np.stack([y, y], axis=1).astype(np.float32), SR)
    return path


@pytest.fixture()
def corpus(tmp_path):
    """Ten tones (A3 to C6; tone/6 repeats tone/0) and a bad file; 6 train, 2 valid, 3 test tracks."""
    rows = []
    for i, hz in enumerate([220.0, 261.6, 329.6, 440.0, 523.3, 659.3, 220.0, 1046.5, 880.0, 440.0]):
        split = "train" if i < 6 else "valid" if i < 8 else "test"
        rows.append((f"tone/{i}", _tone(tmp_path / f"tone{i}.flac", hz), split))
    (tmp_path / "bad.flac").write_text("not audio")
    rows.append(("bad", tmp_path / "bad.flac", "test"))
    with open(tmp_path / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["track_id", "path", "split"])
        writer.writerows((track_id, path.name, split) for track_id, path, split in rows)
    return tmp_path


def _clicks(path, bpm, seconds=20.0):
    """Short noise bursts on every beat of ``bpm``."""
    y = np.zeros(int(seconds * SR), dtype=np.float32)
    burst = np.random.default_rng(0).uniform(-0.5, 0.5, int(0.02 * SR)) * np.hanning(int(0.02 * SR))
    for start in np.arange(0, seconds - 0.05, 60.0 / bpm):
        y[int(start * SR):int(start * SR) + len(burst)] += burst
    sf.write(path, y, SR)
    return path


def _label(corpus, teachers=tuple(TEACHERS)):
    return label_corpus(corpus, teachers, pythons={t: sys.executable for t in teachers}, runner=STANDIN_RUNNER)


def test_runner_writes_one_result_per_track_and_resumes(corpus):
    items = [("a", _tone(corpus / "a.flac", 440.0)), ("b", corpus / "bad.flac")]
    out = corpus / "out"
    seen = []
    counts = run_teacher("musicnn", items, out, python=sys.executable, runner=STANDIN_RUNNER,
                         progress=lambda done, total: seen.append((done, total)))
    assert counts == {"done": 1, "failed": 1, "skipped": 0, "pending": 0}
    assert seen[-1] == (2, 2)
    assert (out / f"{track_key('a')}.npz").exists() and (out / f"{track_key('b')}.error").exists()
    first = (out / f"{track_key('a')}.npz").stat().st_mtime_ns
    assert run_teacher("musicnn", items, out, python=sys.executable, runner=STANDIN_RUNNER) == {
        "done": 0, "failed": 0, "skipped": 2, "pending": 0}
    assert (out / f"{track_key('a')}.npz").stat().st_mtime_ns == first
    assert run_teacher("musicnn", items, out, python=sys.executable, runner=STANDIN_RUNNER, retry_failed=True) == {
        "done": 0, "failed": 1, "skipped": 1, "pending": 0}
    assert not list(out.glob(".*.partial"))


def test_outputs_are_gathered_in_order_with_errors(corpus):
    items = [("a", _tone(corpus / "a.flac", 440.0)), ("b", corpus / "bad.flac")]
    run_teacher("musicnn", items, corpus / "out", python=sys.executable, runner=STANDIN_RUNNER)
    outputs = load_outputs("musicnn", corpus / "out", ["b", "a", "never-run"])
    assert outputs.present.tolist() == [False, True, False]
    assert outputs.arrays["msd_tags"].shape == (3, 50)
    assert np.isnan(outputs.arrays["msd_tags"][0]).all() and np.isfinite(outputs.arrays["msd_tags"][1]).all()
    assert list(outputs.errors) == ["b"] and "bad.flac" in outputs.errors["b"]


def test_a_runner_that_crashes_is_reported_and_the_run_resumes(corpus, tmp_path):
    crashing = tmp_path / "crash.py"
    crashing.write_text("import sys\nprint('done x', flush=True)\nsys.exit('boom')\n")
    with pytest.raises(TeacherError, match="boom"):
        run_teacher("musicnn", [("a", corpus / "tone0.flac")], tmp_path / "out", python=sys.executable,
                    runner=crashing)


def test_missing_environment_and_bad_input_are_clear_errors(corpus):
    with pytest.raises(TeacherError, match="`mtlmusic-train teachers CORPUS --teacher musicnn` creates the musicnn"):
        run_teacher("musicnn", [("a", corpus / "tone0.flac")], corpus / "out", python=corpus / "no" / "python")
    with pytest.raises(ConfigError, match="Unknown teacher"):
        run_teacher("nope", [], corpus / "out", python=sys.executable)
    with pytest.raises(ConfigError, match="tabs"):
        run_teacher("musicnn", [("a", "x\ty.flac")], corpus / "out", python=sys.executable)


def test_pitch_bag_and_note_rate_match_a_direct_count():
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 10, 40)
    notes = np.stack([starts, starts + rng.uniform(0.1, 2, 40), rng.integers(21, 109, 40), rng.uniform(0, 1, 40)], 1)
    expected = np.zeros(20)
    for start, end, pitch, amplitude in notes:
        expected[int(pitch) % 12] += (end - start) * amplitude
        expected[12 + min((int(pitch) - 21) // 12, 7)] += (end - start) * amplitude
    np.testing.assert_allclose(pitch_bag(notes), expected)
    assert note_rate(notes, 20.0) == 2.0
    assert pitch_bag(np.zeros((0, 4))).sum() == 0 and np.isnan(note_rate(notes, 0.0))


def test_targets_use_train_and_valid_tracks_only(corpus):
    _label(corpus)
    targets = compute_teacher_targets(corpus, dims={"notes": 4, "tempo_cnn": 4})  # a mixture needs more values
    assert sorted(targets) == ["mtt", "notes", "pitch", "tag", "tempo_cnn"]
    for source, target in targets.items():
        saved = load_targets(targets_path(corpus / "targets", source))
        np.testing.assert_array_equal(saved.z, target.z)
        assert saved.mask.tolist() == [True] * 8 + [False] * 3, source
        np.testing.assert_allclose(saved.z[saved.mask].sum(axis=1), 1.0, rtol=1e-5)
    assert targets["tag"].z.shape[1] == 50 and targets["pitch"].z.shape[1] == 12


def test_targets_tell_different_sounds_apart(corpus):
    _label(corpus, ["basic_pitch"])
    z = compute_teacher_targets(corpus, ["pitch"], dims={"pitch": 4}).pop("pitch").z
    assert z.shape[1] == 4
    # Rows follow the manifest: tone/6 repeats tone/0 (A3); tone/4 (C5) is another pitch and octave.
    np.testing.assert_allclose(z[6], z[0], atol=1e-6)
    assert np.abs(z[0] - z[4]).sum() > 0.5


def test_tempo_targets_follow_the_teachers_tempo(tmp_path):
    tempi = [90.0, 120.0, 90.0, 150.0, 120.0, 90.0]
    with open(tmp_path / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["track_id", "path", "split"])
        writer.writerows((f"clicks/{i}", _clicks(tmp_path / f"clicks{i}.flac", bpm).name, "train")
                         for i, bpm in enumerate(tempi))
    _label(tmp_path, ["tempocnn"])
    outputs = load_outputs("tempocnn", tmp_path / "teachers" / "tempocnn", [f"clicks/{i}" for i in range(6)])
    np.testing.assert_allclose(outputs.arrays["bpm"], tempi, atol=2.0)
    np.testing.assert_allclose(outputs.arrays["tempo_distribution"].sum(axis=1), 1.0, rtol=1e-5)
    z = compute_teacher_targets(tmp_path, ["tempo_cnn"], dims={"tempo_cnn": 3}).pop("tempo_cnn").z
    np.testing.assert_allclose(z[2], z[0], atol=1e-6)
    assert np.abs(z[0] - z[1]).sum() > 0.5 and np.abs(z[1] - z[3]).sum() > 0.5


def test_targets_need_labels_first(corpus):
    with pytest.raises(ConfigError, match="label_corpus"):
        compute_teacher_targets(corpus, ["tag"])
    with pytest.raises(ConfigError, match="Unknown"):
        compute_teacher_targets(corpus, ["bpm"])


def test_baseline_features_are_a_feature_file_evaluate_reads(corpus):
    from mtlmusic.extraction.sinks import read_features
    from mtlmusic_training.evaluation import EvalDataset, evaluate

    _label(corpus, ["musicnn"])
    written = write_baseline_features(corpus)
    assert [p.name for p in written] == ["musicnn-penultimate.npz", "musicnn-mean-pool.npz"]
    table = read_features(written[0])
    assert table.features.shape == (10, 200) and len(table.paths) == 10   # the bad file has no row
    paths = tuple(str(corpus / f"tone{i}.flac") for i in range(8))
    labels = np.array(["low", "low", "low", "mid", "mid", "mid", "high", "high"])
    dataset = EvalDataset("tones", "classification", paths, tuple(str(i) for i in range(8)), labels=labels)
    result = evaluate(written[1], dataset, n_repeats=1, n_folds=2)
    assert np.isfinite(result.mean)


def test_environment_is_made_once_and_remade_when_its_pins_change(tmp_path):
    bare = Teacher("bare", "standin_runner.py", requirements=(), no_deps=())
    python = ensure_environment(bare, tmp_path, log=lambda line: None)
    assert python == tmp_path / "bare" / "bin" / "python" and python.exists()
    stamp = tmp_path / "bare" / "mtlmusic-teacher.json"
    made = stamp.stat().st_mtime_ns
    assert ensure_environment(bare, tmp_path) == python and stamp.stat().st_mtime_ns == made
    stamp.write_text(json.dumps({"teacher": "bare", "requirements": ["old==1"]}))
    lines = []
    ensure_environment(bare, tmp_path, log=lines.append)
    assert lines and json.loads(stamp.read_text())["requirements"] == []
    out = subprocess.run([str(python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True)
    assert out.stdout.strip() == str(tmp_path / "bare")


@pytest.mark.slow
@pytest.mark.parametrize("teacher", sorted(TEACHERS))
def test_real_teacher_labels_a_tone(teacher, tmp_path):
    """Creates the pinned environment (a few hundred MB from the package index) and labels an A4 tone."""
    python = ensure_environment(teacher)
    path = (_clicks(tmp_path / "clicks.flac", 120.0) if teacher == "tempocnn"
            else _tone(tmp_path / "a4.flac", 440.0, seconds=10.0))
    assert run_teacher(teacher, [("a4", path)], tmp_path / "out", python=python)["done"] == 1
    outputs = load_outputs(teacher, tmp_path / "out", ["a4"])
    assert outputs.present.all()
    if teacher == "tempocnn":
        script = ("import sys\nfrom tempocnn.classifier import TempoClassifier\nfrom tempocnn.feature import "
                  "read_features\nprint(TempoClassifier('fcn').estimate_tempo(read_features(sys.argv[1]), "
                  "interpolate=True))")
        done = subprocess.run([str(python), "-c", script, str(path)], capture_output=True, text=True, check=True)
        assert abs(float(outputs.arrays["bpm"][0]) - float(done.stdout.split()[-1])) < 1e-3
        assert abs(float(outputs.arrays["bpm"][0]) - 120.0) < 3.0
    elif teacher == "basic_pitch":
        pitches = outputs.arrays["notes"][0][:, 2]
        assert 69 in pitches.astype(int)
    else:
        tags = outputs.arrays["msd_tags"][0]
        assert tags.shape == (50,) and ((tags > 0) & (tags < 1)).all()
        script = ("import sys, numpy as np\nfrom musicnn.extractor import extractor\n"
                  "taggram, _, _ = extractor(sys.argv[1], model='MSD_musicnn')\nprint(*taggram.mean(0))")
        done = subprocess.run([str(python), "-c", script, str(path)], capture_output=True, text=True, check=True)
        reference = np.array(done.stdout.split()[-50:], dtype=np.float64)
        np.testing.assert_allclose(tags, reference, atol=1e-5)


def test_excerpts_are_labelled_in_rounds_and_a_time_limit_leaves_the_rest_pending(corpus):
    import pandas as pd

    from mtlmusic_training.corpus._io import write_table
    from mtlmusic_training.teachers.targets import labelling_order

    ids = [f"tone/{i}" for i in range(10)] + ["bad"]
    source = ["a", "a", "a", "b", "b", "c", "d", "e", "f", "g", "h"]
    start = [60.0, 0.0, 30.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    write_table(pd.DataFrame({"track_id": ids, "source_track": source, "start": start}), corpus / "metadata.csv")
    order = labelling_order(corpus).tolist()
    assert order == [8, 9, 10, 1, 4, 5, 6, 7, 2, 3, 0]   # round 0 (test tracks first), then rounds 1 and 2
    report = label_corpus(corpus, ["musicnn"], pythons={"musicnn": sys.executable}, runner=STANDIN_RUNNER,
                          max_minutes=0.0)
    assert report["musicnn"]["done"] == 1 and report["musicnn"]["pending"] == 10
    labelled = load_outputs("musicnn", corpus / "teachers" / "musicnn", ids).present
    assert labelled.tolist() == [i == 8 for i in range(11)]
    report = label_corpus(corpus, ["musicnn"], pythons={"musicnn": sys.executable}, runner=STANDIN_RUNNER)
    assert report["musicnn"] == {"done": 9, "failed": 1, "skipped": 1, "pending": 0}


def test_only_a_baseline_teacher_labels_the_held_out_tracks(corpus):
    from mtlmusic_training.datasets import Manifest

    report = _label(corpus, ["musicnn", "basic_pitch"])
    manifest = Manifest.load(corpus / "manifest.csv")
    held_out = np.asarray(manifest.splits) == "test"
    assert held_out.any() and not held_out.all()
    assert sum(report["musicnn"].values()) == len(held_out)
    assert sum(report["basic_pitch"].values()) == (~held_out).sum()
    basic_pitch = load_outputs("basic_pitch", corpus / "teachers" / "basic_pitch", manifest.track_ids).present
    musicnn = load_outputs("musicnn", corpus / "teachers" / "musicnn", manifest.track_ids).present
    assert not basic_pitch[held_out].any() and musicnn[held_out].any()
