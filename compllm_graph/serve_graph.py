"""`compllm serve --graph`: the Comp-LLM graph served as one OpenAI-compatible chat model.

`POST /v1/chat/completions` with `"model": "compllm"` (`--served-name`) runs the whole graph:
the request's messages are the graph's `messages` input (the last one, a user message, is the
question), and the final answer is the assistant message. The decomposition, the routes and the
sub-answers come in the extra top-level field `compllm`, which OpenAI clients ignore; streamed
(`"stream": true`), each graph event (decomposition, route, sub_query_start, sub_query_end,
answer) is a chunk with an empty delta and the event in `compllm`, then the answer is one
content chunk once it stands, and the chunk with `finish_reason` carries the same `compllm`
object as the plain reply. `GET /v1/models` lists the one name, `GET /health` answers.

Limits: at most `--max-concurrency` graph runs at once (the other requests wait in arrival
order), each stopped after `--timeout` seconds (a 504, or an in-band error when streamed); a
client that disconnects has its run cancelled, waiting or running. Bodies, messages and settings
are checked as `compllm serve` checks them (the same OpenAI-format errors); `stop` cuts the
answer at the first stop string, while `max_tokens`, `temperature`, `top_p` and `seed` are
checked but not applied: each model of the graph decodes with its own settings. `usage` counts
the tokens of every model call the run made (those whose model reports usage).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from compllm_graph import serve
from compllm_graph._concurrency import PrioritySemaphore
from compllm_graph._extras import requires
from compllm_graph.errors import CompLLMError
from compllm_graph.nodes.decompose import QuestionError, clean_question
from compllm_graph.serve import (
    CLIENT_CLOSED,
    DEFAULT_MAX_BODY_BYTES,
    BadRequest,
    ClientGone,
    error_response,
    openai_app,
    parse_request,
    read_json,
    unless_disconnected,
)

with requires("serve"):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse

DEFAULT_SERVED_NAME = "compllm"
DEFAULT_MAX_CONCURRENCY = 4
"""Graph runs at once; each holds its sub-queries' model calls, so this bounds memory too."""
DEFAULT_TIMEOUT = 300.0
"""Seconds a graph run may take, from when it starts (waiting for a slot not counted)."""
DETAILS_FIELD = "compllm"
"""The extra top-level field of replies and chunks that holds the run's details or events."""
DEFAULT_GRAPH = "default"
"""`--graph` with no value: the default graph."""
_END = object()  # the last item a run puts on its event queue


class RunTimeout(CompLLMError):
    """A graph run took longer than the server's timeout."""


class GraphOutputError(CompLLMError, ValueError):
    """The graph's output has no answer to send."""


def servable(graph: Any) -> Pregel:
    """The runnable graph of a `StateGraph` (compiled here) or of an already compiled graph.

    Raises:
        ValueError: `graph` is neither, or was compiled with a checkpointer: the server is
            stateless (each request carries its whole conversation), and a checkpointer would
            keep every request's state for good.
    """
    if isinstance(graph, StateGraph):
        return graph.compile(name=DEFAULT_SERVED_NAME)
    if not isinstance(graph, Pregel):
        raise ValueError(
            f"expected a LangGraph StateGraph or compiled graph, got {type(graph).__name__}"
        )
    if isinstance(graph.checkpointer, BaseCheckpointSaver):
        raise ValueError(
            "the graph was compiled with a checkpointer; serve it uncompiled or compiled "
            "without one: each request carries its whole conversation, and a checkpointer "
            "would keep every request's state"
        )
    return graph


def load_graph(spec: str) -> Pregel:
    """The graph `spec` names, `package.module:attribute` or `path/to/file.py:attribute`.

    As with uvicorn, a module is looked up from the working directory too, and a file's own
    folder is searched for its imports. The attribute may be a `StateGraph`, a compiled graph,
    or a function of no arguments that returns either (see `servable`).

    Raises:
        ValueError: `spec` is malformed, its module cannot be imported, it has no such
            attribute, or the attribute is not a graph `servable` accepts.
    """
    where, sep, attribute = spec.rpartition(":")
    if not sep or not where or not attribute.isidentifier():
        raise ValueError(f"--graph takes MODULE:ATTRIBUTE or FILE.py:ATTRIBUTE, got {spec!r}")
    module = _import(where)
    if not hasattr(module, attribute):
        raise ValueError(f"{where} has no attribute {attribute!r}")
    graph = getattr(module, attribute)
    if callable(graph) and not isinstance(graph, StateGraph | Pregel):
        graph = graph()  # a factory, as langgraph.json allows
    return servable(graph)


