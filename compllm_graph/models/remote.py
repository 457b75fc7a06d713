"""Remote experts: any OpenAI-compatible endpoint as a chat model, with a per-endpoint limit.

vLLM (`--enable-lora`), llama.cpp's server, Ollama, TGI and `compllm serve` all speak the OpenAI
chat-completions protocol, and a multi-LoRA server picks the adapter from the request's `model`
field. `remote_chat_model(url, "chemistry")` is therefore one expert of such a server, and every
chat model pointing at the same server shares one concurrency limit: the server's capacity is
what is being rationed, not any one adapter's.

`RemoteModel` is such a server's base model and adapters as one object that hands out chat
models and takes adapters the way a loaded local model does (`chat_model(adapter=...)`,
`add_adapter(name, folder)`), so code written for a loaded model, the evaluation's systems among
it, runs against the server instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, SecretStr

from compllm_graph._concurrency import PrioritySemaphore
from compllm_graph._extras import requires
from compllm_graph.adapter_folder import AdapterError
from compllm_graph.errors import CompLLMError

with requires("remote"):
    from langchain_openai import ChatOpenAI

    # The httpx flavour the installed openai SDK is built on (httpx2 for openai>=3);
    # langchain-openai exposes it for exactly this: transports handed to the SDK client.
    from langchain_openai._compat import httpx

DEFAULT_MAX_CONCURRENCY = 4
"""In-flight requests per endpoint when the first chat model for it names no limit."""

NO_API_KEY = "EMPTY"
"""Sent when no key is given: local servers (vLLM, llama.cpp, `compllm serve`) ignore it."""


class EndpointError(CompLLMError, RuntimeError):
    """An endpoint cannot be reached, does not serve a model asked of it, or failed a request."""


class EndpointLimit(PrioritySemaphore):
    """At most `capacity` requests in flight to one endpoint, first come first served.

    Attributes:
        endpoint: The normalised base URL this limit guards.
        capacity: Most requests in flight at once.
        failures: Requests to the endpoint that raised, after the client's own retries (a
            stream closed early by its reader is not a failure).
        last_failure: The last of those errors, as text; None before any.
    """

    def __init__(self, endpoint: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {capacity}")
        super().__init__(capacity)
        self.endpoint = endpoint
        self.failures = 0
        self.last_failure: str | None = None
        self._failure_lock = threading.Lock()

    def record_failure(self, error: BaseException) -> None:
        """Count a request that failed for good (`failures`, `last_failure`)."""
        with self._failure_lock:
            self.failures += 1
            self.last_failure = f"{type(error).__name__}: {error}"

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
    A request that still fails after ChatOpenAI's retries is counted on the limit
    (`EndpointLimit.failures`), so a caller can tell a graph's fallback from a failed server.
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
        with self.endpoint_limit.hold(), self._counting_failures():
            return super()._generate(messages, stop, run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        async with self.endpoint_limit.ahold():
            with self._counting_failures():
                return await super()._agenerate(messages, stop, run_manager, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        with self.endpoint_limit.hold(), self._counting_failures():
            yield from super()._stream(messages, stop, run_manager, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async with self.endpoint_limit.ahold():
            with self._counting_failures():
                async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                    yield chunk

    @contextmanager
    def _counting_failures(self) -> Iterator[None]:
        # Exception only: a reader closing a stream early (GeneratorExit) or a cancelled task
        # (CancelledError) is not the server's failure.
        try:
            yield
        except Exception as error:
            self.endpoint_limit.record_failure(error)
            raise


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


GrammarField = Literal["none", "vllm"]
"""How a `RemoteModel` sends a chat model's `grammar` (GBNF): `none` drops it, for servers with
no grammar sampler (`compllm serve`); `vllm` sends it as vLLM's structured-output grammar."""
GRAMMAR_FIELDS: tuple[str, ...] = get_args(GrammarField)
OPENAI_SETTINGS = {"max_new_tokens": "max_tokens", "top_p": "top_p", "seed": "seed", "stop": "stop"}
"""Local generation settings sent under their OpenAI names (`temperature` follows `do_sample`)."""
_SAMPLING = ("do_sample", "temperature")
_ENGINE_ONLY = ("lookup", "tokens_per_prompt_token")
"""Settings of the local engines a server does without: `lookup` changes how they decode, not
what they write; `tokens_per_prompt_token` needs the prompt's tokens, which only the server
counts, so a remote reply keeps `max_new_tokens`."""


