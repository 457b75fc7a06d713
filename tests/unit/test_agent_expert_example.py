"""`examples/agent_expert.py` on fakes: its calculator agent answers through its tool, the store
registers it as a `runnable` expert, and the example's graph routes arithmetic to it.
`tests/integration/test_examples.py` runs the script itself on SmolLM2."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from compllm_graph.expert_store import ExpertStore
from tests.fakes import FakeChat, decomposer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent_expert.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_agent_expert", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the stand-in's annotations through it
    spec.loader.exec_module(module)
    return module


class FakeLocalModel:
    """Just enough of an `InferenceModel` for the example: prompt-only experts, a base model."""

    name = "no-pack-model"  # no expert pack: the experts are the base model and their prompts

    def add_adapter(self, name: str, path: Path) -> None:
        raise AssertionError("a model with no pack has no adapters to add")

    def chat_model(self, adapter: str | None = None, **generation: Any) -> FakeChat:
        return FakeChat(label="local")


@pytest.fixture(scope="module")
def store(example: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> ExpertStore:
    folder = tmp_path_factory.mktemp("agent_expert") / "store"
    return example.build_store(folder, FakeLocalModel.name, embedder="hashing:512")


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("What is 23 times 3?", "69"),
        ("what is 7.5 plus 2.25", "9.75"),
        ("Compute 10 divided by 4.", "2.5"),
        ("Answers to earlier questions:\nQ: x\nA: 12\n\nQuestion: What is 12 minus 5?", "7"),
    ],
)
def test_the_agent_answers_through_the_calculator(
    example: ModuleType, question: str, answer: str
) -> None:
    out = example.build_agent(example.CallsTheCalculator()).invoke(
        {"messages": [HumanMessage(question)]}
    )
    call, result, reply = out["messages"][-3:]
    assert isinstance(call, AIMessage) and call.tool_calls[0]["name"] == "calculate"
    assert isinstance(result, ToolMessage) and result.text == answer
    assert reply.text == f"The calculator says {answer}. The answer is {answer}."


def test_a_question_the_stand_in_cannot_read_gets_no_answer(example: ModuleType) -> None:
    out = example.build_agent(example.CallsTheCalculator()).invoke(
        {"messages": [HumanMessage("Who wrote Hamlet?")]}
    )
    assert out["messages"][-1].text == "" and not out["messages"][-1].tool_calls


def test_calculate_refuses_division_by_zero(example: ModuleType) -> None:
    assert example.calculate.invoke({"a": 1, "b": 0, "op": "/"}) == "error: division by zero"


def test_the_store_registers_the_agent_as_a_runnable_expert(store: ExpertStore) -> None:
    kinds = {e.name: e.kind for e in store.experts()}
    assert kinds == {
        "biology": "adapter",
        "chemistry": "adapter",
        "mathematics": "runnable",
        "medicine": "adapter",
    }
    assert ExpertStore.open(store.path).expert("mathematics").kind == "runnable"


async def test_the_examples_graph_sends_arithmetic_to_the_agent(
    example: ModuleType, store: ExpertStore
) -> None:
    local: Any = FakeLocalModel()
    experts = example.build_experts(local, store, example.CallsTheCalculator(), 16)
    graph = example.build_graph(
        local,
        store,
        experts,
        decomposer(
            "<q>How many apples are left if Tom eats 3 of his 10 apples? What is 10 minus 3?</q>"
        ),
        None,
        16,
    )
    out = await graph.compile().ainvoke({"query": "Tom's apples"})
    (answer,) = out["sub_answers"]
    assert answer["expert"] == "mathematics"
    assert answer["answer"] == "The calculator says 7. The answer is 7."
    lines = example.report(out)
    assert lines[0].startswith("[1] How many apples") and "-> mathematics" in lines[0]
    assert lines[-1].startswith("Answer: ")
