"""Decompose: the decomposer LLM rewrites the query as sub-queries with dependencies."""

from __future__ import annotations

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.config import get_stream_writer

from compllm_graph.query_graph import (
    DecompositionError,
    QueryGraph,
    parse_decomposition,
    sub_query_char_limit,
)
from compllm_graph.state import CompLLMState
from compllm_graph.types import message_text, quote


def question_of(state: CompLLMState) -> str:
    """The question to answer: a new human message wins over a `query` left from an earlier turn.

    Raises:
        ValueError: neither a `query` nor a last human message was given.
    """
    messages = state.get("messages") or []
    if messages and isinstance(messages[-1], HumanMessage):
        return message_text(messages[-1])
    query = state.get("query")
    if not query:
        raise ValueError(
            "no question: invoke the graph with {'query': '...'} or with {'messages': [...]} "
            "ending in a human message"
        )
    return query


def make_decompose_node(
    decomposer: Runnable, system_prompt: str | None, max_sub_queries: int
) -> Runnable:
    """Build the node that decomposes the query into a `QueryGraph`.

    When the decomposer raises or its output is rejected, the query becomes one sub-query and
    the state's `fallback_reason` says why (quoting at most `QUOTE_CHARS` of the output), so
    every query is still answered.
    """

    def prompt(query: str) -> list[BaseMessage]:
        head: list[BaseMessage] = [SystemMessage(system_prompt)] if system_prompt else []
        return [*head, HumanMessage(query)]

    def finish(query: str, output: str, failure: str | None = None) -> dict:
        query_graph, reason = QueryGraph.single(query), failure
        if failure is None:
            try:
                query_graph = parse_decomposition(
                    output, max_sub_queries, sub_query_char_limit(query)
                )
            except DecompositionError as exc:
                reason = f"{exc}; decomposer wrote {quote(output)}"
        get_stream_writer()(
            {
                "event": "decomposition",
                "sub_queries": query_graph.to_dict()["sub_queries"],
                "raw": output,
                "fallback_reason": reason,
            }
        )
        return {"query": query, "query_graph": query_graph.to_dict(), "fallback_reason": reason}

    def decompose(state: CompLLMState) -> dict:
        query = question_of(state)
        try:
            output = message_text(decomposer.invoke(prompt(query)))
        except Exception as exc:  # any decomposer failure: answer the query whole instead
            return finish(query, "", f"the decomposer raised {type(exc).__name__}: {exc}")
        return finish(query, output)

    async def adecompose(state: CompLLMState) -> dict:
        query = question_of(state)
        try:
            output = message_text(await decomposer.ainvoke(prompt(query)))
        except Exception as exc:  # any decomposer failure: answer the query whole instead
            return finish(query, "", f"the decomposer raised {type(exc).__name__}: {exc}")
        return finish(query, output)

    return RunnableLambda(decompose, afunc=adecompose, name="decompose")
