"""The answer scorer on hand-made answers."""

from __future__ import annotations

import pytest

from compllm_graph.evaluation.scoring import Score, accuracy, part_right, score_question

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
