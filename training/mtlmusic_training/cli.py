"""``mtlmusic-train``: the study's reproduction, one command per step.

Steps, each resumable::

    mtlmusic-train prepare-fma FMA_ROOT DATA      # or prepare-msd: manifest.csv and targets/<source>.npz
    mtlmusic-train cache MANIFEST DATA            # decode once: the mel cache and the scaler
    mtlmusic-train design -o design.csv           # the 90 networks, with the design's quality
    mtlmusic-train run DATA RUN_DIR --arch MS-CR@2 --sources self,bpm,tag
    mtlmusic-train grid DATA RUNS --runs 1-90     # skips finished runs, resumes interrupted ones
    mtlmusic-train status RUNS
    mtlmusic-train export RUN_DIR DATA -o model.safetensors
    mtlmusic-train eval MODEL --dataset gtzan --root GTZAN   # transfer evaluation: 50 splits, mean and interval
    mtlmusic-train evaluate-grid RUNS -o results.csv --gtzan GTZAN ...   # every representation on every task
    mtlmusic-train analyse results.csv -o analysis/   # the paper's tables and figures (section 5)

``DATA`` is a folder with ``manifest.csv``, ``cache/``, ``scaler.npz`` and
``targets/<source>.npz``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(help="Reproduce the study: mel cache, targets, design, training, export, evaluation.",
                  no_args_is_help=True, add_completion=False)
err_console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines, whatever the terminal width


@app.callback()
def _own_process() -> None:
    """Every command's process is mtlmusic's own: malloc keeps what a batch frees (training on a CPU runs far
    faster; see :func:`mtlmusic.extraction.engine.keep_freed_memory`)."""
    from mtlmusic.extraction.engine import keep_freed_memory

    keep_freed_memory()


@contextlib.contextmanager
def _errors_as_messages(*errors: type[Exception], prefix: str = "error: ") -> Iterator[None]:
    """End the command with one line and exit code 2, not a traceback, on an MtlmusicError or one of ``errors``."""
    from mtlmusic.errors import MtlmusicError

    try:
        yield
    except (MtlmusicError, *errors) as err:
        err_console.print(f"{prefix}{err}", highlight=False, markup=False)
        raise typer.Exit(2)


def _write_prepared(prepared, data: Path, seed: int) -> None:
    """Save a PreparedDataset's manifest and every source's targets into ``data``; print what was kept."""
    from .targets import compute_targets, save_targets, targets_path

    data.mkdir(parents=True, exist_ok=True)
    prepared.manifest.save(data / "manifest.csv")
    for source, raw in prepared.sources.items():
        targets = compute_targets(source, raw, seed=seed, track_ids=prepared.manifest.track_ids)
        save_targets(targets, targets_path(data / "targets", source))
        typer.echo(f"{source}: targets for {int(targets.mask.sum())} of {len(targets.mask)} tracks")
    report = prepared.report
    typer.echo(f"{len(prepared.manifest)} tracks in the manifest; {report['with_every_source']} tracks have data for "
               f"every source ({', '.join(sorted(prepared.sources)) or 'none'})")
    typer.echo(json.dumps(report, indent=2))


CACHE_DTYPE_HELP = ("On a GPU, how the cache's training tracks are kept there: float16, uint8 (half the memory, "
                    "within 0.16 dB) or auto (float16 when it fits).")
GRAPHS_HELP = "On a GPU with the cache on it, replay each task's step as a CUDA graph."
AUGMENT_HELP = ("Augment the training crops, e.g. 'gain_db=6,eq_db=6,pitch_bands=1,stretch=0.05' (level, equalisation "
                "and their bounds in dB, pitch shift in mel bands, time stretch factor; see mtlmusic_training.augment).")


REQUIRE_HELP = "Sources every track must have data for, comma-separated, or 'all'."
REQUIRE_ALL_HELP = ("Keep only the tracks with data for every source given (the paper's selection): every task then "
                    "trains on the same tracks, and l of the epoch length L = l x m is the same in every run.")


@app.command("prepare-fma")
def prepare_fma(root: Path = typer.Argument(..., help="Folder with fma_metadata/ and fma_<size>/."),
                data: Path = typer.Argument(..., help="Data folder to write."),
                size: str = typer.Option("medium", help="small, medium, large or full."),
                require: str = typer.Option("", help=REQUIRE_HELP),
                require_all: bool = typer.Option(False, "--require-all", help=REQUIRE_ALL_HELP),
                seed: int = typer.Option(0)) -> None:
    """Manifest and learning targets (tag, cdr_tag, year, bpm, artist) from the Free Music Archive.

    cdr_tag leaves out the top-level genres, the labels of the FMA genre evaluation.
    """
    from .datasets import load_fma

    with _errors_as_messages():
        _write_prepared(load_fma(root, size=size, require="all" if require_all else require), data, seed)


@app.command("prepare-msd")
def prepare_msd(audio: Path = typer.Argument(..., help="Folder of MSD previews named by track id or 7digital id."),
                data: Path = typer.Argument(..., help="Data folder to write."),
                lastfm_tags: Optional[Path] = typer.Option(None, help="lastfm_tags.db (tag; artist with "
                                                                       "--metadata)"),
                taste_triplets: Optional[Path] = typer.Option(None, help="train_triplets.txt"),
                unique_tracks: Optional[Path] = typer.Option(None, help="unique_tracks.txt (song -> track)"),
                taste_mismatches: Optional[Path] = typer.Option(None, help="sid_mismatches.txt (pairs left out)"),
                musixmatch: list[Path] = typer.Option([], help="mxm_dataset_train.txt and, repeated, "
                                                              "mxm_dataset_test.txt"),
                metadata: list[Path] = typer.Option([], help="track_metadata.db, msd_summary_file.h5 (needs h5py) or "
                                                            "a CSV (track_id, year, tempo, artist_id, "
                                                            "track_7digitalid); repeatable"),
                genres: Optional[Path] = typer.Option(None, help="msd_tagtraum_cd2.cls, or a CSV track_id,genre "
                                                                 "(cdr_tag)"),
                require: str = typer.Option("", help=REQUIRE_HELP),
                require_all: bool = typer.Option(False, "--require-all", help=REQUIRE_ALL_HELP),
                seed: int = typer.Option(0)) -> None:
    """Manifest and learning targets for the study's eight sources from the Million Song Dataset files."""
    from .datasets import load_msd

    with _errors_as_messages():
        prepared = load_msd(audio, lastfm_tags=lastfm_tags, taste_triplets=taste_triplets,
                            unique_tracks=unique_tracks, taste_mismatches=taste_mismatches,
                            musixmatch=musixmatch or None, metadata=metadata or None, genres=genres,
                            require="all" if require_all else require, seed=seed)
        _write_prepared(prepared, data, seed)


