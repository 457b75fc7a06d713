"""TransformersModel, adapters, the micro-batcher and the chat model on a tiny random Llama."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="needs the [local] extra")

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from compllm_graph.models import AdapterError, TransformersModel
from compllm_graph.models.requests import GenerationSettings, Request, safe_prefix
from tests.random_lora import save_random_lora

from .conftest import CharTokenizer, tiny_llama

PROMPTS = ["hello there", "a much longer prompt about the sea", "x"]


def request(
    local: TransformersModel,
    prompt: str,
    adapter: str | None = None,
    *,
    max_new: int = 12,
    stop: tuple[str, ...] = (),
    beams: int = 1,
) -> Request:
    return Request(
        prompt_ids=local.encode_chat([HumanMessage(prompt)]),
        adapter=adapter,
        settings=GenerationSettings(max_new_tokens=max_new, num_beams=beams),
        stop=stop,
    )


def with_adapters(local: TransformersModel, tmp_path: Path, count: int) -> list[str]:
    names = [f"expert-{i}" for i in range(count)]
    for i, name in enumerate(names):
        # Large B so the adapters visibly change a random tiny model's greedy output.
        save_random_lora(local.model, tmp_path / name, seed=i, std=2.0)
        local.add_adapter(name, tmp_path / name)
    return names


def test_the_package_exports_both_engines_and_the_old_name() -> None:
    import compllm_graph.models as models
    from compllm_graph.models.llama_model import LlamaCppModel
    from compllm_graph.models.local import LocalModel

    assert models.LocalModel is LocalModel is models.TransformersModel is TransformersModel
    assert models.LlamaCppModel is LlamaCppModel
    assert {"InferenceModel", "LlamaCppModel", "TransformersModel"} <= set(models.__all__)
    assert repr(TransformersModel(tiny_llama(), CharTokenizer(), name="t")).startswith(
        "TransformersModel("
    )


def test_prompt_without_chat_template_is_a_role_transcript(tiny: TransformersModel) -> None:
    ids = tiny.encode_chat([SystemMessage("be brief"), HumanMessage("hi")])
    # "system: be brief\nuser: hi\nassistant:" with punctuation and newlines shown as spaces
    assert tiny.tokenizer.decode(ids) == "system  be brief user  hi assistant "


def test_batched_rows_equal_solo_rows(tiny: TransformersModel) -> None:
    """Left padding and per-row max_new_tokens do not change any row's tokens."""
    limits = [12, 5, 9]
    group = [request(tiny, p, max_new=n) for p, n in zip(PROMPTS, limits, strict=True)]
    batched = tiny.batcher.generate(group)
    for req, out, limit in zip(group, batched, limits, strict=True):
        solo = tiny.batcher.generate([request(tiny, PROMPTS[group.index(req)], max_new=limit)])[0]
        assert out.token_ids == solo.token_ids
        assert out.text == solo.text
        assert len(out.token_ids) <= limit and out.batch_size == 3 and solo.batch_size == 1


def test_mixed_adapter_batch_equals_one_by_one(tiny: TransformersModel, tmp_path: Path) -> None:
    names = with_adapters(tiny, tmp_path, 2)
    adapters: list[str | None] = [None, *names]
    group = [request(tiny, "same prompt", a) for a in adapters]
    batched = tiny.batcher.generate(group)
    solos = [tiny.batcher.generate([request(tiny, "same prompt", a)])[0] for a in adapters]
    assert [b.token_ids for b in batched] == [s.token_ids for s in solos]
    # The adapters are real: each one changes the greedy continuation.
    assert len({tuple(s.token_ids) for s in solos}) == 3


def test_stop_string_cuts_text_and_stream_matches(tiny: TransformersModel) -> None:
    free = tiny.chat_model(max_new_tokens=16).invoke("hello there")
    assert free.content, "the tiny model should produce some letters"
    stop = str(free.content)[3:5]
    cut = tiny.chat_model(max_new_tokens=16).invoke("hello there", stop=[stop])
    assert cut.content == str(free.content)[: str(free.content).index(stop)]
    assert cut.response_metadata["finish_reason"] == "stop"
    chunks = list(tiny.chat_model(max_new_tokens=16, stop=[stop]).stream("hello there"))
    assert "".join(str(c.content) for c in chunks) == cut.content
    merged = sum(chunks[1:], chunks[0])
    assert merged.usage_metadata == cut.usage_metadata
    assert merged.response_metadata["finish_reason"] == "stop"


