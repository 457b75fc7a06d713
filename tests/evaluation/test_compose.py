"""Composed MultiExpertQA-P questions, the disjoint splits, and the sources they come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from compllm_graph.datasets.compositions import TEMPLATES, compose_parallel
from compllm_graph.datasets.items import (
    Item,
    as_text,
    centroid_texts,
    gsm8k_items,
    medmcqa_items,
    mmlu_items,
)
from compllm_graph.datasets.splits import item_split
from compllm_graph.evaluation.scoring import score_question

KEYS = {"id", "question", "parts", "edges"}
PART_KEYS = {"question", "answer", "choices", "domain"}


def pool(domain: str, size: int = 40) -> list[Item]:
    choices = tuple(f"{domain} {word}" for word in ("alpha", "beta", "gamma", "delta"))
    return [
        Item(f"{domain}/{i}", f"Item {domain}/{i}?", choices[i % 4], choices, domain)
        for i in range(size)
    ]


def test_an_item_reads_with_its_lettered_options() -> None:
    item = Item("x/1", "Which gas do plants absorb?", "CO2", ("O2", "CO2"), "biology")
    assert as_text(item) == "Which gas do plants absorb? Options: (A) O2; (B) CO2."
    assert as_text(Item("x/2", "What is 2+2?", "4", None, "mathematics")) == "What is 2+2?"


def test_splits_are_stable_disjoint_and_about_the_share() -> None:
    ids = [f"src/{i}" for i in range(2000)]
    first = [item_split(i) for i in ids]
    assert first == [item_split(i) for i in ids]
    assert 0.25 < first.count("test") / len(ids) < 0.35
    train = {i for i, s in zip(ids, first) if s == "train"}
    test = {i for i, s in zip(ids, first) if s == "test"}
    assert train and test and not train & test


def test_composed_questions_keep_parts_from_different_domains() -> None:
    pools = {d: pool(d) for d in ("chemistry", "biology", "medicine")}
    records = compose_parallel(pools, parts=2, count=8, seed=1)
    assert records == compose_parallel(pools, parts=2, count=8, seed=1)  # seeded
    used = [p["question"] for r in records for p in r["parts"]]
    assert len(used) == len(set(used)), "an item was used twice"
    for record in records:
        assert set(record) == KEYS and record["edges"] == []
        assert all(set(p) == PART_KEYS for p in record["parts"])
        assert len({p["domain"] for p in record["parts"]}) == 2
        assert any(
            record["question"] == t.format(*(p["question"] for p in record["parts"]))
            for t in TEMPLATES[2]
        )
        # the parts' gold answers, put together, answer the composed question
        golds = "; ".join(p["answer"] for p in record["parts"])
        assert score_question(golds, record["parts"]).right


def test_only_test_split_items_reach_a_benchmark() -> None:
    pools = {d: pool(d, 200) for d in ("chemistry", "biology", "medicine")}
    for record in compose_parallel(pools, parts=3, count=20, seed=0):
        for part in record["parts"]:
            item_id = part["question"].split("?")[0].removeprefix("Item ")
            assert item_split(item_id) == "test"


def test_bad_builds_are_refused() -> None:
    with pytest.raises(ValueError, match="parts must be one of"):
        compose_parallel({"a": pool("a")}, parts=4, count=1)
    with pytest.raises(ValueError, match="3 parts need 3 domains"):
        compose_parallel({"a": pool("a"), "b": pool("b")}, parts=3, count=1)
    with pytest.raises(ValueError, match="ran out of items"):
        compose_parallel({"a": pool("a", 4), "b": pool("b", 4)}, parts=2, count=50)


def test_real_sources_load_with_exact_answers(data_dir: Path) -> None:
    chemistry = list(mmlu_items(data_dir, "chemistry"))
    assert len(chemistry) > 300 and all(i.answer in (i.choices or ()) for i in chemistry)
    maths = list(gsm8k_items(data_dir))
    assert len(maths) == 1319 and all(float(i.answer) == float(i.answer) for i in maths)
    medicine = list(medmcqa_items(data_dir))
    assert len(medicine) > 3000 and all(i.answer in (i.choices or ()) for i in medicine)
    assert len({i.id for i in [*chemistry, *maths, *medicine]}) == len(chemistry) + len(
        maths
    ) + len(medicine)


def test_items_that_built_a_centroid_are_never_parts() -> None:
    pools = {d: pool(d, 200) for d in ("chemistry", "biology")}
    used = {item.question for items in pools.values() for item in items[:150]}
    for record in compose_parallel(pools, parts=2, count=10, seed=0, exclude=used):
        for part in record["parts"]:
            assert part["question"].split(" Options: ")[0] not in used


def test_the_demo_stores_questions_stay_out_of_real_benchmarks(data_dir: Path) -> None:
    pools = {d: list(mmlu_items(data_dir, d)) for d in ("chemistry", "biology", "medicine")}
    centroids = centroid_texts()
    assert any(i.question in centroids for items in pools.values() for i in items)  # they overlap
    # The demo store's questions are MMLU items of the train split, which benchmarks never use;
    # the exclusion keeps them out whatever the demo data holds.
    for record in compose_parallel(pools, parts=3, count=3, seed=0):
        for part in record["parts"]:
            assert part["question"].split(" Options: ")[0] not in centroids
