"""Remote experts against a real OpenAI-compatible server: `compllm serve` on SmolLM2.

The server runs in a subprocess on 127.0.0.1 with a random LoRA adapter served as "chemistry";
the tests talk to it only through `remote_chat_model` (langchain-openai's ChatOpenAI).
"""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableLambda
from transformers import AutoModelForCausalLM

from compllm_graph.graph import create_compllm_graph
from compllm_graph.models import SMALL_MODEL, TransformersModel
from compllm_graph.models.remote import RemoteChatModel, remote_chat_model
from compllm_graph.serve import BATCH_SIZE_HEADER
from compllm_graph.types import Route
from tests.conftest import require_smollm2
from tests.random_lora import save_random_lora

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LIMIT = 2  # every chat model of the server shares this many in-flight requests
TOKENS = 12
QUESTIONS: list[LanguageModelInput] = ["What is an acid?", "What is a base?", "What is a salt?"]


def _adapter(tmp: Path, smollm2: TransformersModel) -> Path:
    """A random (non-zero) LoRA for SmolLM2, built from its config on the meta device."""
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(smollm2.model.config)
    return save_random_lora(skeleton, tmp / "chemistry", seed=0, std=2.0)


def _read_url(process: subprocess.Popen[str], timeout: float) -> str:
    """Wait for the server's `... at http://…/v1` line (printed once it accepts requests)."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None

    def read() -> None:
        for line in process.stdout or []:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line.startswith("compllm serve:"):
            return line.rsplit(" at ", 1)[1].strip()
    raise RuntimeError(f"compllm serve did not start (exit code {process.poll()})")


@pytest.fixture(scope="module")
def url(smollm2: TransformersModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_smollm2()
    adapter = _adapter(tmp_path_factory.mktemp("adapters"), smollm2)
    log = tmp_path_factory.mktemp("serve") / "stderr.log"
    command = [
        sys.executable,
        "-m",
        "compllm_graph.serve",
        "--model",
        SMALL_MODEL,
        "--adapter",
        f"chemistry={adapter}",
        "--port",
        "0",
        "--max-new-tokens",
        str(TOKENS),
        "--max-wait-ms",
        "100",
        "--engine",
        "transformers",  # compared with the transformers model, and batching across adapters
    ]
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            yield _read_url(process, timeout=300)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; stderr:\n{log.read_text()[-3000:]}") from exc
        finally:
            process.terminate()
            process.wait(timeout=30)


def remote(url: str, model: str, **kwargs: object) -> RemoteChatModel:
    return remote_chat_model(url, model, max_concurrency=LIMIT, **kwargs)  # type: ignore[arg-type]


def test_models_lists_base_and_adapter(url: str) -> None:
    served = {m["id"] for m in httpx.get(f"{url}/models").json()["data"]}
    assert served == {SMALL_MODEL, "chemistry"}


def test_remote_base_answers_like_the_local_model(url: str, smollm2: TransformersModel) -> None:
    local = smollm2.chat_model(max_new_tokens=TOKENS).invoke(QUESTIONS[0])
    reply = remote(url, SMALL_MODEL).invoke(QUESTIONS[0])
    assert reply.content == local.content != ""
    assert reply.usage_metadata is not None and local.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] == local.usage_metadata["output_tokens"]
    assert reply.usage_metadata["input_tokens"] == local.usage_metadata["input_tokens"]
    assert reply.response_metadata["finish_reason"] == local.response_metadata["finish_reason"]
    adapted = remote(url, "chemistry").invoke(QUESTIONS[0])
    assert adapted.content != reply.content  # the adapter really changes the model


async def test_concurrent_requests_share_a_batch(url: str) -> None:
    models = [
        remote(url, "chemistry", include_response_headers=True),
        remote(url, SMALL_MODEL, include_response_headers=True),
    ]
    solo = [(await m.ainvoke(QUESTIONS[1])).content for m in models]
    together = await asyncio.gather(*(m.ainvoke(QUESTIONS[1]) for m in models))
    assert [r.content for r in together] == solo  # batching changes nothing
    assert {r.response_metadata["headers"][BATCH_SIZE_HEADER] for r in together} == {"2"}


async def test_streaming_matches_invoke(url: str) -> None:
    chat = remote(url, "chemistry")
    chunks = [chunk.content async for chunk in chat.astream(QUESTIONS[2])]
    assert len(chunks) > 2
    assert "".join(map(str, chunks)) == (await chat.ainvoke(QUESTIONS[2])).content


def test_remote_expert_in_the_graph_respects_the_limit(url: str) -> None:
    expert = remote(url, "chemistry", include_response_headers=True)
    expected = [reply.content for reply in expert.batch(QUESTIONS)]
    batch_sizes: list[str] = []

    def record(reply: BaseMessage) -> BaseMessage:
        batch_sizes.append(reply.response_metadata["headers"][BATCH_SIZE_HEADER])
        return reply

    decomposition = "".join(f"<q>{q}</q>" for q in QUESTIONS) + "<dep></dep>"
    graph = create_compllm_graph(
        decomposer=FakeListChatModel(responses=[decomposition]),
        experts={"chemistry": expert | RunnableLambda(record)},
        router=lambda texts: [Route("chemistry", 0.9) for _ in texts],
        base=remote(url, SMALL_MODEL),
    ).compile()
    result = graph.invoke({"query": "What are acids, bases and salts?"})
    answers = result["sub_answers"]
    assert [a["answer"] for a in answers] == [str(e).strip() for e in expected]
    assert all(a["expert"] == "chemistry" and a["fallback_reason"] is None for a in answers)
    assert result["answer"]  # the aggregator (the remote base model) combined them
    # Three parallel sub-queries, at most two in flight: the server batches two, then one.
    assert sorted(batch_sizes) == ["1", "2", "2"]
    assert expert.endpoint_limit.peak == LIMIT
    assert expert.endpoint_limit.in_use == 0
