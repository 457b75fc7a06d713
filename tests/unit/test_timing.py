"""StageTimer: seconds and tokens per stage from LangChain callbacks, on fake models."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult, Generation, LLMResult

from compllm_graph import DeviceLimits, create_compllm_graph
from compllm_graph.evaluation.timing import StageTimer, is_stage, usage_of
from tests.fakes import FakeChat, keyword_router

DECOMPOSITION = "<q>chem a</q><q>bio b</q>"
QUERY = "chem a and bio b?"


def words(messages: list[BaseMessage]) -> int:
    return sum(len(str(m.content).split()) for m in messages)


class CountingChat(FakeChat):
    """A FakeChat that reports usage: prompt tokens = words in the messages, generated tokens =
    words in the reply."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        text = str(super()._answer(messages).generations[0].message.content)
        usage = {
            "input_tokens": words(messages),
            "output_tokens": len(text.split()),
            "total_tokens": words(messages) + len(text.split()),
        }
        return ChatResult(
            generations=[ChatGeneration(message=AIMessage(text, usage_metadata=usage))]
        )


def graph(delay: float = 0.0, limits: DeviceLimits | None = None) -> Any:
    return create_compllm_graph(
        decomposer=CountingChat(label="decomposer", reply=lambda _: DECOMPOSITION),
        experts={
            "chemistry": CountingChat(label="c", reply=lambda _: "one two three", delay=delay),
            "biology": CountingChat(label="b", reply=lambda _: "four five", delay=delay),
        },
        router=keyword_router({"chem": "chemistry", "bio": "biology"}),
        base=CountingChat(label="base", reply=lambda _: "six"),
        device_limits=limits,
    ).compile()


def test_each_stage_gets_its_own_calls_and_tokens() -> None:
    timer = StageTimer()
    graph().invoke({"query": QUERY}, {"callbacks": [timer]})
    stages = timer.stages()
    order = list(stages)
    assert order[:3] == ["decompose", "route", "execute"]
    # the two sub-queries run at once: either may start first
    assert sorted(order[3:5]) == ["sub_query_1", "sub_query_2"]
    assert order[5:] == ["aggregate"]
    measured = ["decompose", "route", "execute", "sub_query_1", "sub_query_2"]
    # whether the aggregator is asked is the node's own rule
    assert [stages[s].generated_tokens for s in measured] == [3, 0, 0, 3, 2]
    assert [stages[s].calls for s in measured] == [1, 0, 0, 1, 1]
    assert stages["aggregate"].generated_tokens == stages["aggregate"].calls  # "six"
    assert stages["decompose"].prompt_tokens > len(QUERY.split())  # the system prompt too
    assert stages["sub_query_1"].prompt_tokens == 2  # "chem a"
    assert all(f.calls_without_usage == 0 and f.failed_calls == 0 for f in stages.values())


def test_sequential_sub_queries_wait_and_concurrent_ones_overlap() -> None:
    delay = 0.3
    one = DeviceLimits({"device": 1}, default_device="device")
    timed = {}
    for name, limits in (("seq", one), ("concurrent", None)):
        timed[name] = StageTimer()
        graph(delay, limits).invoke({"query": QUERY}, {"callbacks": [timed[name]]})
    seq, concurrent = timed["seq"].stages(), timed["concurrent"].stages()
    subs = ("sub_query_1", "sub_query_2")
    slot = one.semaphore(None)
    assert slot is not None and slot.peak == 1
    assert seq["execute"].seconds >= sum(seq[s].model_seconds for s in subs) >= 2 * delay
    # the one that waited for the slot: its wall time holds the other's call, its model time not
    waited = max(subs, key=lambda s: seq[s].seconds)
    assert seq[waited].seconds >= 2 * delay > seq[waited].model_seconds
    assert concurrent["execute"].seconds < sum(concurrent[s].model_seconds for s in subs)


def test_the_async_path_is_timed_too() -> None:
    timer = StageTimer()
    asyncio.run(graph().ainvoke({"query": QUERY}, {"callbacks": [timer]}))
    stages = timer.stages()
    assert stages["sub_query_2"].generated_tokens == 2
    assert stages["execute"].seconds >= stages["sub_query_2"].seconds