def _import(where: str) -> ModuleType:
    """Import a module by dotted name (from the working directory too) or by file path."""
    if where.endswith(".py"):
        path = Path(where).resolve()
        if not path.is_file():
            raise ValueError(f"no such file: {where}")
        if path.stem in sys.modules:
            raise ValueError(
                f"a module named {path.stem!r} is already imported: rename {where} or give "
                "MODULE:ATTRIBUTE"
            )
        sys.path.insert(0, str(path.parent))  # its sibling modules, as `python FILE` finds them
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None  # a .py file always has both
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # dataclasses and pickling look their module up here
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # a console script's path lacks the working directory
    try:
        return importlib.import_module(where)
    except ImportError as exc:
        raise ValueError(f"cannot import {where}: {exc}") from exc


def graph_input(body: Any, name: str) -> tuple[list[BaseMessage], list[str]]:
    """The graph's messages and the stop strings of a chat completion request for `name`.

    Raises:
        BadRequest: what `compllm serve` refuses (`serve.parse_request`), or a conversation
            whose last message is not a user message with a question.
    """
    _, messages, kwargs = parse_request(body, (name,), max_new_tokens=1)  # nothing to cap
    last = messages[-1]
    if not isinstance(last, HumanMessage):
        role = {"ai": "assistant"}.get(last.type, last.type)
        raise BadRequest(
            f"the last message must be the user's question (role 'user'), not role {role!r}",
            param="messages",
        )
    try:
        clean_question(last.text, "the last user message")
    except QuestionError as exc:
        raise BadRequest(str(exc), param="messages") from exc
    return messages, list(kwargs.get("stop", ()))


def answer_of(out: Mapping[str, Any]) -> str:
    """The answer in a run's output: its `answer`, else its last message when an AI's (the
    output of any messages graph, such as an agent).

    Raises:
        GraphOutputError: the output has neither.
    """
    answer = out.get("answer")
    if isinstance(answer, str):
        return answer
    messages = out.get("messages") or []
    if messages and isinstance(messages[-1], AIMessage):
        return messages[-1].text
    raise GraphOutputError("the graph returned neither 'answer' nor messages ending in an answer")


def details(out: Mapping[str, Any], seconds: float) -> dict[str, Any]:
    """The `compllm` field of a reply: the run's decomposition, routes and sub-answers (the
    fields of `compllm ask --json`, those the output has), how the answer was made, and the
    run's seconds."""
    found = {key: out[key] for key in ("query",) if key in out}
    if isinstance(out.get("query_graph"), Mapping):
        found["sub_queries"] = out["query_graph"].get("sub_queries")
    keys = ("routes", "sub_answers", "aggregation", "fallback_reason", "split_rule")
    found.update((key, out[key]) for key in keys if key in out)
    return {**found, "seconds": round(seconds, 3)}


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first of `stops` it contains (the OpenAI meaning of `stop`)."""
    ends = [text.find(stop) for stop in stops if stop and stop in text]
    return text[: min(ends)] if ends else text


class GraphRunner:
    """Runs the served graph: at most `max_concurrency` runs at once, the others waiting in
    arrival order, each run stopped after `timeout` seconds."""

    def __init__(self, graph: Pregel, max_concurrency: int, timeout: float) -> None:
        self.graph = graph
        self.slots = PrioritySemaphore(max_concurrency)
        self.timeout = timeout

    async def run(
        self,
        messages: list[BaseMessage],
        config: RunnableConfig,
        events: asyncio.Queue[Any] | None = None,
    ) -> tuple[dict[str, Any], float]:
        """Run the graph on `messages` once a slot is free, putting each of its stream events
        on `events`; returns its output and the seconds it ran.

        Raises:
            RunTimeout: the run took longer than `timeout`; it was cancelled.
        """
        async with self.slots.ahold():
            loop = asyncio.get_running_loop()
            started = loop.time()
            work = self._values(messages, config, events)
            try:
                out = await asyncio.wait_for(work, self.timeout)
            except asyncio.TimeoutError:
                if loop.time() - started < self.timeout:
                    raise  # a model's own timeout, not the server's
                raise RunTimeout(f"the graph did not answer within {self.timeout:g} s") from None
            return out, loop.time() - started

    async def _values(
        self, messages: list[BaseMessage], config: RunnableConfig, events: asyncio.Queue[Any] | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        stream: AsyncIterator[Any] = self.graph.astream(
            {"messages": messages}, config, stream_mode=["custom", "values"]
        )  # (mode, chunk) pairs
        async for mode, chunk in stream:
            if mode == "values":
                out = chunk
            elif events is not None:
                events.put_nowait(chunk)
        return out


class TokenCount(BaseCallbackHandler):
    """Adds up the tokens that the model calls of a run report (langchain's
    `UsageMetadataCallbackHandler` skips a call whose reply names no model)."""

    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0
        self._lock = threading.Lock()  # sync nodes call models on executor threads

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        """Count the reply's `usage_metadata`, if it has any."""
        for generations in response.generations:
            for generation in generations:
                usage = getattr(getattr(generation, "message", None), "usage_metadata", None)
                if usage:
                    with self._lock:
                        self.prompt += usage.get("input_tokens", 0)
                        self.completion += usage.get("output_tokens", 0)

    def usage(self) -> dict[str, int]:
        """The OpenAI `usage` object of the tokens counted."""
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        }


