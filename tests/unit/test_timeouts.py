"""A timed-out call keeps its device slot until it really ends; queries still return near their
timeout. (A hung sync-only model never keeps the interpreter from exiting:
`tests/integration/test_process_exit.py`, which runs a second interpreter.)"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda

from compllm_graph import create_compllm_graph
from compllm_graph._calls import call_within, cancellable
from compllm_graph._concurrency import PrioritySemaphore
from compllm_graph.nodes.execute import ExpertPolicy
from compllm_graph.scheduling import DeviceLimits
from tests.fakes import FakeChat, decomposer, keyword_router


class HangingSyncChat(BaseChatModel):
    """Only `_generate`: hangs until `release` is set or `hang` seconds pass, counting how many
    calls run at once."""

    hang: float = 30.0
    running: int = 0
    peak: int = 0
    ended: int = 0
    lock: Any = None
    release: Any = None

    def model_post_init(self, context: Any) -> None:
        self.lock = threading.Lock()
        self.release = threading.Event()

    @property
    def _llm_type(self) -> str:
        return "hanging-sync"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            self.release.wait(self.hang)
        finally:
            with self.lock:
                self.running -= 1
                self.ended += 1
        return ChatResult(generations=[ChatGeneration(message=AIMessage("late"))])


def test_sync_only_models_are_told_apart_from_cancellable_ones():
    pytest.importorskip("faiss", reason="with_system_prompt needs the [router] extra")
    from compllm_graph.expert_store.serving import with_system_prompt

    assert not cancellable(HangingSyncChat())
    assert cancellable(FakeChat())
    assert cancellable(with_system_prompt(FakeChat(), "Be brief."))
    assert not cancellable(with_system_prompt(HangingSyncChat(), "Be brief."))
    assert cancellable(FakeChat().bind(stop=["\n"]))
    assert not cancellable(RunnableLambda(lambda x: x) | HangingSyncChat())


async def _eventually(check: Callable[[], bool], within: float = 10.0) -> bool:
    """Whether `check()` comes true within `within` seconds, the event loop running meanwhile."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_a_timed_out_sync_call_keeps_its_slot_until_it_returns():
    model, slots = HangingSyncChat(), PrioritySemaphore(1)
    with pytest.raises(TimeoutError):
        await call_within(model, "hi", timeout=0.1, semaphore=slots)
    assert slots.in_use == 1, "the thread still runs on the device"
    with pytest.raises(TimeoutError, match="no device slot came free"):
        await call_within(model, "hi", timeout=0.1, semaphore=slots)
    assert model.ended == 0 and slots.in_use == 1
    model.release.set()  # the hung call returns now
    assert await _eventually(lambda: model.ended == 1 and slots.in_use == 0)
    assert model.peak == 1


async def test_a_timed_out_async_call_is_cancelled_and_frees_its_slot():
    slots = PrioritySemaphore(1)
    with pytest.raises(TimeoutError):
        await call_within(FakeChat(delay=5.0), "hi", timeout=0.1, semaphore=slots)
    await asyncio.sleep(0.05)  # the cancellation runs
    assert slots.in_use == 0


@pytest.mark.parametrize("scheduler", ["eager", "waves"])
async def test_a_hung_sync_expert_never_runs_more_calls_than_its_device_holds(scheduler):
    hung = HangingSyncChat()
    graph = create_compllm_graph(
        decomposer=decomposer("<q>chem a</q><q>chem b</q>"),
        experts={"chemistry": hung},
        router=keyword_router({"chem": "chemistry"}),
        base=FakeChat(label="base"),
        device_limits=DeviceLimits({"gpu": 1, "cpu": 4}, {"chemistry": "gpu", "base": "cpu"}),
        expert_policy=ExpertPolicy(timeout=0.2, retries=1),
        scheduler=scheduler,
    ).compile()
    started = time.perf_counter()
    try:
        outs = await asyncio.gather(*(graph.ainvoke({"query": f"q{i}"}) for i in range(3)))
    finally:
        hung.release.set()
    took = time.perf_counter() - started
    assert hung.peak == 1, "a timed-out call still occupies the device"
    assert took < 2.5, f"queries return near their timeout (took {took:.1f} s)"
    for out in outs:
        assert all(a["expert"] is None and a["answer"] for a in out["sub_answers"])
        assert all(
            "timed out" in r["fallback_reason"] or "slot" in r["fallback_reason"]
            for r in out["routes"]
        )


def test_base_on_the_hung_device_leaves_the_part_unanswered_near_its_timeout():
    hung = HangingSyncChat()
    graph = create_compllm_graph(
        decomposer=decomposer("<q>chem a</q><q>b</q>"),
        experts={"chemistry": hung},
        router=keyword_router({"chem": "chemistry"}),
        base=FakeChat(label="base"),
        device_limits=DeviceLimits({"gpu": 1}, default_device="gpu"),
        expert_policy=ExpertPolicy(timeout=0.2, retries=0),
    ).compile()
    started = time.perf_counter()
    try:
        out = graph.invoke({"query": "q"})
    finally:
        hung.release.set()
    assert time.perf_counter() - started < 2.0
    first = out["sub_answers"][0]
    assert first["answer"] == "" and "no device slot came free" in first["fallback_reason"]
    assert "Could not answer: [1]" in out["answer"]
