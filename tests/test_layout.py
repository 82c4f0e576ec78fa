"""The library's shape: imports flow one way, the core needs only what it declares, the study stays outside."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import mtlmusic

ROOT = Path(mtlmusic.__file__).parent
#: Import names of the optional packages the library uses inside functions only, with the extra that brings them.
OPTIONAL = {"ray": "ray", "pyarrow": "parquet"}
#: Distribution names of the core dependencies, as imported.
IMPORT_NAMES = {"scikit-learn": "sklearn", "huggingface_hub": "huggingface_hub"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(absolute module imported, at module level?)`` for every import in a module of the package."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING") for inner in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: no import at run time
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if node.module is None:  # from . import x: x may be a submodule
                found += [(f"{target}.{alias.name}", id(node) in top_level) for alias in node.names]
            else:
                found.append((target, id(node) in top_level))
    return found


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _internal_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        targets = set()
        for target, _ in _imports(path):
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def test_no_module_imports_the_package_root():
    offenders = [name for name, targets in _internal_graph().items() if name != "mtlmusic" and "mtlmusic" in targets]
    assert offenders == []


def test_imports_have_no_cycle():
    graph = _internal_graph()
    graph = {name: {t for t in targets if t != "mtlmusic"} for name, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_the_core_imports_only_what_it_declares():
    pyproject = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())
    declared = set()
    for requirement in pyproject["project"]["dependencies"]:
        dist = requirement.split(">")[0].split("=")[0].split("[")[0].strip()
        declared.add(IMPORT_NAMES.get(dist, dist))
    extras = pyproject["project"]["optional-dependencies"]
    stdlib = sys.stdlib_module_names
    problems = []
    for name, path in MODULES.items():
        for target, top_level in _imports(path):
            first = target.split(".")[0]
            if first in stdlib or first == "mtlmusic" or first in declared:
                continue
            if first in OPTIONAL and not top_level and any(first in r for r in extras[OPTIONAL[first]]):
                continue
            problems.append(f"{name} imports {target}")
    assert problems == []


def test_loading_and_extracting_pull_in_no_study_package():
    code = ("import sys, numpy as np, mtlmusic; "
            "m = mtlmusic.load_model('default', device='cpu'); m.extract(np.zeros(22050, 'float32'), sr=22050); "
            "print(sorted(n for n in ('librosa', 'numba', 'scipy', 'pandas', 'mtlmusic_training', 'sklearn') "
            "if n in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