class _Call:
    """One chat completion: its id, its usage counter and the config of its run."""

    def __init__(self, name: str, messages: list[BaseMessage], stops: list[str]) -> None:
        self.name = name
        self.messages = messages
        self.stops = stops
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.tokens = TokenCount()
        self.config: RunnableConfig = {
            "callbacks": [self.tokens],
            "run_name": name,
            "metadata": {"completion_id": self.id},
        }

    def reply(self, out: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        """The `chat.completion` body of a finished run."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": cut_at_stop(answer_of(out), self.stops),
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": self.tokens.usage(),
            DETAILS_FIELD: details(out, seconds),
        }

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        """One server-sent event of a `chat.completion.chunk`."""
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.name,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(body, default=str)}\n\n"  # default: a user graph's events

    def delta(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        """A chunk of the one choice."""
        return self.chunk([{"index": 0, "delta": delta, "finish_reason": finish}], **extra)


def _json(body: Mapping[str, Any], status: int = 200) -> Response:
    # default=str: a user graph's state may hold values JSON cannot write.
    return Response(json.dumps(body, default=str), status, media_type="application/json")


def _failure(exc: Exception) -> tuple[int, str | None]:
    """The HTTP status and error code of a run that raised `exc`."""
    if isinstance(exc, RunTimeout):
        return 504, "timeout"
    if isinstance(exc, QuestionError):
        return 400, None
    return 500, None


class _GraphCompletions:
    """The `/v1/chat/completions` handler of the served graph."""

    def __init__(self, runner: GraphRunner, name: str, max_body_bytes: int) -> None:
        self.runner = runner
        self.name = name
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request) -> Response:
        """Answer one chat completion with a graph run, plain or streamed.

        A client that disconnects has its run cancelled, whether it waits for a slot or runs:
        the streamed reply by starlette's `StreamingResponse`, the plain one by
        `unless_disconnected`. Cancelling reaches the graph's async nodes and model calls; a
        sync node running on an executor thread finishes unread.
        """
        try:
            body = await read_json(request, self.max_body_bytes)
            messages, stops = graph_input(body, self.name)
        except ClientGone as exc:
            return error_response(CLIENT_CLOSED, str(exc))
        except BadRequest as exc:
            return error_response(exc.status, str(exc), param=exc.param, code=exc.code)
        call = _Call(self.name, messages, stops)
        if body.get("stream"):
            options = body.get("stream_options")
            usage = isinstance(options, dict) and bool(options.get("include_usage"))
            return StreamingResponse(self._stream(call, usage), media_type="text/event-stream")
        try:
            out, seconds = await unless_disconnected(
                request, self.runner.run(messages, call.config)
            )
            return _json(call.reply(out, seconds))
        except ClientGone as exc:
            return error_response(CLIENT_CLOSED, str(exc))
        except Exception as exc:  # report the run's failure to the client, keep serving
            status, code = _failure(exc)
            return error_response(status, f"{type(exc).__name__}: {exc}", code=code)

    async def _stream(self, call: _Call, include_usage: bool) -> AsyncIterator[str]:
        events: asyncio.Queue[Any] = asyncio.Queue()
        run = asyncio.ensure_future(self._run_then_end(call, events))
        try:
            yield call.delta({"role": "assistant", "content": ""})
            while (event := await events.get()) is not _END:
                yield call.delta({}, **{DETAILS_FIELD: event})
            out, seconds = run.result()
            reply = call.reply(out, seconds)
        except Exception as exc:  # headers are sent: report the failure in-band
            status, code = _failure(exc)
            kind = "server_error" if status >= 500 else "invalid_request_error"
            error = {"message": f"{type(exc).__name__}: {exc}", "type": kind, "code": code}
            yield f"data: {json.dumps({'error': error})}\n\n"
            return
        finally:  # the client left, or the run failed: stop it
            run.cancel()
        yield call.delta({"content": reply["choices"][0]["message"]["content"]})
        result = {"event": "result", **reply[DETAILS_FIELD]}
        yield call.delta({}, "stop", **{DETAILS_FIELD: result})
        if include_usage:
            yield call.chunk([], usage=reply["usage"])
        yield "data: [DONE]\n\n"

    async def _run_then_end(
        self, call: _Call, events: asyncio.Queue[Any]
    ) -> tuple[dict[str, Any], float]:
        try:
            return await self.runner.run(call.messages, call.config, events)
        finally:
            events.put_nowait(_END)


def create_graph_app(
    graph: Any,
    *,
    name: str = DEFAULT_SERVED_NAME,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Starlette:
    """An OpenAI-compatible app serving `graph` as the chat model `name`.

    Args:
        graph: A `StateGraph` (such as `build_default_graph(...)`) or a graph compiled without a
            checkpointer, whose input takes `messages` and whose output has `answer` or ends
            its `messages` with the answer.
        name: The model name clients ask for.
        max_concurrency: Graph runs at once; further requests wait in arrival order.
        timeout: Seconds a run may take once it starts; a longer one is cancelled (HTTP 504).
        max_body_bytes: The largest request body accepted (413 above it).

    Raises:
        ValueError: not a graph `servable` accepts, an empty name, or a limit below 1 (a
            timeout of 0 or less).
    """
    if not name.strip():
        raise ValueError("the served name must not be empty")
    if max_concurrency < 1 or max_body_bytes < 1:
        raise ValueError(
            f"max_concurrency and max_body_bytes must be >= 1, got {max_concurrency} and "
            f"{max_body_bytes}"
        )
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    runner = GraphRunner(servable(graph), max_concurrency, timeout)
    app = openai_app(_GraphCompletions(runner, name, max_body_bytes).handle, [name])
    app.state.runner = runner  # its `slots` tell how many runs hold a slot, and the peak
    return app


def add_graph_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `--graph` options to `compllm serve`'s parser."""
    group = parser.add_argument_group("serving the Comp-LLM graph (--graph)")
    group.add_argument(
        "--graph",
        nargs="?",
        const=DEFAULT_GRAPH,
        default=None,
        metavar="MODULE:ATTRIBUTE",
        help="serve the whole graph as one chat model: alone, the default graph on --model "
        "(with --store, --decomposer, --scheduler, --experts-url); or your StateGraph or "
        "compiled graph, e.g. my_app.graphs:graph or path/to/file.py:graph",
    )
    group.add_argument(
        "--served-name",
        default=None,
        help=f"the model name clients ask for (default: {DEFAULT_SERVED_NAME})",
    )
    group.add_argument("--store", default=None, help="expert store folder (default: the demo one)")
    group.add_argument(
        "--decomposer", default=None, help="decomposer adapter folder (default: the shipped one)"
    )
    group.add_argument(
        "--scheduler", choices=("eager", "waves"), default=None, help="default: eager"
    )
    group.add_argument(
        "--experts-url",
        default=None,
        metavar="URL",
        help="the store's adapter experts answer on this OpenAI-compatible server (vLLM with "
        "`compllm experts vllm-args`), the rest of the graph here",
    )
    group.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help=f"graph runs at once; more requests wait in arrival order (default: "
        f"{DEFAULT_MAX_CONCURRENCY})",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds a run may take once started, then HTTP 504 (default: {DEFAULT_TIMEOUT:g})",
    )


