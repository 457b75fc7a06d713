"""A durable run for `tests/integration/test_durable.py`, in a process of its own (SIGKILLed).

    python tests/durable_run.py DB LOG sync|async eager|waves start|resume

DB is a SQLite file (`SqliteSaver`, `AsyncSqliteSaver`) or a postgresql:// URL (`PostgresSaver`,
`AsyncPostgresSaver`, for `tests/integration/test_durable_postgres.py`; docs/durable-runs.md's
recipe: `from_conn_string`, then `setup()`).

Sub-queries 1 and 2 answer fast; 3 (needs 1) and 4 (needs 2) are slow, so a kill after two
answers lands while 3 and 4 run. Every model call is appended to LOG. `resume` continues the
thread from the checkpoint; the last line printed is the answer as JSON.

`kill_then_resume` is the test both files run: SIGKILL mid-run, resume, nothing redone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.messages import BaseMessage

from compllm_graph import Route, create_compllm_graph
from tests.fakes import FakeChat

DECOMPOSITION = "<q>fast one</q><q>fast two</q><q>slow three #1</q><q>slow four #2</q>"


class Logged(FakeChat):
    """Appends `start`/`end` of every call to the log; slow sub-queries take `slow` seconds."""

    log: str = ""
    slow: float = 0.0

    def _write(self, line: str) -> None:
        with open(self.log, "a") as handle:
            handle.write(line + "\n")

    def _timed(self, messages: list[BaseMessage]) -> float:
        text = str(messages[-1].content)
        self._write(f"start {self.label} {text.splitlines()[-1]}")
        return self.slow if "slow" in text else 0.2

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        time.sleep(self._timed(messages))
        result = super()._generate(messages, stop, run_manager, **kw)
        self._write(f"end {self.label} {str(messages[-1].content).splitlines()[-1]}")
        return result

    async def _agenerate(self, messages: Any, *args: Any, **kw: Any) -> Any:
        await asyncio.sleep(self._timed(messages))
        result = await super()._agenerate(messages, *args, **kw)
        self._write(f"end {self.label} {str(messages[-1].content).splitlines()[-1]}")
        return result


def graph(log: str, scheduler: str, checkpointer: Any) -> Any:
    return create_compllm_graph(
        decomposer=Logged(label="decomposer", log=log, reply=lambda m: DECOMPOSITION),
        experts={"expert": Logged(label="expert", log=log, slow=3.0)},
        router=lambda texts: [Route("expert", 1.0) for _ in texts],
        base=Logged(label="base", log=log, reply=lambda m: "the answer"),
        scheduler=scheduler,  # type: ignore[arg-type]
    ).compile(checkpointer=checkpointer)


@contextmanager
def sync_saver(db: str) -> Iterator[Any]:
    if db.startswith("postgresql://"):
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(db) as saver:
            saver.setup()
            yield saver
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        yield SqliteSaver(sqlite3.connect(db, check_same_thread=False))


@asynccontextmanager
async def async_saver(db: str) -> AsyncIterator[Any]:
    if db.startswith("postgresql://"):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(db) as saver:
            await saver.setup()
            yield saver
    else:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(db) as saver:
            yield saver


def main() -> None:
    db, log, kind, scheduler, mode = sys.argv[1:6]
    config: Any = {"configurable": {"thread_id": "durable"}}
    inputs = None if mode == "resume" else {"query": "four things?"}
    if kind == "sync":
        with sync_saver(db) as saver:
            out = graph(log, scheduler, saver).invoke(inputs, config, durability="sync")
    else:

        async def run() -> Any:
            async with async_saver(db) as saver:
                return await graph(log, scheduler, saver).ainvoke(inputs, config, durability="sync")

        out = asyncio.run(run())
    print(json.dumps({"answer": out["answer"]}))


def _command(db: str, log: Path, kind: str, scheduler: str, mode: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), db, str(log), kind, scheduler, mode]


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def kill_then_resume(db: str, log: Path, kind: str, scheduler: str) -> None:
    """SIGKILL a run once two sub-queries are answered, resume it in a new process, and assert
    that neither the decomposition nor a finished sub-query ran again, and the answer came."""
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


if __name__ == "__main__":
    main()
