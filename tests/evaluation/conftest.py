"""Shared fixtures of the evaluation tests: the shared data folder (or a skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compllm_graph.data_dir import DEFAULT_DATA_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder, or a skip when this checkout has none beside it."""
    if not (DEFAULT_DATA_DIR / "mmlu").is_dir():
        pytest.skip(f"the shared datasets are not at {DEFAULT_DATA_DIR} (set COMPLLM_DATA_DIR)")
    return DEFAULT_DATA_DIR
