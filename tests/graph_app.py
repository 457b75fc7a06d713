"""A Comp-LLM graph on fake models for serving tests: `--graph tests.graph_app:graph`.

The question "chemistry and biology of TAG?" decomposes into "chemistry of TAG" and "biology of
TAG"; each expert answers `EXPERT answer to: QUESTION` (the graph asks "What is the chemistry
of TAG?"), and the two answers are joined with no reducer call. So every reply names its own
question's TAG, and a reply that crossed to another client shows it. Every model reports 3
prompt and 2 completion tokens a call.
"""

from __future__ import annotations

import re
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langgraph.graph import StateGraph

from compllm_graph.graph import create_compllm_graph
from tests.fakes import FakeChat, keyword_router

EXPERTS = ("chemistry", "biology")


class CountedChat(FakeChat):
    """A `FakeChat` whose replies report token usage."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        result = super()._answer(messages)
        message = result.generations[0].message
        # No model name: the server counts the tokens of such a reply too.
        message.usage_metadata = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}  # type: ignore[attr-defined]
        return result


def split(messages: list[BaseMessage]) -> str:
    """The decomposition of `... of TAG?` into one sub-query per expert."""
    tag = re.sub(r".* of |\?$", "", str(messages[-1].content))
    return "".join(f"<q>{expert} of {tag}</q>" for expert in EXPERTS) + "<dep></dep>"


def build(delay: float = 0.0, **experts: Any) -> StateGraph:
    """The fake graph; experts answer after `delay` seconds unless `experts` replaces them."""
    models = {name: CountedChat(label=name, delay=delay) for name in EXPERTS}
    return create_compllm_graph(
        decomposer=CountedChat(label="decomposer", reply=split),
        experts={**models, **experts},
        router=keyword_router({name: name for name in EXPERTS}),
        base=CountedChat(label="base"),
    )


def expected(tag: str) -> str:
    """The answer to "chemistry and biology of TAG?"."""
    return "\n".join(
        f"{order} part: {expert} answer to: What is the {expert} of {tag}?"
        for order, expert in zip(("First", "Second"), EXPERTS)
    )


graph = build(delay=0.05)
