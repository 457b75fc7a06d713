"""The early-stop check on a decomposer's reply (`decomposer.stopping.check_prefix`)."""

from __future__ import annotations

import doctest

import pytest

from compllm_graph.decomposer import stopping
from compllm_graph.decomposer.stopping import GAP_CHARS, check_prefix
from compllm_graph.query_graph import DecompositionError, parse_decomposition

VALID_REPLIES = [
    "<q>Who directed Titanic?</q><q>Who is the spouse of #1?</q><dep>1->2</dep>",
    "<q>What is the mass of a mole of carbon?</q><q>What is the mass of a mole of iron?</q>"
    "<q>Which is heavier: #1 or #2?</q><q>What is the boiling point of water in Kelvin?</q>"
    "<dep>1->3, 2->3</dep>",
    "<q>Is 3 < 4?</q><dep></dep>",
    "Here are the sub-questions:\n<q>a</q>\n<q>b</q>\n<dep>none</dep>",
    "<Q>a</Q><q>b<\\q><q>c</q><dep>1 -> 2</dep><dep>2→3</dep>",
    "<q>a<q>b</q><dep></dep>",  # the parser reads the second <q> as closing the first
    "1. Who was the lead actor of Titanic?\n2. In which film did #1 play a con artist?\n"
    '3. Who directed #2?\nDependency Graph: "1 -> 2 -> 3"',
]


@pytest.mark.parametrize("reply", VALID_REPLIES)
def test_no_prefix_of_a_valid_reply_is_stopped(reply: str) -> None:
    parse_decomposition(reply)  # the cases are valid to the parser
    for end in range(len(reply) + 1):
        verdict = check_prefix(reply[:end])
        assert verdict.status == "open", (reply[:end], verdict)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("<q>a</q> and then <q>b</q>", "text outside the tags: 'and then'"),
        ("<q>a</q><answer>", "'<answer>' is not a <q> or <dep> tag"),
        ("<q>a</q><x", "'<x' is not a <q> or <dep> tag"),
        ("<q>a</q></dep>", "</dep> closes no element"),
        ("<dep>1->2</dep>", "<dep> before any <q>"),
        ("<q>a</q><q> </q>", "sub-query 2 is empty"),
        ("<q>Who won?</q><q>b</q><q>who  WON</q>", "sub-query 3 repeats sub-query 1"),
        ("<q>a</q><q>b</q><q>c</q><q>", "more than 3 sub-queries"),
        ("<q>a</q><q>b</q><dep>1->3, ", "dependency '1->3' names sub-query 3, but only 2 exist"),
        ("<q>a</q><q>b</q><dep>2->2</dep>", "dependency '2->2' makes a sub-query depend on itself"),
        ("<q>a</q><q>b</q><dep>one -> two,", "cannot read the dependency 'one -> two'"),
        ("<q>a</q><q>b</q><dep><q>", "<q> inside <dep>"),
        ("<q>a</q>" + " " * (GAP_CHARS + 1), f"{GAP_CHARS + 1} blank characters between tags"),
        ("<q>a</q><q>b</q><dep>" + " " * 33, "a dependency item ran past 32 characters"),
        ("Sure! " * 20, "no sub-query began within 100 characters"),
        ("1. a\n3. b\n", "item 3 follows item 1: the list must count 1, 2, 3"),
        ("1. a\n2. A?\n", "sub-query 2 repeats sub-query 1"),
        ("1. a\n2. b\n3. c\n4. d\n", "more than 3 sub-queries"),
        ("1. a\n2. " + "b" * 101, "a line of the list ran past 100 characters"),
    ],
)
def test_a_reply_that_cannot_become_a_decomposition_is_stopped(reply: str, reason: str) -> None:
    verdict = check_prefix(reply, max_sub_queries=3, max_chars=100)
    assert (verdict.status, verdict.reason) == ("invalid", reason)


def test_a_sub_query_that_runs_on_is_stopped_at_the_parsers_bound() -> None:
    limit = 120
    head = "<q>What is the chemical symbol of the element"
    running = head + " that makes up most of the Sun" * 10
    stop = next(end for end in range(len(running)) if check_prefix(running[:end], 12, limit).stop)
    assert stop == len("<q>") + limit + 1, "stopped as soon as the text passes the bound"
    with pytest.raises(DecompositionError, match="characters long"):
        parse_decomposition(running[:stop] + "</q><dep></dep>", max_chars=limit)
    assert "is over 120 characters long" in str(check_prefix(running, 12, limit).reason)


def test_leading_blanks_in_a_sub_query_count_too() -> None:
    assert check_prefix("<q>" + " " * (100 + GAP_CHARS + 1), 12, 100).stop
    assert not check_prefix("<q>" + " " * (100 + GAP_CHARS), 12, 100).stop


TWO = "<q>a</q><q>b</q>"
LIST = '1. a\n2. b #1\nDependency Graph: "1 -> 2"'


@pytest.mark.parametrize(
    ("reply", "kept"),
    [
        (f"{TWO}<dep>1->2</dep> I hope this helps.", f"{TWO}<dep>1->2</dep>"),
        (f"{TWO}<dep>1->2</dep><answer>", f"{TWO}<dep>1->2</dep>"),
        (f"{TWO}<dep>1->2</dep>" + " " * 40, f"{TWO}<dep>1->2</dep>"),
        (f"{TWO}<q>c</q><dep>1->2, 2->3, 1 -> 2, 1", f"{TWO}<q>c</q><dep>1->2, 2->3,"),
        (f"{TWO}<dep>1->2</dep><dep>1->2</dep>", f"{TWO}<dep>1->2</dep><dep>"),
        ("<q>a</q><dep>none, none,", "<q>a</q><dep>none,"),
        (f"{LIST}\nQuestion: c?\n1. d", LIST),
        ('1. a\n2. b\nDependency Graph:\n"1 -> 2"\nThat is all.',
         '1. a\n2. b\nDependency Graph:\n"1 -> 2"'),
    ],
)  # fmt: skip
def test_a_finished_or_looping_reply_ends_where_its_decomposition_does(
    reply: str, kept: str
) -> None:
    verdict = check_prefix(reply)
    assert verdict.status == "complete" and verdict.cut is not None
    assert reply[: verdict.cut] == kept
    parse_decomposition(kept)


def test_a_second_dep_element_is_still_read() -> None:
    reply = "<q>a</q><q>b</q><q>c</q><dep>1->2</dep><dep>2->3</dep>"
    for end in range(len(reply) + 1):
        assert check_prefix(reply[:end]).status == "open", reply[:end]
    assert parse_decomposition(reply).edges == ((1, 2), (2, 3))


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(stopping).failed == 0
