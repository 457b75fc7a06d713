"""Decomposition F1 on hand-made cases."""

from __future__ import annotations

import pytest

from compllm_graph.decomposer.metrics import (
    UNPARSED,
    aggregate,
    score_graph,
    score_text,
    token_f1,
)
from compllm_graph.query_graph import parse_decomposition

GOLD = parse_decomposition(
    "<q>Who directed Titanic?</q><q>When was #1 born?</q><q>Where was #1 born?</q>"
    "<dep>1->2, 1->3</dep>"
)


def test_token_f1() -> None:
    assert token_f1("Who directed Titanic?", "who directed titanic") == 1.0
    assert token_f1("", "") == 1.0
    assert token_f1("x", "") == 0.0
    assert token_f1("a b", "c d") == 0.0
    # 2 of 3 predicted tokens right, 2 of 4 gold tokens found: P=2/3, R=1/2.
    assert token_f1("when was #1", "when is #1 born") == pytest.approx(2 * (2 / 3) * 0.5 / (7 / 6))


def test_perfect_prediction_in_another_order() -> None:
    shuffled = parse_decomposition(
        "<q>Who directed Titanic?</q><q>Where was #1 born?</q><q>When was #1 born?</q>"
        "<dep>1->2, 1->3</dep>"
    )
    score = score_graph(shuffled, GOLD)
    assert score.subquery_f1 == 1.0 and score.edge_f1 == 1.0
    assert score.count_correct and score.parsed


def test_partial_prediction() -> None:
    # Two sub-queries instead of three, one edge missing, one sub-query worded differently.
    predicted = parse_decomposition(
        "<q>Who directed Titanic?</q><q>When was the director born?</q><dep>1->2</dep>"
    )
    score = score_graph(predicted, GOLD)
    second = token_f1("When was the director born?", "When was #1 born?")
    matched = 1.0 + second
    precision, recall = matched / 2, matched / 3
    assert score.subquery_f1 == pytest.approx(2 * precision * recall / (precision + recall))
    assert score.edge_f1 == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # 1 of 1 right, 1 of 2 found
    assert not score.count_correct


def test_wrong_edges_under_the_matching() -> None:
    reversed_chain = parse_decomposition(
        "<q>Who directed Titanic?</q><q>When was #1 born?</q><q>Where was #1 born?</q>"
        "<dep>2->3</dep>"
    )
    score = score_graph(reversed_chain, GOLD)
    # Edges: 1->2, 1->3 from the #1 references are right; 2->3 is extra.
    assert score.edge_f1 == pytest.approx(2 * (2 / 3) * 1.0 / (5 / 3))


def test_empty_and_unparseable_outputs_score_zero() -> None:
    for output in ("", "I cannot decompose this.", "<q>a</q><dep>1->2</dep>"):
        assert score_text(output, GOLD) == UNPARSED


def test_a_long_part_of_a_long_question_is_scored_not_refused() -> None:
    part = "Which option? " + "(A) a long option; " * 40
    output = f"<q>{part}</q><dep></dep>"
    gold = parse_decomposition(output, max_chars=2000)
    assert score_text(output, gold) == UNPARSED  # over 500 characters, for an unknown question
    assert score_text(output, gold, question=part).subquery_f1 == 1.0


def test_no_edges_on_either_side_is_a_perfect_edge_score() -> None:
    single = parse_decomposition("<q>What is 2+2?</q><dep></dep>")
    assert score_graph(single, single).edge_f1 == 1.0


def test_aggregate() -> None:
    perfect = score_graph(GOLD, GOLD)
    report = aggregate([perfect, UNPARSED])
    assert report.as_dict() == {
        "subquery_f1": 0.5,
        "edge_f1": 0.5,
        "count_accuracy": 0.5,
        "parse_rate": 0.5,
        "n": 2,
    }
    with pytest.raises(ValueError):
        aggregate([])


def test_table_format() -> None:
    from compllm_graph.evaluation.decomposition_table import format_table

    perfect = aggregate([score_graph(GOLD, GOLD)])
    lines = format_table({"musique": {"few-shot": aggregate([UNPARSED]), "SFT": perfect}})
    assert lines.splitlines()[2] == "| musique | few-shot | 1 | 0.000 | 0.000 | 0.000 | 0.000 |"
    assert lines.splitlines()[3] == "| musique | SFT | 1 | 1.000 | 1.000 | 1.000 | 1.000 |"
