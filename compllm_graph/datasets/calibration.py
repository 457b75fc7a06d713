"""The calibration split: questions that train nothing and that no benchmark holds.

`compllm experts calibrate` answers them with every expert and with the base model, to measure
what an expert gains over the base on each domain (`expert_store.calibration`). A gain measured
on items an expert learnt would flatter it, and items a benchmark holds would be tuned on, so
the split is made of sources that no trainer and no benchmark reads at all, not carved from the
item splits (`splits`):

- `mmlu-dev`: MMLU's dev files (`mmlu/dev/SUBJECT_dev.csv`, five few-shot exemplars per
  subject) of each domain's subjects (`items.MMLU_SUBJECTS`). Everything else reads MMLU's
  test files only (`items.mmlu_subject_items`).
- `openbookqa-train`: OpenBookQA's train split (by id, `splits.item_split`), chemistry or biology
  by `items.word_domain`. No trainer reads OpenBookQA; the easy tier holds only its test split.
- `asdiv-train`: ASDiv's train split (mathematics), the same way.
- `mmlu-health`: MMLU's test files of the health subjects no code reads (`HEALTH_SUBJECTS`:
  nutrition, virology; MMLU files them under health beside the medicine subjects).

Why not train-split items the adapters did not learn: every chemistry item of the train split
trained the chemistry experts (502 of 502), and the Qwen decomposer's composed stage drew
train-split items of every domain by a record that was lost (its `training.json`), so no
train-split item of the experts' sources (`items.SOURCES`) is provably unused.

The sources are not enough everywhere: chemistry has 15 items (10 MMLU dev, 5 OpenBookQA).
On top of the choice of sources, any item whose question is also the question of an item of the
experts' sources (either split) or of the easy tier's sources (its test split, which its files
draw from) is left out, so a question repeated across datasets cannot leak. The test
`tests/unit/datasets/test_calibration_split.py` checks the split against the experts' and the
FT baseline's training data, the decomposer's composed questions, the demo centroids and every
benchmark file.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path

from compllm_graph.datasets.easy_tier import READERS as EASY_READERS
from compllm_graph.datasets.easy_tier import Share
from compllm_graph.datasets.items import (
    MMLU_SUBJECTS,
    SOURCES,
    Item,
    asdiv_items,
    asked_question,
    domain_items,
    mmlu_subject_items,
    openbookqa_items,
    round_robin,
)

HEALTH_SUBJECTS = ("nutrition", "virology")
"""MMLU health subjects outside `items.MMLU_SUBJECTS` that no code reads: medicine's
calibration questions beside MMLU's dev files."""

CALIBRATION_SOURCES: Mapping[str, tuple[str, ...]] = {
    "biology": ("mmlu-dev", "openbookqa-train"),
    "chemistry": ("mmlu-dev", "openbookqa-train"),
    "mathematics": ("mmlu-dev", "asdiv-train"),
    "medicine": ("mmlu-dev", "mmlu-health"),
}
"""Each domain's calibration sources (keys of `_READERS`)."""


def mmlu_dev_items(data_dir: Path, domain: str) -> Iterator[Item]:
    """MMLU's dev questions of `domain`'s subjects, with ids `mmlu-dev/SUBJECT/ROW`."""
    for subject in MMLU_SUBJECTS[domain]:
        path = data_dir / "mmlu" / "dev" / f"{subject}_dev.csv"
        with path.open(newline="", encoding="utf-8") as handle:
            for row_number, row in enumerate(csv.DictReader(handle)):
                choices = tuple(row[f"choice{i}"].strip() for i in range(4))
                if len(set(choices)) < 4:
                    continue  # two equal options cannot be told apart by text
                yield Item(
                    f"mmlu-dev/{subject}/{row_number}",
                    row["question"].strip(),
                    choices[int(row["answer"])],
                    choices,
                    domain,
                )


def _train_split(items: Iterable[Item], domain: str) -> list[Item]:
    return [i for i in items if i.in_split == "train" and i.domain == domain]


_READERS: Mapping[str, Callable[[Path, str], Iterable[Item]]] = {
    "mmlu-dev": mmlu_dev_items,
    "openbookqa-train": lambda data_dir, domain: _train_split(openbookqa_items(data_dir), domain),
    "asdiv-train": lambda data_dir, domain: _train_split(asdiv_items(data_dir), domain),
    "mmlu-health": lambda data_dir, domain: (
        i for s in HEALTH_SUBJECTS for i in mmlu_subject_items(data_dir, s, domain)
    ),
}


@cache
def reserved_questions(data_dir: Path) -> frozenset[str]:
    """Questions the split may not hold: every item's of the experts' sources (both splits),
    and every test-split item's of the easy tier's sources (a question asked after its
    passage counted alone too)."""
    texts = {i.question for domain in SOURCES for i in domain_items(data_dir, domain)}
    for source, read in EASY_READERS.items():
        if source == "medmcqa":
            continue  # every MedMCQA subject is among the experts' sources already
        for item in read(data_dir, Share()):
            if item.in_split == "test":
                texts.update((item.question, asked_question(item.question)))
    return frozenset(texts)


def source_items(data_dir: Path, domain: str, source: str) -> list[Item]:
    """The calibration items of one of `domain`'s sources, in their order, without any whose
    question is reserved (`reserved_questions`).

    Raises:
        ValueError: an unknown domain, or a source that is not one of the domain's.
    """
    if source not in CALIBRATION_SOURCES.get(domain, ()):
        raise ValueError(
            f"no calibration source {source!r} for domain {domain!r}; sources: "
            f"{dict(CALIBRATION_SOURCES)}"
        )
    reserved = reserved_questions(data_dir)
    return [i for i in _READERS[source](data_dir, domain) if i.question not in reserved]


def calibration_items(
    data_dir: Path, domain: str, limit: int | None = None, seed: int = 0
) -> list[Item]:
    """Up to `limit` calibration items of `domain` (None: all), seeded and taken from its
    sources in turn, so a large source (ASDiv) does not drown a small one (MMLU dev).

    Raises:
        ValueError: an unknown domain, or a limit below 1.
    """
    if domain not in CALIBRATION_SOURCES:
        raise ValueError(
            f"unknown domain {domain!r}; calibration domains: {sorted(CALIBRATION_SOURCES)}"
        )
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    rng = random.Random(f"calibration-{domain}-{seed}")
    pools = []
    for source in CALIBRATION_SOURCES[domain]:
        pool = source_items(data_dir, domain, source)
        rng.shuffle(pool)
        pools.append(pool)
    everything = sum(len(pool) for pool in pools)
    return round_robin(pools, everything if limit is None else limit)


def calibration_split(
    data_dir: Path, limit: int | None = None, seed: int = 0
) -> dict[str, list[Item]]:
    """Domain -> its `calibration_items` (up to `limit` each), for every calibration domain."""
    return {d: calibration_items(data_dir, d, limit, seed) for d in sorted(CALIBRATION_SOURCES)}


__all__ = [
    "CALIBRATION_SOURCES",
    "HEALTH_SUBJECTS",
    "calibration_items",
    "calibration_split",
    "mmlu_dev_items",
    "reserved_questions",
    "source_items",
]
