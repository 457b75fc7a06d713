"""Prompt-lookup decoding and prompt reuse on the real GGUFs (SmolLM2, and Qwen2.5-Coder-0.5B
where it is cached): the same tokens as plain greedy decoding, with and without an adapter and
the decomposer grammar; rejected drafts leave no trace in the cache; reused prompts answer alike.

Plain and lookup runs are compared token for token, on one thread: there llama.cpp computes a
decode of a few rows exactly as a one-token decode (the engine keeps lookup batches that small,
`SMALL_BATCH_ROWS`), so drafts change how many steps run, not the logits. With more threads
its flash attention splits a one-token decode's work differently once the context passes 256
tokens, and a nearly tied choice can flip (as it can when requests share a batch)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from compllm_graph.decomposer import DECOMPOSER_SYSTEM_PROMPT
from compllm_graph.decomposer.prompts import DECOMPOSER_PROMPT
from compllm_graph.defaults import BASE_SYSTEM_PROMPT
from compllm_graph.models import SMALL_MODEL, is_cached
from compllm_graph.models.requests import Completion, GenerationSettings, LookupConfig, Request
from compllm_graph.nodes.aggregate import AGGREGATE_PROMPT
from compllm_graph.packs import pack_for

from ..conftest import require_smollm2

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason="llama-cpp-python is not installed: `make setup` builds it (about 10 minutes)",
    ),
]

QWEN = "qwen2.5-coder-0.5b-instruct"
QUESTIONS = [
    "Which organelle makes most of a cell's ATP, and what is the chemical formula of glucose?",
    "Who is the spouse of the director of Titanic?",
    "What is the boiling point of water in Kelvin, and how many legs does a spider have?",
]
REDUCER = AGGREGATE_PROMPT.format(
    answers=(
        "Sub-question: Who directed Titanic?\nAnswer: James Cameron directed Titanic.\n"
        "Sub-question: Who is the spouse of James Cameron?\nAnswer: Suzy Amis is his spouse."
    ),
    query="Who is the spouse of the director of Titanic?",
)
CONVERSATIONS: list[list[BaseMessage]] = [
    [SystemMessage(DECOMPOSER_PROMPT), HumanMessage(QUESTIONS[0])],
    [SystemMessage(DECOMPOSER_PROMPT), HumanMessage(QUESTIONS[2])],
    [HumanMessage(REDUCER)],
    [HumanMessage("Repeat exactly: the cat sat on the mat and looked at the dog.")],
    [SystemMessage(BASE_SYSTEM_PROMPT), HumanMessage("Explain why the sky is blue.")],
]

if importlib.util.find_spec("llama_cpp") is not None:
    from compllm_graph.models.download import gguf_path
    from compllm_graph.models.llama_engine import LlamaEngine
    from compllm_graph.models.llama_model import LlamaCppModel


def _load(alias: str, tmp: Path, cached_prompts: int = 0) -> LlamaCppModel:
    if alias == SMALL_MODEL:
        require_smollm2()
    elif not is_cached(alias):
        pytest.skip(f"{alias} is not cached: run `compllm models fetch {alias}`")
    engine = LlamaEngine(gguf_path(alias), n_threads=1, cached_prompts=cached_prompts)
    model = LlamaCppModel(engine, name=alias, cache_dir=tmp)
    pack = pack_for(alias)
    folder = pack.decomposer() if pack is not None else None
    if folder is not None:
        model.add_adapter("decomposer", folder)
    return model


@pytest.fixture(scope="module", params=[SMALL_MODEL, QWEN])
def llama(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Each model on llama.cpp, with its pack's decomposer adapter where the pack is installed."""
    model = _load(request.param, tmp_path_factory.mktemp("lora"))
    yield model
    model.close()


def _run(
    model: LlamaCppModel,
    messages: Sequence[BaseMessage],
    lookup: LookupConfig | None = None,
    *,
    adapter: str | None = None,
    grammar: str | None = None,
    tokens: int = 48,
) -> Completion:
    settings = GenerationSettings(max_new_tokens=tokens, lookup=lookup, grammar=grammar)
    request = Request(model.encode_chat(messages), adapter, settings)
    return model.engine.submit(request).result(timeout=600)


def test_lookup_gives_plain_greedy_tokens(llama: LlamaCppModel) -> None:
    drafted = accepted = 0
    for messages in CONVERSATIONS:
        plain = _run(llama, messages)
        assert plain.drafted_tokens == 0
        for k in (2, 8):
            fast = _run(llama, messages, LookupConfig(draft_tokens=k))
            assert fast.token_ids == plain.token_ids, (k, plain.text, fast.text)
            assert fast.text == plain.text and fast.finish_reason == plain.finish_reason
            drafted += fast.drafted_tokens
            accepted += fast.accepted_tokens
    # the copy-heavy prompts took drafts, and some drafts were wrong (their cells were dropped)
    assert 0 < accepted < drafted


