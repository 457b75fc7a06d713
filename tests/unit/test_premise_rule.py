"""The premise rule (`decomposer.premise_rule`): what gets the facts back, what is left alone,
and where it fires on real data."""

from __future__ import annotations

import doctest
import json
from collections import defaultdict
from pathlib import Path

import pytest

from compllm_graph.datasets.decompositions import default_files, load_examples
from compllm_graph.decomposer import premise_rule
from compllm_graph.decomposer.premise_rule import (
    MAX_FACT_WORDS,
    carry_premise,
    is_statement,
    opening_facts,
    sentences,
)
from compllm_graph.evaluation.benchmarks import build_benchmarks
from compllm_graph.query_graph import QueryGraph, SubQuery

ELEVATOR = (
    "The elevator in Jack's building supports a maximum load of 700 kg. An adult weighs an "
    "average of 80 kg. First: How many adults can ride at once? Then: If Jack rides the "
    "elevator with 8 other adults, by how much will they exceed the maximum load?"
)
FACTS = [
    "The elevator in Jack's building supports a maximum load of 700 kg.",
    "An adult weighs an average of 80 kg.",
]
FIRST = " ".join(FACTS) + " First: How many adults can ride at once?"
OUTPUTS = Path(__file__).resolve().parents[2] / "benchmarks" / "answers" / "outputs"


def _graph(*texts: str, edges: tuple[tuple[int, int], ...] = ()) -> QueryGraph:
    parents: dict[int, list[int]] = defaultdict(list)
    for parent, child in edges:
        parents[child].append(parent)
    return QueryGraph(
        tuple(SubQuery(i, t, tuple(parents[i])) for i, t in enumerate(texts, start=1))
    )


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(premise_rule).failed == 0


@pytest.mark.parametrize(
    "second",
    [
        "If Jack rides the elevator with 8 other adults, by how much will they exceed the load?",
        "If he rides with 8 others, by how much is the load exceeded?",  # a pronoun
        "By how much is the maximum load exceeded then?",  # a word the facts hold
        "How much over the limit are they together?",  # a quantity with no number of its own
    ],
)
def test_a_question_written_without_its_facts_gets_them(second: str) -> None:
    new, carried = carry_premise(ELEVATOR, _graph(FIRST, second))
    assert carried == (2,)
    assert new[2].text == " ".join([*FACTS, second])
    assert new[1].text == FIRST and new.edges == ()


def test_only_the_facts_a_sub_query_lacks_are_put_in_front() -> None:
    second = f"{FACTS[1]} If Jack rides with 8 others, by how much is the load exceeded?"
    new, carried = carry_premise(ELEVATOR, _graph(FIRST, second))
    assert carried == (2,) and new[2].text == f"{FACTS[0]} {second}"


def test_a_child_whose_parent_holds_the_facts_is_left_alone() -> None:
    graph = _graph(FIRST, "If #1 adults ride, by how much is the load exceeded?", edges=((1, 2),))
    assert carry_premise(ELEVATOR, graph) == (graph, ())


def test_a_child_whose_parents_lack_the_facts_gets_them() -> None:
    query = f"{' '.join(FACTS)} How many adults ride, and by how much is the load exceeded?"
    graph = _graph(
        FIRST, "How many adults can ride?", "By how much is #2's load exceeded?", edges=((2, 3),)
    )
    assert carry_premise(query, graph)[1] == (
        2,
    )  # 3's parent now holds them: its prompt carries 2's question


@pytest.mark.parametrize(
    ("query", "texts"),
    [
        # no facts: a multi-hop question, as MuSiQue and Break ask
        (
            "Who is the spouse of the director of Titanic?",
            ("Who directed Titanic?", "Who is the spouse of #1?"),
        ),
        # the facts belong to one question; the other is a question of its own, with options
        (
            "Soda water holds bubbles of carbon dioxide gas. What is soda water? Options: (A) "
            "a mixture; (B) an element. Also: Which gas do plants take in? Options: (A) oxygen; "
            "(B) carbon dioxide.",
            (
                "Soda water holds bubbles of carbon dioxide gas. What is soda water? Options: "
                "(A) a mixture; (B) an element.",
                "Which gas do plants take in? Options: (A) oxygen; (B) carbon dioxide.",
            ),
        ),
        # a question with statements of its own
        (
            "Ann has 4 red pens and 2 blue pens. How many pens has she? Also: Bob has 3 cats. "
            "How many cats has he?",
            (
                "Ann has 4 red pens and 2 blue pens. How many pens has she?",
                "Bob has 3 cats. How many cats has he?",
            ),
        ),
        # no sub-query holds the facts: the decomposer did not read them as a premise
        (
            "Ann has 4 red pens and 2 blue pens. How many pens has she? And how many has he?",
            ("How many pens has she?", "How many has he?"),
        ),
        # a question that points at nothing the facts hold
        (
            f"{' '.join(FACTS)} How many adults can ride? Also: What is the capital of Peru?",
            (FIRST, "What is the capital of Peru?"),
        ),
    ],
)
def test_left_alone(query: str, texts: tuple[str, ...]) -> None:
    graph = _graph(*texts)
    assert carry_premise(query, graph) == (graph, ())


