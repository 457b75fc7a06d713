"""The decompose node: the early stop of a streamed reply, the fallback and its reason, the
and-split rule and its record in the state, and the option that turns the rule off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langgraph.graph import START, StateGraph
from pydantic import Field

from compllm_graph import create_compllm_graph
from compllm_graph.nodes.decompose import make_decompose_node
from compllm_graph.state import CompLLMState
from tests.fakes import FakeChat, decomposer, keyword_router

SUN = (
    "What is the chemical symbol of the element that makes up most of the Sun, and how many "
    "bones are in an adult human body?"
)
# The decomposer's failure modes, each as long as a 512-token reply (about 4 characters a token).
RUNAWAY = "<q>What is the chemical symbol of the element" + " that makes up most of the Sun" * 70
LOOPING = "<q>Which element makes up most of the Sun?</q>" * 45
OFF_FORMAT = "<q>Which element makes up most of the Sun?</q> The Sun is mostly hydrogen. " * 27
BLANKS = " \n" * 1100


class ScriptedStream(BaseChatModel):
    """Streams `script` in `piece`-character tokens and records how many each call sent."""

    script: str
    piece: int = 4
    sent: list[int] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-stream"

    @property
    def tokens(self) -> int:
        """Tokens in the whole script: what a reply read to its end costs."""
        return -(-len(self.script) // self.piece)

    def _pieces(self) -> list[str]:
        return [self.script[i : i + self.piece] for i in range(0, len(self.script), self.piece)]

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.sent.append(self.tokens)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.script))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        count = 0
        try:
            for piece in self._pieces():
                count += 1
                yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        finally:  # runs when the reader closes the stream early, as a local engine's does
            self.sent.append(count)

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        count = 0
        try:
            for piece in self._pieces():
                count += 1
                await asyncio.sleep(0)
                yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        finally:
            self.sent.append(count)


def graph(model: BaseChatModel, **kwargs: Any) -> Any:
    """The graph under test; the chain rule is off unless asked for, so that the and-split
    rule's tests see the two questions it splits the Sun question into (its own tests below)."""
    kwargs.setdefault("split_chains", False)
    return create_compllm_graph(
        decomposer=model,
        experts={"chemistry": FakeChat(label="chemistry")},
        router=keyword_router({"chemical": "chemistry"}),
        base=FakeChat(label="base"),
        **kwargs,
    ).compile()


def texts(out: dict) -> list[str]:
    return [sq["text"] for sq in out["query_graph"]["sub_queries"]]


@pytest.mark.parametrize(
    ("script", "reason", "most"),
    [
        (RUNAWAY, "sub-query 1 is over 500 characters long", 130),
        (LOOPING, "sub-query 2 repeats sub-query 1", 25),
        (OFF_FORMAT, "text outside the tags: 'T'", 15),
        (BLANKS, "no sub-query began within 500 characters", 130),
    ],
)
def test_a_failing_reply_is_stopped_early_and_the_question_split(
    script: str, reason: str, most: int
) -> None:
    model = ScriptedStream(script=script)
    out = graph(model).invoke({"query": SUN})
    assert model.sent[0] <= most < model.tokens // 4, (model.sent, model.tokens)
    assert out["fallback_reason"].startswith(f"the decomposer was stopped early: {reason}")
    assert texts(out) == [
        "What is the chemical symbol of the element that makes up most of the Sun?",
        "How many bones are in an adult human body?",
    ]
    assert out["split_rule"] == (
        "split into 2 independent questions at 'and' (the decomposer failed)"
    )


async def test_an_async_run_stops_the_stream_too() -> None:
    model = ScriptedStream(script=RUNAWAY)
    out = await graph(model).ainvoke({"query": SUN})
    for _ in range(10):  # the engine's side of a closed async stream finishes on the loop
        if model.sent:
            break
        await asyncio.sleep(0.01)
    assert model.sent and model.sent[0] <= 130 < model.tokens
    assert "over 500 characters long" in out["fallback_reason"]
    assert len(texts(out)) == 2 and out["split_rule"] is not None


