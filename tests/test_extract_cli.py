"""mtlmusic-extract: recursion, filters, formats, resume after a kill, failures, per-file output."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import mtlmusic
from samples import REAL_MUSIC, tone
from mtlmusic.extraction.engine import extract_files, find_audio_files
from mtlmusic.cli import app
from mtlmusic.extraction.sinks import read_features, write_features

runner = CliRunner()


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """music/ with MP3, FLAC, WAV and OGG files in nested folders, a corrupt file and a non-audio file."""
    root = tmp_path_factory.mktemp("collection") / "music"
    (root / "rock" / "live").mkdir(parents=True)
    (root / "jazz").mkdir()
    sf.write(root / "rock" / "a.mp3", tone(4.0, 44100, seed=1), 44100)
    sf.write(root / "rock" / "live" / "b.flac", tone(6.0, 48000, seed=2), 48000)
    sf.write(root / "jazz" / "c.wav", tone(3.0, 22050, channels=1, seed=3), 22050)
    shutil.copy(REAL_MUSIC, root / "jazz" / "d.ogg")
    (root / "jazz" / "broken.mp3").write_bytes(b"\xff\xfb" + os.urandom(3000))
    (root / "notes.txt").write_text("not audio")
    return root


def run(*args: str):
    return runner.invoke(app, ["extract", *args])


def test_finds_audio_recursively_and_filters(collection):
    names = [p.name for p in find_audio_files([collection])]
    assert names == ["broken.mp3", "c.wav", "d.ogg", "a.mp3", "b.flac"]
    assert [p.name for p in find_audio_files([collection], "*.mp3")] == ["broken.mp3", "a.mp3"]
    assert [p.name for p in find_audio_files([collection], "rock/*")] == ["a.mp3", "b.flac"]
    assert [p.name for p in find_audio_files([collection / "rock" / "a.mp3", collection / "rock"])] == ["a.mp3", "b.flac"]


@pytest.mark.parametrize("fmt", ["npy", "npz", "csv", "parquet"])
def test_every_format_reads_back_in_order(collection, model_file, tmp_path, fmt):
    out = tmp_path / f"feats.{fmt}"
    result = run(str(collection), "-o", str(out), "-m", str(model_file), "--workers", "0", "-q")
    assert result.exit_code == 1  # broken.mp3 failed, the rest was written
    table = read_features(out)
    expected = [str(p) for p in find_audio_files([collection]) if p.name != "broken.mp3"]
    assert table.paths == expected
    model = mtlmusic.load_model(model_file, device="cpu")
    assert table.feature_names == model.feature_names
    assert np.allclose(table.features, model.extract([Path(p) for p in expected]), atol=1e-4)
    failures = (tmp_path / f"feats.{fmt}.failures.tsv").read_text().splitlines()
    assert len(failures) == 2 and failures[1].startswith(str(collection / "jazz" / "broken.mp3"))


def test_workers_give_the_same_result(collection, model_file, tmp_path):
    model = mtlmusic.load_model(model_file, device="cpu")
    paths = find_audio_files([collection], "*.[fwo]*")
    serial = [r.features for r in extract_files(model, paths, workers=0)]
    parallel = [r.features for r in extract_files(model, paths, workers=2)]
    assert np.allclose(np.stack(serial), np.stack(parallel), atol=1e-5)


def test_rerun_skips_what_is_done(collection, model_file, tmp_path):
    out = tmp_path / "feats.npz"
    first = run(str(collection / "rock"), "-o", str(out), "-m", str(model_file), "--workers", "0", "-q")
    assert first.exit_code == 0, first.output
    before = read_features(out)
    second = run(str(collection), "-o", str(out), "-m", str(model_file), "--workers", "0", "-q", "--glob", "*.[wf]*")
    assert "1 extracted, 1 already done" in second.output
    after = read_features(out)
    rock = collection / "rock"
    assert after.paths == [str(collection / "jazz" / "c.wav"), str(rock / "live" / "b.flac"), str(rock / "a.mp3")]
    for path, row in zip(before.paths, before.features):
        assert np.array_equal(after.features[after.paths.index(path)], row)


def test_other_model_is_not_overwritten_silently(collection, model_file, tmp_path):
    out = tmp_path / "feats.npz"
    assert run(str(collection / "rock"), "-o", str(out), "-m", str(model_file), "-q", "--workers", "0").exit_code == 0
    other = tmp_path / "other.safetensors"
    mtlmusic.load_model(model_file).save(other)
    data = out.read_bytes()
    from mtlmusic.architectures import build_network
    from mtlmusic.frontend import Scaler
    from mtlmusic.modelfile import save_model_file
    save_model_file(other, build_network("SS-R", ["bpm"]), Scaler.identity(), name="ssr-bpm")
    result = run(str(collection / "rock"), "-o", str(out), "-m", str(other), "-q")
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert out.read_bytes() == data
    assert run(str(collection / "rock"), "-o", str(out), "-m", str(other), "-q", "--overwrite").exit_code == 0
    assert read_features(out).features.shape[1] == 512


def test_features_of_an_older_aggregation_are_not_mixed_in(collection, model_file, tmp_path):
    """A table from a version that counted the padded final slice fully is not resumed into."""
    out = tmp_path / "feats.npz"
    assert run(str(collection / "rock"), "-o", str(out), "-m", str(model_file), "-q", "--workers", "0").exit_code == 0
    table = read_features(out)
    old_meta = {k: v for k, v in table.meta.items() if k != "aggregation"}
    write_features(out, table.features, table.paths, table.feature_names, meta=old_meta)
    result = run(str(collection / "rock"), "-o", str(out), "-m", str(model_file), "-q", "--workers", "0")
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert read_features(out).meta == old_meta


def test_unwritable_output(collection, model_file, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that can write anywhere")
        result = run(str(collection), "-o", str(locked / "f.npy"), "-m", str(model_file), "-q")
        assert result.exit_code == 2 and "Cannot write" in result.output
    finally:
        locked.chmod(0o700)


def test_output_under_a_file_is_refused(collection, model_file, tmp_path):
    (tmp_path / "plain").write_text("x")
    result = run(str(collection), "-o", str(tmp_path / "plain" / "f.npy"), "-m", str(model_file), "-q")
    assert result.exit_code == 2 and "Cannot write" in result.output


def test_no_audio_and_bad_extension(tmp_path, model_file):
    assert run(str(tmp_path), "-o", str(tmp_path / "f.npy"), "-m", str(model_file)).exit_code == 2
    result = run(str(REAL_MUSIC), "-o", str(tmp_path / "f.xlsx"), "-m", str(model_file))
    assert result.exit_code == 2 and ".parquet" in result.output


def test_per_file_mirrors_the_tree(collection, model_file, tmp_path):
    result = run(str(collection), "--per-file", str(tmp_path / "out"), "-m", str(model_file), "-q", "--workers", "0")
    assert result.exit_code == 1
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.npy"))
    assert written == ["jazz/c.wav.npy", "jazz/d.ogg.npy", "rock/a.mp3.npy", "rock/live/b.flac.npy"]
    model = mtlmusic.load_model(model_file, device="cpu")
    assert np.allclose(np.load(tmp_path / "out" / "jazz" / "d.ogg.npy"), model.extract(REAL_MUSIC), atol=1e-4)
    assert (tmp_path / "out" / "failures.tsv").exists()


def test_slices_with_timestamps(model_file, tmp_path):
    out = tmp_path / "slices.csv"
    result = run(str(REAL_MUSIC), "-o", str(out), "-m", str(model_file), "--slices", "-q", "--workers", "0")
    assert result.exit_code == 0, result.output
    table = read_features(out)
    reference = mtlmusic.load_model(model_file, device="cpu").extract_slices(REAL_MUSIC)
    assert np.allclose(table.times, reference.times, atol=1e-3)
    assert np.allclose(table.features, reference.features, atol=1e-4)


def test_killed_run_resumes_to_the_same_result(model_file, tmp_path):
    music = tmp_path / "many"
    music.mkdir()
    for i in range(40):
        sf.write(music / f"t{i:02d}.flac", tone(5.0, 22050, seed=i), 22050)
    command = [sys.executable, "-m", "mtlmusic.cli", "extract", str(music), "-m", str(model_file),
               "--workers", "0", "--checkpoint-every", "2", "-q"]
    out = tmp_path / "feats.npy"
    process = subprocess.Popen(command + ["-o", str(out)], stderr=subprocess.PIPE)
    parts = tmp_path / ".feats.npy.parts"
    deadline = time.monotonic() + 120
    while len(list(parts.glob("shard-*.npz"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    resumed = subprocess.run(command + ["-o", str(out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    done_before = int(resumed.stderr.split(" extracted, ")[1].split(" already done")[0])
    assert done_before >= 6
    assert not parts.exists()
    clean = subprocess.run(command + ["-o", str(tmp_path / "clean.npy")], capture_output=True, text=True)
    assert clean.returncode == 0
    a, b = read_features(out), read_features(tmp_path / "clean.npy")
    assert a.paths == b.paths and len(a.paths) == 40
    assert np.allclose(a.features, b.features, atol=1e-5)


def test_models_and_info(model_file):
    listing = runner.invoke(app, ["models"])
    assert listing.exit_code == 0 and "default" in listing.output
    info = runner.invoke(app, ["info", str(model_file)])
    assert info.exit_code == 0
    config = __import__("json").loads(info.output)
    assert config["architecture"] == "MS-CR@2" and config["dim"] == 1536
    assert runner.invoke(app, ["info", "no-such-model"]).exit_code == 2


def test_feature_dataset_folder(collection, model_file, tmp_path):
    """-o FOLDER: Parquet parts and a manifest; same rows as a feature file; readable by pandas; resumed by part."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    single = tmp_path / "feats.npz"
    run(str(collection), "-o", str(single), "-m", str(model_file), "--workers", "0", "-q")
    dataset = tmp_path / "dataset"
    result = run(str(collection), "-o", str(dataset), "-m", str(model_file), "--workers", "0", "-q",
                 "--checkpoint-every", "2")
    assert result.exit_code == 1  # broken.mp3
    assert sorted(p.name for p in dataset.iterdir()) == ["_manifest.json", "part-000000.parquet", "part-000001.parquet"]
    table, reference = read_features(dataset), read_features(single)
    assert table.meta["complete"] and sorted(table.paths) == sorted(reference.paths)
    order = [table.paths.index(p) for p in reference.paths]
    assert np.array_equal(table.features[order], reference.features)
    frame = pd.read_parquet(dataset)
    assert sorted(frame["path"]) == sorted(reference.paths) and frame.shape[1] == 1 + reference.features.shape[1]

    (dataset / "part-000001.parquet").unlink()  # as if the job had stopped after its first part
    again = run(str(collection), "-o", str(dataset), "-m", str(model_file), "--workers", "0", "-q")
    assert "2 extracted, 2 already done" in again.output
    assert sorted(read_features(dataset).paths) == sorted(reference.paths)


