"""The code in docstrings' ```python blocks compiles and names real API (no model is run)."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import textwrap
from pathlib import Path

import pytest

from compllm_graph import create_compllm_graph

PACKAGE = Path(__file__).resolve().parents[2] / "compllm_graph"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def python_blocks(docstring: str | None) -> list[str]:
    return [textwrap.dedent(b) for b in _BLOCK.findall(inspect.cleandoc(docstring or ""))]


def docstring_blocks() -> list[tuple[str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                for block in python_blocks(ast.get_docstring(node, clean=False)):
                    where = getattr(node, "name", "module")
                    found.append((f"{path.relative_to(PACKAGE)}:{where}", block))
    return found


@pytest.mark.parametrize(("where", "code"), docstring_blocks(), ids=lambda v: str(v)[:60])
def test_docstring_code_compiles(where: str, code: str) -> None:
    compile(code, where, "exec")


def _module_all(module: str) -> set[str]:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, module
    tree = ast.parse(Path(spec.origin).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"{module} has no __all__")


def test_create_compllm_graph_has_an_example_that_uses_real_names() -> None:
    (code,) = python_blocks(create_compllm_graph.__doc__)
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("compllm"):
            exported = _module_all(node.module)
            assert {a.name for a in node.names} <= exported, node.module
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "create_compllm_graph"
    ]
    parameters = set(inspect.signature(create_compllm_graph).parameters)
    assert calls and {k.arg for k in calls[0].keywords} <= parameters
