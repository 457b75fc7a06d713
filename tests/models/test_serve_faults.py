"""`compllm serve` under faults: clients that leave, bodies that cannot be decoded, and errors.

Fake chat models only; the app is called through starlette's `TestClient`, or directly as ASGI
where a test needs to say when the client disconnects.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="needs the [serve] extra")

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import Message, Receive

from compllm_graph.serve import create_app, generation_kwargs, serve_in_thread
from tests.fakes import FakeChat

PATH = "/v1/chat/completions"
HELLO = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


class Gate:
    """What a hanging model saw (thread-safe: the server may run on another thread)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.release = threading.Event()  # lets a sync model's thread finish


class Hanging(BaseChatModel):
    """Native async: `_agenerate` generates until it is cancelled."""

    gate: Any

    @property
    def _llm_type(self) -> str:
        return "hanging"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        raise NotImplementedError("async only")

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.gate.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.gate.cancelled.set()
            raise
        raise AssertionError("never set")


class SyncHanging(BaseChatModel):
    """Sync only: langchain runs `_generate` on an executor thread, here until released."""

    gate: Any

    @property
    def _llm_type(self) -> str:
        return "sync-hanging"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.gate.started.set()
        self.gate.release.wait(timeout=10)
        return ChatResult(generations=[ChatGeneration(message=AIMessage("too late"))])


def scope(body: bytes) -> dict[str, Any]:
    """An ASGI HTTP scope for a POST of `body` to the chat completions route."""
    return {
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


async def call(app: Starlette, raw: bytes, receive: Receive) -> list[Message]:
    """Run `app` on a POST of `raw` whose client behaves as `receive`; returns what it sent."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope(raw), receive, send), timeout=5)
    return sent


async def call_and_leave(app: Starlette, body: dict[str, Any], gate: Gate) -> list[Message]:
    """Post `body`, disconnect once the model has started, and return what the app sent."""
    raw = json.dumps(body).encode()
    queue: list[Message] = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        while not gate.started.is_set():
            await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    return await call(app, raw, receive)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_that_disconnects_has_its_generation_cancelled(stream: bool) -> None:
    gate = Gate()
    app = create_app({"m": Hanging(gate=gate)})
    sent = await call_and_leave(app, {**HELLO, "stream": stream}, gate)
    assert gate.cancelled.is_set()
    if not stream:  # nobody reads it; the status tells the server's log what happened
        assert sent[0]["status"] == 499


def test_a_client_that_times_out_over_http_has_its_generation_cancelled() -> None:
    gate = Gate()
    with serve_in_thread(create_app({"m": Hanging(gate=gate)})) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/chat/completions", json=HELLO, timeout=1)
        assert gate.cancelled.wait(timeout=5)


async def test_a_sync_models_request_ends_when_its_client_leaves() -> None:
    """Its thread cannot be stopped: the handler returns at once and the thread ends unread."""
    gate = Gate()
    app = create_app({"m": SyncHanging(gate=gate)})
    try:
        sent = await call_and_leave(app, HELLO, gate)
    finally:
        gate.release.set()
    assert sent[0]["status"] == 499


async def test_a_client_that_leaves_while_sending_gets_no_server_error() -> None:
    async def receive() -> Message:
        return {"type": "http.disconnect"}

    sent = await call(create_app({"m": FakeChat()}), b"", receive)
    assert sent[0]["status"] == 499


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app({"m": FakeChat()}), raise_server_exceptions=False) as test_client:
        yield test_client


def openai_error(reply: Any, status: int) -> dict[str, Any]:
    """The error object of an OpenAI-format error reply with `status`."""
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


CONTENT = "messages[0].content"
CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "%s"}]}'


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (CHAT % b"\xff", "not valid UTF-8"),  # not UTF-8 at all
        (CHAT % b"\xed\xa0\x80", "not valid UTF-8"),  # a surrogate, UTF-8-encoded
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"model": "m", "messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "too deeply"),
    ],
    ids=["invalid-byte", "encoded-surrogate", "deep-array", "deep-field"],
)
def test_undecodable_bodies_get_openai_400s(client: TestClient, body: bytes, fragment: str) -> None:
    error = openai_error(client.post(PATH, content=body), 400)
    assert fragment in error["message"] and error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "field", "param"),
    [
        ({**HELLO, "messages": [{"role": "user", "content": "a\ud800b"}]}, CONTENT, "messages"),
        (
            {**HELLO, "stream": True, "messages": [{"role": "user", "content": "\udfff"}]},
            CONTENT,
            "messages",
        ),
        ({**HELLO, "model": "\ud800"}, "model", "model"),
        ({**HELLO, "stop": ["ok", "\udc00"]}, "stop[1]", "stop"),
        ({**HELLO, "\ud800": 1}, "a key of the request body", None),
    ],
    ids=["content", "streamed-content", "model", "stop", "key"],
)
def test_a_lone_surrogate_anywhere_gets_a_400_naming_its_field(
    client: TestClient, body: dict[str, Any], field: str, param: str | None
) -> None:
    raw = json.dumps(body).encode()  # json.dumps writes a lone surrogate as a "\\ud800" escape
    error = openai_error(client.post(PATH, content=raw), 400)
    assert field in error["message"] and "surrogate" in error["message"]
    assert error["param"] == param


def test_an_unexpected_failure_is_an_openai_500() -> None:
    class Broken(FakeChat):
        local: Any = None  # `_check_context` asks the backend to count the prompt's tokens

    class Backend:
        context_length = 100

        def encode_chat(self, messages: Any) -> list[int]:
            raise RuntimeError("tokenizer crashed")

    app = create_app({"m": Broken(local=Backend())})
    with TestClient(app, raise_server_exceptions=False) as broken:
        error = openai_error(broken.post(PATH, json=HELLO), 500)
    assert error["message"] == "RuntimeError: tokenizer crashed"
    assert error["type"] == "server_error"


def test_unknown_routes_and_methods_get_openai_errors(client: TestClient) -> None:
    assert "Not Found" in openai_error(client.get("/v1/nothing"), 404)["message"]
    wrong = client.get(PATH)
    assert "Method Not Allowed" in openai_error(wrong, 405)["message"]
    assert wrong.headers["allow"] == "POST"


def test_max_tokens_counts_when_max_completion_tokens_is_null() -> None:
    body = {"max_completion_tokens": None, "max_tokens": 5}
    assert generation_kwargs(body, 256)["max_new_tokens"] == 5
    both = {"max_completion_tokens": 7, "max_tokens": 5}
    assert generation_kwargs(both, 256)["max_new_tokens"] == 7
    assert generation_kwargs({"max_tokens": None}, 256)["max_new_tokens"] == 256


def test_a_bad_max_completion_tokens_is_named_in_its_400(client: TestClient) -> None:
    reply = client.post(PATH, json={**HELLO, "max_completion_tokens": 0, "max_tokens": 5})
    assert openai_error(reply, 400)["param"] == "max_completion_tokens"
