"""Deterministic train/test splits by item id, made before anything trains on an item.

An item's split depends only on its id (a hash), so every source, every run and every process
agrees, and no item used to train an expert, the decomposer or a centroid can reach a benchmark.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Split = Literal["train", "test"]
TEST_SHARE = 0.3
"""Share of each source's items kept for benchmarks."""


def split_of(item_id: str, test_share: float = TEST_SHARE) -> Split:
    """`"test"` for about `test_share` of ids, `"train"` for the rest, stably by id."""
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be in (0, 1), got {test_share}")
    bucket = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big") / 2**64
    return "test" if bucket < test_share else "train"


__all__ = ["TEST_SHARE", "Split", "split_of"]
