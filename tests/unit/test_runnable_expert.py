"""`as_expert`: a messages-state LangGraph agent called like a chat model, alone and as an
expert of the Comp-LLM graph, sync and async."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypedDict

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import Field

from compllm_graph import create_compllm_graph
from compllm_graph.models.runnable_expert import ExpertReplyError, as_expert, takes_messages
from tests.fakes import FakeChat, decomposer, keyword_router

PRODUCTS: list[tuple[int, int]] = []


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two whole numbers."""
    PRODUCTS.append((a, b))
    return a * b


class ToolCaller(BaseChatModel):
    """Calls `multiply(6, 7)` on a question, answers with the tool's result; records every
    conversation it is sent."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "tool-caller"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ToolCaller:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.seen.append(list(messages))
        last = messages[-1]
        if isinstance(last, ToolMessage):
            message = AIMessage(f"The product is {last.text}.")
        else:
            call = {"name": "multiply", "args": {"a": 6, "b": 7}, "id": "call_1"}
            message = AIMessage("", tool_calls=[call])
        return ChatResult(generations=[ChatGeneration(message=message)])


def agent(model: BaseChatModel, name: str = "calc") -> CompiledStateGraph:
    """A hand-built ReAct agent: model -> tools -> model, until the model answers."""

    def think(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", think)
    builder.add_node("tools", ToolNode([multiply]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(name=name)


def one_step(reply: Callable[[MessagesState], dict]) -> CompiledStateGraph:
    """A messages graph of one node returning `reply(state)`."""
    builder = StateGraph(MessagesState)
    builder.add_node("only", RunnableLambda(reply))
    builder.add_edge(START, "only")
    builder.add_edge("only", END)
    return builder.compile()


@pytest.fixture(autouse=True)
def _no_products() -> None:
    PRODUCTS.clear()


def test_an_agent_answers_through_its_tool_when_invoked() -> None:
    model = ToolCaller()
    reply = as_expert(agent(model)).invoke([HumanMessage("What is 6 times 7?")])
    assert isinstance(reply, AIMessage) and reply.text == "The product is 42."
    assert PRODUCTS == [(6, 7)]  # the tool really ran
    # the model saw the question, its own call and the tool's result, in order
    assert [type(m).__name__ for m in model.seen[-1]] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
    ]


async def test_an_agent_answers_through_its_tool_when_awaited() -> None:
    reply = await as_expert(agent(ToolCaller())).ainvoke([HumanMessage("What is 6 times 7?")])
    assert reply.text == "The product is 42." and PRODUCTS == [(6, 7)]


@pytest.mark.parametrize(
    "request_",
    [
        "What is 6 times 7?",
        [("human", "What is 6 times 7?")],
        ChatPromptValue(messages=[HumanMessage("What is 6 times 7?")]),
    ],
    ids=["text", "tuples", "prompt value"],
)
def test_chat_model_input_of_every_shape_reaches_the_agent(request_: Any) -> None:
    model = ToolCaller()
    assert as_expert(agent(model)).invoke(request_).text == "The product is 42."
    first = model.seen[0][0]
    assert isinstance(first, HumanMessage) and first.text == "What is 6 times 7?"


def test_the_system_prompt_and_the_question_both_reach_the_agent() -> None:
    model = ToolCaller()
    as_expert(agent(model)).invoke([SystemMessage("Be exact."), HumanMessage("6 times 7?")])
    assert [m.text for m in model.seen[0]] == ["Be exact.", "6 times 7?"]


def test_a_graph_that_stops_on_a_tool_result_is_no_answer() -> None:
    stops = one_step(
        lambda _: {
            "messages": [
                AIMessage("", tool_calls=[{"name": "multiply", "args": {}, "id": "c"}]),
                ToolMessage("42", tool_call_id="c"),
            ]
        }
    )
    with pytest.raises(ExpertReplyError, match="ended on a ToolMessage, not an answer"):
        as_expert(stops).invoke("6 times 7?")


async def test_a_graph_that_adds_nothing_is_no_answer() -> None:
    silent = one_step(lambda _: {"messages": []})
    with pytest.raises(ExpertReplyError, match="ended on a HumanMessage"):
        await as_expert(silent).ainvoke("6 times 7?")


def test_a_runnable_without_a_messages_state_is_named_in_the_error() -> None:
    wrong: RunnableLambda = RunnableLambda(lambda _: {"answer": "42"}, name="wrong_shape")
    with pytest.raises(ExpertReplyError, match="wrong_shape returned dict without a 'messages'"):
        as_expert(wrong).invoke("6 times 7?")


def test_only_runnables_are_wrapped() -> None:
    with pytest.raises(ValueError, match="takes a LangChain Runnable"):
        as_expert(lambda messages: messages)  # type: ignore[arg-type]


class Counter(TypedDict):
    count: int


def test_takes_messages_spots_compiled_messages_graphs() -> None:
    calc = agent(ToolCaller())
    counter = StateGraph(Counter)
    counter.add_node("inc", lambda s: {"count": s["count"] + 1})
    counter.add_edge(START, "inc")
    assert takes_messages(calc)
    assert takes_messages(calc.with_config(recursion_limit=10))
    assert not takes_messages(counter.compile())  # a graph, but no messages
    assert not takes_messages(ToolCaller())  # a chat model already answers with a message
    assert not takes_messages(as_expert(calc))  # wrapped once is enough


def comp_llm(calc: Any, scheduler: str = "eager", base: FakeChat | None = None) -> Any:
    """Comp-LLM on fakes: sub-query 1 goes to `calc`, 2 to chemistry, 3 (needing 1) to calc."""
    return create_compllm_graph(
        decomposer=decomposer(
            "<q>calc: what is 6 times 7?</q><q>chem: what is the formula of water?</q>"
            "<q>calc: what is #1 times 1?</q><dep>1->3</dep>"
        ),
        experts={"calc": calc, "chemistry": FakeChat(label="chem")},
        router=keyword_router({"calc": "calc", "chem": "chemistry"}),
        base=base or FakeChat(label="base"),
        scheduler=scheduler,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("scheduler", ["eager", "waves"])
def test_the_graph_wraps_a_raw_agent_and_runs_it_sync(scheduler: str) -> None:
    app = comp_llm(agent(ToolCaller()), scheduler).compile(checkpointer=InMemorySaver())
    out = app.invoke({"query": "q"}, {"configurable": {"thread_id": "1"}})
    answers = {a["sub_query"]: (a["expert"], a["answer"]) for a in out["sub_answers"]}
    assert answers == {
        1: ("calc", "The product is 42."),
        2: ("chemistry", "chem answer to: chem: what is the formula of water?"),
        3: ("calc", "The product is 42."),
    }
    assert PRODUCTS == [(6, 7), (6, 7)]


async def test_the_graph_wraps_a_raw_agent_and_runs_it_async() -> None:
    app = comp_llm(agent(ToolCaller())).compile(checkpointer=InMemorySaver())
    out = await app.ainvoke({"query": "q"}, {"configurable": {"thread_id": "1"}})
    assert [a["answer"] for a in out["sub_answers"] if a["expert"] == "calc"] == [
        "The product is 42.",
        "The product is 42.",
    ]


def test_an_agent_with_no_answer_falls_back_to_the_base_model() -> None:
    base = FakeChat(label="base")
    stops = one_step(lambda _: {"messages": [ToolMessage("42", tool_call_id="c")]})
    out = comp_llm(stops, base=base).compile().invoke({"query": "q"})
    first = out["sub_answers"][0]
    assert first["expert"] is None and first["answer"].startswith("base answer to:")
    assert "ExpertReplyError" in first["fallback_reason"]
    assert "ended on a ToolMessage" in first["fallback_reason"]