@app.command()
def cache(manifest: Path = typer.Argument(..., help="CSV with track_id, path, split."),
          data: Path = typer.Argument(..., help="Data folder to write cache/ and scaler.npz into."),
          workers: int = typer.Option(2, help="Decoding processes."),
          shard_tracks: int = typer.Option(256, help="Tracks per cache shard.")) -> None:
    """Build (or resume) the mel cache of every track, then fit the scaler on the training split."""
    import numpy as np

    from .datasets import Manifest
    from .melcache import build_mel_cache, fit_scaler, save_scaler

    items = Manifest.load(manifest)
    mel = build_mel_cache(items, data / "cache", workers=workers, shard_tracks=shard_tracks)
    train = np.flatnonzero(items.splits_of(mel.track_ids) == "train")
    save_scaler(fit_scaler(mel, train), data / "scaler.npz")
    for track_id, reason in mel.failures.items():
        typer.echo(f"failed: {track_id}: {reason}", err=True)
    typer.echo(f"{len(mel.track_ids)} tracks cached, {len(mel.failures)} failed; "
               f"scaler fitted on {len(train)} training tracks.")


@app.command()
def design(output: Optional[Path] = typer.Option(None, "-o", "--output", help="CSV of the 90 runs."),
           sources: Optional[str] = typer.Option(None, help="Eight names for the design's source factors, "
                                                           "comma-separated, replacing self,bpm,year,tag,taste,"
                                                           "cdr_tag,lyrics,artist in this order."),
           overwrite: bool = typer.Option(False, "--overwrite", help="Replace an output file of other contents.")
           ) -> None:
    """Print the quality of the 78-run optimal design (and write the 90-run table)."""
    from .design import design_quality, write_design_table

    with _errors_as_messages(FileExistsError):
        if output:
            write_design_table(output, sources, overwrite=overwrite)
            typer.echo(f"wrote {output}")
        typer.echo(json.dumps(design_quality(sources=sources), indent=2))


@app.command()
def run(data: Path = typer.Argument(..., help="Prepared data folder."),
        run_dir: Path = typer.Argument(..., help="Folder for checkpoints and history (resumed if present)."),
        arch: str = typer.Option(..., "--arch", help="SS-R, MS-CR@2, MS-CR@4, MS-CR@6 or MS-SR@FC."),
        sources: str = typer.Option(..., help="Comma-separated learning sources."),
        epochs: int = typer.Option(100), batch_size: int = typer.Option(48),
        lr: float = typer.Option(1e-4, help="Adam learning rate."),
        iterations_per_epoch: Optional[int] = typer.Option(None, help="Default: l x m, as the paper."),
        device: str = typer.Option("auto"), seed: int = typer.Option(0),
        max_minutes: Optional[float] = typer.Option(None, help="Stop after the epoch that passes this training time "
                                                               "(rerun to continue)."),
        export: Optional[Path] = typer.Option(None, help="Write the model file here when finished."),
        cache_dtype: str = typer.Option("auto", help=CACHE_DTYPE_HELP),
        graphs: bool = typer.Option(True, "--graphs/--no-graphs", help=GRAPHS_HELP),
        augment: str = typer.Option("", help=AUGMENT_HELP)) -> None:
    """Train one network (Algorithm 1); rerun the same command to resume."""
    from .augment import Augmentation
    from .trainer import Trainer, TrainConfig, load_training_data

    source_list = [s.strip() for s in sources.split(",") if s.strip()]
    with _errors_as_messages():
        config = TrainConfig(arch, source_list, epochs=epochs, batch_size=batch_size, lr=lr, device=device,
                             seed=seed, iterations_per_epoch=iterations_per_epoch, cache_dtype=cache_dtype,
                             graphs=graphs, augment=Augmentation.parse(augment).as_dict())
        trainer = Trainer(config, load_training_data(data, source_list), run_dir, log=typer.echo)
    trainer.train(max_minutes=max_minutes)
    if export and trainer.epoch < config.epochs:
        typer.echo(f"stopped after epoch {trainer.epoch} of {config.epochs} (time budget); rerun to continue")
    elif export:
        trainer.export(export, overwrite=True)
        typer.echo(f"exported {export}")


