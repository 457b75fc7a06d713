"""Optional dependencies: imported only where used, with errors that name the extra to install."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from compllm_graph.errors import CompLLMError

Extra = Literal["local", "router", "remote", "serve", "train", "eval", "durable", "postgres"]
"""The `[project.optional-dependencies]` groups of pyproject.toml that features need."""


class MissingExtraError(CompLLMError, ImportError):
    """A feature needs an optional dependency that is not installed."""


@contextmanager
def requires(extra: Extra) -> Iterator[None]:
    """Re-raise a `ModuleNotFoundError` inside the block as a `MissingExtraError` naming `extra`.

    Example:
        ```python
        with requires("local"):
            import torch
        ```
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        raise MissingExtraError(
            f"{exc.name or 'a dependency'} is not installed; this feature needs the [{extra}] "
            f"extra: pip install 'compllm-graph[{extra}]'",
            name=exc.name,
        ) from exc


__all__ = ["MissingExtraError", "requires"]
