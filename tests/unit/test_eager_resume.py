"""A resumed eager run asks no model again for a sub-query whose answer was checkpointed.

LangGraph finds a task's checkpointed answer by the task's name and its position in the
entrypoint's sequence of task calls. The first runs here finish their sub-queries in an order the
test dictates (a `Turns` script, threading conditions, no sleeps), one sub-query's model raises,
and a new entrypoint with a working model resumes the same checkpointed thread. In the shapes
marked `reordered` the first run finishes out of the order the tasks are called in: a scheduler
that called each task when its parents finished would call them in another order on resume.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver

from compllm_graph import create_compllm_graph
from compllm_graph.query_graph import QueryGraph, SubQuery
from compllm_graph.scheduling import eager_entrypoint, start_order
from compllm_graph.state import SubAnswer
from compllm_graph.types import Route
from tests.fakes import FakeChat, decomposer

WAIT = 10.0  # seconds a scripted sub-query waits for its turn before the test fails


class ModelDown(RuntimeError):
    """The first run's model failing on one sub-query."""


def answer(sq: SubQuery, text: str) -> SubAnswer:
    return SubAnswer(
        sub_query=sq.id,
        question=sq.text,
        answer=text,
        expert="expert",
        seconds=0.0,
        attempts=1,
        fallback_reason=None,
    )


@dataclass
class Turns:
    """A `RunSubQuery` whose sub-queries finish only in `order`; `failing`'s model raises once
    every sub-query of `order` has finished. Safe across the threads the sync entrypoint uses."""

    order: list[int]
    failing: int | None = None
    asked: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    parents_seen: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    _turn: threading.Condition = field(default_factory=threading.Condition)

    def _wait_for(self, before: list[int]) -> None:
        with self._turn:
            if not self._turn.wait_for(lambda: set(before) <= set(self.finished), WAIT):
                raise TimeoutError(f"{before} never all finished; finished: {self.finished}")

    def _finish(self, sub_query_id: int) -> None:
        with self._turn:
            self.finished.append(sub_query_id)
            self._turn.notify_all()

    async def __call__(self, sq: SubQuery, route: Route, parents: list[SubAnswer]) -> SubAnswer:
        with self._turn:
            self.asked.append(sq.id)
            self.parents_seen[sq.id] = [(p["sub_query"], p["answer"]) for p in parents]
        if sq.id == self.failing:
            await asyncio.to_thread(self._wait_for, self.order)
            raise ModelDown(f"the model is down for sub-query {sq.id}")
        await asyncio.to_thread(self._wait_for, self.order[: self.order.index(sq.id)])
        self._finish(sq.id)
        return answer(sq, f"first run's answer to {sq.id}")


@dataclass
class Working:
    """A `RunSubQuery` that answers at once and records what it was asked."""

    asked: list[int] = field(default_factory=list)
    parents_seen: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, sq: SubQuery, route: Route, parents: list[SubAnswer]) -> SubAnswer:
        with self._lock:
            self.asked.append(sq.id)
            self.parents_seen[sq.id] = [(p["sub_query"], p["answer"]) for p in parents]
        return answer(sq, f"resumed run's answer to {sq.id}")


@dataclass(frozen=True)
class Shape:
    """A DAG, the order its first run finishes in, and the sub-query whose model then fails."""

    parents: dict[int, tuple[int, ...]]
    finished: list[int]
    failing: int
    reordered: bool  # whether `finished` differs from the fixed order the tasks are called in

    def graph(self) -> QueryGraph:
        return QueryGraph(tuple(SubQuery(i, f"q{i}", p) for i, p in self.parents.items()))


SHAPES = {
    # 1 -> 2 -> 3: one order only, the control
    "chain": Shape({1: (), 2: (1,), 3: (2,)}, finished=[1, 2], failing=3, reordered=False),
    # 1 -> 2 -> 4 -> 6 and 1 -> 3 -> 5 -> 6: the right arm runs ahead, 4 fails
    "diamond": Shape(
        {1: (), 2: (1,), 3: (1,), 4: (2,), 5: (3,), 6: (4, 5)},
        finished=[1, 3, 5, 2],
        failing=4,
        reordered=True,
    ),
    # 1 -> 3 and 2 -> 4, apart: the second part runs ahead, 3 fails
    "independent parts": Shape(
        {1: (), 2: (), 3: (1,), 4: (2,)}, finished=[2, 4, 1], failing=3, reordered=True
    ),
}


