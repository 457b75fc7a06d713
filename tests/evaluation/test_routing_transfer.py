"""Routing across sources: every method scored on the same questions, and the real data split."""

from __future__ import annotations

from pathlib import Path

import pytest

from compllm_graph.evaluation.routing_transfer import (
    METHODS,
    TransferData,
    best_method,
    router_errors,
    sample_questions,
    transfer_data,
    transfer_errors,
    transfer_table,
)
from compllm_graph.expert_store.embedders import embedder_from_spec
from compllm_graph.types import Route


def test_every_method_is_scored_against_the_first() -> None:
    words = {"chemistry": "acid base salt", "mathematics": "sum product number"}
    rows = {d: [f"{w} {i}" for i in range(8)] for d, w in words.items()}
    questions = [(f"{w} question", d, "other") for d, w in words.items()]
    result = transfer_errors(TransferData(rows, questions), embedder_from_spec("hashing:64"))
    assert list(result["methods"]) == list(METHODS) and result["n"] == 2
    first = result["methods"][next(iter(METHODS))]
    assert first["minus_first_method"]["difference"] == 0.0
    assert all(0 <= m["error"] <= 1 for m in result["methods"].values())
    assert best_method(result) in METHODS
    assert transfer_table(result).startswith("| method | all (n=2) | minus 1 centroid | other")


def test_rows_and_questions_come_from_different_sources_and_splits(data_dir: Path) -> None:
    data = transfer_data(data_dir, per_expert=50, per_source=20)
    assert sorted(data.rows) == ["biology", "chemistry", "mathematics", "medicine"]
    routed = {q for q, _, _ in data.questions}
    assert not routed & {t for texts in data.rows.values() for t in texts}
    assert {s for _, _, s in data.questions} == {"arc", "gsm8k", "medmcqa", "medqa"}


def test_every_method_runs_raw_and_centred() -> None:
    assert {center for _, _, center in METHODS.values()} == {False, True}
    assert METHODS["1 centroid, centred"] == ("centroids", 1, True)


def test_any_router_is_scored_with_its_seconds() -> None:
    questions = [("acid?", "chemistry", "arc"), ("sum?", "mathematics", "gsm8k")]

    def router(texts: list[str]) -> list[Route]:
        return [Route("chemistry"), Route(None)][: len(texts)]

    row = router_errors(router, questions)
    assert row["n"] == 2 and row["error"] == 0.5 and row["to_base"] == 0.5
    assert row["by_source"] == {"arc": 0.0, "gsm8k": 1.0} and row["wrong"] == [False, True]
    assert row["seconds_per_question"] >= 0


def test_a_sample_is_seeded_and_bounded() -> None:
    data = TransferData({}, [(f"q{i}", "chemistry", "arc") for i in range(30)])
    assert sample_questions(data, 10) == sample_questions(data, 10)
    assert len(sample_questions(data, 100)) == 30


def test_routed_sources_can_be_chosen(data_dir: Path) -> None:
    data = transfer_data(data_dir, per_expert=20, per_source=10, sources=["arc", "medqa"])
    assert {s for _, _, s in data.questions} == {"arc", "medqa"}
    with pytest.raises(ValueError, match="pubmedqa"):
        transfer_data(data_dir, per_expert=20, per_source=10, sources=["pubmedqa"])