def test_lookup_with_the_decomposer_adapter_and_grammar(llama: LlamaCppModel) -> None:
    if "decomposer" not in llama.adapters:
        pytest.skip(f"no expert pack with a decomposer for {llama.name}")
    from compllm_graph.decomposer.grammar import tag_grammar_gbnf

    grammar = tag_grammar_gbnf()
    accepted = 0
    for question in QUESTIONS:
        messages = [SystemMessage(DECOMPOSER_SYSTEM_PROMPT), HumanMessage(question)]
        plain = _run(llama, messages, adapter="decomposer", grammar=grammar, tokens=160)
        fast = _run(
            llama, messages, LookupConfig(), adapter="decomposer", grammar=grammar, tokens=160
        )
        assert fast.token_ids == plain.token_ids, (plain.text, fast.text)
        accepted += fast.accepted_tokens
    assert accepted > 0


def test_rejected_drafts_leave_nothing_in_the_cache(
    llama: LlamaCppModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every step drafts the right next token and then two wrong ones: the first is kept, the
    wrong ones must be dropped from the cache, or every later token would see them."""
    messages = [HumanMessage("Explain why the sky is blue.")]
    prompt = llama.encode_chat(messages)
    plain = _run(llama, messages, tokens=40).token_ids
    vocabulary = [t for t in llama.encode_chat([HumanMessage("zebra quartz violin")]) if t]

    def half_right(history: Sequence[int], limit: int, **_: int) -> list[int]:
        done = len(history) - len(prompt)
        if done + 1 >= len(plain):
            return []
        wrong = [t for t in vocabulary if t != plain[done + 1]][:2]
        return [plain[done], *wrong][:limit]

    monkeypatch.setattr("compllm_graph.models.llama_engine.find_draft", half_right)
    fast = _run(llama, messages, LookupConfig(draft_tokens=3), tokens=40)
    assert fast.token_ids == plain
    assert fast.drafted_tokens > fast.accepted_tokens > 0


def test_sampled_requests_ignore_lookup(llama: LlamaCppModel) -> None:
    messages = [HumanMessage(REDUCER)]
    settings = GenerationSettings(max_new_tokens=16, do_sample=True, seed=3, lookup=LookupConfig())
    sampled = llama.engine.submit(Request(llama.encode_chat(messages), None, settings)).result()
    assert sampled.drafted_tokens == 0


def test_chat_models_take_lookup_from_the_model(llama: LlamaCppModel) -> None:
    llama.lookup = LookupConfig(draft_tokens=4)
    try:
        chat = llama.chat_model(max_new_tokens=24)
        assert chat.lookup == LookupConfig(draft_tokens=4)
        assert llama.chat_model(lookup=None).lookup is None
        reply = chat.invoke([HumanMessage(REDUCER)])
    finally:
        llama.lookup = None
    plain = llama.chat_model(max_new_tokens=24).invoke([HumanMessage(REDUCER)])
    assert reply.content == plain.content


NEAR_TIE = 1.0
"""Logit gap below which llama.cpp's batch-dependent rounding may flip a greedy choice (one row's
logits computed in differently shaped batches were measured up to about 1 apart)."""


@pytest.mark.parametrize("alias", [SMALL_MODEL, QWEN])
def test_reused_prompts_answer_as_computed_ones(alias: str, tmp_path: Path) -> None:
    """The same requests on an engine that caches prompts and on one that does not: the later
    prompts copy the shared system prompt's cache and answer alike, but for a choice between
    two nearly tied tokens (a reused prompt is computed in other batches than a whole one, and
    llama.cpp's rounding depends on that). A wrong copy would change answers from their first
    tokens, by wide margins."""
    computing, reusing = _load(alias, tmp_path), _load(alias, tmp_path, cached_prompts=4)
    try:
        cases: list[tuple[str, str | None]] = [(BASE_SYSTEM_PROMPT, None)]
        if "decomposer" in computing.adapters:
            cases.append((DECOMPOSER_SYSTEM_PROMPT, "decomposer"))
        identical = copied = 0
        for system, adapter in cases:
            for question in QUESTIONS:
                messages = [SystemMessage(system), HumanMessage(question)]
                computed = _run(computing, messages, adapter=adapter, tokens=32)
                reused = _run(reusing, messages, adapter=adapter, tokens=32)
                assert computed.reused_prompt_tokens == 0
                copied += reused.reused_prompt_tokens > 10
                if reused.token_ids == computed.token_ids:
                    identical += 1
                    continue
                ids = computing.encode_chat(messages)
                at = next(
                    i
                    for i, pair in enumerate(zip(computed.token_ids, reused.token_ids))
                    if pair[0] != pair[1]
                )
                logits = computing.engine.prompt_logits(ids + computed.token_ids[:at], adapter)
                gap = logits[computed.token_ids[at]] - logits[reused.token_ids[at]]
                assert abs(gap) < NEAR_TIE, (question, adapter, at, gap)
    finally:
        computing.close()
        reusing.close()
    # each group's first prompt is computed whole, the next ones copy the system prompt
    assert copied >= 2 * len(cases) - 1
    assert identical >= len(cases) * len(QUESTIONS) // 2
