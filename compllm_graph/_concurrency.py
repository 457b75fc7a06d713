"""`PrioritySemaphore`: device and endpoint capacity shared by threads and event loops alike."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager


class _Waiter:
    __slots__ = ("granted", "wake")

    def __init__(self, wake: Callable[[], object]) -> None:
        self.wake = wake
        self.granted = False


def _grant(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class PrioritySemaphore:
    """A counting semaphore whose waiters are served highest priority first, then in arrival order.

    It is thread-safe and not bound to one event loop: LangGraph runs sync nodes in threads,
    `run_sync` starts loops of its own and `langgraph dev` has its own loop, while a device's (or
    a server's) capacity is shared by all of them. Coroutines `await acquire()`; threads call
    `acquire_blocking()`.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._free = capacity
        self._peak = 0
        self._lock = threading.Lock()
        self._waiters: list[tuple[float, int, _Waiter]] = []
        self._seq = itertools.count()

    @property
    def in_use(self) -> int:
        """Slots held now."""
        return self.capacity - self._free

    @property
    def peak(self) -> int:
        """The most slots held at once so far."""
        return self._peak

    def _take_or_queue(self, priority: float, wake: Callable[[], object]) -> _Waiter | None:
        """Take a free slot (None) or queue a waiter that `wake` will notify."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                self._peak = max(self._peak, self.in_use)
                return None
            waiter = _Waiter(wake)
            heapq.heappush(self._waiters, (-priority, next(self._seq), waiter))
            return waiter

    async def acquire(self, priority: float = 0.0) -> None:
        """Wait, without blocking the loop, for a slot."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = self._take_or_queue(priority, lambda: loop.call_soon_threadsafe(_grant, future))
        if waiter is None:
            return
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters = [w for w in self._waiters if w[2] is not waiter]
                    heapq.heapify(self._waiters)
            if granted:  # the slot was handed over just as we were cancelled: pass it on
                self.release()
            raise

    def acquire_blocking(self, priority: float = 0.0) -> None:
        """Block this thread until a slot is free."""
        event = threading.Event()
        if self._take_or_queue(priority, event.set) is not None:
            event.wait()

    def release(self) -> None:
        """Free a slot, handing it straight to the first waiter if there is one."""
        with self._lock:
            if not self._waiters:
                self._free = min(self._free + 1, self.capacity)
                return
            _, _, waiter = heapq.heappop(self._waiters)
            waiter.granted = True
        waiter.wake()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold a slot for a `with` block (blocking)."""
        self.acquire_blocking()
        try:
            yield
        finally:
            self.release()

    @asynccontextmanager
    async def ahold(self) -> AsyncIterator[None]:
        """Hold a slot for an `async with` block."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()


__all__ = ["PrioritySemaphore"]
