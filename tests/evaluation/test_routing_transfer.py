"""Routing across sources: every method scored on the same questions, and the real data split."""

from __future__ import annotations

from pathlib import Path

from compllm_graph.evaluation.routing_transfer import (
    METHODS,
    TransferData,
    best_method,
    transfer_data,
    transfer_errors,
    transfer_table,
)
from compllm_graph.expert_store.embedders import embedder_from_spec


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
