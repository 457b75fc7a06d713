"""Fake chat models for unit tests: deterministic, no network, optional latency and failures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from compllm_graph.adapter_folder import AdapterError
from compllm_graph.types import Route


class FakeChat(BaseChatModel):
    """Replies `reply(messages)` after `delay` seconds; records every call.

    `fail_times` makes the first N calls raise; `hang` makes every call sleep `delay` forever-ish
    (use with a timeout).
    """

    label: str = "fake"
    reply: Callable[[list[BaseMessage]], str] | None = None
    delay: float = 0.0
    fail_times: int = 0
    calls: list[str] = Field(default_factory=list)
    starts: list[float] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "fake-chat"

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        text = str(messages[-1].content)
        self.calls.append(text)
        if len(self.calls) <= self.fail_times:
            raise RuntimeError(f"{self.label} is down")
        out = self.reply(messages) if self.reply else f"{self.label} answer to: {text}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(out))])

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.starts.append(time.perf_counter())
        time.sleep(self.delay)
        return self._answer(messages)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.starts.append(time.perf_counter())
        await asyncio.sleep(self.delay)
        return self._answer(messages)


def decomposer(output: str) -> FakeChat:
    """A decomposer that always writes `output`."""
    return FakeChat(label="decomposer", reply=lambda _: output)


def keyword_router(table: dict[str, str], score: float = 0.9) -> Callable[[list[str]], list[Route]]:
    """Routes a text to the first expert whose keyword it contains, else to base."""

    def route(texts: list[str]) -> list[Route]:
        routes = []
        for text in texts:
            expert = next((e for k, e in table.items() if k in text), None)
            routes.append(
                Route(expert, score if expert else 0.1, [(expert, score)] if expert else [])
            )
        return routes

    return route


class RefusingModel:
    """A loaded model that refuses a second load of a name, as the llama.cpp engine does, and
    loads slowly: graphs built at once on it must load each adapter once."""

    name = "tiny"

    def __init__(self) -> None:
        self.loaded: dict[str, Path] = {}
        self.lock = threading.Lock()

    @property
    def adapters(self) -> tuple[str, ...]:
        return tuple(self.loaded)

    def add_adapter(self, name: str, path: str | Path) -> None:
        with self.lock:  # the engine's own lock: one load at a time, checked inside it
            if name in self.loaded:
                raise AdapterError(f"adapter {name!r} is already loaded")
            time.sleep(0.1)  # wide enough for every thread to find the adapter missing
            self.loaded[name] = Path(path)

    def chat_model(self, adapter: str | None = None, **generation: object) -> str | None:
        return adapter
