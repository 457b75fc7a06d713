"""The package's layering, read from the source with `ast`: no upward imports and no import loops.

Every import counts, those inside functions included (they still couple the modules); only
`if TYPE_CHECKING:` imports are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[3] / "compllm_graph"

# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS: list[tuple[str, ...]] = [
    (
        "errors",
        "_extras",
        "_help",
        "_progress",
        "_sync",
        "_concurrency",
        "_calls",
        "data_dir",
        "sandbox",
        "_sandbox_child",
        "checkpoints",
    ),
    ("query_graph", "types"),
    ("adapter_folder",),
    ("state",),
    ("models", "decomposer", "packs", "program_expert"),
    ("expert_store",),
    ("datasets",),
    ("scheduling",),
    ("nodes",),
    ("graph",),
    ("defaults",),
    ("training", "evaluation"),
    ("serve", "serve_graph", "studio", "cli"),
]

# Packages of one layer that may not import each other, in either direction: each stands on the
# layers below, and what they share lives there (training and evaluation read their data from
# `datasets`, run and score the decomposer with `decomposer`).
INDEPENDENT: list[tuple[str, ...]] = [("training", "evaluation")]


def top_of(module: str) -> str:
    """The top-level package or module of `compllm_graph` that `module` belongs to."""
    parts = module.split(".")[1:]
    return parts[0] if parts else ""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _walk(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    yield node
    yield from _runtime_nodes(node)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules `path` imports at run time (submodule imports resolved)."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        found.update(n for n in names if n in known)
    return found


def graph() -> dict[str, set[str]]:
    """Each module's imports of other package modules (a copy: the tests may change theirs)."""
    return {name: set(targets) for name, targets in _parsed_graph().items()}


@cache
def _parsed_graph() -> dict[str, frozenset[str]]:
    # Parsed once a session: the source does not change while the tests run.
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: frozenset(imports_of(path, set(files)) - {name}) for name, path in files.items()}


def layer_of(module: str) -> int:
    top = top_of(module)
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")


def test_every_module_has_a_layer() -> None:
    for module in graph():
        if module != "compllm_graph":
            layer_of(module)


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph().items()
        if module != "compllm_graph"
        for target in targets
        if target != "compllm_graph" and layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def crossings(edges: dict[str, set[str]]) -> list[str]:
    """Imports from one `INDEPENDENT` package into another of its group."""
    return [
        f"{module} imports {target}"
        for module, targets in sorted(edges.items())
        for target in sorted(targets)
        for group in INDEPENDENT
        if top_of(module) in group and top_of(target) in group and top_of(module) != top_of(target)
    ]


def test_independent_packages_do_not_import_each_other() -> None:
    found = crossings(graph())
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("compllm_graph.training.composed", "compllm_graph.evaluation.benchmarks"),
        ("compllm_graph.evaluation.decomposition", "compllm_graph.training.sft"),
    ],
)
def test_a_crossing_either_way_is_caught(module: str, target: str) -> None:
    edges = graph()
    assert module in edges and target in edges, "the example modules were renamed"
    assert crossings({**edges, module: {*edges[module], target}}) == [f"{module} imports {target}"]


def test_no_import_loops() -> None:
    edges = graph()
    # A package's __init__ re-exporting its submodules is not a loop with them.
    edges = {
        m: {t for t in ts if not (m.startswith(t + ".") and edges.get(t, set()) & {m})}
        for m, ts in edges.items()
    }
    loops = [" -> ".join(cycle) for cycle in _cycles(edges)]
    assert not loops, "\n".join(loops)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


@pytest.mark.parametrize("module", ["compllm_graph.models.local", "compllm_graph.nodes.execute"])
def test_the_checker_sees_imports(module: str) -> None:
    assert graph()[module], f"no imports found for {module}: the checker is broken"
