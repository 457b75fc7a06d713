"""`compllm serve`: an OpenAI-compatible chat server over a local model and its LoRA adapters.

`POST /v1/chat/completions` (plain or streamed as server-sent events) and `GET /v1/models` serve
each adapter under its own name and the base model under its alias, the way vLLM serves
`--lora-modules`. Every request goes through the loaded model's chat models, so concurrent HTTP
requests, whichever adapters they name, are batched into shared forward passes.

Decoding is greedy unless the request sets `temperature` > 0. `max_completion_tokens` (or, where
it is absent or null, `max_tokens`) is capped by the server's `--max-new-tokens`, which is also
the default. Tools, `n` > 1 and JSON response formats are refused with a 400; penalties and
logprobs are ignored.

Faults: every error, from any route, is an OpenAI-format JSON body (`{"error": {"message",
"type", "param", "code"}}`). A body that is not UTF-8, not JSON, nested too deeply to parse, or
holds a lone surrogate (`"\\ud800"`, which no encoder can write) in any string gets a 400 naming
the problem; an unexpected failure gets a 500. A client that disconnects before its reply,
streamed or not, has its generation cancelled (see `_Completions.handle`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from compllm_graph._extras import requires
from compllm_graph._help import field_help
from compllm_graph.errors import CompLLMError
from compllm_graph.models.catalogue import DEFAULT_MODEL
from compllm_graph.models.requests import GenerationSettings

with requires("serve"):
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_MAX_BODY_BYTES = 1_000_000
"""Larger request bodies are answered 413 (`--max-body-bytes`)."""
_DESCRIPTION = (__doc__ or "").split("\n", 1)[1].strip()
BATCH_SIZE_HEADER = "x-compllm-batch-size"
"""Response header: how many requests shared the `generate` call that answered this one."""

_ROLES = {
    "system": SystemMessage,
    "developer": SystemMessage,
    "user": HumanMessage,
    "assistant": AIMessage,
}
_UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call")
CLIENT_CLOSED = 499
"""Status of a request whose client disconnected before its reply (nginx's; nobody reads it)."""
_T = TypeVar("_T")


class BadRequest(CompLLMError, ValueError):
    """A request the server refuses with HTTP 400 (404 for an unknown model, 413 for a body
    over the limit)."""

    def __init__(
        self, message: str, *, param: str | None = None, status: int = 400, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.param = param
        self.status = status
        self.code = code


class ClientGone(Exception):
    """The client disconnected before its request was read or its reply was ready."""


def error_response(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> JSONResponse:
    """An OpenAI-format error body (`{"error": {"message", "type", "param", "code"}}`): type
    `invalid_request_error` below status 500, `server_error` from 500 on."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown route, wrong method) in the OpenAI error format."""
    assert isinstance(exc, HTTPException)
    response = error_response(exc.status_code, exc.detail)
    response.headers.update(exc.headers or {})  # a 405's `Allow`
    return response


async def _server_error(request: Request, exc: Exception) -> Response:
    """Any exception a handler let escape, as an OpenAI-format 500 (the server still logs it)."""
    return error_response(500, f"{type(exc).__name__}: {exc}")


async def read_json(request: Request, max_body_bytes: int) -> Any:
    """The request's body, read up to `max_body_bytes` and parsed by `parse_body`.

    Raises:
        BadRequest: the body is larger than `max_body_bytes` (status 413), or `parse_body`
            refuses it.
        ClientGone: the client disconnected while sending it.
    """
    too_big = BadRequest(f"the request body exceeds {max_body_bytes:,} bytes", status=413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body_bytes:
        raise too_big
    raw = bytearray()
    try:
        async for chunk in request.stream():  # a body without a length is cut off at the cap
            raw += chunk
            if len(raw) > max_body_bytes:
                raise too_big
    except ClientDisconnect as exc:
        raise ClientGone("the client disconnected while sending the request") from exc
    return parse_body(bytes(raw))


def parse_body(raw: bytes) -> Any:
    """The JSON value of a request body, refusing what would fail later, whatever the field.

    Raises:
        BadRequest: the body is not UTF-8, not JSON, nested too deeply for the parser, or holds
            a lone surrogate escape (such as `"\\ud800"`) in a string, which no tokenizer or
            response can encode; the message names the field.
    """
    try:
        text = raw.decode("utf-8")  # strict: also refuses UTF-8-encoded surrogates
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the request body is not valid UTF-8: {exc}") from exc
    try:
        body = json.loads(text)
    except RecursionError as exc:
        raise BadRequest("the request body is nested too deeply") from exc
    except ValueError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc
    where = _unencodable(body)
    if where is not None:
        field, param = where
        raise BadRequest(
            f"{field} holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not "
            "valid Unicode",
            param=param,
        )
    return body


def _unencodable(body: Any) -> tuple[str, str | None] | None:
    """The path and top-level field of the first string or key that UTF-8 cannot encode.

    A path reads `messages[0].content`; the field is None for the body itself or a bad
    top-level key. Iterative, so a body as deep as the parser accepts cannot overflow here.
    """
    stack: list[tuple[str, str | None, Any]] = [("", None, body)]
    while stack:
        path, top, value = stack.pop()
        if isinstance(value, str) and not _encodable(value):
            return path or "the request body", top
        if isinstance(value, dict):
            for key, item in value.items():
                if not _encodable(key):
                    return f"a key of {path or 'the request body'}", top
                stack.append((f"{path}.{key}" if path else key, top or key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", top, item) for i, item in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def to_messages(raw: Any) -> list[BaseMessage]:
    """LangChain messages from an OpenAI `messages` list (text content only).

    Raises:
        BadRequest: not a non-empty list of `{"role", "content"}` with a known role and text.
    """
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages must be a non-empty list", param="messages")
    messages = []
    for i, item in enumerate(raw):
        role = item.get("role") if isinstance(item, dict) else None
        if role not in _ROLES:
            raise BadRequest(
                f"messages[{i}].role must be one of {sorted(_ROLES)}, got {role!r}",
                param="messages",
            )
        messages.append(_ROLES[role](_text(item.get("content"), i)))
    return messages


def _text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise BadRequest(
        f"messages[{index}].content must be a string or a list of text parts", param="messages"
    )


def generation_kwargs(body: Mapping[str, Any], max_new_tokens: int) -> dict[str, Any]:
    """Chat-model call arguments from an OpenAI request body.

    Raises:
        BadRequest: an unsupported feature or an out-of-range value.
    """
    for key in _UNSUPPORTED:
        if body.get(key):
            raise BadRequest(f"{key} is not supported by compllm serve", param=key)
    if body.get("n", 1) != 1:
        raise BadRequest("only n=1 is supported", param="n")
    response_format = body.get("response_format") or {"type": "text"}
    if not isinstance(response_format, dict) or response_format.get("type") != "text":
        raise BadRequest("only text responses are supported", param="response_format")
    kwargs: dict[str, Any] = {"max_new_tokens": _max_tokens(body, max_new_tokens)}
    temperature = _number(body, "temperature", 0.0, 2.0)
    if temperature:  # absent or 0: greedy
        kwargs.update(do_sample=True, temperature=temperature)
        top_p = _number(body, "top_p", 0.0, 1.0)
        if top_p:
            kwargs["top_p"] = top_p
    if body.get("seed") is not None:
        if not isinstance(body["seed"], int) or isinstance(body["seed"], bool):
            raise BadRequest("seed must be an integer", param="seed")
        kwargs["seed"] = body["seed"]
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise BadRequest("stop must be a string or a list of strings", param="stop")
        kwargs["stop"] = stops
    return kwargs


def parse_request(
    body: Any, served: Collection[str], max_new_tokens: int
) -> tuple[str, list[BaseMessage], dict[str, Any]]:
    """The model name, messages and chat-model call arguments of a chat completion request.

    Raises:
        BadRequest: the body is not a JSON object, names a model not in `served` (404), or has
            bad messages or settings (`to_messages`, `generation_kwargs`).
    """
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    name = body.get("model")
    if not isinstance(name, str) or name not in served:
        raise BadRequest(
            f"model {name!r} does not exist; served: {sorted(served)}",
            param="model",
            status=404,
            code="model_not_found",
        )
    kwargs = generation_kwargs(body, max_new_tokens)
    return name, to_messages(body.get("messages")), kwargs


def _max_tokens(body: Mapping[str, Any], ceiling: int) -> int:
    """`max_completion_tokens`, else (absent or null, as OpenAI clients send) `max_tokens`,
    capped at `ceiling`, which is also the default."""
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(key)
    if value is None:
        return ceiling
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(f"{key} must be a positive integer", param=key)
    return min(value, ceiling)


def _number(body: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(f"{key} must be a number in [{low}, {high}]", param=key)
    return float(value)


def _check_context(chat: BaseChatModel, messages: list[BaseMessage], max_tokens: int) -> None:
    """Refuse a prompt that cannot fit the model's context before it reaches the batcher.

    Raises:
        BadRequest: the prompt plus `max_tokens` exceeds the served model's context length.
    """
    backend = getattr(chat, "local", None)
    limit = getattr(backend, "context_length", None)
    if backend is None or not isinstance(limit, int):
        return  # not a local model: the remote end enforces its own limit
    prompt = len(backend.encode_chat(messages))
    if prompt + max_tokens > limit:
        raise BadRequest(
            f"the prompt is {prompt:,} tokens; with max_tokens {max_tokens} it exceeds the "
            f"model's context of {limit:,} tokens",
            param="messages",
            code="context_length_exceeded",
        )


def _usage(message: BaseMessage) -> dict[str, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class _Completions:
    """The `/v1/chat/completions` handler over a fixed set of named chat models."""

    def __init__(
        self, models: Mapping[str, BaseChatModel], max_new_tokens: int, max_body_bytes: int
    ) -> None:
        self.models = dict(models)
        self.max_new_tokens = max_new_tokens
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request) -> Response:
        """Answer one chat completion, plain or streamed.

        A client that disconnects first has its generation cancelled: the streamed reply by
        starlette's `StreamingResponse`, the plain one by `unless_disconnected`, both on the
        ASGI `http.disconnect` message. Cancelling reaches a model's coroutine (a local model
        then drops the request from its batch, or stops its row); a model without native async
        support runs `_generate` on an executor thread, which cannot be stopped and finishes
        unread.
        """
        try:
            body = await read_json(request, self.max_body_bytes)
            chat, name, messages, kwargs = self._parse(body)
            _check_context(chat, messages, kwargs.get("max_new_tokens", self.max_new_tokens))
        except ClientGone as exc:
            return error_response(CLIENT_CLOSED, str(exc))
        except BadRequest as exc:
            return error_response(exc.status, str(exc), param=exc.param, code=exc.code)
        if body.get("stream"):
            options = body.get("stream_options")
            usage = isinstance(options, dict) and bool(options.get("include_usage"))
            return StreamingResponse(
                self._stream(chat, name, messages, kwargs, usage), media_type="text/event-stream"
            )
        try:
            reply = await unless_disconnected(request, chat.ainvoke(messages, **kwargs))
        except ClientGone as exc:
            return error_response(CLIENT_CLOSED, str(exc))
        except (TypeError, ValueError) as exc:  # settings the model rejects
            return error_response(400, str(exc))
        except Exception as exc:  # report any model failure to the client, keep serving
            return error_response(500, f"{type(exc).__name__}: {exc}")
        return self._response(name, reply)

    def _parse(self, body: Any) -> tuple[BaseChatModel, str, list[BaseMessage], dict[str, Any]]:
        name, messages, kwargs = parse_request(body, self.models, self.max_new_tokens)
        return self.models[name], name, messages, kwargs

    @staticmethod
    def _response(name: str, reply: BaseMessage) -> JSONResponse:
        metadata = reply.response_metadata
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": metadata.get("finish_reason", "stop"),
                }
            ],
            "usage": _usage(reply),
        }
        headers = {}
        if "batch_size" in metadata:
            headers[BATCH_SIZE_HEADER] = str(metadata["batch_size"])
        return JSONResponse(body, headers=headers)

    @staticmethod
    async def _stream(
        chat: BaseChatModel,
        name: str,
        messages: list[BaseMessage],
        kwargs: dict[str, Any],
        include_usage: bool,
    ) -> AsyncIterator[str]:
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": name,
        }

        def event(choices: list[dict[str, Any]], **extra: Any) -> str:
            return f"data: {json.dumps({**head, 'choices': choices, **extra})}\n\n"

        yield event(
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        )
        last = None
        try:
            async for chunk in chat.astream(messages, **kwargs):
                last = chunk if last is None else last + chunk
                if chunk.text:
                    yield event(
                        [{"index": 0, "delta": {"content": chunk.text}, "finish_reason": None}]
                    )
        except Exception as exc:  # headers are sent: report the failure in-band
            error = {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}
            yield f"data: {json.dumps({'error': error})}\n\n"
            return
        reason = last.response_metadata.get("finish_reason", "stop") if last else "stop"
        yield event([{"index": 0, "delta": {}, "finish_reason": reason}])
        if include_usage and last is not None:
            yield event([], usage=_usage(last))
        yield "data: [DONE]\n\n"


async def unless_disconnected(request: Request, work: Awaitable[_T]) -> _T:
    """Await `work`, cancelling it if the client disconnects first.

    Raises:
        ClientGone: the client disconnected; `work` was cancelled (and awaited).
    """
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():  # the client left first
            raise ClientGone("the client disconnected before the reply")
        return task.result()
    finally:  # also when this handler is itself cancelled
        watch.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})


async def _disconnected(request: Request) -> None:
    """Return once the ASGI server reports `http.disconnect` (after the body was read, servers
    send nothing else until then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(
    models: Mapping[str, BaseChatModel],
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Starlette:
    """An OpenAI-compatible app serving each chat model under its name.

    Requests over `max_body_bytes` get a 413, and a local model's prompt that cannot fit its
    context (with the request's `max_tokens`) a 400 naming the limit, before any generation.
    Every error, including starlette's 404 and 405 and any unexpected exception (a 500), has an
    OpenAI-format JSON body.

    Args:
        models: Served name -> chat model; requests pick one with their `model` field.
        max_new_tokens: Default and ceiling for a request's `max_tokens`.
        max_body_bytes: The largest request body accepted.

    Raises:
        ValueError: no models, or a non-positive `max_new_tokens`.
    """
    if not models:
        raise ValueError("create_app needs at least one model to serve")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    return openai_app(_Completions(models, max_new_tokens, max_body_bytes).handle, list(models))


def openai_app(
    completions: Callable[[Request], Awaitable[Response]], names: Sequence[str]
) -> Starlette:
    """The OpenAI-compatible app around a `/v1/chat/completions` handler: `/v1/models` lists
    `names`, `/health` answers `{"status": "ok"}`, and every error, starlette's 404 and 405 and
    any exception a handler lets escape (a 500) included, has an OpenAI-format JSON body."""
    created = int(time.time())
    listing = {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "compllm"}
            for name in names
        ],
    }

    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse(listing)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )


def local_chat_models(local: Any, **generation: Any) -> dict[str, BaseChatModel]:
    """The served models of a loaded model (either engine): its base under its name, each
    adapter under its own.

    Raises:
        ValueError: an adapter has the base model's name.
    """
    if local.name in local.adapters:
        raise ValueError(f"adapter name {local.name!r} clashes with the base model's name")
    models = {local.name: local.chat_model(**generation)}
    models.update({name: local.chat_model(adapter=name, **generation) for name in local.adapters})
    return models


def _uvicorn_server(app: Starlette, host: str, port: int) -> Any:
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    )


def _bound_url(server: Any, host: str) -> str:
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://{host}:{port}/v1"


@contextmanager
def serve_in_thread(
    app: Starlette, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0
) -> Iterator[str]:
    """Run `app` with uvicorn on a background thread; yields its base URL (`http://…/v1`).

    Port 0 picks a free port. The server stops when the `with` block ends.

    Raises:
        RuntimeError: the server did not start within `startup_timeout` seconds.
    """
    server = _uvicorn_server(app, host, port)
    thread = threading.Thread(target=server.run, name="compllm-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server on {host}:{port} did not start (port in use?)")
        time.sleep(0.02)
    try:
        yield _bound_url(server, host)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _adapter(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, Path(folder)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `compllm serve`'s options to `parser`."""
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="model alias, HF folder or GGUF file (default: %(default)s)",
    )
    parser.add_argument(
        "--adapter",
        action="append",
        type=_adapter,
        default=[],
        metavar="NAME=DIR",
        help="serve a LoRA adapter as model NAME (repeatable)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument(
        "--port", type=int, default=8000, help="default: %(default)s; 0 picks a free port"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help=f"{field_help(GenerationSettings, 'max_new_tokens')}: the default and ceiling of "
        f"a request's max_tokens (default: {DEFAULT_MAX_NEW_TOKENS}); with --graph, the answer "
        "length of experts, base and aggregator (default: that of `compllm ask`)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="larger request bodies get a 413 (default: %(default)s)",
    )
    parser.add_argument(
        "--engine",
        choices=("llama.cpp", "transformers"),
        default=None,
        help="inference engine (default: llama.cpp where installed)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="llama.cpp CPU threads (default: $COMPLLM_THREADS or the physical cores)",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=8,
        help="most requests decoded together per generate call or llama.cpp adapter context "
        "(1: every answer is the one its request gets alone)",
    )
    parser.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests"
    )
    parser.set_defaults(func=run)


