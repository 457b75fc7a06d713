"""A hung sync-only model never keeps the interpreter from exiting (a second interpreter, on the
fakes of `tests/unit/test_timeouts.py`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

HUNG_PROCESS = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from compllm_graph import create_compllm_graph
    from compllm_graph.nodes.execute import ExpertPolicy
    from tests.fakes import FakeChat, decomposer, keyword_router
    from tests.unit.test_timeouts import HangingSyncChat

    graph = create_compllm_graph(
        decomposer=decomposer("<q>chem a</q>"),
        experts={{"chemistry": HangingSyncChat(hang=60.0)}},
        router=keyword_router({{"chem": "chemistry"}}),
        base=FakeChat(label="base"),
        expert_policy=ExpertPolicy(timeout=0.5, retries=0),
    ).compile()
    print(graph.invoke({{"query": "q"}})["answer"], flush=True)
    """
)


@pytest.mark.parametrize("how", ["invoke", "ainvoke"])
def test_a_hung_sync_model_does_not_keep_the_process_from_exiting(how: str) -> None:
    script = HUNG_PROCESS.format(root=str(Path(__file__).resolve().parents[2]))
    if how == "ainvoke":
        script = script.replace(
            'print(graph.invoke({"query": "q"})["answer"], flush=True)',
            "import asyncio\n"
            'print(asyncio.run(graph.ainvoke({"query": "q"}))["answer"], flush=True)',
        )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50
    )
    took = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert "base answer to: chem a" in done.stdout
    assert took < 20, f"the process took {took:.0f} s to exit with a thread hung for 60 s"
