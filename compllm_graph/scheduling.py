"""Scheduling the query graph: device capacity, critical-path priority, and the two schedulers.

- "waves" (`waves_graph_builder`) turns the query graph into a LangGraph `StateGraph` builder (one
  node per sub-query); LangGraph runs it in supersteps, so a fast branch waits for its slowest
  sibling before its children start.
- "eager" (`eager_entrypoint`) runs the same sub-queries as functional-API tasks and starts each
  one the moment its own parents finish; every task still streams its events and is checkpointed
  on its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import FIRST_COMPLETED
from dataclasses import dataclass, field
from typing import Annotated, Any, ParamSpec, TypeVar

from langchain_core.runnables import RunnableLambda
from langgraph.func import entrypoint, task
from langgraph.graph import START, StateGraph
from langgraph.pregel import Pregel
from typing_extensions import TypedDict

from compllm_graph._concurrency import PrioritySemaphore
from compllm_graph._sync import run_sync
from compllm_graph.query_graph import QueryGraph, SubQuery
from compllm_graph.state import SubAnswer, leaf_answers, merge_sub_answers
from compllm_graph.types import BASE, Route, display_name

P = ParamSpec("P")
R = TypeVar("R")

RunSubQuery = Callable[[SubQuery, Route, list[SubAnswer]], Awaitable[SubAnswer]]
"""Answers one sub-query given its route and its parents' answers."""


@dataclass
class DeviceLimits:
    """Which device each expert runs on, and how many sub-queries each device runs at once.

    Args:
        capacity: Device name -> maximum concurrent sub-queries (the paper's GPU semaphores).
        placement: Expert name (or "base" for the base model) -> device name. Experts that are not
            placed run on `default_device`.
        default_device: Device for unplaced experts; None leaves them unbounded.

    Example:
        `DeviceLimits({"gpu0": 2}, {"chemistry": "gpu0", "biology": "gpu0"})` lets chemistry and
        biology sub-queries share two slots.
    """

    capacity: Mapping[str, int] = field(
        metadata={
            "help": "device name -> maximum concurrent sub-queries (the paper's GPU semaphores)"
        }
    )
    placement: Mapping[str, str] = field(
        default_factory=dict,
        metadata={
            "help": 'expert name (or "base" for the base model) -> device name; experts that are '
            "not placed run on `default_device`"
        },
    )
    default_device: str | None = field(
        default=None,
        metadata={"help": "device for unplaced experts; None leaves them unbounded"},
    )
    _semaphores: dict[str, PrioritySemaphore] = field(
        init=False,
        repr=False,
        metadata={"help": "one priority semaphore per device (internal; built from `capacity`)"},
    )

    def __post_init__(self) -> None:
        for name in [*self.placement.values(), self.default_device]:
            if name is not None and name not in self.capacity:
                raise ValueError(
                    f"device {name!r} has no capacity; add it to DeviceLimits(capacity={{...}})"
                )
        self._semaphores = {d: PrioritySemaphore(c) for d, c in self.capacity.items()}

    def check_experts(self, experts: Mapping[str, Any]) -> None:
        """Raise if `placement` names an expert the graph does not have."""
        unknown = sorted(set(self.placement) - set(experts) - {BASE})
        if unknown:
            raise ValueError(
                f"DeviceLimits.placement names unknown experts {unknown}; "
                f"known: {sorted(experts)} and {BASE!r}"
            )

    def semaphore(self, expert: str | None) -> PrioritySemaphore | None:
        device = self.placement.get(display_name(expert), self.default_device)
        return None if device is None else self._semaphores[device]


class _WavesState(TypedDict, total=False):
    routes: list[dict]
    sub_answers: Annotated[list[SubAnswer], merge_sub_answers]
    leaf_answers: list[SubAnswer]


