"""What each entry point loads, checked in a fresh interpreter so earlier imports cannot hide it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
{code}
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('compllm_graph', 'torch'))))
"""


def loaded_after(code: str) -> set[str]:
    """The compllm_graph and torch modules in `sys.modules` after running `code`."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def needs(module: str, extra: str) -> pytest.MarkDecorator:
    """Skip where `module` (one of `extra`'s packages) is not installed: the core-only venv."""
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(missing, reason=f"needs the [{extra}] extra")


INFERENCE = [
    "import compllm_graph; from compllm_graph import create_compllm_graph",
    pytest.param(
        "from compllm_graph.defaults import build_default_graph, default_decomposer",
        marks=needs("faiss", "router"),
    ),
    "from compllm_graph.cli import build_parser; build_parser('ask').parse_args(['ask', 'q'])",
    pytest.param("import compllm_graph.studio", marks=needs("faiss", "router")),
]


@pytest.mark.parametrize("code", INFERENCE)
def test_the_inference_path_imports_no_training_code(code: str) -> None:
    modules = loaded_after(code)
    assert "compllm_graph" in modules
    assert not {m for m in modules if m.startswith("compllm_graph.training")}


@pytest.mark.parametrize(
    "code",
    [
        "import compllm_graph",
        "import compllm_graph.cli",
        "from compllm_graph.cli import build_parser; build_parser('')",
        pytest.param(
            "from compllm_graph.models import remote_chat_model",
            marks=needs("langchain_openai", "remote"),
        ),
        "from compllm_graph.models import InferenceModel",
    ],
)
def test_light_entry_points_do_not_import_torch(code: str) -> None:
    assert "torch" not in loaded_after(code)
