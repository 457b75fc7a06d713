"""Where the shared benchmark and training data lives: `$COMPLLM_DATA_DIR`, or `../shared/data`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DATA_DIR_VARIABLE = "COMPLLM_DATA_DIR"
"""Environment variable that overrides the data folder."""


def default_data_dir() -> Path:
    """The data folder: `$COMPLLM_DATA_DIR` if set, else `shared/data` beside the checkout."""
    override = os.environ.get(DATA_DIR_VARIABLE)
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


DEFAULT_DATA_DIR = default_data_dir()
"""`default_data_dir()` when compllm_graph was imported."""


def missing_data_dir(path: Path) -> bool:
    """True, after saying so on stderr, when a command's data folder is not there."""
    if path.is_dir():
        return False
    print(
        f"error: no data folder at {path} (use --data-dir, or set ${DATA_DIR_VARIABLE})",
        file=sys.stderr,
    )
    return True


__all__ = ["DATA_DIR_VARIABLE", "DEFAULT_DATA_DIR", "default_data_dir", "missing_data_dir"]