def test_a_reply_that_goes_on_after_its_dependencies_is_cut_there() -> None:
    script = "<q>Which element makes up most of the Sun?</q><q>What is the symbol of #1?</q>"
    model = ScriptedStream(script=script + "<dep>1->2</dep> Hope this helps! " * 30)
    out = graph(model).invoke({"query": "What is the symbol of the element of the Sun?"})
    assert model.sent[0] < len(script) // 4 + 10 < model.tokens
    assert out["fallback_reason"] is None and out["split_rule"] is None
    assert out["query_graph"]["sub_queries"][1] == {
        "id": 2,
        "text": "What is the symbol of #1?",
        "parents": [1],
    }


def test_a_good_reply_is_read_to_its_end() -> None:
    script = "<q>Which element makes up most of the Sun?</q><q>What is its symbol, #1?</q>"
    model = ScriptedStream(script=script + "<dep>1->2</dep>")
    out = graph(model).invoke({"query": SUN})
    assert model.sent == [model.tokens]
    assert texts(out) == [
        "Which element makes up most of the Sun?",
        "What is its symbol, #1?",
    ]
    assert out["fallback_reason"] is None and out["split_rule"] is None


def test_one_sub_query_for_two_questions_is_split_and_recorded() -> None:
    out = graph(decomposer(f"<q>{SUN}</q><dep></dep>")).invoke({"query": SUN})
    assert len(texts(out)) == 2
    assert out["fallback_reason"] is None
    assert out["split_rule"] == (
        "split into 2 independent questions at 'and' (the decomposer wrote one sub-query)"
    )
    assert [a["question"] for a in out["sub_answers"]] == texts(out)


def test_the_split_is_streamed_with_the_decomposition() -> None:
    events = [
        chunk
        for chunk in graph(decomposer("<q>x</q><dep></dep>")).stream(
            {"query": SUN}, stream_mode="custom"
        )
        if chunk.get("event") == "decomposition"
    ]
    assert events[0]["split_rule"] is not None and len(events[0]["sub_queries"]) == 2
    assert events[0]["raw"] == "<q>x</q><dep></dep>"


def test_the_rule_can_be_turned_off_for_a_run() -> None:
    app = graph(decomposer(f"<q>{SUN}</q><dep></dep>"))
    out = app.invoke({"query": SUN}, {"configurable": {"split_questions": False}})
    assert texts(out) == [SUN] and out["split_rule"] is None


def test_the_rule_leaves_a_single_question_and_a_decomposition_alone() -> None:
    single = "What is the sum of 3 and 4?"
    out = graph(decomposer(f"<q>{single}</q><dep></dep>")).invoke({"query": single})
    assert texts(out) == [single] and out["split_rule"] is None
    chained = "<q>Which element makes up most of the Sun?</q><q>What is the symbol of #1?</q>"
    out = graph(decomposer(chained + "<dep>1->2</dep>")).invoke({"query": SUN})
    assert len(texts(out)) == 2 and out["split_rule"] is None


def test_a_decomposer_that_raises_falls_back_with_its_reason_and_is_split() -> None:
    out = graph(FakeChat(label="decomposer", fail_times=1)).invoke({"query": SUN})
    assert out["fallback_reason"] == "the decomposer raised RuntimeError: decomposer is down"
    assert len(texts(out)) == 2


def test_the_node_factory_option_turns_the_rule_off_and_a_run_can_turn_it_on() -> None:
    node = make_decompose_node(
        decomposer("<q>x</q><dep></dep>"), None, 12, split_questions=False, split_chains=False
    )
    builder = StateGraph(CompLLMState)
    builder.add_node("decompose", node)
    builder.add_edge(START, "decompose")
    app = builder.compile()
    off = app.invoke({"query": SUN})
    assert off["query_graph"]["sub_queries"] == [{"id": 1, "text": "x", "parents": []}]
    assert off["split_rule"] is None
    on = app.invoke({"query": SUN}, {"configurable": {"split_questions": True}})
    assert len(on["query_graph"]["sub_queries"]) == 2 and on["split_rule"] is not None


CHAIN_ONLY = "What is the chemical symbol of the element that makes up most of the Sun?"
CHAIN = [
    "What is the element that makes up most of the Sun?",
    "What is the chemical symbol of #1?",
    "How many bones are in an adult human body?",
]


