"""Where the shared benchmark data lives (`$COMPLLM_DATA_DIR`, or the sibling `shared/data`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compllm_graph.data_dir import DEFAULT_DATA_DIR as DATA_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder, or a skip when this checkout has none beside it."""
    if not (DATA_DIR / "musique").is_dir():
        pytest.skip(
            f"the shared datasets are not at {DATA_DIR} "
            " (set COMPLLM_DATA_DIR, or put them beside the checkout)"
        )
    return DATA_DIR
