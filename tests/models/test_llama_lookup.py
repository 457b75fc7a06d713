"""Prompt-lookup decoding and prompt reuse in the llama.cpp engine, on a tiny random GGUF.

A random model's greedy output falls into loops, which prompt lookup drafts well, and it has
few near ties: lookup output is compared token for token with plain greedy decoding, alone, in
company, under stop strings and token limits, and with drafts forced wrong.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from compllm_graph.models.requests import Completion, GenerationSettings, LookupConfig, Request
from tests.tiny_gguf import BOS, FIRST_WORD

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("gguf") is None,
    reason="needs llama-cpp-python and gguf (the [local] extra)",
)

if importlib.util.find_spec("llama_cpp") is not None:
    from compllm_graph.models.llama_engine import LlamaEngine


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_gguf import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def engine(tiny: Path) -> Iterator[LlamaEngine]:
    engine = LlamaEngine(tiny, n_threads=1, n_ctx=512)
    yield engine
    engine.close()


def prompts(seed: int, count: int = 8, length: int = 30) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [
        [BOS, *(int(t) for t in rng.integers(FIRST_WORD, FIRST_WORD + 40, size=length))]
        for _ in range(count)
    ]


def run(
    engine: LlamaEngine,
    prompt: Sequence[int],
    lookup: LookupConfig | None = None,
    *,
    tokens: int = 48,
    stop: tuple[str, ...] = (),
) -> Completion:
    settings = GenerationSettings(max_new_tokens=tokens, lookup=lookup)
    return engine.submit(Request(list(prompt), None, settings, stop=stop)).result(timeout=60)


def test_lookup_gives_plain_greedy_tokens(engine: LlamaEngine) -> None:
    drafted = accepted = 0
    for prompt in prompts(0):
        plain = run(engine, prompt)
        for k in (1, 3, 6):
            fast = run(engine, prompt, LookupConfig(draft_tokens=k, ngram=2))
            assert fast.token_ids == plain.token_ids
            assert fast.text == plain.text and fast.finish_reason == plain.finish_reason
            drafted += fast.drafted_tokens
            accepted += fast.accepted_tokens
    assert 0 < accepted < drafted  # drafts were taken and some were dropped


def test_concurrent_lookup_requests_keep_their_own_tokens(engine: LlamaEngine) -> None:
    batch = prompts(1, count=4, length=12)
    alone = [run(engine, p).token_ids for p in batch]
    requests = [
        Request(p, None, GenerationSettings(max_new_tokens=48, lookup=LookupConfig()))
        for p in batch
    ]
    futures = [engine.submit(r) for r in requests]
    together = [f.result(timeout=60) for f in futures]
    assert [c.token_ids for c in together] == alone
    assert max(c.batch_size for c in together) > 1
    assert sum(c.accepted_tokens for c in together) > 0


def test_rejected_drafts_leave_nothing_in_the_cache(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step drafts the right next token, then two wrong ones: the right one is kept, the
    wrong ones must leave the cache, or later tokens would attend to them."""
    prompt = prompts(2, count=1)[0]
    plain = run(engine, prompt).token_ids

    def half_right(history: Sequence[int], limit: int, **_: int) -> list[int]:
        done = len(history) - len(prompt)
        if done + 1 >= len(plain):
            return []
        wrong = [t for t in range(FIRST_WORD, FIRST_WORD + 3) if t != plain[done + 1]][:2]
        return [plain[done], *wrong][:limit]

    monkeypatch.setattr("compllm_graph.models.llama_engine.find_draft", half_right)
    fast = run(engine, prompt, LookupConfig(draft_tokens=3))
    assert fast.token_ids == plain
    assert fast.drafted_tokens > fast.accepted_tokens > 0


def test_stop_strings_and_token_limits_cut_drafts_as_plain_decoding(engine: LlamaEngine) -> None:
    checked = 0
    for prompt in prompts(3, count=6):
        plain = run(engine, prompt)
        half = plain.token_ids[len(plain.token_ids) // 2 :]
        word = next((t for t in half if t >= FIRST_WORD), None)
        if word is None:  # a loop of byte tokens: no clean stop string in it
            continue
        stop = engine.piece(word).decode()
        for lookup in (None, LookupConfig(draft_tokens=6)):
            cut = run(engine, prompt, lookup, stop=(stop,))
            short = run(engine, prompt, lookup, tokens=5)
            assert cut.text == plain.text[: plain.text.index(stop)]
            assert cut.finish_reason == "stop"
            assert short.token_ids == plain.token_ids[:5] and short.finish_reason == "length"
        checked += 1
    assert checked >= 2


def test_sampled_requests_ignore_lookup(engine: LlamaEngine) -> None:
    settings = GenerationSettings(max_new_tokens=24, do_sample=True, seed=1, lookup=LookupConfig())
    sampled = engine.submit(Request(prompts(4, count=1)[0], None, settings)).result(timeout=60)
    assert sampled.drafted_tokens == 0 and len(sampled.token_ids) == 24


def test_reused_prompts_answer_as_computed_ones(tiny: Path) -> None:
    system = prompts(5, count=1, length=40)[0]
    questions = [p[1:] for p in prompts(6, count=6, length=12)]
    computing = LlamaEngine(tiny, n_threads=1, n_ctx=512)
    reusing = LlamaEngine(tiny, n_threads=1, n_ctx=512, cached_prompts=4)
    try:
        for index, question in enumerate(questions):
            computed, reused = run(computing, system + question), run(reusing, system + question)
            assert reused.token_ids == computed.token_ids
            assert computed.reused_prompt_tokens == 0
            # the first prompt is computed whole, the later ones copy at least the system part
            assert (reused.reused_prompt_tokens >= len(system)) == (index > 0)
    finally:
        computing.close()
        reusing.close()


def test_cached_prompts_give_way_to_requests(tiny: Path) -> None:
    """A context of 160 tokens keeps cached prompts only while running requests leave room:
    they are dropped, oldest first, so that every request still runs."""
    small = LlamaEngine(tiny, n_threads=1, n_ctx=160, cached_prompts=4)
    plain = LlamaEngine(tiny, n_threads=1, n_ctx=160)
    try:
        for prompt in prompts(7, count=5, length=60):
            assert (
                run(small, prompt, tokens=40).token_ids == run(plain, prompt, tokens=40).token_ids
            )
        context = small._contexts[0]
        assert context.used_tokens() <= small.n_ctx
        assert 1 <= len(context.prompts) <= 2  # 61-token prompts: two fit in 160 cells
    finally:
        small.close()
        plain.close()
    with pytest.raises(ValueError, match="cached_prompts"):
        LlamaEngine(tiny, n_threads=1, cached_prompts=9)
