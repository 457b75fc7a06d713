"""Every promise on docs/guarantees.md names tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guarantees.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def test_every_test_the_guarantees_page_names_exists():
    references = REFERENCE.findall(PAGE.read_text(encoding="utf-8"))
    assert len(references) > 40
    missing = [
        f"{file}::{name}"
        for file, name in references
        if not (ROOT / file).exists() or name not in _test_names(ROOT / file)
    ]
    assert not missing, f"docs/guarantees.md names tests that do not exist: {missing}"


def test_every_promise_names_a_test():
    promises = re.split(r"\n(?=- )", PAGE.read_text(encoding="utf-8"))
    bare = [p.splitlines()[0] for p in promises if p.startswith("- ") and "tests/" not in p]
    assert not bare, f"promises without a test: {bare}"
