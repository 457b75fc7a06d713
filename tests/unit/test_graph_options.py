"""Options that reach the nodes through the builders: `split_questions` through
`create_compllm_graph` and `build_default_graph`, and `build_default_graph(program_expert=True)`.

The models are fakes; the default graph's decomposer is patched, so no torch is needed. No
program runs here (the fake writes none, so the sandbox never starts): the program expert's
runs are tested in `tests/unit/test_program_expert.py` and, through `compllm eval answers`, in
`tests/evaluation/test_answers.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, SystemMessage

from compllm_graph import create_compllm_graph
from compllm_graph.program_expert import PROGRAM_PROMPT, PROGRAM_TRIES, ProgramExpertError
from tests.fakes import FakeChat, decomposer, keyword_router

QUESTION = (
    "Which organelle makes most of a cell's ATP, and what is the chemical formula of glucose?"
)
WHOLE = f"<q>{QUESTION}</q>"
"""A decomposer that leaves the question whole: the and-split rule splits it in two."""
SPLIT = (
    "split into 2 independent questions at 'and' (the decomposer wrote one sub-query)",
    ["Which organelle makes most of a cell's ATP?", "What is the chemical formula of glucose?"],
)


def _texts(out: dict[str, Any]) -> list[str]:
    return [sq["text"] for sq in out["query_graph"]["sub_queries"]]


def _graph(**options: Any) -> Any:
    return create_compllm_graph(
        decomposer=decomposer(WHOLE),
        experts={},
        router=keyword_router({}),
        base=FakeChat(label="base"),
        **options,
    ).compile()


def test_create_compllm_graph_splits_by_default_and_passes_split_questions_to_the_node() -> None:
    out = _graph().invoke({"query": QUESTION})
    assert (out["split_rule"], _texts(out)) == SPLIT
    off = _graph(split_questions=False)
    out = off.invoke({"query": QUESTION})
    assert out["split_rule"] is None and _texts(out) == [QUESTION]
    # a run's `configurable` key still overrides the graph's default
    out = off.invoke({"query": QUESTION}, {"configurable": {"split_questions": True}})
    assert (out["split_rule"], _texts(out)) == SPLIT


class LocalModel:
    """A stand-in for a loaded local model: its chat models reply by their system prompt."""

    def __init__(
        self, program: str = "I would rather not write a program.", name: str = "fake-local"
    ) -> None:
        self.program, self.name = program, name
        self.asked: list[tuple[str, str]] = []  # (system prompt, question) per call
        self.budgets: list[int | None] = []  # max_new_tokens of each chat model made

    def chat_model(self, adapter: str | None = None, **generation: Any) -> FakeChat:
        self.budgets.append(generation.get("max_new_tokens"))
        return FakeChat(label=adapter or "local", reply=self.reply)

    def reply(self, messages: list[BaseMessage]) -> str:
        system = "\n".join(str(m.content) for m in messages if isinstance(m, SystemMessage))
        self.asked.append((system, str(messages[-1].content)))
        if system.startswith(PROGRAM_PROMPT):
            return self.program
        if "mathematics expert" in system:
            return "The answer is 42."
        return "I do not know."


@pytest.fixture
def default_graph(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """`build_default_graph` on `LocalModel`, a hashing store and a patched decomposer."""
    pytest.importorskip("faiss", reason="the expert store needs the [router] extra")
    pytest.importorskip("torch", reason="compllm_graph.defaults loads the [local] engines")
    from compllm_graph.defaults import build_default_graph
    from compllm_graph.expert_store import ExpertKind, ExpertStore

    def build(
        decomposition: str,
        kind: ExpertKind = "adapter",
        names: tuple[str, ...] = ("mathematics",),
        demo: bool = False,
        **kw: Any,
    ) -> Any:
        monkeypatch.setattr(
            "compllm_graph.defaults.default_decomposer",
            lambda model, adapter, beams: (decomposer(decomposition), None),
        )
        store = ExpertStore.create(
            tmp_path / f"store-{len(list(tmp_path.iterdir()))}", "hashing:64"
        )
        on = kw.pop("expert_model", None)  # a catalogue alias for the experts to run on
        for name in names:
            prompt = f"You are a {name} expert."
            store.add_expert(name, [f"{name} questions"], system_prompt=prompt, kind=kind, model=on)
        router = keyword_router({"times": "mathematics"})
        if demo:  # the store stands in for the model's demo store
            monkeypatch.setattr("compllm_graph.defaults.demo_store", lambda name: store)
        model = kw.pop("model", LocalModel())
        return build_default_graph(model, None if demo else store, router=router, **kw)

    return build


def test_build_default_graph_passes_split_questions_through(default_graph: Any) -> None:
    out = default_graph(WHOLE).compile().invoke({"query": QUESTION})
    assert (out["split_rule"], _texts(out)) == SPLIT
    out = default_graph(WHOLE, split_questions=False).compile().invoke({"query": QUESTION})
    assert out["split_rule"] is None and _texts(out) == [QUESTION]


def test_the_program_expert_answers_for_mathematics_and_falls_back_to_the_expert(
    default_graph: Any,
) -> None:
    model = LocalModel()
    question = "What is 6 times 7?"
    graph = default_graph(f"<q>{question}</q>", model=model, program_expert=True).compile()
    out = graph.invoke({"query": question})
    (answer,) = out["sub_answers"]
    assert answer["expert"] == "mathematics" and answer["answer"] == "The answer is 42."
    # the model was asked for a program twice (the second time with the first one's error;
    # the static check refuses it, so no process starts), then the store's mathematics expert,
    # with its own system prompt, answered
    asked = [(system.split("\n")[0], text) for system, text in model.asked]
    first_line = PROGRAM_PROMPT.split("\n")[0]
    assert [system for system, _ in asked] == [
        first_line,
        first_line,
        "You are a mathematics expert.",
    ]
    assert asked[0][1] == asked[2][1] == question
    assert asked[1][1].startswith("Running that program failed (syntax)")
    assert PROGRAM_TRIES == 2


def test_without_the_option_the_mathematics_expert_answers_itself(default_graph: Any) -> None:
    model = LocalModel()
    default_graph("<q>What is 6 times 7?</q>", model=model).compile().invoke({"query": "6 times 7"})
    assert not any(system.startswith(PROGRAM_PROMPT) for system, _ in model.asked)


def test_a_mathematics_expert_bound_in_code_falls_back_to_the_prompted_base(
    default_graph: Any,
) -> None:
    from compllm_graph.defaults import BASE_SYSTEM_PROMPT

    model = LocalModel()
    question = "What is 6 times 7?"
    graph = default_graph(f"<q>{question}</q>", kind="program", model=model, program_expert=True)
    graph.compile().invoke({"query": question})
    systems = [system for system, _ in model.asked]
    assert len(systems) == PROGRAM_TRIES + 1
    # the store's system prompt reaches the program expert; with no model of its own to fall
    # back to, the base model answers, with its prompt
    assert all("You are a mathematics expert." in s for s in systems)
    assert systems[-1].startswith(BASE_SYSTEM_PROMPT)


def test_a_mathematics_expert_that_is_a_program_on_a_model_is_kept_as_the_store_builds_it(
    default_graph: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bigger = LocalModel(name="qwen2.5-coder-1.5b-instruct")
    monkeypatch.setattr(
        "compllm_graph.expert_store.serving.load_catalogue_model", lambda alias: bigger
    )
    model = LocalModel()
    question = "What is 6 times 7?"
    graph = default_graph(
        f"<q>{question}</q>",
        kind="program",
        expert_model=bigger.name,
        model=model,
        program_expert=True,
    )
    out = graph.compile().invoke({"query": question})
    assert out["sub_answers"][0]["answer"] == "The answer is 42."
    # its own model wrote both programs and then answered with the expert's prompt; the base
    # model wrote none (it is not wrapped in a second program expert)
    systems = [system.split("\n")[0] for system, _ in bigger.asked]
    first_line = PROGRAM_PROMPT.split("\n")[0]
    assert systems == [first_line, first_line, "You are a mathematics expert."]
    assert not _asked_for_a_program(model)


def test_the_program_expert_needs_a_mathematics_expert_and_the_stores_experts(
    default_graph: Any,
) -> None:
    with pytest.raises(ProgramExpertError, match=r"has none \(its experts: \['chemistry'\]\)"):
        default_graph(WHOLE, names=("chemistry",), program_expert=True)
    with pytest.raises(ProgramExpertError, match="experts= of your own"):
        default_graph(WHOLE, experts={"mathematics": FakeChat()}, program_expert=True)


def _asked_for_a_program(model: LocalModel) -> bool:
    return any(system.startswith(PROGRAM_PROMPT) for system, _ in model.asked)


def test_the_demo_store_of_a_model_measured_for_it_answers_mathematics_by_program(
    default_graph: Any,
) -> None:
    from compllm_graph.defaults import PROGRAM_EXPERT_MODELS, PROGRAM_MAX_NEW_TOKENS

    (measured,) = PROGRAM_EXPERT_MODELS
    question = "What is 6 times 7?"

    def asked(demo: bool, name: str, **kw: Any) -> LocalModel:
        model = LocalModel(name=name)
        graph = default_graph(f"<q>{question}</q>", demo=demo, model=model, **kw).compile()
        graph.invoke({"query": question})
        return model

    on = asked(True, measured, max_new_tokens=48)
    assert _asked_for_a_program(on)
    # a program gets its own budget: 48 tokens cut most programs off before they print
    assert max(b for b in on.budgets if b is not None) == PROGRAM_MAX_NEW_TOKENS
    assert not _asked_for_a_program(asked(True, "smollm2-135m-instruct"))  # not measured
    assert not _asked_for_a_program(asked(False, measured))  # a store of your own
    assert not _asked_for_a_program(asked(True, measured, program_expert=False))
    # a demo store with no mathematics expert builds as it is (True would be refused)
    assert default_graph(WHOLE, names=("chemistry",), demo=True, model=LocalModel(name=measured))
