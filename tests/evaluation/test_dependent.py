"""MultiExpertQA-All: socratic GSM8K steps and cross-domain bridges whose gold follows."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from compllm_graph.datasets.bridges import (
    BODY_ELEMENTS,
    ELEMENTS,
    atomic_number,
    body_element_part,
    element_part,
)
from compllm_graph.datasets.compositions import compose_dependent
from compllm_graph.datasets.items import Chain, Item, gsm8k_items, socratic_chains
from compllm_graph.datasets.splits import item_split
from compllm_graph.evaluation.scoring import score_question

KEYS = {"id", "question", "parts", "edges"}


def test_the_element_table_is_the_periodic_table() -> None:
    assert len(ELEMENTS) == 118 and len(set(ELEMENTS)) == 118
    assert (ELEMENTS[0], ELEMENTS[5], ELEMENTS[7], ELEMENTS[25], ELEMENTS[78]) == (
        "Hydrogen",
        "Carbon",
        "Oxygen",
        "Iron",
        "Gold",
    )
    assert set(ELEMENTS) >= BODY_ELEMENTS and len(BODY_ELEMENTS) == 6


@pytest.mark.parametrize(
    ("answer", "number"), [("8", 8), ("8.0", 8), ("118", 118), ("0", None), ("119", None)]
)
def test_only_whole_numbers_of_an_element_bridge(answer: str, number: int | None) -> None:
    assert atomic_number(answer) == number
    assert atomic_number("2.5") is None and atomic_number("many") is None


def test_a_bridge_part_follows_from_the_earlier_gold() -> None:
    part = element_part(26, 1, random.Random(0))
    assert part["answer"] == "Iron" and part["answer"] in part["choices"]
    assert len(set(part["choices"])) == 4 and "#1" in part["question"]
    numbers = [ELEMENTS.index(c) + 1 for c in part["choices"]]
    assert all(abs(n - 26) <= 4 for n in numbers)  # near neighbours, not give-aways
    assert body_element_part("Oxygen", 2)["answer"] == "yes"
    assert body_element_part("Iron", 2)["answer"] == "no"
    with pytest.raises(ValueError, match="no element"):
        element_part(0, 1, random.Random(0))


def maths(size: int = 300) -> list[Item]:
    return [
        Item(f"m/{i}", f"Problem {i}?", str(i % 40 + 1), None, "mathematics") for i in range(size)
    ]


def chains(size: int = 300) -> list[Chain]:
    return [
        Chain(
            f"c/{i}",
            f"Context {i}.",
            (("How many A?", "3"), ("How many B?", "6"), (f"Total {i}?", "9")),
        )
        for i in range(size)
    ]


def test_dependent_questions_alternate_steps_and_bridges() -> None:
    records = compose_dependent(maths(), chains(), parts=2, count=20, seed=3, exclude=())
    assert records == compose_dependent(maths(), chains(), parts=2, count=20, seed=3, exclude=())
    for number, record in enumerate(records):
        assert set(record) == KEYS and record["edges"] == [[1, 2]]
        domains = [p["domain"] for p in record["parts"]]
        if number % 2 == 0:  # socratic: the first step and the last, each with its context
            assert domains == ["mathematics", "mathematics"]
            context = record["question"].split(" First:")[0].split(" Answer two")[0]
            assert all(p["question"].startswith(context) for p in record["parts"])
            assert [p["answer"] for p in record["parts"]] == ["3", "9"]
        else:  # bridge: the element whose atomic number is the problem's answer
            assert domains == ["mathematics", "chemistry"]
            first, second = record["parts"]
            assert second["answer"] == ELEMENTS[int(first["answer"]) - 1]
            assert "that number as its atomic number" in record["question"]
        golds = "; ".join(p["answer"] for p in record["parts"])
        assert score_question(golds, record["parts"]).right
        first = record["parts"][0]["question"]
        kind, number_text = first.split(".")[0].split("?")[0].split(" ")[:2]
        assert item_split(f"{'m' if kind == 'Problem' else 'c'}/{number_text}") == "test"


def test_three_dependent_parts_reach_biology() -> None:
    for record in compose_dependent(maths(), chains(), parts=3, count=10, seed=0, exclude=()):
        assert record["edges"] == [[1, 2], [2, 3]]
        if record["parts"][1]["domain"] == "chemistry":
            element = record["parts"][1]["answer"]
            third = record["parts"][2]
            assert third["domain"] == "biology"
            assert third["answer"] == ("yes" if element in BODY_ELEMENTS else "no")


def test_bad_dependent_builds_are_refused() -> None:
    with pytest.raises(ValueError, match="parts must be one of"):
        compose_dependent(maths(), chains(), parts=4, count=1)
    with pytest.raises(ValueError, match="ran out"):
        compose_dependent(maths(20), chains(20), parts=2, count=40, exclude=())


def test_real_chains_keep_their_numbers(data_dir: Path) -> None:
    real = list(socratic_chains(data_dir))
    assert len(real) > 900
    gold = {i.id: i.answer for i in gsm8k_items(data_dir)}
    for chain in real[:200]:
        assert float(chain.steps[-1][1]) == float(gold[chain.id])
        assert not chain.context.endswith("?")
    # The last part is the problem's own question, with any data it gives (the socratic
    # rephrasing "How many hours does James run in a week?" drops "10 miles an hour").
    james = next(c for c in real if c.context == "James runs 12 miles a day for 5 days a week.")
    assert james.steps[-1] == (
        "If he runs 10 miles an hour how many hours does he run a week?",
        "6",
    )
    records = compose_dependent(list(gsm8k_items(data_dir)), real, parts=3, count=300, seed=0)
    assert len(records) == 300
