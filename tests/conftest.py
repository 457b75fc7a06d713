"""Shared fixtures: the real SmolLM2 model, loaded once per test session when it is cached.

Imports only the core at import time (the model runtime loads inside the functions), so that
pytest starts in a venv with only the core install (`make test-core` runs `tests/unit` there).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from compllm_graph.data_dir import DEFAULT_DATA_DIR
from compllm_graph.decomposer import adapter_for
from compllm_graph.models.catalogue import SMALL_MODEL
from compllm_graph.packs import missing_pack_message

if TYPE_CHECKING:
    from compllm_graph.models import TransformersModel


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """`--benchmark-disable` where pytest-benchmark is installed (langchain-tests brings it): the
    standard suites' `test_init_time` runs once, as a test, not as a timed benchmark."""
    if hasattr(config.option, "benchmark_disable"):
        config.option.benchmark_disable = True


def installed(*modules: str) -> bool:
    """Whether every one of `modules` is installed, found without importing it (unlike
    `pytest.importorskip`: torch and transformers take seconds to import)."""
    return all(importlib.util.find_spec(name) is not None for name in modules)


def require_smollm2() -> None:
    """Skip the calling test unless SmolLM2 has been fetched (tests never download)."""
    pytest.importorskip("torch", reason="SmolLM2 needs the [local] extra")
    from compllm_graph.models import is_cached

    if not is_cached(SMALL_MODEL):
        pytest.skip(
            f"{SMALL_MODEL} is not cached: run `compllm models fetch {SMALL_MODEL}` "
            "(`make test` does this before pytest)"
        )


def smollm2_decomposer() -> Path:
    """The decomposer adapter of SmolLM2's expert pack (the tests' model), or a skip (of the
    whole module, when called at import) when the pack is not installed."""
    folder = adapter_for(SMALL_MODEL)
    if folder is None:
        pytest.skip(
            f"{missing_pack_message(SMALL_MODEL)} (`make test` installs it)",
            allow_module_level=True,
        )
    return folder


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder, or a skip when this checkout has none beside it."""
    if not (DEFAULT_DATA_DIR / "mmlu").is_dir():
        pytest.skip(
            f"the shared datasets are not at {DEFAULT_DATA_DIR} "
            "(set COMPLLM_DATA_DIR to the folder that holds them)"
        )
    return DEFAULT_DATA_DIR


@cache
def shared_smollm2() -> TransformersModel:
    """SmolLM2, loaded once per test session and shared by fixtures and standard suites."""
    from compllm_graph.models import load_model

    require_smollm2()
    return load_model(SMALL_MODEL, engine="transformers")


@cache
def shared_smollm2_llama() -> Any:
    """SmolLM2 on the llama.cpp engine, loaded once per test session (skips without either)."""
    require_smollm2()
    pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed: `make setup` builds it"
    )
    from compllm_graph.models import load_model

    return load_model(SMALL_MODEL, engine="llama.cpp", n_threads=2)


@pytest.fixture(scope="session")
def smollm2() -> Iterator[TransformersModel]:
    """The test model (SmolLM2-135M-Instruct, `SMALL_MODEL`), loaded once for the session."""
    yield shared_smollm2()
