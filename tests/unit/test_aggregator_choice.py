"""A user's aggregator is the answer unless they ask for the completeness check; the check reads
words on their boundaries and numbers as numbers; the reducer's own text is never lost."""

import pytest

from compllm_graph import create_compllm_graph
from compllm_graph.nodes.aggregate import mentions, tokens
from tests.fakes import FakeChat, decomposer, keyword_router

ROUTER = keyword_router({"maths": "mathematics", "geo": "geography"})


def _graph(aggregator_reply: str, *, check: bool = False):
    return create_compllm_graph(
        decomposer=decomposer("<q>maths: how many legs has a spider?</q><q>geo: capital?</q>"),
        experts={
            "mathematics": FakeChat(reply=lambda m: "The answer is 8."),
            "geography": FakeChat(reply=lambda m: "The capital of France is Paris."),
        },
        router=ROUTER,
        base=FakeChat(),
        aggregator=FakeChat(reply=lambda m: aggregator_reply),
        check_aggregate=check,
    ).compile()


def test_a_users_aggregator_paraphrase_is_the_answer_by_default():
    graph = create_compllm_graph(
        decomposer=decomposer("<q>maths: legs?</q><q>geo: capital?</q>"),
        experts={
            "mathematics": FakeChat(reply=lambda m: "The answer is 8."),
            "geography": FakeChat(),
        },
        router=ROUTER,
        base=FakeChat(),
        aggregator=FakeChat(reply=lambda m: "Eight, and the capital is Paris."),
    ).compile()  # no check_aggregate: the default
    out = graph.invoke({"query": "legs and capital?"})
    assert out["answer"] == "Eight, and the capital is Paris."
    assert out["fallback_reason"] is None
    assert out["aggregator_reply"] == "Eight, and the capital is Paris."


def test_even_a_wrong_reply_stands_when_the_check_is_off():
    out = _graph("18 and Parisian").invoke({"query": "legs and capital?"})
    assert out["answer"] == "18 and Parisian"


def test_the_check_keeps_a_paraphrase_that_states_every_answer():
    out = _graph("Eight, and the capital is Paris.", check=True).invoke({"query": "q?"})
    assert out["answer"] == "Eight, and the capital is Paris."
    assert out["fallback_reason"] is None


def test_the_check_replaces_a_reply_whose_answers_only_match_as_substrings():
    out = _graph("18 and Parisian", check=True).invoke({"query": "q?"})
    assert (
        out["answer"]
        == "First part: The answer is 8.\nSecond part: The capital of France is Paris."
    )
    assert "left out the answer of sub-query 1, 2" in out["fallback_reason"]
    assert out["aggregator_reply"] == "18 and Parisian", "the reducer's own text is kept"


@pytest.mark.parametrize(
    ("text", "answer", "expected"),
    [
        ("It is 8.", "8", True),
        ("It is 18.", "8", False),
        ("Eight legs.", "8", True),
        ("It costs 8.00 dollars", "8", True),
        ("1,000 people", "1000", True),
        ("twenty-one", "21", True),
        ("twenty one", "21", True),
        ("Parisian food", "Paris", False),
        ("It is (B) iron.", "(B) iron", True),
        ("It is (B) ironing.", "(B) iron", False),
        ("C6H12O6 is glucose", "C6H12O6", True),
        ("The answer is 3.5 km", "3.50", True),
        ("The answer is 35 km", "3.5", False),
    ],
)
def test_mentions_reads_words_on_boundaries_and_numbers_as_numbers(text, answer, expected):
    assert mentions(text, answer) is expected


def test_tokens_leave_punctuation_out_and_canonicalise_numbers():
    assert tokens("(B) Iron, 8.50 and 1,200!") == ["b", "iron", "8.5", "and", "1200"]
