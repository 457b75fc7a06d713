"""The aggregator's answer: a reducer that restates the question gives way to the parts."""

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
    ).compile()
    return graph.invoke({"query": ECHO_QUERY})


def test_a_reducer_that_restates_the_question_gives_way_to_the_parts_answers():
    out = _reduced(f"{ECHO_QUERY[:150]} Carbon dioxide.")
    assert out["answer"] == "The answer is (B) iron. Carbon dioxide."
    assert "restated the question" in out["fallback_reason"]


def test_a_reducer_may_quote_what_a_part_answered_even_when_the_question_holds_it():
    stem = "which metal rusts when it is left in wet air for a week"
    chemistry = f"Asked {stem}: (B) iron."
    out = _reduced(f"Asked {stem}: (B) iron; and carbon dioxide.", chemistry_reply=chemistry)
    assert out["answer"] == f"Asked {stem}: (B) iron; and carbon dioxide."
    assert out["fallback_reason"] is None
