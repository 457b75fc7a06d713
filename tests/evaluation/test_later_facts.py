"""The word problems whose first part needs a number only a later part states
(`benchmarks.later_facts`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.later_facts import OTHER, classify, markdown, numbers, question_class
from compllm_graph.evaluation.benchmarks import build_benchmarks


def test_numbers_reads_numerals_and_words_only_when_asked() -> None:
    assert numbers("It costs $1,200.50 for 3 of them.") == {"1200.50", "3"}
    assert numbers("twice a dozen") == set()
    assert numbers("twice a dozen", words=True) == {"2", "12"}
    assert numbers("version2 and 7.") == {"7"}


@pytest.mark.parametrize(
    ("first", "later", "working", "expected"),
    [
        # the 8 is only in the second part
        (
            "An adult weighs 80 kg. How many adults are there?",
            ["If Jack rides with 8 other adults, by how much do they exceed 700 kg?"],
            "Jack and 8 others make 1+8=<<1+8=9>>9 adults.",
            "later",
        ),
        # 100 (a percent) is in no part
        (
            "50 students; a 20% increase. How many students were added?",
            ["How many are enrolled now?"],
            "50*20/100=<<50*20/100=10>>10 students.",
            "constant",
        ),
        # "twice" counts as the 2 of the calculation
        (
            "Ann has 6 pens and Bob twice as many. How many has Bob?",
            ["How many have they together?"],
            "6*2=<<6*2=12>>12 pens.",
            "stated",
        ),
        # a later part repeating a stated number does not make it later
        (
            "Tim grows 5 trees with 6 lemons each. How many lemons a year?",
            ["Over 10 years, how many lemons from 5 trees?"],
            "5*6=<<5*6=30>>30 lemons.",
            "stated",
        ),
    ],
)
def test_a_first_step_is_classed_by_where_its_numbers_are_stated(
    first: str, later: list[str], working: str, expected: str
) -> None:
    assert classify(first, later, working) == expected


def test_markdown_lists_each_class_and_the_differences() -> None:
    result = {
        "file": "all2",
        "sizes": {"stated": 2, "later": 1, OTHER: 1},
        "right": {"monolith": {"stated": [1, 2], "later": [1, 1]}},
        "without_later": {
            "a - b": {"difference": 0.25, "ci95": [-0.1, 0.5], "significant": False, "n": 3}
        },
    }
    text = markdown(result)
    assert "| system | stated | later | not a chain |" in text
    assert "| monolith | 1/2 | 1/1 | – |" in text
    assert "- a - b, without `later`: +25.0% [-10.0%, +50.0%] (n=3, no call)" in text


def test_the_easy_all2_questions_are_classed_from_gsm8k(data_dir: Path) -> None:
    # built as `compllm eval benchmarks --tier easy` writes it (the files are not committed)
    records = {r["id"]: r for r in build_benchmarks(data_dir, 300, 200, tier="easy")["easy-all2"]}
    classes = {qid: question_class(r, data_dir) for qid, r in records.items()}
    # the elevator (8 other adults, in the second part), a percent, and lemons a year
    assert classes["easy-all2-0-2"] == "later"
    assert classes["easy-all2-0-84"] == "constant"
    assert classes["easy-all2-0-38"] == "stated"
    # every question that is no GSM8K chain is a chemistry chain (a word problem, then an
    # element); every chain is matched to its problem
    for qid, name in classes.items():
        domains = [p["domain"] for p in records[qid]["parts"]]
        assert (name == OTHER) == (domains != ["mathematics", "mathematics"]), qid