def register(parser: argparse.ArgumentParser) -> None:
    """Give the `compllm serve` parser its description and every argument, `--graph`'s too."""
    serve.register(parser)
    parser.description = f"{parser.description}\n\n{__doc__}"
    add_graph_arguments(parser)
    parser.set_defaults(func=run)


_GRAPH_ONLY = ("served_name", "max_concurrency", "timeout")
_DEFAULT_GRAPH_ONLY = ("store", "decomposer", "scheduler", "experts_url")
_NOT_FOR_YOUR_GRAPH = (*_DEFAULT_GRAPH_ONLY, "max_new_tokens", "engine", "threads")


def run(args: argparse.Namespace) -> int:
    """`compllm serve`: the graph with `--graph`, else the model and its adapters."""
    problem = _graph_option_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.graph is None:
        return serve.run(args)
    name = args.served_name or DEFAULT_SERVED_NAME
    try:
        graph = default_graph(args) if args.graph == DEFAULT_GRAPH else load_graph(args.graph)
        app = create_graph_app(
            graph,
            name=name,
            max_concurrency=args.max_concurrency or DEFAULT_MAX_CONCURRENCY,
            timeout=DEFAULT_TIMEOUT if args.timeout is None else args.timeout,
            max_body_bytes=args.max_body_bytes,
        )
    except (CompLLMError, ValueError, OSError) as exc:  # ModelLoadError, StoreError, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return serve.serve_app(app, args.host, args.port, [name])


