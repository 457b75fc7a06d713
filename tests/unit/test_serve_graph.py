"""`compllm serve --graph` in this process: the fake-model graph of `tests.graph_app` behind the
real starlette/uvicorn app on 127.0.0.1, called with the OpenAI client, ChatOpenAI and httpx;
clients that leave are played as ASGI messages, as in `tests/models/test_serve_faults.py`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="needs the [serve] extra")
pytest.importorskip("langchain_openai", reason="needs the [remote] extra")

import httpx
import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import Message

from compllm_graph.models.remote import remote_chat_model
from compllm_graph.serve import serve_in_thread
from compllm_graph.serve_graph import (
    DETAILS_FIELD,
    create_graph_app,
    cut_at_stop,
    load_graph,
    main,
    servable,
)
from tests.graph_app import build, expected

PATH = "/v1/chat/completions"


def ask(tag: str) -> Any:
    """The messages of the question about `tag` (Any: the OpenAI client's types are narrower)."""
    return [{"role": "user", "content": f"chemistry and biology of {tag}?"}]


@pytest.fixture(scope="module")
def app() -> Starlette:
    """The app every test of the module shares: two runs at once, experts taking 20 ms."""
    return create_graph_app(build(delay=0.02), max_concurrency=2)


@pytest.fixture(scope="module")
def url(app: Starlette) -> Iterator[str]:
    with serve_in_thread(app) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0) as openai_client:
        yield openai_client


@pytest.fixture(scope="module")
def http(url: str) -> Iterator[httpx.Client]:
    """One client for the module (each new one builds an SSL context, which takes a while)."""
    with httpx.Client(base_url=url.removesuffix("/v1")) as http_client:
        yield http_client


def test_a_plain_completion_is_the_answer_with_the_runs_details(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="compllm", messages=ask("ions"))
    assert reply.model == "compllm" and reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == expected("ions")
    # The decomposer and the two experts, 3 prompt and 2 completion tokens a call.
    assert reply.usage is not None and reply.usage.total_tokens == 15
    found = (reply.model_extra or {})[DETAILS_FIELD]
    assert found["query"] == "chemistry and biology of ions?"
    assert [q["text"] for q in found["sub_queries"]] == ["chemistry of ions", "biology of ions"]
    assert [r["expert"] for r in found["routes"]] == ["chemistry", "biology"]
    assert [a["expert"] for a in found["sub_answers"]] == ["chemistry", "biology"]
    assert found["aggregation"] == "joined" and found["fallback_reason"] is None