def test_a_passage_is_not_copied() -> None:
    passage = " ".join(["The study followed many patients over ten years."] * 20)
    query = f"{passage} Did he recover? And: How many recovered?"
    assert len(passage.split()) > MAX_FACT_WORDS and opening_facts(query) == []
    graph = _graph(f"{passage} Did he recover?", "How many recovered?")
    assert carry_premise(query, graph) == (graph, ())


def test_facts_drop_markers_and_instructions() -> None:
    query = "Two things: Joey has 214 points. He scores 26 more. Answer two things. How many ...?"
    assert opening_facts(query) == ["Joey has 214 points.", "He scores 26 more."]
    assert opening_facts("Tom is 3. How old is he?") == []  # fewer than MIN_FACT_WORDS
    assert opening_facts("How old is Tom? Tom is three years old.") == []


def test_sentences_and_statements() -> None:
    assert sentences("It costs $50.00 today. Is it cheap? Yes.") == [
        "It costs $50.00 today.",
        "Is it cheap?",
        "Yes.",
    ]
    assert is_statement("When he got to the mall he saw a sale.")
    assert is_statement("First: Mike needed new jeans.")
    assert not is_statement("How many are left")
    assert not is_statement("Answer two things.")
    assert not is_statement("Who wrote it?")


def test_the_rule_fires_on_no_gold_decomposition(data_dir: Path) -> None:
    """MuSiQue, Break and StrategyQA state no facts before their questions: the rule changes
    none of their 6,224 gold decompositions."""
    files = default_files(data_dir)
    for name in ("musique", "break", "strategyqa"):
        examples = load_examples(files[name])
        assert examples, name
        fired = [e.question for e in examples if carry_premise(e.question, e.graph)[1]]
        assert not fired, (name, fired[:3])


def _recorded(path: Path, questions: dict[str, str]) -> list[tuple[str, QueryGraph]]:
    graphs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts = [a["question"] for a in row["sub_answers"]]
        if texts and row["id"] in questions:
            graphs.append((row["id"], _graph(*texts, edges=tuple(map(tuple, row["edges"])))))
    return graphs


def test_where_the_rule_fires_on_the_easy_tier(data_dir: Path) -> None:
    """On the decompositions Qwen2.5-Coder-0.5B's Comp-LLM wrote before the rule (its committed
    `compllm` cells): about 80 of All-2's 200 word problems, each sub-query given facts its gold
    part holds, and none of P-2's 200."""
    pytest.importorskip("faiss", reason="building the easy tier needs the [router] extra")
    files = build_benchmarks(data_dir, 300, 200, tier="easy")
    cells = OUTPUTS / "qwen2.5-coder-0.5b-instruct"
    fired: dict[str, int] = {}
    for name in ("easy-p2", "easy-all2"):
        records = {r["id"]: r for r in files[name]}
        questions = {i: r["question"] for i, r in records.items()}
        recorded = _recorded(cells / f"compllm.{name}.jsonl", questions)
        assert len(recorded) >= 190, name
        fired[name] = 0
        for record_id, graph in recorded:
            new, carried = carry_premise(questions[record_id], graph)
            fired[name] += bool(carried)
            gold = " ".join(p["question"] for p in records[record_id]["parts"])
            for sq_id in carried:
                facts = new[sq_id].text.removesuffix(graph[sq_id].text).split(". ")
                assert all(fact.rstrip(".") in gold for fact in facts), new[sq_id].text
    assert fired["easy-p2"] == 0
    assert 60 <= fired["easy-all2"] <= 100, fired


def test_a_fact_with_another_number_is_not_held() -> None:
    """The decomposer changed a number: no sub-query holds the query's facts, so the rule
    does not read them as the premise of its questions."""
    second = "If Jack rides with 8 others, by how much is the load exceeded?"
    graph = _graph(FIRST.replace("700 kg", "500 kg"), second)
    assert carry_premise(ELEVATOR, graph) == (graph, ())
