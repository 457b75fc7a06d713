"""A reply with no answer text is a failure of whoever gave it; an oversized reply is cut."""

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from compllm_graph import create_compllm_graph
from compllm_graph.nodes.execute import ExpertPolicy
from compllm_graph.types import message_text
from tests.fakes import FakeChat, decomposer, keyword_router

ROUTER = keyword_router({"chem": "chemistry", "made": "materials"})


class Replies(BaseChatModel):
    """Replies with `message` (any AIMessage), counting calls."""

    message: AIMessage
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "fixed-message"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.calls += 1
        return ChatResult(generations=[ChatGeneration(message=self.message)])

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        return self._generate(messages)


EMPTY = {
    "empty": AIMessage(""),
    "whitespace": AIMessage("  \n\t "),
    "tool call": AIMessage("", tool_calls=[{"name": "search", "args": {}, "id": "1"}]),
    "think block": AIMessage("<think>The user asks about water. Let me think.</think>"),
    "unclosed think": AIMessage("<think>The user asks about water and I ran out of tok"),
    "reasoning block": AIMessage([{"type": "reasoning", "reasoning": "Hmm."}]),
}

WHY = {
    "empty": "replied with no text",
    "whitespace": "replied with no text",
    "tool call": "replied only with a tool call",
    "think block": "replied only with reasoning",
    "unclosed think": "replied only with reasoning",
    "reasoning block": "replied only with reasoning",
}


@pytest.mark.parametrize("kind", list(EMPTY))
async def test_an_expert_reply_with_no_answer_is_retried_then_base_answers(kind):
    expert = Replies(message=EMPTY[kind])
    graph = create_compllm_graph(
        decomposer=decomposer(
            "<q>chem: what is water?</q><q>what is #1 made of?</q><dep>1->2</dep>"
        ),
        experts={"chemistry": expert, "materials": FakeChat(label="materials")},
        router=ROUTER,
        base=FakeChat(label="base", reply=lambda m: "Water is H2O."),
    ).compile()
    out = await graph.ainvoke({"query": "What is water, and what is it made of?"})
    first = out["sub_answers"][0]
    assert expert.calls == 2, "one retry"
    assert first["answer"] == "Water is H2O." and first["expert"] is None
    assert WHY[kind] in first["fallback_reason"]
    assert WHY[kind] in out["routes"][0]["fallback_reason"]
    assert "H2O" in out["sub_answers"][1]["question"], "the child's #1 is the base's answer"


async def test_a_part_whose_expert_and_base_reply_nothing_is_unanswered_and_so_is_its_child():
    child = FakeChat(label="child")
    graph = create_compllm_graph(
        decomposer=decomposer(
            "<q>chem: what is water?</q><q>what is #1 made of?</q><dep>1->2</dep>"
        ),
        experts={"chemistry": Replies(message=AIMessage("")), "materials": child},
        router=ROUTER,
        base=Replies(message=AIMessage("   ")),
        expert_policy=ExpertPolicy(retries=0),
    ).compile()
    out = await graph.ainvoke({"query": "What is water, and what is it made of?"})
    first, second = out["sub_answers"]
    assert first["answer"] == "" and "base failed" in first["fallback_reason"]
    assert second["answer"] == "" and second["attempts"] == 0
    assert "sub-query 1, which it depends on, could not be answered" in second["fallback_reason"]
    assert "Could not answer: [1]" in out["answer"] and "[2]" in out["answer"]
    assert child.calls == [], "the child is not asked with an empty #1"


@pytest.mark.parametrize("kind", ["empty", "tool call", "think block"])
def test_an_aggregator_reply_with_no_answer_gives_way_to_the_parts(kind):
    graph = create_compllm_graph(
        decomposer=decomposer("<q>chem a</q><q>b</q>"),
        experts={"chemistry": FakeChat(reply=lambda m: "First."), "materials": FakeChat()},
        router=ROUTER,
        base=FakeChat(reply=lambda m: "Second."),
        aggregator=Replies(message=EMPTY[kind]),
    ).compile()
    out = graph.invoke({"query": "q"})
    assert out["answer"] == "First part: First.\nSecond part: Second."
    assert f"the aggregator {WHY[kind]}" in out["fallback_reason"]


def test_an_oversized_reply_is_cut_with_a_note_before_it_reaches_the_answer():
    huge = "x" * 200_000
    graph = create_compllm_graph(
        decomposer=decomposer("<q>chem a</q><q>b</q>"),
        experts={"chemistry": FakeChat(reply=lambda m: huge), "materials": FakeChat()},
        router=ROUTER,
        base=FakeChat(reply=lambda m: "Second."),
        aggregator=FakeChat(fail_times=1),  # so the answer joins the parts
        expert_policy=ExpertPolicy(max_answer_chars=1_000),
    ).compile()
    out = graph.invoke({"query": "q"})
    first = out["sub_answers"][0]["answer"]
    assert first.startswith("x" * 1_000) and len(first) < 1_100
    assert "[cut: the reply was 200,000 characters; the first 1,000 kept]" in first
    assert out["answer"] == f"First part: {first}\nSecond part: Second."


def test_the_default_policy_bounds_replies():
    assert ExpertPolicy().max_answer_chars is not None
    with pytest.raises(ValueError, match="max_answer_chars"):
        ExpertPolicy(max_answer_chars=0)


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("<think>hmm</think>\n\nParis.", "Paris."),
        ([{"type": "reasoning", "reasoning": "hmm"}, {"type": "text", "text": "Paris."}], "Paris."),
        ([{"type": "tool_use", "id": "1", "name": "f", "input": {}}, "Paris."], "Paris."),
        ("Paris.", "Paris."),
    ],
)
def test_message_text_keeps_only_the_answer(content, text):
    assert message_text(AIMessage(content)) == text