@app.command()
def grid(data: Path = typer.Argument(...), runs_dir: Path = typer.Argument(...),
         runs: str = typer.Option("", help="Run ids, e.g. '1-10,83' (default: all 90)."),
         epochs: int = typer.Option(100), device: str = typer.Option("auto"), seed: int = typer.Option(0),
         batch_size: int = typer.Option(48), lr: float = typer.Option(1e-4, help="Adam learning rate."),
         iterations_per_epoch: Optional[int] = typer.Option(None, help="Default: l x m, as the paper."),
         parallel: int = typer.Option(1, help="Runs trained at once on this machine's device (local engine)."),
         engine: str = typer.Option("local", help="local, or ray (each run a Ray task; pip install 'mtlmusic[ray]')."),
         address: Optional[str] = typer.Option(None, help="With --engine ray: the cluster ('auto', 'ray://head:10001'; "
                                                          "default: RAY_ADDRESS, else a local cluster)."),
         gpus_per_run: Optional[float] = typer.Option(None, min=0.0, help="With --engine ray: GPUs per run, e.g. 0.25 to "
                                                                 "train four runs per GPU (default: 1 on GPU clusters)."),
         cpus_per_run: float = typer.Option(1.0, min=0.01, help="With --engine ray: CPUs per run."),
         device_memory_share: Optional[float] = typer.Option(
             None, min=0.01, max=1.0, help="Share of the GPU's free memory a run may use (default: 1/parallel, or --gpus-per-run)."),
         together: int = typer.Option(1, min=1, help="Runs trained at once in each process, one step of each in turn "
                                                     "on its own CUDA stream, sharing the cache (local engine)."),
         cache_dtype: str = typer.Option("auto", help=CACHE_DTYPE_HELP),
         graphs: bool = typer.Option(True, "--graphs/--no-graphs", help=GRAPHS_HELP),
         sources: Optional[str] = typer.Option(None, help="Eight names for the design's source factors, "
                                                         "comma-separated, replacing self,bpm,year,tag,taste,cdr_tag,"
                                                         "lyrics,artist in this order (default: those recorded in "
                                                         "RUNS/design.json, else the paper's).")
         ) -> None:
    """Train a range of the study's 90 networks, skipping finished ones and resuming interrupted ones.

    The grid records its sources in RUNS/design.json and refuses other --sources there.
    Exit code 1 when some runs failed (the others still finish; rerun to retry them).
    """
    from mtlmusic.errors import MtlmusicError

    from .grid import GridError, parse_range, run_grid

    config = {"batch_size": batch_size, "lr": lr, "cache_dtype": cache_dtype, "graphs": graphs}
    if iterations_per_epoch:
        config["iterations_per_epoch"] = iterations_per_epoch
    if device_memory_share:
        config["device_memory_share"] = device_memory_share
    try:
        run_grid(data, runs_dir, parse_range(runs, 90), epochs=epochs, device=device, seed=seed, parallel=parallel,
                 engine=engine, address=address, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run,
                 together=together, sources=sources, log=typer.echo, **config)
    except (GridError, MtlmusicError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1 if isinstance(err, GridError) else 2)


@app.command()
def status(runs_dir: Path = typer.Argument(...),
           all_runs: bool = typer.Option(False, "--all", help="Also list pending runs."),
           log: Optional[str] = typer.Option(None, "--log", help="Print this run's log instead (name or id)."),
           tail: int = typer.Option(40, help="With --log: the last lines to print (0: all).")) -> None:
    """List the runs of the grid: done, running, failed, interrupted or pending, with their last log line."""
    import time

    from .design import design_runs, grid_sources
    from .grid import run_status

    with _errors_as_messages():
        runs = design_runs(grid_sources(runs_dir))
    if log is not None:
        run = next((r for r in runs if log in (r.name, str(r.id))), None)
        if run is None:
            typer.echo(f"error: no run {log!r} in the design (see mtlmusic-train design).", err=True)
            raise typer.Exit(2)
        path = runs_dir / run.name / "train.log"
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
        typer.echo("\n".join(lines[-tail:] if tail else lines) if lines else f"{run.name}: no log yet ({path})")
        return
    statuses = run_status(runs_dir, runs)
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status.state] = counts.get(status.state, 0) + 1
        if status.state == "pending" and not all_runs:
            continue
        age = f"{(time.time() - status.updated) / 60:5.1f} min ago" if status.updated else ""
        typer.echo(f"{status.run.id:3d}  {status.state:11s}  {status.run.name:28s}  {status.epochs_done:4d} epochs  "
                   f"{status.host:12s}  {age:14s}  {status.last_line}".rstrip())
    typer.echo(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))


