"""The router and the store's chat models plugged into `create_compllm_graph`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

import numpy as np
from langchain_core.messages import BaseMessage, SystemMessage
from safetensors.numpy import save_file

from compllm_graph import create_compllm_graph
from compllm_graph.expert_store import ExpertRouter, ExpertStore, StoreError
from compllm_graph.types import Route
from tests.conftest import installed
from tests.fakes import FakeChat, decomposer

if TYPE_CHECKING:
    from compllm_graph.models import LocalModel

pytestmark = pytest.mark.skipif(not installed("torch"), reason="needs the [local] extra")

CHEMISTRY = [
    "What is the pH of a strong acid solution?",
    "Balance the reaction of sodium and chlorine.",
    "What is the molar mass of water?",
]
MATHS = [
    "What is 12 times 7?",
    "Solve the equation 2x + 3 = 9 for x.",
    "What is the square root of 144?",
]


class FakeLocalModel:
    """Just enough of `LocalModel` for `ExpertStore.chat_models`."""

    name = "smollm2-135m-instruct"

    def __init__(self) -> None:
        self.adapters: dict[str, Path] = {}
        self.seen: list[list[BaseMessage]] = []

    def add_adapter(self, name: str, path: Path) -> None:
        self.adapters[name] = path

    def chat_model(self, adapter: str | None = None, **generation: Any) -> FakeChat:
        def reply(messages: list[BaseMessage]) -> str:
            self.seen.append(messages)
            return f"{adapter or 'base'} says {generation.get('max_new_tokens')}"

        return FakeChat(label=adapter or "base", reply=reply)


@pytest.fixture
def store(tmp_path: Path) -> ExpertStore:
    store = ExpertStore.create(tmp_path / "s", "hashing:512", threshold=0.2)
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "smollm2-135m-instruct", "peft_type": "LORA"})
    )
    lora = {f"base_model.model.q_proj.lora_{side}.weight": np.zeros((2, 2)) for side in "AB"}
    save_file(lora, str(adapter / "adapter_model.safetensors"))
    store.add_expert("chemistry", CHEMISTRY, adapter=adapter)
    store.add_expert("mathematics", MATHS, system_prompt="You are a mathematician.")
    return store


def test_router_and_chat_models_drive_the_graph(store: ExpertStore) -> None:
    local = FakeLocalModel()
    experts = store.chat_models(cast("LocalModel", local), max_new_tokens=5)
    assert set(experts) == {"chemistry", "mathematics"} and set(local.adapters) == {"chemistry"}
    graph = create_compllm_graph(
        decomposer=decomposer(
            "<q>What is the molar mass of water?</q>"
            "<q>What is 12 times 7?</q><q>Who painted the Mona Lisa?</q>"
        ),
        experts=experts,
        router=ExpertRouter(store),
        base=FakeChat(label="base"),
    )
    out = graph.compile().invoke({"query": "three questions"})
    routes = [Route.from_dict(r) for r in out["routes"]]
    assert [r.expert for r in routes] == ["chemistry", "mathematics", None]
    assert all(r.candidates and r.candidates[0][1] == r.score for r in routes)
    answers = {a["sub_query"]: a["answer"] for a in out["sub_answers"]}
    assert answers[1] == "chemistry says 5"
    assert answers[2] == "base says 5"  # mathematics: base model with a system prompt
    maths_call = next(m for m in local.seen if isinstance(m[0], SystemMessage))
    assert maths_call[0].content == "You are a mathematician."
    assert answers[3].startswith("base answer")


def test_adapter_for_another_base_model_is_refused(store: ExpertStore) -> None:
    local = FakeLocalModel()
    local.name = "qwen2.5-coder-0.5b-instruct"
    with pytest.raises(StoreError, match="has an adapter for 'smollm2-135m-instruct'"):
        store.chat_models(cast("LocalModel", local))