def test_the_sun_question_splits_at_and_then_its_first_part_into_a_chain() -> None:
    out = graph(decomposer(f"<q>{SUN}</q><dep></dep>"), split_chains=True).invoke({"query": SUN})
    assert texts(out) == CHAIN
    assert [sq["parents"] for sq in out["query_graph"]["sub_queries"]] == [[], [1], []]
    assert out["split_rule"] == (
        "split into 2 independent questions at 'and' (the decomposer wrote one sub-query); "
        "split sub-query 1 into a chain: the thing it describes, then the attribute of its answer"
    )
    # the second step is asked about the first step's answer, not about "#1"
    asked = {a["sub_query"]: a["question"] for a in out["sub_answers"]}
    first = next(a["answer"] for a in out["sub_answers"] if a["sub_query"] == 1)
    assert "#1" not in asked[2] and asked[2].startswith("What is the chemical symbol of ")
    assert first and asked[2] != CHAIN[1]


def test_the_chain_rule_is_on_by_default_and_can_be_turned_off() -> None:
    model = decomposer(f"<q>{CHAIN_ONLY}</q><dep></dep>")
    app = create_compllm_graph(
        decomposer=model,
        experts={"chemistry": FakeChat(label="chemistry")},
        router=keyword_router({"chemical": "chemistry"}),
        base=FakeChat(label="base"),
    ).compile()
    assert texts(app.invoke({"query": CHAIN_ONLY})) == CHAIN[:2]
    off = app.invoke({"query": CHAIN_ONLY}, {"configurable": {"split_chains": False}})
    assert texts(off) == [CHAIN_ONLY] and off["split_rule"] is None
    node_off = graph(model)  # the option at build time
    assert texts(node_off.invoke({"query": CHAIN_ONLY})) == [CHAIN_ONLY]
    on = node_off.invoke({"query": CHAIN_ONLY}, {"configurable": {"split_chains": True}})
    assert texts(on) == CHAIN[:2]


def test_the_chain_rule_leaves_sub_queries_of_a_chain_alone() -> None:
    chained = f"<q>Which star is nearest to us?</q><q>{CHAIN_ONLY} Ask about #1.</q>"
    out = graph(decomposer(chained + "<dep>1->2</dep>"), split_chains=True).invoke(
        {"query": CHAIN_ONLY}
    )
    assert len(texts(out)) == 2 and out["split_rule"] is None


def test_the_chain_rule_never_grows_the_graph_past_its_limit() -> None:
    two = f"<q>{CHAIN_ONLY}</q><q>{CHAIN_ONLY.replace('Sun', 'Moon')}</q><dep></dep>"
    app = graph(decomposer(two), split_chains=True, max_sub_queries=3)
    out = app.invoke({"query": "two chains?"})
    assert len(texts(out)) == 3 and texts(out)[:2] == CHAIN[:2]
    assert out["split_rule"].startswith("split sub-query 1 into a chain")


ELEVATOR_FACTS = (
    "The elevator in Jack's building supports a maximum load of 700 kg. An adult weighs an "
    "average of 80 kg."
)
ELEVATOR = (
    f"{ELEVATOR_FACTS} First: How many adults can ride? Then: If Jack rides the elevator with "
    "8 other adults, by how much will they exceed the maximum load?"
)
ELEVATOR_PARTS = (
    f"{ELEVATOR_FACTS} How many adults can ride?",
    "If Jack rides the elevator with 8 other adults, by how much will they exceed the maximum "
    "load?",
)


def test_the_premise_rule_gives_a_part_the_facts_and_the_expert_is_asked_with_them() -> None:
    model = decomposer("".join(f"<q>{p}</q>" for p in ELEVATOR_PARTS) + "<dep></dep>")
    out = graph(model).invoke({"query": ELEVATOR})
    assert texts(out) == [ELEVATOR_PARTS[0], f"{ELEVATOR_FACTS} {ELEVATOR_PARTS[1]}"]
    assert out["split_rule"] == "gave sub-query 2 the facts the question opens with"
    asked = {a["sub_query"]: a["question"] for a in out["sub_answers"]}
    assert asked[2].startswith(ELEVATOR_FACTS)
    off = graph(model).invoke({"query": ELEVATOR}, {"configurable": {"carry_premise": False}})
    assert texts(off) == list(ELEVATOR_PARTS) and off["split_rule"] is None
    assert texts(graph(model, carry_premise=False).invoke({"query": ELEVATOR})) == list(
        ELEVATOR_PARTS
    )
