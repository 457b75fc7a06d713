"""`build_default_graph`: which prompt each of the one model's roles gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")
pytest.importorskip("torch", reason="needs the [local] extra")

from langchain_core.messages import BaseMessage, SystemMessage

from compllm_graph.defaults import BASE_SYSTEM_PROMPT, build_default_graph
from compllm_graph.expert_store import ExpertStore
from compllm_graph.models import TransformersModel
from compllm_graph.types import Route
from tests.fakes import FakeChat


def _to_base(texts: list[str]) -> list[Route]:
    return [Route(None, 0.0, []) for _ in texts]


def _run(
    tiny: TransformersModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> list[list[BaseMessage]]:
    seen: list[list[BaseMessage]] = []

    def reply(messages: list[BaseMessage]) -> str:
        seen.append(messages)
        return "<q>Which gas do plants take in?</q><q>What is 2 + 3?</q>"

    monkeypatch.setattr(tiny, "chat_model", lambda **generation: FakeChat(reply=reply))
    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    graph = build_default_graph(tiny, store, router=_to_base, **options).compile()
    graph.invoke({"query": "Which gas do plants take in, and what is 2 + 3?"})
    return seen


def _system(messages: list[BaseMessage]) -> str | None:
    first = messages[0]
    return str(first.content) if isinstance(first, SystemMessage) else None


def test_the_base_model_gets_its_prompt_and_the_aggregator_none(
    tiny: TransformersModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _run(tiny, tmp_path, monkeypatch, aggregate="always")
    prompted = sorted(str(m[-1].content) for m in seen if _system(m) == BASE_SYSTEM_PROMPT)
    assert prompted == ["What is 2 + 3?", "Which gas do plants take in?"]
    aggregator = [m for m in seen if "Here are answers to the parts" in str(m[-1].content)]
    assert len(aggregator) == 1 and _system(aggregator[0]) is None


def test_the_base_prompt_can_be_turned_off(
    tiny: TransformersModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _run(tiny, tmp_path, monkeypatch, base_system_prompt=None)
    assert not any(_system(m) == BASE_SYSTEM_PROMPT for m in seen)


def _answer_with(
    tiny: TransformersModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> dict[str, Any]:
    def reply(messages: list[BaseMessage]) -> str:
        if "Here are answers to the parts" in str(messages[-1].content):
            return "Plants are green."  # leaves out both parts' answers
        if _system(messages) == BASE_SYSTEM_PROMPT:
            return "The answer is 5." if "2 + 3" in str(messages[-1].content) else "CO2."
        return "<q>Which gas do plants take in?</q><q>What is 2 + 3?</q>"

    monkeypatch.setattr(tiny, "chat_model", lambda **generation: FakeChat(reply=reply))
    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    graph = build_default_graph(tiny, store, router=_to_base, **options).compile()
    return graph.invoke({"query": "Which gas do plants take in, and what is 2 + 3?"})


def test_the_local_reducer_is_checked_and_a_callers_own_aggregator_is_not(
    tiny: TransformersModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = _answer_with(tiny, tmp_path, monkeypatch, aggregate="always")
    assert checked["answer"] == "First part: CO2.\nSecond part: The answer is 5."
    assert checked["aggregator_reply"] == "Plants are green."
    own = FakeChat(reply=lambda m: "Carbon dioxide; five.")
    trusted = _answer_with(tiny, tmp_path / "own", monkeypatch, aggregator=own)
    assert trusted["answer"] == "Carbon dioxide; five." and trusted["fallback_reason"] is None


def test_the_local_reducer_is_not_called_on_independent_parts(
    tiny: TransformersModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    joined = _answer_with(tiny, tmp_path, monkeypatch)
    assert joined["answer"] == "First part: CO2.\nSecond part: The answer is 5."
    assert joined["aggregation"] == "joined" and joined["aggregator_reply"] is None
