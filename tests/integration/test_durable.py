"""Durable runs as they happen: a process killed with SIGKILL mid-query, resumed in a new one."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.runnables import RunnableConfig

pytest.importorskip(
    "langgraph.checkpoint.sqlite",
    reason="langgraph-checkpoint-sqlite is not installed: pip install 'compllm-graph[durable]'",
)

from tests.durable_run import kill_then_resume


@pytest.mark.parametrize("scheduler", ["eager", "waves"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_killed_run_resumes_without_redoing_finished_work(
    tmp_path: Path, kind: str, scheduler: str
) -> None:
    kill_then_resume(str(tmp_path / "runs.sqlite"), tmp_path / "calls.log", kind, scheduler)


@pytest.mark.parametrize("scheduler", ["eager", "waves"])
def test_the_sync_sqlite_saver_works_with_invoke_and_stream(scheduler: str) -> None:
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    from compllm_graph import Route, create_compllm_graph
    from tests.fakes import FakeChat, decomposer

    saver = SqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))
    graph = create_compllm_graph(
        decomposer=decomposer("<q>a</q><q>b #1</q>"),
        experts={},
        router=lambda texts: [Route(None) for _ in texts],
        base=FakeChat(label="base"),
        scheduler=scheduler,  # type: ignore[arg-type]
    ).compile(checkpointer=saver)
    config: RunnableConfig = {"configurable": {"thread_id": scheduler}}
    assert graph.invoke({"query": "q"}, config)["answer"]
    events = list(graph.stream({"query": "again"}, config, stream_mode="custom"))
    assert events[-1]["event"] == "answer"
