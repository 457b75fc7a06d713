"""`compllm serve --graph` as a server process: the fake-model graph of `tests.graph_app` under
50 concurrent clients, some of which leave, and ChatOpenAI in a LangChain chain; then the
default graph on SmolLM2, asked through the OpenAI client and ChatOpenAI.
"""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from compllm_graph.models import SMALL_MODEL
from compllm_graph.serve_graph import DETAILS_FIELD
from tests.conftest import require_smollm2
from tests.graph_app import expected

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLIENTS = 50
LIMIT = 8  # graph runs at once on the server


def read_url(process: subprocess.Popen[str], timeout: float) -> str:
    """Wait for the server's `compllm serve: NAME at http://…/v1` line."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stdout or []:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line.startswith("compllm serve:"):
            return line.rsplit(" at ", 1)[1].strip()
    raise RuntimeError(f"compllm serve --graph did not start (exit code {process.poll()})")


@contextmanager
def start(args: list[str], log: Path, timeout: float) -> Iterator[tuple[str, int]]:
    """Run `python -m compllm_graph.cli serve ARGS --port 0`; yields its URL and process id."""
    command = [sys.executable, "-m", "compllm_graph.cli", "serve", *args, "--port", "0"]
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            yield read_url(process, timeout), process.pid
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; stderr:\n{log.read_text()[-3000:]}") from exc
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    log = tmp_path_factory.mktemp("serve-graph") / "stderr.log"
    args = ["--graph", "tests.graph_app:graph", "--max-concurrency", str(LIMIT), "--timeout", "30"]
    with start(args, log, timeout=120) as served:
        yield served


def rss_mb(pid: int) -> float:
    """The resident memory of process `pid`, in MB (Linux)."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        pytest.skip("needs /proc to read a process's memory")
    line = next(x for x in status.read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def one_client(client: openai.AsyncOpenAI, i: int) -> str | None:
    """Client `i`: plain or streamed by parity; every fifth leaves early. Returns its answer,
    None for one that left."""
    messages: Any = [{"role": "user", "content": f"chemistry and biology of tag{i}?"}]
    leaves = i % 5 == 0
    if i % 2:
        request = client.chat.completions.create(model="compllm", messages=messages)
        if leaves:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(request, 0.03)  # cancelled: the connection closes
            return None
        return (await request).choices[0].message.content
    stream = await client.chat.completions.create(model="compllm", messages=messages, stream=True)
    parts = []
    async with stream:
        async for chunk in stream:
            if leaves:
                return None  # closes the stream after the first chunk
            parts.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    return "".join(parts)


async def one_round(url: str) -> list[str | None]:
    async with openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0) as client:
        return await asyncio.wait_for(
            asyncio.gather(*(one_client(client, i) for i in range(CLIENTS))), timeout=120
        )


async def test_fifty_clients_some_leaving_each_get_their_own_answer(
    fake: tuple[str, int],
) -> None:
    url, pid = fake
    want = [None if i % 5 == 0 else expected(f"tag{i}") for i in range(CLIENTS)]
    assert await one_round(url) == want  # the first round warms the server up
    before = rss_mb(pid)
    for _ in range(4):
        assert await one_round(url) == want
    grown = rss_mb(pid) - before
    # 200 more requests, 40 of them abandoned: nothing of theirs stays behind.
    assert grown < 4, f"the server grew by {grown:.1f} MB over 200 requests"
    async with httpx.AsyncClient() as http:
        assert (await http.get(url.removesuffix("/v1") + "/health")).json() == {"status": "ok"}


def test_chat_openai_in_a_langchain_chain(fake: tuple[str, int]) -> None:
    url, _ = fake
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You answer questions."), ("human", "chemistry and biology of {topic}?")]
    )
    chain = (
        prompt
        | ChatOpenAI(base_url=url, api_key=SecretStr("EMPTY"), model="compllm")
        | StrOutputParser()
    )
    assert chain.invoke({"topic": "iron"}) == expected("iron")
    assert "".join(chain.stream({"topic": "copper"})) == expected("copper")


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_smollm2()
    log = tmp_path_factory.mktemp("serve-default-graph") / "stderr.log"
    args = ["--graph", "--model", SMALL_MODEL, "--max-new-tokens", "12", "--served-name", "cl"]
    with start(args, log, timeout=600) as (url, _):
        yield url


def test_the_default_graph_on_smollm2(default: str) -> None:
    question = "What is the chemical formula of water, and what is 2 + 2?"
    client = openai.OpenAI(base_url=default, api_key="EMPTY", max_retries=0, timeout=600)
    reply = client.chat.completions.create(
        model="cl", messages=[{"role": "user", "content": question}]
    )
    answer = reply.choices[0].message.content
    found = (reply.model_extra or {})[DETAILS_FIELD]
    assert answer and found["query"] == question
    assert len(found["sub_answers"]) == len(found["sub_queries"]) >= 1
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    # Streamed through ChatOpenAI: the same kind of answer (not compared word for word: the
    # sub-queries run in one llama.cpp batch, whose makeup may differ between the two runs).
    chat = ChatOpenAI(base_url=default, api_key=SecretStr("EMPTY"), model="cl", timeout=600)
    assert "".join(str(chunk.content) for chunk in chat.stream(question)).strip()
