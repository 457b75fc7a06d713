"""Where the shared benchmark data lives (the repository's sibling `shared/data`)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder, or a skip when this checkout has none beside it."""
    if not (DATA_DIR / "musique").is_dir():
        pytest.skip(f"the shared datasets are not at {DATA_DIR} (they sit beside the checkout)")
    return DATA_DIR
