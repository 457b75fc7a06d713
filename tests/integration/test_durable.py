"""Durable runs as they happen: a process killed with SIGKILL mid-query, resumed in a new one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableConfig

pytest.importorskip(
    "langgraph.checkpoint.sqlite",
    reason="langgraph-checkpoint-sqlite is not installed: pip install 'compllm-graph[durable]'",
)

SCRIPT = Path(__file__).resolve().parents[1] / "durable_run.py"


def _command(db: Path, log: Path, kind: str, scheduler: str, mode: str) -> list[str]:
    return [sys.executable, str(SCRIPT), str(db), str(log), kind, scheduler, mode]


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("scheduler", ["eager", "waves"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_killed_run_resumes_without_redoing_finished_work(
    tmp_path: Path, kind: str, scheduler: str
) -> None:
    db, log = tmp_path / "runs.sqlite", tmp_path / "calls.log"
    first = subprocess.Popen(_command(db, log, kind, scheduler, "start"))
    deadline = time.monotonic() + 60
    while sum(line.startswith("end expert") for line in _lines(log)) < 2:
        assert first.poll() is None and time.monotonic() < deadline, _lines(log)
        time.sleep(0.05)
    time.sleep(0.3)  # past the checkpoint write of the second answer
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    before = _lines(log)
    finished = {line.removeprefix("end ") for line in before if line.startswith("end expert")}

    done = subprocess.run(
        _command(db, log, kind, scheduler, "resume"), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    again = _lines(log)[len(before) :]
    assert not [line for line in again if "decomposer" in line], "the decomposition ran again"
    restarted = {line.removeprefix("start ") for line in again if line.startswith("start expert")}
    assert not finished & restarted, f"finished sub-queries ran again: {finished & restarted}"
    # the resumed run reaches the aggregator, whose reply is the answer (no check_aggregate)
    answer = json.loads(done.stdout.strip().splitlines()[-1])["answer"]
    assert answer == "the answer", answer


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