@app.command("export")
def export_run(run_dir: Path = typer.Argument(..., help="A run folder with a checkpoint."),
               data: Path = typer.Argument(..., help="The data folder it was trained on."),
               output: Path = typer.Option(..., "-o", "--output"),
               name: Optional[str] = typer.Option(None, help="The model's name (default: the run's)."),
               card: Optional[Path] = typer.Option(None, help="A model card (Markdown) to embed, e.g. from "
                                                             "`open-corpus-eval --card`."),
               scores: Optional[Path] = typer.Option(None, help="Score rows (JSON, `open-corpus-eval -o`) to embed."),
               overwrite: bool = typer.Option(False)) -> None:
    """Write a run's latest checkpoint as an mtlmusic model file, with its card and scores if given.

    The card and scores of a model file are in its config (`mtlmusic info MODEL`); the embedded default
    is written this way once its held-out scores are known."""
    import torch

    from .trainer import Trainer, TrainConfig, load_training_data

    with _errors_as_messages(OSError, ValueError):
        info = {"card": card.read_text()} if card else {}
        if scores:
            info["scores"] = json.loads(scores.read_text())
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    config = TrainConfig(**state["config"])
    config.device = "cpu"
    trainer = Trainer(config, load_training_data(data, config.sources), run_dir, log=lambda _: None)
    trainer.export(output, info=info, name=name, overwrite=overwrite)
    typer.echo(f"exported {output} (epoch {trainer.epoch})")


@app.command("open-corpus")
def open_corpus(source_root: Optional[Path] = typer.Argument(None, help="Extracted Debian soundtrack packages."),
                corpus: Path = typer.Argument(Path("open-corpus"), help="Corpus folder to build (resumable)."),
                per_style: int = typer.Option(100, help="music21 pieces rendered per style (0: none)."),
                per_track: int = typer.Option(4, help="Most excerpts cut from each track (0: whole tracks)."),
                excerpt_seconds: float = typer.Option(30.0, help="Length of an excerpt in seconds."),
                soundfont: list[Path] = typer.Option([], "--soundfont", help="Soundfont of the music21 renders (one "
                                                     "drawn per piece); default: the General MIDI soundfonts of "
                                                     "Debian that are installed."),
                workers: int = typer.Option(2), seed: int = typer.Option(0)) -> None:
    """Build the open corpus: soundtracks, debian.csv, midi.csv, music21 renders, split, excerpts, descriptors and
    targets."""
    from .corpus import GM_SOUNDFONTS, build_open_corpus

    soundfonts = soundfont or [path for path in GM_SOUNDFONTS if path.is_file()] or GM_SOUNDFONTS[:1]
    report = build_open_corpus(source_root, corpus, per_style=per_style, per_track=per_track,
                               excerpt_seconds=excerpt_seconds, seed=seed, workers=workers, soundfonts=soundfonts)
    typer.echo(json.dumps(report, indent=2, default=str))


@app.command("open-corpus-timbre")
def open_corpus_timbre(corpus: Path = typer.Argument(..., help="A built open corpus."),
                       workers: int = typer.Option(2), seed: int = typer.Option(0)) -> None:
    """Add the timbre source (pLSA of MFCC-word histograms) to a built open corpus."""
    from .corpus import compute_timbre_targets

    targets = compute_timbre_targets(corpus, workers=workers, seed=seed)
    typer.echo(f"timbre: targets for {int(targets.mask.sum())} of {len(targets.mask)} tracks")


@app.command("teachers")
def teachers(corpus: Path = typer.Argument(..., help="A corpus folder with manifest.csv."),
             teacher: list[str] = typer.Option([], "--teacher", help="Teachers to run: musicnn, basic_pitch, "
                                                                      "tempocnn (default: all)."),
             envs: Optional[Path] = typer.Option(None, help="Root of the teachers' environments (default: "
                                                           "$MTLMUSIC_TEACHERS or ~/.cache/mtlmusic/teachers)."),
             max_minutes: Optional[float] = typer.Option(None, help="Time limit of each teacher's labelling; rerun "
                                                                    "to label the rest."),
             seed: int = typer.Option(0, help="Seed of the target fits.")) -> None:
    """Label every track with teacher models (each in its own pinned environment), then fit their sources' targets.

    Creates the environments on first use, labels resumably (rerun after an interruption; excerpts in rounds:
    every track's first excerpt, then the second, ...), writes the musicnn baseline feature files and
    targets/<source>.npz of every teacher source from the tracks labelled so far.
    """
    from .teachers import TEACHERS, ensure_environment
    from .teachers.targets import TEACHER_SOURCES, compute_teacher_targets, label_corpus, write_baseline_features

    teacher = teacher or list(TEACHERS)
    with _errors_as_messages():
        pythons = {name: ensure_environment(name, envs, log=typer.echo) for name in teacher}
        report = label_corpus(corpus, teacher, pythons=pythons, max_minutes=max_minutes,
                              progress=lambda name, done, total: done % 200 == 0
                              and typer.echo(f"{name}: {done}/{total}"))
        typer.echo(json.dumps(report))
        if "musicnn" in teacher:
            for path in write_baseline_features(corpus):
                typer.echo(f"wrote {path}")
        sources = [source for source, (name, _) in TEACHER_SOURCES.items() if name in teacher]
        for source, targets in compute_teacher_targets(corpus, sources, seed=seed).items():
            typer.echo(f"{source}: targets for {int(targets.mask.sum())} of {len(targets.mask)} tracks")


def _read_ablation(path: Path) -> list[dict]:
    """The rows that `open-corpus-ablation -o` wrote, checked to be ablation rows."""
    from mtlmusic.errors import ConfigError

    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"Cannot read the ablation rows {path}: {error}") from None
    keys = {"task", "representation", "metric", "mean", "low", "high"}
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and keys <= set(r) for r in rows):
        raise ConfigError(f"{path} holds no ablation rows (write them with `open-corpus-ablation -o`).")
    return rows