def waves_graph_builder(query_graph: QueryGraph, run_sub_query: RunSubQuery) -> StateGraph:
    """The "waves" scheduler: the query graph as an uncompiled LangGraph `StateGraph`.

    START fans out to the roots, a child with several parents joins on all of them, answers merge
    through a reducer, and a deferred `leaves` node collects the leaf answers once all are done.

    Args:
        query_graph: The sub-query DAG.
        run_sub_query: Answers one sub-query (see `nodes.execute`).

    Returns:
        The builder, to `.compile()`; its input is `{"routes": [...]}` aligned with the
        sub-queries, its output has `sub_answers` and `leaf_answers`.
    """
    builder = StateGraph(_WavesState)
    index = {sq.id: i for i, sq in enumerate(query_graph)}
    for sq in query_graph:
        node = _waves_node(sq, index[sq.id], run_sub_query)
        # Both a sync and an async body: `invoke` (with a sync-only checkpointer such as
        # SqliteSaver) runs the first, `ainvoke` the second.
        builder.add_node(_node_name(sq), RunnableLambda(_blocking(node), afunc=node))
        parents = [_node_name(query_graph[p]) for p in sq.parents]
        if not parents:
            builder.add_edge(START, _node_name(sq))
        else:
            builder.add_edge(parents[0] if len(parents) == 1 else parents, _node_name(sq))
    builder.add_node(
        "leaves",
        lambda s: {"leaf_answers": leaf_answers(query_graph, s["sub_answers"])},
        defer=True,
    )
    for leaf in query_graph.leaves:
        builder.add_edge(_node_name(query_graph[leaf]), "leaves")
    return builder


def _node_name(sq: SubQuery) -> str:
    return f"sub_query_{sq.id}"


def _waves_node(
    sq: SubQuery, index: int, run_sub_query: RunSubQuery
) -> Callable[[_WavesState], Coroutine[Any, Any, dict]]:
    async def node(state: _WavesState) -> dict:
        parents = [a for a in state.get("sub_answers", []) if a["sub_query"] in sq.parents]
        answer = await run_sub_query(sq, Route.from_dict(state["routes"][index]), parents)
        return {"sub_answers": [answer]}

    return node


def eager_entrypoint(query_graph: QueryGraph, run_sub_query: RunSubQuery, *, sync: bool) -> Pregel:
    """The "eager" scheduler: each sub-query is a task that starts when its own parents finish.

    Args:
        query_graph: The sub-query DAG.
        run_sub_query: Answers one sub-query (see `nodes.execute`).
        sync: Build a sync entrypoint (for `invoke`, and checkpointers without an async API)
            instead of an async one (for `ainvoke`).

    Returns:
        A compiled functional-API entrypoint, ready to invoke; input `{"routes": [...]}`, output
        the list of all answers.
    """
    tasks: dict[int, Any] = {}
    for sq in query_graph:
        as_task: Callable[[Any], Any] = task(name=_node_name(sq))
        body = _eager_body(sq, run_sub_query)
        tasks[sq.id] = as_task(_blocking(body) if sync else body)
    # Start order only matters for who reaches a device semaphore first; deepest first.
    start_order = sorted(query_graph.ids, key=lambda i: (-query_graph.remaining_depth[i], i))

    @entrypoint()
    async def execute_eager(inputs: dict) -> list[SubAnswer]:
        routes = dict(zip(query_graph.ids, inputs["routes"]))
        running: dict[int, asyncio.Future[SubAnswer]] = {}

        async def run(sq: SubQuery) -> SubAnswer:
            parents = [await running[p] for p in sq.parents]
            return await tasks[sq.id](routes[sq.id], parents)

        for sub_query_id in start_order:
            running[sub_query_id] = asyncio.ensure_future(run(query_graph[sub_query_id]))
        return list(await asyncio.gather(*(running[i] for i in query_graph.ids)))

    @entrypoint()
    def execute_eager_sync(inputs: dict) -> list[SubAnswer]:
        routes = dict(zip(query_graph.ids, inputs["routes"]))
        done: dict[int, SubAnswer] = {}
        running: dict[Any, int] = {}
        waiting = list(start_order)
        while waiting or running:
            for sub_query_id in [i for i in waiting if set(query_graph[i].parents) <= set(done)]:
                parents = [done[p] for p in query_graph[sub_query_id].parents]
                running[tasks[sub_query_id](routes[sub_query_id], parents)] = sub_query_id
                waiting.remove(sub_query_id)
            finished, _ = concurrent.futures.wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done[running.pop(future)] = future.result()
        return [done[i] for i in query_graph.ids]

    return execute_eager_sync if sync else execute_eager


def _blocking(function: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    """`function` as a blocking call: each call runs its coroutine on a loop of its own."""

    def blocking(*args: P.args, **kwargs: P.kwargs) -> R:
        return run_sync(function(*args, **kwargs))

    return blocking


def _eager_body(
    sq: SubQuery, run_sub_query: RunSubQuery
) -> Callable[[dict, list[SubAnswer]], Coroutine[Any, Any, SubAnswer]]:
    async def body(route: dict, parents: list[SubAnswer]) -> SubAnswer:
        return await run_sub_query(sq, Route.from_dict(route), parents)

    return body
