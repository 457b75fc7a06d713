"""Graph state: what flows from decompose through route and execute to aggregate.

State values are plain data (dicts, lists, strings) so that any checkpointer can store them and
`langgraph dev` can send them as JSON; `QueryGraph.from_dict(state["query_graph"])` gives the
graph object back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from compllm_graph.query_graph import QueryGraph


class SubAnswer(TypedDict):
    """The answer to one sub-query.

    Attributes:
        sub_query: Id of the sub-query answered.
        question: The prompt's question, with `#k` references replaced by parent answers.
        answer: The model's answer text; empty when the expert and the base model both failed
            (`fallback_reason` then says why).
        expert: Who answered: an expert's name, or None for the base model.
        seconds: Wall time from the first attempt to the answer, waiting for the device included.
        attempts: Calls made, failed ones included.
        fallback_reason: Why the routed expert did not answer, when base answered instead.
    """

    sub_query: int
    question: str
    answer: str
    expert: str | None
    seconds: float
    attempts: int
    fallback_reason: str | None


def unanswered(answer: SubAnswer) -> bool:
    """Whether the sub-query's expert and the base model both failed (its answer is empty)."""
    return not answer["answer"] and answer["fallback_reason"] is not None


def merge_sub_answers(left: list[SubAnswer], right: list[SubAnswer]) -> list[SubAnswer]:
    """Merge answers written by parallel sub-query nodes, keyed by sub-query id."""
    merged = {a["sub_query"]: a for a in left}
    merged.update((a["sub_query"], a) for a in right)
    return [merged[k] for k in sorted(merged)]


def leaf_answers(query_graph: QueryGraph, answers: list[SubAnswer]) -> list[SubAnswer]:
    """The answers of the query graph's leaves (the "waves" scheduler's last node collects them;
    the aggregator reads every part's answer, see `nodes.aggregate`)."""
    leaves = set(query_graph.leaves)
    return [a for a in answers if a["sub_query"] in leaves]


Aggregation = Literal["reducer", "joined", "replaced"]
"""How the answer was made: "reducer", the reducer's reply; "joined", the parts' answers joined with
no reducer call (independent parts under `aggregate="auto"`, a single part, or no part answered);
"replaced", the reducer was called but its reply gave way to the parts joined (it raised, said
nothing, or failed the `check_aggregate` check; `fallback_reason` says which)."""


class InputState(TypedDict, total=False):
    """Give either `query`, or `messages` whose last message is the user's question."""

    query: str
    messages: Annotated[list[AnyMessage], add_messages]


class OutputState(TypedDict, total=False):
    """What a run returns; with `messages` input the answer is also appended as an AIMessage.

    `query_graph` is `QueryGraph.to_dict()`; `routes[i]` (fields of `Route`) belongs to its
    i-th sub-query; `sub_answers` are sorted by sub-query id. `aggregator_reply` is the
    reducer's own text whenever it replied, also when the answer is not that text (the
    reducer failed the `check_aggregate` check); None when no reducer call was made.
    `aggregation` (`Aggregation`) says whether the reducer ran and whether its reply stood.
    `split_rule` says what the decomposition's rules (and-split, chain, premise) did to the
    decomposer's graph (`nodes.decompose`); None when they did nothing.
    """

    query: str
    messages: Annotated[list[AnyMessage], add_messages]
    answer: str
    query_graph: dict[str, Any]
    fallback_reason: str | None
    routes: list[dict[str, Any]]
    sub_answers: list[SubAnswer]
    aggregator_reply: str | None
    split_rule: str | None
    aggregation: Aggregation


class CompLLMState(InputState, OutputState, total=False):
    """The outer graph's state."""
