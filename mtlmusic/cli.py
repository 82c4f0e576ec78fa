"""Command line: ``mtlmusic-extract`` for collections, and ``mtlmusic`` with its subcommands.

Exit codes of ``mtlmusic-extract`` (and ``mtlmusic extract``):

* 0: every file was extracted (or already was);
* 1: the run finished but some files failed (listed in ``OUT.failures.tsv`` and on stderr);
* 2: nothing was done: bad arguments, no audio found, unknown model, unwritable output.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import ConfigError, MtlmusicError

app = typer.Typer(help="Deep music representations: extract features, list and inspect models.",
                  no_args_is_help=True, add_completion=False)
extract_app = typer.Typer(add_completion=False)
err_console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines, whatever the terminal width


def extract(
    inputs: Optional[list[Path]] = typer.Argument(None, help="Audio files and/or folders (searched recursively)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Feature file: .npy (+ .npy.json sidecar), .npz, .csv or .parquet; "
                                               "or a folder (no extension): a Parquet dataset for huge collections."),
    per_file: Optional[Path] = typer.Option(None, "--per-file", help="Also write one .npy per input, mirroring the tree."),
    model_name: str = typer.Option("default", "--model", "-m",
                                   help="Model name, .safetensors file, or hf-hub:ORG/REPO, hf-hub:ORG/REPO@REVISION or hf-hub:ORG/REPO/FILE."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)."),
    batch_size: int = typer.Option(64, help="Slices per forward pass."),
    workers: Optional[int] = typer.Option(None, min=0, show_default=False,
                                          help="Decoding processes running beside the network (0: none; "
                                               "default: one per core but one, fewer for a few files)."),
    glob: Optional[str] = typer.Option(None, "--glob", help="Only files in folders whose relative path matches, e.g. '*.mp3'."),
    slices: bool = typer.Option(False, "--slices", help="One row per 2.5 s slice, with its start time."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo everything and replace existing outputs."),
    checkpoint_every: int = typer.Option(64, help="Files between checkpoints of an interrupted-safe run."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    files_from: Optional[Path] = typer.Option(None, "--files-from",
                                              help="Also extract the files listed here: one path per line, "
                                                   "or a .csv with a 'path' column."),
    engine: str = typer.Option("local", help="local (this machine) or ray (a Ray cluster; pip install 'mtlmusic[ray]')."),
    address: Optional[str] = typer.Option(None, help="With --engine ray: the cluster, e.g. 'auto' or "
                                                     "'ray://head:10001' (default: RAY_ADDRESS, else a local cluster)."),
    files_per_task: int = typer.Option(32, min=1, help="With --engine ray: files per Ray task."),
    cpus_per_task: float = typer.Option(1.0, min=0.01, help="With --engine ray: CPUs each task asks for."),
    gpus_per_task: Optional[float] = typer.Option(None, min=0.0, help="With --engine ray and --device cuda: GPUs each task "
                                                             "asks for, e.g. 0.25 for four tasks per GPU (default 1)."),
) -> None:
    """Extract features of audio files and folders into one feature file and/or one file per input.

    Re-running the same command skips what is done and resumes an interrupted run.
    Failed files are reported on stderr and in OUT.failures.tsv; the exit code is 1 when any failed.
    """
    from functools import partial

    from .extraction import extract_files, read_path_list, run_job
    from .extraction.engine import engine_setup, keep_freed_memory
    from .model import load_model

    import torch

    keep_freed_memory()  # this process is ours: let malloc keep freed blocks (workers do it themselves)
    if workers is not None:
        # One intra-op thread per core left to the network: oversubscribed cores make torch far slower.
        # Without --workers, the engine chooses both from the cores and the number of files (engine_setup).
        torch.set_num_threads(engine_setup(workers).threads)
    try:
        inputs = list(inputs or [])
        if files_from is not None:
            inputs += read_path_list(files_from)
        if not inputs:
            raise ConfigError("No input: give audio files or folders, or --files-from LIST.")
        if engine == "ray":
            from .extraction.distributed import ray_extract_files, require_ray

            require_ray()
            extract_engine = partial(ray_extract_files, address=address, files_per_task=files_per_task,
                                     device=device, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task)
            device = "cpu"  # this process only sends the model; the workers run it
        elif engine == "local":
            extract_engine = extract_files
        else:
            raise ConfigError(f"Unknown engine {engine!r}: choose local or ray.")
        model = load_model(model_name, device=device)
        model.batch_size = batch_size
        with Progress(TextColumn("[bold]extracting"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                      console=err_console, disable=quiet, transient=False) as progress:
            task = progress.add_task("extract", total=None, rate="")
            started = time.perf_counter()
            totals = {"files": 0, "seconds": 0.0}

            def on_result(result) -> None:
                totals["files"] += 1
                totals["seconds"] += result.seconds
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress.update(task, advance=1, rate=f"{totals['files'] / elapsed:.1f} files/s, "
                                                      f"{totals['seconds'] / elapsed:.0f} audio-s/s")
                if not result.ok:
                    progress.console.print(f"[red]failed:[/red] {escape(result.error)}", highlight=False)

            summary = run_job(model, inputs, output=output, per_file=per_file, pattern=glob, workers=workers,
                              slices=slices, overwrite=overwrite, checkpoint_every=checkpoint_every,
                              on_result=on_result, extract=extract_engine,
                              on_start=lambda n: progress.update(task, total=n))
    except MtlmusicError as err:
        err_console.print(f"error: {err}", highlight=False, markup=False)
        raise typer.Exit(2)
    rate = summary.audio_seconds / summary.wall_seconds if summary.wall_seconds else 0.0
    err_console.print(f"{summary.extracted} extracted, {summary.skipped} already done, "
                      f"{len(summary.failures)} failed of {summary.total} files "
                      f"({rate:.0f}x real time).", highlight=False)
    if summary.failures:
        err_console.print(f"failures listed in {summary.failures_file}", highlight=False)
        raise typer.Exit(1)


extract_app.command(help=extract.__doc__)(extract)
app.command("extract")(extract)


@app.command("models")
def models(pattern: Optional[str] = typer.Argument(
        None, help="Glob over names, e.g. 'mscr2-*'; or a hub repository, hf-hub:ORG/REPO (also @REVISION, /GLOB).")
           ) -> None:
    """List the known models, or the model files of a hub repository: architecture, sources, feature dimension,
    and where each loads from.

    Status: embedded (in the package), cached (downloaded, usable offline), remote
    (downloaded on first use) or not installed.
    """
    from .architectures import parse_model_name
    from .errors import ModelNotFoundError
    from .hub import is_hub_name, list_models, model_status, parse_hub_name, resolve_model
    from .modelfile import read_config

    table = Table("name", "architecture", "sources", "dim", "status")
    try:
        names = list_models(pattern)
    except MtlmusicError as err:
        err_console.print(f"error: {err}", highlight=False, markup=False)
        raise typer.Exit(2)
    for name in names:
        try:
            status = model_status(name)
        except ModelNotFoundError:
            status = "not installed"
        try:
            arch, sources = parse_model_name(Path(parse_hub_name(name).file).stem if is_hub_name(name) else name)
        except ConfigError:  # an alias such as "default", a file named otherwise: its config says what it is
            if status not in ("embedded", "cached"):
                table.add_row(name, "", "", "", status)
                continue
            config = read_config(resolve_model(name))
            arch, sources = config["architecture"], config["sources"]
        blocks = 1 if arch in ("SS-R", "MS-SR@FC") else len(sources)
        table.add_row(name, arch, ",".join(sources), str(2 * 256 * blocks), status)
    Console().print(table)


hub_app = typer.Typer(help="Publish models to a Hugging Face hub repository.", no_args_is_help=True)
app.add_typer(hub_app, name="hub")


@hub_app.command("push")
def hub_push(files: list[Path] = typer.Argument(..., help="Model files (.safetensors) to publish."),
             repo: str = typer.Option(..., "--repo", help="Hub repository id, e.g. org/mtlmusic-models."),
             registry: Path = typer.Option(Path("registry.json"), help="Registry JSON to create or update."),
             token: Optional[str] = typer.Option(None, envvar="HF_TOKEN", help="Hub token (default: HF_TOKEN)."),
             revision: str = typer.Option("main", help="Branch to commit to."),
             overwrite: bool = typer.Option(False, "--overwrite",
                                            help="Replace files of the repository that differ from those pushed.")
             ) -> None:
    """Upload model files with a model card, and record them (file, sha256, pinned revision) in a registry.

    The repository then loads without the registry too: mtlmusic-extract ... -m hf-hub:ORG/NAME (or hf-hub:ORG/NAME/FILE).
    Files already there with other contents are replaced only with --overwrite.
    """
    from .publish import push_models

    try:
        entries = push_models(files, repo, token=token, registry_path=registry, revision=revision,
                              overwrite=overwrite)
    except MtlmusicError as err:
        err_console.print(f"error: {err}", highlight=False, markup=False)
        raise typer.Exit(2)
    for name, entry in entries.items():
        typer.echo(f"{name}: {entry.file} sha256 {entry.sha256[:12]}")
    typer.echo(f"registry written to {registry}; ship it as mtlmusic/registry.json or set MTLMUSIC_REGISTRY.")
    typer.echo(f"load them from any installation as hf-hub:{repo}/FILE, e.g. hf-hub:{repo}/{min(entries)}.safetensors")


@app.command("import-checkpoint")
def import_checkpoint_command(
    checkpoint: Path = typer.Argument(..., help="The study's PyTorch checkpoint (torch.save dict, "
                                                "plain or gzip-compressed like .pth.gz)."),
    scaler: Path = typer.Option(..., "--scaler", help=".npz with the scaler's 'mean' and 'sd'."),
    output: Path = typer.Option(..., "-o", "--output", help="Model file to write (.safetensors)."),
    trust_pickle: bool = typer.Option(False, help="Allow full unpickling (only for checkpoints you trust)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
    compat: Optional[str] = typer.Option(None, "--compat", metavar="authors",
                                         help="'authors': compute the features of the authors' extractor "
                                              "(blocks in the checkpoint's task order, padding with 0 dB), "
                                              "recorded in the model file."),
) -> None:
    """Convert a released checkpoint of the study into an mtlmusic model file."""
    from .checkpoint import import_checkpoint

    try:
        path = import_checkpoint(checkpoint, scaler, output, overwrite=overwrite, allow_pickle=trust_pickle,
                                 compat=compat)
    except MtlmusicError as err:
        err_console.print(f"error: {err}", highlight=False, markup=False)
        raise typer.Exit(2)
    typer.echo(f"wrote {path}")


@app.command("info")
def info(model: str = typer.Argument(..., help="Model name, .safetensors file, or hf-hub:ORG/REPO, hf-hub:ORG/REPO@REVISION or hf-hub:ORG/REPO/FILE.")
         ) -> None:
    """Print a model's config (architecture, sources, dimension, card) as JSON."""
    from .hub import resolve_model
    from .modelfile import read_config

    try:
        config = read_config(resolve_model(model))
    except MtlmusicError as err:
        err_console.print(f"error: {err}", highlight=False, markup=False)
        raise typer.Exit(2)
    config["dim"] = len(config.pop("feature_names"))
    sys.stdout.write(json.dumps(config, indent=2) + "\n")


@app.command("eval", hidden=True, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def evaluate_moved(ctx: typer.Context) -> None:
    """Moved: the study's evaluation is ``mtlmusic-train eval`` (same arguments)."""
    err_console.print("error: `mtlmusic eval` is now `mtlmusic-train eval`, with the same arguments "
                      f"(`mtlmusic-train eval {' '.join(ctx.args)}`); it comes with the study's tools: "
                      "pip install 'mtlmusic[training]'.", highlight=False, markup=False)
    raise typer.Exit(2)


if __name__ == "__main__":
    app()
