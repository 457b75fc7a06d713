"""LangGraph Studio: `langgraph dev` serves `langgraph.json`'s default graph offline.

Starts the real dev server (in-memory runtime) on 127.0.0.1, runs a query over its HTTP API and
reads the per-sub-query events Studio shows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from compllm_graph.models import SMALL_MODEL
from tests.conftest import require_smollm2
from tests.servers import free_port, wait_until_serving

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUESTION = "What is the boiling point of water in Kelvin, and what is 7 times 8?"


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_smollm2()
    url = f"http://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",  # offline: no telemetry, no trace upload
        "LANGSMITH_TRACING": "false",
        "COMPLLM_MODEL": SMALL_MODEL,  # the test model, not the embedded default
        "COMPLLM_MAX_NEW_TOKENS": "16",  # keep the test short
        "COMPLLM_DECOMPOSER_BEAMS": "2",  # beam search through the served graph
    }
    command = [
        str(Path(sys.executable).parent / "langgraph"),
        "dev",
        "--no-browser",
        "--no-reload",
        "--host",
        "127.0.0.1",
        "--port",
        url.rsplit(":", 1)[1],
    ]
    log = tmp_path_factory.mktemp("studio") / "langgraph-dev.log"
    with open(log, "wb") as out:
        # Its own session, so the server and its workers are stopped together.
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until_serving(process, f"{url}/ok", timeout=600)
            yield url
        except RuntimeError as exc:
            raise RuntimeError(f"langgraph dev {exc}; log:\n{log.read_text()[-4000:]}") from exc
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def _events(url: str, body: dict) -> list[tuple[str, Any]]:
    """Run over `/runs/stream` and return the server-sent events as (event, data) pairs."""
    events = []
    with httpx.stream("POST", f"{url}/runs/stream", json=body, timeout=600) as response:
        response.raise_for_status()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line.removeprefix("data:"))))
    return events


def test_graph_is_served(studio: str) -> None:
    assistants = httpx.post(f"{studio}/assistants/search", json={}).json()
    assistant = next(a for a in assistants if a["graph_id"] == "compllm")
    schemas = httpx.get(f"{studio}/assistants/{assistant['assistant_id']}/schemas").json()
    assert "query" in schemas["input_schema"]["properties"]


def test_run_answers_and_streams_sub_query_events(studio: str) -> None:
    body = {
        "assistant_id": "compllm",
        "input": {"query": QUESTION},
        "stream_mode": ["custom", "values"],
    }
    events = _events(studio, body)
    custom = [data for event, data in events if event == "custom"]
    kinds = [e["event"] for e in custom if isinstance(e, dict)]
    assert kinds[0] == "decomposition"
    final = next(data for event, data in reversed(events) if event == "values")
    assert isinstance(final, dict)
    sub_queries = final["query_graph"]["sub_queries"]
    assert kinds.count("route") == len(sub_queries) == kinds.count("sub_query_end")
    assert len(final["sub_answers"]) == len(sub_queries)
    assert isinstance(final["answer"], str) and final["answer"]
    assert kinds[-1] == "answer"
    assert custom[-1]["answer"] == final["answer"]