FOLDS_HELP = "Folds of each repetition (default: the study's 10 on the test tracks, 3 on the fewer valid ones)."


@app.command("open-corpus-eval")
def open_corpus_eval(corpus: Path = typer.Argument(..., help="A built open corpus."),
                     models: list[Path] = typer.Argument(..., help="Model files to score."),
                     cache: Optional[Path] = typer.Option(None, help="Feature cache folder."),
                     output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the rows as JSON."),
                     card: Optional[Path] = typer.Option(None, help="Write the first model's card (Markdown) here."),
                     ablation: list[Path] = typer.Option([], help="Rows of `open-corpus-ablation -o` (JSON) to "
                                                                  "show in the card, a table each (repeatable)."),
                     repeats: int = typer.Option(5),
                     folds: Optional[int] = typer.Option(None, min=2, help=FOLDS_HELP),
                     split: str = typer.Option("test", help="Tracks scored: test (the held-out part, to report) or "
                                                            "valid (to choose between models)."),
                     workers: int = typer.Option(0),
                     overwrite: bool = typer.Option(False, "--overwrite", help="Replace output files (-o, --card) "
                                                                              "of other contents.")) -> None:
    """Score models against Rand, MFCC and musicnn on the corpus's held-out tasks (Markdown table, 50 splits).

    musicnn's features are scored where `mtlmusic-train teachers` wrote them. Each held-out track counts once
    (its first excerpt); classes with fewer than 3 held-out tracks are left out."""
    from mtlmusic.files import write_texts

    from .corpus.heldout import baseline_representations, evaluate_on_open_corpus, model_card, score_table

    from mtlmusic.errors import ConfigError

    representations = {path.stem: path for path in models} | baseline_representations(corpus)
    with _errors_as_messages():
        if card and split != "test":
            raise ConfigError(f"a model card reports the held-out (test) scores; --card cannot be written from the "
                              f"{split} tracks.")
        if ablation and not card:
            raise ConfigError("--ablation adds the ablation table to a card: give --card too.")
        ablations = [_read_ablation(path) for path in ablation]
        rows = evaluate_on_open_corpus(corpus, representations, cache_dir=cache, n_repeats=repeats, n_folds=folds,
                                       workers=workers, split=split)
    typer.echo(score_table(rows))
    outputs = {output: json.dumps(rows, indent=2)} if output else {}
    if card:
        from mtlmusic import load_model

        outputs[card] = model_card(load_model(models[0]).config, rows, corpus, ablations=ablations)
    with _errors_as_messages(FileExistsError):
        write_texts(outputs, overwrite=overwrite)


@app.command("open-corpus-ablation")
def open_corpus_ablation(corpus: Path = typer.Argument(..., help="A built open corpus with its mel cache."),
                         runs: Path = typer.Argument(..., help="Folder of the runs and models (resumed)."),
                         sources: str = typer.Option(..., help="Comma-separated learning sources of the full model."),
                         arch: str = typer.Option("MS-SR@FC", "--arch"),
                         epochs: int = typer.Option(10, min=1, help="Epochs of every variant."),
                         iterations_per_epoch: Optional[int] = typer.Option(
                             None, min=1, help="Steps of an epoch, the same for every variant (default: the full "
                                               "model's l x m)."),
                         lr: float = typer.Option(3e-4, help="Adam learning rate."),
                         split: str = typer.Option("valid", help="Tracks that score the variants: valid (to choose) "
                                                                 "or test (to report)."),
                         repeats: int = typer.Option(5),
                         folds: Optional[int] = typer.Option(None, min=2, help=FOLDS_HELP),
                         seed: int = typer.Option(0),
                         augment: str = typer.Option("", help="Also train the full model with these crop "
                                                               "augmentations (variant 'augmented'). " + AUGMENT_HELP),
                         variant: list[str] = typer.Option([], "--variant", help="Also train a variant of your "
                                                           "own, NAME=SOURCE,SOURCE,... (repeatable), e.g. "
                                                           "--variant pitch-tempo=self,pitch,notes,tempo_cnn."),
                         only: list[str] = typer.Option([], "--only", help="Run only this variant (repeatable), "
                                                        "e.g. --only all --only without-bpm --only augmented."),
                         output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the rows as JSON."),
                         overwrite: bool = typer.Option(False, "--overwrite", help="Replace an -o file of other "
                                                                                   "contents.")) -> None:
    """Train the full model, the model without each source and each teacher alone, for the same number of steps;
    score them (Markdown table)."""
    from mtlmusic.files import write_texts

    from .augment import Augmentation
    from .corpus.ablation import ablation_variants, parse_variants, run_ablation
    from .corpus.heldout import score_table

    source_list = [s.strip() for s in sources.split(",") if s.strip()]
    with _errors_as_messages():
        variants = ablation_variants(source_list, own=parse_variants(variant))
        rows = run_ablation(corpus, runs, source_list, architecture=arch, epochs=epochs,
                            iterations_per_epoch=iterations_per_epoch, lr=lr, seed=seed, split=split,
                            variants=variants, only=only or None, n_repeats=repeats, n_folds=folds,
                            augment=Augmentation.parse(augment).as_dict(), log=typer.echo)
    typer.echo(score_table(rows, by_representation=True))
    with _errors_as_messages(FileExistsError):
        write_texts({output: json.dumps(rows, indent=2)} if output else {}, overwrite=overwrite)