def invoke(entry: Any, inputs: Any, config: RunnableConfig, sync: bool) -> Any:
    if sync:
        return entry.invoke(inputs, config)
    return asyncio.run(entry.ainvoke(inputs, config))


def routes(graph: QueryGraph) -> dict:
    return {"routes": [Route("expert", 1.0).to_dict() for _ in graph]}


@pytest.mark.parametrize("sync", [True, False], ids=["invoke", "ainvoke"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_a_resumed_run_asks_no_finished_sub_query_again_whatever_order_they_finished_in(
    shape: Shape, sync: bool
) -> None:
    graph = shape.graph()
    saver = InMemorySaver()
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}
    first = Turns(order=shape.finished, failing=shape.failing)
    entry = eager_entrypoint(graph, first, sync=sync).copy({"checkpointer": saver})
    with pytest.raises(ModelDown):
        invoke(entry, routes(graph), config, sync)
    assert first.finished == shape.finished  # the script ran as planned
    called_in = [i for i in start_order(graph) if i in shape.finished]
    assert (called_in != shape.finished) == shape.reordered

    resumed = Working()
    entry = eager_entrypoint(graph, resumed, sync=sync).copy({"checkpointer": saver})
    out = invoke(entry, None, config, sync)

    unfinished = [i for i in graph.ids if i not in shape.finished]
    assert sorted(resumed.asked) == unfinished, "a checkpointed sub-query was asked again"
    texts = {
        i: f"first run's answer to {i}" if i in shape.finished else f"resumed run's answer to {i}"
        for i in graph.ids
    }
    assert [(a["sub_query"], a["answer"]) for a in out] == list(texts.items())
    for i in resumed.asked:  # each got its own parents' answers, checkpointed or new
        assert resumed.parents_seen[i] == [(p, texts[p]) for p in graph[i].parents]


def diverging_graph() -> QueryGraph:
    # 1 -> 3..8 and 2 -> 9: six children wait on 1 while 9 is ready as soon as 2 is answered
    children = {i: (1,) for i in range(3, 9)}
    return QueryGraph(
        tuple(SubQuery(i, f"q{i}", p) for i, p in {1: (), 2: (), **children, 9: (2,)}.items())
    )


def within_a_node(entry: Any, sync: bool, config: RunnableConfig) -> Callable[[dict], Any]:
    """Run `entry` the way the execute node does: inside another runnable, which passes on
    `config` (here a small `max_concurrency`) to whatever runs within it."""

    def node(inputs: dict) -> Any:  # no `config` parameter: the entrypoint inherits it
        return entry.invoke(inputs)

    async def anode(inputs: dict) -> Any:
        return await entry.ainvoke(inputs)

    if sync:
        return lambda inputs: RunnableLambda(node).invoke(inputs, config)
    return lambda inputs: asyncio.run(RunnableLambda(anode).ainvoke(inputs, config))


def in_time(function: Callable[[dict], Any], inputs: dict) -> Any:
    """`function(inputs)`, failing the test instead of hanging it when it deadlocks."""
    done: dict[str, Any] = {}

    def work() -> None:
        try:
            done["out"] = function(inputs)
        except BaseException as exc:  # re-raised in the test's thread
            done["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(2 * WAIT)
    assert not worker.is_alive(), "the run deadlocked: no worker was left for a ready task"
    if "error" in done:
        raise done["error"]
    return done["out"]


@pytest.mark.parametrize("sync", [True, False], ids=["invoke", "ainvoke"])
def test_a_ready_sub_query_starts_while_more_children_wait_than_the_callers_max_concurrency(
    sync: bool,
) -> None:
    graph = diverging_graph()
    # 1 answers only once 9 has: 9 must start while 3..8 hold their workers waiting for 1
    run = Turns(order=[2, 9, 1, 3, 4, 5, 6, 7, 8])
    entry = eager_entrypoint(graph, run, sync=sync)
    out = in_time(within_a_node(entry, sync, {"max_concurrency": 2}), routes(graph))
    assert run.finished == [2, 9, 1, 3, 4, 5, 6, 7, 8]
    assert [a["sub_query"] for a in out] == list(graph.ids)
    assert run.parents_seen[9] == [(2, "first run's answer to 2")]


def test_the_tasks_are_called_parents_first_in_an_order_that_depends_on_the_graph_alone() -> None:
    for shape in SHAPES.values():
        graph = shape.graph()
        order = start_order(graph)
        assert sorted(order) == sorted(graph.ids)
        for child in graph.ids:
            assert all(order.index(p) < order.index(child) for p in graph[child].parents)
        listed_backwards = QueryGraph(tuple(reversed(graph.sub_queries)))
        assert start_order(listed_backwards) == order


class Crash(BaseException):
    """Stands for the process dying mid-run: no handler in the graph catches it, as none
    catches a kill (an expert's ordinary exception is retried, then base answers)."""


PARTS = ["alpha", "beta", "gamma", "delta"]
"""DECOMPOSITION's sub-queries 1 to 4, by the word each one's question holds."""
DECOMPOSITION = "<q>alpha</q><q>beta</q><q>gamma after #1</q><q>delta after #2</q>"


def part_of(prompt: str) -> int:
    """Which sub-query a prompt asks: its last line is the question (the context comes first),
    whose own word comes before its parent's answer."""
    last = prompt.splitlines()[-1]
    return min((last.find(word), i) for i, word in enumerate(PARTS, 1) if word in last)[1]


@dataclass
class ScriptedExpert:
    """An expert (an async function, as a `RunnableLambda`) that answers in `script.order`, by
    sub-query, and crashes on `script.failing` once all of those have answered; without a
    script it answers at once. A chat model cannot stand in here: LangChain's async chat models
    take a raised non-`Exception` for a result and fail on it with an `AttributeError`, which
    the execute node retries like any expert failure."""

    run: str
    script: Turns | None = None
    prompts: list[str] = field(default_factory=list)

    async def reply(self, messages: list[BaseMessage]) -> str:
        prompt = str(messages[-1].content)
        part, script = part_of(prompt), self.script
        self.prompts.append(prompt)
        if script is not None and part == script.failing:
            await asyncio.to_thread(script._wait_for, script.order)
            raise Crash(f"killed while sub-query {part} ran")
        if script is not None:
            await asyncio.to_thread(script._wait_for, script.order[: script.order.index(part)])
            script._finish(part)
        return f"{self.run} answer for {PARTS[part - 1]}"


def comp_llm(expert: ScriptedExpert, saver: InMemorySaver) -> Any:
    return create_compllm_graph(
        decomposer=decomposer(DECOMPOSITION),
        experts={"expert": RunnableLambda(expert.reply, name="expert")},
        router=lambda texts: [Route("expert", 1.0) for _ in texts],
        base=FakeChat(label="base", reply=lambda m: "the whole answer"),
    ).compile(checkpointer=saver)


@pytest.mark.parametrize("sync", [True, False], ids=["invoke", "ainvoke"])
def test_the_graph_resumed_after_a_crash_mid_execute_asks_no_answered_part_again(
    sync: bool,
) -> None:
    saver = InMemorySaver()
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}
    # beta, then delta (which needs beta), then alpha; gamma (needs alpha) crashes the run
    script = Turns(order=[2, 4, 1], failing=3)
    with pytest.raises(Crash):
        invoke(comp_llm(ScriptedExpert("first", script), saver), {"query": "q?"}, config, sync)
    assert script.finished == [2, 4, 1]

    again = ScriptedExpert("resumed")
    out = invoke(comp_llm(again, saver), None, config, sync)
    assert [part_of(p) for p in again.prompts] == [3], "an answered part was asked again"
    assert "A: first answer for alpha" in again.prompts[0]  # its parent's checkpointed answer
    assert [(a["sub_query"], a["answer"]) for a in out["sub_answers"]] == [
        (1, "first answer for alpha"),
        (2, "first answer for beta"),
        (3, "resumed answer for gamma"),
        (4, "first answer for delta"),
    ]