def test_safe_prefix_holds_back_partial_stop_and_split_characters() -> None:
    assert safe_prefix("hello wor", ["world"]) == len("hello ")
    assert safe_prefix("hello", ["xyz"]) == 5
    assert safe_prefix("caf\ufffd", []) == 3


def test_token_counts_in_metadata(tiny: TransformersModel) -> None:
    reply = tiny.chat_model(max_new_tokens=7).invoke("count me")
    usage = reply.response_metadata["token_usage"]
    assert usage["prompt_tokens"] == len(tiny.encode_chat([HumanMessage("count me")]))
    assert 1 <= usage["completion_tokens"] <= 7
    assert reply.usage_metadata == {
        "input_tokens": usage["prompt_tokens"],
        "output_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
    }


def test_threads_and_event_loops_coalesce(tiny: TransformersModel, tmp_path: Path) -> None:
    names = with_adapters(tiny, tmp_path, 2)
    tiny.batcher.max_wait_s = 1.0  # generous window so scheduling jitter cannot split the batch
    tiny.batcher.max_batch_size = 4
    expected = {
        name: tiny.batcher.generate([request(tiny, "hi", name)])[0].text for name in [None, *names]
    }
    results: dict[str, AIMessage] = {}

    def in_thread() -> None:
        results["thread"] = tiny.chat_model(max_new_tokens=12).invoke("hi")

    async def two_coroutines() -> None:
        a, b = await asyncio.gather(
            tiny.chat_model(adapter=names[0], max_new_tokens=12).ainvoke("hi"),
            tiny.chat_model(adapter=names[1], max_new_tokens=12).ainvoke("hi"),
        )
        results["loop_a"], results["loop_b"] = a, b

    def other_loop() -> None:
        results["other_loop"] = asyncio.run(
            tiny.chat_model(adapter=names[0], max_new_tokens=12).ainvoke("hi")
        )

    threads = [threading.Thread(target=in_thread), threading.Thread(target=other_loop)]
    for thread in threads:
        thread.start()
    asyncio.run(two_coroutines())
    for thread in threads:
        thread.join(timeout=60)
    wanted = {"thread": None, "loop_a": names[0], "loop_b": names[1], "other_loop": names[0]}
    for key, adapter in wanted.items():
        reply = results[key]
        assert reply.content == expected[adapter], key
        assert reply.response_metadata["batch_size"] == 4, key


async def test_astream_matches_ainvoke(tiny: TransformersModel) -> None:
    chat = tiny.chat_model(max_new_tokens=10)
    whole = await chat.ainvoke("stream me")
    pieces = [str(chunk.content) async for chunk in chat.astream("stream me")]
    assert "".join(pieces) == whole.content


def test_seeded_sampling_is_reproducible_and_differs_from_greedy(tiny: TransformersModel) -> None:
    sample = tiny.chat_model(max_new_tokens=20, do_sample=True, temperature=1.5, seed=7)
    assert sample.invoke("roll").content == sample.invoke("roll").content
    other = tiny.chat_model(max_new_tokens=20, do_sample=True, temperature=1.5, seed=8)
    greedy = tiny.chat_model(max_new_tokens=20)
    texts = {
        sample.invoke("roll").content,
        other.invoke("roll").content,
        greedy.invoke("roll").content,
    }
    assert len(texts) == 3


def test_generation_failure_reaches_every_caller(tiny: TransformersModel) -> None:
    bad = request(tiny, "hi")
    bad.prompt_ids = [10_000]  # out of the vocabulary: the embedding lookup fails
    future = tiny.batcher.submit(bad)
    with pytest.raises(IndexError):
        future.result(timeout=30)
    assert tiny.chat_model(max_new_tokens=3).invoke("still works").response_metadata


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
    ],
)
def test_bad_generation_settings(tiny: TransformersModel, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny.chat_model(**kwargs).invoke("hi")


def test_unknown_runtime_argument_is_rejected(tiny: TransformersModel) -> None:
    with pytest.raises(TypeError, match="frequency_penalty"):
        tiny.chat_model().invoke("hi", frequency_penalty=1.0)


@pytest.mark.parametrize("name", ["", "../evil", "a.b", "__base__", "1abc", "x" * 65, "a b"])
def test_unsafe_adapter_names_are_rejected(
    tiny: TransformersModel, tmp_path: Path, name: str
) -> None:
    save_random_lora(tiny.model, tmp_path / "ok", seed=0)
    with pytest.raises(AdapterError, match="unsafe adapter name"):
        tiny.add_adapter(name, tmp_path / "ok")


def test_pickle_adapters_are_refused(tiny: TransformersModel, tmp_path: Path) -> None:
    folder = save_random_lora(tiny.model, tmp_path / "bin", seed=0)
    (folder / "adapter_model.safetensors").rename(folder / "adapter_model.bin")
    with pytest.raises(AdapterError, match="only safetensors"):
        tiny.add_adapter("legal", folder)
    assert tiny.adapters == ()


def test_bad_adapter_folders(tiny: TransformersModel, tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="does not exist"):
        tiny.add_adapter("missing", tmp_path / "nowhere")
    folder = save_random_lora(tiny.model, tmp_path / "ia3", seed=0)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "IA3"}))
    with pytest.raises(AdapterError, match="LoRA"):
        tiny.add_adapter("ia3", folder)
    other = TransformersModel(tiny_llama_wider(), CharTokenizer(), name="wide")
    wrong = save_random_lora(other.model, tmp_path / "wide", seed=0)
    with pytest.raises(AdapterError, match="does not fit"):
        tiny.add_adapter("wide", wrong)


