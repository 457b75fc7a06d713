"""The question of issue 37 on the real SmolLM2 decomposer, through the decompose node.

The shipped decomposer (adapter and tag grammar) writes "What is the chemical symbol of the
element that makes up most of the Sun, and how many bones are in an adult human body?" back as
one sub-query on both engines (2026-12-06); the node's and-split rule makes it two, and its chain
rule makes the first a chain: the element, then its symbol. Whichever does it, the node must end
with the two questions apart and the first one's chain, read through the streamed reply.
"""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.graph import START, StateGraph

from compllm_graph.decomposer import default_decomposer
from compllm_graph.nodes.decompose import make_decompose_node
from compllm_graph.state import CompLLMState
from tests.conftest import shared_smollm2, shared_smollm2_llama, smollm2_decomposer

pytestmark = pytest.mark.integration

SUN = (
    "What is the chemical symbol of the element that makes up most of the Sun, and how many "
    "bones are in an adult human body?"
)


def decompose(model: Any) -> dict[str, Any]:
    chat, prompt = default_decomposer(model, smollm2_decomposer())
    builder = StateGraph(CompLLMState)
    builder.add_node("decompose", make_decompose_node(chat, prompt, 12))
    builder.add_edge(START, "decompose")
    return builder.compile().invoke({"query": SUN})


@pytest.mark.parametrize("load", [shared_smollm2_llama, shared_smollm2], ids=["llama.cpp", "hf"])
def test_the_sun_question_ends_as_two_questions_the_first_a_chain(load: Any) -> None:
    out = decompose(load())
    texts = [sq["text"] for sq in out["query_graph"]["sub_queries"]]
    assert len(texts) >= 2, out
    assert any("Sun" in t for t in texts) and any("bones" in t for t in texts)
    assert not any("Sun" in t and "bones" in t for t in texts), texts
    assert out["fallback_reason"] is None, "the shipped decomposer's reply parses"
    sub_queries = {sq["id"]: sq for sq in out["query_graph"]["sub_queries"]}
    symbol = next(sq for sq in sub_queries.values() if "symbol" in sq["text"])
    (element,) = symbol["parents"]  # the symbol is asked of the element's answer
    assert f"#{element}" in symbol["text"] and "Sun" in sub_queries[element]["text"], texts
