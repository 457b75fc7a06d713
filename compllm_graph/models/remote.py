"""Remote experts: any OpenAI-compatible endpoint as a chat model, with a per-endpoint limit.

vLLM (`--enable-lora`), llama.cpp's server, Ollama, TGI and `compllm serve` all speak the OpenAI
chat-completions protocol, and a multi-LoRA server picks the adapter from the request's `model`
field. `remote_chat_model(url, "chemistry")` is therefore one expert of such a server, and every
chat model pointing at the same server shares one concurrency limit: the server's capacity is
what is being rationed, not any one adapter's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, SecretStr

from compllm_graph._concurrency import PrioritySemaphore
from compllm_graph._extras import requires

with requires("remote"):
    from langchain_openai import ChatOpenAI

    # The httpx flavour the installed openai SDK is built on (httpx2 for openai>=3);
    # langchain-openai exposes it for exactly this: transports handed to the SDK client.
    from langchain_openai._compat import httpx

DEFAULT_MAX_CONCURRENCY = 4
"""In-flight requests per endpoint when the first chat model for it names no limit."""

NO_API_KEY = "EMPTY"
"""Sent when no key is given: local servers (vLLM, llama.cpp, `compllm serve`) ignore it."""


class EndpointLimit(PrioritySemaphore):
    """At most `capacity` requests in flight to one endpoint, first come first served.

    Attributes:
        endpoint: The normalised base URL this limit guards.
        capacity: Most requests in flight at once.
    """

    def __init__(self, endpoint: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {capacity}")
        super().__init__(capacity)
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"EndpointLimit({self.endpoint!r}, capacity={self.capacity}, in_use={self.in_use})"


class PerLoopTransport(httpx.AsyncBaseTransport):
    """An async HTTP transport with one connection pool per event loop.

    httpx pools belong to the loop that opened them, and reusing one from another loop fails
    ("bound to a different event loop"). LangGraph runs sync graphs' async work on a fresh loop
    per call (and `langgraph dev` has its own), so a chat model's pool must follow the loop.
    """

    def __init__(self) -> None:
        self._pools: dict[asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport] = {}
        self._lock = threading.Lock()

    def _pool(self) -> httpx.AsyncHTTPTransport:
        loop = asyncio.get_running_loop()
        with self._lock:
            # A finished loop's pool cannot be closed any more: drop it for the GC to reclaim.
            for closed in [other for other in self._pools if other.is_closed()]:
                del self._pools[closed]
            if loop not in self._pools:
                self._pools[loop] = httpx.AsyncHTTPTransport()
            return self._pools[loop]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool().handle_async_request(request)

    async def aclose(self) -> None:
        await self._pool().aclose()


_limits: dict[str, EndpointLimit] = {}
_limits_lock = threading.Lock()


def normalise_endpoint(base_url: str) -> str:
    """The canonical form of an endpoint URL: lower-case scheme and host, no trailing slash.

    Raises:
        ValueError: not an http(s) URL with a host.
    """
    parts = urlsplit(str(base_url).strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}"
        )
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, "")
    )


def endpoint_limit(base_url: str, max_concurrency: int | None = None) -> EndpointLimit:
    """The concurrency limit shared by every chat model of one endpoint.

    Args:
        base_url: The endpoint's OpenAI base URL (`.../v1`).
        max_concurrency: Most requests in flight; set by the first caller for an endpoint
            (None: `DEFAULT_MAX_CONCURRENCY`). Later callers may pass None or the same number.

    Raises:
        ValueError: a bad URL, or a limit that contradicts the one already set for the endpoint.
    """
    endpoint = normalise_endpoint(base_url)
    with _limits_lock:
        limit = _limits.get(endpoint)
        if limit is None:
            limit = EndpointLimit(endpoint, max_concurrency or DEFAULT_MAX_CONCURRENCY)
            _limits[endpoint] = limit
        elif max_concurrency is not None and max_concurrency != limit.capacity:
            raise ValueError(
                f"{endpoint} already has max_concurrency={limit.capacity}; every chat model of "
                "one endpoint shares its limit, so pass the same number or None"
            )
    return limit


class RemoteChatModel(ChatOpenAI):
    """`ChatOpenAI` whose calls first take a slot of their endpoint's shared `EndpointLimit`.

    The slot is held for the whole request, streamed ones included, and requests beyond the limit
    wait in arrival order; everything else (tools, structured output, retries) is ChatOpenAI's.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    endpoint_limit: EndpointLimit = Field(exclude=True, repr=False)

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """No: the endpoint limit is this process's shared state, which a copy would not share."""
        return False

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self.endpoint_limit.hold():
            return super()._generate(messages, stop, run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        async with self.endpoint_limit.ahold():
            return await super()._agenerate(messages, stop, run_manager, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        with self.endpoint_limit.hold():
            yield from super()._stream(messages, stop, run_manager, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async with self.endpoint_limit.ahold():
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                yield chunk


def remote_chat_model(
    base_url: str,
    model: str,
    *,
    api_key: str | None = None,
    max_concurrency: int | None = None,
    timeout: float = 120.0,
    max_retries: int = 2,
    temperature: float = 0.0,
    **kwargs: Any,
) -> RemoteChatModel:
    """A chat model served by an OpenAI-compatible endpoint, usable as expert, decomposer or
    aggregator of `create_compllm_graph`.

    Args:
        base_url: The server's OpenAI base URL, e.g. `http://gpu-box:8000/v1`.
        model: The served model name; on a multi-LoRA server (vLLM `--lora-modules`,
            `compllm serve --adapter`) the adapter's name selects that expert.
        api_key: Bearer token for the server. None sends `NO_API_KEY`; `OPENAI_API_KEY` is never
            read, so a real OpenAI key is not sent to a third-party endpoint by accident.
        max_concurrency: Most requests in flight to this endpoint, shared with every other chat
            model of the same `base_url` (see `endpoint_limit`); None keeps the endpoint's limit.
        timeout: Seconds per HTTP request.
        max_retries: Retries of failed requests (connection errors, 5xx, 429).
        temperature: 0 decodes greedily, as local chat models do by default.
        **kwargs: Passed to `ChatOpenAI` (e.g. `max_tokens`, `stop`, `include_response_headers`).

    Raises:
        ValueError: a bad URL, an empty model name, a non-positive timeout or limit, or a limit
            that contradicts the endpoint's.
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must name the served model or LoRA adapter, got {model!r}")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    limit = endpoint_limit(base_url, max_concurrency)
    return RemoteChatModel(
        base_url=limit.endpoint,
        model=model,
        api_key=SecretStr(api_key or NO_API_KEY),
        timeout=timeout,
        max_retries=max_retries,
        temperature=temperature,
        endpoint_limit=limit,
        http_async_client=kwargs.pop("http_async_client", None)
        or httpx.AsyncClient(transport=PerLoopTransport()),
        **kwargs,
    )


__all__ = [
    "EndpointLimit",
    "PerLoopTransport",
    "RemoteChatModel",
    "endpoint_limit",
    "remote_chat_model",
]
