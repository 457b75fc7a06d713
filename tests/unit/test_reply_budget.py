"""`LocalChatModel.tokens_per_prompt_token`: a reply's budget grows with a long prompt (the
decomposer copies the question), within the model's context; on a fake backend, no model."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

import pytest
from langchain_core.messages import BaseMessage, HumanMessage

from compllm_graph.decomposer.loading import (
    DECOMPOSER_MAX_NEW_TOKENS,
    DECOMPOSER_TOKENS_PER_PROMPT_TOKEN,
)
from compllm_graph.models.chat import LocalChatModel
from compllm_graph.models.requests import Completion, Request


class Backend:
    """A model whose prompt is one token per word; it records each request's budget."""

    name = "fake"

    def __init__(self, context_length: int | None = None) -> None:
        self.budgets: list[int] = []
        if context_length is not None:
            self.context_length = context_length

    @property
    def batcher(self) -> Backend:
        return self

    def submit(self, request: Request) -> Future[Completion]:
        self.budgets.append(request.settings.max_new_tokens)
        done: Future[Completion] = Future()
        done.set_result(Completion("ok", [1], len(request.prompt_ids), "stop", 1))
        return done

    def encode_chat(self, messages: Sequence[BaseMessage]) -> list[int]:
        return [0] * sum(len(m.text.split()) for m in messages)


def budget(words: int, backend: Backend | None = None, **fields: object) -> int:
    backend = backend or Backend()
    chat = LocalChatModel(local=backend, max_new_tokens=512, **fields)  # type: ignore[arg-type]
    chat.invoke([HumanMessage(" ".join(["w"] * words))])
    return backend.budgets[-1]


def test_a_long_prompt_raises_the_budget_by_the_ratio() -> None:
    assert budget(1000) == 512  # off by default
    assert budget(100, tokens_per_prompt_token=1.25) == 512  # short: max_new_tokens stands
    assert budget(1000, tokens_per_prompt_token=1.25) == 1250


def test_the_raised_budget_stays_inside_the_context() -> None:
    assert budget(3000, Backend(context_length=4096), tokens_per_prompt_token=1.25) == 1096
    # never below max_new_tokens: the engine refuses a request that does not fit, as before
    assert budget(3900, Backend(context_length=4096), tokens_per_prompt_token=1.25) == 512


def test_a_call_s_own_max_new_tokens_is_raised_the_same_way() -> None:
    backend = Backend()
    chat = LocalChatModel(local=backend, tokens_per_prompt_token=2.0)
    chat.invoke([HumanMessage("w " * 100)], max_new_tokens=16)
    assert backend.budgets == [200]


def test_the_default_decomposer_grows_its_budget_with_the_question() -> None:
    pytest.importorskip("torch", reason="the decomposer's grammar needs the [local] extra")
    from compllm_graph.decomposer.loading import default_decomposer

    class Model:
        name, adapters = "no-pack-model", ()

        def chat_model(self, adapter: str | None = None, **generation: object) -> object:
            self.generation = generation
            return object()

    model = Model()
    default_decomposer(model)  # type: ignore[arg-type]
    assert model.generation["max_new_tokens"] == DECOMPOSER_MAX_NEW_TOKENS
    assert model.generation["tokens_per_prompt_token"] == DECOMPOSER_TOKENS_PER_PROMPT_TOKEN
    assert DECOMPOSER_TOKENS_PER_PROMPT_TOKEN > 1  # a copy of the question, and its tags


def test_a_remote_model_leaves_the_budget_to_its_server() -> None:
    pytest.importorskip("langchain_openai", reason="needs the [remote] extra")
    from compllm_graph.models.remote import RemoteModel

    remote = RemoteModel("http://127.0.0.1:9", "base", served=["base"])
    chat = remote.chat_model(max_new_tokens=64, tokens_per_prompt_token=1.25)
    assert chat.max_tokens == 64
