"""Gain calibration on fake models: the questions of the calibration split, the store's experts
and the base model measured, the result stored by `compllm experts calibrate`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

from langchain_core.messages import BaseMessage

from compllm_graph.cli import main
from compllm_graph.datasets.items import Item
from compllm_graph.evaluation.routing_calibration import (
    calibrate_store,
    calibration_questions,
    owners_of,
    question_of,
)
from compllm_graph.expert_store import ExpertRouter, ExpertStore, StoreError
from compllm_graph.expert_store.calibration import GainRule
from compllm_graph.program_expert import PROGRAM_PROMPT
from compllm_graph.types import BASE
from tests.fakes import FakeChat

ACID = Item("t/1", "Which is an acid?", "vinegar", ("soap", "vinegar"), "chemistry")
SUM = Item("t/2", "What is 2 + 2?", "4", None, "mathematics")


class FakeLocalModel:
    """Enough of an `InferenceModel`: every chat model it makes answers `says`."""

    name = "fake-model"

    def __init__(self, says: str = "I do not know.") -> None:
        self.says = says
        self.made: list[dict[str, Any]] = []

    def chat_model(self, adapter: str | None = None, **generation: Any) -> FakeChat:
        self.made.append(generation)
        says = self.says
        return FakeChat(reply=lambda _: says)


def knowing(answers: dict[str, str]) -> FakeChat:
    def reply(messages: list[BaseMessage]) -> str:
        question = str(messages[-1].content)
        return next((a for q, a in answers.items() if question.startswith(q)), "no idea")

    return FakeChat(reply=reply)


@pytest.fixture
def store(tmp_path: Path) -> ExpertStore:
    made = ExpertStore.create(tmp_path / "s", "hashing:64", threshold=-1.0)
    made.add_expert("chemistry", ["acid base salt", "metal oxide"])
    made.add_expert("mathematics", ["sum of numbers", "product of two"])
    made.add_expert("helper", ["anything at all"], kind="runnable")
    return made


def test_a_question_reads_with_its_options_and_scores_by_the_benchmark_rules() -> None:
    question = question_of(ACID)
    assert question.text == "Which is an acid? Options: (A) soap; (B) vinegar."
    assert question.gold == {"answer": "vinegar", "choices": ["soap", "vinegar"]}
    assert question_of(SUM).gold == {"answer": "4", "choices": None}


def test_calibrate_store_measures_experts_against_the_prompted_base(store: ExpertStore) -> None:
    questions = {
        "chemistry": [question_of(ACID)] * 3,
        "mathematics": [question_of(SUM)] * 3,
    }
    model = FakeLocalModel()
    chemist = knowing({"Which is an acid?": "The answer is (B) vinegar."})
    result = calibrate_store(
        store,
        model,  # type: ignore[arg-type]
        questions,
        max_new_tokens=32,
        base_prompt="Be brief.",
        runnables={"chemistry": chemist, "mathematics": knowing({"What is 2": "4"})},
        rule=GainRule(min_items=3),
    )
    assert result.model == "fake-model" and set(result.domains) == {"chemistry", "mathematics"}
    assert result.owners == {"chemistry": "chemistry", "mathematics": "mathematics"}
    chem = result.domains["chemistry"]
    assert chem.base_right == 0 and chem.experts["chemistry"].right == 3
    assert chem.experts["mathematics"].right == 0
    assert "helper" not in chem.experts  # a runnable expert with no Runnable given is left out
    assert model.made == [{"max_new_tokens": 32}]  # the base: one chat model, the graph's budget
    store.set_calibration(result)
    router = ExpertRouter(ExpertStore.open(store.path))
    assert router.calibration is not None
    assert result.choose("chemistry", ["chemistry"]).expert == "chemistry"
    assert result.choose("helper", ["helper", "mathematics"]).expert == "helper"  # uncalibrated


def test_owners_are_named_after_domains_or_given(store: ExpertStore) -> None:
    domains = {"chemistry", "mathematics", "biology"}
    assert owners_of(store, domains) == {"chemistry": "chemistry", "mathematics": "mathematics"}
    assert owners_of(store, domains, {"helper": "biology"})["helper"] == "biology"
    with pytest.raises(StoreError, match="physics"):
        owners_of(store, domains, {"physics": "biology"})
    with pytest.raises(StoreError, match="law"):
        owners_of(store, domains, {"helper": "law"})


def test_an_owner_left_unmeasured_is_an_error(store: ExpertStore) -> None:
    with pytest.raises(StoreError, match="helper"):
        calibrate_store(
            store,
            FakeLocalModel(),  # type: ignore[arg-type]
            {"chemistry": [question_of(ACID)]},
            max_new_tokens=8,
            base_prompt=None,
            owners={"helper": "chemistry"},
        )


def test_the_calibration_questions_come_from_the_split(data_dir: Path) -> None:
    questions = calibration_questions(data_dir, 4)
    assert {d: len(qs) for d, qs in questions.items()} == dict.fromkeys(
        ["biology", "chemistry", "mathematics", "medicine"], 4
    )


@pytest.fixture
def domain_store(tmp_path: Path) -> ExpertStore:
    """A store with an expert named after each calibration domain."""
    made = ExpertStore.create(tmp_path / "s", "hashing:64")
    for domain in ("biology", "chemistry", "mathematics", "medicine"):
        made.add_expert(domain, [f"{domain} question"])
    return made


@pytest.fixture
def calibrate_argv(data_dir: Path, domain_store: ExpertStore) -> Callable[[int], list[str]]:
    """`compllm experts calibrate` on `domain_store`, `items` a domain, measured and not stored."""

    def argv(items: int) -> list[str]:
        store = str(domain_store.path)
        head = ["experts", "calibrate", "--store", store, "--items", str(items), "--json"]
        return [*head, "--data-dir", str(data_dir), "--min-items", str(items), "--dry-run"]

    return argv


def loading(monkeypatch: pytest.MonkeyPatch, model: FakeLocalModel) -> None:
    """`load_model` gives `model`, whatever it is asked for."""
    import compllm_graph.models

    monkeypatch.setattr(compllm_graph.models, "load_model", lambda *a, **k: model)


def test_the_command_measures_and_stores(
    domain_store: ExpertStore,
    calibrate_argv: Callable[[int], list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = domain_store
    loading(monkeypatch, FakeLocalModel())
    argv = calibrate_argv(2)
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["stored"] is False and ExpertStore.open(store.path).calibration is None
    assert set(out["calibration"]["seconds_per_call"]) == {
        BASE,
        "biology",
        "chemistry",
        "mathematics",
        "medicine",
    }
    assert main(argv[:-1]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["stored"] is True
    calibrated = ExpertStore.open(store.path).calibration
    assert calibrated is not None and calibrated.rule == GainRule(min_items=2)
    assert all(d.n == 2 for d in calibrated.domains.values())
    assert main(["experts", "calibrate", "--store", str(store.path), "--domain-of", "x"]) == 1
    assert "EXPERT=DOMAIN" in capsys.readouterr().err


def test_chat_models_are_measured_as_given(store: ExpertStore) -> None:
    questions = {"mathematics": [question_of(SUM)] * 3}
    model = FakeLocalModel()
    result = calibrate_store(
        store,
        model,  # type: ignore[arg-type]
        questions,
        max_new_tokens=16,
        base_prompt=None,
        chat_models={"mathematics": knowing({"What is 2": "4"})},
        rule=GainRule(min_items=3),
    )
    found = result.domains["mathematics"]
    assert found.experts["mathematics"].right == 3  # the given Runnable, not the store's model
    assert found.experts["chemistry"].right == 0 and found.base_right == 0
    with pytest.raises(StoreError, match="physics"):
        calibrate_store(
            store,
            model,  # type: ignore[arg-type]
            questions,
            max_new_tokens=16,
            base_prompt=None,
            chat_models={"physics": knowing({})},
        )


class ProgramWritingModel(FakeLocalModel):
    """Writes a program when asked for one (the program expert's prompt); records the asks."""

    def __init__(self) -> None:
        super().__init__()
        self.programs_asked = 0

    def chat_model(self, adapter: str | None = None, **generation: Any) -> FakeChat:
        def reply(messages: list[BaseMessage]) -> str:
            if str(messages[0].content).startswith(PROGRAM_PROMPT[:40]):
                self.programs_asked += 1
                return "```python\nprint(7)\n```"
            return "I do not know."

        return FakeChat(reply=reply)


def test_the_command_measures_the_program_expert_when_asked(
    calibrate_argv: Callable[[int], list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = ProgramWritingModel()
    loading(monkeypatch, model)
    argv = calibrate_argv(1)
    assert main(argv) == 0  # a store of your own: the mathematics expert as stored
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert model.programs_asked == 0 and "by program" not in out["calibration"]["items"]
    assert main([*argv, "--program-expert"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert model.programs_asked == 4  # the mathematics expert, once on each domain's question
    assert out["calibration"]["items"].endswith("mathematics by program")
