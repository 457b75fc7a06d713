"""Bad input and a failing router: the graph cleans or rejects the question, and routes to base.

Issue 35, item 3: a lone surrogate in the question crashed the route node (MiniLM's tokenizer
raises), a blank or non-string question and messages ending in an AIMessage gave no clear error,
and on a checkpointed thread the previous turn's question was answered again.
"""

import os

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import StateGraph

from compllm_graph import create_compllm_graph
from compllm_graph.types import Route, clean_text
from tests.fakes import FakeChat
from tests.unit.test_graph import ROUTER, build, experts

ARGV_BYTES = os.fsdecode(b"\xff\xfe What is H2O?")
"""How Python hands `compllm ask $'\\xff\\xfe What is H2O?'` over: lone surrogates."""


def tokenizing_router(seen: list[str] | None = None):
    """`ROUTER` behind a tokenizer: raises as MiniLM's does on text UTF-8 cannot encode."""

    def route(texts: list[str]) -> list[Route]:
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise TypeError("TextEncodeInput must be Union[TextInputSequence, ...]") from None
        if seen is not None:
            seen.extend(texts)
        return ROUTER(texts)

    return route


def echo_decomposer() -> FakeChat:
    """A decomposer that makes the question its one sub-query, `chem` routing it to chemistry."""

    def reply(messages: list[BaseMessage]) -> str:
        return f"<q>chem {messages[-1].content}</q>"

    return FakeChat(label="decomposer", reply=reply)


def echo_graph(router=ROUTER, decomposer_: FakeChat | None = None) -> StateGraph:
    """The uncompiled graph of fakes with `echo_decomposer` (or `decomposer_`) and `router`."""
    return create_compllm_graph(
        decomposer=decomposer_ or echo_decomposer(),
        experts=experts(),
        router=router,
        base=FakeChat(label="base"),
    )


def raising_router(texts: list[str]) -> list[Route]:
    """A router whose embedder rejects every text."""
    raise TypeError("TextEncodeInput must be Union[TextInputSequence, ...]")


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("\ud800 What is H2O?", "\ufffd What is H2O?"),
        (ARGV_BYTES, "\ufffd\ufffd What is H2O?"),
        ("\ud83d\ude00 pair", "\U0001f600 pair"),  # a surrogate pair is the character it encodes
        ("café 😀 \x00 ok", "café 😀 \x00 ok"),
    ],
)
def test_clean_text_replaces_lone_surrogates_only(text, cleaned):
    assert clean_text(text) == cleaned


@pytest.mark.parametrize(
    ("query", "cleaned"),
    [("\ud800 What is H2O?", "\ufffd What is H2O?"), (ARGV_BYTES, "\ufffd\ufffd What is H2O?")],
)
def test_a_question_with_lone_surrogates_is_cleaned_and_answered(query, cleaned):
    seen: list[str] = []
    out = echo_graph(tokenizing_router(seen)).compile().invoke({"query": query})
    assert out["query"] == cleaned
    assert seen == [f"chem {cleaned}"]
    (part,) = out["sub_answers"]
    assert (part["expert"], part["answer"]) == ("chemistry", f"chemistry answer to: chem {cleaned}")
    assert out["answer"] and out["fallback_reason"] is None


def test_a_human_message_with_a_lone_surrogate_is_cleaned_and_answered():
    graph = echo_graph(tokenizing_router()).compile()
    out = graph.invoke({"messages": [HumanMessage("\udcff H2O?")]})
    assert out["query"] == "\ufffd H2O?"
    assert out["sub_answers"][0]["expert"] == "chemistry"
    assert out["messages"][-1].content == out["answer"]


@pytest.mark.parametrize("query", [42, b"What is H2O?", ["What is H2O?"]])
def test_a_query_that_is_not_a_string_is_a_clear_error(query):
    with pytest.raises(ValueError, match=f"query must be a string, got {type(query).__name__}"):
        build().invoke({"query": query})