def tiny_llama_wider() -> Any:
    model = tiny_llama()
    config = model.config
    config.hidden_size, config.intermediate_size = 48, 96
    return type(model)(config)


def test_duplicate_and_unknown_adapters(tiny: TransformersModel, tmp_path: Path) -> None:
    (name,) = with_adapters(tiny, tmp_path, 1)
    with pytest.raises(AdapterError, match="already loaded"):
        tiny.add_adapter(name, tmp_path / name)
    with pytest.raises(AdapterError, match="unknown adapter 'nope'"):
        tiny.chat_model(adapter="nope")
    assert tiny.adapters == (name,)


def test_langchain_batch_coalesces(tiny: TransformersModel) -> None:
    tiny.batcher.max_wait_s = 1.0
    tiny.batcher.max_batch_size = 3
    chat = tiny.chat_model(max_new_tokens=6)
    inputs: list[LanguageModelInput] = list(PROMPTS)
    replies = chat.batch(inputs)
    assert [r.content for r in replies] == [chat.invoke(p).content for p in PROMPTS]
    assert [r.response_metadata["batch_size"] for r in replies] == [3, 3, 3]


def test_abandoned_and_broken_listeners_do_not_hurt_the_batch(tiny: TransformersModel) -> None:
    tiny.batcher.max_wait_s = 1.0
    tiny.batcher.max_batch_size = 3
    quitter = request(tiny, PROMPTS[0], max_new=30)
    quitter.on_text = lambda _piece: quitter.abandoned.set()

    def broken(_piece: str) -> None:
        raise RuntimeError("event loop is closed")

    crasher = request(tiny, PROMPTS[1], max_new=30)
    crasher.on_text = broken
    steady = request(tiny, PROMPTS[2], max_new=30)
    futures = [tiny.batcher.submit(r) for r in (quitter, crasher, steady)]
    done = [f.result(timeout=60) for f in futures]
    assert [d.finish_reason for d in done[:2]] == ["abandoned", "abandoned"]
    assert all(len(d.token_ids) < 30 for d in done[:2])
    solo = tiny.batcher.generate([request(tiny, PROMPTS[2], max_new=30)])[0]
    assert done[2].token_ids == solo.token_ids


def test_exclusive_holds_the_worker_off(tiny: TransformersModel) -> None:
    with tiny.exclusive():
        future = tiny.batcher.submit(request(tiny, "wait", max_new=3))
        with pytest.raises(TimeoutError):
            future.result(timeout=0.3)
    assert future.result(timeout=30).token_ids


class _ForceLetter:
    """A logits processor that only allows one token: the letter `z`."""

    def __init__(self, prompt_width: int) -> None:
        self.prompt_width = prompt_width

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        forced = scores.new_full(scores.shape, float("-inf"))
        forced[:, 3 + 25] = 0.0
        return forced


def test_logits_processor_constrains_only_its_own_requests(tiny: TransformersModel) -> None:
    constrained = tiny.chat_model(max_new_tokens=4, logits_processor=_ForceLetter)
    free = tiny.chat_model(max_new_tokens=4)
    free_alone = free.invoke("hello there").content

    async def both() -> tuple[Any, Any]:
        return await asyncio.gather(constrained.ainvoke("hello there"), free.ainvoke("hello there"))

    forced, unforced = asyncio.run(both())
    assert forced.content == "zzzz" != free_alone
    assert unforced.content == free_alone  # not batched with the constrained request
    assert forced.response_metadata["batch_size"] == 1