def test_feature_dataset_refuses_other_folders_and_models(collection, model_file, tmp_path):
    from mtlmusic.architectures import build_network
    from mtlmusic.frontend import Scaler
    from mtlmusic.modelfile import save_model_file

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"jpeg")
    result = run(str(collection / "rock"), "-o", str(folder), "-m", str(model_file), "-q", "--workers", "0")
    assert result.exit_code == 2 and "not a feature dataset" in result.output
    assert [p.name for p in folder.iterdir()] == ["holiday.jpg"]

    plain = tmp_path / "features"
    plain.write_text("a file without extension")
    result = run(str(collection / "rock"), "-o", str(plain), "-m", str(model_file), "-q", "--workers", "0")
    assert result.exit_code == 2 and "is a file" in result.output and plain.read_text() == "a file without extension"

    dataset = tmp_path / "dataset"
    assert run(str(collection / "rock"), "-o", str(dataset), "-m", str(model_file), "-q", "--workers", "0").exit_code == 0
    other = tmp_path / "ssr-bpm.safetensors"
    save_model_file(other, build_network("SS-R", ["bpm"]), Scaler.identity(), name="ssr-bpm")
    result = run(str(collection / "rock"), "-o", str(dataset), "-m", str(other), "-q")
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert run(str(collection / "rock"), "-o", str(dataset), "-m", str(other), "-q", "--overwrite").exit_code == 0
    assert read_features(dataset).meta["model"] == "ssr-bpm"