@app.command("open-corpus-debian")
def open_corpus_debian(source_root: Path = typer.Argument(..., help="Download folder: debs/ and the extractions x/."),
                       corpus: Path = typer.Argument(..., help="Corpus folder; debian.csv is written there."),
                       fetch: bool = typer.Option(False, "--fetch", help="Download and extract the packages first "
                                                  "(apt-get download, dpkg -x; run apt-get update before)."),
                       kinds: list[str] = typer.Option(["recorded", "tracker"], "--kind",
                                                       help="Kinds of the package list: recorded, tracker.")) -> None:
    """List the music of the Debian game-data packages of the package list (debian.csv), fetching them if asked."""
    from .corpus import build_debian_corpus, fetch_packages, read_package_list

    if fetch:
        report = fetch_packages(read_package_list(kinds=kinds)["package"], source_root)
        failed = {name: status for name, status in report.items() if status.startswith("failed")}
        typer.echo(f"fetched {len(report) - len(failed)} of {len(report)} packages"
                   + (f"; failed (rerun to retry): {json.dumps(failed, indent=2)}" if failed else ""))
    table = build_debian_corpus(source_root / "x", corpus, kinds=kinds)
    minutes = (table.groupby("licence")["duration"].sum() / 60).round(1).sort_values(ascending=False)
    typer.echo(f"{len(table)} tracks, {table['duration'].sum() / 60:.0f} minutes, "
               f"{table['soundtrack'].nunique()} packages; minutes per licence:\n{minutes.to_string()}")


@app.command("open-corpus-midi")
def open_corpus_midi(source_root: Path = typer.Argument(..., help="Download folder: debs/ and the extractions x/."),
                     corpus: Path = typer.Argument(..., help="Corpus folder; midi/ and midi.csv are written there."),
                     fetch: bool = typer.Option(False, "--fetch", help="Download and extract the packages first "
                                                "(apt-get download, dpkg -x; run apt-get update before)."),
                     max_seconds: float = typer.Option(180.0, help="Longest audio rendered per piece."),
                     workers: int = typer.Option(2, help="Rendering processes."),
                     seed: int = typer.Option(0, help="Seed of the soundfont drawn for each piece.")) -> None:
    """Render the MIDI music of the Debian packages of the package list (midi.csv), fetching them if asked."""
    from .corpus import build_midi_corpus, fetch_packages, read_package_list

    if fetch:
        report = fetch_packages(read_package_list(kinds=("midi",))["package"], source_root)
        failed = {name: status for name, status in report.items() if status.startswith("failed")}
        typer.echo(f"fetched {len(report) - len(failed)} of {len(report)} packages"
                   + (f"; failed (rerun to retry): {json.dumps(failed, indent=2)}" if failed else ""))
    table = build_midi_corpus(source_root / "x", corpus, seed=seed, workers=workers, max_seconds=max_seconds)
    minutes = (table.groupby("soundfont")["duration"].sum() / 60).round(1)
    typer.echo(f"{len(table)} pieces, {table['duration'].sum() / 60:.0f} minutes, "
               f"{table['soundtrack'].nunique()} packages; minutes per soundfont:\n{minutes.to_string()}")


EVAL_DATASETS = ("gtzan", "fma", "ballroom", "irmas", "emotion-arousal", "emotion-valence", "jam",
                 "labels-csv", "values-csv")


