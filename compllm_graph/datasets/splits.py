"""Deterministic splits by id, made before anything trains on an example.

A split depends only on an id (a hash of it), so every source, every run and every process agrees,
and nothing that trains an expert, the decomposer or a centroid can reach an evaluation of it.

Two functions split two different things, and neither may change, since every shipped adapter,
centroid and benchmark figure was made with them:

- `item_split`: single-domain items with exact answers (`items`: MMLU, GSM8K, MedMCQA, MedQA,
  PubMedQA, ARC), train or test, 70/30. Experts, the demo store's centroids and the decomposer's
  composed questions learn from `train`; the answer benchmarks are built from `test` only.
- `decomposition_split`: gold decompositions (`decompositions`: MuSiQue, StrategyQA and Break
  question ids), train, validation or test, 80/10/10. The decomposer learns from `train`, is
  validated after training on `validation`, and its decomposition F1 is reported on `test`.

They are not one function with two sets of shares: they read different bits of the hash (the
first 8 bytes as a fraction, against the first 4 bytes modulo 100) and order their splits
differently, so folding them into one would move examples between splits. They never meet:
item ids (`source/file/row`) and the datasets' question ids are disjoint, and a composed question
takes its parts from one item split and is never split again by its own id.
"""

from __future__ import annotations

import hashlib
from typing import Literal

ItemSplit = Literal["train", "test"]
"""The split of a single-domain item (`item_split`)."""
DecompositionSplit = Literal["train", "validation", "test"]
"""The split of a gold decomposition (`decomposition_split`)."""
DECOMPOSITION_SPLITS: tuple[DecompositionSplit, ...] = ("train", "validation", "test")

TEST_SHARE = 0.3
"""Share of each item source kept for benchmarks."""

# Percent of question ids in train and train + validation; the rest is test.
_TRAIN_PERCENT = 80
_TRAIN_VALIDATION_PERCENT = 90


def item_split(item_id: str, test_share: float = TEST_SHARE) -> ItemSplit:
    """`"test"` for about `test_share` of item ids, `"train"` for the rest, stably by id.

    An item whose source has an official split keeps that instead (`items.Item.in_split`).
    """
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be in (0, 1), got {test_share}")
    bucket = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big") / 2**64
    return "test" if bucket < test_share else "train"


def decomposition_split(qid: str) -> DecompositionSplit:
    """The split of a gold decomposition's question id: 80 % train, 10 % validation, 10 % test."""
    bucket = int(hashlib.sha256(qid.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < _TRAIN_PERCENT:
        return "train"
    if bucket < _TRAIN_VALIDATION_PERCENT:
        return "validation"
    return "test"


__all__ = [
    "DECOMPOSITION_SPLITS",
    "TEST_SHARE",
    "DecompositionSplit",
    "ItemSplit",
    "decomposition_split",
    "item_split",
]
