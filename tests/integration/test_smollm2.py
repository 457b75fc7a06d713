"""Integration tests on the real SmolLM2-135M-Instruct (skipped when it is not cached)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from compllm_graph.models import SMALL_MODEL, TransformersModel, home, load_model
from compllm_graph.models.requests import GenerationSettings, Request
from tests.random_lora import save_random_lora

from ..conftest import require_smollm2

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"
ADAPTERS = ("expert-a", "expert-b")


def test_load_chat_template_and_greedy_answer(smollm2: TransformersModel) -> None:
    prompt = smollm2.tokenizer.decode(smollm2.encode_chat([HumanMessage(QUESTION)]))
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith(f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    chat = smollm2.chat_model(max_new_tokens=12)
    first, second = chat.invoke(QUESTION), chat.invoke(QUESTION)
    assert "Paris" in str(first.content)
    assert first.content == second.content
    usage = first.response_metadata["token_usage"]
    assert usage["completion_tokens"] <= 12
    assert first.usage_metadata is not None
    assert first.usage_metadata["input_tokens"] == usage["prompt_tokens"]


def test_safetensors_copy_is_cached(smollm2: TransformersModel) -> None:
    folder = home() / "models" / SMALL_MODEL / "hf"
    stamp = json.loads((folder / "compllm.json").read_text())
    assert (folder / "model.safetensors").is_file()
    assert stamp["gguf_sha256"].startswith("b179c952")


def test_stop_sequence_and_streaming(smollm2: TransformersModel) -> None:
    chat = smollm2.chat_model(max_new_tokens=12)
    free = str(chat.invoke(QUESTION).content)
    cut = chat.invoke(QUESTION, stop=[" is"])
    assert cut.content == free[: free.index(" is")]
    assert cut.response_metadata["finish_reason"] == "stop"
    pieces = [str(chunk.content) for chunk in chat.stream(QUESTION)]
    assert len([p for p in pieces if p]) > 3
    assert "".join(pieces) == free


@pytest.fixture(scope="module")
def with_adapters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransformersModel]:
    """A separate SmolLM2 with two random LoRA adapters (the session model stays clean)."""
    require_smollm2()
    local = load_model(SMALL_MODEL, engine="transformers", max_batch_size=4, max_wait_ms=1000)
    folder = tmp_path_factory.mktemp("adapters")
    for seed, name in enumerate(ADAPTERS):
        local.add_adapter(name, save_random_lora(local.model, folder / name, seed=seed, std=0.1))
    yield local


def request(local: TransformersModel, adapter: str | None, max_new: int) -> Request:
    return Request(
        prompt_ids=local.encode_chat([HumanMessage("Name a color.")]),
        adapter=adapter,
        settings=GenerationSettings(max_new_tokens=max_new),
    )


def test_mixed_adapter_batch_equals_one_by_one(with_adapters: TransformersModel) -> None:
    adapters: list[str | None] = [None, *ADAPTERS]
    limits = [8, 6, 8]
    batched = with_adapters.batcher.generate(
        [request(with_adapters, a, n) for a, n in zip(adapters, limits, strict=True)]
    )
    solos = [
        with_adapters.batcher.generate([request(with_adapters, a, n)])[0]
        for a, n in zip(adapters, limits, strict=True)
    ]
    assert [b.token_ids for b in batched] == [s.token_ids for s in solos]
    assert len({tuple(s.token_ids) for s in solos}) == 3, "adapters must change the output"


def test_concurrent_calls_from_threads_and_asyncio(with_adapters: TransformersModel) -> None:
    expected = {
        a: with_adapters.batcher.generate([request(with_adapters, a, 6)])[0].text
        for a in (None, *ADAPTERS)
    }
    replies: dict[str | None, AIMessage] = {}

    def call(adapter: str | None) -> None:
        replies[adapter] = with_adapters.chat_model(adapter, max_new_tokens=6).invoke(
            "Name a color."
        )

    threads = [threading.Thread(target=call, args=(a,)) for a in (None, ADAPTERS[0])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for adapter in (None, ADAPTERS[0]):
        reply = replies[adapter]
        assert reply.content == expected[adapter]
        assert reply.response_metadata["batch_size"] == 2

    async def both() -> list:
        chats = [with_adapters.chat_model(a, max_new_tokens=6) for a in ADAPTERS]
        return await asyncio.gather(*(c.ainvoke("Name a color.") for c in chats))

    for adapter, reply in zip(ADAPTERS, asyncio.run(both()), strict=True):
        assert reply.content == expected[adapter]
        assert reply.response_metadata["batch_size"] == 2