@app.command("evaluate-grid")
def evaluate_grid_command(
    runs_dir: Path = typer.Argument(..., help="Runs folder of `mtlmusic-train grid` (its models/ is read), or a "
                                              "folder of model files."),
    output: Path = typer.Option(..., "-o", "--output", help="Results table (CSV) to create or extend."),
    gtzan: Optional[Path] = typer.Option(None, help="GTZAN folder."),
    ballroom: Optional[Path] = typer.Option(None, help="Ballroom folder."),
    fma: Optional[Path] = typer.Option(None, help="FMA folder (fma_metadata/, fma_medium/)."),
    irmas: Optional[Path] = typer.Option(None, help="IRMAS folder."),
    emotion: Optional[Path] = typer.Option(None, help="MediaEval 1000 songs folder: arousal and valence."),
    jam: Optional[Path] = typer.Option(None, help="This Is My Jam dump folder (likes.tsv, jams.tsv; "
                                                  "jam_to_msd.tsv when put there)."),
    jam_audio: Optional[Path] = typer.Option(None, help="With --jam: folder of MSD previews named by track id, or a "
                                                        "CSV track_id,path (jam_id,path without a mapping)."),
    jam_to_msd: Optional[Path] = typer.Option(None, help="With --jam: the MSD's jam_to_msd.tsv, if not in the dump "
                                                         "folder."),
    jam_min_likes: Optional[int] = typer.Option(None, help="With --jam: fewest likes per user and per track "
                                                           "(default: 5, the authors' later filter; the paper "
                                                           "states none)."),
    open_corpus: Optional[Path] = typer.Option(None, help="A built open corpus: its held-out tasks (soundtrack, "
                                                          "style, tempo)."),
    open_corpus_split: str = typer.Option("test", help="With --open-corpus: the tracks scored, test (the held-out "
                                                       "part) or valid (to choose without touching it; the tasks "
                                                       "are then named soundtrack-valid...)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Feature cache folder (default: "
                                                              "$MTLMUSIC_HOME/eval or ~/.cache/mtlmusic/eval)."),
    standardize: Optional[bool] = typer.Option(None, "--standardize/--no-standardize",
                                               help="Standardize features before the task's model (default: no for "
                                                    "classification, yes for regression and recommendation)."),
    subsample_fma: Optional[float] = typer.Option(None, help="Stratified fraction of FMA to keep (default: the "
                                                             "paper's 0.05; 1: all)."),
    subsample_irmas: Optional[float] = typer.Option(None, help="Stratified fraction of IRMAS to keep (default: the "
                                                               "paper's 0.2; 1: all)."),
    repeats: int = typer.Option(5, "--repeats", help="Repetitions of the k-fold partition."),
    folds: Optional[int] = typer.Option(None, "--folds", help="Folds per repetition (default: the study's 10; "
                                                             "3 on the open corpus's valid tracks)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the splits and subsamples."),
    drop_failed: bool = typer.Option(False, "--drop-failed", help="Leave out tracks that cannot be read "
                                                                  "instead of failing."),
    jobs: int = typer.Option(1, "--jobs", help="Threads scoring splits."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)."),
    workers: Optional[int] = typer.Option(None, help="Decoding processes beside the network (0: none)."),
) -> None:
    """Score every exported network, the study's MSS-CR representations and the baselines on every dataset given.

    One row per split is appended to the results table as each (representation, dataset) pair finishes; rerun the
    same command to resume. Datasets not given are skipped. The study's sources are those RUNS/design.json records.
    Exit code 1 when some pairs failed (rerun to retry them).
    """
    import dataclasses

    from .corpus.heldout import DEFAULT_FOLDS, held_out_datasets
    from .evaluation import (JAM_MIN_LIKES, load_ballroom, load_fma_medium, load_gtzan, load_irmas,
                             load_mediaeval_emotion, load_thisismyjam, paper_subsample)
    from .evaluation.grid import evaluate_grid
    from .evaluation.run import default_cache_dir

    loaders = {
        "GTZAN": (gtzan, lambda: [load_gtzan(gtzan)]),
        "Ballroom": (ballroom, lambda: [load_ballroom(ballroom)]),
        "FMA": (fma, lambda: [load_fma_medium(fma, subsample=paper_subsample("FMA", subsample_fma), seed=seed)]),
        "IRMAS": (irmas, lambda: [load_irmas(irmas, subsample=paper_subsample("IRMAS", subsample_irmas), seed=seed)]),
        "Emotion": (emotion, lambda: [load_mediaeval_emotion(emotion, target) for target in ("arousal", "valence")]),
        "ThisIsMyJam": (jam, lambda: [load_thisismyjam(jam, jam_audio, jam_to_msd=jam_to_msd, min_likes=min_likes,
                                                       min_track_likes=min_likes)]),
        "Open corpus": (open_corpus, lambda: [
            dataset if open_corpus_split == "test" else dataclasses.replace(dataset, name=f"{task}-{open_corpus_split}")
            for task, dataset in held_out_datasets(open_corpus, open_corpus_split, required=True).items()]),
    }
    min_likes = JAM_MIN_LIKES if jam_min_likes is None else jam_min_likes
    if jam is not None and jam_audio is None:
        err_console.print("error: --jam needs --jam-audio.", highlight=False, markup=False)
        raise typer.Exit(2)
    if open_corpus_split not in ("test", "valid"):
        raise typer.BadParameter("choose test or valid", param_hint="'--open-corpus-split'")
    datasets, dataset_folds = {}, {}
    with _errors_as_messages():
        for name, (root, load) in loaders.items():
            if root is None:
                typer.echo(f"{name}: no folder given, skipped")
                continue
            for dataset in load():
                datasets[dataset.name] = dataset
                dataset_folds[dataset.name] = folds or (DEFAULT_FOLDS[open_corpus_split] if name == "Open corpus"
                                                        else 10)
                typer.echo(f"{dataset.name}: {len(dataset)} tracks")
        if not datasets:
            raise typer.BadParameter("give at least one dataset (--gtzan, --ballroom, --fma, --irmas, --emotion, "
                                     "--jam, --open-corpus)")
        summary = evaluate_grid(runs_dir, datasets, output, cache_dir=cache or default_cache_dir(),
                                standardize=standardize, n_repeats=repeats, n_folds=dataset_folds, seed=seed,
                                on_error="drop" if drop_failed else "raise", n_jobs=jobs, device=device,
                                workers=workers, log=typer.echo)
    typer.echo(f"{summary.scored} scored, {summary.skipped} already in {output}, {len(summary.failed)} failed")
    if summary.failed:
        raise typer.Exit(1)


@app.command("analyse")
def analyse_command(
    results: Path = typer.Argument(..., exists=True, dir_okay=False, help="Results table (CSV) of "
                                                                          "`mtlmusic-train evaluate-grid`."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the tables and figures."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a folder that already holds files, "
                                                              "replacing those of the same names."),
) -> None:
    """The paper's analysis (section 5): its tables as CSV and Markdown, its figures as PNG with their numbers."""
    import math

    import pandas as pd

    from .evaluation.analysis import analyze

    if output.exists() and not output.is_dir():
        raise typer.BadParameter(f"{output} is a file, not a folder", param_hint="'-o' / '--output'")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise typer.BadParameter(f"{output} is not empty; give --overwrite to write into it, or another folder",
                                 param_hint="'-o' / '--output'")
    with _errors_as_messages(pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
                             prefix=f"error: cannot analyse {results}: "):
        report = analyze(results, output)
    figures = sum(path.suffix == ".png" for path in report.files)
    tables = sum(path.suffix == ".md" for path in report.files)
    typer.echo(f"{len(report.results)} scores of {report.results['representation'].nunique()} representations on "
               f"{report.results['dataset'].nunique()} datasets: {tables} tables and {figures} figures "
               f"({len(report.files)} files) in {output}")
    rho = report.spearman.loc["mean", "rho"]
    if not math.isnan(rho):
        typer.echo(f"mean Spearman rho, sources ranked by SS-R score and by variance component: {rho:.3f}")
    for note in report.notes:
        typer.echo(note)


