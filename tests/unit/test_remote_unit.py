"""Remote experts and `compllm serve`'s HTTP layer, on fake chat models (no real model, seconds).

The server is the real starlette/uvicorn app on 127.0.0.1; only the models behind it are fakes
that sleep and record how many requests they serve at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

pytest.importorskip("langchain_openai", reason="needs the [remote] extra")
pytest.importorskip("starlette", reason="needs the [serve] extra")

import httpx
import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from compllm_graph.graph import create_compllm_graph
from compllm_graph.models.remote import (
    endpoint_limit,
    normalise_endpoint,
    remote_chat_model,
)
from compllm_graph.serve import (
    BATCH_SIZE_HEADER,
    create_app,
    local_chat_models,
    serve_in_thread,
)
from compllm_graph.serve import main as serve_main
from compllm_graph.types import Route
from tests.servers import free_port

DELAY = 0.15


class Gauge:
    """Counts calls in progress and remembers the most at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def enter(self, kwargs: dict[str, Any]) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.calls.append(kwargs)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1

    def reset(self) -> None:
        """Forget the calls and the peak (between tests that share a server)."""
        with self._lock:
            self.peak = self.now
            self.calls = []


class SlowEcho(BaseChatModel):
    """Answers `PREFIX: <last message>` after `delay` seconds."""

    prefix: str
    gauge: Gauge = Field(exclude=True)
    delay: float = DELAY

    @property
    def _llm_type(self) -> str:
        return "slow-echo"

    def _reply(self, messages: list[BaseMessage]) -> ChatResult:
        text = f"{self.prefix}: {messages[-1].text}"
        message = AIMessage(
            text,
            response_metadata={"finish_reason": "length", "batch_size": 3},
            usage_metadata={"input_tokens": 7, "output_tokens": 2, "total_tokens": 9},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        raise AssertionError("the server must call the async path")

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.gauge.enter({"stop": stop, **kwargs})
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.gauge.leave()
        return self._reply(messages)


def _serve(gauge: Gauge, delay: float) -> AbstractContextManager[str]:
    app = create_app(
        {
            "chemistry": SlowEcho(prefix="chem", gauge=gauge, delay=delay),
            "biology": SlowEcho(prefix="bio", gauge=gauge, delay=delay),
        },
        max_new_tokens=32,
    )
    return serve_in_thread(app)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Gauge]]:
    """One server, answering at once, for the tests that set no concurrency limit: a limit
    belongs to an endpoint for the process's life, and starting and stopping a server for each
    test takes a while."""
    gauge = Gauge()
    with _serve(gauge, delay=0.0) as base_url:
        yield base_url, gauge


@pytest.fixture
def gauge(server: tuple[str, Gauge]) -> Gauge:
    """The shared server's gauge, its calls and peak forgotten."""
    server[1].reset()
    return server[1]


@pytest.fixture
def url(server: tuple[str, Gauge], gauge: Gauge) -> str:
    return server[0]


@pytest.fixture
def own_server() -> Iterator[tuple[str, Gauge]]:
    """A server of the test's own: a new endpoint, whose limit the test sets, answering after
    DELAY seconds so that requests in flight together overlap."""
    gauge = Gauge()
    with _serve(gauge, delay=DELAY) as base_url:
        yield base_url, gauge


def test_models_and_health(url: str) -> None:
    listing = httpx.get(f"{url}/models").json()
    assert [m["id"] for m in listing["data"]] == ["chemistry", "biology"]
    assert httpx.get(url.removesuffix("/v1") + "/health").json() == {"status": "ok"}


def test_remote_chat_model_round_trip(url: str, gauge: Gauge) -> None:
    chat = remote_chat_model(
        url, "chemistry", include_response_headers=True, max_tokens=500, stop=["\n"]
    )
    reply = chat.invoke("What is an ion?")
    assert reply.content == "chem: What is an ion?"
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == 7
    assert reply.usage_metadata["output_tokens"] == 2
    assert reply.response_metadata["finish_reason"] == "length"
    assert reply.response_metadata["headers"][BATCH_SIZE_HEADER] == "3"
    # max_tokens is capped by the server; temperature 0 decodes greedily (no do_sample).
    assert gauge.calls == [{"stop": ["\n"], "max_new_tokens": 32}]


