import asyncio
import threading
import time

import pytest

from compllm_graph._concurrency import PrioritySemaphore


async def test_waiters_are_served_highest_priority_first():
    semaphore = PrioritySemaphore(1)
    await semaphore.acquire()
    order = []

    async def wait(priority):
        await semaphore.acquire(priority)
        order.append(priority)
        semaphore.release()

    waiters = [asyncio.create_task(wait(p)) for p in (1, 3, 2)]
    await asyncio.sleep(0.01)
    semaphore.release()
    await asyncio.gather(*waiters)
    assert order == [3, 2, 1]


async def test_cancelled_waiter_does_not_leak_a_slot():
    semaphore = PrioritySemaphore(1)
    await semaphore.acquire()
    waiter = asyncio.create_task(semaphore.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    semaphore.release()
    await asyncio.wait_for(semaphore.acquire(), 1)
    assert semaphore.in_use == 1


def test_capacity_holds_across_threads_with_their_own_event_loops():
    semaphore = PrioritySemaphore(2)
    active, peak, lock = [0], [0], threading.Lock()

    async def job():
        await semaphore.acquire()
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        await asyncio.sleep(0.05)
        with lock:
            active[0] -= 1
        semaphore.release()

    threads = [threading.Thread(target=asyncio.run, args=(job(),)) for _ in range(6)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 2
    assert time.perf_counter() - started >= 0.15
