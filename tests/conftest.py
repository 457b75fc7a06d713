"""Shared fixtures: the real SmolLM2 model, loaded once per test session when it is cached."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from compllm_graph.data_dir import DEFAULT_DATA_DIR
from compllm_graph.decomposer import adapter_for
from compllm_graph.models import SMALL_MODEL, LocalModel, is_cached, load_model


def require_smollm2() -> None:
    """Skip the calling test unless SmolLM2 has been fetched (tests never download)."""
    if not is_cached(SMALL_MODEL):
        pytest.skip(
            f"{SMALL_MODEL} is not cached: run `compllm models fetch {SMALL_MODEL}` "
            "(`make test` does this before pytest)"
        )


def smollm2_decomposer() -> Path:
    """The decomposer adapter shipped for SmolLM2, the tests' model."""
    folder = adapter_for(SMALL_MODEL)
    assert folder is not None, f"no decomposer ships for {SMALL_MODEL}"
    return folder


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder, or a skip when this checkout has none beside it."""
    if not (DEFAULT_DATA_DIR / "mmlu").is_dir():
        pytest.skip(f"the shared datasets are not at {DEFAULT_DATA_DIR} (set COMPLLM_DATA_DIR)")
    return DEFAULT_DATA_DIR


@cache
def shared_smollm2() -> LocalModel:
    """SmolLM2, loaded once per test session and shared by fixtures and standard suites."""
    require_smollm2()
    return load_model(SMALL_MODEL, engine="transformers")


@cache
def shared_smollm2_llama() -> Any:
    """SmolLM2 on the llama.cpp engine, loaded once per test session (skips without either)."""
    require_smollm2()
    pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed: `make setup` builds it"
    )
    return load_model(SMALL_MODEL, engine="llama.cpp", n_threads=2)


@pytest.fixture(scope="session")
def smollm2() -> Iterator[LocalModel]:
    """The test model (SmolLM2-135M-Instruct, `SMALL_MODEL`), loaded once for the session."""
    yield shared_smollm2()