async def test_stream_over_http(url: str) -> None:
    chat = remote_chat_model(url, "biology", stream_usage=True)
    chunks = [chunk async for chunk in chat.astream("cells?")]
    assert "".join(str(c.content) for c in chunks) == "bio: cells?"
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["total_tokens"] == 9
    assert merged.response_metadata["finish_reason"] == "length"


def test_sampling_and_seed_are_passed_on(url: str, gauge: Gauge) -> None:
    remote_chat_model(url, "biology", temperature=0.7, seed=3, top_p=0.9).invoke("x")
    assert gauge.calls[-1] == {
        "stop": None,
        "max_new_tokens": 32,
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 3,
    }


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (
            {"model": "physics", "messages": [{"role": "user", "content": "x"}]},
            404,
            "does not exist",
        ),
        ({"model": "biology", "messages": []}, 400, "non-empty list"),
        ({"model": "biology", "messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
        (
            {"model": "biology", "messages": [{"role": "user", "content": [{"type": "image"}]}]},
            400,
            "text parts",
        ),
        ({"model": "biology", "messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "n=1"),
        (
            {
                "model": "biology",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function"}],
            },
            400,
            "tools",
        ),
        (
            {"model": "biology", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            400,
            "max_tokens",
        ),
        (
            {
                "model": "biology",
                "messages": [{"role": "user", "content": "x"}],
                "temperature": "hot",
            },
            400,
            "temperature",
        ),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_bad_requests_get_openai_errors(url: str, body: Any, status: int, fragment: str) -> None:
    response = httpx.post(f"{url}/chat/completions", json=body)
    assert response.status_code == status
    assert fragment in response.json()["error"]["message"]


def test_invalid_json_and_unknown_model_via_client(url: str) -> None:
    response = httpx.post(f"{url}/chat/completions", content=b"{not json")
    assert response.status_code == 400
    with pytest.raises(openai.NotFoundError, match="physics"):
        remote_chat_model(url, "physics", max_retries=0).invoke("x")


async def test_limit_is_shared_by_all_models_of_an_endpoint(
    own_server: tuple[str, Gauge],
) -> None:
    url, gauge = own_server
    chemistry = remote_chat_model(url, "chemistry", max_concurrency=2)
    biology = remote_chat_model(url + "/", "biology")  # same endpoint, so the same limit
    assert biology.endpoint_limit is chemistry.endpoint_limit
    started = time.perf_counter()
    replies = await asyncio.gather(
        *(m.ainvoke(str(i)) for i, m in enumerate([chemistry, biology] * 3))
    )
    elapsed = time.perf_counter() - started
    assert [r.content for r in replies] == [f"{p}: {i}" for i, p in enumerate(["chem", "bio"] * 3)]
    assert gauge.peak == 2
    assert chemistry.endpoint_limit.peak == 2
    assert chemistry.endpoint_limit.in_use == 0
    assert elapsed >= 3 * DELAY


def test_limit_holds_for_threads_and_their_loops(own_server: tuple[str, Gauge]) -> None:
    url, gauge = own_server
    chat = remote_chat_model(url, "chemistry", max_concurrency=1)
    jobs = [lambda: chat.invoke("sync"), lambda: asyncio.run(chat.ainvoke("async"))] * 2
    threads = [threading.Thread(target=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(gauge.calls) == 4
    assert gauge.peak == 1


def test_remote_expert_inside_the_graph(own_server: tuple[str, Gauge]) -> None:
    url, gauge = own_server
    decomposer = FakeListChatModel(responses=["<q>acids?</q><q>bases?</q><q>salts?</q><dep></dep>"])
    chemistry = remote_chat_model(url, "chemistry", max_concurrency=1)
    graph = create_compllm_graph(
        decomposer=decomposer,
        experts={"chemistry": chemistry},
        router=lambda texts: [Route("chemistry", 0.9) for _ in texts],
        base=FakeListChatModel(responses=["unused"]),
        aggregator=FakeListChatModel(responses=["all three"]),
    ).compile()
    for _ in range(2):  # two sync runs: each runs its sub-queries on a fresh event loop
        result = graph.invoke({"query": "acids, bases and salts?"})
        assert result["answer"] == "all three"  # the caller's aggregator is not overruled
        assert [a["answer"] for a in result["sub_answers"]] == [
            "chem: acids?",
            "chem: bases?",
            "chem: salts?",
        ]
        assert all(
            a["expert"] == "chemistry" and a["fallback_reason"] is None
            for a in result["sub_answers"]
        )
    assert gauge.peak == 1
    assert chemistry.endpoint_limit.peak == 1


def test_unreachable_expert_falls_back_to_base() -> None:
    gone = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: connections are refused
    graph = create_compllm_graph(
        decomposer=FakeListChatModel(responses=["<q>one?</q><dep></dep>"]),
        experts={"far": remote_chat_model(gone, "far", max_retries=0, timeout=5)},
        router=lambda texts: [Route("far", 0.9) for _ in texts],
        base=FakeListChatModel(responses=["base answer"]),
    ).compile()
    result = graph.invoke({"query": "one?"})
    assert result["answer"] == "base answer"
    assert "ConnectionError" in (result["routes"][0]["fallback_reason"] or "")


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        remote_chat_model("localhost:8000", "m")
    with pytest.raises(ValueError, match="model"):
        remote_chat_model("http://127.0.0.1:9/v1", " ")
    with pytest.raises(ValueError, match="at least 1"):
        remote_chat_model("http://127.0.0.1:9/v1", "m", max_concurrency=0)
    endpoint_limit("http://127.0.0.1:10/v1", 3)
    with pytest.raises(ValueError, match="max_concurrency=3"):
        remote_chat_model("HTTP://127.0.0.1:10/v1/", "m", max_concurrency=5)
    assert normalise_endpoint("HTTP://Host:1/v1/") == "http://host:1/v1"
    with pytest.raises(ValueError, match="at least one model"):
        create_app({})


def test_one_model_works_on_successive_event_loops(url: str) -> None:
    # A plain ChatOpenAI fails here ("Event loop is closed"): its connection pool is loop-bound.
    chat = remote_chat_model(url, "biology")
    assert [asyncio.run(chat.ainvoke(str(i))).content for i in range(3)] == [
        "bio: 0",
        "bio: 1",
        "bio: 2",
    ]


class FakeLocal:
    """Duck-typed `TransformersModel`: a name, adapters, and chat models by adapter."""

    name = "tiny"
    adapters = ("chemistry",)

    def chat_model(self, adapter: str | None = None, **generation: Any) -> BaseChatModel:
        return FakeListChatModel(responses=[f"{adapter}:{generation}"])


def test_local_chat_models_serve_base_and_adapters() -> None:
    models = local_chat_models(FakeLocal(), max_new_tokens=5)
    assert list(models) == ["tiny", "chemistry"]
    assert models["chemistry"].invoke("x").content == "chemistry:{'max_new_tokens': 5}"
    clash = FakeLocal()
    clash.adapters = ("tiny",)
    with pytest.raises(ValueError, match="clashes"):
        local_chat_models(clash)


@pytest.mark.parametrize("argv", [["--adapter", "no-folder"], ["--adapter", "=dir"]])
def test_serve_rejects_malformed_adapters(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve_main(argv)
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--model", "/no/such/model"], "not a known alias"), (["--port", "70000"], "--port")],
)
def test_serve_reports_bad_options(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve_main(argv) == 2
    assert message in capsys.readouterr().err
