"""The six architectures of the study, built from ``(architecture, sources)``, and their names.

=========  ==========================  ===============================  ==============
name       shared between tasks        per task                         representation
=========  ==========================  ===============================  ==============
SS-R       (one task)                  whole network                    d
MSS-CR     nothing (separate SS-R)     whole network                    d x m
MS-CR@2    block 1                     blocks 2 .. fc-feature           d x m
MS-CR@4    blocks 1-3                  blocks 4 .. fc-feature           d x m
MS-CR@6    blocks 1-5                  blocks 6a, 6b, gap, fc-feature   d x m
MS-SR@FC   everything to fc-feature    fc-output only                   d
=========  ==========================  ===============================  ==============

Model names say what a model is: an architecture code and the sources in canonical
order, joined by ``-`` (for example ``mscr2-self-bpm-tag``).

Examples
--------
>>> from mtlmusic.architectures import build_network, model_name, parse_model_name
>>> net = build_network("MS-CR@4", ["self", "bpm", "tag"])
>>> net.representation_blocks
('self', 'bpm', 'tag')
>>> model_name("MS-CR@4", ["tag", "self", "bpm"])
'mscr4-self-bpm-tag'
>>> parse_model_name("ssr-year")
('SS-R', ('year',))
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .errors import ConfigError
from .nets import FEATURE_DIM, STAGE_NAMES, SelfHead, feature_stages, task_head

#: The study's eight learning sources, in canonical order. Other source ids may be used too.
SOURCES = ("self", "bpm", "year", "tag", "taste", "cdr_tag", "lyrics", "artist")
#: Default size of a source's target distribution (the study's pLSA / GMM k).
DEFAULT_HEAD_SIZE = 50

#: Architecture -> (code used in model names, number of feature stages shared between tasks).
ARCHITECTURES = {
    "SS-R": ("ssr", len(STAGE_NAMES)),
    "MSS-CR": ("msscr", 0),
    "MS-CR@2": ("mscr2", 1),
    "MS-CR@4": ("mscr4", 3),
    "MS-CR@6": ("mscr6", 5),
    "MS-SR@FC": ("mssrfc", len(STAGE_NAMES)),
}
_BY_CODE = {code: arch for arch, (code, _) in ARCHITECTURES.items()}
_SOURCE_ID = re.compile(r"^[a-z][a-z0-9_]*$")


def canonical_architecture(architecture: str) -> str:
    """Return the canonical spelling of an architecture given as a name or code.

    >>> canonical_architecture("mscr6"), canonical_architecture("ms-sr@fc")
    ('MS-CR@6', 'MS-SR@FC')
    """
    key = str(architecture).strip()
    for arch, (code, _) in ARCHITECTURES.items():
        if key.upper() == arch or key.lower() == code:
            return arch
    raise ConfigError(f"Unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}.")


def canonical_sources(sources: Iterable[str]) -> tuple[str, ...]:
    """Validate source ids and put them in canonical order (study sources first, then others sorted).

    >>> canonical_sources(["tag", "chroma", "self"])
    ('self', 'tag', 'chroma')
    """
    sources = list(sources)
    for source in sources:
        if not isinstance(source, str) or not _SOURCE_ID.match(source):
            raise ConfigError(f"Invalid source id {source!r}: use lower-case letters, digits and '_'.")
    if len(set(sources)) != len(sources):
        raise ConfigError(f"Duplicate sources in {sources}.")
    if not sources:
        raise ConfigError("At least one learning source is needed.")
    known = [s for s in SOURCES if s in sources]
    return tuple(known + sorted(s for s in sources if s not in SOURCES))


def model_name(architecture: str, sources: Iterable[str]) -> str:
    """Name of the model of ``architecture`` trained on ``sources``, e.g. ``'mscr2-self-bpm-tag'``."""
    arch = canonical_architecture(architecture)
    sources = canonical_sources(sources)
    _check_source_count(arch, sources)
    return "-".join((ARCHITECTURES[arch][0], *sources))


def parse_model_name(name: str) -> tuple[str, tuple[str, ...]]:
    """Inverse of :func:`model_name`: ``'mscr2-self-bpm'`` -> ``('MS-CR@2', ('self', 'bpm'))``."""
    code, *sources = name.strip().lower().split("-")
    if code not in _BY_CODE or not sources:
        raise ConfigError(f"{name!r} is not a model name of the form ARCH-SOURCE[-SOURCE...] "
                          f"with ARCH one of {', '.join(_BY_CODE)}.")
    arch = _BY_CODE[code]
    if tuple(sources) != canonical_sources(sources):
        raise ConfigError(f"{name!r}: sources must be listed in canonical order, "
                          f"as in {model_name(arch, sources)!r}.")
    _check_source_count(arch, sources)
    return arch, tuple(sources)


def _check_source_count(arch: str, sources: tuple[str, ...]) -> None:
    if arch == "SS-R" and len(sources) != 1:
        raise ConfigError(f"SS-R learns from exactly one source, got {list(sources)}.")


class MultiTaskNetwork(nn.Module):
    """Feature network(s) with per-task heads, shared up to a branch point.

    The module keeps ``shared`` (stages common to all tasks), ``branches[source]``
    (the rest of the feature network, per task; empty for MS-SR@FC and SS-R) and
    ``heads[source]``. :meth:`features` gives the representation, :meth:`forward`
    a task's logits.

    Parameters
    ----------
    architecture : str
        One of :data:`ARCHITECTURES` (names or codes).
    sources : list of str
        Learning sources; ``'self'`` gets the siamese head, every other source a
        softmax head of ``head_sizes.get(source, 50)`` outputs.
    head_sizes : mapping, optional
        Output size per source.
    block_order : list of str, optional
        The representation's blocks in the order wanted: a permutation of the
        default :attr:`representation_blocks` (the sources in canonical order, or
        ``('shared',)``). Imported checkpoints keep their own task order with it
        (see :mod:`mtlmusic.checkpoint`); model files record it.

    Examples
    --------
    >>> import torch
    >>> net = build_network("MS-CR@2", ["self", "bpm"]).eval()
    >>> net.features(torch.zeros(4, 2, 216, 128)).shape
    torch.Size([4, 512])
    >>> net(torch.zeros(4, 2, 216, 128), "bpm").shape
    torch.Size([4, 50])
    >>> build_network("MS-CR@2", ["self", "bpm"], block_order=["bpm", "self"]).representation_blocks
    ('bpm', 'self')
    """

    def __init__(self, architecture: str, sources: Iterable[str],
                 head_sizes: Mapping[str, int] | None = None, block_order: Iterable[str] | None = None):
        super().__init__()
        self.architecture = canonical_architecture(architecture)
        self.sources = canonical_sources(sources)
        _check_source_count(self.architecture, self.sources)
        head_sizes = dict(head_sizes or {})
        unknown = set(head_sizes) - set(self.sources) - {"self"}
        if unknown:
            raise ConfigError(f"head_sizes names sources the network does not have: {sorted(unknown)}.")
        self.head_sizes = {s: (2 if s == "self" else int(head_sizes.get(s, DEFAULT_HEAD_SIZE)))
                           for s in self.sources}
        self.n_shared = ARCHITECTURES[self.architecture][1]
        self.shared = nn.Sequential(*feature_stages()[:self.n_shared])
        self.branches = nn.ModuleDict({s: nn.Sequential(*feature_stages()[self.n_shared:])
                                       for s in self.sources} if self.n_shared < len(STAGE_NAMES) else {})
        self.heads = nn.ModuleDict({s: SelfHead(FEATURE_DIM) if s == "self" else task_head(FEATURE_DIM, n)
                                    for s, n in self.head_sizes.items()})
        blocks = self.sources if self.branches or self.architecture == "SS-R" else ("shared",)
        if block_order is not None:
            order = (tuple(block_order) if isinstance(block_order, Iterable) and not isinstance(block_order, str)
                     else (block_order,))
            if not all(isinstance(b, str) for b in order) or sorted(order) != sorted(blocks):
                raise ConfigError(f"block_order {block_order!r} is not an order of the representation "
                                  f"blocks {list(blocks)}.")
            blocks = order
        self._blocks = blocks

    @property
    def representation_blocks(self) -> tuple[str, ...]:
        """Names of the d-sized blocks of the representation, in order."""
        return self._blocks

    @property
    def representation_dim(self) -> int:
        """Length of the representation of one slice (d or d x m)."""
        return FEATURE_DIM * len(self.representation_blocks)

    def task_features(self, x: torch.Tensor, source: str) -> torch.Tensor:
        """fc-feature activations of the path that serves ``source``: ``(n, 2, 216, 128) -> (n, 256)``."""
        x = self.shared(x)
        return self.branches[source](x) if self.branches else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The representation of each slice: ``(n, 2, 216, 128) -> (n, representation_dim)``."""
        x = self.shared(x)
        if not self.branches:
            return x
        return torch.cat([self.branches[s](x) for s in self._blocks], dim=1)

    def forward(self, x: torch.Tensor, source: str, x_right: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of task ``source``; the self task takes a pair ``(x, x_right)``."""
        if source not in self.heads:
            raise ConfigError(f"This network has no source {source!r}; it has {list(self.sources)}.")
        if source == "self":
            if x_right is None:
                raise ConfigError("The self task needs a pair of inputs (x, x_right).")
            both = self.task_features(torch.cat([x, x_right]), source)
            return self.heads[source](*both.chunk(2))
        return self.heads[source](self.task_features(x, source))


def build_network(architecture: str, sources: Iterable[str], head_sizes: Mapping[str, int] | None = None,
                  block_order: Iterable[str] | None = None) -> MultiTaskNetwork:
    """Build a freshly initialised network; see :class:`MultiTaskNetwork`.

    >>> build_network("SS-R", ["tag"]).representation_dim
    256
    """
    return MultiTaskNetwork(architecture, sources, head_sizes, block_order)


def assemble_msscr(members: Iterable[MultiTaskNetwork]) -> MultiTaskNetwork:
    """The MSS-CR network of independently trained SS-R networks, without new weights.

    Member ``shared.{i}`` weights become the MSS-CR network's ``branches.{source}.{i}``
    and each member's head is kept, so the representation is the members'
    representations side by side, in canonical source order.

    Raises :class:`~mtlmusic.errors.ConfigError` when a member is not SS-R or two
    members have the same source.

    >>> net = assemble_msscr([build_network("SS-R", [s]) for s in ("tag", "self")])
    >>> net.architecture, net.representation_blocks
    ('MSS-CR', ('self', 'tag'))
    """
    members = list(members)
    for network in members:
        if network.architecture != "SS-R":
            raise ConfigError(f"MSS-CR is assembled from SS-R networks; {model_name(network.architecture, network.sources)} "
                              f"is {network.architecture}.")
    head_sizes = {network.sources[0]: network.head_sizes[network.sources[0]] for network in members}
    assembled = build_network("MSS-CR", [network.sources[0] for network in members], head_sizes)
    state = {}
    for network in members:
        for key, value in network.state_dict().items():
            prefix, rest = key.split(".", 1)
            state[f"branches.{network.sources[0]}.{rest}" if prefix == "shared" else key] = value
    assembled.load_state_dict(state, strict=True)
    return assembled.eval()


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``.

    >>> count_parameters(build_network("SS-R", ["bpm"]).shared)
    563632
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
