"""The decompose node's early stop on a real engine: closing the stream frees the row.

A tiny random Llama (character tokenizer: letters and spaces, never a tag) writes a reply that
can never become a decomposition; read whole it runs to its 700-token limit, streamed through the
decompose node it is stopped once no sub-query has begun within the parser's 500 characters,
and the engine stops generating it there.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from langgraph.graph import START, StateGraph

from compllm_graph.models import TransformersModel
from compllm_graph.models.requests import Completion, Request
from compllm_graph.nodes.decompose import make_decompose_node
from compllm_graph.query_graph import MAX_SUB_QUERY_CHARS
from compllm_graph.state import CompLLMState
from tests.models.conftest import BOS, EOS, PAD, VOCAB, CharTokenizer
from tests.tiny import tiny_llama

LIMIT = 700
SEED = 4  # its greedy reply runs to the limit (others end early, or in blanks only)
QUESTION = "why is the sky blue and the sea green"


def long_context_model() -> TransformersModel:
    """The tests' tiny Llama with room for a long reply."""
    model = tiny_llama(
        SEED,
        vocab_size=VOCAB,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        max_position_embeddings=2048,
    )
    return TransformersModel(model, CharTokenizer(), name="tiny-long", max_wait_ms=1.0)


def watched(model: TransformersModel) -> list[Future[Completion]]:
    """Record the future of every request the model's batcher takes."""
    futures: list[Future[Completion]] = []
    submit = model.batcher.submit

    def spy(request: Request) -> Future[Completion]:
        futures.append(submit(request))
        return futures[-1]

    model.batcher.submit = spy  # type: ignore[method-assign]
    return futures


def node_app(model: TransformersModel) -> Any:
    """The decompose node alone over the model's base chat model, no system prompt."""
    builder = StateGraph(CompLLMState)
    chat = model.chat_model(max_new_tokens=LIMIT)
    builder.add_node("decompose", make_decompose_node(chat, None, 12))
    builder.add_edge(START, "decompose")
    return builder.compile()


def test_a_reply_that_cannot_parse_stops_generating_early() -> None:
    model = long_context_model()
    whole = model.chat_model(max_new_tokens=LIMIT).invoke(QUESTION)
    read_whole = whole.response_metadata["token_usage"]["completion_tokens"]
    assert read_whole == LIMIT and "<" not in str(whole.content)

    futures = watched(model)
    out = node_app(model).invoke({"query": QUESTION})
    completion = futures[0].result(timeout=60)
    assert completion.finish_reason == "abandoned"
    # One character a token: stopped on the first character past the bound, plus the tokens the
    # engine wrote while the streaming reader caught up (4 were seen on a loaded machine), far
    # below the LIMIT a whole reply takes.
    assert MAX_SUB_QUERY_CHARS < len(completion.token_ids) <= MAX_SUB_QUERY_CHARS + 16
    assert out["fallback_reason"].startswith(
        f"the decomposer was stopped early: no sub-query began within {MAX_SUB_QUERY_CHARS}"
    )
    assert out["query_graph"]["sub_queries"] == [{"id": 1, "text": QUESTION, "parents": []}]


async def test_an_async_run_stops_the_row_too() -> None:
    model = long_context_model()
    futures = watched(model)
    out = await node_app(model).ainvoke({"query": QUESTION})
    completion = futures[0].result(timeout=60)
    assert completion.finish_reason == "abandoned"
    assert len(completion.token_ids) <= MAX_SUB_QUERY_CHARS + 3
    assert "no sub-query began" in out["fallback_reason"]
