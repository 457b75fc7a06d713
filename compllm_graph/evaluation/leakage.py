"""Benchmark questions that share a passage with a train-split item.

Splits are by item id, and builds leave out any test item whose question repeats a train
item's. Some sources still ask several questions about one passage (an MMLU experiment, a
titration), each under its own id, so a test question can share its passage with a train item
that an expert saw. Such a question is not a copy, but it is not unseen either: the answer
tables leave it out. A shared run of `SHINGLE_WORDS` words is common in templated vignettes
("which of the following is the most likely..."), so a part counts as sharing a passage only
when at least `MIN_SHARE` of its word runs appear in train items.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from compllm_graph.datasets.items import SOURCES, domain_items, unlettered

SHINGLE_WORDS = 12
MIN_SHARE = 0.2
"""Share of a part's word runs found in train items from which it shares their passage.

Templated vignette phrases reach at most about 6 % of a part's runs on our sources; parts that
reuse a passage share 40 % or more."""


def word_runs(text: str, words: int = SHINGLE_WORDS) -> set[str]:
    """Every run of `words` consecutive words of `text` (lower case, options left out)."""
    tokens = re.findall(r"[a-z0-9]+", unlettered(text).lower())
    return {" ".join(tokens[i : i + words]) for i in range(len(tokens) - words + 1)}


def train_runs(data_dir: Path, domains: Iterable[str] = SOURCES) -> frozenset[str]:
    """The word runs of every train-split item of `domains`.

    Every train-split item, not only those a run trained on, so the check holds for any
    training data drawn from the train split.
    """
    return frozenset(
        run
        for domain in domains
        for item in domain_items(data_dir, domain)
        if item.in_split == "train"
        for run in word_runs(item.question)
    )


def shared_share(text: str, runs: frozenset[str]) -> float:
    """The share of `text`'s word runs that appear in `runs` (0 for texts too short to have any)."""
    own = word_runs(text)
    return len(own & runs) / len(own) if own else 0.0


def shared_passage_ids(
    records: Sequence[Mapping[str, Any]], runs: frozenset[str], min_share: float = MIN_SHARE
) -> list[str]:
    """Ids of the benchmark questions with a part that shares a passage with a train item."""
    return [
        str(record["id"])
        for record in records
        if any(shared_share(part["question"], runs) >= min_share for part in record["parts"])
    ]


__all__ = [
    "MIN_SHARE",
    "SHINGLE_WORDS",
    "shared_passage_ids",
    "shared_share",
    "train_runs",
    "word_runs",
]
