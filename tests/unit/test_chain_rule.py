"""The chain rule (`decomposer.chain_rule`): positives, negatives, the graph it builds, and
what it does to real questions, to real single steps and to the benchmarks' parts."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from compllm_graph.datasets.decompositions import default_files, load_examples
from compllm_graph.decomposer import chain_rule
from compllm_graph.decomposer.chain_rule import split_chain, split_chains
from compllm_graph.evaluation.benchmarks import build_benchmarks
from compllm_graph.query_graph import QueryGraph, SubQuery


@pytest.mark.parametrize(
    ("question", "steps"),
    [
        ("What is the chemical symbol of the element that makes up most of the Sun?",
         ["What is the element that makes up most of the Sun?",
          "What is the chemical symbol of #1?"]),
        ("Who is the spouse of the director who made Titanic?",
         ["Who is the director who made Titanic?", "Who is the spouse of #1?"]),
        ("What was the birthplace of the man whom Napoleon exiled?",
         ["Who was the man whom Napoleon exiled?", "What was the birthplace of #1?"]),
        ("What is the capital of the country where the Eiffel Tower is?",
         ["What is the country where the Eiffel Tower is?", "What is the capital of #1?"]),
        ("Which is the currency of the country which borders Chile and Peru?",
         ["What is the country which borders Chile and Peru?", "Which is the currency of #1?"]),
        # the last "of" before the relative word: the capital's population, of the country
        ("What is the population of the capital of the country that hosted the Olympics?",
         ["What is the country that hosted the Olympics?",
          "What is the population of the capital of #1?"]),
        ("what   is the main function of the organelle that   makes ATP ?",
         ["What is the organelle that makes ATP?", "What is the main function of #1?"]),
    ],
)  # fmt: skip
def test_a_described_things_attribute_becomes_two_steps(question: str, steps: list[str]) -> None:
    assert split_chain(question) == steps


@pytest.mark.parametrize(
    "question",
    [
        "What is the chemical formula of glucose?",  # no description
        "Which element makes up most of the Sun?",  # one step
        "What is the number of bones that an adult human has?",  # a count over the things
        "What is the sum of the numbers that divide 12?",
        "What is the name of the man who painted the Mona Lisa?",  # his answer is his name
        "What is the kind of animal that lays eggs?",
        "What is the mass of the 2 stones that fell?",  # a digit: arithmetic is left alone
        "What is the color of the car that (A) is red (B) is blue?",  # options
        "Passage: the man who came. What is the age of the man who came?",  # two sentences
        "What is the capital of the country that?",  # no clause
        "What is the capital of the big old red country that borders Peru?",  # a long thing
        "What is the color of it that shines?",
        "What is the capital of the country that borders Peru",  # not a question
        "Tell me the capital of the country that borders Peru?",
        "What is the capital of the country that borders Peru, and " + "very " * 30 + "big?",
    ],
)
def test_one_step_questions_are_left_alone(question: str) -> None:
    assert split_chain(question) is None


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(chain_rule).failed == 0


def test_the_graph_is_renumbered_and_only_lone_sub_queries_split() -> None:
    sun = "What is the chemical symbol of the element that makes up most of the Sun?"
    graph = QueryGraph(
        (
            SubQuery(1, "Who wrote Hamlet?"),
            SubQuery(2, sun),
            SubQuery(3, "Where was #1 born?", (1,)),
            SubQuery(4, "What is the capital of the country where #3 is?", (3,)),
            SubQuery(5, "What is the capital of the country where the Nile ends?", (1,)),
        )
    )
    chained, split = split_chains(graph)
    assert split == (2,)  # 5 has a parent, 4 a #k: part of a chain already
    assert [(sq.id, sq.text, sq.parents) for sq in chained] == [
        (1, "Who wrote Hamlet?", ()),
        (2, "What is the element that makes up most of the Sun?", ()),
        (3, "What is the chemical symbol of #2?", (2,)),
        (4, "Where was #1 born?", (1,)),
        (5, "What is the capital of the country where #4 is?", (4,)),
        (6, "What is the capital of the country where the Nile ends?", (1,)),
    ]
    unchanged = QueryGraph.single("Who wrote Hamlet?")
    assert split_chains(unchanged) == (unchanged, ())


def test_splits_stop_at_the_sub_query_limit() -> None:
    sun = "What is the chemical symbol of the element that makes up most of the Sun?"
    graph = QueryGraph((SubQuery(1, sun), SubQuery(2, sun.replace("Sun", "Moon"))))
    chained, split = split_chains(graph, max_sub_queries=3)
    assert split == (1,) and len(chained) == 3
    assert split_chains(graph, max_sub_queries=2) == (graph, ())


def test_where_the_rule_fires_on_real_questions_their_gold_is_a_chain(data_dir: Path) -> None:
    """On MuSiQue and Break (each question one multi-hop question) it fires on 114 of 2,417
    and 4 of 1,746, every one a question whose gold has two or more steps, and moves their
    sub-query F1 from the whole question's 0.336 to 0.578 (MuSiQue; Break 0.512 to 0.823).
    StrategyQA's yes/no questions: 0 of 2,061."""
    metrics = pytest.importorskip(
        "compllm_graph.decomposer.metrics", reason="decomposition F1 needs numpy and scipy"
    )
    files = default_files(data_dir)
    for name, (least, most) in {
        "musique": (100, 130),
        "break": (3, 6),
        "strategyqa": (0, 2),
    }.items():
        fired = [
            (e, split)
            for e in load_examples(files[name])
            if (split := split_chains(QueryGraph.single(e.question))[1])
        ]
        assert least <= len(fired) <= most, (name, len(fired))
        assert all(len(e.graph) >= 2 for e, _ in fired), name
        if fired:
            whole = [metrics.score_graph(QueryGraph.single(e.question), e.graph) for e, _ in fired]
            rule = [
                metrics.score_graph(split_chains(QueryGraph.single(e.question))[0], e.graph)
                for e, _ in fired
            ]
            gain = sum(r.subquery_f1 - w.subquery_f1 for r, w in zip(rule, whole)) / len(fired)
            assert gain > 0.2, (name, gain)


def test_the_rule_almost_never_fires_on_single_steps(data_dir: Path) -> None:
    """Gold steps that need no other (no parent, no `#k`): measured 0 of 2,768 (MuSiQue), 0 of
    2,353 (Break), 2 of 3,349 (StrategyQA, "the wonder of the ancient world that is still
    intact", whose clause belongs to "wonder")."""
    files = default_files(data_dir)
    for name in ("musique", "break", "strategyqa"):
        steps = [
            sq.text
            for e in load_examples(files[name])
            for sq in e.graph
            if not sq.parents and "#" not in sq.text
        ]
        fired = [s for s in steps if split_chain(s) is not None]
        assert len(fired) <= 0.001 * len(steps), (name, fired)


def test_the_rule_splits_no_part_of_the_easy_tier(data_dir: Path) -> None:
    """The tier as the answer tables build it (`compllm eval benchmarks --tier easy`)."""
    pytest.importorskip("faiss", reason="building the easy tier needs the [router] extra")
    files = build_benchmarks(data_dir, 300, 200, tier="easy")
    for name in ("easy-p2", "easy-all2", "easy-p3", "easy-all3"):
        parts = [part["question"] for record in files[name] for part in record["parts"]]
        assert len(parts) >= 600, name
        assert not [p for p in parts if split_chain(p) is not None], name