@pytest.mark.parametrize(
    "inputs",
    [{"query": ""}, {"query": "  \n\t"}, {"messages": [HumanMessage("   ")]}],
)
def test_an_empty_or_whitespace_question_is_a_clear_error(inputs):
    decomposer_ = echo_decomposer()
    with pytest.raises(ValueError, match="is empty or only whitespace"):
        echo_graph(decomposer_=decomposer_).compile().invoke(inputs)
    assert decomposer_.calls == []


@pytest.mark.parametrize(
    "messages",
    [
        [AIMessage("Hello! Ask me anything.")],
        [HumanMessage("What is H2O?"), AIMessage("Water.")],
    ],
)
def test_messages_that_end_in_an_ai_message_are_a_clear_error(messages):
    with pytest.raises(ValueError, match="the last message must be the question, a HumanMessage"):
        build().invoke({"messages": messages})


def test_a_query_beside_messages_that_end_in_an_ai_message_is_an_error_too():
    # the messages win, as they do when they end in a HumanMessage; `query` is not a way round
    with pytest.raises(ValueError, match="'query' is read only when there are no messages"):
        build().invoke({"query": "What is H2O?", "messages": [AIMessage("Hi.")]})


def test_a_thread_ending_in_an_ai_message_does_not_answer_the_previous_question_again():
    decomposer_ = echo_decomposer()
    graph = echo_graph(decomposer_=decomposer_).compile(checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "chat"}}
    graph.invoke({"messages": [HumanMessage("first?")]}, config)
    with pytest.raises(ValueError, match="not AIMessage"):
        graph.invoke({"messages": [AIMessage("Thanks, anything else?")]}, config)
    assert decomposer_.calls == ["first?"]
    out = graph.invoke({"messages": [HumanMessage("second?")]}, config)
    assert out["query"] == "second?" and decomposer_.calls == ["first?", "second?"]
    assert isinstance(out["messages"][-1], AIMessage)


@pytest.mark.parametrize("scheduler", ["eager", "waves"])
async def test_a_router_that_raises_sends_every_sub_query_to_base_with_the_reason(scheduler):
    graph = build(router=raising_router, scheduler=scheduler)
    out = await graph.ainvoke({"query": "three things?"})
    reason = "the router raised TypeError: TextEncodeInput must be Union"
    assert [a["expert"] for a in out["sub_answers"]] == [None, None, None]
    assert all(a["answer"].startswith("base answer to") for a in out["sub_answers"])
    assert out["answer"]
    assert reason in out["fallback_reason"]
    assert out["fallback_reason"].count(reason) == 1  # once, not once per sub-query
    assert all(reason in r["fallback_reason"] for r in out["routes"])


def test_the_route_events_carry_the_routers_failure():
    events = build(router=raising_router).stream({"query": "q"}, stream_mode="custom")
    routes = [e for e in events if e["event"] == "route"]
    assert len(routes) == 3
    assert all(e["expert"] is None for e in routes)
    assert all(e["fallback_reason"].startswith("the router raised TypeError") for e in routes)


def test_a_router_failing_on_the_ancestors_texts_keeps_the_first_routes():
    calls: list[list[str]] = []

    def router(texts: list[str]) -> list[Route]:
        calls.append(texts)
        if len(calls) > 1:
            raise RuntimeError("index unavailable")
        return ROUTER(texts)

    out = build(
        "<q>math: 5 hours at 60 mph</q><q>How far?</q><dep>1->2</dep>", router=router
    ).invoke({"query": "q"})
    assert [a["expert"] for a in out["sub_answers"]] == ["mathematics", None]
    first, second = out["routes"]
    assert first["fallback_reason"] is None
    assert second["fallback_reason"].startswith("the router raised RuntimeError: index")
    assert "index unavailable" in out["fallback_reason"]


def test_the_decomposers_and_the_routers_reasons_are_both_kept():
    broken = FakeChat(label="decomposer", fail_times=99)
    graph = echo_graph(raising_router, decomposer_=broken).compile()
    reason = graph.invoke({"query": "What is H2O?"})["fallback_reason"]
    assert reason.index("the decomposer raised") < reason.index("the router raised")
