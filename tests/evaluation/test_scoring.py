"""The answer scorer on hand-made answers."""

from __future__ import annotations

import pytest

from compllm_graph.evaluation.scoring import (
    Score,
    accuracy,
    answer_key,
    part_right,
    score_question,
)

CHOICE = {"answer": "mitochondria", "choices": ["nucleus", "mitochondria", "ribosome", "golgi"]}
NUMBER = {"answer": "18", "choices": None}
LABEL = {"answer": "yes", "choices": None}


@pytest.mark.parametrize(
    ("answer", "part", "right"),
    [
        ("Most ATP is made in the mitochondria.", CHOICE, True),
        ("The answer is (B).", CHOICE, True),
        ("option B", CHOICE, True),
        ("(B) nucleus", CHOICE, False),  # the gold letter with another option's text
        ("mitochondria or the nucleus", CHOICE, False),
        ("(B) or (C)", CHOICE, False),
        ("She makes $18 every day.", NUMBER, True),
        ("She makes 18.00 dollars.", NUMBER, True),
        ("She makes $1,800.", NUMBER, False),
        ("about 17.9", NUMBER, False),
        ("Yes, it does.", LABEL, True),
        ("Yes or no, maybe.", LABEL, False),
        ("No.", LABEL, False),
    ],
)
def test_parts(answer: str, part: dict, right: bool) -> None:
    assert part_right(answer, part) is right


def test_numbers_with_commas_and_units() -> None:
    assert part_right("It costs $1,250.50 in total.", {"answer": "1250.5", "choices": None})


def test_a_question_is_right_only_when_every_part_is() -> None:
    both = score_question("mitochondria; she makes 18", [CHOICE, NUMBER])
    one = score_question("mitochondria; she makes 17", [CHOICE, NUMBER])
    assert both.right and not one.right and one.parts == (True, False)
    summary = accuracy([both, one])
    assert summary == {"accuracy": 0.5, "part_accuracy": 0.75, "n": 2, "parts": 4}
    assert accuracy([Score((True,))])["accuracy"] == 1.0


def test_a_gold_answer_outside_the_choices_is_an_error() -> None:
    with pytest.raises(ValueError, match="not among the choices"):
        part_right("x", {"answer": "cytoplasm", "choices": ["nucleus", "golgi"]})


@pytest.mark.parametrize(
    ("answer", "choices", "key"),
    [
        ("mitochondria", CHOICE["choices"], "(B)"),
        ("(B) mitochondria", CHOICE["choices"], "(B)"),
        ("(B)", CHOICE["choices"], "(B)"),
        ("B", CHOICE["choices"], "(B)"),
        ("option C", CHOICE["choices"], "(C)"),
        ("(F)", CHOICE["choices"], None),  # no such option
        ("the nucleus or the ribosome", CHOICE["choices"], None),
        ("I do not know", CHOICE["choices"], None),
        ("1,200", None, "1200"),
        ("$1200.00 a week", None, "1200"),
        ("2.5 moles", None, "2.5"),
        ("3 + 4 = 7", None, "7"),
        ("Yes, 6 of them", None, "yes"),
        ("yes or no", None, None),
        ("(B)", None, "(B)"),
        ("I do not know", None, None),
    ],
)
def test_the_answer_a_reply_commits_to(
    answer: str, choices: list[str] | None, key: str | None
) -> None:
    assert answer_key(answer, choices) == key


@pytest.mark.parametrize(
    ("first", "second", "part"),
    [("mitochondria", "(B)", CHOICE), ("18", "18.00", NUMBER), ("Yes.", "yes", LABEL)],
)
def test_keys_agree_where_the_scorer_agrees(first: str, second: str, part: dict) -> None:
    assert answer_key(first, part["choices"]) == answer_key(second, part["choices"])
    assert part_right(first, part) and part_right(second, part)
