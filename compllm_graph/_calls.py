"""One model call under a device slot and a deadline, where the slot lasts as long as the call.

A timeout can stop a coroutine but not a thread. A model with a native async API (`_agenerate`,
an OpenAI client, the local engines, whose cancelled requests stop at their next token) is
cancelled when its time is up, and its slot is freed once the cancellation has run. A sync-only
model (only `_generate`) runs `invoke` on a daemon thread of its own: on timeout the caller
moves on, but the thread keeps its device slot until the call really returns, so a device never
runs more calls than its capacity, and a hung thread never keeps the interpreter from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableBinding, RunnableLambda, RunnableSequence

from compllm_graph._concurrency import PrioritySemaphore


def cancellable(model: Runnable) -> bool:
    """Whether `model.ainvoke` runs natively on the event loop, so that cancelling it stops it.

    LangChain runs a model without an async implementation on a worker thread, which outlives
    a cancelled await. Unknown runnables count as not cancellable: running them on a thread of
    our own costs nothing but the cancellation they could not honour anyway.
    """
    if isinstance(model, RunnableBinding):
        return cancellable(model.bound)
    if isinstance(model, RunnableSequence):
        return all(cancellable(step) for step in model.steps)
    if isinstance(model, RunnableLambda):  # a function step (a prompt's prefix) is quick
        return True
    if isinstance(model, BaseChatModel):
        cls = type(model)
        return (
            cls._agenerate is not BaseChatModel._agenerate
            or cls._astream is not BaseChatModel._astream
        )
    return type(model).ainvoke is not Runnable.ainvoke


def _on_a_thread(model: Runnable, messages: Any) -> concurrent.futures.Future[Any]:
    """`model.invoke(messages)` on a daemon thread; the future cannot be cancelled once made."""
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()
    done.set_running_or_notify_cancel()  # so a caller's cancel() leaves it running, not "done"
    context = contextvars.copy_context()  # LangChain's callbacks and config travel with it

    def work() -> None:
        try:
            done.set_result(context.run(model.invoke, messages))
        except BaseException as exc:  # the caller's await receives it
            done.set_exception(exc)

    threading.Thread(target=work, daemon=True, name="compllm-sync-model").start()
    return done


class _Call:
    """A started call: `waiting` to await, and `when_ended` for the call itself ending."""

    def __init__(self, model: Runnable, messages: Any) -> None:
        if cancellable(model):
            task = asyncio.ensure_future(model.ainvoke(messages))
            self.waiting: asyncio.Future[Any] = task
            self._ended: asyncio.Future[Any] | concurrent.futures.Future[Any] = task
        else:
            work = _on_a_thread(model, messages)
            self.waiting, self._ended = asyncio.wrap_future(work), work

    def when_ended(self, callback: Callable[[], object]) -> None:
        """Run `callback` once the call has ended (at once if it has), even if abandoned."""
        self._ended.add_done_callback(lambda _: callback())

    def abandon(self) -> None:
        """Cancel the call where it can be cancelled; a thread runs on to its end."""
        self.waiting.cancel()


async def call_within(
    model: Runnable,
    messages: Any,
    *,
    timeout: float | None,
    semaphore: PrioritySemaphore | None = None,
    priority: float = 0.0,
) -> Any:
    """Call `model` under `semaphore` (waiting for a slot counts against `timeout`).

    Returns:
        The model's reply.

    Raises:
        TimeoutError: no slot came free, or the call did not finish, within `timeout` seconds.
            The call is cancelled where it can be; otherwise its slot stays held until it ends.
        Exception: whatever the model raised.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    if semaphore is not None:
        try:
            await asyncio.wait_for(semaphore.acquire(priority), timeout)
        except TimeoutError:
            raise TimeoutError(f"no device slot came free within {timeout} s") from None
    try:
        call = _Call(model, messages)
    except BaseException:
        if semaphore is not None:
            semaphore.release()
        raise
    if semaphore is not None:
        call.when_ended(semaphore.release)
    left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    try:
        finished, _ = await asyncio.wait({call.waiting}, timeout=left)
    except asyncio.CancelledError:
        call.abandon()
        raise
    if not finished:
        call.abandon()
        raise TimeoutError(f"timed out after {timeout} s")
    return call.waiting.result()


__all__ = ["call_within", "cancellable"]
