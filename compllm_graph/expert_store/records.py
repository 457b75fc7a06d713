"""What the expert store holds: the `Expert` record, valid names and thresholds, and its errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compllm_graph.errors import CompLLMError
from compllm_graph.types import BASE

DEFAULT_THRESHOLD = 0.7
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class StoreError(CompLLMError, RuntimeError):
    """A store operation cannot be done (missing store, unknown or duplicate expert, bad input)."""


class CorruptStoreError(StoreError):
    """The store on disk is damaged or partially written."""


@dataclass(frozen=True)
class Expert:
    """One expert as stored.

    Attributes:
        name: Unique name matching `NAME_PATTERN`.
        description: What the expert knows.
        base_model: Base model the adapter was trained on, or None.
        adapter: Path of the stored peft adapter folder, or None (the base model answers, with
            `system_prompt` if set).
        system_prompt: System message put before the expert's prompts, or None.
        threshold: Per-expert routing threshold, or None for the store default.
        counts: Training texts per centroid.
        stats: Statistics of the expert's data.
        centroids: Raw (uncentred) mean embedding per centroid, shape (len(counts), dim).
    """

    name: str
    description: str
    base_model: str | None
    adapter: Path | None
    system_prompt: str | None
    threshold: float | None
    counts: tuple[int, ...]
    stats: dict[str, Any] = field(default_factory=dict)
    centroids: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 0), np.float32), repr=False, compare=False
    )


def check_name(name: str) -> str:
    """Return `name` if it is a valid expert name.

    Raises:
        StoreError: the name does not match `^[a-z0-9][a-z0-9_-]{0,63}$`.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name == BASE:
        raise StoreError(
            f"invalid expert name {name!r}: use 1-64 characters of a-z, 0-9, '_' or '-', "
            f"starting with a letter or digit ({BASE!r} is reserved)"
        )
    return name


def check_threshold(value: float) -> None:
    if not isinstance(value, (int, float)) or not -1.0 <= float(value) <= 1.0:
        raise StoreError(f"a threshold is a cosine similarity in [-1, 1], got {value!r}")


__all__ = [
    "DEFAULT_THRESHOLD",
    "NAME_PATTERN",
    "CorruptStoreError",
    "Expert",
    "StoreError",
    "check_name",
    "check_threshold",
]
