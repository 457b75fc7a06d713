"""Decompose: the decomposer LLM rewrites the query as sub-queries with dependencies."""

from __future__ import annotations

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.config import get_stream_writer

from compllm_graph.errors import CompLLMError
from compllm_graph.query_graph import (
    DecompositionError,
    QueryGraph,
    parse_decomposition,
    sub_query_char_limit,
)
from compllm_graph.state import CompLLMState
from compllm_graph.types import clean_text, message_text, quote


class QuestionError(CompLLMError, ValueError):
    """The graph was invoked without a question it can answer."""


_HOW_TO_ASK = (
    "invoke the graph with {'query': '...'} or with {'messages': [...]} ending in a HumanMessage"
)


def clean_question(text: object, name: str = "query") -> str:
    """`text` as a question: stripped, with lone surrogates replaced (`clean_text`).

    Args:
        text: The question as given.
        name: What the caller calls it, for the error message.

    Raises:
        QuestionError: `text` is missing, not a string, empty or whitespace only.
    """
    if text is None:
        raise QuestionError(f"no question: {_HOW_TO_ASK}")
    if not isinstance(text, str):
        raise QuestionError(f"{name} must be a string, got {type(text).__name__}: {_HOW_TO_ASK}")
    question = clean_text(text).strip()
    if not question:
        raise QuestionError(f"{name} is empty or only whitespace: ask a question")
    return question


def question_of(state: CompLLMState) -> str:
    """The question to answer: the last message when the state holds messages, else `query`.

    The question is cleaned by `clean_question`. On a checkpointed chat thread `query` still
    holds the previous turn's question, so messages that end in anything but a HumanMessage
    (the previous answer, or an AIMessage sent as input) are an error, never a cue to answer
    that question again.

    Raises:
        QuestionError: no question, a `query` that is not a string, an empty or whitespace-only
            question, or messages whose last message is not a HumanMessage.
    """
    messages = state.get("messages") or []
    if not messages:
        return clean_question(state.get("query"))
    last = messages[-1]
    if not isinstance(last, HumanMessage):
        raise QuestionError(
            f"the last message must be the question, a HumanMessage, not {type(last).__name__}: "
            "end messages with a HumanMessage (on a checkpointed thread, send "
            "{'messages': [HumanMessage('...')]}); 'query' is read only when there are no messages"
        )
    return clean_question(message_text(last), "the last human message")


def make_decompose_node(
    decomposer: Runnable, system_prompt: str | None, max_sub_queries: int
) -> Runnable:
    """Build the node that decomposes the query into a `QueryGraph`.

    When the decomposer raises or its output is rejected, the query becomes one sub-query and
    the state's `fallback_reason` says why (quoting at most `QUOTE_CHARS` of the output), so
    every query is still answered. Input without a usable question raises `QuestionError` (see
    `question_of`) before any model runs.
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
