"""A durable run for `tests/integration/test_durable.py`, in a process of its own (SIGKILLed).

    python tests/durable_run.py DB LOG sync|async eager|waves start|resume

Sub-queries 1 and 2 answer fast; 3 (needs 1) and 4 (needs 2) are slow, so a kill after two
answers lands while 3 and 4 run. Every model call is appended to LOG. `resume` continues the
thread from the checkpoint; the last line printed is the answer as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
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


def main() -> None:
    db, log, kind, scheduler, mode = sys.argv[1:6]
    config: Any = {"configurable": {"thread_id": "durable"}}
    inputs = None if mode == "resume" else {"query": "four things?"}
    if kind == "sync":
        from langgraph.checkpoint.sqlite import SqliteSaver

        saver = SqliteSaver(sqlite3.connect(db, check_same_thread=False))
        out = graph(log, scheduler, saver).invoke(inputs, config, durability="sync")
    else:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async def run() -> Any:
            async with AsyncSqliteSaver.from_conn_string(db) as saver:
                return await graph(log, scheduler, saver).ainvoke(inputs, config, durability="sync")

        out = asyncio.run(run())
    print(json.dumps({"answer": out["answer"]}))


if __name__ == "__main__":
    main()
