"""The aggregator's answer under `check_aggregate`: a reducer that restates the question, or
leaves out a part's answer, gives way to the parts."""

from compllm_graph import create_compllm_graph
from tests.fakes import FakeChat, decomposer, keyword_router

ROUTER = keyword_router({"chem": "chemistry", "bio": "biology"})


ECHO_QUERY = (
    "I have two questions. First: which metal rusts when it is left in wet air for a week? "
    "Options: (A) gold; (B) iron. Second: which gas do plants take in to make their food?"
)


def _reduced(aggregator_reply: str, chemistry_reply: str = "The answer is (B) iron.") -> dict:
    graph = create_compllm_graph(
        decomposer=decomposer("<q>chem a</q><q>bio c</q>"),
        experts={
            "chemistry": FakeChat(reply=lambda m: chemistry_reply),
            "biology": FakeChat(reply=lambda m: "Carbon dioxide."),
        },
        router=ROUTER,
        base=FakeChat(),
        aggregator=FakeChat(reply=lambda m: aggregator_reply),
        check_aggregate=True,
    ).compile()
    return graph.invoke({"query": ECHO_QUERY})


def test_a_reducer_that_restates_the_question_gives_way_to_the_parts_answers():
    out = _reduced(f"{ECHO_QUERY[:150]} Carbon dioxide.")
    assert out["answer"] == "First part: The answer is (B) iron.\nSecond part: Carbon dioxide."
    assert "restated the question" in out["fallback_reason"]


def test_a_reducer_may_quote_what_a_part_answered_even_when_the_question_holds_it():
    stem = "which metal rusts when it is left in wet air for a week"
    chemistry = f"Asked {stem}: (B) iron."
    out = _reduced(f"Asked {stem}: (B) iron; and carbon dioxide.", chemistry_reply=chemistry)
    assert out["answer"] == f"Asked {stem}: (B) iron; and carbon dioxide."
    assert out["fallback_reason"] is None


LONG = "(D) no two electrons pair up while an empty orbital of the same energy is available"


def test_a_reducer_that_cuts_a_long_option_short_gives_way_to_the_parts():
    out = _reduced(
        "It is (D) no two electrons pair up, and carbon dioxide.",
        chemistry_reply=f"The answer is {LONG}.",
    )
    assert out["answer"] == f"First part: The answer is {LONG}.\nSecond part: Carbon dioxide."
    assert "left out the answer of sub-query 1" in out["fallback_reason"]


def test_a_reducer_that_keeps_every_parts_answer_stands():
    out = _reduced("Iron rusts: (B) iron. Plants take in carbon dioxide.")
    assert out["answer"] == "Iron rusts: (B) iron. Plants take in carbon dioxide."
    assert out["fallback_reason"] is None