def test_a_streamed_completion_sends_the_events_then_the_answer(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="compllm",
            messages=ask("salts"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    events = [(c.model_extra or {}).get(DETAILS_FIELD) for c in chunks]
    names = [e["event"] for e in events if e]
    assert names[:3] == ["decomposition", "route", "route"]
    assert names[-2:] == ["answer", "result"]
    assert sorted(names[3:-2]) == ["sub_query_end"] * 2 + ["sub_query_start"] * 2
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected("salts")
    result = events[-2]  # the result, then the usage chunk
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert result is not None and result["sub_answers"][1]["expert"] == "biology"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 9


def test_a_conversation_asks_its_last_user_message(client: openai.OpenAI) -> None:
    messages: Any = [
        {"role": "system", "content": "Be brief."},
        *ask("rust"),
        {"role": "assistant", "content": "Iron oxide."},
        {"role": "user", "content": [{"type": "text", "text": "chemistry and biology of tin?"}]},
    ]
    reply = client.chat.completions.create(model="compllm", messages=messages)
    assert reply.choices[0].message.content == expected("tin")
    assert (reply.model_extra or {})[DETAILS_FIELD]["query"] == "chemistry and biology of tin?"


def test_stop_cuts_the_answer(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="compllm",
        messages=ask("gold"),
        stop=["\nSecond"],
    )
    assert reply.choices[0].message.content == expected("gold").split("\n")[0]
    assert cut_at_stop("a-b-c", ["c", "-"]) == "a" and cut_at_stop("abc", ["", "x"]) == "abc"


async def test_chat_openai_uses_the_graph_as_a_model(url: str) -> None:
    chat = remote_chat_model(url, "compllm", max_retries=0)
    assert (await chat.ainvoke("chemistry and biology of lead?")).content == expected("lead")
    parts = [str(c.content) async for c in chat.astream("chemistry and biology of zinc?")]
    assert "".join(parts) == expected("zinc")


def test_models_and_health(http: httpx.Client) -> None:
    assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["compllm"]
    assert http.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"model": "gpt-4o", "messages": ask("x")}, 404, "does not exist"),
        ({"model": "compllm", "messages": []}, 400, "non-empty list"),
        (
            {"model": "compllm", "messages": [*ask("x"), {"role": "assistant", "content": "y"}]},
            400,
            "role 'assistant'",
        ),
        ({"model": "compllm", "messages": [{"role": "user", "content": " \n"}]}, 400, "empty"),
        (
            {"model": "compllm", "stream": True, "messages": [{"role": "system", "content": "y"}]},
            400,
            "role 'system'",
        ),
        ({"model": "compllm", "messages": ask("x"), "tools": [{"type": "function"}]}, 400, "tools"),
        ({"model": "compllm", "messages": ask("x"), "n": 2}, 400, "n=1"),
        ({"model": "compllm", "messages": ask("x"), "max_tokens": 0}, 400, "max_tokens"),
        ({"model": "compllm", "messages": ask("x"), "temperature": 9}, 400, "temperature"),
        ({"model": "compllm", "messages": ask("x"), "stop": [1]}, 400, "stop"),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_bad_requests_get_openai_errors(
    http: httpx.Client, body: Any, status: int, fragment: str
) -> None:
    reply = http.post(PATH, json=body)
    assert reply.status_code == status, reply.text
    assert fragment in reply.json()["error"]["message"]


def test_undecodable_and_oversized_bodies_are_refused(http: httpx.Client) -> None:
    assert http.post(PATH, content=b"{nope").status_code == 400
    with TestClient(create_graph_app(build(), max_body_bytes=1_000)) as small:
        huge = {"model": "compllm", "messages": ask("x" * 1_000)}
        assert small.post(PATH, json=huge).status_code == 413


async def test_runs_beyond_the_limit_wait_and_nothing_crosses(app: Starlette, url: str) -> None:
    tags = [f"tag{i}" for i in range(6)]
    async with openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0) as client:
        replies = await asyncio.gather(
            *(client.chat.completions.create(model="compllm", messages=ask(t)) for t in tags)
        )
    assert [r.choices[0].message.content for r in replies] == [expected(t) for t in tags]
    assert app.state.runner.slots.peak == 2 and app.state.runner.slots.in_use == 0


class Gate:
    """What a hanging expert saw (thread-safe)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()


class Hanging(BaseChatModel):
    """An expert that answers only when cancelled (natively async, as a remote model is)."""

    gate: Any

    @property
    def _llm_type(self) -> str:
        return "hanging"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("async only")

    async def _agenerate(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> ChatResult:
        self.gate.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.gate.cancelled.set()
            raise
        raise AssertionError("never set")


def hanging_app(gate: Gate, **options: Any) -> Starlette:
    return create_graph_app(build(chemistry=Hanging(gate=gate)), **options)


async def post(app: Starlette, body: dict[str, Any], leave: asyncio.Event) -> list[Message]:
    """Post `body` to `app` as an ASGI client that disconnects once `leave` is set."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    queue: list[Message] = [{"type": "http.request", "body": json.dumps(body).encode()}]
    sent: list[Message] = []

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    return sent


async def until(event: threading.Event) -> None:
    while not event.is_set():
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_that_leaves_has_its_run_cancelled(stream: bool) -> None:
    gate = Gate()
    app = hanging_app(gate)
    leave = asyncio.Event()
    request = asyncio.create_task(
        post(app, {"model": "compllm", "messages": ask("x"), "stream": stream}, leave)
    )
    await until(gate.started)
    leave.set()
    sent = await request
    await until(gate.cancelled)
    assert app.state.runner.slots.in_use == 0
    if not stream:
        assert sent[0]["status"] == 499


