"""The unit tier: fakes in one process."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="package")
def one_faiss_thread() -> Iterator[None]:
    """FAISS on one OpenMP thread while the unit tests run.

    Its k-means and searches run on OpenMP threads that spin-wait for each other: on a busy
    machine a 3-point k-means then takes about 100 ms instead of 0.1 ms, and the store tests run
    dozens. Unit data is tiny, so one thread is enough. Set through FAISS rather than
    `OMP_NUM_THREADS`, which the processes that later tiers start would inherit.
    """
    if importlib.util.find_spec("faiss") is None:  # the core-only venv
        yield
        return
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)