def _graph_option_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options: one that does nothing here, or a bad value; or None."""

    def given(names: tuple[str, ...]) -> str:
        return ", ".join(f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is not None)

    if args.graph is None:
        flags = given((*_GRAPH_ONLY, *_DEFAULT_GRAPH_ONLY))
        return f"{flags} only apply with --graph" if flags else None
    if args.adapter:
        return "--adapter serves a model's adapters; with --graph, experts come from --store"
    if args.graph != DEFAULT_GRAPH and given(_NOT_FOR_YOUR_GRAPH):
        return f"{given(_NOT_FOR_YOUR_GRAPH)} set up the default graph, not {args.graph}"
    if args.max_concurrency is not None and args.max_concurrency < 1:
        return f"--max-concurrency must be >= 1, got {args.max_concurrency}"
    if args.timeout is not None and not args.timeout > 0:
        return f"--timeout must be > 0 seconds, got {args.timeout}"
    return serve.option_problem(args)


def default_graph(args: argparse.Namespace) -> StateGraph:
    """`build_default_graph` on `--model` with `--store`, `--decomposer`, `--scheduler`,
    `--max-new-tokens` and, with `--experts-url`, the store's experts on that server.

    Raises:
        ModelLoadError: the model cannot be loaded.
        StoreError: the store cannot be opened, or its experts cannot be served remotely.
        ValueError: a bad URL or setting.
    """
    from compllm_graph.defaults import DEFAULT_MAX_NEW_TOKENS, build_default_graph
    from compllm_graph.expert_store import ExpertStore, demo_store
    from compllm_graph.expert_store.serving import remote_expert_chat_models

    local = serve.load_local(args)
    store = ExpertStore.open(args.store) if args.store else demo_store(local.name)
    max_new_tokens = args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    experts = None
    if args.experts_url:
        experts = remote_expert_chat_models(
            store.experts(), args.experts_url, base_model=local.name, max_tokens=max_new_tokens
        )
    return build_default_graph(
        local,
        store,
        max_new_tokens=max_new_tokens,
        decomposer_adapter=args.decomposer,
        scheduler=args.scheduler or "eager",
        experts=experts,
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m compllm_graph.serve_graph`: the same as `compllm serve`."""
    parser = argparse.ArgumentParser(
        prog="compllm serve", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    register(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))


__all__ = ["create_graph_app", "load_graph", "register", "servable"]

if __name__ == "__main__":
    sys.exit(main())