def served_models(
    base_url: str, *, api_key: str | None = None, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """What an OpenAI-compatible server serves: its `GET /models` entries, in its order.

    vLLM marks each LoRA adapter with the `parent` it was loaded on; `compllm serve` lists its
    base model first, then its adapters.

    Raises:
        ValueError: a bad URL.
        EndpointError: the server cannot be reached or answers with an error.
    """
    from openai import OpenAI, OpenAIError

    url = normalise_endpoint(base_url)
    client = OpenAI(base_url=url, api_key=api_key or NO_API_KEY, timeout=timeout, max_retries=1)
    try:
        return [model.model_dump() for model in client.models.list()]
    except OpenAIError as exc:
        raise EndpointError(f"cannot list the models served at {url}: {exc}") from exc
    finally:
        client.close()


class RemoteModel:
    """A server's base model and its LoRA adapters, used the way a loaded local model is.

    `chat_model(adapter=...)` gives a `RemoteChatModel` of the adapter's served name (the base
    model's for None) and `add_adapter(name, folder)` checks that the server serves it, so the
    builders written for a loaded model (`build_default_graph`, `store.chat_models`, the
    evaluation's systems) run against the server unchanged. The adapter folders stay where
    they are: the server loaded its own copies; only their `training.json` is read locally.

    Args:
        base_url: The server's OpenAI base URL.
        name: The base model's served name.
        served: The names the server serves (`served_models`); None fetches them.
        adapter_names: Local adapter folder -> the name it is served under, for adapters whose
            name here is not the served one (a decomposer folder is named by its path's hash).
        grammar: How a `grammar` setting is sent (`GrammarField`).
        **remote: Passed to every `remote_chat_model` (`api_key`, `max_concurrency`,
            `timeout`, `max_retries`).

    Raises:
        EndpointError: the server cannot be reached, or does not serve `name`.
        ValueError: a bad URL or setting, or an unknown `grammar`.
    """

    def __init__(
        self,
        base_url: str,
        name: str,
        *,
        served: Collection[str] | None = None,
        adapter_names: Mapping[str | Path, str] | None = None,
        grammar: GrammarField = "none",
        **remote: Any,
    ) -> None:
        if grammar not in GRAMMAR_FIELDS:
            raise ValueError(f"grammar must be one of {list(GRAMMAR_FIELDS)}, got {grammar!r}")
        self.base_url = normalise_endpoint(base_url)
        self.name = name
        self.grammar = grammar
        self._remote = remote
        if served is None:
            served = [m["id"] for m in served_models(base_url, api_key=remote.get("api_key"))]
        self.served = tuple(served)
        self._renamed = {Path(k).resolve(): v for k, v in (adapter_names or {}).items()}
        self._adapters: dict[str, str] = {}
        if name not in self.served:
            raise EndpointError(
                f"{self.base_url} does not serve {name!r}; it serves {list(self.served)}"
            )
        endpoint_limit(self.base_url, remote.get("max_concurrency"))  # a clash fails here

    def __repr__(self) -> str:
        return f"RemoteModel({self.base_url!r}, {self.name!r}, adapters={self._adapters})"

    @property
    def adapters(self) -> tuple[str, ...]:
        """Names of the added adapters."""
        return tuple(self._adapters)

    @property
    def limit(self) -> EndpointLimit:
        """The server's shared concurrency limit (and failure count)."""
        return endpoint_limit(self.base_url)

    def served_name(self, adapter: str | None) -> str:
        """The model name requests for `adapter` (None: the base model) carry."""
        return self.name if adapter is None else self._adapters[adapter]

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Take an adapter the server serves: under `name`, or the name `adapter_names` gives
        its folder.

        Raises:
            AdapterError: the server does not serve it (the message gives the flags that would).
        """
        served = self._renamed.get(Path(path).resolve(), name)
        if served not in self.served:
            raise AdapterError(
                f"{self.base_url} does not serve the adapter {served!r} ({path}); it serves "
                f"{list(self.served)}. Start the server with `--lora-modules {served}={path}` "
                f"(vLLM) or `--adapter {served}={path}` (compllm serve)"
            )
        self._adapters[name] = served

    def chat_model(self, adapter: str | None = None, **generation: Any) -> RemoteChatModel:
        """A chat model of the base model or of an added adapter.

        Args:
            adapter: A name given to `add_adapter`, or None for the base model.
            **generation: The local engines' settings: `max_new_tokens`, `stop`, `top_p`,
                `seed`, `do_sample` with `temperature` (greedy without), `grammar` (GBNF, sent
                as `grammar` says); `lookup` changes no output and is not sent.

        Raises:
            AdapterError: `adapter` has not been added.
            ValueError: a setting an OpenAI server cannot take (`logits_processor`,
                `num_beams`, ...).
        """
        if adapter is not None and adapter not in self._adapters:
            raise AdapterError(
                f"unknown adapter {adapter!r} for {self.name}; added: {sorted(self._adapters)}"
            )
        settings = self._settings(dict(generation))
        return remote_chat_model(self.base_url, self.served_name(adapter), **settings)

    def _settings(self, generation: dict[str, Any]) -> dict[str, Any]:
        """`remote_chat_model` arguments from local generation settings."""
        grammar = generation.pop("grammar", None)
        for key in _ENGINE_ONLY:
            generation.pop(key, None)
        sample = generation.pop("do_sample", False)
        temperature = generation.pop("temperature", 1.0)
        unknown = sorted(set(generation) - set(OPENAI_SETTINGS))
        if unknown:
            raise ValueError(
                f"{unknown} cannot be sent to an OpenAI-compatible server; it takes "
                f"{sorted([*OPENAI_SETTINGS, *_SAMPLING, 'grammar', *_ENGINE_ONLY])}"
            )
        settings = {**self._remote, "temperature": float(temperature) if sample else 0.0}
        settings.update({OPENAI_SETTINGS[key]: value for key, value in generation.items()})
        if grammar is not None and self.grammar == "vllm":
            settings["extra_body"] = {"structured_outputs": {"grammar": grammar}}
        return settings


__all__ = [
    "GRAMMAR_FIELDS",
    "EndpointError",
    "EndpointLimit",
    "GrammarField",
    "PerLoopTransport",
    "RemoteChatModel",
    "RemoteModel",
    "endpoint_limit",
    "remote_chat_model",
    "served_models",
]
