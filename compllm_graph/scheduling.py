"""Scheduling the query graph: device capacity, critical-path priority, and the two schedulers.

- "waves" (`waves_graph_builder`) turns the query graph into a LangGraph `StateGraph` builder (one
  node per sub-query); LangGraph runs it in supersteps, so a fast branch waits for its slowest
  sibling before its children start.
- "eager" (`eager_entrypoint`) runs the same sub-queries as functional-API tasks and starts each
  one the moment its own parents finish; every task still streams its events and is checkpointed
  on its own. The tasks are called in one fixed order, so a resumed run finds every answer the
  checkpoint holds, whatever order the first run finished in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ParamSpec, TypeVar

from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
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

    Every sub-query's task is called up front, in one fixed topological order (`start_order`),
    and a child's task waits inside for its parents' answers before it runs its sub-query.
    LangGraph tells task calls apart by their task name and their position in the
    entrypoint's sequence of calls, and a resumed run gets a checkpointed answer back only from
    a call with the same name and position. The order depends on the graph alone, never on which
    sub-query finished first, so a resumed run asks no model again for an answer the checkpoint
    holds (`tests/unit/test_eager_resume.py`).

    A waiting child holds a worker of the entrypoint (a thread of its pool under `invoke`, a
    slot of LangGraph's `max_concurrency` under `ainvoke` where one is set) but no device slot:
    `run_sub_query` takes those after the parents have answered. The entrypoint sets its own
    `max_concurrency`, one worker per sub-query plus `SPARE_WORKERS`, over whatever the
    caller's config carries (LangChain's default pool, `min(32, cpu_count + 4)` threads, can be
    smaller too), so waiting children never keep a ready one from starting; `DeviceLimits`
    bound how many run at once. A task's run opens when it is called, so in callbacks and traces
    a child's task run spans its wait for its parents too; the custom event `READY_EVENT` marks
    the moment they have answered. The events `run_sub_query` streams and the answer each task
    checkpoints are unchanged.

    Args:
        query_graph: The sub-query DAG.
        run_sub_query: Answers one sub-query (see `nodes.execute`).
        sync: Build a sync entrypoint (for `invoke`, and checkpointers without an async API)
            instead of an async one (for `ainvoke`).

    Returns:
        A compiled functional-API entrypoint, ready to invoke; input `{"routes": [...]}`, output
        the list of all answers.
    """
    order = start_order(query_graph)

    @entrypoint()
    async def execute_eager(inputs: dict) -> list[SubAnswer]:
        routes = dict(zip(query_graph.ids, inputs["routes"]))
        answers: dict[int, asyncio.Future[SubAnswer]] = {}
        tasks = {i: _async_task(query_graph[i], run_sub_query, answers) for i in order}
        for sub_query_id in order:  # parents before children: a child's parents are in answers
            answers[sub_query_id] = tasks[sub_query_id](routes[sub_query_id])
        return list(await asyncio.gather(*(answers[i] for i in query_graph.ids)))

    @entrypoint()
    def execute_eager_sync(inputs: dict) -> list[SubAnswer]:
        routes = dict(zip(query_graph.ids, inputs["routes"]))
        answers: dict[int, concurrent.futures.Future[SubAnswer]] = {}
        tasks = {i: _sync_task(query_graph[i], run_sub_query, answers) for i in order}
        for sub_query_id in order:
            answers[sub_query_id] = tasks[sub_query_id](routes[sub_query_id])
        for future in concurrent.futures.as_completed(answers.values()):
            future.result()  # the first failure raises at once, as `gather` does above
        return [answers[i].result() for i in query_graph.ids]

    chosen = execute_eager_sync if sync else execute_eager
    return chosen.with_config(max_concurrency=len(query_graph) + SPARE_WORKERS)


READY_EVENT = "compllm_sub_query_ready"
"""The LangChain custom event (`on_custom_event` in callbacks, `astream_events`) a dependent
sub-query's task sends once its parents have answered: its task run opened earlier, when it was
called, so this marks where its own work begins (`evaluation.timing` starts its clock here)."""

SPARE_WORKERS = 4
"""Workers of the eager entrypoint beyond one per sub-query: the entrypoint itself, LangGraph's
stream waiter (entrypoints stream eagerly) and the checkpoint writes."""


def start_order(query_graph: QueryGraph) -> list[int]:
    """The order the eager scheduler calls its tasks in: longest remaining path first, then id.

    A parent's remaining path is longer than each child's, so parents come before children; the
    order depends on the graph alone, never on timing, which is what lets a resumed run find
    each task's checkpointed answer. Among sub-queries that are ready together, the deepest
    reaches a device semaphore first (critical path).
    """
    return sorted(query_graph.ids, key=lambda i: (-query_graph.remaining_depth[i], i))


def _async_task(
    sq: SubQuery,
    run_sub_query: RunSubQuery,
    answers: Mapping[int, asyncio.Future[SubAnswer]],
) -> Callable[[dict], asyncio.Future[SubAnswer]]:
    """`sq`'s task for `ainvoke`: awaits its parents' futures in `answers`, then runs."""

    async def body(route: dict) -> SubAnswer:
        # shielded: were this task cancelled, its parent's answer still reaches the others
        parents = [await asyncio.shield(answers[p]) for p in sq.parents]
        if sq.parents:
            await adispatch_custom_event(READY_EVENT, {"sub_query": sq.id})
        return await run_sub_query(sq, Route.from_dict(route), parents)

    return _as_task(sq, body)


def _sync_task(
    sq: SubQuery,
    run_sub_query: RunSubQuery,
    answers: Mapping[int, concurrent.futures.Future[SubAnswer]],
) -> Callable[[dict], concurrent.futures.Future[SubAnswer]]:
    """`sq`'s task for `invoke`: blocks its worker thread on its parents' futures, then runs."""

    async def run(route: Route, parents: list[SubAnswer]) -> SubAnswer:
        return await run_sub_query(sq, route, parents)

    def body(route: dict) -> SubAnswer:
        parents = [answers[p].result() for p in sq.parents]
        if sq.parents:
            dispatch_custom_event(READY_EVENT, {"sub_query": sq.id})
        return _blocking(run)(Route.from_dict(route), parents)

    return _as_task(sq, body)


def _as_task(sq: SubQuery, body: Callable[[dict], Any]) -> Callable[[dict], Any]:
    # The task's input is its route alone (plain data, for traces and the "tasks" stream): the
    # parents' answers are not known when it is called.
    as_task: Callable[[Any], Callable[[dict], Any]] = task(name=_node_name(sq))
    return as_task(body)


def _blocking(function: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    """`function` as a blocking call: each call runs its coroutine on a loop of its own."""

    def blocking(*args: P.args, **kwargs: P.kwargs) -> R:
        return run_sync(function(*args, **kwargs))

    return blocking
