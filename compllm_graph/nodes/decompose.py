"""Decompose: the decomposer LLM rewrites the query as sub-queries with dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.config import get_stream_writer

from compllm_graph.decomposer.chain_rule import split_chains as split_chain_questions
from compllm_graph.decomposer.premise_rule import carry_premise as carry_query_premise
from compllm_graph.decomposer.split_rule import split_questions as split_and_questions
from compllm_graph.decomposer.stopping import OPEN, PrefixCheck, check_prefix
from compllm_graph.errors import CompLLMError
from compllm_graph.query_graph import (
    DecompositionError,
    QueryGraph,
    SubQuery,
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


SPLIT_QUESTIONS = "split_questions"
"""The `configurable` key that turns the and-split rule on or off for one run, e.g.
`graph.invoke(inputs, {"configurable": {"split_questions": False}})`."""
SPLIT_CHAINS = "split_chains"
"""The `configurable` key that turns the chain rule on or off for one run."""
CARRY_PREMISE = "carry_premise"
"""The `configurable` key that turns the premise rule on or off for one run."""


def make_decompose_node(
    decomposer: Runnable,
    system_prompt: str | None,
    max_sub_queries: int,
    split_questions: bool = True,
    split_chains: bool = True,
    carry_premise: bool = True,
) -> Runnable:
    """Build the node that decomposes the query into a `QueryGraph`.

    The decomposer's reply is streamed and stopped as soon as it can no longer become a
    decomposition (`decomposer.stopping.check_prefix`: a sub-query that runs on, a repeat, text
    or tags outside the format), so a failing decomposer costs a few tokens, not its token limit.
    When the decomposer raises, is stopped, or its output is rejected, the query becomes one
    sub-query and the state's `fallback_reason` says why (quoting at most `QUOTE_CHARS` of the
    output), so every query is still answered. Then, when the graph holds one sub-query and the
    query is independent questions joined by "and" (`decomposer.split_rule`), each question
    becomes a sub-query of its own. Then each sub-query that stands alone and asks for an
    attribute of a thing it only describes ("the chemical symbol of the element that makes up
    most of the Sun") becomes the description and the attribute of its answer
    (`decomposer.chain_rule`). Then each sub-query that asks about facts the query opens with
    ("If he has 4 more days ...") but lacks them gets them in front (`decomposer.premise_rule`).
    The state's `split_rule` says what the rules did (None when none did anything). Input
    without a usable question raises `QuestionError` (see
    `question_of`) before any model runs.

    Args:
        decomposer: The decomposer chat model (any Runnable; one that cannot stream is read
            whole).
        system_prompt: Its system message; None sends the question alone.
        max_sub_queries: Decompositions with more sub-queries fall back to the whole query.
        split_questions: Apply the and-split rule; a run's `configurable` key
            `SPLIT_QUESTIONS` overrides it.
        split_chains: Apply the chain rule; a run's `configurable` key `SPLIT_CHAINS`
            overrides it.
        carry_premise: Apply the premise rule; a run's `configurable` key `CARRY_PREMISE`
            overrides it.
    """

    def prompt(query: str) -> list[BaseMessage]:
        head: list[BaseMessage] = [SystemMessage(system_prompt)] if system_prompt else []
        return [*head, HumanMessage(query)]

    def check(query: str) -> Callable[[str], PrefixCheck]:
        return partial(
            check_prefix, max_sub_queries=max_sub_queries, max_chars=sub_query_char_limit(query)
        )

    def finish(query: str, reply: _Reply, config: RunnableConfig | None) -> dict:
        query_graph, reason = _read_reply(query, reply, max_sub_queries)
        notes = []
        if len(query_graph) == 1 and _rule_on(config, SPLIT_QUESTIONS, split_questions):
            query_graph, note = _split(query, query_graph, reason, max_sub_queries)
            notes += [note] if note else []
        if _rule_on(config, SPLIT_CHAINS, split_chains):
            query_graph, note = _chain(query_graph, max_sub_queries)
            notes += [note] if note else []
        if _rule_on(config, CARRY_PREMISE, carry_premise):
            query_graph, note = _premise(query, query_graph)
            notes += [note] if note else []
        split = "; ".join(notes) or None
        get_stream_writer()(
            {
                "event": "decomposition",
                "sub_queries": query_graph.to_dict()["sub_queries"],
                "raw": reply.text,
                "fallback_reason": reason,
                "split_rule": split,
            }
        )
        return {
            "query": query,
            "query_graph": query_graph.to_dict(),
            "fallback_reason": reason,
            "split_rule": split,
        }

    def decompose(state: CompLLMState, config: RunnableConfig) -> dict:
        query = question_of(state)
        try:
            reply = _stream(decomposer.stream(prompt(query)), check(query))
        except Exception as exc:  # any decomposer failure: answer the query whole instead
            reply = _Reply("", OPEN, f"the decomposer raised {type(exc).__name__}: {exc}")
        return finish(query, reply, config)

    async def adecompose(state: CompLLMState, config: RunnableConfig) -> dict:
        query = question_of(state)
        try:
            reply = await _astream(decomposer.astream(prompt(query)), check(query))
        except Exception as exc:  # any decomposer failure: answer the query whole instead
            reply = _Reply("", OPEN, f"the decomposer raised {type(exc).__name__}: {exc}")
        return finish(query, reply, config)

    return RunnableLambda(decompose, afunc=adecompose, name="decompose")


@dataclass(frozen=True)
class _Reply:
    """What the decomposer wrote, how the early-stop check last judged it, and its failure."""

    text: str
    verdict: PrefixCheck
    failure: str | None = None


class _Reader:
    """Gathers a streamed reply and judges it after every chunk."""

    def __init__(self, check: Callable[[str], PrefixCheck]) -> None:
        self.check = check
        self.reply: Any = None
        self.verdict = OPEN

    def add(self, chunk: Any) -> bool:
        """Take one chunk; True when generating more is useless."""
        self.reply = chunk if self.reply is None else self.reply + chunk
        raw = getattr(self.reply, "content", self.reply)
        # `message_text` strips blanks, so a reply of nothing but blanks is checked as it is.
        blank = isinstance(raw, str) and not raw.strip()
        self.verdict = self.check(raw if blank else message_text(self.reply))
        return self.verdict.stop

    def result(self) -> _Reply:
        text = message_text(self.reply) if self.reply is not None else ""
        return _Reply(text, self.verdict)


def _stream(chunks: Iterator[Any], check: Callable[[str], PrefixCheck]) -> _Reply:
    """Read a streamed reply until it ends or `check` stops it; closing the stream tells the
    engine to stop generating (the local engines free the row at their next token)."""
    reader = _Reader(check)
    try:
        for chunk in chunks:
            if reader.add(chunk):
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return reader.result()


async def _astream(chunks: AsyncIterator[Any], check: Callable[[str], PrefixCheck]) -> _Reply:
    """`_stream` for an async stream."""
    reader = _Reader(check)
    try:
        async for chunk in chunks:
            if reader.add(chunk):
                break
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    return reader.result()


def _read_reply(query: str, reply: _Reply, max_sub_queries: int) -> tuple[QueryGraph, str | None]:
    """The reply's query graph, or the whole query and why."""
    if reply.failure is not None:
        return QueryGraph.single(query), reply.failure
    verdict = reply.verdict
    if verdict.status == "invalid":
        reason = f"the decomposer was stopped early: {verdict.reason}"
        return QueryGraph.single(query), f"{reason}; decomposer wrote {quote(reply.text)}"
    text = reply.text[: verdict.cut] if verdict.status == "complete" else reply.text
    try:
        return parse_decomposition(text, max_sub_queries, sub_query_char_limit(query)), None
    except DecompositionError as exc:
        return QueryGraph.single(query), f"{exc}; decomposer wrote {quote(reply.text)}"


def _rule_on(config: RunnableConfig | None, key: str, default: bool) -> bool:
    configurable = (config or {}).get("configurable") or {}
    return bool(configurable.get(key, default))


def _split(
    query: str, query_graph: QueryGraph, reason: str | None, max_sub_queries: int
) -> tuple[QueryGraph, str | None]:
    """The and-split rule's graph and what it did, or the graph unchanged and None."""
    parts = split_and_questions(query, max_sub_queries)
    if parts is None:
        return query_graph, None
    why = "the decomposer failed" if reason else "the decomposer wrote one sub-query"
    graph = QueryGraph(tuple(SubQuery(i, text) for i, text in enumerate(parts, start=1)))
    return graph, f"split into {len(parts)} independent questions at 'and' ({why})"


def _chain(query_graph: QueryGraph, max_sub_queries: int) -> tuple[QueryGraph, str | None]:
    """The chain rule's graph and what it did, or the graph unchanged and None."""
    chained, split = split_chain_questions(query_graph, max_sub_queries)
    if not split:
        return query_graph, None
    which = ", ".join(str(i) for i in split)
    return chained, (
        f"split sub-quer{'ies' if len(split) > 1 else 'y'} {which} into a chain: the thing "
        "it describes, then the attribute of its answer"
    )


def _premise(query: str, query_graph: QueryGraph) -> tuple[QueryGraph, str | None]:
    """The premise rule's graph and what it did, or the graph unchanged and None."""
    carried, ids = carry_query_premise(query, query_graph)
    if not ids:
        return query_graph, None
    which = ", ".join(str(i) for i in ids)
    plural = "ies" if len(ids) > 1 else "y"
    return carried, f"gave sub-quer{plural} {which} the facts the question opens with"