@pytest.mark.parametrize("run", ["invoke", "ainvoke"])
def test_a_dependent_sub_query_is_timed_from_its_parents_answer(run: str) -> None:
    """The eager scheduler calls a child's task before its parent answers; the child's stage
    starts when the parent has answered, so its wall time does not hold the parent's."""
    delay = 0.4
    chain = create_compllm_graph(
        decomposer=CountingChat(
            label="decomposer", reply=lambda _: "<q>chem a</q><q>bio #1</q><dep>1->2</dep>"
        ),
        experts={
            "chemistry": CountingChat(label="c", reply=lambda _: "one", delay=delay),
            "biology": CountingChat(label="b", reply=lambda _: "two"),
        },
        router=keyword_router({"chem": "chemistry", "bio": "biology"}),
        base=CountingChat(label="base", reply=lambda _: "six"),
    ).compile()
    timer = StageTimer()
    config: Any = {"callbacks": [timer]}
    if run == "invoke":
        chain.invoke({"query": QUERY}, config)
    else:
        asyncio.run(chain.ainvoke({"query": QUERY}, config))
    stages = timer.stages()
    assert stages["sub_query_1"].seconds >= delay
    assert stages["sub_query_2"].seconds < delay / 2, stages["sub_query_2"]
    assert stages["execute"].seconds >= delay


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chat_result(prompt: int, generated: int) -> LLMResult:
    usage = {"input_tokens": prompt, "output_tokens": generated, "total_tokens": prompt + generated}
    return LLMResult(generations=[[ChatGeneration(message=AIMessage("x", usage_metadata=usage))]])


def test_spans_calls_failures_and_missing_usage_on_a_fake_clock() -> None:
    clock = Clock()
    timer = StageTimer(outside="answer", clock=clock)
    node = {"langgraph_node": "aggregate"}
    outer, inner, call, failed, bare = (uuid4() for _ in range(5))
    timer.on_chain_start({}, {}, run_id=outer, metadata=node)
    clock.now = 1.0
    timer.on_chain_start({}, {}, run_id=inner, metadata=node)  # the node's own runnable
    timer.on_chat_model_start({}, [], run_id=call, metadata=node)
    clock.now = 3.0
    timer.on_llm_end(chat_result(10, 4), run_id=call)
    timer.on_chat_model_start({}, [], run_id=failed, metadata=node)
    clock.now = 3.5
    timer.on_llm_error(RuntimeError("down"), run_id=failed)
    timer.on_chain_end({}, run_id=inner)
    clock.now = 4.0
    timer.on_chain_error(RuntimeError("x"), run_id=outer)
    timer.on_chat_model_start({}, [], run_id=bare)  # outside any node
    clock.now = 6.0
    timer.on_llm_end(LLMResult(generations=[[ChatGeneration(message=AIMessage("y"))]]), run_id=bare)
    stages = timer.stages()
    assert list(stages) == ["aggregate", "answer"]
    aggregate = stages["aggregate"].to_dict()
    assert aggregate == {
        "seconds": 4.0,
        "model_seconds": 2.5,
        "prompt_tokens": 10,
        "generated_tokens": 4,
        "calls": 2,
        "calls_without_usage": 0,
        "failed_calls": 1,
    }
    assert stages["answer"].seconds == stages["answer"].model_seconds == 2.0
    assert stages["answer"].calls_without_usage == 1


def test_runs_of_the_schedulers_own_are_not_stages() -> None:
    clock = Clock()
    timer = StageTimer(clock=clock)
    run_id = uuid4()
    timer.on_chain_start({}, {}, run_id=run_id, metadata={"langgraph_node": "execute_eager"})
    timer.on_chain_end({}, run_id=run_id)
    timer.on_llm_end(chat_result(1, 1), run_id=uuid4())  # an end with no start is ignored
    assert timer.stages() == {}
    assert [is_stage(n) for n in ("execute", "sub_query_12", "leaves", "sub_query_")] == [
        True,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (chat_result(7, 2), (7, 2)),
        (
            LLMResult(
                generations=[[Generation(text="x")]],
                llm_output={"token_usage": {"prompt_tokens": 5, "completion_tokens": 3}},
            ),
            (5, 3),
        ),
        (LLMResult(generations=[[Generation(text="x")]]), None),
        (LLMResult(generations=[]), None),
    ],
)
def test_usage_of(response: LLMResult, expected: tuple[int, int] | None) -> None:
    assert usage_of(response) == expected
