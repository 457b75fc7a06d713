"""`aggregate=`: independent parts are joined with no reducer call under "auto"; the reducer runs
where parts depend on each other, under "always", and for an aggregator the caller passed."""

import pytest

from compllm_graph import create_compllm_graph
from compllm_graph.nodes.aggregate import joined_parts, make_aggregate_node, part_name
from compllm_graph.state import SubAnswer
from tests.fakes import FakeChat, decomposer, keyword_router

ROUTER = keyword_router({"chem": "chemistry", "bio": "biology"})
INDEPENDENT = "<q>chem: which metal rusts?</q><q>bio: which gas do plants take in?</q>"
DEPENDENT = "<q>chem: which metal rusts?</q><q>bio: where is #1 in the body?</q><dep>1->2</dep>"
JOINED = "First part: Iron.\nSecond part: Carbon dioxide."


QUERY = "Which metal rusts, and which gas do plants take in?"


def _run(decomposition: str, query: str = QUERY, **options):
    """One query through a graph whose experts answer "Iron." and "Carbon dioxide."."""
    base = options.pop("base", FakeChat(label="base"))
    graph = create_compllm_graph(
        decomposer=decomposer(decomposition),
        experts={
            "chemistry": FakeChat(reply=lambda m: "Iron."),
            "biology": FakeChat(reply=lambda m: "Carbon dioxide."),
        },
        router=ROUTER,
        base=base,
        **options,
    ).compile()
    return graph.invoke({"query": query})


def _aggregator() -> FakeChat:
    return FakeChat(label="aggregator", reply=lambda m: "Iron, and carbon dioxide.")


def test_auto_joins_independent_parts_naming_each_and_never_calls_the_aggregator():
    aggregator = _aggregator()
    out = _run(INDEPENDENT, aggregator=aggregator, aggregate="auto")
    assert aggregator.calls == []
    assert out["answer"] == JOINED
    assert out["aggregation"] == "joined"
    assert out["aggregator_reply"] is None and out["fallback_reason"] is None


def test_without_an_aggregator_the_default_joins_independent_parts_without_calling_base():
    base = FakeChat(label="base")
    out = _run(INDEPENDENT, base=base)
    assert base.calls == [], "base reduces only when the caller asks or parts depend"
    assert out["answer"] == JOINED and out["aggregation"] == "joined"


def test_auto_runs_the_reducer_where_parts_depend_on_each_other():
    aggregator = _aggregator()
    out = _run(DEPENDENT, aggregator=aggregator, aggregate="auto")
    assert len(aggregator.calls) == 1
    assert out["answer"] == "Iron, and carbon dioxide."
    assert out["aggregation"] == "reducer"


def test_an_aggregator_the_caller_passed_runs_by_default():
    aggregator = _aggregator()
    out = _run(INDEPENDENT, aggregator=aggregator)
    assert len(aggregator.calls) == 1
    assert out["answer"] == "Iron, and carbon dioxide." and out["aggregation"] == "reducer"


def test_always_runs_the_reducer_on_independent_parts():
    base = FakeChat(label="base", reply=lambda m: "Iron; carbon dioxide.")
    out = _run(INDEPENDENT, base=base, aggregate="always")
    assert len(base.calls) == 1 and "Here are answers to the parts" in base.calls[0]
    assert out["answer"] == "Iron; carbon dioxide." and out["aggregation"] == "reducer"


def test_the_check_still_applies_when_the_reducer_runs_under_auto():
    dropped = FakeChat(label="aggregator", reply=lambda m: "Carbon dioxide.")
    out = _run(DEPENDENT, aggregator=dropped, aggregate="auto", check_aggregate=True)
    assert out["answer"] == JOINED
    assert out["aggregation"] == "replaced"
    assert "left out the answer of sub-query 1" in out["fallback_reason"]
    assert out["aggregator_reply"] == "Carbon dioxide."


def test_a_single_rewritten_part_is_its_own_answer_under_auto_but_reduced_under_always():
    single, query = "<q>chem: which metal rusts?</q>", "Tell me the metal that rusts."
    auto = _aggregator()
    out = _run(single, query, aggregator=auto, aggregate="auto")
    assert auto.calls == [] and out["answer"] == "Iron." and out["aggregation"] == "joined"
    always = _aggregator()
    assert _run(single, query, aggregator=always)["aggregation"] == "reducer"
    assert len(always.calls) == 1


def test_an_unanswered_part_keeps_the_others_named_by_position():
    out = _run(
        "<q>chem: metal?</q><q>other: unknown?</q><q>bio: gas?</q>",
        base=FakeChat(label="base", fail_times=10),
        aggregate="auto",
    )
    assert out["answer"].startswith("First part: Iron.\nThird part: Carbon dioxide.")
    assert "(Could not answer: [2] other: unknown?.)" in out["answer"]
    assert out["aggregation"] == "joined"


@pytest.mark.parametrize("bad", ["never", "Auto", ""])
def test_an_unknown_aggregate_option_is_refused_at_build_time(bad):
    with pytest.raises(ValueError, match="aggregate must be one of"):
        create_compllm_graph(
            decomposer=decomposer(INDEPENDENT),
            experts={},
            router=ROUTER,
            base=FakeChat(),
            aggregate=bad,
        )
    with pytest.raises(ValueError, match="aggregate must be one of"):
        make_aggregate_node(FakeChat(), mode=bad)


def test_streams_say_the_parts_were_joined_without_a_reducer_call():
    graph = create_compllm_graph(
        decomposer=decomposer(INDEPENDENT),
        experts={"chemistry": FakeChat(), "biology": FakeChat()},
        router=ROUTER,
        base=FakeChat(),
        aggregate="auto",
    ).compile()
    custom = list(graph.stream({"query": "q"}, stream_mode="custom"))
    assert custom[-1]["event"] == "answer" and custom[-1]["aggregation"] == "joined"
    updates = [c for c in graph.stream({"query": "q"}, stream_mode="updates") if "aggregate" in c]
    assert updates[0]["aggregate"]["aggregation"] == "joined"


def _part(sub_query: int, answer: str) -> SubAnswer:
    return {
        "sub_query": sub_query,
        "question": f"q{sub_query}",
        "answer": answer,
        "expert": None,
        "seconds": 0.0,
        "attempts": 1,
        "fallback_reason": None if answer else "failed",
    }


def test_the_join_names_parts_in_words_so_it_states_no_number_of_its_own():
    parts = [_part(i, f"a{i}") for i in range(1, 14)]
    lines = joined_parts(parts).splitlines()
    assert lines[0] == "First part: a1" and lines[11] == "Twelfth part: a12"
    assert lines[12] == "Part 13: a13", "past the ordinals, a number"
    assert joined_parts([_part(1, "Only.")]) == "Only."
    assert joined_parts([_part(1, ""), _part(2, "Two.")]) == "Two."
    assert part_name(3) == "Third part"