def test_files_from_a_list(collection, model_file, tmp_path):
    rock = collection / "rock"
    listing = tmp_path / "files.csv"
    listing.write_text(f"track_id,path\n1,{rock / 'a.mp3'}\n2,{tmp_path / 'missing.flac'}\n3,{collection / 'jazz'}\n")
    out = tmp_path / "feats.npz"
    result = run("--files-from", str(listing), str(rock / "live"), "-o", str(out), "-m", str(model_file),
                 "--workers", "0", "-q")
    assert result.exit_code == 1  # missing.flac and broken.mp3
    assert sorted(Path(p).name for p in read_features(out).paths) == ["a.mp3", "b.flac", "c.wav", "d.ogg"]
    failed = [line.split("\t")[0] for line in (tmp_path / "feats.npz.failures.tsv").read_text().splitlines()[1:]]
    assert sorted(Path(p).name for p in failed) == ["broken.mp3", "missing.flac"]

    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    for listing, message in ((tmp_path / "empty.txt", "No input"), (tmp_path / "absent.txt", "Cannot read the list")):
        result = run("--files-from", str(listing), "-o", str(tmp_path / "x.npy"), "-m", str(model_file), "-q")
        assert result.exit_code == 2 and message in " ".join(result.output.split())


@pytest.mark.parametrize("name", ["feats.parquet", "dataset"])
def test_parquet_without_pyarrow_fails_before_any_work(collection, model_file, tmp_path, monkeypatch, name):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    result = run(str(collection / "rock"), "-o", str(tmp_path / name), "-m", str(model_file), "-q", "--workers", "0")
    assert result.exit_code == 2 and "pip install 'mtlmusic[parquet]'" in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []


def test_the_moved_eval_command_says_where_it_went():
    result = runner.invoke(app, ["eval", "mfcc", "--dataset", "gtzan", "--root", "GTZAN"])
    assert result.exit_code == 2
    assert "mtlmusic-train eval mfcc --dataset gtzan --root GTZAN" in result.output
    assert "mtlmusic[training]" in result.output


def test_every_command_prints_its_help():
    import click
    import typer.main

    from mtlmusic_training.cli import app as train_app

    def commands(group: click.Command, path: list[str]):
        yield path
        for name, command in getattr(group, "commands", {}).items():
            yield from commands(command, [*path, name])

    for application in (app, train_app):
        for path in commands(typer.main.get_command(application), []):
            result = runner.invoke(application, [*path, "--help"])
            assert result.exit_code == 0, (path, result.output)
