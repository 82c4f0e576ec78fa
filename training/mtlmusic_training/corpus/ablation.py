"""Ablation of the learning sources: one short training run per variant, scored on the validation tracks.

:func:`ablation_variants` lists the variants of a set of sources: all of them,
each source removed in turn, each teacher's sources alone (with ``self``) and any
of your own (``--variant NAME=SOURCES``, :func:`parse_variants`); with an
augmentation, :func:`run_ablation` adds the variant ``augmented``: all sources,
their crops augmented (:mod:`mtlmusic_training.augment`).
:func:`run_ablation` trains every variant for the same number of steps on a built
open corpus (epochs of the full model's length: a variant of fewer sources gives
each of them more steps) and scores it with
:func:`~mtlmusic_training.corpus.heldout.evaluate_on_open_corpus` on the tasks of
the ``valid`` split, so that sources are chosen without looking at the held-out
``test`` tracks. A step budget, unlike a time budget, does not depend on the
machine or on what else runs on it. Every run is resumable: rerunning the
ablation trains each variant only up to its budget, and reuses finished models
and cached features.

Examples
--------
>>> sorted(ablation_variants(["self", "bpm", "tag", "mtt"]))
['all', 'musicnn-only', 'without-bpm', 'without-mtt', 'without-tag']
>>> ablation_variants(["self", "bpm", "tag"], own={"tag-alone": ["tag"]})["tag-alone"]
('tag',)
>>> rows = run_ablation("corpus", "runs/ablation", ["self", "bpm", "tag"], epochs=7)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mtlmusic.errors import ConfigError


def ablation_variants(sources: Sequence[str], own: Mapping[str, Sequence[str]] | None = None
                      ) -> dict[str, tuple[str, ...]]:
    """The variants of an ablation: ``all``, ``without-<source>`` for every source but ``self``,
    ``<teacher>-only`` (``self`` and that teacher's sources) for every teacher the sources use, and
    the variants of your ``own`` (name -> sources, :func:`parse_variants`) under names of their own.

    Examples
    --------
    >>> ablation_variants(["self", "bpm", "pitch", "notes"])["basic_pitch-only"]
    ('self', 'pitch', 'notes')
    """
    from ..teachers.targets import TEACHER_SOURCES

    sources = tuple(sources)
    if len(set(sources)) != len(sources) or len(sources) < 2:
        raise ConfigError(f"An ablation needs at least two distinct sources, got {list(sources)}.")
    variants = {"all": sources}
    variants |= {f"without-{source}": tuple(s for s in sources if s != source) for source in sources
                 if source != "self"}
    teachers = dict.fromkeys(TEACHER_SOURCES[s][0] for s in sources if s in TEACHER_SOURCES)
    for teacher in teachers:
        alone = tuple(s for s in sources if s == "self" or TEACHER_SOURCES.get(s, ("",))[0] == teacher)
        if alone != sources:
            variants[f"{teacher}-only"] = alone
    for name, variant in (own or {}).items():
        if name in variants or name == "augmented":
            raise ConfigError(f"The ablation has a variant {name!r} already: give yours another name.")
        variants[name] = tuple(variant)
    return variants


def parse_variants(texts: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Variants of your own, each ``NAME=SOURCE,SOURCE,...``, as name -> sources.

    Examples
    --------
    >>> parse_variants(["tempo=self,bpm,tempo_cnn"])
    {'tempo': ('self', 'bpm', 'tempo_cnn')}
    """
    variants: dict[str, tuple[str, ...]] = {}
    for text in texts:
        name, _, listed = text.partition("=")
        name, sources = name.strip(), tuple(s.strip() for s in listed.split(",") if s.strip())
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or not sources:
            raise ConfigError(f"A variant is NAME=SOURCE,SOURCE,... with a name of letters, digits, '-', '_' or "
                              f"'.', got {text!r}.")
        if len(set(sources)) != len(sources) or name in variants:
            raise ConfigError(f"The variant {name!r} is given twice or lists a source twice: {text!r}.")
        variants[name] = sources
    return variants


def run_ablation(corpus_dir: str | os.PathLike, runs_dir: str | os.PathLike, sources: Sequence[str], *,
                 architecture: str = "MS-SR@FC", epochs: int = 10, iterations_per_epoch: int | None = None,
                 lr: float = 3e-4, seed: int = 0,
                 split: str = "valid", variants: Mapping[str, Sequence[str]] | None = None,
                 only: Sequence[str] | None = None, n_repeats: int = 5, n_folds: int | None = None,
                 augment: Mapping[str, float] | None = None,
                 log: Callable[[str], None] = print) -> list[dict]:
    """Train every variant of :func:`ablation_variants` (or ``variants``) for the same number of steps; score them.

    Parameters
    ----------
    corpus_dir : str or path-like
        A built open corpus with its mel cache (``cache/``, ``scaler.npz``) and ``targets/``.
    runs_dir : str or path-like
        One run folder and one model file (``<variant>.safetensors``) per variant.
    sources : sequence of str
    architecture : str
    epochs : int
        Epochs of every variant.
    iterations_per_epoch : int, optional
        Steps of an epoch, the same for every variant (default: the full model's ``L = l x m``,
        :func:`~mtlmusic_training.trainer.epoch_length`): every variant trains
        ``epochs x iterations_per_epoch`` steps.
    lr : float
    seed : int
    split : str
        The split whose tracks score the variants: ``valid`` to choose, ``test`` only to report.
    variants : mapping, optional
        Name -> sources, instead of :func:`ablation_variants`.
    only : sequence of str, optional
        Train and score only the variants of these names (``augmented`` included), e.g.
        ``["all", "without-bpm"]``.
    n_repeats : int
        Repetitions of the cross-validation.
    n_folds : int, optional
        Its folds (default the split's, :data:`~mtlmusic_training.corpus.heldout.DEFAULT_FOLDS`).
    augment : mapping, optional
        :class:`~mtlmusic_training.augment.Augmentation` settings of the extra variant
        ``augmented`` (all sources); the other variants are not augmented.
    log : callable

    Returns
    -------
    list of dict
        :func:`~mtlmusic_training.corpus.heldout.evaluate_on_open_corpus` rows, the variant's
        name as ``representation``, its training ``steps`` and its ``sources``, plus ``rand`` and ``mfcc``.

    Examples
    --------
    >>> rows = run_ablation("corpus", "runs/ablation", ["self", "bpm", "tag"], epochs=1)  # doctest: +SKIP
    """
    from ..trainer import Trainer, TrainConfig, epoch_length, load_training_data
    from .heldout import evaluate_on_open_corpus, held_out_datasets

    corpus, runs = Path(corpus_dir), Path(runs_dir)
    held_out_datasets(corpus, split, required=True)    # before any training
    variants = dict(variants or ablation_variants(sources))
    if augment:
        variants["augmented"] = tuple(sources)
    if only is not None:
        unknown = sorted(set(only) - set(variants))
        if unknown:
            raise ConfigError(f"Unknown ablation variants {unknown}; these sources give: {', '.join(variants)}.")
        variants = {name: variant for name, variant in variants.items() if name in only}
    length = iterations_per_epoch or epoch_length(load_training_data(corpus, list(sources)), list(sources))
    models: dict[str, object] = {}
    for name, variant in variants.items():
        config = TrainConfig(architecture, list(variant), epochs=epochs, iterations_per_epoch=length, lr=lr,
                             seed=seed, augment=dict(augment or {}) if name == "augmented" else {})
        trainer = Trainer(config, load_training_data(corpus, list(variant)), runs / name, log=log)
        if trainer.epoch > epochs:
            raise ConfigError(f"{runs / name} has trained {trainer.epoch} epochs, more than the {epochs} asked; "
                              f"ask for {trainer.epoch} or delete it.")
        trainer.train()
        models[name] = trainer.export(runs / f"{name}.safetensors", overwrite=True)
        steps = sum(record["iterations"] for record in trainer.history)
        seconds = sum(record["seconds"] for record in trainer.history)
        log(f"{name}: {trainer.epoch} epochs, {steps} steps, "
            f"{steps * config.batch_size / max(seconds, 1e-9):.0f} samples/s")
    rows = evaluate_on_open_corpus(corpus, models | {"rand": "rand", "mfcc": "mfcc"}, cache_dir=runs / "features",
                                   n_repeats=n_repeats, n_folds=n_folds, seed=seed, split=split)
    return [row | {"steps": epochs * length, "sources": list(variants[row["representation"]])}
            if row["representation"] in models else row for row in rows]