async def test_a_client_that_leaves_while_waiting_for_a_slot_leaves_the_queue() -> None:
    gate = Gate()
    app = hanging_app(gate, max_concurrency=1)
    first, second = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(post(app, {"model": "compllm", "messages": ask("a")}, first))
    await until(gate.started)
    waiting = asyncio.create_task(post(app, {"model": "compllm", "messages": ask("b")}, second))
    await asyncio.sleep(0.05)
    second.set()
    assert (await waiting)[0]["status"] == 499
    assert app.state.runner.slots.in_use == 1  # the first run still holds the one slot
    first.set()
    assert (await running)[0]["status"] == 499
    assert app.state.runner.slots.in_use == 0 and not app.state.runner.slots._waiters


def test_a_run_over_the_timeout_is_cancelled_with_a_504() -> None:
    gate = Gate()
    with TestClient(hanging_app(gate, timeout=0.05)) as test_client:
        reply = test_client.post(PATH, json={"model": "compllm", "messages": ask("x")})
        assert reply.status_code == 504, reply.text
        assert reply.json()["error"]["code"] == "timeout"
        assert gate.cancelled.is_set()
        streamed = test_client.post(
            PATH, json={"model": "compllm", "messages": ask("x"), "stream": True}
        )
    lines = [line for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert json.loads(lines[-1].removeprefix("data: "))["error"]["code"] == "timeout"


def _echo_agent() -> StateGraph:
    """A messages graph of another kind (an agent, say): its last message is the answer."""

    def reply(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(f"echo: {state['messages'][-1].text}")]}

    graph = StateGraph(MessagesState)
    graph.add_node("reply", reply)
    graph.add_edge(START, "reply")
    return graph


def test_any_messages_graph_can_be_served_and_one_without_an_answer_is_a_500() -> None:
    with TestClient(create_graph_app(_echo_agent(), name="echo")) as test_client:
        body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        reply = test_client.post(PATH, json=body).json()
        assert reply["choices"][0]["message"]["content"] == "echo: hi"
        assert reply[DETAILS_FIELD] == {"seconds": reply[DETAILS_FIELD]["seconds"]}
    silent = StateGraph(MessagesState)
    silent.add_node("nothing", lambda state: {})
    silent.add_edge(START, "nothing")
    with TestClient(create_graph_app(silent)) as test_client:
        failed = test_client.post(PATH, json={"model": "compllm", "messages": ask("x")})
    assert failed.status_code == 500 and "neither 'answer'" in failed.text


def test_servable_graphs_and_graph_specs(tmp_path: Path) -> None:
    assert servable(build()).name == "compllm"  # a StateGraph is compiled
    with pytest.raises(ValueError, match="checkpointer"):
        servable(build().compile(checkpointer=InMemorySaver()))
    with pytest.raises(ValueError, match="StateGraph"):
        servable(object())
    assert load_graph("tests.graph_app:graph").get_graph().nodes.keys() >= {"decompose"}
    source = tmp_path / "serve_graph_factory_app.py"
    source.write_text("from tests.graph_app import build\n\ndef make():\n    return build()\n")
    assert "aggregate" in load_graph(f"{source}:make").get_graph().nodes
    for spec, fragment in [
        ("tests.graph_app", "MODULE:ATTRIBUTE"),
        ("tests.graph_app:", "MODULE:ATTRIBUTE"),
        ("tests.graph_app:nothing", "no attribute"),
        ("tests.no_such_module:graph", "cannot import"),
        (f"{tmp_path}/absent.py:graph", "no such file"),
        ("tests.graph_app:EXPERTS", "StateGraph"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            load_graph(spec)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--store", "s", "--timeout", "5"], "--timeout, --store only apply with --graph"),
        (["--graph", "--adapter", "a=b"], "--adapter"),
        (["--graph", "tests.graph_app:graph", "--store", "s"], "set up the default graph"),
        (["--graph", "tests.graph_app:graph", "--timeout", "0"], "--timeout must be > 0"),
        (["--graph", "--max-concurrency", "0"], "--max-concurrency must be >= 1"),
        (["--graph", "tests.graph_app:graph", "--port", "70000"], "--port"),
        (["--graph", "nothing"], "MODULE:ATTRIBUTE"),
    ],
)
def test_bad_options_exit_with_2_before_anything_loads(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
