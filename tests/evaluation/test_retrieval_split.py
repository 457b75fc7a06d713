"""The retrieval split check on the real data: every demo expert's training items may enter a
retrieval set, and no question of a benchmark file can, whatever id it is given. Skips when the
shared data is absent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

from compllm_graph.datasets.items import SOURCES
from compllm_graph.evaluation.benchmarks import build_benchmarks
from compllm_graph.evaluation.retrieval import TrainingPool, refused_items, training_pool
from compllm_graph.expert_store.retrieval import RetrievalItem
from compllm_graph.training.expert_data import expert_examples


@pytest.fixture(scope="module")
def pool(data_dir: Path) -> TrainingPool:
    return training_pool(data_dir)


@pytest.fixture(scope="module")
def benchmarks(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The benchmark files as `compllm eval benchmarks` writes them by default (300 composed
    questions, 200 a domain): built here, since a clean clone holds none."""
    return build_benchmarks(data_dir, 300, 200)


@pytest.mark.parametrize("domain", sorted(SOURCES))
def test_every_training_item_of_an_expert_may_enter(
    data_dir: Path, pool: TrainingPool, domain: str
) -> None:
    records = expert_examples(data_dir, domain, 800, seed=0)  # open forms included
    items = [RetrievalItem(r["id"], r["question"], r["answer"]) for r in records]
    assert refused_items(items, pool) == []


@pytest.mark.parametrize("stem", ["p2", "p3", *(f"single-{d}" for d in sorted(SOURCES))])
def test_no_benchmark_question_may_enter(
    pool: TrainingPool, benchmarks: dict[str, list[dict[str, Any]]], stem: str
) -> None:
    """Every part of the files whose parts are test items (the All-k files' parts are steps
    composed from them, no item's question) is refused, under an id of no shared source."""
    records = benchmarks[stem]
    items = [
        RetrievalItem(f"mine/{number}/{part}", p["question"], str(p["answer"]))
        for number, record in enumerate(records)
        for part, p in enumerate(record["parts"])
    ]
    refused = refused_items(items, pool)
    assert len(items) >= 200 and len(refused) == len(items)
    assert {why for _, why in refused} == {"its question is a test-split item's"}
