"""Run in a venv holding only the core install (`make test-core`): the graph works without torch.

`pip install compllm-graph` (no extras) must give a graph that drops into a LangChain app with any
chat models: this builds and runs one on `tests/fakes.py` models, and checks that the optional
stacks are really absent and that asking for them names the extra to install.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compllm_graph import CompLLMError, create_compllm_graph
from compllm_graph._extras import MissingExtraError
from compllm_graph.types import Route
from tests.fakes import FakeChat, decomposer

ABSENT = ("torch", "transformers", "peft", "faiss", "numpy", "langchain_openai", "starlette")


def check_absent() -> None:
    present = [name for name in ABSENT if importlib.util.find_spec(name) is not None]
    assert not present, f"the core install pulled in {present}"


def check_graph() -> None:
    experts = {
        "chemistry": FakeChat(label="chemistry", reply=lambda m: "H2O"),
        "biology": FakeChat(label="biology", reply=lambda m: "mitochondria"),
    }
    graph = create_compllm_graph(
        decomposer=decomposer("<q>Formula of water?</q><q>Powerhouse of the cell?</q><dep></dep>"),
        experts=experts,
        router=lambda texts: [Route("chemistry", 0.9), Route("biology", 0.8)][: len(texts)],
        base=FakeChat(label="base", reply=lambda m: "water is H2O; the cell's is mitochondria"),
    ).compile()
    out = graph.invoke({"query": "What is the formula of water, and the cell's powerhouse?"})
    assert [a["answer"] for a in out["sub_answers"]] == ["H2O", "mitochondria"], out
    assert "H2O" in out["answer"], out


def check_extras_are_named() -> None:
    for module, extra in [
        ("compllm_graph.models.loading", "local"),
        ("compllm_graph.expert_store", "router"),
        ("compllm_graph.models.remote", "remote"),
    ]:
        try:
            importlib.import_module(module)
        except MissingExtraError as exc:
            assert isinstance(exc, CompLLMError) and f"compllm-graph[{extra}]" in str(exc), exc
        else:
            raise AssertionError(f"{module} imported without its [{extra}] extra")


def check_cli() -> None:
    ask = [sys.executable, "-m", "compllm_graph.cli", "ask", "What is water?"]
    done = subprocess.run(ask, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "pip install 'compllm-graph[" in done.stderr, done.stderr
    help_run = [sys.executable, "-m", "compllm_graph.cli", "--help"]
    assert "ask" in subprocess.run(help_run, capture_output=True, text=True, check=True).stdout


if __name__ == "__main__":
    check_absent()
    check_graph()
    check_extras_are_named()
    check_cli()
    print("core install: graph built and run on fake models; extras named on import and by the CLI")
