"""`build_default_graph(decomposer_model=...)` and `compllm ask --decomposer-model`: the
decomposer on a second model, the experts, base and aggregator on the first.

The models are fakes that record which of their chat models answered (the decomposer's is the
one built with the tag grammar), so no model runs; `default_decomposer` itself runs, on the fake
it is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, SystemMessage

from tests.fakes import FakeChat, keyword_router

QUESTION = "What is 6 times 7, and which gas is inert?"
PARTS = ("What is 6 times 7?", "Which gas is inert?")


class FakeLocal:
    """A loaded model: its decomposer (the chat model given a `grammar`) splits `QUESTION`;
    its other chat models answer. Every call is kept as (role, question)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.adapters: dict[str, Path] = {}
        self.calls: list[tuple[str, str]] = []

    def add_adapter(self, name: str, folder: Path) -> None:
        self.adapters[name] = folder

    def chat_model(self, adapter: str | None = None, **generation: Any) -> FakeChat:
        role = "decomposer" if "grammar" in generation else "answer"
        return FakeChat(label=role, reply=lambda messages: self.reply(role, messages))

    def reply(self, role: str, messages: list[BaseMessage]) -> str:
        self.calls.append((role, str(messages[-1].content)))
        if role == "decomposer":
            return "".join(f"<q>{part}</q>" for part in PARTS)
        system = " ".join(str(m.content) for m in messages if isinstance(m, SystemMessage))
        return f"{self.name} answers as {system.split('.')[0]}"


@pytest.fixture
def build(tmp_path: Path) -> Any:
    """`build_default_graph` on a hashing store with a mathematics expert (the router is a
    keyword one, so no embedder runs)."""
    pytest.importorskip("torch", reason="compllm_graph.defaults loads the [local] engines")
    pytest.importorskip("faiss", reason="the expert store needs the [router] extra")
    from compllm_graph.defaults import build_default_graph
    from compllm_graph.expert_store import ExpertStore

    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    store.add_expert("mathematics", ["arithmetic"], system_prompt="You are a maths expert.")

    def built(model: Any, **options: Any) -> Any:
        router = keyword_router({"times": "mathematics"})
        return build_default_graph(model, store, router=router, **options)

    return built


def test_without_decomposer_model_the_one_model_decomposes_and_answers(build: Any) -> None:
    model = FakeLocal("big")
    out = build(model).compile().invoke({"query": QUESTION})
    assert [sq["text"] for sq in out["query_graph"]["sub_queries"]] == list(PARTS)
    assert [role for role, _ in model.calls].count("decomposer") == 1
    assert ("decomposer", QUESTION) in model.calls
    # the model itself as decomposer_model is the same graph
    again = FakeLocal("big")
    build(again, decomposer_model=again).compile().invoke({"query": QUESTION})
    assert sorted(again.calls) == sorted(model.calls)  # sub-queries run at once: any order


def test_the_decomposer_model_decomposes_and_the_model_answers(build: Any) -> None:
    model, small = FakeLocal("big"), FakeLocal("small")
    out = build(model, decomposer_model=small).compile().invoke({"query": QUESTION})
    assert small.calls == [("decomposer", QUESTION)]  # the small model decomposed, only that
    assert [role for role, _ in model.calls] == ["answer", "answer"]  # expert and base
    assert {text for _, text in model.calls} == set(PARTS)
    assert sorted(a["answer"] for a in out["sub_answers"]) == [
        "big answers as Answer the question accurately",  # the prompted base
        "big answers as You are a maths expert",
    ]


def test_a_decomposer_model_name_is_loaded_on_the_engine_its_beams_need(
    build: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[tuple[str, str | None]] = []
    decomposing: list[str] = []

    def load_model(name: str, engine: str | None = None) -> FakeLocal:
        loads.append((name, engine))
        return FakeLocal(name)

    def default_decomposer(model: FakeLocal, adapter: Any, beams: int) -> tuple[FakeChat, None]:
        decomposing.append(model.name)
        return FakeChat(label="decomposer", reply=lambda _: "<q>x</q>"), None

    monkeypatch.setattr("compllm_graph.defaults.load_model", load_model)
    monkeypatch.setattr("compllm_graph.defaults.default_decomposer", default_decomposer)
    build("big", decomposer_model="small", decomposer_beams=3)
    # beam search runs on transformers: the decomposer's model only
    assert loads == [("big", None), ("small", "transformers")]
    build("big", decomposer_model="small")
    build("big", decomposer_model="big", decomposer_beams=2)  # one model: loaded once
    assert loads[2:] == [("big", None), ("small", None), ("big", "transformers")]
    assert decomposing == ["small", "small", "big"]


def test_an_adapter_of_another_base_names_decomposer_model(build: Any, tmp_path: Path) -> None:
    folder = tmp_path / "decomposer"
    folder.mkdir()
    (folder / "training.json").write_text(json.dumps({"base": "big"}))
    with pytest.raises(ValueError) as refused:
        build(FakeLocal("big"), decomposer_model=FakeLocal("small"), decomposer_adapter=folder)
    message = str(refused.value)
    assert "was trained on 'big', not on 'small', the model the decomposer runs on" in message
    assert "`--decomposer-model big`" in message and "decomposer_model='big'" in message


@pytest.fixture
def ask(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """`compllm ask` with `load_model` and `build_default_graph` patched: what it loaded and the
    options it built the graph with."""
    pytest.importorskip("torch", reason="`compllm ask` needs the [local] extra")
    pytest.importorskip("faiss", reason="`compllm ask` needs the [router] extra")
    from compllm_graph import create_compllm_graph

    seen: dict[str, list[Any]] = {"loads": [], "graphs": []}

    def load_model(name: str, **options: Any) -> FakeLocal:
        seen["loads"].append((name, options["engine"]))
        return FakeLocal(name)

    def build_default_graph(model: FakeLocal, store: Any, **options: Any) -> Any:
        seen["graphs"].append(options)
        return create_compllm_graph(
            decomposer=FakeChat(reply=lambda _: "<q>one</q>"),
            experts={},
            router=keyword_router({}),
            base=FakeChat(label="base"),
        )

    monkeypatch.setattr("compllm_graph.models.load_model", load_model)
    monkeypatch.setattr("compllm_graph.defaults.build_default_graph", build_default_graph)
    return seen


def test_ask_loads_the_decomposer_model_and_passes_it_on(ask: dict[str, list[Any]]) -> None:
    from compllm_graph.cli import build_parser, main

    assert build_parser("ask").parse_args(["ask"]).decomposer_model is None
    argv = ["ask", "q?", "--model", "big", "--decomposer-model", "small"]
    assert main(argv) == 0
    assert main([*argv, "--decomposer-beams", "2"]) == 0
    assert main(["ask", "q?", "--model", "big", "--decomposer-model", "big"]) == 0
    assert ask["loads"] == [
        ("big", None),
        ("small", None),
        ("big", None),
        ("small", "transformers"),  # beam search runs there; the experts' model need not
        ("big", None),  # the same model twice: loaded once, the one-model graph
    ]
    small, beams, same = ask["graphs"]
    assert small["decomposer_model"].name == "small" and small["decomposer_beams"] == 1
    assert beams["decomposer_model"].name == "small" and beams["decomposer_beams"] == 2
    assert same["decomposer_model"] is None