def register(parser: argparse.ArgumentParser) -> None:
    """Give the `compllm serve` parser its description and arguments."""
    parser.description = _DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Load the model and adapters, then serve until interrupted; returns the exit code."""
    from compllm_graph.models import AdapterError, ModelLoadError

    problem = option_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    max_new_tokens = args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS  # option_problem refused 0
    try:
        local = load_local(args)
        for name, folder in args.adapter:
            local.add_adapter(name, folder)
        app = create_app(
            local_chat_models(local),
            max_new_tokens=max_new_tokens,
            max_body_bytes=args.max_body_bytes,
        )
    except (ModelLoadError, AdapterError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return serve_app(app, args.host, args.port, [local.name, *local.adapters])


def option_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with `compllm serve`'s port or token options, or None."""
    if not 0 <= args.port < 65536:
        return f"--port must be in [0, 65535], got {args.port}"
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        return f"--max-new-tokens must be >= 1, got {args.max_new_tokens}"
    return None


def load_local(args: argparse.Namespace) -> Any:
    """The local model of `compllm serve`'s `--model`, `--engine`, `--threads`,
    `--max-batch-size` and `--max-wait-ms`.

    Raises:
        ModelLoadError: the model cannot be loaded.
    """
    from compllm_graph.models import load_model

    return load_model(
        args.model,
        engine=args.engine,
        n_threads=args.threads,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
    )


def serve_app(app: Starlette, host: str, port: int, names: list[str]) -> int:
    """Serve `app` with uvicorn until interrupted, printing `compllm serve: NAMES at URL` once it
    accepts requests; returns the exit code (1 when it could not start)."""
    return asyncio.run(_serve(_uvicorn_server(app, host, port), host, names))


async def _serve(server: Any, host: str, names: list[str]) -> int:
    """Serve until stopped, printing the URL (with the real port) once it accepts requests."""
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if server.started:
        print(f"compllm serve: {', '.join(names)} at {_bound_url(server, host)}", flush=True)
    await serving
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m compllm_graph.serve`: `compllm serve` without `--graph` (`python -m
    compllm_graph.serve_graph` takes every option)."""
    parser = argparse.ArgumentParser(
        prog="compllm serve",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))


__all__ = ["create_app", "local_chat_models", "register", "serve_in_thread"]

if __name__ == "__main__":
    sys.exit(main())
