"""Where the shared benchmark and training data lives (the `--data-dir` of the commands).

In order: `$COMPLLM_DATA_DIR`; in a source checkout (a `pyproject.toml` beside the package), the
`shared/data` folder beside the checkout; otherwise (an installed wheel) `$COMPLLM_HOME/data`
(default `~/.cache/compllm/data`). An installed package never looks inside site-packages, and a
command whose data folder is missing stops with an error that says how to point at one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DATA_DIR_VARIABLE = "COMPLLM_DATA_DIR"
"""Environment variable that overrides the data folder."""

HOME_VARIABLE = "COMPLLM_HOME"
"""Environment variable that moves compllm's cache; an installed package looks for its data in
`data` there."""

_PACKAGE = Path(__file__).resolve().parent


def compllm_home() -> Path:
    """Root of the compllm cache: `$COMPLLM_HOME`, default `~/.cache/compllm`."""
    configured = os.environ.get(HOME_VARIABLE)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "compllm"


def source_checkout(package: Path = _PACKAGE) -> Path | None:
    """The source checkout `package` runs from (its parent, whose `pyproject.toml` names
    compllm-graph), or None for an installed package."""
    pyproject = package.parent / "pyproject.toml"
    try:
        ours = '"compllm-graph"' in pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return package.parent if ours else None


def default_data_dir(package: Path = _PACKAGE) -> Path:
    """The data folder: `$COMPLLM_DATA_DIR` if set; else `shared/data` beside the source
    checkout; else, for an installed package, `$COMPLLM_HOME/data`."""
    override = os.environ.get(DATA_DIR_VARIABLE)
    if override:
        return Path(override).expanduser()
    checkout = source_checkout(package)
    if checkout is not None:
        return checkout.parent / "shared" / "data"
    return compllm_home() / "data"


DEFAULT_DATA_DIR = default_data_dir()
"""`default_data_dir()` when compllm_graph was imported."""


def missing_data_message(path: Path) -> str:
    """Why `path` cannot serve as the data folder, and how to point at the data instead."""
    return (
        f"no data folder at {path}: pass --data-dir DIR, or set ${DATA_DIR_VARIABLE} to the "
        f"folder holding the shared datasets (mmlu/, gsm8k/, musique/, ...)"
    )


def missing_data_dir(path: Path) -> bool:
    """True, after saying so on stderr, when a command's data folder is not there."""
    if path.is_dir():
        return False
    print(f"error: {missing_data_message(path)}", file=sys.stderr)
    return True


__all__ = [
    "DATA_DIR_VARIABLE",
    "DEFAULT_DATA_DIR",
    "HOME_VARIABLE",
    "compllm_home",
    "default_data_dir",
    "missing_data_dir",
    "missing_data_message",
    "source_checkout",
]