@app.command("eval")
def evaluate_command(
    source: str = typer.Argument(..., help="Model name or .safetensors file, feature file, or baseline (mfcc, rand)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help=f"One of {', '.join(EVAL_DATASETS)}."),
    root: Path = typer.Option(..., "--root", help="Dataset folder; the dump folder or likes file for jam; the CSV "
                                                 "for labels-csv and values-csv."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Feature cache folder (default: "
                                                              "$MTLMUSIC_HOME/eval or ~/.cache/mtlmusic/eval)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result (split scores included) "
                                                                 "as JSON."),
    tracks: Optional[Path] = typer.Option(None, "--tracks", help="jam: the audio: MSD previews folder or CSV "
                                                                 "track_id,path with jam_to_msd.tsv in the dump "
                                                                 "folder, else a CSV jam_id,path."),
    subsample: Optional[float] = typer.Option(None, "--subsample", help="fma, irmas: stratified fraction to keep "
                                                                        "(default: the paper's 0.05 and 0.2; 1: "
                                                                        "all)."),
    standardize: Optional[bool] = typer.Option(None, "--standardize/--no-standardize",
                                               help="Standardize features before the task's model (default: no for "
                                                    "classification, yes for regression and recommendation)."),
    repeats: int = typer.Option(5, "--repeats", help="Repetitions of the k-fold partition."),
    folds: int = typer.Option(10, "--folds", help="Folds per repetition."),
    seed: int = typer.Option(0, "--seed", help="Seed of the splits."),
    drop_failed: bool = typer.Option(False, "--drop-failed", help="Leave out tracks that cannot be read "
                                                                  "instead of stopping."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)."),
    workers: Optional[int] = typer.Option(None, help="Decoding processes beside the network (0: none; default: "
                                                     "chosen from the cores available)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a --json file of other contents."),
) -> None:
    """Score a model, feature file or baseline on a dataset: mean and 95% interval over 50 splits.

    Features are extracted once per (model, dataset) and kept in the cache folder.
    """
    from mtlmusic.files import write_texts

    from .evaluation import (JAM_MIN_LIKES, evaluate, load_ballroom, load_fma_medium, load_gtzan, load_irmas,
                             load_labels_csv, load_mediaeval_emotion, load_thisismyjam, load_values_csv,
                             paper_subsample)
    from .evaluation.run import default_cache_dir

    loaders = {
        "gtzan": lambda: load_gtzan(root),
        "fma": lambda: load_fma_medium(root, subsample=paper_subsample("FMA", subsample), seed=seed),
        "ballroom": lambda: load_ballroom(root),
        "irmas": lambda: load_irmas(root, subsample=paper_subsample("IRMAS", subsample), seed=seed),
        "emotion-arousal": lambda: load_mediaeval_emotion(root, "arousal"),
        "emotion-valence": lambda: load_mediaeval_emotion(root, "valence"),
        "jam": lambda: load_thisismyjam(root, tracks, min_likes=JAM_MIN_LIKES, min_track_likes=JAM_MIN_LIKES),
        "labels-csv": lambda: load_labels_csv(root),
        "values-csv": lambda: load_values_csv(root),
    }
    if dataset not in loaders:
        err_console.print(f"error: unknown dataset {dataset!r}; choose one of {', '.join(EVAL_DATASETS)}.",
                          highlight=False, markup=False)
        raise typer.Exit(2)
    if dataset == "jam" and tracks is None:
        err_console.print("error: --dataset jam needs --tracks, the audio of the tracks.",
                          highlight=False, markup=False)
        raise typer.Exit(2)
    with _errors_as_messages():
        data = loaders[dataset]()
        with Progress(TextColumn("[bold]features"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, disable=quiet, transient=True) as progress:
            task = progress.add_task("features", total=len(data))
            result = evaluate(source, data, cache_dir=cache or default_cache_dir(), on_error="drop" if drop_failed
                              else "raise", n_repeats=repeats, n_folds=folds, seed=seed, standardize=standardize,
                              device=device, workers=workers,
                              progress=lambda done, total: progress.update(task, completed=done))
    low, high = result.interval
    sys.stdout.write(f"{data.name} ({len(data)} tracks), {source}: {result.metric} {result.mean:.4f} "
                     f"(95% interval {low:.4f} to {high:.4f}, {result.n_splits} splits)\n")
    if json_out is not None:
        summary = {"source": source, "dataset": data.name, "n_tracks": len(data), **result.to_dict()}
        with _errors_as_messages(FileExistsError):
            write_texts({json_out: json.dumps(summary, indent=2) + "\n"}, overwrite=overwrite)


if __name__ == "__main__":
    app()
